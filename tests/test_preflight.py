"""Issue 3: each pre-flight check, tripped the way an editor or operator would trip it.

For every check, `dispatch check` exits 1 naming the file and line to fix, and
`dispatch send` sends nothing (a real SMTP server records what arrives).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from conftest import Project, SMTPServer
from dispatch.email import preflight

DATE = "2024-11-17"
EDITION = f"reports/{DATE}.md"
TEMPLATE = "templates/email/edition.html"


def _append_to_edition(project: Project, markdown: str) -> int:
    """Append lines to the sample edition; return the line number of the last one."""
    path = project.root / EDITION
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    path.write_text(text + markdown, encoding="utf-8")
    return text.count("\n") + markdown.rstrip("\n").count("\n") + 1


def _edit_template(project: Project, old: str, new: str) -> int:
    """Replace ``old`` in the project's HTML template; return the line the change is on."""
    path = project.root / TEMPLATE
    text = path.read_text(encoding="utf-8")
    assert old in text, f"template no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@dataclass(frozen=True)
class Case:
    """How to break the sample, and the problem line `check` must print."""

    break_it: Callable[[Project], tuple[str, int]]  # -> (path, line) the problem must name
    message: str  # a regular expression for the message after 'path:line: '


def _too_big(project: Project) -> tuple[str, int]:
    # About 130 KB of distinct text: far past Gmail's clipping point.
    bullets = "".join(f"- Punkt {n}: lägesuppdatering om vårdplatser, bemanning och journalsystem i område {n}.\n" for n in range(1500))
    _append_to_edition(project, "\n## Bilaga\n\n" + bullets)
    return EDITION, 1


def _placeholder_link(project: Project) -> tuple[str, int]:
    return EDITION, _append_to_edition(project, "\n- [Läs mer om läget](#)\n")


def _anchor_to_a_missing_id(project: Project) -> tuple[str, int]:
    return EDITION, _append_to_edition(project, "\n- [Se nedan](#finns-inte)\n")


def _empty_link(project: Project) -> tuple[str, int]:
    return EDITION, _append_to_edition(project, "\n- [Läs mer om läget]()\n")


def _script_link(project: Project) -> tuple[str, int]:
    # markdown-it refuses javascript: in Markdown, so it takes a template change.
    line = _edit_template(project, '<p class="footer-text">{{ footer }}',
                          '<p class="footer-text">{{ footer }} <a href="javascript:alert(1)">Regional rapport</a>')
    return TEMPLATE, line


def _image_without_alt(project: Project) -> tuple[str, int]:
    line = _edit_template(project, '<p class="masthead-title">',
                          '<img src="https://intranat.example.org/logo.png" width="120" height="32">\n<p class="masthead-title">')
    return TEMPLATE, line


def _title_differs(project: Project) -> tuple[str, int]:
    return TEMPLATE, _edit_template(project, "<title>{{ subject }}</title>", "<title>Regional rapport</title>")


def _text_part_incomplete(project: Project) -> tuple[str, int]:
    # Something added to the HTML template only: the text part no longer says the same.
    line = _edit_template(project, '<p class="footer-text">{{ footer }}',
                          '<p class="footer-text">Sekretessklassning: intern</p>\n<p class="footer-text">{{ footer }}')
    return TEMPLATE, line


CASES = {
    "html-over-90-kb": Case(_too_big, r"the HTML part is \d+ KB, over the 90 KB limit"),
    "placeholder-link": Case(_placeholder_link, r"a placeholder link '#' in the HTML"),
    "anchor-to-a-missing-id": Case(_anchor_to_a_missing_id, r"a link to '#finns-inte', an id the message does not have"),
    "empty-link": Case(_empty_link, r"an empty link in the HTML"),
    "javascript-link": Case(_script_link, r"a script link 'javascript:alert\(1\)' in the HTML"),
    "image-without-alt": Case(_image_without_alt, r"image 'https://intranat.example.org/logo.png' has no alt text"),
    "title-differs-from-subject": Case(_title_differs, r"the HTML <title> 'Regional rapport' differs from the Subject"),
    "text-part-missing-content": Case(_text_part_incomplete, r"the text part lacks words the HTML has \(.*sekretessklassning"),
}


def test_a_link_within_the_message_passes_only_to_an_id_it_has() -> None:
    """The box at the top links to its sections ('#kanda-omstandigheter'): an in-message anchor
    is a link when its id is in the message, a placeholder when bare, dead when the id is not."""
    html = ('<html><head><title>Ämne</title></head><body><p id="nytt"><a href="#kanda">Kända omständigheter</a> '
            '<a href="{href}">Mer om läget</a></p><h2 id="kanda">Kända omständigheter</h2></body></html>')
    text = "Kända omständigheter Mer om läget\n"
    def links(href: str) -> list[str]:
        return [p.message for p in preflight.check("Ämne", html.format(href=href), text, b"", "e.md:1")]
    assert links("#nytt") == [], "an id the message has"
    assert links("#") == ["a placeholder link '#' in the HTML; give every link a real https:// address"]
    assert links("#saknas") == ["a link to '#saknas', an id the message does not have in the HTML; "
                                "link to the id of a section of the message, or give a real https:// address"]
    assert preflight.bad_link("#kanda") is not None, "without the message's ids, no anchor is known"


def test_the_sample_passes_every_check(project: Project) -> None:
    result = project.run("check", "--date", DATE)
    assert result.returncode == 0, result.stderr
    assert "ready to send" in result.stderr


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name == "html-over-90-kb" else name  # renders a 1,500-bullet edition, twice
    for name in CASES
])
def test_check_fails_and_send_sends_nothing(name: str, project: Project, smtp_server: SMTPServer) -> None:
    case = CASES[name]
    path, line = case.break_it(project)
    project.use_smtp(smtp_server)

    checked = project.run("check", "--date", DATE)
    assert checked.returncode == 1, checked.stderr
    pattern = rf"^{re.escape(path)}:{line}: {case.message}"
    assert re.search(pattern, checked.stderr, re.M), f"expected {pattern!r} in:\n{checked.stderr}"

    sent = project.run("send", "--date", DATE)
    assert sent.returncode == 1, sent.stderr
    assert re.search(pattern, sent.stderr, re.M), sent.stderr
    assert smtp_server.handler.received == [], "a message was sent although a pre-flight check failed"


def test_an_overlong_name_fails_that_recipient_only(project: Project, smtp_server: SMTPServer) -> None:
    """The To line is folded between words, but a display name's run of words that need
    encoding is one encoded-word (headers.phrase_atoms says why): a run so long that its
    line would pass 998 octets fails that row, with its path:line; everyone else gets it."""
    with (project.root / "recipients/chefer.csv").open("a", encoding="utf-8") as handle:
        handle.write("sist@example.org," + "Långt-namn-" * 100 + "\n")
    project.use_smtp(smtp_server)
    checked = project.run("check", "--date", "2024-11-17")
    assert checked.returncode == 1
    message = r"^recipients/chefer\.csv:42: the name of sist@example\.org makes its To line longer than 998 octets"
    assert re.search(message, checked.stderr, re.M), checked.stderr
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 3, sent.stderr
    assert re.search(message, sent.stderr, re.M), sent.stderr
    assert len(smtp_server.handler.reports()) == 49
    assert "sist@example.org" not in smtp_server.handler.recipients()
    failed = [r for r in project.status()["recipients"] if r["state"] == "failed"]
    assert [r["email"] for r in failed] == ["sist@example.org"] and "recipients/chefer.csv:42" in failed[0]["reply"]

"""Checks on the rendered message before anything is sent (pure).

Each finds something a recipient would suffer from: a clipped report in Gmail, a
broken line in transit, a dead link, an unreadable image, a notification title that
differs from the subject, or a text part that leaves out what the HTML says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser

from dispatch.errors import Problem
from dispatch.values import Fact

MAX_HTML_BYTES = 90 * 1024  # Gmail clips at 102 KB; keep a margin
MAX_LINE_OCTETS = 998  # RFC 5322 2.1.1
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.in_title = False
        self.links: list[str] = []
        self.images_without_alt: list[str] = []
        self.text: list[str] = []
        self.hidden_depth = 0
        self.skip: list[str] = []
        self.link: tuple[str, list[str]] | None = None  # the open <a>: its href and its text so far
        self.ids: set[str] = set()  # what an in-message link ('#nytt') may point at

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "title":
            self.in_title = True
        elif tag in ("style", "script"):
            self.skip.append(tag)
        elif tag == "a":
            self.links.append((values.get("href") or "").strip())
            self.link = (self.links[-1], [])
        elif tag == "img" and "alt" not in values:
            self.images_without_alt.append(values.get("src") or "")
        if (tag == "div" and "display:none" in (values.get("style") or "").replace(" ", "")) or (self.hidden_depth and tag == "div"):
            self.hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.link is not None:
            href, label = self.link[0], "".join(self.link[1])
            self.link = None
            # A long address shown shortened ('example.org/lag…/sida'): its words are cut, and
            # the text part gives the address whole. Any other label counts as text.
            if not _shortened(label, href):
                self.text.append(label)
        if tag == "title":
            self.in_title = False
        elif self.skip and tag == self.skip[-1]:
            self.skip.pop()
        elif tag == "div" and self.hidden_depth:
            self.hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip and not self.hidden_depth:
            if self.link is not None:
                self.link[1].append(data)
            else:
                self.text.append(data)


def _shortened(label: str, href: str) -> bool:
    parts = [part.strip() for part in label.split("…")]
    return len(parts) > 1 and all(part in href for part in parts)


def bad_link(href: str, ids: Set[str] = frozenset()) -> Fact | None:
    """Why a link goes nowhere or somewhere it must not, None when it is fine. ``ids``: the
    ids in the message; a link to one of them ('#beskrivning-av-handelsen', as the box at
    the top has) jumps within the message, while a bare '#' or one to an id that is not
    there is a placeholder."""
    lowered = href.strip().lower()
    if not lowered:
        return Fact.of("preflight.empty_link")
    if lowered.startswith("#"):
        if len(href.strip()) > 1 and href.strip()[1:] in ids:
            return None
        if lowered == "#":
            return Fact.of("preflight.placeholder_link", href=repr(href))
        return Fact.of("preflight.link_to_missing_id", href=repr(href))
    if lowered.replace(" ", "").startswith(("javascript:", "vbscript:", "data:")):
        return Fact.of("preflight.script_link", href=repr(href[:40]))
    return None


Source = tuple[str, str]  # (path as shown to the user, text): where a problem may come from


def locate(needles: Sequence[str], sources: Sequence[Source]) -> tuple[str, int] | None:
    """(path, line) of the first line in ``sources`` (in order) containing any needle."""
    for path, text in sources:
        for number, line in enumerate(text.splitlines(), start=1):
            if any(needle and needle in line for needle in needles):
                return path, number
    return None


def _link_needles(href: str) -> list[str]:
    """How an offending href may appear in Markdown or a template."""
    if not href:
        return ['href=""', "href=''", "]()", "]( )"]
    return [f"]({href}", f"]( {href}", f'href="{href}', f"href='{href}", f"<{href}>"]


def check(
    subject: str, html: str, text: str, message: bytes, where: str,
    sources: Sequence[Source] = (), header_sources: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Problems with the message as it would be sent.

    ``where`` is 'path:line' of the edition, the fallback location. ``sources`` are the
    edition and the HTML template (path, text), searched in that order so that a problem
    points at the line an operator must change; ``header_sources`` maps a header name
    to the 'path:line' its value came from (e.g. To -> the recipient list entry)."""
    default_path, _, line = where.rpartition(":")
    default = (default_path or where, int(line) if line.isdigit() else 1)
    problems: list[Problem] = []

    def problem(fact: Fact, at: tuple[str, int] | None = None) -> None:
        path, number = at or default
        problems.append(Problem(path, number, fact))

    size = len(html.encode("utf-8"))
    if size > MAX_HTML_BYTES:
        problem(Fact.of("preflight.html_too_large", size=f"{size / 1024:.0f}", limit=MAX_HTML_BYTES // 1024))

    head_end = message.find(b"\r\n\r\n")
    for number, raw in enumerate(message.split(b"\r\n"), start=1):
        if len(raw) > MAX_LINE_OCTETS:
            header = ""
            if 0 <= message.find(raw) < head_end and b":" in raw:
                header = raw.split(b":", 1)[0].decode("ascii", "replace")
            at = _split_where(header_sources.get(header)) if header and header_sources else None
            if header:
                problem(Fact.of("preflight.header_too_long", header=header, octets=len(raw), limit=MAX_LINE_OCTETS), at)
            else:
                problem(Fact.of("preflight.line_too_long", line=number, octets=len(raw), limit=MAX_LINE_OCTETS), at)
            break

    scan = _Scan()
    scan.feed(html)
    for href in scan.links:
        reason = bad_link(href, scan.ids)
        if reason:
            problem(reason, locate(_link_needles(href), sources))
    for src in scan.images_without_alt:
        needles = [f'src="{src}', f"src='{src}"] if src else ["<img"]
        problem(Fact.of("preflight.image_without_alt", src=repr(src[:60])), locate(needles, sources))
    title = " ".join("".join(scan.title).split())
    if title != " ".join(subject.split()):
        problem(Fact.of("preflight.title_differs", title=repr(title), subject=repr(subject)),
                locate(["<title"], sources[1:] or sources))

    html_words = {w.casefold() for w in _WORD.findall(" ".join(scan.text))}
    text_words = {w.casefold() for w in _WORD.findall(text)}
    missing = sorted(html_words - text_words)
    if missing:
        at = None
        for word in missing:
            at = _locate_word(word, sources)
            if at:
                break
        problem(Fact.of("preflight.text_part_lacks_words", words=", ".join(missing[:8])), at)
    return problems


def _locate_word(word: str, sources: Sequence[Source]) -> tuple[str, int] | None:
    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
    for path, text in sources:
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                return path, number
    return None


def _split_where(where: str | None) -> tuple[str, int] | None:
    if not where:
        return None
    path, _, line = where.rpartition(":")
    return (path, int(line)) if path and line.isdigit() else None


# -- reading back what would be sent --------------------------------------------------------

_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True)
class Expected:
    """What two people approved and the message must say, header by header and part by part.
    Mailboxes are (display name, address); None: the header must be absent."""

    subject: str
    sender: tuple[str, str]
    to: tuple[str, str] | None  # None: a Bcc batch's empty group, named by ``group``
    reply_to: tuple[str, str] | None
    list_id: tuple[str, str]
    text: str
    html: str
    thread_topic: str | None = None
    group: str | None = None


def mailbox_reads_back(header: str, raw_value: str, expected: tuple[str, str]) -> str | None:
    """Why the mailbox header ``raw_value`` (as written, folded) does not parse to
    ``expected`` (display name, address) the way a reader's program shows it, or None."""
    try:
        parsed = policy.default.header_factory(header, _FOLD.sub("", raw_value))
        addresses = parsed.addresses
    except (ValueError, IndexError, AttributeError) as exc:
        return f"does not parse ({exc})"
    if len(addresses) != 1:
        return f"holds {len(addresses)} addresses, not one"
    got = (addresses[0].display_name, addresses[0].addr_spec)
    return None if got == expected else f"reads {_mailbox(got)!r}, not {_mailbox(expected)!r}"


def _mailbox(pair: tuple[str, str]) -> str:
    return f"{pair[0]} <{pair[1]}>" if pair[0] else pair[1]


def read_back(message: bytes, expected: Expected) -> list[tuple[str, str]]:
    """Parse the bytes as a reader's program would (policy.default, RFC 2047 decoding) and
    compare every header with text in it and both parts with what was rendered. Returns
    (header or part, what differs) for each difference: a header folded so that a space
    is lost, a display name that decodes to something else, a part that does not decode
    to the rendered text."""
    found: list[tuple[str, str]] = []
    try:
        parsed = BytesParser(policy=policy.default).parsebytes(message)
    except Exception as exc:  # any failure to parse is the finding itself
        return [("message", f"cannot be parsed back ({type(exc).__name__}: {exc})")]
    if not isinstance(parsed, EmailMessage):  # policy.default always makes one; narrowed for the types
        return [("message", "cannot be parsed back as a message")]

    def unstructured(name: str, want: str | None) -> None:
        values = parsed.get_all(name) or []
        if want is None:
            if values:
                found.append((name, f"is present ({str(values[0])[:80]!r}) but should not be"))
            return
        if len(values) != 1:
            found.append((name, f"appears {len(values)} times, not once"))
        elif str(values[0]) != want:
            found.append((name, f"reads {str(values[0])!r}, not {want!r}"))

    def mailbox(name: str, want: tuple[str, str] | None) -> None:
        raw = _raw(message, name)
        if want is None:
            if raw is not None:
                found.append((name, "is present but should not be"))
            return
        why = "is missing" if raw is None else mailbox_reads_back(name, raw, want)
        if why:
            found.append((name, why))

    unstructured("Subject", expected.subject)
    mailbox("From", expected.sender)
    mailbox("Reply-To", expected.reply_to)
    if expected.to is not None:
        mailbox("To", expected.to)
    else:
        raw = _raw(message, "To")
        group = parsed["To"].groups[0].display_name if raw is not None and parsed["To"].groups else None
        if group != (expected.group or "Mottagare"):
            found.append(("To", f"names the group {group!r}, not {expected.group!r}"))
    raw_list_id = _raw(message, "List-Id")
    list_problem = "is missing" if raw_list_id is None else mailbox_reads_back("To", raw_list_id, expected.list_id)
    if list_problem:
        found.append(("List-Id", list_problem))
    unstructured("Thread-Topic", expected.thread_topic)

    for subtype, want in (("plain", expected.text), ("html", expected.html)):
        part = parsed.get_body((subtype,))
        what = "text part" if subtype == "plain" else "HTML part"
        if part is None:
            found.append((what, "is missing"))
            continue
        try:
            got = part.get_content()
        except (LookupError, ValueError) as exc:
            found.append((what, f"cannot be decoded ({exc})"))
            continue
        if _lines(got) != _lines(want):
            at = next((i for i, (a, b) in enumerate(zip(_lines(got), _lines(want), strict=False)) if a != b),
                      min(len(_lines(got)), len(_lines(want))))
            found.append((what, f"differs from what was rendered from line {at + 1}"))
    return found


def _lines(text: str) -> list[str]:
    """A part's lines as a reader's program shows them: line ends and the final newline
    that MIME serialisation adds are not content."""
    return text.replace("\r\n", "\n").rstrip("\n").split("\n")


def _raw(message: bytes, name: str) -> str | None:
    """The first ``name`` header's raw value in the message's head, folds kept; None if absent."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    match = re.search(rf"(?im)^{re.escape(name)}:[ \t]?([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head)
    return match.group(1) if match else None

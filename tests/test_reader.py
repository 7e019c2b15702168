"""Issue 19: what the reader sees, part 2, in this process (each test well under a second).

"Nytt"/"Ändrat" markers decided from the ledger, corrections in the thread of what they
correct, the subject that starts with the day, the headers and the text part, the EHLO name.
Real parts throughout: the sample project copied, a SQLite ledger, the Maildir outbox, an
aiosmtpd server for EHLO. Their twins in a real browser, SpamAssassin and the caniemail
checker are in test_reader_render.py and test_inbox.py.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from conftest import ROOT, Project, RecordingHandler, body_text, copy_project, start_server, unit_of
from dispatch import app
from dispatch.config import Settings, load_settings
from dispatch.delivery.transport import SMTPTransport
from dispatch.email import markup
from dispatch.email import whats_new as news
from dispatch.errors import InputError
from dispatch.wording import english

DAY, NEXT = date(2024, 11, 17), date(2024, 11, 18)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
THREE = ("För Närhälsan skedde återgången", "Närhälsans vårdcentraler arbetar i Asynja", "Information till invånare om återgången")


# -- helpers: the sample project, read, sent and delivered in this process ---------------------

@pytest.fixture
def sample(tmp_path: Path) -> Project:
    return copy_project(tmp_path / "project")


def settings_of(project: Project) -> Settings:
    return load_settings(project.config_path)


def prepared(project: Project, day: date) -> app.Prepared:
    settings = settings_of(project)
    return app.prepare_edition(unit_of(settings), app.read_edition(unit_of(settings), day, None, NOW), NOW)


def send(project: Project, day: date) -> app.Result:
    settings = settings_of(project)
    result = app.send(unit_of(settings), prepared(project, day), app.Clock(), created_by="test")
    assert result.complete, result
    return result


def outbox(project: Project) -> list[EmailMessage]:
    """Every report message in the Maildir (not the completion summaries), oldest first."""
    files = sorted((project.root / "var/outbox/new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]
    return [m for m in messages if m["List-Id"]]


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = (part.get_content() for part in message.iter_parts())
    return text, html


def marks_in(ready: app.Prepared) -> tuple[list[str], list[str]]:
    """(the HTML markers, the text markers) of a rendered message, in order."""
    html = re.findall(r'<strong class="mark mark-\w+"[^>]*>\s*(Nytt|Ändrat|Rättat)', ready.rendered.html)
    text = re.findall(r"\[(Nytt|Ändrat|Rättat)\] ", ready.rendered.text)
    return html, text


def correct(project: Project, day: date, old: str, new: str, correction: str) -> None:
    """Make the edition of ``day`` revision 2 with one bullet changed."""
    path = project.root / f"reports/{day.isoformat()}.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace("status: approved\n", f"status: approved\nrevision: 2\ncorrection: \"{correction}\"\n")
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- markup: links, markers, quotes, emphasis ----------------------------------------------------

def test_bare_addresses_become_links_shown_short_when_long_and_whole_in_the_text_part() -> None:
    url = "https://insidan.example.org/millennium/lagesbild/" + "dokument-" * 11 + "bilaga"
    assert len(url) > 140
    source = f"- Se {url} och www.1177.se eller mejla kommunikation@example.org.\n"
    html = markup.to_html(source)
    label = re.search(rf'<a href="{re.escape(url)}">([^<]+)</a>', html)
    assert label, html
    assert len(label.group(1)) <= markup.LINK_LABEL_MAX and "…" in label.group(1), "a long address is shown short"
    assert '<a href="https://www.1177.se">www.1177.se</a>' in html, "www. gets https, not http"
    assert '<a href="mailto:kommunikation@example.org">' in html
    text = markup.to_text(source)
    assert url in text and "<https://www.1177.se>" not in text, "the text part carries the address once, whole"


def test_a_quote_has_a_left_rule_in_html_and_quote_marks_in_text_and_emphasis_stays() -> None:
    source = "> Akuten stänger **klockan 16:00** i dag.\n> Ambulanser dirigeras om.\n\nEfter citatet.\n"
    assert "<blockquote>" in markup.to_html(source) and "<strong>klockan 16:00</strong>" in markup.to_html(source)
    assert markup.to_text(source).splitlines()[:3] == [
        "> Akuten stänger *klockan 16:00* i dag. Ambulanser dirigeras om.", "", "Efter citatet."]


def test_markers_go_inside_their_bullet_in_html_and_text() -> None:
    source = "- Första.\n- Andra med [länk](https://example.org/a).\n  - Inre.\n"
    assert markup.bullets(source) == ["Första.", "Andra med länk <https://example.org/a>.", "Inre."]
    html = markup.to_html(source, ["new", None, "changed"])
    # The whole bullet is tinted (its class), the word is bold at body size (the stylesheet).
    assert re.search(r'<li class="marked marked-new"><strong class="mark mark-new">Nytt</strong> Första\.</li>', html)
    assert re.search(r'<li class="marked marked-changed"><strong class="mark mark-changed">Ändrat</strong> Inre\.</li>', html)
    assert "<li>Andra med" in html, "an unmarked bullet is not tinted"
    assert markup.to_text(source, ["new", None, "changed"]).splitlines() == [
        "- [Nytt] Första.", "- Andra med länk <https://example.org/a>.", "  - [Ändrat] Inre."]
    # A bullet new since the day before and changed again by a correction says both, tinted as corrected.
    both = markup.to_html(source, [("new", "corrected")])
    assert re.search(r'<li class="marked marked-corrected"><strong class="mark mark-new">Nytt</strong> '
                     r'<strong class="mark mark-corrected">Rättat</strong> Första\.</li>', both)
    assert markup.to_text(source, [("new", "corrected")]).splitlines()[0] == "- [Nytt] [Rättat] Första."
    assert markup.bullets(source, addresses=False)[1] == "Andra med länk.", "the box quotes a link by its label"


def test_compare_tells_new_from_changed_and_ignores_moved_and_bolded_bullets() -> None:
    previous = ["Återstart planeras till tisdag morgon om förberedelserna hinner bli klara.",
                "Supportorganisationen löser fler ärenden än vad som skapas.", "Prestandan rapporteras som ok."]
    current = [["Prestandan rapporteras som ok.",  # moved to another section: not news
                "Återstart planeras till tisdag morgon; förberedelserna följer planen.",  # rewritten
                "Akuten i Borås öppnar igen klockan 08:00."],  # new
               ["Supportorganisationen löser fler ärenden än vad som skapas."]]
    assert news.compare(current, previous) == [[None, "changed", "new"], [None]]
    assert news.compare([["Ny punkt."]], []) == [["new"]]


def test_the_line_at_the_top_counts_in_swedish() -> None:
    since = "söndag 17 november"
    # The adjective agrees with its own count, the noun with the count nearest it.
    expected = {
        (1, 0): "1 ny punkt", (2, 0): "2 nya punkter", (0, 1): "1 ändrad punkt", (0, 2): "2 ändrade punkter",
        (1, 1): "1 ny och 1 ändrad punkt", (2, 1): "2 nya och 1 ändrad punkt", (1, 2): "1 ny och 2 ändrade punkter",
        (2, 3): "2 nya och 3 ändrade punkter",
    }
    for (new, changed), words in expected.items():
        assert news.summary(new, changed, since) == f"{words} sedan söndag 17 november", (new, changed)
    assert news.summary(0, 0, since) == ""
    assert news.summary(0, 0, since, 1, "version 1") == "1 rättad punkt sedan version 1"
    assert news.summary(2, 1, since, 2, "version 1") == (
        "2 nya och 1 ändrad punkt sedan söndag 17 november, 2 rättade punkter sedan version 1")


def test_the_box_quotes_the_first_words_of_a_point_sensibly() -> None:
    short = "Akuten i Borås öppnar igen klockan 08:00."
    assert news.box_text(short) == short, "a short point whole"
    assert news.box_text("För Närhälsan skedde återgången till Asynja när verksamheten gick igång måndag morgon, "
                         "utan att något oförutsett inträffade.") == (
        "För Närhälsan skedde återgången till Asynja när verksamheten gick igång måndag morgon…"), "to a clause break"
    assert news.box_text("Information till invånare om återgången till Asynja publicerades på 1177 och vgregion.se "
                         "under måndagen.") == (
        "Information till invånare om återgången till Asynja publicerades på 1177…"), "whole words, not on 'och'"
    long_word = "Journalsystemåterstartsplaneringsarbetsgruppsmötesprotokollet" * 2
    assert news.box_text(long_word) == long_word[: news.BOX_WORDS] + "…"


# -- markers against what the ledger says was sent -------------------------------------------------

@pytest.mark.slow  # a send and three renders; fast twins: test_compare_tells_new_..., test_markers_come_from_what_the_ledger_kept_...
def test_the_second_sample_edition_marks_exactly_its_three_new_or_changed_bullets(sample: Project) -> None:
    first = prepared(sample, DAY)
    assert marks_in(first) == ([], []) and first.edition.news == "", "a first edition marks nothing"
    before_sending = prepared(sample, NEXT)
    assert marks_in(before_sending) == ([], []), "nothing was sent before it: nothing to be new against"

    send(sample, DAY)
    ready = prepared(sample, NEXT)
    html_marks, text_marks = marks_in(ready)
    assert html_marks == text_marks == ["Ändrat", "Nytt", "Nytt"]
    for start in THREE:  # exactly these three, each with its marker in the same bullet
        assert re.search(rf"\[(Nytt|Ändrat)\] {start}", ready.rendered.text), start
        assert re.search(r'<li class="marked marked-\w+"[^>]*><strong class="mark mark-\w+"[^>]*>(Nytt|Ändrat)</strong> '
                         + re.escape(start), ready.rendered.html), start
    line = "2 nya och 1 ändrad punkt sedan söndag 17 november"
    assert ready.edition.news == line
    assert re.search(r'<p class="news-line"[^>]*>' + line + "</p>", ready.rendered.html), "the line is at the top of the HTML"
    text = ready.rendered.text
    assert text.index(line) < text.index("Beskrivning av händelsen"), "and of the text part"
    # The inbox preview: the first new point, not the first bullet.
    assert ready.edition.preheader.startswith(THREE[0])
    assert re.search(r'<div class="preheader"[^>]*>' + THREE[0], ready.rendered.html)


def test_markers_come_from_what_the_ledger_kept_not_from_the_file(sample: Project) -> None:
    send(sample, DAY)
    # Someone edits yesterday's file afterwards (it says what today's says): the markers
    # still compare with what its readers got.
    today = (sample.root / "reports/2024-11-18.md").read_text(encoding="utf-8")
    (sample.root / "reports/2024-11-17.md").write_text(today.replace("2024-11-18 14:00", "2024-11-17 14:00"), encoding="utf-8")
    assert marks_in(prepared(sample, NEXT))[1] == ["Ändrat", "Nytt", "Nytt"]


@pytest.mark.slow  # a send and two renders; fast twin: test_markers_come_from_what_the_ledger_kept_not_from_the_file
def test_markers_false_in_the_front_matter_turns_them_off(sample: Project) -> None:
    send(sample, DAY)
    path = sample.root / "reports/2024-11-18.md"
    path.write_text(path.read_text(encoding="utf-8").replace("status: approved\n", "status: approved\nmarkers: false\n"),
                    encoding="utf-8")
    ready = prepared(sample, NEXT)
    assert marks_in(ready) == ([], []) and "nya punkter" not in ready.rendered.text
    assert ready.edition.preheader.startswith("VGR har fredag 15 november"), "the first bullet again"
    path.write_text(path.read_text(encoding="utf-8").replace("markers: false", "markers: nej"), encoding="utf-8")
    with pytest.raises(InputError, match="'markers' must be true or false"):
        prepared(sample, NEXT)


@pytest.mark.slow  # four sends; fast twin: test_markers_come_from_what_the_ledger_kept_not_from_the_file
def test_the_content_hash_binds_the_markers_and_they_stay_once_sent(sample: Project) -> None:
    settings = settings_of(sample)
    unmarked = app.identify(unit_of(settings), app.read_edition(unit_of(settings), NEXT, None, NOW))
    send(sample, DAY)
    marked = app.identify(unit_of(settings), app.read_edition(unit_of(settings), NEXT, None, NOW))
    assert marked.hash != unmarked.hash, "what is new is part of what an approval approves"
    assert "news" in marked.canonical and "news" not in unmarked.canonical
    send(sample, NEXT)
    # Yesterday's edition is corrected after today's went out: today's markers, and so its
    # content, are what was sent (a check does not report it as changed after sending).
    correct(sample, DAY, "Prognos är att vidtagna åtgärder", "Prognosen är att vidtagna åtgärder", "Prognosen ändrad.")
    send(sample, DAY)
    review = app.review_now(unit_of(settings), app.read_edition(unit_of(settings), NEXT, None, NOW), NOW)
    assert review.conflict is None and review.content.hash == marked.hash


@pytest.mark.slow  # a send and three reviews; fast twin: test_markers_come_from_what_the_ledger_kept_not_from_the_file
def test_a_four_eyes_approval_is_void_when_the_markers_change(sample: Project) -> None:
    sample.set_config(approval="four_eyes")
    settings = settings_of(sample)
    app.approve(unit_of(settings), prepared(sample, NEXT), "bo", NOW)
    verdict = app.review_now(unit_of(settings), app.read_edition(unit_of(settings), NEXT, None, NOW), NOW).verdict
    assert verdict is not None and verdict.sendable
    sample.set_config(approval="front_matter")
    send(sample, DAY)  # the edition before it goes out: today's bullets are now new against it
    sample.set_config(approval="four_eyes")
    settings = settings_of(sample)
    verdict = app.review_now(unit_of(settings), app.read_edition(unit_of(settings), NEXT, None, NOW), NOW).verdict
    assert verdict is not None and not verdict.sendable
    assert verdict.reason.code == "gate.changed_after_approval" and verdict.reason.params["approver"] == "bo"
    assert "changed after approval by bo" in english(verdict.reason)


# -- corrections in the thread of what they correct ---------------------------------------------------

@pytest.mark.slow  # two sends of 49-50 messages; fast twin: test_for_recipients_adds_the_thread_headers_only_for_its_recipient
def test_a_correction_replies_per_recipient_to_the_message_they_got(sample: Project) -> None:
    send(sample, DAY)
    first = {str(m["To"]): str(m["Message-ID"]) for m in outbox(sample)}
    assert len(first) == 49
    # Someone joins a list before the correction: they never got revision 1.
    with (sample.root / "recipients/chefer.csv").open("a", encoding="utf-8") as handle:
        handle.write("ny.chef@example.org,Ny Chef\n")
    correct(sample, DAY, "planeras till tisdag morgon om förberedelserna hinner bli klara",
            "planeras till onsdag morgon om förberedelserna hinner bli klara", "Återstarten för SÄS är onsdag, inte tisdag.")
    send(sample, DAY)
    second = [m for m in outbox(sample) if str(m["Message-ID"]) not in first.values()]
    assert len(second) == 50
    for message in second:
        to = str(message["To"])
        if to == "Ny Chef <ny.chef@example.org>":
            assert message["In-Reply-To"] is None and message["References"] is None
            continue
        assert str(message["In-Reply-To"]) == first[to], to
        assert str(message["References"]) == first[to], to
    text, html = parts(second[0])
    assert re.search(r'<div class="preheader"[^>]*>Återstarten för SÄS är onsdag, inte tisdag\.', html), "preview = the correction"
    # The first edition had no markers to keep: the corrected bullet, and only it, says so.
    assert re.findall(r"\[(Nytt|Ändrat|Rättat)\]", text) == ["Rättat"], "the corrected bullet, and only it"
    assert "[Rättat] Återstart för SÄS och större delen av Regionhälsan planeras till onsdag" in " ".join(text.split())
    assert "1 rättad punkt sedan version 1" in text


# -- issue 29: the box at the top ("Nytt sedan …") and a correction's markers, in the delivered bytes ------

SECTION_IDS = ("beskrivning-av-handelsen", "kanda-omstandigheter-och-vidtagna-atgarder", "kommunikativa-atgarder-urval")


def send_and_read(project: Project, day: date) -> tuple[str, str]:
    """Send the edition of ``day``; (text, HTML) of a message it delivered to the Maildir, parsed
    from its bytes as a reader's client would (every recipient gets the same parts)."""
    maildir = project.root / "var/outbox/new"
    before = set(maildir.iterdir()) if maildir.exists() else set()
    send(project, day)
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(path.read_bytes()) for path in sorted(set(maildir.iterdir()) - before)]
    reports = [m for m in messages if m["List-Id"]]
    assert reports
    text, html = (part.get_content() for part in reports[0].iter_parts())
    return text.replace("\r\n", "\n"), html


def html_box(html: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(its first line, [(marker words, quoted words, href)]) of the box id="nytt", checked to
    stand before the first daily section and to link to sections the message has."""
    document = lxml.html.document_fromstring(html)
    order = {element: index for index, element in enumerate(document.iter())}
    box = document.get_element_by_id("nytt")
    sections = [td for td in document.iter("td") if "section" in (td.get("class") or "").split()]
    assert order[box] < order[sections[0]], "the box stands before the first daily section"
    points = []
    for link in box.iter("a"):
        href = link.get("href") or ""
        target = document.get_element_by_id(href.removeprefix("#"), None)
        assert href.startswith("#") and target is not None and target in sections, f"{href} is no section of the message"
        words = link.getprevious().text_content()  # the <strong> before the link
        quoted = " ".join(link.text_content().split())
        # The point is in the section it links to, with the same marker words at its start.
        bullets = [" ".join(li.text_content().split()) for li in target.iter("li")]
        assert any(b.startswith(f"{words.replace(' · ', ' ')} {quoted.removesuffix('…')}") for b in bullets), (quoted, href)
        points.append((words, quoted, href))
    return " ".join(box.find_class("news-line")[0].text_content().split()), points


def text_box(text: str, line: str) -> list[tuple[str, str]]:
    """[(marker words, quoted words)] listed under ``line`` in the text part, checked to come
    before the first section's heading."""
    found = re.search(r"\s+".join(map(re.escape, line.split())) + "\n", text)  # the line may be wrapped
    assert found and found.start() < text.index("Beskrivning av händelsen\n===="), "the list is before the first section"
    items: list[str] = []
    for row in text[found.end():].splitlines():
        if not row:
            break
        if row.startswith("  "):
            items[-1] += " " + row.strip()
        else:
            assert row.startswith("- "), row
            items.append(row[2:])
    return [(item.split(": ", 1)[0], item.split(": ", 1)[1]) for item in items]


def test_every_section_has_an_id_of_its_own_and_none_takes_the_boxs(sample: Project) -> None:
    path = sample.root / "reports/2024-11-17.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n## Nytt\n\n- Ett.\n\n## Beskrivning av händelsen\n\n- Två.\n",
                    encoding="utf-8")
    edition = prepared(sample, DAY).edition
    anchors = [section.anchor for section in (*edition.sections, *edition.standing)]
    assert len(set(anchors)) == len(anchors) and "nytt" not in anchors, anchors
    assert anchors[0] == "beskrivning-av-handelsen" and anchors[4:6] == ["nytt-2", "beskrivning-av-handelsen-2"]


@pytest.mark.slow  # two sends of 49 messages; fast twins: test_the_second_sample_edition_marks_..., test_the_box_quotes_...
def test_after_an_edition_is_sent_the_next_leads_with_exactly_its_new_and_changed_points(sample: Project) -> None:
    text, html = send_and_read(sample, DAY)
    assert 'id="nytt"' not in html and "punkt sedan" not in text, "a first edition has no box"
    text, html = send_and_read(sample, NEXT)
    line = "2 nya och 1 ändrad punkt sedan söndag 17 november"
    shown, points = html_box(html)
    assert shown == line
    assert [(words, href) for words, _, href in points] == [
        ("Ändrat", f"#{SECTION_IDS[0]}"), ("Nytt", f"#{SECTION_IDS[1]}"), ("Nytt", f"#{SECTION_IDS[2]}")]
    for (_, quoted, _), start in zip(points, THREE, strict=True):
        assert quoted.startswith(start) and len(quoted) <= news.BOX_CLAUSE + 1, quoted
    assert text_box(text, line) == [(words, quoted) for words, quoted, _ in points], "the text part lists the same"
    # The markers in the report: one per point, at body size in a tinted bullet (the box's are not counted).
    assert re.findall(r"\[(Nytt|Ändrat|Rättat)\] ", text) == ["Ändrat", "Nytt", "Nytt"]
    assert re.findall(r'<li class="marked marked-(\w+)"', html) == ["changed", "new", "new"]
    marker = re.search(r'<strong class="mark mark-new"[^>]*>', html)
    assert marker is not None and "font-size:16px" in marker.group(0).replace(" ", "")
    assert 'href="#"' not in html


@pytest.mark.slow  # three sends of 49 messages; fast twin: test_markers_go_inside_their_bullet_in_html_and_text
def test_a_correction_keeps_the_markers_it_corrects_and_marks_what_it_corrected(sample: Project) -> None:
    send(sample, DAY)
    first_text, _ = send_and_read(sample, NEXT)
    before = re.findall(r"\[(Nytt|Ändrat)\] (\S+ \S+)", first_text)
    assert [mark for mark, _ in before] == ["Ändrat", "Nytt", "Nytt"]
    # The correction changes a bullet revision 1 did not mark, and one it marked "Nytt".
    correct(sample, NEXT, "planeras till tisdag morgon", "planeras till onsdag morgon", "Onsdag, och klockan 08:00.")
    path = sample.root / "reports/2024-11-18.md"
    path.write_text(path.read_text(encoding="utf-8").replace("klockan 07:30 måndag", "klockan 08:00 måndag"), encoding="utf-8")
    text, html = send_and_read(sample, NEXT)
    flat = " ".join(text.split())
    assert re.findall(r"\[(Nytt|Ändrat|Rättat)\] ", text) == ["Ändrat", "Rättat", "Nytt", "Rättat", "Nytt"]
    assert "[Ändrat] För Närhälsan skedde återgången" in flat, "revision 1's markers stay, against the day before"
    assert "[Nytt] Information till invånare om återgången" in flat
    assert "[Rättat] Återstart för SÄS och större delen av Regionhälsan planeras till onsdag" in flat, "not also 'Ändrat'"
    assert "[Nytt] [Rättat] Närhälsans vårdcentraler arbetar i Asynja sedan klockan 08:00" in flat, "its own and the correction's"
    for mark, start in before:  # every marker revision 1 had, on the same bullet
        assert re.search(rf"\[{mark}\] (\[Rättat\] )?{re.escape(start)}", text), (mark, start)
    assert re.findall(r'<li class="marked marked-(\w+)"', html) == ["changed", "corrected", "corrected", "new"]
    assert re.search(r'<strong class="mark mark-corrected"[^>]*>Rättat</strong> Återstart för SÄS', html)
    line = "2 nya och 1 ändrad punkt sedan söndag 17 november, 2 rättade punkter sedan version 1"
    shown, points = html_box(html)
    assert shown == line
    assert [words for words, _, _ in points] == ["Ändrat", "Rättat", "Nytt · Rättat", "Nytt"]
    assert text_box(text, line) == [(words, quoted) for words, quoted, _ in points]

    # A second correction that changes no bullet (only the subject): version 2's markers stay,
    # "Rättat" included; nothing more is counted as corrected.
    path.write_text(path.read_text(encoding="utf-8").replace("revision: 2\n", "revision: 3\nheadline: Onsdag för SÄS\n"),
                    encoding="utf-8")
    third_text, third_html = send_and_read(sample, NEXT)
    assert re.findall(r"\[(Nytt|Ändrat|Rättat)\] ", third_text) == ["Ändrat", "Rättat", "Nytt", "Rättat", "Nytt"]
    assert re.findall(r'<li class="marked marked-(\w+)"', third_html) == ["changed", "corrected", "corrected", "new"]
    assert html_box(third_html)[0] == line


def test_for_recipients_adds_the_thread_headers_only_for_its_recipient() -> None:
    from dispatch.email.message import thread_headers

    made = prepared_message()
    threaded = type(made)(made.head, made.body, made.domain, {"anna@example.org": thread_headers(["<r1@x.org>", "<r2@x.org>"])})
    data = threaded.for_recipients("Anna <anna@example.org>", "<r3@x.org>", "anna@example.org")
    message = message_from_bytes(data, policy=policy.default)
    assert message["In-Reply-To"] == "<r2@x.org>" and message["References"] == "<r1@x.org> <r2@x.org>"
    assert b"In-Reply-To" not in threaded.for_recipients("Bo <bo@example.org>", "<r4@x.org>", "bo@example.org")
    assert threaded.for_recipients("Bo <bo@example.org>", "<r4@x.org>") == made.for_recipients("Bo <bo@example.org>", "<r4@x.org>")


# -- the subject, the headers, the text part -------------------------------------------------------------

def prepared_message(urgent: bool = False) -> Any:
    from dispatch.email.message import Envelope, prepare
    from dispatch.models import Rendered

    envelope = Envelope("rapport@example.org", "Regional rapport", "rapport@example.org", None, "R", "r.example.org")
    return prepare(Rendered("Ämne", "<p>Hej</p>", "Hej\n"), envelope, NOW, urgent=urgent)


@pytest.mark.slow  # four renders; fast twin: test_send.py's SUBJECT (every message of a send)
def test_the_subject_starts_with_the_day_in_the_config_and_by_default(sample: Project) -> None:
    assert prepared(sample, DAY).rendered.subject == "sön 17 nov: Regional rapport Millennium 2024"
    config = sample.config()
    del config["report"]["subject"]
    sample.set_config(report=config["report"])
    assert prepared(sample, NEXT).rendered.subject == "mån 18 nov: Regional rapport Millennium 2024", "the program's default"
    correct(sample, NEXT, "07:30", "08:00", "Klockan 08:00, inte 07:30.")
    assert prepared(sample, NEXT).rendered.subject == "Rättelse: mån 18 nov: Regional rapport Millennium 2024"
    settings = settings_of(sample)
    urgent = app.read_edition(unit_of(settings), None, ROOT / "reports/urgent/sas-akutmottagning.md", NOW, urgent=True)
    assert app.prepare_edition(unit_of(settings), urgent, NOW).rendered.subject.startswith("BRÅDSKANDE: SÄS akutmottagning")


@pytest.mark.parametrize("kind", ["edition", "correction", "urgent"])
def test_headers_and_text_part_of_each_kind(sample: Project, kind: str) -> None:
    settings = settings_of(sample)
    if kind == "urgent":
        edition = app.read_edition(unit_of(settings), None, ROOT / "reports/urgent/sas-akutmottagning.md", NOW, urgent=True)
    else:
        if kind == "correction":
            correct(sample, DAY, "söndag eftermiddag", "söndag kväll", "Mötet är på söndag kväll, inte eftermiddag.")
        edition = app.read_edition(unit_of(settings), DAY, None, NOW)
    ready = app.prepare_edition(unit_of(settings), edition, NOW)
    message = message_from_bytes(app.first_message(ready) or b"", policy=policy.default)
    assert message["Content-Language"] == "sv"
    assert (message["Precedence"] is None) == (kind == "urgent"), "bulk must not slow or file away an urgent message"
    text = body_text(message).replace("\r\n", "\n")
    long = [line for line in text.splitlines() if len(line) > 78]
    assert not long, f"text lines over 78 characters: {long}"
    assert "\n-- \n" in text, "the signature separator is dash dash space"
    if kind == "urgent":  # the editor's emphasis on the time survives in both parts
        assert "*klockan 16:00*" in text
        html = body_text(message, "html")
        assert re.search(r"<strong[^>]*>klockan 16:00</strong>", html)
        lead = re.search(r'<td class="lead[^"]*"[^>]*>\s*<p style="([^"]*)"', html)
        assert lead and "font-weight:bold" not in lead.group(1).replace(" ", ""), "the lead is not all bold"


def test_the_ehlo_name_is_fully_qualified_by_default_and_configurable(sample: Project) -> None:
    class EhloRecorder(RecordingHandler):
        names: list[str]

        async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
            self.names.append(hostname)
            session.host_name = hostname
            return responses

    handler = EhloRecorder()
    handler.names = []
    controller, server = start_server(handler)
    try:
        sample.use_smtp(server)
        SMTPTransport(settings_of(sample).transport).connect().close()
        sample.use_smtp(server, ehlo_name="rapport.region.example.se")
        SMTPTransport(settings_of(sample).transport).connect().close()
    finally:
        controller.stop()
    default, configured = handler.names
    assert "." in default and not default.startswith("localhost"), default
    assert configured == "rapport.region.example.se"


def test_reading_the_config_does_not_look_up_the_ehlo_name(sample: Project) -> None:
    """The default needs the system's fully qualified name, which may ask DNS: only the transport,
    made when something is sent, looks it up, so `status` or the console never wait for DNS."""
    sample.set_config(transport={"kind": "smtp", "host": "127.0.0.1"})
    transport = settings_of(sample).transport
    assert (transport.ehlo_name, transport.ehlo_fallback) == ("", "example.org")
    from dispatch.delivery.transport import default_ehlo_name

    chosen = default_ehlo_name(transport.ehlo_fallback)  # what the transport uses (the test above sees it in EHLO)
    assert "." in chosen and not chosen.startswith("localhost"), chosen


def test_a_bare_host_name_as_ehlo_name_is_refused_at_its_line(sample: Project) -> None:
    sample.set_config(transport={"kind": "smtp", "host": "127.0.0.1", "ehlo_name": "vm"})
    with pytest.raises(InputError) as caught:
        settings_of(sample)
    lines = sample.config_path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "ehlo_name" in text)
    assert [(p.line, p.message[:59]) for p in caught.value.problems] == [
        (line, "'transport.ehlo_name' must be a fully qualified domain name")]

"""Issue 32, acceptance 3, 4 and 7: what the console's screens say after an action and on a phone.

- A confirmation ("Godkänd 14:20.") is shown once: a reload shows the current state only, and
  after the editor's change the approver's reloaded page says only that approval is needed again.
- The approver who comes back to an edition changed since he approved it sees what changed:
  the old word in <del>, the new in <ins>, a field by its label, no YAML.
- At 375 px no element of /history, /recipients or /audit scrolls sideways and no dispatch's
  internal name is in view; after "Skicka brådskande" the "Bekräfta" step has focus and is in
  view, and the urgent preview shows whatever has been typed.

A real `dispatch web` process, a real SMTP server (aiosmtpd) for the sends, Playwright on the
system Chromium with each person in a browser context of their own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest

import consolekit
from conftest import STOCKHOLM, Project, SMTPServer, write_edition
from consolekit import WebProcess, add_users, browser_sign_in, csrf_of, four_eyes_console, sign_in
from dispatch.control.diff import Change, around_changes, diff_edition, word_runs
from test_accessibility import AXE, axe_violations

TOMORROW = (datetime.now(STOCKHOLM) + timedelta(days=1)).date()
HEADLINE = "Akutmottagningen på SÄS tar emot patienter från NÄL hela helgen"
BODY = ("## Beskrivning av händelsen\n\n"
        "- Läget på SÄS är stabilt sedan i morse.\n"
        "- Omdirigeringen till NÄL fortsätter.\n")

chromium = consolekit.chromium  # the shared module-scoped fixture


# -- the diff itself (pure) -----------------------------------------------------------------------


def test_word_runs_give_back_both_texts_and_mark_only_what_changed() -> None:
    old, new = "- Läget är stabilt.\n- Ny text.\n", "- Läget är ansträngt.\n- Ny text.\n"
    runs = word_runs(old, new)
    assert "".join(r.text for r in runs if r.change is not Change.ADDED) == old
    assert "".join(r.text for r in runs if r.change is not Change.REMOVED) == new
    assert [(r.change, r.text) for r in runs if r.change is not Change.KEPT] == [
        (Change.REMOVED, "stabilt"), (Change.ADDED, "ansträngt")]


def test_a_phrase_changed_is_one_struck_phrase_and_one_new_one() -> None:
    old, new = "- Det går enligt plan i dag.\n", "- Det är försenad till onsdag i dag.\n"
    runs = word_runs(old, new)
    assert [(r.change, r.text) for r in runs if r.change is not Change.KEPT] == [
        (Change.REMOVED, "går enligt plan"), (Change.ADDED, "är försenad till onsdag")]
    assert "".join(r.text for r in runs if r.change is not Change.ADDED) == old
    assert "".join(r.text for r in runs if r.change is not Change.REMOVED) == new


def test_a_long_text_is_shown_as_its_changes_with_a_few_lines_around_each() -> None:
    old = "".join(f"- Punkt {n}.\n" for n in range(1, 31))
    new = old.replace("Punkt 15.", "Punkt femton.")
    changes = diff_edition({}, old, {}, new)
    shown = changes.excerpt
    assert [r.elided for r in shown if r.elided] == [12, 13]  # 30 lines: 2 above, 2 below the changed one
    text = "".join(r.text for r in shown if r.change is not Change.REMOVED)
    assert text == "- Punkt 13.\n- Punkt 14.\n- Punkt femton.\n- Punkt 16.\n- Punkt 17.\n"
    assert around_changes(word_runs("a\nb\n", "a\nc\n")) == word_runs("a\nb\n", "a\nc\n"), "a short text is whole"


def test_fields_are_compared_by_key_and_who_wrote_it_or_its_status_is_not_a_change() -> None:
    changes = diff_edition({"subject": "Läget", "status": "approved", "by": "anna"}, "Text.\n",
                           {"subject": "Läget i dag", "status": "draft", "by": "cara", "headline": "SÄS"}, "Text.\n",
                           ("subject", "headline"))
    assert [(f.key, f.old, f.new) for f in changes.fields] == [("subject", "Läget", "Läget i dag"), ("headline", "", "SÄS")]
    assert not changes.body_changed and changes.changed
    assert not diff_edition({"status": "draft"}, "Same.\n", {"status": "approved"}, "Same.\n").changed


# -- the console ----------------------------------------------------------------------------------


@pytest.fixture
def console(project: Project) -> Iterator[WebProcess]:
    with four_eyes_console(project) as web:
        yield web


def phone(chromium: object) -> object:
    return chromium.new_context(viewport={"width": 375, "height": 740}).new_page()  # type: ignore[attr-defined]


def save_over_http(base: str, name: str, day: date, body: str, **fields: str) -> None:
    client = sign_in(base, name)
    page = client.get(f"/editions/{day.isoformat()}")
    current = dict(re.findall(r'<input id="f-(\w+)" name="\w+" value="([^"]*)"', page.text))
    found = re.search(r'name="base" value="([^"]*)"', page.text)
    assert found
    data = {**current, "compiled": current.get("compiled") or f"{day.isoformat()} 13:00", "status": "draft",
            **fields, "body": body, "base": found.group(1), "csrf": csrf_of(page.text)}
    assert client.post(f"/editions/{day.isoformat()}/save", data=data).status_code == 303


def test_a_confirmation_is_shown_once_and_not_repeated_by_the_address(console: WebProcess) -> None:
    """The fast twin of the browser test: over HTTP, no query parameter, one showing."""
    day = TOMORROW + timedelta(days=3)
    save_over_http(console.base, "anna", day, BODY)
    bo = sign_in(console.base, "bo")
    page = bo.get(f"/editions/{day.isoformat()}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen
    done = bo.post(f"/editions/{day.isoformat()}/approve", data={"csrf": csrf_of(page.text), "seen": seen.group(1)})
    assert done.status_code == 303 and done.headers["location"] == f"/editions/{day.isoformat()}"
    first = bo.get(done.headers["location"]).text
    assert re.search(r'<p class="ok" data-announce>Godkänd \d\d:\d\d\.</p>', first)
    again = bo.get(done.headers["location"]).text
    assert "Godkänd " not in re.sub(r"Godkänd av", "", again.split('id="status"')[1].split("</div>")[0])
    # Another browser of the same person has its own session: it never saw the confirmation.
    assert 'class="ok"' not in sign_in(console.base, "bo").get(f"/editions/{day.isoformat()}").text


def test_an_approval_ahead_voided_by_the_edition_sent_before_it_says_what_else_changed(
        console: WebProcess, project: Project) -> None:
    """Tomorrow's edition approved today: when today's goes out, what tomorrow's marks "Nytt" is
    counted against it, and the approval (bound to all the reader sees) is void. The walk of issue
    32 found the approver told "texten eller mejlets mallar" changed and "Ingen skillnad i texten"."""
    save_over_http(console.base, "anna", TOMORROW, BODY)
    bo = sign_in(console.base, "bo")
    page = bo.get(f"/editions/{TOMORROW.isoformat()}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen
    assert bo.post(f"/editions/{TOMORROW.isoformat()}/approve",
                   data={"csrf": csrf_of(page.text), "seen": seen.group(1)}).status_code == 303
    today = datetime.now(STOCKHOLM).date()
    write_edition(project, today, compiled="00:00")
    assert project.run("approve", "--date", today.isoformat(), "--by", "bo").returncode == 0
    assert project.run("send", "--date", today.isoformat()).returncode == 0
    page = bo.get(f"/editions/{TOMORROW.isoformat()}")
    state = page.text.split('class="state')[1].split("</p>")[0]
    assert "måste godkännas på nytt" in state and "vad som är nytt sedan förra utskicket" in state, state
    since = page.text.split('id="since-approval"')[1].split("</section>")[0]
    assert "Ingen skillnad i texten eller uppgifterna" in since and "markeringarna Nytt och Ändrat" in since, since


@pytest.mark.slow  # Chromium, two people; fast twins: the two tests above
def test_the_approver_sees_once_that_he_approved_and_then_what_changed_since(console: WebProcess, chromium: object) -> None:
    from playwright.sync_api import expect

    day = TOMORROW
    save_over_http(console.base, "anna", day, BODY, subject="Läget på SÄS")

    # bo on his phone (bypass_csp: axe is injected as an inline script at the end)
    approver = chromium.new_context(viewport={"width": 375, "height": 740}, bypass_csp=True).new_page()  # type: ignore[attr-defined]
    browser_sign_in(approver, console.base, "bo", f"/editions/{day.isoformat()}")
    approver.get_by_role("button", name="Godkänn", exact=True).click()
    status = approver.locator("#status")
    expect(status).to_have_text(re.compile(r"Godkänd \d\d:\d\d\."))
    expect(approver.locator("#status p")).to_be_focused()
    approver.reload()
    expect(approver.locator(".standing .state")).to_contain_text("Godkänd av bo")
    expect(status).to_have_text("")  # a reload: the state only, no success message

    anna = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()  # type: ignore[attr-defined]  # a person of her own
    browser_sign_in(anna, console.base, "anna", f"/editions/{day.isoformat()}")
    anna.get_by_label("Innehåll").fill(BODY.replace("stabilt", "ansträngt"))
    anna.get_by_label("Rubrik i inkorgen (tomt = standard)").fill("Läget på SÄS och NÄL")
    # A second field with a long value: the walk found two changed fields wider than a phone.
    anna.get_by_label("Nyhet i ämnesraden (tomt = rapportens namn)").fill(HEADLINE)
    expect(anna.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    anna.get_by_role("button", name="Spara").click()
    expect(anna.locator("#status")).to_contain_text("Sparad")

    approver.reload()
    expect(approver.locator(".standing .state")).to_contain_text("ändrades efter godkännandet av bo")
    expect(status).to_have_text("")  # no "Godkänd 14:20." above "måste godkännas på nytt"
    since = approver.locator("#since-approval")
    expect(since.locator("del")).to_have_text(["Läget på SÄS", "stabilt"])  # the fields first, then the text
    expect(since.locator("ins")).to_have_text(["Läget på SÄS och NÄL", HEADLINE, "ansträngt"])
    expect(since.locator("dt")).to_have_text(["Rubrik i inkorgen", "Nyhet i ämnesraden"])
    past_the_edge = since.evaluate("s => [s, ...s.querySelectorAll('*')].filter(e =>"
                                   " e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
                                   ".map(e => e.tagName + ' ' + e.textContent.slice(0, 40))")
    assert past_the_edge == [], f"the changed fields fit the phone: {past_the_edge}"
    assert approver.evaluate("() => document.documentElement.scrollWidth") <= 375
    shown = since.inner_text()
    assert "---" not in shown and "status:" not in shown and "subject:" not in shown, shown
    assert approver.get_by_role("button", name="Godkänn", exact=True).count() == 1
    if shots := os.environ.get("DISPATCH_SCREENS_DIR"):  # for a person to look at
        since.screenshot(path=f"{shots}/phone-since-approval.png")
    if AXE.exists():  # where axe-core is installed (CI): the page with the diff has no serious violation
        assert axe_violations(approver) == {}


# -- phones ---------------------------------------------------------------------------------------

URGENT = "---\nsubject: SÄS akutmottagning stänger 16:00\n---\n\nSÄS akutmottagning stänger **klockan 16:00** i dag.\n"

# Every element of the page whose content is wider than its box (it would scroll sideways, or
# spill past the screen's edge), named for the failure message.
WIDER_THAN_THEIR_BOX = """() => Array.from(document.querySelectorAll('*'))
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).display !== 'inline')
  .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} ${e.scrollWidth}>${e.clientWidth}`)"""

# A stacked cell shown with its column's name and no value (a sign-in has no content hash).
LABEL_ALONE = """() => Array.from(document.querySelectorAll('td[data-label]'))
  .filter(td => td.getClientRects().length && !td.textContent.trim()).map(td => td.dataset.label)"""


def sent_days(project: Project, smtp_server: SMTPServer) -> list[str]:
    """Several dispatches, sent through a real relay by the command line: three editions of past
    days (one a second revision), a test to one person and an urgent message."""
    project.use_smtp(smtp_server)
    today = datetime.now(STOCKHOLM).date()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    for day in days:
        write_edition(project, day)
        assert project.run("send", "--date", day.isoformat()).returncode == 0
    path = project.root / "akut.md"
    path.write_text(URGENT, encoding="utf-8")
    assert project.run("send", "--urgent", "--file", str(path), "--by", "olle").returncode == 0
    assert project.run("send", "--date", days[0].isoformat(), "--to", "olle@example.org").returncode in (0, 3)
    history = json.loads(project.run("history", "--json").stdout)
    names = [entry["dispatch"] for entry in history["dispatches"]]
    assert len(names) >= 5, names
    return names


@pytest.mark.slow  # Chromium at a phone's width
def test_history_recipients_and_the_log_fit_a_phone_with_labels_not_names(
        project: Project, smtp_server: SMTPServer, chromium: object) -> None:
    project.set_config(approval="front_matter")
    names = sent_days(project, smtp_server)
    add_users(project, ("anna", "bo", "olle"))
    web = WebProcess(project)
    try:
        save_over_http(web.base, "anna", TOMORROW, BODY)  # the log: sign-ins and a save besides the sends
        page = phone(chromium)
        browser_sign_in(page, web.base, "olle", "/history")
        for path, wanted, rows in (("/history", "Rapporten", 5), ("/recipients", "Politisk ledning", 2),
                                   ("/audit", "mottagare", 10)):
            page.goto(web.base + path)  # type: ignore[attr-defined]
            assert wanted in page.inner_text("main")  # type: ignore[attr-defined]
            assert page.locator("tbody tr").count() >= rows, f"{path}: real data in it"  # type: ignore[attr-defined]
            if os.environ.get("DISPATCH_SCREENS_DIR"):  # the figures, for a person to read
                print(path, page.evaluate("() => [document.querySelectorAll('*').length, document.documentElement.scrollWidth,"  # type: ignore[attr-defined]
                                          " document.querySelectorAll('tbody tr').length]"))
            wide = page.evaluate(WIDER_THAN_THEIR_BOX)  # type: ignore[attr-defined]
            assert wide == [], f"{path}: these scroll sideways at 375 px: {wide}"
            alone = page.evaluate(LABEL_ALONE)  # type: ignore[attr-defined]
            assert alone == [], f"{path}: a column's name with nothing after it: {alone}"
            shown = page.inner_text("body")  # type: ignore[attr-defined]  # collapsed <details> are not rendered
            assert not [name for name in names if name in shown], f"{path} shows a dispatch's internal name"
        # One dispatch's recipients (and a run's undelivered ones, the same cards): the walk of
        # issue 32 found their replies past the phone's edge in a sideways-scrolling table.
        page.goto(f"{web.base}/history/{names[0]}")  # type: ignore[attr-defined]
        assert page.locator("tbody tr").count() >= 2  # type: ignore[attr-defined]
        wide = page.evaluate(WIDER_THAN_THEIR_BOX)  # type: ignore[attr-defined]
        assert wide == [], f"a dispatch's page scrolls sideways at 375 px: {wide}"
        assert page.evaluate(LABEL_ALONE) == []  # type: ignore[attr-defined]
        page.goto(web.base + "/history")  # type: ignore[attr-defined]
        if shots := os.environ.get("DISPATCH_SCREENS_DIR"):  # for a person to look at
            for path in ("/history", "/recipients", "/audit"):
                page.goto(web.base + path)  # type: ignore[attr-defined]
                page.screenshot(path=f"{shots}/phone{path.replace('/', '-')}.png", full_page=True)  # type: ignore[attr-defined]
            page.goto(web.base + "/history")  # type: ignore[attr-defined]
        # The numbers are in view: each count's cell lies within the screen.
        for cell in page.locator("td.count").all():  # type: ignore[attr-defined]
            box = cell.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
        assert page.locator("details.technical").first.inner_text() == "Tekniska detaljer"  # type: ignore[attr-defined]
    finally:
        web.stop()


@pytest.mark.slow  # Chromium at a phone's width
def test_the_urgent_preview_follows_the_typing_and_the_confirmation_step_takes_focus(
        console: WebProcess, chromium: object) -> None:
    from playwright.sync_api import expect

    page = phone(chromium)
    browser_sign_in(page, console.base, "olle", "/urgent")
    page.get_by_label("Innehåll").fill("SÄS akutmottagning stänger klockan 16:00.")  # type: ignore[attr-defined]
    preview = page.frame_locator("#preview iframe").first  # type: ignore[attr-defined]
    expect(preview.locator("body")).to_contain_text("SÄS akutmottagning stänger", timeout=10_000)  # no subject yet
    page.get_by_label("Ämne").fill("Akutmottagningen stänger")  # type: ignore[attr-defined]
    expect(preview.locator("body")).to_contain_text("Akutmottagningen stänger", timeout=10_000)
    page.get_by_role("button", name="Skicka brådskande").click()  # type: ignore[attr-defined]
    confirm = page.locator("#urgent-confirm")  # type: ignore[attr-defined]
    expect(confirm).to_be_focused()
    expect(confirm).to_be_in_viewport()
    expect(page.get_by_role("button", name="Bekräfta")).to_be_in_viewport()  # type: ignore[attr-defined]

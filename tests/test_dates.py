"""Issue 32, "dates that cannot mislead": an edition may be written, checked and approved ahead of
its day, but not sent before its 'compiled' time (by `send`, `send --dry-run`, the console's
"Skicka nu" or the schedule); a new edition's 'compiled' defaults to now only for today's
edition, else to the schedule's slot on its day; Idag says that a sent edition went out. And two
findings of a walk at the command line: `check` records nobody as an editor (see
test_change_control.py::test_check_records_nobody_as_the_editor), and a missing edition file
is named without a line."""

from __future__ import annotations

import email
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email import policy
from typing import TYPE_CHECKING

import pytest

import consolekit
from conftest import STOCKHOLM, FakeClock, Project, body_text, set_schedule, unit_of, write_edition
from consolekit import add_users, browser_sign_in, console_in_thread, csrf_of, four_eyes_console, sign_in
from dispatch import app
from dispatch.app.drafting import default_compiled
from dispatch.config import load_settings
from dispatch.wording import swedish

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

chromium = consolekit.chromium  # the shared module-scoped fixture

BODY = "## Beskrivning av händelsen\n\n- Återstarten av journalsystemet på SÄS går enligt plan.\n"


def local(day: date, hhmm: str) -> datetime:
    hour, minute = hhmm.split(":")
    return datetime(day.year, day.month, day.day, int(hour), int(minute), tzinfo=STOCKHOLM)


def today_and_tomorrow() -> tuple[date, date]:
    today = datetime.now(STOCKHOLM).date()
    return today, today + timedelta(days=1)


def sent_nothing(project: Project) -> bool:
    """No dispatch in the ledger and no message in the outbox."""
    history = project.run("history", "--json")
    assert history.returncode == 0, history.stderr
    outbox = project.root / "var" / "outbox" / "new"
    return json.loads(history.stdout)["dispatches"] == [] and not (outbox.exists() and any(outbox.iterdir()))


# -- the command line (the real clock: tomorrow's edition is always ahead of it) ----------------------


def test_tomorrows_edition_checks_and_approves_today_but_send_and_dry_run_refuse_it(project: Project) -> None:
    project.set_config(approval="four_eyes")
    today, tomorrow = today_and_tomorrow()
    write_edition(project, tomorrow, compiled="14:00")  # the schedule's slot ("0 14 * * *")

    check = project.run("check", "--date", tomorrow.isoformat())
    assert check.returncode == 0, check.stderr
    assert (f"note: the edition of {tomorrow} is compiled for {tomorrow} 14:00: send refuses it until then; "
            "the schedule 'daily' sends it then") in check.stderr
    approved = project.run("approve", "--date", tomorrow.isoformat(), "--by", "Anna")
    assert approved.returncode == 0, approved.stderr

    for args in (("send", "--dry-run"), ("send",)):
        refused = project.run(*args, "--date", tomorrow.isoformat())
        assert refused.returncode == 1, refused.stderr
        line = (f"reports/{tomorrow}.md:2: the edition of {tomorrow} is compiled for {tomorrow} 14:00, and it is "
                f"{today} ")
        assert line in refused.stderr, refused.stderr
        assert f"it cannot be sent before {tomorrow} 14:00; the schedule 'daily' sends it then" in refused.stderr
        assert "would send" not in refused.stderr
    assert sent_nothing(project)

    # Today's edition, compiled at 00:00: check says nothing of its time, and a dry run plans it.
    write_edition(project, today, compiled="00:00")
    assert project.run("approve", "--date", today.isoformat(), "--by", "Anna").returncode == 0
    check = project.run("check", "--date", today.isoformat())
    assert check.returncode == 0, check.stderr
    assert "is compiled for" not in check.stderr and "ready to send: approved by Anna" in check.stderr
    dry = project.run("send", "--dry-run", "--date", today.isoformat())
    assert dry.returncode == 0, dry.stderr
    assert "would send" in dry.stderr


def test_a_test_send_and_an_urgent_message_are_not_held_to_a_compiled_time(project: Project) -> None:
    _, tomorrow = today_and_tomorrow()
    write_edition(project, tomorrow, compiled="14:00")
    test = project.run("send", "--date", tomorrow.isoformat(), "--to", "redaktion@example.org")
    assert test.returncode == 0, test.stderr  # an editor tries tomorrow's edition on herself today
    urgent = project.root / "brådskande.md"
    urgent.write_text(f"---\nsubject: Brådskande\ncompiled: {tomorrow} 14:00\n---\n\nNytt läge.\n", encoding="utf-8")
    sent = project.run("send", "--urgent", "--file", str(urgent))
    assert sent.returncode == 0, sent.stderr


def test_a_missing_edition_is_named_without_a_line(project: Project) -> None:
    checked = project.run("check", "--date", "2031-01-01")
    assert checked.returncode == 1
    assert "reports/2031-01-01.md: no edition for 2031-01-01; write it or pass --date" in checked.stderr.splitlines()
    assert ":1:" not in checked.stderr


# -- the rules, in this process with the clock injected ------------------------------------------------


def test_a_new_editions_compiled_is_now_only_today_else_the_schedules_slot_on_its_day(project: Project) -> None:
    now = local(date(2026, 12, 7), "14:18")
    settings = load_settings(project.config_path)
    assert default_compiled(settings, date(2026, 12, 7), now) == "2026-12-07 14:18"
    assert default_compiled(settings, date(2026, 12, 8), now) == "2026-12-08 14:00"
    assert default_compiled(settings, date(2026, 12, 4), now) == "2026-12-04 14:00", "a past day's slot too"
    set_schedule(project, cron="30 2 * * 1-5")  # weekdays, 02:30: 2027-03-28 (a Sunday) has no run
    settings = load_settings(project.config_path)
    assert default_compiled(settings, date(2027, 3, 26), now) == "2027-03-26 02:30"
    assert default_compiled(settings, date(2027, 3, 28), now) == "2027-03-28 00:00", "no schedule that day"
    set_schedule(project, cron="30 2 * * *")  # 2027-03-28 02:30 does not exist: the run is at 03:00
    settings = load_settings(project.config_path)
    assert default_compiled(settings, date(2027, 3, 28), now) == "2027-03-28 03:00"


def test_an_edition_may_go_from_its_compiled_minute_and_urgent_messages_at_any_time(project: Project) -> None:
    day = date(2026, 12, 8)
    write_edition(project, day, compiled="14:00")
    settings = load_settings(project.config_path)
    unit = unit_of(settings)
    try:
        edition = app.read_edition(unit, day, None, local(day, "13:00"))
        early = app.too_early(settings, edition, local(day, "13:59"))
        assert early is not None and early.schedule == "daily" and early.slot == local(day, "14:00")
        assert swedish(early.refusal) == ("rapporten för 2026-12-08 är sammanställd 2026-12-08 14:00, men idag är det "
                                          "2026-12-08: den kan skickas tidigast 2026-12-08 14:00; schemat daily skickar den då")
        assert app.too_early(settings, edition, local(day, "14:00")) is None, "the slot at the compiled time sends it"
        later = app.too_early(settings, edition, local(date(2026, 12, 7), "14:18"))
        assert later is not None and swedish(later.refusal).startswith(
            "rapporten för 2026-12-08 är sammanställd 2026-12-08 14:00, men idag är det 2026-12-07")
    finally:
        unit.app.close()


def test_the_schedule_sends_at_the_compiled_time_and_not_before(project: Project) -> None:
    from dispatch.app.service import Service

    day = date(2026, 12, 8)
    write_edition(project, day, compiled="14:00")
    keeper = Service(load_settings(project.config_path), clock=FakeClock(local(day, "14:00")))
    try:
        result = keeper.fire("daily", local(day, "14:00"))
        assert result is not None and result.complete, "a slot at the compiled time sends"
    finally:
        keeper.close()
    later = day + timedelta(days=1)
    write_edition(project, later, compiled="14:05")  # the editor set a time after the slot
    keeper = Service(load_settings(project.config_path), clock=FakeClock(local(later, "14:00")))
    try:
        assert keeper.fire("daily", local(later, "14:00")) is None, "not before its compiled time"
    finally:
        keeper.close()
    history = project.run("history", "--json").stdout
    assert f'"{day}.r1.edition"' in history and f"{later}.r1" not in history
    mails = [email.message_from_bytes(path.read_bytes(), policy=policy.default)
             for path in (project.root / "var" / "outbox" / "new").iterdir()]
    [alert] = [m for m in mails if m["Subject"] == f"Rapporten för {later} kunde inte skickas kl 14:00"]
    assert f"kan skickas tidigast {later} 14:05; schemat daily går {later} 14:00, före den tiden" in body_text(alert)


# -- the console, with the clock injected (the fast twin of the browser test below) ---------------------


@pytest.fixture
def console_at(project: Project) -> Iterator[tuple[str, FakeClock]]:
    """The console on 2026-12-07 at 14:18 (the walk's day), front-matter approval."""
    add_users(project, ("anna", "olle"))
    clock = FakeClock(local(date(2026, 12, 7), "14:18"))
    with console_in_thread(load_settings(project.config_path), clock) as base:
        yield base, clock


def test_skicka_nu_for_tomorrows_edition_says_so_and_offers_no_confirmation(project: Project,
                                                                              console_at: tuple[str, FakeClock]) -> None:
    base, _ = console_at
    olle = sign_in(base, "olle")
    # A new edition's form: tomorrow's compiled time is the schedule's slot, today's is now.
    assert 'name="compiled" value="2026-12-08 14:00"' in olle.get("/editions/2026-12-08").text
    assert 'name="compiled" value="2026-12-07 14:18"' in olle.get("/editions/2026-12-07").text
    write_edition(project, date(2026, 12, 8), compiled="14:00")
    edition_page = olle.get("/editions/2026-12-08").text
    assert re.search(r'href="/editions/2026-12-08/send">Skicka nu</a>', edition_page), "approved: the button is there"
    refused = olle.get("/editions/2026-12-08/send")
    assert refused.status_code == 409
    alert = re.search(r'<p class="error" role="alert">(.*?)</p>', refused.text, re.S)
    assert alert, refused.text
    assert "2026-12-08" in alert.group(1) and "idag är det 2026-12-07" in alert.group(1)
    assert "kan skickas tidigast 2026-12-08 14:00" in alert.group(1)
    assert "Bekräfta" not in refused.text
    started = olle.post("/editions/2026-12-08/send", data={"csrf": csrf_of(edition_page), "expected": "2026-12-08.r1.edition"})
    assert started.status_code == 409, "a forged confirmation sends nothing either"
    assert sent_nothing(project)
    write_edition(project, date(2026, 12, 7), compiled="09:00")
    confirm = olle.get("/editions/2026-12-07/send")
    assert confirm.status_code == 200 and 'class="error" role="alert"' not in confirm.text and "Bekräfta" in confirm.text


def test_idag_says_a_sent_edition_went_out_not_that_its_slot_is_next(project: Project,
                                                                      console_at: tuple[str, FakeClock]) -> None:
    base, clock = console_at
    day = date(2026, 12, 7)
    clock.moment = local(day, "09:30")  # before the day's slot (14:00): Idag's card is that day's
    write_edition(project, day, compiled="09:00")
    olle = sign_in(base, "olle")
    before = olle.get("/").text
    assert "<dt>Nästa utskick</dt><dd>2026-12-07 14:00</dd>" in before.replace("\n", "")
    settings = load_settings(project.config_path)
    unit = unit_of(settings, clock)
    try:  # sent by hand at 10:00, after its compiled 09:00 and before the slot at 14:00
        clock.moment = local(day, "10:00")
        ready = app.prepare_edition(unit, app.read_edition(unit, day, None, clock.now()), clock.now())
        assert app.send(unit, ready, clock).complete
    finally:
        unit.app.close()
    clock.moment = local(day, "10:30")
    after = sign_in(base, "olle").get("/").text  # (an hour on: a new session)
    assert "rapporten 2026-12-07" in after, after
    card = after[after.index("rapporten 2026-12-07"):]
    card = card[:card.index("</li>")]
    assert "Nästa utskick" not in card and "Godkänn senast" not in card, card
    assert re.search(r"<dt>Skickad</dt><dd[^>]*>2026-12-07 10:00</dd>", card), card


# -- the browser: approver and operator, four eyes ---------------------------------------------------------


def save_over_http(base: str, day: date, compiled: str | None = None) -> None:
    """anna writes the edition of ``day`` in the console (its default compiled time unless given)."""
    anna = sign_in(base, "anna")
    page = anna.get(f"/editions/{day.isoformat()}")
    shown = re.search(r'name="compiled" value="([^"]*)"', page.text)
    base_hash = re.search(r'name="base" value="([^"]*)"', page.text)
    assert shown and base_hash
    saved = anna.post(f"/editions/{day.isoformat()}/save", data={
        "compiled": compiled or shown.group(1), "status": "draft", "body": BODY, "base": base_hash.group(1),
        "csrf": csrf_of(page.text)})
    assert saved.status_code == 303, saved.text


def approve_in_browser(page: Page, base: str, day: date) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/editions/{day.isoformat()}")
    page.get_by_role("button", name="Godkänn").click()
    expect(page.locator(".state")).to_have_attribute("data-state", "approved")


@pytest.mark.slow  # a console process and two browsers; fast twin: test_skicka_nu_for_tomorrows_edition_says_so_and_offers_no_confirmation
def test_tomorrows_edition_approved_today_is_not_sent_by_skicka_nu_and_todays_is(project: Project, chromium: Browser) -> None:
    from playwright.sync_api import expect

    today, tomorrow = today_and_tomorrow()
    with four_eyes_console(project, ("anna", "bo", "olle")) as web:
        save_over_http(web.base, tomorrow)  # its default compiled time: tomorrow at the slot
        approver = chromium.new_context(viewport={"width": 375, "height": 800}).new_page()
        browser_sign_in(approver, web.base, "bo", f"/editions/{tomorrow.isoformat()}")
        expect(approver.locator("#f-compiled")).to_have_value(f"{tomorrow} 14:00")
        approve_in_browser(approver, web.base, tomorrow)

        operator = chromium.new_context(viewport={"width": 375, "height": 800}).new_page()
        browser_sign_in(operator, web.base, "olle", f"/editions/{tomorrow.isoformat()}")
        operator.get_by_role("link", name="Skicka nu").click()
        alert = operator.get_by_role("alert")
        expect(alert).to_contain_text(f"rapporten för {tomorrow.isoformat()}", ignore_case=True)
        expect(alert).to_contain_text(f"idag är det {today.isoformat()}")
        expect(alert).to_contain_text(f"kan skickas tidigast {tomorrow.isoformat()} 14:00")
        expect(operator.get_by_role("button", name="Bekräfta")).to_have_count(0)
        assert sent_nothing(project)

        save_over_http(web.base, today, compiled=f"{today} 00:00")  # today's, whose time has come
        approve_in_browser(approver, web.base, today)
        operator.goto(f"{web.base}/editions/{today.isoformat()}")
        operator.get_by_role("link", name="Skicka nu").click()
        expect(operator.get_by_role("button", name="Bekräfta")).to_be_visible()
        expect(operator.get_by_role("alert")).to_have_count(0)
        assert sent_nothing(project), "nothing until Bekräfta"

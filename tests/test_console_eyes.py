"""Issue 32, acceptance 2-4: four eyes in the console whatever the approval mode, and what
changed since the approval, also against what the same lists last got.

- With the shipped config (``approval: front_matter``: the file's status field is the approval)
  the person who saved a text has no control that approves it (no "Godkänn", no status field
  offering "Godkänd"), and the server refuses the status if it is posted by hand; another
  approver has the control; approvers and operators see a standing warning that approval is
  not recorded, with how to turn on ``approval: four_eyes``.
- An approver whose approval a change voided sees the change against the content he approved
  and against what was last sent to the same lists (read from the ledger, not the file), word
  by word, fields by label, no YAML; a reload shows no repeated confirmation.

A real `dispatch web` process, a real SMTP server (aiosmtpd) for the sends, Playwright on the
system Chromium with each person in a browser context of their own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

import consolekit
from conftest import STOCKHOLM, Project, SMTPServer, write_edition
from consolekit import WebProcess, add_users, browser_sign_in, csrf_of, sign_in
from test_accessibility import AXE, axe_violations

TOMORROW = (datetime.now(STOCKHOLM) + timedelta(days=1)).date()
BODY = ("## Beskrivning av händelsen\n\n"
        "- Läget på SÄS är stabilt sedan i morse.\n"
        "- Omdirigeringen till NÄL fortsätter.\n")
PEOPLE = ("anna", "bo", "dora", "olle")  # an editor, two approvers, an operator

chromium = consolekit.chromium  # the shared module-scoped fixture


@pytest.fixture
def shipped(project: Project) -> Iterator[WebProcess]:
    """The console on the shipped config.yaml as it is (approval: front_matter)."""
    assert project.config().get("approval", "front_matter") == "front_matter", "the shipped config keeps front_matter"
    add_users(project, PEOPLE)
    web = WebProcess(project)
    try:
        yield web
    finally:
        web.stop()


def edition_page(client: httpx.Client, day: date) -> str:
    page = client.get(f"/editions/{day.isoformat()}")
    assert page.status_code == 200, page.status_code
    return page.text


def form_of(page: str) -> dict[str, str]:
    """What the edition page's form would post as it stands (its status only where it shows one)."""
    fields = {key: html.unescape(value) for key, value in re.findall(r'<input id="f-(\w+)" name="\w+" value="([^"]*)"', page)}
    body = re.search(r'<textarea id="f-body"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    base = re.search(r'name="base" value="([^"]*)"', page)
    assert body and base
    status = re.search(r'<option value="(\w+)" selected>', page)
    if status:
        fields["status"] = status.group(1)
    return {**fields, "body": html.unescape(body.group(1)), "base": base.group(1), "csrf": csrf_of(page)}


def save(client: httpx.Client, day: date, **changes: str) -> httpx.Response:
    form = form_of(edition_page(client, day))
    form.setdefault("compiled", f"{day.isoformat()} 13:00")
    if not form["compiled"]:
        form["compiled"] = f"{day.isoformat()} 13:00"
    return client.post(f"/editions/{day.isoformat()}/save", data={**form, **changes})


def status_in_file(project: Project, day: date) -> str:
    text = (project.root / "reports" / f"{day.isoformat()}.md").read_text(encoding="utf-8")
    found = re.search(r"^status: (\w+)$", text, re.MULTILINE)
    return found.group(1) if found else ""


def offers_approval(page: str) -> bool:
    """Whether the page holds any control that approves: the button, or a status option."""
    return "Godkänn</button>" in page or '<option value="approved"' in page or 'id="f-status"' in page


def approvals_logged(project: Project, day: date) -> list[tuple[str, str]]:
    from conftest import unit_of
    from dispatch.config import load_settings

    unit = unit_of(load_settings(project.config_path))
    try:
        return [(entry.user, entry.action) for entry in unit.ledger.audit_log(100, action="approve", target=day.isoformat())]
    finally:
        unit.app.close()


# -- 2. the shipped config: the status field is offered on the four-eyes terms -----------------------


def test_front_matter_mode_the_last_editor_cannot_approve_by_the_status_field_and_another_approver_can(
        shipped: WebProcess, project: Project, smtp_server: SMTPServer) -> None:
    """The fast twin of the browser test below: the same rule over HTTP, the hand-made POSTs
    included, and the approved edition goes out by `dispatch send` through a real relay (an
    edition of a past day: one compiled in the future is not sent before its time)."""
    day = TOMORROW - timedelta(days=6)
    anna, bo, dora, olle = (sign_in(shipped.base, name) for name in PEOPLE)
    assert save(anna, day, body=BODY).status_code == 303
    page = edition_page(anna, day)
    assert not offers_approval(page) and "<strong>Status</strong><br>Utkast" in page
    # An editor posting the status by hand: refused, in Swedish, nothing written.
    forged = save(anna, day, status="approved")
    assert forged.status_code == 409 and "anna har inte rätt att godkänna" in forged.text, forged.text[-2000:]
    assert status_in_file(project, day) == "draft"

    # bo, an approver, changes a word: now he is the text's last editor.
    assert save(bo, day, body=BODY.replace("stabilt", "ansträngt")).status_code == 303
    page = edition_page(bo, day)
    assert not offers_approval(page), "no status field offering Godkänd to the text's last editor"
    assert "Du har själv sparat den här texten" in page
    own = save(bo, day, status="approved")
    assert own.status_code == 409 and "bo har själv skrivit den här versionen och kan inte också godkänna den" in own.text
    assert 'role="alert"' in own.text and "<strong>Status</strong><br>Utkast" in own.text, "the text kept, as a draft"
    changed = save(bo, day, status="approved", body=BODY.replace("stabilt", "kritiskt"))
    assert changed.status_code == 409 and "bo ändrar texten och kan därför inte också godkänna den" in changed.text
    assert status_in_file(project, day) == "draft" and "ansträngt" in (project.root / f"reports/{day}.md").read_text()
    assert approvals_logged(project, day) == [], "nothing approved"

    # dora, another approver, has the control, and her status is an approval (not authorship).
    page = edition_page(dora, day)
    assert '<option value="approved">Godkänd</option>' in page and "Godkänn</button>" not in page
    assert save(dora, day, status="approved").status_code == 303
    assert status_in_file(project, day) == "approved"
    assert "by: \"bo\"" in (project.root / f"reports/{day}.md").read_text(), "bo stays the text's editor"
    assert approvals_logged(project, day) == [("dora", "approve")]
    assert "Godkänd</option>" not in edition_page(bo, day), "still nothing that approves for bo"

    # The warning: for those who may approve (approvers, operators), on the edition and once on Idag.
    for client in (bo, olle):
        assert len(re.findall(r'role="alert" id="approval-not-recorded"', edition_page(client, day))) == 1
        today = client.get("/").text
        assert len(re.findall(r'role="alert" id="approval-not-recorded"', today)) == 1
        assert "approval: four_eyes" in today and "config.yaml" in today
    assert "approval-not-recorded" not in edition_page(anna, day), "an editor neither approves nor sends"

    # What the status field approved goes out with one command, through a real relay.
    project.use_smtp(smtp_server)
    sent = project.run("send", "--date", day.isoformat())
    assert sent.returncode == 0, sent.stderr
    assert smtp_server.handler.reports(), "delivered"

    # A later change by anna, who cannot set the status: the approval is void, the file a draft again.
    later = day + timedelta(days=1)
    assert save(dora, later, body=BODY).status_code == 303
    assert save(bo, later, status="approved").status_code == 303 and status_in_file(project, later) == "approved"
    page = edition_page(anna, later)
    assert "<strong>Status</strong><br>Godkänd" in page and "Sparar du en ändring blir rapporten ett utkast igen" in page
    assert save(anna, later, body=BODY.replace("fortsätter", "har upphört")).status_code == 303
    assert status_in_file(project, later) == "draft"


def test_the_quick_starts_sample_goes_out_with_one_command_on_the_shipped_config(project: Project) -> None:
    """The shipped config keeps front_matter so that the bundled sample (status: approved) goes
    out with `dispatch send`, no account and no approval step (here into the shipped Maildir)."""
    assert project.config().get("approval", "front_matter") == "front_matter"
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    assert list((project.root / "var" / "outbox" / "new").iterdir())


@pytest.mark.slow  # Chromium, three people; fast twin: test_front_matter_mode_the_last_editor_cannot_approve_...
def test_shipped_config_the_editor_who_saved_has_no_control_that_approves_another_approver_has(
        shipped: WebProcess, chromium: Any) -> None:
    from playwright.sync_api import expect

    day = TOMORROW
    # bypass_csp: axe is injected as an inline script at the end
    bo = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
    browser_sign_in(bo, shipped.base, "bo", f"/editions/{day.isoformat()}")
    bo.get_by_label("Innehåll").fill(BODY)
    expect(bo.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    bo.get_by_role("button", name="Spara").click()
    expect(bo.locator("#status")).to_contain_text("Sparad")
    # bo may approve, but not what he saved: no "Godkänn", no status field, no option "Godkänd".
    expect(bo.get_by_role("button", name="Godkänn")).to_have_count(0)
    expect(bo.get_by_label("Status")).to_have_count(0)
    expect(bo.get_by_role("option", name="Godkänd")).to_have_count(0)
    expect(bo.locator("#f-status-text")).to_contain_text("Utkast")

    dora = chromium.new_context(viewport={"width": 375, "height": 740}).new_page()
    browser_sign_in(dora, shipped.base, "dora", f"/editions/{day.isoformat()}")
    expect(dora.get_by_role("alert")).to_contain_text("approval: four_eyes")
    dora.get_by_label("Status").select_option(label="Godkänd")
    expect(dora.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    dora.get_by_role("button", name="Spara").click()
    expect(dora.locator("#status")).to_contain_text("Sparad")
    expect(dora.locator(".standing .state")).to_contain_text("Godkänd")
    dora.reload()
    expect(dora.locator("#status")).to_have_text("")  # a reload: the state only, no repeated confirmation

    olle = chromium.new_context(viewport={"width": 375, "height": 740}, bypass_csp=True).new_page()
    browser_sign_in(olle, shipped.base, "olle", "/")
    warning = olle.locator("#approval-not-recorded")
    expect(warning).to_have_count(1)
    expect(warning).to_have_attribute("role", "alert")
    expect(warning).to_contain_text("Godkännanden registreras inte")
    olle.goto(f"{shipped.base}/editions/{day.isoformat()}")
    expect(olle.get_by_role("alert")).to_contain_text("approval: four_eyes")
    if AXE.exists():  # where axe-core is installed (CI): the warning and the status field pass axe
        assert axe_violations(olle) == {}

    bo.reload()
    expect(bo.get_by_role("option", name="Godkänd")).to_have_count(0)
    expect(bo.locator("#f-status-text")).to_contain_text("Godkänd")
    if AXE.exists():
        assert axe_violations(bo) == {}


# -- 3 and 4. what changed since the approval, and against what the same lists last got ---------------


@pytest.fixture
def four_eyes(project: Project, smtp_server: SMTPServer) -> Iterator[tuple[WebProcess, date]]:
    """A four-eyes console whose lists already got yesterday's edition (before TOMORROW) through
    a real relay; the file of that edition is changed afterwards, so that only the ledger holds
    what was sent."""
    project.use_smtp(smtp_server)
    earlier = TOMORROW - timedelta(days=2)  # yesterday: sent, its compiled time long past
    write_edition(project, earlier)
    with consolekit.four_eyes_console(project, PEOPLE) as web:
        assert project.run("approve", "--date", earlier.isoformat(), "--by", "dora").returncode == 0
        sent = project.run("send", "--date", earlier.isoformat())
        assert sent.returncode == 0, sent.stderr
        path = project.root / "reports" / f"{earlier.isoformat()}.md"
        path.write_text(path.read_text(encoding="utf-8").replace("Millennium", "FILEN-PÅ-DISKEN"), encoding="utf-8")
        yield web, earlier


def voided_by_a_change(base: str, day: date) -> httpx.Client:
    """anna writes, bo approves, anna changes a word and a field; bo's client is returned."""
    anna, bo = sign_in(base, "anna"), sign_in(base, "bo")
    assert save(anna, day, body=BODY, subject="Läget på SÄS").status_code == 303
    page = edition_page(bo, day)
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page)
    assert seen
    assert bo.post(f"/editions/{day.isoformat()}/approve", data={"csrf": csrf_of(page), "seen": seen.group(1)}).status_code == 303
    assert save(anna, day, body=BODY.replace("stabilt", "ansträngt"), subject="Läget på SÄS och NÄL").status_code == 303
    return bo


def test_the_approver_sees_the_change_against_his_approval_and_against_what_the_lists_last_got(
        four_eyes: tuple[WebProcess, date]) -> None:
    """The fast twin of the browser test below."""
    web, earlier = four_eyes
    bo = voided_by_a_change(web.base, TOMORROW)
    page = edition_page(bo, TOMORROW)
    since = page.split('id="since-approval"')[1].split("</section>")[0]
    assert "<del>stabilt</del>" in since and "<ins>ansträngt</ins>" in since and "<dt>Rubrik i inkorgen</dt>" in since
    sent = page.split('id="since-sent"')[1].split("</section>")[0]
    heading = f"Jämfört med det som senast skickades till samma listor (rapporten {earlier.isoformat()})"
    assert heading in sent
    assert "<del>" in sent and "<ins>" in sent and "<dt>Rubrik i inkorgen</dt>" in sent
    # Another day's date, version and correction always differ: listed, they would hide the change.
    assert "<dt>Sammanställd</dt>" not in sent and "<dt>Version</dt>" not in sent and "<dt>Rättelse</dt>" not in sent
    assert "Millennium" in sent and "FILEN-PÅ-DISKEN" not in sent, "what was sent, from the ledger, not the file"
    assert re.search(r"<ins>[^<]*ansträngt", sent), "today's text is what came"
    for shown in (since, sent):
        text = re.sub(r"<[^>]+>", "", shown)
        assert "---" not in text and "subject:" not in text and "status:" not in text and "compiled:" not in text


def test_no_diff_against_the_lists_while_the_approval_stands(four_eyes: tuple[WebProcess, date]) -> None:
    """Only a voided approval brings the diffs: an approved edition's page shows neither."""
    web, _ = four_eyes
    day = TOMORROW + timedelta(days=1)
    anna, bo = sign_in(web.base, "anna"), sign_in(web.base, "bo")
    assert save(anna, day, body=BODY).status_code == 303
    page = edition_page(bo, day)
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page)
    assert seen
    assert bo.post(f"/editions/{day.isoformat()}/approve", data={"csrf": csrf_of(page), "seen": seen.group(1)}).status_code == 303
    page = edition_page(bo, day)
    assert 'id="since-sent"' not in page and 'id="since-approval"' not in page
    assert "approval-not-recorded" not in page, "four_eyes: no warning"


@pytest.mark.slow  # Chromium, two people; fast twins: the two tests above
def test_approve_then_the_editors_change_the_approver_reads_both_diffs_and_no_stale_confirmation(
        four_eyes: tuple[WebProcess, date], chromium: Any) -> None:
    from playwright.sync_api import expect

    web, earlier = four_eyes
    day = TOMORROW
    anna = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    browser_sign_in(anna, web.base, "anna", f"/editions/{day.isoformat()}")
    anna.get_by_label("Innehåll").fill(BODY)
    anna.get_by_label("Rubrik i inkorgen (tomt = standard)").fill("Läget på SÄS")
    expect(anna.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    anna.get_by_role("button", name="Spara").click()
    expect(anna.locator("#status")).to_contain_text("Sparad")

    bo = chromium.new_context(viewport={"width": 375, "height": 740}).new_page()
    browser_sign_in(bo, web.base, "bo", f"/editions/{day.isoformat()}")
    bo.get_by_role("button", name="Godkänn", exact=True).click()
    expect(bo.locator("#status")).to_have_text(re.compile(r"Godkänd \d\d:\d\d\."))
    bo.reload()
    expect(bo.locator("#status")).to_have_text("")  # 4: a reload shows no success message
    expect(bo.locator(".standing .state")).to_contain_text("Godkänd av bo")

    anna.reload()
    anna.get_by_label("Innehåll").fill(BODY.replace("stabilt", "ansträngt"))
    anna.get_by_label("Rubrik i inkorgen (tomt = standard)").fill("Läget på SÄS och NÄL")
    expect(anna.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    anna.get_by_role("button", name="Spara").click()
    expect(anna.locator("#status")).to_contain_text("Sparad")

    bo.reload()
    expect(bo.locator("#status")).to_have_text("")  # 4: only that approval is needed again
    expect(bo.locator(".standing .state")).to_contain_text("måste godkännas på nytt")
    expect(bo.get_by_text(re.compile(r"Godkänd \d\d:\d\d"))).to_have_count(0)
    since = bo.locator("#since-approval")  # 3: against what he approved
    expect(since.locator("del")).to_have_text(["Läget på SÄS", "stabilt"])
    expect(since.locator("ins")).to_have_text(["Läget på SÄS och NÄL", "ansträngt"])
    expect(since.locator("dt")).to_have_text(["Rubrik i inkorgen"])
    lists = bo.locator("#since-sent")  # and against what the same lists last got
    expect(lists.get_by_role("heading")).to_have_text(
        f"Jämfört med det som senast skickades till samma listor (rapporten {earlier.isoformat()})")
    expect(lists.locator("dt").first).to_have_text("Rubrik i inkorgen")  # another day's date and version left out
    expect(lists.locator("ins").filter(has_text="ansträngt")).to_have_count(1)
    for shown in (since.inner_text(), lists.inner_text()):
        assert "---" not in shown and "status:" not in shown and "subject:" not in shown, shown
    assert "FILEN-PÅ-DISKEN" not in lists.inner_text()

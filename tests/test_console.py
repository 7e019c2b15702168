"""Issue 17: the editor console, part 1. A real `dispatch web` process (or uvicorn in a
thread where time must move), real headless Chromium driven by Playwright on the system
Chromium, SQLite and PostgreSQL ledgers.

Acceptance 1-3 walk the console as its users do (an editor, a second editor, an
approver in another browser context); 4 and 5 attack it over plain HTTP."""

from __future__ import annotations

import html
import json
import re
import signal
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

import consolekit
from conftest import STOCKHOLM, FakeClock, Project, SMTPServer, body_text, copy_project, unit_of
from consolekit import (
    PASSWORDS,
    WebProcess,
    add_users,
    browser_sign_in,
    console_in_thread,
    csrf_of,
    sign_in,
    try_sign_in,
)
from dispatch.app.drafting import compose, split_fields
from dispatch.app.service import Service
from dispatch.config import load_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOMORROW = (datetime.now(STOCKHOLM) + timedelta(days=1)).date()
BODY_WITH_EMPTY_LINK = ("## Beskrivning av händelsen\n\n"
                        "- Återstarten av journalsystemet på SÄS går enligt plan.\n"
                        "- Läs mer i [den samlade informationen]().\n")
FIXED_BODY = BODY_WITH_EMPTY_LINK.replace("]()", "](https://insidan.example.org/millennium)")


@pytest.fixture
def console(project: Project, request: pytest.FixtureRequest) -> Iterator[WebProcess]:
    """A console of its own (the browser tests, which look at the files and the history)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        pg = request.getfixturevalue("pg")
        project.set_config(ledger=pg.url)
    project.set_config(approval="four_eyes")
    add_users(project)
    web = WebProcess(project)
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebProcess, Project]]:
    """One console for the HTTP tests of this module; each test works on a day of its own."""
    project = copy_project(tmp_path_factory.mktemp("console") / "project")
    project.set_config(approval="four_eyes")
    add_users(project)
    web = WebProcess(project)
    try:
        yield web, project
    finally:
        web.stop()


chromium = consolekit.chromium  # the shared module-scoped fixture


def phone_page(chromium: Browser) -> Page:
    context = chromium.new_context(viewport={"width": 375, "height": 800})
    return context.new_page()


def edition_file(project: Project, day: date = TOMORROW) -> str:
    return (project.root / "reports" / f"{day.isoformat()}.md").read_text(encoding="utf-8")


def write_in_browser(page: Page, body: str) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Innehåll").fill(body)
    expect(page.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)


# -- 1. an editor writes tomorrow's edition with a live preview ------------------------------------


@pytest.mark.slow  # Chromium; fast twins: test_compose_* and test_the_security_rules_hold_for_every_route
@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_an_editor_writes_tomorrows_edition_with_a_live_preview(console: WebProcess, project: Project, chromium: Browser) -> None:
    from playwright.sync_api import expect

    page = phone_page(chromium)
    browser_sign_in(page, console.base, "anna", f"/editions/{TOMORROW.isoformat()}")
    expect(page.locator("h1")).to_have_text(f"Rapporten {TOMORROW.isoformat()}")
    expect(page.locator("#problems")).to_contain_text("är tomt", timeout=10_000)  # the prefilled headings need text

    page.get_by_label("Innehåll").fill(BODY_WITH_EMPTY_LINK)
    # The preview follows the typing (no button): the problem at its line, the message in the frames.
    expect(page.locator("#problems")).to_contain_text("Rad 4", timeout=5_000)
    expect(page.locator("#problems")).to_contain_text("en länk saknar adress")  # in Swedish, as the office reads it
    phone = page.frame_locator("iframe[title='Förhandsvisning, mobil']")
    expect(phone.locator("body")).to_contain_text("Återstarten av journalsystemet på SÄS", timeout=5_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling at 375 px"

    page.get_by_role("link", name="Rad 4").click()  # the problem's link selects that line in the editor
    selected = page.evaluate("(() => { const t = document.getElementById('f-body');"
                             " return t.value.slice(t.selectionStart, t.selectionEnd); })()")
    assert selected == "- Läs mer i [den samlade informationen]()."

    write_in_browser(page, FIXED_BODY)
    page.get_by_role("button", name="Spara").click()
    expect(page.locator("#state-heading")).to_be_visible()
    fields, body = split_fields(edition_file(project))
    assert body == FIXED_BODY, "the file holds exactly what was typed"
    assert fields["by"] == "anna" and fields["compiled"].startswith(TOMORROW.isoformat())
    check = project.run("check", "--date", TOMORROW.isoformat())
    assert check.returncode == 0, check.stderr
    assert "not approved yet" in check.stderr


# -- 2. four eyes: the editor cannot approve, an approver can, an edit voids it ----------------------


@pytest.mark.slow  # Chromium and a scheduled run; fast twin: test_an_editors_forged_approval_is_refused
@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_an_approver_approves_and_a_later_edit_voids_it_until_approved_again(
        console: WebProcess, project: Project, chromium: Browser, smtp_server: SMTPServer) -> None:
    from playwright.sync_api import expect

    editor = phone_page(chromium)
    browser_sign_in(editor, console.base, "anna", f"/editions/{TOMORROW.isoformat()}")
    write_in_browser(editor, FIXED_BODY)
    editor.get_by_role("button", name="Spara").click()
    expect(editor.locator(".standing")).to_contain_text("Utkast")
    expect(editor.get_by_role("button", name="Godkänn", exact=True)).to_have_count(0)
    forged = editor.request.post(f"{console.base}/editions/{TOMORROW.isoformat()}/approve",
                                 form={"csrf": csrf_of(editor.content()), "seen": "x"}, max_redirects=0)
    assert forged.status == 403, "roles are checked on the server, not only by hiding the button"

    approver = phone_page(chromium)  # a second browser context: another person
    browser_sign_in(approver, console.base, "bo", f"/editions/{TOMORROW.isoformat()}")
    shown_hash = approver.locator(".standing .hash").inner_text().strip("()").split()[-1]
    approver.get_by_role("button", name="Godkänn", exact=True).click()
    expect(approver.locator(".standing .state")).to_contain_text("Godkänd av bo")
    history = json.loads(project.run("history", "--json").stdout)
    [approval] = [a for a in history["approvals"] if a["edition"] == TOMORROW.isoformat()]
    assert approval["approved_by"] == "bo" and approval["content_hash"].startswith(shown_hash) and not approval["revoked_at"]

    editor.reload()
    editor.get_by_label("Innehåll").fill(FIXED_BODY + "- Ny uppgift efter godkännandet.\n")
    expect(editor.locator("#problems")).to_contain_text("Inga problem hittades", timeout=10_000)
    editor.get_by_role("button", name="Spara").click()
    approver.reload()
    expect(approver.locator(".approvals")).to_contain_text("ogiltigt: rapporten har ändrats sedan")
    expect(approver.locator(".standing .state")).to_contain_text("ändrades efter godkännandet av bo")

    # At the slot the service sends nothing: the content now is not what bo approved.
    project.use_smtp(smtp_server)
    slot = datetime(TOMORROW.year, TOMORROW.month, TOMORROW.day, 14, 0, tzinfo=STOCKHOLM)
    service = Service(load_settings(project.config_path), clock=FakeClock(slot.astimezone(UTC)))
    try:
        assert service.fire("daily", slot) is None
        assert smtp_server.handler.reports() == [], "nothing is sent until it is approved again"
        approver.get_by_role("button", name="Godkänn", exact=True).click()
        expect(approver.locator(".standing .state")).to_contain_text("Godkänd av bo")
        assert service.approved_late(slot + timedelta(minutes=5)) == ["daily"], "approved again: the held send goes"
    finally:
        service.close()


def test_an_editors_forged_approval_is_refused_and_an_approver_of_their_own_text_too(shared: tuple[WebProcess, Project]) -> None:
    console, _ = shared
    day = (TOMORROW + timedelta(days=2)).isoformat()
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{day}")
    assert "Godkänn</button>" not in page.text
    fields = {"compiled": f"{day} 13:00", "status": "draft", "body": FIXED_BODY, "base": "new",
              "csrf": csrf_of(page.text)}
    assert anna.post(f"/editions/{day}/save", data=fields).status_code == 303
    assert anna.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text)}).status_code == 403

    bo = sign_in(console.base, "bo")
    page = bo.get(f"/editions/{day}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen, "bo may approve anna's text"
    # bo edits it himself: now he is its last editor and may not approve it.
    saved = bo.post(f"/editions/{day}/save", data={**fields, "body": FIXED_BODY + "- Tillägg.\n",
                                                                    "base": _base(page.text), "csrf": csrf_of(page.text)})
    assert saved.status_code == 303
    page = bo.get(f"/editions/{day}")
    assert "Godkänn</button>" not in page.text and "en annan person måste godkänna" in page.text
    stale = bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": seen.group(1)})
    assert stale.status_code == 409 and "rapporten ändrades medan bo läste den" in stale.text, "approve what you saw"
    refused = bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 409, refused.text
    assert "Inte utfört: bo har själv skrivit den här versionen och kan inte också godkänna den" in refused.text, \
        re.findall(r"class=.error.*", refused.text)
    # Pressing "Spara" on a text as it is changes nothing: it does not make the reader its author.
    cara = sign_in(console.base, "cara")
    page = cara.get(f"/editions/{day}")
    fields_now = {key: value for key, value in re.findall(r'<input id="f-(\w+)" name="\w+" value="([^"]*)"', page.text)}
    body_now = re.search(r'<textarea id="f-body"[^>]*>(.*?)</textarea>', page.text, re.DOTALL)
    assert body_now
    unchanged = cara.post(f"/editions/{day}/save", data={**fields_now, "status": "draft", "body": body_now.group(1),
                                                       "base": _base(page.text), "csrf": csrf_of(page.text)})
    assert unchanged.status_code == 303 and unchanged.headers["location"] == f"/editions/{day}"
    shown_once = cara.get(f"/editions/{day}").text
    assert "Senast sparad av bo" in shown_once and "Inget att spara" in shown_once
    assert "Inget att spara" not in cara.get(f"/editions/{day}").text, "the confirmation is shown once"


def _base(html: str) -> str:
    found = re.search(r'name="base" value="([^"]*)"', html)
    assert found
    return found.group(1)


# -- 3. two editors at once: the second save is refused, both texts remain ---------------------------


@pytest.mark.slow  # Chromium; fast twin: test_a_save_over_a_changed_file_is_refused_and_the_text_kept
def test_two_editors_the_second_save_is_refused_naming_the_first_and_both_texts_remain(
        console: WebProcess, project: Project, chromium: Browser) -> None:
    from playwright.sync_api import expect

    seed = sign_in(console.base, "olle")
    page = seed.get(f"/editions/{TOMORROW.isoformat()}")
    seed.post(f"/editions/{TOMORROW.isoformat()}/save", data={"compiled": f"{TOMORROW.isoformat()} 13:00", "status": "draft",
                                                             "body": FIXED_BODY, "base": "new", "csrf": csrf_of(page.text)})
    anna, cara = phone_page(chromium), phone_page(chromium)
    browser_sign_in(anna, console.base, "anna", f"/editions/{TOMORROW.isoformat()}")
    browser_sign_in(cara, console.base, "cara", f"/editions/{TOMORROW.isoformat()}")
    annas = FIXED_BODY + "- Annas tillägg om Närhälsan.\n"
    caras = FIXED_BODY + "- Caras tillägg om Regionhälsan.\n"
    write_in_browser(anna, annas)
    write_in_browser(cara, caras)
    anna.get_by_role("button", name="Spara").click()
    expect(anna.locator(".standing")).to_be_visible()
    cara.get_by_role("button", name="Spara").click()
    expect(cara.get_by_role("alert")).to_contain_text("anna sparade rapporten efter att du öppnade den")
    assert cara.get_by_label("Innehåll").input_value() == caras, "the refused text is still in the editor"
    assert split_fields(edition_file(project))[1] == annas, "the first save is in the file"
    cara.get_by_role("link", name=re.compile("^cara ")).click()
    expect(cara.locator("pre.kept")).to_contain_text("Caras tillägg om Regionhälsan")


def test_a_save_over_a_changed_file_is_refused_and_the_text_kept(shared: tuple[WebProcess, Project]) -> None:
    console, project = shared
    day = TOMORROW + timedelta(days=3)
    anna, cara = sign_in(console.base, "anna"), sign_in(console.base, "cara")
    page_a, page_c = anna.get(f"/editions/{day.isoformat()}"), cara.get(f"/editions/{day.isoformat()}")
    form = {"compiled": f"{day.isoformat()} 13:00", "status": "draft"}
    first = anna.post(f"/editions/{day.isoformat()}/save",
                      data={**form, "body": FIXED_BODY, "base": _base(page_a.text), "csrf": csrf_of(page_a.text)})
    assert first.status_code == 303
    second = cara.post(f"/editions/{day.isoformat()}/save",
                       data={**form, "body": "## Beskrivning av händelsen\n\n- Caras version.\n", "base": _base(page_c.text),
                             "csrf": csrf_of(page_c.text)})
    assert second.status_code == 409 and "anna sparade rapporten" in second.text
    assert "Caras version." in second.text, "the refused text is shown back"
    assert split_fields(edition_file(project, day))[1] == FIXED_BODY
    kept = re.search(r'href="(/editions/[^"]+/kept/\d+)"', second.text)
    assert kept and "Caras version." in cara.get(kept.group(1)).text


# -- 4. the rules every route keeps -----------------------------------------------------------------

PAGES = ["/", "/history", "/recipients", "/audit", f"/editions/{TOMORROW.isoformat()}", "/history/x",
         "/history/x/export.csv", "/preview/abc", f"/editions/{TOMORROW.isoformat()}/kept/1", "/open?day=2024-11-17"]
ACTIONS = ["/logout", f"/editions/{TOMORROW.isoformat()}/preview", f"/editions/{TOMORROW.isoformat()}/save",
           f"/editions/{TOMORROW.isoformat()}/approve", f"/editions/{TOMORROW.isoformat()}/revoke",
           f"/editions/{TOMORROW.isoformat()}/test"]


def test_the_security_rules_hold_for_every_route(shared: tuple[WebProcess, Project]) -> None:
    console, _ = shared
    anonymous = consolekit.http_client(console.base, follow_redirects=False)
    for path in PAGES:
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
        assert "content-security-policy" in response.headers
    for path in ACTIONS:
        assert anonymous.post(path, data={"csrf": "x"}).status_code == 401, path
    assert anonymous.get("/healthz").status_code == 200
    login = anonymous.get("/login")
    assert login.status_code == 200 and "script-src 'self'" in login.headers["content-security-policy"]
    assert "'unsafe-inline'" not in login.headers["content-security-policy"]
    assert anonymous.post("/login", data={"username": "anna", "password": PASSWORDS["anna"]}).status_code == 403, "no token"

    olle = sign_in(console.base, "olle")
    cookie = olle.cookies.get("dispatch_session")
    assert cookie
    fresh = consolekit.http_client(console.base, follow_redirects=False)
    signed = fresh.post("/login", data={"username": "olle", "password": PASSWORDS["olle"],
                                        "csrf": csrf_of(fresh.get("/login").text), "next": "/"})
    set_cookie = signed.headers.get("set-cookie", "")
    assert "dispatch_session=" in set_cookie and "samesite=strict" in set_cookie.lower() and "httponly" in set_cookie.lower()
    assert fresh.get("/login?next=/history").headers["location"] == "/history", "signed in already: on to the page"
    assert "Sidan finns inte" in olle.get("/no-such-page").text, "an unknown address is a Swedish page"
    for path in ACTIONS:
        assert olle.post(path, data={"body": "x"}).status_code == 403, f"{path} without a CSRF token"
        assert olle.post(path, data={"csrf": "forged"}).status_code == 403, f"{path} with a wrong token"
    for path in ("/editions/..%2F..%2Fetc%2Fpasswd", "/editions/../../etc/passwd", "/editions/2024-13-45",
                 "/editions/2024-11-17.md", "/preview/..%2F..%2Fconfig.yaml"):
        response = olle.get(path)
        assert response.status_code == 404, path
        assert "root:" not in response.text
    for path in ("/", "/history", "/recipients", "/audit", f"/editions/{TOMORROW.isoformat()}"):
        response = olle.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"].startswith("default-src 'self'"), path
        assert '<html lang="sv">' in response.text

    page = olle.get(f"/editions/{TOMORROW.isoformat()}")
    preview = olle.post(f"/editions/{TOMORROW.isoformat()}/preview", data={
        "csrf": csrf_of(page.text), "compiled": f"{TOMORROW.isoformat()} 13:00", "status": "draft",
        "body": "## Beskrivning av händelsen\n\n- Se <script>alert('x')</script> och <img src=x onerror=alert(1)>.\n"})
    assert preview.status_code == 200
    frame = re.search(r'src="(/preview/[^"?]+)"', preview.text)
    assert frame, preview.text
    html = olle.get(frame.group(1))
    assert "<script>alert" not in html.text and "&lt;script&gt;" in html.text and "<img src=x" not in html.text
    assert "sandbox" in html.headers["content-security-policy"] and "'unsafe-inline'" in html.headers["content-security-policy"]
    assert 'sandbox src="/preview/' in preview.text, "the frame is sandboxed, without scripts"
    # Another user cannot open someone's preview.
    assert sign_in(console.base, "anna").get(frame.group(1)).status_code == 404


def test_an_editor_is_refused_the_audit_log(shared: tuple[WebProcess, Project]) -> None:
    console, _ = shared
    assert sign_in(console.base, "anna").get("/audit").status_code == 403
    assert sign_in(console.base, "bo").get("/audit").status_code == 403
    log = sign_in(console.base, "olle").get("/audit")
    assert log.status_code == 200 and 'data-action="sign_in"' in log.text and ">inloggning<" in log.text


def test_an_open_redirect_after_sign_in_is_not_followed(shared: tuple[WebProcess, Project]) -> None:
    console, _ = shared
    client = consolekit.http_client(console.base, follow_redirects=False)
    page = client.get("/login")
    response = client.post("/login", data={"username": "anna", "password": PASSWORDS["anna"], "csrf": csrf_of(page.text),
                                           "next": "//evil.example.org/"})
    assert response.status_code == 303 and response.headers["location"] == "/"


# -- 5. six wrong passwords lock the account for 15 minutes -----------------------------------------


def test_six_wrong_passwords_lock_the_account_until_the_lock_ends(project: Project) -> None:
    add_users(project, ("anna", "olle"))
    clock = FakeClock(datetime(2024, 11, 18, 9, 0, tzinfo=UTC))
    with console_in_thread(load_settings(project.config_path), clock) as base:
        client = consolekit.http_client(base, follow_redirects=False)
        for _ in range(6):
            refused = try_sign_in(client, "anna", "fel-losenord-igen")
            assert refused.status_code == 401
            assert "Fel användarnamn eller lösenord" in refused.text
            assert "spärrat till" not in refused.text, "a wrong password learns nothing of the lock"
        # Issue 32 (changed on purpose): the right password is refused, and told until when
        # (10:00 in Stockholm, locked for 15 minutes); a wrong one still gets the one message.
        right = try_sign_in(client, "anna", PASSWORDS["anna"])
        assert right.status_code == 401, "locked: the right password is refused"
        assert "Kontot är spärrat till klockan 10:15" in right.text and 'role="alert"' in right.text
        assert "Fel användarnamn" not in right.text
        clock.moment += timedelta(minutes=14)
        still = try_sign_in(client, "anna", PASSWORDS["anna"])
        assert still.status_code == 401 and "klockan 10:15" in still.text, "still locked after 14 minutes"
        clock.moment += timedelta(minutes=2)
        assert try_sign_in(client, "anna", PASSWORDS["anna"]).status_code == 303, "the lock has ended"
        log = sign_in(base, "olle").get("/audit").text
    failed = log.count('data-action="sign_in_failed"')
    assert failed == 8, f"each attempt is in the audit log ({failed})"
    assert log.count('data-action="locked"') == 1 and "fel lösenord (försök 5)" in log and "kontot spärrat till" in log
    assert "fel lösenord under spärren" in log and "rätt lösenord: fick veta när spärren upphör" in log
    assert "wrong password" not in log and "right password" not in log, "the details are shown in Swedish"


STANDARD = (3, 64 * 1024, 4)  # passes, KiB, lanes: RFC 9106's second recommended profile
LIGHT = (2, 19 * 1024, 1)  # OWASP's minimum for argon2id


def _profile(password_hash: str) -> tuple[int, int, int]:
    from argon2 import Type, extract_parameters

    found = extract_parameters(password_hash)
    assert found.type is Type.ID
    return found.time_cost, found.memory_cost, found.parallelism


def test_passwords_are_hashed_with_the_configured_profile_and_made_again_at_the_next_sign_in(project: Project) -> None:
    from dispatch import app

    now = datetime(2024, 11, 18, 9, 0, tzinfo=UTC)
    unit = unit_of(load_settings(project.config_path))
    ledger = unit.ledger
    try:
        app.add_user(unit, "anna", "anna@example.org", "editor", PASSWORDS["anna"], now, by="test")

        def stored() -> tuple[int, int, int]:
            user = ledger.user("anna")
            assert user is not None and user.password_hash is not None
            return _profile(user.password_hash)

        assert stored() == STANDARD, "the default"
        app.sign_in(unit, "anna", PASSWORDS["anna"], now, hashing="light")
        assert stored() == LIGHT, "made again with the profile now configured"
        with pytest.raises(app.SignInRefused):
            app.sign_in(unit, "anna", "fel-losenord-igen", now, hashing="light")
        assert stored() == LIGHT, "a wrong password changes nothing"
        app.sign_in(unit, "anna", PASSWORDS["anna"], now, hashing="standard")
        assert stored() == STANDARD, "and back: the same password all along"
        from dispatch.config.settings import PASSWORD_HASHING

        for profile in PASSWORD_HASHING:  # every profile the config accepts makes hashes
            app.add_user(unit, f"konto-{profile}", "x@example.org", "editor", PASSWORDS["bo"], now, by="test", hashing=profile)
    finally:
        unit.app.close()
    project.set_config(web__password_hashing="fast")
    line = project.config_path.read_text(encoding="utf-8").splitlines().index("  password_hashing: fast") + 1
    refused = project.run("users", "list")
    assert refused.returncode == 1
    assert f"config.yaml:{line}: 'web.password_hashing' must be standard or light, not 'fast'" in refused.stderr


def test_a_session_ends_after_the_idle_time_and_a_disabled_account_at_once(project: Project) -> None:
    add_users(project, ("anna", "olle"))
    clock = FakeClock(datetime(2024, 11, 18, 9, 0, tzinfo=UTC))
    with console_in_thread(load_settings(project.config_path), clock) as base:
        anna = sign_in(base, "anna")
        clock.moment += timedelta(minutes=29)
        assert anna.get("/").status_code == 200, "used within 30 minutes: still signed in"
        clock.moment += timedelta(minutes=31)
        assert anna.get("/").status_code == 303, "unused for 31 minutes: signed out"
        anna = sign_in(base, "anna")
        assert anna.get("/").status_code == 200
        assert project.run("users", "disable", "anna").returncode == 0
        assert anna.get("/").status_code == 303, "a disabled account's session ends at once"


# -- the pure parts: the file the console writes ------------------------------------------------------


def test_compose_writes_text_fields_as_quoted_yaml_and_reads_back_the_same() -> None:
    fields = {"compiled": "2024-11-18 13:00", "status": "draft", "subject": 'Läget: "pausat" # inte en kommentar',
              "lists": "chefer, politisk-ledning", "revision": "2", "correction": "Fel tid: 14 ska vara 15."}
    text, where = compose(fields, "## A\n\n- b\n")
    again, body = split_fields(text)
    assert body == "## A\n\n- b\n"
    assert again == {**fields, "lists": "chefer, politisk-ledning"}
    assert where["compiled"] == 2 and text.startswith("---\ncompiled: 2024-11-18 13:00\n")


def test_every_front_matter_key_survives_a_save_unchanged() -> None:
    from dispatch.email.edition import KNOWN_KEYS

    original = ("---\ncompiled: 2024-11-18 13:00\nstatus: approved\nurgent: false\nrevision: 2\ncorrection: \"Fel tid.\"\n"
                "lists: [\"chefer\"]\nsubject: \"Ämne\"\nheadline: \"Nyhet\"\npreheader: \"Kort\"\nmarkers: \"false\"\n"
                "by: \"anna\"\n---\n\n## A\n\n- b\n")
    fields, body = split_fields(original)
    assert set(fields) == KNOWN_KEYS, "the console shows or carries every key an edition may have"
    assert compose(fields, body)[0] == original


def test_compose_keeps_a_line_break_out_of_a_one_line_field() -> None:
    text, _ = compose({"subject": "Rad ett\nBcc: x@example.org"}, "")
    assert "\nBcc:" not in text and split_fields(text)[0]["subject"] == "Rad ett Bcc: x@example.org"


def test_users_add_list_and_disable_from_the_command_line(project: Project) -> None:
    add_users(project, ("anna",), cli=True)  # --password-file
    from_stdin = project.run("users", "add", "bo", "--email", "Bo.Berg@Example.org", "--role", "approver")
    assert from_stdin.returncode == 1 and "at least 12 characters" in from_stdin.stderr, "no password given: too short"
    from click.testing import CliRunner

    from dispatch.cli import main

    # The password on standard input (a pipe): the real command, run in this process.
    piped = CliRunner().invoke(main, ["--config", str(project.config_path), "users", "add", "bo",
                                      "--email", "Bo.Berg@Example.org", "--role", "approver"], input=PASSWORDS["bo"] + "\n")
    assert piped.exit_code == 0, piped.output
    again = project.run("users", "add", "anna", "--email", "a@example.org", "--role", "operator", "--password-file",
                        str(project.root / ".anna.pw"))
    assert again.returncode == 1 and "a user named 'anna' exists already" in again.stderr
    wrong = project.run("users", "add", "Anna Andersson", "--email", "not-an-address", "--role", "editor",
                        "--password-file", str(project.root / ".anna.pw"))
    assert wrong.returncode == 1 and "no spaces" in wrong.stderr and "invalid address" in wrong.stderr
    assert project.run("users", "disable", "anna").returncode == 0
    assert project.run("users", "disable", "nobody").returncode == 1
    listed = project.run("users", "list").stdout.splitlines()
    assert listed == ["anna\teditor\tanna@example.org\tdisabled", "bo\tapprover\tBo.Berg@example.org"]
    from dispatch.ledger import Ledger

    ledger = Ledger(load_settings(project.config_path).ledger_url)
    try:
        stored = ledger.user("bo")
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$argon2id$") and PASSWORDS["bo"] not in stored.password_hash
        assert _profile(stored.password_hash) == LIGHT, "made with the configured web.password_hashing"
        actions = [(e.action, e.target) for e in ledger.audit_log()]
        assert ("user_added", "bo") in actions and ("user_disabled", "anna") in actions
    finally:
        ledger.close()


@pytest.mark.slow  # a serve process; fast twin: the shared `dispatch web` process of this module
def test_serve_also_serves_the_console_when_web_is_configured_and_stops_both(project: Project) -> None:
    from conftest import ServeProcess, free_port
    from consolekit import wait_healthy

    port = free_port()
    project.set_config(web__listen=f"127.0.0.1:{port}")
    add_users(project, ("anna",))
    serve = ServeProcess(project)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=30)
        serve.wait_for(lambda: serve.logged("console_started"), 10, "the console started")
        assert sign_in(f"http://127.0.0.1:{port}", "anna").get("/").status_code == 200
        code, _ = serve.stop()
        assert code == 0, serve.log()
        with pytest.raises(httpx.ConnectError):
            consolekit.http_client(timeout=2).get(f"http://127.0.0.1:{port}/healthz")
    finally:
        serve.kill()


def test_a_test_to_me_then_history_exports_recipients_and_revoking(shared: tuple[WebProcess, Project]) -> None:
    console, project = shared
    day = (TOMORROW + timedelta(days=4)).isoformat()
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{day}")
    saved = anna.post(f"/editions/{day}/save", data={"compiled": f"{day} 13:00", "status": "draft", "body": FIXED_BODY,
                                                    "base": "new", "csrf": csrf_of(page.text)})
    assert saved.status_code == 303
    page = anna.get(f"/editions/{day}")
    sent = anna.post(f"/editions/{day}/test", data={"csrf": csrf_of(page.text)})
    assert sent.status_code == 303, "back to the edition's page: a reload does not send again"
    assert "Ett [TEST] är skickat till anna@example.org" in anna.get(sent.headers["location"]).text
    assert anna.get(f"/editions/{day}/test").headers["location"] == f"/editions/{day}", "a GET of the action sends nothing"
    import email
    from email import policy

    outbox = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
              for p in (project.root / "var" / "outbox" / "new").iterdir()]
    mine = [m for m in outbox if m["To"] == "anna@example.org" and str(m["Subject"]).startswith("[TEST]")
            and "Återstarten av journalsystemet" in body_text(m)]
    assert len(mine) == 1, "one test message to the signed-in editor, nobody else"

    history = anna.get("/history")
    name = re.search(rf'href="/history/({re.escape(day)}\.r1\.test-[^"]+)"', history.text)
    assert name, "the test dispatch is in the history"
    dispatch = anna.get(f"/history/{name.group(1)}")
    assert dispatch.status_code == 200 and "anna@example.org" in dispatch.text and ">skickad<" in dispatch.text
    exported = anna.get(f"/history/{name.group(1)}/export.json")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert json.loads(exported.text)["recipients"][0]["email"] == "anna@example.org"
    csv = anna.get(f"/history/{name.group(1)}/export.csv")
    assert csv.headers["content-type"].startswith("text/csv") and "anna@example.org" in csv.text

    recipients = anna.get("/recipients")
    assert recipients.status_code == 200
    assert "politisk-ledning" in recipients.text and "chefer" in recipients.text and "49 unika mottagare" in recipients.text

    bo = sign_in(console.base, "bo")
    page = bo.get(f"/editions/{day}")
    assert bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": _seen(page.text)}).status_code == 303
    page = bo.get(f"/editions/{day}")
    assert "Godkänd av bo" in page.text
    revoked = bo.post(f"/editions/{day}/revoke", data={"csrf": csrf_of(page.text)})
    assert revoked.status_code == 303
    revoked = bo.get(revoked.headers["location"])
    assert "Godkännandet är återkallat" in revoked.text
    assert "återkallat av bo" in revoked.text and "Godkänd av bo" not in revoked.text
    log = sign_in(console.base, "olle").get("/audit").text
    for action in ("save", "send", "approve", "revoke", "export", "sign_in"):
        assert f'data-action="{action}"' in log, action


def _seen(html: str) -> str:
    found = re.search(r'name="seen" value="([0-9a-f]{64})"', html)
    assert found, "the approve form carries the content shown"
    return found.group(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM,
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow)])  # fast twin: SIGTERM, as systemd stops it
def test_dispatch_web_stops_cleanly_with_exit_0_on_a_signal(project: Project, sig: int) -> None:
    web = WebProcess(project)
    web.process.send_signal(sig)
    assert web.process.wait(20) == 0, web.process.stderr()


def test_the_preview_suggests_the_first_new_point_as_headline_and_the_subject_carries_it(console: WebProcess, project: Project) -> None:
    """With the 17th sent, the 18th's preview suggests its first new point for the subject; set
    as 'Nyhet i ämnesraden', the subject becomes the date and the news."""
    assert project.run("approve", "--date", "2024-11-17", "--by", "cara").returncode == 0
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    olle = sign_in(console.base, "olle")
    page = olle.get("/editions/2024-11-18")
    assert 'id="f-headline"' in page.text and "Nyhet i ämnesraden" in page.text
    text = (project.root / "reports/2024-11-18.md").read_text(encoding="utf-8")
    body = text.split("---\n", 2)[2]
    form = {"csrf": csrf_of(page.text), "compiled": "2024-11-18 14:00", "status": "approved", "body": body}
    preview = olle.post("/editions/2024-11-18/preview", data=form)
    suggestion = re.search(r'id="headline-suggestion">[^<]*<q>([^<]+)</q>', preview.text)
    assert suggestion, preview.text
    assert suggestion.group(1) == "För Närhälsan skedde återgången till Asynja"
    assert "mån 18 nov: Regional rapport Millennium 2024" in preview.text
    chosen = olle.post("/editions/2024-11-18/preview", data={**form, "headline": "Närhälsan tillbaka i Asynja"})
    assert "<strong>Ämnesrad:</strong> mån 18 nov: Närhälsan tillbaka i Asynja" in chosen.text
    assert 'id="headline-suggestion"' not in chosen.text, "no suggestion once a headline is set"


def test_a_revision_in_other_digits_is_a_swedish_problem_and_the_text_is_kept(shared: tuple[WebProcess, Project]) -> None:
    console, _ = shared
    day = (TOMORROW + timedelta(days=5)).isoformat()
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{day}")
    fields = {"compiled": f"{day} 13:00", "status": "draft", "revision": "²", "correction": "Ny tid.",
              "body": FIXED_BODY + "- Unik rad som måste finnas kvar.\n", "base": "new", "csrf": csrf_of(page.text)}
    preview = anna.post(f"/editions/{day}/preview", data=fields)
    assert preview.status_code == 200, preview.text
    assert "'Version' ska vara ett heltal från 1, inte '²'" in html.unescape(preview.text)
    saved = anna.post(f"/editions/{day}/save", data=fields)
    assert saved.status_code != 500, saved.text
    assert "Unik rad som måste finnas kvar." in anna.get(f"/editions/{day}").text or \
        "Unik rad som måste finnas kvar." in saved.text, "the text is kept"


def test_an_approval_without_the_content_seen_or_with_a_stale_one_is_refused_and_recorded_nowhere(
        shared: tuple[WebProcess, Project]) -> None:
    console, project = shared
    day = (TOMORROW + timedelta(days=6)).isoformat()
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{day}")
    fields = {"compiled": f"{day} 13:00", "status": "draft", "body": FIXED_BODY, "base": "new", "csrf": csrf_of(page.text)}
    assert anna.post(f"/editions/{day}/save", data=fields).status_code == 303
    bo = sign_in(console.base, "bo")
    page = bo.get(f"/editions/{day}")
    seen = _seen(page.text)
    missing = bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text)})
    assert missing.status_code == 409 and "godkännandet säger inte vilken version du läste" in missing.text, missing.text
    stale = bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": "0" * 64})
    assert stale.status_code == 409 and "rapporten ändrades medan bo läste den" in stale.text
    history = project.run("history", "--json")
    assert day not in history.stdout or '"approved_by": "bo"' not in history.stdout
    audit = bo.get("/audit").text
    assert not re.search(rf"approve\b[^<]*{day}|Godkände[^<]*{day}", audit), "a refused approval is in the audit log"
    state = bo.get(f"/editions/{day}").text
    assert "Godkänn</button>" in state, "still waiting for an approval"
    assert bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": seen}).status_code == 303


def test_a_problem_and_a_refusal_are_worded_in_swedish_from_the_catalogue(shared: tuple[WebProcess, Project]) -> None:
    """Issue 31: the console words the program's facts from dispatch.po; no English sentence of
    the command line reaches the office, and no regular expression stands between them."""
    from dispatch.values import Fact
    from dispatch.wording import english, swedish

    console, _ = shared
    day = (TOMORROW + timedelta(days=20)).isoformat()
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{day}")
    fields = {"compiled": f"{day} 13:00", "status": "draft", "body": FIXED_BODY + "\n## Tomt avsnitt\n", "base": "new",
              "csrf": csrf_of(page.text)}
    preview = anna.post(f"/editions/{day}/preview", data=fields)
    assert preview.status_code == 200, preview.text
    problem = Fact.of("editorial.empty_section", heading="Tomt avsnitt")
    shown = html.unescape(preview.text)
    assert swedish(problem) in shown and english(problem) not in shown

    saved = anna.post(f"/editions/{day}/save", data={**fields, "body": FIXED_BODY})
    assert saved.status_code == 303
    olle = sign_in(console.base, "olle")
    refused = olle.get(f"/editions/{day}/send")
    assert refused.status_code == 409, refused.text
    refusal = Fact.of("refusal.not_sendable", reason=Fact.of("gate.not_approved_by_other", editors="anna", day=day))
    shown = html.unescape(refused.text)
    worded = swedish(refusal)
    assert worded.startswith("kan inte skickas: rapporten är inte godkänd")
    assert worded[:1].upper() + worded[1:] in shown, re.findall(r"role=.alert.*", shown)
    assert english(refusal) not in shown and "not sendable" not in shown


def test_the_recipient_lists_problems_are_worded_in_swedish(console: WebProcess, project: Project) -> None:
    from dispatch.values import Fact
    from dispatch.wording import english, swedish

    (project.root / "recipients" / "extra.csv").write_text("email;name\nnot-an-address;Nils\n", encoding="utf-8")
    olle = sign_in(console.base, "olle")
    page = html.unescape(olle.get("/recipients").text)
    assert "recipients/extra.csv:2" in page, re.findall(r'class="problems".*', page)
    problem = Fact.of("recipients.invalid_address", address="'not-an-address'", detail="x")
    said = swedish(problem).removesuffix("x")
    assert said in page and english(problem).removesuffix("x") not in page

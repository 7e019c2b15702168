"""Issue 18: single sign-on with OpenID Connect. A real provider (node-oidc-provider over
HTTPS with a test CA, tests/oidc/provider.mjs) and the console as a real `dispatch web`
process; the flow driven over plain HTTP (httpx, as a browser would follow it) and once in
headless Chromium. No part of the provider is mocked.

1. a user in a mapped group signs in with the right role; 2. a user in no mapped group is
refused, visibly and in the audit log; 3. a tampered state and a reused code are refused;
4. the client secret shows nowhere; 5. config errors (in test_config.py, and the fast twins
below). The app-level rules (names, roles, local accounts) are tested in-process."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest

from conftest import ROOT, Project, copy_project, free_port, open_ledger, require_tool, unit_of
from consolekit import PASSWORDS, WebProcess, add_users, browser_or_skip, csrf_of, sign_in
from dispatch import app
from dispatch.config import Settings, load_settings
from dispatch.config.settings import OidcSettings
from dispatch.errors import ConsoleError
from dispatch.values import Role

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    import httpx2
    from joserfc.jwk import Key
    from starlette.testclient import TestClient

OIDC = ROOT / "tests" / "oidc"
CLIENT_ID = "dispatch-console"
CLIENT_SECRET = "oidc-Client-Secret-never-shown-7Kq2"
CALLBACK = "/auth/callback"
ROLE_MAP = {"rapport-redaktorer": "editor", "rapport-godkannare": "approver", "rapport-drift": "operator"}
# Accounts at the provider, found by login name. preferred_username is an Entra-style UPN.
ACCOUNTS: dict[str, dict[str, object]] = {
    "bodil": {"preferred_username": "Bodil.Berg@region.example.se", "email": "bodil.berg@region.example.se",
              "email_verified": True, "name": "Bodil Berg", "groups": ["alla-anstallda", "rapport-godkannare"]},
    "erik": {"preferred_username": "erik@region.example.se", "email": "erik@region.example.se", "email_verified": True,
             "groups": ["rapport-redaktorer", "rapport-godkannare"]},
    "olga": {"preferred_username": "olga@region.example.se", "email": "olga@region.example.se", "email_verified": True,
             "groups": ["rapport-drift"]},
    "nils": {"preferred_username": "nils@region.example.se", "email": "nils@region.example.se", "email_verified": True,
             "groups": ["ekonomi", "alla-anstallda"]},
    "anna": {"preferred_username": "anna", "email": "anna.andersson@region.example.se", "email_verified": True,
             "groups": ["rapport-drift"]},
    # Another person whose name cleans up to erik's ("Érik" loses its accent), and an address
    # nobody verified (the person typed the approvers' list's address into their profile).
    "erik2": {"preferred_username": "Érik@region.example.se", "email": "erik2@region.example.se", "email_verified": True,
              "groups": ["rapport-godkannare"]},
    "mallory": {"preferred_username": "mallory@region.example.se", "email": "godkannare@region.example.se",
                "email_verified": False, "groups": ["rapport-redaktorer"]},
    "frida": {"preferred_username": "frida@region.example.se", "email": "frida@region.example.se", "email_verified": True,
              "groups": ["rapport-godkannare"]},
}
NAMES = {"bodil": "bodil.berg_region.example.se", "erik": "erik_region.example.se", "olga": "olga_region.example.se",
         "nils": "nils_region.example.se", "mallory": "mallory_region.example.se", "frida": "frida_region.example.se"}
TOMORROW = (datetime.now(UTC) + timedelta(days=2)).date()


@dataclass
class Provider:
    issuer: str
    ca_file: Path
    ports: list[int]  # the consoles' ports: their callbacks are the client's registered redirect URIs
    tls: ssl.SSLContext
    config: Path  # the provider reads its accounts from here at every sign-in

    def set_groups(self, login: str, groups: list[str]) -> None:
        """Change someone's groups at the provider (an administrator there)."""
        config = json.loads(self.config.read_text(encoding="utf-8"))
        config["accounts"][login]["groups"] = groups
        self.config.write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """node-oidc-provider on 127.0.0.2 (its cookies are not the console's, on 127.0.0.1) over HTTPS
    with a certificate from a test CA, which the console trusts through web.oidc.ca_file."""
    node = shutil.which("node") or "/usr/bin/node"
    require_tool(node, "the single sign-on tests run a real OpenID Connect provider under node")
    require_tool(str(OIDC / "node_modules" / "oidc-provider" / "package.json"),
                 "the provider package (npm ci --prefix tests/oidc)")
    import trustme

    here = tmp_path_factory.mktemp("oidc")
    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.2")
    leaf.private_key_pem.write_to_path(str(here / "key.pem"))
    (here / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    authority.cert_pem.write_to_path(str(here / "ca.pem"))
    port, ports = free_port(), [free_port() for _ in range(4)]
    issuer = f"https://127.0.0.2:{port}"
    config = {"port": port, "issuer": issuer, "cert": str(here / "cert.pem"), "key": str(here / "key.pem"),
              "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "redirect_uris": [f"http://127.0.0.1:{p}{CALLBACK}" for p in ports],
              "post_logout_redirect_uris": [f"http://127.0.0.1:{p}/login" for p in ports], "accounts": ACCOUNTS}
    (here / "config.json").write_text(json.dumps(config), encoding="utf-8")
    log = (here / "provider.log").open("w")
    process = subprocess.Popen([node, str(OIDC / "provider.mjs"), str(here / "config.json")], cwd=OIDC,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in (here / "provider.log").read_text():
            assert process.poll() is None, (here / "provider.log").read_text()
            assert time.monotonic() < deadline, f"the provider did not start in 30 s; its output: {(here / 'provider.log').read_text()!r}"
            time.sleep(0.02)
        tls = ssl.create_default_context(cafile=str(here / "ca.pem"))
        yield Provider(issuer, here / "ca.pem", ports, tls, here / "config.json")
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def configure(project: Project, provider: Provider, port: int, **oidc: object) -> None:
    secret = project.root / "oidc-client-secret"
    secret.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    settings = {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret_file": str(secret), "claim": "groups",
                "roles": ROLE_MAP, "ca_file": str(provider.ca_file), **oidc}
    project.set_config(approval="four_eyes", web={"listen": f"127.0.0.1:{port}", "oidc": settings})


@pytest.fixture(scope="module")
def console(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebProcess, Project]]:
    """One console with single sign-on for the HTTP tests; local accounts (anna, bo) beside it."""
    project = copy_project(tmp_path_factory.mktemp("sso") / "project")
    configure(project, provider, provider.ports[0])
    add_users(project, ("anna", "bo"))
    web = WebProcess(project, provider.ports[0])
    try:
        yield web, project
    finally:
        web.stop()


def browser(provider: Provider) -> httpx.Client:
    """A client that follows nothing by itself (the tests look at every step) and trusts the test CA."""
    return httpx.Client(verify=provider.tls, follow_redirects=False, timeout=30)


def to_callback(client: httpx.Client, base: str, login: str, next_path: str = "/") -> str:
    """From the console's "Logga in med organisationens konto" through the provider's sign-in form:
    the callback URL (with code and state) the provider sends the browser back to, not yet visited."""
    response = client.get(f"{base}/auth/login", params={"next": next_path})
    assert response.status_code == 302, response.text
    url = response.headers["location"]
    assert "code_challenge_method=S256" in url and "nonce=" in url and "state=" in url, "PKCE, a nonce and a state"
    for _ in range(10):
        if url.startswith(base + CALLBACK):
            return url
        response = client.get(url)
        if response.status_code == 200 and 'name="login"' in response.text:
            response = client.post(url, data={"login": login})
        assert response.status_code in (302, 303), (url, response.status_code, response.text[:500])
        url = urljoin(url, response.headers["location"])
    raise AssertionError("the provider never sent the browser back")


def sso_sign_in(provider: Provider, base: str, login: str, next_path: str = "/") -> httpx.Client:
    client = browser(provider)
    done = client.get(to_callback(client, base, login, next_path))
    assert done.status_code == 200 and f'url={next_path}"' in done.text, done.text
    return client


def with_state(url: str, state: str) -> str:
    parts = urlsplit(url)
    query = [(key, state if key == "state" else value) for key, value in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def audit_entries(project: Project, action: str) -> list[app.AuditEntry]:
    unit = unit_of(load_settings(project.config_path))
    try:
        return [entry for entry in app.audit_log(unit) if entry.action == action]
    finally:
        unit.app.close()


def user_row(project: Project, name: str) -> app.User | None:
    ledger = open_ledger(load_settings(project.config_path))
    try:
        return ledger.user(name)
    finally:
        ledger.close()


# -- 1. a user in a mapped group signs in with the role it maps to ----------------------------------


def test_an_approver_signs_in_through_the_provider_with_the_role_of_their_group(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    bodil = sso_sign_in(provider, web.base, "bodil", "/history")
    home = bodil.get(f"{web.base}/")
    assert home.status_code == 200 and NAMES["bodil"] in home.text
    assert bodil.get(f"{web.base}/audit").status_code == 403, "an approver is no operator"
    user = user_row(project, NAMES["bodil"])
    assert user is not None and (user.role, user.email, user.password_hash) == ("approver", "bodil.berg@region.example.se", None)
    sign_ins = [e for e in audit_entries(project, "sign_in") if e.user == NAMES["bodil"]]
    assert sign_ins and "single sign-on" in sign_ins[0].detail and "from 127.0.0.1" in sign_ins[0].detail
    assert "dispatch_sso" not in bodil.cookies, "the flow's cookie is gone once it is over"


@pytest.mark.slow  # the edition page and a save (rendering); fast twins: the test above and test_an_sso_account_follows_*
def test_an_sso_approver_approves_a_local_editors_text_and_the_approval_is_under_their_name(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    day = TOMORROW.isoformat()
    anna = sign_in(web.base, "anna")  # a local account writes the text
    page = anna.get(f"/editions/{day}")
    assert anna.post(f"/editions/{day}/save", data={
        "compiled": f"{day} 13:00", "status": "draft", "base": "new", "csrf": csrf_of(page.text),
        "body": "## Beskrivning av händelsen\n\n- Läget är stabilt.\n"}).status_code == 303

    bodil = sso_sign_in(provider, web.base, "bodil", f"/editions/{day}")
    page = bodil.get(f"{web.base}/editions/{day}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen, "an approver may approve the local editor's text"
    approved = bodil.post(f"{web.base}/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": seen.group(1)})
    assert approved.status_code in (200, 303), approved.text
    history = json.loads(project.run("history", "--json").stdout)
    [approval] = [a for a in history["approvals"] if a["edition"] == day]
    assert approval["approved_by"] == NAMES["bodil"] and not approval["revoked_at"], "four eyes by name: anna wrote, bodil approved"


def test_several_mapped_groups_give_the_highest_role_and_an_operator_reads_the_audit_log(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    erik = sso_sign_in(provider, web.base, "erik")
    user = user_row(project, NAMES["erik"])
    assert user is not None and user.role == "approver", "editor and approver: approver"
    assert erik.get(f"{web.base}/audit").status_code == 403
    olga = sso_sign_in(provider, web.base, "olga")
    log = olga.get(f"{web.base}/audit")
    assert log.status_code == 200 and "user_added" in log.text and NAMES["olga"] in log.text


def test_a_provider_user_cannot_take_over_a_local_account_of_the_same_name(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    client = browser(provider)
    refused = client.get(to_callback(client, web.base, "anna"))  # preferred_username "anna": the local editor's name
    assert refused.status_code == 403 and "lokalt konto" in refused.text
    assert "dispatch_session" not in client.cookies
    anna = user_row(project, "anna")
    assert anna is not None and anna.role == "editor" and anna.password_hash is not None, "the local account is untouched"
    assert any("local account" in e.detail for e in audit_entries(project, "sso_refused") if e.user == "anna")


# -- 2. a user in no mapped group is refused -------------------------------------------------------


def test_a_user_in_no_mapped_group_is_refused_with_a_page_and_an_audit_entry(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    client = browser(provider)
    refused = client.get(to_callback(client, web.base, "nils"))
    assert refused.status_code == 403
    assert "ingen roll i rapportkonsolen" in refused.text and 'lang="sv"' in refused.text
    assert "dispatch_session" not in client.cookies and client.get(f"{web.base}/").status_code == 303
    assert user_row(project, NAMES["nils"]) is None, "no account is made for someone without a role"
    [entry] = [e for e in audit_entries(project, "sso_refused") if e.user == NAMES["nils"]]
    assert "ekonomi" in entry.detail and "alla-anstallda" in entry.detail and "from 127.0.0.1" in entry.detail


# -- 3. a tampered state, a reused code ---------------------------------------------------------


def test_a_tampered_state_is_refused(provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    before = len(audit_entries(project, "sso_failed"))
    client = browser(provider)
    callback = to_callback(client, web.base, "bodil")
    state = dict(parse_qsl(urlsplit(callback).query))["state"]
    tampered = client.get(with_state(callback, state[:-2] + ("AA" if not state.endswith("AA") else "BB")))
    assert tampered.status_code == 403 and "kunde inte slutföras" in tampered.text
    assert "dispatch_session" not in client.cookies
    failed = audit_entries(project, "sso_failed")
    assert len(failed) == before + 1 and "mismatching_state" in failed[0].detail
    # The flow it belonged to is over: the genuine callback now fails too (fail closed).
    assert client.get(callback).status_code == 403


def test_a_reused_code_is_refused_by_the_console_and_by_the_provider(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    client = browser(provider)
    callback = to_callback(client, web.base, "bodil")
    flow_cookie = client.cookies.get("dispatch_sso")
    assert flow_cookie, "the flow's state is in a cookie of its own"
    assert client.get(callback).status_code == 200, "the first use signs in"
    assert client.get(callback).status_code == 403, "the same browser again: its flow is over"

    # An attacker who replays the callback with the flow's cookie as it was: the console
    # exchanges the code again, and the provider refuses it (codes are single use).
    replay = browser(provider)
    replay.cookies.set("dispatch_sso", flow_cookie, domain="127.0.0.1", path="/auth")
    refused = replay.get(callback)
    assert refused.status_code == 403 and "dispatch_session" not in replay.cookies
    assert "invalid_grant" in audit_entries(project, "sso_failed")[0].detail


# -- 4. the client secret shows nowhere ------------------------------------------------------------


@pytest.mark.slow  # a console process of its own; fast twins: test_the_sign_in_page_offers_the_provider_and_a_dead_*,
# test_a_client_secret_in_the_config_is_a_problem_at_its_line_and_never_shown (test_config.py)
def test_the_client_secret_appears_in_no_log_page_cookie_or_ledger_table(provider: Provider, tmp_path: Path) -> None:
    """The console of its own (its whole stderr is looked at), with base_url set: every kind of
    outcome (signed in, refused, tampered, replayed, the provider's own error), then the stderr,
    every page and cookie, and every table of the ledger are searched for the secret."""
    project = copy_project(tmp_path / "project")
    port = provider.ports[1]
    configure(project, provider, port)
    project.set_config(web__base_url=f"http://127.0.0.1:{port}")
    web = WebProcess(project, port)
    seen: list[str] = []
    try:
        ok = browser(provider)
        seen.append(ok.get(f"{web.base}/login").text)
        callback = to_callback(ok, web.base, "olga")
        seen.append(str(ok.cookies.get("dispatch_sso")))
        seen.append(ok.get(callback).text)
        seen += [ok.get(f"{web.base}{path}").text for path in ("/", "/audit", "/history", "/recipients")]
        seen.append(json.dumps(dict(ok.cookies)))
        seen.append(ok.get(callback).text)  # reused
        refused = browser(provider)
        seen.append(refused.get(to_callback(refused, web.base, "nils")).text)
        tampered = browser(provider)
        seen.append(tampered.get(with_state(to_callback(tampered, web.base, "bodil"), "forged")).text)
        forged = tampered.get(f"{web.base}{CALLBACK}", params={"error": "access_denied", "error_description": "nej\nFAKE line"})
        seen.append(forged.text)
    finally:
        stderr = web.stop()
    assert "single sign-on refused for nils_region.example.se" in stderr and "ekonomi" in stderr, stderr
    assert "single sign-on failed" in stderr and "nej FAKE line" in stderr, "anyone's text stays on one line"
    for text in [stderr, *seen]:
        assert CLIENT_SECRET not in text
    ledger_path = load_settings(project.config_path).ledger_url.removeprefix("sqlite:///")
    with sqlite3.connect(ledger_path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "users" in tables and "audit" in tables
        for table in tables:
            dump = repr(db.execute(f'SELECT * FROM "{table}"').fetchall())  # table names from sqlite_master
            assert CLIENT_SECRET not in dump, table


# -- the browser: the button, the provider's page, back signed in ---------------------------------


@pytest.mark.slow  # Chromium; fast twin: test_an_approver_signs_in_through_the_provider_with_the_role_of_their_group
def test_in_chromium_the_button_leads_through_the_provider_and_back_signed_in(provider: Provider, tmp_path: Path) -> None:
    """The real browser matters here: the session cookie is SameSite=Strict and the way back from
    the provider is a cross-site navigation, which httpx would not tell from any other."""
    from playwright.sync_api import expect, sync_playwright

    project = copy_project(tmp_path / "project")
    port = provider.ports[2]
    configure(project, provider, port, label="Logga in med Region Exempels konto")
    web = WebProcess(project, port)
    try:
        with sync_playwright() as playwright:
            chromium = browser_or_skip(playwright)
            try:
                # Chromium does not know the test CA; the console, which checks the provider's
                # certificate for itself (web.oidc.ca_file), does.
                page = chromium.new_context(ignore_https_errors=True).new_page()
                page.goto(f"{web.base}/history")
                page.get_by_role("link", name="Logga in med Region Exempels konto").click()
                page.get_by_label("Username").fill("bodil")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{web.base}/history")
                expect(page.locator("body")).to_contain_text(NAMES["bodil"])
            finally:
                chromium.close()
    finally:
        web.stop()


# -- fast twins: the console without a provider, and the rules in app ------------------------------


def sso_settings(tmp_path: Path, **oidc: object) -> Settings:
    project = copy_project(tmp_path / "project")
    secret = tmp_path / "secret"
    secret.write_text(CLIENT_SECRET, encoding="utf-8")
    settings = {"issuer": f"https://127.0.0.1:{free_port()}", "client_id": CLIENT_ID, "client_secret_file": str(secret),
                "roles": ROLE_MAP, **oidc}
    project.set_config(web__oidc=settings)
    return load_settings(project.config_path)


def oidc_of(settings: Settings) -> OidcSettings:
    assert settings.web is not None and settings.web.oidc is not None, "single sign-on is configured"
    return settings.web.oidc


def test_the_sign_in_page_offers_the_provider_and_a_dead_provider_is_a_clear_page(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from dispatch.web import create_console

    client = TestClient(create_console(sso_settings(tmp_path)), follow_redirects=False)
    page = client.get("/login?next=/history")
    assert 'href="/auth/login?next=/history"' in page.text and "Logga in med organisationens konto" in page.text
    assert 'name="password"' in page.text, "local accounts stay for break-glass"
    down = client.get("/auth/login?next=/history")  # nobody listens at the issuer
    assert down.status_code == 503 and "inloggningstjänst svarar inte" in down.text and CLIENT_SECRET not in down.text
    cookie = down.headers.get("set-cookie", "")
    assert cookie.startswith("dispatch_sso=") and "path=/auth" in cookie and "samesite=lax" in cookie.lower()
    assert "httponly" in cookie.lower()


def test_without_local_accounts_only_the_provider_is_offered(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from dispatch.web import create_console

    settings = sso_settings(tmp_path, label="Logga in med SITHS-kort")
    project = Project(settings.path.parent)
    project.set_config(web__local_accounts=False)
    page = TestClient(create_console(load_settings(project.config_path))).get("/login")
    assert "Logga in med SITHS-kort" in page.text and 'name="password"' not in page.text
    assert "avstängd" not in page.text


def test_a_missing_client_secret_stops_the_console_naming_where_it_was_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dispatch.web import create_console

    monkeypatch.delenv("DISPATCH_TEST_OIDC_SECRET", raising=False)
    settings = sso_settings(tmp_path, client_secret_file=None, client_secret_env="DISPATCH_TEST_OIDC_SECRET")
    with pytest.raises(ConsoleError, match=r"\$DISPATCH_TEST_OIDC_SECRET \(web.oidc.client_secret_env\) is not set"):
        create_console(settings)
    monkeypatch.setenv("DISPATCH_TEST_OIDC_SECRET", CLIENT_SECRET)
    create_console(settings)


def test_names_from_the_providers_claims_fit_the_account_names() -> None:
    assert app.sso_name({"preferred_username": "Åsa.Öberg@Region.Example.se", "sub": "x"}) == "asa.oberg_region.example.se"
    assert app.sso_name({"email": "bo@example.org", "sub": "x"}) == "bo_example.org"
    assert app.sso_name({"preferred_username": "  ", "sub": "AbC-123_x"}) == "abc-123_x"
    assert app.sso_name({"preferred_username": "-x" * 50, "sub": "s"}) == "x-" * 32
    with pytest.raises(app.SSORefused):
        app.sso_name({"preferred_username": "@@@"})


def test_the_highest_mapped_role_wins_and_no_mapped_value_is_no_role() -> None:
    roles = tuple(ROLE_MAP.items())
    assert app.sso_role(["rapport-redaktorer", "x"], roles) == "editor"
    assert app.sso_role(["rapport-drift", "rapport-redaktorer", "rapport-godkannare"], roles) == "operator"
    assert app.sso_role(["ekonomi"], roles) is None and app.sso_role([], roles) is None
    assert app.claim_values({"groups": "rapport-drift"}, "groups") == ["rapport-drift"]
    assert app.claim_values({"roles": ["a", 7, {"x": 1}]}, "roles") == ["a", "7"]
    assert app.claim_values({}, "groups") == []


def test_an_sso_account_follows_the_provider_but_a_disabled_one_stays_out(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    unit = unit_of(load_settings(project.config_path))
    now = datetime.now(UTC)
    try:
        user = app.sso_user(unit, "bodil", "Bodil@Example.org", app.Role.EDITOR, now, remote="10.0.0.1", subject="iss|b")
        assert (user.role, user.email, user.password_hash) == ("editor", "Bodil@example.org", None)
        user = app.sso_user(unit, "bodil", "bodil@example.org", app.Role.APPROVER, now, subject="iss|b")
        assert user.role == "approver" and user.email == "bodil@example.org"
        actions = [(e.action, e.detail) for e in reversed(app.audit_log(unit))]
        assert actions[0] == ("user_added", "role editor, Bodil@example.org; single sign-on")
        assert actions[1] == ("sign_in", "from 10.0.0.1; single sign-on")
        assert actions[2][0] == "user_updated" and "role editor -> approver" in actions[2][1]
        app.disable_user(unit, "bodil", now, by="olle")
        with pytest.raises(app.SSORefused):
            app.sso_user(unit, "bodil", "bodil@example.org", app.Role.APPROVER, now, subject="iss|b")
        app.add_user(unit, "olle", "olle@example.org", "operator", PASSWORDS["olle"], now, by="test")
        with pytest.raises(app.SSORefused, match="local account"):
            app.sso_user(unit, "olle", "olle@example.org", app.Role.OPERATOR, now, subject="iss|o")
        assert [e.action for e in app.audit_log(unit, 2)] == ["sso_refused", "user_added"]
    finally:
        unit.app.close()


def test_two_provider_accounts_whose_names_clean_up_alike_never_share_one_console_account(tmp_path: Path) -> None:
    """Issue 30: the second comer was refused; now their account is held under a name of its own
    (disabled) for an operator, who enables it once they know who it is."""
    project = copy_project(tmp_path / "project")
    unit = unit_of(load_settings(project.config_path))
    now = datetime.now(UTC)
    issuer = "https://login.example.org"
    try:
        first = app.sso_user(unit, "anna.b", "anna.b@example.org", Role.EDITOR, now, subject=f"{issuer}|sub-1")
        assert first.sso_subject == f"{issuer}|sub-1"
        assert app.sso_user(unit, "anna.b", "anna.b@example.org", Role.EDITOR, now, subject=f"{issuer}|sub-1").name == "anna.b"
        with pytest.raises(app.SSOHeld, match=r"held as 'anna\.b-2'") as held:
            app.sso_user(unit, "anna.b", "annab@example.org", Role.OPERATOR, now, subject=f"{issuer}|sub-2")
        assert held.value.held == "anna.b-2"
        [entry] = [e for e in app.audit_log(unit) if e.action == "sso_held"]
        assert "the name anna.b belongs to another account" in entry.detail and "dispatch users enable anna.b-2" in entry.detail
        users = {u.name: u for u in app.list_users(unit)}
        assert (users["anna.b"].role, users["anna.b"].sso_subject) == ("editor", f"{issuer}|sub-1"), "the first is untouched"
        assert users["anna.b-2"].disabled and users["anna.b-2"].sso_subject == f"{issuer}|sub-2"
        with pytest.raises(app.SSORefused, match="disabled"):  # held until an operator acts
            app.sso_user(unit, "anna.b", "annab@example.org", Role.OPERATOR, now, subject=f"{issuer}|sub-2")
        assert app.enable_user(unit, "anna.b-2", now, by="olle")
        second = app.sso_user(unit, "anna.b", "annab@example.org", Role.OPERATOR, now, subject=f"{issuer}|sub-2")
        assert (second.name, second.role) == ("anna.b-2", "operator"), "found by subject, under the held name"
        renamed = app.sso_user(unit, "anna.berg", "anna.b@example.org", Role.EDITOR, now, subject=f"{issuer}|sub-1")
        assert renamed.name == "anna.b", "a name changed at the provider keeps the account (approvals are by name)"
    finally:
        unit.app.close()


def test_a_role_taken_away_at_the_provider_goes_at_the_next_refused_sign_in(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    unit = unit_of(load_settings(project.config_path))
    ledger = unit.ledger
    now = datetime.now(UTC)
    try:
        began = app.sso_user(unit, "frida", "frida@example.org", Role.APPROVER, now, subject="iss|f").session_generation
        assert app.active_user(unit, "frida", began) is not None
        assert app.sso_no_role(unit, "frida", "iss|f", "no console role for groups []", now) == "frida"
        user = ledger.user("frida")
        assert user is not None and user.role == app.NO_ROLE and not user.may(app.Permission.EDIT)
        assert app.active_user(unit, "frida", began) is None, "its open sessions may do nothing more"
        assert [e.action for e in app.audit_log(unit, 2)] == ["sso_refused", "user_updated"]
        assert "role approver -> -" in app.audit_log(unit, 2)[1].detail
        back = app.sso_user(unit, "frida", "frida@example.org", Role.EDITOR, now, subject="iss|f")
        assert back.role == "editor" and app.active_user(unit, "frida", began) is not None, "a group given back: a role again"
        assert app.sso_no_role(unit, "nobody", "iss|n", "x", now) == "nobody" and ledger.user("nobody") is None
    finally:
        unit.app.close()


# -- issue 30: a provider that answers with whatever ID token the test built ------------------------
# The real provider only makes good tokens; what the console does with a bad one needs a provider
# that lies. This one is a real HTTPS server (discovery, keys, token endpoint) in this process;
# the console is in-process too (Starlette's TestClient), and talks to it over TLS as it would to
# Entra ID.


class Forger:
    """An OpenID provider whose token endpoint returns ``self.id_token``, whatever it is, and whose
    discovery document lists "none" and HS256 beside RS256, as a careless or hostile one might."""

    def __init__(self, issuer: str, ca_file: Path, key: Key, server: ThreadingHTTPServer) -> None:
        self.issuer, self.ca_file, self.key, self.server = issuer, ca_file, key, server
        self.id_token = ""

    def signed(self, claims: dict[str, object], alg: str = "RS256", key: Key | None = None) -> str:
        from joserfc import jwt
        from joserfc.jws import JWSRegistry

        header = {"alg": alg, "kid": "forger"}
        return jwt.encode(header, claims, key or self.key, registry=JWSRegistry(algorithms=[alg]))

    @staticmethod
    def unsigned(claims: dict[str, object]) -> str:
        import base64

        def part(value: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.fixture(scope="module")
def forger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forger]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme
    from joserfc.jwk import RSAKey

    here = tmp_path_factory.mktemp("forger")
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(here / "ca.pem"))
    key = RSAKey.generate_key(2048, parameters={"kid": "forger", "use": "sig"})
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    state: dict[str, Forger] = {}

    class Handler(BaseHTTPRequestHandler):
        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json({"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                            "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks",
                            "end_session_endpoint": f"{issuer}/logout", "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256", "none", "HS256"]})
            elif self.path == "/jwks":
                self._json({"keys": [key.as_dict(private=False)]})
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self._json({"access_token": "forged-access", "token_type": "Bearer", "expires_in": 300,
                        "id_token": state["forger"].id_token})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["forger"] = Forger(issuer, here / "ca.pem", key, server)
    try:
        yield state["forger"]
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Forged:
    client: TestClient
    project: Project


def forged_console(tmp_path: Path, forger: Forger, **oidc: object) -> Forged:
    from starlette.testclient import TestClient

    from dispatch.web import create_console

    settings = sso_settings(tmp_path, issuer=forger.issuer, ca_file=str(forger.ca_file), **oidc)
    return Forged(TestClient(create_console(settings), follow_redirects=False), Project(settings.path.parent))


def forged_sign_in(console: Forged, forger: Forger, next_path: str = "/history", *, alg: str = "RS256",
                   **claims: object) -> httpx2.Response:  # the TestClient's (starlette speaks httpx2)
    """Start at /auth/login, skip the provider's pages (the test is the provider), and come back
    to the callback with an ID token built from the defaults below and ``claims``; the callback's answer."""
    client = console.client
    start = client.get("/auth/login", params={"next": next_path})
    assert start.status_code == 302, start.text
    query = dict(parse_qsl(urlsplit(start.headers["location"]).query))
    now = int(time.time())
    body: dict[str, object] = {"iss": forger.issuer, "sub": "forged-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                               "nonce": query["nonce"], "preferred_username": "gustav@region.example.se",
                               "email": "gustav@region.example.se", "email_verified": True,
                               "groups": ["rapport-redaktorer"]}
    body.update(claims)
    body = {key: value for key, value in body.items() if value is not None}
    if alg == "none":
        forger.id_token = Forger.unsigned(body)
    elif alg == "HS256":  # keyed with the client secret, which the console holds too
        from joserfc.jwk import OctKey

        forger.id_token = forger.signed(body, "HS256", OctKey.import_key(CLIENT_SECRET))
    else:
        forger.id_token = forger.signed(body, alg)
    return client.get(CALLBACK, params={"code": "forged-code", "state": query["state"]})


def forged_audit(console: Forged, action: str) -> list[app.AuditEntry]:
    return audit_entries(console.project, action)


def test_a_well_built_forged_token_signs_in_the_control_for_the_tests_below(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    answer = forged_sign_in(console, forger)
    assert answer.status_code == 200 and 'url=/history"' in answer.text, answer.text
    assert "dispatch_session" in console.client.cookies
    assert user_row(console.project, "gustav_region.example.se") is not None


def test_an_unsigned_id_token_is_refused_though_the_provider_lists_none(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    for alg in ("none", "HS256"):
        answer = forged_sign_in(console, forger, alg=alg)
        assert answer.status_code == 403 and "kunde inte slutföras" in answer.text, alg
        assert "dispatch_session" not in console.client.cookies, alg
    failed = forged_audit(console, "sso_failed")
    assert len(failed) == 2 and all("the ID token is not valid" in e.detail for e in failed), failed
    assert user_row(console.project, "gustav_region.example.se") is None


def test_the_configured_algorithms_are_the_only_ones_accepted(tmp_path: Path, forger: Forger) -> None:
    """web.oidc.id_token_algorithms: ES256 only, so a good RS256 token from the same provider fails."""
    console = forged_console(tmp_path, forger, id_token_algorithms=["ES256"])
    assert forged_sign_in(console, forger).status_code == 403
    assert "the ID token is not valid" in forged_audit(console, "sso_failed")[0].detail


def test_an_id_token_for_another_client_is_refused_though_azp_names_ours(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    answer = forged_sign_in(console, forger, aud="some-other-app", azp=CLIENT_ID)
    assert answer.status_code == 403 and "dispatch_session" not in console.client.cookies
    [entry] = forged_audit(console, "sso_failed")
    assert "aud" in entry.detail, entry.detail
    # Ours among several audiences (with azp ours, as Core 3.1.3.7 asks) is fine.
    assert forged_sign_in(console, forger, aud=[CLIENT_ID, "some-other-app"], azp=CLIENT_ID).status_code == 200


def test_a_next_with_a_tab_goes_to_the_console_not_to_another_host(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    for sneaky in ("/\t/evil.example/x", "/\n/evil.example/x", "/\r\n/evil.example", "/\x00/evil.example", "/\\evil.example"):
        answer = forged_sign_in(console, forger, sneaky)
        assert answer.status_code == 200 and 'url=/"' in answer.text and "evil.example" not in answer.text, repr(sneaky)
    assert 'url=/history/%09x"' in forged_sign_in(console, forger, "/history/%09x").text, "an encoded tab is only text"


def test_only_a_verified_email_becomes_the_accounts_address(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    for verified, expected in ((False, ""), (None, ""), ("true", ""), (True, "gustav@region.example.se")):
        assert forged_sign_in(console, forger, email_verified=verified).status_code == 200
        user = user_row(console.project, "gustav_region.example.se")
        assert user is not None and user.email == expected, (verified, user)


def test_signing_out_of_an_sso_account_signs_out_at_the_provider_too(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    assert forged_sign_in(console, forger).status_code == 200
    page = console.client.get("/history")
    assert 'action="/auth/logout"' in page.text
    out = console.client.post("/auth/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    target = urlsplit(out.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{forger.issuer}/logout"
    assert dict(parse_qsl(target.query)) == {"client_id": CLIENT_ID, "post_logout_redirect_uri": "http://testserver/login",
                                             "ui_locales": "sv"}
    assert console.client.get("/history").status_code == 303, "and out of the console"
    assert [e.user for e in forged_audit(console, "sign_out")] == ["gustav_region.example.se"]
    assert console.client.post("/auth/logout", data={"csrf": "x"}).status_code in (401, 403)


def test_a_local_account_signs_out_of_the_console_only(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    add_users(console.project, ("anna",))
    page = console.client.get("/login")
    console.client.post("/login", data={"username": "anna", "password": PASSWORDS["anna"],
                                        "csrf": csrf_of(page.text), "next": "/history"})
    page = console.client.get("/history")
    assert page.status_code == 200, page.text
    out = console.client.post("/auth/logout", data={"csrf": csrf_of(page.text)})
    assert (out.status_code, out.headers["location"]) == (303, "/login")


def test_a_role_taken_away_at_the_provider_ends_what_the_open_session_may_do(tmp_path: Path, forger: Forger) -> None:
    console = forged_console(tmp_path, forger)
    assert forged_sign_in(console, forger).status_code == 200
    first = dict(console.client.cookies)
    assert console.client.get("/history").status_code == 200
    refused = forged_sign_in(console, forger, groups=["ekonomi"])
    assert refused.status_code == 403 and "ingen roll" in refused.text
    user = user_row(console.project, "gustav_region.example.se")
    assert user is not None and user.role == app.NO_ROLE
    console.client.cookies.update(first)
    assert console.client.get("/history").status_code == 303, "the session from before signs in nothing now"
    assert forged_sign_in(console, forger).status_code == 200, "the group back: the role back"
    user = user_row(console.project, "gustav_region.example.se")
    assert user is not None and user.role == "editor"


def test_id_token_algorithms_in_the_config_are_checked_at_their_line(tmp_path: Path) -> None:
    from dispatch.errors import InputError

    assert oidc_of(sso_settings(tmp_path / "a")).id_token_algorithms == ("RS256",)
    assert oidc_of(sso_settings(tmp_path / "b", id_token_algorithms="ES256")).id_token_algorithms == ("ES256",)
    for wrong in (["RS256", "none"], "HS256", [], "rs256"):
        with pytest.raises(InputError) as problem:
            sso_settings(tmp_path / f"c{wrong!s:.3}{len(str(wrong))}", id_token_algorithms=wrong)
        message = str(problem.value)
        assert "id_token_algorithms" in message and re.search(r"config\.yaml:\d+", message), message


# -- issue 30 with the real provider ---------------------------------------------------------------


def test_a_next_with_a_tab_stays_on_the_console_after_a_real_sign_in(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, _ = console
    client = browser(provider)
    done = client.get(to_callback(client, web.base, "bodil", "/\t/evil.example/x"))  # /auth/login?next=/%09/evil.example/x
    assert done.status_code == 200 and 'url=/"' in done.text and "evil.example" not in done.text, done.text


def test_a_second_provider_account_whose_name_cleans_up_to_erik_is_held_not_signed_in_as_erik(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    sso_sign_in(provider, web.base, "erik")
    client = browser(provider)
    held = client.get(to_callback(client, web.base, "erik2"))  # "Érik@region.example.se"
    assert held.status_code == 403 and "väntar på att den som förvaltar" in held.text and "erik_region.example.se-2" in held.text
    assert "dispatch_session" not in client.cookies
    [entry] = [e for e in audit_entries(project, "sso_held")]
    assert entry.user == "erik_region.example.se-2" and "dispatch users enable erik_region.example.se-2" in entry.detail
    erik, second = user_row(project, NAMES["erik"]), user_row(project, "erik_region.example.se-2")
    assert erik is not None and second is not None and erik.sso_subject != second.sso_subject
    assert (erik.role, erik.email, erik.disabled) == ("approver", "erik@region.example.se", False), "erik is untouched"
    assert second.disabled and second.email == "erik2@region.example.se"
    # Once an operator knows who it is: `dispatch users enable`, and Érik signs in under the held name.
    enabled = project.run("users", "enable", "erik_region.example.se-2")
    assert enabled.returncode == 0, enabled.stderr
    erik2 = sso_sign_in(provider, web.base, "erik2")
    assert "erik_region.example.se-2" in erik2.get(f"{web.base}/").text


def test_an_address_the_provider_has_not_verified_is_not_kept(provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    sso_sign_in(provider, web.base, "mallory")
    user = user_row(project, NAMES["mallory"])
    assert user is not None and user.email == "" and user.role == "editor"


def test_a_group_removed_at_the_provider_removes_the_role_at_the_next_sign_in(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, project = console
    frida = sso_sign_in(provider, web.base, "frida")
    assert frida.get(f"{web.base}/history").status_code == 200
    provider.set_groups("frida", ["alla-anstallda"])
    try:
        client = browser(provider)
        assert client.get(to_callback(client, web.base, "frida")).status_code == 403
    finally:
        provider.set_groups("frida", ["rapport-godkannare"])
    user = user_row(project, NAMES["frida"])
    assert user is not None and user.role == app.NO_ROLE
    assert frida.get(f"{web.base}/history").status_code == 303, "her earlier session may do nothing more"


def test_signing_out_ends_the_providers_session_so_the_next_sign_in_asks_again(
        provider: Provider, console: tuple[WebProcess, Project]) -> None:
    web, _ = console
    client = sso_sign_in(provider, web.base, "olga")
    page = client.get(f"{web.base}/history")
    again = client.get(f"{web.base}/auth/login", params={"next": "/"})
    assert urljoin(again.headers["location"], "/") != f"{web.base}/" and "dispatch_session" in client.cookies
    out = client.post(f"{web.base}/auth/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"].startswith(f"{provider.issuer}/session/end?")
    confirm = client.get(out.headers["location"])  # the provider asks "sign out?" (no id_token_hint)
    assert confirm.status_code == 200, confirm.text
    form = re.search(r'<form[^>]*action="([^"]+)"', confirm.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
    assert form and xsrf, confirm.text
    back = client.post(urljoin(out.headers["location"], form.group(1)), data={"xsrf": xsrf.group(1), "logout": "yes"})
    assert back.status_code in (302, 303) and back.headers["location"] == f"{web.base}/login", back.text
    # The provider's session is over: a new sign-in meets its sign-in page again.
    start = client.get(f"{web.base}/auth/login", params={"next": "/"})
    interaction = client.get(start.headers["location"])
    assert interaction.status_code in (302, 303)
    form_page = client.get(urljoin(start.headers["location"], interaction.headers["location"]))
    assert form_page.status_code == 200 and 'name="login"' in form_page.text


@pytest.mark.slow  # Chromium; fast twins: test_a_next_with_a_tab_stays_on_the_console_after_a_real_sign_in, test_a_next_with_a_tab_goes_*
def test_in_chromium_a_next_with_a_tab_lands_on_the_console(provider: Provider, tmp_path: Path) -> None:
    """What the browser itself does with the meta refresh: it drops a tab from a URL, so only a
    real one shows that /%09/evil.example/x no longer leaves the console."""
    from playwright.sync_api import sync_playwright

    project = copy_project(tmp_path / "project")
    port = provider.ports[3]
    configure(project, provider, port)
    web = WebProcess(project, port)
    try:
        with sync_playwright() as playwright:
            chromium = browser_or_skip(playwright)
            try:
                page = chromium.new_context(ignore_https_errors=True).new_page()
                page.goto(f"{web.base}/auth/login?next=/%09/evil.example/x")
                page.get_by_label("Username").fill("bodil")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{web.base}/")
                assert urlsplit(page.url).netloc == f"127.0.0.1:{port}"
            finally:
                chromium.close()
    finally:
        web.stop()

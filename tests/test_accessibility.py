"""Issue 21: accessible to everyone who writes, approves and reads the report (WCAG 2.1 AA).

axe-core (the npm package, installed by .ci/run into tests/axe) is injected by Playwright
into every console page, the intranet pages and the rendered email, at 375 and 1280 px, in
light and dark: 0 violations of impact serious or critical. A keyboard-only walk signs in,
edits, saves and approves with Tab, Shift+Tab, Enter and Space (and typing). At 320 px and
200 % zoom no console page scrolls sideways."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import consolekit
from conftest import IN_CI, ROOT, STOCKHOLM, Project, copy_project
from consolekit import PASSWORDS, WebProcess, add_users, csrf_of, sign_in

AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
TODAY = datetime.now(STOCKHOLM).date()
SERIOUS = ("serious", "critical")


def require_axe() -> None:
    if not AXE.exists():
        message = f"axe-core is needed at {AXE} (npm ci --prefix tests/axe)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebProcess, Project, dict[str, str]]]:
    """A console with a sent edition (history, progress, intranet copy), today's approved
    edition (the send confirmation), and the previews of an edition, an urgent message and a
    correction."""
    require_axe()
    project = copy_project(tmp_path_factory.mktemp("a11y") / "project")
    assert project.run("send", "--date", "2024-11-17").returncode == 0  # the sample, approved in its front matter
    project.set_config(approval="four_eyes", accessibility={"organisation": "Västra Götalandsregionen",
                                                            "contact_email": "tillganglighet@example.org",
                                                            "known_gaps": ["Förhandsvisningen visas i en ram."]})
    add_users(project, ("anna", "bo", "olle"))
    web = WebProcess(project)
    anna = sign_in(web.base, "anna")
    page = anna.get(f"/editions/{TODAY.isoformat()}")
    body = "## Beskrivning av händelsen\n\n- Läget är oförändrat sedan i går.\n"
    anna.post(f"/editions/{TODAY.isoformat()}/save", data={"compiled": f"{TODAY.isoformat()} 00:00", "status": "draft",
                                                         "body": body, "base": "new", "csrf": csrf_of(page.text)})
    bo = sign_in(web.base, "bo")
    page = bo.get(f"/editions/{TODAY.isoformat()}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen
    bo.post(f"/editions/{TODAY.isoformat()}/approve", data={"csrf": csrf_of(page.text), "seen": seen.group(1)})
    emails = _previews(project)
    try:
        yield web, project, emails
    finally:
        web.stop()


def _previews(project: Project) -> dict[str, str]:
    out = project.root / "var" / "a11y-preview"
    found = {}
    assert project.run("preview", "--date", "2024-11-17", "--out", str(out / "edition")).returncode == 0
    found["edition"] = str(out / "edition" / "2024-11-17.html")
    urgent = project.root / "reports" / "urgent" / "sas-akutmottagning.md"
    assert project.run("preview", "--urgent", "--file", str(urgent), "--out", str(out / "urgent")).returncode == 0
    found["urgent"] = str(next((out / "urgent").glob("*.html")))
    text = (project.root / "reports" / "2024-11-17.md").read_text(encoding="utf-8")
    corrected = project.root / "var" / "2024-11-17-r2" / "2024-11-17.md"
    corrected.parent.mkdir(parents=True)
    corrected.write_text(text.replace("status: approved", "status: approved\nrevision: 2\ncorrection: \"Tiden är rättad.\""),
                         encoding="utf-8")
    assert project.run("preview", "--file", str(corrected), "--out", str(out / "correction")).returncode == 0
    found["correction"] = str(next((out / "correction").glob("*.html")))
    return found


chromium = consolekit.chromium  # the shared module-scoped fixture


def axe_violations(page: Any) -> dict[str, list[str]]:
    """The serious axe violations on the open page in the light and in the dark colour scheme:
    the same document with prefers-color-scheme switched (what a context's color_scheme option
    sets), so that each page is loaded once for both schemes."""
    page.add_script_tag(path=str(AXE))
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        problems = [f"{v['id']} ({v['impact']}): {v['help']}: " + "; ".join(n["target"][0] if n["target"] else "?"
                                                                            for n in v["nodes"][:4])
                    for v in result["violations"] if v["impact"] in SERIOUS]
        if problems:
            found[scheme] = problems
    return found


def console_pages(site: tuple[WebProcess, Project, dict[str, str]]) -> list[tuple[str, str | None]]:
    """(path, who) for every console page; None: without signing in."""
    _, project, _ = site
    history = project.status("2024-11-17")["dispatch"]
    return [("/login", None), ("/tillganglighet", None), ("/", "olle"), (f"/editions/{TODAY.isoformat()}", "olle"),
            ("/editions/2024-11-17", "anna"), ("/history", "olle"), (f"/history/{history}", "olle"), ("/recipients", "olle"),
            ("/audit", "olle"), ("/urgent", "olle"), (f"/editions/{TODAY.isoformat()}/send", "olle"), (f"/runs/{history}", "olle"),
            ("/password", "anna")]


def settle(page: Any, url: str) -> None:
    """Open the page and wait for what it loads after itself (the edition's live preview)."""
    page.goto(url)
    if "/editions/" in url and not url.endswith("/send"):
        page.locator("#problems").wait_for()


def signed_in_context(chromium: Any, base: str, who: str | None, **options: Any) -> Any:
    # bypass_csp: the pages' policy forbids the inline script Playwright injects axe with.
    context = chromium.new_context(bypass_csp=True, **options)
    if who is not None:
        page = context.new_page()
        page.goto(base + "/login")
        page.get_by_label("Användarnamn").fill(who)
        page.get_by_label("Lösenord").fill(PASSWORDS[who])
        page.get_by_role("button", name="Logga in").click()
        page.wait_for_url(base + "/")
        page.close()
    return context


@pytest.mark.slow  # about a minute of axe runs; fast twin: test_the_statement_is_public_and_names_the_contact
def test_no_serious_axe_violations_on_any_console_page_or_the_intranet(
        site: tuple[WebProcess, Project, dict[str, str]], chromium: Any) -> None:
    web, project, _ = site
    found: dict[str, list[str]] = {}
    contexts = {who: {width: signed_in_context(chromium, web.base, who, viewport={"width": width, "height": 900})
                      for width in (375, 1280)} for who in (None, "anna", "olle")}
    # One tab per person and width, taken from page to page as a reader would (a tab per page
    # costs Chromium a renderer each time and finds nothing more).
    tabs = {who: {width: context.new_page() for width, context in by_width.items()} for who, by_width in contexts.items()}
    try:
        for path, who in console_pages(site):
            for width, page in tabs[who].items():
                settle(page, web.base + path)
                for scheme, problems in axe_violations(page).items():
                    found[f"{path} at {width} px, {scheme}"] = problems
        intranet = project.root / "var" / "intranet"
        for name in ("index.html", "2024-11-17.html", "tillganglighet.html"):
            for width, page in tabs[None].items():
                page.goto((intranet / name).as_uri())
                for scheme, problems in axe_violations(page).items():
                    found[f"intranet {name} at {width} px, {scheme}"] = problems
    finally:
        for by_width in contexts.values():
            for context in by_width.values():
                context.close()
    assert not found, "\n".join(f"{where}: {problem}" for where, problems in found.items() for problem in problems)


@pytest.mark.slow  # Chromium; fast twin: test_check_flags_vague_link_texts (tests/test_editorial.py)
def test_no_serious_axe_violations_in_the_email(site: tuple[WebProcess, Project, dict[str, str]], chromium: Any) -> None:
    _, _, emails = site
    found = {}
    for width in (375, 1280):
        context = chromium.new_context(bypass_csp=True, viewport={"width": width, "height": 900})
        try:
            for kind, path in emails.items():
                page = context.new_page()
                page.goto(Path(path).as_uri())
                for scheme, problems in axe_violations(page).items():
                    found[f"{kind} at {width} px, {scheme}"] = problems
                html = Path(path).read_text(encoding="utf-8")
                assert 'role="article"' in html and 'lang="sv"' in html, kind
        finally:
            context.close()
    assert not found, "\n".join(f"{where}: {problem}" for where, problems in found.items() for problem in problems)


WIDEST = ("Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > 321)"
          ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 6)")


@pytest.mark.slow  # Chromium; fast twin: test_the_statement_is_public_and_names_the_contact
def test_no_console_page_scrolls_sideways_at_320_px_and_200_percent(site: tuple[WebProcess, Project, dict[str, str]],
                                                                     chromium: Any) -> None:
    web, _, _ = site
    wide: dict[str, tuple[int, list[str]]] = {}
    for who in (None, "anna", "olle"):
        context = signed_in_context(chromium, web.base, who, viewport={"width": 320, "height": 640}, device_scale_factor=2)
        try:
            for path, owner in console_pages(site):
                if owner != who:
                    continue
                page = context.new_page()
                settle(page, web.base + path)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > 320:
                    wide[path] = (width, page.evaluate(WIDEST))
                page.close()
        finally:
            context.close()
    assert not wide, f"wider than 320 px: {wide}"


@pytest.mark.slow  # Chromium, two people; fast twin: test_the_statement_is_public_and_names_the_contact
def test_sign_in_edit_save_and_approve_with_the_keyboard_only(site: tuple[WebProcess, Project, dict[str, str]],
                                                            chromium: Any, tmp_path: Path) -> None:
    web, project, _ = site
    day = TODAY.isoformat()
    editor = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    keyboard_sign_in(editor, web.base, "anna")
    tab_to(editor, f"a[href='/editions/{day}']")  # "Öppna rapporten DAY" on Idag
    with editor.expect_navigation():
        editor.keyboard.press("Enter")
    tab_to(editor, "#f-body")
    editor.keyboard.press("Control+End")
    editor.keyboard.type("- Ny punkt skriven med tangentbordet.\n")
    tab_to(editor, "#editor-form button[type=submit]")
    outline = editor.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert editor.evaluate("document.activeElement.textContent.trim()") == "Spara" and outline != "none"
    shot = tmp_path / "focus-on-spara.png"
    editor.screenshot(path=str(shot))
    if os.environ.get("DISPATCH_UPDATE_SCREENS"):  # the README's picture of it: only when asked to renew it
        shutil.copy(shot, ROOT / "docs" / "keyboard-focus-spara.png")
    assert shot.stat().st_size > 10_000
    with editor.expect_navigation():
        editor.keyboard.press("Enter")
    assert "Sparad" in editor.locator("#status").inner_text()
    assert "Ny punkt skriven med tangentbordet" in (project.root / "reports" / f"{day}.md").read_text(encoding="utf-8")

    approver = chromium.new_context(viewport={"width": 375, "height": 800}).new_page()
    keyboard_sign_in(approver, web.base, "bo")
    tab_to(approver, f"a[href='/editions/{day}']")
    with approver.expect_navigation():
        approver.keyboard.press("Enter")
    tab_to(approver, "form[action$='/approve'] button")
    with approver.expect_navigation():
        approver.keyboard.press("Space")
    assert "Godkänd av bo" in approver.locator(".standing .state").inner_text()


def keyboard_sign_in(page: Any, base: str, who: str) -> None:
    page.goto(base + "/login")
    tab_to(page, "#username")
    page.keyboard.type(who)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS[who])
    tab_to(page, "form[action='/login'] button")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Tab until the focused element matches ``selector``, checking every stop is visible."""
    for _ in range(limit):
        if page.evaluate(f"!!document.activeElement && document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} was not reached with Tab")


def test_the_statement_is_public_and_names_the_contact(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    project.set_config(accessibility={"organisation": "Västra Götalandsregionen", "contact_email": "tillganglighet@example.org",
                                      "contact_phone": "010-441 00 00", "known_gaps": ["Förhandsvisningen visas i en ram."],
                                      "assessed": "2026-11-30"})
    web = WebProcess(project)
    try:

        page = consolekit.http_client().get(web.base + "/tillganglighet")
        assert page.status_code == 200, "readable without signing in"
        for text in ("Tillgänglighetsredogörelse", "Västra Götalandsregionen", "tillganglighet@example.org", "010-441 00 00",
                     "Förhandsvisningen visas i en ram.", "delvis förenlig", "Tillsyn", "digg.se", "2026-11-30",
                     '<html lang="sv">', '<span lang="en">Web Content Accessibility Guidelines</span>'):
            assert text in page.text, text
    finally:
        web.stop()
    assert project.run("publish", "--date", "2024-11-17").returncode == 0
    intranet = (project.root / "var" / "intranet" / "tillganglighet.html").read_text(encoding="utf-8")
    assert "Västra Götalandsregionen" in intranet and "tillganglighet@example.org" in intranet and "Tillsyn" in intranet
    assert 'href="tillganglighet.html"' in (project.root / "var" / "intranet" / "index.html").read_text(encoding="utf-8")

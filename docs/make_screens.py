#!/usr/bin/env python3
"""Screenshots of the editor console (``dispatch web``) for the documentation.

Run from the repository root:

    .venv/bin/python docs/make_screens.py

It copies the sample project (config.yaml, reports/, recipients/) into a temporary
directory with ``approval: four_eyes``, creates three accounts with the real CLI
(editor anna, approver bo, operator olle), starts the console as a subprocess and drives
it with Playwright through the real forms: anna writes today's edition, waits for the
preview to say there are no problems, saves it and sends a test to herself; bo approves
it. Then it writes full-page PNGs of every page at 375 px and 1280 px wide to
``docs/console-<page>-<width>.png`` (pages longer than 2400 px are clipped), and stops
the server. Nothing outside the temporary directory and docs/ is touched.

Needs Playwright (in the venv) and Chromium at /usr/bin/chromium (or $CHROMIUM).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WIDTHS = (375, 1280)
HEIGHT = 800
MAX_HEIGHT = 2400
ZONE = ZoneInfo("Europe/Stockholm")  # the sample config's timezone: "today" is today there

ACCOUNTS = {  # name: (email, role, password); passwords need at least 12 characters
    "anna": ("anna.andersson@example.org", "editor", "anna-lösenord-2024"),
    "bo": ("bo.berg@example.org", "approver", "bo-lösenord-2024!"),
    "olle": ("olle.olsson@example.org", "operator", "olle-lösenord-2024"),
}

REPORT = """\
## Beskrivning av händelsen

- Journalsystemet Millennium är åter i drift på SÄS sedan klockan 07.00.
- Akutmottagningen i Borås tar emot patienter som vanligt; omdirigeringen till andra sjukhus upphör i kväll.
- Inga allvarliga vårdskador har rapporterats under dygnet.
"""

URGENT = """\
Akutmottagningen på SÄS tar inte emot nya patienter från **klockan 16:00** i dag.
Hänvisa till Sahlgrenska Universitetssjukhuset eller Skaraborgs sjukhus.
"""


def log(message: str) -> None:
    print(f"make_screens: {message}", flush=True)


def prepare_project(work: Path) -> Path:
    """The sample project in ``work``: four-eyes approval, the repository's email templates."""
    shutil.copy2(ROOT / "config.yaml", work / "config.yaml")
    shutil.copytree(ROOT / "reports", work / "reports")
    shutil.copytree(ROOT / "recipients", work / "recipients")
    config = work / "config.yaml"
    text = config.read_text(encoding="utf-8")
    templates = f"templates_dir: {(ROOT / 'templates' / 'email').as_posix()}"
    text, found = re.subn(r"(?m)^templates_dir:.*$", lambda _: templates, text)
    if not found:
        text += f"\n{templates}\n"
    text, found = re.subn(r"(?m)^approval:.*$", "approval: four_eyes", text)
    if not found:
        text = re.sub(r"(?m)^(timezone:.*)$", r"\1\napproval: four_eyes", text, count=1)
    config.write_text(text, encoding="utf-8")
    return config


def cli(env: dict[str, str], config: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dispatch", "--config", str(config), *args],
                   cwd=config.parent, env=env, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"make_screens: the console exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"make_screens: {base}/healthz did not answer 200 within {seconds:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM: uvicorn shuts down gracefully, then re-raises the signal (uvicorn >= 0.29), so
    a clean stop ends with -SIGTERM (SIGINT would end in click's "Aborted!" and exit 1)."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        log("the console did not stop on SIGTERM; killed it")


def sign_in(browser: Browser, base: str, name: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(base_url=base, viewport={"width": WIDTHS[-1], "height": HEIGHT}, locale="sv-SE",
                                  timezone_id="Europe/Stockholm", color_scheme="light")
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Användarnamn").fill(name)
    page.get_by_label("Lösenord").fill(ACCOUNTS[name][2])
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    return context, page


def wait_for_preview(page: Page) -> None:
    expect(page.locator("#problems")).to_be_visible(timeout=20_000)
    frames = page.locator("#preview iframe")
    if frames.count():
        for i in range(frames.count()):
            frames.nth(i).content_frame.locator("body").wait_for(timeout=20_000)
    page.wait_for_timeout(300)  # let console.js fit the frames to the width


def shoot(page: Page, path: str, name: str, ready=None) -> list[Path]:
    """Both widths of one page; returns the files written.

    The viewport is made as tall as the page (at most MAX_HEIGHT) and then shot, rather than
    using Playwright's full_page: the preview frames are sandboxed iframes, which Chromium
    renders in their own process, and full_page often captures them blank."""
    written = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if ready:
            ready(page)
        height = page.evaluate("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
        page.set_viewport_size({"width": width, "height": max(HEIGHT, min(height, MAX_HEIGHT))})
        page.wait_for_timeout(500)
        if ready:
            ready(page)
        out = DOCS / f"console-{name}-{width}.png"
        page.screenshot(path=out)
        written.append(out)
        log(f"wrote {out.relative_to(ROOT)} ({height} px tall{', clipped' if height > MAX_HEIGHT else ''})")
    page.set_viewport_size({"width": WIDTHS[-1], "height": HEIGHT})
    return written


def flow_and_screens(base: str, day: str) -> list[Path]:
    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            # The sign-in page, as anyone sees it before signing in.
            anonymous = browser.new_context(base_url=base, locale="sv-SE", color_scheme="light")
            written += shoot(anonymous.new_page(), "/login", "login")
            anonymous.close()

            # anna writes today's edition (tomorrow's would not be sent before its time), checks the
            # preview, saves and sends a test to herself.
            anna_context, anna = sign_in(browser, base, "anna")
            anna.goto(f"/editions/{day}")
            wait_for_preview(anna)
            body = anna.get_by_label("Innehåll", exact=True)
            body.fill(REPORT)
            expect(anna.locator("#problems")).to_contain_text("Inga problem hittades", timeout=20_000)
            log("anna: the preview says no problems")
            with anna.expect_navigation():
                anna.get_by_role("button", name="Spara", exact=True).click()
            expect(anna.locator(".error")).to_have_count(0)
            log("anna: saved")
            anna.get_by_role("button", name="Skicka test till mig").click()
            expect(anna.locator("#status")).to_contain_text("TEST", timeout=30_000)
            log(f"anna: {anna.locator('#status').inner_text().strip()}")

            # bo approves it in his own browser.
            bo_context, bo = sign_in(browser, base, "bo")
            bo.goto(f"/editions/{day}")
            bo.get_by_role("button", name="Godkänn", exact=True).click()
            expect(bo.locator("#status")).to_contain_text("Godkänd", timeout=20_000)
            log("bo: approved")
            bo_context.close()

            # anna's pages.
            written += shoot(anna, "/", "today")
            written += shoot(anna, f"/editions/{day}", "edition", ready=wait_for_preview)
            written += shoot(anna, "/history", "history")
            link = anna.locator("table a[href^='/history/']").first
            if link.count():
                written += shoot(anna, link.get_attribute("href"), "dispatch")
            else:
                log("no dispatch in the history; no console-dispatch-*.png")
            written += shoot(anna, "/recipients", "recipients")
            anna_context.close()

            # olle (operator) confirms the send, and watches it; then the urgent composer.
            olle_context, olle = sign_in(browser, base, "olle")
            written += shoot(olle, f"/editions/{day}/send", "send")
            olle.goto(f"/editions/{day}/send")
            with olle.expect_navigation():
                olle.get_by_role("button", name="Bekräfta").click()
            expect(olle.locator("#run-state")).to_have_text("Klar", timeout=60_000)
            written += shoot(olle, olle.url.replace(base, ""), "progress")
            log("olle: sent")

            def urgent_ready(page: Page) -> None:
                if not page.get_by_label("Ämne").input_value():
                    page.get_by_label("Ämne").fill("Akutmottagningen på SÄS stänger klockan 16")
                    page.get_by_label("Innehåll", exact=True).fill(URGENT)
                    expect(page.locator("#problems")).to_contain_text("Inga problem hittades", timeout=20_000)
                    page.get_by_role("button", name="Skicka brådskande").click()
                    page.wait_for_load_state("networkidle")
                wait_for_preview(page)
            written += shoot(olle, "/urgent", "urgent", ready=urgent_ready)
            written += shoot(olle, "/audit", "audit")
            olle_context.close()

            # anna corrects the sent edition: a new revision, the diff against what was sent.
            anna_context, anna = sign_in(browser, base, "anna")
            anna.goto(f"/editions/{day}")
            anna.get_by_role("button", name="Skapa rättelse").click()
            anna.get_by_label("Innehåll", exact=True).fill(REPORT.replace("sedan klockan 07.00", "sedan klockan 09.00", 1))
            anna.get_by_label("Rättelse", exact=True).fill("Återstarten är flyttad till onsdag.")
            expect(anna.locator("#problems")).to_contain_text("Inga problem hittades", timeout=20_000)
            with anna.expect_navigation():
                anna.get_by_role("button", name="Spara", exact=True).click()
            written += shoot(anna, f"/editions/{day}", "correction", ready=wait_for_preview)
            anna_context.close()
        finally:
            browser.close()
    return written


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dispatch-screens-") as temp:
        work = Path(temp) / "project"
        work.mkdir()
        state = Path(temp) / "state"
        state.mkdir()
        config = prepare_project(work)
        env = {**os.environ, "DISPATCH_STATE_DIR": str(state)}
        env.pop("DISPATCH_CONFIG", None)
        for name, (email, role, password) in ACCOUNTS.items():
            secret = Path(temp) / f"{name}.password"
            secret.write_text(password + "\n", encoding="utf-8")
            cli(env, config, "users", "add", name, "--email", email, "--role", role, "--password-file", str(secret))
        day = datetime.now(ZONE).date().isoformat()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "dispatch", "--config", str(config), "web",
                                   "--listen", f"127.0.0.1:{port}"], cwd=work, env=env)
        try:
            wait_healthy(base, server)
            log(f"console at {base}; today is {day}")
            written = flow_and_screens(base, day)
        finally:
            stop(server)
        if server.returncode not in (0, -signal.SIGTERM):
            log(f"the console exited with {server.returncode}")
            return 1
    log(f"{len(written)} screenshots in {DOCS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

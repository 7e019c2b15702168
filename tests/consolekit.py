"""Helpers for the console tests and its benchmark: the console as a real server (a `dispatch
web` process, or uvicorn in a thread with an injected clock), accounts, a signed-in HTTP
client, and headless Chromium through Playwright on the system's Chromium."""

from __future__ import annotations

import functools
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conftest import IN_CI, Background, Project, free_port, start_dispatch, unit_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORDS = {"anna": "anna-skriver-rapporten", "cara": "cara-skriver-ocksa", "bo": "bo-godkanner-rapporten",
             "olle": "olle-har-jouren-idag", "dora": "dora-godkanner-ocksa"}
# dora: a second approver, for the tests where one approver saved the text and another approves it.
ROLES = {"anna": "editor", "cara": "editor", "bo": "approver", "olle": "operator", "dora": "approver"}


def add_users(project: Project, names: tuple[str, ...] = ("anna", "cara", "bo", "olle"), *, cli: bool = False) -> None:
    """The test's accounts: through `dispatch users add` (``cli``), or the same app function
    in this process (faster; the command itself is tested on its own). Throw-away accounts:
    hashed with the light profile (`web.password_hashing`, a fifth of the standard profile's
    CPU at every hash and sign-in); test_console.py tests both profiles."""
    project.set_config(web__password_hashing="light")
    if cli:
        for name in names:
            secret = project.root / f".{name}.pw"
            secret.write_text(PASSWORDS[name] + "\n", encoding="utf-8")
            result = project.run("users", "add", name, "--email", f"{name}@example.org", "--role", ROLES[name],
                                 "--password-file", str(secret))
            assert result.returncode == 0, result.stderr
        return
    from datetime import UTC, datetime

    from dispatch import app
    from dispatch.config import load_settings

    unit = unit_of(load_settings(project.config_path))
    try:
        for name in names:
            app.add_user(unit, name, f"{name}@example.org", ROLES[name], PASSWORDS[name], datetime.now(UTC), by="test",
                         hashing="light")
    finally:
        unit.app.close()


class WebProcess:
    """`dispatch web --listen 127.0.0.1:PORT` as a process of its own."""

    def __init__(self, project: Project, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = start_dispatch(project, "web", "--listen", f"127.0.0.1:{self.port}")
        wait_healthy(self.base, self.process)

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr


@contextmanager
def four_eyes_console(project: Project, users: tuple[str, ...] = ("anna", "cara", "bo", "olle")) -> Iterator[WebProcess]:
    """The project's console as a process, with approval by four eyes and these accounts."""
    project.set_config(approval="four_eyes")
    add_users(project, users)
    web = WebProcess(project)
    try:
        yield web
    finally:
        web.stop()


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def http_client(base: str = "", **options: Any) -> httpx.Client:
    """An HTTP client (for the console on loopback, plain HTTP). httpx builds a TLS context
    for each client it makes, loading the CA bundle (25 ms of CPU); the tests make hundreds
    of clients, so they share one context."""
    return httpx.Client(base_url=base, verify=_tls(), **options)


def wait_healthy(base: str, process: Background | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with http_client(base, timeout=1) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the console exited ({process.returncode}): {process.stderr()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"the console at {base} did not answer /healthz")


@contextmanager
def console_in_thread(settings: Any, clock: Any, *, application: Any = None) -> Iterator[str]:
    """The console served by uvicorn in this process (a real HTTP server) with ``clock``
    injected, for what needs time moved: locks that end, sessions that expire (or on the
    ``application`` the test holds)."""
    import uvicorn

    from dispatch.web import create_console

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_console(settings, clock=clock, application=application), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has a CSRF token"
    return found.group(1)


def sign_in(base: str, name: str, password: str | None = None) -> httpx.Client:
    """An HTTP client signed in as ``name`` (follows no redirects: tests look at them)."""
    client = http_client(base, follow_redirects=False, timeout=30)
    page = client.get("/login")
    response = client.post("/login", data={"username": name, "password": password or PASSWORDS[name],
                                           "csrf": csrf_of(page.text), "next": "/"})
    assert response.status_code == 303, response.text
    return client


def try_sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"username": name, "password": password, "csrf": csrf_of(page.text), "next": "/"})


def browser_or_skip(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        message = f"headless Chromium is needed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=CHROMIUM)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """The system's headless Chromium through Playwright, one per test module (in a module:
    ``chromium = consolekit.chromium``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = browser_or_skip(playwright)
        try:
            yield browser
        finally:
            browser.close()


def browser_sign_in(page: Any, base: str, name: str, path: str = "/") -> None:
    page.goto(base + path)
    page.get_by_label("Användarnamn").fill(name)
    page.get_by_label("Lösenord").fill(PASSWORDS[name])
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_url(base + path)

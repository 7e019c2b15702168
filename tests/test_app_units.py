"""The App and its units of work: one database engine per process (a command, the console),
and a console whose event loop never waits on the ledger."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner

import consolekit
from conftest import Project, open_ledger
from dispatch import app
from dispatch.cli import main
from dispatch.config import load_settings
from dispatch.ledger import Ledger

EDITION = "2024-11-17"


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQLAlchemy engine made from here on (its URL), however the program makes it."""
    made: list[str] = []
    real = sqlalchemy.create_engine

    def counting(url: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(str(url))
        return real(url, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy, "create_engine", counting)
    return made


def test_one_send_of_the_sample_creates_the_database_engine_once(project: Project, engines: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(main, ["--config", "config.yaml", "send", "--date", EDITION])
    assert result.exit_code == 0, result.output
    outbox = project.root / "var" / "outbox" / "new"
    assert len(list(outbox.iterdir())) > 1, "the edition (and the completion summary) went into the Maildir"
    assert len(engines) == 1, f"one engine for the whole command, not {len(engines)}: {engines}"


def test_sessions_of_one_app_share_its_engine(project: Project, engines: list[str]) -> None:
    application = app.App(load_settings(project.config_path))
    try:
        for _ in range(3):
            with application.session() as unit:
                unit.ledger.list_dispatches()
        threads = [threading.Thread(target=lambda: _in_session(application)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        application.close()
    assert len(engines) == 1, engines


def _in_session(application: app.App) -> None:
    with application.session() as unit:
        unit.ledger.find_dispatch(None)


# -- the console -------------------------------------------------------------------------------------


@pytest.fixture
def console_app(project: Project) -> Iterator[tuple[str, app.App]]:
    """The console served in this process (uvicorn in a thread) on an App the test holds,
    with anna signed up and one dispatch in the ledger to export."""
    consolekit.add_users(project, ("anna", "olle"))
    settings = load_settings(project.config_path)
    ledger = open_ledger(settings)
    try:
        ledger.open_dispatch(f"{EDITION}.r1.edition", date.fromisoformat(EDITION), 1, "edition", "Rapport", "reports/x.md",
                             "anna", datetime.now(UTC))
    finally:
        ledger.close()
    application = app.App(settings)
    with consolekit.console_in_thread(settings, None, application=application) as base:
        yield base, application
    application.close()


def test_the_console_process_holds_one_engine(console_app: tuple[str, app.App], engines: list[str]) -> None:
    base, application = console_app
    before = len(engines)
    olle = consolekit.sign_in(base, "olle")
    for path in ("/", "/history", f"/editions/{EDITION}", "/audit", "/recipients", f"/history/{EDITION}.r1.edition",
                 f"/history/{EDITION}.r1.edition/export.json"):
        assert olle.get(path).status_code == 200, path
    assert len(engines) == before, "every request's unit of work takes a connection from the App's one engine"
    pool = application.database().engine.pool
    assert isinstance(pool, sqlalchemy.pool.QueuePool)
    assert pool.checkedout() <= 1, "units of work give their connections back"


class SlowCall:
    """One ledger method that, when armed, waits in the thread that called it until released:
    the ledger as slow as the test wants, for as long as it measures."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()
        real: Callable[..., Any] = getattr(Ledger, method)

        def slow(ledger: Ledger, *args: Any, **kwargs: Any) -> Any:
            if self.armed.is_set():
                self.armed.clear()  # one call is held; the others go through
                self.entered.set()
                self.release.wait(30)
            return real(ledger, *args, **kwargs)

        monkeypatch.setattr(Ledger, method, slow)


@pytest.mark.parametrize(("method", "path"), [
    ("user", "/"),  # the signed-in wrapper's lookup of the session's account, on every request
    ("record_audit", f"/history/{EDITION}.r1.edition/export.json"),  # the audit write after an export
    ("list_dispatches", "/history"),  # a use case
])
def test_healthz_answers_within_100_ms_while_a_request_waits_on_the_ledger(
        console_app: tuple[str, app.App], monkeypatch: pytest.MonkeyPatch, method: str, path: str) -> None:
    base, _ = console_app
    olle = consolekit.sign_in(base, "olle")
    slow = SlowCall(monkeypatch, method)
    answers: list[int] = []
    slow.armed.set()
    waiting = threading.Thread(target=lambda: answers.append(olle.get(path).status_code), daemon=True)
    waiting.start()
    try:
        assert slow.entered.wait(20), f"the request to {path} reached Ledger.{method}"
        latencies = []
        with consolekit.http_client(base, timeout=5) as probe:
            for _ in range(5):
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
        assert waiting.is_alive() and not answers, "the slow request was still waiting while /healthz answered"
    finally:
        slow.release.set()
        waiting.join(30)
    assert answers == [200], "the slow request finished once the ledger answered"
    assert statistics.median(latencies) < 0.1, f"/healthz took {latencies} while {path} waited on Ledger.{method}"


def test_console_ledger_calls_are_not_made_on_the_event_loop(console_app: tuple[str, app.App],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ledger call a page makes runs in a worker thread, never in the loop's own."""
    import asyncio

    base, _ = console_app
    on_loop: list[str] = []
    for name in ("user", "record_audit", "list_dispatches", "audit_log", "find_dispatch", "counts", "approvals"):
        real: Callable[..., Any] = getattr(Ledger, name)

        def checked(ledger: Ledger, *args: Any, _real: Callable[..., Any] = real, _name: str = name,
                    **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(_name)
            except RuntimeError:
                pass  # no loop in this thread: a worker
            return _real(ledger, *args, **kwargs)

        monkeypatch.setattr(Ledger, name, checked)
    olle = consolekit.sign_in(base, "olle")
    for path in ("/", "/history", f"/editions/{EDITION}", "/audit", f"/history/{EDITION}.r1.edition",
                 f"/history/{EDITION}.r1.edition/export.csv"):
        assert olle.get(path).status_code == 200, path
    assert on_loop == []


# -- roles and permissions ---------------------------------------------------------------------------


def test_roles_nest_and_map_to_permissions_in_one_place() -> None:
    from dispatch.values import PERMISSIONS, Permission, Role

    assert PERMISSIONS[Role.EDITOR] == {Permission.READ, Permission.EDIT}
    assert PERMISSIONS[Role.APPROVER] == PERMISSIONS[Role.EDITOR] | {Permission.APPROVE}
    assert PERMISSIONS[Role.OPERATOR] == set(Permission)
    assert [Role.named(value) for value in ("editor", "approver", "operator", "", "admin", None)] == [
        Role.EDITOR, Role.APPROVER, Role.OPERATOR, None, None, None]


def test_an_account_may_what_its_stored_role_permits_and_nothing_without_one() -> None:
    from dispatch.models import User
    from dispatch.values import Permission

    def account(role: str, disabled: bool = False) -> User:
        return User("x", "x@example.org", role, None, disabled, 0, None, datetime.now(UTC))

    assert account("approver").may(Permission.APPROVE) and not account("approver").may(Permission.SEND)
    assert not account("editor").may(Permission.APPROVE) and account("editor").may(Permission.EDIT)
    assert account("operator").may(Permission.AUDIT)
    assert not account("operator", disabled=True).may(Permission.READ)
    assert not any(account(stored).may(permission) for stored in ("", "admin") for permission in Permission)


PUBLIC = {"/healthz", "/tillganglighet", "/login", "/static"}
SAMPLE_PARAMETERS = {"day": EDITION, "name": f"{EDITION}.r1.edition", "kind": "json", "kept_id": "1", "preview_id": "x"}


def test_every_console_route_but_the_public_ones_needs_a_signed_in_user(project: Project) -> None:
    """The page wrapper is on every route behind sign-in: anonymous, each one sends to
    sign-in (GET) or is refused (POST), before its handler runs."""
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from dispatch.web import create_console

    asgi = create_console(load_settings(project.config_path))
    client = TestClient(asgi, follow_redirects=False)
    checked = 0
    for route in asgi.routes:
        if not isinstance(route, Route) or route.path in PUBLIC:
            continue
        path = route.path.format(**SAMPLE_PARAMETERS)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            response = client.request(method, path)
            if method == "GET":
                assert response.status_code == 303 and response.headers["location"].startswith("/login"), (method, path)
            else:
                assert response.status_code in (401, 403), (method, path, response.status_code)
            checked += 1
    assert checked > 30


@pytest.mark.parametrize(("name", "method", "path", "allowed"), [
    ("anna", "GET", "/audit", False),  # an editor
    ("bo", "GET", "/audit", False),  # an approver
    ("olle", "GET", "/audit", True),  # an operator
    ("anna", "GET", "/urgent", False),
    ("bo", "GET", f"/editions/{EDITION}/send", False),
    ("anna", "POST", f"/editions/{EDITION}/approve", False),
    ("anna", "POST", "/runs/x/stop", False),
])
def test_a_route_refuses_a_role_without_its_permission(project: Project, name: str, method: str, path: str,
                                                       allowed: bool) -> None:
    from starlette.testclient import TestClient

    from dispatch.web import create_console

    consolekit.add_users(project, ("anna", "bo", "olle"))
    client = TestClient(create_console(load_settings(project.config_path)), follow_redirects=False)
    page = client.get("/login")
    signed = client.post("/login", data={"username": name, "password": consolekit.PASSWORDS[name],
                                         "csrf": consolekit.csrf_of(page.text), "next": "/"})
    assert signed.status_code == 303
    token = consolekit.csrf_of(client.get("/").text)
    response = client.request(method, path, data={"csrf": token} if method == "POST" else None)
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403 and "Din roll får inte göra detta." in response.text


def test_one_sqlite_engine_keeps_durable_writes_full_and_leases_light(project: Project, engines: list[str]) -> None:
    """The leases' engine is the durable one with an option, not a second engine: a durable
    write still waits for the disk (synchronous=FULL), a lease or slot does not (NORMAL),
    whichever the pooled connection served before."""
    from dispatch.ledger import Database

    database = Database(load_settings(project.config_path).ledger_url)
    try:
        levels = []
        for light in (True, False, True, True, False):
            with (database.light() if light else database.engine.begin()) as conn:
                levels.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())
        assert levels == [1, 2, 1, 1, 2]  # 1 NORMAL, 2 FULL
    finally:
        database.close()
    assert len(engines) == 1


def test_serve_hosting_the_console_holds_one_engine_for_the_jobs_and_the_pages(project: Project,
                                                                                engines: list[str]) -> None:
    """`dispatch serve` with a web: section: the scheduler's jobs and the console share the
    process's one App, and so its one engine (a reload that keeps the ledger keeps it too)."""
    from starlette.testclient import TestClient

    from dispatch.app.service import Service
    from dispatch.web import create_console

    settings = load_settings(project.config_path)
    application = app.App(settings)
    service = Service(settings, app=application)
    try:
        service.reconcile(service.clock.now())
        service.use(load_settings(project.config_path))  # a SIGHUP with the same ledger
        service.reconcile(service.clock.now())
        page = TestClient(create_console(settings, application=application)).get("/login")
        assert page.status_code == 200
    finally:
        service.close()
    assert len(engines) == 1, engines

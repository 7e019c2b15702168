"""The editor console: a second front door (beside the command line) to the same ``app``
functions. Server-rendered Swedish pages (Starlette, Jinja2), htmx for the live preview,
served by uvicorn: ``dispatch web`` on its own, or inside ``dispatch serve``.

- ``console``: what every page shares (sign-in, roles, CSRF, headers, templates)
- ``sessions``: signed session cookies and the sign-in form's token
- ``checks``: the bound on password checks at once
- ``password``: "Byt lösenord", the signed-in person's own new password
- ``pages``: sign-in, today, history, recipients, audit log, health check
- ``editor``: the edition page, live preview, save, approve, revoke, test send
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch import app
from dispatch.errors import ConsoleError
from dispatch.web import editor, operations, pages, password
from dispatch.web.checks import PasswordChecks
from dispatch.web.console import HERE, Console, security_header_values, templates
from dispatch.web.sessions import Sessions, load_secret


def create_console(settings: app.Settings, *, clock: app.Clock | None = None, application: app.App | None = None) -> Starlette:
    """The console as an ASGI application (the tests and ``bench/console.py`` serve it too).
    ``application``: the process's App when it has one already (the service hosting the
    console); else the console makes its own."""
    web = settings.web or app.WebSettings()
    application = application or app.App(settings, clock)  # the process's one App: one engine
    application.database()  # opened now: a ledger that cannot serve stops the console as it starts

    def generation(name: str) -> int:  # a new session begins in the account's generation now
        with application.session() as unit:
            user = unit.ledger.user(name)
        return user.session_generation if user is not None else 0

    console = Console(settings, web, application, clock or application.clock, Sessions(web, load_secret(web), generation),
                      templates(), app.Runs(application), PasswordChecks(app.checks_at_once(web.password_check_memory_mb)),
                      app.AddressLimits())
    routes = [
        Route("/healthz", pages.healthz),
        Route("/tillganglighet", pages.statement),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/session/extend", pages.extend_session, methods=["POST"]),
        Route("/password", password.password_page, methods=["GET", "POST"]),
        Route("/", pages.home),
        Route("/sending", pages.sends_now),  # Idag's sends under way, polled by the page
        Route("/open", pages.edition_redirect),
        Route("/editions/{day}", editor.edition_page),
        Route("/editions/{day}/preview", editor.preview, methods=["POST"]),
        Route("/editions/{day}/save", editor.save, methods=["POST"]),
        Route("/editions/{day}/approve", editor.approve, methods=["POST"]),
        Route("/editions/{day}/revoke", editor.revoke, methods=["POST"]),
        Route("/editions/{day}/test", editor.send_test, methods=["POST"]),
        Route("/editions/{day}/kept/{kept_id}", editor.kept_text),
        Route("/paste", editor.paste, methods=["POST"]),  # Innehåll: pasted HTML -> Markdown
        # A reload or Back after an action: to the edition's page, never the action again.
        *(Route(f"/editions/{{day}}/{action}", editor.back_to_edition, methods=["GET"])
          for action in ("save", "approve", "revoke", "test", "correction", "preview")),
        Route("/preview/{preview_id}", editor.preview_frame),
        Route("/history", pages.history),
        Route("/history/{name}", pages.dispatch_page),
        Route("/history/{name}/export.{kind}", pages.export),
        Route("/recipients", pages.recipients),
        Route("/recipients/{name}/accept", pages.accept_list, methods=["POST"]),
        Route("/audit", pages.audit_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *operations.routes(),  # part 2: send and watch, stop, urgent messages, corrections
    ]
    middleware = [Middleware(SecurityHeaders)]
    if web.oidc is not None:
        # Single sign-on, imported only when configured: authlib and its HTTP client take a
        # second of a loaded machine's start-up that a console without it never uses (issue 34).
        from dispatch.web import sso

        routes += sso.routes(console)
        middleware += sso.middleware(web)
    asgi = Starlette(routes=routes, middleware=middleware,
                     exception_handlers={404: pages.unknown_address, 405: pages.unknown_address})
    asgi.state.console = console
    return asgi


class SecurityHeaders:
    """Every response carries the console's headers (CSP, nosniff, no caching of pages);
    the preview frame has set its own policy first, and static files may be cached."""

    def __init__(self, asgi: ASGIApp) -> None:
        self.asgi = asgi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.asgi(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if static:
                    headers["Cache-Control"] = "public, max-age=86400"
                for name, value in security_header_values(headers.get("content-security-policy")):
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.asgi(scope, receive, with_headers)


def console_server(settings: app.Settings, listen: str, **options: Any) -> uvicorn.Server:
    """A uvicorn server for the console on ``listen`` (HOST:PORT), not started."""
    return _server(create_console(settings, **options), settings, listen)


def _server(application: Starlette, settings: app.Settings, listen: str) -> uvicorn.Server:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConsoleError(f"--listen must be HOST:PORT, not {listen!r}")
    web = settings.web or app.WebSettings()
    config = uvicorn.Config(
        application, host=host.strip("[]"), port=int(port), log_level="warning",
        proxy_headers=bool(web.forwarded_allow_ips), forwarded_allow_ips=web.forwarded_allow_ips or "127.0.0.1",
        server_header=False, access_log=False,
    )
    return uvicorn.Server(config)


def run_console(settings: app.Settings, listen: str, announce: Callable[[str], None] | None = None) -> int:
    """``dispatch web``: serve the console in the foreground until SIGINT/SIGTERM; 0 after a
    clean stop (the sends it runs stop as a stopped send does), 1 if it cannot start.
    ``announce`` is given the console's address (``http://HOST:PORT/``, the port it really
    listens on, so ``:0`` names the one the system chose) as soon as it listens.

    uvicorn runs in a thread and this thread takes the signals: uvicorn, run in the main
    thread, raises a signal again after its own shutdown, which would end the process with
    143 (or "Aborted!") instead of 0."""
    hosted = HostedConsole(settings, listen)
    signals = (signal.SIGINT, signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # before the thread starts: it inherits the mask
    try:
        hosted.start()
        while not hosted.server.started:
            if not hosted.thread.is_alive():
                return 1
            time.sleep(0.02)
        if announce is not None:
            announce(hosted.address())
        while hosted.thread.is_alive():
            if signal.sigtimedwait(signals, 0.5) is not None:
                break
        hosted.stop()
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


class HostedConsole:
    """The console inside another process (``dispatch serve``): uvicorn in a thread."""

    def __init__(self, settings: app.Settings, listen: str, application: app.App | None = None) -> None:
        """``application``: the hosting process's App (closed by its owner, after the jobs
        that still use it); without one the console makes its own and closes it."""
        self.own_app = application is None
        asgi = create_console(settings, application=application)
        self.console: Console = asgi.state.console
        self.server = _server(asgi, settings, listen)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def address(self) -> str:
        """Where the started console listens, as a URL (the bound port, not the one asked for)."""
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def stop(self) -> None:
        self.console.runs.stop_all()  # sends started here stop as a stopped send does, and are recorded
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.console.checks.close()
        if self.own_app:
            self.console.app.close()

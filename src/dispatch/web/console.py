"""What every console page shares: the signed-in user, roles checked on the server, the
CSRF token on every state-changing request, security headers, and Swedish pages rendered
from autoescaped Jinja2 templates.

Routes are written as ``async def handler(request, visit)``, wrapped by ``page(permission)``
(a ``Permission``; what each role has is values.PERMISSIONS): an anonymous request is sent
to sign-in, a missing permission is 403, a POST without the
session's CSRF token is 403, all before the handler runs.

The event loop never waits on the ledger: every use of it (the signed-in user's lookup,
the audit log, each use case) runs as a unit of work in the thread pool, through
``Console.unit`` (or ``in_session`` from code already running there).
"""

from __future__ import annotations

import functools
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dispatch.app import (
    AddressLimits,
    App,
    AuditEntry,
    Clock,
    LockedChecks,
    Permission,
    Runs,
    Settings,
    User,
    WebSettings,
    active_user,
    audit,
)
from dispatch.app import Session as Unit
from dispatch.errors import DispatchError
from dispatch.values import DispatchLabel, Fact
from dispatch.web.checks import PasswordChecks
from dispatch.web.notices import Notices
from dispatch.web.sessions import Session, Sessions, csrf_ok
from dispatch.web.swedish import (
    entry_label,
    say_edition,
    say_fact,
    say_label,
    say_plan,
    say_reply,
    say_state,
)
from dispatch.wording import ENGLISH, swedish, swedish_of

HERE = Path(__file__).parent
STATIC_VERSION = "9"  # bump when static files change, so browsers fetch them again

# The console's own pages: scripts and styles only from the console itself (no inline
# script, no inline style), no plug-ins, not framed by other sites.
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# The message preview: the email's own inline styles apply, nothing else runs or loads from
# elsewhere than what the message itself links (images); forms and scripts are dead.
PREVIEW_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; font-src data:; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox")

Handler = Callable[[Request, "Visit"], Awaitable[Response]]
T = TypeVar("T")


@dataclass
class Console:
    """The console's long-lived parts: settings, the process's App (one engine for the
    ledger), the clock, sessions, templates, the bound on password checks and the count of
    unknown names per client address."""

    settings: Settings
    web: WebSettings
    app: App
    clock: Clock
    sessions: Sessions
    templates: Environment
    runs: Runs
    checks: PasswordChecks
    limits: AddressLimits
    previews: OrderedDict[str, tuple[str, str, str]] = field(default_factory=OrderedDict)  # id -> (user, html, day)
    locked: LockedChecks = field(default_factory=LockedChecks)  # checks of a password during its account's lock
    notices: Notices = field(default_factory=Notices)  # confirmations of finished actions, shown once

    def now(self) -> datetime:
        """The time in the office's zone, as the command line has it: an urgent message's
        'compiled', and every date a page shows, are local times."""
        return self.clock.now().astimezone(self.settings.timezone)

    def in_session(self, work: Callable[[Unit], T]) -> T:
        """``work`` as one unit of work on the ledger. Blocking: call it from the thread pool
        (``unit`` does), never from the event loop."""
        with self.app.session() as unit:
            return work(unit)

    async def unit(self, work: Callable[[Unit], T]) -> T:
        """``work`` as one unit of work, in the thread pool: the loop answers other requests
        (``/healthz`` among them) while the ledger is slow."""
        return await run_in_threadpool(self.in_session, work)

    async def signed_in(self, request: Request, now: datetime) -> tuple[Session, User] | None:
        """The request's session and its account, if the session is still valid: not expired,
        the account not disabled, and no sign-out or new password since it began."""
        session = self.sessions.read(request, now)
        if session is None:
            return None
        user = await self.unit(lambda unit: active_user(unit, session.user, session.generation))
        return (session, user) if user is not None else None

    async def start_session(self, response: Response, name: str, now: datetime) -> Session:
        """A new session for ``name`` on ``response`` (the account's generation is read from
        the ledger: in the thread pool)."""
        return await run_in_threadpool(self.sessions.start, response, name, now)

    def keep_preview(self, user: str, html: str, day: str) -> str:
        """Keep a rendered preview for the frames that show it (the newest 200)."""
        preview_id = secrets.token_urlsafe(16)
        self.previews[preview_id] = (user, html, day)
        while len(self.previews) > 200:
            self.previews.popitem(last=False)
        return preview_id


class NotSignedIn(DispatchError):
    """A route that needs a signed-in user ran without one: a fault in the route's rule."""


@dataclass
class Visit:
    """One request's view: the console, the user (None before sign-in) and their session."""

    console: Console
    user: User | None
    session: Session | None
    now: datetime
    form: dict[str, str] = field(default_factory=dict)

    @property
    def me(self) -> User:
        """The signed-in user; only routes that require one ask (the page decorator's rule)."""
        if self.user is None:  # not an assert: those vanish under python -O
            raise NotSignedIn("a route for signed-in users was reached without one")
        return self.user

    async def audit(self, action: str, target: str = "", content_hash: str | None = None,
                    detail: tuple[Fact, ...] = ()) -> None:
        """Record the action in the audit log (a ledger write: in the thread pool)."""
        name, now = self.me.name, self.now
        await self.console.unit(lambda unit: audit(unit, now, name, action, target, content_hash, detail))

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return render(self.console, template, status_code, user=self.user, session=self.session, now=self.now, **context)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["static_version"] = STATIC_VERSION
    env.filters["local"] = lambda moment, zone, fmt="%Y-%m-%d %H:%M": moment.astimezone(zone).strftime(fmt) if moment else ""
    env.filters["short"] = lambda value: (value or "")[:12]
    env.filters["iso_local"] = lambda value, zone: (datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M")
                                                    if value else "")
    env.globals.update(state_names=STATE_NAMES, count_names=COUNT_NAMES)
    env.filters["say_plan"] = say_plan
    env.filters["say_label"] = say_label
    env.filters["say_fact"] = say_fact
    env.filters["say_state"] = say_state
    env.filters["say_edition"] = say_edition
    env.filters["entry_label"] = entry_label
    env.filters["say_reply"] = say_reply
    env.filters["audit_detail"] = audit_detail
    env.filters["action_name"] = lambda action: swedish(Fact.of(f"audit.{action}")) if f"audit.{action}" in ENGLISH else action
    # Facts worded from the Swedish catalogue: `reason | swedish`, or a code with its parameters.
    env.filters["swedish"] = swedish_of
    env.filters["capfirst"] = lambda text: text[:1].upper() + text[1:]
    env.globals["worded"] = lambda code, **params: swedish(Fact.of(code, **params))
    env.globals["permission"] = Permission  # user.may(permission.APPROVE) in a template
    return env


# Swedish names for the states the ledger records.
STATE_NAMES = {"pending": "väntar", "sent": "skickad", "deferred": "försenad", "unknown": "okänd", "failed": "misslyckad",
               "bounced": "studsad"}
COUNT_NAMES = {"pending": "väntar", "sent": "skickade", "deferred": "försenade", "unknown": "okända",
               "failed": "misslyckade", "bounced": "studsade"}



def audit_detail(entry: AuditEntry, zone: tzinfo, labels: Mapping[str, DispatchLabel] | None = None) -> str:
    """An audit entry's detail as the console shows it: its facts worded in Swedish, a moment
    among them in the log's own time zone, a dispatch among them by its label (``labels``: the
    dispatches' labels by name). An entry recorded before details were facts is shown as it
    was recorded."""
    if not entry.facts:
        return entry.detail
    return "; ".join(swedish(_labelled(_in_zone(fact, zone), labels or {})) for fact in entry.facts)


def dispatch_names_in(entry: AuditEntry) -> list[str]:
    """The names a detail's facts give (``name``): some are dispatches, to show by label."""
    return [str(fact.params["name"]) for fact in entry.facts if isinstance(fact.params.get("name"), str)]


def _labelled(fact: Fact, labels: Mapping[str, DispatchLabel]) -> Fact:
    name = fact.params.get("name")
    if not isinstance(name, str) or name not in labels:
        return fact
    return Fact(fact.code, {**fact.params, "name": say_label(labels[name])}, fact.count)


def _in_zone(fact: Fact, zone: tzinfo) -> Fact:
    """The fact with its moments (ISO 8601 in UTC, as recorded) in ``zone``."""
    moment = fact.params.get("until")
    if not isinstance(moment, str):
        return fact
    local = datetime.fromisoformat(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return Fact(fact.code, {**fact.params, "until": local}, fact.count)


def render(console: Console, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("zone", console.settings.timezone)
    context.setdefault("title_report", console.settings.report.title)
    session = context.get("session")
    # For the page's idle warning (console.js): how long a quiet session lasts, and when it
    # ends in any case (the absolute limit cannot be extended).
    context.setdefault("idle_seconds", int(console.sessions.idle.total_seconds()))
    context.setdefault("session_ends", console.sessions.expires_at(session)[1].isoformat() if session else "")
    html = console.templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code)


def page(permission: Permission, *, renews: bool = True) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler: sign-in, the permission and CSRF checked on the server for every request
    (every route behind sign-in has this wrapper: tests/test_app_units.py walks them).
    ``renews``: whether the request counts as the person being active (a page's own polling does
    not, or an open Idag would keep a session from ever going idle)."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            now = console.now()
            found = await console.signed_in(request, now)
            if found is None:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
                # A save after the session ended: the text is not lost, it is shown to copy.
                form = await request.form()
                text = form.get("body")
                return forbidden(console, "Du är inte inloggad (sessionen har gått ut). Inget är sparat. Kopiera din text "
                                 "nedan, logga in igen och spara den.", 401,
                                 kept_text=text if isinstance(text, str) else "")
            session, user = found
            visit = Visit(console, user, session, now)
            if request.method == "POST":
                form = await request.form()
                visit.form = {key: value for key, value in form.items() if isinstance(value, str)}
                submitted = visit.form.get("csrf") or request.headers.get("x-csrf-token")
                if not csrf_ok(session, submitted):
                    return forbidden(console, "Formuläret saknar giltig säkerhetstoken. Ladda om sidan och försök igen.")
            if not user.may(permission):
                return forbidden(console, "Din roll får inte göra detta.", user=user, session=session, now=now)
            response = await handler(request, visit)
            if renews:
                console.sessions.touch(response, session, now)
            return response

        return endpoint

    return wrap


def forbidden(console: Console, message: str, status_code: int = 403, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    context.setdefault("session", None)
    context.setdefault("now", console.now())
    context.setdefault("kept_text", "")
    return render(console, "error.html", status_code, heading="Inte tillåtet", message=message, **context)


def not_found(visit: Visit, message: str = "Sidan finns inte.") -> HTMLResponse:
    return visit.render("error.html", 404, heading="Hittades inte", message=message, kept_text="")


def security_header_values(csp: str | None = None) -> list[tuple[str, str]]:
    return [("content-security-policy", csp or CONSOLE_CSP), ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"), ("x-frame-options", "SAMEORIGIN"), ("cache-control", "no-store")]


def security_headers(response: Response, csp: str = CONSOLE_CSP) -> None:
    for name, value in security_header_values(csp):
        response.headers.setdefault(name, value)

"""The console's other pages: sign-in, today ("Idag"), history and one dispatch with its
exports, recipient lists, the audit log, and the health check."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from dispatch import app, wording
from dispatch.app import Permission
from dispatch.errors import DispatchError, Problem
from dispatch.values import DispatchKind, DispatchLabel, Fact, RunState
from dispatch.web.checks import Busy
from dispatch.web.console import Console, Visit, dispatch_names_in, forbidden, not_found, page, render
from dispatch.web.editor import done_then_back, said_once
from dispatch.web.swedish import progress_in_swedish, say_state


async def unknown_address(request: Request, exc: Exception) -> Response:
    """An address the console does not have (or not for this method), in Swedish."""
    console: Console = request.app.state.console
    return render(console, "error.html", 404, user=None, session=None, now=console.now(), heading="Hittades inte",
                  message="Sidan finns inte. Kontrollera adressen, eller gå till startsidan.")


async def statement(request: Request) -> Response:
    """The accessibility statement: readable without signing in (the law asks for it)."""
    console: Console = request.app.state.console
    now = console.now()
    body = await run_in_threadpool(app.accessibility_statement, console.settings, now)
    session, user = await console.signed_in(request, now) or (None, None)
    return render(console, "tillganglighet.html", user=user, session=session, now=now, body=body)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def safe_next(target: str | None) -> str:
    # Only a path on this console: never an open redirect to another site. Judged as a browser
    # will read it: URL parsers drop tab, CR and LF wherever they are ("/\t/evil.example" is
    # "//evil.example", another host) and read "\\" as "/", so any control character is refused.
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return "/"
    return target


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    now = console.now()
    token = console.sessions.sign_in_token(request)
    target = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if await console.signed_in(request, now) is not None:
            return RedirectResponse(target, status_code=303)  # signed in already: on to where they were going
        response = render(console, "login.html", user=None, session=None, now=now, csrf=token, next=target,
                          error="", local=console.web.local_accounts, username="")
        console.sessions.keep_sign_in_token(response, token)
        return response
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    if not console.sessions.sign_in_token_ok(request, values.get("csrf", "")):
        return forbidden(console, "Inloggningsformuläret saknar giltig säkerhetstoken. Ladda om sidan och försök igen.")
    if not console.web.local_accounts:
        return forbidden(console, "Inloggning med lokala konton är avstängd.")
    target = safe_next(values.get("next"))
    # The client's address as uvicorn gives it: the reverse proxy's X-Forwarded-For when
    # web.forwarded_allow_ips trusts the proxy, else the connection's own address.
    remote = request.client.host if request.client else ""
    try:
        user = await console.checks.run(console.in_session, lambda unit: app.sign_in(
            unit, values.get("username", "").strip(), values.get("password", ""), now, remote=remote,
            hashing=console.web.password_hashing, limits=console.limits, locked=console.locked))
    except app.AccountLocked as exc:
        # Only someone who gave the right password gets here: say until when, in the office's time.
        until = exc.until.astimezone(console.settings.timezone).strftime("%H:%M")
        response = render(console, "login.html", 401, user=None, session=None, now=now, csrf=token, next=target,
                          error="locked", locked=wording.swedish(Fact.of("sign_in.locked", until=until)), local=True,
                          username=values.get("username", "").strip()[:64])
        console.sessions.keep_sign_in_token(response, token)
        return response
    except (app.SignInRefused, Busy) as exc:
        busy = isinstance(exc, Busy)
        response = render(console, "login.html", 503 if busy else 401, user=None, session=None, now=now, csrf=token,
                          next=target, error="busy" if busy else "refused", local=True,
                          username=values.get("username", "").strip()[:64])
        if busy:
            response.headers["Retry-After"] = "10"
        console.sessions.keep_sign_in_token(response, token)
        return response
    redirect = RedirectResponse(target, status_code=303)
    await console.start_session(redirect, user.name, now)
    return redirect


@page(Permission.READ)
async def extend_session(request: Request, visit: Visit) -> Response:
    """"Fortsätt arbeta": the idle time starts again (the absolute limit stays)."""
    if visit.session is None:  # signed in by a route's rule, but never assumed (asserts vanish under -O)
        return Response(status_code=401)
    response = Response(status_code=204)
    visit.console.sessions.touch(response, visit.session, visit.now, force=True)
    return response


@page(Permission.READ)
async def logout(request: Request, visit: Visit) -> Response:
    """Every copy of the session ends (and the account's sessions in other browsers)."""
    remote = request.client.host if request.client else ""
    name, now = visit.me.name, visit.now
    await visit.console.unit(lambda unit: app.sign_out(unit, name, now, remote=remote))
    response = RedirectResponse("/login", status_code=303)
    visit.console.sessions.end(response)
    return response


@page(Permission.READ)
async def home(request: Request, visit: Visit) -> Response:
    console = visit.console

    def work(unit: app.Session) -> Response:
        days = app.today(unit, visit.now)
        local_today = visit.now.astimezone(console.settings.timezone).date()
        tomorrow = local_today + timedelta(days=1)
        extra = [d for d in (local_today, tomorrow) if all(s.edition.day != d for s in days)]
        states = [app.edition_state(unit, d, visit.now) for d in extra]
        under_way, urgent_today = _sends_now(unit, visit)
        return visit.render("home.html", days=days, states=states, today=local_today, under_way=under_way,
                            urgent_today=urgent_today, four_eyes=console.settings.approval == "four_eyes",
                            waiting_lists=app.waiting_lists(unit))

    return await console.unit(work)


def _sends_now(unit: app.Session, visit: Visit) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Idag's "Utskick just nu" and today's urgent messages, each as its run page words it."""
    console, now = visit.console, visit.now
    zone = console.settings.timezone
    under_way, urgent = console.runs.today(unit.ledger, now)
    return [progress_in_swedish(p, zone, now) for p in under_way], [progress_in_swedish(p, zone, now) for p in urgent]


@page(Permission.READ, renews=False)
async def sends_now(request: Request, visit: Visit) -> Response:
    """The part of Idag that says what is sending, asked for again every second by the page
    itself (htmx): a send that gives way to an urgent message says so within the second."""
    def work(unit: app.Session) -> Response:
        under_way, urgent_today = _sends_now(unit, visit)
        return visit.render("_sending.html", under_way=under_way, urgent_today=urgent_today)

    return await visit.console.unit(work)


@page(Permission.READ)
async def history(request: Request, visit: Visit) -> Response:
    console = visit.console

    def work(unit: app.Session) -> tuple[list[dict[str, object]], dict[str, str]]:
        entries = app.history(unit, None)
        # Each dispatch's state as its run page says it: the ledger's counts, and for one not
        # finished whether a run sends it, gives way to an urgent message or waits for the relay.
        states = {}
        for entry in entries:
            name = str(entry["dispatch"])
            if entry["finished_at"]:  # finished: its counts say it, no need to ask the ledger again
                failed = entry["counts"].get("failed", 0) if isinstance(entry["counts"], dict) else 0
                states[name] = say_state(RunState.INCOMPLETE if failed else RunState.DONE)
                continue
            progress = console.runs.progress(unit.ledger, name, visit.now)
            if progress is not None:
                states[name] = say_state(progress.state)
        return entries, states

    entries, states = await console.unit(work)
    return visit.render("history.html", entries=list(reversed(entries)), states=states)


@page(Permission.READ)
async def dispatch_page(request: Request, visit: Visit) -> Response:
    name = str(request.path_params["name"])
    found = await visit.console.unit(lambda unit: app.status(unit, name, visit.now))
    if found is None or found.record.name != name:
        return not_found(visit, "Det finns inget utskick med det namnet.")
    progress = await visit.console.unit(lambda unit: visit.console.runs.progress(unit.ledger, name, visit.now))
    settings = visit.console.settings
    intranet = None
    if settings.publish.base_url and found.record.kind_of is DispatchKind.EDITION:
        intranet = settings.publish.base_url.rstrip("/") + f"/{found.record.edition_date}.html"
    return visit.render("dispatch.html", status=found, intranet=intranet,
                        state=say_state(progress.state) if progress is not None else "")


@page(Permission.READ)
async def export(request: Request, visit: Visit) -> Response:
    name, kind = str(request.path_params["name"]), str(request.path_params["kind"])
    document = await visit.console.unit(lambda unit: app.export(unit, name))
    if document is None or document.get("dispatch") != name or kind not in ("csv", "json"):
        return not_found(visit)
    await visit.audit("export", name, None, (Fact.of("audit_detail.export", format=kind),))
    if kind == "json":
        body = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        media = "application/json"
    else:
        body = app.export_csv(document)
        media = "text/csv; charset=utf-8"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'})


@page(Permission.READ)
async def recipients(request: Request, visit: Visit) -> Response:
    """Mottagare: every list as a send resolves it (directory lists: their last accepted
    snapshots), and each directory list's card: its source, last sync, counts, a held change."""
    settings = visit.console.settings

    def work(unit: app.Session) -> tuple[app.ListsReport, list[app.DirectoryCard], list[Problem]]:
        report = app.lists_report(settings, app.all_lists(settings), unit)
        cards, problems = app.directory_cards(unit)
        return report, cards, problems

    report, cards, card_problems = await visit.console.unit(work)
    overlaps = report.resolution.overlaps() if report.resolution else {}
    message = said_once(visit, "/recipients")
    return visit.render("recipients.html", report=report, overlaps=overlaps, cards=cards, card_problems=card_problems,
                        message=message)


@page(Permission.LISTS)
async def accept_list(request: Request, visit: Visit) -> Response:
    """Godkänn ändringen: first the confirmation (what changes, Bekräfta / Avbryt), then, with
    ``confirmed``, the held snapshot accepted (audited) and back to Mottagare."""
    name = str(request.path_params["name"])
    try:
        expected = int(visit.form.get("snapshot", ""))
    except ValueError:
        return not_found(visit)
    if not visit.form.get("confirmed"):
        def look(unit: app.Session) -> app.DirectoryCard | None:
            cards, _ = app.directory_cards(unit)
            return next((c for c in cards if c.spec.name == name and c.held is not None and c.held.id == expected), None)

        card = await visit.console.unit(look)
        if card is None:
            return visit.render("recipients_accept.html", 409, card=None, error=GONE)
        return visit.render("recipients_accept.html", card=card, error="")
    try:
        done = await visit.console.unit(lambda unit: app.accept(unit, name, visit.me.name, visit.now, expected))
    except DispatchError as exc:
        return visit.render("recipients_accept.html", 409, card=None,
                            error="; ".join(wording.swedish_of(p.fact) for p in getattr(exc, "problems", ())) or GONE)
    if done is None:
        return visit.render("recipients_accept.html", 409, card=None, error=GONE)
    return done_then_back(visit, "lista-godkand", "/recipients", list=done.spec.display_name,
                          members=str(done.snapshot.members))


GONE = ("Ändringen väntar inte längre på godkännande: någon annan har godkänt den, eller en ny synkning har "
        "ersatt den. Se Mottagare.")


@page(Permission.AUDIT)
async def audit_page(request: Request, visit: Visit) -> Response:
    def work(unit: app.Session) -> tuple[list[app.AuditEntry], dict[str, DispatchLabel]]:
        entries = app.audit_log(unit, 500)
        names = [e.target for e in entries] + [name for e in entries for name in dispatch_names_in(e)]
        return entries, app.labels_for(unit.ledger, names)

    entries, labels = await visit.console.unit(work)
    return visit.render("audit.html", entries=entries, labels=labels)


@page(Permission.READ)
async def edition_redirect(request: Request, visit: Visit) -> Response:
    """The form on the home page: open (or start) the edition of a chosen day."""
    value = request.query_params.get("day", "")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return not_found(visit, "Ange ett datum som ÅÅÅÅ-MM-DD.")
    return RedirectResponse(f"/editions/{day.isoformat()}", status_code=303)

"""The edition page: the front matter as fields, the Markdown body with line numbers, a live
preview of exactly the message that would be sent, save, approve, revoke, a test to me.

Every action calls the same ``app`` function the command line calls; this module turns
forms into arguments and results into Swedish pages.
"""

from __future__ import annotations

import asyncio
import re  # not wording: checks the date in a route's path
from collections.abc import Callable
from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from dispatch import app
from dispatch.app import Permission
from dispatch.errors import DispatchError, InputError, Problem
from dispatch.values import Fact
from dispatch.web.console import PREVIEW_CSP, Visit, not_found, page, security_headers
from dispatch.web.notices import Notice
from dispatch.wording import swedish_of

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORM_FIELDS = ("compiled", "status", "urgent", "revision", "correction", "lists", "subject", "headline", "preheader")


def edition_day(request: Request) -> date | None:
    value = str(request.path_params.get("day", ""))
    if not _DAY.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def form_fields(visit: Visit) -> tuple[dict[str, str], str]:
    fields = {key: visit.form.get(key, "") for key in FORM_FIELDS}
    return fields, visit.form.get("body", "")


# What a finished action says on the page it returns to, once (post, redirect, get: a reload
# repeats neither the action nor its confirmation; see notices.py).
DONE = {
    "sparad": "Sparad {time}.",
    "oforandrad": "Inget att spara: texten är densamma som i den sparade rapporten.",
    "godkand": "Godkänd {time}.",
    "aterkallad": "Godkännandet är återkallat; rapporten skickas inte förrän den godkänts igen.",
    "test": "Ett [TEST] är skickat till {email}.",
    "lista-godkand": "Ändringen av listan {list} är godkänd {time}: utskick går nu till de {members} mottagarna i den.",
    "rattelse": "Rättelsen är skapad som ny version. Skriv vad som är rättat i fältet Rättelse, spara, och låt någon annan godkänna.",
}


@page(Permission.READ)
async def edition_page(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    message = said_once(visit, request.url.path)
    return await visit.console.unit(lambda unit: _edition_page(unit, visit, day, message=message))


def said_once(visit: Visit, path: str) -> str:
    """The confirmation of the action that led here, once: a reload finds none."""
    notice = visit.console.notices.take(visit.session, path, visit.now)
    if notice is None:
        return ""
    done = DONE.get(notice.done, "")
    return done.format(time=notice.at.astimezone(visit.console.settings.timezone).strftime("%H:%M"), **dict(notice.params))


def done_then_back(visit: Visit, done: str, path: str, **params: str) -> RedirectResponse:
    """After an action: its confirmation kept for the page at ``path``, and a redirect there."""
    visit.console.notices.put(visit.session, Notice(done, path, visit.now, tuple(params.items())))
    return RedirectResponse(path, status_code=303)


@page(Permission.READ)
async def back_to_edition(request: Request, visit: Visit) -> Response:
    """A GET of an action's address (a reload or Back after it): the edition's page."""
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    return RedirectResponse(f"/editions/{day.isoformat()}", status_code=303)


def _edition_page(unit: app.Session, visit: Visit, day: date, *, draft: app.Draft | None = None, message: str = "",
                  error: str = "", status_code: int = 200, conflict: bool = False, test_run: str = "") -> HTMLResponse:
    """The edition's page (a unit of work: in the thread pool)."""
    console = visit.console
    draft = draft or app.open_draft(unit, day, visit.now)
    state = app.edition_state(unit, day, visit.now)
    approvals = app.approvals_of(unit.ledger, day)
    me = visit.me
    is_author = any(" ".join(a.split()).casefold() == me.name.casefold() for a in state.authors)
    four_eyes = console.settings.approval == "four_eyes"
    current = app.compose(draft.fields, draft.body)[0] if draft.exists else ""
    sent = app.sent_diff(unit, day, current) if state.dispatch or draft.fields.get("revision", "1") != "1" else None
    since = app.since_approval(unit.ledger, day, state.revision, state.content_hash, current) if state.key == "draft" else None
    # With a voided approval, also what changed against what the same lists last got (a correction's
    # page shows that already, as its diff against what was sent).
    since_sent = app.since_sent_to_lists(unit, day, state.revision, current) if since is not None else None
    if since_sent is not None and sent is not None and since_sent.name == sent.name:
        since_sent = None
    return visit.render(
        "edition.html", status_code, day=day, draft=draft, state=state, approvals=approvals, message=message, error=error,
        sent=sent, since=since, since_sent=since_sent, field_labels=FIELD_LABELS, conflict=conflict,
        four_eyes=four_eyes, may_write=me.may(Permission.EDIT),
        # "Godkänn" records an approval, which only four_eyes reads; with front_matter the status field approves.
        may_approve=(four_eyes and me.may(Permission.APPROVE) and not is_author and state.key == "draft"
                     and state.content_hash is not None),
        # approval: front_matter: the status field is the approval, offered on the same terms as "Godkänn"
        # (the server holds the same rule: app.save_draft refuses a status set by the text's last editor).
        may_mark_approved=(me.may(Permission.APPROVE) and not is_author and state.key in ("draft", "approved")
                           and state.content_hash is not None),
        is_author=is_author, lists=app.all_lists(console.settings), test_run=test_run,
    )


@page(Permission.READ)
async def preview(request: Request, visit: Visit) -> Response:
    """The live preview (a fragment for htmx): the message's frames, its text part and problems."""
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    fields, body = form_fields(visit)
    console = visit.console
    result = await console.unit(lambda unit: app.preview_draft(unit, day, fields, body, visit.now))
    preview_id = console.keep_preview(visit.me.name, result.html, day.isoformat()) if result.html else None
    problems = [located_problem(problem, result) for problem in result.problems]
    return visit.render("preview.html", result=result, preview_id=preview_id, problems=problems, day=day)


def located_problem(problem: Problem, result: app.DraftPreview) -> dict[str, object]:
    """Where a problem is in the form: a line of the body, or a field."""
    line = problem.line
    anchor, label = "", ""
    if line >= result.body_line:
        editor_line = line - result.body_line + 1
        anchor, label = f"line-{editor_line}", f"Rad {editor_line}"
        return {"message": swedish_of(problem.fact), "anchor": anchor, "label": label, "line": editor_line}
    for key, field_line in result.field_lines.items():
        if field_line == line:
            return {"message": swedish_of(problem.fact), "anchor": f"f-{key}", "label": FIELD_LABELS.get(key, key), "line": None}
    where = "" if problem.path.endswith(".md") else f"{problem.path}:{line}: "
    return {"message": where + swedish_of(problem.fact), "anchor": "", "label": "", "line": None}


FIELD_LABELS = {"compiled": "Sammanställd", "status": "Status", "revision": "Version", "correction": "Rättelse",
                "lists": "Mottagarlistor", "subject": "Rubrik i inkorgen", "headline": "Nyhet i ämnesraden",
                "preheader": "Förhandstext", "urgent": "Brådskande", "markers": "Nytt-markeringar"}


@page(Permission.READ)
async def preview_frame(request: Request, visit: Visit) -> Response:
    """The message HTML for a preview frame, under its own policy: its inline styles apply,
    nothing runs. ``?mode=dark`` applies the message's dark-mode rules as a dark client would."""
    kept = visit.console.previews.get(str(request.path_params["preview_id"]))
    if kept is None or kept[0] != visit.me.name:
        return not_found(visit, "Förhandsvisningen finns inte längre; skriv något för att skapa en ny.")
    html = kept[1]
    if request.query_params.get("mode") == "dark":
        html = html.replace("(prefers-color-scheme: dark)", "all").replace("<html", '<html style="color-scheme:dark"', 1)
    response = HTMLResponse(html)
    security_headers(response, PREVIEW_CSP)
    return response


@page(Permission.EDIT)
async def save(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    fields, body = form_fields(visit)
    console = visit.console
    base, name = visit.form.get("base", ""), visit.me.name
    may_approve = visit.me.may(Permission.APPROVE)
    saved = await console.unit(lambda unit: app.save_draft(unit, day, fields, body, base, name, visit.now,
                                                           may_approve=may_approve))
    if saved.refused is not None:
        # The status field would approve what this person may not: nothing written, the text kept
        # on the page as a draft, so that "Spara" again saves it for another person to approve.
        refusal = (f"Inte sparad: {swedish_of(saved.refused)}. Din text finns kvar här nedan, med status Utkast; "
                   "spara igen, och låt en annan person godkänna den.")

        def not_approved(unit: app.Session) -> HTMLResponse:
            kept = app.open_draft(unit, day, visit.now).kept
            draft = app.Draft(day, {**fields, "status": "draft"}, body, base, True, kept)
            return _edition_page(unit, visit, day, draft=draft, error=refusal, status_code=409)

        return await console.unit(not_approved)
    if not saved.saved:
        error = (f"Inte sparad: {saved.conflict_by} sparade rapporten efter att du öppnade den. Din text finns kvar "
                 "här nedan och är sparad undan (se 'Undansparade texter'). Öppna den sparade versionen och för in "
                 "dina ändringar i den.")

        def refused(unit: app.Session) -> HTMLResponse:
            kept = app.open_draft(unit, day, visit.now).kept
            draft = app.Draft(day, {**fields, "by": saved.conflict_by or ""}, body, base, True, kept)
            return _edition_page(unit, visit, day, draft=draft, error=error, status_code=409, conflict=True)

        return await console.unit(refused)
    return done_then_back(visit, "oforandrad" if saved.unchanged else "sparad", f"/editions/{day.isoformat()}")


@page(Permission.APPROVE)
async def approve(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    seen = visit.form.get("seen") or None

    def work(unit: app.Session) -> str:
        edition = app.read_edition(unit, day, None, visit.now)
        ready = app.prepare_edition(unit, edition, visit.now)
        # The page's form always carries what it showed: a POST without it approves nothing.
        app.approve(unit, ready, visit.me.name, visit.now, seen=seen, require_seen=True)  # audited by app
        return "godkand"

    return await _act(visit, day, work)


@page(Permission.APPROVE)
async def revoke(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)

    def work(unit: app.Session) -> str:
        count = app.revoke(unit, day, visit.me.name, visit.now)
        if not count:
            raise InputError([Problem.of(day.isoformat(), 0, "revoke.nothing_to_revoke")])
        return "aterkallad"

    return await _act(visit, day, work)


@page(Permission.EDIT)
async def send_test(request: Request, visit: Visit) -> Response:
    """A test to me: sent like any dispatch, by a run of this process that retries it (a relay
    that is down, a server asking to try later), so nobody has to send it again. The page waits
    for its first attempt and says how it went: delivered, or an error with the reason."""
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    console = visit.console
    recipe = app.Recipe(day, to=(visit.me.email,), made_at=visit.now)
    try:
        run = await run_in_threadpool(console.runs.start, recipe, visit.me.name, visit.now)
    except DispatchError as exc:
        refused = f"Inte utfört: {_reason(exc)}"
        return await console.unit(lambda unit: _edition_page(unit, visit, day, error=refused, status_code=409))
    outcome = None
    deadline = asyncio.get_running_loop().time() + TEST_WAIT_SECONDS
    while outcome is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        outcome = await console.unit(lambda unit: console.runs.test_outcome(unit.ledger, run.name, console.now()))
    if outcome is not None and outcome.code == "test.sent":
        return done_then_back(visit, "test", f"/editions/{day.isoformat()}", email=visit.me.email)
    said = swedish_of(outcome or Fact.of("test.under_way", email=visit.me.email))
    return await console.unit(lambda unit: _edition_page(unit, visit, day, error=said, test_run=run.name))


TEST_WAIT_SECONDS = 20.0  # the first attempt of a test; a run that is still at it after this is said as such


def _reason(exc: DispatchError) -> str:
    problems = exc.problems if isinstance(exc, InputError) else ()
    return "; ".join(swedish_of(p.fact) for p in problems) if problems else swedish_of(exc.fact)


async def _act(visit: Visit, day: date, work: Callable[[app.Session], str]) -> Response:
    """Run an action; on success back to the edition's page with what was done (a reload does
    not repeat it), on refusal the page with the reason, in Swedish where it is known."""
    try:
        done = await visit.console.unit(work)
    except DispatchError as exc:
        reason = _reason(exc)
        return await visit.console.unit(lambda unit: _edition_page(unit, visit, day, error=f"Inte utfört: {reason}",
                                                                   status_code=409))
    return done_then_back(visit, done, f"/editions/{day.isoformat()}", email=visit.me.email)


@page(Permission.READ)
async def kept_text(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    wanted = str(request.path_params.get("kept_id", ""))
    draft = await visit.console.unit(lambda unit: app.open_draft(unit, day, visit.now))
    for kept in draft.kept:
        if str(kept.id) == wanted:
            return visit.render("kept.html", day=day, kept=kept)
    return not_found(visit)


@page(Permission.EDIT)
async def paste(request: Request, visit: Visit) -> Response:
    """Formatted text pasted into ``Innehåll`` (the edition editor and the urgent composer):
    the clipboard's HTML, sent by console.js as the request's body (``text/html``, the CSRF
    token in its header), back as Markdown to insert. Converted here, on the server, after
    sanitising: no HTML of the paste reaches the text. Too large a paste is refused (413) and
    the browser pastes the plain text instead."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > app.MAX_PASTE_BYTES:
            return PlainTextResponse("", status_code=413)
    markdown = await run_in_threadpool(app.markdown_from_clipboard, received.decode("utf-8", errors="replace"))
    return PlainTextResponse(markdown)

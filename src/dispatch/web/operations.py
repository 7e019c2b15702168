"""The operator's actions: send and watch ("Skicka nu", live progress), stop and resume,
"Försök igen nu", urgent messages ("Skicka brådskande"), and corrections ("Skapa rättelse").

Sends run in this process (app.Runs), the one that serves the console; the progress page
reads the ledger through server-sent events, so every watcher sees the same numbers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dispatch import app
from dispatch.app import Permission
from dispatch.errors import DispatchError, InputError
from dispatch.values import Fact, Progress
from dispatch.web.console import Visit, not_found, page
from dispatch.web.editor import done_then_back, edition_day, located_problem
from dispatch.web.swedish import progress_in_swedish
from dispatch.wording import swedish_of


def routes() -> list[BaseRoute]:
    return [
        Route("/editions/{day}/send", confirm_send, methods=["GET"]),
        Route("/editions/{day}/send", start_send, methods=["POST"]),
        Route("/editions/{day}/correction", start_correction, methods=["POST"]),
        Route("/runs/{name}", run_page),
        Route("/runs/{name}/events", run_events),
        Route("/runs/{name}/stop", stop_run, methods=["POST"]),
        Route("/runs/{name}/resume", resume_run, methods=["POST"]),
        Route("/runs/{name}/retry", retry_now, methods=["POST"]),
        Route("/urgent", urgent_form, methods=["GET"]),
        Route("/urgent/preview", urgent_preview, methods=["POST"]),
        Route("/urgent", urgent_confirm, methods=["POST"]),
        Route("/urgent/send", urgent_send, methods=["POST"]),
    ]


def _refusal(exc: DispatchError) -> str:
    """Why an action was refused, in Swedish: each problem, or the error, worded from the catalogue."""
    problems = exc.problems if isinstance(exc, InputError) else ()
    return "; ".join(swedish_of(p.fact) for p in problems) if problems else swedish_of(exc.fact)


# -- an edition: confirm, send, watch -----------------------------------------------------------------


@page(Permission.SEND)
async def confirm_send(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    try:
        confirmation, _ = await visit.console.unit(lambda unit: app.confirm(unit, app.Recipe(day), visit.now))
    except DispatchError as exc:
        return visit.render("send_confirm.html", 409, day=day, confirmation=None, error=_refusal(exc))
    return visit.render("send_confirm.html", day=day, confirmation=confirmation, error="",
                        security=visit.console.settings.transport.security)


@page(Permission.SEND)
async def start_send(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    return await _start(visit, app.Recipe(day), visit.form.get("expected") or None, day=day)


async def _start(visit: Visit, recipe: app.Recipe, expected: str | None, *, day: date | None = None) -> Response:
    console = visit.console
    try:
        run = await run_in_threadpool(console.runs.start, recipe, visit.me.name, visit.now, expected=expected)
    except DispatchError as exc:
        return visit.render("send_confirm.html", 409, day=day, confirmation=None, error=_refusal(exc))
    return RedirectResponse(f"/runs/{run.name}", status_code=303)


@page(Permission.READ)
async def run_page(request: Request, visit: Visit) -> Response:
    name = str(request.path_params["name"])
    console = visit.console
    progress = await console.unit(lambda unit: console.runs.progress(unit.ledger, name, visit.now))
    if progress is None:
        return not_found(visit, "Det finns inget sådant utskick.")
    status = await console.unit(lambda unit: app.status(unit, name, visit.now))
    waiting = [row for row in (status.rows if status else []) if row["state"] in ("deferred", "failed", "unknown", "bounced")]
    return visit.render("run.html", name=name, progress=progress, said=progress_in_swedish(progress, console.settings.timezone, visit.now),
                        waiting=waiting)


@page(Permission.READ)
async def run_events(request: Request, visit: Visit) -> Response:
    """Server-sent events: the progress twice a second until the run ends (then once more)."""
    name = str(request.path_params["name"])
    console = visit.console

    def progress_at(now: datetime) -> Callable[[app.Session], Progress | None]:
        return lambda unit: console.runs.progress(unit.ledger, name, now)

    async def events() -> AsyncIterator[str]:
        last = None
        while True:
            now = console.now()
            progress = await console.unit(progress_at(now))
            if progress is None:
                return
            data = json.dumps(progress_in_swedish(progress, console.settings.timezone, now), ensure_ascii=False)
            if data != last:
                yield f"event: progress\ndata: {data}\n\n"
                last = data
            if progress.final or await request.is_disconnected():
                yield f"event: end\ndata: {data}\n\n"
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store",
                                                                                 "X-Accel-Buffering": "no"})


@page(Permission.SEND)
async def stop_run(request: Request, visit: Visit) -> Response:
    name = str(request.path_params["name"])
    run = visit.console.runs.stop(name)
    if run is None:
        return not_found(visit, "Utskicket körs inte här.")
    await visit.audit("stop", name)
    return RedirectResponse(f"/runs/{name}", status_code=303)


@page(Permission.SEND)
async def resume_run(request: Request, visit: Visit) -> Response:
    name = str(request.path_params["name"])
    recipe = await visit.console.unit(lambda unit: app.recipe_for(unit, name))
    if recipe is None:
        return not_found(visit, "Det här utskicket kan inte återupptas härifrån.")
    await visit.audit("resume", name)
    return await _start(visit, recipe, name, day=recipe.day)


@page(Permission.SEND)
async def retry_now(request: Request, visit: Visit) -> Response:
    name = str(request.path_params["name"])
    recipe = await visit.console.unit(lambda unit: app.recipe_for(unit, name))
    if recipe is None:
        return not_found(visit, "Det här utskicket kan inte skickas igen härifrån.")
    count = await visit.console.unit(lambda unit: app.retry_waiting_now(unit, name, visit.now))
    await visit.audit("retry_now", name, None, (Fact.of("audit_detail.waiting_recipients", count=count),))
    if visit.console.runs.wake(name):  # a send of it runs here: it tries them now instead of after its wait
        return RedirectResponse(f"/runs/{name}", status_code=303)
    return await _start(visit, recipe, name, day=recipe.day)


# -- corrections -----------------------------------------------------------------------------------


@page(Permission.EDIT)
async def start_correction(request: Request, visit: Visit) -> Response:
    day = edition_day(request)
    if day is None:
        return not_found(visit)
    console = visit.console
    try:
        await console.unit(lambda unit: app.start_correction(unit, day, visit.me.name, visit.now))
    except DispatchError as exc:
        return visit.render("error.html", 409, heading="Ingen rättelse skapad", message=_refusal(exc))
    return done_then_back(visit, "rattelse", f"/editions/{day.isoformat()}")


# -- urgent messages -------------------------------------------------------------------------------


def _urgent_form(visit: Visit) -> tuple[str, tuple[str, ...], str]:
    lists = tuple(name for name in app.all_lists(visit.console.settings) if visit.form.get(f"list-{name}"))
    return visit.form.get("subject", "").strip(), lists, visit.form.get("body", "")


@page(Permission.SEND)
async def urgent_form(request: Request, visit: Visit) -> Response:
    settings = visit.console.settings
    return visit.render("urgent.html", subject="", body="", chosen=settings.scheduled_lists(),
                        lists=app.all_lists(settings), error="")


@page(Permission.SEND)
async def urgent_preview(request: Request, visit: Visit) -> Response:
    subject, lists, body = _urgent_form(visit)
    console = visit.console
    path = app.urgent_path(console.settings, subject or "meddelande", visit.now)
    fields = app.urgent_fields(subject, lists, visit.me.name)
    result = await console.unit(lambda unit: app.preview_draft(unit, visit.now.date(), fields, body, visit.now,
                                                               urgent_file=path))
    problems = [located_problem(problem, result) for problem in result.problems]
    if not lists:
        problems.insert(0, {"message": "Välj minst en mottagarlista.", "anchor": "", "label": "", "line": None})
    preview_id = console.keep_preview(visit.me.name, result.html, "urgent") if result.html else None
    return visit.render("preview.html", result=result, preview_id=preview_id, problems=problems, day=visit.now.date())


@page(Permission.SEND)
async def urgent_confirm(request: Request, visit: Visit) -> Response:
    """The confirmation: the count and the lists, before anything is written or sent."""
    subject, lists, body = _urgent_form(visit)
    settings = visit.console.settings
    if visit.form.get("cancel"):  # "Avbryt": back to the message as written, nothing counted or sent
        return visit.render("urgent.html", subject=subject, body=body, chosen=lists, lists=app.all_lists(settings), error="")
    error = "" if subject and lists and body.strip() else "Skriv ett ämne och ett meddelande, och välj minst en lista."
    count = 0
    if not error:
        report = await visit.console.unit(lambda unit: app.lists_report(settings, lists, unit))
        count = len(report.resolution.recipients) if report.resolution else 0
    return visit.render("urgent.html", 409 if error else 200, subject=subject, body=body, chosen=lists,
                        lists=app.all_lists(settings), error=error, confirm_count=count)


@page(Permission.SEND)
async def urgent_send(request: Request, visit: Visit) -> Response:
    subject, lists, body = _urgent_form(visit)
    settings = visit.console.settings
    if not (subject and lists and body.strip()):
        return visit.render("urgent.html", 409, subject=subject, body=body, chosen=lists, lists=app.all_lists(settings),
                            error="Skriv ett ämne och ett meddelande, och välj minst en lista.")
    confirmed = tuple(sorted(filter(None, visit.form.get("confirmed_lists", "").split(","))))
    if confirmed != tuple(sorted(lists)):
        # The lists were changed after the count was shown: show the new count first.
        report = await visit.console.unit(lambda unit: app.lists_report(settings, lists, unit))
        count = len(report.resolution.recipients) if report.resolution else 0
        return visit.render("urgent.html", 409, subject=subject, body=body, chosen=lists, lists=app.all_lists(settings),
                            error="Mottagarlistorna ändrades efter bekräftelsen: kontrollera antalet och bekräfta igen.",
                            confirm_count=count, confirm_again=True)
    path = app.urgent_path(settings, subject, visit.now)
    await run_in_threadpool(app.write_urgent, path, subject, lists, body, visit.me.name)
    recipe = app.Recipe(None, path, urgent=True)
    try:
        run = await run_in_threadpool(visit.console.runs.start, recipe, visit.me.name, visit.now)
    except DispatchError as exc:
        return visit.render("urgent.html", 409, subject=subject, body=body, chosen=lists, lists=app.all_lists(settings),
                            error="Inte skickat: " + _refusal(exc))
    return RedirectResponse(f"/runs/{run.name}", status_code=303)

""""Byt lösenord": the signed-in person's own new password. The current password is checked
as at sign-in (in its turn among the password checks, and a wrong one counts towards the
lock); a new password ends every session of the account, and this browser gets a new one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dispatch import app
from dispatch.app import Permission
from dispatch.errors import InputError
from dispatch.web.checks import Busy
from dispatch.web.console import Visit, page
from dispatch.web.notices import Notice
from dispatch.wording import swedish_of


@page(Permission.READ)
async def password_page(request: Request, visit: Visit) -> Response:
    console = visit.console
    local = visit.me.password_hash is not None  # a single sign-on account has no password here
    if request.method == "GET":
        done = console.notices.take(visit.session, "/password", visit.now) is not None  # shown once
        return visit.render("password.html", local=local, done=done, error="", problems=[])
    if not local:
        return visit.render("password.html", 400, local=False, done=False, error="", problems=[])
    new, again = visit.form.get("new", ""), visit.form.get("again", "")
    if new != again:
        return visit.render("password.html", 400, local=True, done=False, error="mismatch", problems=[])
    remote = request.client.host if request.client else ""
    try:
        name, current, now = visit.me.name, visit.form.get("current", ""), visit.now
        await console.checks.run(console.in_session, lambda unit: app.change_password(
            unit, name, current, new, now, remote=remote, hashing=console.web.password_hashing))
    except app.SignInRefused:
        return visit.render("password.html", 403, local=True, done=False, error="wrong", problems=[])
    except InputError as exc:
        return visit.render("password.html", 400, local=True, done=False, error="",
                            problems=[swedish_of(problem.fact) for problem in exc.problems])
    except Busy:
        response = visit.render("password.html", 503, local=True, done=False, error="busy", problems=[])
        response.headers["Retry-After"] = "10"
        return response
    # Every session of the account has ended (copies of this one too); this browser goes on
    # in a new one. Post, redirect, get: a reload does not post the form again.
    # The confirmation is kept for the new session, and shown once.
    redirect = RedirectResponse("/password", status_code=303)
    renewed = await console.start_session(redirect, visit.me.name, visit.now)
    console.notices.put(renewed, Notice("password", "/password", visit.now))
    return redirect

"""The editor console's commands: ``web`` (serve the console) and ``users`` (its accounts)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dispatch.cli.base import EXIT_INPUT, Context, fail, main, pass_context
from dispatch.errors import DispatchError, InputError, Problem
from dispatch.values import Role

if TYPE_CHECKING:
    from dispatch.app import Session


@main.command("web")
@click.option("--listen", metavar="HOST:PORT", default=None,
              help="Address to listen on (default: web.listen in the config, else 127.0.0.1:8025).")
@pass_context
def web_command(app: Context, listen: str | None) -> None:
    """Serve the editor console in the foreground until SIGINT/SIGTERM.

    As soon as it listens it says where on stderr: "dispatch web: listening on
    http://127.0.0.1:8025/ (sign in at http://127.0.0.1:8025/login)". Put it behind the
    intranet's TLS reverse proxy (see docs/reference/console.md); it listens on 127.0.0.1 by
    default. Exits 0 after a clean stop, 1 if it cannot start.
    """
    from dispatch import app as application
    from dispatch.web import run_console  # Starlette and uvicorn: only for this command

    settings = app.settings
    for warning in application.accessibility_warnings(settings):
        click.echo(f"warning: {warning}", err=True)
    address = listen or (settings.web.listen if settings.web else "127.0.0.1:8025")
    try:
        sys.exit(run_console(settings, address, announce=_listening))
    except DispatchError as exc:
        fail(exc, summary="the console did not start")


def _listening(url: str) -> None:
    click.echo(f"dispatch web: listening on {url} (sign in at {url}login)", err=True)


@main.group("users")
def users() -> None:
    """Console accounts: add, list, disable, passwd."""


@users.command("add")
@click.argument("name")
@click.option("--email", required=True, metavar="ADDR", help="The person's address (test sends go here).")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]),
              help="editor writes; approver approves and writes; operator sends, stops and reads the audit log, and may do everything.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the password from this file (one trailing newline is dropped); else from standard input.")
@pass_context
def users_add(app: Context, name: str, email: str, role: str, password_file: Path | None) -> None:
    """Add a console account NAME (the name people sign in with)."""
    from dispatch import app as application

    password = _password(password_file, "no account was added")
    try:
        hashing = app.settings.web.password_hashing if app.settings.web else "standard"
        user = application.add_user(app.session, name, email, role, password, app.now(), by=application.current_user(),
                                    hashing=hashing)
    except DispatchError as exc:
        fail(exc, summary="no account was added")
    click.echo(f"added {user.name} <{user.email}> as {user.role}", err=True)


@users.command("enable")
@click.argument("name")
@pass_context
def users_enable(app: Context, name: str) -> None:
    """Enable account NAME again, e.g. one single sign-on held because its name, cleaned up, was
    another account's (the audit log's sso_held entry says whose): first make sure who it is."""
    from dispatch import app as application

    _change_account(app, name, lambda unit: application.enable_user(unit, name, app.now(), by=application.current_user()))
    click.echo(f"enabled {name}", err=True)


@users.command("list")
@pass_context
def users_list(app: Context) -> None:
    """Every account: name, role, address, and whether it is disabled or locked."""
    from dispatch import app as application

    try:
        accounts = application.list_users(app.session)
    except DispatchError as exc:
        fail(exc)
    now = app.now()
    for user in accounts:
        notes = ["disabled"] if user.disabled else []
        if user.locked_until and user.locked_until > now:
            notes.append(f"locked until {user.locked_until.astimezone(app.settings.timezone):%Y-%m-%d %H:%M}")
        if user.password_hash is None:
            notes.append("single sign-on only")
        click.echo("\t".join([user.name, user.role, user.email, ", ".join(notes)]).rstrip())


@users.command("disable")
@click.argument("name")
@pass_context
def users_disable(app: Context, name: str) -> None:
    """Disable account NAME: it can no longer sign in, and its open sessions end."""
    from dispatch import app as application

    _change_account(app, name, lambda unit: application.disable_user(unit, name, app.now(), by=application.current_user()))
    click.echo(f"disabled {name}", err=True)


@users.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the new password from this file (one trailing newline is dropped); else from standard input.")
@pass_context
def users_passwd(app: Context, name: str, password_file: Path | None) -> None:
    """Set a new password for account NAME; its open sessions end (in every browser)."""
    from dispatch import app as application

    password = _password(password_file, "the password was not changed")
    hashing = app.settings.web.password_hashing if app.settings.web else "standard"
    _change_account(app, name, lambda unit: application.set_password(
        unit, name, password, app.now(), by=application.current_user(), hashing=hashing), "the password was not changed")
    click.echo(f"new password for {name}; its sessions have ended", err=True)


def _change_account(app: Context, name: str, change: Callable[[Session], bool], summary: str = "nothing was sent") -> None:
    """Run one change of account NAME in the command's unit of work; an unknown name, or a
    refusal, ends the command (exit 1) with the reason."""

    try:
        done = change(app.session)
    except DispatchError as exc:
        fail(exc, summary=summary)
    if not done:
        click.echo(f"error: no account named {name!r} (see dispatch users list)", err=True)
        sys.exit(EXIT_INPUT)


def _password(path: Path | None, summary: str) -> str:
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(InputError([Problem.of(str(path), 1, "password.unreadable_file", detail=str(exc.strerror))]), summary=summary)
        return text[:-1] if text.endswith("\n") else text
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            fail(InputError([Problem.of("password", 0, "password.differs")]), summary=summary)
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line

"""The command line's frame: the command group, options shared by the commands, and how
an error becomes a message and an exit code.

Exit codes (DESIGN contract): 0 all good; 1 invalid input, nothing sent; 2 usage;
3 some recipients failed or are still deferred. Messages go to stderr, machine-
readable output to stdout.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from dispatch.errors import ChangeControlError, DispatchError, InputError

if TYPE_CHECKING:
    from dispatch.app import App, Session, Settings

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def fail(error: DispatchError, code: int = EXIT_INPUT, summary: str = "nothing was sent") -> NoReturn:
    if isinstance(error, InputError):
        for problem in error.problems:
            click.echo(str(problem), err=True)
        if isinstance(error, ChangeControlError) and error.details:
            click.echo(error.details.rstrip("\n"), err=True)
        if len(error.problems) > 1:
            click.echo(f"{len(error.problems)} problems; {summary}.", err=True)
    else:
        click.echo(f"error: {error}", err=True)
    sys.exit(code)


class Context:
    def __init__(self, config: Path) -> None:
        self.config_path = config
        self._settings: Settings | None = None
        self._application: App | None = None
        self._session: Session | None = None
        self.resources = ExitStack()  # closed when the command ends (its session, then its App)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from dispatch.app import load_settings

            try:
                self._settings = load_settings(self.config_path)
            except DispatchError as exc:
                fail(exc)
        return self._settings

    @property
    def application(self) -> App:
        """The command's one App (one engine for the ledger, however often it is used)."""
        if self._application is None:
            from dispatch.app import App

            self._application = App(self.settings)
            self.resources.callback(self._application.close)
        return self._application

    @property
    def session(self) -> Session:
        """The command's unit of work: a command is one."""
        if self._session is None:
            self._session = self.resources.enter_context(self.application.session())
        return self._session

    def now(self) -> datetime:
        return datetime.now(self.settings.timezone)

    def day(self, value: date | None) -> date:
        return value or self.now().date()


pass_context = click.make_pass_decorator(Context)


def parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-11-17") from None


date_option = click.option(
    "--date", "day", metavar="YYYY-MM-DD", callback=parse_date,
    help="Edition date (default: today in the configured timezone).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config", "config", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("DISPATCH_CONFIG", "config.yaml"), show_default="./config.yaml or $DISPATCH_CONFIG",
    help="Configuration file; relative paths in it are relative to its directory.",
)
@click.version_option(package_name="dispatch")
@click.pass_context
def main(ctx: click.Context, config: Path) -> None:
    """Assemble, check and send the daily situation report, and see what was delivered.

    Exit codes: 0 success; 1 invalid input or not sendable (nothing sent); 2 usage
    error; 3 some recipients failed or are still deferred; 130/143 a send stopped
    by SIGINT/SIGTERM (run the same command to resume).
    """
    ctx.obj = Context(config)
    ctx.call_on_close(ctx.obj.resources.close)


file_option = click.option(
    "--file", "file", type=click.Path(path_type=Path, dir_okay=False),
    help="This edition or urgent message file instead of reports/DATE.md.",
)


urgent_option = click.option("--urgent", is_flag=True, help="The file is an urgent message (needs --file).")


def local(value: datetime | None, app: Context) -> str:
    # With the offset: a reader must never have to guess whether a time is UTC or local.
    return value.astimezone(app.settings.timezone).strftime("%Y-%m-%d %H:%M:%S %z") if value else "-"


def short(value: str | None) -> str:
    from dispatch import app as application

    return application.short(value)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

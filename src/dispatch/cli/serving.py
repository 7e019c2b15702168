"""The serve command: runs the scheduler service (app.service) in the foreground."""

from __future__ import annotations

import sys

import click

from dispatch.cli.base import Context, fail, main, pass_context
from dispatch.errors import DispatchError


@main.command("serve")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (time, level, event, dispatch, counts) instead of text.")
@pass_context
def serve_command(app: Context, log_json: bool) -> None:
    """Run the scheduler service in the foreground until SIGTERM/SIGINT (and the editor
    console too, when the config has a 'web:' section).

    Sends each schedule's approved edition at its cron time (once: the ledger decides),
    catches up a run missed while down until the schedule's deadline, and alerts the
    notify addresses when nothing is approved or a run was missed. SIGHUP reloads the
    config; an invalid one is rejected and the service keeps running. Exits 0 on a clean
    stop, 1 if it cannot start.
    """
    # Imported here: APScheduler's scheduler and executors are needed by this command only.
    from dispatch.app.service import run_service

    settings = app.settings
    hosted = None
    if settings.web is not None:
        from dispatch import app as application
        from dispatch.web import HostedConsole  # the editor console, served by this process too

        for warning in application.accessibility_warnings(settings):
            click.echo(f"warning: {warning}", err=True)

        try:
            hosted = HostedConsole(settings, settings.web.listen, app.application)
        except DispatchError as exc:
            fail(exc, summary="the service did not start")
    # One App for the process: the scheduler's jobs and the console share its one engine.
    sys.exit(run_service(app.config_path, settings, log_json=log_json, hosted=hosted, application=app.application))

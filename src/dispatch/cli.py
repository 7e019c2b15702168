"""The command line: options, exit codes and what the user reads.

Exit codes (DESIGN contract): 0 all good; 1 invalid input, nothing sent; 2 usage;
3 some recipients failed or are still deferred. Messages go to stderr, machine-
readable output to stdout.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from dispatch.errors import DispatchError, InputError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def _fail(error: DispatchError, code: int = EXIT_INPUT) -> NoReturn:
    if isinstance(error, InputError):
        for problem in error.problems:
            click.echo(str(problem), err=True)
        if len(error.problems) > 1:
            click.echo(f"{len(error.problems)} problems; nothing was sent.", err=True)
    else:
        click.echo(f"error: {error}", err=True)
    sys.exit(code)


class Context:
    def __init__(self, config: Path) -> None:
        self.config_path = config
        self._settings: Any = None

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from dispatch.config import load_settings

            try:
                self._settings = load_settings(self.config_path)
            except DispatchError as exc:
                _fail(exc)
        return self._settings

    def now(self) -> datetime:
        return datetime.now(self.settings.timezone)

    def day(self, value: date | None) -> date:
        return value or self.now().date()


pass_context = click.make_pass_decorator(Context)


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-11-17") from None


date_option = click.option(
    "--date", "day", metavar="YYYY-MM-DD", callback=_date,
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

    Exit codes: 0 success; 1 invalid input (nothing sent); 2 usage error;
    3 some recipients failed or are still deferred.
    """
    ctx.obj = Context(config)


@main.command()
@date_option
@pass_context
def check(app: Context, day: date | None) -> None:
    """Validate config, recipient lists and the edition; render it and run the pre-flight checks.

    Prints each problem as path:line: message. Exits 0 when all is well, 1 otherwise.
    """
    from dispatch import app as application

    from dispatch.timetable import check_schedules

    settings = app.settings
    now = app.now()
    try:
        check_schedules(settings)  # a cron that serve would reject is a config problem now, not at 14:00
        edition = application.read_edition(settings, app.day(day), None, now)
        ready = application.prepare_edition(settings, edition, now)
    except DispatchError as exc:
        _fail(exc)
    problems = ready.resolution.problems
    for problem in problems:
        click.echo(str(problem), err=True)
    count = len(ready.resolution.recipients)
    click.echo(
        f"{ready.edition.source.name}: {len(ready.edition.sections)} sections, "
        f"{count} recipients on {', '.join(ready.lists)}, HTML {len(ready.rendered.html.encode()) / 1024:.1f} KB"
        + (f"; {len(problems)} problem(s)" if problems else "; ready to send"),
        err=True,
    )
    sys.exit(EXIT_INPUT if problems else EXIT_OK)


@main.command()
@date_option
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Directory for the preview files (default: var/preview beside the config).")
@click.option("--screenshots", is_flag=True, help="Also write mobile.png, desktop.png and mobile-dark.png with headless Chromium.")
@pass_context
def preview(app: Context, day: date | None, out: Path | None, screenshots: bool) -> None:
    """Write the rendered edition as .html, .txt and .eml and print their paths.

    The .eml is exactly what the first recipient would receive, Date and Message-ID included.
    """
    from dispatch import app as application
    from dispatch.ledger import dispatch_name
    from dispatch.message import message_id, to_header

    settings = app.settings
    now = app.now()
    try:
        edition = application.read_edition(settings, app.day(day), None, now)
        ready = application.prepare_edition(settings, edition, now)
    except DispatchError as exc:
        _fail(exc)
    out = out or settings.path.parent / "var" / "preview"
    out.mkdir(parents=True, exist_ok=True)
    stem = edition.date.isoformat()
    recipients = list(ready.resolution.recipients.values())
    paths = [out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml"]
    paths[0].write_text(ready.rendered.html, encoding="utf-8")
    paths[1].write_text(ready.rendered.text, encoding="utf-8")
    if recipients:
        first = recipients[0]
        name = dispatch_name(edition.date, edition.revision, edition.kind)
        data = ready.prepared.for_recipients(to_header([first]), message_id(name, first.key, ready.prepared.domain))
        paths[2].write_bytes(data)
    else:
        paths.pop()
    if screenshots:
        from dispatch.screenshots import ChromiumMissing, take_screenshots

        try:
            paths += take_screenshots(paths[0], out)
        except ChromiumMissing as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INPUT)
    for path in paths:
        click.echo(str(path))
    for problem in ready.resolution.problems:
        click.echo(str(problem), err=True)
    sys.exit(EXIT_INPUT if ready.resolution.problems else EXIT_OK)


@main.command()
@date_option
@click.option("--file", "file", type=click.Path(path_type=Path, dir_okay=False), help="Send this edition or message file instead of reports/DATE.md.")
@click.option("--list", "lists", multiple=True, metavar="NAME", help="Send only to this list (repeatable).")
@click.option("--to", "to", multiple=True, metavar="ADDR", help="Test send to this address only (repeatable); subject gets [TEST], recorded as a test dispatch.")
@click.option("--urgent", is_flag=True, help="Send an urgent message now (needs --file; no approval needed).")
@click.option("--by", "by", metavar="NAME", help="Who is sending; recorded in the ledger (default: the OS user).")
@click.option("--dry-run", is_flag=True, help="Check and plan, show what would be sent, send nothing.")
@click.option("--wait", "wait_minutes", type=click.FloatRange(min=0), default=10, show_default=True, metavar="MINUTES",
              help="How long to stay and retry deferred recipients before exiting (they are retried by the next send or by serve).")
@pass_context
def send(app: Context, day: date | None, file: Path | None, lists: tuple[str, ...], to: tuple[str, ...],
         urgent: bool, by: str | None, dry_run: bool, wait_minutes: float) -> None:
    """Send the edition to its lists, resuming an interrupted dispatch of the same edition.

    Recipients: --to addresses; else --list lists; else the edition's 'lists'; else
    every list in 'schedules'. Nobody already accepted is sent to again.
    Exits 0 when all are accepted, 1 on invalid input (nothing sent), 3 when some
    recipients failed or are still deferred.
    """
    from dispatch import app as application
    from dispatch.pipeline import Clock

    if urgent and file is None:
        raise click.UsageError("--urgent needs --file MESSAGE.md")
    settings = app.settings
    now = app.now()
    try:
        edition = application.read_edition(settings, app.day(day) if file is None else day, file, now, urgent=urgent)
        ready = application.prepare_edition(settings, edition, now, lists=lists, to=to)
    except DispatchError as exc:
        _fail(exc)
    if not ready.edition.approved and not ready.edition.urgent and not to:
        where = f"{ready.edition.source}:{ready.edition.line_of.get('status', 1)}"
        click.echo(f"{where}: the edition is a draft; set 'status: approved' to send it (or test it with --to ADDR)", err=True)
        sys.exit(EXIT_INPUT)
    for problem in ready.resolution.problems:
        click.echo(str(problem), err=True)
    total = len(ready.resolution.recipients)
    target = ", ".join(ready.lists) if ready.lists else ", ".join(to)
    if dry_run:
        click.echo(f"dry run: would send {ready.rendered.subject!r} to {total} recipients ({target}); nothing sent", err=True)
        sys.exit(EXIT_INPUT if ready.resolution.problems else EXIT_OK)

    click.echo(_plan_line(total, settings.transport), err=True)
    progress, finish = _progress(total)
    try:
        result = application.send(settings, ready, Clock(), created_by=by, progress=progress,
                                  linger=timedelta(minutes=wait_minutes))
    except DispatchError as exc:
        finish()
        _fail(exc, EXIT_INCOMPLETE)
    finish()
    if not result.created and result.already_sent:
        if result.sent_now == 0 and result.complete:
            click.echo(f"{result.dispatch}: nothing left to send; all {result.already_sent} recipients were already accepted", err=True)
        else:
            click.echo(f"{result.dispatch}: resumed; {result.already_sent} were already accepted before this run", err=True)
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    counts = result.counts
    click.echo(
        f"{result.dispatch}: sent {result.sent_now} now; totals: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        err=True,
    )
    if result.paused_until is not None:
        click.echo(f"the relay's sending quota is used up; paused until {result.paused_until.astimezone(settings.timezone):%H:%M}", err=True)
    if not result.complete:
        waiting = counts["deferred"] + counts["unknown"] + counts["pending"]
        when = f"; next attempt {result.next_attempt.astimezone(settings.timezone):%Y-%m-%d %H:%M} (run send again, or let serve retry)" if waiting and result.next_attempt else ""
        click.echo(f"{counts['failed']} failed, {waiting} not yet delivered{when}; see: dispatch status {result.dispatch}", err=True)
    sys.exit(EXIT_OK if result.complete and not ready.resolution.problems else EXIT_INCOMPLETE)


def _plan_line(recipients: int, transport: Any) -> str:
    """What is about to happen and how long it should take, before the first message."""
    if transport.kind == "maildir":
        return f"plan: {recipients} recipients into the Maildir {transport.path}"
    per_message = transport.recipients_per_message
    messages = -(-recipients // per_message)
    line = (f"plan: {recipients} recipients in {messages} messages"
            f"{f' of up to {per_message} recipients (Bcc)' if per_message > 1 else ''}"
            f" over {transport.connections} connection(s) to {transport.host}:{transport.port}")
    if transport.rate_per_minute:
        minutes = messages / transport.rate_per_minute
        line += f" at {transport.rate_per_minute:g}/min: about {_duration(minutes * 60)}"
    return line + " (recipients already accepted are skipped)"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress(total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A progress bar on a terminal; nothing otherwise (logs stay clean)."""
    if not sys.stderr.isatty() or total < 20:
        return (lambda n: None), (lambda: None)
    bar = click.progressbar(length=total, label="sending", file=sys.stderr, show_pos=True, show_eta=True)
    bar.__enter__()
    return bar.update, lambda: bar.__exit__(None, None, None)


@main.command()
@click.argument("dispatch", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_context
def status(app: Context, dispatch: str | None, as_json: bool) -> None:
    """Show the latest dispatch (or DISPATCH): counts per state and each recipient not yet delivered."""
    ledger = _ledger(app)
    try:
        record = ledger.find_dispatch(dispatch)
        if record is None:
            if as_json:
                click.echo(json.dumps({"dispatch": None, "counts": {}, "recipients": []}))
            click.echo(f"no dispatch {dispatch!r}" if dispatch else "no dispatch yet", err=True)
            sys.exit(EXIT_OK)
        counts = ledger.counts(record.id)
        rows = ledger.rows(record.id)
        # Every dispatch of the same edition date: revisions, urgent messages, test sends.
        related = [
            {"dispatch": other.name, "revision": other.revision, "kind": other.kind,
             "created_by": other.created_by, "created_at": _iso(other.created_at),
             "counts": ledger.counts(other.id)}
            for other in ledger.list_dispatches(date.fromisoformat(record.edition_date))
        ]
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps(_status_json(record, counts, rows) | {"dispatches_of_date": related}, ensure_ascii=False, indent=2))
        return
    click.echo(f"{record.name}  {record.subject}")
    click.echo(f"created {_local(record.created_at, app)} by {record.created_by or '-'}; "
               + (f"finished {_local(record.finished_at, app)}" if record.finished_at else "not finished"))
    click.echo("  ".join(f"{state}: {count}" for state, count in counts.items()))
    nodes = collections.Counter(row["node"].split(":")[0] for row in rows if row["state"] == "sent" and row["node"])
    if len(nodes) > 1:
        click.echo("sent by: " + ", ".join(f"{node} {count}" for node, count in nodes.most_common()))
    others = [r for r in related if r["dispatch"] != record.name]
    if others:
        click.echo(f"other dispatches of {record.edition_date}:")
        for other in others:
            click.echo(f"  {other['dispatch']}  by {other['created_by'] or '-'}  sent {other['counts']['sent']}"
                       f", failed {other['counts']['failed']}")
    for row in rows:
        if row["state"] != "sent":
            click.echo(f"  {row['state']:<8} {row['address']}  attempts {row['attempts']}  {row['reply']}")


@main.command("recipients")
@click.argument("names", nargs=-1, metavar="[LIST]...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--members", "show_members", is_flag=True, help="Also list each member (address and name).")
@pass_context
def recipients_command(app: Context, names: tuple[str, ...], as_json: bool, show_members: bool) -> None:
    """Show the resolved recipients of each LIST (default: every list in 'schedules').

    Per list: display name, members after folding duplicates and removing suppressed
    addresses, how many were suppressed, overlaps between lists; problems go to stderr
    as path:line: message. Exits 0 when all entries are valid, 1 otherwise.
    """
    # A stage called straight from the CLI: listing lists needs no edition, render or ledger.
    from dispatch import recipients as lists_module
    from dispatch.errors import Problem, display_path

    settings = app.settings
    referrers: dict[str, Problem] = {}
    if not names:
        names = settings.scheduled_lists()
        # An unknown list name then points at the schedules in config.yaml.
        where = Problem(display_path(settings.path), settings.line_of.get("schedules", 1), "")
        referrers = {name: where for name in names}
    try:
        resolution = lists_module.resolve(settings.recipients_dir, names, referrers)
        problems = list(resolution.problems)
    except InputError as exc:
        resolution, problems = None, list(exc.problems)
    for problem in problems:
        click.echo(str(problem), err=True)
    views = [resolution.lists[n] for n in names if n in resolution.lists] if resolution else []
    overlaps = resolution.overlaps(names) if resolution else {}
    people = resolution.recipients if resolution else {}

    def member_rows(view: Any) -> list[dict[str, str]]:
        return [{"email": people[key].address, "name": people[key].name} for key in view.members]

    if as_json:
        report: dict[str, Any] = {
            "lists": [
                {
                    "list": view.name, "name": view.display_name, "path": view.path,
                    "members": len(view.members), "suppressed": len(view.suppressed),
                    "invalid": view.invalid, "includes": view.includes,
                    **({"addresses": member_rows(view)} if show_members else {}),
                }
                for view in views
            ],
            "recipients": len(people),
            "invalid": len(resolution.invalid) if resolution else 0,
            "overlaps": [{"lists": [a, b], "shared": shared} for (a, b), shared in overlaps.items()],
            "problems": [{"path": p.path, "line": p.line, "message": p.message} for p in problems],
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        width = max((len(view.name) for view in views), default=0)
        for view in views:
            extra = f", includes {', '.join(view.includes)}" if view.includes else ""
            click.echo(f"{view.name:<{width}}  {view.display_name}: {len(view.members)} members, "
                       f"{len(view.suppressed)} suppressed, {view.invalid} invalid ({view.path}{extra})")
            if show_members:
                for row in member_rows(view):
                    click.echo(f"  {row['email']}" + (f"  {row['name']}" if row["name"] else ""))
        for (a, b), shared in overlaps.items():
            click.echo(f"overlap: {a} and {b} share {shared} recipient(s)")
        if resolution is not None:
            click.echo(f"{len(people)} unique recipient(s) in all; {len(resolution.invalid)} invalid entr"
                       f"{'y' if len(resolution.invalid) == 1 else 'ies'}")
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
    sys.exit(EXIT_INPUT if problems else EXIT_OK)


def _ledger(app: Context) -> Any:
    """The configured ledger, or the error message and exit code 1."""
    from dispatch import app as application

    try:
        return application.open_ledger(app.settings)
    except DispatchError as exc:
        _fail(exc)


def _local(value: datetime | None, app: Context) -> str:
    return value.astimezone(app.settings.timezone).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _status_json(record: Any, counts: dict[str, int], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dispatch": record.name,
        "edition": record.edition_date,
        "revision": record.revision,
        "kind": record.kind,
        "subject": record.subject,
        "source": record.source,
        "created_by": record.created_by,
        "created_at": _iso(record.created_at),
        "finished_at": _iso(record.finished_at),
        "counts": counts,
        "recipients": [
            {
                "email": row["address"],
                "name": row["name"],
                "state": row["state"],
                "attempts": row["attempts"],
                "reply": row["reply"],
                "message_id": row["message_id"],
                "node": row["node"],
                "sent_at": _iso(row["sent_at"]),
                "updated_at": _iso(row["updated_at"]),
            }
            for row in rows
        ],
    }


@main.command("publish")
@date_option
@pass_context
def publish_command(app: Context, day: date | None) -> None:
    """Write the edition's web page and the archive index into publish.dir; print their paths.

    Only an approved edition is published; re-publishing a date replaces its page.
    Exits 0 when published, 1 on problems.
    """
    from dispatch import app as application
    from dispatch.errors import Problem, display_path

    settings = app.settings
    now = app.now()
    try:
        edition = application.read_edition(settings, app.day(day), None, now)
        if not edition.approved:
            line = edition.line_of.get("status", 1)
            raise InputError([Problem(display_path(edition.source), line,
                                      "the edition is a draft; set 'status: approved' to publish it")])
        published = application.publish(settings, edition, now)
    except DispatchError as exc:
        _fail(exc)
    click.echo(str(published.page))
    click.echo(str(published.index))


@main.command("export")
@click.argument("dispatch")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: everything, content included; csv: one row per recipient.")
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write files into this directory (records, plus the source, HTML and text sent) and print their paths.")
@pass_context
def export_command(app: Context, dispatch: str, fmt: str, out: Path | None) -> None:
    """The records of one dispatch (DISPATCH as 'status --json' names it): what was sent,
    to whom, with each recipient's state, reply, Message-ID and timestamps.

    To stdout unless --out. Exits 0, 1 when there is no such dispatch.
    """
    from dispatch.publish import export_csv, export_document, export_files

    ledger = _ledger(app)
    try:
        record = ledger.find_dispatch(dispatch)
        if record is None:
            click.echo(f"error: no dispatch {dispatch!r}; 'dispatch status' names the latest", err=True)
            sys.exit(EXIT_INPUT)
        document = export_document(record, ledger.counts(record.id), ledger.rows(record.id), ledger.contents(record.name))
    finally:
        ledger.close()
    if not document["contents"]:
        click.echo(f"warning: {record.name} was sent before dispatch kept the content it sends; "
                   f"its source file was {record.source}", err=True)
    if out is not None:
        try:
            paths = export_files(document, fmt, out)
        except OSError as exc:
            click.echo(f"error: {out}: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_INPUT)
        for path in paths:
            click.echo(str(path))
    elif fmt == "csv":
        click.echo(export_csv(document), nl=False)
    else:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))


@main.command("serve")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (time, level, event, dispatch, counts) instead of text.")
@pass_context
def serve_command(app: Context, log_json: bool) -> None:
    """Run the scheduler service in the foreground until SIGTERM/SIGINT.

    Sends each schedule's approved edition at its cron time (once: the ledger decides),
    catches up a run missed while down until the schedule's deadline, and alerts the
    notify addresses when nothing is approved or a run was missed. SIGHUP reloads the
    config; an invalid one is rejected and the service keeps running. Exits 0 on a clean
    stop, 1 if it cannot start.
    """
    from dispatch import serve as service

    settings = app.settings
    sys.exit(service.main(app.config_path, settings, log_json=log_json))


if __name__ == "__main__":  # pragma: no cover
    main()

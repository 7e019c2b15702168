"""The command line: options, exit codes and what the user reads.

Exit codes (DESIGN contract): 0 all good; 1 invalid input, nothing sent; 2 usage;
3 some recipients failed or are still deferred. Messages go to stderr, machine-
readable output to stdout.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from dispatch.errors import ChangeControlError, DispatchError, InputError, LedgerError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def _fail(error: DispatchError, code: int = EXIT_INPUT, summary: str = "nothing was sent") -> NoReturn:
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

    Exit codes: 0 success; 1 invalid input or not sendable (nothing sent); 2 usage
    error; 3 some recipients failed or are still deferred; 130/143 a send stopped
    by SIGINT/SIGTERM (run the same command to resume).
    """
    ctx.obj = Context(config)


file_option = click.option(
    "--file", "file", type=click.Path(path_type=Path, dir_okay=False),
    help="This edition or urgent message file instead of reports/DATE.md.",
)
urgent_option = click.option("--urgent", is_flag=True, help="The file is an urgent message (needs --file).")


@main.command()
@date_option
@file_option
@urgent_option
@pass_context
def check(app: Context, day: date | None, file: Path | None, urgent: bool) -> None:
    """Validate config, recipient lists and the edition; render it and run the pre-flight checks.

    Prints each problem as path:line: message, then where the edition stands: a draft,
    not yet approved (and why), approved, or already sent. Records the OS user as the
    author of this content when the front matter has no 'by' (for four-eyes approval).

    Exit codes: 0 the edition is valid (it may still await approval: read the last
    line); 1 problems, or the edition was changed after it was sent.
    """
    from dispatch import app as application

    from dispatch.timetable import check_schedules

    if urgent and file is None:
        raise click.UsageError("--urgent needs --file MESSAGE.md")
    settings = app.settings
    now = app.now()
    try:
        check_schedules(settings)  # a cron that serve would reject is a config problem now, not at 14:00
        edition = application.read_edition(settings, app.day(day) if file is None else day, file, now, urgent=urgent)
        ready = application.prepare_edition(settings, edition, now)
    except DispatchError as exc:
        if file is not None and not urgent and application.looks_urgent(file):
            click.echo(f"{file}: this looks like an urgent message (a subject, no 'compiled'): check it with --urgent", err=True)
        _fail(exc, summary="found")
    from dispatch.config import secret_problems

    problems = list(ready.resolution.problems) + secret_problems(settings)
    for problem in problems:
        click.echo(str(problem), err=True)
    try:
        found = application.review_now(settings, edition, now, record_author=application.current_user())
    except DispatchError as exc:
        _fail(exc)
    if found.conflict is not None:
        _fail(found.conflict)
    count = len(ready.resolution.recipients)
    click.echo(
        f"{ready.edition.source.name}: {len(ready.edition.sections)} sections, "
        f"{count} recipients on {', '.join(ready.lists)}, HTML {len(ready.rendered.html.encode()) / 1024:.1f} KB, "
        f"content {found.content.short}"
        + (f"; {len(problems)} problem(s)" if problems else ""),
        err=True,
    )
    if edition.urgent:
        state = "an urgent message: it needs no approval"
    elif found.sent is not None:
        state = (f"already sent to {found.sent.reached} recipient(s) as {found.sent.record.name}; "
                 "the file is unchanged since")
        if found.sent.content_hash not in (None, found.content.hash):
            from dispatch.content import changed_parts

            parts = ", ".join(changed_parts(found.sent.canonical, found.content.canonical)) or "its rendering"
            state += (f", but {parts} changed since: send refuses to send it to anyone more (they would get other "
                      "content); publish uses the content that was sent")
    else:
        assert found.verdict is not None
        state = ("ready to send: " if found.verdict.sendable else "valid, but NOT ready to send: ") + found.verdict.reason
    click.echo(f"{edition.source.name}: {state}", err=True)
    sys.exit(EXIT_INPUT if problems else EXIT_OK)


@main.command()
@date_option
@file_option
@urgent_option
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Directory for the preview files (default: var/preview beside the config).")
@click.option("--screenshots", is_flag=True, help="Also write mobile.png, desktop.png and mobile-dark.png with headless Chromium.")
@pass_context
def preview(app: Context, day: date | None, file: Path | None, urgent: bool, out: Path | None, screenshots: bool) -> None:
    """Write the rendered edition (or urgent message) as .html, .txt and .eml and print their paths.

    The .eml is exactly what the first recipient would receive, Date and Message-ID included.
    Exits 0, 1 on problems.
    """
    from dispatch import app as application

    if urgent and file is None:
        raise click.UsageError("--urgent needs --file MESSAGE.md")
    settings = app.settings
    now = app.now()
    try:
        edition = application.read_edition(settings, app.day(day) if file is None else day, file, now, urgent=urgent)
        ready = application.prepare_edition(settings, edition, now)
    except DispatchError as exc:
        _fail(exc)
    out = out or settings.path.parent / "var" / "preview"
    out.mkdir(parents=True, exist_ok=True)
    stem = edition.source.stem if edition.urgent else edition.date.isoformat()
    paths = [out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml"]
    paths[0].write_text(ready.rendered.html, encoding="utf-8")
    paths[1].write_text(ready.rendered.text, encoding="utf-8")
    data = application.first_message(ready)
    if data is not None:
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
@click.option("--dry-run", is_flag=True, help="Check and plan, show what would be sent and done, send nothing; exits as the send would.")
@click.option("--wait", "wait_minutes", type=click.FloatRange(min=0), default=10, show_default=True, metavar="MINUTES",
              help="How long to stay and retry deferred recipients before exiting (they are retried by the next send or by serve).")
@click.option("--retry-failed", "retry_failed", metavar="DISPATCH",
              help="Queue DISPATCH's failed recipients again first (after fixing the cause); its edition date is the default --date.")
@click.option("--new-ledger", is_flag=True,
              help="Start over with a new ledger although this one was used before and is gone or replaced (everyone may get it again).")
@pass_context
def send(app: Context, day: date | None, file: Path | None, lists: tuple[str, ...], to: tuple[str, ...],
         urgent: bool, by: str | None, dry_run: bool, wait_minutes: float, retry_failed: str | None,
         new_ledger: bool) -> None:
    """Send the edition to its lists, resuming an interrupted dispatch of the same edition.

    Recipients: --to addresses; else --list lists; else the edition's 'lists'; else
    every list in 'schedules'. Nobody already accepted is sent to again. An edition
    goes out only when approved (config 'approval'), and only as it was first sent:
    a changed file needs 'revision: N+1' and 'correction:'. An urgent message is
    identified by its content: a changed file is a new dispatch.

    Ctrl-C (SIGINT) or SIGTERM stops: nothing more is started, the messages in flight
    are finished and recorded, and the same command resumes.

    Exit codes: 0 all accepted; 1 invalid input or not sendable (nothing sent);
    3 some recipients failed or are still deferred; 130/143 stopped by SIGINT/SIGTERM.
    """
    from dispatch import app as application
    from dispatch.pipeline import StoppableClock

    if urgent and file is None:
        raise click.UsageError("--urgent needs --file MESSAGE.md")
    stop = threading.Event()
    received = _stop_on_signals(stop)
    settings = app.settings
    now = app.now()
    if retry_failed and day is None and file is None:
        try:
            day = date.fromisoformat(retry_failed[:10])
        except ValueError:
            raise click.BadParameter(f"{retry_failed!r} is not a dispatch name like 2024-11-17.r1.edition",
                                     param_hint="--retry-failed") from None
    try:
        edition = application.read_edition(settings, app.day(day) if file is None else day, file, now, urgent=urgent)
        if new_ledger and not dry_run:
            application.start_new_ledger(settings)
        ready = application.prepare_edition(settings, edition, now, lists=lists, to=to)
        application.secrets_ready(settings)
        decision = application.decide_now(settings, ready, now)
    except LedgerError as exc:
        _fail(exc, EXIT_INCOMPLETE)  # the ledger, not the input: whoever waits still waits
    except DispatchError as exc:
        _fail(exc)
    for problem in ready.resolution.problems:
        click.echo(str(problem), err=True)
    for note in decision.notes:
        click.echo(note, err=True)
    total = len(ready.resolution.recipients)
    target = ", ".join(ready.lists) if ready.lists else ", ".join(to)
    exit_code = EXIT_INCOMPLETE if ready.resolution.problems else EXIT_OK
    if dry_run:
        for line in _dry_run_lines(settings, ready, decision, total, target):
            click.echo(line, err=True)
        sys.exit(exit_code)

    click.echo(f"{decision.name}: content {decision.content.short}"
               + (f", {decision.verdict.reason}" if decision.verdict else ""), err=True)
    if ready.lists and not lists and ready.edition.revision > 1 and ready.edition.lists is None:
        click.echo(f"correction: to the lists the earlier revision went to: {', '.join(ready.lists)}", err=True)
    click.echo(_plan_line(decision.to_send, settings.transport, decision.already_accepted), err=True)
    progress, finish = _progress(decision.to_send)
    try:
        result = application.send(settings, ready, StoppableClock(stop), created_by=by, progress=progress,
                                  linger=timedelta(minutes=wait_minutes), stop=stop, by_hand=True,
                                  retry_failed=retry_failed)
    except DispatchError as exc:
        finish()
        _fail(exc, EXIT_INPUT if isinstance(exc, InputError) else EXIT_INCOMPLETE)
    finish()
    counts = result.counts
    waiting = counts["deferred"] + counts["unknown"] + counts["pending"]
    if result.revoked:
        click.echo(f"stopped: the approval was revoked while sending; {result.sent_now} sent now, {waiting} not sent. "
                   "They get it only after a new approval and the same command.", err=True)
        sys.exit(EXIT_INCOMPLETE)
    if stop.is_set():
        signum = received[0] if received else signal.SIGINT
        click.echo(f"stopped: {result.sent_now} sent now, {waiting} left; run the same command to resume", err=True)
        sys.exit(128 + int(signum))
    if not result.created and result.already_sent:
        if result.sent_now == 0 and result.complete:
            click.echo(f"{result.dispatch}: everyone already has this message: all {result.already_sent} "
                       "recipients were accepted earlier; nothing sent", err=True)
        else:
            click.echo(f"{result.dispatch}: resumed; {result.already_sent} were already accepted before this run", err=True)
    elif result.created:
        click.echo(f"{result.dispatch}: new dispatch", err=True)
    for note in result.notes[len(decision.notes):]:
        click.echo(note, err=True)
    for error in result.errors:
        if error != result.session_error:
            click.echo(f"error: {error}", err=True)
    click.echo(
        f"{result.dispatch}: sent {result.sent_now} now; totals: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        err=True,
    )
    if result.session_error is not None:
        if result.session_permanent:
            click.echo(f"error: {result.session_error}\nThe relay refused the session, not any recipient: nobody has "
                       f"failed because of it; the {waiting} not yet delivered wait. Fix the cause, then run the same "
                       "command (serve retries every 10 minutes until the schedule's deadline).", err=True)
        else:
            click.echo(f"error: no working connection to the relay: {result.session_error}; the {waiting} not yet "
                       "delivered wait (run the same command again, or let serve retry)", err=True)
    if result.paused_until is not None and result.session_error is None:
        click.echo(f"the relay's sending quota is used up; paused until {result.paused_until.astimezone(settings.timezone):%H:%M}", err=True)
    if not result.complete:
        when = f"; next attempt {result.next_attempt.astimezone(settings.timezone):%Y-%m-%d %H:%M} (run send again, or let serve retry)" if waiting and result.next_attempt else ""
        click.echo(f"{counts['failed']} failed, {waiting} not yet delivered{when}; see: dispatch status {result.dispatch}", err=True)
    sys.exit(exit_code if result.complete else EXIT_INCOMPLETE)


def _stop_on_signals(stop: threading.Event) -> list[int]:
    """SIGINT and SIGTERM set ``stop`` instead of killing the process: the send claims
    nothing more, finishes and records the messages in flight, and exits 130 or 143."""
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if not received:
            click.echo("\nstopping: no new messages; finishing and recording those in flight", err=True)
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    return received


def _dry_run_lines(settings: Any, ready: Any, decision: Any, total: int, target: str) -> list[str]:
    """What the send would do, beside sending: which dispatch, how many, publish, summary."""
    from dispatch import app as application

    have = decision.already_accepted
    lines = [f"dry run: {decision.name} (content {decision.content.short}"
             + (f"; {decision.verdict.reason}" if decision.verdict else "") + ")"]
    if decision.existing is None:
        lines.append(f"would send {ready.rendered.subject!r} to {total} recipients ({target}) as a new dispatch")
    elif decision.to_send == 0:
        lines.append(f"everyone already has it: {have} recipients were accepted earlier; nothing would be sent")
    else:
        lines.append(f"would send {ready.rendered.subject!r} to {decision.to_send} recipient(s) ({target}) who do not "
                     f"have it yet; {have} already do ({decision.name})")
    if ready.resolution.invalid:
        lines.append(f"would record {len(ready.resolution.invalid)} invalid list entr"
                     f"{'y' if len(ready.resolution.invalid) == 1 else 'ies'} as failed (exit 3)")
    finished = decision.existing is not None and decision.existing.finished_at is not None
    if application.publishes_on_send(settings, ready.edition) and not ready.test and not finished:
        lines.append(f"would publish {settings.publish.dir / (ready.edition.date.isoformat() + '.html')} and the archive index")
    if settings.notify and not ready.test and not finished:
        lines.append(f"would mail a completion summary to {', '.join(settings.notify)}")
    lines.append("nothing sent")
    return lines


def _plan_line(recipients: int, transport: Any, already: int = 0) -> str:
    """What is about to happen and how long it should take, before the first message."""
    skipped = f"; {already} already have it" if already else ""
    if transport.kind == "maildir":
        return f"plan: {recipients} recipients into the Maildir {transport.path}{skipped}"
    per_message = transport.recipients_per_message
    messages = -(-recipients // per_message)
    line = (f"plan: {recipients} recipients in {messages} messages"
            f"{f' of up to {per_message} recipients (Bcc)' if per_message > 1 else ''}"
            f" over {transport.connections} connection(s) to {transport.host}:{transport.port}")
    if transport.rate_per_minute:
        minutes = messages / transport.rate_per_minute
        line += f" at {transport.rate_per_minute:g}/min: about {_duration(minutes * 60)}"
    return line + (skipped or " (recipients already accepted are skipped)")


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
@click.argument("dispatch", required=False, metavar="[DISPATCH|DATE]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_context
def status(app: Context, dispatch: str | None, as_json: bool) -> None:
    """Show the latest dispatch (or DISPATCH, or the latest of DATE): counts per state,
    content hash, approval, and each recipient not yet delivered.

    Exits 0; 1 when the named dispatch or date has none.
    """
    from dispatch import app as application

    ledger = _ledger(app)
    try:
        record = application.find_dispatch(ledger, dispatch)
        if record is None:
            if as_json:
                click.echo(json.dumps({"dispatch": None, "counts": {}, "recipients": []}))
            if dispatch:
                click.echo(f"error: no dispatch {dispatch!r}; 'dispatch history' lists them all", err=True)
                sys.exit(EXIT_INPUT)
            click.echo("no dispatch yet", err=True)
            sys.exit(EXIT_OK)
        counts = ledger.counts(record.id)
        rows = ledger.rows(record.id)
        # Every dispatch of the same edition date: revisions, urgent messages, test sends.
        related = [
            {"dispatch": other.name, "revision": other.revision, "kind": other.kind,
             "content_hash": other.content_hash, "created_by": other.created_by,
             "created_at": _iso(other.created_at), "counts": ledger.counts(other.id)}
            for other in ledger.list_dispatches(date.fromisoformat(record.edition_date))
        ]
        edition_note = application.edition_note(app.settings, ledger, record, app.now())
        revoked = next((a for a in ledger.approvals(date.fromisoformat(record.edition_date))
                        if a.id == record.approval_id and a.revoked_at is not None), None)
    finally:
        ledger.close()
    if as_json:
        document = _status_json(record, counts, rows) | {"dispatches_of_date": related}
        if edition_note:
            document["edition_file"] = edition_note
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    click.echo(f"{record.name}  {record.subject}")
    click.echo(f"created {_local(record.created_at, app)} by {record.created_by or '-'}; "
               + (f"finished {_local(record.finished_at, app)}" if record.finished_at else "not finished"))
    click.echo(f"content {_short(record.content_hash)}; approved by {record.approved_by or '-'}"
               + (f" at {_local(record.approved_at, app)}" if record.approved_at else "")
               + (f"; approval revoked by {revoked.revoked_by} at {_local(revoked.revoked_at, app)}" if revoked else ""))
    if edition_note:
        click.echo(f"edition file: {edition_note}")
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


@main.command()
@click.option("--since", "since", metavar="YYYY-MM-DD", callback=_date, help="Only dispatches of editions from this date on.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_context
def history(app: Context, since: date | None, as_json: bool) -> None:
    """Every dispatch, oldest first: kind, date, revision, subject, content hash, created by,
    approved by, counts, started and finished times. Exits 0."""
    from dispatch import app as application

    ledger = _ledger(app)
    try:
        entries = application.history(ledger, since)
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps({"dispatches": entries}, ensure_ascii=False, indent=2))
        return
    if not entries:
        click.echo("no dispatches" + (f" since {since.isoformat()}" if since else ""), err=True)
        return
    for entry in entries:
        counts = entry["counts"]
        started = _local(_parse(entry["started_at"]), app)
        finished = _local(_parse(entry["finished_at"]), app) if entry["finished_at"] else "not finished"
        click.echo(f"{entry['dispatch']}  {entry['subject']}")
        click.echo(f"  content {_short(entry['content_hash'])}  by {entry['created_by'] or '-'}  approved by "
                   f"{entry['approved_by'] or '-'}  started {started}  finished {finished}")
        click.echo("  " + "  ".join(f"{state} {count}" for state, count in counts.items() if count))


@main.command()
@date_option
@click.option("--by", "by", metavar="NAME", help="Who approves; recorded as given (default: the OS user).")
@click.option("--revoke", is_flag=True, help="Revoke the standing approval(s) of the edition instead.")
@pass_context
def approve(app: Context, day: date | None, by: str | None, revoke: bool) -> None:
    """Record an approval of edition DATE's current content (or revoke it).

    The approval is bound to the content hash: any later change voids it. With
    'approval: four_eyes' in the config only such an approval, by someone other than
    the content's last editor ('by:' in the front matter, or who ran check), lets the
    edition go out. Exits 0; 1 when refused (e.g. the approver is the last editor).
    """
    from dispatch import app as application

    settings = app.settings
    now = app.now()
    who = by or application.current_user()
    if revoke:
        try:
            count = application.revoke(settings, app.day(day), who, now)
        except DispatchError as exc:
            _fail(exc)
        if not count:
            click.echo(f"error: {app.day(day).isoformat()} has no standing approval to revoke", err=True)
            sys.exit(EXIT_INPUT)
        click.echo(f"revoked {count} approval(s) of {app.day(day).isoformat()} (by {who}); "
                   "it is not sent again until it is approved again", err=True)
        for line in application.revocation_notes(settings, app.day(day)):
            click.echo(line, err=True)
        return
    try:
        edition = application.read_edition(settings, app.day(day), None, now)
        ready = application.prepare_edition(settings, edition, now)
        approval = application.approve(settings, ready, who, now)
    except DispatchError as exc:
        _fail(exc)
    click.echo(f"approved {edition.source.name} revision {approval.revision} (content {_short(approval.content_hash)}) "
               f"by {approval.approved_by} at {_local(approval.approved_at, app)}", err=True)
    if settings.approval != "four_eyes":
        click.echo("note: the config has 'approval: front_matter': the file's 'status: approved' decides; "
                   "this approval is recorded in the history", err=True)


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
    # With the offset: a reader must never have to guess whether a time is UTC or local.
    return value.astimezone(app.settings.timezone).strftime("%Y-%m-%d %H:%M:%S %z") if value else "-"


def _short(value: str | None) -> str:
    from dispatch.content import short

    return short(value)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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
        "content_hash": record.content_hash,
        "approved_by": record.approved_by,
        "approved_at": _iso(record.approved_at),
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

    Before the edition is sent, the page is built from the file (which must be approved);
    once it has been sent, from the content that was sent (the ledger keeps it), and a
    file changed since is refused with a diff. Exits 0 when published, 1 on problems.
    """
    from dispatch import app as application

    settings = app.settings
    now = app.now()
    try:
        edition = application.read_edition(settings, app.day(day), None, now)
        published, note = application.publish_checked(settings, edition, now)
    except DispatchError as exc:
        _fail(exc)
    if note:
        click.echo(note, err=True)
    click.echo(str(published.page))
    click.echo(str(published.index))


@main.command("export")
@click.argument("dispatch", metavar="DISPATCH|DATE")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: everything, content included; csv: one row per recipient.")
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write files into this directory (records, plus the source, HTML and text sent) and print their paths.")
@pass_context
def export_command(app: Context, dispatch: str, fmt: str, out: Path | None) -> None:
    """The records of one dispatch (DISPATCH as 'status --json' names it, or the latest of
    DATE): what was sent,
    to whom, with each recipient's state, reply, Message-ID and timestamps.

    To stdout unless --out. Exits 0, 1 when there is no such dispatch.
    """
    from dispatch import app as application
    from dispatch.publish import export_csv, export_document, export_files

    ledger = _ledger(app)
    try:
        record = application.find_dispatch(ledger, dispatch)
        if record is None:
            click.echo(f"error: no dispatch {dispatch!r}; 'dispatch history' lists them all", err=True)
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

"""The send command: options, the plan and progress it shows, signals, and its exit codes."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dispatch.cli.base import EXIT_INCOMPLETE, EXIT_INPUT, EXIT_OK, Context, date_option, fail, main, pass_context
from dispatch.errors import DispatchError, InputError, LedgerError
from dispatch.wording import english

if TYPE_CHECKING:
    from dispatch.app import Decision, Prepared, Settings


@main.command()
@date_option
@click.option("--file", "file", type=click.Path(path_type=Path, dir_okay=False),
              help="Send this edition or message file instead of reports/DATE.md.")
@click.option("--list", "lists", multiple=True, metavar="NAME", help="Send only to this list (repeatable).")
@click.option("--to", "to", multiple=True, metavar="ADDR",
              help="Test send to this address only (repeatable); subject gets [TEST], recorded as a test dispatch.")
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
        if new_ledger and not dry_run:
            # First: reading the edition already opens the ledger (its Nytt/Ändrat markers
            # compare with what was sent before), and would refuse the missing one.
            app.application.start_new_ledger()
        edition = application.read_edition(app.session, app.day(day) if file is None else day, file, now, urgent=urgent)
        ready = application.prepare_edition(app.session, edition, now, lists=lists, to=to)
        application.secrets_ready(settings)
        decision = application.decide_now(app.session, ready, now)
    except LedgerError as exc:
        fail(exc, EXIT_INCOMPLETE)  # the ledger, not the input: whoever waits still waits
    except DispatchError as exc:
        fail(exc)
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
               + (f", {english(decision.verdict.reason)}" if decision.verdict else ""), err=True)
    if ready.lists and not lists and ready.edition.revision > 1 and ready.edition.lists is None:
        click.echo(f"correction: to the lists the earlier revision went to: {', '.join(ready.lists)}", err=True)
    click.echo(application.plan_line(application.send_plan(decision.to_send, settings.transport, decision.already_accepted)),
               err=True)
    progress, finish = _progress(decision.to_send)
    try:
        result = application.send(app.session, ready, application.StoppableClock(stop), created_by=by, progress=progress,
                                  linger=timedelta(minutes=wait_minutes), stop=stop, by_hand=True,
                                  retry_failed=retry_failed)
    except DispatchError as exc:
        finish()
        if stop.is_set() and isinstance(exc, LedgerError):
            # Asked to stop while waiting for the ledger (a lock another node holds): nothing was sent.
            click.echo(f"stopped while waiting for the ledger ({exc}); run the same command to resume", err=True)
            sys.exit(128 + int(received[0] if received else signal.SIGINT))
        fail(exc, EXIT_INPUT if isinstance(exc, InputError) else EXIT_INCOMPLETE)
    finish()
    counts = result.counts
    waiting = counts["deferred"] + counts["unknown"] + counts["pending"]
    if result.revoked:
        click.echo(f"stopped: the approval was revoked while sending; {result.sent_now} sent now, {waiting} not sent. "
                   "They get it only after a new approval and the same command.", err=True)
        sys.exit(EXIT_INCOMPLETE)
    if result.lease_lost_at is not None:
        # Not "sent N now" for rows the ledger refused: the count is what it recorded.
        totals = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"{result.dispatch}: stopped: lease lost: this process was held up past its lease "
                   f"({settings.lease_seconds:g} s, at {result.lease_lost_at.astimezone(settings.timezone):%H:%M:%S}) "
                   f"and sent nothing more; another node takes over its recipients. {result.sent_now} recorded as "
                   f"accepted from this run; totals: {totals}", err=True)
        sys.exit(EXIT_OK if result.complete else EXIT_INCOMPLETE)
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
        until = result.paused_until.astimezone(settings.timezone)
        click.echo(f"the relay's sending quota is used up; paused until {until:%H:%M}", err=True)
    if not result.complete:
        when = ""
        if waiting and result.next_attempt:
            when = (f"; next attempt {result.next_attempt.astimezone(settings.timezone):%Y-%m-%d %H:%M} "
                    "(run send again, or let serve retry)")
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


def _dry_run_lines(settings: Settings, ready: Prepared, decision: Decision, total: int, target: str) -> list[str]:
    """What the send would do, beside sending: which dispatch, how many, publish, summary."""
    from dispatch import app as application

    have = decision.already_accepted
    lines = [f"dry run: {decision.name} (content {decision.content.short}"
             + (f"; {english(decision.verdict.reason)}" if decision.verdict else "") + ")"]
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


def _progress(total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A progress bar on a terminal; nothing otherwise (logs stay clean)."""
    if not sys.stderr.isatty() or total < 20:
        return (lambda n: None), (lambda: None)
    bar = click.progressbar(length=total, label="sending", file=sys.stderr, show_pos=True, show_eta=True)
    bar.__enter__()
    return bar.update, lambda: bar.__exit__(None, None, None)

"""The bounces command: read the bounce mailbox and record what came back, or report who
keeps bouncing."""

from __future__ import annotations

import json
import sys

import click

from dispatch.cli.base import EXIT_INCOMPLETE, Context, fail, main, pass_context
from dispatch.errors import DispatchError


@main.command("bounces")
@click.option("--report", is_flag=True, help="List addresses that bounced hard in two or more of the last dispatches, "
                                             "with the list file and line to fix (reads no mail).")
@click.option("--dispatches", "last", type=click.IntRange(min=2), default=5, show_default=True, metavar="N",
              help="How many recent dispatches --report looks at.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_context
def bounces_command(app: Context, report: bool, last: int, as_json: bool) -> None:
    """Read new messages in the bounce mailbox (config 'bounces:') and record what came back.

    A hard bounce (5.x.x) marks that recipient 'bounced' with the server's status and words;
    a soft one (4.x.x, delayed) is noted. With sender.verp only a valid VERP token marks
    anybody; a bounce without one is noted as unverified. Bounces and automatic replies move
    to the processed folder; a reply from a person, and a bounce that proves nothing or
    matches no recipient, stay unread where they are, flagged, and later runs read past them.
    A message over bounces.max_message_bytes, or nested too deep to read, moves to the
    quarantine folder. The newest messages are read first. Running it again changes nothing.
    Nobody is removed from a list.

    Exit codes: 0 done; 1 no bounce mailbox configured; 3 the mailbox cannot be read
    (nothing was moved or flagged; a later run records nothing twice).
    """
    from dispatch import app as application

    settings = app.settings
    if report:
        try:
            repeats = application.repeat_bouncers(app.session, last)
        except DispatchError as exc:
            fail(exc)
        if as_json:
            click.echo(json.dumps({"dispatches": last, "addresses": [
                {"email": r.address, "dispatches": r.dispatches, "lists": r.where} for r in repeats]}, ensure_ascii=False,
                indent=2))
            return
        if not repeats:
            click.echo(f"nobody bounced hard in two or more of the last {last} dispatches", err=True)
        for repeat in repeats:
            where = ", ".join(repeat.where) or "on no list now"
            click.echo(f"{repeat.address}: bounced in {len(repeat.dispatches)} of the last {last} dispatches "
                       f"({', '.join(repeat.dispatches)}); fix or remove it at {where}")
        return
    try:
        run = application.process_bounces(app.session, app.now())
    except application.MailboxError as exc:
        fail(exc, EXIT_INCOMPLETE, summary="nothing was moved or flagged")
    except DispatchError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(run.document(), ensure_ascii=False, indent=2))
        return
    box = settings.bounces
    folder = box.folder if box else "INBOX"
    processed = (box.processed_folder if box else None) or "Processed"
    quarantine = box.quarantine_folder if box else "Quarantine"
    for uid, reason in run.quarantined:
        click.echo(f"skipped message UID {uid} in {folder}: {reason}; moved to {quarantine}", err=True)
    for dispatch, address, reply in run.bounced:
        click.echo(f"{dispatch}: {address} bounced: {reply}")
    click.echo(f"read {run.read}: {run.hard} hard bounce(s) recorded, {run.soft} soft noted, {run.auto_replies} automatic "
               f"repl(ies), {run.already} already recorded; {run.moved} moved to {processed}, {len(run.quarantined)} to "
               f"{quarantine}; {run.human} from people, {run.unverified} unverified and {run.unmatched} unmatched left unread "
               f"and flagged in {folder}", err=True)
    sys.exit(0)

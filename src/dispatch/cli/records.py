"""Commands that read what there is: status, history, export (the recipient lists: cli/lists.py)."""

from __future__ import annotations

import collections
import json
import sys
from datetime import date
from pathlib import Path

import click

from dispatch import wording
from dispatch.cli.base import EXIT_INPUT, EXIT_OK, Context, fail, local, main, parse_date, parse_time, pass_context, short
from dispatch.errors import DispatchError
from dispatch.values import Fact
from dispatch.wording import english


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

    try:
        found = application.status(app.session, dispatch, app.now())
    except DispatchError as exc:
        fail(exc)
    if found is None:
        if as_json:
            click.echo(json.dumps({"dispatch": None, "counts": {}, "recipients": []}))
        if dispatch:
            click.echo(f"error: no dispatch {dispatch!r}; 'dispatch history' lists them all", err=True)
            sys.exit(EXIT_INPUT)
        click.echo("no dispatch yet", err=True)
        sys.exit(EXIT_OK)
    if as_json:
        click.echo(json.dumps(found.document(), ensure_ascii=False, indent=2))
        return
    record, counts, rows, revoked, edition_note = found.record, found.counts, found.rows, found.revoked, found.edition_note
    click.echo(f"{record.name}  {record.subject}")
    click.echo(f"created {local(record.created_at, app)} by {record.created_by or '-'}; "
               + (f"finished {local(record.finished_at, app)}" if record.finished_at else "not finished"))
    approver = english(Fact.of("approval.by_front_matter")) if record.by_front_matter else record.approved_by
    click.echo(f"content {short(record.content_hash)}; approved by {approver or '-'}"
               + (f" at {local(record.approved_at, app)}" if record.approved_at else "")
               + (f"; approval revoked by {revoked.revoked_by} at {local(revoked.revoked_at, app)}" if revoked else ""))
    if edition_note:
        click.echo(f"edition file: {wording.english(edition_note)}")
    click.echo("  ".join(f"{state}: {count}" for state, count in counts.items()))
    nodes = collections.Counter(row["node"].split(":")[0] for row in rows if row["state"] == "sent" and row["node"])
    if len(nodes) > 1:
        click.echo("sent by: " + ", ".join(f"{node} {count}" for node, count in nodes.most_common()))
    others = [r for r in found.related if r["dispatch"] != record.name]
    if others:
        click.echo(f"other dispatches of {record.edition_date}:")
        for other in others:
            click.echo(f"  {other['dispatch']}  by {other['created_by'] or '-'}  sent {other['counts']['sent']}"
                       f", failed {other['counts']['failed']}")
    for row in rows:
        if row["state"] != "sent":
            click.echo(f"  {row['state']:<8} {row['address']}  attempts {row['attempts']}  {row['reply']}")


@main.command()
@click.option("--since", "since", metavar="YYYY-MM-DD", callback=parse_date, help="Only dispatches of editions from this date on.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_context
def history(app: Context, since: date | None, as_json: bool) -> None:
    """Every approval, then every dispatch, oldest first: kind, date, revision, subject,
    content hash, created by, approved by, counts, started and finished times. With --json,
    {"dispatches": [...], "approvals": [...]}. Exits 0."""
    from dispatch import app as application

    try:
        entries = application.history(app.session, since)
        approvals = application.approval_history(app.session, since)
    except DispatchError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps({"dispatches": entries, "approvals": approvals}, ensure_ascii=False, indent=2))
        return
    for approval in approvals:
        revoked = (f", revoked by {approval['revoked_by']} {local(parse_time(approval['revoked_at']), app)}"
                   if approval["revoked_at"] else "")
        click.echo(f"approval of {approval['edition']} r{approval['revision']} (content {short(approval['content_hash'])}) "
                   f"by {approval['approved_by']} {local(parse_time(approval['approved_at']), app)}{revoked}")
    if not entries:
        click.echo("no dispatches" + (f" since {since.isoformat()}" if since else ""), err=True)
        return
    for entry in entries:
        counts = entry["counts"]
        started = local(parse_time(entry["started_at"]), app)
        finished = f"finished {local(parse_time(entry['finished_at']), app)}" if entry["finished_at"] else "not finished"
        click.echo(f"{entry['dispatch']}  {entry['subject']}")
        click.echo(f"  content {short(entry['content_hash'])}  by {entry['created_by'] or '-'}  approved by "
                   f"{entry['approved_by'] or '-'}  started {started}  {finished}")
        click.echo("  " + "  ".join(f"{state} {count}" for state, count in counts.items() if count))
        if entry["snapshots"]:
            click.echo("  directory lists: " + ", ".join(f"{name} snapshot {ref}" for name, ref in entry["snapshots"].items()))


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

    try:
        document = application.export(app.session, dispatch)
    except DispatchError as exc:
        fail(exc)
    if document is None:
        click.echo(f"error: no dispatch {dispatch!r}; 'dispatch history' lists them all", err=True)
        sys.exit(EXIT_INPUT)
    if not document["contents"]:
        click.echo(f"warning: {document['dispatch']} was sent before dispatch kept the content it sends; "
                   f"its source file was {document['source']}", err=True)
    if out is not None:
        try:
            paths = application.export_files(document, fmt, out)
        except OSError as exc:
            click.echo(f"error: {out}: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_INPUT)
        for path in paths:
            click.echo(str(path))
    elif fmt == "csv":
        click.echo(application.export_csv(document), nl=False)
    else:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))

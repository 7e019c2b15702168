"""The recipient lists: `recipients [LIST]...` (what a send would resolve them to), and for
directory lists `recipients sync`, `recipients diff` and `recipients accept`.

Exit codes: `recipients` 0, 1 on problems; `sync` 0 when every list was accepted, 3 when a
list is held by the shrink guard or its directory failed (sends go on with the last accepted
snapshot), 1 on a name that is no directory list; `diff` 0, 1 on an unknown list; `accept` 0,
1 when nothing is held.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dispatch.cli.base import EXIT_INCOMPLETE, EXIT_INPUT, EXIT_OK, Context, fail, local, main, pass_context
from dispatch.errors import DispatchError
from dispatch.wording import english

SUBCOMMANDS_HELP = "sync, diff and accept are for directory lists (source: in the list file)."


class ListsOrCommand(click.Group):
    """`dispatch recipients [LIST]...` as before, beside `dispatch recipients sync|diff|accept`:
    words that are not a subcommand are list names for the listing (a list called "sync" is
    listed with `dispatch recipients show sync`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@main.group("recipients", cls=ListsOrCommand, epilog=SUBCOMMANDS_HELP)
def recipients_group() -> None:
    """Show the resolved recipients of each LIST (default: every list in 'schedules'):
    `dispatch recipients [LIST]... [--json] [--members]`; and sync directory lists.

    Per list: display name, members after folding duplicates and removing suppressed
    addresses, how many were suppressed, overlaps between lists; a directory list shows its
    last accepted snapshot. Problems go to stderr as path:line: message. Exits 0 when all
    entries are valid, 1 otherwise.
    """


@recipients_group.command("show", hidden=True)
@click.argument("names", nargs=-1, metavar="[LIST]...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--members", "show_members", is_flag=True, help="Also list each member (address and name).")
@pass_context
def recipients_command(app: Context, names: tuple[str, ...], as_json: bool, show_members: bool) -> None:
    """Show the resolved recipients of each LIST (default: every list in 'schedules')."""
    from dispatch import app as application

    try:
        report = application.lists_report(app.settings, names, app.session)
    except DispatchError as exc:
        fail(exc)
    names, resolution, problems = report.names, report.resolution, report.problems
    for problem in problems:
        click.echo(str(problem), err=True)
    views = [resolution.lists[n] for n in names if n in resolution.lists] if resolution else []
    overlaps = resolution.overlaps(names) if resolution else {}
    people = resolution.recipients if resolution else {}

    def member_rows(view: Any) -> list[dict[str, str]]:
        return [{"email": people[key].address, "name": people[key].name} for key in view.members]

    if as_json:
        document: dict[str, Any] = {
            "lists": [
                {
                    "list": view.name, "name": view.display_name, "path": view.path,
                    "members": len(view.members), "suppressed": len(view.suppressed),
                    "invalid": view.invalid, "includes": view.includes,
                    **({"snapshot": str(report.snapshots[view.name])} if view.name in report.snapshots else {}),
                    **({"addresses": member_rows(view)} if show_members else {}),
                }
                for view in views
            ],
            "recipients": len(people),
            "invalid": len(resolution.invalid) if resolution else 0,
            "overlaps": [{"lists": [a, b], "shared": shared} for (a, b), shared in overlaps.items()],
            "problems": [{"path": p.path, "line": p.line, "message": p.message} for p in problems],
        }
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        width = max((len(view.name) for view in views), default=0)
        for view in views:
            extra = f", includes {', '.join(view.includes)}" if view.includes else ""
            snapshot = f", snapshot {report.snapshots[view.name]}" if view.name in report.snapshots else ""
            click.echo(f"{view.name:<{width}}  {view.display_name}: {len(view.members)} members, "
                       f"{len(view.suppressed)} suppressed, {view.invalid} invalid ({view.path}{snapshot}{extra})")
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


def left_out(disabled: int, without_mail: int, invalid: int) -> str:
    parts = [f"{count} {what}" for count, what in ((disabled, "disabled"), (without_mail, "without mail"),
                                                   (invalid, "with an unusable address")) if count]
    return f" ({', '.join(parts)} left out)" if parts else ""


@recipients_group.command("sync")
@click.argument("names", nargs=-1, metavar="[LIST]...")
@pass_context
def sync_command(app: Context, names: tuple[str, ...]) -> None:
    """Read each directory LIST (default: every directory list) from its directory and keep
    it as a snapshot. A sync that fails, comes back empty, or comes back smaller than the last
    accepted snapshot by more than the list's max_shrink is held: sends keep using the last
    accepted snapshot until 'dispatch recipients accept LIST' (see 'dispatch recipients diff LIST').

    Exits 0 when every list was accepted (or unchanged); 3 when a list is held or its
    directory failed; 1 when a name is no directory list.
    """
    from dispatch import app as application

    try:
        outcomes = application.sync(app.session, names, app.now())
    except DispatchError as exc:
        fail(exc, summary="nothing was synced")
    if not outcomes:
        click.echo("no directory lists to sync (a list file names its directory with 'source:')", err=True)
    troubled = False
    for outcome in outcomes:
        name, snapshot, accepted = outcome.spec.name, outcome.snapshot, outcome.accepted
        using = f"sends use snapshot {accepted.ref}" if accepted is not None else "nothing can be sent to this list yet"
        if snapshot.state is application.SnapshotState.FAILED:
            troubled = True
            reason = english(snapshot.reason) if snapshot.reason else "unknown"
            click.echo(f"{name}: sync failed: {reason}; {using}", err=True)
            continue
        counts = left_out(snapshot.disabled, snapshot.without_mail, snapshot.invalid)
        changed = outcome.change
        delta = f"; {len(changed.added)} added, {len(changed.removed)} removed" if changed is not None else ""
        if snapshot.state is application.SnapshotState.HELD:
            troubled = True
            reason = english(snapshot.reason) if snapshot.reason else ""
            again = "" if outcome.new else " (unchanged since the last sync)"
            click.echo(f"{name}: held snapshot {snapshot.ref}{again}: {snapshot.members} members{counts}{delta}: {reason}; "
                       f"{using}; see 'dispatch recipients diff {name}', then 'dispatch recipients accept {name} --by NAME'",
                       err=True)
        elif not outcome.new:
            click.echo(f"{name}: unchanged, snapshot {snapshot.ref}: {snapshot.members} members{counts}")
        else:
            click.echo(f"{name}: accepted snapshot {snapshot.ref}: {snapshot.members} members{counts}{delta}")
            if changed is not None:
                for member in changed.added:
                    click.echo(f"  + {member.address}" + (f"  {member.name}" if member.name else ""))
                for member in changed.removed:
                    click.echo(f"  - {member.address}" + (f"  {member.name}" if member.name else ""))
        for mail, where, why in outcome.invalid[:20]:
            click.echo(f"warning: {name}: {where}: {mail!r} cannot be sent to: {english(why)}", err=True)
        if len(outcome.invalid) > 20:
            click.echo(f"warning: {name}: {len(outcome.invalid) - 20} more unusable address(es)", err=True)
    sys.exit(EXIT_INCOMPLETE if troubled else EXIT_OK)


@recipients_group.command("diff")
@click.argument("name", metavar="LIST")
@pass_context
def diff_command(app: Context, name: str) -> None:
    """Who was added and removed (address and name): the held change against the last
    accepted snapshot, or with nothing held, what the last accepted snapshot changed.
    Exits 0; 1 when LIST is no directory list."""
    from dispatch import app as application

    try:
        found = application.list_diff(app.session, name)
    except DispatchError as exc:
        fail(exc, summary="nothing to compare")
    accepted, held = found.accepted, found.held
    if held is not None:
        base = (f"accepted snapshot {accepted.ref} ({accepted.members} members, {local(accepted.taken_at, app)})"
                if accepted is not None else "nothing accepted yet")
        reason = f": {english(held.reason)}" if held.reason else ""
        click.echo(f"{name}: held snapshot {held.ref} ({held.members} members, {local(held.taken_at, app)}) "
                   f"against {base}{reason}")
    elif accepted is not None:
        since = f"snapshot {found.previous.ref}" if found.previous is not None else "nothing (the first sync)"
        click.echo(f"{name}: nothing held; accepted snapshot {accepted.ref} ({accepted.members} members, "
                   f"{local(accepted.taken_at, app)}) against {since}")
    else:
        click.echo(f"{name}: no snapshot yet; run 'dispatch recipients sync {name}'")
    for member in found.change.added:
        click.echo(f"+ {member.address}" + (f"  {member.name}" if member.name else ""))
    for member in found.change.removed:
        click.echo(f"- {member.address}" + (f"  {member.name}" if member.name else ""))
    click.echo(f"{len(found.change.added)} added, {len(found.change.removed)} removed")


@recipients_group.command("accept")
@click.argument("name", metavar="LIST")
@click.option("--by", "by", metavar="NAME", default=None, help="Who accepts it, as recorded (default: the OS user).")
@pass_context
def accept_command(app: Context, name: str, by: str | None) -> None:
    """Accept LIST's held snapshot: sends use it from now on. Recorded in the audit log
    with who accepted it. Exits 0; 1 when nothing is held (or LIST is no directory list)."""
    from dispatch import app as application

    who = by or application.current_user()
    try:
        done = application.accept(app.session, name, who, app.now())
    except DispatchError as exc:
        fail(exc, summary="nothing accepted")
    if done is None:
        click.echo(f"error: {name}: no held change to accept ('dispatch recipients diff {name}' shows the last one)", err=True)
        sys.exit(EXIT_INPUT)
    snapshot = done.snapshot
    click.echo(f"{name}: snapshot {snapshot.ref} accepted by {who}: {snapshot.members} members "
               f"({len(done.change.added)} added, {len(done.change.removed)} removed); sends use it from now on")

"""Commands about an edition before and around sending: check, preview, approve, publish."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from dispatch.cli.base import (
    EXIT_INPUT,
    EXIT_OK,
    Context,
    date_option,
    fail,
    file_option,
    local,
    main,
    pass_context,
    short,
    urgent_option,
)
from dispatch.errors import DispatchError
from dispatch.wording import english


@main.command()
@date_option
@file_option
@urgent_option
@pass_context
def check(app: Context, day: date | None, file: Path | None, urgent: bool) -> None:
    """Validate config, recipient lists and the edition; render it and run the pre-flight checks.

    Prints each problem as path:line: message, then where the edition stands: a draft,
    not yet approved (and why), approved, or already sent; and, for an edition whose
    'compiled' time is still to come, when it can be sent. Records nothing: only the
    front matter's 'by' and saves in the console make someone an edition's editor.

    Exit codes: 0 the edition is valid (it may still await approval or its time: read
    the last lines); 1 problems, or the edition was changed after it was sent.
    """
    from dispatch import app as application

    if urgent and file is None:
        raise click.UsageError("--urgent needs --file MESSAGE.md")
    settings = app.settings
    now = app.now()
    try:
        ready, problems = application.check_edition(app.session, app.day(day) if file is None else day, file, now, urgent=urgent)
    except DispatchError as exc:
        if file is not None and not urgent and application.looks_urgent(file):
            click.echo(f"{file}: this looks like an urgent message (a subject, no 'compiled'): check it with --urgent", err=True)
        fail(exc, summary="found")
    edition = ready.edition
    for problem in problems:
        click.echo(str(problem), err=True)
    for warning in application.accessibility_warnings(settings):
        click.echo(f"warning: {warning}", err=True)
    too_long = application.long_subject(settings, ready)
    if too_long is not None:
        advice = {"headline": "shorten the headline", "subject": "shorten it, or put the news first"}.get(
            too_long.source, "put the news first, e.g. with 'headline:' in the edition")
        click.echo(f"warning: {too_long.path}:{too_long.line}: the subject {too_long.subject!r} is {too_long.length} characters; "
                   f"an inbox shows about {too_long.limit} (a phone about 35): {advice}", err=True)
    try:  # directory lists: how old the snapshot each one resolved to is (the ledger's; no directory read)
        for note in application.snapshot_notes(app.session, ready.snapshots, now):
            click.echo(f"note: {english(note)}", err=True)
    except DispatchError as exc:
        fail(exc)
    unmeasured = application.phone_check_unavailable()
    if unmeasured:
        click.echo(f"note: not measured at a phone's width: {unmeasured}", err=True)
    try:
        # Whoever runs check has not written the text by doing so (recording the OS user made
        # them an editor, who then could not approve it); the author the file names has, and is
        # remembered for this content, so that changing 'by' afterwards hides nobody.
        found = application.review_now(app.session, edition, now, record_author=edition.author or None)
    except DispatchError as exc:
        fail(exc)
    if found.conflict is not None:
        fail(found.conflict)
    count = len(ready.resolution.recipients)
    click.echo(
        f"{edition.source.name}: {len(edition.sections)} sections, "
        f"{count} recipients on {', '.join(ready.lists)}, HTML {len(ready.rendered.html.encode()) / 1024:.1f} KB, "
        f"content {found.content.short}"
        + (f"; {len(problems)} problem(s)" if problems else ""),
        err=True,
    )
    click.echo(f"{edition.source.name}: {found.standing(edition)}", err=True)
    early = application.too_early(settings, edition, now)
    if early is not None and found.sent is None:
        click.echo(f"note: {english(early.note)}", err=True)
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
        edition = application.read_edition(app.session, app.day(day) if file is None else day, file, now, urgent=urgent)
        ready = application.prepare_edition(app.session, edition, now)
        paths = application.write_preview(settings, ready, out, screenshots=screenshots)
    except DispatchError as exc:  # also headless Chromium missing, with how to install it
        fail(exc)
    for path in paths:
        click.echo(str(path))
    for problem in ready.resolution.problems:
        click.echo(str(problem), err=True)
    sys.exit(EXIT_INPUT if ready.resolution.problems else EXIT_OK)


@main.command()
@date_option
@click.option("--by", "by", metavar="NAME", help="Who approves; recorded as given (default: the OS user).")
@click.option("--revoke", is_flag=True, help="Revoke the standing approval(s) of the edition instead.")
@pass_context
def approve(app: Context, day: date | None, by: str | None, revoke: bool) -> None:
    """Record an approval of edition DATE's current content (or revoke it).

    The approval is bound to the content hash: any later change voids it. With
    'approval: four_eyes' in the config only such an approval, by someone other than
    the content's last editor ('by:' in the front matter, or who saved it in the
    console; with neither, the OS user running approve is taken as its editor), lets the
    edition go out. Exits 0; 1 when refused (e.g. the approver is the last editor).
    """
    from dispatch import app as application

    settings = app.settings
    now = app.now()
    who = by or application.current_user()
    if revoke:
        try:
            count = application.revoke(app.session, app.day(day), who, now)
        except DispatchError as exc:
            fail(exc)
        if not count:
            click.echo(f"error: {app.day(day).isoformat()} has no standing approval to revoke", err=True)
            sys.exit(EXIT_INPUT)
        click.echo(f"revoked {count} approval(s) of {app.day(day).isoformat()} (by {who}); "
                   "it is not sent again until it is approved again", err=True)
        for line in application.revocation_notes(app.session, app.day(day)):
            click.echo(line, err=True)
        return
    try:
        edition = application.read_edition(app.session, app.day(day), None, now)
        ready = application.prepare_edition(app.session, edition, now)
        approval = application.approve(app.session, ready, who, now)
    except DispatchError as exc:
        fail(exc)
    click.echo(f"approved {edition.source.name} revision {approval.revision} (content {short(approval.content_hash)}) "
               f"by {approval.approved_by} at {local(approval.approved_at, app)}", err=True)
    if settings.approval != "four_eyes":
        click.echo("note: the config has 'approval: front_matter': the file's 'status: approved' decides; "
                   "this approval is recorded in the history", err=True)


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

    now = app.now()
    try:
        edition = application.read_edition(app.session, app.day(day), None, now)
        published, note = application.publish_checked(app.session, edition, now)
    except DispatchError as exc:
        fail(exc)
    if note:
        click.echo(note, err=True)
    click.echo(str(published.page))
    click.echo(str(published.index))

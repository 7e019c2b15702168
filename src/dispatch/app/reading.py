"""Reading an edition file: the one reader of edition files (and of the config's subject and
preheader templates on their way into one), with what is new since the edition its readers
got before. Apart from the rest of ``editions`` (resolve, render, pre-flight) so that a command
that only reads an edition, as ``status`` does to say whether its file still holds what was
sent, loads neither the renderer nor the transports (issue 34)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from dispatch.app.application import Session
from dispatch.app.changes import with_news
from dispatch.email.edition import assemble, edition_path
from dispatch.errors import InputError, Problem, display_path
from dispatch.models import Edition


def read_edition(s: Session, day: date | None, file: Path | None, now: datetime, urgent: bool = False) -> Edition:
    # Imported here: this function is the one reader of edition files (and of the config's
    # templates on their way into one), and the only part of this module that needs these.
    from dispatch.config.yamlsource import EDITION_MAX_BYTES, read_input
    from dispatch.email.subject import check_template

    settings = s.settings
    path = file if file is not None else edition_path(settings.reports_dir, day or now.date())
    # The config's subject and preheader templates, named at their lines in the config
    # (assemble() only knows the edition file); checked, not rendered.
    config_problems = [
        problem
        for key in ("subject", "headline_subject", "preheader")
        for problem in check_template(
            getattr(settings.report, key), display_path(settings.path),
            settings.line_of.get(f"report.{key}", 1), f"report.{key}",
        )
    ]
    if config_problems:
        raise InputError(config_problems)
    try:
        # A regular file (not a symbolic link, FIFO or device) of at most
        # EDITION_MAX_BYTES, also for --file: an urgent message is an edition here.
        text = read_input(
            path, limit=EDITION_MAX_BYTES, what="an edition",
            advice="an edition is text (pictures belong on the intranet, linked); check that this is the right file",
        )
    except FileNotFoundError:
        if file is None:
            # Line 0: a file that does not exist has no line to point at.
            raise InputError([Problem.of(display_path(path), 0, "edition.no_file", day=(day or now.date()).isoformat(),
                                         file=display_path(path))]) from None
        raise InputError([Problem.of(display_path(path), 0, "edition.no_file_at_path")]) from None
    # What is new since the edition its readers got before, from the ledger: every reader of
    # an edition file (check, approve, send, serve, the console) sees the same markers.
    return with_news(s, assemble(path, text, settings.report, now, urgent=urgent))

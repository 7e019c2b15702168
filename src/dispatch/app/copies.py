"""The intranet copies the service still owes, written again until they are written.

A send never waits for its intranet copy (app.sending): when the copy cannot be written (a
full disk, a read-only mount), the mail goes out, the service alerts once and keeps the
edition here, and its watch job tries again (at least once a minute), so the page appears once
there is room without anybody running `dispatch publish`.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime

from dispatch.app.control import publish
from dispatch.app.eventlog import event
from dispatch.app.timetable import DispatchList, edition_dispatches
from dispatch.config import Settings
from dispatch.errors import display_path
from dispatch.models import Edition
from dispatch.publishing.intranet import Published, PublishError


class PendingCopies:
    """Editions whose intranet copy failed, by edition day (the latest revision that failed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[date, Edition] = {}
        self.errors: dict[date, str] = {}  # the last error per day, so a retry logs only a change

    def add(self, edition: Edition, error: str) -> None:
        with self.lock:
            self.waiting[edition.date] = edition
            self.errors[edition.date] = error

    def days(self) -> list[date]:
        with self.lock:
            return sorted(self.waiting)

    def _drop(self, day: date) -> None:
        with self.lock:
            self.waiting.pop(day, None)
            self.errors.pop(day, None)

    def retry(self, settings: Settings, ledger: DispatchList, now: datetime) -> list[Published]:
        """Write each owed copy again; returns those written now."""
        with self.lock:
            waiting = dict(self.waiting)
        written = []
        for day, edition in waiting.items():
            # A correction sent (and published) since: this older revision must not replace it.
            if any(d.revision > edition.revision for d in edition_dispatches(ledger, day)):
                self._drop(day)
                event("publish_superseded", edition=day.isoformat(), revision=edition.revision)
                continue
            try:
                published = publish(settings, edition, now)
            except PublishError as exc:
                with self.lock:
                    changed, self.errors[day] = self.errors.get(day) != str(exc), str(exc)
                if changed:
                    event("publish_retry_failed", logging.WARNING, edition=day.isoformat(), error=str(exc))
                continue
            self._drop(day)
            event("published", edition=day.isoformat(), page=display_path(published.page), retried=True)
            written.append(published)
        return written

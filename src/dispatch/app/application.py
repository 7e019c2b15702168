"""The application and its units of work.

``App(settings, clock)`` is made once per process (the command line per command, the console
and the service per process). It opens the ledger's database on first use, once: one engine,
whose pool every session takes its connections from. ``with app.session() as s:`` is one unit
of work: it holds the ledger (and, where it sends, one transport) for the use cases it runs,
and gives back what it took when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dispatch.config import Settings
from dispatch.delivery.clock import Clock
from dispatch.ledger import Database, Ledger, Timeouts

if TYPE_CHECKING:
    from dispatch.delivery.ports import Transport


def ledger_timeouts(settings: Settings) -> Timeouts:
    limits = settings.ledger_timeouts
    return Timeouts(lock=limits.lock_seconds, statement=limits.statement_seconds,
                    idle_in_transaction=limits.idle_in_transaction_seconds, keepalive=limits.keepalive_seconds,
                    connect=limits.connect_seconds)


class App:
    """The program's parts for one process: settings, clock and the ledger's one engine."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self._database: Database | None = None
        self._opening = threading.Lock()

    def database(self, *, allow_new: bool = False) -> Database:
        """The ledger's database, opened (created, migrated, its identity checked) on first
        use. ``allow_new``: a missing or replaced ledger is accepted on purpose (send
        --new-ledger); it applies to the first opening only."""
        with self._opening:
            if self._database is None:
                self._database = Database(self.settings.ledger_url, allow_new=allow_new,
                                          timeouts=ledger_timeouts(self.settings))
            return self._database

    def reconfigured(self, settings: Settings) -> App:
        """An App with reloaded settings (the service's SIGHUP): the same database, and so
        the same engine, while the ledger's URL stays the same; else a new one, not opened."""
        fresh = App(settings, self.clock)
        if settings.ledger_url == self.settings.ledger_url:
            fresh._database = self.database()
        return fresh

    def start_new_ledger(self) -> None:
        """Accept a missing or replaced ledger on purpose (send --new-ledger)."""
        self.database(allow_new=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work on this App's ledger (connections from its one engine). The
        ledger is opened when the unit first uses it: a check of an urgent message, say,
        never needs it."""
        unit = Session(self)
        try:
            yield unit
        finally:
            unit.end()

    def close(self) -> None:
        """Close the ledger's engine (the end of the process, or of a test)."""
        with self._opening:
            database, self._database = self._database, None
        if database is not None:
            database.close()


class Session:
    """One unit of work: the ledger for the use cases it runs, the settings and the clock,
    and the transport for a send (opened when first asked for)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.clock = app.clock
        self._ledger: Ledger | None = None
        self._transport: Transport | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger.over(self.app.database())
        return self._ledger

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            # wiring (the transports, the sender, DKIM) is imported when a unit first sends, not
            # with this module: a command that only reads the ledger never loads it (issue 34).
            from dispatch.app.wiring import open_transport

            self._transport = open_transport(self.settings)
        return self._transport

    def end(self) -> None:
        """Give back the connection this thread kept for outcome writes, if it kept one."""
        if self._ledger is not None:
            self._ledger.end_writer()
        self._transport = None

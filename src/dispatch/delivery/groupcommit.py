"""What the connections of one run share with the ledger: the group commit (outcomes from
every connection written in shared transactions) and the rate limit (slots handed out by
the ledger to every process sending through the same relay)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from dispatch.delivery.clock import Clock
from dispatch.delivery.ports import DeliveryLedger
from dispatch.errors import LedgerBusy
from dispatch.models import Outcome


class RateLimiter:
    """A smooth limit shared by every connection and every process sending through the
    same relay: one message per 60/rate seconds, the slots handed out by the ledger."""

    def __init__(self, per_minute: float, clock: Clock, ledger: DeliveryLedger, relay: str,
                 stop: threading.Event | None = None) -> None:
        self.interval = timedelta(seconds=60.0 / per_minute) if per_minute > 0 else None
        self.clock, self.ledger, self.relay = clock, ledger, relay
        self.stop = stop or threading.Event()

    def wait(self) -> None:
        if self.interval is None:
            return
        while True:
            try:
                slot = self.ledger.reserve_slot(self.relay, self.interval, self.clock.now)
                break
            except LedgerBusy:
                # Another process holds the relay's slot row (one that froze holding it loses its
                # session to the server's idle_in_transaction timeout): try again, unless stopped
                # (the caller sees the stop and sends nothing).
                if self.stop.is_set():
                    return
        self.clock.sleep((slot - self.clock.now()).total_seconds())


class GroupCommitter:
    """Writes outcomes from all connections in shared transactions; each caller returns
    only when its outcomes are durable, so a connection never runs ahead of the ledger."""

    def __init__(self, ledger: DeliveryLedger, owner: str, clock: Clock) -> None:
        self.ledger, self.owner, self.clock = ledger, owner, clock
        self.cond = threading.Condition()
        self.waiting: list[tuple[list[tuple[int, Outcome, datetime | None]], threading.Event, list[BaseException]]] = []
        self.closed = False
        # Fewer rows written than given: a lease of this run had passed to another node
        # (the ledger refused those late outcomes). The run must stop sending.
        self.refused = False
        self.thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.thread.start()

    def record(self, results: list[tuple[int, Outcome, datetime | None]]) -> None:
        done = threading.Event()
        errors: list[BaseException] = []
        with self.cond:
            self.waiting.append((results, done, errors))
            self.cond.notify()
        done.wait()
        if errors:
            raise errors[0]

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join()

    def _run(self) -> None:
        try:
            self._commit_until_closed()
        finally:
            self.ledger.end_writer()

    def _commit_until_closed(self) -> None:
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if not self.waiting and self.closed:
                    return
                batch, self.waiting = self.waiting, []
            rows = [row for results, _, _ in batch for row in results]
            error: BaseException | None = None
            try:
                written = self.ledger.record(self.owner, rows, self.clock.now())
                if written < len(rows):
                    self.refused = True
            except BaseException as exc:  # handed to every waiting worker, which re-raises
                error = exc
            for _, done, errors in batch:
                if error is not None:
                    errors.append(error)
                done.set()

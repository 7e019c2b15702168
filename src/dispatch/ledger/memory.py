"""What delivery needs of a ledger (``dispatch.delivery.ports.DeliveryLedger``) in memory: one process, nothing on disk.

For tests of the pipeline's decisions (claims, retries, pauses, stops) without a database,
as APScheduler ships a MemoryJobStore beside its persistent stores. It keeps the same
rules as the SQL ledger: a row is claimed with a lease, written only by its lease owner,
and sendable again when the lease lapses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from dispatch.delivery.ports import DeliveryLedger
from dispatch.models import Delivery, DispatchRecord, NewRecipient, Outcome, State
from dispatch.values import RelayTrouble

SENDABLE = (State.PENDING, State.DEFERRED, State.UNKNOWN)


@dataclass
class _Row:
    delivery: Delivery
    dispatch_id: int
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    sent_at: datetime | None = None
    node: str = ""  # the owner that recorded its last outcome
    trouble: RelayTrouble | None = None  # why it waits, when the relay held it back


class MemoryLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.dispatches: dict[str, DispatchRecord] = {}
        self.rows: list[_Row] = []
        self.revoked: set[int] = set()
        self._slots: dict[str, datetime] = {}

    # -- dispatches ---------------------------------------------------------------

    def open_dispatch(self, name: str, edition_date: date, revision: int, kind: str, subject: str,
                      source: str, created_by: str, now: datetime, *, content_hash: str | None = None,
                      approved_by: str | None = None, approved_at: datetime | None = None,
                      approval_id: int | None = None, lists: tuple[str, ...] = (),
                      by_front_matter: bool = False) -> tuple[DispatchRecord, bool]:
        with self._lock:
            if name in self.dispatches:
                return self.dispatches[name], False
            record = DispatchRecord(
                id=len(self.dispatches) + 1, name=name, edition_date=edition_date, revision=revision,
                kind=kind, subject=subject, source=source, created_by=created_by, created_at=now, finished_at=None,
                content_hash=content_hash, approved_by=approved_by, approved_at=approved_at,
                approval_id=approval_id, lists=lists, by_front_matter=by_front_matter,
            )
            self.dispatches[name] = record
            return record, True

    def finish_dispatch(self, dispatch_id: int, now: datetime) -> bool:
        with self._lock:
            for name, record in self.dispatches.items():
                if record.id == dispatch_id and record.finished_at is None:
                    self.dispatches[name] = replace(record, finished_at=now)
                    return True
        return False

    def approval_revoked(self, approval_id: int) -> bool:
        return approval_id in self.revoked

    # -- recipients -----------------------------------------------------------------

    def add_recipients(self, dispatch_id: int, recipients: Iterable[NewRecipient], now: datetime) -> int:
        with self._lock:
            keys = {row.delivery.key for row in self.rows if row.dispatch_id == dispatch_id}
            added = 0
            for new in recipients:
                if new.key in keys:
                    continue
                keys.add(new.key)
                self.rows.append(_Row(Delivery(
                    id=len(self.rows) + 1, key=new.key, address=new.address, name=new.name, state=new.state,
                    attempts=0, reply=new.reply, message_id=new.message_id, updated_at=now,
                ), dispatch_id))
                added += 1
            return added

    def claim(self, dispatch_id: int, owner: str, now: datetime, lease: timedelta, limit: int,
              waited_since: datetime | None = None) -> list[Delivery]:
        with self._lock:
            taken = []
            for row in self.rows:
                d = row.delivery
                due = (d.next_attempt_at is None or d.next_attempt_at <= now
                       or (waited_since is not None and d.updated_at is not None and d.updated_at < waited_since))
                free = row.lease_owner is None or (row.lease_expires_at is not None and row.lease_expires_at <= now)
                if row.dispatch_id == dispatch_id and d.state in SENDABLE and due and free:
                    row.lease_owner, row.lease_expires_at = owner, now + lease
                    taken.append(d)
                    if len(taken) >= limit:
                        break
            return taken

    def renew(self, owner: str, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]:
        mine = self._mine(owner, ids)
        for row in mine:
            row.lease_expires_at = now + lease
        return [row.delivery.id for row in mine]

    def release(self, owner: str, ids: Sequence[int] | None = None) -> int:
        with self._lock:
            mine = [row for row in self.rows if row.lease_owner == owner and (ids is None or row.delivery.id in ids)]
        for row in mine:
            row.lease_owner = row.lease_expires_at = None
        return len(mine)

    def sent_by(self, dispatch_id: int, owner: str) -> int:
        with self._lock:
            return sum(1 for row in self.rows if row.dispatch_id == dispatch_id and row.node == owner
                       and row.delivery.state in (State.SENT, State.BOUNCED))

    def hold_waiting(self, dispatch_id: int, until: datetime, trouble: RelayTrouble, now: datetime) -> int:
        with self._lock:
            free = [row for row in self.rows if row.dispatch_id == dispatch_id and row.delivery.state in SENDABLE
                    and (row.delivery.next_attempt_at is None or row.delivery.next_attempt_at <= now)
                    and (row.lease_owner is None or (row.lease_expires_at is not None and row.lease_expires_at <= now))]
            for row in free:
                state = State.DEFERRED if row.delivery.state is State.PENDING else row.delivery.state
                row.delivery = replace(row.delivery, state=state, next_attempt_at=until, reply=trouble.detail, updated_at=now)
                row.lease_owner = row.lease_expires_at = None
                row.trouble = trouble
        return len(free)

    def due_unleased(self, dispatch_id: int, now: datetime) -> int:
        with self._lock:
            return sum(1 for row in self.rows if row.dispatch_id == dispatch_id and row.delivery.state in SENDABLE
                       and (row.delivery.next_attempt_at is None or row.delivery.next_attempt_at <= now)
                       and (row.lease_owner is None or (row.lease_expires_at is not None and row.lease_expires_at <= now)))

    def others_leases_end(self, dispatch_id: int, owner: str) -> tuple[int, datetime | None, datetime | None]:
        with self._lock:
            ends = [row.lease_expires_at for row in self.rows
                    if row.dispatch_id == dispatch_id and row.delivery.state in SENDABLE
                    and row.lease_owner not in (None, owner) and row.lease_expires_at is not None]
        return len(ends), min(ends, default=None), max(ends, default=None)

    def hold(self, owner: str, ids: Sequence[int], until: datetime, trouble: RelayTrouble, now: datetime) -> None:
        for row in self._mine(owner, ids):
            state = State.DEFERRED if row.delivery.state is State.PENDING else row.delivery.state
            row.delivery = replace(row.delivery, state=state, next_attempt_at=until, reply=trouble.detail, updated_at=now)
            row.lease_owner = row.lease_expires_at = None
            row.trouble = trouble

    def record(self, owner: str, results: Sequence[tuple[int, Outcome, datetime | None]], now: datetime) -> int:
        written = 0
        by_id = {row.delivery.id: row for row in self._mine(owner, [r[0] for r in results])}
        for delivery_id, outcome, next_attempt in results:
            row = by_id.get(delivery_id)
            if row is None:
                continue  # the lease went to another owner: not ours to write
            d = row.delivery
            row.delivery = replace(d, state=outcome.state, reply=outcome.reply, attempts=d.attempts + 1,
                                   next_attempt_at=next_attempt, updated_at=now,
                                   first_attempt_at=d.first_attempt_at or now)
            row.lease_owner = row.lease_expires_at = None
            row.trouble = None
            row.node = owner
            if outcome.state is State.SENT:
                row.sent_at = now
            written += 1
        return written

    def end_writer(self) -> None:
        pass

    def _mine(self, owner: str, ids: Sequence[int]) -> list[_Row]:
        wanted = set(ids)
        with self._lock:
            return [row for row in self.rows if row.delivery.id in wanted and row.lease_owner == owner]

    # -- reading and coordination ---------------------------------------------------

    def counts(self, dispatch_id: int) -> dict[str, int]:
        counts = {state.value: 0 for state in State}
        with self._lock:
            for row in self.rows:
                if row.dispatch_id == dispatch_id:
                    counts[row.delivery.state.value] += 1
        return counts

    def deliveries(self, dispatch_id: int) -> list[Delivery]:
        with self._lock:
            return [row.delivery for row in self.rows if row.dispatch_id == dispatch_id]

    def next_due(self, dispatch_id: int) -> datetime | None:
        with self._lock:
            times = [row.delivery.next_attempt_at for row in self.rows
                     if row.dispatch_id == dispatch_id and row.delivery.state in SENDABLE and row.delivery.next_attempt_at]
        return min((t for t in times if t is not None), default=None)

    def reap_dead_leases(self, host: str, alive: Callable[[int], bool]) -> int:
        return 0  # one process: nobody else's leases to free

    def leased_by_others(self, dispatch_id: int, owner: str, now: datetime) -> int:
        with self._lock:
            return sum(1 for row in self.rows if row.dispatch_id == dispatch_id and row.lease_owner not in (None, owner)
                       and row.lease_expires_at is not None and row.lease_expires_at > now)

    def urgent_waiting(self, now: datetime) -> bool:
        return False

    def urgent_ahead(self, now: datetime) -> str | None:
        return None  # one dispatch at a time in memory: nothing to give way to

    def reserve_slot(self, relay: str, interval: timedelta, clock: Callable[[], datetime]) -> datetime:
        with self._lock:
            now = clock()
            slot = max(now, self._slots.get(relay, now))
            self._slots[relay] = slot + interval
            return slot


# mypy proves both ledgers satisfy what delivery needs of a ledger (its port), at import time too.
_memory_is_a_delivery_ledger: DeliveryLedger = MemoryLedger()

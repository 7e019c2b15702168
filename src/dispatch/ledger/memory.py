"""What delivery needs of a ledger (``dispatch.delivery.ports.DeliveryLedger``) in memory: one process, nothing on disk.

Beside it, the snapshots of directory lists in memory (``MemorySnapshots``), for tests of the
sync's and the shrink guard's decisions without a database.

For tests of the pipeline's decisions (claims, retries, pauses, stops) without a database,
as APScheduler ships a MemoryJobStore beside its persistent stores. It keeps the same
rules as the SQL ledger: a row is claimed with a lease, written only by its lease owner,
and sendable again when the lease lapses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from dispatch.delivery.ports import DeliveryLedger
from dispatch.models import Delivery, DispatchRecord, NewRecipient, Outcome, State
from dispatch.recipients.snapshots import Snapshot, SnapshotMember, SnapshotState, SnapshotStore, pending_of
from dispatch.values import Fact, RelayTrouble

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


class MemorySnapshots:
    """The snapshot store (recipients.snapshots.SnapshotStore) in memory, with the SQL ledger's
    rules: the last accepted snapshot is the newest accepted one, a held one waits for a person
    until a later one is accepted, a dispatch names the snapshot each of its lists used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[int, Snapshot] = {}
        self._members: dict[int, tuple[SnapshotMember, ...]] = {}
        self._used: dict[str, dict[str, int]] = {}

    def add_snapshot(self, list_name: str, directory: str, selector: str, taken_at: datetime, state: SnapshotState, *,
                     disabled: int, without_mail: int, invalid: int, digest: str, reason: Fact | None,
                     members: Sequence[SnapshotMember]) -> Snapshot:
        with self._lock:
            snapshot = Snapshot(
                id=len(self._snapshots) + 1, list_name=list_name, directory=directory, selector=selector, taken_at=taken_at,
                state=state, members=len(members), disabled=disabled, without_mail=without_mail, invalid=invalid,
                digest=digest, reason=reason, accepted_at=taken_at if state is SnapshotState.ACCEPTED else None,
                checked_at=taken_at,
            )
            self._snapshots[snapshot.id] = snapshot
            self._members[snapshot.id] = tuple(members)
            return snapshot

    def snapshot(self, snapshot_id: int) -> Snapshot | None:
        return self._snapshots.get(snapshot_id)

    def snapshots(self, list_name: str, limit: int = 20) -> list[Snapshot]:
        with self._lock:
            found = [s for s in self._snapshots.values() if s.list_name == list_name]
        return sorted(found, key=lambda s: s.id, reverse=True)[:limit]

    def last_accepted(self, list_name: str) -> Snapshot | None:
        return next((s for s in self.snapshots(list_name, len(self._snapshots)) if s.state is SnapshotState.ACCEPTED), None)

    def pending_held(self, list_name: str) -> Snapshot | None:
        return pending_of(self.snapshots(list_name, len(self._snapshots)), self.last_accepted(list_name))

    def snapshot_members(self, snapshot_id: int) -> list[SnapshotMember]:
        return sorted(self._members.get(snapshot_id, ()), key=lambda m: m.key)

    def accept_snapshot(self, snapshot_id: int, by: str, at: datetime) -> bool:
        with self._lock:
            found = self._snapshots.get(snapshot_id)
            if found is None or found.state is not SnapshotState.HELD:
                return False
            self._snapshots[snapshot_id] = replace(found, state=SnapshotState.ACCEPTED, accepted_by=by, accepted_at=at)
            return True

    def saw_again(self, snapshot_id: int, at: datetime) -> None:
        with self._lock:
            if snapshot_id in self._snapshots:
                self._snapshots[snapshot_id] = replace(self._snapshots[snapshot_id], checked_at=at)

    def mark_alerted(self, snapshot_id: int, at: datetime) -> bool:
        with self._lock:
            found = self._snapshots.get(snapshot_id)
            if found is None or found.alerted_at is not None:
                return False
            self._snapshots[snapshot_id] = replace(found, alerted_at=at)
            return True

    def record_snapshots_used(self, dispatch_name: str, used: Mapping[str, int], at: datetime) -> None:
        with self._lock:
            self._used.setdefault(dispatch_name, {}).update(used)

    def snapshots_used(self, dispatch_name: str) -> dict[str, int]:
        return dict(self._used.get(dispatch_name, {}))


_memory_keeps_snapshots: SnapshotStore = MemorySnapshots()

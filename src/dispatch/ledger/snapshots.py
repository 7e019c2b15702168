"""Snapshots of directory lists: each sync's people (its members apart), its state (accepted,
held, failed) and who accepted it, and which snapshot each dispatch's directory lists used."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dispatch.ledger.accounts import read_fact, stored_fact
from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import dispatch_snapshots, snapshot_members, snapshots
from dispatch.recipients.snapshots import Snapshot, SnapshotMember, SnapshotState
from dispatch.values import Fact

# Rows per INSERT batch: a 50,000-member snapshot is ten round trips (executemany; psycopg
# sends each batch as one multi-row statement), few enough and small enough for SQLite's limits.
MEMBER_BATCH = 5000


def _snapshot(row: Any) -> Snapshot:
    reason = row["reason"]
    return Snapshot(
        id=int(row["id"]), list_name=row["list_name"], directory=row["directory"], selector=row["selector"],
        taken_at=as_utc(row["taken_at"]),  # type: ignore[arg-type]
        state=SnapshotState(row["state"]), members=int(row["members"]), disabled=int(row["disabled"]),
        without_mail=int(row["without_mail"]), invalid=int(row["invalid"]), digest=row["digest"],
        reason=read_fact(json.loads(reason)) if reason else None, accepted_by=row["accepted_by"],
        accepted_at=as_utc(row["accepted_at"]), checked_at=as_utc(row["checked_at"]), alerted_at=as_utc(row["alerted_at"]),
    )


def _copy_members(conn: sa.Connection, snapshot_id: int, members: Sequence[SnapshotMember]) -> None:
    """PostgreSQL: the members in one COPY, in the transaction that inserted the snapshot (a
    50,000-member snapshot in well under a second, where row inserts take several)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {snapshot_members.name} (snapshot_id, key, address, name, source) FROM STDIN") as copy:
        for m in members:
            copy.write_row((snapshot_id, m.key, m.address, m.name, m.source))


class Snapshots:
    """A part of ``Ledger``: the snapshot store (recipients.snapshots.SnapshotStore) in SQL."""

    db: Database

    @operation
    def add_snapshot(self, list_name: str, directory: str, selector: str, taken_at: datetime, state: SnapshotState, *,
                     disabled: int, without_mail: int, invalid: int, digest: str, reason: Fact | None,
                     members: Sequence[SnapshotMember]) -> Snapshot:
        # One transaction: a snapshot is never seen without all of its members.
        with self.db.engine.begin() as conn:
            snapshot_id = int(conn.execute(snapshots.insert().values(
                list_name=list_name, directory=directory, selector=selector, taken_at=as_utc(taken_at),
                state=state.value, members=len(members), disabled=disabled, without_mail=without_mail, invalid=invalid,
                digest=digest, reason=json.dumps(stored_fact(reason), ensure_ascii=False) if reason else None,
                accepted_at=as_utc(taken_at) if state is SnapshotState.ACCEPTED else None, checked_at=as_utc(taken_at),
            ).returning(snapshots.c.id)).scalar_one())
            if self.db.is_postgres:
                _copy_members(conn, snapshot_id, members)
            else:
                for start in range(0, len(members), MEMBER_BATCH):
                    conn.execute(snapshot_members.insert(), [
                        {"snapshot_id": snapshot_id, "key": m.key, "address": m.address, "name": m.name, "source": m.source}
                        for m in members[start:start + MEMBER_BATCH]
                    ])
            row = conn.execute(snapshots.select().where(snapshots.c.id == snapshot_id)).mappings().one()
        return _snapshot(row)

    @operation
    def snapshot(self, snapshot_id: int) -> Snapshot | None:
        with self.db.read() as conn:
            row = conn.execute(snapshots.select().where(snapshots.c.id == snapshot_id)).mappings().first()
        return _snapshot(row) if row else None

    @operation
    def snapshots(self, list_name: str, limit: int = 20) -> list[Snapshot]:
        query = snapshots.select().where(snapshots.c.list_name == list_name).order_by(snapshots.c.id.desc()).limit(limit)
        with self.db.read() as conn:
            return [_snapshot(row) for row in conn.execute(query).mappings()]

    @operation
    def last_accepted(self, list_name: str) -> Snapshot | None:
        query = (snapshots.select().where(snapshots.c.list_name == list_name, snapshots.c.state == SnapshotState.ACCEPTED.value)
                 .order_by(snapshots.c.id.desc()).limit(1))
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        return _snapshot(row) if row else None

    @operation
    def pending_held(self, list_name: str) -> Snapshot | None:
        accepted = (sa.select(sa.func.coalesce(sa.func.max(snapshots.c.id), 0))
                    .where(snapshots.c.list_name == list_name, snapshots.c.state == SnapshotState.ACCEPTED.value)
                    .scalar_subquery())
        query = (snapshots.select().where(snapshots.c.list_name == list_name, snapshots.c.state == SnapshotState.HELD.value,
                                          snapshots.c.id > accepted)
                 .order_by(snapshots.c.id.desc()).limit(1))
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        return _snapshot(row) if row else None

    @operation
    def snapshot_members(self, snapshot_id: int) -> list[SnapshotMember]:
        query = (sa.select(snapshot_members.c.key, snapshot_members.c.address, snapshot_members.c.name, snapshot_members.c.source)
                 .where(snapshot_members.c.snapshot_id == snapshot_id).order_by(snapshot_members.c.key))
        with self.db.read() as conn:
            return [SnapshotMember(key, address, name, source) for key, address, name, source in conn.execute(query)]

    @operation
    def accept_snapshot(self, snapshot_id: int, by: str, at: datetime) -> bool:
        with self.db.engine.begin() as conn:
            return bool(conn.execute(
                snapshots.update().where(snapshots.c.id == snapshot_id, snapshots.c.state == SnapshotState.HELD.value)
                .values(state=SnapshotState.ACCEPTED.value, accepted_by=by, accepted_at=as_utc(at))
            ).rowcount)

    @operation
    def saw_again(self, snapshot_id: int, at: datetime) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(snapshots.update().where(snapshots.c.id == snapshot_id).values(checked_at=as_utc(at)))

    @operation
    def mark_alerted(self, snapshot_id: int, at: datetime) -> bool:
        # One UPDATE that only the first caller's matches: two services on one ledger alert once.
        with self.db.engine.begin() as conn:
            return bool(conn.execute(
                snapshots.update().where(snapshots.c.id == snapshot_id, snapshots.c.alerted_at.is_(None))
                .values(alerted_at=as_utc(at))
            ).rowcount)

    @operation
    def record_snapshots_used(self, dispatch_name: str, used: Mapping[str, int], at: datetime) -> None:
        if not used:
            return
        with self.db.engine.begin() as conn:
            conn.execute(self.db.insert(dispatch_snapshots).on_conflict_do_nothing(), [
                {"dispatch_name": dispatch_name, "list_name": name, "snapshot_id": snapshot_id, "recorded_at": as_utc(at)}
                for name, snapshot_id in used.items()
            ])

    @operation
    def snapshots_used(self, dispatch_name: str) -> dict[str, int]:
        """Per list the snapshot the dispatch used; if a resumed dispatch used a later one for
        a list (accepted in between), the later one, whose new members the resume added."""
        query = (sa.select(dispatch_snapshots.c.list_name, dispatch_snapshots.c.snapshot_id)
                 .where(dispatch_snapshots.c.dispatch_name == dispatch_name)
                 .order_by(dispatch_snapshots.c.recorded_at, dispatch_snapshots.c.snapshot_id))
        with self.db.read() as conn:
            return {name: int(snapshot_id) for name, snapshot_id in conn.execute(query)}

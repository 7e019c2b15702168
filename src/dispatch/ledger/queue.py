"""The delivery queue: one row per recipient; claims with leases, outcomes fenced by the lease owner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import (
    SENDABLE,
    deliveries,
    dispatches,
)
from dispatch.models import Delivery, InvalidEntry, NewRecipient, Outcome, State
from dispatch.values import RelayCause, RelayTrouble

_TIME = sa.DateTime(timezone=True)
# The outcome of one attempt, fenced by the lease owner. Built once: every value is a
# bound parameter, so SQLAlchemy compiles it once and reuses it for every group commit.
_RECORD = (
    deliveries.update()
    .where(deliveries.c.id == sa.bindparam("row_id"), deliveries.c.lease_owner == sa.bindparam("row_owner"))
    .values(
        state=sa.bindparam("row_state"),
        reply=sa.bindparam("row_reply"),
        updated_at=sa.bindparam("row_now", type_=_TIME),
        attempts=deliveries.c.attempts + 1,
        next_attempt_at=sa.bindparam("row_next", type_=_TIME),
        node=sa.bindparam("row_owner"),
        lease_owner=None,
        lease_expires_at=None,
        relay_cause=None,  # an attempt was made: whatever held the row back is past
        relay_host=None,
        relay_detail=None,
        relay_permanent=None,
        first_attempt_at=sa.func.coalesce(deliveries.c.first_attempt_at, sa.bindparam("row_now", type_=_TIME)),
        sent_at=sa.case((sa.bindparam("row_sent", type_=sa.Boolean) == sa.true(), sa.bindparam("row_now", type_=_TIME)),
                        else_=deliveries.c.sent_at),
    )
)


def _held(trouble: RelayTrouble) -> dict[str, Any]:
    """The columns a held row carries: the relay's trouble, and its detail as the reply too
    (what ``status --json`` and the exports show of it)."""
    return {"relay_cause": trouble.cause.value, "relay_host": trouble.host[:300], "relay_detail": trouble.detail[:2000],
            "relay_permanent": trouble.permanent, "reply": trouble.detail[:2000]}


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"], key=row["key"], address=row["address"], name=row["name"],
        state=State(row["state"]), attempts=row["attempts"], reply=row["reply"],
        message_id=row["message_id"], updated_at=as_utc(row["updated_at"]),
        next_attempt_at=as_utc(row["next_attempt_at"]),
        first_attempt_at=as_utc(row["first_attempt_at"]),
    )


class Queue:
    """The delivery queue: one row per recipient, claimed with leases, its outcomes fenced by the lease owner.
    A part of ``Ledger``; each method runs its SQL under ``operation``."""

    db: Database

    @operation
    def add_recipients(self, dispatch_id: int, recipients: Iterable[NewRecipient], now: datetime, chunk: int = 2000) -> int:
        """Insert rows that do not exist yet; existing rows (already sent or not) are left alone."""
        now = as_utc(now)  # type: ignore[assignment]
        added = 0
        batch: list[dict[str, Any]] = []

        def flush(conn: Any) -> int:
            if not batch:
                return 0
            # RETURNING counts the rows really inserted: an executemany's rowcount is the
            # batch size on some drivers (psycopg's batched INSERT), whatever was skipped.
            statement = (
                self.db.insert(deliveries)
                .on_conflict_do_nothing(index_elements=["dispatch_id", "key"])
                .returning(deliveries.c.id)
            )
            count = len(conn.execute(statement, batch).all())
            batch.clear()
            return count

        with self.db.engine.begin() as conn:
            for r in recipients:
                batch.append(dict(
                    dispatch_id=dispatch_id, key=r.key, address=r.address, name=r.name,
                    state=r.state.value, attempts=0, reply=r.reply, message_id=r.message_id,
                    created_at=now, updated_at=now, node="",
                ))
                if len(batch) >= chunk:
                    added += flush(conn)
            added += flush(conn)
            if added:
                # New recipients (a list grew, another list was added): not finished any more,
                # so the run that sends them finishes it again and reports it.
                conn.execute(dispatches.update().where(dispatches.c.id == dispatch_id).values(finished_at=None))
        return added

    @operation
    def claim(self, dispatch_id: int, owner: str, now: datetime, lease: timedelta, limit: int,
              waited_since: datetime | None = None) -> list[Delivery]:
        """Lease up to ``limit`` sendable rows to ``owner`` and commit before any I/O.

        ``waited_since``: also take rows whose next attempt is later, if they were last
        tried before that moment (a person's rerun after fixing the relay should not wait
        for the backoff; what this run itself defers keeps its backoff)."""
        self.db.check_file()
        now = as_utc(now)  # type: ignore[assignment]
        with self.db.light() as conn:
            ids: list[int] = []
            # One state at a time: with an equality on state the (dispatch_id, state) index
            # yields rows in id order, where IN (...) made SQLite sort every sendable row
            # on each claim (quadratic over a 100,000-recipient dispatch).
            for state in SENDABLE:
                pick = (
                    sa.select(deliveries.c.id)
                    .where(
                        deliveries.c.dispatch_id == dispatch_id,
                        deliveries.c.state == state,
                        sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now,
                               deliveries.c.updated_at < as_utc(waited_since) if waited_since else sa.false()),
                        sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now),
                    )
                    .order_by(deliveries.c.id)
                    .limit(limit - len(ids))
                )
                if self.db.is_postgres:
                    pick = pick.with_for_update(skip_locked=True)
                ids.extend(row[0] for row in conn.execute(pick))
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            conn.execute(
                deliveries.update().where(deliveries.c.id.in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + lease)
            )
            rows = conn.execute(sa.select(deliveries).where(deliveries.c.id.in_(ids)).order_by(deliveries.c.id)).mappings().all()
        return [_delivery(r) for r in rows]

    @operation
    def renew(self, owner: str, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]:
        """Extend this owner's leases on ``ids`` to ``now + lease``; returns the ids extended (a
        row another node took over, or that was recorded meanwhile, is not)."""
        if not ids:
            return []
        with self.db.light() as conn:
            mine = sa.and_(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
            if self.db.is_postgres:
                # Lock first, skipping rows the writer thread is recording this moment (it
                # clears their lease anyway): an UPDATE of the whole set would lock them in
                # heap order, the writer in id order, and PostgreSQL would find a deadlock.
                locked = [r[0] for r in conn.execute(
                    sa.select(deliveries.c.id).where(mine).order_by(deliveries.c.id).with_for_update(skip_locked=True))]
                mine = deliveries.c.id.in_(locked)
            result = conn.execute(deliveries.update().where(mine).values(lease_expires_at=as_utc(now) + lease)  # type: ignore[operator]
                                  .returning(deliveries.c.id))
            return [row[0] for row in result]

    @operation
    def release(self, owner: str, ids: Sequence[int] | None = None) -> int:
        """Give back this owner's leases on ``ids`` (None: every lease it holds, a run that has
        ended); rows another node has taken over meanwhile are left alone."""
        if ids is not None and not ids:
            return 0
        with self.db.light() as conn:
            mine = deliveries.c.lease_owner == owner
            result = conn.execute(
                deliveries.update()
                .where(mine if ids is None else sa.and_(mine, deliveries.c.id.in_(list(ids))))
                .values(lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount or 0

    @operation
    def sent_by(self, dispatch_id: int, owner: str) -> int:
        """Recipients of the dispatch whose acceptance this owner recorded (the ledger's count,
        not the run's: outcomes refused for a lost lease are not in it)."""
        with self.db.read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id, deliveries.c.node == owner,
                    deliveries.c.state.in_([State.SENT.value, State.BOUNCED.value]))
            ).scalar_one())

    @operation
    def others_leases_end(self, dispatch_id: int, owner: str) -> tuple[int, datetime | None, datetime | None]:
        """Sendable rows that another run holds (or held: a lease that ran out is claimable, but
        still there until someone claims the row), and when the first and the last of those
        leases end unless renewed (why a run waits, and until when)."""
        with self.db.read() as conn:
            count, first, last = conn.execute(
                sa.select(sa.func.count(), sa.func.min(deliveries.c.lease_expires_at),
                          sa.func.max(deliveries.c.lease_expires_at)).where(
                    deliveries.c.dispatch_id == dispatch_id, deliveries.c.state.in_(SENDABLE),
                    deliveries.c.lease_owner.is_not(None), deliveries.c.lease_owner != owner)
            ).one()
        return int(count), as_utc(first), as_utc(last)

    @operation
    def hold(self, owner: str, ids: Sequence[int], until: datetime, trouble: RelayTrouble, now: datetime) -> None:
        """Put leased rows back to wait until ``until`` because of the session, not the
        recipient: a pending row becomes deferred (with the relay's trouble), an unknown one
        stays unknown, and no attempt is counted."""
        if not ids:
            return
        with self.db.light() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
                .values(state=sa.case((deliveries.c.state == State.PENDING.value, State.DEFERRED.value),
                                      else_=deliveries.c.state),
                        next_attempt_at=as_utc(until), lease_owner=None, lease_expires_at=None, **_held(trouble),
                        updated_at=as_utc(now))
            )

    @operation
    def hold_waiting(self, dispatch_id: int, until: datetime, trouble: RelayTrouble, now: datetime) -> int:
        """The dispatch's other due rows that nobody holds wait too, for the same trouble: the relay
        that refused this run would refuse them as well (as ``hold``: no attempt counted)."""
        now = as_utc(now)  # type: ignore[assignment]
        free = sa.and_(
            deliveries.c.dispatch_id == dispatch_id, deliveries.c.state.in_(SENDABLE),
            sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
            sa.or_(deliveries.c.lease_owner.is_(None), deliveries.c.lease_expires_at <= now),
        )
        with self.db.light() as conn:
            if self.db.is_postgres:  # rows another node is claiming this moment are its own to handle
                free = deliveries.c.id.in_([r[0] for r in conn.execute(
                    sa.select(deliveries.c.id).where(free).order_by(deliveries.c.id).with_for_update(skip_locked=True))])
            result = conn.execute(
                deliveries.update().where(free)
                .values(state=sa.case((deliveries.c.state == State.PENDING.value, State.DEFERRED.value),
                                      else_=deliveries.c.state),
                        next_attempt_at=as_utc(until), lease_owner=None, lease_expires_at=None, **_held(trouble),
                        updated_at=now)
            )
        return result.rowcount or 0

    @operation
    def record(self, owner: str, results: Sequence[tuple[int, Outcome, datetime | None]], now: datetime) -> int:
        """Write attempt outcomes in one transaction; only rows this owner still leases.

        One prepared statement for every row (executemany): building an UPDATE per call
        cost more CPU than the sending itself. Returns how many rows were written where
        the driver reports it (fewer means a lease was lost to another node).
        """
        if not results:
            return 0
        self.db.check_file()
        now = as_utc(now)  # type: ignore[assignment]
        rows = [
            {"row_id": delivery_id, "row_owner": owner, "row_state": outcome.state.value, "row_now": now,
             "row_reply": outcome.reply[:2000], "row_next": as_utc(next_attempt), "row_sent": outcome.state is State.SENT}
            # In id order, the order every other writer of these rows locks them in.
            for delivery_id, outcome, next_attempt in sorted(results, key=lambda r: r[0])
        ]
        conn = self.db.writer()
        with conn.begin():
            result = conn.execute(_RECORD, rows)
        written = result.rowcount
        return written if written is not None and written >= 0 else len(rows)

    @operation
    def requeue_failed(self, dispatch_id: int, now: datetime) -> int:
        """Failed rows back to pending, on purpose (after the cause was fixed). Entries that
        failed because the list entry itself is invalid stay failed: resending cannot help."""
        with self.db.engine.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(deliveries.c.dispatch_id == dispatch_id, deliveries.c.state == State.FAILED.value,
                       ~deliveries.c.key.startswith(InvalidEntry.KEY_PREFIX, autoescape=True))
                .values(state=State.PENDING.value, next_attempt_at=None, first_attempt_at=None, updated_at=as_utc(now))
            )
            if result.rowcount:
                conn.execute(dispatches.update().where(dispatches.c.id == dispatch_id).values(finished_at=None))
        return result.rowcount or 0

    @operation
    def retry_waiting_now(self, dispatch_id: int, now: datetime) -> int:
        """Rows waiting for a later attempt (deferred, and unknown: the relay may have the message,
        which goes again with the same Message-ID) due now instead of at their backoff time (an
        operator's "try again now", as a person's rerun on the command line retries them)."""
        with self.db.engine.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(deliveries.c.dispatch_id == dispatch_id,
                       deliveries.c.state.in_([State.DEFERRED.value, State.UNKNOWN.value]))
                .values(next_attempt_at=as_utc(now), updated_at=as_utc(now))
            )
        return result.rowcount or 0

    @operation
    def states_by_key(self, dispatch_id: int) -> dict[str, str]:
        """Each recipient key of the dispatch and its state (for a dry run's exact plan)."""
        with self.db.read() as conn:
            return dict(conn.execute(
                sa.select(deliveries.c.key, deliveries.c.state).where(deliveries.c.dispatch_id == dispatch_id)
            ).all())

    @operation
    def counts(self, dispatch_id: int) -> dict[str, int]:
        counts = {state.value: 0 for state in State}
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.state, sa.func.count())
                .where(deliveries.c.dispatch_id == dispatch_id)
                .group_by(deliveries.c.state)
            )
            for state, count in rows:
                counts[state] = count
        return counts

    @operation
    def deliveries(self, dispatch_id: int) -> list[Delivery]:
        return [_delivery(r) for r in self._every_row(dispatch_id)]

    @operation
    def rows(self, dispatch_id: int) -> list[dict[str, Any]]:
        """Every column of every row, for status --json and export."""
        return [dict(r) for r in self._every_row(dispatch_id)]

    def _every_row(self, dispatch_id: int) -> Sequence[sa.RowMapping]:
        with self.db.read() as conn:
            return conn.execute(
                sa.select(deliveries).where(deliveries.c.dispatch_id == dispatch_id).order_by(deliveries.c.id)
            ).mappings().all()

    @operation
    def held_by_relay(self, dispatch_id: int) -> tuple[RelayTrouble, int] | None:
        """The relay's trouble that last held the dispatch's deferred recipients back, and how many
        wait for it; None when none does."""
        with self.db.read() as conn:
            latest = conn.execute(
                sa.select(deliveries.c.relay_cause, deliveries.c.relay_host, deliveries.c.relay_detail,
                          deliveries.c.relay_permanent, sa.func.count().over())  # the count of every such row, before LIMIT
                .where(deliveries.c.dispatch_id == dispatch_id, deliveries.c.state == State.DEFERRED.value,
                       deliveries.c.relay_cause.is_not(None))
                .order_by(deliveries.c.updated_at.desc()).limit(1)
            ).first()
        if latest is None:
            return None
        cause, host, detail, permanent, count = latest
        known = cause in {c.value for c in RelayCause}
        return RelayTrouble(RelayCause(cause) if known else RelayCause.OTHER, host or "", detail or "", bool(permanent)), int(count)

    @operation
    def next_due(self, dispatch_id: int) -> datetime | None:
        """When the earliest deferred row may be retried (None: nothing waits)."""
        with self.db.read() as conn:
            value = conn.execute(
                sa.select(sa.func.min(deliveries.c.next_attempt_at))
                .where(deliveries.c.dispatch_id == dispatch_id, deliveries.c.state.in_(SENDABLE))
            ).scalar()
        return as_utc(value)

    @operation
    def due_unleased(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows that are due now and that no run holds."""
        now = as_utc(now)  # type: ignore[assignment]
        with self.db.read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.state.in_(SENDABLE),
                    sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
                    sa.or_(deliveries.c.lease_owner.is_(None), deliveries.c.lease_expires_at <= now),
                )
            ).scalar_one())

    @operation
    def leased_by_others(self, dispatch_id: int, owner: str, now: datetime) -> int:
        """Rows of the dispatch that another run holds right now (its lease has not expired)."""
        with self.db.read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.lease_owner.is_not(None), deliveries.c.lease_owner != owner,
                    deliveries.c.lease_expires_at > as_utc(now),
                )
            ).scalar_one())

"""Coordination between runs and nodes: dead leases, orphaned rows, urgency, shared rate slots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from dispatch.errors import LedgerError
from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import (
    SENDABLE,
    deliveries,
    dispatches,
    relay_slots,
)


class Coordination:
    """What runs on several processes or nodes agree through: dead leases, the urgent lane, rate slots.
    A part of ``Ledger``; each method runs its SQL under ``operation``."""

    db: Database

    @operation
    def reap_dead_leases(self, host: str, alive: Callable[[int], bool]) -> int:
        """Free leases held by processes of this host that no longer run (a crash or
        SIGKILL), so a rerun resumes at once instead of waiting for the lease to expire."""
        with self.db.read() as conn:
            owners = conn.execute(
                sa.select(deliveries.c.lease_owner).distinct()
                .where(deliveries.c.lease_owner.like(f"{host}:%"))
            ).scalars().all()
        dead = []
        for owner in owners:
            parts = owner.split(":")
            # The exact host: LIKE's '_' matches any character, and another host's pid
            # means nothing here (freeing a live node's lease would send twice).
            if len(parts) >= 3 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1])):
                dead.append(owner)
        if not dead:
            return 0
        with self.db.light() as conn:
            result = conn.execute(
                deliveries.update().where(deliveries.c.lease_owner.in_(dead))
                .values(lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount or 0

    @operation
    def orphaned(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows whose lease ran out unrecorded: a node died (or stalled) holding
        them. A release or a record clears the lease, so nothing else looks like this."""
        with self.db.read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.state.in_(SENDABLE),
                    deliveries.c.lease_owner.is_not(None),
                    deliveries.c.lease_expires_at <= as_utc(now),
                )
            ).scalar_one())

    def urgent_waiting(self, now: datetime, horizon: timedelta = timedelta(hours=2)) -> bool:
        """Is an urgent dispatch still sending? Other dispatches give way to it (see urgent_ahead)."""
        return self.urgent_ahead(now, horizon) is not None

    @operation
    def urgent_ahead(self, now: datetime, horizon: timedelta = timedelta(hours=2)) -> str | None:
        """The subject of an urgent dispatch that is still sending (other dispatches give way to
        it), or None. Only recent ones count, so a crashed urgent send cannot hold the daily
        report forever.

        Asked before every message of a large dispatch, so it must stay cheap: first the
        (small) dispatches table, then the recipients of an unfinished urgent one by index.
        """
        now = as_utc(now)  # type: ignore[assignment]
        with self.db.read() as conn:
            urgent = conn.execute(
                sa.select(dispatches.c.id, dispatches.c.subject).where(
                    dispatches.c.kind.like("urgent%"),
                    dispatches.c.finished_at.is_(None),
                    dispatches.c.created_at >= now - horizon,
                )
            ).all()
            for dispatch_id, subject in urgent:
                for state in SENDABLE:
                    due = conn.execute(
                        sa.select(deliveries.c.id).where(
                            deliveries.c.dispatch_id == dispatch_id,
                            deliveries.c.state == state,
                            sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
                        ).limit(1)
                    ).first()
                    if due is not None:
                        return str(subject)
        return None

    @operation
    def reserve_slot(self, relay: str, interval: timedelta, clock: Callable[[], datetime]) -> datetime:
        """The moment this process may start its next message through ``relay``.

        The time is read after the row is locked: a process that waited for the lock must
        not be handed a slot in the past, or late senders would catch up in a burst.
        """
        with self.db.light() as conn:
            conn.execute(
                self.db.insert(relay_slots).values(relay=relay, next_slot=as_utc(clock()))
                .on_conflict_do_nothing(index_elements=["relay"])
            )
            select = sa.select(relay_slots.c.next_slot).where(relay_slots.c.relay == relay)
            if self.db.is_postgres:
                select = select.with_for_update()
            current = as_utc(conn.execute(select).scalar_one())
            now = as_utc(clock())
            if current is None or now is None:  # the row was made above if it was not there
                raise LedgerError(f"ledger {self.db.shown}: relay {relay} has no rate slot")
            slot = max(now, current)
            conn.execute(relay_slots.update().where(relay_slots.c.relay == relay).values(next_slot=slot + interval))
        return slot

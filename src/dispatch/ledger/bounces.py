"""What came back: bounce events per delivery, a hard bounce turning the row ``bounced``,
and the addresses that keep bouncing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import bounce_events, deliveries, dispatches
from dispatch.models import State


@dataclass(frozen=True)
class DeliveryRef:
    """A delivery row as a returned message is matched to it."""

    id: int
    dispatch_id: int
    dispatch: str
    address: str
    key: str
    state: str


def _ref(row: Any) -> DeliveryRef:
    return DeliveryRef(row["id"], row["dispatch_id"], row["name"], row["address"], row["key"], row["state"])


_REF = sa.select(deliveries.c.id, deliveries.c.dispatch_id, dispatches.c.name, deliveries.c.address, deliveries.c.key,
                 deliveries.c.state).join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)


class Bounces:
    """What came back: bounces matched to the deliveries they were about.
    A part of ``Ledger``; each method runs its SQL under ``operation``."""

    db: Database

    @operation
    def delivery(self, delivery_id: int) -> DeliveryRef | None:
        with self.db.read() as conn:
            row = conn.execute(_REF.where(deliveries.c.id == delivery_id)).mappings().first()
        return _ref(row) if row else None

    @operation
    def delivery_by_message_id(self, message_id: str) -> DeliveryRef | None:
        with self.db.read() as conn:
            row = conn.execute(_REF.where(deliveries.c.message_id == message_id)).mappings().first()
        return _ref(row) if row else None

    @operation
    def delivery_by_key(self, dispatch_name: str, key: str) -> DeliveryRef | None:
        with self.db.read() as conn:
            row = conn.execute(_REF.where(dispatches.c.name == dispatch_name, deliveries.c.key == key)).mappings().first()
        return _ref(row) if row else None

    @operation
    def record_bounce(self, ref: DeliveryRef, kind: str, status: str, diagnostic: str, source: str, now: datetime,
               *, unknown_too: bool = False) -> bool:
        """Record what the returned message said; True only the first time for this message and
        delivery. A hard bounce makes an accepted row ``bounced`` with the status and diagnostic as
        its reply, and an ``unknown`` one only when ``unknown_too`` (the bounce proves the message
        went out: a VERP token); a soft one is only noted (the server is still trying), and so is
        an ``unverified`` one (a bounce nothing proves is ours: it changes nobody)."""
        with self.db.engine.begin() as conn:
            inserted = conn.execute(
                self.db.insert(bounce_events).values(delivery_id=ref.id, dispatch_id=ref.dispatch_id, kind=kind, status=status,
                                                diagnostic=diagnostic[:1000], source=source[:200], recorded_at=as_utc(now))
                .on_conflict_do_nothing().returning(bounce_events.c.id)
            ).first()
            if inserted is None:
                return False
            if kind == "hard":
                states = (State.SENT.value, State.UNKNOWN.value) if unknown_too else (State.SENT.value,)
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == ref.id, deliveries.c.state.in_(states))
                    .values(state=State.BOUNCED.value, reply=" ".join(part for part in (status, diagnostic) if part)[:1000],
                            updated_at=as_utc(now))
                )
        return True

    @operation
    def soft_bounce_notes(self, dispatch_id: int) -> dict[int, str]:
        """delivery id -> the latest soft bounce's status and diagnostic (shown beside the row)."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(bounce_events.c.delivery_id, bounce_events.c.status, bounce_events.c.diagnostic)
                .where(bounce_events.c.dispatch_id == dispatch_id, bounce_events.c.kind == "soft")
                .order_by(bounce_events.c.id)
            ).all()
        return {row[0]: f"{row[1]} {row[2]}".strip() for row in rows}

    @operation
    def repeat_bouncers(self, last: int, at_least: int = 2) -> list[tuple[str, str, list[str]]]:
        """(key, address, dispatch names) of everyone with a hard bounce in ``at_least`` of the
        ``last`` dispatches that had any delivery (tests excluded)."""
        with self.db.read() as conn:
            recent = [row[0] for row in conn.execute(
                sa.select(dispatches.c.id).where(~dispatches.c.kind.like("test-%")).order_by(dispatches.c.id.desc()).limit(last)
            )]
            if not recent:
                return []
            rows = conn.execute(
                sa.select(deliveries.c.key, deliveries.c.address, dispatches.c.name)
                .join(bounce_events, bounce_events.c.delivery_id == deliveries.c.id)
                .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
                .where(bounce_events.c.kind == "hard", deliveries.c.dispatch_id.in_(recent))
                .order_by(dispatches.c.id)
            ).all()
        found: dict[str, tuple[str, list[str]]] = {}
        for key, address, name in rows:
            entry = found.setdefault(key, (address, []))
            if name not in entry[1]:
                entry[1].append(name)
        return [(key, address, names) for key, (address, names) in sorted(found.items()) if len(names) >= at_least]

"""The rows one run holds: claimed, not yet recorded, each with the moment its lease ends.

A lease is only as good as the clock that granted it. The expiry kept here is the one the
ledger was told (the run's own clock at the claim or renewal, plus the lease), so a worker
that asks ``holds`` just before a message compares like with like: a process that was
paused (SIGSTOP, a VM migrated, a stalled disk) past its lease finds out before it sends
again, not after, and another node may have the rows by then. What is in flight when the
pause begins still goes: at most one message per connection, the bound docs/explanation/delivery-guarantees.md states.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta


class Held:
    """Claimed rows and their lease expiries; thread-safe (workers, the claim loop)."""

    def __init__(self, lease: timedelta, renew: Callable[[Sequence[int], datetime], Sequence[int]]) -> None:
        """``renew(ids, now)`` extends the leases in the ledger to ``now + lease`` and returns
        the ids it extended (only rows this run still owns)."""
        self.lease = lease
        self._renew = renew
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._expires: dict[int, datetime] = {}
        # A message must be able to finish inside the lease: a row closer to its expiry
        # than this is not sent (one tenth of the lease, at most 30 s).
        self.margin = min(lease / 10, timedelta(seconds=30))
        self.lost_at: datetime | None = None  # when this run found a lease of its own had run out

    def __len__(self) -> int:
        with self._lock:
            return len(self._expires)

    def add(self, ids: Iterable[int], granted: datetime) -> None:
        """Rows just claimed at ``granted`` (the time the claim told the ledger)."""
        with self._lock:
            for row in ids:
                self._expires[row] = granted + self.lease

    def done(self, ids: Iterable[int]) -> None:
        """Rows recorded (or handed back): no longer held."""
        with self._lock:
            for row in ids:
                self._expires.pop(row, None)

    def take_all(self) -> list[int]:
        with self._lock:
            ids = sorted(self._expires)
            self._expires.clear()
        return ids

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._expires)

    @property
    def lost(self) -> bool:
        return self.lost_at is not None

    def ran_out(self, now: datetime) -> bool:
        """Has a lease of this run run out by ``now`` (it is lost, or would be at the next check)?"""
        with self._lock:
            if self.lost_at is None and any(ends <= now for ends in self._expires.values()):
                self.lost_at = now
            return self.lost_at is not None

    def holds(self, ids: Sequence[int], now: datetime) -> bool:
        """Does this run still hold every one of ``ids`` long enough to send a message? A
        lease that has run out (or nearly) is lost for good: another node may have the row,
        and the run stops sending (``lost``). A lease past a third of its time is renewed
        first, so a worker that waited (a rate slot, an urgent message) keeps its rows."""
        with self._lock:
            if self.lost_at is not None:
                return False
            ends = min((self._expires.get(row, now) for row in ids), default=now)
            if ends <= now + self.margin:
                self.lost_at = now
                return False
            stale = ends - now < self.lease * 2 / 3
        if stale:
            self.renew(now)
            with self._lock:
                return self.lost_at is None and all(self._expires.get(row, now) > now + self.margin for row in ids)
        return True

    def renew(self, now: datetime) -> None:
        """Extend every held lease to ``now + lease`` (none is shortened), unless one has run
        out already: then the run has lost its lease (it was held up too long) and renews nothing."""
        with self._renewing:
            with self._lock:
                if self.lost_at is not None:
                    return
                if any(ends <= now for ends in self._expires.values()):
                    self.lost_at = now
                    return
                # Never shorten a lease: a thread that read the clock earlier than the last
                # claim or renewal (and was held up before renewing) leaves those rows alone.
                ids = sorted(row for row, ends in self._expires.items() if ends < now + self.lease)
            if not ids:
                return
            renewed = self._renew(ids, now)
            with self._lock:
                for row in renewed:
                    if row in self._expires:
                        self._expires[row] = now + self.lease

"""One pass over a dispatch's sendable rows with N connections: claim, send, group-commit,
and what a failing session means (the connection is retired and the rows wait, unharmed).

The protocols it works against (Ledger, Transport, Connection) and the Plan and policy it
follows belong to pipeline.py, which runs passes until nothing is due.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dispatch.delivery import verp
from dispatch.delivery.groupcommit import GroupCommitter, RateLimiter
from dispatch.delivery.leases import Held
from dispatch.delivery.trouble import relay_trouble
from dispatch.email.message import message_id, to_header
from dispatch.errors import LedgerError, TransportError
from dispatch.models import Delivery, Outcome, Recipient, State
from dispatch.values import RelayTrouble

if TYPE_CHECKING:
    from dispatch.delivery.pipeline import Clock, Connection, Ledger, Plan, SendPolicy, Transport

URGENT_POLL_SECONDS = 0.2



def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Sender:
    """Runs one pass over a dispatch's sendable rows with N connections."""

    def __init__(self, plan: Plan, ledger: Ledger, transport: Transport, policy: SendPolicy,
                 clock: Clock, owner: str, dispatch_id: int,
                 progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.plan, self.ledger, self.transport, self.policy = plan, ledger, transport, policy
        self.retry_now = policy.retry_now
        self.clock, self.owner, self.dispatch_id = clock, owner, dispatch_id
        self.progress = progress or (lambda n: None)
        self.stop = stop or threading.Event()
        self.limiter = RateLimiter(policy.rate_per_minute, clock, ledger, transport.endpoint, self.stop)
        self.work: queue.Queue[list[Delivery] | None] = queue.Queue()
        self.errors: list[BaseException] = []
        self.sent = 0
        self.attempted = 0
        self.lock = threading.Lock()
        self.paused_until: datetime | None = None  # set when the relay's quota is used up
        self.urgent_lock = threading.Lock()
        self.urgent_checked: datetime | None = None
        self.urgent_seen = False
        self.held = Held(policy.lease, lambda ids, now: self.ledger.renew(self.owner, ids, now, policy.lease))
        self.progressed = threading.Event()
        # Session trouble, shared by the workers (under self.lock):
        self.connected = 0  # workers holding a usable connection now
        self.failures_in_a_row = 0  # session failures since the last message went through
        self.session_pauses = 0  # pauses for want of any connection since the last success
        self.pause_reason: str | None = None  # why this pass paused for the relay's sake (the error, exact) ...
        self.pause_trouble: RelayTrouble | None = None  # ... and as the fact the ledger keeps
        self.session_permanent = False
        self.bounced: dict[int, int] = {}  # row id -> session failures it was part of
        self.pass_over = threading.Event()  # wakes workers backing off when the pass ends
        self.revoked = False  # the approval was revoked while sending
        self.lease_note: str | None = None  # the ledger's error on waking up after the lease ran out

    def run_pass(self) -> int:
        """Send every row due now; returns how many recipients were accepted.

        A run holds only what its connections can have in flight: one message being sent
        and one ready per connection. Claims happen while connections are busy (so none
        waits for the ledger), the leases of rows claimed but not yet recorded are renewed
        while they wait, and each worker checks its rows' leases just before it sends: a run
        held up past its lease (paused, starved) stops, and another node's takeover costs at
        most the messages that were in flight, one per connection.
        """
        committer = GroupCommitter(self.ledger, self.owner, self.clock)
        workers = [
            threading.Thread(target=self._worker, args=(committer,), name=f"smtp-{i}", daemon=True)
            for i in range(self.policy.connections)
        ]
        for worker in workers:
            worker.start()
        per_message = self.policy.recipients_per_message
        in_flight = self.policy.connections * per_message  # rows the connections can be sending at once
        lease = self.policy.lease
        renewed = self.clock.now()
        self.pass_over.clear()
        self.pause_reason = None
        self.pause_trouble = None
        self.pass_started = self.clock.now()
        try:
            while (not self.stop.is_set() and not self.errors and self.paused_until is None
                   and not self.held.lost and not committer.refused):
                if len(self.held) <= in_flight:
                    if self.plan.approval_id is not None and self.ledger.approval_revoked(self.plan.approval_id):
                        # What goes out must be approved while it goes out: nothing more is claimed.
                        self.revoked = True
                        self.stop.set()
                        break
                    granted = self.clock.now()  # the clock the lease is granted by, and checked against
                    rows = self.ledger.claim(self.dispatch_id, self.owner, granted, lease, 2 * in_flight - len(self.held),
                                             waited_since=self.pass_started if self.retry_now else None)
                    if rows:
                        self.held.add((r.id for r in rows), granted)
                        for start in range(0, len(rows), per_message):
                            self.work.put(rows[start:start + per_message])
                        continue
                    if not len(self.held):
                        break  # nothing due and nothing in flight: this pass is done
                self.progressed.wait(timeout=min(1.0, lease.total_seconds() / 3))
                self.progressed.clear()
                now = self.clock.now()
                if now - renewed >= lease / 3:
                    self.held.renew(now)
                    renewed = now
        except LedgerError as exc:
            self.errors.append(exc)
        finally:
            self.pass_over.set()
            for _ in workers:
                self.work.put(None)
            for worker in workers:
                worker.join()
            committer.close()
            if committer.refused and self.held.lost_at is None:
                self.held.lost_at = self.clock.now()
            if self.errors and all(isinstance(e, LedgerError) for e in self.errors) and self.held.ran_out(self.clock.now()):
                # Held up past the lease (paused): the server has since ended our idle session,
                # and that error is a consequence, not the news. The news is the lost lease.
                self.lease_note = str(self.errors[0])
                self.errors.clear()
            unrecorded = self.held.take_all()
            with self.lock:
                held, trouble = self.paused_until, self.pause_trouble
            try:
                if held is not None and trouble is not None and not self.errors and not self.held.lost:
                    # The relay, not these recipients, is the trouble: they wait, unharmed, with
                    # the reason, until the pause ends (a person's rerun takes them at once).
                    self.ledger.hold(self.owner, unrecorded, held, trouble, self.clock.now())
                    # ... and so do the rest of the dispatch's due recipients (this run claims only
                    # a few at a time): the same relay would refuse them too.
                    self.ledger.hold_waiting(self.dispatch_id, held, trouble, self.clock.now())
                else:
                    # Stopped, failed, or the lease lost: back to the queue at once (only the rows
                    # this run still owns), so nobody waits out a lease for a run that is gone.
                    self.ledger.release(self.owner, unrecorded)
            except LedgerError as exc:
                if not self.errors:
                    self.errors.append(exc)  # the ledger is failing: the run's end gives them back (pipeline)
        if self.errors:
            raise self.errors[0]
        return self.sent

    def _give_way_to_urgent(self) -> None:
        """Before each message, a non-urgent dispatch pauses while an urgent one (from this
        or another process on the same ledger) still has recipients to send to. The ledger
        is asked at most every URGENT_POLL_SECONDS, whatever the number of connections."""
        if self.plan.kind.startswith("urgent"):
            return
        while not self.stop.is_set():
            with self.urgent_lock:
                now = self.clock.now()
                if self.urgent_checked is None or (now - self.urgent_checked).total_seconds() >= URGENT_POLL_SECONDS:
                    self.urgent_seen = self.ledger.urgent_waiting(now)
                    self.urgent_checked = now
                waiting = self.urgent_seen
            if not waiting:
                return
            self.clock.sleep(URGENT_POLL_SECONDS)

    def _worker(self, committer: GroupCommitter) -> None:
        connection: Connection | None = None
        failures = 0  # this worker's session failures in a row
        try:
            while True:
                batch = self.work.get()
                if batch is None:
                    self.work.task_done()
                    return
                try:
                    if self.errors or self.stop.is_set() or self.paused_until is not None or self.held.lost:
                        continue
                    self._give_way_to_urgent()
                    if self.stop.is_set():
                        continue
                    try:
                        if connection is None or not connection.usable:
                            connection = self._reconnect(connection)
                        self.limiter.wait()
                        if self.stop.is_set():
                            continue  # stopped while waiting: the batch goes back unsent (released below)
                        if committer.refused or not self.held.holds([d.id for d in batch], self.clock.now()):
                            continue  # the lease ran out (this process was held up): not ours to send any more
                        results = self._send(connection, batch)
                    except TransportError as exc:
                        if connection is not None:
                            self._disconnect(connection)
                            connection = None
                        failures += 1
                        self._session_failed(batch, exc)
                        if not exc.permanent:
                            # Let the connections that work carry on; try this one again later.
                            self.pass_over.wait(min(2.0 ** (failures - 1), 30.0))
                        continue
                    failures = 0
                    with self.lock:
                        self.failures_in_a_row = 0
                        self.session_pauses = 0
                    # The lease ran out while this message was on its way (the process was paused
                    # mid-send): the outcome is recorded if the ledger still takes it, then the run stops.
                    self.held.ran_out(self.clock.now())
                    committer.record(results)
                    accepted = sum(1 for _, o, _ in results if o.state is State.SENT)
                    with self.lock:
                        self.sent += accepted
                        self.attempted += len(batch)
                    self.held.done(d.id for d in batch)
                    self.progress(len(batch))
                except BaseException as exc:
                    self.errors.append(exc)
                finally:
                    self.work.task_done()
                    self.progressed.set()
        finally:
            if connection is not None:
                self._disconnect(connection)

    def _reconnect(self, old: Connection | None) -> Connection:
        if old is not None:
            self._disconnect(old)
        connection = self.transport.connect()
        with self.lock:
            self.connected += 1
        return connection

    def _disconnect(self, connection: Connection) -> None:
        with self.lock:
            self.connected -= 1
        connection.close()

    def _session_failed(self, batch: list[Delivery], exc: TransportError) -> None:
        """A session failed (not a recipient): the batch goes to a connection that works, or,
        when none can be had, the dispatch pauses with backoff. No recipient is charged an
        attempt for it."""
        ids = [d.id for d in batch]
        now = self.clock.now()
        with self.lock:
            self.failures_in_a_row += 1
            for row in ids:
                self.bounced[row] = self.bounced.get(row, 0) + 1
            nobody_gets_through = self.connected <= 0 and self.failures_in_a_row >= max(2, self.policy.connections)
            if exc.permanent or nobody_gets_through:
                if exc.permanent:
                    self.session_permanent = True
                    until = now + self.policy.session_pause
                else:
                    backoff = self.policy.session_backoff or (5,)
                    until = now + timedelta(seconds=backoff[min(self.session_pauses, len(backoff) - 1)])
                    self.session_pauses += 1
                self.paused_until = max(self.paused_until or until, until)
                self.pause_reason = str(exc)
                self.pause_trouble = relay_trouble(exc)
                return  # the batch stays outstanding: held with the rest when the pass ends
            poisoned = any(self.bounced[row] >= 3 for row in ids)
        if poisoned:
            # The same rows broke three sessions: hold them a while instead of breaking more.
            backoff = self.policy.session_backoff or (5,)
            self.ledger.hold(self.owner, ids, now + timedelta(seconds=backoff[-1]), relay_trouble(exc), now)
            self.held.done(ids)
            return
        self.work.put(batch)

    def _send(self, connection: Connection, batch: list[Delivery]) -> list[tuple[int, Outcome, datetime | None]]:
        plan = self.plan
        key = None  # a Bcc batch has no one person's earlier Message-ID to refer to
        if len(batch) == 1:
            recipient = Recipient(address=batch[0].address, name=batch[0].name, key=batch[0].key)
            header, mid, key = to_header([recipient]), batch[0].message_id, batch[0].key
        else:
            header = to_header([], group_name=plan.group_name)
            mid = message_id(plan.name, "|".join(sorted(d.key for d in batch)), plan.prepared.domain)
        data = plan.prepared.for_recipients(header, mid, key)
        envelope = plan.envelope_sender
        if plan.verp_key is not None and len(batch) == 1:
            envelope = verp.address(envelope, self.dispatch_id, batch[0].id, plan.verp_key)
        outcomes = connection.send(envelope, [d.address for d in batch], data)
        now = self.clock.now()
        results = []
        for delivery in batch:
            outcome = outcomes.get(delivery.address, Outcome(State.DEFERRED, "no reply recorded for this recipient"))
            results.append(self._schedule(delivery, outcome, now))
        return results

    def _schedule(self, delivery: Delivery, outcome: Outcome, now: datetime) -> tuple[int, Outcome, datetime | None]:
        """Deferred and unknown rows get their next attempt, or fail when the window closes."""
        if outcome.state not in (State.DEFERRED, State.UNKNOWN):
            return delivery.id, outcome, None
        attempt = delivery.attempts + 1
        if outcome.quota_exceeded:
            # The mailbox's rolling daily quota is used up: every further message would be
            # refused too. Pause the dispatch; the window does not count this wait.
            resume = now + self.policy.quota_wait
            with self.lock:
                self.paused_until = max(self.paused_until or resume, resume)
            return delivery.id, outcome, resume
        schedule = self.policy.retry_minutes or (1,)
        delay = timedelta(minutes=schedule[min(attempt - 1, len(schedule) - 1)])
        first = delivery.first_attempt_at or now
        if attempt > 1 and now + delay - first > self.policy.retry_window:
            return delivery.id, Outcome(State.FAILED, f"{outcome.reply} (gave up after {attempt} attempts)"), None
        return delivery.id, outcome, now + delay

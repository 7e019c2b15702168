"""One pass over a dispatch's sendable rows with N connections: claim, send, group-commit,
and what a failing session means (the connection is retired and the rows wait, unharmed).

A pass returns what happened (``PassResult``); the pipeline (pipeline.py), which runs passes
until nothing is due, decides from it. The protocols it works against are delivery's ports
(ports.py); the plan and policy it follows are plan.py's.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dispatch.delivery import verp
from dispatch.delivery.clock import Clock
from dispatch.delivery.groupcommit import GroupCommitter, RateLimiter
from dispatch.delivery.leases import Held
from dispatch.delivery.plan import Plan, SendPolicy
from dispatch.delivery.ports import Connection, DeliveryLedger, Transport
from dispatch.delivery.trouble import relay_trouble
from dispatch.email.message import message_id, to_header
from dispatch.errors import LedgerError, TransportError
from dispatch.models import Delivery, Outcome, Recipient, State
from dispatch.values import DispatchKind, RelayTrouble

URGENT_POLL_SECONDS = 0.2


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Pause:
    """The dispatch waits until ``until``: the relay refused sessions (``reason``, its last
    refusal), or Exchange's daily quota is used up (``reason`` None)."""

    until: datetime
    reason: str | None = None
    permanent: bool = False  # the refusal needs fixing by someone, not just time
    trouble: RelayTrouble | None = None  # the refusal as the fact the ledger keeps with those it held


@dataclass(frozen=True)
class PassResult:
    """What one pass did, for the pipeline to decide what comes next."""

    accepted: int  # recipients the server accepted in this pass
    attempted: int  # recipients tried in this pass, whatever the outcome
    retried: int  # deferred or unknown outcomes given a later attempt in this pass ...
    next_retry: datetime | None  # ... and the earliest of those attempts
    pause: Pause | None  # the dispatch must wait for the relay's sake
    stopped: bool  # asked to stop (or the approval was revoked): nothing more is sent
    revoked: bool  # the approval was revoked while sending
    lease_lost: bool  # a lease of this run ran out: another node may have its rows now
    lease_note: str | None  # the ledger's error on waking up after the lease ran out


@dataclass
class _Pass:
    """What the workers of one pass share (under ``lock`` where they write it)."""

    retry_now: bool  # claim rows held for later too (a person asked, or the time allowed ends)
    started: datetime
    committer: GroupCommitter
    lock: threading.Lock = field(default_factory=threading.Lock)
    work: queue.Queue[list[Delivery] | None] = field(default_factory=queue.Queue)
    errors: list[BaseException] = field(default_factory=list)
    progressed: threading.Event = field(default_factory=threading.Event)  # a batch is done: claim more
    over: threading.Event = field(default_factory=threading.Event)  # wakes workers backing off
    accepted: int = 0
    attempted: int = 0
    retried: int = 0
    next_retry: datetime | None = None
    pause_until: datetime | None = None
    pause_reason: str | None = None  # the relay's last refusal of a session, if that paused the pass ...
    pause_trouble: RelayTrouble | None = None  # ... and as a fact
    permanent: bool = False
    revoked: bool = False
    connected: int = 0  # workers holding a usable connection now
    failures_in_a_row: int = 0  # session failures since the last message went through
    bounced: dict[int, int] = field(default_factory=dict)  # row id -> session failures it was part of

    def pause(self, until: datetime) -> None:
        with self.lock:
            self.pause_until = max(self.pause_until or until, until)

    @property
    def paused(self) -> bool:
        return self.pause_until is not None


class _UrgentPoll:
    """Whether an urgent dispatch is still sending, asked of the ledger at most every
    URGENT_POLL_SECONDS however many connections ask."""

    def __init__(self, ledger: DeliveryLedger, clock: Clock) -> None:
        self.ledger, self.clock = ledger, clock
        self._lock = threading.Lock()
        self._checked: datetime | None = None
        self._seen = False

    def waiting(self) -> bool:
        with self._lock:
            now = self.clock.now()
            if self._checked is None or (now - self._checked).total_seconds() >= URGENT_POLL_SECONDS:
                self._seen = self.ledger.urgent_waiting(now)
                self._checked = now
            return self._seen


class Sender:
    """Runs passes over a dispatch's sendable rows with N connections.

    It keeps between passes only what outlives one: the leases this run holds (and whether
    one was lost), how far the backoff for an unreachable relay has grown, and the urgent
    poll. Everything else belongs to a pass, and what a pass did is its result."""

    def __init__(self, plan: Plan, ledger: DeliveryLedger, transport: Transport, policy: SendPolicy,
                 clock: Clock, owner: str, dispatch_id: int,
                 progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.plan, self.ledger, self.transport, self.policy = plan, ledger, transport, policy
        self.clock, self.owner, self.dispatch_id = clock, owner, dispatch_id
        self.progress = progress or (lambda n: None)
        self.stop = stop or threading.Event()
        self.limiter = RateLimiter(policy.rate_per_minute, clock, ledger, transport.endpoint, self.stop)
        self.held = Held(policy.lease, lambda ids, now: self.ledger.renew(self.owner, ids, now, policy.lease))
        self.urgent = None if plan.kind_of is DispatchKind.URGENT else _UrgentPoll(ledger, clock)
        self._session_pauses = 0  # pauses for want of any connection since the last success

    @property
    def lease_lost_at(self) -> datetime | None:
        """When this run found a lease of its own had run out (None: it never did)."""
        return self.held.lost_at

    def run_pass(self, *, retry_now: bool = False) -> PassResult:
        """Send every row due now (``retry_now``: and those held for later); what it did.

        A run holds only what its connections can have in flight: one message being sent
        and one ready per connection. Claims happen while connections are busy (so none
        waits for the ledger), the leases of rows claimed but not yet recorded are renewed
        while they wait, and each worker checks its rows' leases just before it sends: a run
        held up past its lease (paused, starved) stops, and another node's takeover costs at
        most the messages that were in flight, one per connection.
        """
        current = _Pass(retry_now=retry_now, started=self.clock.now(),
                        committer=GroupCommitter(self.ledger, self.owner, self.clock))
        workers = [
            threading.Thread(target=self._worker, args=(current,), name=f"smtp-{i}", daemon=True)
            for i in range(self.policy.connections)
        ]
        for worker in workers:
            worker.start()
        lease_note: str | None = None
        try:
            self._claim_until_done(current)
        except LedgerError as exc:
            current.errors.append(exc)
        finally:
            lease_note = self._end_pass(current, workers)
        if current.errors:
            raise current.errors[0]
        pause = None
        if current.pause_until is not None:
            pause = Pause(current.pause_until, current.pause_reason, current.permanent, current.pause_trouble)
        return PassResult(accepted=current.accepted, attempted=current.attempted, retried=current.retried,
                          next_retry=current.next_retry, pause=pause, stopped=self.stop.is_set(),
                          revoked=current.revoked, lease_lost=self.held.lost, lease_note=lease_note)

    def _claim_until_done(self, current: _Pass) -> None:
        per_message = self.policy.recipients_per_message
        in_flight = self.policy.connections * per_message  # rows the connections can be sending at once
        lease = self.policy.lease
        renewed = self.clock.now()
        committer = current.committer
        while (not self.stop.is_set() and not current.errors and not current.paused
               and not self.held.lost and not committer.refused):
            if len(self.held) <= in_flight:
                if self.plan.approval_id is not None and self.ledger.approval_revoked(self.plan.approval_id):
                    # What goes out must be approved while it goes out: nothing more is claimed.
                    current.revoked = True
                    self.stop.set()
                    return
                granted = self.clock.now()  # the clock the lease is granted by, and checked against
                rows = self.ledger.claim(self.dispatch_id, self.owner, granted, lease, 2 * in_flight - len(self.held),
                                         waited_since=current.started if current.retry_now else None)
                if rows:
                    self.held.add((r.id for r in rows), granted)
                    for start in range(0, len(rows), per_message):
                        current.work.put(rows[start:start + per_message])
                    continue
                if not len(self.held):
                    return  # nothing due and nothing in flight: this pass is done
            current.progressed.wait(timeout=min(1.0, lease.total_seconds() / 3))
            current.progressed.clear()
            now = self.clock.now()
            if now - renewed >= lease / 3:
                self.held.renew(now)
                renewed = now

    def _end_pass(self, current: _Pass, workers: list[threading.Thread]) -> str | None:
        """Stop the workers, and hold or give back what this pass claimed but did not record.
        Returns the ledger's error, if it came only after this run's lease ran out."""
        current.over.set()
        for _ in workers:
            current.work.put(None)
        for worker in workers:
            worker.join()
        current.committer.close()
        lease_note: str | None = None
        if current.committer.refused and self.held.lost_at is None:
            self.held.lost_at = self.clock.now()
        errors = current.errors
        if errors and all(isinstance(e, LedgerError) for e in errors) and self.held.ran_out(self.clock.now()):
            # Held up past the lease (paused): the server has since ended our idle session,
            # and that error is a consequence, not the news. The news is the lost lease.
            lease_note = str(errors[0])
            errors.clear()
        unrecorded = self.held.take_all()
        with current.lock:
            held, trouble = current.pause_until, current.pause_trouble
        try:
            if held is not None and trouble is not None and not errors and not self.held.lost:
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
            if not errors:
                errors.append(exc)  # the ledger is failing: the run's end gives them back (pipeline)
        return lease_note

    def _give_way_to_urgent(self) -> None:
        """Before each message, a non-urgent dispatch pauses while an urgent one (from this
        or another process on the same ledger) still has recipients to send to."""
        if self.urgent is None:
            return
        while not self.stop.is_set() and self.urgent.waiting():
            self.clock.sleep(URGENT_POLL_SECONDS)

    def _worker(self, current: _Pass) -> None:
        connection: Connection | None = None
        failures = 0  # this worker's session failures in a row
        try:
            while True:
                batch = current.work.get()
                if batch is None:
                    current.work.task_done()
                    return
                try:
                    if current.errors or self.stop.is_set() or current.paused or self.held.lost:
                        continue
                    self._give_way_to_urgent()
                    if self.stop.is_set():
                        continue
                    try:
                        if connection is None or not connection.usable:
                            connection = self._reconnect(current, connection)
                        self.limiter.wait()
                        if self.stop.is_set():
                            continue  # stopped while waiting: the batch goes back unsent (released below)
                        if current.committer.refused or not self.held.holds([d.id for d in batch], self.clock.now()):
                            continue  # the lease ran out (this process was held up): not ours to send any more
                        results = self._send(current, connection, batch)
                    except TransportError as exc:
                        if connection is not None:
                            self._disconnect(current, connection)
                            connection = None
                        failures += 1
                        self._session_failed(current, batch, exc)
                        if not exc.permanent:
                            # Let the connections that work carry on; try this one again later.
                            current.over.wait(min(2.0 ** (failures - 1), 30.0))
                        continue
                    failures = 0
                    with current.lock:
                        current.failures_in_a_row = 0
                        self._session_pauses = 0
                    # The lease ran out while this message was on its way (the process was paused
                    # mid-send): the outcome is recorded if the ledger still takes it, then the run stops.
                    self.held.ran_out(self.clock.now())
                    current.committer.record(results)
                    accepted = sum(1 for _, o, _ in results if o.state is State.SENT)
                    retries = [when for _, o, when in results if when is not None]
                    with current.lock:
                        current.accepted += accepted
                        current.attempted += len(batch)
                        current.retried += len(retries)
                        if retries:
                            current.next_retry = min([*retries, *([current.next_retry] if current.next_retry else [])])
                    self.held.done(d.id for d in batch)
                    self.progress(len(batch))
                except BaseException as exc:
                    current.errors.append(exc)
                finally:
                    current.work.task_done()
                    current.progressed.set()
        finally:
            if connection is not None:
                self._disconnect(current, connection)

    def _reconnect(self, current: _Pass, old: Connection | None) -> Connection:
        if old is not None:
            self._disconnect(current, old)
        connection = self.transport.connect()
        with current.lock:
            current.connected += 1
        return connection

    def _disconnect(self, current: _Pass, connection: Connection) -> None:
        with current.lock:
            current.connected -= 1
        connection.close()

    def _session_failed(self, current: _Pass, batch: list[Delivery], exc: TransportError) -> None:
        """A session failed (not a recipient): the batch goes to a connection that works, or,
        when none can be had, the dispatch pauses with backoff. No recipient is charged an
        attempt for it."""
        ids = [d.id for d in batch]
        now = self.clock.now()
        with current.lock:
            current.failures_in_a_row += 1
            for row in ids:
                current.bounced[row] = current.bounced.get(row, 0) + 1
            nobody_gets_through = current.connected <= 0 and current.failures_in_a_row >= max(2, self.policy.connections)
            if exc.permanent or nobody_gets_through:
                if exc.permanent:
                    current.permanent = True
                    until = now + self.policy.session_pause
                else:
                    backoff = self.policy.session_backoff or (5,)
                    until = now + timedelta(seconds=backoff[min(self._session_pauses, len(backoff) - 1)])
                    self._session_pauses += 1
                current.pause_until = max(current.pause_until or until, until)
                current.pause_reason = str(exc)
                current.pause_trouble = relay_trouble(exc)
                return  # the batch stays outstanding: held with the rest when the pass ends
            poisoned = any(current.bounced[row] >= 3 for row in ids)
        if poisoned:
            # The same rows broke three sessions: hold them a while instead of breaking more.
            backoff = self.policy.session_backoff or (5,)
            self.ledger.hold(self.owner, ids, now + timedelta(seconds=backoff[-1]), relay_trouble(exc), now)
            self.held.done(ids)
            return
        current.work.put(batch)

    def _send(self, current: _Pass, connection: Connection, batch: list[Delivery]) -> list[tuple[int, Outcome, datetime | None]]:
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
            results.append(self._schedule(current, delivery, outcome, now))
        return results

    def _schedule(self, current: _Pass, delivery: Delivery, outcome: Outcome, now: datetime) -> tuple[int, Outcome, datetime | None]:
        """Deferred and unknown rows get their next attempt, or fail when the window closes."""
        if outcome.state not in (State.DEFERRED, State.UNKNOWN):
            return delivery.id, outcome, None
        attempt = delivery.attempts + 1
        if outcome.quota_exceeded:
            # The mailbox's rolling daily quota is used up: every further message would be
            # refused too. Pause the dispatch; the window does not count this wait.
            resume = now + self.policy.quota_wait
            current.pause(resume)
            return delivery.id, outcome, resume
        schedule = self.policy.retry_minutes or (1,)
        delay = timedelta(minutes=schedule[min(attempt - 1, len(schedule) - 1)])
        first = delivery.first_attempt_at or now
        if attempt > 1 and now + delay - first > self.policy.retry_window:
            return delivery.id, Outcome(State.FAILED, f"{outcome.reply} (gave up after {attempt} attempts)"), None
        return delivery.id, outcome, now + delay

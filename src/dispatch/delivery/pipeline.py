"""One dispatch: claim recipients from the ledger, send over N connections, record each outcome.

The ledger is the source of truth. Rows are claimed (leased) and committed before
any connection is used; each accepted recipient is committed before its connection
sends the next message (group commit across connections keeps that cheap). A crash
at any moment loses nobody: unrecorded rows are still sendable and are sent again by
the rerun, at most one message per connection in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from dispatch.delivery.clock import Clock, StoppableClock
from dispatch.delivery.plan import LEASE, Plan, SendPolicy
from dispatch.delivery.ports import DeliveryLedger, DispatchRow, Transport
from dispatch.delivery.sender import PassResult, Sender, alive
from dispatch.email.message import message_id
from dispatch.errors import DispatchError, LedgerBusy, LedgerError
from dispatch.models import NewRecipient, State
from dispatch.values import RelayTrouble

T = TypeVar("T")

# Re-exported: what the callers of ``run`` hand it, defined beside what uses them.
__all__ = ["LEASE", "Clock", "Plan", "Result", "SendPolicy", "StoppableClock", "Transport", "node_name", "open_plan", "run"]


def node_name() -> str:
    """This process, as the ledger shows it: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Result:
    dispatch: str
    created: bool
    already_sent: int
    sent_now: int
    counts: dict[str, int]
    errors: list[str] = field(default_factory=list)
    next_attempt: datetime | None = None
    paused_until: datetime | None = None
    attempted: int = 0  # recipients this run tried, whatever the outcome
    finished_now: bool = False  # this run completed the dispatch (no other run did first)
    session_error: str | None = None  # the relay's last refusal of a session, if it ended this run's sending
    session_permanent: bool = False  # ... and it needs fixing (not just time)
    session_trouble: RelayTrouble | None = None  # ... as a fact
    others_sending: bool = False  # another run holds leases on this dispatch now
    notes: list[str] = field(default_factory=list)  # what the caller decided beforehand, for the operator
    revoked: bool = False  # stopped because the approval was revoked meanwhile
    # This run was held up past its lease (paused, starved) and stopped sending: another node
    # may have its rows; ``sent_now`` counts only what the ledger took from it.
    lease_lost_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return all(self.counts.get(s.value, 0) == 0 for s in State if s not in (State.SENT, State.BOUNCED))


def open_plan(plan: Plan, ledger: DeliveryLedger, clock: Clock, stop: threading.Event | None = None,
              ) -> tuple[DispatchRow, bool, int]:
    """Create the dispatch (or find it) and add any recipient it does not have yet. Another
    node adding the same rows holds their locks until it commits: this waits for it (a
    frozen node's session is ended by the server's idle_in_transaction timeout), trying
    again after each lock timeout until ``stop``."""
    now = clock.now()
    record, created = _patiently(lambda: ledger.open_dispatch(
        plan.name, plan.edition_date, plan.revision, plan.kind, plan.subject,
        plan.source, plan.created_by, now, content_hash=plan.content_hash,
        approved_by=plan.approved_by, approved_at=plan.approved_at, approval_id=plan.approval_id,
        by_front_matter=plan.by_front_matter,
        lists=plan.lists,
    ), clock, stop)
    domain = plan.prepared.domain

    def rows() -> Iterator[NewRecipient]:
        # A generator: the ledger inserts in chunks, so 100,000 rows are never all in memory twice.
        return itertools.chain(
            (NewRecipient(key=r.key, address=r.address, name=r.name, message_id=message_id(plan.name, r.key, domain))
             for r in plan.recipients),
            (NewRecipient(key=entry.key, address=entry.address, name="", message_id="", state=State.FAILED,
                          reply=entry.reason)
             for entry in plan.failed_inputs),
        )

    before = ledger.counts(record.id)
    _patiently(lambda: ledger.add_recipients(record.id, rows(), now), clock, stop)
    return record, created, before.get(State.SENT.value, 0)


def _patiently(operation: Callable[[], T], clock: Clock, stop: threading.Event | None) -> T:
    """``operation`` again each time a lock it needs stays held past the lock timeout (all of
    it was rolled back), until it gets through or ``stop`` is set."""
    while True:
        try:
            return operation()
        except LedgerBusy:
            if stop is not None and stop.is_set():
                raise
            clock.sleep(0.2)
            if stop is not None and stop.is_set():
                raise


def run(plan: Plan, ledger: DeliveryLedger, transport: Transport, policy: SendPolicy, clock: Clock,
        progress: Callable[[int], None] | None = None, stop: threading.Event | None = None,
        owner: str | None = None, on_pause: Callable[[str, bool, datetime], None] | None = None) -> Result:
    """Open (or resume) the dispatch and send until nothing is due within ``policy.linger``.

    ``on_pause(reason, permanent, until)`` is called when the relay's trouble pauses the
    dispatch (the caller may alert); the pause is waited out only with ``wait_out_pauses``
    or when it is not permanent."""
    owner = owner or node_name()
    stop = stop or threading.Event()
    ledger.reap_dead_leases(socket.gethostname(), alive)
    record, created, already_sent = open_plan(plan, ledger, clock, stop)
    sender = Sender(plan, ledger, transport, policy, clock, owner, record.id, progress, stop)
    try:
        passes = _passes(sender, ledger, policy, clock, record.id, stop, on_pause)
    except LedgerError:
        # The run is over: what it still holds goes back now (if the ledger answers), so a
        # rerun does not wait out the lease; if not, a rerun from this process frees them.
        with contextlib.suppress(LedgerError):
            ledger.release(owner)
        raise
    counts = ledger.counts(record.id)
    finished_now = False
    if all(counts.get(s.value, 0) == 0 for s in (State.PENDING, State.DEFERRED, State.UNKNOWN)):
        finished_now = ledger.finish_dispatch(record.id, clock.now())
    unfinished = not finished_now and any(counts.get(s.value, 0) for s in (State.PENDING, State.DEFERRED, State.UNKNOWN))
    errors = passes.errors
    if passes.session_error is not None and unfinished:
        errors.append(passes.session_error)
    if passes.lease_note is not None:
        errors.append(passes.lease_note)
    return Result(dispatch=record.name, created=created, already_sent=already_sent,
                  sent_now=ledger.sent_by(record.id, owner), counts=counts, errors=errors,
                  next_attempt=ledger.next_due(record.id), paused_until=passes.paused_until,
                  attempted=passes.attempted, finished_now=finished_now,
                  session_error=passes.session_error if unfinished else None,
                  session_permanent=passes.session_permanent and unfinished,
                  session_trouble=passes.session_trouble if passes.session_error is not None and unfinished else None,
                  others_sending=unfinished and ledger.leased_by_others(record.id, owner, clock.now()) > 0,
                  revoked=passes.revoked, lease_lost_at=sender.lease_lost_at)


@dataclass
class _Passes:
    """What the passes of one run add up to."""

    errors: list[str] = field(default_factory=list)
    attempted: int = 0
    session_error: str | None = None  # the relay's refusal of a session in the last pass
    session_permanent: bool = False  # ... which needs fixing (not just time)
    session_trouble: RelayTrouble | None = None  # ... as a fact
    paused_until: datetime | None = None  # the end of the last pause
    revoked: bool = False
    lease_note: str | None = None

    def add(self, result: PassResult) -> None:
        self.attempted += result.attempted
        self.session_error = result.pause.reason if result.pause is not None else None
        self.session_permanent = result.pause is not None and result.pause.permanent
        self.session_trouble = result.pause.trouble if result.pause is not None else None
        self.revoked = self.revoked or result.revoked
        self.lease_note = result.lease_note or self.lease_note
        if result.pause is not None:
            self.paused_until = result.pause.until


def _passes(sender: Sender, ledger: DeliveryLedger, policy: SendPolicy, clock: Clock, dispatch_id: int,
            stop: threading.Event, on_pause: Callable[[str, bool, datetime], None] | None) -> _Passes:
    """Passes until nothing is due within ``policy.linger``, each decided from the last one's result."""
    passes = _Passes()
    deadline = clock.now() + policy.linger
    retry_now = policy.retry_now
    while True:
        try:
            result = sender.run_pass(retry_now=retry_now)
        except LedgerError:
            raise  # the record itself is in doubt: stop here, say so, record nothing more
        except DispatchError as exc:
            passes.errors.append(str(exc))
            passes.session_permanent = False
            break
        passes.add(result)
        retry_now = False  # later passes keep to the schedule
        pause = result.pause
        if pause is not None and pause.reason is not None and on_pause is not None:
            on_pause(pause.reason, pause.permanent, pause.until)  # e.g. serve's alert
        if result.stopped or result.lease_lost:
            break  # a run that lost its lease sends nothing more: another node has taken over
        due = ledger.next_due(dispatch_id)
        if pause is not None:
            if pause.permanent and not policy.wait_out_pauses:
                break  # someone must fix the relay's refusal: no point waiting in the foreground
            due = max(due or pause.until, pause.until)
            if pause.reason is not None and due > deadline > clock.now():
                due = deadline  # one last try when the time allowed runs out, not a wait past it
                retry_now = True  # ... of the rows held for later than that
        else:
            due = _stalled_leases_end(ledger, policy, clock, dispatch_id, sender.owner, due)
        if due is None or due > deadline:
            break
        clock.sleep(max(0.0, (due - clock.now()).total_seconds()))
        if stop.is_set():
            break
        passes.session_permanent = False
    return passes


def _stalled_leases_end(ledger: DeliveryLedger, policy: SendPolicy, clock: Clock, dispatch_id: int, owner: str,
                        due: datetime | None) -> datetime | None:
    """When to look again for rows another run holds but has stopped renewing. A live run
    renews every third of the lease, so its leases keep more than half of it; a lease
    nearer its end belongs to a node that is paused or gone, and this run takes its rows
    over when the lease ends instead of leaving them for a later run."""
    now = clock.now()
    if ledger.due_unleased(dispatch_id, now):
        # Due, free, and yet this pass could not claim them: another transaction has them
        # locked (a node frozen mid-claim or mid-record; the server ends its session soon).
        soon = now + timedelta(seconds=1)
        return min(due, soon) if due is not None else soon
    held, first, _ = ledger.others_leases_end(dispatch_id, owner)
    if not held or first is None or first - now > policy.lease / 2:
        return due  # nobody else holds rows, or a live run does: it sends them
    first = max(first, now + timedelta(seconds=1))  # a lease that ran out: claim it on the next pass
    return min(due, first) if due is not None else first

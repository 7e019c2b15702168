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
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

from dispatch.delivery.sender import Sender, alive
from dispatch.email.message import PreparedMessage, message_id
from dispatch.errors import DispatchError, LedgerBusy, LedgerError
from dispatch.models import Delivery, NewRecipient, Outcome, Recipient, State
from dispatch.values import RelayTrouble

LEASE = timedelta(minutes=10)
T = TypeVar("T")


# -- what the pipeline needs from the outside (narrow, owned here) --------------


class Connection(Protocol):
    usable: bool

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    endpoint: str

    def connect(self) -> Connection: ...


class DispatchRow(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


class Ledger(Protocol):
    def open_dispatch(self, name: str, edition_date: date, revision: int, kind: str, subject: str,
                      source: str, created_by: str, now: datetime, *, content_hash: str | None = None,
                      approved_by: str | None = None, approved_at: datetime | None = None,
                      approval_id: int | None = None, lists: tuple[str, ...] = (),
                      ) -> tuple[DispatchRow, bool]: ...
    def approval_revoked(self, approval_id: int) -> bool: ...
    def add_recipients(self, dispatch_id: int, recipients: Iterable[NewRecipient], now: datetime) -> int: ...
    def claim(self, dispatch_id: int, owner: str, now: datetime, lease: timedelta, limit: int,
              waited_since: datetime | None = None) -> list[Delivery]: ...
    def release(self, owner: str, ids: Sequence[int] | None = None) -> int: ...
    def hold(self, owner: str, ids: Sequence[int], until: datetime, trouble: RelayTrouble, now: datetime) -> None: ...
    def leased_by_others(self, dispatch_id: int, owner: str, now: datetime) -> int: ...
    def hold_waiting(self, dispatch_id: int, until: datetime, trouble: RelayTrouble, now: datetime) -> int: ...
    def due_unleased(self, dispatch_id: int, now: datetime) -> int: ...
    def renew(self, owner: str, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]: ...
    def sent_by(self, dispatch_id: int, owner: str) -> int: ...
    def others_leases_end(self, dispatch_id: int, owner: str) -> tuple[int, datetime | None, datetime | None]: ...
    def record(self, owner: str, results: Sequence[tuple[int, Outcome, datetime | None]], now: datetime) -> int: ...
    def end_writer(self) -> None: ...
    def counts(self, dispatch_id: int) -> dict[str, int]: ...
    def next_due(self, dispatch_id: int) -> datetime | None: ...
    def reap_dead_leases(self, host: str, alive: Callable[[int], bool]) -> int: ...
    def urgent_waiting(self, now: datetime) -> bool: ...
    def reserve_slot(self, relay: str, interval: timedelta, clock: Callable[[], datetime]) -> datetime: ...
    def finish_dispatch(self, dispatch_id: int, now: datetime) -> bool: ...


def node_name() -> str:
    """This process, as the ledger shows it: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Clock:
    """Wall clock and sleep, injectable so tests can move time instead of waiting."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class StoppableClock(Clock):
    """The wall clock, whose sleep (a rate slot, a retry wait) ends at once on ``stop``:
    a stopped send must not sit out a wait before it records what it has and exits."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)


# -- the plan -------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one dispatch sends, decided before anything is sent."""

    name: str
    edition_date: date
    revision: int
    kind: str
    subject: str
    source: str
    created_by: str
    recipients: tuple[Recipient, ...]
    failed_inputs: tuple[tuple[str, str, str], ...]  # (key, address, reason) recorded as failed
    prepared: PreparedMessage
    envelope_sender: str
    group_name: str
    content_hash: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_id: int | None = None  # a recorded approval: revoking it stops the sending
    lists: tuple[str, ...] = ()
    verp_key: str | None = None  # set: each message's envelope sender carries a VERP token (verp.py)


@dataclass(frozen=True)
class SendPolicy:
    connections: int = 1
    recipients_per_message: int = 1
    rate_per_minute: float = 0
    retry_minutes: tuple[float, ...] = (1, 2, 5, 10, 30)
    retry_window: timedelta = timedelta(hours=24)
    linger: timedelta = timedelta(0)  # how long this run waits for due retries before handing over
    quota_wait: timedelta = timedelta(hours=1)  # Exchange's daily quota: wait, do not fail
    lease: timedelta = LEASE  # how long claimed rows stay ours without renewal
    # Session trouble (the relay, not a recipient): how long the dispatch waits before the
    # next try when no connection can be had, growing while it lasts ...
    session_backoff: tuple[float, ...] = (5, 10, 30, 60, 120, 300)
    # ... and how long it pauses after a permanent refusal (5xx to MAIL FROM, refused
    # credentials, a TLS failure), which someone has to fix.
    session_pause: timedelta = timedelta(minutes=10)
    wait_out_pauses: bool = False  # serve waits out such a pause until its deadline; a command does not
    retry_now: bool = False  # the first pass also takes rows whose next attempt is later (a person asked)


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


def open_plan(plan: Plan, ledger: Ledger, clock: Clock, stop: threading.Event | None = None,
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
        lists=plan.lists,
    ), clock, stop)
    domain = plan.prepared.domain

    def rows() -> Iterator[NewRecipient]:
        # A generator: the ledger inserts in chunks, so 100,000 rows are never all in memory twice.
        return itertools.chain(
            (NewRecipient(key=r.key, address=r.address, name=r.name, message_id=message_id(plan.name, r.key, domain))
             for r in plan.recipients),
            (NewRecipient(key=key, address=address, name="", message_id="", state=State.FAILED, reply=reason)
             for key, address, reason in plan.failed_inputs),
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


def run(plan: Plan, ledger: Ledger, transport: Transport, policy: SendPolicy, clock: Clock,
        progress: Callable[[int], None] | None = None, stop: threading.Event | None = None,
        owner: str | None = None, on_pause: Callable[[str, bool, datetime], None] | None = None) -> Result:
    """Open (or resume) the dispatch and send until nothing is due within ``policy.linger``.

    ``on_pause(reason, permanent, until)`` is called when the relay's trouble pauses the
    dispatch (the caller may alert); the pause is waited out only with ``wait_out_pauses``
    or when it is not permanent."""
    owner = owner or node_name()
    ledger.reap_dead_leases(socket.gethostname(), alive)
    record, created, already_sent = open_plan(plan, ledger, clock, stop)
    sender = Sender(plan, ledger, transport, policy, clock, owner, record.id, progress, stop)
    try:
        errors, session_error, pause_reported = _passes(sender, ledger, policy, clock, record.id, on_pause)
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
    if session_error is not None and unfinished:
        errors.append(session_error)
    if sender.lease_note is not None:
        errors.append(sender.lease_note)
    return Result(dispatch=record.name, created=created, already_sent=already_sent,
                  sent_now=ledger.sent_by(record.id, owner), counts=counts, errors=errors,
                  next_attempt=ledger.next_due(record.id), paused_until=pause_reported,
                  attempted=sender.attempted, finished_now=finished_now,
                  session_error=session_error if unfinished else None,
                  session_permanent=sender.session_permanent and unfinished,
                  session_trouble=sender.pause_trouble if session_error is not None and unfinished else None,
                  others_sending=unfinished and ledger.leased_by_others(record.id, owner, clock.now()) > 0,
                  revoked=sender.revoked, lease_lost_at=sender.held.lost_at)


def _passes(sender: Sender, ledger: Ledger, policy: SendPolicy, clock: Clock, dispatch_id: int,
            on_pause: Callable[[str, bool, datetime], None] | None) -> tuple[list[str], str | None, datetime | None]:
    """Passes until nothing is due within ``policy.linger``: (errors, the relay's last
    refusal of a session, the end of the last pause)."""
    errors: list[str] = []
    pause_reported: datetime | None = None
    session_error: str | None = None
    deadline = clock.now() + policy.linger
    while True:
        try:
            sender.run_pass()
        except LedgerError:
            raise  # the record itself is in doubt: stop here, say so, record nothing more
        except DispatchError as exc:
            errors.append(str(exc))
            break
        sender.retry_now = False  # later passes keep to the schedule
        session_error = sender.pause_reason
        if session_error is not None and sender.paused_until is not None and on_pause is not None:
            on_pause(session_error, sender.session_permanent, sender.paused_until)  # e.g. serve's alert
        if sender.stop.is_set() or sender.held.lost:
            break  # a run that lost its lease sends nothing more: another node has taken over
        due = ledger.next_due(dispatch_id)
        paused, sender.paused_until = sender.paused_until, None
        if paused is not None:
            pause_reported = paused
            if sender.session_permanent and not policy.wait_out_pauses:
                break  # someone must fix the relay's refusal: no point waiting in the foreground
            due = max(due or paused, paused)
            if sender.pause_reason is not None and due > deadline > clock.now():
                due = deadline  # one last try when the time allowed runs out, not a wait past it
                sender.retry_now = True  # ... of the rows held for later than that
        else:
            due = _stalled_leases_end(ledger, policy, clock, dispatch_id, sender.owner, due)
        if due is None or due > deadline:
            break
        clock.sleep(max(0.0, (due - clock.now()).total_seconds()))
        if sender.stop.is_set():
            break
        sender.session_permanent = False
    return errors, session_error, pause_reported


def _stalled_leases_end(ledger: Ledger, policy: SendPolicy, clock: Clock, dispatch_id: int, owner: str,
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

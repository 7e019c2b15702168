"""The pipeline's decisions on the in-memory ledger, in injected time: what is retried, when,
what a session failure costs a recipient (nothing), when a run stops or pauses. The SMTP
side is a scripted transport here; the same paths against real servers are in
test_delivery.py and test_relay_faults.py."""

from __future__ import annotations

import ast
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from conftest import ROOT, FakeClock
from dispatch.delivery.pipeline import Plan, SendPolicy, open_plan, run
from dispatch.delivery.sender import PassResult, Sender
from dispatch.email.message import Envelope, prepare
from dispatch.errors import TransportError
from dispatch.ledger.memory import MemoryLedger
from dispatch.models import Outcome, Recipient, Rendered, State
from dispatch.values import RelayCause, RelayTrouble

START = datetime(2024, 11, 17, 13, 0, tzinfo=UTC)
Reply = Callable[[str, int], Outcome]  # (address, attempt number) -> outcome


class ScriptedConnection:
    usable = True

    def __init__(self, transport: ScriptedTransport) -> None:
        self.transport = transport

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        outcomes = {}
        for address in recipients:
            with self.transport.lock:
                self.transport.attempts[address] = self.transport.attempts.get(address, 0) + 1
                attempt = self.transport.attempts[address]
            outcomes[address] = self.transport.reply(address, attempt)
        return outcomes

    def close(self) -> None:
        pass


class ScriptedTransport:
    endpoint = "scripted:25"

    def __init__(self, reply: Reply | None = None, connect_errors: list[TransportError] | None = None) -> None:
        self.reply = reply or (lambda address, attempt: Outcome(State.SENT, "250 OK"))
        self.connect_errors = list(connect_errors or [])
        self.attempts: dict[str, int] = {}
        self.connects = 0
        self.lock = threading.Lock()

    def connect(self) -> ScriptedConnection:
        with self.lock:
            self.connects += 1
            if self.connect_errors:
                raise self.connect_errors.pop(0)
        return ScriptedConnection(self)


def plan(count: int, approval_id: int | None = None) -> Plan:
    people = tuple(Recipient(f"p{i}@example.org", "", f"p{i}@example.org") for i in range(count))
    prepared = prepare(Rendered("Ämne", "<p>hej</p>", "hej\n"),
                       Envelope("r@example.org", "R", "r@example.org", None, "R", "r.example.org"), START, urgent=False)
    return Plan(name="2024-11-17.r1.edition", edition_date=date(2024, 11, 17), revision=1, kind="edition",
                subject="Ämne", source="reports/2024-11-17.md", created_by="test", recipients=people,
                failed_inputs=(), prepared=prepared, envelope_sender="r@example.org", group_name="Mottagare",
                approval_id=approval_id)


def policy(*, connections: int = 2, wait_out_pauses: bool = False, lease: timedelta = SendPolicy.lease) -> SendPolicy:
    return SendPolicy(connections=connections, linger=timedelta(hours=2), retry_minutes=(1, 2, 5), wait_out_pauses=wait_out_pauses,
                      lease=lease)


def test_everyone_accepted_finishes_the_dispatch_once() -> None:
    ledger, transport = MemoryLedger(), ScriptedTransport()
    result = run(plan(25), ledger, transport, policy(), FakeClock(START))
    assert result.complete and result.finished_now and result.sent_now == 25
    assert set(transport.attempts.values()) == {1}
    again = run(plan(25), ledger, transport, policy(), FakeClock(START))
    assert again.sent_now == 0 and not again.finished_now, "nobody twice, and one finish"


def test_a_4xx_is_retried_after_the_backoff_and_counts_an_attempt() -> None:
    ledger = MemoryLedger()
    transport = ScriptedTransport(lambda address, attempt: Outcome(State.DEFERRED, "451 4.7.1 Greylisted")
                                  if address == "p3@example.org" and attempt == 1 else Outcome(State.SENT, "250 OK"))
    clock = FakeClock(START)
    result = run(plan(5), ledger, transport, policy(), clock)
    assert result.complete and transport.attempts["p3@example.org"] == 2
    assert clock.now() - START >= timedelta(minutes=1), "waited the first backoff step"
    row = next(d for d in ledger.deliveries(1) if d.key == "p3@example.org")
    assert row.attempts == 2 and row.state is State.SENT


def test_a_5xx_fails_that_recipient_only_and_at_once() -> None:
    ledger = MemoryLedger()
    transport = ScriptedTransport(lambda address, attempt: Outcome(State.FAILED, "550 5.1.1 No such user")
                                  if address == "p1@example.org" else Outcome(State.SENT, "250 OK"))
    result = run(plan(4), ledger, transport, policy(), FakeClock(START))
    assert result.counts == {"pending": 0, "sent": 3, "deferred": 0, "unknown": 0, "failed": 1, "bounced": 0}
    assert transport.attempts["p1@example.org"] == 1


@pytest.mark.slow  # the sender's reconnect backoff waits in real time (about 5 s), not on the injected clock
def test_refused_connections_cost_no_attempt_and_the_run_waits_for_the_relay() -> None:
    ledger = MemoryLedger()
    down = [TransportError("scripted:25", "cannot connect: ConnectionRefusedError") for _ in range(6)]
    transport = ScriptedTransport(connect_errors=down)
    clock = FakeClock(START)
    result = run(plan(10), ledger, transport, policy(connections=1), clock)
    assert result.complete, result.counts
    assert all(d.attempts == 1 for d in ledger.deliveries(1)), "only the delivery itself was an attempt"
    assert clock.now() > START, "it waited (backoff) instead of giving up"


def test_a_permanent_refusal_pauses_without_failing_anyone_or_waiting() -> None:
    ledger = MemoryLedger()
    refused = [TransportError("scripted:25", "the server refused MAIL FROM: 530 5.7.0 Authentication required",
                              permanent=True, cause=RelayCause.PERMANENT_REPLY) for _ in range(4)]
    transport = ScriptedTransport(connect_errors=refused)
    clock = FakeClock(START)
    result = run(plan(6), ledger, transport, policy(wait_out_pauses=False), clock)
    assert result.session_permanent and "530 5.7.0" in (result.session_error or "")
    assert result.counts["failed"] == 0 and result.counts["sent"] == 0
    assert clock.now() == START, "no waiting in the foreground"
    assert {d.state for d in ledger.deliveries(1)} <= {State.PENDING, State.DEFERRED}
    # The trouble is kept as a fact with those it held back (issue 31), not as text behind a prefix.
    trouble = RelayTrouble(RelayCause.PERMANENT_REPLY, "scripted:25",
                           "the server refused MAIL FROM: 530 5.7.0 Authentication required", permanent=True)
    assert result.session_trouble == trouble
    held = [row for row in ledger.rows if row.delivery.state is State.DEFERRED]
    assert held and all(row.trouble == trouble and row.delivery.reply == trouble.detail for row in held)


def test_a_revoked_approval_stops_further_claims() -> None:
    ledger = MemoryLedger()
    ledger.revoked.add(7)
    transport = ScriptedTransport()
    result = run(plan(10, approval_id=7), ledger, transport, policy(), FakeClock(START))
    assert result.revoked and result.sent_now == 0 and transport.attempts == {}


def test_a_stop_claims_nothing_more() -> None:
    stop = threading.Event()
    stop.set()
    ledger, transport = MemoryLedger(), ScriptedTransport()
    result = run(plan(10), ledger, transport, policy(), FakeClock(START), stop=stop)
    assert result.sent_now == 0 and result.counts["pending"] == 10 and not result.finished_now


# -- one pass, as the pipeline sees it: a result value ------------------------------------------


def test_a_pass_returns_what_it_did() -> None:
    ledger = MemoryLedger()
    transport = ScriptedTransport(lambda address, attempt: Outcome(State.DEFERRED, "451 4.7.1 Greylisted")
                                  if address == "p2@example.org" else Outcome(State.SENT, "250 OK"))
    clock = FakeClock(START)
    record, _, _ = open_plan(plan(5), ledger, clock)
    sender = Sender(plan(5), ledger, transport, policy(), clock, "node-a", record.id)
    result = sender.run_pass()
    assert isinstance(result, PassResult)
    assert (result.accepted, result.attempted, result.retried) == (4, 5, 1)
    assert result.next_retry == START + timedelta(minutes=1), "the first step of the retry schedule"
    assert result.pause is None and not result.stopped and not result.lease_lost
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.accepted = 0  # type: ignore[misc]
    assert sender.run_pass() == PassResult(0, 0, 0, None, None, False, False, False, None), "nothing due yet"


def test_a_pass_refused_by_the_relay_returns_a_permanent_pause_and_holds_the_rows() -> None:
    ledger = MemoryLedger()
    refused = [TransportError("scripted:25", "the server refused MAIL FROM: 530 5.7.0 Authentication required",
                              permanent=True) for _ in range(4)]
    clock = FakeClock(START)
    record, _, _ = open_plan(plan(3), ledger, clock)
    sender = Sender(plan(3), ledger, ScriptedTransport(connect_errors=refused), policy(), clock, "node-a", record.id)
    result = sender.run_pass()
    assert result.pause is not None and result.pause.permanent
    assert result.pause.until == START + SendPolicy().session_pause and "530 5.7.0" in (result.pause.reason or "")
    assert result.accepted == 0 and result.attempted == 0, "a session's trouble costs no recipient an attempt"
    assert {d.next_attempt_at for d in ledger.deliveries(record.id)} == {result.pause.until}


def test_the_pipeline_writes_nothing_of_the_sender() -> None:
    """It decides from the pass's result: no ``sender.x = ...`` in pipeline.py."""
    source = (ROOT / "src" / "dispatch" / "delivery" / "pipeline.py").read_text(encoding="utf-8")
    written = [ast.unparse(target) for node in ast.walk(ast.parse(source))
               if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
               for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
               for part in ast.walk(target)
               if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "sender"]
    assert not written, written

"""Issue 30, points 1, 2 and 8: leases that hold per message, no unbounded wait on the ledger,
and a failed run that gives its leases back.

The slow tests are real processes on the real PostgreSQL (a schema of their own, see
test_postgres.py) or on a private PostgreSQL instance that the test stops and starts (the
machine's shared one is never stopped), with a real SMTP server. The quick ones run the
pipeline on the in-memory ledger in injected time.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from conftest import (
    FakeClock,
    PgSchema,
    Project,
    Relay,
    addresses,
    big_list,
    free_port,
    open_ledger,
    set_schedule,
    start_dispatch,
    start_server,
)
from dispatch.delivery.pipeline import run
from dispatch.ledger import Ledger
from dispatch.ledger.memory import MemoryLedger
from dispatch.models import Outcome, State
from dispatch.values import RunState

if TYPE_CHECKING:
    from dispatch.app import Run as ConsoleRun
from test_pipeline_unit import START, ScriptedTransport, plan, policy

EDITION = "2024-11-17"


# -- quick: the pipeline on the in-memory ledger, in injected time ----------------------------------


def test_a_run_held_up_past_its_lease_sends_nothing_more_and_says_so() -> None:
    ledger, clock = MemoryLedger(), FakeClock(START)
    lease, connections = timedelta(seconds=3), 2

    def reply(address: str, attempt: int) -> Outcome:
        if address == "p9@example.org":
            clock.sleep(10)  # the process is paused here (SIGSTOP, a VM migrated) for longer than its lease
        return Outcome(State.SENT, "250 OK")

    transport = ScriptedTransport(reply)
    result = run(plan(200), ledger, transport, policy(connections=connections, lease=lease), clock, owner="a")

    assert result.lease_lost_at is not None, "the run knows it lost its lease"
    # What was in flight when the pause began went out; nothing was sent after it.
    assert len(transport.attempts) <= 10 + connections
    # It claims only what its connections can have in flight (one sending, one ready each):
    # the rest was never leased, and what it held unsent is free again at once.
    assert ledger.sent_by(1, "a") == result.sent_now <= len(transport.attempts)
    assert not [row for row in ledger.rows if row.lease_owner == "a"], "its unsent rows are given back"
    taken = ledger.claim(1, "b", clock.now(), lease, 1000)
    assert len(taken) == 200 - result.sent_now, "another node can take over every other recipient now"


def test_a_run_that_keeps_its_lease_renews_it_and_sends_everyone() -> None:
    ledger, clock = MemoryLedger(), FakeClock(START)

    def reply(address: str, attempt: int) -> Outcome:
        clock.sleep(0.5)  # each message takes half a second: the 3 s lease needs renewing on the way
        return Outcome(State.SENT, "250 OK")

    # One connection: in injected time, another connection's sleeps would move the clock while
    # this one is merely descheduled, as if it had been paused.
    result = run(plan(60), ledger, ScriptedTransport(reply), policy(connections=1, lease=timedelta(seconds=3)),
                 clock, owner="a")
    assert result.lease_lost_at is None and result.sent_now == 60 and result.complete


def test_an_ended_run_gives_its_leases_back_and_others_see_whose_they_were() -> None:
    ledger, clock = MemoryLedger(), FakeClock(START)
    record, _ = ledger.open_dispatch("d", date(2024, 11, 17), 1, "edition", "s", "src", "t", START)
    from dispatch.models import NewRecipient

    ledger.add_recipients(record.id, [NewRecipient(f"k{i}", f"k{i}@example.org", "", f"<{i}@x>") for i in range(5)], START)
    ledger.claim(record.id, "gone", clock.now(), timedelta(minutes=10), 3)
    count, first, last = ledger.others_leases_end(record.id, "me")
    assert count == 3 and first == last == START + timedelta(minutes=10)
    assert ledger.release("gone") == 3
    assert ledger.others_leases_end(record.id, "me")[0] == 0
    assert len(ledger.claim(record.id, "me", clock.now(), timedelta(minutes=10), 10)) == 5


# -- a relay that answers each message after a delay and keeps only the recipients ------------------


@dataclass
class SlowRelay:
    """Holds each DATA reply ``accept_delay`` seconds (awaited: other connections go on) and
    keeps only the RCPTs of report messages (2,000 whole messages, five times, would be a lot)."""

    accept_delay: float = 0.0
    rcpts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.accept_delay:
            await asyncio.sleep(self.accept_delay)
        content = envelope.original_content or envelope.content
        if b"\r\nList-Id:" in content.split(b"\r\n\r\n", 1)[0]:
            with self.lock:
                self.rcpts.extend(address.lower() for address in envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def count(self) -> int:
        with self.lock:
            return len(self.rcpts)


@pytest.fixture
def slow_relay() -> Iterator[Relay[SlowRelay]]:
    controller, server = start_server(SlowRelay(accept_delay=0.05))
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def relay() -> Iterator[Relay[SlowRelay]]:
    controller, server = start_server(SlowRelay())
    try:
        yield server
    finally:
        controller.stop()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def send_args() -> tuple[str, ...]:
    return ("send", "--date", EDITION, "--list", "stor")


class Processes:
    """Background processes a test starts; killed (after SIGCONT) when it ends, whatever happened."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def start(self, project: Project, *args: str) -> Any:
        process = start_dispatch(project, *args)
        self.started.append(process)
        return process

    def end(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    made = Processes()
    yield made
    made.end()


# -- point 1: a paused node ---------------------------------------------------------------------------


@pytest.mark.slow  # two send processes, 2,000 recipients through a relay answering in 50 ms, a pause
@pytest.mark.parametrize("round_", range(5))
def test_a_paused_sender_that_wakes_after_its_lease_sends_nothing_more(
        round_: int, project: Project, pg: PgSchema, slow_relay: Relay[SlowRelay], processes: Processes) -> None:
    count, connections, lease = 2000, 2, 3
    big_list(project, count)
    project.use_smtp(slow_relay, connections=connections, recipients_per_message=1)
    project.set_config(ledger=pg.url, lease_seconds=lease)
    handler = slow_relay.handler
    pause_at = random.randrange(100, 1700)  # a random point of the send, reported below

    first, second = processes.start(project, *send_args()), processes.start(project, *send_args())
    wait_until(lambda: handler.count() >= pause_at or first.poll() is not None, 120, f"{pause_at} messages")
    assert first.poll() is None, first.stderr()
    first.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    assert second.wait(180) == 0, second.stderr()  # the second takes over and finishes everyone
    asleep = time.monotonic() - paused
    first.send_signal(signal.SIGCONT)
    first.wait(60)
    woken = first.stderr()

    received = collections.Counter(handler.rcpts)
    missing = set(addresses(count)) - set(received)
    assert not missing, f"0 lost: {len(missing)} missing"
    duplicates = sum(received.values()) - count
    assert duplicates <= connections, f"{duplicates} duplicates from a node with {connections} connections"
    assert project.status()["counts"]["sent"] == count
    assert "stopped: lease lost" in woken, woken
    assert not re.search(r"sent \d+ now", woken), "no 'sent N now' from the node whose results the ledger refused"
    print(f"\nround {round_}: SIGSTOP after {pause_at} messages for {asleep:.1f} s; {duplicates} duplicate(s)")


# -- point 2: a node frozen inside its insert -----------------------------------------------------------


def backends(pg: PgSchema, process: Any) -> list[tuple[str, str | None, str]]:
    """(state, wait event type, query) of each PostgreSQL session of a dispatch process."""
    return [(r[0], r[1], r[2]) for r in pg.execute(
        "SELECT state, wait_event_type, query FROM pg_stat_activity "
        f"WHERE application_name = 'dispatch {socket.gethostname()}:{process.pid}'")]


def freeze_inside_insert(project: Project, pg: PgSchema, processes: Processes) -> Any:
    """Start a send and SIGSTOP it inside its INSERT of the recipients' rows, with the rows
    inserted and their locks held: the test holds a table lock the INSERT waits for, stops
    the process while it waits, then lets the INSERT run (in the server) to its end."""
    Ledger(pg.url).close()  # the schema, so there is a table to lock
    timeouts = project.config().get("ledger_timeouts", {})
    # The frozen node waits on the test's lock for as long as the test takes to stop it (on a
    # loaded machine more than the 2 s default, and its INSERT would give up); the node started
    # after it reads the test's own settings again.
    project.set_config(ledger_timeouts={**timeouts, "lock_seconds": 60})
    blocker = psycopg.connect(pg.url_with(), autocommit=False)
    try:
        blocker.execute("LOCK TABLE deliveries IN SHARE MODE")
        frozen = processes.start(project, *send_args())
        wait_until(lambda: any(wait == "Lock" and query.startswith("INSERT INTO deliveries")
                               for _, wait, query in backends(pg, frozen)), 60, "the first node's INSERT to wait")
        frozen.send_signal(signal.SIGSTOP)
        blocker.commit()  # the INSERT goes on inside the server; its client is stopped
    finally:
        blocker.close()
        project.set_config(ledger_timeouts=timeouts)
    wait_until(lambda: any(state == "idle in transaction" for state, _, _ in backends(pg, frozen)), 10,
               "the frozen node's transaction to hold the inserted rows")
    return frozen


@pytest.mark.slow  # PostgreSQL, two send processes, one frozen in a transaction until the server ends it
def test_a_node_frozen_inside_its_insert_holds_the_other_up_for_a_bounded_time(
        project: Project, pg: PgSchema, relay: Relay[SlowRelay], processes: Processes) -> None:
    count, lease, lock = 500, 3, 2  # lock: the default ledger_timeouts.lock_seconds
    big_list(project, count)
    project.use_smtp(relay, connections=2)
    project.set_config(ledger=pg.url, lease_seconds=lease)
    handler = relay.handler
    frozen = freeze_inside_insert(project, pg, processes)
    started = time.monotonic()
    other = processes.start(project, *send_args())
    bound = lock + lease + 30
    wait_until(lambda: handler.count() >= count or other.poll() not in (None, 0), bound,
               f"everyone within lock_timeout + lease_seconds + 30 s ({bound} s)")
    took = time.monotonic() - started
    assert other.wait(30) == 0, other.stderr()
    assert set(handler.rcpts) == set(addresses(count)) and len(handler.rcpts) == count
    # Woken, the frozen node finds its session ended by the server and sends nothing.
    frozen.send_signal(signal.SIGCONT)
    frozen.wait(60)
    assert len(handler.rcpts) == count, "the frozen node sent nothing after it woke"
    print(f"\nfrozen inside its insert: the other node sent all {count} in {took:.1f} s (bound {bound} s)")


@pytest.mark.slow  # PostgreSQL, a node waiting on a frozen node's locks, SIGTERM
def test_sigterm_ends_a_node_waiting_for_a_lock_within_five_seconds(
        project: Project, pg: PgSchema, relay: Relay[SlowRelay], processes: Processes) -> None:
    big_list(project, 300)
    project.use_smtp(relay, connections=2)
    # The frozen node's session is kept for two minutes: the other waits all that time.
    project.set_config(ledger=pg.url, lease_seconds=3, ledger_timeouts={"idle_in_transaction_seconds": 120})
    freeze_inside_insert(project, pg, processes)
    waiting = processes.start(project, *send_args())
    wait_until(lambda: any(wait == "Lock" for _, wait, _ in backends(pg, waiting)), 60, "the second node to wait on a lock")
    time.sleep(1)
    stopped = time.monotonic()
    waiting.send_signal(signal.SIGTERM)
    code = waiting.wait(5)  # raises if it is still there after 5 s
    took = time.monotonic() - stopped
    assert code == 128 + signal.SIGTERM, waiting.stderr()
    assert "stopped while waiting for the ledger" in waiting.stderr()
    print(f"\nSIGTERM to a node waiting on a lock: gone in {took:.1f} s")


# -- point 8: PostgreSQL stopped during a console send ---------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL instance of the test's own (initdb in a temporary directory, run as the
    ``postgres`` user), which the test may stop and start."""

    def __init__(self) -> None:
        initdb = shutil.which("initdb")
        if initdb is None:
            pytest.skip("initdb is not installed")
        self.bin = Path(initdb).resolve().parent  # createdb and the rest live beside the real initdb
        self.root = Path(tempfile.mkdtemp(prefix="dispatch-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        os.chmod(self.root, 0o777)
        try:
            self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            self.start()
            self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "test")
        except BaseException:
            self.remove()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _as_postgres(self, *command: str) -> None:
        wrapped = list(command) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(wrapped, check=True, capture_output=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
                          f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "stop"] if os.geteuid() == 0 else
                       [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    instance = PrivatePostgres()
    try:
        yield instance
    finally:
        instance.remove()


def state_now(console_run: ConsoleRun) -> RunState:
    """The run's state as its thread has left it (read again: it changes behind the test's back)."""
    return console_run.state


@pytest.mark.slow  # a private PostgreSQL stopped for 12 s under a console send of 5,000
def test_a_console_send_that_failed_with_the_ledger_resumes_at_once(
        project: Project, private_pg: PrivatePostgres, relay: Relay[SlowRelay]) -> None:
    from dispatch import app
    from dispatch.config import load_settings

    count, connections = 5000, 4
    big_list(project, count)
    project.use_smtp(relay, connections=connections)
    project.set_config(ledger=private_pg.url, notify=[], publish__on_send=False)
    set_schedule(project, lists=["stor"])  # the edition goes to the lists of the schedules
    handler = relay.handler
    settings = load_settings(project.config_path)
    runs = app.Runs(app.App(settings))
    recipe = app.Recipe(date.fromisoformat(EDITION))
    now = datetime.now(settings.timezone)
    first = runs.start(recipe, "operatör", now)
    wait_until(lambda: handler.count() >= 1000 or first.state is not RunState.SENDING, 120, "a fifth of the send")
    assert first.state is RunState.SENDING, first.error
    private_pg.stop()
    stopped = time.monotonic()
    assert runs.wait(first.name, 60), "the run ends when the ledger goes away"
    assert state_now(first) is RunState.FAILED, first.error
    time.sleep(max(0.0, 12 - (time.monotonic() - stopped)))
    private_pg.start()

    ledger = open_ledger(settings)
    try:
        record = ledger.find_dispatch(first.name)
        assert record is not None
        held, _, until = ledger.others_leases_end(record.id, "")
        progress = runs.progress(ledger, first.name)
    finally:
        ledger.close()
    # While the run that failed still holds rows, the page says how many and until when.
    assert progress is not None
    if held:
        assert progress.held_elsewhere == held and progress.held_until

    resumed = time.monotonic()
    second = runs.start(recipe, "operatör", datetime.now(settings.timezone))  # "Återuppta"
    assert second is not first
    wait_until(lambda: second.state not in (RunState.SENDING, RunState.STOPPING), 60, "everyone within 60 s of Återuppta")
    took = time.monotonic() - resumed
    assert second.state is RunState.DONE, second.error
    received = collections.Counter(handler.rcpts)
    assert set(received) == set(addresses(count)), "0 lost"
    duplicates = sum(received.values()) - count
    assert duplicates <= connections, f"{duplicates} duplicates"
    print(f"\nfirst run: {first.error}")
    print(f"\nledger down 12 s at 1000+ of {count}: {held} rows held by the failed run (until {until}); "
          f"everyone had it {took:.1f} s after Återuppta; {duplicates} duplicate(s)")

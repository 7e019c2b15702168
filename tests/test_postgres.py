"""Issue 10: the ledger on PostgreSQL, and two `dispatch serve` nodes sharing it.

Every test runs against the real PostgreSQL (127.0.0.1:5432, or $DISPATCH_TEST_POSTGRES)
in a schema of its own, created and dropped by the test; the ledger reaches it through
the URL's search_path option, exactly as an operator's URL would. Under CI=true a
PostgreSQL that cannot be reached fails these tests; elsewhere it skips them.
"""

from __future__ import annotations

import collections
import functools
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import (
    STOCKHOLM,
    PgSchema,
    Project,
    Relay,
    ServeProcess,
    addresses,
    big_list,
    set_schedule,
    start_server,
    write_edition,
)
from dispatch.errors import LedgerError
from dispatch.ledger import SCHEMA_1, SCHEMA_VERSION, Ledger, NewRecipient, Timeouts
from dispatch.models import Outcome, State

NOW = datetime(2024, 11, 17, 13, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
def ledgers() -> Iterator[list[Ledger]]:
    made: list[Ledger] = []
    yield made
    for ledger in made:
        ledger.close()


def open_ledger(url: str, ledgers: list[Ledger]) -> Ledger:
    ledger = Ledger(url)
    ledgers.append(ledger)
    return ledger


def with_rows(ledger: Ledger, count: int) -> int:
    record, _ = ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition",
                                     "Rapport", "reports/2024-11-17.md", "test", NOW)
    ledger.add_recipients(record.id, [
        NewRecipient(key=f"p{i}@example.org", address=f"p{i}@example.org", name="", message_id=f"<{i}@x>")
        for i in range(count)
    ], NOW)
    return record.id


# -- schema: created, versioned, migrated ----------------------------------------------------------


def test_the_program_creates_the_schema_and_records_its_version(pg: PgSchema, ledgers: list[Ledger]) -> None:
    ledger = open_ledger(pg.url, ledgers)
    assert ledger.is_postgres
    assert pg.execute("SELECT version FROM dispatch_schema") == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in pg.execute(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{pg.name}'")}
    assert tables == {"dispatch_schema", "dispatches", "deliveries", "dispatch_contents", "relay_slots", "approvals", "edits",
                      "ledger_identity", "users", "audit", "kept_texts", "bounce_events",
                      "snapshots", "snapshot_members", "dispatch_snapshots"}  # schema 9: directory lists' snapshots
    open_ledger(pg.url, ledgers)  # a second start changes nothing
    assert pg.execute("SELECT version FROM dispatch_schema") == [(SCHEMA_VERSION,)]


def test_an_older_program_refuses_a_newer_schema_with_a_clear_message(pg: PgSchema, ledgers: list[Ledger]) -> None:
    open_ledger(pg.url, ledgers)
    pg.execute(f"UPDATE dispatch_schema SET version = {SCHEMA_VERSION + 1}")
    secret_url = pg.url.replace("postgres@", "postgres:hemligt-l%C3%B6senord@")  # trust auth ignores it
    with pytest.raises(LedgerError) as caught:
        Ledger(secret_url)
    message = str(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this program's {SCHEMA_VERSION}" in message
    assert "upgrade dispatch" in message and "127.0.0.1" in message
    assert "hemligt" not in message
    assert pg.execute("SELECT version FROM dispatch_schema") == [(SCHEMA_VERSION + 1,)], "left as it was"


def test_a_schema_1_ledger_is_migrated_in_place_and_keeps_its_rows(pg: PgSchema, ledgers: list[Ledger]) -> None:
    engine = sa.create_engine(pg.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # what the first program created: three tables, version 1
        SCHEMA_1[0].metadata.create_all(conn, tables=list(SCHEMA_1))
        conn.execute(sa.text("INSERT INTO dispatch_schema (version) VALUES (1)"))
    engine.dispose()
    pg.execute("INSERT INTO dispatches (name, edition_date, revision, kind, subject, source, created_by, created_at) "
               "VALUES ('2024-11-16.r1.edition', '2024-11-16', 1, 'edition', 'Gammal', '', '', now()) RETURNING id")
    ledger = open_ledger(pg.url, ledgers)
    assert pg.execute("SELECT version FROM dispatch_schema") == [(SCHEMA_VERSION,)]
    assert ledger.find_dispatch("2024-11-16.r1.edition") is not None
    assert ledger.keep_content("2024-11-16.r1.edition", "s", "", "src", "<p>", "t", NOW)
    assert ledger.reserve_slot("relay", timedelta(seconds=2), lambda: NOW) == NOW


def test_nodes_starting_together_on_an_empty_database_all_start(pg: PgSchema, ledgers: list[Ledger]) -> None:
    count = 8
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    opened: list[Ledger] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(Ledger(pg.url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ledgers.extend(opened)
    assert not errors, errors
    assert len(opened) == count
    assert pg.execute("SELECT version FROM dispatch_schema") == [(SCHEMA_VERSION,)]


def test_an_unreachable_server_is_a_ledger_error_naming_the_host_not_the_password() -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger("postgresql://dispatch:hemligt@127.0.0.1:1/dispatch?connect_timeout=3")
    message = str(caught.value)
    assert "postgresql://127.0.0.1:1/dispatch" in message
    assert "hemligt" not in message


# -- the dispatch and its rows ---------------------------------------------------------------------


def test_every_node_opens_the_dispatch_and_exactly_one_creates_it(pg: PgSchema, ledgers: list[Ledger]) -> None:
    nodes = [open_ledger(pg.url, ledgers) for _ in range(6)]
    barrier = threading.Barrier(len(nodes))
    created: list[bool] = []
    ids: set[int] = set()

    def fire(ledger: Ledger) -> None:
        barrier.wait()
        record, made = ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition",
                                            "Rapport", "", "node", NOW)
        created.append(made)
        ids.add(record.id)

    threads = [threading.Thread(target=fire, args=(ledger,)) for ledger in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(created) == [False] * 5 + [True]
    assert len(ids) == 1
    assert pg.execute("SELECT count(*) FROM dispatches") == [(1,)]


@pytest.mark.slow  # 3,000 rows twice; fast twin: test_claims_from_many_connections_at_once_are_disjoint_and_cover_every_row
def test_add_recipients_inserts_only_the_new_ones_even_from_two_nodes_at_once(pg: PgSchema, ledgers: list[Ledger]) -> None:
    # Each node waits for the other's insert (the same keys) as long as it takes: with the 2 s
    # default lock timeout a loaded machine made one give up (LedgerBusy, which the pipeline retries).
    first, second = (Ledger(pg.url, timeouts=Timeouts(lock=60.0)) for _ in range(2))
    ledgers.extend([first, second])
    dispatch_id = with_rows(first, 10)
    rows = [NewRecipient(key=f"p{i}@example.org", address=f"p{i}@example.org", name="", message_id=f"<{i}@x>")
            for i in range(3000)]
    added: list[int] = []
    barrier = threading.Barrier(2)

    def add(ledger: Ledger) -> None:
        barrier.wait()
        added.append(ledger.add_recipients(dispatch_id, rows, NOW))

    threads = [threading.Thread(target=add, args=(ledger,)) for ledger in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(added) == 2, "both nodes' inserts completed"
    assert sum(added) == 2990, added
    assert first.counts(dispatch_id)["pending"] == 3000


def test_times_come_back_as_the_same_instant_in_utc_whatever_the_session_time_zone(pg: PgSchema, ledgers: list[Ledger]) -> None:
    writer = open_ledger(pg.url_with(timezone="Pacific/Auckland"), ledgers)
    reader = open_ledger(pg.url_with(timezone="America/Los_Angeles"), ledgers)
    dispatch_id = with_rows(writer, 3)
    local = NOW.astimezone(STOCKHOLM)
    [row] = writer.claim(dispatch_id, "a", local, LEASE, 1)
    writer.record("a", [(row.id, Outcome(State.DEFERRED, "451 later"), local + timedelta(minutes=5))], local)
    record = reader.find_dispatch()
    assert record is not None and record.created_at == NOW and record.created_at.tzinfo is not None
    assert record.created_at.utcoffset() == timedelta(0)
    [again] = [d for d in reader.deliveries(dispatch_id) if d.id == row.id]
    assert again.updated_at == NOW and again.first_attempt_at == NOW
    assert again.next_attempt_at == NOW + timedelta(minutes=5)
    assert reader.next_due(dispatch_id) == NOW + timedelta(minutes=5)
    # Due rows compare as instants: at 13:04 UTC the deferred row is not due, at 13:05 it is.
    assert row.id not in {d.id for d in reader.claim(dispatch_id, "b", NOW + timedelta(minutes=4), timedelta(hours=1), 10)}
    assert [d.id for d in reader.claim(dispatch_id, "b", NOW + timedelta(minutes=5), LEASE, 10)] == [row.id]


# -- leases: claims are disjoint, expire, and fence the writes ------------------------------------


def test_a_claim_skips_rows_another_transaction_has_locked(pg: PgSchema, ledgers: list[Ledger]) -> None:
    ledger = open_ledger(pg.url, ledgers)
    dispatch_id = with_rows(ledger, 30)
    other = sa.create_engine(pg.url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with other.begin() as conn:
            locked = [r[0] for r in conn.execute(sa.text(
                "SELECT id FROM deliveries ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED"))]
            claimed: list[int] = []
            worker = threading.Thread(target=lambda: claimed.extend(
                d.id for d in ledger.claim(dispatch_id, "b", NOW, LEASE, 10)))
            worker.start()
            worker.join(10)
            assert not worker.is_alive(), "the claim waited for the other transaction instead of skipping"
        assert len(claimed) == 10 and not set(claimed) & set(locked)
    finally:
        other.dispose()


def test_claims_from_many_connections_at_once_are_disjoint_and_cover_every_row(pg: PgSchema, ledgers: list[Ledger]) -> None:
    nodes = [open_ledger(pg.url, ledgers) for _ in range(4)]
    dispatch_id = with_rows(nodes[0], 2000)
    got: dict[str, list[int]] = collections.defaultdict(list)
    barrier = threading.Barrier(len(nodes))

    def drain(index: int, ledger: Ledger) -> None:
        barrier.wait()
        while rows := ledger.claim(dispatch_id, f"node{index}", NOW, LEASE, 25):
            got[f"node{index}"].extend(d.id for d in rows)

    threads = [threading.Thread(target=drain, args=(i, ledger)) for i, ledger in enumerate(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    every = [row_id for ids in got.values() for row_id in ids]
    assert len(every) == 2000 and len(set(every)) == 2000, "no row claimed twice, none missed"
    assert len(got) >= 2, "the claims interleaved"
    owners = dict(pg.execute("SELECT lease_owner, count(*) FROM deliveries GROUP BY lease_owner"))
    assert owners == {name: len(ids) for name, ids in got.items()}


def test_an_expired_lease_is_claimable_and_its_old_owner_can_no_longer_write(pg: PgSchema, ledgers: list[Ledger]) -> None:
    node_a, node_b = open_ledger(pg.url, ledgers), open_ledger(pg.url, ledgers)
    dispatch_id = with_rows(node_a, 5)
    held = node_a.claim(dispatch_id, "a", NOW, LEASE, 5)
    assert len(held) == 5
    assert node_b.claim(dispatch_id, "b", NOW + LEASE - timedelta(seconds=1), LEASE, 5) == []
    assert node_b.orphaned(dispatch_id, NOW + LEASE - timedelta(seconds=1)) == 0
    node_a.renew("a", [d.id for d in held[:2]], NOW + timedelta(seconds=20), LEASE)  # still working on two
    node_b.renew("b", [d.id for d in held], NOW + timedelta(seconds=20), LEASE)  # not b's: no effect
    assert node_b.orphaned(dispatch_id, NOW + LEASE) == 3
    taken = node_b.claim(dispatch_id, "b", NOW + LEASE, LEASE, 5)
    assert [d.id for d in taken] == [d.id for d in held[2:]], "expired ones only; the renewed two stay a's"

    late = [(d.id, Outcome(State.SENT, "250 ok"), None) for d in held]
    assert node_a.record("a", late, NOW + LEASE) == 2, "a writes only what it still leases"
    rows = {r["id"]: r for r in node_b.rows(dispatch_id)}
    for delivery in taken:
        assert (rows[delivery.id]["state"], rows[delivery.id]["lease_owner"], rows[delivery.id]["attempts"]) == ("pending", "b", 0)
    assert node_b.record("b", [(d.id, Outcome(State.SENT, "250 ok"), None) for d in taken], NOW + LEASE) == 3
    assert node_b.counts(dispatch_id)["sent"] == 5
    assert {r["node"] for r in node_b.rows(dispatch_id)} == {"a", "b"}
    assert node_b.orphaned(dispatch_id, NOW + 10 * LEASE) == 0


def test_finishing_a_dispatch_is_reported_to_one_node_only(pg: PgSchema, ledgers: list[Ledger]) -> None:
    node_a, node_b = open_ledger(pg.url, ledgers), open_ledger(pg.url, ledgers)
    dispatch_id = with_rows(node_a, 1)
    assert [node_a.finish_dispatch(dispatch_id, NOW), node_b.finish_dispatch(dispatch_id, NOW)] == [True, False]


# -- two `dispatch serve` nodes on one PostgreSQL ledger (acceptance 1 and 2) ---------------------


@dataclass
class CountingHandler:
    """A relay that keeps only what these tests count: the RCPTs of every accepted report
    message (5,000 full messages would be hundreds of megabytes), and the other mail."""

    rcpts: list[str] = field(default_factory=list)
    notices: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        with self.lock:
            if b"\r\nList-Id:" in content.split(b"\r\n\r\n", 1)[0]:
                self.rcpts.extend(address.lower() for address in envelope.rcpt_tos)
            else:
                self.notices += 1
        return "250 Message accepted for delivery"

    def count(self) -> int:
        with self.lock:
            return len(self.rcpts)


@pytest.fixture
def relay() -> Iterator[Relay[CountingHandler]]:
    controller, server = start_server(CountingHandler())
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def nodes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for node in started:
        node.kill()


def two_node_project(project: Project, pg: PgSchema, relay: Relay[CountingHandler], count: int, lease_seconds: float) -> list[str]:
    big_list(project, count)
    project.use_smtp(relay, connections=4, recipients_per_message=1)
    project.set_config(ledger=pg.url, lease_seconds=lease_seconds)
    # Due a minute ago, deadline later today: each service starts the run at start-up.
    due = datetime.now(STOCKHOLM).replace(second=0, microsecond=0) - timedelta(minutes=1)
    deadline = due + timedelta(hours=2)
    set_schedule(project, cron=f"{due.minute} {due.hour} * * *", lists=["stor"],
                 deadline=f"{deadline:%H:%M}", approval_deadline=None)
    write_edition(project, due.date())
    return addresses(count)


def events(node: ServeProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(node.lines) if line.startswith("{")]


def run_ended(node: ServeProcess) -> bool:
    return any(e["event"] in ("sent", "incomplete") for e in events(node))


def sent_by_process(project: Project) -> collections.Counter[int]:
    status = project.status()
    return collections.Counter(int(r["node"].split(":")[1]) for r in status["recipients"] if r["state"] == "sent")


@pytest.mark.slow  # PostgreSQL, two serve processes, 5,000 recipients
def test_two_nodes_send_one_dispatch_of_5000_and_each_recipient_gets_one_message(
        project: Project, pg: PgSchema, relay: Relay[CountingHandler], nodes: list[ServeProcess]) -> None:
    count = 5000
    everyone = two_node_project(project, pg, relay, count, lease_seconds=30)
    handler = relay.handler
    started = time.monotonic()
    nodes.extend([ServeProcess(project, "--log-json"), ServeProcess(project, "--log-json")])
    for node in nodes:
        node.wait_for(functools.partial(run_ended, node), 120, "the node's run to end")
    nodes[0].wait_for(lambda: handler.count() >= count, 30, "every message")
    seconds = time.monotonic() - started
    for node in nodes:
        code, _ = node.stop(signal.SIGTERM)
        assert code == 0, node.log()

    assert len(handler.rcpts) == count and set(handler.rcpts) == set(everyone), "each recipient exactly one message"
    status = project.status()
    assert status["counts"]["sent"] == count and status["finished_at"]
    assert [d["dispatch"] for d in status["dispatches_of_date"]] == [status["dispatch"]], "one dispatch"
    by_process = sent_by_process(project)
    assert set(by_process) == {node.process.pid for node in nodes}, f"both nodes sent some: {by_process}"
    assert pg.execute("SELECT count(*) FROM dispatches") == [(1,)]
    print(f"\n5000 recipients, 2 nodes x 4 connections on PostgreSQL: {seconds:.1f} s, split {dict(by_process)}")


@pytest.mark.slow  # PostgreSQL, two serve processes, one killed
def test_a_node_killed_half_way_is_taken_over_after_its_lease_expires(
        project: Project, pg: PgSchema, relay: Relay[CountingHandler], nodes: list[ServeProcess]) -> None:
    count, lease_seconds, connections = 2000, 5, 4  # enough to be killed half-way; the 5,000 run is the test above
    everyone = two_node_project(project, pg, relay, count, lease_seconds=lease_seconds)
    handler = relay.handler
    nodes.extend([ServeProcess(project, "--log-json"), ServeProcess(project, "--log-json")])
    victim, survivor = nodes
    victim.wait_for(lambda: handler.count() >= count // 2, 90, "half of the send")
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    killed_at = time.monotonic()
    held = pg.execute("SELECT count(*), max(lease_expires_at) FROM deliveries "
                      f"WHERE lease_owner LIKE '%:{victim.process.pid}:%' AND state = 'pending'")
    survivor.wait_for(lambda: any(e["event"] == "sent" for e in events(survivor)), 90,
                      "the survivor to finish the dispatch")
    took = time.monotonic() - killed_at
    code, _ = survivor.stop(signal.SIGTERM)
    assert code == 0, survivor.log()

    received = collections.Counter(handler.rcpts)
    assert set(received) == set(everyone), f"0 lost: {len(set(everyone) - set(received))} missing"
    duplicates = sum(received.values()) - count
    assert duplicates <= connections, f"{duplicates} duplicates from a node with {connections} connections"
    status = project.status()
    assert status["counts"] == {"pending": 0, "sent": count, "deferred": 0, "unknown": 0, "failed": 0, "bounced": 0}
    assert status["finished_at"], "the survivor finished the dispatch"
    by_process = sent_by_process(project)
    assert by_process[victim.process.pid] > 0 and by_process[survivor.process.pid] > 0
    assert set(by_process) == {victim.process.pid, survivor.process.pid}
    left, expiry = held[0]
    if left:  # the dead node held rows: they were sent by the survivor, and not before their lease ran out
        last = max(datetime.fromisoformat(r["sent_at"]) for r in status["recipients"] if r["sent_at"])
        assert last >= expiry - timedelta(seconds=1)
    print(f"\nSIGKILL at {count // 2}+: {left} rows held by the dead node, survivor finished {took:.1f} s later; "
          f"{duplicates} duplicate(s); split {dict(by_process)}")


@pytest.mark.slow  # PostgreSQL, two serve processes, one killed, a lease to expire
def test_a_node_that_ran_out_of_work_resumes_what_a_dead_node_left_when_its_lease_expires(
        project: Project, pg: PgSchema, relay: Relay[CountingHandler], nodes: list[ServeProcess]) -> None:
    # Few recipients and a longer lease: the survivor sends every unleased row well before
    # the dead node's leases run out, ends its run ("incomplete"), and only its watch job
    # can bring the rest back, after the expiry. The lease is long enough that the survivor's
    # own run ends before it, even on a loaded machine (with 10 s, CI once saw the run itself
    # outlast the lease and take the rows back, so the watch job had nothing left to resume).
    count, lease_seconds, connections = 400, 20, 4
    everyone = two_node_project(project, pg, relay, count, lease_seconds=lease_seconds)
    handler = relay.handler
    nodes.extend([ServeProcess(project, "--log-json"), ServeProcess(project, "--log-json")])
    nodes[0].wait_for(lambda: handler.count() >= count // 2, 60, "half of the send")
    # The node that holds the most unsent rows dies: which node claims what is the nodes' race.
    held = dict(pg.execute("SELECT lease_owner, count(*) FROM deliveries WHERE state = 'pending' "
                           "AND lease_owner IS NOT NULL GROUP BY lease_owner"))
    victim, survivor = sorted(nodes, key=lambda node: -sum(n for owner, n in held.items()
                                                            if f":{node.process.pid}:" in owner))
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    killed_at = time.monotonic()
    [(left, expiry)] = pg.execute("SELECT count(*), max(lease_expires_at) FROM deliveries "
                                  f"WHERE lease_owner LIKE '%:{victim.process.pid}:%' AND state = 'pending'")
    survivor.wait_for(lambda: any(e["event"] == "sent" for e in events(survivor)), 60, "the takeover")
    took = time.monotonic() - killed_at
    survivor.stop(signal.SIGTERM)

    assert left > 0, "the dead node held rows when it died"
    names = [e["event"] for e in events(survivor)]
    assert "lease_expired" in names and names.index("lease_expired") < len(names) - 1 - names[::-1].index("sent")
    received = collections.Counter(handler.rcpts)
    assert set(received) == set(everyone), "0 lost"
    assert sum(received.values()) - count <= connections
    status = project.status()
    assert status["counts"]["sent"] == count and status["finished_at"]
    resumed = [datetime.fromisoformat(r["sent_at"]) for r in status["recipients"]
               if r["sent_at"] and datetime.fromisoformat(r["sent_at"]) >= expiry]
    assert len(resumed) >= left - connections, "the dead node's rows went out after its lease expired"
    print(f"\n{left} rows held by the dead node; taken over {took:.1f} s after the kill (lease {lease_seconds} s)")


def test_dead_leases_are_reaped_for_this_host_only(pg: PgSchema, ledgers: list[Ledger]) -> None:
    ledger = open_ledger(pg.url, ledgers)
    dispatch_id = with_rows(ledger, 3)
    [one, two, three] = ledger.claim(dispatch_id, "x", NOW, LEASE, 3)
    pg.execute(f"UPDATE deliveries SET lease_owner = 'db_1:4242:aaaaaa' WHERE id = {one.id};"
               f"UPDATE deliveries SET lease_owner = 'dbx1:4242:bbbbbb' WHERE id = {two.id};"
               f"UPDATE deliveries SET lease_owner = 'db_1:4343:cccccc' WHERE id = {three.id}")
    assert ledger.reap_dead_leases("db_1", lambda pid: pid != 4242) == 1
    owners = dict(pg.execute("SELECT id, lease_owner FROM deliveries"))
    assert owners == {one.id: None, two.id: "dbx1:4242:bbbbbb", three.id: "db_1:4343:cccccc"}

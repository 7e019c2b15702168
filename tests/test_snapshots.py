"""Issue 33, the keeping side, on values: the shrink guard (a pure function of the last accepted
snapshot and the new count), folding a directory's people, and a sync's decisions kept in a
snapshot store, the same rules in memory and in the SQL ledger (SQLite here; PostgreSQL in
test_postgres.py). The directory's answers are values (DirectoryResult), as a source returns
them; the end-to-end tests against slapd and the Graph server are in test_directory_sends.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.app.directory import diff_of, take_snapshot
from dispatch.errors import DirectoryError
from dispatch.ledger import Ledger
from dispatch.ledger.memory import MemorySnapshots
from dispatch.recipients.directory import DirectoryListSpec, DirectoryPerson, DirectoryResult
from dispatch.recipients.snapshots import (
    Snapshot,
    SnapshotMember,
    SnapshotState,
    SnapshotStore,
    change,
    fold_people,
    judge,
    snapshot_digest,
)
from dispatch.values import Fact

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
SPEC = DirectoryListSpec(name="chefer", display_name="Chefer", path="recipients/chefer.yaml", directory="ad",
                         group="CN=chefer,OU=Grupper,DC=example,DC=org")


def people(count: int, start: int = 0) -> tuple[DirectoryPerson, ...]:
    return tuple(DirectoryPerson(f"Person.{n}@Example.org", f"Person {n}", f"uid=p{n},ou=people,dc=example,dc=org")
                 for n in range(start, start + count))


def accepted_with(members: int) -> Snapshot:
    return Snapshot(id=1, list_name="chefer", directory="ad", selector="group x", taken_at=T0,
                    state=SnapshotState.ACCEPTED, members=members, disabled=0, without_mail=0, invalid=0, digest="")


# -- the guard, pure -----------------------------------------------------------------------------


def test_the_first_sync_is_accepted_unless_it_is_empty() -> None:
    assert judge(None, 1, 0.1) == (SnapshotState.ACCEPTED, None)
    assert judge(None, 0, 0.1) == (SnapshotState.HELD, Fact.of("snapshot.empty"))


def test_a_shrink_past_the_limit_is_held_and_says_by_how_much() -> None:
    state, reason = judge(accepted_with(1000), 800, 0.1)
    assert state is SnapshotState.HELD and reason is not None
    assert reason.code == "snapshot.shrank"
    assert dict(reason.params) == {"percent": "20", "before": 1000, "after": 800, "limit": "10"}


def test_small_changes_and_growth_are_accepted_and_exactly_the_limit_too() -> None:
    assert judge(accepted_with(1000), 900, 0.1)[0] is SnapshotState.ACCEPTED  # exactly 10 %: not more than the limit
    assert judge(accepted_with(1000), 899, 0.1)[0] is SnapshotState.HELD
    assert judge(accepted_with(1000), 5000, 0.1)[0] is SnapshotState.ACCEPTED
    assert judge(accepted_with(1000), 999, 0.0)[0] is SnapshotState.HELD, "max_shrink 0: any shrink waits for a person"
    assert judge(accepted_with(1000), 500, 0.5)[0] is SnapshotState.ACCEPTED, "max_shrink is the list's own"


def test_an_empty_result_is_always_held_whatever_the_limit() -> None:
    assert judge(accepted_with(3), 0, 1.0) == (SnapshotState.HELD, Fact.of("snapshot.empty"))


def test_people_are_folded_as_list_members_are() -> None:
    folded = fold_people([
        DirectoryPerson("Anna.Ek@Example.ORG", "", "uid=anna1"),
        DirectoryPerson(" anna.ek@example.org ", "Anna  Ek", "uid=anna2"),  # the same person twice (two entries)
        DirectoryPerson("bo@exa mple.org", "Bo", "uid=bo"),
        DirectoryPerson("eve@example.org\r\nBcc: x@example.org", "Eve", "uid=eve"),
        DirectoryPerson("åsa@example.org", "Åsa", "uid=asa"),
    ])
    assert [(m.key, m.address, m.name, m.source) for m in folded.members] == [
        ("anna.ek@example.org", "Anna.Ek@example.org", "Anna Ek", "uid=anna1")]
    assert [source for _mail, source, _why in folded.invalid] == ["uid=bo", "uid=eve", "uid=asa"]
    assert "\r" not in folded.invalid[1][0], "an unusable address is kept escaped"
    assert snapshot_digest(folded.members) != snapshot_digest([SnapshotMember("anna.ek@example.org", "Anna.Ek@example.org",
                                                                              "Anna E", "uid=anna1")]), "a rename is new"
    assert snapshot_digest(folded.members) != snapshot_digest(folded.members, disabled=1), "so is a disabled account"


def test_a_change_names_who_came_and_who_went() -> None:
    before = [SnapshotMember("a@x.org", "a@x.org", "A", "1"), SnapshotMember("b@x.org", "b@x.org", "B", "2")]
    after = [SnapshotMember("b@x.org", "b@x.org", "B", "2"), SnapshotMember("c@x.org", "c@x.org", "C", "3")]
    made = change(before, after)
    assert [m.name for m in made.added] == ["C"] and [m.name for m in made.removed] == ["A"]


# -- a sync's decisions, kept: the same rules in memory and in SQL ----------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SnapshotStore]:
    if request.param == "memory":
        yield MemorySnapshots()
        return
    url = request.getfixturevalue("pg").url if request.param == "postgres" else f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    yield ledger
    ledger.close()


def answer(result: DirectoryResult) -> Callable[[], DirectoryResult]:
    return lambda: result


def refuse(server: str = "ldaps://dc.example.org:636") -> Callable[[], DirectoryResult]:
    def read() -> DirectoryResult:
        raise DirectoryError("ad", server, "cannot connect: Connection refused")
    return read


def test_a_sync_is_accepted_then_unchanged_syncs_add_nothing(store: SnapshotStore) -> None:
    first = take_snapshot(store, SPEC, answer(DirectoryResult(people(100), disabled=4, without_mail=2)), T0)
    assert first.state is SnapshotState.ACCEPTED and first.new and first.accepted == first.snapshot
    assert (first.snapshot.members, first.snapshot.disabled, first.snapshot.without_mail) == (100, 4, 2)
    assert first.change is None, "nothing before it to compare with"
    again = take_snapshot(store, SPEC, answer(DirectoryResult(tuple(reversed(people(100))), disabled=4, without_mail=2)),
                          T0 + timedelta(hours=1))
    assert not again.new and again.snapshot.id == first.snapshot.id, "the same people in another order: no new snapshot"
    assert again.snapshot.last_seen == T0 + timedelta(hours=1)
    assert store.snapshots("chefer") == [again.snapshot]


def test_a_renamed_person_is_a_new_accepted_snapshot_with_the_new_name(store: SnapshotStore) -> None:
    take_snapshot(store, SPEC, answer(DirectoryResult(people(3))), T0)
    renamed = (*people(2), DirectoryPerson("Person.2@Example.org", "Person Två", "uid=p2,ou=people,dc=example,dc=org"))
    outcome = take_snapshot(store, SPEC, answer(DirectoryResult(renamed)), T0 + timedelta(hours=1))
    assert outcome.new and outcome.state is SnapshotState.ACCEPTED and outcome.change is not None and outcome.change.empty
    assert "Person Två" in {m.name for m in store.snapshot_members(outcome.snapshot.id)}


def test_growth_and_small_changes_are_accepted_and_listed(store: SnapshotStore) -> None:
    take_snapshot(store, SPEC, answer(DirectoryResult(people(100))), T0)
    grown = take_snapshot(store, SPEC, answer(DirectoryResult(people(95, start=10))), T0 + timedelta(hours=1))
    assert grown.state is SnapshotState.ACCEPTED and grown.accepted == grown.snapshot
    assert grown.change is not None
    assert [m.key for m in grown.change.added] == [f"person.{n}@example.org" for n in sorted(range(100, 105), key=str)]
    assert len(grown.change.removed) == 10
    assert store.last_accepted("chefer") == grown.snapshot


def test_a_shrink_is_held_sends_keep_the_last_accepted_and_the_same_shrink_is_one_held_snapshot(store: SnapshotStore) -> None:
    first = take_snapshot(store, SPEC, answer(DirectoryResult(people(100))), T0)
    held = take_snapshot(store, SPEC, answer(DirectoryResult(people(80))), T0 + timedelta(hours=1))
    assert held.state is SnapshotState.HELD and held.new
    assert held.accepted == first.snapshot and store.last_accepted("chefer") == first.snapshot
    assert held.snapshot.reason == Fact.of("snapshot.shrank", percent="20", before=100, after=80, limit="10")
    assert store.pending_held("chefer") == held.snapshot
    again = take_snapshot(store, SPEC, answer(DirectoryResult(people(80))), T0 + timedelta(hours=2))
    assert again.state is SnapshotState.HELD and not again.new and again.snapshot.id == held.snapshot.id
    diff = diff_of(store, SPEC)
    assert diff.held == again.snapshot and diff.shrink == "20"
    assert [m.name for m in diff.change.removed] == [f"Person {n}" for n in sorted(range(80, 100), key=lambda n: f"person.{n}")]
    assert not diff.change.added


def test_accepting_a_held_snapshot_makes_it_the_list_and_only_once(store: SnapshotStore) -> None:
    take_snapshot(store, SPEC, answer(DirectoryResult(people(100))), T0)
    held = take_snapshot(store, SPEC, answer(DirectoryResult(people(50))), T0 + timedelta(hours=1)).snapshot
    assert store.accept_snapshot(held.id, "Operatör Olle", T0 + timedelta(hours=2))
    assert not store.accept_snapshot(held.id, "Someone Else", T0 + timedelta(hours=3)), "accepted once"
    accepted = store.last_accepted("chefer")
    assert accepted is not None and accepted.id == held.id and accepted.members == 50
    assert accepted.accepted_by == "Operatör Olle" and accepted.accepted_at == T0 + timedelta(hours=2)
    assert store.pending_held("chefer") is None
    later = take_snapshot(store, SPEC, answer(DirectoryResult(people(50))), T0 + timedelta(hours=4))
    assert not later.new and later.snapshot.id == held.id, "the accepted snapshot, found again"


def test_the_directory_coming_back_ends_a_held_change(store: SnapshotStore) -> None:
    first = take_snapshot(store, SPEC, answer(DirectoryResult(people(100))), T0)
    take_snapshot(store, SPEC, answer(DirectoryResult(people(10))), T0 + timedelta(hours=1))
    back = take_snapshot(store, SPEC, answer(DirectoryResult(people(100))), T0 + timedelta(hours=2))
    assert back.state is SnapshotState.ACCEPTED and back.new and back.snapshot.digest == first.snapshot.digest
    assert store.pending_held("chefer") is None, "nothing is left for a person to accept"


def test_an_empty_answer_is_held_even_the_first_time(store: SnapshotStore) -> None:
    empty = take_snapshot(store, SPEC, answer(DirectoryResult(())), T0)
    assert empty.state is SnapshotState.HELD and empty.accepted is None
    assert empty.snapshot.reason == Fact.of("snapshot.empty")
    assert store.last_accepted("chefer") is None


def test_a_failing_directory_is_a_failed_snapshot_once_and_changes_nothing(store: SnapshotStore) -> None:
    first = take_snapshot(store, SPEC, answer(DirectoryResult(people(10))), T0)
    failed = take_snapshot(store, SPEC, refuse(), T0 + timedelta(hours=1))
    assert failed.state is SnapshotState.FAILED and failed.accepted == first.snapshot
    assert failed.snapshot.members == 0 and failed.snapshot.reason is not None
    assert failed.snapshot.reason.code == "error.directory" and failed.server == "ldaps://dc.example.org:636"
    again = take_snapshot(store, SPEC, refuse(), T0 + timedelta(hours=2))
    assert not again.new and again.snapshot.id == failed.snapshot.id, "the same failure: one snapshot, seen again"
    assert store.last_accepted("chefer") == first.snapshot
    held = take_snapshot(store, SPEC, answer(DirectoryResult(people(5))), T0 + timedelta(hours=3))
    take_snapshot(store, SPEC, refuse(), T0 + timedelta(hours=4))
    assert store.pending_held("chefer") == held.snapshot, "a failure after a held change does not replace it"


def test_the_alert_about_a_snapshot_is_claimed_once(store: SnapshotStore) -> None:
    held = take_snapshot(store, SPEC, answer(DirectoryResult(())), T0).snapshot
    assert store.mark_alerted(held.id, T0)
    assert not store.mark_alerted(held.id, T0 + timedelta(minutes=1))


def test_a_dispatch_names_the_snapshot_each_list_used(store: SnapshotStore) -> None:
    first = take_snapshot(store, SPEC, answer(DirectoryResult(people(3))), T0).snapshot
    store.record_snapshots_used("2026-12-07.r1.edition", {"chefer": first.id}, T0)
    store.record_snapshots_used("2026-12-07.r1.edition", {"chefer": first.id}, T0)  # a resume: recorded once
    assert store.snapshots_used("2026-12-07.r1.edition") == {"chefer": first.id}
    assert store.snapshots_used("2026-12-08.r1.edition") == {}


@pytest.mark.slow  # ~5 s each; fast twin: test_a_sync_is_accepted_then_unchanged_syncs_add_nothing
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_snapshot_of_50000_members_is_kept_and_read_back_in_seconds(request: pytest.FixtureRequest, tmp_path: Path,
                                                                       database: str) -> None:
    """The ledger's side of acceptance 6: 50,000 members in batches, not a row at a time."""
    url = request.getfixturevalue("pg").url if database == "postgres" else f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    try:
        started = time.perf_counter()
        outcome = take_snapshot(ledger, SPEC, answer(DirectoryResult(people(50_000))), T0)
        members = ledger.snapshot_members(outcome.snapshot.id)
        took = time.perf_counter() - started
    finally:
        ledger.close()
    assert outcome.snapshot.members == 50_000 and len(members) == 50_000
    assert took < 60, f"{took:.1f} s to keep and read 50,000 members"  # generous: a shared, loaded machine

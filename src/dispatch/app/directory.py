"""Directory lists: sync them into snapshots (the shrink guard deciding), say what changed,
accept a held change, and hand a send the people of each list's last accepted snapshot.

A send never reads a directory (``snapshot_people``): it reads the ledger. The directory is
read only by a sync (``sync``: `dispatch recipients sync`, and serve every ``sync_minutes`` and
before each slot), whose result the guard judges against the last accepted snapshot. Every
function returns values (facts, snapshots, changes) for each front door to word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.app.application import Session
from dispatch.app.wiring import directory_source
from dispatch.config import GraphDirectory, LdapDirectory, Settings
from dispatch.errors import DirectoryError, InputError, Problem, display_path
from dispatch.recipients.directory import DirectoryListSpec, DirectoryPerson, DirectoryResult, DirectorySource
from dispatch.recipients.lists import available_lists, list_path, read_directory_list, unknown_list
from dispatch.recipients.snapshots import (
    Change,
    Snapshot,
    SnapshotState,
    SnapshotStore,
    change,
    fold_people,
    judge,
    percent,
    shrink_of,
    snapshot_digest,
)
from dispatch.values import Fact

SourceFactory = Callable[[LdapDirectory | GraphDirectory], DirectorySource]

ACCEPT_ACTION = "list_accepted"  # the audit log's action for a held change accepted by a person


@dataclass(frozen=True)
class SyncOutcome:
    """One directory list after a sync."""

    spec: DirectoryListSpec
    snapshot: Snapshot  # what this sync made (or found again: ``new`` False)
    accepted: Snapshot | None  # the snapshot sends use now
    change: Change | None  # from the previously accepted snapshot to this one (None: failed, or nothing before)
    new: bool
    invalid: tuple[tuple[str, str, Fact], ...] = ()  # addresses in the directory that cannot be sent to

    @property
    def state(self) -> SnapshotState:
        return self.snapshot.state

    @property
    def server(self) -> str:
        """The server a failed sync names (from its reason), else ""."""
        reason = self.snapshot.reason
        return str(reason.params.get("server", "")) if reason is not None and self.state is SnapshotState.FAILED else ""


def directory_lists(settings: Settings, names: Sequence[str] = ()) -> list[DirectoryListSpec]:
    """The named lists (default: every directory list), each read as a directory list. Raises
    InputError for an unknown name, a list that is not a directory list, or one whose
    directory is not under directories: in config."""
    directory = settings.recipients_dir
    kinds = {name: d.kind for name, d in settings.directories.items()}
    known = available_lists(directory)
    problems: list[Problem] = []
    specs: list[DirectoryListSpec] = []
    for name in names or known:
        if name not in known:
            problems.append(unknown_list("LIST", 0, name, known))
            continue
        try:
            spec = read_directory_list(directory, name, kinds)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if spec is None:
            if names:
                path = list_path(directory, name)
                problems.append(Problem.of(display_path(path) if path else name, 1, "recipients.not_a_directory_list", name=name))
            continue
        specs.append(spec)
    if problems:
        raise InputError(problems)
    return specs


def selector_of(spec: DirectoryListSpec) -> str:
    """What a list asks its directory for, as the snapshots and the console show it."""
    return f"group {spec.group}" if spec.group is not None else f"filter {spec.query}"


def read_directory(spec: DirectoryListSpec, source: DirectorySource) -> DirectoryResult:
    if spec.group is not None:
        return source.group_members(spec.group, spec.attributes)
    return source.matching(spec.query or "", spec.attributes)


def read_since(failed: Snapshot, *kept: Snapshot | None) -> bool:
    """Whether the directory was read (a sync that found what is kept) after ``failed`` was last
    seen: a failure after that is a new one, however like the old one it is."""
    return any(k is not None and k.last_seen > failed.last_seen for k in kept)


def take_snapshot(store: SnapshotStore, spec: DirectoryListSpec, read: Callable[[], DirectoryResult],
                  now: datetime) -> SyncOutcome:
    """One list's sync, decided: read it (``read`` raises DirectoryError when the directory
    fails), fold, judge against the last accepted snapshot, keep the result.

    A sync that finds exactly what is kept already adds nothing (it marks the snapshot seen
    again): hourly syncs of an unchanged list of 50,000 cost a read, not 50,000 rows, and a
    held change that stays the same is the same held snapshot (serve alerts about it once)."""
    accepted = store.last_accepted(spec.name)
    pending = store.pending_held(spec.name)
    selector = selector_of(spec)
    try:
        result = read()
    except DirectoryError as exc:
        latest = next(iter(store.snapshots(spec.name, 1)), None)
        if (latest is not None and latest.state is SnapshotState.FAILED and latest.reason == exc.fact
                and not read_since(latest, accepted, pending)):
            store.saw_again(latest.id, now)
            return SyncOutcome(spec, store.snapshot(latest.id) or latest, accepted, None, new=False)
        failed = store.add_snapshot(spec.name, spec.directory, selector, now, SnapshotState.FAILED, disabled=0,
                                    without_mail=0, invalid=0, digest="", reason=exc.fact, members=())
        return SyncOutcome(spec, failed, accepted, None, new=True)
    folded = fold_people(result.people)
    digest = snapshot_digest(folded.members, result.disabled, result.without_mail, len(folded.invalid))
    if accepted is not None and accepted.digest == digest and pending is None:
        # The usual hourly sync: nothing changed, nothing read back or written but the time.
        store.saw_again(accepted.id, now)
        return SyncOutcome(spec, store.snapshot(accepted.id) or accepted, accepted, Change((), ()), new=False,
                           invalid=folded.invalid)
    before = store.snapshot_members(accepted.id) if accepted is not None else []
    if pending is not None and pending.digest == digest:
        store.saw_again(pending.id, now)
        return SyncOutcome(spec, store.snapshot(pending.id) or pending, accepted, change(before, folded.members),
                           new=False, invalid=folded.invalid)
    # New people (or the old ones back after a held change: a new accepted snapshot ends it).
    state, reason = judge(accepted, len(folded.members), spec.max_shrink)
    made = store.add_snapshot(spec.name, spec.directory, selector, now, state, disabled=result.disabled,
                              without_mail=result.without_mail, invalid=len(folded.invalid), digest=digest,
                              reason=reason, members=folded.members)
    return SyncOutcome(spec, made, made if state is SnapshotState.ACCEPTED else accepted,
                       change(before, folded.members) if accepted is not None else None, new=True, invalid=folded.invalid)


def sync(s: Session, names: Sequence[str], now: datetime, *, sources: SourceFactory | None = None) -> list[SyncOutcome]:
    """Sync the named directory lists (default: all). Raises InputError for names that are
    not directory lists; a directory that fails is an outcome (FAILED), not an exception,
    so the other lists are still synced."""
    settings = s.settings
    open_source = sources or directory_source
    opened: dict[str, DirectorySource] = {}
    outcomes = []
    for spec in directory_lists(settings, names):
        def read(spec: DirectoryListSpec = spec) -> DirectoryResult:
            if spec.directory not in opened:
                opened[spec.directory] = open_source(settings.directories[spec.directory])
            return read_directory(spec, opened[spec.directory])

        outcomes.append(take_snapshot(s.ledger, spec, read, now))
    return outcomes


@dataclass(frozen=True)
class ListDiff:
    """What `recipients diff` and the console show of one directory list: the held change
    (from the last accepted snapshot to the held one), or, with nothing held, what the last
    accepted snapshot changed."""

    spec: DirectoryListSpec
    accepted: Snapshot | None
    held: Snapshot | None
    previous: Snapshot | None  # with nothing held: the accepted snapshot before the last one
    change: Change

    @property
    def shrink(self) -> str:
        """The held change's shrink in percent ("20"), "" when nothing is held."""
        if self.held is None or self.accepted is None:
            return ""
        return percent(shrink_of(self.accepted.members, self.held.members))


def list_diff(s: Session, name: str) -> ListDiff:
    """Raises InputError when ``name`` is not a directory list."""
    spec = directory_lists(s.settings, (name,))[0]
    return diff_of(s.ledger, spec)


def diff_of(store: SnapshotStore, spec: DirectoryListSpec) -> ListDiff:
    accepted = store.last_accepted(spec.name)
    held = store.pending_held(spec.name)
    before = store.snapshot_members(accepted.id) if accepted is not None else []
    if held is not None:
        return ListDiff(spec, accepted, held, None, change(before, store.snapshot_members(held.id)))
    previous = None
    if accepted is not None:
        previous = next((x for x in store.snapshots(spec.name, 50)
                         if x.state is SnapshotState.ACCEPTED and x.id < accepted.id), None)
    older = store.snapshot_members(previous.id) if previous is not None else before
    return ListDiff(spec, accepted, None, previous, change(older, before))


@dataclass(frozen=True)
class Accepted:
    spec: DirectoryListSpec
    snapshot: Snapshot
    change: Change


def accept(s: Session, name: str, by: str, now: datetime, expected: int | None = None) -> Accepted | None:
    """Accept the list's held snapshot (None when nothing is held, or when ``expected`` names
    another: the change a person looked at is the one accepted, or none); audited: who, which
    snapshot, how many added and removed. From now on sends use it."""
    spec = directory_lists(s.settings, (name,))[0]
    ledger = s.ledger
    held = ledger.pending_held(spec.name)
    if held is None or (expected is not None and held.id != expected):
        return None
    accepted = ledger.last_accepted(spec.name)
    made = change(ledger.snapshot_members(accepted.id) if accepted is not None else [], ledger.snapshot_members(held.id))
    if not ledger.accept_snapshot(held.id, by, now):
        return None  # accepted (or superseded) by someone else a moment ago
    ledger.record_audit(now, by, ACCEPT_ACTION, spec.name, None, (
        Fact.of("audit_detail.snapshot_accepted", snapshot=held.ref, members=held.members, added=len(made.added),
                removed=len(made.removed)),
    ))
    return Accepted(spec, ledger.snapshot(held.id) or held, made)


class SnapshotPeople(Mapping[str, Sequence[DirectoryPerson]]):
    """For a send or a listing: each directory list's people from its last accepted snapshot,
    as the resolver takes them, read from the ledger when the resolver asks for the list (so
    a send reads only the snapshots of the lists it sends to), and ``used``: which snapshot
    each list it asked for resolved to. A list never accepted is not in it: the resolver says
    so at its file."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self.used: dict[str, int] = {}
        self._read: dict[str, list[DirectoryPerson] | None] = {}

    def _people(self, name: str) -> list[DirectoryPerson] | None:
        if name not in self._read:
            accepted = self.store.last_accepted(name)
            if accepted is None:
                self._read[name] = None
            else:
                self._read[name] = [DirectoryPerson(m.address, m.name, m.source)
                                    for m in self.store.snapshot_members(accepted.id)]
                self.used[name] = accepted.id
        return self._read[name]

    def __getitem__(self, name: str) -> Sequence[DirectoryPerson]:
        people = self._people(name)
        if people is None:
            raise KeyError(name)
        return people

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._people(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, people in self._read.items() if people is not None)

    def __len__(self) -> int:
        return sum(1 for people in self._read.values() if people is not None)


def snapshot_people(s: Session) -> SnapshotPeople:
    return SnapshotPeople(s.ledger)


def snapshot_notes(s: Session, snapshots: Mapping[str, int], now: datetime) -> list[Fact]:
    """What `check` says of the directory lists an edition resolved (``snapshots``: list ->
    the accepted snapshot used): how old each is, a change held for a person, a directory
    that failed at its last sync. Reads the ledger only: the directory need not be up. (A list
    never accepted does not get here: the resolver made it a problem at its file.)"""
    store = s.ledger
    notes: list[Fact] = []
    stale = timedelta(minutes=s.settings.sync_minutes * 3)
    for name, snapshot_id in sorted(snapshots.items()):
        accepted = store.snapshot(snapshot_id)
        if accepted is None:
            continue
        minutes = max(0, int((now - accepted.last_seen).total_seconds() // 60))
        notes.append(Fact.of("snapshot.age", list=name, snapshot=accepted.ref, members=accepted.members, count=minutes))
        held = store.pending_held(name)
        if held is not None:
            notes.append(Fact.of("snapshot.held_note", list=name, snapshot=held.ref,
                                 reason=held.reason or Fact.of("snapshot.empty")))
        latest = next(iter(store.snapshots(name, 1)), None)
        if latest is not None and latest.state is SnapshotState.FAILED and latest.reason is not None:
            notes.append(Fact.of("snapshot.failing", list=name, reason=latest.reason))
        elif now - accepted.last_seen > stale and (latest is None or now - latest.last_seen > stale):
            notes.append(Fact.of("snapshot.stale", list=name))
    return notes


@dataclass(frozen=True)
class DirectoryCard:
    """One directory list as the console's Mottagare page shows it: where it comes from, the
    snapshot sends use, the last sync, and a held change with who it adds and removes."""

    spec: DirectoryListSpec
    selector: str
    accepted: Snapshot | None
    held: Snapshot | None
    latest: Snapshot | None
    diff: ListDiff | None  # with a held change: from the accepted snapshot to the held one

    @property
    def last_sync(self) -> datetime | None:
        return self.latest.last_seen if self.latest is not None else None


def directory_cards(s: Session) -> tuple[list[DirectoryCard], list[Problem]]:
    """Every directory list's card, and the problems of list files that cannot be read as
    directory lists (the other lists' cards are still shown)."""
    settings, store = s.settings, s.ledger
    kinds = {name: d.kind for name, d in settings.directories.items()}
    cards: list[DirectoryCard] = []
    problems: list[Problem] = []
    for name in available_lists(settings.recipients_dir):
        try:
            spec = read_directory_list(settings.recipients_dir, name, kinds)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if spec is None:
            continue
        held = store.pending_held(spec.name)
        cards.append(DirectoryCard(spec, selector_of(spec), store.last_accepted(spec.name), held,
                                   next(iter(store.snapshots(spec.name, 1)), None),
                                   diff_of(store, spec) if held is not None else None))
    return cards, problems


def waiting_lists(s: Session) -> list[tuple[DirectoryListSpec, Snapshot]]:
    """Directory lists with a change held for a person (for Idag: one query a list, no diff).
    A list file that cannot be read is left out here; Mottagare says what is wrong with it."""
    settings, store = s.settings, s.ledger
    kinds = {name: d.kind for name, d in settings.directories.items()}
    waiting = []
    for name in available_lists(settings.recipients_dir) if settings.directories else ():
        try:
            spec = read_directory_list(settings.recipients_dir, name, kinds)
        except InputError:
            continue
        held = store.pending_held(name) if spec is not None else None
        if spec is not None and held is not None:
            waiting.append((spec, held))
    return waiting

"""Snapshots of directory lists, pure: the people a directory returned, folded into members;
the shrink guard that decides whether a new snapshot may replace the last accepted one; and
who was added and removed between two snapshots.

A send never reads a directory: it reads the list's last *accepted* snapshot from the ledger.
A sync that fails, comes back empty, or comes back smaller than the last accepted snapshot
by more than the list's ``max_shrink`` is kept as *held* (or *failed*) and changes nothing
until a person accepts it: a broken filter, a moved OU or a paging bug must never become
the list the 14:00 send uses without somebody seeing it.

The ledger keeps the snapshots (``ledger/snapshots.py``, and ``ledger/memory.py`` in memory);
``SnapshotStore`` is what the sync needs of either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from dispatch.recipients.addresses import CONTROL_CHARACTERS, AddressError, escape_controls, fold_trimmed
from dispatch.recipients.directory import DirectoryPerson
from dispatch.values import Fact


class SnapshotState(StrEnum):
    """Where a snapshot stands (the ledger's ``state`` column)."""

    ACCEPTED = "accepted"  # sends use the newest of these
    HELD = "held"  # the guard stopped it: waits for a person to accept it
    FAILED = "failed"  # the directory could not be read: no members, the reason kept


@dataclass(frozen=True)
class SnapshotMember:
    """One person on a snapshot: the address folded as list members are, and where the
    directory had them (an LDAP entry's DN, a Graph user's object id)."""

    key: str  # the folded key: one person, one recipient
    address: str
    name: str
    source: str


@dataclass(frozen=True)
class Snapshot:
    """One sync of one directory list, as the ledger keeps it (its members apart)."""

    id: int
    list_name: str
    directory: str  # the name under directories: in config
    selector: str  # what was asked: "group DN" or "filter (...)"
    taken_at: datetime
    state: SnapshotState
    members: int
    disabled: int  # left out: accounts disabled in the directory
    without_mail: int  # left out: entries without a mail address
    invalid: int  # left out: mail addresses that cannot be sent to
    digest: str  # of what the sync found (see snapshot_digest): found again, the same digest ("" when failed)
    reason: Fact | None = None  # why held (shrank, empty) or failed (the directory's error)
    accepted_by: str | None = None  # None for a snapshot the guard accepted by itself
    accepted_at: datetime | None = None
    checked_at: datetime | None = None  # the last sync that found exactly this (a sync that changes nothing adds nothing)
    alerted_at: datetime | None = None  # when serve alerted `notify` about it (once)

    @property
    def ref(self) -> str:
        """The snapshot as history, export and the commands name it."""
        return str(self.id)

    @property
    def last_seen(self) -> datetime:
        return self.checked_at or self.taken_at


@dataclass(frozen=True)
class Folded:
    """The directory's people as members (each key once, the first name seen kept), and the
    entries whose mail address cannot be sent to, each with the reason."""

    members: tuple[SnapshotMember, ...]
    invalid: tuple[tuple[str, str, Fact], ...]  # (mail as the directory has it, escaped; source; why)



def fold_people(people: Iterable[DirectoryPerson]) -> Folded:
    """Fold the directory's addresses exactly as list members are folded (so one person on a
    file list and on a directory list gets one message)."""
    members: dict[str, SnapshotMember] = {}
    invalid: list[tuple[str, str, Fact]] = []
    for person in people:
        mail, name = person.mail.strip(), " ".join(person.name.split())
        if CONTROL_CHARACTERS.search(mail):
            invalid.append((escape_controls(mail)[:320], person.source, Fact.of("address.control_character")))
            continue
        if CONTROL_CHARACTERS.search(name):
            name = " ".join(escape_controls(name).split())  # a name may become a To header: never a line break in it
        try:
            address, key = fold_trimmed(mail)
        except AddressError as exc:
            invalid.append((mail[:320], person.source, exc.fact))
            continue
        known = members.get(key)
        if known is None:
            members[key] = SnapshotMember(key, address, name, person.source)
        elif not known.name and name:
            members[key] = SnapshotMember(key, known.address, name, known.source)
    return Folded(tuple(members.values()), tuple(invalid))


def snapshot_digest(members: Iterable[SnapshotMember], disabled: int = 0, without_mail: int = 0, invalid: int = 0) -> str:
    """SHA-256 of everything a snapshot shows: each member's key, address and name (sorted:
    the directory's order does not matter) and the counts left out. A sync that finds the
    same digest again found nothing new; a renamed person or a newly disabled account is new."""
    digest = hashlib.sha256()
    for line in sorted(f"{m.key}\t{m.address}\t{m.name}" for m in members):
        digest.update(line.encode("utf-8") + b"\n")
    digest.update(f"left out: {disabled} {without_mail} {invalid}".encode())
    return digest.hexdigest()


def percent(fraction: float) -> str:
    """A shrink as people read it: "20", "12.5" (one decimal at most)."""
    text = f"{fraction * 100:.1f}"
    return text[:-2] if text.endswith(".0") else text


def judge(last_accepted: Snapshot | None, count: int, max_shrink: float) -> tuple[SnapshotState, Fact | None]:
    """The shrink guard: may a sync of ``count`` members replace ``last_accepted``?

    Always held when empty (a directory that returns nobody is broken far more often than a
    group emptied on purpose); held when smaller than the last accepted snapshot by more than
    ``max_shrink`` (a fraction); otherwise accepted (growth and small changes, which the sync
    lists). The first sync of a list is accepted unless it is empty."""
    if count == 0:
        return SnapshotState.HELD, Fact.of("snapshot.empty")
    if last_accepted is None or last_accepted.members == 0:
        return SnapshotState.ACCEPTED, None
    before = last_accepted.members
    shrink = (before - count) / before
    if shrink > max_shrink:
        return SnapshotState.HELD, Fact.of("snapshot.shrank", percent=percent(shrink), before=before, after=count,
                                           limit=percent(max_shrink))
    return SnapshotState.ACCEPTED, None


@dataclass(frozen=True)
class Change:
    """Who a snapshot adds and removes compared with another (each sorted by address)."""

    added: tuple[SnapshotMember, ...]
    removed: tuple[SnapshotMember, ...]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def change(before: Iterable[SnapshotMember], after: Iterable[SnapshotMember]) -> Change:
    old = {m.key: m for m in before}
    new = {m.key: m for m in after}
    added = sorted((m for key, m in new.items() if key not in old), key=lambda m: m.key)
    removed = sorted((m for key, m in old.items() if key not in new), key=lambda m: m.key)
    return Change(tuple(added), tuple(removed))


def shrink_of(before: int, after: int) -> float:
    """How much smaller ``after`` is than ``before``, as a fraction (negative: it grew)."""
    return (before - after) / before if before else 0.0


class SnapshotStore(Protocol):
    """What the sync, the resolver and the commands need of a ledger's snapshots."""

    def add_snapshot(self, list_name: str, directory: str, selector: str, taken_at: datetime, state: SnapshotState, *,
                     disabled: int, without_mail: int, invalid: int, digest: str, reason: Fact | None,
                     members: Sequence[SnapshotMember]) -> Snapshot:
        """Keep a new snapshot with its members (none for a failed one)."""
        ...

    def snapshot(self, snapshot_id: int) -> Snapshot | None: ...

    def snapshots(self, list_name: str, limit: int = 20) -> list[Snapshot]:
        """The list's snapshots, newest first."""
        ...

    def last_accepted(self, list_name: str) -> Snapshot | None: ...

    def pending_held(self, list_name: str) -> Snapshot | None:
        """The held snapshot waiting for a person (see ``pending_of``)."""
        ...

    def snapshot_members(self, snapshot_id: int) -> list[SnapshotMember]: ...

    def accept_snapshot(self, snapshot_id: int, by: str, at: datetime) -> bool:
        """Accept a held snapshot; False when it is not held (any more)."""
        ...

    def saw_again(self, snapshot_id: int, at: datetime) -> None:
        """A sync found exactly this snapshot again."""
        ...

    def mark_alerted(self, snapshot_id: int, at: datetime) -> bool:
        """True for the first caller only: the alert about this snapshot is this caller's to send."""
        ...

    def record_snapshots_used(self, dispatch_name: str, used: Mapping[str, int], at: datetime) -> None:
        """Which snapshot each directory list of a dispatch resolved to."""
        ...

    def snapshots_used(self, dispatch_name: str) -> dict[str, int]: ...


def pending_of(snapshots: Iterable[Snapshot], last_accepted: Snapshot | None) -> Snapshot | None:
    """The held snapshot waiting for a person: the newest held one taken after the last accepted
    one (``snapshots`` newest first). A failed sync after it does not replace it; an accepted
    one does (the directory came back, or a person accepted a later one)."""
    floor = last_accepted.id if last_accepted is not None else 0
    return next((s for s in snapshots if s.state is SnapshotState.HELD and s.id > floor), None)

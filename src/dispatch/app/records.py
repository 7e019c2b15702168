"""Records: finding a dispatch, its status, the history of all of them, and the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dispatch import wording
from dispatch.app.application import Session
from dispatch.app.changes import review
from dispatch.app.labels import label_of
from dispatch.app.reading import read_edition
from dispatch.email.edition import edition_path
from dispatch.errors import DispatchError, display_path
from dispatch.ledger import DispatchRecord, Ledger
from dispatch.models import Approval
from dispatch.publishing.export import approved_by, export_document, iso
from dispatch.values import DispatchKind, DispatchLabel, Fact


def find_dispatch(ledger: Ledger, ref: str | None) -> DispatchRecord | None:
    """A dispatch by name, or the latest of a date (YYYY-MM-DD; test sends only when the
    date has nothing else), or the latest of all (None)."""
    if not ref:
        return ledger.find_dispatch(None)
    record = ledger.find_dispatch(ref)
    if record is not None:
        return record
    try:
        day = date.fromisoformat(ref)
    except ValueError:
        return None
    of_day = ledger.list_dispatches(day)
    real = [d for d in of_day if d.kind_of is not DispatchKind.TEST]
    return (real or of_day)[-1] if of_day else None


def edition_note(s: Session, record: DispatchRecord, now: datetime) -> Fact | None:
    """For an edition dispatch: whether its file still holds what was sent (or approved)."""
    settings = s.settings
    if record.kind_of is not DispatchKind.EDITION:
        return None
    path = edition_path(settings.reports_dir, record.edition_date)
    shown = display_path(path)
    try:
        edition = read_edition(s, None, path, now)
        found = review(s, edition, now)
    except DispatchError as exc:
        return Fact.of("edition_file.unreadable", path=shown, error=str(exc).splitlines()[0])
    content = found.content.short
    if edition.revision != record.revision:
        return Fact.of("edition_file.revision", path=shown, revision=edition.revision, content=content)
    if found.conflict is not None:
        return Fact.of("edition_file.conflict", path=shown, content=content)
    if found.sent is not None and found.sent.source_text == edition.source_text:
        if found.content.hash != record.content_hash:
            return Fact.of("edition_file.standing_changed", path=shown)
        return Fact.of("edition_file.unchanged", path=shown, content=content)
    if record.content_hash and record.content_hash != found.content.hash and found.verdict is not None:
        return Fact.of("edition_file.changed", path=shown, content=content, reason=found.verdict.reason)
    return Fact.of("edition_file.unchanged", path=shown, content=content)


def history(s: Session, since: date | None) -> list[dict[str, Any]]:
    """Every dispatch with what it sent and who let it go, oldest first."""
    ledger = s.ledger
    entries = []
    for record in ledger.list_dispatches(since=since):
        document = export_document(record, ledger.counts(record.id), [], [])
        entries.append({
            "dispatch": record.name, "kind": record.kind, "edition": record.edition_date.isoformat(),
            "revision": record.revision, "subject": record.subject, "content_hash": record.content_hash,
            "created_by": record.created_by, "approved_by": document["approved_by"],
            "by_front_matter": record.by_front_matter, "approved_at": document["approved_at"], "counts": document["counts"],
            "started_at": document["created_at"], "finished_at": document["finished_at"],
            "snapshots": snapshot_refs(ledger.snapshots_used(record.name)),
        })
    return entries


def approval_history(s: Session, since: date | None) -> list[dict[str, Any]]:
    """Every recorded approval (revoked ones too), oldest first: `history --json`'s "approvals"."""
    ledger = s.ledger
    return [
        {"edition": a.edition_date.isoformat(), "revision": a.revision, "content_hash": a.content_hash,
         "approved_by": a.approved_by, "approved_at": iso(a.approved_at), "revoked_by": a.revoked_by,
         "revoked_at": iso(a.revoked_at)}
        for a in reversed(ledger.all_approvals(since))
    ]


@dataclass(frozen=True)
class Status:
    """One dispatch as `status` shows it."""

    record: DispatchRecord
    counts: dict[str, int]
    rows: list[dict[str, Any]]
    related: list[dict[str, Any]]  # every dispatch of the same edition date: revisions, urgent, tests
    edition_note: Fact | None  # whether the edition file still holds what was sent
    revoked: Approval | None  # the approval it went out under, if that has been revoked since

    @property
    def label(self) -> DispatchLabel:
        return label_of(self.record)

    def document(self) -> dict[str, Any]:
        """The `status --json` object (a contract: extend compatibly)."""
        record = self.record
        document: dict[str, Any] = {
            "dispatch": record.name, "edition": record.edition_date.isoformat(), "revision": record.revision,
            "kind": record.kind, "subject": record.subject, "source": record.source,
            "content_hash": record.content_hash, "approved_by": approved_by(record),
            "approved_at": iso(record.approved_at), "created_by": record.created_by,
            "created_at": iso(record.created_at), "finished_at": iso(record.finished_at),
            "counts": self.counts,
            "recipients": [
                {
                    "email": row["address"], "name": row["name"], "state": row["state"],
                    "attempts": row["attempts"], "reply": row["reply"], "message_id": row["message_id"],
                    "node": row["node"], "sent_at": iso(row["sent_at"]), "updated_at": iso(row["updated_at"]),
                }
                for row in self.rows
            ],
            "dispatches_of_date": self.related,
        }
        if self.edition_note:
            document["edition_file"] = wording.english(self.edition_note)
        return document


def status(s: Session, ref: str | None, now: datetime) -> Status | None:
    """The dispatch ``ref`` names (see find_dispatch), with its rows; None when there is none."""
    ledger = s.ledger
    record = find_dispatch(ledger, ref)
    if record is None:
        return None
    day = record.edition_date
    related = [
        {"dispatch": other.name, "revision": other.revision, "kind": other.kind,
         "content_hash": other.content_hash, "created_by": other.created_by,
         "created_at": iso(other.created_at), "counts": ledger.counts(other.id)}
        for other in ledger.list_dispatches(day)
    ]
    revoked = next((a for a in ledger.approvals(day) if a.id == record.approval_id and a.revoked_at is not None), None)
    return Status(record, ledger.counts(record.id), ledger.rows(record.id), related,
                  edition_note(s, record, now), revoked)


def export(s: Session, ref: str) -> dict[str, Any] | None:
    """The records of the dispatch ``ref`` names, as one JSON-ready document; None when there is none."""
    ledger = s.ledger
    record = find_dispatch(ledger, ref)
    if record is None:
        return None
    return export_document(record, ledger.counts(record.id), ledger.rows(record.id), ledger.contents(record.name),
                           snapshots=snapshot_refs(ledger.snapshots_used(record.name)))


def snapshot_refs(used: dict[str, int]) -> dict[str, str]:
    """{LIST: SNAPSHOT-ID} as history --json and the export name them."""
    return {name: str(snapshot_id) for name, snapshot_id in sorted(used.items())}

"""Where things stand, for the console's home page ("Idag") and an edition's page: each
schedule's next slot and approval deadline, and each day's edition state, in Swedish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from dispatch.app.application import Session
from dispatch.app.changes import review
from dispatch.app.drafting import split_fields
from dispatch.app.editions import read_edition
from dispatch.app.timetable import approval_moment, next_occurrence
from dispatch.config import Schedule, Settings
from dispatch.email.edition import edition_path
from dispatch.errors import InputError
from dispatch.ledger import Ledger
from dispatch.models import Approval, DispatchRecord


@dataclass(frozen=True)
class EditionState:
    """One day's edition: ``key`` is missing, problems, draft, approved, sending or sent."""

    day: date
    key: str
    text: str  # one Swedish sentence for the page
    approval: Approval | None = None
    authors: tuple[str, ...] = ()
    content_hash: str | None = None
    dispatch: DispatchRecord | None = None
    counts: dict[str, int] | None = None
    revision: int = 1


@dataclass(frozen=True)
class ScheduleDay:
    schedule: Schedule
    next_at: datetime | None
    approval_deadline: datetime | None
    edition: EditionState


def today(s: Session, now: datetime) -> list[ScheduleDay]:
    """Each schedule's next slot, its approval deadline, and the state of that day's edition."""
    settings = s.settings
    zone = settings.timezone
    days = []
    for schedule in settings.schedules:
        occurrence = next_occurrence(schedule, zone, now)
        day = occurrence.day if occurrence else now.astimezone(zone).date()
        days.append(ScheduleDay(schedule, occurrence.at if occurrence else None,
                                approval_moment(occurrence) if occurrence else None,
                                edition_state(s, day, now)))
    return days


def edition_state(s: Session, day: date, now: datetime) -> EditionState:
    """The day's edition: its dispatch while it sends and once sent, unless the file is a
    later revision (a correction being written), which is judged like any draft."""
    settings, ledger = s.settings, s.ledger
    sent = [d for d in ledger.list_dispatches(day) if d.kind == "edition"]
    exists = edition_path(settings.reports_dir, day).exists()
    edition = None
    problems: InputError | None = None
    if exists:
        try:
            edition = read_edition(s, day, None, now)
        except InputError as exc:
            problems = exc
    revision = edition.revision if edition is not None else _revision_written(settings, day) if exists else 1
    if sent and revision <= max(d.revision for d in sent):
        return _dispatch_state(s, day, sent[-1])
    prefix = f"Rättelse (version {revision}): " if sent else ""
    if not exists:
        return EditionState(day, "missing", "Saknas: ingen rapport är skriven för dagen")
    if edition is None:
        count = len(problems.problems) if problems else 0
        return EditionState(day, "problems", f"{prefix}Utkast med {count} fel som måste rättas")
    try:
        found = review(s, edition, now)
    except InputError as exc:
        return EditionState(day, "problems", f"{prefix}Utkast med {len(exc.problems)} fel som måste rättas")
    verdict = found.gate_verdict()
    zone = settings.timezone
    if verdict.sendable:
        approval = verdict.approval
        text = (f"Godkänd av {approval.approved_by} {approval.approved_at.astimezone(zone):%Y-%m-%d %H:%M}"
                if approval else "Godkänd ('status: approved' i filen)")
        return EditionState(day, "approved", prefix + text, approval, found.authors, found.content.hash,
                            revision=edition.revision)
    return EditionState(day, "draft", f"{prefix}Utkast: {verdict.reason_sv}", None, found.authors, found.content.hash,
                        revision=edition.revision)


def _revision_written(settings: Settings, day: date) -> int:
    """The revision the file says, even when the edition has problems (a correction whose
    text is not written yet is still a correction)."""
    try:
        fields, _ = split_fields(edition_path(settings.reports_dir, day).read_text(encoding="utf-8"))
        return int(fields.get("revision") or 1)
    except (OSError, ValueError):
        return 1


def _dispatch_state(s: Session, day: date, record: DispatchRecord) -> EditionState:
    settings, ledger = s.settings, s.ledger
    counts = ledger.counts(record.id)
    total = sum(counts.values())
    waiting = counts.get("pending", 0) + counts.get("deferred", 0) + counts.get("unknown", 0)
    failed = counts.get("failed", 0)
    tail = f", {failed} misslyckade" if failed else ""
    if waiting and record.finished_at is None:
        return EditionState(day, "sending", f"Skickas: {counts.get('sent', 0)} av {total}{tail}",
                            dispatch=record, counts=counts, content_hash=record.content_hash, revision=record.revision)
    finished = record.finished_at or record.created_at
    return EditionState(day, "sent", f"Skickad {finished.astimezone(settings.timezone):%Y-%m-%d %H:%M} till "
                                     f"{counts.get('sent', 0)} mottagare{tail}",
                        dispatch=record, counts=counts, content_hash=record.content_hash, revision=record.revision)


def approvals_of(ledger: Ledger, day: date) -> list[Approval]:
    """Every approval of the day's edition, revoked ones included, newest first."""
    return ledger.approvals(day)

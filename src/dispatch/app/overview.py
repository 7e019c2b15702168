"""Where things stand, for the console's home page ("Idag") and an edition's page: each
schedule's next slot and approval deadline, and each day's edition state as facts (the
console words them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from dispatch.app.application import Session
from dispatch.app.changes import review
from dispatch.app.drafting import split_fields
from dispatch.app.labels import label_of
from dispatch.app.reading import read_edition
from dispatch.app.timetable import approval_moment, next_occurrence
from dispatch.config import Schedule, Settings
from dispatch.control.approval import Verdict
from dispatch.email.edition import edition_path
from dispatch.errors import InputError, Problem
from dispatch.ledger import Ledger
from dispatch.models import Approval, DispatchRecord
from dispatch.values import DispatchKind, DispatchLabel, Fact, RunState


@dataclass(frozen=True)
class EditionState:
    """One day's edition: ``key`` is missing, problems, draft, approved, sending or sent;
    ``fact`` says it (``edition.*``), ``correction`` the revision when it is a correction being
    written; ``verdict`` why a draft may not go yet."""

    day: date
    key: str
    fact: Fact
    correction: int | None = None
    verdict: Verdict | None = None
    run_state: RunState | None = None  # a dispatch that sends: sending, waiting for urgent, paused by relay
    label: DispatchLabel | None = None
    approval: Approval | None = None
    authors: tuple[str, ...] = ()
    content_hash: str | None = None
    dispatch: DispatchRecord | None = None
    counts: dict[str, int] | None = None
    revision: int = 1
    tail: Fact | None = None  # said after the fact: how many failed


@dataclass(frozen=True)
class ScheduleDay:
    schedule: Schedule
    next_at: datetime | None
    approval_deadline: datetime | None
    edition: EditionState

    @property
    def started_at(self) -> datetime | None:
        """When the day's edition began to go out (sent by hand before the slot, or at it);
        None while nothing of it has: only then is ``next_at`` its next send."""
        record = self.edition.dispatch
        return record.created_at if record is not None and self.edition.key in ("sending", "sent") else None

    @property
    def sent_at(self) -> datetime | None:
        """When the day's edition finished going out; None while it has not."""
        record = self.edition.dispatch
        if record is None or self.edition.key != "sent":
            return None
        return record.finished_at or record.created_at


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
    sent = [d for d in ledger.list_dispatches(day) if d.kind_of is DispatchKind.EDITION]
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
        return _dispatch_state(s, day, sent[-1], now)
    correction = revision if sent else None
    if not exists:
        return EditionState(day, "missing", Fact.of("edition.missing"))
    if edition is None:
        count = len(problems.problems) if problems else 0
        return EditionState(day, "problems", Fact.of("edition.problems", count=count), correction)
    try:
        found = review(s, edition, now)
    except InputError as exc:
        return EditionState(day, "problems", Fact.of("edition.problems", count=len(exc.problems)), correction)
    verdict = found.verdict
    if verdict is None:
        raise InputError([Problem(str(edition_path(settings.reports_dir, day)), 0, "the edition was not judged")])
    zone = settings.timezone
    if verdict.sendable:
        approval = verdict.approval
        fact = (Fact.of("edition.approved_by", by=approval.approved_by,
                        at=f"{approval.approved_at.astimezone(zone):%Y-%m-%d %H:%M}")
                if approval else Fact.of("edition.approved_in_file"))
        return EditionState(day, "approved", fact, correction, verdict, approval=approval, authors=found.authors,
                            content_hash=found.content.hash, revision=edition.revision)
    return EditionState(day, "draft", Fact.of("edition.draft"), correction, verdict, authors=found.authors,
                        content_hash=found.content.hash, revision=edition.revision)


def _revision_written(settings: Settings, day: date) -> int:
    """The revision the file says, even when the edition has problems (a correction whose
    text is not written yet is still a correction)."""
    try:
        fields, _ = split_fields(edition_path(settings.reports_dir, day).read_text(encoding="utf-8"))
        return int(fields.get("revision") or 1)
    except (OSError, ValueError):
        return 1


def _dispatch_state(s: Session, day: date, record: DispatchRecord, now: datetime) -> EditionState:
    settings, ledger = s.settings, s.ledger
    counts = ledger.counts(record.id)
    total = sum(counts.values())
    sent = counts.get("sent", 0)
    waiting = counts.get("pending", 0) + counts.get("deferred", 0) + counts.get("unknown", 0)
    failed = counts.get("failed", 0)
    tail = Fact.of("edition.failed", count=failed) if failed else None
    key, run_state = "sending", RunState.SENDING
    fact: Fact
    if waiting and record.finished_at is None:
        urgent = ledger.urgent_ahead(now)  # every other dispatch gives way to it while it sends
        if urgent is not None:
            run_state, tail = RunState.WAITING_FOR_URGENT, None
            fact = Fact.of("edition.waiting_for_urgent", subject=urgent, sent=sent, total=total)
        elif counts.get("deferred", 0) and ledger.held_by_relay(record.id) is not None:
            run_state, tail = RunState.PAUSED_BY_RELAY, None
            fact = Fact.of("edition.paused_by_relay", sent=sent, total=total)
        elif not counts.get("deferred", 0) and not counts.get("unknown", 0) and not ledger.leased_by_others(record.id, "", now):
            # Recipients wait, none for a retry, and no run holds any of them: nothing is sending it
            # (stopped, or a run that ended early); saying "Skickas" here would be untrue.
            run_state = RunState.QUEUED
            fact = Fact.of("edition.not_sending", sent=sent, total=total)
        else:
            fact = Fact.of("edition.sending", sent=sent, total=total)
    else:
        key = "sent"
        finished = record.finished_at or record.created_at
        fact = Fact.of("edition.sent", count=sent, sent=sent, at=f"{finished.astimezone(settings.timezone):%Y-%m-%d %H:%M}")
    return EditionState(day, key, fact, run_state=run_state if key == "sending" else None, label=label_of(record),
                        dispatch=record, counts=counts, content_hash=record.content_hash, revision=record.revision, tail=tail)


def approvals_of(ledger: Ledger, day: date) -> list[Approval]:
    """Every approval of the day's edition, revoked ones included, newest first."""
    return ledger.approvals(day)

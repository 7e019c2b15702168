"""Change control, the decisions: which dispatch a send goes to and whether it may go,
approvals and their revocation, and publishing under change control."""

from __future__ import annotations

import re  # not wording: makes an urgent dispatch's name from its file's name
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dispatch.app.application import Session
from dispatch.app.changes import changed_after_send, identify, latest_sent_edition, review, sent_edition
from dispatch.app.editions import Prepared
from dispatch.app.reading import read_edition
from dispatch.app.wiring import current_user
from dispatch.config import Settings
from dispatch.control import approval as gate
from dispatch.control import content as content_id
from dispatch.control.content import Content
from dispatch.email.edition import edition_path
from dispatch.errors import ChangeControlError, InputError, Problem, display_path
from dispatch.ledger import DispatchRecord, Ledger, dispatch_name
from dispatch.models import Approval, Edition
from dispatch.publishing.accessibility_statement import statement_body, write_statement
from dispatch.publishing.intranet import Published, publish_edition
from dispatch.values import DispatchKind, Fact
from dispatch.wording import english, swedish, swedish_of


@dataclass(frozen=True)
class Decision:
    """Which dispatch a send goes to, and why it may go."""

    name: str
    kind: str
    content: Content
    existing: DispatchRecord | None
    counts: dict[str, int]
    verdict: gate.Verdict | None
    notes: tuple[str, ...]
    edition_date: date
    revision: int
    to_send: int  # recipients this send would reach now (new to the dispatch, or still waiting)

    @property
    def already_accepted(self) -> int:
        return self.counts.get("sent", 0)


TEST_MOMENT = "%Y%m%dT%H%M%S"  # a test dispatch's kind names the moment it was made, in UTC


def test_made_at(stored_kind: str) -> datetime | None:
    """The moment a test dispatch was made, read back from its stored kind (``test-20261207T141800``):
    prepared for that moment again, a retry of the test is the same dispatch."""
    detail = stored_kind.removeprefix(DispatchKind.TEST.detail_prefix)
    try:
        return datetime.strptime(detail, TEST_MOMENT).replace(tzinfo=UTC)
    except ValueError:
        return None


def decide(s: Session, ready: Prepared, now: datetime) -> Decision:
    """Name the dispatch and check that the content may go; ChangeControlError if not."""
    ledger = s.ledger
    edition = ready.edition
    found = review(s, edition, now, test=ready.test, for_send=True)
    current = found.content
    notes: list[str] = []
    if ready.test:
        # From the time the test was prepared, not the clock now: the name `send` prints before
        # sending is the one it sends as. UTC, whichever clock the caller holds.
        kind = DispatchKind.TEST.stored(f"{(ready.made_at or now).astimezone(UTC):{TEST_MOMENT}}")
    elif edition.urgent:
        same = ledger.dispatches_with_content(current.hash, DispatchKind.URGENT)
        if same:
            # Whatever day it was first sent: the same message again resumes that dispatch.
            record = same[-1]
            return _decision(ledger, ready, record.name, record.kind, current, record, None,
                             [f"same content as urgent dispatch {record.name}"],
                             record.edition_date, record.revision)
        kind, notes = _urgent_kind(ledger, edition, current)
    else:
        kind = edition.kind
        found.gate_verdict()  # a daily edition is always judged: no verdict here is a fault, not a pass
        refusal = found.refusal(edition, "refusal.not_sendable")
        if refusal is not None:
            raise refusal
        early = too_early(s.settings, edition, now)
        if early is not None:
            # Here, not in the edition's reading: an edition written and approved ahead of its
            # day checks and approves as any other; only sending it waits for its time.
            raise ChangeControlError([Problem(display_path(edition.source), edition.line_of.get("compiled", 1),
                                              early.refusal)])
    name = dispatch_name(edition.date, edition.revision, kind)
    existing = ledger.find_dispatch(name)
    return _decision(ledger, ready, name, kind, current, existing, found.verdict, notes, edition.date, edition.revision)


@dataclass(frozen=True)
class TooEarly:
    """A daily edition whose 'compiled' time is still to come: it may be checked and approved
    ahead of its day, but not sent (by hand or on schedule) before that time, or its readers
    would read "Sammanställd" at a time that has not come yet."""

    day: date
    today: date
    compiled: datetime  # local, aware
    now: datetime  # local, aware
    schedule: str | None = None  # the schedule with the day's earliest slot, if any runs that day
    slot: datetime | None = None  # that slot, local

    @property
    def _then(self) -> Fact:
        """When it goes: by hand (no schedule that day), or the day's schedule at its slot."""
        if self.slot is None:
            return Fact.of("sendable.by_hand", day=self.day.isoformat(), compiled=f"{self.compiled:%Y-%m-%d %H:%M}")
        if self.slot == self.compiled:
            return Fact.of("sendable.at_slot", schedule=str(self.schedule))
        if self.slot.astimezone(UTC) < self.compiled.astimezone(UTC):  # the run comes first, and will be refused
            return Fact.of("sendable.slot_before", schedule=str(self.schedule), at=f"{self.slot:%Y-%m-%d %H:%M}",
                           compiled=f"{self.compiled:%Y-%m-%d %H:%M}")
        return Fact.of("sendable.slot", schedule=str(self.schedule), at=f"{self.slot:%Y-%m-%d %H:%M}")

    @property
    def refusal(self) -> Fact:
        """Why a send is refused now, and when it can go."""
        return Fact.of("send.before_compiled", day=self.day.isoformat(), today=self.today.isoformat(),
                       compiled=f"{self.compiled:%Y-%m-%d %H:%M}", now=f"{self.now:%H:%M}", then=self._then)

    @property
    def note(self) -> Fact:
        """What check says of it: valid, and when it can go."""
        return Fact.of("check.sendable_from", day=self.day.isoformat(), compiled=f"{self.compiled:%Y-%m-%d %H:%M}",
                       then=self._then)


def too_early(settings: Settings, edition: Edition, now: datetime) -> TooEarly | None:
    """None when the edition may go now as far as its time goes: an urgent message (its
    'compiled' is when it is sent), or a 'compiled' at or before ``now``. A schedule's slot at
    the compiled time sends it: the two are the same minute."""
    if edition.urgent:
        return None
    # Here, not at the top: the timetable brings APScheduler, which commands that never send
    # (status, history) do not load.
    from dispatch.app.timetable import first_slot_on, first_valid

    zone = settings.timezone
    # A wall-clock time that a spring DST change skips (02:30) is its first valid moment (03:00),
    # as the schedule's run is: a slot at the compiled time sends it.
    compiled = first_valid(edition.compiled.replace(tzinfo=zone))
    if compiled.astimezone(UTC) <= now.astimezone(UTC):
        return None
    local_now = now.astimezone(zone)
    slot = first_slot_on(settings, edition.date)
    if slot is None:
        return TooEarly(edition.date, local_now.date(), compiled, local_now)
    return TooEarly(edition.date, local_now.date(), compiled, local_now, slot[0], slot[1].astimezone(zone))


def decide_now(s: Session, ready: Prepared, now: datetime) -> Decision:
    return decide(s, ready, now)


def _decision(ledger: Ledger, ready: Prepared, name: str, kind: str, current: Content, existing: DispatchRecord | None,
              verdict: gate.Verdict | None, notes: list[str], day: date, revision: int) -> Decision:
    """The decision, with exactly whom the send would reach: the planned recipients the
    dispatch lacks, plus its rows still waiting (a resume sends those too)."""
    counts = ledger.counts(existing.id) if existing else {}
    if existing is None:
        to_send = len(ready.resolution.recipients)
    else:
        states = ledger.states_by_key(existing.id)
        to_send = sum(1 for key in ready.resolution.recipients if key not in states)
        to_send += sum(1 for state in states.values() if state in ("pending", "deferred", "unknown"))
    return Decision(name, kind, current, existing, counts, verdict, tuple(notes), day, revision, to_send)


def _urgent_kind(ledger: Ledger, edition: Edition, current: Content) -> tuple[str, list[str]]:
    """A new urgent dispatch: named after the file and its content, so that changed content
    is a new dispatch. Notes name the earlier dispatches of the same file."""
    slug = (re.sub(r"[^a-z0-9]+", "-", edition.source.stem.lower()).strip("-") or "meddelande")[:50]
    kind = DispatchKind.URGENT.stored(f"{slug}-{current.hash[:8]}")
    notes = []
    for record in ledger.list_dispatches():
        if record.kind.startswith(DispatchKind.URGENT.stored(slug)) and record.kind != kind:
            notes.append(f"{display_path(edition.source)} differs from what urgent dispatch {record.name} sent "
                         f"(content {content_id.short(record.content_hash)}); this is a new urgent dispatch "
                         f"{dispatch_name(edition.date, edition.revision, kind)} (content {current.short})")
    return kind, notes


def approve(s: Session, ready: Prepared, by: str, now: datetime, *, seen: str | None = None,
            require_seen: bool = False) -> Approval:
    """Record an approval of the edition's current content by ``by``; refuse the author.

    ``seen``: the content hash the approver was shown (the console); if the edition has
    changed since, the approval is refused: nobody approves what they did not see.
    ``require_seen``: refuse without one (the console, where a form without it is not one
    the page made); the command line approves the content as it is, which `check` shows."""
    edition = ready.edition
    ledger = s.ledger
    found = review(s, edition, now)
    if found.conflict is not None:
        raise found.conflict
    if seen is not None and seen != found.content.hash:
        raise ChangeControlError([Problem.of(display_path(edition.source), 1, "approve.changed_while_read", approver=by,
                                             seen=content_id.short(seen), now=found.content.short)])
    refusal = gate.refuse_approver(by, found.authors or (current_user(),))
    if refusal:
        raise ChangeControlError([Problem(display_path(edition.source), edition.line_of.get("by", 1), refusal)])
    if require_seen and seen is None:
        raise ChangeControlError([Problem.of(display_path(edition.source), 1, "approve.without_seen")])
    approval = ledger.approve(edition.date, edition.revision, found.content.hash, by, now)
    ledger.keep_edited_text(edition.date, approval.content_hash, edition.source_text, now)  # for "what changed since"
    ledger.record_audit(now, by, "approve", edition.date.isoformat(), approval.content_hash,
                        (Fact.of("audit_detail.revision", revision=approval.revision),))
    return approval


def revoke(s: Session, day: date, by: str, now: datetime) -> int:
    ledger = s.ledger
    count = ledger.revoke_approvals(day, by, now)
    if count:
        ledger.record_audit(now, by, "revoke", day.isoformat(), None, (Fact.of("audit_detail.approvals", count=count),))
    return count


def revocation_notes(s: Session, day: date) -> list[str]:
    """What a revocation cannot undo, and what it stops: said plainly to the approver."""
    ledger = s.ledger
    notes = []
    for record in ledger.list_dispatches(day):
        if record.kind_of is not DispatchKind.EDITION:
            continue
        counts = ledger.counts(record.id)
        waiting = counts["pending"] + counts["deferred"] + counts["unknown"]
        if counts["sent"]:
            notes.append(f"note: {record.name} already reached {counts['sent']} recipient(s); that cannot be undone "
                         "(send a correction: 'revision: N+1' and 'correction:')")
        if waiting and record.finished_at is None:
            notes.append(f"note: {record.name} has {waiting} recipient(s) waiting: a send under way stops before "
                         "its next batch and sends them nothing until a new approval")
    return notes


def publish(settings: Settings, edition: Edition, now: datetime) -> Published:
    """Write the edition's web page and the archive index into publish.dir, and the
    accessibility statement beside them."""
    local = now.astimezone(settings.timezone)
    published = publish_edition(edition, settings.publish.dir, settings.templates_dir, local)
    write_statement(settings.accessibility, settings.report.title, settings.templates_dir, settings.publish.dir,
                    statement_updated(settings, now))
    return published


def accessibility_statement(settings: Settings, now: datetime) -> str:
    """The accessibility statement's text (HTML), as the intranet copy has it."""
    return statement_body(settings.accessibility, settings.report.title, settings.templates_dir,
                          statement_updated(settings, now))


def statement_updated(settings: Settings, now: datetime) -> date:
    """When the statement last changed ("uppdaterades senast"): ``accessibility.reviewed`` if
    given, else the day the config file (which holds everything the statement says) was last
    changed, in the office's zone; today only if the file cannot be read."""
    if settings.accessibility.reviewed is not None:
        return settings.accessibility.reviewed
    try:
        changed = datetime.fromtimestamp(settings.path.stat().st_mtime, tz=settings.timezone)
    except OSError:
        return now.astimezone(settings.timezone).date()
    return changed.date()


def accessibility_warnings(settings: Settings) -> list[Problem]:
    """What the console's accessibility statement lacks, for ``check`` and ``web`` to warn of
    (the console still starts): with ``web:`` configured, no ``accessibility:`` section, or
    one without a contact address (the statement then claims no full compliance)."""
    if settings.web is None:
        return []
    where = display_path(settings.path), settings.line_of.get("accessibility", 1)
    gaps = settings.accessibility
    if not gaps.configured:
        return [Problem(*where, "web: is configured but there is no accessibility: section, so the console's "
                                "accessibility statement (/tillganglighet) names no organisation and no contact; add "
                                "accessibility: with organisation, contact_email (or contact_phone), known_gaps and "
                                "reviewed (the date you last reviewed the statement)")]
    if not gaps.has_contact:
        return [Problem(*where, "accessibility: has no contact_email or contact_phone, so the statement cannot say where "
                                "to report a problem and does not claim full compliance; add contact_email")]
    return []


def publish_checked(s: Session, edition: Edition, now: datetime) -> tuple[Published, str]:
    """Publish the edition under change control: before any send, from the file (which must
    pass the approval gate); once sent, from the content that was sent, refusing a file that
    has changed since. Returns what was published and a note for the operator."""
    settings, ledger = s.settings, s.ledger
    sent = latest_sent_edition(ledger, edition.date)
    if sent is None:
        found = review(s, edition, now)
        found.gate_verdict()  # a daily edition is always judged: no verdict here is a fault, not a pass
        refusal = found.refusal(edition, "refusal.not_published")
        if refusal is not None:
            raise refusal
        return publish(settings, edition, now), ""
    note = ""
    if sent.record.revision == edition.revision:
        conflict = changed_after_send(edition, identify(s, edition), sent, settings.timezone, for_send=False)
        if conflict is not None:
            raise conflict
    else:
        note = (f"{display_path(edition.source)} is revision {edition.revision}, but revision "
                f"{sent.record.revision} is what was sent ({sent.record.name}); published that: the intranet "
                "shows what people received" + (" (send the new revision to publish it)"
                                                 if edition.revision > sent.record.revision else ""))
    return publish(settings, sent_edition(settings, sent, now), now), note


def scheduled_edition(s: Session, day: date, now: datetime) -> tuple[Edition | None, str, str]:
    """The day's edition if it may go out on schedule, else None and why (Swedish for the
    alert mail, English for the log). The approval rule is the same as for send."""
    settings = s.settings
    path = edition_path(settings.reports_dir, day)
    if not path.exists():
        return _unsendable(Fact.of("scheduled.no_file", path=display_path(path)))
    try:
        edition = read_edition(s, day, None, now)
        found = review(s, edition, now)
    except InputError as exc:
        # The office's alert lists the problems in Swedish, the log in English.
        in_swedish = "; ".join(f"{p.where}: {swedish_of(p.fact)}" for p in exc.problems)
        return (None, swedish(Fact.of("scheduled.problems", problems=in_swedish)),
                english(Fact.of("scheduled.problems", problems="; ".join(str(p) for p in exc.problems))))
    if found.conflict is not None:
        return (None, swedish(Fact.of("scheduled.changed_after_send")),
                "; ".join(p.message for p in found.conflict.problems))
    verdict = found.gate_verdict()
    if not verdict.sendable:
        return _unsendable(verdict.reason)
    return edition, "", ""


def _unsendable(reason: Fact) -> tuple[None, str, str]:
    """No edition to send, and why: in Swedish for the office's alert mail, in English for the log."""
    return None, swedish(reason), english(reason)

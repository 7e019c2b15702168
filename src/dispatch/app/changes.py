"""Change control, the facts: what an edition's content is (its hash), what its dispatch
already sent, whether it has changed since, and what the approval rule (gate) says; and,
from the same records, what is new in it since the edition its readers got before."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.app.application import Session
from dispatch.config import Settings
from dispatch.control import approval as gate
from dispatch.control import content as content_id
from dispatch.control.content import Content
from dispatch.email import whats_new as news
from dispatch.email.edition import assemble, edition_path, section_anchor, swedish_date
from dispatch.errors import ChangeControlError, DispatchError, InputError, Problem, display_path
from dispatch.ledger import DispatchRecord, Ledger, dispatch_name
from dispatch.models import Edition, Section
from dispatch.values import DispatchKind, Fact
from dispatch.wording import english


def identify(s: Session, edition: Edition) -> Content:
    """The content hash of an edition as it would be sent with these templates (its
    "Nytt" markers included, computed here if the caller has not: see with_news)."""
    settings = s.settings
    edition = with_news(s, edition)
    try:
        files = content_id.read_templates(settings.templates_dir)
    except OSError as exc:
        raise InputError([Problem.of(display_path(settings.templates_dir), 1, "templates.unreadable", detail=str(exc.strerror))]) from None
    return content_id.identify(edition, content_id.template_digest(files))


@dataclass(frozen=True)
class SentVersion:
    """What a dispatch has already sent to somebody (sent, or possibly received: unknown)."""

    record: DispatchRecord
    counts: dict[str, int]
    source_text: str
    canonical: dict[str, Any] | None
    content_hash: str | None

    @property
    def reached(self) -> int:
        return self.counts.get("sent", 0) + self.counts.get("unknown", 0)


def sent_version(ledger: Ledger, name: str) -> SentVersion | None:
    record = ledger.find_dispatch(name)
    if record is None:
        return None
    counts = ledger.counts(record.id)
    if counts.get("sent", 0) + counts.get("unknown", 0) == 0:
        return None
    stored = ledger.contents(name)
    last = stored[-1] if stored else {}
    canonical = json.loads(last["canonical"]) if last.get("canonical") else None
    return SentVersion(record, counts, last.get("source_text", ""), canonical,
                       record.content_hash or last.get("content_hash"))


def latest_sent_edition(ledger: Ledger, day: date) -> SentVersion | None:
    """The highest revision of the day's edition that has reached anybody."""
    found = None
    for record in ledger.list_dispatches(day):
        if record.kind_of is DispatchKind.EDITION:
            sent = sent_version(ledger, record.name)
            if sent is not None and (found is None or sent.record.revision >= found.record.revision):
                found = sent
    return found


def changed_after_send(edition: Edition, current: Content, sent: SentVersion, zone: ZoneInfo,
                       *, for_send: bool = True) -> ChangeControlError | None:
    """None when the edition is what was sent; else the error that says what changed and what to do.

    When only the frame changed (the standing sections or templates in the config, the
    edition file being as sent), only a send is refused (its recipients would get other
    content than the first ones); check, status and publish go by the content kept."""
    if sent.content_hash is not None:
        if sent.content_hash == current.hash:
            return None
        if not for_send and sent.source_text == edition.source_text:
            return None
    elif sent.source_text == edition.source_text:
        return None  # a dispatch from before content hashes: the source is what we can compare
    record = sent.record
    shown = display_path(edition.source)
    diff = content_id.source_diff(sent.source_text, edition.source_text, f"{record.name} (as sent)", shown)
    parts = content_id.changed_parts(sent.canonical, current.canonical)
    what = (Fact.of("change.file_changed") if diff
            else Fact.of("change.parts_changed", parts=", ".join(parts) or "its rendering"))
    when = record.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %z") if record.created_at else ""
    interrupted = sent.counts.get("pending", 0) + sent.counts.get("deferred", 0)
    line = edition.line_of.get("revision", edition.line_of.get("", 1))
    return ChangeControlError([Problem.of(
        shown, line, "change.already_sent_interrupted" if interrupted else "change.already_sent",
        reached=sent.reached, name=record.name, when=when, sent=content_id.short(sent.content_hash), now=current.short,
        what=what, revision=record.revision + 1)], diff)


@dataclass(frozen=True)
class Review:
    """Everything change control knows about an edition as it is now."""

    content: Content
    authors: tuple[str, ...]  # who wrote this content (front matter 'by', and recorded at check/save)
    verdict: gate.Verdict | None  # None: not gated (urgent messages, test sends)
    sent: SentVersion | None  # what this revision's dispatch already sent
    conflict: ChangeControlError | None  # the edition differs from what was sent

    def refusal(self, edition: Edition, refused: str) -> ChangeControlError | None:
        """Why this content may not go out now (``refused``: the refusal's code, e.g.
        "refusal.not_sendable", worded with the gate's reason after it); None when it may. The
        one reading of the gate's verdict for an action."""
        if self.conflict is not None:
            return self.conflict
        if self.verdict is not None and not self.verdict.sendable:
            return ChangeControlError([Problem.of(display_path(edition.source), edition.line_of.get("status", 1),
                                                  refused, reason=self.verdict.reason)])
        return None

    def gate_verdict(self) -> gate.Verdict:
        """The approval gate's verdict on a daily edition; review gives none for an urgent
        message or a test send, and asking for it then is a fault in the caller."""
        if self.verdict is None:
            raise DispatchError("an urgent message or a test send has no approval verdict")
        return self.verdict

    def standing(self, edition: Edition) -> str:
        """Where the edition stands, in one sentence: urgent, already sent, ready or not (and why)."""
        if edition.urgent:
            return "an urgent message: it needs no approval"
        if self.sent is not None:
            state = (f"already sent to {self.sent.reached} recipient(s) as {self.sent.record.name}; "
                     "the file is unchanged since")
            if self.sent.content_hash not in (None, self.content.hash):
                parts = ", ".join(content_id.changed_parts(self.sent.canonical, self.content.canonical)) or "its rendering"
                state += (f", but {parts} changed since: send refuses to send it to anyone more (they would get other "
                          "content); publish uses the content that was sent")
            return state
        verdict = self.gate_verdict()
        return ("ready to send: " if verdict.sendable else "valid, but NOT ready to send: ") + english(verdict.reason)


def review(s: Session, edition: Edition, now: datetime, *, test: bool = False,
           record_author: str | None = None, for_send: bool = False) -> Review:
    """Judge the edition against the ledger: sent content is final, approvals bind content.

    ``record_author``: remember this person as the author of the current content if
    nobody was recorded for it yet (``check`` and the console's save do this)."""
    settings, ledger = s.settings, s.ledger
    current = identify(s, edition)
    if edition.urgent or test:
        return Review(current, (edition.author,) if edition.author else (), None, None, None)
    recorded = (ledger.record_edit(edition.date, current.hash, edition.author or record_author, now,
                                   source_text=edition.source_text)
                if record_author is not None else ledger.author_of(edition.date, current.hash))
    # Everyone known to have written this content: the front matter's 'by' (which anyone can
    # change without changing the content) and whoever was recorded first for it.
    authors = tuple(dict.fromkeys(a for a in (edition.author, recorded) if a))
    verdict = gate.judge(settings.approval, edition, current.hash, ledger.approvals(edition.date), authors, settings.timezone)
    sent = sent_version(ledger, dispatch_name(edition.date, edition.revision, edition.kind))
    conflict = changed_after_send(edition, current, sent, settings.timezone, for_send=for_send) if sent else None
    return Review(current, authors, verdict, sent, conflict)


def review_now(s: Session, edition: Edition, now: datetime, *, record_author: str | None = None) -> Review:
    """``review`` for commands that only look (``check``): the same judgement, in their unit of work."""
    return review(s, edition, now, record_author=record_author)


def sent_edition(settings: Settings, sent: SentVersion, now: datetime) -> Edition:
    """The edition as it was sent, rebuilt from what the ledger kept (for the intranet copy):
    the source as sent, and the standing sections and subject as they were then."""
    record = sent.record
    path = edition_path(settings.reports_dir, record.edition_date)
    edition = assemble(path, sent.source_text, settings.report, now)
    doc = sent.canonical
    if doc is None:
        return edition
    standing = [Section(heading=heading, html=html, text="", anchor=section_anchor(heading))
                for heading, html in doc.get("standing", [])]
    for index, heading, html in doc.get("page_only", []):  # in their places on the page, as configured then
        standing.insert(index, Section(heading=heading, html=html, text="", anchor=section_anchor(heading), in_email=False))
    # The sections as sent, "Nytt" markers included: they were decided against the ledger then.
    sections = tuple(dataclasses.replace(section, html=html) if section.heading == heading else section
                     for section, (heading, html) in zip(edition.sections, doc.get("sections", []), strict=False))
    if len(sections) != len(edition.sections):
        sections = edition.sections
    return dataclasses.replace(edition, subject=doc.get("subject", edition.subject),
                               preheader=doc.get("preheader", edition.preheader), sections=sections,
                               news=doc.get("news", ""), title=doc.get("title", edition.title), standing=tuple(standing))


def with_news(s: Session, edition: Edition) -> Edition:
    """The edition with what is new since the previous edition sent to its readers marked
    (see news.py, previous_sent and corrected_revisions); the same edition when that was done already."""
    if edition.news is not None:
        return edition
    if edition.urgent or not edition.markers:
        return dataclasses.replace(edition, news="")
    previous, since = previous_sent(s, edition)
    corrected, revision_since = corrected_revisions(s.ledger, edition)
    return news.marked(edition, previous.source_text if previous is not None else None, since,
                       [version.source_text for version in corrected], revision_since)


def previous_sent(s: Session, edition: Edition) -> tuple[SentVersion | None, str]:
    """The edition before this day's that its readers got, as the ledger kept it (never a
    file, which may have changed since), and how the box at the top names it ('söndag 17
    november'; with the year when that was another year): the latest edition of an earlier
    date that reached anybody on one of the lists this one goes to (its 'lists', else the
    schedules' lists). The same for every revision of the day, so that a correction keeps
    the markers of the revision it corrects.

    Once the day's first dispatch exists, only dispatches created before it count: a resumed
    send, a check after the send, or a correction finds the same markers (and so the same
    content hash) whatever went out since. Before that, an approval binds the markers like
    the rest: an earlier edition corrected meanwhile changes them, and they need approving again."""
    settings, ledger = s.settings, s.ledger
    lists = set(edition.lists if edition.lists is not None else settings.scheduled_lists())
    candidates = [r for r in ledger.list_dispatches() if r.kind_of is DispatchKind.EDITION and r.edition_date < edition.date
                  and (not r.lists or lists & set(r.lists))]  # a dispatch from before lists were kept: assume so
    todays = [r.created_at for r in ledger.list_dispatches(edition.date)
              if r.kind_of is DispatchKind.EDITION and r.revision <= edition.revision]
    if todays:
        candidates = [r for r in candidates if r.created_at < min(todays)]
    for record in sorted(candidates, key=lambda r: (r.edition_date, r.revision), reverse=True):
        sent = sent_version(ledger, record.name)
        if sent is not None:
            return sent, _day_label(record.edition_date, edition.date)
    return None, ""


def corrected_revisions(ledger: Ledger, edition: Edition) -> tuple[list[SentVersion], str]:
    """For a correction (revision N), what its readers got before: every revision below N of
    the same date that reached anybody (created before this revision's own dispatch, if that
    exists), oldest first, and how the box names the first of them ('version 1': what is
    "rättad" is so since then). ([], "") for a first revision."""
    if edition.revision <= 1:
        return [], ""
    mine = ledger.find_dispatch(dispatch_name(edition.date, edition.revision, edition.kind))
    candidates = [r for r in ledger.list_dispatches(edition.date) if r.kind_of is DispatchKind.EDITION and r.revision < edition.revision
                  and (mine is None or r.created_at < mine.created_at)]
    chain = [(record, sent) for record in sorted(candidates, key=lambda r: r.revision)
             if (sent := sent_version(ledger, record.name)) is not None]
    return [sent for _, sent in chain], (f"version {chain[0][0].revision}" if chain else "")


def _day_label(day: date, today: date) -> str:
    """'söndag 17 november', with the year when it is not this edition's year."""
    label = swedish_date(day)
    return label.removesuffix(f" {day.year}") if day.year == today.year else label


def earlier_message_ids(ledger: Ledger, edition: Edition) -> dict[str, list[str]]:
    """Per recipient key, the Message-IDs that person got for the earlier revisions of this
    edition (oldest first): a correction's In-Reply-To and References. (A revision sent in
    Bcc batches had one Message-ID per batch, not the row's: such a reference leads nowhere,
    and harms nothing.)"""
    found: dict[str, list[str]] = {}
    records = sorted((r for r in ledger.list_dispatches(edition.date)
                      if r.kind_of is DispatchKind.EDITION and r.revision < edition.revision), key=lambda r: r.revision)
    for record in records:
        for row in ledger.deliveries(record.id):
            if row.state in ("sent", "unknown") and row.message_id:
                found.setdefault(row.key, []).append(row.message_id)
    return found

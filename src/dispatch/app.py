"""The composition root: the one place that picks concrete classes and wires the stages.

Commands (cli, serve) call the functions here; each function takes ``now`` or a
Clock so that nothing below reads the time by itself.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from dispatch import content as content_id
from dispatch import gate, notice, preflight
from dispatch.config import Settings
from dispatch.content import Content
from dispatch.edition import assemble, edition_path, section_anchor
from dispatch.errors import (
    AuthenticationError, ChangeControlError, DispatchError, InputError, PreflightError, Problem, display_path,
)
from dispatch.ledger import DispatchRecord, Ledger, dispatch_name
from dispatch.message import Envelope, PreparedMessage, list_id, message_id, prepare, to_header
from dispatch.models import Approval, Edition, Recipient, Rendered, Section, State
from dispatch.pipeline import Clock, Plan, Result, SendPolicy, Transport, run
from dispatch.publish import Published, export_document, publish_edition
from dispatch.recipients import Resolution, available_lists, resolve
from dispatch.render import render
from dispatch.transport import MaildirTransport, SMTPTransport

FOOTER = "Automatiskt utskick från {sender}. Svara på detta mejl för att nå redaktionen."


@dataclass(frozen=True)
class Prepared:
    """An edition ready to send: assembled, resolved, rendered, serialised and checked."""

    edition: Edition
    resolution: Resolution
    rendered: Rendered
    prepared: PreparedMessage
    lists: tuple[str, ...]
    test: bool


def read_edition(settings: Settings, day: date | None, file: Path | None, now: datetime, urgent: bool = False) -> Edition:
    # Imported here: this function is the one reader of edition files (and of the config's
    # templates on their way into one), and the only part of this module that needs these.
    from dispatch.edition import check_template
    from dispatch.yamlsource import EDITION_MAX_BYTES, read_input

    path = file if file is not None else edition_path(settings.reports_dir, day or now.date())
    # The config's subject and preheader templates, named at their lines in the config
    # (assemble() only knows the edition file); checked, not rendered.
    config_problems = [
        problem
        for key in ("subject", "preheader")
        for problem in check_template(
            getattr(settings.report, key), display_path(settings.path),
            settings.line_of.get(f"report.{key}", 1), f"report.{key}",
        )
    ]
    if config_problems:
        raise InputError(config_problems)
    try:
        # A regular file (not a symbolic link, FIFO or device) of at most
        # EDITION_MAX_BYTES, also for --file: an urgent message is an edition here.
        text = read_input(
            path, limit=EDITION_MAX_BYTES, what="an edition",
            advice="an edition is text (pictures belong on the intranet, linked); check that this is the right file",
        )
    except FileNotFoundError:
        hint = f"write {display_path(path)}" if file is None else "check the path"
        raise InputError([Problem(display_path(path), 1, f"no edition file; {hint}")]) from None
    return assemble(path, text, settings.report, now, urgent=urgent)


def choose_lists(settings: Settings, edition: Edition, requested: tuple[str, ...],
                 earlier: tuple[str, ...] = (), default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """--list wins; else the edition's 'lists'; else, for a correction, the lists its earlier
    revisions went to (the people who read the mistake); else ``default`` (a schedule's
    lists); else every list named in a schedule."""
    if requested:
        names = requested
    elif edition.lists is not None:
        names = edition.lists
    elif earlier:
        names = earlier
    else:
        names = default or settings.scheduled_lists()
    known = set(available_lists(settings.recipients_dir))
    problems = []
    for name in names:
        if name not in known:
            if not requested and edition.lists is not None:
                where = (display_path(edition.source), edition.line_of.get("lists", 1))
            elif not requested:
                where = (display_path(settings.path), settings.line_of.get("schedules", 1))
            else:
                where = ("--list", 0)
            message = f"unknown recipient list {name!r}; known lists: {', '.join(sorted(known)) or 'none'}"
            problems.append(Problem(where[0], where[1], message) if where[1] else Problem("--list", 0, message))
    if problems:
        raise InputError(problems)
    return tuple(names)


def lists_sent_before(settings: Settings, edition: Edition) -> tuple[str, ...]:
    """The lists the edition's earlier revisions went to, in first-sent order."""
    ledger = open_ledger(settings)
    try:
        seen: dict[str, None] = {}
        for record in ledger.list_dispatches(edition.date):
            if record.kind == "edition" and record.revision < edition.revision:
                for name in record.lists:
                    seen.setdefault(name)
        return tuple(seen)
    finally:
        ledger.close()


def envelope(settings: Settings) -> Envelope:
    from email.utils import formataddr

    sender = settings.sender
    return Envelope(
        sender=sender.address,
        from_header=formataddr((sender.name, sender.address)),
        reply_to=sender.reply_to,
        list_id=list_id(settings.report.title, settings.report.list_id, sender.domain),
    )


def web_url(settings: Settings, edition: Edition) -> str | None:
    # Only link to a web copy that this send publishes: a dead link is worse than none.
    if not settings.publish.base_url or not publishes_on_send(settings, edition):
        return None
    return settings.publish.base_url.rstrip("/") + f"/{edition.date.isoformat()}.html"


def publishes_on_send(settings: Settings, edition: Edition) -> bool:
    # Only a daily edition goes on the intranet (and only one that passed the approval
    # gate, which every send checks); an urgent message would otherwise overwrite that
    # day's report page, which has the same name.
    return settings.publish.on_send and not edition.urgent


def publish(settings: Settings, edition: Edition, now: datetime) -> Published:
    """Write the edition's web page and the archive index into publish.dir."""
    return publish_edition(edition, settings.publish.dir, settings.templates_dir, now.astimezone(settings.timezone))


def prepare_edition(
    settings: Settings, edition: Edition, now: datetime, *,
    lists: tuple[str, ...] = (), to: tuple[str, ...] = (), default_lists: tuple[str, ...] = (),
) -> Prepared:
    """Resolve, render, serialise, pre-flight. Raises InputError/PreflightError; sends nothing."""
    test = bool(to)
    if test:
        resolution = _resolve_addresses(to)
        names: tuple[str, ...] = ()
    else:
        earlier = lists_sent_before(settings, edition) if edition.revision > 1 and not edition.urgent else ()
        names = choose_lists(settings, edition, lists, earlier, default_lists)
        resolution = resolve(settings.recipients_dir, names)
    _reject_overlong_to(resolution)
    footer = FOOTER.format(sender=settings.sender.name or settings.sender.address)
    # A test send does not publish, so it carries no link to a page that does not exist yet.
    link = None if test else web_url(settings, edition)
    rendered = render(edition, settings.templates_dir, footer=footer, web_url=link, test=test)
    # Date in the office's zone: what a reader's client shows beside the sending time.
    prepared = prepare(rendered, envelope(settings), now.astimezone(settings.timezone), urgent=edition.urgent)
    # The message is checked as the recipient with the longest name and address would get
    # it: only the To line differs between recipients, so that one shows the longest line.
    longest = max(
        resolution.recipients.values(), key=lambda r: len(r.name.encode()) + len(r.address),
        default=Recipient("first@example.org", "", "first@example.org"),
    )
    sample = prepared.for_recipients(to_header([longest]), message_id("preflight", longest.key, prepared.domain))
    problems = preflight.check(
        rendered.subject, rendered.html, rendered.text, sample, f"{display_path(edition.source)}:1",
        sources=_preflight_sources(settings, edition), header_sources={"To": longest.source},
    )
    if problems:
        raise PreflightError(problems)
    return Prepared(edition, resolution, rendered, prepared, names, test)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _preflight_sources(settings: Settings, edition: Edition) -> list[tuple[str, str]]:
    """The edition and the HTML template, so a pre-flight problem names the line to fix."""
    sources = [(display_path(edition.source), edition.source_text), (display_path(settings.path), _read(settings.path))]
    template = settings.templates_dir / "edition.html"
    try:
        sources.append((display_path(template), template.read_text(encoding="utf-8")))
    except OSError:
        pass  # the template was read moments ago by render(); without it, problems point at the edition
    return sources


MAX_TO_LINE = 998 - len("To: ")  # RFC 5322's line limit, for the one header line we patch in


def _reject_overlong_to(resolution: Resolution) -> None:
    """A name so long that its To line would break the 998-octet limit fails that one
    recipient (a failed row, with the list's path:line), not the whole send."""
    from dispatch.recipients import Invalid

    for key, recipient in list(resolution.recipients.items()):
        if len(to_header([recipient])) > MAX_TO_LINE:
            path, _, line = recipient.source.rpartition(":")
            problem = Problem(path or "recipients", int(line) if line.isdigit() else 1,
                              f"the name of {recipient.address} makes its To line longer than 998 octets; shorten the name")
            del resolution.recipients[key]
            resolution.invalid.append(Invalid(email=recipient.address, name=recipient.name[:80], problem=problem))
            resolution.problems.append(problem)


def _resolve_addresses(addresses: tuple[str, ...]) -> Resolution:
    from dispatch.recipients import AddressError, normalise

    resolution = Resolution()
    for raw in addresses:
        try:
            address, key = normalise(raw)
        except AddressError as exc:
            raise InputError([Problem("--to", 0, f"invalid address {raw!r}: {exc}")]) from None
        resolution.recipients.setdefault(key, Recipient(address=address, name="", key=key, source="--to"))
    return resolution


# -- change control: what the content is, whether it may go, what it becomes ---------


def identify(settings: Settings, edition: Edition) -> Content:
    """The content hash of an edition as it would be sent with these templates."""
    try:
        files = content_id.read_templates(settings.templates_dir)
    except OSError as exc:
        raise InputError([Problem(display_path(settings.templates_dir), 1, f"cannot read the templates: {exc.strerror}")]) from None
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
        if record.kind == "edition":
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
    if diff:
        what = "the file has changed since (diff below)"
    else:
        what = "the file is unchanged, but " + (", ".join(parts) or "its rendering") + " changed since"
    when = record.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %z") if record.created_at else ""
    message = (
        f"this edition was already sent to {sent.reached} recipient(s) as {record.name} ({when}, content "
        f"{content_id.short(sent.content_hash)}, now {current.short}); {what}. A sent edition is final: to "
        f"correct it, set 'revision: {record.revision + 1}' and 'correction: <what changed>' in the front matter, "
        f"then check and send it (the correction goes to everyone on the lists)"
        + (". To finish the interrupted dispatch instead, restore the text as sent" if sent.counts.get("pending", 0)
           + sent.counts.get("deferred", 0) else "")
    )
    line = edition.line_of.get("revision", edition.line_of.get("", 1))
    return ChangeControlError([Problem(shown, line, message)], diff)


@dataclass(frozen=True)
class Review:
    """Everything change control knows about an edition as it is now."""

    content: Content
    authors: tuple[str, ...]  # who wrote this content (front matter 'by', and recorded at check/save)
    verdict: gate.Verdict | None  # None: not gated (urgent messages, test sends)
    sent: SentVersion | None  # what this revision's dispatch already sent
    conflict: ChangeControlError | None  # the edition differs from what was sent


def review(settings: Settings, ledger: Ledger, edition: Edition, now: datetime, *, test: bool = False,
           record_author: str | None = None, for_send: bool = False) -> Review:
    """Judge the edition against the ledger: sent content is final, approvals bind content.

    ``record_author``: remember this person as the author of the current content if
    nobody was recorded for it yet (``check`` and the console's save do this)."""
    current = identify(settings, edition)
    if edition.urgent or test:
        return Review(current, (edition.author,) if edition.author else (), None, None, None)
    recorded = (ledger.record_edit(edition.date, current.hash, edition.author or record_author, now)
                if record_author is not None else ledger.author_of(edition.date, current.hash))
    # Everyone known to have written this content: the front matter's 'by' (which anyone can
    # change without changing the content) and whoever was recorded first for it.
    authors = tuple(dict.fromkeys(a for a in (edition.author, recorded) if a))
    verdict = gate.judge(settings.approval, edition, current.hash, ledger.approvals(edition.date), authors, settings.timezone)
    sent = sent_version(ledger, dispatch_name(edition.date, edition.revision, edition.kind))
    conflict = changed_after_send(edition, current, sent, settings.timezone, for_send=for_send) if sent else None
    return Review(current, authors, verdict, sent, conflict)


def approve(settings: Settings, ready: Prepared, by: str, now: datetime) -> Approval:
    """Record an approval of the edition's current content by ``by``; refuse the author."""
    edition = ready.edition
    ledger = open_ledger(settings)
    try:
        found = review(settings, ledger, edition, now)
        if found.conflict is not None:
            raise found.conflict
        refusal = gate.refuse_approver(by, found.authors or (current_user(),))
        if refusal:
            raise ChangeControlError([Problem(display_path(edition.source), edition.line_of.get("by", 1), refusal)])
        return ledger.approve(edition.date, edition.revision, found.content.hash, by, now)
    finally:
        ledger.close()


def review_now(settings: Settings, edition: Edition, now: datetime, *, record_author: str | None = None) -> Review:
    """``review`` on a ledger of its own (for commands that only look)."""
    ledger = open_ledger(settings)
    try:
        return review(settings, ledger, edition, now, record_author=record_author)
    finally:
        ledger.close()


def decide_now(settings: Settings, ready: Prepared, now: datetime) -> Decision:
    ledger = open_ledger(settings)
    try:
        return decide(settings, ledger, ready, now)
    finally:
        ledger.close()


def revocation_notes(settings: Settings, day: date) -> list[str]:
    """What a revocation cannot undo, and what it stops: said plainly to the approver."""
    ledger = open_ledger(settings)
    try:
        notes = []
        for record in ledger.list_dispatches(day):
            if record.kind != "edition":
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
    finally:
        ledger.close()


def looks_urgent(path: Path) -> bool:
    """An urgent message file given without --urgent: a subject and no 'compiled'."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False
    return "\nsubject:" in head and "\ncompiled:" not in head


def revoke(settings: Settings, day: date, by: str, now: datetime) -> int:
    ledger = open_ledger(settings)
    try:
        return ledger.revoke_approvals(day, by, now)
    finally:
        ledger.close()


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


def decide(settings: Settings, ledger: Ledger, ready: Prepared, now: datetime) -> Decision:
    """Name the dispatch and check that the content may go; ChangeControlError if not."""
    edition = ready.edition
    found = review(settings, ledger, edition, now, test=ready.test, for_send=True)
    current = found.content
    notes: list[str] = []
    if ready.test:
        kind = f"test-{now.astimezone(timezone.utc):%Y%m%dT%H%M%S}"  # UTC, whichever clock the caller holds
    elif edition.urgent:
        same = ledger.dispatches_with_content(current.hash, "urgent")
        if same:
            # Whatever day it was first sent: the same message again resumes that dispatch.
            record = same[-1]
            return _decision(ledger, ready, record.name, record.kind, current, record, None,
                             [f"same content as urgent dispatch {record.name}"],
                             date.fromisoformat(record.edition_date), record.revision)
        kind, notes = _urgent_kind(ledger, edition, current)
    else:
        kind = edition.kind
        if found.conflict is not None:
            raise found.conflict
        assert found.verdict is not None
        if not found.verdict.sendable:
            raise ChangeControlError([Problem(display_path(edition.source), edition.line_of.get("status", 1),
                                              f"not sendable: {found.verdict.reason}")])
    name = dispatch_name(edition.date, edition.revision, kind)
    existing = ledger.find_dispatch(name)
    return _decision(ledger, ready, name, kind, current, existing, found.verdict, notes, edition.date, edition.revision)


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
    kind = f"urgent-{slug}-{current.hash[:8]}"
    notes = []
    for record in ledger.list_dispatches():
        if record.kind.startswith(f"urgent-{slug}") and record.kind != kind:
            notes.append(f"{display_path(edition.source)} differs from what urgent dispatch {record.name} sent "
                         f"(content {content_id.short(record.content_hash)}); this is a new urgent dispatch "
                         f"{dispatch_name(edition.date, edition.revision, kind)} (content {current.short})")
    return kind, notes


def plan_for(settings: Settings, ready: Prepared, now: datetime, created_by: str, decision: Decision) -> Plan:
    edition = ready.edition
    failed = tuple(
        (f"invalid:{inv.problem.path}:{inv.problem.line}", inv.email[:320], str(inv.problem))
        for inv in ready.resolution.invalid
    )
    group = ", ".join(ready.resolution.lists[n].display_name for n in ready.lists if n in ready.resolution.lists) or "Mottagare"
    if len(to_header([], group_name=group)) > MAX_TO_LINE:
        group = "Mottagare"  # a Bcc batch's To line (the lists' names) must stay within 998 octets too
    approval = decision.verdict.approval if decision.verdict else None
    approved_by = approval.approved_by if approval else None
    if approved_by is None and decision.verdict is not None and decision.verdict.sendable:
        approved_by = "status: approved (front matter)"
    return Plan(
        name=decision.name, edition_date=decision.edition_date, revision=decision.revision, kind=decision.kind,
        subject=ready.rendered.subject, source=display_path(edition.source), created_by=created_by,
        recipients=tuple(ready.resolution.recipients.values()), failed_inputs=failed,
        prepared=ready.prepared, envelope_sender=settings.sender.address, group_name=group,
        content_hash=decision.content.hash, approved_by=approved_by,
        approved_at=approval.approved_at if approval else None,
        approval_id=approval.id if approval else None, lists=ready.lists,
    )


def publish_checked(settings: Settings, edition: Edition, now: datetime) -> tuple[Published, str]:
    """Publish the edition under change control: before any send, from the file (which must
    pass the approval gate); once sent, from the content that was sent, refusing a file that
    has changed since. Returns what was published and a note for the operator."""
    ledger = open_ledger(settings)
    try:
        sent = latest_sent_edition(ledger, edition.date)
        if sent is None:
            verdict = review(settings, ledger, edition, now).verdict
            assert verdict is not None
            if not verdict.sendable:
                raise ChangeControlError([Problem(display_path(edition.source), edition.line_of.get("status", 1),
                                                  f"not published: {verdict.reason}")])
            return publish(settings, edition, now), ""
        note = ""
        if sent.record.revision == edition.revision:
            conflict = changed_after_send(edition, identify(settings, edition), sent, settings.timezone, for_send=False)
            if conflict is not None:
                raise conflict
        else:
            note = (f"{display_path(edition.source)} is revision {edition.revision}, but revision "
                    f"{sent.record.revision} is what was sent ({sent.record.name}); published that: the intranet "
                    "shows what people received" + (" (send the new revision to publish it)"
                                                     if edition.revision > sent.record.revision else ""))
    finally:
        ledger.close()
    return publish(settings, sent_edition(settings, sent, now), now), note


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
    real = [d for d in of_day if not d.kind.startswith("test-")]
    return (real or of_day)[-1] if of_day else None


def edition_note(settings: Settings, ledger: Ledger, record: DispatchRecord, now: datetime) -> str | None:
    """For an edition dispatch: whether its file still holds what was sent (or approved)."""
    if record.kind != "edition":
        return None
    path = edition_path(settings.reports_dir, date.fromisoformat(record.edition_date))
    try:
        edition = read_edition(settings, None, path, now)
        found = review(settings, ledger, edition, now)
    except DispatchError as exc:
        return f"{display_path(path)} cannot be read as an edition now ({str(exc).splitlines()[0]})"
    if edition.revision != record.revision:
        return f"{display_path(path)} is now revision {edition.revision} (content {found.content.short})"
    if found.conflict is not None:
        return f"{display_path(path)} has changed since it was sent (content now {found.content.short}); see dispatch check"
    if found.sent is not None and found.sent.source_text == edition.source_text:
        if found.content.hash != record.content_hash:
            return f"{display_path(path)} unchanged; the config's standing sections or templates have changed since"
        return f"{display_path(path)} unchanged (content {found.content.short})"
    if record.content_hash and record.content_hash != found.content.hash:
        assert found.verdict is not None
        return f"{display_path(path)} has changed (content now {found.content.short}): {found.verdict.reason}"
    return f"{display_path(path)} unchanged (content {found.content.short})"


def history(ledger: Ledger, since: date | None) -> list[dict[str, Any]]:
    """Every dispatch with what it sent and who let it go, oldest first."""
    entries = []
    for record in ledger.list_dispatches(since=since):
        document = export_document(record, ledger.counts(record.id), [], [])
        entries.append({
            "dispatch": record.name, "kind": record.kind, "edition": record.edition_date,
            "revision": record.revision, "subject": record.subject, "content_hash": record.content_hash,
            "created_by": record.created_by, "approved_by": record.approved_by,
            "approved_at": document["approved_at"], "counts": document["counts"],
            "started_at": document["created_at"], "finished_at": document["finished_at"],
        })
    return entries


def first_message(ready: Prepared) -> bytes | None:
    """The message exactly as the first recipient would get it (preview's .eml)."""
    recipients = list(ready.resolution.recipients.values())
    if not recipients:
        return None
    first = recipients[0]
    name = dispatch_name(ready.edition.date, ready.edition.revision, ready.edition.kind)
    return ready.prepared.for_recipients(to_header([first]), message_id(name, first.key, ready.prepared.domain))


def sent_edition(settings: Settings, sent: SentVersion, now: datetime) -> Edition:
    """The edition as it was sent, rebuilt from what the ledger kept (for the intranet copy):
    the source as sent, and the standing sections and subject as they were then."""
    record = sent.record
    path = edition_path(settings.reports_dir, date.fromisoformat(record.edition_date))
    edition = assemble(path, sent.source_text, settings.report, now)
    doc = sent.canonical
    if doc is None:
        return edition
    standing = tuple(Section(heading=heading, html=html, text="", anchor=section_anchor(heading))
                     for heading, html in doc.get("standing", []))
    return dataclasses.replace(edition, subject=doc.get("subject", edition.subject),
                               preheader=doc.get("preheader", edition.preheader),
                               title=doc.get("title", edition.title), standing=standing)


def open_ledger(settings: Settings, *, allow_new: bool = False) -> Ledger:
    return Ledger(settings.ledger_url, allow_new=allow_new)


def start_new_ledger(settings: Settings) -> None:
    """Accept a missing or replaced ledger on purpose (send --new-ledger)."""
    open_ledger(settings, allow_new=True).close()


def secrets_ready(settings: Settings) -> None:
    """Every secret the config names exists (without reading it out); InputError if not, so
    that nothing is published or sent that could not be finished."""
    from dispatch.config import secret_problems

    problems = secret_problems(settings)
    if problems:
        raise InputError(problems)


def read_secret(settings: Settings) -> str | None:
    t = settings.transport
    if t.password_env:
        value = os.environ.get(t.password_env)
        if value is None:
            raise AuthenticationError(t.endpoint, f"the environment variable {t.password_env} (transport.password_env) is not set")
        return value
    if t.password_file:
        try:
            return t.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthenticationError(t.endpoint, f"cannot read transport.password_file: {exc.strerror}") from None
    return None


def open_transport(settings: Settings) -> Transport:
    t = settings.transport
    if t.kind == "maildir":
        return MaildirTransport(t.path)
    token_source = None
    if t.auth == "xoauth2":
        from dispatch.oauth import CommandTokenSource

        if not t.token_command:
            raise AuthenticationError(t.endpoint, "transport.auth is xoauth2 but transport.token_command is not set")
        token_source = CommandTokenSource(t.token_command, t.endpoint)
    password = read_secret(settings) if t.username and t.auth == "password" else None
    return SMTPTransport(t, password=password, token_source=token_source)


def send_policy(settings: Settings, linger: timedelta = timedelta(0), *, by_hand: bool = False) -> SendPolicy:
    """``by_hand``: a person runs this send (the command line). It retries at once what waits
    for a later attempt, and does not sit out a pause that someone has to fix; the service
    (``by_hand=False``) keeps to the backoff and waits pauses out until its deadline."""
    t = settings.transport
    return SendPolicy(
        connections=t.connections, recipients_per_message=t.recipients_per_message,
        rate_per_minute=t.rate_per_minute, retry_minutes=t.retry_minutes,
        retry_window=timedelta(hours=t.retry_window_hours), linger=linger,
        lease=timedelta(seconds=settings.lease_seconds),
        retry_now=by_hand, wait_out_pauses=not by_hand,
    )


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def send(settings: Settings, ready: Prepared, clock: Clock, *, created_by: str | None = None,
         progress: Callable[[int], None] | None = None, linger: timedelta = timedelta(0),
         stop: threading.Event | None = None, by_hand: bool = False, retry_failed: str | None = None,
         on_pause: Callable[[str, bool, datetime], None] | None = None) -> Result:
    """Send (or resume) the edition's dispatch. Change control is checked here, against the
    ledger, whoever calls: no path sends changed or unapproved content.

    ``retry_failed``: the dispatch's name; its failed recipients are queued again first (a
    person fixed the cause). It must be the dispatch this send makes."""
    secrets_ready(settings)
    ledger = open_ledger(settings)
    try:
        decision = decide(settings, ledger, ready, clock.now())
        if retry_failed is not None:
            if decision.existing is None or decision.name != retry_failed:
                raise InputError([Problem("--retry-failed", 0, f"{retry_failed!r} is not the dispatch this send makes "
                                          f"({decision.name}); give the --date or --file of its edition")])
            requeued = ledger.requeue_failed(decision.existing.id, clock.now())
            decision = dataclasses.replace(decision, notes=decision.notes + (f"{requeued} failed recipient(s) queued again",))
        plan = plan_for(settings, ready, clock.now(), created_by or ready.edition.author or current_user(), decision)
        # The record of what is sent, and the page the email links to, exist before the
        # first message goes out; a failure here stops the send with nothing sent.
        ledger.keep_content(plan.name, ready.rendered.subject, plan.source, ready.edition.source_text,
                            ready.rendered.html, ready.rendered.text, clock.now(),
                            content_hash=decision.content.hash, canonical=decision.content.document())
        finished = decision.existing is not None and decision.existing.finished_at is not None
        published = None
        if publishes_on_send(settings, ready.edition) and not ready.test and not finished:
            published = publish(settings, ready.edition, clock.now()).page
        transport = open_transport(settings)
        result = run(plan, ledger, transport, send_policy(settings, linger, by_hand=by_hand), clock,
                     progress=progress, stop=stop, on_pause=on_pause)
        result.notes = list(decision.notes)
        if published is not None:
            result.notes.append(f"published {display_path(published)}")
        # One summary per dispatch outcome: from the run that finished it, or from a run
        # that gives up with recipients waiting; not from a run that was merely stopped, nor
        # while another run is still sending this dispatch (it will tell).
        stopped = stop is not None and stop.is_set()
        gave_up = not result.complete and not stopped and not result.others_sending
        if settings.notify and not ready.test and result.attempted and (result.finished_now or gave_up):
            if notify_summary(settings, ledger, transport, result, clock):
                result.notes.append(f"completion summary mailed to {', '.join(settings.notify)}")
        return result
    finally:
        ledger.close()


def notify_summary(settings: Settings, ledger: Ledger, transport: Transport, result: Result, clock: Clock) -> bool:
    """Mail the completion summary to `notify`. A failure here is reported, never fatal:
    the report itself has been delivered."""
    record = ledger.find_dispatch(result.dispatch)
    if record is None:
        return False
    subject, body = notice.summary(
        record.name, record.subject, result.counts, ledger.rows(record.id), settings.timezone, result.next_attempt,
    )
    from_header = envelope(settings).from_header
    data = notice.compose(from_header, settings.notify, subject, body, clock.now().astimezone(settings.timezone))
    try:
        connection = transport.connect()
        try:
            outcomes = connection.send(settings.sender.address, list(settings.notify), data)
        finally:
            connection.close()
    except DispatchError as exc:
        result.errors.append(f"completion summary not sent: {exc}")
        return False
    refused = [f"{address}: {o.reply}" for address, o in outcomes.items() if o.state is not State.SENT]
    if refused:
        result.errors.append("completion summary refused for " + "; ".join(refused))
    return not refused

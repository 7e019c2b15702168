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
from datetime import date, datetime, timedelta
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
    path = file if file is not None else edition_path(settings.reports_dir, day or now.date())
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        hint = f"write {display_path(path)}" if file is None else "check the path"
        raise InputError([Problem(display_path(path), 1, f"no edition file; {hint}")]) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError([Problem(display_path(path), line, "not valid UTF-8; save the file as UTF-8")]) from None
    return assemble(path, text, settings.report, now, urgent=urgent)


def choose_lists(settings: Settings, edition: Edition, requested: tuple[str, ...]) -> tuple[str, ...]:
    """--list wins; else the edition's 'lists'; else every list named in a schedule."""
    if requested:
        names = requested
    elif edition.lists is not None:
        names = edition.lists
    else:
        names = settings.scheduled_lists()
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
    lists: tuple[str, ...] = (), to: tuple[str, ...] = (),
) -> Prepared:
    """Resolve, render, serialise, pre-flight. Raises InputError/PreflightError; sends nothing."""
    test = bool(to)
    if test:
        resolution = _resolve_addresses(to)
        names: tuple[str, ...] = ()
    else:
        names = choose_lists(settings, edition, lists)
        resolution = resolve(settings.recipients_dir, names)
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


def _resolve_addresses(addresses: tuple[str, ...]) -> Resolution:
    from dispatch.recipients import AddressError, Invalid, normalise

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


def changed_after_send(edition: Edition, current: Content, sent: SentVersion, zone: ZoneInfo) -> ChangeControlError | None:
    """None when the edition is what was sent; else the error that says what changed and what to do."""
    if sent.content_hash is not None:
        if sent.content_hash == current.hash:
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
    author: str | None  # who wrote this content (front matter 'by', or recorded at check/save)
    verdict: gate.Verdict | None  # None: not gated (urgent messages, test sends)
    sent: SentVersion | None  # what this revision's dispatch already sent
    conflict: ChangeControlError | None  # the edition differs from what was sent


def review(settings: Settings, ledger: Ledger, edition: Edition, now: datetime, *, test: bool = False,
           record_author: str | None = None) -> Review:
    """Judge the edition against the ledger: sent content is final, approvals bind content.

    ``record_author``: remember this person as the author of the current content if
    nobody was recorded for it yet (``check`` and the console's save do this)."""
    current = identify(settings, edition)
    if edition.urgent or test:
        return Review(current, edition.author, None, None, None)
    author = edition.author
    if record_author is not None:
        author = ledger.record_edit(edition.date, current.hash, author or record_author, now)
    author = author or ledger.author_of(edition.date, current.hash)
    verdict = gate.judge(settings.approval, edition, current.hash, ledger.approvals(edition.date), author, settings.timezone)
    sent = sent_version(ledger, dispatch_name(edition.date, edition.revision, edition.kind))
    conflict = changed_after_send(edition, current, sent, settings.timezone) if sent else None
    return Review(current, author, verdict, sent, conflict)


def approve(settings: Settings, ready: Prepared, by: str, now: datetime) -> Approval:
    """Record an approval of the edition's current content by ``by``; refuse the author."""
    edition = ready.edition
    ledger = open_ledger(settings)
    try:
        found = review(settings, ledger, edition, now)
        if found.conflict is not None:
            raise found.conflict
        author = found.author or current_user()
        refusal = gate.refuse_approver(by, author)
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

    @property
    def already_accepted(self) -> int:
        return self.counts.get("sent", 0)


def decide(settings: Settings, ledger: Ledger, ready: Prepared, now: datetime) -> Decision:
    """Name the dispatch and check that the content may go; ChangeControlError if not."""
    edition = ready.edition
    found = review(settings, ledger, edition, now, test=ready.test)
    current = found.content
    notes: list[str] = []
    if ready.test:
        kind = f"test-{now:%Y%m%dT%H%M%S}"
    elif edition.urgent:
        same = ledger.dispatches_with_content(current.hash, "urgent")
        if same:
            # Whatever day it was first sent: the same message again resumes that dispatch.
            record = same[-1]
            notes = [f"same content as urgent dispatch {record.name}"]
            return Decision(record.name, record.kind, current, record, ledger.counts(record.id), None, tuple(notes),
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
    counts = ledger.counts(existing.id) if existing else {}
    return Decision(name, kind, current, existing, counts, found.verdict, tuple(notes), edition.date, edition.revision)


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
            conflict = changed_after_send(edition, identify(settings, edition), sent, settings.timezone)
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


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_url)


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


def send_policy(settings: Settings, linger: timedelta = timedelta(0)) -> SendPolicy:
    t = settings.transport
    return SendPolicy(
        connections=t.connections, recipients_per_message=t.recipients_per_message,
        rate_per_minute=t.rate_per_minute, retry_minutes=t.retry_minutes,
        retry_window=timedelta(hours=t.retry_window_hours), linger=linger,
        lease=timedelta(seconds=settings.lease_seconds),
    )


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def send(settings: Settings, ready: Prepared, clock: Clock, *, created_by: str | None = None,
         progress: Callable[[int], None] | None = None, linger: timedelta = timedelta(0),
         stop: threading.Event | None = None) -> Result:
    """Send (or resume) the edition's dispatch. Change control is checked here, against the
    ledger, whoever calls: no path sends changed or unapproved content."""
    ledger = open_ledger(settings)
    try:
        decision = decide(settings, ledger, ready, clock.now())
        plan = plan_for(settings, ready, clock.now(), created_by or current_user(), decision)
        # The record of what is sent, and the page the email links to, exist before the
        # first message goes out; a failure here stops the send with nothing sent.
        ledger.keep_content(plan.name, ready.rendered.subject, plan.source, ready.edition.source_text,
                            ready.rendered.html, ready.rendered.text, clock.now(),
                            content_hash=decision.content.hash, canonical=decision.content.document())
        finished = decision.existing is not None and decision.existing.finished_at is not None
        if publishes_on_send(settings, ready.edition) and not ready.test and not finished:
            publish(settings, ready.edition, clock.now())
        transport = open_transport(settings)
        result = run(plan, ledger, transport, send_policy(settings, linger), clock, progress=progress, stop=stop)
        # One summary per dispatch outcome: from the run that finished it, or from a run
        # that leaves recipients waiting; not from a run that was merely stopped.
        stopped = stop is not None and stop.is_set()
        if settings.notify and not ready.test and result.attempted and (result.finished_now or (not result.complete and not stopped)):
            notify_summary(settings, ledger, transport, result, clock)
        return result
    finally:
        ledger.close()


def notify_summary(settings: Settings, ledger: Ledger, transport: Transport, result: Result, clock: Clock) -> None:
    """Mail the completion summary to `notify`. A failure here is reported, never fatal:
    the report itself has been delivered."""
    record = ledger.find_dispatch(result.dispatch)
    if record is None:
        return
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
        return
    refused = [f"{address}: {o.reply}" for address, o in outcomes.items() if o.state is not State.SENT]
    if refused:
        result.errors.append("completion summary refused for " + "; ".join(refused))

"""Editing an edition from the console: open it as form fields and a Markdown body, preview
exactly what would be sent, and save it without losing anybody's words.

The console composes the file (front matter from its fields, then the body as typed) and
hands it to the same reading, rendering and checking as ``check``: there is one idea of a
valid edition. A save is refused when the file changed since the editor opened it (another
editor, or someone on the server); the refused text is kept in the ledger, so both texts
remain: one in the file, one kept aside, shown on the edition's page.
"""

from __future__ import annotations

import hashlib
import json
import re  # not wording: checks the form of the Sammanställd field
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from dispatch.app.application import Session
from dispatch.app.changes import identify, latest_sent_edition, review
from dispatch.app.editions import Prepared, check_problems, render_edition
from dispatch.app.timetable import first_slot_on
from dispatch.config import Settings, secret_problems
from dispatch.config.yamlsource import LineDict, parse_yaml
from dispatch.control import approval as approval_gate
from dispatch.control.diff import NOT_CONTENT, TextDiff, diff_edition
from dispatch.email.edition import assemble, edition_path, split_front_matter
from dispatch.errors import ChangeControlError, InputError, Problem
from dispatch.ledger import Ledger
from dispatch.models import KeptText
from dispatch.publishing.atomic import write_atomic
from dispatch.values import Fact

# The front matter the console shows as fields, in the order it writes them.
FIELDS = ("compiled", "status", "urgent", "revision", "correction", "lists", "subject", "headline", "preheader", "markers", "by")
HEADLINE_SUGGESTION_CHARS = 48  # with "mån 18 nov: " in front, about what an inbox shows (SUBJECT_WARN_CHARS)
_COMPILED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
_SAVE_LOCK = threading.Lock()  # read-compare-write of one process's saves, one at a time
NEW_FILE = "new"  # the base of an edition that did not exist when it was opened


@dataclass(frozen=True)
class Draft:
    """An edition as the console edits it."""

    day: date
    fields: dict[str, str]
    body: str
    base: str  # file_hash of the file as opened, or NEW_FILE
    exists: bool
    kept: tuple[KeptText, ...] = ()


@dataclass(frozen=True)
class DraftPreview:
    """What the preview shows: the message as it would be sent (None when the edition cannot
    be read at all) and every problem, each with where it is in the form."""

    html: str | None
    text: str | None
    subject: str | None
    content_short: str | None
    problems: tuple[Problem, ...]
    body_line: int  # the file line where the body starts: problem line - body_line + 1 = editor line
    field_lines: dict[str, int] = field(default_factory=dict)
    # The first new point, cut to fit a subject: what the editor may take as 'headline'
    # (None when the edition has one, or nothing is new).
    headline_suggestion: str | None = None


@dataclass(frozen=True)
class Saved:
    saved: bool
    base: str  # the file's hash now (the new base for the next save)
    content_hash: str | None = None
    conflict_by: str | None = None  # who saved the version that is in the file
    kept_id: int | None = None
    problems: tuple[Problem, ...] = ()
    unchanged: bool = False  # nothing differed from the file: not written, authorship kept
    refused: Fact | None = None  # why nothing was written: the save would approve what its saver may not


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_draft(s: Session, day: date, now: datetime) -> Draft:
    """The edition of ``day`` as fields and body; a new one prefilled with the time and the
    section headings of the latest edition, without its text (check refuses an empty
    section, so each must be written anew: yesterday's text cannot go out by mistake)."""
    settings, ledger = s.settings, s.ledger
    path = edition_path(settings.reports_dir, day)
    kept = tuple(ledger.kept_texts(day))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        fields = {"compiled": default_compiled(settings, day, now), "status": "draft"}
        return Draft(day, fields, _headings_of_latest(settings, day), NEW_FILE, False, kept)
    text = data.decode("utf-8", errors="replace")
    fields, body = split_fields(text)
    return Draft(day, fields, body, file_hash(data), True, kept)


def default_compiled(settings: Settings, day: date, now: datetime) -> str:
    """A new edition's 'compiled' (on its own day: check refuses another): the time it is now
    for today's edition; for another day's, the earliest slot of a schedule on that day (it is
    not sent before its compiled time, and a reader must not read a time that had not come
    when it went out); 00:00 when no schedule runs that day (sendable by hand all that day;
    the editor sets the real time)."""
    local = now.astimezone(settings.timezone)
    if day == local.date():
        return f"{day.isoformat()} {local:%H:%M}"
    slot = first_slot_on(settings, day)
    at = slot[1].astimezone(settings.timezone) if slot is not None else None
    return f"{day.isoformat()} {at:%H:%M}" if at is not None else f"{day.isoformat()} 00:00"


def split_fields(text: str) -> tuple[dict[str, str], str]:
    """Front matter values as form text (lists comma-separated), and the body as written."""
    try:
        front, body, _ = split_front_matter(text)
    except ValueError:
        return {}, text
    fields: dict[str, str] = {}
    try:
        meta = parse_yaml(front, "front matter") if front.strip() else None
    except InputError:
        meta = None
    if isinstance(meta, LineDict):
        for key in FIELDS:
            value = meta.get(key)
            if value is None:
                continue
            if isinstance(value, bool):
                fields[key] = "true" if value else "false"
            else:
                fields[key] = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return fields, body.removeprefix("\n")


def compose(fields: dict[str, str], body: str) -> tuple[str, dict[str, int]]:
    """The file text for these fields and this body, and the line of each field written.

    Text values are written as YAML double-quoted strings (JSON's escaping), so a colon, a
    quote or a '#' in a subject is text, never YAML syntax. Line breaks are normalised to \\n."""
    lines = ["---"]
    where: dict[str, int] = {}
    for key in FIELDS:
        value = (fields.get(key) or "").strip()
        if not value:
            continue
        where[key] = len(lines) + 1
        if ((key == "compiled" and _COMPILED.match(value)) or (key == "status" and value in ("draft", "approved"))
                or (key == "urgent" and value in ("true", "false"))):
            lines.append(f"{key}: {value}")
        elif key == "revision" and value.isascii() and value.isdigit():  # "²".isdigit() too, but int() refuses it
            lines.append(f"{key}: {int(value)}")
        elif key == "lists":
            names = [json.dumps(name.strip(), ensure_ascii=False) for name in value.split(",") if name.strip()]
            lines.append(f"{key}: [{', '.join(names)}]")
        else:
            lines.append(f"{key}: {json.dumps(' '.join(value.split()) if key != 'correction' else value, ensure_ascii=False)}")
    lines += ["---", "", ""]  # a blank line between the front matter and the body, as people write it
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(lines) + body, where


def body_start(text: str) -> int:
    """The file line of the editor's first line (``compose`` puts a blank line before it)."""
    try:
        _, _, line = split_front_matter(text)
    except ValueError:
        return 1
    return line + 1 if line > 1 else 1


def preview_draft(s: Session, day: date, fields: dict[str, str], body: str, now: datetime, *,
                  urgent_file: Path | None = None) -> DraftPreview:
    """Render the draft as the send would, and check it as ``check`` would; nothing is
    written. The message is shown even when pre-flight finds problems. ``urgent_file``: an
    urgent message to be written there (the urgent layout, no approval)."""
    settings = s.settings
    # The status is not what is previewed; the form leaves it out for someone who may not approve.
    text, where = compose({**fields, "status": fields.get("status") or "draft"}, body)
    body_line = body_start(text)
    path = urgent_file or edition_path(settings.reports_dir, day)
    found: list[Problem] = []  # problems that leave a message to show: shown beside it
    try:
        edition = assemble(path, text, settings.report, now, urgent=urgent_file is not None, lenient=found)
    except InputError as exc:
        return DraftPreview(None, None, None, None, exc.problems, body_line, where)
    try:
        ready: Prepared = render_edition(s, edition, now)
    except InputError as exc:  # unknown lists, a broken recipient file
        return DraftPreview(None, None, None, None, (*found, *exc.problems), body_line, where)
    problems = (*found, *check_problems(settings, ready), *ready.resolution.problems, *secret_problems(settings))
    content = identify(s, edition)
    points = ready.edition.news_points
    suggestion = headline_suggestion(points[0].text) if points and not edition.headline and not edition.urgent else None
    return DraftPreview(ready.rendered.html, ready.rendered.text, ready.rendered.subject, content.short,
                        tuple(dict.fromkeys(problems)), body_line, where, suggestion)


def headline_suggestion(point: str) -> str:
    """A new point's first clause (up to a comma, colon, semicolon or dash), else its first
    words, within HEADLINE_SUGGESTION_CHARS and without a trailing '…': a subject is read
    whole, and an editor shortens a sentence better than a cut does."""
    text = " ".join(point.replace("…", " ").split()).rstrip(".")
    for mark in (": ", "; ", " \u2013 ", " - ", ", "):
        head = text.split(mark, 1)[0]
        if len(head) <= HEADLINE_SUGGESTION_CHARS and len(head.split()) >= 3:
            return head
    if len(text) <= HEADLINE_SUGGESTION_CHARS:
        return text
    words = text[:HEADLINE_SUGGESTION_CHARS + 1].rsplit(" ", 1)[0].rstrip(",;:\u2013- ").split(" ")
    while len(words) > 3 and words[-1].casefold() in _SMALL_WORDS:  # "… till Asynja när" reads as cut off
        words.pop()
    return " ".join(words)


_SMALL_WORDS = frozenset((
    "och", "i", "på", "när", "att", "för", "med", "av", "till", "som", "om", "men", "utan", "den", "det", "en", "ett",
    "de", "vid", "från", "efter",
))


def save_draft(s: Session, day: date, fields: dict[str, str], body: str, base: str,
               user: str, now: datetime, *, may_approve: bool = False) -> Saved:
    """Write ``reports/DAY.md`` atomically unless it changed since ``base``; a refused text is
    kept in the ledger. The saver is recorded as the author of the content saved (so they
    cannot approve it) and the save is in the audit log.

    With ``approval: front_matter`` the file's status field is the approval, so the four-eyes
    rule is applied to it here (see ``status_refusal``): ``may_approve`` says whether the saver
    holds the right to approve. A ``status`` left empty keeps the file's status while the
    content stays as it is, and makes it a draft when the content changes: a change voids an
    approval, as it does under four_eyes."""
    settings, ledger = s.settings, s.ledger
    path = edition_path(settings.reports_dir, day)
    with _SAVE_LOCK:
        try:
            raw: bytes | None = path.read_bytes()
        except FileNotFoundError:
            raw = None
        current = file_hash(raw) if raw is not None else NEW_FILE
        earlier = raw.decode("utf-8", errors="replace") if raw is not None else None
        earlier_fields, earlier_body = split_fields(earlier) if earlier is not None else ({}, "")
        same_content = earlier is not None and content_text(fields, body) == content_text(earlier_fields, earlier_body)
        status = (fields.get("status") or "").strip()
        if not status:
            status = earlier_fields.get("status", "draft") if same_content else "draft"
        # The last editor, by name: the approval rule reads it. Changing only the status is not
        # writing the text: whoever wrote it stays its editor (an approver's status is no authorship).
        fields = {**fields, "status": status, "by": earlier_fields.get("by", "") if same_content else user}
        text, _ = compose(fields, body)
        data = text.encode("utf-8")
        approving = (settings.approval != "four_eyes" and status == "approved"
                     and not (same_content and earlier_fields.get("status") == "approved"))
        if approving and current == base:
            refusal = status_refusal(s, day, earlier, same_content, user, may_approve, now)
            if refusal is not None:
                return Saved(False, current, refused=refusal)
        if current == base and data == raw:
            # Saving what is already there changes nothing, and must not make the person who
            # pressed "Spara" its author (they could no longer approve what they only read).
            return Saved(True, current, unchanged=True)
        if current != base:
            by = _saved_by(ledger, day, current)
            kept_id = ledger.keep_text(day, user, text, f"Inte sparad: {by} sparade rapporten efter att {user} öppnade den", now)
            ledger.record_audit(now, user, "save_refused", day.isoformat(), None,
                                (Fact.of("audit_detail.kept_text", id=kept_id), Fact.of("audit_detail.file", hash=current[:12])))
            return Saved(False, current, conflict_by=by, kept_id=kept_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, mode=0o644)
    new_base = file_hash(data)
    content_hash = None
    try:
        edition = assemble(path, text, settings.report, now)
        # Only a change to the text makes the saver its author; a status set by an approver does not.
        found = review(s, edition, now, record_author=None if same_content else user)
        content_hash = found.content.hash
    except InputError:
        pass  # a draft with problems is saved all the same; it cannot be approved or sent
    ledger.record_audit(now, user, "save", day.isoformat(), content_hash, (Fact.of("audit_detail.file", hash=new_base),))
    if approving:  # the status field's approval, in the log as an approval (front_matter records none elsewhere)
        ledger.record_audit(now, user, "approve", day.isoformat(), content_hash, (Fact.of("audit_detail.status_field"),))
    return Saved(True, new_base, content_hash)


def content_text(fields: dict[str, str], body: str) -> str:
    """The file as ``compose`` writes it, without the fields that are not content (who saved
    it, its status): equal for two saves that differ only in those."""
    return compose({key: value for key, value in fields.items() if key not in NOT_CONTENT}, body)[0]


def status_refusal(s: Session, day: date, earlier: str | None, same_content: bool, user: str, may_approve: bool,
                   now: datetime) -> Fact | None:
    """Why ``user`` may not set ``status: approved`` (mode front_matter), None when they may:
    only someone with the right to approve, on the text as it is in the file (a save that
    changes it makes its saver the text's last editor), and not the person who wrote that text
    (the file's ``by``, the last to save it in the console, and the first recorded for its content)."""
    if not may_approve:
        return Fact.of("status.approve_needs_approver", user=user)
    if not same_content or earlier is None:
        return Fact.of("status.approve_own_change", user=user)
    try:
        edition = assemble(edition_path(s.settings.reports_dir, day), earlier, s.settings.report, now)
    except InputError:
        return Fact.of("status.approve_with_problems")
    return approval_gate.refuse_approver(user, review(s, edition, now).authors)


def _saved_by(ledger: Ledger, day: date, current: str) -> str:
    if current == NEW_FILE:
        return "någon som tog bort filen"
    for entry in ledger.audit_log(200, action="save", target=day.isoformat()):
        if entry.detail == f"file {current}":
            return entry.user
    return "någon utanför konsolen (filen ändrades på servern)"


def _headings_of_latest(settings: Settings, day: date) -> str:
    earlier = sorted(p for p in Path(settings.reports_dir).glob("????-??-??.md") if p.stem < day.isoformat())
    if not earlier:
        return "## Beskrivning av händelsen\n\n"
    try:
        _, body = split_fields(earlier[-1].read_text(encoding="utf-8"))
    except OSError:
        return ""
    headings = [line for line in body.splitlines() if line.startswith("## ")]
    return "".join(f"{heading}\n\n" for heading in headings)


@dataclass(frozen=True)
class SentDiff:
    """The edition as it is now against the revision that was sent."""

    name: str  # the dispatch that sent it
    revision: int
    reached: int
    changes: TextDiff  # word by word and field by field, as the console shows it


def sent_diff(s: Session, day: date, text: str) -> SentDiff | None:
    """None when nothing of the day's edition has reached anybody yet."""
    sent = latest_sent_edition(s.ledger, day)
    if sent is None:
        return None
    return SentDiff(sent.record.name, sent.record.revision, sent.reached, diff_texts(sent.source_text, text))


# A field left out of the front matter reads as its default: no change when a form writes it.
FIELD_DEFAULTS = {"revision": "1", "urgent": "false", "markers": "true"}


# Fields that belong to one day's edition: against another day's they always differ, and say
# nothing about what its readers will read anew (the approver looks for the text's changes).
DAY_FIELDS = frozenset({"compiled", "revision", "correction"})


def diff_texts(old_text: str, new_text: str, order: tuple[str, ...] = FIELDS, *, other_day: bool = False) -> TextDiff:
    """Two edition files' texts compared: the front matter field by field (a field not written
    as its default), the body word by word. ``other_day``: the old text is another day's
    edition, whose date, version and correction are left out."""
    old_fields, old_body = split_fields(old_text)
    new_fields, new_body = split_fields(new_text)
    old_fields, new_fields = FIELD_DEFAULTS | old_fields, FIELD_DEFAULTS | new_fields
    if other_day:
        old_fields = {k: v for k, v in old_fields.items() if k not in DAY_FIELDS}
        new_fields = {k: v for k, v in new_fields.items() if k not in DAY_FIELDS}
    return diff_edition(old_fields, old_body, new_fields, new_body, order)


def start_correction(s: Session, day: date, user: str, now: datetime) -> Saved:
    """Make the sent edition revision N+1, with an empty correction text for the editor to
    write (check refuses a revision 2 or later without one, so it cannot go out without it).
    The text stays as it was sent: the editor changes what was wrong, and approval follows."""
    settings, ledger = s.settings, s.ledger
    sent = latest_sent_edition(ledger, day)
    if sent is None:
        raise ChangeControlError([Problem.of(day.isoformat(), 0, "correction.nothing_sent")])
    path = edition_path(settings.reports_dir, day)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = sent.source_text.encode("utf-8")  # the file is gone: start from what was sent
    fields, body = split_fields(data.decode("utf-8", errors="replace"))
    written = fields.get("revision") or "1"
    if written.isascii() and written.isdigit() and int(written) > sent.record.revision:
        return Saved(True, file_hash(data))  # a correction is already being written
    fields.update(revision=str(sent.record.revision + 1), correction="", status="draft")
    base = file_hash(data) if path.exists() else NEW_FILE
    saved = save_draft(s, day, fields, body, base, user, now)
    if saved.saved:
        ledger.record_audit(now, user, "correction_started", day.isoformat(), None,
                            (Fact.of("audit_detail.revision_of", revision=sent.record.revision + 1, name=sent.record.name),))
    return saved

"""Editions: read one, choose its lists, and prepare it (resolve, render, serialise,
pre-flight) without sending anything; what check and preview make of it."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dispatch.app.application import Session
from dispatch.app.changes import earlier_message_ids, with_news
from dispatch.app.directory import snapshot_people
from dispatch.app.readback import read_back_problems, reject_unwritable_to
from dispatch.app.reading import read_edition
from dispatch.app.wiring import envelope, signer
from dispatch.config import Settings, secret_problems
from dispatch.email import preflight
from dispatch.email.conversation import Thread, conversation
from dispatch.email.message import PreparedMessage, message_id, prepare, thread_headers, to_header
from dispatch.email.render import render
from dispatch.errors import InputError, PreflightError, Problem, display_path
from dispatch.ledger import dispatch_name
from dispatch.models import Edition, Recipient, Rendered
from dispatch.recipients.lists import Directories, Resolution, Where, available_lists, resolve, unknown_list
from dispatch.values import DispatchKind

if TYPE_CHECKING:
    from dispatch.email.screenshots import Chromium

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
    thread: Thread | None = None
    made_at: datetime | None = None  # the time it was rendered for (its Date): names a test dispatch
    snapshots: Mapping[str, int] = field(default_factory=dict)  # directory list -> the snapshot it resolved to


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
            problems.append(unknown_list(where[0] if where[1] else "--list", where[1], name, sorted(known)))
    if problems:
        raise InputError(problems)
    return tuple(names)


def lists_sent_before(s: Session, edition: Edition) -> tuple[str, ...]:
    """The lists the edition's earlier revisions went to, in first-sent order."""
    seen: dict[str, None] = {}
    for record in s.ledger.list_dispatches(edition.date):
        if record.kind_of is DispatchKind.EDITION and record.revision < edition.revision:
            for name in record.lists:
                seen.setdefault(name)
    return tuple(seen)


def _earlier_revisions(s: Session, edition: Edition) -> tuple[tuple[str, ...], dict[str, bytes], str | None]:
    """For a correction, in one read of the ledger: the lists its earlier revisions went to,
    per recipient key the In-Reply-To/References lines of what that person got, and the
    subject of the first revision sent (its Thread-Topic), None when none was sent."""
    ledger = s.ledger
    threads = {key: thread_headers(ids) for key, ids in earlier_message_ids(ledger, edition).items()}
    earlier = sorted((r for r in ledger.list_dispatches(edition.date)
                      if r.kind_of is DispatchKind.EDITION and r.revision < edition.revision), key=lambda r: r.revision)
    first_subject = earlier[0].subject if earlier else None
    return lists_sent_before(s, edition), threads, first_subject


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


def prepare_edition(
    s: Session, edition: Edition, now: datetime, *,
    lists: tuple[str, ...] = (), to: tuple[str, ...] = (), default_lists: tuple[str, ...] = (),
) -> Prepared:
    """Resolve, render, serialise, pre-flight. Raises InputError/PreflightError; sends nothing."""
    settings = s.settings
    ready = render_edition(s, edition, now, lists=lists, to=to, default_lists=default_lists)
    problems = check_problems(settings, ready)
    if problems:
        raise PreflightError(problems)
    return ready


def render_edition(
    s: Session, edition: Edition, now: datetime, *,
    lists: tuple[str, ...] = (), to: tuple[str, ...] = (), default_lists: tuple[str, ...] = (),
) -> Prepared:
    """Resolve, render and serialise, without the pre-flight checks (the console's preview
    shows the message beside its problems). Raises InputError for lists that cannot be read."""
    settings, test = s.settings, bool(to)
    edition = with_news(s, edition)  # a no-op for an edition read by read_edition
    threads: dict[str, bytes] = {}
    first_subject: str | None = None
    snapshots: dict[str, int] = {}
    if test:
        resolution = _resolve_addresses(to)
        names: tuple[str, ...] = ()
    else:
        earlier: tuple[str, ...] = ()
        if edition.revision > 1 and not edition.urgent:
            earlier, threads, first_subject = _earlier_revisions(s, edition)
        names = choose_lists(settings, edition, lists, earlier, default_lists)
        # Directory lists: their last accepted snapshots, never the directory itself.
        people = snapshot_people(s)
        resolution = resolve(settings.recipients_dir, names, directories=Directories(directory_kinds(settings), people))
        snapshots = dict(people.used)
    reject_unwritable_to(resolution)
    footer = FOOTER.format(sender=settings.sender.name or settings.sender.address)
    # A test send does not publish, so it carries no link to a page that does not exist yet.
    link = None if test else web_url(settings, edition)
    rendered = render(edition, settings.templates_dir, footer=footer, web_url=link, test=test)
    # Date in the office's zone: what a reader's client shows beside the sending time.
    from dispatch.email.render import CORRECTION_PREFIX, TEST_PREFIX, URGENT_PREFIX

    thread = conversation(settings.report.list_id, settings.sender.domain, edition.date, settings.timezone,
                          subject=edition.subject, urgent=edition.urgent, revision=edition.revision, now=now,
                          first_subject=first_subject, prefixes=(TEST_PREFIX, URGENT_PREFIX, CORRECTION_PREFIX))
    prepared = prepare(rendered, envelope(settings), now.astimezone(settings.timezone), urgent=edition.urgent, thread=thread)
    prepared = dataclasses.replace(prepared, threads=threads, signer=signer(settings))  # (signs the preview too)
    return Prepared(edition, resolution, rendered, prepared, names, test, thread, now, snapshots)


def check_problems(settings: Settings, ready: Prepared) -> list[Problem]:
    """The pre-flight checks on the rendered message, as the recipient with the longest name
    and address would get it: only the To line differs between recipients, so that one
    shows the longest line."""
    longest = max(
        ready.resolution.recipients.values(), key=lambda r: len(r.name.encode()) + len(r.address),
        default=Recipient("first@example.org", "", "first@example.org"),
    )
    edition, rendered = ready.edition, ready.rendered
    sample = ready.prepared.for_recipients(to_header([longest]), message_id("preflight", longest.key, ready.prepared.domain),
                                           longest.key)
    problems = preflight.check(
        rendered.subject, rendered.html, rendered.text, sample, f"{display_path(edition.source)}:1",
        sources=_preflight_sources(settings, edition), header_sources={"To": longest.source},
    )
    return problems + read_back_problems(settings, ready, sample, longest)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _preflight_sources(settings: Settings, edition: Edition) -> list[tuple[str, str]]:
    """The edition and the HTML template, so a pre-flight problem names the line to fix."""
    sources = [(display_path(edition.source), edition.source_text), (display_path(settings.path), _read(settings.path))]
    template = settings.templates_dir / "edition.html"
    # The template was read moments ago by render(); without it, problems point at the edition.
    with contextlib.suppress(OSError):
        sources.append((display_path(template), template.read_text(encoding="utf-8")))
    return sources


def _resolve_addresses(addresses: tuple[str, ...]) -> Resolution:
    from dispatch.recipients.lists import AddressError, normalise

    resolution = Resolution()
    for raw in addresses:
        try:
            address, key = normalise(raw)
        except AddressError as exc:
            raise InputError([Problem.of("--to", 0, "recipients.invalid_address", address=repr(raw), detail=exc.fact)]) from None
        resolution.recipients.setdefault(key, Recipient(address=address, name="", key=key, source="--to"))
    return resolution


def looks_urgent(path: Path) -> bool:
    """An urgent message file given without --urgent: a subject and no 'compiled'."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False
    return "\nsubject:" in head and "\ncompiled:" not in head


def first_message(ready: Prepared) -> bytes | None:
    """The message exactly as the first recipient would get it (preview's .eml)."""
    recipients = list(ready.resolution.recipients.values())
    if not recipients:
        return None
    first = recipients[0]
    name = dispatch_name(ready.edition.date, ready.edition.revision, ready.edition.kind)
    return ready.prepared.for_recipients(to_header([first]), message_id(name, first.key, ready.prepared.domain), first.key)


def check_edition(s: Session, day: date | None, file: Path | None, now: datetime, *,
                  urgent: bool = False) -> tuple[Prepared, list[Problem]]:
    """What ``check`` validates before judging the edition: the schedules (a cron that serve
    would reject is a config problem now, not at 14:00), the edition read and prepared.
    Returns it with the problems that do not stop it (list entries, missing secrets)."""
    # Here, not at the top: the schedules' APScheduler triggers are for check and serve, not
    # for every command that reads an edition (status does, issue 34).
    from dispatch.app.timetable import check_schedules

    settings = s.settings
    check_schedules(settings)
    edition = read_edition(s, day, file, now, urgent=urgent)
    ready = prepare_edition(s, edition, now)
    return ready, phone_problems(settings, ready) + list(ready.resolution.problems) + secret_problems(settings)


def phone_problems(settings: Settings, ready: Prepared, html_path: Path | None = None,
                   browser: Chromium | None = None) -> list[Problem]:
    """The message at a phone's width in headless Chromium: a page wider than the screen makes
    every line scroll sideways, and iOS will not shrink it (the message asks it not to). Nothing
    without Chromium, as on a developer's machine (CI has it); a browser that fails is an error."""
    from dispatch.email.screenshots import Chromium, ChromiumMissing, find_chromium, overflow

    try:
        executable = find_chromium()
    except ChromiumMissing:
        if browser is None:
            return []
        executable = ""
    # A message that fitted once fits again: editors run check over and over on the same text,
    # and a browser start costs a second. Keyed by the HTML and the browser (path and version
    # on disk), kept beside the ledgers' identities.
    fitted = _fitted_marker(ready.rendered.html, executable)
    if fitted is not None and fitted.exists():
        return []
    with contextlib.ExitStack() as stack:
        if html_path is None:
            html_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dispatch-phone-"))) / "message.html"
            html_path.write_text(ready.rendered.html, encoding="utf-8")
        found = overflow(html_path, browser or stack.enter_context(Chromium()))
    if found is None:
        if fitted is not None:
            with contextlib.suppress(OSError):
                fitted.parent.mkdir(parents=True, exist_ok=True)
                fitted.touch()
        return []
    culprit = found.culprits[0] if found.culprits else {}
    longest = max(str(culprit.get("text", "")).split(), key=len, default="")
    # The widest word, then the addresses, then the element's own attributes and its parents':
    # each alone, so that a common one (class="section") does not win over the telling one.
    needles = [longest, *culprit.get("hrefs", []), *culprit.get("attributes", [])]
    sources = _preflight_sources(settings, ready.edition)
    where = next((at for needle in needles if len(needle) >= 4 and (at := preflight.locate([needle], sources))), None)
    path, line = where or (display_path(ready.edition.source), 1)
    if len(longest) >= 4:
        return [Problem.of(path, line, "phone.word_too_wide", limit=found.limit, width=found.width, word=longest[:50])]
    return [Problem.of(path, line, "phone.element_too_wide", limit=found.limit, width=found.width,
                       tag=str(culprit.get("tag", "element")), element_width=str(culprit.get("width", "?")))]


def _fitted_marker(html: str, executable: str) -> Path | None:
    if not executable:
        return None
    from dispatch.ledger import state_dir

    try:
        version = os.stat(executable).st_mtime_ns
    except OSError:
        return None
    key = hashlib.sha256(f"{executable}\0{version}\0{html}".encode()).hexdigest()[:40]
    return state_dir() / "phone-fits" / key


def write_preview(settings: Settings, ready: Prepared, out: Path | None, *, screenshots: bool = False) -> list[Path]:
    """Write the rendered edition as .html, .txt and the .eml the first recipient would get
    (and, with ``screenshots``, pictures from headless Chromium) into ``out`` (default
    var/preview beside the config); returns the paths written."""
    out = out or settings.path.parent / "var" / "preview"
    out.mkdir(parents=True, exist_ok=True)
    edition = ready.edition
    stem = edition.source.stem if edition.urgent else edition.date.isoformat()
    paths = [out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml"]
    paths[0].write_text(ready.rendered.html, encoding="utf-8")
    paths[1].write_text(ready.rendered.text, encoding="utf-8")
    data = first_message(ready)
    if data is not None:
        paths[2].write_bytes(data)
    else:
        paths.pop()
    if not screenshots:
        problems = phone_problems(settings, ready, paths[0])
    else:
        from dispatch.email.screenshots import Chromium, take_screenshots  # headless Chromium: only when asked for

        with Chromium() as browser:  # ChromiumMissing is a DispatchError with the fix in it
            problems = phone_problems(settings, ready, paths[0], browser)
            paths += take_screenshots(paths[0], out, browser=browser)
    if problems:
        raise PreflightError(problems)  # the files stay, to look at
    return paths


@dataclass(frozen=True)
class ListsReport:
    """The resolved recipient lists (None when the lists could not be read) and every problem."""

    names: tuple[str, ...]
    resolution: Resolution | None
    problems: list[Problem]
    snapshots: Mapping[str, int] = field(default_factory=dict)  # directory list -> the accepted snapshot shown


def directory_kinds(settings: Settings) -> dict[str, str]:
    """The directories config.yaml names, by kind: what the list resolver checks a directory
    list's ``source`` against. (Their people come from the lists' accepted snapshots.)"""
    return {name: directory.kind for name, directory in settings.directories.items()}


def all_lists(settings: Settings) -> tuple[str, ...]:
    """Every recipient list file's name."""
    return tuple(available_lists(settings.recipients_dir))


def lists_report(settings: Settings, names: tuple[str, ...], s: Session | None = None) -> ListsReport:
    """The lists named (default: every list in 'schedules'), resolved as a send would resolve them:
    with a unit of work ``s``, directory lists as their last accepted snapshots (one never accepted
    is a problem at its file); without, directory lists are read as files only, without members."""
    referrers: dict[str, Where] = {}
    if not names:
        names = settings.scheduled_lists()
        # An unknown list name then points at the schedules in config.yaml.
        where = (display_path(settings.path), settings.line_of.get("schedules", 1))
        referrers = {name: where for name in names}
    people = snapshot_people(s) if s is not None else None
    try:
        resolution = resolve(settings.recipients_dir, names, referrers, directories=Directories(directory_kinds(settings), people))
    except InputError as exc:
        return ListsReport(names, None, list(exc.problems))
    return ListsReport(names, resolution, list(resolution.problems), dict(people.used) if people is not None else {})

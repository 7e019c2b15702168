"""The composition root: the one place that picks concrete classes and wires the stages.

Commands (cli, serve) call the functions here; each function takes ``now`` or a
Clock so that nothing below reads the time by itself.
"""

from __future__ import annotations

import getpass
import os
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

from dispatch import notice, preflight
from dispatch.config import Settings
from dispatch.edition import assemble, edition_path
from dispatch.errors import AuthenticationError, DispatchError, InputError, PreflightError, Problem, display_path
from dispatch.ledger import Ledger, dispatch_name
from dispatch.message import Envelope, PreparedMessage, list_id, message_id, prepare, to_header
from dispatch.models import Edition, Recipient, Rendered, State
from dispatch.pipeline import Clock, Plan, Result, SendPolicy, Transport, run
from dispatch.publish import Published, publish_edition
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
    # Only an approved daily edition goes on the intranet; an urgent message would
    # otherwise overwrite that day's report page, which has the same name.
    return settings.publish.on_send and edition.approved and not edition.urgent


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
    prepared = prepare(rendered, envelope(settings), now, urgent=edition.urgent)
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


def plan_for(settings: Settings, ready: Prepared, now: datetime, created_by: str) -> Plan:
    edition = ready.edition
    kind = edition.kind
    if edition.urgent:
        # Each urgent message file is its own dispatch; sending the same file again resumes it.
        kind = "urgent-" + (re.sub(r"[^a-z0-9]+", "-", edition.source.stem.lower()).strip("-") or "meddelande")[:60]
    if ready.test:
        kind = f"test-{now:%Y%m%dT%H%M%S}"
    name = dispatch_name(edition.date, edition.revision, kind)
    failed = tuple(
        (f"invalid:{inv.problem.path}:{inv.problem.line}", inv.email[:320], str(inv.problem))
        for inv in ready.resolution.invalid
    )
    group = ", ".join(ready.resolution.lists[n].display_name for n in ready.lists if n in ready.resolution.lists) or "Mottagare"
    return Plan(
        name=name, edition_date=edition.date, revision=edition.revision, kind=kind,
        subject=ready.rendered.subject, source=display_path(edition.source), created_by=created_by,
        recipients=tuple(ready.resolution.recipients.values()), failed_inputs=failed,
        prepared=ready.prepared, envelope_sender=settings.sender.address, group_name=group,
    )


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
    plan = plan_for(settings, ready, clock.now(), created_by or current_user())
    ledger = open_ledger(settings)
    try:
        # The record of what is sent, and the page the email links to, exist before the
        # first message goes out; a failure here stops the send with nothing sent.
        ledger.keep_content(plan.name, ready.rendered.subject, plan.source, ready.edition.source_text,
                            ready.rendered.html, ready.rendered.text, clock.now())
        if publishes_on_send(settings, ready.edition) and not ready.test:
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
    data = notice.compose(from_header, settings.notify, subject, body, clock.now())
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

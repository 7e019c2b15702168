"""Sending: the plan of a dispatch, the send itself (change control checked on the way, the
page published first), and the completion summary to `notify`."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from dispatch import wording
from dispatch.app import notify
from dispatch.app.application import Session
from dispatch.app.control import Decision, decide, publish
from dispatch.app.editions import Prepared, publishes_on_send
from dispatch.app.labels import label_of
from dispatch.app.readback import MAX_TO_LINE
from dispatch.app.wiring import current_user, secrets_ready, send_policy
from dispatch.config import Settings, TransportSettings
from dispatch.delivery.pipeline import Clock, Plan, Result, Transport, run
from dispatch.email.message import to_header
from dispatch.errors import DispatchError, InputError, Problem, display_path
from dispatch.models import InvalidEntry
from dispatch.publishing.intranet import PublishError
from dispatch.values import Fact, SendPlan


def plan_for(settings: Settings, ready: Prepared, now: datetime, created_by: str, decision: Decision) -> Plan:
    edition = ready.edition
    failed = tuple(
        InvalidEntry(inv.problem.path, inv.problem.line, inv.email[:320], str(inv.problem))
        for inv in ready.resolution.invalid
    )
    group = ", ".join(ready.resolution.lists[n].display_name for n in ready.lists if n in ready.resolution.lists) or "Mottagare"
    if len(to_header([], group_name=group)) > MAX_TO_LINE:
        group = "Mottagare"  # a Bcc batch's To line (the lists' names) must stay within 998 octets too
    approval = decision.verdict.approval if decision.verdict else None
    return Plan(
        name=decision.name, edition_date=decision.edition_date, revision=decision.revision, kind=decision.kind,
        subject=ready.rendered.subject, source=display_path(edition.source), created_by=created_by,
        recipients=tuple(ready.resolution.recipients.values()), failed_inputs=failed,
        prepared=ready.prepared, envelope_sender=settings.sender.return_path or settings.sender.address, group_name=group,
        content_hash=decision.content.hash, approved_by=approval.approved_by if approval else None,
        by_front_matter=decision.verdict is not None and decision.verdict.by_front_matter,
        approved_at=approval.approved_at if approval else None,
        approval_id=approval.id if approval else None, lists=ready.lists,
    )


def send(s: Session, ready: Prepared, clock: Clock, *, created_by: str | None = None,
         progress: Callable[[int], None] | None = None, linger: timedelta = timedelta(0),
         stop: threading.Event | None = None, by_hand: bool = False, retry_failed: str | None = None,
         on_pause: Callable[[str, bool, datetime], None] | None = None,
         on_publish_failed: Callable[[PublishError], None] | None = None, owner: str | None = None) -> Result:
    """Send (or resume) the edition's dispatch. Change control is checked here, against the
    ledger, whoever calls: no path sends changed or unapproved content.

    ``retry_failed``: the dispatch's name; its failed recipients are queued again first (a
    person fixed the cause). It must be the dispatch this send makes. ``owner``: the name the
    run's leases are held under (a console run keeps it, to give them back if the run fails).

    The intranet copy (publish.on_send) never stops the mail: if it cannot be written (a
    full disk, a read-only mount) the send goes on, the result says so in ``errors`` and
    ``on_publish_failed`` hears of it (the service alerts and retries)."""
    settings, ledger = s.settings, s.ledger
    secrets_ready(settings)
    decision = decide(s, ready, clock.now())
    if retry_failed is not None:
        if decision.existing is None or decision.name != retry_failed:
            raise InputError([Problem.of("--retry-failed", 0, "send.retry_other_dispatch", given=repr(retry_failed),
                                         name=decision.name)])
        requeued = ledger.requeue_failed(decision.existing.id, clock.now())
        decision = dataclasses.replace(decision, notes=(*decision.notes, f"{requeued} failed recipient(s) queued again"))
    plan = plan_for(settings, ready, clock.now(), created_by or ready.edition.author or current_user(), decision)
    if settings.sender.verp:
        plan = dataclasses.replace(plan, verp_key=ledger.identity)  # the ledger's identity: the same on every node
    if decision.to_send:  # the audit log: who sent what, whichever door they came through
        ledger.record_audit(clock.now(), plan.created_by, "send", plan.name, decision.content.hash,
                            (Fact.of("audit_detail.test_recipients" if ready.test else "audit_detail.recipients",
                                     count=decision.to_send),))
    # The record of what is sent exists before the first message goes out; a failure
    # here stops the send with nothing sent.
    ledger.keep_content(plan.name, ready.rendered.subject, plan.source, ready.edition.source_text,
                        ready.rendered.html, ready.rendered.text, clock.now(),
                        content_hash=decision.content.hash, canonical=decision.content.document())
    # Which snapshot each directory list went to: the record says exactly who was on the list.
    ledger.record_snapshots_used(plan.name, ready.snapshots, clock.now())
    finished = decision.existing is not None and decision.existing.finished_at is not None
    published: Path | None = None
    unpublished: PublishError | None = None
    if publishes_on_send(settings, ready.edition) and not ready.test and not finished:
        # Before the first message, so that the email's link works when it arrives; but
        # the copy is a convenience beside the mail, never a condition of it.
        try:
            published = publish(settings, ready.edition, clock.now()).page
        except PublishError as exc:
            unpublished = exc
    transport = s.transport
    result = run(plan, ledger, transport, send_policy(settings, linger, by_hand=by_hand), clock,
                 progress=progress, stop=stop, on_pause=on_pause, owner=owner)
    result.notes = list(decision.notes)
    if published is not None:
        result.notes.append(f"published {display_path(published)}")
    if unpublished is not None:
        result.errors.append(f"the intranet copy was not written: {unpublished}; the mail went out regardless "
                             f"(write it when the cause is fixed: dispatch publish --date {ready.edition.date.isoformat()})")
        if on_publish_failed is not None:
            on_publish_failed(unpublished)
    # One summary per dispatch outcome: from the run that finished it, or from a run
    # that gives up with recipients waiting; not from a run that was merely stopped, nor
    # while another run is still sending this dispatch (it will tell).
    stopped = stop is not None and stop.is_set()
    gave_up = not result.complete and not stopped and not result.others_sending
    summarise = settings.notify and not ready.test and result.attempted and (result.finished_now or gave_up)
    if summarise and notify_summary(s, result, clock):
        result.notes.append(f"completion summary mailed to {', '.join(settings.notify)}")
    return result


def notify_summary(s: Session, result: Result, clock: Clock) -> bool:
    """Mail the completion summary to `notify`. A failure here is reported, never fatal:
    the report itself has been delivered."""
    settings, ledger = s.settings, s.ledger
    record = ledger.find_dispatch(result.dispatch)
    if record is None:
        return False
    subject, body = notify.summary(
        label_of(record), record.subject, result.counts, ledger.rows(record.id), settings.timezone, result.next_attempt,
    )
    try:
        refused = mail_notice(settings, s.transport, subject, body, clock.now())
    except DispatchError as exc:
        result.errors.append(f"completion summary not sent: {exc}")
        return False
    if refused:
        result.errors.append("completion summary refused for " + "; ".join(refused))
    return not refused


def mail_notice(settings: Settings, transport: Transport, subject: str, body: str, now: datetime) -> list[str]:
    """Mail a completion summary or an alert to the `notify` addresses, from the configured
    sender; returns the refusals ("address: reply"), raises DispatchError if not delivered."""
    return notify.deliver(transport, (settings.sender.name, settings.sender.address), settings.sender.address, settings.notify,
                          subject, body, now.astimezone(settings.timezone))


def send_plan(recipients: int, transport: TransportSettings, already: int = 0) -> SendPlan:
    """What is about to happen and how long it should take, before the first message."""
    if transport.kind == "maildir":
        return SendPlan(recipients, recipients, 1, 1, str(transport.path), maildir=True, already=already)
    per_message = transport.recipients_per_message
    messages = -(-recipients // per_message)
    rate = transport.rate_per_minute
    return SendPlan(recipients, messages, per_message, transport.connections, f"{transport.host}:{transport.port}",
                    rate_per_minute=rate, seconds=messages / rate * 60 if rate else None, already=already)


def plan_line(plan: SendPlan) -> str:
    """The plan as the command line prints it (``plan: ...``)."""
    return wording.word_plan(plan, wording.english, duration(plan.seconds or 0))


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

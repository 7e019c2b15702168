"""The console speaks Swedish: the facts the app returns as values (a send's progress, plan and
relay trouble, a dispatch's label, an edition's state) worded from the Swedish catalogue
(``say_*``, dispatch.wording). Problems, refusals, the approval rule's reasons, role names and
the audit log's details are facts too, worded by dispatch.wording.swedish; nothing here reads
an English sentence to learn what it says.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from dispatch import wording
from dispatch.app import EditionState, label_from
from dispatch.values import DispatchLabel, Fact, Progress, RelayCause, RunState, SendPlan

NOTHING = "\N{EN DASH}"  # shown where there is no value (no rate, no time left)


# -- facts worded from the Swedish catalogue (dispatch.wording) -----------------------------------


def say_plan(plan: SendPlan) -> str:
    """A send plan as the console shows it (the command line prints the English ``plan:`` line)."""
    return wording.word_plan(plan, wording.swedish, wording.swedish(wording.duration(plan.seconds or 0)))


def say_label(label: DispatchLabel | None) -> str:
    """"Rapporten tis 8 dec, version 2", "Brådskande: ...", "Test till eva"."""
    return wording.swedish_label(label) if label is not None else ""


def say_state(state: RunState) -> str:
    return wording.swedish(Fact.of(f"run_state.{state.value}"))


def say_fact(fact: Fact | None) -> str:
    return wording.swedish(fact) if fact is not None else ""


def say_duration(seconds: float | None) -> str:
    return wording.swedish(wording.duration(seconds)) if seconds is not None else NOTHING


def say_relay(progress: Progress, zone: tzinfo) -> str:
    """What the operator reads when the relay is not taking messages: which server, why, and
    that nobody has been counted as failed for it. A send here that pauses speaks in the
    present; recipients held back by a send elsewhere (serve, another node) in the past, since
    this page cannot know how it is now."""
    trouble = progress.trouble
    if trouble is None:
        return ""
    cause = wording.swedish(wording.relay_cause(trouble.cause))
    at = f"{progress.next_try.astimezone(zone):%H:%M}" if progress.next_try else None
    if progress.state is RunState.PAUSED_BY_RELAY or (progress.state is RunState.INCOMPLETE and progress.relay_permanent):
        if progress.relay_permanent:
            return wording.swedish(Fact.of("relay.refused", host=trouble.host, cause=cause))
        when = wording.swedish(Fact.of("relay.at", time=at) if at else Fact.of("relay.soon"))
        return wording.swedish(Fact.of("relay.paused", host=trouble.host, cause=cause, when=when))
    when = " " + wording.swedish(Fact.of("relay.at", time=at)) if at else ""
    return wording.swedish(Fact.of("relay.held", count=progress.held_by_relay, host=trouble.host, cause=cause, when=when))


def say_reply(row: Mapping[str, object]) -> str:
    """A recipient's last reply as a table shows it: why it waits when the relay held it back
    (its exact text then belongs in the technical detail), else the server's reply as given."""
    if row.get("state") == "sent":
        # The server's words for "accepted" ("250 2.0.0 Ok", the Maildir's "250 delivered to
        # maildir ...") are technical detail; the office reads that it was taken.
        return wording.swedish(Fact.of("reply.accepted"))
    cause = row.get("relay_cause")
    if cause:
        known = str(cause) in {c.value for c in RelayCause}
        return wording.swedish(Fact.of("relay.row", cause=wording.swedish(
            wording.relay_cause(RelayCause(str(cause)) if known else RelayCause.OTHER))))
    return str(row.get("reply") or "")


def say_held_elsewhere(progress: Progress, zone: tzinfo) -> str:
    """Why recipients wait for another run (a node, serve, a run that failed) and until when."""
    if not progress.held_elsewhere or progress.held_until is None:
        return ""
    return wording.swedish(Fact.of("held.elsewhere", count=progress.held_elsewhere,
                                   time=f"{progress.held_until.astimezone(zone):%H:%M:%S}"))


def say_urgent(progress: Progress) -> str:
    return wording.swedish(Fact.of("urgent.ahead", subject=progress.urgent_ahead)) if progress.urgent_ahead else ""


def say_edition(state: EditionState) -> str:
    """One day's edition as Idag and the edition's page say it."""
    fact = state.fact
    if state.key == "draft" and state.verdict is not None:
        fact = Fact.of("edition.draft", reason=state.verdict.reason)
    said = wording.swedish(fact) + (wording.swedish(state.tail) if state.tail is not None else "")
    if state.correction is not None:
        said = wording.swedish(Fact.of("edition.correction", revision=state.correction, state=said))
    return said


def entry_label(entry: Mapping[str, object]) -> str:
    """A ``history`` entry's label (the entries are the command's JSON objects)."""
    return say_label(label_from(str(entry["dispatch"]), str(entry["kind"]), str(entry["edition"]),
                                int(str(entry["revision"])), str(entry["subject"]), str(entry["created_by"] or "")))


# The events' ``state`` as console.js and other watchers read it before states were facts
# (kept: extended with ``run_state``, never renamed).
LEGACY_STATE = {RunState.QUEUED: "idle", RunState.SENDING: "running", RunState.WAITING_FOR_URGENT: "running",
                RunState.PAUSED_BY_RELAY: "running", RunState.STOPPING: "stopping", RunState.STOPPED: "stopped",
                RunState.DONE: "finished", RunState.INCOMPLETE: "incomplete", RunState.FAILED: "failed"}


def progress_in_swedish(progress: Progress, zone: tzinfo, now: datetime) -> dict[str, Any]:
    """A send's progress as the run page's script and Idag read it: counts, and every sentence in Swedish."""
    error = progress.error
    return {
        "dispatch": progress.name, "state": LEGACY_STATE[progress.state], "run_state": progress.state.value,
        "final": progress.final, "here": progress.here, "state_sv": say_state(progress.state),
        "label": say_label(progress.label),
        "counts": dict(progress.counts), "total": progress.total, "sent": progress.accepted, "waiting": progress.waiting,
        "rate_per_minute": progress.rate_per_minute, "eta_seconds": progress.seconds_left,
        "rate_sv": f"{progress.rate_per_minute} per minut" if progress.rate_per_minute is not None else NOTHING,
        "eta_sv": say_time_left(progress, zone, now),
        "error": say_fact(error), "error_detail": str(error.params.get("detail", "")) if error else "",
        "relay_sv": say_relay(progress, zone), "held_sv": say_held_elsewhere(progress, zone),
        "urgent_sv": say_urgent(progress), "relay_permanent": progress.relay_permanent,
        "held_count": progress.held_by_relay, "held_elsewhere": progress.held_elsewhere,
        "held_until": f"{progress.held_until.astimezone(zone):%H:%M:%S}" if progress.held_until else None,
        "next_attempt": f"{progress.next_attempt.astimezone(zone):%H:%M}" if progress.next_attempt else None,
        "subject": progress.subject, "started_by": progress.started_by,
    }


def say_time_left(progress: Progress, zone: tzinfo, now: datetime) -> str:
    """"cirka 3 minuter (klart cirka 14:05)" while it sends at a rate; NOTHING otherwise (waiting for an
    urgent message or for the relay, nothing is estimated)."""
    if progress.seconds_left is None:
        return NOTHING
    done = now.astimezone(zone) + timedelta(seconds=progress.seconds_left)
    return f"cirka {say_duration(progress.seconds_left)} (klart cirka {done:%H:%M})"

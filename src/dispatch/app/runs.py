"""Sends started from the console, run inside the process that serves it (``dispatch web``,
or ``serve`` hosting the console): started, watched, stopped and resumed there.

A run is the same ``send`` the command line makes, in a thread of its own with a stop
event: stopping claims nothing more, and the messages in flight finish and are recorded.
What a watcher sees is read from the ledger (the counts ``status --json`` gives), so
everyone watching sees the same numbers, whichever process sends, as a values.Progress with an
explicit state for each front door to word.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from dispatch import wording
from dispatch.app.application import App, Session
from dispatch.app.control import decide_now, test_made_at
from dispatch.app.editions import Prepared, prepare_edition
from dispatch.app.labels import label_from, label_of
from dispatch.app.reading import read_edition
from dispatch.app.sending import send, send_plan
from dispatch.app.wiring import secrets_ready
from dispatch.delivery.pipeline import Result, StoppableClock, node_name
from dispatch.errors import DispatchError, InputError, Problem
from dispatch.ledger import DispatchRecord, Ledger
from dispatch.values import DispatchKind, DispatchLabel, Fact, Progress, RunState, SendPlan

LINGER = timedelta(minutes=10)  # as the command line: stay for due retries, then leave them to serve


@dataclass(frozen=True)
class Recipe:
    """How to prepare a dispatch's content again (to start, resume or retry it).

    A test send ("Skicka test till mig") goes ``to`` the person who asked, and is named after the
    moment it was first made (``made_at``): prepared again for that moment, a retry is the same
    dispatch, not a new test."""

    day: date | None
    file: Path | None = None
    urgent: bool = False
    to: tuple[str, ...] = ()
    made_at: datetime | None = None

    def prepare(self, s: Session, now: datetime) -> Prepared:
        edition = read_edition(s, self.day, self.file, now, urgent=self.urgent)
        if self.to:
            return prepare_edition(s, edition, self.made_at or now, to=self.to)
        return prepare_edition(s, edition, now)


@dataclass
class Run:
    name: str
    subject: str
    recipe: Recipe
    started_by: str
    started_at: datetime
    plan: SendPlan
    label: DispatchLabel
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    # SENDING, then STOPPING, STOPPED, DONE, INCOMPLETE or FAILED (waiting for an urgent message
    # or for the relay is read from the ledger: see Runs.progress)
    state: RunState = RunState.SENDING
    error: Fact | None = None
    result: Result | None = None
    thread: threading.Thread | None = None
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120))
    # The rate measured before the send gave way to an urgent message: said again when it goes on,
    # until new samples span long enough (those of the wait would say a rate near 0).
    rate_before_wait: float | None = None
    # The relay is not taking messages (the session's trouble, not a recipient's), from the
    # pause until a message goes through again; ``relay_permanent``: someone must fix it.
    relay_paused: bool = False
    relay_permanent: bool = False
    owner: str = field(default_factory=node_name)  # the run's leases in the ledger are held under this name


@dataclass(frozen=True)
class Confirmation:
    """What the operator confirms before a send: what, to whom, how many, how."""

    name: str
    subject: str
    lists: tuple[str, ...]
    recipients: int  # who would get it now
    already: int  # already accepted earlier
    plan: SendPlan
    relay: str
    reason: Fact | None  # why it may go (the gate's verdict), or None for an urgent message
    label: DispatchLabel | None = None


def confirm(s: Session, recipe: Recipe, now: datetime) -> tuple[Confirmation, Prepared]:
    """Prepare and decide as the send would (change control included); raises if it may not go."""
    settings = s.settings
    ready = recipe.prepare(s, now)
    secrets_ready(settings)
    decision = decide_now(s, ready, now)
    transport = settings.transport
    relay = str(transport.path) if transport.kind == "maildir" else f"{transport.host}:{transport.port}"
    label = label_from(decision.name, decision.kind, decision.edition_date.isoformat(), decision.revision,
                       ready.rendered.subject, "")
    return Confirmation(decision.name, ready.rendered.subject, ready.lists, decision.to_send, decision.already_accepted,
                        send_plan(decision.to_send, transport, decision.already_accepted), relay,
                        decision.verdict.reason if decision.verdict else None, label), ready


class WakeableClock(StoppableClock):
    """A stopped send's clock (its waits end at once on stop), whose wait for the next retry
    also ends when an operator asks to try again now."""

    def __init__(self, stop: threading.Event, wake: threading.Event) -> None:
        super().__init__(stop)
        self.wake = wake

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and not self.wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.stop.wait(min(0.2, remaining))
        self.wake.clear()


class Runs:
    """The runs of this process, by dispatch name (one at a time per dispatch)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def start(self, recipe: Recipe, by: str, now: datetime, *, expected: str | None = None) -> Run:
        """Start the send (or resume it). ``expected``: the dispatch the operator confirmed;
        if the content now makes another, nothing is started (they confirmed something else)."""
        with self.app.session() as s:
            confirmation, ready = confirm(s, recipe, now)
        if expected is not None and confirmation.name != expected:
            raise InputError([Problem.of(confirmation.name, 0, "send.confirmation_outdated", expected=expected,
                                         name=confirmation.name)])
        with self._lock:
            current = self._runs.get(confirmation.name)
            if current is not None and current.state in (RunState.SENDING, RunState.STOPPING):
                return current  # a second click, or a second operator: one run, watched by both
            if confirmation.label is None:  # confirm labels what it confirms (not an assert: gone under -O)
                raise DispatchError(f"{confirmation.name}: the confirmation has no label to show the run by")
            run = Run(confirmation.name, confirmation.subject, recipe, by, now, confirmation.plan, confirmation.label)
            self._runs[run.name] = run
        if current is not None:
            # The earlier run of this process has ended (a failed one could not give its leases
            # back while the ledger was down): its rows are free now, not after lease_seconds.
            with self.app.session() as s:
                give_back(s, current.owner)
        run.thread = threading.Thread(target=self._send, args=(run, ready), name=f"send {run.name}", daemon=True)
        run.thread.start()
        return run

    def _send(self, run: Run, ready: Prepared) -> None:
        def paused(_reason: str, permanent: bool, _until: datetime) -> None:
            run.relay_paused, run.relay_permanent = True, permanent

        def went_through(_count: int) -> None:
            run.relay_paused, run.relay_permanent = False, False

        try:
            with self.app.session() as s:
                run.result = send(s, ready, WakeableClock(run.stop, run.wake), created_by=run.started_by,
                                  progress=went_through, linger=LINGER, stop=run.stop, by_hand=True, on_pause=paused,
                                  owner=run.owner)
            if run.result.session_error:  # it ended with the relay still in trouble
                run.relay_paused, run.relay_permanent = True, run.result.session_permanent
        except DispatchError as exc:
            run.state, run.error = RunState.FAILED, Fact.of("run.failed", detail=str(exc))
            return
        except Exception as exc:  # a bug must not take the console with it; it is shown and logged
            run.state, run.error = RunState.FAILED, Fact.of("run.failed", detail=f"{type(exc).__name__}: {exc}")
            raise
        if run.stop.is_set():
            run.state = RunState.STOPPED
        else:
            run.state = RunState.DONE if run.result.complete else RunState.INCOMPLETE
            if run.result.revoked:
                run.state, run.error = RunState.STOPPED, Fact.of("run.revoked")

    def wake(self, name: str) -> bool:
        """End the running send's wait for its next retry now ("Försök igen nu"); False when
        no send of it runs here."""
        run = self._runs.get(name)
        if run is None or run.state not in (RunState.SENDING, RunState.STOPPING):
            return False
        run.wake.set()
        return True

    def stop(self, name: str) -> Run | None:
        run = self._runs.get(name)
        if run is not None and run.state is RunState.SENDING:
            run.state = RunState.STOPPING
            run.stop.set()
        return run

    def stop_all(self, timeout: float = 20) -> None:
        """Stop every run of this process and wait for them to record what was in flight."""
        for name in list(self._runs):
            self.stop(name)
        for name in list(self._runs):
            self.wait(name, timeout)

    def get(self, name: str) -> Run | None:
        return self._runs.get(name)

    def wait(self, name: str, timeout: float) -> bool:
        run = self._runs.get(name)
        if run is None or run.thread is None:
            return True
        run.thread.join(timeout)
        return not run.thread.is_alive()

    def progress(self, ledger: Ledger, name: str, now: datetime | None = None) -> Progress | None:
        """The dispatch's counts from the ledger, and this process's run of it if any: its state,
        rate (messages accepted per minute, over the last 30 s) and the time left. ``now``:
        the moment an urgent message is looked for (default: the wall clock)."""
        record = ledger.find_dispatch(name)
        run = self._runs.get(name)
        if record is None and run is None:
            return None
        counts = ledger.counts(record.id) if record else {}
        total = sum(counts.values())
        sent = counts.get("sent", 0)
        waiting = counts.get("pending", 0) + counts.get("deferred", 0) + counts.get("unknown", 0)
        label = label_of(record) if record is not None else run.label if run is not None else None
        kind = label.kind if label is not None else DispatchKind.EDITION
        running = run is not None and run.state in (RunState.SENDING, RunState.STOPPING)
        # A send elsewhere (serve, another node) records the relay's trouble with those it held back.
        held = ledger.held_by_relay(record.id) if record is not None and counts.get("deferred", 0) else None
        # Recipients another run holds (a node, serve, or a run that failed): why they wait, and until when.
        elsewhere, _, until = (ledger.others_leases_end(record.id, run.owner if run is not None and running else "")
                               if record is not None and waiting else (0, None, None))
        next_due = ledger.next_due(record.id) if record is not None and counts.get("deferred", 0) else None
        # Asked of the ledger on every look (the run page's events, Idag's poll): a send here or
        # elsewhere that holds recipients gives way to an urgent message while one is due.
        now = now or datetime.now(self.settings.timezone)
        sending_elsewhere = bool(record is not None and not running and waiting and record.finished_at is None
                                 and elsewhere > 0 and until is not None and until > now)
        urgent = (ledger.urgent_ahead(now)
                  if (running or sending_elsewhere) and waiting and kind is not DispatchKind.URGENT else None)
        # Nothing left to send now, only recipients the relay turned away, waiting for their retry:
        # the run idles until then (a one-recipient test with the relay down is never "relay paused").
        only_retries = held is not None and not counts.get("pending", 0)
        state = self._state(run, record is not None and record.finished_at is not None, waiting, counts.get("failed", 0),
                            urgent, held is not None, sending_elsewhere, only_retries)
        rate = seconds_left = None
        if run is not None and state is RunState.WAITING_FOR_URGENT:
            # No rate and no time left while it waits; the rate it had is kept for when it goes on.
            moment = time.monotonic()
            transport = self.settings.transport
            before = sending_rate(run.samples, moment, transport.rate_per_minute * transport.recipients_per_message)
            run.rate_before_wait = before if before is not None else run.rate_before_wait
            run.samples.clear()
        elif state is RunState.SENDING and run is not None:
            moment = time.monotonic()
            run.samples.append((moment, sent))
            transport = self.settings.transport
            per_minute = sending_rate(run.samples, moment, transport.rate_per_minute * transport.recipients_per_message)
            if per_minute is None:
                per_minute = run.rate_before_wait  # just back from a wait: the rate before it, until measured again
            else:
                run.rate_before_wait = None
            if per_minute is not None:
                rate = round(per_minute)
                seconds_left = round(waiting / per_minute * 60) if per_minute > 0 and waiting else None
        trouble = held[0] if held else None
        return Progress(
            name=name, kind=kind, state=state, total=total, accepted=sent, waiting=waiting,
            failed=counts.get("failed", 0), rate_per_minute=rate, seconds_left=seconds_left, trouble=trouble,
            next_try=next_due if trouble is not None else None, urgent_ahead=urgent,
            started_by=run.started_by if run else (record.created_by if record else ""), error=run.error if run else None,
            label=label, subject=record.subject if record else (run.subject if run else ""), counts=dict(counts),
            plan=run.plan if run else None, held_by_relay=held[1] if held else 0, held_elsewhere=elsewhere,
            held_until=until, next_attempt=next_due, here=running,
            relay_permanent=(run.relay_permanent if run is not None and run.relay_paused
                             else trouble.permanent if trouble is not None else False))

    def test_outcome(self, ledger: Ledger, name: str, now: datetime) -> Fact | None:
        """How a test send ("Skicka test till mig") went at its first attempt, as a fact to say:
        ``test.sent``; ``test.deferred`` (the relay did not take it, or the server asked to try
        later: the run tries again by itself) with the reason as the ledger records it;
        ``test.failed`` (the server refused the address) with its reply; ``run.failed``. None while
        the first attempt is not yet made."""
        run = self._runs.get(name)
        if run is not None and run.state is RunState.FAILED:
            return run.error or Fact.of("run.failed", detail="")
        progress = self.progress(ledger, name, now)
        record = ledger.find_dispatch(name)
        if progress is None or record is None:
            return None
        rows = ledger.deliveries(record.id)
        to = ", ".join(row.address for row in rows)
        if progress.total and progress.accepted == progress.total:
            return Fact.of("test.sent", email=to)
        refused = [row for row in rows if row.state.value == "failed"]
        if refused:
            return Fact.of("test.failed", email=to, reply=refused[0].reply)
        if progress.trouble is not None:
            return Fact.of("test.deferred", email=to, host=progress.trouble.host,
                           reason=wording.relay_cause(progress.trouble.cause))
        later = [row for row in rows if row.state.value in ("deferred", "unknown") and row.attempts]
        if later:
            return Fact.of("test.deferred_reply", email=to, reply=later[0].reply)
        return None

    def today(self, ledger: Ledger, now: datetime) -> tuple[list[Progress], list[Progress]]:
        """For Idag, from one look at the ledger: every send under way, of any kind (the dispatches
        of today, in the office's time, that are not finished, and those a run of this process
        sends), and today's urgent messages, the latest first; each as its page says it."""
        records = self._of_today(ledger, now)
        names = [record.name for record in records if record.finished_at is None]
        names += [name for name, run in list(self._runs.items()) if run.state in (RunState.SENDING, RunState.STOPPING)]
        urgent = [record.name for record in reversed(records) if record.kind_of is DispatchKind.URGENT]
        found = {name: self.progress(ledger, name, now) for name in dict.fromkeys(names + urgent)}
        under_way = [p for name in dict.fromkeys(names) if (p := found[name]) is not None and (p.waiting or not p.final)]
        return under_way, [p for name in urgent if (p := found[name]) is not None]

    def _of_today(self, ledger: Ledger, now: datetime) -> list[DispatchRecord]:
        zone = self.settings.timezone
        today = now.astimezone(zone).date()
        # A test or a correction of an earlier day's edition may be sent today: a week back is plenty.
        return [record for record in ledger.list_dispatches(since=today - timedelta(days=7))
                if record.created_at.astimezone(zone).date() == today]

    @staticmethod
    def _state(run: Run | None, finished: bool, waiting: int, failed: int, urgent: str | None,
               relay_trouble: bool, sending_elsewhere: bool = False, only_retries: bool = False) -> RunState:
        if run is None or (sending_elsewhere and run.state not in (RunState.SENDING, RunState.STOPPING)):
            # No send of it runs here: what the ledger says (another run holding recipients sends it).
            if sending_elsewhere:
                return RunState.WAITING_FOR_URGENT if urgent is not None else RunState.SENDING
            if waiting and not finished:
                return RunState.QUEUED
            return RunState.INCOMPLETE if failed else RunState.DONE
        if run.state is RunState.SENDING:
            if urgent is not None:
                return RunState.WAITING_FOR_URGENT  # the sender gives way to it (delivery/sender.py)
            if relay_trouble and (run.relay_paused or only_retries):
                return RunState.PAUSED_BY_RELAY
        return run.state



MEASURED_OVER = 5.0  # seconds of samples before a rate is said: the first message goes at once, the next waits


def sending_rate(samples: Iterable[tuple[float, int]], moment: float, limit: float) -> float | None:
    """Recipients accepted per minute over the last 30 s of ``samples`` (monotonic moment, accepted so
    far), or None until they span MEASURED_OVER seconds (a page opened mid-send says no rate rather
    than "0 per minut"). Never above ``limit`` (the relay's rate limit in recipients per minute;
    0 = none): a rate-limited send starts with a message at once, so its first seconds overstate it."""
    recent = [sample for sample in samples if moment - sample[0] <= 30]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < MEASURED_OVER:
        return None
    (start, first), (end, last) = recent[0], recent[-1]
    per_minute = (last - first) / (end - start) * 60
    return min(per_minute, limit) if limit > 0 else per_minute


def recipe_for(s: Session, name: str) -> Recipe | None:
    """How to prepare an existing dispatch's content again (to resume or retry it)."""
    settings, ledger = s.settings, s.ledger
    record = ledger.find_dispatch(name)
    if record is None:
        return None
    if record.kind_of is DispatchKind.TEST:
        # A test goes again to whom it went, as the same dispatch (named after the moment it was
        # made); before this it was left out here, so nothing could retry a test that failed.
        made_at = test_made_at(record.kind)
        to = tuple(dict.fromkeys(d.address for d in ledger.deliveries(record.id)))
        return Recipe(record.edition_date, to=to, made_at=made_at) if made_at is not None and to else None
    if record.kind_of is DispatchKind.URGENT:
        return Recipe(None, settings.path.parent / record.source, urgent=True)
    return Recipe(record.edition_date)


def give_back(s: Session, owner: str) -> int:
    """Free every lease held under ``owner`` (a run of this process that has ended)."""
    ledger = s.ledger
    return ledger.release(owner)


def retry_waiting_now(s: Session, name: str, now: datetime) -> int:
    """The dispatch's recipients waiting for a later attempt (deferred, unknown) become due now
    ("Försök igen nu")."""
    ledger = s.ledger
    record = ledger.find_dispatch(name)
    return ledger.retry_waiting_now(record.id, now) if record else 0

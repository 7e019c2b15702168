"""The scheduled runs: what each of serve's jobs does, decided from the ledger.

APScheduler only says *when* (app.service); the ledger says *whether*. A job that fires looks
in the ledger for the day's dispatch and creates it only if it is not there, so a double
fire, a restart or a second service on the same ledger cannot send twice (the pipeline's
leases split the recipients between services that fire together). On start-up (and on
SIGHUP) ``reconcile`` compares today's schedule with the ledger and brings a missed run
forward if its deadline has not passed, or alerts.

Every decision takes ``now`` (the pure ones live in ``timetable``), so tests move time
instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from dispatch.app import notify
from dispatch.app.application import App
from dispatch.app.control import scheduled_edition
from dispatch.app.copies import PendingCopies
from dispatch.app.directory import SyncOutcome, read_since, sync
from dispatch.app.editions import lists_report, prepare_edition
from dispatch.app.eventlog import event
from dispatch.app.runs import recipe_for
from dispatch.app.sending import mail_notice, send
from dispatch.app.timetable import (
    Action,
    DailyCronTrigger,
    Due,
    approval_moment,
    approval_trigger,
    due_runs,
    edition_dispatches,
    grace_seconds,
    latest_occurrence,
    next_occurrence,
    send_trigger,
)
from dispatch.app.timetable import utc as _utc
from dispatch.app.wiring import open_transport
from dispatch.config import Schedule, Settings, secret_problems
from dispatch.delivery.pipeline import Clock, Result, StoppableClock
from dispatch.errors import DispatchError, InputError, Problem, TransportError, display_path
from dispatch.ledger import Ledger, dispatch_name
from dispatch.models import Edition
from dispatch.publishing.intranet import PublishError
from dispatch.recipients.snapshots import Change, SnapshotState
from dispatch.values import DispatchKind
from dispatch.wording import english, swedish_of

PRESYNC = timedelta(minutes=30)  # directory lists are synced this long before each slot


@dataclass(frozen=True)
class Job:
    """One scheduler job of a schedule: ``send`` at the cron time, or ``approval`` at the
    approval deadline (an alert when nothing is approved), with its trigger and how late
    it may still run."""

    kind: str
    schedule: str
    trigger: DailyCronTrigger
    grace_seconds: int

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.schedule}"


def schedule_jobs(settings: Settings, now: datetime) -> list[Job]:
    """Every schedule's jobs, with the triggers and grace times ``timetable`` decides."""
    zone = settings.timezone
    jobs = []
    for schedule in settings.schedules:
        jobs.append(Job("send", schedule.name, send_trigger(schedule, zone), grace_seconds(schedule, zone, now)))
        trigger = approval_trigger(schedule, zone)
        if trigger is not None:
            jobs.append(Job("approval", schedule.name, trigger, 1800))
    return jobs


def reload_problems(settings: Settings) -> list[Problem]:
    """What would stop reloaded settings from working that loading them does not see: a list
    a schedule names that does not exist (or includes in a cycle), a secret the environment
    lacks."""
    report = lists_report(settings, ())
    problems = report.problems if report.resolution is None else []
    return problems + secret_problems(settings)


class ServeClock(StoppableClock):
    """The wall clock, whose sleep (waiting for retries) ends at once when the service stops."""


class Service:
    """The jobs and the start-up reconciliation; no APScheduler in here, so tests call it."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, stop: threading.Event | None = None,
                 app: App | None = None) -> None:
        """``app``: the process's App when it has one already (shared with the console it
        hosts: one engine per process)."""
        self.stop = stop or threading.Event()
        self.clock = clock or ServeClock(self.stop)
        self.settings = settings
        self.app = app or App(settings, self.clock)  # one engine for every job
        self.ledger = Ledger.over(self.app.database())
        self.alerted: set[tuple[str, ...]] = set()
        self.lock = threading.Lock()
        self.sending: set[str] = set()  # schedules whose send job runs in this process now
        self.held: dict[str, date] = {}  # schedules whose send found nothing approved, by edition day
        self.undelivered: dict[tuple[str, ...], notify.Alert] = {}  # alerts the relay did not take (yet)
        self.copies = PendingCopies()  # intranet copies that failed, retried by the watch job
        self.presynced: set[tuple[str, datetime]] = set()  # (schedule, slot) whose lists were synced before it
        self.resending: set[str] = set()  # urgent messages and tests the watch sends again now

    def close(self) -> None:
        self.app.close()

    def use(self, settings: Settings) -> None:
        """Switch to reloaded settings; a running job finishes with the settings it started with.

        Raises DispatchError, having changed nothing, for settings that cannot be applied: a
        schedule's list that does not exist, a secret that is not there, a new ledger that
        cannot be opened (the service goes on with the old ones; a reload is not a restart)."""
        problems = reload_problems(settings)
        if problems:
            raise InputError(problems)
        # Opened outside the lock: connecting to an unreachable server takes a while, and
        # the jobs must not wait for it.
        fresh = self.app.reconfigured(settings)
        database = fresh.database()
        with self.lock:
            old = self.app if database is not self.app.database() else None
            self.app, self.settings, self.ledger = fresh, settings, Ledger.over(database)
        if old is not None:
            old.close()

    def _schedule(self, name: str) -> Schedule:
        for schedule in self.settings.schedules:
            if schedule.name == name:
                return schedule
        raise DispatchError(f"no schedule named {name!r} in {display_path(self.settings.path)}")

    def _scheduled_edition(self, day: date, now: datetime) -> tuple[Edition | None, str, str]:
        with self.app.session() as s:
            return scheduled_edition(s, day, now)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.settings.timezone)

    # -- jobs ---------------------------------------------------------------

    def run_job(self, kind: str, name: str) -> None:
        """What APScheduler calls. Never raises: a failing job is logged and alerted, and the
        service keeps running."""
        now = self.clock.now()
        try:
            if kind == "send":
                with self.lock:
                    self.sending.add(name)
                try:
                    self.fire(name, now)
                finally:
                    with self.lock:
                        self.sending.discard(name)
            else:
                self.check_approval(name, now)
        except Exception as exc:
            event("job_failed", logging.ERROR, job=f"{kind}:{name}", exc_info=True)
            self.alert(notify.job_failed(f"{kind}:{name}", exc, self._local(now)), now)

    def sync_lists(self, now: datetime) -> list[SyncOutcome]:
        """The sync job: every directory list read from its directory into a snapshot (the
        shrink guard deciding). A held or failed sync alerts `notify` once per snapshot: the
        ledger remembers which it alerted about, across restarts and services on one ledger,
        and a sync that finds the same held change (or the same failure) again keeps its
        snapshot. Raises DispatchError for list files that cannot be read (the job logs it)."""
        with self.app.session() as s:
            outcomes = sync(s, (), now)
        zone = self.settings.timezone
        for outcome in outcomes:
            spec, snapshot = outcome.spec, outcome.snapshot
            event("list_synced", logging.INFO if outcome.state is SnapshotState.ACCEPTED else logging.WARNING,
                  list=spec.name, state=snapshot.state.value, snapshot=snapshot.ref, members=snapshot.members,
                  new=outcome.new, reason=english(snapshot.reason) if snapshot.reason else "")
            if outcome.state is SnapshotState.ACCEPTED or not self.ledger.mark_alerted(snapshot.id, now):
                continue
            if outcome.state is SnapshotState.FAILED and self._failing_since_alerted(spec.name, snapshot.id):
                continue  # one alert while a directory keeps failing, whatever it says each time
            if outcome.state is SnapshotState.HELD:
                alert = notify.list_held(spec.name, spec.display_name, snapshot, outcome.accepted,
                                         outcome.change or Change((), ()), zone)
            else:
                alert = notify.list_sync_failed(spec.name, spec.display_name, snapshot, outcome.accepted, zone)
            self.alert(alert, now)
        return outcomes

    def _failing_since_alerted(self, list_name: str, snapshot_id: int) -> bool:
        """The snapshot before this failed one failed too, `notify` heard of it, and no sync has
        read the directory since (a directory that came back and failed again is told again)."""
        ledger = self.ledger
        earlier = [x for x in ledger.snapshots(list_name, 2) if x.id != snapshot_id]
        if not earlier or earlier[0].state is not SnapshotState.FAILED or earlier[0].alerted_at is None:
            return False
        return not read_since(earlier[0], ledger.last_accepted(list_name), ledger.pending_held(list_name))

    def presync_due(self, now: datetime) -> bool:
        """True once per slot in the 30 minutes before it: directory lists are synced then, so a
        send goes to the directory as it is (or a held change is seen in time to accept it)."""
        for schedule in self.settings.schedules:
            occurrence = next_occurrence(schedule, self.settings.timezone, now)
            if occurrence is None:
                continue
            at = _utc(occurrence.at)
            if at - PRESYNC <= _utc(now) < at:
                with self.lock:
                    if (schedule.name, at) in self.presynced:
                        continue
                    self.presynced.add((schedule.name, at))
                return True
        return False

    def orphaned(self, now: datetime) -> list[str]:
        """Schedules to resume now because another node died holding part of their send.

        A node that finds nothing left to claim ends its run, even while another node still
        holds leased rows; if that node then dies, its rows come back to the queue when the
        leases expire, and this check (run every few seconds by ``watch``) brings them to a
        live node. A send running in this process claims them itself; that is left alone.
        """
        settings = self.settings
        found = []
        for schedule in settings.schedules:
            with self.lock:
                if schedule.name in self.sending:
                    continue
            occurrence = latest_occurrence(schedule, settings.timezone, now)
            if occurrence is None or _utc(now) > _utc(occurrence.deadline):
                continue
            for record in edition_dispatches(self.ledger, occurrence.day):
                if record.finished_at is not None:
                    continue
                if self.ledger.orphaned(record.id, now):
                    event("lease_expired", logging.WARNING, dispatch=record.name, schedule=schedule.name)
                    found.append(schedule.name)
                    break
                if self.ledger.due_unleased(record.id, now):
                    # Nobody is sending it (a run ended early, or a command was stopped) and
                    # recipients are due: the service owns the day's dispatch until its deadline.
                    event("resuming", dispatch=record.name, schedule=schedule.name)
                    found.append(schedule.name)
                    break
        return found

    def strays(self, now: datetime) -> list[str]:
        """Urgent messages and tests to retry now: not finished, recipients tried and due again that
        no run holds (the relay was down when the console sent them, and the console's run has
        ended or the console was restarted), not stopped by a person. The schedules' own editions are ``orphaned``'s; these have no
        schedule, so without this nothing but a person would ever retry them."""
        window = timedelta(hours=self.settings.transport.retry_window_hours)
        found = []
        for record in self.ledger.list_dispatches():  # by when it was sent: a test may be of any day's edition
            if record.finished_at is not None or record.kind_of is DispatchKind.EDITION:
                continue
            if _utc(record.created_at) < _utc(now) - window:
                continue  # past the retry window: the pipeline fails what still waits
            with self.lock:
                if record.name in self.resending:
                    continue
            if self._stopped_by_a_person(record.name):
                continue  # "Stoppa" means stop: a person resumes it, not the watch
            if self.ledger.due_unleased(record.id, now) and self._retry_due(record.id, now):
                found.append(record.name)
        return found

    def _stopped_by_a_person(self, name: str) -> bool:
        """Whether the last thing a person did to the dispatch was to stop it (the audit log)."""
        for entry in self.ledger.audit_log(20, target=name):
            if entry.action in ("stop", "resume", "retry_now", "send"):
                return entry.action == "stop"
        return False

    def _retry_due(self, dispatch_id: int, now: datetime) -> bool:
        """Recipients deferred (the relay held them back or asked to try later) or unknown, due for
        another attempt: a retry. Pending ones (a send interrupted on purpose, on the command line)
        are resumed by a person."""
        return any(row.state.value in ("deferred", "unknown")
                   and (row.next_attempt_at is None or _utc(row.next_attempt_at) <= _utc(now))
                   for row in self.ledger.deliveries(dispatch_id))

    def resend(self, name: str) -> Result | None:
        """One pass of a stray dispatch (see ``strays``), as its first send made it: what the relay
        does not take now waits for the next watch. Never raises (a job)."""
        with self.lock:
            if name in self.resending:
                return None
            self.resending.add(name)
        try:
            now = self.clock.now()
            with self.app.session() as s:
                record = s.ledger.find_dispatch(name)
                recipe = recipe_for(s, name)
                if record is None or recipe is None:
                    return None
                ready = recipe.prepare(s, now)
                event("resending", dispatch=name)
                result = send(s, ready, self.clock, created_by=record.created_by, stop=self.stop)
            event("sent" if result.complete else "incomplete", logging.INFO if result.complete else logging.WARNING,
                  dispatch=result.dispatch, counts=result.counts, sent_now=result.sent_now)
            return result
        except Exception as exc:
            event("resend_failed", logging.ERROR, dispatch=name, error=str(exc))
            return None
        finally:
            with self.lock:
                self.resending.discard(name)

    def approved_late(self, now: datetime) -> list[str]:
        """Schedules held at their slot for want of approval whose edition is now approved
        (before the deadline): the approval is the go-ahead, nobody has to send by hand."""
        ready = []
        with self.lock:
            held = dict(self.held)
        for name, day in held.items():
            try:
                occurrence = latest_occurrence(self._schedule(name), self.settings.timezone, now)
            except DispatchError:
                occurrence = None  # the schedule was removed by a reload
            if occurrence is None or occurrence.day != day or _utc(now) > _utc(occurrence.deadline) \
                    or edition_dispatches(self.ledger, day):
                with self.lock:
                    self.held.pop(name, None)
                continue
            if self._scheduled_edition(day, now)[0] is not None:
                with self.lock:
                    self.held.pop(name, None)
                event("approved_late", schedule=name, edition=day.isoformat())
                ready.append(name)
        return ready

    def fire(self, name: str, now: datetime) -> Result | None:
        """The schedule's send at ``now``: send the day's approved edition unless the ledger
        already has its dispatch (finished), the deadline has passed, or nothing is approved."""
        if self.stop.is_set():
            return None
        app, settings, schedule = self.app, self.settings, self._schedule(name)
        occurrence = latest_occurrence(schedule, settings.timezone, now)
        if occurrence is None:
            event("no_run_due", schedule=name)
            return None
        day, at = occurrence.day, self._local(occurrence.at)
        existing = edition_dispatches(self.ledger, day)
        unfinished = [d for d in existing if d.finished_at is None]
        if existing and not unfinished:
            event("already_sent", dispatch=existing[-1].name, schedule=name)
            return None
        if _utc(now) > _utc(occurrence.deadline):
            self._too_late(Due(occurrence, Action.INCOMPLETE if unfinished else Action.MISSED,
                               unfinished[0] if unfinished else None), now)
            return None
        edition, reason, why = self._scheduled_edition(day, now)
        if edition is None:
            event("not_approved", logging.WARNING, schedule=name, edition=day.isoformat(), reason=why)
            with self.lock:
                self.held[name] = day  # the watch sends it if it is approved before the deadline
            self.alert(notify.nothing_sent_unapproved(name, day, at, reason, self._local(occurrence.deadline)), now)
            return None
        if unfinished and all(d.revision != edition.revision for d in unfinished):
            problem = (f"utskicket {unfinished[0].name} avbröts och rapportfilen har nu revision "
                       f"{edition.revision}; skicka manuellt")
            self.alert(notify.not_sendable(name, day, at, [problem]), now)
            return None
        try:
            with app.session() as s:
                ready = prepare_edition(s, edition, now, default_lists=schedule.lists)
        except InputError as exc:
            event("not_sendable", logging.ERROR, schedule=name, edition=day.isoformat(), problems=len(exc.problems))
            self.alert(notify.not_sendable(name, day, at, [f"{p.where}: {swedish_of(p.fact)}" for p in exc.problems]), now)
            return None
        event("sending", schedule=name, edition=day.isoformat(), recipients=len(ready.resolution.recipients),
              resume=bool(unfinished))
        linger = max(timedelta(0), _utc(occurrence.deadline) - _utc(now))  # retry deferred ones until the deadline
        deadline = self._local(occurrence.deadline)

        def paused(reason: str, permanent: bool, until: datetime) -> None:
            event("relay_paused", logging.WARNING if not permanent else logging.ERROR, schedule=name,
                  edition=day.isoformat(), reason=reason, until=self._local(until).isoformat(), permanent=permanent)
            if permanent:
                dispatch = dispatch_name(day, edition.revision, edition.kind)
                self.alert(notify.relay_refused(name, dispatch, reason, self._local(until), deadline), self.clock.now())

        def unpublished(error: PublishError) -> None:
            self.copies.add(edition, str(error))
            event("publish_failed", logging.ERROR, schedule=name, edition=day.isoformat(), error=str(error))
            self.alert(notify.publish_failed(name, day, str(error)), self.clock.now())

        try:
            with app.session() as s:
                result = send(s, ready, self.clock, created_by=f"dispatch serve ({name})",
                              linger=linger, stop=self.stop, on_pause=paused, on_publish_failed=unpublished)
        except InputError as exc:  # e.g. the relay's password variable is not set
            event("not_sendable", logging.ERROR, schedule=name, edition=day.isoformat(), problems=len(exc.problems))
            self.alert(notify.not_sendable(name, day, at, [f"{p.where}: {swedish_of(p.fact)}" for p in exc.problems]), now)
            return None
        name_of_event = "sent" if result.complete else ("interrupted" if self.stop.is_set() else "incomplete")
        errors: dict[str, Any] = {"errors": " | ".join(result.errors)} if result.errors else {}
        if result.lease_lost_at is not None:  # this node was held up past its lease: another took over
            errors["lease_lost"] = result.lease_lost_at.isoformat()
        event(name_of_event, logging.INFO if result.complete else logging.WARNING, dispatch=result.dispatch,
              counts=result.counts, sent_now=result.sent_now, **errors)
        waiting = sum(result.counts.get(state, 0) for state in ("pending", "deferred", "unknown"))
        if waiting and not self.stop.is_set() and _utc(self.clock.now()) >= _utc(occurrence.deadline):
            record = self.ledger.find_dispatch(result.dispatch)
            if record is not None:
                self._too_late(Due(occurrence, Action.INCOMPLETE, record), self.clock.now(), reason=result.session_error)
        return result

    def check_approval(self, name: str, now: datetime) -> bool:
        """At the approval deadline: alert (once) if the next send has nothing approved; True then."""
        settings, schedule = self.settings, self._schedule(name)
        occurrence = next_occurrence(schedule, settings.timezone, now)
        moment = approval_moment(occurrence) if occurrence else None
        if occurrence is None or moment is None or not (_utc(moment) <= _utc(now) < _utc(occurrence.at)):
            return False  # no send follows this approval time (e.g. a day the schedule skips)
        day = occurrence.day
        if edition_dispatches(self.ledger, day):
            return False
        edition, reason, why = self._scheduled_edition(day, now)
        if edition is not None:
            event("approved", schedule=name, edition=day.isoformat())
            return False
        event("not_approved_yet", logging.WARNING, schedule=name, edition=day.isoformat(), reason=why)
        self.alert(notify.no_approved_edition(name, day, self._local(moment), self._local(occurrence.at), reason), now)
        return True

    def reconcile(self, now: datetime) -> list[Due]:
        """Start-up (and reload): alert what can no longer be done; return the runs to start now."""
        dues = due_runs(self.settings, self.ledger, now)
        for due in dues:
            if due.action is not Action.SEND:
                self._too_late(due, now)
        for schedule in self.settings.schedules:
            self.check_approval(schedule.name, now)  # started after the approval time, nothing approved
        return [due for due in dues if due.action is Action.SEND]

    def _too_late(self, due: Due, now: datetime, reason: str | None = None) -> None:
        occurrence, name = due.occurrence, due.occurrence.schedule.name
        deadline = self._local(occurrence.deadline)
        if due.action is Action.INCOMPLETE and due.dispatch is not None:
            counts = self.ledger.counts(due.dispatch.id)
            event("incomplete_after_deadline", logging.WARNING, dispatch=due.dispatch.name, counts=counts, schedule=name)
            self.alert(notify.incomplete(name, occurrence.day, due.dispatch.name, deadline, counts, reason), now)
            return
        event("missed", logging.WARNING, schedule=name, edition=occurrence.day.isoformat(),
              due=self._local(occurrence.at).isoformat(), deadline=deadline.isoformat())
        self.alert(notify.missed(name, occurrence.day, self._local(occurrence.at), deadline, self._local(now)), now)

    def alert(self, alert: notify.Alert, now: datetime) -> bool:
        """Mail ``notify`` once per subject of concern; a failure to alert is logged, never raised."""
        with self.lock:
            if alert.key in self.alerted:
                event("alert_already_sent", subject=alert.subject)
                return False
            self.alerted.add(alert.key)
            settings = self.settings
        if not settings.notify:
            event("alert_nobody_to_notify", logging.WARNING, subject=alert.subject)
            return False
        try:
            transport = open_transport(settings)
            refused = mail_notice(settings, transport, alert.subject, alert.body, now)
            if refused:
                raise TransportError(transport.endpoint, "alert refused for " + "; ".join(refused))
        except (DispatchError, OSError) as exc:
            with self.lock:
                # Kept for the watch job to try again: the relay that failed the report is
                # often the one the alert must go through, and it may come back.
                self.undelivered[alert.key] = alert
            event("alert_failed", logging.ERROR, subject=alert.subject, error=str(exc))
            return False
        with self.lock:
            self.undelivered.pop(alert.key, None)
        event("alert_sent", logging.WARNING, subject=alert.subject, to=",".join(settings.notify))
        return True

    def retry_alerts(self, now: datetime) -> int:
        """Send again the alerts that could not be delivered; returns how many went now."""
        with self.lock:
            waiting = list(self.undelivered.values())
            for alert in waiting:
                self.alerted.discard(alert.key)
        return sum(1 for alert in waiting if self.alert(alert, now))

    def grace_for(self, name: str, fire_time: datetime) -> int | None:
        """The send job's misfire grace for its firing at ``fire_time`` (None: no such schedule)."""
        try:
            schedule = self._schedule(name)
        except DispatchError:
            return None
        return grace_seconds(schedule, self.settings.timezone, fire_time)

    def missed_run(self, name: str, at: datetime) -> None:
        """APScheduler missed the send of ``name`` due ``at`` beyond its grace time."""
        try:
            schedule = self._schedule(name)
        except DispatchError:
            return
        occurrence = next_occurrence(schedule, self.settings.timezone, at)  # the firing of ``at``, its own deadline
        if occurrence is not None and not edition_dispatches(self.ledger, occurrence.day):
            self._too_late(Due(occurrence, Action.MISSED), self.clock.now())

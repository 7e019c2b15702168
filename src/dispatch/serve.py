"""The scheduler service (`dispatch serve`): each schedule's approved edition, on time, once.

APScheduler only says *when*; the ledger says *whether*. A job that fires looks in the
ledger for the day's dispatch and creates it only if it is not there, so a double fire,
a restart or a second service on the same ledger cannot send twice (the pipeline's
leases split the recipients between services that fire together). The job store is in
memory: on start-up (and on SIGHUP) ``due_runs`` compares today's schedule with the
ledger and brings a missed run forward if its deadline has not passed, or alerts.

Every decision takes ``now`` (the pure ones live in ``timetable``), so tests move time
instead of waiting.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from dispatch import alerts, app
from dispatch.config import Schedule, Settings, load_settings
from dispatch.edition import edition_path
from dispatch.errors import DispatchError, InputError, display_path
from dispatch.eventlog import configure, event
from dispatch.models import Edition
from dispatch.pipeline import Clock, Result, StoppableClock
from dispatch.timetable import (
    Action, Due, Occurrence, approval_moment, approval_trigger, check_schedules, deadline_of,
    due_runs, edition_dispatches, grace_seconds, latest_occurrence, next_occurrence, send_trigger,
)
from dispatch.timetable import utc as _utc

UTC = timezone.utc
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

__all__ = ["Service", "ServeClock", "due_runs", "install_jobs", "main"]


# -- what: the service -------------------------------------------------------------


class ServeClock(StoppableClock):
    """The wall clock, whose sleep (waiting for retries) ends at once when the service stops."""


class Service:
    """The jobs and the start-up reconciliation; no APScheduler in here, so tests call it."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.clock = clock or ServeClock(self.stop)
        self.settings = settings
        self.ledger = app.open_ledger(settings)
        self.alerted: set[tuple[str, ...]] = set()
        self.lock = threading.Lock()
        self.sending: set[str] = set()  # schedules whose send job runs in this process now
        self.held: dict[str, date] = {}  # schedules whose send found nothing approved, by edition day
        self.undelivered: dict[tuple[str, ...], alerts.Alert] = {}  # alerts the relay did not take (yet)

    def close(self) -> None:
        self.ledger.close()

    def use(self, settings: Settings) -> None:
        """Switch to reloaded settings; a running job finishes with the settings it started with."""
        with self.lock:
            old = self.ledger if settings.ledger_url != self.settings.ledger_url else None
            if old is not None:
                self.ledger = app.open_ledger(settings)
            self.settings = settings
        if old is not None:
            old.close()

    def _schedule(self, name: str) -> Schedule:
        for schedule in self.settings.schedules:
            if schedule.name == name:
                return schedule
        raise DispatchError(f"no schedule named {name!r} in {display_path(self.settings.path)}")

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
            self.alert(alerts.job_failed(f"{kind}:{name}", exc, self._local(now)), now)

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
            if self.approved_edition(day, now)[0] is not None:
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
        settings, schedule = self.settings, self._schedule(name)
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
        edition, reason, why = self.approved_edition(day, now)
        if edition is None:
            event("not_approved", logging.WARNING, schedule=name, edition=day.isoformat(), reason=why)
            with self.lock:
                self.held[name] = day  # the watch sends it if it is approved before the deadline
            self.alert(alerts.nothing_sent_unapproved(name, day, at, reason, self._local(occurrence.deadline)), now)
            return None
        if unfinished and all(d.revision != edition.revision for d in unfinished):
            problem = (f"utskicket {unfinished[0].name} avbröts och rapportfilen har nu revision "
                       f"{edition.revision}; skicka manuellt")
            self.alert(alerts.not_sendable(name, day, at, [problem]), now)
            return None
        try:
            ready = app.prepare_edition(settings, edition, now, default_lists=schedule.lists)
        except InputError as exc:
            event("not_sendable", logging.ERROR, schedule=name, edition=day.isoformat(), problems=len(exc.problems))
            self.alert(alerts.not_sendable(name, day, at, [str(p) for p in exc.problems]), now)
            return None
        event("sending", schedule=name, edition=day.isoformat(), recipients=len(ready.resolution.recipients),
              resume=bool(unfinished))
        linger = max(timedelta(0), _utc(occurrence.deadline) - _utc(now))  # retry deferred ones until the deadline
        deadline = self._local(occurrence.deadline)

        def paused(reason: str, permanent: bool, until: datetime) -> None:
            event("relay_paused", logging.WARNING if not permanent else logging.ERROR, schedule=name,
                  edition=day.isoformat(), reason=reason, until=self._local(until).isoformat(), permanent=permanent)
            if permanent:
                dispatch = app.dispatch_name(day, edition.revision, edition.kind)
                self.alert(alerts.relay_refused(name, dispatch, reason, self._local(until), deadline), self.clock.now())

        try:
            result = app.send(settings, ready, self.clock, created_by=f"dispatch serve ({name})",
                              linger=linger, stop=self.stop, on_pause=paused)
        except InputError as exc:  # e.g. the relay's password variable is not set
            event("not_sendable", logging.ERROR, schedule=name, edition=day.isoformat(), problems=len(exc.problems))
            self.alert(alerts.not_sendable(name, day, at, [str(p) for p in exc.problems]), now)
            return None
        name_of_event = "sent" if result.complete else ("interrupted" if self.stop.is_set() else "incomplete")
        event(name_of_event, logging.INFO if result.complete else logging.WARNING, dispatch=result.dispatch,
              counts=result.counts, sent_now=result.sent_now, **({"errors": " | ".join(result.errors)} if result.errors else {}))
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
        edition, reason, why = self.approved_edition(day, now)
        if edition is not None:
            event("approved", schedule=name, edition=day.isoformat())
            return False
        event("not_approved_yet", logging.WARNING, schedule=name, edition=day.isoformat(), reason=why)
        self.alert(alerts.no_approved_edition(name, day, self._local(moment), self._local(occurrence.at), reason), now)
        return True

    def approved_edition(self, day: date, now: datetime) -> tuple[Edition | None, str, str]:
        """The day's edition if it may go out on schedule, else None and why (Swedish for the
        alert mail, English for the log). The approval rule is app's, the same as for send."""
        path = edition_path(self.settings.reports_dir, day)
        if not path.exists():
            return None, f"filen {display_path(path)} finns inte", f"{display_path(path)} does not exist"
        try:
            edition = app.read_edition(self.settings, day, None, now)
            found = app.review(self.settings, self.ledger, edition, now)
        except InputError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            return None, "rapportfilen har fel: " + problems, "the edition has problems: " + problems
        if found.conflict is not None:
            return (None, "rapportfilen har ändrats sedan den skickades; en rättelse behöver 'revision' och 'correction'",
                    "; ".join(p.message for p in found.conflict.problems))
        assert found.verdict is not None
        if not found.verdict.sendable:
            return None, found.verdict.reason_sv, found.verdict.reason
        return edition, "", ""

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
            self.alert(alerts.incomplete(name, occurrence.day, due.dispatch.name, deadline, counts, reason), now)
            return
        event("missed", logging.WARNING, schedule=name, edition=occurrence.day.isoformat(),
              due=self._local(occurrence.at).isoformat(), deadline=deadline.isoformat())
        self.alert(alerts.missed(name, occurrence.day, self._local(occurrence.at), deadline, self._local(now)), now)

    def alert(self, alert: alerts.Alert, now: datetime) -> bool:
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
            transport = app.open_transport(settings)
            alerts.deliver(transport, app.envelope(settings).from_header, settings.sender.address,
                           settings.notify, alert, now.astimezone(settings.timezone))
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

    def on_scheduler_event(self, job_event: JobEvent) -> None:
        """APScheduler's own events: a run missed beyond its grace time, a run still going."""
        kind, _, name = job_event.job_id.partition(":")
        if job_event.code == EVENT_JOB_MISSED and kind == "send":
            at = job_event.scheduled_run_time  # type: ignore[attr-defined]
            try:
                schedule = self._schedule(name)
            except DispatchError:
                return
            occurrence = Occurrence(schedule, self._local(at), deadline_of(schedule, self._local(at)))
            if not edition_dispatches(self.ledger, occurrence.day):
                self._too_late(Due(occurrence, Action.MISSED), self.clock.now())
        elif job_event.code == EVENT_JOB_MAX_INSTANCES:
            event("still_running", logging.WARNING, job=job_event.job_id)
        elif job_event.code == EVENT_JOB_ERROR:
            event("job_error", logging.ERROR, job=job_event.job_id, error=str(getattr(job_event, "exception", "")))


# -- the process: scheduler, signals ------------------------------------------------


def install_jobs(scheduler: BackgroundScheduler, service: Service, settings: Settings, now: datetime) -> None:
    """One send job (and one approval job) per schedule; replaces what a reload leaves behind."""
    scheduler.remove_all_jobs()
    zone = settings.timezone
    for schedule in settings.schedules:
        # coalesce: runs piled up by a stall become one; max_instances: never two sends of one
        # schedule at once in this process (the ledger guards across processes).
        scheduler.add_job(
            service.run_job, send_trigger(schedule, zone), args=("send", schedule.name),
            id=f"send:{schedule.name}", name=f"send {schedule.name}", coalesce=True, max_instances=1,
            misfire_grace_time=grace_seconds(schedule, zone, now), replace_existing=True,
        )
        trigger = approval_trigger(schedule, zone)
        if trigger is not None:
            scheduler.add_job(
                service.run_job, trigger, args=("approval", schedule.name),
                id=f"approval:{schedule.name}", name=f"approval {schedule.name}", coalesce=True,
                max_instances=1, misfire_grace_time=1800, replace_existing=True,
            )
    if settings.schedules:
        scheduler.add_job(
            watch, "interval", seconds=watch_seconds(settings), args=(scheduler, service), id="watch",
            name="resume what a dead node left", coalesce=True, max_instances=1, replace_existing=True,
        )


def watch_seconds(settings: Settings) -> float:
    """How often a node looks for rows a dead node left leased: a fraction of the lease, so
    the takeover follows the expiry closely, and at most once a minute."""
    return min(60.0, max(1.0, settings.lease_seconds / 4))


def watch(scheduler: BackgroundScheduler, service: Service) -> None:
    """The watch job: through the schedule's own send job, resume a send left by a dead node,
    and start one held at its slot whose edition has been approved since."""
    try:
        now = service.clock.now()
        for name in service.orphaned(now) + service.approved_late(now):
            scheduler.modify_job(f"send:{name}", next_run_time=datetime.now(UTC))
        service.retry_alerts(now)
    except Exception:
        event("watch_failed", logging.ERROR, exc_info=True)  # e.g. the ledger briefly down; next time


def start_due(scheduler: BackgroundScheduler, dues: list[Due]) -> None:
    # Bring the schedule's own job forward rather than adding another: max_instances then
    # keeps the start-up run and a regular fire from overlapping.
    for due in dues:
        scheduler.modify_job(f"send:{due.occurrence.schedule.name}", next_run_time=datetime.now(UTC))
        event("run_at_start", schedule=due.occurrence.schedule.name, edition=due.occurrence.day.isoformat(),
              dispatch=due.dispatch.name if due.dispatch else None)


def _catch_up(scheduler: BackgroundScheduler, service: Service, now: datetime) -> None:
    try:
        start_due(scheduler, service.reconcile(now))
    except Exception:
        # The ledger may be briefly unreachable; the regular fires still come.
        event("reconcile_failed", logging.ERROR, exc_info=True)


def _log_jobs(scheduler: BackgroundScheduler) -> None:
    for job in scheduler.get_jobs():
        next_run = job.next_run_time.isoformat() if job.next_run_time else "never"
        event("scheduled", job=job.id, next=next_run, grace_s=job.misfire_grace_time)


def _reload(config_path: Path, scheduler: BackgroundScheduler, service: Service) -> None:
    try:
        settings = load_settings(config_path)
        check_schedules(settings)
    except DispatchError as exc:
        problems = [str(p) for p in exc.problems] if isinstance(exc, InputError) else [str(exc)]
        event("reload_rejected", logging.ERROR, config=display_path(config_path), problems=" | ".join(problems))
        return
    service.use(settings)
    now = service.clock.now()
    install_jobs(scheduler, service, settings, now)
    _catch_up(scheduler, service, now)
    event("reloaded", config=display_path(config_path), schedules=len(settings.schedules))
    _log_jobs(scheduler)


def main(config_path: Path, settings: Settings, *, log_json: bool = False) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 if the service cannot start."""
    configure(log_json, zone=settings.timezone)
    # Block the signals in every thread (threads inherit the mask) and take them one at a
    # time in this loop: no handler runs in the middle of a ledger write or a lock.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        try:
            check_schedules(settings)
            service = Service(settings)
        except DispatchError as exc:
            event("start_failed", logging.ERROR, error=str(exc))
            return 1
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max(4, 2 * len(settings.schedules)))},
            timezone=settings.timezone,
        )
        scheduler.add_listener(service.on_scheduler_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        scheduler.start()
        now = service.clock.now()
        install_jobs(scheduler, service, settings, now)
        event("started", config=display_path(config_path), schedules=len(settings.schedules),
              ledger=service.ledger.shown)
        _log_jobs(scheduler)
        _catch_up(scheduler, service, now)
        received = _wait_for_stop(config_path, scheduler, service)
        event("stopping", signal=received)
        service.stop.set()  # the pipeline sends no new message; those in flight finish and are recorded
        scheduler.shutdown(wait=True)
        service.close()
        event("stopped")
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def _wait_for_stop(config_path: Path, scheduler: BackgroundScheduler, service: Service) -> str:
    while True:
        info: Any = signal.sigtimedwait(SIGNALS, 60)
        if info is None:
            continue
        if info.si_signo == signal.SIGHUP:
            event("reload", signal="SIGHUP")
            _reload(config_path, scheduler, service)
            continue
        return signal.Signals(info.si_signo).name

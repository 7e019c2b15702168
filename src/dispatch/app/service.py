"""The scheduler service process (`dispatch serve`): APScheduler, signals and reloads.

Part of app, the composition root: the CLI's `serve` command calls ``run_service``, as its
other commands call app's functions, so the command line stays the only driver.

APScheduler only says *when*; what a job does, and *whether*, is app's ``Service``
(dispatch.app.scheduled), decided from the ledger, so a double fire, a restart or a second
service on the same ledger cannot send twice. The job store is in memory: on start-up
(and on SIGHUP) the service compares today's schedule with the ledger and brings a missed
run forward if its deadline has not passed, or alerts.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from dispatch.app.application import App
from dispatch.app.bounces import process_bounces
from dispatch.app.eventlog import configure as configure_log
from dispatch.app.eventlog import event
from dispatch.app.scheduled import ServeClock, Service, schedule_jobs
from dispatch.app.timetable import Due, check_schedules
from dispatch.config import Settings, load_settings
from dispatch.errors import DispatchError, InputError, display_path

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

__all__ = ["ServeClock", "Service", "install_jobs", "refresh_grace", "run_service"]


def install_jobs(scheduler: BackgroundScheduler, service: Service, settings: Settings, now: datetime) -> None:
    """One send job (and one approval job) per schedule; replaces what a reload leaves behind."""
    scheduler.remove_all_jobs()
    for job in schedule_jobs(settings, now):
        # coalesce: runs piled up by a stall become one; max_instances: never two sends of one
        # schedule at once in this process (the ledger guards across processes).
        scheduler.add_job(
            service.run_job, job.trigger, args=(job.kind, job.schedule), id=job.id, name=f"{job.kind} {job.schedule}",
            coalesce=True, max_instances=1, misfire_grace_time=job.grace_seconds, replace_existing=True,
        )
    if settings.bounces is not None and settings.bounces.host:
        scheduler.add_job(
            read_bounces, "interval", minutes=settings.bounces.interval_minutes, args=(service,), id="bounces",
            name="read the bounce mailbox", coalesce=True, max_instances=1, replace_existing=True,
        )
    if settings.directories:
        # Every sync_minutes, and at once on start (a service started at 13:55 syncs before 14:00);
        # the watch job brings it forward 30 minutes before each slot.
        scheduler.add_job(
            sync_lists, "interval", minutes=settings.sync_minutes, args=(service,), id="sync",
            name="sync the directory lists", coalesce=True, max_instances=1, replace_existing=True,
            next_run_time=datetime.now(UTC),
        )
    # Every service watches: urgent messages and tests need it without a schedule too.
    scheduler.add_job(
        watch, "interval", seconds=watch_seconds(settings), args=(scheduler, service), id="watch",
        name="resume what a dead node left", coalesce=True, max_instances=1, replace_existing=True,
    )


def on_scheduler_event(service: Service, job_event: JobEvent) -> None:
    """APScheduler's own events: a run missed beyond its grace time, a run still going."""
    kind, _, name = job_event.job_id.partition(":")
    if job_event.code == EVENT_JOB_MISSED and kind == "send":
        service.missed_run(name, job_event.scheduled_run_time)
    elif job_event.code == EVENT_JOB_MAX_INSTANCES:
        event("still_running", logging.WARNING, job=job_event.job_id)
    elif job_event.code == EVENT_JOB_ERROR:
        event("job_error", logging.ERROR, job=job_event.job_id, error=str(getattr(job_event, "exception", "")))


def refresh_grace(scheduler: BackgroundScheduler, service: Service, job_event: JobSubmissionEvent) -> None:
    """Give a send job, each time it is submitted, a misfire grace that covers its firings'
    own windows (from the time to the deadline; they differ across DST changes, so one
    computed when the job was scheduled is wrong on later days until a reload).

    APScheduler checks the grace of the run just submitted in its executor thread, maybe
    after this: so the grace is the larger of that run's window and the next one's, never
    less than the run being judged. Too large does no harm: ``Service.fire`` judges each
    firing by its own deadline. EVENT_JOB_SUBMITTED comes from the scheduler's thread after
    it has moved the job to its next run and released its lock; a listener in an executor
    thread asking for the job could wait for ever on the lock that ``shutdown`` holds while
    it waits for that thread."""
    kind, _, name = job_event.job_id.partition(":")
    if kind != "send":
        return
    job = scheduler.get_job(job_event.job_id)
    if job is None:
        return
    moments = [*job_event.scheduled_run_times[-1:], *([job.next_run_time] if job.next_run_time else [])]
    windows = [grace for grace in (service.grace_for(name, moment) for moment in moments) if grace is not None]
    if windows and max(windows) != job.misfire_grace_time:
        scheduler.modify_job(job.id, misfire_grace_time=max(windows))
        event("grace_changed", job=job.id, grace_s=max(windows),
              next=job.next_run_time.isoformat() if job.next_run_time else "never")


def watch_seconds(settings: Settings) -> float:
    """How often a node looks for rows a dead node left leased: a fraction of the lease, so
    the takeover follows the expiry closely, and at most once a minute."""
    return min(60.0, max(1.0, settings.lease_seconds / 4))


def watch(scheduler: BackgroundScheduler, service: Service) -> None:
    """The watch job: through the schedule's own send job, resume a send left by a dead node,
    and start one held at its slot whose edition has been approved since; send again the
    alerts the relay did not take, and write the intranet copies that could not be written."""
    try:
        now = service.clock.now()
        for name in service.orphaned(now) + service.approved_late(now):
            scheduler.modify_job(f"send:{name}", next_run_time=datetime.now(UTC))
        if service.settings.directories and service.presync_due(now) and scheduler.get_job("sync") is not None:
            scheduler.modify_job("sync", next_run_time=datetime.now(UTC))
        for name in service.strays(now):  # urgent messages and tests: a job of their own, not the watch's time
            scheduler.add_job(service.resend, args=(name,), id=f"resend:{name}", name=f"send {name} again",
                              max_instances=1, replace_existing=True)
        service.retry_alerts(now)
        service.copies.retry(service.settings, service.ledger, now)
    except Exception:
        event("watch_failed", logging.ERROR, exc_info=True)  # e.g. the ledger briefly down; next time


def sync_lists(service: Service) -> None:
    """The sync job: directory lists into snapshots (see Service.sync_lists). A failure is
    logged; sends go on with the last accepted snapshots, and the next run tries again."""
    try:
        service.sync_lists(service.clock.now())
    except DispatchError as exc:
        problems = [str(p) for p in exc.problems] if isinstance(exc, InputError) else [str(exc)]
        event("sync_failed", logging.ERROR, problems=" | ".join(problems))
    except Exception:  # a fault of ours or a library's: the service that sends the report keeps running
        event("sync_failed", logging.ERROR, exc_info=True)


def read_bounces(service: Service) -> None:
    """The bounce job: what came back since the last run, recorded (a failure is logged and
    the next run tries again; nothing is lost meanwhile, the messages wait in the mailbox)."""
    try:
        with service.app.session() as s:
            run = process_bounces(s, service.clock.now())
    except DispatchError as exc:
        event("bounces_failed", logging.ERROR, error=str(exc))
        return
    except Exception:  # a fault of ours or a library's: the service that sends the report keeps running
        event("bounces_failed", logging.ERROR, exc_info=True)
        return
    for uid, reason in run.quarantined:
        event("bounce_quarantined", logging.WARNING, uid=uid, reason=reason)
    if run.read:
        event("bounces_read", read=run.read, hard=run.hard, soft=run.soft, auto_replies=run.auto_replies,
              unverified=run.unverified, unmatched=run.unmatched, human=run.human, moved=run.moved,
              quarantined=len(run.quarantined))


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
    """Apply the config file again; one log line and the old settings kept if it cannot be
    read or applied (a broken file, an unknown list, a missing secret, an unreachable ledger)."""
    try:
        settings = load_settings(config_path)
        check_schedules(settings)
        service.use(settings)
    except DispatchError as exc:
        problems = [str(p) for p in exc.problems] if isinstance(exc, InputError) else [str(exc)]
        event("reload_rejected", logging.ERROR, config=display_path(config_path), problems=" | ".join(problems),
              kept="the settings in use before")
        return
    now = service.clock.now()
    install_jobs(scheduler, service, settings, now)
    _catch_up(scheduler, service, now)
    event("reloaded", config=display_path(config_path), schedules=len(settings.schedules))
    _log_jobs(scheduler)


class Hosted(Protocol):
    """Something else the service process runs beside the scheduler (the editor console)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_service(config_path: Path, settings: Settings, *, log_json: bool = False, hosted: Hosted | None = None,
                application: App | None = None) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 if the service cannot start.

    ``hosted`` (the console, when ``web:`` is configured) starts after the scheduler and
    stops before it, so no console request meets a stopped service."""
    configure_log(log_json, zone=settings.timezone)
    # Block the signals in every thread (threads inherit the mask) and take them one at a
    # time in this loop: no handler runs in the middle of a ledger write or a lock.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        try:
            check_schedules(settings)
            service = Service(settings, app=application)
        except DispatchError as exc:
            event("start_failed", logging.ERROR, error=str(exc))
            return 1
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max(4, 2 * len(settings.schedules)))},
            timezone=settings.timezone,
        )
        scheduler.add_listener(lambda job_event: on_scheduler_event(service, job_event),
                               EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(lambda job_event: refresh_grace(scheduler, service, job_event), EVENT_JOB_SUBMITTED)
        scheduler.start()
        now = service.clock.now()
        install_jobs(scheduler, service, settings, now)
        event("started", config=display_path(config_path), schedules=len(settings.schedules),
              ledger=service.ledger.shown)
        _log_jobs(scheduler)
        _catch_up(scheduler, service, now)
        if hosted is not None:
            hosted.start()
            event("console_started", listen=settings.web.listen if settings.web else "")
        received = _wait_for_stop(config_path, scheduler, service)
        event("stopping", signal=received)
        if hosted is not None:
            hosted.stop()
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


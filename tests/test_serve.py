"""Issue 6: the scheduler service.

Decisions are tested with injected time (a Service with a fake clock, called at the
moment under test); two tests run `dispatch serve` as a process against a real SMTP server.
"""

from __future__ import annotations

import json
import mailbox
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    STOCKHOLM,
    FakeClock,
    Project,
    RecordingHandler,
    ServeProcess,
    SMTPServer,
    addresses,
    big_list,
    copy_project,
    early,
    free_port,
    set_schedule,
    started,
    write_edition,
)
from dispatch.app.service import Service, install_jobs
from dispatch.app.timetable import Action, cron_weekdays, due_runs, send_trigger
from dispatch.config import Schedule, load_settings
from smtpserver import WholeDataController

DISTINCT_SAMPLE_RECIPIENTS = 49
DAY = date(2024, 11, 17)


def local(day: date | str, hm: str, fold: int = 0) -> datetime:
    day = date.fromisoformat(day) if isinstance(day, str) else day
    hour, minute = (int(x) for x in hm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=STOCKHOLM, fold=fold)


def service(project: Project, now: datetime) -> Service:
    return Service(load_settings(project.config_path), clock=FakeClock(now))


def fake_clock(service: Service) -> FakeClock:
    """The test's clock inside a service made by ``service()``, to move its time."""
    assert isinstance(service.clock, FakeClock)
    return service.clock


def dispatches(project: Project, day: date) -> list[Any]:
    from dispatch.ledger import Ledger

    ledger = Ledger(load_settings(project.config_path).ledger_url)
    try:
        return [d for d in ledger.list_dispatches(day) if d.kind == "edition"]
    finally:
        ledger.close()


def ledger_counts(project: Project) -> dict[str, int]:
    from dispatch.ledger import Ledger

    ledger = Ledger(load_settings(project.config_path).ledger_url)
    try:
        record = ledger.find_dispatch()
        assert record is not None
        return ledger.counts(record.id)
    finally:
        ledger.close()


def maildir_reports(project: Project) -> list[Any]:
    path = project.root / "var/outbox"
    if not path.exists():
        return []
    return [m for m in mailbox.Maildir(path, create=False) if m["List-Id"]]


def notice_subjects(server: SMTPServer) -> list[str]:
    return [str(m.message["Subject"]) for m in server.handler.notices()]


def alerts_only(server: SMTPServer) -> list[str]:
    # Completion summaries start with "Utskick "; everything else to notify is an alarm.
    return [s for s in notice_subjects(server) if not s.startswith("Utskick ")]


# -- `dispatch serve` as a process (acceptance 5 and 6) -----------------------------------------




@dataclass
class CronServe:
    project: Project
    server: SMTPServer
    serve: ServeProcess
    fire: datetime
    config: str


@early("cron_serve")
def start_cron_serve() -> tuple[CronServe, Callable[[], None]]:
    """A `dispatch serve --log-json` process whose cron fires at the next whole minute.

    Started when collection is done (see early() in conftest.py) and checked by
    test_serve_process_delivers_when_the_cron_fires, so the wait for the minute overlaps the
    tests that run before. Each test worker (pytest-xdist) starts its own, and only that test
    uses it: tests run in any order, on any worker.
    """
    root = Path(tempfile.mkdtemp(prefix="dispatch-cron-")) / "project"
    project = copy_project(root)
    handler = RecordingHandler()
    port = free_port()
    controller = WholeDataController(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    server = SMTPServer("127.0.0.1", port, handler)
    project.use_smtp(server, connections=2)
    now = datetime.now(STOCKHOLM)
    fire = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (fire - now).total_seconds() < 10:
        fire += timedelta(minutes=1)  # time to start before it fires
    deadline = fire + timedelta(hours=1)
    set_schedule(project, cron=f"{fire.minute} {fire.hour} * * *", lists=["politisk-ledning"],
                 deadline=f"{deadline:%H:%M}", approval_deadline=None)
    write_edition(project, fire.date())
    serve = ServeProcess(project, "--log-json")

    def stop() -> None:
        serve.kill()
        controller.stop()
        shutil.rmtree(root.parent, ignore_errors=True)

    return CronServe(project, server, serve, fire, project.config_path.read_text(encoding="utf-8")), stop


@pytest.fixture(scope="module")
def cron_serve() -> CronServe:
    return started("cron_serve", CronServe)


def test_serve_process_starts_and_rejects_a_bad_reload_without_stopping(project: Project, smtp_server: SMTPServer,
                                                                      processes: list[ServeProcess]) -> None:
    project.use_smtp(smtp_server)
    good = project.config_path.read_text(encoding="utf-8")
    serve = ServeProcess(project, "--log-json")
    processes.append(serve)
    serve.wait_for(lambda: serve.logged("started"), 30, "start-up")

    set_schedule(project, cron="99 14 * * *", lists=["politisk-ledning"], approval_deadline=None)  # no minute 99
    serve.process.send_signal(signal.SIGHUP)
    serve.wait_for(lambda: serve.logged("reload_rejected"), 10, "the bad config to be rejected")
    assert serve.process.poll() is None
    rejected = next(e for e in map(json.loads, list(serve.lines)) if e["event"] == "reload_rejected")
    assert "'99 14 * * *'" in rejected["problems"], "the rejection names what is wrong"

    project.config_path.write_text(good, encoding="utf-8")
    serve.process.send_signal(signal.SIGHUP)
    serve.wait_for(lambda: serve.logged("reloaded"), 10, "the good config to be loaded")
    assert serve.process.poll() is None
    code, _ = serve.stop()
    assert code == 0, serve.log()


# -- 1. DST days --------------------------------------------------------------------


def fires_on(trigger: Any, day: date) -> list[datetime]:
    """Every fire time on a local day, asked the way APScheduler's scheduler asks (chained)."""
    start, end = local(day, "00:00"), local(day + timedelta(days=1), "00:00")
    fires: list[datetime] = []
    previous, now = None, start
    while True:
        moment = trigger.get_next_fire_time(previous, now)
        if moment is None or moment.astimezone(UTC) >= end.astimezone(UTC):
            return fires
        fires.append(moment)
        previous, now = moment, moment
        assert len(fires) < 10


@pytest.mark.parametrize("day", [date(2026, 10, 25), date(2027, 3, 28)])
def test_dst_days_the_triggers_fire_a_1400_schedule_once_and_a_0230_schedule_at_most_once(day: date) -> None:
    daily = send_trigger(Schedule("daily", "0 14 * * *", ("x",)), STOCKHOLM)
    night = send_trigger(Schedule("night", "30 2 * * *", ("x",)), STOCKHOLM)
    assert [f.strftime("%H:%M") for f in fires_on(daily, day)] == ["14:00"]
    assert len(fires_on(night, day)) <= 1
    # The same through get_next_fire_time(None, now), one second after each fire.
    for trigger, allowed in ((daily, {1}), (night, {0, 1})):
        seen: list[datetime] = []
        moment = trigger.get_next_fire_time(None, local(day, "00:00"))
        while moment is not None and moment.date() == day and len(seen) <= 3:
            seen.append(moment)
            moment = trigger.get_next_fire_time(None, moment.astimezone(UTC) + timedelta(seconds=1))
        assert len(seen) in allowed


@pytest.mark.parametrize("day,cron", [
    (date(2026, 10, 25), "0 14 * * *"), (date(2026, 10, 25), "30 2 * * *"),
    (date(2027, 3, 28), "0 14 * * *"), (date(2027, 3, 28), "30 2 * * *"),
])
def test_dst_days_produce_exactly_one_dispatch(day: date, cron: str, project: Project, services: list[Service]) -> None:
    set_schedule(project, cron=cron, approval_deadline=None)
    # Compiled at the slot's wall-clock time, as a new edition is: the slot sends it (02:30 on
    # the spring day does not exist; its run at 03:00 is its compiled time's first valid moment).
    minute, hour = cron.split()[:2]
    write_edition(project, day, compiled=f"{int(hour):02d}:{int(minute):02d}")
    settings = load_settings(project.config_path)
    fires = fires_on(send_trigger(settings.schedules[0], STOCKHOLM), day)
    assert len(fires) == 1
    # Every fire, a double fire a second later, and (02:30 in October) the repeated wall time.
    moments = [fires[0], fires[0] + timedelta(seconds=1)]
    if cron.startswith("30 2") and day.month == 10:
        moments.append(local(day, "02:30", fold=1))
    for moment in moments:
        services.append(service(project, moment))
        services[-1].fire("daily", moment)
    assert len(dispatches(project, day)) == 1
    reports = maildir_reports(project)
    assert len(reports) == DISTINCT_SAMPLE_RECIPIENTS
    assert len({m["To"] for m in reports}) == DISTINCT_SAMPLE_RECIPIENTS


def test_cron_day_of_week_keeps_cron_numbering() -> None:
    # APScheduler 3 counts 0 as Monday; a cron line from a sysadmin counts 0 (and 7) as Sunday.
    assert cron_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert cron_weekdays("0") == cron_weekdays("7") == "sun"
    weekdays = send_trigger(Schedule("d", "0 14 * * 1-5", ("x",)), STOCKHOLM)
    first = weekdays.get_next_fire_time(None, local("2026-10-24", "00:00"))  # a Saturday
    assert first is not None
    assert first.date() == date(2026, 10, 26) and first.strftime("%A") == "Monday"


# -- 2. down over the scheduled time -------------------------------------------------------------


def test_down_1355_to_1440_sends_once_at_start_up(project: Project, services: list[Service]) -> None:
    settings = load_settings(project.config_path)  # sample: 14:00, deadline 18:00, approved edition
    services.append(service(project, local(DAY, "13:55")))
    assert due_runs(settings, services[0].ledger, local(DAY, "13:55")) == []

    start = local(DAY, "14:40")
    services.append(service(project, start))
    due = services[-1].reconcile(start)
    assert [(d.action, d.occurrence.day, d.occurrence.at.strftime("%H:%M")) for d in due] == [(Action.SEND, DAY, "14:00")]
    for item in due:
        services[-1].fire(item.occurrence.schedule.name, start)
    assert len(dispatches(project, DAY)) == 1
    assert len(maildir_reports(project)) == DISTINCT_SAMPLE_RECIPIENTS

    # Another restart, and the regular fire of a service that was up: nothing more.
    services.append(service(project, local(DAY, "14:45")))
    assert services[-1].reconcile(local(DAY, "14:45")) == []
    assert services[-1].fire("daily", local(DAY, "14:45")) is None
    assert len(dispatches(project, DAY)) == 1
    assert len(maildir_reports(project)) == DISTINCT_SAMPLE_RECIPIENTS


def test_down_until_1805_sends_nothing_and_alerts_that_it_was_missed(
        project: Project, smtp_server: SMTPServer, services: list[Service]) -> None:
    project.use_smtp(smtp_server)
    start = local(DAY, "18:05")
    services.append(service(project, start))
    assert services[0].reconcile(start) == []
    assert services[0].fire("daily", start) is None  # a late fire says the same, once
    assert dispatches(project, DAY) == []
    assert smtp_server.handler.reports() == []
    assert alerts_only(smtp_server) == ["Utskicket av rapporten för 2024-11-17 missades (tidsgräns 18:00)"]
    body = smtp_server.handler.notices()[0].message.get_content()
    assert "missades" in body and "dispatch send --date 2024-11-17" in body


def test_jobs_are_configured_on_purpose(project: Project) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = load_settings(project.config_path)
    scheduler = BackgroundScheduler(timezone=STOCKHOLM)
    scheduler.start(paused=True)
    keeper = Service(settings, clock=FakeClock(local(DAY, "09:00")))
    try:
        install_jobs(scheduler, keeper, settings, local(DAY, "09:00"))
        send = scheduler.get_job("send:daily")
        assert (send.coalesce, send.max_instances, send.misfire_grace_time) == (True, 1, 4 * 3600)  # 14:00 -> 18:00
        assert str(send.trigger.timezone) == "Europe/Stockholm"
        assert scheduler.get_job("approval:daily") is not None
    finally:
        scheduler.shutdown(wait=False)
        keeper.close()


# -- 3. two services, one ledger ---------------------------------------------------------------


def test_two_services_firing_together_send_one_message_per_recipient(
        project: Project, smtp_server: SMTPServer, services: list[Service]) -> None:
    project.use_smtp(smtp_server, connections=2)

    smtp_server.handler.accept_delay = 0.003  # long enough that both services are sending at once
    now = local(DAY, "14:00")
    services.extend([service(project, now), service(project, now)])
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def fire(one: Service) -> None:
        barrier.wait()
        results.append(one.fire("daily", now))

    threads = [threading.Thread(target=fire, args=(one,)) for one in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(dispatches(project, DAY)) == 1
    received = smtp_server.handler.recipients()
    assert len(received) == DISTINCT_SAMPLE_RECIPIENTS, "each recipient exactly one message"
    assert len(set(received)) == DISTINCT_SAMPLE_RECIPIENTS
    assert sum(r.sent_now for r in results if r is not None) == DISTINCT_SAMPLE_RECIPIENTS
    assert project.status()["counts"]["sent"] == DISTINCT_SAMPLE_RECIPIENTS


# -- 4. the approval gate -------------------------------------------------------------------------


def test_nothing_approved_alerts_at_the_approval_deadline_and_again_at_send_time(
        project: Project, smtp_server: SMTPServer, services: list[Service]) -> None:
    project.use_smtp(smtp_server)
    write_edition(project, DAY, status="draft")
    services.append(service(project, local(DAY, "13:30")))
    keeper = services[0]

    keeper.run_job("approval", "daily")  # what APScheduler calls at 13:30
    assert alerts_only(smtp_server) == ["Ingen godkänd rapport för 2024-11-17 kl 13:30"]
    first = smtp_server.handler.notices()[0]
    assert first.rcpt_tos == ["kommunikation@example.org"]
    assert first.message["Auto-Submitted"] == "auto-generated"
    assert "status: draft" in first.message.get_content()

    fake_clock(keeper).moment = local(DAY, "14:00")
    keeper.run_job("send", "daily")
    assert smtp_server.handler.reports() == []
    assert dispatches(project, DAY) == []
    assert alerts_only(smtp_server) == [
        "Ingen godkänd rapport för 2024-11-17 kl 13:30",
        "Ingen godkänd rapport för 2024-11-17 kl 14:00: inget skickades",
    ]


def test_a_draft_approved_at_1350_is_sent_at_1400(project: Project, smtp_server: SMTPServer, services: list[Service]) -> None:
    project.use_smtp(smtp_server)
    write_edition(project, DAY, status="draft")
    services.append(service(project, local(DAY, "13:30")))
    keeper = services[0]
    assert keeper.check_approval("daily", local(DAY, "13:30")) is True

    write_edition(project, DAY, status="approved")  # 13:50: the editor approves
    assert keeper.check_approval("daily", local(DAY, "13:50")) is False
    result = keeper.fire("daily", local(DAY, "14:00"))
    assert result is not None and result.complete
    assert len(smtp_server.handler.reports()) == DISTINCT_SAMPLE_RECIPIENTS
    assert alerts_only(smtp_server) == ["Ingen godkänd rapport för 2024-11-17 kl 13:30"]
    assert dispatches(project, DAY)[0].created_by == "dispatch serve (daily)"


def test_a_failing_job_is_logged_and_alerted_and_the_next_one_runs(
        project: Project, smtp_server: SMTPServer, services: list[Service], caplog: pytest.LogCaptureFixture) -> None:
    project.use_smtp(smtp_server)
    services.append(service(project, local(DAY, "14:00")))
    keeper = services[0]
    # The ledger's file gives way to a directory (a broken mount: a real fault) after the
    # service opened it. (This test used a broken intranet share until issue 30: that no
    # longer fails the job, the mail goes out; see test_publish_full.py.)
    ledger = project.root / "var/ledger.db"
    ledger.rename(project.root / "var/ledger.away")
    ledger.mkdir()
    with caplog.at_level("INFO"):
        keeper.run_job("send", "daily")  # must not raise
    assert any(getattr(r, "event", "") == "job_failed" for r in caplog.records)
    assert alerts_only(smtp_server) == ["Fel i schemalagt jobb send:daily"]
    assert "LedgerError" in smtp_server.handler.notices()[0].message.get_content()
    assert smtp_server.handler.reports() == []

    ledger.rmdir()
    (project.root / "var/ledger.away").rename(ledger)
    fake_clock(keeper).moment = local(DAY, "14:05")
    keeper.run_job("send", "daily")
    assert len(smtp_server.handler.reports()) == DISTINCT_SAMPLE_RECIPIENTS


# -- 5. SIGTERM during a send, then a restart ----------------------------------------------------


@pytest.mark.slow  # two serve processes, 2,000 recipients, a signal part-way
def test_sigterm_during_a_2000_recipient_send_then_restart_loses_and_repeats_nobody(
        project: Project, smtp_server: SMTPServer, processes: list[ServeProcess]) -> None:
    count = 2000
    big_list(project, count)
    project.use_smtp(smtp_server, connections=8)
    # Due a minute ago, deadline later today: the service starts the run at start-up.
    due = datetime.now(STOCKHOLM).replace(second=0, microsecond=0) - timedelta(minutes=1)
    deadline = due + timedelta(hours=2)
    set_schedule(project, cron=f"{due.minute} {due.hour} * * *", lists=["stor"],
                 deadline=f"{deadline:%H:%M}", approval_deadline=None)
    write_edition(project, due.date())

    # A send of a few seconds even on a fast disk, so SIGTERM lands part-way: 8 connections
    # each waiting 10 ms for every reply.
    smtp_server.handler.accept_delay = 0.01
    first = ServeProcess(project)
    processes.append(first)
    first.wait_for(lambda: len(smtp_server.handler.reports()) >= count // 3, 60, "a third of the send")
    code, seconds = first.stop(signal.SIGTERM)
    assert code == 0, first.log()
    assert seconds < 10
    assert first.logged("interrupted") and first.logged("stopped"), first.log()
    before = len(smtp_server.handler.reports())
    assert before < count, "the signal must land part-way"
    assert ledger_counts(project)["sent"] == before, "every message the server accepted is recorded"

    second = ServeProcess(project)
    processes.append(second)
    second.wait_for(lambda: second.logged("sent"), 60, "the resumed send to finish")
    code, _ = second.stop(signal.SIGINT)
    assert code == 0, second.log()
    received = smtp_server.handler.recipients()
    assert set(received) == set(addresses(count)), "0 lost"
    assert len(received) == count, "0 duplicates"
    assert ledger_counts(project)["sent"] == count
    assert dispatches(project, due.date())[0].finished_at is not None


# -- the cron process started after collection has had its minute -------------------------------


@pytest.mark.slow  # waits for the next whole minute (the cron's), up to 70 s
def test_serve_process_delivers_when_the_cron_fires(cron_serve: CronServe) -> None:
    serve, server, fire = cron_serve.serve, cron_serve.server, cron_serve.fire
    wait = (fire - datetime.now(STOCKHOLM)).total_seconds() + 30
    serve.wait_for(lambda: serve.logged("sent"), wait, "the cron to fire and the edition to arrive")
    assert datetime.now(STOCKHOLM) >= fire
    reports = server.handler.reports()
    assert len(reports) == 11 and len(set(server.handler.recipients())) == 11
    code, _ = serve.stop()
    assert code == 0, serve.log()

    events = [json.loads(line) for line in serve.lines]  # --log-json: every line is one JSON object
    assert all({"time", "level", "event"} <= set(e) for e in events)
    sending = next(e for e in events if e["event"] == "sending")
    assert datetime.fromisoformat(sending["time"]) >= fire, "sent by the cron, not at start-up"
    assert not any(e["event"] == "run_at_start" for e in events)
    sent = next(e for e in events if e["event"] == "sent")
    assert sent["dispatch"] == f"{fire.date().isoformat()}.r1.edition"
    assert sent["counts"]["sent"] == 11
    assert events[-1]["event"] == "stopped"

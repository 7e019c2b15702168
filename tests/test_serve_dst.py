"""Issue 30, point 6: a schedule whose slot a DST change skips or repeats.

`cron: "30 2 * * *"` with `deadline: "03:00"`: on the spring day 02:30 does not exist; the
run is at 03:00 (the first valid time after it) and its deadline moves by the same 30
minutes. APScheduler's misfire grace is the window of each firing, set again after every
firing. Time is injected: the service is called at each moment the trigger names.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from conftest import STOCKHOLM, FakeClock, Project, SMTPServer, set_schedule, write_edition
from dispatch.app.service import Service, install_jobs, refresh_grace
from dispatch.app.timetable import first_valid, grace_seconds, latest_occurrence, next_occurrence, send_trigger
from dispatch.config import Schedule, load_settings
from dispatch.ledger import Ledger

SPRING, AUTUMN = date(2025, 3, 30), date(2025, 10, 26)
NIGHT = Schedule("daily", "30 2 * * *", ("politisk-ledning",), deadline="03:00")
RECIPIENTS = 49  # the sample lists, folded


def local(day: date, hm: str, fold: int = 0) -> datetime:
    hour, minute = (int(x) for x in hm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=STOCKHOLM, fold=fold)


def firings(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in [start, end), chained as APScheduler's scheduler asks."""
    trigger = send_trigger(schedule, STOCKHOLM)
    found, previous, now = [], None, start
    while (moment := trigger.get_next_fire_time(previous, now)) is not None and moment < end:
        found.append(moment)
        previous, now = moment, moment
        assert len(found) < 20
    return found


def submitted(run_time: datetime) -> JobSubmissionEvent:
    """What APScheduler tells its listeners when it hands the send job's run to its executor."""
    return JobSubmissionEvent(EVENT_JOB_SUBMITTED, "send:daily", "default", [run_time])


def test_a_slot_the_spring_change_skips_runs_at_0300_with_a_0330_deadline() -> None:
    assert [f"{m:%m-%d %H:%M%z}" for m in firings(NIGHT, local(SPRING, "00:00") - timedelta(days=1),
                                                  local(SPRING, "00:00") + timedelta(days=2))] == \
        ["03-29 02:30+0100", "03-30 03:00+0200", "03-31 02:30+0200"]
    occurrence = next_occurrence(NIGHT, STOCKHOLM, local(SPRING, "00:00"))
    assert occurrence is not None
    assert (occurrence.at.isoformat(), occurrence.deadline.isoformat()) == \
        ("2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00")
    # Asked from the very moment it runs (as after a restart at 03:00), the same run.
    assert next_occurrence(NIGHT, STOCKHOLM, occurrence.at) == occurrence
    assert latest_occurrence(NIGHT, STOCKHOLM, local(SPRING, "03:29")) == occurrence
    # The autumn day: 02:30 once (the first one), deadline 03:00 after the clocks went back.
    assert [f"{m:%H:%M%z}" for m in firings(NIGHT, local(AUTUMN, "00:00"), local(AUTUMN, "12:00"))] == ["02:30+0200"]
    autumn = next_occurrence(NIGHT, STOCKHOLM, local(AUTUMN, "00:00"))
    assert autumn is not None and autumn.deadline.isoformat() == "2025-10-26T03:00:00+01:00"
    # A deadline that itself falls in the gap is the first valid time after it.
    assert first_valid(local(SPRING, "02:15")).isoformat() == "2025-03-30T03:00:00+02:00"
    assert first_valid(local(SPRING, "01:59")) == local(SPRING, "01:59")


def test_misfire_grace_is_each_firings_own_window() -> None:
    # Scheduled the day before the spring change: the old code gave this job 1 s, for good.
    assert grace_seconds(NIGHT, STOCKHOLM, local(SPRING - timedelta(days=1), "12:00")) == 1800
    wide = Schedule("daily", "30 1 * * *", ("politisk-ledning",), deadline="04:30")
    spring_fire, autumn_fire = local(SPRING, "01:30"), local(AUTUMN, "01:30")
    assert grace_seconds(wide, STOCKHOLM, spring_fire) == 2 * 3600  # an hour of the window does not exist
    assert grace_seconds(wide, STOCKHOLM, spring_fire + timedelta(days=1)) == 3 * 3600
    assert grace_seconds(wide, STOCKHOLM, autumn_fire) == 4 * 3600  # an hour happens twice


def test_the_service_sets_the_grace_again_each_time_the_send_job_is_submitted(project: Project) -> None:
    set_schedule(project, cron="30 1 * * *", deadline="04:30", approval_deadline=None)
    settings = load_settings(project.config_path)
    before = local(SPRING, "12:00") - timedelta(days=1)
    scheduler = BackgroundScheduler(timezone=STOCKHOLM)
    scheduler.start(paused=True)
    keeper = Service(settings, clock=FakeClock(before))
    try:
        install_jobs(scheduler, keeper, settings, before)
        assert scheduler.get_job("send:daily").misfire_grace_time == 2 * 3600  # the spring day's window
        # APScheduler moved the job to its next firing after the spring day's run.
        scheduler.modify_job("send:daily", next_run_time=local(SPRING + timedelta(days=1), "01:30"))
        refresh_grace(scheduler, keeper, submitted(local(SPRING, "01:30")))
        assert scheduler.get_job("send:daily").misfire_grace_time == 3 * 3600
        # Submitted on 25 October (3 h), next the 26th (4 h, an hour happens twice), then 3 h again:
        # never less than the window of the run APScheduler is judging.
        scheduler.modify_job("send:daily", next_run_time=local(AUTUMN, "01:30"))
        refresh_grace(scheduler, keeper, submitted(local(AUTUMN, "01:30") - timedelta(days=1)))
        assert scheduler.get_job("send:daily").misfire_grace_time == 4 * 3600
        scheduler.modify_job("send:daily", next_run_time=local(AUTUMN, "01:30") + timedelta(days=1))
        refresh_grace(scheduler, keeper, submitted(local(AUTUMN, "01:30")))
        assert scheduler.get_job("send:daily").misfire_grace_time == 4 * 3600
        scheduler.modify_job("send:daily", next_run_time=local(AUTUMN, "01:30") + timedelta(days=2))
        refresh_grace(scheduler, keeper, submitted(local(AUTUMN, "01:30") + timedelta(days=1)))
        assert scheduler.get_job("send:daily").misfire_grace_time == 3 * 3600
    finally:
        scheduler.shutdown(wait=False)
        keeper.close()


@pytest.mark.slow
def test_0230_with_a_0300_deadline_is_sent_once_each_day_across_both_dst_changes(
        project: Project, smtp_server: SMTPServer, services: list[Service]) -> None:
    """Acceptance 6: every firing the trigger names from 29 March to 31 March and from 25 to
    27 October, each run 5 s late (a loaded machine): APScheduler's grace lets each run, the
    service sends, once a day; the repeated 02:30 in October sends nothing more; no alarm."""
    project.use_smtp(smtp_server)
    set_schedule(project, cron="30 2 * * *", deadline="03:00", lists=["politisk-ledning", "chefer"],
                 approval_deadline=None)
    days = [SPRING + timedelta(days=d) for d in (-1, 0, 1)] + [AUTUMN + timedelta(days=d) for d in (-1, 0, 1)]
    for day in days:
        write_edition(project, day)
    settings = load_settings(project.config_path)
    schedule = settings.schedules[0]
    moments = []
    for start in (SPRING, AUTUMN):
        moments += firings(schedule, local(start, "00:00") - timedelta(days=1), local(start, "00:00") + timedelta(days=2))
    assert len(moments) == 6
    late = timedelta(seconds=5)
    for moment in moments:
        assert grace_seconds(schedule, STOCKHOLM, moment) >= late.total_seconds(), moment
        services.append(Service(settings, clock=FakeClock(moment + late)))
        services[-1].fire("daily", moment + late)
    services.append(Service(settings, clock=FakeClock(local(AUTUMN, "02:30", fold=1))))  # the repeated hour
    assert services[-1].fire("daily", local(AUTUMN, "02:30", fold=1)) is None

    ledger = Ledger(settings.ledger_url)
    try:
        sent = {day: [(d.name, ledger.counts(d.id)["sent"]) for d in ledger.list_dispatches(day) if d.kind == "edition"]
                for day in days}
    finally:
        ledger.close()
    assert sent == {day: [(f"{day.isoformat()}.r1.edition", RECIPIENTS)] for day in days}
    # Once each day: 49 accepted per day in the ledger, and no more messages than that at the server.
    assert len(smtp_server.handler.recipients()) == len(days) * RECIPIENTS
    alerts = [str(m.message["Subject"]) for m in smtp_server.handler.notices()
              if not str(m.message["Subject"]).startswith("Utskick ")]
    assert alerts == []

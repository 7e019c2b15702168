"""When a schedule runs and what its latest run still needs: pure functions of ``now``.

The triggers are APScheduler's CronTrigger with two corrections (cron's day-of-week
numbering, one fire per repeated wall-clock time); ``due_runs`` judges a schedule's
latest run from the ledger alone, so the service keeps no state of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from dispatch.config import Schedule, Settings
from dispatch.errors import InputError, Problem, display_path
from dispatch.models import DispatchRecord
from dispatch.values import DispatchKind

DEFAULT_GRACE = timedelta(hours=1)  # a schedule without 'deadline' may run at most this late
LOOKBACK = timedelta(hours=25)  # one day, DST days included
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_DAY = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def utc(moment: datetime) -> datetime:
    # Aware datetimes that share a tzinfo compare by wall clock; compare instants instead.
    return moment.astimezone(UTC)


# -- triggers -------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One fire of a trigger: the wall-clock time cron names (``nominal``) and the moment it
    runs (``at``). They differ only for a time that a spring DST change skips."""

    nominal: datetime
    at: datetime

    @property
    def shift(self) -> timedelta:
        """How far the run was moved on the wall clock (02:30 run at 03:00: 30 min)."""
        return self.at.replace(tzinfo=None) - self.nominal.replace(tzinfo=None)


class DailyCronTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type information
    """A CronTrigger that fires each wall-clock time of the day once, skipped ones included.

    When clocks go back, APScheduler 3.11.3 fires a 02:30 schedule twice (02:30+02:00 and
    02:30+01:00). The ledger would stop a second dispatch, but not a second alarm; a wall
    clock time is meant once, as cron means it. When clocks go forward, it fires a 02:30
    that does not exist at 02:30+01:00, i.e. 03:30 summer time, after a 03:00 deadline;
    here it runs at the first valid time after it (03:00), as cron does, and
    ``deadline_of`` moves its deadline by the same 30 minutes.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        slot = self.next_slot(previous_fire_time, now)
        return slot.at if slot is not None else None

    def next_slot(self, previous: datetime | None, now: datetime) -> Slot | None:
        """The first fire at or after ``now`` (and after ``previous``, a fire time)."""
        # From a second before: a skipped slot runs at the end of the gap, and asked from
        # exactly that moment the search by wall clock (03:00) would pass its 02:30.
        candidate = super().get_next_fire_time(previous, utc(now) - timedelta(seconds=1))
        while candidate is not None:
            at = first_valid(candidate)
            if not _repeated(candidate) and utc(at) >= utc(now) and (previous is None or utc(at) > utc(previous)):
                return Slot(candidate, at)
            candidate = super().get_next_fire_time(candidate, utc(candidate) + timedelta(microseconds=1))
        return None


def _repeated(moment: datetime) -> bool:
    """The second occurrence of a wall-clock time that DST repeats."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def first_valid(moment: datetime) -> datetime:
    """``moment`` if its wall-clock time exists, else the first time after it that does (the
    end of the spring DST gap: 02:30 -> 03:00 in Stockholm), in the same zone."""
    zone = moment.tzinfo
    wall = moment.replace(tzinfo=None)
    if utc(moment).astimezone(zone).replace(tzinfo=None) == wall:
        return moment
    # In a gap, fold=1 reads the wall time with the offset after the change (an instant
    # before the gap) and fold=0 with the one before (an instant after it); the change is
    # between, at a whole second.
    ends = sorted((utc(moment.replace(fold=1)).timestamp(), utc(moment.replace(fold=0)).timestamp()))
    low, high = math.floor(ends[0]), math.ceil(ends[1])
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, zone)


def _cron_day(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _CRON_DAY and token.isalpha():
        return _CRON_DAY[token[:3]]
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"unknown day of week {token!r}")


def cron_weekdays(field: str) -> str:
    """Cron's day-of-week field (0 or 7 = Sunday) as APScheduler 3 names.

    APScheduler 3 counts 0 as Monday, so '1-5' there means Tuesday to Saturday; names
    are unambiguous in both.
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            start, end = span.split("-", 1)
            low, high = _cron_day(start), _cron_day(end)
            if end.strip() == "7":
                high = 7
            if high < low:
                raise ValueError(f"day-of-week range {span!r} runs backwards")
        else:
            low = _cron_day(span)
            high = 6 if step_text else low
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step_text!r} must be at least 1")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(name for name in _WEEKDAYS if _CRON_DAY[name] in days)


def _clock_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def send_trigger(schedule: Schedule, zone: ZoneInfo) -> DailyCronTrigger:
    minute, hour, day, month, weekday = schedule.cron.split()
    return DailyCronTrigger(minute=minute, hour=hour, day=day, month=month,
                            day_of_week=cron_weekdays(weekday), timezone=zone)


def approval_trigger(schedule: Schedule, zone: ZoneInfo) -> DailyCronTrigger | None:
    # Daily at the approval time; the job itself checks that a send follows it.
    if not schedule.approval_deadline:
        return None
    at = _clock_time(schedule.approval_deadline)
    return DailyCronTrigger(hour=at.hour, minute=at.minute, timezone=zone)


def check_schedules(settings: Settings) -> None:
    """Raise InputError for a cron or time that APScheduler would reject, before anything starts."""
    problems = []
    for schedule in settings.schedules:
        checks = (
            (f"cron {schedule.cron!r}", lambda s=schedule: send_trigger(s, settings.timezone)),
            (f"approval_deadline {schedule.approval_deadline!r}", lambda s=schedule: approval_trigger(s, settings.timezone)),
            (f"deadline {schedule.deadline!r}", lambda s=schedule: s.deadline and _clock_time(s.deadline)),
        )
        for what, check in checks:
            try:
                check()
            except ValueError as exc:
                problems.append(Problem.of(display_path(settings.path), settings.line_of.get("schedules", 1),
                                           "schedule.invalid", schedule=repr(schedule.name), what=what, detail=str(exc)))
    if problems:
        raise InputError(problems)


# -- when: occurrences, deadlines, decisions (pure functions of now) -------------


@dataclass(frozen=True)
class Occurrence:
    """One scheduled run: when it was due and the last moment it may still start."""

    schedule: Schedule
    at: datetime
    deadline: datetime

    @property
    def day(self) -> date:
        return self.at.date()


def deadline_of(schedule: Schedule, slot: Slot) -> datetime:
    """The last moment the run of ``slot`` may start. A slot moved by a spring DST gap keeps
    its window: its deadline moves by the same amount (02:30 run at 03:00, deadline 03:00
    becomes 03:30); a deadline that falls in a gap is the first valid time after it."""
    if not schedule.deadline:
        return (utc(slot.at) + DEFAULT_GRACE).astimezone(slot.at.tzinfo)
    nominal = slot.nominal
    deadline = datetime.combine(nominal.date(), _clock_time(schedule.deadline), tzinfo=nominal.tzinfo)
    if deadline.replace(tzinfo=None) <= nominal.replace(tzinfo=None):  # e.g. cron 23:00, deadline 01:00: the next morning
        deadline += timedelta(days=1)
    return first_valid(deadline + slot.shift)  # aware + timedelta moves the wall clock, as cron reads it


def occurrence_of(schedule: Schedule, slot: Slot) -> Occurrence:
    return Occurrence(schedule, slot.at, deadline_of(schedule, slot))


def approval_moment(occurrence: Occurrence) -> datetime | None:
    value = occurrence.schedule.approval_deadline
    if not value:
        return None
    moment = datetime.combine(occurrence.day, _clock_time(value), tzinfo=occurrence.at.tzinfo)
    return moment - timedelta(days=1) if moment >= occurrence.at.replace(fold=0) else moment


def latest_occurrence(schedule: Schedule, zone: ZoneInfo, now: datetime) -> Occurrence | None:
    """The schedule's most recent fire time at or before ``now`` (within a day)."""
    trigger = send_trigger(schedule, zone)
    latest = None
    slot = trigger.next_slot(None, (utc(now) - LOOKBACK).astimezone(zone))
    while slot is not None and utc(slot.at) <= utc(now):
        latest = slot
        slot = trigger.next_slot(slot.at, slot.at)
    return occurrence_of(schedule, latest) if latest else None


def next_occurrence(schedule: Schedule, zone: ZoneInfo, now: datetime) -> Occurrence | None:
    """The schedule's first fire time at or after ``now``."""
    slot = send_trigger(schedule, zone).next_slot(None, now.astimezone(zone))
    return occurrence_of(schedule, slot) if slot else None


def first_slot_on(settings: Settings, day: date) -> tuple[str, datetime] | None:
    """The earliest slot of any schedule on ``day`` (local), with that schedule's name; None
    when no schedule runs that day. When an edition of ``day`` is due to go out, as people
    plan it: a new edition's default compiled time and "can go from" are read from here."""
    zone = settings.timezone
    start = datetime.combine(day, time(0), tzinfo=zone)
    found: tuple[str, datetime] | None = None
    for schedule in settings.schedules:
        slot = send_trigger(schedule, zone).next_slot(None, start)
        if slot is None or slot.nominal.date() != day:
            continue
        if found is None or utc(slot.at) < utc(found[1]):
            found = (schedule.name, slot.at)
    return found


def grace_seconds(schedule: Schedule, zone: ZoneInfo, fire_time: datetime) -> int:
    """misfire_grace_time for the firing at (or first after) ``fire_time``: from its time to
    its own deadline, so APScheduler runs a late job until the deadline and never after it.

    Per firing: windows differ across a DST change (cron 01:30, deadline 04:30 is 2 h of
    real time on the spring day, 4 h on the autumn one), so the service sets it again for
    each next fire (app.service.refresh_grace), never once for good."""
    occurrence = next_occurrence(schedule, zone, fire_time)
    if occurrence is None:
        return int(DEFAULT_GRACE.total_seconds())
    return max(1, int((utc(occurrence.deadline) - utc(occurrence.at)).total_seconds()))


class DispatchList(Protocol):
    """What the scheduler's decisions read from the ledger: the dispatches of a day."""

    def list_dispatches(self, edition_date: date | None = None, since: date | None = None) -> list[DispatchRecord]: ...


def edition_dispatches(ledger: DispatchList, day: date) -> list[DispatchRecord]:
    """The day's scheduled-edition dispatches (tests and urgent messages do not count)."""
    return [d for d in ledger.list_dispatches(day) if d.kind_of is DispatchKind.EDITION]


class Action(StrEnum):
    SEND = "send"  # due and before the deadline: create the dispatch, or resume it
    MISSED = "missed"  # the deadline passed and no dispatch exists
    INCOMPLETE = "incomplete"  # the dispatch was interrupted and the deadline passed


@dataclass(frozen=True)
class Due:
    occurrence: Occurrence
    action: Action
    dispatch: DispatchRecord | None = None


def due_runs(settings: Settings, ledger: DispatchList, now: datetime) -> list[Due]:
    """What the latest run of each schedule still needs, judged from the ledger alone."""
    today = now.astimezone(settings.timezone).date()
    dues = []
    for schedule in settings.schedules:
        occurrence = latest_occurrence(schedule, settings.timezone, now)
        if occurrence is None:
            continue
        late = utc(now) > utc(occurrence.deadline)
        if late and occurrence.day != today:
            continue  # an earlier day's run: its own day judged it
        existing = edition_dispatches(ledger, occurrence.day)
        unfinished = next((d for d in existing if d.finished_at is None), None)
        if existing and unfinished is None:
            continue  # sent
        if late:
            dues.append(Due(occurrence, Action.INCOMPLETE if unfinished else Action.MISSED, unfinished))
        else:
            dues.append(Due(occurrence, Action.SEND, unfinished))
    return dues

"""The clock a run of a dispatch reads and waits by: injectable, so tests move time instead of waiting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """Wall clock and sleep, injectable so tests can move time instead of waiting."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class StoppableClock(Clock):
    """The wall clock, whose sleep (a rate slot, a retry wait) ends at once on ``stop``:
    a stopped send must not sit out a wait before it records what it has and exits."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)

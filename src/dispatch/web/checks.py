"""Password checks, bounded: each argon2id check holds its profile's memory (64 MiB for the
standard profile) and a processor for a fifth of a second, so forty sign-ins at once would
take gigabytes from the process that also sends. At most ``at_once`` run together (sized
to `web.password_check_memory_mb`), on threads of their own at a lower CPU priority, so the
pages of people already signed in keep their processor; a few more wait their turn, briefly;
anyone beyond that is asked to try again (``Busy``) rather than queued without end.

The wait is in the event loop, not in a thread: waiting sign-ins hold no thread of the pool
the other pages run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from dispatch.errors import ConsoleError

T = TypeVar("T")
NICENESS = 5  # the checks' threads give way to the console's pages and to sending (a third of their weight)


class Busy(ConsoleError):
    """Too many password checks running and waiting: the person is asked to try again."""


def _lower_priority() -> None:
    # Linux keeps a nice value per thread, and argon2's own lane threads inherit it. A
    # platform without per-thread priority keeps the bound on memory all the same.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class PasswordChecks:
    def __init__(self, at_once: int, *, waiting: int | None = None, wait_seconds: float = 10.0) -> None:
        self.at_once = at_once
        # How many may wait for a turn (beyond those running): a coroutine each, next to nothing;
        # the wait itself is bounded.
        self.waiting = 16 * at_once if waiting is None else waiting
        self.wait_seconds = wait_seconds
        self._turns = asyncio.Semaphore(at_once)
        self._queued = 0
        self._threads = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="password-check",
                                           initializer=_lower_priority)

    async def run(self, work: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``work(*args, **kwargs)`` (which checks a password) in its turn; Busy when too many
        wait already or no turn came within ``wait_seconds``."""
        if self._queued >= self.waiting:
            raise Busy("too many sign-ins at once")
        self._queued += 1
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._turns.acquire()
        except TimeoutError:
            raise Busy("no turn for a password check in time") from None
        finally:
            self._queued -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(work, *args, **kwargs))
        finally:
            self._turns.release()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

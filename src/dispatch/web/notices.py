"""Confirmations shown once: what a finished action says ("Godkänd 14:20.", "Sparad 14:21.")
is kept here, on the server, for the session that did it, and taken by the next view of the
page the action returns to (post, redirect, get). A reload of that page shows the current
state only: nothing in the address repeats the confirmation, and the time in it is the
action's, not the reload's.

Kept in the console's process: a confirmation lives for seconds, between a redirect and the
page it leads to, and a lost one (a restart in between) costs a sentence, not a fact; the
ledger's audit log holds what was done.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dispatch.web.sessions import Session

KEEP_FOR = timedelta(minutes=10)  # a confirmation nobody came back for is dropped
MOST_SESSIONS = 2000  # sessions with a confirmation waiting, at most (the oldest are dropped)


@dataclass(frozen=True)
class Notice:
    """One finished action, as a value: what (a key the page words), where it is shown, when
    it was done, and its parameters."""

    done: str
    page: str  # the path of the page that shows it
    at: datetime
    params: tuple[tuple[str, str], ...] = ()


@dataclass
class Notices:
    """Waiting confirmations per signed-in session (the user's name and the session's own
    token: another browser of the same person does not see them)."""

    _waiting: OrderedDict[tuple[str, str], list[Notice]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, session: Session | None, notice: Notice) -> None:
        if session is None:
            return
        key = (session.user, session.csrf)
        with self._lock:
            waiting = self._waiting.pop(key, [])
            waiting = [n for n in waiting if n.page != notice.page] + [notice]  # the latest action on a page speaks
            self._waiting[key] = waiting
            while len(self._waiting) > MOST_SESSIONS:
                self._waiting.popitem(last=False)

    def take(self, session: Session | None, page: str, now: datetime) -> Notice | None:
        """The confirmation waiting for ``page`` in this session, removed: shown once."""
        if session is None:
            return None
        key = (session.user, session.csrf)
        with self._lock:
            waiting = self._waiting.get(key)
            if not waiting:
                return None
            found = next((n for n in waiting if n.page == page), None)
            rest = [n for n in waiting if n is not found and now - n.at <= KEEP_FOR]
            if rest:
                self._waiting[key] = rest
            else:
                del self._waiting[key]
        if found is None or now - found.at > KEEP_FOR:
            return None
        return found

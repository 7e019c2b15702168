"""What one run of a dispatch sends (the plan) and how (the policy), decided before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dispatch.email.message import PreparedMessage
from dispatch.models import InvalidEntry, Recipient
from dispatch.values import DispatchKind

LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Plan:
    """What one dispatch sends, decided before anything is sent."""

    name: str
    edition_date: date
    revision: int
    kind: str
    subject: str
    source: str
    created_by: str
    recipients: tuple[Recipient, ...]
    failed_inputs: tuple[InvalidEntry, ...]  # recorded as failed, never sent
    prepared: PreparedMessage
    envelope_sender: str
    group_name: str
    content_hash: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_id: int | None = None  # a recorded approval: revoking it stops the sending
    by_front_matter: bool = False  # the file's 'status: approved' let it go (approval: front_matter)
    lists: tuple[str, ...] = ()
    verp_key: str | None = None  # set: each message's envelope sender carries a VERP token (verp.py)

    @property
    def kind_of(self) -> DispatchKind:
        """What the dispatch is (``kind`` is the stored key it is read from)."""
        return DispatchKind.of(self.kind)


@dataclass(frozen=True)
class SendPolicy:
    connections: int = 1
    recipients_per_message: int = 1
    rate_per_minute: float = 0
    retry_minutes: tuple[float, ...] = (1, 2, 5, 10, 30)
    retry_window: timedelta = timedelta(hours=24)
    linger: timedelta = timedelta(0)  # how long this run waits for due retries before handing over
    quota_wait: timedelta = timedelta(hours=1)  # Exchange's daily quota: wait, do not fail
    lease: timedelta = LEASE  # how long claimed rows stay ours without renewal
    # Session trouble (the relay, not a recipient): how long the dispatch waits before the
    # next try when no connection can be had, growing while it lasts ...
    session_backoff: tuple[float, ...] = (5, 10, 30, 60, 120, 300)
    # ... and how long it pauses after a permanent refusal (5xx to MAIL FROM, refused
    # credentials, a TLS failure), which someone has to fix.
    session_pause: timedelta = timedelta(minutes=10)
    wait_out_pauses: bool = False  # serve waits out such a pause until its deadline; a command does not
    retry_now: bool = False  # the first pass also takes rows whose next attempt is later (a person asked)

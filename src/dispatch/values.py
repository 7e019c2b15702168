"""The facts the use cases return, for each front door to word: the command line in English
(``dispatch.wording``), the console in Swedish (the gettext catalogue in ``locale/``).

Nothing here is a sentence. A fact is a code and its parameters, or a value with an explicit
state; a front door looks the code up in its catalogue. So rewording a message is a change to a
catalogue, never to a program that reads it, and a new state is a new member here that every
catalogue must word (tests/test_wording.py enumerates them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType

# A parameter is a value, or a fact of its own that the front door words in the same language
# (a refusal "not sendable: <why>" carries the approval rule's reason as a fact).
Params = Mapping[str, "str | int | float | Fact"]


def _frozen(params: Mapping[str, str | int | float | Fact] | None) -> Params:
    return MappingProxyType(dict(params or {}))


@dataclass(frozen=True)
class Fact:
    """Something the program says: a message code (a key of the catalogues) and its parameters.

    ``count`` chooses the plural form where the wording has one ("1 sekund", "2 sekunder")."""

    code: str
    params: Params = field(default_factory=lambda: _frozen(None))
    count: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", _frozen(self.params))

    def __hash__(self) -> int:  # problems are told apart in sets and dicts; a mappingproxy has no hash
        return hash((self.code, tuple(sorted(self.params.items())), self.count))

    def __reduce__(self) -> tuple[type[Fact], tuple[str, dict[str, str | int | float | Fact], int | None]]:
        # A mappingproxy does not pickle, and facts cross processes (the console's checks run
        # in worker processes and return their problems).
        return Fact, (self.code, dict(self.params), self.count)

    @staticmethod
    def of(code: str, *, count: int | None = None, **params: str | int | float | Fact) -> Fact:
        return Fact(code, _frozen(params), count)


class DispatchKind(StrEnum):
    """What a dispatch is. Stored in the ledger's ``kind`` column as the prefix of its key
    (``edition``, ``urgent-SLUG-HASH``, ``test-TIMESTAMP``); ``of`` reads it back."""

    EDITION = "edition"
    URGENT = "urgent"
    TEST = "test"

    def stored(self, detail: str = "") -> str:
        """The ``kind`` column's value for a dispatch of this kind: the value, and for urgent
        and test dispatches what tells them apart (``urgent-SLUG-HASH``) after a dash."""
        return f"{self.detail_prefix}{detail}" if detail else self.value

    @property
    def detail_prefix(self) -> str:
        """How a stored kind with a detail begins (``urgent-``)."""
        return f"{self.value}-"

    @staticmethod
    def of(stored: str) -> DispatchKind:
        for kind in (DispatchKind.URGENT, DispatchKind.TEST):
            if stored == kind.value or stored.startswith(kind.detail_prefix):
                return kind
        return DispatchKind.EDITION


class RunState(StrEnum):
    """Where a dispatch's sending stands, as every screen must say it."""

    QUEUED = "queued"  # recipients wait and no send runs (resume it, or serve takes it up)
    SENDING = "sending"
    WAITING_FOR_URGENT = "waiting_for_urgent"  # gives way to an urgent message; goes on by itself
    PAUSED_BY_RELAY = "paused_by_relay"  # the relay does not take messages; see RelayTrouble
    STOPPING = "stopping"
    STOPPED = "stopped"
    DONE = "done"  # every recipient accepted
    INCOMPLETE = "incomplete"  # ended with recipients failed or still waiting for a retry
    FAILED = "failed"  # the send could not run at all (a problem with its input or the ledger)


class RelayCause(StrEnum):
    """Why the relay did not take messages (the session's trouble, not one recipient's)."""

    CONNECTION_REFUSED = "connection_refused"
    UNREACHABLE = "unreachable"  # no route, name does not resolve, network down
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"  # the server closed the connection, or it was lost
    TLS = "tls"  # no STARTTLS, a certificate that does not verify
    AUTHENTICATION = "authentication"
    TEMPORARY_REPLY = "temporary_reply"  # 4xx for the session (421, 451 ...)
    PERMANENT_REPLY = "permanent_reply"  # 5xx for the session: someone must fix it
    QUOTA = "quota"  # Exchange Online's daily submission quota
    OTHER = "other"


@dataclass(frozen=True)
class RelayTrouble:
    """Stored in the ledger beside the recipients it held back (columns, not a prefixed reply)."""

    cause: RelayCause
    host: str
    detail: str  # the server's reply or the error, exact, for the technical detail
    permanent: bool = False


@dataclass(frozen=True)
class SendPlan:
    """What a send is about to do, before the first message: worded by each front door (the
    command line's ``plan:`` line, the console's confirmation)."""

    recipients: int  # who gets it now
    messages: int
    per_message: int  # Bcc batch size; 1 = one message per recipient
    connections: int
    relay: str  # host:port, or the Maildir's path
    maildir: bool = False
    rate_per_minute: float = 0  # 0 = no limit (and no estimate)
    seconds: float | None = None  # the estimated duration at that rate
    already: int = 0  # accepted earlier: skipped


@dataclass(frozen=True)
class DispatchLabel:
    """A dispatch as people name it ("Rapporten tis 8 dec, version 2", "Brådskande: <subject>",
    "Test till eva"); each front door words it. The key (``name``) is technical detail."""

    name: str
    kind: DispatchKind
    day: date
    revision: int = 1
    subject: str = ""
    test_to: str = ""  # a test send: the person it went to

    @staticmethod
    def of(name: str, kind: str, edition_date: date | str, revision: int, subject: str, created_by: str) -> DispatchLabel:
        day = edition_date if isinstance(edition_date, date) else date.fromisoformat(edition_date)
        return DispatchLabel(name, DispatchKind.of(kind), day, revision, subject, created_by)

    @property
    def code(self) -> str:
        if self.kind is DispatchKind.EDITION:
            return "label.edition" if self.revision <= 1 else "label.correction"
        return f"label.{self.kind.value}"


@dataclass(frozen=True)
class Progress:
    """A dispatch's sending, from the ledger and the run of it (if one runs in this process)."""

    name: str  # the dispatch's key: only in a technical detail on screen
    kind: DispatchKind
    state: RunState
    total: int
    accepted: int
    waiting: int
    failed: int
    rate_per_minute: int | None = None  # None when not sending (no rate and no time left shown)
    seconds_left: int | None = None
    trouble: RelayTrouble | None = None
    next_try: datetime | None = None
    urgent_ahead: str | None = None  # the subject of the urgent message being sent first
    started_by: str = ""
    error: Fact | None = None
    label: DispatchLabel | None = None
    subject: str = ""
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    plan: SendPlan | None = None  # the plan of this process's run of it
    held_by_relay: int = 0  # recipients waiting because the relay did not take them (trouble says why)
    held_elsewhere: int = 0  # recipients another run holds (a node, serve, a run that failed) ...
    held_until: datetime | None = None  # ... until then at the latest
    next_attempt: datetime | None = None  # the next retry of a deferred recipient
    relay_permanent: bool = False  # the relay's trouble needs fixing, not time
    here: bool = False  # a run of this process sends it (it can be stopped here)

    @property
    def final(self) -> bool:
        """Nothing is sending now (a person or serve may start it again)."""
        return self.state in (RunState.QUEUED, RunState.STOPPED, RunState.DONE, RunState.INCOMPLETE, RunState.FAILED)


class Role(StrEnum):
    """A console account's role; each includes the rights of those before it. The ledger
    stores the value (the same strings as before there was an enum)."""

    EDITOR = "editor"
    APPROVER = "approver"
    OPERATOR = "operator"

    @classmethod
    def named(cls, value: str | None) -> Role | None:
        """The role a stored or configured value names; None for none (an account whose
        role was taken away at the identity provider) or one this program does not know."""
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def permissions(self) -> frozenset[Permission]:
        return PERMISSIONS[self]


class Permission(StrEnum):
    """What a console account may do; the one check on every console route."""

    READ = "read"  # every page: today, editions, history, recipients
    EDIT = "edit"  # save an edition, send a test to oneself, start a correction
    APPROVE = "approve"  # approve and revoke an edition's approval
    SEND = "send"  # send, stop, resume, try again now; urgent messages
    AUDIT = "audit"  # read the audit log
    LISTS = "lists"  # accept a directory list's held change (the shrink guard's); operators


# The one place roles become permissions: each role has those of the role before it.
PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType({
    Role.EDITOR: frozenset({Permission.READ, Permission.EDIT}),
    Role.APPROVER: frozenset({Permission.READ, Permission.EDIT, Permission.APPROVE}),
    Role.OPERATOR: frozenset(Permission),
})

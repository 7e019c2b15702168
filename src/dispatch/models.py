"""The values that flow between the stages. Frozen, so no stage can change another's input."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from dispatch.values import DispatchKind, Fact, Permission, Role


@dataclass(frozen=True)
class Section:
    heading: str
    html: str
    text: str
    anchor: str
    line: int = 0
    markdown: str = ""  # the section as written: re-rendered when its bullets are marked new or changed
    in_email: bool = True  # a standing section with in_email: false is on the intranet page only


@dataclass(frozen=True)
class NewsPoint:
    """One point of the "what is new" box at the top: a marked bullet's first words, and the
    id of the section it is in (the box links there)."""

    marks: tuple[str, ...]  # "new" or "changed" (since the day before), and/or "corrected"
    text: str
    anchor: str


@dataclass(frozen=True)
class Edition:
    """One day's report (or an urgent message), fully assembled and ready to render."""

    date: date
    revision: int
    status: str
    urgent: bool
    compiled: datetime
    title: str
    subject: str
    preheader: str
    date_label: str
    compiled_label: str
    lead_html: str
    lead_text: str
    sections: tuple[Section, ...]
    standing: tuple[Section, ...]
    lists: tuple[str, ...] | None
    source: Path
    source_text: str
    correction: str | None = None
    author: str | None = None  # the front matter's 'by': who wrote this content
    markers: bool = True  # the front matter's 'markers': mark what is new since the previous edition
    headline: str | None = None  # the front matter's 'headline': the day's news, for the subject
    # The line that says what is new ("3 nya punkter sedan …"), "" for none; None until the
    # previous edition has been compared (app.changes.with_news: it needs the ledger).
    news: str | None = None
    # The marked bullets, in document order, for that box ("news" is its first line).
    news_points: tuple[NewsPoint, ...] = ()
    line_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return "urgent" if self.urgent else "edition"

    @property
    def email_standing(self) -> tuple[Section, ...]:
        """The standing sections the email carries (``standing`` is the intranet page's, all of them)."""
        return tuple(s for s in self.standing if s.in_email)

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True)
class Recipient:
    address: str  # as written to RCPT TO and To:, domain normalised
    name: str
    key: str  # folded form: two entries with the same key are one person
    source: str = ""  # path:line where first seen


@dataclass(frozen=True)
class Rendered:
    """An edition rendered once: inlined HTML and the plain-text alternative."""

    subject: str
    html: str
    text: str


class State(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEFERRED = "deferred"
    UNKNOWN = "unknown"
    FAILED = "failed"
    # Accepted by the relay, then returned by the recipient's server (a hard bounce read from
    # the bounce mailbox): delivered as far as sending goes, but the person did not get it.
    BOUNCED = "bounced"


@dataclass(frozen=True)
class Outcome:
    """What the server said about one recipient of one attempt."""

    state: State
    reply: str

    @property
    def quota_exceeded(self) -> bool:
        """Exchange Online's daily submission quota is used up: a wait, not a failure."""
        return QUOTA_EXCEEDED in self.reply.lower()


QUOTA_EXCEEDED = "submissionquotaexceeded"  # in 554 5.2.0 ...SubmissionQuotaExceededException


@dataclass(frozen=True)
class Delivery:
    """One ledger row: one recipient of one dispatch."""

    id: int
    key: str
    address: str
    name: str
    state: State
    attempts: int
    reply: str
    message_id: str
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    first_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Approval:
    """One recorded approval of one content of an edition."""

    id: int
    edition_date: date
    revision: int
    content_hash: str
    approved_by: str
    approved_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class InvalidEntry:
    """An entry of a recipient list that is no usable address (at ``path``:``line``), with what
    it said and why it is refused. It is recorded in the ledger as failed, so the office sees it,
    and never put back in the queue: resending cannot help it.

    Its key is made here (``key``) and read only by the ledger (``KEY_PREFIX``): ledgers written
    before this type hold the same keys, so they read the same."""

    KEY_PREFIX: ClassVar[str] = "invalid:"

    path: str
    line: int
    address: str
    reason: str

    @property
    def key(self) -> str:
        return f"{self.KEY_PREFIX}{self.path}:{self.line}"


@dataclass(frozen=True)
class NewRecipient:
    """A row to add to a dispatch: one recipient (or an invalid entry, recorded failed)."""

    key: str
    address: str
    name: str
    message_id: str
    state: State = State.PENDING
    reply: str = ""


@dataclass(frozen=True)
class DispatchRecord:
    """One dispatch as the ledger keeps it."""

    id: int
    name: str
    edition_date: date
    revision: int
    kind: str  # as stored: the dispatch key's last part (``edition``, ``urgent-SLUG-HASH``, ``test-STAMP``)
    subject: str
    source: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    content_hash: str | None = None
    approved_by: str | None = None  # the person whose recorded approval let it go
    approved_at: datetime | None = None
    approval_id: int | None = None
    lists: tuple[str, ...] = ()
    by_front_matter: bool = False  # let go by the file's 'status: approved' (approval: front_matter), no person

    @property
    def kind_of(self) -> DispatchKind:
        """What the dispatch is, read from ``kind``."""
        return DispatchKind.of(self.kind)


@dataclass(frozen=True)
class User:
    """A console account. ``password_hash`` is an argon2id hash (None: single sign-on only)."""

    name: str
    email: str
    role: str  # as stored: a Role's value, or "" (no role: taken away at the identity provider)
    password_hash: str | None
    disabled: bool
    failed_sign_ins: int
    locked_until: datetime | None
    created_at: datetime
    sso_subject: str | None = None
    session_generation: int = 0  # a session begun in an older generation has ended

    def may(self, permission: Permission) -> bool:
        """What the account's role permits (values.PERMISSIONS); a disabled account, or one
        without a role, nothing."""
        role = Role.named(self.role)
        return not self.disabled and role is not None and permission in role.permissions


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    user: str
    action: str
    target: str
    content_hash: str | None
    detail: str  # in English, as the command line and the logs read it
    facts: tuple[Fact, ...] = ()  # the same as facts, for the console to word; () for entries from before them


@dataclass(frozen=True)
class KeptText:
    """A text kept aside when its save was refused (a conflict): nobody's words are lost."""

    id: int
    edition_date: date
    user: str
    kept_at: datetime
    text: str
    reason: str

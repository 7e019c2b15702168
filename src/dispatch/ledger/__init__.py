"""The ledger: dispatches and one row per recipient, SQLite or PostgreSQL through SQLAlchemy Core.

The ledger, not any in-memory queue, decides what is sent: a recipient is ``sent`` only
after the server accepted the message, and a resumed dispatch sends only to rows that are
not. Rows are claimed with a lease (owner, expiry) committed before any network I/O, so
several processes can share one ledger; a result is written only by the lease owner.

A package by role: ``database`` (engine, dialect, schema on open, identity), ``records``
(dispatches, contents, authors, approvals), ``queue`` (recipient rows), ``coordination``
(leases between runs, urgency, rate slots) and ``schema``. ``Ledger`` is the one face the
rest of the program holds; every operation's database error becomes one LedgerError that
names the ledger and the operation.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dispatch.errors import LedgerBusy, LedgerError
from dispatch.ledger import accounts, bounces, coordination, queue, records
from dispatch.ledger.bounces import DeliveryRef
from dispatch.ledger.database import Database, Timeouts, _describe, shown_url, state_dir
from dispatch.ledger.records import dispatch_name
from dispatch.ledger.schema import (
    MIGRATIONS,
    SCHEMA_1,
    SCHEMA_VERSION,
    SENDABLE,
    approvals,
    contents,
    deliveries,
    dispatches,
    edits,
    identity,
    metadata,
    relay_slots,
    schema_info,
)
from dispatch.models import Approval, AuditEntry, Delivery, DispatchRecord, KeptText, NewRecipient, Outcome, User
from dispatch.values import RelayTrouble


class Ledger:
    """The ledger's one face: each method is its role module's function on this database."""

    def __init__(self, url: str, *, allow_new: bool = False, timeouts: Timeouts | None = None) -> None:
        self.db = Database(url, allow_new=allow_new, timeouts=timeouts)
        self.url, self.shown, self.identity = url, self.db.shown, self.db.identity
        self.is_postgres = self.db.is_postgres

    @classmethod
    def over(cls, database: Database) -> Ledger:
        """A ledger on a database opened before (an App's, shared by its sessions): no new
        engine, no schema check; ``close`` is the database owner's, not this face's."""
        ledger = cls.__new__(cls)
        ledger.db = database
        ledger.url, ledger.shown, ledger.identity = database.url, database.shown, database.identity
        ledger.is_postgres = database.is_postgres
        return ledger

    def close(self) -> None:
        self.db.close()

    def end_writer(self) -> None:
        """Close the calling thread's outcome connection (its committer is finishing)."""
        self.db.end_writer()

    def check_file(self) -> None:
        self.db.check_file()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def open_dispatch(
        self, name: str, edition_date: date, revision: int, kind: str, subject: str,
        source: str, created_by: str, now: datetime, *, content_hash: str | None = None,
        approved_by: str | None = None, approved_at: datetime | None = None, approval_id: int | None = None,
        lists: tuple[str, ...] = (),
    ) -> tuple[DispatchRecord, bool]:
        """The dispatch of this key, created if it does not exist yet (insert-or-nothing)."""
        return records.open_dispatch(self.db, name, edition_date, revision, kind, subject, source, created_by, now,
                                     content_hash=content_hash, approved_by=approved_by, approved_at=approved_at,
                                     approval_id=approval_id, lists=lists)

    def find_dispatch(self, name: str | None = None) -> DispatchRecord | None:
        return records.find_dispatch(self.db, name)

    def list_dispatches(self, edition_date: date | None = None, since: date | None = None) -> list[DispatchRecord]:
        return records.list_dispatches(self.db, edition_date, since)

    def dispatches_with_content(self, content_hash: str, kind_prefix: str) -> list[DispatchRecord]:
        """Dispatches of this kind that send exactly this content, oldest first."""
        return records.dispatches_with_content(self.db, content_hash, kind_prefix)

    def finish_dispatch(self, dispatch_id: int, now: datetime) -> bool:
        """Mark the dispatch finished; True only for the one caller that did it first."""
        return records.finish_dispatch(self.db, dispatch_id, now)

    def keep_content(self, dispatch_name: str, subject: str, source: str, source_text: str,
                     html: str, text: str, now: datetime, *, content_hash: str | None = None,
                     canonical: str | None = None) -> bool:
        """Store the content of a dispatch unless this exact content is stored already."""
        return records.keep_content(self.db, dispatch_name, subject, source, source_text, html, text, now,
                                    content_hash=content_hash, canonical=canonical)

    def contents(self, dispatch_name: str) -> list[dict[str, Any]]:
        """The stored versions of a dispatch's content, oldest first."""
        return records.contents(self.db, dispatch_name)

    def record_edit(self, edition_date: date, content_hash: str, author: str, now: datetime) -> str:
        """Remember who first wrote this content of the edition; returns that author (the"""
        return records.record_edit(self.db, edition_date, content_hash, author, now)

    def author_of(self, edition_date: date, content_hash: str) -> str | None:
        return records.author_of(self.db, edition_date, content_hash)

    def approve(self, edition_date: date, revision: int, content_hash: str, by: str, now: datetime) -> Approval:
        return records.approve(self.db, edition_date, revision, content_hash, by, now)

    def revoke_approvals(self, edition_date: date, by: str, now: datetime) -> int:
        """Revoke every standing approval of the edition; returns how many there were."""
        return records.revoke_approvals(self.db, edition_date, by, now)

    def approval_revoked(self, approval_id: int) -> bool:
        return records.approval_revoked(self.db, approval_id)

    def approvals(self, edition_date: date) -> list[Approval]:
        """Every approval of the edition, revoked ones included, newest first."""
        return records.approvals(self.db, edition_date)

    def all_approvals(self, since: date | None = None) -> list[Approval]:
        """Every approval of every edition (from ``since``), newest first."""
        return records.approvals(self.db, None, since)

    def add_recipients(self, dispatch_id: int, recipients: Iterable[NewRecipient], now: datetime, chunk: int = 2000) -> int:
        """Insert rows that do not exist yet; existing rows (already sent or not) are left alone."""
        return queue.add_recipients(self.db, dispatch_id, recipients, now, chunk)

    def claim(self, dispatch_id: int, owner: str, now: datetime, lease: timedelta, limit: int,
              waited_since: datetime | None = None) -> list[Delivery]:
        """Lease up to ``limit`` sendable rows to ``owner`` and commit before any I/O."""
        return queue.claim(self.db, dispatch_id, owner, now, lease, limit, waited_since)

    def renew(self, owner: str, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]:
        """Extend this owner's leases on ``ids``; returns the ids extended."""
        return queue.renew(self.db, owner, ids, now, lease)

    def release(self, owner: str, ids: Sequence[int] | None = None) -> int:
        """Give back this owner's leases on ``ids`` (None: all of them, the run has ended)."""
        return queue.release(self.db, owner, ids)

    def sent_by(self, dispatch_id: int, owner: str) -> int:
        """Recipients of the dispatch whose acceptance this owner recorded."""
        return queue.sent_by(self.db, dispatch_id, owner)

    def others_leases_end(self, dispatch_id: int, owner: str) -> tuple[int, datetime | None, datetime | None]:
        """Sendable rows another run holds now, and when the first and the last of those leases end."""
        return queue.others_leases_end(self.db, dispatch_id, owner)

    def hold(self, owner: str, ids: Sequence[int], until: datetime, trouble: RelayTrouble, now: datetime) -> None:
        """Put leased rows back to wait until ``until`` because of the relay's trouble, not the recipient."""
        return queue.hold(self.db, owner, ids, until, trouble, now)

    def hold_waiting(self, dispatch_id: int, until: datetime, trouble: RelayTrouble, now: datetime) -> int:
        """The dispatch's other due rows that nobody holds wait too, for the same trouble."""
        return queue.hold_waiting(self.db, dispatch_id, until, trouble, now)

    def record(self, owner: str, results: Sequence[tuple[int, Outcome, datetime | None]], now: datetime) -> int:
        """Write attempt outcomes in one transaction; only rows this owner still leases."""
        return queue.record(self.db, owner, results, now)

    def requeue_failed(self, dispatch_id: int, now: datetime) -> int:
        """Failed rows back to pending, on purpose (after the cause was fixed). Entries that"""
        return queue.requeue_failed(self.db, dispatch_id, now)

    def retry_waiting_now(self, dispatch_id: int, now: datetime) -> int:
        """Deferred and unknown rows due now (an operator's "try again now")."""
        return queue.retry_waiting_now(self.db, dispatch_id, now)

    def states_by_key(self, dispatch_id: int) -> dict[str, str]:
        """Each recipient key of the dispatch and its state (for a dry run's exact plan)."""
        return queue.states_by_key(self.db, dispatch_id)

    def counts(self, dispatch_id: int) -> dict[str, int]:
        return queue.counts(self.db, dispatch_id)

    def deliveries(self, dispatch_id: int) -> list[Delivery]:
        return queue.listing(self.db, dispatch_id)

    def rows(self, dispatch_id: int) -> list[dict[str, Any]]:
        """Every column of every row, for status --json and export."""
        return queue.rows(self.db, dispatch_id)

    def held_by_relay(self, dispatch_id: int) -> tuple[RelayTrouble, int] | None:
        """The relay's trouble that last held deferred recipients back, and how many; or None."""
        return queue.held_by_relay(self.db, dispatch_id)

    def next_due(self, dispatch_id: int) -> datetime | None:
        """When the earliest deferred row may be retried (None: nothing waits)."""
        return queue.next_due(self.db, dispatch_id)

    def due_unleased(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows that are due now and that no run holds."""
        return queue.due_unleased(self.db, dispatch_id, now)

    def leased_by_others(self, dispatch_id: int, owner: str, now: datetime) -> int:
        """Rows of the dispatch that another run holds right now (its lease has not expired)."""
        return queue.leased_by_others(self.db, dispatch_id, owner, now)

    def reap_dead_leases(self, host: str, alive: Callable[[int], bool]) -> int:
        """Free leases held by processes of this host that no longer run (a crash or"""
        return coordination.reap_dead_leases(self.db, host, alive)

    def orphaned(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows whose lease ran out unrecorded: a node died (or stalled) holding"""
        return coordination.orphaned(self.db, dispatch_id, now)

    def urgent_waiting(self, now: datetime, horizon: timedelta = timedelta(hours=2)) -> bool:
        """Is an urgent dispatch still sending? Other dispatches give way to it (see urgent_ahead)."""
        return coordination.urgent_ahead(self.db, now, horizon) is not None

    def urgent_ahead(self, now: datetime, horizon: timedelta = timedelta(hours=2)) -> str | None:
        """The subject of the urgent dispatch other dispatches give way to now; None when none sends."""
        return coordination.urgent_ahead(self.db, now, horizon)

    def reserve_slot(self, relay: str, interval: timedelta, clock: Callable[[], datetime]) -> datetime:
        """The moment this process may start its next message through ``relay``."""
        return coordination.reserve_slot(self.db, relay, interval, clock)


    # -- the console: accounts, audit log, kept texts (accounts.py) --------------------------

    def add_user(self, name: str, email: str, role: str, password_hash: str | None, now: datetime) -> User:
        return accounts.add_user(self.db, name, email, role, password_hash, now)

    def user(self, name: str) -> User | None:
        return accounts.user(self.db, name)

    def user_by_email(self, email: str) -> User | None:
        return accounts.user_by_email(self.db, email)

    def users(self) -> list[User]:
        return accounts.list_users(self.db)

    def add_sso_user(self, name: str, email: str, role: str, subject: str, now: datetime, *,
                     disabled: bool = False) -> User:
        return accounts.add_sso_user(self.db, name, email, role, subject, now, disabled=disabled)

    def user_by_sso_subject(self, subject: str) -> User | None:
        return accounts.user_by_sso_subject(self.db, subject)

    def update_user(self, name: str, **values: Any) -> bool:
        return accounts.update_user(self.db, name, **values)

    def take_sign_in_attempt(self, name: str, limit: int, now: datetime) -> int | None:
        """Count an attempt as failed before its password is checked: its number, or None
        when locked or ``limit`` attempts are counted already."""
        return accounts.take_sign_in_attempt(self.db, name, limit, now)

    def lock_if_at_limit(self, name: str, limit: int, lock_until: datetime) -> bool:
        """After a wrong password: lock if ``limit`` failures are counted; True if it locked."""
        return accounts.lock_if_at_limit(self.db, name, limit, lock_until)

    def end_sessions(self, name: str) -> bool:
        """Every session of the account ends (its session generation moves on)."""
        return accounts.end_sessions(self.db, name)

    def record_audit(self, at: datetime, user: str, action: str, target: str = "",
                     content_hash: str | None = None, detail: str = "") -> None:
        accounts.record_audit(self.db, at, user, action, target, content_hash, detail)

    def audit_log(self, limit: int = 500, *, action: str | None = None, target: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        return accounts.audit_log(self.db, limit, action=action, target=target)

    def keep_text(self, edition_date: date, user: str, text: str, reason: str, now: datetime) -> int:
        return accounts.keep_text(self.db, edition_date, user, text, reason, now)

    def kept_texts(self, edition_date: date) -> list[KeptText]:
        return accounts.kept(self.db, edition_date)

    # -- what came back (bounces.py) --------------------------------------------------------------

    def delivery(self, delivery_id: int) -> DeliveryRef | None:
        return bounces.delivery(self.db, delivery_id)

    def delivery_by_message_id(self, message_id: str) -> DeliveryRef | None:
        return bounces.by_message_id(self.db, message_id)

    def delivery_by_key(self, dispatch_name: str, key: str) -> DeliveryRef | None:
        return bounces.by_address(self.db, dispatch_name, key)

    def record_bounce(self, ref: DeliveryRef, kind: str, status: str, diagnostic: str, source: str, now: datetime,
                      *, unknown_too: bool = False) -> bool:
        """True only the first time for this returned message and delivery (kinds: hard, soft,
        unverified; ``unknown_too``: a hard one may mark an ``unknown`` row, see bounces.record)."""
        return bounces.record(self.db, ref, kind, status, diagnostic, source, now, unknown_too=unknown_too)

    def soft_bounce_notes(self, dispatch_id: int) -> dict[int, str]:
        return bounces.soft_notes(self.db, dispatch_id)

    def repeat_bouncers(self, last: int, at_least: int = 2) -> list[tuple[str, str, list[str]]]:
        return bounces.repeat_bouncers(self.db, last, at_least)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout ran out


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except LedgerError:
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            # Wrapped once, here, with the ledger's name: a locked, corrupted or vanished
            # ledger is one line for the operator, never a traceback.
            operation = method.__name__.replace("_", " ")
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise LedgerBusy(f"ledger {self.shown} ({operation}): {_describe(exc)}") from None
            raise LedgerError(f"ledger {self.shown} ({operation}): {_describe(exc)}") from None
    return guarded


for _name, _member in list(vars(Ledger).items()):
    if callable(_member) and not _name.startswith("_") and _name not in ("close", "end_writer"):
        setattr(Ledger, _name, _guarded(_member))


__all__ = [
    "MIGRATIONS",
    "SCHEMA_1",
    "SCHEMA_VERSION",
    "SENDABLE",
    "Approval",
    "Database",
    "Delivery",
    "DeliveryRef",
    "DispatchRecord",
    "Ledger",
    "LedgerError",
    "NewRecipient",
    "OperationalError",
    "Outcome",
    "Timeouts",
    "approvals",
    "contents",
    "deliveries",
    "dispatch_name",
    "dispatches",
    "edits",
    "identity",
    "metadata",
    "relay_slots",
    "schema_info",
    "shown_url",
    "state_dir",
]

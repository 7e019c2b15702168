"""The ledger: dispatches and one row per recipient, SQLite or PostgreSQL through SQLAlchemy Core.

The ledger, not any in-memory queue, decides what is sent: a recipient is ``sent`` only
after the server accepted the message, and a resumed dispatch sends only to rows that are
not. Rows are claimed with a lease (owner, expiry) committed before any network I/O, so
several processes can share one ledger; a result is written only by the lease owner.

A package by role: ``database`` (engine, dialect, schema on open, identity, and the one place
a database error is wrapped: ``operation``), ``records`` (dispatches, contents, authors, approvals), ``queue``
(recipient rows), ``coordination`` (leases between runs, urgency, rate slots), ``accounts``
``bounces``, ``snapshots`` (directory lists' snapshots), and ``schema``. ``Ledger`` is made of those parts and is the one face the rest
of the program holds; ``memory`` is the same delivery rules in memory, for tests.
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from dispatch.delivery.ports import DeliveryLedger
from dispatch.errors import LedgerError
from dispatch.ledger.accounts import Accounts
from dispatch.ledger.bounces import Bounces, DeliveryRef
from dispatch.ledger.coordination import Coordination
from dispatch.ledger.database import Database, Timeouts, operation, shown_url, state_dir
from dispatch.ledger.queue import Queue
from dispatch.ledger.records import Records, dispatch_name
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
from dispatch.ledger.snapshots import Snapshots
from dispatch.models import Approval, Delivery, DispatchRecord, NewRecipient, Outcome
from dispatch.recipients.snapshots import SnapshotStore


class Ledger(Records, Queue, Coordination, Accounts, Bounces, Snapshots):
    """The ledger on one database: its methods are those of its parts (records, queue,
    coordination, accounts, bounces, snapshots), each written once there and run under ``operation``,
    which turns a database error into one LedgerError naming the ledger and the operation."""

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

    @operation
    def check_file(self) -> None:
        """The SQLite file is still the one opened (see ``Database.check_file``)."""
        self.db.check_file()

    @operation
    def schema_version(self) -> int:
        return self.db.schema_version()


def _serves_delivery(ledger: Ledger) -> DeliveryLedger:
    return ledger  # mypy checks here that the SQL ledger is what delivery needs of a ledger


def _keeps_snapshots(ledger: Ledger) -> SnapshotStore:
    return ledger  # and that it keeps snapshots as the sync needs them


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

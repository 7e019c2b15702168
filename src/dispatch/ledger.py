"""The ledger: dispatches and one row per recipient. SQLite and PostgreSQL through SQLAlchemy Core.

The ledger, not any in-memory queue, decides what is sent: a recipient is ``sent``
only after the server accepted the message, and a resumed dispatch sends only to
rows that are not. Rows are claimed with a lease (owner, expiry) committed before
any network I/O, so several processes can share one ledger; a result is written
only by the lease owner.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from dispatch.errors import LedgerError
from dispatch.ledger_schema import (  # noqa: F401 - re-exported: the schema is part of the ledger's interface
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
from dispatch.models import Approval, Delivery, Outcome, State

_TIME = sa.DateTime(timezone=True)
# The outcome of one attempt, fenced by the lease owner. Built once: every value is a
# bound parameter, so SQLAlchemy compiles it once and reuses it for every group commit.
_RECORD = (
    deliveries.update()
    .where(deliveries.c.id == sa.bindparam("row_id"), deliveries.c.lease_owner == sa.bindparam("row_owner"))
    .values(
        state=sa.bindparam("row_state"),
        reply=sa.bindparam("row_reply"),
        updated_at=sa.bindparam("row_now", type_=_TIME),
        attempts=deliveries.c.attempts + 1,
        next_attempt_at=sa.bindparam("row_next", type_=_TIME),
        node=sa.bindparam("row_owner"),
        lease_owner=None,
        lease_expires_at=None,
        first_attempt_at=sa.func.coalesce(deliveries.c.first_attempt_at, sa.bindparam("row_now", type_=_TIME)),
        sent_at=sa.case((sa.bindparam("row_sent", type_=sa.Boolean) == sa.true(), sa.bindparam("row_now", type_=_TIME)),
                        else_=deliveries.c.sent_at),
    )
)


@dataclass(frozen=True)
class DispatchRecord:
    id: int
    name: str
    edition_date: str
    revision: int
    kind: str
    subject: str
    source: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    content_hash: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_id: int | None = None
    lists: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewRecipient:
    key: str
    address: str
    name: str
    message_id: str
    state: State = State.PENDING
    reply: str = ""


def dispatch_name(edition_date: date, revision: int, kind: str) -> str:
    return f"{edition_date.isoformat()}.r{revision}.{kind}"


def node_name() -> str:
    """This process, as the ledger shows it: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC
    return value.astimezone(timezone.utc)


def shown_url(url: str) -> str:
    """The ledger as messages name it: host, port and database, never a user's password
    (which may sit in the URL or its query; we show neither the query nor the password)."""
    if not url.startswith("postgresql"):
        return url.replace("sqlite:///", "")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "postgresql (unreadable URL)"
    host = parsed.host or str(parsed.query.get("host", "") or "local socket")
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql://{host}{port}/{parsed.database or ''}"


def _engine(url: str, synchronous: str = "FULL") -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            # The ledger holds every recipient's address: create it 0600 before SQLite
            # does (it would use 0644 under the usual umask). SQLite gives its -wal and
            # -shm files the database file's mode. O_EXCL: an existing ledger keeps the
            # mode its owner chose; O_NOFOLLOW: a planted link is not created through.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            except FileExistsError:
                pass
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (status) run beside the sender; FULL makes every commit
            # durable before we move on to the next recipient.
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so two processes claiming rows
            # serialise instead of failing on lock upgrade. Reads (Ledger._read) begin
            # DEFERRED: they must not queue behind, or hold up, the writers.
            conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("sqlite_begin", "IMMEDIATE"))

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def state_dir() -> Path:
    """Where the program remembers the ledgers it has used (not inside any of them)."""
    configured = os.environ.get("DISPATCH_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dispatch"


def _describe(exc: BaseException) -> str:
    detail = getattr(exc, "orig", None) or exc
    text = " ".join(str(detail).split())
    return f"{detail.__class__.__name__}: {text[:300]}"


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return None if not path or path == ":memory:" or path.startswith("file:") else path


class Ledger:
    def __init__(self, url: str, *, allow_new: bool = False) -> None:
        """Open (create, migrate) the ledger at ``url``.

        ``allow_new``: a ledger this program used before under this URL may be missing or
        replaced (someone starts over on purpose). Without it that is an error: a fresh
        ledger would send everyone the report again."""
        self.url = url
        self.shown = shown_url(url)
        self._writers = threading.local()
        self._writers_lock = threading.Lock()
        self._open_writers: list[sa.Connection] = []
        self._marker = state_dir() / "ledgers" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
        self._path = _sqlite_path(url)
        if self._path is not None and not os.path.exists(self._path) and self._marker.exists() and not allow_new:
            raise self._gone("does not exist any more")
        try:
            self.engine = _engine(url)
            self.identity = self._migrate(allow_new)
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger {self.shown}: {_describe(exc)}") from None
        self._remember(allow_new)
        self._file = os.stat(self._path) if self._path else None
        self.is_postgres = self.engine.dialect.name == "postgresql"
        # Leases and rate slots lost in an OS crash cost nothing (the rows are simply not
        # leased, the slot not taken), so their commits need not wait for the disk; the
        # next durable commit flushes them anyway (SQLite's WAL is one append-only file).
        self.light_engine = self.engine if self.is_postgres else _engine(url, synchronous="NORMAL")

    def close(self) -> None:
        with self._writers_lock:
            writers, self._open_writers = self._open_writers, []
        for conn in writers:
            conn.close()
        self.engine.dispose()
        if self.light_engine is not self.engine:
            self.light_engine.dispose()

    def _writer(self) -> sa.Connection:
        """The calling thread's own connection for outcome writes, kept open: the group
        commit runs hundreds of times a second and pool check-out/in cost as much CPU as
        the UPDATE itself."""
        conn = getattr(self._writers, "conn", None)
        if conn is None or conn.closed:
            conn = self.engine.connect()
            self._writers.conn = conn
            with self._writers_lock:
                self._open_writers.append(conn)
        return conn

    def end_writer(self) -> None:
        """Close the calling thread's outcome connection (its committer is finishing)."""
        conn = getattr(self._writers, "conn", None)
        if conn is not None:
            self._writers.conn = None
            with self._writers_lock:
                if conn in self._open_writers:
                    self._open_writers.remove(conn)
            conn.close()

    def _read(self) -> sa.Connection:
        """A connection for queries that write nothing (SQLite: a deferred transaction)."""
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    @contextmanager
    def _light(self) -> Iterator[sa.Connection]:
        """A transaction for leases and slots: atomic and isolated, not flushed to disk."""
        with self.light_engine.begin() as conn:
            if self.is_postgres:
                conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        """INSERT with ON CONFLICT support; the dialect's own construct (same SQL on both)."""
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        return insert(table)

    # -- schema ---------------------------------------------------------------

    def _gone(self, what: str) -> LedgerError:
        return LedgerError(
            f"ledger {self.shown} {what}, but this program used it before (identity kept in {self._marker}); "
            "a new ledger would send everyone the report again. Restore the ledger (from a backup), or start "
            "over on purpose with 'dispatch send --new-ledger'"
        )

    def _remember(self, allow_new: bool) -> None:
        """Keep this ledger's identity under its URL; refuse one that replaced another."""
        try:
            known = self._marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            known = None
        except OSError as exc:
            raise LedgerError(f"cannot read {self._marker}: {exc.strerror}") from None
        if known == self.identity:
            return
        if known is not None and not allow_new:
            self.engine.dispose()
            raise self._gone(f"is not the ledger it was (identity {self.identity[:8]}, expected {known[:8]})")
        try:
            self._marker.parent.mkdir(parents=True, exist_ok=True)
            temp = self._marker.with_name(f".{self._marker.name}.{os.getpid()}")
            temp.write_text(self.identity + "\n", encoding="ascii")
            os.replace(temp, self._marker)
        except OSError as exc:
            raise LedgerError(f"cannot record the ledger's identity in {self._marker}: {exc.strerror}") from None

    def check_file(self) -> None:
        """The SQLite file is still the one opened: deleted or replaced under a running send,
        every later write would go nowhere (or somewhere else) and a rerun would resend."""
        if self._path is None or self._file is None:
            return
        try:
            now = os.stat(self._path)
        except FileNotFoundError:
            raise LedgerError(f"ledger {self.shown} was deleted while in use; stopping (restore it: "
                              "the recipients sent so far are recorded only there)") from None
        if (now.st_dev, now.st_ino) != (self._file.st_dev, self._file.st_ino):
            raise LedgerError(f"ledger {self.shown} was replaced by another file while in use; stopping")

    def _migrate(self, allow_new: bool = False) -> str:
        """Create the schema on an empty ledger, or bring an older one up to SCHEMA_VERSION;
        refuse a ledger of a newer program. One transaction: all of it or nothing. Returns
        the ledger's identity."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Nodes started together on an empty database would otherwise race to
                # CREATE TABLE (and fail on PostgreSQL's catalog constraints). The lock is
                # per schema (search_path), taken for this transaction only; SQLite's
                # BEGIN IMMEDIATE serialises the same way.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('dispatch schema ' || current_schema()))"))
            version = (conn.execute(sa.select(sa.func.max(schema_info.c.version))).scalar()
                       if sa.inspect(conn).has_table(schema_info.name) else None)
            if version is None:  # empty (or the version table without its row, made by hand)
                if self._marker.exists() and not allow_new:
                    raise self._gone("is empty")
                metadata.create_all(conn, checkfirst=True)
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.shown} has schema version {version}, newer than this program's "
                    f"{SCHEMA_VERSION}; upgrade dispatch on this host before using this ledger"
                )
            elif version < SCHEMA_VERSION:
                for target, _what, step in MIGRATIONS:
                    if target > version:
                        step(conn)
                conn.execute(schema_info.delete())
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            made = conn.execute(sa.select(identity.c.identity)).scalar()
            if made is None:
                made = uuid.uuid4().hex
                conn.execute(identity.insert().values(identity=made, created_at=datetime.now(timezone.utc)))
            return str(made)

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_info.c.version))).scalar_one())

    # -- dispatches -------------------------------------------------------------

    def open_dispatch(
        self, name: str, edition_date: date, revision: int, kind: str, subject: str,
        source: str, created_by: str, now: datetime, *, content_hash: str | None = None,
        approved_by: str | None = None, approved_at: datetime | None = None, approval_id: int | None = None,
        lists: tuple[str, ...] = (),
    ) -> tuple[DispatchRecord, bool]:
        """The dispatch of this key, created if it does not exist yet (insert-or-nothing).

        An existing dispatch that has sent to nobody yet takes the new content hash and
        subject (the caller has checked that a dispatch that has sent is not changed)."""
        values = dict(
            name=name, edition_date=edition_date.isoformat(), revision=revision, kind=kind,
            subject=subject, source=source, created_by=created_by, created_at=_utc(now),
            content_hash=content_hash, approved_by=approved_by, approved_at=_utc(approved_at),
            approval_id=approval_id, lists=",".join(lists) or None,
        )
        # ON CONFLICT DO NOTHING rather than catching the IntegrityError: every node fires,
        # and PostgreSQL would log each losing insert as an ERROR. RETURNING says whether
        # this call inserted (psycopg reports rowcount -1 for an INSERT that returns rows).
        with self.engine.begin() as conn:
            inserted = conn.execute(
                self._insert(dispatches).values(**values).on_conflict_do_nothing().returning(dispatches.c.id)
            ).first()
        created = inserted is not None
        if not created and content_hash is not None:
            with self.engine.begin() as conn:
                conn.execute(
                    dispatches.update()
                    .where(dispatches.c.name == name, sa.or_(dispatches.c.content_hash.is_(None),
                                                             dispatches.c.content_hash != content_hash))
                    .where(~sa.exists().where(deliveries.c.dispatch_id == dispatches.c.id,
                                              deliveries.c.state.in_((State.SENT.value, State.UNKNOWN.value))))
                    .values(content_hash=content_hash, subject=subject, approved_by=approved_by,
                            approved_at=_utc(approved_at), approval_id=approval_id)
                )
        record = self.find_dispatch(name)
        assert record is not None
        return record, created

    def find_dispatch(self, name: str | None = None) -> DispatchRecord | None:
        query = sa.select(dispatches)
        query = query.where(dispatches.c.name == name) if name else query.order_by(dispatches.c.id.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return self._dispatch(row) if row else None

    def list_dispatches(self, edition_date: date | None = None, since: date | None = None) -> list[DispatchRecord]:
        query = sa.select(dispatches).order_by(dispatches.c.id)
        if edition_date:
            query = query.where(dispatches.c.edition_date == edition_date.isoformat())
        if since:
            query = query.where(dispatches.c.edition_date >= since.isoformat())
        with self._read() as conn:
            return [self._dispatch(r) for r in conn.execute(query).mappings()]

    def dispatches_with_content(self, content_hash: str, kind_prefix: str) -> list[DispatchRecord]:
        """Dispatches of this kind that send exactly this content, oldest first."""
        query = (sa.select(dispatches)
                 .where(dispatches.c.content_hash == content_hash, dispatches.c.kind.like(f"{kind_prefix}%"))
                 .order_by(dispatches.c.id))
        with self._read() as conn:
            return [self._dispatch(r) for r in conn.execute(query).mappings()]

    def finish_dispatch(self, dispatch_id: int, now: datetime) -> bool:
        """Mark the dispatch finished; True only for the one caller that did it first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                dispatches.update()
                .where(dispatches.c.id == dispatch_id, dispatches.c.finished_at.is_(None))
                .values(finished_at=_utc(now))
            )
        return bool(result.rowcount)

    @staticmethod
    def _dispatch(row: Any) -> DispatchRecord:
        return DispatchRecord(
            id=row["id"], name=row["name"], edition_date=row["edition_date"], revision=row["revision"],
            kind=row["kind"], subject=row["subject"], source=row["source"], created_by=row["created_by"],
            created_at=_utc(row["created_at"]), finished_at=_utc(row["finished_at"]),  # type: ignore[arg-type]
            content_hash=row["content_hash"], approved_by=row["approved_by"], approved_at=_utc(row["approved_at"]),
            approval_id=row["approval_id"], lists=tuple(x for x in (row["lists"] or "").split(",") if x),
        )

    # -- recipients -----------------------------------------------------------

    def add_recipients(self, dispatch_id: int, recipients: Iterable[NewRecipient], now: datetime, chunk: int = 2000) -> int:
        """Insert rows that do not exist yet; existing rows (already sent or not) are left alone."""
        now = _utc(now)  # type: ignore[assignment]
        added = 0
        batch: list[dict[str, Any]] = []

        def flush(conn: Any) -> int:
            if not batch:
                return 0
            # RETURNING counts the rows really inserted: an executemany's rowcount is the
            # batch size on some drivers (psycopg's batched INSERT), whatever was skipped.
            statement = (
                self._insert(deliveries)
                .on_conflict_do_nothing(index_elements=["dispatch_id", "key"])
                .returning(deliveries.c.id)
            )
            count = len(conn.execute(statement, batch).all())
            batch.clear()
            return count

        with self.engine.begin() as conn:
            for r in recipients:
                batch.append(dict(
                    dispatch_id=dispatch_id, key=r.key, address=r.address, name=r.name,
                    state=r.state.value, attempts=0, reply=r.reply, message_id=r.message_id,
                    created_at=now, updated_at=now, node="",
                ))
                if len(batch) >= chunk:
                    added += flush(conn)
            added += flush(conn)
            if added:
                # New recipients (a list grew, another list was added): not finished any more,
                # so the run that sends them finishes it again and reports it.
                conn.execute(dispatches.update().where(dispatches.c.id == dispatch_id).values(finished_at=None))
        return added

    def claim(self, dispatch_id: int, owner: str, now: datetime, lease: timedelta, limit: int,
              waited_since: datetime | None = None) -> list[Delivery]:
        """Lease up to ``limit`` sendable rows to ``owner`` and commit before any I/O.

        ``waited_since``: also take rows whose next attempt is later, if they were last
        tried before that moment (a person's rerun after fixing the relay should not wait
        for the backoff; what this run itself defers keeps its backoff)."""
        self.check_file()
        now = _utc(now)  # type: ignore[assignment]
        with self._light() as conn:
            ids: list[int] = []
            # One state at a time: with an equality on state the (dispatch_id, state) index
            # yields rows in id order, where IN (...) made SQLite sort every sendable row
            # on each claim (quadratic over a 100,000-recipient dispatch).
            for state in SENDABLE:
                pick = (
                    sa.select(deliveries.c.id)
                    .where(
                        deliveries.c.dispatch_id == dispatch_id,
                        deliveries.c.state == state,
                        sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now,
                               deliveries.c.updated_at < _utc(waited_since) if waited_since else sa.false()),
                        sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now),
                    )
                    .order_by(deliveries.c.id)
                    .limit(limit - len(ids))
                )
                if self.is_postgres:
                    pick = pick.with_for_update(skip_locked=True)
                ids.extend(row[0] for row in conn.execute(pick))
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            conn.execute(
                deliveries.update().where(deliveries.c.id.in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + lease)
            )
            rows = conn.execute(sa.select(deliveries).where(deliveries.c.id.in_(ids)).order_by(deliveries.c.id)).mappings().all()
        return [self._delivery(r) for r in rows]

    def renew(self, owner: str, ids: Sequence[int], now: datetime, lease: timedelta) -> None:
        if not ids:
            return
        with self._light() as conn:
            mine = sa.and_(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
            if self.is_postgres:
                # Lock first, skipping rows the writer thread is recording this moment (it
                # clears their lease anyway): an UPDATE of the whole set would lock them in
                # heap order, the writer in id order, and PostgreSQL would find a deadlock.
                locked = [r[0] for r in conn.execute(
                    sa.select(deliveries.c.id).where(mine).order_by(deliveries.c.id).with_for_update(skip_locked=True))]
                mine = deliveries.c.id.in_(locked)
            conn.execute(deliveries.update().where(mine).values(lease_expires_at=_utc(now) + lease))  # type: ignore[operator]

    def reap_dead_leases(self, host: str, alive: Callable[[int], bool]) -> int:
        """Free leases held by processes of this host that no longer run (a crash or
        SIGKILL), so a rerun resumes at once instead of waiting for the lease to expire."""
        with self._read() as conn:
            owners = conn.execute(
                sa.select(deliveries.c.lease_owner).distinct()
                .where(deliveries.c.lease_owner.like(f"{host}:%"))
            ).scalars().all()
        dead = []
        for owner in owners:
            parts = owner.split(":")
            # The exact host: LIKE's '_' matches any character, and another host's pid
            # means nothing here (freeing a live node's lease would send twice).
            if len(parts) >= 3 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1])):
                dead.append(owner)
        if not dead:
            return 0
        with self._light() as conn:
            result = conn.execute(
                deliveries.update().where(deliveries.c.lease_owner.in_(dead))
                .values(lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount or 0

    def orphaned(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows whose lease ran out unrecorded: a node died (or stalled) holding
        them. A release or a record clears the lease, so nothing else looks like this."""
        with self._read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.state.in_(SENDABLE),
                    deliveries.c.lease_owner.is_not(None),
                    deliveries.c.lease_expires_at <= _utc(now),
                )
            ).scalar_one())

    def due_unleased(self, dispatch_id: int, now: datetime) -> int:
        """Sendable rows that are due now and that no run holds."""
        now = _utc(now)  # type: ignore[assignment]
        with self._read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.state.in_(SENDABLE),
                    sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
                    sa.or_(deliveries.c.lease_owner.is_(None), deliveries.c.lease_expires_at <= now),
                )
            ).scalar_one())

    def release(self, owner: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._light() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def hold(self, owner: str, ids: Sequence[int], until: datetime, reply: str, now: datetime) -> None:
        """Put leased rows back to wait until ``until`` because of the session, not the
        recipient: a pending row becomes deferred (with the reason), an unknown one stays
        unknown, and no attempt is counted."""
        if not ids:
            return
        with self._light() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
                .values(state=sa.case((deliveries.c.state == State.PENDING.value, State.DEFERRED.value),
                                      else_=deliveries.c.state),
                        next_attempt_at=_utc(until), reply=reply[:2000], lease_owner=None, lease_expires_at=None,
                        updated_at=_utc(now))
            )

    def leased_by_others(self, dispatch_id: int, owner: str, now: datetime) -> int:
        """Rows of the dispatch that another run holds right now (its lease has not expired)."""
        with self._read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.dispatch_id == dispatch_id,
                    deliveries.c.lease_owner.is_not(None), deliveries.c.lease_owner != owner,
                    deliveries.c.lease_expires_at > _utc(now),
                )
            ).scalar_one())

    def requeue_failed(self, dispatch_id: int, now: datetime) -> int:
        """Failed rows back to pending, on purpose (after the cause was fixed). Entries that
        failed because the list entry itself is invalid stay failed: resending cannot help."""
        with self.engine.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(deliveries.c.dispatch_id == dispatch_id, deliveries.c.state == State.FAILED.value,
                       ~deliveries.c.key.like("invalid:%"))
                .values(state=State.PENDING.value, next_attempt_at=None, first_attempt_at=None, updated_at=_utc(now))
            )
            if result.rowcount:
                conn.execute(dispatches.update().where(dispatches.c.id == dispatch_id).values(finished_at=None))
        return result.rowcount or 0

    def record(self, owner: str, results: Sequence[tuple[int, Outcome, datetime | None]], now: datetime) -> int:
        """Write attempt outcomes in one transaction; only rows this owner still leases.

        One prepared statement for every row (executemany): building an UPDATE per call
        cost more CPU than the sending itself. Returns how many rows were written where
        the driver reports it (fewer means a lease was lost to another node).
        """
        if not results:
            return 0
        self.check_file()
        now = _utc(now)  # type: ignore[assignment]
        rows = [
            {"row_id": delivery_id, "row_owner": owner, "row_state": outcome.state.value, "row_now": now,
             "row_reply": outcome.reply[:2000], "row_next": _utc(next_attempt), "row_sent": outcome.state is State.SENT}
            # In id order, the order every other writer of these rows locks them in.
            for delivery_id, outcome, next_attempt in sorted(results, key=lambda r: r[0])
        ]
        conn = self._writer()
        with conn.begin():
            result = conn.execute(_RECORD, rows)
        written = result.rowcount
        return written if written is not None and written >= 0 else len(rows)

    # -- what was sent ----------------------------------------------------------

    def keep_content(self, dispatch_name: str, subject: str, source: str, source_text: str,
                     html: str, text: str, now: datetime, *, content_hash: str | None = None,
                     canonical: str | None = None) -> bool:
        """Store the content of a dispatch unless this exact content is stored already.
        Returns True when a new version was stored."""
        import hashlib

        digest = hashlib.sha256("\0".join((subject, source_text, html, text)).encode("utf-8")).hexdigest()
        try:
            with self.engine.begin() as conn:
                conn.execute(contents.insert().values(
                    dispatch_name=dispatch_name, digest=digest, subject=subject, source=source,
                    source_text=source_text, html=html, text=text, recorded_at=_utc(now),
                    content_hash=content_hash, canonical=canonical,
                ))
            return True
        except IntegrityError:
            return False

    def contents(self, dispatch_name: str) -> list[dict[str, Any]]:
        """The stored versions of a dispatch's content, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(contents).where(contents.c.dispatch_name == dispatch_name).order_by(contents.c.id)
            ).mappings().all()
        return [dict(r) | {"recorded_at": _utc(r["recorded_at"])} for r in rows]

    # -- change control: authors and approvals ----------------------------------

    def record_edit(self, edition_date: date, content_hash: str, author: str, now: datetime) -> str:
        """Remember who first wrote this content of the edition; returns that author (the
        one recorded earlier, if someone else checked the same content first)."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(edits).values(edition_date=edition_date.isoformat(), content_hash=content_hash,
                                           author=author[:200], recorded_at=_utc(now))
                .on_conflict_do_nothing(index_elements=["edition_date", "content_hash"])
            )
        return self.author_of(edition_date, content_hash) or author

    def author_of(self, edition_date: date, content_hash: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                sa.select(edits.c.author).where(edits.c.edition_date == edition_date.isoformat(),
                                                edits.c.content_hash == content_hash)
            ).scalar()

    def approve(self, edition_date: date, revision: int, content_hash: str, by: str, now: datetime) -> Approval:
        with self.engine.begin() as conn:
            new_id = conn.execute(
                approvals.insert().values(edition_date=edition_date.isoformat(), revision=revision,
                                          content_hash=content_hash, approved_by=by[:200], approved_at=_utc(now))
                .returning(approvals.c.id)
            ).scalar_one()
        return next(a for a in self.approvals(edition_date) if a.id == new_id)

    def revoke_approvals(self, edition_date: date, by: str, now: datetime) -> int:
        """Revoke every standing approval of the edition; returns how many there were."""
        with self.engine.begin() as conn:
            result = conn.execute(
                approvals.update()
                .where(approvals.c.edition_date == edition_date.isoformat(), approvals.c.revoked_at.is_(None))
                .values(revoked_by=by[:200], revoked_at=_utc(now))
            )
        return result.rowcount or 0

    def approval_revoked(self, approval_id: int) -> bool:
        with self._read() as conn:
            return conn.execute(
                sa.select(approvals.c.revoked_at).where(approvals.c.id == approval_id)
            ).scalar() is not None

    def states_by_key(self, dispatch_id: int) -> dict[str, str]:
        """Each recipient key of the dispatch and its state (for a dry run's exact plan)."""
        with self._read() as conn:
            return dict(conn.execute(  # type: ignore[arg-type]
                sa.select(deliveries.c.key, deliveries.c.state).where(deliveries.c.dispatch_id == dispatch_id)
            ).all())

    def approvals(self, edition_date: date) -> list[Approval]:
        """Every approval of the edition, revoked ones included, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(approvals).where(approvals.c.edition_date == edition_date.isoformat())
                .order_by(approvals.c.id.desc())
            ).mappings().all()
        return [
            Approval(id=r["id"], edition_date=r["edition_date"], revision=r["revision"],
                     content_hash=r["content_hash"], approved_by=r["approved_by"],
                     approved_at=_utc(r["approved_at"]),  # type: ignore[arg-type]
                     revoked_by=r["revoked_by"], revoked_at=_utc(r["revoked_at"]))
            for r in rows
        ]

    # -- coordination between dispatches -----------------------------------------

    def urgent_waiting(self, now: datetime, horizon: timedelta = timedelta(hours=2)) -> bool:
        """Is an urgent dispatch still sending? Other dispatches give way to it. Only
        recent ones count, so a crashed urgent send cannot hold the daily report forever.

        Asked before every message of a large dispatch, so it must stay cheap: first the
        (small) dispatches table, then the recipients of an unfinished urgent one by index.
        """
        now = _utc(now)  # type: ignore[assignment]
        with self._read() as conn:
            urgent = conn.execute(
                sa.select(dispatches.c.id).where(
                    dispatches.c.kind.like("urgent%"),
                    dispatches.c.finished_at.is_(None),
                    dispatches.c.created_at >= now - horizon,  # type: ignore[operator]
                )
            ).scalars().all()
            for dispatch_id in urgent:
                for state in SENDABLE:
                    due = conn.execute(
                        sa.select(deliveries.c.id).where(
                            deliveries.c.dispatch_id == dispatch_id,
                            deliveries.c.state == state,
                            sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
                        ).limit(1)
                    ).first()
                    if due is not None:
                        return True
        return False

    def reserve_slot(self, relay: str, interval: timedelta, clock: Callable[[], datetime]) -> datetime:
        """The moment this process may start its next message through ``relay``.

        The time is read after the row is locked: a process that waited for the lock must
        not be handed a slot in the past, or late senders would catch up in a burst.
        """
        with self._light() as conn:
            conn.execute(
                self._insert(relay_slots).values(relay=relay, next_slot=_utc(clock()))
                .on_conflict_do_nothing(index_elements=["relay"])
            )
            select = sa.select(relay_slots.c.next_slot).where(relay_slots.c.relay == relay)
            if self.is_postgres:
                select = select.with_for_update()
            current = _utc(conn.execute(select).scalar_one())
            now = _utc(clock())
            slot = max(now, current)  # type: ignore[type-var]
            conn.execute(relay_slots.update().where(relay_slots.c.relay == relay).values(next_slot=slot + interval))
        return slot  # type: ignore[return-value]

    # -- reading --------------------------------------------------------------

    def counts(self, dispatch_id: int) -> dict[str, int]:
        counts = {state.value: 0 for state in State}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.state, sa.func.count())
                .where(deliveries.c.dispatch_id == dispatch_id)
                .group_by(deliveries.c.state)
            )
            for state, count in rows:
                counts[state] = count
        return counts

    def deliveries(self, dispatch_id: int) -> list[Delivery]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deliveries).where(deliveries.c.dispatch_id == dispatch_id).order_by(deliveries.c.id)
            ).mappings().all()
        return [self._delivery(r) for r in rows]

    def rows(self, dispatch_id: int) -> list[dict[str, Any]]:
        """Every column of every row, for status --json and export."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deliveries).where(deliveries.c.dispatch_id == dispatch_id).order_by(deliveries.c.id)
            ).mappings().all()
        return [dict(r) for r in rows]

    def next_due(self, dispatch_id: int) -> datetime | None:
        """When the earliest deferred row may be retried (None: nothing waits)."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(sa.func.min(deliveries.c.next_attempt_at))
                .where(deliveries.c.dispatch_id == dispatch_id, deliveries.c.state.in_(SENDABLE))
            ).scalar()
        return _utc(value)

    @staticmethod
    def _delivery(row: Any) -> Delivery:
        return Delivery(
            id=row["id"], key=row["key"], address=row["address"], name=row["name"],
            state=State(row["state"]), attempts=row["attempts"], reply=row["reply"],
            message_id=row["message_id"], updated_at=_utc(row["updated_at"]),
            next_attempt_at=_utc(row["next_attempt_at"]),
            first_attempt_at=_utc(row["first_attempt_at"]),
        )


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
            raise LedgerError(f"ledger {self.shown}: {_describe(exc)}") from None
    return guarded


for _name, _member in list(vars(Ledger).items()):
    if callable(_member) and not _name.startswith("_") and _name != "close":
        setattr(Ledger, _name, _guarded(_member))


__all__ = ["Approval", "Ledger", "LedgerError", "DispatchRecord", "NewRecipient", "dispatch_name", "node_name", "OperationalError"]

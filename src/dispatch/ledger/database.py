"""The ledger's database: engine and dialect (SQLite or PostgreSQL), transactions of three
kinds (durable writes, light leases, deferred reads), the schema on open, and the ledger's
identity, remembered outside it so a vanished or replaced ledger is noticed."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dispatch.errors import LedgerBusy, LedgerError
from dispatch.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    identity,
    metadata,
    schema_info,
)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return value.astimezone(UTC)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout ran out


class HasDatabase(Protocol):
    """A ledger, or one of the parts it is made of: its methods run SQL on ``db``."""

    db: Database


Part = TypeVar("Part", bound=HasDatabase)
Params = ParamSpec("Params")
Returned = TypeVar("Returned")


def operation(method: Callable[Concatenate[Part, Params], Returned]) -> Callable[Concatenate[Part, Params], Returned]:
    """Marks a ledger method that runs SQL; the one place a database error becomes the
    program's own: a LedgerError (LedgerBusy for PostgreSQL's lock timeout) naming the ledger
    and the operation (the method's name: "claim", "record audit"), the database's error kept
    as its cause. A locked, corrupted or vanished ledger is one line for the operator, never a
    traceback. A LedgerError from a method this one calls passes through as it is."""
    name = method.__name__.replace("_", " ")

    @functools.wraps(method)
    def guarded(self: Part, /, *args: Params.args, **kwargs: Params.kwargs) -> Returned:
        # try/except, not a context manager: the group commit calls ``record`` hundreds of times a second.
        try:
            return method(self, *args, **kwargs)
        except LedgerError:
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            busy = getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE
            raise (LedgerBusy if busy else LedgerError)(f"ledger {self.db.shown} ({name}): {describe_error(exc)}") from exc

    return guarded


def shown_url(url: str) -> str:
    """The ledger as messages name it: host, port and database, never a user's password
    (which may sit in the URL or its query; we show neither the query nor the password)."""
    if not url.startswith("postgresql"):
        return url.split("?", 1)[0].replace("sqlite:///", "")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "postgresql (unreadable URL)"
    host = parsed.host or str(parsed.query.get("host", "") or "local socket")
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql://{host}{port}/{parsed.database or ''}"

@dataclass(frozen=True)
class Timeouts:
    """Limits on every PostgreSQL session of ours (seconds; 0 turns one off), so that no wait
    on the ledger is unbounded: a node that froze inside a transaction loses its session
    (and its locks) after ``idle_in_transaction``, one that waits for a lock gives up after
    ``lock`` (and may try again, checking whether it was asked to stop), and a host that
    vanished from the network is noticed by TCP keepalives on both ends within about
    ``keepalive`` * 2 instead of the kernel's two hours."""

    lock: float = 2.0
    statement: float = 120.0
    idle_in_transaction: float = 15.0
    keepalive: float = 30.0  # idle time before the first probe; then a probe every third of it, 3 probes
    connect: float = 10.0

    def session_settings(self) -> dict[str, str]:
        """The server-side settings, as SET takes them (milliseconds, seconds)."""
        probe = max(1, round(self.keepalive / 3))
        settings = {
            "lock_timeout": f"{round(self.lock * 1000)}",
            "statement_timeout": f"{round(self.statement * 1000)}",
            "idle_in_transaction_session_timeout": f"{round(self.idle_in_transaction * 1000)}",
        }
        if self.keepalive:
            settings.update(tcp_keepalives_idle=f"{max(1, round(self.keepalive))}", tcp_keepalives_interval=f"{probe}",
                            tcp_keepalives_count="3", tcp_user_timeout=f"{round((self.keepalive + 3 * probe) * 1000)}")
        return settings

    def connect_args(self) -> dict[str, Any]:
        """The client side (libpq): keepalives on our end of the socket, a bounded connect."""
        probe = max(1, round(self.keepalive / 3))
        args: dict[str, Any] = {"application_name": f"dispatch {socket.gethostname()}:{os.getpid()}"}
        if self.connect:
            args["connect_timeout"] = max(1, round(self.connect))
        if self.keepalive:
            args.update(keepalives=1, keepalives_idle=max(1, round(self.keepalive)), keepalives_interval=probe,
                        keepalives_count=3, tcp_user_timeout=round((self.keepalive + 3 * probe) * 1000))
        return args


DURABLE, LIGHT = "FULL", "NORMAL"  # SQLite's synchronous setting for durable writes, for leases and slots


def _engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """The one engine of a ledger (per process: an App makes one Database and every session
    takes its connections from it)."""
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
            with suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        lock_wait = _lock_wait_seconds(url)
        engine = sa.create_engine(url.split("?", 1)[0], connect_args={"timeout": lock_wait, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            # WAL lets readers (status) run beside the sender; FULL makes every commit
            # durable before we move on to the next recipient.
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={DURABLE}")
            cursor.execute(f"PRAGMA busy_timeout={int(lock_wait * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            record.info["synchronous"] = DURABLE

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            options = conn.get_execution_options()
            # A light transaction (leases, slots) need not wait for the disk; the setting is
            # the connection's, so it is changed (outside any transaction) only when the
            # connection last wrote the other kind. A read commits nothing: it takes either.
            wanted = options.get("sqlite_synchronous", DURABLE)
            info = conn.connection.info
            if options.get("sqlite_begin") != "DEFERRED" and info.get("synchronous") != wanted:
                conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")
                info["synchronous"] = wanted
            # IMMEDIATE takes the write lock up front, so two processes claiming rows
            # serialise instead of failing on lock upgrade. Reads (Ledger._read) begin
            # DEFERRED: they must not queue behind, or hold up, the writers.
            conn.exec_driver_sql("BEGIN " + options.get("sqlite_begin", "IMMEDIATE"))

        return engine
    return _postgres_engine(url, timeouts or Timeouts())


def _postgres_engine(url: str, timeouts: Timeouts) -> Engine:
    # What the URL names itself (an operator's choice) wins over our defaults.
    given = set(sa.engine.make_url(url).query)
    connect_args = {k: v for k, v in timeouts.connect_args().items() if k not in given}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    session = timeouts.session_settings()

    @event.listens_for(engine, "connect")
    def _limits(dbapi_connection: Any, _record: Any) -> None:
        # Per session, so they hold for our connections whatever the server's defaults are
        # (any role may set these); committed at once, outside any transaction of ours.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(f"set_config('{name}', %s, false)" for name in session),
                           list(session.values()))
        dbapi_connection.commit()

    return engine

def state_dir() -> Path:
    """Where the program remembers the ledgers it has used (not inside any of them)."""
    configured = os.environ.get("DISPATCH_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dispatch"

def describe_error(exc: BaseException) -> str:
    """A database error in one line: its class and text (the driver's, when SQLAlchemy wraps one)."""
    detail = getattr(exc, "orig", None) or exc
    text = " ".join(str(detail).split())
    return f"{detail.__class__.__name__}: {text[:300]}"

def _identity_url(url: str) -> str:
    """The same SQLite file is the same ledger whatever its options."""
    return url.split("?", 1)[0] if url.startswith("sqlite") else url


def _lock_wait_seconds(url: str) -> float:
    """``sqlite:///PATH?timeout=SECONDS`` (checked by the config reader); 30 s by default: long
    enough for a backup or a reader's transaction, short enough that a stuck lock is reported."""
    for option in url.partition("?")[2].split("&"):
        name, _, value = option.partition("=")
        if name == "timeout":
            return float(value)
    return 30.0


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return None if not path or path == ":memory:" or path.startswith("file:") else path


class Database:
    def __init__(self, url: str, *, allow_new: bool = False, timeouts: Timeouts | None = None) -> None:
        """Open (create, migrate) the ledger at ``url``.

        ``allow_new``: a ledger this program used before under this URL may be missing or
        replaced (someone starts over on purpose). Without it that is an error: a fresh
        ledger would send everyone the report again."""
        self.url = url
        self.shown = shown_url(url)
        self._writers = threading.local()
        self._writers_lock = threading.Lock()
        self._open_writers: list[sa.Connection] = []
        self._marker = state_dir() / "ledgers" / hashlib.sha256(_identity_url(url).encode("utf-8")).hexdigest()[:32]
        self._path = _sqlite_path(url)
        if self._path is not None and not os.path.exists(self._path) and self._marker.exists() and not allow_new:
            raise self._gone("does not exist any more")
        try:
            self.engine = _engine(url, timeouts=timeouts)
            self.identity = self._migrate(allow_new)
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger {self.shown}: {describe_error(exc)}") from exc
        self._remember(allow_new)
        self._file = os.stat(self._path) if self._path else None
        self.is_postgres = self.engine.dialect.name == "postgresql"
        # Leases and rate slots lost in an OS crash cost nothing (the rows are simply not
        # leased, the slot not taken), so their commits need not wait for the disk; the
        # next durable commit flushes them anyway (SQLite's WAL is one append-only file).
        # On SQLite the same engine (and pool) with an option its begin hook reads.
        self.light_engine = self.engine if self.is_postgres else self.engine.execution_options(sqlite_synchronous=LIGHT)

    def close(self) -> None:
        with self._writers_lock:
            writers, self._open_writers = self._open_writers, []
        for conn in writers:
            conn.close()
        self.engine.dispose()  # the light engine shares its pool

    def writer(self) -> sa.Connection:
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

    def read(self) -> sa.Connection:
        """A connection for queries that write nothing (SQLite: a deferred transaction)."""
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    @contextmanager
    def light(self) -> Iterator[sa.Connection]:
        """A transaction for leases and slots: atomic and isolated, not flushed to disk."""
        with self.light_engine.begin() as conn:
            if self.is_postgres:
                conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            yield conn

    def insert(self, table: sa.Table) -> Any:
        """INSERT with ON CONFLICT support; the dialect's own construct (same SQL on both)."""
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        return insert(table)

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
            raise LedgerError(f"cannot read {self._marker}: {exc.strerror}") from exc
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
            raise LedgerError(f"cannot record the ledger's identity in {self._marker}: {exc.strerror}") from exc

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
                conn.execute(identity.insert().values(identity=made, created_at=datetime.now(UTC)))
            return str(made)

    def schema_version(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_info.c.version))).scalar_one())

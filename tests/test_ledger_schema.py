"""The ledger's recorded schema version on SQLite: older ledgers are migrated in place,
a newer one is refused (issue 10; the same on PostgreSQL in test_postgres.py)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatch.errors import LedgerError
from dispatch.ledger import SCHEMA_1, SCHEMA_VERSION, Ledger, contents, metadata, relay_slots

NOW = datetime(2024, 11, 17, 13, 0, tzinfo=UTC)


def old_ledger(path: Path, *, with_later_tables: bool) -> str:
    """A ledger as an earlier program left it: schema 1 recorded, one dispatch; programs
    between schema 1 and 2 also created the two later tables (without recording it)."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = list(SCHEMA_1) + ([contents, relay_slots] if with_later_tables else [])
        metadata.create_all(conn, tables=tables)
        conn.execute(sa.text("INSERT INTO dispatch_schema (version) VALUES (1)"))
        conn.execute(sa.text(
            "INSERT INTO dispatches (name, edition_date, revision, kind, subject, source, created_by, created_at) "
            "VALUES ('2024-11-16.r1.edition', '2024-11-16', 1, 'edition', 'Gammal', '', '', '2024-11-16 13:00:00')"))
        if with_later_tables:
            conn.execute(contents.insert().values(
                dispatch_name="2024-11-16.r1.edition", digest="d", subject="Gammal", source="",
                source_text="src", html="<p>", text="t", recorded_at=NOW))
    engine.dispose()
    return url


def versions(url: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text("SELECT version FROM dispatch_schema"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("with_later_tables", [False, True], ids=["schema-1", "schema-1-with-later-tables"])
def test_an_older_sqlite_ledger_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path, with_later_tables: bool) -> None:
    url = old_ledger(tmp_path / "ledger.db", with_later_tables=with_later_tables)
    ledger = Ledger(url)
    try:
        assert ledger.schema_version() == SCHEMA_VERSION
        assert ledger.find_dispatch("2024-11-16.r1.edition") is not None
        assert len(ledger.contents("2024-11-16.r1.edition")) == (1 if with_later_tables else 0)
        assert ledger.reserve_slot("relay", timedelta(seconds=2), lambda: NOW) == NOW
        record, created = ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition",
                                               "Ny", "", "test", NOW)
        assert created and record.created_at == NOW
    finally:
        ledger.close()
    assert versions(url) == [SCHEMA_VERSION]


def test_a_newer_sqlite_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE dispatch_schema SET version = {SCHEMA_VERSION + 1}"))
    engine.dispose()
    newer = f"schema version {SCHEMA_VERSION + 1}, newer than this program's {SCHEMA_VERSION}; upgrade dispatch"
    with pytest.raises(LedgerError, match=re.escape(newer)):
        Ledger(url)
    assert versions(url) == [SCHEMA_VERSION + 1]


def test_a_schema_2_ledger_gains_content_hashes_approvals_and_edits(tmp_path: Path) -> None:
    """Schema 3 adds columns to existing tables: a ledger made by a schema-2 program (raw DDL,
    not today's table definitions) keeps its rows and gains them."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE dispatch_schema (version INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO dispatch_schema VALUES (2)"))
        conn.execute(sa.text(
            "CREATE TABLE dispatches (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(200) NOT NULL UNIQUE, "
            "edition_date VARCHAR(10) NOT NULL, revision INTEGER NOT NULL, kind VARCHAR(80) NOT NULL, "
            "subject TEXT NOT NULL, source TEXT NOT NULL, created_by VARCHAR(200) NOT NULL, "
            "created_at DATETIME NOT NULL, finished_at DATETIME, "
            "CONSTRAINT uq_dispatch_edition UNIQUE (edition_date, revision, kind))"))
        conn.execute(sa.text(
            "CREATE TABLE dispatch_contents (id INTEGER PRIMARY KEY AUTOINCREMENT, dispatch_name VARCHAR(200) NOT NULL, "
            "digest VARCHAR(64) NOT NULL, subject TEXT NOT NULL, source TEXT NOT NULL, source_text TEXT NOT NULL, "
            "html TEXT NOT NULL, text TEXT NOT NULL, recorded_at DATETIME NOT NULL, "
            "CONSTRAINT uq_dispatch_content UNIQUE (dispatch_name, digest))"))
        conn.execute(sa.text(
            "INSERT INTO dispatches (name, edition_date, revision, kind, subject, source, created_by, created_at) "
            "VALUES ('2024-11-16.r1.edition', '2024-11-16', 1, 'edition', 'Gammal', '', 'x', '2024-11-16 13:00:00')"))
        metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name in ("deliveries", "relay_slots")])
    engine.dispose()

    ledger = Ledger(url)
    try:
        assert ledger.schema_version() == SCHEMA_VERSION == 9  # 6: relay trouble; 7: audit facts; 8: edited texts; 9: snapshots
        old = ledger.find_dispatch("2024-11-16.r1.edition")
        assert old is not None and old.subject == "Gammal" and old.content_hash is None
        record, created = ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition", "Ny", "",
                                               "test", NOW, content_hash="a" * 64, approved_by="Anna", approved_at=NOW)
        assert created and record.content_hash == "a" * 64 and record.approved_by == "Anna"
        assert ledger.record_edit(date(2024, 11, 17), "a" * 64, "Erik", NOW) == "Erik"
        assert ledger.record_edit(date(2024, 11, 17), "a" * 64, "Bertil", NOW) == "Erik", "the first author stays"
        approval = ledger.approve(date(2024, 11, 17), 1, "a" * 64, "Anna", NOW)
        assert ledger.approvals(date(2024, 11, 17)) == [approval]
        assert ledger.keep_content("2024-11-17.r1.edition", "Ny", "", "src", "<p>", "t", NOW,
                                   content_hash="a" * 64, canonical="{}")
    finally:
        ledger.close()
    assert versions(url) == [SCHEMA_VERSION]


def test_the_last_migration_brings_a_ledger_to_the_current_schema_version() -> None:
    """A schema change comes with its migration (the check the schema module made at import)."""
    from dispatch.ledger import MIGRATIONS

    assert MIGRATIONS[-1][0] == SCHEMA_VERSION
    assert [target for target, _what, _step in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


def test_recipients_held_behind_the_old_prefix_keep_their_reason_as_relay_trouble_columns(tmp_path: Path) -> None:
    """Schema 6 (issue 31): a held recipient's relay trouble is columns (cause, host, detail),
    not text behind "not sent yet: " in ``reply``. A schema-5 ledger's held rows are migrated:
    they still wait, with the text they had as the detail."""
    from dispatch.values import RelayCause, RelayTrouble

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    engine = sa.create_engine(url)
    reason = "relay.example.org:25: cannot connect: ConnectionRefusedError: [Errno 111] Connection refused"
    with engine.begin() as conn:
        for column in ("relay_cause", "relay_host", "relay_detail", "relay_permanent"):
            conn.execute(sa.text(f"ALTER TABLE deliveries DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE dispatch_schema SET version = 5"))
        conn.execute(sa.text(
            "INSERT INTO dispatches (name, edition_date, revision, kind, subject, source, created_by, created_at) "
            "VALUES ('2024-11-16.r1.edition', '2024-11-16', 1, 'edition', 'Gammal', '', 'x', '2024-11-16 13:00:00')"))
        for key, state, reply in (("a", "deferred", "not sent yet: " + reason), ("b", "deferred", "451 4.3.0 later"),
                                  ("c", "sent", "250 OK")):
            conn.execute(sa.text(
                "INSERT INTO deliveries (dispatch_id, key, address, name, state, attempts, reply, message_id, created_at, "
                f"updated_at, node) VALUES (1, '{key}', '{key}@example.org', '', '{state}', 0, :reply, '<{key}@x>', "
                "'2024-11-16 13:00:00', '2024-11-16 13:00:00', '')"), {"reply": reply})
    engine.dispose()

    ledger = Ledger(url)
    try:
        assert ledger.schema_version() == SCHEMA_VERSION == 9  # 6: relay trouble; 7: audit facts; 8: edited texts; 9: snapshots
        assert ledger.held_by_relay(1) == (RelayTrouble(RelayCause.OTHER, "", reason), 1)
        assert {row["key"]: row["reply"] for row in ledger.rows(1)} == {"a": reason, "b": "451 4.3.0 later", "c": "250 OK"}
        # A hold writes the fact; the next recorded attempt clears it.
        trouble = RelayTrouble(RelayCause.CONNECTION_REFUSED, "relay.example.org:25", "cannot connect: refused")
        ledger.hold_waiting(1, NOW + timedelta(minutes=5), trouble, NOW)
        assert ledger.held_by_relay(1) == (trouble, 2)
    finally:
        ledger.close()
    assert versions(url) == [SCHEMA_VERSION]

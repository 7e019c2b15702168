"""The ledger's tables and their history: the schema version and the steps that migrate to it.

Kept apart from ledger.py (the operations) so a schema change reads as one diff here
plus one migration step.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from dispatch.models import State

# The schema this program reads and writes. An older program refuses a ledger whose
# recorded version is higher than its own (``Ledger._migrate``); MIGRATIONS bring an older
# ledger up to this one.
SCHEMA_VERSION = 9

metadata = sa.MetaData()

schema_info = sa.Table(
    "dispatch_schema", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

dispatches = sa.Table(
    "dispatches", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("edition_date", sa.String(10), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(80), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    # Schema 3: what this dispatch sends (content.py's hash) and whose recorded approval
    # let it go; NULL for dispatches made before content was identified.
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("approved_by", sa.String(200), nullable=True),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("approval_id", sa.Integer, nullable=True),
    sa.Column("lists", sa.Text, nullable=True),  # the recipient lists it went to, comma-separated
    sa.UniqueConstraint("edition_date", "revision", "kind", name="uq_dispatch_edition"),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dispatch_id", sa.Integer, sa.ForeignKey("dispatches.id"), nullable=False),
    sa.Column("key", sa.String(320), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("reply", sa.Text, nullable=False, default=""),
    sa.Column("message_id", sa.String(250), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("node", sa.String(200), nullable=False, default=""),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    # Schema 6: why a recipient waits when the relay, not the recipient, was the trouble (set
    # by ``hold``, cleared by the next recorded attempt): values.RelayTrouble as columns.
    sa.Column("relay_cause", sa.String(40), nullable=True),  # a values.RelayCause
    sa.Column("relay_host", sa.String(300), nullable=True),
    sa.Column("relay_detail", sa.Text, nullable=True),
    sa.Column("relay_permanent", sa.Boolean, nullable=True),
    sa.UniqueConstraint("dispatch_id", "key", name="uq_delivery_recipient"),
    sa.Index("ix_deliveries_dispatch_state", "dispatch_id", "state"),
    sa.Index("ix_deliveries_message_id", "message_id"),  # schema 4: returned messages quote it
)

# What a dispatch sent: the edition source and the rendered subject, HTML and text, kept
# for the records (a public authority must keep what it sent). Schema 2 (see MIGRATIONS;
# programs between schema 1 and 2 created it without recording a version). Keyed by
# the dispatch *name* because the content is stored before the pipeline creates the
# dispatch row; one row per distinct content (a resume after an edit adds a second).
contents = sa.Table(
    "dispatch_contents", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dispatch_name", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("source_text", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # Schema 3: the content hash and the canonical document it was computed from, so a
    # later check can say what changed and publish can rebuild the page that was sent.
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("canonical", sa.Text, nullable=True),
    sa.UniqueConstraint("dispatch_name", "digest", name="uq_dispatch_content"),
)

# Schema 3: approvals are recorded acts, bound to one content hash of one edition date.
# A revoked approval keeps its row (who revoked it and when): the history is the record.
approvals = sa.Table(
    "approvals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("edition_date", sa.String(10), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_by", sa.String(200), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_approvals_edition", "edition_date"),
)

# Schema 3: the ledger's own identity, made once when the ledger is created. The program
# remembers it per ledger URL outside the ledger (ledger.py), so that a ledger that existed
# and is now gone or replaced is noticed instead of silently starting afresh.
identity = sa.Table(
    "ledger_identity", metadata,
    sa.Column("identity", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Schema 3: who first wrote each content of an edition (recorded at check, or at save in
# the console). The author of the current content may not approve it (four eyes).
edits = sa.Table(
    "edits", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("edition_date", sa.String(10), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # Schema 8: the edition file's text with that content, so that an approver who comes back
    # after a change sees what changed since the content he approved. NULL before.
    sa.Column("source_text", sa.Text, nullable=True),
    sa.UniqueConstraint("edition_date", "content_hash", name="uq_edit_content"),
)

# One row per relay: the next moment a message may start, shared by every process that
# sends through that relay, so a rate limit holds in total (an urgent send from another
# process included). Schema 2, like dispatch_contents.
relay_slots = sa.Table(
    "relay_slots", metadata,
    sa.Column("relay", sa.String(300), primary_key=True),
    sa.Column("next_slot", sa.DateTime(timezone=True), nullable=False),
)

# Schema 4: the console's accounts, its audit log, and texts kept aside when a save was
# refused (so that nobody's words are lost to a conflict). Passwords only as argon2id hashes.
users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),  # NULL: signs in only through single sign-on
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("failed_sign_ins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Single sign-on: the provider's issuer and subject this account belongs to, so that two
    # provider users whose names clean up alike can never share one account.
    sa.Column("sso_subject", sa.String(400), nullable=True),
    # Schema 5: a session carries the generation it began in; signing out, a new password or
    # disabling the account moves it on, which ends every copy of every session at once.
    sa.Column("session_generation", sa.Integer, nullable=False, default=0, server_default="0"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, default=""),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    # Schema 7: the detail as facts (a JSON list of {code, params}), for each front door to word;
    # "detail" keeps it in English. NULL for entries recorded before.
    sa.Column("detail_facts", sa.Text, nullable=True),
    sa.Index("ix_audit_at", "at"),
)

kept_texts = sa.Table(
    "kept_texts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("edition_date", sa.String(10), nullable=False),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Index("ix_kept_texts_edition", "edition_date"),
)

# Schema 4: what the bounce mailbox said about a delivery. One row per (returned message,
# delivery): reading the mailbox twice, or again after a crash, records nothing twice.
bounce_events = sa.Table(
    "bounce_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("dispatch_id", sa.Integer, sa.ForeignKey("dispatches.id"), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # hard, soft, unverified (a bounce nothing proves: changes nobody)
    sa.Column("status", sa.String(20), nullable=False, default=""),  # the DSN's Status, e.g. 5.1.1
    sa.Column("diagnostic", sa.Text, nullable=False, default=""),
    sa.Column("source", sa.String(200), nullable=False),  # the returned message's identity (Message-ID or digest)
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "delivery_id", name="uq_bounce_event"),
    sa.Index("ix_bounce_events_dispatch", "dispatch_id"),
)

# Schema 9: snapshots of directory lists (recipients/snapshots.py). One row per sync that
# found something new (a sync that finds exactly the last snapshot again moves its checked_at),
# its members apart; a dispatch names the snapshot each of its directory lists resolved to.
snapshots = sa.Table(
    "snapshots", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("list_name", sa.String(200), nullable=False),
    sa.Column("directory", sa.String(200), nullable=False),  # the name under directories: in config
    sa.Column("selector", sa.Text, nullable=False),  # "group DN" or "filter (...)"
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(10), nullable=False),  # a recipients.snapshots.SnapshotState
    sa.Column("members", sa.Integer, nullable=False),
    sa.Column("disabled", sa.Integer, nullable=False),
    sa.Column("without_mail", sa.Integer, nullable=False),
    sa.Column("invalid", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),  # why held or failed: a fact as JSON {code, params}
    sa.Column("accepted_by", sa.String(200), nullable=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_snapshots_list_state", "list_name", "state", "id"),
)

snapshot_members = sa.Table(
    "snapshot_members", metadata,
    sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False),
    sa.Column("key", sa.String(320), nullable=False),  # the folded address
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the entry's DN, the user's object id
    sa.PrimaryKeyConstraint("snapshot_id", "key", name="pk_snapshot_members"),
)

# Keyed by the dispatch's name, like dispatch_contents: recorded before the pipeline makes the row.
dispatch_snapshots = sa.Table(
    "dispatch_snapshots", metadata,
    sa.Column("dispatch_name", sa.String(200), nullable=False),
    sa.Column("list_name", sa.String(200), nullable=False),
    sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("dispatch_name", "list_name", "snapshot_id", name="pk_dispatch_snapshots"),
)

SENDABLE = (State.PENDING.value, State.DEFERRED.value, State.UNKNOWN.value)

# The tables of schema 1, the first recorded version: what a ledger of that version has
# for certain. Everything later is added by a step of MIGRATIONS.
SCHEMA_1 = (schema_info, dispatches, deliveries)


def _schema_2(conn: sa.Connection) -> None:
    # Programs between schema 1 and 2 already created these two tables (checkfirst keeps
    # them, with their rows); older schema-1 ledgers gain them here.
    metadata.create_all(conn, tables=[contents, relay_slots], checkfirst=True)


def _add_columns(conn: sa.Connection, table: sa.Table, names: tuple[str, ...]) -> None:
    """ALTER TABLE ... ADD COLUMN for each column the table lacks (a step may meet a
    ledger that already has some of them)."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(table.name)}
    for name in names:
        if name not in present:
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{name}" {kind}'))


def _schema_3(conn: sa.Connection) -> None:
    _add_columns(conn, dispatches, ("content_hash", "approved_by", "approved_at", "approval_id", "lists"))
    _add_columns(conn, contents, ("content_hash", "canonical"))
    metadata.create_all(conn, tables=[approvals, edits, identity], checkfirst=True)


def _schema_4(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[users, audit, kept_texts, bounce_events], checkfirst=True)
    # A returned message is matched to its row by the Message-ID it quotes.
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_deliveries_message_id ON deliveries (message_id)"))


def _schema_5(conn: sa.Connection) -> None:
    present = {column["name"] for column in sa.inspect(conn).get_columns(users.name)}
    if "session_generation" not in present:
        # NOT NULL with a default (unlike _add_columns): every existing account starts at 0.
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0"))
    # sso_subject came with single sign-on inside schema 4; a ledger made before it lacks it.
    _add_columns(conn, users, ("sso_subject",))


# Before schema 6 a held recipient's reply said why behind this prefix (sender.py wrote it).
LEGACY_HELD_PREFIX = "not sent yet: "
RELAY_COLUMNS = ("relay_cause", "relay_host", "relay_detail", "relay_permanent")


def _schema_6(conn: sa.Connection) -> None:
    _add_columns(conn, deliveries, RELAY_COLUMNS)
    # Rows held under the old prefix keep waiting with their reason, now as columns: the cause
    # was never recorded apart from the text, so it is "other", with the text as the detail.
    start = len(LEGACY_HELD_PREFIX) + 1
    conn.execute(
        deliveries.update()
        .where(deliveries.c.reply.startswith(LEGACY_HELD_PREFIX, autoescape=True), deliveries.c.relay_cause.is_(None))
        .values(relay_cause="other", relay_host="", relay_permanent=False,
                relay_detail=sa.func.substr(deliveries.c.reply, start),
                reply=sa.func.substr(deliveries.c.reply, start))
    )


def _schema_7(conn: sa.Connection) -> None:
    _add_columns(conn, audit, ("detail_facts",))


def _schema_8(conn: sa.Connection) -> None:
    _add_columns(conn, edits, ("source_text",))


def _schema_9(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[snapshots, snapshot_members, dispatch_snapshots], checkfirst=True)


# (version, what it adds, step), in order. A step runs in the transaction that records
# its version, so a ledger is never left between two versions. Add a step for every
# schema change and raise SCHEMA_VERSION with it; a step must be safe on a ledger that
# a program of the previous version created.
MIGRATIONS: tuple[tuple[int, str, Callable[[sa.Connection], None]], ...] = (
    (2, "dispatch_contents and relay_slots", _schema_2),
    (3, "content hashes, approvals and edits", _schema_3),
    (4, "console accounts, audit log, kept texts and bounce events", _schema_4),
    (5, "session generations of console accounts", _schema_5),
    (6, "a held recipient's relay trouble as columns", _schema_6),
    (7, "audit details as facts", _schema_7),
    (8, "the text of each edited content", _schema_8),
    (9, "snapshots of directory lists", _schema_9),
)

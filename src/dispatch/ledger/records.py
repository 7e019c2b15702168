"""Dispatches, the content they sent, and change control's records (authors, approvals)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dispatch.errors import LedgerError
from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import (
    approvals as approvals_table,
)
from dispatch.ledger.schema import (
    contents as contents_table,
)
from dispatch.ledger.schema import (
    deliveries,
    dispatches,
    edits,
)
from dispatch.models import Approval, DispatchRecord, State
from dispatch.values import DispatchKind

# How the approved_by column records that the file's 'status: approved' let a dispatch go
# (approval: front_matter), as ledgers have held it since schema 3. Only this module reads or
# writes it: everything above the ledger sees DispatchRecord.by_front_matter.
_BY_FRONT_MATTER = "status: approved (front matter)"
# An edit row that keeps a content's text for "what changed since" with nobody recorded as its
# author (the column is NOT NULL; an empty name is nobody's).
NO_AUTHOR = ""


def dispatch_name(edition_date: date, revision: int, kind: str) -> str:
    return f"{edition_date.isoformat()}.r{revision}.{kind}"


def _dispatch(row: Any) -> DispatchRecord:
    by_front_matter = row["approved_by"] == _BY_FRONT_MATTER
    return DispatchRecord(
        id=row["id"], name=row["name"], edition_date=date.fromisoformat(row["edition_date"]), revision=row["revision"],
        kind=row["kind"], subject=row["subject"], source=row["source"], created_by=row["created_by"],
        created_at=as_utc(row["created_at"]), finished_at=as_utc(row["finished_at"]),  # type: ignore[arg-type]
        content_hash=row["content_hash"], approved_by=None if by_front_matter else row["approved_by"],
        approved_at=as_utc(row["approved_at"]), approval_id=row["approval_id"],
        lists=tuple(x for x in (row["lists"] or "").split(",") if x), by_front_matter=by_front_matter,
    )


def _approvals(db: Database, edition_date: date | None, since: date | None = None) -> list[Approval]:
    """Every approval of the edition (None: of every edition, from ``since``), revoked ones
    included, newest first."""
    query = sa.select(approvals_table).order_by(approvals_table.c.id.desc())
    if edition_date is not None:
        query = query.where(approvals_table.c.edition_date == edition_date.isoformat())
    elif since is not None:
        query = query.where(approvals_table.c.edition_date >= since.isoformat())
    with db.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Approval(id=r["id"], edition_date=date.fromisoformat(r["edition_date"]), revision=r["revision"],
                 content_hash=r["content_hash"], approved_by=r["approved_by"],
                 approved_at=as_utc(r["approved_at"]),  # type: ignore[arg-type]
                 revoked_by=r["revoked_by"], revoked_at=as_utc(r["revoked_at"]))
        for r in rows
    ]


class Records:
    """Dispatches, the content they sent, and change control's records (authors, approvals).
    A part of ``Ledger``; each method runs its SQL under ``operation``."""

    db: Database

    @operation
    def open_dispatch(self, name: str, edition_date: date, revision: int, kind: str, subject: str,
        source: str, created_by: str, now: datetime, *, content_hash: str | None = None,
        approved_by: str | None = None, approved_at: datetime | None = None, approval_id: int | None = None,
        lists: tuple[str, ...] = (), by_front_matter: bool = False,
    ) -> tuple[DispatchRecord, bool]:
        """The dispatch of this key, created if it does not exist yet (insert-or-nothing).

        An existing dispatch that has sent to nobody yet takes the new content hash and
        subject (the caller has checked that a dispatch that has sent is not changed)."""
        if by_front_matter:
            approved_by = _BY_FRONT_MATTER
        values = dict(
            name=name, edition_date=edition_date.isoformat(), revision=revision, kind=kind,
            subject=subject, source=source, created_by=created_by, created_at=as_utc(now),
            content_hash=content_hash, approved_by=approved_by, approved_at=as_utc(approved_at),
            approval_id=approval_id, lists=",".join(lists) or None,
        )
        # ON CONFLICT DO NOTHING rather than catching the IntegrityError: every node fires,
        # and PostgreSQL would log each losing insert as an ERROR. RETURNING says whether
        # this call inserted (psycopg reports rowcount -1 for an INSERT that returns rows).
        with self.db.engine.begin() as conn:
            inserted = conn.execute(
                self.db.insert(dispatches).values(**values).on_conflict_do_nothing().returning(dispatches.c.id)
            ).first()
        created = inserted is not None
        if not created and content_hash is not None:
            with self.db.engine.begin() as conn:
                conn.execute(
                    dispatches.update()
                    .where(dispatches.c.name == name, sa.or_(dispatches.c.content_hash.is_(None),
                                                             dispatches.c.content_hash != content_hash))
                    .where(~sa.exists().where(deliveries.c.dispatch_id == dispatches.c.id,
                                              deliveries.c.state.in_((State.SENT.value, State.UNKNOWN.value))))
                    .values(content_hash=content_hash, subject=subject, approved_by=approved_by,
                            approved_at=as_utc(approved_at), approval_id=approval_id)
                )
        record = self.find_dispatch(name)
        if record is None:  # inserted or found a moment ago
            raise LedgerError(f"ledger {self.db.shown}: dispatch {name} is not there right after it was opened")
        return record, created

    @operation
    def find_dispatch(self, name: str | None = None) -> DispatchRecord | None:
        query = sa.select(dispatches)
        query = query.where(dispatches.c.name == name) if name else query.order_by(dispatches.c.id.desc()).limit(1)
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        return _dispatch(row) if row else None

    @operation
    def list_dispatches(self, edition_date: date | None = None, since: date | None = None) -> list[DispatchRecord]:
        query = sa.select(dispatches).order_by(dispatches.c.id)
        if edition_date:
            query = query.where(dispatches.c.edition_date == edition_date.isoformat())
        if since:
            query = query.where(dispatches.c.edition_date >= since.isoformat())
        with self.db.read() as conn:
            return [_dispatch(r) for r in conn.execute(query).mappings()]

    @operation
    def dispatches_with_content(self, content_hash: str, kind: DispatchKind) -> list[DispatchRecord]:
        """Dispatches of this kind that send exactly this content, oldest first."""
        of_kind = sa.or_(dispatches.c.kind == kind.value, dispatches.c.kind.startswith(kind.detail_prefix, autoescape=True))
        query = (sa.select(dispatches)
                 .where(dispatches.c.content_hash == content_hash, of_kind)
                 .order_by(dispatches.c.id))
        with self.db.read() as conn:
            return [_dispatch(r) for r in conn.execute(query).mappings()]

    @operation
    def finish_dispatch(self, dispatch_id: int, now: datetime) -> bool:
        """Mark the dispatch finished; True only for the one caller that did it first."""
        with self.db.engine.begin() as conn:
            result = conn.execute(
                dispatches.update()
                .where(dispatches.c.id == dispatch_id, dispatches.c.finished_at.is_(None))
                .values(finished_at=as_utc(now))
            )
        return bool(result.rowcount)

    @operation
    def keep_content(self, dispatch_name: str, subject: str, source: str, source_text: str,
                     html: str, text: str, now: datetime, *, content_hash: str | None = None,
                     canonical: str | None = None) -> bool:
        """Store the content of a dispatch unless this exact content is stored already.
        Returns True when a new version was stored."""

        digest = hashlib.sha256("\0".join((subject, source_text, html, text)).encode("utf-8")).hexdigest()
        try:
            with self.db.engine.begin() as conn:
                conn.execute(contents_table.insert().values(
                    dispatch_name=dispatch_name, digest=digest, subject=subject, source=source,
                    source_text=source_text, html=html, text=text, recorded_at=as_utc(now),
                    content_hash=content_hash, canonical=canonical,
                ))
            return True
        except IntegrityError:
            return False

    @operation
    def contents(self, dispatch_name: str) -> list[dict[str, Any]]:
        """The stored versions of a dispatch's content, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(contents_table).where(contents_table.c.dispatch_name == dispatch_name).order_by(contents_table.c.id)
            ).mappings().all()
        return [dict(r) | {"recorded_at": as_utc(r["recorded_at"])} for r in rows]

    @operation
    def record_edit(self, edition_date: date, content_hash: str, author: str, now: datetime, *,
                    source_text: str | None = None) -> str:
        """Remember who first wrote this content of the edition (and the file's text with it);
        returns that author (the one recorded earlier, if someone else saved the same
        content first). A row that kept only the text (an approval's, NO_AUTHOR) takes the
        author: the text was known before, who wrote it was not."""
        with self.db.engine.begin() as conn:
            conn.execute(
                self.db.insert(edits).values(edition_date=edition_date.isoformat(), content_hash=content_hash,
                                           author=author[:200], recorded_at=as_utc(now), source_text=source_text)
                .on_conflict_do_nothing(index_elements=["edition_date", "content_hash"])
            )
            conn.execute(edits.update()
                         .where(edits.c.edition_date == edition_date.isoformat(), edits.c.content_hash == content_hash,
                                edits.c.author == NO_AUTHOR)
                         .values(author=author[:200], recorded_at=as_utc(now)))
        if source_text is not None:
            self.keep_edited_text(edition_date, content_hash, source_text, now)
        return self.author_of(edition_date, content_hash) or author

    @operation
    def keep_edited_text(self, edition_date: date, content_hash: str, source_text: str, now: datetime) -> None:
        """Keep the file's text with this content, where no recorded edit of it has it yet
        (recorded before schema 8, or without its text, or not recorded at all: a file written
        on the server and approved at the command line, whose author nobody recorded)."""
        with self.db.engine.begin() as conn:
            conn.execute(
                self.db.insert(edits).values(edition_date=edition_date.isoformat(), content_hash=content_hash,
                                           author=NO_AUTHOR, recorded_at=as_utc(now), source_text=source_text)
                .on_conflict_do_nothing(index_elements=["edition_date", "content_hash"])
            )
            conn.execute(edits.update()
                         .where(edits.c.edition_date == edition_date.isoformat(), edits.c.content_hash == content_hash,
                                edits.c.source_text.is_(None))
                         .values(source_text=source_text))

    @operation
    def edited_text(self, edition_date: date, content_hash: str) -> str | None:
        """The file's text with this content of the edition, if it was kept."""
        with self.db.read() as conn:
            return conn.execute(
                sa.select(edits.c.source_text).where(edits.c.edition_date == edition_date.isoformat(),
                                                     edits.c.content_hash == content_hash)
            ).scalar()

    @operation
    def author_of(self, edition_date: date, content_hash: str) -> str | None:
        """Who was recorded as writing this content; None when nobody was (or only its text was kept)."""
        with self.db.read() as conn:
            author = conn.execute(
                sa.select(edits.c.author).where(edits.c.edition_date == edition_date.isoformat(),
                                                edits.c.content_hash == content_hash)
            ).scalar()
        return author or None

    @operation
    def approve(self, edition_date: date, revision: int, content_hash: str, by: str, now: datetime) -> Approval:
        with self.db.engine.begin() as conn:
            new_id = conn.execute(
                approvals_table.insert().values(edition_date=edition_date.isoformat(), revision=revision,
                                          content_hash=content_hash, approved_by=by[:200], approved_at=as_utc(now))
                .returning(approvals_table.c.id)
            ).scalar_one()
        return next(a for a in self.approvals(edition_date) if a.id == new_id)

    @operation
    def revoke_approvals(self, edition_date: date, by: str, now: datetime) -> int:
        """Revoke every standing approval of the edition; returns how many there were."""
        with self.db.engine.begin() as conn:
            result = conn.execute(
                approvals_table.update()
                .where(approvals_table.c.edition_date == edition_date.isoformat(), approvals_table.c.revoked_at.is_(None))
                .values(revoked_by=by[:200], revoked_at=as_utc(now))
            )
        return result.rowcount or 0

    @operation
    def approval_revoked(self, approval_id: int) -> bool:
        with self.db.read() as conn:
            return conn.execute(
                sa.select(approvals_table.c.revoked_at).where(approvals_table.c.id == approval_id)
            ).scalar() is not None

    @operation
    def approvals(self, edition_date: date) -> list[Approval]:
        """Every approval of the edition, revoked ones included, newest first."""
        return _approvals(self.db, edition_date, None)

    @operation
    def all_approvals(self, since: date | None = None) -> list[Approval]:
        """Every approval of every edition (from ``since``), newest first."""
        return _approvals(self.db, None, since)

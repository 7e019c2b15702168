"""The console's records: accounts (with sign-in failures, locks and session generations),
the audit log, and texts kept aside when a save was refused."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dispatch.errors import LedgerError
from dispatch.ledger.database import Database, as_utc, operation
from dispatch.ledger.schema import audit, kept_texts, users
from dispatch.models import AuditEntry, KeptText, User
from dispatch.values import Fact
from dispatch.wording import english


def stored_fact(fact: Fact) -> dict[str, Any]:
    """A fact as the ledger keeps it in JSON (the audit log's detail_facts, a snapshot's reason)."""
    return {"code": fact.code, "count": fact.count,
            "params": {key: stored_fact(value) if isinstance(value, Fact) else value for key, value in fact.params.items()}}


def read_fact(stored: dict[str, Any]) -> Fact:
    params = {key: read_fact(value) if isinstance(value, dict) else value for key, value in stored["params"].items()}
    return Fact(str(stored["code"]), params, stored.get("count"))


def _user(row: Any) -> User:
    return User(name=row["name"], email=row["email"], role=row["role"], password_hash=row["password_hash"],
                disabled=bool(row["disabled"]), failed_sign_ins=row["failed_sign_ins"],
                locked_until=as_utc(row["locked_until"]), created_at=as_utc(row["created_at"]),  # type: ignore[arg-type]
                sso_subject=row["sso_subject"], session_generation=int(row["session_generation"] or 0))


class Accounts:
    """The console's accounts, its audit log and the texts it kept.
    A part of ``Ledger``; each method runs its SQL under ``operation``."""

    db: Database

    @operation
    def add_user(self, name: str, email: str, role: str, password_hash: str | None, now: datetime) -> User:
        return self._insert_user(f"a user named {name!r} exists already; choose another name or disable that one",
                            name=name, email=email, role=role, password_hash=password_hash, disabled=False, created_at=as_utc(now))

    @operation
    def user(self, name: str) -> User | None:
        with self.db.read() as conn:
            row = conn.execute(users.select().where(users.c.name == name)).mappings().first()
        return _user(row) if row else None

    @operation
    def user_by_email(self, email: str) -> User | None:
        with self.db.read() as conn:
            row = conn.execute(users.select().where(sa.func.lower(users.c.email) == email.lower())
                               .order_by(users.c.name)).mappings().first()
        return _user(row) if row else None

    @operation
    def users(self) -> list[User]:
        with self.db.read() as conn:
            return [_user(row) for row in conn.execute(users.select().order_by(users.c.name)).mappings()]

    @operation
    def update_user(self, /, name: str, **values: Any) -> bool:
        if "locked_until" in values:
            values["locked_until"] = as_utc(values["locked_until"])
        with self.db.engine.begin() as conn:
            return bool(conn.execute(users.update().where(users.c.name == name).values(**values)).rowcount)

    @operation
    def take_sign_in_attempt(self, name: str, limit: int, now: datetime) -> int | None:
        """Count a sign-in attempt as failed *before* its password is checked, in one statement,
        so that parallel attempts cannot all pass a check of the count made before any of them
        was counted. Returns the attempt's number (1..``limit``), or None when the account is
        locked or ``limit`` attempts are counted already (their passwords may still be in check)."""
        with self.db.engine.begin() as conn:
            taken = conn.execute(
                users.update()
                .where(users.c.name == name, users.c.failed_sign_ins < limit,
                       sa.or_(users.c.locked_until.is_(None), users.c.locked_until <= as_utc(now)))
                .values(failed_sign_ins=users.c.failed_sign_ins + 1)
                .returning(users.c.failed_sign_ins)
            ).scalar()
        return None if taken is None else int(taken)

    @operation
    def lock_if_at_limit(self, name: str, limit: int, lock_until: datetime) -> bool:
        """After a wrong password: lock the account until ``lock_until`` if ``limit`` failures are
        counted (and no right password has cleared them since); the count starts again. True if
        this call locked it."""
        with self.db.engine.begin() as conn:
            return bool(conn.execute(users.update().where(users.c.name == name, users.c.failed_sign_ins >= limit)
                                     .values(failed_sign_ins=0, locked_until=as_utc(lock_until))).rowcount)

    @operation
    def end_sessions(self, name: str) -> bool:
        """Move the account's session generation on: every session begun before ends."""
        with self.db.engine.begin() as conn:
            return bool(conn.execute(users.update().where(users.c.name == name)
                                     .values(session_generation=users.c.session_generation + 1)).rowcount)

    @operation
    def record_audit(self, at: datetime, user: str, action: str, target: str = "",
                     content_hash: str | None = None, detail: Sequence[Fact] = ()) -> None:
        """One entry; ``detail``: what else it records, as facts, stored in English (for the
        command line and the logs) and as the facts (for each front door to word)."""
        with self.db.engine.begin() as conn:
            conn.execute(audit.insert().values(
                at=as_utc(at), user_name=user, action=action, target=target, content_hash=content_hash,
                detail="; ".join(english(f) for f in detail),
                detail_facts=json.dumps([stored_fact(f) for f in detail], ensure_ascii=False)))

    @operation
    def audit_log(self, limit: int = 500, *, action: str | None = None, target: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        query = audit.select().order_by(audit.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(audit.c.action == action)
        if target is not None:
            query = query.where(audit.c.target == target)
        with self.db.read() as conn:
            return [AuditEntry(id=row["id"], at=as_utc(row["at"]), user=row["user_name"], action=row["action"],  # type: ignore[arg-type]
                               target=row["target"], content_hash=row["content_hash"], detail=row["detail"],
                               facts=tuple(read_fact(f) for f in json.loads(row["detail_facts"] or "[]")))
                    for row in conn.execute(query).mappings()]

    @operation
    def keep_text(self, edition_date: date, user: str, text: str, reason: str, now: datetime) -> int:
        with self.db.engine.begin() as conn:
            inserted = conn.execute(kept_texts.insert().values(
                edition_date=edition_date.isoformat(), user_name=user, kept_at=as_utc(now), text=text, reason=reason
            ).returning(kept_texts.c.id)).scalar_one()
            return int(inserted)

    @operation
    def kept_texts(self, edition_date: date) -> list[KeptText]:
        with self.db.read() as conn:
            rows = conn.execute(kept_texts.select().where(kept_texts.c.edition_date == edition_date.isoformat())
                                .order_by(kept_texts.c.id.desc())).mappings()
            return [KeptText(id=row["id"], edition_date=date.fromisoformat(row["edition_date"]), user=row["user_name"],
                             kept_at=as_utc(row["kept_at"]), text=row["text"], reason=row["reason"])  # type: ignore[arg-type]
                    for row in rows]

    @operation
    def add_sso_user(self, name: str, email: str, role: str, subject: str, now: datetime, *,
                     disabled: bool = False) -> User:
        """An account for a person at the identity provider (no password), bound to ``subject`` in
        the same insert, so that no other sign-in ever sees it unbound."""
        return self._insert_user(f"a user named {name!r} exists already", name=name, email=email, role=role, password_hash=None,
                            disabled=disabled, created_at=as_utc(now), sso_subject=subject)

    @operation
    def user_by_sso_subject(self, subject: str) -> User | None:
        with self.db.read() as conn:
            row = conn.execute(users.select().where(users.c.sso_subject == subject).order_by(users.c.name)).mappings().first()
        return _user(row) if row else None

    def _insert_user(self, taken: str, **values: Any) -> User:
        """Insert one account (``taken``: the refusal when its name is in use) and read it back."""
        try:
            with self.db.engine.begin() as conn:
                conn.execute(users.insert().values(failed_sign_ins=0, **values))
        except IntegrityError as exc:
            raise LedgerError(taken) from exc
        found = self.user(values["name"])
        if found is None:  # inserted in the transaction above: only a concurrent delete gets here
            raise LedgerError(f"the account {values['name']!r} was removed as it was added; add it again")
        return found

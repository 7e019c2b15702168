"""What changed since: an edition now against the content its approver approved (a voided
approval), and against what was last sent to the same lists, each as a word-level diff of the
text and the fields that changed (control.diff). The earlier texts come from the ledger (the
approved content's edit, the dispatch's stored content), never from a file that may have
changed since."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dispatch.app.application import Session
from dispatch.app.changes import sent_version
from dispatch.app.drafting import FIELDS, diff_texts, split_fields
from dispatch.control.diff import TextDiff
from dispatch.ledger import Ledger
from dispatch.models import Approval
from dispatch.values import DispatchKind


@dataclass(frozen=True)
class SinceApproval:
    """The standing approval that a change voided, and what changed since its content
    (None when that content's text was not kept: approved before texts were kept)."""

    approval: Approval
    changes: TextDiff | None


def since_approval(ledger: Ledger, day: date, revision: int, content_hash: str | None, text: str,
                   order: tuple[str, ...] = FIELDS) -> SinceApproval | None:
    """The edition's text now (``text``, with content ``content_hash``) against the content of
    its newest standing approval of this revision, when that approval no longer matches; None
    when the current content is approved, or nothing of this revision was approved (or every
    approval revoked). A correction is compared with what was sent, not here."""
    if content_hash is None:
        return None
    standing = [a for a in ledger.approvals(day) if a.revoked_at is None and a.revision == revision]  # newest first
    if not standing or any(a.content_hash == content_hash for a in standing):
        return None
    voided = standing[0]
    approved_text = ledger.edited_text(day, voided.content_hash)
    return SinceApproval(voided, diff_texts(approved_text, text, order) if approved_text is not None else None)


@dataclass(frozen=True)
class SinceSent:
    """What changed since the edition that last reached the same lists (its dispatch, the
    edition's date and revision, and how many it reached), text as the ledger kept it."""

    name: str
    edition_date: date
    revision: int
    reached: int
    changes: TextDiff


def since_sent_to_lists(s: Session, day: date, revision: int, text: str, order: tuple[str, ...] = FIELDS) -> SinceSent | None:
    """The edition's text now (``text``, revision ``revision`` of ``day``) against the content of
    the latest edition dispatch that reached anybody on one of the lists it goes to (its
    ``lists``, else the schedules' lists): yesterday's edition for a new day's, revision 1 for a
    correction. None when nothing was sent to those lists yet. Test sends and urgent messages
    are not editions the readers of the lists got, and are left out."""
    ledger = s.ledger
    written = split_fields(text)[0].get("lists", "")
    lists = {name.strip() for name in written.split(",") if name.strip()} or set(s.settings.scheduled_lists())
    candidates = [r for r in ledger.list_dispatches() if r.kind_of is DispatchKind.EDITION
                  and not (r.edition_date == day and r.revision >= revision)  # this revision itself, or a later one
                  and (not r.lists or lists & set(r.lists))]  # a dispatch from before lists were kept: assume so
    for record in sorted(candidates, key=lambda r: (r.created_at, r.id), reverse=True):
        sent = sent_version(ledger, record.name)
        if sent is not None:
            return SinceSent(record.name, record.edition_date, record.revision, sent.reached,
                             diff_texts(sent.source_text, text, order, other_day=record.edition_date != day))
    return None

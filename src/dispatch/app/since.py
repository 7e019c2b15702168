"""What changed since: an edition now against the content its approver approved (a voided
approval), as a word-level diff of the text and the fields that changed (control.diff)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dispatch.app.drafting import FIELDS, diff_texts
from dispatch.control.diff import TextDiff
from dispatch.ledger import Ledger
from dispatch.models import Approval


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

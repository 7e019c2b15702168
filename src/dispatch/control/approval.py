"""May this content go out? The approval rule, written once (pure: facts in, a verdict out).

Two modes (config ``approval``):

- ``front_matter``: the edition file's ``status: approved`` lets it go.
- ``four_eyes``: only a recorded approval (``dispatch approve``, or the console) of the
  edition's *current* content, by someone other than the person who wrote that content,
  lets it go. Any change to the content voids the approval: the hash no longer matches.

Urgent messages and test sends (``--to``) are not gated here; the caller decides that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dispatch.control.content import short
from dispatch.models import Approval, Edition
from dispatch.values import Fact

MODES = ("front_matter", "four_eyes")


@dataclass(frozen=True)
class Verdict:
    """The approval rule's decision: may the content go, and why (a fact each front door words).

    Who let it go is a value, not a sentence: ``by_front_matter`` when the file's own
    ``status: approved`` did (mode front_matter), else the recorded ``approval`` (four_eyes)."""

    sendable: bool
    reason: Fact
    approval: Approval | None = None  # the recorded approval that lets it go (four_eyes)
    by_front_matter: bool = False

    @property
    def approvers(self) -> tuple[str, ...]:
        return (self.approval.approved_by,) if self.approval is not None else ()

    @property
    def approved_at(self) -> datetime | None:
        return self.approval.approved_at if self.approval is not None else None


def same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b) and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()  # type: ignore[union-attr]


def refuse_approver(approver: str, authors: tuple[str, ...]) -> Fact | None:
    """Why ``approver`` may not approve content written by ``authors`` (None: they may)."""
    if any(same_person(approver, author) for author in authors):
        return Fact.of("gate.approver_wrote_it", approver=approver)
    return None


def judge(mode: str, edition: Edition, content_hash: str, approvals: list[Approval],
          authors: tuple[str, ...], zone: ZoneInfo) -> Verdict:
    """Whether the edition, as it is now, may be sent (by hand or on schedule)."""
    day = edition.date.isoformat()
    if mode != "four_eyes":
        if edition.approved:
            return Verdict(True, Fact.of("gate.approved_in_file"), by_front_matter=True)
        return Verdict(False, Fact.of("gate.draft", status=str(edition.status), file=edition.source.name))
    standing = [a for a in approvals if a.revoked_at is None]
    for approval in standing:
        if approval.content_hash == content_hash and not any(same_person(approval.approved_by, a) for a in authors):
            return Verdict(True, Fact.of("gate.approved", approver=approval.approved_by,
                                         when=_local(approval.approved_at, zone), content=short(content_hash)), approval)
    if standing:
        latest = standing[0]
        if latest.content_hash == content_hash:
            return Verdict(False, Fact.of("gate.approved_only_by_editor", approver=latest.approved_by, day=day))
        return Verdict(False, Fact.of("gate.changed_after_approval", approver=latest.approved_by,
                                      when=_local(latest.approved_at, zone), approved=short(latest.content_hash),
                                      now=short(content_hash), day=day))
    revoked = [a for a in approvals if a.revoked_at is not None]
    if revoked:
        last = revoked[0]
        return Verdict(False, Fact.of("gate.revoked", approver=last.approved_by, revoker=str(last.revoked_by),
                                      when=_local(last.revoked_at, zone)))
    if authors:
        return Verdict(False, Fact.of("gate.not_approved_by_other", editors=" or ".join(authors), day=day))
    return Verdict(False, Fact.of("gate.not_approved", day=day))


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "-"

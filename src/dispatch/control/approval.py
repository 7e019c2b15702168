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

MODES = ("front_matter", "four_eyes")


@dataclass(frozen=True)
class Verdict:
    sendable: bool
    reason: str  # English, for the command line and the log
    reason_sv: str  # Swedish, for the office's alert mails
    approval: Approval | None = None  # the approval that lets it go (four_eyes)


def same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b) and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()  # type: ignore[union-attr]


def refuse_approver(approver: str, authors: tuple[str, ...]) -> str | None:
    """Why ``approver`` may not approve content written by ``authors`` (None: they may)."""
    if any(same_person(approver, author) for author in authors):
        return (f"{approver} wrote this content (its last editor) and cannot also approve it; "
                "another person must approve (four eyes)")
    return None


def judge(mode: str, edition: Edition, content_hash: str, approvals: list[Approval],
          authors: tuple[str, ...], zone: ZoneInfo) -> Verdict:
    """Whether the edition, as it is now, may be sent (by hand or on schedule)."""
    where = edition.source.name
    if mode != "four_eyes":
        if edition.approved:
            return Verdict(True, "approved ('status: approved' in the file)", "godkänd ('status: approved' i filen)")
        return Verdict(
            False,
            f"the edition is a draft ('status: {edition.status}'); set 'status: approved' to send it "
            "(or test it with send --to ADDR)",
            f"{where} har 'status: {edition.status}', inte 'status: approved'",
        )
    standing = [a for a in approvals if a.revoked_at is None]
    for approval in standing:
        if approval.content_hash == content_hash and not any(same_person(approval.approved_by, a) for a in authors):
            when = _local(approval.approved_at, zone)
            return Verdict(True, f"approved by {approval.approved_by} at {when} (content {short(content_hash)})",
                           f"godkänd av {approval.approved_by} {when}", approval)
    if standing:
        latest = standing[0]
        when = _local(latest.approved_at, zone)
        if latest.content_hash == content_hash:
            return Verdict(
                False,
                f"approved only by its own editor {latest.approved_by}; another person must approve it "
                f"(dispatch approve --date {edition.date.isoformat()} --by NAME)",
                f"godkänd endast av sin egen redaktör {latest.approved_by}; en annan person måste godkänna",
            )
        return Verdict(
            False,
            f"changed after approval by {latest.approved_by} at {when} (approved content "
            f"{short(latest.content_hash)}, now {short(content_hash)}); the new content needs a new approval: "
            f"dispatch approve --date {edition.date.isoformat()} --by NAME",
            f"rapporten (texten eller mejlets mallar) ändrades efter godkännandet av {latest.approved_by} {when}; "
            "den nya versionen måste godkännas på nytt",
        )
    revoked = [a for a in approvals if a.revoked_at is not None]
    if revoked:
        last = revoked[0]
        return Verdict(
            False,
            f"the approval by {last.approved_by} was revoked by {last.revoked_by} at "
            f"{_local(last.revoked_at, zone)}; approve it again to send it",
            f"godkännandet av {last.approved_by} återkallades av {last.revoked_by} {_local(last.revoked_at, zone)}",
        )
    editor = f" (its editor {' or '.join(authors)} cannot)" if authors else ""
    return Verdict(
        False,
        f"not approved yet: another person{editor} must approve this content: "
        f"dispatch approve --date {edition.date.isoformat()} --by NAME",
        "rapporten är inte godkänd av en andra person ännu",
    )


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "-"

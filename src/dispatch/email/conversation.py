"""Outlook's conversation headers, Thread-Topic and Thread-Index (pure).

Outlook threads by topic and Thread-Index (MS-OXOMSG 2.2.1.3, PidTagConversationIndex),
not by References: without them a correction, whose subject starts with "Rättelse: ",
opens a conversation of its own. Every revision of one day's edition is one conversation
(the same 22-byte header block, derived, not random, so that a resumed send or a later
revision computes the same); a correction adds one 5-byte reply level and carries the
first revision's topic. An urgent message is a conversation of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Thread:
    """Outlook's conversation headers (MS-OXOMSG 2.2.1.3, MS-OXCMAIL 2.2.3.2.10): Outlook
    threads by Thread-Topic and Thread-Index, not by References."""

    topic: str  # the subject without prefixes ("Rättelse: ", "BRÅDSKANDE: ")
    index: bytes  # 22 bytes for a message that starts a conversation, + 5 per reply level


FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def _filetime(moment: datetime) -> int:
    """100-nanosecond intervals since 1601-01-01 UTC (Windows' FILETIME)."""
    delta = moment.astimezone(UTC) - FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def thread_index(started: datetime, conversation: str) -> bytes:
    """The 22-byte header block: 0x01, the 40 high bits of the FILETIME after its first
    byte, then a GUID. Derived from ``conversation`` (not random), so that every revision
    and every resumed send of one edition computes the same conversation."""
    time = (_filetime(started) >> 24).to_bytes(5, "big")
    guid = hashlib.sha256(conversation.encode()).digest()[:16]
    return b"\x01" + time + guid


def reply_index(parent: bytes, started: datetime, now: datetime, sequence: int) -> bytes:
    """``parent`` plus one 5-byte child block: a flag bit (0: the delta is of bits 18-48),
    31 bits of time since the conversation started, 4 bits of 'random', 4 of sequence."""
    delta = max(0, _filetime(now) - _filetime(started))
    code = 0
    if delta >> 49:  # more than about 1.7 years: the coarser scale (bits 23-53)
        code, delta = 1, delta >> 23
    else:
        delta >>= 18
    block = (code << 39) | ((delta & 0x7FFFFFFF) << 8) | ((sequence * 7 & 0xF) << 4) | (sequence & 0xF)
    return parent + block.to_bytes(5, "big")



def topic(subject: str, prefixes: tuple[str, ...]) -> str:
    """A subject without the prefixes dispatch puts in front of it (PidTagConversationTopic
    is the subject without prefixes), however many and in whatever order."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if subject.startswith(prefix):
                subject, changed = subject[len(prefix):], True
    return subject


def conversation(list_id: str, domain: str, day: date, zone: ZoneInfo, *, subject: str, urgent: bool, revision: int,
                 now: datetime, first_subject: str | None, prefixes: tuple[str, ...]) -> Thread:
    """The Thread of one message: ``first_subject`` is the subject the first revision of the
    same edition was sent with (None when none was sent); ``now`` the message's Date."""
    start = datetime.combine(day, datetime.min.time(), zone)
    ident = f"{list_id}\0{domain}\0{day.isoformat()}"
    if urgent:
        ident += f"\0urgent\0{revision}\0{subject}"
        start = now
    header = thread_index(start, ident)
    if revision > 1 and not urgent:
        return Thread(topic(first_subject, prefixes) if first_subject else subject, reply_index(header, start, now, revision - 1))
    return Thread(subject, header)

"""What a message in the bounce mailbox is (pure: bytes in, a verdict out).

- a delivery status notification (RFC 3464: multipart/report; report-type=delivery-status),
  Exchange's included: per recipient, hard (5.x.x) or soft (4.x.x, delayed);
- a non-standard bounce that one of Mailman's detectors (flufl.bounce) recognises;
- an automatic reply (RFC 3834 ``Auto-Submitted: auto-replied``, Exchange's out-of-office
  headers, "Automatiskt svar", "Out of Office" ...);
- or a message from a person (a reply to the report sent to the wrong address): left alone;
- or none of these because it cannot be read safely (MIME nested too deep, or the parser gave
  up): UNREADABLE, with the reason, for the quarantine folder.

Besides the verdict it collects what matches the message to the ledger: the addresses the
bounce was sent to (a VERP token), and the Message-IDs of the original it quotes.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message

from flufl.bounce import all_failures

HARD, SOFT, AUTO_REPLY, HUMAN, UNREADABLE = "hard", "soft", "auto-reply", "human", "unreadable"
# The stdlib parser and Mailman's detectors recurse once per MIME level: a message nested
# thousands deep ends in RecursionError after seconds of work. Each level needs its own
# Content-Type header, so their number bounds the depth and is counted before parsing; a
# bounce of ours has fewer than ten, a person's reply with its attachments a few dozen.
MAX_CONTENT_TYPES = 200
_CONTENT_TYPE_LINE = re.compile(rb"(?im)^content-type[ \t]*:")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")
# Subjects of automatic replies in the languages the region's mail arrives in.
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatiskt svar|autosvar|frånvaro|out of office|automatic reply|auto(matic)?[- ]reply|abwesenheit)\b",
    re.IGNORECASE)
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-ms-exchange-inbox-rules-loop")


@dataclass(frozen=True)
class Failure:
    """One recipient the bounce reports on."""

    recipient: str  # lower-cased address, as the bounce names it (Final-Recipient first)
    kind: str  # HARD or SOFT
    status: str  # e.g. 5.1.1 ("" when the format gives none)
    diagnostic: str  # the remote server's words, one line
    original: str = ""  # the DSN's Original-Recipient, when it gives one that differs


@dataclass(frozen=True)
class Reading:
    kind: str  # "dsn" (a bounce, see failures), AUTO_REPLY, HUMAN or UNREADABLE (see reason)
    failures: tuple[Failure, ...] = ()
    envelope_to: tuple[str, ...] = ()  # where the bounce was delivered (carries a VERP token)
    message_ids: tuple[str, ...] = ()  # Message-IDs of the original, quoted in the bounce
    source: str = ""  # this message's identity: its Message-ID, else a digest of its bytes
    subject: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why an UNREADABLE message was not read


def read(data: bytes) -> Reading:
    """What ``data`` is; never raises for what the message holds (UNREADABLE instead)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()[:40]
    levels = len(_CONTENT_TYPE_LINE.findall(data))
    if levels > MAX_CONTENT_TYPES:
        return Reading(UNREADABLE, source=digest, reason=f"{levels} MIME parts (at most {MAX_CONTENT_TYPES} are read)")
    try:
        return _read(data, digest)
    except RecursionError:
        return Reading(UNREADABLE, source=digest, reason="MIME nested too deep to parse")
    except Exception as exc:  # whatever a hostile message does to the parser ends as a verdict, not a stopped run
        return Reading(UNREADABLE, source=digest, reason=f"cannot be parsed ({type(exc).__name__})")


def _read(data: bytes, digest: str) -> Reading:
    message = email.message_from_bytes(data, policy=policy.compat32)
    source = (message.get("Message-ID") or "").strip() or digest
    envelope_to = tuple(dict.fromkeys(
        address.lower()
        for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To")
        for value in message.get_all(header, [])
        for address in re.findall(r"[^\s<>,;\"']+@[^\s<>,;\"']+", str(value))
    ))
    subject = " ".join(str(message.get("Subject", "")).split())
    ids = _quoted_message_ids(message)
    failures = _dsn_failures(message) or _detected_failures(message)
    if failures:
        return Reading("dsn", failures, envelope_to, ids, source, subject)
    if _is_automatic_reply(message, subject):
        return Reading(AUTO_REPLY, (), envelope_to, ids, source, subject)
    return Reading(HUMAN, (), envelope_to, ids, source, subject)


def _dsn_failures(message: Message) -> tuple[Failure, ...]:
    """RFC 3464: the message/delivery-status part, one block per recipient."""
    if message.get_content_type() != "multipart/report":
        return ()
    failures = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks: list[Message] = [block for block in payload if isinstance(block, Message)] if isinstance(payload, list) else []
        if not blocks and isinstance(payload, str):  # some servers send it as text
            blocks = [email.message_from_string(chunk) for chunk in re.split(r"\n\s*\n", payload.strip())]
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            final, original = _address(block.get("Final-Recipient") or ""), _address(block.get("Original-Recipient") or "")
            recipient = final or original
            action = (block.get("Action") or "").strip().lower()
            status = (block.get("Status") or "").strip()
            found = _STATUS.search(status)
            status = found.group(0) if found else status[:20]
            if not recipient or action in ("delivered", "relayed", "expanded"):
                continue
            kind = HARD if (action == "failed" or status.startswith("5")) and not status.startswith("4") else SOFT
            diagnostic = _diagnostic(block.get("Diagnostic-Code") or "")
            failures.append(Failure(recipient, kind, status, diagnostic, original if original != recipient else ""))
    return tuple(failures)


def _detected_failures(message: Message) -> tuple[Failure, ...]:
    """The non-standard formats, through Mailman's detectors (flufl.bounce)."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a malformed message must not stop the run
        return ()
    body = _text_of(message)
    found = _STATUS.search(body)
    failures = [Failure(address.decode("utf-8", "replace").lower(), HARD,
                        found.group(0) if found and found.group(1) == "5" else "5.0.0", _exchange_diagnostic(body))
                for address in sorted(permanent)]
    failures += [Failure(address.decode("utf-8", "replace").lower(), SOFT, "4.0.0", "") for address in sorted(temporary - permanent)]
    return tuple(failures)


def _is_automatic_reply(message: Message, subject: str) -> bool:
    submitted = (message.get("Auto-Submitted") or "").strip().lower()
    if submitted.startswith("auto-replied"):
        return True
    if any(message.get(header) for header in _AUTO_HEADERS):
        return True
    auto_response = (message.get("X-Auto-Response-Suppress") or "") + (message.get("X-MS-Exchange-Organization-AutoResponse")
                                                                        or "")
    if "oof" in auto_response.lower() and submitted:
        return True
    return bool(_AUTO_SUBJECT.match(subject))


def _quoted_message_ids(message: Message) -> tuple[str, ...]:
    """Message-IDs of the original: in a returned message or headers part, and in the
    In-Reply-To/References of an automatic reply."""
    ids: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            raw = part.get_payload(decode=True)
            text = part.as_string() if kind == "message/rfc822" else (
                raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload()))
            for line in re.findall(r"(?im)^message-id:\s*(<[^>]+>)", text):
                ids.append(line)
    for header in ("In-Reply-To", "References"):
        ids += _MESSAGE_ID.findall(str(message.get(header, "")))
    own = (message.get("Message-ID") or "").strip()
    return tuple(dict.fromkeys(i for i in ids if i != own))


def _address(field_value: str) -> str:
    value = field_value.split(";", 1)[-1].strip().strip("<>")
    return value.lower()


def _diagnostic(code: str) -> str:
    text = " ".join(code.split(";", 1)[-1].split())
    return text[:300]


def _exchange_diagnostic(body: str) -> str:
    """Exchange's "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'"."""
    found = re.search(r"Remote Server returned '([^']+)'", body) or re.search(r"#(\d{3} \d\.\d\.\d[^#\n]*)", body)
    return " ".join(found.group(1).split())[:300] if found else ""


def _text_of(message: Message) -> str:
    parts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)

"""Rendered edition -> prepared MIME bytes once; per recipient, only the headers that differ.

Building an EmailMessage per recipient costs milliseconds; prepending two header
lines to prepared bytes costs microseconds (DESIGN: render once, personalise cheaply).
A correction adds a third and fourth, In-Reply-To and References, looked up by the
recipient's key in a table made once per dispatch.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from dispatch.errors import DispatchError
from dispatch.models import Recipient, Rendered
from dispatch.signing import Signer

_LINE_BREAK = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class Envelope:
    sender: str
    from_header: str
    reply_to: str | None
    list_id: str  # "Name <id.domain>"


@dataclass(frozen=True)
class PreparedMessage:
    """Everything but To and Message-ID, serialised once per edition."""

    head: bytes  # common header lines, each ending in CRLF
    body: bytes  # the blank line and the MIME body
    domain: str
    # A correction: recipient key -> its In-Reply-To and References lines (thread_headers).
    threads: Mapping[str, bytes] = field(default_factory=dict, compare=False)
    # DKIM (config dkim:): every message is signed as patched, so the signature covers the
    # To and Message-ID that recipient gets. None: unsigned.
    signer: Signer | None = field(default=None, compare=False)

    def for_recipients(self, to_header: str, message_id: str, key: str | None = None) -> bytes:
        """The bytes one SMTP transaction sends: patch two headers onto the prepared message
        (four for a correction to someone who got an earlier revision: ``key`` is theirs),
        then sign it when DKIM is configured."""
        if _LINE_BREAK.search(to_header) or _LINE_BREAK.search(message_id):
            raise DispatchError("refusing a header with a line break (possible header injection)")
        data = b"".join((
            b"To: ", to_header.encode("ascii"), b"\r\n",
            b"Message-ID: ", message_id.encode("ascii"), b"\r\n",
            self.threads.get(key, b"") if key is not None else b"",
            self.head, self.body,
        ))
        return self.signer.sign(data) if self.signer is not None else data


MAX_REFERENCES = 10  # the latest few keep a thread together; a line stays far below 998 octets


def thread_headers(earlier: Sequence[str]) -> bytes:
    """In-Reply-To (the last revision this person got) and References (all of them, oldest
    first), so that mail programs show a correction in the thread of what it corrects."""
    ids = [mid for mid in earlier if mid and not _LINE_BREAK.search(mid) and mid.isascii()][-MAX_REFERENCES:]
    if not ids:
        return b""
    return b"In-Reply-To: " + ids[-1].encode("ascii") + b"\r\nReferences: " + " ".join(ids).encode("ascii") + b"\r\n"


def list_id(name: str, identifier: str, domain: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", identifier).strip("-") or "rapport"
    return formataddr((name, f"{safe}.{domain}"))


def prepare(rendered: Rendered, envelope: Envelope, date: datetime, *, urgent: bool) -> PreparedMessage:
    """Serialise the common part of the message. policy.SMTP gives CRLF line ends and
    RFC 2047 encoded-words for every non-ASCII header; both parts are quoted-printable
    so no line exceeds 998 octets whatever the editors wrote."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = envelope.from_header
    if envelope.reply_to:
        message["Reply-To"] = envelope.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["List-Id"] = envelope.list_id
    # RFC 3834: auto-responders must not answer; MS-OXCMAIL: Exchange suppresses
    # out-of-office and auto-replies (not NDRs: bounces are wanted).
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    if not urgent:
        # "bulk" tells some servers and filters the message may wait or go to a lower-priority
        # folder: right for the daily report, wrong for a message that must be read now.
        message["Precedence"] = "bulk"
    if urgent:
        message["Importance"] = "High"
        message["X-Priority"] = "1"
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # RFC 3282: screen readers and translation offers pick the language from here too. Set
    # after the parts: set_content() clears every Content-* header of the message.
    message["Content-Language"] = "sv"
    data = message.as_bytes(policy=policy.SMTP)
    split = data.index(b"\r\n\r\n") + 2
    domain = envelope.sender.rpartition("@")[2]
    return PreparedMessage(head=data[:split], body=data[split:], domain=domain)


def to_header(recipients: list[Recipient] | tuple[Recipient, ...], group_name: str | None = None) -> str:
    """One recipient: 'Name <addr>' (name encoded when non-ASCII, quoted when it has
    specials; the address always plain). Several (a Bcc batch): an empty group, so
    nobody sees the others. Always one line: the prepared message is patched, not folded."""
    if len(recipients) == 1 and group_name is None:
        recipient = recipients[0]
        name = " ".join(recipient.name.split())
        if not name:
            return recipient.address
        if name.isascii():
            return formataddr((name, recipient.address))  # quotes and escapes specials
        return f"{encode_words(name)} <{recipient.address}>"
    name = " ".join((group_name or "Mottagare").split())
    if not name.isascii():
        return f"{encode_words(name)}:;"
    return re.sub(r'[:;,"<>@()\\\[\]]', " ", name).strip() + ":;"


def encode_words(text: str) -> str:
    """RFC 2047 'B' encoded-words of at most 75 characters each, separated by spaces on
    one line (a decoder joins adjacent encoded-words and drops the space between them).
    email.utils.formataddr makes one word of any length, and email.header folds with
    line breaks, which a patched header line cannot carry. A multi-byte character is
    never split across words."""
    words: list[str] = []
    chunk = ""
    for char in text:
        # 12 = len("=?utf-8?b?") + len("?="); base64 turns 3 bytes into 4 characters.
        if chunk and 12 + 4 * -(-len((chunk + char).encode()) // 3) > 75:
            words.append(chunk)
            chunk = ""
        chunk += char
    if chunk:
        words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode('ascii')}?=" for w in words)


def message_id(dispatch_name: str, key: str, domain: str) -> str:
    """Stable per (dispatch, recipient or batch), so a resend after an unknown outcome
    carries the same Message-ID and clients can de-duplicate it."""
    digest = hashlib.sha256(f"{dispatch_name}\0{key}".encode()).hexdigest()[:24]
    token = re.sub(r"[^A-Za-z0-9.-]", "-", dispatch_name)
    return f"<{token}.{digest}@{domain}>"

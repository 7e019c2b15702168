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
from email.utils import format_datetime

from dispatch.email import headers
from dispatch.email.conversation import Thread
from dispatch.email.dkim import Signer
from dispatch.errors import DispatchError
from dispatch.models import Recipient, Rendered

_LINE_BREAK = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class Envelope:
    sender: str  # the envelope sender (MAIL FROM)
    from_name: str
    from_address: str
    reply_to: str | None
    list_name: str  # List-Id's phrase (RFC 2919), e.g. the report's title
    list_address: str  # List-Id's identifier, e.g. "regional-rapport.example.org"


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
        then sign it when DKIM is configured. ``to_header`` is to_header()'s value: folded
        lines, never a bare line break."""
        if headers.has_bare_break(to_header) or _LINE_BREAK.search(message_id):
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
    return b"In-Reply-To: " + ids[-1].encode("ascii") + b"\r\n" + headers.fold("References", ids)


def list_address(identifier: str, domain: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", identifier).strip("-") or "rapport"
    return f"{safe}.{domain}"


def prepare(rendered: Rendered, envelope: Envelope, date: datetime, *, urgent: bool,
            thread: Thread | None = None) -> PreparedMessage:
    """Serialise the common part of the message. The header fields with text in them are
    written by dispatch.email.headers (encoded-words that keep their spaces, folded at 78); the
    MIME body by the standard library with CRLF line ends, both parts quoted-printable so
    no line exceeds 998 octets whatever the editors wrote."""
    lines = [headers.mailbox("From", envelope.from_name, envelope.from_address)]
    if envelope.reply_to:
        lines.append(headers.mailbox("Reply-To", "", envelope.reply_to))
    lines.append(headers.unstructured("Subject", rendered.subject))
    lines.append(b"Date: " + format_datetime(date).encode("ascii") + b"\r\n")
    lines.append(headers.fold("List-Id", headers.mailbox_atoms(len("List-Id: "), envelope.list_name, envelope.list_address)))
    if thread is not None:
        lines.append(headers.unstructured("Thread-Topic", thread.topic))
        lines.append(b"Thread-Index: " + base64.b64encode(thread.index) + b"\r\n")
    # RFC 3834: auto-responders must not answer; MS-OXCMAIL: Exchange suppresses
    # out-of-office and auto-replies (not NDRs: bounces are wanted).
    lines.append(b"Auto-Submitted: auto-generated\r\n")
    lines.append(b"X-Auto-Response-Suppress: OOF, AutoReply\r\n")
    if urgent:
        lines.append(b"Importance: High\r\nX-Priority: 1\r\n")
    else:
        # "bulk" tells some servers and filters the message may wait or go to a lower-priority
        # folder: right for the daily report, wrong for a message that must be read now.
        lines.append(b"Precedence: bulk\r\n")
    message = EmailMessage(policy=policy.SMTP)
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # RFC 3282: screen readers and translation offers pick the language from here too. Set
    # after the parts: set_content() clears every Content-* header of the message.
    message["Content-Language"] = "sv"
    data = message.as_bytes(policy=policy.SMTP)  # only ASCII MIME headers: nothing to fold wrongly
    domain = envelope.sender.rpartition("@")[2]
    return PreparedMessage(head=b"".join(lines) + data[:data.index(b"\r\n\r\n") + 2],
                           body=data[data.index(b"\r\n\r\n") + 2:], domain=domain)


def to_header(recipients: list[Recipient] | tuple[Recipient, ...], group_name: str | None = None) -> str:
    """The To value: one recipient 'Name <addr>' (name as encoded-words when non-ASCII,
    quoted when it has specials; the address always plain); several (a Bcc batch) an
    empty group, so nobody sees the others. Folded at 78 octets (CRLF SP) when long."""
    used = len("To: ")
    if len(recipients) == 1 and group_name is None:
        recipient = recipients[0]
        atoms = headers.mailbox_atoms(used, " ".join(recipient.name.split()), recipient.address)
    else:
        atoms = headers.group_atoms(used, " ".join((group_name or "Mottagare").split()))
    return headers.fold_value(used, atoms)


def message_id(dispatch_name: str, key: str, domain: str) -> str:
    """Stable per (dispatch, recipient or batch), so a resend after an unknown outcome
    carries the same Message-ID and clients can de-duplicate it."""
    digest = hashlib.sha256(f"{dispatch_name}\0{key}".encode()).hexdigest()[:24]
    token = re.sub(r"[^A-Za-z0-9.-]", "-", dispatch_name)
    return f"<{token}.{digest}@{domain}>"

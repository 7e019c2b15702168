"""The bounce mailbox over IMAP (imapclient): the one place that talks to it.

Messages are read with BODY.PEEK, so reading marks nothing as seen. What the program handled
moves to the processed folder; what it cannot read (too large, too deep) to the quarantine
folder; what it leaves for people (a person's reply, a bounce it cannot prove) stays unread
where it was, flagged, and later runs read past it. Each run reads the newest messages first
(by UID), so a pile of old ones never hides a new bounce. Nothing is deleted. TLS is always
verified, and a password or token is never sent over an unencrypted connection.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from imapclient import FLAGGED, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from dispatch.config import BounceSettings
from dispatch.errors import DispatchError

# What one FETCH brings at most: the bodies of a chunk are in memory together.
CHUNK_BYTES = 8_000_000
CHUNK_MESSAGES = 100


class MailboxError(DispatchError):
    """The bounce mailbox cannot be reached, or refuses the sign-in."""


@dataclass(frozen=True)
class Listed:
    uid: int
    size: int  # as the server counts it (RFC822.SIZE)


@dataclass(frozen=True)
class Fetched:
    uid: int
    data: bytes  # at most the limit it was fetched with, plus one byte when the message is longer


class Mailbox:
    def __init__(self, client: IMAPClient, settings: BounceSettings) -> None:
        self.client = client
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"

    def unread(self, limit: int = 500) -> list[Listed]:
        """Unseen, unflagged messages, newest first (highest UID), at most ``limit``, with sizes."""
        uids = sorted(self.client.search(["UNSEEN", "UNFLAGGED"]), reverse=True)[:limit]
        if not uids:
            return []
        sizes = self.client.fetch(uids, ["RFC822.SIZE"])
        return [Listed(uid, int(sizes[uid].get(b"RFC822.SIZE", 0))) for uid in uids if uid in sizes]

    def bodies(self, listed: Sequence[Listed], max_bytes: int) -> Iterator[Fetched]:
        """The messages' bytes, a bounded chunk per FETCH. A partial fetch caps each at
        ``max_bytes`` + 1 whatever size the server claimed, so more than ``max_bytes`` says
        "too large" without downloading the rest."""
        chunk: list[int] = []
        weight = 0
        for item in listed:
            chunk.append(item.uid)
            weight += min(item.size, max_bytes + 1)
            if weight >= CHUNK_BYTES or len(chunk) >= CHUNK_MESSAGES:
                yield from self._fetch(chunk, max_bytes)
                chunk, weight = [], 0
        if chunk:
            yield from self._fetch(chunk, max_bytes)

    def _fetch(self, uids: list[int], max_bytes: int) -> Iterator[Fetched]:
        fetched = self.client.fetch(uids, [f"BODY.PEEK[]<0.{max_bytes + 1}>"])
        for uid in uids:
            if uid in fetched:
                data = next((bytes(v) for k, v in fetched[uid].items() if k.startswith(b"BODY[]")), b"")
                yield Fetched(uid, data)

    def flag(self, uids: Sequence[int]) -> None:
        """\\Flagged, and still unread: left for a person, and read past by later runs."""
        if uids:
            self.client.add_flags(list(uids), [FLAGGED], silent=True)

    def move(self, uids: Sequence[int], folder: str) -> None:
        """To ``folder`` (made if missing): MOVE, or COPY then expunge of the original."""
        if not uids:
            return
        if not self.client.folder_exists(folder):
            self.client.create_folder(folder)
        if self.client.has_capability("MOVE"):
            self.client.move(list(uids), folder)
        else:
            self.client.copy(list(uids), folder)
            self.client.delete_messages(list(uids))
            self.client.uid_expunge(list(uids)) if self.client.has_capability("UIDPLUS") else self.client.expunge()


@contextmanager
def open_mailbox(settings: BounceSettings, secret: Callable[[], str]) -> Iterator[Mailbox]:
    """Connect, sign in and select the folder; MailboxError (with host:port, never the secret)."""
    where = f"{settings.host}:{settings.port}"
    if settings.security not in ("tls", "starttls"):
        raise MailboxError(f"bounce mailbox {where}: bounces.security must be tls or starttls: the password would "
                           "otherwise cross the network unencrypted")
    try:
        context = ssl.create_default_context(cafile=os.fspath(settings.ca_file) if settings.ca_file else None)
    except OSError as exc:  # missing, unreadable, or not a certificate (ssl.SSLError is an OSError)
        why = "no certificate in it" if isinstance(exc, ssl.SSLError) else (exc.strerror or str(exc)).lower()
        raise MailboxError(f"bounce mailbox {where}: cannot use bounces.ca_file {settings.ca_file}: {why}") from None
    try:
        client = IMAPClient(settings.host or "", port=settings.port, ssl=settings.security == "tls",
                            ssl_context=context, timeout=30)
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(f"bounce mailbox {where}: cannot connect: {_said(exc)}") from None
    try:
        if settings.security == "starttls":
            client.starttls(context)
        credential = secret()
        if settings.auth == "xoauth2":
            client.oauth2_login(settings.username or "", credential)
        else:
            client.login(settings.username or "", credential)
        client.select_folder(settings.folder)
        yield Mailbox(client, settings)
    except LoginError:
        raise MailboxError(f"bounce mailbox {where}: the server refused the sign-in of {settings.username} "
                           "(check bounces.username and the password)") from None
    except (OSError, IMAPClientError, ssl.SSLError) as exc:
        raise MailboxError(f"bounce mailbox {where}: {_said(exc)}") from None
    finally:
        with suppress(OSError, IMAPClientError, ssl.SSLError, AttributeError):
            client.logout()


def _said(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted ({exc.verify_message}); set bounces.ca_file for a private CA"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer within 30 s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text: Any = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{type(exc).__name__}: {str(text)[:200]}"

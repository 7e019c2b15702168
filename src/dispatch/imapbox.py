"""The bounce mailbox over IMAP (imapclient): the one place that talks to it.

Messages are read with BODY.PEEK, so reading marks nothing as seen: what the program does
not handle (a person's reply, a message it cannot match) stays unread where it was. What it
did handle moves to the processed folder; nothing is deleted. TLS is always verified, and a
password or token is never sent over an unencrypted connection.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from dispatch.config import BounceSettings
from dispatch.errors import DispatchError


class MailboxError(DispatchError):
    """The bounce mailbox cannot be reached, or refuses the sign-in."""


@dataclass(frozen=True)
class Fetched:
    uid: int
    data: bytes


class Mailbox:
    def __init__(self, client: IMAPClient, settings: BounceSettings) -> None:
        self.client = client
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"

    def unread(self, limit: int = 500) -> list[Fetched]:
        """New (unseen) messages in the folder, oldest first, at most ``limit`` per run."""
        uids = sorted(self.client.search(["UNSEEN"]))[:limit]
        if not uids:
            return []
        fetched = self.client.fetch(uids, ["BODY.PEEK[]"])
        return [Fetched(uid, bytes(fetched[uid][b"BODY[]"])) for uid in uids if uid in fetched]

    def move(self, uids: Sequence[int]) -> None:
        """To the processed folder (made if missing): MOVE, or COPY then expunge of the original."""
        if not uids:
            return
        folder = self.settings.processed_folder or "Processed"
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
    context = ssl.create_default_context(cafile=os.fspath(settings.ca_file) if settings.ca_file else None)
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

"""Getting bytes to a mail server (or a Maildir), and what its replies mean.

Library errors are wrapped here, once, with host:port. Per-recipient outcomes are
returned, never raised: one refused address must not sink the others.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

from dispatch.config import TransportSettings
from dispatch.errors import AuthenticationError, TransportError
from dispatch.models import QUOTA_EXCEEDED, Outcome, State



def dot_stuffed(data: bytes) -> bytes:
    """The DATA payload (RFC 5321 4.5.2): a leading dot doubled on every line, CRLF at the
    end, then the lone dot. Messages here always end lines with CRLF, so a bytes replace
    does what a multi-line regex did at a sixth of the cost (it ran once per recipient)."""
    payload = data.replace(b"\r\n.", b"\r\n..")
    if payload.startswith(b"."):
        payload = b"." + payload
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


def classify(code: int, text: str) -> State:
    """RFC 5321 reply -> state. Exchange's daily quota (554 5.2.0) is a wait, not a failure."""
    if 200 <= code < 300:
        return State.SENT
    if 400 <= code < 500:
        return State.DEFERRED
    if QUOTA_EXCEEDED in text.lower():
        return State.DEFERRED
    return State.FAILED


def reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


# The Transport and Connection protocols these classes satisfy belong to their consumer,
# pipeline.py; nothing here depends on them.


# -- Maildir -------------------------------------------------------------------


class MaildirTransport:
    """Delivers into a Maildir (tmp/ then rename into new/), which any mail client opens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.endpoint = f"maildir:{path}"

    def connect(self) -> "MaildirConnection":
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(self.endpoint, f"cannot create the Maildir: {exc.strerror}") from None
        return MaildirConnection(self.path)


class MaildirConnection:
    usable = True
    _counter = 0
    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        with MaildirConnection._lock:
            MaildirConnection._counter += 1
            counter = MaildirConnection._counter
        name = f"{time.time_ns()}.P{os.getpid()}Q{counter}R{uuid.uuid4().hex[:8]}.{self.host}"
        # Maildir files use the local line ending; the envelope goes in Return-Path/Delivered-To.
        envelope = f"Return-Path: <{sender}>\r\n".encode() + b"".join(
            f"Delivered-To: {r}\r\n".encode() for r in recipients
        )
        content = (envelope + data).replace(b"\r\n", b"\n")
        tmp = self.path / "tmp" / name
        try:
            with open(tmp, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, self.path / "new" / name)
        except OSError as exc:
            outcome = Outcome(State.DEFERRED, f"maildir write failed: {exc.strerror}")
            return {r: outcome for r in recipients}
        accepted = Outcome(State.SENT, f"250 delivered to maildir new/{name}")
        return {r: accepted for r in recipients}

    def close(self) -> None:
        pass


# -- SMTP ----------------------------------------------------------------------


class SMTPTransport:
    def __init__(self, settings: TransportSettings, password: str | None = None, token_source: "TokenSource | None" = None) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self._password = password
        self._token_source = token_source
        self._helo = socket.gethostname()  # once: no host name lookup per connection
        self._context: ssl.SSLContext | None = None
        if settings.security != "none":
            context = ssl.create_default_context()
            if settings.ca_file:
                try:
                    context.load_verify_locations(cafile=str(settings.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise TransportError(self.endpoint, f"cannot load ca_file {settings.ca_file}: {exc}") from None
            self._context = context

    def connect(self) -> "SMTPConnection":
        s = self.settings
        try:
            if s.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self._helo, timeout=s.timeout_seconds, context=self._context)
            else:
                client = smtplib.SMTP(s.host, s.port, local_hostname=self._helo, timeout=s.timeout_seconds)
            client.ehlo()
            if s.security == "starttls":
                if not client.has_extn("starttls"):
                    client.close()
                    raise TransportError(self.endpoint, "the server does not offer STARTTLS; refusing to continue unencrypted (security: starttls)")
                client.starttls(context=self._context)
                client.ehlo()
            # xoauth2 always authenticates: without a username it must fail loudly, not send unauthenticated.
            if s.username or s.auth == "xoauth2":
                self._authenticate(client)
        except TransportError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(self.endpoint, f"TLS certificate not trusted: {exc.verify_message}; set transport.ca_file if the relay uses a private CA") from None
        except ssl.SSLError as exc:
            raise TransportError(self.endpoint, f"TLS failed: {exc.reason or exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise TransportError(self.endpoint, f"server refused the session: {reply_text(exc.smtp_code, exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(self.endpoint, f"cannot connect: {exc.__class__.__name__}: {exc}") from None
        return SMTPConnection(client, self.endpoint)

    def _authenticate(self, client: smtplib.SMTP) -> None:
        s = self.settings
        if s.security == "none" or not isinstance(client.sock, ssl.SSLSocket):
            client.close()
            raise AuthenticationError(self.endpoint, "refusing to send credentials over an unencrypted connection; set transport.security to starttls or tls")
        try:
            if s.auth == "xoauth2":
                assert self._token_source is not None
                self._token_source.authenticate(client, s.username or "")
            else:
                if self._password is None:
                    raise AuthenticationError(self.endpoint, "transport.username is set but no password: set password_env or password_file")
                client.login(s.username or "", self._password)
        except smtplib.SMTPAuthenticationError as exc:
            client.close()
            raise AuthenticationError(self.endpoint, f"authentication failed: {explain_auth_reply(exc.smtp_code, exc.smtp_error)}") from None
        except AuthenticationError:
            client.close()  # raised by the token source (or above): do not leave the session open
            raise


def explain_auth_reply(code: int, message: bytes | str) -> str:
    text = reply_text(code, message)
    if code == 550 and "5.7.30" in text:
        return text + " (Basic auth is disabled for this tenant: use auth: xoauth2)"
    return text


class TokenSource(Protocol):
    def authenticate(self, client: smtplib.SMTP, username: str) -> None: ...


class SMTPConnection:
    def __init__(self, client: smtplib.SMTP, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self.usable = True
        # RFC 2920: MAIL, every RCPT and DATA go in one write and their replies are read
        # together, one round trip instead of two plus one per recipient.
        self.pipelining = client.does_esmtp and client.has_extn("pipelining")
        try:
            # Commands are small writes answered at once; Nagle's algorithm only delays them.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        """One SMTP transaction. Outcomes per recipient; a lost connection before the final
        dot is deferred (nothing was delivered), after it unknown (RFC 1047)."""
        client = self.client
        outcomes: dict[str, Outcome] = {}
        accepted: list[str] = []
        try:
            if self.pipelining:
                replies = self._pipelined_envelope(sender, recipients)
                mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
            else:
                mail_reply, rcpt_replies, data_reply = client.mail(sender), [], None
                if mail_reply[0] == 250:
                    for rcpt in recipients:
                        rcpt_replies.append(client.rcpt(rcpt))
                        if rcpt_replies[-1][0] == 421:
                            break
            if mail_reply[0] != 250:
                return self._all(recipients, mail_reply[0], mail_reply[1], reset=True)
            for rcpt, (code, message) in zip(recipients, rcpt_replies):
                text = reply_text(code, message)
                if code in (250, 251):
                    accepted.append(rcpt)
                    continue
                outcomes[rcpt] = Outcome(classify(code, text), text)
                if code == 421:
                    self.usable = False
                    return outcomes | {r: Outcome(State.DEFERRED, text) for r in recipients if r not in outcomes}
            if not accepted:
                if data_reply is not None and data_reply[0] == 354:
                    client.send(b".\r\n")  # a server that took DATA anyway gets an empty message ended
                    client.getreply()
                client.rset()
                return outcomes
            if data_reply is None:
                data_reply = client.docmd("DATA")
            if data_reply[0] != 354:
                return outcomes | self._all(accepted, data_reply[0], data_reply[1], reset=True)
            client.send(dot_stuffed(data))
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self.usable = False
            lost = Outcome(State.DEFERRED, f"connection lost before the end of the message: {exc.__class__.__name__}")
            return outcomes | {r: lost for r in recipients if r not in outcomes}
        try:
            code, message = client.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The server may have accepted it: resend later with the same Message-ID.
            self.usable = False
            unknown = Outcome(State.UNKNOWN, f"connection lost after the final dot, before the reply: {exc.__class__.__name__}")
            return outcomes | {r: unknown for r in accepted}
        if code == 421:
            self.usable = False
        result = Outcome(classify(code, reply_text(code, message)), reply_text(code, message))
        return outcomes | {r: result for r in accepted}

    def _pipelined_envelope(self, sender: str, recipients: list[str]) -> list[tuple[int, bytes]]:
        """Replies to MAIL, each RCPT and DATA, in that order."""
        commands = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients] + ["DATA"]
        self.client.send("".join(f"{c}\r\n" for c in commands))
        return [self.client.getreply() for _ in commands]

    def _all(self, recipients: list[str], code: int, message: bytes, reset: bool) -> dict[str, Outcome]:
        if code == 421:
            self.usable = False
        elif reset:
            try:
                self.client.rset()
            except (OSError, smtplib.SMTPException):
                self.usable = False
        text = reply_text(code, message)
        return {r: Outcome(classify(code, text), text) for r in recipients}

    def close(self) -> None:
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            self.client.close()

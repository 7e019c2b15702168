"""Getting bytes to a mail server (or a Maildir), and what its replies mean.

Library errors are wrapped here, once, with host:port. Per-recipient outcomes are
returned, never raised: one refused address must not sink the others.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from typing import Protocol

from dispatch.config import TransportSettings
from dispatch.config.settings import FQDN
from dispatch.delivery.maildir import MaildirTransport as MaildirTransport  # the other Transport; one import place
from dispatch.delivery.smtpreply import ReplyError, StrictSMTP, StrictSMTP_SSL
from dispatch.delivery.trouble import cause_of, reply_cause
from dispatch.errors import AuthenticationError, TransportError
from dispatch.models import QUOTA_EXCEEDED, Outcome, State
from dispatch.values import RelayCause


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
    """A reply as we show and record it: one line, and never an echoed AUTH payload (some
    servers repeat the command they refuse, credentials included)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    text = _AUTH_ECHO.sub(r"\1[redacted]", " ".join(text.split()))
    return f"{code} {text}".strip()


_AUTH_ECHO = re.compile(r"(?i)(\bAUTH\s+[A-Z0-9_-]+\s+)\S+")
# In a reply to AUTH, a base64 run this long (with a digit, '+', '/' or padding, unlike a
# word) is a credential echoed back.
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[0-9+/])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])|"
                          r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{16,}={1,2}(?![A-Za-z0-9+/=])")


# -- SMTP ----------------------------------------------------------------------


def default_ehlo_name(fallback: str) -> str:
    """The system's fully qualified name when it has one (a dot, and not localhost's), else
    ``fallback`` (the sender's domain), else the host name. The lookup may ask DNS."""
    fqdn = socket.getfqdn()
    if FQDN.match(fqdn) and not fqdn.lower().startswith("localhost"):
        return fqdn
    return fallback or socket.gethostname()


class SMTPTransport:
    def __init__(self, settings: TransportSettings, password: str | None = None, token_source: TokenSource | None = None) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self._password = password
        self._token_source = token_source
        # Chosen once, when the transport is made (not per connection, not in every command).
        self._helo = settings.ehlo_name or default_ehlo_name(settings.ehlo_fallback)
        self._context: ssl.SSLContext | None = None
        if settings.security != "none":
            context = ssl.create_default_context()
            if settings.ca_file:
                try:
                    context.load_verify_locations(cafile=str(settings.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise TransportError(self.endpoint, f"cannot load ca_file {settings.ca_file}: {exc}",
                                         cause=RelayCause.TLS) from None
            self._context = context

    def connect(self) -> SMTPConnection:
        """A ready session: greeted, EHLO answered, encrypted and authenticated as configured.
        Every failure is a TransportError marked permanent or not (see errors.py)."""
        s = self.settings
        client: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                client = StrictSMTP_SSL(s.host, s.port, local_hostname=self._helo, timeout=s.timeout_seconds, context=self._context)
            else:
                client = StrictSMTP(s.host, s.port, local_hostname=self._helo, timeout=s.timeout_seconds)
            self._ehlo(client)
            if s.security == "starttls":
                if not client.has_extn("starttls"):
                    raise TransportError(self.endpoint, "the server does not offer STARTTLS; refusing to continue unencrypted "
                                         "(security: starttls)", permanent=True, cause=RelayCause.TLS)
                client.starttls(context=self._context)
                self._ehlo(client)
            # xoauth2 always authenticates: without a username it must fail loudly, not send unauthenticated.
            if s.username or s.auth == "xoauth2":
                self._authenticate(client)
        except TransportError:
            _close(client)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close(client)
            raise TransportError(self.endpoint, f"TLS certificate not trusted: {exc.verify_message}; set transport.ca_file "
                                 "if the relay uses a private CA", permanent=True, cause=RelayCause.TLS) from None
        except ssl.SSLError as exc:
            _close(client)
            raise TransportError(self.endpoint, f"TLS failed: {exc.reason or exc}", permanent=True, cause=RelayCause.TLS) from None
        except smtplib.SMTPResponseException as exc:
            # A refusal at the greeting or to STARTTLS: 5xx will not change by retrying soon.
            _close(client)
            raise TransportError(self.endpoint, f"server refused the session: {reply_text(exc.smtp_code, exc.smtp_error)}",
                                 permanent=500 <= exc.smtp_code < 600, cause=reply_cause(exc.smtp_code)) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(client)
            raise TransportError(self.endpoint, f"cannot connect: {exc.__class__.__name__}: {exc}", cause=cause_of(exc)) from None
        return SMTPConnection(client, self.endpoint)

    def _ehlo(self, client: smtplib.SMTP) -> None:
        code, message = client.ehlo()
        if code != 250:
            # E.g. a proxy that greets twice: its second 220 arrives as the answer to EHLO and
            # every later reply would belong to the command before. Never talk on like that.
            raise TransportError(self.endpoint, f"EHLO was answered with {reply_text(code, message)}, not 250",
                                 permanent=500 <= code < 600, cause=reply_cause(code))

    def _authenticate(self, client: smtplib.SMTP) -> None:
        s = self.settings
        if s.security == "none" or not isinstance(client.sock, ssl.SSLSocket):
            client.close()
            raise AuthenticationError(self.endpoint, "refusing to send credentials over an unencrypted connection; "
                                      "set transport.security to starttls or tls")
        try:
            if s.auth == "xoauth2":
                if self._token_source is None:
                    raise AuthenticationError(self.endpoint, "transport.auth is xoauth2 but no token source was given")
                self._token_source.authenticate(client, s.username or "")
            else:
                if self._password is None:
                    raise AuthenticationError(self.endpoint, "transport.username is set but no password: set password_env or password_file")
                client.login(s.username or "", self._password)
        except smtplib.SMTPAuthenticationError as exc:
            client.close()
            reply = explain_auth_reply(exc.smtp_code, exc.smtp_error)
            raise AuthenticationError(self.endpoint, f"authentication failed: {reply}") from None
        except AuthenticationError:
            client.close()  # raised by the token source (or above): do not leave the session open
            raise


def explain_auth_reply(code: int, message: bytes | str) -> str:
    text = _BASE64_BLOB.sub("[redacted]", reply_text(code, message))
    if code == 550 and "5.7.30" in text:
        return text + " (Basic auth is disabled for this tenant: use auth: xoauth2)"
    return text


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()


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
        # Commands are small writes answered at once; Nagle's algorithm only delays them.
        with contextlib.suppress(OSError, AttributeError):
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        """One SMTP transaction, outcomes per recipient. Only replies to RCPT and to the final
        dot decide a recipient's fate: a refused MAIL FROM, or a connection lost (or a reply
        not to be trusted) before the final dot, raise TransportError and the recipients go
        back to the queue unharmed; after the final dot the outcome is unknown (RFC 1047)."""
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
                self._retire()
                code, message = mail_reply
                raise TransportError(self.endpoint, f"the server refused MAIL FROM:<{sender}>: {reply_text(code, message)}",
                                     permanent=500 <= code < 600, cause=reply_cause(code))
            for rcpt, (code, message) in zip(recipients, rcpt_replies, strict=False):  # a 421 cuts the replies short
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
            code, message = data_reply
            if 400 <= code < 600:
                return outcomes | self._all(accepted, code, message, reset=True)
            if code != 354:
                # Anything but "354 go ahead" (a 250, say) means the server is not reading
                # a message now: nothing was delivered, whatever the code claims.
                self._retire()
                raise TransportError(self.endpoint, f"DATA was answered with {reply_text(code, message)}, not 354; "
                                     "nothing was delivered", cause=RelayCause.OTHER)
            client.send(dot_stuffed(data))
        except TransportError:
            raise  # ours, from above (it is an OSError too, through ConnectionError)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._retire()
            raise TransportError(self.endpoint, f"connection lost before the end of the message: {_why(exc)}",
                                 cause=cause_of(exc)) from None
        try:
            code, message = client.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The server may have accepted it: resend later with the same Message-ID.
            self._retire()
            unknown = Outcome(State.UNKNOWN, f"no trustworthy reply after the final dot: {_why(exc)}")
            return outcomes | {r: unknown for r in accepted}
        if code == 421:
            self.usable = False
        result = Outcome(classify(code, reply_text(code, message)), reply_text(code, message))
        return outcomes | {r: result for r in accepted}

    def _retire(self) -> None:
        """This session is not to be used again (its state is unknown or refused)."""
        self.usable = False
        _close(self.client)

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
        if not self.usable or self.client.sock is None:
            _close(self.client)
            return
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            _close(self.client)


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ReplyError) else exc.__class__.__name__

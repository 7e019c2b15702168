"""What a failed session means, as a fact: the relay's trouble (values.RelayTrouble), decided
once from the error where it is caught, and stored with the recipients it held back.

The transport calls ``cause_of`` on the library's exception while it still has it (its type
and errno say what happened); the sender turns the TransportError into a RelayTrouble.
Nothing reads the message text to learn the cause.
"""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl

from dispatch.errors import TransportError
from dispatch.values import RelayCause, RelayTrouble

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def cause_of(exc: BaseException) -> RelayCause:
    """The cause of a connection's failure, by the exception's type (and errno)."""
    if isinstance(exc, ConnectionRefusedError):
        return RelayCause.CONNECTION_REFUSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return RelayCause.TIMEOUT
    if isinstance(exc, socket.gaierror | socket.herror):
        return RelayCause.UNREACHABLE
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return RelayCause.TLS
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return RelayCause.AUTHENTICATION
    if isinstance(exc, smtplib.SMTPResponseException):
        return reply_cause(exc.smtp_code)
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError | smtplib.SMTPServerDisconnected):
        return RelayCause.DISCONNECTED
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return RelayCause.UNREACHABLE
    return RelayCause.OTHER


def reply_cause(code: int) -> RelayCause:
    """A refusal of the session by its reply code."""
    if 500 <= code < 600:
        return RelayCause.PERMANENT_REPLY
    if 400 <= code < 500:
        return RelayCause.TEMPORARY_REPLY
    return RelayCause.OTHER


def relay_trouble(exc: TransportError) -> RelayTrouble:
    """The session's failure as the fact the ledger keeps and every front door words."""
    cause = exc.cause or (RelayCause.PERMANENT_REPLY if exc.permanent else RelayCause.OTHER)
    return RelayTrouble(cause, exc.endpoint, exc.detail, exc.permanent)


"""Reading SMTP replies strictly, within one deadline per reply (smtplib, made strict).

smtplib takes the last line's code of a multi-line reply and turns an unparsable line into
-1; its timeout is per read, so a server that drips a byte a second never times out. A
reply here is trusted only if every line parses, the code is an SMTP code and all lines
agree, and it is complete before its deadline; otherwise the connection is closed.
"""

from __future__ import annotations

import re
import smtplib
import time
from typing import NoReturn

MAX_REPLY_LINES = 100
MAX_REPLY_LINE = 2048  # RFC 5321 allows 512; some servers send longer human text


class ReplyError(smtplib.SMTPServerDisconnected):
    """The server's reply could not be trusted: unparsable, an unknown code, lines that
    disagree, or not complete within the deadline. The connection is closed: where the
    conversation stands is unknown, so nothing more is read from it or sent on it."""


class StrictSMTP(smtplib.SMTP):
    """smtplib's reply reading, made strict (smtplib takes the last line's code and turns an
    unparsable line into -1) and bounded by one deadline per reply (smtplib's timeout is per
    read, so a server that drips a byte a second never times out)."""

    def getreply(self) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.timeout
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        if self.file is None:
            self.file = self.sock.makefile("rb")
        try:
            return self._reply_by(deadline)
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)  # the next write gets the whole timeout again

    def _reply_by(self, deadline: float) -> tuple[int, bytes]:
        code: int | None = None
        texts: list[bytes] = []
        for _ in range(MAX_REPLY_LINES):
            line = self._line_by(deadline)
            match = _REPLY_LINE.fullmatch(line.rstrip(b"\r\n"))
            if match is None:
                self._fail(f"unreadable reply line {line[:80]!r}")
            this = int(match.group(1))
            if not 200 <= this <= 599:
                self._fail(f"reply code {this} is not an SMTP reply code")
            if code is not None and this != code:
                self._fail(f"a multi-line reply whose lines disagree ({code} and {this})")
            code = this
            texts.append(match.group(3))
            if match.group(2) != b"-":
                return code, b"\n".join(texts)
        self._fail(f"a reply of more than {MAX_REPLY_LINES} lines")

    def _line_by(self, deadline: float) -> bytes:
        """One line, waiting at most until ``deadline`` in all (each read is bounded by the
        time left, and peek() reads at most once)."""
        sock, file = self.sock, self.file
        if sock is None or file is None:
            self._fail("the connection is closed")
        parts: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no complete reply within {self.timeout:g} s")
            sock.settimeout(left)
            try:
                chunk = file.peek(MAX_REPLY_LINE)
            except TimeoutError:
                self._fail(f"no complete reply within {self.timeout:g} s")
            except (OSError, ValueError) as exc:
                self._fail(f"connection lost while reading the reply: {exc.__class__.__name__}")
            if not chunk:
                self._fail("connection closed by the server")
            end = chunk.find(b"\n")
            taken = file.read(end + 1 if end >= 0 else len(chunk))
            parts.append(taken)
            size += len(taken)
            if end >= 0:
                return b"".join(parts)
            if size > MAX_REPLY_LINE:
                self._fail(f"a reply line longer than {MAX_REPLY_LINE} octets")

    def _fail(self, why: str) -> NoReturn:
        self.close()
        raise ReplyError(why)


_REPLY_LINE = re.compile(rb"(\d{3})([ -]?)(.*)", re.DOTALL)


class StrictSMTP_SSL(StrictSMTP, smtplib.SMTP_SSL):
    """The same over implicit TLS (port 465)."""


# The Transport and Connection protocols these classes satisfy belong to their consumer,
# pipeline.py; nothing here depends on them.

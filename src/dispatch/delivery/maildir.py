"""Delivery into a Maildir (tmp/ then rename into new/), which any mail client opens: the
embedded default outbox, behind the same Transport protocol as SMTP."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from dispatch.errors import TransportError
from dispatch.models import Outcome, State


class MaildirTransport:
    """Delivers into a Maildir (tmp/ then rename into new/), which any mail client opens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.endpoint = f"maildir:{path}"

    def connect(self) -> MaildirConnection:
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
            with contextlib.suppress(OSError):
                tmp.unlink()  # a full disk must not leave half a message behind in tmp/
            outcome = Outcome(State.DEFERRED, f"maildir write failed: {exc.strerror}")
            return {r: outcome for r in recipients}
        accepted = Outcome(State.SENT, f"250 delivered to maildir new/{name}")
        return {r: accepted for r in recipients}

    def close(self) -> None:
        pass

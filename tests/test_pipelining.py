"""SMTP PIPELINING (RFC 2920) against a real pipelining server: Postfix's smtp-sink.

aiosmtpd does not offer PIPELINING, so the one-round-trip envelope path is checked here,
with smtp-sink's own fault options: -f rejects a command with 5xx, -r with 4xx, -q drops
the connection without a reply, -p turns PIPELINING off.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import free_port, require_tool
from dispatch.config import TransportSettings
from dispatch.delivery.transport import SMTPTransport
from dispatch.models import State

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
MESSAGE = (
    b"From: Regional rapport <rapport@example.org>\r\nTo: a@example.org\r\nSubject: Test\r\n"
    b"Message-ID: <t1@example.org>\r\n\r\nEn rad.\r\n.En rad som b\xc3\xb6rjar med punkt.\r\n"
)


@contextmanager
def sink(*options: str) -> Iterator[int]:
    require_tool(SINK, "PIPELINING needs a server that offers it")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([SINK, *user, *options, f"127.0.0.1:{port}", "64"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait()


def transport(port: int) -> SMTPTransport:
    return SMTPTransport(TransportSettings(kind="smtp", host="127.0.0.1", port=port, security="none", timeout_seconds=5))


def test_pipelined_envelope_delivers_each_recipient() -> None:
    with sink() as port:
        connection = transport(port).connect()
        assert connection.pipelining
        for _ in range(3):  # the same session carries several transactions
            outcomes = connection.send("rapport@example.org", ["a@example.org", "b@example.org"], MESSAGE)
            assert {o.state for o in outcomes.values()} == {State.SENT}
            assert set(outcomes) == {"a@example.org", "b@example.org"}
        connection.close()


def test_pipelined_hard_refusal_fails_each_recipient_and_keeps_the_session() -> None:
    with sink("-f", "RCPT") as port:
        connection = transport(port).connect()
        outcomes = connection.send("rapport@example.org", ["a@example.org", "b@example.org"], MESSAGE)
        assert all(o.state is State.FAILED and o.reply.startswith("5") for o in outcomes.values())
        assert connection.usable
        again = connection.send("rapport@example.org", ["c@example.org"], MESSAGE)
        assert again["c@example.org"].state is State.FAILED
        connection.close()


def test_pipelined_soft_refusal_defers() -> None:
    with sink("-r", "RCPT") as port:
        connection = transport(port).connect()
        outcomes = connection.send("rapport@example.org", ["a@example.org"], MESSAGE)
        assert outcomes["a@example.org"].state is State.DEFERRED
        assert outcomes["a@example.org"].reply.startswith("4")
        connection.close()


def test_connection_dropped_after_the_final_dot_is_unknown() -> None:
    with sink("-q", ".") as port:
        connection = transport(port).connect()
        outcomes = connection.send("rapport@example.org", ["a@example.org"], MESSAGE)
        assert outcomes["a@example.org"].state is State.UNKNOWN
        assert not connection.usable
        connection.close()


def test_without_pipelining_the_classic_path_delivers() -> None:
    with sink("-p") as port:
        connection = transport(port).connect()
        assert not connection.pipelining
        outcomes = connection.send("rapport@example.org", ["a@example.org", "b@example.org"], MESSAGE)
        assert {o.state for o in outcomes.values()} == {State.SENT}
        connection.close()

"""The tests' SMTP server (tests/smtpserver.py) answers DATA as stock aiosmtpd does.

Each case is sent, as raw bytes over a socket, to both servers; the replies and the content the
handler gets must be the same. If the fast DATA reader broke a rule (ended at a line that only
ends in a dot, kept a stuffed dot, let a long line through), these would differ.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from conftest import free_port
from smtpserver import WholeDataController


class Keep:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(bytes(envelope.content))
        return "250 Kept"


def converse(port: int, data: bytes) -> list[bytes]:
    """One transaction with ``data`` as the DATA text (terminator included); the replies."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")

        def reply() -> bytes:
            lines = [stream.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(stream.readline())
            return lines[-1][:3]

        replies.append(reply())
        for command in (b"EHLO test\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n", b"DATA\r\n"):
            sock.sendall(command)
            replies.append(reply())
        sock.sendall(data)
        replies.append(reply())
        sock.sendall(b"QUIT\r\n")
        replies.append(reply())
    return replies


CASES = {
    "plain": b"Subject: x\r\n\r\nHej\r\n.\r\n",
    "empty": b".\r\n",
    "stuffed dots": b"..first\r\nmiddle\r\n...two\r\n..\r\n.\r\n",
    "a line that ends in a dot": b"Subject: x\r\n\r\nSlut.\r\n.\r\n",
    "dot inside a line": b"a.\r\nb .\r\n.c\r\n.\r\n",
    "999 octets and CRLF": b"x" * 999 + b"\r\n.\r\n",
    "1000 octets and CRLF": b"x" * 1000 + b"\r\n.\r\n",
    "a long line far into a big message": b"y\r\n" * 20000 + b"z" * 5000 + b"\r\n" + b"w\r\n" * 10 + b".\r\n",
    "bare LF is not a line end": b"a\nb\r\n.\r\n",
    "a large message": b"".join(b"line %d\r\n" % n for n in range(50000)) + b".\r\n",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, tuple[int, Keep]]]:
    started: dict[str, tuple[int, Keep]] = {}
    controllers = []
    for name, kind in (("stock", Controller), ("whole", WholeDataController)):
        handler = Keep()
        port = free_port()
        controller = kind(handler, hostname="127.0.0.1", port=port, decode_data=False, data_size_limit=100_000)
        controller.start()
        controllers.append(controller)
        started[name] = (port, handler)
    yield started
    for controller in controllers:
        controller.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_replies_and_content_are_those_of_stock_aiosmtpd(servers: dict[str, tuple[int, Keep]], case: str) -> None:
    outcomes = {}
    for name, (port, handler) in servers.items():
        before = len(handler.contents)
        replies = converse(port, CASES[case])
        outcomes[name] = (replies, handler.contents[before:])
    assert outcomes["whole"] == outcomes["stock"]


def test_the_cases_cover_refusals_and_unstuffing(servers: dict[str, tuple[int, Keep]]) -> None:
    """The cases above are only worth comparing if they reach the rules: check what stock does."""
    port, handler = servers["stock"]
    assert converse(port, CASES["1000 octets and CRLF"])[-2] == b"500"
    assert converse(port, CASES["a large message"])[-2] == b"552"
    before = len(handler.contents)
    assert converse(port, CASES["stuffed dots"])[-2] == b"250"
    assert handler.contents[before:] == [b".first\r\nmiddle\r\n..two\r\n.\r\n"]

"""SMTP servers that misbehave on purpose, as real processes' peers (a thread with an
asyncio server on a loopback port): the faults aiosmtpd will not produce.

``ScriptedRelay`` speaks just enough SMTP itself (no PIPELINING, so the client sends one
command at a time) and can answer DATA with 250, send a reply that mixes codes or an
unknown code after the final dot, or drip every reply one byte a second.
``Gate`` sits in front of a real server and refuses sessions beyond a limit, greets
twice, or is not there at all for its first seconds.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from conftest import free_port


@dataclass
class Message:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message_id(self) -> str:
        match = re.search(rb"^Message-ID: (\S+)", self.data, re.MULTILINE | re.IGNORECASE)
        return match.group(1).decode() if match else ""


class _Loop:
    """An asyncio loop in a daemon thread, serving until stop()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.base_events.Server | None = None

    def listen(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], port: int) -> None:
        async def start() -> asyncio.base_events.Server:
            return await asyncio.start_server(handler, "127.0.0.1", port)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            # Sessions still open (a client that gave up on a dripping reply) end here,
            # not later as coroutines destroyed with the loop.
            sessions = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class ScriptedRelay:
    """A hand-written SMTP server. ``fault`` is one of: None (behaves), "data-250" (DATA
    answered 250 instead of 354), "mixed-after-dot" (550- and 250 in one reply after the
    final dot), "600-after-dot", "drip" (every reply one byte a second)."""

    fault: str | None = None
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    received: list[Message] = field(default_factory=list)  # complete messages it read, whatever it answered
    sessions: int = 0

    def __post_init__(self) -> None:
        self._loop = _Loop()
        self._loop.listen(self._session, self.port)

    def stop(self) -> None:
        self._loop.stop()

    async def _say(self, writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        if self.fault == "drip":
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
            return
        writer.write(data)
        await writer.drain()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        mail_from, rcpts = "", list[str]()
        try:
            await self._say(writer, "220 relay.example.org ESMTP\r\n")
            while True:
                line = await reader.readline()
                if not line:
                    return
                command = line.decode("ascii", "replace").strip()
                verb = command[:4].upper()
                if verb in ("EHLO", "HELO"):
                    await self._say(writer, "250-relay.example.org\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n")
                elif verb == "MAIL":
                    mail_from, rcpts = command.split(":", 1)[1].strip("<> "), []
                    await self._say(writer, "250 2.1.0 OK\r\n")
                elif verb == "RCPT":
                    rcpts.append(command.split(":", 1)[1].strip("<> "))
                    await self._say(writer, "250 2.1.5 OK\r\n")
                elif verb == "DATA":
                    if self.fault == "data-250":
                        await self._say(writer, "250 2.0.0 OK\r\n")
                        continue  # it does not read a message: what follows are "commands"
                    await self._say(writer, "354 Go ahead\r\n")
                    data = bytearray()
                    while True:
                        chunk = await reader.readline()
                        if not chunk or chunk == b".\r\n":
                            break
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    self.received.append(Message(mail_from, rcpts, bytes(data)))
                    if self.fault == "mixed-after-dot":
                        await self._say(writer, "550-5.7.1 Message refused\r\n250 2.0.0 OK queued\r\n")
                    elif self.fault == "600-after-dot":
                        await self._say(writer, "600 6.0.0 What\r\n")
                    else:
                        await self._say(writer, "250 2.0.0 OK queued\r\n")
                elif verb == "RSET":
                    await self._say(writer, "250 2.0.0 OK\r\n")
                elif verb == "QUIT":
                    await self._say(writer, "221 2.0.0 Bye\r\n")
                    return
                else:
                    await self._say(writer, "500 5.5.2 What?\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@dataclass
class Gate:
    """A TCP front for a real server at ``backend`` (host, port): at most ``max_sessions``
    at once (others get the 421 a relay gives and are closed), an optional extra greeting
    first (a proxy that greets twice), and nothing listening until ``listen()``."""

    backend: tuple[str, int]
    max_sessions: int = 1000
    greet_twice: bool = False
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    refused: int = 0
    active: int = 0

    def __post_init__(self) -> None:
        self._loop = _Loop()

    def listen(self) -> None:
        self._loop.listen(self._session, self.port)

    def stop(self) -> None:
        self._loop.stop()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_sessions:
            self.refused += 1
            writer.write(b"421 4.7.0 Too many concurrent SMTP connections; please try again later\r\n")
            await writer.drain()
            writer.close()
            return
        self.active += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.backend)
            if self.greet_twice:
                writer.write(b"220 proxy.example.org ESMTP ready\r\n")

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                try:
                    while chunk := await source.read(65536):
                        sink.write(chunk)
                        await sink.drain()
                finally:
                    sink.close()

            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)
        finally:
            self.active -= 1


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)

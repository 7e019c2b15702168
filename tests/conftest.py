"""Shared test parts: a copy of the sample project, a real SMTP server, the CLI as a process."""

from __future__ import annotations

import asyncio
import email
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The program remembers every ledger it used (to notice one that vanished); the tests'
# thousands of throw-away ledgers are remembered in a throw-away place, also by the CLI
# processes the tests start (they inherit the environment).
os.environ["DISPATCH_STATE_DIR"] = tempfile.mkdtemp(prefix="dispatch-state-")


def require_tool(path: str | None, why: str) -> None:
    """A missing tool fails the test under CI and skips it on a developer's machine."""
    if path and (os.path.exists(path) or shutil.which(path)):
        return
    message = f"{why}: {path or 'tool'} is not installed (.ci/run installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Records every accepted message, and injects faults on request:
    ``rcpt_reply(address)`` / ``data_reply(envelope)`` return an SMTP reply to refuse
    (a 421 also closes the connection after the reply), or None to accept;
    ``drop_after_data(envelope)`` accepts the message but drops the connection before
    the reply (the client cannot know); ``stall(envelope)`` returns seconds to wait
    before answering. ``clock`` (optional) timestamps RCPT attempts in injected time."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: Callable[[str], str | None] | None = None
    data_reply: Callable[[Any], str | None] | None = None
    drop_after_data: Callable[[Any], bool] | None = None
    stall: Callable[[Any], float] | None = None
    clock: Any = None
    rcpt_log: list[tuple[str, Any]] = field(default_factory=list)
    data_times: list[float] = field(default_factory=list)
    mail_times: list[float] = field(default_factory=list)  # transaction starts, what a relay's rate limit counts
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        with self.lock:
            self.mail_times.append(time.monotonic())
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            self.rcpt_log.append((address.lower(), self.clock.now() if self.clock else None))
        if self.rcpt_reply is not None:
            reply = self.rcpt_reply(address)
            if reply:
                if reply.startswith("421"):
                    _close_soon(server)
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall is not None:
            seconds = self.stall(envelope)
            if seconds:
                await asyncio.sleep(seconds)
        if self.data_reply is not None:
            reply = self.data_reply(envelope)
            if reply:
                if reply.startswith("421"):
                    _close_soon(server)
                return reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
            self.data_times.append(time.monotonic())
        if self.drop_after_data is not None and self.drop_after_data(envelope):
            server.transport.abort()  # accepted, but the client never hears it
        return "250 Message accepted for delivery"

    def reports(self) -> list[Received]:
        """Report messages (they carry List-Id), not completion summaries or alerts."""
        with self.lock:
            return [m for m in self.received if b"\r\nList-Id:" in m.data.split(b"\r\n\r\n", 1)[0]]

    def notices(self) -> list[Received]:
        with self.lock:
            return [m for m in self.received if b"\r\nList-Id:" not in m.data.split(b"\r\n\r\n", 1)[0]]

    def recipients(self) -> list[str]:
        """Every RCPT of every report message, lower-cased, duplicates kept."""
        return [r.lower() for m in self.reports() for r in m.rcpt_tos]


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler


def _close_soon(server: Any) -> None:
    """Close the connection right after the reply is written, as a relay does after 421."""
    asyncio.get_running_loop().call_later(0.02, server.transport.close)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(handler: RecordingHandler, **options: Any) -> tuple[Controller, SMTPServer]:
    # aiosmtpd's readiness probe connects to the configured port, so port 0 cannot be used.
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False, **options)
    controller.start()
    return controller, SMTPServer("127.0.0.1", port, handler)


@pytest.fixture
def smtp_server() -> Any:
    controller, server = start_server(RecordingHandler())
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Project:
    """A copy of the sample project in a temporary directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_path.read_text(encoding="utf-8"))

    def set_config(self, **changes: Any) -> None:
        data = self.config()
        for dotted, value in changes.items():
            target = data
            keys = dotted.split("__")
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = value
        self.config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def use_smtp(self, server: SMTPServer, **extra: Any) -> None:
        transport = {"kind": "smtp", "host": server.host, "port": server.port, "security": "none", "connections": 2}
        transport.update(extra)
        self.set_config(transport=transport)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dispatch", "--config", str(self.config_path), *args],
            cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def status(self, *args: str) -> dict[str, Any]:
        import json

        result = self.run("status", "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]


def copy_project(root: Path) -> Project:
    """The sample project (config, editions, lists, templates) copied into ``root``."""
    root.mkdir(parents=True)
    for name in ("reports", "recipients", "templates"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    return Project(root)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return copy_project(tmp_path / "project")


def seed_bullets() -> list[str]:
    """Every bullet of the real edition, in order, from shared/seed (the source of truth)."""
    seed = ROOT.parent / "shared" / "seed" / "regional-rapport-2024-11-17.txt"
    if not seed.exists():
        seed = ROOT / "tests" / "data" / "regional-rapport-2024-11-17.txt"
    bullets = []
    for line in seed.read_text(encoding="utf-8").splitlines():
        if line.startswith("- "):
            text = line[2:].strip()
            if text.startswith("[") and "](" in text:
                text = text[1:text.index("](")]
            bullets.append(text)
    return bullets


def seed_headings() -> list[str]:
    return [
        "Beskrivning av händelsen", "Kända omständigheter och vidtagna åtgärder", "Verksamhetens kommentar",
        "Kommunikativa åtgärder, urval", "Dagligen", "Samlad information", "Talespersoner VGR",
        "Om Regional rapport Millennium 2024",
    ]


class FakeClock:
    """Injected time for the pipeline and the service: now() is what the test says; sleep()
    moves it instead of waiting."""

    def __init__(self, now: Any) -> None:
        self.moment = now

    def now(self) -> Any:
        return self.moment

    def sleep(self, seconds: float) -> None:
        from datetime import timedelta

        self.moment += timedelta(seconds=max(0.0, seconds))

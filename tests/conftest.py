"""Shared test parts: a copy of the sample project, a real SMTP server, the CLI as a process."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import threading
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
    """Records every accepted message. ``rcpt_reply``/``data_reply`` inject faults:
    return an SMTP reply string to refuse, or None to accept."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: Callable[[str], str | None] | None = None
    data_reply: Callable[[Any], str | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply is not None:
            reply = self.rcpt_reply(address)
            if reply:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            reply = self.data_reply(envelope)
            if reply:
                return reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
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


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Any:
    handler = RecordingHandler()
    # aiosmtpd's readiness probe connects to the configured port, so port 0 cannot be used.
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", port, handler)
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


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("reports", "recipients", "templates"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    return Project(root)


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

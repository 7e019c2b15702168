"""Shared test parts: a copy of the sample project, a real SMTP server, the CLI as a process."""

from __future__ import annotations

import asyncio
import email
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiosmtpd.controller import Controller

from dispatch.delivery.clock import Clock
from smtpserver import WholeDataController

if TYPE_CHECKING:
    from dispatch.app import Clock, Session
    from dispatch.config import Settings
    from dispatch.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The program remembers every ledger it used (to notice one that vanished); the tests'
# thousands of throw-away ledgers are remembered in a throw-away place, also by the CLI
# processes the tests start (they inherit the environment).
STATE_DIR = tempfile.mkdtemp(prefix="dispatch-state-")
os.environ["DISPATCH_STATE_DIR"] = STATE_DIR


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml caps it with --maxprocesses). The whole suite: two workers per
    core, because its long tests mostly wait (rate limits, leases, relays down on purpose), so a
    core runs a second test's work in the first one's waits (on the 2-core reference machine,
    with a CPU-bound process beside it: 2 workers 349-372 s, 4 workers 300-325 s). The fast lane
    (-m "not slow"): one and a half per core, because its short tests wait less (the same
    machine, runs taken in turn: 2 workers 54.9-64.1 s, mean 60.5; 3 workers 52.4-59.0 s,
    mean 56.4; at an earlier commit, 4 workers were slower than 2)."""
    cores = len(os.sched_getaffinity(0))
    return cores + cores // 2 if "not slow" in (config.getoption("markexpr") or "") else 2 * cores


def require_tool(path: str | None, why: str) -> None:
    """A missing tool fails the test under CI and skips it on a developer's machine."""
    if path and (os.path.exists(path) or shutil.which(path)):
        return
    message = f"{why}: {path or 'tool'} is not installed (.ci/run installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _is_report(data: bytes) -> bool:
    """Report messages carry List-Id; completion summaries and alerts do not. Searched in the
    header only, without copying the message (tests poll this while thousands arrive)."""
    end = data.find(b"\r\n\r\n")
    return data.find(b"\r\nList-Id:", 0, len(data) if end < 0 else end) >= 0


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    is_report: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_report = _is_report(self.data)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)


def body_text(message: EmailMessage, subtype: str = "plain") -> str:
    """The text of the message's plain (or html) body; a message without one fails the test."""
    part = message.get_body((subtype,))
    assert part is not None, f"the message has no text/{subtype} body"
    content = part.get_content()
    assert isinstance(content, str)
    return content


@dataclass
class RecordingHandler:
    """Records every accepted message, and injects faults on request:
    ``rcpt_reply(address)`` / ``data_reply(envelope)`` return an SMTP reply to refuse
    (a 421 also closes the connection after the reply), or None to accept;
    ``drop_after_data(envelope)`` accepts the message but drops the connection before
    the reply (the client cannot know); ``stall(envelope)`` returns seconds to wait
    before answering; ``accept_delay`` (seconds) holds every DATA reply that long, awaited
    so that the server's other connections go on meanwhile (a handler must never block the
    event loop with time.sleep). ``clock`` (optional) timestamps RCPT attempts and
    transaction starts (``mail_clock``) in injected time."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: Callable[[str], str | None] | None = None
    data_reply: Callable[[Any], str | None] | None = None
    drop_after_data: Callable[[Any], bool] | None = None
    stall: Callable[[Any], float] | None = None
    accept_delay: float = 0.0
    clock: Any = None
    rcpt_log: list[tuple[str, Any]] = field(default_factory=list)
    data_times: list[float] = field(default_factory=list)
    mail_times: list[float] = field(default_factory=list)  # transaction starts, what a relay's rate limit counts
    mail_clock: list[Any] = field(default_factory=list)  # the same in injected time, when there is a clock
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        with self.lock:
            self.mail_times.append(time.monotonic())
            if self.clock is not None:
                self.mail_clock.append(self.clock.now())
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
        if self.accept_delay:
            await asyncio.sleep(self.accept_delay)
        if self.data_reply is not None:
            reply = self.data_reply(envelope)
            if reply:
                if reply.startswith("421"):
                    _close_soon(server)
                return reply
        with self.lock:
            content = bytes(envelope.original_content or envelope.content)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
            self.data_times.append(time.monotonic())
        if self.drop_after_data is not None and self.drop_after_data(envelope):
            server.transport.abort()  # accepted, but the client never hears it
        return "250 Message accepted for delivery"

    def reports(self) -> list[Received]:
        """Report messages (they carry List-Id), not completion summaries or alerts."""
        with self.lock:
            return [m for m in self.received if m.is_report]

    def notices(self) -> list[Received]:
        with self.lock:
            return [m for m in self.received if not m.is_report]

    def recipients(self) -> list[str]:
        """Every RCPT of every report message, lower-cased, duplicates kept."""
        return [r.lower() for m in self.reports() for r in m.rcpt_tos]


Handler = TypeVar("Handler", covariant=True)


@dataclass(frozen=True)
class Relay(Generic[Handler]):
    """A running SMTP server: where it listens, and the handler that sees what it is sent."""

    host: str
    port: int
    handler: Handler


SMTPServer = Relay[RecordingHandler]  # the usual relay: it records every message
AnyHandler = TypeVar("AnyHandler")


def _close_soon(server: Any) -> None:
    """Close the connection right after the reply is written, as a relay does after 421."""
    asyncio.get_running_loop().call_later(0.02, server.transport.close)


def open_ledger(settings: Settings) -> Ledger:
    """The ledger as another process would open it (engine and all), for a test to look
    into; the test closes it."""
    from dispatch.ledger import Ledger

    return Ledger(settings.ledger_url)


def unit_of(settings: Settings, clock: Clock | None = None) -> Session:
    """A unit of work on an App of its own, for a test's one-line call of a use case (the
    program's front doors make one App per process and ``with app.session()`` per unit)."""
    from dispatch import app

    return app.Session(app.App(settings, clock))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(handler: AnyHandler, **options: Any) -> tuple[Controller, Relay[AnyHandler]]:
    # aiosmtpd's readiness probe connects to the configured port, so port 0 cannot be used.
    port = free_port()
    return start_server_on(handler, port, **options), Relay("127.0.0.1", port, handler)


def start_server_on(handler: object, port: int, **options: Any) -> Controller:
    """A server on a given port: a relay that comes back where it was down."""
    controller = WholeDataController(handler, hostname="127.0.0.1", port=port, decode_data=False, **options)
    controller.start()
    return controller


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
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        assert isinstance(config, dict), f"{self.config_path} holds no mapping"
        return config

    def set_config(self, **changes: Any) -> None:
        data = self.config()
        for dotted, value in changes.items():
            target = data
            keys = dotted.split("__")
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = value
        self.config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def use_smtp(self, server: Relay[Any], **extra: Any) -> None:
        transport = {"kind": "smtp", "host": server.host, "port": server.port, "security": "none", "connections": 2}
        transport.update(extra)
        self.set_config(transport=transport)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`python -m dispatch --config ... ARGS` in the project, as a process of its own."""
        return run_cli(["--config", str(self.config_path), *args], cwd=self.root, env=env, timeout=timeout)

    def status(self, *args: str) -> dict[str, Any]:
        import json

        result = self.run("status", "--json", *args)
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert isinstance(status, dict), result.stdout
        return status


# -- the CLI as a process ----------------------------------------------------------------------


@dataclass
class Usage:
    """What the kernel counted for an ended CLI process (wait4's rusage)."""

    maxrss_kb: int
    cpu_seconds: float


class CLIServer:
    """Runs `python -m dispatch` through tests/cliserver.py: a process that has imported the
    package once and forks a child per command. The child is a real process with its own
    working directory, environment, argv, exit status and stdout/stderr; only the second of
    interpreter start-up and imports is saved. None from run() means: not available (not
    started, busy in another thread, or gone), run the command the ordinary way."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.failed = os.environ.get("DISPATCH_TEST_FORK", "1") == "0"
        self.buffer = b""
        self.outputs = Path(tempfile.mkdtemp(prefix="dispatch-cli-"))
        self.count = 0

    def _start(self) -> bool:
        if self.failed:
            return False
        if self.process is None or self.process.poll() is not None:
            try:
                with (self.outputs / "server.log").open("ab") as log:
                    self.process = subprocess.Popen(
                        [sys.executable, str(ROOT / "tests" / "cliserver.py")],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
            except OSError:
                self.failed = True
                return False
            self.buffer = b""
        return True

    def _reply(self, deadline: float | None) -> dict[str, Any] | None:
        """The server's next reply line, or None at the deadline."""
        import json
        import select

        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ConnectionError("the CLI server ended")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer = json.loads(line)
        assert isinstance(answer, dict), line
        return answer

    def _fork(self, request: dict[str, Any]) -> int | None:
        """Have the server fork a child for ``request`` (the lock held): its pid, or None
        when the server cannot (start it, or it is stuck or gone: do without it)."""
        import json

        if not self._start():
            return None
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            started = self._reply(time.monotonic() + 30)
        except (OSError, ConnectionError):
            self.process.kill()
            return None
        if started is None:  # the server is stuck
            self.process.kill()
            self.failed = True
            return None
        return int(started["pid"])

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float,
            rlimit_as: int | None = None) -> tuple[subprocess.CompletedProcess[str], Usage] | None:
        if not self.lock.acquire(blocking=False):
            return None
        try:
            self.count += 1
            out, err = self.outputs / f"{self.count}.out", self.outputs / f"{self.count}.err"
            pid = self._fork({"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err),
                              "rlimit_as": rlimit_as})
            if pid is None:
                return None
            ended = self._reply(time.monotonic() + timeout)
            timed_out = ended is None
            if timed_out:
                os.kill(pid, 9)
                ended = self._reply(None)
            assert ended is not None
            result = subprocess.CompletedProcess(
                [sys.executable, "-m", "dispatch", *args], ended["status"], _read_text(out), _read_text(err))
            out.unlink()
            err.unlink()
            if timed_out:
                raise subprocess.TimeoutExpired(result.args, timeout, result.stdout, result.stderr)
            return result, Usage(**ended["rusage"])
        finally:
            self.lock.release()

    def start_background(self, args: list[str], cwd: Path, env: dict[str, str], outputs: Path) -> int | None:
        """Start the command without waiting for it: its pid, its stdout and stderr in
        ``outputs``/stdout and /stderr, its exit status in ``outputs``/status when it ends.
        None: run it the ordinary way (see run())."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            return self._fork({"args": args, "cwd": str(cwd), "env": env, "stdout": str(outputs / "stdout"),
                               "stderr": str(outputs / "stderr"), "status_file": str(outputs / "status")})
        finally:
            self.lock.release()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.outputs, ignore_errors=True)


def _read_text(path: Path) -> str:
    # As subprocess.run(text=True) decodes: the locale's encoding, universal newlines.
    with open(path) as handle:
        return handle.read()


CLI = CLIServer()


# -- things started before the first test ------------------------------------------------------
#
# A fixture whose value takes wall-clock time to become useful (a `dispatch serve` waiting for
# its cron minute) registers a starter with @early("fixture name"). When the selected tests use
# that fixture, it is started as soon as collection is done, so the wait overlaps every test
# that runs before the ones that need it; the fixture then asks started("fixture name").

_STARTERS: dict[str, Callable[[], tuple[Any, Callable[[], None]]]] = {}
_STARTED: dict[str, tuple[Any, Callable[[], None]]] = {}


def early(name: str) -> Callable[[Callable[[], tuple[Any, Callable[[], None]]]], Callable[[], tuple[Any, Callable[[], None]]]]:
    """Register a starter: a function returning (value, stop)."""
    def register(starter: Callable[[], tuple[Any, Callable[[], None]]]) -> Callable[[], tuple[Any, Callable[[], None]]]:
        _STARTERS[name] = starter
        return starter
    return register


Started = TypeVar("Started")


def started(name: str, kind: type[Started]) -> Started:
    """The value of an early starter (a ``kind``), started now if collection did not start it."""
    if name not in _STARTED:
        _STARTED[name] = _STARTERS[name]()
    value = _STARTED[name][0]
    assert isinstance(value, kind), f"{name} started a {type(value).__name__}, not a {kind.__name__}"
    return value


def pytest_collection_finish(session: pytest.Session) -> None:
    wanted = {fixture for item in session.items for fixture in getattr(item, "fixturenames", ())}
    for name in _STARTERS:
        if name in wanted and name not in _STARTED:
            _STARTED[name] = _STARTERS[name]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for _, stop in _STARTED.values():
        stop()
    _STARTED.clear()
    CLI.stop()
    shutil.rmtree(STATE_DIR, ignore_errors=True)  # the session's throw-away memory of ledgers


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
            ) -> subprocess.CompletedProcess[str]:
    """`python -m dispatch ARGS` in ``cwd``, its output captured as text: through the CLI server
    when it can, else as a fresh interpreter (the same command, only slower to start)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    served = CLI.run(args, cwd, full_env, timeout)
    if served is not None:
        return served[0]
    return subprocess.run([sys.executable, "-m", "dispatch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


class Background:
    """`python -m dispatch ARGS` running in the background (a `serve`, a `web`, a send that a
    test signals or kills part-way), as much of subprocess.Popen as the tests use. Started
    through the CLI server when it can (a real process with its own pid, signals and exit
    status, without a second of start-up), else as a fresh interpreter. Its stdout and
    stderr go to files, read as text."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "dispatch", *args]
        self.outputs = Path(tempfile.mkdtemp(prefix="background-", dir=CLI.outputs))  # removed with CLI.outputs
        self.returncode: int | None = None
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None
        for name in ("stdout", "stderr"):  # there to be read from the start
            (self.outputs / name).touch()
        pid = CLI.start_background(args, cwd, full_env, self.outputs)
        if pid is None:
            with (self.outputs / "stdout").open("wb") as out, (self.outputs / "stderr").open("wb") as err:
                self.popen = subprocess.Popen(self.args, cwd=cwd, env=full_env, stdout=out, stderr=err)
            pid = self.popen.pid
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.poll()
            elif (self.outputs / "status").exists():
                self.returncode = int((self.outputs / "status").read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not to a pid that may since be another process's
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def stdout(self) -> str:
        return _read_text(self.outputs / "stdout")

    def stderr(self) -> str:
        return _read_text(self.outputs / "stderr")

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end; (stdout, stderr)."""
        self.wait(timeout)
        return self.stdout(), self.stderr()

    def stderr_lines(self) -> Iterator[str]:
        """stderr line by line as it is written, until the process has ended."""
        with (self.outputs / "stderr").open(encoding="utf-8", errors="replace") as handle:
            pending = ""
            while True:
                ended = self.poll() is not None
                chunk = handle.read()
                pending += chunk
                *lines, pending = pending.split("\n")
                yield from lines
                if ended and not chunk:
                    if pending:
                        yield pending
                    return
                if not chunk:
                    time.sleep(0.02)


def start_dispatch(project: Project, *args: str, env: dict[str, str] | None = None) -> Background:
    """`python -m dispatch --config CONFIG ARGS` in the background, in the project."""
    return Background(["--config", str(project.config_path), *args], project.root, env)


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


# The shipped config's standing sections as the email carries them (issue 29: one compact
# block; "Om Regional rapport ..." is on the intranet page only): what they say, in order.
STANDING_IN_EMAIL = [
    "Regional rapport dagligen, alla utgåvor", "Insidan: samlad information", "Vårdskiftets webbplats",
    "Artiklar i VGRfokus", "Håkan Sandahl, regiondirektör", "Kaarina Sundelin, hälso- och sjukvårdsproduktionsdirektör",
    "Karin Looström Muth, hälso- och sjukvårdsutvecklingsdirektör",
]
STANDING_HEADINGS = ["Samlad information", "Talespersoner VGR"]
PAGE_ONLY_HEADINGS = ["Om Regional rapport Millennium 2024"]  # in_email: false in the shipped config


def seed_bullets() -> list[str]:
    """Every bullet of the real edition's daily sections, in order, from shared/seed (the source
    of truth), then what the shipped standing sections say in the email."""
    seed = ROOT.parent / "shared" / "seed" / "regional-rapport-2024-11-17.txt"
    if not seed.exists():
        seed = ROOT / "tests" / "data" / "regional-rapport-2024-11-17.txt"
    bullets: list[str] = []
    for line in seed.read_text(encoding="utf-8").splitlines():
        if line.strip() == "Dagligen":  # the standing sections: the config's, as it is now
            return bullets + STANDING_IN_EMAIL
        if line.startswith("- "):
            text = line[2:].strip()
            if text.startswith("[") and "](" in text:
                text = text[1:text.index("](")]
            bullets.append(text)
    return bullets


def seed_headings() -> list[str]:
    """The sample's headings in the email: the daily sections, then the standing ones it carries
    (the intranet page adds PAGE_ONLY_HEADINGS)."""
    return [
        "Beskrivning av händelsen", "Kända omständigheter och vidtagna åtgärder", "Verksamhetens kommentar",
        "Kommunikativa åtgärder, urval", *STANDING_HEADINGS,
    ]


class FakeClock(Clock):
    """Injected time for the pipeline and the service: now() is what the test says; sleep()
    moves it instead of waiting, and records what was asked (``slept``).

    Threads sleep side by side, as on a real clock: a sleep ends at the sleeper's own
    "now" plus the seconds (the time it last read, or woke at), so two connections that
    each wait 2 s move the time by 2 s, not 4. One thread alone sees plain addition."""

    def __init__(self, now: datetime | None = None) -> None:
        self.moment = now if now is not None else datetime(2024, 11, 17, 13, 0, tzinfo=UTC)
        self.slept: list[float] = []
        self.lock = threading.Lock()
        self.seen = threading.local()  # per thread: the moment it last read or woke at

    def now(self) -> datetime:
        with self.lock:
            self.seen.moment = self.moment
            return self.moment

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            start = getattr(self.seen, "moment", self.moment)
            self.moment = max(self.moment, start + timedelta(seconds=max(0.0, seconds)))
            self.seen.moment = self.moment


# -- shared fixtures' building blocks -------------------------------------------------------------


def addresses(count: int) -> list[str]:
    """person00000@example.org, ...: the members of a generated list, in order."""
    return [f"person{i:05d}@example.org" for i in range(count)]


def big_list(project: Project, count: int, name: str = "stor") -> None:
    """recipients/NAME.csv with ``count`` generated people (see addresses())."""
    rows = "".join(f"{address},Person {i}\n" for i, address in enumerate(addresses(count)))
    (project.root / "recipients" / f"{name}.csv").write_text("email,name\n" + rows, encoding="utf-8")


# -- the scheduler service ------------------------------------------------------------------------

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def write_edition(project: Project, day: date, status: str = "approved", compiled: str = "00:00") -> Path:
    """The sample edition as the edition of ``day``, with the given status, compiled at
    ``compiled`` (HH:MM; it is not sent before that time). The default, the day's first minute,
    is before every slot of that day, so that a test whose slot is "now" passes at any hour."""
    text = (ROOT / "reports/2024-11-17.md").read_text(encoding="utf-8")
    text = text.replace("compiled: 2024-11-17 14:00", f"compiled: {day.isoformat()} {compiled}")
    text = text.replace("status: approved", f"status: {status}")
    path = project.root / f"reports/{day.isoformat()}.md"
    path.write_text(text, encoding="utf-8")
    return path


def set_schedule(project: Project, **schedule: Any) -> None:
    """One schedule, "daily": the sample's, with ``schedule`` changed (None drops a key)."""
    entry = {"name": "daily", "cron": "0 14 * * *", "lists": ["politisk-ledning", "chefer"],
             "deadline": "18:00", "approval_deadline": "13:30"}
    entry.update(schedule)
    project.set_config(schedules=[{k: v for k, v in entry.items() if v is not None}])


class ServeProcess:
    """`dispatch serve` in the background, its stderr collected line by line."""

    def __init__(self, project: Project, *args: str) -> None:
        self.process = start_dispatch(project, "serve", *args)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr_lines():
            self.lines.append(line)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited ({self.process.returncode}) waiting for {what}:\n" + self.log())
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + self.log())
            time.sleep(0.02)

    def logged(self, event: str) -> bool:
        return any(f" {event} " in f"{line} " or f'"event": "{event}"' in line for line in list(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code, time.monotonic() - started

    def log(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- PostgreSQL: a schema of its own per test ------------------------------------------------------
ADMIN_URL = os.environ.get("DISPATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {ADMIN_URL} is not reachable ({str(exc).strip().splitlines()[0]})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _with_schema(url: str, schema: str, **extra: str) -> str:
    options = " ".join([f"-csearch_path={schema}", *(f"-c{k}={v}" for k, v in extra.items())])
    return f"{url}{'&' if '?' in url else '?'}options={quote(options)}"


@dataclass
class PgSchema:
    name: str
    url: str  # a ledger URL whose tables live in this schema only
    admin: Any = field(repr=False)

    def url_with(self, **settings: str) -> str:
        return _with_schema(ADMIN_URL, self.name, **settings)

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cursor:
            cursor.execute(f"SET search_path TO {self.name}")
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    admin = _admin()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield PgSchema(name, _with_schema(ADMIN_URL, name), admin)
    finally:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()




@pytest.fixture
def services() -> Iterator[list[Any]]:
    """Services a test makes in its process (app.service.Service), closed after it."""
    made: list[Any] = []
    yield made
    for item in made:
        item.close()


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    """`serve` processes a test starts, killed after it if still running."""
    running: list[ServeProcess] = []
    yield running
    for item in running:
        item.kill()

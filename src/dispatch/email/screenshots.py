"""Screenshots of a rendered edition in headless Chromium, as a phone and a desktop see it.

Chromium is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe``
(JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket
client or other dependency is needed. One ``Chromium`` process serves any number of
pages; tests reuse one per module because starting it costs about a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dispatch.errors import DispatchError

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
INSTALL_FIX = "install it (Debian/Ubuntu: 'sudo apt-get install chromium') or set DISPATCH_CHROMIUM to the browser's path"
INSTALL_HINT = f"headless Chromium is needed for --screenshots but was not found; {INSTALL_FIX}"
TIMEOUT = 30.0  # seconds for any one protocol reply; a local file renders in well under one


@dataclass(frozen=True)
class Shot:
    """One screenshot: file name, CSS viewport width, and whether dark mode is emulated."""

    name: str
    width: int
    dark: bool = False


SHOTS = (Shot("mobile.png", 375), Shot("desktop.png", 800), Shot("mobile-dark.png", 375, dark=True))
MOBILE_HEIGHT = 812  # an iPhone-sized first screen; full-page shots extend below it
DESKTOP_HEIGHT = 900


class ChromiumMissing(DispatchError):
    """Headless Chromium is not installed (or cannot be used); the message says how to fix it."""


class ChromiumFailed(ChromiumMissing):
    """Chromium started but did not answer as expected. A subclass of ChromiumMissing so
    that callers handling "no usable browser" handle this too."""


def _move_high(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def find_chromium() -> str:
    """The browser executable: $DISPATCH_CHROMIUM, else the first Chromium on the system."""
    configured = os.environ.get("DISPATCH_CHROMIUM")
    if configured:
        if shutil.which(configured):
            return str(shutil.which(configured))
        raise ChromiumMissing(f"DISPATCH_CHROMIUM={configured!r} is not an executable; {INSTALL_HINT}")
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise ChromiumMissing(INSTALL_HINT)


class Chromium:
    """A headless Chromium process and its DevTools pipe. Use as a context manager."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or find_chromium()
        self._profile = tempfile.TemporaryDirectory(prefix="dispatch-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child's ends move above fd 9 so that the renumbering below cannot clobber
        # one of them (a fresh process's pipe ends are often exactly fds 3 and 4).
        to_browser_r, from_browser_w = (_move_high(fd) for fd in (to_browser_r, from_browser_w))
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", "about:blank",
        ]
        # Chromium expects the pipe on fds 3 (commands in) and 4 (replies out).
        # subprocess cannot renumber fds without preexec_fn, which is unsafe with threads
        # (the tests run an SMTP server thread); posix_spawn's file actions can.
        self._log = Path(self._profile.name) / "chromium.log"
        log = _move_high(os.open(self._log, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._pid: int | None = os.posix_spawn(self.executable, [self.executable, *args], os.environ, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
                (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
            ])
        except OSError as exc:
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._profile.cleanup()
            raise ChromiumMissing(f"cannot start {self.executable}: {exc.strerror}; {INSTALL_HINT}") from None
        finally:
            for fd in (log, to_browser_r, from_browser_w):
                os.close(fd)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._from_browser, selectors.EVENT_READ)
        self._buffer = b""
        self._next_id = 0
        self._events: deque[dict[str, Any]] = deque()
        try:
            self.call("Browser.getVersion")
        except ChromiumFailed:
            self.close()
            raise

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _running(self) -> bool:
        if self._pid is None:
            return False
        pid, _status = os.waitpid(self._pid, os.WNOHANG)
        if pid:
            self._pid = None
        return not pid

    def close(self) -> None:
        """Ask the browser to quit; kill it if it has not gone within five seconds."""
        if self._running():
            with contextlib.suppress(OSError):
                self._send({"id": -1, "method": "Browser.close"})
            deadline = time.monotonic() + 5
            while self._running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._pid is not None:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
                self._pid = None
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._selector.close()
        self._profile.cleanup()

    # --- the protocol -------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise ChromiumFailed(f"{self.executable} did not answer within {TIMEOUT:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ChromiumFailed(f"{self.executable} exited unexpectedly: {self._stderr_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)  # type: ignore[no-any-return]

    def _stderr_tail(self) -> str:
        """The browser's last words, for the error message."""
        try:
            lines = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return " / ".join(lines[-3:]) or "no output"

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            self._send(message)
        except OSError as exc:
            raise ChromiumFailed(f"{self.executable} is not running: {exc.strerror}") from None
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumFailed(f"{method}: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, event: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for queued in list(self._events):
                if queued["method"] == event and queued.get("sessionId") == session:
                    self._events.remove(queued)
                    return queued.get("params", {})  # type: ignore[no-any-return]
            self._events.clear()  # nothing else is awaited; do not let them pile up
            reply = self._receive(deadline)
            if "method" in reply:
                self._events.append(reply)

    def open(self, html_path: Path, width: int, *, dark: bool = False, height: int | None = None) -> Page:
        """A new tab showing ``html_path`` at ``width`` CSS pixels; phone-like below 600."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session, width, mobile=width < 600)
        page.resize(height or (MOBILE_HEIGHT if page.mobile else DESKTOP_HEIGHT))
        self.call("Emulation.setEmulatedMedia", {
            "media": "screen",
            "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}],
        }, session)
        self.call("Page.enable", session=session)
        self.call("Page.navigate", {"url": html_path.resolve().as_uri()}, session)
        self.wait_for("Page.loadEventFired", session)
        return page


@dataclass
class Page:
    """One tab of a Chromium, emulating a screen of ``width`` CSS pixels."""

    browser: Chromium
    target: str
    session: str
    width: int
    mobile: bool

    def resize(self, height: int) -> None:
        self.browser.call("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": self.mobile,
        }, self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise ChromiumFailed(f"script failed: {result['exceptionDetails'].get('text', '')} in {expression[:60]!r}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page, top to bottom, as a PNG at 1 device pixel per CSS pixel."""
        import base64

        height = int(self.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)") or 0)
        self.resize(max(height, 1))
        data = self.browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, self.session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


PHONE_WIDTH = 375  # an iPhone's CSS width, the narrowest screen the report is read on

# The page's width, and what makes it wider than the screen: of the elements that reach past
# its right edge, the ones whose absence would narrow the page most (each is hidden in turn
# and the page measured again), the deepest first. So a card stretched by a long word in
# another does not count, nor does the table that holds both. Hidden parts have no box.
_OVERFLOW = """((limit) => {
  const measure = () => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
  const width = measure();
  const over = width <= limit ? [] :
    [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > limit + 0.5);
  const depth = e => { let n = 0; for (let p = e; p; p = p.parentElement) n++; return n; };
  const scored = over.map(e => {
    const shown = e.style.display;
    e.style.display = 'none';
    const without = measure();
    e.style.display = shown;
    return {e: e, without: without, depth: depth(e)};
  }).sort((a, b) => a.without - b.without || b.depth - a.depth);
  return {width: width, limit: limit, culprits: scored.slice(0, 3).map(({e}) => ({
    tag: e.tagName.toLowerCase(), width: Math.round(e.getBoundingClientRect().width),
    text: (e.textContent || '').replace(/\\s+/g, ' ').trim(),
    hrefs: [e, ...e.querySelectorAll('a')].map(a => a.getAttribute('href')).filter(h => h),
    attributes: [e, e.parentElement, e.parentElement && e.parentElement.parentElement].filter(a => a)
      .flatMap(a => [...a.attributes]).filter(a => a.name !== 'style').map(a => `${a.name}="${a.value}"`)}))};
})"""


@dataclass(frozen=True)
class Overflow:
    """A page wider than the screen: its width, and what sticks out (tag, text, hrefs, attributes)."""

    width: int
    limit: int
    culprits: list[dict[str, Any]]


def overflow(html_path: Path, browser: Chromium, width: int = PHONE_WIDTH) -> Overflow | None:
    """None when ``html_path`` fits ``width`` CSS pixels without scrolling sideways."""
    page = browser.open(html_path, width)
    try:
        # The screen's width, not window.innerWidth: an emulated phone zooms out to show a page
        # wider than itself, and innerWidth grows with it.
        found = page.evaluate(f"{_OVERFLOW}({int(width)})")
    finally:
        page.close()
    if int(found["width"]) <= int(found["limit"]):
        return None
    return Overflow(int(found["width"]), int(found["limit"]), list(found["culprits"]))


def take_screenshots(html_path: Path, out_dir: Path, *, browser: Chromium | None = None) -> list[Path]:
    """Write mobile.png (375 px), desktop.png (800 px) and mobile-dark.png (375 px, dark
    colour scheme) of ``html_path`` into ``out_dir``; return their paths.

    Raises ChromiumMissing (with install instructions) when no browser is available."""
    out_dir.mkdir(parents=True, exist_ok=True)
    own = browser is None
    chromium = browser or Chromium()
    try:
        paths = []
        for shot in SHOTS:
            page = chromium.open(html_path, shot.width, dark=shot.dark)
            try:
                paths.append(page.screenshot(out_dir / shot.name))
            finally:
                page.close()
        return paths
    finally:
        if own:
            chromium.close()

"""An urgent message from the console while a scheduled dispatch drains (issue 18).

    .venv/bin/python bench/console_urgent.py [--recipients 5000] [--rate 6000] [--messages 5] [--json]

Starts `dispatch web` on a copy of the sample project whose relay is an SMTP server in this
process (aiosmtpd, recording when each message is accepted), starts the day's approved
edition to RECIPIENTS people at RATE messages a minute from the console, and, while it
drains, sends MESSAGES urgent messages from the console, one after the other. For each it
prints the time from the operator's confirmation (the POST of "Bekräfta") to the relay
accepting the first urgent message. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"anna": "anna-skriver-rapporten", "bo": "bo-godkanner-rapporten", "olle": "olle-har-jouren-idag"}
ROLES = {"anna": "editor", "bo": "approver", "olle": "operator"}


class Recorder:
    def __init__(self) -> None:
        self.accepted: list[tuple[float, bool]] = []  # (when, urgent)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        urgent = b"\r\nImportance: High" in bytes(envelope.original_content or envelope.content).split(b"\r\n\r\n", 1)[0]
        with self.lock:
            self.accepted.append((time.monotonic(), urgent))
        return "250 OK"

    def count(self, urgent: bool | None = None) -> int:
        with self.lock:
            return sum(1 for _, u in self.accepted if urgent is None or u == urgent)

    def urgent_after(self, moment: float) -> float | None:
        with self.lock:
            return next((t for t, u in self.accepted if u and t >= moment), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def sign_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/login")
    client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": csrf_of(page.text), "next": "/"})
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=6000, help="messages a minute for the draining dispatch")
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    recorder = Recorder()
    smtp_port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    work = Path(tempfile.mkdtemp(prefix="dispatch-bench-urgent-"))
    server = None
    try:
        for name in ("reports", "recipients", "templates"):
            shutil.copytree(ROOT / name, work / name)
        config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
        config.update(approval="four_eyes", notify=[], transport={
            "kind": "smtp", "host": "127.0.0.1", "port": smtp_port, "security": "none", "connections": 4,
            "rate_per_minute": args.rate})
        (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        rows = "".join(f"person{i:05d}@example.org,Person {i}\n" for i in range(args.recipients))
        (work / "recipients" / "stor.csv").write_text("email,name\n" + rows, encoding="utf-8")
        env = {**os.environ, "DISPATCH_STATE_DIR": str(work / "state")}
        cli = [sys.executable, "-m", "dispatch", "--config", str(work / "config.yaml")]
        for name, role in ROLES.items():
            (work / f"{name}.pw").write_text(PASSWORDS[name], encoding="utf-8")
            subprocess.run([*cli, "users", "add", name, "--email", f"{name}@example.org", "--role", role,
                            "--password-file", str(work / f"{name}.pw")], check=True, env=env, capture_output=True)
        port = free_port()
        server = subprocess.Popen([*cli, "web", "--listen", f"127.0.0.1:{port}"], env=env, cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        figures = measure(base, recorder, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        controller.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"machine: {figures['machine']}")
    print(f"draining: {args.recipients} recipients at {args.rate:g}/min over 4 connections; "
          f"{figures['drained_before']} accepted before the first urgent message")
    print("confirmation -> first urgent message accepted by the relay, each: "
          + ", ".join(f"{s:.2f} s" for s in figures["latencies_s"]))
    print(f"median {figures['median_s']:.2f} s, worst {figures['max_s']:.2f} s (target: under 1 s)")


def measure(base: str, recorder: Recorder, args: argparse.Namespace) -> dict[str, Any]:
    day = (datetime.now(ZoneInfo("Europe/Stockholm")) + timedelta(days=1)).date().isoformat()
    anna, bo, olle = sign_in(base, "anna"), sign_in(base, "bo"), sign_in(base, "olle")
    page = anna.get(f"/editions/{day}")
    anna.post(f"/editions/{day}/save", data={"compiled": f"{day} 13:00", "status": "draft", "lists": "stor", "base": "new",
                                             "body": "## Beskrivning av händelsen\n\n- Läget är oförändrat.\n",
                                             "csrf": csrf_of(page.text)})
    page = bo.get(f"/editions/{day}")
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page.text)
    assert seen, "the edition is not approvable"
    bo.post(f"/editions/{day}/approve", data={"csrf": csrf_of(page.text), "seen": seen.group(1)})
    confirm = olle.get(f"/editions/{day}/send")
    expected = re.search(r'name="expected" value="([^"]+)"', confirm.text)
    assert expected, confirm.text
    olle.post(f"/editions/{day}/send", data={"csrf": csrf_of(confirm.text), "expected": expected.group(1)})
    while recorder.count() < min(300, args.recipients // 4):
        time.sleep(0.02)
    drained_before = recorder.count()
    token = csrf_of(olle.get("/urgent").text)
    latencies = []
    for number in range(args.messages):
        form = {"csrf": token, "subject": f"Brådskande prov {number + 1}", "list-chefer": "1",
                "body": f"Akutmottagningen stänger **klockan 16:{number:02d}**.\n"}
        confirmed = time.monotonic()
        olle.post("/urgent/send", data=form, follow_redirects=False)
        while (accepted := recorder.urgent_after(confirmed)) is None:
            time.sleep(0.002)
        latencies.append(accepted - confirmed)
        while recorder.count(urgent=True) < 40 * (number + 1):
            time.sleep(0.01)
    return {"drained_before": drained_before, "latencies_s": latencies, "median_s": statistics.median(latencies),
            "max_s": max(latencies)}


if __name__ == "__main__":
    main()

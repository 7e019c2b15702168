"""Benchmark: start-up as whole processes, side by side in one run (issue 34).

    PYTHONPATH=src .venv/bin/python bench/startup.py [--rounds 9] [--recipients 1000] [--send-rounds 3]

Each round runs, in a rotating order (so that a machine that warms up or fills up favours none):

* a bare interpreter (``python -c pass``): the floor every command stands on;
* ``dispatch --help``;
* ``dispatch status`` on the sample ledger (the quick start's ``dispatch send --date 2024-11-17``
  into a Maildir, made once before the rounds);
* ``dispatch web --listen 127.0.0.1:0`` until it prints where it listens, and until ``/healthz``
  at that address answers 200.

With ``--before SRC`` (the ``src`` of another checkout, e.g. ``git worktree add --detach /tmp/before
COMMIT``), each round also runs that checkout's ``dispatch --help`` and ``dispatch status`` on the
same ledger, interleaved with the rest: the change and what it replaces, side by side.

Then ``--send-rounds`` rounds of a send of ``--recipients`` to Postfix's ``smtp-sink`` as whole
processes, alternating which goes first: ``dispatch send`` (the durable SQLite ledger, 4
connections, a fresh project each time) and mailmerge 2.3 sending the same message (the
sample edition's multipart body, about the same size) to the same sink. mailmerge is
installed into a virtualenv of its own at ``--mailmerge-venv`` (default /tmp/mm) if it is
not there yet; none of its code is part of this repository.

Prints, for each, the median and p95 (interpolated) of the wall time, the median CPU time of
the process (user + system, from wait4: what a loaded machine does not inflate as much), the
ratio of each median to the bare interpreter's, the load average at the start and the end,
and the send rates side by side. Needs Debian's ``postfix`` package for smtp-sink.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

from throughput import ROOT, SINK, Sink, machine, make_project, sample_eml

DISPATCH = [sys.executable, "-m", "dispatch"]
LISTENING = re.compile(r"dispatch web: listening on (http://\S+/) ")
MAILMERGE_VERSION = "2.3"


class Timing:
    """Wall and CPU seconds of the runs of one thing."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    def summary(self) -> dict[str, float]:
        return {"median_s": statistics.median(self.wall), "p95_s": p95(self.wall), "cpu_median_s": statistics.median(self.cpu),
                "runs": len(self.wall)}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def whole_process(command: list[str], cwd: Path, src: Path | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one process, from fork to reaped; ``src``: first on
    its PYTHONPATH (another checkout's program)."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_utime + usage.ru_stime, process.returncode


def web_start(root: Path) -> tuple[float, float, float]:
    """(seconds to the 'listening on' line, seconds to /healthz answering 200, CPU seconds of the
    process by then) of `dispatch web` started from nothing."""
    started = time.perf_counter()
    process = subprocess.Popen([*DISPATCH, "--config", str(root / "config.yaml"), "web", "--listen", "127.0.0.1:0"],
                               cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        said, base, buffered = 0.0, "", b""
        deadline = started + 120
        while not base:
            if time.perf_counter() > deadline or process.poll() is not None:
                raise SystemExit(f"dispatch web did not say where it listens: {buffered.decode(errors='replace')}")
            if select.select([process.stderr], [], [], 0.5)[0]:
                buffered += os.read(process.stderr.fileno(), 65536)
                found = LISTENING.search(buffered.decode(errors="replace"))
                if found:
                    said, base = time.perf_counter() - started, found.group(1)
        while True:
            try:
                with urllib.request.urlopen(base + "healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.005)
            if time.perf_counter() > deadline:
                raise SystemExit("dispatch web did not answer /healthz")
        healthy = time.perf_counter() - started
        cpu = process_cpu(process.pid)
        return said, healthy, cpu
    finally:
        process.terminate()
        process.wait(60)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_project(base: Path) -> Path:
    """The quick start: the sample project with its ledger after `dispatch send --date 2024-11-17`."""
    root = base / "sample"
    root.mkdir()
    for name in ("reports", "templates", "recipients"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    subprocess.run([*DISPATCH, "send", "--date", "2024-11-17"], cwd=root, check=True, capture_output=True)
    return root


def mailmerge_binary(venv: Path) -> Path:
    binary = venv / "bin" / "mailmerge"
    if not binary.exists():
        print(f"# installing mailmerge {MAILMERGE_VERSION} into {venv}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"mailmerge=={MAILMERGE_VERSION}"], check=True)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    if MAILMERGE_VERSION not in version:
        raise SystemExit(f"{binary} is {version.strip()}, not mailmerge {MAILMERGE_VERSION}")
    return binary


def mailmerge_project(base: Path, eml: Path, recipients: int, port: int) -> Path:
    """mailmerge's three files: a template holding the sample edition's multipart body (the same
    bytes dispatch sends, inside {% raw %} so that Jinja leaves them alone), a CSV of the same
    addresses, and the sink as its server."""
    root = base / f"mailmerge-{time.monotonic_ns()}"
    root.mkdir()
    raw = eml.read_bytes().replace(b"\r\n", b"\n")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    body = raw.partition(b"\n\n")[2].decode("utf-8")
    content_type = " ".join(str(message["Content-Type"]).split())
    (root / "template.txt").write_text(
        f"TO: {{{{email}}}}\nFROM: {message['From']}\nSUBJECT: {message['Subject']}\nMIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n\n{{% raw %}}{body}{{% endraw %}}", encoding="utf-8")
    with (root / "database.csv").open("w", encoding="utf-8") as handle:
        handle.write("email\n")
        for i in range(recipients):
            handle.write(f"person.{i:06d}@example.org\n")
    (root / "server.conf").write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\n", encoding="utf-8")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the start-up figures")
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--send-rounds", type=int, default=3, help="rounds of the send beside mailmerge (0 to skip)")
    parser.add_argument("--before", type=Path, help="another checkout's src: its --help and status beside these")
    parser.add_argument("--mailmerge-venv", type=Path, default=Path("/tmp/mm"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.send_rounds and not os.path.exists(SINK):
        raise SystemExit(f"{SINK} not found: apt-get install postfix (only its test tools are used)")

    results: dict[str, object] = {"machine": machine(), "load_at_start": os.getloadavg()}
    timings = {name: Timing() for name in ("bare interpreter", "dispatch --help", "dispatch status", "dispatch web (line)",
                                           "dispatch web (/healthz)")}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        sample = sample_project(base)

        def bare() -> None:
            timings["bare interpreter"].add(*whole_process([sys.executable, "-c", "pass"], sample)[:2])

        def help_() -> None:
            timings["dispatch --help"].add(*checked(whole_process([*DISPATCH, "--help"], sample)))

        def status() -> None:
            timings["dispatch status"].add(*checked(whole_process([*DISPATCH, "status"], sample)))

        def web() -> None:
            said, healthy, cpu = web_start(sample)
            timings["dispatch web (line)"].add(said, cpu)
            timings["dispatch web (/healthz)"].add(healthy, cpu)

        steps: list[Callable[[], None]] = [bare, help_, status, web]
        if args.before is not None:
            before = args.before.resolve()
            timings["before: dispatch --help"] = Timing()
            timings["before: dispatch status"] = Timing()

            def help_before() -> None:
                timings["before: dispatch --help"].add(*checked(whole_process([*DISPATCH, "--help"], sample, before)))

            def status_before() -> None:
                timings["before: dispatch status"].add(*checked(whole_process([*DISPATCH, "status"], sample, before)))

            steps += [help_before, status_before]
        for round_number in range(args.rounds):
            shift = round_number % len(steps)
            for step in steps[shift:] + steps[:shift]:
                step()
            print(f"# start-up round {round_number + 1} of {args.rounds}", file=sys.stderr, flush=True)
        floor = statistics.median(timings["bare interpreter"].wall)
        floor_cpu = statistics.median(timings["bare interpreter"].cpu)
        startup = {}
        for name, timing in timings.items():
            figures = timing.summary()
            figures["x_bare"] = figures["median_s"] / floor
            figures["cpu_x_bare"] = figures["cpu_median_s"] / floor_cpu if floor_cpu else 0.0
            startup[name] = figures
        results["startup"] = startup

        if args.send_rounds:
            results["send"] = send_side_by_side(base, args)
    results["load_at_end"] = os.getloadavg()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print(f"load average (1, 5, 15 min): at the start {fmt_load(results['load_at_start'])}, at the end {fmt_load(results['load_at_end'])}")
    print(f"start-up, {args.rounds} rounds interleaved, whole processes:")
    print(f"{'':28} {'median':>8} {'p95':>8} {'x bare':>7} {'CPU':>7} {'CPU x bare':>10}")
    for name, figures in startup.items():
        print(f"{name:28} {figures['median_s']:>7.3f}s {figures['p95_s']:>7.3f}s {figures['x_bare']:>7.1f} "
              f"{figures['cpu_median_s']:>6.3f}s {figures['cpu_x_bare']:>10.1f}")
    send = results.get("send")
    if isinstance(send, dict):
        print(f"send of {args.recipients} to smtp-sink, {args.send_rounds} rounds alternating, whole processes "
              f"(message {send['eml_kb']:.0f} KB):")
        for name in ("dispatch", "mailmerge"):
            figures = send[name]
            print(f"  {name:10} median {figures['median_s']:.2f} s (p95 {figures['p95_s']:.2f} s, CPU {figures['cpu_median_s']:.2f} s): "
                  f"{figures['rate']:.0f} recipients/s")
        print(f"  dispatch / mailmerge {MAILMERGE_VERSION}: {send['ratio']:.1f}x the rate (target >= 12x)")


def checked(run: tuple[float, float, int]) -> tuple[float, float]:
    wall, cpu, code = run
    if code != 0:
        raise SystemExit(f"a command exited {code}")
    return wall, cpu


def fmt_load(load: object) -> str:
    return ", ".join(f"{value:.1f}" for value in load) if isinstance(load, tuple | list) else str(load)


def send_side_by_side(base: Path, args: argparse.Namespace) -> dict[str, object]:
    binary = mailmerge_binary(args.mailmerge_venv)
    sink = Sink()
    try:
        eml = sample_eml(make_project(base, 1, sink.port, 4))
        ours, theirs = Timing(), Timing()
        for round_number in range(args.send_rounds):
            dispatch_root = make_project(base, args.recipients, sink.port, 4)
            mailmerge_root = mailmerge_project(base, eml, args.recipients, sink.port)
            runs = [
                (ours, [*DISPATCH, "--config", str(dispatch_root / "config.yaml"), "send", "--date", "2024-11-17",
                        "--list", "alla", "--wait", "0"], dispatch_root),
                (theirs, [str(binary), "--no-dry-run", "--no-limit", "--template", "template.txt", "--database", "database.csv",
                          "--config", "server.conf", "--output-format", "raw"], mailmerge_root),
            ]
            for timing, command, cwd in runs if round_number % 2 == 0 else runs[::-1]:
                timing.add(*checked(whole_process(command, cwd)))
            print(f"# send round {round_number + 1} of {args.send_rounds}", file=sys.stderr, flush=True)
    finally:
        sink.stop()
    figures: dict[str, object] = {"recipients": args.recipients, "eml_kb": eml.stat().st_size / 1024}
    for name, timing in (("dispatch", ours), ("mailmerge", theirs)):
        summary = timing.summary()
        summary["rate"] = args.recipients / summary["median_s"]
        figures[name] = summary
    figures["ratio"] = statistics.median(theirs.wall) / statistics.median(ours.wall)
    return figures


if __name__ == "__main__":
    main()

"""Benchmark: `dispatch send` against Postfix's smtp-sink, beside smtp-source as the limit.

    .venv/bin/python bench/throughput.py [--recipients 5000] [--connections 1 4 8] [--scale 100000]

For each connection count it runs, in the same run and against the same smtp-sink
(which accepts and discards, so the server is never the bottleneck):

* `dispatch send` of the sample edition to N generated recipients, one message each,
  with the real durable ledger (SQLite, WAL, synchronous=FULL), as a whole process;
* `smtp-source` (Postfix's load generator, C) sending the same .eml the same number of
  times over the same number of connections, reusing each connection (-d): the limit.

Also: the same recipients in Bcc batches of 500 (messages and wall time), and a scale
run (peak RSS of the `dispatch send` process and time per recipient). Needs Debian's
`postfix` package for smtp-sink and smtp-source (only the tools, not the daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    """smtp-sink on a free port; backlog large enough for every connection."""

    def __init__(self) -> None:
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen([SINK, *user, f"127.0.0.1:{self.port}", "1024"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def make_project(base: Path, recipients: int, port: int, connections: int, per_message: int = 1) -> Path:
    root = base / f"p-{recipients}-{connections}-{per_message}-{time.monotonic_ns()}"
    root.mkdir()
    for name in ("reports", "templates", "recipients"):
        shutil.copytree(ROOT / name, root / name)
    with (root / "recipients" / "alla.csv").open("w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        for i in range(recipients):
            handle.write(f"person.{i:06d}@example.org,Person {i}\n")
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["transport"] = {"kind": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
                           "connections": connections, "recipients_per_message": per_message}
    config["notify"] = []
    config["publish"] = {"dir": "var/intranet", "on_send": False}
    (root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return root


def run_send(root: Path) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one whole `dispatch send` process."""
    command = [sys.executable, "-m", "dispatch", "--config", str(root / "config.yaml"), "send",
               "--date", "2024-11-17", "--list", "alla", "--wait", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)  # wait4: this child's own peak RSS
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dispatch send failed: {process.stderr.read() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss


def sample_eml(root: Path) -> Path:
    out = root / "preview"
    subprocess.run([sys.executable, "-m", "dispatch", "--config", str(root / "config.yaml"), "preview",
                    "--date", "2024-11-17", "--out", str(out)], check=True, capture_output=True)
    return out / "2024-11-17.eml"


def run_source(eml: Path, port: int, messages: int, connections: int) -> float:
    started = time.perf_counter()
    subprocess.run([SOURCE, "-d", "-s", str(connections), "-m", str(messages), "-f", "rapport@example.org",
                    "-t", "person@example.org", "-F", str(eml), f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--scale", type=int, default=100_000, help="recipients for the scale run (0 to skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    for tool in (SINK, SOURCE):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} not found: apt-get install postfix (only its test tools are used)")

    sink = Sink()
    results: dict[str, object] = {"machine": machine(), "recipients": args.recipients}
    rows: list[dict[str, float]] = []
    batching: dict[str, float] = {}
    scale: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            for connections in args.connections:
                root = make_project(base, args.recipients, sink.port, connections)
                eml = sample_eml(root)
                results["eml_kb"] = eml.stat().st_size / 1024
                ours, rss = run_send(root)
                limit = run_source(eml, sink.port, args.recipients, connections)
                rows.append({"connections": connections, "dispatch_msg_s": args.recipients / ours,
                             "smtp_source_msg_s": args.recipients / limit, "ratio": limit / ours,
                             "dispatch_s": ours, "peak_rss_mb": rss / 1024})
                print(f"# {rows[-1]}", file=sys.stderr, flush=True)  # progress; a long run loses nothing
            results["throughput"] = rows

            root = make_project(base, args.recipients, sink.port, 4, per_message=500)
            batched, _ = run_send(root)
            batching = {"recipients_per_message": 500, "messages": -(-args.recipients // 500), "wall_s": batched, "connections": 4}
            results["batching"] = batching

            if args.scale:
                small = next((r for r in rows if r["connections"] == 4), rows[-1])
                root = make_project(base, args.scale, sink.port, 4)
                elapsed, rss = run_send(root)
                scale = {
                    "recipients": args.scale, "wall_s": elapsed, "peak_rss_mb": rss / 1024,
                    "ms_per_recipient": elapsed / args.scale * 1000,
                    "ms_per_recipient_small": small["dispatch_s"] / args.recipients * 1000,
                    "ratio_to_small": (elapsed / args.scale) / (small["dispatch_s"] / args.recipients),
                    "peak_rss_mb_small": small["peak_rss_mb"],
                }
                results["scale"] = scale
    finally:
        sink.stop()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print(f"{args.recipients} recipients, sample edition ({results['eml_kb']:.0f} KB), ledger SQLite synchronous=FULL")
    print(f"{'conn':>4} {'dispatch msg/s':>15} {'smtp-source msg/s':>18} {'ratio':>6} {'peak RSS':>9}")
    for row in rows:
        print(f"{row['connections']:>4.0f} {row['dispatch_msg_s']:>15.0f} {row['smtp_source_msg_s']:>18.0f} "
              f"{row['ratio']:>6.2f} {row['peak_rss_mb']:>7.0f}MB")
    print(f"batching: {args.recipients} recipients in {batching['messages']:.0f} messages of <=500 over 4 connections: "
          f"{batching['wall_s']:.2f} s")
    if scale:
        print(f"scale: {scale['recipients']:.0f} recipients, 4 connections: {scale['wall_s']:.1f} s, "
              f"peak RSS {scale['peak_rss_mb']:.0f} MB (vs {scale['peak_rss_mb_small']:.0f} MB), "
              f"{scale['ms_per_recipient']:.3f} ms/recipient = {scale['ratio_to_small']:.2f}x the {args.recipients} run")


if __name__ == "__main__":
    main()

"""Runs every benchmark and prints one table with the targets of issue 8.

    .venv/bin/python bench/run_all.py [--recipients 5000] [--scale 100000]

Needs Debian's postfix package (smtp-sink, smtp-source). Each figure is measured in this
one run, side by side, so the ratios hold even on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict[str, Any]:
    output = subprocess.run([sys.executable, str(HERE / script), *args, "--json"], check=True,
                            capture_output=True, text=True).stdout
    start = output.index("{")
    figures = json.loads(output[start:])
    if not isinstance(figures, dict):
        raise SystemExit(f"{script} printed {type(figures).__name__}, not a JSON object")
    return figures


def recipient_figures() -> dict[str, float]:
    """recipients.py prints text; take its best wall time and peak RSS over baseline."""
    import re

    output = subprocess.run([sys.executable, str(HERE / "recipients.py"), "--rows", "100000", "--runs", "3"],
                            check=True, capture_output=True, text=True).stdout
    wall = re.search(r"wall time \(best of \d+\): ([\d.]+) s", output)
    rss = re.search(r"peak RSS over baseline[^:]*: ([\d.]+) MB", output)
    return {"wall_s": float(wall.group(1)) if wall else float("nan"), "rss_mb": float(rss.group(1)) if rss else float("nan")}


def table_row(measure: str, figure: str, reference: str = "", ratio: str = "", target: str = "", met: str = "") -> None:
    print(f"| {measure} | {figure} | {reference} | {ratio} | {target} | {met} |")


def yes_no(met: bool) -> str:
    return "yes" if met else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--scale", type=int, default=100_000)
    args = parser.parse_args()

    throughput = run("throughput.py", "--recipients", str(args.recipients), "--scale", str(args.scale))
    latency = run("latency.py", "--runs", "10")
    recipients = recipient_figures()

    print(f"machine: {throughput['machine']}")
    print()
    print("| measure | dispatch | limit / reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for row in throughput["throughput"]:
        target = ">= 0.25x" if row["connections"] == 4 else ""
        met = ("yes" if row["ratio"] >= 0.25 else "no") if row["connections"] == 4 else ""
        print(f"| {args.recipients} messages, {row['connections']} connection(s) | {row['dispatch_msg_s']:.0f} msg/s "
              f"| smtp-source {row['smtp_source_msg_s']:.0f} msg/s | {row['ratio']:.2f}x | {target} | {met} |")
    b = throughput["batching"]
    table_row(f"{args.recipients} recipients in Bcc batches of 500, 4 connections", f"{b['messages']} messages in {b['wall_s']:.2f} s")
    if "scale" in throughput:
        s = throughput["scale"]
        table_row(f"{s['recipients']} recipients, peak RSS of `dispatch send`", f"{s['peak_rss_mb']:.0f} MB",
                  f"{args.recipients} recipients: {s['peak_rss_mb_small']:.0f} MB", "", "<= 150 MB", yes_no(s["peak_rss_mb"] <= 150))
        table_row(f"{s['recipients']} recipients, time per recipient", f"{s['ms_per_recipient']:.3f} ms",
                  f"{args.recipients}: {s['ms_per_recipient_small']:.3f} ms", f"{s['ratio_to_small']:.2f}x", "<= 1.2x",
                  yes_no(s["ratio_to_small"] <= 1.2))
    help_s = latency["dispatch --help"]["median_s"]
    table_row("`dispatch --help`, whole process", f"{help_s:.3f} s", f"`python -c pass`: {latency['python -c pass']['median_s']:.3f} s",
              "", "<= 0.3 s", yes_no(help_s <= 0.3))
    print(f"| `dispatch check`, whole process | {latency['dispatch check']['median_s']:.3f} s | | | | |")
    met = "yes" if recipients["wall_s"] < 2 and recipients["rss_mb"] < 100 else "no"
    print(f"| resolve a 100,000-row CSV | {recipients['wall_s']:.2f} s, {recipients['rss_mb']:.0f} MB over baseline "
          f"| | | < 2 s, < 100 MB | {met} |")


if __name__ == "__main__":
    main()

"""Benchmark: whole-process time of `dispatch --help` and `dispatch check` on the sample edition.

    .venv/bin/python bench/latency.py [--runs 10]

Each command runs --runs times as a fresh process; the median and the best are printed.
Beside them, `python -c pass` in the same run gives the interpreter's own start-up, so the
figures can be compared across machines as a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - started)
    return {"median_s": statistics.median(samples), "best_s": min(samples)}


def measure(runs: int) -> dict[str, dict[str, float]]:
    python = [sys.executable]
    return {
        "python -c pass": timed([*python, "-c", "pass"], runs),
        "dispatch --help": timed([*python, "-m", "dispatch", "--help"], runs),
        "dispatch check": timed([*python, "-m", "dispatch", "--config", str(ROOT / "config.yaml"), "check", "--date", "2024-11-17"], runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        print(f"{name:<18} median {figures['median_s']:.3f} s  best {figures['best_s']:.3f} s")


if __name__ == "__main__":
    main()

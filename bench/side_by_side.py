"""Two checkouts, one benchmark, in one run: the figures of a change beside those before it.

    .venv/bin/python bench/side_by_side.py BEFORE AFTER [--rounds 3] -- BENCH.py [ARGS ...]

BEFORE and AFTER are checkouts (``git worktree add --detach /tmp/before COMMIT`` makes one).
Each round runs ``BENCH.py --json`` from BEFORE, then from AFTER (alternating which goes first,
so that a machine that warms up or fills up favours neither), each with its own ``src`` first on
``PYTHONPATH``; the benchmark's own child processes inherit it. Prints, for every number the
benchmark reports, the median of each side and AFTER / BEFORE. On a shared, noisy machine the
ratio of two runs side by side is the figure to quote, not either side alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def numbers(value: object, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, by its dotted path (list items by index, or by a
    ``connections`` field where they have one, as throughput's rows do)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            label = f"{item['connections']}conn" if isinstance(item, dict) and "connections" in item else str(index)
            yield from numbers(item, f"{path}[{label}]")


def run(checkout: Path, bench: str, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    done = subprocess.run([sys.executable, str(checkout / bench), *args, "--json"], cwd=checkout, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {bench} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return dict(numbers(json.loads(done.stdout)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("bench", help="the benchmark script, relative to each checkout")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    options = parser.parse_args()
    bench_args = [a for a in options.args if a != "--"]

    figures: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for round_number in range(options.rounds):
        order = ["before", "after"] if round_number % 2 == 0 else ["after", "before"]
        for side in order:
            for key, value in run(getattr(options, side), options.bench, bench_args).items():
                figures[side].setdefault(key, []).append(value)
        print(f"# round {round_number + 1} of {options.rounds} done", file=sys.stderr, flush=True)

    print(f"{options.bench} {' '.join(bench_args)}: median of {options.rounds} rounds, side by side")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    for key in figures["before"]:
        if key not in figures["after"]:
            continue
        before, after = statistics.median(figures["before"][key]), statistics.median(figures["after"][key])
        ratio = f"{after / before:.3f}" if before else "-"
        print(f"| {key} | {before:.4g} | {after:.4g} | {ratio} |")


if __name__ == "__main__":
    main()

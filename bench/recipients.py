"""Benchmark: resolve a generated 100,000-row recipient CSV.

    .venv/bin/python bench/recipients.py [--rows 100000] [--runs 3]

The parent generates a CSV in a temporary directory (Swedish Excel style: semicolons,
UTF-8 with BOM; about 2 % duplicates in different case, 0.5 % invalid addresses), then
measures in fresh child processes so that each figure starts from the same interpreter
baseline (dispatch.recipients.lists and email-validator imported, nothing resolved yet):

* wall time of ``recipients.resolve`` (best of --runs, tracemalloc off, since it slows
  allocation down several times), and the CPU time of that run (process_time), which
  other load on the machine disturbs less;
* peak resident memory over that baseline: ``ru_maxrss`` after resolving minus
  ``ru_maxrss`` before it, in the same child (Linux reports KiB);
* tracemalloc peak of Python allocations during resolve, in a separate child.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST = ["Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Åsa", "Örjan", "Elin", "Mats", "Sofia", "Björn"]
LAST = ["Johansson", "Lindqvist", "Andersson", "Nilsson", "Eriksson", "Bergström", "Håkansson", "Öberg", "Åkesson"]
DOMAINS = ["example.org", "vgregion.example", "Sjukhus.Example.ORG", "kommun.example.se"]
INVALID = ["förnamn.efternamn@example.org", "utan-snabel-a.example.org", "två@@example.org", "a..b@example.org", "x@example", ""]


def ascii_part(text: str) -> str:
    return text.lower().translate(str.maketrans("åäö", "aao"))


def generate(path: Path, rows: int, seed: int = 17) -> tuple[int, int]:
    """Write the CSV; returns (duplicates written, invalid rows written)."""
    rnd = random.Random(seed)
    seen: list[str] = []
    duplicates = invalid = 0
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write("email;name;förvaltning\r\n")
        for i in range(rows):
            roll = rnd.random()
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            name = f"{first} {last}"
            if roll < 0.005:
                email = rnd.choice(INVALID)
                invalid += 1
            elif roll < 0.025 and seen:
                email = rnd.choice(seen).upper()  # the same person, exported in capitals
                duplicates += 1
            else:
                # HR systems transliterate Å/Ä/Ö in addresses: Åsa Öberg -> asa.oberg
                email = f"{ascii_part(first)}.{ascii_part(last)}.{i}@{rnd.choice(DOMAINS)}"
                if len(seen) < 5000:
                    seen.append(email)
            if roll > 0.99:
                name = f'"{last}, {first}"'  # quoted field with a comma
            out.write(f"{email};{name};Förvaltning {i % 40}\r\n")
    return duplicates, invalid


CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path
from dispatch.recipients import lists as recipients  # baseline includes the imports
directory, name, trace = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
recipients.normalise("warm.up@example.org")
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if trace:
    tracemalloc.start()
start, cpu_start = time.perf_counter(), time.process_time()
result = recipients.resolve(directory, [name])
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = tracemalloc.get_traced_memory()[1] if trace else 0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "seconds": elapsed, "cpu_seconds": cpu, "rss_kib_before": before, "rss_kib_delta": after - before, "tracemalloc_peak": peak,
    "recipients": len(result.recipients), "invalid": len(result.invalid),
    "members": len(result.lists[name].members),
}))
"""


def child(directory: Path, name: str, trace: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(directory), name, "1" if trace else "0"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "hr-export.csv"
        t0 = time.perf_counter()
        duplicates, invalid = generate(path, args.rows)
        print(f"generated {path.name}: {args.rows} rows, {duplicates} case-variant duplicates, "
              f"{invalid} invalid, {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.2f} s")
        runs = [child(directory, "hr-export", trace=False) for _ in range(args.runs)]
        best = min(runs, key=lambda r: r["seconds"])
        traced = child(directory, "hr-export", trace=True)
    print(f"resolved: {best['members']} members, {best['invalid']} invalid")
    print(f"wall time (best of {args.runs}): {best['seconds']:.2f} s   "
          "[all: " + ", ".join(f"{r['seconds']:.2f}" for r in runs) + "]")
    print(f"CPU time of that run: {best['cpu_seconds']:.2f} s (wall exceeds CPU when other processes compete "
          f"for the {os.cpu_count()} cores; load average now {os.getloadavg()[0]:.1f})")
    print(f"peak RSS over baseline (ru_maxrss delta, child process): {max(r['rss_kib_delta'] for r in runs) / 1024:.1f} MB "
          f"(baseline {best['rss_kib_before'] / 1024:.1f} MB)")
    print(f"tracemalloc peak during resolve (separate child): {traced['tracemalloc_peak'] / 1e6:.1f} MB")
    print(f"reproduce: {Path(sys.executable).name} bench/recipients.py --rows {args.rows} --runs {args.runs}")


if __name__ == "__main__":
    main()

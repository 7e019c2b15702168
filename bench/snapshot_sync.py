"""Keeping a large directory list: time and memory of the snapshot side of a sync of N members
(fold the addresses, judge against the last accepted snapshot, store the snapshot and its
members in the ledger), of a second sync that finds the same people (no new rows), and of what a
send reads (the accepted snapshot's people). The directory's side is bench/directory_sync.py
(slapd) and bench/graph_sync.py; this takes the people as a source returns them, in memory.

    .venv/bin/python bench/snapshot_sync.py [--members 50000] [--postgres URL] [--json]

Each ledger in a fresh child process: wall time of each step, and the peak RSS over the child's
baseline (the interpreter with the ledger open and the people made) during the first sync.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from datetime import UTC, datetime, timedelta
from dispatch.app.directory import SnapshotPeople, take_snapshot
from dispatch.ledger import Ledger
from dispatch.recipients.directory import DirectoryListSpec, DirectoryPerson, DirectoryResult

url, count = sys.argv[1], int(sys.argv[2])
ledger = Ledger(url)
spec = DirectoryListSpec(name="chefer", display_name="Chefer", path="recipients/chefer.yaml", directory="ad",
                         group="cn=chefer,ou=groups,dc=example,dc=org")
people = tuple(DirectoryPerson(f"Person.{n:06d}@Example.org", f"Förnamn Efternamn {n}",
                               f"uid=p{n:06d},ou=people,dc=example,dc=org") for n in range(count))
result = DirectoryResult(people, disabled=40, without_mail=25)
now = datetime.now(UTC)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
first = take_snapshot(ledger, spec, lambda: result, now)
first_s = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
again = take_snapshot(ledger, spec, lambda: result, now + timedelta(hours=1))
again_s = time.perf_counter() - started
started = time.perf_counter()
read = SnapshotPeople(ledger)["chefer"]
read_s = time.perf_counter() - started
assert first.snapshot.members == count and not again.new and len(read) == count
ledger.close()
print(json.dumps({"first_sync_s": round(first_s, 2), "unchanged_sync_s": round(again_s, 2), "send_read_s": round(read_s, 2),
                  "peak_rss_mb_over_baseline": round((peak - baseline) / 1024, 1)}))
"""


def measure(url: str, members: int, state: str) -> dict[str, float]:
    # The program remembers every ledger it opened (to notice one that vanished): a throw-away
    # place for the benchmark's throw-away ledgers.
    env = {**os.environ, "DISPATCH_STATE_DIR": state}
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(members)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the measurement on {url.split('?')[0]} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL ledger (an empty database or schema)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as scratch:
        figures["sqlite"] = measure(f"sqlite:///{Path(scratch) / 'ledger.db'}", args.members, scratch)
        if args.postgres:
            figures["postgresql"] = measure(args.postgres, args.members, scratch)
    if args.json:
        print(json.dumps({"members": args.members, **figures}))
        return
    for ledger, found in figures.items():
        print(f"{ledger}: {args.members} members: first sync {found['first_sync_s']} s "
              f"(peak RSS +{found['peak_rss_mb_over_baseline']} MB), unchanged sync {found['unchanged_sync_s']} s, "
              f"a send's read {found['send_read_s']} s")
    print(f"reproduce: .venv/bin/python bench/snapshot_sync.py --members {args.members}"
          + (" --postgres URL" if args.postgres else ""))


if __name__ == "__main__":
    main()

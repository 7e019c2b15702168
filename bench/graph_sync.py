"""Reading a large Entra ID group through Microsoft Graph: time and memory of
``GraphSource.group_members`` for N members, against the tests' local HTTPS Graph
(tests/graphserver.py, which needs the test dependencies: pytest, trustme).

    .venv/bin/python bench/graph_sync.py [--members 50000] [--runs 3] [--json]

The server runs in this process; each measurement in a fresh child process, so its figures
are the client's alone: wall and CPU time of the read (best of --runs), peak RSS over the
child's baseline (the interpreter with dispatch.recipients.graph imported), and in a separate
child the tracemalloc peak. Pages are Graph's largest (999 users), as dispatch asks for them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from graphserver import running_graph_server, user  # noqa: E402  (the tests' server, not a package)

GROUP = "2b7c5a1e-9d3f-4c8b-a6e2-0f1d2c3b4a59"

CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path
from dispatch.config.settings import GraphDirectory
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES
from dispatch.recipients.graph import GraphSource

settings, group, traced = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
for key in ("client_secret_file", "ca_file"):
    settings[key] = Path(settings[key])
source = GraphSource(GraphDirectory(**settings))
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if traced:
    tracemalloc.start()
wall, cpu = time.perf_counter(), time.process_time()
result = source.group_members(group, DEFAULT_ATTRIBUTES)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = tracemalloc.get_traced_memory()[1] if traced else 0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_over_baseline_mb": (after - before) / 1024,
                  "baseline_mb": before / 1024, "tracemalloc_peak_mb": peak / 2**20,
                  "people": len(result.people), "disabled": result.disabled, "without_mail": result.without_mail}))
"""


def measure(settings: dict[str, object], traced: bool) -> dict[str, float]:
    output = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings), GROUP, "1" if traced else "0"],
                            check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(output)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp, running_graph_server(Path(tmp)) as server:
        server.reset()
        # 1 in 100 disabled, 1 in 200 without mail: both read and counted, as in a real tenant.
        server.tenant.groups[GROUP] = [user(n, enabled=n % 100 != 0, mail=n % 200 != 1) for n in range(args.members)]
        d = server.directory()
        settings: dict[str, object] = {"name": d.name, "tenant_id": d.tenant_id, "client_id": d.client_id,
                    "client_secret_file": str(d.client_secret_file), "authority": d.authority, "graph_url": d.graph_url,
                    "ca_file": str(d.ca_file), "timeout_seconds": 60.0}
        runs = [measure(settings, traced=False) for _ in range(args.runs)]
        traced = measure(settings, traced=True)
        pages = len(server.pages_served(GROUP)) // (args.runs + 1)
    best = min(runs, key=lambda r: r["wall_s"])
    figures = {"members": args.members, "pages": pages, "people": best["people"], "disabled": best["disabled"],
               "without_mail": best["without_mail"], "wall_s": round(best["wall_s"], 3), "cpu_s": round(best["cpu_s"], 3),
               "walls_s": [round(r["wall_s"], 3) for r in runs],
               "rss_over_baseline_mb": round(max(r["rss_over_baseline_mb"] for r in runs), 1),
               "baseline_mb": round(best["baseline_mb"], 1), "tracemalloc_peak_mb": round(traced["tracemalloc_peak_mb"], 1)}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{figures['members']} members in {figures['pages']} pages: {figures['people']} people, "
          f"{figures['disabled']} disabled, {figures['without_mail']} without mail")
    print(f"wall time (best of {args.runs}): {figures['wall_s']} s (all: {figures['walls_s']}), CPU of that run {figures['cpu_s']} s")
    print(f"peak RSS over baseline: {figures['rss_over_baseline_mb']} MB (baseline {figures['baseline_mb']} MB); "
          f"tracemalloc peak: {figures['tracemalloc_peak_mb']} MB")


if __name__ == "__main__":
    main()

"""Benchmark: read a 50,000-member directory list from a real OpenLDAP slapd.

    .venv/bin/python bench/directory_sync.py [--people 50000] [--runs 3]

The parent generates a directory (``--people`` people in the group ``alla`` through ten nested
groups of equal size), loads it with slapadd and starts a private slapd (tests/ldapserver.py:
ldaps on a loopback port, a size limit of 500, read with an ordinary account through paged
results). It then reads the group with ``dispatch.recipients.ldap.LdapSource.group_members``
(the breadth-first walk OpenLDAP needs: it does not know AD's in-chain rule) in fresh child
processes, so each figure starts from the same baseline (the interpreter with the source
imported and one small read made, to load the TLS and ldap3 code paths):

* wall time of the read (best of --runs, tracemalloc off), its CPU time in our process, and
  slapd's CPU time meanwhile (from /proc);
* peak resident memory over that baseline: ``ru_maxrss`` after minus before, in the same child;
* tracemalloc peak of Python allocations during the read, in a separate child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # ldapserver: the tests' private slapd

import ldapserver  # noqa: E402

CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path
from dispatch.config.settings import LdapDirectory
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES
from dispatch.recipients.ldap import LdapSource
url, bind_dn, password, base_dn, ca_file, group, trace = sys.argv[1:8]
source = LdapSource(LdapDirectory(name="bench", url=url, bind_dn=bind_dn, base_dn=base_dn, ca_file=Path(ca_file)), password)
source.matching("(uid=p000001)", DEFAULT_ATTRIBUTES)  # warm up: TLS, ldap3's codecs
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if trace == "1":
    tracemalloc.start()
start, cpu_start = time.perf_counter(), time.process_time()
result = source.group_members(group, DEFAULT_ATTRIBUTES)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = tracemalloc.get_traced_memory()[1] if trace == "1" else 0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "rss_kib_before": before, "rss_kib_delta": after - before,
                  "tracemalloc_peak": peak, "people": len(result.people), "disabled": result.disabled,
                  "without_mail": result.without_mail}))
"""


def server_cpu_seconds(server: ldapserver.Slapd) -> float:
    """slapd's user + system CPU time so far (Linux /proc)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(server: ldapserver.Slapd, trace: bool) -> dict[str, float]:
    argv = [server.url, server.reader_dn, server.reader_password, server.base_dn, str(server.ca_file),
            f"cn=alla,{ldapserver.GROUPS_DN}", "1" if trace else "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    server_before = server_cpu_seconds(server)
    out = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the measuring child failed ({out.returncode}):\n{out.stderr}")
    measured: dict[str, float] = json.loads(out.stdout)
    measured["server_cpu_seconds"] = server_cpu_seconds(server) - server_before  # (the warm-up read included)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # SIGTERM ends the run through the finally below, which stops slapd and removes its files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    server = ldapserver.Slapd(ldapserver.large_directory(args.people))
    try:
        server.start()
        print(f"generated, loaded (slapadd) and started slapd with {args.people} people in "
              f"{time.perf_counter() - t0:.1f} s")
        runs = [child(server, trace=False) for _ in range(args.runs)]
        traced = child(server, trace=True)
    finally:
        server.remove()
    best = min(runs, key=lambda run: run["seconds"])
    assert best["people"] == args.people, best
    print(f"read: {best['people']} people ({best['disabled']} disabled, {best['without_mail']} without mail left out)")
    print(f"wall time (best of {args.runs}): {best['seconds']:.2f} s   [all: "
          + ", ".join(f"{run['seconds']:.2f}" for run in runs) + "]")
    print(f"CPU time of that run: {best['cpu_seconds']:.2f} s in our process, {best['server_cpu_seconds']:.2f} s in slapd "
          f"(wall exceeds their sum when other processes compete for the cores; load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"peak RSS over baseline (ru_maxrss delta, child process): {max(run['rss_kib_delta'] for run in runs) / 1024:.1f} MB "
          f"(baseline {best['rss_kib_before'] / 1024:.1f} MB)")
    print(f"tracemalloc peak during the read (separate child): {traced['tracemalloc_peak'] / 1e6:.1f} MB")
    print(f"machine: {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores")
    print(f"reproduce: {Path(sys.executable).name} bench/directory_sync.py --people {args.people} --runs {args.runs}")


if __name__ == "__main__":
    main()

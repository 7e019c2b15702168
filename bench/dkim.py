"""What DKIM signing costs per message (issue 29): the sample edition, patched for N recipients,
with and without signing, side by side in one run.

    .venv/bin/python bench/dkim.py [--messages 2000] [--runs 3] [--json]

On a copy of the sample project (in a temporary directory) the edition is rendered and
prepared once, as a send does; then, for N generated recipients, it times
`PreparedMessage.for_recipients` (the bytes one SMTP transaction sends) unsigned and signed
with a fresh 2048-bit RSA key, the two alternating run by run (best of --runs). It also
splits one signature into dkimpy's parts (parsing the message, the body's canonical form and
hash, the RSA operation), to show which would be worth avoiding.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DAY = "2024-11-17"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"


def best_per_message(work: Callable[[], None], count: int, runs: int) -> tuple[float, float]:
    """(wall, CPU) microseconds per message of the fastest of ``runs`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        best = min(best, ((time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-dkim-"))
    os.environ["DISPATCH_STATE_DIR"] = str(base / "state")  # not the user's memory of ledgers
    try:
        figures = measure(base, args.messages, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    n = args.messages
    print(f"machine: {figures['machine']}; sample edition {DAY}, {figures['message_bytes']} bytes a message, "
          f"{n} recipients, best of {args.runs}")
    print("| per message | wall | CPU |")
    print("|---|---|---|")
    for name in ("unsigned", "signed"):
        row = figures[name]
        print(f"| {name} | {row['wall_us']:.0f} µs | {row['cpu_us']:.0f} µs |")
    print(f"| signing adds | {figures['signed']['wall_us'] - figures['unsigned']['wall_us']:.0f} µs "
          f"({n} messages: {(figures['signed']['wall_us'] - figures['unsigned']['wall_us']) * n / 1e6:.1f} s) | |")
    print("one signature's parts (dkimpy), per message:")
    for part, micros in figures["parts_us"].items():
        print(f"  {part:<34} {micros:8.0f} µs")
    print(f"reproduce: {Path(sys.executable).name} bench/dkim.py --messages {n} --runs {args.runs}")


def measure(base: Path, count: int, runs: int) -> dict[str, object]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # This file is named dkim.py: without its folder on the path, `import dkim` is dkimpy.
    sys.path[:] = [str(ROOT / "src"), *(entry for entry in sys.path if Path(entry or ".").resolve() != HERE)]
    import dkim
    from dkim.canonicalization import CanonicalizationPolicy
    from dkim.crypto import RSASSA_PKCS1_v1_5_sign, parse_pem_private_key

    from dispatch.app import App
    from dispatch.app.editions import read_edition, render_edition
    from dispatch.config import load_settings
    from dispatch.email.dkim import CANONICALIZATION, Signer, read_key
    from dispatch.email.message import message_id, to_header
    from dispatch.models import Recipient

    project = base / "project"
    project.mkdir()
    for name in ("reports", "templates", "recipients", "config.yaml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    key_path = project / "dkim.key"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)

    settings = load_settings(project / "config.yaml")
    now = datetime(2024, 11, 17, 14, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    with App(settings).session() as unit:
        ready = render_edition(unit, read_edition(unit, None, None, now), now)
    unsigned = ready.prepared
    signed = dataclasses.replace(unsigned, signer=Signer(domain="example.org", selector="rapport", key=read_key(key_path)))
    people = [Recipient(address=f"person.{i:06d}@example.org", name=f"Person Svensson {i}", key=f"person.{i:06d}@example.org")
              for i in range(count)]
    patches = [(to_header([p]), message_id("bench", p.key, unsigned.domain), p.key) for p in people]

    def send_all(prepared: object) -> Callable[[], None]:
        def work() -> None:
            for header, mid, who in patches:
                prepared.for_recipients(header, mid, who)  # type: ignore[attr-defined]
        return work

    results: dict[str, object] = {"machine": machine(), "messages": count}
    timings = {"unsigned": (float("inf"), float("inf")), "signed": (float("inf"), float("inf"))}
    for _ in range(runs):  # alternating, so a burst of load elsewhere hits both alike
        for name, prepared in (("unsigned", unsigned), ("signed", signed)):
            timings[name] = min(timings[name], best_per_message(send_all(prepared), count, 1))
    for name, (wall, cpu) in timings.items():
        results[name] = {"wall_us": wall, "cpu_us": cpu}

    sample = unsigned.for_recipients(*patches[0])
    results["message_bytes"] = len(sample)
    policy = CanonicalizationPolicy.from_c_value(b"/".join(CANONICALIZATION))
    parsed = dkim.DKIM(sample)
    private = parse_pem_private_key(signed.signer.key)  # type: ignore[union-attr]
    repeat = max(50, count // 10)
    parts = {
        "parse the message (dkim.DKIM)": lambda: dkim.DKIM(sample),
        "body: relaxed form + SHA-256": lambda: hashlib.sha256(policy.canonicalize_body(parsed.body)).digest(),
        "parse the PEM key": lambda: parse_pem_private_key(signed.signer.key),  # type: ignore[union-attr]
        "RSA-2048 signature (pure Python)": lambda: RSASSA_PKCS1_v1_5_sign(hashlib.sha256(b"headers"), private),
    }
    results["parts_us"] = {name: best_per_message(lambda part=part: [part() for _ in range(repeat)], repeat, runs)[0]  # type: ignore[misc]
                           for name, part in parts.items()}
    return results


if __name__ == "__main__":
    main()

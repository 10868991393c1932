"""Fencing under retries: a write retried while the lease lapses never reaches the API server late.

Each trial (tests/integration/test_fencing_retries.py::trial) acquires a Lease once and never
renews it, then writes a VirtualService through FencedRouter + IstioRouter while the strict
Kubernetes API emulator answers every PUT with 500, 503, 429 or an answer slower than the
client waits, at random. The emulator records when each write arrived. Counted: PUTs that
arrived before the renew deadline, in the margin between it and the lease's expiry (sent
before the deadline, landing late on a loaded machine), and after the expiry, when a standby
may lead (must be 0).
Prints a table and exits 0; with --write, writes docs/benchmarks/fencing.md.

    .venv/bin/python scripts/bench_fencing.py --trials 50 --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchdoc  # noqa: E402


from tests import fleet  # noqa: E402
from tests.integration.test_fencing_retries import trial  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--renew-deadline", type=float, default=0.5, help="seconds (production: 10)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    benchdoc.quiet()
    api = fleet.start_api(1)
    client = api.api_client()
    t0 = time.monotonic()
    try:
        results = [trial(api, client, seed, renew_deadline_s=args.renew_deadline) for seed in range(args.trials)]
    finally:
        client.close()
        api.stop()
    before, after = sum(r["before"] for r in results), sum(r["after"] for r in results)
    margin = sum(r["in_margin"] for r in results)
    late_trials = sum(r["after"] > 0 for r in results)
    table = ("| trials | PUTs arriving before the renew deadline | PUTs arriving in the margin (sent before it) | "
             "PUTs arriving after the lease expired | trials with a late PUT | seconds |\n"
             "|---:|---:|---:|---:|---:|---:|\n"
             f"| {len(results)} | {before} | {margin} | {after} | {late_trials} | {time.monotonic() - t0:.1f} |")
    print(table)
    if args.write:
        benchdoc.write("fencing", title="Fencing: a retried write never lands once the lease expired",
                       extra=f"; renew deadline {args.renew_deadline} s (scaled down from 10 s)", body=(
            "Each trial: a Lease acquired once and never renewed; one VirtualService write retried through "
            "500/503/429 and too-slow answers at random. Every attempt is fenced (`IstioRouter.fence` = "
            "`LeaderElector.lease_left`) and its timeout cut to the lease left.\n\n" + table))


if __name__ == "__main__":
    main()

"""Time from fault onset to stable at 100%, per sandbox scenario (median and max over runs).

Each run starts the whole sandbox (two Tritons, Prometheus, HAProxy, API emulator,
load generator), runs the real `canary promote` with policies/sandbox.yaml and
measures, from the data plane's side, when HAProxy stopped sending traffic to
the canary server after the fault began. Prints a table; exits 0.

    .venv/bin/python scripts/bench_rollback.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary import logs  # noqa: E402
from canary.policy import load_policy  # noqa: E402
from canary.sandbox.demo import SANDBOX_POLICY, run_scenario  # noqa: E402

SCENARIOS = ("slow", "drift", "errors", "crash", "good", "bad-schema")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=150.0)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    logs.configure(fmt="console", stream=sys.stderr, level="warning")  # the table alone on stdout
    policy = load_policy(SANDBOX_POLICY)
    print(f"policy {SANDBOX_POLICY.name}: steps {policy.steps}, interval {policy.analysis.interval:g} s, "
          f"look every {policy.analysis.look_every:g} s, rollback after {policy.failure.max_failed_looks} failed look(s); "
          f"probe {policy.gates.triton.probe_interval:g} s x {policy.gates.triton.probe_failures}; load {args.rate:g} rps")
    rows = []
    for scenario in args.scenarios.split(","):
        times, walls, outcomes, canary_req, failed = [], [], [], [], []
        for _ in range(args.runs):
            t = time.monotonic()
            r = run_scenario(scenario, rate=args.rate)
            walls.append(r.rollout_s)
            outcomes.append(f"{r.phase}({r.exit_code})")
            failed.append(r.load.get("failed", 0))
            canary_req.append(r.load.get("by_server", {}).get("canary", 0))
            if r.stable_100_after_onset_s is not None:
                times.append(r.stable_100_after_onset_s)
            print(f"  {scenario}: {r.phase} exit {r.exit_code}, onset->stable100 {r.stable_100_after_onset_s} s, "
                  f"promote {r.rollout_s} s, run {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        rows.append((scenario, sorted(set(outcomes)), times, walls, canary_req, failed))
    print()
    head = f"{'scenario':<11} {'outcome':<18} {'onset->stable 100% median':>26} {'max':>7} {'promote wall median':>20} " \
           f"{'canary req (median)':>20} {'failed req (max)':>17}"
    print(head)
    print("-" * len(head))
    for scenario, outs, times, walls, creq, failed in rows:
        med = f"{statistics.median(times):.2f} s" if times else "-"
        mx = f"{max(times):.2f} s" if times else "-"
        print(f"{scenario:<11} {','.join(outs):<18} {med:>26} {mx:>7} {statistics.median(walls):>18.1f} s "
              f"{statistics.median(creq):>20.0f} {max(failed):>17}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

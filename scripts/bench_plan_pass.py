"""`canary plan`'s pass side, checked against the judge: is a good canary shown within each claimed limit?

For a policy and traffic, `canary plan` claims per sub-test and step the tightest limit a canary
*equal* to stable (or at the assumed baseline) is shown within, with 95% probability, at the
step's deadline look. This script takes each claim, builds a one-check policy whose only limit is
that claim (a latency ceiling: the policy's own `max_ms`, the canary's quantile at the claimed
largest latency), draws `--draws` looks of that step's deadline counts under the plan's
assumptions, and counts how often the real judge (`judge_check`, at the plan's pass level) says
PASS. The shares should be about 95% or more; far above means the claim is loose.

Assumptions drawn as the plan states them: latency lognormal (median 50 ms, --latency-sigma) on
buckets x1.005 apart ("fine", the plan told 1.005) or x1.1 (the plan told 1.1, the p95's place in its
bucket drawn per look); error and missing-feature rates at --error-rate / --missing-rate;
predictions on --bins cells whose shares are NOT equal (Dirichlet(5), fixed per check: the plan
simulates equal cells). No servers, no timing: CPU seconds.

Usage: .venv/bin/python scripts/bench_plan_pass.py [--policy policies/default.yaml] [--rps 4,20,50]
       [--draws 400] [--bins 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.analysis.evidence import pass_level, planned_ratio  # noqa: E402
from canary.analysis.judge import judge_check  # noqa: E402
from canary.analysis.plan import plan  # noqa: E402
from canary.model import Counts, Histogram, Outcome  # noqa: E402
from canary.policy import load_policy, parse_policy  # noqa: E402

MEDIAN_MS = 50.0


def latency_hist(rng: np.random.Generator, n: int, scale_ms: float, sigma: float, ratio: float,
                 offset: float) -> Histogram:
    top = int(math.log(20 * scale_ms * math.exp(6 * sigma)) / math.log(ratio)) + 2
    bounds = np.array([ratio ** (i + offset) for i in range(top)])
    p = np.diff(np.concatenate([[0.0], st.lognorm(s=sigma, scale=scale_ms).cdf(bounds), [1.0]]))
    cum = np.cumsum(rng.multinomial(n, p / p.sum()))
    return Histogram(bounds=tuple(float(b) for b in bounds) + (math.inf,), counts=tuple(float(c) for c in cum))


def cells_hist(rng: np.random.Generator, n: int, shares: np.ndarray) -> Histogram:
    k = len(shares)
    cum = np.cumsum(rng.multinomial(n, shares))
    return Histogram(bounds=tuple(float(i + 1) / k for i in range(k - 1)) + (math.inf,),
                     counts=tuple(float(c) for c in cum))


def one_check(base: dict[str, Any], spec: dict[str, Any]) -> Any:
    return parse_policy({"steps": base["steps"], "checks": [spec]}).checks[0]


def shown(policy_raw: dict[str, Any], test: dict[str, Any], value: float, step: Any, *, level: float, draws: int,
          rng: np.random.Generator, sigma: float, ratio: float, error_rate: float, missing_rate: float,
          bins: int) -> float:
    """Share of `draws` looks at the step's deadline the judge PASSes, the sub-test's limit at the claim."""
    check_raw = next(c for c in policy_raw["checks"] if c["name"] == test["check"])
    kind, name = check_raw["kind"], test["test"]
    n_c, n_s = int(round(step.pass_canary_requests)), int(round(step.pass_canary_requests * (100 - step.weight)
                                                                     / step.weight))
    q = float(check_raw.get("quantile", 0.95))
    spec: dict[str, Any] = {"name": "c", "kind": kind}
    if kind == "latency":
        spec["quantile"] = q
        if name == "relative":
            spec["max_increase_pct"] = value
            scale_c = MEDIAN_MS
        else:  # the canary's q-quantile at the claimed largest latency shown below max_ms
            spec["max_ms"] = test["limit"]
            scale_c = value / math.exp(sigma * float(st.norm.ppf(q)))
    elif kind in ("error_rate", "feature_missing"):
        spec["max_increase_points" if name == "increase" else "max_rate_pct"] = value
    else:
        spec["max_psi" if name == "psi" else "max_js"] = value
    check = one_check(policy_raw, spec)
    shares = np.random.default_rng(abs(hash(test["key"])) % 2**32).dirichlet(np.full(bins, 5.0))
    base = error_rate if kind == "error_rate" else missing_rate
    passed = 0
    for _ in range(draws):
        if kind == "latency":
            offset = float(rng.uniform()) if ratio > 1.0 + 1e-9 else 0.0
            r = ratio if ratio > 1.0 + 1e-9 else 1.005
            s, c = latency_hist(rng, n_s, MEDIAN_MS, sigma, r, offset), latency_hist(rng, n_c, scale_c, sigma, r, offset)
        elif kind in ("error_rate", "feature_missing"):
            s = Counts(events=float(rng.binomial(n_s, base)), total=float(n_s))
            c = Counts(events=float(rng.binomial(n_c, base)), total=float(n_c))
        else:
            s, c = cells_hist(rng, n_s, shares), cells_hist(rng, n_c, shares)
        verdict = judge_check(check, s, c, alpha=1e-4, min_canary=1, beta=level)
        passed += verdict.outcome == Outcome.PASS
    return passed / draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="policies/default.yaml")
    ap.add_argument("--rps", default="4,20,50")
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--latency-sigma", type=float, default=0.5)
    ap.add_argument("--error-rate", type=float, default=0.5, help="%")
    ap.add_argument("--missing-rate", type=float, default=0.5, help="%")
    ap.add_argument("--bucket-ratios", default="1,1.1")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import yaml

    raw = yaml.safe_load(Path(args.policy).read_text())
    pol = load_policy(Path(args.policy))
    level = pass_level(pol, 0, planned_ratio(pol))
    rng = np.random.default_rng(args.seed)
    t0 = time.process_time()
    print(f"policy {args.policy}, pass level {level:.3g}, {args.draws} looks per cell, seed {args.seed}")
    print("| rps | buckets | step | sub-test | claim | canary req | judge PASS |")
    print("|---|---|---|---|---|---|---|")
    worst = 1.0
    for rps in (float(x) for x in args.rps.split(",")):
        for ratio in (float(x) for x in args.bucket_ratios.split(",")):
            # "fine" is drawn on buckets x1.005 apart, and the plan is told so
            p = plan(pol, rps=rps, latency_sigma=args.latency_sigma, error_rate=args.error_rate / 100,
                     missing_rate=args.missing_rate / 100, bins=args.bins, bucket_ratio=ratio if ratio != 1 else 1.005)
            for test in p.pass_checks:
                if ratio != 1.0 and not test["key"].startswith(tuple(c["name"] for c in raw["checks"]
                                                                      if c["kind"] == "latency")):
                    continue  # the layout only matters to latency
                for step in p.steps:
                    value = step.pass_by_check[test["key"]]
                    if value is None:
                        continue
                    share = shown(raw, test, value, step, level=level, draws=args.draws, rng=rng,
                                  sigma=args.latency_sigma, ratio=ratio, error_rate=args.error_rate / 100,
                                  missing_rate=args.missing_rate / 100, bins=args.bins)
                    worst = min(worst, share)
                    unit = {"ms": " ms", "%": "%", "points": " pts", "% rate": "%"}.get(test["unit"], "")
                    print(f"| {rps:g} | {'fine' if ratio == 1 else f'x{ratio:g}'} | {step.weight}% | {test['key']} "
                          f"| {value:.3g}{unit} | {step.pass_canary_requests:,.0f} | {share:.1%} |", flush=True)
    print(f"\nlowest share: {worst:.1%}; CPU {time.process_time() - t0:.0f} s")


if __name__ == "__main__":
    main()

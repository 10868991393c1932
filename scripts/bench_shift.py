"""Prediction-shift check: its error rates per look, on native histogram cells and on fixed buckets.

Two questions, each for five score shapes (beta(2,5), beta(.5,.5), point masses at 0 and 1 over
beta(2,2), bimodal, fraud-like: 97% near 0), 20,000 stable and 500-5,000 canary predictions:

* ``h0``: identical arms. How often the check FAILs (limits PSI 0.2, PSI 0.01, PSI 0.2 with JS
  0.1), and how often the chi-square homogeneity p-value is <= 0.01 on the cells compared (it
  should be about 1%).
* ``limit``: a canary whose population PSI on the layout's own cells is exactly the limit (0.2,
  found by bisection on a mixture with a shifted component over 10^6 draws). How often one look
  PASSes: at most the pass level, 5%, is what the bound promises.

Layouts: a Prometheus native histogram at schema 3 and 4, read as canary reads it
(`native.from_buckets`, `align`, `quantile_cells`), and 20 fixed classic buckets 0.05 wide.
Counts outcomes of `judge_check` at alpha 0.01 (no timing). Prints a table.

Usage: .venv/bin/python scripts/bench_shift.py [--draws 120] [--only h0,limit]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.analysis import shift  # noqa: E402
from canary.analysis.judge import _per_bucket, _shared, judge_check  # noqa: E402
from canary.metrics.native import align, from_buckets, grid_bound, quantile_cells  # noqa: E402
from canary.model import Histogram, Outcome  # noqa: E402
from canary.policy import parse_policy  # noqa: E402

ZERO = 2.0 ** -128  # the Go client's zero threshold
FIXED = tuple(round(0.05 * k, 2) for k in range(1, 21))
LAYOUTS = ("schema 3", "schema 4", "fixed 0.05")


def native_rows(values: np.ndarray, schema: int) -> list[tuple[int, float, float, float]]:
    """The populated buckets (rule, lo, hi, count) Prometheus writes for `values` (>= 0)."""
    zero = values <= ZERO
    pos = values[~zero]
    out: list[tuple[int, float, float, float]] = []
    if len(pos):
        i = np.ceil(np.log2(pos) * 2.0 ** schema - 1e-9).astype(np.int64)
        for _ in range(3):  # settle float edges: (lo, hi] must hold the value
            i = np.where(2.0 ** ((i - 1) / 2.0 ** schema) >= pos, i - 1, i)
            i = np.where(2.0 ** (i / 2.0 ** schema) < pos, i + 1, i)
        idx, cnt = np.unique(i, return_counts=True)
        out = [(0, max(grid_bound(j - 1, schema), ZERO), grid_bound(j, schema), float(c))
               for j, c in zip(idx.tolist(), cnt.tolist())]
    if zero.any():
        out.append((3, -ZERO, ZERO, float(zero.sum())))
    return out


def histograms(layout: str, stable: np.ndarray, canary: np.ndarray) -> list[Histogram]:
    if layout == "fixed 0.05":
        out = []
        for v in (np.sort(stable), np.sort(canary)):
            cum = [float(np.searchsorted(v, b, side="right")) for b in FIXED] + [float(len(v))]
            out.append(Histogram((*FIXED, math.inf), tuple(cum)))
        return out
    schema = int(layout[-1])
    a, b = (from_buckets(native_rows(v, schema), len(v)) for v in (stable, canary))
    pa, pb = quantile_cells(*align(a, b))
    return [Histogram(tuple(le for le, _ in p), tuple(c for _, c in p)) for p in (pa, pb)]


def shapes(rng: np.random.Generator) -> dict[str, tuple]:
    """name -> (stable draw, the shifted component a canary mixes in)."""
    return {
        "beta(2,5)": (lambda n: rng.beta(2, 5, n), lambda n: rng.beta(5, 2, n)),
        "beta(.5,.5)": (lambda n: rng.beta(0.5, 0.5, n), lambda n: rng.beta(2, 2, n)),
        "masses 0/1 + beta(2,2)": (lambda n: np.where(rng.random(n) < 0.2, 0.0, np.where(
            rng.random(n) < 0.125, 1.0, rng.beta(2, 2, n))), lambda n: np.full(n, 1.0)),
        "bimodal": (lambda n: np.where(rng.random(n) < 0.5, rng.beta(2, 20, n), rng.beta(20, 2, n)),
                    lambda n: rng.beta(8, 8, n)),
        "fraud-like": (lambda n: np.where(rng.random(n) < 0.97, rng.beta(0.7, 30, n), rng.beta(5, 1.5, n)),
                       lambda n: rng.beta(3, 3, n)),
    }


def check(**limits: float):
    return parse_policy({"steps": [10, 100], "checks": [{"name": "s", "kind": "prediction_shift",
                                                         **limits}]}).checks[0]


def chi2_p(hs: Histogram, hc: Histogram) -> float:
    _, sc, cc = _shared(hs, hc)
    s, c = shift._merge(_per_bucket(sc), _per_bucket(cc))
    return 1.0 if len(s) < 2 else shift.chi2_sf(shift._chi2(s, c), len(s) - 1)


def population_psi(hs: Histogram, hc: Histogram) -> float:
    _, sc, cc = _shared(hs, hc)
    s, c = np.array(_per_bucket(sc)), np.array(_per_bucket(cc))
    ps, pc = s / s.sum(), c / c.sum()
    m = (ps > 0) & (pc > 0)
    return float(np.sum((pc[m] - ps[m]) * np.log(pc[m] / ps[m])))


def h0(draws: int) -> None:
    rng = np.random.default_rng(12345)
    checks = [check(max_psi=0.2), check(max_psi=0.01), check(max_psi=0.2, max_js=0.1)]
    print(f"\n## Identical arms: FAILs (of {draws} per cell, limits PSI 0.2 / PSI 0.01 / PSI 0.2+JS 0.1) "
          "and chi-square p <= 0.01\n")
    print("| shape | canary n | " + " | ".join(LAYOUTS) + " |\n|---|---:|" + "---|" * len(LAYOUTS))
    for name, (base, _) in shapes(rng).items():
        for n_c in (500, 1000, 2000, 5000):
            cells = []
            for layout in LAYOUTS:
                fails, p01 = [0, 0, 0], 0
                for _ in range(draws):
                    hs, hc = histograms(layout, base(20000), base(n_c))
                    for k, ch in enumerate(checks):
                        fails[k] += judge_check(ch, hs, hc, alpha=0.01, min_canary=100).outcome == Outcome.FAIL
                    p01 += chi2_p(hs, hc) <= 0.01
                cells.append(f"{'/'.join(map(str, fails))}; {p01 / draws:.1%}")
            print(f"| {name} | {n_c:,} | " + " | ".join(cells) + " |", flush=True)


def at_limit(draws: int, limit: float = 0.2) -> None:
    rng = np.random.default_rng(7)
    ch = check(max_psi=limit)
    print(f"\n## A canary at exactly PSI {limit} (on the layout's own cells): share of looks that PASS "
          f"(of {draws}; the bound promises <= 5%)\n")
    print("| shape | layout | mixture t | 500 | 1,000 | 2,000 | 5,000 |\n|---|---|---:|---:|---:|---:|---:|")
    big = 1_000_000
    for name, (base, alt) in shapes(rng).items():
        def canary(n: int, t: float) -> np.ndarray:
            return np.where(rng.random(n) < t, alt(n), base(n))

        big_stable = base(big)
        for layout in LAYOUTS:
            lo, hi = 0.0, 1.0
            for _ in range(14):  # the mixture share whose population PSI is the limit
                t = (lo + hi) / 2
                lo, hi = (t, hi) if population_psi(*histograms(layout, big_stable, canary(big, t))) < limit else (lo, t)
            shares = []
            for n_c in (500, 1000, 2000, 5000):
                passes = sum(judge_check(ch, *histograms(layout, base(20000), canary(n_c, hi)), alpha=0.01,
                                         min_canary=100).outcome == Outcome.PASS for _ in range(draws))
                shares.append(f"{passes / draws:.1%}")
            print(f"| {name} | {layout} | {hi:.3f} | " + " | ".join(shares) + " |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=120)
    ap.add_argument("--only", default="h0,limit")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if "h0" in parts:
        h0(args.draws)
    if "limit" in parts:
        at_limit(args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

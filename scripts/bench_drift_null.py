"""Drift verdicts on data that did not drift: false-drift rates per feature (decision 73).

Same-distribution reference and live samples (seeded, 1,000 trials per row), through the production
functions (`stats.categorical_drift`, `compare.compare` on a profile entry from `profile._numeric`).
Every rate should be about the tests' nominal 5% (50 per 1,000) at any live size; the last row is the
power kept at small n. Prints a table and exits 0:

    .venv/bin/python scripts/bench_drift_null.py      # about 15 s
"""
import numpy as np
from canary.drift import stats as D
from canary.drift.compare import compare
from canary.drift.profile import _numeric

P = np.array([0.5, 0.3, 0.2])
print("chi-square (1,000-row reference, 3 categories 50/30/20):")
for n in (1_000, 10_000, 100_000, 1_000_000):
    h = 0
    for s in range(1000):
        rng = np.random.default_rng(s)
        h += D.categorical_drift("c", rng.multinomial(1000, P), rng.multinomial(n, P)).drifted
    print(f"  live n={n:>9,}: {h}/1000")
print("Wasserstein (5,000-row normal reference), per feature:")
for n in (100, 120, 200, 400, 1000):
    h = hn = 0
    for s in range(1000):
        rng = np.random.default_rng(s)
        f = _numeric(rng.normal(40, 10, 5000), 0, 20)
        prof = {"format": 1, "model": "m", "version": "v", "features": {"x": f}}
        x = rng.normal(40, 10, n)
        c = np.bincount(np.searchsorted(f["bounds"], x, side="left"), minlength=len(f["bounds"]) + 1).tolist()
        h += compare(prof, {"x": {"counts": c, "sum": float(x.sum())}}).features[0].drifted
        hn += compare(prof, {"x": {"counts": c}}).features[0].drifted
    print(f"  live n={n:>5}: with live sum {h}/1000, without {hn}/1000")
print("Jensen-Shannon (5,000-row reference, Zipf shares):")
for K in (20, 100):
    Q = 1 / np.arange(1, K + 1); Q /= Q.sum()
    for n in (100, 400):
        h = 0
        for s in range(1000):
            rng = np.random.default_rng(s)
            h += D.categorical_drift("c", rng.multinomial(5000, Q), rng.multinomial(n, Q)).drifted
        print(f"  K={K:>3} live n={n}: {h}/1000")
print("power: Wasserstein, mean shifted by 0.5 std, live n=200 (with sum):")
h = 0
for s in range(1000):
    rng = np.random.default_rng(s)
    f = _numeric(rng.normal(0, 1, 5000), 0, 20)
    prof = {"format": 1, "model": "m", "version": "v", "features": {"x": f}}
    x = rng.normal(0.5, 1, 200)
    c = np.bincount(np.searchsorted(f["bounds"], x, side="left"), minlength=len(f["bounds"]) + 1).tolist()
    h += compare(prof, {"x": {"counts": c, "sum": float(x.sum())}}).features[0].drifted
print(f"  {h}/1000 drift")
print("rare cells (100,000-row reference: one category 80%, twenty 1%), live n=400:")
M = np.array([80_000] + [1_000] * 20 + [0.0])
h = 0
for s in range(1000):
    h += D.categorical_drift("c", M, np.random.default_rng(s).multinomial(400, M / M.sum())).drifted
print(f"  no drift: {h}/1000")
for label, into in (("80 values into one 1% category", 8), ("80 values into a new category", 21)):
    h = 0
    for s in range(200):
        live = np.random.default_rng(s).multinomial(320, M / M.sum()).astype(float)
        live[into] += 80
        h += D.categorical_drift("c", M, live).drifted
    print(f"  power, {label}: {h}/200")

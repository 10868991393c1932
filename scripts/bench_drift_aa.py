"""A/A false-drift rate of one numeric feature of the sandbox's training profile (standard normal).

`training_profile("v1")` (canary.sandbox.model: 20,000 float32 standard-normal rows), then per trial n fresh
standard-normal values (float32, as the load generator sends them) counted into the profile's `le` buckets
exactly as `canary.drift.exporter` counts them (`profile.bucket_edges`, first edge >= x), shaped as
`canary.drift.live.live_counts` returns them ({"counts", "sum", "sum_n"}) and judged by `compare.compare`.
Trials are batched as copies of feature f0 in one profile (the batched path judges each row alone).
Seeded; prints per n the false-drift rate (Wasserstein >= 0.1 AND p < 0.05), the rate of p < 0.05 alone,
and which p-value decided (binned KS, or the z-test of the means when their gap exceeds the binned distance);
then whole evaluations (8 inputs and the score, one `compare` each) of n requests: how often any feature drifts;
then the sandbox load generator's own stream (`LoadGenerator`, seed 0, 4 threads, batches of 4, 5% rows with
missing values) replayed through a `FeatureExporter`: its first n rows, what the demo's first evaluation reads:

    PYTHONPATH=. .venv/bin/python scripts/bench_drift_aa.py [TRIALS]      # 2,000 trials: about 1 min
"""
import math
import sys

import numpy as np

from canary.drift.compare import compare
from canary.drift.profile import bucket_edges
from canary.sandbox.model import FEATURE_NAMES, N_FEATURES, PREDICTION_NAME, score, training_profile

TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
SIZES = (100, 300, 500, 1_000, 3_000, 10_000)

prof = training_profile("v1")
f0 = prof["features"]["f0"]
edges = bucket_edges(f0["bounds"])
print(f"reference f0: {sum(f0['counts'])} values, {len(f0['bounds'])} bounds, std {f0['std']:.4f}, "
      f"mean {f0['mean']:+.4f}; {TRIALS} trials per row, seed = row")
print(f"| live n | drifted (W>=0.1 and p<0.05) | 95% interval | p<0.05 alone | W>=0.1 alone | decided by z of means |")
print("|---:|---:|---:|---:|---:|---:|")
for n in SIZES:
    rng = np.random.default_rng(n)
    names = [f"t{i}" for i in range(TRIALS)]
    many = {"format": 1, "model": prof["model"], "version": "v1", "features": {k: f0 for k in names}}
    live = {}
    for k in names:
        x = rng.standard_normal(n).astype(np.float32).astype(float)
        c = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
        live[k] = {"counts": [float(v) for v in c], "sum": float(x.sum()), "sum_n": float(n)}
    fs = compare(many, live).features
    d = sum(f.drifted for f in fs)
    p = sum((f.p_value if f.p_value is not None else 1.0) < 0.05 for f in fs)
    w = sum(f.value >= 0.1 for f in fs)
    z = sum(bool(f.note) for f in fs)
    r = d / TRIALS
    half = 1.96 * math.sqrt(max(r * (1 - r), 1e-12) / TRIALS)
    print(f"| {n:,} | {d}/{TRIALS} = {100 * r:.1f}% | {100 * max(r - half, 0):.1f}-{100 * (r + half):.1f}% | "
          f"{100 * p / TRIALS:.1f}% | {100 * w / TRIALS:.1f}% | {100 * z / TRIALS:.1f}% |")

EVALS = max(TRIALS // 4, 1)
print(f"\nwhole evaluations: 8 inputs + score, {EVALS} per row (seed 7 + n)")
print("| requests n | features drifted / compared | evaluations with any feature drifted |")
print("|---:|---:|---:|")
for n in (300, 500, 1_000):
    rng = np.random.default_rng(7 + n)
    drifted = anyd = 0
    for _ in range(EVALS):
        x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
        cols = {**{k: x[:, i].astype(float) for i, k in enumerate(FEATURE_NAMES)},
                PREDICTION_NAME: score(x).ravel().astype(float)}
        live = {}
        for k, v in cols.items():
            e = bucket_edges(prof["features"][k]["bounds"])
            c = np.bincount(np.searchsorted(e, v, side="left"), minlength=len(e) + 1)
            live[k] = {"counts": [float(u) for u in c], "sum": float(v.sum()), "sum_n": float(n)}
        res = compare(prof, live)
        k = sum(f.drifted for f in res.features)
        drifted += k
        anyd += k > 0
    m = len(FEATURE_NAMES) + 1
    print(f"| {n:,} | {drifted}/{EVALS * m} = {100 * drifted / (EVALS * m):.1f}% | "
          f"{anyd}/{EVALS} = {100 * anyd / EVALS:.1f}% |")

from prometheus_client import CollectorRegistry  # noqa: E402

from canary.drift.exporter import FeatureExporter  # noqa: E402
from canary.sandbox.loadgen import LoadGenerator  # noqa: E402

print("\nthe sandbox's load (LoadGenerator seed 0, threads 4, batch 4; threads taken in turn), first n rows")
print("| rows n | share | drifted (Wasserstein, p) |")
print("|---:|---:|---|")
gen = LoadGenerator("http://127.0.0.1:9", threads=4, batch=4, missing_share=0.05, seed=0)
rngs = [np.random.default_rng(i) for i in range(4)]  # the generator's per-thread seeds: seed * 1000 + index
ex = FeatureExporter(prof, registry=CollectorRegistry())
rows = 0
for n in (200, 300, 400, 500, 600, 800, 1_000, 1_500):
    while rows < n:
        x = gen.features(rngs[(rows // 4) % 4])
        for row, s in zip(x, score(x).ravel()):
            ex.observe(dict(zip(FEATURE_NAMES, row.tolist())), prediction=float(s))
        rows += 4
    live = ex.live_counts()
    for v in live.values():
        v["sum_n"] = float(sum(v["counts"]))
    res = compare(prof, live)
    print(f"| {n:,} | {res.share:.3f} | " + (", ".join(f"{f.feature} ({f.value:.3f}, {f.p_value:.3f})"
                                              for f in res.features if f.drifted) or "none") + " |")

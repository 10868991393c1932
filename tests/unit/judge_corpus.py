"""A deterministic corpus of looks for the judge: every check kind, edge and layout (not a test).

Used by test_judge_speedup.py, which judges each look and compares the verdict with the one
recorded before the judge was made faster (judge_golden.json.gz) and with the judge's plain
array reference path. Inputs come from `random.Random(seed)` only (no numpy generator, whose
streams may change between releases), so the same seed gives the same look forever.

Covered: latency relative and ceiling limits on Istio's, x1.1, x1.25, coarse, linear,
zero-first and sandbox layouts, arms on differing layouts, open-ended (+Inf-only) canaries,
empty arms, tiny and fractional counts, NaN and +Inf counts; error rate and feature_missing
(increase and ceiling, zero events, zero totals, events = total); prediction shift (PSI, JS,
both; sparse and unused cells); feature_drift (numeric and categorical features, missing
values, schema changes, features one arm lacks); custom checks (NaN values and n); whole-check
and per-arm exceptions; priors from earlier windows and resumed windows.
"""

from __future__ import annotations

import math
import random
from typing import Any

from canary.errors import MetricsUnavailable, NoData
from canary.model import Counts, FeatureCounts, Histogram, Scalar
from canary.policy import Policy, parse_policy

INF = math.inf
LAYOUTS: dict[str, tuple[float, ...]] = {
    "istio": (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
              1800000, 3600000),
    "x1.1": tuple(1.1 ** i for i in range(85)),
    "x1.05": tuple(20 * 1.05 ** i for i in range(60)),
    "x1.25": tuple(1.25 ** i for i in range(40)),
    "coarse": (50, 60, 75, 100),
    "sandbox": (1, 2.5, 5, 10, 25, 50, 100, 250),
    "linear": tuple(5.0 * i for i in range(1, 51)),
    "zero-first": (0.0, 10, 20, 40, 80, 160, 320),
    "two": (100, 2500),
}


def _draws(rng: random.Random, n: int, probs: list[float]) -> list[float]:
    """Counts of n draws over cells with these probabilities: normal approximations per cell
    (cheap at any n, which is all a corpus needs), exact zeros where a probability is 0."""
    out = []
    for p in probs:
        mean = n * p
        x = round(mean + rng.gauss(0.0, 1.0) * math.sqrt(mean * (1 - p))) if p > 0 else 0
        out.append(float(max(x, 0)))
    return out


def _cum(rng: random.Random, bounds: tuple[float, ...], n: int, median: float, sigma: float,
         fractional: bool) -> tuple[float, ...]:
    """Cumulative counts at `bounds` (+Inf appended by the caller) of n lognormal draws."""
    cdf = [0.5 * math.erfc(-math.log(b / median) / sigma / math.sqrt(2)) if b > 0 else 0.0 for b in bounds]
    probs = [b - a for a, b in zip([0.0, *cdf], [*cdf, 1.0])]
    counts = _draws(rng, n, probs)
    if fractional:  # Prometheus increase() extrapolates: counts need not be integers
        counts = [c * rng.choice((0.97, 1.0, 1.013)) + rng.choice((0.0, 0.25, 0.5, 0.49)) for c in counts]
    out, acc = [], 0.0
    for c in counts:
        acc += c
        out.append(acc)
    return tuple(out)


def _sizes(rng: random.Random) -> tuple[int, int]:
    if rng.random() < 0.3:  # a step's worth: enough to pass
        return rng.choice((12000, 20000)), rng.choice((1000, 3000))
    n_s = rng.choice((0, 1, 7, 60, 400, 3000, 12000))
    n_c = rng.choice((0, 1, 3, 40, 150, 600, 2000))
    return n_s, n_c


def _histogram(rng: random.Random, bounds: tuple[float, ...], n: int, median: float, sigma: float) -> Histogram:
    fractional = rng.random() < 0.15
    cum = list(_cum(rng, bounds, n, median, sigma, fractional))
    r = rng.random()
    if r < 0.03:  # a NaN count (Prometheus returns NaN for 0/0 rates): the judge must not crash
        cum[rng.randrange(len(cum))] = math.nan
    elif r < 0.05:
        cum[-1] = INF
    elif r < 0.08:  # everything in the open +Inf bucket
        cum = [0.0] * (len(cum) - 1) + [float(max(n, 1))]
    return Histogram((*map(float, bounds), INF), tuple(cum))


def _latency(rng: random.Random) -> tuple[dict[str, Any], tuple]:
    name_s = rng.choice(list(LAYOUTS))
    name_c = name_s if rng.random() < 0.75 else rng.choice(list(LAYOUTS))
    b_s, b_c = LAYOUTS[name_s], LAYOUTS[name_c]
    if rng.random() < 0.1:  # the canary drops a few of the stable's bounds
        b_c = tuple(b for b in b_s if rng.random() < 0.7) or b_s
    n_s, n_c = _sizes(rng)
    median = rng.choice((5.0, 30.0, 50.0, 90.0, 200.0, 2000.0))
    sigma = rng.choice((0.2, 0.5, 1.0))
    slower = rng.choice((0.7, 1.0, 1.0, 1.1, 1.2, 1.3, 1.6, 3.0))
    check: dict[str, Any] = {"kind": "latency", "quantile": rng.choice((0.5, 0.9, 0.95, 0.99))}
    shape = rng.random()
    if shape < 0.6:
        check.update(max_increase_pct=rng.choice((5, 10, 20, 50)), max_ms=rng.choice((20, 100, 250, 4000)))
    elif shape < 0.8:
        check["max_increase_pct"] = rng.choice((0.01, 10, 20))  # 0 is refused (decision 62)
    else:
        check["max_ms"] = rng.choice((1, 60, 250, 4000))
    return check, (_histogram(rng, b_s, n_s, median, sigma), _histogram(rng, b_c, n_c, median * slower, sigma))


def _counts(rng: random.Random, rate: float) -> tuple[Counts, Counts]:
    n_s, n_c = _sizes(rng)
    worse = rng.choice((0.0, 1.0, 1.0, 1.5, 3.0, 10.0))

    def arm(n: int, p: float) -> Counts:
        p = min(p, 1.0)
        events = _draws(rng, n, [p])[0] if n > 30 else float(sum(rng.random() < p for _ in range(n)))
        events = min(events, float(n))
        if rng.random() < 0.1:
            events = float(n)  # every request an error
        if rng.random() < 0.1:
            return Counts(events * 0.987, n * 0.987)  # fractional
        return Counts(float(events), float(n))

    return arm(n_s, rate), arm(n_c, rate * worse)


def _proportion(rng: random.Random, kind: str) -> tuple[dict[str, Any], tuple]:
    check: dict[str, Any] = {"kind": kind}
    shape = rng.random()
    if shape < 0.5:
        check.update(max_increase_points=rng.choice((0.001, 0.5, 1, 2)), max_rate_pct=rng.choice((1, 5, 10)))
    elif shape < 0.75:
        check["max_increase_points"] = rng.choice((0.001, 1, 2))
    else:
        check["max_rate_pct"] = rng.choice((0.001, 2, 10, 100))
    return check, _counts(rng, rng.choice((0.0, 0.001, 0.005, 0.02, 0.2)))


def _cells(rng: random.Random, k: int, n: int, tilt: float) -> list[float]:
    weights = [math.exp(tilt * i / k) * rng.choice((1.0, 1.0, 0.05, 0.0)) for i in range(k)]
    if not any(weights):
        weights[0] = 1.0
    if n <= 50:  # small samples drawn one by one: sparse and empty cells
        counts = [0.0] * k
        for _ in range(n):
            counts[rng.choices(range(k), weights)[0]] += 1.0
        return counts
    return _draws(rng, n, [w / sum(weights) for w in weights])


def _shift(rng: random.Random) -> tuple[dict[str, Any], tuple]:
    k = rng.choice((2, 5, 10, 20))
    bounds = tuple((i + 1) / k for i in range(k - 1))
    n_s, n_c = _sizes(rng)
    tilt = rng.choice((0.0, 0.0, 0.3, 1.0, 3.0))
    per_s, per_c = _cells(rng, k, n_s, 0.0), _cells(rng, k, n_c, tilt)

    def hist(per: list[float]) -> Histogram:
        out, acc = [], 0.0
        for c in per:
            acc += c
            out.append(acc)
        return Histogram((*bounds, INF), tuple(out))

    limits = rng.choice(({"max_psi": 0.2}, {"max_js": 0.1}, {"max_psi": 0.1, "max_js": 0.05},
                         {"max_psi": 0.25, "max_js": 0.2}))
    return {"kind": "prediction_shift", **limits}, (hist(per_s), hist(per_c))


def _features(rng: random.Random) -> tuple[dict[str, Any], tuple]:
    names = [f"f{i}" for i in range(rng.choice((1, 3, 6)))]
    numeric = {f for f in names if rng.random() < 0.5}
    tilt = rng.choice((0.0, 0.0, 0.5, 2.0))

    def arm(n: int, shift: float, drop: str | None, swap: str | None) -> FeatureCounts:
        num, cat, miss = {}, {}, {}
        for f in names:
            if f == drop:
                continue
            per = _cells(rng, 5, n, shift)
            if (f in numeric) != (f == swap):
                out, acc = [], 0.0
                for c in per[:-1]:
                    acc += c
                    out.append(acc)
                num[f] = Histogram((0.1, 0.2, 0.5, 1.0, INF), (*out, acc + per[-1]))
            else:
                cat[f] = {f"c{i}": c for i, c in enumerate(per) if c or rng.random() < 0.5}
            if rng.random() < 0.6:
                miss[f] = float(rng.choice((0, 1, 5, 40)))
        return FeatureCounts(numeric=num, categorical=cat, missing=miss)

    n_s, n_c = _sizes(rng)
    drop = rng.choice(names) if rng.random() < 0.1 else None
    swap = rng.choice(names) if rng.random() < 0.1 else None
    stable = arm(n_s, 0.0, drop if rng.random() < 0.5 else None, None)
    canary = arm(n_c, tilt, drop, swap)
    limits = rng.choice(({"max_psi": 0.2}, {"max_js": 0.1}, {"max_psi": 0.1, "max_js": 0.1}))
    listed = {"features": names} if rng.random() < 0.5 else {}
    return {"kind": "feature_drift", **limits, **listed}, (stable, canary)


def _custom(rng: random.Random) -> tuple[dict[str, Any], tuple]:
    limits = rng.choice(({"max_value": 0.5}, {"max_ratio": 1.2}, {"max_increase": 0.05},
                         {"max_value": 0.9, "max_ratio": 1.1, "higher_is_better": True}))

    def value() -> Scalar:
        v = rng.choice((0.0, 0.3, 0.45, 0.6, 0.95, -1.0, math.nan))
        n = rng.choice((math.nan, 0.0, 50.0, 5000.0))
        return Scalar(v, n)

    return {"kind": "custom", "query": "up{version=\"{version}\"}", **limits}, (value(), value())


MAKERS = {
    "latency": _latency,
    "error_rate": lambda rng: _proportion(rng, "error_rate"),
    "feature_missing": lambda rng: _proportion(rng, "feature_missing"),
    "prediction_shift": _shift,
    "feature_drift": _features,
    "custom": _custom,
}


def _arm_errors(rng: random.Random, m: tuple) -> Any:
    r = rng.random()
    if r < 0.03:
        return MetricsUnavailable("prometheus down") if rng.random() < 0.5 else NoData("no series")
    if r < 0.07:
        return (NoData("no stable series"), m[1])
    if r < 0.09:
        return (MetricsUnavailable("timeout"), m[1])
    if r < 0.1:
        return (m[0], NoData("no canary series"))
    return m


def look(seed: int) -> tuple[Policy, dict[str, Any], dict[str, tuple[float, float]], int]:
    """(policy, measurements, prior, window) of look number `seed`."""
    rng = random.Random(seed)
    kinds = list(MAKERS)
    weights = (6, 2, 1, 2, 1, 1)
    checks, measurements = [], {}
    for i in range(rng.choice((1, 1, 2, 3, 5))):
        kind = rng.choices(kinds, weights)[0]
        check, m = MAKERS[kind](rng)
        name = f"{kind}-{i}"
        checks.append({"name": name, **check, **({"hard": True} if rng.random() < 0.15 else {})})
        if rng.random() > 0.02:  # sometimes a check has no measurement at all
            measurements[name] = _arm_errors(rng, m)
    # Two timings only (the default policy's and a short one): each new one costs its pass boundary
    # (`evidence.pass_level`), seconds of numerical integration, once.
    interval, look_every, deadline = rng.choice((("5m", "30s", "10m"), ("60s", "10s", "2m")))
    policy = parse_policy({
        "steps": rng.choice(([5, 25, 50, 100], [10, 100], [5, 10, 25, 50, 100])),
        "analysis": {"interval": interval, "look_every": look_every,
                     "min_canary_requests": rng.choice((0, 100, 500)), "alpha": rng.choice((0.01, 0.05, 0.001))},
        "failure": {"no_data_deadline": deadline},
        "checks": checks,
    })
    prior: dict[str, tuple[float, float]] = {}
    if rng.random() < 0.4:
        for c in checks:
            for test in ("relative", "ceiling", "increase", "psi", "js", "psi:f0", "js:f1"):
                if rng.random() < 0.5:
                    prior[f"{c['name']}/{test}"] = (rng.uniform(-40, 120), rng.choice((10.0, 300.0, 5000.0)))
    window = rng.choice((0, 0, 0, 1))
    return policy, measurements, prior, window


def verdict_record(policy: Policy, measurements: dict[str, Any], prior: dict, window: int) -> dict[str, Any]:
    """What a look decides, as JSON: the serialised verdict and the window evidence it records."""
    from canary.analysis.judge import judge

    v = judge(policy, measurements, prior=prior, window=window)
    return {"verdict": v.to_dict(), "evidence": {k: list(x) for k, x in sorted(v.window_evidence().items())}}

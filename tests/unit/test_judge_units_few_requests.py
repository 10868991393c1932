"""(A third attacker of decision 81, twentieth session.) Decision 81 (e) refuses a canary 100x faster than
the stable at the median as a unit slip, but only with 100 requests or more in each arm ("a median of a
few requests is noise"). A policy may set `min_canary_requests` below 100, and a look passes a ceiling
as soon as the canary's quantile is shown below it: 30 requests show a p50, 95 a p95. So a canary
exporting seconds (every request at 300-500 ms, read as under 0.5 ms) passed `max_ms: 250`, and a
relative limit too. The guard now asks whether the counts *show* the medians 100x apart (exact bounds
at the pass level), not whether there are 100 of them."""
from __future__ import annotations

import pytest

from canary.analysis import judge as J
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

INF = float("inf")
ISTIO = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, INF)
STABLE = Histogram(ISTIO, (0, 0, 0, 0, 0, 0, 100, 2000, 19000, 19900, 20000, 20000, 20000, 20000))


def _policy(q: float, floor: int, **limits: float):
    return parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": floor},
                         "checks": [{"name": "lat", "kind": "latency", "quantile": q, **limits}]})


@pytest.mark.parametrize(("q", "n", "limits"), [
    (0.5, 30, {"max_ms": 250}),
    (0.5, 30, {"max_ms": 250, "max_increase_pct": 20}),
    (0.95, 99, {"max_ms": 250}),
])
def test_a_slipped_canary_with_fewer_than_100_requests_does_not_pass(q: float, n: int, limits: dict) -> None:
    canary = Histogram(ISTIO, (float(n),) * len(ISTIO))  # every request under 0.5 "ms": seconds, really
    r = J.judge(_policy(q, 20, **limits), {"lat": (STABLE, canary)}).results[0]
    assert r.outcome is Outcome.ERROR and "exporter writing seconds" in r.reason, r.reason


def test_a_few_fast_requests_that_bound_nothing_are_judged() -> None:
    canary = Histogram(ISTIO, (3.0,) * len(ISTIO))  # 3 requests: no median is shown at the pass level
    r = J.judge(_policy(0.5, 0, max_ms=250), {"lat": (STABLE, canary)}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE, r.reason

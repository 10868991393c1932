"""(A third attacker of decision 81, twentieth session.) The unit-slip guards (`_unit_mismatch`, `_unit_slip`)
returned ERROR before any limit was judged. A canary read in the wrong unit reads 1000x *faster*, so a
ceiling breach its own bounds show is real in either unit; the ERROR hid it until the step's deadline,
a hard check included. A cache in front of a model (97% of requests under 1 ms, 3% at 5-10 s) has a
median 200x below the stable's, and its p99 of 8 s against a hard 1,000 ms ceiling was ERROR with the
stable measured where it FAILed at once without it. Now the ceiling's FAIL stands; anything else is
still ERROR (a slip never passes)."""
from __future__ import annotations

import pytest

from canary.analysis import judge as J
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

INF = float("inf")
ISTIO = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, INF)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, INF)
MS = tuple(b * 1000 for b in SECONDS[:-1]) + (INF,)


def _policy(**limits):
    return parse_policy({"steps": [10, 100], "checks": [{"name": "lat", "kind": "latency", "quantile": 0.99,
                                                         "hard": True, **limits}]})


@pytest.mark.parametrize("relative", [False, True])
def test_a_cache_far_faster_at_the_median_still_fails_its_ceiling(relative: bool) -> None:
    stable = Histogram(ISTIO, (0, 0, 0, 0, 0, 0, 1000, 15000, 19900, 20000, 20000, 20000, 20000, 20000))
    canary = Histogram(ISTIO, (1500, 1940, 1940, 1940, 1940, 1940, 1940, 1940, 1940, 1940, 1940, 1940, 2000, 2000))
    limits = {"max_ms": 1000, **({"max_increase_pct": 20} if relative else {})}
    r = J.judge(_policy(**limits), {"lat": (stable, canary)}).results[0]
    assert r.outcome is Outcome.FAIL and r.n_stable == 20000 and "n=2,000/20,000" in r.reason, r.reason


def test_a_stable_in_seconds_does_not_hide_the_canarys_breach() -> None:
    stable = Histogram(SECONDS, (0, 0, 100, 2000, 8000, 9900, 10000, 10000, 10000, 10000, 10000, 10000))
    canary = Histogram(MS, (0, 0, 10, 200, 800, 900, 930, 940, 950, 960, 1000, 1000))  # p99 in (5 s, 10 s]
    r = J.judge(_policy(max_ms=1000), {"lat": (stable, canary)}).results[0]
    assert r.outcome is Outcome.FAIL and "factor of 1000" in r.reason, r.reason


def test_a_slip_within_its_ceiling_is_still_error() -> None:
    stable = Histogram(ISTIO, (0, 0, 0, 0, 0, 0, 1000, 15000, 19900, 20000, 20000, 20000, 20000, 20000))
    canary = Histogram(ISTIO, (2000.0,) * len(ISTIO))
    r = J.judge(_policy(max_ms=1000, max_increase_pct=20), {"lat": (stable, canary)}).results[0]
    assert r.outcome is Outcome.ERROR and "exporter writing seconds" in r.reason, r.reason

"""A canary really 100x faster than stable at the median (a distilled model replacing a large one)
cannot be told from a unit slip by its counts: it is ERROR at every look, and the reason says how
to go on. `same_unit: true` on the check declares both arms in milliseconds: it is then judged as
it reads (decision 84 c's "not changed", given a way forward)."""
from __future__ import annotations

import pytest

from canary.analysis import judge as J
from canary.model import Histogram, Outcome
from canary.errors import ConfigError
from canary.policy import parse_policy

INF = float("inf")
ISTIO = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, INF)
STABLE = Histogram(ISTIO, (0, 0, 0, 0, 0, 0, 100, 2000, 15000, 19900, 20000, 20000, 20000, 20000))  # median ~400 ms
CANARY = Histogram(ISTIO, (0, 1500, 1990, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000))  # median <= 1 ms


def _policy(**extra: object):
    return parse_policy({"steps": [10, 100], "checks": [
        {"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 250, "max_increase_pct": 20, **extra}]})


def test_a_canary_100x_faster_is_an_error_that_names_the_way_forward() -> None:
    r = J.judge(_policy(), {"lat": (STABLE, CANARY)}).results[0]
    assert r.outcome is Outcome.ERROR
    assert "seconds" in r.reason and "same_unit: true" in r.reason and "'lat'" in r.reason


def test_same_unit_judges_it_as_it_reads() -> None:
    r = J.judge(_policy(same_unit=True), {"lat": (STABLE, CANARY)}).results[0]
    assert r.outcome is Outcome.PASS, r.reason
    # and a real breach is still one: the canary's p95 beyond the ceiling
    slow = Histogram(ISTIO, (0, 0, 0, 0, 0, 0, 0, 100, 1000, 2000, 2000, 2000, 2000, 2000))
    r = J.judge(_policy(same_unit=True), {"lat": (STABLE, slow)}).results[0]
    assert r.outcome is Outcome.FAIL, r.reason


def test_same_unit_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="same_unit"):
        _policy(same_unit="yes please")


@pytest.mark.parametrize("stable_n", [3, 7])
def test_a_slip_too_few_stable_requests_can_rule_out_is_never_a_pass(stable_n: int) -> None:
    """With 7 stable requests or fewer the stable's median has no lower bound at the pass level, so the
    guard could not show the medians 100x apart, and a canary exporting seconds (every request read as
    under 1 "ms") passed p95 +20% against a stable at 250-500 ms. Not a pass now (INCONCLUSIVE, the
    reason says why); with 8 the guard decides (ERROR), and `same_unit: true` judges it as it reads."""
    stable = Histogram(ISTIO, tuple(float(0 if b <= 250 else stable_n) for b in ISTIO))
    canary = Histogram(ISTIO, tuple(float(0 if b <= 0.5 else 200) for b in ISTIO))
    pol = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 20}, "checks": [
        {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}]})
    r = J.judge(pol, {"lat": (stable, canary)}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE and "too few to rule out" in r.reason, r.reason
    more = Histogram(ISTIO, tuple(float(0 if b <= 250 else 8) for b in ISTIO))
    assert J.judge(pol, {"lat": (more, canary)}).results[0].outcome is Outcome.ERROR
    declared = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 20}, "checks": [
        {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "same_unit": True}]})
    assert J.judge(declared, {"lat": (stable, canary)}).results[0].outcome is Outcome.PASS

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

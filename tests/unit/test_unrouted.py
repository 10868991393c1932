"""A canary its weight sends requests to that counted none: a hard breach at the look that shows it (decision 110)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from canary.analysis import judge as J
from canary.analysis.unrouted import SETTLE_S, bound, settle_s, unrouted
from canary.errors import MetricsUnavailable, NoData
from canary.model import Counts, Histogram, Outcome
from canary.policy import parse_policy

POLICY = parse_policy({
    "steps": [10, 50, 100], "analysis": {"interval": "5m", "look_every": "30s", "alpha": 0.01},
    "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20},
               {"name": "err", "kind": "error_rate", "max_increase_points": 1},
               {"name": "err-hard", "kind": "error_rate", "max_rate_pct": 10, "hard": True}]})
STABLE_LAT = Histogram((50.0, 100.0, math.inf), (300.0, 600.0, 630.0))
GONE = NoData("no series for the canary arm")


def _typo(stable_n: float = 630.0) -> dict[str, object]:
    """What a look measures with the canary subset on a version no pod has: stable counted, canary no series."""
    lat = Histogram(STABLE_LAT.bounds, tuple(c * stable_n / 630.0 for c in STABLE_LAT.counts))
    return {"lat": (lat, GONE), "err": (Counts(3, stable_n), GONE), "err-hard": (Counts(3, stable_n), GONE)}


def test_the_bound_is_where_poisson_makes_zero_as_likely_as_alpha_over_the_steps() -> None:
    b = bound(POLICY)
    assert st.poisson.pmf(0, b) == pytest.approx(0.01 / 300 / 2)  # alpha/100 for the rollout's 3 steps, half
    # the step's share to its first window: every window a resume opens gets its own, and they sum to it
    shares = [st.poisson.pmf(0, bound(POLICY, w)) for w in range(10_000)]
    assert sum(shares) == pytest.approx(0.01 / 300, rel=1e-3) and sum(shares) <= 0.01 / 300
    assert settle_s(POLICY) == SETTLE_S  # 3 min of the 5 min step
    short = {"steps": [20, 100], "analysis": {"interval": "3s", "look_every": "1s"},
             "checks": [{"name": "lat", "kind": "latency", "max_ms": 100}]}
    assert settle_s(parse_policy({**short, "metrics": {"scrape_interval": "1s"}})) == 3.0  # three scrapes
    assert settle_s(parse_policy(short)) == SETTLE_S  # not capped at the step's interval (decision 113)


def test_no_canary_series_at_10_percent_while_stable_served_hundreds_rolls_back_at_once() -> None:
    v = J.judge(POLICY, _typo(), canary_weight=10, window_s=300.0, canary_version="v2.1")
    assert v.outcome is Outcome.FAIL and v.hard_breach
    assert {r.check for r in v.failed} == {"lat", "err", "err-hard"}
    line = v.reason()  # one line, all three checks named together
    assert line.startswith("lat, err, err-hard: the canary got no requests at 10% while stable got 630 over the "
                           "last 300s")
    assert "do pods labelled version=v2.1 exist" in line and "about 28 expected in its first 120s" in line
    r = v.failed[0]
    assert r.n_canary == 0 and r.n_stable == 630 and r.extra["unrouted"]["was"] == "error"


def test_without_the_windows_seconds_it_stays_could_not_measure() -> None:
    """Without the window's seconds (as `canary serve` calls it) nothing changes: errors, no breach."""
    v = J.judge(POLICY, _typo(), canary_weight=10)
    assert v.outcome is Outcome.ERROR and not v.hard_breach
    assert "could not measure canary" in v.reason()


@pytest.mark.parametrize("why,measurements,weight,window_s", [
    ("too early: a new series needs scrapes", _typo(), 10, SETTLE_S - 1),
    ("no canary weight", _typo(), 0, 300.0),
    ("weight not known", _typo(), None, 300.0),
    ("stable too quiet to be sure: 80 x 10/90 x 120/300 = 3.6 < ln(30000) = 10.3", _typo(80.0), 10, 300.0),
    ("the canary served in one check", {**_typo(), "err": (Counts(3, 630), Counts(0, 5))}, 10, 300.0),
    ("the canary arm could not be asked", {**_typo(), "lat": (STABLE_LAT, MetricsUnavailable("timeout")),
                                           "err": MetricsUnavailable("t"), "err-hard": MetricsUnavailable("t")},
     10, 300.0),
    ("neither arm has data (the preflight's case)", {"lat": GONE, "err": GONE, "err-hard": GONE}, 10, 300.0),
])
def test_no_breach_when_zero_is_not_beyond_doubt(why: str, measurements: dict[str, object], weight: int | None,
                                                  window_s: float) -> None:
    empty, reason = unrouted(POLICY, measurements, weight=weight, window_s=window_s)
    assert empty == {} and reason == "", why
    assert not J.judge(POLICY, measurements, canary_weight=weight, window_s=window_s).hard_breach, why


def test_a_counter_that_exists_at_zero_is_as_empty_as_no_series() -> None:
    m = {**_typo(), "err": (Counts(3, 630), Counts(0, 0))}
    empty, reason = unrouted(POLICY, m, weight=10, window_s=300.0)
    assert set(empty) == {"lat", "err", "err-hard"} and "pods of the canary version" in reason


def test_a_resumed_window_spends_its_own_share_not_the_steps_again() -> None:
    """Decision 113: each resume opens a window whose looks are not nested in the earlier ones'; with one
    share per step, a step resumed k times had k+1 chances of a false unrouted breach."""
    m = _typo(250.0)  # 250 x 10/90 x 120/300 = 11.1 expected: past the first window's bound (11.0)
    assert J.judge(POLICY, m, canary_weight=10, window_s=300.0, window=0).hard_breach
    assert not J.judge(POLICY, m, canary_weight=10, window_s=300.0, window=1).hard_breach  # bound 12.1

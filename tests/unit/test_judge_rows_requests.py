"""`min_canary_requests` counts requests, never prediction or feature rows.

A prediction histogram counts one observation per output row (4 per request in the sandbox, 100 for a
batched model), and the judge compared its total with `analysis.min_canary_requests`: a relative,
non-hard predictions check with min 200 rolled back at 64 canary requests (`n=222/2,740`). The
measurement now carries the arm's request count (`Histogram.requests`, `FeatureCounts.requests`), the
floor is compared with it, and the reason says which count is which.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from canary.analysis.judge import judge, judge_check
from canary.errors import ConfigError
from canary.metrics import batch as b
from canary.metrics.query_plan import query_plan
from canary.model import FeatureCounts, Histogram, Outcome, Target
from canary.offline import load_exported
from canary.policy import parse_policy

POLICY = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 200},
                       "checks": [{"name": "p", "kind": "prediction_shift", "max_psi": 0.1}]})
CHECK = POLICY.checks[0]
BOUNDS = (0.25, 0.5, 0.75, math.inf)
STABLE = Histogram(BOUNDS, (700.0, 1400.0, 2100.0, 2800.0), requests=700.0)
SHIFTED = (20.0, 40.0, 60.0, 256.0)  # 256 rows, most above 0.75: a large shift


def _judge(canary: Histogram) -> object:
    return judge_check(CHECK, STABLE, canary, alpha=0.01, min_canary=200)


def test_the_floor_is_compared_with_requests_not_rows() -> None:
    r = _judge(Histogram(BOUNDS, SHIFTED, requests=64.0))  # 256 rows >= 200, but 64 requests < 200
    assert r.outcome is Outcome.INCONCLUSIVE, r.reason  # relative, not hard: no FAIL below the floor
    assert "canary 64 requests (256 predictions) below min 200" in r.reason
    assert "n=256/2,800 predictions, from 64/700 requests" in r.reason
    assert (r.extra["requests_canary"], r.extra["requests_stable"]) == (64.0, 700.0)
    assert r.n_canary == 256  # the statistic's sample size stays the rows


def test_enough_requests_let_the_shift_fail() -> None:
    r = _judge(Histogram(BOUNDS, SHIFTED, requests=250.0))
    assert r.outcome is Outcome.FAIL, r.reason
    assert "from 250/700 requests" in r.reason


def test_requests_that_answered_nothing_do_not_meet_the_floor() -> None:
    # 5,000 requests, most of them failed: 150 predictions, as good as the stable's, below min 200
    same = (37.5, 75.0, 112.5, 150.0)
    assert _judge(Histogram(BOUNDS, tuple(x * 2 for x in same), requests=5000.0)).outcome is Outcome.PASS
    r = _judge(Histogram(BOUNDS, same, requests=5000.0))
    assert r.outcome is Outcome.INCONCLUSIVE, r.reason
    assert "canary 150 predictions (fewer than its 5,000 requests) below min 200" in r.reason


def test_without_a_request_count_the_reason_says_it_counted_rows() -> None:
    r = _judge(Histogram(BOUNDS, SHIFTED))
    assert r.outcome is Outcome.FAIL  # rows (256) above the floor: what the judge did before
    assert "n=256/2,800 predictions (no request counts)" in r.reason


def test_feature_drift_floor_counts_requests() -> None:
    pol = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 200},
                        "checks": [{"name": "d", "kind": "feature_drift", "max_psi": 0.1, "features": ["x"]}]})
    s = FeatureCounts(categorical={"x": {"a": 900.0, "b": 900.0}}, requests=900.0)
    c = FeatureCounts(categorical={"x": {"a": 250.0, "b": 10.0}}, requests=13.0)  # 20 rows per request
    r = judge(pol, {"d": (s, c)}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE and "canary 13 requests (260 rows) below min 200" in r.reason, r.reason
    assert "from 13/900 requests" in r.reason


def test_the_live_paths_carry_the_request_count() -> None:
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
    plan = query_plan(POLICY, CHECK, target, window_s=60)
    assert "model_requests_total" in plan["canary"]["requests"] and "histogram" in plan["canary"]
    from tests.unit.test_batch import both, snap  # the batched snapshot's fixtures

    base = snap(both(lat=[1, 3, 4], ok=10, err=1), POLICY, at=100)
    now = snap(both(lat=[3, 9, 14], ok=30, err=4), POLICY, at=160)
    s, c = b.measure_delta(POLICY, CHECK, target, now, base)
    assert isinstance(s, Histogram) and isinstance(c, Histogram)
    assert (s.requests, c.requests) == (23, 43)  # the arm's requests over the window, beside its rows


def test_exported_arms_may_carry_requests(tmp_path: Path) -> None:
    arm = {"bounds": [0.25, 0.5, 0.75, "+Inf"], "counts": list(SHIFTED), "requests": 64}
    doc = {"policy": POLICY.model_dump(mode="json", exclude_none=True),
           "checks": {"p": {"stable": {"bounds": [0.25, 0.5, 0.75, "+Inf"], "counts": [700, 1400, 2100, 2800],
                                       "requests": 700}, "canary": arm}}}
    path = tmp_path / "look.json"
    path.write_text(json.dumps(doc))
    data = load_exported(path)
    assert data.measurements["p"][1].requests == 64  # type: ignore[index,union-attr]
    lat = {"policy": {"steps": [10, 100], "checks": [{"name": "l", "kind": "latency", "max_ms": 5}]},
           "checks": {"l": {"stable": {"bounds": [1, "+Inf"], "counts": [1, 2]},
                            "canary": {"bounds": [1, "+Inf"], "counts": [1, 2], "requests": 2}}}}
    path.write_text(json.dumps(lat))
    with pytest.raises(ConfigError, match=r"checks\.l\.canary\.requests: a latency check counts requests itself"):
        load_exported(path)

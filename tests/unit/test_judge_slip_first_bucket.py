"""A unit slip behind a stable median bucket that bounds nothing below (docs/decisions.md 534).

`_unit_slip` read a canary far faster than stable as one exporter writing seconds only against a lower
bound on the stable's median (exact, or the lower edge of its median bucket). A stable whose median is
in its first bucket, (0, b0], has none (0), and one in a wide bucket, (1, 100], only a weak one. A
canary exporting seconds on a layout of its own (no x1000 match for `_unit_mismatch`) then passed a
250 ms ceiling with a p95 of 549 ms read as "0.58 ms" (a relative limit there was already
INCONCLUSIVE: buckets too coarse). Now a canary whose median is bounded FAR_FASTER times below the top
of the stable's median bucket, open to 0 or on another layout, is not a pass (it may still fail);
`same_unit: true` says both arms export milliseconds. Each test fails without the change.
"""
from __future__ import annotations

import json

import pytest

from tests.unit.test_judge_input_edges import _cli

INF = "+Inf"
STABLE_MS = {"bounds": [50, 100, 250, 500, 1000, INF], "counts": [6000, 9000, 9900, 10000, 10000, 10000]}
# the canary's p95 is 549 ms, exported in seconds on a layout of its own
CANARY_S = {"bounds": [0.2, 0.4, 0.6, 1000, INF], "counts": [100, 500, 1000, 1000, 1000]}


def _run(tmp_path, check: dict, stable: dict, canary: dict) -> tuple[int, dict]:
    raw = {"policy": {"steps": [10, 100], "checks": [{"name": "lat", "kind": "latency", **check}]},
           "checks": {"lat": {"stable": stable, "canary": canary}}}
    code, out = _cli(tmp_path, raw, "json")
    return code, json.loads(out)["results"][0]


@pytest.mark.parametrize("check", [
    {"quantile": 0.95, "max_ms": 250},
    {"quantile": 0.5, "max_ms": 100},
    {"quantile": 0.99, "max_ms": 1000},
])
def test_a_canary_in_seconds_is_not_passed_behind_a_stable_median_in_its_first_bucket(tmp_path, check) -> None:
    code, r = _run(tmp_path, check, STABLE_MS, CANARY_S)
    assert code == 4 and r["outcome"] == "inconclusive", r["reason"]
    assert "same_unit: true" in r["reason"], r["reason"]


def test_a_canary_at_a_zero_bound_is_not_passed_behind_a_stable_median_above_an_empty_zero_bucket(tmp_path) -> None:
    """`le="0"` empty in the stable: its median bucket (0, 50] has lower edge 0 as well; the canary's
    every request at 0 ms (docs/judge.md: a unit slip like any canary 10x faster) passed a 250 ms ceiling."""
    stable = {"bounds": [0, 50, 100, INF], "counts": [0, 9000, 9900, 10000]}
    canary = {"bounds": [0, 50, 100, INF], "counts": [1000, 1000, 1000, 1000]}
    code, r = _run(tmp_path, {"quantile": 0.95, "max_ms": 250}, stable, canary)
    assert code == 4 and r["outcome"] == "inconclusive", r["reason"]
    assert "same_unit: true" in r["reason"], r["reason"]


def test_a_canary_in_seconds_is_not_passed_behind_a_wide_stable_median_bucket(tmp_path) -> None:
    """The stable's median in (1, 100] ms has the exact lower bound 1 ms; the canary's in seconds on
    `0.3, 0.5, 0.7, 1` (p95 850 ms) is at most 0.7 "ms", not 10x below 1: it passed a 250 ms ceiling."""
    stable = {"bounds": [1, 100, 250, 1000, INF], "counts": [0, 6000, 9900, 10000, 10000]}
    canary = {"bounds": [0.3, 0.5, 0.7, 1, INF], "counts": [0, 100, 900, 1000, 1000]}
    code, r = _run(tmp_path, {"quantile": 0.95, "max_ms": 250}, stable, canary)
    assert code == 4 and r["outcome"] == "inconclusive", r["reason"]
    assert "same_unit: true" in r["reason"], r["reason"]


def test_same_unit_lets_a_canary_that_fast_pass(tmp_path, capsys) -> None:
    code, r = _run(tmp_path, {"quantile": 0.95, "max_ms": 250, "same_unit": True}, STABLE_MS, CANARY_S)
    assert code == 0 and r["outcome"] == "pass", r["reason"]


def test_one_layout_with_the_stable_median_in_its_first_bucket_still_passes(tmp_path, capsys) -> None:
    canary = {"bounds": STABLE_MS["bounds"], "counts": [700, 950, 990, 1000, 1000, 1000]}
    code, r = _run(tmp_path, {"quantile": 0.95, "max_ms": 250}, STABLE_MS, canary)
    assert code == 0 and r["outcome"] == "pass", r["reason"]

"""A result's threshold carries its unit, which changes with the sub-test that decided.

`threshold` 50.0 beside a canary_value of 48.01 ms meant +50%; a ceiling's threshold 100 meant 100 ms;
nothing said which. `CheckResult.threshold_unit` and `value_unit` say it (the result's existing JSON keys
are unchanged), each sub-test's evidence names its bound's unit, and the judge and status tables print
the unit beside the number.
"""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from canary.analysis.judge import judge
from canary.cli_analysis import render_verdict
from canary.display import evidence_table
from canary.history import check_record
from canary.model import CheckResult, Counts, Histogram, Scalar, with_unit
from canary.policy import parse_policy

B = (50.0, 100.0, 200.0, 400.0, math.inf)
STABLE = Histogram(B, (100, 200, 9000, 10000, 10000))
SLOW = Histogram(B, (10, 20, 900, 1000, 1000))
SHIFT_B = (0.25, 0.5, 0.75, math.inf)


def _judge(check: dict, m: tuple) -> CheckResult:
    pol = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 0}, "checks": [{"name": "c", **check}]})
    return judge(pol, {"c": m}).results[0]


@pytest.mark.parametrize(("check", "m", "unit", "value_unit"), [
    ({"kind": "latency", "max_increase_pct": 20, "max_ms": 100}, (STABLE, SLOW), "ms", "ms"),  # the ceiling decided
    ({"kind": "latency", "max_increase_pct": 20}, (STABLE, SLOW), "+%", "ms"),
    ({"kind": "error_rate", "max_increase_points": 1}, (Counts(10, 10000), Counts(500, 10000)), "points", "%"),
    ({"kind": "error_rate", "max_rate_pct": 1}, (Counts(10, 10000), Counts(500, 10000)), "%", "%"),
    ({"kind": "prediction_shift", "max_js": 0.1},
     (Histogram(SHIFT_B, (250, 500, 750, 1000)), Histogram(SHIFT_B, (10, 20, 30, 1000))), "js", ""),
    ({"kind": "custom", "query": 'x{v="{version}"}', "max_ratio": 1.2}, (Scalar(1.0, 100), Scalar(2.0, 100)), "ratio", ""),
    ({"kind": "custom", "query": "x", "max_value": 5}, (Scalar(1.0, 100), Scalar(7.0, 100)), "", ""),
])
def test_each_result_names_its_threshold_unit(check: dict, m: tuple, unit: str, value_unit: str) -> None:
    r = _judge(check, m)
    assert (r.threshold_unit, r.value_unit) == (unit, value_unit), r.reason
    d = r.to_dict()
    assert {"threshold", "stable_value", "canary_value", "effect_size"} <= set(d)  # existing keys kept
    assert (d["threshold_unit"], d["value_unit"]) == (unit, value_unit)


def test_each_sub_test_names_its_bound_unit() -> None:
    r = _judge({"kind": "latency", "max_increase_pct": 20, "max_ms": 100}, (STABLE, SLOW))
    assert {t["test"]: t["bound_unit"] for t in r.extra["tests"]} == {"relative": "fraction", "ceiling": "ms"}


def test_tables_print_the_unit() -> None:
    out = io.StringIO()
    r = _judge({"kind": "latency", "max_increase_pct": 20, "max_ms": 100}, (STABLE, SLOW))
    from canary.model import Verdict

    render_verdict(Verdict.combine([r]), Console(file=out, width=200))
    assert "100 ms" in out.getvalue() and "300 ms" in out.getvalue()
    out = io.StringIO()
    rel = _judge({"kind": "latency", "max_increase_pct": 20}, (STABLE, SLOW)).to_dict()
    Console(file=out, width=250).print(evidence_table([rel, {"check": "old", "threshold": 50.0}]))
    text = out.getvalue()
    assert "+20%" in text and "50" in text  # a state recorded before units: the bare number
    assert check_record(rel)["u"] == "+%"


@pytest.mark.parametrize(("value", "unit", "text"), [
    (100.0, "ms", "100 ms"), (1.0, "%", "1%"), (50.0, "+%", "+50%"), (1.0, "points", "+1 points"),
    (-5.0, "+%", "-5%"), (-0.5, "points", "-0.5 points"), (0.1, "psi", "PSI 0.1"), (1.2, "ratio", "x1.2"), (3.0, "", "3"), (None, "ms", "-"), (math.nan, "ms", "-"),
])
def test_with_unit(value: float | None, unit: str, text: str) -> None:
    assert with_unit(value, unit) == text

"""Numbers in `canary judge`'s reasons, errors and table are readable: a few significant digits, never
hundreds (docs/decisions.md 342).

A canary on bounds of 1e-297 ms against a stable at 100 ms (a unit slip gone absurd) printed its "1000...0x
faster" with 300 digits; a relative increase of 1e+302% printed all 303 of its digits (`beside`'s fixed
decimals), and so did a request count of 1e300 from Prometheus in a reason (`n=…/1,000,…,160 requests`), in
the table's `n` columns and in the unrouted-canary reason. Each test fails without the fix.
"""

from __future__ import annotations

import io
import json
import math
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from canary.analysis import unrouted
from canary.analysis.judge import judge
from canary.analysis.shown import beside, whole
from canary.cli_analysis import render_verdict
from canary.errors import NoData
from canary.model import Counts, FeatureCounts, Histogram, Scalar
from canary.policy import parse_policy
from tests.unit.test_plan_offline import _app

LONG = re.compile(r"\d[\d,]{19,}")  # 20 digits and separators or more: 999,999,999,999,999 is 19


def _policy(check: dict, **analysis) -> dict:
    return {"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m", **analysis},
            "checks": [{"name": "c", **check}]}


def _cli(tmp_path, raw: dict) -> list[tuple[int, str]]:
    f = tmp_path / "in.json"
    f.write_text(json.dumps(raw))
    out = []
    for output in ("wide", "json"):
        res = CliRunner().invoke(_app(), ["judge", "--input", str(f), "--output", output])
        out.append((res.exit_code, res.output))
    return out


LAT = {"kind": "latency", "quantile": 0.95, "max_increase_pct": 20}


@pytest.mark.parametrize("check, stable, canary, says", [
    # a unit slip past any unit: the canary's median <= 1e-297 ms, the stable's >= 100 ms
    ({**LAT, "max_ms": 250}, {"bounds": [100, 200, "+Inf"], "counts": [0, 1000, 1000]},
     {"bounds": [1e-297, 1e-296, "+Inf"], "counts": [1000, 1000, 1000]}, "1e+299x faster"),
    # a canary 1e300 times slower on one layout: the increase, the bounds test's "at least", the evidence
    (LAT, {"bounds": [1, 1e300, "+Inf"], "counts": [1000, 1000, 1000]},
     {"bounds": [1, 1e300, "+Inf"], "counts": [0, 1000, 1000]}, "%"),
    (LAT, {"bounds": [1e-300, 1, "+Inf"], "counts": [1000, 1000, 1000]},
     {"bounds": [1e-300, 1, "+Inf"], "counts": [0, 1000, 1000]}, "%"),
    ({**LAT, "max_increase_pct": 1e300}, {"bounds": [1e-300, 1, "+Inf"], "counts": [1000, 1000, 1000]},
     {"bounds": [1e-300, 1, "+Inf"], "counts": [0, 1000, 1000]}, "limit +1e+300%"),
])
def test_a_judge_input_of_absurd_magnitudes_prints_readable_numbers(tmp_path, check: dict, stable: dict,
                                                                    canary: dict, says: str) -> None:
    raw = {"policy": _policy(check), "checks": {"c": {"stable": stable, "canary": canary}}}
    for rc, out in _cli(tmp_path, raw):
        assert rc in (1, 4), out
        assert not LONG.search(out), LONG.search(out).group(0)[:60] + "... in " + out[-400:]
        assert says in out, out


def _text(v) -> str:
    buf = io.StringIO()
    render_verdict(v, Console(file=buf, width=300, color_system=None), wide=True)
    return buf.getvalue() + json.dumps(v.to_dict())


def test_counts_from_prometheus_beyond_any_file_print_readably() -> None:
    """What a file now refuses (decision 341) can still come from Prometheus: a custom check's `n` (any
    PromQL), a prediction histogram's `requests`, a feature's counts. Reasons and table print 1e+300."""
    big = 1e300
    pol = parse_policy(_policy({"kind": "custom", "query": 'q{version="{version}"}', "max_value": 10}))
    v = judge(pol, {"c": (Scalar(1.0, big), Scalar(1.1, big))})
    assert "1e+300" in _text(v) and not LONG.search(_text(v)), _text(v)
    pol = parse_policy(_policy({"kind": "prediction_shift", "max_psi": 0.2}))
    b = (0.1, 0.5, math.inf)
    v = judge(pol, {"c": (Histogram(b, (1000.0, 5000.0, 10000.0), requests=big),
                          Histogram(b, (100.0, 500.0, 1000.0), requests=1000.0))})
    assert "1e+300 requests" in v.results[0].reason and not LONG.search(_text(v)), _text(v)
    pol = parse_policy(_policy({"kind": "feature_drift", "max_psi": 0.2}))
    arm = FeatureCounts(categorical={"g": {"a": big, "b": big}})
    v = judge(pol, {"c": (arm, FeatureCounts(categorical={"g": {"a": 500.0, "b": 500.0}}))})
    assert "2e+300" in _text(v) and not LONG.search(_text(v)), _text(v)


def test_the_unrouted_canary_reason_prints_a_huge_stable_count_readably() -> None:
    pol = parse_policy(_policy({"kind": "error_rate", "max_rate_pct": 10}))
    _, why = unrouted.unrouted(pol, {"c": (Counts(0.0, 1e300), NoData("no canary series"))}, weight=10,
                               window_s=3600.0)
    assert why and "1e+300" in why and not LONG.search(why), why


@pytest.mark.parametrize("x, text", [(0.0, "0"), (65.3625, "65"), (1234567.0, "1,234,567"),
                                     (999_999_999_999_999.0, "999,999,999,999,999"), (1e15, "1e+15"),
                                     (2.0 ** 53, "9.007e+15"), (1e300, "1e+300"), (math.inf, "inf"),
                                     (math.nan, "?")])
def test_whole_prints_a_count_with_its_digits_or_four_significant_ones(x: float, text: str) -> None:
    assert whole(x) == text


def test_beside_in_fixed_decimals_keeps_to_significant_digits_at_huge_magnitudes() -> None:
    assert beside(1e302, 20, 0, fixed=True, sign=True) == "+1e+302"
    assert beside(20.4, 20, 0, fixed=True, sign=True) == "+20.4"  # unchanged where decimals are readable
    assert beside(123456.7, 20, 0, fixed=True) == "123457"
    x = 1e16 + 2.0  # the digits that put it beside its limit are kept
    assert float(beside(x, 1e16, 0, fixed=True)) > 1e16


@pytest.mark.parametrize("key", ["look", "window", "step", "canary_weight", "pass_ratio"])
@pytest.mark.parametrize("raw", ["1" + "0" * 400, "1" + "0" * 19, "1e15", "1e309", "-1e300"])
def test_a_bad_top_level_number_is_named_in_a_few_digits(tmp_path, key: str, raw: str) -> None:
    """`got 1000000000000000000000000000000000000000` (the first 40 characters of the JSON text) is now
    `got 1e+400 (401 digits)`: the value's magnitude, not its digits."""
    if key == "pass_ratio" and raw in ("1" + "0" * 19, "1e15"):
        return  # a ratio >= 1: judged
    text = json.dumps({"policy": _policy(LAT), key: "@@X@@", "checks": {"c": {
        "stable": {"bounds": [100, 300, "+Inf"], "counts": [9, 10, 10]},
        "canary": {"bounds": [100, 300, "+Inf"], "counts": [900, 1000, 1000]}}}}).replace('"@@X@@"', raw)
    f = tmp_path / "in.json"
    f.write_text(text)
    res = CliRunner().invoke(_app(), ["judge", "--input", str(f)])
    assert res.exit_code == 2 and f": {key}: " in res.output, res.output
    assert not re.search(r"\d{16,}", res.output), res.output


@pytest.mark.parametrize("key", ["c/relative", "c/ceiling.exact"])
def test_an_overflowing_prior_number_is_out_of_range_by_its_index(tmp_path, key: str) -> None:
    f = tmp_path / "in.json"
    f.write_text(json.dumps({"policy": _policy({**LAT, "max_ms": 250}), "step": 1, "prior": {key: "@@X@@"},
                             "checks": {"c": {"stable": {"bounds": [100, 300, "+Inf"], "counts": [9, 10, 10]},
                                              "canary": {"bounds": [100, 300, "+Inf"], "counts": [9, 10, 10]}}}}
                            ).replace('"@@X@@"', "[1, 1e309]"))
    res = CliRunner().invoke(_app(), ["judge", "--input", str(f)])
    assert res.exit_code == 2 and f"prior.{key}[1]: out of range: 1e309" in res.output, res.output

"""`canary judge --input`: every count and bound of an arm is checked where it is read, and a bad one is
exit 2 naming its field with its index (`checks.lat.canary.counts[3]`) (docs/decisions.md 341).

A bucket count of 2^53 or more (no longer an exact integer in floats) was judged an ERROR, exit 4
("count 9.0072e+15 is not a request count"), as a measurement from Prometheus is; in a file it is bad input.
A `requests`, a feature count or a custom check's `n` of 1e300 was accepted and printed with 301 digits.
Unsorted bounds, decreasing counts and a bound of 1e309 (a float overflow, read as +Inf) named the arm but
not the element, or an `inf` the input never wrote.
"""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from tests.unit.test_plan_offline import _app

B = [50, 100, 150, 200, 300, "+Inf"]


def _policy(check: dict) -> dict:
    return {"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m", "min_canary_requests": 100},
            "checks": [{"name": "c", **check}]}


ARMS = {
    "latency": (_policy({"kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 250}),
                {"stable": {"bounds": list(B), "counts": [4000, 8000, 9300, 9800, 9900, 10000]},
                 "canary": {"bounds": list(B), "counts": [400, 800, 930, 980, 990, 1000]}}),
    "error_rate": (_policy({"kind": "error_rate", "max_increase_points": 1, "max_rate_pct": 10}),
                   {"stable": {"events": 50, "total": 10000}, "canary": {"events": 5, "total": 1000}}),
    "prediction_shift": (_policy({"kind": "prediction_shift", "max_psi": 0.2}),
                         {"stable": {"bounds": [0.1, 0.5, "+Inf"], "counts": [1000, 5000, 10000], "requests": 10000},
                          "canary": {"bounds": [0.1, 0.5, "+Inf"], "counts": [100, 500, 1000], "requests": 1000}}),
    "feature_drift": (_policy({"kind": "feature_drift", "max_psi": 0.2}),
                      {"stable": {"numeric": {"f": {"bounds": [0, 1, "+Inf"], "counts": [3000, 7000, 10000]}},
                                  "categorical": {"g": {"a": 5000, "b": 5000}}, "missing": {"f": 10},
                                  "requests": 10000},
                       "canary": {"numeric": {"f": {"bounds": [0, 1, "+Inf"], "counts": [300, 700, 1000]}},
                                  "categorical": {"g": {"a": 500, "b": 500}}, "missing": {"f": 1}, "requests": 1000}}),
    "custom": (_policy({"kind": "custom", "query": 'q{version="{version}"}', "max_value": 10}),
               {"stable": {"value": 1.0, "n": 10000}, "canary": {"value": 1.1, "n": 1000}}),
}


def _run(tmp_path, kind: str, path: tuple, raw: str) -> tuple[int, str]:
    """`canary judge` on the kind's good input with the JSON text `raw` at `path` of its arms."""
    policy, arms = ARMS[kind]
    arms = copy.deepcopy(arms)
    at = arms
    for p in path[:-1]:
        at = at[p]
    at[path[-1]] = "@@X@@"
    text = json.dumps({"policy": policy, "checks": {"c": arms}}).replace('"@@X@@"', raw)
    f = tmp_path / "in.json"
    f.write_text(text)
    res = CliRunner().invoke(_app(), ["judge", "--input", str(f), "--output", "json"])
    return res.exit_code, res.output


def _field(path: tuple) -> str:
    out = "checks.c"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


COUNTS = [("latency", ("canary", "counts", 5)), ("latency", ("stable", "counts", 5)),
          ("error_rate", ("canary", "total")), ("error_rate", ("stable", "total")),
          ("prediction_shift", ("canary", "counts", 2)), ("prediction_shift", ("canary", "requests")),
          ("feature_drift", ("canary", "numeric", "f", "counts", 2)), ("feature_drift", ("stable", "requests")),
          ("feature_drift", ("canary", "categorical", "g", "a")), ("feature_drift", ("canary", "missing", "f")),
          ("custom", ("canary", "n")), ("custom", ("stable", "n"))]


@pytest.mark.parametrize("kind, path", COUNTS)
@pytest.mark.parametrize("raw", ["9007199254740992", "1e16", "1e300"])
def test_a_count_of_2_to_the_53_or_more_is_bad_input_naming_its_field(tmp_path, kind: str, path: tuple,
                                                                      raw: str) -> None:
    rc, out = _run(tmp_path, kind, path, raw)
    assert rc == 2, out
    assert f"{_field(path)}: " in out, out
    assert "2^53" in out and len(out) < 400, out


@pytest.mark.parametrize("kind, path", COUNTS)
def test_a_count_just_below_2_to_the_53_is_judged(tmp_path, kind: str, path: tuple) -> None:
    """The largest exact integer is a count; the outcome may be anything but a bad-input exit."""
    rc, out = _run(tmp_path, kind, path, "9007199254740991")
    assert rc in (0, 1, 4), out
    assert json.loads(out)["results"][0]["outcome"]


@pytest.mark.parametrize("raw, shown", [("true", "got true"), ("null", "got null"), ('"12"', 'got "12"'),
                                        ("[1, 2]", "got [1, 2]")])
def test_a_value_that_is_not_a_number_is_shown_as_the_json_wrote_it(tmp_path, raw: str, shown: str) -> None:
    """`"total": true` was refused as "got 'True'", a Python repr a JSON writer never wrote (and `null` as
    'None'): the error shows the value as the file has it."""
    rc, out = _run(tmp_path, "error_rate", ("canary", "total"), raw)
    assert rc == 2 and f"checks.c.canary.total: must be a number, {shown}" in out, out


@pytest.mark.parametrize("kind, path, raw, says", [
    ("latency", ("canary", "counts", 3), "-5", "a count must be >= 0, got -5"),
    ("latency", ("canary", "counts", 0), "-1", "a count must be >= 0, got -1"),
    ("latency", ("canary", "counts", 3), "10", "10 after 930: bucket counts are cumulative"),
    ("latency", ("canary", "counts", 3), "2.5", "2.5 after 930"),
    ("latency", ("canary", "counts", 3), "true", "must be a number, got true"),
    ("latency", ("canary", "counts", 3), '"NaN"', "must be a number, got \"NaN\""),
    ("latency", ("canary", "counts", 3), "NaN", "must be a finite number, got nan"),
    ("latency", ("canary", "counts", 3), '"+Inf"', "must be a number, got \"+Inf\""),
    ("latency", ("canary", "counts", 3), "1e309", "out of range: 1e309 is beyond a 64-bit float"),
    ("latency", ("canary", "bounds", 2), "20", "20 after 100: bucket bounds increase strictly"),
    ("latency", ("canary", "bounds", 2), "100", "100 after 100: bucket bounds increase strictly"),
    ("latency", ("canary", "bounds", 2), "99.99999999999999", "99.99999999999999 after 100"),
    ("latency", ("canary", "bounds", 2), '"+Inf"', "+Inf before the last bound"),
    ("latency", ("canary", "bounds", 5), "1e309", "out of range: 1e309 is beyond a 64-bit float"),
    ("latency", ("canary", "bounds", 4), "1e309", "out of range: 1e309 is beyond a 64-bit float"),
    ("latency", ("canary", "bounds", 5), "1000", 'the last bound must be "+Inf"'),
    ("latency", ("canary", "bounds", 2), '"NaN"', "must be a number, got \"NaN\""),
    ("latency", ("canary", "bounds", 2), "false", "must be a number, got false"),
    ("error_rate", ("canary", "events"), "5000", "5,000 events exceed the total, 1,000"),
    ("error_rate", ("canary", "events"), "-1", "a count must be >= 0, got -1"),
    ("error_rate", ("canary", "total"), "true", "must be a number, got true"),
    ("feature_drift", ("canary", "numeric", "f", "counts", 1), "1", "1 after 300: bucket counts are cumulative"),
    ("feature_drift", ("canary", "numeric", "f", "bounds", 1), "-1", "-1 after 0: bucket bounds increase strictly"),
    ("feature_drift", ("canary", "categorical", "g", "a"), "-2", "a count must be >= 0, got -2"),
    ("custom", ("canary", "n"), "-3", "must be a request count >= 0, got -3"),
])
def test_a_bad_count_or_bound_is_exit_2_naming_its_element(tmp_path, kind: str, path: tuple, raw: str,
                                                           says: str) -> None:
    rc, out = _run(tmp_path, kind, path, raw)
    assert rc == 2, out
    assert f"{_field(path)}: " in out and says in out, out


def test_the_counts_and_bounds_must_pair_up(tmp_path) -> None:
    rc, out = _run(tmp_path, "latency", ("canary", "counts"), "[400, 800, 930, 980, 1000]")
    assert rc == 2 and "checks.c.canary.counts: 5 counts for 6 bounds" in out, out
    rc, out = _run(tmp_path, "latency", ("canary",), '{"bounds": [], "counts": []}')
    assert rc == 2 and "checks.c.canary.bounds: " in out, out


@pytest.mark.parametrize("raw", ["980.5", "930.25"])
def test_a_fractional_count_is_judged(tmp_path, raw: str) -> None:
    """Prometheus' increase() extrapolates (65.3625 requests): a fractional cumulative count is a count."""
    rc, out = _run(tmp_path, "latency", ("canary", "counts", 3), raw)
    assert rc in (0, 1, 4) and json.loads(out)["results"][0]["outcome"] != "error", out

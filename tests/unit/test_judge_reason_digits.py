"""Every number a reason prints beside a limit shows which side of the limit it is on.

`errors 2.04% vs 1% (+1 points, limit +1)` was a FAIL: the increase (1.04 points) was rounded to two
digits, onto its limit. A FAIL's printed value is never at or below its limit, a PASS's never beyond
it, for every check kind (`analysis.shown.beside`).
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

from canary.analysis.judge import judge, judge_check
from canary.analysis.shown import beside
from canary.model import Counts, Histogram, Outcome, Scalar
from canary.policy import parse_policy

sys.path.insert(0, str(Path(__file__).parent))
import judge_corpus as corpus  # noqa: E402


@pytest.mark.parametrize(("x", "limit", "kw", "text"), [
    (1.044, 1.0, {"digits": 2, "sign": True}, "+1.04"),
    (1.3, 1.0, {"digits": 2}, "1.3"),  # the usual digits where they show the side
    (0.996, 1.0, {"digits": 2}, "0.996"),
    (20.4, 20.0, {"digits": 0, "fixed": True, "sign": True}, "+20.4"),
    (19.6, 20.0, {"digits": 0, "fixed": True, "sign": True}, "+19.6"),
    (100.0004, 100.0, {}, "100.0004"),
    (1.0, 1.0, {"digits": 2}, "1"),  # equal: printed equal
    (math.nan, 1.0, {}, "?"),
    (3.14159, None, {"digits": 2}, "3.1"),
])
def test_beside(x: float, limit: float | None, kw: dict, text: str) -> None:
    assert beside(x, limit, **kw) == text


def _one(checks: list[dict], m: dict) -> object:
    return judge(parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 0}, "checks": checks}), m).results[0]


def test_an_error_rate_increase_is_not_printed_on_its_limit() -> None:
    r = _one([{"name": "e", "kind": "error_rate", "max_increase_points": 1}],
             {"e": (Counts(450000, 45000000), Counts(102200, 5000000))})
    assert r.outcome is Outcome.FAIL
    assert "(+1.04 points, limit +1)" in r.reason


def test_a_rate_ceiling_a_latency_ceiling_and_a_relative_latency() -> None:
    r = _one([{"name": "e", "kind": "error_rate", "max_rate_pct": 1}], {"e": (Counts(0, 10), Counts(100040, 10000000))})
    assert "errors 1.0004% (limit 1%)" in r.reason, r.reason
    bounds = (99.0, 100.0, 101.0, math.inf)
    lat = {"name": "l", "kind": "latency", "max_ms": 100.01}
    r = _one([lat], {"l": (Histogram(bounds, (0, 0, 1000, 1000)), Histogram(bounds, (0, 0, 1000, 1000)))})
    m = re.search(r"p95 ([0-9.]+) ms \(limit 100.01 ms\)", r.reason)
    assert m and (float(m.group(1)) > 100.01) is (r.extra["tests"][0]["p_value"] is not None) and \
        float(m.group(1)) != 100.01, r.reason


def test_a_custom_value_is_not_printed_on_its_limit() -> None:
    chk = parse_policy({"steps": [10, 100], "checks": [{"name": "c", "kind": "custom", "query": 'x{v="{version}"}',
                                                        "max_value": 1, "max_increase": 0.5}]}).checks[0]
    r = judge_check(chk, Scalar(0.5, 1000), Scalar(1.0004, 1000), alpha=0.01, min_canary=0)
    assert r.outcome is Outcome.FAIL and "1.0004 (max 1)" in r.reason, r.reason
    r = judge_check(chk, Scalar(0.5, 1000), Scalar(0.9996, 1000), alpha=0.01, min_canary=0)
    assert "0.9996 (max 1)" in r.reason and "worse by 0.4996 (limit 0.5)" in r.reason, r.reason


# (pattern, group of the printed value, group of the limit) for every "value ... limit" a reason prints
PATTERNS = [
    re.compile(r"\(([+-][0-9.e+-]+) points, limit \+([0-9.e+-]+)\)"),
    re.compile(r"\(>?([+-][0-9.e+-]+)%, limit \+([0-9.e+-]+)%\)"),
    re.compile(r"p[0-9.]+ >?([0-9.e+-]+) ms \(limit ([0-9.e+-]+) ms\)"),
    re.compile(r"(?:errors|missing) ([0-9.e+-]+)% \(limit ([0-9.e+-]+)%\)"),
    re.compile(r"(?:PSI|JS) ([0-9.e+-]+) \(limit ([0-9.e+-]+),"),
]


@pytest.mark.parametrize("chunk", range(4))
def test_no_fail_prints_a_value_within_its_limit_and_no_pass_one_beyond(chunk: int) -> None:
    """Over the judge's corpus (every kind, layout and edge): a FAIL's reason whose first comparison
    is of a kind that fails by its estimate prints it above the limit (on this window alone: a FAIL on
    earlier windows' evidence may print this window's estimate below it); a PASS prints every value
    at or below its limit and every upper bound below it."""
    checked = 0
    for seed in range(chunk * 60, (chunk + 1) * 60):
        policy, measurements, prior, window = corpus.look(seed)
        for r in judge(policy, measurements, prior=prior, window=window).results:
            if r.outcome is Outcome.PASS:
                for pattern in PATTERNS:
                    for m in pattern.finditer(r.reason):
                        assert float(m.group(1)) <= float(m.group(2)), (seed, r.reason)
                        checked += 1
                for m in re.finditer(r"limit ([0-9.e+-]+), upper ([0-9.e+-]+)\)", r.reason):
                    assert float(m.group(2)) < float(m.group(1)), (seed, r.reason)
            elif (r.outcome is Outcome.FAIL and r.kind in ("error_rate", "feature_missing", "custom")
                  and not any(k.startswith(f"{r.check}/") for k in prior)):  # (earlier windows' evidence: not this one's)
                m = next((p.search(r.reason) for p in PATTERNS if p.search(r.reason)), None)
                if m:
                    assert float(m.group(1)) > float(m.group(2)), (seed, r.reason)
                    checked += 1
    assert checked


@pytest.mark.parametrize(("limit", "value"), [(1000.006, 1000.007), (10000006, 10000007.0), (0.1234567, 0.1234568)])
def test_a_limit_with_many_digits_is_printed_as_written(limit: float, value: float) -> None:
    # the limit was printed with :g (6 digits): a FAIL read '1000.01 (max 1000.01)'
    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "c", "kind": "custom", "query": "sum(x)",
                                                        "max_value": limit}]})
    r = judge_check(pol.checks[0], Scalar(0.0, n=1000), Scalar(value, n=1000), alpha=0.05, min_canary=100)
    assert r.outcome is Outcome.FAIL, r.reason
    shown, written = re.search(r": (\S+) \(max (\S+)\)", r.reason).groups()  # type: ignore[union-attr]
    assert float(written) == limit and float(shown) > float(written), r.reason

"""Issue 9's defect kinds, attacked with inputs of `canary judge --input` that earlier sessions did not
try (docs/decisions.md 132). Each test fails without its fix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.analysis import sequential as S
from canary.analysis.judge import judge
from canary.model import Outcome
from canary.offline import parse_exported

LATENCY = {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}
POLICY = {"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m", "min_canary_requests": 100,
                                           "alpha": 0.01}, "checks": [LATENCY]}
BOUNDS = [round(5 * 1.05 ** i, 3) for i in range(100)]


def _equal_arms() -> dict[str, dict[str, list[float | str]]]:
    """A canary exactly as fast as stable on x1.05 buckets, 200,000 / 1,000,000 requests: shown within +20%."""
    from scipy import stats

    share = [float(stats.lognorm.cdf(b, 0.5, scale=100)) for b in BOUNDS] + [1.0]
    return {arm: {"bounds": [*BOUNDS, "+Inf"], "counts": [round(p * n) for p in share]}
            for arm, n in (("stable", 1_000_000), ("canary", 200_000))}


def _judge(raw: dict) -> Outcome:
    d = parse_exported(raw)
    return judge(d.policy, d.measurements, prior=d.prior, window=d.window, pass_ratio=d.pass_ratio,
                 canary_weight=d.canary_weight, step=d.step).outcome


def test_overwhelming_evidence_for_the_canary_never_turns_into_a_rollback() -> None:
    """Stronger evidence never turns a verdict the other way, at any magnitude the input accepts.
    log M(S, I) summed S^2/(2(I+rho)) and log Phi(S/sqrt(I+rho)), which cancel: a prior of
    S = -4.2e20 at I = 1e20 (accepted: S >= -3 sqrt(2) I) read log M = +1e5, a FAIL at p = 0; at
    S = -4e149 it overflowed into ERROR "math range error"."""
    for info in (1e4, 1e20, 1e150, 1e300):
        assert S.log_mixture(-4.2 * info, info) <= 0.0
        assert S.anytime_p(-4.2 * info, info) == 1.0
    checks = {"lat": _equal_arms()}
    assert _judge({"policy": POLICY, "checks": checks}) is Outcome.PASS
    for info in (1e8, 1e20, 1e150, 1e300):
        seen = []
        for z in np.linspace(-4.2426, 40.0, 30):  # from the most favourable evidence the input accepts up
            seen.append(_judge({"policy": POLICY, "checks": checks, "step": 0,
                                "prior": {"lat/relative": [float(z * info), info]}}))
        assert Outcome.ERROR not in seen, info
        assert seen[0] is Outcome.PASS, info
        order = [{Outcome.PASS: 0, Outcome.INCONCLUSIVE: 1, Outcome.FAIL: 2}[o] for o in seen]
        assert order == sorted(order), (info, seen)  # more evidence of a breach: never back to a pass
        assert seen[-1] is Outcome.FAIL


def test_the_anytime_p_value_is_unchanged_where_it_was_exact() -> None:
    """The fix computes the same M for S < 0 (where M <= 1, p = 1) and leaves S >= 0 alone."""
    for s, i in ((-5.0, 100.0), (-300.0, 1e4), (0.0, 50.0), (120.0, 2_000.0)):
        v = i + S.RHO
        direct = math.log(2.0) + 0.5 * math.log(S.RHO / v) + s * s / (2 * v) + math.log(
            0.5 * math.erfc(-s / math.sqrt(v) / math.sqrt(2)))
        assert S.log_mixture(s, i) == pytest.approx(direct, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("stable, canary", [
    ((100, 100_000), (0, 4_503_599_627_370_496)),           # 2**52 requests, none failed
    ((670, 2_233), (0, 4_070_573_719_415_442)),
    ((1_244_284, 12_442_836_226_684), (186, 3_729_121_404)),  # arms 3,000x apart, both below 2**53
    ((35_490_331, 354_903_312_813_384), (0, 1_185_450_830)),
])
def test_an_error_rate_on_counts_far_apart_is_judged_not_an_error(stable, canary) -> None:
    """Counts the input accepts (below 2**53) whose arms are 1e3-1e13 times apart in size: the
    likelihood-ratio bound's restricted MLE lost its digits there, brentq found no sign change and
    the check was ERROR "cannot judge: f(a) and f(b) must have different signs". The canary's rate
    is below stable's: it is shown within (the exact Clopper-Pearson route where the LR one fails)."""
    raw = {"policy": {**POLICY, "checks": [{"name": "e", "kind": "error_rate", "max_increase_points": 0.1}]},
           "checks": {"e": {"stable": {"events": stable[0], "total": stable[1]},
                            "canary": {"events": canary[0], "total": canary[1]}}}}
    assert _judge(raw) is Outcome.PASS


def test_a_canary_median_at_a_zero_bound_still_fails_its_hard_ceiling() -> None:
    """A layout with a 0 ms bound (`le="0"`), 60% of the canary's requests there and 40% above 1 s: the
    unit-slip guard divided the stable's median by the canary's bound on it, 0, and the check was
    ERROR "cannot judge: float division by zero" where its hard p99 ceiling is breached beyond doubt."""
    bounds = [0, 10, 50, 100, 250, 1000, "+Inf"]
    raw = {"policy": {**POLICY, "checks": [{"name": "lat", "kind": "latency", "quantile": 0.99, "max_ms": 250,
                                            "hard": True}]},
           "checks": {"lat": {"stable": {"bounds": bounds, "counts": [0, 0, 5000, 9900, 10000, 10000, 10000]},
                              "canary": {"bounds": bounds, "counts": [600, 600, 600, 600, 600, 600, 1000]}}}}
    assert _judge(raw) is Outcome.FAIL


def test_binomial_tails_beyond_two_billion_trials_are_not_wrapped() -> None:
    """scipy's cephes bdtr/bdtrc take the trial count as a C int: from 2**31 on NaN, or n mod 2**32."""
    from scipy import stats as st

    from canary.analysis import stats

    for n in (2**31, 2**32 + 10, 3 * 10**9, 2**40, 2**52):
        for q in (0.5, 0.95, 0.99):
            k = int(n * q - 3 * math.sqrt(n * q * (1 - q)))
            assert stats.bdtr(k, n, q) == pytest.approx(float(st.binom.cdf(k, n, q)), rel=1e-6)
            assert stats.bdtrc(k, n, q) == pytest.approx(float(st.binom.sf(k, n, q)), rel=1e-6)
        assert float(stats.p_quantile_at_most(np.array([1]), n, 0.5)[0]) == 1.0  # 1 of n under: nothing shown


@pytest.mark.parametrize("n", [2**31 - 1, 2**31, 2**32 + 10, 3 * 10**9, 2**40])
def test_an_arm_of_billions_of_requests_is_judged_as_one_of_millions(n: int) -> None:
    """A canary of 2**31 requests or more, every one above 200 ms, against `max_ms: 100` at p95: it
    FAILed at 2**31 - 1 requests and was INCONCLUSIVE from 2**31 on (more evidence, a weaker verdict);
    one of 2**40 requests under 0.5 ms 'showed' its p50 below a 1 ms ceiling, and PASSed."""
    policy = {**POLICY, "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 100}]}
    slow = {"policy": policy, "checks": {"lat": {"stable": {"error": "no series"},
                                                 "canary": {"bounds": [100, 200, "+Inf"], "counts": [11, 12, n]}}}}
    assert _judge(slow) is Outcome.FAIL
    policy = {**POLICY, "checks": [{"name": "lat", "kind": "latency", "quantile": 0.5, "max_ms": 1}]}
    one_fast = {"policy": policy, "checks": {"lat": {"stable": {"error": "no series"},
                                                     "canary": {"bounds": [0.5, "+Inf"], "counts": [1, n]}}}}
    assert _judge(one_fast) is not Outcome.PASS


def test_a_thin_prediction_cell_against_a_stable_of_a_trillion_is_still_thin() -> None:
    """Two canary predictions in a bucket where the stable has 45% of 1e12: the share they rest on is
    not known (`shift._thin_upper`), whatever the stable's size. Its test (cephes' bdtr on the cell's
    count over both arms, 4.5e11) wrapped and passed the canary at PSI upper 4.8 < 5."""
    policy = {**POLICY, "checks": [{"name": "x", "kind": "prediction_shift", "max_psi": 5}]}
    for n in (10**8, 10**12):
        raw = {"policy": policy, "checks": {"x": {
            "stable": {"bounds": [0.1, 0.5, "+Inf"], "counts": [n // 20, n // 2, n]},
            "canary": {"bounds": [0.1, 0.5, "+Inf"], "counts": [50, 52, 20000]}}}}
        assert _judge(raw) is Outcome.INCONCLUSIVE, n


@pytest.mark.parametrize("stable", ["absent", None])
def test_a_custom_max_value_needs_no_stable_arm_in_the_input(stable) -> None:
    """Issue 9, defect 5, as an input writes it: a custom check with only `max_value` whose stable
    series does not exist, left out of the file or null. It was bad input ("checks.c.stable: missing",
    exit 2) where the canary, over its limit, must FAIL; a relative limit stays ERROR."""
    policy = {**POLICY, "checks": [{"name": "c", "kind": "custom", "query": 'x{version="{version}"}', "max_value": 3,
                                    "hard": True}]}
    entry: dict = {"canary": {"value": 5}} if stable == "absent" else {"stable": None, "canary": {"value": 5}}
    assert _judge({"policy": policy, "checks": {"c": entry}}) is Outcome.FAIL
    entry["canary"] = {"value": 1}
    assert _judge({"policy": policy, "checks": {"c": entry}}) is Outcome.PASS
    relative = {**POLICY, "checks": [{"name": "c", "kind": "custom", "query": 'x{version="{version}"}',
                                      "max_ratio": 2}]}
    assert _judge({"policy": relative, "checks": {"c": entry}}) is Outcome.ERROR
    with pytest.raises(Exception, match=r"checks\.c\.canary: missing"):
        parse_exported({"policy": policy, "checks": {"c": {"stable": {"value": 1}}}})


@pytest.mark.parametrize("check,arm,lacking", [
    ({"name": "err", "kind": "error_rate", "max_increase_points": 1}, {"events": 9}, "'total'"),
    (LATENCY, {"bounds": [100, "+Inf"]}, "'counts'"),
    ({"name": "c", "kind": "custom", "query": "x{version=\"{version}\"}", "max_ratio": 2}, {"n": 5}, "'value'"),
])
def test_an_arm_short_of_its_kinds_shape_names_the_key_it_lacks(check: dict, arm: dict, lacking: str) -> None:
    """A hand-made input without one key of its arm (decision 161): it listed every shape an arm can have
    and the keys it got, leaving the reader to work out which one was meant and what was missing."""
    from canary.errors import ConfigError

    full = {"error_rate": {"events": 9, "total": 1000}, "latency": {"bounds": [100, "+Inf"], "counts": [9, 10]},
            "custom": {"value": 1.0}}[check["kind"]]
    raw = {"policy": {**POLICY, "checks": [check]}, "checks": {check["name"]: {"stable": full, "canary": arm}}}
    with pytest.raises(ConfigError) as err:
        parse_exported(raw, file="look.json")
    said = str(err.value)
    assert said.startswith(f"look.json: checks.{check['name']}.canary: missing {lacking}: {check['kind']} checks"), said

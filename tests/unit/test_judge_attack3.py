"""A judge attacker's findings (nineteenth session), each as a kind:

* one latency layout in two units (the canary's exporter in seconds, the stable's in ms) shares a bound
  or two by accident, and the comparison there read a canary 15x slower as 52% faster: a PASS;
* good earlier windows hid a canary that breaks late: pooled with one good 40,000-request step, a
  canary failing every request of the next window was INCONCLUSIVE on a hard 10% ceiling.
"""

from __future__ import annotations

import itertools
import math

import pytest
from scipy.stats import lognorm

from canary.analysis import judge as J
from canary.analysis import sequential
from canary.model import Counts, Histogram, Outcome
from canary.policy import load_policy, parse_policy

MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
INF = float("inf")


def _latency_policy(**limits: float):
    return parse_policy({"steps": [10, 100], "checks": [{"name": "l", "kind": "latency", "quantile": 0.95, **limits}]})


def _arm(bounds: list[float], n: int, scale_ms: float, unit: float) -> Histogram:
    counts = [round(n * x) for x in lognorm.cdf([b * unit for b in bounds], 0.5, scale=scale_ms)]
    return Histogram((*bounds, INF), (*map(float, counts), float(n)))


@pytest.mark.parametrize("limits", [{"max_increase_pct": 20}, {"max_increase_pct": 20, "max_ms": 250},
                                    {"max_ms": 250}])
@pytest.mark.parametrize("which", ["canary in seconds", "stable in seconds"])
def test_one_layout_in_two_units_is_an_error_never_a_pass(limits: dict, which: str) -> None:
    seconds = [b / 1000 for b in MS]
    if which == "canary in seconds":  # canary p95 ~2 s, stable ~140 ms
        stable, canary = _arm(MS, 100_000, 60, 1), _arm(seconds, 5_000, 900, 1000)
    else:
        stable, canary = _arm(seconds, 100_000, 60, 1000), _arm(MS, 5_000, 900, 1)
    r = J.judge(_latency_policy(**limits), {"l": (stable, canary)}).results[0]
    # a ceiling breach on the canary's own bounds (here in ms, p95 ~2.4 s against 250 ms) stands: a canary
    # read in the wrong unit reads 1000x faster, so its breach is real either way (twentieth session)
    breach = which == "stable in seconds" and "max_ms" in limits
    assert r.outcome is (Outcome.FAIL if breach else Outcome.ERROR), r.reason
    assert "differ by a factor of 1000" in r.reason, r.reason


def test_layouts_that_merely_differ_are_still_compared() -> None:
    """Different but same-unit layouts (x1.1 against 5 ms linear) are not a unit mismatch."""
    fine = [round(1.1 ** i, 6) for i in range(20, 80)]
    linear = list(range(5, 1000, 5))
    stable, canary = _arm(fine, 100_000, 60, 1), _arm(linear, 5_000, 60, 1)
    assert J._unit_mismatch(tuple(fine), tuple(linear)) == ""
    r = J.judge(_latency_policy(max_increase_pct=20), {"l": (stable, canary)}).results[0]
    assert "factor of 1000" not in r.reason


@pytest.mark.parametrize("prior", [[-600.0, 40_000.0], [-42_426.0, 10_000.0], [-6_000.0, 4_000_000.0]])
def test_good_earlier_windows_do_not_hide_a_canary_that_breaks_now(prior: list[float]) -> None:
    """The default policy's hard 10% error ceiling, every canary request of this window an error: FAIL
    whatever the earlier windows showed (the window is also tested on its own evidence)."""
    policy = load_policy("policies/default.yaml")
    looks = {"errors-hard": (Counts(50, 10_000), Counts(1_000, 1_000))}
    for step, window in ((1, 0), (4, 0), (2, 3)):
        r = next(x for x in J.judge(policy, looks, prior={"errors-hard/ceiling": tuple(prior)}, step=step,
                                     window=window).results if x.check == "errors-hard")
        assert r.outcome is Outcome.FAIL, (step, window, r.reason)


def test_the_window_shares_sum_to_what_the_pooled_test_leaves() -> None:
    total = sum(sequential.window_share(s, w) for s, w in itertools.product(range(2_000), range(2_000)))
    assert total <= 1 - sequential.POOLED_SHARE + 1e-12
    assert math.isclose(total, 1 - sequential.POOLED_SHARE, rel_tol=2e-3)
    assert sequential.failure_p(0.0, 100.0, 0.0, 100.0, 0.01) <= 1.0


def test_a_window_that_only_confirms_the_pooled_evidence_changes_nothing_at_the_margin() -> None:
    """At the limit, the union of the pooled test (at 0.9 of the level) and every window's own test
    (the rest, spread over windows) keeps P(false rollback) <= the level: Brownian paths at drift 0,
    4 windows of 30 looks each, irregular information."""
    import numpy as np

    rng = np.random.default_rng(3)
    level, paths, crossed = 0.01, 2_000, 0
    for _ in range(paths):
        s_prior = i_prior = 0.0
        hit = False
        for w in range(4):
            steps = rng.uniform(20, 400, 30)
            s_w = np.cumsum(rng.normal(0, np.sqrt(steps)))
            i_w = np.cumsum(steps)
            for s, i in zip(s_w, i_w):
                if sequential.failure_p(s_prior + s, i_prior + i, s, i, sequential.window_share(w, 0)) <= level:
                    hit = True
                    break
            if hit:
                break
            s_prior, i_prior = s_prior + s_w[-1], i_prior + i_w[-1]
        crossed += hit
    assert crossed / paths <= level, crossed


def _bimodal_cdf(t):
    """A cache-hit mode below 40 ms and a miss mode whose density rises from 0 across (40, 50]: that
    bucket's count per ms equals the one before's, and the one after's is higher."""
    import numpy as np

    t = np.asarray(t, float)
    out = np.where(t <= 40, 0.5 * t / 40, 0)
    u = np.clip(t - 40, 0, 10)
    out = np.where((t > 40) & (t <= 50), 0.5 + 0.00125 * u * u, out)
    return np.where(t > 50, 0.625 + 0.375 * (1 - np.exp(-(t - 50) / 15)), out)


@pytest.mark.parametrize("scale", [1.15, 1.18, 1.2])
def test_a_density_rising_into_the_next_bucket_is_not_interpolated(scale: float) -> None:
    """p50, +20% limit, 10 ms buckets: the canary is the stable scaled by `scale` (within the limit or
    at it). Interpolating the stable's exceedance at 41.7 ms by the chord read 0.479 where it is 0.4965,
    and failed a canary x1.18 at p = 2e-7 (x1.20, at the limit: 43-49% of looks at 20,000-50,000 canary
    requests). The chord over-states the exceedance only where the density does not rise across the
    bucket; the judge now also asks that of the bucket after, and rounds x down otherwise."""
    import numpy as np

    bounds = [float(b) for b in range(10, 310, 10)]
    n_s, n_c = 500_000, 50_000
    stable = Histogram((*bounds, INF), (*[float(round(n_s * x)) for x in _bimodal_cdf(bounds)], float(n_s)))
    canary = Histogram((*bounds, INF), (*[float(round(n_c * x)) for x in _bimodal_cdf(np.array(bounds) / scale)],
                                        float(n_c)))
    p = parse_policy({"steps": [10, 100], "checks": [{"name": "lat", "kind": "latency", "quantile": 0.5,
                                                      "max_increase_pct": 20}]})
    r = J.judge(p, {"lat": (stable, canary)}).results[0]
    assert r.outcome is not Outcome.FAIL, r.reason


@pytest.mark.parametrize(("stable_ms", "canary_ms", "n", "error"), [
    (60, 0.24, 10_000, True),     # seconds on the canary's side: 250x faster at the median
    (60, 1.2, 10_000, True),      # 50x faster: a canary 20x slower in seconds reads so (test_judge_unit_slip_native)
    (60, 12, 10_000, False),      # a release 5x faster: judged, not refused
    (3000, 9, 3, False),          # a median of 3 requests is noise
])
def test_a_canary_far_faster_than_stable_is_read_as_a_unit_slip(stable_ms: float, canary_ms: float, n: int,
                                                               error: bool) -> None:
    stable = _arm(MS, 90_000, stable_ms, 1)
    canary = _arm([0.01 * 1.25 ** k for k in range(40)], n, canary_ms, 1)
    r = J.judge(_latency_policy(max_ms=250), {"l": (stable, canary)}).results[0]
    assert (r.outcome is Outcome.ERROR and "exporter writing seconds" in r.reason) is error, r.reason


def test_an_exported_look_with_a_prior_but_no_step_skips_the_windows_own_test(tmp_path) -> None:
    """Without "step", every exported look would claim step 0's share of the window budget (0.025 of a
    level), overspending it past four windows: the window is not placed, and the pooled test decides."""
    import json

    from canary.offline import load_exported

    doc = {"policy_file": str(_default_policy()), "prior": {"errors-hard/ceiling": [-600.0, 40000.0]},
           "checks": {"errors-hard": {"stable": {"events": 50, "total": 10000},
                                      "canary": {"events": 1000, "total": 1000}}}}
    f = tmp_path / "look.json"
    f.write_text(json.dumps(doc))
    ex = load_exported(f)
    assert ex.step is None
    r = next(x for x in J.judge(ex.policy, ex.measurements, prior=ex.prior, step=ex.step).results
             if x.check == "errors-hard")
    assert r.outcome is not Outcome.FAIL, r.reason  # pooled alone: the good step still dilutes it
    f.write_text(json.dumps({**doc, "step": 1}))
    ex = load_exported(f)
    r = next(x for x in J.judge(ex.policy, ex.measurements, prior=ex.prior, step=ex.step).results
             if x.check == "errors-hard")
    assert ex.step == 1 and r.outcome is Outcome.FAIL, r.reason


def _default_policy():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


# -- decision 96 (a): PSI with a bucket one arm reaches only a few times ---------------------------------

def _shift_policy(**limits: float):
    return parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 100},
                         "checks": [{"name": "p", "kind": "prediction_shift", **limits}]})


def _cum(per_bucket: list[int]) -> Histogram:
    return Histogram((0.3, 0.6, INF), tuple(float(x) for x in itertools.accumulate(per_bucket)))


@pytest.mark.parametrize(("stable", "canary"), [
    ([1520, 24577, 23903], [1, 1451, 1548]),  # the canary keeps 1 of 3,000 where the stable has 3.0%
    ([1, 1451, 1548], [1520, 24577, 23903]),  # the stable has 1 of 3,000 where the canary has 3.0%
    ([1529, 5398, 5282 + 5404 + 5326], [1, 116, 105 + 117 + 107]),
])
def test_a_share_resting_on_one_observation_is_not_shown_within_max_psi(stable, canary) -> None:
    """PSI's term in that bucket is 0.03 ln(0.03 / p) with p the share 1 observation leaves open (down to
    1e-6 at the pass level: PSI 0.3); the delta method read it as known to a normal error and showed
    PSI within 0.2 (upper 0.19) for canaries at PSI 0.2 in 7-21x as many looks as the level allows."""
    r = J.judge(_shift_policy(max_psi=0.2), {"p": (_cum(stable), _cum(canary))}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE, r.reason
    assert "rests on 1 " in r.reason and "observation" in r.reason


def test_equal_arms_and_a_share_of_a_few_observations_that_equal_arms_give_still_pass() -> None:
    """A bucket with 7 of 120,000 stable observations against the canary's 1.5% (PSI 0.08) is still shown
    within 0.2 (test_judge's own-statistic case), and equal arms with a thin bucket are untouched."""
    skewed = (Histogram((0.9, INF), (119993.0, 120000.0)), Histogram((0.9, INF), (23640.0, 24000.0)))
    assert J.judge(_shift_policy(max_psi=0.2), {"p": skewed}).results[0].outcome is Outcome.PASS
    equal = (_cum([80, 24000, 25920]), _cum([4, 1440, 1556]))  # 0.16% vs 0.13% in the first bucket
    r = J.judge(_shift_policy(max_psi=0.2), {"p": equal}).results[0]
    assert r.outcome is Outcome.PASS, r.reason


@pytest.mark.parametrize("counts", [
    (math.nan, -5.0, 900.0, 1000.0),  # a negative count behind a NaN
    (100.0, math.nan, 50.0, 1000.0),  # a decrease across a NaN
    (100.0, 200.0, math.nan, 150.0),  # the total below a known count
])
def test_a_nan_bucket_does_not_hide_counts_that_are_not_cumulative(counts: tuple[float, ...]) -> None:
    """NaN compares false with everything, so the neighbour checks let these through, and a max_ms
    check could pass on the buckets left (the fourth attacker, decision 96)."""
    with pytest.raises(ValueError, match="non-negative|non-decreasing"):
        Histogram((50.0, 100.0, 250.0, INF), counts)
    Histogram((50.0, 100.0, 250.0, INF), (100.0, math.nan, 900.0, 1000.0))  # a NaN alone is still allowed

"""Found by a fresh attacker of the judge (sixteenth session); each case stands for a kind (issue 9):

- a limit on the canary alone (`max_ms`) is judged on every bound the canary exports, whatever the
  stable's layout (it was judged on the bounds both arms share: a canary over the ceiling was
  INCONCLUSIVE, or ERROR when the layouts shared no finite bound);
- a custom `max_value` breach fails below `min_canary_requests`, as `max_ms` and `max_rate_pct` do
  (adding the request count used to turn the FAIL into INCONCLUSIVE);
- `canary judge` refuses a negative custom `n` and a prior whose test name is not one of the
  check's, naming the field (a typo dropped the pooled evidence silently).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from canary.analysis import judge as J
from canary.model import Histogram, Outcome, Scalar
from canary.policy import parse_policy
from tests.unit.test_judge_attack import _cli

INF = math.inf


def _policy(check: dict, min_canary: int = 500) -> object:
    return parse_policy({"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "30s",
                         "min_canary_requests": min_canary}, "checks": [check]})


# the canary exports 100/250/300 ms, the stable 100/200 ms (or only 150 ms: no bound in common)
CANARY_OVER = Histogram((100, 250, 300, INF), (1000, 2000, 10000, 10000))  # p95 in (250, 300]
CANARY_UNDER = Histogram((100, 250, 300, INF), (5000, 10000, 10000, 10000))  # p95 in (100, 250]
STABLES = {"other layout": Histogram((100, 200, INF), (50000, 99000, 100000)),
           "no bound in common": Histogram((150, INF), (900, 1000))}


@pytest.mark.parametrize("stable", STABLES.values(), ids=STABLES.keys())
@pytest.mark.parametrize("hard", [False, True])
def test_a_latency_ceiling_is_judged_on_the_canarys_own_bounds(stable: Histogram, hard: bool) -> None:
    p = _policy({"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 250, "hard": hard})
    over = J.judge(p, {"lat": (stable, CANARY_OVER)}).results[0]
    assert over.outcome is Outcome.FAIL and "limit 250 ms" in over.reason, over.reason
    assert f"/{stable.counts[-1]:,.0f}," in over.reason  # the stable's requests, not 0
    under = J.judge(p, {"lat": (stable, CANARY_UNDER)}).results[0]
    assert under.outcome is Outcome.PASS, under.reason
    # the same as with no stable arm at all: the stable's layout does not matter to a ceiling
    alone = J.judge(p, {"lat": (None, CANARY_OVER)}).results[0]
    assert alone.outcome is over.outcome and alone.p_value == pytest.approx(over.p_value)


@pytest.mark.parametrize("stable", STABLES.values(), ids=STABLES.keys())
def test_a_relative_limit_beside_the_ceiling_is_never_passed_on_layouts_it_cannot_compare(stable: Histogram) -> None:
    p = _policy({"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 250})
    over = J.judge(p, {"lat": (stable, CANARY_OVER)}).results[0]
    assert over.outcome is Outcome.FAIL and "limit 250 ms" in over.reason, over.reason
    under = J.judge(p, {"lat": (stable, CANARY_UNDER)}).results[0]
    assert under.outcome is Outcome.INCONCLUSIVE, under.reason


@pytest.mark.parametrize("n", [0.0, 100.0, math.nan])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("stable", [None, Scalar(50.0, 10000)])
def test_a_custom_max_value_breach_fails_whatever_the_request_count(n: float, hard: bool, stable: Scalar | None) -> None:
    p = _policy({"name": "cu", "kind": "custom", "query": "q{version=\"{version}\"}", "max_value": 100, "hard": hard})
    r = J.judge(p, {"cu": (stable, Scalar(500.0, n))}).results[0]
    assert r.outcome is Outcome.FAIL and "500 (max 100)" in r.reason, r.reason
    under = J.judge(p, {"cu": (stable, Scalar(50.0, n))}).results[0]
    small = math.isfinite(n) and n < 500
    assert under.outcome is (Outcome.INCONCLUSIVE if small else Outcome.PASS), under.reason


def test_a_custom_relative_breach_below_min_canary_fails_only_a_hard_check() -> None:
    for hard, expected in ((False, Outcome.INCONCLUSIVE), (True, Outcome.FAIL)):
        p = _policy({"name": "cu", "kind": "custom", "query": "q{version=\"{version}\"}", "max_ratio": 1.2,
                     "hard": hard})
        r = J.judge(p, {"cu": (Scalar(1.0, 10000), Scalar(2.0, 100))}).results[0]
        assert r.outcome is expected, r.reason


CUSTOM = ('{"policy":{"steps":[10,100],"checks":[{"name":"cu","kind":"custom","query":"q{version=\\"$version\\"}",'
          '"max_value":100}]},"checks":{"cu":{"stable":STABLE,"canary":CANARY}}}')
ERRORS = ('{"policy":{"steps":[10,100],"checks":[{"name":"er","kind":"error_rate","max_increase_points":1}]},'
          '"prior":PRIOR,"checks":{"er":{"stable":{"events":100,"total":10000},"canary":{"events":20,"total":1000}}}}')


@pytest.mark.parametrize(("text", "field"), [
    (CUSTOM.replace("STABLE", '{"error":"none"}').replace("CANARY", '{"value":50,"n":-1}'), "checks.cu.canary.n"),
    (CUSTOM.replace("STABLE", '{"value":1,"n":-5}').replace("CANARY", '{"value":1,"n":100}'), "checks.cu.stable.n"),
    (ERRORS.replace("PRIOR", '{"er/increse":[200,1000]}'), "prior.er/increse"),
    (ERRORS.replace("PRIOR", '{"er/ceiling":[200,1000]}'), "prior.er/ceiling"),  # no max_rate_pct: no such test
])
def test_canary_judge_refuses_a_negative_count_and_an_unknown_prior_test(tmp_path: Path, text: str, field: str) -> None:
    r = _cli(tmp_path, text)
    assert r.exit_code == 2 and f"{field}:" in r.output, r.output


def test_a_prior_on_the_checks_own_test_is_pooled(tmp_path: Path) -> None:
    r = _cli(tmp_path, ERRORS.replace("PRIOR", '{"er/increase":[200,1000]}'))
    assert r.exit_code == 1, r.output  # the pooled evidence is over the limit: FAIL
    assert json.loads(r.stdout)["outcome"] == "fail"


PS_BOUNDS = (0.14, 0.28, 0.42, 0.57, 0.71, 0.85, INF)
PS_STABLE = (5, 32, 173, 297, 395, 424, 499)  # cumulative: 1% in the first cell
PS_CANARY = (0, 5, 36, 59, 81, 86, 99)  # the canary never there


@pytest.mark.parametrize("scale", [10, 100, 1000, 10000])
def test_a_prediction_cell_the_canary_never_hits_is_never_shown_within_on_psi(scale: int) -> None:
    """The same shares at every scale: PSI's term there is unbounded, the +0.5 smoothing read it as
    0.5/n, so the check PASSed at 1,000 canary requests and FAILed at 1,000,000."""
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.1})
    stable = Histogram(PS_BOUNDS, tuple(float(x * scale) for x in PS_STABLE))
    canary = Histogram(PS_BOUNDS, tuple(float(x * scale) for x in PS_CANARY))
    r = J.judge(p, {"pred": (stable, canary)}).results[0]
    assert r.outcome is not Outcome.PASS, r.reason
    if r.outcome is Outcome.INCONCLUSIVE:
        assert "the canary has no observations in bucket 1 where the stable has 1.00%" in r.reason, r.reason


def test_an_equal_canary_that_misses_a_rare_cell_by_chance_still_passes() -> None:
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.1})
    shares = (0.0005, 0.1, 0.3, 0.6, 0.85, 1.0)  # cumulative: 0.05% in the first cell
    bounds = (0.1, 0.3, 0.5, 0.7, 0.9, INF)
    stable = Histogram(bounds, tuple(100000 * x for x in shares))
    canary = Histogram(bounds, (0.0, *(100000 * x for x in shares[1:])))
    r = J.judge(p, {"pred": (stable, canary)}).results[0]
    # 0.05% of 100,000 is 50 expected: missing all of them is no chance (e^-50), the canary lacks the cell
    assert r.outcome is Outcome.INCONCLUSIVE and "no observations in bucket 1" in r.reason, r.reason
    by_chance = Histogram(bounds, (0.0, *(1000 * x for x in shares[1:])))  # 0.5 expected: 61% miss it
    r = J.judge(p, {"pred": (stable, by_chance)}).results[0]
    assert r.outcome is Outcome.PASS, r.reason


@pytest.mark.parametrize(("stable", "total"), [((50, 10000), 2000), ((500, 100000), 2000), ((5000, 1000000), 2000),
                                               ((10, 1000), 2000)])
def test_more_canary_errors_never_make_an_error_increase_more_within(stable: tuple[int, int], total: int) -> None:
    """9 errors in 2,000 were INCONCLUSIVE and 10 PASSed: the bound switched from Clopper-Pearson to the
    likelihood-ratio one at 10 observed canary errors. The method now follows the stable's counts and
    the canary's total only."""
    from canary.analysis.evidence import increase_within

    bounds = [increase_within(*stable, x, total, margin=0.005, level=0.0085)[1] for x in range(0, 40)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:])), bounds
    within = [increase_within(*stable, x, total, margin=0.005, level=0.0085)[0] for x in range(0, 40)]
    assert within == sorted(within, reverse=True), within  # once not within, never within again


def test_a_breach_near_the_quantile_is_not_overruled_by_a_within_claim_at_it() -> None:
    """A second attacker: slower at p92.7 (the pair nearest p95), faster at p95. FAIL at 8,000 canary
    requests and PASS at 16,000 before; a breach now fails whatever the within claim at q says.
    Since the nineteenth session the stable's count per ms rising from (175, 220] into (220, 315]
    rounds x = 183.3 down to 175 (the chord is not shown to over-state there): no breach is shown at
    that pair, and the canary, faster at p95 itself, is shown within once the data allow. What must
    hold either way: more of the same evidence never turns a FAIL into a PASS."""
    p = _policy({"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20})
    b = (90, 175, 220, 315, INF)
    outcomes = []
    for scale in (1, 2, 4, 8):
        stable = Histogram(b, tuple(scale * x for x in (147200.0, 148800, 151200, 156800, 160000)))
        canary = Histogram(b, tuple(scale * x for x in (7120.0, 7200, 7648, 8000, 8000)))
        r = J.judge(p, {"lat": (stable, canary)}).results[0]
        assert "stable >183.3 ms (rounded down" in r.reason, r.reason
        outcomes.append(r.outcome)
    assert not any(a is Outcome.FAIL and b is Outcome.PASS for a, b in zip(outcomes, outcomes[1:])), outcomes


@pytest.mark.parametrize("scale", [4, 8])
def test_a_rounded_down_breach_at_a_far_quantile_is_no_rollback_where_p95_is_within(scale: int) -> None:
    """The pair compares stable p80 (rounded down), where the canary is shown beyond +20%; its p95 is
    estimated +14%, within by the buckets holding each arm's p95 (<= 395 against > 340 ms) and shown
    within at 4,000 canary requests. It FAILed (decision 69 g, commit 88f8254): a rollback of a limit on
    p95 for its p80. Now INCONCLUSIVE at every scale (decision 501), never PASS (the pair's estimate is
    beyond)."""
    p = _policy({"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20})
    b = (120, 225, 230, 335, 340, 345, 395, INF)
    stable = Histogram(b, tuple(scale * x for x in (5000.0, 8000, 8000, 9000, 9450, 9600, 9700, 10000)))
    canary = Histogram(b, tuple(scale * x for x in (245.0, 350, 370, 380, 410, 442, 480, 500)))
    r = J.judge(p, {"lat": (stable, canary)}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE and "rounded down" in r.reason, r.reason
    assert "shown beyond the limit at stable p80" in r.reason and "within it at p95 itself" in r.reason, r.reason


def test_a_stable_arm_with_an_impossible_count_leaves_the_canarys_absolute_limits_judged() -> None:
    p = parse_policy({"steps": [10, 100], "checks": [
        {"name": "errors-hard", "kind": "error_rate", "max_rate_pct": 10, "hard": True},
        {"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 250}]})
    from canary.model import Counts

    huge = Histogram((100, 250, 500, INF), (1e19, 1e19, 1e19, 1e19))
    v = J.judge(p, {"errors-hard": (Counts(0, 1e19), Counts(900, 1000)),
                    "lat": (huge, Histogram((100, 250, 500, INF), (0, 0, 1000, 1000)))})
    assert [r.outcome for r in v.results] == [Outcome.FAIL, Outcome.FAIL], [r.reason for r in v.results]


@pytest.mark.parametrize(("key", "value", "field"), [("pass_ratio", "1" + "0" * 400, "pass_ratio"),
                                                     ("prior", '{"er/increase": [1, 1' + "0" * 400 + "]}",
                                                      "prior.er/increase[1]")])
def test_a_400_digit_number_is_bad_input_not_a_traceback(tmp_path: Path, key: str, value: str, field: str) -> None:
    text = ERRORS.replace('"prior":PRIOR,', f'"{key}":{value},' if key == "pass_ratio" else f'"prior":{value},')
    r = _cli(tmp_path, text)
    assert r.exit_code == 2 and f"{field}: out of range" in r.output, r.output


@pytest.mark.parametrize(("prior", "said"), [
    ('{"er/increase": [1, true]}', "prior.er/increase: must be [S, I]: finite numbers, I >= 0, got [1, true]"),
    ('{"er/increase.exact": [null, 1]}', "prior.er/increase.exact: must be a pair of finite numbers, got [null, 1]"),
])
def test_a_bad_prior_is_shown_as_the_json_wrote_it(tmp_path: Path, prior: str, said: str) -> None:
    """A prior of the wrong shape was shown as Python wrote it (`[1, True]`, `[None, 1]`), not as the file has it."""
    r = _cli(tmp_path, ERRORS.replace("PRIOR", prior))
    assert r.exit_code == 2 and said in " ".join(r.output.split()), r.output

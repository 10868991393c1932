"""A count that is no count (NaN, +Inf, past 2^53) from Prometheus or a fake provider is never turned into an
integer and judged (docs/decisions.md 1000).

`stats._ints` cast +Inf and NaN to int64 as -2^63 (with numpy's "invalid value encountered in cast"): a latency
arm whose total was +Inf was judged INCONCLUSIVE on it, saying "an arm has no requests" and "canary p95 >300 ms";
an error rate's `Counts(5, +Inf)` raised OverflowError out of the judge; and +Inf errors from Prometheus were
clamped to the arm's requests, read as every request failed (a rollback on a counter that overflowed)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from canary.analysis import judge as J
from canary.analysis import stats
from canary.errors import NotCountable
from canary.metrics import delta
from canary.metrics import queries as q
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Histogram, Outcome, Target
from canary.policy import parse_policy

INF, NAN = math.inf, math.nan
B = (50.0, 100.0, 150.0, 200.0, 300.0, INF)
GOOD_S = (4000.0, 8000.0, 9300.0, 9800.0, 9900.0, 10000.0)
GOOD_C = (400.0, 800.0, 930.0, 980.0, 990.0, 1000.0)
POLICY = parse_policy({"steps": [50, 100], "checks": [
    {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 250},
    {"name": "err", "kind": "error_rate", "max_increase_points": 1, "max_rate_pct": 10},
    {"name": "ps", "kind": "prediction_shift", "max_psi": 0.2}]})
LAT, ERR, PS = POLICY.checks


def _judge(check, stable, canary):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's cast of NaN/inf to int64 warned, then was garbage
        return J.judge_check(check, stable, canary, alpha=0.01, min_canary=100)


@pytest.mark.parametrize("count", [INF, NAN])  # a NaN bucket too, since decision 1050 (test_judge_speedup's golden)
@pytest.mark.parametrize("where", ["total", "bucket"])
@pytest.mark.parametrize("check", [LAT, PS], ids=["latency", "prediction_shift"])
def test_a_histogram_count_that_is_no_count_is_not_countable_never_judged(check, count, where) -> None:  # type: ignore[no-untyped-def]
    if where == "total":
        bad = (*GOOD_C[:-1], count)
    else:  # +Inf from a bucket on (cumulative)
        bad = (400.0, 800.0, *[count] * 4)
    r = _judge(check, Histogram(B, GOOD_S), Histogram(B, bad))
    assert r.outcome is Outcome.ERROR, r.reason
    if math.isnan(count):  # its total (+Inf) NaN in both: named so (a NaN below +Inf alone is left out, 1053)
        assert "canary: bucket le=+Inf (the total) counts NaN, not a request count (not countable)" in r.reason, \
            r.reason
    else:
        assert "is not a request count (NaN or infinite: not countable)" in r.reason
    stable = _judge(check, Histogram(B, bad), Histogram(B, GOOD_C))  # the stable's: never a pass either
    assert stable.outcome is not Outcome.PASS and "not countable" in stable.reason, stable.reason


@pytest.mark.parametrize("events,total", [(5.0, INF), (INF, INF), (NAN, 1000.0), (5.0, NAN)])
def test_an_error_count_that_is_no_count_is_not_countable_and_raises_nothing(events: float, total: float) -> None:
    r = _judge(ERR, Counts(50.0, 10000.0), Counts(events, total))  # Counts(5, +Inf) raised OverflowError
    assert r.outcome is Outcome.ERROR and "not countable" in r.reason, r.reason
    s = _judge(ERR, Counts(events, total), Counts(5.0, 1000.0))
    assert s.outcome is not Outcome.PASS and "not countable" in s.reason, s.reason


@pytest.mark.parametrize("counts", [[1.0, INF], [-INF, 3.0], [1.0, 2.0 ** 63], [1.0, 2.0 ** 53], [NAN, 3.0]])
def test_ints_never_makes_an_integer_of_what_is_no_count(counts: list[float]) -> None:
    with pytest.raises(ValueError, match="is not a count"):
        stats._ints(np.array(counts))
    assert stats._ints(np.array([0.4, 2.5, 9.6])).tolist() == [0, 2, 10]  # increase()'s fractions: rounded


def test_infinite_errors_from_prometheus_are_not_countable_not_every_request_failed() -> None:
    """+Inf errors (an overflowed or jumped counter) were clamped to the arm's 1,000 requests: a 100% error rate,
    a FAIL and a rollback of a canary nobody counted."""
    provider = PrometheusProvider("http://127.0.0.1:9", retries=1)
    answers = {"stable/requests": "10000", "stable/errors": "50", "canary/requests": "1000", "canary/errors": "+Inf"}
    provider.query = lambda query, **kw: [  # type: ignore[method-assign]
        {"metric": {q.PART_LABEL: k}, "value": [1.0, v]} for k, v in answers.items()]
    target = Target(namespace="ns", model="m", stable_version="v1", canary_version="v2", virtual_service="vs")
    stable, canary = provider.measure(POLICY, ERR, target, window_s=300)
    assert isinstance(stable, Counts)
    assert isinstance(canary, NotCountable) and "inf errors for the canary arm in 300s, not a count" in str(canary)
    assert J.judge_check(ERR, stable, canary, alpha=0.01, min_canary=100).outcome is Outcome.ERROR


@pytest.mark.parametrize("events", [INF, NAN])
def test_a_batched_delta_of_errors_that_is_no_count_is_not_countable(events: float) -> None:
    with pytest.raises(NotCountable, match="not a count"):
        delta._counts(events, 1000.0, 0, "check 'err' (canary)")


@pytest.mark.parametrize("errors", ["-5", "-0.5"])
def test_negative_errors_from_prometheus_are_not_countable_not_none_failed(errors: str) -> None:
    """A negative error count (an errors query that subtracts, a counter that jumped back) was clamped to 0: no
    request failed, a PASS on a count nobody made (decision 1015). -0.3 (extrapolation's hair) is still read as 0."""
    target = Target(namespace="ns", model="m", stable_version="v1", canary_version="v2", virtual_service="vs")

    def measure(canary_errors: str):  # type: ignore[no-untyped-def]
        provider = PrometheusProvider("http://127.0.0.1:9", retries=1)
        answers = {"stable/requests": "10000", "stable/errors": "50", "canary/requests": "1000",
                   "canary/errors": canary_errors}
        provider.query = lambda query, **kw: [  # type: ignore[method-assign]
            {"metric": {q.PART_LABEL: k}, "value": [1.0, v]} for k, v in answers.items()]
        return provider.measure(POLICY, ERR, target, window_s=300)

    stable, canary = measure(errors)
    assert isinstance(canary, NotCountable) and f"{float(errors)} errors for the canary arm" in str(canary)
    assert J.judge_check(ERR, stable, canary, alpha=0.01, min_canary=100).outcome is Outcome.ERROR
    assert measure("-0.3")[1] == Counts(0.0, 1000.0)


def test_a_batched_delta_of_negative_errors_is_not_countable() -> None:
    with pytest.raises(NotCountable, match="not a count"):
        delta._counts(-5.0, 1000.0, 0, "check 'err' (canary)")
    assert delta._counts(-0.2, 1000.0, 0, "check 'err' (canary)").data == Counts(0.0, 1000.0)


def _without(h: Histogram, i: int) -> Histogram:
    """`h` as an exporter that did not export its i-th bucket would have it: the coarser layout."""
    keep = [j for j in range(len(h.bounds)) if j != i]
    return Histogram(tuple(h.bounds[j] for j in keep), tuple(h.counts[j] for j in keep), requests=h.requests)


SLOW = (100.0, 300.0, 600.0, 800.0, 950.0, 1000.0)  # a canary slower than its +20% and its 250 ms: a FAIL when clean


def test_a_nan_bucket_in_every_place_of_both_arms_is_judged_as_the_layout_without_it_and_named() -> None:
    """Each bucket of either arm NaN in turn (decision 1017's scan, kept as a test). On c078ae96 `stats._ints` cast
    it to -2^63 with numpy's "invalid value encountered in cast" and judged the garbage; 1052 refused the whole arm
    (ERROR), so a canary whose other buckets showed the breach was not rolled back at that look. Now a NaN below
    +Inf leaves only that bound out: the verdict is the one of the layout without it (never a PASS that layout
    would not give), its reason naming the `le`; a NaN total (+Inf) stays not countable (decision 1053)."""
    for i, le in enumerate(("50", "100", "150", "200", "300", "+Inf")):
        for check in (LAT, PS):
            for stable, canary, arm in ((Histogram(B, GOOD_S), Histogram(B, SLOW), "canary"),
                                        (Histogram(B, GOOD_S), Histogram(B, GOOD_C), "canary"),
                                        (Histogram(B, GOOD_S), Histogram(B, GOOD_C), "stable")):
                bad = stable if arm == "stable" else canary
                nan = Histogram(B, tuple(NAN if j == i else x for j, x in enumerate(bad.counts)))
                r = _judge(check, nan, canary) if arm == "stable" else _judge(check, stable, nan)
                if le == "+Inf":
                    assert r.outcome is not Outcome.PASS and f"{arm}: bucket le=+Inf (the total) counts NaN" in r.reason, r.reason
                    if arm == "canary":
                        assert r.outcome is Outcome.ERROR, r.reason
                    continue
                coarser = (_judge(check, _without(stable, i), canary) if arm == "stable" else
                           _judge(check, stable, _without(canary, i)))
                said = f"{arm}: bucket le={le} counts NaN (Prometheus could not compute it): left out, judged on its 4 "
                assert r.reason.startswith(said) and r.reason.endswith(coarser.reason), (r.reason, coarser.reason)
                assert (r.outcome, r.extra) == (coarser.outcome, coarser.extra), (r.reason, coarser.reason)


def test_a_canary_whose_other_buckets_show_a_breach_fails_at_that_look_beside_a_nan_bucket() -> None:
    """The two golden looks 1052 turned FAIL -> ERROR (seeds 61 and 229) in small: a canary far past its 250 ms
    ceiling and its +20% with one bucket Prometheus could not compute is a FAIL (rolled back at that look), not an
    ERROR left to the deadline; the same canary with its +Inf bucket NaN (no total) is not countable (1053)."""
    far = (10.0, 20.0, 30.0, 40.0, 50.0, 1000.0)  # 95% of its requests slower than 300 ms
    for i in range(len(B) - 1):
        c = Histogram(B, tuple(NAN if j == i else x for j, x in enumerate(far)))
        r = _judge(LAT, Histogram(B, GOOD_S), c)
        assert r.outcome is Outcome.FAIL, r.reason
    r = _judge(LAT, Histogram(B, GOOD_S), Histogram(B, (*far[:-1], NAN)))
    assert r.outcome is Outcome.ERROR and "canary: bucket le=+Inf (the total) counts NaN" in r.reason, r.reason


def test_nan_buckets_left_out_and_counts_not_cumulative_without_them_stay_not_countable() -> None:
    """Several NaN buckets are all named; a Histogram whose counts are not cumulative is refused where it is built,
    NaN or not (`Histogram.__post_init__`), so no dropped bound hides a decrease (1053)."""
    r = _judge(LAT, Histogram(B, GOOD_S), Histogram(B, (NAN, 800.0, NAN, 980.0, 990.0, 1000.0)))
    assert r.reason.startswith("canary: buckets le=50, le=150 count NaN (Prometheus could not compute them): left out, "
                               "judged on its 3 other finite bounds (a coarser layout); "), r.reason
    assert r.outcome is _judge(LAT, Histogram(B, GOOD_S), Histogram((100.0, 200.0, 300.0, INF),
                                                                      (800.0, 980.0, 990.0, 1000.0))).outcome
    with pytest.raises(ValueError, match="cumulative"):
        Histogram(B, (400.0, NAN, 300.0, 980.0, 990.0, 1000.0))
    r = _judge(LAT, Histogram(B, GOOD_S), Histogram(B, (NAN, NAN, NAN, NAN, NAN, 1000.0)))  # no finite bound left
    assert r.outcome is not Outcome.PASS and "le=50, le=100, le=150, le=200, le=300" in r.reason, r.reason

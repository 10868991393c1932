"""A request count, an error count or a latency bucket that counts nothing is not countable on every measuring path
(decision 1050), against one real Prometheus whose backfilled OpenMetrics history holds +Inf and NaN samples.

The per-rollout path (`PrometheusProvider`) said +Inf requests "Prometheus answered inf requests ... not a count" as
MetricsUnavailable: the `infrastructure` class, an outage that pages the platform (and `onPrometheusOutage`), where
the batched path (`delta`) said NotCountable; a NaN request count went through as a count; a NaN latency bucket was
"not cumulative", MetricsUnavailable again. Now each is NotCountable on both paths, naming the series (the query, or
the metric and arm; a bucket by its `le`): the canary's check an ERROR that is not `unavailable`, the stable's arm
not measured (its limits on the canary alone still judged), never a pass. A NaN bucket below +Inf on the per-rollout
path leaves only that bound out, the arm judged on its other bounds (decision 1053).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from canary.analysis import judge as J
from canary.errors import NotCountable
from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Histogram, Outcome, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, Series, counter, history_window
from tests.integration.test_metrics_attack2 import _openmetrics

pytestmark = pytest.mark.integration

WINDOW_S = 600
POLICY = parse_policy({"steps": [10, 100], "metrics": {"source": "model"}, "checks": [
    {"name": "errors", "kind": "error_rate", "max_increase_points": 1},
    {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 500},
    {"name": "ps", "kind": "prediction_shift", "max_psi": 0.2}]})
ERRORS, LAT, PS = POLICY.checks


@dataclass(frozen=True)
class _BadFrom(Series):
    """A counter whose samples from `begin` on are `bad` (+Inf: it overflowed or jumped; NaN: its exporter broke)."""

    begin: float = 0.0
    bad: float = math.inf

    def value(self, t: float, start: float) -> float:
        return self.bad if t >= self.begin else self.per_s * (t - start)


def _arms(model: str, *, bad_arm: str = "", bad: float = math.inf, begin: float = 0.0) -> list[Series]:
    """Stable v1 and canary v2, 99 successes and 1 error a second each, 100 latency observations a second (10 under
    50 ms, 30 under 100 ms); `bad_arm`'s success counter (or, with `le`, that bucket) `bad` from `begin` on."""
    out: list[Series] = []
    for version, arm in (("v1", "stable"), ("v2", "canary")):
        m = {"model_name": model, "model_version": version}
        ok = {**m, "outcome": "success"}
        out += [_BadFrom("model_requests_total", ok, 99.0, begin=begin, bad=bad)] if arm == bad_arm else \
            counter("model_requests_total", ok, 99.0)
        out += counter("model_requests_total", {**m, "outcome": "error"}, 1.0)
        for le, per_s in (("0.05", 10.0), ("0.1", 40.0), ("+Inf", 100.0)):
            labels = {**m, "le": le}
            name = "model_inference_duration_seconds_bucket"
            out += [_BadFrom(name, labels, per_s, begin=begin, bad=bad)] if f"{arm}/le={le}" == bad_arm else \
                counter(name, labels, per_s)
        for le, per_s in (("0.25", 100.0), ("0.5", 250.0), ("0.75", 350.0), ("+Inf", 400.0)):  # 4 rows a request
            out += counter("model_prediction_value_bucket", {**m, "le": le}, per_s)
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=1800, after_s=600)
    t0 = start + 1800
    series = _arms("inf-canary", bad_arm="canary", begin=t0 - 60) + _arms("inf-stable", bad_arm="stable", begin=t0 - 60)
    series += _arms("nan-canary", bad_arm="canary", bad=math.nan, begin=t0 - 60)
    series += _arms("nan-bucket", bad_arm="canary/le=0.1", bad=math.nan, begin=t0 - 60)
    series += _arms("nan-bucket-stable", bad_arm="stable/le=0.1", bad=math.nan, begin=t0 - 60)
    series += _arms("nan-total", bad_arm="canary/le=+Inf", bad=math.nan, begin=t0 - 60)
    with PromServer(history=_openmetrics(series, start=start, end=end), binary=prometheus_binary) as server:
        yield server, t0


def _target(model: str) -> Target:
    return Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")


def _provider(server: PromServer) -> PrometheusProvider:
    return PrometheusProvider(server.url, retries=1, budget_s=3.0)


def _per_rollout(server: PromServer, t0: float, check: Any, model: str) -> tuple[Any, Any]:
    return _provider(server).measure(POLICY, check, _target(model), window_s=WINDOW_S, at=t0)


def _batched(server: PromServer, t0: float, check: Any, model: str) -> tuple[Any, Any]:
    t = _target(model)
    batch = b.BatchMetrics(_provider(server))
    base = batch.snapshot([b.Want(POLICY, t)], at=t0 - WINDOW_S)
    now = batch.snapshot([b.Want(POLICY, t)], at=t0)
    return b.measure_delta(POLICY, check, t, now, base)


def _not_unavailable_error(check: Any, stable: Any, canary: Any) -> str:
    r = J.judge_check(check, stable, canary, alpha=0.01, min_canary=100)
    assert r.outcome is Outcome.ERROR and not r.extra.get("unavailable"), (r.outcome, r.extra, r.reason)
    return r.reason


@pytest.mark.parametrize("measure", [_per_rollout, _batched], ids=["per_rollout", "batched"])
@pytest.mark.parametrize("model,said", [("inf-canary", "inf"), ("nan-canary", "NaN")])
def test_a_canary_request_count_that_is_no_count_is_not_countable_not_prometheus_unavailable(
        prom: Any, measure: Any, model: str, said: str) -> None:
    """+Inf (an overflowed or jumped counter) or NaN requests of the canary: the per-rollout path raised
    MetricsUnavailable out of `measure` for +Inf (an outage) and read NaN as a count; now both paths say the
    canary's arm NotCountable, naming the series, and the judge an ERROR of its own (not `unavailable`)."""
    server, t0 = prom
    stable, canary = measure(server, t0, ERRORS, model)
    assert isinstance(stable, Counts), stable
    assert isinstance(canary, NotCountable), canary
    text = str(canary)
    assert "not a count" in text and ("model_requests_total" in text), text
    if measure is _per_rollout:
        assert f"Prometheus answered {said} requests for the canary arm" in text, text
    assert "could not measure canary" in _not_unavailable_error(ERRORS, stable, canary)


@pytest.mark.parametrize("measure", [_per_rollout, _batched], ids=["per_rollout", "batched"])
def test_a_stable_request_count_that_is_infinite_is_not_countable_and_the_canary_alone_is_judged(
        prom: Any, measure: Any) -> None:
    server, t0 = prom
    stable, canary = measure(server, t0, ERRORS, "inf-stable")
    assert isinstance(stable, NotCountable) and isinstance(canary, Counts), (stable, canary)
    r = J.judge_check(ERRORS, stable, canary, alpha=0.01, min_canary=100)
    assert r.outcome is not Outcome.PASS and not r.extra.get("unavailable"), r


def test_request_counts_of_a_canary_that_is_no_count_are_not_countable_on_both_paths(prom: Any) -> None:
    """The pass floor's count (`request_counts`): the per-rollout path raised MetricsUnavailable for +Inf, the
    batched one too (`delta.requests_delta`); now NotCountable for the canary, NaN for the stable (decision 399)."""
    server, t0 = prom
    provider = _provider(server)
    for model in ("inf-canary", "nan-canary"):
        with pytest.raises(NotCountable, match="not a count"):
            provider.request_counts(POLICY, _target(model), window_s=WINDOW_S, at=t0)
    stable, canary = provider.request_counts(POLICY, _target("inf-stable"), window_s=WINDOW_S, at=t0)
    assert math.isnan(stable) and canary > 0, (stable, canary)
    t = _target("inf-canary")
    batch = b.BatchMetrics(provider)
    base, now = batch.snapshot([b.Want(POLICY, t)], at=t0 - WINDOW_S), batch.snapshot([b.Want(POLICY, t)], at=t0)
    with pytest.raises(NotCountable, match="not a count"):
        b.requests_delta(POLICY, t, now, base)


def test_a_nan_latency_bucket_leaves_only_its_bound_out_on_the_per_rollout_path(prom: Any) -> None:
    """The canary's le="0.1" bucket NaN (its exporter broke): the per-rollout path said "not cumulative",
    MetricsUnavailable (an outage) on c078ae96, 1052 NotCountable (the canary's check an ERROR). Now only that bound
    is unknown: the Histogram keeps it NaN (not carried from le="0.05", a count invented), and the judge leaves it
    out, naming it, and judges the arm on le="0.05" and +Inf, as an exporter without le="0.1" (decision 1053). The
    stable's the same; a NaN +Inf bucket (the total) stays NotCountable."""
    server, t0 = prom
    stable, canary = _per_rollout(server, t0, LAT, "nan-bucket")
    assert isinstance(canary, Histogram) and canary.bounds == (50.0, 100.0, math.inf), canary
    assert math.isnan(canary.counts[1]) and canary.counts[::2] == stable.counts[::2], (stable, canary)
    r = J.judge_check(LAT, stable, canary, alpha=0.01, min_canary=100)
    coarser = J.judge_check(LAT, stable, Histogram((50.0, math.inf), canary.counts[::2]), alpha=0.01, min_canary=100)
    assert r.reason == ("canary: bucket le=100 counts NaN (Prometheus could not compute it): left out, judged on its "
                        f"1 other finite bound (a coarser layout); {coarser.reason}"), r.reason
    assert r.outcome is coarser.outcome is not Outcome.ERROR, r.reason
    stable, canary = _per_rollout(server, t0, LAT, "nan-bucket-stable")
    assert isinstance(stable, Histogram) and math.isnan(stable.counts[1]), stable
    r = J.judge_check(LAT, stable, canary, alpha=0.01, min_canary=100)
    assert r.reason.startswith("stable: bucket le=100 counts NaN") and r.outcome is not Outcome.PASS, r.reason
    stable, canary = _per_rollout(server, t0, LAT, "nan-total")
    assert isinstance(canary, NotCountable) and "le=+Inf (its total)" in str(canary), canary
    _not_unavailable_error(LAT, stable, canary)


def test_a_nan_latency_bucket_is_not_countable_named_by_its_le_on_the_batched_path(prom: Any) -> None:
    """The batched path's snapshot marks the NaN bucket sample (`UNREADABLE`, named by its `le`): the canary's arm
    NotCountable, the check an ERROR that is not `unavailable` (not MetricsUnavailable as on c078ae96); the stable's
    the same, never a pass. Not yet judged on the other bounds as the per-rollout path is (decision 1053's left-over:
    a snapshot holds no NaN)."""
    server, t0 = prom
    stable, canary = _batched(server, t0, LAT, "nan-bucket")
    assert isinstance(stable, Histogram) and isinstance(canary, NotCountable), (stable, canary)
    assert "le=0.1" in str(canary), canary
    _not_unavailable_error(LAT, stable, canary)
    stable, canary = _batched(server, t0, LAT, "nan-bucket-stable")
    assert isinstance(stable, NotCountable) and isinstance(canary, Histogram), (stable, canary)
    r = J.judge_check(LAT, stable, canary, alpha=0.01, min_canary=100)
    assert r.outcome is not Outcome.PASS and not r.extra.get("unavailable"), r


@pytest.mark.parametrize("measure", [_per_rollout, _batched], ids=["per_rollout", "batched"])
@pytest.mark.parametrize("model", ["inf-canary", "nan-canary"])
def test_a_prediction_shifts_request_count_that_is_no_count_is_not_countable(
        prom: Any, measure: Any, model: str) -> None:
    """A prediction_shift check's request count (the floor `min_canary_requests` is compared with, rows not being
    requests): +Inf raised MetricsUnavailable out of the per-rollout `measure` (NaN read as 0 requests), and the
    batched path counted rows instead (requests unknown); now the canary's arm is NotCountable on both paths."""
    server, t0 = prom
    stable, canary = measure(server, t0, PS, model)
    assert isinstance(stable, Histogram) and isinstance(canary, NotCountable), (stable, canary)
    _not_unavailable_error(PS, stable, canary)

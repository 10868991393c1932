"""A second attacker on the path from Prometheus to the judge (decision 100), against one real,
backfilled Prometheus whose history holds every case: each test failed before its fix.

- Istio, gRPC: a model served over gRPC behind Istio (Triton's port 8001, `appProtocol: grpc` in our
  own deploy example) fails with HTTP 200 and `grpc_response_status="14"` (UNAVAILABLE). The errors
  query matched `response_code=~"5.."` alone, so a canary failing 20% of its calls read as 0 errors,
  per rollout and in the batched snapshot alike, and passed.
- NaN or infinite samples, batched: `last_over_time` of a counter whose last sample is NaN answers
  NaN, and the snapshot left that series out: a canary whose error counter went NaN read 0 errors
  from the snapshot (the per-rollout read says NoData). Such an arm is now unreadable in that
  snapshot: NotCountable (MetricsUnavailable before decision 1050), or UnusableStepStart for a step-start snapshot (the next one starts
  the step again), through the persisted form too.
- A custom check's `model_version=~"{version}"`: the value was escaped for a string but not as a
  regex, so "v1.0" also read "v100"'s series, and "v2.0+cpu" ('+' a quantifier) read none of its own.
- An exporter restarted in place with another bucket layout (same pod, same labels; a bound removed):
  the removed bound's series counted only the part of the window before the restart, and the
  per-rollout read kept that bound (every histogram of the arm "exports" it), so the arm's CDF there
  was half what it was. A bucket series with fewer samples in the window than its histogram's others
  is now not counted, and its bound is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from canary.errors import NoData, NotCountable
from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Target
from canary.policy import Policy, parse_policy
from canary.metrics.queries import escape
from canary.sandbox.promserver import PromServer, Series, counter, history_window

pytestmark = pytest.mark.integration

WINDOW_S = 600
_ISTIO = {"destination_service_namespace": "ml", "reporter": "destination"}


@dataclass(frozen=True)
class _NaNFrom(Series):
    """A counter whose samples from `begin` until `until` are NaN (its exporter broke, for a while)."""

    begin: float = 0.0
    until: float = math.inf

    def value(self, t: float, start: float) -> float:
        return math.nan if self.begin <= t < self.until else self.per_s * (t - start)


def _nan_errors(model: str, *, begin: float, until: float = math.inf) -> list[Series]:
    """Stable v1 at 1% errors; canary v2 at 20% errors, its error counter NaN from `begin` to `until`."""
    out: list[Series] = []
    for version, ok, bad in (("v1", 99.0, 1.0), ("v2", 40.0, 10.0)):
        m = {"model_name": model, "model_version": version}
        out += counter("model_requests_total", {**m, "outcome": "success"}, ok)
        if version == "v1":
            out += counter("model_requests_total", {**m, "outcome": "error"}, bad)
        else:
            out.append(_NaNFrom("model_requests_total", {**m, "outcome": "error"}, bad, begin=begin, until=until))
    return out


@dataclass(frozen=True)
class _During(Series):
    """A counter written only from `begin` until `until`, growing from 0 at `begin` (a process's life)."""

    begin: float = -math.inf
    until: float = math.inf

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        if not self.begin <= t < self.until:
            return None
        return self.per_s * (t - max(start, self.begin))


def _openmetrics(series: list[Series], *, start: float, end: float, step: float = 15.0) -> str:
    """`promserver.openmetrics`, where a series without a value at a time (None) has no sample there."""
    by_name: dict[str, list[Series]] = {}
    for x in series:
        by_name.setdefault(x.name, []).append(x)
    lines: list[str] = []
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} unknown")
        for x in group:
            head = name + "{" + ",".join(f'{k}="{escape(v)}"' for k, v in x.labels.items()) + "}"
            for k in range(int((end - start) // step) + 1):
                t = start + k * step
                v = x.value(t, start)
                if v is not None:
                    lines.append(f"{head} {v!r} {t:.3f}")
    return "\n".join(lines) + "\n# EOF\n"


def _upgraded_in_place(model: str, at: float) -> list[Series]:
    """Stable v1 and canary v2 alike, 60 obs/s: 10 in (0, 50] ms, 20 in (50, 100], 30 above. The canary's
    one pod restarts in place at `at` exporting no le="0.1" (its other buckets restart from 0)."""
    out: list[Series] = []
    old, new = [("0.05", 10), ("0.1", 30), ("+Inf", 60)], [("0.05", 10), ("+Inf", 60)]
    for le, per_s in old:
        out.append(_During("model_inference_duration_seconds_bucket",
                           {"model_name": model, "model_version": "v1", "pod": "s", "le": le}, per_s))
        out.append(_During("model_inference_duration_seconds_bucket",
                           {"model_name": model, "model_version": "v2", "pod": "c", "le": le}, per_s, until=at))
    for le, per_s in new:
        out.append(_During("model_inference_duration_seconds_bucket",
                           {"model_name": model, "model_version": "v2", "pod": "c", "le": le}, per_s, begin=at))
    return out


def _grpc(model: str) -> list[Series]:
    """Stable v1: 100 calls/s, all OK. Canary v2: 50 calls/s, 10 of them UNAVAILABLE (20%), 1 of them
    INVALID_ARGUMENT (a client's error, not counted, as a 4xx is not), and 1/s HTTP 503 with status 14
    (one series both matchers pick: counted once)."""
    i = {**_ISTIO, "destination_service_name": model}
    out = counter("istio_requests_total", {**i, "destination_version": "v1", "response_code": "200",
                                           "grpc_response_status": "0"}, 100)
    v2 = {**i, "destination_version": "v2"}
    out += counter("istio_requests_total", {**v2, "response_code": "200", "grpc_response_status": "0"}, 38)
    out += counter("istio_requests_total", {**v2, "response_code": "200", "grpc_response_status": "14"}, 10)
    out += counter("istio_requests_total", {**v2, "response_code": "200", "grpc_response_status": "3"}, 1)
    out += counter("istio_requests_total", {**v2, "response_code": "503", "grpc_response_status": "14"}, 1)
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=3600, after_s=3600)
    t0 = start + 3600
    series = _grpc("grpc") + _nan_errors("nan-now", begin=t0 - 60)
    series += counter("model_requests_total", {"model_name": "rx", "model_version": "v1.0"}, 10)
    series += counter("model_requests_total", {"model_name": "rx", "model_version": "v100"}, 1000)  # a decoy
    series += counter("model_requests_total", {"model_name": "rx", "model_version": "v2.0+cpu"}, 20)
    series += _nan_errors("nan-base", begin=t0 - WINDOW_S - 30, until=t0 - WINDOW_S + 1)  # NaN at the step start only
    series += _upgraded_in_place("inplace", t0 - WINDOW_S / 2)
    server = PromServer(history=_openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, start + 3600
    finally:
        server.stop()


def _policy(source: str) -> Policy:
    return parse_policy({"steps": [10, 100], "metrics": {"source": source},
                         "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]})


def _target(model: str) -> Target:
    return Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")


def _rate(c: Any) -> float:
    assert isinstance(c, Counts), c
    return c.events / c.total


def test_grpc_failures_behind_istio_are_errors_per_rollout(prom: Any) -> None:
    server, t0 = prom
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    pol = _policy("istio")
    stable, canary = provider.measure(pol, pol.checks[0], _target("grpc"), window_s=WINDOW_S, at=t0)
    assert _rate(stable) == 0.0
    assert _rate(canary) == pytest.approx(11 / 50), canary  # 10 UNAVAILABLE + 1 503 (once); not the INVALID_ARGUMENT


def test_grpc_failures_behind_istio_are_errors_in_the_batched_snapshot(prom: Any) -> None:
    server, t0 = prom
    pol, t = _policy("istio"), _target("grpc")
    batch = b.BatchMetrics(PrometheusProvider(server.url, retries=1, budget_s=3.0))
    base = batch.snapshot([b.Want(pol, t)], at=t0 - WINDOW_S)
    now = batch.snapshot([b.Want(pol, t)], at=t0)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert _rate(stable) == 0.0
    assert _rate(canary) == pytest.approx(11 / 50), canary


def _snapshots(server: PromServer, t0: float, pol: Policy, t: Target) -> tuple[b.Snapshot, b.Snapshot]:
    batch = b.BatchMetrics(PrometheusProvider(server.url, retries=1, budget_s=3.0))
    base = batch.snapshot([b.Want(pol, t)], at=t0 - WINDOW_S).restrict(pol, t, step_started_at=t0 - WINDOW_S)
    now = batch.snapshot([b.Want(pol, t)], at=t0)
    return b.Snapshot.from_json(base.to_json()), now  # the step-start snapshot as the controller persists it


def test_a_nan_error_counter_is_not_zero_errors_in_the_batched_snapshot(prom: Any) -> None:
    server, t0 = prom
    pol, t = _policy("model"), _target("nan-now")
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    _, canary = provider.measure(pol, pol.checks[0], t, window_s=WINDOW_S, at=t0)
    assert isinstance(canary, NoData) and "NaN" in str(canary)  # the per-rollout read: could not measure
    base, now = _snapshots(server, t0, pol, t)
    # not countable, as per rollout: Prometheus answered, whole (never "Prometheus unavailable"; decision 1050)
    _, batched = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(batched, NotCountable), batched
    assert "NaN or infinite model_requests_total sample for nan-now/v2" in str(batched), batched


def test_a_nan_in_the_step_start_snapshot_starts_the_step_again(prom: Any) -> None:
    server, t0 = prom
    pol, t = _policy("model"), _target("nan-base")
    base, now = _snapshots(server, t0, pol, t)
    with pytest.raises(b.UnusableStepStart, match="NaN or infinite"):
        b.measure_delta(pol, pol.checks[0], t, now, base)


def test_a_step_start_snapshot_taken_before_the_grpc_query_starts_the_step_again(prom: Any) -> None:
    """A step-start snapshot persisted by a controller before decision 100 holds the Istio errors family
    under its old key (5xx only): it cannot measure the new one. Before, the check was NoData for the
    rest of the step (the step could not pass, and ran to its no-data deadline); now the next snapshot
    starts the step again."""
    server, t0 = prom
    pol, t = _policy("istio"), _target("grpc")
    base, now = _snapshots(server, t0, pol, t)
    doc = base.to_dict()
    new_key = next(k for k in doc["series"] if "grpc_response_status" in k)
    doc["series"][new_key.split(" or ")[0] + " by " + new_key.rsplit(" by ", 1)[1]] = doc["series"].pop(new_key)
    old = b.Snapshot.from_dict(doc)
    with pytest.raises(b.UnusableStepStart, match="holds no istio_requests_total"):
        b.measure_delta(pol, pol.checks[0], t, now, old)


def test_a_custom_regex_matcher_reads_exactly_its_own_version(prom: Any) -> None:
    server, t0 = prom
    pol = parse_policy({"steps": [10, 100], "checks": [{
        "name": "rps", "kind": "custom", "max_value": 100,
        "query": 'sum(rate(model_requests_total{model_name="{model}",model_version=~"{version}"}[{window}]))'}]})
    t = Target(namespace="ml", virtual_service="rx", model="rx", stable_version="v1.0", canary_version="v2.0+cpu")
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    stable, canary = provider.measure(pol, pol.checks[0], t, window_s=WINDOW_S, at=t0)
    assert getattr(stable, "value", None) == pytest.approx(10.0), stable  # not v100's 1000 beside it
    assert getattr(canary, "value", None) == pytest.approx(20.0), canary


def test_a_bound_removed_by_an_in_place_restart_is_left_out_not_half_counted(prom: Any) -> None:
    server, t0 = prom
    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "p50", "kind": "latency", "quantile": 0.5,
                                                        "max_ms": 900}]})
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    stable, canary = provider.measure(pol, pol.checks[0], _target("inplace"), window_s=WINDOW_S, at=t0)
    assert stable.bounds == (50.0, 100.0, math.inf), stable  # type: ignore[union-attr]
    # before: (50, 100, inf) with le=100 at ~15/60 of the canary's requests (it is 30/60)
    assert canary.bounds == (50.0, math.inf), canary  # type: ignore[union-attr]
    assert canary.counts[0] / canary.counts[-1] == pytest.approx(1 / 6, rel=0.02)  # type: ignore[union-attr]

"""Batched snapshots against a real Prometheus: deltas equal known increases and `measure()`.

History is backfilled at 1 s resolution with linear counters, so the increase
between two snapshot times t1 < t2 is exactly rate * (t2 - t1), and
`increase(...[t2 - t1])` at t2 (what `PrometheusProvider.measure` sends) is
exact too. One model restarts (counters reset) between t1 and t2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Histogram, Outcome, Target
from canary.policy import Policy, parse_policy
from canary.sandbox.promserver import PromServer, Series, counter, gauge, histogram, history_window, openmetrics
from tests.support.prom import ISTIO_LATENCY_BOUNDS_MS, MODEL_LATENCY_BOUNDS_S, cumulative

pytestmark = pytest.mark.integration
PRED_BOUNDS = (0.25, 0.5, 0.75)
LAT_SHAPE = (1, 2, 4, 6, 4, 2, 1, 0.5, 0.25)  # per-bucket rate per unit of traffic, incl. +Inf
PRED_SHAPE = (1, 3, 3, 1)
T1_OFFSET, T2_OFFSET, RESTART_OFFSET = 200.0, 320.0, 260.0
WINDOW = T2_OFFSET - T1_OFFSET
MODELS = {"rec-a": ("v1", "v2"), "rec-b": ("v1", "v3"), "a.*|b": ("v1", "v2"), "b": ("v1", "v2"),
          "restart": ("v1", "v2"), "gauge-only": ("v1", "v2")}
CHECKS = [
    {"name": "lat", "kind": "latency", "max_ms": 100},
    {"name": "err", "kind": "error_rate", "max_rate_pct": 5},
    {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2},
    {"name": "miss", "kind": "feature_missing", "max_rate_pct": 5},
    {"name": "rps", "kind": "custom", "max_value": 100,
     "query": 'sum(rate(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))'},
]
POLICIES = {
    "model": parse_policy({"steps": [10, 100], "checks": CHECKS}),
    "istio": parse_policy({"steps": [10, 100], "metrics": {"source": "istio"}, "checks": CHECKS[:2]}),
    "triton": parse_policy({"steps": [10, 100], "metrics": {"source": "triton"}, "checks": CHECKS[1:2]}),
}


@dataclass(frozen=True)
class Restarting(Series):
    """A counter whose process restarts at `restart_at`: it starts again from 0."""

    restart_at: float = math.inf

    def value(self, t: float, start: float) -> float:
        return self.per_s * (t - (self.restart_at if t >= self.restart_at else start))


def target(model: str, namespace: str = "ml") -> Target:
    stable, canary = MODELS[model]
    return Target(namespace=namespace, virtual_service=model, model=model, stable_version=stable, canary_version=canary)


def rate(model: str, arm: str, namespace: str = "ml") -> float:
    """Traffic of one arm (requests/s): different for every model, arm and namespace."""
    i = list(MODELS).index(model)
    return 1.0 + 2 * i + (1 if arm == "canary" else 0) + (10 if namespace != "ml" else 0)


def error_share(arm: str) -> float:
    return 0.02 if arm == "stable" else 0.05


def model_series(model: str, arm: str, *, restart_at: float = math.inf) -> list[Series]:
    v = dict(zip(("stable", "canary"), MODELS[model]))[arm]
    m, r = {"model_name": model, "model_version": v}, rate(model, arm)
    out = histogram("model_inference_duration_seconds", m, MODEL_LATENCY_BOUNDS_S, [x * r for x in LAT_SHAPE])
    out += histogram("model_prediction_value", m, PRED_BOUNDS, [x * r for x in PRED_SHAPE])
    out += counter("model_requests_total", {**m, "outcome": "success"}, r * (1 - error_share(arm)))
    out += counter("model_requests_total", {**m, "outcome": "error"}, r * error_share(arm))
    out += gauge("model_feature_missing_rate", {**m, "feature_name": "age"}, 0.5 / 8)  # what the counters say
    if model != "gauge-only":
        out += counter("model_features_total", {**m, "state": "missing"}, r * 0.5)
        out += counter("model_features_total", {**m, "state": "present"}, r * 7.5)
    return [Restarting(s.name, s.labels, s.per_s, s.gauge, restart_at) if not s.gauge else s for s in out]


def mesh_series(model: str, arm: str, namespace: str) -> list[Series]:
    v = dict(zip(("stable", "canary"), MODELS[model]))[arm]
    r = rate(model, arm, namespace)
    out: list[Series] = []
    for reporter in ("destination", "source"):  # counted once: the batch keeps reporter="destination"
        i = {"reporter": reporter, "destination_service_name": model, "destination_service_namespace": namespace,
             "destination_version": v}
        out += histogram("istio_request_duration_milliseconds", i, ISTIO_LATENCY_BOUNDS_MS, [x * r for x in LAT_SHAPE])
        out += counter("istio_requests_total", {**i, "response_code": "200"}, r * (1 - error_share(arm)))
        out += counter("istio_requests_total", {**i, "response_code": "503"}, r * error_share(arm))
    if namespace == "ml":
        tr = {"model": model, "version": v}
        out += counter("nv_inference_request_success", tr, r * (1 - error_share(arm)))
        out += counter("nv_inference_request_failure", tr, r * error_share(arm))
    return out


@dataclass(frozen=True)
class World:
    server: PromServer
    prom: PrometheusProvider
    t1: float
    t2: float
    restart: float


@pytest.fixture(scope="module")
def world(prometheus_binary: str) -> Iterator[World]:
    start, end = history_window(before_s=400, after_s=0, step=1.0)
    series: list[Series] = []
    for model in MODELS:
        for arm in ("stable", "canary"):
            restart = start + RESTART_OFFSET if model == "restart" else math.inf
            series += model_series(model, arm, restart_at=restart)
    for arm in ("stable", "canary"):
        for ns in ("ml", "other"):  # the same service name in two namespaces: two rollouts
            series += mesh_series("rec-a", arm, ns)
    server = PromServer(history=openmetrics(series, start=start, end=end, step=1.0), binary=prometheus_binary)
    server.start()
    prom = PrometheusProvider(server.url, retries=2, budget_s=5.0, backoff_s=0.05)
    yield World(server, prom, start + T1_OFFSET, start + T2_OFFSET, start + RESTART_OFFSET)
    server.stop()


def all_wants() -> list[b.Want]:
    out = [b.Want(POLICIES["model"], target(m)) for m in MODELS]
    out += [b.Want(POLICIES["istio"], target("rec-a", ns)) for ns in ("ml", "other")]
    out.append(b.Want(POLICIES["triton"], target("rec-a")))
    return out


@pytest.fixture(scope="module")
def snaps(world: World) -> tuple[b.Snapshot, b.Snapshot, int]:
    batch = b.BatchMetrics(world.prom)
    base = batch.snapshot(all_wants(), at=world.t1)
    now = batch.snapshot(all_wants(), at=world.t2)
    return base, now, batch.queries_last


def chk(policy: Policy, name: str) -> Any:
    return next(c for c in policy.checks if c.name == name)


def counts(data: Any) -> tuple[float, float]:
    assert isinstance(data, Counts)
    return data.events, data.total


def approx(x: Any) -> Any:
    return pytest.approx(x, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("model", ["rec-a", "rec-b", "a.*|b", "b"])
def test_delta_is_the_known_increase(snaps: tuple[b.Snapshot, b.Snapshot, int], model: str) -> None:
    base, now, _ = snaps
    pol, t = POLICIES["model"], target(model)
    lat = b.measure_delta(pol, chk(pol, "lat"), t, now, base)
    pred = b.measure_delta(pol, chk(pol, "shift"), t, now, base)
    err = b.measure_delta(pol, chk(pol, "err"), t, now, base)
    miss = b.measure_delta(pol, chk(pol, "miss"), t, now, base)
    for i, arm in enumerate(("stable", "canary")):
        n = rate(model, arm) * WINDOW
        assert isinstance(lat[i], Histogram)
        assert lat[i].bounds == approx((*[x * 1000 for x in MODEL_LATENCY_BOUNDS_S], math.inf))
        assert lat[i].counts == approx(cumulative(tuple(x * n for x in LAT_SHAPE)))
        assert pred[i].counts == approx(cumulative(tuple(x * n for x in PRED_SHAPE)))
        assert counts(err[i]) == approx((n * error_share(arm), n))
        assert counts(miss[i]) == approx((n * 0.5 / 8, n))  # the share of values missing, over requests
    assert b.requests_delta(pol, t, now, base) == approx((rate(model, "stable") * WINDOW, rate(model, "canary") * WINDOW))


@pytest.mark.parametrize(("source", "model", "namespace"), [
    ("model", "rec-a", "ml"), ("model", "a.*|b", "ml"), ("model", "b", "ml"),
    ("istio", "rec-a", "ml"), ("istio", "rec-a", "other"), ("triton", "rec-a", "ml"),
])
def test_delta_equals_provider_measure_over_the_same_window(
    world: World, snaps: tuple[b.Snapshot, b.Snapshot, int], source: str, model: str, namespace: str,
) -> None:
    base, now, _ = snaps
    pol, t = POLICIES[source], target(model, namespace)
    for check in pol.checks:
        if not b.batchable(pol, check):
            continue  # feature_missing included: both paths count its share over requests
        got = b.measure_delta(pol, check, t, now, base)
        want = world.prom.measure(pol, check, t, window_s=int(WINDOW), at=world.t2)
        for g, w in zip(got, want):
            if isinstance(w, Histogram):
                assert isinstance(g, Histogram) and g.bounds == approx(w.bounds) and g.counts == approx(w.counts)
            else:
                assert counts(g) == approx(counts(w))
    assert b.requests_delta(pol, t, now, base) == approx(world.prom.request_counts(pol, t, window_s=int(WINDOW), at=world.t2))


def test_query_count_does_not_grow_with_rollouts(world: World, snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    _, _, queries = snaps
    assert queries == 14  # model 8 (latency and predictions, classic and native), istio 4, triton 2; not custom
    one_each = b.BatchMetrics(world.prom)
    one_each.snapshot([w for w in all_wants() if w.target.model == "rec-a"], at=world.t2)
    assert one_each.queries_last == queries


def test_regex_neither_widens_nor_narrows_in_prometheus(world: World, snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    pol = POLICIES["model"]
    batch = b.BatchMetrics(world.prom)
    plan = batch.plan([b.Want(pol, target("a.*|b"))])
    for fam, (query,) in plan.items():
        assert "model_name=~" in query
        answer = world.prom.query(query, at=world.t2)
        if fam.native:  # this world exports classic histograms only: its native families find nothing
            assert answer == [], query
            continue
        assert answer and {s["metric"]["model_name"] for s in answer} == {"a.*|b"}, query  # not "b", not "rec-*"
    chunked = b.BatchMetrics(world.prom, max_regex_chars=1)  # every model in a query of its own
    base, now = (chunked.snapshot(all_wants(), at=at) for at in (world.t1, world.t2))
    assert any(len(queries) > 1 for queries in chunked.plan(all_wants()).values())
    ref_base, ref_now, _ = snaps
    for model in ("a.*|b", "b", "rec-b"):
        for name in ("lat", "err", "miss"):
            assert b.measure_delta(pol, chk(pol, name), target(model), now, base) == \
                b.measure_delta(pol, chk(pol, name), target(model), ref_now, ref_base)


def test_a_restart_counts_from_the_restart_and_is_flagged(world: World, snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    base, now, _ = snaps
    pol, t = POLICIES["model"], target("restart")
    since = world.t2 - world.restart
    for arm in ("stable", "canary"):
        d = b.arm_delta(pol, chk(pol, "err"), t, arm, now, base)
        n = rate("restart", arm) * since
        assert d.reset and counts(d.data) == approx((n * error_share(arm), n))
        h = b.arm_delta(pol, chk(pol, "lat"), t, arm, now, base)
        assert h.reset and h.data.total == approx(rate("restart", arm) * since * sum(LAT_SHAPE))  # type: ignore[union-attr]
    assert not b.arm_delta(pol, chk(pol, "err"), target("rec-a"), "stable", now, base).reset


def test_not_batchable_checks_are_named(snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    base, now, _ = snaps
    pol = POLICIES["model"]
    with pytest.raises(b.NotBatchable, match="gauge only"):
        b.measure_delta(pol, chk(pol, "miss"), target("gauge-only"), now, base)
    with pytest.raises(b.NotBatchable, match="custom"):
        b.measure_delta(pol, chk(pol, "rps"), target("rec-a"), now, base)
    # the rest of the gauge-only model is batchable as usual
    assert b.measure_delta(pol, chk(pol, "err"), target("gauge-only"), now, base)[0].total > 0  # type: ignore[union-attr]


def test_a_persisted_restricted_step_start_gives_the_same_delta(snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    base, now, _ = snaps
    for source, t in (("model", target("b")), ("istio", target("rec-a", "other")), ("triton", target("rec-a"))):
        pol = POLICIES[source]
        stored = b.Snapshot.from_json(base.restrict(pol, t).to_json())
        assert len(stored.to_json()) < len(base.to_json())
        for check in pol.checks:
            if b.batchable(pol, check):
                assert b.measure_delta(pol, check, t, now, stored) == b.measure_delta(pol, check, t, now, base)
        assert b.requests_delta(pol, t, now, stored) == b.requests_delta(pol, t, now, base)


def test_an_arm_without_series_keeps_its_nodata_in_place(snaps: tuple[b.Snapshot, b.Snapshot, int]) -> None:
    """Issue 9 defect 5 on the batched path: the stable's series do not exist, the canary's do; the
    canary's absolute limit is still judged (here: the error ceiling), the relative one is not."""
    from dataclasses import replace

    from canary.analysis.judge import judge
    from canary.errors import NoData

    base, now, _ = snaps
    pol, t = POLICIES["model"], replace(target("rec-a"), stable_version="v-missing")
    stable, canary = b.measure_delta(pol, chk(pol, "err"), t, now, base)
    assert isinstance(stable, NoData) and "stable arm" in str(stable)
    assert counts(canary) == approx((rate("rec-a", "canary") * WINDOW * error_share("canary"),
                                     rate("rec-a", "canary") * WINDOW))
    [r] = [x for x in judge(pol, {"err": (stable, canary)}).results if x.check == "err"]
    assert r.outcome is not Outcome.ERROR and "could not measure" not in r.reason, r.reason
    neither = replace(t, canary_version="v-missing-too")
    with pytest.raises(NoData, match="stable arm.*canary arm"):
        b.measure_delta(pol, chk(pol, "err"), neither, now, base)


def test_a_snapshot_for_a_clock_behind_prometheuss_reads_prometheuss_now(world: World) -> None:
    """The controller's clock about 200 s behind Prometheus's (`not_before` = t1): the snapshot is
    evaluated at Prometheus's own now, so it holds the newest counters, not those of 200 s ago; a
    clock ahead gives its own time and, within the 10 m lookback, the same newest values."""
    import time

    batch = b.BatchMetrics(world.prom)
    behind = batch.snapshot(all_wants(), not_before=world.t1)
    assert batch.clock_offset_last is not None and batch.clock_offset_last > 100
    assert behind.taken_at > world.t2 and behind.taken_at == pytest.approx(world.t1 + batch.clock_offset_last, abs=1e-6)
    pinned = batch.snapshot(all_wants(), at=behind.taken_at)
    assert behind.series == pinned.series  # the same instant, asked explicitly
    old = batch.snapshot(all_wants(), at=world.t1)
    pol, tgt = POLICIES["model"], target("rec-a")
    err = next(c for c in pol.checks if c.name == "err")
    assert behind.arm(pol, err, tgt, "stable").total > old.arm(pol, err, tgt, "stable").total
    ahead_by = time.time() + 120 - world.t1
    ahead = batch.snapshot(all_wants(), not_before=world.t1 + ahead_by)
    assert ahead.taken_at == world.t1 + ahead_by and batch.clock_offset_last < -100
    assert ahead.series == behind.series  # history ended before both: the newest samples either way

"""The batched snapshot's three known defects (decision 106), against one real, backfilled Prometheus.

- A partial answer to one batched query (a remote-read store that is down for one model's data,
  as a Thanos store is) made the whole snapshot unavailable: every rollout of the tick "could not
  measure". Only the rollouts whose own answer is partial are unavailable now; the others are read.
- An exporter restarted in place with another bucket layout was named "not cumulative ... a broken
  exporter"; once the old bound left the lookback, the step start's bound was filled from the one
  below it (the canary's CDF at 100 ms read 1/6 where it was 1/2).
- Two snapshots cannot see a counter that restarted and grew past its step-start value: the
  window's delta was plausible and wrong. Prometheus's samples of the window say so now, and the
  series counts from its restart, as for any reset.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest

from canary.errors import MetricsUnavailable
from canary.metrics import batch as b
from canary.metrics.client import PrometheusClient
from canary.model import Counts, Histogram, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, Series, counter, history_window
from tests.integration.test_metrics_attack2 import _During, _openmetrics, _upgraded_in_place
from tests.support.remote_read import FailingStore

pytestmark = pytest.mark.integration

WINDOW_S = 600
BORN, RESTART = 60.0, 100.0  # "regrown": its canary started BORN s before the step, restarted RESTART s into it
ERRORS = parse_policy({"steps": [10, 100], "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
LATENCY = parse_policy({"steps": [10, 100], "checks": [{"name": "p50", "kind": "latency", "quantile": 0.5,
                                                        "max_ms": 900}]})


class _RemoteRead(PromServer):
    """The session's kind of Prometheus, reading also from a remote-read store (`read_recent`: every query)."""

    def __init__(self, store: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store

    def config(self) -> dict[str, object]:
        cfg = super().config()
        cfg["remote_read"] = [{"url": self.store, "read_recent": True, "remote_timeout": "2s"}]
        return cfg


def _errors(model: str) -> list[Series]:
    """Stable v1 at 1% errors of 100/s, canary v2 at 20% of 50/s."""
    out: list[Series] = []
    for version, ok, bad in (("v1", 99.0, 1.0), ("v2", 40.0, 10.0)):
        m = {"model_name": model, "model_version": version}
        out += counter("model_requests_total", {**m, "outcome": "success"}, ok)
        out += counter("model_requests_total", {**m, "outcome": "error"}, bad)
    return out


def _regrown(model: str, base: float) -> list[Series]:
    """Stable v1 as `_errors`. The canary's one pod started BORN s before `base` at 5 ok and 1 error
    per s, and restarted RESTART s after it, then served 9 ok and 1 error per s: at the window's end
    (`base` + WINDOW_S) each counter is past its value at `base`. Latency: 10 of 20 obs/s <= 50 ms on
    the old process, 3 of 10 on the new one (a classic histogram restarts with it)."""
    out = [x for x in _errors(model) if x.labels["model_version"] == "v1"]
    old, new = base - BORN, base + RESTART
    c = {"model_name": model, "model_version": "v2", "pod": "c"}
    for labels, before, after in (({**c, "outcome": "success"}, 5, 9), ({**c, "outcome": "error"}, 1, 1)):
        out.append(_During("model_requests_total", labels, before, begin=old, until=new))
        out.append(_During("model_requests_total", labels, after, begin=new))
    for version in ("v1", "v2"):
        for le, before, after in (("0.05", 10, 3), ("+Inf", 20, 10)):
            labels = {"model_name": model, "model_version": version, "pod": "c" if version == "v2" else "s", "le": le}
            if version == "v1":
                out.append(_During("model_inference_duration_seconds_bucket", labels, before))
                continue
            out.append(_During("model_inference_duration_seconds_bucket", labels, before, begin=old, until=new))
            out.append(_During("model_inference_duration_seconds_bucket", labels, after, begin=new))
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, FailingStore, float]]:
    start, end = history_window(before_s=3600, after_s=3600)
    t0 = start + 3600
    series = _errors("ok") + _errors("fine") + _errors("broken")
    series += _upgraded_in_place("inplace", t0 - WINDOW_S / 2)
    series += _regrown("regrown", t0 - WINDOW_S)
    series += _regrown("straddle", t0 - WINDOW_S - RESTART + 10)  # restarts 10 s into a window from base + 7
    with FailingStore({"broken"}) as store:
        server = _RemoteRead(store.url, history=_openmetrics(series, start=start, end=end), binary=prometheus_binary)
        server.start()
        try:
            yield server, store, t0
        finally:
            server.stop()


def _target(model: str) -> Target:
    return Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")


def _window(batch: b.BatchMetrics, pol: Any, models: list[str], base_at: float, now_at: float
            ) -> tuple[b.Snapshot, dict[str, b.Snapshot]]:
    wants = [b.Want(pol, _target(m)) for m in models]
    base = batch.snapshot(wants, at=base_at)
    return batch.snapshot(wants, at=now_at), {m: base.restrict(pol, _target(m)) for m in models}


# -- 1. a partial answer -------------------------------------------------------------------------

def test_a_partial_answer_leaves_only_the_rollout_it_concerns_unmeasured(prom: Any) -> None:
    """One batched query covers all three models; the store fails for "broken" only. Before: the
    snapshot raised MetricsUnavailable, every rollout's look "could not measure"."""
    server, store, t0 = prom
    batch = b.BatchMetrics(PrometheusClient(server.url, retries=2, budget_s=5.0, backoff_s=0.01))
    now, bases = _window(batch, ERRORS, ["ok", "fine", "broken"], t0 - WINDOW_S, t0)
    planned = sum(len(x) for x in batch.plan([b.Want(ERRORS, _target("ok"))]).values())
    assert batch.queries_last == planned * (1 + 3)  # each query (all name "broken"): then once per model
    for model in ("ok", "fine"):
        stable, canary = b.measure_delta(ERRORS, ERRORS.checks[0], _target(model), now, bases[model])
        assert stable == Counts(events=WINDOW_S * 1.0, total=WINDOW_S * 100.0)
        assert canary == Counts(events=WINDOW_S * 10.0, total=WINDOW_S * 50.0)
    with pytest.raises(MetricsUnavailable, match="only part of the model_requests_total series of broken"):
        b.measure_delta(ERRORS, ERRORS.checks[0], _target("broken"), now, bases["broken"])
    fam = b.families(ERRORS)[0]
    with pytest.raises(b.UnusableStepStart):  # its step-start snapshot was partial too: the next one starts it
        bases["broken"].values(fam, fam.ident(_target("broken"), "canary"))
    assert any("broken" in values for req in store.asked for values in req)


def test_a_partial_answer_is_asked_again_only_within_the_budget(prom: Any) -> None:
    """The budget for asking again is spent (a clock that says so): no query more, and the rollouts
    of the partial query are unavailable, never read from the partial answer."""
    server, _, t0 = prom
    batch = b.BatchMetrics(PrometheusClient(server.url, retries=1, budget_s=5.0), isolate_s=0.0,
                           monotonic=lambda: 1000.0)
    snap = batch.snapshot([b.Want(ERRORS, _target(m)) for m in ("ok", "broken")], at=t0)
    assert batch.queries_last == sum(len(x) for x in batch.plan([b.Want(ERRORS, _target("ok"))]).values())
    for model in ("ok", "broken"):
        with pytest.raises(MetricsUnavailable, match="answered in part"):
            snap.arm(ERRORS, ERRORS.checks[0], _target(model), "canary")


# -- 2. a layout changed in place -------------------------------------------------------------------

def test_a_layout_changed_in_place_is_named_with_its_bounds_and_arm(prom: Any) -> None:
    """The canary's pod restarted at t0 - 300 without le="0.1"; Prometheus's lookback still shows that
    bucket's last count. Before: "a histogram series is not cumulative (...): a broken exporter"."""
    server, _, t0 = prom
    batch = b.BatchMetrics(PrometheusClient(server.url, retries=1, budget_s=5.0))
    for base_at in (t0 - WINDOW_S, t0 - 200):  # the step started before the restart, or after it
        now, bases = _window(batch, LATENCY, ["inplace"], base_at, t0)
        with pytest.raises(MetricsUnavailable) as got:
            b.measure_delta(LATENCY, LATENCY.checks[0], _target("inplace"), now, bases["inplace"])
        text = str(got.value)
        assert "canary arm of 'inplace'" in text and "changed its bucket layout in place" in text, text
        assert "le=0.1 counts" in text and "broken exporter" not in text, text


def test_once_the_old_bound_left_the_lookback_the_new_layout_is_read_on_its_own_bounds(prom: Any) -> None:
    """1,000 s after the restart the removed bound is gone: the canary counts from its restart on
    (0.05, +Inf) only. Before: le=0.1 was filled from le=0.05 (CDF at 100 ms 1/6, where it is 1/2)."""
    server, _, t0 = prom
    batch = b.BatchMetrics(PrometheusClient(server.url, retries=1, budget_s=5.0))
    now, bases = _window(batch, LATENCY, ["inplace"], t0 - WINDOW_S, t0 + 700)
    _, canary = b.measure_delta(LATENCY, LATENCY.checks[0], _target("inplace"), now, bases["inplace"])
    assert isinstance(canary, Histogram) and canary.bounds == (50.0, math.inf), canary
    assert canary.counts[-1] == pytest.approx(60 * 1000, abs=60 * 15) and canary.counts[0] / canary.counts[-1] == \
        pytest.approx(1 / 6)


# -- 3. a restart the two values cannot show ------------------------------------------------------------

@pytest.mark.parametrize("model, base_at, after", [("regrown", 0.0, 500.0), ("straddle", 7.0, 590.0)])
def test_a_counter_that_restarted_and_grew_past_its_start_counts_from_its_restart(
        prom: Any, model: str, base_at: float, after: float) -> None:
    """The canary's counters and buckets at the window's end are all past their values at its start,
    so the two values alone gave (now - start) of each: 4,640 requests ("regrown"; 5,000 since the
    restart alone) at an error rate that is neither the old process's nor the new one's. They count
    from the restart now (`after` s of 9 ok and 1 error per s), as any reset, flagged. "straddle": the
    restart falls between the step start's sample and the next one (`resets()` over the window does
    not see that pair; a sample below the step start's value does)."""
    server, _, t0 = prom
    base = t0 - WINDOW_S + base_at
    batch = b.BatchMetrics(PrometheusClient(server.url, retries=1, budget_s=5.0))
    now, bases = _window(batch, ERRORS, [model], base, base + WINDOW_S)
    _, canary = b.measure_delta(ERRORS, ERRORS.checks[0], _target(model), now, bases[model])
    assert isinstance(canary, Counts)
    assert canary.total == pytest.approx(10 * after, abs=15) and canary.events == pytest.approx(after, abs=2), canary
    assert b.arm_delta(ERRORS, ERRORS.checks[0], _target(model), "canary", now, bases[model]).reset
    now, bases = _window(batch, LATENCY, [model], base, base + WINDOW_S)
    _, lat = b.measure_delta(LATENCY, LATENCY.checks[0], _target(model), now, bases[model])
    assert isinstance(lat, Histogram) and lat.counts[-1] == pytest.approx(10 * after, abs=15), lat
    assert lat.counts[0] / lat.counts[-1] == pytest.approx(0.3, rel=0.01), lat
    assert batch.restart_queries == 3  # one per family and window start: requests and errors, then buckets (+Inf)

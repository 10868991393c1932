"""The controller's batched looks over native histograms that a real Prometheus scraped (issue 9).

The batched path (`metrics.batch`: one snapshot of every rollout's series a tick, a look's data the
difference of two) reads a native histogram sample by bucket index (`native.sample_values`); its unit
tests gave it samples in the shape the HTTP API writes, never an answer of a real server. Here Debian's
Prometheus (`--enable-feature=native-histograms`) scrapes a target exporting a model's latency as a native
histogram only (schema 3, the sandbox's protobuf exposition), observing only when told
(`SteppedNativeTarget`), so the observations between the two snapshots are known. Debian's Prometheus
(2.42) answers `last_over_time` of a native histogram with no histogram samples: the snapshot cannot
subtract them, says so (`NotBatchable`, naming the check and arm), and the controller's look measures that
check per rollout at the snapshot's instant (`Controller._measure_batched`). Both are tested; on a
Prometheus that does answer them, the exact delta is.
"""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from canary.analysis.judge import judge_check
from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Histogram, Outcome, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer
from tests.support.http import ScriptedHTTP
from tests.support.native_histograms import SteppedNativeTarget
from tests.support.prom import until_value

pytestmark = pytest.mark.integration
MODELS = {"rec": 1.0, "slow": 1.5}  # the canary's latency factor: alike, and 50% slower
VERSIONS = ("v1", "v2")
rng = random.Random(11)
BEFORE = [0.05 * math.exp(rng.gauss(0, 0.3)) for _ in range(200)]  # seconds, observed before the first snapshot
WINDOW = [0.05 * math.exp(rng.gauss(0, 0.3)) for _ in range(2000)]  # between the two snapshots (the stable's)


def _arm(model: str, version: str) -> tuple[tuple[str, str], ...]:
    return (("model_name", model), ("model_version", version))


def _window(model: str, version: str) -> list[float]:
    return [x * (MODELS[model] if version == "v2" else 1.0) for x in WINDOW]


class _Requests:
    """`model_requests_total` per arm (text exposition), one request per observation."""

    def __init__(self) -> None:
        self.n = 0
        self.http = ScriptedHTTP(lambda path, headers: (200, "text/plain; version=0.0.4", "".join(
            f'model_requests_total{{model_name="{m}",model_version="{v}",outcome="success"}} {self.n}\n'
            for m in MODELS for v in VERSIONS)))


def _holds(prom: PromServer, count: int) -> None:
    """Return once Prometheus's newest samples of every arm count `count` observations and requests."""
    until_value(prom, "min(histogram_count(model_inference_duration_seconds) or model_requests_total)", count,
                f"{count} observations")


def _scraped_since(prom: PromServer, t: float) -> None:
    """Return once every arm has a sample scraped after `t` (s since the epoch; samples are stamped in ms)."""
    until_value(prom, "min(timestamp(model_requests_total))", t + 0.001, f"a sample after {t}")


@pytest.fixture(scope="module")
def snaps(prometheus_binary: str) -> Iterator[tuple[b.Snapshot, b.Snapshot, Any, PrometheusProvider]]:
    target = SteppedNativeTarget("model_inference_duration_seconds",
                                 {_arm(m, v): [] for m in MODELS for v in VERSIONS}).start()
    requests = _Requests()
    prom = PromServer(targets=[target.address, requests.http.address], scrape_interval="1s", binary=prometheus_binary,
                      extra_args=["--enable-feature=native-histograms"])
    try:
        prom.start()
        prom.wait_targets_up(timeout_s=30)
        target.step({_arm(m, v): BEFORE for m in MODELS for v in VERSIONS})
        requests.n = len(BEFORE)
        _holds(prom, len(BEFORE))
        provider = PrometheusProvider(prom.url, retries=2, budget_s=5.0, backoff_s=0.05)
        batch = b.BatchMetrics(provider)
        wants = [b.Want(POLICY, _target(m)) for m in MODELS]
        base = batch.snapshot(wants)
        # the window (base, now] opens on a sample without the window's observations, as a step's does
        _scraped_since(prom, base.taken_at)
        target.step({_arm(m, v): _window(m, v) for m in MODELS for v in VERSIONS})
        requests.n += len(WINDOW)
        _holds(prom, len(BEFORE) + len(WINDOW))
        yield base, batch.snapshot(wants), batch, provider
    finally:
        prom.stop()
        target.stop()
        requests.http.close()


POLICY = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "1s"},
                       "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20}]})


def _target(model: str) -> Target:
    return Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")


def _expected(model: str) -> Outcome:
    return Outcome.PASS if MODELS[model] == 1.0 else Outcome.FAIL


@pytest.mark.parametrize("model", list(MODELS))
def test_a_look_on_native_histograms_is_measured_and_judged_right(
        snaps: tuple[b.Snapshot, b.Snapshot, Any, PrometheusProvider], model: str) -> None:
    """The controller's look of the window: from the snapshot where this Prometheus answers native histograms
    to `last_over_time` (both arms on one schema-3 grid in ms, each bound's count the window's observations at
    or below it), else per rollout at the snapshot's instant, the snapshot's refusal naming the check and the
    arm. Judged either way: the arms alike pass, the canary 50% slower fails."""
    from canary.controller import Controller

    base, now, _, provider = snaps
    check, target = POLICY.checks[0], _target(model)
    try:
        stable, canary = b.measure_delta(POLICY, check, target, now, base)
        exact = True
    except b.NotBatchable as exc:  # Debian's 2.42
        assert str(exc).startswith(f"check 'latency-p95': stable arm of '{model}': a native histogram the snapshot "
                                   "cannot read by bucket index"), exc
        exact = False
    if exact:
        assert stable.bounds == canary.bounds and len(stable.bounds) > 10
        for h, version in ((stable, "v1"), (canary, "v2")):
            window = _window(model, version)
            assert h.total == len(window)
            for le, c in zip(h.bounds[:-1], h.counts[:-1]):
                assert c == sum(x * 1000 <= le * (1 + 1e-12) for x in window), (version, le)
    looked, canary_n, restarted, uncounted = Controller._measure_batched(  # type: ignore[arg-type]
        SimpleNamespace(metrics=provider), SimpleNamespace(policy=POLICY, target=target), now, base)
    stable, canary = looked["latency-p95"]
    assert isinstance(stable, Histogram) and isinstance(canary, Histogram), looked
    assert stable.bounds == canary.bounds and len(stable.bounds) > 10
    ratios = {round(hi / lo, 9) for lo, hi in zip(stable.bounds[:-2], stable.bounds[1:-1])}
    assert ratios == {round(2 ** (1 / 8), 9)}  # schema 3, as exported
    # per rollout, `increase()` over the window extrapolates to its edges: the window's observations, scaled alike
    # on both arms (the same scrapes); the snapshot's request delta is exact
    assert stable.total == pytest.approx(canary.total) and stable.total >= len(WINDOW)
    assert canary_n == len(WINDOW) and restarted is False and uncounted == ""
    verdict = judge_check(check, stable, canary, alpha=0.01, min_canary=100)
    assert verdict.outcome == _expected(model), verdict.reason


def test_the_snapshot_asks_as_many_queries_for_two_rollouts_as_for_one(
        snaps: tuple[b.Snapshot, b.Snapshot, Any, PrometheusProvider]) -> None:
    """Two rollouts' series came from the queries one rollout's would need."""
    _, _, batch, _ = snaps
    two = batch.queries_last
    batch.snapshot([b.Want(POLICY, _target("rec"))])
    assert batch.queries_last == two > 0

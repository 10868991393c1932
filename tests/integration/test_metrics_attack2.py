"""A second attacker on the path from Prometheus to the judge (decision 100), against one real,
backfilled Prometheus whose history holds every case: each test failed before its fix.

- Istio, gRPC: a model served over gRPC behind Istio (Triton's port 8001, `appProtocol: grpc` in our
  own deploy example) fails with HTTP 200 and `grpc_response_status="14"` (UNAVAILABLE). The errors
  query matched `response_code=~"5.."` alone, so a canary failing 20% of its calls read as 0 errors,
  per rollout and in the batched snapshot alike, and passed.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Target
from canary.policy import Policy, parse_policy
from canary.sandbox.promserver import PromServer, Series, counter, history_window, openmetrics

pytestmark = pytest.mark.integration

WINDOW_S = 600
_ISTIO = {"destination_service_namespace": "ml", "reporter": "destination"}


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
    server = PromServer(history=openmetrics(_grpc("grpc"), start=start, end=end), binary=prometheus_binary)
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

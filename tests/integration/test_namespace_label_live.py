"""A model of one name served in two namespaces is read as one by the `model` and `triton` sources, whose
exporters carry no namespace label; `metrics.namespace_label` names the label the scrape adds (decision 745).

A real, backfilled Prometheus: model `rec` v1 (stable) and v2 (canary) in namespaces `ml` and `other`, labelled
`namespace` as a Prometheus Operator's PodMonitor labels a target. In `ml` both arms fail 1% of requests; in
`other` the canary fails 30%."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, counter, history_window, openmetrics

pytestmark = pytest.mark.integration

RPS = 100.0
ERRORS = {("ml", "v1"): 0.01, ("ml", "v2"): 0.01, ("other", "v1"): 0.01, ("other", "v2"): 0.30}
TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")


@pytest.fixture
def prom(prom_server_factory: Callable[..., PromServer]) -> tuple[str, float]:
    start, end = history_window(before_s=600, after_s=300)
    series = []
    for (ns, version), share in ERRORS.items():
        model = {"model_name": "rec", "model_version": version, "namespace": ns}
        triton = {"model": "rec", "version": version, "namespace": ns}
        series += counter("model_requests_total", {**model, "outcome": "error"}, RPS * share)
        series += counter("model_requests_total", {**model, "outcome": "success"}, RPS * (1 - share))
        series += counter("nv_inference_request_failure", triton, RPS * share)
        series += counter("nv_inference_request_success", triton, RPS * (1 - share))
    return prom_server_factory(history=openmetrics(series, start=start, end=end)).url, start + 600


def _canary_error_share(prom: tuple[str, float], metrics: dict[str, Any]) -> float:
    url, at = prom
    policy = parse_policy({"steps": [10, 100], "metrics": {"scrape_interval": "15s", **metrics},
                           "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
    provider = PrometheusProvider(url, at=at, retries=1, budget_s=10.0)
    _, canary = provider.measure(policy, policy.checks[0], TARGET, window_s=120)
    assert isinstance(canary, Counts), canary
    return canary.events / canary.total


@pytest.mark.parametrize("source", ["model", "triton"])
def test_without_a_namespace_label_two_namespaces_are_read_as_one(prom: tuple[str, float], source: str) -> None:
    """The control: the rollout in `ml` reads `other`'s canary too (about 15.5% errors, not 1%)."""
    assert _canary_error_share(prom, {"source": source}) == pytest.approx(0.155, rel=0.02)


@pytest.mark.parametrize("source", ["model", "triton"])
def test_the_namespace_label_reads_the_rollouts_namespace_alone(prom: tuple[str, float], source: str) -> None:
    assert _canary_error_share(prom, {"source": source, "namespace_label": "namespace"}) == pytest.approx(0.01,
                                                                                                           rel=0.02)

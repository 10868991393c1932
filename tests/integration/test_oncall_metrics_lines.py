"""A Prometheus that cannot be asked, as on-call reads it (decision 123): `metrics.query_failed` /
`metrics.query_retry` named the check, arm, URL and query but not which rollout's, so on-call could not
tell which model's rollout was blind; the controller's `metrics.snapshot_failed` counted the looks due and
named none. Now they name them, and the once-per-cause throttle still holds (one line a minute for
Prometheus down, whichever rollout asked)."""

from __future__ import annotations

import time
from typing import Any

import structlog.testing

from canary import crd
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Target
from canary.policy import parse_policy
from canary.throttle import REPEAT_LOG_S
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, world  # noqa: F401  (fixtures)

DEAD = "http://127.0.0.1:9"  # nothing listens: connection refused at once
POLICY = parse_policy({"steps": [10, 100], "analysis": {"interval": "10s", "look_every": "2s"},
                       "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
REC = Target(namespace="ml", virtual_service="rec-vs", model="rec", stable_version="v1", canary_version="v2",
             route="primary")
RANK = Target(namespace="shop", virtual_service="rank", model="rank", stable_version="v7", canary_version="v8")


def test_a_failed_query_names_the_rollout_it_was_for_once_per_cause() -> None:
    prom = PrometheusProvider(DEAD, retries=2, budget_s=0.5, backoff_s=0.01)
    check = POLICY.checks[0]
    with structlog.testing.capture_logs() as logs:
        for target in (REC, RANK, REC):  # Prometheus down for every rollout: one line per cause, not per rollout
            _swallow(lambda **kw: prom.measure(POLICY, check, target, **kw))
    failed = [e for e in logs if e["event"] == "metrics.query_failed"]
    retried = [e for e in logs if e["event"] == "metrics.query_retry"]
    assert len(failed) == 1 and len(retried) == 1, [e["event"] for e in logs]
    want = {"model": "rec", "namespace": "ml", "virtual_service": "rec-vs", "stable_version": "v1",
            "canary_version": "v2", "route": "primary"}
    assert want.items() <= failed[0].items() and want.items() <= retried[0].items(), failed[0]
    assert failed[0]["check"] == "err" and failed[0]["repeated"] == 0
    # a minute on, the same cause for the other rollout: its line, naming it, with the ones left out meanwhile
    cause = f"metrics.query_failed {failed[0]['error']}"
    prom._quiet.backdate(cause, REPEAT_LOG_S)
    with structlog.testing.capture_logs() as logs:
        _swallow(lambda **kw: prom.request_counts(POLICY, RANK, **kw))
    [again] = [e for e in logs if e["event"] == "metrics.query_failed"]
    assert again["model"] == "rank" and again["namespace"] == "shop" and again["canary_version"] == "v8"
    assert "route" not in again and again["repeated"] >= 2, again  # the other queries of the three looks


def _swallow(ask: Any) -> None:
    """`ask(window_s=60)`, its MetricsUnavailable (what the caller sees) let go: the lines are what is checked."""
    from canary.errors import MetricsUnavailable

    try:
        ask(window_s=60)
    except MetricsUnavailable:
        pass


def test_promote_with_prometheus_down_names_its_rollout_on_the_query_failed_line() -> None:
    from canary.runner import Runner
    from tests.fakes import FakeMetrics, FakeRouter

    clock, router = FakeClock(), FakeRouter()
    fake = FakeMetrics(router, clock)

    class GoneAfterPreflight(PrometheusProvider):
        def preflight(self, policy: Any, target: Any) -> Any:
            return fake.preflight(policy, target)

    prom = GoneAfterPreflight(DEAD, retries=2, budget_s=0.5, backoff_s=0.01)
    with structlog.testing.capture_logs() as logs:
        Runner(policy=POLICY, target=REC, router=router, metrics=prom, clock=clock).run()
    # one line a cause a minute (the client's throttle runs on the host's monotonic clock, so a run slowed past
    # a minute by a loaded host, or a query cut by its budget, says it again): each names the rollout
    failed = [e for e in logs if e["event"] == "metrics.query_failed"]
    assert failed, [e["event"] for e in logs]
    for line in failed:
        assert {"model": "rec", "namespace": "ml", "virtual_service": "rec-vs", "canary_version": "v2"}.items() \
            <= line.items(), line


def test_the_controllers_snapshot_failure_names_the_rollouts_it_leaves_blind(world: Any) -> None:
    api, op, custom = world
    for i in (0, 1):
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(i, "v2"))
    _progressing(op, custom, api, "r0", 0)
    _progressing(op, custom, api, "r1", 1)
    op.clock = clock = FakeClock(time.time())
    dead = PrometheusProvider(DEAD, retries=2, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            clock.t += 2.0  # a look due for both at every tick
            op.tick()
    failed = [e for e in logs if e["event"] == "metrics.snapshot_failed"]
    assert len(failed) == 1, [e["event"] for e in logs]  # once per cause, as before
    assert failed[0]["rollouts"] == ["ml/r0", "ml/r1"] and failed[0]["models"] == ["m0", "m1"], failed[0]
    assert failed[0]["looks_due"] == 2

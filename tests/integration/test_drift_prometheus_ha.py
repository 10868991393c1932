"""`drift check`/`drift watch`'s live data through two Prometheus replicas behind one load-balanced address
(kube-prometheus-stack's `replicas: 2` behind its Service; tests/integration/test_prometheus_ha.py builds the
same for rollouts): replica B restarted with empty storage, so its history holds only the traffic since, and
HAProxy in round robin sends each query to the next replica."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from canary.drift.compare import compare
from canary.drift.exporter import FeatureExporter
from canary.drift.live import live_counts
from canary.drift.profile import capture
from canary.metrics.client import PrometheusClient
from canary.sandbox.haproxy import HAProxy
from tests.integration.test_prometheus_ha import _replica
from tests.support.prom import until_value

pytestmark = pytest.mark.integration


def test_the_live_mean_is_read_from_one_replica(prometheus_binary: str, tmp_path: Any) -> None:
    """The live data were five queries; through the balancer they alternated between the replicas, so a numeric
    feature's sum came from one and the count it is divided by from the other: A's 4,000 values' sum over B's
    1,720 (its 1,000 extrapolated; or the reverse), a live mean of 236 (or about 43) where the traffic's is 100,
    never changed: dataset drift, and a retraining for nothing. They are one query now (decision 623), answered by one replica: the mean is the
    traffic's own, no drift."""
    import pyarrow as pa

    rng = np.random.default_rng(11)
    prof = capture(pa.table({"price": rng.normal(100, 5, 5_000)}), model="rec", version="v1", file="t.parquet",
                   sha256="0" * 64)
    reg = CollectorRegistry()
    exporter = FeatureExporter(json.loads(json.dumps(prof)), registry=reg)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    target = f"127.0.0.1:{server.server_address[1]}"
    summed = 'sum(model_feature_value_summed_total{model_name="rec"})'
    a = b = lb = None
    try:
        exporter.observe({"price": 100.0})  # the series exist, at 1, before A's first scrape
        a = _replica("a", target, prometheus_binary).start()
        a.wait_targets_up()
        until_value(a, summed, 1, "A's first scrape")
        for x in rng.normal(100, 5, 3_000):
            exporter.observe({"price": float(x)})
        until_value(a, summed, 3_001, "A holding the first traffic")
        b = _replica("b", target, prometheus_binary).start()  # restarted with empty storage: none of it
        b.wait_targets_up()
        until_value(b, summed, 3_001, "B's first scrape")
        for x in rng.normal(100, 5, 1_000):
            exporter.observe({"price": float(x)})
        until_value(a, summed, 4_001, "A holding the rest")
        until_value(b, summed, 4_001, "B holding the rest")
        lb = HAProxy({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, weights={"a": 1, "b": 1},
                     workdir=tmp_path / "haproxy").start()
        live = live_counts(PrometheusClient(lb.url, retries=2, budget_s=10), prof, model="rec", version="v1",
                           window_s=600)
        mean = live["price"]["sum"] / live["price"]["sum_n"]
        assert 98 < mean < 102, live["price"]
        result = compare(prof, live)
        assert not result.drifted, [f.reason() for f in result.features]
    finally:
        _stop(lb, b, a, server)


def test_the_rollouts_feature_drift_check_reads_each_arm_from_one_replica(prometheus_binary: str,
                                                                          tmp_path: Any) -> None:
    """The rollout's `feature_drift` check asked each arm's buckets, categories and missing counts as three queries
    (and its requests a fourth): through the balancer an arm's categories came from one replica and its missing
    count from the other. The stable arm's city is 30% missing throughout; A holds its 4,000 values, B (restarted
    empty) its last 1,000: read mixed, its missing share was A's 1,256 over B's 1,142 present (52%: B's
    `increase()` extrapolates) or B's ~300 over A's 2,800 (10%), a missing cell the canary (30% too, only since B
    restarted) is judged against. Now both arms' roles are one query (decision 631, as 175 made the other checks'):
    each arm's share is a replica's, 30%."""
    import pyarrow as pa

    from canary.metrics.prometheus import PrometheusProvider
    from canary.model import FeatureCounts, Target
    from canary.policy import parse_policy

    prof = {v: capture(pa.table({"city": ["lyon", "paris"] * 500}), model="rec", version=v, file="t.parquet",
                       sha256="0" * 64) for v in ("v1", "v2")}
    reg = CollectorRegistry()
    stable, canary = (FeatureExporter(json.loads(json.dumps(prof[v])), registry=reg) for v in ("v1", "v2"))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    target = f"127.0.0.1:{server.server_address[1]}"
    missing = 'sum(model_feature_missing_total{model_name="rec",model_version="v1"})'

    def serve(exporter: FeatureExporter, n: int) -> None:
        for i in range(n):
            exporter.observe({"city": None if i % 10 < 3 else ("lyon", "paris")[i % 2]})

    a = b = lb = None
    try:
        a = _replica("a", target, prometheus_binary).start()
        a.wait_targets_up()
        until_value(a, missing, 0, "A's first scrape")
        serve(stable, 3_000)
        until_value(a, missing, 900, "A holding the first traffic")
        b = _replica("b", target, prometheus_binary).start()  # restarted with empty storage: none of it
        b.wait_targets_up()
        until_value(b, missing, 900, "B's first scrape")
        serve(stable, 1_000)
        serve(canary, 1_000)
        for r in (a, b):
            until_value(r, missing, 1_200, "the rest held")
            until_value(r, missing.replace("v1", "v2"), 300, "the canary's held")
        lb = HAProxy({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, weights={"a": 1, "b": 1},
                     workdir=tmp_path / "haproxy").start()
        policy = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 1},
                               "checks": [{"name": "inputs", "kind": "feature_drift", "max_psi": 0.2}]})
        arms = PrometheusProvider(lb.url, backoff_s=0.01).measure(
            policy, policy.checks[0], Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1",
                                             canary_version="v2"), window_s=600)
        for arm in arms:
            assert isinstance(arm, FeatureCounts), arm
            share = arm.missing["city"] / (arm.missing["city"] + sum(arm.categorical["city"].values()))
            assert 0.27 < share < 0.33, (share, arm)
    finally:
        _stop(lb, b, a, server)


def _stop(lb: Any, b: Any, a: Any, server: Any) -> None:
    """The balancer, the replicas (those started) and the exporter's server, in that order."""
    for part in (lb, b, a):
        if part is not None:
            part.stop()
    server.shutdown()
    server.server_close()

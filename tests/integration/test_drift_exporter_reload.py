"""A model server that loads a re-captured profile: the exporter of the older one no longer exports (decision 383).

The server built a new `FeatureExporter` from the new profile, as the README's three lines do, and the old one stayed
registered beside it in prometheus_client's registry: a feature the new capture dropped kept its `model_feature_*`
series in /metrics for the server's life, at their last counts, and every feature both profiles have was exported
twice under the same labels (Prometheus keeps one sample of the two and counts the rest as duplicates). Now the new
exporter of a model version replaces the older one in its registry; `close()` stops one. A real Prometheus scrapes
the server's registry every second.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture, profile_hash
from canary.metrics.client import PrometheusClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _until(client: PrometheusClient, expr: str) -> list[Any]:
    """Prometheus's answer to `expr` once it has one (a scrape saw it)."""
    deadline = time.monotonic() + 60
    while not (got := client.query(expr)):
        assert time.monotonic() < deadline, f"Prometheus never answered {expr}"
        time.sleep(0.2)
    return got


def test_a_reloaded_profile_without_a_feature_leaves_no_series_of_it(prometheus_binary: str) -> None:
    import pyarrow as pa

    from canary.sandbox.promserver import PromServer

    rng = np.random.default_rng(383)
    old = capture(pa.table({"a": rng.normal(0, 1, 2_000), "b": rng.normal(5, 1, 2_000)}), model="m", version="v1",
                  file="t.parquet", sha256="0" * 64)
    new = capture(pa.table({"a": rng.normal(0, 1, 2_000)}), model="m", version="v1", file="t2.parquet",
                  sha256="1" * 64)
    reg = CollectorRegistry()
    first = FeatureExporter(old, registry=reg)
    first.observe({"a": 0.1, "b": 5.0})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    prom = PromServer(binary=prometheus_binary, targets=[f"127.0.0.1:{server.server_address[1]}"],
                      scrape_interval="1s").start()
    try:
        assert prom.wait_targets_up(timeout_s=30) < 30
        client = PrometheusClient(prom.url)
        _until(client, 'model_feature_missing_total{model_name="m",feature="b"}')
        second = FeatureExporter(new, registry=reg)  # the server loads the re-captured profile
        second.observe({"a": 0.2})
        _until(client, f'model_feature_profile_info{{model_name="m",profile_hash="{profile_hash(new)}"}}')
        # the scrape that exported the new profile no longer has b: Prometheus marked its series stale
        for family in ("model_feature_missing_total", "model_feature_value_bucket",
                       "model_feature_value_summed_total"):
            assert client.query(f'{family}{{model_name="m",feature="b"}}') == [], family
        assert client.query(f'model_feature_profile_info{{model_name="m",profile_hash="{profile_hash(old)}"}}') == []
        assert [float(s["value"][1]) for s in client.query('model_feature_observations_total{model_name="m"}')] \
            == [1.0]  # the new exporter's count alone
        second.close()  # the server unloads the version: nothing of it is exported
        deadline = time.monotonic() + 60
        while client.query('model_feature_observations_total{model_name="m"}'):
            assert time.monotonic() < deadline, "the closed exporter's series are still scraped"
            time.sleep(0.2)
    finally:
        prom.stop()
        server.shutdown()
        thread.join(timeout=5)

"""Drift end to end on real parts: a profile captured from Parquet, the exporter served over HTTP,
a real Prometheus scraping it, and `canary drift check --prometheus-url` reading it back."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.exporter import FeatureExporter
from canary.sandbox.ports import free_port

pytestmark = pytest.mark.integration


def test_drift_check_reads_the_exporter_through_prometheus(prom_server_factory: Any, tmp_path: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(9)
    n = 5_000
    pq.write_table(pa.table({"age": rng.normal(40, 10, n), "city": rng.choice(["a", "b", "c"], n).tolist()}),
                   tmp_path / "train.parquet")
    prof_path = tmp_path / "p.json"
    r = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "train.parquet"), "--model", "rec",
                                 "--version", "v1", "-f", str(prof_path)])
    assert r.exit_code == 0, r.output
    reg = CollectorRegistry()
    exporter = FeatureExporter(json.loads(prof_path.read_text()), registry=reg)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    try:
        exporter.observe({"age": 40.0, "city": "a"})  # the series exist before the first scrape
        prom = prom_server_factory(targets=[f"127.0.0.1:{port}"], scrape_interval="1s")
        assert prom.wait_targets_up(timeout_s=30) < 30
        # live traffic whose age moved by +1.5 standard deviations, city unchanged
        for age, city in zip(rng.normal(55, 10, 4_000), rng.choice(["a", "b", "c"], 4_000)):
            exporter.observe({"age": age, "city": city})
        args = ["drift", "check", "--baseline", str(prof_path), "--prometheus-url", prom.url, "--window", "5m",
                "-o", "json"]
        deadline = time.monotonic() + 40  # until a scrape after the traffic is in: increase() needs two samples
        while True:
            out = CliRunner().invoke(app, args)
            done = out.exit_code in (0, 1) and json.loads(out.output)["features"] and \
                sum(f["n_current"] for f in json.loads(out.output)["features"] if f["feature"] == "age") > 1_000
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert out.exit_code == 1, out.output
        d = json.loads(out.output)
        by = {f["feature"]: f for f in d["features"]}
        assert by["age"]["drifted"] and by["age"]["test"] == "wasserstein" and not by["city"]["drifted"]
        assert d["drifted_features"] == ["age"] and d["share"] == 0.5
    finally:
        server.shutdown()
        thread.join(timeout=5)

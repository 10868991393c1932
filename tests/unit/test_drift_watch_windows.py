"""A drift episode needs drift in `--enter-after` windows that do not overlap (an attacker's finding).

`drift watch` evaluates every 5 minutes over the last hour; "three drifted evaluations in a row" were
three looks at mostly the same 60 minutes, so one unlucky hour of same-distribution traffic (each test
rejects 5% of the time at low traffic, by design) opened an episode and created a retraining Job: 33
in four weeks for a one-feature model at 150 requests an hour, 61 with two features
(scripts/bench_drift_watch_null.py). A drifted evaluation now counts only when its window starts after
the last counted one's ended; a clean evaluation still breaks the streak.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from canary.drift import monitor as M
from canary.drift import stats as D
from scripts.bench_drift_watch_null import run


def _result(drifted: bool) -> D.DatasetDrift:
    f = D.FeatureDrift("f", "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted, 0.1, 5_000, 150)
    return D.DatasetDrift((f,), 1.0 if drifted else 0.0, drifted)


def test_one_unlucky_hour_is_one_piece_of_evidence() -> None:
    cfg = M.MonitorConfig(quiet_s=0)  # three windows in a row
    s = M.MonitorState("m", "v1")
    for t in range(0, 3_600, 300):  # a whole hour of evaluations over overlapping windows
        s, acts = M.step(s, _result(True), float(t), cfg, window_s=3_600)
        assert acts == [] and s.phase == M.OK, t
    assert s.drifted_in_row == 1
    s, _ = M.step(s, _result(False), 3_600.0, cfg, window_s=3_600)  # a clean look breaks the streak
    for t in (3_900, 7_500):
        s, acts = M.step(s, _result(True), float(t), cfg, window_s=3_600)
    assert s.phase == M.OK and s.drifted_in_row == 2
    s, acts = M.step(s, _result(True), 11_100.0, cfg, window_s=3_600)  # a third window, apart: drift persists
    assert s.phase == M.DRIFTING and acts[0].event == "drift.started" and "3 windows of 1h in a row" in acts[0].message
    assert M.MonitorState.from_dict(s.to_dict()) == s


def test_a_week_of_same_distribution_traffic_opens_no_episode_and_a_shift_still_does() -> None:
    for features, seed in ((1, 3), (2, 4)):  # 8 and 13 false episodes in this week before
        evaluations, drifted, episodes, _ = run(features, 150, 24 * 7, seed=seed)
        assert drifted > 50 and episodes == 0, (features, drifted, episodes)  # each look is still at its 5%
    *_, first = run(1, 150, 48, shift=0.5, shift_at_h=24)
    assert first is not None and first < 4, first


def test_one_line_says_what_drifted_by_how_much_against_which_reference_and_which_job(
        monkeypatch: Any, tmp_path: Any) -> None:
    """`drift.started` named the drifted features and the share only, and `drift.retrain_triggered` did
    not name the Job it created: on-call could not tell by how much, against which training profile, or
    which Job to look at. Now both lines say it; a failed create names the Job in its alert."""
    import types

    import numpy as np
    import pyarrow as pa
    from structlog.testing import capture_logs

    from canary.drift import watch as W
    from canary.drift.profile import capture

    rng = np.random.default_rng(3)
    prof = capture(pa.table({"age": rng.normal(40, 10, 5_000), "city": rng.choice(["a", "b", "c"], 5_000)}),
                   model="rec", version="v2", file="train.parquet", sha256="ab" * 32)
    k = len(prof["features"]["age"]["counts"])
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {
        "age": {"counts": [0] * (k - 1) + [3_000]}, "city": {"categories": {"a": 1_000, "b": 1_000, "c": 1_000}}})

    class Batch:
        def __init__(self, fail: int = 0) -> None:
            self.fail, self.names = fail, []

        def list_namespaced_job(self, namespace: str, **_: Any) -> Any:  # none in flight (retrain.create_job)
            return SimpleNamespace(data=b'{"items": []}', release_conn=lambda: None)  # as sent (raw)

        def create_namespaced_job(self, namespace: str, job: Any, **_: Any) -> None:
            if self.fail:
                self.fail -= 1
                raise _Api(403)
            self.names.append(job["metadata"]["name"])

    t = [0.0]
    batch = Batch(fail=1)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "retrain-"},
           "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}}}
    w = W.DriftWatcher([prof], client=None, window_s=3_600, namespace="ml", batch_api=batch, job_template=job,
                       config=M.MonitorConfig(enter_after=2, quiet_s=0, retry_s=1), clock=lambda: t[0])
    with capture_logs() as logs:
        for _ in range(3):
            w.once()
            t[0] += 3_600
    [started] = [e for e in logs if e["event"] == "drift.started"]
    assert "rec v2: dataset drift, 1 of 2 features drifted (50%; age wasserstein " in started["message"]
    assert ">= 0.1 (p " in started["message"] and "2 windows of 1h in a row" in started["message"]
    assert "against training profile train.parquet, sha256 abababababab, 5,000 rows" in started["message"]
    [failed] = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert "Job ml/retrain-rec-v2-e1: " in failed["message"] and "403" in failed["message"], failed
    [triggered] = [e for e in logs if e["event"] == "drift.retrain_triggered"]
    assert triggered["retraining"] == "Job ml/retrain-rec-v2-e1" and batch.names == ["retrain-rec-v2-e1"]
    assert "retraining for drift episode 1 started: Job ml/retrain-rec-v2-e1" in triggered["message"]
    assert w.states["rec/v2"].evidence["reference"].startswith("training profile train.parquet")


class _Api(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"({status}) Forbidden")
        self.status, self.reason, self.body = status, "Forbidden", '{"message": "jobs.batch is forbidden"}'


def test_the_shortest_scrape_interval_is_read_from_prometheus_config_and_none_where_it_cannot_tell() -> None:
    """`drift watch --window` is refused under twice the shortest scrape interval (decision 542; the real
    Prometheus's refusal: tests/integration/test_drift_live.py). A job faster than the global interval is the
    shortest; a store without /api/v1/status/config (Thanos Query, Mimir: 404) or a configuration that cannot be
    read checks nothing, never refuses; nor does one whose data need not come from the jobs its configuration
    lists (decision 557)."""
    import json

    from canary.metrics.client import PrometheusClient
    from tests.support.http import ScriptedHTTP

    config = ("global:\n  scrape_interval: 30s\nscrape_configs:\n- job_name: slow\n  scrape_interval: 1m\n"
              "- job_name: models\n  scrape_interval: 15s\n- job_name: default\n")

    def served(yaml: str) -> tuple[int, str, str]:
        return 200, "application/json", json.dumps({"status": "success", "data": {"yaml": yaml}})

    flags = {"web.enable-remote-write-receiver": "false", "enable-feature": ""}
    answers = {"/api/v1/status/config": served(config),
               "/api/v1/status/flags": (200, "application/json", json.dumps({"status": "success", "data": flags}))}
    server = ScriptedHTTP(lambda path, headers: answers.get(path, (404, "text/plain", "404 page not found")))
    try:
        assert PrometheusClient(server.url).shortest_scrape_interval_s() == 15.0
        answers["/api/v1/status/config"] = served(config + "- job_name: pods\n  relabel_configs:\n  - {action: "
                                                  "labelmap, regex: __meta_kubernetes_pod_label_(.+)}\n")
        assert PrometheusClient(server.url).shortest_scrape_interval_s() == 15.0  # a pod's labels: no interval
        answers["/api/v1/status/config"] = served("scrape_configs:\n- job_name: models\n")
        assert PrometheusClient(server.url).shortest_scrape_interval_s() == 60.0  # Prometheus's default
        # where the data need not come from the jobs listed, it cannot tell (decision 557): no job at all (a
        # receiver of remote write), jobs in other files, a receiver flag beside a self-scrape job
        for yaml, on in (("scrape_configs: []\n", {}), ("global:\n  scrape_interval: 1m\n", {}),
                         (config + "scrape_config_files:\n- jobs/*.yml\n", {}),
                         (config + "- job_name: pods\n  relabel_configs:\n  - {target_label: __scrape_interval__, "
                                   "source_labels: [__meta_kubernetes_pod_annotation_scrape_interval]}\n", {}),
                         (config + "- job_name: pods\n  relabel_configs:\n  - {action: labelmap, regex: "
                                   "__meta_kubernetes_pod_annotation_prom_(.+), replacement: __$1__}\n", {}),
                         (config, {"web.enable-remote-write-receiver": "true"}),
                         (config, {"enable-feature": "exemplar-storage,remote-write-receiver"}),
                         (config, {"web.enable-otlp-receiver": "true"})):
            answers["/api/v1/status/config"] = served(yaml)
            answers["/api/v1/status/flags"] = (200, "application/json",
                                               json.dumps({"status": "success", "data": {**flags, **on}}))
            assert PrometheusClient(server.url).shortest_scrape_interval_s() is None, (yaml, on)
        answers["/api/v1/status/config"] = served(config)
        del answers["/api/v1/status/flags"]  # a proxy that serves the configuration but not the flags
        assert PrometheusClient(server.url).shortest_scrape_interval_s() is None
        answers["/api/v1/status/config"] = (200, "application/json", "{not json")
        assert PrometheusClient(server.url).shortest_scrape_interval_s() is None
        del answers["/api/v1/status/config"]
        assert PrometheusClient(server.url).shortest_scrape_interval_s() is None
    finally:
        server.close()

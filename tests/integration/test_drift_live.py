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

pytestmark = pytest.mark.integration


class _Receiver:
    """A Slack-like webhook receiver on 127.0.0.1 that answers 200 after `delay_s` (a real receiver's time)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies: list[Any] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/x"

    def __enter__(self) -> "_Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


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
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)  # the kernel's port: no race
    port = int(server.server_address[1])
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
            done = out.exit_code in (0, 1) and json.loads(out.stdout)["features"] and \
                sum(f["n_current"] for f in json.loads(out.stdout)["features"] if f["feature"] == "age") > 1_000
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert out.exit_code == 1, out.output
        d = json.loads(out.stdout)
        by = {f["feature"]: f for f in d["features"]}
        assert by["age"]["drifted"] and by["age"]["test"] == "wasserstein" and not by["city"]["drifted"]
        assert d["drifted_features"] == ["age"] and d["share"] == 0.5
        # drift watch --once -o json: the monitor's view of the same evaluation (one drifted in a row, no episode)
        w = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof_path), "--prometheus-url", prom.url,
                                     "--window", "5m", "--no-kube", "--once", "--quiet", "0", "-o", "json",
                                     "--state-file", str(tmp_path / "s.json")])
        assert w.exit_code == 0, w.output
        (row,) = json.loads(w.stdout)["profiles"]
        assert (row["model"], row["version"], row["phase"], row["drifted_in_row"]) == ("rec", "v1", "ok", 1)
        assert row["drifted_features"] == ["age"] and row["share"] == 0.5 and row["actions"] == []
        # a window under twice the scrape interval (1s here) holds two scrapes only at some evaluations (one of
        # 1.5s at half of them), the others "no live data"; under one interval at none: refused at start, nothing
        # evaluated nor stored (decision 542); the message says which (decision 557: it said "every" of both)
        for window, which in (("1500ms", "many an"), ("1s", "every")):
            w = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof_path), "--prometheus-url", prom.url,
                                         "--window", window, "--no-kube", "--once", "--quiet", "0",
                                         "--state-file", str(tmp_path / "short.json")])
            assert w.exit_code == 2, w.output
            said = f"so {which} evaluation would read no live data; give --window 2s or more"
            assert "under twice Prometheus's scrape interval (1s, the shortest in its configuration)" in w.output
            assert said in w.output, w.output
            assert not (tmp_path / "short.json").exists()
        # an episode opened: its Slack alert is delivered before the command returns (it was queued on a daemon
        # thread the process's end killed: the message lost, and nothing said so)
        with _Receiver(delay_s=0.3) as receiver:
            w = CliRunner(env={"CANARY_SLACK_WEBHOOK_URLS": receiver.url}).invoke(
                app, ["drift", "watch", "--baseline", str(prof_path), "--prometheus-url", prom.url, "--window", "5m",
                      "--no-kube", "--once", "--quiet", "0", "--enter-after", "1", "-o", "json",
                      "--state-file", str(tmp_path / "s2.json"), "--notify-wait", "120s"])
            assert w.exit_code == 1, w.output  # an episode is open
            sent = [json.loads(x) for x in w.stderr.splitlines() if x.startswith("{") and '"notify.sent"' in x]
            assert [e["notify_event"] for e in sent] == ["drift_started"], w.stderr
            assert len(receiver.bodies) == 1 and "age" in json.dumps(receiver.bodies[0]), receiver.bodies
        # --notify-wait bounds that wait: a receiver that does not answer holds the exit that long, then what is
        # undelivered is named (it was a fixed 5 s, which a loaded host's delivery above could miss: decision 799)
        with _Receiver(delay_s=60) as receiver:
            w = CliRunner(env={"CANARY_SLACK_WEBHOOK_URLS": receiver.url}).invoke(
                app, ["drift", "watch", "--baseline", str(prof_path), "--prometheus-url", prom.url, "--window", "5m",
                      "--no-kube", "--once", "--quiet", "0", "--enter-after", "1", "-o", "json",
                      "--state-file", str(tmp_path / "s3.json"), "--notify-wait", "1s"])
            assert w.exit_code == 1, w.output
            lost = [json.loads(x) for x in w.stderr.splitlines() if x.startswith("{") and '"notify.undelivered"' in x]
            assert len(lost) == 1 and lost[0]["waited_s"] == 1.0, w.stderr
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_a_remote_write_receivers_self_scrape_interval_refuses_no_window(prom_server_factory: Any) -> None:
    """A central Prometheus that receives remote write from agents (which scrape the model at 15s) and scrapes only
    itself at 1m: its configuration says 1m, its data come at the agents' interval. `drift watch --window 1m` was
    refused at start (exit 2, no way past it) for a window that works; now the check is not made (decision 557)."""
    from canary.metrics.client import PrometheusClient

    prom = prom_server_factory(targets=["127.0.0.1:1"], scrape_interval="1m",
                               extra_args=["--web.enable-remote-write-receiver"])
    assert PrometheusClient(prom.url).shortest_scrape_interval_s() is None


def test_the_watcher_alerts_once_per_episode_creates_one_retraining_job_and_survives_a_restart(
        prom_server_factory: Any, tmp_path: Any) -> None:
    """Real Prometheus scraping the exporter, the strict Kubernetes API emulator for Events and
    Jobs: drift for two evaluations starts an episode (Event, one Job with the evidence); later
    evaluations and a restarted watcher (state file) create no second Job; an A/A stream of the
    same length raises nothing."""
    import kubernetes

    from canary.drift import monitor as M
    from canary.drift.profile import capture, file_sha256, read_table
    from canary.drift.watch import DriftWatcher, load_job_template
    from canary.metrics.client import PrometheusClient
    from canary.sandbox.kubeapi import KubeAPIServer, Resource

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(10)
    pq.write_table(pa.table({"age": rng.normal(40, 10, 5_000), "city": rng.choice(["a", "b"], 5_000).tolist()}),
                   tmp_path / "t.parquet")
    profiles = {}
    for version in ("v1", "v2"):  # v1 drifts, v2 is served what it was trained on
        path = tmp_path / "t.parquet"
        profiles[version] = capture(read_table(path), model="rec", version=version, file=str(path),
                                    sha256=file_sha256(path))
    reg = CollectorRegistry()
    exporters = {v: FeatureExporter(p, registry=reg) for v, p in profiles.items()}
    for ex in exporters.values():
        ex.observe({"age": 40.0, "city": "a"})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)  # the kernel's port: no race
    port = int(server.server_address[1])
    template = tmp_path / "job.yaml"
    template.write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: retrain-}\n"
                        "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
                        "      containers: [{name: train, image: trainer:1}]\n")
    api = KubeAPIServer()
    api.handler.register(Resource("batch", "jobs", "Job", ("v1",)))
    api.start()
    try:
        prom = prom_server_factory(targets=[f"127.0.0.1:{port}"], scrape_interval="1s")
        assert prom.wait_targets_up(timeout_s=30) < 30
        for age, city in zip(rng.normal(60, 10, 3_000), rng.choice(["a", "b"], 3_000)):
            exporters["v1"].observe({"age": age, "city": city})
        for age, city in zip(rng.normal(40, 10, 3_000), rng.choice(["a", "b"], 3_000)):
            exporters["v2"].observe({"age": age, "city": city})
        client = PrometheusClient(prom.url)
        from canary.drift.live import live_counts

        deadline = time.monotonic() + 40  # until Prometheus has a scrape after the traffic
        while sum(live_counts(client, profiles["v1"], model="rec", version="v1", window_s=300)
                  .get("age", {}).get("counts", [0])) < 1_000 and time.monotonic() < deadline:
            time.sleep(0.5)
        k = api.api_client()
        state = tmp_path / "state.json"
        clock = iter(range(1000, 1_000_000, 300))  # a window apart: each evaluation is new evidence

        def watcher() -> DriftWatcher:
            return DriftWatcher(list(profiles.values()), client=client, window_s=300, namespace="ml",
                                state_file=state, core_api=kubernetes.client.CoreV1Api(k),
                                batch_api=kubernetes.client.BatchV1Api(k), job_template=load_job_template(template),
                                config=M.MonitorConfig(enter_after=2, exit_after=2, quiet_s=0),
                                clock=lambda: float(next(clock)))

        w = watcher()
        first, second, third = w.once(), w.once(), w.once()
        assert first == [] and [d.get("alert") for d in second if "alert" in d] == ["drift.started"]
        assert [d["trigger"] for d in second if "trigger" in d] == [1] and third == []
        listed = kubernetes.client.BatchV1Api(k).list_namespaced_job("ml").items
        assert len(listed) == 1 and listed[0].metadata.name == "retrain-rec-v1-e1"
        env = {e.name: e.value for e in listed[0].spec.template.spec.containers[0].env}
        assert json.loads(env["CANARY_DRIFT_EVIDENCE"])["drifted_features"] == ["age"]
        events = kubernetes.client.CoreV1Api(k).list_namespaced_event("ml").items
        assert [e.reason for e in events] == ["DriftDetected"] and "rec v1" in events[0].message
        assert w.states["rec/v2"].phase == M.OK and w.states["rec/v2"].episode == 0  # A/A: nothing
        again = watcher()  # a restarted watcher continues the episode: no new Job, no new alert
        assert again.once() == [] and again.states["rec/v1"].phase == M.DRIFTING
        assert len(kubernetes.client.BatchV1Api(k).list_namespaced_job("ml").items) == 1
    finally:
        server.shutdown()
        thread.join(timeout=5)
        api.stop()


def test_baselines_in_configmaps_are_watched_by_the_controller_loop(prom_server_factory: Any, tmp_path: Any) -> None:
    """`baseline capture --configmap` stores the profile; the controller's drift loop (watch_baselines)
    finds it by label, evaluates it, keeps its state in a ConfigMap, and creates the Job in the
    baseline's namespace; a malformed baseline ConfigMap is skipped, not fatal."""
    import threading

    import kubernetes
    import pyarrow as pa
    import pyarrow.parquet as pq

    from canary.drift import monitor as M
    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher, load_job_template, watch_baselines
    from canary.metrics.client import PrometheusClient
    from canary.sandbox.env import write_kubeconfig
    from canary.sandbox.kubeapi import KubeAPIServer, Resource

    rng = np.random.default_rng(12)
    pq.write_table(pa.table({"age": rng.normal(40, 10, 3_000)}), tmp_path / "t.parquet")
    api = KubeAPIServer()
    api.handler.register(Resource("batch", "jobs", "Job", ("v1",)))
    api.start()
    reg = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)  # the kernel's port: no race
    port = int(server.server_address[1])
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kc", api.url, "ml")
        r = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "t.parquet"), "--model", "rec",
                                     "--version", "v1", "-f", str(tmp_path / "p.json"), "--configmap", "rec-v1-baseline",
                                     "-n", "ml", "--kubeconfig", str(kubeconfig), "-o", "json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["stored"] == "ConfigMap ml/rec-v1-baseline created", r.output
        from canary import logs

        logs.configure()  # the CLI pointed the logs at CliRunner's stream, closed now; the loop below logs
        k = api.api_client()
        core = kubernetes.client.CoreV1Api(k)
        core.create_namespaced_config_map("ml", {"metadata": {"name": "broken", "labels": {"modelcanary.dev/baseline": "true"}},
                                                 "data": {"profile.json": "{not json"}})
        exporter = FeatureExporter(json.loads((tmp_path / "p.json").read_text()), registry=reg)
        exporter.observe({"age": 40.0})
        prom = prom_server_factory(targets=[f"127.0.0.1:{port}"], scrape_interval="1s")
        assert prom.wait_targets_up(timeout_s=30) < 30
        for age in rng.normal(70, 10, 2_000):
            exporter.observe({"age": age})
        template = tmp_path / "job.yaml"
        template.write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {name: retrain}\nspec:\n  template:\n"
                            "    spec:\n      restartPolicy: Never\n      containers: [{name: t, image: t:1}]\n")
        watcher = DriftWatcher([], client=PrometheusClient(prom.url), window_s=300,
                               config=M.MonitorConfig(enter_after=1, quiet_s=0),
                               store=ConfigMapStateStore(core, namespace="canary-system"), core_api=core,
                               batch_api=kubernetes.client.BatchV1Api(k), job_template=load_job_template(template))
        stop = threading.Event()
        loop = threading.Thread(target=watch_baselines, args=(watcher, core),
                                kwargs={"namespace": None, "stop": stop, "interval_s": 0.5}, daemon=True)
        loop.start()
        deadline = time.monotonic() + 60
        jobs: list[Any] = []
        while not jobs and time.monotonic() < deadline:
            time.sleep(0.5)
            jobs = kubernetes.client.BatchV1Api(k).list_namespaced_job("ml").items
        stop.set()
        # the state ConfigMap is written by the loop's thread after the Job, in the same pass: that pass ends
        # before the state is read (a pass on a loaded machine can outlast 10 s)
        loop.join(timeout=120)
        assert not loop.is_alive()
        assert [j.metadata.name for j in jobs] == ["retrain-rec-v1-e1"]
        saved = json.loads(core.read_namespaced_config_map("canary-drift-state", "canary-system").data["state.json"])
        assert saved["ml/rec/v1"]["phase"] == "drifting" and saved["ml/rec/v1"]["trigger"] == "done"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        api.stop()


def test_float32_inputs_of_a_float64_profile_read_no_drift_through_prometheus(prom_server_factory: Any,
                                                                                tmp_path: Any) -> None:
    """Decision 153: a rate with four values (a bucket per value) captured from float64 Parquet, served as
    float32 (Triton's FP32 tensors), exported, scraped by a real Prometheus and read back by `drift check`:
    the same traffic is no drift (float32(0.1) > 0.1 was counted in the bucket above: drift, exit 1). Decision 540,
    through the same Prometheus: a code captured as text ("1") and served as a float32 (1.0) counts under "1" (it
    was "__other__": drift), and a training category spelt "__other__" (a pipeline's own bin of rare values) is
    read back as that category, not as the values the profile never saw (drift too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    rates = [0.0, 0.1, 0.2, 0.3]
    codes, bins = ["1", "2", "3"], ["__other__", "a", "b"]
    pq.write_table(pa.table({"rate": rng.choice(rates, 5_000), "age": rng.normal(40, 10, 5_000),
                             "code": rng.choice(codes, 5_000).tolist(), "bin": rng.choice(bins, 5_000).tolist()}),
                   tmp_path / "train.parquet")
    prof_path = tmp_path / "p.json"
    r = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "train.parquet"), "--model", "f32",
                                 "--version", "v1", "-f", str(prof_path)])
    assert r.exit_code == 0, r.output
    reg = CollectorRegistry()
    exporter = FeatureExporter(json.loads(prof_path.read_text()), registry=reg)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        exporter.observe({"rate": np.float32(0.0), "age": np.float32(40.0), "code": np.float32(1.0), "bin": "a"})
        prom = prom_server_factory(targets=[f"127.0.0.1:{int(server.server_address[1])}"], scrape_interval="1s")
        assert prom.wait_targets_up(timeout_s=30) < 30
        for rate, age, code, b in zip(rng.choice(rates, 3_000).astype(np.float32),
                                      rng.normal(40, 10, 3_000).astype(np.float32),
                                      rng.choice([1.0, 2.0, 3.0], 3_000).astype(np.float32), rng.choice(bins, 3_000)):
            exporter.observe({"rate": rate, "age": age, "code": code, "bin": str(b)})
        args = ["drift", "check", "--baseline", str(prof_path), "--prometheus-url", prom.url, "--window", "5m",
                "-o", "json"]
        deadline = time.monotonic() + 40  # until a scrape after the traffic is in: increase() needs two samples
        while True:
            out = CliRunner().invoke(app, args)
            feats = json.loads(out.stdout).get("features", []) if out.exit_code in (0, 1, 5) else []
            if sum(f["n_current"] for f in feats if f["feature"] == "rate") > 2_000 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert out.exit_code == 0, out.output
        by = {f["feature"]: f for f in json.loads(out.stdout)["features"]}
        assert not by["rate"]["drifted"] and by["rate"]["score"] < 0.05, by["rate"]
        assert not by["code"]["drifted"] and not by["bin"]["drifted"], (by["code"], by["bin"])
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_a_scrape_rejected_over_its_sample_limit_is_named_when_no_live_data_arrives(
        prometheus_binary: str, tmp_path: Any) -> None:
    """The drift exporter adds a series per bucket and per category of every profiled feature to the model server's
    scrape (3,000 for 100 numeric features). Over the scrape's `sample_limit` (a ServiceMonitor's `sampleLimit`,
    prometheus-operator's `enforcedSampleLimit`) Prometheus rejects the WHOLE scrape: the server's own request
    counter is lost with it, and `drift check` said only "no series of model rec at all: is the exporter deployed
    and scraped?", sending on-call to an exporter that was there. It now says that a target answers and is rejected,
    and how many series this profile's exporter adds (decision 626)."""
    import shutil

    import pyarrow as pa
    from prometheus_client import Counter

    from canary.drift.exporter import series_per_pod
    from canary.drift.profile import capture
    from canary.sandbox.promserver import PromServer
    from tests.support.prom import until_value

    class Limited(PromServer):
        def config(self) -> dict[str, Any]:
            cfg = super().config()
            for job in cfg["scrape_configs"]:  # type: ignore[union-attr]
                job["sample_limit"] = 1_000
            return cfg

    rng = np.random.default_rng(2)
    prof = capture(pa.table({f"x{i}": rng.normal(0, 1, 2_000) for i in range(40)}), model="rec", version="v1",
                   file="t.parquet", sha256="0" * 64)
    (tmp_path / "p.json").write_text(json.dumps(prof))
    reg = CollectorRegistry()
    Counter("model_requests", "the model server's own", registry=reg).inc()
    FeatureExporter(prof, registry=reg).observe({"x0": 1.0})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    # the target in namespace team-b (its pods' label, as Kubernetes service discovery's relabelling names it)
    prom = Limited(labelled=[({"namespace": "team-b"}, [f"127.0.0.1:{server.server_address[1]}"])],
                   scrape_interval="1s", binary=prometheus_binary or shutil.which("prometheus")).start()
    try:
        until_value(prom, "max(scrape_samples_scraped)", series_per_pod(prof), "a scrape over the limit")
        r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(tmp_path / "p.json"), "--prometheus-url",
                                     prom.url, "--window", "5m", "-o", "json"])
        assert r.exit_code == 4, r.output
        why = json.loads(r.stdout)["no_live_data_reason"]
        assert "1 scrape target answers and Prometheus rejects" in why, why
        assert f"adds {series_per_pod(prof):,} series" in why and "sampleLimit" in why
        # with the model's namespace, only a target there is counted: another team's rejected target said "a target
        # answers and Prometheus rejects" of every model with no live data (decision 630)
        for namespace, said in (("team-b", True), ("ml", False)):
            r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(tmp_path / "p.json"), "--prometheus-url",
                                         prom.url, "--window", "5m", "--namespace", namespace, "-o", "json"])
            why = json.loads(r.stdout)["no_live_data_reason"]
            assert ("1 scrape target in namespace team-b answers" in why) is said, (namespace, why)
            assert ("rejects" in why) is said, (namespace, why)
    finally:
        prom.stop()
        server.shutdown()
        server.server_close()

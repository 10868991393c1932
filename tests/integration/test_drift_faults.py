"""The drift monitor under faults, on real parts: a real Prometheus scraping real exporters, the strict
Kubernetes API emulator for the state ConfigMap, Events and Jobs (a fourteenth-session review).

One Prometheus for the module: every model below exports its (static) live traffic once, before the
tests read it; a test that needs traffic to appear later uses a model of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from structlog.testing import capture_logs

from canary.drift import monitor as M
from canary.drift.exporter import FeatureExporter
from canary.drift.live import live_counts
from canary.drift.profile import capture
from canary.metrics.client import PrometheusClient
from tests.support.passes import Passes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "retrain-"},
       "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "t"}]}}}}


def _profile(model: str, columns: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    import pyarrow as pa

    return capture(pa.table(columns), model=model, version=version, file="t.parquet", sha256="0" * 64)


class Older:
    """An exporter of an older canary (before the per-sign sums and their count): the families it had."""

    FAMILIES = ("model_feature_value", "model_feature_category", "model_feature_missing",
                "model_feature_observations")

    def __init__(self, exporter: FeatureExporter, registry: CollectorRegistry) -> None:
        self.exporter = exporter
        registry.register(self)

    def collect(self) -> Any:
        return [f for f in self.exporter.collect() if f.name in self.FAMILIES]


class Respelled:
    """An exporter of another client library: its histogram's `le` written `%.17g` ("20", "27.339999999999999",
    as C and Go clients write bounds) and its top bucket "Inf"; the same numbers prometheus_client writes."""

    def __init__(self, exporter: FeatureExporter, registry: CollectorRegistry) -> None:
        self.exporter = exporter
        registry.register(self)

    def collect(self) -> Any:
        for f in self.exporter.collect():
            if f.type == "histogram":
                f.samples = [s._replace(labels={**s.labels, "le": _respell(s.labels["le"])}) if "le" in s.labels
                             else s for s in f.samples]
            yield f


def _respell(le: str) -> str:
    x = float(le)
    return "Inf" if x == float("inf") else f"{x:.17g}"


class Live:
    """Exporters served over HTTP and scraped by a real Prometheus every second."""

    def __init__(self, prom: Any, registry: CollectorRegistry, exporters: dict[str, FeatureExporter],
                 profiles: dict[str, dict[str, Any]]) -> None:
        self.prom, self.registry, self.exporters, self.profiles = prom, registry, exporters, profiles
        self.client = PrometheusClient(prom.url)

    def scraped(self, expr: str, n: float) -> None:
        """Until Prometheus's latest value of `expr` is at least `n` (a scrape saw it)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = self.client.query(expr)
            if got and float(got[0]["value"][1]) >= n:
                return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never saw {expr} >= {n}")

    def wait_for(self, model: str, n: float, version: str = "v1") -> dict[str, Any]:
        """Until Prometheus's last hour of `model` holds `n` observations of its first feature."""
        prof = self.profiles[model]
        first = next(iter(prof["features"]))
        deadline = time.monotonic() + 60
        while True:
            got = live_counts(self.client, prof, model=model, version=version, window_s=3600)
            cur = got.get(first, {})
            seen = sum(cur.get("counts", [])) + sum(cur.get("categories", {}).values()) + cur.get("missing", 0)
            if seen >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.5)


@pytest.fixture(scope="module")
def live(prometheus_binary: str) -> Iterator[Live]:
    from canary.sandbox.promserver import PromServer

    import pyarrow as pa

    rng = np.random.default_rng(61)
    ref = rng.normal(0, 1, 5_000)
    profiles = {m: _profile(m, {"f": ref}) for m in ("m1", "m2")}
    profiles["late"] = _profile("late", {"f": ref})
    profiles["neg"] = _profile("neg", {"centred": ref, "shifted": ref + 10})  # one feature, two signs
    profiles["gone"] = _profile("gone", {"age": ref * 10 + 40, "income": ref * 10 + 50,
                                         "city": rng.choice(["a", "b"], 5_000).tolist()})
    # a rolling upgrade: pod "old" runs an older exporter, the module's pod the new one, same model
    profiles["mixed"] = _profile("mixed", {"age": ref * 12 + 40, "price": ref * 10 + 1000})
    profiles["oldneg"] = _profile("oldneg", {"f": rng.uniform(1, 10, 5_000)})  # bounds >= 0: `_sum` exported
    # two pods of one version whose client libraries spell the bounds two ways ("20.0" and "20", "+Inf" and "Inf")
    profiles["spelled"] = _profile("spelled", {"age": np.round(ref * 10 + 40)})
    # the baseline of "stale" was captured again (other rows, the same bounds); its server still exports the older one
    profiles["stale"] = _profile("stale", {"f": ref})
    stale_old = capture(pa.table({"f": rng.normal(0.2, 1, 5_000)}), model="stale", version="v1", file="old.parquet",
                        sha256="1" * 64, bounds_from=profiles["stale"])
    reg, old_reg = CollectorRegistry(), CollectorRegistry()
    exporters = {m: FeatureExporter(p, registry=reg) for m, p in profiles.items() if m not in ("oldneg", "stale")}
    exporters["stale"] = FeatureExporter(stale_old, registry=reg)
    older = {m: FeatureExporter(profiles[m], registry=None) for m in ("mixed", "oldneg")}
    for e in older.values():
        Older(e, old_reg)
    respelled = FeatureExporter(profiles["spelled"], registry=None)
    Respelled(respelled, old_reg)
    for e in (exporters["spelled"], respelled):
        e.observe({"age": 40.0})
    older["oldneg"].observe({"f": 5.0})
    for e in (exporters["mixed"], older["mixed"]):
        e.observe({"age": 40.0, "price": 1000.0})
    for m in ("m1", "m2"):
        exporters[m].observe({"f": 0.0})  # the series exist before the first scrape
    exporters["neg"].observe({"centred": 0.0, "shifted": 10.0})
    exporters["gone"].observe({"age": 40.0, "income": 50.0, "city": "a"})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)  # the kernel's port: no race
    old_server, old_thread = start_http_server(0, addr="127.0.0.1", registry=old_reg)
    prom = PromServer(binary=prometheus_binary, targets=[f"127.0.0.1:{server.server_address[1]}",
                                                         f"127.0.0.1:{old_server.server_address[1]}"],
                      scrape_interval="1s").start()
    try:
        assert prom.wait_targets_up(timeout_s=30) < 30
        for m in ("m1", "m2"):  # both drift: their inputs moved by two standard deviations
            for x in rng.normal(2, 1, 3_000):
                exporters[m].observe({"f": x})
        x = rng.normal(0, 1, 4_000)
        x[rng.random(4_000) < 0.015] = 50.0  # 1.5% of requests: a sentinel value far beyond the buckets
        for v in x:
            exporters["neg"].observe({"centred": v, "shifted": v + 10})
        for a in rng.normal(40, 10, 3_000):  # upstream stopped sending city; income comes as text
            exporters["gone"].observe({"age": a, "income": f"{a:.0f} EUR"})
        for i, a in enumerate(rng.normal(0, 1, 4_000)):  # no drift: 3 in 4 requests to the older pod
            (older if i % 4 else exporters)["mixed"].observe({"age": a * 12 + 40, "price": a * 10 + 1000})
        for i, a in enumerate(rng.normal(40, 10, 4_000)):  # no drift: half the requests to each pod
            (respelled if i % 2 else exporters["spelled"]).observe({"age": a})
        out = Live(prom, reg, exporters, profiles)
        out.older = older
        out.respelled = respelled
        out.scraped('sum(model_feature_observations_total{model_name="spelled"})', 4_002)
        for x in rng.normal(0, 1, 300):
            exporters["stale"].observe({"f": x})
        out.stale_old = stale_old
        out.scraped('sum(model_feature_observations_total{model_name="stale"})', 300)
        # an older pod's `_sum` falls once (one value of -1): increase() reads a restart there
        for x in rng.uniform(1, 10, 200):
            older["oldneg"].observe({"f": x})
        out.scraped('model_feature_value_count{model_name="oldneg"}', 201)
        older["oldneg"].observe({"f": -1.0})
        out.scraped('model_feature_value_count{model_name="oldneg"}', 202)
        for x in rng.uniform(1, 10, 200):
            older["oldneg"].observe({"f": x})
        out.scraped('model_feature_value_count{model_name="oldneg"}', 402)
        assert sum(out.wait_for("mixed", 3_900)["age"]["counts"]) >= 3_900
        assert sum(out.wait_for("gone", 2_500)["age"]["counts"]) >= 2_500
        for m in ("m1", "m2"):
            assert sum(out.wait_for(m, 2_000)["f"]["counts"]) >= 2_000
        assert sum(out.wait_for("neg", 3_500)["centred"]["counts"]) >= 3_500
        yield out
    finally:
        prom.stop()
        for srv, th in ((server, thread), (old_server, old_thread)):
            srv.shutdown()
            th.join(timeout=5)


@pytest.fixture
def kube() -> Iterator[Any]:
    import kubernetes

    from canary.sandbox.kubeapi import KubeAPIServer, Resource
    from canary.drift.store import save_profile

    api = KubeAPIServer()
    api.handler.register(Resource("batch", "jobs", "Job", ("v1",)))
    api.start()
    try:
        k = api.api_client()
        api.core, api.batch = kubernetes.client.CoreV1Api(k), kubernetes.client.BatchV1Api(k)
        api.save_profile = lambda prof, name: save_profile(api.core, namespace="ml", name=name, profile=prof)
        yield api
    finally:
        api.stop()


def _replica(live: Live, kube: Any, clock: Any) -> Any:
    """What `canary controller run --drift` builds at start, leader or not."""
    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher

    return DriftWatcher([], client=live.client, window_s=3600,
                        config=M.MonitorConfig(enter_after=2, exit_after=2, quiet_s=0),
                        store=ConfigMapStateStore(kube.core, namespace="canary-system"), core_api=kube.core,
                        batch_api=kube.batch, job_template=JOB, clock=clock)


def _lead(watcher: Any, kube: Any, passes: int) -> None:
    """`watch_baselines` while this replica leads for `passes` passes (no sleeps: the stop event)."""
    from canary.drift.watch import watch_baselines

    watch_baselines(watcher, kube.core, namespace="ml", stop=Passes(passes), interval_s=0.01, is_leader=lambda: True)


def _stored(kube: Any) -> dict[str, Any]:
    return json.loads(kube.core.read_namespaced_config_map("canary-drift-state", "canary-system").data["state.json"])


def _ticks() -> Any:  # an evaluation a window (1 h) apart: each one new evidence (`monitor.step`)
    it = iter(range(1_000, 10**8, 3_600))
    return lambda: float(next(it))


def _no_raw_http(logs: list[dict[str, Any]]) -> None:
    for e in logs:
        assert "HTTP response" not in str(e) and "\n" not in str(e.get("error", "")), e


def test_a_new_leader_continues_the_episodes_of_the_previous_one(live: Live, kube: Any) -> None:
    """Both replicas start at once (both read the empty state); A leads and opens an episode per model;
    B takes over: it re-reads the state, so no second DriftDetected, no second Job, every model is
    evaluated and every write lands (it held a stale resourceVersion: 409 for ever, before)."""
    for m in ("m1", "m2"):
        kube.save_profile(live.profiles[m], f"{m}-v1-baseline")
    clock = _ticks()
    a, b = _replica(live, kube, clock), _replica(live, kube, clock)
    _lead(a, kube, 3)
    assert sorted(j.metadata.name for j in kube.batch.list_namespaced_job("ml").items) == \
        ["retrain-m1-v1-e1", "retrain-m2-v1-e1"]
    before = _stored(kube)
    assert {k: (v["phase"], v["episode"]) for k, v in before.items()} == \
        {"ml/m1/v1": ("drifting", 1), "ml/m2/v1": ("drifting", 1)}
    with capture_logs() as logs:
        _lead(b, kube, 4)
    events = [e["event"] for e in logs]
    assert "drift.started" not in events and "drift.retrain_triggered" not in events, events
    assert not [e for e in events if e in ("drift.pass_failed", "drift.state_save_failed")], logs
    assert sorted(j.metadata.name for j in kube.batch.list_namespaced_job("ml").items) == \
        ["retrain-m1-v1-e1", "retrain-m2-v1-e1"]
    after = _stored(kube)
    for k in ("ml/m1/v1", "ml/m2/v1"):  # four more drifted evaluations of each, all written
        assert after[k]["drifted_in_row"] == before[k]["drifted_in_row"] + 4 and after[k]["episode"] == 1
    reasons = [e.reason for e in kube.core.list_namespaced_event("ml").items]
    assert sorted(reasons) == ["DriftDetected", "DriftDetected"]


def test_two_writers_merge_instead_of_failing_and_a_failed_write_never_stops_the_others(
        live: Live, kube: Any) -> None:
    """A replica that still thinks it leads writes after the new leader: its write is refused (409), it
    re-reads and keeps the other's states (`drift.state_conflict`); a 500 on one profile's write does
    not stop the next profile's evaluation, and the unsaved state is written at the next save. Every
    log line is one readable line (no raw HTTP dump)."""
    for m in ("m1", "m2"):
        kube.save_profile(live.profiles[m], f"{m}-v1-baseline")
    clock = _ticks()
    a, b = _replica(live, kube, clock), _replica(live, kube, clock)
    _lead(a, kube, 1)
    with capture_logs() as logs:
        b.profiles = [{**live.profiles["m1"], "_namespace": "ml"}]
        b.once()  # b never re-read (it does not lead): its create finds a's ConfigMap
    assert "drift.state_conflict" in [e["event"] for e in logs]
    assert b.states["ml/m1/v1"] == a.states["ml/m1/v1"]  # theirs is kept, not overwritten
    assert _stored(kube)["ml/m1/v1"]["drifted_in_row"] == 1
    _no_raw_http(logs)

    kube.fail_next(500, methods=("PUT",), plural="configmaps")
    with capture_logs() as logs:
        _lead(a, kube, 1)  # m1's write fails with a 500: that evaluation is dropped; m2 is still evaluated
    failed = [e for e in logs if e["event"] == "drift.state_save_failed"]
    assert len(failed) == 1 and "500" in failed[0]["error"] and "repeats" in failed[0]["message"]
    _no_raw_http(logs)
    stored = _stored(kube)
    assert stored["ml/m1/v1"]["drifted_in_row"] == 1 and stored["ml/m2/v1"]["drifted_in_row"] == 2
    assert a.states["ml/m1/v1"].drifted_in_row == 1  # nothing kept in memory that the store does not hold


def test_the_live_mean_is_read_whatever_the_sign_of_the_values(live: Live, tmp_path: Any) -> None:
    """prometheus_client drops a histogram's `_sum` when a bound is negative: a centred feature lost its
    live mean, and 1.5% of values far beyond the last bucket went unseen, while the same data shifted
    by +10 drifted. The per-sign sums are read for both: the same verdict, the same distance."""
    from typer.testing import CliRunner

    from canary.cli import app

    got = live.wait_for("neg", 3_500)
    own = live.exporters["neg"].live_counts()
    for name in ("centred", "shifted"):  # the live mean from Prometheus is the exporter's: its sum and its
        assert "sum" in got[name]         # count are born together and read at one instant (reference std 1)
        mean = own[name]["sum"] / sum(own[name]["counts"])
        assert abs(got[name]["sum"] / got[name]["sum_n"] - mean) < 0.01, (name, got[name], mean)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(live.profiles["neg"]))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", live.prom.url,
                                 "--window", "1h", "-o", "json"])
    assert r.exit_code == 1, r.output
    by = {f["feature"]: f for f in json.loads(r.stdout)["features"]}
    assert by["centred"]["drifted"] and by["shifted"]["drifted"], by
    assert abs(by["centred"]["value"] - by["shifted"]["value"]) < 0.15  # ~0.77 both (scipy on raw data: 0.77)
    assert "mean" in by["centred"]["note"] and "not checked" not in by["centred"]["note"]


def test_one_malformed_baseline_is_skipped_and_every_other_model_is_evaluated(live: Live, kube: Any) -> None:
    """`"mean": null` in one hand-edited baseline ConfigMap passed validation and made every pass fail
    with a TypeError: no model was evaluated. Now that baseline is drift.bad_baseline (ConfigMap and
    field named) and the others go on."""
    bad = json.loads(json.dumps(live.profiles["m2"]))
    bad["features"]["f"]["mean"] = None
    kube.save_profile(bad, "a-bad-baseline")  # listed first
    kube.save_profile(live.profiles["m1"], "b-good-baseline")
    watcher = _replica(live, kube, _ticks())
    with capture_logs() as logs:
        _lead(watcher, kube, 2)
    bad_logs = [e for e in logs if e["event"] == "drift.bad_baseline"]
    assert len(bad_logs) == 1 and "ConfigMap ml/a-bad-baseline" in bad_logs[0]["error"] \
        and "features.f.mean" in bad_logs[0]["error"], bad_logs
    assert not [e for e in logs if e["event"] in ("drift.pass_failed", "drift.evaluation_failed")], logs
    assert {k: (s.phase, s.episode) for k, s in watcher.states.items()} == {"ml/m1/v1": ("drifting", 1)}


def test_a_small_reference_in_a_baseline_configmap_is_warned_of_once(live: Live, kube: Any) -> None:
    """A baseline ConfigMap whose profile has 800 values of a feature (captured before `baseline
    capture` warned): the controller's drift loop warns once (`drift.small_reference`, naming the
    ConfigMap, model, feature and values), not at every pass, and still evaluates it."""
    import numpy as np

    small = _profile("small", {"f": np.random.default_rng(3).normal(0, 1, 800)})
    kube.save_profile(small, "small-baseline")
    kube.save_profile(live.profiles["m1"], "m1-baseline")
    watcher = _replica(live, kube, _ticks())
    with capture_logs() as logs:
        _lead(watcher, kube, 3)
    warned = [e for e in logs if e["event"] == "drift.small_reference"]
    assert len(warned) == 1, warned
    w = warned[0]
    assert w["configmap"] == "ml/small-baseline" and w["model"] == "small" and w["features"] == {"f": 800}
    assert w["log_level"] == "warning" and "1,001" in w["hint"]
    assert not [e for e in logs if e["event"] in ("drift.pass_failed", "drift.bad_baseline")], logs


def test_a_watcher_restarted_without_its_state_adopts_the_job_in_flight_and_a_retry_never_makes_a_second(
        live: Live, kube: Any) -> None:
    """`drift watch` without --state-file, restarted: its next episode is numbered 1 again. Decision 134 gave it
    a Job of its own beside the first one's (renamed with a hash of its start); decision 173: the first Job is
    still in flight, so it is this episode's retraining too (adopted, said), never a second one; a retry of
    either episode's trigger finds it and creates none."""
    from dataclasses import replace

    from canary.drift.retrain import START
    from canary.drift.watch import DriftWatcher

    clock = _ticks()

    def fresh() -> Any:
        return DriftWatcher([live.profiles["m1"]], client=live.client, window_s=3600, namespace="ml",
                            config=M.MonitorConfig(enter_after=2, quiet_s=0), core_api=kube.core,
                            batch_api=kube.batch, job_template=JOB, clock=clock)

    def jobs() -> dict[str, str]:
        return {j.metadata.name: j.metadata.annotations[START] for j in kube.batch.list_namespaced_job("ml").items}

    first = fresh()
    first.once(), first.once()
    got = jobs()
    assert list(got) == ["retrain-m1-v1-e1"]
    second = fresh()  # restarted, no state: episode 1 again, another start
    with capture_logs() as logs:
        second.once(), second.once()
    assert jobs() == got and second.states["m1/v1"].trigger == "done"
    assert got["retrain-m1-v1-e1"] != repr(second.states["m1/v1"].evidence["at"])
    [adopted] = [e for e in logs if e["event"] == "drift.retrain_adopted"]
    assert adopted["job"] == "ml/retrain-m1-v1-e1" and "still in flight" in adopted["message"]
    for w in (first, second):  # a lost write: the same episode's trigger again finds the Job
        key = "m1/v1"
        w.states[key] = replace(w.states[key], trigger="pending", trigger_due=0.0)
        done = w.once()
        assert [(d["ok"], d["target"]) for d in done if "trigger" in d] == [(True, "Job ml/retrain-m1-v1-e1")]
    assert jobs() == got


def test_the_quiet_period_starts_when_the_version_serves(live: Live) -> None:
    """The baseline is watched two hours before the version gets traffic (Prometheus has its series, all
    zero); the quiet hour starts at the first evaluation that reads live data from Prometheus."""
    from canary.drift.watch import DriftWatcher

    t = [0.0]
    w = DriftWatcher([live.profiles["late"]], client=live.client, window_s=900, config=M.MonitorConfig(),
                     clock=lambda: t[0])
    for _ in range(24):  # nothing done; what was not measured is said (no live data), never "ok"
        assert w.once() == [{"model": "late", "version": "v1", "no_live_data": ["f"], "not_arriving": []}]
        t[0] += 300
    assert w.states["late/v1"].traffic_since == 0.0
    rng = np.random.default_rng(5)
    for x in rng.normal(2, 1, 300):  # the version starts serving, on moved inputs
        live.exporters["late"].observe({"f": x})
    assert sum(live.wait_for("late", 250)["f"]["counts"]) >= 250
    serving = t[0]
    for _ in range(12):
        with capture_logs() as logs:
            w.once()
        assert "drift.started" not in [e["event"] for e in logs], (t[0] - serving) / 60
        t[0] += 300
    assert w.states["late/v1"].quiet_until == serving + 3600
    w.once()
    assert w.states["late/v1"].phase == M.DRIFTING


def test_a_feature_that_stops_arriving_is_reported_by_watch_and_check(live: Live, kube: Any, tmp_path: Any) -> None:
    """Two of three inputs stop arriving (one dropped, one sent as text): `drift watch` said nothing, and
    `drift check` exited 0 "no dataset drift" computed on one feature. Now watch alerts once
    (drift.features_missing, a FeatureMissing Event, model_data_missing_rate) and check exits 5."""
    from prometheus_client import CollectorRegistry, generate_latest
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.watch import DriftWatcher

    reg = CollectorRegistry()
    w = DriftWatcher([live.profiles["gone"]], client=live.client, window_s=3600, namespace="ml",
                     config=M.MonitorConfig(quiet_s=0), core_api=kube.core, registry=reg, clock=_ticks())
    with capture_logs() as logs:
        for _ in range(3):
            w.once()
    alerts = [e for e in logs if e["event"] == "drift.features_missing"]
    assert len(alerts) == 1 and "city" in alerts[0]["message"] and "income" in alerts[0]["message"], logs
    message = alerts[0]["message"]  # one name per state, and why a number counts as missing
    assert "MORE MISSING" not in message and "text sent for a numeric feature" in message, message
    assert w.states["gone/v1"].missing == ["city", "income"] and w.states["gone/v1"].phase == M.OK
    assert [e.reason for e in kube.core.list_namespaced_event("ml").items] == ["FeatureMissing"]
    text = generate_latest(reg).decode()
    assert 'model_data_missing_rate{feature="income",model="gone",namespace="ml",version="v1"} 1.0' in text
    path = tmp_path / "p.json"
    path.write_text(json.dumps(live.profiles["gone"]))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", live.prom.url,
                                 "--window", "1h", "-o", "json"])
    assert r.exit_code == 5, r.output
    out = json.loads(r.stdout)
    assert out["not_arriving"] == ["city", "income"] and not out["dataset_drift"]


def test_a_rolling_upgrade_is_not_drift_the_mean_is_read_from_the_pods_that_export_it(
        live: Live, tmp_path: Any) -> None:
    """Three pods in four still ran an older exporter (no per-sign sums): the live sum came from the new
    pod alone and was divided by every pod's count, a mean off by 3/4 of its value (age: -2.5 std,
    price: -75 std), dataset drift on data that had not moved, and a retraining Job. The mean is now
    the new pod's sum over the count exported with it; the older pod still counts in the buckets."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.compare import compare

    got = live_counts(live.client, live.profiles["mixed"], model="mixed", version="v1", window_s=3600)
    result = compare(live.profiles["mixed"], got)
    assert not result.drifted and all(f.value < 0.1 for f in result.features), result
    own = live.exporters["mixed"].live_counts()
    for name, std in (("age", 12.0), ("price", 10.0)):
        assert sum(got[name]["counts"]) > 3 * got[name]["sum_n"] > 2_000, got[name]
        mean = own[name]["sum"] / sum(own[name]["counts"])
        assert abs(got[name]["sum"] / got[name]["sum_n"] - mean) < 0.01 * std, (name, got[name], mean)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(live.profiles["mixed"]))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", live.prom.url,
                                 "--window", "1h", "-o", "json"])
    assert r.exit_code == 0, r.output


def test_a_bound_two_pods_spell_two_ways_counts_both_pods(live: Live, tmp_path: Any) -> None:
    """Two pods of one version, one writing le="20.0" and "+Inf", the other "20" and "Inf" (another client
    library): `sum by (feature, le)` answers two series per bound, and the live histogram kept the last
    one of each: about half the observations, in a mix of the two pods. Each bound now sums its series."""
    from typer.testing import CliRunner

    from canary.cli import app

    got = live_counts(live.client, live.profiles["spelled"], model="spelled", version="v1", window_s=3600)
    mine, theirs = live.exporters["spelled"].live_counts()["age"], live.respelled.live_counts()["age"]
    # increase() only adds by extrapolation; it leaves out what each pod counted before its first scrape (1 value)
    want = [a + b for a, b in zip(mine["counts"], theirs["counts"])]
    assert len(got["age"]["counts"]) == len(want) and sum(want) == 4_002
    assert all(g >= w - 2 for g, w in zip(got["age"]["counts"], want)), (got["age"]["counts"], want)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(live.profiles["spelled"]))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", live.prom.url,
                                 "--window", "1h", "-o", "json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)["features"]
    assert row["n_current"] >= 4_000 and not row["drifted"], row


def test_the_feature_drift_check_reads_a_bound_two_pods_spell_two_ways_as_one(live: Live) -> None:
    """The rollout's `feature_drift` check reads the same series through `metrics.features` and
    `queries.normalise`, which sum the series of one bound: both pods counted (a guard beside the fix above)."""
    from canary.metrics.prometheus import PrometheusProvider
    from canary.model import Target
    from canary.policy import parse_policy

    policy = parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 1},
                           "checks": [{"name": "inputs", "kind": "feature_drift", "max_psi": 0.2}]})
    target = Target(namespace="ml", virtual_service="spelled", model="spelled", stable_version="v1",
                    canary_version="v1")
    stable, _ = PrometheusProvider(live.prom.url).measure(policy, policy.checks[0], target, window_s=3600)
    mine, theirs = live.exporters["spelled"].live_counts()["age"], live.respelled.live_counts()["age"]
    want = [a + b for a, b in zip(mine["counts"], theirs["counts"])]
    h = stable.numeric["age"]
    got = [h.counts[0]] + [b - a for a, b in zip(h.counts, h.counts[1:])]
    assert len(got) == len(want) and all(g >= w - 2 for g, w in zip(got, want)), (got, want)


def test_a_server_exporting_an_older_profile_is_said_once_and_its_own_profile_is_not(live: Live) -> None:
    """The baseline of "stale" v1 was captured again over the same bounds (`--bounds-from`) while its model
    server still ran the exporter of the older capture: the live counts fit the baseline's buckets, so nothing
    told it. The exporter says its profile (`model_feature_profile_info{profile_hash}`) and the watcher warns
    once when it is not the baseline's; a watch of the profile the server exports says nothing."""
    from canary.drift.profile import profile_hash
    from canary.drift.watch import DriftWatcher

    new, old = live.profiles["stale"], live.stale_old
    assert profile_hash(new) != profile_hash(old) and new["features"]["f"]["bounds"] == old["features"]["f"]["bounds"]
    w = DriftWatcher([new], client=live.client, window_s=3600, config=M.MonitorConfig())
    with capture_logs() as logs:
        w.once()
        w.once()
    said = [e for e in logs if e["event"] == "drift.profile_mismatch"]
    assert len(said) == 1, logs
    assert said[0]["exported"] == [profile_hash(old)] and said[0]["profile_hash"] == profile_hash(new)
    assert profile_hash(old) in said[0]["message"] and "t.parquet" in said[0]["message"]
    with capture_logs() as logs:
        DriftWatcher([old], client=live.client, window_s=3600, config=M.MonitorConfig()).once()
    assert not [e for e in logs if e["event"].startswith("drift.profile")], logs


def test_a_baseline_removed_and_added_again_has_its_mismatch_said_again(live: Live) -> None:
    """The controller watches the baselines listed at each pass (`watch_baselines` sets `profiles`). "stale" v1's
    baseline, whose server exports an older capture, was said once; its ConfigMap deleted, then applied again while
    the server still exports the older profile: nothing was said, the watcher still held the removed baseline's
    record. It is now said again, and the removed baseline's gauges are gone meanwhile (decision 336)."""
    from prometheus_client import CollectorRegistry

    from canary.drift.watch import DriftWatcher

    new = live.profiles["stale"]
    reg = CollectorRegistry()
    w = DriftWatcher([new], client=live.client, window_s=3600, config=M.MonitorConfig(), registry=reg)
    said, episode = [], []
    for listed in (True, False, True):
        w.profiles = [new] if listed else []
        with capture_logs() as logs:
            w.once()
        said.append([e["event"] for e in logs if e["event"] == "drift.profile_mismatch"])
        episode.append(reg.get_sample_value("model_data_drift_episode",
                                            {"model": "stale", "version": "v1", "namespace": "default"}))
    assert said == [["drift.profile_mismatch"], [], ["drift.profile_mismatch"]], said
    assert episode == [0.0, None, 0.0]


def test_a_feature_dropped_from_a_recaptured_baseline_has_its_gauges_removed(live: Live) -> None:
    """"gone"'s baseline captured again without `city` (a feature the model no longer takes), watched under the same
    model version: `city`'s score and missing-rate series stayed in /metrics with their last values (its missing
    rate 1.0, an alert on it firing) until the process restarted. They are removed at the next evaluation; the
    features it still has keep theirs."""
    from prometheus_client import CollectorRegistry

    from canary.drift.watch import DriftWatcher

    old = live.profiles["gone"]
    new = {**old, "features": {k: v for k, v in old["features"].items() if k != "city"}}
    reg = CollectorRegistry()
    w = DriftWatcher([old], client=live.client, window_s=3600, config=M.MonitorConfig(), registry=reg)
    labels = {"model": "gone", "version": "v1", "namespace": "default"}
    w.once()
    assert reg.get_sample_value("model_data_missing_rate", {**labels, "feature": "city"}) == 1.0
    w.profiles = [new]
    w.once()
    for gauge in ("model_data_missing_rate", "model_data_drift_score"):
        assert reg.get_sample_value(gauge, {**labels, "feature": "city"}) is None, gauge
        assert reg.get_sample_value(gauge, {**labels, "feature": "age"}) is not None, gauge
    assert reg.get_sample_value("model_data_drift_share", labels) is not None


def test_an_older_exporters_sum_is_read_only_where_it_never_fell(live: Live) -> None:
    """Older exporters only: the histogram's `_sum` is the live sum, but one negative value made it fall
    and increase() read a restart there, adding the whole sum again (a mean ~2x the truth: drift).
    A series whose `_sum` fell without its `_count` falling is left out; its mean is 'not checked'."""
    from canary.drift.compare import NO_SUM, compare

    got = live_counts(live.client, live.profiles["oldneg"], model="oldneg", version="v1", window_s=3600)
    assert sum(got["f"]["counts"]) >= 400 and "sum" not in got["f"], got
    [f] = compare(live.profiles["oldneg"], got).features
    assert f.note == NO_SUM and not f.drifted, f


def test_every_query_of_one_evaluation_is_asked_at_one_instant(live: Live) -> None:
    """Each of live_counts' queries was evaluated at Prometheus's own "now": windows that slid apart
    between the sum and the count of one mean. One evaluation now pins one `time=` for all (and its five
    parts are one query since decision 623: one, or two with the histograms' own sums)."""
    asked: list[Any] = []

    class Spy(PrometheusClient):
        def ask(self, query: str, **kw: Any) -> Any:
            asked.append(kw["at"])
            return super().ask(query, **kw)

    live_counts(Spy(live.prom.url), live.profiles["mixed"], model="mixed", version="v1", window_s=3600)
    assert asked and asked[0] is not None and set(asked) == {asked[0]}, asked
    pinned = Spy(live.prom.url, at=1234.5)
    asked.clear()
    live_counts(pinned, live.profiles["mixed"], model="mixed", version="v1", window_s=3600)
    assert set(asked) == {1234.5}


def _one_episode(kube: Any) -> None:
    assert [j.metadata.name for j in kube.batch.list_namespaced_job("ml").items] == ["retrain-m1-v1-e1"]
    assert [e.reason for e in kube.core.list_namespaced_event("ml").items] == ["DriftDetected"]
    assert _stored(kube)["ml/m1/v1"]["episode"] == 1


def test_an_episode_opened_twice_gets_one_job_and_one_event(live: Live, kube: Any) -> None:
    """The evaluation that opens an episode was repeated when its state was not stored, and each made
    its own Job (the second renamed, logged as 'episode numbers restarted') and DriftDetected Event.
    An evaluation is now stored before it is acted on, and one that is not stored is not acted on."""
    kube.save_profile(live.profiles["m1"], "m1-v1-baseline")
    clock = _ticks()
    a = _replica(live, kube, clock)
    _lead(a, kube, 1)  # drifted once, stored
    kube.fail_next(500, methods=("PUT",), plural="configmaps")
    with capture_logs() as logs:
        _lead(a, kube, 1)  # would open the episode: its write fails, so no Job and no Event
        b = _replica(live, kube, clock)  # the lease passes to b, which reads what is stored
        _lead(b, kube, 1)
    _one_episode(kube)
    assert "drift.retrain_adopted" not in [e["event"] for e in logs]


def test_overlapping_leaders_open_one_episode(live: Live, kube: Any) -> None:
    """B became leader (and read the state) while A's pass was still running: both opened episode 1."""
    kube.save_profile(live.profiles["m1"], "m1-v1-baseline")
    clock = _ticks()
    a = _replica(live, kube, clock)
    _lead(a, kube, 1)
    b = _replica(live, kube, clock)
    b.reload()
    a.profiles = b.profiles = [{**live.profiles["m1"], "_namespace": "ml"}]
    with capture_logs() as logs:
        a.once()  # opens episode 1: stored, then its Event and Job
        b.once()  # opens it too, from what it read: refused by the store, nothing done
    _one_episode(kube)
    [conflict] = [e for e in logs if e["event"] == "drift.state_conflict"]
    assert "not acted on" in conflict["message"] and b.states["ml/m1/v1"] == a.states["ml/m1/v1"]


def test_a_deleted_state_configmap_is_written_back_not_a_new_episode(live: Live, kube: Any) -> None:
    """The state ConfigMap deleted during an episode: the state was dropped (logged as another
    replica's change), the episode opened again, a second Job and Event. It is now written back."""
    kube.save_profile(live.profiles["m1"], "m1-v1-baseline")
    a = _replica(live, kube, _ticks())
    _lead(a, kube, 2)
    kube.core.delete_namespaced_config_map("canary-drift-state", "canary-system")
    a.profiles = [{**live.profiles["m1"], "_namespace": "ml"}]
    with capture_logs() as logs:
        for _ in range(3):  # the leader goes on leading (no re-read)
            a.once()
    _one_episode(kube)
    events = [e["event"] for e in logs]
    assert "drift.state_lost" in events and "drift.state_conflict" not in events, events


def test_a_baseline_configmaps_annotations_set_its_own_window_and_enter_after(live: Live, kube: Any) -> None:
    """A model whose inputs follow the time of day needs a day's window and one window to enter (decision 92),
    while the controller's other models keep its --drift-window and 3: the baseline ConfigMap's annotations
    `modelcanary.dev/drift-window` and `drift-enter-after` set them for that model alone. A malformed one is
    drift.bad_baseline naming the ConfigMap, the annotation and the value; the others are evaluated."""
    from canary.drift.store import ENTER_AFTER_ANNOTATION, WINDOW_ANNOTATION

    kube.save_profile(live.profiles["m1"], "m1-baseline")
    kube.save_profile(live.profiles["m2"], "m2-baseline")
    kube.save_profile(live.profiles["late"], "late-baseline")
    kube.core.patch_namespaced_config_map("m1-baseline", "ml", {"metadata": {"annotations": {
        WINDOW_ANNOTATION: "2h", ENTER_AFTER_ANNOTATION: "1"}}})
    kube.core.patch_namespaced_config_map("late-baseline", "ml", {"metadata": {"annotations": {
        ENTER_AFTER_ANNOTATION: "0"}}})
    watcher = _replica(live, kube, _ticks())  # --enter-after 2, a window of 1 h
    with capture_logs() as logs:
        _lead(watcher, kube, 1)
    states = {k: (s.phase, s.drifted_in_row) for k, s in watcher.states.items()}
    assert states == {"ml/m1/v1": ("drifting", 1), "ml/m2/v1": ("ok", 1)}, states  # both drift: one window each
    (started,) = [e for e in logs if e["event"] == "drift.started"]
    assert started["model"] == "m1" and "2h" in json.dumps(started), started  # its window, not the controller's
    (bad,) = [e for e in logs if e["event"] == "drift.bad_baseline"]
    assert bad["configmap"] == "ml/late-baseline" and ENTER_AFTER_ANNOTATION in bad["error"] \
        and "'0'" in bad["error"], bad
    kube.core.patch_namespaced_config_map("late-baseline", "ml", {"metadata": {"annotations": {
        ENTER_AFTER_ANNOTATION: None, WINDOW_ANNOTATION: "a day"}}})
    with capture_logs() as logs:
        _lead(watcher, kube, 1)
    (bad,) = [e for e in logs if e["event"] == "drift.bad_baseline"]
    assert WINDOW_ANNOTATION in bad["error"] and "'a day'" in bad["error"] and "ml/late-baseline" in bad["error"], bad


# --------------------------------------------------------------------------- one retraining per model version
# Two watchers of one model version, each with its own state (two replicas of a Deployment, each with an emptyDir;
# a `--once` CronJob beside a long-running watch) each opened their own episode and each created a retraining Job
# (decision 173). Their clocks here are real time (the Jobs' creationTimestamps are the emulator's), an hour apart
# per evaluation: each evaluation is new evidence.


def _hours_ago(hours: float) -> Any:
    it = iter(range(0, 10**6, 3_600))
    start = time.time() - hours * 3_600
    return lambda: start + next(it)


def _watch(live: Live, kube: Any, state_file: Any, clock: Any, batch: Any = None) -> Any:
    """`canary drift watch --state-file STATE -n ml --retrain-job ...` of m1 v1 (enter after 2 windows)."""
    from canary.drift.watch import DriftWatcher

    return DriftWatcher([live.profiles["m1"]], client=live.client, window_s=3600, namespace="ml",
                        config=M.MonitorConfig(enter_after=2, quiet_s=0), state_file=state_file,
                        core_api=kube.core, batch_api=batch or kube.batch, job_template=JOB, clock=clock)


def _seed_state(path: Any, episode: int) -> Any:
    """A state file whose watcher has had `episode` episodes of m1 v1 (all ended)."""
    path.write_text(json.dumps({"m1/v1": M.MonitorState("m1", "v1", episode=episode).to_dict()}))
    return path


def _job_names(kube: Any) -> list[str]:
    return sorted(j.metadata.name for j in kube.batch.list_namespaced_job("ml").items)


def test_two_watchers_with_their_own_state_files_start_one_retraining(live: Live, kube: Any, tmp_path: Any) -> None:
    """The first watcher's Job is in flight: the second (a fresh state: its episode 1 too) and a third (a state
    at episode 4: its episode 5) adopt it, say so, and log it as their retraining. Before: three Jobs
    (retrain-m1-v1-e1, e1-<hash> renamed as 'episode numbers restarted', and e5)."""
    a = _watch(live, kube, tmp_path / "a.json", _hours_ago(3))
    b = _watch(live, kube, tmp_path / "b.json", _hours_ago(3))
    c = _watch(live, kube, _seed_state(tmp_path / "c.json", 4), _hours_ago(3))
    a.once(), a.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1"]
    with capture_logs() as logs:
        for w in (b, c, b, c):
            w.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1"]
    assert [(w.states["m1/v1"].episode, w.states["m1/v1"].trigger) for w in (a, b, c)] == [
        (1, "done"), (1, "done"), (5, "done")]
    adopted = [e for e in logs if e["event"] == "drift.retrain_adopted"]
    assert [(e["episode"], e["job"]) for e in adopted] == [(1, "ml/retrain-m1-v1-e1"), (5, "ml/retrain-m1-v1-e1")]
    assert all(e["adopted_episode"] == "1" and "no second Job" in e["message"] for e in adopted), adopted
    said = [e["retraining"] for e in logs if e["event"] == "drift.retrain_triggered"]
    assert said == ["Job ml/retrain-m1-v1-e1"] * 2
    stored = json.loads((tmp_path / "c.json").read_text())["m1/v1"]  # adopted, stored as done
    assert stored["trigger"] == "done" and stored["episode"] == 5


def test_two_watchers_creating_at_the_same_moment_make_one_job(live: Live, kube: Any, tmp_path: Any) -> None:
    """Both list the model version's Jobs before either creates one (none in flight), then both create. Checking
    first is not enough: the name is the lock. Both name the version's next retraining (-e1), whatever their
    episode numbers, so the API server lets one create it; the other's AlreadyExists is read and adopted."""
    a = _watch(live, kube, tmp_path / "a.json", _hours_ago(3))

    class Racing:
        """The second watcher's batch API: the first watcher's whole evaluation runs between its list and its
        create (on demand, no timing)."""

        def __init__(self) -> None:
            self.lists = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(kube.batch, name)

        def list_namespaced_job(self, *args: Any, **kw: Any) -> Any:
            self.lists += 1
            return kube.batch.list_namespaced_job(*args, **kw)

        def create_namespaced_job(self, *args: Any, **kw: Any) -> Any:
            if self.lists == 1 and not _job_names(kube):
                a.once()  # the first watcher opens its episode, lists (nothing either) and creates its Job
                assert _job_names(kube) == ["retrain-m1-v1-e1"]
            return kube.batch.create_namespaced_job(*args, **kw)

    racing = Racing()
    b = _watch(live, kube, _seed_state(tmp_path / "b.json", 4), _hours_ago(3), batch=racing)
    a.once(), b.once()  # one drifted window each
    with capture_logs() as logs:
        b.once()  # opens its episode 5: lists, then (the race) a creates, then b creates
    assert racing.lists == 1 and a.states["m1/v1"].trigger == "done" and b.states["m1/v1"].trigger == "done"
    assert _job_names(kube) == ["retrain-m1-v1-e1"]
    [adopted] = [e for e in logs if e["event"] == "drift.retrain_adopted"]
    assert adopted["episode"] == 5 and adopted["job"] == "ml/retrain-m1-v1-e1"


def _retraining(kube: Any, name: str, *, hours_ago: float, number: int, episode: int) -> None:
    """A finished (Complete) retraining Job of m1 v1, created `hours_ago`."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours_ago * 3600))
    kube.handler.put_object({
        **JOB, "metadata": {"name": name, "namespace": "ml", "creationTimestamp": created,
                            "labels": {"modelcanary.dev/model": "m1", "modelcanary.dev/version": "v1",
                                       "modelcanary.dev/drift-episode": str(episode),
                                       "modelcanary.dev/retraining": str(number)},
                            "annotations": {"modelcanary.dev/drift-episode-start": repr(time.time() - hours_ago)}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}})


def test_a_finished_retraining_is_adopted_only_when_created_since_the_drift_was_read(
        live: Live, kube: Any, tmp_path: Any) -> None:
    """A retraining that finished a day ago is an earlier drift's: the new episode gets its own Job, the version's
    next number (e2). One that finished after this drift began to be read (the start of the first window the
    episode counted) is this drift's: a second watcher whose episode opens later, and whose quicker retraining
    is already over, adopts it."""
    _retraining(kube, "retrain-m1-v1-e1", hours_ago=30, number=1, episode=1)
    a = _watch(live, kube, tmp_path / "a.json", _hours_ago(2))
    with capture_logs() as logs:
        a.once(), a.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1", "retrain-m1-v1-e2"]
    assert "drift.retrain_adopted" not in [e["event"] for e in logs]
    kube.edit("batch", "jobs", "ml", "retrain-m1-v1-e2",
              lambda o: o.update(status={"conditions": [{"type": "Complete", "status": "True"}]}))
    b = _watch(live, kube, tmp_path / "b.json", _hours_ago(1))  # its drift read from 2 h ago: after e2 began
    with capture_logs() as logs:
        b.once(), b.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1", "retrain-m1-v1-e2"]
    [adopted] = [e for e in logs if e["event"] == "drift.retrain_adopted"]
    assert adopted["job"] == "ml/retrain-m1-v1-e2" and "after this drift began to be read" in adopted["message"]


def test_the_controllers_drift_monitor_and_a_drift_watch_of_one_version_start_one_retraining(
        live: Live, kube: Any, tmp_path: Any) -> None:
    """The same kind across the two watchers canary has: the controller's drift monitor (its state in a ConfigMap)
    and a `drift watch` someone runs beside it on its own state file. The watch opens its episode first here;
    the controller's leader then adopts its Job (before: a second Job, `retrain-m1-v1-e1-<hash>`)."""
    kube.save_profile(live.profiles["m1"], "m1-v1-baseline")
    w = _watch(live, kube, tmp_path / "w.json", _hours_ago(3))
    w.once(), w.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1"]
    leader = _replica(live, kube, _hours_ago(3))
    with capture_logs() as logs:
        _lead(leader, kube, 2)
    assert _job_names(kube) == ["retrain-m1-v1-e1"]
    assert _stored(kube)["ml/m1/v1"]["trigger"] == "done"
    [adopted] = [e for e in logs if e["event"] == "drift.retrain_adopted"]
    assert adopted["job"] == "ml/retrain-m1-v1-e1" and adopted["namespace"] == "ml"


def test_a_model_whose_label_value_is_another_models_gets_a_retraining_of_its_own(kube: Any) -> None:
    """Label values are lossy (`label_value`: any other character becomes `-`): `fraud/model`, `fraud-model` and
    `fraud model` are all `fraud-model`. Listed by those labels, the second model's episode, opened in the same pass
    as the first's (the controller's drift monitor evaluates every model at one instant: the same episode start),
    took the first's Job for its own, said nothing and never retrained; a third, opened later, adopted it
    (decision 179). Each is a model of its own: three Jobs, none adopted, and a retry of each finds its own."""
    from canary.drift.retrain import create_job
    from canary.drift.store import label_value

    models = ("fraud/model", "fraud-model", "fraud model")
    assert len({label_value(m) for m in models}) == 1
    at = {"fraud/model": 7_200.0, "fraud-model": 7_200.0, "fraud model": 10_800.0}

    def trigger(model: str) -> tuple[bool, str, str]:
        ev = {"at": at[model], "window_s": 3_600.0, "since": 0.0}
        return create_job(kube.batch, JOB, namespace="ml", model=model, version="v1", episode=1, evidence=ev,
                          since=0.0)

    with capture_logs() as logs:
        first = [trigger(m) for m in models]
    assert [ok for ok, _, _ in first] == [True] * 3 and len({name for _, _, name in first}) == 3, first
    assert _job_names(kube) == sorted(name for _, _, name in first)
    assert [e for e in logs if e["event"] == "drift.retrain_adopted"] == []
    for model, done in zip(models, first):  # a lost write: each model's retry finds its own Job
        job = kube.batch.read_namespaced_job(done[2], "ml")
        assert job.metadata.annotations["modelcanary.dev/model"] == model
        assert trigger(model) == done
    assert len(_job_names(kube)) == 3


@pytest.mark.parametrize(("status", "says", "never"), [
    (500, "the API server failed it (HTTP 500): not a permission; retried", "RBAC"),
    (403, "refused: RBAC must grant list on jobs in ml", "not a permission"),
])
def test_a_retraining_list_that_fails_says_why_by_the_api_servers_answer(
        live: Live, kube: Any, tmp_path: Any, status: int, says: str, never: str) -> None:
    """The episode's trigger lists the model version's Jobs before it creates one. Any failure of that list read
    "Job ml: cannot list the retraining Jobs ... (RBAC: list on jobs): ServiceException: 500": a Job named by its
    namespace alone, and RBAC blamed for an API server that was failing, so on-call went to the Role while the
    retry would do. The line now names no Job, and the cause is the server's status: RBAC for a 403 only."""
    w = _watch(live, kube, tmp_path / "s.json", _hours_ago(2))
    w.once()  # the first drifted window
    kube.fail_next(status, methods=("GET",), plural="jobs")  # the list the episode's trigger starts with
    with capture_logs() as logs:
        w.once()  # the second: the episode opens, its trigger fails
    [failed] = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert failed["message"].startswith("m1 v1: retraining trigger for episode 1 failed (attempt 1): cannot list "
                                        "the retraining Jobs of m1 v1 in ml"), failed["message"]
    assert says in failed["message"] and never not in failed["message"], failed["message"]
    assert f"{status}" in failed["message"] and _job_names(kube) == []
    assert w.states["m1/v1"].trigger == "pending"


def test_a_job_deleted_between_the_creates_409_and_the_read_is_said_so(live: Live, kube: Any, tmp_path: Any) -> None:
    """The create's 409 AlreadyExists, then the Job gone at the read that tells whose it is (its TTL, a person):
    the line read "Job ml/retrain-m1-v1-e1: Job ml/retrain-m1-v1-e1 exists and could not be read ...: 404 Not
    Found", the Job named twice and said to exist and not to. It now says what happened, and the retry creates it."""
    w = _watch(live, kube, tmp_path / "s.json", _hours_ago(2))
    w.once()
    kube.fail_next(409, methods=("POST",), plural="jobs")  # the name taken at the create, gone at the read
    with capture_logs() as logs:
        w.once()
    [failed] = [e for e in logs if e["event"] == "drift.retrain_failed"]
    msg = failed["message"]
    ours = msg.split("NotFoundException")[0]  # the server's own words name it once more
    assert ours.count("retrain-m1-v1-e1") == 1 and "exists and could not be read" not in msg, msg
    assert "taken at the create (409 AlreadyExists) and the Job gone at the read" in msg, msg
    from dataclasses import replace

    key = "m1/v1"
    w.states[key] = replace(w.states[key], trigger_due=0.0)  # the retry, due now
    w.once()
    assert _job_names(kube) == ["retrain-m1-v1-e1"] and w.states[key].trigger == "done"


def test_the_lines_of_an_episode_opened_by_one_window_read_as_written(live: Live) -> None:
    """`--enter-after 1` (docs/drift.md: a daily-cycle model's `--window 24h --enter-after 1`) opened its episode
    with "... in 1 windows of 1h in a row", and one without retraining configured logged `drift.retrain_not_configured`
    with no message at all: the one line on-call reads to learn that nothing retrains this drift."""
    from canary.drift.watch import DriftWatcher

    w = DriftWatcher([live.profiles["m2"]], client=live.client, window_s=3600, config=M.MonitorConfig(
        enter_after=1, exit_after=1, quiet_s=0), clock=_ticks())
    with capture_logs() as logs:
        w.once()
    [started] = [e for e in logs if e["event"] == "drift.started"]
    assert "drifted (100%; f wasserstein" in started["message"], started["message"]
    assert ") in 1 window of 1h, against" in started["message"] and "windows" not in started["message"], started
    [alone] = [e for e in logs if e["event"] == "drift.retrain_not_configured"]
    assert alone["message"].startswith("m2 v1: drift episode 1 is alerted only, nothing retrains it"), alone


def test_drift_check_says_a_server_exporting_another_profile_as_drift_watch_does(live: Live, tmp_path: Any) -> None:
    """`drift check` of the re-captured "stale" v1 baseline, whose server still exports the older capture's
    profile: the same fact `drift watch` logs as drift.profile_mismatch is a warning on stderr and a
    `profile_mismatch` entry in the output, the verdict and exit code unchanged; a check of the profile the
    server exports says nothing of it (decision 320)."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.profile import profile_hash

    new, old = live.profiles["stale"], live.stale_old
    runs = {}
    for name, prof in (("new", new), ("old", old)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(prof, indent=1))
        runs[name] = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url",
                                              live.prom.url, "--window", "1h", "-o", "json"])
    r = runs["new"]
    assert r.exit_code in (0, 1), r.output
    got = json.loads(r.stdout)
    assert got["profile_mismatch"] == {"profile_hash": profile_hash(new), "exported": [profile_hash(old)],
                                       "some_pods": False}, got
    assert "warning: stale v1: every pod of the model server that names its profile (older exporters name none) " \
           "exports live counts built from another profile" in r.stderr
    assert profile_hash(old) in r.stderr and "t.parquet" in r.stderr
    assert runs["old"].exit_code in (0, 1) and "profile_mismatch" not in json.loads(runs["old"].stdout)
    assert "another profile" not in runs["old"].stderr


STATE_ANSWERS = [(500, b"", ""), (200, b"{}", "application/json"), (200, b"null", "application/json"),
                 (200, b"", "application/json"), (200, b"<html><body>upstream connect error</body></html>", "text/html")]


@pytest.mark.parametrize("code,body,content_type", STATE_ANSWERS, ids=["500", "{}", "null", "empty", "html"])
def test_a_state_write_that_landed_with_its_answer_lost_is_stored_not_read_as_another_replicas(
        live: Live, kube: Any, code: int, body: bytes, content_type: str) -> None:
    """The leader's write of the state ConfigMap lands and is answered 500 `etcdserver: request timed out` or 200 with
    no object (a proxy). Before: `drift.state_save_failed` (the evaluation dropped; for the 200s, the rest of the pass
    too, as if the store had not answered), and the next write, on the resourceVersion before its own, met a 409 and
    read its own landed state as another replica's (`drift.state_conflict`). Now the ConfigMap is read back: the
    state is there, so it is stored (`drift.state_answer_lost`), and the next write is guarded on the version read."""
    import aiohttp.web

    from canary.sandbox.kubeapi import status_body

    for m in ("m1", "m2"):
        kube.save_profile(live.profiles[m], f"{m}-v1-baseline")
    a = _replica(live, kube, _ticks())
    _lead(a, kube, 1)
    real, hit = kube.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == "configmaps" and str(request.method.value).upper() == "PUT" and not hit:
            hit.append((await real(request)).status)
            if code == 500:
                return aiohttp.web.json_response(status_body(500, "InternalError", "etcdserver: request timed out"),
                                                 status=500)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        return await real(request)

    kube.handler._handle = handle  # type: ignore[method-assign]
    with capture_logs() as logs:
        _lead(a, kube, 2)
    events = [e["event"] for e in logs]
    assert hit == [200] and events.count("drift.state_answer_lost") == 1, logs
    assert "drift.state_save_failed" not in events and "drift.state_conflict" not in events, logs
    stored = _stored(kube)
    assert stored["ml/m1/v1"]["drifted_in_row"] == 3 and stored["ml/m2/v1"]["drifted_in_row"] == 3, stored


@pytest.mark.parametrize("body,content_type", [(b"{}", "application/json"), (b"null", "application/json"),
                                               (b"", "application/json"), (b"<html>bad gateway</html>", "text/html"),
                                               (b'{"items": ["retrain-m1-v1-e1"]}', "application/json")])
@pytest.mark.parametrize("what", ["read", "list"])
def test_a_retraining_jobs_read_answered_with_no_object_never_starts_a_second_job(
        kube: Any, what: str, body: bytes, content_type: str) -> None:
    """Another watcher creates this episode's Job between this trigger's LIST and its create: the create meets it
    (409) and the read that tells whose it is answered 200 with no object. Before: `{}` read as a Job of no model
    version, so the name "was taken by another Job" and `retrain-m1-v1-e2` was created: two retrainings at once
    (the empty and page bodies: the client's ValidationError, said as a read that failed). And a LIST so answered
    was "no Job in flight" (`{}`: no `items`), and one whose items are not objects an AttributeError out of the
    trigger. Now both go through `kube.raw_object`/`raw_list`: a read or a list that failed, the trigger retried,
    no second Job (decisions 424, 494)."""
    import aiohttp.web

    from canary.drift.retrain import create_job, retrain_job

    ev = {"at": 7_200.0, "window_s": 3_600.0, "since": 0.0}
    other = retrain_job(JOB, model="m1", version="v1", episode=1, evidence={**ev, "at": 3_600.0}, number=1)
    other["metadata"]["namespace"] = "ml"
    if what == "read":  # created by the other watcher just before this one's create
        kube.before_next_write(lambda: kube.handler.put_object(other))
    else:
        kube.handler.put_object(other)
    real, hit = kube.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if (res is not None and res.plural == "jobs" and str(request.method.value).upper() == "GET" and not hit
                and (request.name is not None) == (what == "read")):
            hit.append(request.name)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        return await real(request)

    kube.handler._handle = handle  # type: ignore[method-assign]
    done, error, _ = create_job(kube.batch, JOB, namespace="ml", model="m1", version="v1", episode=1, evidence=ev,
                                since=0.0)
    assert hit and not done and ("not the object" in error or "not a list" in error
                                 or "item 0 that is not an object" in error), (done, error)
    assert _job_names(kube) == ["retrain-m1-v1-e1"]

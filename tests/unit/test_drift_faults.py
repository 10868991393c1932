"""Drift faults found by a fourteenth-session review, pure parts: features whose values are negative,
malformed baselines, episode numbers that repeat, the quiet period, features that stop arriving,
evidence too large for an annotation."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from canary.drift import compare as C
from canary.drift.compare import compare

NO_SUM = getattr(C, "NO_SUM", "no live sum")  # the note (a name only the fixed module has)
from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture


def _profile(columns: dict[str, Any], model: str = "rec", version: str = "v1") -> dict[str, Any]:
    import pyarrow as pa

    return capture(pa.table(columns), model=model, version=version, file="t.parquet", sha256="0" * 64)


def test_every_numeric_feature_exports_its_sum_whatever_the_sign_of_its_bounds() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    rng = np.random.default_rng(1)
    prof = _profile({"z": rng.normal(0, 1, 2_000), "p": rng.uniform(1, 2, 2_000)})
    assert prof["features"]["z"]["bounds"][0] < 0 <= prof["features"]["p"]["bounds"][0]
    reg = CollectorRegistry()
    ex = FeatureExporter(prof, registry=reg)
    for z, p in zip((-3.0, 1.0, -0.5), (1.5, 1.2, 1.9)):
        ex.observe({"z": z, "p": p})
    text = generate_latest(reg).decode()
    for name, pos, neg in (("z", 1.0, 3.5), ("p", 4.6, 0.0)):
        for sign, value in (("positive", pos), ("negative", neg)):
            line = next(x for x in text.splitlines() if x.startswith("model_feature_value_sum_by_sign_total{")
                        and f'feature="{name}"' in x and f'sign="{sign}"' in x)
            assert abs(float(line.rsplit(" ", 1)[1]) - value) < 1e-9, line
    assert abs(ex.live_counts()["z"]["sum"] - (-2.5)) < 1e-12


def _ages_exported(*, seed: int, std: float, observed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile of `age` ~ N(40, std) (5,000 rows) and the live counts its exporter gives after
    `observed` values from the same distribution."""
    rng = np.random.default_rng(seed)
    prof = _profile({"age": rng.normal(40, std, 5_000)})
    ex = FeatureExporter(prof, registry=None)
    for a in rng.normal(40, std, observed):
        ex.observe({"age": a})
    return prof, ex.live_counts()


def test_a_missing_live_sum_is_said_never_silently_skipped() -> None:
    prof, live = _ages_exported(seed=2, std=10, observed=2_000)
    [with_sum] = compare(prof, live).features
    assert with_sum.test == "wasserstein" and NO_SUM not in with_sum.note
    [without] = compare(prof, {"age": {"counts": live["age"]["counts"]}}).features
    assert without.note == NO_SUM and NO_SUM in without.reason()


def _edit(prof: dict[str, Any], feature: str, key: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(prof))
    out["features"][feature][key] = value
    return out


BAD_FIELDS = [  # hand edits validate_profile let through: a TypeError or AttributeError in every pass
    ("age", "mean", None, "features.age.mean"),
    ("age", "mean", "41", "features.age.mean"),
    ("age", "quantiles", [1, 2], "features.age.quantiles"),
    ("age", "quantiles", {"0.001": "abc"}, "features.age.quantiles.0.001"),
    ("age", "quantiles", {"0.5": 40.0, "0.999": -1e9}, "features.age.quantiles.0.999"),
    ("age", "quantiles", {"lots": 40.0}, "features.age.quantiles.lots"),
    ("age", "missing", None, "features.age.missing"),
    ("city", "missing", -1, "features.city.missing"),
    ("age", "n_unique", 0, "features.age.n_unique"),  # decision 153: read as "few values", compared as categories
    ("city", "other", -3, "features.city.other"),  # was named `other[0]`, an index into no list
    # decision 160: a sample's spread that no sample has; `"std": 0` over 2,000 distinct values was read as a
    # constant (every live spread drift, in every window), a std above the range hid every drift
    ("age", "std", 0, "features.age.std"),
    ("age", "std", 1e6, "features.age.std"),
    ("age", "mean", 1e6, "features.age.mean"),
    ("age", "min", 1e6, "features.age.min"),
]


@pytest.mark.parametrize("value,says", [(1, "version: must be text"), ("", "version: missing"),
                                        (None, "version: missing")])
def test_a_profiles_version_that_is_a_number_is_named_so_not_missing(value: Any, says: str) -> None:
    """Decision 153: `"version": 1` (YAML habits, a hand edit) was "version: missing", which it is not."""
    from canary.drift.compare import validate_profile
    from canary.errors import ConfigError

    prof = _profile({"age": np.random.default_rng(3).normal(40, 10, 2_000)})
    with pytest.raises(ConfigError, match=f"bad.json: {says}"):
        validate_profile({**prof, "version": value}, "bad.json")


@pytest.mark.parametrize("feature,key,value,field", BAD_FIELDS)
def test_every_field_the_comparison_reads_is_validated_naming_file_and_field(
        tmp_path: Any, feature: str, key: str, value: Any, field: str) -> None:
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.compare import validate_profile
    from canary.errors import ConfigError

    rng = np.random.default_rng(3)
    prof = _edit(_profile({"age": rng.normal(40, 10, 2_000), "city": rng.choice(["a", "b"], 2_000).tolist()}),
                 feature, key, value)
    with pytest.raises(ConfigError, match=f"bad.json: {field}:"):
        validate_profile(prof, "bad.json")
    path, live = tmp_path / "bad.json", tmp_path / "live.json"
    path.write_text(json.dumps(prof))
    counts = prof["features"]["age"]["counts"]
    live.write_text(json.dumps({"features": {"age": {"counts": counts, "sum": 40.0 * sum(counts)}}}))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--input", str(live)])
    assert r.exit_code == 2 and f"{path}: {field}:" in r.output, r.output  # bad input, never 1 (drift)


@pytest.mark.parametrize("n_features,drifted", [(400, 150), (2_000, 1_900), (30, 10)])
def test_the_evidence_passed_to_retraining_is_always_valid_json(n_features: int, drifted: int) -> None:
    """Cut at 60,000 characters, the evidence of ~350+ features was invalid JSON in the Job's annotation
    and env var. It is shrunk instead: drifted features first, the rest summarised, and it says so."""
    from canary.drift.retrain import EVIDENCE_MAX, retrain_job

    feats = [{"feature": f"feature_with_a_long_name_{i:05d}", "test": "wasserstein", "value": 0.1 + i / 1e4,
              "threshold": 0.1, "score": (0.5 if i < drifted else 0.01) + i / 1e6, "psi": 0.2, "drifted": i < drifted,
              "n_current": 3000.0} for i in range(n_features)]
    evidence = {"at": 1234.5, "window_s": 3600, "share": drifted / n_features,
                "drifted_features": [f["feature"] for f in feats if f["drifted"]], "features": feats}
    job = retrain_job(JOB, model="m", version="v1", episode=1, evidence=evidence)
    texts = [job["metadata"]["annotations"]["modelcanary.dev/drift-evidence"],
             job["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]]
    for text in texts:
        assert len(text) <= EVIDENCE_MAX
        got = json.loads(text)  # valid JSON, whatever the size
        if len(json.dumps(evidence, separators=(",", ":"))) <= EVIDENCE_MAX:
            assert got == evidence
            continue
        assert got["truncated"] is True and got["at"] == 1234.5
        kept = got["features"]
        assert len(kept) + got["features_omitted"] == n_features
        # drifted first: no entry kept ranks below one left out
        drifted_kept = [f for f in kept if f["drifted"]]
        assert drifted_kept == kept[:len(drifted_kept)]
        assert got["omitted"]["drifted"] == drifted - len(drifted_kept)
        assert len(got["drifted_features"]) + got.get("drifted_features_omitted", 0) == drifted


JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "retrain-"},
       "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "t"}]}}}}


def _result(drifted: bool, n: float = 150.0) -> Any:
    from canary.drift import stats as D

    f = D.FeatureDrift("f", "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted, 0.1, 5000, n)
    return D.DatasetDrift((f,), 1.0 if drifted else 0.0, drifted)


def test_the_quiet_period_starts_with_the_first_live_data_not_with_the_baseline() -> None:
    """A baseline registered two hours before its version serves: the quiet hour was spent on no
    traffic, and drift fired 10 minutes after serving began, on 150 requests."""
    from canary.drift import monitor as M
    from canary.drift import stats as D

    cfg = M.MonitorConfig()  # three windows in a row, quiet 1 h
    s, t = M.MonitorState("m", "v3"), 0.0
    for _ in range(24):  # no traffic yet
        s, acts = M.step(s, D.DatasetDrift((), 0.0, False), t, cfg, window_s=3600)
        assert acts == []
        t += 300
    first = t
    while t < first + 3600:
        s, acts = M.step(s, _result(True), t, cfg, window_s=900)
        assert acts == [] and s.phase == M.OK, t - first
        t += 300
    assert (s.traffic_since, s.quiet_until) == (first, first + 3600)
    s, acts = M.step(s, _result(True), t, cfg, window_s=900)
    assert s.phase == M.DRIFTING and acts[0].event == "drift.started"


def test_a_state_written_before_the_field_keeps_its_quiet_period() -> None:
    from canary.drift import monitor as M

    old = {"model": "m", "version": "v1", "quiet_until": 5000.0, "drifted_in_row": 2}
    s = M.MonitorState.from_dict(old)
    s2, _ = M.step(s, _result(True), 6000.0, M.MonitorConfig(), window_s=3600)
    assert s2.quiet_until == 5000.0 and s2.phase == M.DRIFTING  # never restarted by an upgrade


def test_watch_once_without_a_state_file_is_refused_and_drift_speaks_of_live_data(tmp_path: Any) -> None:
    """`drift watch --once` without --state-file could never open an episode (a quiet period that restarts
    each run) or, with --enter-after 1 --quiet 0, opened one and made a Job on every run: refused, exit 2.
    An unreachable Prometheus was "could not be asked for the v1 arm" (a rollout's words)."""
    import socket

    from typer.testing import CliRunner

    from canary.cli import app

    rng = np.random.default_rng(4)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_profile({"age": rng.normal(40, 10, 500)})))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    for extra in ([], ["--enter-after", "1"], ["--enter-after", "1", "--quiet", "0"]):
        r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--prometheus-url", url,
                                     "--no-kube", "--once", *extra])
        assert r.exit_code == 2 and "--once needs --state-file" in r.output, r.output
        assert "--enter-after 1)" not in r.output  # the advice that made it worse is gone
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--prometheus-url", url,
                                 "--no-kube", "--once", "--state-file", str(tmp_path / "s.json")])
    assert r.exit_code == 3 and "the live data of rec v1" in r.output and " arm" not in r.output, r.output
    assert r.output.index("does not answer a trivial query") < r.output.index("; query: label_replace("), r.output
    # what happened before the query it quotes, over 1 KB of PromQL since decision 623 (its addendum)
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", url])
    assert r.exit_code == 3, r.output
    assert r.output.index("does not answer at all") < r.output.index("; query: label_replace("), r.output


def test_the_live_mean_is_the_sum_over_its_own_count_when_that_is_given() -> None:
    """`sum_n`: the values the live sum is over (the pods that export it, during a rolling upgrade).
    The mean is sum / sum_n, not sum over every pod's buckets; fewer than MIN_LIVE values: not checked.
    The exporter exports that count beside its per-sign sums."""
    from prometheus_client import CollectorRegistry, generate_latest

    prof, live = _ages_exported(seed=3, std=12, observed=4_000)
    quarter = {"counts": live["age"]["counts"], "sum": live["age"]["sum"] / 4, "sum_n": 1_000}
    [f] = compare(prof, {"age": quarter}).features
    assert not f.drifted and f.note != NO_SUM, f
    [f] = compare(prof, {"age": {**quarter, "sum": quarter["sum"] / 1_000 * 50, "sum_n": 50}}).features
    assert f.note == NO_SUM, f
    reg = CollectorRegistry()
    FeatureExporter(prof, registry=reg).observe({"age": -3.0})
    assert 'model_feature_value_summed_total{feature="age",model_name="rec",model_version="v1",role="input"} 1.0' \
        in generate_latest(reg).decode()


def test_drift_watch_never_exits_1_on_an_error(tmp_path: Any) -> None:
    """--metrics-port in use raised an OSError: a traceback and exit 1, which means 'episode open'."""
    import socket

    from typer.testing import CliRunner

    from canary.cli import app

    rng = np.random.default_rng(2)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_profile({"f": rng.normal(0, 1, 500)})))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--no-kube", "--once",
                                     "--state-file", str(tmp_path / "s.json"),
                                     "--prometheus-url", "http://127.0.0.1:9", "--metrics-port", str(port)])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and f"--metrics-port {port}" in lines[0] and "Traceback" not in r.output, r.output


def test_a_failed_retraining_trigger_is_retried_while_prometheus_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """An episode opened, its Job's create failed (503); then Prometheus went down for two hours: the
    trigger stayed pending with no retry, since retries rode on evaluations that measured something.
    Creating the Job needs the Kubernetes API only: it is retried when due, measured or not."""
    from canary.drift import monitor as M
    from canary.drift import watch as W
    from canary.errors import TransientError

    prof = _profile({"f": np.random.default_rng(1).normal(0, 1, 5_000)})
    k, down = len(prof["features"]["f"]["counts"]), [False]

    def live(*_a: Any, **_k: Any) -> dict[str, Any]:
        if down[0]:
            raise TransientError("Prometheus at http://prometheus:9090 is unavailable")
        return {"f": {"counts": [0] * (k - 1) + [3_000]}}

    class Unavailable(Exception):
        status, reason, body = 503, "Service Unavailable", ""

    class Batch:
        names: list[str] = []

        def list_namespaced_job(self, namespace: str, **_: Any) -> Any:  # none in flight (retrain.create_job)
            return SimpleNamespace(data=b'{"items": []}', release_conn=lambda: None)  # as sent (raw)

        def create_namespaced_job(self, namespace: str, job: Any, **_: Any) -> None:
            self.names.append(job["metadata"]["name"])
            if len(self.names) == 1:
                raise Unavailable()

    monkeypatch.setattr(W, "live_counts", live)
    t = [0.0]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "retrain"},
           "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}}}
    w = W.DriftWatcher([prof], client=None, window_s=3_600, config=M.MonitorConfig(enter_after=1, quiet_s=0),
                       batch_api=Batch(), job_template=job, clock=lambda: t[0])
    w.once()
    assert w.states["rec/v1"].trigger == "pending" and len(Batch.names) == 1
    down[0] = True
    for _ in range(24):
        t[0] += 300
        done = w.once()
        assert any("Prometheus" in d.get("error", "") for d in done)
    assert w.states["rec/v1"].trigger == "done" and Batch.names == ["retrain-rec-v1-e1"] * 2


def test_a_new_episode_takes_over_a_pending_trigger_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Episode 1's Job could not be created (503, retried with backoff); episode 1 ended, and episode 2
    opened while episode 1's retry was not yet due. `step` overwrote trigger, attempts and evidence:
    episode 1's retraining was dropped and nothing said so. Now episode 2's one Job covers both (no
    second retraining on the same data): its evidence names episode 1 (`supersedes`), and
    `drift.retrain_superseded` says which episode's trigger it replaced, after how many failures."""
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift import watch as W

    prof = _profile({"f": np.random.default_rng(1).normal(0, 1, 5_000)})
    k, drifting, api_up = len(prof["features"]["f"]["counts"]), [True], [False]
    same = prof["features"]["f"]["counts"]

    def live(*_a: Any, **_k: Any) -> dict[str, Any]:
        return {"f": {"counts": [0] * (k - 1) + [3_000] if drifting[0] else same}}

    class Unavailable(Exception):
        status, reason, body = 503, "Service Unavailable", ""

    class Batch:
        tried: list[str] = []
        created: list[dict[str, Any]] = []

        def list_namespaced_job(self, namespace: str, **_: Any) -> Any:
            return SimpleNamespace(data=json.dumps({"items": self.created}).encode(), release_conn=lambda: None)

        def create_namespaced_job(self, namespace: str, job: Any, **_: Any) -> None:
            self.tried.append(job["metadata"]["name"])
            if not api_up[0]:
                raise Unavailable()
            self.created.append(job)

    class Core:
        reasons: list[str] = []

        def create_namespaced_event(self, namespace: str, body: Any, **_: Any) -> None:
            self.reasons.append(body["reason"] if isinstance(body, dict) else body.reason)

    monkeypatch.setattr(W, "live_counts", live)
    t = [0.0]
    w = W.DriftWatcher([prof], client=None, window_s=300,
                       config=M.MonitorConfig(enter_after=1, exit_after=1, quiet_s=0),
                       core_api=Core(), batch_api=Batch(), job_template=JOB, clock=lambda: t[0])
    with capture_logs() as logs:
        for _ in range(5):  # episode 1 opens; its Job fails at 0, 300, 600, 900, 1200 s (next try at 1680 s)
            w.once()
            t[0] += 300
        s = w.states["rec/v1"]
        assert (s.episode, s.trigger, s.trigger_attempts, s.trigger_due) == (1, "pending", 5, 1680.0)
        drifting[0] = False
        w.once()  # 1500 s: episode 1 ends, its trigger still pending
        assert w.states["rec/v1"].phase == M.OK and w.states["rec/v1"].trigger == "pending"
        api_up[0], drifting[0] = True, True
        t[0] += 300
        w.once()  # 1800 s: episode 2 opens before episode 1's retry ran
    # the model version's first retraining (a Job's -e<N> numbers retrainings, decision 173): episode 1's never started
    assert Batch.tried == ["retrain-rec-v1-e1"] * 6
    s = w.states["rec/v1"]
    assert (s.episode, s.trigger) == (2, "done")
    [job] = Batch.created
    evidence = json.loads(job["metadata"]["annotations"]["modelcanary.dev/drift-evidence"])
    assert evidence["at"] == 1800.0 and [e["episode"] for e in evidence["supersedes"]] == [1]
    assert evidence["supersedes"][0]["at"] == 0.0 and evidence["supersedes"][0]["failed_attempts"] == 5
    assert evidence["supersedes"][0]["drifted_features"] == ["f"]
    [said] = [e for e in logs if e["event"] == "drift.retrain_superseded"]
    assert said["log_level"] == "warning" and said["episode"] == 2 and said["superseded_episode"] == 1
    assert "episode 1 (opened 30m earlier) was never started (5 failed attempts)" in said["message"]
    assert Core.reasons[-2:] == ["DriftDetected", "RetrainSuperseded"]
    events = [e["event"] for e in logs]
    assert events.index("drift.started", events.index("drift.resolved")) < events.index("drift.retrain_superseded") \
        < events.index("drift.retrain_triggered")


def test_only_a_pending_trigger_is_superseded_and_the_chain_is_kept() -> None:
    """`step` alone: a trigger done (or none) is not superseded; a pending one is, and an episode that
    supersedes one that had superseded another names both, oldest first."""
    from canary.drift import monitor as M

    cfg = M.MonitorConfig(enter_after=1, exit_after=1, quiet_s=0)
    s = M.MonitorState("m", "v1")
    s, _ = M.step(s, _result(True), 0.0, cfg, window_s=300)  # episode 1
    s, acts = M.trigger_result(s, False, 0.0, cfg, "HTTP 503")
    s, _ = M.trigger_result(s, False, 30.0, cfg, "HTTP 503")
    assert (s.trigger, s.trigger_attempts) == ("pending", 2)
    for episode, at in ((2, 600.0), (3, 1200.0)):
        s, _ = M.step(s, _result(False), at - 300, cfg, window_s=300)
        s, acts = M.step(s, _result(True), at, cfg, window_s=300)
        assert [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.started", "drift.retrain_superseded"]
        [trig] = [a for a in acts if isinstance(a, M.Trigger)]
        assert trig.episode == episode == s.episode and trig.evidence["at"] == at
        assert acts[1].fields == {"superseded_episode": episode - 1, "failed_attempts": 2 if episode == 2 else 0}
    assert [(x["episode"], x["at"], x["failed_attempts"]) for x in s.evidence["supersedes"]] == \
        [(1, 0.0, 2), (2, 600.0, 0)]
    assert "episode 2 (opened 10m earlier) was never started (0 failed attempts); episode 3's" in acts[1].message
    assert M.MonitorState.from_dict(json.loads(json.dumps(s.to_dict()))) == s  # the state file keeps it
    s, _ = M.trigger_result(s, True, 1200.0, cfg)
    s, _ = M.step(s, _result(False), 1500.0, cfg, window_s=300)
    s, acts = M.step(s, _result(True), 1800.0, cfg, window_s=300)
    assert [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.started"]
    assert "supersedes" not in s.evidence and s.episode == 4


@pytest.mark.parametrize("value", ["0", "-1", "+2", "1.5", "²", "٣", "", "three"])
def test_a_malformed_enter_after_annotation_names_the_configmap_the_annotation_and_the_value(value: str) -> None:
    """Every refusal names where (decision 92); "²" passed str.isdigit and int() then raised its own words
    ("invalid literal for int()"), naming nothing; "٣" (an Arabic-Indic three) was taken as 3."""
    from canary.drift.store import ENTER_AFTER_ANNOTATION, monitor_settings

    with pytest.raises(ValueError) as err:
        monitor_settings({ENTER_AFTER_ANNOTATION: value}, "ml/m1-baseline")
    assert str(err.value).startswith(f"ConfigMap ml/m1-baseline: annotation {ENTER_AFTER_ANNOTATION}: "), err.value
    assert repr(value) in str(err.value)


def test_an_enter_after_annotation_in_ascii_digits_is_taken() -> None:
    from canary.drift.store import ENTER_AFTER_ANNOTATION, WINDOW_ANNOTATION, monitor_settings

    assert monitor_settings({ENTER_AFTER_ANNOTATION: " 2 ", WINDOW_ANNOTATION: "24h"}, "x") == \
        {"_window_s": 86400.0, "_enter_after": 2}
    assert monitor_settings(None, "x") == {}


def test_a_profile_whose_prediction_is_not_among_its_features_is_refused(tmp_path: Any) -> None:
    """Decision 160: a profile's `prediction` names the feature the exporter counts the model's prediction as; with
    that feature's entry gone (deleted by hand, renamed in one place), the profile loaded and the prediction was
    never exported, never watched, and nothing said so. `drift watch` refuses it at start (exit 2, file and
    field), as `drift check` does."""
    from typer.testing import CliRunner

    from canary.cli import app

    rng = np.random.default_rng(3)
    prof = _profile({"age": rng.normal(40, 10, 2_000), "score": rng.random(2_000)})
    prof["prediction"] = "score"
    del prof["features"]["score"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(prof))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--once", "--prometheus-url",
                                 "http://127.0.0.1:9", "--state-file", str(tmp_path / "s.json"), "--no-kube"])
    assert r.exit_code == 2 and f"{path}: prediction: 'score' is not among" in r.output, r.output


def test_a_hand_edited_constant_std_is_refused_at_watch_start(tmp_path: Any) -> None:
    """Decision 153 left it: `"std": 0` over 2,000 distinct values loaded, and every live spread read as drift
    against a "constant". Refused at start now, naming the file and the field, before any pass."""
    from typer.testing import CliRunner

    from canary.cli import app

    prof = _edit(_profile({"age": np.random.default_rng(3).normal(40, 10, 2_000)}), "age", "std", 0)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(prof))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--once", "--prometheus-url",
                                 "http://127.0.0.1:9", "--state-file", str(tmp_path / "s.json"), "--no-kube"])
    assert r.exit_code == 2 and f"{path}: features.age.std: 0, but the values captured differ" in r.output, r.output


def test_a_retraining_job_gone_is_recorded_once_and_said_at_the_episode_end() -> None:
    """Decision 285 (pure part): a Job read as 404 before it was read ended is recorded (`job_gone`), alerted once,
    kept across a store and load, and `drift.resolved` says the episode's retraining outcome is unknown."""
    from canary.drift import monitor as M

    st = M.MonitorState(model="rec", version="v1", phase=M.DRIFTING, episode=2, trigger="done", job="ml/r-e2")
    st2, acts = M.retrain_job_gone(st, "ml/r-e2", 1000.0)
    assert [a.event for a in acts] == ["drift.retrain_job_gone"] and acts[0].warning
    assert acts[0].fields == {"job": "ml/r-e2", "outcome": "unknown"} and "episode 2" in acts[0].message
    assert st2.job_gone and M.retrain_job_gone(st2, "ml/r-e2", 2000.0) == (st2, [])  # once
    assert M.retrain_job_gone(st, "ml/other", 1000.0) == (st, [])  # not the episode's Job
    assert M.MonitorState.from_dict(st2.to_dict()).job_gone is True
    assert M._retraining_fields(st2) == {"retraining": "unknown", "job": "ml/r-e2"}
    assert "UNKNOWN whether it succeeded" in M._retraining_at_end(st2)
    with pytest.raises(ValueError, match="job_gone"):
        M.MonitorState.from_dict({**st2.to_dict(), "job_gone": "yes"})


def test_another_profiles_exporter_is_said_when_the_set_changes_and_when_it_is_gone(monkeypatch: Any) -> None:
    """`drift.profile_mismatch` once per set of other profiles the exporters said in the window, and
    `drift.profile_matched` once when none is left; exporters without the label, or a query that fails, say
    nothing. A baseline ConfigMap's own keys (`_namespace`, ...) are not part of the profile's hash."""
    from canary.drift.profile import profile_hash

    prof, live = _ages_exported(seed=3, std=10, observed=500)
    mine = profile_hash(prof)
    assert profile_hash({**prof, "_namespace": "ml", "_window_s": 600}) == mine
    assert FeatureExporter(prof, registry=None).profile_hash == mine
    assert profile_hash(json.loads(json.dumps(prof, indent=2))) == mine
    seen: list[Any] = [{"a" * 16}, {"a" * 16}, {"a" * 16, mine}, set(), {mine}, RuntimeError("down"), {"b" * 16}]
    said = [[(e["event"], e.get("exported")) for e in one] for one in _profile_lines(monkeypatch, prof, live, seen)]
    assert said == [[("drift.profile_mismatch", ["a" * 16])], [], [], [], [("drift.profile_matched", None)], [],
                    [("drift.profile_mismatch", ["b" * 16])]]


def _as_another_json_tool_writes_it(v: Any) -> Any:
    """`v` as a JSON tool that keeps numbers as doubles writes it back (jq 1.6, Go's encoding/json, a JavaScript
    service): an integral float is written without its ".0" (20.0 -> 20)."""
    if isinstance(v, dict):
        return {k: _as_another_json_tool_writes_it(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_as_another_json_tool_writes_it(x) for x in v]
    return int(v) if isinstance(v, float) and v.is_integer() else v


def test_one_profile_hashes_the_same_whichever_tool_wrote_its_json() -> None:
    """The profile a model server's exporter loads and the baseline the watcher reads are one capture, often
    carried by other tools (a ConfigMap rendered by a GitOps pipeline, a file passed through jq): one writes
    the bound 20.0 as "20", another keeps "20.0", keys in another order, numpy numbers in a profile built in
    memory. The same profile must hash the same, or `drift.profile_mismatch` says a server that counts over
    the baseline's own profile counts over another (decision 319)."""
    from canary.drift.profile import profile_hash

    rng = np.random.default_rng(5)
    prof = _profile({"age": np.round(rng.normal(40, 10, 5_000)), "score": rng.uniform(0, 1, 5_000)})
    assert any(isinstance(b, float) and b.is_integer() for b in prof["features"]["age"]["bounds"])
    mine = profile_hash(prof)
    rewritten = json.loads(json.dumps(_as_another_json_tool_writes_it(prof)))
    assert json.dumps(rewritten) != json.dumps(prof)  # the text differs: "20" where the capture wrote "20.0"
    assert profile_hash(rewritten) == mine
    assert profile_hash(json.loads(json.dumps(dict(reversed(list(prof.items())))))) == mine
    assert FeatureExporter(rewritten, registry=None).profile_hash == mine
    numpyed = {**prof, "rows": np.int64(prof["rows"])}
    assert profile_hash(numpyed) == mine
    # a re-capture over the same bounds is still another profile; a number really changed is another hash
    assert profile_hash({**prof, "rows": prof["rows"] + 1}) != mine
    assert profile_hash(_edit(prof, "score", "mean", 0.5000001)) != profile_hash(_edit(prof, "score", "mean", 0.5))


def test_a_baseline_recaptured_while_the_server_exports_another_profile_is_said_again(monkeypatch: Any) -> None:
    """The server exports profile X; the mismatch with baseline A was said. The baseline is re-captured (B) while
    the server still exports X: nothing was said, and the last line on record named A, a baseline gone (decision
    321). Now the mismatch is said again naming B; the same (B, X) at the next evaluation says nothing."""
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift import watch as W
    from canary.drift.profile import profile_hash

    prof, live = _ages_exported(seed=3, std=10, observed=500)
    recaptured = {**prof, "source": {**(prof.get("source") or {}), "sha256": "2" * 64}}
    assert profile_hash(recaptured) != profile_hash(prof)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: live)
    monkeypatch.setattr(W, "exported_profiles", lambda *_a, **_k: {"c" * 16})
    w = W.DriftWatcher([prof], client=None, window_s=3_600, config=M.MonitorConfig())
    said = []
    for baseline in (prof, recaptured, recaptured):
        w.profiles = [baseline]
        with capture_logs() as logs:
            w.once()
        said.append([(e["event"], e.get("profile_hash")) for e in logs if e["event"].startswith("drift.profile")])
    assert said == [[("drift.profile_mismatch", profile_hash(prof))],
                    [("drift.profile_mismatch", profile_hash(recaptured))], []]


def test_a_profile_query_that_fails_every_time_is_said_once_and_its_return_too(monkeypatch: Any) -> None:
    """The query of `model_feature_profile_info` fails at every evaluation (a Prometheus or proxy refusing it)
    while the live counts are read: it was a debug line each time, so the profile check was off for the
    watcher's life unseen (decision 324). Three failures in a row are one warning naming the error; more say
    nothing; the first answer after it is one info line; fewer failures than three, then an answer, say
    nothing (a blip the next evaluation retried)."""
    from canary.drift.profile import profile_hash

    prof, live = _ages_exported(seed=4, std=10, observed=500)
    mine = profile_hash(prof)
    no = PermissionError("403 Forbidden: model_feature_profile_info")
    seen: list[Any] = [no, no, {mine}, no, no, no, no, {mine}, no, {mine}]
    said = _profile_lines(monkeypatch, prof, live, seen)
    events = [[(e["event"], e["log_level"]) for e in one] for one in said]
    assert events == [[], [], [], [], [], [("drift.profile_check_failing", "warning")], [],
                      [("drift.profile_check_restored", "info")], [], []]
    warned = said[5][0]
    assert warned["failures"] == 3 and "403 Forbidden" in warned["error"]
    assert "not checked" in warned["message"] and mine in warned["message"]
    assert warned["model"] == prof["model"] and warned["version"] == prof["version"]


def test_the_mismatch_words_fit_drift_check_and_pods_that_name_no_profile() -> None:
    """`profile_mismatch_message` is `drift check`'s warning too: its remedy said "watch the profile it
    exports", which a one-off check cannot do. And with no pod exporting the baseline's hash, pods of an
    older exporter (no hash at all) may still run: "the model server exports" said every pod does
    (decision 324)."""
    from canary.drift.profile import profile_hash
    from canary.drift.watch import profile_mismatch_message

    prof, _ = _ages_exported(seed=4, std=10, observed=10)
    every = profile_mismatch_message(prof, ["c" * 16], some=False)
    assert "the model server exports" not in every and "watch the profile" not in every
    assert "every pod of the model server that names its profile (older exporters name none)" in every
    assert "use the profile it exports as the baseline" in every and profile_hash(prof) in every
    assert "some of the model server's pods export" in profile_mismatch_message(prof, ["c" * 16], some=True)


def _profile_lines(monkeypatch: Any, prof: dict[str, Any], live: Any, seen: list[Any]) -> list[list[dict[str, Any]]]:
    """One `DriftWatcher.once()` per item of `seen` (the hashes the profile query answers, or the exception it
    raises), the live counts `live`: the `drift.profile*` lines each evaluation logged."""
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift import watch as W

    answers = list(seen)

    def exported(*_a: Any, **_k: Any) -> set[str]:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: live)
    monkeypatch.setattr(W, "exported_profiles", exported)
    w = W.DriftWatcher([prof], client=None, window_s=3_600, config=M.MonitorConfig())
    said = []
    for _ in seen:
        with capture_logs() as logs:
            w.once()
        said.append([e for e in logs if e["event"].startswith("drift.profile")])
    return said


def test_what_was_said_of_a_removed_baseline_is_forgotten_and_said_fresh_when_it_is_added_again(
        monkeypatch: Any) -> None:
    """A baseline no longer watched (its ConfigMap deleted: `watch_baselines` sets `profiles` to those listed)
    kept its records in the watcher: added again while its exporters still count over another profile, the
    mismatch was never said again; two failed profile queries before its removal made the first after its return
    "3 in a row"; a check said failing of the removed baseline was "restored" by the new one's first answer; its
    "no live data" was not said again; and its gauges stayed, `model_data_drift_episode` included (decision 336)."""
    from prometheus_client import CollectorRegistry
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift import watch as W
    from canary.drift.profile import profile_hash

    prof, live = _ages_exported(seed=4, std=10, observed=500)
    mine, no = profile_hash(prof), PermissionError("403 Forbidden: model_feature_profile_info")
    # (watched?, the profile query's answer, the live counts) per pass
    steps: list[Any] = [(True, {"a" * 16}, live), (False, None, live), (True, {"a" * 16}, live),  # said fresh
                        (True, no, live), (True, no, live), (False, None, live), (True, no, live),  # 2 + 1: not 3
                        (True, no, live), (True, no, live), (False, None, live), (True, {mine}, live),  # no restored
                        (True, {mine}, {}), (False, None, live), (True, {mine}, {})]  # no live data, said again
    answers = [s[1] for s in steps if s[0]]
    lives = [s[2] for s in steps if s[0]]

    def exported(*_a: Any, **_k: Any) -> set[str]:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: lives.pop(0))
    monkeypatch.setattr(W, "exported_profiles", exported)
    monkeypatch.setattr(W, "why_no_live_data", lambda *_a, **_k: "")
    reg = CollectorRegistry()
    w = W.DriftWatcher([prof], client=None, window_s=3_600, config=M.MonitorConfig(), registry=reg)
    said = []
    for watched, _, _ in steps:
        w.profiles = [prof] if watched else []
        with capture_logs() as logs:
            w.once()
        said.append([e["event"] for e in logs if e["event"].startswith(("drift.profile", "drift.no_live_data"))])
        labels = {"model": prof["model"], "version": prof["version"], "namespace": "default"}
        assert (reg.get_sample_value("model_data_drift_episode", labels) is not None) == watched
        assert (reg.get_sample_value("model_data_drift_score", {**labels, "feature": "age"}) is not None) == watched
    assert said == [["drift.profile_mismatch"], [], ["drift.profile_mismatch"],
                    [], [], [], [],
                    [], ["drift.profile_check_failing"], [], [],
                    ["drift.no_live_data"], [], ["drift.no_live_data"]]

"""One model version, one baseline, one monitor: the same model/version given twice to `drift watch` (or
stored in two baseline ConfigMaps) stepped one monitor state twice per pass, so --enter-after 2 opened
an episode on the first drifted evaluation. Refused at start (exit 2, both files named); the controller
skips the second ConfigMap, naming both; the watcher itself never steps a state twice in a pass."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from canary.cli import app
from canary.drift import monitor as M
from canary.drift import watch as W
from canary.drift.profile import capture
from tests.support.passes import Passes


def _profile(version: str = "v1") -> dict[str, Any]:
    import pyarrow as pa

    rng = np.random.default_rng(2)
    return capture(pa.table({"f": rng.normal(0, 1, 2_000)}), model="rec", version=version, file="t.parquet",
                   sha256="0" * 64)


def _shifted(prof: dict[str, Any]) -> dict[str, Any]:
    k = len(prof["features"]["f"]["counts"])
    return {"f": {"counts": [0] * (k - 1) + [2_000]}}  # every value above training's 99.5%: drift


def test_the_same_model_version_twice_is_refused_naming_both_files(tmp_path: Any) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "copy" / "a.json", tmp_path / "v2.json"
    b.parent.mkdir()
    for path, version in ((a, "v1"), (b, "v1"), (c, "v2")):
        path.write_text(json.dumps(_profile(version)))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(a), "--baseline", str(c), "--baseline", str(b),
                                 "--prometheus-url", "http://127.0.0.1:9", "--no-kube", "--once",
                                 "--state-file", str(tmp_path / "s.json")])
    assert r.exit_code == 2, r.output
    assert str(a) in r.stderr and str(b) in r.stderr and "both baselines of rec v1" in r.stderr, r.stderr
    assert not (tmp_path / "s.json").exists()


def test_the_watcher_steps_a_model_versions_state_once_per_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    prof = _profile()
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    watcher = W.DriftWatcher([prof, json.loads(json.dumps(prof))], client=None, window_s=3600,
                             config=M.MonitorConfig(enter_after=2, quiet_s=0), clock=lambda: 1_000.0)
    with capture_logs() as logs:
        done = watcher.once()
    state = watcher.states["rec/v1"]
    assert state.drifted_in_row == 1 and state.phase == M.OK and state.episode == 0
    assert [e["event"] for e in logs if e["event"] == "drift.duplicate_baseline"] == ["drift.duplicate_baseline"]
    assert any(d.get("config_error") for d in done)


def test_the_controller_skips_a_second_configmap_of_one_model_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from canary.drift import store

    prof = _profile()
    monkeypatch.setattr(store, "load_profiles", lambda core, ns: [("ml/rec-v1-a", dict(prof)),
                                                                  ("ml/rec-v1-b", dict(prof)),
                                                                  ("other/rec-v1", dict(prof))])
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    watcher = W.DriftWatcher([], client=None, window_s=3600, config=M.MonitorConfig(enter_after=2, quiet_s=0),
                             clock=lambda: 1_000.0)
    with capture_logs() as logs:
        W.watch_baselines(watcher, core=None, namespace=None, stop=Passes(1), interval_s=1)
    assert sorted(watcher.states) == ["ml/rec/v1", "other/rec/v1"]  # another namespace: another baseline
    assert all(s.drifted_in_row == 1 and s.phase == M.OK for s in watcher.states.values())
    (bad,) = [e for e in logs if e["event"] == "drift.bad_baseline"]
    assert bad["configmap"] == "ml/rec-v1-b" and "ConfigMap ml/rec-v1-a is watched" in bad["error"]


def test_nothing_measured_is_no_share_on_the_gauge(monkeypatch: pytest.MonkeyPatch) -> None:
    """A version without live data set model_data_drift_share to 0, which a dashboard reads as no drift."""
    import math

    from prometheus_client import CollectorRegistry

    prof = _profile()
    reg = CollectorRegistry()
    live: dict[str, Any] = {}
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: live)
    watcher = W.DriftWatcher([prof], client=None, window_s=3600, config=M.MonitorConfig(), registry=reg,
                             clock=lambda: 1_000.0)
    with capture_logs() as logs:
        done = watcher.once()
        watcher.once()  # the same set again: said once, not every evaluation
    assert done == [{"model": "rec", "version": "v1", "no_live_data": ["f"], "not_arriving": []}]
    assert [e["event"] for e in logs if e["event"].startswith("drift.")] == ["drift.no_live_data"]
    labels = {"model": "rec", "version": "v1", "namespace": "default"}  # no -n: the Events' default
    assert math.isnan(reg.get_sample_value("model_data_drift_share", labels))
    live.update(_shifted(prof))
    watcher.once()
    assert reg.get_sample_value("model_data_drift_share", labels) == 1.0


def test_one_watcher_per_state_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `drift watch` processes on one --state-file (two replicas on a shared volume, a --once cron run
    beside a continuous watch) each read the state at start and wrote theirs over the other's: one drift
    opened episode 1 in both, two DriftDetected and two retraining Jobs (the second "renamed" as if the
    state had been lost). The second watcher is refused, exit 2, naming the file and the holder's pid."""
    import os

    prof = _profile()
    path, state = tmp_path / "p.json", tmp_path / "s.json"
    path.write_text(json.dumps(prof))
    first = W.FileStateStore(state)
    first.hold()  # another open of the lock file: as another process's
    args = ["drift", "watch", "--baseline", str(path), "--prometheus-url", "http://127.0.0.1:9", "--no-kube",
            "--once", "--state-file", str(state)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert f"{state}: the drift state file is in use by another `canary drift watch` (pid {os.getpid()})" \
        in r.stderr, r.stderr
    first.release()
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    for _ in range(2):  # released: the next watcher runs, and releases it when it ends (even in-process)
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
    assert json.loads(state.read_text())["rec/v1"]["drifted_in_row"] >= 1


def test_the_controller_stops_a_pass_at_the_baseline_where_it_stops_leading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leadership was asked once a pass: a replica whose lease ran out mid-pass stepped, alerted and
    triggered for every baseline left, beside the new leader. Now it is asked before each baseline."""
    from canary.drift import store

    prof = _profile()
    monkeypatch.setattr(store, "load_profiles", lambda core, ns: [(f"ml/{m}-v1", {**prof, "model": m})
                                                                  for m in ("a", "b", "c")])
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    watcher = W.DriftWatcher([], client=None, window_s=3600, config=M.MonitorConfig(enter_after=2, quiet_s=0),
                             clock=lambda: 1_000.0)
    leads = iter([True, True, True, False])  # the pass's start, then a, b; c finds the lease gone
    with capture_logs() as logs:
        W.watch_baselines(watcher, core=None, namespace=None, stop=Passes(1), interval_s=1,
                          is_leader=lambda: next(leads, False))
    assert sorted(watcher.states) == ["ml/a/v1", "ml/b/v1"]
    (cut,) = [e for e in logs if e["event"] == "drift.pass_cut"]
    assert cut["reason"] == "no longer the leader" and cut["left"] == ["ml/c/v1"]


def test_a_replica_that_stops_leading_while_it_stores_an_evaluation_leaves_its_actions_to_the_next(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 119 (d): leadership was asked before each baseline only, so a replica whose lease ran out
    while it stored an evaluation (a write that waits out its timeouts and retries) went on to alert and
    trigger retraining, beside the new leader, which reads the same alerts from the stored outbox and
    the same pending trigger, and delivers them again. Now it is asked between storing and acting: the
    stored state is left as it is, and the next evaluation (another replica's, here) delivers it once."""
    prof = _profile()
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    posted: list[dict[str, Any]] = []

    def watcher() -> W.DriftWatcher:
        return W.DriftWatcher([prof], client=None, window_s=3600, config=M.MonitorConfig(enter_after=1, quiet_s=0),
                              store=W.FileStateStore(tmp_path / "s.json"), retrain_webhook="http://retrain.invalid/",
                              post=lambda url, body: posted.append(body) or 200, clock=lambda: 1_000.0)

    old = watcher()
    asked = iter(["", "no longer the leader"])  # before the baseline; then once its evaluation is stored
    with capture_logs() as logs:
        old.once(keep_going=lambda: next(asked))
    assert not [e for e in logs if e["event"] == "drift.started"] and posted == []
    stored = json.loads((tmp_path / "s.json").read_text())["rec/v1"]
    assert stored["phase"] == M.DRIFTING and stored["trigger"] == "pending"
    assert [a["event"] for a in stored["outbox"]] == ["drift.started"]
    (cut,) = [e for e in logs if e["event"] == "drift.pass_cut"]
    assert cut["held"] == "default/rec/v1" and cut["baselines"] == 1 and "its stored outbox" in cut["message"]
    with capture_logs() as logs:
        watcher().once(keep_going=lambda: "")  # the new leader
    assert [e["event"] for e in logs if e["event"] == "drift.started"] == ["drift.started"]
    assert [b["episode"] for b in posted] == [1]
    assert json.loads((tmp_path / "s.json").read_text())["rec/v1"]["outbox"] == []


def test_a_keep_going_that_raises_stops_the_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 119 (e): an exception from `keep_going` left `once` (the controller's pass failed, and the
    baselines it had not reached lost their place at the head of the next pass). Not knowing whether this
    replica may act is a stop: the pass is cut there, said with the error, and they go first next pass."""
    prof = _profile()
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    profiles = [{**prof, "model": m} for m in ("a", "b", "c")]
    watcher = W.DriftWatcher(profiles, client=None, window_s=3600, config=M.MonitorConfig(enter_after=3, quiet_s=0),
                             clock=lambda: 1_000.0)
    answers = iter(["", RuntimeError("lease state unknown")])

    def keep_going() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with capture_logs() as logs:
        watcher.once(keep_going=keep_going)
    assert sorted(watcher.states) == ["a/v1"]
    (cut,) = [e for e in logs if e["event"] == "drift.pass_cut"]
    assert cut["reason"] == "cannot tell whether to go on (RuntimeError: lease state unknown)", cut
    assert cut["left"] == ["default/b/v1", "default/c/v1"]
    order: list[str] = []
    monkeypatch.setattr(W, "live_counts", lambda *_a, **k: order.append(k["model"]) or _shifted(prof))
    watcher.once()
    assert order == ["b", "c", "a"]


def test_a_watch_without_a_kubeconfig_says_how_to_go_without_one(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a laptop with no cluster, `drift watch` said only "no Kubernetes configuration: ..." (a newcomer's
    finding): nothing said the cluster is only for its Events and Job, nor that --no-kube runs without it."""
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_profile()))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(a), "--prometheus-url", "http://127.0.0.1:9",
                                 "--once", "--state-file", str(tmp_path / "s.json")])
    assert r.exit_code == 2, r.output
    assert "no Kubernetes configuration" in r.stderr and "pass --no-kube to watch without a cluster" in r.stderr


@pytest.mark.parametrize("entry,field", [({"model": "m", "version": "v1", "phase": "weird"}, "phase must be"),
                                         ({"model": "m", "version": "v1", "trigger": "maybe"}, "trigger must be"),
                                         ({"model": "m", "version": "v1", "episode": -1}, "episode must be"),
                                         ({"model": "m"}, "version missing"), (5, "must be an object")])
def test_a_bad_state_file_names_the_file_the_key_and_the_field(tmp_path: Any, entry: Any, field: str) -> None:
    """Decision 153: "the drift monitor state is not readable: drift monitor state of m v1: bad phase/trigger"
    named neither the file, nor the baseline's entry, nor which of the two fields."""
    import pyarrow as pa
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.profile import capture

    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(capture(pa.table({"c": ["a", "b"] * 1_000}), model="m", version="v1", file="t.csv",
                                       sha256="0" * 64)))
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"default/m/v1": entry}))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof), "--prometheus-url", "http://127.0.0.1:9",
                                 "--no-kube", "--once", "--state-file", str(state)])
    assert r.exit_code == 2 and f"{state}: default/m/v1: " in r.output and field in r.output, r.output


def test_a_state_file_that_is_a_symlink_keeps_the_state_in_its_target_and_is_locked_as_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 160: `--state-file /app/state.json`, a link into a persistent volume (an image's fixed path). The
    first write replaced the link with a plain file beside it: the volume kept nothing, and each restart (a new
    container) started afresh, opening a new episode and a new retraining Job for the same drift. And the lock was
    the link's: a second watcher given the volume's path ran beside the first. Now both go to the target."""
    import os

    prof = _profile()
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    (tmp_path / "volume").mkdir()
    (tmp_path / "app").mkdir()
    real, link = tmp_path / "volume" / "state.json", tmp_path / "app" / "state.json"
    link.symlink_to(real)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: _shifted(prof))
    args = ["drift", "watch", "--baseline", str(path), "--prometheus-url", "http://127.0.0.1:9", "--no-kube", "--once"]
    r = CliRunner().invoke(app, [*args, "--state-file", str(link)])
    assert r.exit_code == 0, r.output
    first = json.loads(real.read_text())["rec/v1"]
    assert link.is_symlink() and first["drifted_in_row"] == 1
    r = CliRunner().invoke(app, [*args, "--state-file", str(link)])  # the restart goes on from what the volume kept
    again = json.loads(real.read_text())["rec/v1"]
    assert r.exit_code == 0 and link.is_symlink(), r.output
    assert again["traffic_since"] == first["traffic_since"] and again["quiet_until"] == first["quiet_until"]
    other = W.FileStateStore(real)
    other.hold()  # a watcher given the volume's own path
    try:
        r = CliRunner().invoke(app, [*args, "--state-file", str(link)])
        assert r.exit_code == 2 and f"is in use by another `canary drift watch` (pid {os.getpid()})" in r.stderr, \
            r.output
    finally:
        other.release()

"""The drift monitor's settings a user needs beside `--enter-after` and `--quiet` (decision 450): how a failed
retraining Job is replaced (`--retrain-job-retries`, `--retrain-job-retry-delay`: decision 385 left "a team whose
training is too costly for a second try has no switch") and how long an open episode that cannot end waits before it
is said (`--episode-unmeasured-after`, `--drift-episode-unmeasured-after`: decision 410's `hold_tell_s`). A bad value
is exit 2 naming its flag."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import cli_options as opts
from canary.cli import app
from canary.drift import monitor as M
from canary.drift import watch as W
from canary.errors import ConfigError
from tests.unit.test_drift_watch_config import _profile


def _watch(tmp_path: Any, *args: str) -> Any:
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(_profile()))
    return CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof), "--prometheus-url",
                                    "http://127.0.0.1:9", "--no-kube", "--once", "--state-file",
                                    str(tmp_path / "s.json"), *args])


@pytest.mark.parametrize("args,said", [
    (["--retrain-job-retries", "11"], "Invalid value for '--retrain-job-retries'"),
    (["--retrain-job-retries", "-1"], "Invalid value for '--retrain-job-retries'"),
    (["--retrain-job-retries", "two"], "Invalid value for '--retrain-job-retries'"),
    (["--retrain-job-retries", "1"], "--retrain-job-retries sets how a failed retraining Job is replaced: it needs "
                                     "--retrain-job"),
    (["--retrain-job-retry-delay", "2h"], "--retrain-job-retry-delay sets how"),
    (["--retrain-job-retry-delay", "soon"], "Invalid value for '--retrain-job-retry-delay'"),
    (["--episode-unmeasured-after", "0"], "Invalid value for '--episode-unmeasured-after'"),
    (["--episode-unmeasured-after", "a day"], "Invalid value for '--episode-unmeasured-after'")])
def test_a_bad_monitor_setting_is_exit_2_naming_its_flag(tmp_path: Any, args: list[str], said: str) -> None:
    r = _watch(tmp_path, *args)
    assert r.exit_code == 2, r.output
    assert said in r.output.replace("\n", " ").replace("│", " ") or said in r.stderr, r.output
    assert not (tmp_path / "s.json").exists()


def test_the_controller_refuses_a_retry_setting_without_a_job_before_it_asks_the_cluster(tmp_path: Any) -> None:
    r = CliRunner().invoke(app, ["controller", "run", "--drift", "--prometheus-url", "http://127.0.0.1:9",
                                 "--kubeconfig", str(tmp_path / "none"), "--retrain-job-retries", "0"])
    assert r.exit_code == 2, r.output
    assert "--retrain-job-retries sets how a failed retraining Job is replaced" in r.output + r.stderr


def test_the_settings_reach_the_monitor() -> None:
    """Retries 0: a Job read Failed is said and replaced by none; 3 every 2h: the third new Job is the last. A delay
    under a minute is refused, naming the flag."""
    cfg = opts.monitor_config(M, retries=0, retry_delay=None, unmeasured_after=3600.0, retrain_job="job.yaml")
    assert (cfg.job_retries, cfg.job_retry_s, cfg.hold_tell_s) == (0, 3600.0, 3600.0)
    s = M.MonitorState("m", "v", phase=M.DRIFTING, episode=1, trigger="done", job="ml/m-v-e1")
    s, [said] = M.retrain_job_failed(s, "ml/m-v-e1", "BackoffLimitExceeded", 10.0, cfg)
    assert s.trigger == "done" and said.fields["new_job_due"] is None and "no new Job is created" in said.message
    cfg = opts.monitor_config(M, retries=3, retry_delay=7200.0, unmeasured_after=86400.0, retrain_job="job.yaml")
    s = M.MonitorState("m", "v", phase=M.DRIFTING, episode=1, trigger="done", job="ml/m-v-e1", job_retries=2)
    s, [said] = M.retrain_job_failed(s, "ml/m-v-e1", "BackoffLimitExceeded", 10.0, cfg)
    assert s.trigger == "pending" and s.trigger_due == 7210.0 and "it is the last" in said.message, said.message
    with pytest.raises(ConfigError, match="--retrain-job-retry-delay 30s: at least 1m"):
        opts.monitor_config(M, retries=None, retry_delay=30.0, unmeasured_after=60.0, retrain_job="job.yaml")


@pytest.mark.parametrize("after,said", [([], False), (["--episode-unmeasured-after", "1h"], True)])
def test_drift_watch_says_an_episode_held_past_its_flag(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                        after: list[str], said: bool) -> None:
    """An open episode whose evaluations have had no live data for two hours: said with the flag at 1h, not with the
    default day."""
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {})  # no live data (a real pass of the watcher)
    monkeypatch.setattr(W, "why_no_live_data", lambda *_a, **_k: "no traffic")
    (tmp_path / "s.json").write_text(json.dumps({"rec/v1": {
        "model": "rec", "version": "v1", "phase": "drifting", "episode": 1, "trigger": "done",
        "held_since": time.time() - 7200, "evidence": {"drifted_features": ["f"]}}}))
    r = _watch(tmp_path, *after)
    assert r.exit_code == 1, r.output  # the episode open
    assert ("drift.episode_unmeasured" in r.output + r.stderr) is said, r.output
    assert json.loads((tmp_path / "s.json").read_text())["rec/v1"].get("held_told", False) is said


def test_the_controller_says_the_monitor_settings_it_runs_with() -> None:
    import threading

    import kubernetes.client
    from structlog.testing import capture_logs

    from canary.cli_controller import _start_drift
    from canary.metrics.client import PrometheusClient

    stop = threading.Event()
    stop.set()  # the drift thread ends at once (no replica leads)
    cfg = opts.monitor_config(M, retries=0, retry_delay=None, unmeasured_after=7200.0, retrain_job="job.yaml")
    with capture_logs() as logs:
        _start_drift(kubernetes.client.ApiClient(), PrometheusClient("http://127.0.0.1:9"), namespace="ml",
                     state_namespace="canary-system", stop=stop, is_leader=lambda: False, notifier=None,
                     interval=60.0, window=3600.0, quiet=0.0, retrain_job=None, config=cfg)
    [line] = [e for e in logs if e["event"] == "controller.drift_monitor"]
    assert (line["retrain_job_retries"], line["retrain_job_retry_s"], line["episode_unmeasured_after_s"]) == (
        0, 3600.0, 7200.0), line

"""A drift episode's retraining Job that ends Failed is said, once (decision 275).

The watcher created (or adopted) the episode's Job and never read it again: a Job that ended Failed (its
pod's backoffLimit reached: an image that cannot be pulled, a trainer that crashes) left the episode open
with no alert and no new Job, while on-call believed retraining was under way. Now the episode's Job is
read at each evaluation: a Failed condition is one `drift.retrain_job_failed` line (the Job, its reason and
message, the episode), a `RetrainJobFailed` Event, and `drift watch --once -o json`'s `retraining_failed`;
one new Job is created for the episode an hour later, no more (decision 385). On real parts: a real Prometheus scraping a real exporter whose
model drifted, and the strict Kubernetes API emulator for the state, Events and Jobs; the Job controller's
part (marking the Job Failed or Complete) is played by the test, as the API server would store it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from structlog.testing import capture_logs
from typer.testing import CliRunner

from canary.drift import monitor as M
from canary.drift.exporter import FeatureExporter
from canary.drift.live import live_counts
from canary.drift.profile import capture
from canary.metrics.client import PrometheusClient
from tests.integration.test_drift_faults import kube  # noqa: F401 - the API emulator with Jobs (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "retrain-"},
       "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "t"}]}}}}
BACK: dict[str, Any] = {}  # model `back`'s profile and exporter (the module's Prometheus scrapes it)
FAILED = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
          "message": "Job has reached the specified backoff limit"}


@pytest.fixture(scope="module")
def served(prometheus_binary: str, tmp_path_factory: Any) -> Iterator[tuple[str, Path]]:
    """(Prometheus's URL, the profile's file): model `rec` v1, whose live inputs moved by two standard deviations."""
    import pyarrow as pa

    from canary.sandbox.promserver import PromServer

    rng = np.random.default_rng(275)
    prof = capture(pa.table({"f": rng.normal(0, 1, 5_000)}), model="rec", version="v1", file="t.parquet",
                   sha256="0" * 64)
    path = tmp_path_factory.mktemp("profile") / "rec-v1.profile.json"
    path.write_text(json.dumps(prof))
    reg = CollectorRegistry()
    exporter = FeatureExporter(prof, registry=reg)
    exporter.observe({"f": 0.0})  # the series exist before the first scrape
    # `back`: drifted like rec, then (its test) served what it was trained on again
    back = capture(pa.table({"f": rng.normal(0, 1, 5_000)}), model="back", version="v1", file="t.parquet",
                   sha256="0" * 64)
    BACK.update(profile=back, exporter=FeatureExporter(back, registry=reg))
    BACK["exporter"].observe({"f": 0.0})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    prom = PromServer(binary=prometheus_binary, targets=[f"127.0.0.1:{server.server_address[1]}"],
                      scrape_interval="1s").start()
    try:
        assert prom.wait_targets_up(timeout_s=30) < 30
        for x in rng.normal(2, 1, 3_000):
            exporter.observe({"f": x})
            BACK["exporter"].observe({"f": x})
        client = PrometheusClient(prom.url)
        deadline = time.monotonic() + 60
        while sum(live_counts(client, prof, model="rec", version="v1", window_s=3600)
                  .get("f", {}).get("counts", [0])) < 2_000:
            assert time.monotonic() < deadline, "Prometheus never saw the traffic"
            time.sleep(0.5)
        yield prom.url, path
    finally:
        prom.stop()
        server.shutdown()
        thread.join(timeout=5)


def _once(served: tuple[str, Path], kube: Any, tmp_path: Path) -> Any:
    """once(output) -> `drift watch --once -o output` through the CLI, a kubeconfig to `kube`, the episode's Job from
    JOB, its state in tmp_path/s.json (the same across calls)."""
    from canary.cli import app
    from tests import fleet

    url, path = served
    (tmp_path / "job.yaml").write_text(json.dumps(JOB))
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", kube.url)

    def once(output: str) -> Any:
        return CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--once", "--enter-after", "1",
                                        "--quiet", "0", "--retrain-job", str(tmp_path / "job.yaml"), "-n", "ml",
                                        "--state-file", str(tmp_path / "s.json"), "--kubeconfig", str(kubeconfig),
                                        "--prometheus-url", url, "-o", output])
    return once


def _jobs(kube: Any) -> list[str]:
    return sorted(j.metadata.name for j in kube.batch.list_namespaced_job("ml").items)


def _ends(kube: Any, name: str, condition: dict[str, Any]) -> None:
    """The Job controller's part: the Job's pod ran out of retries (Failed) or finished (Complete)."""
    def edit(job: dict[str, Any]) -> None:
        job["status"] = {"conditions": [{**condition, "lastTransitionTime": "2026-12-05T10:00:00Z"}],
                         **({"failed": 7} if condition["type"] == "Failed" else {"succeeded": 1})}
    kube.handler.edit_object("batch", "jobs", "ml", name, edit)


def _watcher(url: str, path: Path, kube: Any, state: Path) -> Any:
    from canary.drift.watch import DriftWatcher

    ticks = iter(range(1_000, 10**8, 3_600))  # a window (1 h) apart: each evaluation new evidence
    return DriftWatcher([json.loads(path.read_text())], client=PrometheusClient(url), window_s=3600, namespace="ml",
                        state_file=state, core_api=kube.core, batch_api=kube.batch, job_template=JOB,
                        config=M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0),
                        clock=lambda: float(next(ticks)))


def test_a_failed_retraining_job_is_said_once_and_replaced_once_an_hour_later(
        served: tuple[str, Path], kube: Any, tmp_path: Path) -> None:
    """The episode's Job Failed (its pods' backoffLimit spent within minutes: a data store down, a node pool lost):
    said once, and nothing retrained the episode for good, however passing the cause (decision 275). Now one new
    Job is made for the episode an hour later (`job_retry_s`), a Job of its own (`-e2`, its start `.../retry-1`),
    never adopting the failed one; when that one fails too, it is said once and no third Job is made, by this
    watcher or one restarted from its state (decision 385)."""
    from canary.drift.retrain import START

    url, path = served
    w = _watcher(url, path, kube, tmp_path / "s.json")
    opened = w.once()
    assert [d.get("alert") for d in opened if "alert" in d] == ["drift.started"], opened
    assert _jobs(kube) == ["retrain-rec-v1-e1"]
    assert w.states["rec/v1"].job == "ml/retrain-rec-v1-e1"  # recorded: the Job read at every evaluation
    with capture_logs() as logs:
        assert w.once() == []  # running: nothing to say
    assert not [e for e in logs if e["event"] == "drift.retrain_job_failed"]

    _ends(kube, "retrain-rec-v1-e1", FAILED)
    with capture_logs() as logs:
        w.once()
    said = [e for e in logs if e["event"] == "drift.retrain_job_failed"]
    assert len(said) == 1, logs
    assert said[0]["job"] == "ml/retrain-rec-v1-e1" and said[0]["episode"] == 1
    assert said[0]["reason"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert "FAILED" in said[0]["message"] and "a new Job is created for the episode in 1h" in said[0]["message"]
    assert said[0]["new_job_due"] == w.states["rec/v1"].trigger_due
    events = {e.reason: e for e in kube.core.list_namespaced_event("ml").items}  # listed by their random names
    assert sorted(events) == ["DriftDetected", "RetrainJobFailed"]
    assert "retrain-rec-v1-e1" in events["RetrainJobFailed"].message and events["RetrainJobFailed"].type == "Warning"
    stored = json.loads((tmp_path / "s.json").read_text())["rec/v1"]
    assert stored["phase"] == "drifting" and stored["job_failed"].startswith("BackoffLimitExceeded")
    assert stored["trigger"] == "pending" and stored["job_retries"] == 1
    assert _jobs(kube) == ["retrain-rec-v1-e1"]  # not at once: an hour later

    with capture_logs() as logs:  # the next evaluation, a window (an hour) later: the new Job
        w.once()
    assert [e["retraining"] for e in logs if e["event"] == "drift.retrain_triggered"] == ["Job ml/retrain-rec-v1-e2"]
    assert not [e for e in logs if e["event"] == "drift.retrain_adopted"], logs  # never the failed one
    assert _jobs(kube) == ["retrain-rec-v1-e1", "retrain-rec-v1-e2"]
    second = kube.batch.read_namespaced_job("retrain-rec-v1-e2", "ml")
    first = kube.batch.read_namespaced_job("retrain-rec-v1-e1", "ml")
    assert second.metadata.annotations[START] == first.metadata.annotations[START] + "/retry-1"
    assert json.loads(second.metadata.annotations["modelcanary.dev/drift-evidence"])["retry_of"] == [
        "ml/retrain-rec-v1-e1"]
    state = w.states["rec/v1"]
    assert (state.job, state.job_failed, state.trigger) == ("ml/retrain-rec-v1-e2", "", "done")

    _ends(kube, "retrain-rec-v1-e2", FAILED)
    with capture_logs() as logs:
        w.once()
    said = [e for e in logs if e["event"] == "drift.retrain_job_failed"]
    assert len(said) == 1 and said[0]["job"] == "ml/retrain-rec-v1-e2" and said[0]["new_job_due"] is None, logs
    assert "no new Job is created (2 Jobs failed for it" in said[0]["message"], said
    # said once: later evaluations, and a watcher restarted from the state file, say nothing more and create no Job
    with capture_logs() as logs:
        w.once()
        w.once()
    again = _watcher(url, path, kube, tmp_path / "s.json")
    with capture_logs() as more:
        again.once()
        again.once()
    assert not [e for e in logs + more if e["event"] in ("drift.retrain_job_failed", "drift.retrain_triggered")]
    assert _jobs(kube) == ["retrain-rec-v1-e1", "retrain-rec-v1-e2"]
    assert sorted(e.reason for e in kube.core.list_namespaced_event("ml").items) == [
        "DriftDetected", "RetrainJobFailed", "RetrainJobFailed"]


@pytest.mark.parametrize(("condition", "exit_failed"), [(FAILED, True), ({"type": "Complete", "status": "True"}, False)])
def test_drift_watch_once_says_the_failed_job_in_json_and_text(
        served: tuple[str, Path], kube: Any, tmp_path: Path, condition: dict[str, Any], exit_failed: bool) -> None:
    once = _once(served, kube, tmp_path)

    first = once("json")
    assert first.exit_code == 1, first.output  # the episode is open
    assert _jobs(kube) == ["retrain-rec-v1-e1"]
    _ends(kube, "retrain-rec-v1-e1", condition)
    r = once("json")
    assert r.exit_code == 1, r.output  # still open: exit 1, as for any open episode
    row = json.loads(r.stdout[r.stdout.index("{"):])["profiles"][0]
    assert row["retraining_job"] == "ml/retrain-rec-v1-e1"
    if exit_failed:
        assert row["retraining_failed"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"
        assert "drift.retrain_job_failed" in r.output
        assert isinstance(row["retraining_retry_due"], float)  # the new Job's hour (decision 385)
    else:
        assert row["retraining_failed"] is None and "drift.retrain_job_failed" not in r.output
    text = once("text")
    assert ("retraining Job ml/retrain-rec-v1-e1 FAILED (BackoffLimitExceeded" in text.stdout) is exit_failed, text.stdout
    # not "nothing is retraining"; its time as the drift lines say one (`unread.at`)
    assert bool(re.search(r"a new Job is created after \d{4}-\d\d-\d\d \d\d:\d\d UTC", text.stdout)) is exit_failed, \
        text.stdout
    assert "drift.retrain_job_failed" not in text.output  # said once, by the run that saw it
    assert _jobs(kube) == ["retrain-rec-v1-e1"]


@pytest.mark.parametrize("ended", [{"type": "Complete", "status": "True"}, FAILED, None])
def test_a_retraining_job_deleted_before_it_was_read_is_said_once_as_gone(
        served: tuple[str, Path], kube: Any, tmp_path: Path, ended: dict[str, Any] | None) -> None:
    """Decision 285: the episode's Job ended (Complete, Failed) or not (None: a person's `kubectl delete` of a running
    Job) and was deleted (its `ttlSecondsAfterFinished`, a person) before an evaluation read it: the read's 404 was a
    debug line, read again for ever, and on-call never learnt that the retraining was gone and whether it had run.
    Now one `drift.retrain_job_gone` warning (outcome unknown), an Event, kept in the state; no new Job."""
    url, path = served
    w = _watcher(url, path, kube, tmp_path / "s.json")
    w.once()
    assert _jobs(kube) == ["retrain-rec-v1-e1"]
    if ended is not None:
        _ends(kube, "retrain-rec-v1-e1", ended)
    kube.batch.delete_namespaced_job("retrain-rec-v1-e1", "ml")
    kube.fail_next(500, methods=("GET",), plural="jobs")  # an API server failing is not "gone": said nothing
    with capture_logs() as logs:
        w.once()
    assert not [e for e in logs if e["event"].startswith("drift.retrain_job")], logs
    assert not getattr(w.states["rec/v1"], "job_gone", False)

    with capture_logs() as logs:
        w.once()
    said = [e for e in logs if e["event"] == "drift.retrain_job_gone"]
    assert len(said) == 1, logs
    assert said[0]["log_level"] == "warning" and said[0]["job"] == "ml/retrain-rec-v1-e1" and said[0]["episode"] == 1
    assert said[0]["outcome"] == "unknown" and "UNKNOWN" in said[0]["message"] and "no new Job" in said[0]["message"]
    events = {e.reason: e for e in kube.core.list_namespaced_event("ml").items}
    assert sorted(events) == ["DriftDetected", "RetrainJobGone"]
    assert "retrain-rec-v1-e1" in events["RetrainJobGone"].message and events["RetrainJobGone"].type == "Warning"
    stored = json.loads((tmp_path / "s.json").read_text())["rec/v1"]
    assert stored["phase"] == "drifting" and stored["job_gone"] is True and stored["job_failed"] == ""

    # said once: a later evaluation and a watcher restarted from the state file say nothing more, create no Job
    with capture_logs() as logs:
        w.once()
    again = _watcher(url, path, kube, tmp_path / "s.json")
    with capture_logs() as more:
        again.once()
    assert not [e for e in logs + more if e["event"] in ("drift.retrain_job_gone", "drift.retrain_job_unread",
                                                         "drift.retrain_job_failed", "drift.retrain_triggered")]
    assert _jobs(kube) == []
    assert len(kube.core.list_namespaced_event("ml").items) == 2


def test_drift_watch_once_says_the_gone_job_in_json_and_text(
        served: tuple[str, Path], kube: Any, tmp_path: Path) -> None:
    once = _once(served, kube, tmp_path)

    first = once("json")
    assert first.exit_code == 1, first.output
    assert json.loads(first.stdout[first.stdout.index("{"):])["profiles"][0].get("retraining_gone") is False
    _ends(kube, "retrain-rec-v1-e1", {"type": "Complete", "status": "True"})
    kube.batch.delete_namespaced_job("retrain-rec-v1-e1", "ml")  # its ttlSecondsAfterFinished
    r = once("json")
    assert r.exit_code == 1, r.output  # still open: exit codes unchanged
    assert "drift.retrain_job_gone" in r.output, r.output
    row = json.loads(r.stdout[r.stdout.index("{"):])["profiles"][0]
    assert row["retraining_job"] == "ml/retrain-rec-v1-e1" and row["retraining_failed"] is None
    assert row["retraining_gone"] is True
    text = once("text")
    assert "retraining Job ml/retrain-rec-v1-e1 GONE" in text.stdout and "UNKNOWN" in text.stdout, text.stdout
    assert "drift.retrain_job_gone" not in text.output  # said once, by the run that saw it
    assert _jobs(kube) == []


def test_a_failed_job_read_leaves_the_other_episodes_jobs_to_the_next_pass(
        served: tuple[str, Path], kube: Any, tmp_path: Path) -> None:
    """Two open episodes (rec and back, both drifted), each with its Job. An API server that does not answer made
    each episode's Job read wait its 5 s timeout, at every pass: with many open episodes the pass outlasted its
    interval. Now a read that fails ends the pass's Job reads; the others are read at the next pass (decision
    258). Before the test of decision 276 in this file, which serves `back` its training data again."""
    from canary.drift.watch import DriftWatcher

    url, path = served
    ticks = iter(range(1_000, 10**8, 3_600))
    w = DriftWatcher([json.loads(path.read_text()), json.loads(json.dumps(BACK["profile"]))],
                     client=PrometheusClient(url), window_s=3600, namespace="ml", state_file=tmp_path / "s.json",
                     core_api=kube.core, batch_api=kube.batch, job_template=JOB,
                     config=M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0), clock=lambda: float(next(ticks)))
    w.once()
    assert _jobs(kube) == ["retrain-back-v1-e1", "retrain-rec-v1-e1"]
    kube.fail_next(500, methods=("GET",), plural="jobs", times=2)
    w.once()
    assert sum(f.times for f in kube.handler.faults) == 1  # the first read failed, the second was not sent
    assert w._jobs_unread  # and why is kept for the pass (`drift.retrain_job_unread`, a debug line)
    for name in ("retrain-rec-v1-e1", "retrain-back-v1-e1"):
        _ends(kube, name, FAILED)
    kube.handler.faults.clear()
    with capture_logs() as logs:
        w.once()  # the next pass reads both again
    assert sorted(e["job"] for e in logs if e["event"] == "drift.retrain_job_failed") == [
        "ml/retrain-back-v1-e1", "ml/retrain-rec-v1-e1"], logs


def test_an_episode_that_ends_with_its_trigger_still_failing_stops_retrying_and_says_so(
        served: tuple[str, Path], kube: Any, tmp_path: Path) -> None:
    """Decision 276: the Job's create was refused (HTTP 500) when the episode opened; the drift ended (the model
    served what it was trained on again) while the trigger was still failing. Its retry went on and created a Job
    after the drift had ended, and `drift.resolved` did not say that no retraining had run. Now the ended
    episode's trigger is no longer retried, and `drift.resolved` says its retraining never started."""
    from canary.drift.watch import DriftWatcher

    url, _ = served
    client = PrometheusClient(url)
    prof = json.loads(json.dumps(BACK["profile"]))
    ticks = iter(range(1_000, 10**8, 3_600))
    w = DriftWatcher([prof], client=client, window_s=3600, namespace="ml", state_file=tmp_path / "s.json",
                     core_api=kube.core, batch_api=kube.batch, job_template=JOB,
                     config=M.MonitorConfig(enter_after=1, exit_after=1, quiet_s=0),
                     clock=lambda: float(next(ticks)))
    kube.fail_next(500, methods=("POST",), plural="jobs")
    with capture_logs() as logs:
        w.once()
    assert [e["event"] for e in logs if e["event"].startswith("drift.retrain")] == ["drift.retrain_failed"], logs
    assert w.states["back/v1"].trigger == "pending" and _jobs(kube) == []

    # the drift ends: served what it was trained on, and read over a window that holds only that traffic
    rng = np.random.default_rng(276)
    for x in rng.normal(0, 1, 3_000):
        BACK["exporter"].observe({"f": x})
    window, top = 20.0, len(prof["features"]["f"]["counts"]) - 1
    deadline = time.monotonic() + 90
    while True:  # until Prometheus's last `window` seconds hold the new traffic only (no drifted mass left)
        got = live_counts(client, prof, model="back", version="v1", window_s=window).get("f", {}).get("counts", [])
        if got and sum(got) >= 2_000 and got[top] < 0.01 * sum(got):
            break
        assert time.monotonic() < deadline, f"Prometheus never showed the clean traffic alone: {got}"
        time.sleep(0.5)
    w.profiles = [{**prof, "_window_s": window}]
    with capture_logs() as logs:
        w.once()  # the retry is due (an hour later), the API server answers again: it was created before
    [resolved] = [e for e in logs if e["event"] == "drift.resolved"]
    assert "retraining was NEVER STARTED (1 failed attempt)" in resolved["message"], resolved
    assert "no longer retried" in resolved["message"]
    assert resolved["retraining"] == "never started" and resolved["failed_attempts"] == 1
    assert not [e for e in logs if e["event"] in ("drift.retrain_triggered", "drift.retrain_failed")], logs
    with capture_logs() as logs:
        w.once()  # and later: still no retry, no Job
    assert not [e for e in logs if e["event"].startswith("drift.retrain")], logs
    assert _jobs(kube) == []
    stored = json.loads((tmp_path / "s.json").read_text())["back/v1"]
    assert stored["phase"] == "ok" and stored["trigger"] == "pending"  # kept: the next episode takes it over


def test_a_failed_retraining_job_reads_as_a_warning_in_slack() -> None:
    from canary.notify_body import slack_line

    line = slack_line("drift_retrain_job_failed", {
        "model": "rec", "namespace": "ml", "rollout": "rec", "stable_version": "v1", "canary_version": "",
        "weights": None, "reason": "rec v1: the retraining Job ml/retrain-rec-v1-e1 of drift episode 1 FAILED",
        "evidence": [], "at": 1000.0})
    assert line.startswith(":warning: drift_retrain_job_failed ml/rec"), line

"""End to end, issue 12's sandbox scenario: no rollout runs; the stable model's inputs move away from
its training data. On the real sandbox (Triton exporting feature distributions over the training
profile's buckets, Prometheus scraping it, the API emulator), `canary drift watch --once` raises the
alert and creates the retraining Job; the same watch over the same stretch before the shift raises
nothing (A/A)."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.sandbox.env import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
if not (shutil.which("prometheus") and shutil.which("haproxy")):
    pytest.skip("the sandbox needs prometheus and haproxy (scripts/setup.sh installs them)", allow_module_level=True)


def _watch(sb: Sandbox, state: str, job: str) -> tuple[int, str]:
    profile = sb.workdir / f"{sb.model}-{sb.stable_version}.profile.json"
    r = CliRunner().invoke(app, [
        "drift", "watch", "--baseline", str(profile), "--prometheus-url", sb.prometheus_url, "--window", "15s",
        "--enter-after", "2", "--exit-after", "2", "--quiet", "1s", "--state-file", state, "--retrain-job", job,
        "-n", sb.namespace, "--kubeconfig", str(sb.kubeconfig), "--once"])
    from canary import logs

    logs.configure()  # the command pointed the logs at CliRunner's stream, closed now; the sandbox logs on
    return r.exit_code, r.output


def test_stable_inputs_drift_alert_and_one_retraining_job(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: retrain-}\nspec:\n  template:\n"
                   "    spec:\n      restartPolicy: Never\n      containers: [{name: train, image: trainer:1}]\n")
    state = str(tmp_path / "state.json")
    with Sandbox("data-drift", rate=100.0, fault_at="manual", watch=True) as sb:
        import kubernetes

        batch = kubernetes.client.BatchV1Api(sb.kube.api_client())
        # A/A: the inputs are what the model trained on; evaluations with data raise nothing
        key = f"{sb.model}/{sb.stable_version}"
        deadline = time.monotonic() + 90
        clean = 0
        while clean < 4 and time.monotonic() < deadline:
            code, out = _watch(sb, state, str(job))
            assert code == 0, out
            st = json.loads((tmp_path / "state.json").read_text())
            clean = st[key]["clean_in_row"]
            assert st[key]["drifted_in_row"] == 0 and st[key]["episode"] == 0, st
            time.sleep(2)
        assert clean >= 4  # four evaluations in a row saw data and no drift
        assert batch.list_namespaced_job(sb.namespace).items == []
        sb.inject_fault()  # 5 of 8 inputs move by one standard deviation
        deadline = time.monotonic() + 120
        code = 0
        while code != 1 and time.monotonic() < deadline:
            time.sleep(2)
            code, out = _watch(sb, state, str(job))
        assert code == 1, out
        jobs = batch.list_namespaced_job(sb.namespace).items
        from canary.drift.watch import job_name

        assert [j.metadata.name for j in jobs] == [job_name("retrain-", model=sb.model, version=sb.stable_version,
                                                            episode=1)]
        evidence = json.loads(jobs[0].metadata.annotations["modelcanary.dev/drift-evidence"])
        assert set(evidence["drifted_features"]) >= {"f0", "f1", "f2", "f3", "f4"}
        assert not set(evidence["drifted_features"]) & {"f5", "f6", "f7"}
        events = kubernetes.client.CoreV1Api(sb.kube.api_client()).list_namespaced_event(sb.namespace).items
        assert "DriftDetected" in [e.reason for e in events]
        code, out = _watch(sb, state, str(job))  # the episode goes on: no second Job
        assert code == 1 and len(batch.list_namespaced_job(sb.namespace).items) == 1

"""A retraining Job template the API server refuses is found when `drift watch` starts (decision 207).

`--retrain-job` was checked for its shape only: a template the API server refuses (a pod's default
`restartPolicy: Always`, an invalid field: 422; RBAC without `list` or `create` on jobs: 403) started a
watch that ran for weeks and, when a drift episode opened, found every create refused and retried it for
ever while the model went on drifting untrained. The watch now asks the API server at start: the list an
episode starts with, and a create with `dryRun=All` of each baseline's Job (stored nowhere); a refusal is
exit 2 naming the template and the server's words, before Prometheus is asked anything. An API server that
does not answer is no refusal: `drift.retrain_unchecked`, and the watch goes on. The strict Kubernetes API
emulator answers, its faults injected as the API server would send them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.sandbox.kubeapi import KubeAPIServer, Resource
from tests import fleet
from tests.support.refused import refused_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TEMPLATE = ("apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: retrain-}\nspec:\n  template:\n"
            "    spec:\n      restartPolicy: Never\n      containers: [{name: train, image: trainer:1}]\n")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = KubeAPIServer()
    api.handler.register(Resource("batch", "jobs", "Job", ("v1",)))
    api.start()
    try:
        yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    finally:
        api.stop()


def _watch(tmp_path: Path, kubeconfig: Path, template: str = TEMPLATE) -> Any:
    import pyarrow as pa

    from canary.drift.profile import capture

    prof = capture(pa.table({"age": np.random.default_rng(7).normal(40, 10, 3_000)}), model="rec-model",
                   version="v2", file="t.parquet", sha256="0" * 64)
    (tmp_path / "b.json").write_text(json.dumps(prof))
    (tmp_path / "job.yaml").write_text(template)
    # --once against a port nobody listens on: a watch that got past its start exits 3 (Prometheus unasked)
    return CliRunner().invoke(app, ["drift", "watch", "--baseline", str(tmp_path / "b.json"), "--once",
                                    "--retrain-job", str(tmp_path / "job.yaml"), "-n", "ml",
                                    "--state-file", str(tmp_path / "s.json"), "--kubeconfig", str(kubeconfig),
                                    "--prometheus-url", f"http://127.0.0.1:{refused_port()}"])


def _jobs(api: KubeAPIServer) -> list[str]:
    return [k[3] for k in api.handler.objects if k[1] == "jobs"]


@pytest.mark.parametrize(("status", "method", "says"), [
    (422, "POST", "the API server refuses the retraining Job of rec-model v2 (Job ml/retrain-rec-model-v2-e1, "
                  "a create with dryRun=All: UnprocessableEntityException: 422"),
    (403, "POST", "the API server refuses the retraining Job of rec-model v2"),
    (403, "GET", "the retraining Jobs of namespace ml cannot be listed (ForbiddenException: 403 Forbidden"),
])
def test_a_template_the_api_server_refuses_is_exit_2_at_start(
        cluster: Any, tmp_path: Path, status: int, method: str, says: str) -> None:
    api, kubeconfig = cluster
    api.fail_next(status, methods=(method,), plural="jobs")
    r = _watch(tmp_path, kubeconfig)
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'job.yaml'}: {says}" in r.output and "no retraining" in r.output, r.output
    assert _jobs(api) == []


def test_an_accepted_template_is_asked_with_a_dry_run_and_nothing_is_created(cluster: Any, tmp_path: Path) -> None:
    api, kubeconfig = cluster
    r = _watch(tmp_path, kubeconfig)
    assert r.exit_code == 3, r.output  # past its start: Prometheus could not be asked
    assert api.handler.requests.get(("POST", "jobs")) == 1 and _jobs(api) == []


def test_an_api_server_that_does_not_answer_is_said_and_the_watch_goes_on(cluster: Any, tmp_path: Path) -> None:
    api, kubeconfig = cluster
    api.fail_next(503, methods=("POST",), plural="jobs")
    r = _watch(tmp_path, kubeconfig)
    assert r.exit_code == 3, r.output  # past its start
    said = [json.loads(line) for line in r.output.splitlines() if '"drift.retrain_unchecked"' in line]
    assert len(said) == 1 and "503" in said[0]["error"] and said[0]["template"] == str(tmp_path / "job.yaml")


@pytest.mark.parametrize("line", ["", "      restartPolicy: Always\n"])
def test_a_pod_that_restarts_always_is_refused_before_the_cluster_is_asked(
        cluster: Any, tmp_path: Path, line: str) -> None:
    api, kubeconfig = cluster
    r = _watch(tmp_path, kubeconfig, TEMPLATE.replace("      restartPolicy: Never\n", line))
    assert r.exit_code == 2 and "spec.template.spec.restartPolicy" in r.output, r.output
    assert "Never or OnFailure" in r.output and not api.handler.requests.get(("POST", "jobs"))


def _full_quota(api: KubeAPIServer) -> None:
    api.handler.register(Resource("", "resourcequotas", "ResourceQuota", ("v1",)))
    api.handler.put_object({"apiVersion": "v1", "kind": "ResourceQuota",
                            "metadata": {"name": "jobs", "namespace": "ml"},
                            "spec": {"hard": {"count/jobs.batch": "1"}}})
    api.handler.put_object({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nightly", "namespace": "ml"},
                            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}})


def test_a_full_quota_on_jobs_is_said_and_the_watch_goes_on(cluster: Any, tmp_path: Path) -> None:
    # a ResourceQuota at its `count/jobs.batch`: the API server answers the create 403 "exceeded quota", which
    # the start's check took for RBAC, exit 2, though the quota may be free when an episode opens (decision 220)
    import kubernetes

    api, kubeconfig = cluster
    _full_quota(api)
    r = _watch(tmp_path, kubeconfig)
    assert r.exit_code == 3, r.output  # past its start
    said = [json.loads(line) for line in r.output.splitlines() if '"drift.retrain_unchecked"' in line]
    assert len(said) == 1 and "403" in said[0]["error"] and "exceeded quota: jobs" in said[0]["error"], r.output
    assert _jobs(api) == ["nightly"]
    # the emulator answers as kube-apiserver's quota admission does, on a real create too
    batch = kubernetes.client.BatchV1Api(api.api_client())
    with pytest.raises(kubernetes.client.ApiException) as err:
        batch.create_namespaced_job("ml", {"metadata": {"name": "x"},
                                           "spec": {"template": {"spec": {"containers": []}}}})
    body = json.loads(err.value.body)
    assert err.value.status == 403 and body["reason"] == "Forbidden" and body["details"]["kind"] == "jobs"
    assert body["message"] == ('jobs.batch "x" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, '
                               "used: count/jobs.batch=1, limited: count/jobs.batch=1")


def test_an_rbac_refusal_worded_as_the_api_server_words_it_is_still_exit_2(cluster: Any, tmp_path: Path) -> None:
    # a 403 that is no quota's stays bad input (decision 220 keeps 207's exit 2 for it)
    from canary.drift.retrain import over_quota

    class Refused(Exception):
        status = 403
        body = json.dumps({"kind": "Status", "reason": "Forbidden", "code": 403, "message": (
            'jobs.batch is forbidden: User "system:serviceaccount:ml:drift" cannot create resource "jobs" in API '
            'group "batch" in the namespace "ml"'), "details": {"group": "batch", "kind": "jobs"}})

    assert not over_quota(Refused())
    api, kubeconfig = cluster
    api.fail_next(403, methods=("POST",), plural="jobs")
    assert _watch(tmp_path, kubeconfig).exit_code == 2

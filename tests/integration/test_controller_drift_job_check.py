"""The controller's drift monitor asks the API server about its retraining Job when a baseline is first seen
(decision 224), as `drift watch` asks at start (decision 207).

`canary controller run --drift --retrain-job` checked the template's shape only: its Jobs go to each baseline
ConfigMap's namespace, known once the baselines are listed, so a template the API server refuses there (RBAC
without create on jobs, an invalid field) was found when a drift episode opened, weeks later, and retried while
the model drifted untrained. Now each baseline's Job is created with dryRun=All when its baseline is first seen:
a refusal is `drift.retrain_refused` (the controller serves rollouts and does not exit for it), asked again at
every pass until accepted; no answer is `drift.retrain_unchecked`. The strict Kubernetes API emulator answers,
its faults injected as the API server sends them; Prometheus is a port nobody listens on (no drift is read)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from tests.integration.test_drift_faults import JOB, _profile, kube  # noqa: F401 (a fixture)
from tests.support.passes import Passes
from tests.support.refused import refused_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(kube: Any) -> Any:
    """The API emulator (`test_drift_faults.kube`) with three baselines, in namespaces ml (m1, m2) and prod (m3)."""
    from canary.drift.store import save_profile

    ref = np.random.default_rng(224).normal(0, 1, 2_000)
    for ns, model in (("ml", "m1"), ("ml", "m2"), ("prod", "m3")):
        save_profile(kube.core, namespace=ns, name=f"{model}-baseline", profile=_profile(model, {"f": ref}))
    return kube


def _passes(kube: Any, n: int, stop: Any = None) -> list[dict[str, Any]]:
    """`n` passes of the controller's drift loop as its leader, over every namespace (`stop`: a Passes of its
    own, to act between them); the lines logged."""
    from canary.drift import monitor as M
    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher, watch_baselines
    from canary.metrics.client import PrometheusClient

    watcher = DriftWatcher([], client=PrometheusClient(f"http://127.0.0.1:{refused_port()}"), window_s=3600,
                           config=M.MonitorConfig(quiet_s=0), store=ConfigMapStateStore(kube.core, namespace="canary"),
                           core_api=kube.core, batch_api=kube.batch, job_template=JOB, load=False)
    with capture_logs() as logs:
        watch_baselines(watcher, kube.core, namespace=None, stop=stop or Passes(n), interval_s=0.01,
                        is_leader=lambda: True,
                        job_source="job.yaml")
    return [e for e in logs if str(e.get("event", "")).startswith("drift.retrain_")]


def _jobs(kube: Any) -> list[str]:
    return [k[3] for k in kube.handler.objects if k[1] == "jobs"]


def test_each_baselines_job_is_asked_once_with_a_dry_run_when_first_seen(cluster: Any) -> None:
    said = _passes(cluster, 3)
    assert said == []  # accepted: nothing to say
    # one list and one dry-run create per baseline, in its own namespace, over three passes; nothing stored
    assert cluster.handler.requests.get(("POST", "jobs")) == 3 and cluster.handler.requests.get(("GET", "jobs")) == 3
    assert _jobs(cluster) == []


def test_a_refused_job_is_said_once_per_answer_asked_every_pass_and_accepted_once_allowed(cluster: Any) -> None:
    # RBAC without create on jobs for the first two passes (3 baselines: 6 dry-run creates), then granted
    cluster.fail_next(403, times=6, methods=("POST",), plural="jobs")
    said = _passes(cluster, 3)
    refused = [e for e in said if e["event"] == "drift.retrain_refused"]
    assert sorted((e["namespace"], e["model"]) for e in refused) == [("ml", "m1"), ("ml", "m2"), ("prod", "m3")]
    for e in refused:
        assert e["log_level"] == "error" and e["template"] == "job.yaml" and e["version"] == "v1"
        assert e["error"].startswith("job.yaml: the API server refuses the retraining Job of " + e["model"] + " v1")
        assert "403" in e["error"] and "RBAC" in e["hint"]
    accepted = [e for e in said if e["event"] == "drift.retrain_accepted"]
    assert sorted(e["model"] for e in accepted) == ["m1", "m2", "m3"]
    assert cluster.handler.requests.get(("POST", "jobs")) == 9 and _jobs(cluster) == []


def test_an_api_server_that_does_not_answer_costs_one_check_a_pass(cluster: Any) -> None:
    cluster.fail_next(503, times=2, methods=("GET",), plural="jobs")
    said = _passes(cluster, 3)
    unchecked = [e for e in said if e["event"] == "drift.retrain_unchecked"]
    # one list unanswered in each of passes 1 and 2, and the pass stops asking there; pass 2 began with the
    # baselines not left unanswered (decision 227): m1's list in pass 1, m2's in pass 2, each said once
    assert [e["model"] for e in unchecked] == ["m1", "m2"]
    assert all("503" in e["error"] and e["log_level"] == "warning" for e in unchecked)
    assert cluster.handler.requests.get(("GET", "jobs")) == 2 + 3
    assert [e["model"] for e in said if e["event"] == "drift.retrain_accepted"] == ["m1", "m2"]


def test_a_namespace_whose_checks_go_unanswered_does_not_keep_the_others_unasked(cluster: Any) -> None:
    # namespace ml's ResourceQuota on Jobs is full (last night's Jobs not cleaned up): its dry-run creates are
    # answered 403 "exceeded quota", unchecked (decision 220), for as long as the quota stays full. A pass stops
    # at the first unchecked one; each pass began with ml's m1 again, so prod's m3 was never asked and a refusal
    # there never said. The next pass asks the ones not left unanswered first (decision 227).
    from canary.sandbox.kubeapi import Resource

    cluster.handler.register(Resource("", "resourcequotas", "ResourceQuota", ("v1",)))
    cluster.handler.put_object({"apiVersion": "v1", "kind": "ResourceQuota",
                             "metadata": {"name": "jobs", "namespace": "ml"},
                             "spec": {"hard": {"count/jobs.batch": "0"}}})
    said = _passes(cluster, 3)
    unchecked = [e for e in said if e["event"] == "drift.retrain_unchecked"]
    assert {e["namespace"] for e in unchecked} == {"ml"} and all("exceeded quota" in e["error"] for e in unchecked)
    asked = [path for method, path, _ in cluster.writes if method == "POST" and path.endswith("/jobs")]
    assert "/apis/batch/v1/namespaces/prod/jobs" in asked, asked
    # each pass still stops at its first unchecked one: ml's two, one a pass, then prod's and ml's first again
    assert [p.split("/")[5] for p in asked] == ["ml", "ml", "prod", "ml"]


class _Between(Passes):
    """Passes that run the next of `steps` after each pass (before the next one)."""

    def __init__(self, steps: list[Any]) -> None:
        super().__init__(len(steps) + 1)
        self.steps = list(steps)

    def wait(self, timeout: float | None = None) -> bool:
        if self.steps:
            self.steps.pop(0)()
        return super().wait(timeout)


def test_a_baseline_deleted_and_created_again_is_asked_again(cluster: Any) -> None:
    # a namespace torn down and created again (its baselines re-applied by GitOps, the controller's RoleBinding
    # on jobs not): the baseline is seen again, but its (namespace, model, version) was accepted before and never
    # asked again, so the RBAC refusal was found when an episode opened. A baseline gone from a pass's listing is
    # forgotten; seen again, it is first seen (decision 228).
    from canary.drift.store import save_profile

    ref = np.random.default_rng(228).normal(0, 1, 2_000)
    gone = lambda: cluster.core.delete_namespaced_config_map("m3-baseline", "prod")  # noqa: E731

    def back() -> None:
        save_profile(cluster.core, namespace="prod", name="m3-baseline", profile=_profile("m3", {"f": ref}))
        cluster.fail_next(403, times=1, methods=("POST",), plural="jobs")  # no create on jobs in prod now

    said = _passes(cluster, 3, stop=_Between([gone, back]))
    refused = [(e["event"], e["namespace"], e["model"]) for e in said]
    assert refused == [("drift.retrain_refused", "prod", "m3")], said
    assert cluster.handler.requests.get(("POST", "jobs")) == 3 + 1

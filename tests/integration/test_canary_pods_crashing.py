"""A canary whose pods never become Ready by their own fault ends as the canary's, and its one line says so
(decision 843).

A CanaryRollout whose canary pods crash-loop ended after `wait_ready_s` aborted "not run", class
`infrastructure` ("not the canary: fix what failed"), and its `rollout.not_ready_ended` line carried nothing but
its name: on-call read a crash-looping model as the cluster's fault. The pods' own state tells them apart
(`routing.pods.own_failure`): containers crashing (CrashLoopBackOff, restarts), unable to start (ImagePullBackOff,
CreateContainerConfigError) or running with their readiness probe failing are the canary's, class `gate` (it did
not come up, as a Triton gate's "did not load"); a pod not up yet (Pending, unscheduled), being deleted, or none at
all stays `infrastructure`. The controller on the strict API emulator (pods served), a real Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.routing import pods
from canary.sandbox.kubeapi import ready_pod
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import GROUP, _canary_pod, prometheus, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def crash_looping(name: str, version: str) -> dict[str, Any]:
    """A pod as the kubelet reports a container that keeps exiting: Running, not Ready, CrashLoopBackOff."""
    pod = ready_pod(name, "ml", {"app": "rec-model", "version": version}, ready=False)
    pod["status"].update(phase="Running", containerStatuses=[{
        "name": "triton", "ready": False, "restartCount": 7, "started": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}])
    return pod


def _ended(api: Any, op: Any, custom: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CanaryRollout r0 (canary v2) ticked past `wait_ready_s`: (its status, its `rollout.not_ready_ended`)."""
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.wait_ready_s = 60.0
    op.clock = clock = FakeClock()
    with structlog.testing.capture_logs() as logs:
        op.tick()
        clock.t += 61.0
        op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    lines = [e for e in logs if e["event"] == "rollout.not_ready_ended"]
    assert len(lines) == 1, [e["event"] for e in logs]
    assert "modelcanary.dev/rollout" not in (api.get(GROUP, "virtualservices", "ml", "m0")["metadata"].get(
        "annotations") or {})  # nothing claimed
    return st, lines[0]


def test_a_crash_looping_canary_ends_as_the_canarys_gate_and_its_line_says_so(world: Any) -> None:
    api, op, custom = world
    _canary_pod(api, ready=True, version="v1")  # the stable's Ready pod, the pods API registered
    api.handler.put_object(crash_looping("m0-v2-0", "v2"))
    st, line = _ended(api, op, custom)
    assert st["phase"] == rl.ABORTED and st["endCause"] == "gate", st  # was `infrastructure`
    assert "m0-v2-0 (Running, ContainersNotReady, CrashLoopBackOff, 7 restarts)" in st["reason"], st["reason"]
    assert "The canary's own fault, not the cluster's" in st["reason"]
    assert line["end_cause"] == "gate" and line["reason"] == st["reason"][:1000], line  # was: no reason, no class
    assert line["next"].startswith("do not ship v2 as it is: its pods never became Ready by their own fault"), line


def test_a_canary_pod_never_scheduled_stays_infrastructure_and_its_line_says_so(world: Any) -> None:
    api, op, custom = world
    _canary_pod(api, ready=False)  # Pending, no container started: the cluster's room, not the version
    st, line = _ended(api, op, custom)
    assert st["endCause"] == "infrastructure" and line["end_cause"] == "infrastructure", (st, line)
    assert "own fault" not in st["reason"] and line["next"].startswith("not the canary"), line


@pytest.mark.parametrize(("state", "expect"), [
    ({"waiting": {"reason": "ImagePullBackOff"}}, ""),  # the registry's, or a tag not pushed: not told (860)
    ({"waiting": {"reason": "CreateContainerConfigError"}}, "CreateContainerConfigError"),
    ({"running": {"startedAt": "2026-12-07T00:00:00Z"}}, "running, its readiness probe failing"),
    ({"waiting": {"reason": "ContainerCreating"}}, ""),  # still starting: not told apart from a slow pull
])
def test_a_pods_own_failure_is_told_by_its_containers(state: dict[str, Any], expect: str) -> None:
    status = {"phase": "Running" if "running" in state else "Pending",
              "containerStatuses": [{"name": "c", "ready": False, "restartCount": 0, "state": state}]}
    assert pods.own_failure(status) == expect


# --- whose fault, attacked (decision 860): what the cluster or the mesh did is never the canary's -------------------

def _pod(name: str, version: str, *, phase: str, containers: list[dict[str, Any]], reason: str = "") -> dict[str, Any]:
    pod = ready_pod(name, "ml", {"app": "rec-model", "version": version}, ready=False)
    pod["status"].update(phase=phase, containerStatuses=containers, **({"reason": reason} if reason else {}))
    return pod


def _triton(ready: bool, restarts: int = 0, **state: Any) -> dict[str, Any]:
    return {"name": "triton", "ready": ready, "restartCount": restarts,
            "state": state or {"running": {"startedAt": "2026-12-07T00:00:00Z"}}}


def _sidecar(ready: bool, restarts: int = 0, **state: Any) -> dict[str, Any]:
    return {**_triton(ready, restarts, **state), "name": "istio-proxy"}


EVICTED = _pod("m0-v2-0", "v2", phase="Failed", reason="Evicted", containers=[
    _triton(False, 3, terminated={"exitCode": 137, "reason": "ContainerStatusUnknown"})])
SIDECAR_DOWN = _pod("m0-v2-0", "v2", phase="Running", containers=[
    _triton(True), _sidecar(False, 4, waiting={"reason": "CrashLoopBackOff"})])
SIDECAR_UNREADY = _pod("m0-v2-0", "v2", phase="Running", containers=[_triton(True), _sidecar(False)])
PULL_BACKOFF = _pod("m0-v2-0", "v2", phase="Pending", containers=[
    _triton(False, waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry/m0:v2"'})])
PULL_ERROR = _pod("m0-v2-0", "v2", phase="Pending", containers=[
    _triton(False, waiting={"reason": "ErrImagePull", "message": "429 Too Many Requests"})])


@pytest.mark.parametrize("pod", [EVICTED, SIDECAR_DOWN, SIDECAR_UNREADY, PULL_BACKOFF, PULL_ERROR],
                         ids=["evicted with past restarts", "istio-proxy crash-looping", "istio-proxy not ready",
                              "image pull back-off", "image pull refused"])
def test_what_the_cluster_did_to_a_canary_pod_is_not_the_canarys(pod: dict[str, Any]) -> None:
    """An eviction (its containers' past restarts stay in its status), the mesh's sidecar (istiod down, its certificate)
    and an image the registry did not give (rate-limited, unreachable, or a tag not pushed: not told apart, and
    ImagePullBackOff's message never says which) are not the version's own failure: `infrastructure`, not `gate`."""
    ready, total, words, failing = pods.count_ready([pod], {"app": "rec-model", "version": "v2"})
    assert (ready, total, failing) == (0, 1, 0), words


def test_the_state_of_a_pod_the_cluster_failed_is_still_named() -> None:
    for pod, said in ((EVICTED, "Evicted"), (PULL_BACKOFF, "ImagePullBackOff")):
        (words,) = pods.count_ready([pod], {"version": "v2"})[2]
        assert said in words, words


def test_a_crash_looping_canary_beside_an_evicted_one_is_still_the_canarys() -> None:
    crashing = _pod("m0-v2-1", "v2", phase="Running", containers=[
        _triton(False, 5, waiting={"reason": "CrashLoopBackOff"}), _sidecar(True)])
    assert pods.count_ready([EVICTED, crashing], {"version": "v2"})[3] == 1


def test_no_ready_stable_either_is_not_told_from_the_clusters_fault() -> None:
    """Both versions without a Ready pod, the canary's crashing: a node pool's broken GPU driver crashes both, so the
    stable's pods are no judge of whose fault it was (`infrastructure`, as a stable without a Ready pod alone is)."""
    crashing = pods.PodCount(total=1, failing=1, selector="version=v2", namespace="ml", not_ready=("m0-v2-0 (x)",))
    stable = pods.PodCount(total=1, failing=1, selector="version=v1", namespace="ml", not_ready=("m0-v1-0 (x)",))
    assert pods.canary_failing([("canary", "v2", crashing)])
    assert not pods.canary_failing([("canary", "v2", crashing), ("stable", "v1", stable)])
    assert "own fault" not in pods.not_ready_message([("canary", "v2", crashing), ("stable", "v1", stable)], 60)


def test_a_canary_whose_sidecar_cannot_start_ends_as_infrastructure_on_the_controller(world: Any) -> None:
    api, op, custom = world
    _canary_pod(api, ready=True, version="v1")  # the stable's Ready pod, the pods API registered
    api.handler.put_object(SIDECAR_DOWN)
    st, line = _ended(api, op, custom)
    assert st["endCause"] == "infrastructure" and line["end_cause"] == "infrastructure", (st, line)

"""Before traffic moves, a Ready pod must serve the canary version (canary/routing/pods.py).

Real Kubernetes API emulator (pods and Services registered, as a cluster serves them) and the real
IstioRouter; the rollout's metrics from a fake provider on a fake clock. A pod turning Ready is a
hook on the fake clock's sleep, never a timed wait.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import CanaryNotReady, KubeUnavailable
from canary.routing import pods
from canary.sandbox.kubeapi import PODS, SERVICES, ready_pod
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import record, runner, subsets

pytestmark = pytest.mark.integration


class FlipClock(FakeClock):
    """Runs `then` at the `at`-th sleep."""

    def __init__(self, at: int, then: Any) -> None:
        super().__init__()
        self.sleeps, self.at, self.then = 0, at, then

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.sleeps += 1
        if self.sleeps == self.at:
            self.then()


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(1)
    for res in (PODS, SERVICES):
        server.handler.register(res)
    server.handler.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m0", "namespace": "ml"},
                               "spec": {"selector": {"app": "m0"}}})
    server.handler.put_object(ready_pod("m0-v1-0", "ml", {"app": "m0", "version": "v1"}))
    yield server
    server.stop()


def _pod(api: Any, name: str, version: str, *, ready: bool, app: str = "m0") -> None:
    api.handler.put_object(ready_pod(name, "ml", {"app": app, "version": version}, ready=ready))


def _dr_labels(api: Any) -> None:
    """The shipped DestinationRule's subsets select `app` too (fleet's copies keep rec-model's): m0's pods."""
    def edit(dr: dict[str, Any]) -> None:
        for s in dr["spec"]["subsets"]:
            s["labels"]["app"] = "m0"
    api.handler.edit_object("networking.istio.io", "destinationrules", "ml", "m0", edit)


def test_promote_waits_for_a_ready_canary_pod_then_runs(api: Any) -> None:
    """The canary's Deployment was just applied: its pod is Pending. Promote waits (nothing written) and
    starts once it is Ready."""
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    clock = FlipClock(3, lambda: _pod(api, "m0-v2-0", "v2", ready=True))
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, wait_ready_s=600).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    waiting = [e for e in logs if e["event"] == "preflight.waiting_for_canary_pods"]
    assert len(waiting) == 1 and "m0-v2-0 (Pending, ContainersNotReady)" in waiting[0]["detail"], waiting
    ready = [e for e in logs if e["event"] == "preflight.canary_pods"]
    assert ready and ready[0]["selector"] == "app=m0,version=v2" and ready[0]["ready"] == 1
    events = [e["event"] for e in logs]
    assert events.index("preflight.canary_pods") < events.index("rollout.started"), events


@pytest.mark.parametrize("case", ["pending", "none", "another app", "terminating"])
def test_no_ready_canary_pod_by_the_deadline_moves_nothing(api: Any, case: str) -> None:
    """Pods of another app with the same version label, a pod being deleted, or none at all: no pod would
    serve the canary subset. Promote gives up after --wait-ready with CanaryNotReady (exit 3), nothing
    written: the record, the weights and the subsets are as they were."""
    _dr_labels(api)
    if case == "pending":
        _pod(api, "m0-v2-0", "v2", ready=False)
    elif case == "another app":
        _pod(api, "other-v2-0", "v2", ready=True, app="other")
    elif case == "terminating":
        pod = ready_pod("m0-v2-0", "ml", {"app": "m0", "version": "v2"})
        pod["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
        api.handler.put_object(pod)
    before = (record(api), subsets(api))
    clock = FakeClock()
    with pytest.raises(CanaryNotReady) as got:
        runner(api, "v2", clock, wait_ready_s=60).run()
    text = str(got.value)
    assert "canary v2 has no Ready pod after waiting 60s" in text and "app=m0,version=v2" in text, text
    assert "nothing was moved" in text
    assert (record(api), subsets(api)) == before
    assert clock.t - 1_000.0 == pytest.approx(60, abs=5.1)


def test_without_the_rbac_to_look_the_rollout_goes_on_and_says_so(api: Any) -> None:
    """The emulator without pods (as a cluster whose RBAC does not let the identity list them): unchecked,
    said, and the rollout runs (the unrouted rule stands behind it)."""
    server = fleet.start_api(1)
    try:
        with structlog.testing.capture_logs() as logs:
            result = runner(server, "v2", FakeClock(), wait_ready_s=600).run()
        assert result.state.phase == rl.PROMOTED
        (said,) = [e for e in logs if e["event"] == "preflight.pods_unchecked"]
        assert "not found" in said["error"] and said["selector"] == "app=rec-model,version=v2", said
    finally:
        server.stop()


def test_a_signal_while_waiting_ends_the_wait_with_nothing_moved(api: Any) -> None:
    _dr_labels(api)
    clock = FlipClock(1, lambda: r.stop.set())
    r = runner(api, "v2", clock, wait_ready_s=600)
    before = record(api)
    with pytest.raises(CanaryNotReady, match="interrupted while waiting"):
        r.run()
    assert record(api) == before


def test_pod_counting_reads_conditions_not_phase() -> None:
    running_not_ready = {"metadata": {"name": "a", "labels": {"version": "v2"}},
                         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False",
                                                                        "reason": "ReadinessGatesNotReady"}]}}
    no_conditions = {"metadata": {"name": "b", "labels": {"version": "v2"}}, "status": {"phase": "Pending"}}
    ready = ready_pod("c", "ml", {"version": "v2"})
    other = ready_pod("d", "ml", {"version": "v3"})
    got = pods.count_ready([running_not_ready, no_conditions, ready, other, "junk"], {"version": "v2"})
    assert got == (1, 3, ("a (Running, ReadinessGatesNotReady)", "b (Pending)"), 0)


@pytest.mark.parametrize("host, ns, expect", [("m0", "ml", ("m0", "ml")), ("m0.other", "ml", None),
                                             ("m0.other.svc.cluster.local", "ml", ("m0", "other")),
                                             ("api.example.com", "ml", None), ("*.ml.svc.cluster.local", "ml", None)])
def test_the_service_a_destination_rule_host_names(host: str, ns: str, expect: Any) -> None:
    assert pods.service_of({"metadata": {"namespace": ns}, "spec": {"host": host}}, ns) == expect


def test_a_subset_whose_labels_contradict_the_services_selector_has_no_pod(api: Any) -> None:
    """The Service selects app=m0, the canary subset app=rec-model: Istio picks the subset among the Service's
    endpoints, so no pod can serve it, whatever pods exist with either label."""
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "rec-v2-0", "v2", ready=True, app="rec-model")
    with pytest.raises(CanaryNotReady) as got:
        runner(api, "v2", FakeClock(), wait_ready_s=0).run()
    assert "no pod can have app=m0 (Service) and app=rec-model (canary subset)" in str(got.value), str(got.value)


def _version_only_subsets(api: Any) -> None:
    """Subsets told apart by `version` alone (as many charts ship them)."""
    def edit(dr: dict[str, Any]) -> None:
        for s in dr["spec"]["subsets"]:
            s["labels"] = {"version": s["labels"]["version"]}
    api.handler.edit_object("networking.istio.io", "destinationrules", "ml", "m0", edit)


def _host(api: Any, host: str) -> None:
    """The DestinationRule's host and the VirtualService's destinations: `host`."""
    api.handler.edit_object("networking.istio.io", "destinationrules", "ml", "m0",
                            lambda dr: dr["spec"].__setitem__("host", host))

    def edit(vs: dict[str, Any]) -> None:
        for http in vs["spec"]["http"]:
            for r in http["route"]:
                r["destination"]["host"] = host
    api.handler.edit_object("networking.istio.io", "virtualservices", "ml", "m0", edit)


@pytest.mark.parametrize("case", ["service entry host", "name.namespace host", "service without selector"])
def test_pods_that_cannot_be_told_are_unchecked_not_guessed(api: Any, case: str) -> None:
    """Decision 121 (a). A DestinationRule whose host is no Kubernetes Service (a ServiceEntry's, on VMs
    or WorkloadEntries) was checked against the subset's labels alone in the rule's namespace: refused
    (exit 3) for want of a pod it never routes to. A Service without a selector (Endpoints written by
    hand) did the same the other way: another app's Ready `version=v2` pod made the check pass. Both are
    unchecked now, said with the host or the Service, and the rollout goes on."""
    _version_only_subsets(api)
    if case != "service without selector":
        _host(api, "m0.models.example.com" if case == "service entry host" else "m0.ml")
    else:
        api.handler.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m0", "namespace": "ml"},
                                "spec": {"clusterIP": "None"}})
        _pod(api, "other-v2-0", "v2", ready=True, app="other")  # not an endpoint of m0's
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", FakeClock(), wait_ready_s=0).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    assert not [e for e in logs if e["event"] == "preflight.canary_pods"], "a pod was counted"
    (said,) = [e for e in logs if e["event"] == "preflight.pods_unchecked"]
    want = {"service without selector": "Service ml/m0 has no selector"}.get(case, "is not a Kubernetes Service")
    assert want in said["error"], said


def test_a_pods_list_that_keeps_failing_a_while_does_not_end_the_wait(api: Any) -> None:
    """Decision 121 (b). The pods LIST answered 503 for one whole call (the router's four attempts): the
    KubeUnavailable left the wait and the promote exited 3 with 9m55s of its --wait-ready unused. A read
    that fails is one more look that did not find a Ready pod: the wait goes on to its deadline."""
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    api.fail_next(503, times=4, methods=("GET",), plural="pods")
    clock = FlipClock(2, lambda: _pod(api, "m0-v2-0", "v2", ready=True))
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, wait_ready_s=600).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    (waiting,) = [e for e in logs if e["event"] == "preflight.waiting_for_canary_pods"]
    assert "503" in waiting["detail"] or "unavailable" in waiting["detail"].lower(), waiting


def test_a_pods_list_still_failing_at_the_deadline_is_the_promotes_error(api: Any) -> None:
    _dr_labels(api)
    api.fail_next(503, times=1_000, methods=("GET",), plural="pods")
    before = record(api)
    clock = FakeClock()
    with pytest.raises(KubeUnavailable):
        runner(api, "v2", clock, wait_ready_s=30).run()
    assert record(api) == before and clock.t - 1_000.0 == pytest.approx(30, abs=5.1)


def test_a_signal_in_the_middle_of_a_poll_ends_the_wait_within_a_quarter_second(api: Any) -> None:
    """Decision 121 (c). The wait slept POD_POLL_S (5 s) at a time: a SIGTERM one second into a poll
    was seen 4 s later (a CI job's cancel, an evicted pod's grace period spent). Now within 0.25 s."""
    _dr_labels(api)
    clock = FakeClock()
    r = runner(api, "v2", clock, wait_ready_s=600)
    signal_at: list[float] = []
    orig = clock.sleep

    def sleep(seconds: float) -> None:
        start = clock.t
        orig(seconds)
        if not signal_at and clock.t >= 1_001.0 > start:  # the signal lands 1 s into the wait
            signal_at.append(1_001.0)
            r.stop.set()
    clock.sleep = sleep  # type: ignore[method-assign]
    with pytest.raises(CanaryNotReady, match="interrupted while waiting"):
        r.run()
    assert clock.t - signal_at[0] <= 0.25, clock.t - signal_at[0]


def test_a_signal_while_waiting_is_not_undone_by_the_pod_turning_ready_meanwhile(api: Any) -> None:
    """Decision 121 (c). The signal and the pod's Ready came in the same poll: the next read found the pod
    and the cancelled promote claimed the route (then ended it as interrupted). It ends with nothing written."""
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    def signal_and_ready() -> None:
        r.stop.set()
        _pod(api, "m0-v2-0", "v2", ready=True)
    clock = FlipClock(1, signal_and_ready)
    r = runner(api, "v2", clock, wait_ready_s=600)
    before = record(api)
    with pytest.raises(CanaryNotReady, match="interrupted while waiting"):
        r.run()
    assert record(api) == before


def test_a_policy_that_can_judge_nothing_is_refused_before_the_wait(api: Any) -> None:
    """Decision 121 (f). The metrics preflight ran after the pod wait: a policy whose queries match nothing
    (exit 2, bad input) was said only once a pod was Ready, up to --wait-ready later, and with the pod never
    Ready the promote exited 3 for the pods, the broken policy unsaid. Now it is refused at once."""
    from canary.errors import ConfigError

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    clock = FakeClock()
    r = runner(api, "v2", clock, wait_ready_s=600)

    def refuse(*_: Any, **__: Any) -> Any:
        raise ConfigError("preflight: no stable (v1) data (a label matching nothing)")
    r.metrics.preflight = refuse  # type: ignore[method-assign]
    before = record(api)
    with pytest.raises(ConfigError, match="no stable"):
        r.run()
    assert clock.t == 1_000.0 and record(api) == before


def test_the_sandboxs_service_selects_by_a_label_when_subsets_differ_by_version_alone(api: Any) -> None:
    """Decision 121 (a), the sandbox's side. Its Service selected the subsets' common labels: none when they
    are told apart by `version` alone (a user's --istio-dir), an empty selector, which the check now reads as
    a Service without one (unchecked). It selects `app: <host>` then, and its pods carry it: checked."""
    from canary.sandbox.env import workload_objects

    _version_only_subsets(api)
    dr = api.get("networking.istio.io", "destinationrules", "ml", "m0")
    for obj in workload_objects([dr], "ml", ("v1", "v2")):
        api.handler.put_object(obj)
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", FakeClock(), wait_ready_s=0).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    assert not [e for e in logs if e["event"] == "preflight.pods_unchecked"]
    (counted,) = [e for e in logs if e["event"] == "preflight.canary_pods"]
    assert counted["selector"] == "app=m0,version=v2" and counted["ready"] == 1, counted


def test_a_route_changed_during_the_wait_is_read_again_before_the_claim(api: Any) -> None:
    """Decision 121 (g). The claim was decided on the route as read before the wait (up to --wait-ready old).
    An operator re-pointed the stable subset to v1.5 meanwhile: the rollout claimed with stable v1, moved 20%,
    then saw `subset.foreign_edit`, aborted and pointed the stable subset back to v1 (the operator's change
    undone). After a wait the route is read again; changed, everything before the claim is decided anew."""
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)

    def repoint_stable_then_ready() -> None:
        def edit(dr: dict[str, Any]) -> None:
            for s in dr["spec"]["subsets"]:
                if s["name"] == "stable":
                    s["labels"]["version"] = "v1.5"
        api.handler.edit_object("networking.istio.io", "destinationrules", "ml", "m0", edit)
        _pod(api, "m0-v1.5-0", "v1.5", ready=True)  # the stable's pods are checked too (decision 124)
        _pod(api, "m0-v2-0", "v2", ready=True)
    clock = FlipClock(2, repoint_stable_then_ready)
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, wait_ready_s=600).run()
    events = [e["event"] for e in logs]
    assert result.state.phase == rl.PROMOTED and result.state.stable_version == "v1.5", result.state.reason
    assert "subset.foreign_edit" not in events, events
    (changed,) = [e for e in logs if e["event"] == "preflight.route_changed"]
    assert changed["changed"] == "stable subset", changed
    assert events.index("preflight.route_changed") < events.index("rollout.started"), events


def test_a_route_unchanged_by_the_wait_is_claimed_on_the_first_read(api: Any) -> None:
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    clock = FlipClock(2, lambda: _pod(api, "m0-v2-0", "v2", ready=True))
    with structlog.testing.capture_logs() as logs:
        assert runner(api, "v2", clock, wait_ready_s=600).run().state.phase == rl.PROMOTED
    assert not [e for e in logs if e["event"] == "preflight.route_changed"]
    assert len([e for e in logs if e["event"] == "metrics.preflight_passed"]) == 1


def test_a_destination_rule_fixed_during_the_wait_is_what_the_next_look_counts(api: Any) -> None:
    """Decision 129: each look of the wait reads the DestinationRule again (`subset_pods`), not the one the
    claim's `inspect` read. Its subsets select `app=rec-model`, which m0's Service (`app=m0`) never has: no
    pod can serve them. Fixed during the wait, the next look counts m0's pods and the rollout starts; with
    the DestinationRule as first read, it waited out --wait-ready and refused."""
    _pod(api, "m0-v2-0", "v2", ready=True)
    clock = FlipClock(2, lambda: _dr_labels(api))
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, wait_ready_s=600).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    (waiting,) = [e for e in logs if e["event"] == "preflight.waiting_for_canary_pods"]
    assert "no pod can have app=m0 (Service) and app=rec-model" in waiting["detail"], waiting
    (ready,) = [e for e in logs if e["event"] == "preflight.canary_pods"]
    assert ready["selector"] == "app=m0,version=v2" and ready["ready"] == 1, ready


def test_the_fenced_router_passes_the_pod_check_through(api: Any) -> None:
    """Decision 121 (h). `FencedRouter` (the controller's, around its router) had no `canary_pods`:
    `check_canary_pods` skips a router without it, silently (a router that is not Kubernetes'). A read, it
    passes through now (decision 124: `subset_pods`, the pod count taking the subset, checked by `check_pods`)."""
    import tenacity

    from canary.fencing import FencedRouter
    from canary.model import Target
    from canary.reconcile import check_pods
    from canary.routing.istio import IstioRouter

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)
    fenced = FencedRouter(IstioRouter(api.api_client(), wait=tenacity.wait_none()), lambda: True)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    with pytest.raises(CanaryNotReady, match="m0-v2-0"):
        check_pods(fenced, target, log=structlog.get_logger())


# ---- decision 124: the stable version's pods are counted the same way --------------------------------------


def test_no_ready_stable_pod_by_the_deadline_moves_nothing_and_names_the_stable(api: Any) -> None:
    """Decision 124. The stable's pods crash-loop (or its Deployment was scaled to 0): the canary would be
    compared with no traffic, and a rollback's stable 100% would send every request to no pod. Promote waits
    --wait-ready for both arms, then StableNotReady (a TransientError: exit 3), naming the stable arm, its
    selector and the pods found; nothing written."""
    from canary.errors import StableNotReady, TransientError

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "m0-v1-0", "v1", ready=False)
    before = (record(api), subsets(api))
    clock = FakeClock()
    with structlog.testing.capture_logs() as logs, pytest.raises(StableNotReady) as got:
        runner(api, "v2", clock, wait_ready_s=60).run()
    text = str(got.value)
    assert isinstance(got.value, TransientError) and not isinstance(got.value, CanaryNotReady)
    assert "stable v1 has no Ready pod after waiting 60s: pods app=m0,version=v1 in namespace ml" in text, text
    assert "m0-v1-0 (Pending, ContainersNotReady)" in text and "nothing was moved" in text, text
    assert "canary v2 has no Ready pod" not in text, text
    assert (record(api), subsets(api)) == before
    assert clock.t - 1_000.0 == pytest.approx(60, abs=5.1)
    (waiting,) = [e for e in logs if e["event"] == "preflight.waiting_for_stable_pods"]
    assert "stable v1" in waiting["detail"], waiting
    assert not [e for e in logs if e["event"] == "preflight.waiting_for_canary_pods"]


def test_a_stable_pod_turning_ready_during_the_wait_starts_the_rollout(api: Any) -> None:
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "m0-v1-0", "v1", ready=False)
    clock = FlipClock(3, lambda: _pod(api, "m0-v1-0", "v1", ready=True))
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, wait_ready_s=600).run()
    assert result.state.phase == rl.PROMOTED, result.state.reason
    assert len([e for e in logs if e["event"] == "preflight.waiting_for_stable_pods"]) == 1
    (stable,) = [e for e in logs if e["event"] == "preflight.stable_pods"]
    assert stable["selector"] == "app=m0,version=v1" and stable["ready"] == 1 and stable["stable_version"] == "v1"
    events = [e["event"] for e in logs]
    assert events.index("preflight.stable_pods") < events.index("rollout.started"), events


def test_neither_arm_ready_is_the_canarys_refusal_naming_both(api: Any) -> None:
    """Both without a Ready pod: CanaryNotReady (the usual wait, its reason kept), the message naming the
    stable too, so one fix is not followed by a second refusal."""
    _dr_labels(api)
    _pod(api, "m0-v1-0", "v1", ready=False)
    with pytest.raises(CanaryNotReady) as got:
        runner(api, "v2", FakeClock(), wait_ready_s=0).run()
    text = str(got.value)
    assert "canary v2 has no Ready pod: pods app=m0,version=v2" in text and "there are none" in text, text
    assert "; and stable v1 has no Ready pod: pods app=m0,version=v1" in text, text
    assert "the stable version serves no one" in text, text


def blind_report(*_: Any, **__: Any) -> Any:
    """A metrics preflight whose stable request count found nothing: blind (decision 110)."""
    from canary.metrics.base import REQUEST_COUNTS, PreflightQuery, PreflightReport

    return PreflightReport(url="fake://", window_s=60, sent=1, elapsed_s=0.0, queries=(
        PreflightQuery(where=REQUEST_COUNTS, check="", arm="stable", query="sum(rate(x[60s]))", series=0),))


def test_a_blind_metrics_preflight_with_no_ready_stable_pod_names_the_pods(api: Any) -> None:
    """Decision 124. A stable with no Ready pod has no series either: the metrics preflight, run first
    (decision 121 f), refused it as bad input (exit 2, "check policy metrics.labels"). Its pods are the
    cause: StableNotReady (exit 3), naming them, the preflight's refusal after; nothing written."""
    from canary.errors import ConfigError, StableNotReady

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "m0-v1-0", "v1", ready=False)
    clock = FakeClock()
    r = runner(api, "v2", clock, wait_ready_s=600)

    r.metrics.preflight = blind_report  # type: ignore[method-assign]
    before = record(api)
    with pytest.raises(StableNotReady) as got:
        r.run()
    text = str(got.value)
    assert text.startswith("stable v1 has no Ready pod: pods app=m0,version=v1"), text
    assert "and so preflight: no stable (v1) data over the last 60s for request counts" in text, text
    assert clock.t == 1_000.0 and record(api) == before
    # with the stable's pods Ready, the refusal is the policy's, as before (exit 2)
    _pod(api, "m0-v1-0", "v1", ready=True)
    r = runner(api, "v2", clock, wait_ready_s=600)
    r.metrics.preflight = blind_report  # type: ignore[method-assign]
    with pytest.raises(ConfigError):
        r.run()


def test_the_stable_is_not_counted_when_the_canary_cannot_be(api: Any) -> None:
    """No RBAC (here: an emulator without pods): one `preflight.pods_unchecked`, the canary's; the stable's
    would be unchecked for the same reason, and is not asked."""
    server = fleet.start_api(1)
    try:
        with structlog.testing.capture_logs() as logs:
            assert runner(server, "v2", FakeClock(), wait_ready_s=600).run().state.phase == rl.PROMOTED
        (said,) = [e for e in logs if e["event"] == "preflight.pods_unchecked"]
        assert said["subset"] == "canary", said
    finally:
        server.stop()


def test_a_rollback_with_no_ready_stable_pod_writes_stable_100_at_once_and_says_so(api: Any) -> None:
    """Decision 124. A rollback never waits for the stable's pods: stable 100% is written at once (the
    canary, failing, must stop getting traffic whatever else is wrong). Once it landed, the stable's pods
    are counted once: none Ready, `rollback.stable_not_ready` says the stable serves no one (503s)."""
    from tests.integration.test_promote_route_safety import routes

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    clock = FlipClock(1, lambda: _pod(api, "m0-v1-0", "v1", ready=False))  # the stable's pods crash mid-rollout
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", clock, slowdown=3.0, wait_ready_s=600).run()
    assert result.state.phase == rl.ROLLED_BACK, result.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    events = [e["event"] for e in logs]
    assert "preflight.waiting_for_stable_pods" not in events, events
    (said,) = [e for e in logs if e["event"] == "rollback.stable_not_ready"]
    assert said["selector"] == "app=m0,version=v1" and "m0-v1-0 (Pending" in said["not_ready"], said
    assert said["stable_version"] == "v1" and said["pods"] == 1, said
    # every request now fails (503): an outage, said at error whatever the rollback's own level (decision 680)
    assert said["log_level"] == "error", said
    assert events.index("rollback.completed") < events.index("rollback.stable_not_ready"), events


def test_a_rollback_with_a_ready_stable_pod_says_nothing_more(api: Any) -> None:
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    with structlog.testing.capture_logs() as logs:
        result = runner(api, "v2", FakeClock(), slowdown=3.0, wait_ready_s=600).run()
    assert result.state.phase == rl.ROLLED_BACK, result.state.reason
    assert not [e for e in logs if e["event"] == "rollback.stable_not_ready"]


def test_the_count_after_a_rollback_is_a_glance_not_four_tries_a_read(api: Any) -> None:
    """Review of decision 124: the stable's pod count after a rollback landed went through the router's
    retries (four tries of 10 s a read, three reads): on a failing API server `canary rollback`, whose
    stable 100% had landed, held its answer about two minutes, and a controller worker as long. It is a
    glance now: each read tried once, and a count that cannot be made says nothing."""
    from types import SimpleNamespace

    from canary.reconcile import _warn_stable_unserved

    _dr_labels(api)
    r = runner(api, "v2", FakeClock())
    api.fail_next(503, times=1_000, methods=("GET",), plural="pods")
    before = api.handler.requests.get(("GET", "pods"), 0)
    with structlog.testing.capture_logs() as logs:
        _warn_stable_unserved(r.router, r.target, SimpleNamespace(stable_version="v1"), log=structlog.get_logger())
    assert api.handler.requests.get(("GET", "pods"), 0) - before == 1
    assert not logs, logs
    # and the wait before a claim still retries its reads (decision 121 b): a glance is the warning's alone
    assert r.router.transient_attempts == 4


def test_a_split_made_on_another_virtual_service_during_the_wait_is_refused_before_the_claim(api: Any) -> None:
    """Decision 578 looked at the other VirtualServices once, before `--wait-ready`'s wait (minutes): a gateway
    VirtualService split 90/10 with the canary subset meanwhile was not seen, since only the driven route is read
    again after the wait, and the claim pointed the canary subset at v2, 10% of the edge traffic on it unjudged.
    Looked at again after a wait now: refused, nothing written (decision 585's addendum)."""
    from canary.errors import TargetError
    from canary.routing.istio import GROUP
    from tests.integration.test_vs_shapes import _gateway_vs

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=False)

    def split_then_ready() -> None:
        _gateway_vs(api, 10)
        _pod(api, "m0-v2-0", "v2", ready=True)
    before = api.get(GROUP, "virtualservices", "ml", "m0"), api.get(GROUP, "destinationrules", "ml", "m0")
    with pytest.raises(TargetError, match=r"^ml/m0-gateway: spec.http\[0\] \(edge\) splits its traffic 90/10"):
        runner(api, "v2", FlipClock(2, split_then_ready), wait_ready_s=600).run()
    assert (api.get(GROUP, "virtualservices", "ml", "m0"), api.get(GROUP, "destinationrules", "ml", "m0")) == before


@pytest.mark.parametrize("track", [False, True], ids=["version only", "track: canary"])
def test_a_rollback_points_the_canary_subset_at_the_stable_only_where_it_would_select_a_ready_pod(
        api: Any, track: bool) -> None:
    """Decision 603's re-pointing of the canary subset (another VirtualService splitting with it at the rollback)
    points its `version` label only: with `track: canary` on it, which the stable's pods lack, it would select no
    pod (that share a 503), and the line would say it reaches the stable version. It is then not pointed, and
    `rollback.canary_subset_kept` says why; with the subsets told apart by `version` alone it is."""
    from tests.integration.test_vs_shapes import _claimed_then_split, _oncall_rollback, subsets

    _dr_labels(api)
    if track:
        api.handler.edit_object("networking.istio.io", "destinationrules", "ml", "m0",
                                lambda dr: dr["spec"]["subsets"][1]["labels"].update(track="canary"))
    router, target = _claimed_then_split(api, 10)
    logs = _oncall_rollback(router, target)
    said = [e["event"] for e in logs if e["event"].startswith("rollback.canary_subset")]
    assert said == ["rollback.canary_subset_kept" if track else "rollback.canary_subset_repointed"], said
    assert subsets(api)["canary"] == ("v3" if track else "v1")
    if track:
        (kept,) = [e for e in logs if e["event"] == "rollback.canary_subset_kept"]
        assert "would select no Ready pod" in kept["error"], kept
        # its hint gives the `kubectl patch` alone: pointing the subset at v1, or `canary rollback` again (refused
        # the same way), was the 503 case the line just refused (decision 660's addendum)
        assert kept["hint"].startswith("kubectl -n ml patch virtualservice m0-gateway") and "point subset" not in \
            kept["hint"] and "canary rollback" not in kept["hint"], kept

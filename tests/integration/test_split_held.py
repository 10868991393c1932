"""A split with the rollout's canary subset made on another VirtualService (the gateway's beside the mesh's) where
602's look did not reach (decisions 656-660): `canary promote` paused or running its gate at 100/0, the controller
without informers, and the controller killed between a rollback's stable-100% write and 603's re-pointing of the
canary subset.

The strict Kubernetes API emulator and the real IstioRouter; promote and the controller on fake metrics and a fake
clock (as test_promote_route_safety.py and tests/support/killpoints.py); every edit injected at a fixed point.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog.testing
import tenacity

from canary import rollout as rl
from canary.logs import get
from canary.model import Target
from canary.routing.istio import IstioRouter
from canary.runner import oncall_action
from tests import fleet
from tests.integration.test_promote_route_safety import GROUP, HookClock, api, record, runner, subsets  # noqa: F401
from tests.integration.test_vs_shapes import _gateway_vs

pytestmark = pytest.mark.integration
VS = "virtualservices"


def _split(api: Any) -> None:
    """The gateway VirtualService `m0-gateway` set 90/10 with m0's subsets."""
    def edit(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["weight"], vs["spec"]["http"][0]["route"][1]["weight"] = 90, 10
    api.edit(GROUP, VS, "ml", "m0-gateway", edit)


def _foreign_split(logs: list[dict[str, Any]], res: Any, api: Any) -> dict[str, Any]:
    """The one `split.foreign_edit` line of a rollout rolled back for the gateway's split, its canary subset
    pointed at the stable version, the gateway never written."""
    assert res.state.phase == rl.ROLLED_BACK and rl.classify_reason(res.state.reason) == "foreign_edit", res.state
    (said,) = [e for e in logs if e["event"] == "split.foreign_edit"]
    assert (said["other_virtual_service"], said["split_weights"]) == ("ml/m0-gateway", "90/10"), said
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    assert [e["event"] for e in logs if e["event"] == "rollback.canary_subset_repointed"] == [
        "rollback.canary_subset_repointed"]
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]
    return said


def test_a_split_made_on_another_virtual_service_while_paused_rolls_back_without_waiting_for_the_resume(
        api: Any) -> None:
    """`canary promote` looked for another VirtualService's split at its looks only: paused by on-call at 80/20, the
    gateway's 90/10 made meanwhile reached the canary unjudged for as long as the pause lasted (rolled back at the
    first look after the resume). Paused, it now looks every `look_every` (one LIST), and rolls back as at a look
    (decision 656)."""
    _gateway_vs(api, 0)
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    split_at: list[float] = []

    def pause() -> None:
        oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                      rl.Pause(clock.now(), "on-call: hold"), log=get())

    def split() -> None:
        split_at.append(clock.now())
        _split(api)
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING, pause))
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PAUSED, split))
    # without the look nothing ends the pause: promote is stopped (a rollback, "interrupted") 120 fake s later
    clock.hooks.append((lambda rec: bool(split_at) and clock.now() > split_at[0] + 120, promote.stop.set))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    said = _foreign_split(logs, res, api)
    assert said["phase"] == rl.PAUSED and res.state.updated_at - split_at[0] <= 3, (said, res.state.updated_at)


class _GatewaySplitDuringWarmUp:
    """A Triton gate that passes: its warm-up splits the gateway VirtualService 90/10, then runs until the rollout's
    record ends, 0.5 fake s a round, the fake clock moving on meanwhile."""

    probe_interval, probe_failures = 1.0, 3

    def __init__(self, api: Any, clock: Any) -> None:
        self.api, self.clock = api, clock

    def preflight(self) -> dict[str, Any]:
        _split(self.api)
        # until the record ends, however slowly the watch's thread is scheduled (a round count bounded it by about
        # 10 s of real time: on a loaded machine the gate could pass first); 120 s only guards against a hang
        give_up = time.monotonic() + 120
        while record(self.api).get("phase") not in rl.TERMINAL and time.monotonic() < give_up:
            self.clock.t += 0.5
            time.sleep(0.01)
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        return True


def test_a_split_made_on_another_virtual_service_while_the_gate_runs_rolls_back_before_any_step(api: Any) -> None:
    """Claimed at 100/0 (its canary subset already on v2) while the Triton gate warms the canary up: the gateway's
    90/10 made meanwhile sent v2 10% of the edge unjudged for the whole warm-up, and the rollout went on to its
    first step, rolled back only at its first look. The gate's watch now looks every `look_every` too: rolled back
    while pending, the gate abandoned, no step written (decision 656)."""
    _gateway_vs(api, 0)
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    promote.gate = _GatewaySplitDuringWarmUp(api, clock)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    said = _foreign_split(logs, res, api)
    assert said["phase"] == rl.PENDING, said
    assert not [e for e in logs if e["event"] in ("gate.passed", "step.advanced")]


# --- the controller killed between a rollback's stable-100% write and 603's re-pointing (decision 657) ---------------

def _controller(api: Any, clock: Any, *, kill_at_rollback: bool = False, version: str = "v3") -> Any:
    """A controller without informers on rollout r0 (v3 60% slower: rolled back at its first step; v2 as fast as the
    stable), on fake metrics that see the cluster's weights; `kill_at_rollback`: "killed" right after its
    rollback's stable-100% write."""
    import kubernetes.client as kc

    from canary.controller import Controller
    from tests.fakes import FakeMetrics
    from tests.support.killpoints import Killed, Killer, KillerCustom, LiveWeights

    class AtRollback(Killer):
        def _wrote(self, what: str) -> None:
            self.log.append(what)
            if what == "weights 100/0 rolled_back":
                self.dead = True
                raise Killed(what)

    client = api.api_client()
    real = IstioRouter(client, wait=tenacity.wait_none())
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version=version)
    metrics = FakeMetrics(LiveWeights(real, target), clock, slowdown=lambda t: 1.6 if version == "v3" else 1.0,
                          rps=1000.0)  # type: ignore[arg-type]
    router: Any = AtRollback(real, None, []) if kill_at_rollback else real
    custom: Any = KillerCustom(kc.CustomObjectsApi(client), router) if kill_at_rollback else kc.CustomObjectsApi(client)
    return Controller(custom=custom, core=kc.CoreV1Api(client), router=router, metrics=metrics, namespace="ml",
                      clock=clock)


def test_a_controller_killed_before_the_canary_subset_was_repointed_repoints_it_at_its_next_start(api: Any) -> None:
    """A controller killed between its rollback's stable-100% write and 603's re-pointing of the canary subset left
    it on the rolled-back v3, and the gateway's 10% with it: only `canary rollback` run again finished it (639).
    The next controller reads the end from the route, its CanaryRollout's status not showing it yet, and looks once
    more: the canary subset pointed at the stable version, the same `rollback.canary_subset_repointed` line, no
    VirtualService written (decision 657)."""
    from canary import crd
    from tests.fakes import FakeClock
    from tests.support.killpoints import Killed

    _gateway_vs(api, 0)
    api.handler.put_object(fleet.rollout_object(0, "v3"))
    clock = FakeClock()
    first = _controller(api, clock, kill_at_rollback=True)
    with pytest.raises(Killed):
        for _ in range(400):
            first.tick()
            clock.sleep(0.5)
    assert record(api)["phase"] == rl.ROLLED_BACK and subsets(api) == {"stable": "v1", "canary": "v3"}
    assert (api.get(crd.GROUP, crd.PLURAL, "ml", "r0").get("status") or {}).get("phase") == rl.PROGRESSING
    _split(api)  # the gateway's 10% now reaches the rolled-back v3
    vs_before = api.get(GROUP, VS, "ml", "m0")
    with structlog.testing.capture_logs() as logs:
        _controller(api, clock, kill_at_rollback=False).tick()
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    (moved,) = [e for e in logs if e["event"] == "rollback.canary_subset_repointed"]
    assert (moved["other_virtual_service"], moved["split_weights"]) == ("ml/m0-gateway", "90/10"), moved
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]["phase"] == rl.ROLLED_BACK
    assert api.get(GROUP, VS, "ml", "m0") == vs_before
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]


# --- the controller without informers (decision 658) ----------------------------------------------------------------

def test_the_controller_without_informers_finds_a_split_made_on_another_virtual_service_mid_rollout(api: Any) -> None:
    """602's look in the controller read its informers' cache, and without informers (a tick that LISTs) it did not
    look at all: the gateway's 90/10 made while v2 ran rode along unjudged, and v2 was promoted on the mesh's data.
    It now reads the tick's prefetch (its LIST of the namespace's VirtualServices: no other read), and rolls the
    rollout back as a foreign edit, the canary subset re-pointed (decision 658)."""
    from canary import crd
    from tests.fakes import FakeClock

    _gateway_vs(api, 0)
    api.handler.put_object(fleet.rollout_object(0, "v2"))
    clock = FakeClock()
    op = _controller(api, clock, version="v2")

    def phase() -> str:
        return (api.get(crd.GROUP, crd.PLURAL, "ml", "r0").get("status") or {}).get("phase", "")
    split = False
    with structlog.testing.capture_logs() as logs:
        for _ in range(400):
            op.tick()
            if phase() == rl.PROGRESSING and not split:  # its first step: 80/20, the gateway's 100/0 seen at the claim
                _split(api)
                split = True
            if phase() in rl.TERMINAL:
                break
            clock.sleep(0.5)
    status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
    assert (status["phase"], status.get("endCause")) == (rl.ROLLED_BACK, "foreign_edit"), status
    (said,) = [e for e in logs if e["event"] == "split.foreign_edit"]
    assert (said["other_virtual_service"], said["split_weights"], said["phase"]) == (
        "ml/m0-gateway", "90/10", rl.PROGRESSING), said
    assert subsets(api) == {"stable": "v1", "canary": "v1"}


def test_a_failed_rollback_write_for_a_split_found_while_the_gate_runs_is_not_said_as_the_gates_failure(
        api: Any) -> None:
    """The gate's watch looked for the gateway's split outside the guard that hands the watch's failures on (decision
    148): the rollback's write refused (an admission webhook's 403) escaped the watch into the gate's own `except`,
    said `gate.failed` with the write's words and rolled back "gate failed" (`end_cause` of a gate). Handed on as the
    watch's now: no `gate.failed`, and the end the split decided is the one written (decision 689)."""
    from canary.sandbox import kubeapi

    _gateway_vs(api, 0)
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    promote.gate = _GatewaySplitDuringWarmUp(api, clock)
    real, refused = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        # the first write of m0 once the gateway splits: the split's rollback, refused
        split = api.get(GROUP, VS, "ml", "m0-gateway")["spec"]["http"][0]["route"][1]["weight"] == 10
        if split and not refused and method in ("PUT", "PATCH") and request.url.path.endswith("/virtualservices/m0"):
            refused.append(request.url.path)
            raise kubeapi.ApiError(403, "Forbidden", "injected: denied by an admission webhook")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert refused, "the split's rollback write was never refused"
    assert not [e for e in logs if e["event"] == "gate.failed"], [e for e in logs if e["event"] == "gate.failed"]
    assert res.state.phase == rl.ROLLED_BACK and rl.classify_reason(res.state.reason) == "foreign_edit", res.state


# --- a split on the other VirtualService that a rollout in progress there made (decision 690) ----------------------

def test_the_canary_subset_of_a_rollout_in_progress_on_the_other_virtual_service_is_never_repointed(
        api: Any) -> None:
    """603's re-pointing (and 639's and 657's second chances) took any split with the canary subset on another
    VirtualService for a share nobody judges: where it is the split of a rollout in progress recorded there (it
    claimed the gateway's route once m0's rollback had written stable 100%: a `canary promote` while the controller
    that rolled m0 back was down, 657's window), the canary subset is that rollout's, and pointed at v1 its canary
    was judged on the stable's pods and promoted without evidence. Not pointed now, said why (decision 690)."""
    from canary import rollout as rl
    from canary.model import Weights
    from canary.reconcile import canary_subset_home
    from canary.routing.patch import STATE_ANNOTATION

    api.edit(GROUP, "destinationrules", "ml", "m0",
             lambda dr: dr["spec"]["subsets"][1]["labels"].update(version="v3"))
    ended = fleet.rolled_back(version="v3")
    fleet.record(api, "m0", ended)
    _gateway_vs(api, 10)
    theirs = rl.RolloutState(model="m0", stable_version="v1", canary_version="v3", phase=rl.PROGRESSING,
                             weights=Weights(90, 10), step=0, started_at=5.0, step_started_at=5.0, route="edge",
                             updated_at=5.0, owner="promote#ci-7:1:n")
    fleet.record(api, "m0-gateway", theirs)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v3")
    text = api.get(GROUP, VS, "ml", "m0")["metadata"]["annotations"][STATE_ANNOTATION]
    with structlog.testing.capture_logs() as logs:
        pointed = canary_subset_home(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target, ended,
                                     log=get(), record=text)
    assert not pointed and subsets(api) == {"stable": "v1", "canary": "v3"}
    (left,) = [e for e in logs if e["event"].startswith("rollback.canary_subset_")]
    assert left["event"] == "rollback.canary_subset_left" and left["other_virtual_service"] == "ml/m0-gateway", left
    assert "v3 (progressing)" in left["note"] and "kubectl" not in left["note"] + left["hint"], left

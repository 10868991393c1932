"""Every VirtualService write refused for a while (an Istio validation webhook down answers 500 to each),
with the controller on its informers' cache as `canary controller run` is (seventh session's attack,
decision 133), against the strict API emulator and a real (backfilled) Prometheus. The failure budget
(decision 14: transient failures of a split rollout's ticks for 30 s end it at stable 100%) restarted at
every tick: `_advance` reads only the cache, so it went through, and only the look's write failed. The
canary kept 20% for as long as the webhook was down, no stable-100% write was tried and nobody was paged:
two `rollout.tick_failed` warnings in 70 s. Every try of every write answered 409 (someone else keeps
editing the VirtualService) was worse: a RoutingConflict, as if another writer had recorded a decision, so
nothing was counted at all (`rollout.changed_outside`, info, at every look), and a stable-100% write that
met it was `rollback.write_conflict` ("nobody need act by hand")."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
from structlog.testing import capture_logs

from canary import controller as controller_mod
from canary import rollout as rl
from tests.integration.test_controller_watch import ISTIO, caught_up, create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration


def _weights(api: Any) -> list[int]:
    return [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


def at_first_step(api: Any, op: Any, clock: Any) -> None:
    """CanaryRollout r0 (v2 on m0) driven by the controller `op` until its canary has 20%, the informers
    caught up."""
    create(api, 0, "v2")
    for _ in range(30):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _weights(api)[1] > 0:
            break
    assert _weights(api) == [80, 20]
    caught_up(api, op)


@pytest.mark.parametrize("code", [500, 409], ids=["500 (a webhook down)", "409 on every try (someone keeps editing)"])
def test_a_split_rollout_whose_look_writes_keep_failing_goes_to_stable_and_pages(world: Any, code: int) -> None:
    api, op, custom, clock = world
    op.router.wait = tenacity.wait_none()  # the router's own retries: no real waits between them
    at_first_step(api, op, clock)
    api.fail_next(code, times=10**6, methods=("PUT",), plural="virtualservices")
    start = clock.t
    with capture_logs() as logs:
        for _ in range(60):  # 60 s of the controller's clock, a tick a second
            op.tick()
            clock.t += 1.0
    api.handler.faults.clear()
    assert _weights(api) == [80, 20]  # nothing could be written
    tried = [e for e in logs if e["event"] == "rollout.aborting"]
    assert tried, [(e["event"], e.get("error")) for e in logs if e["log_level"] != "info"]
    assert [e for e in logs if e["event"] == "rollback.retrying"]
    paged = [e for e in logs if e["log_level"] == "critical"]
    assert [e["event"] for e in paged] == ["rollback.failed"], [e["event"] for e in paged]
    assert "canary rollback m0 -n ml --virtual-service m0" in paged[0]["hint"]
    assert paged[0]["failing_for_s"] >= controller_mod.ROLLBACK_PAGE_AFTER_S
    # not before the failure budget: the first stable-100% attempt came FAILURE_BUDGET_S after the first failure
    assert op._stable_failing["ml/r0"].since - start >= controller_mod.FAILURE_BUDGET_S - 1


@pytest.mark.parametrize("meanwhile", ["nothing", "another leader wrote"])
def test_the_failure_budgets_stable_100_stands_when_the_api_answers_again(world: Any, meanwhile: str) -> None:
    """Decision 135 (the attack's leftover). The failure budget decided stable 100% and paged; its write
    failed while the VirtualService writes were refused. When they were answered again, the decided end was
    dropped (`_unconfirmed` popped and ignored while the route still recorded the rollout in progress), the
    rollout went on judging, and could reach its promotion after the page had said stable 100%. Now the
    decided end stands: the first tick that can write writes it (`rollout.end_stands`), before any look."""
    api, op, custom, clock = world
    op.router.wait = tenacity.wait_none()
    at_first_step(api, op, clock)
    api.fail_next(500, times=10**6, methods=("PUT",), plural="virtualservices")
    with capture_logs() as logs:
        for _ in range(60):
            op.tick()
            clock.t += 1.0
    assert [e for e in logs if e["event"] == "rollback.failed"]  # paged: stable 100% was decided
    api.handler.faults.clear()  # the webhook is back
    if meanwhile != "nothing":  # the record changed since the decision (another replica led and looked): not stale
        import json

        def touched(vs: dict[str, Any]) -> None:
            ann = vs["metadata"]["annotations"]
            rec = json.loads(ann["modelcanary.dev/rollout"])
            ann["modelcanary.dev/rollout"] = json.dumps({**rec, "updated_at": rec["updated_at"] + 1})
        api.edit(ISTIO, "virtualservices", "ml", "m0", touched)
    with capture_logs() as logs:
        for _ in range(30):
            step(api, op, clock)
            if _weights(api) == [100, 0]:
                break
    if meanwhile != "nothing":
        assert not [e for e in logs if e["event"] == "rollout.end_stands"]
        return
    assert _weights(api) == [100, 0], [(e["event"], e.get("phase"), e.get("error", "")[:80]) for e in logs if e["event"] != "metrics.query_ok"]
    assert status(api, "r0").get("phase") == rl.ABORTED, status(api, "r0")
    stands = [e for e in logs if e["event"] == "rollout.end_stands"]
    assert len(stands) == 1 and stands[0]["target_phase"] == rl.ABORTED, [e["event"] for e in logs]
    # as routed (the split it ends), never an ended phase beside a split (decision 676's addendum)
    assert stands[0]["phase"] == rl.PROGRESSING and stands[0]["weights"] != "100/0", stands[0]
    assert stands[0]["target_weights"] == "100/0" and stands[0]["end_cause"] == "infrastructure", stands[0]
    looks = [i for i, e in enumerate(logs) if e["event"] == "look.completed"]
    assert not looks or looks[0] > logs.index(stands[0])  # no look judged before the decided end was written


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded (controller, promote's fail-safe)", "canary rollback"])
def test_a_409_storm_on_the_stable_subset_before_the_weights_pages_and_moves_nothing(guarded: bool) -> None:
    """The review of decision 133. A rollback from PROMOTING points the stable subset back before it writes
    the weights. Something rewrote the DestinationRule at every change (a GitOps self-heal): every try met 409,
    a ConflictStorm. Guarded, `_point` took it for another writer's decision (the warning
    `rollback.write_conflict`, "nobody need act"), at every tick, while the canary served all traffic; unguarded
    it paged "the weights send 100% to the stable subset", which were never written. Now it is a failed write
    that wrote nothing: the page says so, and the weights are untouched."""
    from canary.errors import RollbackFailed
    from canary.logs import get
    from canary.model import Target, Weights
    from canary.reconcile import Retry, to_stable
    from canary.routing.istio import IstioRouter
    from tests import fleet

    api = fleet.start_api(1)
    try:
        router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
        t = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
        promoting = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                                    weights=Weights(0, 100), step=2, started_at=1.0, updated_at=1.0, owner="promote/x")
        router.point_subset(t, "canary", "v2")
        router.point_subset(t, "stable", "v2")  # a promotion half-way: the stable subset on the new version
        router.set_weights(t, Weights(0, 100), state=promoting.to_json())
        api.fail_next(409, times=10**6, methods=("PUT", "PATCH"), plural="destinationrules")
        with capture_logs() as logs, pytest.raises(RollbackFailed) as got:
            to_stable(router, t, promoting, reason="failed: the look's write", log=get(), now=2.0, budget_s=0.0,
                      expect=promoting.to_json() if guarded else ..., retry=Retry(page=True))
        api.handler.faults.clear()
        assert "nothing was written" in str(got.value), str(got.value)
        pages = [e for e in logs if e["log_level"] == "critical"]
        assert [e["event"] for e in pages] == ["rollback.failed"], [(e["event"], e["log_level"]) for e in logs]
        assert "nothing was written" in pages[0]["error"] and "100% to the stable subset" not in str(pages[0])
        assert not [e for e in logs if e["event"] == "rollback.write_conflict"]
        vs = api.get(ISTIO, "virtualservices", "ml", "m0")
        assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [0, 100]  # as they were
    finally:
        api.stop()

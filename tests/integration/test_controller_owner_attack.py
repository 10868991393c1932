"""One owner per rollout (decision 60) under a third attacker: a deletion tick whose VirtualService
read fails, a twin whose waited-on rollout the route has moved past, a 409 storm on an unguarded
stable write, two claimants ending one orphan, and a CR edited while none of its status landed.
Against the strict API emulator and a real Prometheus."""
from __future__ import annotations

import time
from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.errors import RoutingConflict
from canary.logs import get as get_logger
from canary.reconcile import parse_state, to_stable
from tests import fleet
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, run_until_done, vs, world  # noqa: F401
from tests.integration.test_controller_owner import _twin, _ready
from tests.integration.test_controller_review import _cr
from tests.integration.test_controller_owner_review import claimed_without_status

pytestmark = pytest.mark.integration


def _create(custom: Any, obj: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)


def test_a_failed_read_on_deletion_keeps_the_finalizer_until_stable(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in test_a_cr_deleted_before_any_status_landed_..., but the VirtualService reads answer 500 in the
    deletion tick: the finalizer stays (it went, leaving 80/20 undriven); the next tick sends stable."""
    api, op, custom = world
    claimed_without_status(op, custom, api, monkeypatch)
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    ctl = _fresh(op)
    api.fail_next(500, times=30, methods=("GET",), plural="virtualservices")
    ctl.tick()
    api.handler.faults.clear()
    assert _cr(custom, "r0") is not None, "finalizer gone, route left split, undriven"
    ctl.tick()
    assert _cr(custom, "r0") is None and vs(api, 0)[0] == [100, 0]




def test_a_twin_ends_untouched_though_the_route_moved_past_the_rollout_it_waited_on(world: Any, tmp_path: Any) -> None:
    """twin waits on r0's v3; `next` (v2) waits too. r0's v3 is rolled back and `next` claims the route
    before twin's turn: twin still ends untouched (it claimed v3 again once next had ended)."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    _create(custom, _twin("twin"))
    _create(custom, _twin("next", "v2"))
    op.tick()
    assert _ready(_cr(custom, "twin")).get("reason") == "RolloutBusy"
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.ROLLED_BACK
    run_until_done(op, custom, ["next"])
    most = 0
    for _ in range(8):
        op.tick()
        w, rec = vs(api, 0)
        if rec["canary_version"] == "v3":
            most = max(most, w[1])
    tw = (_cr(custom, "twin") or {}).get("status") or {}
    assert tw.get("phase") == rl.ABORTED and tw.get("reason", "").startswith("not run: run by CanaryRollout ml/r0"), tw
    assert most == 0, "v3 (rolled back while twin waited on it) back on the canary"


def test_an_unguarded_stable_write_meeting_a_409_storm_is_critical(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every PUT of an unguarded stable-100% write meets 409: nobody recorded a decision and traffic stays
    split, so it is the critical `rollback.failed` ("act by hand"), never the warning write_conflict."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    assert vs(api, 0)[0][1] > 0
    state = parse_state(op.router.inspect(op._known["ml/r0"].spec.target))
    api.fail_next(409, times=1000, methods=("PUT",), plural="virtualservices")
    with structlog.testing.capture_logs() as logs, pytest.raises(RoutingConflict):
        to_stable(op.router, op._known["ml/r0"].spec.target, state, reason="failed: x", log=get_logger(), now=time.time(),
                  attempts=1, budget_s=0)
    api.handler.faults.clear()
    assert any(e["event"] == "rollback.failed" for e in logs), "no critical rollback.failed: traffic still split"


def test_ending_an_orphan_never_overwrites_another_claimants_rollout(world: Any) -> None:
    """r0's v3 is orphaned; `aaa` and `zzz` (v2) wait on m0, each on its own shard. While zzz's shard asks
    the API whether r0 exists, aaa's ends the orphan and starts its rollout. zzz's stable write is
    guarded on the record it read: aaa's live rollout stands (an unguarded write overwrote it)."""
    from canary.controller import Controller
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"metadata": {"finalizers": None}})
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    _create(custom, _twin("aaa", "v2"))
    _create(custom, _twin("zzz", "v2"))
    mk = lambda name: Controller(custom=op.custom, core=op.core, router=op.router, metrics=op.metrics, batch=op.batch,
                                 namespace="ml", owns=lambda obj, n=name: obj["metadata"]["name"] == n)
    op_a, op_z = mk("aaa"), mk("zzz")
    orig = op_z._orphaned

    def racing(owner: str) -> bool:
        _progressing(op_a, custom, api, name="aaa")  # shard A runs meanwhile
        return orig(owner)

    op_z._orphaned = racing  # type: ignore[method-assign]
    op_z.tick()
    op_z._orphaned = orig  # type: ignore[method-assign]
    w, rec = vs(api, 0)
    for _ in range(3):
        op_a.tick()
    st = (_cr(custom, "aaa") or {}).get("status") or {}
    assert rec["owner"].split("#")[0] == "CanaryRollout ml/aaa", "aaa's live rollout was overwritten by a non-owner"


@pytest.mark.parametrize("deleted", [True, False], ids=["deleted", "ticked"])
def test_a_cr_edited_before_any_status_landed_sends_its_claim_to_stable(world: Any, monkeypatch: pytest.MonkeyPatch,
                                                                         deleted: bool) -> None:
    """r0 claims v3 (80/20) while its status writes fail; it is edited to v2, and then deleted or just
    ticked by a fresh controller. Its own claim, found by the route's owner, goes to stable first (the
    finalizer went with v3 at 20%; ticked, it was RolloutBusy naming itself)."""
    api, op, custom = world
    claimed_without_status(op, custom, api, monkeypatch)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"canaryVersion": "v2"}})
    if deleted:
        custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
        _fresh(op).tick()
        assert _cr(custom, "r0") is None and vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["canary_version"] == "v3"
        return
    monkeypatch.undo()
    ctl = _fresh(op)
    ctl.tick()
    record = vs(api, 0)[1]
    assert record["canary_version"] == "v2" or (record["canary_version"] == "v3" and vs(api, 0)[0] == [100, 0]), record
    assert run_until_done(ctl, custom, ["r0"], version="v2")["r0"]["status"]["phase"] == rl.PROMOTED

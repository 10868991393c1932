"""One owner per rollout (decision 60) under what two fresh attackers found: a waiting twin that
loses its mark (edited, or one failed tick), a CR deleted before any status of its landed, a
rollout whose CanaryRollout is gone, promote's fail-safe on a route taken over, a CR created
paused, and an on-call rollback of a paused rollout. Against the strict API emulator and a real
Prometheus."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canary import crd
from canary import rollout as rl
from canary.cli import app
from canary.errors import KubeUnavailable
from canary.logs import get as get_logger
from canary.model import Target
from canary.runner import Runner, oncall_action
from tests import fleet
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, run_until_done, vs, world  # noqa: F401
from tests.integration.test_controller_owner import _damage, _ended_untouched, _ready, _twin
from tests.integration.test_controller_review import _cr

pytestmark = pytest.mark.integration


def _create(custom: Any, obj: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)


def _canary_share_while(op: Any, api: Any, ticks: int) -> int:
    """The largest canary weight on m0 over `ticks` ticks."""
    most = 0
    for _ in range(ticks):
        op.tick()
        most = max(most, vs(api, 0)[0][1])
    return most


@pytest.mark.parametrize("edit", [{"actionReason": "hold on"}, {"action": "pause"}, None],
                         ids=["edited", "edited-to-pause", "restarted"])
def test_a_waiting_twin_ends_untouched_however_it_was_edited_or_restarted(world: Any, edit: dict | None) -> None:
    """twin is refused (RolloutBusy) while r0 runs v3; then edited (a new generation) or the controller
    restarts. r0's v3 is rolled back on evidence: twin ends untouched. Edited, it claimed m0 and put
    v3 back on 20% (its mark was a Ready condition kept for generation 1 only)."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    _create(custom, _twin("twin"))
    op.tick()
    if edit is not None:
        custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "twin", {"spec": edit})
        op.tick()
    ctl = op if edit is not None else _fresh(op)
    assert run_until_done(ctl, custom, ["r0"])["r0"]["status"]["phase"] == rl.ROLLED_BACK
    assert _canary_share_while(ctl, api, 6) == 0
    _ended_untouched(ctl, custom, "r0")


def test_a_waiting_twin_keeps_its_mark_through_a_failed_tick(world: Any, tmp_path: Any) -> None:
    """One 500 on the twin's policy ConfigMap replaces its RolloutBusy condition; on-call then rolls r0's
    v3 back. The twin does not claim v3 (it did, at 20%, the next tick)."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pol", "namespace": "ml"},
                            "data": {"policy.yaml": yaml.safe_dump(fleet.FAST_POLICY)}})
    twin = _twin("twin")
    del twin["spec"]["policy"]
    twin["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    _create(custom, twin)
    op.tick()
    assert _ready(_cr(custom, "twin")).get("reason") == "RolloutBusy"
    api.fail_next(500, times=1, methods=("GET",), plural="configmaps")
    op.tick()
    kc = fleet.write_kubeconfig(tmp_path / "kc", api.url)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc), "--reason", "pager"])
    assert res.exit_code == 0 and vs(api, 0)[0] == [100, 0], res.output
    assert _canary_share_while(op, api, 4) == 0
    assert (_cr(custom, "twin") or {})["status"]["phase"] == rl.ABORTED


def _status_writes_fail(op: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(obj: Any, status: Any) -> None:
        raise KubeUnavailable("CanaryRollout status: HTTP 500")

    monkeypatch.setattr(op, "_patch_status", down)


def claimed_without_status(op: Any, custom: Any, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """r0 claims m0 and moves 20% to v3 while every status write of its fails: its status shows nothing."""
    _create(custom, fleet.rollout_object(0, "v3"))
    _status_writes_fail(op, monkeypatch)
    for _ in range(4):
        op.tick()
        if vs(api, 0)[0][1] > 0:
            break
    assert vs(api, 0)[0][1] > 0 and not (_cr(custom, "r0") or {}).get("status", {}).get("target")


def test_a_cr_deleted_before_any_status_landed_sends_its_own_split_to_stable(world: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """r0 claims m0 and moves 20% to v3 while every status write fails; the controller restarts and r0
    is deleted. The route's record names r0 (uid and all): stable 100% before the finalizer goes (it
    went at once, leaving 80/20 with nobody to drive it)."""
    api, op, custom = world
    claimed_without_status(op, custom, api, monkeypatch)
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    _fresh(op).tick()
    assert _cr(custom, "r0") is None and vs(api, 0)[0] == [100, 0]
    assert vs(api, 0)[1]["phase"] == rl.ABORTED


def test_a_rollout_whose_canary_rollout_is_gone_goes_to_stable_and_the_route_is_free(world: Any) -> None:
    """r0 runs v3; its finalizer is removed by hand and it is deleted: 80/20 with nobody driving it. A
    CR for v2 on m0 finds the owner gone (read from the API): stable 100% (`orphaned: ...`), then it
    claims the route (it stayed RolloutBusy, naming an object that no longer existed)."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"metadata": {"finalizers": None}})
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert _cr(custom, "r0") is None and vs(api, 0)[0][1] > 0
    nxt = _twin("next", "v2")
    _create(custom, nxt)
    op.tick()
    record = vs(api, 0)[1]
    assert record["canary_version"] == "v2" and record["owner"].startswith("CanaryRollout ml/next#"), record
    objs = run_until_done(op, custom, ["next"])
    assert objs["next"]["status"]["phase"] == rl.PROMOTED


def test_promotes_fail_safe_leaves_a_route_another_owner_took_over_alone(world: Any) -> None:
    """promote runs v2; on-call rolls it back and CanaryRollout r0 claims v2. SIGTERM reaches promote
    before its watch sees that: its guarded write conflicts, and the fail-safe's unguarded stable-100%
    wrote `aborted` over r0's rollout. Now promote ends taken over, exit 3, and writes nothing."""
    api, op, custom = world
    policy = crd.parse(fleet.rollout_object(0, "v2")).policy
    t = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    cli = Runner(policy=policy, target=t, router=op.router, metrics=op.metrics, watch_every=3600)
    state = cli._preflight(cli._start())
    assert state.phase == rl.PROGRESSING and vs(api, 0)[1]["owner"] == cli.owner
    oncall_action(op.router, replace(t, stable_version="v1"), rl.Rollback(time.time(), "pager"),
                  log=get_logger(component="cli"))
    _create(custom, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = api.get(GROUP, "virtualservices", "ml", "m0")
    cli._start = lambda: state  # type: ignore[method-assign]  # run() going on in the same process
    cli._next_watch = time.time() + 3600
    cli.stop.set()  # SIGTERM
    res = cli.run()
    assert res.exit_code == 3 and res.state.reason.startswith("taken over: "), res.state.reason
    assert api.get(GROUP, "virtualservices", "ml", "m0") == before


def test_a_cr_created_paused_moves_no_traffic_until_resumed(world: Any) -> None:
    """`spec.action: pause` on a new CR: nothing is claimed (it moved 20% to the canary, then paused);
    its Ready condition says so; clearing the action starts it."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(1, "v2", action="pause", actionReason="hold"))
    for _ in range(3):
        op.tick()
    vs1 = api.get(GROUP, "virtualservices", "ml", fleet.model(1))
    assert [d["weight"] for d in vs1["spec"]["http"][0]["route"]] == [100, 0]
    assert "modelcanary.dev/rollout" not in (vs1["metadata"].get("annotations") or {})
    assert _ready(_cr(custom, "r1")).get("reason") == "PausedBeforeStart"
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r1", {"spec": {"action": ""}})
    assert run_until_done(op, custom, ["r1"])["r1"]["status"]["phase"] == rl.PROMOTED


def test_a_paused_rollout_rolled_back_by_hand_over_a_damaged_record_stays_rolled_back(world: Any,
                                                                                      tmp_path: Any) -> None:
    """Paused r0, a damaged record, on-call's rollback (a fresh record), a restart, then `action: resume`:
    stable keeps 100% and r0 shows rolled_back."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"action": "pause"}})
    op.tick()
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.PAUSED
    api.edit(GROUP, "virtualservices", "ml", "m0", _damage)
    kc = fleet.write_kubeconfig(tmp_path / "kc", api.url)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc), "--reason", "pager"])
    assert res.exit_code == 0, res.output
    ctl = _fresh(op)
    assert _canary_share_while(ctl, api, 3) == 0
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"action": "resume"}})
    assert _canary_share_while(ctl, api, 3) == 0
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ROLLED_BACK


def test_pause_set_while_pending_holds_at_100_0(world: Any) -> None:
    """`spec.action: pause` set while the rollout is claimed but has no traffic (pending): it stays at
    100/0 (Begin moved 20% to the canary, then the pause applied)."""
    api, op, custom = world
    _create(custom, fleet.rollout_object(0, "v3"))
    for _ in range(5):
        op.tick()
        if ((_cr(custom, "r0") or {}).get("status") or {}).get("phase") == rl.PENDING:
            break
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.PENDING and vs(api, 0)[0] == [100, 0]
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "pause", "actionReason": "hold it"}})
    for _ in range(3):
        op.tick()
        assert vs(api, 0)[0] == [100, 0]
    assert _ready(_cr(custom, "r0")).get("reason") == "PausedBeforeStart"


def test_a_cr_created_with_rollback_ends_unrun_claiming_nothing(world: Any) -> None:
    """`spec.action: rollback` on a new CR: it ends `aborted`, "not run", without claiming the route or
    re-pointing the canary subset (it claimed, pointed the subset, and recorded a rollback of a
    rollout that never ran)."""
    api, op, custom = world
    dr = api.get(GROUP, "destinationrules", "ml", "m0")
    _create(custom, fleet.rollout_object(0, "v3", action="rollback", actionReason="not this one"))
    for _ in range(3):
        op.tick()
    obj = _cr(custom, "r0") or {}
    assert obj["status"]["phase"] == rl.ABORTED and obj["status"]["reason"].startswith("not run: spec.action is "
                                                                                      "rollback (not this one)")
    m0 = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (m0["metadata"].get("annotations") or {})
    assert api.get(GROUP, "destinationrules", "ml", "m0")["spec"] == dr["spec"]
    assert not obj["metadata"].get("finalizers")

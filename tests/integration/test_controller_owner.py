"""Who runs a rollout: the route's record names its owner (`RolloutState.owner`: `CanaryRollout
<namespace>/<name>`, or `promote`), so a second CanaryRollout naming the same VirtualService and
canary version, or a `canary promote` of that version, neither judges it with its own policy nor
sends it to stable when deleted. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.errors import RolloutBusy
from canary.logs import get as get_logger
from canary.model import Target
from canary.reconcile import PROMOTE_OWNER, execute
from canary.runner import Runner
from tests import fleet
from tests.integration.test_controller import GROUP, _progressing, prometheus, run_until_done, vs, world  # noqa: F401
from tests.integration.test_controller_review import _cr

pytestmark = pytest.mark.integration


def _twin(name: str, version: str = "v3") -> dict[str, Any]:
    """A CanaryRollout like r0 (VirtualService m0) under another name."""
    obj = fleet.rollout_object(0, version)
    obj["metadata"]["name"] = name
    return obj


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def test_a_second_cr_on_the_same_route_and_version_is_busy_and_its_deletion_leaves_the_rollout_alone(world: Any) -> None:
    """r0 runs v3 on m0; `twin` names m0 and v3 too. twin neither adopts r0's rollout (it did: both
    judged it, each with its own policy) nor, deleted, sends it to stable (it did: 'CanaryRollout
    deleted mid-rollout' rolled r0's good canary back). r0 then ends as its own policy says."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    assert vs(api, 0)[1]["owner"] == "CanaryRollout ml/r0"
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    split = vs(api, 0)[0]
    for _ in range(2):
        op.tick()
    twin = _cr(custom, "twin") or {}
    ready = _ready(twin)
    assert ready.get("reason") == "RolloutBusy" and "CanaryRollout ml/r0" in ready.get("message", ""), ready
    assert not (twin.get("status") or {}).get("phase") and not (twin.get("status") or {}).get("startedAt")
    weights, record = vs(api, 0)
    assert record["owner"] == "CanaryRollout ml/r0" and record["phase"] == rl.PROGRESSING and weights[1] >= split[1] > 0
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "twin")
    op.tick()
    assert _cr(custom, "twin") is None
    weights, record = vs(api, 0)
    assert record["phase"] == rl.PROGRESSING and weights[1] > 0, (weights, record)
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")


def _ended_untouched(twin: dict[str, Any], owner: str) -> None:
    """The twin, which waited while `owner` ran its version, ended without running it again (it then
    put traffic on v3, just rolled back, a second time), and says so."""
    st = twin.get("status") or {}
    assert st["phase"] == rl.ABORTED and not st.get("startedAt"), st
    assert st["reason"].startswith(f"not run: run by CanaryRollout ml/{owner}, the rollout of v3 on ml/m0 ended "), st
    assert not (twin["metadata"].get("finalizers") or [])


def test_a_twin_created_while_a_rollout_ran_ends_with_it_and_one_created_after_runs(world: Any) -> None:
    """Created while r0 ran v3, `twin` ends when r0's rollout ends (untouched); `later`, created after,
    is a new request and runs v3 itself."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    objs = run_until_done(op, custom, ["r0", "twin"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")
    _ended_untouched(objs["twin"], "r0")
    time.sleep(1.1)  # creationTimestamp has whole seconds: `later` is created after r0's rollout ended
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("later"))
    objs = run_until_done(op, custom, ["later"])
    assert objs["later"]["status"]["phase"] == fleet.expected_phase("v3") and objs["later"]["status"]["startedAt"]
    assert vs(api, 0)[1]["owner"] == "CanaryRollout ml/later"


def test_a_cli_promotes_rollout_is_not_adopted_by_a_cr_nor_a_crs_by_promote(world: Any) -> None:
    """A rollout `canary promote` started is RolloutBusy for a CanaryRollout of the same version (the
    controller used to adopt it: two judges, two policies); and `canary promote` refuses to resume a
    rollout a CanaryRollout runs (nothing is written)."""
    api, op, custom = world
    router, log = op.router, get_logger(component="cli")
    t3 = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v3")
    policy = crd.parse(fleet.rollout_object(0, "v3")).policy
    s, actions = rl.new_rollout(model="m0", stable_version="v1", canary_version="v3", now=time.time(), owner=PROMOTE_OWNER)
    s = execute(router, t3, s, actions, log=log)
    s, actions = rl.transition(s, rl.Begin(time.time()), policy)
    execute(router, t3, s, actions, log=log)
    before = api.get(GROUP, "virtualservices", "ml", "m0")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    op.tick()
    ready = _ready(_cr(custom, "r0"))
    assert ready.get("reason") == "RolloutBusy" and "`canary promote`" in ready.get("message", ""), ready
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"] == before["spec"]

    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v3"))
    _progressing(op, custom, api, "r1", 1)
    m1 = api.get(GROUP, "virtualservices", "ml", "m1")
    t1 = Target(namespace="ml", virtual_service="m1", model="m1", stable_version="", canary_version="v3")
    cli = Runner(policy=policy, target=t1, router=router, metrics=op.metrics)
    with pytest.raises(RolloutBusy, match="CanaryRollout ml/r1"):
        cli._start()
    assert api.get(GROUP, "virtualservices", "ml", "m1") == m1


def test_a_record_without_owner_is_adopted_only_by_the_cr_whose_status_started_it(world: Any) -> None:
    """A rollout recorded before owners were (an upgrade mid-rollout): r0, whose status says it started
    that rollout, drives it on and records itself as owner; a twin of the same version does not."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)

    def strip(o: dict[str, Any]) -> None:
        rec = json.loads(o["metadata"]["annotations"]["modelcanary.dev/rollout"])
        del rec["owner"]
        o["metadata"]["annotations"]["modelcanary.dev/rollout"] = json.dumps(rec)

    api.edit(GROUP, "virtualservices", "ml", "m0", strip)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    op.tick()
    assert _ready(_cr(custom, "twin")).get("reason") == "RolloutBusy"
    objs = run_until_done(op, custom, ["r0", "twin"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")
    assert vs(api, 0)[1].get("owner") == "CanaryRollout ml/r0"  # recorded at its next write
    _ended_untouched(objs["twin"], "r0")

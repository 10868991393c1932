"""The route's own objects deleted by hand mid-rollout (seventh session's attack, decision 133), against the
strict API emulator and a real (backfilled) Prometheus: the VirtualService, or the DestinationRule, of a
rollout whose canary has traffic. A VirtualService gone: the same process wrote stable 100% to it at every
tick for ever (`rollout.aborting` and `rollback.retrying` each tick), paged with a `canary rollback` that
cannot work either, and its CanaryRollout said `progressing 80/20` for ever. A DestinationRule gone: the
route went to stable 100% and recorded `aborted`, but the CanaryRollout said `progressing 80/20` for ever."""

from __future__ import annotations

import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _delete(api: Any, plural: str, name: str) -> None:
    """`kubectl delete` of a route object (no finalizers: gone at once)."""
    with api.handler.lock:
        key = (GROUP, plural, "ml", name)
        api.handler._delete(key, api.handler.objects[key])


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}


def _ticks(op: Any, clock: FakeClock, n: int) -> None:
    for _ in range(n):
        clock.t += 1.0
        op.tick()


@pytest.mark.parametrize("process", ["same process", "restarted"])
def test_a_virtual_service_deleted_mid_rollout_ends_the_rollout_with_one_critical_line(world: Any,
                                                                                        process: str) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _delete(api, "virtualservices", "m0")
    if process == "restarted":
        op = _fresh(op)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 30)  # past the 20 s after which a failing stable-100% write pages
        writes = len(api.writes)
        _ticks(op, clock, 5)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and st["weights"] == {"stable": 100, "canary": 0}, st
    assert "VirtualService m0 is gone" in st["reason"]
    assert st["endCause"] == "foreign_edit", st  # a person's edit of the routing, as promote says (decision 666)
    assert api.writes[writes:] == []  # ended: nothing more is tried
    loud = [e for e in logs if e["log_level"] in ("error", "critical")]
    assert [e["event"] for e in loud] == ["rollout.route_deleted"], [(e["event"], e.get("error")) for e in loud]
    line = loud[0]
    assert line["log_level"] == "critical" and line["from_weights"] == "80/20" and line["end_cause"] == "foreign_edit"
    assert {"rollout": "ml/r0", "namespace": "ml", "virtual_service": "m0", "canary_version": "v2"}.items() <= line.items()
    assert "re-create the VirtualService" in line["hint"] and "canary rollback" not in line["hint"]
    assert not [e for e in logs if e["event"] in ("rollback.retrying", "rollout.aborting")]


def test_a_destination_rule_deleted_mid_rollout_ends_at_stable_and_the_status_says_so(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _delete(api, "destinationrules", "m0")
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 5)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and st["weights"] == {"stable": 100, "canary": 0}, st
    assert "destinationrules" in st["reason"] and st["reason"] == record["reason"]
    # a person's edit of the routing, as its VirtualService deleted or a subset removed from it (decision 681)
    assert st["endCause"] == "foreign_edit", st
    writes = len(api.writes)
    _ticks(op, clock, 3)
    assert api.writes[writes:] == []  # settled: the CanaryRollout costs nothing more


@pytest.mark.parametrize(("message", "gone"), [
    ("ml/m0 (virtualservices): not found (NotFound)", True),
    ("failed: ml/m0 (virtualservices): not found (NotFound)", True),
    ("ml/m0-x (virtualservices): not found (NotFound)", False),
    ("xml/m0 (virtualservices): not found (NotFound)", False),
    ("ml/m0 (destinationrules): not found (NotFound)", False),
])
def test_only_the_rollouts_own_virtual_service_is_its_route_deleted(message: str, gone: bool) -> None:
    """The review of decision 133: a 404 of VirtualService ml/m0-x (or xml/m0) was taken for ml/m0's own, and
    the rollout on ml/m0 was ended as its route deleted, paging `rollout.route_deleted`."""
    from canary.controller import _vs_gone
    from canary.errors import NotFound
    from canary.model import Target

    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    assert _vs_gone(NotFound(message), target) is gone


@pytest.mark.parametrize("shared", [False, True], ids=["its own VirtualService", "m1's route added beside"])
def test_a_destination_rule_re_hosted_mid_rollout_ends_at_stable_on_its_own_route_alone(world: Any,
                                                                                       shared: bool) -> None:
    """m0's DestinationRule edited into m1's (host m1) while the controller's rollout runs at 80/20 on the only
    route it claimed (with m1's route added beside it since, or not). Decision 523 wrote nothing: the rollout
    left at 80/20 with no end recorded (`traffic.unsafe`). Now the controller's end writes stable 100% on m0's
    own route, records the end, and refuses only the rule's pointing, in one line saying how to mend it; m1's
    route and both rules are left as they are (decision 644)."""
    import copy

    from tests.integration.test_promote_route_safety import _copy_pasted  # m1's rule applied over m0's

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    if shared:
        host = "m1.ml.svc.cluster.local"
        theirs = {"name": "other-model", "match": [{"uri": {"prefix": "/v2/models/m1"}}],
                  "route": [{"destination": {"host": host, "subset": "stable"}, "weight": 50},
                            {"destination": {"host": host, "subset": "canary"}, "weight": 50}]}
        api.edit(GROUP, "virtualservices", "ml", "m0", lambda v: v["spec"]["http"].append(copy.deepcopy(theirs)))
    other_rule = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m1"))
    api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 5)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, (weights, record)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and st["weights"] == {"stable": 100, "canary": 0}, st
    if shared:
        assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][1] == theirs
    assert api.get(GROUP, "destinationrules", "ml", "m1") == other_rule
    assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
        {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]  # as edited: never pointed
    assert not [e for e in logs if e["event"] == "traffic.unsafe"], logs
    said = [e for e in logs if "kubectl edit destinationrule m0 -n ml" in str(e.get("error", ""))]
    assert said, [(e["event"], e.get("error")) for e in logs if e["log_level"] in ("warning", "error", "critical")]
    # the route's subsets now resolve under no rule of its host: every request fails (503, NR), the outage a deleted
    # rule makes, and paged as it is, once (it was warnings only, a note saying to check the subset's version: 649)
    page = [e for e in logs if e["event"] == "rollout.destination_rule_elsewhere"]
    assert len(page) == 1 and page[0]["log_level"] == "error" and page[0]["traffic"] == "failing", page
    assert "kubectl edit destinationrule m0 -n ml" in page[0]["hint"], page
    retrying = [e for e in logs if e["event"] == "rollback.retrying"]
    assert retrying and all("kubectl edit destinationrule m0 -n ml" in e["note"] for e in retrying), retrying


def test_a_rule_re_hosted_while_promoting_ends_at_stable_on_a_restarted_controller(world: Any) -> None:
    """A controller killed between its promotion's 0/100 (PROMOTING recorded) and its pointing of the stable subset,
    m0's rule re-hosted to m1 meanwhile: the restarted controller's end had to point the stable subset back before
    its weights, which 644 refuses, so every tick said `rollout.aborting`, `rollback.retrying` ("nothing was
    written") and `rescue.failed`, 0/100 left recorded `promoting` (every request failing, 503 NR) and no end, never
    the page. Now that pointing is left for the one after the weights: stable 100% and the end recorded in one tick,
    the page once (decision 662)."""
    from tests.integration.test_promote_route_safety import _copy_pasted, promoting

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", "m0", promoting)
    api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)
    op = _fresh(op)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 5)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and (record["phase"], record["end_cause"]) == (rl.ABORTED, "foreign_edit"), record
    assert _status(custom)["phase"] == rl.ABORTED
    assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
        {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]  # never pointed
    page = [e for e in logs if e["event"] == "rollout.destination_rule_elsewhere"]
    assert len(page) == 1 and page[0]["log_level"] == "error", page
    assert len([e for e in logs if e["event"] == "rollout.aborting"]) == 1, [e["event"] for e in logs]
    # the page alone at error level: no `rescue.failed` saying the next tick tries again, which it does not (665)
    loud = [e["event"] for e in logs if e["log_level"] in ("error", "critical")]
    assert loud == ["rollout.destination_rule_elsewhere"], loud


def test_a_destination_rule_deleted_mid_rollout_is_paged_once_by_a_restarted_controller(world: Any) -> None:
    """A restarted controller (nothing of the rollout in memory) rescues a rollout whose DestinationRule was deleted
    at 80/20: stable 100% and the end land, the stable subset's pointing finds the rule gone, and the executor pages
    `rollout.destination_rule_deleted`. `rescue.failed` beside it ("the next tick tries again; `canary rollback`
    acts now") was a second page with a false promise: the next tick tries nothing, and that rollback exits 3 until
    the rule is restored (decision 665, its deleted-rule case)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _delete(api, "destinationrules", "m0")
    op = _fresh(op)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 5)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, record
    loud = [e["event"] for e in logs if e["log_level"] in ("error", "critical")]
    assert loud == ["rollout.destination_rule_deleted"], [(e["event"], e.get("error")) for e in logs
                                                          if e["log_level"] in ("error", "critical")]

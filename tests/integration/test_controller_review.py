"""The controller's stable-100% paths under what a review of them found (thirteenth session): a
CanaryRollout deleted with its policy's ConfigMap, or while that ConfigMap read fails; a route that
another rollout took over while this process remembered its own; a CR moved to another
VirtualService and DestinationRule; a VirtualService that is gone. Each test is one kind of fault,
against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import time
from typing import Any

import kubernetes.client as kc
import pytest
import yaml

from canary import crd
from canary import rollout as rl
from canary.controller import FINALIZER
from canary.logs import get as get_logger
from canary.model import Target
from canary.reconcile import execute, parse_state, to_stable
from tests import fleet
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _cr(custom: Any, name: str) -> dict[str, Any] | None:
    try:
        return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name)  # type: ignore[no-any-return]
    except kc.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _with_policy_ref(api: Any, custom: Any) -> None:
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pol", "namespace": "ml"},
                            "data": {"policy.yaml": yaml.safe_dump(fleet.FAST_POLICY)}})
    obj = fleet.rollout_object(0, "v3")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)


@pytest.mark.parametrize("policy_read", ["fails once (500)", "deleted with the CR"])
def test_a_cr_deleted_mid_rollout_needs_no_policy_to_send_stable_100(world: Any, policy_read: str) -> None:
    """The CR's policy lives in a ConfigMap that is deleted with it (`kubectl delete -f dir/`) or cannot
    be read at that moment: the rollback needs only what the status records (it logged
    rollback.impossible, dropped the finalizer, and the canary kept 20% for ever)."""
    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    assert (_cr(custom, "r0") or {})["metadata"]["finalizers"] == [FINALIZER]
    if policy_read.startswith("deleted"):
        kc.CoreV1Api(op.core.api_client).delete_namespaced_config_map("pol", "ml")
    else:
        api.fail_next(500, times=1, methods=("GET",), plural="configmaps")
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["reason"] == "CanaryRollout deleted mid-rollout"
    assert _cr(custom, "r0") is None


def test_a_route_another_rollout_took_over_is_left_alone_by_a_stale_memory(world: Any) -> None:
    """r0 runs v3 on m0; between two ticks on-call rolls it back and a CLI promote of v2 claims m0 and
    reaches its first step. r0's next tick fails (RolloutBusy) with v3 still in this process's memory:
    the CLI's rollout is not undone (an unguarded stable-100% write overwrote it)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    router, log = op.router, get_logger(component="cli")
    t3 = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v3")
    state3 = parse_state(router.inspect(t3))
    assert state3 is not None
    to_stable(router, t3, state3, reason="on-call: canary rollback", log=log, now=time.time())
    t2 = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    policy = crd.parse(fleet.rollout_object(0, "v2")).policy
    s, actions = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=time.time(), route="")
    s = execute(router, t2, s, actions, log=log)
    s, actions = rl.transition(s, rl.Begin(time.time()), policy)
    execute(router, t2, s, actions, log=log)
    assert vs(api, 0)[1]["canary_version"] == "v2" and vs(api, 0)[0][1] > 0
    op.tick()
    weights, record = vs(api, 0)
    assert record["canary_version"] == "v2" and record["phase"] == rl.PROGRESSING and weights[1] > 0


def test_a_cr_moved_to_another_destination_rule_rolls_back_the_old_one_only(world: Any) -> None:
    """r0 (VirtualService and DestinationRule m0, named) runs v3; m1's stable subset selects v7. The spec
    moves to m1/m1: m0 goes to stable, and DestinationRule m1 keeps v7 (the rescue re-pointed it at v1)."""
    api, op, custom = world
    api.edit(GROUP, "destinationrules", "ml", "m1",
             lambda o: next(s for s in o["spec"]["subsets"] if s["name"] == "stable")["labels"].__setitem__("version", "v7"))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v3", destinationRule="m0"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"virtualService": "m1", "destinationRule": "m1"}})
    op.tick()
    stable_m1 = next(s for s in api.get(GROUP, "destinationrules", "ml", "m1")["spec"]["subsets"] if s["name"] == "stable")
    assert stable_m1["labels"]["version"] == "v7"
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED


def test_one_rollout_that_cannot_be_rescued_never_stops_the_others(world: Any) -> None:
    """After a restart, r0's VirtualService is gone while its status says progressing; r1 runs on m1.
    Every tick of the new process still reaches r1 (each used to die on r0, before any look)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v2"))
    _progressing(op, custom, api, "r1", 1)
    _progressing(op, custom, api, "r0", 0)
    kc.CustomObjectsApi(op.core.api_client).delete_namespaced_custom_object(GROUP, "v1beta1", "ml", "virtualservices", "m0")
    fresh = _fresh(op)
    for _ in range(3):
        fresh.tick()  # never raises
    assert "ml/r1" in fresh._known  # r1 was read and decided in every tick
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ABORTED  # nothing split is left: said so


def test_a_cr_whose_virtual_service_is_gone_can_still_be_deleted(world: Any) -> None:
    """Nothing is split once the VirtualService is gone (helm uninstall): the finalizer goes at once
    (it held the CR for ever, logging rollback.failed every tick)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    kc.CustomObjectsApi(op.core.api_client).delete_namespaced_custom_object(GROUP, "v1beta1", "ml", "virtualservices", "m0")
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    op.tick()
    assert _cr(custom, "r0") is None


def test_naming_the_destination_rule_a_cr_already_drives_is_no_edit(world: Any) -> None:
    """`destinationRule: m0` written out, or removed, on a CR whose VirtualService is m0: the same
    DestinationRule, so the rollout goes on (it was aborted as superseded); naming another host's ends it."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", destinationRule="m0"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"destinationRule": None}})
    op.tick()
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING and vs(api, 0)[0][1] > 0
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"destinationRule": "m1"}})
    op.tick()  # another host's DestinationRule: the old rollout ends at stable either way
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED


def test_a_restarted_controller_sends_stable_100_when_the_policy_is_gone(world: Any) -> None:
    """After a restart, a CR mid-rollout whose policyRef ConfigMap was deleted: its tick fails before
    the state is read, and its policy cannot be read either; stable 100% needs neither (it stayed
    80/20, logging rescue.failed every tick)."""
    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    kc.CoreV1Api(op.core.api_client).delete_namespaced_config_map("pol", "ml")
    fresh = _fresh(op)
    fresh.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ABORTED

"""A stable-100% write decided on the informer's copy of a route (a watch behind the API) is guarded
on the record that copy held: a route that an on-call rollback and a `canary promote` took over
meanwhile is left alone (decision 60, fourth review). With watches, against the strict API
emulator."""
from __future__ import annotations

import time
from typing import Any

import kubernetes.client as kc
import pytest

from canary import crd
from canary import rollout as rl
from canary.logs import get as get_logger
from canary.model import Target
from canary.reconcile import PROMOTE_OWNER
from canary.routing.istio import IstioRouter
from canary.runner import oncall_action
from tests import fleet
from tests.integration.test_controller_owner import promote_claims
from tests.integration.test_controller_watch import (ISTIO, caught_up, create, prometheus, settled, status, step,  # noqa: F401
                                                     until, world)

pytestmark = pytest.mark.integration


def _vs(api: Any) -> tuple[list[int], dict[str, Any]]:
    import json
    o = api.get(ISTIO, "virtualservices", "ml", "m0")
    return [d["weight"] for d in o["spec"]["http"][0]["route"]], json.loads(o["metadata"]["annotations"]["modelcanary.dev/rollout"])


def _taken_over_behind_a_lagging_watch(api: Any, op: Any, clock: Any) -> None:
    """r0 runs v3 at 80/20; the VirtualService watch then lags (events not delivered), and meanwhile
    on-call rolls r0 back and a `canary promote` claims m0 for v2 and moves 20%."""
    create(api, 0, "v3")
    for _ in range(15):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _vs(api)[0][1] > 0:
            break
    assert _vs(api)[0][1] > 0
    op.informers.routes["virtualservices"]._event = lambda event: None  # type: ignore[method-assign]
    cli = IstioRouter(api.api_client(), wait=None)
    log = get_logger(component="cli")
    t1 = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v3")
    oncall_action(cli, t1, rl.Rollback(time.time(), "pager"), log=log)
    promote_claims(cli, "v2", log=log)
    w, rec = _vs(api)
    assert rec["owner"] == PROMOTE_OWNER and w[1] > 0, (w, rec)


def test_a_deleted_cr_judged_on_a_stale_cache_leaves_a_route_taken_over_alone(world: Any) -> None:
    """r0 runs v3 and its VirtualService watch lags; on-call rolls it back and promote claims v2. r0
    is deleted: the deletion's stable write, checked on the cached route, wrote r0's aborted record
    over promote's live rollout."""
    api, op, custom, clock = world
    _taken_over_behind_a_lagging_watch(api, op, clock)
    w, rec = _vs(api)
    assert rec["owner"] == PROMOTE_OWNER and w[1] > 0, (w, rec)
    # r0 is deleted; its controller sees the deletion (the CR watch is fine)
    kc.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    until(lambda: bool((op.informers.rollouts.get("ml", "r0") or {}).get("metadata", {}).get("deletionTimestamp"))
          and settled(op), "deletion seen, and reported (else the tick had nothing due and the test passed vacuously)")
    op.tick()
    w, rec = _vs(api)
    assert rec["owner"] == PROMOTE_OWNER and rec["canary_version"] == "v2", \
        f"promote's live v2 rollout overwritten by a deleted CR: {w} {rec['owner']} {rec['canary_version']} {rec['phase']}"


def test_a_failed_tick_judged_on_a_stale_cache_leaves_a_route_taken_over_alone(world: Any) -> None:
    """As above, but r0's policy is edited into a ConfigError (a failure sending stable 100% at once)."""
    api, op, custom, clock = world
    _taken_over_behind_a_lagging_watch(api, op, clock)
    # someone breaks r0's policy (a ConfigError: non-transient, stable at once)
    c = kc.CustomObjectsApi(api.api_client())
    c.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                     {"spec": {"policy": {"analysis": {"interval": "bogus"}}}})
    until(lambda: (op.informers.rollouts.get("ml", "r0") or {}).get("spec", {}).get("policy", {}).get("analysis", {}).get("interval") == "bogus"
          and settled(op), "edit seen, and reported")
    op.tick()
    w, rec = _vs(api)
    assert rec["owner"] == PROMOTE_OWNER and rec["canary_version"] == "v2", \
        f"promote's live v2 rollout overwritten: {w} {rec['owner']} {rec['canary_version']} {rec['phase']} {rec.get('reason')}"

"""Decisions a controller replica takes from what it remembers must be checked against what the API
server holds now: another replica may have led meanwhile and ended the rollout, another writer may
have ended it, the CanaryRollout may be another object of the same name. Each test is one kind of
stale memory, against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary import controller as controller_mod
from canary import crd
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from tests import fleet
from tests.integration.test_controller import (GROUP, _fresh, _progressing, prometheus, run_until_done,  # noqa: F401
                                               vs, world)

pytestmark = pytest.mark.integration


def _stable_subset(api: Any, name: str) -> str:
    dr = api.get(GROUP, "destinationrules", "ml", name)
    return str([s["labels"]["version"] for s in dr["spec"]["subsets"] if s["name"] == "stable"][0])


def _route_writes(api: Any) -> list[tuple[str, str, int]]:
    return [w for w in api.handler.writes if "/virtualservices/" in w[1] or "/destinationrules/" in w[1]]


def _ready(custom: Any, name: str) -> dict[str, Any]:
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name)["status"]
    return next(c for c in st["conditions"] if c["type"] == "Ready")


@pytest.mark.parametrize("failure", ["invalid policy", "prometheus down at the preflight"])
def test_a_replica_leading_again_never_undoes_what_another_promoted(world: Any, failure: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A runs r0 (v2) to 80/20 and loses the lease; B promotes it (stable subset -> v2); r0 is edited
    to v3, and A, leading again, fails r0's tick (an invalid policy; Prometheus down at the claim's
    preflight, past the failure budget). A's memory (progressing 80/20) is a lease term behind: it
    used to write an `aborted` record and re-point the stable subset back at v1, demoting the
    promoted model. Now nothing is written to the route and the failure is reported."""
    api, a, custom = world
    monkeypatch.setattr(controller_mod, "FAILURE_BUDGET_S", 0.0)  # a transient failure acts at once
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(a, custom, api)
    b = _fresh(a)  # A's lease lapsed (A never ticked meanwhile): B leads and promotes
    run_until_done(b, custom, ["r0"])
    assert vs(api, 0)[1]["phase"] == rl.PROMOTED and _stable_subset(api, "m0") == "v2"
    edit: dict[str, Any] = {"canaryVersion": "v3"}
    if failure == "invalid policy":
        bad = copy.deepcopy(fleet.FAST_POLICY)
        bad["steps"] = [50, 10, 100]
        edit["policy"] = bad
    else:
        dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
        a.metrics, a.batch = dead, BatchMetrics(dead)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": edit})
    before = len(_route_writes(api))
    a.tick()
    a.tick()
    assert _route_writes(api)[before:] == []
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.PROMOTED and _stable_subset(api, "m0") == "v2"
    ready = _ready(custom, "r0")
    assert ready["status"] == "False"
    assert ("steps" in ready["message"]) if failure == "invalid policy" else ready["reason"] == "MetricsUnavailable"


def test_memory_of_a_deleted_canary_rollout_is_not_its_namesakes(world: Any) -> None:
    """A remembers r0 (uid 1) at 80/20; r0 is deleted (another replica sends stable 100% and drops
    the finalizer) and created again under the same name (uid 2) with an invalid policy. A's failure
    path must not act on the memory of the other object: nothing is written to the route."""
    api, a, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(a, custom, api)
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    _fresh(a).tick()  # another replica: stable 100%, finalizer gone, the object with it
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED
    _, aborted = vs(api, 0)
    bad = fleet.rollout_object(0, "v3")
    bad["spec"]["policy"]["steps"] = [50, 10, 100]
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, bad)
    before = len(_route_writes(api))
    a.tick()
    assert _route_writes(api)[before:] == [] and vs(api, 0)[1] == aborted
    assert "steps" in _ready(custom, "r0")["message"]

"""A finished CanaryRollout's finalizer is released by the controller on watches that ended it.

`modelcanary.dev/stable-on-delete` is on a CanaryRollout from before its claim until its rollout ends
(docs/reference/controller.md, "Deleting a CanaryRollout or its objects mid-rollout"; decision 56): then a
deletion needs nothing of the controller. With informers (`canary
controller run`) the end's status write is the controller's own, put in its cache at once, so no
watch event wakes the rollout, and a finished rollout is due only on a change: the finalizer stayed
for ever, and the CanaryRollout deleted while no controller ran (uninstalled, scaled to zero, its CRD
deleted) hung in Terminating. Against the strict API emulator and a real Prometheus, with watches."""

from __future__ import annotations

from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.controller import FINALIZER
from tests import fleet
from tests.integration.test_controller_watch import create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", ["v2", "v3"], ids=["promoted", "rolled back"])
def test_a_rollout_ended_on_watches_releases_its_finalizer(world: Any, version: str) -> None:
    api, op, custom, clock = world
    create(api, 0, version)
    for _ in range(100):
        step(api, op, clock)
        if status(api, "r0").get("phase") in rl.TERMINAL:
            break
    assert status(api, "r0")["phase"] == fleet.expected_phase(version)
    for _ in range(3):  # the status mirrors the end; the next tick releases the finalizer
        step(api, op, clock)
    obj = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")
    assert FINALIZER not in (obj["metadata"].get("finalizers") or []), obj["metadata"]
    assert op.queue.due_at("ml/r0") is None or op.queue.due_at("ml/r0") == float("inf")  # nothing more to do
    # deleted with no controller running: gone at once, nothing held
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0") is None

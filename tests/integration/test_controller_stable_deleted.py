"""The controller on a route whose stable destination was deleted by hand mid-rollout (decision 219's shared
stable-100% write, through the controller): every request goes to the canary, and the controller must end
the rollout with the stable destination back at 100, never leave the canary serving all traffic. Against the
strict API emulator and a real Prometheus."""

from __future__ import annotations

from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import GROUP, _progressing, prometheus, world  # noqa: F401

pytestmark = pytest.mark.integration


def test_the_controller_gives_a_route_whose_stable_destination_was_deleted_its_stable_destination_back(
        world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)

    def drop_stable(o: dict[str, Any]) -> None:
        o["spec"]["http"][0]["route"] = [d for d in o["spec"]["http"][0]["route"]
                                         if d["destination"]["subset"] != "stable"]
    api.edit(GROUP, "virtualservices", "ml", fleet.model(0), drop_stable)
    for _ in range(40):
        op.tick()
        st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
        if st.get("phase") in rl.TERMINAL:
            break
    assert st.get("phase") in (rl.ABORTED, rl.ROLLED_BACK), st
    route = api.get(GROUP, "virtualservices", "ml", fleet.model(0))["spec"]["http"][0]["route"]
    weights = {d["destination"]["subset"]: d.get("weight") for d in route}
    assert weights.get("stable") == 100 and not weights.get("canary"), route
    assert all(d["destination"]["host"] == fleet.model(0) for d in route), route

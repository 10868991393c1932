"""What a failed tick of a CanaryRollout edited mid-rollout is said as (decision 820): its lines name the rollout
whose traffic is split, not the edited spec's. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import structlog.testing

from canary import crd
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _patch_spec(custom: Any, patch: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": patch})


def _typo() -> dict[str, Any]:
    bad = copy.deepcopy(fleet.FAST_POLICY)
    bad["checks"][0]["max_incrase_pct"] = bad["checks"][0].pop("max_increase_pct")
    return bad


def _ends(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("rollout.aborting", "rollout.aborted")]


REFUSED_EDITS = {  # the edit (refused), what `rollout.invalid`'s `edit` says, its `asked_model`
    "another model, virtualService given empty": ({"model": "m1", "virtualService": ""},
                                                  "spec.model changed from m0 to m1", "m1"),
    "another canary version with a policy typo": ({"canaryVersion": "v3", "policy": _typo()},
                                                  "spec.canaryVersion changed from v2 to v3", None),
    "another VirtualService with a policy typo": ({"virtualService": "m1", "policy": _typo()},
                                                  "spec.virtualService changed from m0 to m1", None),
}


@pytest.mark.parametrize("edit", list(REFUSED_EDITS))
def test_a_refused_edits_lines_name_the_rollout_whose_traffic_is_split(world: Any, edit: str) -> None:
    """r0 runs v2 on m0 at 80/20; its spec is edited mid-rollout to one refused. `rollout.invalid` named the edited
    spec's model, VirtualService and canary version (m1, v3): on-call read of a rollout that never ran, and nothing of
    m0, whose split the same tick sent to stable 100%. It names m0's rollout, as the end's lines do, and says what
    the edit asks for (`edit`, `asked_model`)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    patch, said, asked_model = REFUSED_EDITS[edit]
    _patch_spec(custom, patch)
    with structlog.testing.capture_logs() as logs:
        op.tick()
    invalid = [e for e in logs if e["event"] == "rollout.invalid"]
    assert len(invalid) == 1, [e["event"] for e in logs]
    line = invalid[0]
    assert (line["model"], line["virtual_service"], line["canary_version"]) == ("m0", "m0", "v2"), line
    assert said in line["edit"] and line.get("asked_model") == asked_model, line
    ends = _ends(logs)
    assert ends and all((e["model"], e["virtual_service"], e["end_cause"]) == ("m0", "m0", "operator") for e in ends)
    assert vs(api, 0)[0] == [100, 0]

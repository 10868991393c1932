"""What a failed tick of a CanaryRollout edited mid-rollout is said as, and whose end it is (decisions 820, 821,
amending 801): its lines name the rollout whose traffic is split (not the edited spec's), and an error is the
edit's only where it is about what the edit changed. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import GROUP, _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}


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


def _rename_route(o: dict[str, Any]) -> None:
    o["spec"]["http"][0]["name"] = "primary-renamed"


# a failure of the tick, and the class its end has with or without an edit of the spec the same tick
NOT_THE_EDITS = {
    "its DestinationRule deleted": (lambda api: kc.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
        GROUP, "v1beta1", "ml", "destinationrules", "m0"), "foreign_edit"),
    "its route renamed": (lambda api: api.edit(GROUP, "virtualservices", "ml", "m0", _rename_route), "foreign_edit"),
}


@pytest.mark.parametrize("failure", list(NOT_THE_EDITS))
def test_a_failure_an_edit_did_not_cause_keeps_its_own_class(world: Any, failure: str) -> None:
    """r0 at 80/20; the same tick meets its spec edited (spec.actionReason: nothing the rollout drives, nor its
    policy) and a failure of something else: the rollout's DestinationRule deleted, its route renamed. Any
    ConfigError of an edited generation was the edit's: `reason: the spec edited mid-rollout is refused: ...`,
    `end_cause: operator`, on-call told to fix a spec nothing was wrong with. The end is the failure's, as it is
    without the edit (`failed: ...`, its own class)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    act, cause = NOT_THE_EDITS[failure]
    act(api)
    _patch_spec(custom, {"actionReason": "ticket 42: latency dashboard"})
    with structlog.testing.capture_logs() as logs:
        op.tick()
    ends = _ends(logs)
    assert ends, [(e["event"], e.get("error")) for e in logs]
    for e in ends:
        assert e["end_cause"] == cause and e["reason"].startswith("failed: "), e
    op.tick()  # (a DestinationRule gone: the end landed, its status is confirmed at the next tick, decision 665)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and st["endCause"] == cause, (st.get("reason"), st.get("endCause"))


def test_an_edit_to_a_destination_rule_that_does_not_exist_is_still_the_edits(world: Any) -> None:
    """The other side of the same rule: the failure is about what the edit changed (the DestinationRule it names
    now cannot be read): the edit's end, saying the edit."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _patch_spec(custom, {"destinationRule": "m0-none", "actionReason": "move to the new rule"})
    with structlog.testing.capture_logs() as logs:
        op.tick()
    ends = _ends(logs)
    assert ends and all(e["end_cause"] == "operator" for e in ends), ends
    assert ends[-1]["reason"].startswith(f"{rl.REFUSED_EDIT} (the DestinationRule changed from m0 to m0-none): ")
    assert vs(api, 0)[0] == [100, 0]

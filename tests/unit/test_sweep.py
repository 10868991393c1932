"""Which rollouts `canary sweep` and the controller's sweep end: nobody drives them (`canary.sweep`)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from canary import rollout as rl
from canary.model import Weights
from canary.reconcile import promote_owner
from canary.sweep import ABANDON_GRACE_S, UNKNOWN_HEARTBEAT_S, abandoned_after, scan, why_abandoned

NOW = 1_000_000.0
PROMOTE = promote_owner("ci-runner-7:4026531836:4242:ab12")
CR = "CanaryRollout ml/r0#uid-1"


def _rec(owner: str = PROMOTE, *, age_s: float = 0.0, heartbeat_s: float = 60.0, phase: str = rl.PROGRESSING,
         weights: Weights = Weights(80, 20)) -> rl.RolloutState:
    return rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=phase, weights=weights,
                           step=0, owner=owner, heartbeat_s=heartbeat_s, started_at=NOW - 3600,
                           updated_at=NOW - age_s)


def _never(owner: str) -> bool:
    raise AssertionError(f"asked about {owner}")


def test_a_promote_is_abandoned_only_after_three_of_its_looks_and_the_grace() -> None:
    limit = abandoned_after(_rec())
    assert limit == 3 * 60 + ABANDON_GRACE_S == 300
    assert why_abandoned(_rec(age_s=limit), NOW, _never) is None
    why = why_abandoned(_rec(age_s=limit + 1), NOW, _never)
    assert why is not None and why.startswith("abandoned: run by `canary promote` (ci-runner-7:")
    assert "last wrote this rollout 301s ago" in why and "60s apart" in why and "stable 100%" in why


def test_the_owners_own_look_interval_sets_the_limit() -> None:
    """A promote looking every 5 minutes is not abandoned after 6; one looking every second is after 3."""
    slow, fast = _rec(heartbeat_s=300.0, age_s=360.0), _rec(heartbeat_s=1.0, age_s=130.0)
    assert why_abandoned(slow, NOW, _never) is None
    assert why_abandoned(fast, NOW, _never) is not None


def test_a_promote_record_without_a_heartbeat_gets_a_long_one() -> None:
    rec = _rec(heartbeat_s=0.0, age_s=3 * UNKNOWN_HEARTBEAT_S + ABANDON_GRACE_S - 1)
    assert why_abandoned(rec, NOW, _never) is None
    why = why_abandoned(replace(rec, updated_at=rec.updated_at - 2), NOW, _never)
    assert why is not None and "its look interval was not recorded" in why


@pytest.mark.parametrize("phase", [rl.PAUSED, rl.PENDING, rl.PROMOTED, rl.ROLLED_BACK, rl.ABORTED])
def test_paused_pending_and_ended_rollouts_are_left_alone(phase: str) -> None:
    """Paused: a person holds the split on purpose. Pending: stable still has 100%. Ended: nothing to do."""
    assert why_abandoned(_rec(age_s=10**6, phase=phase), NOW, lambda owner: True) is None


@pytest.mark.parametrize("phase", [rl.PROGRESSING, rl.PROMOTING])
def test_a_split_or_a_promotion_half_done_is_ended(phase: str) -> None:
    rec = _rec(age_s=10**4, phase=phase, weights=Weights(0, 100) if phase == rl.PROMOTING else Weights(80, 20))
    assert why_abandoned(rec, NOW, _never) is not None


def test_a_canaryrollouts_rollout_is_ended_only_when_the_api_says_it_is_gone() -> None:
    asked: list[str] = []

    def gone(answer: bool) -> Any:
        return lambda owner: asked.append(owner) or answer

    fresh = _rec(CR, age_s=10**6)  # the controller's records are not judged by age: it may be down
    assert why_abandoned(fresh, NOW, gone(False)) is None
    why = why_abandoned(fresh, NOW, gone(True))
    assert why is not None and why.startswith("orphaned: CanaryRollout ml/r0 no longer exists") and "#uid" not in why
    assert asked == [CR, CR]


def test_a_record_with_no_owner_is_left_alone() -> None:
    """Written by a version that did not record owners: nothing tells whether something runs it."""
    assert why_abandoned(_rec("", age_s=10**6), NOW, lambda owner: True) is None


def _vs(name: str, rec: rl.RolloutState | str | None, ns: str = "ml") -> dict[str, Any]:
    ann = {} if rec is None else {"modelcanary.dev/rollout": rec if isinstance(rec, str) else rec.to_json()}
    return {"metadata": {"namespace": ns, "name": name, "annotations": ann}, "spec": {}}


def test_scan_finds_abandoned_rollouts_in_the_callers_share_and_skips_unreadable_records() -> None:
    stale, live = _rec(age_s=10**4), _rec(age_s=1.0)
    vss = [_vs("a", stale), _vs("b", live), _vs("c", None), _vs("d", "{not json"), _vs("e", json.dumps({"x": 1})),
           _vs("f", stale, ns="other")]
    found = scan(vss, NOW, _never)
    assert [(f.key, f.reason.split(":")[0]) for f in found] == [("ml/a", "abandoned"), ("other/f", "abandoned")]
    assert found[0].text == stale.to_json(), "the write must be guarded on the record as read"
    assert [f.key for f in scan(vss, NOW, _never, owns=lambda key: key.startswith("other/"))] == ["other/f"]


def test_the_target_is_the_recorded_route_and_destination_rule() -> None:
    rec = replace(_rec(age_s=10**4), route="primary", destination_rule="m0-dr")
    t = scan([_vs("m0", rec)], NOW, _never)[0].target()
    assert (t.namespace, t.virtual_service, t.route, t.dr_name, t.stable_version, t.canary_version) == \
        ("ml", "m0", "primary", "m0-dr", "v1", "v2")
    legacy = scan([_vs("m0", _rec(age_s=10**4))], NOW, _never)[0].target()
    assert legacy.dr_name == "m0", "a record without its DestinationRule: the VirtualService's name"

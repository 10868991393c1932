"""A split of this rollout's version under another version's record (decision 143 d).

A VirtualService manifest exported with `kubectl get -o yaml` in the middle of an earlier rollout carries
that rollout's record (`modelcanary.dev/rollout`: v1.9 progressing, run by a promote long gone) and its
80/20. Applied again mid-rollout of v2 (by hand, or by a GitOps sync), the route records v1.9 while its
canary subset, which v2's claim pointed, still selects v2 with 20%. `canary promote` ended "taken over",
wrote nothing and exited 3; the controller ended its CanaryRollout `aborted` with a status saying
100/0, "left alone". v2 kept 20% with nobody judging it until the sweep found that record abandoned
(minutes; never where no sweep runs). A rollout that really takes a route points the canary subset at
its own version before it moves traffic, so such a split is nobody's: stable 100% now.

Real Kubernetes API emulator and IstioRouter; promote on fake metrics and a fake clock (as
test_promote_route_safety.py), the controller on the real backfilled Prometheus (as test_controller.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401 - fixtures
from tests.integration.test_promote_route_safety import (GROUP, HookClock, _at_first_step, api, record,  # noqa: F401
                                                         routes, runner, subsets)

pytestmark = pytest.mark.integration
OLD = "promote#old-runner:4026531836:77:ab"


def _old_copy_applied(api: Any, *, repoint: bool = False) -> None:
    """The record replaced by v1.9's, progressing at 80/20, run by a promote long gone; with `repoint`, a
    real rollout of v1.9 instead: its canary subset selects v1.9."""
    def edit(obj: dict[str, Any]) -> None:
        ann = obj["metadata"]["annotations"]
        rec = json.loads(ann["modelcanary.dev/rollout"])
        rec.update(canary_version="v1.9", owner=OLD, started_at=rec["started_at"] - 86_400,
                   updated_at=rec["updated_at"] - 86_000)
        ann["modelcanary.dev/rollout"] = json.dumps(rec)
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)
    if repoint:
        def point(dr: dict[str, Any]) -> None:
            for s in dr["spec"]["subsets"]:
                if s["name"] == "canary":
                    s["labels"]["version"] = "v1.9"
        api.edit(GROUP, "destinationrules", "ml", "m0", point)


def test_promote_ends_its_versions_split_under_an_old_copy_of_the_record(api: Any) -> None:
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: _old_copy_applied(api)))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    rec = record(api)
    assert rec["phase"] == rl.ABORTED and rec["canary_version"] == "v2" and subsets(api)["stable"] == "v1"
    assert "names another rollout (v1.9" in rec["reason"] and "selects v2, which gets 20% (80/20)" in rec["reason"]
    said = [e for e in logs if e["event"] == "rollout.split_unrecorded"]
    assert len(said) == 1 and said[0]["recorded_owner"] == OLD and said[0]["weights"] == "80/20", said
    assert not [e for e in logs if e["event"] == "rollout.taken_over"]


def test_promote_still_leaves_a_rollout_that_routes_its_own_version_alone(api: Any) -> None:
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: _old_copy_applied(api, repoint=True)))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.reason.startswith("taken over"), res.state.reason
    assert routes(api) == [[("stable", 80), ("canary", 20)]] and record(api)["canary_version"] == "v1.9"
    assert not [e for e in logs if e["event"] == "rollout.split_unrecorded"]


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}


@pytest.mark.parametrize("repoint", [False, True], ids=["old copy", "a rollout of v1.9"])
def test_the_controller_ends_its_versions_split_under_an_old_copy_of_the_record(world: Any, repoint: bool) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _old_copy_applied(api, repoint=repoint)
    op.clock = clock = FakeClock(time.time())
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            clock.t += 1.0
            op.tick()
    weights, rec = vs(api, 0)
    st = _status(custom)
    said = [e for e in logs if e["event"] == "rollout.split_unrecorded"]
    if repoint:  # another rollout's split: left alone, as before
        assert weights == [80, 20] and rec["canary_version"] == "v1.9" and not said
        assert st["phase"] == rl.ABORTED and "left alone" in st["reason"]
        return
    assert weights == [100, 0], (weights, st)  # the status said 100/0 over a route at 80/20
    assert rec["phase"] == rl.ABORTED and rec["canary_version"] == "v2"
    assert st["phase"] == rl.ABORTED and st["weights"] == {"stable": 100, "canary": 0}
    assert "selects v2, which gets 20% (80/20)" in st["reason"] and st["reason"] == rec["reason"]
    assert len(said) == 1 and said[0]["recorded_owner"] == OLD


def test_promote_whose_step_failed_ends_its_versions_split_under_an_old_copy_of_the_record(api: Any) -> None:
    """The old copy applied, then the step fails before the watch reads the route (an API outage, a bug):
    the fail-safe read the other version's record, took it for a take-over, wrote nothing and left 80/20
    to v2 with nobody judging it (decision 145). It ends as the watch does: stable 100%, one warning."""
    from canary.errors import TransientError

    def applied_then_failed() -> None:
        _old_copy_applied(api)
        raise TransientError("the Kubernetes API server timed out")

    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), applied_then_failed))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert routes(api) == [[("stable", 100), ("canary", 0)]], res.state.reason
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    rec = record(api)
    assert rec["phase"] == rl.ABORTED and rec["canary_version"] == "v2"
    assert "selects v2, which gets 20% (80/20)" in rec["reason"], rec["reason"]
    said = [e for e in logs if e["event"] == "rollout.split_unrecorded"]
    assert len(said) == 1 and said[0]["recorded_owner"] == OLD, said
    assert not [e for e in logs if e["event"] == "rollout.taken_over"]


def test_promote_whose_step_failed_still_leaves_a_rollout_that_routes_its_own_version_alone(api: Any) -> None:
    from canary.errors import TransientError

    def applied_then_failed() -> None:
        _old_copy_applied(api, repoint=True)
        raise TransientError("the Kubernetes API server timed out")

    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), applied_then_failed))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.reason.startswith("taken over"), res.state.reason
    assert routes(api) == [[("stable", 80), ("canary", 20)]] and record(api)["canary_version"] == "v1.9"
    assert not [e for e in logs if e["event"] == "rollout.split_unrecorded"]

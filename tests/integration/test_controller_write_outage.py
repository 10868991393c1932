"""Every VirtualService write refused for a while (an Istio validation webhook down answers 500 to each),
with the controller on its informers' cache as `canary controller run` is (seventh session's attack,
decision 133), against the strict API emulator and a real (backfilled) Prometheus. The failure budget
(decision 14: transient failures of a split rollout's ticks for 30 s end it at stable 100%) restarted at
every tick: `_advance` reads only the cache, so it went through, and only the look's write failed. The
canary kept 20% for as long as the webhook was down, no stable-100% write was tried and nobody was paged:
two `rollout.tick_failed` warnings in 70 s. Every try of every write answered 409 (someone else keeps
editing the VirtualService) was worse: a RoutingConflict, as if another writer had recorded a decision, so
nothing was counted at all (`rollout.changed_outside`, info, at every look), and a stable-100% write that
met it was `rollback.write_conflict` ("nobody need act by hand")."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
from structlog.testing import capture_logs

from canary import controller as controller_mod
from canary import rollout as rl
from tests.integration.test_controller_watch import ISTIO, caught_up, create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration


def _weights(api: Any) -> list[int]:
    return [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


@pytest.mark.parametrize("code", [500, 409], ids=["500 (a webhook down)", "409 on every try (someone keeps editing)"])
def test_a_split_rollout_whose_look_writes_keep_failing_goes_to_stable_and_pages(world: Any, code: int) -> None:
    api, op, custom, clock = world
    op.router.wait = tenacity.wait_none()  # the router's own retries: no real waits between them
    create(api, 0, "v2")
    for _ in range(30):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _weights(api)[1] > 0:
            break
    assert _weights(api) == [80, 20]
    caught_up(api, op)
    api.fail_next(code, times=10**6, methods=("PUT",), plural="virtualservices")
    start = clock.t
    with capture_logs() as logs:
        for _ in range(60):  # 60 s of the controller's clock, a tick a second
            op.tick()
            clock.t += 1.0
    api.handler.faults.clear()
    assert _weights(api) == [80, 20]  # nothing could be written
    tried = [e for e in logs if e["event"] == "rollout.aborting"]
    assert tried, [(e["event"], e.get("error")) for e in logs if e["log_level"] != "info"]
    assert [e for e in logs if e["event"] == "rollback.retrying"]
    paged = [e for e in logs if e["log_level"] == "critical"]
    assert [e["event"] for e in paged] == ["rollback.failed"], [e["event"] for e in paged]
    assert "canary rollback m0 -n ml --virtual-service m0" in paged[0]["hint"]
    assert paged[0]["failing_for_s"] >= controller_mod.ROLLBACK_PAGE_AFTER_S
    # not before the failure budget: the first stable-100% attempt came FAILURE_BUDGET_S after the first failure
    assert op._stable_failing["ml/r0"].since - start >= controller_mod.FAILURE_BUDGET_S - 1

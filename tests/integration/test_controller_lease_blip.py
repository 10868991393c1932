"""The lease at its last moment during a tick, renewed before the next one (seventh session's attack,
decision 133), with the controller on its informers' cache and due-time queue as `canary controller run`
is, against the strict API emulator and a real (backfilled) Prometheus. The fence refuses a write in the
lease's last 50 ms (`NotLeader`), and the tick stopped there without putting back what it had taken off
the queue. The renewal landed before the next tick, so no tick saw a standby and no new term touched every
rollout again: a CanaryRollout created then was never claimed, and a rollout at 80/20 due in that tick
was never ticked again (no look, no rollback), with no line at all."""

from __future__ import annotations

from typing import Any

import pytest

from canary import rollout as rl
from canary.fencing import FencedRouter
from tests.integration.test_controller_watch import ISTIO, caught_up, create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration


def _weights(api: Any, i: int) -> list[int]:
    return [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", f"m{i}")["spec"]["http"][0]["route"]]


def test_rollouts_of_a_tick_the_lease_ran_out_in_are_ticked_again_once_it_is_renewed(world: Any) -> None:
    api, op, custom, clock = world
    left = [10.0]  # seconds of leadership left, as the elector says; is_leader() stays true throughout
    op.lease_left = lambda: left[0]
    op.fenced = FencedRouter(op.router, op.is_leader, op.lease_left)
    create(api, 0, "v2")
    for _ in range(30):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _weights(api, 0)[1] > 0:
            break
    assert _weights(api, 0) == [80, 20]
    create(api, 1, "v2")  # its claim is the write the fence refuses
    caught_up(api, op)
    clock.t += 5.0  # r0's look is due too
    left[0] = 0.0
    op.tick()
    left[0] = 10.0  # renewed before the next tick
    assert {"ml/r0", "ml/r1"} <= set(op.queue._due), op.queue._due
    for _ in range(40):
        step(api, op, clock)
        if status(api, "r0").get("phase") in rl.TERMINAL and status(api, "r1").get("phase") in rl.TERMINAL:
            break
    assert status(api, "r0")["phase"] == rl.PROMOTED and _weights(api, 0) == [100, 0]
    assert status(api, "r1")["phase"] == rl.PROMOTED

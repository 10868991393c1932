"""A bug that escapes a tick (seventh session's attack, decision 133), with the controller on its
informers' cache and due-time queue as `canary controller run` is, against the strict API emulator and a
real (backfilled) Prometheus. One unexpected exception in the batched snapshot's path killed the tick
after it had taken its rollouts off the queue: they were never ticked again until one of their objects
changed. A canary at 20% kept it for ever; `tick.failed` was the last line."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import rollout as rl
from tests.integration.test_controller_watch import ISTIO, create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration


def _weights(api: Any) -> list[int]:
    return [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


def _split(api: Any, op: Any, clock: Any) -> None:
    create(api, 0, "v2")
    for _ in range(30):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _weights(api)[1] > 0:
            return
    raise AssertionError(status(api, "r0"))


def test_a_snapshot_that_raises_a_bug_is_could_not_measure_and_ends_at_stable(world: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    api, op, custom, clock = world
    _split(api, op, clock)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug in the snapshot")

    monkeypatch.setattr(op.batch, "snapshot", broken)
    with capture_logs() as logs:
        for _ in range(20):  # past the policy's no_data_deadline (8 s)
            step(api, op, clock)  # (raised RuntimeError at the first)
    assert _weights(api) == [100, 0] and status(api, "r0")["phase"] == rl.ABORTED, status(api, "r0")
    failed = [e for e in logs if e["event"] == "metrics.snapshot_failed"]
    assert len(failed) == 1 and "RuntimeError: a bug in the snapshot" in failed[0]["error"], failed


def test_a_bug_escaping_a_tick_leaves_its_rollouts_due(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api, op, custom, clock = world
    _split(api, op, clock)
    real = op._snapshot
    calls = [0]

    def once(active: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("a bug")
        return real(active)

    monkeypatch.setattr(op, "_snapshot", once)
    clock.t += 1.0
    with pytest.raises(RuntimeError):
        op.tick()
    assert "ml/r0" in op.queue._due  # due again, with its backoff
    for _ in range(40):
        step(api, op, clock)
        if status(api, "r0").get("phase") in rl.TERMINAL:
            break
    assert calls[0] > 1 and status(api, "r0")["phase"] == rl.PROMOTED, status(api, "r0")


def test_a_bug_taking_one_rollouts_step_start_fails_that_rollout_not_the_tick(world: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The review of decision 133 (d). After the batched snapshot, each rollout without a step start takes
    one; an unexpected error there (a bug) escaped the whole tick before any look ran: re-queued, it did so
    again every tick, the split stayed, and `tick.failed` was all that was said. Now that rollout's tick fails
    as any other (`step_start.failed`; a split one goes to stable 100%), and nothing else is held up."""
    from canary import controller as controller_mod
    from structlog.testing import capture_logs
    from tests.integration.test_controller_watch import status, step
    from tests.integration.test_controller_write_outage import at_first_step

    api, op, custom, clock = world
    at_first_step(api, op, clock)
    op._step_starts.clear()  # as after a restart: the step start is taken again
    real = controller_mod.Controller._binding

    def broken(self: Any, state: Any) -> Any:
        if state.canary_version == "v2":
            raise AttributeError("'NoneType' object has no attribute 'taken_at'")
        return real(self, state)
    monkeypatch.setattr(controller_mod.Controller, "_binding", broken)
    with capture_logs() as logs:
        for _ in range(5):
            step(api, op, clock)
    failed = [e for e in logs if e["event"] == "step_start.failed"]
    assert failed and "AttributeError" in failed[0]["error"], [e["event"] for e in logs]
    assert not [e for e in logs if e["event"] == "tick.failed"]
    assert _weights(api) == [100, 0] and status(api, "r0").get("phase") == rl.ABORTED

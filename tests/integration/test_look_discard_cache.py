"""A look discarded because the route's record changed while it measured (decision 171), with the informers'
cache behind the API server (decision 181): the next tick reads the route the look's own read found, not the
cache's older copy. Against the strict API emulator and a real backfilled Prometheus; the controller's clock
is the test's, and the VirtualServices' watch is held (its events dropped) so the cache lags for as long as the
test says, not for as long as a thread happens to take."""

from __future__ import annotations

import json
from typing import Any

import structlog.testing

from canary import rollout as rl
from canary.routing.patch import STATE_ANNOTATION
from tests import fleet
from tests.integration.test_controller_watch import (ISTIO, caught_up, prometheus, settled, status, step,  # noqa: F401
                                                      until, world)
from tests.integration.test_gitops_revert import _RevertAsTheLookMeasures


def _reserialised(obj: dict[str, Any]) -> None:
    """A foreign writer that re-serialises the record's JSON (keys sorted, indented): the same rollout state in
    another text, as a tool that decodes and re-encodes the annotation writes it back."""
    ann = obj["metadata"]["annotations"]
    ann[STATE_ANNOTATION] = json.dumps(json.loads(ann[STATE_ANNOTATION]), sort_keys=True, indent=1)


def _hold_watch(op: Any, plural: str = "virtualservices") -> list[bool]:
    """The informer of `plural` drops every watch event while the returned flag's [0] is True (a stalled watch:
    its cache keeps what it had, and this process's own writes, put in it by their answers)."""
    held = [False]
    inf = op.informers.routes[plural]
    real = inf._event

    def event(ev: dict[str, Any]) -> None:
        if not held[0]:
            real(ev)

    inf._event = event  # type: ignore[method-assign]
    return held


def test_a_look_discarded_for_a_record_the_cache_does_not_hold_yet_is_not_measured_again_at_every_tick(
        world: Any) -> None:
    """Before, the tick after the discard read the route from the cache, which still held the record as before:
    the look was due (it was not judged), measured again, read the route from the API again, found it changed
    again and was discarded again, at every tick (a Prometheus snapshot, a GET and a `look.discarded` warning a
    second) until the watch caught up; with the watch held here, for ever, the rollout never judged a look."""
    api, op, custom, clock = world
    slow = fleet.rollout_object(0, "v2")
    slow["spec"]["policy"]["analysis"]["interval"] = "60s"  # one long step: a look a tick, nothing else moves
    api.handler.put_object(slow)
    for _ in range(6):  # claimed, first step, its step-start snapshot, first looks
        step(api, op, clock)
    assert status(api, "r0")["phase"] == rl.PROGRESSING
    caught_up(api, op)
    looks0 = status(api, "r0")["summary"]["looks"]
    held = _hold_watch(op)
    held[0] = True
    hook = _RevertAsTheLookMeasures(api, op, None, act=lambda: bool(
        api.edit(ISTIO, "virtualservices", "ml", fleet.model(0), _reserialised)))
    op.batch.snapshot = hook
    hook.armed = True
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            until(lambda: settled(op), "the informers to settle")
            op.tick()
            clock.t += 1.0
    assert hook.fired == 1
    events = [e["event"] for e in logs]
    discarded = [e for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and "record" in discarded[0]["reason"], events
    # the next tick took the record the look's read found, and its looks were judged again
    first = events.index("look.discarded")
    assert "look.completed" in events[first:], events
    st = status(api, "r0")
    assert st["phase"] == rl.PROGRESSING and st["summary"]["looks"] > looks0, st
    weights = [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", fleet.model(0))["spec"]["http"][0]["route"]]
    assert weights == [80, 20], weights

"""The rollout's record edited outside it, the gaps decisions 143 b and 145 left (decision 146).

- The annotation `modelcanary.dev/rollout` emptied to "" (a manifest's `modelcanary.dev/rollout: ""`, a
  `kubectl annotate ...=`) took an older path than its removal: the error `rollout.failed`, "the rollout
  state was changed by someone else". It now reads as removed, in promote and in the controller.
- Edited into text that is no rollout state (garbage JSON, a template's placeholder): stable 100% and one
  warning naming the annotation (`rollout.record_unreadable`), never a split left behind.
- Removed while the step's own write fails: stable 100% was written with no `rollout.record_removed`.
- Weights edited while promote is PENDING (claimed at 100/0, its canary subset already on the canary
  version, the Triton warm-up running): nothing watched the route until the first step was written.
- The controller's failed tick writes nothing over another version's record; its next tick rescues a
  split of this CR's version under it (143 d).

Real Kubernetes API emulator and IstioRouter; promote on fake metrics and a fake clock (as
test_promote_route_safety.py), the controller on the real backfilled Prometheus (as test_controller.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.errors import TransientError
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401 - fixtures
from tests.integration.test_promote_route_safety import (GROUP, HookClock, _at_first_step, api, record,  # noqa: F401
                                                         routes, runner)
from tests.integration.test_split_unrecorded import OLD, _old_copy_applied, _status

pytestmark = pytest.mark.integration
ANN = "modelcanary.dev/rollout"


class _Clock(HookClock):
    """HookClock, which reads the record no more once its hooks have fired (the test's own reader of the
    record cannot read what these tests write)."""

    def sleep(self, seconds: float) -> None:
        if self.hooks:
            super().sleep(seconds)
        else:
            FakeClock.sleep(self, seconds)


def _annotated(value: str | None, weights: tuple[int, int] | None = None) -> Any:
    """The record set to `value` (None: removed), the weights to `weights` (None: as they were)."""
    def edit(obj: dict[str, Any]) -> None:
        ann = obj["metadata"]["annotations"]
        if value is None:
            ann.pop(ANN)
        else:
            ann[ANN] = value
        if weights is not None:
            for d, w in zip(obj["spec"]["http"][0]["route"], weights):
                d["weight"] = w
    return edit


def _errors(logs: list[dict[str, Any]]) -> list[Any]:
    return [(e["event"], e.get("error")) for e in logs if e["log_level"] in ("error", "critical")]


def _promote_with_record(api: Any, value: str, weights: tuple[int, int] | None = None) -> tuple[Any, list[Any]]:
    """`canary promote` of v2, its record annotation set to `value` (and the weights to `weights`) by hand at its
    first step; its result and its log lines."""
    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"),
                        lambda: api.edit(GROUP, "virtualservices", "ml", "m0", _annotated(value, weights))))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    return res, logs


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_promote_reads_an_emptied_record_as_a_removed_one(api: Any, value: str) -> None:
    res, logs = _promote_with_record(api, value)
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert record(api)["phase"] == rl.ABORTED and record(api)["reason"] == res.state.reason
    assert f"annotation {ANN}) was removed from VirtualService ml/m0" in res.state.reason
    removed = [e for e in logs if e["event"] == "rollout.record_removed"]
    assert len(removed) == 1 and removed[0]["recorded_weights"] == "80/20", removed
    assert not _errors(logs), _errors(logs)


# a timestamp with too many digits, arrays nested past the JSON parser's depth: OverflowError and
# RecursionError out of the parser, which no reader caught; promote left 80/20 with a traceback (decision 148)
TOO_LARGE = ('{"model": "m0", "stable_version": "v1", "canary_version": "v2", "phase": "progressing", '
             '"weights": {"stable": 80, "canary": 20}, "started_at": 1' + "0" * 400 + "}")
TOO_DEEP = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.mark.parametrize("value", ['{"phase": "progressing", "weights": ', '{"phase": 5}', "null", TOO_LARGE,
                                   TOO_DEEP],
                         ids=["cut JSON", "not a state", "null", "a number too large", "nested too deep"])
def test_promote_ends_a_record_edited_into_garbage_at_stable_and_names_the_annotation(api: Any, value: str) -> None:
    res, logs = _promote_with_record(api, value, (50, 50))
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert record(api)["phase"] == rl.ABORTED and record(api)["reason"] == res.state.reason
    assert f"record (annotation {ANN}) on VirtualService ml/m0 was edited outside the rollout" in res.state.reason
    said = [e for e in logs if e["event"] == "rollout.record_unreadable"]
    assert len(said) == 1 and said[0]["log_level"] == "warning" and said[0]["weights"] == "50/50", said
    assert ANN in said[0]["hint"]
    assert not _errors(logs), _errors(logs)


@pytest.mark.parametrize("value", [None, "", "{garbage"], ids=["removed", "emptied", "garbage"])
def test_a_record_lost_while_the_step_fails_is_said_as_the_watch_says_it(api: Any, value: str | None) -> None:
    """The record removed, then the step fails before the watch reads the route (an API outage): the
    fail-safe wrote stable 100% and on-call read only the exception."""
    def lost_then_failed() -> None:
        api.edit(GROUP, "virtualservices", "ml", "m0", _annotated(value))
        raise TransientError("the Kubernetes API server timed out")

    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lost_then_failed))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert routes(api) == [[("stable", 100), ("canary", 0)]], res.state.reason
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    event = "rollout.record_unreadable" if value else "rollout.record_removed"
    said = [e for e in logs if e["event"] == event]
    assert len(said) == 1 and said[0]["recorded_weights"] == "80/20", [e["event"] for e in logs]
    assert "timed out" in record(api)["reason"] and f"annotation {ANN})" in record(api)["reason"]


class _WarmUp:
    """A Triton gate whose warm-up lasts until the route is back at 100/0 after `edit` (or 100 fake
    seconds, the watch having never put it back). Each round moves the fake clock 1 s, so the runner's
    watch (every 1 s) is due; nothing depends on when a real sleep ends."""

    probe_interval, probe_failures = 1.0, 3

    def __init__(self, api: Any, clock: FakeClock) -> None:
        self.api, self.clock, self.back, self.seen = api, clock, threading.Event(), []

    def preflight(self) -> dict[str, Any]:
        def split(obj: dict[str, Any]) -> None:  # the weights alone: the record as promote wrote it
            for d, w in zip(obj["spec"]["http"][0]["route"], (50, 50)):
                d["weight"] = w
        self.api.edit(GROUP, "virtualservices", "ml", "m0", split)
        for _ in range(100):
            self.seen.append(routes(self.api)[0])
            if self.seen[-1] == [("stable", 100), ("canary", 0)]:
                self.back.set()
                break
            self.clock.t += 1.0
            time.sleep(0.02)
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        return True


def test_weights_edited_while_promote_is_pending_go_back_to_100_0_at_once(api: Any) -> None:
    clock = FakeClock()
    promote = runner(api, "v2", clock)
    gate = promote.gate = _WarmUp(api, clock)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert gate.back.is_set(), gate.seen[-3:]  # during the warm-up, not at the first step
    edits = [e for e in logs if e["event"] == "weights.foreign_edit"]
    assert edits and edits[0]["phase"] == rl.PENDING and edits[0]["found"] == "50/50", edits
    assert [e for e in logs if e["event"] == "weights.reasserted"]
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason


def _controller_after(world: Any, edit: Any) -> tuple[list[int], dict[str, Any], dict[str, Any]]:
    """A CanaryRollout progressing at 80/20, its VirtualService then edited by `edit`, and three ticks:
    (weights, record, CR status) after them."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", fleet.model(0), edit)
    op.clock = clock = FakeClock(time.time())
    for _ in range(3):
        clock.t += 1.0
        op.tick()
    weights, rec = vs(api, 0)
    return weights, rec, _status(custom)


def test_the_controller_reads_an_emptied_record_as_a_removed_one(world: Any) -> None:
    weights, rec, st = _controller_after(world, _annotated("  "))
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, st)
    assert st["phase"] == rl.ABORTED and "no longer records this CanaryRollout's rollout" in st["reason"], st


@pytest.mark.parametrize("value", ["{garbage", TOO_LARGE],
                         ids=["garbage", "a number too large"])
def test_the_controller_ends_a_record_edited_into_garbage_at_stable_naming_the_annotation(world: Any,
                                                                                          value: str) -> None:
    weights, rec, st = _controller_after(world, _annotated(value))
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, st)
    assert st["phase"] == rl.ABORTED and f"annotation {ANN} is unreadable" in st["reason"], st


def test_the_controllers_failed_tick_leaves_its_split_under_an_old_record_to_the_next_tick(world: Any) -> None:
    """A tick that fails (a bug, an error out of `_advance`) after an old copy of the record was applied:
    `_failed` writes nothing over another version's record (143 d, 145 b). The next tick rescues it."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _old_copy_applied(api)
    real, calls = op.router.inspect, []

    def inspect(target: Any) -> Any:
        calls.append(target)
        if len(calls) == 1:
            raise RuntimeError("a bug in this tick")
        return real(target)

    op.router.inspect = inspect
    op.clock = clock = FakeClock(time.time())
    clock.t += 1.0
    with structlog.testing.capture_logs() as logs:
        op.tick()
        assert vs(api, 0)[0] == [80, 20] and calls, "the failed tick wrote nothing"
        clock.t += 1.0
        op.tick()
    weights, rec = vs(api, 0)
    assert weights == [100, 0] and rec["canary_version"] == "v2" and rec["phase"] == rl.ABORTED, (weights, rec)
    said = [e for e in logs if e["event"] == "rollout.split_unrecorded"]
    assert len(said) == 1 and said[0]["recorded_owner"] == OLD, said


class _EditedDuringWarmUp:
    """A Triton gate that passes: its warm-up edits the route with `edit` (a person's, a sync's), then runs
    10 more fake seconds (the watch, every 1 s, is due each round)."""

    probe_interval, probe_failures = 1.0, 3

    def __init__(self, api: Any, clock: FakeClock, edit: Any) -> None:
        self.api, self.clock, self.edit = api, clock, edit

    def preflight(self) -> dict[str, Any]:
        self.api.edit(GROUP, "virtualservices", "ml", "m0", self.edit)
        for _ in range(10):
            self.clock.t += 1.0
            time.sleep(0.02)
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        return True


def _weights_50_60(obj: dict[str, Any]) -> None:
    for d, w in zip(obj["spec"]["http"][0]["route"], (50, 60)):
        d["weight"] = w


def _second_route(obj: dict[str, Any]) -> None:
    obj["spec"]["http"].append({"name": "other", "route": [dict(obj["spec"]["http"][0]["route"][0], weight=100)]})


@pytest.mark.parametrize("edit", [_weights_50_60, _second_route], ids=["weights 50+60", "a second route"])
def test_the_watch_failing_while_the_gate_runs_is_not_the_gates_failure(api: Any, edit: Any) -> None:
    """The watch of decision 146 c raised inside the gate's `try`: a route edited into a shape it refuses
    was taken for the gate refusing the canary, `gate.failed`, the good canary `rolled_back`, exit 1
    (decision 148). It ends as a step's watch ends it: `rollout.failed`, stable 100%, aborted, exit 3."""
    clock = FakeClock()
    promote = runner(api, "v2", clock)
    promote.gate = _EditedDuringWarmUp(api, clock, edit)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert not res.state.reason.startswith("gate:") and record(api)["phase"] == rl.ABORTED, res.state.reason
    assert routes(api)[0] == [("stable", 100), ("canary", 0)]
    assert not [e for e in logs if e["event"] in ("gate.failed", "rollback.completed")], res.state.reason
    assert [e["event"] for e in logs if e["event"] == "rollout.failed"] == ["rollout.failed"]


def test_on_calls_rollback_writes_stable_100_over_a_record_with_a_number_too_large(api: Any) -> None:
    """`canary rollback` (`oncall_action`) over a split whose record holds a number too large for a float: the
    OverflowError escaped the parser, and the emergency button failed with the split in place. It reads as an
    unreadable record (`rollout.state_unreadable`): stable 100% and a new record (decision 148)."""
    import tenacity

    from canary.logs import get
    from canary.model import Target
    from canary.routing.istio import IstioRouter
    from canary.runner import oncall_action

    api.edit(GROUP, "virtualservices", "ml", "m0", lambda obj: obj["metadata"].setdefault("annotations", {}))
    api.edit(GROUP, "virtualservices", "ml", "m0", _annotated(TOO_LARGE, (80, 20)))
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="")
    with structlog.testing.capture_logs() as logs:
        ended = oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                              rl.Rollback(time.time(), "operator: p95 alert"), log=get().bind(actor="on-call"))
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and ended.phase == rl.ROLLED_BACK, ended
    assert record(api)["phase"] == rl.ROLLED_BACK
    assert [e for e in logs if e["event"] == "rollout.state_unreadable"]


def _edited(**fields: Any) -> Any:
    """The record as promote wrote it, with `fields` changed (a hand edit that still parses)."""
    import json

    def edit(obj: dict[str, Any]) -> None:
        ann = obj["metadata"]["annotations"]
        ann[ANN] = json.dumps({**json.loads(ann[ANN]), **fields})
    return edit


@pytest.mark.parametrize("fields", [{"step": 99}, {"step": 1, "weights": {"stable": 50, "canary": 50}},
                                    {"phase": "promoting"}, {"phase": "promoted"}],
                         ids=["step 99", "the next step", "promoting", "promoted"])
def test_a_record_edited_by_hand_into_a_later_step_or_a_promotion_is_not_adopted(api: Any,
                                                                                  fields: dict[str, Any]) -> None:
    """The record of this very rollout (its owner and start kept) edited by hand so that it moved on. Adopted
    as `rollout.changed_outside`, `step` 99 at 80/20 promoted the canary at its next pass, judged at 20% only;
    `promoting` promoted it at once; `promoted` ended promote with exit 0 and 80/20 left (decision 148)."""
    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0",
                                                                _edited(**fields))))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api)["phase"] == rl.ABORTED
    assert "edited outside the rollout into a state this rollout was never in" in res.state.reason
    said = [e for e in logs if e["event"] == "rollout.record_unreadable"]
    assert len(said) == 1 and said[0]["recorded_weights"] == "80/20", said
    assert not [e for e in logs if e["event"] in ("rollout.promoting", "rollout.promoted", "rollout.changed_outside")]


@pytest.mark.parametrize("fields", [{"phase": "promoting"}, {"step": 99}], ids=["promoting at 80/20", "step 99"])
def test_the_controller_ends_a_record_edited_by_hand_into_no_state_of_its_policy(world: Any,
                                                                                  fields: dict[str, Any]) -> None:
    """The controller takes its state from the record at every tick: `"phase": "promoting"` at 80/20 was
    finished, the canary promoted after one step (decision 148). Ended as an unreadable record is."""
    weights, rec, st = _controller_after(world, _edited(**fields))
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, st)
    assert st["phase"] == rl.ABORTED and f"annotation {ANN} is no state of this rollout" in st["reason"], st


def _typed(**fields: Any) -> Any:
    """`fields` typed into the record, and its weights into the VirtualService (a hand edit done whole)."""
    def edit(obj: dict[str, Any]) -> None:
        _edited(**fields)(obj)
        w = fields["weights"]
        _annotated(obj["metadata"]["annotations"][ANN], (w["stable"], w["canary"]))(obj)
    return edit


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "restarted"])
@pytest.mark.parametrize("fields", [{"step": 1, "weights": {"stable": 50, "canary": 50}},
                                    {"phase": "promoting", "weights": {"stable": 0, "canary": 100}},
                                    {"phase": "promoting", "step": 2, "weights": {"stable": 0, "canary": 100}},
                                    {"phase": "promoted", "weights": {"stable": 0, "canary": 100}}],
                         ids=["the next step at its weights", "promoting at 0/100", "promoting at its step",
                              "promoted at 0/100"])
def test_the_controller_ends_a_record_typed_ahead_of_its_status(world: Any, fields: dict[str, Any],
                                                                restarted: bool) -> None:
    """Step 2 at 50/50 typed into the record and the route while step 1 ran: a state of the policy, so 148's
    `off_policy` let it be, and the controller judged step 2 and promoted a canary never shown good at 20%
    (a promotion at 0/100 was finished at once). The CanaryRollout's status, written after every record,
    is the reference: a record ahead of it without the marks of its own transition ends at stable 100%
    (decision 150), whichever process reads it. `promoted` at 0/100 was mirrored as the CR's outcome, every
    request on the canary: it ends too, its stable subset on the stable version."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    assert _status(custom)["step"] == 1
    api.edit(GROUP, "virtualservices", "ml", fleet.model(0), _typed(**fields))
    logs = _three_ticks(op, restarted)
    weights, rec = vs(api, 0)
    st = _status(custom)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, st)
    assert st["phase"] == rl.ABORTED and f"annotation {ANN} is no state of this rollout" in st["reason"], st
    assert "while the CanaryRollout's status shows step 1" in st["reason"], st["reason"]
    assert not [e for e in logs if e["event"] in ("rollout.promoting", "rollout.promoted", "step.advanced")]
    assert _subsets(api) == ("v1", "v2"), _subsets(api)


def _three_ticks(op: Any, restarted: bool) -> list[dict[str, Any]]:
    """Three ticks of `op` (or of a fresh controller, `restarted`) on a fake clock a second apart; their logs."""
    from tests.integration.test_controller import _fresh

    op = _fresh(op) if restarted else op
    op.clock = clock = FakeClock(time.time())
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            clock.t += 1.0
            op.tick()
    return logs


def _subsets(api: Any) -> tuple[str, str]:
    dr = api.get(GROUP, "destinationrules", "ml", fleet.model(0))
    got = {s["name"]: s["labels"].get("version") for s in dr["spec"]["subsets"]}
    return got["stable"], got["canary"]


def test_the_controller_goes_on_from_its_own_record_written_before_a_crash_left_the_status_behind(world: Any) -> None:
    """The control: the leader writes the record of the next step (a passing look), and dies before its status
    write. The status shows step 1, the record step 2 at 50/50, one transition ahead, with that step's history
    line and no look yet: a new controller goes on from it to the promotion."""
    from tests.integration.test_controller import _fresh, run_until_done

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    real, died = op._status, threading.Event()

    def status(obj: dict[str, Any], spec: Any, state: rl.RolloutState, *a: Any, **kw: Any) -> None:
        if state.phase == rl.PROGRESSING and state.step == 1 or died.is_set():
            died.set()
            raise SystemExit("the leader dies before its status write")
        real(obj, spec, state, *a, **kw)

    op._status = status
    for _ in range(400):
        try:
            op.tick()
        except SystemExit:
            pass
        if died.is_set():
            break
        time.sleep(0.05)
    assert died.is_set() and vs(api, 0)[0] == [50, 50] and _status(custom)["step"] == 1, _status(custom)
    objs = run_until_done(_fresh(op), custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED, objs["r0"]["status"].get("reason")


def test_a_typed_promotion_whose_stable_write_is_refused_is_never_mirrored_as_the_outcome(world: Any) -> None:
    """The stable-100% write over a typed `promoted` refused (403: a role that may not patch the route). Raised
    to the tick's failure path, the record read back was this rollout's end, and the CR was marked promoted for
    good. It is said on the status and written again at the next tick, once the write is allowed."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", fleet.model(0),
             _typed(phase="promoted", weights={"stable": 0, "canary": 100}))
    op.clock = clock = FakeClock(time.time())
    api.fail_next(403, plural="virtualservices")
    clock.t += 1.0
    op.tick()
    assert _status(custom)["phase"] == rl.PROGRESSING and vs(api, 0)[0] == [0, 100], _status(custom)
    for _ in range(2):
        clock.t += 1.0
        op.tick()
    weights, rec = vs(api, 0)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED and _status(custom)["phase"] == rl.ABORTED, rec


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "restarted"])
def test_a_typed_promotion_with_the_stable_subset_pointed_at_the_canary_goes_back_whole(world: Any,
                                                                                      restarted: bool) -> None:
    """`promoted` at 0/100 typed into the record, and the DestinationRule's stable subset pointed at the canary as
    a promotion leaves it: the typed end is refused (decision 150), and the end at stable 100% points the stable
    subset back at the stable version, or "stable 100%" would still send every request to the canary
    (decision 155; 150 left this case untested)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", fleet.model(0),
             _typed(phase="promoted", weights={"stable": 0, "canary": 100}))

    def stable_on_canary(dr: dict[str, Any]) -> None:
        for s in dr["spec"]["subsets"]:
            if s["name"] == "stable":
                s["labels"]["version"] = "v2"

    api.edit(GROUP, "destinationrules", "ml", fleet.model(0), stable_on_canary)
    assert _subsets(api) == ("v2", "v2")
    logs = _three_ticks(op, restarted)
    weights, rec = vs(api, 0)
    st = _status(custom)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED and st["phase"] == rl.ABORTED, (weights, st)
    assert _subsets(api) == ("v1", "v2"), _subsets(api)
    assert not [e for e in logs if e["event"] in ("rollout.promoting", "rollout.promoted")]


@pytest.mark.parametrize("phase", [rl.ROLLED_BACK, rl.ABORTED])
def test_an_end_typed_into_the_record_under_a_live_promote_is_ended_at_stable_100(api: Any, phase: str) -> None:
    """This very rollout's record typed into an end (`kubectl annotate --overwrite`, `"phase": "rolled_back"`)
    while promote runs step 1 at 80/20, the weights left as they were. Every end canary writes carries stable
    100% in the same write, so this one is a hand edit over a split nobody then drives. It was adopted as
    `canary rollback`'s decision (`rollout.changed_outside`): exit 1 "rolled back" with 80/20 left and no line
    saying the canary still had 20%; the controller's tick and the next promote end such a split (decision
    157), the live promote did not (decision 517)."""
    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0",
                                                                _edited(phase=phase, reason="operator: done"))))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert record(api)["phase"] == rl.ABORTED and record(api)["reason"] == res.state.reason
    said = [e for e in logs if e["event"] == "rollout.split_unowned"]
    assert len(said) == 1 and said[0]["by"] == "promote" and said[0]["from_weights"] == "80/20", said
    assert said[0]["recorded"].startswith(f"{phase} (v1 serving)"), said
    assert not [e for e in logs if e["event"] == "rollout.changed_outside"]
    assert not _errors(logs), _errors(logs)


def test_an_end_written_with_stable_100_under_a_live_promote_is_adopted(api: Any) -> None:
    """The control: the end as `canary rollback` writes it (the record and stable 100% in one write) is
    on-call's decision, adopted as before: exit 1, rolled back, no `rollout.split_unowned`."""
    clock = _Clock(api)
    promote = runner(api, "v2", clock)

    def rolled_back(obj: dict[str, Any]) -> None:
        _edited(phase=rl.ROLLED_BACK, reason="operator: done", weights={"stable": 100, "canary": 0})(obj)
        for d, w in zip(obj["spec"]["http"][0]["route"], (100, 0)):
            d["weight"] = w
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0", rolled_back)))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, (res.exit_code, res.state.reason)
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api)["phase"] == rl.ROLLED_BACK
    assert [e for e in logs if e["event"] == "rollout.changed_outside"]
    assert not [e for e in logs if e["event"] == "rollout.split_unowned"]



def _typed_then(api: Any, promote: Any, phase: str, fault: str) -> Any:
    """The record typed into `phase` at 80/20, then `fault`: "end's write": every try of the router's next write
    of the route gets a 500 (an API outage as the end the watch decided is written); "step": the step itself
    fails (the API timed out) before the watch reads the route."""
    def hook() -> None:
        api.edit(GROUP, "virtualservices", "ml", "m0", _edited(phase=phase, reason="operator: done"))
        if fault == "step":
            raise TransientError("the Kubernetes API server timed out")
        api.fail_next(500, times=promote.router.transient_attempts, methods=("PUT", "PATCH"), plural="virtualservices")
    return hook


@pytest.mark.parametrize(("phase", "fault"), [(rl.ROLLED_BACK, "end's write"), (rl.ROLLED_BACK, "step"),
                                              (rl.PROMOTED, "end's write"), (rl.PROMOTED, "step")])
def test_an_end_typed_under_a_live_promote_is_ended_when_a_write_fails_past_its_retries(api: Any, phase: str,
                                                                                        fault: str) -> None:
    """As above, with a write failing past the router's retries: the fail-safe read the typed record as ours
    ended meanwhile and wrote stable 100% under it, exit 1 "rolled back" with the record saying 80/20 and no
    `rollout.split_unowned`; a typed `promoted` was exit 0 with 80/20 left. It now writes the end the watch
    decided (a typed promotion is a state this rollout was never in: `rollout.record_unreadable`'s abort), or
    the one the watch would have (`_end_typed`'s) when the step failed first (decision 524)."""
    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), _typed_then(api, promote, phase, fault)))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert record(api)["phase"] == rl.ABORTED and record(api)["reason"] == res.state.reason, record(api)
    failed = [e for e in logs if e["event"] == "rollout.failed"]
    assert len(failed) == 1 and ("500" in failed[0]["error"] or "timed out" in failed[0]["error"]), failed
    said = [e for e in logs if e["event"] == "rollout.split_unowned"]
    if phase == rl.PROMOTED and fault == "end's write":  # the abort decided for the record edited: written
        assert not said and "was edited outside the rollout" in res.state.reason, (said, res.state.reason)
        assert len([e for e in logs if e["event"] == "rollout.record_unreadable"]) == 1
        return
    assert "typed into" in res.state.reason, res.state.reason
    assert len(said) == 1 and said[0]["by"] == "promote" and said[0]["from_weights"] == "80/20", said
    assert said[0]["recorded"].startswith(f"{phase} ("), said

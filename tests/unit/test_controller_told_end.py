"""The controller tells a rollback to the webhooks and Slack before anything else outside the route is written, and
a counter that raises (a registry problem) costs neither the post, nor the Events, nor the history.

Before: `_do` wrote the history ConfigMap first (a GET and a PUT, up to 3 times, 5 s each), then the
CanaryRollout's Events (3 s each), then the counters, and only then queued the post: a ConfigMap or Events API that
hung held on-call's news of the rollback that long, and a `canary_rollbacks_total` that raised lost the post (the
exception left `_record` before it). The order is asserted, never a duration (decisions 720, 723)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry, Counter

from canary import crd
from canary import rollout as rl
from canary.controller import Controller
from canary.history_store import Recorder
from canary.model import STABLE_ONLY, Weights
from canary.telemetry import Telemetry
from tests import fleet
from tests.fakes import FakeClock, FakeRouter
from tests.unit.test_runner_told_end import _FailingConfigMaps
from tests.unit.test_telemetry import value as metric


class _Events:
    """The Events API (`create_namespaced_event`), in order."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        self.order = order

    def create_namespaced_event(self, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        self.order.append(("event", body["reason"]))


class _Queued:
    """What the Notifier is asked to post (`notify` queues and returns), in order."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        self.order = order

    def notify(self, event: str, payload: Any) -> None:
        self.order.append(("notify", event))


def _rolling_back(order: list[tuple[str, str]], telemetry: Any = None) -> tuple[Controller, FakeRouter, Any, Any]:
    """A controller whose Events API, notifier (and the history, as `_FailingConfigMaps`) note into `order`, over r0
    progressing at 90/10 on a FakeRouter: (controller, router, spec, the rollback's (state, actions))."""
    router = FakeRouter(weights=Weights(90, 10), subsets={"stable": "v1", "canary": "v2"})
    op = Controller(custom=None, core=_Events(order), router=router, metrics=None,  # type: ignore[arg-type]
                    telemetry=telemetry, notifier=_Queued(order), clock=FakeClock())
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(generation=1, uid="u-1")
    spec = crd.parse(obj)
    op._histories[spec.key] = Recorder(_FailingConfigMaps(order), namespace=spec.namespace,  # type: ignore[arg-type]
                                       virtual_service=spec.target.virtual_service, policy=spec.policy,
                                       source="controller", name=spec.key)
    state = rl.RolloutState(model=spec.target.model, stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(90, 10), step=0, started_at=1.0, step_started_at=2.0, updated_at=3.0)
    router.state = state.to_json()
    return op, router, spec, rl.transition(state, rl.Rollback(10.0, "operator: latency page"), spec.policy)


def test_a_rollback_is_posted_before_its_events_and_history_and_a_raising_counter_loses_nothing() -> None:
    order: list[tuple[str, str]] = []
    t = Telemetry()
    # a registry problem: the counter registered with other labels, so `labels(model, reason)` raises
    t.rollbacks = Counter("canary_rollbacks_total", "x", ["model"], registry=CollectorRegistry())
    op, router, spec, (new, actions) = _rolling_back(order, t)
    vs_event = router.record_event
    router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])), vs_event(target, **kw))[1]
    with structlog.testing.capture_logs() as logs:
        op._do(spec, new, actions, expect=router.state, log=op.log)
    assert router.weights == STABLE_ONLY
    kinds = [k for k, _ in order]
    # first: nothing outside the route is written before it, not even the VirtualService's Event (decision 723)
    assert order[0] == ("notify", "rollback") and ("vs-event", "RollbackCompleted") in order, order
    assert kinds.count("notify") == 1, order
    assert ("event", "RollbackCompleted") in order and "history" in kinds, order  # and none is lost
    said = [e for e in logs if e["event"] == "telemetry.record_failed"]
    # once per record it broke (the phase's row makes the model's counters at 0 too), each naming its metric
    assert sorted(e["metric"] for e in said) == ["canary_rollbacks_total", "canary_rollout_weight"], said
    assert all(e["log_level"] == "error" and e["error"].startswith("ValueError") for e in said), said


def test_an_end_posted_at_its_write_is_not_posted_again_when_what_follows_the_write_fails() -> None:
    """The stable-100% write landed (posted then), the stable subset's pointing after it failed: `_do` raised, and
    the next tick's `_confirm_end` records the end as `_record` does. One post, not two (decision 723)."""
    from canary.errors import KubeUnavailable

    order: list[tuple[str, str]] = []
    op, router, spec, (new, actions) = _rolling_back(order)

    def down(*args: Any, **kw: Any) -> None:
        raise KubeUnavailable("503 (the API server restarting)")

    router.point_subset = down  # type: ignore[method-assign]
    try:
        op._do(spec, new, actions, expect=router.state, log=op.log)
    except KubeUnavailable:
        pass
    assert router.weights == STABLE_ONLY and order == [("notify", "rollback")], order
    op._record(spec, new, [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"])
    assert [k for k, _ in order].count("notify") == 1, order


def test_a_rollout_its_failed_ticks_send_to_stable_is_posted_at_that_write() -> None:
    """A tick that fails with traffic split (here a non-transient error: at once; transient ones after
    FAILURE_BUDGET_S) is ended by `_failed`: stable 100% (`_to_stable`), recorded aborted. That end was never posted:
    `_failed` wrote it and its history, never `_record`; the webhooks and Slack heard of every other end of the
    controller's (decision 725)."""
    from canary.controller import _Known
    from canary.errors import TargetError

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order)
    op._known[spec.key] = _Known(spec, rl.RolloutState.from_json(router.state))
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(generation=1, uid="u-1")
    vs_event = router.record_event
    router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])), vs_event(target, **kw))[1]
    op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
    assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED
    assert ("notify", "aborted") in order, order
    assert [k for k, _ in order].count("notify") == 1, order
    # at its write: before the end's Event on the VirtualService (decision 723's order)
    assert order.index(("notify", "aborted")) < order.index(("vs-event", "RolloutAborted")), order
    assert ("event", "RolloutAborted") in order, order  # and on the CanaryRollout, as every other end's


def test_an_end_confirmed_late_is_posted_before_its_events() -> None:
    """A rollback whose write's answer was lost (a timeout, a 5xx applied all the same) is found on the route at the
    next tick and announced then (`_confirm_end`): its post waited behind the VirtualService's Event of each of its
    end lines (a request each, up to 3 s), as 723 had it before the write's. Posted first now (725)."""
    order: list[tuple[str, str]] = []
    op, router, spec, (new, actions) = _rolling_back(order)
    router.weights, router.state = STABLE_ONLY, new.to_json()  # it landed; `_do` never heard
    vs_event = router.record_event
    router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])), vs_event(target, **kw))[1]
    op._confirm_end(spec, new, new, actions, log=op.log, landed="unknown")
    assert order.index(("notify", "rollback")) < order.index(("vs-event", "RollbackCompleted")), order
    assert [k for k, _ in order].count("notify") == 1 and ("event", "RollbackCompleted") in order, order


def _driving(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    """`obj` with the status of r0's rollout of v2 on m0 in progress at 90/10 (what `_drove` reads), started as the
    route's record says (`_rolling_back`'s: 1.0)."""
    obj["metadata"].update(generation=1, uid="u-1")
    obj["status"] = {"phase": rl.PROGRESSING, "startedAt": crd.iso(1.0), "weights": {"stable": 90, "canary": 10},
                     "target": {"virtualService": "m0", "canaryVersion": "v2"}, **status}
    return obj


class _Custom:
    """The CanaryRollout API's patches (its finalizer, its status): accepted, the object answered back."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def patch_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return self.obj

    patch_namespaced_custom_object_status = patch_namespaced_custom_object


def _posts(order: list[tuple[str, str]]) -> list[str]:
    return [what for kind, what in order if kind == "notify"]


def test_an_end_the_rescue_writes_is_posted_at_its_write_once() -> None:
    """A process that had not read the rollout (restarted: nothing of it in memory) whose tick fails with the traffic
    split ends it by the status (`_rescue`, `_stable_if_ours`), and a CanaryRollout deleted mid-rollout is ended by
    `_deleted` (no policy read): both wrote stable 100%, recorded aborted, and nothing posted or counted it (decision
    725's "Not done"). Posted now at the write, before its Event, once, and counted (decision 736)."""
    from canary.controller import FINALIZER
    from canary.errors import TargetError

    for end, cause in (("failed tick", "infrastructure"), ("deleted", "operator"),
                       ("policy unreadable", "infrastructure")):
        order: list[tuple[str, str]] = []
        op, router, spec, _ = _rolling_back(order, Telemetry())
        vs_event = router.record_event
        router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])),
                                                    vs_event(target, **kw))[1]
        obj = _driving(fleet.rollout_object(0, "v2"))
        obj["metadata"]["finalizers"] = [FINALIZER]
        if end == "policy unreadable":  # `_failed`'s branch where no spec parses (a policyRef ConfigMap gone)
            obj["spec"]["policy"] = {"steps": "not a list"}
        op.custom = _Custom(obj)
        if end == "deleted":
            op._deleted(obj)
        else:
            op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
        assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED, end
        assert _posts(order) == ["aborted"], (end, order)
        assert order.index(("notify", "aborted")) < order.index(("vs-event", "RolloutAborted")), (end, order)
        # and counted as every end; the CanaryRollout's Event where it is not being deleted (no spec read there)
        assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason=cause) == 1, end
        assert (("event", "RolloutAborted") in order) == (end == "failed tick"), (end, order)


def test_an_end_restored_is_posted_at_its_write_once() -> None:
    """A finished CanaryRollout's route restored as it was mid-rollout (a backup applied) is ended at stable 100%
    by `_end_restored`: never posted, counted nor given its CanaryRollout's Event before decision 736; posted at its
    write now, once, then counted and its Event written."""
    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    obj = _driving(fleet.rollout_object(0, "v2"), phase=rl.ABORTED)
    op.custom = _Custom(obj)
    rec = rl.RolloutState.from_json(router.state)
    assert op._end_restored(obj, spec, rec, router.state)
    assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED
    assert _posts(order) == ["aborted"], order
    assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason="foreign_edit") == 1  # counted, and
    assert ("event", "RolloutAborted") in order, order  # its Event on the CanaryRollout, as every end's


def test_an_end_stable_if_ours_writes_again_at_each_tick_says_its_start_once(monkeypatch: Any) -> None:
    """A CanaryRollout deleted mid-rollout whose stable-100% write keeps failing (an API server's 503) is written
    again at every tick by `_stable_if_ours` (`_to_stable`, no decided end to keep). Decision 737 said an end's
    start once however many ticks its write takes, but only `_do`'s: this one said `rollout.aborting` at every tick.
    Once now, at the tick whose write first failed; its end line, post and count once, as it lands (decision 753)."""
    from canary import controller as ctl
    from canary.controller import FINALIZER

    monkeypatch.setattr(ctl, "TO_STABLE_BUDGET_S", 0.0)  # a tick's three attempts, no sleep between them
    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order)
    obj = _driving(fleet.rollout_object(0, "v2"))
    obj["metadata"].update(finalizers=[FINALIZER], deletionTimestamp="2026-12-06T20:00:00Z")
    op.custom = _Custom(obj)
    router.fail_writes = 3 * 3  # three ticks of three attempts each
    said = []
    for _ in range(4):
        with structlog.testing.capture_logs() as logs:
            op._advance_one(obj)
        said.append([e["event"] for e in logs if e["event"] in ("rollout.aborting", "rollout.aborted")])
        op.clock.t += 10.0
    assert said == [["rollout.aborting"], [], [], ["rollout.aborted"]], said
    assert router.weights == STABLE_ONLY and _posts(order) == ["aborted"], order


def test_an_end_posted_for_a_deleted_canaryrollout_is_forgotten_with_it() -> None:
    """`_ends_posted` (which end of a rollout was posted at its write) was emptied by `_record` alone; the ends that
    `_deleted` and `_failed` without a readable policy post (decision 736) are never `_record`ed, so a key stayed for
    every CanaryRollout deleted mid-rollout, for the process's life (a long-running controller must not grow:
    `_forget`). Forgotten with the rest of what the process keeps of the rollout (decision 754)."""
    from canary.controller import FINALIZER

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order)
    obj = _driving(fleet.rollout_object(0, "v2"))
    obj["metadata"].update(finalizers=[FINALIZER], deletionTimestamp="2026-12-06T20:00:00Z")
    op.custom = _Custom(obj)
    op._advance_one(obj)
    assert _posts(order) == ["aborted"] and router.weights == STABLE_ONLY, order
    assert spec.key not in op._ends_posted, op._ends_posted


def test_an_end_stable_if_ours_lands_whose_rule_is_gone_is_counted_once() -> None:
    """Stable 100% and the end landed, then the stable subset's pointing failed (its DestinationRule deleted:
    RollbackFailed, paged by the executor): 736 posted such an end at its write but counted it only after
    `_stable_if_ours` returned, which it never did, and the next tick finds the route ended ("ended") and counts
    nothing: `canary_rollbacks_total` never had it, nor the rescued CanaryRollout its Event. Counted as it raises now,
    once over two ticks (decision 736, addendum)."""
    from canary.controller import FINALIZER
    from canary.errors import NotFound, TargetError

    def deleted(*args: Any, **kw: Any) -> None:
        raise NotFound('destinationrules.networking.istio.io "m0" not found')

    for end, cause in (("failed tick", "infrastructure"), ("deleted", "operator")):
        order: list[tuple[str, str]] = []
        op, router, spec, _ = _rolling_back(order, Telemetry())
        router.point_subset = deleted  # type: ignore[method-assign]
        obj = _driving(fleet.rollout_object(0, "v2"))
        obj["metadata"]["finalizers"] = [FINALIZER]
        if end == "deleted":
            obj["metadata"]["deletionTimestamp"] = "2026-12-06T20:00:00Z"
        op.custom = _Custom(obj)
        for _ in range(2):
            if end == "deleted":
                op._advance_one(obj)
            else:
                op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
            op.clock.t += 10.0
        assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED, end
        assert _posts(order) == ["aborted"], (end, order)
        assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason=cause) == 1, end
        assert order.count(("event", "RolloutAborted")) == (end == "failed tick"), (end, order)


def test_an_end_typed_over_a_split_is_posted_at_its_write_counted_and_in_its_history() -> None:
    """An end typed into the CanaryRollout's record over weights that still split (`canary.unowned`) is ended by the
    controller's tick (`_unowned_end`: stable 100%, recorded aborted). That end was written by `unowned.end` alone:
    never posted, counted, given its CanaryRollout's Event nor written into the rollout's history, where every other
    end of the controller's was. Now as every end (`_do`): posted at its write, before its Event, once (decision 774)."""
    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    typed = rl.RolloutState.from_json(router.state)
    router.state = replace(typed, phase=rl.ROLLED_BACK).to_json()  # typed by hand, its weights still 90/10
    vs_event = router.record_event
    router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])), vs_event(target, **kw))[1]
    obj = _driving(fleet.rollout_object(0, "v2"))
    op.custom = _Custom(obj)
    status = router.inspect(spec.target)
    op._unowned_end(obj, spec, rl.RolloutState.from_json(router.state), status, log=op.log)
    assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED
    assert _posts(order) == ["aborted"], order
    assert order.index(("notify", "aborted")) < order.index(("vs-event", "RolloutAborted")), order
    assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason="foreign_edit") == 1
    assert ("event", "RolloutAborted") in order and "history" in [k for k, _ in order], order


@pytest.mark.parametrize("end", ["restored", "deleted", "failed tick", "policy unreadable"])
def test_the_ends_stable_if_ours_and_end_restored_write_are_in_the_rollouts_history(end: str) -> None:
    """The ends `_end_restored` (a finished CanaryRollout's route restored mid-rollout), `_deleted` (a CanaryRollout
    deleted mid-rollout) and `_rescue` (a failed tick of a process with nothing of the rollout in memory) write were
    posted and counted (decision 736) but never written into the rollout's history: `canary report` showed it still
    in progress. Now as every end (decision 776); where the policy no longer reads (the history names its steps and
    checks), `history.end_unwritten` says the end is not in it."""
    from canary.controller import FINALIZER
    from canary.errors import TargetError

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    obj = _driving(fleet.rollout_object(0, "v2"), **({"phase": rl.ABORTED} if end == "restored" else {}))
    obj["metadata"]["finalizers"] = [FINALIZER]
    if end == "policy unreadable":
        obj["spec"]["policy"] = {"steps": "not a list"}
    op.custom = _Custom(obj)
    with structlog.testing.capture_logs() as logs:
        if end == "restored":
            assert op._end_restored(obj, spec, rl.RolloutState.from_json(router.state), router.state)
        elif end == "deleted":
            op._deleted(obj)
        else:
            op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
    assert rl.RolloutState.from_json(router.state).phase == rl.ABORTED and _posts(order) == ["aborted"], order
    unwritten = [e for e in logs if e["event"] == "history.end_unwritten"]
    if end == "policy unreadable":  # no policy to name: said, not written
        assert "history" not in [k for k, _ in order] and len(unwritten) == 1, order
    elif end == "deleted":  # written, answered 500: no tick of a deleted rollout writes it again, and that is said
        assert "history" in [k for k, _ in order] and len(unwritten) == 1, order  # (776, addendum: it was not)
        assert unwritten[0]["rollout"] == spec.key and unwritten[0]["error"].startswith("KubeUnavailable"), unwritten
        assert spec.key not in op._histories
    else:  # written (the recorder's store notes each write; this one answers 500, a retry's business)
        assert "history" in [k for k, _ in order] and not unwritten, order


@pytest.mark.parametrize("failure", ["look refused", "route deleted"])
def test_an_end_the_failed_ticks_write_is_in_the_history_as_its_own_end(failure: str) -> None:
    """`_failed`'s ends (stable 100% after a failing tick; the VirtualService deleted under it) were observed into the
    history with no actions: recorded as `rollout.phase_changed`, the history's word for a change another process
    made, not as the `rollout.aborted` every end `_do` writes is recorded with (decision 778)."""
    from canary.controller import _Known
    from canary.errors import NotFound, TargetError

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order)
    state = rl.RolloutState.from_json(router.state)
    op._known[spec.key] = _Known(spec, state)
    op._histories[spec.key].observe(state)  # what it recorded of the rollout so far
    obj = _driving(fleet.rollout_object(0, "v2"))
    op.custom = _Custom(obj)
    op._failed(obj, TargetError("the look's query was refused: bad_data") if failure == "look refused" else
               NotFound('virtualservices.networking.istio.io "m0" not found'))
    events = [e["event"] for e in op._histories[spec.key]._events]  # kept: its store answers 500
    assert "rollout.aborted" in events and "rollout.phase_changed" not in events, events


def test_an_end_confirmed_late_is_in_the_history_once_as_its_own_end() -> None:
    """A rollback whose stable 100% landed and whose stable subset's pointing then failed (a 503: `_do` raised) is
    found landed at the next tick (`_confirm_end`), which writes it into the history with its lines. That tick's
    `_advance` had observed the very record first as an outside change: the history said `rollout.phase_changed`
    (another process's edit: a `canary rollback`, a hand edit) and then `rollback.completed`, one end twice, the
    first in the word 778 took off `_failed`'s ends (decision 786; fails without: `rollout.phase_changed`). The real
    ConfigMap API (the emulator) holds the history."""
    from kubernetes.client import CoreV1Api

    from canary.controller import _owner
    from canary.errors import KubeUnavailable
    from canary.history_store import load_history

    api = fleet.start_api(1)
    try:
        op, router, spec, _ = _rolling_back([])
        op.core = CoreV1Api(api.api_client())
        op._histories.pop(spec.key)  # followed by this process, its history in the emulator's ConfigMap
        obj = _driving(fleet.rollout_object(0, "v2"))
        op.custom = _Custom(obj)
        state = replace(rl.RolloutState.from_json(router.state), owner=_owner(obj))
        router.state = state.to_json()
        op._observe(spec, state)
        new, actions = rl.transition(state, rl.Rollback(10.0, "operator: latency page"), spec.policy)
        pointed = router.point_subset

        def down(*args: Any, **kw: Any) -> None:
            raise KubeUnavailable("503 (the API server restarting)")

        router.point_subset = down  # type: ignore[method-assign]
        with pytest.raises(KubeUnavailable):
            op._do(spec, new, actions, expect=router.state, log=op.log)
        router.point_subset = pointed  # type: ignore[method-assign]
        with structlog.testing.capture_logs() as logs:
            op._advance(obj)
        assert "rollout.end_confirmed" in [e["event"] for e in logs], logs
        events = [(e["event"], e["phase"]) for e in load_history(op.core, "ml", "m0", "m0")["events"]]
        assert events.count(("rollback.completed", rl.ROLLED_BACK)) == 1, events
        assert "rollout.phase_changed" not in [e for e, _ in events], events
    finally:
        api.stop()



def test_an_end_of_a_split_nobody_owns_confirmed_late_says_split_unowned() -> None:
    """`_unowned_end`'s write landed and what followed it failed (the stable subset's pointing: 503), so `_do` left it
    to the next tick's `_confirm_end`, which said the end's lines (`rollout.aborted`, `confirmed_late`) but not its
    `rollout.split_unowned`: the one line that says the split was nobody's and why it went to stable (decision 812)."""
    from canary.errors import KubeUnavailable

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    router.state = replace(rl.RolloutState.from_json(router.state), phase=rl.ROLLED_BACK).to_json()  # typed at 90/10
    obj = _driving(fleet.rollout_object(0, "v2"))
    op.custom = _Custom(obj)
    pointed = router.point_subset

    def down(*args: Any, **kw: Any) -> None:
        raise KubeUnavailable("503 (the API server restarting)")

    router.point_subset = down  # type: ignore[method-assign]
    log = op._rollout_log(spec)
    with structlog.testing.capture_logs() as first:
        op._unowned_end(obj, spec, rl.RolloutState.from_json(router.state), router.inspect(spec.target), log=log)
    assert router.weights == STABLE_ONLY and spec.key in op._unconfirmed
    assert not [e for e in first if e["event"] == "rollout.split_unowned"]
    router.point_subset = pointed  # type: ignore[method-assign]
    tried, actions, _, landed = op._unconfirmed.pop(spec.key)
    with structlog.testing.capture_logs() as logs:
        op._confirm_end(spec, rl.RolloutState.from_json(router.state), tried, actions, log=log, landed=landed)
    said = [e for e in logs if e["event"] == "rollout.split_unowned"]
    assert len(said) == 1 and said[0]["confirmed_late"] is True and said[0]["by"] == "controller", said
    assert said[0]["model"] == "m0" and said[0]["log_level"] == "warning" and "90/10" in said[0]["from_weights"], said
    assert _posts(order) == ["aborted"], order  # posted at its write, not again


def test_an_end_whose_status_write_failed_where_no_policy_reads_is_mirrored_at_the_next_failed_tick() -> None:
    """`_failed` with nothing of the rollout in memory and a policy that does not read (a policyRef ConfigMap edited
    to a typo, then the process restarted) sends the split to stable 100% (`_stable_if_ours`) and writes the status
    (`_ended_status`). That status write failing (a 503 once), every later tick found the route "ended" and did
    nothing: the CanaryRollout said `progressing` 90/10 for ever over a route at stable 100%, though `rescue.failed`
    said "the next tick tries again". An end this process told is mirrored now; one it did not tell (another writer's)
    is left for the tick that reads the policy to tell (decision 810: a status that shows an end is the mark "told")."""
    from canary.errors import TargetError, TransientError

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    obj = _driving(fleet.rollout_object(0, "v2"))
    obj["spec"]["policy"] = {"steps": "not a list"}  # `_failed`'s branch where no spec parses
    custom = op.custom = _Custom(obj)
    failing = [1]

    def status_write(*args: Any, **kw: Any) -> dict[str, Any]:
        if "phase" in args[-1]["status"] and failing:
            failing.pop()
            raise TransientError("503 Service Unavailable")
        return obj

    custom.patch_namespaced_custom_object_status = status_write  # type: ignore[method-assign]
    for _ in range(2):
        op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
        op.clock.t += 10.0
    assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED
    assert obj["status"]["phase"] == rl.ABORTED and obj["status"]["weights"] == {"stable": 100, "canary": 0}, obj
    assert obj["status"]["endCause"] == "infrastructure", obj["status"]
    assert _posts(order) == ["aborted"], order  # told once, at its write

    # another writer's end (a `canary rollback`) found the same way is not mirrored untold
    order.clear()
    op, router, spec, _ = _rolling_back(order, Telemetry())
    ended = replace(rl.RolloutState.from_json(router.state), phase=rl.ROLLED_BACK, weights=STABLE_ONLY,
                    reason="rolled back by canary rollback")
    router.state, router.weights = ended.to_json(), STABLE_ONLY
    obj = _driving(fleet.rollout_object(0, "v2"))
    obj["spec"]["policy"] = {"steps": "not a list"}
    op.custom = _Custom(obj)
    op._failed(obj, TargetError("the look's query was refused: bad_data (a policy edited to a bad query)"))
    assert obj["status"]["phase"] == rl.PROGRESSING and _posts(order) == [], (obj["status"], order)


def test_its_own_end_confirmed_late_by_an_edits_rescue_is_confirmed_not_told_as_another_writers() -> None:
    """A rollback whose stable 100% landed and whose stable subset's pointing then failed (`_do` raised: kept in
    `_unconfirmed`, not posted), then the spec edited to another canary version before the next tick: that tick's
    `_advance` supersedes through `_rescue`, which finds the route "ended" and told every end `_told_ends` does not
    hold as another writer's (decision 810): `rollout.ended_outside` "by another writer than the controller", its post
    "(ended by another writer ...)", of this very process's end. It is confirmed as `_advance` confirms it
    (`_confirm_end`: `rollout.end_confirmed`, posted once as its own)."""
    from canary.controller import _drives
    from canary.errors import KubeUnavailable

    order: list[tuple[str, str]] = []
    op, router, spec, (new, actions) = _rolling_back(order, Telemetry())
    obj = _driving(fleet.rollout_object(0, "v2"))
    op.custom = _Custom(obj)
    written = router.set_weights

    def lost(*args: Any, **kw: Any) -> Any:  # the record's write lands, its answer is lost
        written(*args, **kw)
        raise KubeUnavailable("503 (the API server restarting)")

    router.set_weights = lost  # type: ignore[method-assign]
    with pytest.raises(KubeUnavailable):
        op._do(spec, new, actions, expect=router.state, log=op.log)
    router.set_weights = written  # type: ignore[method-assign]
    assert spec.key in op._unconfirmed and _posts(order) == [], order
    obj["spec"]["canaryVersion"] = "v3"  # edited: the rollout of v2 is superseded (`_rescue` of what it drove)
    with structlog.testing.capture_logs() as logs:
        assert op._rescue(obj, crd.parse(obj), _drives(spec), reason="superseded: spec.canaryVersion changed",
                          log=op.log, cause="operator") == "ended"
    said = [e["event"] for e in logs]
    assert "rollout.ended_outside" not in said and "rollout.end_confirmed" in said, said
    assert _posts(order) == ["rollback"], order
    assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason="operator") == 1
    assert spec.key not in op._unconfirmed


def test_another_writers_end_found_by_a_failed_tick_is_told_once() -> None:
    """A rollout this process follows (in memory at 90/10), its ticks failing (the route's objects refused), while
    on-call's `canary rollback` ends it: the failed tick's `_taken_over` finds the route ended, said it at `info`
    (`rollout.ended_elsewhere`) and mirrored it on the status, which is 810's mark "told": never posted, counted nor
    in the history, where `_advance` and `_rescue` tell such an end (`rollout.ended_outside`). Told there too now,
    once (the next failed tick mirrors it)."""
    from canary.controller import _Known
    from canary.errors import TargetError

    order: list[tuple[str, str]] = []
    op, router, spec, _ = _rolling_back(order, Telemetry())
    state = rl.RolloutState.from_json(router.state)
    op._known[spec.key] = _Known(spec, state)
    obj = _driving(fleet.rollout_object(0, "v2"))
    op.custom = _Custom(obj)
    ended = replace(state, phase=rl.ROLLED_BACK, weights=STABLE_ONLY, updated_at=5.0,
                    reason="operator: rolled back by `canary rollback`", end_cause="operator")
    router.state, router.weights = ended.to_json(), STABLE_ONLY  # on-call's rollback, another writer
    said = []
    for _ in range(2):
        with structlog.testing.capture_logs() as logs:
            op._failed(obj, TargetError("ml/m0 (destinationrules): the stable subset is missing"))
        said += [e for e in logs if e["event"] == "rollout.ended_outside"]
        op.clock.t += 10.0
    assert len(said) == 1 and said[0]["model"] == "m0" and said[0]["hint"], said
    assert _posts(order) == ["rollback"], order
    assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason="operator") == 1
    assert obj["status"]["phase"] == rl.ROLLED_BACK

"""A revert that lands after a look's read of the route and before the look's own write (decision 185).

Decision 171 reads the route again after a look measured and judges the look only when it still carries our
weights and our record. A revert landing after that read (a person's `kubectl edit`, an Argo CD or Flux sync that
keeps canary's record annotation) was then written over by the look's write: `set_weights` re-reads the route
inside its write and its only guard was the record's text, which such a revert keeps. The revert was lost, never
counted, and the step advanced (or the canary was promoted) on a look whose weights nobody confirmed at write time.
Now the look's write lands only on the weights it was judged at (`expect_weights`, checked at every attempt's
read, a 409 retry's included), and a write refused so is handled as the read after the look would have handled the
revert: `look.discarded`, the weights reasserted with the window started over and the revert counted (stable 100%
at the third in a row). A stable-100% write is never refused for it.

The revert is made to land exactly there, with no timing: a wrapper on the router's `set_weights` applies it before
the real write reads the route (`_reverting`), or a wrapper on its PUT applies it between the write's read and its
PUT (409, then the retry's re-read finds it). Real Kubernetes API emulator and IstioRouter; promote on fake
metrics that follow the live weights and a fake clock, the controller on the real backfilled Prometheus (the
fixtures of test_promote_route_safety.py and test_controller.py, as test_gitops_revert.py uses them).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Callable

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401 - fixtures
from tests.integration.test_gitops_revert import _git_manifest, _progressing_under_git
from tests.integration.test_promote_route_safety import GROUP, HookClock, api, record, routes, runner  # noqa: F401

pytestmark = pytest.mark.integration

# which weights write of a look the revert lands in front of: (the record the write carries, the record on the
# route now) -> True to revert now
Which = Callable[[dict[str, Any], dict[str, Any]], bool]


def _records_a_look(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Any write that records a look judged (a hold, a failed look, a next step, the promotion's 100%)."""
    return new.get("look", 0) > old.get("look", 0)


def _advances_the_step(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """A look's write taking the next step (not the first step's, which no look decides)."""
    return new.get("phase") == old.get("phase") == rl.PROGRESSING and new.get("step", 0) > old.get("step", 0)


def _promotes(new: dict[str, Any], old: dict[str, Any]) -> bool:
    return new.get("phase") == rl.PROMOTING and old.get("phase") == rl.PROGRESSING


def _reverting(api: Any, router: Any, revert: Callable[[], Any], which: Which, *, times: int = 1) -> list[str]:
    """Wrap `router.set_weights`: before a write `which` picks (at most `times` of them) reaches the real router,
    `revert` lands through the API, after the look's read of the route. Returns the phases of the writes raced."""
    real = router.set_weights
    raced: list[str] = []

    def set_weights(t: Any, w: Any, *, state: str, **kw: Any) -> Any:
        new, vs_name = json.loads(state), t.virtual_service
        if len(raced) < times and which(new, record(api, vs_name)):
            raced.append(new["phase"])
            revert()
        return real(t, w, state=state, **kw)

    router.set_weights = set_weights
    return raced


def _hand_edit(api: Any, weights: tuple[int, int], name: str = "m0") -> Callable[[], Any]:
    """A person's `kubectl edit` of the route's weights (the record left as it is)."""
    def edit(o: dict[str, Any]) -> None:
        for d, w in zip(o["spec"]["http"][0]["route"], weights):
            d["weight"] = w
    return lambda: api.edit(GROUP, "virtualservices", "ml", name, edit)


def _policy() -> dict[str, Any]:
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["failure"]["no_data_deadline"] = "60s"  # a window started over still has time to show a pass
    return policy


@pytest.mark.parametrize("which", [_advances_the_step, _promotes], ids=["next-step", "promoting"])
def test_promote_never_advances_on_a_look_whose_write_met_a_revert(api: Any, which: Which) -> None:
    """The GitOps apply lands after the look's read and before the write that moves to the next step (or to the
    promotion's 100%): the write is refused, the look discarded, the revert reasserted and counted, and the step is
    taken later on looks judged at weights the route had. Before: the write put our weights over the revert, the
    step advanced, and nothing said the revert (no `weights.reasserted`)."""
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))
    git = _git_manifest(api)
    promote = runner(api, "v2", HookClock(api), policy=_policy())
    raced = _reverting(api, promote.router, lambda: api.gitops_apply(GROUP, "virtualservices", git), which)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert raced, "no look's write was raced"
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason
    events = [e["event"] for e in logs]
    assert "weights.reasserted" in events, sorted(set(events))
    first = events.index("weights.reasserted")
    discarded = [e for e in logs[:first] if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and discarded[0]["weights"] == str(rl.Weights(100, 0)), discarded
    assert "before the look's write" in discarded[0]["reason"], discarded
    # the look refused at its write said nothing of a judgement, and no step was taken on it
    assert events[first - 2:first] == ["look.discarded", "weights.foreign_edit"], events[first - 3:first + 1]
    moved = [i for i, e in enumerate(logs) if ((e["event"] == "step.advanced" and e["step"] == 2)
                                               if which is _advances_the_step else e["event"] == "rollout.promoting")]
    assert len(moved) == 1 and moved[0] > first, events
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1]


def test_promote_a_revert_between_the_writes_read_and_its_put_is_found_by_the_retry(api: Any) -> None:
    """The apply lands after the look's write read the route, before its PUT: 409, and the retry's re-read finds
    the revert: refused, discarded, reasserted, counted. Before: the retry re-applied our weights over it."""
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))
    git = _git_manifest(api)
    promote = runner(api, "v2", HookClock(api), policy=_policy())
    router, raced = promote.router, []
    real_set, real_put = router.set_weights, router._replace

    def set_weights(t: Any, w: Any, *, state: str, **kw: Any) -> Any:
        armed[0] = not raced and _advances_the_step(json.loads(state), record(api))
        return real_set(t, w, state=state, **kw)

    def put(*a: Any, **kw: Any) -> Any:
        if armed[0]:
            armed[0] = False
            raced.append(api.gitops_apply(GROUP, "virtualservices", git))
        return real_put(*a, **kw)

    armed = [False]
    router.set_weights, router._replace = set_weights, put
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert raced == [True]
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason
    events = [e["event"] for e in logs]
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1], sorted(set(events))
    first = events.index("weights.reasserted")
    assert "look.discarded" in events[:first], events[:first]
    assert not [e for e in logs[:first] if e["event"] == "step.advanced" and e["step"] == 2], events[:first]


def test_promote_under_reverts_at_every_looks_write_ends_at_stable_after_three(api: Any) -> None:
    """Every look's write meets a revert that landed after the look's read: no look is ever judged, each revert is
    counted, and the third ends the rollout at stable 100% (`weights.reverted`), as for reverts the reads find."""
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))
    git = _git_manifest(api)
    promote = runner(api, "v2", HookClock(api))
    raced = _reverting(api, promote.router, lambda: api.gitops_apply(GROUP, "virtualservices", git),
                       _records_a_look, times=10)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert len(raced) == 3, raced
    assert routes(api)[0] == [("stable", 100), ("canary", 0)] and record(api)["phase"] == rl.ABORTED
    assert record(api)["look"] == 0 and record(api)["step"] == 0, record(api)
    events = [e["event"] for e in logs]
    assert "look.completed" not in events and events.count("look.discarded") == 3, sorted(set(events))
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1, 2]
    assert events.count("weights.reverted") == 1


def test_promote_a_rollback_write_is_never_refused_for_a_revert(api: Any) -> None:
    """A slow canary: its first failed look's write meets a person's edit (90/10) and is refused (discarded,
    reasserted, counted); the look that rolls it back meets the same edit and its stable 100% lands all the same:
    rolled back, exit 1, stable 100%."""
    promote = runner(api, "v3", HookClock(api), slowdown=1.6)
    edit = _hand_edit(api, (90, 10))
    raced = _reverting(api, promote.router, edit, lambda new, old: _records_a_look(new, old) and (
        not raced or new["phase"] == rl.ROLLED_BACK), times=2)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert raced == [rl.PROGRESSING, rl.ROLLED_BACK], raced
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, (res.exit_code, res.state.reason)
    assert routes(api)[0] == [("stable", 100), ("canary", 0)] and record(api)["phase"] == rl.ROLLED_BACK
    events = [e["event"] for e in logs]
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1], sorted(set(events))
    assert events.count("look.discarded") == 1 and "rollback.completed" in events, events


def _tick_until(op: Any, api: Any, done: Callable[[], bool], ticks: int = 150) -> None:
    for _ in range(ticks):
        op.tick()
        if done():
            return
        time.sleep(0.1)
    pytest.fail(f"not done in {ticks} ticks: {vs(api, 0)}")


def test_the_controller_never_advances_on_a_look_whose_write_met_a_revert(world: Any) -> None:
    """The controller's look: the apply lands after `_route_moved` read the route, before the write that takes the
    next step. Refused: `look.discarded`, reasserted and counted, the window started over; the step is taken later,
    on a look judged at the weights the route had. Before: the step advanced over the revert, unseen."""
    api, op, custom = world
    git = _progressing_under_git(api, op, custom)
    raced = _reverting(api, op.router, lambda: api.gitops_apply(GROUP, "virtualservices", git), _advances_the_step)
    with structlog.testing.capture_logs() as logs:
        _tick_until(op, api, lambda: bool(raced) and vs(api, 0)[1].get("step", 0) > 0)
    events = [e["event"] for e in logs]
    assert "weights.reasserted" in events, sorted(set(events))
    first = events.index("weights.reasserted")
    discarded = [e for e in logs[:first] if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and "before the look's write" in discarded[0]["reason"], discarded
    assert discarded[0]["weights"] == str(rl.Weights(100, 0)), discarded
    advanced = [i for i, e in enumerate(logs) if e["event"] == "step.advanced" and e["step"] == 2]
    assert len(advanced) == 1 and advanced[0] > first, events
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1]
    weights, rec = vs(api, 0)
    assert rec["step"] == 1 and weights == [50, 50] and rec["phase"] == rl.PROGRESSING, (weights, rec)


def test_the_controller_under_reverts_at_every_looks_write_ends_at_stable_after_three(world: Any) -> None:
    api, op, custom = world
    git = _progressing_under_git(api, op, custom)
    looks = vs(api, 0)[1].get("look", 0)
    raced = _reverting(api, op.router, lambda: api.gitops_apply(GROUP, "virtualservices", git),
                       _records_a_look, times=10)
    with structlog.testing.capture_logs() as logs:
        _tick_until(op, api, lambda: vs(api, 0)[1]["phase"] in rl.TERMINAL)
    weights, rec = vs(api, 0)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED and len(raced) == 3, (weights, rec["phase"], raced)
    assert rec.get("look", 0) == looks, rec
    events = [e["event"] for e in logs]
    assert "look.completed" not in events and events.count("look.discarded") == 3, sorted(set(events))
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1, 2]
    assert events.count("weights.reverted") == 1
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.ABORTED and f"VirtualService ml/{fleet.model(0)}" in st["reason"], st


def test_the_controller_counts_no_verdict_for_a_look_whose_write_met_a_revert(world: Any) -> None:
    """`canary_verdicts_total` counts looks judged, as `look.completed` says them: three looks refused at their
    write (a GitOps revert before each, stable 100% after the third) count none. Before, `_look` counted each
    verdict before its write, so a dashboard or an alert on failed verdicts saw looks nobody recorded."""
    from canary.telemetry import Telemetry

    api, op, custom = world
    git = _progressing_under_git(api, op, custom)
    op.telemetry = Telemetry()
    raced = _reverting(api, op.router, lambda: api.gitops_apply(GROUP, "virtualservices", git),
                       _records_a_look, times=10)
    with structlog.testing.capture_logs() as logs:
        _tick_until(op, api, lambda: vs(api, 0)[1]["phase"] in rl.TERMINAL)
    events = [e["event"] for e in logs]
    assert len(raced) == 3 and events.count("look.discarded") == 3 and "look.completed" not in events, events
    counted = op.telemetry.check_rows()[0]  # each check's outcomes at 0 from the first status on (553's addendum)
    assert counted and all(n == 0 for _, (n, _) in counted), counted


def test_the_controller_a_rollback_write_is_never_refused_for_a_revert(world: Any) -> None:
    """A slow canary under the controller: its first failed look's write meets a person's edit (90/10): refused,
    discarded, reasserted and counted; the look that rolls it back meets the same edit and its stable 100% lands."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    raced = _reverting(api, op.router, _hand_edit(api, (90, 10), fleet.model(0)),
                       lambda new, old: _records_a_look(new, old) and (not raced or new["phase"] == rl.ROLLED_BACK),
                       times=2)
    with structlog.testing.capture_logs() as logs:
        _tick_until(op, api, lambda: vs(api, 0)[1]["phase"] in rl.TERMINAL)
    weights, rec = vs(api, 0)
    assert raced == [rl.PROGRESSING, rl.ROLLED_BACK] and weights == [100, 0], (raced, weights)
    assert rec["phase"] == rl.ROLLED_BACK, rec
    events = [e["event"] for e in logs]
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1], sorted(set(events))
    assert events.count("look.discarded") == 1 and "rollback.completed" in events, events


def _router(api: Any) -> tuple[Any, Any]:
    """An IstioRouter on `api` (no wait between 409 retries) and the Target of route ml/m0, v1 -> v2."""
    import tenacity

    from canary.model import Target
    from canary.routing.istio import IstioRouter

    return (IstioRouter(api.api_client(), wait=tenacity.wait_none()),
            Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2"))


def test_the_routers_weights_guard_refuses_a_split_and_never_stable_100(api: Any) -> None:
    """`IstioRouter.set_weights(expect_weights=)`: refused, with nothing written, when the route's weights are not
    those; a stable-100% write over the same weights lands."""
    from canary.errors import WeightsMoved
    from canary.model import STABLE_ONLY

    router, target = _router(api)
    _hand_edit(api, (70, 30))()
    before = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["resourceVersion"]
    with pytest.raises(WeightsMoved) as refused:
        router.set_weights(target, rl.Weights(50, 50), state="{}", expect_weights=rl.Weights(80, 20))
    assert refused.value.found == str(rl.Weights(70, 30)), refused.value.found
    assert api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["resourceVersion"] == before
    router.set_weights(target, STABLE_ONLY, state="{}", expect_weights=rl.Weights(80, 20))
    assert routes(api)[0] == [("stable", 100), ("canary", 0)]


def test_the_routers_weights_guard_takes_no_stale_cached_copy_for_a_revert(api: Any) -> None:
    """The controller seeds the write's first read from its informers' cache, which may be behind the API server: a
    cached copy at other weights is read again from the API server (as a 409 would), not taken for a revert."""
    router, target = _router(api)
    stale = copy.deepcopy(api.get(GROUP, "virtualservices", "ml", "m0"))  # 100/0, as the cache still holds it
    _hand_edit(api, (80, 20))()  # the API server's: what the look's read found
    router.seed([("virtualservices", stale)])
    router.set_weights(target, rl.Weights(50, 50), state="{}", expect_weights=rl.Weights(80, 20))
    assert routes(api)[0] == [("stable", 50), ("canary", 50)]


def test_promote_a_look_whose_write_meets_another_writers_record_says_no_judgement(api: Any) -> None:
    """On-call's `canary pause` lands after the look's read and before its write: the write is refused (the record
    guard) and the pause adopted, as before; the look was never recorded, and now never said it was judged (no
    `look.completed`, no `check.failed` for it: alerts keyed on them fired for a look nobody counted), but
    `look.discarded` (decision 186)."""
    import tenacity

    from canary.logs import get
    from canary.model import Target
    from canary.routing.istio import IstioRouter
    from canary.runner import oncall_action

    clock = HookClock(api)
    promote = runner(api, "v2", clock, on_interrupt="pause")
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    pause = lambda: oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,  # noqa: E731
                                  rl.Pause(clock.now(), "on-call: hold"), log=get())
    raced = _reverting(api, promote.router, pause,
                       lambda new, old: _records_a_look(new, old) and old.get("look", 0) >= 1)
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PAUSED, promote.stop.set))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert raced == [rl.PROGRESSING] and res.state.phase == rl.PAUSED, (raced, res.state.phase, res.state.reason)
    events = [e["event"] for e in logs]
    assert "rollout.changed_outside" in events, sorted(set(events))
    assert events.count("look.completed") == record(api)["look"] == 1, (events, record(api)["look"])
    discarded = [e for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and "record" in discarded[0]["reason"], discarded


def test_the_controller_a_look_whose_write_meets_another_writers_record_says_no_judgement(world: Any) -> None:
    """A foreign writer re-serialises the record (the same state in another text) after `_route_moved` read it,
    before the look's write: refused, as before, and adopted at the next tick; the refused look said nothing of a
    judgement (decision 186): every `look.completed` is a look the record counts."""
    from tests.integration.test_look_discard_cache import _reserialised

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    looks = vs(api, 0)[1].get("look", 0)
    raced = _reverting(api, op.router, lambda: api.edit(GROUP, "virtualservices", "ml", fleet.model(0), _reserialised),
                       _records_a_look)
    with structlog.testing.capture_logs() as logs:
        _tick_until(op, api, lambda: bool(raced) and vs(api, 0)[1].get("look", 0) >= looks + 2)
    events = [e["event"] for e in logs]
    discarded = [e for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and "record" in discarded[0]["reason"], events
    assert events.count("look.completed") == vs(api, 0)[1]["look"] - looks, (events, vs(api, 0)[1]["look"], looks)

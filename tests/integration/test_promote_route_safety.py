"""`canary promote`'s writes that must never land, and the stable-100% writes that must: a stalled
promote waking after another version's finished promotion, a signal before any traffic moved, an
on-call pause racing a decided rollback, a route edited into a shape no rollout starts from.

Real Kubernetes API emulator and IstioRouter; metrics from a fake provider on a fake clock that
sees the cluster's weights; every race is injected at a fixed point (a hook on the fake clock's
sleep, or right before a write), never timed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any, Callable

import pytest
import structlog.testing
import tenacity

from canary import rollout as rl
from canary.errors import KubeUnavailable
from canary.logs import get
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Runner, oncall_action
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.integration.test_controller_route_deleted import _delete
from tests.integration.test_notify_health import receiver  # noqa: F401
from tests.support.killpoints import LiveWeights

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
Hook = tuple[Callable[[dict[str, Any]], bool], Callable[[], None]]


class HookClock(FakeClock):
    """A fake clock that fires each hook once, at the first sleep where its predicate holds on the
    route's recorded state."""

    def __init__(self, api: Any, vs: str = "m0") -> None:
        super().__init__()
        self.api, self.vs, self.hooks = api, vs, []  # type: list[Hook]

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        rec = record(self.api, self.vs)
        for hook in list(self.hooks):
            if hook[0](rec):
                self.hooks.remove(hook)
                hook[1]()

    def split_while_progressing(self, namespace: str, name: str) -> None:
        """Once the rollout is progressing, another VirtualService `namespace/name`'s first route is edited to
        split 90/10 between its two destinations (a person's or a GitOps sync's split with the canary subset)."""
        from canary import rollout as rl

        def split() -> None:
            def edit(vs: dict[str, Any]) -> None:
                vs["spec"]["http"][0]["route"][0]["weight"], vs["spec"]["http"][0]["route"][1]["weight"] = 90, 10
            self.api.edit(GROUP, "virtualservices", namespace, name, edit)
        self.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING, split))


def record(api: Any, name: str = "m0") -> dict[str, Any]:
    vs = api.get(GROUP, "virtualservices", "ml", name)
    return json.loads((vs["metadata"].get("annotations") or {}).get("modelcanary.dev/rollout") or "{}")


def routes(api: Any) -> list[list[tuple[Any, Any]]]:
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    return [[(d["destination"].get("subset"), d.get("weight")) for d in r["route"]] for r in vs["spec"]["http"]]


def subsets(api: Any) -> dict[str, str]:
    dr = api.get(GROUP, "destinationrules", "ml", "m0")
    return {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}


def runner(api: Any, version: str, clock: FakeClock, *, slowdown: float = 1.0, route: str = "",
           policy: dict[str, Any] | None = None, **kw: Any) -> Runner:
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version=version,
                    route=route)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: slowdown, rps=1000.0)
    return Runner(policy=parse_policy(policy or fleet.FAST_POLICY), target=target, router=router, metrics=metrics,
                  clock=clock, **kw)


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(1)
    yield server
    server.stop()


def _rollback_then_promote_v3(api: Any, clock: HookClock) -> None:
    """On-call rolls the v2 rollout back, and another `canary promote` runs v3 to its promotion."""
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                  rl.Rollback(clock.now(), "operator: p95 alert"), log=get().bind(actor="on-call"))
    other = FakeClock(clock.now())
    assert runner(api, "v3", other).run().state.phase == rl.PROMOTED
    clock.t = other.now() + 5  # the stalled v2 process wakes up after all that


def _at_first_step(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda rec: rec.get("phase") == rl.PROGRESSING and rec.get("step") == 0 and \
        rec.get("canary_version") == version


def test_a_stalled_promote_leaves_another_versions_finished_promotion_alone(api: Any) -> None:
    """promote v2 stalls at 80/20; on-call rolls it back; promote v3 runs to `promoted` (both subsets
    on v3). The v2 process wakes: the route records another rollout (ended): it writes nothing and
    exits 3, taken over, saying who holds the route. (It re-pointed stable v3 -> v1 and recorded
    `aborted v2` over v3's promotion.)"""
    clock = HookClock(api)
    v2 = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: _rollback_then_promote_v3(api, clock)))
    with structlog.testing.capture_logs() as logs:
        res = v2.run()
    assert res.exit_code == 3 and res.state.reason.startswith("taken over: the route records another rollout of v3"), \
        res.state.reason
    assert subsets(api) == {"stable": "v3", "canary": "v3"} and record(api)["canary_version"] == "v3"
    assert record(api)["phase"] == rl.PROMOTED and routes(api) == [[("stable", 100), ("canary", 0)]]
    taken = [e for e in logs if e["event"] == "rollout.taken_over"]
    assert taken and taken[0]["recorded_canary_version"] == "v3" and "canary promote" in taken[0]["holder"]
    # nothing from the v2 process (the on-call rollback's own lines name v2 too: they are not its)
    assert not [e for e in logs if e.get("canary_version") == "v2" and e.get("actor") != "on-call" and (
        e["event"] == "rollout.aborting" or e["event"] == "subset.pointed" and e["subset"] == "stable")]


def test_the_fail_safe_never_writes_over_another_rollouts_record(api: Any) -> None:
    """The same stall, seen first by the fail-safe: the v2 process fails (an exception of any type)
    after v3's promotion ended. The fail-safe reads the route, finds another rollout recorded (ended),
    and writes nothing (its unguarded stable-100% write re-pointed stable at v1 under v3's promotion)."""
    clock = HookClock(api)
    v2 = runner(api, "v2", clock)
    fired: list[int] = []

    def update(state: rl.RolloutState) -> None:
        if state.phase == rl.PROGRESSING and not fired:
            fired.append(1)
            _rollback_then_promote_v3(api, clock)
            raise RuntimeError("a display bug")

    v2.on_update = update
    res = v2.run()
    assert fired and res.exit_code == 3 and res.state.reason.startswith("taken over: "), res.state.reason
    assert subsets(api) == {"stable": "v3", "canary": "v3"}
    assert record(api)["canary_version"] == "v3" and record(api)["phase"] == rl.PROMOTED


def test_the_fail_safe_keeps_its_own_rollout_ended_meanwhile(api: Any) -> None:
    """On-call rolled this very rollout back, then the process failed: the fail-safe adopts the
    rollback (exit 1, by its phase) and writes nothing over it."""
    clock = HookClock(api)
    v2 = runner(api, "v2", clock)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")

    def update(state: rl.RolloutState) -> None:
        if state.phase == rl.PROGRESSING:
            oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                          rl.Rollback(clock.now(), "operator: pager"), log=get())
            raise RuntimeError("a display bug")

    v2.on_update = update
    res = v2.run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK and res.state.reason == "operator: pager"
    assert record(api)["phase"] == rl.ROLLED_BACK and routes(api) == [[("stable", 100), ("canary", 0)]]


def _writes(v: Runner) -> list[tuple[str, str]]:
    """Every weights write the runner's router is asked for: (weights, recorded phase)."""
    seen: list[tuple[str, str]] = []
    real = v.router.set_weights

    def set_weights(t: Target, w: Any, *, state: str, expect_state: Any = ..., **kw: Any) -> Any:
        seen.append((str(w), json.loads(state)["phase"]))
        return real(t, w, state=state, expect_state=expect_state, **kw)

    v.router.set_weights = set_weights  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("mode", ["rollback", "pause"])
def test_a_signal_before_any_traffic_moved_moves_none(api: Any, mode: str) -> None:
    """SIGTERM while promote runs its Prometheus preflight (no Triton gate): nothing is written, in both
    modes (there is no split to hold), exit 3 "interrupted ... before the rollout began". It wrote 80/20 and,
    with pause, ended 80/20 paused; later the claim (100/0) and an aborted record (decision 131 c: the
    claim is not written after a signal)."""
    from canary.errors import CanaryError

    v = runner(api, "v2", FakeClock(), on_interrupt=mode)
    real = v.metrics.preflight

    def preflight(*a: Any, **kw: Any) -> Any:
        v.stop.set()  # what `canary promote`'s SIGINT/SIGTERM handler does
        return real(*a, **kw)

    v.metrics.preflight = preflight  # type: ignore[method-assign]
    writes = _writes(v)
    before = record(api)
    with pytest.raises(CanaryError, match=r"^interrupted \(a signal\) before the rollout began, .*; nothing was "
                                          r"written and no traffic moved$"):
        v.run()
    assert writes == [], writes
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api) == before


@pytest.mark.parametrize("mode", ["rollback", "pause"])
def test_a_signal_during_a_passing_look_never_writes_the_next_step(api: Any, mode: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal lands while the look that passes step 1 is judged: 50/50 is never written; the
    interrupt ends the rollout from 80/20 (paused there, exit 130; or stable 100%, exit 3)."""
    from canary.analysis import judge as judge_module  # the Runner imports it where it judges (decision 226)

    v = runner(api, "v2", FakeClock(), on_interrupt=mode)
    real_judge = judge_module.judge

    def judge(*a: Any, **kw: Any) -> Any:
        verdict = real_judge(*a, **kw)
        covered = v.clock.now() - v._current.step_started_at >= v.policy.analysis.interval
        if verdict.outcome.label == "pass" and covered:  # the look that passes the step
            v.stop.set()
        return verdict

    monkeypatch.setattr(judge_module, "judge", judge)
    writes = _writes(v)
    res = v.run()
    assert ("50/50", rl.PROGRESSING) not in writes, writes
    if mode == "pause":
        assert res.exit_code == 130 and writes[-1] == ("80/20", rl.PAUSED), writes
        assert routes(api) == [[("stable", 80), ("canary", 20)]]
    else:
        assert res.exit_code == 3 and writes[-1] == ("100/0", rl.ABORTED), writes
        assert routes(api) == [[("stable", 100), ("canary", 0)]]


@pytest.mark.parametrize("commands", [("pause",), ("pause", "resume")])
def test_a_pause_or_resume_landing_before_a_rollback_write_never_cancels_it(api: Any, commands: tuple[str, ...]) -> None:
    """v3 (60% slower) is shown bad; on-call's `canary pause` (and `resume`) lands right before the
    rollback's write. A rollback always wins: it reads the route again and writes stable 100% over
    the pause, with the breach recorded and logged (it adopted the pause: 80/20 paused for good, the
    breach recorded nowhere, no rollback.completed)."""
    clock = HookClock(api)
    v = runner(api, "v3", clock, slowdown=1.6)
    clock.hooks.append((lambda rec: clock.now() > 2_000, v.stop.set))  # the broken path waits paused for good
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v3")
    real = v.router.set_weights
    raced: list[str] = []

    def set_weights(t: Target, w: Any, *, state: str, expect_state: Any = ..., **kw: Any) -> Any:
        if json.loads(state)["phase"] == rl.ROLLED_BACK and not raced:
            for name in commands:
                event = rl.Pause(v.clock.now()) if name == "pause" else rl.Resume(v.clock.now())
                raced.append(oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target, event,
                                           log=get()).phase)
        return real(t, w, state=state, expect_state=expect_state, **kw)

    v.router.set_weights = set_weights  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert raced and res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    rec = record(api)
    assert rec["phase"] == rl.ROLLED_BACK and rec["reason"].startswith("latency-p95"), rec["reason"]
    events = [e["event"] for e in logs]
    assert "rollback.wins" in events and "rollback.completed" in events
    wins = next(e for e in logs if e["event"] == "rollback.wins")
    assert wins["recorded_phase"] == (rl.PAUSED if commands == ("pause",) else rl.PROGRESSING)


def _third_destination(vs: dict[str, Any]) -> None:
    vs["spec"]["http"][0]["route"].append({"destination": {"host": "m0", "subset": "shadow"}, "weight": 0})


def _canary_renamed(vs: dict[str, Any]) -> None:
    vs["spec"]["http"][0]["route"][1]["destination"]["subset"] = "canary-v2"


def _copy_same_weights(vs: dict[str, Any]) -> None:
    import copy

    debug = copy.deepcopy(vs["spec"]["http"][0])
    debug["name"], debug["match"] = "debug", [{"headers": {"x-dbg": {"exact": "1"}}}]
    vs["spec"]["http"].insert(0, debug)


SHAPES = {"a third destination (weight 0)": (_third_destination, [[("stable", 100), ("canary", 0), ("shadow", 0)]]),
          "the canary subset renamed": (_canary_renamed, [[("stable", 100), ("canary-v2", 0)]]),
          "a copy with a header match, same weights": (_copy_same_weights, [[("stable", 100), ("canary", 0)]] * 2)}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_fail_safe_writes_stable_100_on_a_route_of_any_shape(api: Any, shape: str) -> None:
    """The route edited at 80/20 into a shape no rollout starts from: the rollout cannot go on, and
    the fail-safe's stable 100% lands on the route it recorded (stable 100, every other destination 0)
    whatever else was edited: exit 3, aborted. (rollback.failed, exit 3, 80/20 left.) The end is a foreign edit,
    recorded so (`end_cause`, decision 608), though its reason reads "failed: ..." (infrastructure by its words)."""
    edit, want = SHAPES[shape]
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0", edit)))
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res
    assert routes(api) == want and record(api)["phase"] == rl.ABORTED
    assert record(api)["end_cause"] == "foreign_edit" and record(api)["reason"].startswith("failed: "), record(api)
    assert [e["end_cause"] for e in logs if e["event"] == "rollout.aborted"] == ["foreign_edit"]
    assert not [e for e in logs if e["log_level"] == "critical"], [e for e in logs if e["log_level"] == "critical"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_canary_rollback_writes_stable_100_on_a_route_of_any_shape(api: Any, shape: str, tmp_path: Any) -> None:
    """`canary rollback` on a rollout at 80/20 whose route was edited so: exit 0, stable 100 (it exited 2,
    "has 3 destinations, expected 2": bad input, traffic untouched, and 80/20 stayed)."""
    from typer.testing import CliRunner

    from canary.cli import app

    edit, want = SHAPES[shape]
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    state = v._preflight(v._start())
    assert state.weights.canary == 20
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)
    kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc), "--reason", "pager"])
    assert res.exit_code == 0, res.output
    # its line reads as promote's, the reason after " - " (it ran on: "(stable/canary) operator: pager")
    line = res.output.splitlines()[-1]  # the text line, after the log lines CliRunner mixes in
    assert line.startswith("rolled_back: weights 100/0 (stable/canary)") and line.endswith(") - operator: pager"), line
    assert routes(api) == want and record(api)["phase"] == rl.ROLLED_BACK


def test_when_stable_100_cannot_be_written_the_exit_code_and_a_critical_line_say_so(api: Any, tmp_path: Any) -> None:
    """The stable destination renamed in the VirtualService at 80/20: no route has a stable destination
    to send traffic to. promote's fail-safe and `canary rollback` both end with exit 6 (never 2, "bad
    input, untouched", nor 3, "100% stable") and the critical `traffic.unsafe` naming the
    VirtualService and the route."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.errors import TrafficUnsafe

    def stable_renamed(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = "stable-old"

    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0", stable_renamed)))
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe, match="route"):
        v.run()
    unsafe = [e for e in logs if e["event"] == "traffic.unsafe"]
    assert unsafe and unsafe[0]["log_level"] == "critical" and unsafe[0]["virtual_service"] == "m0"
    assert unsafe[0]["namespace"] == "ml" and unsafe[0]["model"] == "m0"  # as every line names them (decision 115)
    assert unsafe[0]["weights"].startswith("80/20") and "route" in unsafe[0]
    kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc)])
    assert res.exit_code == 6, res.output
    assert "traffic.unsafe" in res.output and routes(api) == [[("stable-old", 80), ("canary", 20)]]


# A second attacker of the route-of-any-shape writes (seventeenth session): the stable-100% write chose
# routes by subset names and weights only, so another model's route in the same VirtualService (a host
# of its own, subsets named alike) was sent to stable too, and a failover destination of another host
# with subset `stable` made stable 100% unwritable (exit 6, the canary kept 20%).
def _other_model(weights: tuple[int, int], *, ours_by_hand: bool = False) -> Callable[[dict[str, Any]], None]:
    def edit(vs: dict[str, Any]) -> None:
        host = "m1.ml.svc.cluster.local"
        vs["spec"]["http"].insert(0, {"name": "other-model", "match": [{"uri": {"prefix": "/v2/models/m1"}}],
                                      "route": [{"destination": {"host": host, "subset": "stable"}, "weight": weights[0]},
                                                {"destination": {"host": host, "subset": "canary"}, "weight": weights[1]}]})
        if ours_by_hand:  # on-call set the rollout's route to 100/0 by hand: no route holds the recorded 80/20
            vs["spec"]["http"][1]["route"][0]["weight"], vs["spec"]["http"][1]["route"][1]["weight"] = 100, 0
    return edit


@pytest.mark.parametrize(("theirs", "by_hand"), [((80, 20), False), ((50, 50), True)],
                         ids=["the other route at the recorded weights", "ours set to 100/0 by hand"])
def test_another_models_route_in_the_virtualservice_is_never_written(api: Any, theirs: tuple[int, int],
                                                                   by_hand: bool) -> None:
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"),
                        lambda: api.edit(GROUP, "virtualservices", "ml", "m0", _other_model(theirs, ours_by_hand=by_hand))))
    res = v.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res
    assert routes(api) == [[("stable", theirs[0]), ("canary", theirs[1])], [("stable", 100), ("canary", 0)]]


def test_a_stable_destination_of_another_host_gets_0_and_stable_100_is_written(api: Any) -> None:
    def failover(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"].append({"destination": {"host": "m0.ml-eu.svc.cluster.local", "subset": "stable"},
                                               "weight": 0})

    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0", failover)))
    res = v.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res  # was 6: "2 destinations with subset 'stable'"
    assert routes(api) == [[("stable", 100), ("canary", 0), ("stable", 0)]]


def test_a_rollback_ends_the_mirror_to_the_canary_and_keeps_a_mirror_elsewhere(api: Any) -> None:
    """A mirror to the canary subset survived the rollback: the canary a bad version was rolled back from
    kept a full copy of the traffic, and nothing said so."""
    def mirrors(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]
        route["mirror"], route["mirrorPercentage"] = {"host": "m0", "subset": "canary"}, {"value": 100.0}
        route["mirrors"] = [{"destination": {"host": "shadow.ml.svc.cluster.local"}, "percentage": {"value": 5.0}}]

    clock = HookClock(api)
    v = runner(api, "v3", clock, slowdown=2.0)
    clock.hooks.append((_at_first_step("v3"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0", mirrors)))
    res = v.run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, res
    route = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0]
    assert "mirror" not in route and "mirrorPercentage" not in route
    assert route["mirrors"] == [{"destination": {"host": "shadow.ml.svc.cluster.local"}, "percentage": {"value": 5.0}}]


def test_a_rollback_ends_a_mirror_to_the_canary_on_another_route_too(api: Any) -> None:
    """REST on `primary` (port 8000) is driven; the gRPC route (port 8001) mirrors half its traffic to the canary
    subset (a shadow of whatever it selects). The rollback wrote stable 100% on `primary`, took any split with the
    canary off the other routes (decision 556), and left the gRPC route mirroring 50% of its traffic to v3, the
    version just rolled back, which the canary subset still selects. Gone now, as from the driven route (decision
    78 c); another model's mirror to its own canary subset, and the route's other fields, stay (decision 577)."""
    grpc = {"name": "grpc", "match": [{"port": 8001}], "timeout": "3s",
            "route": [{"destination": {"host": "m0.ml.svc.cluster.local", "subset": "stable"}}],
            "mirror": {"host": "m0", "subset": "canary"}, "mirrorPercentage": {"value": 50.0}}
    theirs = {"name": "m1", "match": [{"port": 9000}], "route": [{"destination": {"host": "m1", "subset": "stable"}}],
              "mirrors": [{"destination": {"host": "m1", "subset": "canary"}}]}

    def shapes(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["match"] = [{"port": 8000}]
        vs["spec"]["http"] += [copy.deepcopy(grpc), copy.deepcopy(theirs)]

    api.edit(GROUP, "virtualservices", "ml", "m0", shapes)
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v3", FakeClock(), slowdown=2.0, route="primary").run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, res
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert routes(api)[0] == [("stable", 100), ("canary", 0)] and subsets(api)["canary"] == "v3"
    assert http[1] == {k: v for k, v in grpc.items() if k not in ("mirror", "mirrorPercentage")}, http[1]
    assert http[2] == theirs
    # on-call is told the rollback changed another route than its own (r-g's review of 577: it was silent)
    said = [e for e in logs if e["event"] == "rollback.other_routes"]
    assert len(said) == 1 and said[0]["routes"] == ["http[1] (grpc): its mirror to the canary removed"], said


def test_a_rollback_whose_answer_is_lost_still_says_the_other_routes_it_changed(api: Any) -> None:
    """The same rollback, its stable-100% write landed (the gRPC route's mirror to the canary removed) and its
    answer lost (a timeout). The fail-safe's retry finds those changes already made and says nothing of them (588),
    so on-call never read that the gRPC route's shadow traffic was gone. The failed write says what it may have
    changed beyond its route, once, with `write_landed` (decision 589)."""
    grpc = {"name": "grpc", "match": [{"port": 8001}],
            "route": [{"destination": {"host": "m0.ml.svc.cluster.local", "subset": "stable"}}],
            "mirror": {"host": "m0", "subset": "canary"}, "mirrorPercentage": {"value": 50.0}}

    def shapes(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["match"] = [{"port": 8000}]
        vs["spec"]["http"].append(copy.deepcopy(grpc))

    api.edit(GROUP, "virtualservices", "ml", "m0", shapes)
    v3 = runner(api, "v3", FakeClock(), slowdown=2.0, route="primary")
    real, lost = v3.router._replace, []  # type: ignore[attr-defined]

    def replace_then_lose(plural: str, ns: str, name: str, body: dict[str, Any]) -> Any:
        out = real(plural, ns, name, body)
        state = body["metadata"].get("annotations", {}).get("modelcanary.dev/rollout", "{}")
        if not lost and plural == "virtualservices" and json.loads(state).get("phase") == rl.ROLLED_BACK:
            lost.append(state)
            raise KubeUnavailable("the API server did not answer in time (the write may have landed)")
        return out

    v3.router._replace = replace_then_lose  # type: ignore[attr-defined]
    with structlog.testing.capture_logs() as logs:
        res = v3.run()
    assert lost and res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, res
    assert "mirror" not in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][1]
    said = [e for e in logs if e["event"] == "rollback.other_routes"]
    assert [e["routes"] for e in said] == [["http[1] (grpc): its mirror to the canary removed"]], said
    assert said[0]["write_landed"].startswith("unknown"), said


def test_a_rollback_keeps_a_mirror_to_another_subset_of_the_service_on_another_route(api: Any) -> None:
    """The gRPC route mirrors to subset `shadow` of the same service (a shadow-testing tool's, set on purpose; not
    the canary subset): decision 577 removed it with the mirror to the canary, as it does on the driven route,
    while docs/reference/cluster.md, "What canary writes, and in which order" and 577 say the mirrors to the canary
    subset go. On a route the rollout does not drive, only a mirror to the `canary` subset goes now (decision
    584)."""
    grpc = {"name": "grpc", "match": [{"port": 8001}],
            "route": [{"destination": {"host": "m0.ml.svc.cluster.local", "subset": "stable"}}],
            "mirror": {"host": "m0", "subset": "shadow"}, "mirrorPercentage": {"value": 50.0},
            "mirrors": [{"destination": {"host": "m0", "subset": "shadow"}},
                        {"destination": {"host": "m0", "subset": "canary"}}]}

    def shapes(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["match"] = [{"port": 8000}]
        vs["spec"]["http"].append(copy.deepcopy(grpc))

    api.edit(GROUP, "virtualservices", "ml", "m0", shapes)
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v3", FakeClock(), slowdown=2.0, route="primary").run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, res
    assert routes(api)[0] == [("stable", 100), ("canary", 0)]
    assert [e["routes"] for e in logs if e["event"] == "rollback.other_routes"] == [
        ["http[1] (grpc): its mirror to the canary removed"]]
    kept = {**grpc, "mirrors": grpc["mirrors"][:1]}  # the canary's entry alone went
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][1] == kept


def test_the_sweep_says_so_when_stable_100_cannot_be_written(api: Any) -> None:
    """An abandoned rollout at 80/20 whose route's stable destination was renamed: `sweep.end` (what `canary
    sweep` and the controller call) raised a TargetError that `canary sweep` reported as exit 3, with no
    `traffic.unsafe`; it is TrafficUnsafe (exit 6) with the critical line, as promote and rollback say it."""
    from canary import sweep as sw
    from canary.errors import TrafficUnsafe

    clock = HookClock(api)
    v = runner(api, "v2", clock)
    state = v._preflight(v._start())
    assert state.weights.canary == 20
    text = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"]["modelcanary.dev/rollout"]

    def renamed(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = "primary"

    api.edit(GROUP, "virtualservices", "ml", "m0", renamed)
    found = sw.Found(namespace="ml", virtual_service="m0", record=rl.RolloutState.from_json(text), text=text,
                     reason="its owner is gone")
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe, match="may still be split"):
        sw.end(router, found, log=get(), now=clock.now())
    assert [e["log_level"] for e in logs if e["event"] == "traffic.unsafe"] == ["critical"]
    assert routes(api) == [[("primary", 80), ("canary", 20)]]


# A promote re-run on a VirtualService of two HTTP routes (decision 82): the resume took up the recorded
# rollout on whatever route its own --route named, never comparing it with the one the record drives. Claimed
# and split on `primary` (80/20) and killed, a re-run with --route secondary wrote 80/20 on `secondary`
# with its first write (the takeover) and ran the rollout there; `primary` stayed 80/20, driven by
# nothing, and every later stable-100% write went to `secondary` too.
def _secondary(vs: dict[str, Any]) -> None:
    import copy

    second = copy.deepcopy(vs["spec"]["http"][0])
    second["name"], second["match"] = "secondary", [{"headers": {"x-tier": {"exact": "batch"}}}]
    for d in second["route"]:
        d["weight"] = 100 if d["destination"]["subset"] == "stable" else 0
    vs["spec"]["http"].append(second)


def _killed_at_first_step(api: Any, route: str, *, paused: bool = False) -> dict[str, Any]:
    """A promote of v2 on `route` claims it and splits it 80/20, and is killed there (nothing of it runs
    on: its process is this one, which `_here` counts as gone); or interrupted with `--on-interrupt
    pause`. Returns the VirtualService as it left it."""
    v = runner(api, "v2", FakeClock(), route=route, on_interrupt="pause")
    state = v._preflight(v._start())
    assert state.weights.canary == 20 and state.route == route
    if paused:
        assert v._interrupted(state).phase == rl.PAUSED
    return api.get(GROUP, "virtualservices", "ml", "m0")


@pytest.mark.parametrize("paused", [False, True], ids=["killed", "paused"])
@pytest.mark.parametrize("edited", [False, True], ids=["same policy", "policy edited"])
def test_a_resume_on_another_route_than_the_recorded_one_exits_2_before_any_write(api: Any, edited: bool,
                                                                                paused: bool) -> None:
    """Claimed on `primary` of a VirtualService with routes `primary` and `secondary`, split 80/20, killed
    (or paused). A re-run of the same promote (same version and policy, or an edited policy, which
    supersedes the recorded rollout) with --route secondary refuses before any write: ConfigError
    (exit 2) naming both routes and how to go on (re-run with --route primary, or `canary rollback
    --route primary`). It took the rollout up on `secondary` (its first write split it 80/20; an edited
    policy's supersede wrote stable 100% there, not on `primary`, and claimed `secondary` afresh) and
    left `primary` split with nothing driving it."""
    from canary.errors import ConfigError

    api.edit(GROUP, "virtualservices", "ml", "m0", _secondary)
    before = _killed_at_first_step(api, "primary", paused=paused)
    assert routes(api) == [[("stable", 80), ("canary", 20)], [("stable", 100), ("canary", 0)]]
    policy = {**fleet.FAST_POLICY, "steps": [50, 100]} if edited else None
    again = runner(api, "v2", FakeClock(), route="secondary", policy=policy)
    writes = _writes(again)
    with pytest.raises(ConfigError) as err:
        again.run()
    said = str(err.value)
    assert "'primary'" in said and "--route secondary" in said, said
    assert "re-run with --route primary" in said and "canary rollback --route primary" in said, said
    assert writes == [] and api.get(GROUP, "virtualservices", "ml", "m0") == before
    assert record(api)["route"] == "primary" and record(api)["phase"] == (rl.PAUSED if paused else rl.PROGRESSING)


@pytest.mark.parametrize(("claimed", "asked"), [("", "primary"), ("primary", "")])
def test_a_resume_naming_the_recorded_route_as_it_resolves_resumes(api: Any, claimed: str, asked: str) -> None:
    """m0's only HTTP route is `primary`: claimed with no route (or as `primary`), killed at 80/20, and re-run
    naming it (or not): the same route, resumed from the record (not superseded, not refused) and
    promoted on it."""
    _killed_at_first_step(api, claimed)
    started = record(api)["started_at"]
    again = runner(api, "v2", FakeClock(), route=asked)
    again.metrics.router.target = replace(again.target, route="primary")  # the fake's traffic: as `primary` routes it
    with structlog.testing.capture_logs() as logs:
        res = again.run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res
    events = [e["event"] for e in logs]
    assert "rollout.resumed_from_state" in events and "rollout.superseded" not in events
    assert record(api)["started_at"] == started and record(api)["route"] == claimed
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and subsets(api) == {"stable": "v2", "canary": "v2"}


@pytest.mark.parametrize("asked", ["primary", ""])
def test_a_resume_among_two_routes_drives_the_recorded_one(api: Any, asked: str) -> None:
    """The re-run on the two-route VirtualService with --route primary, or with no route at all (which
    picks none of two: it exited 2, "name the one to shift"), resumes on `primary`, the route recorded,
    as `canary pause/resume/rollback` default to it; promoted there, `secondary` never written."""
    api.edit(GROUP, "virtualservices", "ml", "m0", _secondary)
    secondary = _killed_at_first_step(api, "primary")["spec"]["http"][1]
    again = runner(api, "v2", FakeClock(), route=asked)
    again.metrics.router.target = replace(again.target, route="primary")  # the fake's traffic: as `primary` routes it
    with structlog.testing.capture_logs() as logs:
        res = again.run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res
    resumed = [e for e in logs if e["event"] == "rollout.resumed_from_state"]
    assert resumed and resumed[0]["route"] == "primary" and again.target.route == "primary"
    assert routes(api) == [[("stable", 100), ("canary", 0)], [("stable", 100), ("canary", 0)]]
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][1] == secondary
    assert record(api)["route"] == "primary"


def _copy_pasted(dr: dict[str, Any]) -> None:
    """m1's DestinationRule applied over m0's (a copy-paste, a GitOps overlay naming the wrong service): its host
    and its subsets' labels."""
    dr["spec"]["host"] = "m1"
    for s in dr["spec"]["subsets"]:
        s["labels"] = {"app": "m1", "version": "v7" if s["name"] == "stable" else "v8"}


def promoting(v: dict[str, Any]) -> None:
    """A killed process's last write on VirtualService `v`: its promotion's 0/100, recorded PROMOTING."""
    ann = v["metadata"]["annotations"]
    rec = json.loads(ann["modelcanary.dev/rollout"])
    rec.update(phase=rl.PROMOTING, weights={"stable": 0, "canary": 100}, step=2)
    ann["modelcanary.dev/rollout"] = json.dumps(rec)
    for d, w in zip(v["spec"]["http"][0]["route"], (0, 100)):
        d["weight"] = w


def _rule_mended_line(logs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one line of an end whose stable 100% landed and whose rule, re-hosted, was not pointed (decision 644)."""
    failed = [e for e in logs if e["event"] == "rollback.failed"]
    assert len(failed) == 1 and "kubectl edit destinationrule m0 -n ml" in failed[0]["error"], failed
    assert not [e for e in logs if e["event"] == "traffic.unsafe"], logs
    # the page a deleted rule gets: the route's subsets resolve under no rule of its host (decision 649)
    page = [e for e in logs if e["event"] == "rollout.destination_rule_elsewhere"]
    assert len(page) == 1 and page[0]["log_level"] == "error", page
    return failed[0]


def test_a_destination_rule_edited_into_another_models_is_never_rewritten_and_stable_100_is_written(api: Any) -> None:
    """DestinationRule m0 edited into m1's rule (host and subsets) while the rollout runs at 80/20. Decision 519
    set such a rule aside so that the route's stable 100% could be written, but the end then pointed the rule's
    `stable` subset at the rollout's stable version, by the rule's name: m1's rule was rewritten (its stable
    subset selecting `app: m1, version: v1`, no pod of m1), an outage of another model made out of a harmless
    duplicate (decision 519's review). Decision 523 then wrote nothing (exit 6, 80/20 left). Now stable 100% is
    written on the rollout's own route, the end recorded, and only the rule's pointing is refused: exit 3, one
    line saying how to mend the rule (decision 644)."""
    from canary.errors import RollbackFailed

    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)))
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="subset could not be"):
        v.run()
    dr = api.get(GROUP, "destinationrules", "ml", "m0")
    assert dr["spec"]["host"] == "m1" and [(s["name"], s["labels"]) for s in dr["spec"]["subsets"]] == [
        ("stable", {"app": "m1", "version": "v7"}), ("canary", {"app": "m1", "version": "v8"})], dr["spec"]
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    assert record(api)["phase"] in rl.TERMINAL and record(api)["weights"] == {"stable": 100, "canary": 0}
    _rule_mended_line(logs)


@pytest.mark.parametrize("end", ["fail-safe", "canary rollback"])
@pytest.mark.parametrize("claimed", ["primary", ""], ids=["its own route named", "claimed as the only route"])
def test_a_destination_rule_re_hosted_to_the_other_models_service_never_writes_that_models_route(
        claimed: str, end: str, tmp_path: Any) -> None:
    """VirtualService m0 shared with model m1 (a route of its own, to m1's subsets); while m0's rollout runs at
    80/20, m0's DestinationRule is edited into m1's (host m1). The stable-100% write took the rule's host for the
    rollout's service and matched routes by it: m1's route, at the recorded 80/20 (or, on a route the rollout
    claimed as the only one, m1's route added beside it, at any weights), was set to 100/0, m0's left at 80/20,
    m0's rule rewritten, exit 3 and no critical line (decision 519's review). Decision 523 then wrote nothing
    (exit 6, m0's 80/20 left). Now the rollout's service is taken from its own route (its record's, or the one
    found by the name noted at its writes): stable 100% on m0's route alone, the end recorded, neither m1's route
    nor either rule written, exit 3 and one line saying to mend the rule (decision 644); by promote's fail-safe
    or by `canary rollback` on a rollout killed at 80/20, and a `canary rollback` after it points nothing."""
    import copy

    from typer.testing import CliRunner

    from canary.cli import app
    from canary.errors import RollbackFailed

    api = fleet.start_api(2)
    try:
        theirs = (80, 20) if claimed else (50, 50)
        if claimed:  # m1's route beside m0's from the start, at the weights m0's rollout will record
            api.edit(GROUP, "virtualservices", "ml", "m0", _other_model(theirs))
        other_rule = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m1"))

        def edits() -> None:
            if not claimed:  # m1's route added beside the only one the rollout claimed
                api.edit(GROUP, "virtualservices", "ml", "m0", _other_model(theirs))
            api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)

        kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
        flags = ["m0", "-n", "ml", "--kubeconfig", str(kc), *(["--route", claimed] if claimed else [])]
        if end == "fail-safe":
            clock = HookClock(api)
            v = runner(api, "v2", clock, route=claimed)
            clock.hooks.append((_at_first_step("v2"), edits))
            with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="subset could not"):
                v.run()
            _rule_mended_line(logs)
        else:
            _killed_at_first_step(api, claimed)
            edits()
            # `canary status` mid-rollout says the rule is not pointed, why, and how to mend it (decision 650)
            shown = CliRunner().invoke(app, ["status", *flags, "-o", "json"])
            assert shown.exit_code == 0 and "kubectl edit destinationrule m0 -n ml" in json.loads(
                shown.output)["destination_rule_elsewhere"], shown.output
            rolled = CliRunner().invoke(app, ["rollback", *flags, "--reason", "pager"])
            assert rolled.exit_code == 3 and "kubectl edit destinationrule m0 -n ml" in rolled.output, rolled.output
            assert "traffic.unsafe" not in rolled.output, rolled.output
            assert rolled.output.count("rollout.destination_rule_elsewhere") == 1, rolled.output  # the page (649)
            assert "check what it selects" not in rolled.output, rolled.output  # the hint: mend the rule (649)
        vs = api.get(GROUP, "virtualservices", "ml", "m0")
        other_route = copy.deepcopy(vs["spec"]["http"][0])
        # the note beside the record names the route written, by which a claimed route is found (decision 549)
        assert json.loads(vs["metadata"]["annotations"]["modelcanary.dev/service"])["route"] == "primary"
        assert routes(api) == [[("stable", theirs[0]), ("canary", theirs[1])], [("stable", 100), ("canary", 0)]]
        assert record(api)["phase"] in rl.TERMINAL
        assert api.get(GROUP, "destinationrules", "ml", "m1") == other_rule  # byte for byte
        assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
            {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]  # as edited: never pointed
        # a `canary rollback` after the end (its repair of the stable subset) points nothing either
        again = CliRunner().invoke(app, ["rollback", *flags, "--reason", "pager"])
        assert again.exit_code == 3 and "kubectl edit destinationrule m0 -n ml" in again.output, again.output
        # its page's hint mends the rule's host, never "point the stable subset at v1": that rule now describes m1's
        # pods (it said so, the wrong remedy 649 took out of the other path; decision 654)
        [failed] = [json.loads(line) for line in again.output.splitlines() if '"event": "rollback.failed"' in line]
        assert "kubectl edit destinationrule m0 -n ml" in failed["hint"], failed
        assert "point the stable subset" not in failed["hint"], failed
        # ...and `canary status` after the end says so, not that m1's labels serve m0 and that `canary rollback`
        # points the subset back (which refuses, exit 3; decision 650)
        shown = CliRunner().invoke(app, ["status", *flags])
        assert shown.exit_code == 0 and "route_disagrees" not in shown.output, shown.output
        assert "every request to the route's subsets fails (503, NR" in shown.output, shown.output
        assert "kubectl edit destinationrule m0 -n ml" in shown.output, shown.output
        # ...nor that a `canary rollback` writes stable 100% on it: at the end's 100/0 it writes nothing (the one
        # above: "nothing was written", exit 3; decision 655)
        assert "writes stable 100% on the route" not in shown.output, shown.output
        assert "one at stable 100% is left as it is" in shown.output, shown.output
        assert "writes stable 100% on it" not in shown.output, shown.output  # nor the route-shape note (663)
        assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0] == other_route
        assert api.get(GROUP, "destinationrules", "ml", "m1") == other_rule
        assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
            {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]
    finally:
        api.stop()


def _re_pointed_with_its_rule(api: Any) -> None:
    """The rollout's route and its rule re-pointed together to service m0b, the route's match edited too (decision
    580's case: no object tells it from another model's route given the rollout's route's name, 570)."""
    def route(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["match"] = [{"uri": {"prefix": "/v2/models/m0b"}}]
        for d in vs["spec"]["http"][0]["route"]:
            d["destination"]["host"] = "m0b"

    api.edit(GROUP, "virtualservices", "ml", "m0", route)
    api.edit(GROUP, "destinationrules", "ml", "m0", lambda dr: dr["spec"].update(host="m0b"))


def test_a_rule_whose_service_cannot_be_told_is_not_pointed_nor_said_re_hosted(api: Any) -> None:
    """A rule whose host the rollout's service cannot be told from (decision 580's case: the route re-pointed with
    it, its match edited) is not pointed, as under 644, but is no `RuleElsewhere`: that says every request to the
    route fails (503, NR) and pages so, while here the route sends to the rule's own host, whose subsets resolve
    (decision 661)."""
    from canary.errors import RuleElsewhere, TargetError

    _killed_at_first_step(api, "primary")
    _re_pointed_with_its_rule(api)
    before = api.get(GROUP, "destinationrules", "ml", "m0")
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    with pytest.raises(TargetError, match="another model's route given its name") as refused:
        IstioRouter(api.api_client(), wait=tenacity.wait_none()).point_subset(target, "stable", "v1")
    assert not isinstance(refused.value, RuleElsewhere), refused.value
    assert api.get(GROUP, "destinationrules", "ml", "m0") == before  # not pointed


def test_an_admission_webhooks_refusal_of_the_pointing_is_not_said_re_hosted(api: Any) -> None:
    """A rollback's pointing of the rollout's own rule refused by an admission webhook (HTTP 403 from the API
    server): stable 100% landed, the subset not pointed (exit 3), and no line says the rule names another service or
    that every request fails for it (`rollout.destination_rule_elsewhere`; decisions 649, 661)."""
    from canary.errors import RollbackFailed

    _killed_at_first_step(api, "primary")
    # its stable subset selecting another version than the record's (a hand edit): the pointing has a write to make
    api.edit(GROUP, "destinationrules", "ml", "m0", lambda dr: dr["spec"]["subsets"][0]["labels"].update(version="v3"))
    denied = 'admission webhook "validation.istio.io" denied the request: configuration is invalid'
    api.fail_next(403, methods=("PUT",), plural="destinationrules", message=denied)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="subset could not be"):
        oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                      rl.Rollback(0.0, "operator: pager"), log=get())
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert not [e for e in logs if e["event"] == "rollout.destination_rule_elsewhere"], logs
    [failed] = [e for e in logs if e["event"] == "rollback.failed"]
    assert "denied the request" in failed["error"] and "503" not in failed["note"], failed


class _ReHostedWhenPromoting(IstioRouter):
    """The real router, and m1's rule applied over m0's right after the write that records PROMOTING (0/100) lands:
    between a promotion's last weights and its pointing of the stable subset."""

    def __init__(self, api: Any) -> None:
        super().__init__(api.api_client(), wait=tenacity.wait_none())
        self.api, self.done = api, False

    def set_weights(self, target: Target, weights: Any, **kw: Any) -> Any:
        out = super().set_weights(target, weights, **kw)
        if not self.done and json.loads(kw.get("state") or "{}").get("phase") == rl.PROMOTING:
            self.done = True
            self.api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)
        return out


def test_a_rule_re_hosted_between_the_promotions_last_writes_ends_at_stable_and_pages(api: Any, tmp_path: Any) -> None:
    """m0's rule re-hosted to m1 once the promotion recorded 0/100 (PROMOTING), before its stable subset is pointed at
    v2. The pointing is refused (644), and so was the rollback's pointing back before its weights: nothing written,
    0/100 left recorded `promoting` (every request failing, 503 NR), no end and no cause, and a `traffic.unsafe`
    telling on-call to set stable 100% by hand, which mends nothing. Now that pointing is left for the one after the
    weights (the rule describes another service: no request reaches the canary version by it): stable 100% and the
    end recorded (a foreign edit), the page `rollout.destination_rule_elsewhere`, exit 3 (decision 662). `canary
    status` after it prints the rule's note alone, not the shape note saying a rollback writes stable 100% (663)."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.errors import RollbackFailed, TrafficUnsafe

    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    router, clock = _ReHostedWhenPromoting(api), FakeClock()
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: 1.0, rps=1000.0)
    v = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics, clock=clock)
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="subset could not") as failed:
        v.run()
    assert router.done and not isinstance(failed.value, TrafficUnsafe), failed.value
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    assert (record(api)["phase"], record(api)["end_cause"]) == (rl.ABORTED, "foreign_edit"), record(api)
    _rule_mended_line(logs)
    assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
        {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]  # never pointed
    kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    shown = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "--kubeconfig", str(kc)])
    assert shown.exit_code == 0 and "every request to the route's subsets fails (503, NR" in shown.output, shown.output
    assert "writes stable 100% on it" not in shown.output, shown.output


def _older_record_shared(api: Any, rule: Callable[[dict[str, Any]], None]) -> None:
    """A rollout killed at 80/20 on the only route it claimed, recorded by an older canary (no service noted at its
    writes), m1's route added beside it since (50/50), and m0's rule edited by `rule` (decision 664's case)."""
    _killed_at_first_step(api, "")
    api.edit(GROUP, "virtualservices", "ml", "m0",
             lambda vs: vs["metadata"]["annotations"].pop("modelcanary.dev/service"))  # an older canary's writes
    api.edit(GROUP, "virtualservices", "ml", "m0", _other_model((50, 50)))
    api.edit(GROUP, "destinationrules", "ml", "m0", rule)


def test_an_older_record_without_the_note_never_takes_a_re_hosted_rules_host() -> None:
    """A rollout recorded by an older canary (no service noted at its writes) on the only route it claimed, m1's
    route added beside it since, and m0's rule re-hosted to m1: nothing tells the rollout's service but the rule,
    whose host `canary rollback` took. It wrote m1's route 100/0, left m0's at 80/20, recorded m0's rollout rolled
    back (exit 0) and pointed the rule (now m1's) at v1. The rule selects neither version of the record (v7/v8, not
    v1/v2): nothing is written, exit 6 with `traffic.unsafe` saying why (decision 664)."""
    from canary.errors import TrafficUnsafe

    api = fleet.start_api(2)
    try:
        _older_record_shared(api, _copy_pasted)
        rules = [copy.deepcopy(api.get(GROUP, "destinationrules", "ml", m)) for m in ("m0", "m1")]
        target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
        with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe, match="neither of the rollout"):
            oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                          rl.Rollback(0.0, "operator: pager"), log=get())
        assert routes(api) == [[("stable", 50), ("canary", 50)], [("stable", 80), ("canary", 20)]], routes(api)
        assert record(api)["phase"] == rl.PROGRESSING
        assert [api.get(GROUP, "destinationrules", "ml", m) for m in ("m0", "m1")] == rules  # neither pointed
        assert [e for e in logs if e["event"] == "traffic.unsafe"], logs
    finally:
        api.stop()


def test_the_sweep_ends_a_promotion_over_a_re_hosted_rule_at_stable_and_pages(api: Any) -> None:
    """A promote killed at 0/100 (PROMOTING recorded), m0's rule re-hosted to m1 since. The sweep finishes such a
    promotion; its pointing of the stable subset at v2 is refused (644), and the sweep said only the critical
    `rollback.failed` with "traffic may still be split", at every sweep, 0/100 left `promoting` (every request failing,
    503 NR), never the page `rollout.destination_rule_elsewhere`. Now it ends the rollout as promote's fail-safe and
    the controller do (decision 662): stable 100% and the end recorded (a foreign edit), the page, and a
    `rollback.failed` that says the end landed and what mends the rule (decision 685)."""
    from canary import sweep
    from canary.errors import RollbackFailed
    from canary.routing import patch

    _killed_at_first_step(api, "")
    api.edit(GROUP, "virtualservices", "ml", "m0", promoting)
    api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)
    text = patch.read_state(api.get(GROUP, "virtualservices", "ml", "m0"))
    found = sweep.Found("ml", "m0", rl.RolloutState.from_json(text), text, quiet_s=600.0)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="subset could not be"):
        sweep.end(router, found, log=get(), now=found.record.updated_at + 700)
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    assert (record(api)["phase"], record(api)["end_cause"]) == (rl.ABORTED, "foreign_edit"), record(api)
    failed = _rule_mended_line(logs)
    assert "may still be split" not in failed["hint"] and "no split is left" in failed["note"], failed
    assert [s["labels"] for s in api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"]] == [
        {"app": "m1", "version": "v7"}, {"app": "m1", "version": "v8"}]  # never pointed


@pytest.mark.parametrize("rule", ["deleted", "re-hosted"])
def test_a_sweeps_end_whose_stable_subset_could_not_be_pointed_is_told_as_every_end_is(api: Any, receiver: Any,
                                                                                     rule: str) -> None:
    """A promote killed at 80/20 whose rule was deleted (decision 168's case), or killed at 0/100 `promoting` whose
    rule was re-hosted (685's): the sweep's end lands (stable 100%, recorded aborted) and only the stable subset's
    pointing after it fails (RollbackFailed, exit 3). That end is on the route, yet only `rollback.failed` said it:
    no `rollout.abandoned`, no post, not counted (decision 685's "Left"). Now it is told as every end is, once
    (decision 735)."""
    from canary import sweep
    from canary.errors import RollbackFailed
    from canary.notify import Notifier
    from canary.routing import patch

    _killed_at_first_step(api, "")
    if rule == "deleted":
        _delete(api, "destinationrules", "m0")
    else:
        api.edit(GROUP, "virtualservices", "ml", "m0", promoting)
        api.edit(GROUP, "destinationrules", "ml", "m0", _copy_pasted)
    text = patch.read_state(api.get(GROUP, "virtualservices", "ml", "m0"))
    found = sweep.Found("ml", "m0", rl.RolloutState.from_json(text), text, quiet_s=600.0)
    notifier, counted = Notifier(webhooks=[receiver.url + "/hook"]), []  # type: ignore[var-annotated]
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        sweep.end(IstioRouter(api.api_client(), wait=tenacity.wait_none()), found, log=get(),
                  now=found.record.updated_at + 700, notifier=notifier, counted=counted.append)
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api)["phase"] == rl.ABORTED, routes(api)
    [told] = [e for e in logs if e["event"] == "rollout.abandoned"]
    assert (told["phase"], told["weights"], told["done"]) == (rl.ABORTED, "100/0", "stable 100%"), told
    assert [(c.phase, str(c.weights)) for c in counted] == [(rl.ABORTED, "100/0")], counted
    assert notifier.close(10.0)
    hooks = [body for path, body, _ in receiver.got if path == "/hook"]
    assert [(h["event"], h["weights"]) for h in hooks] == [("aborted", {"stable": 100, "canary": 0})], hooks


def test_an_older_records_rule_reverted_to_older_versions_is_refused_with_a_remedy_that_works() -> None:
    """Decision 664's refusal where the rule keeps its host and a GitOps sync of a stale manifest reverted its subsets
    to versions older than both of the record's (the case its author left): nothing written, exit 6, as 664 decided.
    Its words said "set the rollout's route's stable destination to 100 by hand, or mend the rule ..., then run
    `canary rollback`": done by hand, that rollback refused the same way (the rule still selects neither version),
    the rollout never ended, its `rollback.failed` saying "traffic may still be split". The words now say that the
    hand edit records no end and that the rule must be mended (naming the versions its subsets must select) before
    `canary rollback` records it; followed, they end the rollout, m1's route untouched (decision 686)."""
    from canary.errors import TargetError, TrafficUnsafe

    def reverted(dr: dict[str, Any]) -> None:  # a stale manifest's versions, its host kept
        for s in dr["spec"]["subsets"]:
            s["labels"]["version"] = "v0" if s["name"] == "stable" else "v0b"

    def by_hand(vs: dict[str, Any]) -> None:  # on-call sets the rollout's route (the second) to 100/0
        vs["spec"]["http"][1]["route"][0]["weight"], vs["spec"]["http"][1]["route"][1]["weight"] = 100, 0

    def mended(dr: dict[str, Any]) -> None:
        for s in dr["spec"]["subsets"]:
            s["labels"]["version"] = "v1" if s["name"] == "stable" else "v2"

    api = fleet.start_api(2)
    try:
        _older_record_shared(api, reverted)
        target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")

        def rollback() -> None:
            oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                          rl.Rollback(0.0, "operator: pager"), log=get())

        with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe) as refused:
            rollback()
        words = str(refused.value)
        assert "records no end" in words and "stable subset selecting v1 and its canary subset v2" in words, words
        # the page's hint: not "once the Kubernetes API accepts this job's writes again (an expired token renewed)"
        [page] = [e for e in logs if e["event"] == "traffic.unsafe"]
        assert "expired token" not in page["hint"] and "refused the same way" in page["hint"], page
        assert routes(api) == [[("stable", 50), ("canary", 50)], [("stable", 80), ("canary", 20)]], routes(api)
        api.edit(GROUP, "virtualservices", "ml", "m0", by_hand)
        with pytest.raises(TargetError, match="records no end"):  # as the words say: refused until mended
            rollback()
        assert record(api)["phase"] == rl.PROGRESSING
        api.edit(GROUP, "destinationrules", "ml", "m0", mended)
        rollback()
        assert record(api)["phase"] in (rl.ROLLED_BACK, rl.ABORTED), record(api)
        assert routes(api) == [[("stable", 50), ("canary", 50)], [("stable", 100), ("canary", 0)]], routes(api)
        assert subsets(api) == {"stable": "v1", "canary": "v2"}
    finally:
        api.stop()

"""`canary promote`'s runner under faults, on a fake clock: every failure path ends with stable
at 100% and the exit code docs/reference/cli.md, "Exit codes" gives. Each case is one kind of fault."""

from __future__ import annotations

import json
import threading

import pytest

from canary import rollout as rl
from canary.runner import EXIT_INFRA, EXIT_ROLLED_BACK, Runner, oncall_action
from canary.errors import KubeUnavailable, NoData
from canary.logs import get
from canary.model import STABLE_ONLY, Target, Weights
from tests.fakes import FakeClock, FakeMetrics, FakeRouter
from tests.support.killpoints import Killed
from tests.unit.test_runner import POLICY, TARGET, make


def test_api_errors_past_the_budget_on_a_step_write_end_at_stable_100() -> None:
    ctl, router, metrics, clock = make()
    calls = {"n": 0}
    real = router.set_weights

    def flaky(target: Target, weights: Weights, **kw: object) -> object:
        if weights == Weights(50, 50) and calls["n"] < 4:  # the step-2 write fails 4 times in a row
            calls["n"] += 1
            raise KubeUnavailable("503 Service Unavailable")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = flaky  # type: ignore[method-assign]
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED
    assert router.weights == STABLE_ONLY and json.loads(router.state)["phase"] == rl.ABORTED
    assert "503" in res.state.reason


@pytest.mark.parametrize(("exc", "said"), [
    (RuntimeError("bug"), "RuntimeError: bug"), (ZeroDivisionError("x"), "ZeroDivisionError: x"),
    (KeyError("k"), "KeyError: 'k'"), (MemoryError(), "MemoryError, with no message"),
    (NoData(""), "NoData, with no message")])
def test_an_exception_of_any_type_mid_rollout_ends_at_stable_100(exc: BaseException, said: str) -> None:
    """...and its reason says it, one with no message as such ("failed: MemoryError: ", decision 493)."""
    ctl, router, metrics, clock = make()
    real = router.inspect

    def inspect(target: Target) -> object:
        if router.weights == Weights(90, 10):
            raise exc
        return real(target)

    router.inspect = inspect  # type: ignore[method-assign]
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and router.weights == STABLE_ONLY and res.state.phase == rl.ABORTED
    assert res.state.reason == f"failed: {said}", res.state.reason


def test_a_base_exception_mid_rollout_still_ends_at_stable_100_and_propagates() -> None:
    ctl, router, metrics, clock = make()
    real = router.inspect

    def inspect(target: Target) -> object:
        if router.weights == Weights(90, 10):
            raise KeyboardInterrupt()
        return real(target)

    router.inspect = inspect  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        ctl.run()
    assert router.weights == STABLE_ONLY and json.loads(router.state)["phase"] == rl.ABORTED


class _VirtualTime:
    """`time` for `canary.reconcile`: sleeping moves a virtual monotonic clock, at once."""

    def __init__(self) -> None:
        self.t, self.slept = 1000.0, []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> _VirtualTime:
    from canary import reconcile

    vt = _VirtualTime()
    monkeypatch.setattr(reconcile, "time", vt)
    return vt


@pytest.mark.parametrize("failures, ends", [(5, "stable"), (11, "stable"), (13, "rollback.failed")])
def test_the_stable_100_write_is_retried_for_its_whole_budget(virtual_time: _VirtualTime, failures: int,
                                                              ends: str) -> None:
    """A throttling burst on the rollback write: retried until ROLLBACK_BUDGET_S (20 s) has passed, not
    three times (about 6 s: a 429 burst under 10 s left traffic split). 12 attempts fit in 20 s."""
    import structlog.testing

    from canary.reconcile import to_stable

    router = FakeRouter()
    router.set_weights(TARGET, Weights(80, 20), state="")
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(80, 20))
    real, calls = router.set_weights, {"n": 0}

    def throttled(target: Target, weights: Weights, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise KubeUnavailable("429 Too Many Requests")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = throttled  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        if ends == "stable":
            new = to_stable(router, TARGET, state, reason="failed: x", log=get(), now=1.0)
            assert new.phase == rl.ABORTED and router.weights == STABLE_ONLY
        else:
            with pytest.raises(KubeUnavailable):
                to_stable(router, TARGET, state, reason="failed: x", log=get(), now=1.0)
            assert any(e["event"] == "rollback.failed" for e in logs)
    assert sum(virtual_time.slept) <= 20.0 and max(virtual_time.slept) <= 2.0


def test_when_even_the_rollback_write_fails_rollback_failed_is_logged_and_the_error_raised(
        virtual_time: _VirtualTime) -> None:
    ctl, router, metrics, clock = make()
    real = router.set_weights

    def down(target: Target, weights: Weights, **kw: object) -> object:
        if router.weights == Weights(90, 10):  # from the first step on, the API refuses every write
            raise KubeUnavailable("API gone")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = down  # type: ignore[method-assign]
    import structlog.testing

    from canary.errors import RollbackFailed

    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed) as raised:
        ctl.run()
    failed = [e for e in logs if e["event"] == "rollback.failed"]
    assert failed and failed[0]["target_weights"] == "100/0" and failed[0]["reason"].startswith("failed: ")
    assert "weights" not in failed[0]  # it said weights=100/0 while the route stayed split
    assert failed[0]["write_landed"].startswith("unknown")  # no answer: on-call is told it may have landed
    assert "API gone" in str(raised.value) and ctl.rollback_failed  # exit 3, never 2: traffic had moved
    last = ctl._current  # what promote -o json reports: the last state written to the route
    assert last.phase == rl.PROGRESSING and last.weights == Weights(90, 10)


def test_a_refused_rollback_write_is_logged_as_not_landed(virtual_time: _VirtualTime) -> None:
    """A refusal (403, 422: not a TransientError) cannot have landed; the line says so, unlike a timeout."""
    from canary.errors import CanaryError, RollbackFailed

    ctl, router, metrics, clock = make()
    real = router.set_weights

    def refuse(target: Target, weights: Weights, **kw: object) -> object:
        if router.weights == Weights(90, 10):
            raise CanaryError("forbidden: the service account may not patch virtualservices")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = refuse  # type: ignore[method-assign]
    import structlog.testing

    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        ctl.run()
    failed = [e for e in logs if e["event"] == "rollback.failed"]
    assert failed and failed[-1]["write_landed"].startswith("no")


def test_a_signal_during_a_hanging_look_reaches_stable_100_without_waiting_for_it() -> None:
    ctl, router, metrics, clock = make()
    release, answered = threading.Event(), threading.Event()
    real = metrics.measure

    def hang(*a: object, **kw: object) -> object:
        ctl.stop.set()  # SIGTERM arrives while Prometheus does not answer
        release.wait(30)
        answered.set()
        return real(*a, **kw)  # type: ignore[arg-type]

    metrics.measure = hang  # type: ignore[method-assign]
    try:
        res = ctl.run()
        hanging_when_done = not answered.is_set()  # run() returned while the look still waited
    finally:
        release.set()
    assert hanging_when_done, "the rollback waited for the hanging look"
    assert res.exit_code == EXIT_INFRA and router.weights == STABLE_ONLY and res.state.reason == "interrupted"


def test_killed_after_stable_was_repointed_the_rerun_finishes_the_promotion() -> None:
    clock = FakeClock()
    state = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                            weights=Weights(0, 100), step=2)
    router = FakeRouter(weights=Weights(0, 100), state=state.to_json(), subsets={"stable": "v2", "canary": "v2"})
    ctl = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock)
    res = ctl.run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED
    assert router.weights == STABLE_ONLY and router.subsets["stable"] == "v2"


def test_a_rollback_racing_the_stable_repointing_leaves_the_stable_subset_on_the_stable_version() -> None:
    ctl, router, metrics, clock = make()
    real = router.point_subset

    def point(target: Target, subset: str, version: str, **kw: object) -> None:
        real(target, subset, version, **kw)  # type: ignore[arg-type]
        if subset == "stable" and version == "v2" and json.loads(router.state)["phase"] == rl.PROMOTING:
            oncall_action(router, TARGET, rl.Rollback(clock.now(), "on-call says no"), log=get())

    router.point_subset = point  # type: ignore[method-assign]
    res = ctl.run()
    assert res.exit_code == EXIT_ROLLED_BACK and res.state.phase == rl.ROLLED_BACK
    assert router.weights == STABLE_ONLY and router.subsets["stable"] == "v1"


def test_a_rollback_recorded_just_before_the_stable_repointing_stops_it() -> None:
    ctl, router, metrics, clock = make()
    real = router.point_subset

    def point(target: Target, subset: str, version: str, **kw: object) -> None:
        if subset == "stable" and version == "v2" and json.loads(router.state)["phase"] == rl.PROMOTING:
            oncall_action(router, TARGET, rl.Rollback(clock.now(), "on-call says no"), log=get())
        real(target, subset, version, **kw)  # type: ignore[arg-type]

    router.point_subset = point  # type: ignore[method-assign]
    res = ctl.run()
    assert res.state.phase == rl.ROLLED_BACK and router.weights == STABLE_ONLY and router.subsets["stable"] == "v1"


def test_a_canary_subset_repointed_under_a_running_step_aborts_the_rollout() -> None:
    ctl, router, metrics, clock = make()

    def repoint(t: float) -> float:
        if t >= 1005 and router.subsets["canary"] == "v2":
            router.subsets["canary"] = "v3"  # someone re-points the canary subset during step 1
        return 1.0

    metrics.slowdown = repoint
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED and router.weights == STABLE_ONLY
    assert "v3" in res.state.reason and res.state.step == 0


def test_prometheus_answering_without_canary_series_rolls_back_at_the_deadline() -> None:
    ctl, router, metrics, clock = make()

    def nodata(*a: object, **kw: object) -> object:
        raise NoData("no canary series")

    metrics.measure = nodata  # type: ignore[method-assign]
    res = ctl.run()
    assert res.exit_code == EXIT_ROLLED_BACK and res.state.phase == rl.ROLLED_BACK and router.weights == STABLE_ONLY
    assert "no verdict" in res.state.reason


def test_look_counts_survive_a_restart_so_the_failure_budget_is_not_re_spent() -> None:
    ctl, router, metrics, clock = make(slowdown=lambda t: 3.0)
    real = router.set_weights
    dead: list[bool] = []

    def kill_after_first_failure(target: Target, weights: Weights, *, state: str, **kw: object) -> object:
        if dead:
            raise Killed()
        out = real(target, weights, state=state, **kw)  # type: ignore[arg-type]
        if json.loads(state)["failed_looks"] == 1:
            dead.append(True)
            raise Killed()  # the process dies right after recording one failed look
        return out

    router.set_weights = kill_after_first_failure  # type: ignore[method-assign]
    with pytest.raises(Killed):
        ctl.run()
    router.set_weights = real  # type: ignore[method-assign]
    assert json.loads(router.state)["failed_looks"] == 1 and router.weights == Weights(90, 10)
    ctl2 = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock, slowdown=lambda t: 3.0),
                      clock=clock)
    t0 = clock.t
    res = ctl2.run()
    # the recorded failure counts: one more failed look rolls back
    assert res.exit_code == EXIT_ROLLED_BACK and clock.t - t0 <= POLICY.analysis.look_every + 0.5


@pytest.mark.parametrize("garbage", ["{not json", '{"phase": "progressing"}', "[]", '{"weights": 5}'])
def test_rollback_works_even_when_the_recorded_state_is_unreadable(garbage: str) -> None:
    router = FakeRouter(weights=Weights(60, 40), state=garbage, subsets={"stable": "v1", "canary": "v2"})
    state = oncall_action(router, TARGET, rl.Rollback(5.0, "on-call"), log=get())
    assert router.weights == STABLE_ONLY and state.phase == rl.ROLLED_BACK
    assert rl.RolloutState.from_json(router.state).phase == rl.ROLLED_BACK


def test_an_unexpected_error_exits_3_never_1() -> None:
    import typer

    from canary.cli import run_guarded

    def boom() -> int:
        raise RuntimeError("a bug")

    with pytest.raises(typer.Exit) as exit_info:
        run_guarded(boom)
    assert exit_info.value.exit_code == 3  # never 1, which means "rolled back"


@pytest.mark.parametrize("subset,to", [("canary", "v3"), ("stable", "v3")])
def test_a_subset_repointed_is_caught_before_the_next_look_even_when_looks_outpace_the_watch(subset: str,
                                                                                            to: str) -> None:
    ctl, router, metrics, clock = make()
    ctl.watch_every = 10.0  # longer than look_every (2 s): the periodic watch alone would be late
    repointed: list[float] = []

    def repoint(t: float) -> float:
        if t >= 1003 and router.subsets[subset] != to and json.loads(router.state)["phase"] == rl.PROGRESSING:
            router.subsets[subset] = to
            repointed.append(t)
        return 1.0

    metrics.slowdown = repoint
    res = ctl.run()
    assert res.state.phase == rl.ABORTED and res.exit_code == EXIT_INFRA and router.weights == STABLE_ONLY
    assert to in res.state.reason
    # caught at the very next look, not at the next periodic watch (10 s later)
    assert res.state.updated_at - repointed[0] <= POLICY.analysis.look_every + 0.5


@pytest.mark.parametrize("version", ["", "v2\n", "x" * 64, "-v2", "v 2", "v2/", "ü"])
def test_a_canary_version_no_subset_can_select_is_bad_input_and_nothing_is_written(version: str) -> None:
    from canary.errors import ConfigError

    router = FakeRouter()
    ctl = Runner(policy=POLICY, target=Target(**{**TARGET.__dict__, "canary_version": version}), router=router,
                     metrics=FakeMetrics(router, FakeClock()), clock=FakeClock())
    with pytest.raises(ConfigError, match="Kubernetes label value"):
        ctl.run()
    assert router.log == [] and router.state is None


@pytest.mark.parametrize("version", ["", "v2\n", "x" * 64])
def test_a_canary_rollout_with_such_a_version_is_invalid(version: str) -> None:
    from canary import crd
    from canary.errors import ConfigError
    from tests import fleet

    obj = fleet.rollout_object(0, "v2")
    obj["spec"]["canaryVersion"] = version
    with pytest.raises(ConfigError, match="spec.canaryVersion"):
        crd.parse(obj)


@pytest.mark.parametrize("on_interrupt, code, weights", [("rollback", EXIT_INFRA, STABLE_ONLY),
                                                         ("pause", 130, Weights(90, 10))])
def test_a_signal_while_an_operator_paused_the_rollout_follows_on_interrupt(on_interrupt: str, code: int,
                                                                            weights: Weights) -> None:
    """An operator pauses the rollout (`canary pause`) and the CD job is cancelled (SIGTERM) before
    promote's next look: with the default `--on-interrupt rollback` stable gets 100% (it exited 130
    and left the canary its share, paused with nothing judging it)."""
    ctl, router, metrics, clock = make()
    ctl.on_interrupt = on_interrupt
    done: list[bool] = []

    def slowdown(t: float) -> float:
        if t >= 1005 and not done:
            done.append(True)
            oncall_action(router, TARGET, rl.Pause(t), log=get())
            ctl.stop.set()
        return 1.0

    metrics.slowdown = slowdown
    res = ctl.run()
    assert done and res.exit_code == code and router.weights == weights
    assert res.state.phase == (rl.ABORTED if on_interrupt == "rollback" else rl.PAUSED)


def test_the_system_clock_does_not_follow_a_step_of_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's and the controller's clock: the wall clock stepped 600 s forward, or 300 s back,
    mid-rollout moves it by the time that really passed only (a forward step passed a step on data
    from before it; a backward one froze looks and probes)."""
    import time as real_time

    from canary.runner import SystemClock

    wall = {"t": 1_700_000_000.0}
    mono = {"t": 50.0}
    monkeypatch.setattr(real_time, "time", lambda: wall["t"])
    monkeypatch.setattr(real_time, "monotonic", lambda: mono["t"])
    clock = SystemClock()
    assert clock.now() == 1_700_000_000.0
    mono["t"] += 2.0
    wall["t"] += 600.0 + 2.0  # NTP steps the wall clock while 2 s pass
    assert clock.now() == 1_700_000_002.0
    mono["t"] += 1.0
    wall["t"] -= 900.0
    assert clock.now() == 1_700_000_003.0


def test_the_canary_is_probed_while_a_look_waits_on_a_slow_prometheus() -> None:
    """A look waiting on Prometheus (slow, under its timeout) no longer holds the probes: the canary's
    Triton stops answering meanwhile, and it is rolled back on the probes while the look still waits
    (it kept its traffic for the whole look, 45 s in an attacker's sandbox run)."""
    from tests.unit.test_runner import FakeGate

    ctl, router, metrics, clock = make()
    gate = FakeGate(clock, down_at=1011.0)  # down while the look from 1010.75 on waits
    ctl.gate = gate
    real_ready = gate.ready

    def ready() -> bool:  # each probe takes its interval of (simulated) time
        clock.t += gate.probe_interval
        return real_ready()

    gate.ready = ready  # type: ignore[method-assign]
    release, answered = threading.Event(), threading.Event()
    real = metrics.measure

    def slow(*a: object, **kw: object) -> object:
        if clock.t >= 1010.0:  # from here on Prometheus answers only when the test lets it
            release.wait(60)  # until the test lets it: run() must return before (10 s: a bound a loaded machine could reach)
            answered.set()
        return real(*a, **kw)  # type: ignore[arg-type]

    metrics.measure = slow  # type: ignore[method-assign]
    import structlog.testing

    try:
        with structlog.testing.capture_logs() as logs:
            res = ctl.run()
        waiting_when_done = not answered.is_set()
    finally:
        release.set()
    assert waiting_when_done, "the rollback waited for the slow look"
    assert res.exit_code == 1 and "not ready" in res.state.reason and router.weights == STABLE_ONLY
    # docs/reference/events.md: the phase, weights and step as recorded and routed when it is logged: after the
    # probes' rollback landed (it said "progressing 90/10" after `rollback.completed`; decision 115)
    names = [e["event"] for e in logs]
    abandoned = [e for e in logs if e["event"] == "look.abandoned"]
    assert abandoned and names.index("rollback.completed") < names.index("look.abandoned")
    assert abandoned[0]["phase"] == rl.ROLLED_BACK and abandoned[0]["weights"] == "100/0"


def test_conflicting_writes_with_no_decision_of_anyone_else_are_not_an_outside_change() -> None:
    """409s exhausted on a step write while the record is still ours: logged as weights.write_conflict
    and retried at the next look, not as rollout.changed_outside (nobody changed anything)."""
    import structlog.testing

    from canary.errors import RoutingConflict

    ctl, router, metrics, clock = make()
    real, calls = router.set_weights, {"n": 0}

    def conflicting(target: Target, weights: Weights, **kw: object) -> object:
        if weights == Weights(50, 50) and calls["n"] < 1:
            calls["n"] += 1
            raise RoutingConflict("ml/rec: conflicting write (409)")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = conflicting  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    events = [e["event"] for e in logs]
    assert res.exit_code == 0 and calls["n"] == 1
    assert "weights.write_conflict" in events and "rollout.changed_outside" not in events


def test_a_rollout_runs_on_prometheuss_clock() -> None:
    """promote re-anchors the system clock at Prometheus's `time()`: a step's start and every window
    are then on the clock the data carry, whichever machine resumes the rollout (one 300 s ahead
    measured a window reaching back before its step). A skew is logged; no answer keeps the clock."""
    import time as real_time

    import structlog.testing

    from canary.errors import MetricsUnavailable
    from canary.runner import SystemClock

    class Asks:
        def __init__(self, answer: object) -> None:
            self.answer = answer

        def ask(self, query: str, **kw: object) -> object:
            assert query == "time()" and kw["deadline"] is not None
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    ahead = real_time.time() - 300.0  # Prometheus's clock: this machine is 300 s ahead of it
    ctl = Runner(policy=POLICY, target=TARGET, router=FakeRouter(), metrics=Asks([ahead, str(ahead)]))  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        ctl._on_prometheus_clock()
    assert abs(ctl.clock.now() - ahead) < 5.0
    skew = [e for e in logs if e["event"] == "clock.skew"]
    assert skew and -305 < skew[0]["prometheus_minus_local_s"] < -295
    for answer in (MetricsUnavailable("down"), []):  # unreachable, or an answer without a time: as it was
        other = Runner(policy=POLICY, target=TARGET, router=FakeRouter(), metrics=Asks(answer))  # type: ignore[arg-type]
        before = other.clock
        other._on_prometheus_clock()
        assert other.clock is before and isinstance(before, SystemClock)


def test_no_log_line_claims_a_rollback_write_that_has_not_landed(virtual_time: _VirtualTime) -> None:
    """A failing canary whose stable-100% write fails: `look.completed`, `check.failed` and
    `rollback.started` are logged before that write; they said `phase: rolled_back, weights: 100/0`
    (and still did when the write failed, the route at 90/10). Each now shows what is routed
    (`weights`: the look's own) or labels the decision `target_phase`/`target_weights`."""
    import structlog.testing

    from canary.errors import RollbackFailed

    ctl, router, metrics, clock = make(slowdown=lambda t: 3.0)
    real = router.set_weights

    def down(target: Target, weights: Weights, **kw: object) -> object:
        if weights == STABLE_ONLY and router.weights == Weights(90, 10):
            raise KubeUnavailable("API gone")
        return real(target, weights, **kw)  # type: ignore[arg-type]

    router.set_weights = down  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        ctl.run()
    assert router.weights == Weights(90, 10)
    split = logs[next(i for i, e in enumerate(logs) if e["event"] == "step.advanced"):]  # from 90/10 on
    claims = [e for e in split if e.get("phase") in rl.TERMINAL or e.get("weights") == str(STABLE_ONLY)]
    assert not claims, [(e["event"], e.get("phase"), e.get("weights")) for e in claims]  # nothing says stable 100% or rolled back: it never landed
    started = [e for e in logs if e["event"] in ("rollback.started", "rollout.aborting")]
    assert started and all(e["target_weights"] == "100/0" and e["from_weights"] == "90/10" for e in started)
    shown = [e for e in split if e["event"] in ("look.completed", "check.failed", "rollback.started")]
    assert shown and all(e["weights"] == "90/10" and e["phase"] == rl.PROGRESSING for e in shown)  # as routed
    assert any(e["event"] == "check.failed" and e["target_phase"] == rl.ROLLED_BACK for e in logs)


def test_once_the_rollback_write_lands_the_lines_say_what_is_routed() -> None:
    import structlog.testing

    ctl, router, metrics, clock = make(slowdown=lambda t: 3.0)
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert res.exit_code == EXIT_ROLLED_BACK and router.weights == STABLE_ONLY
    done = next(e for e in logs if e["event"] == "rollback.completed")
    assert done["phase"] == rl.ROLLED_BACK and done["weights"] == "100/0" and "target_weights" not in done
    started = next(e for e in logs if e["event"] == "rollback.started")
    assert started["phase"] == rl.PROGRESSING and started["weights"] == started["from_weights"] != "100/0"
    assert started["target_weights"] == "100/0" and started["target_phase"] == rl.ROLLED_BACK


def _on_prometheus_clock(*, step_age_s: float) -> tuple[Runner, FakeMetrics, rl.RolloutState, float]:
    """A runner on the system clock (Prometheus's, as `_on_prometheus_clock` anchors it), its metrics, a state
    `step_age_s` into its first step at 10%, and the clock's now."""
    from canary.runner import SystemClock

    ctl, _, metrics, _ = make()
    ctl.clock = SystemClock()
    t0 = ctl.clock.now()
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING, step=0,
                            weights=Weights.canary_at(10), started_at=t0 - step_age_s,
                            step_started_at=t0 - step_age_s, updated_at=t0 - 2)
    return ctl, metrics, state, t0


def _later(ctl: Runner, seconds: float) -> None:
    """`seconds` pass on the runner's clock, wherever the looks moved it."""
    from canary.runner import SystemClock

    ctl.clock = SystemClock(anchor=ctl.clock.now() + seconds)


def test_a_step_whose_looks_prometheus_evaluates_behind_every_time_ends_at_its_deadline() -> None:
    """Prometheus's clock stopped 300 s behind (every look evaluated at the same instant): each look moved the
    rollout's clock back to it and was discarded (decision 575), so the step never aged and its deadline, checked
    on judged looks only, never came: the rollout held its split forever, a `look.discarded` every look (614).
    Each look still moves the clock back to Prometheus's; the moves are added up, and a look discarded once the
    step is as old as its deadline without them (31 s: interval 10 s + no_data_deadline 20 s) ends it with no
    verdict, as `on_deadline` says, at that age (decision 634; with one move back a step, 614's, this step's
    clock was kept 295 s behind its start and no deadline came for 300 s more)."""
    import structlog.testing

    ctl, metrics, state, t0 = _on_prometheus_clock(step_age_s=20)
    metrics.last_instant = t0 - 300  # type: ignore[attr-defined]  # and there it stays
    ctl._reverted_meanwhile = lambda s: None  # type: ignore[method-assign]  # the route as recorded
    with structlog.testing.capture_logs() as logs:
        assert ctl._look(state) is state and ctl.clock.now() < t0 - 290  # moved back (575)
        _later(ctl, 5)
        assert ctl._look(state) is state and ctl.clock.now() < t0 - 290, "moved back again: 5 s behind"
        _later(ctl, 6)  # the step 31 s old on this process's clock
        got = ctl._look(state)
    assert got.phase == rl.ROLLED_BACK and got.reason.startswith("no verdict after 31s at step 1"), got.reason
    assert "behind this rollout's clock" in got.reason, got.reason
    discarded = [e["reason"] for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 3 and "again in this step" in discarded[1], discarded


def test_a_step_ended_because_prometheus_evaluated_every_look_behind_is_classed_infrastructure() -> None:
    """The end 614/634 make when every look of a step was discarded for Prometheus's clock (stopped or slow) is no
    verdict at the deadline, a rollback as `on_deadline` says; its class was `deadline` ("not shown within in
    time": too little canary traffic, the policy's deadline), so `canary_rollbacks_total{reason="deadline"}`, `-o
    json` and the report's headline put a Prometheus fault on the canary. Prometheus failed, not the canary:
    `infrastructure`, the rollback and its exit kept (decision 647)."""
    ctl, metrics, state, t0 = _on_prometheus_clock(step_age_s=20)
    metrics.last_instant = t0 - 300  # type: ignore[attr-defined]  # and there it stays
    ctl._reverted_meanwhile = lambda s: None  # type: ignore[method-assign]  # the route as recorded
    ctl._look(state)
    _later(ctl, 5)
    ctl._look(state)
    _later(ctl, 6)
    got = ctl._look(state)
    assert got.phase == rl.ROLLED_BACK and got.reason.startswith("no verdict after"), got.reason
    assert got.end_cause == "infrastructure" and rl.cause_of(got) == "infrastructure", got.end_cause


def test_a_second_jump_back_in_a_step_moves_the_clock_again_and_the_looks_after_it_are_judged() -> None:
    """Prometheus rescheduled twice in one step, onto a node 300 s behind, then onto one 200 s further behind: its
    clock then runs evenly. With one move back a step (614) the rollout's clock was kept 200 s ahead of
    Prometheus's and every later look of the step was discarded up to its deadline: no verdict, a rollback, for a
    canary its data could judge. The second jump moves the clock back too, and the next look, evaluated on
    Prometheus's clock, is judged (decision 634)."""
    import structlog.testing

    ctl, metrics, state, t0 = _on_prometheus_clock(step_age_s=5)
    ctl._reverted_meanwhile = lambda s: None  # type: ignore[method-assign]  # the route as recorded
    judged: list[rl.Looked] = []  # the looks that reached the judge, not written
    ctl._decide = lambda s, seen, **kw: judged.append(seen.look) or s  # type: ignore[method-assign]
    real = t0
    with structlog.testing.capture_logs() as logs:
        metrics.last_instant = real - 300  # type: ignore[attr-defined]
        ctl._look(state)
        for _ in range(2):  # the second jump, then a look on the new node's clock
            _later(ctl, 5)
            real += 5
            metrics.last_instant = real - 500  # type: ignore[attr-defined]
            ctl._look(state)
    discarded = [e["reason"] for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 2 and "again in this step" in discarded[1], discarded
    assert len(judged) == 1 and judged[0] is not None, judged  # the look after the jump: judged
    assert abs(ctl.clock.now() - (real - 500)) < 2, "the rollout's clock is Prometheus's"


@pytest.mark.parametrize("behind_s", [300.0, 0.5])
def test_a_look_prometheus_evaluated_behind_the_rollouts_clock_is_not_judged(behind_s: float) -> None:
    """promote anchors its clock at Prometheus's `time()` when it starts, and each look is evaluated at
    Prometheus's own now over the step's age: a Prometheus whose clock then moved 300 s behind (rescheduled onto
    a node whose clock is behind) answered over a window reaching 300 s back before the step, data at the last
    step's weight counted again as this step's, and the look was judged. Now it is not (`look.discarded`), the
    clock is Prometheus's again (`clock.skew`), and the step looks younger, never older. Under 2 s: judged, the
    clock kept (decision 575)."""
    import structlog.testing

    ctl, metrics, state, t0 = _on_prometheus_clock(step_age_s=60)
    metrics.last_instant = t0 - behind_s  # type: ignore[attr-defined]  # the instant the look was evaluated at
    ctl._reverted_meanwhile = lambda s: s  # type: ignore[method-assign]  # stop after the measuring: not routed
    with structlog.testing.capture_logs() as logs:
        got = ctl._look(state)
    events = {e["event"]: e for e in logs}
    if behind_s > 2:
        assert got is state and "look.discarded" in events and "behind this rollout's clock" in \
            events["look.discarded"]["reason"], events
        assert events["clock.skew"]["prometheus_minus_local_s"] < -295 and ctl.clock.now() < t0 - 290
    else:
        assert "look.discarded" not in events and "clock.skew" not in events and ctl.clock.now() >= t0


def test_a_look_discarded_because_prometheus_is_behind_still_looks_for_a_split_on_another_virtual_service() -> None:
    """602's look at the other VirtualServices came after 634's discard of a look Prometheus evaluated behind:
    every look discarded up to the step's deadline (Prometheus's clock stopped: interval + no_data_deadline, and a
    stalled clock is exactly when nothing is judged) returned before it, and the gateway's 10% reached the canary
    unseen all that time. A discarded look now looks too, and such a split ends the rollout then (decision 640)."""
    import structlog.testing

    from canary.routing.claims import OtherSplit

    ctl, metrics, state, t0 = _on_prometheus_clock(step_age_s=20)
    metrics.last_instant = t0 - 300  # type: ignore[attr-defined]  # behind, far from the step's deadline
    ctl._reverted_meanwhile = lambda s: None  # type: ignore[method-assign]  # the route as recorded
    other = OtherSplit(virtual_service="ml/m0-gateway", route="spec.http[0] (edge)", weights="90/10",
                       words="ml/m0-gateway: spec.http[0] (edge) splits its traffic 90/10", hint="kubectl ...")
    ctl.router.split_in_others = lambda target, **kw: (other, "")  # type: ignore[attr-defined]
    with structlog.testing.capture_logs() as logs:
        got = ctl._look(state)
    assert got.phase == rl.ROLLED_BACK and rl.classify_reason(got.reason) == "foreign_edit", got
    assert [e["other_virtual_service"] for e in logs if e["event"] == "split.foreign_edit"] == ["ml/m0-gateway"]


def test_a_signal_during_a_look_that_passes_withholds_the_next_step() -> None:
    """The signal lands while the step's last look is measured, and that look passes: `_decide` would write the
    next step (50/50) after the signal, more traffic to the canary than when on-call stopped it. It is withheld
    (`step.withheld`) and the interrupt ends the rollout from 90/10. No test named `step.withheld` before: the
    interrupt tests' signals land at the split or at a hold, never in a look that passes."""
    import structlog.testing

    ctl, router, metrics, clock = make()
    real = metrics.measure

    def signalled_at_the_steps_end(*a: object, **kw: object) -> object:
        out = real(*a, **kw)  # type: ignore[arg-type]
        if router.weights == Weights(90, 10) and clock.t >= 1010:  # the step's time is up: this look passes it
            ctl.stop.set()
        return out

    metrics.measure = signalled_at_the_steps_end  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED and router.weights == STABLE_ONLY
    assert Weights(50, 50) not in [w for k, w in router.log if k == "weights"], router.log
    (withheld,) = [e for e in logs if e["event"] == "step.withheld"]
    assert (withheld["weights"], withheld["target_weights"]) == ("90/10", "50/50"), withheld

"""The sweep and the runner's heartbeat (decision 65, second addendum) under a third attacker: each test
reproduced a defect of that version (decision 65, third addendum). Deterministic: fake clocks with hooks at fixed (fake) times, fault
injection in the Kubernetes API emulator, hooks inside a look's (fake) Prometheus queries."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any, Callable

import kubernetes.client as kc
import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary import sweep
from canary.errors import RolloutBusy
from canary.logs import get as get_logger
from canary.model import Target
from canary.reconcile import promote_owner
from canary.runner import Runner, oncall_action
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.integration.test_sweep import _claim, _controller, cluster  # noqa: F401
from tests.integration.test_sweep_attack import _pid_namespace, _policy, _target, _write
from tests.integration.test_sweep_attack2 import _Hooks, _sweeper
from tests.support.killpoints import LiveWeights, cluster_state

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
# the promote under test, as another machine sees it (`_here` cannot read its pid: its record's age decides)
LIVE = promote_owner("ci-runner-2:4026531836:5151:live0001")


def _dead_promote_record(router: Any, t0: float) -> None:
    """A promote looking every second, OOM-killed 100 s into step 1 right after its 100th look (the
    setting of test_sweep_attack2's A1: a re-run with a longer look_every waits 900 s for its next look)."""
    dead = promote_owner(f"{socket.gethostname()}:{_pid_namespace()}:{2**22}:dead0001")  # a pid no process has
    t, s = _claim(router, at=t0 - 100, owner=dead, heartbeat_s=1.0)
    _write(router, t, s, replace(s, look=100, step_looks=100, updated_at=t0))


def _stop(runner_box: list[Runner]) -> Callable[[], None]:
    def stop() -> None:  # enough: end the run here (paused, exit 130)
        runner_box[0].on_interrupt = "pause"
        runner_box[0].stop.set()
    return stop


# ---- B1: a reassert of foreign weights writes the pre-heartbeat record back: the heartbeat is undone ------------


def test_a_live_promote_whose_weights_a_gitops_sync_keeps_resetting_is_not_swept(cluster: Any) -> None:
    """The A1 setting (a re-run promote, look_every 10 s, took over a dead one's rollout at T0+5; its next
    look is due at T0+910), on a VirtualService that Argo CD's self-heal keeps at the weights in Git
    (100/0, every 5 s). The promote re-asserts its weights at each watch (`_check_outside` ->
    `decide` -> SetWeights of `state`), where `state` is the one `_wait_and_look` was called with: the
    takeover's record, byte for byte (updated_at T0+5). Each reassert is a write (`_remember` sets
    `_wrote_at`), so the heartbeat never comes due; and the record's text never changes. The
    controller's sweep (every 60 s) sees the same record at every pass and ends the live rollout after
    150 s ("its process is gone"); the promote exits 3. And `updated_at` stays at T0+5, so another
    promote may take the live rollout over after 2 x 10 + 60 s. Since decision 170 the promote ends the
    rollout itself, at stable 100%, at the third revert in a row: what is pinned here is that no sweep does."""
    api, client, router = cluster
    t0 = time.time()
    _dead_promote_record(router, t0)
    swept: list[str] = []
    box: list[Runner] = []
    target = _target()

    def gitops_sync() -> None:  # Argo CD self-heal: the route's weights as Git has them; annotations untouched
        def edit(obj: dict[str, Any]) -> None:
            route = obj["spec"]["http"][0]["route"]
            route[0]["weight"], route[1]["weight"] = 100, 0
        api.edit(GROUP, "virtualservices", "ml", "m0", edit)

    clock = _Hooks(t0 + 5, [])
    sweep_now = _sweeper(client, clock, swept)
    ages: list[float] = []

    def sweep_and_age() -> None:
        sweep_now()
        ages.append(clock.t - cluster_state(api)[1]["updated_at"])

    clock.hooks = sorted([(t0 + 6 + 5 * k, gitops_sync) for k in range(40)]  # T0+6 ... T0+201
                         + [(t0 + 10 + 60 * k, sweep_and_age) for k in range(4)]  # the controller's sweep, every 60 s
                         + [(t0 + 205, _stop(box))], key=lambda h: h[0])
    runner = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    runner.owner = LIVE
    box.append(runner)
    result = runner.run()
    assert clock.fired[-1] == t0 + 205 or result.state.phase == rl.ABORTED
    assert not swept, f"the sweep ended a live promote that re-asserts its weights every 5 s: {swept}"
    # since decision 170 the promote ends it itself at the third revert in a row (`weights.reverted`): never swept
    assert result.state.phase != rl.ABORTED or result.state.reason.startswith("foreign edit, 3 times in a row"), \
        result.state.reason
    assert max(ages, default=0.0) < 2 * 10 + 60, f"record updated_at ages seen by the sweeps: {ages} (another promote may take over)"


# ---- B2: a heartbeat that fails is tried again only 2 x look_every later: 4 x look_every without a write ---------


def test_one_failed_heartbeat_does_not_get_a_live_promote_swept(cluster: Any) -> None:
    """A1's setting with a re-run promote looking every 200 s (its record: heartbeat_s 200; the sweep's
    limit 3 x 200 + 120 = 720 s). Its next look is far (step start + 101 x 200 s), so only heartbeats
    write. The first one, due at T0+405, meets an API server restarting (503 on every attempt of that one
    write): `heartbeat.skipped`, and `_wrote_at` is set as if it had written -- the next try is at T0+805.
    The controller's sweep, which first saw the takeover's record at T0+10, sees it unchanged at T0+760
    (750 s > 720 s) and ends the live rollout; the promote exits 3. (With look_every 60 s the same single
    failure leaves updated_at 240 s old, past another promote's takeover staleness, 2 x 60 + 60 = 180 s.)"""
    api, client, router = cluster
    t0 = time.time()
    _dead_promote_record(router, t0)
    swept: list[str] = []
    box: list[Runner] = []
    target = _target()

    def api_restarting() -> None:  # the next VirtualService write (the heartbeat at T0+405) fails, every attempt
        api.fail_next(503, times=4, methods=("PUT",), plural="virtualservices")

    clock = _Hooks(t0 + 5, [])
    sweep_now = _sweeper(client, clock, swept)
    clock.hooks = sorted([(t0 + 404, api_restarting)] + [(t0 + 10 + 50 * k, sweep_now) for k in range(16)]  # ..T0+760
                         + [(t0 + 770, _stop(box))], key=lambda h: h[0])
    runner = Runner(policy=_policy("200s", "1200s", "1200s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    box.append(runner)
    with structlog.testing.capture_logs() as logs:
        result = runner.run()
    assert any(e["event"] == "heartbeat.skipped" for e in logs), "the injected failure did not hit the heartbeat"
    assert not swept, f"the sweep ended a live promote after one failed heartbeat write: {swept}"
    assert result.state.phase != rl.ABORTED, result.state.reason


# ---- B3: a pause and resume the promote did not see as such: the resume's clock is adopted ---------------------


class _OnCallDuringLook(FakeMetrics):
    """FakeMetrics; the first look (measure call) at or after `at` runs `hook` first, as on-call acting while
    the look waits on Prometheus (5-150 s for a real look; the watch does not run meanwhile)."""

    at: float = 0.0
    hook: Callable[[], None] | None = None

    def measure(self, policy: Any, check: Any, target: Any, *, window_s: int) -> tuple[Any, Any]:
        if self.hook is not None and self.clock.now() >= self.at:
            hook, self.hook = self.hook, None
            hook()
        return super().measure(policy, check, target, window_s=window_s)


def test_a_pause_and_resume_during_a_look_restarts_the_step_on_the_promotes_clock(cluster: Any) -> None:
    """A live promote (look_every 10 s, interval 60 s) on step 1. During its look at T0+30, on-call runs
    `canary pause` and, a few seconds later, `canary resume` from a laptop whose clock is 300 s behind
    Prometheus's: the record says PROGRESSING, step_started_at = T0+30-300. The look's write is refused
    (RoutingConflict) and `_adopt_outside` adopts the record as it is: the re-stamp of decision 65 (h)
    happens only in `_check_outside`, and only when the promote's own state was PAUSED, which it never
    saw. So the step "started" 300 s ago: the next look is due at once, judges a 300 s window reaching
    back before the pause, and passes the step 1 s after the resume, where the step should start over
    and need 60 s of its own data ("paused time is neither evidence nor deadline"). With the laptop ahead
    instead, the looks stop for 300 s and the deadline moves by 300 s, the defect (h) says it fixed."""
    api, client, router = cluster
    t0 = time.time()
    target = _target()
    box: list[Runner] = []
    laptop_behind = 300.0
    resumed_at: list[float] = []

    def pause_then_resume() -> None:
        t = replace(target, stable_version="v1")
        oncall_action(router, t, rl.Pause(clock.t - laptop_behind, "checking a dashboard"), log=get_logger())
        oncall_action(router, t, rl.Resume(clock.t - laptop_behind + 5), log=get_logger())
        resumed_at.append(clock.t)

    clock = _Hooks(t0, [(t0 + 55, _stop(box))])
    metrics = _OnCallDuringLook(LiveWeights(router, target), clock, rps=1000.0)  # type: ignore[arg-type]
    metrics.at, metrics.hook = t0 + 30, pause_then_resume
    states: list[rl.RolloutState] = []
    runner = Runner(policy=_policy("10s", "60s"), target=target, router=router, clock=clock, metrics=metrics,
                    on_update=states.append)
    box.append(runner)
    result = runner.run()
    assert resumed_at, "on-call's hook did not run"
    advanced = [s for s in states if s.step > 0]
    adopted = [s.step_started_at - resumed_at[0] for s in states if s.step == 0 and s.step_window > 0]
    assert not advanced, (f"step 1 was passed {advanced[0].updated_at - resumed_at[0]:+.0f}s after the resume (its "
                          f"interval is 60 s): the promote adopted the step's start at {adopted[0]:+.0f}s from the "
                          "resume (the laptop's clock)")
    assert result.state.phase != rl.ABORTED


# ---- B4: a CanaryRollout claiming an orphan's route after finishing its promotion claims with the old stable -----


def _orphan_promoting(router: Any, now: float) -> None:
    gone = "CanaryRollout ml/r0#00000000-0000-0000-0000-00000000dead"
    t, s = _claim(router, at=now - 1000, owner=gone)
    _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=rl.Weights.canary_at(100),
                                 updated_at=now - 900))


def _cr(client: Any, name: str, version: str) -> None:
    obj = fleet.rollout_object(0, version)
    obj["metadata"]["name"] = name
    kc.CustomObjectsApi(client).create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)


def _status(client: Any, name: str) -> dict[str, Any]:
    return kc.CustomObjectsApi(client).get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                                                     name).get("status") or {}


def test_a_claimant_that_finished_an_orphans_promotion_claims_with_the_new_stable_version(cluster: Any) -> None:
    """CanaryRollout r0 (deleted with its finalizer removed by hand) left m0 PROMOTING v2 (every step
    passed). r1 asks for v3 on m0 (no spec.stableVersion: "what the stable subset selects", v1 when it
    reads the route). Its tick ends the orphan (`_end_orphan`, decision 65 (i)): the promotion is
    finished, the stable subset now selects v2. It reads the route again but not its target:
    `check_claim` is called with stable_version v1 and raises TargetError ("the stable subset selects v2,
    not the stable version v1"): the tick fails, r1's Ready condition says TargetError, `rollout.tick_failed`
    is logged, and the claim waits for the next tick (a backoff with informers)."""
    api, client, router = cluster
    now = time.time()
    _orphan_promoting(router, now)
    _cr(client, "r1", "v3")
    clock = FakeClock(now)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v2", canary_version="v3")
    ctl = _controller(client, clock, sweep_every=0, metrics=FakeMetrics(LiveWeights(router, target), clock))
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
    weights, rec, stable, _ = cluster_state(api)
    failed = [e.get("error") for e in logs if e["event"] in ("rollout.tick_failed", "rollout.invalid")]
    assert stable == "v2"  # the orphan's promotion was finished
    assert not failed, f"r1's claim failed after it finished the orphan's promotion: {failed}"
    assert rec["canary_version"] == "v3" and rec["stable_version"] == "v2", rec


def test_a_cr_recreated_for_the_orphans_own_version_ends_once_the_orphans_promotion_is_finished(cluster: Any) -> None:
    """The usual way a CanaryRollout loses its finalizer by hand: it is stuck deleting, someone strips the
    finalizer, and the pipeline re-applies it (same name, same version v2, a new uid). The re-created r0
    finds its predecessor's rollout of v2 PROMOTING (an orphan: the old uid is gone) and finishes its
    promotion (decision 65 (i)). Then it tries to claim v2 against stable v1 (TargetError), and at every
    later tick against stable v2 ("canary version 'v2' is already the stable version": ConfigError).
    It never ends: no phase, Ready False, `promote --via-controller` waits out its --timeout and exits 3
    ("infrastructure") for a version that was promoted. (The first version rolled the orphan back and
    ran v2 again; decision 66 makes a request whose version another owner promoted exit 0.)"""
    api, client, router = cluster
    now = time.time()
    _orphan_promoting(router, now)
    _cr(client, "r0", "v2")  # same name, new uid
    ctl = _controller(client, FakeClock(now), sweep_every=0)
    for _ in range(4):
        with structlog.testing.capture_logs():
            ctl.tick()
    weights, rec, stable, _ = cluster_state(api)
    assert rec["phase"] == rl.PROMOTED and stable == "v2" and weights == [100, 0]  # v2 was promoted
    st = _status(client, "r0")
    ready = [c for c in st.get("conditions") or [] if c.get("type") == "Ready"]
    assert st.get("phase") in rl.TERMINAL, (f"r0 (v2) never ends although v2 is promoted: phase "
                                            f"{st.get('phase')!r}, Ready {[(c['reason'], c['message']) for c in ready]}")
    assert st["reason"].startswith("not run: v2 was promoted") and st["endCause"] == "operator", st  # decision 667


# ---- B5 (control): the takeover rule itself, while nothing disturbs the heartbeat ---------------------------


def test_control_a_live_promotes_heartbeat_keeps_another_promote_from_taking_over(cluster: Any) -> None:
    """Control for B1/B2: left alone, the heartbeat keeps updated_at fresh, and another promote started
    at T0+300 is refused (RolloutBusy)."""
    api, client, router = cluster
    t0 = time.time()
    _dead_promote_record(router, t0)
    box: list[Runner] = []
    target = _target()
    refused: list[str] = []

    def second_promote() -> None:
        other = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=FakeClock(clock.t),
                       metrics=FakeMetrics(LiveWeights(router, target), clock))  # type: ignore[arg-type]
        try:
            other._start()
        except RolloutBusy as exc:
            refused.append(str(exc))

    clock = _Hooks(t0 + 5, [(t0 + 300, second_promote), (t0 + 301, _stop(box))])
    runner = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    runner.owner = LIVE
    box.append(runner)
    result = runner.run()
    assert refused and result.state.phase != rl.ABORTED


# ---- B6: the heartbeat re-asserts a foreign weights edit silently --------------------------------------------


def test_a_foreign_weights_edit_just_before_a_heartbeat_is_reported(cluster: Any) -> None:
    """A1's setting (the promote waits for a look due at T0+910; the heartbeat is due at T0+25, its
    watch runs every second). On-call, seeing errors, sets the route to 100/0 by hand (`kubectl edit`) at
    T0+24.6, between two watches. At T0+25 the loop runs the heartbeat before the watch: its SetWeights
    writes the recorded 80/20 back over the edit (the guard compares the record, not the weights), and the
    watch then finds nothing to report. Without the heartbeat the watch reports `weights.foreign_edit` and
    `weights.reasserted` (a warning and a Kubernetes Event on the VirtualService); here the person's edit
    is undone with no trace in the log, the Events or the history."""
    api, client, router = cluster
    t0 = time.time()
    _dead_promote_record(router, t0)
    box: list[Runner] = []
    target = _target()
    edited: list[float] = []

    def by_hand() -> None:
        def edit(obj: dict[str, Any]) -> None:
            route = obj["spec"]["http"][0]["route"]
            route[0]["weight"], route[1]["weight"] = 100, 0
        api.edit(GROUP, "virtualservices", "ml", "m0", edit)
        edited.append(clock.t)

    clock = _Hooks(t0 + 5, [(t0 + 24.6, by_hand), (t0 + 30, _stop(box))])
    runner = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    box.append(runner)
    with structlog.testing.capture_logs() as logs:
        runner.run()
    assert edited and edited[0] < t0 + 25
    assert cluster_state(api)[0] == [80, 20]  # the edit was undone (the promote re-asserts; that is its policy)
    reported = [e["event"] for e in logs if e["event"] in ("weights.foreign_edit", "weights.reasserted")]
    assert reported, "the 100/0 set by hand was written over by the heartbeat with no weights.foreign_edit/reasserted"

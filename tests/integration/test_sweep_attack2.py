"""The sweep (decision 65 and its addendum) under a second attacker: each test reproduced a defect of
the addendum's version (decision 65, second addendum). Deterministic: fake clocks with hooks at fixed
(fake) times, fault injection in the Kubernetes API emulator."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import rollout as rl
from canary import sweep
from canary.cli import app
from canary.logs import get as get_logger
from canary.model import Target
from canary.policy import parse_policy
from canary.reconcile import execute
from canary.reconcile import promote_owner
from canary.routing.istio import IstioRouter
from canary.runner import Runner, oncall_action
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.integration.test_controller import vs
from tests.integration.test_sweep import _age_mark, _claim, _controller, cluster  # noqa: F401
from tests.integration.test_sweep_attack import OTHER_HOST, _pid_namespace, _policy, _target, _write
from tests.support.killpoints import LiveWeights, cluster_state

pytestmark = pytest.mark.integration


class _Hooks(FakeClock):
    """A fake clock that runs each (at, hook) once, the first time the clock passes `at`."""

    def __init__(self, start: float, hooks: list[tuple[float, Callable[[], None]]]) -> None:
        super().__init__(start)
        self.hooks = sorted(hooks, key=lambda h: h[0])
        self.fired: list[float] = []

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        while self.hooks and self.t >= self.hooks[0][0]:
            at, hook = self.hooks.pop(0)
            self.fired.append(at)
            hook()


def _sweeper(client: Any, clock: FakeClock, swept: list[str]) -> Callable[[], None]:
    """A hook: the controller's periodic sweep (sweep_every ~0: every call sweeps), on `clock`."""
    watcher = _controller(client, clock, sweep_every=0.001)

    def tick() -> None:
        with structlog.testing.capture_logs() as logs:
            watcher.tick()
        swept.extend(e["reason"] for e in logs if e["event"] == "rollout.abandoned")

    return tick


# ---- A1: a takeover by a promote with a longer look_every: no write for (step_looks+1) x look_every ---------


def test_a_promote_that_took_over_with_a_longer_look_every_is_not_swept_while_it_waits_for_its_look(cluster: Any) -> None:
    """A promote looking every second (a FAST policy) is OOM-killed 100 s into step 1 (100 looks). Its CI
    job re-runs it at once with the team's policy, looking every 10 s. `_take_over` writes the record
    (owner, heartbeat_s=10, updated_at): the sweep times it from there, 3 x 10 + 120 = 150 s. But the next
    look is `next_look_at` = step start + (step_looks + 1) x look_every = step start + 1010 s, 910 s after
    the takeover: the live promote legitimately writes nothing for 910 s, and the controller's sweep ends
    its rollout 150 s after the takeover ("its process is gone"), while that process waits for its look."""
    api, client, router = cluster
    t0 = time.time()
    dead = promote_owner(f"{socket.gethostname()}:{_pid_namespace()}:{2**22}:dead0001")  # a pid no process has
    t, s = _claim(router, at=t0 - 100, owner=dead, heartbeat_s=1.0)
    _write(router, t, s, replace(s, look=100, step_looks=100, updated_at=t0))  # killed right after its 100th look
    swept: list[str] = []
    target = _target()
    runner: Runner

    def stop() -> None:  # enough: end the run here (paused, exit 130)
        runner.on_interrupt = "pause"
        runner.stop.set()

    clock = _Hooks(t0 + 5, [])
    sweep_now = _sweeper(client, clock, swept)
    clock.hooks = [(t0 + 10, sweep_now), (t0 + 200, sweep_now), (t0 + 201, stop)]
    runner = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    result = runner.run()
    assert clock.fired[:2] == [t0 + 10, t0 + 200]
    assert not swept, f"the sweep ended a live promote that was waiting for its next look: {swept}"
    assert result.state.phase != rl.ABORTED, result.state.reason


# ---- A2: `canary resume` from a machine whose clock is ahead: the next look waits for that clock ------------


def test_a_live_promote_resumed_from_a_laptop_whose_clock_is_ahead_is_not_swept(cluster: Any) -> None:
    """A live promote (look_every 10 s: swept after 150 s unchanged) is paused and resumed by on-call
    from a laptop 5 minutes ahead of Prometheus (the promote's clock). `canary resume` records the step's
    new start on the laptop's clock (`rl.Resume(time.time())`); the promote adopts it and waits for
    `next_look_at` = that start + 10 s: 310 s with nothing to write. The sweep, which assumes a live
    promote writes every look_every, ends the live rollout after 150 s. (The addendum's rule "no other
    machine's clock is read" holds for the sweeper, not for the schedule it relies on.)"""
    api, client, router = cluster
    t0 = time.time()
    target = _target()
    swept: list[str] = []
    runner: Runner
    laptop_ahead = 300.0

    def pause() -> None:
        oncall_action(router, replace(target, stable_version="v1"), rl.Pause(clock.t + laptop_ahead), log=get_logger())

    def resume() -> None:
        oncall_action(router, replace(target, stable_version="v1"), rl.Resume(clock.t + laptop_ahead),
                      log=get_logger())

    def stop() -> None:
        runner.on_interrupt = "pause"
        runner.stop.set()

    clock = _Hooks(t0, [])
    sweep_now = _sweeper(client, clock, swept)
    clock.hooks = [(t0 + 12, pause), (t0 + 20, resume), (t0 + 25, sweep_now), (t0 + 190, sweep_now),
                   (t0 + 191, stop)]
    runner = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    result = runner.run()
    assert clock.fired[:4] == [t0 + 12, t0 + 20, t0 + 25, t0 + 190]
    assert not swept, f"the sweep ended a live, resumed promote waiting for its first look: {swept}"
    assert result.state.phase != rl.ABORTED, result.state.reason


# ---- A3: a look's queries are bounded one by one, not in all: a policy with many checks outlasts the margin -


# Prometheus queries one look sends per check, as `PrometheusProvider` sends them: a classic latency
# histogram is `sum by (le)` and its series count, per arm; an error rate is requests and errors per arm
QUERIES = {"latency": 4, "error_rate": 4}
QUERY_S = 4.9  # a loaded Prometheus answering each query inside the client's 5 s timeout and budget


class _SlowPrometheus(FakeMetrics):
    """FakeMetrics whose every query takes QUERY_S of the (fake) clock, as a busy Prometheus would. The
    look runs in a worker thread while the promote's main thread waits on it (and beats its record's
    heartbeat meanwhile, every 50 ms of real time): after each query the worker waits, on a condition
    with a real-time bound, until the main thread has caught up with the fake clock (a heartbeat due
    has been written), as a real look's seconds per query leave it time to."""

    runner: Any = None
    finished: threading.Event | None = None  # set once the test has its result: a look still running ends

    def _query(self, n: int) -> None:
        for _ in range(n):
            if self.finished is not None and self.finished.is_set():
                # the look the interrupt abandoned goes on in its worker thread: it must not read the API
                # while the emulator stops (a request in flight held the emulator's shutdown past 10 s)
                raise RuntimeError("the test is over")
            self.clock.sleep(QUERY_S)
            deadline = time.monotonic() + 5  # then go on: the sweep at t0 + 152 tells whether it was written
            r = self.runner
            while (r is not None and self.clock.now() - r._wrote_at >= 2 * r.policy.analysis.look_every
                   and time.monotonic() < deadline):
                time.sleep(0.005)

    def measure(self, policy: Any, check: Any, target: Target, *, window_s: int) -> tuple[Any, Any]:
        self._query(QUERIES[check.kind])
        return super().measure(policy, check, target, window_s=window_s)

    def request_counts(self, policy: Any, target: Target, *, window_s: int) -> tuple[float, float]:
        self._query(2)
        return super().request_counts(policy, target, window_s=window_s)


def test_a_live_promote_in_a_slow_look_of_a_policy_with_seven_checks_is_not_swept(cluster: Any) -> None:
    """Decision 65: "a look's queries are bounded (~5 s each) and fit well inside the margin". They are
    bounded one by one; a look sends them one after another: a policy with five latency quantiles and
    two error limits sends 30 queries a look, 147 s against a Prometheus answering each in 4.9 s (inside
    its 5 s timeout: nothing fails). With the default look_every (10 s) the sweep's limit is 150 s; the
    record of a live promote, in the middle of its first look, has been seen unchanged for 151 s, and the
    controller's sweep ends the rollout while its owner is about to record the look."""
    checks = [{"name": f"latency-p{q}", "kind": "latency", "quantile": q / 100, "max_increase_pct": 20}
              for q in (50, 75, 90, 95, 99)]
    checks += [{"name": "errors", "kind": "error_rate", "max_increase_points": 2},
               {"name": "error-ceiling", "kind": "error_rate", "max_rate_pct": 5}]
    api, client, router = cluster
    t0 = time.time()
    target = _target()
    swept: list[str] = []
    runner: Runner

    def stop() -> None:
        runner.on_interrupt = "pause"
        runner.stop.set()

    clock = _Hooks(t0, [])
    sweep_now = _sweeper(client, clock, swept)
    # the claim and the first step are written at t0; the first look is due at t0 + 10 and lasts 147 s
    clock.hooks = [(t0 + 1, sweep_now), (t0 + 152, sweep_now), (t0 + 170, stop)]
    policy = _policy("10s", "600s", checks=checks)
    assert sum(QUERIES[c.kind] for c in policy.checks) + 2 == 30
    slow = _SlowPrometheus(LiveWeights(router, target), clock, rps=1000.0)  # type: ignore[arg-type]
    runner = Runner(policy=policy, target=target, router=router, clock=clock, metrics=slow)
    slow.runner, slow.finished = runner, threading.Event()
    result = runner.run()
    slow.finished.set()
    for t in threading.enumerate():  # the abandoned look's worker ends at its next query (each waits 5 s at most)
        if t.name == "canary-look":
            t.join(30)
            assert not t.is_alive(), "the abandoned look did not end"
    assert clock.fired[:2] == [t0 + 1, t0 + 152]
    assert not swept, f"the sweep ended a live promote in the middle of a look: {swept}"
    assert result.state.phase != rl.ABORTED, result.state.reason


# ---- A4: one VirtualService whose mark cannot be written stops `canary sweep` for every route after it ------

def _sweep_cli(kubeconfig: Path, *args: str) -> Any:
    saved = structlog.get_config()
    try:
        return CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), *args])
    finally:
        structlog.configure(**saved)  # the command logged onto its runner's stream, closed now


def test_one_route_canary_sweep_cannot_mark_does_not_keep_every_other_abandoned_rollout_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any) -> None:
    """m0, m1 and m2 each carry the split rollout of a promote killed with SIGKILL. m0 was marked by an
    earlier pass and is now past its limit; m1 cannot be annotated by the sweep's service account (403:
    a namespace its Role does not cover with -A, an admission policy on that one object). `canary sweep`
    ends m0 (a write), then lets m1's 403 escape `go()`: the pass stops there, m2 is never marked, so
    never timed and never ended (every CronJob run fails the same way at m1: m2's canary keeps its share
    for good); the command exits 2, which says "bad input, nothing touched", after writing stable 100% to
    m0 (its docstring: 3 when a write failed); and `-o json` prints no document, so what was ended is
    reported nowhere but a log line."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    router = IstioRouter(client, wait=tenacity.wait_none())
    now = time.time()
    _claim(router, at=now - 1000, owner=OTHER_HOST)
    assert _sweep_cli(kubeconfig, "-n", "ml").exit_code == 0  # marks m0
    _age_mark(api, "m0", 1000)
    _claim(router, at=now - 1000, owner=OTHER_HOST, vs_name="m1")
    _claim(router, at=now - 1000, owner=OTHER_HOST, vs_name="m2")
    real = IstioRouter.annotate

    def annotate(self: IstioRouter, namespace: str, name: str, *a: Any, **kw: Any) -> None:
        if name == "m1":  # refused by the API server, every time
            api.fail_next(403, times=1, methods=("PUT",), plural="virtualservices")
        return real(self, namespace, name, *a, **kw)

    monkeypatch.setattr(IstioRouter, "annotate", annotate)
    second = _sweep_cli(kubeconfig, "-n", "ml", "-o", "json")
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED  # it did write
    m2 = api.get("networking.istio.io", "virtualservices", "ml", "m2")
    marked = sweep.SEEN_ANNOTATION in (m2["metadata"].get("annotations") or {})
    problems = []
    if second.exit_code != 3:
        problems.append(f"exit {second.exit_code} after ending m0 ({second.output.strip()!r})")
    try:
        json.loads(second.stdout)
    except ValueError:
        problems.append("-o json printed no document (m0's end reported nowhere)")
    if not marked:
        problems.append("m2 was never marked: no pass will ever end its abandoned rollout")
    assert not problems, problems


# ---- A5: a claimant ending an orphan's PROMOTING rollout re-points the stable subset unguarded --------------


def test_a_claimant_ending_an_orphans_promotion_that_the_sweep_just_finished_leaves_the_subset_agreeing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CanaryRollout r0 (deleted with its finalizer removed by hand) left m0 PROMOTING: canary at 100%,
    every step passed. CanaryRollout r1 is created for m0. Its controller reads the route (PROMOTING),
    asks the API whether r0 still exists (404) and ends the orphan (`_end_orphan`: a rollback from
    PROMOTING). Meanwhile, between its read and its write, `canary sweep` (the CronJob; or the shard that
    owns m0) finishes r0's promotion as decision 65's addendum (c) says: PROMOTED, stable subset -> v2,
    100/0. `_end_orphan`'s actions start with an UNGUARDED PointSubset(stable -> v1), then its guarded
    stable-100% write is refused (RoutingConflict). Left behind: a record PROMOTED v2 at 100/0 whose
    stable subset selects v1 -- the addendum's (c) defect, fixed in the sweep's own path, still open in
    the claimant's; the record lies about what serves the traffic, and r1's next claim takes v1 as stable."""
    from canary import crd

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router = IstioRouter(client, wait=tenacity.wait_none())
        now = time.time()
        gone = "CanaryRollout ml/r0#00000000-0000-0000-0000-00000000dead"
        t, s = _claim(router, at=now - 1000, owner=gone)
        _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=rl.Weights.canary_at(100), updated_at=now - 900))
        r1 = fleet.rollout_object(0, "v2")
        r1["metadata"]["name"] = "r1"
        kc.CustomObjectsApi(client).create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, r1)
        real_gone = sweep.crd_gone
        finished: list[str] = []

        def crd_gone(custom: Any, owner: str) -> bool:
            if not finished:  # the sweep elsewhere lands now, between the claimant's read and its write
                found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: None,
                                   lambda o: True).abandoned
                finished.append(sweep.end(router, found[0], log=get_logger(), now=now).phase)
            return real_gone(custom, owner)

        monkeypatch.setattr(sweep, "crd_gone", crd_gone)
        ctl = _controller(client, FakeClock(now), sweep_every=0)  # its own sweep off: only its claim path runs
        with structlog.testing.capture_logs():
            ctl.tick()
        weights, rec, stable, _ = cluster_state(api)
        assert finished == [rl.PROMOTED]
        assert rec["phase"] == rl.PROMOTED and rec["canary_version"] == "v2" and weights == [100, 0], (weights, rec)
        assert stable == "v2", (f"the route records v2 PROMOTED at 100/0, but the stable subset selects {stable}: "
                                "the promotion was undone under a record that says it stands")
    finally:
        client.close()
        api.stop()


# ---- A6: decision 66: a waitedOnPhase left from the CR's earlier version decides a later request's exit -----


def _claim_version(router: IstioRouter, *, at: float, owner: str, stable: str, canary: str) -> tuple[Target, rl.RolloutState]:
    """What a promote of `canary` (from `stable`) writes on m0 to claim it and move its first step."""
    from canary import crd

    t = Target(namespace="ml", virtual_service="m0", model="m0", stable_version=stable, canary_version=canary)
    s, actions = rl.new_rollout(model="m0", stable_version=stable, canary_version=canary, now=at, owner=owner,
                                heartbeat_s=10.0)
    s = execute(router, t, s, actions, log=get_logger())
    begun, actions = rl.transition(s, rl.Begin(at), crd.parse(fleet.rollout_object(0, canary)).policy)
    return t, execute(router, t, begun, actions, log=get_logger(), expect=s.to_json())


def test_promote_via_controller_does_not_exit_0_by_a_waited_on_phase_left_from_the_crs_earlier_version(
        tmp_path: Path) -> None:
    """Generation 1 of CanaryRollout `twin` (v2) waited on a `canary promote` of v2, which PROMOTED it:
    twin ended `aborted`, `status.waitedOnPhase: promoted` (decision 66). The pipeline later runs
    `promote --via-controller --rollout-name twin` for v3: `follow` replaces the spec (generation 2).
    twin waits on promote P1's rollout of v3; P1's rollout is ROLLED BACK and a retried promote P2 claims
    v3 again before the controller's next look at twin. twin ends unrun with "the route has moved on"
    and, rightly, no outcome (`_duplicate_ended`: waited_phase None) -- but the patch writes no
    `waitedOnPhase` at all, so generation 1's "promoted" is still there, and `follow` (phase aborted,
    target v3, observedGeneration 2) exits 0: "promoted by the rollout this request waited on" for a
    version that was rolled back. Decision 66: unknown is exit 3."""
    import threading

    import yaml

    import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
    from canary import crd
    from canary.cli_controller import follow

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router = IstioRouter(client, wait=tenacity.wait_none())
        custom = kc.CustomObjectsApi(client)
        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
        now = time.time()
        ctl = _controller(client, FakeClock(now), sweep_every=0)

        def twin() -> dict[str, Any]:
            return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "twin")

        # generation 1: twin (v2) waits on a promote of v2, which promotes it
        t, s = _claim_version(router, at=now - 100, owner=OTHER_HOST, stable="v1", canary="v2")
        body = crd.new_object(namespace="ml", name="twin", model="m0", canary_version="v2",
                              policy_raw=copy.deepcopy(fleet.FAST_POLICY))
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, body)
        with structlog.testing.capture_logs():
            ctl.tick()  # RolloutBusy: waits on the promote's rollout
        promoting = replace(s, phase=rl.PROMOTING, step=2, weights=rl.Weights.canary_at(100), updated_at=now - 50)
        _write(router, t, s, promoting)
        execute(router, t, *rl.finish_promotion(promoting, now - 40), log=get_logger(), expect=promoting.to_json())
        with structlog.testing.capture_logs():
            ctl.tick()
        st = twin()["status"]
        assert st["phase"] == rl.ABORTED and st.get("waitedOnPhase") == rl.PROMOTED, st

        # generation 2: the pipeline asks for v3 under the same name
        t1, p1 = _claim_version(router, at=now - 30, owner=OTHER_HOST, stable="v2", canary="v3")
        codes: list[int] = []
        follower = threading.Thread(target=lambda: codes.append(follow(
            model="m0", canary_version="v3", policy_file=policy, namespace="ml", stable_version="",
            virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="twin", triton=None,
            output="json", timeout_s=300)), daemon=True)  # bounds that matter only when broken: follow's
        follower.start()  # clock runs from its start, through the ticks below (30 s: a loaded machine's race)
        deadline = time.monotonic() + 120
        while twin()["metadata"].get("generation") != 2:  # follow's replace landed (it went on after 20 s regardless)
            assert time.monotonic() < deadline, "follow never sent generation 2"
            time.sleep(0.05)
        with structlog.testing.capture_logs():
            ctl.tick()  # RolloutBusy: twin waits on P1's rollout of v3
        assert twin()["status"]["waitedOn"]["canaryVersion"] == "v3"
        rolled, actions = rl.transition(p1, rl.Rollback(now - 20, "p95 latency +60%"), None)  # type: ignore[arg-type]
        execute(router, t1, rolled, actions, log=get_logger(), expect=p1.to_json())  # v3 rolled back
        other = promote_owner("ci-runner:4026531836:4343:cd34")  # the pipeline's retry claims v3 again
        _claim_version(router, at=now - 10, owner=other, stable="v2", canary="v3")
        with structlog.testing.capture_logs():
            ctl.tick()  # twin ends unrun: the route has moved on
        follower.join(120)
        st = twin()["status"]
        assert codes, "follow did not return"
        assert st["phase"] == rl.ABORTED and st["target"]["canaryVersion"] == "v3", st
        assert codes[0] != 0, (f"exit 0 ('promoted') for v3, which was rolled back; status.waitedOnPhase="
                               f"{st.get('waitedOnPhase')!r} is generation 1's (v2)")
    finally:
        client.close()
        api.stop()



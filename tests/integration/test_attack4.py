"""A fourth attacker on the sweep, the heartbeat, decision 66 and the verdict's reason: each test
reproduced a defect, fixed in decision 65's fourth addendum. Deterministic: fake clocks with hooks at fixed (fake) times, the strict Kubernetes API emulator,
a Prometheus that refuses connections (a closed port)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.logs import get as get_logger
from canary.reconcile import EXIT_CODES, promote_owner
from canary.runner import Runner, oncall_action
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.integration.test_sweep import _claim, _controller, cluster  # noqa: F401
from tests.integration.test_sweep_attack import _pid_namespace, _policy, _target, _write
from tests.integration.test_sweep_attack2 import _Hooks
from tests.integration.test_sweep_attack3 import _cr, _orphan_promoting, _status, _stop
from tests.support.killpoints import LiveWeights, cluster_state

pytestmark = pytest.mark.integration


def _via_controller_exit(st: dict[str, Any]) -> int | None:
    """What `promote --via-controller` (cli_controller.follow) exits with for this CR status; None: it waits."""
    if st.get("phase") not in rl.TERMINAL:
        return None
    waited = st.get("waitedOnPhase") if st["phase"] == rl.ABORTED else None
    return EXIT_CODES[waited if waited in EXIT_CODES else st["phase"]]


# ---- C1: the controller's own sweep finishes the orphan's promotion first: the re-created CR never ends ---------


def test_a_cr_recreated_after_the_sweep_finished_its_predecessors_promotion_ends_as_promoted(cluster: Any) -> None:
    """Decision 65 (p): a CanaryRollout re-applied after its finalizer was stripped by hand, whose
    predecessor (same name, old uid) left its own version PROMOTING, ends unrun with waitedOnPhase
    promoted (`promote --via-controller` exits 0). That holds only when the re-created CR's tick comes
    before the sweep. The controller sweeps every minute, and the pipeline re-applies when it re-applies:
    here the controller's sweep finds r0 gone first and finishes the promotion (v2 stable, PROMOTED).
    Then r0 (v2) is created again. Its claim path skips the orphan branch (the record is terminal) and
    `check_claim` raises "canary version 'v2' is already the stable version" at every tick: r0 never ends,
    Ready False, and `--via-controller` waits out its --timeout and exits 3 for a version that was promoted
    -- the outcome depends on which of two periodic loops ran first."""
    api, client, router = cluster
    now = time.time()
    _orphan_promoting(router, now)  # r0 (uid ...dead) left m0 PROMOTING v2, every step passed
    ctl = _controller(client, FakeClock(now), sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()  # no CanaryRollout yet: only the sweep acts
    weights, rec, stable, _ = cluster_state(api)
    assert rec["phase"] == rl.PROMOTED and stable == "v2" and weights == [100, 0]
    assert any(e["event"] == "rollout.abandoned" for e in logs)
    _cr(client, "r0", "v2")  # the pipeline re-applies r0 (same name, same version, a new uid)
    errors: list[str] = []
    for _ in range(4):
        with structlog.testing.capture_logs() as logs:
            ctl.tick()
        errors += [str(e.get("error")) for e in logs if e["event"] in ("rollout.invalid", "rollout.tick_failed")]
    st = _status(client, "r0")
    assert st.get("phase") in rl.TERMINAL and _via_controller_exit(st) == 0, (
        f"r0 (v2) never ends although its predecessor's v2 was promoted by the sweep: phase {st.get('phase')!r}, "
        f"errors at every tick: {sorted(set(errors))}")
    assert st["endCause"] == "operator", st  # another owner's run promoted its version (decision 667)


# ---- C2: a promote takes over the rollout a CR waits on: the CR ends "moved on" while it runs -------------------


def test_a_cr_waiting_on_a_promote_does_not_end_when_another_promote_takes_that_rollout_over(cluster: Any) -> None:
    """CanaryRollout w (v2 on m0) is refused RolloutBusy while a `canary promote` of v2 runs it
    (status.waitedOn: that promote's owner, v2, its start). The promote is OOM-killed; its CI job re-runs
    it and the new process takes the rollout over (`Runner._take_over`: same rollout, same started_at,
    a new `owner`). At its next tick the controller compares waitedOn with the record: the owner differs,
    so `_waited` says the rollout ended and `_duplicate_ended` ends w unrun, "ended (the route has moved on
    since)", waitedOnPhase None: `promote --via-controller` exits 3 -- "could not complete ... 100%
    stable" by docs/reference/cli.md's "Exit codes" -- while the rollout of v2 it waited on is in progress at 80/20
    (and may promote v2 a minute later). The CR's status says the rollout ended when it did not."""
    api, client, router = cluster
    now = time.time()
    dead = promote_owner(f"{socket.gethostname()}:{_pid_namespace()}:{2**22}:dead0001")  # its pid: gone
    t, s = _claim(router, at=now - 100, owner=dead, heartbeat_s=10.0)
    _write(router, t, s, replace(s, look=5, step_looks=5, updated_at=now - 50))
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["name"] = "w"
    kc.CustomObjectsApi(client).create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    clock = FakeClock(now)
    ctl = _controller(client, clock, sweep_every=0)
    with structlog.testing.capture_logs():
        ctl.tick()  # RolloutBusy: w waits on the promote's rollout of v2
    assert (_status(client, "w").get("waitedOn") or {}).get("owner") == dead
    target = _target()
    rerun = Runner(policy=_policy("10s", "600s"), target=target, router=router, clock=FakeClock(now + 1),
                   metrics=FakeMetrics(LiveWeights(router, target), clock))  # type: ignore[arg-type]
    with structlog.testing.capture_logs():
        taken = rerun._start()  # the dead process's rollout: taken over (its pid is gone here)
    assert taken.owner == rerun.owner and taken.phase == rl.PROGRESSING and taken.started_at == s.started_at
    clock.sleep(1.0)
    with structlog.testing.capture_logs():
        ctl.tick()
    weights, rec, _, _ = cluster_state(api)
    st = _status(client, "w")
    assert rec["phase"] == rl.PROGRESSING and weights == [80, 20]  # the rollout w waited on still runs
    assert st.get("phase") not in rl.TERMINAL, (
        f"w ended {st.get('phase')!r} (promote --via-controller exits {_via_controller_exit(st)}) while the rollout "
        f"of v2 it waited on runs at {weights[0]}/{weights[1]}: {st.get('reason')!r}")


# ---- C3: the verdict's reason "names checks sharing a cause together": never, as the judge words them -------------


def test_checks_prometheus_could_not_answer_are_named_together_in_the_reason_the_judge_gives() -> None:
    """Decision 65, third addendum: "a verdict's reason names the checks that share a cause together,
    without their queries (five checks Prometheus could not answer made a ~2,000-character line)". Its
    unit test builds reasons starting `check 'X': Prometheus ...`; the judge words them `could not measure:
    MetricsUnavailable: check 'X': Prometheus at URL could not be asked ... (connection failed)` (judge
    `_measure_error`), so `removeprefix(f"check '{r.check}': ")` strips nothing, every text keeps its
    check's name, and no two are ever grouped: policies/default.yaml's five checks against a Prometheus
    that refuses connections still make five clauses repeating the cause (the reason that `rollout.aborted`,
    the CR status and `canary status` show when the deadline passes)."""
    from canary.analysis.judge import judge
    from canary.metrics.prometheus import PrometheusProvider
    from canary.model import Target
    from canary.policy import load_policy
    from canary.reconcile import measure_window

    from tests.support.refused import refused_port

    port = refused_port()  # nobody listens, nor can start to: connection refused at once (bound and closed, it could)
    policy = load_policy("policies/default.yaml")
    url = f"http://127.0.0.1:{port}"
    prom = PrometheusProvider(url, retries=1, budget_s=2.0, timeout_s=1.0)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    with structlog.testing.capture_logs():
        measurements, _, _, _ = measure_window(prom, policy, target, window_s=60, log=get_logger())
    reason = judge(policy, measurements, prior={}, window=0, pass_ratio=1.0).reason()
    names = [c.name for c in policy.checks]
    assert reason.count(url) == 1, (f"{len(names)} checks, one cause (Prometheus at {url} refused), said "
                                    f"{reason.count(url)} times in {len(reason)} characters: {reason}")


# ---- C4: a resume the promote re-stamps is missing from `canary report`'s history -------------------------------


def test_an_oncall_resume_the_promote_restamps_is_in_the_reports_history(cluster: Any) -> None:
    """A live promote (look_every 10 s) on step 1. On-call runs `canary pause` at T0+12.5 and `canary resume`
    at T0+15.5 (between two of the promote's watches, on the same clock: no skew at all). The promote
    adopts both. Before decision 65 (o) the adopted resume was returned as is and `_loop` recorded it in
    the history ConfigMap (`Recorder.observe(state)` with no actions: `rollout.phase_changed` progressing).
    Now `_restamp_resume` adopts it through `_apply(..., [SetWeights])`: `observe` sees actions, so no
    phase change is recorded, and `_last` already says progressing when `_loop` observes it. `canary
    report` shows the rollout paused at T0+12.5 and never resumed -- while it served 80/20, looked and
    judged for the rest of the step (here until it was interrupted at T0+30)."""
    from canary.history_store import load_history

    api, client, router = cluster
    t0 = time.time()
    target = _target()
    box: list[Runner] = []
    oncall = replace(target, stable_version="v1")

    def pause() -> None:
        oncall_action(router, oncall, rl.Pause(clock.t, "checking a dashboard"), log=get_logger())

    def resume() -> None:
        oncall_action(router, oncall, rl.Resume(clock.t), log=get_logger())

    clock = _Hooks(t0, [(t0 + 12.5, pause), (t0 + 15.5, resume), (t0 + 30, _stop(box))])
    runner = Runner(policy=_policy("10s", "60s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    box.append(runner)
    with structlog.testing.capture_logs() as logs:
        result = runner.run()
    adopted = [e["phase"] for e in logs if e["event"] == "rollout.changed_outside"]
    assert adopted == [rl.PAUSED, rl.PROGRESSING] and result.state.phase == rl.PAUSED  # both seen; then interrupted
    doc = load_history(kc.CoreV1Api(client), "ml", "m0")
    phases = [(round(e["at"] - t0, 1), e["event"], e["phase"]) for e in doc["events"]]
    resumed = [p for p in phases if p[2] == rl.PROGRESSING and p[0] > 12.5]
    assert resumed, f"the report's history never shows the resume at T0+15.5: {phases}"


# ---- C5: `promote --via-controller`'s one line for a request that waited: "weights None/None" --------------------


def test_promote_via_controller_that_waited_prints_the_routes_weights_not_none(tmp_path: Any, capsys: Any) -> None:
    """`promote --via-controller` for v2 while a `canary promote` of v2 runs it: the CR waits, the other
    promote PROMOTES v2, the CR ends unrun and `follow` exits 0 (decision 66) printing its one line,
    "promoted by the rollout this request waited on (aborted itself): m0 v2 weights {stable}/{canary} ...".
    `_end_unrun` writes no `status.weights` (the CR moved nothing), so the line reads "weights None/None"
    (and `-o json` has no weights): the one line the pipeline's log keeps says nothing of the traffic."""
    import copy
    import threading

    import tenacity
    import yaml

    import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
    from canary.cli_controller import follow
    from canary.reconcile import execute
    from canary.routing.istio import IstioRouter

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router = IstioRouter(client, wait=tenacity.wait_none())
        custom = kc.CustomObjectsApi(client)
        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(copy.deepcopy(fleet.FAST_POLICY)))
        now = time.time()
        ctl = _controller(client, FakeClock(now), sweep_every=0)
        other = promote_owner("ci-runner:4026531836:4242:ab12")
        t, s = _claim(router, at=now - 100, owner=other)
        codes: list[int] = []
        follower = threading.Thread(target=lambda: codes.append(follow(
            model="m0", canary_version="v2", policy_file=policy, namespace="ml", stable_version="",
            virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="req", triton=None,
            output="text", timeout_s=300)), daemon=True)  # bounds that matter only when broken: follow's
        follower.start()  # clock runs from its start, through the ticks below (30 s: a loaded machine's race)
        deadline = time.monotonic() + 120
        while True:  # until follow's CanaryRollout exists (it went on after 20 s regardless)
            try:
                custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
                break
            except Exception:
                assert time.monotonic() < deadline, "follow never created its CanaryRollout"
                time.sleep(0.05)
        with structlog.testing.capture_logs():
            ctl.tick()  # RolloutBusy: req waits on the promote's rollout of v2
        promoting = replace(s, phase=rl.PROMOTING, step=2, weights=rl.Weights.canary_at(100), updated_at=now - 50)
        _write(router, t, s, promoting)
        execute(router, t, *rl.finish_promotion(promoting, now - 40), log=get_logger(), expect=promoting.to_json())
        with structlog.testing.capture_logs():
            ctl.tick()  # req ends unrun: v2 was promoted
        follower.join(120)
        out = capsys.readouterr().out
        assert codes == [0], codes
        assert "None/None" not in out, f"follow's one line: {out.strip()!r}"
    finally:
        client.close()
        api.stop()

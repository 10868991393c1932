"""The controller loop on a fake clock: ordering of writes, timing, resume, interrupts."""

from __future__ import annotations

import json
import time

import pytest

from canary import rollout as rl
from canary.runner import EXIT_INFRA, EXIT_INTERRUPTED, Runner, oncall_action
from canary.errors import AlreadyStable, ConfigError, RolloutBusy, TargetError
from canary.logs import get
from canary.model import STABLE_ONLY, Target, Weights
from canary.policy import parse_policy
from tests.fakes import FakeClock, FakeMetrics, FakeRouter

POLICY = parse_policy({
    "steps": [10, 50, 100],
    "analysis": {"interval": "10s", "look_every": "2s", "min_canary_requests": 50, "alpha": 0.01},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "20s"},
    "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20},
               {"name": "err", "kind": "error_rate", "max_increase_points": 1}],
})
TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="", canary_version="v2")


def make(**kw: object) -> tuple[Runner, FakeRouter, FakeMetrics, FakeClock]:
    clock, router = FakeClock(), FakeRouter()
    metrics = FakeMetrics(router, clock, **kw)
    return Runner(policy=POLICY, target=TARGET, router=router, metrics=metrics, clock=clock), router, metrics, clock


def test_good_canary_is_promoted_and_ends_on_the_new_version() -> None:
    ctl, router, _, clock = make()
    res = ctl.run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED
    assert router.weights == STABLE_ONLY and router.subsets == {"stable": "v2", "canary": "v2"}
    writes = [x for x in router.log if x[0] != "event"]
    # canary subset pointed while it had no traffic; stable re-pointed while canary had all of it
    assert writes[0] == ("weights", STABLE_ONLY) and writes[1] == ("subset", ("canary", "v2"))
    i = writes.index(("subset", ("stable", "v2")))
    assert writes[i - 1] == ("weights", Weights(0, 100)) and writes[i + 1] == ("weights", STABLE_ONLY)
    weights = [w for k, w in writes if k == "weights"]
    changes = [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]]  # every look is recorded too
    assert changes[1:4] == [Weights(90, 10), Weights(50, 50), Weights(0, 100)]
    assert clock.t - 1000 >= 20  # two judged steps of at least 10 s; 100% is the promotion
    assert json.loads(router.state)["phase"] == "promoted"


def test_slow_canary_rolls_back_within_two_looks_of_the_breach() -> None:
    ctl, router, _, clock = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    res = ctl.run()
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK and router.weights == STABLE_ONLY
    assert router.subsets["stable"] == "v1"  # rollback leaves stable as it was
    assert "lat" in res.state.reason
    assert clock.t - 1012 <= 2 * POLICY.analysis.look_every + 0.5


def test_prometheus_down_aborts_at_the_deadline_with_stable_at_100() -> None:
    ctl, router, metrics, clock = make()
    metrics.down = True
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED and router.weights == STABLE_ONLY
    assert 30 <= clock.t - 1000 <= 33  # interval 10 s + deadline 20 s


def test_resume_from_recorded_state_continues_the_step() -> None:
    ctl, router, _, clock = make()
    # the signal once the first step is routed (one before it moves nothing: nothing to hold)
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    ctl.on_interrupt = "pause"
    res = ctl.run()
    assert res.exit_code == EXIT_INTERRUPTED and res.state.phase == rl.PAUSED and router.weights == Weights(90, 10)
    ctl2 = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock)
    res2 = ctl2.run()
    assert res2.exit_code == 0 and router.weights == STABLE_ONLY


def test_a_resumed_rollouts_lines_name_the_stable_version() -> None:
    # docs/reference/events.md: every line carries stable_version; a promote that resumed a recorded rollout
    # (no --stable-version: it is the record's) logged every line without it, its rollback included
    import structlog.testing

    ctl, router, _, clock = make()
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    ctl.on_interrupt = "pause"
    assert ctl.run().exit_code == EXIT_INTERRUPTED
    ctl2 = Runner(policy=POLICY, target=TARGET, router=router, clock=clock,
                  metrics=FakeMetrics(router, clock, slowdown=lambda t: 2.0))
    with structlog.testing.capture_logs() as logs:
        assert ctl2.run().exit_code == 1
    assert {e["event"] for e in logs} >= {"rollout.resumed_from_state", "look.completed", "rollback.completed"}
    assert all(e.get("stable_version") == "v1" for e in logs), [e["event"] for e in logs if "stable_version" not in e]


def test_interrupt_defaults_to_rollback() -> None:
    ctl, router, _, _ = make()
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and router.weights == STABLE_ONLY and res.state.reason == "interrupted"


def test_a_signal_before_the_claim_writes_nothing() -> None:
    """Decision 131 (c): the claim is not written once a signal came during the checks before it."""
    from canary.errors import CanaryError

    ctl, router, _, _ = make()
    ctl.stop.set()
    with pytest.raises(CanaryError, match="before the rollout began, during the checks before the claim; nothing"):
        ctl.run()
    assert [x for x in router.log if x[0] != "event"] == []


def test_other_rollout_in_progress_is_refused_untouched() -> None:
    router = FakeRouter(weights=Weights(90, 10))
    other = rl.RolloutState(model="rec", stable_version="v1", canary_version="v9", phase=rl.PROGRESSING,
                            weights=Weights(90, 10))
    router.state = other.to_json()
    ctl = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, FakeClock()), clock=FakeClock())
    with pytest.raises(RolloutBusy, match="v9"):
        ctl.run()
    assert router.log == []


def test_split_traffic_without_a_rollout_is_refused() -> None:
    router = FakeRouter(weights=Weights(70, 30))
    ctl = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, FakeClock()), clock=FakeClock())
    with pytest.raises(TargetError, match="70/30"):
        ctl.run()
    assert router.log == []


def test_same_version_is_bad_input() -> None:
    router = FakeRouter(subsets={"stable": "v2", "canary": "v2"})
    ctl = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, FakeClock()), clock=FakeClock())
    with pytest.raises(ConfigError, match="already the stable"):
        ctl.run()


def test_oncall_rollback_from_another_process_is_adopted() -> None:
    ctl, router, metrics, clock = make()

    def rollback_midway(t: float) -> float:
        if t >= 1015 and json.loads(router.state)["phase"] == rl.PROGRESSING:
            oncall_action(router, TARGET, rl.Rollback(t, "operator: on-call says no"), log=get())
        return 1.0

    metrics.slowdown = rollback_midway
    import structlog.testing

    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert res.exit_code == 1 and res.state.reason == "operator: on-call says no" and router.weights == STABLE_ONLY
    # docs/reference/events.md: every line has its step
    adopted = [e for e in logs if e["event"] == "rollout.changed_outside"]
    assert adopted and adopted[0]["phase"] == rl.ROLLED_BACK and adopted[0]["step"] >= 1


def test_oncall_lines_name_the_virtual_service_and_both_versions() -> None:
    # docs/reference/events.md: every line carries model, namespace, virtual_service, stable_version, canary_version.
    # `canary pause/resume/rollback` logged rollout.paused/resumed and rollback.completed without the last three
    import structlog.testing

    ctl, router, _, clock = make()
    ctl.on_interrupt = "pause"
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    assert ctl.run().exit_code == EXIT_INTERRUPTED
    with structlog.testing.capture_logs() as logs:
        oncall_action(router, TARGET, rl.Resume(clock.t), log=get(model="rec", namespace="ml"))
        oncall_action(router, TARGET, rl.Rollback(clock.t + 1, "operator: pager"), log=get(model="rec", namespace="ml"))
    events = {e["event"]: e for e in logs}
    for name in ("rollout.resumed", "rollback.started", "rollback.completed"):
        line = events[name]
        assert (line["virtual_service"], line["stable_version"], line["canary_version"]) == ("rec", "v1", "v2"), line


def test_foreign_weight_edit_is_reasserted() -> None:
    ctl, router, metrics, clock = make()
    edited = []
    real_sleep = clock.sleep

    def sleep_then_edit(seconds: float) -> None:  # the edit lands between two looks
        real_sleep(seconds)
        if clock.t >= 1013 and not edited:
            edited.append(True)
            router.weights = Weights(100, 0)  # a GitOps sync resets the weights, leaving our annotation

    clock.sleep = sleep_then_edit  # type: ignore[method-assign]
    res = ctl.run()
    assert res.exit_code == 0 and edited
    writes = [w for k, w in router.log if k == "weights"]
    # step 2 (50/50) was written, reset to 100/0 by the foreign edit, and put back as a re-assertion
    assert writes.count(Weights(50, 50)) >= 2 and router.weights == STABLE_ONLY
    assert ("event", "WeightsReasserted") in router.log


def test_oncall_rollback_forces_stable_even_without_a_recorded_rollout() -> None:
    router = FakeRouter(weights=Weights(60, 40))
    state = oncall_action(router, TARGET, rl.Rollback(1.0, "operator: x"), log=get())
    assert router.weights == STABLE_ONLY and state.phase == rl.ROLLED_BACK
    with pytest.raises(ConfigError, match="no rollout in progress"):
        oncall_action(router, TARGET, rl.Pause(2.0), log=get())
    # a second rollback: stable already has 100%, so it holds; nothing is written (the CLI exits 0)
    writes = len(router.log)
    with pytest.raises(AlreadyStable, match="stable already serves 100%"):
        oncall_action(router, TARGET, rl.Rollback(3.0, "operator: again"), log=get())
    assert len(router.log) == writes


def test_oncall_rollback_racing_our_write_is_never_undone() -> None:
    ctl, router, metrics, clock = make()
    raced = []

    def slowdown(t: float) -> float:
        if t >= 1009 and not raced:  # just before the step-1 -> step-2 write
            raced.append(True)
            router.before_write.append(
                lambda: oncall_action(router, TARGET, rl.Rollback(t, "operator: stop"), log=get()))
        return 1.0

    metrics.slowdown = slowdown
    res = ctl.run()
    assert raced and res.exit_code == 1 and res.state.reason == "operator: stop"
    assert router.weights == STABLE_ONLY and json.loads(router.state)["phase"] == rl.ROLLED_BACK


class FakeGate:
    def __init__(self, clock: FakeClock, *, down_at: float = 1e12, refuse: str = "") -> None:
        self.clock, self.down_at, self.refuse, self.probes = clock, down_at, refuse, 0
        self.probe_interval, self.probe_failures = 0.5, 2

    def preflight(self) -> dict:
        if self.refuse:
            from canary.errors import GateError

            raise GateError(self.refuse)
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        self.probes += 1
        return self.clock.now() < self.down_at


def test_canary_going_down_rolls_back_within_the_probe_budget() -> None:
    ctl, router, _, clock = make()
    gate = FakeGate(clock, down_at=1013.0)
    ctl.gate = gate
    res = ctl.run()
    assert res.exit_code == 1 and "not ready" in res.state.reason and router.weights == STABLE_ONLY
    assert clock.t - 1013.0 <= gate.probe_interval * gate.probe_failures + 0.3
    assert gate.probes <= (clock.t - 1000) / gate.probe_interval + 3  # probes at probe_interval, not faster


def test_probe_and_subset_lines_carry_the_rollouts_phase_weights_and_step() -> None:
    # docs/reference/events.md: every line carries phase, weights and step; gate.probe_failed and subset.pointed
    # carried none of them (on-call could not tell from a probe failure how much traffic the canary had)
    import structlog.testing

    ctl, router, _, clock = make()
    ctl.gate = FakeGate(clock, down_at=1013.0)
    with structlog.testing.capture_logs() as logs:
        assert ctl.run().exit_code == 1
    probes = [e for e in logs if e["event"] == "gate.probe_failed"]
    assert probes and all((e["phase"], e["weights"], e["step"]) == ("progressing", "50/50", 2) for e in probes)
    pointed = [(e["subset"], e.get("phase"), e.get("weights"), e.get("target_weights"))
               for e in logs if e["event"] == "subset.pointed"]
    assert pointed == [("canary", "pending", "100/0", None),  # claimed; then again just before the first step's write
                       ("canary", None, None, "90/10"), ("stable", "rolled_back", "100/0", None)]


def test_the_stable_subset_pointed_for_a_promotion_names_the_weights_still_to_be_written() -> None:
    import structlog.testing

    ctl, router, _, _ = make()
    with structlog.testing.capture_logs() as logs:
        assert ctl.run().exit_code == 0
    stable = [e for e in logs if e["event"] == "subset.pointed" and e["subset"] == "stable"]
    # re-pointed while the canary had all the traffic, before the 100/0 write that records the promotion
    assert stable and stable[0]["target_phase"] == "promoted" and stable[0]["target_weights"] == "100/0"
    assert "weights" not in stable[0] and stable[0]["version"] == "v2"


def test_gate_refusal_means_the_canary_never_gets_traffic() -> None:
    ctl, router, _, clock = make()
    ctl.gate = FakeGate(clock, refuse="output 'score': datatype FP32 on stable, FP64 on canary")
    res = ctl.run()
    assert res.exit_code == 1 and "FP64" in res.state.reason
    assert all(w == STABLE_ONLY for k, w in router.log if k == "weights")


def test_a_look_without_new_canary_data_is_not_a_second_failure() -> None:
    ctl, router, metrics, clock = make(slowdown=lambda t: 3.0)

    def frozen(policy: object, target: object, *, window_s: int) -> tuple[float, float]:
        return 5000.0, 500.0  # Prometheus has not scraped anything new since the last look

    metrics.request_counts = frozen  # type: ignore[method-assign]
    res = ctl.run()
    # one real failure per distinct data set: never two in a row, so no latency rollback
    assert res.exit_code == 1 and res.state.reason.startswith("no verdict")


def test_each_look_is_judged_at_its_requests_over_the_windows_anchor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The promote loop hands the judge pass_ratio = canary requests / the window's anchor (its
    first look that could pass), so a pass is judged at the level that holds at any looks."""
    from canary.analysis import evidence
    from canary.analysis import judge as judge_mod  # the Runner imports it when it judges (decision 226)

    seen: list[tuple[float, float]] = []
    real = judge_mod.judge

    def spy(policy, measurements, **kw):  # type: ignore[no-untyped-def]
        v = real(policy, measurements, **kw)
        seen.append((kw["pass_ratio"], v.results[0].extra["pass_level"]))
        return v

    monkeypatch.setattr(judge_mod, "judge", spy)
    ctl, _, _, _ = make(slowdown=lambda t: 1.17)  # inside +20%, but not shown within it soon
    res = ctl.run()
    assert res.exit_code != 0  # never shown within by the deadline: rolled back unproven
    ratios = [r for r, _ in seen]
    assert ratios[0] == 1.0 and max(ratios) > 1.5, ratios
    assert all(level == pytest.approx(evidence.pass_level(POLICY, 0, r)) for r, level in seen)


def _claimed_by_another_process(owner: str, *, age_s: float = 0.0, pause: bool = False, heartbeat_s: float = 0.0
                                ) -> tuple[Runner, FakeRouter, FakeClock]:
    """A rollout of v2 claimed and started by one promote, recorded as run by `owner`, `age_s` ago;
    and a second promote of v2 on the same route and clock."""
    first, router, _, clock = make()
    state = first._preflight(first._start())
    assert state.phase == rl.PROGRESSING
    rec = json.loads(router.state)
    rec["owner"] = owner
    rec["updated_at"] = clock.now() - age_s
    rec["heartbeat_s"] = heartbeat_s
    if pause:
        rec["phase"] = rl.PAUSED
    router.state = json.dumps(rec)
    second = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock)
    return second, router, clock


def _owner_here(pid: object) -> str:
    import socket

    from canary.runner import _pid_namespace

    return f"promote#{socket.gethostname()}:{_pid_namespace()}:{pid}:ab"


@pytest.mark.parametrize(("owner", "age_s", "heartbeat_s", "says"), [
    ("promote#elsewhere:4026531836:123:ab", 5, 0.0, r"if that process is gone, run this again after \d+s"),
    ("promote#elsewhere:4026531836:123:ab", 150, 90.0, r"if that process is gone, run this again after \d+s"),
    ("here-alive", 500, 0.0, r"it runs on this machine: stop it first"),
], ids=["other host, fresh", "its own slow looks", "alive here, however old"])
def test_a_second_promote_never_judges_a_rollout_another_live_promote_runs(owner: str, age_s: float,
                                                                           heartbeat_s: float, says: str) -> None:
    """Two `canary promote` of one version at once both judged the rollout, each with its own policy
    (one exited 0 'promoted' before the other's steps ran). The second is RolloutBusy, naming the
    process, while the first's record is fresh by ITS time between writes (a policy looking every 90 s
    was taken over after 70 s by one looking every second), and whenever it runs on this machine;
    nothing is written."""
    import os

    owner = _owner_here(os.getppid()) if owner == "here-alive" else owner
    second, router, _ = _claimed_by_another_process(owner, age_s=age_s, heartbeat_s=heartbeat_s)
    before = router.state
    with pytest.raises(RolloutBusy, match=r"run by `canary promote` \(.*\), which wrote it \d+s ago; " + says):
        second._start()
    assert router.state == before


def test_a_promote_names_its_boot_and_start_so_a_namesake_machine_or_a_reused_pid_is_not_taken_for_it() -> None:
    """A host name and the initial pid namespace's inode (4026531836 on every Linux machine) are all the owner
    said of a machine: a promote running on another machine of the same name (two VMs from one image, a laptop
    and a CI runner both `ubuntu`) was "gone" here as soon as its pid was not, `canary status` said nothing
    drives it and a second promote took the live rollout over at once; and a pid reused since by another
    process was "alive" for ever, a re-run refused with "it runs on this machine: stop it first". The owner now
    ends in `@<boot>.<start>` (decision 217): another boot is "cannot tell" (the record's age decides), another
    start of that pid is "gone". An owner written before it is read as before."""
    import os
    import socket
    import subprocess
    import sys

    from canary.runner import promote_here

    with open("/proc/sys/kernel/random/boot_id") as f:
        this_boot = f.read().strip().replace("-", "")[:12]
    child = subprocess.Popen([sys.executable, "-c", "import sys; from canary.runner import _identity; "
                              "print(_identity(), flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        owner = "promote#" + child.stdout.readline().strip()  # type: ignore[union-attr]
        host, pidns, pid, nonce = owner.partition("#")[2].split(":")
        assert (host, pid) == (socket.gethostname(), str(child.pid)) and nonce.count("@") == 1, owner
        boot, start = nonce.partition("@")[2].split(".")
        assert boot == this_boot and start.isdigit(), owner
        assert promote_here(owner) == "alive"  # itself, running
        namesake = owner.replace(f"@{boot}.", "@0123456789ab.")  # the same name, pid namespace and pid elsewhere
        assert promote_here(namesake) == ""
        reused = owner.replace(f".{start}", f".{int(start) + 1}")  # this pid, but a process started at another time
        assert promote_here(reused) == "gone"
        assert promote_here(owner.partition("@")[0]) == "alive"  # an owner of before: as before
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.wait()
    assert promote_here(owner) == "gone"
    # what a second promote does with each: a namesake's fresh record is busy, a reused pid's is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    elsewhere = f"promote#{socket.gethostname()}:{pidns}:{dead.stdout.strip()}:ab12cd34@0123456789ab.5"
    second, router, _ = _claimed_by_another_process(elsewhere, age_s=5)
    with pytest.raises(RolloutBusy, match=r"if that process is gone, run this again after \d+s"):
        second._start()
    with open(f"/proc/{os.getppid()}/stat") as f:
        parent_start = f.read().rpartition(")")[2].split()[19]
    reused = f"promote#{socket.gethostname()}:{pidns}:{os.getppid()}:ab12cd34@{this_boot}.{int(parent_start) + 1}"
    second, router, _ = _claimed_by_another_process(reused, age_s=5)
    assert second._start().phase == rl.PROGRESSING and json.loads(router.state)["owner"] == second.owner


@pytest.mark.parametrize(("age_s", "pause", "owner"), [(200, False, "promote#elsewhere:4026531836:123:ab"),
                                                       (5, True, "promote#elsewhere:4026531836:123:ab"),
                                                       (5, False, "dead"), (5, False, "zombie"),
                                                       (5, False, "huge"), (5, False, "")],
                         ids=["stale", "paused", "dead pid here", "zombie here", "no such pid", "no owner"])
def test_a_promote_takes_over_a_rollout_whose_process_is_gone_and_records_itself(age_s: float, pause: bool,
                                                                                 owner: str) -> None:
    """Re-running promote still resumes: after its process died (its record stale; on this machine its
    pid gone, a zombie not yet reaped, or a pid no process can have: 99999999999 crashed the check),
    when paused (re-running means "go on"), or a record with no owner; it records itself as owner, with
    its own time between writes, so the old process, if alive, stops as taken over."""
    import os
    import signal
    import subprocess
    import sys

    zombie = None
    if owner == "dead":
        done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        owner = _owner_here(done.stdout.strip())
    elif owner == "zombie":
        zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        os.kill(zombie.pid, signal.SIGKILL)
        for _ in range(3000):  # until the kernel has made it a zombie (not reaped before the check); a hang guard
            with open(f"/proc/{zombie.pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    break
            time.sleep(0.01)
        owner = _owner_here(zombie.pid)
    elif owner == "huge":
        owner = _owner_here(99999999999)
    try:
        second, router, _ = _claimed_by_another_process(owner, age_s=age_s, pause=pause)
        state = second._start()
    finally:
        if zombie is not None:
            zombie.wait()
    assert state.phase == rl.PROGRESSING and json.loads(router.state)["owner"] == second.owner
    assert json.loads(router.state)["heartbeat_s"] == POLICY.analysis.look_every


GH_JOB = "github:" + "a" * 32  # `ci_job.rerun_key`: one GitHub job's identity; `:<attempt>` follows


def _held_by_attempt(job_key: str, *, owner: str = "promote#gone-runner:4026531836:123:ab", age_s: float = 5
                     ) -> tuple[Runner, FakeRouter]:
    second, router, _ = _claimed_by_another_process(owner, age_s=age_s)
    rec = json.loads(router.state)
    rec["job_key"] = job_key
    router.state = json.dumps(rec)
    return second, router


def test_a_later_attempt_of_the_same_ci_job_takes_its_earlier_attempts_rollout_over_at_once() -> None:
    """A GitHub re-run (same run id and job, attempt 2) of a job SIGKILLed on a runner that is gone: the record is
    fresh, so the re-run was refused (exit 75) or waited 2 x look_every + 60 s, though GitHub starts attempt 2 only
    once attempt 1 has ended. It takes the rollout over at once, recording its own attempt (decision 454)."""
    import structlog.testing

    second, router = _held_by_attempt(GH_JOB + ":1")
    second.job_key = GH_JOB + ":2"
    with structlog.testing.capture_logs() as logs:
        assert second._start().phase == rl.PROGRESSING
    rec = json.loads(router.state)
    assert rec["owner"] == second.owner and rec["job_key"] == GH_JOB + ":2"
    said = [e for e in logs if e["event"] == "rollout.rerun_takes_over"]
    assert said and said[0]["holder"] == "promote#gone-runner:4026531836:123:ab"


def test_a_claim_records_which_attempt_of_its_ci_job_runs_it() -> None:
    """What a later attempt's take-over reads: written with the claim, as `job` is."""
    first, router, _, _ = make()
    first.job_key = GH_JOB + ":1"
    first._start()
    assert json.loads(router.state)["job_key"] == GH_JOB + ":1"


@pytest.mark.parametrize(("theirs", "ours"), [
    (GH_JOB + ":1", "github:" + "b" * 32 + ":2"),  # another job (another run, or another job of the run)
    (GH_JOB + ":2", GH_JOB + ":2"),  # the same attempt: two processes of one job (a matrix's legs), not a re-run
    (GH_JOB + ":3", GH_JOB + ":2"),  # a later attempt holds it: an earlier one never takes it back
    ("", GH_JOB + ":2"),  # a record written without a key (an older canary, a terminal)
    (GH_JOB + ":1", ""),  # this promote runs in no CI whose attempts are known
    ("gitlab:" + "a" * 32 + ":1", GH_JOB + ":2"),  # another CI
    (GH_JOB + ":x1", GH_JOB + ":2"),  # edited by hand
], ids=["other-job", "same-attempt", "later-holds", "no-key-recorded", "no-key-here", "other-ci", "hand-edited"])
def test_only_a_later_attempt_of_the_same_job_takes_over_a_fresh_record(theirs: str, ours: str) -> None:
    second, router = _held_by_attempt(theirs)
    second.job_key = ours
    before = router.state
    with pytest.raises(RolloutBusy, match=r"if that process is gone, run this again after \d+s"):
        second._start()
    assert router.state == before


def test_a_later_attempt_leaves_an_earlier_attempt_still_alive_on_this_machine_alone() -> None:
    """A self-hosted runner's earlier attempt whose process still runs here (its CI lost it, the process did not
    stop): it is alive, so it keeps the rollout until it stops."""
    import os

    second, router = _held_by_attempt(GH_JOB + ":1", owner=_owner_here(os.getppid()), age_s=500)
    second.job_key = GH_JOB + ":2"
    before = router.state
    with pytest.raises(RolloutBusy, match="it runs on this machine"):
        second._start()
    assert router.state == before


def test_a_take_over_records_the_taking_promotes_ci_job_not_the_gone_ones() -> None:
    """A promote killed with its job (SIGKILL on a cancelled runner) and the re-run's job taking its rollout over:
    the record must name the job now running it, or on-call cancels the dead one and the live one goes on
    (decision 387)."""
    import subprocess
    import sys

    gone_job = "https://gitlab.example/ml/models/-/jobs/1"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    second, router, _ = _claimed_by_another_process(_owner_here(dead.stdout.strip()), age_s=5)
    rec = json.loads(router.state)
    rec["job"] = gone_job
    router.state = json.dumps(rec)
    second.job = "https://gitlab.example/ml/models/-/jobs/2"
    assert second._start().phase == rl.PROGRESSING
    assert json.loads(router.state)["job"] == second.job and json.loads(router.state)["owner"] == second.owner


def test_a_rerun_reports_its_rolled_back_version_before_a_missing_flag_is_refused() -> None:
    """Decision 544: `promote` without the Triton flags a gated policy needs said "pass --triton-canary" (exit 2)
    before a re-run could report that its version was rolled back earlier (nothing written). The Runner holds that
    refusal until it would write: the report comes first; `--retry`, a fresh version, or a route that cannot be
    read are refused, nothing written."""
    from canary.errors import KubeUnavailable

    ctl, router, metrics, clock = make(slowdown=lambda t: 2.0)
    assert ctl.run().state.phase == rl.ROLLED_BACK
    recorded, writes = router.state, len(router.log)
    missing = ConfigError("p.yaml: gates.triton is enabled; pass --triton-canary (and --triton-stable)")

    def again(target: Target = TARGET, **kw: object) -> Runner:
        return Runner(policy=POLICY, target=target, router=router, metrics=metrics, clock=clock, refusal=missing, **kw)

    rerun = again()
    res = rerun.run()
    assert rerun.found_ended and res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK
    for runner in (again(retry=True), again(Target(namespace="ml", virtual_service="rec", model="rec",
                                                   stable_version="", canary_version="v3"))):
        with pytest.raises(ConfigError, match="pass --triton-canary"):
            runner.run()
    assert router.state == recorded and len(router.log) == writes  # nothing written by any of them

    def unreadable(target: Target) -> object:
        raise KubeUnavailable("fake: API down")

    router.inspect = unreadable  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="pass --triton-canary"):  # no earlier end found: the flag is said first
        again().run()


def test_a_take_over_of_a_paused_rollout_refuses_a_missing_flag_before_it_writes() -> None:
    """A review of decision 544 with 546: `canary resume` refuses a rollout whose promote is gone and says to run
    promote again, which takes the paused rollout over. Run without the Triton flags a gated policy needs, the
    Runner has no gate (`promote` builds none): the take-over must be refused before it writes, or the rollout
    would go on judged without the gate."""
    second, router, _ = _claimed_by_another_process(_owner_here(99999999999), age_s=5, pause=True)
    second.refusal = ConfigError("p.yaml: gates.triton is enabled; pass --triton-canary (and --triton-stable)")
    before, writes = router.state, len(router.log)
    with pytest.raises(ConfigError, match="pass --triton-canary"):
        second.run()
    assert router.state == before and len(router.log) == writes


def test_the_reports_gate_line_reads_as_words_with_the_checks_first_and_is_not_cut() -> None:
    """A newcomer's demo report showed the preflight gate's detail as `signature={'inputs': ({'name': ...` (Python
    reprs), cut with `…` before the checks it passed, which came last: the checks come first, the tensor contract
    as Triton's metadata writes it, and the whole fits the history's detail (decision 921)."""
    from canary import history as hist
    from canary.runner import gate_detail
    from canary.triton import PreflightReport, Signature, TensorSpec

    report = PreflightReport(
        canary="rec-model@10.0.0.5:8000", stable="rec-model@10.0.0.6:8000",
        signature=Signature(inputs=(TensorSpec("features", "FP32", (-1, 8)),),
                            outputs=(TensorSpec("score", "FP32", (-1, 1)),), max_batch_size=64),
        warmup_requests=10, sample_source="generated", warm_p50_ms=15.481, warm_max_ms=21.482,
        checks=("canary server live and ready, model ready",
                "tensor names, datatypes, shapes and max_batch_size compatible with stable",
                "10 warm-up inferences, outputs finite and within [0.0, 1.0]"))
    line = gate_detail(report.to_dict())
    assert line.startswith("canary server live and ready, model ready; tensor names,"), line
    assert "tensors features FP32[-1,8] -> score FP32[-1,1], max_batch_size 64" in line, line
    assert "warm-up p50 15.481 ms, max 21.482 ms (10 requests, generated inputs)" in line, line
    assert line.endswith("canary rec-model@10.0.0.5:8000; stable rec-model@10.0.0.6:8000"), line
    assert "{" not in line and "'" not in line, line
    recorded = hist.gate_record(at=0.0, stage="preflight", outcome="passed", detail=line)
    assert recorded["detail"] == line  # not cut


def test_a_failed_probe_line_names_the_triton_it_was_about_and_where_it_was_asked() -> None:
    """The crash demo's `gate.probe_failed` said `reason: unreachable: [Errno 111] Connection refused` and nothing of
    which server: the line names the arm and its endpoint, as `TritonGates` knows them (decision 922)."""
    import structlog.testing

    class Gates(FakeGate):
        canary, stable, failing = "rec-model@10.0.0.5:8000", "rec-model@10.0.0.6:8000", ""

        def ready(self) -> bool:
            up = super().ready()
            self.failing = "" if up else "canary"
            return up

    ctl, _, _, clock = make()
    ctl.gate = Gates(clock, down_at=1013.0)
    with structlog.testing.capture_logs() as logs:
        assert ctl.run().exit_code == 1
    probes = [e for e in logs if e["event"] == "gate.probe_failed"]
    assert probes and all((e["arm"], e["endpoint"]) == ("canary", "rec-model@10.0.0.5:8000") for e in probes)

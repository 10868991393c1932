"""A `canary promote` killed mid-step, its record then typed by hand into an end (`promoted`, `rolled_back`) or
garbage while the VirtualService still splits 80/20 (docs/decisions.md 157). Nobody owned that split: the
sweeps timed only rollouts in progress, the next promote refused ("traffic is already split"), `canary status
--watch` exited 0 on the typed `promoted`, `pause`/`resume` refused with "no rollout in progress". Every path
that meets such a record is tried here against the strict Kubernetes API emulator, beside the untyped record
of the same dead process (the control: it is taken over, or swept as abandoned, as before)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import rollout as rl
from canary import sweep
from canary.cli import app
from canary.logs import get as get_logger
from canary.model import Target
from canary.routing.istio import IstioRouter
from canary.runner import oncall_action
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import prometheus, vs, world  # noqa: F401 - fixtures
from tests.integration.test_promote_route_safety import api, runner  # noqa: F401 - the fixture
from tests.integration.test_record_edited import _controller_after, _edited, _status
from tests.integration.test_sweep import _age_mark, _claim, _controller
from tests.support.killpoints import cluster_state

pytestmark = pytest.mark.integration
GROUP, ANN = "networking.istio.io", "modelcanary.dev/rollout"
GARBAGE = '{"phase": "promoted", "model": '  # cut JSON: a hand edit saved half-way

# the record of the dead promote's step 1 (80/20) typed into each of these; "progressing" is the control
TYPED: dict[str, Callable[[dict[str, Any]], str]] = {
    "promoting": lambda rec: json.dumps({**rec, "phase": rl.PROMOTING}),  # in progress: a state no policy makes
    "promoted": lambda rec: json.dumps({**rec, "phase": rl.PROMOTED, "reason": "all steps passed"}),
    "rolled_back": lambda rec: json.dumps({**rec, "phase": rl.ROLLED_BACK, "reason": "operator: done"}),
    "garbage": lambda rec: GARBAGE,
}


def _router(api: Any) -> IstioRouter:
    return IstioRouter(api.api_client(), wait=tenacity.wait_none())


def _dead_promote_typed(api: Any, typed: str | None, *, at: float) -> None:
    """A promote of v2 on another machine claimed m0 and moved step 1 (80/20) at `at`, then was killed; its
    record is then typed into `typed` (None: left as it wrote it)."""
    _claim(_router(api), at=at)
    if typed is None:
        return

    def edit(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        ann[ANN] = TYPED[typed](json.loads(ann[ANN]))
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)


def _weights(api: Any) -> list[int]:
    """m0's route weights as written (`cluster_state` reads the record too, which garbage is not)."""
    return [d["weight"] for d in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


def _unowned(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "rollout.split_unowned"]


def _claimed(typed: str) -> str:
    return "an unreadable record" if typed == "garbage" else f"{typed} ("


ENDS = ["promoted", "rolled_back", "garbage"]


@pytest.mark.parametrize("typed", ENDS)
def test_the_controllers_sweep_ends_a_split_under_a_typed_end_once_seen_unchanged(api: Any, typed: str) -> None:
    """The controller's sweep (no CanaryRollout: only the sweep acts) first sees the typed record, leaves it for
    30 s of its own clock (a live owner ends it first, in its own words), then writes stable 100%, recorded
    aborted, guarded on it, with one `rollout.split_unowned` naming the VirtualService and the claim. Without
    the fix the sweep skipped ended and unreadable records: 80/20 for good."""
    clock = FakeClock(time.time())
    _dead_promote_typed(api, typed, at=clock.now() - 1000)
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    ctl.tick()
    clock.sleep(sweep.UNOWNED_AFTER_S - 1)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
    assert _weights(api) == [80, 20] and not _unowned(logs), "ended before it was seen unchanged 30 s"
    clock.sleep(2)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
    weights, rec, stable, canary = cluster_state(api)
    assert (weights, rec["phase"], stable, canary) == ([100, 0], rl.ABORTED, "v1", "v2"), (weights, rec)
    assert rec["reason"].startswith(f"the record says {_claimed(typed)}") and "stable 100%" in rec["reason"], rec
    said = _unowned(logs)
    assert len(said) == 1 and said[0]["virtual_service"] == "m0" and said[0]["by"] == "sweep", said
    assert said[0]["recorded"].startswith(_claimed(typed)) and said[0]["from_weights"] == "80/20", said
    assert said[0]["done"] == "stable 100%, recorded aborted"


def test_the_controllers_sweep_leaves_an_end_over_100_0_alone(api: Any) -> None:
    """The control: a typed end over stable 100% splits nothing; nothing is written."""
    clock = FakeClock(time.time())
    _dead_promote_typed(api, "rolled_back", at=clock.now() - 1000)
    api.edit(GROUP, "virtualservices", "ml", "m0",
             lambda vs: [d.update(weight=w) for d, w in zip(vs["spec"]["http"][0]["route"], (100, 0))])
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    writes = len(api.writes)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            ctl.tick()
            clock.sleep(60)
    assert len(api.writes) == writes and not _unowned(logs)
    assert cluster_state(api)[1]["phase"] == rl.ROLLED_BACK


def _cli(kubeconfig: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(kubeconfig)])


@pytest.mark.parametrize("typed", ["promoted", "garbage"])
def test_canary_sweep_marks_then_ends_a_split_under_a_typed_end(tmp_path: Path, api: Any, typed: str) -> None:
    """`canary sweep` (a CronJob where no controller runs): the first pass marks the record, a pass 31 s later
    ends it. Without the fix it said "no rollouts in progress" at every pass."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _dead_promote_typed(api, typed, at=time.time() - 1000)
    first = _cli(kubeconfig, "sweep", "-n", "ml")
    assert first.exit_code == 0, first.output
    assert "ml/m0: " in first.stdout and "first seen now; stable 100% if still unchanged after 30s" in first.stdout
    assert _weights(api) == [80, 20]
    _age_mark(api, "m0", 31)
    dry = _cli(kubeconfig, "sweep", "-n", "ml", "--dry-run", "-o", "json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["unowned"][0]["result"].startswith("dry-run: not written")
    assert _weights(api) == [80, 20]
    done = _cli(kubeconfig, "sweep", "-n", "ml", "-o", "json")
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)["unowned"]
    assert [(r["virtualService"], r["result"]) for r in rows] == [("ml/m0", "stable 100%, recorded aborted")], rows
    weights, rec, _, _ = cluster_state(api)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, rec)


@pytest.mark.parametrize("typed", [None, *ENDS], ids=["progressing (control)", *ENDS])
def test_the_next_promote_ends_the_split_nobody_owns_then_runs_its_rollout(api: Any, typed: str | None) -> None:
    """The CD job re-run (`canary promote` of v2 again). Over the untyped record of the dead process it takes the
    rollout over and resumes it (as before). Over a typed end or garbage it refused ("traffic is already split
    80/20 with no rollout in progress", or the unreadable record) and left the split nobody owned; now it ends
    that split (stable 100%, `rollout.split_unowned` by promote), then runs its own rollout from the claim."""
    clock = FakeClock(time.time())
    _dead_promote_typed(api, typed, at=clock.now() - 1000)
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock).run()
    assert res.state.phase == rl.PROMOTED, res.state.reason
    weights, rec, stable, _ = cluster_state(api)
    assert (weights, rec["phase"], stable) == ([100, 0], rl.PROMOTED, "v2")
    said = _unowned(logs)
    if typed is None:
        assert not said and any(e["event"] == "rollout.resumed_from_state" for e in logs)
        return
    assert len(said) == 1 and said[0]["by"] == "promote" and said[0]["virtual_service"] == "m0", said
    assert said[0]["recorded"].startswith(_claimed(typed)) and said[0]["from_weights"] == "80/20", said
    started = [e for e in logs if e["event"] == "rollout.started"]
    assert started and logs.index(said[0]) < logs.index(started[0]), "claimed before the split was ended"


@pytest.mark.parametrize("typed", ENDS)
def test_on_calls_rollback_names_the_typed_end_beside_what_it_did(api: Any, typed: str) -> None:
    """`canary rollback` already wrote stable 100% over a split under an end (it takes the split as a rollout in
    progress); its lines named neither the record's claim nor that nobody drove the split. One
    `rollout.split_unowned` (by "canary rollback") now does, once the write landed."""
    _dead_promote_typed(api, typed, at=time.time() - 1000)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="")
    with structlog.testing.capture_logs() as logs:
        ended = oncall_action(_router(api), target, rl.Rollback(time.time(), "operator: split seen"),
                              log=get_logger().bind(actor="on-call"))
    assert ended.phase == rl.ROLLED_BACK and cluster_state(api)[0] == [100, 0]
    said = _unowned(logs)
    assert len(said) == 1 and said[0]["by"] == "canary rollback" and said[0]["recorded"].startswith(_claimed(typed))
    assert said[0]["done"] == "stable 100%, recorded rolled_back" and said[0]["virtual_service"] == "m0", said
    done = [e["event"] for e in logs]
    assert done.index("rollback.completed") < done.index("rollout.split_unowned"), "said before the write landed"


def test_status_names_the_split_and_its_watch_never_reads_a_typed_promotion_as_promoted(tmp_path: Path,
                                                                                       api: Any) -> None:
    """`canary status --watch` (a CD pipeline waiting on the promote's outcome) exited 0, "promoted", on the
    typed record while 80/20 stood. It now exits 3, as for an aborted rollout, and the status names the split
    nobody drives and the command that ends it. `pause` and `resume` refuse as before, naming it too."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _dead_promote_typed(api, "promoted", at=time.time() - 1000)
    shown = _cli(kubeconfig, "status", "m0", "-n", "ml", "-o", "json")
    assert shown.exit_code == 0, shown.output
    got = json.loads(shown.stdout)
    assert got["split_unowned"].startswith("the record says promoted (v2 serving), but the route splits 80/20"), got
    text = _cli(kubeconfig, "status", "m0", "-n", "ml")
    assert "no process drives this split" in text.stdout and "`canary rollback m0 -n ml` sends stable 100%" in \
        text.stdout, text.stdout
    watched = _cli(kubeconfig, "status", "m0", "-n", "ml", "--watch", "--timeout", "5s")
    assert watched.exit_code == 3, watched.output
    for command in ("resume", "pause"):
        refused = _cli(kubeconfig, command, "m0", "-n", "ml")
        assert refused.exit_code == 2 and "no process drives this split" in refused.output, refused.output
    assert _weights(api) == [80, 20]  # read-only, all of them


def test_a_promoting_typed_in_at_a_steps_weights_is_never_finished(api: Any) -> None:
    """`promoting` typed into the dead promote's record at 80/20 (a state no policy makes: a promotion is at
    0/100, `rl.off_policy`). The next promote took it over and finished it at once, and the sweep finished it
    as an abandoned promotion: a canary judged at 20% for a few seconds promoted either way. The promote now ends
    it as a record edited by hand (`rollout.record_unreadable`, stable 100%, aborted) and claims the route afresh;
    the sweep ends it at stable 100%."""
    clock = FakeClock(time.time())
    _dead_promote_typed(api, "promoting", at=clock.now() - 1000)
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock).run()
    events = [e["event"] for e in logs]
    said = [e for e in logs if e["event"] == "rollout.record_unreadable"]
    assert len(said) == 1 and "promoting at 80/20, where a promotion is at 0/100" in said[0]["reason"], said
    assert "rollout.started" in events and events.index("rollout.record_unreadable") < events.index("rollout.started")
    assert res.state.phase == rl.PROMOTED and len([e for e in logs if e["event"] == "look.completed"]) >= 2, events

    api2 = fleet.start_api(1)
    try:
        clock = FakeClock(time.time())
        _dead_promote_typed(api2, "promoting", at=clock.now() - 1000)
        rec = rl.RolloutState.from_json(json.dumps(cluster_state(api2)[1]))
        ctl = _controller(api2.api_client(), clock, sweep_every=0.001)
        ctl.tick()
        clock.sleep(sweep.abandoned_after(rec) + 1)
        ctl.tick()
        weights, after, stable, _ = cluster_state(api2)
        assert (weights, after["phase"], stable) == ([100, 0], rl.ABORTED, "v1"), (weights, after)
    finally:
        api2.stop()



@pytest.mark.parametrize("typed", [rl.ROLLED_BACK, rl.ABORTED])
def test_an_end_typed_under_a_live_canaryrollout_is_ended_before_it_is_mirrored(world: Any,  # noqa: F811
                                                                                typed: str) -> None:
    """The controller's own rollout: `rolled_back` (or `aborted`) typed into its record at 80/20. Its tick
    mirrored the end on the CR and left 80/20, and a settled CR is never read again. Now the tick ends it
    first (stable 100%, `aborted`, one `rollout.split_unowned` by the controller), then mirrors that."""
    api, op, custom = world
    with structlog.testing.capture_logs() as logs:
        weights, rec, st = _controller_after(world, _edited(phase=typed, reason="typed by hand"))
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, rec)
    assert st["phase"] == rl.ABORTED and st["reason"].startswith(f"the record says {typed} (v1 serving)"), st
    said = _unowned(logs)
    assert len(said) == 1 and said[0]["by"] == "controller" and said[0]["from_weights"] == "80/20", said


def test_the_untyped_record_of_a_dead_promote_stays_its_rollouts_for_status_resume_and_rollback(tmp_path: Path,
                                                                                             api: Any) -> None:
    """The control for the on-call paths, (a): the record as the killed promote left it (step 1 at 80/20). It is a
    rollout in progress, not a split nobody owns: `status` shows it with the commands that end or hold it (no
    `split_unowned`), `resume` refuses a rollout that is not paused, and `canary rollback` ends it, rolled back,
    without `rollout.split_unowned`. (The sweeps time it as abandoned: test_sweep.py; the next promote resumes
    it: the control above.)"""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _dead_promote_typed(api, None, at=time.time() - 1000)
    shown = _cli(kubeconfig, "status", "m0", "-n", "ml", "-o", "json")
    got = json.loads(shown.stdout)
    assert got["rollout"]["phase"] == rl.PROGRESSING and "split_unowned" not in got, got
    resumed = _cli(kubeconfig, "resume", "m0", "-n", "ml")
    assert resumed.exit_code == 2 and "cannot resume a rollout that is progressing" in resumed.output, resumed.output
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="")
    with structlog.testing.capture_logs() as logs:
        ended = oncall_action(_router(api), target, rl.Rollback(time.time(), "operator: split seen"),
                              log=get_logger().bind(actor="on-call"))
    assert ended.phase == rl.ROLLED_BACK and cluster_state(api)[0] == [100, 0] and not _unowned(logs)

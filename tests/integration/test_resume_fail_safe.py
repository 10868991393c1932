"""Decision 131: a resumed or taken-over rollout whose first write fails.

`canary promote` re-run on a rollout in progress (paused, or its process gone) takes it over with one
guarded write (`Runner._take_over`), and a paused one is then resumed with another. Either write failing
(an API server down, a refusal, the grace after a signal spent) ended promote as if nothing had been
claimed: exit 3 (a 403: exit 2) with the API's error, and no `traffic.unsafe`. A stale progressing rollout
stayed split with nobody running it. Now:

* a stale progressing rollout is this process's split from the take-over on: any failure runs the
  fail-safe, stable 100% (exit 3) or `traffic.unsafe` with the weights (exit 6);
* a paused one stays paused as the operator left it when the take-over fails or the resume is refused (a
  take-over changes neither weights nor phase): exit 3 "still paused at 80/20"; a resume with no answer
  may have landed, and goes to the fail-safe;
* a decision recorded between the take-over and the resume (on-call's) is adopted; a record changed by
  another writer during the take-over is RolloutBusy naming it; a 409 storm on an unchanged record is a
  failure like any other;
* a signal before the take-over writes nothing.

Real components: the Kubernetes API emulator with the real IstioRouter and the real `kube.bound_by`;
fake clocks, never a timed wait.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import CanaryError, RolloutBusy, TrafficUnsafe
from canary.sandbox.kubeapi import Fault
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import GROUP, api, record, routes, runner  # noqa: F401 - fixture
from tests.unit.test_runner_faults import virtual_time  # noqa: F401 - the fixture: the rollback budget, at once

pytestmark = pytest.mark.integration
ELSEWHERE = "promote#elsewhere:4026531836:123:ab"  # another machine's promote
WRITES = frozenset({"PUT", "PATCH", "POST"})
SPLIT = [[("stable", 80), ("canary", 20)]]
STABLE = [[("stable", 100), ("canary", 0)]]


def _edit_record(api: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    def edit(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        ann["modelcanary.dev/rollout"] = json.dumps(change(json.loads(ann["modelcanary.dev/rollout"])))
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)


def _recorded(api: Any, clock: FakeClock, phase: str) -> None:
    """A rollout of v2 at 80/20 run by a promote on another machine: paused by it, or progressing with its
    process gone (its record 300 s old)."""
    first = runner(api, "v2", clock, on_interrupt="pause")
    first.on_update = lambda state: first.stop.set() if state.phase == rl.PROGRESSING else None
    assert first.run().exit_code == 130
    assert routes(api) == SPLIT and record(api)["phase"] == rl.PAUSED
    _edit_record(api, lambda r: {**r, "owner": ELSEWHERE, **({"phase": phase, "reason": ""} if phase != rl.PAUSED else {})})
    if phase != rl.PAUSED:
        clock.t += 300.0


def _fail_writes_after(api: Any, writes: int, status: int, times: int) -> None:
    """Let `writes` more writes land, then answer the next `times` with `status`."""
    def arm() -> None:
        api.handler.faults.append(Fault(status, times, WRITES, None))
    if writes == 0:
        arm()
        return
    left = [writes]

    def count() -> None:
        left[0] -= 1
        if left[0] == 0:
            arm()
        else:
            api.before_next_write(count)
    api.before_next_write(count)


def _run(r: Any) -> tuple[Any, list[dict[str, Any]]]:
    """(the Result, or the error raised; the log lines)."""
    with structlog.testing.capture_logs() as logs:
        try:
            return r.run(), logs
        except CanaryError as exc:
            return exc, logs


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


# ---- a stale progressing rollout: this process's split from the take-over on ---------------------------------

def test_a_refused_take_over_of_a_stale_rollout_ends_it_at_stable_100(api: Any) -> None:
    """One refused write (403) on the take-over: the route read 80/20 afterwards, nobody running it, and
    promote exited 2 ("check RBAC", docs/reference/cli.md, "Exit codes": untouched). Now the fail-safe writes stable
    100% over the record as read: recorded aborted, exit 3."""
    clock = FakeClock()
    _recorded(api, clock, rl.PROGRESSING)
    second = runner(api, "v2", clock)
    _fail_writes_after(api, 0, 403, 1)
    res, logs = _run(second)
    assert not isinstance(res, Exception) and res.exit_code == 3 and res.state.phase == rl.ABORTED, res
    assert routes(api) == STABLE and record(api)["phase"] == rl.ABORTED and record(api)["owner"] == second.owner
    assert "403" in record(api)["reason"], record(api)["reason"]
    assert _events(logs, "rollout.failed")


@pytest.mark.parametrize("status", [500, 409])
def test_a_stale_rollout_that_cannot_be_written_says_traffic_unsafe(api: Any, virtual_time: Any, status: int) -> None:
    """Every write refused from the take-over on, 500s or a 409 storm on a record nobody else changed (it
    was RolloutBusy, "another process took the rollout over", exit 2, for a storm): the route stays 80/20.
    Now the critical `traffic.unsafe` names the route and its weights, and promote exits 6."""
    clock = FakeClock()
    _recorded(api, clock, rl.PROGRESSING)
    second = runner(api, "v2", clock)
    _fail_writes_after(api, 0, status, 10_000)
    res, logs = _run(second)
    assert isinstance(res, TrafficUnsafe), res
    assert routes(api) == SPLIT
    unsafe = _events(logs, "traffic.unsafe")
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20" and unsafe[0]["virtual_service"] == "m0", unsafe
    assert "traffic may still be split on ml/m0" in str(res)
    # one rollback budget (ROLLBACK_BUDGET_S, 20 s), not one per re-read: a 409 storm is no other writer's decision
    assert 19.0 <= sum(virtual_time.slept) <= 21.0, virtual_time.slept


def test_a_grace_spent_during_a_stale_take_over_says_traffic_unsafe_not_nothing_moved(api: Any) -> None:
    """SIGTERM lands and its grace (`--interrupt-grace`) runs out just as the take-over is sent: nothing can
    be sent. Promote said "interrupted before the rollout began ... this promote moved no traffic to the
    canary", while the route it was asked to resume stayed 80/20 with nobody running it. Now the split is
    said: `traffic.unsafe` with the weights last read, exit 6."""
    clock = FakeClock()
    _recorded(api, clock, rl.PROGRESSING)
    second = runner(api, "v2", clock)
    _grace_spent_at_take_over(second)
    res, logs = _run(second)
    assert isinstance(res, TrafficUnsafe) and "moved no traffic" not in str(res), res
    assert routes(api) == SPLIT
    unsafe = _events(logs, "traffic.unsafe")
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20", unsafe


def _grace_spent_at_take_over(r: Any) -> None:
    from canary.kube import bound_by

    until = [math.inf]
    bound_by(r.router.custom.api_client, lambda: until[0],
             spent=lambda: "the 8 s after SIGTERM (--interrupt-grace) are spent")
    take_over = r._take_over

    def signalled(existing: rl.RolloutState) -> rl.RolloutState:
        r.interrupted_by, until[0] = "SIGTERM", 0.0
        r.stop.set()
        return take_over(existing)
    r._take_over = signalled


# ---- a paused rollout: held by an operator, left as it was unless a write may have moved it --------------------

@pytest.mark.parametrize("fault", ["403 on the take-over", "500s on the take-over", "409 storm on the take-over",
                                   "grace spent at the take-over", "403 on the resume"])
def test_a_paused_rollout_whose_take_over_or_resume_fails_stays_paused_as_it_was(api: Any, virtual_time: Any,
                                                                                 fault: str) -> None:
    """On-call paused the rollout at 80/20; a re-run of promote cannot take it over, or its resume is refused.
    A take-over changes neither weights nor phase, and a refused resume changed nothing: the rollout is paused
    as the operator left it. Exit 3 saying so, nothing more written, no page (decision 131, from the review:
    the first version aborted it, or said `traffic.unsafe` for a route exactly as it was)."""
    clock = FakeClock()
    _recorded(api, clock, rl.PAUSED)
    second = runner(api, "v2", clock)
    if fault == "grace spent at the take-over":
        _grace_spent_at_take_over(second)
    else:
        status = int(fault[:3]) if fault[0].isdigit() else 409
        _fail_writes_after(api, 1 if "resume" in fault else 0, status, 1 if status == 403 else 10_000)
    res, logs = _run(second)
    assert isinstance(res, CanaryError) and not isinstance(res, RolloutBusy), res
    assert "it is still paused at 80/20, as it was" in str(res), str(res)
    assert routes(api) == SPLIT and record(api)["phase"] == rl.PAUSED
    assert not _events(logs, "traffic.unsafe") and not _events(logs, "rollback.failed")


@pytest.mark.parametrize("then", ["answers", "never answers"])
def test_a_resume_with_no_answer_may_have_landed_and_goes_to_the_fail_safe(api: Any, virtual_time: Any,
                                                                          then: str) -> None:
    """The take-over landed; the resume got 500s past the router's tries: it may have been applied, and the
    rollout may be progressing with nobody running it. The fail-safe writes stable 100% (exit 3), or says
    `traffic.unsafe` (exit 6) when the API server goes on refusing."""
    clock = FakeClock()
    _recorded(api, clock, rl.PAUSED)
    second = runner(api, "v2", clock)
    _fail_writes_after(api, 1, 500, second.router.transient_attempts if then == "answers" else 10_000)
    res, logs = _run(second)
    if then == "answers":
        assert not isinstance(res, Exception) and res.exit_code == 3 and res.state.phase == rl.ABORTED, res
        assert routes(api) == STABLE and record(api)["phase"] == rl.ABORTED
    else:
        assert isinstance(res, TrafficUnsafe), res
        assert len(_events(logs, "traffic.unsafe")) == 1 and routes(api) == SPLIT


# ---- other writers, and signals --------------------------------------------------------------------------------

@pytest.mark.parametrize("oncall", ["resume", "pause"])
def test_an_oncall_decision_between_the_take_over_and_the_resume_is_adopted(api: Any, oncall: str) -> None:
    """On-call's `canary resume` (or a pause with a new reason) lands between promote's take-over and its
    resume write. The resume's conflict went to the fail-safe, which aborted the rollout over the operator's
    decision. Now it is adopted, as the loop adopts one (`rollout.changed_outside`): resumed, the rollout is
    judged on to its end; paused again, it is held, and this promote, cancelled meanwhile with --on-interrupt
    pause, exits 130 leaving it paused with the operator's reason."""
    import tenacity

    from canary.logs import get
    from canary.model import Target
    from canary.routing.istio import IstioRouter
    from canary.runner import oncall_action

    clock = FakeClock()
    _recorded(api, clock, rl.PAUSED)
    second = runner(api, "v2", clock)
    apply = second._apply

    def racing(new: rl.RolloutState, actions: list[rl.Action], **kw: Any) -> rl.RolloutState:
        if any(getattr(a, "event", "") == "rollout.resumed" for a in actions):
            if oncall == "resume":
                target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
                oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                              rl.Resume(clock.now() + 1), log=get().bind(actor="on-call"))  # its own clock
            else:
                _edit_record(api, lambda r: {**r, "reason": "operator: hold, investigating"})
                second.stop.set()  # and this promote is cancelled while it holds: it ends as --on-interrupt says
                second.on_interrupt = "pause"
        return apply(new, actions, **kw)
    second._apply = racing  # type: ignore[method-assign]
    res, logs = _run(second)
    assert not isinstance(res, Exception), res
    assert _events(logs, "rollout.changed_outside"), [e["event"] for e in logs]
    assert not _events(logs, "rollout.failed")
    if oncall == "resume":
        # judged on from there (its looks decide the end), not aborted by the fail-safe
        after = [e["event"] for e in logs][[e["event"] for e in logs].index("rollout.changed_outside"):]
        assert "look.completed" in after and res.state.phase in (rl.PROMOTED, rl.ROLLED_BACK), res.state.reason
        assert not res.state.reason.startswith("failed"), res.state.reason
    else:
        assert res.exit_code == 130 and record(api)["phase"] == rl.PAUSED and routes(api) == SPLIT
        assert record(api)["reason"] == "operator: hold, investigating"


def test_a_take_over_that_meets_another_writers_record_is_busy_naming_it(api: Any) -> None:
    """A third promote takes the stale rollout over first: the conflict read "another process took the rollout
    over at the same moment" whatever had happened. It now names what the route records, and nothing is
    written by this promote."""
    clock = FakeClock()
    _recorded(api, clock, rl.PROGRESSING)
    second = runner(api, "v2", clock)
    third = "promote#third:4026531836:456:cd"
    api.before_next_write(lambda: _edit_record(api, lambda r: {**r, "owner": third, "updated_at": r["updated_at"] + 1}))
    res, logs = _run(second)
    assert isinstance(res, RolloutBusy), res
    assert "the route's record changed while this promote took the rollout of v2 over: it now records v2 " \
           "progressing" in str(res) and "nothing was written by this promote" in str(res), str(res)
    assert record(api)["owner"] == third and routes(api) == SPLIT


@pytest.mark.parametrize("phase", [rl.PAUSED, rl.PROGRESSING])
def test_a_signal_before_the_take_over_writes_nothing(api: Any, phase: str) -> None:
    """SIGTERM already came when promote read the rollout it was to resume: it took it over and resumed it (and
    with --on-interrupt rollback then aborted it), seven writes. Now nothing is written, exit 3, saying the
    rollout is as it was."""
    clock = FakeClock()
    _recorded(api, clock, phase)
    second = runner(api, "v2", clock)
    second.interrupted_by = "SIGTERM"
    second.stop.set()
    before, writes = record(api), api.handler.write_count
    res, _ = _run(second)
    assert isinstance(res, CanaryError), res
    assert str(res).startswith("interrupted (SIGTERM) before this promote took over the rollout of v2 in progress "
                               f"({phase} at 80/20); nothing was written"), str(res)
    assert api.handler.write_count == writes and record(api) == before


def test_a_signal_after_a_superseded_rollout_ended_says_what_was_written(api: Any) -> None:
    """A re-run with an edited policy ends the rollout in progress (stable 100%, `superseded`), then checks
    before claiming afresh; a SIGTERM there said "nothing was written and no traffic moved". It now says the
    superseded rollout was ended at stable 100% and no new one was claimed."""
    import copy

    from tests import fleet

    clock = FakeClock()
    _recorded(api, clock, rl.PAUSED)
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["steps"] = [10, 50, 100]
    second = runner(api, "v2", clock, policy=policy)
    check = second._preflight_metrics

    def signalled(target: Any) -> None:
        second.interrupted_by = "SIGTERM"
        second.stop.set()
        return check(target)
    second._preflight_metrics = signalled  # type: ignore[method-assign]
    res, _ = _run(second)
    assert isinstance(res, CanaryError), res
    assert str(res) == ("interrupted (SIGTERM) before the rollout began, during the checks before the claim; the "
                        "rollout of v2 it superseded was ended at stable 100% (recorded aborted), and no new one was "
                        "claimed"), str(res)
    assert routes(api) == STABLE and record(api)["phase"] == rl.ABORTED


@pytest.mark.parametrize("unanswered", ["the decided rollback", "the fail-safe's first attempt"])
def test_the_page_says_an_unanswered_stable_100_write_may_have_landed(api: Any, virtual_time: Any,
                                                                      unanswered: str) -> None:
    """Decision 131 (b). A stable-100% write with no answer (a 500 four times over: the router's tries) may
    have been applied; when a later attempt was refused (403), the critical `rollback.failed` reported that
    attempt alone, `write_landed: no: the write was refused`, while the route might already read 100/0.
    The page now says `unknown`, naming the earlier write, whether the unanswered one was the decided
    rollback (`Runner._apply`) or an attempt of the fail-safe's own (`reconcile.to_stable`)."""
    from canary.runner import _rolls_back

    clock = FakeClock()
    bad = runner(api, "v2", clock, slowdown=2.0)  # a canary the judge rolls back
    writes = frozenset({"PUT", "PATCH", "POST"})
    first = [Fault(500, bad.router.transient_attempts, writes, None)] if unanswered == "the decided rollback" else \
        [Fault(403, 1, writes, None), Fault(500, bad.router.transient_attempts, writes, None)]
    apply = bad._apply

    def armed(new: rl.RolloutState, actions: list[rl.Action], **kw: Any) -> rl.RolloutState:
        if _rolls_back(new):
            api.handler.faults.extend([*first, Fault(403, 10_000, writes, None)])
        return apply(new, actions, **kw)
    bad._apply = armed  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe):
        bad.run()
    pages = [e for e in logs if e["event"] == "rollback.failed"]
    assert pages and all(e["log_level"] == "critical" for e in pages), pages
    assert pages[-1]["write_landed"].startswith("unknown: an earlier stable-100% write had no answer"), pages[-1]
    assert "HTTP 500" in pages[-1]["write_landed"]

"""The line on-call gets when a rollout ends (decision 115): one line alone says which model, namespace,
VirtualService, route and versions, the weights now, why (with numbers) and the class of the end
(`end_cause`); a canary shown bad is the one error line of its rollback, an unproven one a warning.

Before: the controller's lines lacked namespace, VirtualService, route and the stable version (its
`rollback.completed` of a slow canary named neither version); no line carried `end_cause`, so "a bad
canary" and "nothing proven by the deadline" read the same (both warnings); a rollout aborted because
Prometheus could not be asked was `deadline` in `-o json` and `canary_rollbacks_total{reason}`; a rollback of several checks for one reason ("latency-p95,
errors: the canary got no requests ...", unrouted) was `other`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import structlog.testing

from canary import reconcile
from canary import rollout as rl
from canary.errors import KubeUnavailable, TrafficUnsafe
from canary.model import Target, Weights
from canary.policy import parse_policy
from canary.runner import Runner
from canary.telemetry import classify_reason
from tests.fakes import FakeMetrics
from tests.unit.test_runner import POLICY, TARGET, make
from tests.unit.test_runner_decided_ends import _fail_ends
from tests.unit.test_runner_faults import virtual_time  # noqa: F401  (fixture)

CONTEXT = {"model": "rec", "namespace": "ml", "virtual_service": "rec", "stable_version": "v1", "canary_version": "v2"}


def _run(ctl: Runner) -> tuple[Any, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    return res, logs


def _one(logs: list[dict[str, Any]], event: str) -> dict[str, Any]:
    found = [e for e in logs if e["event"] == event]
    assert len(found) == 1, [e["event"] for e in logs]
    return found[0]


def _errors(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] in ("error", "critical")]


def test_a_canary_shown_bad_is_one_error_line_that_says_it_all() -> None:
    ctl, _, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    res, logs = _run(ctl)
    assert res.state.phase == rl.ROLLED_BACK
    assert _errors(logs) == ["rollback.completed"]  # exactly one line to page on
    done = _one(logs, "rollback.completed")
    assert CONTEXT.items() <= done.items(), done
    assert done["weights"] == "100/0" and done["from_weights"] == "50/50" and done["end_cause"] == "check"
    assert done["reason"].startswith("lat: canary p95 ") and "limit +20%" in done["reason"]
    assert _one(logs, "rollback.started")["log_level"] == "warning"


def test_a_canary_not_proven_by_the_deadline_is_a_warning_that_says_so() -> None:
    ctl, _, _, _ = make(slowdown=lambda t: 1.17)  # inside +20%, never shown within it by the deadline
    res, logs = _run(ctl)
    assert res.state.phase == rl.ROLLED_BACK and not _errors(logs)
    done = _one(logs, "rollback.completed")
    assert done["log_level"] == "warning" and done["end_cause"] == "deadline" and CONTEXT.items() <= done.items()
    assert done["reason"].startswith("no verdict after ")


def test_prometheus_unreachable_until_the_deadline_is_an_infrastructure_end() -> None:
    ctl, _, metrics, _ = make()
    metrics.down = True
    res, logs = _run(ctl)
    assert res.state.phase == rl.ABORTED
    done = _one(logs, "rollout.aborted")
    assert done["end_cause"] == "infrastructure" and CONTEXT.items() <= done.items(), done
    assert done["reason"].startswith("Prometheus unreachable: no verdict after 30s at step 1")
    assert classify_reason(res.state.reason) == "infrastructure"  # -o json, canary_rollbacks_total{reason}


def test_prometheus_unreachable_under_hold_says_so_in_the_held_line() -> None:
    policy = parse_policy({**POLICY.model_dump(mode="json", exclude_none=True),
                           "failure": {"max_failed_looks": 2, "no_data_deadline": "20s", "on_deadline": "hold"}})
    ctl, router, metrics, clock = make()
    ctl = Runner(policy=policy, target=TARGET, router=router, metrics=metrics, clock=clock)
    metrics.down = True
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PAUSED else None
    _, logs = _run(ctl)
    held = _one(logs, "rollout.held")
    assert held["log_level"] == "warning" and held["reason"].startswith("Prometheus unreachable: no verdict after")


@pytest.mark.parametrize("reason", [
    "latency-p95, errors: the canary got no requests at 20% while stable got 1600 over the last 4s",
    "lat: canary p95 90 ms vs stable 40 ms (+125%, limit +20%)",
])
def test_a_checks_rollback_is_a_check_whatever_the_number_of_checks_it_names(reason: str) -> None:
    assert classify_reason(reason) == "check"


class _Down:
    """A router whose writes fail as an API server that is down (past its own retries)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def set_weights(self, target: Target, weights: Weights, **kw: Any) -> Any:
        raise KubeUnavailable("kubernetes API unreachable: ml/rec (virtualservices)")

    def record_event(self, target: Target, **kw: Any) -> bool:
        self.events.append(kw)
        return True


def test_a_failed_rollback_write_names_the_rollout_the_route_and_the_end_it_was_writing() -> None:
    """`execute` binds the rollout's context whatever logger it was given (the controller's carried only
    `rollout`, `model` and sometimes `canary_version`): the critical line says which route to fix by hand."""
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2",
                    route="primary")
    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0,
                                   route="primary")[0], phase=rl.PROGRESSING, weights=Weights(90, 10))
    new, actions = rl.transition(state, rl.Rollback(1001.0, "operator: pager", aborted=False), POLICY)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(KubeUnavailable):
            reconcile.execute(_Down(), target, new, actions, log=structlog.get_logger().bind(rollout="ml/r0"))
    failed = _one(logs, "rollback.failed")
    assert failed["log_level"] == "critical" and failed["route"] == "primary" and failed["rollout"] == "ml/r0"
    assert CONTEXT.items() <= failed.items(), failed
    assert failed["end_cause"] == "operator" and failed["reason"] == "operator: pager"
    assert failed["from_weights"] == "90/10"  # what is still routed (unless write_landed says it may have landed)
    started = _one(logs, "rollback.started")  # logged before the write: what is routed, and the decision
    assert started["weights"] == "90/10" and started["target_weights"] == "100/0" and started["route"] == "primary"
    assert not [e for e in logs if e["event"] == "rollback.completed"]  # no line claims the failed write


def test_a_rollback_write_promotes_fail_safe_retries_is_no_page_until_its_budget_is_spent(
        virtual_time: Any) -> None:  # noqa: F811
    """promote's decided rollback whose first write failed (an API server restarting) logged the critical
    `rollback.failed` ("act by hand") at once, while its fail-safe still had 20 s of attempts, and landed
    on the next one: on-call was paged for a rollback that completed a second later. Now the first failure
    is `rollback.retrying` (attempt 0, with the reason and `end_cause`); only the budget spent pages."""
    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    _fail_ends(router, (rl.ROLLED_BACK,), 1)
    res, logs = _run(ctl)
    assert res.state.phase == rl.ROLLED_BACK
    assert not [e for e in logs if e["log_level"] == "critical"], [e["event"] for e in logs]
    first = [e for e in logs if e["event"] == "rollback.retrying"][0]
    assert first["attempt"] == 0 and first["end_cause"] == "check" and first["reason"].startswith("lat: ")
    assert CONTEXT.items() <= first.items()
    assert _one(logs, "rollback.completed")["log_level"] == "error"
    assert _errors(logs) == ["rollback.completed"]  # `rollout.failed` (decided) a warning: one rollback, one error
    assert _one(logs, "rollout.failed")["log_level"] == "warning"


def test_traffic_unsafe_names_the_virtual_service_as_every_line_does(virtual_time: Any) -> None:  # noqa: F811
    """`traffic.unsafe` gave `virtual_service` as "ns/name", every other line the name with `namespace`
    beside it: a query on virtual_service="rec" missed the one line that needs a person."""
    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    _fail_ends(router, (rl.ROLLED_BACK, rl.ABORTED), 100)
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe):
        ctl.run()
    unsafe = _one(logs, "traffic.unsafe")
    assert unsafe["log_level"] == "critical" and CONTEXT.items() <= unsafe.items(), unsafe
    assert unsafe["weights"] == "50/50" and "ml/rec" in unsafe["hint"]
    assert [e["event"] for e in logs if e["log_level"] == "critical"] == ["rollback.failed", "traffic.unsafe"]
    failed = _one(logs, "rollback.failed")
    assert failed["from_weights"] == "50/50" and failed["end_cause"] == "check" and CONTEXT.items() <= failed.items()


def test_the_sweeps_end_of_an_abandoned_rollout_says_the_weights_it_left_not_the_ones_it_found() -> None:
    """`rollout.abandoned`, logged once the sweep's write landed, gave the abandoned record's phase and
    weights ("progressing", "80/20") for a rollout just sent to stable 100%: on-call read it still split."""
    from canary import sweep
    from canary.model import STABLE_ONLY
    from tests.fakes import FakeRouter

    rec = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0, route="primary",
                                 owner=reconcile.promote_owner("ci:1:2:ab"))[0],
                  phase=rl.PROGRESSING, weights=Weights(80, 20))
    router = FakeRouter()
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2",
                    route="primary")
    router.set_weights(target, Weights(80, 20), state=rec.to_json())
    found = sweep.Found("ml", "rec", rec, rec.to_json(), reason="abandoned: its process is gone", quiet_s=400.0)
    with structlog.testing.capture_logs() as logs:
        sweep.end(router, found, log=structlog.get_logger(), now=2000.0)
    assert router.weights == STABLE_ONLY
    line = _one(logs, "rollout.abandoned")
    assert (line["phase"], line["weights"], line["from_phase"], line["from_weights"]) == (
        rl.ABORTED, "100/0", rl.PROGRESSING, "80/20"), line
    assert line["end_cause"] == "abandoned" and CONTEXT.items() <= line.items() and line["route"] == "primary"


def test_an_interrupt_names_the_signal_that_stopped_the_rollout() -> None:
    """"interrupted" alone: on-call could not tell a CI job cancelled or a pod evicted (SIGTERM) from
    someone's Ctrl-C (SIGINT). promote's handler records which signal stopped it."""
    ctl, _, _, _ = make()
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    ctl.interrupted_by = "SIGTERM"  # as the CLI's handler sets it
    res, logs = _run(ctl)
    done = _one(logs, "rollout.aborted")
    assert res.state.reason == done["reason"] == "interrupted by SIGTERM" and done["end_cause"] == "interrupted"
    assert done["weights"] == "100/0" and done["from_weights"] == "90/10" and CONTEXT.items() <= done.items()


def test_every_retry_of_a_rollback_write_says_the_end_it_is_writing(virtual_time: Any) -> None:  # noqa: F811
    """The fail-safe's own attempts (`to_stable`: `attempt` 1, 2, ...) said `rollback.retrying` with `attempt` and
    `error` alone, where its first (`attempt` 0) and the page carry the end: on-call, reading one of them, could not
    tell whose rollback it retried, from what split, or whether the canary was to blame without the line before it
    (decision 677)."""
    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    _fail_ends(router, (rl.ROLLED_BACK,), 3)
    res, logs = _run(ctl)
    assert res.state.phase == rl.ROLLED_BACK
    retries = [e for e in logs if e["event"] == "rollback.retrying"]
    assert [e["attempt"] for e in retries] == [0, 1, 2], retries
    for line in retries:
        assert CONTEXT.items() <= line.items(), line
        assert line["end_cause"] == "check" and line["reason"].startswith("lat: "), line
        assert line["from_weights"] == "50/50" and line["target_weights"] == "100/0", line
        assert line["write_landed"].startswith("unknown"), line  # a 503: it may have landed


# what the `next` of each class must say: whether the version may go out again as it is, or nothing is to be done
NEXT_SAYS = {"check": "do not ship v2", "gate": "do not ship v2", "deadline": "nothing showed v2 bad",
             "operator": "nothing to do", "interrupted": "not the canary", "infrastructure": "not the canary",
             "foreign_edit": "not the canary", "abandoned": "not the canary", "other": "read `reason`"}


@pytest.mark.parametrize("cause", rl.ROLLBACK_REASONS)
def test_an_ends_lines_say_what_on_call_does_next_by_its_class(cause: str) -> None:
    """An end's lines said why (`reason`) and its class (`end_cause`), not what follows from it: whether the version
    may be rolled out again as it is (a deadline's, an outage's) or must not (a check's), or that nothing is to be
    done (an operator's). `next` says it, on the end's line, for every class (decision 678; 738)."""
    assert set(NEXT_SAYS) == set(rl.ROLLBACK_REASONS)
    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10))
    _, actions = rl.transition(state, rl.Rollback(1001.0, "why", aborted=cause not in rl.BAD_CANARY, cause=cause),
                               POLICY)
    lines = [a for a in actions if isinstance(a, rl.Emit)]
    assert len(lines) == 2 and all(a.fields["end_cause"] == cause for a in lines), lines
    start, done = lines
    assert done.fields["next"].startswith(NEXT_SAYS[cause]), (done.event, done.fields["next"])
    # not on the start's line, said before the write: what on-call does then depends on whether it lands ("nothing
    # to do" of an operator's rollback whose write then failed, traffic still split; decision 738)
    assert "next" not in start.fields, start.fields


def test_an_end_that_landed_whose_stable_subset_could_not_be_pointed_says_next_on_its_page() -> None:
    """Stable 100% written and the end recorded, then the stable subset's pointing refused (its DestinationRule
    deleted, decision 168): the end's line (`rollback.completed` / `rollout.aborted`, with `next`) is never said,
    and for promote (exit 3) and the sweep (735) the page is the end's last line. Since 738 the start's line no longer
    carries `next`, so no line of that end said what on-call does after it ("do not ship v2"). The page says it now,
    as the end's line would have: the end is on the route (decision 755, on 738)."""
    from canary import sweep
    from canary.errors import NotFound, RollbackFailed
    from tests.fakes import FakeRouter

    def deleted(*args: Any, **kw: Any) -> None:
        raise NotFound("destinationrules.networking.istio.io \"rec\" not found")

    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10), owner="gone")
    router = FakeRouter(weights=Weights(90, 10), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    router.point_subset = deleted  # type: ignore[method-assign]
    new, actions = rl.transition(state, rl.Rollback(1001.0, "lat: p95 up", cause="check"), POLICY)
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        reconcile.execute(router, TARGET, new, actions, log=structlog.get_logger(), expect=router.state)
    page = _one(logs, "rollback.failed")
    assert page["next"].startswith(NEXT_SAYS["check"]), page
    # the sweep's end of the same (its `rollout.abandoned`, then its own page)
    router = FakeRouter(weights=Weights(90, 10), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    router.point_subset = deleted  # type: ignore[method-assign]
    found = sweep.Found("ml", "rec", state, state.to_json(), quiet_s=600.0)
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        sweep.end(router, found, log=structlog.get_logger(), now=2000.0)
    assert router.weights == Weights(100, 0) and _one(logs, "rollout.abandoned")
    page = _one(logs, "rollback.failed")
    assert page["next"].startswith(NEXT_SAYS["abandoned"]), page


def test_a_gate_the_canary_did_not_fail_says_it_is_not_the_canarys() -> None:
    """A gate failed by the stable server (or the warm-up sample file, the model name) ends aborted, class `gate` as
    its words class it: its `next` must not say "do not ship v2" of a canary nobody judged (decision 678)."""
    state = rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0]
    _, actions = rl.transition(state, rl.GateFailed(1001.0, "stable Triton http://s:8000: not ready", aborted=True),
                               POLICY)
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollout.aborted"][0]
    assert done.fields["end_cause"] == "gate" and done.fields["next"].startswith("not the canary"), done.fields
    _, actions = rl.transition(state, rl.GateFailed(1001.0, "canary Triton http://c:8000: not ready"), POLICY)
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"][0]
    assert done.fields["next"].startswith("do not ship v2"), done.fields


def test_a_gate_failed_by_the_canarys_probes_mid_rollout_is_said_as_it_failed() -> None:
    """The gate's probes end a rollout in progress when the canary stops being ready while it serves a share
    (`runner.probe_reason`): its `next` said the canary "did not load, or refused the warm-up", neither of which
    happened; it names the probes (decision 678's addendum)."""
    from canary.runner import probe_reason

    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10))
    _, actions = rl.transition(state, rl.GateFailed(1001.0, probe_reason(None, 3)), POLICY)
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"][0]
    assert done.fields["reason"].startswith("gate: canary Triton not ready (3 probes in a row"), done.fields
    assert done.fields["next"].startswith("do not ship v2") and "readiness probes" in done.fields["next"], done.fields


def test_a_rollback_that_cannot_reach_the_route_says_which_route_as_every_line_does() -> None:
    """`canary rollback` over a rollout in progress on a route no stable-100% write can reach (`read_for_stable`
    raises TrafficUnsafe): its critical `traffic.unsafe` gave `virtual_service` "ns/name" and no `namespace` nor
    `model`, where every other line gives the name with the rollout's context (decision 677's addendum)."""
    from canary.logs import get
    from canary.runner import oncall_action
    from tests.fakes import FakeRouter

    class Unreachable(FakeRouter):
        def inspect(self, target: Target) -> Any:
            raise TrafficUnsafe("the route's stable destination cannot be written")

    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe):
        oncall_action(Unreachable(), target, rl.Rollback(1.0, "operator: pager", cause="operator"), log=get())
    unsafe = _one(logs, "traffic.unsafe")
    assert unsafe["log_level"] == "critical" and CONTEXT.items() <= unsafe.items(), unsafe


def test_a_checks_rollback_written_at_a_later_tick_keeps_its_evidence() -> None:
    """A check's rollback whose write failed is written at a later tick (`rollout.end_stands`, or the failure budget's
    rescue: decision 676), made again from the route's record: its `rollback.completed`, the one error line of a
    canary shown bad, lost the `evidence` (every failed check's numbers) the decided end carried (676's addendum)."""
    from canary.controller import _decided_again
    from canary.model import CheckResult, Outcome, Verdict

    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10), step_started_at=1000.0)
    bad = CheckResult(check="err", kind="error_rate", outcome=Outcome.FAIL, reason="canary 5% vs 0.1%",
                      n_canary=500, n_stable=5000)
    look = rl.Looked(1001.0, Verdict.combine([bad]), canary_requests=500.0, window_s=60.0)
    decided, actions = rl.transition(replace(state, failed_looks=POLICY.failure.max_failed_looks - 1), look, POLICY)
    assert decided.phase == rl.ROLLED_BACK and rl.cause_of(decided) == "check", decided.reason
    evidence = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"][0].fields["evidence"]
    ended, again = _decided_again(decided, state, 1010.0, actions)
    lines = {a.event: a.fields for a in again if isinstance(a, rl.Emit)}
    assert ended.phase == rl.ROLLED_BACK and set(lines) == {"rollback.started", "rollback.completed"}, lines
    assert all(fields["evidence"] == evidence and fields["end_cause"] == "check" for fields in lines.values()), lines


def test_a_gate_the_canary_failed_ended_aborted_by_its_virtual_service_gone_still_says_do_not_ship() -> None:
    """A gate's rollback of a canary that failed it (not ready mid-rollout), whose write met its VirtualService
    deleted, ends aborted (nothing routes stable 100%: decision 710) with its class and words. `next` read "not the
    canary" off the phase (a gate's end aborted was the stable server's or the samples'), of a canary its gate had
    failed; `canary report`'s headline the same. Both read the gate's words now (decision 712)."""
    from canary.controller import _decided_again
    from canary.report import _why

    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10), step_started_at=1000.0)
    decided, actions = rl.transition(state, rl.GateFailed(1001.0, "canary Triton http://c:8000: not ready"), POLICY)
    assert decided.phase == rl.ROLLED_BACK and rl.cause_of(decided) == "gate", decided.reason
    ended, again = _decided_again(decided, state, 1010.0, actions, gone="; VirtualService rec is gone")
    assert ended.phase == rl.ABORTED and rl.cause_of(ended) == "gate", ended.reason
    nexts = {a.event: a.fields["next"] for a in again if isinstance(a, rl.Emit) and "next" in a.fields}
    assert set(nexts) == {"rollout.aborted"}, nexts  # (on the end's line alone: decision 738)
    assert all(n.startswith("do not ship v2") for n in nexts.values()), nexts
    why = _why({"phase": ended.phase, "reason": ended.reason, "end_cause": ended.end_cause})
    assert "a Triton gate refused the canary" in why and "not the canary" not in why, why


def test_an_end_by_input_refused_mid_rollout_says_to_fix_that_input() -> None:
    """A rollout failed mid-way by input refused (a ConfigError: a spec edited to a policy the controller refuses, a
    policyRef ConfigMap gone, a query Prometheus no longer takes) is an `infrastructure` end (`failure_cause`: not the
    canary), whose `next` sent on-call to Prometheus and the Kubernetes API alone; it names the input too (714)."""
    from canary.errors import ConfigError

    state = replace(rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0],
                    phase=rl.PROGRESSING, weights=Weights(90, 10))
    exc = ConfigError("CanaryRollout ml/r0: policy: steps[1]: must be above steps[0] (50), not 10")
    cause = reconcile.failure_cause(exc)
    _, actions = rl.transition(state, rl.Rollback(1001.0, f"failed: {exc}", aborted=True, cause=cause), POLICY)
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollout.aborted"][0]
    assert done.fields["end_cause"] == "infrastructure", done.fields
    assert done.fields["next"].startswith("not the canary") and "policy" in done.fields["next"], done.fields


def test_a_refused_edits_end_reads_as_the_operators_and_says_to_fix_the_spec() -> None:
    """A record of it without its class (a reader of the words alone) classes it as the operator's, never "other";
    its `next` is not the operator's "nothing to do" (decision 801)."""
    from canary.end_words import next_step
    reason = (f"{rl.REFUSED_EDIT} (spec.model changed from m0 to m1): CanaryRollout ml/r0: spec.virtualService is "
              "given empty")
    assert rl.classify_reason(reason) == "operator"
    assert next_step("operator", "v2", reason=reason).startswith("not the canary: the CanaryRollout's spec was edited")
    assert next_step("operator", "v2", reason="operator: latency page").startswith("nothing to do")


def test_a_policy_ref_configmap_edited_to_a_refused_policy_reads_as_the_operators_and_says_to_fix_that_configmap(
        ) -> None:
    """A policyRef ConfigMap edited mid-rollout to a policy refused (`REFUSED_POLICY_EDIT`, decision 822): a record of
    it without its class reads as the operator's, and its `next` names the ConfigMap to fix, not the spec."""
    from canary.end_words import REFUSED_POLICY_EDIT, next_step
    reason = (f"{REFUSED_POLICY_EDIT} (ConfigMap ml/pol key policy.yaml changed since the rollout started): "
              "CanaryRollout ml/r0 spec.policyRef: ConfigMap ml/pol[policy.yaml]: steps: must rise")
    assert rl.classify_reason(reason) == "operator"
    said = next_step("operator", "v2", reason=reason)
    assert said.startswith("not the canary: the policy in the rollout's policyRef ConfigMap was edited") and \
        "fix that ConfigMap" in said, said

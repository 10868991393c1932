"""reconcile: the metrics preflight logging, and `decide`, the one reconcile step both loops call."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import ConfigError
from canary.logs import get
from canary.metrics.base import PreflightQuery, PreflightReport
from canary.model import STABLE_ONLY, CheckResult, Outcome, Target, Verdict, Weights
from canary.policy import parse_policy
from canary.reconcile import Observation, decide, preflight_metrics
from canary.routing.base import RouteStatus

POLICY = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "labels": {"cluster": "eu-1"}}, "checks": [
    {"name": "err", "kind": "error_rate", "max_rate_pct": 1},
    {"name": "lat", "kind": "latency", "max_ms": 250}]})
TARGET = Target(namespace="ml", virtual_service="m", model="m", stable_version="v1", canary_version="v2")


def _q(where: str, arm: str, series: int, value: float | None = None) -> PreflightQuery:
    return PreflightQuery(where=where, check=where.split("'")[1] if "'" in where else "request_counts", arm=arm,
                          query=f'q{{w="{where}",v="{arm}"}}', series=series, value=value)


class _Metrics:
    """Preflight answers: the stable arm's series per place (the canary's are empty, as before traffic)."""

    def __init__(self, err: int = 1, lat: int = 1, counts: float | None = 100.0) -> None:
        self.stable = {"checks[0] 'err'": (err, None), "checks[1] 'lat'": (lat, None),
                       "request counts": (0 if counts is None else 1, counts)}

    def preflight(self, policy: object, target: object) -> PreflightReport:
        return PreflightReport(url="http://p", window_s=60, sent=7, elapsed_s=0.01, queries=tuple(
            q for where, (n, value) in self.stable.items()
            for q in (_q(where, "stable", n, value), _q(where, "canary", 0))))


def test_an_empty_stable_arm_is_logged_as_a_warning_naming_the_check_and_query() -> None:
    with structlog.testing.capture_logs() as logs:
        preflight_metrics(_Metrics(err=0), POLICY, TARGET, log=get())
    passed = [e for e in logs if e["event"] == "metrics.preflight_passed"]
    warned = [e for e in logs if e["event"] == "metrics.preflight_empty_stable"]
    assert passed and passed[0]["empty_stable"] == ["checks[0] 'err' (q{w=\"checks[0] 'err'\",v=\"stable\"})"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert "checks[0] 'err'" in warned[0]["detail"] and 'v="stable"' in warned[0]["detail"]  # not the canary's


@pytest.mark.parametrize("answers,blind", [
    ({"err": 0, "lat": 0}, "checks[0] 'err', checks[1] 'lat'"),  # every check: a label that matches nothing
    ({"counts": None}, "request counts"),  # no request count: the canary's is read the same way
    ({"counts": 0.0}, "request counts"),  # a stable with no traffic now: nothing to compare either
    ({"err": 0, "lat": 0, "counts": None}, "checks[0] 'err', checks[1] 'lat', request counts"),
])
def test_no_stable_data_to_judge_refuses_the_rollout_before_traffic_moves(answers: dict[str, float | None],
                                                                          blind: str) -> None:
    """Decision 110: no step could pass, and every look would error "no data" to the deadline."""
    with structlog.testing.capture_logs() as logs, pytest.raises(ConfigError) as err:
        preflight_metrics(_Metrics(**answers), POLICY, TARGET, log=get())  # type: ignore[arg-type]
    said = str(err.value)
    assert f"no stable (v1) data over the last 60s for {blind}:" in said
    assert "metrics.labels (cluster=eu-1)" in said and "metrics.source (model)" in said and "nothing was moved" in said
    names = [e["event"] for e in logs]
    assert "metrics.preflight_passed" not in names
    assert names.count("metrics.preflight_empty_stable") == blind.count("'") // 2 + ("request counts" in blind
                                                                                      and answers["counts"] is None)


@pytest.mark.parametrize("limits,refused", [
    ({"max_increase_pct": 20}, "(max_increase_pct compared with stable)"),
    ({"max_increase_pct": 20, "max_ms": 250}, "(max_increase_pct compared with stable)"),  # the ceiling alone: ERROR
    ({"max_ms": 250}, ""),  # a limit on the canary alone is judged without stable: a warning, as before
])
def test_a_check_compared_with_stable_that_found_no_stable_data_refuses_the_rollout(limits: dict[str, float],
                                                                                    refused: str) -> None:
    """Decision 261: `lat` empty, `err` with data: `lat` is ERROR at every look, so no step could ever pass."""
    policy = parse_policy({**POLICY.model_dump(mode="json", exclude={"checks"}), "checks": [
        {"name": "err", "kind": "error_rate", "max_rate_pct": 1}, {"name": "lat", "kind": "latency", **limits}]})
    with structlog.testing.capture_logs() as logs:
        if not refused:
            preflight_metrics(_Metrics(lat=0), policy, TARGET, log=get())
        else:
            with pytest.raises(ConfigError) as err:
                preflight_metrics(_Metrics(lat=0), policy, TARGET, log=get())
            assert f"no stable (v1) data over the last 60s for checks[1] 'lat' {refused}:" in str(err.value)
            assert "no step could pass" in str(err.value) and "nothing was moved" in str(err.value)
    names = [e["event"] for e in logs]
    assert names.count("metrics.preflight_empty_stable") == 1
    assert ("metrics.preflight_passed" in names) is not bool(refused)


# ---- decide: the one reconcile step both loops call -----------------------------------


NOW = 1000.0


def _running(phase: str = rl.PROGRESSING, weights: Weights = Weights(90, 10)) -> rl.RolloutState:
    return rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=phase, weights=weights,
                           started_at=900.0, step_started_at=950.0, updated_at=950.0)


def _status(weights: Weights = Weights(90, 10), stable: str = "v1", canary: str = "v2") -> RouteStatus:
    return RouteStatus(weights=weights, state="{}", stable_subset_version=stable, canary_subset_version=canary)


def _events(steps: list[tuple[rl.RolloutState, list[rl.Action]]]) -> list[str]:
    return [a.event for _, actions in steps for a in actions if isinstance(a, rl.Emit)]


def _look(outcome: Outcome) -> rl.Looked:
    result = CheckResult(check="err", kind="error_rate", outcome=outcome, reason="r", n_canary=500, n_stable=5000)
    return rl.Looked(NOW, Verdict.combine([result]), canary_requests=500.0, window_s=60.0)


def test_nothing_to_do_is_no_step() -> None:
    assert decide(POLICY, _running(), Observation(status=_status()), NOW) == []
    assert decide(POLICY, _running(), Observation(), NOW) == []


def test_a_command_comes_first_and_ends_the_step() -> None:
    steps = decide(POLICY, _running(), Observation(status=_status(Weights(50, 50)), command=rl.Rollback(NOW, "x"),
                                                   look=_look(Outcome.PASS)), NOW)
    assert [s.phase for s, _ in steps] == [rl.ROLLED_BACK]  # no reassert, no look after a rollback
    assert steps[-1][0].weights == STABLE_ONLY


@pytest.mark.parametrize("subset", ["stable", "canary"])
def test_a_re_pointed_subset_aborts_even_when_the_weights_were_also_edited(subset: str) -> None:
    status = _status(Weights(50, 50), **{subset: "v9"})
    steps = decide(POLICY, _running(), Observation(status=status, look=_look(Outcome.PASS)), NOW)
    assert [s.phase for s, _ in steps] == [rl.ABORTED]
    assert _events(steps)[0] == "subset.foreign_edit" and "v9" in steps[0][0].reason


def test_edited_weights_are_reasserted_or_rolled_back_by_policy() -> None:
    state = _running(rl.PAUSED)
    reassert = decide(POLICY, state, Observation(status=_status(Weights(0, 100))), NOW)
    assert len(reassert) == 1 and reassert[0][0].weights == state.weights and reassert[0][0].reverts == 1
    assert rl.SetWeights(Weights(90, 10)) in reassert[0][1]
    assert _events(reassert) == ["weights.foreign_edit", "weights.reasserted"]
    abort = decide(POLICY, state, Observation(status=_status(Weights(0, 100)), on_foreign_edit="abort"), NOW)
    assert abort[-1][0].phase == rl.ROLLED_BACK and "foreign edit" in abort[-1][0].reason


def test_a_revert_restarts_the_window_is_never_judged_and_the_third_in_a_row_ends_at_stable() -> None:
    """Decision 170: our weights found reverted (record left in place: a GitOps apply) are reasserted with the
    step's window started over; a look read with the revert is not judged; a look judged afterwards ends the
    reverts in a row; the third revert in a row ends the rollout at stable 100%, aborted, with one line."""
    state = replace(_running(), step=0, step_looks=2, step_window=0)
    vs = "ml/m"
    first = decide(POLICY, state, Observation(status=_status(STABLE_ONLY), look=_look(Outcome.PASS),
                                              virtual_service=vs), NOW)
    s1 = first[-1][0]
    assert s1.reverts == 1 and s1.step_started_at == NOW and s1.step_looks == 0 and s1.step_window == 1
    assert s1.look == state.look and s1.phase == rl.PROGRESSING, "the look read with the revert was judged"
    assert _events(first) == ["weights.foreign_edit", "weights.reasserted"]
    judged = decide(POLICY, s1, Observation(status=_status(), look=_look(Outcome.INCONCLUSIVE)), NOW + 5)
    assert judged[-1][0].reverts == 0 and judged[-1][0].look == state.look + 1
    s2 = decide(POLICY, s1, Observation(status=_status(STABLE_ONLY), virtual_service=vs), NOW + 5)[-1][0]
    third = decide(POLICY, s2, Observation(status=_status(STABLE_ONLY), virtual_service=vs), NOW + 10)
    end = third[-1][0]
    assert s2.reverts == 2 and end.phase == rl.ABORTED and end.weights == STABLE_ONLY, end
    assert rl.classify_reason(end.reason) == "foreign_edit" and "VirtualService ml/m" in end.reason
    lines = [a for _, acts in third for a in acts if isinstance(a, rl.Emit) and a.event == "weights.reverted"]
    assert len(lines) == 1 and lines[0].fields["field"] == "spec.http[0].route[*].weight", lines
    assert "/spec/http/0/route/1/weight" in lines[0].fields["remedy"]
    assert rl.RolloutState.from_json(s2.to_json()).reverts == 2 and '"reverts"' not in state.to_json()


def test_pending_moves_only_once_the_gate_ran() -> None:
    pending = _running(rl.PENDING, STABLE_ONLY)
    assert decide(POLICY, pending, Observation(status=_status(STABLE_ONLY)), NOW) == []
    begun = decide(POLICY, pending, Observation(gate_ran=True), NOW)
    assert begun[-1][0].phase == rl.PROGRESSING and begun[-1][0].weights == Weights(90, 10)
    refused = decide(POLICY, pending, Observation(gate_ran=True, gate_failed="schema differs"), NOW)
    assert refused[-1][0].phase == rl.ROLLED_BACK and refused[-1][0].weights == STABLE_ONLY
    assert _events(refused)[0] == "gate.failed" and "schema differs" in refused[-1][0].reason


def test_a_failed_probe_rolls_back_before_any_look_is_judged() -> None:
    steps = decide(POLICY, _running(), Observation(probe_failed="not ready (3 probes in a row)",
                                                   look=_look(Outcome.PASS)), NOW)
    assert [s.phase for s, _ in steps] == [rl.ROLLED_BACK]
    assert ("gate.failed" in _events(steps)) and steps[0][0].reason.startswith("gate: not ready")


def test_promoting_is_finished_whatever_else_was_seen() -> None:
    promoting = _running(rl.PROMOTING, Weights(0, 100))
    steps = decide(POLICY, promoting, Observation(status=_status(Weights(0, 100), stable="v2")), NOW)
    assert steps[-1][0].phase == rl.PROMOTED and steps[-1][0].weights == STABLE_ONLY


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_look_is_recorded_with_one_weights_write(outcome: Outcome) -> None:
    steps = decide(POLICY, _running(), Observation(look=_look(outcome)), NOW)
    assert len(steps) == 1
    new, actions = steps[0]
    assert new.step_looks == 1 and sum(isinstance(a, rl.SetWeights) for a in actions) == 1


def test_decide_is_pure() -> None:
    state, seen = _running(), Observation(status=_status(Weights(0, 100)), look=_look(Outcome.FAIL))
    assert decide(POLICY, state, seen, NOW) == decide(POLICY, state, seen, NOW)
    assert state == _running()


# ---- the preflight's bucket-layout warning ---------------------------------------------

def test_a_layout_that_cannot_show_the_limit_is_logged_as_a_warning() -> None:
    from canary.metrics.base import PreflightReport

    class _Coarse:
        def preflight(self, policy: object, target: object) -> PreflightReport:
            return PreflightReport(url="http://p", window_s=60, sent=1, elapsed_s=0.0, queries=(),
                                   unresolvable=("checks[0] 'lat': stable p95 in (100, 250] ms, ...",))

    with structlog.testing.capture_logs() as logs:
        preflight_metrics(_Coarse(), POLICY, TARGET, log=get())
    warned = [e for e in logs if e["event"] == "metrics.buckets_too_coarse"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning" and "(100, 250]" in warned[0]["detail"]


@pytest.mark.parametrize(("bounds", "cum", "tol", "problem"), [
    ((100.0, 250.0, math.inf), (60.0, 99.0, 100.0), 0.2, "a bucket 2.5x wide"),
    ((100.0, 250.0, math.inf), (60.0, 90.0, 100.0), 0.2, "the open +Inf bucket"),
    ((100.0, 250.0, math.inf), (99.0, 100.0, 100.0), 0.2, "the first bucket"),
    ((100.0, 105.0, 110.25, math.inf), (10.0, 99.0, 100.0, 100.0), 0.2, ""),
    ((100.0, 115.0, math.inf), (10.0, 99.0, 100.0), 0.1, "a bucket 1.15x wide"),
    ((100.0, 250.0, math.inf), (0.0, 0.0, 0.0), 0.2, ""),  # no stable data: nothing to say
])
def test_layout_problem(bounds: tuple[float, ...], cum: tuple[float, ...], tol: float, problem: str) -> None:
    import numpy as np

    from canary.analysis.evidence import layout_problem

    got = layout_problem(np.array(bounds), np.array(cum), q=0.95, tol=tol)
    assert (problem in got) if problem else got == ""


def test_a_verdicts_reason_names_checks_with_the_same_cause_together_without_their_queries() -> None:
    """Five checks Prometheus could not answer made one reason of ~2,000 characters, each with its query:
    on-call reads it in one log line. One cause, the checks it hit, no queries (they are in the evidence).
    The reasons as the judge words them (`could not measure: check 'X': ...`; decision 115 took out the class name)."""
    url = "http://prometheus:9090"

    def down(check: str) -> CheckResult:
        return CheckResult(check=check, kind="latency", outcome=Outcome.ERROR,
                           reason=f"could not measure: check '{check}': Prometheus at {url} "
                                  "could not be asked for the stable arm "
                                  f"(connection failed); query: sum by (le) (increase(x_bucket{{c=\"{check}\"}}[300s]))")

    v = Verdict.combine([down("latency-p95"), down("errors"), down("predictions"),
                 CheckResult(check="missing", kind="feature_missing", outcome=Outcome.ERROR, reason="no series")])
    assert v.reason() == (f"latency-p95, errors, predictions: could not measure: Prometheus at "
                          f"{url} could not be asked for the stable arm (connection failed); missing: no series")
    one = Verdict.combine([down("latency-p95")])
    assert "query: sum by" in one.reason(), "a single check keeps its whole reason"


# ---- the lines logged before a decision's write say what is routed now ---------------------

def _logged(steps: list[tuple[rl.RolloutState, list[rl.Action]]], router: object) -> list[dict[str, object]]:
    from canary.reconcile import execute

    with structlog.testing.capture_logs() as logs:
        for new, actions in steps:
            execute(router, TARGET, new, actions, log=get())  # type: ignore[arg-type]
    return logs


@pytest.mark.parametrize(("state", "seen", "event", "routed", "target"), [
    (_running(rl.PENDING, STABLE_ONLY), Observation(gate_ran=True, gate_failed="schema differs"),
     "gate.failed", ("pending", "100/0"), ("rolled_back", "100/0")),
    (_running(), Observation(probe_failed="not ready (2 probes in a row)"),
     "gate.failed", ("progressing", "90/10"), ("rolled_back", "100/0")),
    (_running(), Observation(status=_status(stable="v9")),
     "subset.foreign_edit", ("progressing", "90/10"), ("aborted", "100/0")),
    (_running(), Observation(status=_status(Weights(50, 50)), on_foreign_edit="abort"),
     "weights.foreign_edit", ("progressing", "50/50"), ("rolled_back", "100/0")),
    (_running(), Observation(status=_status(Weights(50, 50))),
     "weights.foreign_edit", ("progressing", "50/50"), ("progressing", "90/10")),
])
def test_a_line_logged_before_the_decisions_write_names_both_what_is_routed_and_the_decision(
        state: rl.RolloutState, seen: Observation, event: str, routed: tuple[str, str],
        target: tuple[str, str]) -> None:
    # docs/reference/events.md: every line carries `phase` and `weights` as recorded and routed at that moment; a
    # line logged before the write names the decision target_phase/target_weights. gate.failed and the
    # *.foreign_edit lines carried the target only: on-call read a probe failure with no word of the 90/10 split
    from tests.fakes import FakeRouter

    router = FakeRouter(weights=Weights(*map(int, routed[1].split("/"))), subsets={"stable": "v1", "canary": "v2"})
    line = next(e for e in _logged(decide(POLICY, state, seen, NOW), router) if e["event"] == event)
    assert (line["phase"], line["weights"]) == routed
    assert (line["target_phase"], line["target_weights"]) == target


def test_a_gates_rollback_line_says_it_all_in_its_reason_and_has_no_evidence() -> None:
    # docs/reference/events.md: `evidence` only when a check decided; a gate's rollback names the gate in `reason`
    from tests.fakes import FakeRouter

    router = FakeRouter(weights=Weights(90, 10), subsets={"stable": "v1", "canary": "v2"})
    steps = decide(POLICY, _running(), Observation(probe_failed="canary Triton not ready (2 probes in a row)"), NOW)
    done = next(e for e in _logged(steps, router) if e["event"] == "rollback.completed")
    assert done["reason"].startswith("gate: canary Triton not ready") and "evidence" not in done
    assert (done["weights"], done["from_weights"]) == ("100/0", "90/10")


@pytest.mark.parametrize("conflict", [False, True])
def test_a_promotions_failed_last_write_is_not_a_failed_rollback(conflict: bool) -> None:
    """The controller writes a promotion's end with `execute` as it is: a failed 100/0 on the new
    version was logged as the critical `rollback.failed` ("act by hand"), though the canary already
    served all traffic. It is `promotion.write_failed` (or `promotion.write_conflict`), a warning."""
    from canary.errors import KubeUnavailable, RoutingConflict
    from canary.reconcile import execute
    from tests.fakes import FakeRouter

    router = FakeRouter()
    router.weights, router.subsets = Weights(0, 100), {"stable": "v1", "canary": "v2"}
    promoting = _running(rl.PROMOTING, Weights(0, 100))
    router.state = promoting.to_json()
    new, actions = rl.finish_promotion(promoting, 1000.0)
    real = router.set_weights

    def fail(target, weights, **kw):  # type: ignore[no-untyped-def]
        if weights == STABLE_ONLY:
            raise RoutingConflict("409: another writer") if conflict else KubeUnavailable("503")
        return real(target, weights, **kw)

    router.set_weights = fail
    with structlog.testing.capture_logs() as logs, pytest.raises((KubeUnavailable, RoutingConflict)):
        execute(router, TARGET, new, actions, log=get(), expect=promoting.to_json())
    events = {e["event"]: e for e in logs}
    assert ("promotion.write_conflict" if conflict else "promotion.write_failed") in events
    assert not [e for e in logs if e["event"].startswith("rollback.") or e["log_level"] == "critical"]


@pytest.mark.parametrize("phase", [rl.PENDING, rl.PROGRESSING, rl.PAUSED])
def test_a_split_on_another_virtual_service_rolls_back_as_a_foreign_edit_and_no_look_is_judged(phase: str) -> None:
    """Decision 602: whatever `on_foreign_edit` says (another object's route is never written back), a rollout in
    any phase but promoting ends rolled back, its first line naming that VirtualService, route and split."""
    from canary.routing.claims import OtherSplit

    other = OtherSplit(virtual_service="ml/m-gateway", route="spec.http[0] (edge)", weights="90/10",
                       words="ml/m-gateway: spec.http[0] (edge) splits its traffic 90/10", hint="kubectl ...")
    state = _running(phase, STABLE_ONLY if phase == rl.PENDING else Weights(90, 10))
    steps = decide(POLICY, state, Observation(status=_status(state.weights), split_elsewhere=other,
                                              look=_look(Outcome.PASS)), NOW)
    assert [s.phase for s, _ in steps] == [rl.ROLLED_BACK]
    assert rl.classify_reason(steps[0][0].reason) == "foreign_edit", steps[0][0].reason  # an old record's words
    assert steps[0][0].end_cause == "foreign_edit"  # the class recorded with the end (decision 607)
    said = steps[0][1][0]
    assert said.event == "split.foreign_edit" and said.fields["other_virtual_service"] == "ml/m-gateway"
    promoting = _running(rl.PROMOTING, Weights(0, 100))  # the canary judged: its promotion is finished
    assert [s.phase for s, _ in decide(POLICY, promoting, Observation(split_elsewhere=other), NOW)] == [rl.PROMOTED]


@pytest.mark.parametrize("answers", [{"err": 0, "lat": 0}, {"lat": 0}])
def test_no_stable_data_names_the_identity_labels_the_policy_sets(answers: dict[str, int]) -> None:
    """`metrics.namespace_label: namespace` where the scrape adds `kubernetes_namespace` (or none) matches no series:
    the refusal named only metrics.labels, "none", never the field that matched nothing (decision 745 addendum)."""
    policy = parse_policy({**POLICY.model_dump(mode="json", exclude={"checks", "metrics"}),
                           "metrics": {"source": "model", "namespace_label": "namespace"}, "checks": [
                               {"name": "err", "kind": "error_rate", "max_rate_pct": 1},
                               {"name": "lat", "kind": "latency", "max_increase_pct": 20}]})
    with pytest.raises(ConfigError) as err:
        preflight_metrics(_Metrics(**answers), policy, TARGET, log=get())
    said = str(err.value)
    assert "policy metrics.labels (none), metrics.namespace_label ('namespace')" in said, said
    assert "metrics.model_label" not in said and "metrics.arm_label" not in said  # not set: the source's own

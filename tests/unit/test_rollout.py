"""The pure state machine: table of situations -> next phase, weights and actions."""

from __future__ import annotations

from typing import Any

import pytest

from canary import rollout as rl
from canary.model import STABLE_ONLY, CheckResult, Verdict, Outcome, Weights
from canary.policy import parse_policy

POLICY = parse_policy({
    "steps": [10, 50, 100],
    "analysis": {"interval": "10s", "look_every": "2s", "min_canary_requests": 50},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "20s"},
    "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20},
               {"name": "err", "kind": "error_rate", "max_rate_pct": 10, "hard": True}],
})


def verdict(outcome: Outcome, *, hard: bool = False, check: str = "lat", unavailable: bool = False) -> Verdict:
    return Verdict.combine([CheckResult(check=check, kind="latency", outcome=outcome, reason=f"{outcome.label} reason",
                                          stable_value=100.0, canary_value=150.0, hard=hard,
                                          extra={"unavailable": True} if unavailable else {})])


def started(now: float = 0.0) -> rl.RolloutState:
    s, actions = rl.new_rollout(model="m", stable_version="v1", canary_version="v2", now=now)
    assert s.phase == rl.PENDING and s.weights == STABLE_ONLY
    # the canary subset is pointed while it has no traffic, after the claim
    assert [type(a) for a in actions[:2]] == [rl.SetWeights, rl.PointSubset]
    s, actions = rl.transition(s, rl.Begin(now), POLICY)
    assert s.phase == rl.PROGRESSING and s.weights == Weights(90, 10) and s.step == 0
    # re-pointed before the first traffic, in case a crash fell between claim and pointing
    assert actions[0] == rl.PointSubset("canary", "v2") and actions[1] == rl.SetWeights(Weights(90, 10))
    return s


def look(s: rl.RolloutState, now: float, outcome: Outcome, n: float | None = None,
         **kw: object) -> tuple[rl.RolloutState, list]:
    """One look; by default the canary count grows with time (each look sees new requests)."""
    n = 100 + 10 * now if n is None else n
    return rl.transition(s, rl.Looked(now, verdict(outcome, **kw), n), POLICY)


def names(actions: list) -> list[str]:
    return [a.event for a in actions if isinstance(a, rl.Emit)]


def test_pass_before_interval_holds_the_step() -> None:
    s, _ = look(started(), 2, Outcome.PASS)
    assert s.step == 0 and s.look == 1 and s.step_looks == 1


def test_pass_after_interval_advances_and_writes_weights() -> None:
    s, actions = look(started(), 10, Outcome.PASS)
    assert s.step == 1 and s.weights == Weights(50, 50) and s.step_started_at == 10
    assert rl.SetWeights(Weights(50, 50)) in actions and "step.advanced" in names(actions)


def test_pass_with_too_few_canary_requests_does_not_advance() -> None:
    s, _ = look(started(), 12, Outcome.PASS, n=49)
    assert s.step == 0


def test_last_step_pass_goes_through_promoting_then_promoted() -> None:
    s = started()
    s, _ = look(s, 10, Outcome.PASS)
    assert s.phase == rl.PROGRESSING and s.weights == Weights(50, 50)
    s, _ = look(s, 20, Outcome.PASS)  # passing the step before 100 promotes: 100% is not judged
    assert s.phase == rl.PROMOTING and s.weights == Weights(0, 100) and s.step == 2
    s, actions = rl.finish_promotion(s, 31)
    assert s.phase == rl.PROMOTED and s.weights == STABLE_ONLY
    # stable subset re-pointed BEFORE traffic returns to it, and again after PROMOTED is recorded (guarded on
    # it, superseding): a rollback decided on PROMOTING may have pointed it back meanwhile
    kinds = [a for a in actions if not isinstance(a, rl.Emit)]
    assert kinds == [rl.PointSubset("stable", "v2", guarded=True, undo_version="v1"), rl.SetWeights(STABLE_ONLY),
                     rl.PointSubset("stable", "v2", guarded=True, undo_version="v1", supersede=True)]
    # one line says what now serves all traffic: its 100/0 alone read as a rollback
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollout.promoted"]
    assert len(done) == 1 and done[0].fields["serving_version"] == "v2", done


def test_one_fail_is_counted_two_consecutive_roll_back() -> None:
    s, actions = look(started(), 2, Outcome.FAIL)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1 and "check.failed" in names(actions)
    s, actions = look(s, 4, Outcome.FAIL)
    assert s.phase == rl.ROLLED_BACK and s.weights == STABLE_ONLY
    ev = names(actions)
    assert ev.index("rollback.started") < ev.index("rollback.completed")
    # traffic moves between the two events, and the evidence travels with them
    i = actions.index(rl.SetWeights(STABLE_ONLY))
    assert names(actions[:i])[-1] == "rollback.started"
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"][0]
    assert done.fields["evidence"][0]["canary_value"] == 150.0 and "fail reason" in done.fields["reason"]


def test_a_pass_resets_the_failure_count() -> None:
    s, _ = look(started(), 2, Outcome.FAIL)
    s, _ = look(s, 4, Outcome.PASS)
    s, _ = look(s, 6, Outcome.FAIL)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1


def two_checks(err: Outcome, *, unavailable: bool) -> Verdict:
    """A look of a canary whose error rate is beyond its limit: latency within it, the error rate failing
    or, when its query timed out, not measured (ERROR)."""
    return Verdict.combine([
        CheckResult(check="lat", kind="latency", outcome=Outcome.PASS, reason="within", stable_value=100.0,
                    canary_value=101.0),
        CheckResult(check="err", kind="error_rate", outcome=err, reason=f"{err.label} reason", stable_value=0.01,
                    canary_value=float("nan") if err is Outcome.ERROR else 0.1,
                    extra={"unavailable": True} if unavailable else {})])


@pytest.mark.parametrize("unavailable", [True, False])  # its query timed out; Prometheus answered without its series
def test_a_look_that_could_not_measure_neither_adds_a_failed_look_nor_ends_the_run(unavailable: bool) -> None:
    """Decision 166: a bad canary whose error-rate query timed out every other look (a loaded Prometheus)
    was 'failed look 1 of 2' at every failed look: the unmeasured look between reset the run, and the canary
    stayed on traffic to the step's deadline. A look that could not measure some check (ERROR) now neither
    adds a failed look nor ends the run, as serve's `record_look` (decision 159 c); the count is in the
    recorded state, so a process that resumes from it in between counts on."""
    policy = POLICY.model_copy(update={"checks": [POLICY.checks[0], POLICY.checks[1].model_copy(update={"hard": False})]})
    s, actions = rl.transition(started(), rl.Looked(2, two_checks(Outcome.FAIL, unavailable=False), 120), policy)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1 and "check.failed" in names(actions)
    s, actions = rl.transition(s, rl.Looked(4, two_checks(Outcome.ERROR, unavailable=unavailable), 140), policy)
    assert s.last_verdict and s.last_verdict["outcome"] == "error"
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1, "an unmeasured look neither adds nor resets"
    assert "check.failed" not in names(actions)
    s = rl.RolloutState.from_json(s.to_json())  # a restarted promote, or another controller, resumes here
    assert s.failed_looks == 1
    s, actions = rl.transition(s, rl.Looked(6, two_checks(Outcome.FAIL, unavailable=False), 160), policy)
    assert s.phase == rl.ROLLED_BACK and s.weights == STABLE_ONLY, s.reason
    assert "deadline" not in s.reason and s.reason.startswith("err: "), s.reason
    failed = [a.fields for a in actions if isinstance(a, rl.Emit) and a.event == "check.failed"]
    assert [f["failed_looks"] for f in failed] == [2]
    # a measured look within the limits still ends the run
    s, _ = rl.transition(started(), rl.Looked(2, two_checks(Outcome.FAIL, unavailable=False), 120), policy)
    s, _ = rl.transition(s, rl.Looked(4, two_checks(Outcome.ERROR, unavailable=unavailable), 140), policy)
    s, _ = rl.transition(s, rl.Looked(6, two_checks(Outcome.INCONCLUSIVE, unavailable=False), 160), policy)
    assert s.failed_looks == 0
    s, _ = rl.transition(s, rl.Looked(8, two_checks(Outcome.FAIL, unavailable=False), 180), policy)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1


def test_an_unmeasured_look_never_carries_a_failed_look_past_a_step_advance_or_a_resume() -> None:
    """Decision 167, the control for 166: the run an ERROR look keeps alive is the step window's own. A failed
    look at step 1, then an unmeasured one, then a pass that advances: step 2's first failed look is 1 of 2,
    never a run of 2. Likewise a pause and resume between them (the step starts over)."""
    policy = POLICY.model_copy(update={"checks": [POLICY.checks[0], POLICY.checks[1].model_copy(update={"hard": False})]})
    s, _ = rl.transition(started(), rl.Looked(2, two_checks(Outcome.FAIL, unavailable=False), 120), policy)
    s, _ = rl.transition(s, rl.Looked(4, two_checks(Outcome.ERROR, unavailable=True), 140), policy)
    assert s.failed_looks == 1
    s, _ = rl.transition(s, rl.Looked(10, two_checks(Outcome.PASS, unavailable=False), 200), policy)
    assert s.step == 1 and s.failed_looks == 0
    s, _ = rl.transition(s, rl.Looked(12, two_checks(Outcome.FAIL, unavailable=False), 220), policy)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1, s.reason
    s, _ = rl.transition(s, rl.Looked(14, two_checks(Outcome.ERROR, unavailable=True), 240), policy)
    s, _ = rl.transition(s, rl.Pause(15, "operator: hold"), policy)
    s, _ = rl.transition(rl.RolloutState.from_json(s.to_json()), rl.Resume(16), policy)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 0
    s, _ = rl.transition(s, rl.Looked(18, two_checks(Outcome.FAIL, unavailable=False), 260), policy)
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1, s.reason


def test_hard_breach_rolls_back_at_first_look() -> None:
    s, actions = look(started(), 2, Outcome.FAIL, hard=True, check="err")
    assert s.phase == rl.ROLLED_BACK and "err" in s.reason
    # its check.failed is logged as any failed check's (it was not: alerts keyed on it missed the worst)
    failed = [a.fields for a in actions if isinstance(a, rl.Emit) and a.event == "check.failed"]
    assert len(failed) == 1 and failed[0]["check"] == "err" and failed[0]["hard"] is True, failed
    events = [a.event for a in actions if isinstance(a, rl.Emit)]
    assert events.index("look.completed") < events.index("check.failed") < events.index("rollback.started"), events


@pytest.mark.parametrize("outcome,unavailable,phase", [
    (Outcome.INCONCLUSIVE, False, rl.ROLLED_BACK),
    (Outcome.ERROR, False, rl.ROLLED_BACK),  # Prometheus answered, the canary series never came: exit 1
    (Outcome.ERROR, True, rl.ABORTED),  # Prometheus could not be asked: exit 3
])
def test_no_verdict_waits_until_the_deadline_never_promotes(outcome: Outcome, unavailable: bool, phase: str) -> None:
    s = started()
    for t in range(2, 30, 2):  # interval 10 + deadline 20 = 30
        s, _ = look(s, t, outcome, unavailable=unavailable)
        assert s.phase == rl.PROGRESSING and s.step == 0
    s, _ = look(s, 30, outcome, unavailable=unavailable)
    assert s.phase == phase and s.weights == STABLE_ONLY and "no verdict" in s.reason


def test_hold_on_deadline_pauses_instead() -> None:
    policy = POLICY.model_copy(update={"failure": POLICY.failure.model_copy(update={"on_deadline": "hold"})})
    s = started()
    s, _ = rl.transition(s, rl.Looked(31, verdict(Outcome.INCONCLUSIVE), 100), policy)
    assert s.phase == rl.PAUSED and s.weights == Weights(90, 10)


@pytest.mark.parametrize("outcome,unavailable,phase", [
    (Outcome.ERROR, True, rl.PAUSED),  # could not ask Prometheus: held, weights kept
    (Outcome.INCONCLUSIVE, False, rl.ROLLED_BACK),  # measured, no verdict: the policy's on_deadline (rollback)
    (Outcome.ERROR, False, rl.ROLLED_BACK),  # Prometheus answered without the canary's series: the policy's too
])
def test_hold_unreachable_holds_only_a_step_prometheus_could_not_answer(outcome: Outcome, unavailable: bool,
                                                                       phase: str) -> None:
    """A CanaryRollout's `onPrometheusOutage: hold` (decision 139): it held every step without a verdict."""
    s, _ = rl.transition(started(), rl.Looked(31, verdict(outcome, unavailable=unavailable), 100,
                                              hold_unreachable=True), POLICY)
    assert s.phase == phase and s.weights == (Weights(90, 10) if phase == rl.PAUSED else STABLE_ONLY), s.reason


def test_gate_failure_and_abort_end_at_stable() -> None:
    s, _ = rl.transition(started(), rl.GateFailed(3, "canary not ready"), POLICY)
    assert s.phase == rl.ROLLED_BACK and s.weights == STABLE_ONLY and "gate" in s.reason
    s, _ = rl.transition(started(), rl.Rollback(3, "interrupted", aborted=True), POLICY)
    assert s.phase == rl.ABORTED and s.weights == STABLE_ONLY


def test_pause_holds_weights_and_resume_restarts_the_step() -> None:
    s, _ = look(started(), 2, Outcome.FAIL)
    s, actions = rl.transition(s, rl.Pause(5), POLICY)
    assert s.phase == rl.PAUSED and s.weights == Weights(90, 10) and rl.SetWeights(Weights(90, 10)) in actions
    assert look(s, 50, Outcome.PASS)[0] is s  # looks are ignored while paused
    s, _ = rl.transition(s, rl.Resume(100), POLICY)
    assert s.phase == rl.PROGRESSING and s.step_started_at == 100 and s.failed_looks == 0
    # the history (`canary status`, the record) holds the pause and the resume as phase changes
    assert [h["what"] for h in s.history[-2:]] == ["paused: paused by operator", "resumed: the step starts over"]
    assert [h["phase"] for h in s.history[-2:]] == [rl.PAUSED, rl.PROGRESSING]


def test_a_look_that_passes_a_step_is_logged_at_the_step_it_judged() -> None:
    """Its `look.completed` carries the weights and the step it judged, not the next step's (the log said
    `weights 90/10, step 2` and then `step.advanced 75/25 step 2`)."""
    s = started()
    for t in range(1, 200):
        s2, actions = look(s, t, Outcome.PASS)
        if s2.step != s.step:
            done = next(a for a in actions if isinstance(a, rl.Emit) and a.event == "look.completed")
            assert done.fields["step"] == s.step + 1 and done.fields["weights"] == str(s.weights), done.fields
            return
        s = s2
    pytest.fail("never advanced")


def test_terminal_states_ignore_everything() -> None:
    s, _ = rl.transition(started(), rl.Rollback(1, "x"), POLICY)
    for ev in (rl.Begin(2), rl.Resume(2), rl.Pause(2), rl.GateFailed(2, "x"), rl.Looked(2, verdict(Outcome.FAIL), 1)):
        assert rl.transition(s, ev, POLICY) == (s, [])


def test_state_round_trips_through_json() -> None:
    s, _ = look(started(), 2, Outcome.FAIL)
    back = rl.RolloutState.from_json(s.to_json())
    assert back == s
    assert rl.RolloutState.from_json(s.to_json().replace('"look"', '"look_from_future":1,"look"')) == s


def test_unknown_phase_is_rejected() -> None:
    with pytest.raises(ValueError, match="phase"):
        rl.RolloutState(model="m", stable_version="a", canary_version="b", phase="nope", weights=STABLE_ONLY)


def test_a_look_over_the_same_canary_requests_adds_no_failure_even_after_a_restart() -> None:
    s, _ = look(started(), 2, Outcome.FAIL, n=300)
    assert s.failed_looks == 1 and s.last_look_requests == 300
    s = rl.RolloutState.from_json(s.to_json())  # a new process resumes from the recorded state
    s, _ = look(s, 4, Outcome.FAIL, n=300)
    # same data: inconclusive, not a 2nd failure -- and not a reset of the first either
    assert s.phase == rl.PROGRESSING and s.failed_looks == 1
    s, _ = look(s, 6, Outcome.FAIL, n=400)
    assert s.phase == rl.ROLLED_BACK


def test_a_hard_breach_on_the_same_data_still_rolls_back() -> None:
    s, _ = look(started(), 2, Outcome.PASS, n=300)
    s, _ = look(s, 4, Outcome.FAIL, n=300, hard=True, check="err")
    assert s.phase == rl.ROLLED_BACK


def test_rollback_during_promoting_points_stable_back_before_traffic_returns() -> None:
    s = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                        weights=Weights(0, 100), step=2)
    s, actions = rl.transition(s, rl.Rollback(5, "operator"), POLICY)
    writes = [a for a in actions if not isinstance(a, rl.Emit)]
    # the first pointing is guarded like a promotion's (undone back to v2 should PROMOTED be recorded meanwhile)
    assert writes == [rl.PointSubset("stable", "v1", guarded=True, undo_version="v2"), rl.SetWeights(STABLE_ONLY),
                      rl.PointSubset("stable", "v1", supersede=True)]


def test_every_rollback_verifies_the_stable_subset_after_the_weights() -> None:
    s, actions = look(started(), 2, Outcome.FAIL, hard=True, check="err")
    writes = [a for a in actions if not isinstance(a, rl.Emit)]
    assert writes == [rl.SetWeights(STABLE_ONLY), rl.PointSubset("stable", "v1")]


@pytest.mark.parametrize("field,value", [
    ("weights", {"stable": 1, "canary": 1}), ("step", "1"), ("step", True), ("started_at", float("inf")),
    ("phase", "exploded"), ("model", 3), ("history", "x"), ("last_verdict", [1]), ("look", -5),
    ("evidence", {"lat/relative": [1.0]}), ("evidence", {"lat/relative": [1.0, -2.0]}), ("window_evidence", "x"),
    ("window_evidence", {"lat/relative": [None, 2.0]}), ("step_window", -3), ("pass_anchor_requests", "5"),
    ("pass_anchor_requests", float("nan")), ("pass_anchor_requests", 0), ("pass_anchor_requests", -5),
    ("window_to", "12"), ("window_to", float("inf")), ("window_to", True), ("window_from", "12"),
    ("window_from", float("nan")),
])
def test_a_recorded_state_of_the_wrong_shape_is_refused_naming_the_field(field: str, value: object) -> None:
    import json

    d = json.loads(started().to_json())
    d[field] = value
    with pytest.raises(ValueError, match=field):
        rl.RolloutState.from_json(json.dumps(d))


def test_a_step_passes_only_when_the_judged_window_covers_the_interval() -> None:
    s = started()
    # the step is 12 s old, but the data judged cover 4 s (a restarted process's first snapshot)
    s, actions = rl.transition(s, rl.Looked(12, verdict(Outcome.PASS), 500, window_s=4.0), POLICY)
    assert s.step == 0 and "look.window_short" in names(actions)
    s, _ = rl.transition(s, rl.Looked(18, verdict(Outcome.PASS), 900, window_s=10.0), POLICY)
    assert s.step == 1


def test_short_windows_still_end_at_the_deadline_never_in_a_promotion() -> None:
    s = started()
    for t in range(2, 30, 2):
        s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.PASS), 100 + 10 * t, window_s=3.0), POLICY)
        assert s.phase == rl.PROGRESSING and s.step == 0
    s, _ = rl.transition(s, rl.Looked(30, verdict(Outcome.PASS), 500, window_s=3.0), POLICY)
    assert s.phase == rl.ROLLED_BACK and "no verdict" in s.reason
    # the end says why a look that read "pass" was no verdict: its data's seconds (decision 574)
    assert "the data judged cover 3s of the step's 30s, under the 10s interval" in s.reason, s.reason


def test_a_short_window_says_why_it_can_be_short() -> None:
    """`look.window_short` names what shortens the data of a step old enough (decision 574): a Prometheus restarted
    without its storage holds only what it scraped since, and `promote` judges no more than it holds."""
    _, actions = rl.transition(started(), rl.Looked(12, verdict(Outcome.PASS), 500, window_s=4.0), POLICY)
    (short,) = [a for a in actions if isinstance(a, rl.Emit) and a.event == "look.window_short"]
    assert short.fields["window_s"] == 4.0 and "restarted without its storage" in short.fields["reason"], short
    # nor only a restart: counters an exporter creates at their first request are held from it on (decision 574, review addendum)
    assert "first exported inside the step, no request before it" in short.fields["reason"], short


def test_a_pass_on_fewer_requests_than_an_earlier_look_cannot_overturn_it() -> None:
    s, _ = look(started(), 10, Outcome.FAIL, n=400)  # whole step measured: a failure
    s, actions = look(s, 11, Outcome.PASS, n=300)  # a shorter window says pass
    assert s.step == 0 and s.failed_looks == 1 and s.last_look_requests == 400
    assert s.last_verdict is not None and s.last_verdict["outcome"] == "inconclusive"


def _with_evidence(outcome: Outcome, s_w: float, i_w: float) -> Verdict:
    v = verdict(outcome)
    r = v.results[0]
    tests = [{"test": "relative", "s_window": s_w, "info_window": i_w}]
    return Verdict.combine([CheckResult(**{**r.__dict__, "extra": {"tests": tests}})])


def test_failure_evidence_is_pooled_over_windows_steps_and_resumes() -> None:
    """The open window's latest (S, I) is kept; it joins the rollout's evidence when the window closes
    (the step advances, or an operator resumes), and the pass level's window counts resumes."""
    s = started()
    s, _ = rl.transition(s, rl.Looked(2, _with_evidence(Outcome.INCONCLUSIVE, 1.0, 100.0), 120), POLICY)
    s, _ = rl.transition(s, rl.Looked(4, _with_evidence(Outcome.INCONCLUSIVE, 3.0, 200.0), 140), POLICY)
    assert s.window_evidence == {"lat/relative": (3.0, 200.0)} and s.evidence == {}
    s, _ = rl.transition(s, rl.Looked(10, _with_evidence(Outcome.PASS, 2.0, 500.0), 200), POLICY)
    assert s.step == 1 and s.evidence == {"lat/relative": (2.0, 500.0)} and s.window_evidence == {}
    s, _ = rl.transition(s, rl.Looked(12, _with_evidence(Outcome.INCONCLUSIVE, 4.0, 50.0), 220), POLICY)
    s, _ = rl.transition(s, rl.Pause(13), POLICY)
    s, _ = rl.transition(s, rl.Resume(20), POLICY)
    assert s.evidence == {"lat/relative": (6.0, 550.0)} and s.window_evidence == {} and s.step_window == 1
    assert s.prior() == {"lat/relative": (6.0, 550.0)}
    assert rl.RolloutState.from_json(s.to_json()) == s
    s, _ = rl.transition(s, rl.Looked(22, _with_evidence(Outcome.FAIL, 9.0, 60.0), 300), POLICY)
    assert s.failed_looks == 1 and s.window_evidence == {"lat/relative": (9.0, 60.0)}


def test_a_shorter_window_does_not_replace_the_open_windows_evidence() -> None:
    s = started()
    s, _ = rl.transition(s, rl.Looked(2, _with_evidence(Outcome.INCONCLUSIVE, 5.0, 300.0), 300), POLICY)
    s, _ = rl.transition(s, rl.Looked(4, _with_evidence(Outcome.INCONCLUSIVE, 1.0, 100.0), 100), POLICY)
    assert s.window_evidence == {"lat/relative": (5.0, 300.0)}


def test_data_measured_after_the_windows_earlier_looks_open_a_new_window_the_step_unchanged() -> None:
    """A controller without the step-start snapshot measures from its first snapshot: data that start
    at or after the end of what the open window's looks judged (`window_to`) are a new window, its
    own share of the level, the old window's evidence pooled, the step's start and deadline kept;
    data that start earlier (the same step-start snapshot, or an overlap) are the same window."""
    s = started()
    s, _ = rl.transition(s, rl.Looked(2, _with_evidence(Outcome.INCONCLUSIVE, 1.0, 100.0), 120, data_to=1002.0),
                         POLICY)
    s, _ = rl.transition(s, rl.Looked(4, _with_evidence(Outcome.FAIL, 3.0, 200.0), 140, data_to=1004.0), POLICY)
    assert s.window_to == 1004.0 and s.failed_looks == 1
    assert rl.window_for(s, 1000.0, 5) is s and rl.window_for(s, 1003.9, 5) is s  # the same window's data
    w = rl.window_for(s, 1004.0, 5)
    assert (w.step_window, w.evidence, w.window_evidence) == (1, {"lat/relative": (3.0, 200.0)}, {})
    assert (w.last_look_requests, w.pass_anchor_requests, w.window_to, w.window_from) == (-1.0, -1.0, None, 1004.0)
    # a step-start snapshot from before the new window's data reaches into the pooled evidence
    assert rl.reaches_back(w, 1003.9) and not rl.reaches_back(w, 1004.0) and not rl.reaches_back(s, 0.0)
    assert (w.step, w.step_started_at, w.failed_looks) == (s.step, s.step_started_at, 1)
    assert "window restarted" in w.history[-1]["what"]
    assert rl.RolloutState.from_json(w.to_json()) == w
    # the new window's first look is new data (fewer requests than the old window's are no reason to refuse it)
    w, _ = rl.transition(w, rl.Looked(6, _with_evidence(Outcome.INCONCLUSIVE, 0.5, 20.0), 30, data_to=1006.0), POLICY)
    assert w.window_evidence == {"lat/relative": (0.5, 20.0)} and w.last_look_requests == 30
    assert rl.window_for(w, 1004.0, 7) is w  # and it stays that window
    # nothing to restart: no look yet in the window, not progressing, looks that measure a range
    assert rl.window_for(started(), 5000.0, 1).step_window == 0
    paused, _ = rl.transition(s, rl.Pause(5), POLICY)
    assert rl.window_for(paused, 5000.0, 6) is paused
    ranged, _ = look(started(), 2, Outcome.INCONCLUSIVE)
    assert ranged.window_to is None and rl.window_for(ranged, 5000.0, 3) is ranged
    # a step advanced, or a resume: a window of its own from the start, no end recorded yet
    nxt, _ = rl.transition(s, rl.Looked(10, _with_evidence(Outcome.PASS, 2.0, 500.0), 200, data_to=1010.0), POLICY)
    assert nxt.step == 1 and nxt.window_to is None
    w_nxt, _ = rl.transition(w, rl.Looked(10, _with_evidence(Outcome.PASS, 2.0, 500.0), 200, data_to=1010.0), POLICY)
    assert w_nxt.step == 1 and w_nxt.window_from is None
    resumed, _ = rl.transition(rl.transition(w, rl.Pause(8), POLICY)[0], rl.Resume(9), POLICY)
    assert resumed.window_from is None and resumed.step_window == 2


def test_to_json_is_every_field_as_asdict_would_give_it_with_history_cut_to_20() -> None:
    """The shallow serialisation reads nested values in place; the recorded text must be what a
    deep copy (dataclasses.asdict) gives, so states written by older versions compare equal."""
    import dataclasses
    import json

    from canary.model import Weights

    s = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                        weights=Weights(90, 10), evidence={"lat/relative": (1.5, 200.0)},
                        window_evidence={"lat/relative": (0.5, 20.0)},
                        last_verdict={"outcome": "pass", "results": [{"check": "lat", "values": {"stable": 1.0}}]},
                        history=tuple({"at": i, "event": "x"} for i in range(30)))
    d = dataclasses.asdict(s)
    d["weights"] = {"stable": 90, "canary": 10}
    d["history"] = list(s.history)[-20:]
    d["schema"], d["writer"] = rl.SCHEMA, rl.WRITER  # who wrote it, in which record schema (decision 169)
    del d["reverts"]  # left out while 0 (decision 170): a record without reverts reads as before
    del d["job"]  # left out while "" (decision 387): a record of no CI job reads as before
    del d["job_key"]  # left out while "" (decision 454), as `job`
    del d["end_cause"]  # left out while "" (decision 607): a record without an end reads as before
    del d["promotion_held"]  # left out while "" (decision 977), as `end_cause`
    assert s.to_json() == json.dumps(d, sort_keys=True, separators=(",", ":"))
    back = rl.RolloutState.from_json(s.to_json())
    assert back.evidence == s.evidence and back.history == s.history[-20:] and back.weights == s.weights


def test_the_pass_anchor_is_the_first_look_that_could_pass_and_each_window_has_its_own() -> None:
    """The pass level of a look depends on its canary requests over the window's anchor: the first
    look covering the interval with min_canary_requests (docs/judge.md, "What a pass needs")."""
    s = started()
    assert s.pass_ratio(500) == 1.0, "no anchor yet: ratio 1"
    s, _ = look(s, 8, Outcome.INCONCLUSIVE, n=300)
    assert s.pass_anchor_requests == -1.0, "before the interval no look can pass"
    s, _ = look(s, 10, Outcome.INCONCLUSIVE, n=40)
    assert s.pass_anchor_requests == -1.0, "below min_canary_requests no look can pass"
    s, _ = look(s, 12, Outcome.INCONCLUSIVE, n=400)
    assert s.pass_anchor_requests == 400 and s.pass_ratio(1000) == 2.5 and s.pass_ratio(100) == 1.0
    s, _ = look(s, 14, Outcome.INCONCLUSIVE, n=800)
    assert s.pass_anchor_requests == 400, "set once per window"
    assert rl.RolloutState.from_json(s.to_json()) == s, "persisted: a resumed process keeps the anchor"
    paused, _ = rl.transition(s, rl.Pause(15), POLICY)
    resumed, _ = rl.transition(paused, rl.Resume(20), POLICY)
    assert resumed.pass_anchor_requests == -1.0, "a resume opens a new window"
    s, _ = look(s, 16, Outcome.PASS, n=900)
    assert s.step == 1 and s.pass_anchor_requests == -1.0, "a new step opens a new window"
    assert s.pass_ratio(float("nan")) == 1.0 and rl.RolloutState.from_json(s.to_json()).pass_ratio(5) == 1.0


def test_a_stale_look_does_not_set_the_anchor() -> None:
    s, _ = look(started(), 10, Outcome.INCONCLUSIVE, n=40)
    s, _ = look(s, 12, Outcome.INCONCLUSIVE, n=30)  # fewer requests than an earlier look: not this window's path
    assert s.pass_anchor_requests == -1.0


def test_the_anchor_is_fixed_by_traffic_not_by_the_data() -> None:
    """Review findings: the anchor must not depend on a look's outcome (a FAIL or a stale PASS at
    the first look that could pass still sets it), and a look on no canary request neither anchors
    nor passes (min_canary_requests may be 0)."""
    s, _ = look(started(), 10, Outcome.FAIL, n=300)  # first look that could pass: it failed (1 of 2)
    assert s.failed_looks == 1 and s.pass_anchor_requests == 300
    s, _ = look(started(), 8, Outcome.INCONCLUSIVE, n=300)
    s, _ = look(s, 10, Outcome.INCONCLUSIVE, n=300)  # the same requests after the interval (a slow scrape)
    assert s.pass_anchor_requests == 300, "a look on the same requests could pass, so it anchors"
    floorless = parse_policy({**RAW_FLOORLESS})
    s, _ = rl.transition(started(), rl.Looked(12, verdict(Outcome.PASS), 0.0), floorless)
    assert s.step == 0 and s.pass_anchor_requests == -1.0, "no canary request: no anchor and no pass"
    s, _ = rl.transition(s, rl.Looked(14, verdict(Outcome.PASS), 5.0), floorless)
    assert s.step == 1, "then the first look with requests anchors and may pass"


RAW_FLOORLESS = {"steps": [10, 50, 100], "analysis": {"interval": "10s", "look_every": "2s", "min_canary_requests": 0},
                 "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20}]}


@pytest.mark.parametrize("on_deadline", ["rollback", "hold"])
def test_a_canary_still_failing_at_the_steps_deadline_is_rolled_back_whatever_on_deadline_says(on_deadline: str) -> None:
    """Failed looks that never line up max_failed_looks in a row (fail, inconclusive, fail, ...) used to
    keep the canary on traffic to the deadline, then, with on_deadline: hold, hold it there for a
    person. A failed look at or past the step's deadline (interval + no_data_deadline = 30 s) rolls
    back: the data show the canary beyond its limit, which is no missing verdict to hold for."""
    policy = POLICY.model_copy(update={"failure": POLICY.failure.model_copy(update={"on_deadline": on_deadline})})
    s = started()
    for t in range(2, 30, 2):  # alternate: never two failed looks in a row
        s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.FAIL if t % 4 == 2 else Outcome.INCONCLUSIVE), 100 + t),
                             policy)
        assert s.phase == rl.PROGRESSING and s.failed_looks <= 1
    s, actions = rl.transition(s, rl.Looked(30, verdict(Outcome.FAIL), 130), policy)
    assert s.phase == rl.ROLLED_BACK and s.weights == STABLE_ONLY
    assert "still failing at the step's deadline (1 of 2 failed looks in a row)" in s.reason
    assert "FAIL reason" in s.reason or "fail reason" in s.reason


def test_more_failed_looks_than_a_step_can_hold_are_refused() -> None:
    """1,000 failed looks at one a second cannot fit a 5 s interval plus 8 s deadline: refused, naming
    the field and what fits (it kept a canary failing every look on traffic for 120 s and more)."""
    raw = {"steps": [20, 100], "analysis": {"interval": "5s", "look_every": "1s"},
           "failure": {"max_failed_looks": 1000, "no_data_deadline": "8s"},
           "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20}]}
    with pytest.raises(Exception, match=r"failure\.max_failed_looks.*deadline.*= 13s.*at most 13"):
        parse_policy(raw)
    assert parse_policy({**raw, "failure": {"max_failed_looks": 13, "no_data_deadline": "8s"}}).failure.max_failed_looks == 13


@pytest.mark.parametrize("n", [float("inf"), float("nan"), -5.0])
def test_a_look_with_an_impossible_request_count_cannot_pass_and_records_no_infinity(n: float) -> None:
    """+Inf requests (counters summed past the float range), NaN or a negative count are no count: the
    look cannot pass, and the record stays plain JSON that reads back."""
    s, _ = look(started(), 10, Outcome.PASS, n=n)
    assert s.step == 0 and s.last_look_requests == 0.0 and s.pass_anchor_requests == -1.0
    text = s.to_json()
    assert "Infinity" not in text and "NaN" not in text
    assert rl.RolloutState.from_json(text).last_look_requests == 0.0


def test_a_look_never_measures_before_its_window_started() -> None:
    """Looks are due look_every after the step (or a resume) started; one that comes sooner (a clock
    that moved) measures what its window holds, not look_every back into the window before it."""
    from canary.reconcile import look_window

    s = started(now=100.0)
    assert look_window(POLICY, s, 100.5) == 1 and look_window(POLICY, s, 103.2) == 4
    assert look_window(POLICY, s, 90.0) == 1  # a clock behind the record's start


def _session_reasons() -> list[tuple[str, str, str]]:
    """(what, reason, its class) for every end reason decisions 568-588 added or changed, built by their producers."""
    from canary.controller import ADMISSION_WORDS, BAD_REQUEST_WORDS
    from canary.errors import CanaryError, said
    from canary.routing import claims, istio, patch

    gateway = {"metadata": {"namespace": "ml", "name": "m0-gateway"}, "spec": {"http": [{"route": [
        {"destination": {"host": "m0", "subset": "stable"}, "weight": 90},
        {"destination": {"host": "m0", "subset": "canary"}, "weight": 10}]}]}}
    vs = {"metadata": {"namespace": "ml", "name": "m0"}, "spec": {"http": [{"name": "primary", "route": [
        {"destination": {"host": "m0", "subset": "stable", "port": {"number": 8000}}, "weight": 80},
        {"destination": {"host": "m0", "subset": "canary", "port": {"number": 8001}}, "weight": 20}]}]}}
    try:
        patch.locate_route(vs, "primary")
    except CanaryError as exc:
        ports = f"failed: {said(exc)}"
    what = "CanaryRollout ml/m0 status"
    s = started()
    for t in range(2, 32, 2):  # a look whose data are short of the interval (574) until the deadline
        s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.PASS), 100 + 10 * t, window_s=3.0), POLICY)
    short = s.reason
    s = started()
    for t in range(2, 32, 2):  # a look whose requests could not be counted (586's `held` refused)
        s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.PASS), 100 + 10 * t, uncounted="HTTP 422"), POLICY)
    uncounted = s.reason
    return [
        ("574: data short at the deadline", short, "deadline"),
        ("586: requests not counted at the deadline", uncounted, "deadline"),
        ("536 addendum: a 400 on the status write", "failed: " + BAD_REQUEST_WORDS.format(what=what, said="x"),
         "infrastructure"),
        ("583: an admission check denied the status write", "failed: " + ADMISSION_WORDS.format(
            what=what, status=403, by='ValidatingAdmissionPolicy "p"', said="x"), "infrastructure"),
        ("582: a check named foreign_calls", "foreign_calls: canary 4.1 vs stable 1.0", "check"),
        ("582: a check named kube-latency", "kube-latency: canary p95 900 ms", "check"),
        ("582: a check named interrupts", "interrupts: canary 3 vs stable 0", "check"),
        ("582: a check named gate-latency", "gate-latency: canary p95 900 ms", "check"),
        ("578 addendum: the route edited to two ports mid-rollout", ports, "foreign_edit"),
        ("570: another model's route given the rollout's route's name mid-rollout",
         "failed: " + istio.not_noted_words("ml/m0", "http[0] (primary)", "m1", "m0"), "foreign_edit"),
        ("602: another VirtualService split with the canary subset after the claim",
         claims.split_on_other(gateway, "m0.ml.svc.cluster.local").reason, "foreign_edit"),  # type: ignore[union-attr]
    ]


def _reshaped_routes() -> list[tuple[str, Exception]]:
    """The route-shape refusals a step meets on a route re-shaped by hand mid-rollout, raised by the router's own
    checks (`patch.locate_route`, `read_weights`, the step write's `not_noted` check): the older ones (two hosts,
    three destinations, the route deleted or renamed, weights not summing to 100) stayed "infrastructure" by their
    words after decision 590."""
    from canary.errors import CanaryError, TargetError
    from canary.routing import istio, patch

    def route(*dests: tuple[str, str, int], name: str = "primary") -> dict:
        return {"metadata": {"namespace": "ml", "name": "m0"}, "spec": {"http": [{"name": name, "route": [
            {"destination": {"host": h, "subset": sub, "port": {"number": port}}, "weight": 50}
            for h, sub, port in dests]}]}}

    shapes = [
        ("578 addendum: two ports", route(("m0", "stable", 8000), ("m0", "canary", 8001)), "primary"),
        ("two hosts", route(("m0", "stable", 8000), ("m1", "canary", 8000)), "primary"),
        ("three destinations", route(("m0", "stable", 8000), ("m0", "canary", 8000), ("m0", "x", 8000)), "primary"),
        ("the route deleted (renamed)", route(("m0", "stable", 8000), ("m0", "canary", 8000), name="other"),
         "primary"),
    ]
    out: list[tuple[str, Exception]] = []
    for what, vs, name in shapes:
        try:
            patch.locate_route(vs, name)
        except CanaryError as exc:
            out.append((what, exc))
    vs = route(("m0", "stable", 8000), ("m0", "canary", 8000))
    vs["spec"]["http"][0]["route"][0]["weight"] = 70
    try:
        patch.read_weights(vs, patch.locate_route(vs, "primary"))
    except CanaryError as exc:
        out.append(("weights not summing to 100", exc))
    out.append(("570: another model's route given its name", patch.reshaped(TargetError(
        istio.not_noted_words("ml/m0", "http[0] (primary)", "m1", "m0")))))
    # the DestinationRule whose subsets the rollout points, its canary subset removed by hand mid-rollout: the
    # step's read refuses it (`subset_versions`), and it was "infrastructure" (608's addendum)
    dr = {"metadata": {"namespace": "ml", "name": "m0"},
          "spec": {"host": "m0", "subsets": [{"name": "stable", "labels": {"version": "v1"}}]}}
    try:
        patch.subset_versions(dr, host="m0", host_namespace="ml")
    except CanaryError as exc:
        out.append(("the DestinationRule's canary subset removed", exc))
    assert len(out) == 7, out  # each shape refused
    return out


def _running() -> tuple[object, object, rl.RolloutState]:
    """A `canary promote` runner (tests.unit.test_runner's fakes) at its first step."""
    from tests.unit.test_runner import POLICY as RUNNER_POLICY, make

    ctl, router, _, clock = make()
    s, actions = rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=clock.now(),
                                owner="promote")
    s = ctl._apply(s, actions)
    s = ctl._apply(*rl.transition(s, rl.Begin(clock.now()), RUNNER_POLICY))
    ctl._current = s
    return ctl, router, s


def _ended_by_every_producer() -> list[tuple[str, rl.RolloutState, str]]:
    """(what, the end as its producer records it, its class) for every producer of an end: the state machine's
    judge and gate, `reconcile.decide`'s foreign edits, `unowned.ending`, promote's runner (its watch, its
    interrupt, its fail-safe over `reconcile.to_stable` with the failure's class), the controller's operator
    action and its end decided again, the sweep (decision 607)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from canary import reconcile, sweep, unowned
    from canary.controller import Controller, _decided_again
    from canary.controller import ADMISSION_WORDS
    from canary.errors import KubeUnavailable, NotFound, StatusRefused
    from canary.logs import get as get_log
    from canary.routing.base import RouteStatus
    from tests.fakes import FakeRouter
    from tests.unit.test_runner import TARGET

    out: list[tuple[str, rl.RolloutState, str]] = []
    for check in ("kube-latency", "gate", "operator", "foreign_calls"):  # 582, and its "left": a check named a word
        out.append((f"judge: a hard breach of {check}", _ended(check=check), "check"))
    for what, _, cls in _session_reasons()[:2]:  # 574, 586: the judge at the deadline
        s = started()
        for t in range(2, 32, 2):
            s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.PASS), 100 + 10 * t, window_s=3.0,
                                              uncounted="HTTP 422" if "586" in what else ""), POLICY)
        out.append((what, s, cls))
    s = started()
    for t in range(2, 32, 2):
        s, _ = rl.transition(s, rl.Looked(t, verdict(Outcome.ERROR, unavailable=True), 0), POLICY)
    out.append(("judge: Prometheus unreachable at the deadline", s, "infrastructure"))
    out.append(("gate failed", _ended(rl.GateFailed(2.0, "canary: not ready")), "gate"))
    s = started()
    status = RouteStatus(Weights(50, 50), None, "v1", "v2")
    for what, seen in (("decide: weights edited, on_foreign_edit abort", reconcile.Observation(
            status=status, on_foreign_edit="abort")), ("decide: the canary subset re-pointed", reconcile.Observation(
            status=RouteStatus(s.weights, None, "v1", "v9")))):
        (ended, _), *_ = reconcile.decide(POLICY, s, seen, 3.0)
        out.append((what, ended, "foreign_edit"))
    for _ in range(reconcile.REVERT_LIMIT - 1):
        s = rl.reverted(s, 2.0, Weights(100, 0))
    ended, _ = reconcile.reassert(POLICY, s, RouteStatus(STABLE_ONLY, None, "v1", "v2"), 3.0,
                                  edit=rl.Emit("weights.foreign_edit", {}), virtual_service="ml/m0")
    out.append(("decide: weights reverted REVERT_LIMIT times", ended, "foreign_edit"))
    out.append(("unowned: an end typed over a split", unowned.ending(
        started(), RouteStatus(Weights(90, 10), None, "v1", "v2"), model="m", now=3.0, reason="typed")[0],
        "foreign_edit"))
    # promote's runner
    ctl, router, s = _running()
    out.append(("promote: taken over", ctl._taken_over(s, replace(s, canary_version="v3", owner="x")),
                "foreign_edit"))
    ctl, router, s = _running()
    out.append(("promote: taken by a newer canary", ctl._taken_by_newer(s, "record schema 9"), "foreign_edit"))
    ctl, router, s = _running()
    out.append(("promote: interrupted", ctl._interrupted(s), "interrupted"))
    ctl, router, s = _running()
    router.state = None
    out.append(("promote: record removed", ctl._record_removed(s, router.inspect(TARGET)), "foreign_edit"))
    ctl, router, s = _running()
    other = replace(s, canary_version="v0")
    router.state = other.to_json()
    out.append(("promote: split unrecorded", ctl._split_unrecorded(s, router.inspect(TARGET), other),
                "foreign_edit"))
    ctl, router, s = _running()
    typed = replace(s, phase=rl.ROLLED_BACK)
    router.state = typed.to_json()
    out.append(("promote: an end typed over its split", ctl._end_typed(s, router.inspect(TARGET), typed),
                "foreign_edit"))
    # a failure mid-rollout (promote's fail-safe, the controller's `_failed`): its class from the error raised
    failures = [(f"failed: route re-shaped, {what}", exc, "foreign_edit") for what, exc in _reshaped_routes()]
    failures += [("failed: the API server unreachable", KubeUnavailable("ml/m0: timed out"), "infrastructure"),
                 ("failed: 583's admission denial", StatusRefused(ADMISSION_WORDS.format(
                     what="x", status=403, by='ValidatingAdmissionPolicy "p"', said="x"), request="the status write",
                     status=403), "infrastructure")]
    # its own VirtualService deleted (decision 666): a foreign edit; another's 404 stays a failure
    failures += [("failed: its VirtualService deleted", NotFound(
                      "ml/rec (virtualservices): not found (NotFound)", what="ml/rec (virtualservices)"), "foreign_edit"),
                 ("failed: another VirtualService's 404", NotFound(
                      "ml/rec-x (virtualservices): not found (NotFound)", what="ml/rec-x (virtualservices)"),
                  "infrastructure"),
                 # its own DestinationRule deleted alike (decision 681); another's 404 stays a failure
                 ("failed: its DestinationRule deleted", NotFound(
                      "ml/rec (destinationrules): not found (NotFound)", what="ml/rec (destinationrules)"),
                  "foreign_edit"),
                 ("failed: another DestinationRule's 404", NotFound(
                      "ml/rec-x (destinationrules): not found (NotFound)", what="ml/rec-x (destinationrules)"),
                  "infrastructure")]
    for what, exc, cls in failures:
        router = FakeRouter()
        end = reconcile.to_stable(router, TARGET, started(), reason=f"failed: {exc}", log=get_log(), now=3.0,
                                  cause=reconcile.failure_cause(exc, TARGET))
        out.append((what, end, cls))
    # the controller's
    event = Controller._operator_action(SimpleNamespace(action="rollback", action_reason="p99"), started(), 2.0,
                                        resume_used=False)
    out.append(("controller: spec.action rollback", _ended(event), "operator"))
    decided = replace(_ended(rl.Rollback(2.0, "failed: x", aborted=True, cause="foreign_edit")))
    out.append(("controller: an end decided again", _decided_again(decided, started(), 3.0)[0], "foreign_edit"))
    # the sweep's
    rec = started()
    for superseded, cls in ((False, "abandoned"), (True, "operator")):
        found = sweep.Found("ml", "m0", rec, rec.to_json(), "abandoned: gone", superseded=superseded)
        out.append((f"sweep: {cls}", rl.transition(rec, rl.Rollback(3.0, found.reason, aborted=True,
                                                                    cause=sweep.swept_cause(found)), POLICY)[0], cls))
    return out


def test_every_producer_of_an_end_records_its_class() -> None:
    """Every producer of an end records its class with it (`end_cause`, decision 607), read back by `-o json`, the
    report, `canary_rollbacks_total` and `rollback.completed`'s level: words put ends in the wrong class twice
    (582, 590). Among them the route-shape refusals mid-rollout decision 590 left "infrastructure" (two hosts, three
    destinations, a route deleted), now foreign edits, and ends whose words no rule classed ("other"): a split
    under another rollout's record, an end typed over the split."""
    ended = _ended_by_every_producer()
    got = {what: (s.end_cause, s.reason[:120]) for what, s, _ in ended}
    want = {what: cls for what, _, cls in ended}
    assert {w: c for w, (c, _) in got.items()} == want, got


def test_every_end_reason_this_session_added_is_classed_as_its_cause() -> None:
    """decisions 572/582's classes over the end reasons 570, 574, 578, 583, 586 and 536's addendum produce: a
    route re-shaped by hand mid-rollout (570, 578's two ports) was "infrastructure", "Prometheus or Kubernetes
    failed" in the report's headline and in `end_cause`, where 572 classes a route changed outside the rollout as
    a foreign edit (decision 590)."""
    reasons = _session_reasons()
    got = {what: (rl.classify_reason(reason), reason) for what, reason, _ in reasons}
    want = {what: cls for what, _, cls in reasons}
    assert {w: c for w, (c, _) in got.items()} == want, got


def _ended(event: rl.Event | None = None, *, check: str = "lat") -> rl.RolloutState:
    """A started rollout ended by `event`, or (None) by a hard breach of the check `check`."""
    s = started()
    if event is None:
        s, _ = rl.transition(s, rl.Looked(2.0, verdict(Outcome.FAIL, hard=True, check=check), 100), POLICY)
    else:
        s, _ = rl.transition(s, event, POLICY)
    assert s.terminal
    return s


@pytest.mark.parametrize("what, ended, cause", [
    # 582's "left": a check named exactly a class's word read as that class; its breach is a check's by the machine
    ("a check named gate", lambda: _ended(check="gate"), "check"),
    ("a check named operator", lambda: _ended(check="operator"), "check"),
    ("a check named unreachable", lambda: _ended(check="unreachable"), "check"),
    # a route re-shaped by hand, said as the router's refusal ("failed: ..."): its producer names the class
    ("a three-destination route mid-rollout", lambda: _ended(rl.Rollback(
        2.0, "failed: ml/m0: spec.http[0].route has 3 destinations, expected 2", aborted=True, cause="foreign_edit")),
     "foreign_edit"),
    ("a gate failed", lambda: _ended(rl.GateFailed(2.0, "canary: not ready")), "gate"),
])
def test_an_end_records_the_class_its_producer_decided(what: str, ended: Any, cause: str) -> None:
    """The end's class is decided where the end is and recorded with it (`end_cause`, decision 607): the record,
    its lines and `rl.cause_of` say it whatever the reason's words read as."""
    s = ended()
    assert s.end_cause == cause, what
    back = rl.RolloutState.from_json(s.to_json())
    assert back.end_cause == cause and rl.cause_of(back) == cause, what
    _, actions = rl.transition(started(), rl.Rollback(2.0, s.reason, aborted=s.phase == rl.ABORTED,
                                                      cause=s.end_cause), POLICY)
    lines = {a.event: a for a in actions if isinstance(a, rl.Emit)}
    done = lines.get("rollback.completed") or lines["rollout.aborted"]
    assert done.fields["end_cause"] == cause
    assert (done.log_level == "error") == (s.phase == rl.ROLLED_BACK and cause in rl.BAD_CANARY), what


def test_a_record_cut_to_fit_keeps_its_end_cause() -> None:
    """A record over its budget is cut (decisions 528, 563: the reason, the history, the verdict); the end's class,
    one short word, never is: a 70,000-character `--reason` or a record fit into little room keeps it."""
    import json

    s = _ended(rl.Rollback(2.0, "operator: " + "x" * 70_000, cause="operator"))
    whole = s.to_json()
    assert len(whole) <= rl.RECORD_MAX_BYTES and json.loads(whole)["end_cause"] == "operator"
    assert json.loads(rl.fit(whole, 2_000))["end_cause"] == "operator"


def test_a_record_written_before_the_end_cause_still_classes_by_its_words() -> None:
    """A record without `end_cause` (written before decision 607), or with one no class names (a hand edit),
    is classed by its reason's words, as every end was before."""
    import json

    s = _ended(rl.Rollback(2.0, "operator: p99 alerts"))
    d = json.loads(s.to_json())
    assert d["end_cause"] == "operator"
    for edit in ({}, {"end_cause": "nonsense"}, {"end_cause": 5}):
        old = {k: v for k, v in d.items() if k != "end_cause"} | edit
        old["reason"] = "failed: KubeUnavailable: the API server did not answer"
        back = rl.RolloutState.from_json(json.dumps(old))
        assert back.end_cause == "" and rl.cause_of(back) == "infrastructure", edit
    running = json.loads(started().to_json())
    assert "end_cause" not in running  # left out while the rollout runs: such a record reads as before


def test_an_inconclusive_look_says_in_its_log_line_why_each_check_did_not_pass() -> None:
    """A newcomer's good demo on a loaded host logged 29 `look.completed` lines of `latency-p95: inconclusive` with
    no word of why (the reason was only in the report): the line names each check that did not pass with its
    reason, and a passing check stays out of it (decision 920)."""
    s = started()
    both = Verdict.combine([
        CheckResult(check="lat", kind="latency", outcome=Outcome.INCONCLUSIVE, reason="not yet shown within +20%",
                    stable_value=100.0, canary_value=110.0),
        CheckResult(check="err", kind="error_rate", outcome=Outcome.PASS, reason="canary errors 0% (limit 10%)",
                    stable_value=0.0, canary_value=0.0, hard=True)])
    _, actions = rl.transition(s, rl.Looked(2, both, 120), POLICY)
    done = next(a for a in actions if isinstance(a, rl.Emit) and a.event == "look.completed")
    assert done.fields["checks"] == {"lat": "inconclusive", "err": "pass"}
    assert done.fields["reasons"] == {"lat": "not yet shown within +20%"}
    _, actions = look(s, 10, Outcome.PASS)
    done = next(a for a in actions if isinstance(a, rl.Emit) and a.event == "look.completed")
    assert done.fields["reasons"] == {}


def test_a_look_lines_reasons_stay_one_short_line_each_whatever_a_check_says() -> None:
    """`reasons` is said at every look: an ERROR's reason quotes Prometheus's answer and the PromQL asked, and a
    custom check's query can run to kilobytes over several lines. Each reason in the line is one line, cut with
    `…` at `LOOK_REASON_MAX`, its start (what failed) kept; `check.failed` keeps the whole of a failure's
    (decision 955)."""
    query = "sum(rate(nv_inference_request_failure{model=\"rec-model\"}[1m]))\n  / " * 80
    error = CheckResult(check="custom", kind="custom", outcome=Outcome.ERROR,
                        reason=f"could not measure: Prometheus answered no series; query: {query}")
    failed = CheckResult(check="err", kind="error_rate", outcome=Outcome.FAIL, reason="canary errors 30%\n" * 100,
                         stable_value=0.0, canary_value=30.0)
    _, actions = rl.transition(started(), rl.Looked(2, Verdict.combine([error, failed]), 120), POLICY)
    done = next(a for a in actions if isinstance(a, rl.Emit) and a.event == "look.completed")
    reasons = done.fields["reasons"]
    assert set(reasons) == {"custom", "err"}, reasons
    for why in reasons.values():
        assert len(why) <= rl.LOOK_REASON_MAX + 1 and why.endswith("…") and "\n" not in why, why
    assert reasons["custom"].startswith("could not measure: Prometheus answered no series; query: sum(rate("), reasons
    said = next(a for a in actions if isinstance(a, rl.Emit) and a.event == "check.failed")
    assert said.fields["reason"] == failed.reason


@pytest.mark.parametrize("on_deadline", ["rollback", "hold"])
def test_a_promotion_held_until_the_deadline_says_so_plainly_not_no_verdict(on_deadline: str) -> None:
    """The last judged step's looks all passed, but the other VirtualServices could not be checked (a failing
    cluster-wide LIST: `Looked.promotion_held`, the verdict made inconclusive by the runner or the controller). At the
    step's deadline the reason says the promotion was held and why, not "no verdict (errors: could not measure: ...;
    canary requests 6500, need 50)" (decision 945)."""
    policy = POLICY.model_copy(update={"failure": POLICY.failure.model_copy(update={"on_deadline": on_deadline})})
    s, _ = look(started(), 10, Outcome.PASS)
    assert s.step == 1
    cause = "all namespaces (virtualservices): Kubernetes API error HTTP 503"
    for now in (20, 30, 40):
        s, actions = rl.transition(s, rl.Looked(now, verdict(Outcome.ERROR), 6500, deadline_cause="infrastructure",
                                                promotion_held=cause), policy)
    assert s.phase == (rl.ROLLED_BACK if on_deadline == "rollback" else rl.PAUSED), s
    assert s.reason.startswith("promotion held at step 2 for 30s, until the step's deadline: every check passed, "
                               "but the other VirtualServices"), s.reason
    assert cause in s.reason and "no verdict" not in s.reason and "need 50" not in s.reason, s.reason
    if on_deadline == "rollback":
        assert rl.cause_of(s) == "infrastructure", s
    else:
        assert [a.fields["reason"] for a in actions if isinstance(a, rl.Emit) and a.event == "rollout.held"] \
            == [s.reason], actions


@pytest.mark.parametrize("then", ["stale", "inconclusive"])
def test_a_held_promotion_is_what_the_deadline_says_though_later_looks_of_the_step_had_no_verdict(then: str) -> None:
    """A look's pass was held (the other VirtualServices could not be checked); the step's later looks had no verdict
    of their own: Prometheus had scraped no new canary request since (a loaded host), or the data were unclear. The
    deadline's reason still opens with the held promotion, naming the last look's words after it, and its cause is
    the infrastructure's, not "no verdict ... (inconclusive: no new canary requests since the last look ...)" with
    cause deadline (decision 977; CI's run of 4ce970cc failed so). The held read is kept in the record (a resumed
    process says it too), and a step entered, a resume or a revert clears it."""
    s, _ = look(started(), 10, Outcome.PASS)
    cause = "all namespaces (virtualservices): Kubernetes API error HTTP 503"
    s, _ = rl.transition(s, rl.Looked(20, verdict(Outcome.ERROR), 6500, deadline_cause="infrastructure",
                                      promotion_held=cause), POLICY)
    assert s.promotion_held == cause
    s = rl.RolloutState.from_json(s.to_json())  # a restarted process reads it back
    assert s.promotion_held == cause
    for now in (30, 40):
        s, _ = rl.transition(s, rl.Looked(now, verdict(Outcome.PASS if then == "stale" else Outcome.INCONCLUSIVE),
                                          6500 if then == "stale" else 100 + 10 * now,
                                          data_to=float(now if then == "inconclusive" else 20)), POLICY)
    assert s.phase == rl.ROLLED_BACK, s
    assert s.reason.startswith("promotion held at step 2 for 30s, until the step's deadline: every check passed at an "
                               "earlier look, but the other VirtualServices"), s.reason
    assert cause in s.reason and "; the step's last look: inconclusive: " in s.reason, s.reason
    assert rl.cause_of(s) == "infrastructure", s


def test_a_held_promotion_is_forgotten_where_the_step_starts_over() -> None:
    """The held read belongs to the step's window: a resume (the step starts over) clears it, so a later deadline
    says the later looks' own words; a record without it reads as none and is written without it (977)."""
    s, _ = look(started(), 10, Outcome.PASS)
    s, _ = rl.transition(s, rl.Looked(20, verdict(Outcome.ERROR), 6500, promotion_held="HTTP 503"), POLICY)
    s, _ = rl.transition(s, rl.Pause(21, "on-call"), POLICY)
    s, _ = rl.transition(s, rl.Resume(22), POLICY)
    assert s.promotion_held == "" and "promotion_held" not in s.to_json()
    for now in (30, 40, 52):
        s, _ = rl.transition(s, rl.Looked(now, verdict(Outcome.INCONCLUSIVE), 100 + 10 * now), POLICY)
    assert s.phase == rl.ROLLED_BACK and s.reason.startswith("no verdict after 30s at step 2"), s.reason

"""`rollout.ahead_of`: a record ahead of the step its CanaryRollout status last showed (decision 150). Pure."""

from __future__ import annotations

from dataclasses import replace

from canary import rollout as rl
from canary.model import Outcome, Verdict
from canary.policy import parse_policy
from tests import fleet

POLICY = parse_policy(fleet.FAST_POLICY)  # steps 20, 50, 100: judged steps 0 and 1, the promotion ranks 2


def _looked(state: rl.RolloutState, now: float, outcome: Outcome = Outcome.PASS) -> rl.RolloutState:
    new, _ = rl.transition(state, rl.Looked(now, Verdict(outcome, ()), 100.0 * now, 10.0), POLICY)
    return new


def _states() -> dict[str, rl.RolloutState]:
    claim, _ = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=100.0)
    begun, _ = rl.transition(claim, rl.Begin(101.0), POLICY)
    looked = _looked(begun, 103.0, Outcome.INCONCLUSIVE)
    step2 = _looked(looked, 110.0)
    promoting = _looked(_looked(step2, 113.0, Outcome.INCONCLUSIVE), 120.0)
    assert (step2.step, step2.weights.canary, promoting.phase) == (1, 50, rl.PROMOTING), (step2, promoting)
    return {"claim": claim, "begun": begun, "looked": looked, "step2": step2, "promoting": promoting}


def test_a_record_at_or_one_transition_past_its_status_is_its_owners() -> None:
    s = _states()
    assert rl.ahead_of(s["claim"], None, POLICY) == ""
    assert rl.ahead_of(s["begun"], None, POLICY) == ""  # the claim's status never landed: Begin is one past it
    assert rl.ahead_of(s["looked"], 0, POLICY) == ""
    assert rl.ahead_of(s["step2"], 0, POLICY) == ""  # written by the look, the status write lost
    assert rl.ahead_of(s["promoting"], 1, POLICY) == ""
    paused, _ = rl.transition(s["step2"], rl.Pause(111.0, "hold"), POLICY)
    resumed, _ = rl.transition(paused, rl.Resume(112.0), POLICY)
    assert rl.ahead_of(paused, 0, POLICY) == "" and rl.ahead_of(resumed, 0, POLICY) == ""
    assert rl.ahead_of(s["promoting"], 2, POLICY) == "" and rl.ahead_of(s["step2"], 1, POLICY) == ""


def test_a_record_typed_ahead_of_its_status_is_no_state_of_the_rollout() -> None:
    s = _states()
    typed = replace(s["looked"], step=1, weights=s["step2"].weights)  # step 2 at 50/50 typed while step 1 ran
    assert "history line" in rl.ahead_of(typed, 0, POLICY)
    assert rl.ahead_of(typed, 1, POLICY) == ""  # the status already showed step 2: not ahead
    looked2 = _looked(s["step2"], 113.0, Outcome.INCONCLUSIVE)  # a look at step 2 never precedes its status
    assert rl.ahead_of(looked2, 0, POLICY)
    promoting = replace(s["looked"], phase=rl.PROMOTING, weights=s["promoting"].weights)
    assert "never that far ahead" in rl.ahead_of(promoting, 0, POLICY)
    at_last = replace(s["step2"], phase=rl.PROMOTING, weights=s["promoting"].weights)  # its step and line missing
    assert rl.ahead_of(at_last, 1, POLICY)
    assert rl.ahead_of(s["step2"], None, POLICY)  # two past a claim no status of which landed
    assert "never that far ahead" in rl.ahead_of(s["promoting"], 0, POLICY)
    assert rl.ahead_of(replace(s["step2"], phase=rl.ROLLED_BACK), -1, POLICY) == ""  # an end: not this check's


def test_a_promoted_record_is_its_owners_only_after_the_last_step_with_its_lines() -> None:
    s = _states()
    promoted, _ = rl.finish_promotion(s["promoting"], 121.0)
    assert rl.ahead_of(promoted, 2, POLICY) == "" and rl.ahead_of(promoted, 1, POLICY) == ""  # statuses lost
    assert "promoted at" in rl.ahead_of(promoted, 0, POLICY)
    typed = replace(s["looked"], phase=rl.PROMOTED, weights=s["promoting"].weights)
    assert rl.ahead_of(typed, 0, POLICY) and rl.ahead_of(typed, 1, POLICY)  # no promotion's lines


def test_a_record_typed_past_a_pending_rollout_names_the_gate_not_a_step_0() -> None:
    """`rl.advanced_outside` said "while this process runs step 0" of a PENDING rollout (its step is -1 before the
    first step): its words now name the gate (decision 155). What it refuses is unchanged."""
    s = _states()
    typed = replace(s["claim"], phase=rl.PROGRESSING, step=0, weights=s["begun"].weights)
    why = rl.advanced_outside(s["claim"], typed, POLICY)
    assert "step 0" not in why and "its gate before the first step (pending)" in why and "records step 1" in why, why
    promoted = replace(s["claim"], phase=rl.PROMOTED, weights=s["promoting"].weights)
    why = rl.advanced_outside(s["claim"], promoted, POLICY)
    assert "its gate before the first step (pending)" in why and "it pending" not in why, why
    assert rl.advanced_outside(s["begun"], replace(s["begun"], step=1, weights=s["step2"].weights), POLICY) \
        == "it records step 2 while this process runs step 1"

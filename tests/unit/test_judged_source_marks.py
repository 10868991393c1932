"""The policy-source marks a claim records beside what a rollout is judged under (decision 822): records written by
an older release, without them, and records with them read by this one or an older one (review r-ak of
h-lines). `edited` never compares them: a policyRef ConfigMap edited to a text that parses is judged by what it
changes, never superseded for its text alone."""

from __future__ import annotations

from canary import controller as ctl
from canary import judged_marks
from canary import rollout as rl
from canary.crd import text_digest
from canary.errors import ConfigError

JUDGED = {"series": "a" * 16, "series.istio": "b" * 16, "series.triton": "c" * 16, "steps": "d" * 16,
          "analysis": "e" * 16, "checks": "f" * 16, "histograms": "0" * 16}


def _state(judged: dict[str, str]) -> rl.RolloutState:
    state, _ = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=0.0, judged=judged)
    return state


def test_source_marks_are_never_an_edit_whatever_their_values() -> None:
    """Two texts of the same ConfigMap (or the ConfigMap renamed, or an inline policy moved to one) change no mark
    `edited` compares, on either side, nor does a record that lacks them."""
    a = {**JUDGED, **judged_marks.source_marks(("pol", "policy.yaml", text_digest("steps: [0, 20, 100]\n")))}
    b = {**JUDGED, **judged_marks.source_marks(("pol2", "p.yaml", text_digest("steps: [0, 20, 100]  # ok\n")))}
    inline = {**JUDGED, **judged_marks.source_marks(None)}
    for old, new in ((a, b), (b, a), (a, inline), (inline, a), (JUDGED, a), (a, JUDGED)):
        assert judged_marks.edited(old, new) == ([], []), (old, new)


def test_a_record_with_source_marks_reads_back_and_fits_the_crd() -> None:
    """The record's JSON round-trips them (an older release reads `judged` as any object of strings: the same
    check); status.target.judged's CRD bounds them: 64 characters a value, 32 marks (three sources, four how-marks
    and the two of the source: 9)."""
    marks = {**JUDGED, **judged_marks.source_marks(("pol", "policy.yaml", text_digest("x" * 100_000)))}
    state = _state(marks)
    assert rl.RolloutState.from_json(state.to_json()).judged == marks
    assert len(marks) <= 32 and all(len(v) <= 64 and len(k) <= 64 for k, v in marks.items())
    assert judged_marks.source_marks(None) == {judged_marks.SOURCE: judged_marks.INLINE}


def _obj(edited: bool) -> dict:
    return {"metadata": {"namespace": "ml", "name": "r0", "generation": 3 if edited else 2},
            "spec": {"model": "m0", "canaryVersion": "v2", "policyRef": {"configMap": "pol", "key": "policy.yaml"}},
            "status": {"observedGeneration": 2, "phase": rl.PROGRESSING,
                       "target": {"virtualService": "m0", "canaryVersion": "v2", "model": "m0"}}}


def test_a_claim_recorded_by_an_older_release_keeps_801s_rule() -> None:
    """A rollout claimed before the source marks (its record and status have none): a refusal of its policyRef
    ConfigMap is no edit where the spec is not edited (714's `infrastructure`), whatever the ConfigMap holds now;
    nothing is read to tell."""
    def read(ns: str, name: str) -> dict[str, str]:
        raise AssertionError("no ConfigMap read for a claim without source marks")

    refused = ConfigError("CanaryRollout ml/r0 spec.policyRef: ConfigMap ml/pol[policy.yaml]: steps: must rise",
                          field="spec.policyRef")
    assert ctl._edited_refusal(_obj(False), refused, marks=dict(JUDGED), read=read) is None
    said = ctl._edited_refusal(_obj(True), refused, marks=dict(JUDGED), read=read)
    assert said is not None and said.startswith(rl.REFUSED_EDIT)

"""A failed retraining Job is replaced once, an hour later; the edges of that retry (decision 385), pure monitor."""

from __future__ import annotations

from dataclasses import replace

from canary.drift import monitor as M
from canary.drift import stats as D

H = 3_600.0
CFG = M.MonitorConfig(enter_after=1, exit_after=1, quiet_s=0)


def _result(drifted: bool) -> D.DatasetDrift:
    return D.dataset_drift([D.FeatureDrift("age", "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted,
                                           0.1, 5_000, 500)])


def _failed_once(now: float) -> M.MonitorState:
    s, _ = M.step(M.MonitorState("m", "v"), _result(True), 0.0, CFG, window_s=H)
    s, _ = M.trigger_result(s, True, 0.0, CFG)
    s = replace(s, job="ml/j-e1")
    s, acts = M.retrain_job_failed(s, "ml/j-e1", "BackoffLimitExceeded", now, CFG)
    assert [a.event for a in acts] == ["drift.retrain_job_failed"] and acts[0].fields["new_job_due"] == now + H
    return s


def test_the_new_job_is_due_an_hour_after_the_failure_and_no_sooner() -> None:
    """`rebase` brings a pending trigger's due time back to one backoff delay (30 s for a trigger that never failed):
    the new Job's hour was read as a clock gone back, and the new Job made at the next evaluation."""
    s = _failed_once(10.0)
    s, acts = M.step(s, _result(True), 20.0, CFG, window_s=H)
    assert s.trigger_due == 10.0 + H and not [a for a in acts if isinstance(a, M.Trigger)]
    s, acts = M.step(s, _result(True), 10.0 + H, CFG, window_s=H)
    [t] = [a for a in acts if isinstance(a, M.Trigger)]
    assert t.evidence["retry"] == 1 and t.evidence["retry_of"] == ["ml/j-e1"]


def test_an_episode_that_ends_before_the_new_job_says_so_and_leaves_nothing_to_supersede() -> None:
    """The drift ended before the new Job was due: `drift.resolved` said "NEVER STARTED (0 failed attempts)" (the
    pending trigger read as one that never started), and the next episode "superseded" it."""
    s = _failed_once(10.0)
    s, acts = M.step(s, _result(False), H, CFG, window_s=H)
    [resolved] = [a for a in acts if isinstance(a, M.Alert)]
    assert resolved.event == "drift.resolved" and s.phase == M.OK
    assert "its retraining Job ml/j-e1 FAILED (BackoffLimitExceeded); its new Job, still due, is not made" \
        in resolved.message, resolved.message
    assert resolved.fields == {"retraining": "failed", "job": "ml/j-e1", "reason": "BackoffLimitExceeded"}
    assert s.trigger == "" and not M.due(s, 10 * H)
    s, acts = M.step(s, _result(True), 3 * H, CFG, window_s=H)
    assert [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.started"], acts
    assert s.job_retries == 0 and "retry" not in s.evidence and "supersedes" not in s.evidence


def test_the_retry_count_is_stored_and_checked() -> None:
    s = _failed_once(10.0)
    assert M.MonitorState.from_dict(s.to_dict()).job_retries == 1
    for bad in (-1, True, "1"):
        try:
            M.MonitorState.from_dict({**s.to_dict(), "job_retries": bad})
        except ValueError as exc:
            assert "job_retries" in str(exc)
        else:
            raise AssertionError(bad)

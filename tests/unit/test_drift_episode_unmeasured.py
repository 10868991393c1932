"""An episode does not end on windows that did not measure what drifted (decision 134, an attacker's finding).

Two features; the episode opened on `age`. At night `age` arrives too rarely to be compared (or the exporter
stops exporting it), and `city`, which never drifted, reads clean: three such windows ended the episode
(`drift.resolved`, a DriftResolved Event) though nothing said `age` came back, and when it was measured again,
still drifted, a new episode opened with another retraining. Such windows now hold the streaks."""

from __future__ import annotations

from canary.drift import monitor as M
from canary.drift import stats as D

H = 3_600.0


def _result(age: bool | None) -> D.DatasetDrift:
    """`city` clean; `age` drifted (True), clean (False) or not compared (None)."""
    city = D.FeatureDrift("city", "categorical", "chisquare", 0.5, 0.05, False, 0.01, 5_000, 500)
    if age is None:
        return D.DatasetDrift((city,), 0.0, False)
    a = D.FeatureDrift("age", "numeric", "wasserstein", 0.5 if age else 0.01, 0.1, age, 0.1, 5_000, 500)
    return D.DatasetDrift((a, city), 0.5 if age else 0.0, age)


def test_windows_that_did_not_compare_the_drifted_feature_do_not_end_its_episode() -> None:
    cfg = M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0)
    s, acts = M.step(M.MonitorState("m", "v"), _result(True), 0.0, cfg, window_s=H)
    assert s.phase == M.DRIFTING and s.episode == 1 and s.evidence["drifted_features"] == ["age"]
    t = 0.0
    for _ in range(6):  # a night without `age`: city reads clean
        t += H
        s, acts = M.step(s, _result(None), t, cfg, window_s=H, unmeasured=["age"])
        assert not [a for a in acts if isinstance(a, M.Alert)] and s.phase == M.DRIFTING
    t += H
    s, acts = M.step(s, _result(True), t, cfg, window_s=H)  # back, still drifted: the same episode
    assert s.phase == M.DRIFTING and s.episode == 1 and not [a for a in acts if isinstance(a, M.Alert)]
    for _ in range(3):  # measured and clean: it ends
        t += H
        s, acts = M.step(s, _result(False), t, cfg, window_s=H)
    assert s.phase == M.OK and [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.resolved"]


def test_a_feature_not_compared_that_did_not_drift_does_not_hold_the_end() -> None:
    cfg = M.MonitorConfig(enter_after=1, exit_after=2, quiet_s=0)
    s, _ = M.step(M.MonitorState("m", "v"), _result(True), 0.0, cfg, window_s=H)
    for t in (H, 2 * H):
        s, acts = M.step(s, _result(False), t, cfg, window_s=H, unmeasured=["plan"])
    assert s.phase == M.OK

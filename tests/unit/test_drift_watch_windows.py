"""A drift episode needs drift in `--enter-after` windows that do not overlap (an attacker's finding).

`drift watch` evaluates every 5 minutes over the last hour; "three drifted evaluations in a row" were
three looks at mostly the same 60 minutes, so one unlucky hour of same-distribution traffic (each test
rejects 5% of the time at low traffic, by design) opened an episode and created a retraining Job: 33
in four weeks for a one-feature model at 150 requests an hour, 61 with two features
(scripts/bench_drift_watch_null.py). A drifted evaluation now counts only when its window starts after
the last counted one's ended; a clean evaluation still breaks the streak.
"""

from __future__ import annotations

from canary.drift import monitor as M
from canary.drift import stats as D
from scripts.bench_drift_watch_null import run


def _result(drifted: bool) -> D.DatasetDrift:
    f = D.FeatureDrift("f", "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted, 0.1, 5_000, 150)
    return D.DatasetDrift((f,), 1.0 if drifted else 0.0, drifted)


def test_one_unlucky_hour_is_one_piece_of_evidence() -> None:
    cfg = M.MonitorConfig(quiet_s=0)  # three windows in a row
    s = M.MonitorState("m", "v1")
    for t in range(0, 3_600, 300):  # a whole hour of evaluations over overlapping windows
        s, acts = M.step(s, _result(True), float(t), cfg, window_s=3_600)
        assert acts == [] and s.phase == M.OK, t
    assert s.drifted_in_row == 1
    s, _ = M.step(s, _result(False), 3_600.0, cfg, window_s=3_600)  # a clean look breaks the streak
    for t in (3_900, 7_500):
        s, acts = M.step(s, _result(True), float(t), cfg, window_s=3_600)
    assert s.phase == M.OK and s.drifted_in_row == 2
    s, acts = M.step(s, _result(True), 11_100.0, cfg, window_s=3_600)  # a third window, apart: drift persists
    assert s.phase == M.DRIFTING and acts[0].event == "drift.started" and "3 windows in a row" in acts[0].message
    assert M.MonitorState.from_dict(s.to_dict()) == s


def test_a_week_of_same_distribution_traffic_opens_no_episode_and_a_shift_still_does() -> None:
    for features, seed in ((1, 3), (2, 4)):  # 8 and 13 false episodes in this week before
        evaluations, drifted, episodes, _ = run(features, 150, 24 * 7, seed=seed)
        assert drifted > 50 and episodes == 0, (features, drifted, episodes)  # each look is still at its 5%
    *_, first = run(1, 150, 48, shift=0.5, shift_at_h=24)
    assert first is not None and first < 4, first

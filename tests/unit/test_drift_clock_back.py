"""The drift monitor after its clock went back (decision 134, an attacker's finding).

The monitor's state stores times (the last counted drifted and clean evaluations, the quiet period's end,
a failed retraining trigger's next attempt) and compares them with the clock. A clock that ran a day ahead
and was then stepped back (NTP), or a watcher restarted with its state file on a machine whose clock is
behind the last one's, left those times a day in the future: every drifted evaluation of that day read as
the overlap of a window stored ahead, so a real drift opened no episode for 26 hours instead of 3, a failed
retraining trigger waited a day for its retry, and nothing said so. Fake clocks only.
"""

from __future__ import annotations

from typing import Any

from canary.drift import monitor as M
from canary.drift import stats as D

DAY, H = 86_400.0, 3_600.0
T = 1_800_000_000.0  # the real time the clock is stepped back to


def _result(drifted: bool) -> D.DatasetDrift:
    f = D.FeatureDrift("f", "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted, 0.1, 5_000, 150)
    return D.DatasetDrift((f,), 1.0 if drifted else 0.0, drifted)


def _hours_to_open(s: M.MonitorState, cfg: M.MonitorConfig) -> float | None:
    """Hourly drifted evaluations from T on: hours until the episode opens (None within two days)."""
    for h in range(48):
        s, acts = M.step(s, _result(True), T + h * H, cfg, window_s=H)
        if any(isinstance(a, M.Alert) and a.event == "drift.started" for a in acts):
            return float(h)
    return None


def test_a_drifted_window_stored_a_day_ahead_does_not_hold_real_drift_for_a_day() -> None:
    cfg = M.MonitorConfig(quiet_s=0)
    ahead, _ = M.step(M.MonitorState("m", "v"), _result(True), T + DAY, cfg, window_s=H)  # the clock ran ahead
    assert ahead.drifted_in_row == 1
    # the clock is stepped back to T: the streak holds (1), two more windows open the episode (was 25 h)
    assert _hours_to_open(ahead, cfg) == 2.0
    assert _hours_to_open(M.MonitorState("m", "v"), cfg) == 2.0  # as a state that never saw the wrong clock


def test_a_clean_window_stored_a_day_ahead_does_not_keep_an_episode_open_for_a_day() -> None:
    cfg = M.MonitorConfig(quiet_s=0, exit_after=2)
    s = M.MonitorState("m", "v", phase=M.DRIFTING, episode=1, trigger="done", traffic_since=T - DAY)
    s, _ = M.step(s, _result(False), T + DAY, cfg, window_s=H)
    for h in range(48):  # stepped back to T: the streak holds (1), the next window apart ends the episode
        s, acts = M.step(s, _result(False), T + h * H, cfg, window_s=H)
        if s.phase == M.OK:
            break
    assert h == 1 and [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.resolved"]


def test_a_quiet_period_and_a_retry_stored_a_day_ahead_end_within_their_own_length() -> None:
    cfg = M.MonitorConfig(quiet_s=H, retry_s=30)
    s, _ = M.step(M.MonitorState("m", "v"), _result(False), T + DAY, cfg, window_s=H)  # first traffic, ahead
    assert s.quiet_until == T + DAY + H
    s = M.rebase(s, T, cfg)
    assert s.quiet_until == T + H and s.traffic_since == T

    pending = M.MonitorState("m", "v", phase=M.DRIFTING, episode=1, trigger="pending", trigger_due=T + DAY)
    failed, _ = M.trigger_result(pending, False, T + DAY, cfg, "HTTP 503")  # next attempt due a day ahead
    assert M.due(failed, T + 60) == []  # as stored, not due for a day
    s, acts = M.step(failed, _result(True), T, cfg, window_s=H)  # stepped back: due one backoff delay later
    assert s.trigger_due == T + 30 and not [a for a in acts if isinstance(a, M.Trigger)]
    s, acts = M.step(s, _result(True), T + 30, cfg, window_s=H)
    assert [a for a in acts if isinstance(a, M.Trigger)] == [M.Trigger(1, failed.evidence)]
    fresh = M.MonitorState("m", "v", phase=M.DRIFTING, episode=1, trigger="pending", trigger_due=T + DAY)
    assert M.rebase(fresh, T, cfg).trigger_due == T  # never attempted: due now


def test_times_within_reach_are_left_as_they_are() -> None:
    cfg = M.MonitorConfig(quiet_s=H, retry_s=30)
    s = M.MonitorState("m", "v", drifted_at=T - 10, clean_at=T - 20, traffic_since=T - 30, quiet_until=T + H,
                       phase=M.DRIFTING, trigger="pending", trigger_attempts=3, trigger_due=T + 120)
    assert M.rebase(s, T, cfg) is s


def test_a_watcher_restarted_on_a_clock_behind_its_state_retries_the_trigger_and_opens_episodes(
        monkeypatch: Any, tmp_path: Any) -> None:
    """`drift watch --state-file`: the first process ran on a clock a day ahead, opened an episode and its
    webhook failed; restarted on the right clock it retried a day later, and a new drift (after the episode
    ended) opened nothing for a day."""
    from structlog.testing import capture_logs

    from canary.drift import watch as W

    import pyarrow as pa

    from canary.drift.profile import capture

    prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv", sha256="0" * 64)
    live = {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0, "missing": 0}}  # every value "a": drift
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: live)
    answers = [500, 200]
    posts: list[dict[str, Any]] = []

    def post(url: str, body: dict[str, Any]) -> int:
        posts.append(body)
        return answers.pop(0)

    cfg = M.MonitorConfig(enter_after=1, exit_after=1, quiet_s=0, retry_s=30)
    state_file = tmp_path / "state.json"
    t = [T + DAY]

    def watcher() -> W.DriftWatcher:
        return W.DriftWatcher([prof], client=None, window_s=H, config=cfg, state_file=state_file,
                              retrain_webhook="http://127.0.0.1:9/retrain", post=post, clock=lambda: t[0])

    with capture_logs() as logs:
        watcher().once()  # a day ahead: episode 1 opens, its POST fails, retried at T + DAY + 30
    assert [e["event"] for e in logs if e["event"].startswith("drift.retrain")] == ["drift.retrain_failed"]
    t[0] = T  # restarted on the right clock
    w = watcher()
    with capture_logs() as logs:
        w.once()  # the retry is one backoff delay away, not a day
        t[0] += 30
        w.once()
    assert len(posts) == 2 and posts[1]["episode"] == 1
    # the failure reached people, so does its end (decision 153)
    assert [e["event"] for e in logs if e["event"].startswith("drift.retrain")] == ["drift.retrain_triggered",
                                                                                    "drift.retrain_recovered"]

    live["c"] = {"categories": {"a": 1_000, "b": 1_000}, "other": 0, "missing": 0}  # clean: the episode ends
    t[0] += H
    w.once()
    assert w.states["rec/v2"].phase == M.OK
    live["c"] = {"categories": {"a": 1_000, "b": 0}, "other": 0, "missing": 0}  # drift again, a window later
    t[0] += H
    answers.append(200)
    with capture_logs() as logs:
        w.once()
    assert w.states["rec/v2"].episode == 2 and [e["event"] for e in logs if e["event"] == "drift.started"]

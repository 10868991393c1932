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


def _features(drifted: int, clean: int) -> D.DatasetDrift:
    return D.dataset_drift([D.FeatureDrift(f"d{i}", "numeric", "wasserstein", 0.5, 0.1, True, 0.1, 5_000, 500)
                            for i in range(drifted)]
                           + [D.FeatureDrift(f"c{i}", "numeric", "wasserstein", 0.01, 0.1, False, 0.0, 5_000, 500)
                              for i in range(clean)])


def test_no_episode_opens_on_drift_that_the_features_not_compared_could_undo() -> None:
    """Ten features; at night one arrives (its exporter's other nine without live data, or too few values) and it
    drifted: "1 of 1 features drifted", dataset drift, and three such windows opened an episode with a retraining
    Job, a verdict over nine features never measured. It is no verdict now: the streaks hold (decision 382)."""
    cfg = M.MonitorConfig(enter_after=3, exit_after=3, quiet_s=0)
    nine = [f"f{i}" for i in range(9)]
    s, t = M.MonitorState("m", "v"), 0.0
    for _ in range(6):
        s, acts = M.step(s, _features(1, 0), t, cfg, window_s=H, unmeasured=nine)
        t += H
        assert s.phase == M.OK and s.drifted_in_row == 0 and not acts, (s, acts)
    # the drifted ones alone half of the profile: drift whatever the others are (2 of 4, 2 not compared)
    for _ in range(3):
        s, acts = M.step(s, _features(2, 0), t, cfg, window_s=H, unmeasured=["x", "y"])
        t += H
    assert s.phase == M.DRIFTING and [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.started"]
    # the evidence (the retraining Job's, the webhook's) says the share of the profile: it said 1.0, of the two
    # compared alone (decision 411)
    assert (s.evidence["share"], s.evidence["share_max"]) == (0.5, 1.0), s.evidence


def test_a_clean_window_that_the_features_not_compared_could_make_drifted_breaks_no_streak() -> None:
    """Four features; two drifted windows, then one where only a clean feature arrives: counted clean, it broke the
    drifted streak (and counted toward ending an open episode), though the three not compared could be the half that
    drifts. It holds the streaks now; one that the others cannot make drifted (0 of 3 compared, 1 not) counts."""
    cfg = M.MonitorConfig(enter_after=3, exit_after=3, quiet_s=0)
    s, t = M.MonitorState("m", "v"), 0.0
    for _ in range(2):
        s, _ = M.step(s, _features(2, 2), t, cfg, window_s=H)
        t += H
    s, acts = M.step(s, _features(0, 1), t, cfg, window_s=H, unmeasured=["d0", "d1", "c1"])
    t += H
    assert s.drifted_in_row == 2 and s.clean_in_row == 0 and not acts
    s, acts = M.step(s, _features(2, 2), t, cfg, window_s=H)
    t += H
    assert s.phase == M.DRIFTING and [a.event for a in acts if isinstance(a, M.Alert)] == ["drift.started"]
    s, _ = M.step(s, _features(0, 3), t, cfg, window_s=H, unmeasured=["x"])  # 1 of 4 at most: shown clean
    assert s.clean_in_row == 1


def test_no_episode_opens_at_the_end_of_the_quiet_period_on_a_window_that_is_no_verdict() -> None:
    """A new version drifted from its first windows: the streak passed enter_after inside its quiet period. The first
    window after the quiet period had one drifted feature of ten compared (nine without live data at night): no
    verdict, which holds the streak; it opened the episode anyway, its Job with it, and `drift.started` read "1 of 10
    profiled features drifted (10% at least, 9 not compared: drift whatever they are)" -- a claim of this window's,
    false. An episode opens on a window that drifted; the held streak waits for one."""
    cfg = M.MonitorConfig(enter_after=3, exit_after=3, quiet_s=4 * H)
    nine = [f"f{i}" for i in range(9)]
    s, t = M.MonitorState("m", "v"), 1.0
    for _ in range(4):  # 5 of 10 drifted in each: drift, inside the quiet period
        s, acts = M.step(s, _features(5, 5), t, cfg, window_s=H)
        t += H
        assert s.phase == M.OK and not [a for a in acts if isinstance(a, M.Alert)], acts
    assert s.drifted_in_row == 4 and t >= s.quiet_until, s
    s, acts = M.step(s, _features(1, 0), t, cfg, window_s=H, unmeasured=nine)  # no verdict
    assert s.phase == M.OK and not [a for a in acts if isinstance(a, M.Alert)], acts
    assert s.drifted_in_row == 4  # held, not broken
    s, acts = M.step(s, _features(5, 5), t + H, cfg, window_s=H)  # drifted again: the episode opens now
    started = [a for a in acts if isinstance(a, M.Alert)]
    assert s.phase == M.DRIFTING and [a.event for a in started] == ["drift.started"], acts
    assert "5 of 10 features drifted" in started[0].message, started[0].message


def _named(drifted: list[str], clean: list[str]) -> D.DatasetDrift:
    return D.dataset_drift([D.FeatureDrift(n, "numeric", "wasserstein", 0.5, 0.1, True, 0.1, 5_000, 500)
                            for n in drifted]
                           + [D.FeatureDrift(n, "numeric", "wasserstein", 0.01, 0.1, False, 0.0, 5_000, 500)
                              for n in clean])


def _alerts(acts: list[M.Action]) -> list[M.Alert]:
    return [a for a in acts if isinstance(a, M.Alert)]


def test_an_episode_ends_when_no_drift_is_certain_over_the_profile_though_a_feature_it_opened_on_is_gone() -> None:
    """Ten features; the episode opened on d0-d4 (half of them). Then d0 stops arriving for good (removed from the
    model's inputs without re-capturing the baseline) and the other nine read clean: no dataset drift whatever d0 is
    (1 of 10 at most). Decision 134's hold kept the episode open for ever, its gauge at 1 and no new episode
    possible. It ends now, its `drift.resolved` naming d0 and what to do (decision 410)."""
    cfg = M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0)
    d, c = [f"d{i}" for i in range(5)], [f"c{i}" for i in range(5)]
    s, acts = M.step(M.MonitorState("m", "v"), _named(d, c), 0.0, cfg, window_s=H)
    assert s.phase == M.DRIFTING and s.evidence["drifted_features"] == d
    t = 0.0
    for _ in range(3):
        t += H
        s, acts = M.step(s, _named([], d[1:] + c), t, cfg, window_s=H, unmeasured=["d0"])
    [end] = _alerts(acts)
    assert s.phase == M.OK and end.event == "drift.resolved" and end.fields["unmeasured"] == ["d0"], acts
    assert "whatever d0 is: not compared in this window" in end.message, end.message
    assert "re-capture the baseline without it" in end.message, end.message


def test_an_episode_held_by_no_verdict_for_a_day_is_said_once_and_its_end_too() -> None:
    """Two features, the episode opened on `age`, which then stops arriving for good: every window compares `city`
    alone, no verdict (`age` decides it), so the episode cannot end. Nothing said so: the episode stayed open for
    ever with nothing on the log. A day of it is said once (`drift.episode_unmeasured`, naming `age` and the
    remedy), not again, and a verdict's return once (`drift.episode_measured`); a night is not said (decision 410)."""
    cfg = M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0)
    s, _ = M.step(M.MonitorState("m", "v"), _result(True), 0.0, cfg, window_s=H)
    t, said = 0.0, []
    for _ in range(10):  # a night: not said
        t += H
        s, acts = M.step(s, _result(None), t, cfg, window_s=H, unmeasured=["age"])
        said += _alerts(acts)
    assert said == [] and s.held_since == H
    s, acts = M.step(s, _result(True), t + H, cfg, window_s=H)  # measured again: the run ends unsaid
    t += H
    assert _alerts(acts) == [] and s.held_since == 0.0
    for _ in range(72):  # gone for good: three days
        t += H
        s, acts = M.step(s, _result(None), t, cfg, window_s=H, unmeasured=["age"])
        said += _alerts(acts)
    [held] = said
    assert held.event == "drift.episode_unmeasured" and held.fields["unmeasured"] == ["age"] and held.notify
    assert held.at == t - 47 * H and held.fields["since"] == t - 71 * H, (held, t)
    assert "drift episode 1 cannot end" in held.message and "not compared now: age" in held.message
    assert "re-capture the baseline without it" in held.message, held.message
    assert M.MonitorState.from_dict(s.to_dict()) == s  # the run and its telling are stored
    from dataclasses import replace

    assert M.rebase(replace(s, held_since=t + 10 * H), t, cfg).held_since == t  # a clock gone back: not ahead
    from canary.notify_body import slack_line  # a warning in the channel, not an :information_source:

    assert slack_line("drift_episode_unmeasured", {"reason": held.message}).startswith(":warning:")
    s, acts = M.step(s, _result(False), t + H, cfg, window_s=H)
    [back] = _alerts(acts)
    assert back.event == "drift.episode_measured" and not back.warning and "after 72h of none" in back.message
    assert s.phase == M.DRIFTING and not s.held_told and not s.held_since


def test_an_episode_whose_live_data_never_return_is_said_once_after_a_day_and_its_end_too() -> None:
    """The episode opened on `age`; then the version gets no traffic at all (every request moved to another version,
    or its exporter stopped): every evaluation compares nothing. Such evaluations were left out of the no-verdict run
    (decision 410's): the episode stayed open for ever, `model_data_drift_episode` 1, and after `drift.no_live_data`
    (a log line, once) nothing said it could not end. They go on with the run now: said once at a day, naming that
    nothing arrives; a verdict's return ends it (decision 447). A night without traffic is not said."""
    cfg = M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0)
    s, _ = M.step(M.MonitorState("m", "v"), _result(True), 0.0, cfg, window_s=H)
    nothing = D.DatasetDrift((), 0.0, False)
    t, said = 0.0, []
    for _ in range(10):  # a night of no live data: not said, and the run is counted
        t += H
        s, acts = M.step(s, nothing, t, cfg, window_s=H, unmeasured=["age", "city"])
        said += _alerts(acts)
    assert said == [] and s.held_since == H and s.phase == M.DRIFTING
    s, acts = M.step(s, _result(None), t + H, cfg, window_s=H, unmeasured=["age"])  # some back, still no verdict
    t += H
    assert _alerts(acts) == [] and s.held_since == H  # one run: no live data and no verdict alike
    for _ in range(62):  # none again, for good
        t += H
        s, acts = M.step(s, nothing, t, cfg, window_s=H, unmeasured=["age", "city"])
        said += _alerts(acts)
    [held] = said
    assert held.event == "drift.episode_unmeasured" and held.fields["unmeasured"] == ["age", "city"], held
    assert held.fields["live_data"] is False and held.fields["since"] == H and held.at == 25 * H, held
    assert "no live data of any profiled feature now" in held.message and "remove this baseline" in held.message
    assert s.phase == M.DRIFTING and s.held_told
    s, acts = M.step(s, _result(False), t + H, cfg, window_s=H)  # back and measured: the run's end is said
    [back] = _alerts(acts)
    assert back.event == "drift.episode_measured" and not s.held_since and not s.held_told

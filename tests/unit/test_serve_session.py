"""serve_session: one look at a time, the rules of rollout.py's looks, for an external controller.

The verdicts come from the real judge on counts with known answers; times are plain numbers.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from canary.analysis.judge import judge
from canary.errors import MetricsUnavailable
from canary.model import Counts
from canary.policy import Policy, parse_policy
from canary.serve_session import (
    FAIL, INCONCLUSIVE, PASS, Session, new_session, open_window, owed_pass, pass_to_grant, record_gates, record_look,
    unreachable_at_deadline,
)

RAW = {"steps": [10, 100], "analysis": {"interval": "60s", "look_every": "10s", "min_canary_requests": 100},
       "failure": {"max_failed_looks": 2, "no_data_deadline": "2m"},
       "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}
POLICY = parse_policy(RAW)
T0 = 1_000.0


def counts(canary_errors: float, canary_n: float = 5000) -> dict[str, tuple[Counts, Counts]]:
    return {"errors": (Counts(50, 10_000), Counts(canary_errors, canary_n))}


GOOD, BAD = counts(25), counts(500)


def look(s: Session, data: dict, *, now: float, n: float = 5000, policy: Policy = POLICY, step: str = "") -> Session:
    s = open_window(s, now=now, step=step)
    verdict = judge(policy, data, prior=s.prior(), window=s.window, pass_ratio=s.pass_ratio(n))
    return record_look(s, verdict, canary_requests=n, now=now, policy=policy, caller=step)[0]


def fresh(**kw: object) -> Session:
    return new_session(key="argo/ml/rec", revision="v2", policy="p", model="rec", namespace="ml",
                       stable_version="v1", canary_version="v2", now=T0, **kw)  # type: ignore[arg-type]


def test_a_pass_needs_the_interval_and_then_the_next_look_opens_a_window_with_the_prior() -> None:
    s = look(fresh(), GOOD, now=T0 + 30)
    assert s.verdict == INCONCLUSIVE and "window 30s of 60s" in s.reason
    s = look(s, counts(26, 5100), now=T0 + 60, n=5100)
    assert s.verdict == PASS and s.advanced_at == T0 + 60 and s.window_evidence
    s2 = open_window(s, now=T0 + 75)
    assert (s2.window_started_at, s2.window, s2.windows_closed, s2.window_evidence) == (T0 + 60, 0, 1, {})
    assert s2.evidence == s.window_evidence and s2.prior() == s.window_evidence


def test_failures_must_be_consecutive_and_the_end_is_sticky() -> None:
    s = look(fresh(), BAD, now=T0 + 10, n=5000)
    assert (s.verdict, s.failed_looks) == (INCONCLUSIVE, 1) and "failed look 1 of 2" in s.reason
    s = look(s, counts(30, 5200), now=T0 + 20, n=5200)
    assert s.failed_looks == 0, "a look that does not fail resets the count"
    s = look(s, counts(600, 5400), now=T0 + 30, n=5400)
    s = look(s, counts(700, 5600), now=T0 + 40, n=5600)
    assert s.verdict == FAIL and "2 consecutive failed looks" in s.reason
    assert look(s, GOOD, now=T0 + 70, n=9000) == s


def test_a_look_on_the_same_requests_adds_no_failure() -> None:
    s = look(fresh(), BAD, now=T0 + 10, n=5000)
    s = look(s, BAD, now=T0 + 20, n=5000)
    assert (s.verdict, s.failed_looks) == (INCONCLUSIVE, 1)


def test_fewer_requests_than_an_earlier_look_cannot_pass_nor_replace_the_window_evidence() -> None:
    s = look(fresh(), GOOD, now=T0 + 30, n=5000)
    before = s.window_evidence
    s = look(s, counts(10, 2000), now=T0 + 70, n=2000)
    assert s.verdict == INCONCLUSIVE and "fewer canary requests" in s.reason and s.window_evidence == before


def test_a_hard_breach_fails_at_once() -> None:
    hard = parse_policy({**RAW, "checks": [{**RAW["checks"][0], "hard": True}]})
    s = look(fresh(), BAD, now=T0 + 10, policy=hard)
    assert s.verdict == FAIL and s.reason.startswith("hard check breached")


def test_the_deadline_rolls_back_or_holds_into_the_next_window() -> None:
    unsure = counts(0, 40)  # below min_canary_requests: never a pass
    s = look(fresh(), unsure, now=T0 + 179, n=40)
    assert s.verdict == INCONCLUSIVE
    assert look(s, counts(0, 50), now=T0 + 180, n=50).verdict == FAIL
    hold = parse_policy({**RAW, "failure": {**RAW["failure"], "on_deadline": "hold"}})
    s = look(fresh(), counts(0, 50), now=T0 + 180, n=50, policy=hold)
    assert s.verdict == INCONCLUSIVE and s.reason.startswith("held")
    assert (s.window, s.window_started_at, s.windows_closed) == (1, T0 + 180, 1), "smaller pass level, as a resume"


def test_a_look_at_the_deadline_that_could_not_ask_prometheus_holds_the_window_never_fails() -> None:
    """Decision 154 (a): one check of two could not ask Prometheus at the deadline (its query refused or
    past --answer-within): no verdict on the canary. It was the sticky `fail` (Argo: Failed; Flagger: 409,
    the canary's) and stayed after Prometheus came back; now the window is held, as `on_deadline: hold`."""
    two = parse_policy({**RAW, "checks": [*RAW["checks"],
                                          {"name": "errors-2", "kind": "error_rate", "max_increase_points": 2}]})
    half = {"errors": counts(0, 50)["errors"], "errors-2": MetricsUnavailable("Prometheus refused")}
    s = look(fresh(), half, now=T0 + 179, n=50, policy=two)
    assert s.verdict == INCONCLUSIVE and not unreachable_at_deadline(s), "before the deadline: inconclusive"
    s = look(s, half, now=T0 + 180, n=50, policy=two)
    assert s.verdict == INCONCLUSIVE and unreachable_at_deadline(s), s.reason
    assert "Prometheus could not be asked at the window's deadline" in s.reason and "errors-2" in s.reason
    assert (s.window, s.window_started_at, s.windows_closed) == (1, T0 + 180, 1)
    # Prometheus back: the held window is judged on its own data
    s = look(s, {"errors": GOOD["errors"], "errors-2": GOOD["errors"]}, now=T0 + 240, policy=two)
    assert s.verdict == PASS, s.reason
    # a look at the deadline that Prometheus answered ends as the policy says, as before
    s = look(fresh(), counts(0, 50), now=T0 + 180, n=50, policy=two)
    assert s.verdict == FAIL and not unreachable_at_deadline(s)


def test_a_look_at_the_deadline_whose_requests_were_not_counted_holds_the_window() -> None:
    """Decision 154 (a): the checks answered but the request count's query did not (0 requests, so never a pass):
    at the deadline that is "could not measure", not the canary's `fail`."""
    s = look(fresh(), counts(0, 50), now=T0 + 100, n=50)
    verdict = judge(POLICY, GOOD, prior=s.prior(), window=s.window, pass_ratio=s.pass_ratio(0.0))
    s, _ = record_look(s, verdict, canary_requests=0.0, now=T0 + 180, policy=POLICY, counted=False)
    assert s.verdict == INCONCLUSIVE and unreachable_at_deadline(s), s.reason
    assert "not counted" in s.reason and s.window == 1


def test_a_new_step_label_opens_a_window_from_now() -> None:
    s = look(fresh(step="20"), GOOD, now=T0 + 30, step="20")
    assert s.window_started_at == T0
    s = look(s, GOOD, now=T0 + 45, step="40")
    assert (s.step, s.window, s.window_started_at, s.windows_closed) == ("40", 0, T0 + 45, 1)
    assert s.evidence, "the closed window's evidence is kept"


def test_a_step_named_again_goes_on_in_the_open_window_until_a_silence_starts_a_new_rollout() -> None:
    """Decision 154 (h): two analyses alternating "0" and "10" on one revision opened a window at every call."""
    s = look(fresh(step="0"), BAD, now=T0 + 15, step="0")
    s = look(s, BAD, now=T0 + 30, n=5100, step="10")
    assert (s.step, s.windows_closed, s.steps_seen) == ("10", 1, ("0", "10"))
    s2 = open_window(s, now=T0 + 45, step="0")
    assert s2 == s, "a step named before opens no window"
    s = look(s, counts(520, 5200), now=T0 + 45, n=5200, step="0")
    assert s.verdict == FAIL, "the failed looks in a row are counted across both callers"
    # after a silence longer than a window may last: a new rollout of the revision (an undo), its steps anew
    ok = look(fresh(step="0"), GOOD, now=T0 + 15, step="0")
    ok = look(ok, GOOD, now=T0 + 30, step="10")
    later = open_window(ok, now=T0 + 1000, step="10", quiet_s=180)
    assert later.steps_seen == ("10",) and later.window_started_at == T0 + 1000
    assert open_window(later, now=T0 + 1015, step="0").windows_closed == later.windows_closed + 1
    assert Session.from_json(s.to_json()).steps_seen == ("0", "10")
    legacy = s.to_json().replace(',"steps_seen":["0","10"]', "")
    assert Session.from_json(legacy).steps_seen == (), "a file written before the field reads as none seen"


def test_gates_passed_start_the_window_and_a_refusal_is_not_sticky() -> None:
    s = record_gates(fresh(), passed=False, why="not ready", now=T0 + 5)
    assert (s.gates, s.verdict) == ("not ready", INCONCLUSIVE)
    s = record_gates(s, passed=True, why="", now=T0 + 9)
    assert (s.gates, s.window_started_at) == ("passed", T0 + 9)


def test_json_round_trip_and_refusals_name_the_field() -> None:
    s = look(fresh(), GOOD, now=T0 + 60)
    assert Session.from_json(s.to_json()) == s
    text = s.to_json()
    for broken, field in ((text.replace('"looks":1', '"looks":-1'), "looks"),
                          (text.replace('"model":"rec"', '"model":7'), "model"),
                          (text.replace('"key":', '"kee":'), "key: missing"),
                          (re.sub('"pass_anchor_requests":[^,}]*', '"pass_anchor_requests":0', text),
                           "pass_anchor_requests"),
                          (text.replace('"verdict":"pass"', '"verdict":"maybe"'), "verdict"),
                          (text.replace('"window_evidence":{', '"window_evidence":{"x":[1],'), "window_evidence.x")):
        with pytest.raises(ValueError, match=field):
            Session.from_json(broken)
    with pytest.raises(ValueError):
        replace(s, verdict="maybe")
    newer = text.replace('"looks":1', '"looks":1,"from_a_newer_version":true')
    assert Session.from_json(newer) == s, "a field a newer version writes is ignored, as RolloutState does"


def test_a_state_file_written_before_the_preflight_field_reads_as_preflight_not_done() -> None:
    """Decision 314: the preflight is asked until it once answers; a revision stored by an earlier version (which
    asked it at the first look only, or not at all) is asked once more."""
    s = replace(look(fresh(), GOOD, now=T0 + 60), preflight_done=True)
    assert Session.from_json(s.to_json()) == s
    legacy = s.to_json().replace(',"preflight_done":true', "")
    assert legacy != s.to_json() and Session.from_json(legacy).preflight_done is False
    with pytest.raises(ValueError, match="preflight_done"):
        Session.from_json(s.to_json().replace('"preflight_done":true', '"preflight_done":"yes"'))



def test_the_inputs_a_rollout_was_started_over_from_round_trip_and_older_files_have_none() -> None:
    """Decision 326: `left_inputs` is stored as a list of strings; a file without it (an earlier version) has none."""
    s = replace(fresh(), left_inputs=('["ml","goood","v1","v2"]',))
    assert Session.from_json(s.to_json()) == s
    legacy = s.to_json().replace(',"left_inputs":["[\\"ml\\",\\"goood\\",\\"v1\\",\\"v2\\"]"]', "")
    assert legacy != s.to_json() and Session.from_json(legacy).left_inputs == ()
    with pytest.raises(ValueError, match="left_inputs"):
        Session.from_json(s.to_json().replace('"left_inputs":[', '"left_inputs":[1,'))
    # decision 334's `barred_inputs` likewise
    b = replace(s, barred_inputs=('["ml","goood","v1","v2"]',))
    assert Session.from_json(b.to_json()) == b
    assert Session.from_json(s.to_json().replace('"barred_inputs":[],', "")).barred_inputs == ()
    with pytest.raises(ValueError, match="barred_inputs"):
        Session.from_json(b.to_json().replace('"barred_inputs":[', '"barred_inputs":[1,'))

def test_store_keeps_one_file_per_revision_refuses_an_unreadable_one_and_prunes(tmp_path: Path) -> None:
    import os

    from canary.serve_store import SessionStore, StoreError

    store = SessionStore(tmp_path / "state")
    s = look(fresh(), GOOD, now=T0 + 60)
    assert store.load(s.key, s.revision) is None
    store.save(s)
    assert store.load(s.key, s.revision) == s and store.load(s.key, "v3") is None
    assert [p.name for p in (tmp_path / "state").iterdir()] == [store.path(s.key, s.revision).name], "no temp left"
    store.path(s.key, s.revision).write_text('{"key": "argo/ml/rec"', encoding="utf-8")
    with pytest.raises(StoreError, match="unreadable.*delete the file"):
        store.load(s.key, s.revision)
    store.save(s)
    os.utime(store.path(s.key, s.revision), (T0, T0))  # its file written at T0 by the host's clock, at T0 + 60 by its own
    # idle past the TTL by both clocks, never by one alone (decision 166: a host clock ahead deleted live sessions)
    assert store.prune(older_than_s=3600, now=T0 + 3659, host_now=T0 + 10**6) == 0
    assert store.prune(older_than_s=3600, now=T0 + 10**6, host_now=T0 + 3599) == 0
    assert store.prune(older_than_s=3600, now=T0 + 3661, host_now=T0 + 3601) == 1 and store.load(s.key, s.revision) is None


def test_a_prune_while_serving_keeps_a_revision_a_call_took_after_the_prune_began(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`canary serve` now also prunes while it serves (once Prometheus first answers, decision 174): a call that takes
    an idle revision's lock after the prune read which ones are in use, and before it deletes that one, keeps it."""
    import contextlib
    import os

    import canary.serve_store as serve_store
    from canary.serve_store import SessionStore

    store = SessionStore(tmp_path / "state")
    s = look(fresh(), GOOD, now=T0 + 60)
    store.save(s)
    os.utime(store.path(s.key, s.revision), (T0, T0))
    held = contextlib.ExitStack()
    original = serve_store.Session
    read = original.from_json

    class CalledMeanwhile(original):
        @classmethod
        def from_json(cls, text: str) -> Any:  # the prune reads the file: a call takes the revision just then
            held.enter_context(store.lock(s.key, s.revision))
            return read(text)

    monkeypatch.setattr(serve_store, "Session", CalledMeanwhile)
    with held:
        assert store.prune(older_than_s=3600, now=T0 + 10**6, host_now=T0 + 10**6) == 0
    monkeypatch.setattr(serve_store, "Session", original)
    assert store.load(s.key, s.revision) == s
    assert store.prune(older_than_s=3600, now=T0 + 10**6, host_now=T0 + 10**6) == 1


@pytest.mark.parametrize("deleter", ["prune", "make_room"])
def test_a_call_that_lands_whole_between_the_read_and_the_delete_keeps_its_look(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deleter: str) -> None:
    """Decision 174's re-check asked only whether a call holds the revision at the delete. A call that took the
    idle revision after the prune (or `create` making room) read it, wrote its look and let go before the delete
    held nothing by then: the look just written was deleted, judged on the session read before it (its evidence
    and failed looks gone, a shown fail judged again as a new revision). The file is now deleted only as it was
    read (decision 178)."""
    import os

    import canary.serve_store as serve_store
    from canary.serve_store import SessionStore, StoreFull

    store = SessionStore(tmp_path / "state", max_revisions=1)
    s = look(fresh(), GOOD, now=T0 + 60)
    store.save(s)
    os.utime(store.path(s.key, s.revision), (T0, T0))
    later = replace(look(s, GOOD, now=T0 + 10**6 - 5), updated_at=T0 + 10**6 - 5)  # a look of the revision, now
    original = serve_store.Session
    read = original.from_json
    calls = []

    class CalledMeanwhile(original):
        @classmethod
        def from_json(cls, text: str) -> Any:  # the deleter reads the file: a whole call lands just then
            got = read(text)
            if not calls:
                calls.append(got)
                with store.lock(s.key, s.revision):
                    assert read(store.path(s.key, s.revision).read_text(encoding="utf-8")) == s
                    store.save(later)
            return got

    monkeypatch.setattr(serve_store, "Session", CalledMeanwhile)
    if deleter == "prune":
        assert store.prune(older_than_s=3600, now=T0 + 10**6, host_now=T0 + 10**6) == 0
    else:  # a new revision meets --max-revisions 1; the one there read as finished (it was, before the call)
        other = replace(fresh(), revision="other")
        with pytest.raises(StoreFull):
            store.create(other, finished=lambda old: True)
    monkeypatch.setattr(serve_store, "Session", original)
    assert calls == [s] and store.load(s.key, s.revision) == later


def test_the_pass_anchor_is_set_once_per_window_and_sets_the_next_looks_pass_ratio() -> None:
    s = look(fresh(), counts(20, 3000), now=T0 + 30, n=3000)
    assert s.pass_anchor_requests == -1.0, "before the interval no look can pass"
    s = look(s, counts(90, 6000), now=T0 + 61, n=6000)  # +1.0 point against a +1 limit: not shown within
    assert s.pass_anchor_requests == 6000.0 and s.pass_ratio(9000) == 1.5
    s = look(s, counts(135, 9000), now=T0 + 70, n=9000)
    assert s.verdict == INCONCLUSIVE
    assert s.pass_anchor_requests == 6000.0
    assert Session.from_json(s.to_json()) == s
    s2 = open_window(replace(s, advanced_at=T0 + 70), now=T0 + 80)
    assert s2.pass_anchor_requests == -1.0, "the next window has its own anchor"


def test_a_failed_or_stale_first_eligible_look_anchors_and_no_requests_never_do() -> None:
    s = look(fresh(), BAD, now=T0 + 61, n=5000)  # fails (1 of 2), but it could have passed
    assert s.failed_looks == 1 and s.pass_anchor_requests == 5000.0
    floorless = parse_policy({**RAW, "analysis": {**RAW["analysis"], "min_canary_requests": 0}})
    s = record_look(fresh(), judge(floorless, GOOD), canary_requests=0.0, now=T0 + 61, policy=floorless)[0]
    assert s.pass_anchor_requests == -1.0 and s.verdict != PASS


def test_one_process_per_state_directory(tmp_path: Path) -> None:
    """Two `canary serve` processes on one state directory lost each other's looks (a thread lock
    serialises one process only): the second is refused, naming the directory and the holder."""
    import os

    from canary.serve_store import SessionStore, StoreError

    first = SessionStore(tmp_path)
    first.hold()
    second = SessionStore(tmp_path)  # another open of the lock file: as another process's
    with pytest.raises(StoreError, match=rf"in use by another `canary serve` \(pid {os.getpid()}\)"):
        second.hold()
    first.release()
    second.hold()  # released (a process that ends releases it too): the next one starts
    second.release()
    assert not list(tmp_path.glob("*.json"))  # the lock is no session: prune and load never see it


def test_a_look_that_could_not_measure_neither_adds_a_failed_look_nor_ends_the_run() -> None:
    """Decision 159: a bad canary (10% errors) whose error-rate query timed out every other look (a loaded
    Prometheus, answering past --answer-within one time in two) was never failed: each unmeasured look (ERROR)
    reset the failed looks in a row, so every look was "failed look 1 of 2", and each window's deadline, met
    by an unmeasured look, held the window and began again. Exposed for as long as the caller kept asking."""
    two = parse_policy({**RAW, "checks": [*RAW["checks"],
                                          {"name": "errors-2", "kind": "error_rate", "max_increase_points": 2}]})
    s = fresh()
    for i, t in enumerate((10, 20, 30)):
        n = 5000 + 100 * i
        failing = counts(500 + 10 * i, n)["errors"] if i % 2 == 0 else MetricsUnavailable("timed out")
        s = look(s, {"errors": failing, "errors-2": counts(25, n)["errors"]}, now=T0 + t, n=n, policy=two)
        if t == 20:
            assert (s.verdict, s.failed_looks) == (INCONCLUSIVE, 1), s.reason  # it was 0: the run ended
    assert (s.verdict, s.failed_looks) == (FAIL, 2), s.reason
    # a measured look within the limits still ends the run, as before
    s = look(look(fresh(), BAD, now=T0 + 10, n=5000), counts(30, 5200), now=T0 + 20, n=5200)
    assert (s.verdict, s.failed_looks) == (INCONCLUSIVE, 0), s.reason


def test_a_pass_is_owed_once_to_each_other_label_that_looked_in_its_window_and_to_nothing_else() -> None:
    """Decision 273 (Argo's background and step analyses on one revision): the window's pass, taken by one label,
    is answered once to each other label that looked in that window; never to the label that took it, to one that
    did not look there (a later step reusing a label), to a call naming no step, after a failed look since, or
    more than `within_s` after the pass."""
    s = look(fresh(step="10"), GOOD, now=T0 + 10, step="10")
    s = look(s, counts(25, 5050), now=T0 + 15, n=5050, step="0")  # a label not seen: the window opens now
    s = look(s, counts(25, 5060), now=T0 + 40, n=5060, step="10")
    s = look(s, counts(26, 5100), now=T0 + 75, n=5100, step="0")
    assert s.verdict == PASS and s.pass_owed == ("10",) and s.passed_at == T0 + 75, s.reason
    for step, now in (("0", T0 + 85), ("", T0 + 85), ("50", T0 + 85), ("10", T0 + 136)):
        assert owed_pass(s, step=step, now=now, within_s=60) is None, step
    owed = owed_pass(s, step="10", now=T0 + 85, within_s=60)
    assert owed is not None and owed.pass_owed == () and owed.looks == s.looks
    assert (owed.window_started_at, owed.windows_closed, owed.window_evidence, owed.window_callers) == (
        T0 + 75, s.windows_closed + 1, {}, ("10",)), "the next window, from the pass, with this caller in it"
    assert owed_pass(owed, step="10", now=T0 + 90, within_s=60) is None, "owed once"
    failed = look(s, counts(520, 5200), now=T0 + 85, n=5200, step="0")  # a failed look in the next window
    assert failed.failed_looks == 1 and owed_pass(failed, step="10", now=T0 + 90, within_s=60) is None
    assert owed_pass(replace(s, verdict=FAIL), step="10", now=T0 + 85, within_s=60) is None


def test_a_pass_stays_grantable_through_the_same_ticks_looks_that_show_no_failure_and_no_longer() -> None:
    s = look(look(fresh(), GOOD, now=T0 + 30), counts(26, 5100), now=T0 + 60, n=5100)
    assert (s.verdict, s.passed_look, s.looked_at) == (PASS, 2, T0 + 60)
    grant = {"within_s": 60, "same_tick_s": 5}  # POLICY: interval 60 s, look_every 10 s
    assert pass_to_grant(s, granted_look=0, now=T0 + 60, **grant) == 2
    assert pass_to_grant(s, granted_look=2, now=T0 + 60, **grant) == 0  # granted already
    again = look(s, counts(26, 5110), now=T0 + 61, n=5110)  # the same tick's call made again: a window of 1 s
    assert (again.verdict, again.looks) == (INCONCLUSIVE, 3)
    assert pass_to_grant(again, granted_look=0, now=T0 + 62, **grant) == 2
    assert pass_to_grant(again, granted_look=2, now=T0 + 62, **grant) == 0
    assert pass_to_grant(again, granted_look=0, now=T0 + 121, **grant) == 0  # past its interval
    later = look(again, counts(30, 6000), now=T0 + 70, n=6000)  # the next tick's look: a hook not asked by then
    assert later.verdict == INCONCLUSIVE and pass_to_grant(later, granted_look=0, now=T0 + 71, **grant) == 0
    failed = look(again, BAD, now=T0 + 62, n=6000)  # shown failing since: the pass is nobody's any more
    assert (failed.failed_looks, failed.passed_at) == (1, None)
    assert pass_to_grant(failed, granted_look=0, now=T0 + 63, **grant) == 0
    reset = look(failed, counts(30, 7000), now=T0 + 63, n=7000)  # a later look ends the run of failed looks
    assert reset.failed_looks == 0 and pass_to_grant(reset, granted_look=0, now=T0 + 64, **grant) == 0
    # the pass's traffic increase granted, then a look: it judged the new weight, even within the "same tick"
    # span (a Flagger interval under half of look_every), and the pass no longer grants the promotion (317)
    moved = replace(s, traffic_granted_look=2, traffic_granted_at=T0 + 60.5)
    assert pass_to_grant(look(moved, counts(26, 5110), now=T0 + 61, n=5110), granted_look=0, now=T0 + 62, **grant) == 0
    # the same tick's rollout call made again before the traffic increase: both hooks still have the pass (304)
    before = look(s, counts(26, 5110), now=T0 + 61, n=5110)
    assert pass_to_grant(replace(before, traffic_granted_look=2, traffic_granted_at=T0 + 61.5), granted_look=0,
                         now=T0 + 62, **grant) == 2


def test_a_caller_asking_more_often_than_half_of_look_every_gets_only_the_last_looks_pass() -> None:
    """Decision 335: with only confirm-promotion configured, Flagger moves the weight itself after each `rollout`
    answer of 200 (inconclusive too). Its `interval` under half of `look_every` put the next tick's look, at the new
    weight, in the "same tick" span of decision 304, and that tick's confirm-promotion was granted on the pass of
    the weight before (decision 317 guards only a move the traffic hook granted). Looks closer than `look_every / 2`
    show such a caller: a pass that came that soon after the look before it is granted only as the last look."""
    grant = {"within_s": 60, "same_tick_s": 5}  # POLICY: interval 60 s, look_every 10 s
    s, n = fresh(), 5000
    for t in range(4, 61, 4):  # Flagger's interval 4 s
        n += 100
        s = look(s, counts(25 * n / 5000, n), now=T0 + t, n=n)
    assert s.verdict == PASS and pass_to_grant(s, granted_look=0, now=T0 + 60, **grant) == s.looks
    nxt = look(s, counts(26, 5100), now=T0 + 64, n=n + 100)  # the next tick, at the weight Flagger moved to
    assert nxt.verdict == INCONCLUSIVE and pass_to_grant(nxt, granted_look=0, now=T0 + 64.5, **grant) == 0  # 15
    assert s.pass_gap_s == 4 and Session.from_json(s.to_json()) == s
    assert Session.from_json(s.to_json().replace('"pass_gap_s":4.0,', "")).pass_gap_s is None  # older files
    # a caller at the documented interval (>= look_every) still gets the same tick's pass after a call made again
    ok = look(look(fresh(), GOOD, now=T0 + 30), counts(26, 5100), now=T0 + 60, n=5100)
    again = look(ok, counts(26, 5110), now=T0 + 61, n=5110)
    assert again.pass_gap_s == 30 and pass_to_grant(again, granted_look=0, now=T0 + 62, **grant) == 2
    # a gate's look before each hook's (decision 304): the pass on the gate's look, a tick after the last look
    gate = look(look(fresh(), GOOD, now=T0 + 30.1), counts(26, 5100), now=T0 + 60, n=5100)
    after = look(gate, counts(26, 5110), now=T0 + 60.1, n=5110)
    assert pass_to_grant(after, granted_look=0, now=T0 + 60.2, **grant) == 2


def test_a_pass_whose_callers_ticks_are_not_known_grants_the_promotion_only_as_the_last_look() -> None:
    """Decision 440: decision 335 reads a caller's ticks from the gap before the pass; the first look's pass has
    none, and one after a pause (Flagger restarting, `canary serve` down) shows the pause. A Flagger interval of 4 s
    (under half of look_every, no traffic hook): the pass at the weight before the last, Flagger moves to the last
    on the 200, and the next tick's look 4 s later took that pass for the same tick's: promoted on it."""
    grant = {"within_s": 60, "same_tick_s": 5, "promotion": True}  # POLICY: interval 60 s, look_every 10 s
    first = look(fresh(), GOOD, now=T0 + 60)  # the caller's first look, a minute after pre-rollout: it passes
    assert first.verdict == PASS and (first.pass_gap_s, first.pass_ticks_s) == (None, None)
    nxt = look(first, counts(26, 5100), now=T0 + 64, n=5100)  # the next tick, at the weight Flagger moved to
    assert pass_to_grant(nxt, granted_look=0, now=T0 + 64.5, **grant) == 0  # 1 without the change
    assert pass_to_grant(nxt, granted_look=0, now=T0 + 64.5, **{**grant, "promotion": False}) == 1  # traffic: 304
    assert pass_to_grant(first, granted_look=0, now=T0 + 60.5, **grant) == 1  # the last look's pass, as before
    s, n = fresh(), 5000
    for t in (4, 8, 12):  # ticks 4 s apart, then a pause of the caller, then a pass
        n += 100
        s = look(s, counts(25 * n / 5000, n), now=T0 + t, n=n)
    n += 3000
    paused = look(s, counts(25 * n / 5000, n), now=T0 + 70, n=n)
    assert paused.verdict == PASS and (paused.pass_gap_s, paused.pass_ticks_s) == (58, 4)
    nxt = look(paused, counts(25 * (n + 100) / 5000, n + 100), now=T0 + 74, n=n + 100)
    assert pass_to_grant(nxt, granted_look=0, now=T0 + 74.5, **grant) == 0  # 4 without the change
    # a caller whose ticks are known to be far enough apart keeps decision 304's grant after a call made again
    ok = look(look(look(fresh(), GOOD, now=T0 + 20), counts(26, 5050), now=T0 + 40, n=5050),
              counts(26, 5100), now=T0 + 60, n=5100)
    again = look(ok, counts(26, 5110), now=T0 + 61, n=5110)
    assert ok.pass_ticks_s == 20 and pass_to_grant(again, granted_look=0, now=T0 + 62, **grant) == 3
    assert Session.from_json(ok.to_json()) == ok
    older = Session.from_json(again.to_json().replace('"pass_ticks_s":20.0,', ""))  # a file of an earlier version
    assert older.pass_ticks_s is None and pass_to_grant(older, granted_look=0, now=T0 + 62, **grant) == 0

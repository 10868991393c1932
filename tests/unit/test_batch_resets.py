"""Counter resets per series, and step-start snapshots bound to what they measure (issue 8). No Prometheus.

Snapshots keep every series apart (here: one per pod), so one pod restarting
under a sum of several is seen as a reset of THAT series: it counts from its
restart, as `increase()` does, and the other pods keep their own differences.
Numbers are hand-computed; `FakeProm` (from test_batch) answers like
`last_over_time(...)`: every series with all its labels.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from canary.analysis.judge import judge
from canary.errors import ConfigError, NoData
from canary.metrics import batch as b
from canary.model import Counts, Histogram, Outcome, Target
from tests.unit.test_batch import T, FakeProm, Sample, chk, hist, policy, snap

ERR_POLICY = [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]


def pods(version: str, **per_pod: tuple[float, float]) -> list[Sample]:
    """pod -> (successes, errors), cumulative: the model family's request counters of one arm."""
    m = {"model_name": "rec", "model_version": version}
    return [s for pod, (ok, err) in per_pod.items()
            for s in (("model_requests_total", {**m, "outcome": "success", "pod": pod}, ok),
                      ("model_requests_total", {**m, "outcome": "error", "pod": pod}, err))]


def sum_then_diff(base: b.Snapshot, now: b.Snapshot, pol: Any, arm: str) -> tuple[float, float]:
    """What the former format did: sums per arm, then now - base, or now alone if a sum went down."""
    (e0, n0), (e1, n1) = ((s.arm(pol, chk(pol, "err"), T, arm).events, s.requests(pol, T, arm))  # type: ignore[union-attr]
                          for s in (base, now))
    assert n0 is not None and n1 is not None
    return (e1, n1) if n1 < n0 or e1 < e0 else (e1 - e0, n1 - n0)


# -- the issue's scenario -----------------------------------------------------------------


def issue_8(c2_before: tuple[float, float]) -> tuple[Any, b.Snapshot, b.Snapshot]:
    """Two canary pods at 50 req/s, 5% errors since the step began (0% before); stable two pods at 1%.
    Window 60 s; canary pod c2 restarts 30 s in. c1 served 15,000 requests before the step."""
    pol = policy(checks=ERR_POLICY)
    base = snap(pods("v1", s1=(9_900, 100), s2=(4_950, 50)) + pods("v2", c1=(15_000, 0), c2=c2_before), pol, at=1000)
    now = snap(pods("v1", s1=(9_900 + 2_970, 100 + 30), s2=(4_950 + 2_970, 50 + 30))
               + pods("v2", c1=(15_000 + 2_850, 150), c2=(1_425, 75)), pol, at=1060)  # c2: 30 s since its restart
    return pol, base, now


def test_issue_8_one_pod_restarting_under_the_sum_gives_the_canary_its_5_percent() -> None:
    pol, base, now = issue_8(c2_before=(6_000, 0))
    # the former sums: 21,000 -> 19,500 requests went down, so the window was "everything now": 225 / 19,500
    assert sum_then_diff(base, now, pol, "canary") == (225, 19_500)
    assert 225 / 19_500 == pytest.approx(0.0115, abs=1e-4)
    stable, canary = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert stable == Counts(events=60, total=6_000)  # 1%: no reset, plain differences
    assert canary == Counts(events=150 + 75, total=3_000 + 1_500)  # c1's 60 s + c2 since its restart
    assert canary.events / canary.total == pytest.approx(0.05)
    assert b.arm_delta(pol, chk(pol, "err"), T, "canary", now, base).reset
    assert not b.arm_delta(pol, chk(pol, "err"), T, "stable", now, base).reset
    assert b.requests_delta(pol, T, now, base) == (6_000, 4_500)
    # what the judge makes of it: 5% against 1% fails; the former 1.15% did not
    assert judge(pol, {"err": (stable, canary)}).outcome is Outcome.FAIL
    former = Counts(events=225, total=19_500)
    assert judge(pol, {"err": (stable, former)}).outcome is not Outcome.FAIL


def test_issue_8_a_reset_the_sum_hid_entirely() -> None:
    """c2 had served fewer requests before: the sums stay above the step-start snapshot, so the former format saw
    no reset at all and subtracted c2's old counts from the growth (2,420 requests, 145 errors)."""
    pol, base, now = issue_8(c2_before=(2_000, 80))
    assert sum_then_diff(base, now, pol, "canary") == (145, 2_420)
    _, canary = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert canary == Counts(events=225, total=4_500)


def test_a_restart_the_totals_hide_is_told_to_the_rollout() -> None:
    """One canary pod of two restarting (issue 8): the canary's requests since the step-start snapshot
    still grow from look to look (3,000 at a look before c2's restart, 30 s in; 4,500 at 60 s), so a
    count that went down cannot show it, and c2's requests before its restart are no longer in the
    window: the look's data are no superset of the earlier look's. `requests_restarted` says so
    (decision 163: the rollout opens a new window); a stable pod's restart too; a window without
    one does not."""
    pol, base, now = issue_8(c2_before=(6_000, 0))
    earlier = snap(pods("v1", s1=(9_900 + 1_485, 115), s2=(4_950 + 1_485, 65))
                   + pods("v2", c1=(15_000 + 1_425, 75), c2=(6_000 + 1_425, 75)), pol, at=1030)
    assert b.requests_delta(pol, T, earlier, base)[1] == 3_000 < b.requests_delta(pol, T, now, base)[1]
    assert b.requests_restarted(pol, T, now, base) and not b.requests_restarted(pol, T, earlier, base)
    stable_pod = snap(pods("v1", s1=(9_900 + 2_970, 130), s2=(10, 0))
                      + pods("v2", c1=(15_000 + 2_850, 150), c2=(6_000 + 1_500, 75)), pol, at=1060)
    assert b.requests_restarted(pol, T, stable_pod, base)
    assert not b.requests_restarted(pol, T, now, now)


# -- series born, vanished, partly reset ----------------------------------------------------


def test_born_series_count_from_zero_and_vanished_series_add_nothing() -> None:
    pol = policy(checks=ERR_POLICY)
    base = snap(pods("v1", a=(100, 1), gone=(500, 5)) + pods("v2", a=(10, 0)), pol)
    now = snap(pods("v1", a=(190, 2), new=(30, 3)) + pods("v2", a=(40, 2)), pol)
    stable, canary = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert stable == Counts(events=1 + 3, total=91 + 33)  # a: +91; new: all of its 33; gone: nothing
    assert canary == Counts(events=2, total=32)
    assert not b.arm_delta(pol, chk(pol, "err"), T, "stable", now, base).reset  # born is not a reset


def test_only_the_series_that_went_down_is_reset() -> None:
    pol = policy(checks=ERR_POLICY)
    # pod a's error counter restarted (3 < 5) while its success counter did not (it outgrew its step-start snapshot)
    base = snap(pods("v1", a=(100, 5), b=(100, 5)) + pods("v2", a=(1, 0)), pol)
    now = snap(pods("v1", a=(150, 3), b=(200, 9)) + pods("v2", a=(2, 0)), pol)
    stable, _ = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert stable == Counts(events=3 + 4, total=(50 + 3) + (100 + 4))


def test_histogram_reset_of_one_pod_keeps_the_others_difference() -> None:
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 100}])
    def arm(version: str, **per_pod: list[float]) -> list[Sample]:
        m = {"model_name": "rec", "model_version": version}
        return [s for pod, c in per_pod.items() for s in hist("model_inference_duration_seconds_bucket"[:-7],
                                                               {**m, "pod": pod}, [0.01, 0.1], c)] + \
            [("model_requests_total", {**m, "outcome": "success", "pod": "x"}, 1.0)]
    base = snap(arm("v1", p=[10, 20, 30], q=[100, 200, 300]) + arm("v2", p=[0, 0, 0]), pol)
    # q restarted and has served 1, 2, 4 since; its +Inf count 4 < 300 and every bucket went down
    now = snap(arm("v1", p=[15, 30, 50], q=[1, 2, 4]) + arm("v2", p=[1, 1, 1]), pol)
    d = b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base)
    assert d.reset and d.data == Histogram((10.0, 100.0, math.inf), (5 + 1, 10 + 2, 20 + 4))
    # a sum over pods (110, 220, 330) -> (16, 32, 54) would have been "all of now": (16, 32, 54)


def test_histogram_pod_with_a_partial_reset_counts_as_restarted() -> None:
    """A lower bucket went down though the total rose: counters never go down, so the pod restarted."""
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 100}])
    m = {"model_name": "rec", "model_version": "v1", "pod": "p"}
    base = snap(hist("model_inference_duration_seconds", m, [0.01, 0.1], [5, 10, 20]), pol)
    now = snap(hist("model_inference_duration_seconds", m, [0.01, 0.1], [1, 2, 25]), pol)
    d = b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base)
    assert d.reset and d.data == Histogram((10.0, 100.0, math.inf), (1, 2, 25))


def test_features_reset_per_series_group() -> None:
    pol = policy(checks=[{"name": "miss", "kind": "feature_missing", "max_rate_pct": 5}])
    def feats(pod: str, missing: float, present: float) -> list[Sample]:
        m = {"model_name": "rec", "model_version": "v1", "pod": pod}
        return [("model_features_total", {**m, "state": "missing"}, missing),
                ("model_features_total", {**m, "state": "present"}, present)]
    def requests(n: float) -> list[Sample]:
        return [("model_requests_total", {"model_name": "rec", "model_version": "v1", "outcome": "ok"}, n)]
    base = snap(feats("a", 1, 100) + feats("b", 10, 90) + requests(40), pol)
    # a restarted: its missing counter (2) outgrew its step-start snapshot (1), but present (50 < 100) did not
    now = snap(feats("a", 2, 50) + feats("b", 15, 135) + requests(60), pol)
    d = b.arm_delta(pol, chk(pol, "miss"), T, "stable", now, base)
    # 7 of 102 values missing (a counted from its restart), over the arm's 20 requests
    assert d.reset and d.data.total == 20 and d.data.events == pytest.approx(7 / 102 * 20)


# -- series identity and the query ----------------------------------------------------------


def test_series_id_ignores_the_rollout_labels_and_tells_pods_apart() -> None:
    fam = b.families(policy(checks=ERR_POLICY))[0]
    one = {"__name__": "model_requests_total", "model_name": "rec", "model_version": "v1", "pod": "a", "outcome": "ok"}
    assert fam.series_id(one) == fam.series_id({**one, "model_name": "x", "model_version": "v9", "__name__": "y"})
    assert fam.series_id(one) != fam.series_id({**one, "pod": "b"})
    assert fam.series_id(one) != fam.series_id({**one, "outcome": "error"})
    assert len(fam.series_id(one)) == 12
    bucket = b.families(policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 1}]),
                        policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 1}]).checks[0])[0]
    assert bucket.extra == "le" and bucket.series_id({"le": "0.1", "pod": "a"}) == bucket.series_id({"le": "+Inf", "pod": "a"})


def test_the_query_keeps_series_apart_and_bridges_failed_scrapes() -> None:
    pol = policy(checks=ERR_POLICY)
    plan = b.BatchMetrics(FakeProm()).plan([b.Want(pol, T)])  # type: ignore[arg-type]
    assert plan and all(t.startswith("last_over_time(") and t.endswith("[10m])") and "sum" not in t
                        for ts in plan.values() for t in ts)
    short = b.BatchMetrics(FakeProm(), lookback="2m").plan([b.Want(pol, T)])  # type: ignore[arg-type]
    assert all(t.endswith("[2m])") for ts in short.values() for t in ts)


def test_families_sharing_one_query_send_it_once() -> None:
    """Two label shapes of one metric (the arm in model_version or in version) that send the same query
    text send it once, and each family reads its own labels from the one answer. Every query is filtered
    to its rollouts (issue 10), so here the shapes' texts differ in their matchers: two queries each."""
    a, c = policy(checks=ERR_POLICY), policy(checks=ERR_POLICY, arm_label="version")
    series = pods("v1", a=(10, 1)) + [("model_requests_total", {"model_name": "rec", "version": "v2", "pod": "z"}, 7.0)]
    got = []
    for wants in ([b.Want(a, T)], [b.Want(c, T)], [b.Want(a, T), b.Want(c, T)]):
        batch = b.BatchMetrics(FakeProm(series))  # type: ignore[arg-type]
        got.append((batch.snapshot(wants), batch.queries_last, len(batch.plan(wants))))
    assert [n for _, n, _ in got] == [3, 3, 6] and got[2][2] == 6  # 6 families, each filtered on its labels
    assert got[2][0].requests(a, T, "stable") == 11 and got[2][0].requests(c, T, "canary") == 7


# -- step-start snapshots bound to what they measure -------------------------------------------------


def test_restrict_binds_the_step_start_and_it_survives_persistence() -> None:
    pol, base, now = issue_8(c2_before=(6_000, 0))
    mine = base.restrict(pol, T, step_started_at=990.0)
    assert mine.bound == b.Binding("ml", "rec", "v1", "v2", 990.0) and mine.taken_at == 1000
    stored = b.Snapshot.from_json(mine.to_json())
    assert stored == mine and stored.bound == mine.bound
    assert stored.check_step_start(T, step_started_at=990.0) is stored
    assert b.measure_delta(pol, chk(pol, "err"), T, now, stored) == b.measure_delta(pol, chk(pol, "err"), T, now, base)
    with pytest.raises(b.UnusableStepStart, match="step started at 990.0, not 1050"):
        stored.check_step_start(T, step_started_at=1050.0)
    with pytest.raises(b.UnusableStepStart, match="not bound"):
        base.check_step_start(T)


@pytest.mark.parametrize("other", [
    Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v3"),
    Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v0", canary_version="v2"),
    Target(namespace="other", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2"),
])
def test_a_step_start_for_another_version_is_refused_not_counted_from_zero(other: Target) -> None:
    """Without the binding, the canary v3's series would be 'born in the window': all its history counted."""
    pol, base, now = issue_8(c2_before=(6_000, 0))
    mine = base.restrict(pol, T)
    with pytest.raises(b.UnusableStepStart, match="taken for ml/rec v1 -> v2"):
        b.measure_delta(pol, chk(pol, "err"), other, now, mine)
    with pytest.raises(b.UnusableStepStart):
        b.requests_delta(pol, other, now, mine)
    with pytest.raises(b.UnusableStepStart):
        mine.check_step_start(other)


def test_a_step_start_newer_than_now_is_refused() -> None:
    pol, base, now = issue_8(c2_before=(6_000, 0))
    with pytest.raises(b.UnusableStepStart, match="after the snapshot"):
        b.measure_delta(pol, chk(pol, "err"), T, base, now)


def test_an_old_format_snapshot_is_an_unusable_step_start() -> None:
    old = {"version": 1, "taken_at": 5.0, "series": {
        "sum by (model_name, model_version) (model_requests_total)": [["rec", "v1", "", 100.0]]}}
    with pytest.raises(b.UnusableStepStart, match="format 1 .* take a new step-start snapshot"):
        b.Snapshot.from_dict(old)
    with pytest.raises(ConfigError):  # what callers that only knew ConfigError catch
        b.Snapshot.from_json(json.dumps(old))
    bad = {"version": 2, "taken_at": 5.0, "series": {"k": [["rec", "v1", {"abc": {"": "NaN"}}]]}}
    with pytest.raises(b.UnusableStepStart):
        b.Snapshot.from_dict(bad)


def test_the_persisted_step_start_stays_compact() -> None:
    """Rollout labels once per arm and family, a 12-character id per series, values per bucket."""
    pol = policy()
    lat = [float(i) for i in range(1, 4)]
    series = [s for pod in range(20) for v in ("v1", "v2") for s in hist(
        "model_inference_duration_seconds", {"model_name": "rec", "model_version": v, "pod": f"rec-7d9f-{pod:05d}"},
        [0.01, 0.1], lat)]
    mine = snap(series + pods("v1", a=(1, 0)) + pods("v2", a=(1, 0)), pol).restrict(pol, T)
    text = mine.to_json()
    assert text.count('"v2"') <= len(mine.series) + 1  # + the binding
    assert "rec-7d9f" not in text  # pod names are hashed
    assert len(text) < 4_000


def test_no_data_when_nothing_moved_under_any_series() -> None:
    pol, base, _ = issue_8(c2_before=(6_000, 0))
    with pytest.raises(NoData, match="no requests in the window"):
        b.measure_delta(pol, chk(pol, "err"), T, base, base)


def test_pods_of_one_arm_with_different_layouts_are_summed_on_the_bounds_all_share() -> None:
    """Issue 9, 4b within an arm: pod p exports le 0.01/0.1, pod q (a newer exporter) 0.05/0.1.
    At 10 ms only p is known: summing there would drop q's observations, so the arm keeps the
    bounds every pod has (100 ms and +Inf), with every observation counted."""
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 100}])
    m = {"model_name": "rec", "model_version": "v1"}

    def arm(p: list[float], q: list[float]) -> list[Sample]:
        return hist("model_inference_duration_seconds", {**m, "pod": "p"}, [0.01, 0.1], p) + \
            hist("model_inference_duration_seconds", {**m, "pod": "q"}, [0.05, 0.1], q)
    base = snap(arm([0, 0, 0], [0, 0, 0]), pol)
    now = snap(arm([10, 20, 30], [40, 60, 80]), pol)
    d = b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base)
    assert d.data == Histogram((100.0, math.inf), (20 + 60, 30 + 80))

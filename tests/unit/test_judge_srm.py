"""A canary request count far from what the traffic split implies is no evidence (decision 72).

A policy with a single request-counting check (Triton's preset, an error-rate-only policy) had
nothing to compare a jumped counter with: a success counter that jumped by 1e12 read a 10%-error
canary as 1e-7% errors and passed it. Istio splits requests by weight, so within one step the
canary's requests are about w/(100-w) of the stable's; ten times more or fewer makes the checks on
those counts unable to pass (a FAIL stands), in the judge, `canary judge --input` and `promote`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from canary import rollout as rl
from canary.analysis import judge as J
from canary.model import Counts, Histogram, Outcome, STABLE_ONLY
from canary.policy import parse_policy
from canary.runner import Runner
from tests.fakes import FakeClock, FakeMetrics, FakeRouter
from tests.unit.test_judge_attack import _cli
from tests.unit.test_runner import TARGET

ERRORS = {"steps": [10, 50, 100], "analysis": {"interval": "10s", "look_every": "2s", "min_canary_requests": 50},
          "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]}
POLICY = parse_policy(ERRORS)
STABLE = Counts(90, 90_000)  # 0.1% errors
JUMPED = Counts(1_000, 1e12)  # 10% errors of 10,000 requests, the success counter up by 1e12


def _err(canary: Counts, weight: int | None) -> Any:
    return J.judge(POLICY, {"err": (STABLE, canary)}, canary_weight=weight).results[0]


def test_a_jumped_counter_in_a_single_check_policy_is_never_a_pass() -> None:
    assert _err(JUMPED, None).outcome is Outcome.PASS  # what it read before: 1e-7% errors
    r = _err(JUMPED, 10)
    assert r.outcome is Outcome.INCONCLUSIVE, r.reason
    assert "the canary counted 1,000,000,000,000 requests where its 10% of the traffic and the stable's 90,000 imply about " \
           "10,000" in r.reason, r.reason
    assert all(t["info_window"] == 0 for t in r.extra["tests"])  # the inflated count weighs against nothing later


@pytest.mark.parametrize(("canary", "weight"), [
    (Counts(10, 10_000), 10),  # as split
    (Counts(50, 50_000), 10),  # 5x the split: traffic that bypasses the VirtualService, scrape lag
    (Counts(500, 500_000), 10),  # 50x: a mirror to the canary at a 2% step, a QA route beside a small step
    (Counts(2, 2_000), 10),  # a fifth
    (Counts(10, 10_000), 100),  # all traffic on the canary (no split to compare with)
])
def test_counts_near_the_split_are_judged_as_before(canary: Counts, weight: int) -> None:
    assert _err(canary, weight).outcome is _err(canary, None).outcome is Outcome.PASS


def test_below_the_floor_a_count_is_sampling_noise() -> None:
    r = _err(Counts(0, 60), 1)  # 909 expected at 1%, 60 seen: read as 100, within 10x
    assert r.outcome is _err(Counts(0, 60), None).outcome and "where its" not in r.reason


@pytest.mark.parametrize("canary", [Counts(0, 90), Counts(1e9, 1e10)], ids=["too few", "too many"])
def test_a_breach_still_fails_and_too_few_requests_cannot_pass(canary: Counts) -> None:
    r = J.judge(POLICY, {"err": (Counts(900, 900_000), canary)}, canary_weight=10).results[0]
    assert r.outcome is (Outcome.INCONCLUSIVE if canary.events == 0 else Outcome.FAIL), r.reason
    assert "where its 10% of the traffic" in r.reason or r.outcome is Outcome.FAIL


def test_a_latency_only_policy_is_guarded_too() -> None:
    p = parse_policy({**ERRORS, "checks": [{"name": "lat", "kind": "latency", "max_ms": 250}]})
    stable = Histogram((100, 250, float("inf")), (80_000, 90_000, 90_000))
    canary = Histogram((100, 250, float("inf")), (9e8, 1e9, 1e9))
    assert J.judge(p, {"lat": (stable, canary)}).outcome is Outcome.PASS
    assert J.judge(p, {"lat": (stable, canary)}, canary_weight=10).outcome is Outcome.INCONCLUSIVE


def test_canary_judge_reads_the_weight_and_refuses_a_bad_one(tmp_path: Path) -> None:
    doc = {"policy": ERRORS, "checks": {"err": {"stable": {"events": 90, "total": 90000},
                                                "canary": {"events": 1000, "total": 1e12}}}}
    assert _cli(tmp_path, json.dumps(doc)).exit_code == 0
    got = _cli(tmp_path, json.dumps({**doc, "canary_weight": 10}))
    assert got.exit_code == 4 and json.loads(got.stdout)["canary_weight"] == 10, got.output
    for bad in (101, -1, 10.5, True, "10"):
        got = _cli(tmp_path, json.dumps({**doc, "canary_weight": bad}))
        assert got.exit_code == 2 and "canary_weight: must be an integer from 0 to 100" in got.output, got.output


class _Jumped(FakeMetrics):
    """The canary's success counter jumps by 1e12 while the canary serves 10% errors."""

    def measure(self, policy: Any, check: Any, target: Any, *, window_s: int) -> tuple[Any, Any]:
        ns, nc = self._n(window_s)
        return Counts(ns * 0.001, ns), Counts(nc * 0.1, nc + 1e12)


def test_promote_does_not_promote_on_a_jumped_counter() -> None:
    clock, router = FakeClock(), FakeRouter()
    res = Runner(policy=POLICY, target=TARGET, router=router, metrics=_Jumped(router, clock), clock=clock).run()
    assert res.state.phase != rl.PROMOTED and router.weights == STABLE_ONLY, res.state.reason
    assert "where its 10% of the traffic" in json.dumps(res.state.last_verdict), res.state.last_verdict

"""`canary plan`'s rollout times against the state machine's own looks, where look_every does not
divide the interval or the deadline (decision 300)."""

from __future__ import annotations

import pytest

from canary import rollout as rl
from canary.analysis.plan import plan
from canary.model import CheckResult, Outcome, Verdict
from canary.policy import parse_policy
from canary.reconcile import next_look_at


def _policy(interval: str, look_every: str, deadline: str, steps: list[int]) -> object:
    return parse_policy({"steps": steps,
                         "analysis": {"interval": interval, "look_every": look_every, "min_canary_requests": 1},
                         "failure": {"no_data_deadline": deadline},
                         "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})


def _run(policy: object, outcome: Outcome) -> tuple[float, str]:
    """Every look at its due time (`reconcile.next_look_at`) with `outcome`, until the rollout leaves
    PROGRESSING: (seconds from the start, the phase it entered)."""
    s, _ = rl.new_rollout(model="m", stable_version="v1", canary_version="v2", now=0.0)
    s, _ = rl.transition(s, rl.Begin(0.0), policy)
    verdict = Verdict.combine([CheckResult(check="err", kind="error_rate", outcome=outcome, reason="r",
                                           stable_value=0.5, canary_value=0.5)])
    now = 0.0
    while s.phase == rl.PROGRESSING:
        now = next_look_at(policy, s)
        s, _ = rl.transition(s, rl.Looked(now, verdict, 1000.0 * now), policy)
    return now, s.phase


@pytest.mark.parametrize("interval, look_every, deadline", [
    ("5m", "2m", "3m"),  # passes at 6m; deadline 8m on the grid
    ("5m", "4m", "1m"),  # passes at 8m; ends at 8m
    ("100s", "30s", "50s"),  # passes at 120s; ends at 150s
    ("5m", "30s", "10m"),  # divides: the interval and the deadline themselves
])
def test_the_planned_times_are_when_the_state_machines_looks_pass_and_end_a_step(interval, look_every, deadline):
    """`plan` said "600 s if each passes at its interval" for 5m steps looked at every 2m, where each
    step can pass only at its third look, at 6m: 720 s (and its deadline at the first look past it)."""
    one = _policy(interval, look_every, deadline, [10, 100])
    passed_at, phase = _run(one, Outcome.PASS)
    assert phase == rl.PROMOTING
    ended_at, phase = _run(one, Outcome.INCONCLUSIVE)
    assert phase == rl.ROLLED_BACK
    p = plan(one, rps=100)
    assert (p.seconds, p.longest_s) == (pytest.approx(passed_at), pytest.approx(ended_at))
    three = plan(_policy(interval, look_every, deadline, [5, 25, 50, 100]), rps=100)
    assert (three.seconds, three.longest_s) == (pytest.approx(3 * passed_at), pytest.approx(3 * ended_at))
    assert three.looks * one.analysis.look_every == pytest.approx(three.seconds)

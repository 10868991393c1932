"""The failure side at any number of looks: pooled, anytime-valid evidence (issue 9, defects 2 and 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.analysis import judge as J
from canary.analysis import sequential as S
from canary.model import Counts, Outcome
from canary.policy import parse_policy

ERR = {"name": "err", "kind": "error_rate", "max_increase_points": 1}


def _policy(alpha: float = 0.01):
    return parse_policy({"steps": [5, 25, 50, 100], "analysis": {"interval": "60s", "look_every": "10s",
                                                                  "min_canary_requests": 100, "alpha": alpha},
                         "checks": [ERR]})


def test_anytime_p_is_one_without_evidence_and_falls_with_it():
    assert S.anytime_p(0.0, 0.0) == pytest.approx(1.0)
    ps = [S.anytime_p(s, 1000.0) for s in (-50.0, 0.0, 50.0, 100.0, 150.0, 200.0)]
    assert ps == sorted(ps, reverse=True) and ps[0] == 1.0 and ps[-1] < 1e-6
    # the boundary in z is the level's: at it the anytime p equals the level
    for info in (50.0, 2_000.0, 1e6):
        z = S.z_boundary(info, 0.002)
        assert S.anytime_p(z * math.sqrt(info), info) == pytest.approx(0.002, rel=1e-4)
    assert S.z_boundary(0.0, 0.01) == math.inf
    with pytest.raises(ValueError):
        S.log_mixture(1.0, -1.0)


def test_brownian_motion_at_the_limit_crosses_at_most_alpha_however_often_and_whenever_looked_at():
    """Ville's inequality, checked: 4,000 paths, 300 looks at irregular information times each,
    split into windows whose (S, I) are pooled as the rollout state does."""
    rng = np.random.default_rng(7)
    a, paths, looks = 0.05, 4_000, 300
    steps = rng.exponential(40.0, size=(paths, looks))  # irregular information increments (requests)
    info = np.cumsum(steps, axis=1)
    s = np.cumsum(rng.standard_normal((paths, looks)) * np.sqrt(steps), axis=1)  # drift 0: at the limit
    crossed = np.zeros(paths, bool)
    for j in range(looks):
        crossed |= [S.anytime_p(float(x), float(i)) <= a for x, i in zip(s[:, j], info[:, j])]
    assert crossed.mean() <= a  # Ville: <= a for continuous monitoring; discrete looks cross less


def test_the_judge_at_the_margin_rolls_back_at_most_alpha_over_many_windows_and_looks():
    """The whole path the controller takes: per-look judge on each window's cumulative counts,
    windows closed into the prior as the rollout state folds them, 3 windows x 40 looks.
    A canary exactly 1 point worse than stable (the limit) must fail in <= alpha of rollouts."""
    rng = np.random.default_rng(11)
    alpha, runs = 0.05, 300
    p = _policy(alpha)
    failed = 0
    for _ in range(runs):
        prior: dict[str, tuple[float, float]] = {}
        hit = False
        for _window in range(3):
            xs = ns = xc = nc = 0
            last: dict[str, tuple[float, float]] = {}
            for _look in range(40):
                ns, nc = ns + 900, nc + 100
                xs += rng.binomial(900, 0.01)
                xc += rng.binomial(100, 0.02)
                v = J.judge(p, {"err": (Counts(xs, ns), Counts(xc, nc))}, prior=prior)
                hit |= v.outcome is Outcome.FAIL
                last = v.window_evidence()
            for key, (s_w, i_w) in last.items():
                s0, i0 = prior.get(key, (0.0, 0.0))
                prior[key] = (s0 + s_w, i0 + i_w)
        failed += hit
    assert failed / runs <= alpha


def test_evidence_of_earlier_windows_counts():
    """Two steps each +1.9 points at 3,000 canary requests: neither alone is enough at 1%, together they are."""
    p = _policy(0.01)
    data = {"err": (Counts(300, 30_000), Counts(87, 3_000))}  # 1% vs 2.9%
    first = J.judge(p, data)
    assert first.outcome is not Outcome.FAIL, first.reason()
    pooled = J.judge(p, data, prior=first.window_evidence())
    assert pooled.outcome is Outcome.FAIL, pooled.reason()
    t = pooled.results[0].extra["tests"][0]
    assert t["info"] == pytest.approx(2 * t["info_window"]) and t["windows_before"] is True


def test_a_verdict_never_turns_back_as_looks_go_on():
    """A canary steadily 3 points worse: once a look fails, every later look fails too, at look 5 or
    look 500 (planned-look boundaries made looks past the plan nearly untestable). Whole error counts
    (4 of every 100 canary requests, 9 of every 900 stable ones): counts of 20k requests rounded 0.8k
    canary errors up and down (33.6 to 34 at 840 requests, 34.4 to 34 at 860), so the canary was not
    steady, and with the normal mixture at 0.9 of the level (decision 149) look 42 failed and 43 did not."""
    p = _policy(0.01)
    outcomes = []
    for k in range(1, 501):
        n = 100 * k
        outcomes.append(J.judge(p, {"err": (Counts(9 * k, 9 * n), Counts(4 * k, n))}).outcome)
    first = outcomes.index(Outcome.FAIL)
    assert first < 50 and all(o is Outcome.FAIL for o in outcomes[first:])


def test_a_window_that_cannot_decide_adds_no_information():
    p = parse_policy({"steps": [10, 100], "checks": [{"name": "lat", "kind": "latency", "max_ms": 900}]})
    from canary.model import Histogram

    h = Histogram((100.0, 500.0, math.inf), (10.0, 20.0, 30.0))  # no bound at or above 900 ms
    v = J.judge(p, {"lat": (h, h)})
    assert v.window_evidence() == {}


def test_plausible_evidence_is_what_windows_can_add_up_to() -> None:
    from canary.analysis.sequential import plausible, window_z

    assert plausible(0.0, 0.0) and plausible(100.0, 2727.0) and plausible(-3 * 50.0, 2500.0)
    assert not plausible(1000.0, 0.0) and not plausible(-1e9, 1.0) and not plausible(1.0, -1.0)
    assert not plausible(math.nan, 1.0) and not plausible(1.0, math.inf)
    for p in (1.0, 1e-300, 0.5):  # every window the judge adds stays inside, at the smallest information
        z = window_z(p)
        assert plausible(z * math.sqrt(0.5), 0.5)

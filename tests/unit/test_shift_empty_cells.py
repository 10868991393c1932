"""PSI and the cells one arm never hits (a judge attacker, nineteenth session).

PSI is infinite when one arm's share of a cell is 0, and no count bounds a share away from 0 once
it is 0. The pass used to be blocked only by a zero significant cell by cell, so a canary that
stopped producing the stable's top 2% of predictions (0.4% in each of five buckets) passed
`max_psi: 0.2` at 500 requests. The cells are now tested jointly, by the share they miss, against
what an equal arm misses by chance (a bound that does not pick the cells after seeing them)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from canary.analysis import judge as J
from canary.analysis import shift
from canary.model import Histogram, Outcome
from canary.policy import parse_policy


def missed_share_p(shares: list[float], empty: list[bool], n: float) -> float:
    """`shift._missed_p` for n independent draws from the shares p_i: cell i empty with probability
    q_i = (1 - p_i)^n, M the sum of the shares of the cells left empty."""
    p = np.asarray(shares, float)
    return shift._missed_p(p, n * np.log1p(-np.minimum(p, 1 - 1e-16)), empty)

INF = float("inf")
BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, INF)
SHARES = np.array([0.196] * 5 + [0.004] * 5)  # the top 2% spread over five buckets


def _policy(**limits: float):
    return parse_policy({"steps": [10, 100], "checks": [{"name": "pred", "kind": "prediction_shift", **limits}]})


def _hist(counts) -> Histogram:
    return Histogram(BOUNDS, tuple(float(x) for x in itertools.accumulate(counts)))


@pytest.mark.parametrize("n_canary", [500, 1_000, 5_000])
def test_a_canary_that_lost_the_stables_tail_is_never_shown_within_psi(n_canary: int) -> None:
    stable = _hist(50_000 * SHARES)
    kept = SHARES[:5] / SHARES[:5].sum()
    canary = _hist(np.r_[n_canary * kept, [0] * 5])
    r = J.judge(_policy(max_psi=0.2), {"pred": (stable, canary)}).results[0]
    psi = next(t for t in r.extra["tests"] if t["test"] == "psi")
    assert r.outcome is not Outcome.PASS and not psi["within"], r.reason
    assert "no observations in 5 buckets (6, 7, 8, 9, 10)" in r.reason, r.reason
    # JS is bounded whatever the shares: its own limit is still judged on its own statistic
    r = J.judge(_policy(max_js=0.3), {"pred": (stable, canary)}).results[0]
    assert r.outcome is Outcome.PASS, r.reason


def test_an_equal_canary_is_blocked_by_its_empty_cells_at_most_at_the_level() -> None:
    """Many thin cells (30, half of them at 0.1% or less): an equal canary of 2,000 misses some in most
    draws; the joint test blocks at most `level` of them (it used to be the chance that those very
    cells were empty, which is below 5% in most draws)."""
    rng = np.random.default_rng(5)
    shares = np.r_[np.full(15, 0.9 / 15), rng.uniform(0.0002, 0.001, 15)]
    shares /= shares.sum()
    stable = list(200_000 * shares)
    blocked = 0
    for _ in range(400):
        canary = rng.multinomial(2_000, shares).astype(float).tolist()
        blocked += bool(shift._empty_cell(stable, canary, 0.05))
    assert blocked <= 0.05 * 400 + 3 * np.sqrt(0.05 * 0.95 * 400), blocked


def test_the_bound_is_a_probability_and_falls_with_the_missed_share() -> None:
    shares = [0.5, 0.3, 0.1, 0.05, 0.05]
    ps = [missed_share_p(shares, [False, False, False, False, True], n) for n in (10, 50, 100, 200)]
    assert all(0.0 <= p <= 1.0 for p in ps) and ps == sorted(ps, reverse=True) and ps[-1] < 1e-3, ps
    assert missed_share_p(shares, [False] * 5, 100) == 1.0

"""(A third attacker of decision 81, twentieth session.) Decision 81 (e) read each share of the missed-share
test at its lower confidence bound, at a level split over every cell, so that shares read off a small
arm would not block equal canaries. Against a sampled stable that bound is far below the share: the
canary of decision 81 (a), which stopped producing the stable's top 2% of predictions (0.4% in each of
five buckets), passed `max_psi: 0.2` in 98% of looks at a 10% step (500 canary against 4,500 stable
requests), although its PSI is infinite. The test now conditions on each cell's count over both arms
(a permutation test's null: nothing estimated), so neither arm's size makes it blind or trigger-happy."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as st

from canary.analysis import judge as J
from canary.analysis import shift
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

INF = float("inf")
BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, INF)
SHARES = np.array([0.196] * 5 + [0.004] * 5)  # the top 2% spread over five buckets
LEVEL = 0.0085  # the default policy's first-window pass level


def _hist(counts) -> Histogram:
    return Histogram(BOUNDS, tuple(float(x) for x in itertools.accumulate(counts)))


@pytest.mark.parametrize(("n_stable", "n_canary"), [(4_500, 500), (9_000, 1_000), (500, 4_500)])
def test_a_canary_that_lost_a_sampled_stables_tail_is_not_shown_within_psi(n_stable: int, n_canary: int) -> None:
    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "pred", "kind": "prediction_shift", "max_psi": 0.2}]})
    rng = np.random.default_rng(11)
    kept = np.r_[SHARES[:5] / SHARES[:5].sum(), [0.0] * 5]
    passed = 0
    for _ in range(40):
        stable = _hist(rng.multinomial(n_stable, SHARES))
        canary = _hist(rng.multinomial(n_canary, kept))
        passed += J.judge(pol, {"pred": (stable, canary)}).results[0].outcome is Outcome.PASS
    assert passed == 0, passed  # before: 40 of 40 at 4,500 / 500, 17 at 500 / 4,500


@pytest.mark.parametrize(("n_stable", "n_canary"), [(4_500, 500), (500, 4_500), (50_000, 1_000), (2_000, 2_000)])
def test_equal_arms_over_thin_cells_are_blocked_at_most_at_the_level(n_stable: int, n_canary: int) -> None:
    shares = np.diff(st.beta(2, 8).cdf(np.linspace(0, 1, 51)))  # 50 buckets, a thin right tail
    rng = np.random.default_rng(3)
    blocked, runs = 0, 400
    for _ in range(runs):
        s = rng.multinomial(n_stable, shares).astype(float)
        c = rng.multinomial(n_canary, shares).astype(float)
        used = (s + c) > 0
        blocked += bool(shift._empty_cell(list(s[used]), list(c[used]), LEVEL))
    assert blocked <= LEVEL * runs + 3 * np.sqrt(LEVEL * runs), blocked

"""(A second attacker of decision 81, nineteenth session; fixed by decision 81 (e). What it found:) shift._missed_share_p (now `shift._missed_p`) returned 0.0 (maximal evidence) when one cell's (1 - p)^n underflows to 0 and
the bound's optimum t lies where exp(-t p) underflows too (0/0 in the slope, log(0) in the bound).
An equal canary's PSI is then 'cannot be bounded' and max_psi never passes."""
import itertools
import warnings

import numpy as np
from scipy.stats import binom

from canary.analysis import judge as J
from canary.analysis import shift
from canary.model import Histogram, Outcome
from canary.policy import parse_policy
from tests.unit.test_shift_empty_cells import missed_share_p

INF = float("inf")


def test_missed_share_p_is_not_zero_for_an_ordinary_miss() -> None:
    # a dominant cell (98%) and 100 thin cells of 0.02%; n = 1,000 draws miss 82 of them on average.
    shares = [0.98] + [0.0002] * 100
    empty = [False] + [True] * 85 + [False] * 15  # 85 missed: true P(missed share >= this) ~ 0.25
    exact = binom.sf(84, 100, (1 - 0.0002) ** 1000)
    assert exact > 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = missed_share_p(shares, empty, 1000)
    assert p >= exact, p  # a Chernoff bound is an upper bound on the tail; the code returns 0.0


def test_an_equal_canary_is_not_blocked_by_a_1_1_sigma_miss() -> None:
    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "pred", "kind": "prediction_shift", "max_psi": 0.2}]})
    bounds = tuple(float(x) for x in range(1, 91)) + (INF,)
    h = lambda x: Histogram(bounds, tuple(float(v) for v in itertools.accumulate(x)))  # noqa: E731
    stable = [8820] + [2] * 90            # 9,000: 98% in one bucket, 90 thin buckets of 2
    canary = [985] + [1] * 15 + [0] * 75  # 1,000: misses 75 thin buckets; 72 expected, P(>= 75) = 0.27
    r = J.judge(pol, {"pred": (h(stable), h(canary))}).results[0]
    assert "PSI cannot be bounded" not in r.reason, r.reason
    assert r.outcome is Outcome.PASS, r.reason  # 16 hits instead of 15: PASS, PSI upper 0.12

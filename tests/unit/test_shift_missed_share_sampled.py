"""(A second attacker of decision 81, nineteenth session; fixed by decision 81 (e). What it found:) The missed-share bound plugs in the other arm's *observed* shares. In the stable-empty direction
that arm is the small canary: a rare cell it hit once reads as 1/500 = 0.2%, and (1 - 0.002)^4500 =
1.2e-4 says the stable's miss is significant, so PSI 'cannot be bounded' for an equal canary in ~23%
of draws (every block here is 'the stable has no observations in ...'); decision 81 a claims at most
the level. test_shift_empty_cells uses exact stable shares and only the canary-empty direction."""
import numpy as np
from scipy import stats as st

from canary.analysis import shift

LEVEL = 0.0085  # the default policy's first-window pass level


def test_equal_arms_are_blocked_at_most_at_the_level_with_a_sampled_stable() -> None:
    edges = np.linspace(0, 1, 51)
    shares = np.diff(st.beta(2, 8).cdf(edges))  # predictions ~ Beta(2, 8), 50 equal buckets
    rng = np.random.default_rng(0)
    blocked, runs = 0, 400
    for _ in range(runs):
        s = rng.multinomial(4_500, shares).astype(float)
        c = rng.multinomial(500, shares).astype(float)  # an equal canary at a 10% step
        used = (s + c) > 0
        blocked += bool(shift._empty_cell(list(s[used]), list(c[used]), LEVEL))
    # measured: ~23% (91 of 400); the bound allows ~ level
    assert blocked <= LEVEL * runs + 3 * np.sqrt(LEVEL * runs), blocked

"""Alpha spending: how much false-rollback risk each look may use.

A rollout looks at the data many times (every `analysis.look_every` within
each step, across all steps). Testing every look at the full alpha would make
a false rollback almost certain over a long rollout; Bonferroni over all
looks (what this module did first) is valid but ignores two facts that make
it needlessly conservative:

* within a step the windows are *nested*: each look re-tests the data of the
  previous one plus 10 s more, so the statistics of consecutive looks are
  strongly correlated (corr sqrt(n_j / n_{j+1}) for asymptotically normal
  statistics on cumulative data: the looks sample one Brownian motion);
* a rollback needs `failure.max_failed_looks` (r) *consecutive* failed looks.

So the planned looks share one constant z-boundary c (Pocock-type), chosen
so that, for one test on nested windows at evenly spaced information
(steady traffic, a look every `look_every`), P(r consecutive looks of one
step exceed c) = (1 - TAIL) * alpha / (judged steps * tests). The
probability is computed by numerical integration over the Brownian motion
(deterministic, cached per policy shape). With several statistical tests,
or a `hard` check (which rolls back on one failure), r = 1 is used, i.e. the
probability that *any* look of the step exceeds c: a union over tests is
then valid whatever their dependence. Looks beyond the plan (a step extended
because it stayed inconclusive) spend the reserved TAIL * alpha as
TAIL * alpha / ((j+1)(j+2)) for the j-th extra look (Bonferroni; the series
sums to TAIL * alpha). docs/judge.md states the argument and its limits.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy import special

from canary.policy import CustomCheck, ErrorRateCheck, FeatureMissingCheck, LatencyCheck, Policy

TAIL = 0.1  # share of alpha reserved for looks beyond the planned ones
_GRID = 120  # cells per state in the numerical integration (finer moves c by < 0.001)
_SPAN = 8.0  # z range tracked either side of the boundary
_CAP = 60  # looks per window integrated exactly; beyond, extrapolated upward


def tests_in(check: object) -> int:
    """How many statistical tests a check runs per look (its share of alpha)."""
    if isinstance(check, LatencyCheck):
        return (check.max_increase_pct is not None) + (check.max_ms is not None)
    if isinstance(check, (ErrorRateCheck, FeatureMissingCheck)):
        return (check.max_increase_points is not None) + (check.max_rate_pct is not None)
    if isinstance(check, CustomCheck):
        return 0  # custom checks compare values; no statistics, no alpha
    return 1  # prediction shift


def statistical_tests(policy: Policy) -> int:
    """Statistical tests per look over all checks (at least 1)."""
    return max(1, sum(tests_in(c) for c in policy.checks))


def consecutive_rule(policy: Policy) -> int:
    """Consecutive failed looks a false rollback needs, as the boundary may assume.

    max_failed_looks when the policy has exactly one statistical test and it is
    not hard; otherwise 1 (a hard check rolls back at once, and with several
    tests two consecutive failures may come from different tests, whose joint
    law is unknown).
    """
    stat = [c for c in policy.checks if tests_in(c)]
    if statistical_tests(policy) == 1 and not any(c.hard for c in stat):
        return policy.failure.max_failed_looks
    return 1


def looks_per_step(policy: Policy) -> int:
    """Looks the controller makes in one step of `analysis.interval`."""
    a = policy.analysis
    return max(1, math.ceil(a.interval / a.look_every - 1e-9))


def judged_steps(policy: Policy) -> int:
    """Steps the canary is judged at: every step below 100 (at 100 there is no stable arm)."""
    return max(1, sum(1 for w in policy.steps if w < 100))


def planned_looks(policy: Policy) -> int:
    """Looks in a rollout that ends on time: ceil(interval/look_every) per judged step."""
    return looks_per_step(policy) * judged_steps(policy)


def run_curve(c: float, looks: int, run: int, times: tuple[float, ...] | None = None) -> np.ndarray:
    """P(a run of `run` consecutive looks with Z > c has ended by look 1..looks), as an array.

    Z_j = B(t_j)/sqrt(t_j) with B a Brownian motion: the standardised statistic
    of one test on nested windows. `times` are the information times (default
    1, 2, ..., looks: evenly spaced). Numerical integration over the states
    (z, current run of exceedances) with mass-conserving cell transitions, so
    the result is deterministic.
    """
    t = np.asarray(times if times is not None else np.arange(1, looks + 1), float)[:looks]
    edges = np.concatenate([np.linspace(c - _SPAN, c, _GRID + 1), np.linspace(c, c + _SPAN, _GRID + 1)[1:]])
    mids = (edges[:-1] + edges[1:]) / 2
    nb = _GRID  # the first nb cells are at or below c

    def spread(z: np.ndarray) -> np.ndarray:  # cell masses from cut points, tails folded into the end cells
        k = np.diff(special.ndtr(z), axis=-1)
        k[..., 0] += special.ndtr(z[..., 0])
        k[..., -1] += 1 - special.ndtr(z[..., -1])
        return k

    first = spread(edges)
    state = np.zeros((run, len(mids)))  # state[s]: mass per cell with a current run of s exceedances
    absorbed = float(first[nb:].sum()) if run == 1 else 0.0
    state[0, :nb] = first[:nb]
    if run > 1:
        state[1, nb:] = first[nb:]
    out = [absorbed]
    for j in range(1, len(t)):
        rho = math.sqrt(t[j - 1] / t[j])
        moved = state @ spread((edges[None, :] - rho * mids[:, None]) / math.sqrt(max(1 - rho * rho, 1e-12)))
        new = np.zeros_like(state)
        new[0, :nb] = moved[:, :nb].sum(axis=0)
        for s in range(run - 1):
            new[s + 1, nb:] = moved[s, nb:]
        absorbed += float(moved[run - 1, nb:].sum())
        state = new
        out.append(absorbed)
    return np.array(out)


def run_probability(c: float, looks: int, run: int, times: tuple[float, ...] | None = None) -> float:
    """P(some `run` consecutive looks out of `looks` nested ones have Z > c); see run_curve."""
    return float(run_curve(c, looks, run, times)[-1]) if looks > 0 else 0.0


def worst_split(c: float, total: int, run: int) -> float:
    """Max over ways to cut `total` looks into windows (steps, extensions, resumes) of the summed run probability.

    A run never spans two windows (the failure count restarts with the window),
    so P(false rollback) <= sum over windows of run_probability(window's looks):
    maximised here by dynamic programming. Beyond _CAP looks per window the
    curve is extended linearly with its last increment (increments shrink, so
    this over-estimates).
    """
    g = np.concatenate([[0.0], run_curve(c, min(total, _CAP), run)])
    if total > _CAP:
        step = g[-1] - g[-2]
        g = np.concatenate([g, g[-1] + step * np.arange(1, total - _CAP + 1)])
    best = np.zeros(total + 1)
    for n in range(1, total + 1):
        best[n] = max(best[n - 1], float(np.max(best[n - 1::-1][: n] + g[1 : n + 1])))
    return float(best[total])


@lru_cache(maxsize=256)
def boundary(total: int, run: int, level: float) -> float:
    """The constant z-boundary for `total` planned looks so that the worst split spends `level`.

    run == 1 (any failed look rolls back): Bonferroni over the looks, which
    holds whatever the spacing of the looks or the number of windows.
    """
    if total <= 0:
        return math.inf
    bonferroni = float(-special.ndtri(level / total))
    if run == 1:
        return bonferroni
    f = lambda c: worst_split(c, total, run) - level  # noqa: E731
    lo = float(-special.ndtri(level)) - 0.5
    while f(lo) < 0:
        lo -= 0.5
    return float(optimize.brentq(f, lo, bonferroni + 1e-9, xtol=1e-5))


def rollout_level(policy: Policy) -> float:
    """False-rollback budget of the planned looks for one statistical test."""
    return (1.0 - TAIL) * policy.analysis.alpha / statistical_tests(policy)


def look_boundary(policy: Policy) -> float:
    """The z-boundary every planned look compares each test with."""
    return boundary(planned_looks(policy), consecutive_rule(policy), rollout_level(policy))


def per_test_alpha(policy: Policy, look: int) -> float:
    """Nominal level of each statistical test at this 0-based look of the rollout."""
    if look < 0:
        raise ValueError(f"look must be >= 0, got {look}")
    n = planned_looks(policy)
    if look < n:
        return float(special.ndtr(-look_boundary(policy)))
    j = look - n
    return TAIL * policy.analysis.alpha / ((j + 1) * (j + 2)) / statistical_tests(policy)


def alpha_for_look(policy: Policy, look: int) -> float:
    """Nominal level of the whole look (the sum over its statistical tests), for the 0-based look index.

    The judge gives each test alpha_for_look / statistical_tests. This is the
    level a p-value is compared with, not the probability the look spends:
    nested windows and the consecutive-failure rule make the latter smaller
    (see `spent_alpha`).
    """
    return per_test_alpha(policy, look) * statistical_tests(policy)


def spent_alpha(policy: Policy, looks: int) -> float:
    """Bound on P(false rollback) by the end of the first `looks` looks, however they fall into windows."""
    n = planned_looks(policy)
    head = worst_split(look_boundary(policy), min(looks, n), consecutive_rule(policy)) if looks > 0 else 0.0
    extra = max(0, looks - n)
    return head * statistical_tests(policy) + TAIL * policy.analysis.alpha * (1.0 - 1.0 / (extra + 1))

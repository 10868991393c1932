"""Alpha spending: how much false-rollback risk each look may use.

A rollout looks at the data many times (every `analysis.look_every` within
each step, across all steps). Testing every look at the full alpha would make
a false rollback almost certain over a long rollout, so the budget
`policy.analysis.alpha` is spent across looks:

* the planned looks, sum over the judged steps (those below 100) of
  ceil(interval / look_every), share
  (1 - TAIL) * alpha equally (Bonferroni: valid whatever the dependence
  between looks, which is strong because windows overlap);
* looks beyond the plan (a step extended past its interval because the
  verdict stayed inconclusive) spend the reserved TAIL * alpha as
  TAIL * alpha / ((j+1)(j+2)) for the j-th extra look, a series summing to
  TAIL * alpha, so the total never exceeds alpha however long it runs.

By the union bound, P(any look FAILs while the canary is within policy) <=
sum of per-look alphas <= alpha; requiring `failure.max_failed_looks`
consecutive failures can only lower that. Within one look, the alpha is split
equally over the statistical tests of all checks (see judge.py).
"""

from __future__ import annotations

import math

from canary.policy import Policy

TAIL = 0.1  # share of alpha reserved for looks beyond the planned ones


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


def alpha_for_look(policy: Policy, look: int) -> float:
    """Per-look alpha for the 0-based look index across the whole rollout."""
    if look < 0:
        raise ValueError(f"look must be >= 0, got {look}")
    alpha = policy.analysis.alpha
    n = planned_looks(policy)
    if look < n:
        return (1.0 - TAIL) * alpha / n
    j = look - n
    return TAIL * alpha / ((j + 1) * (j + 2))


def spent_alpha(policy: Policy, looks: int) -> float:
    """Alpha spent by the first `looks` looks (for tests and `canary plan`)."""
    n = planned_looks(policy)
    head = min(looks, n) * (1.0 - TAIL) * policy.analysis.alpha / n
    extra = max(0, looks - n)
    return head + TAIL * policy.analysis.alpha * (1.0 - 1.0 / (extra + 1))

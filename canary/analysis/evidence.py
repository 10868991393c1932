"""What a PASS rests on: the data show the canary *within* each limit.

`stats` and `shift` test for a breach (H0: within the limit; reject -> FAIL).
Not rejecting is not evidence of being within: a small or coarsely bucketed
sample rejects nothing. So a check passes only when the other direction is
shown too: a one-sided confidence bound on the limited quantity, at the
look's *pass level*, lies inside the limit. Neither shown -> INCONCLUSIVE, and
the step keeps collecting until its deadline (docs/judge.md).

Every bound here is exact or conservative where it can be cheaply
(binomial counts at bucket bounds, Clopper-Pearson), and asymptotic only where
cells are large (the likelihood-ratio bound on an error-rate increase). The
bucket layout enters as it should: a latency bound is a bucket bound, so a
quantile whose bucket straddles the limit can never be shown within it.

Pure functions; `pass_level(policy, window, ratio)` is the per-look level that keeps the
chance of a false pass below `PASS_BETA` per step window, at any number of looks at any
times (see its docstring).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import special

from canary.analysis.buckets import Arm
from canary.analysis.roots import brentq
from canary.analysis.sequential import per_policy, run_curve
from canary.analysis.shown import beside, exact
from canary.analysis.stats import (
    TestResult,
    _ints,
    _ll,
    fm_restricted,
    histogram_quantile,
    p_quantile_above,
    p_quantile_at_most,
    replaced,
)
from canary.policy import Policy

PASS_BETA = 0.05  # P(a step window passes | the canary is beyond a limit), at most
PASS_LEVEL = 0.05  # per-look level when the caller names none (one look, no policy)
PASS_TAIL = 0.02  # share of PASS_BETA kept for the windows an operator's resumes open (rare: a held step)
PASS_BEYOND = 0.05  # share of a window's budget for looks past the planned information (a traffic surge)
_SIEGMUND = 0.5826  # Siegmund's overshoot constant: continuous vs discretely watched crossings
_LOG_STEP = 0.02  # log-information step of the grid the continuous crossing is computed on
_MAX_GRID = 200  # at most this many grid points (a wider step for very long windows: Siegmund covers it)
_EXACT_BELOW = 10  # cells below this: exact Clopper-Pearson bounds instead of the LR bound
_SLACK = 1e-9  # float noise when a bound equals the limit


def planned_ratio(policy: Policy) -> float:
    """Canary requests at a window's deadline over those at its first look that may pass, under steady
    traffic: (interval + no_data_deadline) / interval (a step passes from `interval` to the deadline)."""
    a, f = policy.analysis, policy.failure
    return (a.interval + f.no_data_deadline) / a.interval


def sup_crossing(c: float, ratio: float) -> float:
    """P(B(t)/sqrt(t) > c for some t in [1, ratio]), watched *continuously*: B a standard Brownian motion.

    An upper bound for any looks at all, however many and whenever, in that information range.
    Numerical: `run_curve` on a geometric grid 0.02 apart in log t (at most 200 points, wider for
    very long ranges), at the boundary lowered by Siegmund's correction 0.5826 sqrt(step) for the
    crossings between grid points. Against simulated Ornstein-Uhlenbeck paths (B(t)/sqrt(t) in log
    t) watched every 0.0002-0.002 in log t it errs high, i.e. safe: by about 1.5% at ratio 3 and up
    to about 8% at ratio 86,401."""
    if ratio <= 1.0:
        return float(special.ndtr(-c))
    span = math.log(ratio)
    g = min(max(2, math.ceil(span / _LOG_STEP) + 1), _MAX_GRID)
    d = span / (g - 1)
    times = tuple(math.exp(d * i) for i in range(g))
    return float(run_curve(c - _SIEGMUND * math.sqrt(d), g, 1, times)[-1])


@lru_cache(maxsize=256)
def _sup_boundary(ratio: float, spend: float) -> float:
    """The constant z-boundary c whose continuous crossing over information [1, ratio] is `spend`."""
    lo = float(-special.ndtri(spend))  # one look: crossing(lo) >= spend
    hi = lo + 0.25
    while sup_crossing(hi, ratio) > spend:
        hi += 0.25
    return float(brentq(lambda c: sup_crossing(c, ratio) - spend, lo, hi, xtol=1e-5))


def window_beta(window: int) -> float:
    """The false-pass budget of the `window`-th window of one step (0: the step itself, then one per resume).

    (1 - PASS_TAIL) * PASS_BETA for the first, PASS_TAIL * PASS_BETA / (w (w + 1)) for the w-th
    resume: the series sums to PASS_BETA, so however often an operator resumes a held step, the
    chance that it advances a canary beyond a limit stays <= PASS_BETA.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    return (1 - PASS_TAIL) * PASS_BETA if window == 0 else PASS_TAIL * PASS_BETA / (window * (window + 1))


def beyond_epoch(policy: Policy, ratio: float) -> int:
    """0 while `ratio` <= planned_ratio R, else j for a ratio in (R 2^(j-1), R 2^j]."""
    r = planned_ratio(policy)
    if not ratio <= r * (1 + 1e-9):  # NaN too: the strictest of the first epochs
        return max(1, math.ceil(math.log2(ratio / r) - 1e-12)) if math.isfinite(ratio) else 64
    return 0


def pass_level(policy: Policy, window: int = 0, ratio: float = 1.0) -> float:
    """Per-look level of each "within the limit" claim, at any look of the `window`-th window of a step.

    `ratio` is the look's canary requests over those at the window's *anchor*, its first look that
    could pass (covering `interval`, at least `min_canary_requests`): 1 at the anchor. A canary
    beyond a limit is falsely advanced from a window only if the violated check's own claim is
    falsely shown at some look from the anchor on (intersection-union: several checks need no
    split). Each claim rests on one-sided tests at a fixed (unknown) bucket bound or margin on
    nested data, whose statistic is B(t)/sqrt(t) for a Brownian motion B in canary requests t
    relative to the anchor's (which traffic fixes, not the data). So the level is set by that
    statistic's *continuous* crossing (`sup_crossing`), valid for any number of looks at any times:
    (1 - PASS_BEYOND) of the window's budget (`window_beta`) on ratios up to `planned_ratio` (where
    steady traffic ends the window), and PASS_BEYOND / (j (j + 1)) on each doubling j beyond it.
    """
    epoch = beyond_epoch(policy, ratio)

    def compute() -> float:
        bw = window_beta(window)
        if epoch == 0:
            c = _sup_boundary(planned_ratio(policy), (1 - PASS_BEYOND) * bw)
        else:
            c = _sup_boundary(2.0, PASS_BEYOND * bw / (epoch * (epoch + 1)))
        return float(special.ndtr(-c))

    return float(per_policy("pass_level", policy, (window, epoch), compute))


def attach(t: TestResult, shown: tuple[bool, float, str]) -> TestResult:
    """The breach test `t` with the "within" evidence added.

    `stats.replaced`: what dataclasses.replace does, cheaper (it runs per sub-test at every look).
    """
    within, bound, why_not = shown
    if within and t.no_pass:  # the breach test's own estimate is beyond: no PASS rests on it (stats.TestResult)
        within, why_not = False, t.no_pass
    return replaced(t, within=within, bound=bound, why_not=why_not)


def _fmt(x: float) -> str:
    return "+Inf" if math.isinf(x) else f"{x:g}"


# -- latency: bucket bounds --------------------------------------------------------------------


def quantile_bounds(bounds: np.ndarray, cum: np.ndarray, q: float, level: float) -> tuple[float, float]:
    """One-sided confidence bounds on the q-quantile at bucket bounds, each at `level`.

    lower: the largest finite bound b the counts show has F(b) < q (the quantile is above b), else 0;
    upper: the smallest finite bound b they show has F(b) >= q (the quantile is at most b), else inf.
    Exact and distribution-free: k(b) ~ Binomial(n, F(b)) and k grows with b, so the p-values are
    monotone in b and a wrong bound means a rejection at the one bound nearest the quantile on its
    wrong side: P(wrong) <= level, with no multiplicity over the bounds.
    """
    return quantile_lower(bounds, cum, q, level), quantile_upper(bounds, cum, q, level)


def quantile_lower(bounds: np.ndarray, cum: np.ndarray, q: float, level: float) -> float:
    """`quantile_bounds`' lower bound alone (ms): the largest finite bound shown below the q-quantile, else 0."""
    k = _ints(cum)
    lo = np.nonzero(p_quantile_above(k[:-1], int(k[-1]), q) <= level)[0]
    return float(bounds[lo[-1]]) if len(lo) else 0.0


def quantile_upper(bounds: np.ndarray, cum: np.ndarray, q: float, level: float) -> float:
    """`quantile_bounds`' upper bound alone (ms): the smallest finite bound shown at or above the q-quantile, else inf."""
    k = _ints(cum)
    up = np.nonzero(p_quantile_at_most(k[:-1], int(k[-1]), q) <= level)[0]
    return float(bounds[up[0]]) if len(up) else math.inf


def quantile_bucket(bounds: np.ndarray, cum: np.ndarray, q: float) -> tuple[float, float]:
    """The bucket (lo, hi] that holds the empirical q-quantile (hi = inf: the open +Inf bucket).

    What no amount of data in this layout narrows: a limit inside it can be shown neither way.
    (nan, nan) without observations.
    """
    total = float(cum[-1])
    if total <= 0:
        return math.nan, math.nan
    i = min(int(np.searchsorted(np.asarray(cum, float), q * total * (1 - 1e-12), side="left")), len(bounds) - 1)
    return (0.0 if i == 0 else float(bounds[i - 1])), float(bounds[i])


def layout_problem(bounds: np.ndarray, cum: np.ndarray, *, q: float, tol: float) -> str:
    """Why this layout can never show a canary *as fast as stable* within +tol at q ("" if it can).

    Shapes: `bounds` ascending (ms, last +Inf), `cum` cumulative counts of the stable arm. A canary
    equal to stable has its q-quantile in the stable's bucket (lo, hi], so the best showable bound
    on the increase is hi / lo - 1: if that is above `tol` (or the bucket is the first or the open
    +Inf one), only a canary faster by a bucket can pass. "" when the stable arm has no data."""
    lo, hi = quantile_bucket(bounds, cum, q)
    if math.isnan(lo):
        return ""
    where = f"stable p{q * 100:g} in ({lo:g}, {hi:g}] ms"
    if math.isinf(hi):
        return f"{where}, the open +Inf bucket: no canary can be shown within +{exact(tol * 100)}%"
    if lo <= 0:
        return f"{where}, the first bucket: no canary can be shown within +{exact(tol * 100)}%"
    if hi / lo - 1 > tol * (1 + 1e-9):
        return (f"{where}, a bucket {hi / lo:.3g}x wide: a canary as fast as stable can never be shown within "
                f"+{exact(tol * 100)}% (needs buckets narrower than {1 + tol:.3g}x there; x{1 + tol / 2:.3g} or finer)")
    return ""


class ArrayArm:
    """One arm's counts behind `buckets.Arm`'s interface, computed by the array functions above.

    The reference: it takes any counts (NaN or infinite ones too), where `buckets.Arm` takes
    finite ones on lists, faster, with the same numbers.
    """

    def __init__(self, bounds: np.ndarray, cum: np.ndarray, q: float) -> None:
        self.bounds, self.cum, self.q = bounds, cum, q

    @property
    def total(self) -> float:
        return float(self.cum[-1])

    def estimate(self) -> float:
        return histogram_quantile(self.bounds, self.cum, self.q)

    def bucket(self) -> tuple[float, float]:
        return quantile_bucket(self.bounds, self.cum, self.q)

    def lower(self, level: float) -> float:
        return quantile_lower(self.bounds, self.cum, self.q, level)

    def upper(self, level: float) -> float:
        return quantile_upper(self.bounds, self.cum, self.q, level)


def relative_within(bounds: np.ndarray, stable: np.ndarray, canary: np.ndarray, *, q: float, tol: float,
                    level: float) -> tuple[bool, float, str]:
    """Do the counts show canary_q <= (1+tol) * stable_q? (within, upper bound on the increase, why not).

    The upper bound is U_c / L_s - 1: U_c the canary's upper and L_s the stable's lower bound
    on its q-quantile, each at level/2. If both hold, canary_q <= U_c <= (1+tol) L_s <
    (1+tol) stable_q; so a canary beyond the limit passes only when one is wrong (<= level).
    Exact, distribution-free, at q itself (unlike the breach test's stable F(x)).
    """
    return relative_within_arms(ArrayArm(bounds, stable, q), ArrayArm(bounds, canary, q), q=q, tol=tol, level=level)


def relative_within_arms(stable: ArrayArm | Arm, canary: ArrayArm | Arm, *, q: float, tol: float, level: float
                         ) -> tuple[bool, float, str]:
    """`relative_within` on two arms (`ArrayArm`, or `buckets.Arm` on lists)."""
    if stable.total <= 0 or canary.total <= 0:
        return False, math.inf, "an arm has no requests"
    lo_s = stable.lower(level / 2)
    up_c = canary.upper(level / 2)
    bound = up_c / lo_s - 1.0 if lo_s > 0 and math.isfinite(up_c) else math.inf
    if bound <= tol + _SLACK:
        return True, bound, ""
    label = f"p{q * 100:g}"
    c_lo, c_hi = canary.bucket()
    s_lo, s_hi = stable.bucket()
    best = c_hi / s_lo - 1.0 if s_lo > 0 and math.isfinite(c_hi) else math.inf
    s_est, c_est = stable.estimate(), canary.estimate()
    why = []
    if math.isfinite(c_hi) and s_est > 0 and c_est > (1 + tol) * s_est:
        why.append(f"estimated beyond +{exact(tol * 100)}%, not significant")
    if best > tol + _SLACK:
        at_best = "no increase can be bounded" if math.isinf(best) else f"at best +{beside(best * 100, tol * 100, 0, fixed=True)}% can be shown"
        why.append(f"buckets too coarse to show within +{exact(tol * 100)}%: canary {label} in ({_fmt(c_lo)}, "
                   f"{_fmt(c_hi)}], stable {label} in ({_fmt(s_lo)}, {_fmt(s_hi)}] ms, {at_best}")
    elif not why:
        shown = "unbounded" if math.isinf(bound) else f"+{beside(bound * 100, tol * 100, 0, fixed=True)}%"
        why.append(f"not yet shown within +{exact(tol * 100)}%: upper bound {shown} (canary {label} <= {_fmt(up_c)}, "
                   f"stable {label} > {_fmt(lo_s)} ms, level {level:.2g})")
    return False, bound, "; ".join(why)


def ceiling_within(bounds: np.ndarray, canary: np.ndarray, *, q: float, max_value: float, level: float
                   ) -> tuple[bool, float, str]:
    """Do the counts show canary_q <= max_value? (within, upper bound on canary_q, why not)."""
    return ceiling_within_arm(ArrayArm(bounds, canary, q), q=q, max_value=max_value, level=level)


def ceiling_within_arm(canary: ArrayArm | Arm, *, q: float, max_value: float, level: float
                       ) -> tuple[bool, float, str]:
    """`ceiling_within` on an arm (`ArrayArm`, or `buckets.Arm` on lists)."""
    if canary.total <= 0:
        return False, math.inf, "canary has no requests"
    up_c = canary.upper(level)
    if up_c <= max_value * (1 + _SLACK):
        return True, up_c, ""
    label = f"p{q * 100:g}"
    lo, hi = canary.bucket()
    where = f"({_fmt(lo)}, {_fmt(hi)}] ms"
    if lo >= max_value:
        return False, up_c, f"canary {label} in {where}, above {exact(max_value)} ms"
    if hi > max_value * (1 + _SLACK):
        return False, up_c, f"buckets cannot resolve {label} against {exact(max_value)} ms: canary {label} in {where}"
    return False, up_c, (f"not yet shown below {exact(max_value)} ms: upper bound "
                         f"{'unbounded' if math.isinf(up_c) else beside(up_c, max_value, 6) + ' ms'} (level {level:.2g})")


# -- proportions --------------------------------------------------------------------------------


def _cp_upper(x: int, n: int, level: float) -> float:
    """Clopper-Pearson upper bound (the beta quantile, as scipy.stats.beta.ppf(1 - level, x+1, n-x))."""
    return float(special.betaincinv(x + 1, n - x, 1 - level)) if x < n else 1.0


def _cp_lower(x: int, n: int, level: float) -> float:
    return float(special.betaincinv(x, n - x + 1, level)) if x > 0 else 0.0


def increase_within(x_s: float, n_s: float, x_c: float, n_c: float, *, margin: float, level: float
                    ) -> tuple[bool, float, str]:
    """Do the counts show p_canary - p_stable < margin? (within, upper bound on the increase, why not).

    Stable's cells >= 10 and the canary's *expected* cells at the stable's rate >= 10: the
    signed-root likelihood-ratio bound (the breach test's statistic read in its other tail;
    simulated at the margin it shows "within" 1.0-1.2x as often as the level; a canary at or
    beyond the margin expects at least as many events, so the approximation holds where a false
    "within" could happen). Otherwise (rare events), exactly: U_c - L_s from Clopper-Pearson
    bounds at level/2 per arm (if both hold, the increase is below it). The method does not depend
    on the canary's own count, so more canary events never make the bound smaller (it switched at
    10 observed: 10 errors in 2,000 passed where 9 did not).
    """
    xs, ns, xc, nc = (int(round(v)) for v in (x_s, n_s, x_c, n_c))
    if ns <= 0 or nc <= 0:
        return False, math.inf, "an arm has no requests"
    if margin >= 1:
        return True, 1.0, ""
    lr = (_lr_upper(xs, ns, xc, nc, level)
          if min(xs, ns - xs) >= _EXACT_BELOW and min(nc * xs, nc * (ns - xs)) >= _EXACT_BELOW * ns else None)
    if lr is not None:
        bound, how = lr, ""
    else:
        bound, how = _cp_upper(xc, nc, level / 2) - _cp_lower(xs, ns, level / 2), ", exact"
    if bound < margin:
        return True, bound, ""
    eff = xc / nc - xs / ns
    if eff >= margin:
        return False, bound, f"increase {beside(eff * 100, margin * 100, 2, sign=True)} points, not below +{exact(margin * 100)}"
    return False, bound, (f"not yet shown within +{exact(margin * 100)} points: upper bound "
                          f"{beside(bound * 100, margin * 100, 2, sign=True)} "
                          f"(level {level:.2g}{how})")


def _lr_upper(xs: int, ns: int, xc: int, nc: int, level: float) -> float | None:
    """The margin m at which the signed root of H0: p_c - p_s >= m has lower-tail p-value `level`;
    None where the arithmetic cannot give it (the exact route is used instead)."""
    ps, pc = xs / ns, xc / nc
    z = float(-special.ndtri(level))
    full = _ll(xc, nc, pc) + _ll(xs, ns, ps)

    def excess(m: float) -> float:  # increasing in m above the estimate
        r1, r2 = fm_restricted(pc, ps, nc, ns, m)
        r1, r2 = min(max(r1, 1e-15), 1 - 1e-15), min(max(r2, 1e-15), 1 - 1e-15)
        return math.sqrt(max(2 * (full - _ll(xc, nc, r1) - _ll(xs, ns, r2)), 0.0)) - z

    lo, hi = pc - ps, 1.0 - ps - 1e-9
    if hi <= lo or excess(hi) < 0:
        return 1.0
    if not excess(lo) < 0:
        # at the estimate the statistic is 0 (excess -z): the restricted MLE lost its digits (arms 1e6
        # and more times apart in size, 1e15 requests), and brentq's ValueError made the check ERROR
        return None
    return float(brentq(excess, lo, hi, xtol=1e-7))


def rate_within(x_c: float, n_c: float, *, max_rate: float, level: float) -> tuple[bool, float, str]:
    """Does the canary's exact (Clopper-Pearson) upper bound at `level` lie below max_rate?"""
    xc, nc = int(round(x_c)), int(round(n_c))
    if nc <= 0:
        return False, math.inf, "canary has no requests"
    upper = _cp_upper(xc, nc, level)
    if upper < max_rate:
        return True, upper, ""
    return False, upper, (f"not yet shown below {exact(max_rate * 100)}%: upper bound "
                          f"{beside(upper * 100, max_rate * 100, 2)}% (level {level:.2g})")

"""`canary plan` on a real latency bucket layout: the bounds the judge will actually test at.

Why: the judge compares latency only at the bucket bounds the stable exports. A single "ratio of
neighbouring bounds" (`--bucket-ratio`) describes a geometric layout; real ones are not: Istio's
1, 2.5, 5, 10, 25, 50, 100, 250 ms, or hand-made 10 ms steps that thin out to 250, 500 at the top.
Planned as one ratio around the quantile, a layout that cannot resolve a +20% limit was still
claimed to catch +44% at a 5% step (the judge caught 0 of 200), and a good canary on 10 ms buckets
below a 250 ms one was claimed to pass +20% where the judge passed it in 19-39% of steps.

So with the layout read (`canary plan --prometheus-url`), every latency claim is computed on its
bounds, with the stable's latency a lognormal of the assumed shape fitted to the counts read:

* detection (`layout_detectable`): the judge's own bound pair (`stats.pick_pair` on the stable's
  expected counts) and the power of its exceedance test there against a canary scaled up;
* a relative pass (`layout_pass_pct`): the exact distribution of the judge's U_c / L_s over the
  bounds (each arm's binomial bound at level/2, independent arms);
* a ceiling pass (`layout_ceiling_ms`): only the largest bound at or below `max_ms` can show it.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from canary.analysis.stats import LAZY_STATS as st, pick_pair

PASS_POWER = 0.95  # as plan.PASS_POWER: "a good canary is shown within with this probability"
_SLACK = 1e-9  # a bound equal to a limit (as evidence._SLACK)


@dataclass(frozen=True)
class LatencyLayout:
    """A latency check's real bucket bounds and where the stable's latency sits in them."""

    bounds: tuple[float, ...]  # the finite bucket bounds the stable exports, ms, ascending
    median_ms: float  # the stable's median: a lognormal of the plan's shape fitted to the counts (`fit_layout`)

    def cdf(self, sigma: float, scale: float = 1.0) -> np.ndarray:
        """F at each bound of the stable's latency scaled by `scale` (a canary `scale` x slower)."""
        return np.asarray(st.norm.cdf(np.log(np.asarray(self.bounds) / (self.median_ms * scale)) / sigma), float)

    def quantile_ms(self, q: float, sigma: float) -> float:
        return self.median_ms * math.exp(sigma * float(st.norm.ppf(q)))

    def bucket_ratio(self, q: float, sigma: float) -> float:
        """hi / lo of the bucket holding the stable's q-quantile (inf: the first or the +Inf bucket)."""
        x = self.quantile_ms(q, sigma)
        i = int(np.searchsorted(self.bounds, x))
        if i == 0 or i >= len(self.bounds):
            return math.inf
        return self.bounds[i] / self.bounds[i - 1]


def fit_layout(bounds: Sequence[float], cum: Sequence[float], *, q: float, sigma: float) -> LatencyLayout | None:
    """The stable's layout with a lognormal of shape `sigma` fitted to its cumulative counts `cum`
    (one per bound, the last +Inf's): matched at the finite bound whose share is nearest q in normal
    scores, where the fit matters; None without a finite bound or a request.

    Prometheus' own interpolated quantile is no anchor: inside a bucket 2.5x wide it put a p95 of
    114 ms at 157 ms. A share of 0 or 1 at every bound (all requests in one bucket) puts the quantile
    at the geometric middle of that bucket (first bucket: half its bound; +Inf: twice the last bound)."""
    finite = [float(b) for b in bounds if math.isfinite(b)]
    if not finite or not cum or float(cum[-1]) <= 0:
        return None
    total = float(cum[-1])
    shares = [float(c) / total for c in cum[:len(finite)]]
    z_q = float(st.norm.ppf(q))
    inside = [(abs(float(st.norm.ppf(f)) - z_q), b, f) for b, f in zip(finite, shares) if 0 < f < 1]
    if inside:
        _, b, f = min(inside)
        return LatencyLayout(tuple(finite), b / math.exp(sigma * float(st.norm.ppf(f))))
    i = next((k for k, f in enumerate(shares) if f >= 1), len(finite))  # the bucket that holds everything
    at = finite[0] / 2 if i == 0 else 2 * finite[-1] if i >= len(finite) else math.sqrt(finite[i - 1] * finite[i])
    return LatencyLayout(tuple(finite), at / math.exp(sigma * z_q))


def with_quantile(layout: LatencyLayout, *, q: float, at_ms: float, sigma: float) -> LatencyLayout:
    """The same bounds with the stable's q-quantile moved to `at_ms` (`--p95-ms` given)."""
    return LatencyLayout(layout.bounds, at_ms / math.exp(sigma * float(st.norm.ppf(q))))


# -- detection --------------------------------------------------------------------------------------


def layout_power(layout: LatencyLayout, *, q: float, tol: float, sigma: float
                 ) -> Callable[[float, float, float], Callable[[float], float]] | None:
    """`plan._latency_power` on a real layout: at a look of (n_s, n_c, level), the power at a canary
    r x slower than stable of the judge's breach test on the bound pair it picks (`stats.pick_pair`
    on the stable's expected counts: canary > b' against the stable's exceedance p0 at b'/(1+tol),
    interpolated or read at a bound as the judge does). None when the layout offers no pair: no
    slowdown is found at all."""
    finite = np.asarray(layout.bounds, float)
    nominal = 1_000_000  # the pick depends on the shares only; its variance scales as 1/n_s
    pick = pick_pair(finite, layout.cdf(sigma) * nominal, nominal, q=q, tol=tol)
    if pick is None:
        return None
    j, _, p0, var0, _ = pick
    unit = var0 * nominal  # the stable estimate's variance per stable request
    b = float(finite[j])
    z_scale = math.log(b / layout.median_ms) / sigma

    def at(n_s: float, n_c: float, level: float) -> Callable[[float], float]:
        def power(r: float) -> float:
            if n_s <= 0 or n_c <= 0 or not 0 < p0 < 1:
                return 0.0
            p1 = float(st.norm.sf(z_scale - math.log(r) / sigma))  # P(canary > b')
            se0 = math.sqrt(p0 * (1 - p0) / n_c + unit / n_s)
            se1 = math.sqrt(p1 * (1 - p1) / n_c + unit / n_s)
            if se1 <= 0:
                return 1.0 if p1 > p0 else 0.0
            return float(st.norm.cdf((p1 - p0 - float(st.norm.isf(level)) * se0) / se1))
        return power
    return at


def detection_pair(layout: LatencyLayout, *, q: float, tol: float, sigma: float) -> str:
    """In words: the bound pair the judge's breach test uses on this layout (`layout_power`)."""
    finite = np.asarray(layout.bounds, float)
    pick = pick_pair(finite, layout.cdf(sigma) * 1_000_000, 1_000_000, q=q, tol=tol)
    if pick is None:
        return "no pair of bucket bounds the judge can compare there: this check catches no slowdown"
    j, x, p0, _, _ = pick
    return (f"the judge compares the canary's share above {finite[j]:g} ms with the stable's above {x:.4g} ms "
            f"({p0:.3g}, the stable's p{100 * (1 - p0):.3g}): a slowdown is caught once the canary's share there "
            "is clearly above it")


# -- the pass side ----------------------------------------------------------------------------------


def upper_count(n: int, q: float, level: float) -> int:
    """The smallest count k at a bound with P(Bin(n, q) >= k) <= level: the canary's upper bound on
    its q-quantile is the first bound whose count reaches it (`evidence.quantile_upper`); n + 1: none."""
    k = int(st.binom.isf(level, n, q)) + 1
    while k > 1 and float(st.binom.sf(k - 2, n, q)) <= level:
        k -= 1
    while k <= n and float(st.binom.sf(k - 1, n, q)) > level:
        k += 1
    return k


def lower_count(n: int, q: float, level: float) -> int:
    """The largest count k at a bound with P(Bin(n, q) <= k) <= level: the stable's lower bound on its
    q-quantile is the last bound whose count stays at most it (`evidence.quantile_lower`); -1: none."""
    k = int(st.binom.ppf(level, n, q))
    while k >= 0 and float(st.binom.cdf(k, n, q)) > level:
        k -= 1
    while k + 1 < n and float(st.binom.cdf(k + 1, n, q)) <= level:
        k += 1
    return k


def layout_pass_pct(n_s: float, n_c: float, *, layout: LatencyLayout, q: float, sigma: float, level: float
                    ) -> float | None:
    """The tightest relative limit (%) an equal canary is shown within, with 95% probability, at one
    look on `layout`: exactly, over where the judge's bounds fall. The canary's U_c is at or below a
    bound b when its count there reaches `upper_count` at level/2; the stable's L_s at or above b when
    its count stays at most `lower_count`; each count Binomial(n, F(b)), the arms independent, the
    claim U_c / L_s - 1 (evidence.relative_within). None: not with 95% probability at any limit."""
    ns, nc = int(math.floor(n_s)), int(math.floor(n_c))
    if ns <= 0 or nc <= 0:
        return None
    k_up, k_lo = upper_count(nc, q, level / 2), lower_count(ns, q, level / 2)
    if k_up > nc or k_lo < 0:
        return None
    f = layout.cdf(sigma)
    bounds = np.asarray(layout.bounds, float)
    up_by = np.maximum.accumulate(np.asarray(st.binom.sf(k_up - 1, nc, f), float))  # P(U_c <= b_i)
    p_up = np.diff(np.concatenate([[0.0], up_by]))  # P(U_c = b_i); the rest: no bound (inf)
    lo_from = np.maximum.accumulate(np.asarray(st.binom.cdf(k_lo, ns, f), float)[::-1])[::-1]  # P(L_s >= b_i)
    p_lo = lo_from - np.concatenate([lo_from[1:], [0.0]])  # P(L_s = b_i); the rest: 0 (unbounded)
    keep_u, keep_l = p_up > 1e-15, (p_lo > 1e-15) & (bounds > 0)
    if not keep_u.any() or not keep_l.any():
        return None
    ratio = (bounds[keep_u][:, None] / bounds[keep_l][None, :]).ravel()
    prob = np.outer(p_up[keep_u], p_lo[keep_l]).ravel()
    order = np.argsort(ratio, kind="stable")
    reached = np.flatnonzero(np.cumsum(prob[order]) >= PASS_POWER - 1e-12)
    if not len(reached):
        return None
    return max(0.0, float(ratio[order][reached[0]]) - 1.0) * 100


def largest_bound_at_most(layout: LatencyLayout, limit_ms: float) -> float | None:
    """The largest bound the judge can show a quantile below `limit_ms` at (None: none at or below it)."""
    at = [b for b in layout.bounds if b <= limit_ms * (1 + _SLACK)]
    return at[-1] if at else None


def layout_ceiling_ms(n_c: float, *, layout: LatencyLayout, max_ms: float, q: float, sigma: float, level: float,
                      ratio: Callable[..., float | None]) -> float | None:
    """The largest canary q-quantile shown below `max_ms`, with 95% probability, at one look on
    `layout`: the judge can show it only at a bound at or below `max_ms`, the largest best; there the
    canary's count must reach the judge's threshold (`ratio`: `plan.pass_ceiling_ratio` on fine
    buckets, how far below that bound the quantile must lie). None: no bound at or below `max_ms`,
    or too few requests."""
    b = largest_bound_at_most(layout, max_ms)
    if b is None:
        return None
    r = ratio(n_c, q=q, sigma=sigma, level=level)
    return None if r is None else b / r


def ceiling_problem(bounds: Sequence[float], bucket: tuple[float, float], *, q: float, max_ms: float,
                    canary_bounds: Sequence[float] | None = None) -> str:
    """Why a layout can never show a canary as fast as stable below `max_ms` ("" if it can, and if the
    stable is already above it: that is not the layout's doing). `bucket`: (lo, hi] holding the
    stable's q-quantile (`evidence.quantile_bucket`). The judge shows a ceiling on the canary's own
    bounds: `canary_bounds` when the canary's series already export other ones (read before its
    traffic), else the stable's `bounds`. Such a canary's quantile lies above lo; it is shown below
    `max_ms` only at a bound between it and `max_ms`, so never when the largest one at or below
    `max_ms` is at or below lo."""
    lo, hi = bucket
    if math.isnan(lo) or lo >= max_ms * (1 - _SLACK):
        return ""
    own = bounds if canary_bounds is None else canary_bounds
    at = [float(b) for b in own if math.isfinite(b) and b <= max_ms * (1 + _SLACK)]
    if at and at[-1] > lo * (1 + _SLACK):
        return ""
    if canary_bounds is None:
        return (f"stable p{q * 100:g} in ({lo:g}, {_fmt(hi)}] ms, a bucket around the ceiling {max_ms:g} ms: a canary "
                f"as fast as stable can never be shown below it, "
                + (f"only one faster than the bound {at[-1]:g} ms" if at else
                   "no canary at all (no bound at or below it)")
                + f" (needs a bucket bound at or just below {max_ms:g} ms)")
    return (f"stable p{q * 100:g} in ({lo:g}, {_fmt(hi)}] ms, and the canary's buckets have no bound between {lo:g} ms "
            f"and the ceiling {max_ms:g} ms (" + (f"its largest at or below it: {at[-1]:g} ms" if at else
                                                  "none at or below it") +
            "): the ceiling is judged on the canary's own buckets, so a canary as fast as stable can never be shown "
            f"below it (needs a canary bucket bound at or just below {max_ms:g} ms)")


def _fmt(x: float) -> str:
    return "+Inf" if math.isinf(x) else f"{x:g}"

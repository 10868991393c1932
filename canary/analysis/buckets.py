"""The latency check's bucket arithmetic on Python lists: what a look computes, without numpy.

Why it exists: a latency check walks one arm's cumulative counts a dozen times per look (the
quantile estimate, its bucket, confidence bounds at bucket bounds, the stable bound pair of the
breach test), on 10 to 100 buckets. On arrays that small each numpy call costs more than the
arithmetic (about a microsecond of overhead against tens of nanoseconds of work), and the
statistics asked for more than they used (binomial p-values at every bound, where a bound is
found by bisection). `Arm` computes each number once per look, with the very same floating-point
operations as the array functions in `stats` and `evidence` (which stay the reference, and take
every input this class refuses: counts that are not finite; test_judge_speedup compares both).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

# cython_special: scipy.special's C functions for one float, the same values as its ufuncs at a quarter of
# the cost of a ufunc call on a scalar (the judge makes a dozen such calls per check and look).
from scipy.special import cython_special

from canary.analysis.stats import BDTR_MAX_N, KEY_QUANTUM, bdtr, bdtrc

# Counts from this on go to the array path: none is that large, and below it Python's round() and
# numpy's rint-then-int64 give the same integer (numpy's overflows further up, Python's does not).
_EXACT_INT = 2.0 ** 53


def usable(counts: Sequence[float]) -> bool:
    """Can `Arm` take these cumulative counts (a Histogram's: non-decreasing)? All finite, from 0
    to below 2**53; the array path takes the rest (NaN or infinite counts too)."""
    return bool(counts) and all(map(math.isfinite, counts)) and 0.0 <= counts[0] and counts[-1] < _EXACT_INT


class Arm:
    """One arm's cumulative counts at the bounds both arms share, read once per look.

    `bounds` ascending, the last +Inf; `cum` the cumulative counts there (finite, `usable`).
    Each method equals the array function named in its docstring, bit for bit.
    """

    __slots__ = ("bounds", "cum", "k", "n", "q", "_estimate", "_bucket")

    def __init__(self, bounds: Sequence[float], cum: Sequence[float], q: float) -> None:
        self.bounds, self.cum, self.q = bounds, cum, q
        self.k = IntCounts(cum)
        self.n = self.k[-1]
        self._estimate: float | None = None
        self._bucket: tuple[float, float] | None = None

    @property
    def total(self) -> float:
        return float(self.cum[-1])

    def estimate(self) -> float:
        """stats.histogram_quantile(bounds, cum, q): Prometheus' interpolated quantile."""
        if self._estimate is None:
            self._estimate = _histogram_quantile(self.bounds, self.cum, self.q)
        return self._estimate

    def _quantile_index(self) -> int:
        """The index of the bound that closes the quantile's bucket (len(bounds) - 1: +Inf)."""
        total = float(self.cum[-1])
        return min(bisect_left(self.cum, self.q * total * (1 - 1e-12)), len(self.bounds) - 1)

    def bucket(self) -> tuple[float, float]:
        """evidence.quantile_bucket(bounds, cum, q): the bucket (lo, hi] holding the quantile."""
        if self._bucket is None:
            if float(self.cum[-1]) <= 0:
                self._bucket = (math.nan, math.nan)
            else:
                i = self._quantile_index()
                self._bucket = (0.0 if i == 0 else float(self.bounds[i - 1])), float(self.bounds[i])
        return self._bucket

    def p_above(self, j: int) -> float:
        """stats.p_quantile_above at finite bound j: P(Bin(n, q) <= k_j)."""
        if self.n > BDTR_MAX_N:
            return bdtr(self.k[j], self.n, self.q)
        return float(cython_special.bdtr(self.k[j], self.n, self.q))

    def p_at_most(self, j: int) -> float:
        """stats.p_quantile_at_most at finite bound j: P(Bin(n, q) >= k_j), 1 at k_j = 0."""
        k = self.k[j]
        if k <= 0:
            return 1.0
        if self.n > BDTR_MAX_N:
            return bdtrc(k - 1, self.n, self.q)
        return float(cython_special.bdtrc(k - 1, self.n, self.q))

    def lower(self, level: float) -> float:
        """evidence.quantile_lower: the largest finite bound shown below the quantile, else 0.

        Searched from the quantile's bucket, not computed at every bound: k grows with the
        bound, so p_above does too, and the bounds with p_above <= level are a prefix (the
        array function takes the last of them), which ends near the quantile.
        """
        shown = _first_true(lambda j: not self.p_above(j) <= level, len(self.bounds) - 1,  # NaN: not shown
                            self._quantile_index())
        return float(self.bounds[shown - 1]) if shown else 0.0

    def upper(self, level: float) -> float:
        """evidence.quantile_upper: the smallest finite bound shown at or above the quantile, else inf.

        As in `lower`: p_at_most falls as k grows, so the bounds it shows are a suffix.
        """
        m = len(self.bounds) - 1
        first = _first_true(lambda j: self.p_at_most(j) <= level, m, self._quantile_index())
        return float(self.bounds[first]) if first < m else math.inf


class IntCounts:
    """stats._ints(cum), one element at a time (a look reads a few): np.rint's half to even is
    round() on a float, and the counts are >= 0 (`usable`)."""

    __slots__ = ("cum",)

    def __init__(self, cum: Sequence[float]) -> None:
        self.cum = cum

    def __getitem__(self, j: int) -> int:
        return round(self.cum[j])

    def __len__(self) -> int:
        return len(self.cum)


def _first_true(pred: Callable[[int], bool], m: int, start: int) -> int:
    """The first j in [0, m) with pred(j) (m if none), for a pred False up to some j, True from it.

    A galloping search outward from `start` (where the answer is expected): a few evaluations
    when it is near, about 2 log2(distance) otherwise, never more than bisection's order.
    """
    start = min(max(start, 0), m - 1)
    if m <= 0:
        return 0
    if pred(start):  # the answer is in [0, start]
        hi, step = start, 1
        while hi - step >= 0 and pred(hi - step):
            hi -= step
            step *= 2
        lo = max(hi - step + 1, 0)  # pred(hi - step) is False (or hi - step < 0)
        return lo + bisect_left(range(lo, hi), True, key=pred)
    lo, step = start + 1, 1  # the answer is in [start + 1, m]
    while lo + step - 1 < m and not pred(lo + step - 1):
        lo += step
        step *= 2
    hi = min(lo + step - 1, m)  # pred(hi) is True (or hi = m)
    return lo + bisect_left(range(lo, hi), True, key=pred)


def _histogram_quantile(bounds: Sequence[float], cum: Sequence[float], q: float) -> float:
    """stats.histogram_quantile on lists (bisect_left is searchsorted's 'left' on sorted counts)."""
    total = float(cum[-1])
    if total <= 0:
        return math.nan
    rank = q * total
    i = bisect_left(cum, rank)
    if i >= len(bounds) - 1:
        return float(bounds[-2])
    lo = 0.0 if i == 0 else float(bounds[i - 1])
    below = 0.0 if i == 0 else float(cum[i - 1])
    inside = float(cum[i]) - below
    if i == 0 and bounds[0] <= 0:
        return float(bounds[0])
    frac = (rank - below) / inside if inside > 0 else 1.0
    return lo + (float(bounds[i]) - lo) * frac


_NEAR = math.log(1.5)
_FEW = 24  # bounds (Istio's 19) where pick_pair computes every candidate at once: a first, narrower pass would not pay


def pick_pair(finite: Sequence[float], cum: Sequence[float], n_s: int, *, q: float, tol: float
              ) -> tuple[int, float, float, float, float] | None:
    """stats.pick_pair on lists: the same choice and numbers, from fewer candidates.

    `cum`: the stable's cumulative counts (`usable`) at the finite bounds, rounded here as
    stats._ints rounds them (only the first len(finite) are read); `n_s` its rounded total.

    The array function computes every canary bound j; here, first only the j whose stable
    bucket can hold an exceedance "near" 1-q (within 1.5x): exceedances fall with the bucket
    and buckets rise with j, so those j are one run, and if one of them is near, the choice
    (near first, least key, first j) is among them. Otherwise (a layout too coarse there) every
    j is computed, as the array function does; so it is with few bounds (`_FEW`).
    """
    m = len(finite)
    target = 1.0 - q
    # Stable buckets k that can hold a near exceedance, exceed(k) >= (1-q)/1.5 and exceed(k+1) <=
    # 1.5 (1-q) with exceed(k) = 1 - round(cum[k-1])/n_s: found on the counts by bisection, a count
    # wider either side than rounding and the floats need (a wider run costs a few more candidates).
    first = bisect_left(cum, n_s * (1.0 - target * 1.5) - 1.0, 0, m)
    last = min(bisect_right(cum, n_s * (1.0 - target / 1.5) + 1.0, 0, m), m - 1)
    best = None
    if first <= last and m > _FEW:
        rows = _rows(finite, cum, n_s, first, last)
        lo_x = rows[0][0] * (1.0 + tol)  # canary bounds below this map to earlier stable buckets
        j0 = max(bisect_left(finite, lo_x) - 1, 0)
        best = _choose(finite, range(j0, m), rows, first, target=target, tol=tol, near_only=True)
    if best is None:
        best = _choose(finite, range(m), _rows(finite, cum, n_s, 0, m - 1), 0, target=target, tol=tol,
                       near_only=False)
    if best is None:
        return None
    j, x, w, s_lo, s_hi, p0, widen = best
    var0 = (w * w * s_lo * (1 - s_lo) + (1 - w) ** 2 * s_hi * (1 - s_hi) + 2 * w * (1 - w) * s_hi * (1 - s_lo)) / n_s
    return j, x, p0, var0, widen


def _rows(finite: Sequence[float], cum: Sequence[float], n_s: int, first: int, last: int
          ) -> list[tuple[float, float, float, bool]]:
    """Stable buckets first..last, bucket k being (lo, finite[k]]: (lo, the exceedance at lo and at
    finite[k], whether its count per ms is not above the bucket before's), as the array function
    computes them (its lo_b[k], exceed[k], exceed[k + 1], falls[k])."""
    start = max(first - 1, 0)  # `falls` compares with the bucket before
    end = min(last + 1, len(finite) - 1)  # ... and with the bucket after, where there is a finite one
    lo = [0.0 if k == 0 else finite[k - 1] for k in range(start, end + 1)]
    # the rounded count <= each bucket's lo (one more: <= the last bucket's bound), as stats._ints rounds
    below = [0.0 if k == 0 else float(round(cum[k - 1])) for k in range(start, end + 2)]
    exceed = [1.0 - c / n_s for c in below]
    # count per ms; a first bound at 0 has width 0: at least 1e-300, as the array function divides
    dens = [(below[i + 1] - below[i]) / max(finite[k] - lo[i], 1e-300) for i, k in enumerate(range(start, end + 1))]
    rows = []
    for i, k in enumerate(range(start, last + 1)):
        if k >= first:
            after = k + 1 > end or dens[i + 1] <= dens[i]
            rows.append((lo[i], exceed[i], exceed[i + 1], k > 0 and dens[i] <= dens[i - 1] and after))
    return rows


def _choose(finite: Sequence[float], js: range, rows: list[tuple[float, float, float, bool]], first: int, *,
            target: float, tol: float, near_only: bool
            ) -> tuple[int, float, float, float, float, float, float] | None:
    """The best candidate among canary bounds `js` (stats.pick_pair's key, element by element).

    `rows`: `_rows` from stable bucket `first` on; a j whose bucket is outside them is skipped
    (before) or ends the search (after). `near_only`: None unless some candidate is near.
    Returns (j, x, w, s_lo, s_hi, p0, widen).
    """
    m = len(finite)
    scale = 1.0 + tol
    found: list[tuple[bool, float, tuple[int, float, float, float, float, float, float]]] = []  # in j order
    for j in js:
        x = finite[j] / scale
        i = bisect_left(finite, x * (1 - 1e-12))
        if i >= m:  # x beyond the last finite bound: so is every later j
            break
        if i < first:
            continue
        if i - first >= len(rows):
            break
        lo, s_lo, s_hi, falling = rows[i - first]
        hi = finite[i]
        on_bound = hi <= x * (1 + 1e-12)
        above_zero = lo > 0
        if on_bound:
            w = 0.0
        elif falling:
            w = (hi - x) / (hi - lo)
        else:
            w = 1.0
        widen = (x / lo if not (on_bound or falling) and above_zero else 1.0) - 1.0
        p0 = w * s_lo + (1 - w) * s_hi
        if not (on_bound or falling or above_zero) or p0 <= 0:
            continue
        dist = abs(math.log(p0 / target))
        near = dist <= _NEAR
        found.append((near, (widen if near else dist) + 1e-6 * dist, (j, x, w, s_lo, s_hi, p0, widen)))
    # as stats.pick_pair: near candidates first; among them the first j within KEY_QUANTUM of the least key
    any_near = any(near for near, _, _ in found)
    if not found or (near_only and not any_near):
        return None
    group = [(key, cand) for near, key, cand in found if near == any_near]
    least = min(key for key, _ in group)
    return next(cand for key, cand in group if key <= least + KEY_QUANTUM)

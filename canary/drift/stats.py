"""Per-feature drift of live data against a training profile, from bucket counts.

Pure functions over counts (no I/O). The live side is what a model server
exports with the profile's own bounds (`canary.drift.exporter`), so both sides
are histograms over the same buckets and a comparison never re-bins.

Test selection follows Evidently's data-drift preset defaults (its "how it
works" page and `evidently.calculations.stattests`), so a user of that preset
gets the verdicts they expect:

| reference rows | numeric (more than 5 distinct values) | categorical, or numeric with <= 5 values |
|---|---|---|
| <= 1,000 | two-sample Kolmogorov-Smirnov, drift when p < 0.05 | chi-square test of homogeneity, p < 0.05 (two categories: z-test of proportions) |
| > 1,000 | Wasserstein distance / reference std >= 0.1, and significant | Jensen-Shannon distance (natural log) >= 0.1, and significant |

Where we part from Evidently, and why (decision text in docs/drift.md):

* Both sides are samples. Evidently's chi-square is a goodness-of-fit test that takes the
  reference's category shares as the true probabilities; a 1,000-row reference's shares are off
  by ~1.5 points, which a large live window then "detects" with certainty (200/200 false drift
  at 1M live rows). Here it is Pearson's test of homogeneity on the 2 x k table, whose false-drift
  rate is the nominal 5% at any live size (the KS and z tests were two-sample already).
* A distance is evidence only beyond its sampling noise. At a few hundred live values a plug-in
  distance of two samples of one distribution is often >= 0.1 by chance (Wasserstein: 2 of 3
  features at 100 values). So a distance test drifts only when the distance is >= 0.1 *and* the
  matching two-sample test rejects at p < 0.05 (`FeatureDrift.p_value`): the binned KS for the
  Wasserstein distance (the z-test of the means when the means' gap set the distance), the
  test of homogeneity for Jensen-Shannon. With thousands of live values every distance >= 0.1
  is significant, so this changes nothing there; at small n it keeps the false-drift rate at
  most the test's 5%.

The dataset drifts when the share of drifted features is >= 0.5. PSI is
always computed as well (the article's `model_data_drift_score`).

What bucket counts change (documented, measured in docs/benchmarks/drift.md):
the KS statistic is read at bucket bounds, a lower bound of the exact one
(conservative); the Wasserstein distance integrates CDFs linear inside each
bucket, with the open end buckets closed at the reference's min and max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as st

SMALL_REFERENCE = 1_000  # Evidently: <= 1000 reference rows -> tests with p-values, else distances
P_THRESHOLD = 0.05  # Evidently's default for p-value tests (0.95 confidence)
DISTANCE_THRESHOLD = 0.1  # Evidently's default for Wasserstein (normed) and Jensen-Shannon
DRIFT_SHARE = 0.5  # dataset drift: share of drifted features at or above this
# a missing-rate rise beyond doubt: what starts `drift.features_missing` (one evaluation alerts, with no
# hysteresis: at P_THRESHOLD the noise of overlapping low-traffic windows alerted, and resolved, 59-77 times
# in four weeks at 150 requests an hour, for 10% missing in training) and what makes a feature with too few present values NOT ARRIVING rather
# than too little traffic to judge (`DatasetDrift.not_arriving`)
MISSING_SURE_P = 1e-5
MISSING_POINTS = 5.0  # a missing rate this many points above training's (and significant) is reported
CATEGORICAL_BELOW = 6  # numeric features with fewer distinct values are compared as categories
# a few-valued feature's live mean and its buckets are other series: Prometheus's increase() extrapolates each on its
# own (up to about a scrape interval at each end of the window, less for a series that starts in it: a pod started 10
# minutes ago, scraped every 30 s, up to 5%), and the exporter counts a float32 value in its training value's bucket.
# So their gap (`compare._off_values`) is read less 5% of the largest value's magnitude: a year {2021, 2022, 2023}
# would otherwise read a pod's restart as drift (decision 449)
OFF_SLACK = 0.05
SPARSE_CELL = 5.0  # a table with a cell whose expected count is smaller gets a Monte Carlo p-value (Cochran's rule)
MONTE_CARLO_DRAWS = 2000  # tables drawn for it: p-values down to 1/2001, +-0.005 at 0.05
MONTE_CARLO_SEED = 20261202  # fixed: the same counts give the same verdict
# Sequential Monte Carlo (Besag and Clifford, 1991): tables are drawn MONTE_CARLO_BATCH at a time and the
# drawing stops once MONTE_CARLO_STOP of them are at least as extreme as the one seen (p = h/l, as valid as
# the full count); a p-value near 0.5 then costs about 100 tables instead of 2,000 (5 ms a feature before)
MONTE_CARLO_BATCH = 100
MONTE_CARLO_STOP = 50
_EPS = 1e-4  # floor on shares in PSI and JS (Evidently floors empty bins at 1e-4 too)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison: which test, its value, and the verdict."""

    feature: str
    kind: str  # "numeric" | "categorical"
    test: str  # "ks" | "wasserstein" | "chisquare" | "z" | "jensenshannon"
    value: float  # the test's statistic: a p-value for ks/chisquare/z, a distance otherwise
    threshold: float
    drifted: bool
    psi: float
    n_reference: float
    n_current: float
    note: str = ""
    p_value: float | None = None  # distance tests: the two-sample test that must also reject (< P_THRESHOLD)

    def __post_init__(self) -> None:  # plain Python numbers (JSON), whatever numpy handed over
        for name in ("value", "threshold", "psi", "n_reference", "n_current"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "drifted", bool(self.drifted))
        if self.p_value is not None:
            object.__setattr__(self, "p_value", float(self.p_value))

    @property
    def score(self) -> float:
        """`model_data_drift_score`: larger is more drift (1 - p for p-value tests, the distance otherwise)."""
        return 1.0 - self.value if self.test in ("ks", "chisquare", "z") else self.value

    def reason(self) -> str:
        rel = "<" if self.test in ("ks", "chisquare", "z") else ">="
        what = "p" if self.test in ("ks", "chisquare", "z") else self.test
        verdict = "drift" if self.drifted else "no drift"
        if self.p_value is not None:  # a distance: drift needs it at the threshold and beyond sampling noise
            rel = f"{rel} {self.threshold:g} and significant (p {self.p_value:.3g}, needs < {P_THRESHOLD:g})"
            return (f"{self.feature}: {verdict} ({what} {self.value:.3g}, drift when {rel}; "
                    f"PSI {self.psi:.3g}; n={self.n_current:,.0f} vs {self.n_reference:,.0f} reference)"
                    + (f"; {self.note}" if self.note else ""))
        return (f"{self.feature}: {verdict} ({what} {self.value:.3g}, drift when {rel} {self.threshold:g}; "
                f"PSI {self.psi:.3g}; n={self.n_current:,.0f} vs {self.n_reference:,.0f} reference)"
                + (f"; {self.note}" if self.note else ""))


@dataclass(frozen=True)
class MissingShift:
    """A feature's missing-value rate, reference vs live (`model_feature_missing_rate`).

    `shifted` when the live rate is above the reference's by more than MISSING_POINTS points and
    the difference is significant (two-proportion z, one-sided p < P_THRESHOLD): an upstream
    pipeline that starts sending nulls. Reported beside the drift tests, not part of the share.
    """

    feature: str
    reference_rate: float
    live_rate: float
    n_live: float
    shifted: bool
    p_value: float = 1.0  # one-sided, of the live rate being above training's (the z-test of `shifted`)

    def reason(self) -> str:
        return (f"{self.feature}: missing {self.live_rate:.1%} live vs {self.reference_rate:.1%} in training "
                f"(n={self.n_live:,.0f})" + ("; MORE MISSING" if self.shifted else ""))


@dataclass(frozen=True)
class DatasetDrift:
    features: tuple[FeatureDrift, ...]
    share: float  # drifted features / compared features
    drifted: bool  # share >= DRIFT_SHARE
    missing: tuple[MissingShift, ...] = ()

    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    def not_arriving(self) -> tuple[str, ...]:
        """Features that (almost) stopped arriving: significantly more missing than in training and too
        few present values to be compared (a column dropped upstream, numbers sent as text), the rise
        beyond doubt (MISSING_SURE_P: at low traffic a window's noise leaves a feature that arrives with too
        few values, which is too little to judge, not a feature that stopped arriving). The drift
        share is computed without them, so a verdict must never be read as covering them."""
        compared = {f.feature for f in self.features}
        return tuple(m.feature for m in self.missing
                     if m.shifted and m.p_value < MISSING_SURE_P and m.feature not in compared)

    def more_missing(self) -> tuple[str, ...]:
        """Every feature whose missing rate rose significantly (MORE MISSING), not arriving ones included."""
        return tuple(m.feature for m in self.missing if m.shifted)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index over the same buckets (shares floored at 1e-4)."""
    r, c = _shares(reference), _shares(current)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance with natural logarithms (scipy.spatial.distance.jensenshannon's default)."""
    r, c = _norm(reference), _norm(current)
    m = (r + c) / 2
    jsd = 0.5 * float(np.sum(special.rel_entr(r, m)) + np.sum(special.rel_entr(c, m)))
    return math.sqrt(max(jsd, 0.0))


def ks_binned(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(D, p): the two-sample KS statistic at the bucket bounds and its asymptotic p-value.

    D at bucket bounds is a lower bound of the exact statistic, so the p-value is conservative.
    """
    n, m = float(np.sum(reference)), float(np.sum(current))
    if not (n > 0 and m > 0):  # an empty side has no distribution: no distance (NaN), no evidence of drift (p 1),
        return math.nan, 1.0  # as `ks_rows` says it; 0/0 here was numpy's "invalid value encountered in divide"
    d = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    en = n * m / (n + m)
    return d, float(special.kolmogorov(math.sqrt(en) * d)) if d > 0 else 1.0


def chi2_homogeneity(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of homogeneity: do two samples' counts over the same k cells
    (the 2 x k contingency table) come from one distribution? The reference is a sample too: its
    shares are estimates with their own noise, never known probabilities (a goodness-of-fit test
    that takes them as the truth calls the same distribution drift, surely, as live n grows).
    Cells empty on both sides are left out (df = cells used - 1); 1.0 with fewer than two cells
    used or an empty side."""
    r, c = np.asarray(reference, float)[None, :], np.asarray(current, float)[None, :]
    return float(chi2_homogeneity_rows(r, c)[0])


def chi2_homogeneity_rows(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """`chi2_homogeneity` of every row pair (rows padded with zeros on both sides: such cells add nothing).

    A table with a cell whose smaller expected count is below SPARSE_CELL (Cochran's rule) gets its
    p-value by Monte Carlo instead of the chi-square distribution, which rejects far too often on many
    near-empty cells (12% instead of 5% for 100 categories and 100 live values): up to MONTE_CARLO_DRAWS
    live rows drawn with the table's margins fixed, stopping after MONTE_CARLO_STOP at least as extreme
    (Besag and Clifford's sequential p-value) (multivariate hypergeometric, counts rounded to
    whole values), as R's `chisq.test(simulate.p.value = TRUE)` does. It used to pool those cells into
    one, which hid a shift into them: 80 of 400 live values in a 1% category, or a new one, read p = 1.
    """
    r, c = np.asarray(reference, float), np.asarray(current, float)
    n_r, n_c = r.sum(axis=1, keepdims=True), c.sum(axis=1, keepdims=True)
    col = r + c
    used = col > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        e_r, e_c = n_r * col / (n_r + n_c), n_c * col / (n_r + n_c)
        stat = np.where(used, (r - e_r) ** 2 / e_r + (c - e_c) ** 2 / e_c, 0.0).sum(axis=1)
        sparse = (used & (np.minimum(e_r, e_c) < SPARSE_CELL)).any(axis=1)
    df = used.sum(axis=1) - 1
    ok = (df >= 1) & (n_r[:, 0] > 0) & (n_c[:, 0] > 0)
    out = np.where(ok, special.chdtrc(np.maximum(df, 1), np.where(ok, stat, 0.0)), 1.0)
    for i in np.flatnonzero(ok & sparse):
        out[i] = _chi2_monte_carlo(r[i, used[i]], c[i, used[i]])
    return out


def _chi2_monte_carlo(reference: np.ndarray, current: np.ndarray) -> float:
    """Monte Carlo p-value of Pearson's statistic for one 2 x k table of used cells, margins fixed."""
    r, c = np.rint(reference).astype(np.int64), np.rint(current).astype(np.int64)
    col, n_c, total = r + c, int(c.sum()), int(r.sum() + c.sum())
    keep = col > 0
    r, c, col = r[keep], c[keep], col[keep]
    if n_c == 0 or n_c == total or len(col) < 2:
        return 1.0
    e_c = n_c * col / total
    e_r = col - e_c

    def pearson(live: np.ndarray) -> np.ndarray:
        return ((live - e_c) ** 2 / e_c + ((col - live) - e_r) ** 2 / e_r).sum(axis=-1)

    rng = np.random.default_rng(MONTE_CARLO_SEED)
    seen = pearson(c.astype(float)) * (1 - 1e-12)
    at_least, drawn_so_far = 0, 0
    while drawn_so_far < MONTE_CARLO_DRAWS:  # in batches, stopping early once the p-value is clearly large
        size = min(MONTE_CARLO_BATCH, MONTE_CARLO_DRAWS - drawn_so_far)
        if total < 10**9:  # numpy's bound for "marginals"
            drawn = rng.multivariate_hypergeometric(col, n_c, size=size, method="marginals")
        else:  # a billion values: drawing the live row with replacement differs by less than the noise
            drawn = rng.multinomial(n_c, col / total, size=size)
        hits = np.flatnonzero(pearson(drawn.astype(float)) >= seen)
        if at_least + len(hits) >= MONTE_CARLO_STOP:
            # Besag and Clifford (1991): stopped at the draw l of the h-th table at least as extreme, p = h/l
            return MONTE_CARLO_STOP / (drawn_so_far + int(hits[MONTE_CARLO_STOP - at_least - 1]) + 1)
        at_least += len(hits)
        drawn_so_far += size
    return (1 + at_least) / (MONTE_CARLO_DRAWS + 1)


def mean_gap_p(gap: float, *, std: float, n_reference: float, n_current: float) -> float:
    """Two-sided p-value of |live mean - reference mean| = `gap` when both are means of samples of one
    distribution with the reference's standard deviation `std` (z-test; the live values' own spread
    is not exported, and under no drift it is the reference's)."""
    if not (std > 0 and n_reference > 0 and n_current > 0):
        return 0.0 if gap > 0 else 1.0
    return float(2 * special.ndtr(-abs(gap) / (std * math.sqrt(1 / n_reference + 1 / n_current))))


def wasserstein_binned(edges: np.ndarray, reference: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance of two histograms over `edges` (len(counts) + 1, all finite),
    with each CDF linear inside a bucket: the exact integral of |F_r - F_c| under that model."""
    cr, cc = np.cumsum(reference), np.cumsum(current)
    d = np.empty(len(cr) + 1)
    d[0] = 0.0
    np.subtract(cr / cr[-1], cc / cc[-1], out=d[1:])  # F_r - F_c at every edge
    d0, d1 = d[:-1], d[1:]
    a0, a1 = np.abs(d0), np.abs(d1)
    # same sign: a trapezoid; opposite signs: two triangles either side of the crossing
    area = np.where(d0 * d1 >= 0, (a0 + a1) / 2, (d0 * d0 + d1 * d1) / (2 * np.maximum(a0 + a1, 1e-300)))
    return float(area @ np.diff(edges))


def numeric_drift(feature: str, bounds: np.ndarray, reference: np.ndarray, current: np.ndarray, *,
                  lo: float, hi: float, std: float, n_unique: int, mean_gap: float | None = None,
                  mean_n: float | None = None, off_values: float | None = None) -> FeatureDrift:
    """A numeric feature: `bounds` the finite upper bounds of its buckets (the last bucket is open,
    so counts have len(bounds) + 1 entries), `lo`/`hi` the reference's min and max, `std` its
    standard deviation, `n_unique` its distinct values. Counts are per bucket, not cumulative.
    `mean_gap`, |live mean - reference mean| when known, bounds the Wasserstein distance from below
    (W1 >= |difference of means|): mass that moved beyond the last bucket still counts; `mean_n` the
    live values the live mean is over (default: the counts' total).
    A Wasserstein distance >= 0.1 drifts only when significant (`p_value` < 0.05): the binned
    two-sample KS, or the z-test of the means when their gap set the distance.
    `off_values`: for a feature with fewer than CATEGORICAL_BELOW distinct values whose bounds are those values,
    |live mean - the mean its buckets hold at those values| (`compare`), when the live sum is known: live values
    that are none of the training's (-1 sent for a 0/1 flag, 0 for a rating of 1-5, 1.5 between 1 and 2) count in
    the bucket of the value above them, so compared bucket by bucket they read as that value (decision 449)."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    n_r, n_c = float(ref.sum()), float(cur.sum())
    p = psi(ref, cur)
    if n_unique < CATEGORICAL_BELOW:
        by_value = _categorical(feature, ref, cur, psi_value=p, kind="numeric")
        return by_value if by_value.drifted or off_values is None else _off_values(
            by_value, off_values, std=std, n_unique=n_unique, mean_n=mean_n or n_c, magnitude=max(abs(lo), abs(hi)))
    if n_r <= SMALL_REFERENCE:
        _, pv = ks_binned(ref, cur)
        return FeatureDrift(feature, "numeric", "ks", pv, P_THRESHOLD, pv < P_THRESHOLD, p, n_r, n_c)
    edges = np.concatenate([[min(lo, float(bounds[0]))], np.asarray(bounds, float), [max(hi, float(bounds[-1]))]])
    if std <= 0 or not math.isfinite(std):
        dist, note = (0.0 if np.allclose(_norm(ref), _norm(cur)) else math.inf), "constant in the reference"
        return FeatureDrift(feature, "numeric", "wasserstein", dist, DISTANCE_THRESHOLD, dist >= DISTANCE_THRESHOLD,
                            p, n_r, n_c, note)
    binned = wasserstein_binned(edges, ref, cur)
    dist, note = max(binned, mean_gap or 0.0) / std, ""
    if mean_gap is not None and mean_gap > binned:
        note = "the means' gap exceeds the binned distance (mass beyond the buckets)"
        pv = mean_gap_p(mean_gap, std=std, n_reference=n_r, n_current=mean_n or n_c)
    else:
        pv = ks_binned(ref, cur)[1]
    return FeatureDrift(feature, "numeric", "wasserstein", dist, DISTANCE_THRESHOLD,
                        dist >= DISTANCE_THRESHOLD and pv < P_THRESHOLD, p, n_r, n_c, note, pv)


def _off_values(by_value: FeatureDrift, gap: float, *, std: float, n_unique: int, mean_n: float,
                magnitude: float) -> FeatureDrift:
    """A few-valued feature compared value by value (`by_value`, not drifted) whose live mean is `gap` away from
    the mean its buckets hold at the training's values (beyond OFF_SLACK of `magnitude`, its largest value's): drift
    when the gap is DISTANCE_THRESHOLD standard deviations or more and significant (z-test), as a Wasserstein
    distance's lower bound is; else `by_value` as it was. A feature constant in training has no spread: its gap is in
    units of that slack instead (finite: an infinite distance is no JSON a receiver of the evidence parses)."""
    dist = gap / (std if std > 0 and math.isfinite(std) else max(OFF_SLACK * magnitude, 1e-9))
    pv = mean_gap_p(gap, std=std, n_reference=by_value.n_current, n_current=mean_n)
    if not (dist >= DISTANCE_THRESHOLD and pv < P_THRESHOLD):
        return by_value
    return FeatureDrift(by_value.feature, "numeric", "off_values", dist, DISTANCE_THRESHOLD, True, by_value.psi,
                        by_value.n_reference, by_value.n_current,
                        f"live values that are none of the training's {n_unique} value{'' if n_unique == 1 else 's'}: "
                        f"the live mean is {gap:.3g} (beyond {OFF_SLACK:.0%} of the largest) from what its buckets hold "
                        f"at those values (below the lowest, between two, or above the highest)", pv)


def categorical_drift(feature: str, reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
    """A categorical feature: counts per category, in the same order on both sides (a category the
    reference never saw has reference count 0)."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    return _categorical(feature, ref, cur, psi_value=psi(ref, cur), kind="categorical")


def _categorical(feature: str, ref: np.ndarray, cur: np.ndarray, *, psi_value: float, kind: str) -> FeatureDrift:
    n_r, n_c = float(ref.sum()), float(cur.sum())
    used = (ref + cur) > 0
    fresh = bool(np.any((ref[used] <= 0) & (cur[used] > 0)))
    if n_r > SMALL_REFERENCE:
        d = js_distance(ref[used], cur[used])
        pv = chi2_homogeneity(ref[used], cur[used])
        return FeatureDrift(feature, kind, "jensenshannon", d, DISTANCE_THRESHOLD,
                            d >= DISTANCE_THRESHOLD and pv < P_THRESHOLD, psi_value, n_r, n_c, "", pv)
    if int(used.sum()) <= 2:
        pv = _z_test(ref[used], cur[used])
        return FeatureDrift(feature, kind, "z", pv, P_THRESHOLD, pv < P_THRESHOLD, psi_value, n_r, n_c)
    pv = chi2_homogeneity(ref[used], cur[used])
    return FeatureDrift(feature, kind, "chisquare", pv, P_THRESHOLD, pv < P_THRESHOLD, psi_value, n_r, n_c,
                        "a category absent from the reference" if fresh and pv < P_THRESHOLD else "")


def _z_test(ref: np.ndarray, cur: np.ndarray) -> float:
    """Two-sided z-test of the first category's share (pooled variance), as Evidently's z stattest."""
    if len(ref) < 2:
        return 1.0 if len(ref) == 1 and ref[0] > 0 and cur[0] > 0 else 0.0
    n_r, n_c = ref.sum(), cur.sum()
    if not (n_r > 0 and n_c > 0):  # a side that saw none of the categories has no share to compare: no test (NaN,
        return math.nan  # never drift), as before, without numpy's "invalid value encountered in scalar divide"
    p_r, p_c = ref[0] / n_r, cur[0] / n_c
    pooled = (ref[0] + cur[0]) / (n_r + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_r + 1 / n_c))
    if se == 0:
        return 1.0 if p_r == p_c else 0.0
    return float(2 * st.norm.sf(abs(p_r - p_c) / se))


# -- many features in one pass: rows of 2-D arrays, one row per feature ------------------------------
# numpy's cost is per call, not per element: per feature, 50 features x 20 buckets spent ~100 us each in
# call overhead (docs/benchmarks/drift.md). Row by row these equal the functions above to rounding
# (tests/unit/test_drift_batch.py); rare cases (few values, a constant reference, a small reference's
# chi-square) still go through the per-feature functions.

def psi_rows(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """`psi` of every row pair."""
    r, c = np.maximum(_norm_rows(reference), _EPS), np.maximum(_norm_rows(current), _EPS)
    return np.sum((c - r) * np.log(c / r), axis=1)


def js_rows(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """`js_distance` of every row pair (rows padded with zeros on both sides: such cells add nothing)."""
    r, c = _norm_rows(reference), _norm_rows(current)
    m = (r + c) / 2
    jsd = 0.5 * (np.sum(special.rel_entr(r, m), axis=1) + np.sum(special.rel_entr(c, m), axis=1))
    return np.sqrt(np.maximum(jsd, 0.0))


def ks_rows(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ks_binned` of every row pair: (D, p)."""
    n, m = reference.sum(axis=1), current.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty side: D is NaN, p 1 (as ks_binned)
        d = np.max(np.abs(np.cumsum(reference, axis=1) / n[:, None] - np.cumsum(current, axis=1) / m[:, None]),
                   axis=1)
        p = special.kolmogorov(np.sqrt(n * m / (n + m)) * d)
    return d, np.where(d > 0, p, 1.0)


def wasserstein_rows(edges: np.ndarray, reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """`wasserstein_binned` of every row: `edges` has one more column than the counts."""
    cr, cc = np.cumsum(reference, axis=1), np.cumsum(current, axis=1)
    d = np.zeros((cr.shape[0], cr.shape[1] + 1))
    np.subtract(cr / cr[:, -1:], cc / cc[:, -1:], out=d[:, 1:])
    d0, d1 = d[:, :-1], d[:, 1:]
    a0, a1 = np.abs(d0), np.abs(d1)
    area = np.where(d0 * d1 >= 0, (a0 + a1) / 2, (d0 * d0 + d1 * d1) / (2 * np.maximum(a0 + a1, 1e-300)))
    return np.einsum("ij,ij->i", area, np.diff(edges, axis=1))


def numeric_drift_many(features: Sequence[str], bounds: np.ndarray, reference: np.ndarray, current: np.ndarray, *,
                       lo: Sequence[float], hi: Sequence[float], std: Sequence[float], n_unique: Sequence[int],
                       mean_gap: Sequence[float | None],
                       mean_n: Sequence[float | None] | None = None,
                       off_values: Sequence[float | None] | None = None) -> list[FeatureDrift]:
    """`numeric_drift` of features with the same number of buckets: row i of `bounds` (k - 1 columns),
    `reference` and `current` (k columns) and item i of the keyword sequences are feature i's."""
    mean_n = mean_n if mean_n is not None else [None] * len(features)
    off_values = off_values if off_values is not None else [None] * len(features)
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    n_r, n_c = ref.sum(axis=1).tolist(), cur.sum(axis=1).tolist()
    p = psi_rows(ref, cur).tolist()
    out: list[FeatureDrift | None] = [None] * len(features)
    ks, wd = [], []
    for i, name in enumerate(features):
        if n_unique[i] < CATEGORICAL_BELOW or (n_r[i] > SMALL_REFERENCE and (std[i] <= 0 or not math.isfinite(std[i]))):
            out[i] = numeric_drift(name, bounds[i], ref[i], cur[i], lo=lo[i], hi=hi[i], std=std[i],
                                   n_unique=n_unique[i], mean_gap=mean_gap[i], mean_n=mean_n[i],
                                   off_values=off_values[i])
        else:
            (ks if n_r[i] <= SMALL_REFERENCE else wd).append(i)
    if ks:
        _, pv = ks_rows(ref[ks], cur[ks])
        for i, v in zip(ks, pv.tolist()):
            out[i] = FeatureDrift(features[i], "numeric", "ks", v, P_THRESHOLD, v < P_THRESHOLD, p[i], n_r[i], n_c[i])
    if wd:
        b = np.asarray(bounds, float)[wd]
        low, high = np.array([lo[i] for i in wd], float), np.array([hi[i] for i in wd], float)
        edges = np.empty((len(wd), b.shape[1] + 2))
        edges[:, 1:-1] = b
        edges[:, 0] = np.where(b[:, 0] < low, b[:, 0], low)  # min(lo, bounds[0]), as Python's min picks
        edges[:, -1] = np.where(b[:, -1] > high, b[:, -1], high)
        binned = wasserstein_rows(edges, ref[wd], cur[wd]).tolist()
        _, ks_p = ks_rows(ref[wd], cur[wd])
        for i, w, kp in zip(wd, binned, ks_p.tolist()):
            gap = mean_gap[i]
            floor = gap or 0.0
            dist = (floor if floor > w else w) / std[i]  # max(w, floor), as Python's max picks
            by_mean = gap is not None and gap > w
            pv = mean_gap_p(gap, std=std[i], n_reference=n_r[i], n_current=mean_n[i] or n_c[i]) if by_mean else kp
            out[i] = FeatureDrift(features[i], "numeric", "wasserstein", dist, DISTANCE_THRESHOLD,
                                  dist >= DISTANCE_THRESHOLD and pv < P_THRESHOLD, p[i], n_r[i], n_c[i],
                                  "the means' gap exceeds the binned distance (mass beyond the buckets)"
                                  if by_mean else "", pv)
    return out  # type: ignore[return-value]  # every slot filled above


def categorical_drift_many(features: Sequence[str], reference: np.ndarray, current: np.ndarray,
                           widths: Sequence[int]) -> list[FeatureDrift]:
    """`categorical_drift` of many features: row i holds feature i's `widths[i]` categories, then zeros."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    n_r, n_c = ref.sum(axis=1).tolist(), cur.sum(axis=1).tolist()
    big = [i for i, n in enumerate(n_r) if n > SMALL_REFERENCE]
    out: list[FeatureDrift | None] = [None] * len(features)
    if big:
        p, d = psi_rows(ref[big], cur[big]).tolist(), js_rows(ref[big], cur[big]).tolist()
        pv = chi2_homogeneity_rows(ref[big], cur[big]).tolist()
        for j, i in enumerate(big):
            out[i] = FeatureDrift(features[i], "categorical", "jensenshannon", d[j], DISTANCE_THRESHOLD,
                                  d[j] >= DISTANCE_THRESHOLD and pv[j] < P_THRESHOLD, p[j], n_r[i], n_c[i], "", pv[j])
    for i, f in enumerate(out):
        if f is None:  # a small reference: chi-square or z, branch by branch, on the row without its padding
            out[i] = categorical_drift(features[i], ref[i, :widths[i]], cur[i, :widths[i]])
    return out  # type: ignore[return-value]


def dataset_drift(features: list[FeatureDrift] | tuple[FeatureDrift, ...],
                  missing: list[MissingShift] | tuple[MissingShift, ...] = ()) -> DatasetDrift:
    """The dataset drifts when at least DRIFT_SHARE of the compared features drift."""
    fs = tuple(features)
    share = sum(f.drifted for f in fs) / len(fs) if fs else 0.0
    return DatasetDrift(fs, share, bool(fs) and share >= DRIFT_SHARE, tuple(missing))


def over_profile(result: DatasetDrift, unmeasured: int) -> bool | None:
    """The dataset-drift verdict over the whole profile when `unmeasured` of its features were not compared (no live
    data, too few values, not arriving): True when the drifted features alone are DRIFT_SHARE of the profile (drift
    whatever the others are), False when they are under it even with every one not compared counted drifted, None
    when the features not compared decide it (no verdict: "not measured" is never "ok", nor "drifted"). With every
    feature compared, `result.drifted`. A share over the compared features only read "1 of 1 features drifted"
    of a ten-feature profile as dataset drift, and opened an episode with a retraining Job (decision 382)."""
    share = profile_share(result, unmeasured)
    if share is None:
        return None
    least, most = share
    return True if least >= DRIFT_SHARE else False if most < DRIFT_SHARE else None


def profile_share(result: DatasetDrift, unmeasured: int) -> tuple[float, float] | None:
    """The share of the whole profile's features that drifted when `unmeasured` of them were not compared: (at
    least, at most), the ones not compared counted not drifted, then drifted; equal with every feature compared
    (`result.share`); None with nothing compared. `over_profile`'s verdict is drift when the first is DRIFT_SHARE or
    more, no drift when the second is under it. A share of the compared features alone read 100% for 1 of 1
    compared in a ten-feature profile, beside a verdict of none (decision 411)."""
    if not result.features:
        return None
    drifted = sum(1 for f in result.features if f.drifted)
    profiled = len(result.features) + max(unmeasured, 0)
    return drifted / profiled, (drifted + max(unmeasured, 0)) / profiled


def missing_shift(feature: str, *, ref_missing: float, ref_present: float, live_missing: float,
                  live_present: float) -> MissingShift:
    """Compare missing rates (counts of missing and present values on each side): one-sided Fisher's exact
    test (`scipy.stats.fisher_exact`, counts rounded) of more missing live than in training. The pooled normal
    approximation was wrong at both ends of the rates a feature has: too strict at a live rate of 1 (60 of 60
    missing against 80% in training is p 1.5e-6 exactly, about 5e-5 by z: an alert hours late at modest
    traffic) and far too loose at tiny training rates (1 of 15 missing against 0.1% is p 0.015, z said 1e-15:
    a false alert). Decision 136."""
    n_r, n_c = ref_missing + ref_present, live_missing + live_present
    p_r = ref_missing / n_r if n_r > 0 else 0.0
    p_c = live_missing / n_c if n_c > 0 else 0.0
    p = 1.0
    if p_c > p_r:
        table = [[round(live_missing), round(live_present)], [round(ref_missing), round(ref_present)]]
        p = float(st.fisher_exact(table, alternative="greater").pvalue)
    return MissingShift(feature, p_r, p_c, n_c, bool(p < P_THRESHOLD and p_c - p_r > MISSING_POINTS / 100), p)


def _norm(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, float)
    total = c.sum()
    return c / total if total > 0 else np.full(len(c), 1.0 / max(len(c), 1))


def _norm_rows(counts: np.ndarray) -> np.ndarray:
    """`_norm` of every row."""
    total = counts.sum(axis=1, keepdims=True)
    empty = ~(total[:, 0] > 0)
    if not empty.any():
        return counts / total
    out = counts / np.where(empty[:, None], 1.0, total)
    out[empty] = 1.0 / max(counts.shape[1], 1)
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    return np.maximum(_norm(counts), _EPS)

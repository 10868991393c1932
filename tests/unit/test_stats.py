"""Known answers for the statistics, mostly against scipy, plus calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as st
from scipy.spatial.distance import jensenshannon

from canary.analysis import stats

INF = math.inf


@pytest.mark.parametrize(
    ("bounds", "cum", "q", "expected"),
    [
        ((1, 2, 4, INF), (10, 50, 90, 100), 0.5, 2.0),
        ((1, 2, 4, INF), (10, 50, 90, 100), 0.3, 1.5),
        ((1, 2, 4, INF), (10, 50, 90, 100), 0.05, 0.5),  # first bucket interpolates from 0
        ((1, 2, 4, INF), (10, 50, 90, 100), 0.95, 4.0),  # +Inf bucket: last finite bound
        ((1, 2, 4, INF), (0, 0, 0, 0), 0.5, math.nan),
    ],
)
def test_histogram_quantile_matches_prometheus(bounds, cum, q, expected):
    got = stats.histogram_quantile(np.array(bounds, float), np.array(cum, float), q)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_quantile_pvalues_are_exact_binomials():
    cum = np.array([3, 40, 93, 99, 100], float)
    below, above = stats.quantile_pvalues(cum, 0.95)
    for k, b, a in zip(cum[:-1], below, above):
        assert b == pytest.approx(st.binom.sf(k - 1, 100, 0.95))
        assert a == pytest.approx(st.binom.cdf(k, 100, 0.95))


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "delta"),
                         [(30, 200, 100, 2000, 0.01), (5, 100, 40, 4000, 0.02), (80, 300, 60, 300, 0.05)])
def test_fm_restricted_mle_maximises_constrained_likelihood(x1, n1, x2, n2, delta):
    def nll(p2: float) -> float:
        p1 = p2 + delta
        return -(st.binom.logpmf(x1, n1, p1) + st.binom.logpmf(x2, n2, p2))

    ref = optimize.minimize_scalar(nll, bounds=(1e-9, 1 - delta - 1e-9), method="bounded",
                                   options={"xatol": 1e-10}).x
    r1, r2 = stats.fm_restricted(x1 / n1, x2 / n2, n1, n2, delta)
    assert r2 == pytest.approx(ref, abs=1e-5)
    assert r1 - r2 == pytest.approx(delta)


def test_score_test_without_margin_is_the_pooled_z_test():
    xs, ns, xc, nc = 200, 10000, 40, 1000
    pooled = (xs + xc) / (ns + nc)
    z = (xc / nc - xs / ns) / math.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / ns))
    t = stats.proportion_increase(xs, ns, xc, nc, margin=0.0, alpha=0.01)
    assert t.statistic == pytest.approx(z)
    assert t.p_value == pytest.approx(st.norm.sf(z))


@pytest.mark.parametrize(("xs", "ns", "xc", "nc"), [(2, 5000, 4, 100), (0, 300, 3, 50), (9, 1000, 5, 80)])
def test_small_counts_without_margin_use_fishers_exact_test(xs, ns, xc, nc):
    t = stats.proportion_increase(xs, ns, xc, nc, margin=0.0, alpha=0.01)
    ref = st.fisher_exact([[xc, nc - xc], [xs, ns - xs]], alternative="greater").pvalue
    assert t.p_value == pytest.approx(ref, rel=1e-6)


def test_small_counts_with_margin_use_clopper_pearson_bounds():
    t = stats.proportion_increase(1, 5000, 8, 100, margin=0.01, alpha=0.01)
    lo = st.binomtest(8, 100).proportion_ci(1 - t.p_value, method="exact").low  # two-sided at 1-p => alpha p/2 per side
    hi = st.binomtest(1, 5000).proportion_ci(1 - t.p_value, method="exact").high
    assert lo - hi - 0.01 == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("x", "n", "rate"), [(12, 200, 0.03), (0, 50, 0.01), (30, 1000, 0.02)])
def test_ceiling_is_the_exact_binomial_test(x, n, rate):
    t = stats.proportion_ceiling(x, n, max_rate=rate, alpha=0.01)
    assert t.p_value == pytest.approx(st.binomtest(x, n, rate, alternative="greater").pvalue)


def test_js_distance_and_chi_square_match_scipy():
    s = np.array([500, 300, 150, 50], float)
    c = np.array([90, 60, 40, 10], float)
    t, upper, js = stats.distribution_shift(s, c, max_psi=0.2, alpha=0.01)
    assert js == pytest.approx(jensenshannon(s / s.sum(), c / c.sum(), base=2))
    chi2, p, *_ = st.chi2_contingency(np.vstack([s, c]), correction=False)
    assert t.statistic == pytest.approx(chi2)
    ps, pc = (s + 0.5) / (s.sum() + 2), (c + 0.5) / (c.sum() + 2)
    assert t.effect == pytest.approx(np.sum((pc - ps) * np.log(pc / ps)))
    assert upper > t.effect


def test_merge_sparse_keeps_totals_and_expected_counts():
    s = np.array([0, 1, 2, 500, 400, 3, 0, 1], float)
    c = np.array([0, 0, 1, 20, 30, 0, 0, 0], float)
    ms, mc = stats.merge_sparse(s, c)
    assert ms.sum() == s.sum() and mc.sum() == c.sum()
    share = c.sum() / (s.sum() + c.sum())
    assert np.all((ms + mc) * share >= 5)


def _lognormal_hist(rng, bounds, scale, n, sigma=0.5):
    edges = np.log(np.asarray(bounds[:-1]) / scale) / sigma
    probs = np.diff(np.concatenate([[0.0], st.norm.cdf(edges), [1.0]]))
    return np.cumsum(rng.multinomial(n, probs)).astype(float)


BOUNDS = np.array([*np.arange(5.0, 255.0, 5.0), INF])


@pytest.mark.parametrize("scale", [0.8, 0.95, 1.0, 1.05])
def test_latency_relative_is_one_sided_and_calm_within_tolerance(scale):
    rng = np.random.default_rng(7)
    breaches = 0
    for _ in range(200):
        s = _lognormal_hist(rng, BOUNDS, 50.0, 20000)
        c = _lognormal_hist(rng, BOUNDS, 50.0 * scale, 3000)
        breaches += stats.latency_relative(BOUNDS, s, c, q=0.95, tol=0.10, alpha=0.05).breach
    assert breaches <= 4  # far below 5% of 200: within tolerance, never mind faster


def test_latency_relative_finds_a_large_regression():
    rng = np.random.default_rng(3)
    s = _lognormal_hist(rng, BOUNDS, 50.0, 20000)
    c = _lognormal_hist(rng, BOUNDS, 65.0, 3000)
    t = stats.latency_relative(BOUNDS, s, c, q=0.95, tol=0.10, alpha=1e-4)
    assert t.breach and t.p_value < 1e-4 and t.effect > 0.2


def test_latency_relative_says_when_buckets_are_too_coarse():
    istio = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, INF])
    rng = np.random.default_rng(1)
    s = _lognormal_hist(rng, istio, 50.0, 20000)
    c = _lognormal_hist(rng, istio, 60.0, 3000)
    t = stats.latency_relative(istio, s, c, q=0.95, tol=0.10, alpha=1e-4)
    assert "too coarse" in t.note and not t.breach


def test_latency_ceiling_tests_at_the_first_bound_at_or_above():
    cum = np.array([0, 10, 60, 100, 100], float)
    bounds = np.array([50, 100, 200, 400, INF])
    t = stats.latency_ceiling(bounds, cum, q=0.95, max_value=150, alpha=0.01)
    assert t.statistic == 200 and t.breach  # 40% above 200 ms: p95 > 200 > 150
    assert t.p_value == pytest.approx(st.binom.cdf(60, 100, 0.95))


def test_proportion_increase_is_calibrated_at_the_margin():
    rng = np.random.default_rng(11)
    ns, nc, ps, margin = 20000, 2000, 0.02, 0.01
    xs = rng.binomial(ns, ps, 2000)
    xc = rng.binomial(nc, ps + margin, 2000)
    rejections = sum(stats.proportion_increase(a, ns, b, nc, margin=margin, alpha=0.05).breach for a, b in zip(xs, xc))
    assert rejections / 2000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)

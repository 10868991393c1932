"""Known answers for the statistics, mostly against scipy, plus calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as st
from scipy.spatial.distance import jensenshannon

from canary.analysis import sequential, shift, stats

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


def test_increase_without_margin_is_the_signed_root_likelihood_ratio():
    xs, ns, xc, nc = 200, 10000, 40, 1000
    pooled = (xs + xc) / (ns + nc)
    ll = lambda x, n, p: st.binom.logpmf(x, n, p)  # noqa: E731
    lr = 2 * (ll(xc, nc, xc / nc) + ll(xs, ns, xs / ns) - ll(xc, nc, pooled) - ll(xs, ns, pooled))
    t = stats.proportion_increase(xs, ns, xc, nc, margin=0.0, alpha=0.01)
    assert t.statistic == pytest.approx(math.sqrt(lr))
    assert t.p_value == pytest.approx(st.norm.sf(math.sqrt(lr)))
    assert stats.proportion_increase(xs, ns, 10, nc, margin=0.0, alpha=0.01).p_value > 0.5  # one-sided


@pytest.mark.parametrize(("xs", "ns", "xc", "nc"), [(2, 5000, 4, 100), (0, 300, 3, 50), (9, 1000, 5, 80)])
def test_small_counts_without_margin_use_fishers_exact_test(xs, ns, xc, nc):
    t = stats.proportion_increase(xs, ns, xc, nc, margin=0.0, alpha=0.01)
    ref = st.fisher_exact([[xc, nc - xc], [xs, ns - xs]], alternative="greater").pvalue
    assert t.p_value == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize(("ps", "margin", "nc"), [(0.005, 0.01, 120), (0.005, 0.01, 1000), (0.02, 0.0, 300)])
def test_proportion_increase_holds_its_level_in_the_far_tail(ps, margin, nc):
    """At a per-look alpha (1e-3), at the margin, with the small counts a canary sees."""
    rng = np.random.default_rng(5)
    ns, alpha, runs = 9 * nc, 1e-3, 20000
    xs, xc = rng.binomial(ns, ps, runs), rng.binomial(nc, ps + margin, runs)
    hits = sum(stats.proportion_increase(a, ns, b, nc, margin=margin, alpha=alpha).breach
               for a, b in zip(xs, xc) if b / nc - a / ns > margin + 0.5 * ps)  # the rest cannot reject
    assert hits <= alpha * runs + 3 * math.sqrt(alpha * runs)


@pytest.mark.parametrize(("x", "n", "rate"), [(12, 200, 0.03), (0, 50, 0.01), (30, 1000, 0.02)])
def test_ceiling_is_the_exact_binomial_test(x, n, rate):
    t = stats.proportion_ceiling(x, n, max_rate=rate, alpha=0.01)
    assert t.p_value == pytest.approx(st.binomtest(x, n, rate, alternative="greater").pvalue)


def test_js_distance_and_chi_square_match_scipy():
    s = np.array([500, 300, 150, 50], float)
    c = np.array([90, 60, 40, 10], float)
    t, upper, js = shift.distribution_shift(s, c, max_psi=0.2, alpha=0.01)
    assert js == pytest.approx(jensenshannon(s / s.sum(), c / c.sum(), base=2))
    chi2, p, *_ = st.chi2_contingency(np.vstack([s, c]), correction=False)
    assert t.statistic == pytest.approx(chi2)
    ps, pc = (s + 0.5) / (s.sum() + 2), (c + 0.5) / (c.sum() + 2)
    assert t.effect == pytest.approx(np.sum((pc - ps) * np.log(pc / ps)))
    assert upper > t.effect


def test_merge_sparse_keeps_totals_and_expected_counts():
    s = np.array([0, 1, 2, 500, 400, 3, 0, 1], float)
    c = np.array([0, 0, 1, 20, 30, 0, 0, 0], float)
    ms, mc = shift.merge_sparse(s, c)
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
    assert t.note.endswith("not p95: no bucket bound pair 1.1x apart near it)") and not t.breach, t.note


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


def test_latency_relative_holds_its_level_at_the_limit():
    """A canary exactly +10% slower (the limit): rejections at most alpha (interpolated stable exceedance)."""
    rng = np.random.default_rng(9)
    runs, alpha = 2500, 0.01
    hits = 0
    for _ in range(runs):
        s = _lognormal_hist(rng, BOUNDS, 50.0, 9000)
        c = _lognormal_hist(rng, BOUNDS, 55.0, 1000)
        hits += stats.latency_relative(BOUNDS, s, c, q=0.95, tol=0.10, alpha=alpha).breach
    assert hits <= alpha * runs + 3 * math.sqrt(alpha * runs)


def test_latency_relative_interpolates_on_fine_buckets_and_rounds_down_on_a_rising_density():
    rng = np.random.default_rng(4)
    s = _lognormal_hist(rng, BOUNDS, 50.0, 20000)
    c = _lognormal_hist(rng, BOUNDS, 60.0, 3000)
    t = stats.latency_relative(BOUNDS, s, c, q=0.95, tol=0.10, alpha=1e-3)
    assert "interpolated" in t.note and "stable p9" in t.note and t.breach  # +20% found in 3,000 requests
    rising = np.cumsum([0] * 20 + [100, 200, 400, 800, 1600, 3200, 6400, 12800] + [0] * 22 + [50]).astype(float)
    t = stats.latency_relative(BOUNDS, rising, rising / 10, q=0.95, tol=0.10, alpha=1e-3)
    assert "rounded down" in t.note and not t.breach


def test_run_probability_matches_monte_carlo():
    rng = np.random.default_rng(0)
    z = np.cumsum(rng.standard_normal((400_000, 6)), axis=1) / np.sqrt(np.arange(1, 7))
    for run in (1, 2):
        over = z > 2.6
        hit = over.any(1) if run == 1 else (over[:, 1:] & over[:, :-1]).any(1)
        assert sequential.run_probability(2.6, 6, run) == pytest.approx(hit.mean(), rel=0.08)




# -- the scipy.stats shortcuts give scipy.stats' values, without importing it -------------------

def _same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12, abs=0.0)


@pytest.mark.parametrize(("k", "n", "p"), [
    (3, 40, 0.07), (0, 1, 0.5), (-1, 10, 0.3), (-5, 0, 0.3), (0, 0, 0.3), (10, 10, 0.3), (12, 10, 0.3),
    (5, 10, 0.0), (5, 10, 1.0), (0, 10, 0.0), (9, 10, 1.0), (5, 10, math.nan), (5, 10, 1.5), (5, 10, -0.1),
    (499, 1000, 0.5), (0, 10**6, 1e-7)])
def test_binom_sf_is_scipy_stats_value_inside_outside_and_off_the_support(k, n, p):
    assert _same(stats.binom_sf(k, n, p), float(st.binom.sf(k, n, p)))


@pytest.mark.parametrize(("k", "total", "marked", "drawn"), [
    (4, 2000, 30, 100), (0, 20, 5, 3), (-1, 20, 5, 3), (3, 20, 5, 3), (7, 20, 5, 3), (0, 20, 19, 10),
    (8, 20, 19, 10), (9, 20, 19, 10), (0, 0, 0, 0), (-1, 0, 0, 0), (2, 10, 12, 3), (2, 10, 3, 12),
    (60, 1000, 120, 500)])
def test_hypergeom_sf_is_scipy_stats_value_inside_outside_and_off_the_support(k, total, marked, drawn):
    assert _same(stats.hypergeom_sf(k, total, marked, drawn), float(st.hypergeom.sf(k, total, marked, drawn)))


@pytest.mark.parametrize(("x", "df", "nc"), [
    (12.0, 9, 40.0), (0.5, 1, 0.01), (0.5, 1, 0.0), (0.0, 3, 2.0), (-1.0, 3, 2.0), (INF, 3, 2.0),
    (3.0, 0, 2.0), (3.0, 2, -1.0), (math.nan, 2, 1.0), (300.0, 4, 150.0)])
def test_chi2_and_ncx2_sf_are_scipy_stats_values(x, df, nc):
    assert _same(stats.ncx2_sf(x, df, nc), float(st.ncx2.sf(x, df, nc)))
    assert _same(stats.chi2_sf(x, df), float(st.chi2.sf(x, df)))


def test_the_private_ufuncs_pass_their_recorded_probes_with_this_scipy():
    # with the scipy the project installs, the fast paths are taken (else a judgement is slow, not wrong)
    assert stats._binom_fast() is not None and stats._hypergeom_fast() is not None and stats._ncx2_fast() is not None


def test_judging_every_kind_of_look_does_not_import_scipy_stats_or_scipy_optimize():
    """scipy.stats and scipy.optimize are ~22 and ~28 MB of RSS a long-running controller need not
    pay: the judge decides every look of judge_corpus (every check kind, layout and edge: empty arms,
    NaN and +Inf counts, events = total), and two identical prediction histograms, without importing
    either (`canary.analysis.roots`)."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent("""
        import sys, warnings
        warnings.simplefilter("ignore")
        sys.path.insert(0, "tests/unit")
        import judge_corpus as corpus
        for seed in range(240):
            corpus.verdict_record(*corpus.look(seed))
            assert "scipy.stats" not in sys.modules, f"scipy.stats imported while judging look {seed}"
            assert "scipy.optimize" not in sys.modules, f"scipy.optimize imported while judging look {seed}"
        # two identical prediction histograms (a chi-square statistic of exactly 0: every look of a
        # canary that predicts as stable does) are judged without it too
        from canary.analysis.judge import judge
        from canary.model import Histogram
        from canary.policy import parse_policy
        pol = parse_policy({"steps": [10, 100], "checks": [{"name": "p", "kind": "prediction_shift", "max_psi": 0.2}]})
        same = Histogram(bounds=(0.25, 0.5, 0.75, float("inf")), counts=(1000.0, 3000.0, 4500.0, 5000.0))
        judge(pol, {"p": (same, same)})
        assert "scipy.stats" not in sys.modules, "scipy.stats imported judging identical histograms"
    """)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]

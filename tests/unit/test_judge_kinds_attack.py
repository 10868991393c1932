"""Issue 9's defect kinds, attacked again with `canary judge --input` variants (docs/decisions.md 142).

Kind 1 and 4a: a relative latency limit where no bucket pair is near the quantile. The breach test
compared the arms at another quantile (stable p0 or p100 of a tight stable in a coarse layout), so a
canary whose own counts show it far beyond the limit at q itself was INCONCLUSIVE at any number of
requests (p = 1): "shown beyond -> fail" did not hold. Each test fails without the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from canary.analysis import sequential as S, stats
from canary.analysis.judge import judge
from canary.model import Outcome
from canary.offline import parse_exported

ISTIO = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
SANDBOX = [1, 2.5, 5, 10, 25, 50, 100, 250]


def _lognormal(bounds: list[float], n: int, scale: float, sigma: float) -> list[int]:
    return [round(n * float(sps.lognorm.cdf(b, sigma, scale=scale))) for b in bounds] + [n]


def _look(bounds: list[float], stable: list[int], canary: list[int], *, q: float = 0.95, tol: float = 20,
          min_canary: int = 100) -> dict:
    check = {"name": "lat", "kind": "latency", "quantile": q, "max_increase_pct": tol}
    return {"policy": {"steps": [10, 100], "analysis": {"min_canary_requests": min_canary}, "checks": [check]},
            "checks": {"lat": {"stable": {"bounds": [*bounds, "+Inf"], "counts": stable},
                               "canary": {"bounds": [*bounds, "+Inf"], "counts": canary}}}}


def _beyond(bounds: np.ndarray, stable: np.ndarray, canary: np.ndarray, **kw: float) -> tuple[float, str]:
    """stats.quantiles_beyond on cumulative count arrays ending with the +Inf bucket."""
    ks, kc = [int(x) for x in stable], [int(x) for x in canary]
    return stats.quantiles_beyond([float(b) for b in bounds[:-1]], ks[:-1], ks[-1], kc[:-1], kc[-1], **kw)


def _judge(raw: dict):
    d = parse_exported(raw)
    return judge(d.policy, d.measurements, prior=d.prior, window=d.window, pass_ratio=d.pass_ratio,
                 canary_weight=d.canary_weight, step=d.step).results[0]


@pytest.mark.parametrize("layout, scale, slower, q", [
    (ISTIO, 40, 3, 0.95),      # stable p95 48.8 ms in (25, 50], canary p95 242 ms in (100, 250]
    (ISTIO, 40, 5, 0.99),
    (ISTIO, 80, 3, 0.95),      # (50, 100] against (250, 500]
    (ISTIO, 200, 5, 0.5),      # a median: (100, 250] against (500, 1000] and beyond
    (SANDBOX, 80, 3, 0.95),    # the canary's p95 in the open +Inf bucket above 250 ms
    ([50, 100, 150], 80, 2, 0.95),
])
def test_a_canary_the_counts_show_beyond_the_limit_at_q_fails_where_no_bucket_pair_is_near(
        layout: list[float], scale: float, slower: float, q: float) -> None:
    """A tight stable (lognormal sigma 0.05, as GPU inference often is) and a canary several times
    slower, 100,000 canary requests: each arm's exact bound on its own quantile shows canary_q >=
    1.5x stable_q at least. It was INCONCLUSIVE, p=1 ("estimated beyond +20%, not significant"):
    the only bucket pairs compared stable p0 or p100."""
    raw = _look(layout, _lognormal(layout, 1_000_000, scale, 0.05), _lognormal(layout, 100_000, scale * slower, 0.05),
                q=q)
    r = _judge(raw)
    assert r.outcome is Outcome.FAIL, r.reason
    assert "the bucket counts show canary" in r.reason, r.reason


@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_a_canary_with_a_slow_path_fails_where_the_near_pair_compares_a_quantile_it_keeps(n: int) -> None:
    """x1.25 buckets, p90 +20%: 10% of the canary's requests 5x slower. The pair nearest p90 compares
    stable p85 (canary >116 ms with stable >97 ms), where the canary is as fast as stable, and it stayed
    INCONCLUSIVE at a million requests (p = 1) while its p90 is 178 ms against 106 ms, shown by its own
    counts above 145.5 ms against the stable's at most 116.4 ms (+25% at least)."""
    bounds = [round(10 * 1.25 ** i, 3) for i in range(30)]
    stable = _lognormal(bounds, 9 * n, 70, 0.3)
    canary = [round(0.9 * a + 0.1 * b) for a, b in zip(_lognormal(bounds, n, 70, 0.3), _lognormal(bounds, n, 350, 0.3))]
    r = _judge(_look(bounds, stable, canary, q=0.9))
    assert r.outcome is Outcome.FAIL, r.reason
    assert "canary p90 > 145.519 ms and stable p90 <= 116.415 ms, at least +25%" in r.reason, r.reason


def test_a_canary_entirely_above_the_last_bound_against_a_stable_inside_one_bucket_fails() -> None:
    """The open +Inf bucket on the canary's side: its p95 is above 150 ms, the stable's at most 100 ms."""
    r = _judge(_look([50, 100, 150], [0, 1_000_000, 1_000_000, 1_000_000], [0, 0, 0, 100_000]))
    assert r.outcome is Outcome.FAIL, r.reason
    assert "canary p95 > 150 ms and stable p95 <= 100 ms, at least +50%" in r.reason


def test_more_requests_of_the_same_shape_never_turn_it_into_a_pass() -> None:
    """Stronger evidence never turns the verdict: from few requests (not a pass) to many (a fail)."""
    seen = []
    for n in (20, 100, 300, 1_000, 10_000, 1_000_000):
        raw = _look(ISTIO, _lognormal(ISTIO, 9 * n, 40, 0.05), _lognormal(ISTIO, n, 120, 0.05), min_canary=10)
        seen.append(_judge(raw).outcome)
    assert Outcome.PASS not in seen, seen
    assert seen[-1] is Outcome.FAIL
    order = [{Outcome.INCONCLUSIVE: 0, Outcome.FAIL: 1}[o] for o in seen]
    assert order == sorted(order), seen


def test_a_canary_equal_to_stable_in_the_same_coarse_layout_never_fails() -> None:
    """The other side: as fast as stable, at any size (the bounds cannot show it beyond)."""
    for n in (100, 10_000, 1_000_000):
        raw = _look(ISTIO, _lognormal(ISTIO, 9 * n, 40, 0.05), _lognormal(ISTIO, n, 40, 0.05))
        assert _judge(raw).outcome is Outcome.INCONCLUSIVE


def test_the_bounds_test_at_the_limit_rejects_at_most_its_level() -> None:
    """quantiles_beyond at the limit exactly: stable F(100) = 0.95, canary F(120) = 0.95, +20%: the
    pair of bounds nearest the truth on the wrong side. 3,000 draws per size, both levels."""
    rng = np.random.default_rng(142)
    bounds = np.array([50.0, 60.0, 100.0, 120.0, np.inf])
    ps, pc = [0.5, 0.3, 0.15, 0.03, 0.02], [0.2, 0.3, 0.3, 0.15, 0.05]
    for n_s, n_c in ((200, 200), (10_000, 1_000), (100_000, 10_000)):
        hits = {0.01: 0, 0.05: 0}
        for _ in range(3_000):
            s = np.cumsum(rng.multinomial(n_s, ps)).astype(float)
            c = np.cumsum(rng.multinomial(n_c, pc)).astype(float)
            p, _ = _beyond(bounds, s, c, q=0.95, tol=0.2)
            for level in hits:
                hits[level] += p <= level
        for level, k in hits.items():
            assert k / 3_000 <= level, (n_s, n_c, level, k)


def test_the_bounds_test_reads_each_arms_own_quantile() -> None:
    """Known answers: nothing shown without a pair 1.2x apart; a clear one named."""
    bounds = np.array([50.0, 100.0, 150.0, np.inf])
    p, why = _beyond(bounds, np.array([0, 1e4, 1e4, 1e4]), np.array([0, 0, 0, 1e3]), q=0.95, tol=0.2)
    assert p < 1e-100 and why == "the bucket counts show canary p95 > 150 ms and stable p95 <= 100 ms, at least +50%"
    p, why = _beyond(bounds, np.array([0, 1e4, 1e4, 1e4]), np.array([0, 1e3, 1e3, 1e3]), q=0.95, tol=0.2)
    assert p == 1.0
    assert _beyond(bounds, np.zeros(4), np.array([0, 0, 0, 1e3]), q=0.95, tol=0.2) == (1.0, "")


# -- kinds 1 and 2: a few requests far over a limit on the canary alone are evidence -----------------


def _ceiling_look(n: int, *, hard: bool, kind: str) -> dict:
    if kind == "latency":
        check = {"name": "c", "kind": "latency", "quantile": 0.95, "max_ms": 1000, "hard": hard}
        bounds = [100, 250, 500, 1000, 2500, 5000, 10000]
        arms = {"stable": {"bounds": [*bounds, "+Inf"], "counts": [9_000] + [10_000] * 7},
                "canary": {"bounds": [*bounds, "+Inf"], "counts": [0] * 6 + [n, n]}}  # every request 5-10 s
    else:
        check = {"name": "c", "kind": "error_rate", "max_rate_pct": 10, "hard": hard}
        arms = {"stable": {"events": 10, "total": 10_000}, "canary": {"events": n, "total": n}}  # every one failed
    return {"policy": {"steps": [10, 100], "checks": [check]}, "checks": {"c": arms}}


@pytest.mark.parametrize("kind, n", [("latency", 4), ("latency", 10), ("error_rate", 10)])
@pytest.mark.parametrize("hard", [True, False])
def test_a_few_canary_requests_all_far_over_a_ceiling_fail(kind: str, n: int, hard: bool) -> None:
    """docs/judge.md promised that "a canary whose 4 first requests all take 10 s does not need 100
    requests to be rolled back"; the normal mixture (rho = 200 effective requests) read 4 and 10 such
    requests as INCONCLUSIVE (p = 0.64, 0.17; 20 errors of 20 against a 10% ceiling: p = 0.012). The
    window's exact test of the exceedance count (`sequential.exceedance_p`) fails them, below
    `min_canary_requests` too (an absolute breach)."""
    r = _judge(_ceiling_look(n, hard=hard, kind=kind))
    assert r.outcome is Outcome.FAIL, r.reason
    assert r.extra["tests"][0]["p_exact"] < 1e-4


def test_the_exact_exceedance_test_holds_its_level_watched_at_every_request() -> None:
    """A canary exactly at the ceiling (P(exceed) = p0), its p looked at after every request up to 1,500:
    Ville's inequality bounds the crossing by the level; simulated it is about a third of it."""
    rng = np.random.default_rng(1421)
    for p0 in (0.05, 0.01):
        crossed = {0.05: 0, 0.01: 0}
        for _ in range(600):
            xs = np.cumsum(rng.random(1_500) < p0)
            least = min(S.exceedance_p(float(xs[n - 1]), float(n), p0) for n in range(1, 1_501))
            for level in crossed:
                crossed[level] += least <= level
        for level, k in crossed.items():
            assert k / 600 <= level, (p0, level, k)


def test_the_exact_exceedance_test_known_values_and_monotone_in_evidence() -> None:
    """4 of 4 above a p95 ceiling: M = (1/0.05)^4 / 5 / 0.95 = 33,684. None over: p = 1. More requests all
    over, or more of the same requests over, never raise p."""
    assert S.exceedance_p(4, 4, 0.05) == pytest.approx(0.95 * 5 / 20 ** 4 / (1 - 0.05 ** 5), rel=1e-9)
    assert S.exceedance_p(0, 1_000, 0.05) == 1.0 and S.exceedance_p(50, 1_000, 0.05) == 1.0
    ps = [S.exceedance_p(n, n, 0.05) for n in range(1, 60)]
    assert ps == sorted(ps, reverse=True)
    ps = [S.exceedance_p(x, 200, 0.05) for x in range(0, 201)]
    assert ps == sorted(ps, reverse=True)
    assert S.exceedance_p(2 ** 52, 2 ** 52, 0.05) == 0.0  # at the largest counts the input accepts
    assert S.exceedance_p(1, 1, 0.0) == 0.0 and S.exceedance_p(5, 5, 1.0) == 1.0


def test_the_exact_exceedance_test_keeps_its_digits_at_the_largest_counts() -> None:
    """At 2^52 requests lgamma carries an error of tens in log M (its values are ~1.6e17): written with
    lgamma, the test read z = 0.1 as log M = -84 and could as well read it +84, a breach at p = e^-84.
    Loader's saddle-point pmf keeps it: nothing below z = 6 of a mixture over so many requests, and p falls
    as the exceedance count grows."""
    n, p0 = 2.0 ** 52, 0.05
    sd = (n * p0 * (1 - p0)) ** 0.5
    zs = [0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    ps = [S.exceedance_p(float(int(n * p0 + z * sd)), n, p0) for z in zs]
    assert ps[:8] == [1.0] * 8
    assert ps == sorted(ps, reverse=True) and ps[-1] < 1e-10
    # and the pmf behind it agrees with scipy where scipy is exact
    for x, m, p in ((3, 10, 0.1), (520, 10_000, 0.05), (17, 20, 0.3), (4, 4, 0.05)):
        assert S._log_binom_pmf(x, m, p) == pytest.approx(float(sps.binom.logpmf(x, m, p)), rel=1e-10)


# -- An error or missing rate increase against few stable requests (docs/decisions.md 149) -------------


def _increase_look(n_s: int, x_s: int, n_c: int, x_c: int, *, kind: str = "error_rate", min_canary: int = 500,
                   alpha: float = 0.01) -> dict:
    check = {"name": "c", "kind": kind, "max_increase_points": 1}
    return {"policy": {"steps": [10, 100], "analysis": {"min_canary_requests": min_canary, "alpha": alpha},
                       "checks": [check]},
            "checks": {"c": {"stable": {"events": x_s, "total": n_s}, "canary": {"events": x_c, "total": n_c}}}}


@pytest.mark.parametrize("kind", ["error_rate", "feature_missing"])
@pytest.mark.parametrize("n_s, n_c", [(10, 1_000_000), (10, 600), (3, 1_000_000), (3, 600)])
def test_a_canary_failing_every_request_against_few_stable_requests_fails(kind: str, n_s: int, n_c: int) -> None:
    """10 stable requests carry about 10 effective requests of information, whatever the canary's count: the
    normal mixture (rho = 200) needed z of about 15 there, and the signed-root z of 0 of 10 against all of a
    million is 9.6, so a canary failing every one of 1,000,000 requests against +1 point stayed INCONCLUSIVE
    (p = 0.065) until the step's deadline. The window's exact test of both arms' counts
    (`sequential.increase_p`, EXACT_SHARE of the level) fails it once min_canary_requests are in."""
    r = _judge(_increase_look(n_s, 0, n_c, n_c, kind=kind))
    assert r.outcome is Outcome.FAIL, r.reason
    assert r.extra["tests"][0]["p_exact"] <= 0.01 * S.EXACT_SHARE * S.window_share(0, 0) / (1 - S.POOLED_SHARE)


def test_an_increase_never_fails_a_canary_equal_to_stable_or_within_the_margin() -> None:
    """The same rates in both arms, or a canary within +1 point: p_exact = 1 (no evidence), at any counts."""
    for n_s, n_c, rate in [(10, 1_000_000, 0.0), (10, 1_000_000, 1.0), (3, 600, 0.5), (100_000, 100, 0.02)]:
        r = _judge(_increase_look(n_s, round(n_s * rate), n_c, round(n_c * rate)))
        assert r.outcome is not Outcome.FAIL, r.reason
        assert S.increase_p(n_s * rate, n_s, n_c * rate, n_c, 0.01) == 1.0
    assert S.increase_p(0, 10, 9, 1_000, 0.01) == 1.0  # 0.9% against 0%: within the margin


def _judged_step(rng: np.random.Generator, policy: object, p_s: float, p_c: float, per_s: int, per_c: int,
                 looks: int) -> bool:
    """One step of `looks` looks at cumulative counts, the real judge at each: whether any look failed."""
    from canary.model import Counts

    xs, xc = np.cumsum(rng.binomial(per_s, p_s, looks)), np.cumsum(rng.binomial(per_c, p_c, looks))
    for j in range(looks):
        m = {"c": (Counts(float(xs[j]), float(per_s * (j + 1))), Counts(float(xc[j]), float(per_c * (j + 1))))}
        if judge(policy, m, step=0).results[0].outcome is Outcome.FAIL:
            return True
    return False


def false_breaches(runs: int, seed: int = 149) -> list[tuple[float, int, int, int]]:
    """The judge at the limit (canary = stable + 1 point), `analysis.alpha` 0.2, min_canary_requests 0, a step
    of 10-30 looks: (stable rate, stable and canary requests a look, failed runs) per scenario. Run with
    `.venv/bin/python tests/unit/test_judge_kinds_attack.py RUNS` for the figures of decision 149."""
    policy = parse_exported(_increase_look(1, 0, 1, 0, min_canary=0, alpha=0.2)).policy
    rng = np.random.default_rng(seed)
    out = []
    for p_s, per_s, per_c in [(0.0, 1, 20), (0.001, 2, 50), (0.02, 10, 10), (0.3, 5, 20), (0.02, 200, 20)]:
        failed = sum(_judged_step(rng, policy, p_s, p_s + 0.01, per_s, per_c, int(rng.integers(10, 31)))
                     for _ in range(runs))
        out.append((p_s, per_s, per_c, failed))
    return out


def test_the_increase_at_the_limit_fails_at_most_its_level_with_few_stable_requests() -> None:
    """The whole test (normal mixtures and the exact test) at the limit over a step of 10-30 looks, down to one
    stable request a look, fails at most its level (0.2 here so that a breach of it would show)."""
    for p_s, per_s, per_c, failed in false_breaches(150):
        assert failed / 150 <= 0.2, (p_s, per_s, per_c, failed)


def test_the_exact_increase_test_holds_its_level_watched_at_every_request() -> None:
    """`increase_p` alone, the canary exactly at the stable's rate + 1 point, watched after every request of
    both arms up to 1,000: Ville's inequality on each arm's confidence sequence bounds the crossing by the
    level (a/2 for each arm's bound); simulated it is far below (both bounds must miss at once)."""
    rng = np.random.default_rng(1491)
    for p_s, ratio in [(0.0, 1), (0.02, 1), (0.02, 20)]:
        crossed = {0.2: 0, 0.05: 0}
        for _ in range(200):
            xs = np.cumsum(rng.random(1_000 * ratio) < p_s)
            xc = np.cumsum(rng.random(1_000) < p_s + 0.01)
            least = min(S.increase_p(float(xs[n * ratio - 1]), float(n * ratio), float(xc[n - 1]), float(n), 0.01)
                        for n in range(1, 1_001, 3))
            for level in crossed:
                crossed[level] += least <= level
        for level, k in crossed.items():
            assert k / 200 <= level, (p_s, ratio, level, k)


def test_the_exact_increase_test_known_values_and_monotone_in_evidence() -> None:
    """0 of 10 stable against 40 of 40 canary at +1 point: the crossing of the arms' two exact tests. More canary
    errors, or fewer stable ones, never raise p; the bound pair is the one the p says (L_c > U_s + margin)."""
    p = S.increase_p(0, 10, 40, 40, 0.01)
    assert 1e-5 < p < 1e-3
    # at p, the canary's lower bound meets the stable's upper bound + margin: some r has both arms' p <= p/2
    lo, hi = 0.0, 0.99
    for _ in range(200):
        r = (lo + hi) / 2
        if S.exceedance_p(40, 40, r + 0.01) < S.exceedance_p(10, 10, 1 - r):
            lo = r
        else:
            hi = r
    assert 2 * max(S.exceedance_p(40, 40, lo + 0.01), S.exceedance_p(10, 10, 1 - lo)) == pytest.approx(p, rel=1e-6)
    ps = [S.increase_p(0, 10, n, n, 0.01) for n in range(20, 200, 7)]
    assert ps == sorted(ps, reverse=True)
    ps = [S.increase_p(x, 100, 60, 100, 0.01) for x in range(0, 60, 3)]
    assert ps == sorted(ps)
    assert S.increase_p(0, 2 ** 52, 2 ** 52, 2 ** 52, 0.01) < 1e-300  # at the largest counts the input accepts
    assert S.increase_p(0, 0, 5, 5, 0.01) == 1.0 and S.increase_p(0, 10, 5, 5, 1.0) == 1.0


if __name__ == "__main__":
    import sys

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
    for p_s, per_s, per_c, failed in false_breaches(runs):
        print(f"stable {p_s:.1%}, {per_s} stable and {per_c} canary requests a look: {failed}/{runs} failed "
              f"({failed / runs:.4f}, level 0.2)")

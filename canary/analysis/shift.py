"""Distribution shift between the arms' per-bucket counts (prediction histograms).

Why a separate test: a shift needs significance *and* an effect size above
the policy's threshold (PSI, or a Jensen-Shannon distance mapped onto it), so
large samples do not turn trivial shifts into rollbacks, and a PASS needs an
upper confidence bound below the limit. Pure functions returning the same
`TestResult` as stats.py; docs/judge.md gives the reasoning.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

from canary.analysis.stats import TestResult, bdtr, chi2_sf, ncx2_sf
from canary.analysis.shown import beside, exact, whole

_MIN_EXPECTED = 5.0  # chi-square cells are merged until each arm expects this many


def merge_sparse(stable: np.ndarray, canary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent bins (left to right) until each arm expects >= 5 in every cell."""
    s, c = np.asarray(stable, float), np.asarray(canary, float)
    n_s, n_c = s.sum(), c.sum()
    share = min(n_s, n_c) / (n_s + n_c)
    edges, acc = [], 0.0
    for i, v in enumerate((s + c).tolist()):  # pooled counts, as Python floats (the same sums, faster)
        acc += v
        if acc * share >= _MIN_EXPECTED:
            edges.append(i + 1)
            acc = 0.0
    if not edges:
        return np.array([n_s]), np.array([n_c])
    edges[-1] = len(s)  # a sparse tail joins the last full cell
    cells = list(zip([0] + edges[:-1], edges))
    return _cell_totals(s, cells), _cell_totals(c, cells)


def _cell_totals(counts: np.ndarray, cells: list[tuple[int, int]]) -> np.ndarray:
    """Per cell, bins [a, b): their total count. A cell of one bin is that bin's count (no slice to sum)."""
    return np.array([counts[a] if b == a + 1 else counts[a:b].sum() for a, b in cells])


def psi(stable: np.ndarray, canary: np.ndarray) -> float:
    """Population stability index, with +0.5 per cell so empty cells stay finite."""
    ps = (stable + 0.5) / (stable.sum() + 0.5 * len(stable))
    pc = (canary + 0.5) / (canary.sum() + 0.5 * len(canary))
    return float(np.sum((pc - ps) * np.log(pc / ps)))


def js_distance(stable: np.ndarray, canary: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (0 identical .. 1 disjoint)."""
    ps, pc = stable / stable.sum(), canary / canary.sum()
    m = (ps + pc) / 2

    def kl(p: np.ndarray) -> float:
        pos = p > 0  # 0 * log 0 = 0; where p > 0, m > 0 too
        p_pos = p[pos]
        return float(np.sum(p_pos * np.log2(p_pos / m[pos])))

    return float(math.sqrt(max(0.5 * kl(ps) + 0.5 * kl(pc), 0.0)))


def js_to_psi(js: float) -> float:
    """PSI equivalent of a JS distance for small shifts: JSD(nats) ~ PSI/8."""
    return 8.0 * math.log(2) * js * js


def distribution_shift(stable: np.ndarray, canary: np.ndarray, *, max_psi: float, alpha: float,
                       pass_level: float = 0.05) -> tuple[TestResult, float, float]:
    """H0: PSI <= max_psi, on per-bucket (non-cumulative) counts of both arms.

    Under a shift of true size PSI, n_eff*PSI_hat is close to noncentral
    chi-square(df=k-1, lambda=n_eff*PSI) with n_eff = n_s n_c/(n_s+n_c), since
    PSI is the symmetric KL divergence and its plug-in is the chi-square
    statistic over n_eff to first order. So: breach when both the chi-square
    homogeneity test and the effect test reject at alpha; `upper` is the
    (1 - pass_level) upper confidence bound on PSI, used to PASS.
    Returns (result, psi_upper, js_distance).
    """
    if np.sum(stable) <= 0 or np.sum(canary) <= 0:
        return TestResult(False, False, 1.0, note="an arm has no observations"), math.inf, math.nan
    s, c = merge_sparse(stable, canary)
    n_s, n_c = s.sum(), c.sum()
    if len(s) < 2:
        return TestResult(False, False, 1.0, note="too few observations to compare"), math.inf, math.nan
    table = np.vstack([s, c])
    expected = table.sum(0) * table.sum(1)[:, None] / table.sum()
    chi2 = float(np.sum((table - expected) ** 2 / np.where(expected > 0, expected, 1.0)))
    df = len(s) - 1
    p_chi = chi2_sf(chi2, df)
    n_eff = n_s * n_c / (n_s + n_c)
    est = psi(s, c)
    obs = n_eff * est
    p_eff = ncx2_sf(obs, df, n_eff * max_psi)
    upper = _ncx2_upper(obs, df, pass_level) / n_eff
    p = max(p_chi, p_eff)
    res = TestResult(p <= alpha, True, p, statistic=chi2, effect=est, note=f"{len(s)} cells")
    return res, upper, js_distance(s, c)


def shift_tests(stable: np.ndarray, canary: np.ndarray, *, max_psi: float | None, max_js: float | None,
                alpha: float, beta: float) -> list[tuple[str, TestResult]]:
    """Each configured limit tested on its own statistic: [("psi" | "js", TestResult)].

    PSI and the Jensen-Shannon divergence (JSD, nats; the distance is sqrt(JSD / ln 2)) are
    both, to first order, the chi-square divergence over 1 and over 8, so n_eff*PSI_hat and
    8*n_eff*JSD_hat each follow noncentral chi-square(k-1, n_eff*D) with D their own true
    value. A limit is breached when the homogeneity test and its effect test reject at its
    share of alpha (alpha / limits: either may fail the check); it is shown `within` when the
    (1 - beta) upper bound on its own statistic is below it. No limit is mapped onto the other
    statistic: JS 0.1 is not PSI 0.055 (the two disagree by 2x on skewed cells).
    """
    limits = [(name, float(x)) for name, x in (("psi", max_psi), ("js", max_js)) if x]
    # Python floats, not arrays: 10-20 cells cost less in a loop than in numpy calls (see `_sum`).
    stable, canary = np.asarray(stable, float).tolist(), np.asarray(canary, float).tolist()
    if _sum(stable) <= 0 or _sum(canary) <= 0:
        why = "an arm has no observations"
        return [(name, TestResult(False, False, 1.0, note=why, why_not=why)) for name, _ in limits]
    s, c = _merge(stable, canary)
    if len(s) < 2:
        why = "too few observations to compare"
        return [(name, TestResult(False, False, 1.0, note=why, why_not=why)) for name, _ in limits]
    chi2 = _chi2(s, c)
    df = len(s) - 1
    p_chi = chi2_sf(chi2, df)
    n_s, n_c = _sum(s), _sum(c)
    n_eff = n_s * n_c / (n_s + n_c)
    # The cells as exported (those either arm used): merging sparse cells keeps the chi-square
    # model valid for the breach test, but it can hide a shift into a bucket one arm never uses
    # (10% of the canary where stable has nothing, merged into a neighbour, read as PSI 0). So a
    # limit is shown within only if it is bounded on the merged cells *and* on these.
    used = [x + y > 0 for x, y in zip(stable, canary)]
    raw_s = [x for x, u in zip(stable, used) if u]
    raw_c = [y for y, u in zip(canary, used) if u]
    # Usually these are the merged cells themselves (none sparse, none unused): the same numbers.
    same_cells = len(raw_s) == len(s) and all(x == y for x, y in zip(raw_s, s)) and all(
        x == y for x, y in zip(raw_c, c))
    out = []
    for name, limit in limits:
        if name == "psi":
            stat, scale, to_limit_unit, at_limit = _psi, n_eff, float, limit
        else:  # JSD(nats) = ln 2 * JS distance^2
            stat, scale, to_limit_unit, at_limit = _jsd_bits, 8.0 * n_eff * math.log(2), math.sqrt, limit * limit
        value = stat(s, c)
        est, obs = to_limit_unit(value), scale * value
        p = max(p_chi, ncx2_sf(obs, df, scale * at_limit))
        merged_upper = float(to_limit_unit(max(_ncx2_upper(obs, df, beta) / scale,
                                               _delta_upper(name, value, s, c, beta))))
        if same_cells:
            raw_upper = merged_upper
        else:
            raw_value = stat(raw_s, raw_c)
            raw_upper = float(to_limit_unit(max(_ncx2_upper(scale * raw_value, max(len(raw_s) - 1, 1), beta) / scale,
                                                _delta_upper(name, raw_value, raw_s, raw_c, beta))))
        upper = max(merged_upper, raw_upper)
        empty = _empty_cell(raw_s, raw_c, beta) if name == "psi" else ""
        if empty:  # PSI's log-ratio there is unbounded: no upper bound from the counts
            upper = math.inf
        thin = _thin_upper(raw_s, raw_c, beta) if name == "psi" and not empty else (-math.inf, "")
        if thin[0] > upper:  # a share resting on a few observations, far below the other arm's
            upper = thin[0]
        within = bool(upper < limit)
        why_not = "" if within else empty or (f"{name.upper()} not yet bounded below its limit {exact(limit)} "
                                              f"(upper {beside(upper, limit, 2)}, level {beta:.2g}"
                                              + (f", on the {len(raw_s)} buckets as exported"
                                                 if raw_upper > merged_upper else "")
                                              + (f", {thin[1]}" if thin[0] >= upper and thin[1] else "") + ")")
        out.append((name, TestResult(p <= alpha / len(limits), True, p, statistic=chi2, effect=est,
                                     note=f"{len(s)} cells", within=within, bound=upper, why_not=why_not)))
    return out


# -- the same statistics on lists of floats (what shift_tests uses) ------------------------------
#
# Each equals its array function above bit for bit (test_judge_speedup): the same operations in
# the same order, sums included (`_sum` is numpy's summation order), logs where numpy takes them.


def _sum(xs: list[float]) -> float:
    """np.sum of a float64 vector, bit for bit: numpy's pairwise summation, not a left-to-right sum.

    numpy adds up to 8 values one by one, up to 128 in 8 interleaved partial sums, and splits
    longer vectors in halves (multiples of 8); the last bits of a sum depend on that order.
    """
    n = len(xs)
    if n < 8:
        total = 0.0
        for x in xs:
            total += x
        return total
    if n <= 128:
        r = xs[:8]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += xs[i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for x in xs[i:]:
            total += x
        return total
    half = n // 2
    half -= half % 8
    return _sum(xs[:half]) + _sum(xs[half:])


def _log(x: float, log: Callable[[float], float] = math.log) -> float:
    """np.log (or np.log2) of one float: math's, with numpy's -inf at 0 and NaN below (no exception)."""
    if x > 0 or x != x:
        return log(x)
    return -math.inf if x == 0 else math.nan


def _merge(stable: list[float], canary: list[float]) -> tuple[list[float], list[float]]:
    """`merge_sparse` on lists."""
    n_s, n_c = _sum(stable), _sum(canary)
    share = min(n_s, n_c) / (n_s + n_c)
    edges, acc = [], 0.0
    for i, (x, y) in enumerate(zip(stable, canary)):
        acc += x + y
        if acc * share >= _MIN_EXPECTED:
            edges.append(i + 1)
            acc = 0.0
    if not edges:
        return [n_s], [n_c]
    edges[-1] = len(stable)
    cells = list(zip([0] + edges[:-1], edges))
    return ([stable[a] if b == a + 1 else _sum(stable[a:b]) for a, b in cells],
            [canary[a] if b == a + 1 else _sum(canary[a:b]) for a, b in cells])


def _chi2(s: list[float], c: list[float]) -> float:
    """The chi-square homogeneity statistic of the 2 x k table (s, c), as shift_tests' arrays gave it."""
    total = _sum(s + c)  # the table's sum: its rows in order
    rows = (_sum(s), _sum(c))
    cols = [x + y for x, y in zip(s, c)]
    terms = []
    for row, arm in zip(rows, (s, c)):
        for col, x in zip(cols, arm):
            e = col * row / total
            d = x - e
            terms.append(d * d / (e if e > 0 else 1.0))  # numpy squares by multiplying
    return _sum(terms)


def _psi(stable: list[float], canary: list[float]) -> float:
    """`psi` on lists."""
    ds = _sum(stable) + 0.5 * len(stable)
    dc = _sum(canary) + 0.5 * len(canary)
    terms = []
    for x, y in zip(stable, canary):
        ps, pc = (x + 0.5) / ds, (y + 0.5) / dc
        terms.append((pc - ps) * _log(pc / ps))
    return _sum(terms)


def _jsd_bits(stable: list[float], canary: list[float]) -> float:
    """Jensen-Shannon divergence in bits: the square of `js_distance` (on lists)."""
    ts, tc = _sum(stable), _sum(canary)
    ps, pc = [x / ts for x in stable], [y / tc for y in canary]
    m = [(a + b) / 2 for a, b in zip(ps, pc)]

    def kl(p: list[float]) -> float:  # 0 * log 0 = 0; where p > 0, m > 0 too
        return _sum([a * _log(a / b, math.log2) for a, b in zip(p, m) if a > 0])

    return float(math.sqrt(max(0.5 * kl(ps) + 0.5 * kl(pc), 0.0))) ** 2


def _empty_cell(stable: list[float], canary: list[float], level: float) -> str:
    """Why PSI cannot be bounded on these cells ("" when it can): the cells one arm never hits hold,
    together, more of the observations than that arm would miss by chance if the arms were equal, at
    `level` (half of it for each arm).

    PSI's term (p_c - p_s) ln(p_c / p_s) grows without bound as one share goes to 0, and no count
    bounds a share away from 0 once it is 0; the +0.5 smoothing reads it as 0.5/n. Tested jointly,
    not cell by cell: a canary that stopped producing the stable's top 2% of predictions, 0.4% in
    each of five buckets, was not significant in any one of them at 500 requests (e^-2 each) and
    passed `max_psi: 0.2` at a smoothed PSI of 0.057 although its PSI is infinite. The statistic is
    the missed count M: the observations in the cells one arm leaves empty. It is tested given each
    cell's count over both arms, t_i, as a permutation test is: were the arms equal, the n_0 draws of
    the arm with the empty cells would be a sample without replacement of the N pooled observations,
    cell i empty with probability at most q_i = (1 - n_0 / N)^t_i (emptiness of the cells of a
    multivariate hypergeometric draw is negatively associated), and `_missed_p` bounds P(M >= observed)
    (a Chernoff bound). Nothing is estimated: no share read off a sample enters (plugging in the small
    canary's observed shares blocked 23% of equal canaries; their lower confidence bounds, at a
    level split over every cell, let the canary that lost the stable's top 2% pass in 98% of looks
    against a stable of 4,500). Not the probability that *these* cells are all empty, which picks the
    cells after seeing them: an equal canary over 26 cells with a thin tail missed 0.2% of the stable
    in 3 of them, (0.998)^2000 = 0.018, and would have been blocked far more often than `level`."""
    totals = [z + o for z, o in zip(stable, canary)]
    n_all = _sum(totals)
    weights = [t / n_all for t in totals] if n_all > 0 else []
    for zero_arm, other_arm, arm, them in ((canary, stable, "canary", "stable"), (stable, canary, "stable", "canary")):
        n_zero, n_other = _sum(zero_arm), _sum(other_arm)
        if n_zero <= 0 or n_other <= 0:
            continue
        empty = [z == 0 and o > 0 for z, o in zip(zero_arm, other_arm)]
        if not any(empty):
            continue
        log_miss = math.log1p(-n_zero / n_all)  # log P(one pooled observation is not this arm's)
        if _missed_p(weights, [t * log_miss for t in totals], empty) < level / 2:
            cells = [i for i, e in enumerate(empty) if e]
            share = sum(other_arm[i] for i in cells) / n_other
            where = (f"bucket {cells[0] + 1}" if len(cells) == 1
                     else f"{len(cells)} buckets ({', '.join(str(i + 1) for i in cells[:6])}{', ...' if len(cells) > 6 else ''})")
            return (f"PSI cannot be bounded: the {arm} has no observations in {where} where the {them} has "
                    f"{share:.2%} of its {whole(n_other)} (a share the counts cannot bound away from 0)")
    return ""


def _missed_p(weights: list[float] | np.ndarray, log_q: list[float] | np.ndarray, empty: list[bool]) -> float:
    """Bound on P(M >= m): M the sum of the weights p_i of the cells left empty, cell i empty with
    probability at most q_i = exp(log_q_i), the events negatively associated; m the observed one. A
    cell with p_i > m missed alone reaches m: those enter by a union bound, sum of their q_i; over the
    others, a Chernoff bound, min over t > 0 of exp(-t m) prod_i (1 - q_i + q_i e^(t p_i)) (larger
    q_i only raise it), which is prod_i q_i when all of them must be empty. (The tilt over every cell
    let a 19% cell's e^(t p) swamp it: 0.0068 where the chance that five thin cells are all empty is
    4e-4.) In log space throughout: q_i underflows to 0 for a large cell (a 98% cell at n >= 154),
    which must read as never empty, not 0/0 (p = 0 blocked)."""
    p = np.asarray(weights, float)
    log_q = np.minimum(np.asarray(log_q, float), 0.0)
    m = float(p[np.asarray(empty, bool)].sum())
    if not m > 0 or m <= float(p @ np.exp(log_q)):  # no more missed than expected: no evidence
        return 1.0
    big = p > m * (1 + 1e-12)
    union = float(np.exp(log_q[big]).sum())
    p, log_q = p[~big], log_q[~big]
    reach = float(p.sum())
    if reach <= m * (1 + 1e-12):  # every one of them must be empty (or a big cell)
        return float(min(1.0, union + (math.exp(float(log_q.sum())) if reach >= m * (1 - 1e-12) else 0.0)))
    log_1q = np.log1p(-np.minimum(np.exp(log_q), 1 - 1e-16))  # log(1 - q_i)

    def log_bound(t: float) -> float:  # log(1 - q + q e^(tp)) = tp + log(q + (1 - q) e^(-tp))
        tp = t * p
        return float(-t * m + np.sum(tp + np.logaddexp(log_q, log_1q - tp)))

    def slope(t: float) -> float:  # d/dt: sum p_i q_i e^(tp_i) / (1 - q_i + q_i e^(tp_i)) - m
        return float(p @ special.expit(t * p + log_q - log_1q)) - m

    lo, hi = 0.0, 1.0 / m
    while slope(hi) < 0 and hi < 1e15:
        lo, hi = hi, hi * 4
    for _ in range(60):  # the bound is convex in t: bisect its slope
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return float(min(1.0, union + math.exp(min(log_bound(hi), 0.0))))


_THIN = 10  # a cell count below this (and >= 1) in one arm, far below the other's: a few-count cell (`_thin_upper`)


def _thin_upper(stable: list[float], canary: list[float], level: float) -> tuple[float, str]:
    """An upper (1 - level) bound on PSI where a share rests on a few observations (-inf, "" when no
    cell does), and which cell it is for the reason.

    PSI's term (p_c - p_s) ln(p_c / p_s) is a log-ratio: where one arm has 1 to 9 observations in a
    cell where equal arms would have put far more (fewer than that has a chance below level / (2 k),
    given the cell's count over both arms, as `_empty_cell` tests zero), the delta-method and chi-square
    bounds read the few observations as a share known to a normal error, and the log of a share of 1
    observation is nothing of the kind: a canary keeping 0.004% of a bucket where the stable has 3%
    (true PSI 0.2) showed 1 observation of 3,000 in about 12% of looks and was shown within `max_psi:
    0.2` at 21x the level (upper 0.19; that share can be 1e-6 at the level, a term of 0.31). Here every
    cell's share in each arm gets an exact (Clopper-Pearson) interval at level / (4 k), k the cells (a
    union bound over all of them), and each such cell's term is bounded by its largest value over the
    box of its two intervals (the term grows away from p_c = p_s, so at a corner); the other cells'
    terms by the delta method and the chi-square model at level / 2, as `shift_tests` bounds the whole.
    The caller takes the larger of this and its own bound. Equal arms are almost never affected (a
    cell is picked with a chance below level / 2 in all). Zero observations are `_empty_cell`'s (no
    share is bounded away from 0 there)."""
    n_s, n_c = _sum(stable), _sum(canary)
    k = len(stable)
    if n_s <= 0 or n_c <= 0 or k < 2:
        return -math.inf, ""
    thin = []
    n_all = n_s + n_c
    for i, (x, y) in enumerate(zip(stable, canary)):
        for few, n_few in ((y, n_c), (x, n_s)):
            t = round(x + y)
            # few observations, and fewer than equal arms would give that cell with any but a small
            # chance: P(at most this many of the cell's t | the arms equal) < level / (2 k)
            if 1 <= round(few) < _THIN and bdtr(round(few), t, n_few / n_all) < level / (2 * k):
                thin.append(i)
                break
    if not thin:
        return -math.inf, ""
    cell = level / (4 * k)
    total = 0.0
    for i in thin:
        ls, us = _cp(stable[i], n_s, cell)
        lc, uc = _cp(canary[i], n_c, cell)
        total += max((uc - ls) * math.log(uc / ls), (us - lc) * math.log(us / lc))
    rest = [i for i in range(k) if i not in thin]
    if rest:
        value = _psi_part(stable, canary, rest)
        n_eff = n_s * n_c / (n_s + n_c)  # the chi-square model on these cells' terms: no sum constrains them
        total += max(_delta_upper("psi", value, stable, canary, level / 2, keep=rest),
                     _ncx2_upper(n_eff * value, len(rest), level / 2) / n_eff)
    i = thin[0]
    few, arm, them = (canary, "canary", "stable") if canary[i] < stable[i] * n_c / n_s else (stable, "stable", "canary")
    return total, (f"bucket {i + 1} rests on {whole(few[i])} {arm} observation{'s' if round(few[i]) != 1 else ''} "
                   f"against the {them}'s {(stable if arm == 'canary' else canary)[i] / (n_s if arm == 'canary' else n_c):.2%}")


def _cp(x: float, n: float, level: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) bounds on a share of x observations in n, each at `level`."""
    xi, ni = int(round(x)), max(int(round(n)), 1)
    xi = min(max(xi, 0), ni)
    lo = float(special.betaincinv(xi, ni - xi + 1, level)) if xi > 0 else 0.0
    hi = float(special.betaincinv(xi + 1, ni - xi, 1 - level)) if xi < ni else 1.0
    return lo, hi


def _psi_part(stable: list[float], canary: list[float], keep: list[int]) -> float:
    """`_psi`'s terms summed over the cells `keep` only (the shares as `_psi` smooths them)."""
    ds = _sum(stable) + 0.5 * len(stable)
    dc = _sum(canary) + 0.5 * len(canary)
    out = 0.0
    for i in keep:
        ps, pc = (stable[i] + 0.5) / ds, (canary[i] + 0.5) / dc
        out += (pc - ps) * _log(pc / ps)
    return out


def _delta_upper(name: str, value: float, stable: list[float], canary: list[float], level: float, *,
                 keep: list[int] | None = None) -> float:
    """Upper (1 - level) bound on PSI (name "psi") or the JS divergence in bits ("js") by the delta
    method: the statistic plus z times its multinomial standard error, both arms' cell shares
    estimated. Away from equality (a canary near the limit) the noncentral chi-square model of
    `_ncx2_upper` understates the spread of the estimate (a reviewer measured sd 0.026 against the
    model's 0.014 at PSI 0.2, and 24% of canaries at the limit shown within where 5% should be);
    near equality this bound shrinks to the estimate and the chi-square one holds. The caller takes
    the larger. Same smoothing as the statistic (`_psi`: +0.5 per cell)."""
    n_s, n_c = _sum(stable), _sum(canary)
    if n_s <= 0 or n_c <= 0 or not math.isfinite(value):
        return math.inf
    if name == "psi":
        ds, dc = n_s + 0.5 * len(stable), n_c + 0.5 * len(canary)
        ps = [(x + 0.5) / ds for x in stable]
        pc = [(y + 0.5) / dc for y in canary]
        g_c = [math.log(b / a) + 1 - a / b for a, b in zip(ps, pc)]  # d PSI / d canary share
        g_s = [-math.log(b / a) + 1 - b / a for a, b in zip(ps, pc)]  # d PSI / d stable share
    else:  # d JSD / d p_i = log2(p_i / m_i) / 2, m the arms' mean (0 where a share is 0)
        ps, pc = [x / n_s for x in stable], [y / n_c for y in canary]
        g_s = [0.5 * math.log2(a / ((a + b) / 2)) if a > 0 else 0.0 for a, b in zip(ps, pc)]
        g_c = [0.5 * math.log2(b / ((a + b) / 2)) if b > 0 else 0.0 for a, b in zip(ps, pc)]
    if keep is not None:  # the statistic's terms over these cells only (`_thin_upper`)
        kept = set(keep)
        g_s = [g if i in kept else 0.0 for i, g in enumerate(g_s)]
        g_c = [g if i in kept else 0.0 for i, g in enumerate(g_c)]

    def var(shares: list[float], grad: list[float], n: float) -> float:
        mean = sum(w * g for w, g in zip(shares, grad))
        return max(sum(w * g * g for w, g in zip(shares, grad)) - mean * mean, 0.0) / n

    z = float(-special.ndtri(level))
    return value + z * math.sqrt(var(ps, g_s, n_s) + var(pc, g_c, n_c))


def _ncx2_upper(obs: float, df: int, level: float) -> float:
    """Approximate upper confidence bound on the noncentrality lambda.

    Solves obs = mean - z*sd for ncx2(df, lambda) (mean df+lambda, variance
    2(df+2 lambda)) in closed form: it only decides PASS vs INCONCLUSIVE, never
    a rollback, so a normal approximation is enough and keeps a look cheap.
    """
    z = float(-special.ndtri(level))
    disc = z * z - (df / 2.0 - obs)
    if disc < 0:
        return 0.0
    y = 2.0 * (z + math.sqrt(disc))
    return max(0.0, (y * y / 2.0 - df) / 2.0)

"""Prometheus native histograms read as cumulative buckets (`canary.metrics.native`), issue 9.

The property every test states: at every bound the reader gives, the count is exactly the number
of observations <= that bound, for each arm; nothing is filled in where that is not known."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from canary.errors import MetricsUnavailable, NoData
from canary.metrics.native import MAX_BOUNDS, NativeBuckets, align, from_buckets, grid_bound, native_buckets, schema_of


def buckets_of(values: list[float], schema: int, zero_threshold: float = 0.0, *, jitter: bool = False
               ) -> list[tuple[int, float, float, float]]:
    """What Prometheus writes for `values` observed into a native histogram: (rule, lo, hi, count) per
    populated bucket; bucket i is (2^((i-1)/2^s), 2^(i/2^s)], |v| <= zero_threshold is the zero bucket.
    `jitter`: bounds one ulp off, as the API's own float arithmetic may give them."""
    counts: dict[int, int] = {}
    negative: dict[int, int] = {}
    zero = 0
    for v in values:
        if abs(v) <= zero_threshold:
            zero += 1
            continue
        a = abs(v)
        i = math.ceil(math.log2(a) * 2 ** schema - 1e-12)
        while grid_bound(i - 1, schema) >= a:  # float edges: the bucket whose (lo, hi] holds |v|
            i -= 1
        while grid_bound(i, schema) < a:
            i += 1
        into = counts if v > 0 else negative
        into[i] = into.get(i, 0) + 1
    # Prometheus clips the bucket straddling the zero threshold at it (its lower edge is the threshold)
    out = [(1, -grid_bound(i, schema), -max(grid_bound(i - 1, schema), zero_threshold), float(c))
           for i, c in sorted(negative.items(), reverse=True)]
    out += [(3, -zero_threshold, zero_threshold, float(zero))] if zero else []
    for i, c in sorted(counts.items()):
        lo, hi = max(grid_bound(i - 1, schema), zero_threshold), grid_bound(i, schema)
        if jitter:
            lo, hi = math.nextafter(lo, math.inf), math.nextafter(hi, -math.inf)
        out.append((0, lo, hi, float(c)))
    return out


def true_count(values: list[float], bound: float) -> int:
    """What a native count at `bound` is: observations <= it, or < it at a negative bound (a negative
    bucket is [lo, hi))."""
    return sum(v <= bound for v in values) if bound >= 0 else sum(v < bound for v in values)


def lognormal(rng: random.Random, n: int, median: float, sigma: float) -> list[float]:
    return [median * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def shift_outcome(stable: list[float] | NativeBuckets, canary: list[float] | NativeBuckets, schema: int = 3,
                  max_psi: float = 0.2) -> tuple[Any, str]:
    """The prediction check's outcome on two arms read as canary reads native histograms
    (`from_buckets`, `align`, `quantile_cells`); values are observed at `schema`."""
    from canary.analysis.judge import judge_check
    from canary.metrics.native import quantile_cells
    from canary.model import Histogram
    from canary.policy import parse_policy

    a, b = (x if isinstance(x, NativeBuckets) else from_buckets(buckets_of(x, schema), len(x)) for x in (stable, canary))
    pa, pb = quantile_cells(*align(a, b))
    check = parse_policy({"steps": [10, 100], "checks": [{"name": "shift", "kind": "prediction_shift",
                                                          "max_psi": max_psi}]}).checks[0]
    hist = [Histogram(tuple(le for le, _ in p), tuple(c for _, c in p)) for p in (pa, pb)]
    verdict = judge_check(check, hist[0], hist[1], alpha=0.01, min_canary=100)
    return verdict.outcome, verdict.reason


@pytest.mark.parametrize("schema", [-2, 0, 3, 5, 8])
@pytest.mark.parametrize("jitter", [False, True])
def test_every_bound_of_one_arm_carries_exactly_the_observations_below_it(schema: int, jitter: bool) -> None:
    rng = random.Random(schema * 10 + jitter)
    values = lognormal(rng, 3000, 0.05, 0.6)
    got = from_buckets(buckets_of(values, schema, jitter=jitter), len(values))
    assert got.pairs[-1] == (math.inf, len(values))
    finite = [le for le, _ in got.pairs[:-1]]
    assert finite == sorted(finite) and len(set(finite)) == len(finite)
    for le, c in got.pairs[:-1]:
        assert c == true_count(values, le), le
    # the grid is filled between the first and the last populated bucket: one bound per grid step
    # (at a coarser schema when the finest would need more than MAX_BOUNDS)
    ratios = np.diff(np.log2(finite))
    assert np.allclose(ratios, 2.0 ** -got.schema) and len(finite) <= MAX_BOUNDS + 1
    assert got.schema <= schema


@pytest.mark.parametrize("schemas", [(3, 3), (3, 2), (0, 5), (8, 3), (-1, 1)])
def test_two_arms_are_aligned_on_the_bounds_where_both_counts_are_exact(schemas: tuple[int, int]) -> None:
    """Different schemas, different ranges (the canary slower, so it populates buckets stable never
    reaches): every aligned bound is exact for both arms, and every bound of the coarser grid inside
    the union of their ranges is kept."""
    rng = random.Random(sum(schemas))
    stable, canary = lognormal(rng, 4000, 0.05, 0.4), lognormal(rng, 500, 0.09, 0.4)
    a = from_buckets(buckets_of(stable, schemas[0]), len(stable))
    b = from_buckets(buckets_of(canary, schemas[1]), len(canary))
    pa, pb = align(a, b)
    assert [le for le, _ in pa] == [le for le, _ in pb]
    for (le, ca), (_, cb) in zip(pa[:-1], pb[:-1]):
        assert (ca, cb) == (true_count(stable, le), true_count(canary, le)), le
    assert pa[-1] == (math.inf, len(stable)) and pb[-1] == (math.inf, len(canary))
    coarse = min(a.schema, b.schema)
    lo = min(a.pairs[0][0], b.pairs[0][0])
    hi = max(a.pairs[-2][0], b.pairs[-2][0])
    expected = {grid_bound(i, coarse) for i in range(-30 * 2 ** max(coarse, 0), 30 * 2 ** max(coarse, 0)) if lo <= grid_bound(i, coarse) <= hi}
    assert expected <= {le for le, _ in pa}


def test_a_zero_bucket_keeps_grid_bounds_below_its_threshold_out() -> None:
    """Observations within the zero threshold are in one bucket [-zt, zt]: a grid bound below zt is
    not known for that arm, so it is not a bound of the pair."""
    values = [0.0] * 50 + [0.002] * 20 + lognormal(random.Random(1), 300, 0.05, 0.3)
    zt = 0.001
    a = from_buckets(buckets_of(values, 3, zt), len(values))
    other = lognormal(random.Random(2), 300, 0.0005, 0.3)
    b = from_buckets(buckets_of(other, 3), 300)
    pa, pb = align(a, b)
    bounds = [le for le, _ in pa]
    assert zt not in bounds  # the other arm's count at 0.001 (no bound of its grid) is not known
    assert all(le > zt for le in bounds) and sum(le < 0.002 for le in bounds) >= 3
    for (le, ca), (_, cb) in zip(pa[:-1], pb[:-1]):
        assert (ca, cb) == (true_count(values, le), true_count(other, le))
    same = from_buckets(buckets_of(values[::2], 3, zt), len(values[::2]))
    assert zt in [le for le, _ in align(a, same)[0]]  # both arms' own bound


def test_custom_bounds_are_exact_only_where_both_arms_have_them() -> None:
    """Buckets that are no standard schema's (custom bounds): only the arms' shared own bounds."""
    custom = [(0, 0.0, 0.01, 5.0), (0, 0.01, 0.03, 7.0), (0, 0.03, 0.1, 3.0)]
    a = from_buckets(custom, 15)
    assert a.schema is None and [le for le, _ in a.pairs] == [0.01, 0.03, 0.1, math.inf]
    b = from_buckets([(0, 0.0, 0.01, 1.0), (0, 0.01, 0.05, 2.0)], 3)
    pa, pb = align(a, b)
    assert pa == [(0.01, 5.0), (math.inf, 15.0)] and pb == [(0.01, 1.0), (math.inf, 3.0)]


def test_a_grid_too_fine_for_the_judge_is_read_at_a_coarser_schema_exactly() -> None:
    rng = random.Random(7)
    values = [10 ** rng.uniform(-4, 2) for _ in range(5000)]  # six decades at schema 8: ~5,000 bounds
    got = from_buckets(buckets_of(values, 8), len(values))
    assert got.schema < 8 and len(got.pairs) <= MAX_BOUNDS + 1
    for le, c in got.pairs[:-1]:
        assert c == true_count(values, le)


def test_two_prediction_histograms_are_compared_on_cells_that_follow_the_data() -> None:
    """Review finding: coarsening the grid until its whole RANGE fits 20 cells put everything above
    0.25 in one cell when scores reach down to 1e-10, so a shift inside it passed (PSI 0.002, FAIL
    on 0.1-wide classic buckets). Cells read off stable depend on where its values fall."""
    from canary.metrics.native import SHIFT_CELLS, quantile_cells
    from canary.model import Outcome

    rng = random.Random(11)
    low = lambda: rng.betavariate(0.5, 20) + 1e-10  # noqa: E731
    stable = [low() if rng.random() < 0.5 else rng.uniform(0.60, 0.99) for _ in range(20000)] + [1e-9]
    canary = [low() if rng.random() < 0.5 else rng.uniform(0.51, 0.60) for _ in range(2000)]
    a = from_buckets(buckets_of(stable, 3), len(stable))
    b = from_buckets(buckets_of(canary, 3), len(canary))
    pa, pb = quantile_cells(*align(a, b))
    assert len(pa) <= 3 * SHIFT_CELLS + 1 and [le for le, _ in pa] == [le for le, _ in pb]
    for (le, ca), (_, cb) in zip(pa[:-1], pb[:-1]):
        assert (ca, cb) == (true_count(stable, le), true_count(canary, le))
    assert shift_outcome(a, b)[0] == Outcome.FAIL
    same = [low() if rng.random() < 0.5 else rng.uniform(0.60, 0.99) for _ in range(2000)]
    assert shift_outcome(a, same)[0] == Outcome.PASS


@pytest.mark.parametrize("seed", range(60))
def test_fuzz_every_count_align_uses_is_the_true_count(seed: int) -> None:
    """Random arms: schemas -4..8, zero thresholds (none, the Go client's 2^-128, off-grid), zeros,
    negative values, clipped buckets, wide and narrow ranges. Every bound `align` gives holds the
    true count for both arms, and so does every grid bound `exact_at` accepts."""
    rng = random.Random(seed)

    def arm() -> tuple[list[float], int, float]:
        schema = rng.choice([-4, -1, 0, 2, 3, 5, 8])
        zt = rng.choice([0.0, 2.0 ** -128, 1e-3, 0.01])
        n = rng.randint(50, 400)
        spread = rng.choice([0.2, 1.0, 4.0])
        centre = rng.choice([0.01, 0.05, 1.0])
        vals = [centre * math.exp(rng.gauss(0, spread)) * (-1 if rng.random() < rng.choice([0, 0, 0.3]) else 1)
                for _ in range(n)]
        vals += [0.0] * rng.choice([0, 0, 5]) + [zt / 2] * rng.choice([0, 3])
        return vals, schema, zt

    (va, sa, za), (vb, sb, zb) = arm(), arm()
    a = from_buckets(buckets_of(va, sa, za), len(va))
    b = from_buckets(buckets_of(vb, sb, zb), len(vb))
    pa, pb = align(a, b)
    for (le, ca), (_, cb) in zip(pa[:-1], pb[:-1]):
        assert (ca, cb) == (true_count(va, le), true_count(vb, le)), (le, a.schema, b.schema)
    for x, vals in ((a, va), (b, vb)):
        if x.schema is None:
            continue
        for i in range(-400, 60):
            for le in (grid_bound(i, x.schema), -grid_bound(i, x.schema)):
                if x.exact_at(le):
                    assert x.count_at(le) == true_count(vals, le), (le, x.schema, x.zero_hi)


def test_a_bucket_open_to_inf_is_counted_once() -> None:
    """Review finding: a populated (x, +Inf] bucket (custom buckets, or the overflow bucket) put a
    second +Inf pair in and doubled the total."""
    got = from_buckets([(3, -math.inf, 0.1, 50.0), (0, 0.1, 0.5, 40.0), (0, 0.5, math.inf, 10.0)], 100)
    assert got.pairs == ((0.1, 50.0), (0.5, 90.0), (math.inf, 100.0))
    overflow = from_buckets(buckets_of([0.05] * 9, 3) + [(0, 2.0 ** 1023, math.inf, 1.0)], 10)
    assert overflow.schema == 3 and overflow.pairs[-1] == (math.inf, 10.0) and overflow.pairs[-2][1] == 9


def test_the_zero_bucket_of_the_go_client_is_kept() -> None:
    """Review finding: the Go client's zero threshold 2^-128 is a grid point; it was dropped as an
    own bound, and the zeros went missing at every grid bound below the first populated bucket
    (an identical canary failed at PSI 4)."""
    values = [0.0] * 30 + [0.75] * 70
    got = from_buckets(buckets_of(values, 3, 2.0 ** -128), len(values))
    assert got.exact_at(0.25) and got.count_at(0.25) == 30


def test_a_native_arm_compared_with_a_classic_one_leaves_its_negative_bounds_out() -> None:
    """A negative bucket is [lo, hi): its count at a negative bound is of observations < bound, a
    classic bucket's of observations <= bound; a point mass on the bound would differ."""
    values = [-0.5] * 30 + [0.25] * 10
    got = from_buckets(buckets_of(values, 3), len(values))
    assert any(le < 0 for le, _ in got.pairs) and all(le >= 0 for le, _ in got.classic_pairs())


def test_schema_is_read_from_a_bucket() -> None:
    for s in range(-4, 9):
        assert schema_of(grid_bound(9, s), grid_bound(10, s)) == s
    assert schema_of(0.01, 0.03) is None and schema_of(-0.001, 0.001) is None


def test_an_answer_is_read_and_bad_answers_are_named() -> None:
    ok = {"metric": {}, "histogram": [1.0, {"count": "7", "sum": "0.3", "buckets": [
        [0, str(grid_bound(-41, 3)), str(grid_bound(-40, 3)), "3"], [0, str(grid_bound(-38, 3)), str(grid_bound(-37, 3)), "4"]]}]}
    got = native_buckets([ok], "q", "p95", "stable")
    assert got.schema == 3 and got.total == 7 and got.count_at(grid_bound(-39, 3)) == 3
    with pytest.raises(NoData, match="'p95': the canary arm has no native histogram series; query: q"):
        native_buckets([], "q", "p95", "canary")
    empty = {"metric": {}, "histogram": [1.0, {"count": "0", "sum": "0"}]}
    with pytest.raises(NoData, match="no observations"):
        native_buckets([empty], "q", "p95", "stable")
    with pytest.raises(MetricsUnavailable, match="2 series"):
        native_buckets([ok, ok], "q", "p95", "stable")
    from canary.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a classic histogram .* summary or a gauge"):
        native_buckets([{"metric": {}, "value": [1, "3"]}], "q", "p95", "stable")
    with pytest.raises(MetricsUnavailable, match="malformed"):
        native_buckets([{"metric": {}, "histogram": [1.0, {"count": "x"}]}], "q", "p95", "stable")


def api_sample(values: list[float], schema: int, zero: float = 0.0) -> dict:
    return {"count": str(len(values)), "sum": repr(sum(values)),
            "buckets": [[r, repr(lo), repr(hi), repr(c)] for r, lo, hi, c in buckets_of(values, schema, zero)]}


@pytest.mark.parametrize(("s_base", "s_now"), [(3, 3), (4, 2), (2, 4), (8, -1), (5, 0)])
def test_a_snapshot_window_of_a_native_series_is_exact_at_the_coarser_schema(s_base: int, s_now: int) -> None:
    """What the controller's batched snapshot does with a native series: kept by bucket index, the
    step-start sample subtracted at the coarser schema; counts restarted by a reset are the window's."""
    from canary.metrics.native import sample_values, values_buckets, values_delta, values_sum

    rng = random.Random(s_base * 7 + s_now)
    before = lognormal(rng, 500, 0.05, 0.5) + [-0.01, -0.02]  # negative observations too
    during = lognormal(rng, 700, 0.07, 0.5) + [-0.03]
    base = sample_values(api_sample(before, s_base))
    now = sample_values(api_sample(before + during, s_now))
    delta, reset = values_delta(now, base)
    if s_now > s_base:  # a schema that went up is a restart (Prometheus's rule): counts since it
        assert reset and values_buckets(delta).total == len(before + during)
        return
    assert not reset and delta["s"] == min(s_base, s_now, 8)
    got = values_buckets(delta)
    assert got.total == len(during)
    for le, c in got.pairs[:-1]:
        assert c == true_count(during, le), le
    # a restart: the current counts are the window's (as increase() counts across a reset)
    restarted = sample_values(api_sample(during[:100], s_now))
    delta, reset = values_delta(restarted, base)
    assert reset and values_buckets(delta).total == 100
    # two series summed at the coarsest schema
    other = lognormal(rng, 300, 0.2, 0.4)
    total = values_sum([values_delta(now, base)[0], sample_values(api_sample(other, 5))])
    for le, c in values_buckets(total).pairs[:-1]:
        assert c == true_count(during + other, le)


def test_native_series_that_share_no_exact_layout_are_refused() -> None:
    from canary.metrics.native import sample_values, values_delta, values_sum

    assert sample_values({"count": "2", "buckets": [[0, "0", "0.03", "1"], [0, "0.03", "0.1", "1"]]}) is None  # custom
    wide = sample_values(api_sample([0.0, 0.05], 3, 1e-3))
    narrow = sample_values(api_sample([0.0, 0.05], 3, 1e-4))
    assert values_sum([wide, narrow]) is None and values_delta(narrow, wide) is None  # two series; a narrowing
    assert values_delta(wide, narrow) == ({"zt": 1e-3, "z": 0.0, "c": 0.0, "s": 3.0}, False)  # widened: nothing new
    # an empty zero bucket's width is unknown, and fine unless a bucket lies inside the other's
    no_zero = sample_values(api_sample([0.05], 3))
    assert values_sum([wide, no_zero]) is not None
    inside = sample_values(api_sample([0.0005], 3))
    assert values_sum([wide, inside]) is None
    zero_only = sample_values(api_sample([0.0, 0.0], 3, 0.0))
    assert zero_only["z"] == 2 and zero_only["c"] == 2


def test_an_empty_sample_says_nothing_of_the_schema() -> None:
    """Second review: an empty native sample (a series created before its first request, a new pod)
    was read as schema 0 and pulled the window or the pod sum down to buckets 2x wide (a 0.6 -> 0.9
    prediction shift passed at PSI 0.0008)."""
    from canary.metrics.native import sample_values, values_buckets, values_delta, values_sum

    empty = sample_values({"count": "0", "sum": "0"})
    assert "s" not in empty
    rng = random.Random(2)
    during = lognormal(rng, 400, 0.05, 0.3)
    now = sample_values(api_sample(during, 3))
    delta, reset = values_delta(now, empty)
    assert not reset and delta["s"] == 3
    total = values_sum([delta, empty])
    assert total["s"] == 3 and values_buckets(total).schema == 3
    for le, c in values_buckets(total).pairs[:-1]:
        assert c == true_count(during, le)


def test_a_populated_bucket_to_inf_ends_what_is_exact() -> None:
    """Second review: custom buckets whose finite bounds happen to lie on a standard grid, with
    observations above the last one, were read as that schema, and grid bounds above it were
    'exact' without the overflow's observations (a slower canary passed)."""
    from canary.metrics.native import sample_values

    rows = [(0, 2.0 ** (i - 1), 2.0 ** i, 10.0) for i in range(-9, 1)] + [(0, 1.0, math.inf, 20.0)]
    got = from_buckets(rows, 120)
    assert got.exact_at(1.0) and got.count_at(1.0) == 100
    assert not got.exact_at(2.0) and not got.exact_at(8.0)
    other = from_buckets([(0, 2.0, 4.0, 5.0)], 5)
    assert all(le <= 1.0 or math.isinf(le) for le, _ in align(got, other)[0])
    assert sample_values({"count": "120", "buckets": [[0, "1", "+Inf", "20"], [0, "0.5", "1", "100"]]}) is None


@pytest.mark.parametrize("order", [1, -1])
def test_a_bucket_wider_than_the_grid_cell_is_custom(order: int) -> None:
    """A custom bucket spanning grid bounds, beside buckets that look standard: grid bounds inside it
    would carry counts that are not known, so only the own bounds are exact."""
    rows = [(0, 1.0, 2 ** (1 / 8), 5.0), (0, 0.3, 1.0, 10.0)][::order]
    got = from_buckets(rows, 15)
    assert got.schema is None and not got.exact_at(0.5) and not got.exact_at(2 ** (-1 / 8))
    # the cell (2^(-14/8), 2^(-13/8)] = (0.297, 0.324] straddles a zero threshold of 0.3: clipped to (0.3, 0.324]
    clipped = from_buckets([(3, -0.3, 0.3, 4.0), (0, 0.3, 2 ** (-13 / 8), 10.0), (0, 0.5, 2 ** (-7 / 8), 5.0)], 19)
    assert clipped.schema == 3 and clipped.count_at(0.5) == 14 and clipped.exact_at(0.5)


def test_prediction_cells_keep_apart_where_either_arm_has_mass() -> None:
    """Newcomer's case: cut at the stable arm's quantiles alone, stable's two point masses (0.85 and
    0.99) made 2 cells, and a canary that moved one of them to 0.30, where stable has 4% spread
    thin, passed at PSI 0. With stable's central range on a fixed grid as well it fails, as on
    classic buckets."""
    from canary.model import Outcome

    rng = random.Random(17)

    def arm(n: int, moved: bool) -> list[float]:
        out = []
        for _ in range(n):
            u = rng.random()
            out.append(rng.uniform(0.05, 0.9) if u < 0.04 else
                       (0.30 if moved else 0.85) * math.exp(rng.gauss(0, 0.002)) if u < 0.52 else
                       0.99 * math.exp(rng.gauss(0, 0.001)))
        return out

    stable = arm(20000, False)
    for schema in (3, 4):
        for moved, expected in ((True, Outcome.FAIL), (False, Outcome.PASS)):
            outcome, reason = shift_outcome(stable, arm(2000, moved), schema)
            assert outcome == expected, (schema, moved, reason)


def test_a_zero_bucket_widened_between_snapshots_is_no_restart() -> None:
    """Third review: client_golang widens its zero bucket (NativeHistogramMaxZeroThreshold) by merging
    the buckets below the new threshold into it; their counts drop, and the series was taken for a
    restart (its whole history counted as the window). Prometheus merges them in the older sample
    before it looks for a reset; so does the snapshot."""
    from canary.metrics.native import sample_values, values_buckets, values_delta

    rng = random.Random(8)
    before = lognormal(rng, 3000, 0.05, 1.5)
    during = lognormal(rng, 500, 0.05, 1.5)
    narrow, wide = 2.0 ** -12, 2.0 ** -8
    base = sample_values(api_sample(before, 3, narrow))
    now = sample_values(api_sample(before + during, 3, wide))
    delta, reset = values_delta(now, base)
    assert not reset and values_buckets(delta).total == len(during)
    for le, c in values_buckets(delta).pairs[:-1]:
        assert le < wide or c == true_count(during, le), le


def test_a_tenth_of_the_canary_moved_where_stable_is_thin_fails() -> None:
    """Third review: stable bimodal (near 0.1 and 0.9), the canary the same but 10% of it at 0.5;
    on cells cut at quantiles alone the move shared a cell with stable's tails and passed (PSI
    0.14); with the fixed grid inside the central range it fails, as on classic 0.05 buckets."""
    from canary.model import Outcome

    rng = random.Random(23)

    def arm(n: int, moved: float) -> list[float]:
        return [0.5 * math.exp(rng.gauss(0, 0.02)) if rng.random() < moved else
                min(0.999, max(1e-4, rng.gauss(0.1 if rng.random() < 0.5 else 0.9, 0.04))) for _ in range(n)]

    stable = arm(20000, 0.0)
    for schema in (3, 4):
        for moved, expected in ((0.10, Outcome.FAIL), (0.0, Outcome.PASS)):
            outcome, reason = shift_outcome(stable, arm(2000, moved), schema)
            assert outcome == expected, (schema, moved, reason)


def test_a_canary_whose_observations_are_all_nan_fails_as_on_classic_buckets() -> None:
    """Third review: a model emitting NaN predictions exports a native histogram with a count and no
    bucket; it was inconclusive until the deadline (no shared bound), where classic buckets (NaN in
    +Inf) fail it at once. No finite observation means 0 at every finite bound, exactly."""
    from canary.model import Outcome

    rng = random.Random(4)
    stable_values = [rng.betavariate(2, 5) for _ in range(20000)]
    stable = from_buckets(buckets_of(stable_values, 3), len(stable_values))
    nan_canary = from_buckets([], 2000)
    assert nan_canary.exact_at(0.5) and nan_canary.count_at(0.5) == 0 and nan_canary.total == 2000
    pa, pb = align(stable, nan_canary)
    assert len(pa) > 10 and all(c == 0 for _, c in pb[:-1]) and pb[-1] == (math.inf, 2000)
    assert shift_outcome(stable, nan_canary)[0] == Outcome.FAIL

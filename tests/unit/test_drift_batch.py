"""compare()'s batched path against the per-feature functions of canary.drift.stats.

`compare` evaluates all features of a profile in one numpy pass (`_compare_batched`, built on
`stats.*_rows` / `*_drift_many`) and keeps the per-feature path (`_compare_each`, built on
`numeric_drift` / `categorical_drift`) as its definition and for input the batched path refuses.
Here both run on randomised profiles and live data, edge cases included, and every per-feature
statistic must agree within 1e-12 relative; errors must be the same errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from canary.drift import compare as C
from canary.drift import stats as D
from canary.errors import ConfigError

REL = 1e-12


def _close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=REL, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))


def assert_same(batched: list[D.FeatureDrift], each: list[D.FeatureDrift]) -> None:
    assert [f.feature for f in batched] == [f.feature for f in each]
    for b, e in zip(batched, each):
        assert (b.kind, b.test, b.threshold, b.note) == (e.kind, e.test, e.threshold, e.note), (b, e)
        for field in ("value", "psi", "n_reference", "n_current"):
            assert _close(getattr(b, field), getattr(e, field)), (field, b, e)
        assert (b.p_value is None) == (e.p_value is None) and (b.p_value is None or _close(b.p_value, e.p_value)), (b, e)
        # the verdict may only differ for a statistic within rounding of its threshold
        assert b.drifted == e.drifted or math.isclose(e.value, e.threshold, rel_tol=1e-9) or \
            (e.p_value is not None and math.isclose(e.p_value, D.P_THRESHOLD, rel_tol=1e-9)), (b, e)


# -- random profiles and live data -------------------------------------------------------------------

def _numeric(rng: np.random.Generator, *, k: int, n_ref: int, kind: str) -> tuple[dict[str, Any], np.ndarray]:
    """A numeric feature's profile entry (as `canary baseline capture` writes it) and its bucket shares."""
    shares = rng.dirichlet(np.full(k, 2.0))
    counts = rng.multinomial(n_ref, shares)
    bounds = np.cumsum(rng.gamma(2.0, 1.0, k - 1)) + rng.normal(0, 10)
    lo, hi = float(bounds[0] - rng.gamma(1.0)), float(bounds[-1] + rng.gamma(1.0))
    # a NaN std is refused by validate_profile, and so is one above the range or a 0 over a spread (decision 160):
    # the constant path's profile says min == max (its counts, spread over buckets, are read all the same)
    std = min(float(rng.gamma(2.0, 1.0)), (hi - lo) / 2)
    if kind == "constant":
        std, lo, hi = 0.0, float(bounds.mean()), float(bounds.mean())
    f: dict[str, Any] = {"type": "numeric", "bounds": bounds.tolist(), "counts": counts.tolist(),
                         "min": lo, "max": hi, "mean": float(bounds.mean()), "std": std,
                         "n_unique": int(rng.integers(2, 6)) if kind == "few_values" else n_ref,
                         "missing": int(rng.integers(0, n_ref // 10 + 1))}
    if rng.random() < 0.7:
        f["quantiles"] = {"0.001": float(bounds[0] - rng.gamma(0.5)), "0.999": float(bounds[-1] + rng.gamma(0.5))}
    if rng.random() < 0.1:
        del f["mean"]
    return f, shares


def _categorical(rng: np.random.Generator, *, n_cat: int, n_ref: int, other: bool) -> tuple[dict[str, Any], np.ndarray]:
    shares = rng.dirichlet(np.full(n_cat + 1, 1.5))
    counts = rng.multinomial(n_ref, shares)
    if not other:
        counts[0] += n_ref - counts[:-1].sum()  # a reference of n_ref rows (capture refuses an empty column)
    cats = {f"v{j}": int(c) for j, c in enumerate(counts[:-1])}
    return {"type": "categorical", "categories": cats, "other": int(counts[-1]) if other else 0,
            "missing": int(rng.integers(0, 50))}, shares


def _live_numbers(rng: np.random.Generator, n: int, shares: np.ndarray, *, floats: bool, shift: float) -> list[Any]:
    p = np.abs(shares + rng.normal(0, shift, len(shares)))
    c = rng.multinomial(n, p / p.sum())
    if floats:  # increase() over a window: extrapolated, not whole numbers
        return (c * rng.uniform(0.9, 1.1, len(c))).tolist()
    return c.tolist()


def random_case(seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    feats: dict[str, Any] = {}
    live: dict[str, Any] = {}
    for j in range(int(rng.integers(1, 40))):
        name = f"f{j:02d}"
        n_ref = int(rng.choice([3, 40, 500, 1_000, 1_001, 5_000, 50_000]))
        n_live = int(rng.choice([0, 5, 99, 100, 101, 2_000, 36_000]))
        floats, shift = rng.random() < 0.4, float(rng.choice([0.0, 0.01, 0.1, 0.5]))
        if rng.random() < 0.6:
            kind = rng.choice(["normal"] * 6 + ["constant", "few_values"])
            k = int(rng.choice([2, 5, 20, 20, 20, 26]))
            f, shares = _numeric(rng, k=k, n_ref=n_ref, kind=str(kind))
            cur: dict[str, Any] = {"counts": _live_numbers(rng, n_live, shares, floats=floats, shift=shift)}
            if rng.random() < 0.7 and "mean" in f:
                # the live mean: near the reference's, or far beyond the buckets (mass past the last bound)
                gap = float(rng.choice([0.0, 0.01, 5.0, 1e3])) * (f["std"] if f["std"] > 0 else 1.0)
                cur["sum"] = (f["mean"] + gap) * sum(cur["counts"])
        else:
            n_cat = int(rng.choice([1, 2, 3, 5, 30, 100]))
            f, shares = _categorical(rng, n_cat=n_cat, n_ref=n_ref, other=bool(rng.random() < 0.5))
            c = _live_numbers(rng, n_live, shares, floats=floats, shift=shift)
            cats = {f"v{i}": v for i, v in enumerate(c[:-1]) if rng.random() < 0.9}  # some categories unseen live
            if rng.random() < 0.3:  # values the profile never saw (new, or folded into "other")
                cats.update({f"new{i}": float(rng.integers(0, 500)) for i in range(int(rng.integers(1, 4)))})
            cur = {"categories": cats}
            if rng.random() < 0.7:
                cur["other"] = c[-1]
        if rng.random() < 0.5:
            cur["missing"] = int(rng.integers(0, n_live + 1))
        feats[name] = f
        if rng.random() < 0.9:
            live[name] = cur
    return {"format": 1, "model": "m", "version": "v", "features": feats}, live


@pytest.mark.parametrize("seed", range(60))
def test_batched_compare_equals_the_per_feature_path(seed):
    prof, live = random_case(seed)
    names = [f for f in prof["features"] if f in live]
    batched = C._compare_batched(prof["features"], live, names, C.MIN_LIVE)  # raises if it refused the input
    assert_same(batched, C._compare_each(prof["features"], live, names, C.MIN_LIVE))
    got = C.compare(prof, live)  # what compare() returns is the batched path's answer
    assert_same(list(got.features), batched)
    assert got.missing == tuple(_missing_each(prof["features"], live))


def _missing_each(prof: dict[str, Any], live: dict[str, Any]) -> list[D.MissingShift]:
    """compare._missing as it was, every count through `_nonneg` (its fast sums must equal these)."""
    out = []
    for name, cur in live.items():
        ref = prof.get(name)
        if ref is None or "missing" not in cur:
            continue
        miss = C._nonneg([cur["missing"]], name)[0]
        present = (float(sum(C._nonneg(cur.get("counts", []), name))) if ref["type"] == "numeric" else
                   float(sum(C._nonneg(list((cur.get("categories") or {}).values()), name)))
                   + float(C._nonneg([cur.get("other", 0)], name)[0]))
        if miss + present < C.MIN_LIVE:
            continue
        ref_present = float(sum(ref["counts"])) if ref["type"] == "numeric" else \
            float(sum(ref["categories"].values())) + float(ref.get("other", 0))
        out.append(D.missing_shift(name, ref_missing=float(ref.get("missing", 0)), ref_present=ref_present,
                                   live_missing=miss, live_present=present))
    return out


def test_the_random_cases_reach_every_branch():
    seen, notes = set(), set()
    for seed in range(60):
        prof, live = random_case(seed)
        for f in C.compare(prof, live).features:
            seen.add((f.kind, f.test))
            notes.add(f.note)
    assert seen >= {("numeric", "wasserstein"), ("numeric", "ks"), ("numeric", "jensenshannon"),
                    ("numeric", "chisquare"), ("categorical", "jensenshannon"), ("categorical", "chisquare"),
                    ("categorical", "z")}, seen
    assert {"constant in the reference", "a category absent from the reference",
            "the means' gap exceeds the binned distance (mass beyond the buckets)", ""} <= notes, notes


def test_named_features_duplicates_and_min_live():
    prof, live = random_case(7)
    names = list(prof["features"])[:5]
    names = names + names[:2]
    for min_live in (0.0, 1.0, 100.0, 5_000.0):
        assert_same(C._compare_batched(prof["features"], live, [n for n in names if n in live], min_live),
                    C._compare_each(prof["features"], live, [n for n in names if n in live], min_live))


# -- edge cases, one by one ----------------------------------------------------------------------------

def _prof(**features: Any) -> dict[str, Any]:
    return {"format": 1, "model": "m", "version": "v", "features": features}


NUM = {"type": "numeric", "bounds": [1.0, 2.0, 3.0], "counts": [500, 1500, 2000, 1000], "min": 0.0, "max": 4.0,
       "mean": 2.2, "std": 0.9, "n_unique": 5000, "missing": 10}
CAT = {"type": "categorical", "categories": {"a": 3000, "b": 1500, "c": 500}, "other": 0, "missing": 0}


@pytest.mark.parametrize(("features", "live"), [
    ({"x": {**NUM, "std": 0.0}}, {"x": {"counts": [500, 1500, 2000, 1000]}}),  # constant, same shares: 0
    ({"x": {**NUM, "std": 0.0}}, {"x": {"counts": [0, 0, 5000, 0]}}),  # constant, moved: inf
    ({"x": {**NUM, "n_unique": 4}}, {"x": {"counts": [400, 1600, 2000, 1000]}}),  # few values: categories
    ({"x": {**NUM, "n_unique": 4, "counts": [50, 150, 200, 100]}}, {"x": {"counts": [40, 160, 0, 100]}}),
    ({"x": NUM}, {"x": {"counts": [0, 0, 0, 99]}}),  # below MIN_LIVE: left out
    ({"x": NUM}, {"x": {"counts": [0, 0, 0, 0], "missing": 500}}),  # empty, all missing
    ({"x": NUM}, {"x": {"counts": [0.0, 0.0, 0.0, 100.0], "sum": 1e6}}),  # mass far beyond the last bucket
    ({"x": {**NUM, "counts": [0, 0, 0, 0]}}, {"x": {"counts": [10, 20, 30, 40]}}),  # an empty reference
    ({"c": CAT}, {"c": {"categories": {"a": 100, "z": 50}}}),  # absent from the reference, other 0
    ({"c": {**CAT, "other": 10}}, {"c": {"categories": {"a": 100, "z": 50}, "other": 3}}),  # folded into other
    ({"c": {**CAT, "categories": {"a": 300, "b": 200}}}, {"c": {"categories": {"a": 100, "b": 200}}}),  # z-test
    ({"c": {**CAT, "categories": {"a": 300}}}, {"c": {"categories": {"a": 150}}}),  # a single category
    ({"c": {**CAT, "categories": {"a": 0, "b": 0}}}, {"c": {"categories": {"a": 150, "b": 1}}}),  # nothing seen
    ({"c": CAT}, {"c": {"categories": {}, "other": 0, "missing": 200}}),
    ({"x": NUM, "c": CAT}, {"x": {"counts": [500, 1500, 2000, 1000], "sum": "n/a"}, "c": {"categories": {"b": 1e9}}}),
])
def test_edge_cases_agree(features, live):
    names = [f for f in features if f in live]
    assert_same(C._compare_batched(features, live, names, C.MIN_LIVE),
                C._compare_each(features, live, names, C.MIN_LIVE))


@pytest.mark.parametrize("live", [
    {"x": {"counts": [True, False, True, True]}},  # booleans
    {"x": {"counts": [1, True, 500, 500]}},  # a boolean among numbers (numpy reads the row as ints)
    {"x": {"counts": (np.array([100, 200, 300, 400]))}},  # an array, not a list
    {"x": {"counts": [np.int32(100), 200, 300, 400]}},
    {"x": {"counts": ["5"] * 4}},
    {"x": {"counts": [1, 2, None, 4]}},
    {"x": {"counts": [1, 2, -3, 400]}},
    {"x": {"counts": [1, 2, math.inf, 400]}},
    {"x": {"counts": [1, 2, 3]}},
    {"x": {"counts": [[1], [2], [3], [4]]}},
    {"x": {"counts": [2**70, 1, 1, 1]}},
    {"x": [1, 2, 3, 4]},
    {"x": {"categories": {"a": 1}}},
    {"x": {"counts": [100, 200, 300, 400]}, "c": {"categories": {"a": True, "b": 500}}},
    {"x": {"counts": [100, 200, 300, 400]}, "c": {"categories": {"a": -1.0, "b": 500}}},
    {"x": {"counts": [100, 200, 300, 400]}, "c": {"categories": {"a": 100}, "other": "3"}},
    {"x": {"counts": [100, 200, 300, 400]}, "c": {"categories": {"a": np.float32(100.5)}, "other": 300}},
    {"x": {"counts": [100, 200, 300, 400]}, "c": {"counts": [1, 2]}},
    {"c": {"categories": {"a": 100, "b": 400}}, "x": {"counts": [1, 2, -3, 400]}},  # two faults: the first named
])
def test_unusual_input_gets_the_per_feature_answer_or_error(live):
    prof = _prof(x=NUM, c=CAT)
    try:
        expected: Any = C.dataset_drift(C._compare_each(prof["features"], live, [f for f in prof["features"]
                                                                                   if f in live], C.MIN_LIVE))
    except ConfigError as exc:
        with pytest.raises(ConfigError, match=re.escape(str(exc))):
            C.compare(prof, live)
        return
    got = C.compare(prof, live)
    assert_same(list(got.features), list(expected.features))


@pytest.mark.parametrize("missing", [10, 10.5, np.float32(10), True, -1, "3", None, math.nan])
def test_missing_counts_of_any_kind_get_the_per_feature_answer_or_error(missing):
    prof = _prof(x=NUM, c=CAT)
    live = {"x": {"counts": [100, 200, 300, 400], "missing": missing},
            "c": {"categories": {"a": 100, "b": np.int32(50)}, "other": 0, "missing": missing}}
    try:
        expected = _missing_each(prof["features"], live)
    except ConfigError as exc:
        with pytest.raises(ConfigError, match=re.escape(str(exc))):
            C.compare(prof, live)
        return
    assert list(C.compare(prof, live).missing) == expected


def test_a_feature_not_in_the_profile_is_named():
    with pytest.raises(ConfigError, match="feature 'nope' is not in the profile"):
        C.compare(_prof(x=NUM), {"x": {"counts": [1, 2, 3, 400]}}, features=["x", "nope"])


# -- the row functions against their per-feature counterparts ------------------------------------------

def test_row_functions_equal_the_per_feature_ones():
    rng = np.random.default_rng(42)
    for k in (2, 3, 8, 20, 26, 101):
        ref = rng.multinomial(5_000, rng.dirichlet(np.ones(k)), 30).astype(float)
        cur = rng.multinomial(3_000, rng.dirichlet(np.ones(k)), 30) * rng.uniform(0.5, 1.5, (30, k))
        cur[0] = ref[0]  # identical: every distance 0
        cur[1, : k // 2] = 0.0
        ref[2, -1] = 0.0
        edges = np.sort(rng.normal(0, 5, (30, k + 1)), axis=1)
        psi, js = D.psi_rows(ref, cur), D.js_rows(ref, cur)
        d, p = D.ks_rows(ref, cur)
        w = D.wasserstein_rows(edges, ref, cur)
        for i in range(30):
            assert _close(psi[i], D.psi(ref[i], cur[i]))
            assert _close(js[i], D.js_distance(ref[i], cur[i]))
            di, pi = D.ks_binned(ref[i], cur[i])
            assert _close(d[i], di) and _close(p[i], pi)
            assert _close(w[i], D.wasserstein_binned(edges[i], ref[i], cur[i]))
    empty = np.zeros((1, 4))
    assert _close(D.psi_rows(empty, np.ones((1, 4)))[0], D.psi(empty[0], np.ones(4)))
    assert D.ks_rows(empty, np.ones((1, 4)))[1][0] == D.ks_binned(empty[0], np.ones(4))[1] == 1.0


def test_plain_input_never_takes_the_per_feature_path(monkeypatch):
    """What the exporter and Prometheus hand over (ints or floats) is batched, never silently refused."""
    def refuse(*_: Any) -> None:
        raise AssertionError("the batched path refused plain input")

    cases = [random_case(seed) for seed in range(10)]
    monkeypatch.setattr(C, "_compare_each", refuse)
    for prof, live in cases:
        C.compare(prof, live)

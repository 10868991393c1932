"""The faster judge (issue 9: a judgement <= 0.2 ms a check) decides exactly as before.

Three references, none of them a timing (benchmarks are scripts: scripts/bench_judge.py):

* judge_golden.json.gz: the verdicts (serialised, with the window evidence a look records) of
  `judge_corpus` looks 0-239, as the judge gave them before its list paths (canary/analysis of
  commit 70505b6). Compared field by field: strings and outcomes exactly, floats within 1e-12
  relative (they were equal bit for bit when written). After a deliberate change of what the
  judge decides, rewrite it: `.venv/bin/python tests/unit/test_judge_speedup.py --write`.
* The array reference path: every look judged again with `buckets.usable` refusing every
  histogram (the latency check then runs on stats' and evidence's array functions, as it does
  for counts that are not finite) gives the same verdict.
* Function by function on random inputs: `buckets.Arm` and `buckets.pick_pair` against the array
  functions they replace; shift's list statistics against `psi`, `js_distance`, `merge_sparse`
  and np.sum; scipy.special.cython_special's scalar functions against the ufuncs.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # judge_corpus, a helper beside this file

import judge_corpus as corpus  # noqa: E402

from canary.analysis import buckets, evidence, shift, stats  # noqa: E402
from canary.model import Histogram  # noqa: E402

GOLDEN = Path(__file__).with_name("judge_golden.json.gz")
GOLDEN_LOOKS = 240
REL = 1e-12


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: floats beyond REL relative, anything else at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items, then {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= REL * max(abs(a), abs(b)):
            return []
        return [f"{path}: {a!r}, then {b!r}"]
    if type(a) is not type(b) or a != b:
        return [f"{path}: {a!r}, then {b!r}"]
    return []


def _record(seed: int) -> dict[str, Any]:
    """A look's verdict as JSON reads it back (tuples as lists, NaN kept)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN counts on the array path
        return json.loads(json.dumps(corpus.verdict_record(*corpus.look(seed))))


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(gzip.decompress(GOLDEN.read_bytes()))


def test_the_corpus_covers_every_check_kind_and_outcome(golden: dict[str, Any]) -> None:
    seen = {(r["kind"], r["outcome"]) for look in golden.values() for r in look["verdict"]["results"]}
    for kind in ("latency", "error_rate", "feature_missing", "prediction_shift", "feature_drift", "custom"):
        assert {(kind, "fail"), (kind, "inconclusive"), (kind, "error")} <= seen, kind
    assert {("latency", "pass"), ("error_rate", "pass"), ("custom", "pass")} <= seen
    assert any(look["evidence"] for look in golden.values())


@pytest.mark.parametrize("chunk", range(4))
def test_verdicts_equal_the_recorded_ones(golden: dict[str, Any], chunk: int) -> None:
    size = GOLDEN_LOOKS // 4
    for seed in range(chunk * size, (chunk + 1) * size):
        assert not _differences(golden[str(seed)], _record(seed)), (seed, _differences(golden[str(seed)],
                                                                                        _record(seed))[:5])


@pytest.mark.parametrize("chunk", range(3))
def test_the_list_path_equals_the_array_reference(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    seeds = range(1000 + chunk * 100, 1100 + chunk * 100)  # looks the golden file does not hold
    fast = {seed: _record(seed) for seed in seeds}
    monkeypatch.setattr(buckets, "usable", lambda counts: False)
    for seed in seeds:
        assert not _differences(_record(seed), fast[seed]), (seed, _differences(_record(seed), fast[seed])[:5])


def _histograms(rng: random.Random, count: int) -> list[Histogram]:
    """Random cumulative histograms: lognormal on the corpus' layouts, or arbitrary cells with
    empty runs, fractional counts and an open +Inf bucket; only those `Arm` takes."""
    out: list[Histogram] = []
    while len(out) < count:
        layout = rng.choice(list(corpus.LAYOUTS.values()))
        n = rng.choice((1, 5, 30, 200, 1000, 5000, 20000))
        if rng.random() < 0.5:
            h = corpus._histogram(rng, layout, n, rng.choice((5.0, 50.0, 200.0)), rng.choice((0.2, 0.5, 1.0)))
        else:
            weights = [rng.choice((0.0, 0.0, 1.0, 3.0, 0.1)) for _ in range(len(layout) + 1)]
            weights[-1] = weights[-1] or 0.01
            per = corpus._draws(rng, n, [w / sum(weights) for w in weights])
            scale = rng.choice((1.0, 1.0, 1.37, 0.5))
            cum = np.cumsum([x * scale for x in per]).tolist()
            h = Histogram((*map(float, layout), math.inf), tuple(cum))
        if buckets.usable(h.counts):
            out.append(h)
    return out


def test_arm_equals_the_array_functions() -> None:
    rng = random.Random(7)
    for h in _histograms(rng, 1500):
        b, c = np.array(h.bounds), np.array(h.counts, float)
        q = rng.choice((0.5, 0.9, 0.95, 0.99))
        arm = buckets.Arm(h.bounds, h.counts, q)
        assert arm.n == int(stats._ints(c)[-1]) and arm.total == float(c[-1])
        est = stats.histogram_quantile(b, c, q)
        assert arm.estimate() == est or (math.isnan(est) and math.isnan(arm.estimate()))
        if arm.total > 0:
            assert arm.bucket() == evidence.quantile_bucket(b, c, q)
            for level in (1e-4, 0.005, 0.0126, 0.05, 0.3):
                assert arm.lower(level) == evidence.quantile_lower(b, c, q, level), (h, q, level)
                assert arm.upper(level) == evidence.quantile_upper(b, c, q, level), (h, q, level)
        for j in range(0, len(h.bounds) - 1, 7):
            k = stats._ints(c)
            assert arm.p_above(j) == float(stats.p_quantile_above(k[j:j + 1], int(k[-1]), q)[0])
            assert arm.p_at_most(j) == float(stats.p_quantile_at_most(k[j:j + 1], int(k[-1]), q)[0])


def test_pick_pair_equals_the_array_function() -> None:
    rng = random.Random(11)
    picked = coarse = 0
    for h in _histograms(rng, 2500):
        c = np.array(h.counts, float)
        k = stats._ints(c)
        if k[-1] <= 0:
            continue
        q, tol = rng.choice((0.5, 0.9, 0.95, 0.99)), rng.choice((0.0, 0.05, 0.1, 0.2, 0.5))
        arm = buckets.Arm(h.bounds, h.counts, q)
        want = stats.pick_pair(np.array(h.bounds[:-1]), k[:-1].astype(float), int(k[-1]), q=q, tol=tol)
        got = buckets.pick_pair(h.bounds[:-1], h.counts, arm.n, q=q, tol=tol)
        assert (got is None) == (want is None), (h, q, tol)
        if got is not None:  # the same bound; its numbers to the last bits numpy's log and sums allow
            assert got[0] == want[0] and _same(list(got[1:]), list(want[1:])), (h, q, tol, got, want)
        picked += want is not None
        coarse += want is not None and abs(math.log(want[2] / (1 - q))) > math.log(1.5)
    assert picked > 1500 and coarse > 50  # both searches ran: near the quantile, and every bound


def test_scalar_special_functions_equal_the_ufuncs() -> None:
    """scipy.special.cython_special, which the judge calls on single floats, gives the ufuncs' values."""
    from scipy import special
    from scipy.special import cython_special

    rng = random.Random(13)
    for _ in range(20000):
        n = rng.choice((1, 7, 150, 3000, 20000, 10 ** 6))
        k, q = rng.randint(-1, n + 1), rng.choice((0.5, 0.9, 0.95, 0.99, 1e-3))
        assert _same([cython_special.bdtr(k, n, q)], [float(special.bdtr(np.array([k]), n, q)[0])])
        assert _same([cython_special.bdtrc(k, n, q)], [float(special.bdtrc(np.array([k]), n, q)[0])])
        x = rng.choice((-1.0, 1.0)) * 10 ** rng.uniform(-3, 2.5)
        p = 10 ** -rng.uniform(0, 300)
        assert _same([cython_special.ndtr(x), cython_special.log_ndtr(x), cython_special.ndtri(p)],
                     [float(special.ndtr(x)), float(special.log_ndtr(x)), float(special.ndtri(p))])
        df = rng.randint(1, 40)
        assert _same([cython_special.chdtrc(df, abs(x))], [float(special.chdtrc(df, abs(x)))])


def _cells(rng: random.Random) -> list[float]:
    k = rng.choice((1, 2, 3, 7, 8, 9, 10, 16, 17, 40, 130, 300))
    cells = [rng.choice((0.0, 0.0, 1.0, 3.0, 17.0, 250.0, 4000.0)) * rng.choice((1.0, 1.0, 0.37)) for _ in range(k)]
    if rng.random() < 0.03:
        cells[rng.randrange(k)] = math.nan
    return cells


def test_sum_is_numpys() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        xs = [rng.uniform(-1, 1) * 10 ** rng.randint(-6, 6) for _ in range(rng.randint(0, 400))]
        assert shift._sum(xs) == float(np.sum(np.array(xs, float)))


def test_shift_statistics_on_lists_equal_the_array_ones() -> None:
    rng = random.Random(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3000):
            s = _cells(rng)
            c = [x * rng.choice((1.0, 0.05, 0.3)) + rng.choice((0.0, 0.0, 2.0)) for x in _cells(rng)[:len(s)]]
            c += [0.0] * (len(s) - len(c))
            sa, ca = np.array(s), np.array(c)
            if not (np.sum(sa) > 0 and np.sum(ca) > 0):
                continue
            ms, mc = shift._merge(s, c)
            ws, wc = shift.merge_sparse(sa, ca)
            assert _same(ms, ws.tolist()) and _same(mc, wc.tolist())
            assert _same([shift._psi(s, c)], [shift.psi(sa, ca)])
            assert _same([shift._jsd_bits(s, c)], [shift.js_distance(sa, ca) ** 2])
            if len(ms) >= 2:
                table = np.vstack([ws, wc])
                expected = table.sum(0) * table.sum(1)[:, None] / table.sum()
                chi2 = float(np.sum((table - expected) ** 2 / np.where(expected > 0, expected, 1.0)))
                assert _same([shift._chi2(ms, mc)], [chi2])


def _same(a: list[float], b: list[float]) -> bool:
    """Equal to 1e-12 relative, as the golden verdicts are compared: numpy's sums and logs take
    CPU-specific (SIMD) paths, so the array functions' last bits differ between machines."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y))
                                    or math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-300) for x, y in zip(a, b))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    looks = {str(seed): _record(seed) for seed in range(GOLDEN_LOOKS)}
    GOLDEN.write_bytes(gzip.compress(json.dumps(looks, sort_keys=True, separators=(",", ":")).encode(), 9, mtime=0))
    print(f"wrote {GOLDEN} ({GOLDEN_LOOKS} looks)")

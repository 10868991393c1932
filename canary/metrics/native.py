"""Prometheus native histograms, read as the cumulative buckets the judge compares (issue 9).

A native (sparse, exponential) histogram has no `_bucket` series: one sample
holds every bucket, and the HTTP API writes it as (Prometheus 2.40+)::

    {"metric": {...}, "histogram": [ts, {"count": "N", "sum": "S",
                                         "buckets": [[rule, "lo", "hi", "count"], ...]}]}

A standard schema s (-4..8) has the buckets (2^((i-1)/2^s), 2^(i/2^s)], so a
bucket's hi/lo is 2^(2^-s) and the schema is read back from the buckets
themselves. Only populated buckets are written: a bucket that is absent holds
no observation, so the count of observations <= ANY bound of the schema's grid
is known exactly (the count at the populated bound below it). That is what
this module relies on, and all it relies on:

- `native_buckets` turns one answer into (upper bound, cumulative count) pairs,
  the arm's grid filled between its first and last populated bucket (exact: an
  absent bucket is an empty one);
- `align` puts two arms on the bounds where BOTH counts are exact: a bound of
  either arm that is the other's own bound or a bound of the other's grid (a
  coarser schema's grid lies on a finer one's). A bound exact for one arm only
  (custom buckets, a zero bucket of another width) is dropped, never filled: no
  count is invented, as for classic buckets (`queries.normalise`);
- `combine` makes the pair the judge compares, in the per-rollout and the
  batched path alike.

Grid bounds are computed by one function (`grid_bound`, from the index at the
arm's schema) so that the same point of two arms' grids is the same float. A
grid with more than `MAX_BOUNDS` bounds over the populated range is read at a
coarser schema (every second bound dropped, still exact), so the judge's cost
stays that of a classic x1.1 layout. Two prediction histograms are compared on
cells read off the stable arm (`quantile_cells`), near the resolution PSI and
JS limits are set for. Bounds stay in the metric's unit; the caller scales them
(`queries.normalise(..., scale=)`).
"""

from __future__ import annotations

import bisect
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

from canary.errors import ConfigError, MetricsUnavailable, NoData

MAX_BOUNDS = 512  # finite grid bounds of one arm after filling
# a prediction histogram's cells (`quantile_cells`): PSI and JS grow with the resolution they are
# read at (a finer partition never lowers an f-divergence); their limits are set for 10-20 bins
SHIFT_CELLS = 20
SCHEMAS = range(-4, 9)  # Prometheus's standard exponential schemas


def grid_bound(index: int, schema: int) -> float:
    """2^(index / 2^schema): the upper bound of bucket `index` (index / 2^schema is an exact float,
    so the same point of two schemas' grids is the same float); the largest float past the top,
    as Prometheus bounds its last bucket."""
    try:
        return 2.0 ** (index / 2.0 ** schema)
    except OverflowError:
        return sys.float_info.max


def grid_index(bound: float, schema: int) -> int | None:
    """i with `bound` == 2^(i / 2^schema) (to 1e-9 of an index, the API's decimal rounding); None
    when `bound` is not on the grid."""
    if not (bound > 0 and math.isfinite(bound)):
        return None
    x = math.log2(bound) * 2.0 ** schema
    i = round(x)
    return i if abs(x - i) < 1e-9 * max(1.0, abs(x)) else None


def schema_of(lo: float, hi: float) -> int | None:
    """The standard schema of a positive bucket (lo, hi]; None when it has none (custom bounds)."""
    if not (0 < lo < hi and math.isfinite(hi)) or not math.isfinite(hi / lo):
        return None
    s = round(-math.log2(math.log2(hi / lo)))
    if s not in SCHEMAS or grid_index(hi, s) is None or grid_index(lo, s) is None:
        return None
    return s


@dataclass(frozen=True)
class NativeBuckets:
    """One arm's native histogram: `pairs` (bound, count at bound) ascending, ending at (+Inf, total);
    the count at a bound >= 0 is of observations <= it, at a negative bound of observations < it (a
    negative bucket is [lo, hi), Prometheus's boundary rule 1). `schema` is the standard schema its
    grid bounds lie on (None: only its own bounds are exact); `zero_hi` the upper edge of its
    populated zero bucket (0: none populated)."""

    pairs: tuple[tuple[float, float], ...]
    schema: int | None = None
    zero_hi: float = 0.0
    top: float = math.inf  # the lower edge of a populated bucket to +Inf: no grid bound above it is exact
    _own: frozenset[float] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_own", frozenset(le for le, _ in self.pairs))

    @property
    def total(self) -> float:
        return self.pairs[-1][1] if self.pairs else 0.0

    def exact_at(self, bound: float) -> bool:
        """Whether the count at `bound` is known exactly: an own bound, or a bound of the grid (either
        sign) outside the zero bucket (a bucket that is not written is empty); every bound when the
        histogram holds observations but no bucket (each one NaN: the Go client counts a NaN in the
        count and in no bucket, as a classic histogram counts it in +Inf only)."""
        if bound in self._own or math.isinf(bound):
            return True
        if len(self.pairs) == 1 and self.top == math.inf:
            return True  # no finite observation at all (all NaN): 0 at every finite bound
        return (self.schema is not None and abs(bound) >= self.zero_hi and bound <= self.top
                and grid_index(abs(bound), self.schema) is not None)

    def count_at(self, bound: float) -> float:
        """The count at `bound` (exact where `exact_at`): the count at the last own bound <= it."""
        i = bisect.bisect_right(self.pairs, (bound, math.inf))
        return self.pairs[i - 1][1] if i else 0.0

    def classic_pairs(self) -> list[tuple[float, float]]:
        """The pairs to compare with a classic arm (observations <= bound at every bound): without
        the negative bounds, whose counts are of observations < bound."""
        return [(le, c) for le, c in self.pairs if le >= 0]


def native_buckets(result: Any, query: str, check: str, arm: str) -> NativeBuckets:
    """The one native histogram of an instant answer (`sum(increase(base{...}[w]))`).

    Raises NoData for an empty answer or one without observations; ConfigError for a float series
    (the metric is no histogram); MetricsUnavailable for a malformed one (several series, buckets
    that do not parse)."""
    who = f"check {check!r}: the {arm} arm" if arm else f"check {check!r}"
    if not isinstance(result, list) or not result:
        raise NoData(f"{who} has no native histogram series; query: {query}")
    if len(result) == 1 and isinstance(result[0], dict) and "value" in result[0]:
        raise ConfigError(f"{who}: the metric is neither a classic histogram (no `_bucket` series) nor a native one "
                          f"(this query returns a float: a summary or a gauge under the histogram's name?); a "
                          f"latency or prediction check reads a histogram; query: {query}")
    if len(result) != 1 or not isinstance(result[0], dict) or "histogram" not in result[0]:
        raise MetricsUnavailable(f"{who}: expected one native histogram sample, got {len(result)} series; "
                                 f"query: {query}")
    try:
        h = result[0]["histogram"][1]
        count = float(h["count"])
        buckets = [(int(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in h.get("buckets") or ()]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise MetricsUnavailable(f"{who}: malformed native histogram answer; query: {query}") from exc
    got = from_buckets(buckets, count)
    if got.total <= 0:
        raise NoData(f"{who} has no observations in the window; query: {query}")
    return got


def _rows(buckets: Iterable[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The (lo, hi, count) buckets that hold observations: a finite, positive count, edges not NaN."""
    return [(lo, hi, c) for lo, hi, c in buckets if 0 < c < math.inf and not (math.isnan(lo) or math.isnan(hi))]


def _grid(rows: list[tuple[float, float, float]]) -> tuple[int, list[int | None]] | None:
    """The standard schema the regular buckets lie on, and each row's grid index (None for the zero
    bucket and buckets to +Inf): read from one whole bucket, then every bucket must lie inside one
    cell of that grid (its outer edge a grid bound, its inner edge no further in than the cell's: a
    bucket clipped at the zero threshold is narrower, never wider). None when one does not (custom
    buckets), or a bucket starts at -Inf (observations below every bound: its own bound only)."""
    s = next((x for lo, hi, _ in rows if (x := schema_of(lo, hi) if lo > 0 else
                                          schema_of(-hi, -lo) if hi < 0 and math.isfinite(lo) else None) is not None),
             None)
    if s is None:
        return None
    out: list[int | None] = []
    for lo, hi, _ in rows:
        if lo <= 0 <= hi or math.isinf(hi):
            out.append(None)
            continue
        if math.isinf(lo):
            return None
        outer, inner = (hi, lo) if lo > 0 else (-lo, -hi)
        i = grid_index(outer, s)
        if i is None or inner < grid_bound(i - 1, s) * (1 - 1e-12):
            return None
        out.append(i)
    return s, out


def from_buckets(buckets: Iterable[tuple[int, float, float, float]], count: float) -> NativeBuckets:
    """`NativeBuckets` from the API's (boundary rule, lo, hi, count) buckets and the sample's count
    (the +Inf total; NaN observations are counted there only). Pure.

    Each bucket's count is placed at its upper edge (a negative bucket's upper edge is open, so
    counts at negative bounds are of observations < bound). With a standard schema the grid is
    filled on each side of zero from just below the first populated bucket to the last (coarser,
    until at most `MAX_BOUNDS` bounds); the zero bucket's edge is kept; a bucket open to +Inf is
    counted in the total only, and no grid bound above its lower edge is exact."""
    rows = _rows((lo, hi, c) for _, lo, hi, c in buckets)
    grid = _grid(rows)
    fine = grid[0] if grid else None
    pos: dict[int, float] = {}  # populated positive buckets by index (upper edge 2^(i/2^s))
    neg: dict[int, float] = {}  # negative ones: bucket j is [-2^(j/2^s), -2^((j-1)/2^s))
    other: dict[float, float] = {}  # the zero bucket, custom buckets: by upper edge
    for n, (lo, hi, c) in enumerate(rows):
        i = grid[1][n] if grid else None
        if math.isinf(hi):
            continue
        into, key = (pos, i) if i is not None and lo > 0 else (neg, i) if i is not None else (other, hi)
        into[key] = into.get(key, 0.0) + c  # type: ignore[index]
    return assemble(fine, pos, neg, other, zero_hi=max((hi for lo, hi, _ in rows if lo <= 0 <= hi), default=0.0),
                    overflow=sum(c for _, hi, c in rows if math.isinf(hi)),
                    top=min((lo for lo, hi, _ in rows if math.isinf(hi)), default=math.inf), count=count)


def assemble(fine: int | None, pos: dict[int, float], neg: dict[int, float], other: dict[float, float], *,
             zero_hi: float, overflow: float, top: float, count: float) -> NativeBuckets:
    """`NativeBuckets` from bucket counts by grid index at schema `fine` (`pos`, `neg`), counts by
    upper edge (`other`: the zero bucket, custom buckets), the count in a bucket to +Inf
    (`overflow`, above `top`) and the sample's count. See `from_buckets`."""
    per = dict(other)
    for i, c in pos.items():
        b = grid_bound(i, fine)  # type: ignore[arg-type]  # one float per grid point
        per[b] = per.get(b, 0.0) + c
    for j, c in neg.items():
        b = -grid_bound(j - 1, fine)  # type: ignore[arg-type]
        per[b] = per.get(b, 0.0) + c
    own = sorted(per)
    cumulative, running = [], 0.0
    for le in own:
        running += per[le]
        cumulative.append(running)
    keep = set(own)
    schema = fine
    if fine is not None and (pos or neg):
        s = fine
        while _span(list(pos), list(neg), 2 ** (fine - s)) > MAX_BOUNDS and s > SCHEMAS[0]:
            s -= 1
        step = 2 ** (fine - s)
        keep = set(other)
        # (never inside the zero bucket: a bucket clipped at its threshold starts below the grid)
        if pos:
            keep |= {b for i in range((min(pos) - 1) // step, -(-max(pos) // step) + 1) if (b := grid_bound(i, s)) >= zero_hi}
        if neg:
            keep |= {-b for k in range((min(neg) - 1) // step, -(-max(neg) // step) + 1) if (b := grid_bound(k, s)) >= zero_hi}
        schema = s
    pairs = [(le, _count_at(own, cumulative, le)) for le in sorted(keep) if le <= top]
    pairs.append((math.inf, max(running + overflow, count) if math.isfinite(count) else running + overflow))
    return NativeBuckets(tuple(pairs), schema, zero_hi, top)


def _span(pos: list[int], neg: list[int], step: int) -> int:
    """Grid bounds filled at `step` fine indices per coarse one, both sides of zero."""
    return sum(-(-max(x) // step) - (min(x) - 1) // step + 1 for x in (pos, neg) if x)


def _count_at(bounds: list[float], cumulative: list[float], le: float) -> float:
    i = bisect.bisect_right(bounds, le)
    return cumulative[i - 1] if i else 0.0


def align(a: NativeBuckets, b: NativeBuckets) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Both arms' (bound, count) pairs on the bounds where both counts are exact, and +Inf."""
    bounds = sorted(le for le in {x for x, _ in a.pairs} | {x for x, _ in b.pairs} if a.exact_at(le) and b.exact_at(le))
    return [(le, a.count_at(le)) for le in bounds], [(le, b.count_at(le)) for le in bounds]


Arm = Any  # one arm's data for `combine`: NativeBuckets, a classic arm (pairs or a Histogram), or NoData


def combine(stable: Arm, canary: Arm, *, check: str, cells: int = 0) -> tuple[Arm, Arm]:
    """The two arms as the judge compares them: two native arms on the bounds where both counts are
    exact (`align`; with `cells`, a prediction check's, on `quantile_cells`); one native arm and one
    classic arm not compared bound for bound (the stable arm becomes `mixed_forms`); a native arm
    on its own as its `classic_pairs`. A classic arm and NoData pass through as they are."""
    if isinstance(stable, NativeBuckets) and isinstance(canary, NativeBuckets):
        a, b = align(stable, canary)
        return quantile_cells(a, b, cells) if cells else (a, b)
    native = [isinstance(x, NativeBuckets) for x in (stable, canary)]
    if any(native) and not any(isinstance(x, NoData) for x in (stable, canary)):
        stable = mixed_forms(check, "stable" if native[0] else "canary")
    return stable.classic_pairs() if isinstance(stable, NativeBuckets) else stable, \
        canary.classic_pairs() if isinstance(canary, NativeBuckets) else canary


def mixed_forms(check: str, native_arm: str) -> NoData:
    """Why the stable arm is left out when one arm is a native histogram and the other classic: the
    two forms share only the bounds they happen to have (often none, or a power of 2 or two), too
    few to compare a quantile or a distribution on; limits on the canary alone are still judged."""
    classic_arm = "stable" if native_arm == "canary" else "canary"
    return NoData(f"check {check!r}: the {native_arm} arm is a Prometheus native histogram and the {classic_arm} "
                  "arm classic `_bucket` series; the two are not compared bound for bound (export both forms while "
                  "switching), so the stable arm is left out and only limits on the canary alone are judged")


def quantile_cells(stable: list[tuple[float, float]], canary: list[tuple[float, float]], cells: int = SHIFT_CELLS,
                   *, grid_cells: int = 2 * SHIFT_CELLS, central: float = 0.005
                   ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Two aligned arms (`align`) on the cells a prediction check compares, all read off the stable
    (reference) arm, so that given it the cells are fixed and the canary's counts in them are the
    multinomial the tests assume (cuts that moved with the canary's own data let up to 34% of
    canaries at the PSI limit pass at a 5% level): cut at the bounds nearest above stable's
    k/`cells` quantiles, and at every bound of the finest standard schema with at most
    `grid_cells` bounds inside stable's central range [`central`, 1 - `central`]. The grid keeps
    apart what quantile cuts alone merge: a region where stable has little mass (reviewers' cases:
    a canary moving 10% or half of its mass there passed at PSI 0.14 and 0); the range is the
    central one so that a few outliers (scores down to 1e-10) do not coarsen it. A subset of exact
    bounds, so every count stays exact; at most `cells` + `grid_cells` cells, near the 10-20 bins
    PSI and JS limits are set for, not the hundreds a native grid has (a finer partition never
    lowers an f-divergence)."""
    n_s, n_c = (stable[-1][1] if stable else 0.0), (canary[-1][1] if canary else 0.0)
    last = len(stable) - 1
    if last <= cells or n_s <= 0 or n_c <= 0:
        return stable, canary
    shares = [s / n_s for _, s in stable[:last]]  # the reference arm's: the cells are fixed given stable
    keep: set[int] = {last}
    k = 1
    for i, share in enumerate(shares):
        while k < cells and share >= k / cells:
            keep.add(i)
            k += 1
    inside = [i for i, share in enumerate(shares) if central <= share <= 1 - central]
    for schema in range(SCHEMAS[-1], SCHEMAS[0] - 1, -1):
        on = [i for i in inside if grid_index(abs(stable[i][0]), schema) is not None]
        if len(on) <= grid_cells:
            keep.update(on)
            break
    cut = sorted(keep)
    return [stable[i] for i in cut], [canary[i] for i in cut]


# -- a native sample in a batched snapshot ------------------------------------------------------
#
# The controller's snapshot keeps each series' CUMULATIVE counters and subtracts the step-start
# snapshot (`delta`). A native series is kept by bucket INDEX, not bound: {"s": schema, "zt": zero
# threshold, "z": zero-bucket count, "c": count, "p<i>": positive bucket i, "n<i>": negative bucket
# i}. Two samples of one series (or two series) at different schemas are compared at the coarser
# one, bucket i of schema s holding buckets 2^d (i-1)+1 .. 2^d i of schema s+d: summing them is
# exact, so a subtraction or a sum never needs a count at a bound one side lacks.

CUSTOM = "x"  # the values of a series the snapshot cannot subtract exactly: read per rollout


def sample_values(h: Any) -> dict[str, float] | None:
    """A native sample (the API's `histogram` object) as a snapshot's values; None when its buckets
    are no standard schema's (custom buckets, a populated bucket to +-Inf): such a series is read
    per rollout. A sample without regular buckets has no "s" (it says nothing of its schema: an empty
    histogram, or zeros only). Raises ValueError, KeyError, TypeError on a malformed sample."""
    count = float(h["count"])
    rows = _rows((float(b[1]), float(b[2]), float(b[3])) for b in h.get("buckets") or ())
    if any(math.isinf(lo) or math.isinf(hi) for lo, hi, _ in rows):
        return None  # observations beyond every finite bound: counts above it are not known by index
    grid = _grid(rows)
    if grid is None and any(lo > 0 or hi < 0 for lo, hi, _ in rows):
        return None
    out: dict[str, float] = {"zt": 0.0, "z": 0.0, "c": count if math.isfinite(count) else 0.0}
    if grid is not None:
        out["s"] = float(grid[0])
    for (lo, hi, c), i in zip(rows, grid[1] if grid else [None] * len(rows)):
        if i is None:  # the zero bucket [-zt, zt]
            out["zt"], out["z"] = max(out["zt"], hi), out["z"] + c
            continue
        key = f"{'p' if lo > 0 else 'n'}{i}"
        out[key] = out.get(key, 0.0) + c
    return out


def _schema_of(vals: Any) -> int | None:
    """A snapshot value's schema; None when it has no regular bucket."""
    s = vals.get("s")
    return None if s is None else int(s)


def _coarsen(vals: Any, schema: int) -> dict[str, float]:
    """Per-bucket counts of `vals` at `schema` (not finer than its own): {"p<i>"|"n<i>": count}."""
    own = _schema_of(vals)
    d = 0 if own is None else own - schema
    out: dict[str, float] = {}
    for key, c in vals.items():
        if key[0] in "pn":
            i = int(key[1:])
            k = f"{key[0]}{-((-i) >> d)}"  # ceil(i / 2^d): the coarse bucket holding fine bucket i
            out[k] = out.get(k, 0.0) + c
    return out


def _zero(parts: list[Any]) -> float | None:
    """The zero threshold several samples share (their zero buckets merge into one): the one of those
    whose zero bucket holds observations (an empty bucket is not written, so an empty zero bucket's
    width is unknown). None when two differ, or when a sample whose zero bucket is empty has a
    regular bucket straddling that threshold (its observations below the threshold could not be
    told apart): the sum would need a count no sample gives."""
    zts = {p["zt"] for p in parts if p["z"] > 0}
    if len(zts) > 1:
        return None
    zt = zts.pop() if zts else 0.0
    for p in parts:
        if p["z"] > 0 or _schema_of(p) is None:
            continue  # its own lowest bucket may be clipped at zt: (zt, hi], exact
        for key in p:
            if key[0] in "pn" and p[key] > 0 and grid_bound(int(key[1:]) - 1, _schema_of(p)) < zt:  # type: ignore[arg-type]
                return None
    return zt


def _coarsest(parts: list[Any]) -> int | None:
    schemas = [s for p in parts if (s := _schema_of(p)) is not None]
    return min(schemas) if schemas else None


def values_delta(now: Any, base: Any) -> tuple[dict[str, float], bool] | None:
    """One series' counts between two snapshots, at the coarser of their schemas, and whether it
    restarted: a count went down, or the schema went up (Prometheus's own reset rule: a client
    lowers its resolution while it runs and comes back at its configured one after a restart). A
    restarted series counts its current values, as `increase()` counts across a reset. `base`
    empty: born in the window. None when they share no exact layout (`_zero`): the check is then
    read per rollout."""
    if not base:
        return dict(now), False
    if now["zt"] > base["zt"] and now["z"] > 0:
        base = _widen_zero(base, now["zt"])  # as Prometheus does before it looks for a reset
    s_now, s_base = _schema_of(now), _schema_of(base)
    grew = s_now is not None and s_base is not None and s_now > s_base
    s = _coarsest([now, base])
    a, b = (_coarsen(now, s), _coarsen(base, s)) if s is not None else ({}, {})
    if grew or now["c"] < base["c"] or now["z"] < base["z"] or any(a.get(k, 0.0) < v for k, v in b.items()):
        return dict(now), True
    zt = _zero([now, base])
    if zt is None:
        return None
    out = {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) > 0}
    out.update({"zt": zt, "z": now["z"] - base["z"], "c": now["c"] - base["c"]})
    if s is not None:
        out["s"] = float(s)
    return out, False


def _widen_zero(vals: Any, zt: float) -> dict[str, float]:
    """`vals` with its zero bucket widened to `zt`: every bucket wholly inside [-zt, zt] merged into
    it (a client that widens its zero bucket does this to its own counts; Prometheus's reset
    detection does it to the older sample, so that the merge is not taken for a restart)."""
    s = _schema_of(vals)
    out = {k: v for k, v in vals.items() if k[0] not in "pn"}
    out["zt"] = zt
    for key, c in vals.items():
        if key[0] in "pn":
            if s is not None and grid_bound(int(key[1:]), s) <= zt:
                out["z"] += c
            else:
                out[key] = c
    return out


def values_sum(parts: list[dict[str, float]]) -> dict[str, float] | None:
    """Several series' counts as one, at the coarsest schema; None when they share no exact layout."""
    zt = _zero(parts) if parts else 0.0
    if zt is None:
        return None
    s = _coarsest(parts)
    out: dict[str, float] = {"zt": zt, "z": 0.0, "c": 0.0}
    if s is not None:
        out["s"] = float(s)
    for p in parts:
        out["z"], out["c"] = out["z"] + p["z"], out["c"] + p["c"]
        if s is not None:
            for k, v in _coarsen(p, s).items():
                out[k] = out.get(k, 0.0) + v
    return out


def values_buckets(vals: Any) -> NativeBuckets:
    """Counts kept by index (`sample_values`, `values_delta`, `values_sum`) as `NativeBuckets`."""
    pos: dict[int, float] = {}
    neg: dict[int, float] = {}
    for key, c in vals.items():
        if key[0] in "pn" and c > 0:
            (pos if key[0] == "p" else neg)[int(key[1:])] = c
    other = {vals["zt"]: vals["z"]} if vals["z"] > 0 else {}
    return assemble(_schema_of(vals), pos, neg, other, zero_hi=vals["zt"] if vals["z"] > 0 else 0.0,
                    overflow=0.0, top=math.inf, count=vals["c"])


INF_ONLY_HINT = ("only a +Inf bucket, so no quantile can be read from it: a histogram exported as a native one only, "
                 "scraped by a Prometheus that does not ingest native histograms (2.40+: "
                 "--enable-feature=native-histograms; 3.9+: scrape_native_histograms: true), or one without buckets")


def observed(pairs: list[tuple[float, float]]) -> bool:
    """Whether classic (le, count) pairs are a histogram with observations: a bound below +Inf and a
    count above 0. Decision 51's ghost of an empty native histogram is not: +Inf alone, or, from a
    client exporting both forms, every bound at 0."""
    return not inf_only(pairs) and any(c > 0 for _, c in pairs)


def inf_only(pairs: Iterable[tuple[float, float]]) -> bool:
    """Whether classic (le, count) pairs hold the +Inf bucket and nothing else."""
    les = {le for le, _ in pairs}
    return bool(les) and all(math.isinf(le) for le in les)

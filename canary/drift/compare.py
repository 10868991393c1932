"""A profile against live counts over the profile's own buckets -> per-feature drift (pure).

Live counts per feature (what `canary.drift.exporter` exports, or `canary drift
check --input` reads):

    {"<feature>": {"counts": [k + 1 per-bucket counts over the profile's bounds],      numeric
                   "sum": sum of the values (optional: the live mean bounds the distance from below),
                   "sum_n": how many values "sum" is over (optional, default the counts' total; when
                            given, the mean is read only if it is at least MIN_LIVE)}
                | {"categories": {"value": count, ...}}                                categorical
     ... optional "missing": count in either: its missing rate is compared with training's
         (`DatasetDrift.missing`; reported beside the drift tests, not part of the share)}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.drift.stats import (
    CATEGORICAL_BELOW,
    OFF_SLACK,
    SMALL_REFERENCE,
    DatasetDrift,
    FeatureDrift,
    MissingShift,
    categorical_drift,
    categorical_drift_many,
    dataset_drift,
    missing_shift,
    numeric_drift,
    numeric_drift_many,
)
from canary.errors import ConfigError


MIN_LIVE = 100  # live observations a feature needs to be compared (5 requests are not a distribution)
# the most live values (present and missing) one feature's window may hold: float64 counts by ones up to 2^53, and a
# window holds far fewer (a million requests a second for a day is 1e11). Counts whose total overflowed (1.7e308 in
# each bucket: an --input whose numbers are no counts) made every test NaN, read as "no drift", exit 0 (decision 449)
MAX_LIVE = 2.0 ** 53

_NUMERIC_KEYS = ("bounds", "counts", "min", "max", "std", "n_unique")


def validate_profile(profile: Any, where: str = "profile") -> None:
    """ConfigError naming the field when `profile` is not what `canary baseline capture` writes: every
    field the comparison reads is checked here (a hand-edited `"mean": null` or `"quantiles": [1, 2]`
    must be a named error at load time, not a TypeError in the middle of a pass)."""
    what = "not a profile written by `canary baseline capture` (format 1)"
    if not isinstance(profile, Mapping):
        raise ConfigError(f"{where}: {what}: the top level must be a JSON object")
    if "format" not in profile:  # said only "not a profile": which field was wrong, the reader had to guess
        raise ConfigError(f"{where}: format: missing: {what} (its first key is `\"format\": 1`)")
    if profile["format"] != 1:
        raise ConfigError(f"{where}: format: {json.dumps(profile['format'])[:40]}: {what}; a profile of another "
                          "format was written by another release of canary: capture it again with this one")
    for key in ("model", "version"):
        if key not in profile or profile[key] in ("", None):
            raise ConfigError(f"{where}: {key}: missing (a profile names its model and version)")
        if not isinstance(profile[key], str):  # `"version": 1` read "missing", which it is not
            raise ConfigError(f"{where}: {key}: must be text (the exporter's {key} label), got "
                              f"{str(profile[key])[:40]!r}: write it in quotes")
    feats = profile.get("features")
    if not isinstance(feats, Mapping) or not feats:
        raise ConfigError(f"{where}: features: missing or empty")
    for name, f in feats.items():
        field = f"{where}: features.{name}"
        if not isinstance(f, Mapping) or f.get("type") not in ("numeric", "categorical"):
            raise ConfigError(f"{field}.type: must be numeric or categorical")
        if f["type"] == "numeric":
            for key in _NUMERIC_KEYS:
                if key not in f:
                    raise ConfigError(f"{field}.{key}: missing")
            if not isinstance(f["bounds"], list) or not isinstance(f["counts"], list) or \
                    len(f["counts"]) != len(f["bounds"]) + 1 or not f["bounds"]:
                raise ConfigError(f"{field}: counts must hold one more entry than bounds (the bucket above the last)")
            bounds = f["bounds"]
            for i, b in enumerate(bounds):
                if not _finite(b):
                    raise ConfigError(f"{field}.bounds[{i}]: must be a finite number, got {str(b)[:40]!r}")
                if i and not b > bounds[i - 1]:
                    raise ConfigError(f"{field}.bounds[{i}]: bounds must increase strictly ({bounds[i - 1]!r} "
                                      f"then {b!r})")
            _counts(f["counts"], f"{field}.counts")
            if not sum(f["counts"]) > 0:
                raise ConfigError(f"{field}.counts: all zero: an empty reference cannot be compared with (a "
                                  f"profile is captured from at least one present value per feature)")
            for key in ("min", "max", "std"):
                if not _finite(f[key]) or (key == "std" and f[key] < 0):
                    raise ConfigError(f"{field}.{key}: must be a finite number{' >= 0' if key == 'std' else ''}, "
                                      f"got {str(f[key])[:40]!r}")
            _spread_agrees(f, field)
            if isinstance(f["n_unique"], bool) or not isinstance(f["n_unique"], int) or f["n_unique"] < 1:
                raise ConfigError(f"{field}.n_unique: must be a whole number >= 1 (the distinct values captured), "
                                  f"got {str(f['n_unique'])[:40]!r}")
            if "mean" in f and not _finite(f["mean"]):
                raise ConfigError(f"{field}.mean: must be a finite number, got {str(f['mean'])[:40]!r}")
            qs = f.get("quantiles", {})
            if not isinstance(qs, Mapping):
                raise ConfigError(f"{field}.quantiles: must be an object of level: value, got {str(qs)[:40]!r}")
            for level, v in qs.items():
                if not _finite(v):
                    raise ConfigError(f"{field}.quantiles.{level}: must be a finite number, got {str(v)[:40]!r}")
            _quantiles_in_order(qs, f, field)
        else:
            cats = f.get("categories")
            if not isinstance(cats, Mapping):
                raise ConfigError(f"{field}.categories: missing")
            _counts(list(cats.values()), f"{field}.categories", names=list(cats))
            if "other" in f:
                _counts([f["other"]], f"{field}", names=["other"])
            if not sum(cats.values()) + f.get("other", 0) > 0:
                raise ConfigError(f"{field}.categories: all counts zero: an empty reference cannot be compared "
                                  f"with")
        if "missing" in f and (not _finite(f["missing"]) or f["missing"] < 0):
            raise ConfigError(f"{field}.missing: a count must be a finite number >= 0, got {str(f['missing'])[:40]!r}")
    pred = profile.get("prediction")
    if pred is not None and (not isinstance(pred, str) or pred not in feats):
        # the exporter counts the model's prediction as this feature: one not profiled was never exported, and the
        # prediction silently never watched (a feature entry deleted by hand, a column renamed in one place)
        raise ConfigError(f"{where}: prediction: {str(pred)[:60]!r} is not among the profile's features "
                          f"({', '.join(list(feats)[:5])}{', ...' if len(feats) > 5 else ''}); re-capture the profile")
    _rows_match(profile, feats, where)


def _spread_agrees(f: Mapping[str, Any], field: str) -> None:
    """`min`, `max`, `std` and `mean` must be one sample's: `canary baseline capture` writes `std` 0 only for a
    constant feature (min == max), a sample's standard deviation is never more than its range, and its mean lies
    between its min and max. A hand-edited `"std": 0` over a spread (3,000 distinct values) was read as a constant,
    so any live spread was drift in every window (a retraining Job that retraining cannot end); a `std` far above
    the range divides every distance by it and hides real drift; either is a profile edited by hand."""
    lo, hi, std = f["min"], f["max"], f["std"]
    slack = 1e-9 * max(abs(lo), abs(hi))  # a capture's mean and std of equal values round (0.1 three times)
    if lo > hi:
        raise ConfigError(f"{field}.min: {lo!r} is above max {hi!r}")
    if std == 0 and hi > lo:
        raise ConfigError(f"{field}.std: 0, but the values captured differ (min {lo!r}, max {hi!r}): a standard "
                          f"deviation of 0 is a constant feature's; re-capture the profile (canary baseline capture)")
    if std > hi - lo + slack:
        raise ConfigError(f"{field}.std: {std!r} is more than the range of the values captured (min {lo!r}, max "
                          f"{hi!r}), which no sample's standard deviation is; re-capture the profile")
    if "mean" in f and _finite(f["mean"]) and not lo - slack <= f["mean"] <= hi + slack:
        raise ConfigError(f"{field}.mean: {f['mean']!r} is outside the values captured (min {lo!r}, max {hi!r}); "
                          f"re-capture the profile")


def _rows_match(profile: Mapping[str, Any], feats: Mapping[str, Any], where: str) -> None:
    """`rows` (optional: written by `canary baseline capture`) is every feature's present values plus
    its missing ones: a profile whose counts do not add up was edited or assembled by hand."""
    if "rows" not in profile:
        return
    rows = profile["rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"{where}: rows: must be a whole number >= 1 (the training rows), got {str(rows)[:40]!r}")
    for name, f in feats.items():
        present = sum(f["counts"]) if f["type"] == "numeric" else sum(f["categories"].values()) + f.get("other", 0)
        total = present + f.get("missing", 0)
        if not math.isclose(total, rows, rel_tol=1e-9, abs_tol=1e-6):
            raise ConfigError(f"{where}: features.{name}.counts: {total:g} values (present + missing), but the "
                              f"profile has rows: {rows}; every feature counts every training row")


def profile_rows(profile: Mapping[str, Any]) -> int:
    """The training rows of a valid profile: its `rows`, which is optional (`validate_profile`); without
    it, the most values (present plus missing) any feature counts. Every reader of the rows goes through
    here: a profile without them passed validation and then failed as a KeyError where they were read
    (`drift check` exit 2 "the comparison failed", `drift watch` would not start, the controller's whole
    drift pass failed for every baseline)."""
    rows = profile.get("rows")
    if isinstance(rows, int) and not isinstance(rows, bool):
        return rows
    return int(max(_present(f) + f.get("missing", 0) for f in profile["features"].values()))


def _present(f: Mapping[str, Any]) -> float:
    return sum(f["counts"]) if f["type"] == "numeric" else sum(f["categories"].values()) + f.get("other", 0)


def small_references(profile: Mapping[str, Any]) -> dict[str, int]:
    """The features (the prediction included) whose reference holds SMALL_REFERENCE present values or
    fewer, with that number: they are judged by two-sample tests (KS, chi-square, z), not distances.
    Those tests are right on average over captures, but a given capture is one fixed sample: against
    a live window of many more values their p-value asks whether that sample is typical of the
    distribution, and for about 1 capture in 20 it is not, so the feature reads drifted in nearly
    every large window, for good (decisions 74 and 86). `canary baseline capture` warns of them."""
    out = {}
    for name, f in profile["features"].items():
        present = _present(f)
        if present <= SMALL_REFERENCE:
            out[name] = int(present)
    return out


def _quantiles_in_order(qs: Mapping[str, Any], f: Mapping[str, Any], field: str) -> None:
    """Levels in (0, 1), values that do not fall as the level rises (the 0.1% and 99.9% ones close the
    end buckets of the Wasserstein distance), min <= max."""
    if not f["min"] <= f["max"]:
        raise ConfigError(f"{field}.min: must not exceed max ({f['min']!r} > {f['max']!r})")
    levels = []
    for level, v in qs.items():
        try:
            x = float(level)
        except ValueError:
            x = math.nan
        if not 0 < x < 1:
            raise ConfigError(f"{field}.quantiles.{level}: the level must be a number between 0 and 1")
        levels.append((x, v, level))
    levels.sort()
    for (_, a, la), (_, b, lb) in zip(levels, levels[1:]):
        if b < a:
            raise ConfigError(f"{field}.quantiles.{lb}: {b!r} is below quantile {la} ({a!r}); quantiles must not "
                              f"fall as the level rises")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _counts(values: list[Any], field: str, names: list[Any] | None = None) -> None:
    for i, v in enumerate(values):
        if not _finite(v) or v < 0:
            at = f"[{i}]" if names is None else f".{names[i]}"
            raise ConfigError(f"{field}{at}: a count must be a finite number >= 0, got {str(v)[:40]!r}")


def compare(profile: Mapping[str, Any], live: Mapping[str, Mapping[str, Any]], *,
            features: list[str] | None = None, min_live: float = MIN_LIVE) -> DatasetDrift:
    """Every profiled feature present in `live` (or those named), compared with the profile.

    ConfigError names the feature when live counts do not fit the profile (a numeric feature with
    another number of buckets, categories for a numeric one, negative counts). Features without
    live observations are left out (they cannot drift; `canary drift check` lists them).
    """
    validate_profile(profile)
    if not isinstance(live, Mapping):
        raise ConfigError("live data must be an object mapping feature names to counts")
    _check_sums(live)
    _check_totals(live)
    prof = profile["features"]
    _check_fields(prof, live)
    live = _booleans(prof, live)
    names = features or [f for f in prof if f in live]
    try:
        out = _compare_batched(prof, live, names, min_live)
    except Exception:  # noqa: BLE001 -- refused or tripped on: the per-feature path decides, with its errors
        out = _compare_each(prof, live, names, min_live)
    return dataset_drift(out, _missing(prof, live))


def too_few(profile: Mapping[str, Any], live: Mapping[str, Mapping[str, Any]],
            min_live: float = MIN_LIVE) -> dict[str, int]:
    """The profiled features `compare` left out for too few live values: some values in the window, fewer
    than `min_live` (feature -> values, in profile order). Not "no live data": they arrive, too rarely to
    judge in this window (low traffic; inconclusive), and a longer window holds more. Live data that are
    not counts are left to `compare` to name."""
    live = _booleans(profile["features"], live)
    out: dict[str, int] = {}
    for name, ref in profile["features"].items():
        cur = live.get(name)
        if not isinstance(cur, Mapping):
            continue
        if ref["type"] == "numeric":
            values = cur.get("counts")
        else:
            cats = cur.get("categories")
            values = list(cats.values()) + [cur.get("other", 0)] if isinstance(cats, Mapping) else None
        if not isinstance(values, (list, tuple)) or not _plain(list(values)):
            continue
        n = float(sum(values))
        if 0 < n < min_live:
            out[name] = int(round(n))
    return out


NO_SUM = "no live sum: the mean (mass beyond the last bucket) was not checked"


def _booleans(prof: Mapping[str, Any], live: Mapping[str, Any]) -> Mapping[str, Any]:
    """Live categories of boolean features (`profile.is_boolean`) under "true"/"false", whatever their
    spelling ("True", "1", ...: what `canary.drift.exporter` does to each request, done to --input);
    a category that is no boolean's spelling counts as missing, as the exporter counts it. Counts that
    are not plain numbers are left as they are, for the comparison to name."""
    from canary.drift.profile import boolean_category, is_boolean

    out = None
    for name, cur in live.items():
        f = prof.get(name)
        cats = cur.get("categories") if isinstance(cur, Mapping) else None
        if f is None or not is_boolean(f) or not isinstance(cats, Mapping) or not _plain(list(cats.values())):
            continue
        keys = {k: boolean_category(k) for k in cats}
        if all(k == v for k, v in keys.items()):
            continue
        folded: dict[str, float] = {}
        wrong = 0.0
        for k, n in cats.items():
            if keys[k] is None:
                wrong += float(n)
            else:
                folded[keys[k]] = folded.get(keys[k], 0.0) + float(n)
        out = dict(live) if out is None else out
        out[name] = {**cur, "categories": folded}
        if wrong:
            miss = cur.get("missing", 0)
            out[name]["missing"] = (float(miss) + wrong) if _plain([miss]) else miss
    return live if out is None else out


# the fields of one feature's live counts (the module docstring), by the profile's type of the feature
LIVE_FIELDS = {"numeric": ("counts", "sum", "sum_n", "missing"), "categorical": ("categories", "other", "missing")}


def _check_fields(prof: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    """No field of a profiled feature's live entry is unknown (LIVE_FIELDS). A field misspelt in `drift check
    --input` (`"mising": 5000`) was ignored: the missing-rate check of a feature 92% missing never ran, exit 0
    (decision 529). ConfigError naming the feature and the field. The other type's fields (`categories` for a
    numeric feature) and entries that are no object are left to the comparison, which names them."""
    import difflib

    known = {k for fields in LIVE_FIELDS.values() for k in fields}
    for name, cur in live.items():
        ref = prof.get(name)
        if not isinstance(ref, Mapping) or not isinstance(cur, Mapping):
            continue
        fields = LIVE_FIELDS[ref["type"]]
        for key in cur:
            if key not in known:
                near = difflib.get_close_matches(str(key), fields, n=1)
                raise ConfigError(f"feature {name!r}: field {str(key)[:40]!r} is not one of a {ref['type']} feature's "
                                  f"live counts ({', '.join(fields)})" + (f"; did you mean {near[0]!r}?" if near else ""))


def _check_sums(live: Mapping[str, Any]) -> None:
    """`sum` and `sum_n`, when given, are numbers (a `"sum": "12"` or `"sum_n": true` was ignored, silently
    turning a checked mean into an unchecked one)."""
    for name, cur in live.items():
        if not isinstance(cur, Mapping):
            continue
        if "sum" in cur and not _number(cur["sum"]):
            raise ConfigError(f"feature {name!r}: sum must be a finite number (the live values' sum), "
                              f"got {str(cur['sum'])[:40]!r}")
        if "sum_n" in cur and not (_number(cur["sum_n"]) and cur["sum_n"] >= 0):
            raise ConfigError(f"feature {name!r}: sum_n must be a finite number >= 0 (the values sum is over), "
                              f"got {str(cur['sum_n'])[:40]!r}")


def _check_totals(live: Mapping[str, Any]) -> None:
    """Each feature's live values, present and missing, at most MAX_LIVE: beyond it (or overflowing to infinity)
    they are no window's counts, and every test over them is NaN, which no threshold calls drift: "no drift", exit 0.
    The missing count alone raised an OverflowError in Fisher's test ("the comparison failed", no feature named).
    Counts that are not plain numbers are left to the comparison to name."""
    for name, cur in live.items():
        if not isinstance(cur, Mapping):
            continue
        cats = cur.get("categories")
        parts = [cur.get("counts"), list(cats.values()) if isinstance(cats, Mapping) else None,
                 [cur["other"]] if "other" in cur else None, [cur["missing"]] if "missing" in cur else None]
        total = 0.0
        for values in parts:
            if isinstance(values, (list, tuple)) and _plain(list(values)):
                with np.errstate(over="ignore"):  # an overflow is the answer: inf, refused below
                    total += float(np.sum(np.asarray(values, float)))
        if not total <= MAX_LIVE:
            raise ConfigError(f"feature {name!r}: {total:g} live values (present and missing) in the window, more "
                              f"than 2^53 ({MAX_LIVE:g}): no window's counts (a request a nanosecond for a month is "
                              f"2.6e15); check the live data")


def _say_unsummed(f: FeatureDrift, live: Mapping[str, Any], prof: Mapping[str, Any]) -> FeatureDrift:
    """A Wasserstein verdict read from the buckets alone says so: without the live sum, mass that
    moved beyond the last bucket is not seen (an exporter that exports no sum, input without one). So does a
    few-valued feature's that `_off_values` could not check (NO_SUM_VALUES; decision 449)."""
    few = f.kind == "numeric" and f.test != "wasserstein" and _by_value(prof[f.feature])
    if (f.test != "wasserstein" and not few) or f.note:
        return f
    cur = live[f.feature]
    if _live_mean(cur, _counted(cur.get("counts"))) is not None:
        return f
    return dataclasses.replace(f, note=NO_SUM_VALUES if few else NO_SUM)


NO_SUM_VALUES = "no live sum: live values that are none of the training's few were not checked"


def _by_value(ref: Mapping[str, Any]) -> bool:
    """Whether a numeric feature's bounds are its few distinct training values (a bucket per value, `profile`)."""
    b = ref["bounds"]
    return ref["n_unique"] < CATEGORICAL_BELOW and len(b) == ref["n_unique"] and b[0] == ref["min"] and \
        b[-1] == ref["max"]


def _counted(counts: Any) -> float:
    try:
        return float(sum(float(c) for c in counts))
    except (TypeError, ValueError):
        return 0.0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _live_mean(cur: Mapping[str, Any], total: float) -> float | None:
    """The live mean: `sum` over `sum_n` (the values the sum is over, when they are not all the buckets'
    values: `canary.drift.live` reads the mean from the pods that export it) or over `total`; None
    without a sum, or when `sum_n` is fewer than MIN_LIVE values (a mean of a handful of pods' values
    is noise, not a bound)."""
    s, n = cur.get("sum"), cur.get("sum_n", total)
    if not (_number(s) and _number(n)) or n <= 0 or ("sum_n" in cur and n < MIN_LIVE):
        return None
    return float(s) / float(n)


class _NotPlain(Exception):
    """Live data the batched path does not vouch for (a fault to name, unusual number types)."""


_Row = tuple[int, str, Mapping[str, Any], Any]  # (position in the answer, feature, profile entry, live cells)


def _compare_batched(prof: Mapping[str, Any], live: Mapping[str, Any], names: list[str],
                     min_live: float) -> list[FeatureDrift]:
    """`_compare_each` in one numpy pass per kind: numeric features grouped by bucket count, categorical
    ones padded with zeros. It accepts only plain input (counts that are ints or floats, finite, >= 0)
    and raises on anything else, which `compare` then hands to `_compare_each`: one behaviour, two speeds
    (tests/unit/test_drift_batch.py holds them equal)."""
    floor = max(min_live, 1e-9)
    numeric: dict[int, list[_Row]] = {}
    cats: list[_Row] = []
    for i, name in enumerate(names):
        ref, cur = prof[name], live.get(name)
        if cur is None:
            continue
        if not isinstance(cur, Mapping):
            raise _NotPlain(name)
        if ref["type"] == "numeric":
            counts = cur.get("counts")
            if not isinstance(counts, (list, tuple)) or len(counts) != len(ref["counts"]) or \
                    isinstance(counts[0], (bool, np.bool_)):  # all booleans: a matrix would hide it as ints
                raise _NotPlain(name)
            numeric.setdefault(len(counts), []).append((i, name, ref, cur))
        else:
            cells = _category_cells(ref, cur)
            if sum(cells[1]) >= floor:
                cats.append((i, name, ref, cells))
    slots: list[FeatureDrift | None] = [None] * len(names)
    for rows in numeric.values():
        for i, f in _numeric_group(rows, floor):
            slots[i] = f
    if cats:
        width = max(len(r) for _, _, _, (r, _) in cats)
        ref_m, cur_m = np.zeros((len(cats), width)), np.zeros((len(cats), width))
        for j, (_, _, _, (r, c)) in enumerate(cats):
            ref_m[j, :len(r)], cur_m[j, :len(c)] = r, c
        done = categorical_drift_many([row[1] for row in cats], ref_m, cur_m, [len(r) for *_, (r, _) in cats])
        for row, f in zip(cats, done):
            slots[row[0]] = f
    return [_say_unsummed(f, live, prof) for f in slots if f is not None]


def _numeric_group(rows: list[_Row], floor: float) -> list[tuple[int, FeatureDrift]]:
    """Numeric features with one bucket count: their live counts checked as one matrix."""
    matrix = np.array([cur["counts"] for *_, cur in rows])
    if matrix.ndim != 2 or matrix.dtype.kind not in "iuf":
        raise _NotPlain("counts")
    c = matrix.astype(float, copy=False)
    if not np.isfinite(c).all() or (c < 0).any():
        raise _NotPlain("counts")
    totals = c.sum(axis=1).tolist()
    keep = [j for j, t in enumerate(totals) if not t < floor]
    if not keep:
        return []
    refs = [rows[j][2] for j in keep]
    qs = [ref.get("quantiles", {}) for ref in refs]  # close the open end buckets at the 0.1% / 99.9% quantiles
    done = numeric_drift_many(
        [rows[j][1] for j in keep], np.array([ref["bounds"] for ref in refs], float),
        np.array([ref["counts"] for ref in refs], float), c[keep],
        lo=[float(q.get("0.001", ref["min"])) for q, ref in zip(qs, refs)],
        hi=[float(q.get("0.999", ref["max"])) for q, ref in zip(qs, refs)],
        std=[ref["std"] for ref in refs], n_unique=[ref["n_unique"] for ref in refs],
        mean_gap=[_mean_gap(rows[j][2], rows[j][3], totals[j]) for j in keep],
        mean_n=[_mean_n(rows[j][3], totals[j]) for j in keep],
        off_values=[_off_values(rows[j][2], rows[j][3], c[j], totals[j]) for j in keep])
    return [(rows[j][0], f) for j, f in zip(keep, done)]


def _category_cells(ref: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[list[Any], list[float]]:
    """The reference's and the live counts per category, as `_compare_each` lays them out."""
    cats = cur.get("categories")
    if not isinstance(cats, Mapping):
        raise _NotPlain("categories")
    known, other = ref["categories"], float(ref.get("other", 0))
    unknown = [k for k in cats if k not in known]
    keys = list(known) if other > 0 or not unknown else list(known) + unknown
    c = [cats.get(k, 0) for k in keys]
    folded = [cats[k] for k in unknown] if other > 0 else []
    live_other = cur.get("other", 0)
    if not (_plain(c) and _plain(folded) and _plain([live_other])):
        raise _NotPlain("categories")
    c.append(float(live_other) + sum(float(v) for v in folded))
    return [known.get(k, 0) for k in keys] + [other], c


_INTS, _FLOATS = (int, np.int64), (float, np.float64)


def _plain(values: list[Any]) -> bool:
    """Every value an int or float (not a boolean), finite and >= 0: what `_nonneg` accepts beyond doubt."""
    for v in values:
        t = type(v)
        if not ((t in _FLOATS and 0.0 <= v < math.inf) or (t in _INTS and 0 <= v < 2**63)):
            return False
    return True


def _mean_gap(ref: Mapping[str, Any], cur: Mapping[str, Any], total: float) -> float | None:
    """|live mean - reference mean| when the live sum is known: a lower bound on the Wasserstein distance."""
    mean = _live_mean(cur, total)
    return abs(mean - float(ref["mean"])) if mean is not None and "mean" in ref else None


def _off_values(ref: Mapping[str, Any], cur: Mapping[str, Any], counts: np.ndarray, total: float) -> float | None:
    """For a feature whose bounds are its few distinct training values (`profile`: fewer than FEW_VALUES, a bucket
    per value), |live mean - the mean its live buckets hold at those values| (the last, open bucket at the highest),
    less OFF_SLACK of the largest value's magnitude; None without a live sum or for other bounds (`--bounds-from`'s).
    Values that are none of the training's count in the bucket of the value above them (a -1 sent for a 0/1 flag in
    0's): compared bucket by bucket they were that value, "no drift" (decision 449)."""
    b = ref["bounds"]
    if not _by_value(ref):
        return None
    mean = _live_mean(cur, total)
    if mean is None or not total > 0:
        return None
    held = float(np.dot(np.asarray(counts, float), np.append(np.asarray(b, float), b[-1]))) / total
    return max(abs(mean - held) - OFF_SLACK * max(abs(b[0]), abs(b[-1])), 0.0)


def _mean_n(cur: Mapping[str, Any], total: float) -> float:
    """How many live values the live mean is over (`sum_n`, else the counts' total): its noise."""
    n = cur.get("sum_n")
    return float(n) if _number(n) and n > 0 else total


def _compare_each(prof: Mapping[str, Any], live: Mapping[str, Any], names: list[str],
                  min_live: float) -> list[FeatureDrift]:
    """Feature by feature, with `stats`' per-feature functions: the definition `_compare_batched` must
    match, and the path for input it refuses (whose faults are named here, in feature order)."""
    out: list[FeatureDrift] = []
    for name in names:
        if name not in prof:
            raise ConfigError(f"feature {name!r} is not in the profile (profiled: {', '.join(prof)})")
        ref, cur = prof[name], live.get(name)
        if cur is None:
            continue
        if not isinstance(cur, Mapping):
            raise ConfigError(f"feature {name!r}: live data must be an object, {{\"counts\": [...]}} or "
                              f"{{\"categories\": {{...}}}}, got {str(cur)[:60]}")
        if ref["type"] == "numeric":
            counts = cur.get("counts")
            if not isinstance(counts, (list, tuple)) or len(counts) != len(ref["counts"]):
                raise ConfigError(f"feature {name!r}: live counts must be {len(ref['counts'])} per-bucket counts "
                                  f"over the profile's bounds, got {str(counts)[:60]}")
            c = _nonneg(counts, name)
            if c.sum() < max(min_live, 1e-9):
                continue
            qs = ref.get("quantiles", {})  # close the open end buckets at the 0.1% / 99.9% quantiles
            mean_gap = _mean_gap(ref, cur, float(c.sum()))
            out.append(numeric_drift(name, np.asarray(ref["bounds"], float), np.asarray(ref["counts"], float), c,
                                     lo=float(qs.get("0.001", ref["min"])), hi=float(qs.get("0.999", ref["max"])),
                                     std=ref["std"], n_unique=ref["n_unique"], mean_gap=mean_gap,
                                     mean_n=_mean_n(cur, float(c.sum())),
                                     off_values=_off_values(ref, cur, c, float(c.sum()))))
        else:
            cats = cur.get("categories")
            if not isinstance(cats, Mapping):
                raise ConfigError(f"feature {name!r}: live data of a categorical feature must be "
                                  f"{{\"categories\": {{value: count}}}}")
            known, other = ref["categories"], float(ref.get("other", 0))
            # a value the profile folded into "other" (beyond its most frequent) is not a new category
            unknown = [k for k in cats if k not in known]
            fresh = [] if other > 0 else unknown
            folded = sum(_nonneg([cats[k] for k in unknown], name)) if other > 0 and unknown else 0.0
            keys = list(known) + fresh
            r = np.array([known.get(k, 0) for k in keys] + [other], float)
            c = _nonneg([cats.get(k, 0) for k in keys] + [_nonneg([cur.get("other", 0)], name)[0] + folded], name)
            if c.sum() < max(min_live, 1e-9):
                continue
            out.append(categorical_drift(name, r, c))
    return [_say_unsummed(f, live, prof) for f in out]


def _missing(prof: Mapping[str, Any], live: Mapping[str, Any]) -> list[MissingShift]:
    """Missing rates of the features whose live data carry a "missing" count."""
    out = []
    for name, cur in live.items():
        ref = prof.get(name)
        if ref is None or not isinstance(cur, Mapping) or "missing" not in cur:
            continue
        miss, present = _missing_and_present(name, ref, cur)
        if miss + present < MIN_LIVE:
            continue
        ref_present = float(sum(ref["counts"])) if ref["type"] == "numeric" else \
            float(sum(ref["categories"].values())) + float(ref.get("other", 0))
        out.append(missing_shift(name, ref_missing=float(ref.get("missing", 0)), ref_present=ref_present,
                                 live_missing=miss, live_present=present))
    return out


def _missing_and_present(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[float, float]:
    """Live missing and present counts; plain numbers are summed as they are (the same sums, without a
    numpy array per feature), anything else is checked by `_nonneg`, which names the fault."""
    miss = cur["missing"]
    if ref["type"] == "numeric":
        counts = cur.get("counts", [])
        if isinstance(counts, (list, tuple)) and _plain(counts) and _plain([miss]):
            return float(miss), float(sum(counts))
        return (_nonneg([miss], name)[0], float(sum(_nonneg(counts, name))))
    cats, other = cur.get("categories") or {}, cur.get("other", 0)
    if isinstance(cats, dict) and _plain(list(cats.values())) and _plain([miss, other]):
        return float(miss), float(sum(cats.values())) + float(other)
    return (_nonneg([miss], name)[0], float(sum(_nonneg(list(cats.values()), name)))
            + float(_nonneg([other], name)[0]))


def _nonneg(values: Any, name: str) -> np.ndarray:
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError):
        raw = np.asarray([], dtype=object)
    if raw.dtype.kind not in "iuf":  # text, booleans, None, nested lists: not counts
        raise ConfigError(f"feature {name!r}: counts must be numbers, got {str(values)[:60]}")
    c = raw.astype(float, copy=False)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ConfigError(f"feature {name!r}: counts must be finite and >= 0, got {str(values)[:60]}")
    return c

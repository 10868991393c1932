"""A profile against live counts over the profile's own buckets -> per-feature drift (pure).

Live counts per feature (what `canary.drift.exporter` exports, or `canary drift
check --input` reads):

    {"<feature>": {"counts": [k + 1 per-bucket counts over the profile's bounds],      numeric
                   "sum": sum of the values (optional: the live mean bounds the distance from below)}
                | {"categories": {"value": count, ...}}                                categorical
     ... optional "missing": count in either: its missing rate is compared with training's
         (`DatasetDrift.missing`; reported beside the drift tests, not part of the share)}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.drift.stats import (
    DatasetDrift,
    FeatureDrift,
    MissingShift,
    categorical_drift,
    dataset_drift,
    missing_shift,
    numeric_drift,
)
from canary.errors import ConfigError


MIN_LIVE = 100  # live observations a feature needs to be compared (5 requests are not a distribution)

_NUMERIC_KEYS = ("bounds", "counts", "min", "max", "std", "n_unique")


def validate_profile(profile: Any, where: str = "profile") -> None:
    """ConfigError naming the field when `profile` is not what `canary baseline capture` writes."""
    if not isinstance(profile, Mapping) or profile.get("format") != 1:
        raise ConfigError(f"{where}: not a profile written by `canary baseline capture` (format 1)")
    for key in ("model", "version"):
        if not isinstance(profile.get(key), str) or not profile.get(key):
            raise ConfigError(f"{where}: {key}: missing (a profile names its model and version)")
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
        elif not isinstance(f.get("categories"), Mapping):
            raise ConfigError(f"{field}.categories: missing")


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
    out: list[FeatureDrift] = []
    prof = profile["features"]
    for name in features or [f for f in prof if f in live]:
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
            live_sum = cur.get("sum")
            mean_gap = (abs(float(live_sum) / c.sum() - float(ref["mean"]))
                        if isinstance(live_sum, (int, float)) and not isinstance(live_sum, bool)
                        and np.isfinite(live_sum) and "mean" in ref else None)
            out.append(numeric_drift(name, np.asarray(ref["bounds"], float), np.asarray(ref["counts"], float), c,
                                     lo=float(qs.get("0.001", ref["min"])), hi=float(qs.get("0.999", ref["max"])),
                                     std=ref["std"], n_unique=ref["n_unique"], mean_gap=mean_gap))
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
    return dataset_drift(out, _missing(prof, live))


def _missing(prof: Mapping[str, Any], live: Mapping[str, Any]) -> list[MissingShift]:
    """Missing rates of the features whose live data carry a "missing" count."""
    out = []
    for name, cur in live.items():
        ref = prof.get(name)
        if ref is None or not isinstance(cur, Mapping) or "missing" not in cur:
            continue
        miss = _nonneg([cur["missing"]], name)[0]
        present = (float(sum(_nonneg(cur.get("counts", []), name))) if ref["type"] == "numeric" else
                   float(sum(_nonneg(list((cur.get("categories") or {}).values()), name)))
                   + float(_nonneg([cur.get("other", 0)], name)[0]))
        if miss + present < MIN_LIVE:
            continue
        ref_present = float(sum(ref["counts"])) if ref["type"] == "numeric" else \
            float(sum(ref["categories"].values())) + float(ref.get("other", 0))
        out.append(missing_shift(name, ref_missing=float(ref.get("missing", 0)), ref_present=ref_present,
                                 live_missing=miss, live_present=present))
    return out


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

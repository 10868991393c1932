"""A profile against live counts over the profile's own buckets -> per-feature drift (pure).

Live counts per feature (what `canary.drift.exporter` exports, or `canary drift
check --input` reads):

    {"<feature>": {"counts": [k + 1 per-bucket counts over the profile's bounds]}      numeric
                | {"categories": {"value": count, ...}}                                categorical
     ... optional "missing": count in either (reported, not part of the drift tests)}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.drift.stats import DatasetDrift, FeatureDrift, categorical_drift, dataset_drift, numeric_drift
from canary.errors import ConfigError


def compare(profile: Mapping[str, Any], live: Mapping[str, Mapping[str, Any]], *,
            features: list[str] | None = None) -> DatasetDrift:
    """Every profiled feature present in `live` (or those named), compared with the profile.

    ConfigError names the feature when live counts do not fit the profile (a numeric feature with
    another number of buckets, categories for a numeric one, negative counts). Features without
    live observations are left out (they cannot drift; `canary drift check` lists them).
    """
    out: list[FeatureDrift] = []
    prof = profile["features"]
    for name in features or [f for f in prof if f in live]:
        if name not in prof:
            raise ConfigError(f"feature {name!r} is not in the profile (profiled: {', '.join(prof)})")
        ref, cur = prof[name], live.get(name)
        if cur is None:
            continue
        if ref["type"] == "numeric":
            counts = cur.get("counts")
            if not isinstance(counts, (list, tuple)) or len(counts) != len(ref["counts"]):
                raise ConfigError(f"feature {name!r}: live counts must be {len(ref['counts'])} per-bucket counts "
                                  f"over the profile's bounds, got {str(counts)[:60]}")
            c = _nonneg(counts, name)
            if c.sum() <= 0:
                continue
            out.append(numeric_drift(name, np.asarray(ref["bounds"], float), np.asarray(ref["counts"], float), c,
                                     lo=ref["min"], hi=ref["max"], std=ref["std"], n_unique=ref["n_unique"]))
        else:
            cats = cur.get("categories")
            if not isinstance(cats, Mapping):
                raise ConfigError(f"feature {name!r}: live data of a categorical feature must be "
                                  f"{{\"categories\": {{value: count}}}}")
            keys = list(ref["categories"]) + [k for k in cats if k not in ref["categories"]]
            r = np.array([ref["categories"].get(k, 0) for k in keys] + [ref.get("other", 0)], float)
            c = _nonneg([cats.get(k, 0) for k in keys] + [cur.get("other", 0)], name)
            if c.sum() <= 0:
                continue
            out.append(categorical_drift(name, r, c))
    return dataset_drift(out)


def _nonneg(values: Any, name: str) -> np.ndarray:
    try:
        c = np.asarray(values, float)
    except (TypeError, ValueError):
        raise ConfigError(f"feature {name!r}: counts must be numbers, got {str(values)[:60]}") from None
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ConfigError(f"feature {name!r}: counts must be finite and >= 0, got {str(values)[:60]}")
    return c

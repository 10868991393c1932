"""Read live feature counts from Prometheus: what `canary.drift.exporter` exports, over a window.

Four queries per profile, whatever the number of features (constant in features
and in requests; the per-sign sums give each numeric feature's live mean, the
missing counter its missing rate):

    sum by (feature, le) (increase(model_feature_value_bucket{model_name="M", model_version="V"}[W]))
    sum by (feature, category) (increase(model_feature_category_total{model_name="M", model_version="V"}[W]))
    sum by (feature, sign) (increase(model_feature_value_sum_by_sign_total{...}[W]))   positive - negative
    sum by (feature) (increase(model_feature_missing_total{...}[W]))

The live sum is the positive part minus the negative part (two counters that only grow: see
`canary.drift.exporter`). An exporter of an older canary exports neither: then the histogram's
`_sum` is read when the series has one (prometheus_client drops it when a bound is negative), and
a feature without a live sum is compared from its buckets alone, with a note saying that its mean
was not checked (`compare`), never silently.

The answer is turned into `canary.drift.compare`'s live format. Buckets whose
bounds are not the profile's (an exporter built from another profile) are a
ConfigError naming the feature: comparing them would re-bin, which drift
checks never do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.errors import CanaryError, ConfigError
from canary.metrics.answers import arm_name
from canary.metrics import queries as q
from canary.metrics.features import series_by
from canary.metrics.client import PrometheusClient


SIGNED_SUMS = "model_feature_value_sum_by_sign_total"


def live_counts(client: PrometheusClient, profile: Mapping[str, Any], *, model: str, version: str,
                window_s: float) -> dict[str, dict[str, Any]]:
    """Per feature of the profile with live data: {"counts": [...]} or {"categories": {...}}."""
    sel = f'model_name="{q.escape(model)}",model_version="{q.escape(version)}"'
    w = q.duration(window_s)

    def ask(metric: str, by: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of `sum by (by) (increase(metric{sel}[w]))`, series without a value left out."""
        try:
            got = client.ask(f"sum by ({by}) (increase({metric}{{{sel}}}[{w}]))", check="drift", arm="",
                             at=None, who=f"drift of {model} {version}", strict=False, deadline=None)
        except CanaryError as exc:  # the client speaks of a rollout's arms; drift reads one model's live data
            raise type(exc)(str(exc).replace(arm_name(""), f"the live data of {model} {version}")) from exc
        return series_by(got, [k.strip() for k in by.split(",")])

    buckets: dict[str, dict[float, float]] = defaultdict(dict)
    for m, v in ask(q.FEATURE_BUCKETS, "feature, le"):
        buckets[m["feature"]][q.parse_le(m["le"])] = max(v, 0.0)
    categories: dict[str, dict[str, float]] = defaultdict(dict)
    for m, v in ask(q.FEATURE_CATEGORIES, "feature, category"):
        categories[m["feature"]][m["category"]] = max(v, 0.0)
    parts: dict[str, dict[str, float]] = defaultdict(dict)
    for m, v in ask(SIGNED_SUMS, "feature, sign"):
        parts[m["feature"]][m["sign"]] = max(v, 0.0)
    total = {name: p.get("positive", 0.0) - p.get("negative", 0.0) for name, p in parts.items()}
    if not total:  # an older exporter: the histogram's `_sum`, where prometheus_client kept one
        total = {m["feature"]: v for m, v in ask("model_feature_value_sum", "feature")}
    gone = {m["feature"]: max(v, 0.0) for m, v in ask(q.FEATURE_MISSING, "feature")}
    out: dict[str, dict[str, Any]] = {}
    for name, f in profile["features"].items():
        if f["type"] == "numeric" and name in buckets:
            got, want = buckets[name], [float(b) for b in f["bounds"]]
            les = sorted(got)
            if (len(les) != len(want) + 1 or les[-1] != float("inf")
                    or not np.allclose(les[:-1], want, rtol=1e-9, atol=0.0)):
                raise ConfigError(f"feature {name!r}: the exporter's buckets {les[:4]}... are not the profile's "
                                  f"{want[:4]}...; export with the same profile (canary.drift.exporter)")
            cum = np.array([got[b] for b in les])
            cum = np.maximum.accumulate(cum)  # increase() of each bucket may round differently
            out[name] = {"counts": [float(x) for x in np.diff(cum, prepend=0.0)]}
            if name in total and cum[-1] > 0:  # the live mean: a lower bound on the Wasserstein distance
                out[name]["sum"] = total[name]
        elif f["type"] == "categorical" and name in categories:
            out[name] = {"categories": {k: v for k, v in categories[name].items() if k != "__other__"},
                         "other": categories[name].get("__other__", 0.0)}
    for name in out:
        if name in gone:
            out[name]["missing"] = gone[name]
    return out

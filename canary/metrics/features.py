"""Per-feature answers: what `canary.drift.exporter` exports, read back from Prometheus.

Shared by the `feature_drift` check (`PrometheusProvider`, each arm from its parts of one answer) and
`canary drift check` (`canary.drift.live`), so both read the same series the same
way: one answer per role, each series one feature (and bucket or category). The
arms read a category label as an exporter from before decision 540 wrote it
(`feature_labels.older_label`): an arm of each canary version reads alike (decision 558).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from canary.errors import MetricsUnavailable, NoData
from canary.feature_labels import older_label
from canary.metrics import queries as q
from canary.metrics.answers import arm_name, is_scalar, number
from canary.model import FeatureCounts


def series_by(result: Any, labels: Iterable[str]) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each series of a `sum by (labels) (...)` answer that carries every label
    and a number; NaN values and series without them are left out."""
    need = tuple(labels)
    if is_scalar(result) or not isinstance(result, list):
        return []
    out = []
    for s in result:
        if not isinstance(s, dict):
            continue
        m, v = s.get("metric"), number(s.get("value"))
        if isinstance(m, dict) and v is not None and not math.isnan(v) and all(k in m for k in need):
            out.append((m, v))
    return out


def feature_counts(answers: dict[str, Any], *, queries: dict[str, str], check: str, arm: str,
                   window_s: float) -> FeatureCounts:
    """One arm's FeatureCounts from the answers to `queries.feature_queries` (role -> result).

    Counts below zero (extrapolation) become 0; each feature's buckets are made cumulative and
    non-decreasing as `queries.normalise` does for any histogram. Raises NoData when no feature
    has a value, MetricsUnavailable for a bucket bound that is not a number.
    """
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    try:
        for m, v in series_by(answers.get("feature_buckets"), ("feature", "le")):
            buckets[m["feature"]].append((q.parse_le(m["le"]), max(v, 0.0)))
    except ValueError as exc:
        raise MetricsUnavailable(f"check {check!r}: malformed bucket bound for {arm_name(arm)} ({exc}); "
                                 f"query: {queries['feature_buckets']}") from exc
    categories: dict[str, dict[str, float]] = defaultdict(dict)
    for m, v in series_by(answers.get("feature_categories"), ("feature", "category")):
        cats = categories[m["feature"]]
        # by the older exporter's labels: arms on two canary versions count a category "__other__" alike (decision 558)
        label = older_label(m["category"])
        cats[label] = cats.get(label, 0.0) + max(v, 0.0)
    missing = {m["feature"]: max(v, 0.0) for m, v in series_by(answers.get("feature_missing_counts"), ("feature",))}
    numeric = {name: q.normalise(raw, [le for le, _ in raw]) for name, raw in buckets.items()}
    numeric = {name: h for name, h in numeric.items() if name not in categories}  # the categorical reading wins
    data = FeatureCounts(numeric=numeric, categorical=dict(categories), missing=missing)
    if data.total <= 0:
        raise NoData(f"check {check!r}: no feature observations for {arm_name(arm)} in {window_s:g}s "
                     f"(does the model server export canary.drift.exporter's metrics?); "
                     f"query: {queries['feature_buckets']}")
    return data

"""The six kinds of check a policy can hold, each refusing to load without a threshold.

A check is one question the judge asks of both arms (latency, error rate,
prediction shift, missing features, feature drift, or any PromQL); `Check` is their union,
told apart by `kind`. Kept apart from the rest of the policy because it is
what grows: a new kind of check is a class here and a branch in the judge.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from canary.policy_fields import METRIC_NAME, METRIC_PATTERN, FieldProblem, Source, Strict, show
from canary.policy_promql import check_promql, code_form, reads_version


class _CheckBase(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$", description="unique name, used in logs")
    source: Source | None = Field(None, description="metric family; defaults to metrics.source")
    hard: bool = Field(False, description="a failure rolls back at once, without waiting for failure.max_failed_looks")


class LatencyCheck(_CheckBase):
    """Canary latency quantile vs stable (relative) and/or vs a ceiling (absolute)."""

    kind: Literal["latency"]
    quantile: float = Field(0.95, gt=0, lt=1)
    max_increase_pct: float | None = Field(None, gt=0, description="canary quantile at most this % above stable (> 0: no sample shows an increase of exactly 0)")
    max_ms: float | None = Field(None, gt=0, description="canary quantile must stay below this many ms")
    same_unit: bool = Field(False, description="both arms are known to export this histogram in milliseconds: a canary "
                                               "shown 10x faster than stable at the median, or layouts that match x1000, are "
                                               "judged as they read instead of refused as a unit slip (ERROR)")

    @model_validator(mode="after")
    def _one_threshold(self) -> "LatencyCheck":
        if self.max_increase_pct is None and self.max_ms is None:
            raise ValueError("latency check needs max_increase_pct and/or max_ms")
        return self


class ErrorRateCheck(_CheckBase):
    kind: Literal["error_rate"]
    max_increase_points: float | None = Field(None, gt=0, le=100, description="canary error % at most this many points above stable (> 0)")
    max_rate_pct: float | None = Field(None, gt=0, le=100, description="canary error % ceiling (> 0: no sample shows a rate of exactly 0)")

    @model_validator(mode="after")
    def _one_threshold(self) -> "ErrorRateCheck":
        if self.max_increase_points is None and self.max_rate_pct is None:
            raise ValueError("error_rate check needs max_increase_points and/or max_rate_pct")
        return self


class PredictionShiftCheck(_CheckBase):
    """Distribution of the model's outputs (or any per-request histogram) canary vs stable."""

    kind: Literal["prediction_shift"]
    metric: str | None = Field(None, description="histogram metric name (with or without _bucket); defaults to the source's prediction metric",
                               json_schema_extra={"pattern": METRIC_NAME})
    max_psi: float | None = Field(None, gt=0, description="population stability index ceiling (0.1 small, 0.25 large)")
    max_js: float | None = Field(None, gt=0, le=1, description="Jensen-Shannon distance ceiling (base 2, 0..1)")

    @field_validator("metric")
    @classmethod
    def _metric(cls, name: str | None) -> str | None:
        base = name[: -len("_bucket")] if name and name.endswith("_bucket") else name
        if base is not None and not METRIC_PATTERN.fullmatch(base):
            raise ValueError(f"{show(name)} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        return name

    @model_validator(mode="after")
    def _one_threshold(self) -> "PredictionShiftCheck":
        if self.max_psi is None and self.max_js is None:
            raise ValueError("prediction_shift check needs max_psi and/or max_js")
        return self


class FeatureMissingCheck(_CheckBase):
    kind: Literal["feature_missing"]
    max_increase_points: float | None = Field(None, gt=0, le=100)
    max_rate_pct: float | None = Field(None, gt=0, le=100)

    @model_validator(mode="after")
    def _one_threshold(self) -> "FeatureMissingCheck":
        if self.max_increase_points is None and self.max_rate_pct is None:
            raise ValueError("feature_missing check needs max_increase_points and/or max_rate_pct")
        return self


class FeatureDriftCheck(_CheckBase):
    """Each input feature's distribution, canary vs stable (a changed upstream pipeline).

    Reads what `canary.drift.exporter` exports (`model_feature_value_bucket`,
    `model_feature_category_total`, `model_feature_missing_total`, labels
    `model_name`/`model_version`), so its source is always `model`. Per feature, the
    missing values are one more cell of its distribution, and each limit is tested on its
    own statistic as in `prediction_shift`; the check's alpha is split evenly over the
    features compared.
    """

    kind: Literal["feature_drift"]
    source: Literal["model"] = Field("model", description="always 'model': the drift exporter's metrics")
    features: list[str] | None = Field(None, min_length=1, max_length=500,
                                       description="the features to compare (each must be exported by both arms); "
                                                   "default: every feature both arms export",
                                       json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 200},
                                                          "uniqueItems": True})  # what `_features` checks
    max_psi: float | None = Field(None, gt=0, description="per-feature population stability index ceiling")
    max_js: float | None = Field(None, gt=0, le=1, description="per-feature Jensen-Shannon distance ceiling (base 2, 0..1)")

    @field_validator("features")
    @classmethod
    def _features(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        seen: set[str] = set()
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name or len(name) > 200:
                raise FieldProblem(f"[{i}]", "must be a feature name of 1..200 characters")
            if name in seen:
                raise FieldProblem(f"[{i}]", f"{show(name)} is listed twice (features[{names.index(name)}] too)")
            seen.add(name)
        return names

    @model_validator(mode="after")
    def _one_threshold(self) -> "FeatureDriftCheck":
        if self.max_psi is None and self.max_js is None:
            raise ValueError("feature_drift check needs max_psi and/or max_js")
        return self


class CustomCheck(_CheckBase):
    """Any PromQL returning one number per arm.

    Templates may use {model}, {version}, {namespace} (inside double-quoted
    strings only: the values are escaped there) and {window}; any other
    {identifier} is refused as a typo, so a literal `{word}` cannot be written.
    Use `query` for one template applied to both arms, or `stable_query` and
    `canary_query`. Brackets and strings are checked at load time; the server
    checks the rest. `metrics.labels` is added to every vector selector of the
    query (`x[5m]` -> `x{cluster="eu-1"}[5m]`), as to every other query.
    """

    kind: Literal["custom"]
    query: str | None = None
    stable_query: str | None = None
    canary_query: str | None = None
    higher_is_better: bool = False
    max_value: float | None = Field(None, description="canary value must not exceed (or, higher_is_better, fall below) this")
    max_ratio: float | None = Field(None, gt=0, description="canary/stable ratio limit (lower is better: at most; else at least 1/x)")
    max_increase: float | None = Field(None, ge=0, description="canary - stable at most this (worse direction)")

    @field_validator("query", "stable_query", "canary_query")
    @classmethod
    def _promql(cls, template: str | None) -> str | None:
        return None if template is None else check_promql(template)

    @model_validator(mode="after")
    def _shape(self) -> "CustomCheck":
        per_arm = (self.stable_query, self.canary_query)
        if self.query is None and None in per_arm:
            raise ValueError("custom check needs `query`, or both `stable_query` and `canary_query`")
        if self.query is not None and any(q is not None for q in per_arm):
            raise ValueError("custom check takes `query` or per-arm queries, not both")
        if self.max_value is None and self.max_ratio is None and self.max_increase is None:
            raise ValueError("custom check needs max_value, max_ratio and/or max_increase")
        relative = [k for k in ("max_ratio", "max_increase") if getattr(self, k) is not None]
        # one query for both arms: `query`, or per-arm queries that differ only in comments and spacing (a
        # `{version}` in a comment is rendered as written: it selects nothing)
        same = self.query if self.query is not None else (
            self.stable_query if code_form(self.stable_query or "") == code_form(self.canary_query or "") else None)
        if relative and same is not None and not reads_version(same):
            where = ("`query`" if self.query is not None else "`stable_query` and `canary_query` (the same text)"
                     if self.stable_query == self.canary_query else
                     "`stable_query` and `canary_query` (the same query but for comments and spacing)")
            has = ("{version} only in a comment, which selects nothing" if "{version}" in same
                   else "no {version}")
            raise ValueError(f"{' and '.join(relative)} compares canary with stable, but {where} has {has}: both "
                             'arms would read the same series and always pass; select the arm, '
                             'e.g. `version="{version}"`, or give per-arm queries')
        return self

    def template(self, arm: str) -> str:
        if self.query is not None:
            return self.query
        return self.stable_query if arm == "stable" else self.canary_query  # type: ignore[return-value]


Check = Annotated[
    Union[LatencyCheck, ErrorRateCheck, PredictionShiftCheck, FeatureMissingCheck, FeatureDriftCheck, CustomCheck],
    Field(discriminator="kind"),
]


# a limit at or past which the check passes every canary short of a broken one (decision 704): the field, the value
# from which it is said, and what a canary must show to break it ({v}: the limit, {q}: a latency check's quantile)
UNBREAKABLE = {
    "max_increase_pct": (1000, "a p{q} over {x} times stable's"),
    "max_ms": (60000, "a p{q} above {s} s, longer than a client usually waits for an inference's answer"),
    "max_increase_points": (50, "a rate over {v} points above stable's"),
    "max_rate_pct": (50, "a rate over {v}%"),
    "max_js": (1, "a Jensen-Shannon distance above 1, which none has"),
    # the judge's PSI smooths each bucket by +0.5 (`shift._psi`), so every share is at least 0.5 / (n + k/2) and
    # any PSI of k buckets with n observations an arm is under 2 ln(2n + k): 84 at 10^18 (a billion a second for
    # 30 years); 100 needs 2.6e21 an arm. Only a PSI limit is provable so (decision 744)
    "max_psi": (100, "a PSI above {v}, which no count reaches: the judge's +0.5 a bucket holds any PSI under "
                     "2 ln(2n + k) for n predictions an arm in k buckets, 84 at 10^18 predictions"),
}


# the limits a check of these kinds may set: one of them that judges makes a loose other one a hard stop, not a
# check that passes every canary (704 addendum)
LIMITS = ("max_increase_pct", "max_ms", "max_increase_points", "max_rate_pct", "max_psi", "max_js")


def unbreakable_limits(check: "Check") -> list[tuple[str, str]]:
    """(field, what breaks it) for each limit of `check` that no canary short of a broken one breaks
    (`max_increase_pct: 1e300`, `max_rate_pct: 100`) when every limit it sets is one: valid, and said as an
    advisory, never refused (decision 704). Beside a limit that judges (`max_increase_points: 1` with
    `max_rate_pct: 50`) none is said: the check does not pass every canary."""
    out = []
    for field in LIMITS:
        v = getattr(check, field, None)
        if v is None:
            continue
        at, breaks = UNBREAKABLE.get(field, (math.inf, ""))
        if not v >= at:
            return []  # this limit judges
        q = f"{getattr(check, 'quantile', 0) * 100:g}"
        out.append((field, breaks.format(v=f"{v:g}", q=q, x=f"{1 + v / 100:g}", s=f"{v / 1000:g}")))
    return out

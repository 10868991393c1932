"""The metrics section of a policy, and the labels that pick one model, arm and namespace.

A query that matched the wrong labels would read another model's series, or
both arms as one, and the judge would compare a thing with itself. So the
identity labels of each metric family (`SOURCE_LABELS`) are declared here,
beside the `metrics` section that may rename them, and `check_identity`
refuses at load time any override or extra matcher that would change what a
query reads. `metrics.queries.PRESETS` reads its label names from this table;
`metrics.queries.selector` checks again at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pydantic
from pydantic import Field, field_validator

from canary.policy_fields import LABEL_NAME, FieldProblem, Source, StepDuration, Strict, key_shown, label_name


@dataclass(frozen=True)
class SourceLabels:
    """The label names one metric family's queries depend on (metrics.queries.PRESETS reads
    them from here). Identity labels pick model, arm and namespace."""

    arm: str
    model: str
    namespace: str | None = None
    fixed: tuple[str, ...] = ()  # constant matchers metrics.labels may replace (istio's reporter)
    matched: tuple[str, ...] = ()  # labels the family's own queries match or split on
    lacks: tuple[tuple[str, str], ...] = ()  # (check kind, why) this family has no metric for


SOURCE_LABELS: dict[str, SourceLabels] = {
    "model": SourceLabels("model_version", "model_name", matched=("outcome", "state")),
    "istio": SourceLabels("destination_version", "destination_service_name", "destination_service_namespace",
                          fixed=("reporter",), matched=("response_code", "grpc_response_status"),
                          lacks=(("prediction_shift", "no prediction histogram (Envoy sees requests, not outputs): "
                                  "use source 'model', or name the histogram in the check's `metric`"),
                                 ("feature_missing", "no feature-missing gauge: use source 'model'"))),
    "triton": SourceLabels("version", "model",
                           lacks=(("latency", "no latency histogram (Triton exports only cumulative µs counters, so "
                                   "no quantile can be computed): use source 'model' or 'istio'"),
                                  ("prediction_shift", "no prediction histogram: use source 'model', or name the "
                                   "histogram in the check's `metric`"),
                                  ("feature_missing", "no feature-missing gauge: use source 'model'"))),
}
QUERY_LABELS = ("le",)  # every histogram query groups by it, whatever the source


class Metrics(Strict):
    source: Source = Field("model", description="default metric family for checks: model | istio | triton")
    arm_label: str | None = Field(None, description="label carrying the version; default per source",
                                  json_schema_extra={"pattern": LABEL_NAME})
    model_label: str | None = Field(None, description="label carrying the model name; default per source; '' for none",
                                    json_schema_extra={"pattern": "^$|" + LABEL_NAME})
    namespace_label: str | None = Field(
        None, description="label carrying the pod's Kubernetes namespace, matched to the rollout's on every query of "
        "the preset sources; default per source (istio: destination_service_namespace; model and triton: none, "
        "as their exporters have none: set it to the label your scrape adds, e.g. 'namespace', or a model of one "
        "name served in two namespaces is read as one)", json_schema_extra={"pattern": LABEL_NAME})
    labels: dict[str, str] = Field(default_factory=dict, description="extra equality matchers on every query, added to "
                                   "every vector selector of a custom check's PromQL too; never one of the identity "
                                   "labels (model, arm, namespace)",
                                   json_schema_extra={"propertyNames": {"pattern": LABEL_NAME}})
    histograms: Literal["classic", "native"] = Field(
        "classic", description="the form of a latency or prediction histogram read first where Prometheus has both: "
        "classic `_bucket` series, or a Prometheus native histogram (finer buckets); the other form is read when "
        "the first has no series")
    scrape_interval: StepDuration = Field(
        60.0, description="how often Prometheus scrapes the series the checks read (1s..24h; Prometheus's default "
        "1m): a canary arm with no series is read as 'no canary requests' (a hard breach where stable's count makes "
        "that beyond doubt) only once a step's window covers 3 of them, whatever the step's interval; the metrics "
        "preflight and `canary plan`'s layout read ask over 3 of them where the interval is shorter")

    @field_validator("arm_label", "model_label", "namespace_label")
    @classmethod
    def _label(cls, name: str | None, info: pydantic.ValidationInfo) -> str | None:
        return None if name is None else label_name(name, allow_empty=info.field_name == "model_label")

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            try:
                label_name(key)
            except ValueError as exc:
                raise FieldProblem(key_shown(key), str(exc)) from None
            if not value.strip():  # what a template renders for an unset variable (decision 675)
                raise FieldProblem(key, f'empty: the matcher {key}="" reads only the series without a {key} label '
                                        "(an unset variable in a template?); give the value, or remove the key")
        return labels


def source_lacks(source: str, kind: str, *, metric: str | None = None) -> str | None:
    """Why metric family `source` cannot serve a check of `kind` ('has no latency histogram ...'), or None
    when it can. A prediction_shift check that names its own `metric` reads that histogram from any family.
    The one table both the policy (at load time) and `metrics.queries` (at query time) read."""
    if kind == "prediction_shift" and metric:
        return None
    return dict(SOURCE_LABELS[source].lacks).get(kind)


def identity_labels(metrics: Metrics, source: str) -> dict[str, str]:
    """role -> label name of the matchers that pick one model, arm and namespace ('' model: none)."""
    sl = SOURCE_LABELS[source]
    out = {"model label": sl.model if metrics.model_label is None else metrics.model_label,
           "arm label": metrics.arm_label or sl.arm, "namespace label": metrics.namespace_label or sl.namespace}
    return {role: name for role, name in out.items() if name}


def check_identity(metrics: Metrics, source: str) -> None:
    """Refuse what would make a query read another model, another arm or both arms as one."""
    sl = SOURCE_LABELS[source]
    ident = identity_labels(metrics, source)
    protected = {**{name: role for role, name in ident.items()},
                 **{n: f"default {r}" for r, n in (("model label", sl.model), ("arm label", sl.arm)) if n not in ident.values()}}
    used = {name: f"a label the queries of source {source!r} match or split on themselves"
            for name in sl.matched + QUERY_LABELS}
    if ident.get("arm label") == ident.get("model label"):
        raise FieldProblem("metrics.arm_label",
                           f"the arm label and the model label must differ (both {ident['arm label']!r})")
    if metrics.namespace_label:  # one label for two roles, or one the queries match themselves (decision 745)
        ns = metrics.namespace_label
        other = next((role for role, name in ident.items() if name == ns and role != "namespace label"), None)
        clash = f"the {other} too" if other else (
            f"a fixed matcher of source {source!r}" if ns in sl.fixed else used.get(ns))
        if clash:
            raise FieldProblem("metrics.namespace_label", f"{ns!r} cannot be the namespace label: it is {clash}")
    for role, name in ident.items():
        clash = (f"the namespace label of source {source!r}" if name == sl.namespace else
                 f"a fixed matcher of source {source!r}" if name in sl.fixed else used.get(name))
        if clash and role != "namespace label":
            field = "metrics.arm_label" if role == "arm label" else "metrics.model_label"
            raise FieldProblem(field, f"{name!r} cannot be the {role}: it is {clash}")
    for key in metrics.labels:
        if key in protected:
            raise FieldProblem(f"metrics.labels.{key}", f"the {protected[key]} of source {source!r}: it picks which "
                               "series a query reads and cannot be overridden (the arms would read the same, or "
                               "another model's, series)")
        if key in used:  # the key is in the field, not said again (decision 545)
            raise FieldProblem(f"metrics.labels.{key}", f"{used[key]}: a matcher on it would change what counts as "
                               "an error, a bucket or a feature")

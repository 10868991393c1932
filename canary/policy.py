"""The rollout policy: schema, YAML loading, validation with file and field.

A policy is what a release engineer writes once and reviews like code, so every
mistake is caught at load time, before anything touches traffic: unknown keys,
wrong types, weights outside 0..100 or not increasing, a check without any
threshold, a label that would make a query read the wrong series, a custom
query with unbalanced brackets. Errors are `PolicyError(file, field, message)`;
malformed input of any kind (bytes, bombs, nesting) gives one, never another
exception.

Values are strict, because a coerced value is a silent surprise mid-rollout:

- numbers are finite (``.inf``/``.nan`` are refused), integers are whole
  numbers (``5.0`` is not an int, a boolean is never a number);
- booleans are ``true``/``false``: YAML 1.1's ``yes``/``no``/``on``/``off``
  are refused when unquoted (PyYAML would read ``on`` as True, kubectl too) and
  a string is never a boolean;
- strings stay strings: a label value, name or query written as a number is an
  error, not stringified, since YAML has already changed it (``1.10`` -> 1.1,
  ``010`` -> 8, ``1:30`` -> 90); quote it. Integers must be plain decimal, and
  dates stay the text that was written. Duplicate keys are refused.
- durations are '500ms'/'30s'/'5m'/'1h' or seconds, each within bounds that
  keep a rollout sane: at least 1 s and at most 24 h for the step interval,
  the look period and the no-data deadline (a step longer than a day is a unit
  mistake, e.g. ms written as s, and a Prometheus window that long outlives
  most retention), at most 10 000 planned looks per rollout (the judge's
  alpha-spending plan is computed over every look), a Triton probe every
  0.1 s .. 10 min (a dead canary keeps its traffic for failures x interval).

Pydantic is used (rather than hand-written checks) because it gives, from one
declaration, both precise field paths in errors and the JSON Schema that
`canary policy schema` prints for editors. The PromQL-template lexer lives here
(not in metrics/) so that a policy is checked without importing the metrics
layer; `metrics.queries.render_custom` uses the same lexer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canary.errors import PolicyError

LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL, _METRIC = re.compile(LABEL_NAME), re.compile(METRIC_NAME)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_LOOKS = 10_000
PLACEHOLDERS = ("model", "version", "namespace", "window")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class SourceLabels:
    """The label names one metric family's queries depend on (metrics.queries.PRESETS mirrors
    them; a unit test keeps the two equal). Identity labels pick model, arm and namespace."""

    arm: str
    model: str
    namespace: str | None = None
    fixed: tuple[str, ...] = ()  # constant matchers metrics.labels may replace (istio's reporter)
    matched: tuple[str, ...] = ()  # labels the family's own queries match or split on


SOURCE_LABELS: dict[str, SourceLabels] = {
    "model": SourceLabels("model_version", "model_name", matched=("outcome", "state")),
    "istio": SourceLabels("destination_version", "destination_service_name", "destination_service_namespace",
                          fixed=("reporter",), matched=("response_code",)),
    "triton": SourceLabels("version", "model"),
}
QUERY_LABELS = ("le",)  # every histogram query groups by it, whatever the source


class _At(ValueError):
    """A validation error naming the field it is about, below where pydantic places it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _show(value: Any, limit: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = "<a very long number>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label_name(name: str, *, allow_empty: bool = False) -> str:
    """A valid Prometheus label name, not reserved (`__` prefix); raises ValueError."""
    if allow_empty and name == "":
        return name
    if not _LABEL.match(name) or name.startswith("__"):
        raise ValueError(f"{_show(name)} is not a valid Prometheus label name "
                         "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
    return name


def parse_duration(value: Any) -> float:
    """'500ms', '10s', '5m', '1h' or a number of seconds -> seconds (a finite float > 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a duration must be like '30s', '5m' or a number of seconds")
    try:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match:
                raise ValueError(f"{_show(value)} is not a duration (use e.g. '500ms', '30s', '5m', '1h')")
            seconds = float(match.group(1)) * _UNIT[match.group(2)]
        else:
            seconds = float(value)
    except OverflowError:
        raise ValueError("a duration must be finite") from None
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def _fmt_s(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def _duration(lo: float, hi: float) -> Any:
    def bounded(seconds: float) -> float:
        if not lo <= seconds <= hi:
            raise ValueError(f"{_fmt_s(seconds)} is out of range: use {_fmt_s(lo)} .. {_fmt_s(hi)}")
        return seconds

    schema = {"anyOf": [{"type": "number", "minimum": lo, "maximum": hi},
                        {"type": "string", "pattern": _DURATION.pattern}]}
    return Annotated[float, pydantic.BeforeValidator(parse_duration), pydantic.AfterValidator(bounded),
                     pydantic.WithJsonSchema(schema)]


def _pair(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # YAML has no tuples


StepDuration = _duration(1.0, 86400.0)
ProbeDuration = _duration(0.1, 600.0)
Source = Literal["model", "istio", "triton"]


def scan_promql(template: str) -> tuple[list[tuple[str, str, str | None]], str]:
    """Split a PromQL template into (text, context, placeholder) pieces, and the context at its end.

    context: "" in code, '"' / "'" / "`" inside that string (its quotes included),
    "#" in a comment (to the end of the line). A `{identifier}` outside comments
    is one piece, named by `placeholder`. Backslash escapes count inside "" and ''.
    """
    pieces: list[tuple[str, str, str | None]] = []
    ctx, i, n = "", 0, len(template)
    while i < n:
        ch = template[i]
        m = _PLACEHOLDER.match(template, i) if ctx != "#" else None
        if m:
            pieces.append((m.group(0), ctx, m.group(1)))
            i = m.end()
            continue
        if ctx in ('"', "'") and ch == "\\" and i + 1 < n:
            pieces.append((template[i : i + 2], ctx, None))
            i += 2
            continue
        if not ctx:
            ctx = ch if ch in "\"'`#" else ""
            pieces.append((ch, ctx, None))
        else:
            pieces.append((ch, ctx, None))
            if (ctx == "#" and ch == "\n") or (ctx != "#" and ch == ctx):
                ctx = ""
        i += 1
    return pieces, ctx


def check_promql(template: str) -> str:
    """What can be checked of a custom query without a server: balanced brackets, closed
    strings, known placeholders only, and name placeholders inside double quotes."""
    if not template.strip():
        raise ValueError("the query is empty")
    pieces, end = scan_promql(template)
    stack: list[tuple[str, int]] = []
    pos = 0
    for text, ctx, name in pieces:
        if name is not None and name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} at offset {pos} "
                             "(known: {model}, {version}, {namespace}, {window})")
        if name not in (None, "window") and ctx != '"':
            raise ValueError(f"placeholder {{{name}}} at offset {pos} must stand inside a double-quoted "
                             f'string, e.g. model_name="{{{name}}}" (only there are values escaped)')
        if name is None and ctx in ('"', "'") and text == "\n":
            raise ValueError(f"unterminated string at offset {pos}: a {ctx}-quoted string cannot span lines")
        if name is None and not ctx and text in "([{)]}":
            if text in "([{":
                stack.append((text, pos))
            elif not stack or "([{"[")]}".index(text)] != stack[-1][0]:
                raise ValueError(f"unbalanced {text!r} at offset {pos}")
            else:
                stack.pop()
        pos += len(text)
    if end in ('"', "'", "`"):
        raise ValueError(f"unterminated {end}-quoted string")
    if stack:
        raise ValueError(f"{stack[-1][0]!r} at offset {stack[-1][1]} is never closed")
    return template


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _CheckBase(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$", description="unique name, used in logs")
    source: Source | None = Field(None, description="metric family; defaults to metrics.source")
    hard: bool = Field(False, description="a failure rolls back at once, without waiting for failure.max_failed_looks")


class LatencyCheck(_CheckBase):
    """Canary latency quantile vs stable (relative) and/or vs a ceiling (absolute)."""

    kind: Literal["latency"]
    quantile: float = Field(0.95, gt=0, lt=1)
    max_increase_pct: float | None = Field(None, ge=0, description="canary quantile at most this % above stable")
    max_ms: float | None = Field(None, gt=0, description="canary quantile must stay below this many ms")

    @model_validator(mode="after")
    def _one_threshold(self) -> "LatencyCheck":
        if self.max_increase_pct is None and self.max_ms is None:
            raise ValueError("latency check needs max_increase_pct and/or max_ms")
        return self


class ErrorRateCheck(_CheckBase):
    kind: Literal["error_rate"]
    max_increase_points: float | None = Field(None, ge=0, le=100, description="canary error % at most this many points above stable")
    max_rate_pct: float | None = Field(None, ge=0, le=100, description="canary error % ceiling")

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
        if base is not None and not _METRIC.match(base):
            raise ValueError(f"{_show(name)} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        return name

    @model_validator(mode="after")
    def _one_threshold(self) -> "PredictionShiftCheck":
        if self.max_psi is None and self.max_js is None:
            raise ValueError("prediction_shift check needs max_psi and/or max_js")
        return self


class FeatureMissingCheck(_CheckBase):
    kind: Literal["feature_missing"]
    max_increase_points: float | None = Field(None, ge=0, le=100)
    max_rate_pct: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_threshold(self) -> "FeatureMissingCheck":
        if self.max_increase_points is None and self.max_rate_pct is None:
            raise ValueError("feature_missing check needs max_increase_points and/or max_rate_pct")
        return self


class CustomCheck(_CheckBase):
    """Any PromQL returning one number per arm.

    Templates may use {model}, {version}, {namespace} (inside double-quoted
    strings only: the values are escaped there) and {window}; any other
    {identifier} is refused as a typo, so a literal `{word}` cannot be written.
    Use `query` for one template applied to both arms, or `stable_query` and
    `canary_query`. Brackets and strings are checked at load time; the server
    checks the rest.
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
        return self

    def template(self, arm: str) -> str:
        if self.query is not None:
            return self.query
        return self.stable_query if arm == "stable" else self.canary_query  # type: ignore[return-value]


Check = Annotated[
    Union[LatencyCheck, ErrorRateCheck, PredictionShiftCheck, FeatureMissingCheck, CustomCheck],
    Field(discriminator="kind"),
]


class Analysis(_Strict):
    interval: StepDuration = Field(60.0, description="minimum time at a step before it can be promoted (1s..24h)")
    look_every: StepDuration = Field(10.0, description="how often the judge looks during a step (early failure; 1s..interval)")
    min_canary_requests: int = Field(100, ge=0, le=10**12, description="canary requests needed in a step before it can pass")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="false-rollback probability budget for the whole rollout")

    @model_validator(mode="after")
    def _look_within_interval(self) -> "Analysis":
        if self.look_every > self.interval:
            raise ValueError("look_every must not exceed interval")
        return self


class Failure(_Strict):
    max_failed_looks: int = Field(2, ge=1, le=1000, description="consecutive failed looks before rollback")
    no_data_deadline: StepDuration = Field(300.0, description="a step inconclusive or unmeasurable this long ends the rollout (1s..24h)")
    on_deadline: Literal["rollback", "hold"] = Field("rollback", description="'hold' keeps weights and waits for a person")


class Metrics(_Strict):
    source: Source = Field("model", description="default metric family for checks: model | istio | triton")
    arm_label: str | None = Field(None, description="label carrying the version; default per source",
                                  json_schema_extra={"pattern": LABEL_NAME})
    model_label: str | None = Field(None, description="label carrying the model name; default per source; '' for none",
                                    json_schema_extra={"pattern": "^$|" + LABEL_NAME})
    labels: dict[str, str] = Field(default_factory=dict, description="extra equality matchers on every query; never one "
                                   "of the identity labels (model, arm, namespace)",
                                   json_schema_extra={"propertyNames": {"pattern": LABEL_NAME}})

    @field_validator("arm_label", "model_label")
    @classmethod
    def _label(cls, name: str | None, info: pydantic.ValidationInfo) -> str | None:
        return None if name is None else label_name(name, allow_empty=info.field_name == "model_label")

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            try:
                label_name(key)
            except ValueError as exc:
                raise _At(key, str(exc)) from None
        return labels


class TritonGate(_Strict):
    enabled: bool = True
    protocol: Literal["http", "grpc"] = "http"
    warmup_requests: int = Field(10, ge=0, le=10_000)
    sample_file: str | None = Field(None, min_length=1, description="JSON inputs for warm-up, relative to the policy file")
    output_range: Annotated[tuple[float, float], pydantic.BeforeValidator(_pair)] | None = None
    probe_interval: ProbeDuration = Field(1.0, description="0.1s..10m")
    probe_failures: int = Field(2, ge=1, le=1000, description="consecutive failed readiness probes before rollback")

    @field_validator("output_range")
    @classmethod
    def _ordered(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        if pair is not None and not pair[0] < pair[1]:
            raise ValueError("output_range must be [low, high] with low < high")
        return pair


class Gates(_Strict):
    triton: TritonGate | None = None


class Policy(_Strict):
    """A rollout policy (see policies/default.yaml for a commented example)."""

    steps: list[int] = Field(min_length=1, description="canary weights in %, strictly increasing; the last must be 100 and is the promotion (not judged)")
    analysis: Analysis = Analysis()
    failure: Failure = Failure()
    metrics: Metrics = Metrics()
    route: str | None = Field(None, min_length=1, description="name of the VirtualService HTTP route to shift; default: the only one")
    checks: list[Check] = Field(min_length=1)
    gates: Gates = Gates()

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        for i, w in enumerate(steps):
            if not 0 < w <= 100:
                raise ValueError(f"steps[{i}]={_show(w)}: each weight must be within 1..100")
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise ValueError(f"steps[{i}]={steps[i]}: weights must increase strictly")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100 (full promotion)")
        if len(steps) < 2:
            raise ValueError("at least one step below 100 is needed: the canary is judged at each step below 100")
        return steps

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for c in checks:
            if c.name in seen:
                raise ValueError(f"check name {c.name!r} is used twice")
            seen.add(c.name)
        return checks

    @model_validator(mode="after")
    def _bounded_looks(self) -> "Policy":
        a = self.analysis
        looks = math.ceil(a.interval / a.look_every - 1e-9) * sum(1 for w in self.steps if w < 100)
        if looks > MAX_LOOKS:
            raise _At("analysis.look_every", f"{looks} planned looks (interval/look_every per step below 100); "
                      f"at most {MAX_LOOKS}: look less often")
        return self

    @model_validator(mode="after")
    def _identity_labels(self) -> "Policy":
        for source in self.sources():
            check_identity(self.metrics, source)
        return self

    def sources(self) -> list[str]:
        """Every metric family this policy reads: metrics.source and the checks' own."""
        return sorted({self.metrics.source} | {c.source for c in self.checks if c.source})

    def source_of(self, check: Any) -> str:
        return check.source or self.metrics.source


def identity_labels(metrics: Metrics, source: str) -> dict[str, str]:
    """role -> label name of the matchers that pick one model, arm and namespace ('' model: none)."""
    sl = SOURCE_LABELS[source]
    out = {"model label": sl.model if metrics.model_label is None else metrics.model_label,
           "arm label": metrics.arm_label or sl.arm}
    if sl.namespace:
        out["namespace label"] = sl.namespace
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
        raise _At("metrics.arm_label", f"the arm label and the model label must differ (both {ident['arm label']!r})")
    for role, name in ident.items():
        clash = (f"the namespace label of source {source!r}" if name == sl.namespace else
                 f"a fixed matcher of source {source!r}" if name in sl.fixed else used.get(name))
        if clash and role != "namespace label":
            field = "metrics.arm_label" if role == "arm label" else "metrics.model_label"
            raise _At(field, f"{name!r} cannot be the {role}: it is {clash}")
    for key in metrics.labels:
        if key in protected:
            raise _At(f"metrics.labels.{key}", f"{key!r} is the {protected[key]} of source {source!r}; it picks which "
                      "series a query reads and cannot be overridden (the arms would read the same, or another "
                      "model's, series)")
        if key in used:
            raise _At(f"metrics.labels.{key}", f"{key!r} is {used[key]}; a matcher on it would change what counts "
                      "as an error, a bucket or a feature")


def _field_path(loc: tuple[Any, ...]) -> str:
    """Turn pydantic's loc into 'checks[1].max_ms', dropping discriminator tags."""
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif not (isinstance(prev, int) and part in _KIND_TAGS):
            out += f".{part}" if out else str(part)
        prev = part
    return out


_KIND_TAGS = {"latency", "error_rate", "prediction_shift", "feature_missing", "custom"}
_TYPE_MESSAGES = {
    "string_type": "must be a string", "bool_type": "must be true or false", "int_type": "must be a whole number",
    "float_type": "must be a number", "finite_number": "must be a finite number (not .inf or .nan)",
}


def _message(err: Any) -> str:
    kind, value = err["type"], err.get("input")
    msg = _TYPE_MESSAGES.get(kind, err["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key (typo?)"
    elif kind == "string_type" and isinstance(value, (bool, int, float)):
        msg += f", not {_show(value)}: quote it in YAML (which reads 1.10 as the number 1.1)"
    elif kind in _TYPE_MESSAGES and value is not None and isinstance(value, (bool, int, float, str)):
        msg += f", not {_show(value)}" + (" (a boolean)" if isinstance(value, bool) else "")
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg if len(msg) <= 500 else msg[:497] + "..."


def _where(err: Any) -> str:
    field = _field_path(tuple(err["loc"]))
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, _At):
        field = f"{field}.{inner.field}" if field else inner.field
    return field


MAX_VALUES, MAX_DEPTH = 10_000, 32


def _too_big(raw: Any) -> str | None:
    """Bound what validation walks: a YAML alias bomb is small text but a huge (or cyclic) graph."""
    stack, seen = [(raw, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES} values (YAML aliases expanding?)"
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in value)
    return None


def parse_policy(raw: Any, *, file: str = "<policy>") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(file, "", "a policy must be a YAML mapping at the top level")
    problem = _too_big(raw)
    if problem:
        raise PolicyError(file, "", f"too large: {problem}")
    try:
        return Policy.model_validate(raw)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        msg, more = _message(errors[0]), len(errors) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise PolicyError(file, _where(errors[0]), msg) from None


class _Loader(yaml.SafeLoader):
    """safe_load without YAML 1.1's silent conversions (see the module docstring), and bounded:
    composing stops at MAX_VALUES nodes or MAX_DEPTH levels, long before the pure-Python
    parser has spent a second or Python's recursion limit is near."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes = self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes, self.depth = self.nodes + 1, self.depth + 1
        if self.nodes > MAX_VALUES or self.depth > MAX_DEPTH:
            what = f"more than {MAX_VALUES} values" if self.nodes > MAX_VALUES else f"deeper than {MAX_DEPTH} levels"
            raise yaml.composer.ComposerError(None, None, f"too large: {what}", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag != "tag:yaml.org,2002:merge" and isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_show(key_node.value)}",
                                                            key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _strict_scalar(kind: str, ok: str, hint: str) -> None:
    base, pattern = yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{kind}"], re.compile(ok)

    def construct(loader: _Loader, node: Any) -> Any:
        text = str(node.value)
        problem = hint if not pattern.match(text) else "too many digits" if len(text) > 40 else ""
        if problem:
            raise yaml.constructor.ConstructorError(None, None, f"{_show(text)}: {problem}", node.start_mark)
        return base(loader, node)

    _Loader.add_constructor(f"tag:yaml.org,2002:{kind}", construct)


_strict_scalar("bool", r"(?i)(true|false)\Z", "write true or false (or quote it for a string)")
_strict_scalar("int", r"[-+]?(0|[1-9][0-9_]*)\Z", "write integers in plain decimal (YAML 1.1 reads 010 as 8 "
               "and 1:30 as 90), or quote it for a string")
_strict_scalar("float", r"[^:]*\Z", "no base-60 numbers (YAML 1.1 reads 1:30.0 as 90.0); quote it for a string")
_Loader.yaml_implicit_resolvers = {  # dates stay the text that was written
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
MAX_BYTES = 256 << 10  # 80x the shipped default policy; keeps the pure-Python parser under ~0.5 s on any input


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.context or ''} {exc.problem or ''}".strip()
    return " ".join(str(exc).split())


def parse_policy_text(text: str | bytes, *, file: str = "<policy>") -> Policy:
    """Policy from YAML text (a file's, a ConfigMap's), with the strict loader."""
    if len(text) > MAX_BYTES:
        raise PolicyError(file, "", f"too large: more than {MAX_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(file, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(file, "", f"not valid YAML: {_yaml_problem(exc)[:300]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # a constructor's own (!!float abc)
        raise PolicyError(file, "", f"not valid YAML: {type(exc).__name__}: {str(exc)[:200]}") from None
    return parse_policy(raw, file=file)


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise PolicyError(str(path), "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_policy_text(data, file=str(path))


def json_schema() -> str:
    return json.dumps(Policy.model_json_schema(), indent=2, sort_keys=True)

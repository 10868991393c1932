"""The rollout policy: schema, YAML loading, validation with file and field.

A policy is what a release engineer writes once and reviews like code, so every
mistake is caught at load time: unknown keys, wrong types, weights outside
0..100 or not increasing, a check without any threshold. Errors are
`PolicyError(file, field, message)`; nothing is touched before a policy loads.

Pydantic is used (rather than hand-written checks) because it gives, from one
declaration, both precise field paths in errors and the JSON Schema that
`canary policy schema` prints for editors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canary.errors import PolicyError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'500ms', '10s', '5m', '1h' or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like '30s', '5m' or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. '500ms', '30s', '5m', '1h')")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, pydantic.BeforeValidator(parse_duration)]
Source = Literal["model", "istio", "triton"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _CheckBase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="unique name, used in logs")
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
    metric: str | None = Field(None, description="histogram metric name; defaults to the source's prediction metric")
    max_psi: float | None = Field(None, gt=0, description="population stability index ceiling (0.1 small, 0.25 large)")
    max_js: float | None = Field(None, gt=0, le=1, description="Jensen-Shannon distance ceiling (base 2, 0..1)")

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

    Templates may use {model}, {version}, {namespace}, {window}; label values are
    escaped before substitution. Use `query` for one template applied to both
    arms, or `stable_query` and `canary_query`.
    """

    kind: Literal["custom"]
    query: str | None = None
    stable_query: str | None = None
    canary_query: str | None = None
    higher_is_better: bool = False
    max_value: float | None = Field(None, description="canary value must not exceed (or, higher_is_better, fall below) this")
    max_ratio: float | None = Field(None, gt=0, description="canary/stable ratio limit (lower is better: at most; else at least 1/x)")
    max_increase: float | None = Field(None, ge=0, description="canary - stable at most this (worse direction)")

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
    interval: Duration = Field(60.0, description="minimum time at a step before it can be promoted")
    look_every: Duration = Field(10.0, description="how often the judge looks during a step (early failure)")
    min_canary_requests: int = Field(100, ge=0, description="canary requests needed in a step before it can pass")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="false-rollback probability budget for the whole rollout")

    @model_validator(mode="after")
    def _look_within_interval(self) -> "Analysis":
        if self.look_every > self.interval:
            raise ValueError("look_every must not exceed interval")
        return self


class Failure(_Strict):
    max_failed_looks: int = Field(2, ge=1, description="consecutive failed looks before rollback")
    no_data_deadline: Duration = Field(300.0, description="a step inconclusive or unmeasurable this long ends the rollout")
    on_deadline: Literal["rollback", "hold"] = Field("rollback", description="'hold' keeps weights and waits for a person")


class Metrics(_Strict):
    source: Source = Field("model", description="default metric family for checks: model | istio | triton")
    arm_label: str | None = Field(None, description="label carrying the version; default per source")
    model_label: str | None = Field(None, description="label carrying the model name; default per source")
    labels: dict[str, str] = Field(default_factory=dict, description="extra equality matchers on every query")


class TritonGate(_Strict):
    enabled: bool = True
    protocol: Literal["http", "grpc"] = "http"
    warmup_requests: int = Field(10, ge=0)
    sample_file: str | None = Field(None, description="JSON inputs for warm-up, relative to the policy file")
    output_range: tuple[float, float] | None = None
    probe_interval: Duration = 1.0
    probe_failures: int = Field(2, ge=1, description="consecutive failed readiness probes before rollback")


class Gates(_Strict):
    triton: TritonGate | None = None


class Policy(_Strict):
    """A rollout policy (see policies/default.yaml for a commented example)."""

    steps: list[int] = Field(min_length=1, description="canary weights in %, strictly increasing; the last must be 100 and is the promotion (not judged)")
    analysis: Analysis = Analysis()
    failure: Failure = Failure()
    metrics: Metrics = Metrics()
    route: str | None = Field(None, description="name of the VirtualService HTTP route to shift; default: the only one")
    checks: list[Check] = Field(min_length=1)
    gates: Gates = Gates()

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        for i, w in enumerate(steps):
            if not 0 < w <= 100:
                raise ValueError(f"steps[{i}]={w}: each weight must be within 1..100")
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

    def source_of(self, check: Any) -> str:
        return check.source or self.metrics.source


def _field_path(loc: tuple[Any, ...]) -> str:
    """Turn pydantic's loc into 'checks[1].max_ms', dropping discriminator tags."""
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(prev, int) and part in _KIND_TAGS):
            out += f".{part}" if out else str(part)
        prev = part
    return out


_KIND_TAGS = {"latency", "error_rate", "prediction_shift", "feature_missing", "custom"}


def parse_policy(raw: Any, *, file: str = "<policy>") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(file, "", "a policy must be a YAML mapping at the top level")
    try:
        return Policy.model_validate(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise PolicyError(file, field, msg) from None


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), "", f"not valid YAML: {exc}") from None
    return parse_policy(raw, file=str(path))


def json_schema() -> str:
    return json.dumps(Policy.model_json_schema(), indent=2, sort_keys=True)

"""The rollout policy: its top-level sections, and loading it with file and field in every error.

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
  keep a rollout sane (see `policy_fields`), and at most 10 000 planned looks
  per rollout (the judge's alpha-spending plan is computed over every look).

Pydantic is used (rather than hand-written checks) because it gives, from one
declaration, both precise field paths in errors and the JSON Schema that
`canary policy schema` prints for editors.

The policy is split by what changes together; this module is the one to
import, and re-exports the public names of the others:

- `policy_fields`: value types shared by every section (names, durations, strict models);
- `policy_checks`: the kinds of check; `policy_promql`: the custom-query lexer;
- `policy_metrics`: the metrics section and the identity labels it must not override;
- `policy_yaml`: the strict, bounded YAML loader.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, field_validator, model_validator

from canary.errors import PolicyError
from canary.model import route_name_problem
from canary.policy_checks import (
    Check,
    CustomCheck,
    ErrorRateCheck,
    FeatureDriftCheck,
    FeatureMissingCheck,
    LatencyCheck,
    PredictionShiftCheck,
    unbreakable_limits,
)
from canary.policy_fields import (
    FieldProblem,
    ProbeDuration,
    Source,
    StepDuration,
    Strict,
    as_tuple,
    key_shown,
    label_name,
    not_ascii,
    parse_duration,
    show,
)
from canary.policy_metrics import (
    QUERY_LABELS,
    SOURCE_LABELS,
    Metrics,
    check_identity,
    identity_labels,
    source_lacks,
)
from canary.policy_promql import check_promql, scan_promql
from canary.policy_yaml import MAX_BYTES, MAX_SAMPLE_BYTES, load_text, read_file, read_samples, too_big

__all__ = [
    "MAX_BYTES", "MAX_LOOKS", "MAX_SAMPLE_BYTES", "QUERY_LABELS",
    "SOURCE_LABELS", "Analysis", "Check", "CustomCheck", "ErrorRateCheck", "Failure", "FeatureDriftCheck", "FeatureMissingCheck",
    "Gates",
    "LatencyCheck", "Metrics", "Policy", "PredictionShiftCheck", "ProbeDuration", "Source",
    "StepDuration", "TritonGate", "check_identity", "check_promql", "identity_labels", "json_schema", "label_name",
    "load_policy", "parse_duration", "parse_policy", "parse_policy_text", "read_samples", "scan_promql",
    "source_lacks",
]
MAX_LOOKS = 10_000


class Analysis(Strict):
    interval: StepDuration = Field(60.0, description="minimum time at a step before it can be promoted (1s..24h)")
    look_every: StepDuration = Field(10.0, description="how often the judge looks during a step (early failure; 1s..interval)")
    min_canary_requests: int = Field(100, ge=0, le=10**12, description="canary requests needed in a step before it can pass")
    alpha: float = Field(0.01, ge=1e-6, lt=0.5, description="false-rollback probability budget for the whole rollout "
                         "(at least 1e-6: a smaller budget split over the checks' tests and looks leaves a level "
                         "no look's data can reach, so every rollout would end at its deadline)")

    @model_validator(mode="after")
    def _look_within_interval(self) -> "Analysis":
        if self.look_every > self.interval:
            raise ValueError(f"look_every ({self.look_every:g}s) must not exceed interval ({self.interval:g}s)")
        return self


class Failure(Strict):
    max_failed_looks: int = Field(1, ge=1, le=1000, description="consecutive failed looks before rollback (1: the first failed look)")
    no_data_deadline: StepDuration = Field(300.0, description="a step still inconclusive or unmeasurable this long after its interval ends the rollout (1s..24h)")
    on_deadline: Literal["rollback", "hold"] = Field("rollback", description="'hold' keeps weights and waits for a person")


def _pair(value: Any) -> Any:
    """`[low, high]`: a list of another length was "Tuple should have at most 2 items after validation"."""
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise ValueError(f"must be [low, high] (two numbers), not a list of {len(value)}")
    return as_tuple(value)


class TritonGate(Strict):
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
            raise ValueError(f"must be [low, high] with low < high, not {list(pair)}")
        return pair

    @model_validator(mode="after")
    def _warmup_uses(self) -> "TritonGate":
        """`output_range` and `sample_file` act through the warm-up requests alone: with `warmup_requests: 0`
        none is sent, so the range was never applied and the samples never sent, and the policy read as if they
        were (decision 213). Refused, naming the field that would do nothing. A gate turned off (`enabled:
        false`) keeps its settings for when it is turned on again: that is the switch's purpose, not refused."""
        if self.enabled and self.warmup_requests == 0:
            for name in ("output_range", "sample_file"):
                if getattr(self, name) is not None:
                    raise FieldProblem(name, f"has no effect with warmup_requests: 0 (no warm-up request is sent, "
                                             f"so {'no answer is checked against it' if name == 'output_range' else 'no sample is sent'}): "
                                             "set warmup_requests to 1 or more, or remove it")
        return self


class Gates(Strict):
    triton: TritonGate | None = None


class Policy(Strict):
    """A rollout policy (see policies/default.yaml for a commented example)."""

    steps: list[int] = Field(min_length=1, description="canary weights in %, strictly increasing; the last must be 100 and is the promotion (not judged)",
                             json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100},
                                                "uniqueItems": True})  # what `_steps` checks, for editors
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
                raise FieldProblem(f"[{i}]", f"must be within 1..100 (a weight in %), not {show(w)}")
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise FieldProblem(f"[{i}]", f"must be above steps[{i - 1}] ({steps[i - 1]}), not {steps[i]}: "
                                             "weights must increase strictly")
        if steps[-1] != 100:
            # the weights increase strictly within 1..100 (checked above), so the last is below 100: append it
            raise ValueError(f"the last step must be 100 (the promotion), not {steps[-1]}: end the list with 100, "
                             f"e.g. {[*steps, 100]}")
        if len(steps) < 2:
            raise ValueError("at least one step below 100 is needed: the canary is judged at each step below 100")
        return steps

    @field_validator("route")
    @classmethod
    def _route(cls, route: str | None) -> str | None:
        problem = route_name_problem(route or "")
        if problem:
            raise ValueError(f"{route!r} {problem}: no route of a VirtualService is meant by it")
        return route

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[Any]) -> list[Any]:
        seen: dict[str, int] = {}
        for i, c in enumerate(checks):
            if c.name in seen:
                raise FieldProblem(f"[{i}].name", f"{c.name!r} is used twice (checks[{seen[c.name]}].name too)")
            seen[c.name] = i
        return checks

    @model_validator(mode="after")
    def _bounded_looks(self) -> "Policy":
        a = self.analysis
        looks = math.ceil(a.interval / a.look_every - 1e-9) * sum(1 for w in self.steps if w < 100)
        if looks > MAX_LOOKS:
            raise FieldProblem("analysis.look_every", f"{looks} planned looks (interval/look_every per step below 100); "
                      f"at most {MAX_LOOKS}: look less often")
        return self

    @model_validator(mode="after")
    def _failures_within_deadline(self) -> "Policy":
        """max_failed_looks consecutive failed looks must fit in a step's deadline (interval +
        no_data_deadline): more would keep a failing canary on traffic until the deadline ends it."""
        a, f = self.analysis, self.failure
        deadline = a.interval + f.no_data_deadline
        if f.max_failed_looks * a.look_every > deadline:
            raise FieldProblem("failure.max_failed_looks",
                               f"{f.max_failed_looks} failed looks, one every {a.look_every:g}s, take longer than a "
                               f"step's deadline (analysis.interval + failure.no_data_deadline = {deadline:g}s); "
                               f"at most {max(1, int(deadline // a.look_every))}")
        return self

    @model_validator(mode="after")
    def _identity_labels(self) -> "Policy":
        for source in self.sources():
            check_identity(self.metrics, source)
        return self

    @model_validator(mode="after")
    def _sources_serve_checks(self) -> "Policy":
        """Each check's metric family has the metric it reads: a latency check on source triton (no
        latency histogram) was accepted here and refused only by promote, after the policy was reviewed."""
        for i, check in enumerate(self.checks):
            source = self.source_of(check)
            why = source_lacks(source, check.kind, metric=getattr(check, "metric", None))
            if why:
                whose = (f"source {source!r}" if check.source else
                         f"no source given, so metrics.source {source!r}, which")
                raise FieldProblem(f"checks[{i}].source", f"a {check.kind} check: {whose} has {why}")
        return self

    def sources(self) -> list[str]:
        """Every metric family this policy reads: metrics.source and the checks' own."""
        return sorted({self.metrics.source} | {c.source for c in self.checks if c.source})

    def source_of(self, check: Any) -> str:
        return check.source or self.metrics.source


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
            shown = key_shown(part) if isinstance(part, str) else str(part)  # 'alpha\u200b', not `alpha`
            out += f".{shown}" if out else shown
        prev = part
    return out


_KIND_TAGS = {"latency", "error_rate", "prediction_shift", "feature_missing", "feature_drift", "custom"}
_TYPE_MESSAGES = {
    "string_type": "must be a string", "bool_type": "must be true or false", "int_type": "must be a whole number",
    "float_type": "must be a number", "finite_number": "must be a finite number (not .inf or .nan)",
}


def _sections() -> dict[type, str]:
    """Each section's model and how an author names it: `failure`, `gates.triton`, `latency checks`."""
    out: dict[type, str] = {Policy: "the top level", Analysis: "analysis", Failure: "failure", Metrics: "metrics",
                            Gates: "gates", TritonGate: "gates.triton"}
    for cls in (LatencyCheck, ErrorRateCheck, PredictionShiftCheck, FeatureMissingCheck, FeatureDriftCheck, CustomCheck):
        out[cls] = f"{cls.model_fields['kind'].annotation.__args__[0]} checks"
    return out


def _section_at(loc: tuple[Any, ...]) -> type | None:
    """The model an unknown key at pydantic's `loc` was written in (None when not one of `_sections`)."""
    kinds = {name.partition(" ")[0]: cls for cls, name in _sections().items() if name.endswith(" checks")}
    cls: Any = Policy
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if part in kinds and cls is None:  # checks[i].<kind>: the discriminator's tag
            cls = kinds[part]
            continue
        field = cls.model_fields.get(part) if cls is not None else None
        if field is None:
            return None
        cls = next((t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if t in _sections()), None)
    return cls


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """The message for an unknown key: the name of its own section it is closest to, and the section it
    belongs to when it is another's field (`max_ms` on an error_rate check is a latency check's, not a typo
    of `max_js`; `analysis.max_failed_looks` belongs in `failure`)."""
    import difflib

    key, here, sections = str(loc[-1]) if loc else "", _section_at(loc), _sections()
    own = sorted(here.model_fields) if here is not None else []
    near = difflib.get_close_matches(key, own, n=1, cutoff=0.75)
    elsewhere = [name for cls, name in sections.items() if cls is not here and key in cls.model_fields]
    if elsewhere:
        parts = [n for n in elsewhere if not n.endswith(" checks")]
        kinds = [n.partition(" ")[0] for n in elsewhere if n.endswith(" checks")]
        where = (f"belongs in `{parts[0]}`" if parts and parts[0] != "the top level" else "belongs at the top level"
                 if parts else "is a field of every check" if len(kinds) == len(_KIND_TAGS)
                 else f"is a field of {' and '.join(kinds)} checks")
        name = sections.get(here, "") if here is not None else ""
        check = name.partition(" ")[0] if name.endswith(" checks") else ""
        a_check = f"{'an' if check[:1] in 'aeiou' else 'a'} {check} check"
        there = (f"`{key}` {where}, not in {a_check}" if check else
                 f"`{key}` {where}, not {'at ' + name if name == 'the top level' else f'in `{name}`'}" if name
                 else f"`{key}` {where}")
        if near:
            return f"unknown key (did you mean `{near[0]}`? {there})"
        takes = [f for f in own if f not in ("kind", "name", "source", "hard")]
        return f"unknown key: {there}" + (f" ({a_check} takes {', '.join(takes)})" if check else "")
    if not near:  # a typo of a field of another section, written there
        names = sorted({f for cls in sections for f in cls.model_fields} - {key})
        near = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    return f"unknown key (did you mean `{near[0]}`?)" if near else "unknown key (typo?)"


def _message(err: Any) -> str:
    kind, value = err["type"], err.get("input")
    msg = _TYPE_MESSAGES.get(kind, err["msg"])
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        loc = tuple(err.get("loc") or ())
        odd = not_ascii(str(loc[-1])) if loc else ""
        msg = _unknown_key(loc) + (f"; the key holds {odd}" if odd else "")
    elif kind in _SHAPE_MESSAGES:  # pydantic's words name our classes ("instance of Analysis")
        msg = f"{_SHAPE_MESSAGES[kind]}, not {_what(value)}"
    elif kind == "missing":
        msg = "required, and missing"
    elif kind == "union_tag_not_found":
        msg = f"required, and missing: one of {', '.join(sorted(_KIND_TAGS))}"
    elif kind == "union_tag_invalid":
        import difflib

        near = difflib.get_close_matches(str(ctx.get("tag")), sorted(_KIND_TAGS), n=1, cutoff=0.6)
        msg = (f"{show(ctx.get('tag'))} is not one of {', '.join(sorted(_KIND_TAGS))}"
               + (f" (did you mean `{near[0]}`?)" if near else "") + _holds(ctx.get("tag")))
    elif kind == "literal_error":
        msg = f"must be {ctx.get('expected', 'one of the allowed values')}, not {_what(value)}{_holds(value)}"
    elif kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        msg = "must not be empty"
    elif kind in ("too_long", "string_too_long") and isinstance(value, (str, list)):
        unit = "characters" if isinstance(value, str) else "items"
        msg = f"must have at most {ctx.get('max_length')} {unit}, not {len(value)}"
    elif kind == "string_pattern_mismatch":
        allowed = _PATTERNS.get(str(ctx.get("pattern")), f"must match {ctx.get('pattern')}")
        msg = f"{allowed}, not {show(value)}"
    elif kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):  # past a float: 1e400
        msg = f"must be a number within a 64-bit float (about 1.8e308), not {show(value)}"
    elif kind == "string_type" and isinstance(value, (bool, int, float)):
        msg += f", not {show(value)}: quote it in YAML (which reads 1.10 as the number 1.1)"
    elif kind in _TYPE_MESSAGES and value is not None and isinstance(value, (bool, int, float, str)):
        msg += f", not {show(value)}" + (" (a boolean)" if isinstance(value, bool) else "")
        if isinstance(value, str) and kind in ("float_type", "int_type") and _yaml_number_text(value):
            msg += ": " + _number_hint(value, whole=kind == "int_type")
    elif kind in _RANGE and isinstance(value, (int, float)) and not isinstance(value, bool):
        limit = next(iter((err.get("ctx") or {}).values()), None)  # pydantic's {"lt": 0.5}
        msg = f"must be {_RANGE[kind]} {show(limit)}, not {show(value)}" + _percent_hint(err.get("loc"), value)
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg if len(msg) <= 500 else msg[:497] + "..."


# a fraction field written as a percentage ("quantile: 95", "alpha: 1"): refused "must be < 1.0, not 95", which says
# what is wrong but not what was meant (decision 703)
# the field -> (how its percentage is said, the percentages whose fraction the field takes)
_PERCENT_OF = {"quantile": ("p{}", lambda v: 1 < v < 100), "alpha": ("{}%", lambda v: 1 <= v < 50)}


def _percent_hint(loc: Any, value: float) -> str:
    """': a fraction: 0.95 for p95' for a `quantile` (or '0.01 for 1%' for an `alpha`) whose hundredth the field
    takes, else ''."""
    said, fits = _PERCENT_OF.get(loc[-1] if isinstance(loc, tuple) and loc else None, ("", lambda v: False))
    return f": a fraction: {value / 100:g} for {said.format(f'{value:g}')}" if fits(value) else ""


_PATTERNS = {r"^[A-Za-z0-9_.-]+$": "must be letters, digits, '_', '.' and '-' only (a check's name is a label in logs "
                                   "and metrics)"}
_SHAPE_MESSAGES = {
    "model_type": "must be a mapping (key: value)", "model_attributes_type": "must be a mapping (key: value)",
    "dict_type": "must be a mapping (key: value)", "list_type": "must be a list", "tuple_type": "must be a list",
}


def _holds(value: Any) -> str:
    """'; it holds U+043E CYRILLIC SMALL LETTER O, which is not ASCII' for a choice written with a character
    past printable ASCII ('rоllback' reads as 'rollback'), else ''."""
    odd = not_ascii(value) if isinstance(value, str) else ""
    return f"; it holds {odd}" if odd else ""


def _what(value: Any) -> str:
    """What a wrong value is, in the policy author's words."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the text {show(value)}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _key_text(key: Any) -> str:
    """A mapping key YAML did not read as text, as it was (most likely) written."""
    if key is None:
        return "~ (null: `~`, `null` or nothing before the colon)"
    if isinstance(key, bool):
        return f"{str(key).lower()} (a boolean)"
    if isinstance(key, (int, float)):
        return f"{show(key)} (a number)"
    return f"{show(key)} (a {type(key).__name__})"


def _non_text_key(raw: Any, path: str = "") -> tuple[str, str] | None:
    """(field, message) for the first mapping key that is not text (YAML reads `5:` as a number, `~:` as
    null); pydantic's answer named it `[5]` (a list index) or `None`."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str):
                where = f"under {path}" if path else "at the top level"
                written = str(key).lower() if isinstance(key, bool) else None if key is None else show(key)
                fix = f'quote it if it is one ("{written}": ...)' if written else "give it a name"
                return path, f"key {_key_text(key)} {where}: keys are names (text); {fix}"
            found = _non_text_key(value, f"{path}.{key_shown(key)}" if path else key_shown(key))
            if found:
                return found
    elif isinstance(raw, (list, tuple)):
        for i, value in enumerate(raw):
            found = _non_text_key(value, f"{path}[{i}]")
            if found:
                return found
    return None


# pydantic's range errors ("Input should be less than 0.5") in the words of the other messages
_RANGE = {"less_than": "<", "less_than_equal": "<=", "greater_than": ">", "greater_than_equal": ">="}


_SIGNED_FRACTION = re.compile(r"[-+]\.[0-9][0-9_]*")  # '-.5': text to YAML 1.1, whose '.5' is a number


def _yaml_number_text(text: str) -> bool:
    """'1e9', '2E-3', '-.5': a number to Python, a string to YAML 1.1 (which needs '1.0e+9', '-0.5')."""
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower() or bool(_SIGNED_FRACTION.fullmatch(text.strip()))


def _number_hint(text: str, *, whole: bool) -> str:
    """How to write `text` (a number to Python, text to YAML 1.1: '1e9', '1.0e9', '1.0E9') so that YAML
    reads it as the number, checked with the loader itself: YAML 1.1 needs a dot *and* a signed exponent
    ('1.0e+9'); an integer field needs plain decimal digits (a float is never an int)."""
    x = float(text)
    if not math.isfinite(x):
        return f"{text.strip()} is beyond a 64-bit float"
    if whole:
        if not x.is_integer():
            return "this field takes a whole number"
        return f"write it in plain decimal digits: {int(x)}" if abs(x) < 1e18 else "write it in plain decimal digits"
    if _SIGNED_FRACTION.fullmatch(text.strip()):  # output_range: [-.5, .5] read its first value as text
        return f"YAML 1.1 reads a signed fraction as a number only with a digit before the dot: write " \
               f"{text.strip()[0]}0{text.strip()[1:]}"
    mantissa, letter, exponent = re.split(r"([eE])", text.strip(), maxsplit=1)
    candidate = (mantissa if "." in mantissa else mantissa + ".0") + letter + (
        exponent if exponent[:1] in ("+", "-") else "+" + exponent)
    try:
        read = load_text(f"v: {candidate}").get("v")
    except PolicyError:
        read = None
    plain = f", or {int(x)}" if x.is_integer() and abs(x) < 1e16 else ""
    if isinstance(read, float) and read == x:
        return f"YAML 1.1 reads an exponent as a number only with a dot and a sign: write {candidate}{plain}"
    return f"YAML 1.1 reads an exponent as a number only with a dot and a sign (e.g. 1.0e+9){plain}"


def _where(err: Any) -> str:
    field = _field_path(tuple(err["loc"]))
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, FieldProblem):  # below the field: a key, or an item (`[2]`: `steps[2]`)
        field = f"{field}{'' if inner.field.startswith('[') else '.'}{inner.field}" if field else inner.field
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # about the check's `kind`
        field = f"{field}.kind"
    return field


def parse_policy(raw: Any, *, file: str = "<policy>") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(file, "", "empty (null, or a file of nothing but blank lines and comments): a policy is a mapping with at least "
                          "`steps` and `checks`" if raw is None else
                          f"a policy must be a YAML mapping at the top level, not {_what(raw)}")
    problem = too_big(raw)
    if problem:
        raise PolicyError(file, "", f"too large: {problem}")
    bad_key = _non_text_key(raw)
    if bad_key:
        raise PolicyError(file, *bad_key)
    try:
        return Policy.model_validate(raw)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        problems = list(dict.fromkeys((_where(e), _message(e)) for e in errors))
        raise PolicyError(file, problems[0][0], problems[0][1], problems=problems) from None


def parse_policy_text(text: str | bytes, *, file: str = "<policy>") -> Policy:
    """Policy from YAML text (a file's, a ConfigMap's), with the strict loader."""
    return parse_policy(load_text(text, file=file), file=file)


def load_policy(path: str | Path) -> Policy:
    """The policy in file `path`, validated, and the files it names (`gates.triton.sample_file`, relative
    to it) readable JSON with a non-empty `requests` list: a missing sample file found only at the gate,
    after the claim, recorded a good model as rolled back. PolicyError naming the file and the field."""
    path = Path(path)
    policy = parse_policy_text(read_file(path), file=str(path))
    gate = policy.gates.triton
    if gate is not None and gate.enabled and gate.sample_file:  # a gate turned off reads nothing
        sample = path.parent / gate.sample_file
        try:
            text = read_samples(sample)
        except (OSError, ValueError) as exc:
            raise PolicyError(str(path), SAMPLE_FIELD, f"{gate.sample_file}: cannot read {sample} "
                              f"({getattr(exc, 'strerror', None) or exc}; relative to the policy file)") from None
        parse_samples(text, file=str(path), name=gate.sample_file)
    return policy


SAMPLE_FIELD = "gates.triton.sample_file"


def advisories(policy: Policy) -> list[tuple[str, str]]:
    """(field, message) for what a valid policy says that will not hold as written: said by `policy validate`,
    `plan` and `promote` (`policy.advisory`), never refused (the rollout stays safe: slower, or rolled back).

    `analysis.interval` shorter than `metrics.scrape_interval`: a step's data grow once per scrape, so no step
    can show a pass within its interval, and `plan`'s time "if each passes at its interval" was too short
    (Flagger's docs ask the same: an analysis interval above the scrape interval).

    A latency limit on the scale of another unit (decision 206): `max_ms` below 1 (seconds, as Prometheus
    histograms count them: `0.25` for 250 ms) rolled back every canary as shown bad, stable being as far
    beyond it; `max_increase_pct` below 1 (a fraction: `0.2` for +20%) asked for a canary shown within
    +0.2%, which only buckets finer than x1.001 and more requests than a step holds can show, so every step
    ended at its deadline."""
    out = []
    a, m = policy.analysis, policy.metrics
    if a.interval < m.scrape_interval:
        out.append(("analysis.interval", f"{a.interval:g}s is shorter than metrics.scrape_interval "
                    f"({m.scrape_interval:g}s): a step's data grow only once per scrape, so a step takes a scrape "
                    "interval or more before its data can show a pass; set it to at least the scrape "
                    "interval (or metrics.scrape_interval to what your Prometheus really scrapes at)"))
    for i, c in enumerate(policy.checks):
        if not isinstance(c, LatencyCheck):
            continue
        if c.max_ms is not None and c.max_ms < 1:
            out.append((f"checks[{i}].max_ms", f"{c.max_ms:g} is below one millisecond: the limit is in milliseconds "
                        f"(a ceiling of {c.max_ms * 1000:g} ms is `max_ms: {c.max_ms * 1000:g}`, not seconds as "
                        "Prometheus's histograms count them); unless the model's p95 really is under "
                        f"{c.max_ms:g} ms where this is measured (a service mesh adds about a millisecond, and Istio's "
                        "smallest buckets are 0.5 and 1 ms), a canary as fast as stable is shown beyond it and "
                        "rolled back as bad"))
        if c.max_increase_pct is not None and c.max_increase_pct < 1:
            out.append((f"checks[{i}].max_increase_pct", f"{c.max_increase_pct:g} allows +{c.max_increase_pct:g}%: "
                        f"the limit is in percent (+{c.max_increase_pct * 100:g}% is `max_increase_pct: "
                        f"{c.max_increase_pct * 100:g}`, not a fraction); a canary as good as stable is shown within "
                        "so small a margin only with latency buckets finer than half of it and far more requests "
                        "than a step usually holds, else each step ends at its deadline as failure.on_deadline says "
                        "(`canary plan --rps R` says by which step)"))
    for i, c in enumerate(policy.checks):
        for field, breaks in unbreakable_limits(c):
            out.append((f"checks[{i}].{field}", f"{getattr(c, field):g}: a canary breaks it only with {breaks}, so "
                        "the check passes every other canary, however much worse than stable; set the limit meant, or "
                        "remove the check if it is to judge nothing"))
    return out


def parse_samples(text: str, *, file: str, name: str) -> dict[str, Any]:
    """Warm-up sample JSON text (`{"requests": [{input: nested list}, ...]}`, docs/triton.md), parsed;
    PolicyError naming `file`, the field and `name` when it is not JSON or not that shape."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PolicyError(file, SAMPLE_FIELD, f"{name}: not JSON ({exc})") from None
    reqs = raw.get("requests") if isinstance(raw, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise PolicyError(file, SAMPLE_FIELD, f'{name}: expected {{"requests": [{{input: nested list}}, ...]}}')
    return raw  # type: ignore[no-any-return]


def json_schema() -> str:
    return json.dumps(Policy.model_json_schema(), indent=2, sort_keys=True)

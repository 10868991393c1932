"""The value types every part of a policy is built from: names, durations, strict models.

Kept apart from the policy's sections (`policy_checks`, `policy_metrics`,
`policy`) so that each of them declares its fields with the same rules and
the same error wording, without importing one another.

Values are strict, because a coerced value is a silent surprise mid-rollout:
`Strict` models forbid unknown keys, never coerce (a boolean is never a
number, a string is never a boolean) and refuse ``.inf``/``.nan``. Durations
are Go-style ('500ms', '30s', '1m30s', '2h') or seconds, each within bounds that keep a rollout
sane: at least 1 s and at most 24 h for the step interval, the look period and
the no-data deadline (a step longer than a day is a unit mistake, e.g. ms
written as s, and a Prometheus window that long outlives most retention), a
Triton probe every 0.1 s .. 10 min (a dead canary keeps its traffic for
failures x interval).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from canary.analysis.shown import duration, duration_beside, integer, spelled

LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL, METRIC_PATTERN = re.compile(LABEL_NAME, re.ASCII), re.compile(METRIC_NAME, re.ASCII)
# Go's time.ParseDuration grammar ('1m30s', '500ms', '1.5h'; units ns us µs ms s m h), or a plain number of
# seconds; ASCII digits only, spaces or tabs around it. Checked here because durationpy, which does the
# arithmetic, also takes Unicode digits and units Go does not know (d, w, mm for months, y).
_GO_PART = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h)"
_DURATION = re.compile(rf"^[ \t]*(?:[0-9]+(?:\.[0-9]+)?|\+?(?:{_GO_PART})+)[ \t]*$")
_SECONDS = re.compile(r"^[ \t]*[0-9]+(?:\.[0-9]+)?[ \t]*$")


class FieldProblem(ValueError):
    """A validation error naming the field it is about, below where pydantic places it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def show(value: Any, limit: int = 40) -> str:
    """`value` as it may stand in an error message: its repr, cut to `limit` characters. A number at a few
    significant digits, never cut (`shown.integer`: `1e+40 (41 digits)`, not the first 37 of them and "...");
    a number written out as text past `limit` with the number it spells (`'0.0000000000...' (304 characters:
    the number 1e-301)`, whose cut read as 0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value)
    try:
        text = repr(value)
    except ValueError:  # a list holding an int too long to print
        text = "<a very long number>"
    if len(text) <= limit:
        return text
    number = spelled(value) if isinstance(value, str) else None
    if number is not None:
        return f"{text[:12]}...' ({len(value)} characters: the number {number})"
    return text[: limit - 3] + "..."


def not_ascii(text: str) -> str:
    """'U+0430 CYRILLIC SMALL LETTER A, which is not ASCII' (or 'U+001B, a control character') for the first
    character of `text` past printable ASCII, else '': a key, a choice or a duration holding one reads right on screen (a zero-width space, a
    lookalike letter pasted from a chat or a document) and is no name this file knows (decision 671)."""
    for ch in text:
        if not (ch.isascii() and ch.isprintable()):
            name = unicodedata.name(ch, "")
            return f"U+{ord(ch):04X}{' ' + name if name else ''}, " + (
                "a control character" if ch.isascii() else "which is not ASCII")
    return ""


def key_shown(key: str) -> str:
    """A mapping key as it stands in a field path: as written when it is printable ASCII, else escaped
    (`'alpha\\u200b'`), so a key that reads like a real field is seen not to be one."""
    return key if key.isascii() and key.isprintable() else ascii(key)


def label_name(name: str, *, allow_empty: bool = False) -> str:
    """A valid Prometheus label name, not reserved (`__` prefix); raises ValueError."""
    if allow_empty and name == "":
        return name
    if not _LABEL.fullmatch(name) or name.startswith("__"):
        raise ValueError(f"{show(name)} is not a valid Prometheus label name "
                         "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
    return name


# a unit as people write it (and as other tools take it) -> Go's, for "'5min' is not a duration: did you mean '5m'?"
_UNITS = {**dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), "ms"),
          **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
          **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
          **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h")}


def _go_spelling(value: str) -> str:
    """': did you mean '5m'?' for a number with a unit Go does not spell so ('5min', '10 min', '30sec',
    '2 hours', '5M'), else ''."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", value, re.ASCII)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    return f": did you mean '{m.group(1)}{unit}'?" if m and unit else ""


def parse_duration(value: Any) -> float:
    """A Go-style duration ('1m30s', '500ms', '2h', '90s') or a number of seconds (90, '90') -> seconds,
    a finite float > 0; ValueError quoting the bad value. The parse is durationpy's, the library the
    Kubernetes client uses for Go durations."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a duration must be like '30s', '5m', '1m30s' or a number of seconds")
    try:
        if isinstance(value, str):
            if not _DURATION.fullmatch(value):
                odd = not_ascii(value)  # '５m' was "did you mean '５m'?"
                hint = f" (it holds {odd})" if odd else _go_spelling(value)
                raise ValueError(f"{show(value)} is not a duration{hint} (use e.g. '500ms', '30s', '1m30s', '2h')")
            if _SECONDS.fullmatch(value):
                seconds = float(value)
            else:
                import durationpy

                seconds = durationpy.from_str(value.strip()).total_seconds()
        else:
            seconds = float(value)
    except OverflowError:
        raise ValueError(f"{show(value)}: a duration must be finite") from None
    except ValueError as exc:  # durationpy.DurationError: out of range
        if "is not a duration" in str(exc):
            raise
        raise ValueError(f"{show(value)} is too long a duration") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{show(value)}: a duration must be finite")
    if seconds <= 0:
        raise ValueError(f"{show(value)}: a duration must be positive")
    return seconds


def _duration(lo: float, hi: float) -> Any:
    def bounded(seconds: float) -> float:
        if not lo <= seconds <= hi:
            shown = duration_beside(seconds, lo if seconds < lo else hi)  # "1h is out of range: .. 1h" (decision 835)
            raise ValueError(f"{shown} is out of range: use {duration(lo)} .. {duration(hi)}")
        return seconds

    schema = {"anyOf": [{"type": "number", "minimum": lo, "maximum": hi},
                        {"type": "string", "pattern": _DURATION.pattern}]}
    return Annotated[float, pydantic.BeforeValidator(parse_duration), pydantic.AfterValidator(bounded),
                     pydantic.WithJsonSchema(schema)]


def as_tuple(value: Any) -> Any:
    """A YAML list as the tuple a field declares (YAML has no tuples)."""
    return tuple(value) if isinstance(value, list) else value


MAX_STEP_S = 86400.0  # the longest analysis.interval (and any step duration): a day
StepDuration = _duration(1.0, MAX_STEP_S)
ProbeDuration = _duration(0.1, 600.0)
Source = Literal["model", "istio", "triton"]


class Strict(BaseModel):
    # no docstring: pydantic would put it in the JSON Schema of every section
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

"""Load exported measurements (JSON) for `canary judge`, offline and reproducible.

Why a file format: a verdict should be re-checkable away from the cluster (in
a post-mortem, a ticket, a test), from exactly the numbers the controller
saw. The format is documented in docs/judge.md:

    {"policy": {...} | "policy_file": "path (relative to this file)",
     "look": 0,                       (informational: the levels do not depend on it)
     "step": 0,                       (optional: the 0-based step index; with "window" it places the
                                       window in the rollout: the level of its own failure test)
     "window": 0,                     (resumes of the current step so far: the pass level)
     "prior": {"<check>/<test>": [S, I]},   (earlier windows' failure evidence; an exact test's
                                       "<check>/<test>.exact" as the rollout state records it)
     "canary_weight": 10,             (optional: the canary's traffic %, 0-100, over the window)
     "checks": {"<check name>": {"stable": ARM, "canary": ARM}}}

    ARM = {"bounds": [..., "+Inf"], "counts": [...cumulative...]}   histogram
          (prediction_shift: optional "requests", the arm's requests; its rows are not requests)
        | {"events": x, "total": y}                                  counts
        | {"value": v, "n": n}                                       scalar
        | {"error": "message"}                                       could not measure
    (the stable arm absent or null: its series does not exist, read as {"error"})

Every problem is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canary.analysis.judge import MAX_COUNT
from canary.analysis.sequential import Z_CLIP, plausible, sub_levels
from canary.analysis.shown import integer
from canary.errors import ConfigError, NoData, PolicyError
from canary.filekind import read_input
from canary.model import ArmData, Counts, FeatureCounts, Histogram, Scalar
from canary.policy import Policy, load_policy, parse_policy

_TOP = {"policy", "policy_file", "look", "step", "window", "pass_ratio", "prior", "checks", "canary_weight"}
MAX_LOOK = 1_000_000  # a look every second for 11 days
MAX_WINDOW = 10_000  # operator resumes of one step
MAX_STEP = 10_000  # steps of a policy (`canary serve`: closed windows)


@dataclass(frozen=True)
class Exported:
    """One look's inputs to the judge, as loaded from a file."""

    policy: Policy
    look: int
    measurements: dict[str, tuple[ArmData, ArmData] | Exception]
    window: int = 0
    prior: dict[str, tuple[float, float]] | None = None
    pass_ratio: float = 1.0
    canary_weight: int | None = None
    step: int | None = 0  # None: a prior was given without "step" (the window's own test is skipped)


def _bad(file: str, field: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {field}: {message}" if field else f"{file}: {message}")


def load_exported(path: str | Path) -> Exported:
    path = Path(path)
    try:
        raw = unique_keys(json.loads(read_input(path), object_pairs_hook=_Pairs, parse_float=_float),
                          file=str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); export the measurements as JSON") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        from canary.filekind import not_json

        raise ConfigError(f"{path}: not valid JSON: {str(exc)[:200]}{not_json(path)}; --input takes one look's "
                          "counts as one JSON object (docs/judge.md; e.g. docs/examples/judge-input.json)") from None
    return parse_exported(raw, file=str(path), base=path.parent)


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as json.loads read it: its (key, value) pairs in order, duplicates kept."""


class _Overflow(str):
    """A JSON number beyond a 64-bit float (`1e309`), kept as the text it was: json.loads reads it as
    inf, so a last bound of 1e309 was +Inf and a count of 1e309 said "got inf", which the input never wrote."""


def _float(text: str) -> float | _Overflow:
    x = float(text)
    return _Overflow(text) if math.isinf(x) else x


def unique_keys(value: Any, *, file: str, path: str = "") -> Any:
    """JSON read with `object_pairs_hook=_Pairs`, as plain dicts and lists; ConfigError naming the file and
    the key's path (`policy.checks[0].max_ms`) when an object has a key twice. json.loads keeps the last
    one silently: an inline policy with "max_ms": 100 then 100000 passed a canary that 100 fails, and
    `canary policy validate` (YAML) refuses the same text."""
    if isinstance(value, _Pairs):
        out: dict[str, Any] = {}
        for key, item in value:
            where = f"{path}.{key}" if path else key
            if key in out:
                raise _bad(file, where, f"duplicate key {json.dumps(key)[:80]} (each key once: JSON readers differ "
                                        "on which value wins)")
            out[key] = unique_keys(item, file=file, path=where)
        return out
    if isinstance(value, list):
        return [unique_keys(item, file=file, path=f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def parse_exported(raw: Any, *, file: str = "<input>", base: Path | None = None) -> Exported:
    if not isinstance(raw, dict):
        raise _bad(file, "", "the top level must be a JSON object")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise _bad(file, unknown[0], "unknown key (typo?)")
    policy = _policy(raw, file, base)
    look = raw.get("look", 0)
    if isinstance(look, bool) or not isinstance(look, int) or not 0 <= look <= MAX_LOOK:
        raise _bad(file, "look", f"must be an integer from 0 to {MAX_LOOK:,}, got {_shown(look)}")
    window = raw.get("window", 0)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MAX_WINDOW:
        raise _bad(file, "window", f"must be an integer from 0 to {MAX_WINDOW:,}, got {_shown(window)}")
    step = raw.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise _bad(file, "step", f"must be an integer from 0 to {MAX_STEP:,} (the 0-based step index), got {_shown(step)}")
    ratio = raw.get("pass_ratio", 1)
    ratio = _num(ratio, file, "pass_ratio") if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) else ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1 <= ratio < math.inf:
        raise _bad(file, "pass_ratio", "must be a number >= 1 (canary requests now / at the window's first look "
                                       f"that could pass), got {_shown(ratio)}")
    weight = raw.get("canary_weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100):
        raise _bad(file, "canary_weight", f"must be an integer from 0 to 100 (the canary's traffic %), got {_shown(weight)}")
    prior = _prior(raw.get("prior", {}), file, policy)
    placed: int | None = step if "step" in raw or not prior else None  # a prior without a step: not placed
    checks = raw.get("checks")
    if not isinstance(checks, dict):
        raise _bad(file, "checks", "must be an object mapping check names to {stable, canary}")
    kinds = {c.name: c.kind for c in policy.checks}
    names = set(kinds)
    measurements: dict[str, tuple[ArmData, ArmData] | Exception] = {}
    for name, entry in checks.items():
        field = f"checks.{name}"
        if name not in names:
            raise _bad(file, field, f"no such check in the policy (known: {', '.join(sorted(names))})")
        if not isinstance(entry, dict):
            raise _bad(file, field, "must be an object with 'stable' and 'canary'")
        extra = sorted(set(entry) - {"stable", "canary"})
        if extra:
            raise _bad(file, f"{field}.{extra[0]}", "unknown key (typo?)")
        arms = []
        for arm in ("stable", "canary"):
            if arm == "stable" and entry.get(arm) is None:
                # no stable series (absent or null): read as the judge reads a stable that was not measured,
                # so limits on the canary alone (max_ms, max_rate_pct, max_value) are judged (issue 9,
                # defect 5); it was "missing", exit 2, for a canary over its max_value
                arms.append(NoData(f"{field}.stable: {'null' if arm in entry else 'absent'} in the input "
                                   "(no stable series)"))
                continue
            if arm not in entry:
                raise _bad(file, f"{field}.{arm}", "missing")
            if (isinstance(entry[arm], dict) and "requests" in entry[arm]
                    and kinds[name] not in ("prediction_shift", "feature_drift")):
                raise _bad(file, f"{field}.{arm}.requests", f"a {kinds[name]} check counts requests itself; "
                           "'requests' is for prediction_shift and feature_drift arms (rows are not requests)")
            _lacking(entry[arm], kinds[name], file, f"{field}.{arm}")
            data = _arm(entry[arm], file, f"{field}.{arm}")
            want = _SHAPES.get(kinds[name])
            if want is not None and not isinstance(data, (want[0], Exception)):
                raise _bad(file, f"{field}.{arm}", f"{kinds[name]} checks read {want[1]} (or {{error}}), "
                                                   f"got keys {sorted(entry[arm])}")
            if kinds[name] == "latency" and isinstance(data, Histogram) and data.bounds[0] < 0:
                raise _bad(file, f"{field}.{arm}.bounds[0]", f"a latency bound is a duration (ms, >= 0), got {data.bounds[0]:g}")
            arms.append(data)
        # each arm's {"error"} stays in its place: a limit on the canary alone is judged without stable
        both_failed = all(isinstance(a, Exception) for a in arms)
        measurements[name] = arms[1] if both_failed else (arms[0], arms[1])  # type: ignore[assignment]
    return Exported(policy=policy, look=look, measurements=measurements, window=window, prior=prior,
                    pass_ratio=float(ratio), canary_weight=weight, step=placed)


def _prior(raw: Any, file: str, policy: Policy) -> dict[str, tuple[float, float]]:
    """Earlier windows' evidence, {"check/test": [S, I]} as a rollout state records it."""
    if not isinstance(raw, dict):
        raise _bad(file, "prior", 'must be an object {"<check>/<test>": [S, I]}')
    names = {c.name for c in policy.checks}
    tests = set(sub_levels(policy))  # "check/test" of every statistical sub-test, as the state records them
    out = {}
    for key, v in raw.items():
        field = f"prior.{key}"
        if not isinstance(key, str) or key.rpartition("/")[0] not in names:
            raise _bad(file, field, f"must be '<check>/<test>' with a check of the policy "
                                    f"(known: {', '.join(sorted(names))})")
        if (key.endswith(".exact") and key.rpartition(".")[0] in tests  # an exact test's pooled part (decision 151)
                and key.rpartition("/")[2] in ("ceiling.exact", "increase.exact")):
            out[key] = _exact_prior(v, file, field, key.rpartition("/")[2].partition(".")[0])
            continue
        if key not in tests:  # a typo in the test name was ignored, and the evidence with it
            raise _bad(file, field, f"'{key.rpartition('/')[2]}' is not a statistical test of check "
                                    f"'{key.rpartition('/')[0]}' (this policy's: {', '.join(sorted(tests)) or 'none'})")
        _overflowed(v, file, field)
        if (not isinstance(v, list) or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise _bad(file, field, f"must be [S, I]: finite numbers, I >= 0, got {_shown(v, 60)}")
        v = [_num(x, file, f"{field}[{i}]") for i, x in enumerate(v)]  # a 400-digit integer: out of range, not a traceback
        if v[1] < 0:
            raise _bad(file, field, f"must be [S, I]: finite numbers, I >= 0, got {str(v)[:60]}")
        if not plausible(float(v[0]), float(v[1])):
            raise _bad(file, field, f"[S, I] = {str(v)[:60]} cannot be pooled window evidence: S must lie "
                                    f"within [-{Z_CLIP * math.sqrt(2):.2f} I, {40 * math.sqrt(2):.1f} I]")
        out[key] = (float(v[0]), float(v[1]))
    return out


def _exact_prior(v: Any, file: str, field: str, test: str) -> tuple[float, float]:
    """An exact test's pooled part of earlier windows: a ceiling's [exceedances, requests] (0 <= x <= n), an
    increase's [log factor sum, windows] (each window's factor is at least 1 - INCREASE_LAMBDA)."""
    from canary.analysis.sequential import INCREASE_LAMBDA

    _overflowed(v, file, field)
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        raise _bad(file, field, f"must be a pair of finite numbers, got {_shown(v, 60)}")
    a, b = (_num(x, file, f"{field}[{i}]") for i, x in enumerate(v))
    if test == "ceiling" and not 0 <= a <= b:
        raise _bad(file, field, f"must be [exceedances, requests] with 0 <= exceedances <= requests, got {str(v)[:60]}")
    if test != "ceiling" and not (b >= 0 and b * math.log1p(-INCREASE_LAMBDA) - 1e-9 <= a <= 745.0 * b + 1e-9):
        raise _bad(file, field, f"must be [log factors, windows]: windows >= 0, each window's log factor in "
                                f"[{math.log1p(-INCREASE_LAMBDA):.3f}, 745], got {str(v)[:60]}")
    return float(a), float(b)


def _overflowed(v: Any, file: str, field: str) -> None:
    """A prior pair with a number beyond a float (1e309) is out of range at its index, not "got ['1e309', 1]"."""
    for i, x in enumerate(v if isinstance(v, list) else ()):
        if isinstance(x, _Overflow):
            _num(x, file, f"{field}[{i}]")


def _policy(raw: dict[str, Any], file: str, base: Path | None) -> Policy:
    if ("policy" in raw) == ("policy_file" in raw):
        raise _bad(file, "policy", "give exactly one of 'policy' (inline) or 'policy_file'")
    if "policy" in raw:
        try:
            return parse_policy(raw["policy"], file=f"{file}: policy")
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
    ref = raw["policy_file"]
    if not isinstance(ref, str) or not ref:
        raise _bad(file, "policy_file", "must be a path")
    p = Path(ref)
    path = p if p.is_absolute() or base is None else base / p
    if not path.is_file():
        where = ("" if p.is_absolute() else " (a relative path is read from the current folder)" if base is None
                 else f" (a relative path is read from the input file's folder, {str(base.resolve())[:200]})")
        raise _bad(file, "policy_file", f"no such file {ref[:200]!r}{where}")
    return load_policy(path)


def _shown(value: Any, width: int = 40) -> str:
    """A bad value as the input wrote it (JSON), cut to `width` characters; a number at a few significant digits
    (`1e+400`, not the first 40 of its 401 digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = str(value)
    return text[:width]


def _num(value: Any, file: str, field: str, *, inf_ok: bool = False) -> float:
    if isinstance(value, _Overflow):
        raise _bad(file, field, f"out of range: {value[:40]} is beyond a 64-bit float (about 1.8e308)")
    if inf_ok and value in ("+Inf", "Inf", "inf", "+inf"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(file, field, f"must be a number, got {_shown(value)}")  # as JSON wrote it: true, null, "3"
    try:
        x = float(value)
    except OverflowError:  # a 400-digit integer literal
        raise _bad(file, field, f"out of range: {_shown(value)}") from None
    if math.isnan(x) or (math.isinf(x) and not (inf_ok and x > 0)):
        raise _bad(file, field, f"must be a finite number{' or +Inf' if inf_ok else ''}, got {value!r}")
    return x


def _arm(raw: Any, file: str, field: str) -> ArmData | Exception:
    if not isinstance(raw, dict):
        raise _bad(file, field, "must be an object")
    keys = set(raw)
    shapes = [{"bounds", "counts"}, {"bounds", "counts", "requests"}, {"events", "total"}, {"value"}, {"value", "n"},
              {"error"}]
    if keys not in shapes and not (keys - {"requests"} and keys <= _FEATURE_KEYS | {"requests"}):
        raise _bad(file, field, "must be {bounds, counts[, requests]} | {events, total} | {value[, n]} | {error} | "
                                f"{{numeric, categorical, missing[, requests]}} (features), got keys {sorted(keys)}")
    requests = _count(raw["requests"], file, f"{field}.requests") if "requests" in raw else None
    try:
        if keys <= _FEATURE_KEYS | {"requests"}:
            return dataclasses.replace(_features(raw, file, field), requests=requests)
        if "error" in keys:
            return NoData(str(raw["error"]))
        if "bounds" in keys:
            return _histogram(raw["bounds"], raw["counts"], file, field, requests)
        if "events" in keys:
            events, total = _count(raw["events"], file, f"{field}.events"), _count(raw["total"], file, f"{field}.total")
            if events > total + 1e-9:  # (`Counts`' own tolerance)
                raise _bad(file, f"{field}.events", f"{_readable(events)} events exceed the total, {_readable(total)}")
            return Counts(events, total)
        n = _num(raw["n"], file, f"{field}.n") if "n" in raw else math.nan
        if n < 0:
            raise _bad(file, f"{field}.n", f"must be a request count >= 0, got {_shown(raw['n'])}")
        if n >= MAX_COUNT:
            raise _bad(file, f"{field}.n", _too_many(n))
        return Scalar(_num(raw["value"], file, f"{field}.value"), n)
    except ValueError as exc:  # the value types check their own invariants
        raise _bad(file, field, str(exc)) from None


_FEATURE_KEYS = {"numeric", "categorical", "missing"}
# what each check kind reads, as `_arm` parses it (a {bounds, counts} for an error rate was judged an ERROR, exit 4)
_SHAPES: dict[str, tuple[type, str]] = {
    "latency": (Histogram, "{bounds, counts}"), "prediction_shift": (Histogram, "{bounds, counts}"),
    "error_rate": (Counts, "{events, total}"), "feature_missing": (Counts, "{events, total}"),
    "feature_drift": (FeatureCounts, "{numeric, categorical, missing}"), "custom": (Scalar, "{value[, n]}"),
}


# the keys an arm of each kind cannot do without (feature_drift's parts are each optional)
_NEEDS: dict[str, frozenset[str]] = {
    "latency": frozenset({"bounds", "counts"}), "prediction_shift": frozenset({"bounds", "counts"}),
    "error_rate": frozenset({"events", "total"}), "feature_missing": frozenset({"events", "total"}),
    "custom": frozenset({"value"}),
}


def _lacking(raw: Any, kind: str, file: str, field: str) -> None:
    """An arm that has part of its kind's shape names the key it lacks: `{"events": 9}` for an error rate
    said "must be {bounds, counts[, requests]} | {events, total} | ... got keys ['events']" (decision 161)."""
    need = _NEEDS.get(kind)
    if need is None or not isinstance(raw, dict) or "error" in raw or need <= set(raw):
        return
    lacking = ", ".join(repr(k) for k in sorted(need - set(raw)))
    raise _bad(file, field, f"missing {lacking}: {kind} checks read {_SHAPES[kind][1]} (or {{error}}), "
                            f"got keys {sorted(raw)}")


def _features(raw: dict[str, Any], file: str, field: str) -> FeatureCounts:
    """A feature_drift arm: {"numeric": {feature: {bounds, counts}}, "categorical": {feature:
    {category: count}}, "missing": {feature: count}}, each part optional."""
    parts: dict[str, dict[str, Any]] = {}
    for part in ("numeric", "categorical", "missing"):  # (and "requests", read by `_arm`)
        got = raw.get(part, {})
        if not isinstance(got, dict):
            raise _bad(file, f"{field}.{part}", "must be an object keyed by feature name")
        parts[part] = got
    numeric = {}
    for name, h in parts["numeric"].items():
        where = f"{field}.numeric.{name}"
        if not isinstance(h, dict) or set(h) != {"bounds", "counts"}:
            raise _bad(file, where, "must be {bounds, counts}")
        got = _arm(h, file, where)
        assert isinstance(got, Histogram)
        numeric[name] = got
    categorical = {}
    for name, cats in parts["categorical"].items():
        where = f"{field}.categorical.{name}"
        if not isinstance(cats, dict) or not cats:
            raise _bad(file, where, "must be a non-empty object {category: count}")
        categorical[name] = {str(k): _count(v, file, f"{where}.{k}") for k, v in cats.items()}
    missing = {name: _count(v, file, f"{field}.missing.{name}") for name, v in parts["missing"].items()}
    return FeatureCounts(numeric=numeric, categorical=categorical, missing=missing)


def _count(value: Any, file: str, field: str) -> float:
    """A count: a finite number from 0 to below 2^53 (fractional: Prometheus' increase() extrapolates)."""
    x = _num(value, file, field)
    if x < 0:
        raise _bad(file, field, f"a count must be >= 0, got {_readable(x)}")
    if x >= MAX_COUNT:
        raise _bad(file, field, _too_many(x))
    return x


def _too_many(x: float) -> str:
    # the judge reads such an arm from Prometheus as an ERROR (`judge.MAX_COUNT`); in a file it is bad input
    return (f"{x:.4g} is not a count: 2^53 (about 9.007e15) or more is no exact integer in a float (a counter "
            "at 1,000,000 per second reaches it in 285 years)")


def _histogram(b: Any, c: Any, file: str, field: str, requests: float | None) -> Histogram:
    """A cumulative histogram, each bound and count checked where it is, so the error names the element
    (`checks.lat.canary.counts[3]`): counts from 0 to below 2^53, never decreasing; bounds increasing
    strictly, the last "+Inf"."""
    if not isinstance(b, list) or not isinstance(c, list):
        raise _bad(file, field, "bounds and counts must be lists")
    bounds = [_num(x, file, f"{field}.bounds[{i}]", inf_ok=True) for i, x in enumerate(b)]
    counts = [_count(x, file, f"{field}.counts[{i}]") for i, x in enumerate(c)]
    if not bounds:
        raise _bad(file, f"{field}.bounds", 'empty: a histogram has at least its "+Inf" bucket')
    if len(counts) != len(bounds):
        raise _bad(file, f"{field}.counts", f"{len(counts)} counts for {len(bounds)} bounds: one cumulative count "
                                           "per bound")
    for i in range(1, len(bounds)):
        if math.isinf(bounds[i - 1]):
            raise _bad(file, f"{field}.bounds[{i - 1}]", '+Inf before the last bound: "+Inf" closes the histogram')
        if not bounds[i - 1] < bounds[i]:
            a, z = _apart(bounds[i - 1], bounds[i])
            raise _bad(file, f"{field}.bounds[{i}]", f"{z} after {a}: bucket bounds increase strictly (sorted, "
                                                     "each once)")
    if not math.isinf(bounds[-1]):
        raise _bad(file, f"{field}.bounds[{len(bounds) - 1}]", f'the last bound must be "+Inf" (its count is every '
                                                               f"observation), got {_readable(bounds[-1])}")
    for i in range(1, len(counts)):
        if counts[i] < counts[i - 1]:
            a, z = _apart(counts[i - 1], counts[i])
            raise _bad(file, f"{field}.counts[{i}]", f"{z} after {a}: bucket counts are cumulative (the observations "
                                                     "<= each bound) and never decrease")
    return Histogram(tuple(bounds), tuple(counts), requests=requests)


def _readable(x: float) -> str:
    """A number in an error: a whole count below 1e16 with its digits (1,000), else 6 significant digits."""
    return f"{x:,.0f}" if x.is_integer() and abs(x) < 1e16 else f"{x:.6g}"


def _apart(a: float, b: float) -> tuple[str, str]:
    """Two different numbers with the fewest digits (6 or more) that tell them apart: 99.99999999999999, 100."""
    for d in range(6, 18):
        x, y = f"{a:.{d}g}", f"{b:.{d}g}"
        if (x == y) == (a == b):
            return x, y
    return repr(a), repr(b)

"""A rollout's per-look history, bounded: what `canary report` draws. Pure (no I/O).

The rollout state on the VirtualService keeps what the *decisions* need (evidence, counts,
the last verdict); this keeps what *people* need to see afterwards: every look's per-arm
values, outcome and evidence, the weights over time, the gates and the phase changes. It is
an observation, never read back by a decision, so losing part of it can never change an
outcome. `canary.history_store` keeps it in one ConfigMap per VirtualService
(docs/decisions.md, "the rollout history").

The document (format 1), also what `canary report -o json` exports and `--input` reads::

    {"format": 1,
     "rollout": {"model", "namespace", "virtual_service", "route", "stable_version", "canary_version",
                 "started_at" (unix s), "source": "promote" | "controller", "name" (CR "ns/name" or "")},
     "policy":  {"steps": [int %], "interval_s", "look_every_s", "alpha", "max_failed_looks",
                 "checks": [{"name", "kind", "hard", "limits": {"max_ms": 250.0, ...}}]},
     "phase", "reason", "updated_at" (unix s),
     "end_cause" (optional: the end's class as recorded with it, decision 607; absent before it, read from "reason"),
     "weights": [[at, canary %], ...]                   every weight written, in order
     "events":  [{"at", "event", "phase", "weights", "reason"}]   step and phase changes
     "gates":   [{"at", "stage": "preflight" | "probe", "outcome": "passed" | "failed", "detail"}]
     "looks":   [{"n": look number (1-based, whole rollout), "at", "step" (1-based), "w": canary %,
                  "o": outcome, "r": reason, "cn": canary requests,
                  "c": {check: {"o", "sv", "cv" (stable/canary value: ms for latency, % for rates),
                                "e" (effect), "th" (threshold), "u" (its unit: "ms", "%", "+%", "points",
                                "psi", "js", "ratio"; absent: none or not recorded), "p", "n": [stable, canary], "r",
                                "b": {which of "sv", "cv", "e" are only bounds: ">" the true value is above the
                                      number, "<" below (`CheckResult.bounded`: a quantile in the open +Inf
                                      bucket); absent: every number a value, as histories written before it},
                                "x": {kind-specific extras, e.g. "js_distance", "psi_upper"}}}}],
     "thinned": looks dropped to stay within the bounds}

Bounds: at most MAX_LOOKS looks and MAX_BYTES of JSON (a ConfigMap holds 1 MiB). Beyond them
every other *ordinary* look is dropped, oldest first; failed, error and each step's first and
last looks are kept (`bound`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

from canary.errors import ConfigError

FORMAT = 1
MAX_LOOKS = 240
MAX_BYTES = 700_000
MAX_EVENTS = 200
MAX_WEIGHTS = 200
MAX_GATES = 50
MAX_REASON = 240
SOURCES = ("promote", "controller")
# `CheckResult.bounded`'s fields as a look record names them ("b": {"cv": ">"}), and the sides a bound has
BOUNDED_KEYS = {"stable_value": "sv", "canary_value": "cv", "effect_size": "e"}
BOUND_SIDES = (">", "<")
# log events that are not step or phase changes (they are part of a look, or too frequent)
_NOT_EVENTS = frozenset({"look.completed", "check.failed", "look.window_short", "gate.probe_failed", "gate.passed"})


def _num(x: Any) -> float | None:
    """A float rounded to 5 significant digits; None for missing, NaN or infinite values."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(f"{float(x):.5g}")


def at_time(x: Any) -> float:
    """A unix time in seconds, to the millisecond (0.0 when missing)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return 0.0
    return round(float(x), 3)


def _cut(text: Any, limit: int = MAX_REASON) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def policy_summary(policy: Any) -> dict[str, Any]:
    """The policy fields a report needs: steps, timings and each check's limits (every numeric
    `max_*`/`min_*`/`quantile` field that is set)."""
    checks = []
    for check in policy.checks:
        fields = check.model_dump()
        limits = {k: float(v) for k, v in fields.items()
                  if (k.startswith(("max_", "min_")) or k == "quantile")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)}
        checks.append({"name": check.name, "kind": check.kind, "hard": bool(check.hard), "limits": limits})
    return {"steps": list(policy.steps), "interval_s": float(policy.analysis.interval),
            "look_every_s": float(policy.analysis.look_every), "alpha": float(policy.analysis.alpha),
            "max_failed_looks": int(policy.failure.max_failed_looks), "checks": checks}


def new_doc(*, rollout: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """An empty history for `rollout` (the "rollout" mapping above) judged under `policy`
    (`policy_summary`)."""
    return {"format": FORMAT, "rollout": dict(rollout), "policy": dict(policy), "phase": "", "reason": "",
            "updated_at": rollout.get("started_at", 0.0), "weights": [], "events": [], "gates": [], "looks": [],
            "thinned": 0}


def same_rollout(doc: dict[str, Any], rollout: dict[str, Any]) -> bool:
    """Whether `doc` is the history of `rollout` (same canary version, same start)."""
    mine = doc.get("rollout") or {}
    return (mine.get("canary_version") == rollout.get("canary_version")
            and at_time(mine.get("started_at")) == at_time(rollout.get("started_at")))


def check_record(result: dict[str, Any]) -> dict[str, Any]:
    """One check's result (`CheckResult.to_dict()`) in the compact form of a look."""
    rec: dict[str, Any] = {"o": result.get("outcome", ""), "sv": _num(result.get("stable_value")),
                           "cv": _num(result.get("canary_value")), "e": _num(result.get("effect_size")),
                           "th": _num(result.get("threshold")), "p": _num(result.get("p_value")),
                           "n": [_num(result.get("n_stable")), _num(result.get("n_canary"))],
                           "r": _cut(result.get("reason"))}
    if result.get("threshold_unit"):  # "ms", "%", "+%", "points", ... (`model.with_unit`)
        rec["u"] = result["threshold_unit"]
    bounded = result.get("bounded") if isinstance(result.get("bounded"), dict) else {}
    b = {short: bounded[long] for long, short in BOUNDED_KEYS.items()
         if bounded.get(long) in BOUND_SIDES and rec[short] is not None}
    if b:  # only where a number is a bound: the common look pays no bytes for it
        rec["b"] = b
    extra = result.get("extra") or {}
    x = {k: _num(extra[k]) for k in ("js_distance", "js_upper", "psi_upper") if _num(extra.get(k)) is not None}
    for t in extra.get("tests") or ():
        if isinstance(t, dict) and _num(t.get("bound")) is not None:
            x[f"{t.get('test')}_bound"] = _num(t.get("bound"))
    if x:
        rec["x"] = x
    return rec


def look_record(verdict: dict[str, Any], *, n: int, step: int, canary_weight: int) -> dict[str, Any]:
    """A look from a recorded verdict summary (`RolloutState.last_verdict`: at, outcome, reason,
    canary_requests, results). `step` is 1-based; `canary_weight` in %."""
    results = [r for r in verdict.get("results") or () if isinstance(r, dict)]
    return {"n": int(n), "at": at_time(verdict.get("at")), "step": int(step), "w": int(canary_weight),
            "o": str(verdict.get("outcome", "")), "r": _cut(verdict.get("reason"), 2 * MAX_REASON),
            "cn": _num(verdict.get("canary_requests")),
            "c": {str(r.get("check")): check_record(r) for r in results}}


def event_record(*, at: float, event: str, phase: str, weights: str, reason: str = "") -> dict[str, Any]:
    return {"at": at_time(at), "event": event, "phase": phase, "weights": weights, "reason": _cut(reason)}


def gate_record(*, at: float, stage: str, outcome: str, detail: str = "") -> dict[str, Any]:
    return {"at": at_time(at), "stage": stage, "outcome": outcome, "detail": _cut(detail, 2 * MAX_REASON)}


def is_event(name: str) -> bool:
    """Whether a log event is kept as a step/phase change."""
    return name not in _NOT_EVENTS


def merge(doc: dict[str, Any], *, looks: Iterable[dict[str, Any]] = (), events: Iterable[dict[str, Any]] = (),
          gates: Iterable[dict[str, Any]] = (), weights: Iterable[list[Any]] = ()) -> dict[str, Any]:
    """`doc` with new records added (looks keyed by number: a look recorded twice is kept once;
    events, gates and weight points already present are not repeated), then `bound`."""
    out = dict(doc)
    by_n = {lk["n"]: lk for lk in doc.get("looks") or ()}
    for lk in looks:
        by_n[lk["n"]] = lk
    out["looks"] = [by_n[k] for k in sorted(by_n)]
    out["events"] = _union(doc.get("events") or [], events)[-MAX_EVENTS:]
    out["gates"] = _union(doc.get("gates") or [], gates)[-MAX_GATES:]
    pts: list[list[Any]] = []
    unique = dict.fromkeys((p[0], p[1]) for p in [*(doc.get("weights") or []), *weights])  # in write order
    for at, w in sorted(unique, key=lambda p: p[0]):
        if not pts or pts[-1][1] != w:  # a weight written again (every look's record) is not a change
            pts.append([at, w])
    out["weights"] = pts[-MAX_WEIGHTS:]
    return bound(out)


def _union(old: list[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {json.dumps(e, sort_keys=True) for e in old}
    out = list(old)
    for e in new:
        key = json.dumps(e, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return sorted(out, key=lambda e: e.get("at") or 0.0)


def size(doc: dict[str, Any]) -> int:
    return len(dumps(doc).encode())


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def bound(doc: dict[str, Any], *, max_looks: int = MAX_LOOKS, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """Thin the looks until at most `max_looks` and `max_bytes` remain. Kept: failed and error
    looks, each step's first and last look, the last look. The others go every other one,
    oldest first, as often as needed; `thinned` counts what went."""
    looks = list(doc.get("looks") or [])
    thinned = int(doc.get("thinned") or 0)
    out = {**doc, "looks": looks}
    while len(looks) > max_looks or (len(looks) > 1 and size(out) > max_bytes):
        keep = _kept(looks)
        ordinary = [i for i in range(len(looks)) if i not in keep]
        drop = set(ordinary[::2]) if ordinary else {0}  # nothing ordinary left: the oldest goes
        excess = len(looks) - max_looks
        if 0 < excess < len(drop):
            drop = set(sorted(drop)[:excess])
        looks = [lk for i, lk in enumerate(looks) if i not in drop]
        thinned += len(drop)
        out = {**doc, "looks": looks, "thinned": thinned}
    return out


def _kept(looks: list[dict[str, Any]]) -> set[int]:
    keep = {len(looks) - 1}
    for i, lk in enumerate(looks):
        if lk.get("o") in ("fail", "error"):
            keep.add(i)
        if i == 0 or looks[i - 1].get("step") != lk.get("step"):
            keep.add(i)
            if i:
                keep.add(i - 1)
    return keep


class NotJson(ConfigError):
    """`parse`'s text is not JSON (the message says what it seems to be instead: `filekind.not_json`)."""


def parse(text: str | bytes, *, where: str) -> dict[str, Any]:
    """A history read back (a ConfigMap's value, an exported file), checked field by field, so
    that everything a report reads has the type it expects. Raises ConfigError naming `where`
    and the field when the shape is wrong."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        from canary.filekind import not_json

        raise NotJson(f"{where}: not JSON ({str(exc)[:200]})"
                      f"{not_json(text if isinstance(text, str) else text.decode('utf-8', 'replace'))}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a rollout history must be a JSON object")
    if "format" not in doc:  # another file than a history (a `judge --input` file, a CR, a policy)
        raise ConfigError(f"{where}: not a rollout history (no `format` field): give a file `canary report -o json` "
                          f"wrote (keys found: {', '.join(sorted(map(str, doc))[:6]) or 'none'})")
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{where}: format: expected {FORMAT}, got {str(doc.get('format'))[:40]!r}")
    c = _Checker(where)
    c.fields(doc, "", {"rollout": dict, "policy": dict, "looks": list, "events": list, "weights": list,
                       "gates": list}, {"phase": str, "reason": str, "updated_at": _TIME, "thinned": int,
                                         "end_cause": str})
    c.fields(doc["rollout"], "rollout.", {"model": str, "canary_version": str, "stable_version": str},
             {"namespace": str, "virtual_service": str, "route": _OPT_STR, "started_at": _TIME, "source": str,
              "name": _OPT_STR})
    pol = doc["policy"]
    c.fields(pol, "policy.", {"steps": list, "checks": list},
             {"interval_s": _NUMBER, "look_every_s": _NUMBER, "alpha": _NUMBER, "max_failed_looks": int})
    for i, w in enumerate(pol["steps"]):
        c.value(w, f"policy.steps[{i}]", _PERCENT)
    names: set[str] = set()
    for i, chk in enumerate(pol["checks"]):
        f = f"policy.checks[{i}]."
        c.value(chk, f[:-1], dict)
        c.fields(chk, f, {"name": str, "kind": str}, {"hard": bool, "limits": dict})
        if chk["name"] in names:  # two plots and two columns under one name: which values are whose is lost
            raise ConfigError(f"{where}: {f}name: {json.dumps(chk['name'])[:60]} names an earlier check too")
        names.add(chk["name"])
        for k, v in (chk.get("limits") or {}).items():
            c.value(v, f"{f}limits.{k}", _NUMBER)
    for i, p in enumerate(doc["weights"]):
        if not (isinstance(p, list) and len(p) == 2 and _time(p[0]) is not None and _percent(p[1]) is not None):
            raise ConfigError(f"{where}: weights[{i}]: must be [at (a Unix time), canary % (0 to 100)]")
    for i, e in enumerate(doc["events"]):
        c.value(e, f"events[{i}]", dict)
        c.fields(e, f"events[{i}].", {"at": _TIME, "event": str}, {"phase": str, "weights": str, "reason": str})
    for i, g in enumerate(doc["gates"]):
        c.value(g, f"gates[{i}]", dict)
        c.fields(g, f"gates[{i}].", {"at": _TIME, "stage": str, "outcome": str}, {"detail": str})
    for i, lk in enumerate(doc["looks"]):
        f = f"looks[{i}]."
        c.value(lk, f[:-1], dict)
        c.fields(lk, f, {"n": int, "at": _TIME, "c": dict},
                 {"step": int, "w": _PERCENT, "o": str, "r": str, "cn": _OPT_NUMBER})
        for name, rec in lk["c"].items():
            g = f"{f}c.{name}."
            c.value(rec, g[:-1], dict)
            c.fields(rec, g, {}, {"o": str, "r": str, "u": str, **{k: _OPT_NUMBER for k in ("sv", "cv", "e", "th", "p")},
                                  "n": list, "x": dict, "b": dict})
            for k, side in (rec.get("b") or {}).items():  # what the report prints before a number: nothing else
                if k not in BOUNDED_KEYS.values() or side not in BOUND_SIDES:
                    raise ConfigError(f"{where}: {g}b.{str(k)[:40]}: must name sv, cv or e as \">\" or \"<\" (a bound), "
                                      f"got {json.dumps(side)[:60]}")
            n = rec.get("n")
            if n is not None and not (len(n) == 2 and all(x is None or _num(x) is not None for x in n)):
                raise ConfigError(f"{where}: {g}n: must be [stable, canary] numbers")
            for k, v in (rec.get("x") or {}).items():
                c.value(v, f"{g}x.{k}", _OPT_NUMBER)
    return doc


_NUMBER, _OPT_NUMBER, _OPT_STR = "a number", "a number or null", "a string or null"
_TIME = f"a Unix time in seconds (0 to {1e11:g}, the year 5138)"
_PERCENT = "a percentage of traffic (0 to 100)"


def _percent(v: Any) -> float | None:
    """`v` as a share of traffic in % (0..100), else None (a weight of 1e308 was drawn off the report's chart)."""
    x = _num(v)
    return x if x is not None and 0 <= x <= 100 else None


def _time(v: Any) -> float | None:
    """`v` as a Unix time a page can draw (0..1e11 s), else None (1e308 or -1e308 crashed the report)."""
    x = _num(v)
    return x if x is not None and 0 <= x <= 1e11 else None


class _Checker:
    """Type checks that name the file and the field: ConfigError on the first that fails."""

    def __init__(self, where: str) -> None:
        self.where = where

    def value(self, v: Any, field: str, kind: Any) -> None:
        ok = {_NUMBER: lambda: _num(v) is not None, _TIME: lambda: _time(v) is not None,
              _PERCENT: lambda: _percent(v) is not None, _OPT_NUMBER: lambda: v is None or _num(v) is not None,
              _OPT_STR: lambda: v is None or isinstance(v, str),
              int: lambda: isinstance(v, int) and not isinstance(v, bool)}.get(kind, lambda: isinstance(v, kind))()
        if not ok:
            name = kind if isinstance(kind, str) else {dict: "an object", list: "an array", str: "a string",
                                                       bool: "true or false", int: "an integer"}[kind]
            raise ConfigError(f"{self.where}: {field}: must be {name}, got {json.dumps(v)[:60]}")

    def fields(self, obj: dict[str, Any], prefix: str, required: dict[str, Any], optional: dict[str, Any]) -> None:
        for k, kind in required.items():
            if k not in obj:
                raise ConfigError(f"{self.where}: {prefix}{k}: missing")
            self.value(obj[k], prefix + k, kind)
        for k, kind in optional.items():
            if k in obj:
                self.value(obj[k], prefix + k, kind)


def end_cause(doc: dict[str, Any]) -> str:
    """The end's class `doc` (a history, or a record's mapping) recorded with it (decision 607), "" when it has none
    that is one of the classes (written before the field, or edited): the reader then classes the reason's words."""
    from canary.rollout import ROLLBACK_REASONS

    cause = doc.get("end_cause")
    return cause if isinstance(cause, str) and cause in ROLLBACK_REASONS else ""


def with_state(doc: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """`doc` completed from the rollout state recorded on the VirtualService (the mapping of
    `RolloutState.to_json()`), when that is the same rollout and newer than the history (the
    controller writes the history every few looks): its phase, reason and weights, and its last
    look when the history does not have it yet."""
    ident = {"canary_version": state.get("canary_version"), "started_at": state.get("started_at")}
    if not same_rollout(doc, ident) or at_time(state.get("updated_at")) <= at_time(doc.get("updated_at")):
        return doc
    out = {**doc, "phase": str(state.get("phase", "")), "reason": str(state.get("reason", "")),
           "updated_at": at_time(state.get("updated_at"))}
    out.pop("end_cause", None)
    if isinstance(state.get("end_cause"), str) and state["end_cause"]:
        out["end_cause"] = state["end_cause"]
    verdict, n = state.get("last_verdict"), state.get("look")
    looks: list[dict[str, Any]] = []
    if isinstance(verdict, dict) and isinstance(n, int) and n > 0 and n not in {lk["n"] for lk in doc["looks"]}:
        steps = list(doc["policy"].get("steps") or [])
        step = int(state.get("step", 0))
        if state.get("phase") in ("promoting", "promoted"):
            step = len(steps) - 2  # the last judged step; 100% is the promotion
        elif at_time(verdict.get("at")) < at_time(state.get("step_started_at")) and not state.get("step_window"):
            step -= 1  # the look that advanced the step
        weight = steps[step] if 0 <= step < len(steps) else int((state.get("weights") or {}).get("canary", 0))
        looks.append(look_record(verdict, n=n, step=step + 1, canary_weight=weight))
    w = (state.get("weights") or {}).get("canary")
    return merge(out, looks=looks, weights=[[at_time(state.get("updated_at")), w]] if isinstance(w, int) else [])

"""What a rollout is judged under, as short digests: written into the route's record at the claim, so
that an edit of the spec mid-rollout is told from a rewrite that changes nothing judged.

A CanaryRollout's rollout is judged wholly under one spec (docs/decisions.md 77). The controller
compares the spec it reads at every tick with `RolloutState.judged`, which the claim wrote in the
same write as the record itself (so it is there from the first moment traffic can move, whatever
status write fails later). Two kinds of mark:

* ``series`` (the policy's metric source) and ``series.<source>`` (each other source a check reads):
  the label matchers that pick each arm of the model, as the queries render them, with the versions
  left out (they are what the rollout compares). A change is an edit of *which* series are judged
  (``spec.model``, ``policy.metrics``): the rollout ends. Spelling out a label the source already
  resolves to changes no mark.
* ``steps``, ``analysis``, ``checks``, ``histograms``: *how* the series are judged. A change
  supersedes the rollout, which starts again from its first step. Checks are compared as a set
  (their order changes nothing), each with its source resolved, defaults left out, and its queries
  as they render (whitespace folded), not as written.

Pure: no I/O. ``failure`` and ``gates`` are not marked: they say when to give up, never what a pass
needs.

A third kind, never compared by `edited` (an edit of a policyRef ConfigMap mid-rollout is told by what it
changes, as the spec's is): ``policyRef`` and ``policyRef.text``, where the policy was read from at the claim
(`source_marks`). A tick whose policy no longer reads is then told an edit of that ConfigMap (its text changed
since the rollout started) from the ConfigMap gone or unreadable (decision 822).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from canary.metrics import queries as q
from canary.model import Target

HOW = ("steps", "analysis", "checks", "histograms")  # an edit of one restarts the rollout
_STABLE, _CANARY = "\x00stable", "\x00canary"  # placeholders: no version label value can be these
_MODEL = "\x00model"  # the checks are rendered for any model: which one is the series marks'
_WINDOW_S = 300.0  # the window the queries are rendered with for a mark (any fixed one)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


_CACHE: dict[tuple[str, str, str], dict[str, str]] = {}
_CACHE_MAX = 4096  # policies x models a controller compares at once; emptied when full


def marks(policy: Any, target: Target) -> dict[str, str]:
    """{mark name: 16-hex digest} of what `policy` judges on `target`'s model (see the module).
    Raises ConfigError as `metrics.queries.selector` does (a policy that loaded never does).

    The controller asks at every tick of every rollout in progress, each time of a policy parsed
    anew; rendering every check's queries costs ~0.3 ms for the default policy, so the answer is
    kept by the policy's JSON (~0.03 ms) and what of the target it reads (model, namespace)."""
    key = (policy.model_dump_json(), target.model, target.namespace)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        hit = _CACHE[key] = _marks(policy, target)
    return dict(hit)


# `source_marks`' names: the policy's source (a digest of the policyRef ConfigMap's name and key, or INLINE), and
# a digest of the text read there (`crd.text_digest`)
SOURCE, SOURCE_TEXT, INLINE = "policyRef", "policyRef.text", "inline"


def source_marks(policy_ref: tuple[str, str, str] | None) -> dict[str, str]:
    """The marks of where a rollout's policy was read from (`crd.RolloutSpec.policy_ref`: ConfigMap, key, the
    digest of its text; None for an inline policy), written with the claim beside `marks`."""
    if policy_ref is None:
        return {SOURCE: INLINE}
    config_map, key, text = policy_ref
    return {SOURCE: ref_mark(config_map, key), SOURCE_TEXT: text}


def ref_mark(config_map: str, key: str) -> str:
    """The SOURCE mark of a policyRef naming ConfigMap `config_map`'s key `key`."""
    return _digest([config_map, key])


def _marks(policy: Any, target: Target) -> dict[str, str]:
    t = replace(target, stable_version=_STABLE, canary_version=_CANARY)
    out: dict[str, str] = {}
    sources = {policy.metrics.source} | {policy.source_of(c) for c in policy.checks}
    for source in sorted(sources):
        name = "series" if source == policy.metrics.source else f"series.{source}"
        # the model too: a source with no model label (`model_label: ""`) selects by the VirtualService's
        # traffic alone, but a custom check's `{model}` and what the CR says it judges still name it
        out[name] = _digest([source, target.model, [q.selector(policy, t, arm, source) for arm in q.ARMS]])
    checks = [_check(policy, c, replace(t, model=_MODEL)) for c in policy.checks]
    checks.sort(key=lambda d: json.dumps(d, sort_keys=True))
    out["steps"] = _digest(list(policy.steps))
    out["analysis"] = _digest(policy.analysis.model_dump(mode="json", exclude_defaults=True))
    out["checks"] = _digest(checks)
    out["histograms"] = _digest(policy.metrics.histograms)
    return out


def _check(policy: Any, check: Any, t: Target) -> dict[str, Any]:
    """One check as it is judged: its fields (defaults left out, its source resolved, its features as a
    set) with its queries as they render for both arms (placeholder versions, one fixed window; the
    window is `analysis`'s), so that text that renders the same queries (a trailing newline, per-arm
    queries equal to a shared one, a histogram named with or without `_bucket`) is the same check."""
    from canary.metrics.query_plan import query_plan

    dumped = check.model_dump(mode="json", exclude_defaults=True)
    for name in ("query", "stable_query", "canary_query", "metric"):
        dumped.pop(name, None)
    if isinstance(dumped.get("features"), list):
        dumped["features"] = sorted(dumped["features"])
    dumped["source"] = policy.source_of(check)
    plan = query_plan(policy, check, t, window_s=_WINDOW_S)
    # the series are the series marks' (an edit of them is one edit, not also one of every check)
    sels = {arm: q.selector(policy, t, arm, dumped["source"]) for arm in q.ARMS}
    dumped["plan"] = {arm: {role: text.strip().replace(sels[arm], "\x00selector") for role, text in roles.items()}
                      for arm, roles in plan.items()}
    return dumped


def edited(old: dict[str, str], new: dict[str, str]) -> tuple[list[str], list[str]]:
    """(series marks changed, how-marks changed) between a record's marks `old` and the spec's `new`.
    A mark in only one of them is no change of its own: a check reading another source is a
    ``checks`` change, and a record written before a mark existed matches any value of it."""
    changed = [k for k in new if k in old and old[k] != new[k]]
    series = [k for k in changed if k.startswith("series")]
    # the checks render the selectors (a matcher inserted into them): a series edit changes them too
    return series, [k for k in changed if k in HOW and not (series and k == "checks")]


def describe(series: list[str], how: list[str], *, was_model: str, model: str,
             model_field: str = "spec.model") -> tuple[str, str]:
    """`edited`'s answer in the policy's field names: (what of the series judged changed, what of how
    they are judged changed), each "" when nothing did. `was_model`/`model`: the model the rollout was
    judged on and the one asked for now ("" when not known); `model_field`: how the caller names it."""
    which = ""
    if series:
        which = (f"{model_field} changed from {was_model} to {model}" if was_model and was_model != model
                 else "the policy's metrics changed (the series judged)")
    return which, ("the policy's " + ", ".join(how) + " changed") if how else ""

"""Metric families: the shape of one batched query, and which families a policy's checks read.

A family is a metric with its constant matchers and the labels that tell
rollouts apart (model, version, namespace); one instant query per family
serves every rollout that reads it. Kept apart from snapshots and deltas
because it is the only part that knows PromQL and the presets.

- `last_over_time(...[LOOKBACK])`, not a bare selector: a scrape that failed at
  snapshot time writes staleness markers and would make a live series look
  "born" later (counted from 0: its whole history); a pod deleted after the
  step-start snapshot stays visible for LOOKBACK, so its growth until it died still counts.
- No `sum by` at all: we cannot know which labels tell series apart (pod,
  instance, container, ...), and summing away any of them can merge a
  restarted series with a live one. A series is named by a 48-bit hash of its
  labels other than the rollout labels, `le`/state and `__name__`
  (`Family.series_id`), so a persisted step-start snapshot stays small.
- Model, version and namespace values get a regex matcher (RE2 metacharacters
  escaped, then PromQL-string escaped) in every query; `BatchMetrics` splits the
  rollouts into chunks by model when one alternation would grow past
  `MAX_REGEX_CHARS`, never dropping the filter. The answer is also filtered client-side
  on exact label values, so a name can neither inject PromQL nor widen what a
  rollout sees.
- Feature-missing needs a counter (``model_features_total{state="missing"|
  "present"}``): Counts(events=missing, total=missing+present) counts feature
  VALUES, not requests as the gauge path does. Where only the gauge exists the
  check raises `NotBatchable` (a ConfigError); so do custom checks. The caller
  measures those per rollout with `PrometheusProvider`.
- A histogram check reads two families: the classic `_bucket` series and the
  same metric as a Prometheus native histogram (one sample per series, its
  buckets kept by index: `native`), so a snapshot measures either form; a native
  series it cannot subtract exactly (custom buckets, zero buckets of other
  widths) makes the check `NotBatchable`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Mapping

from canary.errors import ConfigError
from canary.metrics import queries as q
from canary.metrics.native import SHIFT_CELLS
from canary.model import Target
from canary.policy import Check, Policy, identity_labels
from canary.policy_fields import parse_duration

LOOKBACK = "10m"  # last_over_time range: bridges failed scrapes, keeps recently deleted pods visible
# how far before a window's start a restart probe looks for a series the step-start snapshot lacks (`Snapshot.
# missed`): a pod whose scrape failed over the step start for longer than LOOKBACK is absent from that snapshot
# while its counter kept counting, and read as born in the window it counted its whole life (decision 353)
EARLIER_S = 3600
# source -> (counter, state label, missing value, present value); only the model family exports one
FEATURE_COUNTERS: dict[str, tuple[str, str, str, str]] = {
    "model": ("model_features_total", "state", "missing", "present"),
}
RESTART_LABEL = "canary_restart"  # tells the two halves of `Family.restart_query`'s answer apart
_PROBE = Target(namespace="n", virtual_service="v", model="m", stable_version="s", canary_version="c")
Ident = tuple[str, ...]


class NotBatchable(ConfigError):
    """This check cannot be measured from snapshots; measure it per rollout instead."""


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so `value` matches only itself (before PromQL string escaping)."""
    return q.regex_literal(value)


def regex_matcher(label: str, values: Iterable[str]) -> str:
    """`label=~"a|b\\\\.c"`: an anchored alternation of literal values, safe in a PromQL string."""
    return f'{label}=~"{q.escape("|".join(regex_escape(v) for v in sorted(set(values))))}"'


@dataclass(frozen=True)
class Family:
    """One query's shape: a metric, its constant matchers, and the labels that tell rollouts apart."""

    metric: str
    constant: tuple[tuple[str, str], ...]  # equality matchers from the preset and metrics.labels
    by: tuple[tuple[str, str], ...]  # (label, role) with role model | version | namespace
    matcher: str = ""  # raw constant matcher from the preset, e.g. outcome="error"
    extra: str = ""  # a further label kept apart in the answer: "le", or the feature state
    native: bool = False  # a Prometheus native histogram: one sample per series, kept by bucket index
    either: tuple[str, ...] = ()  # further raw matchers, each an alternative to `matcher` (or'ed series)

    def _matchers(self, filters: Mapping[str, Iterable[str]] | None, matcher: str) -> str:
        parts = [f'{k}="{q.escape(v)}"' for k, v in self.constant]
        for label, _ in self.by:
            if filters and filters.get(label):
                parts.append(regex_matcher(label, filters[label]))
        if matcher:
            parts.append(matcher)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _selectors(self, filters: Mapping[str, Iterable[str]] | None) -> list[str]:
        return [self._matchers(filters, m) for m in (self.matcher, *self.either)]

    def selector(self, filters: Mapping[str, Iterable[str]] | None = None) -> str:
        """The constant matchers and `filters`' alternations, without the family's own raw matcher: what every
        family of this label shape and chunk shares (`batch`'s target-down query); "{}" when there are none."""
        return self._matchers(filters, "") or "{}"

    def query(self, filters: Mapping[str, Iterable[str]] | None = None, *, lookback: str = LOOKBACK) -> str:
        """Every series' latest cumulative value (series kept apart: see the module docstring); with
        `either`, the series any of the matchers picks, each once (`or` keeps one of equal label sets)."""
        return " or ".join(f"last_over_time({self.metric}{sel}[{lookback}])" for sel in self._selectors(filters))

    def restart_query(self, filters: Mapping[str, Iterable[str]] | None, range_ms: int, *,
                      lookback: str = LOOKBACK) -> str:
        """What tells restarts within the last `range_ms` ms apart from growth, per series (`Snapshot.restarted`):
        its `resets()` when above 0 and its `min_over_time()`, told apart by the label `RESTART_LABEL`
        ("resets" | "min"); a classic histogram's +Inf bucket only (a process restarts all its buckets).
        Also ("before") its latest value `range_ms` ago within `EARLIER_S` (or `lookback` where longer): a
        series the window's start snapshot lacks although this Prometheus held it then (`Snapshot.missed`:
        a replica that had not scraped it, or a scrape that failed for longer than `lookback` over the
        step start)."""
        earlier = lookback if parse_duration(lookback) >= EARLIER_S else f"{EARLIER_S}s"
        le = ',le=~"[+]?[Ii]nf(inity)?"' if self.extra == "le" else ""
        parts = []
        for sel in self._selectors(filters):
            sel = (sel[:-1] + le + "}") if sel else ("{" + le[1:] + "}" if le else "")
            for kind, expr in (("resets", "resets({}[{}ms]) > 0"), ("min", "min_over_time({}[{}ms])"),
                               ("before", "last_over_time({}[" + earlier + "] offset {}ms)")):
                parts.append(f'label_replace({expr.format(self.metric + sel, range_ms)}, "{RESTART_LABEL}", '
                             f'"{kind}", "__name__", ".*")')
        return " or ".join(parts)

    @cached_property
    def key(self) -> str:
        """Names the family in a snapshot, whatever rollouts it covered: the selector and the labels
        that tell rollouts apart (two label shapes can share a query, never a key)."""
        labels = [label for label, _ in self.by] + ([self.extra] if self.extra else [])
        return f"{' or '.join(self.metric + sel for sel in self._selectors(None))} by ({', '.join(labels)})"

    def ident(self, target: Target, arm: str) -> Ident:
        values = {"model": target.model, "version": q.arm_version(target, arm), "namespace": target.namespace}
        return tuple(values[role] for _, role in self.by)

    @cached_property
    def _not_identity(self) -> frozenset[str]:
        return frozenset([label for label, _ in self.by] + [self.extra, "__name__", RESTART_LABEL])

    def identity(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The labels that tell one rollout arm's series apart (pod, instance, outcome...), sorted."""
        return tuple(sorted(kv for kv in labels.items() if kv[0] not in self._not_identity))

    def series_id(self, labels: Mapping[str, str]) -> str:
        """48-bit hash of `identity`: what names a series in a snapshot."""
        return hash_identity(self.identity(labels))


def hash_identity(identity: tuple[tuple[str, str], ...]) -> str:
    """The series id of an `identity` (one hash per series, not per bucket, when parsing an answer)."""
    return hashlib.blake2b(json.dumps(identity, separators=(",", ":")).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Spec:
    """What one check reads from a snapshot."""

    kind: str  # histogram | errors | features
    family: Family
    source: str
    scale: float = 1.0
    native: Family | None = None  # histograms: the same metric as a Prometheus native histogram
    cells: int = 0  # two native prediction histograms: compared on this many cells (`native.quantile_cells`)


_FAMILIES: dict[tuple[Any, ...], Family] = {}  # a controller has few label shapes; building one is not free


def _family(policy: Policy, source: str, metric: str, *, matcher: str = "", extra: str = "",
            native: bool = False, either: tuple[str, ...] = ()) -> Family:
    """Mirror of `queries.selector`: the same matchers, the per-rollout ones turned into `by` labels."""
    m = policy.metrics
    key = (source, m.model_label, m.arm_label, tuple(sorted(m.labels.items())), metric, matcher, extra, native, either)
    fam = _FAMILIES.get(key)
    if fam is None:
        if len(_FAMILIES) > 4096:  # policies edited over months: never grow without bound
            _FAMILIES.clear()
        fam = _FAMILIES[key] = _build_family(policy, source, metric, matcher=matcher, extra=extra, native=native,
                                             either=either)
    return fam


_ROLES = {"model label": "model", "arm label": "version", "namespace label": "namespace"}  # Family.by roles


def _build_family(policy: Policy, source: str, metric: str, *, matcher: str, extra: str, native: bool,
                  either: tuple[str, ...] = ()) -> Family:
    q.selector(policy, _PROBE, "stable", source)  # validates label names, refuses identity clashes
    fixed = dict(q.preset(source).fixed)
    fixed.update(policy.metrics.labels)
    by = tuple((label, _ROLES[role]) for role, label in identity_labels(policy.metrics, source).items())
    return Family(q.metric_name(metric, "metric"), tuple(sorted(fixed.items())), by, matcher, extra, native, either)


def request_families(policy: Policy, source: str) -> tuple[list[Family], Family | None]:
    p = q.preset(source)
    main = [_family(policy, source, name) for name in p.requests]
    fallback = _family(policy, source, p.requests_fallback) if p.requests_fallback else None
    return main, fallback


def check_spec(policy: Policy, check: Check) -> Spec:
    source = policy.source_of(check)
    p = q.preset(source)
    if check.kind == "custom":
        raise NotBatchable(f"check {check.name!r}: custom PromQL cannot be batched; measure it per rollout")
    if check.kind == "feature_drift":
        raise NotBatchable(f"check {check.name!r}: per-feature series are measured per rollout")
    if check.kind == "latency":
        base, scale = q.latency_metric(p, check.name)
        return Spec("histogram", _family(policy, source, base + "_bucket", extra="le"), source, scale,
                    _family(policy, source, base, native=True))
    if check.kind == "prediction_shift":
        base = q.prediction_metric(p, check.name, check.metric)
        return Spec("histogram", _family(policy, source, base + "_bucket", extra="le"), source,
                    native=_family(policy, source, base, native=True), cells=SHIFT_CELLS)
    if check.kind == "error_rate":
        return Spec("errors", _family(policy, source, p.errors, matcher=p.errors_matcher, either=p.errors_also), source)
    if check.kind == "feature_missing":
        q.feature_metric(p, check.name)
        if source not in FEATURE_COUNTERS:
            raise NotBatchable(f"check {check.name!r}: source {source!r} exports no feature counter")
        counter, state, _, _ = FEATURE_COUNTERS[source]
        return Spec("features", _family(policy, source, counter, extra=state), source)
    raise ConfigError(f"check {check.name!r}: unknown kind {check.kind!r}")


def batchable(policy: Policy, check: Check) -> bool:
    """Whether snapshots can measure this check. Static: feature_missing may still turn out
    gauge-only at measure time (`NotBatchable` from `measure_delta`)."""
    try:
        check_spec(policy, check)
    except ConfigError:
        return False
    return True


def families(policy: Policy, check: Check | None = None) -> list[Family]:
    """Families one check needs (None: the request counts); raises ConfigError if not batchable."""
    if check is None:
        main, fallback = request_families(policy, policy.metrics.source)
        return main + ([fallback] if fallback else [])
    spec = check_spec(policy, check)
    main, fallback = request_families(policy, spec.source)
    if spec.kind == "histogram":  # a prediction histogram counts rows: its requests are read beside it
        more = [*main, *([fallback] if fallback else [])] if check.kind == "prediction_shift" else []
        return [spec.family, *([spec.native] if spec.native else []), *more]
    return [spec.family, *main, *([fallback] if fallback else [])]


def policy_families(policy: Policy) -> list[Family]:
    out = families(policy)
    for check in policy.checks:
        try:
            out += families(policy, check)
        except ConfigError:
            continue  # measured per rollout; its error surfaces there
    return out


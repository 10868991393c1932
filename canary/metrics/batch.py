"""Batched measurement: one query per metric family per tick, however many rollouts run.

`PrometheusProvider.measure` asks ``increase(...[window])`` per check, per arm,
per rollout: a controller driving hundreds of rollouts sends hundreds of
queries a tick. Here each tick sends ONE instant query per *family* (a metric
with its constant matchers and label shape) for all rollouts at once,
returning the CUMULATIVE counters, e.g.::

    sum by (model_name, model_version, le) (model_inference_duration_seconds_bucket{model_name=~"a|b"})

Each rollout keeps the `Snapshot` taken when its step started (its baseline,
`Snapshot.restrict` keeps only its own series so it fits in a CR status) and
its window is `now - baseline`: per-rollout timing stays independent while
the query count depends only on the set of families (`BatchMetrics.queries_last`).

Decisions:

- Model, version and namespace values get a regex matcher (RE2 metacharacters
  escaped, then PromQL-string escaped) while there are at most `REGEX_LIMIT`
  of them; beyond that none (one big answer beats a huge URL). Either way the
  answer is filtered client-side on exact label values, so a name can neither
  inject PromQL nor widen what a rollout sees.
- A counter reset (current below baseline; a restart) makes the window the
  current cumulative value alone, flagged in `ArmDelta.reset` and logged as
  ``metrics.counter_reset``. Limitation: a reset of one series under a `sum`
  (one of several pods restarting) that leaves the sum above the baseline is
  invisible and undercounts the window; `increase()` per rollout does not.
- A series absent from the baseline but present now was born in the window: it
  counts from 0. A family the snapshot never asked for is `NoData`.
- Feature-missing needs a counter (``model_features_total{state="missing"|
  "present"}``): Counts(events=missing, total=missing+present) counts feature
  VALUES, not requests as the gauge path does. Where only the gauge exists the
  check raises `NotBatchable` (a ConfigError); so do custom checks. The caller
  measures those per rollout with `PrometheusProvider`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import structlog

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics import queries as q
from canary.metrics.prometheus import PrometheusProvider
from canary.model import ArmData, Counts, Histogram, Target
from canary.policy import Check, Policy

log = structlog.get_logger(__name__)
REGEX_LIMIT = 50  # more distinct values than this: no regex matcher, filter client-side only
_RE2_META = frozenset("\\.+*?()|[]{}^$")
# source -> (counter, state label, missing value, present value); only the model family exports one
FEATURE_COUNTERS: dict[str, tuple[str, str, str, str]] = {
    "model": ("model_features_total", "state", "missing", "present"),
}
_PROBE = Target(namespace="n", virtual_service="v", model="m", stable_version="s", canary_version="c")
Ident = tuple[str, ...]


class NotBatchable(ConfigError):
    """This check cannot be measured from snapshots; measure it per rollout instead."""


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so `value` matches only itself (before PromQL string escaping)."""
    return "".join("\\" + c if c in _RE2_META else c for c in value)


def regex_matcher(label: str, values: Iterable[str]) -> str:
    """`label=~"a|b\\\\.c"`: an anchored alternation of literal values, safe in a PromQL string."""
    return f'{label}=~"{q.escape("|".join(regex_escape(v) for v in sorted(set(values))))}"'


@dataclass(frozen=True)
class Want:
    """One rollout whose data the next snapshot must hold."""

    policy: Policy
    target: Target


@dataclass(frozen=True)
class Family:
    """One query's shape: a metric, its constant matchers, and the labels that tell rollouts apart."""

    metric: str
    constant: tuple[tuple[str, str], ...]  # equality matchers from the preset and metrics.labels
    by: tuple[tuple[str, str], ...]  # (label, role) with role model | version | namespace
    matcher: str = ""  # raw constant matcher from the preset, e.g. outcome="error"
    extra: str = ""  # a further label kept apart in the answer: "le", or the feature state

    def _matchers(self, filters: Mapping[str, Iterable[str]] | None) -> str:
        parts = [f'{k}="{q.escape(v)}"' for k, v in self.constant]
        for label, _ in self.by:
            if filters and filters.get(label):
                parts.append(regex_matcher(label, filters[label]))
        if self.matcher:
            parts.append(self.matcher)
        return "{" + ",".join(parts) + "}" if parts else ""

    def query(self, filters: Mapping[str, Iterable[str]] | None = None) -> str:
        labels = [label for label, _ in self.by] + ([self.extra] if self.extra else [])
        return f"sum by ({', '.join(labels)}) ({self.metric}{self._matchers(filters)})"

    @property
    def key(self) -> str:
        """The query without per-rollout matchers: the same whatever rollouts a snapshot covered."""
        return self.query()

    def ident(self, target: Target, arm: str) -> Ident:
        values = {"model": target.model, "version": q.arm_version(target, arm), "namespace": target.namespace}
        return tuple(values[role] for _, role in self.by)


@dataclass(frozen=True)
class _Spec:
    """What one check reads from a snapshot."""

    kind: str  # histogram | errors | features
    family: Family
    source: str
    scale: float = 1.0


_FAMILIES: dict[tuple[Any, ...], Family] = {}  # a controller has few label shapes; building one is not free


def _family(policy: Policy, source: str, metric: str, *, matcher: str = "", extra: str = "") -> Family:
    """Mirror of `queries.selector`: the same matchers, the per-rollout ones turned into `by` labels."""
    m = policy.metrics
    key = (source, m.model_label, m.arm_label, tuple(sorted(m.labels.items())), metric, matcher, extra)
    fam = _FAMILIES.get(key)
    if fam is None:
        if len(_FAMILIES) > 4096:  # policies edited over months: never grow without bound
            _FAMILIES.clear()
        fam = _FAMILIES[key] = _build_family(policy, source, metric, matcher=matcher, extra=extra)
    return fam


def _build_family(policy: Policy, source: str, metric: str, *, matcher: str, extra: str) -> Family:
    q.selector(policy, _PROBE, "stable", source)  # validates label names with selector's own messages
    p, m = q.preset(source), policy.metrics
    model_label = p.model_label if m.model_label is None else m.model_label
    roles: dict[str, str] = {}
    if model_label:
        roles[model_label] = "model"
    roles[m.arm_label or p.arm_label] = "version"
    if p.namespace_label:
        roles[p.namespace_label] = "namespace"
    fixed = dict(p.fixed)
    fixed.update(m.labels)  # as in selector: a fixed matcher replaces a per-rollout one of the same name
    by = tuple((label, role) for label, role in roles.items() if label not in fixed)
    return Family(q.metric_name(metric, "metric"), tuple(sorted(fixed.items())), by, matcher, extra)


def _request_families(policy: Policy, source: str) -> tuple[list[Family], Family | None]:
    p = q.preset(source)
    main = [_family(policy, source, name) for name in p.requests]
    fallback = _family(policy, source, p.requests_fallback) if p.requests_fallback else None
    return main, fallback


def _spec(policy: Policy, check: Check) -> _Spec:
    source = policy.source_of(check)
    p = q.preset(source)
    if check.kind == "custom":
        raise NotBatchable(f"check {check.name!r}: custom PromQL cannot be batched; measure it per rollout")
    if check.kind == "latency":
        base, scale = q.latency_metric(p, check.name)
        return _Spec("histogram", _family(policy, source, base + "_bucket", extra="le"), source, scale)
    if check.kind == "prediction_shift":
        base = q.prediction_metric(p, check.name, check.metric)
        return _Spec("histogram", _family(policy, source, base + "_bucket", extra="le"), source)
    if check.kind == "error_rate":
        return _Spec("errors", _family(policy, source, p.errors, matcher=p.errors_matcher), source)
    if check.kind == "feature_missing":
        q.feature_metric(p, check.name)
        if source not in FEATURE_COUNTERS:
            raise NotBatchable(f"check {check.name!r}: source {source!r} exports no feature counter")
        counter, state, _, _ = FEATURE_COUNTERS[source]
        return _Spec("features", _family(policy, source, counter, extra=state), source)
    raise ConfigError(f"check {check.name!r}: unknown kind {check.kind!r}")


def batchable(policy: Policy, check: Check) -> bool:
    """Whether snapshots can measure this check. Static: feature_missing may still turn out
    gauge-only at measure time (`NotBatchable` from `measure_delta`)."""
    try:
        _spec(policy, check)
    except ConfigError:
        return False
    return True


def families(policy: Policy, check: Check | None = None) -> list[Family]:
    """Families one check needs (None: the request counts); raises ConfigError if not batchable."""
    if check is None:
        main, fallback = _request_families(policy, policy.metrics.source)
        return main + ([fallback] if fallback else [])
    spec = _spec(policy, check)
    if spec.kind == "histogram":
        return [spec.family]
    main, fallback = _request_families(policy, spec.source)
    return [spec.family, *main, *([fallback] if fallback else [])]


def _policy_families(policy: Policy) -> list[Family]:
    out = families(policy)
    for check in policy.checks:
        try:
            out += families(policy, check)
        except ConfigError:
            continue  # measured per rollout; its error surfaces there
    return out


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of many rollouts at one instant; immutable and JSON-serialisable.

    `series` maps a family's key to {ident + (extra,): value}; a family present
    with no entry for an ident was asked for and had no series (counts as 0).
    """

    taken_at: float
    series: Mapping[str, Mapping[tuple[str, ...], float]] = field(default_factory=dict)

    _index: Mapping[str, Mapping[Ident, dict[str, float]]] = field(default_factory=dict, init=False, repr=False,
                                                                      compare=False)

    def __post_init__(self) -> None:
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.series.items()}
        object.__setattr__(self, "series", MappingProxyType(frozen))
        index: dict[str, dict[Ident, dict[str, float]]] = {}
        for key, got in frozen.items():  # by rollout arm, so a look is O(1), not O(series)
            per = index[key] = {}
            for k, v in got.items():
                per.setdefault(k[:-1], {})[k[-1]] = v
        object.__setattr__(self, "_index", index)

    def values(self, fam: Family, ident: Ident) -> dict[str, float] | None:
        """{extra label value: cumulative value} for one rollout arm; None if the family was never asked."""
        got = self._index.get(fam.key)
        if got is None:
            return None
        return dict(got.get(ident, {}))

    def arm(self, policy: Policy, check: Check, target: Target, arm: str) -> ArmData | None:
        """Cumulative data for one check and arm (bounds in ms for latency); None if absent."""
        spec = _spec(policy, check)
        vals = self.values(spec.family, spec.family.ident(target, arm))
        if vals is None or (not vals and spec.kind != "errors"):
            return None
        if spec.kind == "histogram":
            return q.normalise(_raw_buckets(vals), [], scale=spec.scale)
        if spec.kind == "features":
            missing, total = _feature_counts(vals, spec.source)
            return Counts(events=missing, total=total)
        fallback = _needs_fallback(self, policy, spec.source, target, arm)
        total = _requests(self, policy, spec.source, target, arm, fallback=fallback)
        if total is None:
            return None
        return Counts(events=min(sum(vals.values()), total), total=total)  # no error series: no errors

    def requests(self, policy: Policy, target: Target, arm: str) -> float | None:
        source = policy.metrics.source
        return _requests(self, policy, source, target, arm, fallback=_needs_fallback(self, policy, source, target, arm))

    def restrict(self, policy: Policy, target: Target) -> "Snapshot":
        """Only this rollout's series (both arms, every family its policy reads): what it persists."""
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for fam in _policy_families(policy):
            got = self._index.get(fam.key)
            if got is None:
                continue
            idents = {fam.ident(target, arm) for arm in q.ARMS}
            out[fam.key] = {(*i, x): v for i in idents for x, v in got.get(i, {}).items()}
        return Snapshot(self.taken_at, out)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "taken_at": self.taken_at,
                "series": {key: [[*k, v] for k, v in sorted(got.items())] for key, got in self.series.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Snapshot":
        if data.get("version") != 1:
            raise ConfigError(f"snapshot: unknown version {data.get('version')!r}")
        series = {key: {tuple(str(x) for x in row[:-1]): float(row[-1]) for row in rows}
                  for key, rows in data["series"].items()}
        return cls(float(data["taken_at"]), series)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> "Snapshot":
        try:
            return cls.from_dict(json.loads(text) if isinstance(text, str) else text)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(f"snapshot: not a valid persisted snapshot ({exc})") from exc


def _raw_buckets(vals: Mapping[str, float]) -> list[tuple[float, float]]:
    return [(q.parse_le(le), v) for le, v in vals.items()]


def _feature_counts(vals: Mapping[str, float], source: str) -> tuple[float, float]:
    _, _, missing, present = FEATURE_COUNTERS[source]
    m, p = max(vals.get(missing, 0.0), 0.0), max(vals.get(present, 0.0), 0.0)
    return m, m + p


def _needs_fallback(snap: Snapshot, policy: Policy, source: str, target: Target, arm: str) -> bool:
    main, fallback = _request_families(policy, source)
    return fallback is not None and not snap.values(main[0], main[0].ident(target, arm))


def _requests(snap: Snapshot, policy: Policy, source: str, target: Target, arm: str, *, fallback: bool) -> float | None:
    """Cumulative requests of one arm: the preset's counters summed, or its fallback counter.

    None: the first counter has no series (or the family was never asked);
    further counters (Triton's failures) count as 0 when absent."""
    main, fb = _request_families(policy, source)
    fams = [fb] if fallback and fb is not None else main
    first = snap.values(fams[0], fams[0].ident(target, arm))
    if not first:
        return None
    total = sum(first.values())
    for fam in fams[1:]:
        total += sum((snap.values(fam, fam.ident(target, arm)) or {}).values())
    return total


@dataclass(frozen=True)
class ArmDelta:
    """One arm's data over a window, and whether a counter reset made it 'since the restart'."""

    data: ArmData
    reset: bool = False


def _missing_family(what: str, snap: Snapshot, check: str) -> NoData:
    return NoData(f"check {check!r}: the snapshot taken at {snap.taken_at:.3f} holds no {what} for this rollout "
                  "(was it among the snapshot's wants?)")


def arm_delta(policy: Policy, check: Check, target: Target, arm: str, now: Snapshot, base: Snapshot) -> ArmDelta:
    """One arm's data between `base` and `now`. NoData without observations; NotBatchable/ConfigError
    when snapshots cannot measure the check."""
    spec = _spec(policy, check)
    fam, ident = spec.family, spec.family.ident(target, arm)
    vals_now, vals_base = now.values(fam, ident), base.values(fam, ident)
    for snap, vals in ((now, vals_now), (base, vals_base)):
        if vals is None:
            raise _missing_family(fam.metric, snap, check.name)
    assert vals_now is not None and vals_base is not None
    where = f"check {check.name!r}: {arm} arm of {target.model!r}"
    d = _arm_delta(spec, policy, target, arm, snaps=(now, base), vals=(vals_now, vals_base), where=where)
    if d.reset:
        log.warning("metrics.counter_reset", check=check.name, model=target.model, namespace=target.namespace,
                    arm=arm, base_taken_at=base.taken_at, now_taken_at=now.taken_at)
    return d


def _arm_delta(spec: _Spec, policy: Policy, target: Target, arm: str, *, snaps: tuple[Snapshot, Snapshot],
               vals: tuple[dict[str, float], dict[str, float]], where: str) -> ArmDelta:
    fam, (now, base), (vals_now, vals_base) = spec.family, snaps, vals
    if spec.kind == "histogram":
        if not vals_now:
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.key}")
        return _histogram_delta(_raw_buckets(vals_now), _raw_buckets(vals_base), spec.scale, where)
    if spec.kind == "features":
        if not vals_now:
            other = "canary" if arm == "stable" else "stable"
            fallback = _needs_fallback(now, policy, spec.source, target, arm)
            if not now.values(fam, fam.ident(target, other)) and _requests(now, policy, spec.source, target, arm,
                                                                           fallback=fallback):
                raise NotBatchable(f"{where}: no {fam.metric} counter (gauge only?); measure it per rollout")
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.key}")
        return _counts_delta(_feature_counts(vals_now, spec.source), _feature_counts(vals_base, spec.source), where)
    fallback = _needs_fallback(now, policy, spec.source, target, arm)
    totals = [_requests(s, policy, spec.source, target, arm, fallback=fallback) for s in (now, base)]
    if totals[0] is None:
        raise NoData(f"{where}: no request counter series")
    n_now, n_base = totals[0], totals[1] or 0.0
    e_now, e_base = sum(vals_now.values()), sum(vals_base.values())
    return _counts_delta((e_now, n_now), (e_base, n_base), where)


def _histogram_delta(now_raw: list[tuple[float, float]], base_raw: list[tuple[float, float]], scale: float,
                     where: str) -> ArmDelta:
    """Both histograms on the union of their bounds (a missing bucket carries the one below), then subtracted."""
    bounds = [le for le, _ in now_raw + base_raw]
    h_now, h_base = q.normalise(now_raw, bounds), q.normalise(base_raw, bounds)
    reset = h_now.total < h_base.total
    if reset:
        delta = list(zip(h_now.bounds, h_now.counts))
    else:
        delta = [(le, a - b) for le, a, b in zip(h_now.bounds, h_now.counts, h_base.counts)]
    h = q.normalise(delta, h_now.bounds, scale=scale)  # clamps to non-negative, non-decreasing
    if h.total <= 0:
        raise NoData(f"{where}: no observations in the window")
    return ArmDelta(h, reset)


def _counts_delta(now: tuple[float, float], base: tuple[float, float], where: str) -> ArmDelta:
    (e_now, n_now), (e_base, n_base) = now, base
    reset = n_now < n_base or e_now < e_base
    if reset:
        events, total = e_now, n_now
    else:
        events, total = e_now - e_base, n_now - n_base
    if total <= 0:
        raise NoData(f"{where}: no requests in the window")
    return ArmDelta(Counts(events=min(max(events, 0.0), total), total=total), reset)


def measure_delta(policy: Policy, check: Check, target: Target, now: Snapshot, base: Snapshot) -> tuple[ArmData, ArmData]:
    """(stable, canary) over the window base..now, as `PrometheusProvider.measure` gives for a window."""
    return (arm_delta(policy, check, target, "stable", now, base).data,
            arm_delta(policy, check, target, "canary", now, base).data)


def requests_delta(policy: Policy, target: Target, now: Snapshot, base: Snapshot) -> tuple[float, float]:
    """(stable, canary) requests over base..now (a reset counts from the restart); NoData when none."""
    out: list[float] = []
    for arm in q.ARMS:
        n_now, n_base = now.requests(policy, target, arm), base.requests(policy, target, arm)
        if n_now is None:
            fams = families(policy)
            if now.values(fams[0], fams[0].ident(target, arm)) is None:
                raise _missing_family("request counter", now, "request_counts")
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r}")
        n_base = n_base or 0.0
        if n_now < n_base:
            log.warning("metrics.counter_reset", check="request_counts", model=target.model,
                        namespace=target.namespace, arm=arm, base_taken_at=base.taken_at, now_taken_at=now.taken_at)
            n = n_now
        else:
            n = n_now - n_base
        if n <= 0:
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r} in the window")
        out.append(n)
    return out[0], out[1]


@dataclass
class _Group:
    filters: dict[str, set[str]] = field(default_factory=dict)  # label -> values seen
    idents: set[Ident] = field(default_factory=set)


class BatchMetrics:
    """Takes snapshots for many rollouts with one query per family."""

    def __init__(self, prom: PrometheusProvider, *, regex_limit: int = REGEX_LIMIT) -> None:
        self.prom = prom
        self.regex_limit = regex_limit
        self.queries_last = 0

    def plan(self, wants: Iterable[Want]) -> dict[Family, str]:
        """The query each family will be asked with (what `snapshot` sends)."""
        return {fam: self._query(fam, g) for fam, g in _group(wants).items()}

    def _query(self, fam: Family, group: _Group) -> str:
        filters = {k: v for k, v in group.filters.items() if len(v) <= self.regex_limit}
        return fam.query(filters)

    def snapshot(self, wants: Iterable[Want], *, at: float | None = None) -> Snapshot:
        groups = _group(wants)
        taken_at = at if at is not None else (self.prom.at if self.prom.at is not None else time.time())
        series: dict[str, dict[tuple[str, ...], float]] = {}
        self.queries_last = 0
        for fam, group in groups.items():
            query = self._query(fam, group)
            self.queries_last += 1
            result = self.prom.query(query, check="batch", at=at)
            series[fam.key] = _parse(result, fam, group.idents, query)
        log.debug("metrics.batch_snapshot", families=len(groups), queries=self.queries_last)
        return Snapshot(taken_at, series)


def _group(wants: Iterable[Want]) -> dict[Family, _Group]:
    groups: dict[Family, _Group] = {}
    for want in wants:
        try:
            fams = _policy_families(want.policy)
        except ConfigError:
            continue  # a bad metrics section: the per-rollout path reports it
        for fam in fams:
            g = groups.setdefault(fam, _Group())
            for arm in q.ARMS:
                ident = fam.ident(want.target, arm)
                g.idents.add(ident)
                for (label, _), value in zip(fam.by, ident):
                    g.filters.setdefault(label, set()).add(value)
    return groups


def _parse(result: Any, fam: Family, idents: set[Ident], query: str) -> dict[tuple[str, ...], float]:
    if not isinstance(result, list):
        raise MetricsUnavailable(f"batch: malformed answer (not a vector); query: {query}")
    out: dict[tuple[str, ...], float] = {}
    try:
        for s in result:
            labels = s["metric"]
            ident = tuple(labels.get(label, "") for label, _ in fam.by)
            if ident not in idents:
                continue  # filtered client-side: exact values only, whatever the regex let through
            value = float(s["value"][1])
            if math.isfinite(value):
                key = (*ident, labels.get(fam.extra, "") if fam.extra else "")
                out[key] = out.get(key, 0.0) + value
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
    return out

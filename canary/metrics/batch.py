"""Batched measurement: one query per metric family per tick, however many rollouts run.

`PrometheusProvider.measure` asks ``increase(...[window])`` per check, per arm,
per rollout: a controller driving hundreds of rollouts sends hundreds of
queries a tick. Here each tick sends ONE instant query per *family* (a metric
with its constant matchers and label shape) for all rollouts at once, returning
the CUMULATIVE counter of every series, e.g.::

    last_over_time(model_inference_duration_seconds_bucket{model_name=~"a|b"}[10m])

Each rollout keeps the `Snapshot` taken when its step started (its step-start snapshot,
`Snapshot.restrict` keeps only its own series so it fits in a CR status) and
its window is `now - step-start snapshot`, computed PER SERIES and then summed per arm:
per-rollout timing stays independent while the query count depends only on the
set of families (`BatchMetrics.queries_last`; families whose query text is the
same share one query).

Decisions:

- Per series, not per arm: a sum over pods hides one pod's restart (the sum
  barely moves, or drops and throws away the other pods' history), so snapshots
  keep series apart. No `sum by` at all: we cannot know which labels tell
  series apart (pod, instance, container, ...), and summing away any of them can
  merge a restarted series with a live one. A series is named by a 48-bit hash
  of its labels other than the rollout labels, `le`/state and `__name__`
  (`Family.series_id`), so a persisted step-start snapshot stays small. Answers are larger
  (times the pods), the price of counting like `increase()`.
- `last_over_time(...[LOOKBACK])`, not a bare selector: a scrape that failed at
  snapshot time writes staleness markers and would make a live series look
  "born" later (counted from 0: its whole history); a pod deleted after the
  step-start snapshot stays visible for LOOKBACK, so its growth until it died still counts.
- Per series group (one series' buckets or feature states) between step-start snapshot and
  now: present in both and no value went down -> the difference; any value went
  down -> the group restarted and counts its current values, as `increase()` does
  across a reset between two samples (flagged in `ArmDelta.reset`, logged as
  ``metrics.counter_reset``); absent from the step-start snapshot -> born in the window, from
  0; absent now -> contributes nothing new. Limitation of two points: growth
  before a restart is not seen (`increase()` sees it between samples), nor a
  restart after which a series outgrew its own step-start snapshot value. Rates match
  `increase()`'s while a series' error share is steady; counts can be lower.
- A step-start snapshot is BOUND: `restrict` records namespace, model, both versions and
  (given) the step; `taken_at` is when it was taken. `arm_delta` refuses a bound
  snapshot of another model/version, or a step-start snapshot newer than now;
  `check_step_start` also checks the step. Refusals and unreadable or old-format
  persisted snapshots raise `UnusableStepStart`: take a new step-start snapshot.
- Model, version and namespace values get a regex matcher (RE2 metacharacters
  escaped, then PromQL-string escaped) while there are at most `REGEX_LIMIT`
  of them; beyond that none (one big answer beats a huge URL). Either way the
  answer is filtered client-side on exact label values, so a name can neither
  inject PromQL nor widen what a rollout sees.
- Feature-missing needs a counter (``model_features_total{state="missing"|
  "present"}``): Counts(events=missing, total=missing+present) counts feature
  VALUES, not requests as the gauge path does. Where only the gauge exists the
  check raises `NotBatchable` (a ConfigError); so do custom checks. The caller
  measures those per rollout with `PrometheusProvider`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import structlog

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics import queries as q
from canary.metrics.prometheus import PrometheusProvider
from canary.model import ArmData, Counts, Target
from canary.policy import Check, Policy

log = structlog.get_logger(__name__)
REGEX_LIMIT = 50  # more distinct values than this: no regex matcher, filter client-side only
LOOKBACK = "10m"  # last_over_time range: bridges failed scrapes, keeps recently deleted pods visible
FORMAT = 2  # persisted snapshot format; 1 summed series per arm
_RE2_META = frozenset("\\.+*?()|[]{}^$")
# source -> (counter, state label, missing value, present value); only the model family exports one
FEATURE_COUNTERS: dict[str, tuple[str, str, str, str]] = {
    "model": ("model_features_total", "state", "missing", "present"),
}
_PROBE = Target(namespace="n", virtual_service="v", model="m", stable_version="s", canary_version="c")
Ident = tuple[str, ...]
Groups = Mapping[str, Mapping[str, float]]  # series id -> {extra label value: cumulative value}


class NotBatchable(ConfigError):
    """This check cannot be measured from snapshots; measure it per rollout instead."""


class UnusableStepStart(ConfigError):
    """This snapshot cannot be the step-start snapshot here (another rollout/step, old format, unreadable): take a new one."""


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

    def query(self, filters: Mapping[str, Iterable[str]] | None = None, *, lookback: str = LOOKBACK) -> str:
        """Every series' latest cumulative value (series kept apart: see the module docstring)."""
        return f"last_over_time({self.metric}{self._matchers(filters)}[{lookback}])"

    @cached_property
    def key(self) -> str:
        """Names the family in a snapshot, whatever rollouts it covered: the selector and the labels
        that tell rollouts apart (two label shapes can share a query, never a key)."""
        labels = [label for label, _ in self.by] + ([self.extra] if self.extra else [])
        return f"{self.metric}{self._matchers(None)} by ({', '.join(labels)})"

    def ident(self, target: Target, arm: str) -> Ident:
        values = {"model": target.model, "version": q.arm_version(target, arm), "namespace": target.namespace}
        return tuple(values[role] for _, role in self.by)

    @cached_property
    def _not_identity(self) -> frozenset[str]:
        return frozenset([label for label, _ in self.by] + [self.extra, "__name__"])

    def identity(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The labels that tell one rollout arm's series apart (pod, instance, outcome...), sorted."""
        return tuple(sorted(kv for kv in labels.items() if kv[0] not in self._not_identity))

    def series_id(self, labels: Mapping[str, str]) -> str:
        """48-bit hash of `identity`: what names a series in a snapshot."""
        return _hash_identity(self.identity(labels))


def _hash_identity(identity: tuple[tuple[str, str], ...]) -> str:
    return hashlib.blake2b(json.dumps(identity, separators=(",", ":")).encode(), digest_size=6).hexdigest()


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
class Binding:
    """What a step-start snapshot measures: one rollout's model and versions, and (when given) its step."""

    namespace: str
    model: str
    stable_version: str
    canary_version: str
    step_started_at: float | None = None

    @classmethod
    def of(cls, target: Target, step_started_at: float | None = None) -> "Binding":
        return cls(target.namespace, target.model, target.stable_version, target.canary_version, step_started_at)

    def mismatch(self, target: Target, *, step_started_at: float | None = None) -> str | None:
        """Why this binding does not fit `target` (and the step, if given); None when it does."""
        mine = (self.namespace, self.model, self.stable_version, self.canary_version)
        if mine != (theirs := (target.namespace, target.model, target.stable_version, target.canary_version)):
            return "taken for {}/{} {} -> {}, not {}/{} {} -> {}".format(*mine, *theirs)
        if step_started_at is not None and self.step_started_at != step_started_at:
            return f"taken for the step started at {self.step_started_at}, not {step_started_at}"
        return None


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of many rollouts' series at one instant; immutable and JSON-serialisable.

    `series` maps a family's key to {ident + (series id, extra): value}; a family
    present with no entry for an ident was asked for and had no series (counts as
    0). `bound` is set on a rollout's step-start snapshot (`restrict`).
    """

    taken_at: float
    series: Mapping[str, Mapping[tuple[str, ...], float]] = field(default_factory=dict)
    bound: Binding | None = None

    _index: Mapping[str, Mapping[Ident, dict[str, dict[str, float]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.series.items()}
        object.__setattr__(self, "series", MappingProxyType(frozen))
        index: dict[str, dict[Ident, dict[str, dict[str, float]]]] = {}
        for key, got in frozen.items():  # by rollout arm, then series: a look is O(its series)
            per = index[key] = {}
            for k, v in got.items():
                per.setdefault(k[:-2], {}).setdefault(k[-2], {})[k[-1]] = v
        object.__setattr__(self, "_index", index)

    def _groups(self, fam: Family, ident: Ident) -> Groups | None:
        """{series id: {extra: cumulative}} of one rollout arm (read only); None if the family was never asked."""
        got = self._index.get(fam.key)
        return None if got is None else got.get(ident, {})

    def values(self, fam: Family, ident: Ident) -> dict[str, float] | None:
        """{extra label value: cumulative value summed over series} for one rollout arm; None if never asked."""
        groups = self._groups(fam, ident)
        if groups is None:
            return None
        out: dict[str, float] = {}
        for vals in groups.values():
            for x, v in vals.items():
                out[x] = out.get(x, 0.0) + v
        return out

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
        total = self.requests(policy, target, arm, source=spec.source)
        if total is None:
            return None
        return Counts(events=min(sum(vals.values()), total), total=total)  # no error series: no errors

    def requests(self, policy: Policy, target: Target, arm: str, *, source: str | None = None) -> float | None:
        """Cumulative requests of one arm, summed over series; None without a request counter series."""
        fams = _request_fams(self, policy, source or policy.metrics.source, target, arm)
        if not self._groups(fams[0], fams[0].ident(target, arm)):
            return None
        return sum(sum((self.values(f, f.ident(target, arm)) or {}).values()) for f in fams)

    def restrict(self, policy: Policy, target: Target, *, step_started_at: float | None = None) -> "Snapshot":
        """Only this rollout's series (both arms, every family its policy reads), bound to it: what it persists."""
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for fam in _policy_families(policy):
            got = self._index.get(fam.key)
            if got is None:
                continue
            idents = {fam.ident(target, arm) for arm in q.ARMS}
            out[fam.key] = {(*i, sid, x): v for i in idents for sid, vals in got.get(i, {}).items()
                            for x, v in vals.items()}
        return Snapshot(self.taken_at, out, Binding.of(target, step_started_at))

    def check_step_start(self, target: Target, *, step_started_at: float | None = None) -> "Snapshot":
        """This snapshot if it is a step-start snapshot taken for `target` (and that step, if given); else UnusableStepStart."""
        why = "not bound to a rollout (restrict() binds it)" if self.bound is None else \
            self.bound.mismatch(target, step_started_at=step_started_at)
        if why:
            raise UnusableStepStart(f"step-start snapshot taken at {self.taken_at:.3f}: {why}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """{"version", "taken_at", "bound"?, "series": {key: [[*ident, {series id: {extra: value}}]]}}."""
        series = {key: [[*ident, {sid: dict(sorted(vals.items())) for sid, vals in sorted(groups.items())}]
                        for ident, groups in sorted(per.items())] for key, per in self._index.items()}
        out: dict[str, Any] = {"version": FORMAT, "taken_at": self.taken_at, "series": series}
        if self.bound is not None:
            out["bound"] = {k: v for k, v in vars(self.bound).items() if v is not None}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Snapshot":
        """Raises UnusableStepStart for an old format or anything malformed: the caller takes a new step-start snapshot."""
        try:
            version = data.get("version")
            if version == 1:
                raise UnusableStepStart("snapshot: format 1 sums counters over series, so it cannot see one series "
                                       "restart; take a new step-start snapshot")
            if version != FORMAT:
                raise UnusableStepStart(f"snapshot: unknown format {version!r}")
            series: dict[str, dict[tuple[str, ...], float]] = {}
            for key, rows in data["series"].items():
                got = series[str(key)] = {}
                for row in rows:
                    *ident, groups = row
                    for sid, vals in groups.items():
                        for x, v in vals.items():
                            if not math.isfinite(value := float(v)):
                                raise ValueError(f"value {v!r}")
                            got[(*(str(i) for i in ident), str(sid), str(x))] = value
            return cls(float(data["taken_at"]), series, _binding(data.get("bound")))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise UnusableStepStart(f"snapshot: not a valid persisted snapshot ({exc})") from exc

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> "Snapshot":
        try:
            data = json.loads(text) if isinstance(text, str) else text
        except ValueError as exc:
            raise UnusableStepStart(f"snapshot: not a valid persisted snapshot ({exc})") from exc
        return cls.from_dict(data)


def _binding(data: Mapping[str, Any] | None) -> Binding | None:
    if data is None:
        return None
    step = data.get("step_started_at")
    return Binding(*(str(data[k]) for k in ("namespace", "model", "stable_version", "canary_version")),
                   step_started_at=None if step is None else float(step))


def _raw_buckets(vals: Mapping[str, float]) -> list[tuple[float, float]]:
    return [(q.parse_le(le), v) for le, v in vals.items()]


def _feature_counts(vals: Mapping[str, float], source: str) -> tuple[float, float]:
    _, _, missing, present = FEATURE_COUNTERS[source]
    m, p = max(vals.get(missing, 0.0), 0.0), max(vals.get(present, 0.0), 0.0)
    return m, m + p


def _request_fams(snap: Snapshot, policy: Policy, source: str, target: Target, arm: str) -> list[Family]:
    """The preset's request counters, or its fallback when `snap` has no series of the first for this arm.
    Further counters (Triton's failures) count as 0 when absent."""
    main, fallback = _request_families(policy, source)
    if fallback is not None and not snap.values(main[0], main[0].ident(target, arm)):
        return [fallback]
    return main


@dataclass(frozen=True)
class ArmDelta:
    """One arm's data over a window, and whether a counter reset made part of it 'since the restart'."""

    data: ArmData
    reset: bool = False


def _missing_family(what: str, snap: Snapshot, check: str) -> NoData:
    return NoData(f"check {check!r}: the snapshot taken at {snap.taken_at:.3f} holds no {what} for this rollout "
                  "(was it among the snapshot's wants?)")


def _check_pair(now: Snapshot, base: Snapshot, target: Target) -> None:
    for snap in (base, now):
        why = snap.bound.mismatch(target) if snap.bound is not None else None
        if why:
            raise UnusableStepStart(f"snapshot taken at {snap.taken_at:.3f} {why}")
    if now.taken_at < base.taken_at:
        raise UnusableStepStart(f"step-start snapshot taken at {base.taken_at:.3f}, after the snapshot it is compared with "
                               f"({now.taken_at:.3f})")


def _counter_delta(now: Groups, base: Groups) -> tuple[dict[str, float], int]:
    """Per series group: now - base; the current values after a reset (any value went down);
    from 0 for a group born in the window. Summed per extra label value; also the resets."""
    out: dict[str, float] = {}
    resets = 0
    for sid, cur in now.items():
        before = base.get(sid, {})
        if any(cur.get(x, 0.0) < v for x, v in before.items()):
            resets, before = resets + 1, {}
        for x, v in cur.items():
            out[x] = out.get(x, 0.0) + v - before.get(x, 0.0)
    return out, resets


def _histogram_delta(now: Groups, base: Groups, scale: float, where: str) -> tuple[ArmDelta, int]:
    """Per series: both histograms on the union of their bounds (a missing bucket carries the one below),
    subtracted, or the current one after a reset; then summed on the union of every series' bounds."""
    deltas: list[list[tuple[float, float]]] = []
    resets = 0
    for sid, cur in now.items():
        now_raw, base_raw = _raw_buckets(cur), _raw_buckets(base.get(sid, {}))
        bounds = [le for le, _ in now_raw + base_raw]
        h_now, h_base = q.normalise(now_raw, bounds), q.normalise(base_raw, bounds)
        if any(a < b for a, b in zip(h_now.counts, h_base.counts)):
            resets += 1
            deltas.append(list(zip(h_now.bounds, h_now.counts)))
        else:
            deltas.append([(le, a - b) for le, a, b in zip(h_now.bounds, h_now.counts, h_base.counts)])
    bounds = sorted({le for d in deltas for le, _ in d} | {math.inf})
    summed = [0.0] * len(bounds)
    for d in deltas:
        summed = [s + c for s, c in zip(summed, q.normalise(d, bounds).counts)]
    h = q.normalise(list(zip(bounds, summed)), bounds, scale=scale)  # clamps to non-negative, non-decreasing
    if h.total <= 0:
        raise NoData(f"{where}: no observations in the window")
    return ArmDelta(h, resets > 0), resets


def _requests_delta(now: Snapshot, base: Snapshot, policy: Policy, source: str, target: Target,
                    arm: str) -> tuple[float, int] | None:
    """Requests of one arm over base..now, series by series, and the series that restarted; None when
    `now` has no request counter series for the arm."""
    fams = _request_fams(now, policy, source, target, arm)
    if not now._groups(fams[0], fams[0].ident(target, arm)):
        return None
    total, resets = 0.0, 0
    for fam in fams:
        ident = fam.ident(target, arm)
        vals_base = base._groups(fam, ident)
        if vals_base is None:
            raise _missing_family(f"request counter {fam.metric}", base, "request_counts")
        d, r = _counter_delta(now._groups(fam, ident) or {}, vals_base)
        total, resets = total + sum(d.values()), resets + r
    return total, resets


def _log_resets(resets: int, check: str, target: Target, arm: str, now: Snapshot, base: Snapshot) -> None:
    if resets:
        log.warning("metrics.counter_reset", check=check, model=target.model, namespace=target.namespace, arm=arm,
                    series=resets, base_taken_at=base.taken_at, now_taken_at=now.taken_at)


def arm_delta(policy: Policy, check: Check, target: Target, arm: str, now: Snapshot, base: Snapshot) -> ArmDelta:
    """One arm's data between `base` and `now`. NoData without observations; NotBatchable/ConfigError
    when snapshots cannot measure the check; UnusableStepStart when a snapshot is bound to another rollout."""
    spec = _spec(policy, check)
    _check_pair(now, base, target)
    fam, ident = spec.family, spec.family.ident(target, arm)
    g_now, g_base = now._groups(fam, ident), base._groups(fam, ident)
    for snap, got in ((now, g_now), (base, g_base)):
        if got is None:
            raise _missing_family(fam.metric, snap, check.name)
    assert g_now is not None and g_base is not None
    where = f"check {check.name!r}: {arm} arm of {target.model!r}"
    d, resets = _arm_delta(spec, policy, target, arm, snaps=(now, base), groups=(g_now, g_base), where=where)
    _log_resets(resets, check.name, target, arm, now, base)
    return d


def _arm_delta(spec: _Spec, policy: Policy, target: Target, arm: str, *, snaps: tuple[Snapshot, Snapshot],
               groups: tuple[Groups, Groups], where: str) -> tuple[ArmDelta, int]:
    fam, (now, base), (g_now, g_base) = spec.family, snaps, groups
    if spec.kind == "histogram":
        if not g_now:
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.query()}")
        return _histogram_delta(g_now, g_base, spec.scale, where)
    if spec.kind == "features":
        if not g_now:
            other = "canary" if arm == "stable" else "stable"
            if not now._groups(fam, fam.ident(target, other)) and now.requests(policy, target, arm, source=spec.source):
                raise NotBatchable(f"{where}: no {fam.metric} counter (gauge only?); measure it per rollout")
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.query()}")
        d, resets = _counter_delta(g_now, g_base)
        missing, total = _feature_counts(d, spec.source)
        return _counts(missing, total, resets, where), resets
    got = _requests_delta(now, base, policy, spec.source, target, arm)
    if got is None:
        raise NoData(f"{where}: no request counter series")
    d, resets = _counter_delta(g_now, g_base)
    return _counts(sum(d.values()), got[0], resets + got[1], where), resets + got[1]


def _counts(events: float, total: float, resets: int, where: str) -> ArmDelta:
    if total <= 0:
        raise NoData(f"{where}: no requests in the window")
    return ArmDelta(Counts(events=min(max(events, 0.0), total), total=total), resets > 0)


def measure_delta(policy: Policy, check: Check, target: Target, now: Snapshot, base: Snapshot) -> tuple[ArmData, ArmData]:
    """(stable, canary) over the window base..now, as `PrometheusProvider.measure` gives for a window."""
    return (arm_delta(policy, check, target, "stable", now, base).data,
            arm_delta(policy, check, target, "canary", now, base).data)


def requests_delta(policy: Policy, target: Target, now: Snapshot, base: Snapshot) -> tuple[float, float]:
    """(stable, canary) requests over base..now (series by series, a reset counts from the restart);
    NoData when none; UnusableStepStart when a snapshot is bound to another rollout."""
    _check_pair(now, base, target)
    source, out = policy.metrics.source, []
    for arm in q.ARMS:
        got = _requests_delta(now, base, policy, source, target, arm)
        if got is None:
            fam = families(policy)[0]
            if now._groups(fam, fam.ident(target, arm)) is None:
                raise _missing_family("request counter", now, "request_counts")
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r}")
        _log_resets(got[1], "request_counts", target, arm, now, base)
        if got[0] <= 0:
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r} in the window")
        out.append(got[0])
    return out[0], out[1]


@dataclass
class _Group:
    filters: dict[str, set[str]] = field(default_factory=dict)  # label -> values seen
    idents: set[Ident] = field(default_factory=set)


class BatchMetrics:
    """Takes snapshots for many rollouts with one query per family."""

    def __init__(self, prom: PrometheusProvider, *, regex_limit: int = REGEX_LIMIT, lookback: str = LOOKBACK) -> None:
        self.prom = prom
        self.regex_limit = regex_limit
        self.lookback = lookback
        self.queries_last = 0

    def plan(self, wants: Iterable[Want]) -> dict[Family, str]:
        """The query each family will be asked with (what `snapshot` sends)."""
        return {fam: self._query(fam, g) for fam, g in _group(wants).items()}

    def _query(self, fam: Family, group: _Group) -> str:
        filters = {k: v for k, v in group.filters.items() if len(v) <= self.regex_limit}
        return fam.query(filters, lookback=self.lookback)

    def snapshot(self, wants: Iterable[Want], *, at: float | None = None) -> Snapshot:
        groups = _group(wants)
        taken_at = at if at is not None else (self.prom.at if self.prom.at is not None else time.time())
        # every family at ONE evaluation time: otherwise the request counter and a histogram of
        # the same snapshot can fall in different seconds and disagree on the window's traffic
        at = taken_at
        series: dict[str, dict[tuple[str, ...], float]] = {}
        answers: dict[str, Any] = {}  # label shapes that differ only in roles share one query
        for fam, group in groups.items():
            query = self._query(fam, group)
            if query not in answers:
                answers[query] = self.prom.query(query, check="batch", at=at)
            series[fam.key] = _parse(answers[query], fam, group.idents, query)
        self.queries_last = len(answers)
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
    ids: dict[tuple[tuple[str, str], ...], str] = {}  # one hash per series, not per bucket
    try:
        for s in result:
            labels = s["metric"]
            ident = tuple(labels.get(label, "") for label, _ in fam.by)
            if ident not in idents:
                continue  # filtered client-side: exact values only, whatever the regex let through
            value = float(s["value"][1])
            if math.isfinite(value):
                own = fam.identity(labels)
                sid = ids.get(own) or ids.setdefault(own, _hash_identity(own))
                key = (*ident, sid, labels.get(fam.extra, "") if fam.extra else "")
                out[key] = out.get(key, 0.0) + value  # one id for two series: a 48-bit collision; summed
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
    return out

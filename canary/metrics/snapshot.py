"""Snapshots: every series' cumulative counters at one instant, bound to a rollout and persisted.

A rollout keeps the `Snapshot` taken when its step started (its step-start
snapshot) in its status, and measures its window as the difference to a
later one (`delta`). Kept apart from querying (`batch`) and from the
arithmetic (`delta`) because this is the persisted format: what a restarted
controller must be able to read back, or refuse.

- Per series, not per arm: a sum over pods hides one pod's restart (the sum
  barely moves, or drops and throws away the other pods' history), so
  snapshots keep series apart (`Family.series_id`). Answers are larger (times
  the pods), the price of counting like `increase()`. `restrict` keeps only
  one rollout's series, so it fits in a CR status.
- A step-start snapshot is BOUND: `restrict` records namespace, model, both versions and
  (given) the step; `taken_at` is when it was taken. `delta.arm_delta` refuses a bound
  snapshot of another model/version, or a step-start snapshot newer than now;
  `check_step_start` also checks the step. Refusals and unreadable or old-format
  persisted snapshots raise `UnusableStepStart`: take a new step-start snapshot.
"""

from __future__ import annotations

import json
import math
import zlib
from array import array
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

from canary.packing import pack_text, unpack_text
from canary.errors import ConfigError, MetricsUnavailable, NotCountable
from canary.metrics import queries as q
from canary.metrics.families import FEATURE_COUNTERS, Family, Ident, check_spec, policy_families, request_families
from canary.model import ArmData, Counts, Target
from canary.policy import Check, Policy

FORMAT = 2  # persisted snapshot format; 1 summed series per arm
# the series id that marks a rollout arm's family as unreadable in this snapshot: one of its series had
# a NaN or infinite sample (series ids are hex hashes, so it names no series); persisted as a finite value
UNREADABLE = "!unreadable"
# the same for a rollout arm whose family Prometheus answered only in part (a partial-response warning,
# or an error status, even when asked for that rollout alone: `batch`): its series may be incomplete
PARTIAL = "!partial"
# the same for a rollout arm whose series one snapshot read twice (two families of one metric, such as the
# requests and the failed requests) with two values: two answers from two scrapes, such as two Prometheus
# replicas behind one load-balanced address (`batch`, decision 175): its counts are of no one window
MIXED = "!mixed"
# the same for a rollout arm one of whose scrape targets (`instance`) two scrape jobs read (a ServiceMonitor
# beside an annotation scrape): every series of that pod is in the answer twice, and a sum would count its
# requests twice, more evidence than requests served (`batch`)
SCRAPED_TWICE = "!scraped_twice"
# the same for a rollout arm one of whose scrape targets is down now (`up == 0`: its pod still discovered, so
# still serving) while Prometheus held its series within the hour and has no sample of them now: what that pod
# serves, errors included, is in no sum (`batch`, decision 364). Its values name the instances. Only in a
# snapshot a look reads (`restrict` leaves it out of a step-start snapshot: `missed` and the look's own
# snapshot say what such a pod changes)
TARGET_DOWN = "!target_down"
# the same for a rollout arm some of whose series an exporter labelled with another model or version (`exported_*`):
# a scrape target label of that name overrode it (`honor_labels: false`), so another arm's requests are in this one's
# sums (`batch`, decision 435). Its values name the instances
RELABELLED = "!relabelled"
# the same for a rollout arm whose series of one metric are both pushed to a Pushgateway and read otherwise (scraped,
# federated): a pod that pushes and is scraped is in its sums twice (`batch`, decision 483). Its values name the
# pushed jobs
PUSHED = "!pushed"
RESETS = "!resets"
BEFORE = "!before"  # in a restart probe's answer: the series' value as Prometheus held it at the window's start  # in a restart probe's answer: the key of a series' `resets()` count (`Snapshot.restarted`)
# (family, rollout arm, since) -> {series id: {extra label value: min over (since, taken_at], RESETS: count}}
RestartProbe = Callable[[Family, Ident, float], Mapping[str, Mapping[str, float]]]
Groups = Mapping[str, Mapping[str, float]]  # series id -> {extra label value: cumulative value}


class UnusableStepStart(ConfigError):
    """This snapshot cannot be the step-start snapshot here (another rollout/step, old format, unreadable): take a new one."""


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


# key layouts shared by every Values with the same keys in the same order (a histogram's bounds,
# a counter's feature states): {keys: (keys, {key: position})}. A set the exporters' layouts fix;
# emptied if it ever grows past _MAX_LAYOUTS (the Values made before keep theirs).
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[str, ...], dict[str, int]]] = {}
_MAX_LAYOUTS = 10_000


class Values(Mapping[str, float]):
    """One series' {extra label value: cumulative value} (its buckets by `le`, its feature states, or
    {"": value}), read only and compact: the keys are shared by every series with the same layout and
    the values are one array of doubles. A tick's snapshot holds ~250,000 of these values at 2,500
    rollouts with x1.1 buckets: as dicts of floats they were ~29 MB, the largest object a tick builds."""

    __slots__ = ("_keys", "_pos", "_vals")

    def __init__(self, items: Mapping[str, float]) -> None:
        keys = tuple(items)
        layout = _LAYOUTS.get(keys)
        if layout is None and "zt" in items:  # a native histogram's populated buckets: its own layout,
            layout = (keys, {k: i for i, k in enumerate(keys)})  # not one of the exporters' few shared ones
        elif layout is None:
            if len(_LAYOUTS) >= _MAX_LAYOUTS:
                _LAYOUTS.clear()
            layout = _LAYOUTS.setdefault(keys, (keys, {k: i for i, k in enumerate(keys)}))
        self._keys, self._pos = layout
        self._vals = array("d", items.values())

    def __getitem__(self, key: str) -> float:
        return self._vals[self._pos[key]]

    def get(self, key: str, default: Any = None) -> Any:
        i = self._pos.get(key)
        return default if i is None else self._vals[i]

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> Any:
        return tuple(zip(self._keys, self._vals))

    def values(self) -> Any:
        return memoryview(self._vals).toreadonly()  # shared by every snapshot that holds it: read only

    def __repr__(self) -> str:
        return f"Values({dict(self.items())!r})"


def _freeze(index: dict[str, Any]) -> dict[str, Any]:
    """`index` with every series' values as `Values` (in place; returns it)."""
    for per in index.values():
        for groups in per.values():
            for sid, vals in groups.items():
                if not isinstance(vals, Values):
                    groups[sid] = Values(vals)
    return index


class Snapshot:
    """Cumulative counters of many rollouts' series at one instant; immutable and JSON-serialisable.

    Built from `series`, which maps a family's key to {ident + (series id, extra): value}; a family
    present with no entry for an ident was asked for and had no series (counts as 0). `bound` is
    set on a rollout's step-start snapshot (`restrict`).

    Held once, by rollout arm then series (a look reads O(its series)); the flat `series` form
    is rebuilt on demand (tests, debugging): a tick's snapshot holds ~85,000 values at 2,500
    rollouts and each rollout keeps its step-start one, so a second copy costs megabytes.
    """

    __slots__ = ("taken_at", "bound", "_index", "_probe")

    def __init__(self, taken_at: float, series: Mapping[str, Mapping[tuple[str, ...], float]] | None = None,
                 bound: Binding | None = None) -> None:
        index: dict[str, dict[Ident, dict[str, dict[str, float]]]] = {}
        for key, got in (series or {}).items():
            per = index[key] = {}
            for k, v in got.items():
                per.setdefault(k[:-2], {}).setdefault(k[-2], {})[k[-1]] = v
        self._set(taken_at, bound, index)

    def _set(self, taken_at: float, bound: Binding | None, index: dict[str, Any]) -> None:
        object.__setattr__(self, "taken_at", taken_at)
        object.__setattr__(self, "bound", bound)
        object.__setattr__(self, "_index", _freeze(index))
        object.__setattr__(self, "_probe", None)

    @classmethod
    def from_index(cls, taken_at: float, index: dict[str, dict[Ident, dict[str, dict[str, float]]]],
                   bound: Binding | None = None, *, probe: RestartProbe | None = None) -> "Snapshot":
        """A snapshot that takes `index` ({family key: {ident: {series id: {extra: value}}}}) as it is
        (the caller must not change it afterwards): what `batch` builds while parsing, with no flat copy.
        `probe`: how `restarted` asks Prometheus (not persisted, not compared)."""
        snap = cls.__new__(cls)
        snap._set(taken_at, bound, index)
        object.__setattr__(snap, "_probe", probe)
        return snap

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Snapshot is immutable (tried to set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Snapshot is immutable (tried to delete {name})")

    @property
    def series(self) -> Mapping[str, Mapping[tuple[str, ...], float]]:
        """The flat form: {family key: {ident + (series id, extra): value}} (read only, built on each call)."""
        return MappingProxyType({key: MappingProxyType({(*ident, sid, x): v for ident, groups in per.items()
                                                        for sid, vals in groups.items() for x, v in vals.items()})
                                 for key, per in self._index.items()})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (self.taken_at, self.bound, self._index) == (other.taken_at, other.bound, other._index)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Snapshot(taken_at={self.taken_at!r}, families={len(self._index)}, bound={self.bound!r})"

    def groups(self, fam: Family, ident: Ident) -> Groups | None:
        """{series id: {extra: cumulative}} of one rollout arm (read only); None if the family was never asked.
        An arm one of whose series had a NaN or infinite sample (`UNREADABLE`) cannot be counted:
        MetricsUnavailable, or UnusableStepStart for a step-start (bound) snapshot."""
        got = self._index.get(fam.key)
        if got is None:
            return None
        groups = got.get(ident, {})
        if {RELABELLED, UNREADABLE, PARTIAL, MIXED, SCRAPED_TWICE, PUSHED} & groups.keys():
            what = (f"{fam.metric} series of {'/'.join(ident)} both pushed to a Pushgateway (pushed job "
                    f"{', '.join(sorted(groups[PUSHED])[:3])}) and scraped (or federated): a pod that pushes and is "
                    f"scraped is summed twice, and which pods do cannot be told; set metrics.labels: {{job: ...}} to "
                    f"the one job to read, or stop the push"
                    if PUSHED in groups else
                    f"{fam.metric} series of {'/'.join(ident)} whose exporter said another model or version (an "
                    f"`exported_` label; instance {', '.join(sorted(groups[RELABELLED])[:3])}): a scrape target label "
                    f"of that name (a pod label copied by labelmap, honor_labels: false) overrode the exporter's, so "
                    f"another arm's requests are read as this one's; drop or rename that target label"
                    if RELABELLED in groups else
                    f"a NaN or infinite {fam.metric} sample for {'/'.join(ident)}{_which(groups[UNREADABLE])}"
                    if UNREADABLE in groups else
                    f"{fam.metric} series of {'/'.join(ident)} scraped by two jobs (one target, two `job` labels): "
                    f"summed, its requests count twice; set metrics.labels: {{job: ...}} to the one job to read "
                    f"({{exported_job: ...}} where a federating target re-exports it)"
                    if SCRAPED_TWICE in groups else
                    f"only part of the {fam.metric} series of {'/'.join(ident)} (Prometheus answered in part)"
                    if PARTIAL in groups else
                    f"{fam.metric} series of {'/'.join(ident)} read with two values by two of its queries (two "
                    f"Prometheus replicas behind one address, or a scrape in between): its request and error counts "
                    f"are from two moments; point canary at one replica, or at Thanos Query "
                    f"(docs/reference/cluster.md, \"Prometheus with replicas\")")
            if self.bound is not None:  # a step-start snapshot: the next one starts the step again
                raise UnusableStepStart(f"step-start snapshot taken at {self.taken_at:.3f} holds {what}")
            if SCRAPED_TWICE in groups or RELABELLED in groups or PUSHED in groups or UNREADABLE in groups:
                # Prometheus answered, whole: the arm's series count what it did not serve, or nothing (a NaN or
                # infinite sample: not countable, as the per-rollout path says it, decision 1050). Not "Prometheus
                # unreachable" (a step so ends aborted, with those words): no verdict, as per rollout
                raise NotCountable(f"the snapshot taken at {self.taken_at:.3f} holds {what}: not a count")
            raise MetricsUnavailable(f"the snapshot taken at {self.taken_at:.3f} holds {what}: not a count")
        if TARGET_DOWN in groups:
            if self.bound is not None:  # not kept by `restrict`; a snapshot persisted otherwise: its series only
                return {sid: vals for sid, vals in groups.items() if sid != TARGET_DOWN}
            down = sorted(groups[TARGET_DOWN])[:3]
            raise NotCountable(f"the snapshot taken at {self.taken_at:.3f}: {'/'.join(ident)} has a scrape target "
                               f"down (up == 0; instance {', '.join(down)}) whose series Prometheus held within the "
                               f"hour (gone now, or answered at their last sample: no staleness marker): what that "
                               f"pod serves, errors included, is in no count ({fam.metric}); fix the scrape")
        return groups

    def restarted(self, fam: Family, ident: Ident, base: "Snapshot") -> frozenset[str]:
        """Series ids of one rollout arm that restarted between `base` and this snapshot although their
        two values do not show it (a restarted counter that grew past its value in `base`), as
        Prometheus's samples of the window (base.taken_at, taken_at] show: `resets()` above 0, or a
        sample below the series' value in `base` (a restart between base's sample and the next).
        Empty for a snapshot not taken by `BatchMetrics` (no probe: two points only), a native
        histogram, or no window. MetricsUnavailable when Prometheus cannot be asked."""
        if self._probe is None or fam.native or base.taken_at >= self.taken_at:
            return frozenset()
        got = self._probe(fam, ident, base.taken_at)
        before = base.groups(fam, ident) or {}
        out: set[str] = set()
        for sid, info in got.items():
            if info.get(RESETS, 0.0) > 0:
                out.add(sid)
                continue
            was = before.get(sid)
            if was is None:
                continue  # born in the window: counted from 0 (a restart since its birth: `resets`)
            key = q.parse_le if fam.extra == "le" else str
            was_by = {key(x): v for x, v in was.items()}
            if any(m < was_by.get(key(x), -math.inf) for x, m in info.items() if x not in (RESETS, BEFORE)):
                out.add(sid)
        return frozenset(out)

    def missed(self, fam: Family, ident: Ident, base: "Snapshot") -> frozenset[str]:
        """Series ids of one rollout arm that `base` lacks although the Prometheus answering this snapshot's
        restart probe held them at `base.taken_at` (`Family.restart_query`'s "before"): `base` was read
        from a replica that had not scraped them yet (restarted with empty storage, behind a load balancer:
        decision 176), and counting them "born in the window", from 0, would count their whole life. Empty
        where `restarted` asks nothing (no probe, a native histogram, no window). MetricsUnavailable when
        Prometheus cannot be asked."""
        if self._probe is None or fam.native or base.taken_at >= self.taken_at:
            return frozenset()
        now, before = self.groups(fam, ident) or {}, base.groups(fam, ident) or {}
        born = [sid for sid in now if sid not in before]
        if not born:
            return frozenset()
        got = self._probe(fam, ident, base.taken_at)
        return frozenset(sid for sid in born if BEFORE in got.get(sid, {}))

    def values(self, fam: Family, ident: Ident) -> dict[str, float] | None:
        """{extra label value: cumulative value summed over series} for one rollout arm; None if never asked."""
        groups = self.groups(fam, ident)
        if groups is None:
            return None
        out: dict[str, float] = {}
        for vals in groups.values():
            for x, v in vals.items():
                out[x] = out.get(x, 0.0) + v
        return out

    def arm(self, policy: Policy, check: Check, target: Target, arm: str) -> ArmData | None:
        """Cumulative data for one check and arm (bounds in ms for latency); None if absent."""
        spec = check_spec(policy, check)
        vals = self.values(spec.family, spec.family.ident(target, arm))
        if vals is None or (not vals and spec.kind != "errors"):
            return None
        if spec.kind == "histogram":
            # one bound written two ways is one bucket within a series (`raw_buckets`), and summed across series:
            # two pods whose client libraries write "1" and "1.0" each counted their own observations
            groups = self.groups(spec.family, spec.family.ident(target, arm)) or {}
            return q.normalise([p for one in groups.values() for p in raw_buckets(one)], [], scale=spec.scale)
        if spec.kind == "features":
            missing, values = feature_counts(vals, spec.source)
            requests = self.requests(policy, target, arm, source=spec.source)
            if requests is None or values <= 0:
                return None
            events, total = features_as_requests(missing, values, requests)
            return Counts(events=events, total=total)
        total = self.requests(policy, target, arm, source=spec.source)
        if total is None or counted_by_fallback(self, policy, spec.source, target, arm):
            return None  # no request counter: no error count either (not "no errors")
        return Counts(events=min(sum(vals.values()), total), total=total)  # no error series: no errors

    def requests(self, policy: Policy, target: Target, arm: str, *, source: str | None = None) -> float | None:
        """Cumulative requests of one arm, summed over series; None without a request counter series."""
        fams = request_fams(self, policy, source or policy.metrics.source, target, arm)
        if not self.groups(fams[0], fams[0].ident(target, arm)):
            return None
        return sum(sum((self.values(f, f.ident(target, arm)) or {}).values()) for f in fams)

    def restrict(self, policy: Policy, target: Target, *, step_started_at: float | None = None) -> "Snapshot":
        """Only this rollout's series (both arms, every family its policy reads), bound to it: what it persists."""
        out: dict[str, dict[Ident, dict[str, Values]]] = {}
        for fam in policy_families(policy):
            got = self._index.get(fam.key)
            if got is None:
                continue
            per = out[fam.key] = {}
            for i in {fam.ident(target, arm) for arm in q.ARMS}:
                kept = {sid: vals for sid, vals in (got.get(i) or {}).items() if sid != TARGET_DOWN}
                if kept:
                    per[i] = kept  # the Values themselves are immutable: shared
        return Snapshot.from_index(self.taken_at, out, Binding.of(target, step_started_at))

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


class PackedSnapshot:
    """A step-start snapshot as a long-running controller keeps it between looks: its persisted JSON
    (`Snapshot.to_dict`), compressed, and when it was taken. One rollout's snapshot with the default
    policy is ~12 kB as objects (its dicts and floats; 31 MB at 2,500 rollouts), ~1 kB packed;
    `unpack` (~0.1 ms) runs once per look. Immutable."""

    __slots__ = ("taken_at", "bound", "_blob")

    def __init__(self, snap: Snapshot, persisted: Mapping[str, Any] | None = None) -> None:
        """`persisted`: `snap.to_dict()` when the caller has it already (not checked against `snap`)."""
        text = json.dumps(snap.to_dict() if persisted is None else persisted, separators=(",", ":"),
                          sort_keys=True, allow_nan=False)
        object.__setattr__(self, "taken_at", snap.taken_at)
        object.__setattr__(self, "bound", snap.bound)
        object.__setattr__(self, "_blob", pack_text(text))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"PackedSnapshot is immutable (tried to set {name})")

    def unpack(self) -> Snapshot:
        """The snapshot it was made from (equal to it); UnusableStepStart only if the bytes were damaged."""
        try:
            text = unpack_text(self._blob)
        except (zlib.error, UnicodeDecodeError) as exc:
            raise UnusableStepStart(f"snapshot: damaged packed snapshot ({exc})") from exc
        return Snapshot.from_json(text)

    def __len__(self) -> int:
        """Bytes held."""
        return len(self._blob)


def _binding(data: Mapping[str, Any] | None) -> Binding | None:
    if data is None:
        return None
    step = data.get("step_started_at")
    return Binding(*(str(data[k]) for k in ("namespace", "model", "stable_version", "canary_version")),
                   step_started_at=None if step is None else float(step))


def raw_buckets(vals: Mapping[str, float]) -> list[tuple[float, float]]:
    """{le label value: cumulative count} of ONE series as (le, count) pairs, for `queries.normalise`.
    A bound written two ways ("1" and "1.0": Prometheus 3 normalises `le`, and the old series stays in
    the lookback for minutes) is one bucket: the larger count (the newer), not their sum, which made a
    healthy histogram read as not cumulative. A NaN count stays NaN (`queries.not_cumulative` refuses it)."""
    out: dict[float, float] = {}
    for le, v in vals.items():
        x = q.parse_le(le)
        have = out.get(x)
        out[x] = v if have is None or v != v or v > have else have
    return list(out.items())


def features_as_requests(missing: float, values: float, requests: float) -> tuple[float, float]:
    """(events, total) of a feature_missing check from feature-value counters: the share of values
    missing, times the requests. The unit is the request, as in the per-window path (the
    `model_feature_missing_rate` gauge times requests), not the feature value: a request's features
    go missing together (one broken upstream empties several), so counting each value as its own
    draw would overstate the evidence, and the two paths would judge the same data differently.
    `values` > 0."""
    share = min(max(missing / values, 0.0), 1.0)
    return share * requests, requests


def feature_counts(vals: Mapping[str, float], source: str) -> tuple[float, float]:
    """(missing, missing + present) from {feature state: count}."""
    _, _, missing, present = FEATURE_COUNTERS[source]
    m, p = max(vals.get(missing, 0.0), 0.0), max(vals.get(present, 0.0), 0.0)
    return m, m + p


def counted_by_fallback(snap: Snapshot, policy: Policy, source: str, target: Target, arm: str) -> bool:
    """Whether the arm's requests come from the preset's fallback (no series of its request counter):
    then it has no error count, and no error series is no evidence of no errors."""
    main, fallback = request_families(policy, source)
    return fallback is not None and not snap.values(main[0], main[0].ident(target, arm))


def request_fams(snap: Snapshot, policy: Policy, source: str, target: Target, arm: str) -> list[Family]:
    """The preset's request counters, or its fallback when `snap` has no series of the first for this arm.
    Further counters (Triton's failures) count as 0 when absent."""
    main, fallback = request_families(policy, source)
    if fallback is not None and not snap.values(main[0], main[0].ident(target, arm)):
        return [fallback]
    return main


def _which(marked: dict[str, float]) -> str:
    """The buckets (`le=0.1`) or feature states an `UNREADABLE` mark names, as " (le=0.1)"; "" where it names none
    (a counter without one, or a snapshot persisted before decision 1050)."""
    named = sorted(k for k in marked if k)
    return f" ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''})" if named else ""

"""Deltas: one arm's data over a window, from two snapshots, series by series.

The arithmetic `increase()` does between samples, done between a rollout's
step-start snapshot and now, so that the window of each rollout stays its own
while the queries are shared (`batch`). Kept apart from the snapshot format
(`snapshot`) because this is where counter resets are judged.

- Per series group (one series' buckets or feature states) between step-start snapshot and
  now: present in both and no value went down -> the difference; any value went
  down, or Prometheus's samples of the window show a restart the two values hide
  (`Snapshot.restarted`: a series that restarted and outgrew its step-start value) ->
  the group restarted and counts its current values, as `increase()` does
  across a reset between two samples (flagged in `ArmDelta.reset`, logged as
  ``metrics.counter_reset``); absent from the step-start snapshot -> born in the window, from
  0, unless the look's Prometheus held it at the step start (`Snapshot.missed`: the step-start
  snapshot came from a replica that had not scraped it yet) -> `UnusableStepStart`; absent now ->
  contributes nothing new. Limitation of two points: growth
  before a restart is not seen (`increase()` sees it between samples). Rates match
  `increase()`'s while a series' error share is steady; counts can be lower.
- A histogram series that restarted is read on its own bounds; one that came back with
  other bounds while Prometheus's lookback still holds the old ones' last counts is
  `MetricsUnavailable`, naming the bounds and the arm (decision 106).
- Both snapshots must fit the rollout (`Binding`) and the step-start one may not be
  newer than now; otherwise `UnusableStepStart`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import structlog

from canary.errors import MetricsUnavailable, NoData, NotCountable, said
from canary.metrics.answers import NOT_A_COUNT, arms_pair, not_a_count
from canary.metrics import queries as q
from canary.metrics.families import EARLIER_S, LOOKBACK, Family, NotBatchable, Spec, check_spec, families, request_families
from canary.metrics.native import (CUSTOM, INF_ONLY_HINT, NativeBuckets, combine, inf_only, mixed_forms, values_buckets,
                                   values_delta, values_sum)
from canary.metrics.snapshot import (Groups, Snapshot, UnusableStepStart, counted_by_fallback, feature_counts,
                                     features_as_requests, raw_buckets, request_fams)
from canary.model import ArmData, Counts, Histogram, Target
from canary.policy import Check, Policy

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ArmDelta:
    """One arm's data over a window, and whether a counter reset made part of it 'since the restart'."""

    data: ArmData
    reset: bool = False


def _missing_family(what: str, snap: Snapshot, check: str) -> NoData | UnusableStepStart:
    """NoData; UnusableStepStart for a step-start (bound) snapshot, which the next snapshot replaces: it
    was taken for other queries (a policy edited within the step, or a controller whose query for the
    family changed, as Istio's errors did in decision 100), and would leave the check NoData until the
    step's end."""
    text = f"the snapshot taken at {snap.taken_at:.3f} holds no {what} for this rollout"
    if snap.bound is not None:
        return UnusableStepStart(f"check {check!r}: step-start snapshot: {text}")
    return NoData(f"check {check!r}: {text} (was it among the snapshot's wants?)")


def _check_pair(now: Snapshot, base: Snapshot, target: Target) -> None:
    for snap in (base, now):
        why = snap.bound.mismatch(target) if snap.bound is not None else None
        if why:
            raise UnusableStepStart(f"snapshot taken at {snap.taken_at:.3f} {why}")
    if now.taken_at < base.taken_at:
        raise UnusableStepStart(f"step-start snapshot taken at {base.taken_at:.3f}, after the snapshot it is compared with "
                               f"({now.taken_at:.3f})")


def _counter_delta(now: Groups, base: Groups, restarted: frozenset[str] = frozenset()) -> tuple[dict[str, float], int]:
    """Per series group: now - base; the current values after a reset (any value went down, or
    `restarted`: Prometheus's samples show one); from 0 for a group born in the window. Summed per
    extra label value; also the resets."""
    out: dict[str, float] = {}
    resets = 0
    for sid, cur in now.items():
        before = base.get(sid, {})
        if sid in restarted or any(cur.get(x, 0.0) < v for x, v in before.items()):
            resets, before = resets + 1, {}
        for x, v in cur.items():
            out[x] = out.get(x, 0.0) + v - before.get(x, 0.0)
    return out, resets


def _histogram_delta(now: Groups, base: Groups, scale: float, where: str,
                     restarted: frozenset[str] = frozenset()) -> tuple[ArmDelta, int]:
    """Per series: both histograms on the union of their bounds (a missing bucket carries the one below),
    subtracted, or the current one after a reset; then summed on the bounds every series *with
    observations in the window* has (a bound only some series export would miss the others'
    observations: never invent or drop counts). A series without observations adds nothing and
    restricts nothing: an idle pod's layout, an empty native histogram's +Inf-only ghost (decision 51).
    The per-rollout read sums on the same bounds (`PrometheusProvider._classic`)."""
    deltas: list[list[tuple[float, float]]] = []
    resets = 0
    for sid, cur in now.items():
        now_raw, base_raw = raw_buckets(cur), raw_buckets(base.get(sid, {}))
        before = dict(base_raw)
        reset = bool(base_raw) and (sid in restarted or any(c < before[le] for le, c in now_raw if le in before))
        broken = q.not_cumulative(now_raw, share=0.0)  # one scrape of one series: exactly cumulative
        # a bound left over from the layout before an in-place restart: it stopped moving, the others went on
        stale = _above_a_higher(now_raw) if broken else set()
        left = bool(stale) and all(before.get(le) == c for le, c in now_raw if le in stale)
        if (reset and (broken or {le for le, _ in now_raw} - set(before))) or left:
            raise MetricsUnavailable(_layout_changed(where, base_raw, now_raw, broken))
        if broken:
            raise MetricsUnavailable(f"{where}: a histogram series is not cumulative ({broken}): a broken exporter")
        if reset:  # its own bounds since the restart: the step start's others would invent counts (decision 106)
            resets += 1
            h_now = q.normalise(now_raw, [le for le, _ in now_raw])
            d = list(zip(h_now.bounds, h_now.counts))
        else:
            bounds = [le for le, _ in now_raw + base_raw]
            h_now, h_base = q.normalise(now_raw, bounds), q.normalise(base_raw, bounds)
            d = [(le, a - b) for le, a, b in zip(h_now.bounds, h_now.counts, h_base.counts)]
        broken = q.not_cumulative(d)  # each scrape cumulative, their difference not: as the per-rollout read
        if broken:
            raise MetricsUnavailable(f"{where}: a histogram series is not cumulative over the window ({broken}): "
                                     "a broken exporter or a partly missed reset")
        if d[-1][1] > 0:  # the +Inf bucket: observations in the window
            deltas.append(d)
    shared = set.intersection(*({le for le, _ in d} for d in deltas)) if deltas else set()
    bounds = sorted(shared | {math.inf})
    summed = [0.0] * len(bounds)
    for d in deltas:
        summed = [s + c for s, c in zip(summed, q.normalise([(le, c) for le, c in d if le in shared], bounds).counts)]
    h = q.normalise(list(zip(bounds, summed)), bounds, scale=scale)  # clamps to non-negative, non-decreasing
    if h.total <= 0:
        raise NoData(f"{where}: no observations in the window")
    if inf_only(zip(h.bounds, h.counts)):
        if all(inf_only(d) for d in deltas):
            raise NoData(f"{where}: has {INF_ONLY_HINT}")
        raise NoData(f"{where}: its series share no finite bucket bound (pods exporting different layouts?)")
    return ArmDelta(h, resets > 0), resets


def _above_a_higher(raw: list[tuple[float, float]]) -> set[float]:
    """The bounds of one series' (le, count) pairs that count more than a higher bound does."""
    out, low = set(), math.inf
    for le, c in sorted(raw, reverse=True):
        if c > low:
            out.add(le)
        low = min(low, c)
    return out


def _layout_changed(where: str, base_raw: list[tuple[float, float]], now_raw: list[tuple[float, float]],
                    broken: str) -> str:
    """Why a histogram series that restarted cannot be read: its exporter came back with other bounds, and
    Prometheus's lookback still shows the old layout's last counts beside the new one's."""
    def fmt(raw: list[tuple[float, float]]) -> str:
        return "[" + ", ".join(f"{le:g}" for le in sorted({le for le, _ in raw})) + "]"

    added = sorted({le for le, _ in now_raw} - {le for le, _ in base_raw})
    what = f"; {broken}: its count is from before the restart" if broken else \
        f"; bounds {', '.join(f'{le:g}' for le in added)} are new, and the old ones' counts may be from before it"
    return (f"{where}: a histogram series changed its bucket layout in place (its exporter restarted with other "
            f"`le` bounds: {fmt(base_raw)} at the step start, {fmt(now_raw)} now{what}); the old bounds' last "
            f"counts stay in Prometheus's {LOOKBACK} lookback, so the new layout cannot be told apart until then")


def _refuse_missed(now: Snapshot, base: Snapshot, fam: Family, ident: tuple[str, ...]) -> None:
    """UnusableStepStart when `base` lacks series of this arm that Prometheus held when it was taken
    (`Snapshot.missed`): they would count from 0, their whole life as the window's. The next snapshot
    starts the step again (decision 176)."""
    missed = now.missed(fam, ident, base)
    if missed:
        raise UnusableStepStart(f"step-start snapshot taken at {base.taken_at:.3f} lacks {len(missed)} {fam.metric} "
                                f"series of {'/'.join(ident)} that Prometheus held then or within "
                                f"{EARLIER_S // 60}m before (read from a replica that had not scraped them yet, or "
                                f"their scrape failed over the step start for longer than {LOOKBACK}: counted as born "
                                "in the window, their whole life would count)")


def _requests_delta(now: Snapshot, base: Snapshot, policy: Policy, source: str, target: Target,
                    arm: str) -> tuple[float, int] | None:
    """Requests of one arm over base..now, series by series, and the series that restarted; None when
    `now` has no request counter series for the arm."""
    fams = request_fams(now, policy, source, target, arm)
    if not now.groups(fams[0], fams[0].ident(target, arm)):
        return None
    total, resets = 0.0, 0
    for fam in fams:
        ident = fam.ident(target, arm)
        vals_base = base.groups(fam, ident)
        if vals_base is None:
            raise _missing_family(f"request counter {fam.metric}", base, "request_counts")
        _refuse_missed(now, base, fam, ident)
        d, r = _counter_delta(now.groups(fam, ident) or {}, vals_base, now.restarted(fam, ident, base))
        total, resets = total + sum(d.values()), resets + r
    return total, resets


def requests_restarted(policy: Policy, target: Target, now: Snapshot, base: Snapshot) -> bool:
    """Whether a request counter series of either arm restarted between `base` and `now` (a value went
    down, or Prometheus's samples show it: `Snapshot.restarted`), so that `requests_delta` and every
    check counted it from its restart. Such a look's data are no superset of an earlier look's from the
    same base, whatever its totals say (one pod of several restarting), and the rollout judges them as a
    new window (`rollout._counters_restarted`, decision 163). False where there is nothing to count."""
    _check_pair(now, base, target)
    for arm in q.ARMS:
        got = _requests_delta(now, base, policy, policy.metrics.source, target, arm)
        if got is not None and got[1] > 0:
            return True
    return False


def _log_resets(resets: int, check: str, target: Target, arm: str, now: Snapshot, base: Snapshot) -> None:
    if resets:
        log.warning("metrics.counter_reset", check=check, model=target.model, namespace=target.namespace, arm=arm,
                    series=resets, base_taken_at=base.taken_at, now_taken_at=now.taken_at)


def arm_delta(policy: Policy, check: Check, target: Target, arm: str, now: Snapshot, base: Snapshot) -> ArmDelta:
    """One arm's data between `base` and `now`. NoData without observations; NotBatchable/ConfigError
    when snapshots cannot measure the check; UnusableStepStart when a snapshot is bound to another rollout."""
    spec = check_spec(policy, check)
    _check_pair(now, base, target)
    if spec.kind == "histogram":
        forms = _forms(policy, spec, target, now, base, check.name)
        if arm == "stable" and forms["stable"] != forms["canary"]:
            raise mixed_forms(check.name, "stable" if forms["stable"] == "native" else "canary")
        if forms[arm] == "native":
            got = _native_arm(spec, target, arm, now, base, check.name)
            return ArmDelta(_as_histogram(got.data, spec.scale), got.reset)
    return _classic_arm(policy, spec, check, target, arm, now, base)


def _classic_arm(policy: Policy, spec: Spec, check: Check, target: Target, arm: str, now: Snapshot,
                 base: Snapshot) -> ArmDelta:
    fam, ident = spec.family, spec.family.ident(target, arm)
    g_now, g_base = now.groups(fam, ident), base.groups(fam, ident)
    for snap, got in ((now, g_now), (base, g_base)):
        if got is None:
            raise _missing_family(fam.metric, snap, check.name)
    assert g_now is not None and g_base is not None
    where = f"check {check.name!r}: {arm} arm of {target.model!r}"
    _refuse_missed(now, base, fam, ident)
    d, resets = _arm_delta(spec, policy, target, arm, snaps=(now, base), groups=(g_now, g_base), where=where)
    _log_resets(resets, check.name, target, arm, now, base)
    return d


def _arm_delta(spec: Spec, policy: Policy, target: Target, arm: str, *, snaps: tuple[Snapshot, Snapshot],
               groups: tuple[Groups, Groups], where: str) -> tuple[ArmDelta, int]:
    fam, (now, base), (g_now, g_base) = spec.family, snaps, groups
    if spec.kind == "histogram":
        if not g_now:
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.query()}")
        return _histogram_delta(g_now, g_base, spec.scale, where, now.restarted(fam, fam.ident(target, arm), base))
    if spec.kind == "features":
        if not g_now:
            # serving without the counter (this version exports the gauge only, whatever the other
            # arm does): both arms are measured per rollout from the gauge, the same way, rather than
            # this arm staying NoData until the step's deadline (docs/decisions.md 44)
            if now.requests(policy, target, arm, source=spec.source):
                raise NotBatchable(f"{where}: no {fam.metric} counter (gauge only?); measure it per rollout")
            raise NoData(f"{where}: no {fam.metric} series; query: {fam.query()}")
    got = _requests_delta(now, base, policy, spec.source, target, arm)
    if got is None:
        raise NoData(f"{where}: no request counter series")
    if spec.kind == "errors" and counted_by_fallback(now, policy, spec.source, target, arm):
        raise NoData(f"{where}: no {request_families(policy, spec.source)[0][0].metric} series: its requests are "
                     "counted from the latency histogram, its errors not at all")
    d, resets = _counter_delta(g_now, g_base, now.restarted(fam, fam.ident(target, arm), base))
    requests, resets = got[0], resets + got[1]
    if spec.kind != "features":
        return _counts(sum(d.values()), requests, resets, where), resets
    missing, values = feature_counts(d, spec.source)
    if values <= 0:
        raise NoData(f"{where}: no feature values in the window")
    # the share of feature values missing, counted over requests, as the gauge path counts it
    # (`features_as_requests`): a request's features are not independent draws
    return _counts(*features_as_requests(missing, values, requests), resets, where), resets


def _counts(events: float, total: float, resets: int, where: str) -> ArmDelta:
    if not_a_count(total) or not_a_count(events):  # clamped, +Inf errors read as every request failed, a negative
        # count as none failed (a pass); -0.5 < events < 0 is a float's hair. As the per-rollout path (1050)
        raise NotCountable(f"{where}: {events} events of {total} requests in the window, {NOT_A_COUNT}")
    if total <= 0:
        raise NoData(f"{where}: no requests in the window")
    return ArmDelta(Counts(events=min(max(events, 0.0), total), total=total), resets > 0)


def measure_delta(policy: Policy, check: Check, target: Target, now: Snapshot, base: Snapshot
                  ) -> tuple[ArmData | NoData, ArmData | NoData]:
    """(stable, canary) over the window base..now, as `PrometheusProvider.measure` gives for a window:
    each arm's NoData kept in its place (a limit on the canary alone is judged without the stable
    series), NoData when neither arm has data. A histogram is read in the form the per-rollout path
    reads it: classic first (native first under `metrics.histograms: native`), one form for both
    arms where both have it, two native arms on one grid (`native.align`); one arm of each form:
    the stable arm is left out (`native.mixed_forms`)."""
    spec = check_spec(policy, check)
    if spec.kind == "histogram":
        _check_pair(now, base, target)
        forms = _forms(policy, spec, target, now, base, check.name)
        mixed = forms["stable"] != forms["canary"]

        def arm_data(arm: str) -> Any:
            if mixed and arm == "stable":  # not read: one arm of each form is not compared (`combine`)
                raise mixed_forms(check.name, "stable" if forms["stable"] == "native" else "canary")
            if forms[arm] == "native":
                return _native_arm(spec, target, arm, now, base, check.name).data
            return _classic_arm(policy, spec, check, target, arm, now, base).data

        pair = combine(*arms_pair(arm_data), check=check.name, cells=spec.cells)
        out = [x if isinstance(x, (NoData, Histogram)) else _as_histogram(x, spec.scale) for x in pair]
        if check.kind == "prediction_shift":  # rows are not requests: min_canary_requests is compared with these
            for i, arm in enumerate(q.ARMS):
                if isinstance(out[i], Histogram):
                    try:
                        got = _requests_delta(now, base, policy, spec.source, target, arm)
                    except NotCountable as exc:  # a NaN or infinite sample: the arm is not countable, as per
                        out[i] = exc  # rollout (decision 1051)
                        continue
                    except NoData:  # a step-start snapshot without the request counter (taken before it was
                        continue  # wanted for this check): not known, the judge says so and counts rows
                    if got is not None and not_a_count(got[0]):
                        out[i] = NotCountable(f"check {check.name!r}: {got[0]} requests for the {arm} arm of "
                                              f"{target.model!r}, {NOT_A_COUNT}")
                        continue
                    n = got[0] if got is not None and got[0] > 0 else 0.0
                    out[i] = dataclasses.replace(out[i], requests=n)  # type: ignore[type-var]
        return out[0], out[1]
    return arms_pair(lambda arm: arm_delta(policy, check, target, arm, now, base).data)


def _has(snap: Snapshot, fam: Family | None, target: Target, arm: str) -> bool:
    return fam is not None and bool(snap.groups(fam, fam.ident(target, arm)))


def _has_buckets(snap: Snapshot, fam: Family, target: Target, arm: str) -> bool:
    """Whether the arm has a classic bucket below +Inf: only `le="+Inf"` is the series Prometheus
    before 2.47 ingests for a native histogram while it is empty (see `PrometheusProvider._histograms`)."""
    return any(math.isfinite(q.parse_le(le)) for vals in (snap.groups(fam, fam.ident(target, arm)) or {}).values()
               for le in vals)


def _observed(now: Snapshot, base: Snapshot, fam: Family, target: Target, arm: str) -> bool:
    """Whether any of the arm's classic bucket series counted an observation between `base` and `now`
    (a value above 0 that differs from the step start's: grown, born or restarted), as `increase()`
    over the window says for the per-rollout read."""
    ident = fam.ident(target, arm)
    before = base.groups(fam, ident) or {}
    return any(v > 0 and v != before.get(sid, {}).get(le, 0.0)
               for sid, vals in (now.groups(fam, ident) or {}).items() for le, v in vals.items())


def _forms(policy: Policy, spec: Spec, target: Target, now: Snapshot, base: Snapshot, check: str) -> dict[str, str]:
    """Which form of the histogram each arm is read in, "classic" or "native", as `PrometheusProvider`
    chooses: the preferred form where the arm has its series (classic: a bucket below +Inf, and one
    that counted an observation in the window where the arm also has a native histogram), else the other; both native when one arm is and the other has a native series too. NotBatchable when an
    arm's form has no series in the step-start snapshot but the other form has (the form changed
    within the step: each series of the new form would count as born in the window, its whole
    history with it)."""
    def has_form(snap: Snapshot, arm: str, form: str) -> bool:
        return _has_buckets(snap, spec.family, target, arm) if form == "classic" else _has(snap, spec.native, target, arm)

    def countable(arm: str, form: str) -> bool:  # an arm that cannot be counted (a target down) is read in the
        try:  # other arm's form, and says so itself there: the other arm is still judged
            return has_form(now, arm, form)
        except NotCountable:
            return False

    has = {arm: {form: countable(arm, form) for form in ("classic", "native")} for arm in q.ARMS}
    for arm in q.ARMS:  # classic buckets that never counted an observation beside a native histogram:
        # what Prometheus < 2.47 ingests for a both-forms client's empty histogram (decision 51)
        if has[arm]["classic"] and has[arm]["native"] and not _observed(now, base, spec.family, target, arm):
            has[arm]["classic"] = False
    first, second = ("native", "classic") if policy.metrics.histograms == "native" else ("classic", "native")
    forms = {arm: first if has[arm][first] or not has[arm][second] else second for arm in q.ARMS}
    for arm in q.ARMS:  # an arm with neither form (no traffic yet) is NoData in the other arm's form
        if not any(has[arm].values()):
            forms[arm] = forms[q.ARMS[1 - q.ARMS.index(arm)]]
    if set(forms.values()) == {"classic", "native"}:  # one form for both where both arms have it
        both = [form for form in ("native", "classic") if all(has[arm][form] for arm in q.ARMS)]
        if both:  # (native: the default's re-read; classic: native first with one arm classic only)
            forms = {arm: both[0] for arm in q.ARMS}
    for arm, form in forms.items():
        other = "classic" if form == "native" else "native"
        if has[arm][form] and not has_form(base, arm, form) and has_form(base, arm, other):
            raise NotBatchable(f"check {check!r}: the {arm} arm of {target.model!r} changed histogram form within "
                               "the step (classic and native); measure it per rollout")
    return forms


def _native_arm(spec: Spec, target: Target, arm: str, now: Snapshot, base: Snapshot, check: str
                ) -> _NativeDelta:
    """One arm's native histogram over base..now, series by series (`native.values_delta`), summed
    (`native.values_sum`). NotBatchable for what no exact subtraction exists for (custom buckets,
    zero buckets of other widths, a step-start snapshot taken without the native family): the
    check is then read per rollout."""
    fam = spec.native
    assert fam is not None
    where = f"check {check!r}: {arm} arm of {target.model!r}"
    ident = fam.ident(target, arm)
    g_now, g_base = now.groups(fam, ident) or {}, base.groups(fam, ident)
    if g_base is None:
        raise NotBatchable(f"{where}: the step-start snapshot holds no native histogram; measure it per rollout")
    parts, resets = [], 0
    for sid, cur in g_now.items():
        before = g_base.get(sid, {})
        if CUSTOM in cur or CUSTOM in before:
            raise NotBatchable(f"{where}: a native histogram the snapshot cannot read by bucket index (custom "
                               "buckets, or a Prometheus whose last_over_time gives no histogram samples, as "
                               "2.42's); measure it per rollout")
        got = values_delta(cur, before)
        if got is None:
            raise NotBatchable(f"{where}: native histograms with different zero buckets; measure it per rollout")
        parts.append(got[0])
        resets += got[1]
    total = values_sum(parts)
    if total is None:
        raise NotBatchable(f"{where}: native histograms with different zero buckets; measure it per rollout")
    if total["c"] <= 0:
        raise NoData(f"{where}: no observations in the window")
    _log_resets(resets, check, target, arm, now, base)
    return _NativeDelta(values_buckets(total), resets > 0)


@dataclass(frozen=True)
class _NativeDelta:
    data: NativeBuckets
    reset: bool = False


def _as_histogram(data: NativeBuckets | list[tuple[float, float]], scale: float) -> Histogram:
    """One native arm on its own (`classic_pairs`: every count of observations <= its bound), or pairs."""
    pairs = data.classic_pairs() if isinstance(data, NativeBuckets) else data
    return q.normalise(pairs, [le for le, _ in pairs], scale=scale)


def canary_count(policy: Policy, target: Target, now: Snapshot, base: Snapshot) -> tuple[float, str]:
    """The canary's requests over base..now (`requests_delta`) and "", or 0.0 and why they could not be counted
    (a canary read by two scrape jobs or with a target down, no request counter, a snapshot bound to another
    rollout): the controller's look is then no pass, and no counter restart (`rollout.Looked.uncounted`; its 0
    read as a count that went down said "a request counter restarted" and opened a new window, decision 433)."""
    try:
        return requests_delta(policy, target, now, base)[1], ""
    except Exception as exc:  # whatever it is, no count: a step cannot pass without one
        return 0.0, said(exc)  # never "" ("counted"), never "NoData: " (decision 493)


def requests_delta(policy: Policy, target: Target, now: Snapshot, base: Snapshot) -> tuple[float, float]:
    """(stable, canary) requests over base..now (series by series, a reset counts from the restart);
    NoData when none; UnusableStepStart when a snapshot is bound to another rollout. A stable arm that cannot be
    counted (read by two jobs) is NaN: only the canary's count is used (decision 399)."""
    _check_pair(now, base, target)
    source, out = policy.metrics.source, []
    for arm in q.ARMS:
        try:
            got = _requests_delta(now, base, policy, source, target, arm)
        except (NotCountable, UnusableStepStart):
            if arm != "stable":
                raise
            # a stable arm read by two jobs (in this snapshot, or bound in the step's start) is NaN, not a count: the
            # controller asks for the canary's (the pass floor), which it read 0 at every look (decision 399)
            out.append(math.nan)
            continue
        if got is None:
            fam = families(policy)[0]
            if now.groups(fam, fam.ident(target, arm)) is None:
                raise _missing_family("request counter", now, "request_counts")
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r}")
        _log_resets(got[1], "request_counts", target, arm, now, base)
        if not_a_count(got[0]):  # counters summed past the float range, an exporter's NaN: as the per-rollout
            # path says it (`prometheus.request_counts`): the canary's NotCountable, the stable's NaN (1050)
            if arm == "stable":
                out.append(math.nan)
                continue
            raise NotCountable(f"check 'request_counts': {got[0]} requests for the {arm} arm of {target.model!r}, "
                               f"{NOT_A_COUNT}")
        if got[0] <= 0:
            raise NoData(f"check 'request_counts': no requests for the {arm} arm of {target.model!r} in the window")
        out.append(got[0])
    return out[0], out[1]

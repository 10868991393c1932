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

This module asks and parses; the decisions behind it are written where they
are made: `families` (what one query asks, series identity, the regex
matchers, which checks cannot be batched), `snapshot` (series kept apart,
binding to a rollout and step, the persisted format) and `delta` (the window's
arithmetic across counter resets). Their public names are importable from here.
Every query is filtered to the rollouts it serves, never the whole mesh: model, version and
namespace values get a regex matcher, and when the model alternation would make a URL longer
than `MAX_REGEX_CHARS` the rollouts are split into chunks by model, one query per chunk
(each chunk's versions and namespaces only). Queries per snapshot = families x chunks:
constant in the number of rollouts up to a chunk's worth of model names (about 2,500 names
of 5 characters, 800 of 20), then one more query per family per chunk; sharding
(`canary controller run --shards`) keeps a replica's share under that. A family whose last
answer had many series per rollout (histogram buckets times pods) is also split so that one
answer holds at most `MAX_SERIES_PER_QUERY` series: a decoded answer is the peak of a tick's
memory (at 2,500 rollouts, 13 buckets: 3 queries for the bucket family, 6 in all).

A query Prometheus answers only in part (`client.PartialAnswer`: a store down behind Thanos or
a remote read, which does not say whose series it lacks) is asked again once per model of its
chunk, within one budget per snapshot: only the rollouts whose own answer is partial are
unavailable, in that family (decision 106). Restarts two values cannot show (a counter that
restarted and outgrew its step-start value) are asked of Prometheus at a look, once per family,
chunk and window start (`Snapshot.restarted`).
"""

from __future__ import annotations

from collections import Counter

import math
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import structlog

from canary.errors import ConfigError, MetricsUnavailable
from canary.metrics import queries as q
from canary.metrics.answers import evaluated_at
from canary.metrics.client import BATCH, PartialAnswer, PrometheusClient
from canary.metrics.delta import ArmDelta, arm_delta, canary_count, measure_delta, requests_delta, requests_restarted
from canary.metrics.followups import Isolation, RestartProbe, chunk_idents
from canary.metrics.families import (
    FEATURE_COUNTERS,
    LOOKBACK,
    Family,
    Ident,
    NotBatchable,
    batchable,
    families,
    hash_identity,
    policy_families,
    regex_escape,
    regex_matcher,
)
from canary.metrics.native import CUSTOM, sample_values
from canary.metrics.snapshot import (FORMAT, MIXED, PUSHED, RELABELLED, SCRAPED_TWICE, TARGET_DOWN, UNREADABLE, Binding, Groups,
                                     Snapshot, UnusableStepStart)
from canary.model import Target
from canary.policy import Policy

__all__ = [
    "FEATURE_COUNTERS", "FORMAT", "LOOKBACK", "MAX_REGEX_CHARS", "ArmDelta", "BatchMetrics", "Binding", "Family", "Groups",
    "Ident", "NotBatchable", "Snapshot", "UnusableStepStart", "Want", "arm_delta", "batchable", "families",
    "measure_delta", "regex_escape", "regex_matcher", "requests_delta", "requests_restarted", "canary_count",
]
log = structlog.get_logger(__name__)
# characters of one query's model alternation: the URL (GET /api/v1/query?query=...) stays under
# ~16 kB, which Prometheus (1 MiB of headers) and common proxies in front of it accept
MAX_REGEX_CHARS = 15_000
# series in one answer, at most (as far as the previous snapshot tells): a decoded answer costs
# about 1 kB of Python objects per series until it is parsed, so a histogram family of 2,500
# rollouts (65,000 bucket series) in one answer peaked near 66 MB; at 25,000 it takes 3 queries
MAX_SERIES_PER_QUERY = 25_000


@dataclass(frozen=True)
class Want:
    """One rollout whose data the next snapshot must hold."""

    policy: Policy
    target: Target


@dataclass
class _Group:
    idents: set[Ident] = field(default_factory=set)
    canary: set[Ident] = field(default_factory=set)  # the canary arms among them (`_down` marks those only)


class BatchMetrics:
    """Takes snapshots for many rollouts with one query per family (per chunk of models)."""

    def __init__(self, prom: PrometheusClient, *, max_regex_chars: int = MAX_REGEX_CHARS,
                 lookback: str = LOOKBACK, max_series: int = MAX_SERIES_PER_QUERY, isolate_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if max_regex_chars < 1:
            raise ConfigError(f"max_regex_chars must be positive, got {max_regex_chars}")
        if max_series < 1:
            raise ConfigError(f"max_series must be positive, got {max_series}")
        self.prom = prom
        self.max_regex_chars = max_regex_chars
        self.max_series = max_series
        # family key -> series per rollout arm in its last answer (sizes the next snapshot's chunks)
        self.series_per_ident: dict[str, float] = {}
        self.lookback = lookback
        self.queries_last = 0
        # Prometheus's now minus the caller's, at the last snapshot taken with `not_before` (s)
        self.clock_offset_last: float | None = None
        # seconds a snapshot may spend asking again, per model, what Prometheus answered in part
        self.isolate_s = getattr(prom, "budget_s", 5.0) if isolate_s is None else isolate_s
        self.monotonic = monotonic  # the clock of that budget (tests drive it)
        self.restart_queries = 0  # `Snapshot.restarted`'s queries, all snapshots (not in `queries_last`)
        # the last snapshot's target-down queries (`_down`: one per label shape and chunk; not in `queries_last`)
        self.down_queries_last = 0

    def plan(self, wants: Iterable[Want]) -> dict[Family, list[str]]:
        """The queries each family will be asked with (what `snapshot` sends): one per chunk."""
        return {fam: [query for _, query in self._queries(fam, g)] for fam, g in _group(wants).items()}

    def _queries(self, fam: Family, group: _Group) -> list[tuple[dict[str, set[str]], str]]:
        """(filters, query) of each chunk of this family."""
        per = self.series_per_ident.get(fam.key)
        most = max(1, int(self.max_series // per)) if per else None
        limit = max(1, self.max_regex_chars // (1 + len(fam.either)))  # `either`: the filters once per selector
        return [(filters, fam.query(filters, lookback=self.lookback))
                for filters in _chunks(fam, group, limit, max_idents=most)]

    def prometheus_now(self) -> float:
        """Prometheus's own clock, in s since the epoch: the evaluation time it stamps on `time()`.
        MetricsUnavailable when it cannot be asked or its answer carries no time."""
        got = evaluated_at(self.prom.query("time()", check=BATCH))
        if got is None or not math.isfinite(got):
            where = getattr(self.prom, "url", "")
            raise MetricsUnavailable(f"Prometheus{' at ' + where if where else ''} answered `time()` without an "
                                     f"evaluation time: {got!r}")
        return got

    def snapshot(self, wants: Iterable[Want], *, at: float | None = None, not_before: float | None = None) -> Snapshot:
        """Every rollout's series of `wants`, cumulative, at ONE evaluation time (`Snapshot.taken_at`, s since
        the epoch): `at` when given; with `not_before` (the caller's clock now), Prometheus's own now or
        `not_before`, whichever is later (one `time()` query more; `clock_offset_last` = Prometheus's now
        minus `not_before`): a caller whose clock is behind Prometheus's would otherwise leave the newest
        seconds of every window unread, and a later `not_before` only asks a moment Prometheus has not
        reached, whose answer is its newest samples. A query Prometheus answers only in part
        (`PartialAnswer`) is asked again per model (`followups.Isolation`): only the rollouts whose own
        answer is still partial are unavailable, in that family (`snapshot.PARTIAL`). The snapshot's `restarted`
        asks Prometheus, at most once per (family, chunk, window start), for the restarts two values
        cannot show (`restart_queries` counts those queries). MetricsUnavailable when Prometheus fails."""
        groups = _group(wants)
        self.clock_offset_last = None
        if at is None and not_before is not None:
            prom_now = self.prometheus_now()
            self.clock_offset_last = prom_now - not_before
            at = max(prom_now, not_before)
        taken_at = at if at is not None else (self.prom.at if self.prom.at is not None else time.time())
        # every family at ONE evaluation time: otherwise the request counter and a histogram of
        # the same snapshot can fall in different seconds and disagree on the window's traffic
        at = taken_at
        index: dict[str, dict[Ident, dict[str, dict[str, float]]]] = {}  # family -> ident -> series -> extra
        planned = [(fam, group, filters, query) for fam, group in groups.items()
                   for filters, query in self._queries(fam, group)]
        uses = Counter(query for *_, query in planned)  # label shapes that differ only in roles share one query
        answers: dict[str, Any] = {}
        partial: dict[str, PartialAnswer] = {}
        asked = 0
        rows: Counter[str] = Counter()
        isolate = Isolation(self, at, _parse)
        chunks: dict[str, list[tuple[dict[str, set[str]], set[Ident]]]] = {}  # what `RestartProbe` asks by
        for fam, group, filters, query in planned:
            chunks.setdefault(fam.key, []).append((filters, chunk_idents(fam, group.idents, filters)))
            if query not in answers and query not in partial:
                asked += 1
                try:
                    answers[query] = self.prom.query(query, check=BATCH, at=at)
                except PartialAnswer as exc:
                    partial[query] = exc
            into = index.setdefault(fam.key, {})
            if query in partial:  # which series it lacks it does not say: ask again for fewer rollouts
                rows[fam.key] += isolate(fam, chunks[fam.key][-1][1], partial[query], into)
            else:
                rows[fam.key] += _parse(answers[query], fam, group.idents, query, into)
            uses[query] -= 1
            if not uses[query]:
                answers.pop(query, None)  # parsed for its last family: one raw answer in memory at a time
        asked += self._consistent(index, groups, at)
        self.down_queries_last = self._down(planned, index, at)  # after `_consistent`, which replaces what it asks again
        self.queries_last = asked + isolate.asked + (self.clock_offset_last is not None)
        for fam, group in groups.items():
            if group.idents:
                self.series_per_ident[fam.key] = rows[fam.key] / len(group.idents)
        log.debug("metrics.batch_snapshot", families=len(groups), queries=self.queries_last)
        return Snapshot.from_index(taken_at, index, probe=RestartProbe(self, at, chunks))


    def _consistent(self, index: dict[str, dict[Ident, dict[str, dict[str, float]]]], groups: dict[Family, _Group],
                    at: float) -> int:
        """Makes the families of one metric agree (`_mixed`): those that do not are asked again together, in
        order, at most `REASKS` times (behind a balancer each answer may come from either replica, so another
        round may find one replica answering them all); rollout arms still read with two values are marked
        `MIXED`, unread. Returns the queries it sent."""
        sent = 0
        for _ in range(REASKS):
            mixed = _mixed(index, groups)
            if not mixed:
                return sent
            log.info("metrics.replicas_mixed", rollout_arms=len({i for _, idents in mixed for i in idents}),
                     asking_again=True)
            for fam in (f for fams, _ in mixed for f in fams):
                fresh: dict[Ident, dict[str, dict[str, float]]] = {}
                try:
                    for _, query in self._queries(fam, groups[fam]):
                        sent += 1
                        _parse(self.prom.query(query, check=BATCH, at=at), fam, groups[fam].idents, query, fresh)
                except MetricsUnavailable:
                    break  # a partial or failed answer: this round is lost; the marks below say so
                index[fam.key] = fresh
        for fams, idents in _mixed(index, groups):
            log.warning("metrics.replicas_mixed", rollout_arms=len(idents), asking_again=False, metric=fams[0].metric)
            for fam in fams:
                for ident in idents:
                    index[fam.key].setdefault(ident, {})[MIXED] = {"": 1.0}
        return sent


    def _down(self, planned: list[tuple[Family, _Group, dict[str, set[str]], str]],
              index: dict[str, dict[Ident, dict[str, dict[str, float]]]], at: float) -> int:
        """Marks `TARGET_DOWN` every canary arm, with series in this snapshot, one of whose scrape targets is down
        now (`up == 0`) while Prometheus held its series within the hour and has no sample of
        them now (`queries.unscraped_query`, what a per-rollout look asks: decision 354): its families' sums
        hold the other pods alone (a canary with a healthy pod and one failing half its requests, unscraped,
        passed). ONE query per label shape (the families' rollout labels and constant matchers) and chunk,
        whatever the rollouts, over every metric of those families (a classic histogram's `_count` for its
        buckets: one series per pod, not one per bucket). A partial answer marks nothing (decision 106 keeps
        a store's outage to the families it answered in part): the down target is then unseen, as before.
        Not a stable arm: a stable pod down is most often not Ready and sent nothing, and one that serves unseen
        weighs against the canary, never for it; not a canary arm with no series left (every pod gone): that is
        the unrouted breach, which a NotCountable arm never is (decision 370). The same query marks `PUSHED` either
        arm whose series of one of those metrics are both pushed to a Pushgateway and read otherwise
        (`queries.pushed_of`, as per rollout: decision 483; every pushed group, whatever its push time:
        decision 515 keeps its window rule per rollout). Returns the queries it sent."""
        shapes: dict[tuple[Any, ...], tuple[dict[str, set[str]], list[tuple[Family, set[Ident]]], set[str]]] = {}
        pushed: dict[tuple[Any, ...], list[tuple[Family, set[Ident]]]] = {}  # a shape's families, both arms
        for fam, group, filters, _ in planned:
            if not fam.by:
                continue  # no rollout labels: nothing tells its arms apart
            key = (fam.by, fam.constant, tuple(sorted((k, tuple(sorted(v))) for k, v in filters.items())))
            _, fams, names = shapes.setdefault(key, (filters, [], set()))
            fams.append((fam, chunk_idents(fam, group.idents, filters) & group.canary))
            pushed.setdefault(key, []).append((fam, chunk_idents(fam, group.idents, filters)))
            bucket = fam.extra == "le" and fam.metric.endswith("_bucket")
            names.add(fam.metric[:-len("_bucket")] + "_count" if bucket else fam.metric)
        sent = 0
        for key, (filters, fams, names) in shapes.items():
            labels = [label for label, _ in key[0]]
            sel = fams[0][0].selector(filters)
            query = (f"{q.unscraped_query(sorted(names), sel, by=labels)} or "
                     f'label_replace({q.pushed_of([q.arm_series(sorted(names), sel)], window_s=None, by=labels)}, "{_PART}", '
                     f'"{PUSHED}", "job", "(.*)")')
            sent += 1
            try:
                answer = self.prom.query(query, check=BATCH, at=at)
            except PartialAnswer as exc:
                log.info("metrics.target_down_unknown", error=str(exc)[:300], query=query[:300])
                continue
            down: dict[Ident, set[str]] = {}
            try:
                for s in answer:
                    m = s["metric"]
                    where = m.get(q.HOST_LABEL) or m.get("instance")  # a federated pod's: its exported instance
                    if where and float(s["value"][1]) >= 1:
                        ident = tuple(m.get(label, "") for label in labels)
                        if m.get(_PART) == PUSHED:  # pushed and read otherwise: either arm (`where`: the pushed job)
                            for fam, idents in pushed[key]:
                                if ident in idents:
                                    index.setdefault(fam.key, {}).setdefault(ident, {}).setdefault(PUSHED, {})[where] = 1.0
                                    log.warning("metrics.arm_pushed", rollout_arm="/".join(ident), instances=[where],
                                                metric=fam.metric)
                            continue
                        down.setdefault(ident, set()).add(where)
            except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
                raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
            for ident, instances in sorted(down.items()):
                marked = False
                for fam, idents in fams:  # a canary arm that still has series in the snapshot: one whose every
                    # pod is gone has none, and is the unrouted rule's (decision 370)
                    if ident in idents and any(not sid.startswith("!") for sid in index.get(fam.key, {}).get(ident, {})):
                        index.setdefault(fam.key, {}).setdefault(ident, {})[TARGET_DOWN] = dict.fromkeys(
                            sorted(instances), 1.0)
                        marked = True
                if marked:
                    log.warning("metrics.target_down", rollout_arm="/".join(ident), instances=sorted(instances)[:5],
                                query=query[:500])
        return sent


_PART = "canary_part"  # in `BatchMetrics._down`'s answer: a row of its `queries.pushed_of` part, not a target down
REASKS = 2  # rounds of asking again a metric's families whose answers disagree (`BatchMetrics._consistent`)


def _mixed(index: dict[str, dict[Ident, dict[str, dict[str, float]]]],
           fams: Iterable[Family]) -> list[tuple[list[Family], set[Ident]]]:
    """The families of one metric (the requests and the failed requests: `model_requests_total` and its
    `outcome="error"` part), with the rollout arms whose series they hold with two values. Each family is
    its own query, and one Prometheus answers one series with one value at one instant, so two values are
    two answers from two scrapes (two replicas behind one load-balanced address, whose scrapes are up to an
    interval apart, decision 175): such an arm's errors and requests would be counted over two windows.
    Only plain values are compared (a series' values by extra label too). A family with no matcher of
    its own holds every series of the metric, so a series another family of it holds and it lacks is a
    disagreement too (one replica that had scraped a pod, the other not yet: its errors without its
    requests)."""
    same: dict[tuple[Any, ...], list[Family]] = {}
    for fam in fams:
        if fam.key in index and not fam.native:
            same.setdefault((fam.metric, fam.by, fam.extra), []).append(fam)
    out = []
    for group in (g for g in same.values() if len(g) > 1):
        bad: set[Ident] = set()
        whole = [f for f in group if not f.matcher and not f.either]
        for ident in set().union(*(index[f.key] for f in group)):
            seen: dict[str, Any] = {}
            for fam in group:
                for sid, vals in index[fam.key].get(ident, {}).items():
                    have = sid.startswith("!") or seen.setdefault(sid, vals)
                    if have is not True and any(have.get(x, v) != v for x, v in vals.items()):
                        bad.add(ident)
            for fam in whole:
                held = index[fam.key].get(ident, {})
                if any(sid not in held for sid in seen) and not any(sid.startswith("!") for sid in held):
                    bad.add(ident)
        if bad:
            out.append((group, bad))
    return out


def _chunks(fam: Family, group: _Group, limit: int, *, max_idents: int | None = None) -> list[dict[str, set[str]]]:
    """The filters of each query for this family: the rollouts split by model value so that the
    alternations of one query (models, versions, namespaces) stay within `limit` characters (one
    model whose own values are longer gets a chunk of its own) and, given `max_idents`, a chunk
    holds at most that many rollout arms (one model's arms are never split); each chunk matches
    only its own rollouts' versions and namespaces."""
    if not fam.by:
        return [{}]
    labels = [label for label, _ in fam.by]
    split = next((i for i, (_, role) in enumerate(fam.by) if role == "model"), 0)
    by_value: dict[str, list[Ident]] = {}
    for ident in sorted(group.idents):
        by_value.setdefault(ident[split], []).append(ident)
    chunks: list[dict[str, set[str]]] = [{label: set() for label in labels}]
    size = count = 0
    for idents in by_value.values():
        new = {(i, ident[i]) for ident in idents for i in range(len(labels)) if ident[i] not in chunks[-1][labels[i]]}
        cost = sum(len(regex_escape(v)) + 1 for _, v in new)
        if size and (size + cost > limit or (max_idents is not None and count + len(idents) > max_idents)):
            chunks.append({label: set() for label in labels})
            new = {(i, ident[i]) for ident in idents for i in range(len(labels))}
            cost, size, count = sum(len(regex_escape(v)) + 1 for _, v in new), 0, 0
        for i, v in new:
            chunks[-1][labels[i]].add(v)
        size += cost
        count += len(idents)
    return chunks


def _group(wants: Iterable[Want]) -> dict[Family, _Group]:
    groups: dict[Family, _Group] = {}
    for want in wants:
        try:
            fams = policy_families(want.policy)
        except ConfigError:
            continue  # a bad metrics section: the per-rollout path reports it
        for fam in fams:
            g = groups.setdefault(fam, _Group())
            for arm in q.ARMS:
                ident = fam.ident(want.target, arm)
                g.idents.add(ident)
                if arm == "canary":
                    g.canary.add(ident)
    return groups


_HOST = re.compile(q.INSTANCE_HOST, re.S)  # `queries.scraped_twice_query`'s: an `instance` without its port


def _parse(result: Any, fam: Family, idents: set[Ident], query: str,
           into: dict[Ident, dict[str, dict[str, float]]]) -> int:
    """Adds one answer's series to `into` ({ident: {series id: {extra: value}}}, a Snapshot's index);
    returns how many series of the answer were for `idents`."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"batch: malformed answer (not a vector); query: {query}")
    ids: dict[tuple[tuple[str, str], ...], str] = {}  # one hash per series, not per bucket
    # one str object per distinct label value within the answer (the snapshot's keys share them), and
    # bucket bounds and feature states interned, shared by every snapshot: each rollout's step-start
    # snapshot keeps ~100 of them with x1.1 buckets (one copy per snapshot was ~6 kB a rollout). Only
    # those, a set fixed by the exporters' layouts: series ids and model names change with pods and
    # fleets, and interned strings may outlive their last use (immortal in some CPython versions).
    strs: dict[str, str] = {}
    one = strs.setdefault
    kept = 0
    jobs: dict[tuple[Ident, str], str] = {}  # (rollout arm, host) -> the first job that scraped it
    twice: set[Ident] = set()
    relabelled: set[Ident] = set()
    exporters: dict[tuple[Ident, int], dict[str, str]] = {}  # (arm, label's place) -> {exporter's value: instance}
    hosts: dict[str, str] = {}  # instance -> its host (`instance` without the port), once per answer
    try:
        for s in result:
            labels = s["metric"]
            ident = tuple(one(v, v) for v in (labels.get(label, "") for label, _ in fam.by))
            if ident not in idents:
                continue  # filtered client-side: exact values only, whatever the regex let through
            kept += 1
            instance, job = labels.get("instance", ""), labels.get("job", "")
            if labels.get("exported_instance") and labels.get("exported_job") and instance:  # re-exported
                # (`honor_labels: false`: /federate, a Pushgateway): the pod is the exported instance; each
                # re-exporting target and the job that read it there is one reading of it, as per rollout
                # (`queries.scraped_twice_of`, decision 434). Not an exporter's own `instance` without a job: one
                # hard-coded on every pod made two pods one host read twice (decision 484)
                job = f"{job} (via {instance}, exported_job {labels.get('exported_job', '')!r})"
                instance = labels["exported_instance"]
            # by host, as per rollout (`queries.scraped_twice_query`): under Istio's metrics merging one pod is read
            # on the sidecar's :15020 by one job and on the app's port by another, two `instance`s (decision 379)
            host = (hosts.get(instance) or hosts.setdefault(instance, _HOST.fullmatch(instance)[1])  # type: ignore[index]
                    ) if instance else ""
            if host and jobs.setdefault((ident, host), job) != job and ident not in twice:
                twice.add(ident)  # one target read by two scrape jobs: each of its series twice in the sum
                into.setdefault(ident, {})[SCRAPED_TWICE] = {"": 1.0}
                log.warning("metrics.scraped_twice", metric=fam.metric, rollout_arm="/".join(ident),
                            instance=instance, host=host, jobs=sorted({jobs[(ident, host)], job}))
            if ident not in relabelled:  # the exporter's own model or version, where a target label overrode it
                # (honor_labels: false; decision 435): as per rollout (`queries.relabelled_of`, decision 468)
                for i, ((label, role), value) in enumerate(zip(fam.by, ident)):
                    said = labels.get(f"exported_{label}", "") if role != "namespace" else ""
                    if not said:
                        continue
                    exporters.setdefault((ident, i), {}).setdefault(said, instance)
                    if role == "version" and said != value and (*ident[:i], said, *ident[i + 1:]) in idents:
                        _relabelled(into, relabelled, fam, ident, instance)  # the other arm's series in this one
            own = fam.identity(labels)
            sid = ids.get(own) or ids.setdefault(own, hash_identity(own))
            if fam.native:  # one sample holds every bucket: kept by bucket index (`native.sample_values`)
                # a float sample: a Prometheus whose last_over_time drops the histogram (2.42 gives "0"),
                # or a series that is no histogram; either way the per-rollout path reads it
                got = sample_values(s["histogram"][1]) if "histogram" in s else None
                into.setdefault(ident, {})[sid] = got or {CUSTOM: 1.0}
                kept += len(got or ()) // 2  # sizes the next snapshot's chunks: ~1 row per 2 buckets
                continue
            value = float(s["value"][1])
            if math.isfinite(value):
                extra = labels.get(fam.extra, "") if fam.extra else ""
                vals = into.setdefault(ident, {}).setdefault(sid, {})
                x = sys.intern(extra)
                vals[x] = vals.get(x, 0.0) + value  # one id for two series: a 48-bit collision; summed
            else:  # left out, the arm's sum would lack this series' count (a NaN error counter read 0 errors);
                # named by its bucket (`le`) or feature state where it has one (decision 1050)
                extra = labels.get(fam.extra, "") if fam.extra else ""
                into.setdefault(ident, {}).setdefault(UNREADABLE, {})[f"{fam.extra}={extra}" if extra else ""] = 1.0
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
    for (ident, _), said in sorted(exporters.items()):
        if len(said) > 1 and ident not in relabelled:  # two servers' series under one arm's value
            _relabelled(into, relabelled, fam, ident, sorted(said.values())[0])
    return kept


def _relabelled(into: dict[Ident, dict[str, dict[str, float]]], relabelled: set[Ident], fam: Family, ident: Ident,
                instance: str) -> None:
    """Mark a rollout arm whose exporter's own model or version (`exported_*`) says another arm's series are in it
    (`snapshot.RELABELLED`: NotCountable; decisions 435, 468)."""
    relabelled.add(ident)
    into.setdefault(ident, {})[RELABELLED] = {instance: 1.0}
    log.warning("metrics.arm_relabelled", metric=fam.metric, rollout_arm="/".join(ident), instance=instance)

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
Model, version and namespace values get a regex matcher while there are at most
`REGEX_LIMIT` of them; beyond that none (one big answer beats a huge URL).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import structlog

from canary.errors import ConfigError, MetricsUnavailable
from canary.metrics import queries as q
from canary.metrics.client import PrometheusClient
from canary.metrics.delta import ArmDelta, arm_delta, measure_delta, requests_delta
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
from canary.metrics.snapshot import FORMAT, Binding, Groups, Snapshot, UnusableStepStart
from canary.model import Target
from canary.policy import Policy

__all__ = [
    "FEATURE_COUNTERS", "FORMAT", "LOOKBACK", "REGEX_LIMIT", "ArmDelta", "BatchMetrics", "Binding", "Family", "Groups",
    "Ident", "NotBatchable", "Snapshot", "UnusableStepStart", "Want", "arm_delta", "batchable", "families",
    "measure_delta", "regex_escape", "regex_matcher", "requests_delta",
]
log = structlog.get_logger(__name__)
REGEX_LIMIT = 50  # more distinct values than this: no regex matcher, filter client-side only


@dataclass(frozen=True)
class Want:
    """One rollout whose data the next snapshot must hold."""

    policy: Policy
    target: Target


@dataclass
class _Group:
    filters: dict[str, set[str]] = field(default_factory=dict)  # label -> values seen
    idents: set[Ident] = field(default_factory=set)


class BatchMetrics:
    """Takes snapshots for many rollouts with one query per family."""

    def __init__(self, prom: PrometheusClient, *, regex_limit: int = REGEX_LIMIT, lookback: str = LOOKBACK) -> None:
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
            fams = policy_families(want.policy)
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
                sid = ids.get(own) or ids.setdefault(own, hash_identity(own))
                key = (*ident, sid, labels.get(fam.extra, "") if fam.extra else "")
                out[key] = out.get(key, 0.0) + value  # one id for two series: a 48-bit collision; summed
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
    return out

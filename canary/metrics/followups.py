"""Follow-up questions a batched snapshot may need beyond its one query per family and chunk.

Kept apart from `batch` (which asks and parses the snapshot itself) because both are about
what to do when that one answer is not enough, and both must stay bounded:

- `Isolation`: a query Prometheus answered only in part (`client.PartialAnswer`: a store down
  behind Thanos or a remote read) does not say whose series it lacks. It is asked again once
  per model of its chunk, one attempt each, within one budget per snapshot; a model whose own
  answer is still partial, or is not asked for lack of time, is marked `snapshot.PARTIAL`.
- `RestartProbe`: two cumulative values cannot show a counter that restarted and outgrew its
  step-start value. `Snapshot.restarted` asks Prometheus for the window's `resets()` and
  `min_over_time()` (`Family.restart_query`), once per (family, chunk, window start).

`batch` is the caller: `batch` here is a `BatchMetrics` (its `prom`, `lookback`, `isolate_s`,
`monotonic` and `restart_queries`), typed loosely to keep the import one way.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable

import structlog

from canary.errors import MetricsUnavailable
from canary.metrics.client import BATCH, BATCH_WHO, PartialAnswer
from canary.metrics.families import RESTART_LABEL, Family, Ident
from canary.metrics.snapshot import BEFORE, PARTIAL, RESETS

log = structlog.get_logger(__name__)
# `batch._parse`: adds an answer's series for `idents` to a snapshot's index, returns how many it kept
Parse = Callable[[Any, Family, set[Ident], str, dict[Ident, dict[str, dict[str, float]]]], int]


class Isolation:
    """A query Prometheus answered in part, asked again per model of its chunk, once each, within one
    budget per snapshot (`BatchMetrics.isolate_s`, the client's `budget_s` by default): the models whose
    own answer is whole are read; the others, and every model left when the budget is spent, are marked
    PARTIAL (that family of theirs "could not measure"; the rest of the tick is judged)."""

    def __init__(self, batch: Any, at: float, parse: Parse) -> None:
        self.batch, self.at, self.parse, self.asked = batch, at, parse, 0
        self.deadline: float | None = None  # set by the first partial answer

    def __call__(self, fam: Family, idents: set[Ident], exc: PartialAnswer,
                 into: dict[Ident, dict[str, dict[str, float]]]) -> int:
        batch = self.batch
        if self.deadline is None:
            self.deadline = batch.monotonic() + batch.isolate_s
        by_model: dict[str, set[Ident]] = {}
        for ident in idents:
            by_model.setdefault(ident[_model_at(fam)] if fam.by else "", set()).add(ident)
        kept, unavailable = 0, []
        for model, mine in sorted(by_model.items()):
            query = fam.query(_filters_of(fam, mine), lookback=batch.lookback)
            try:
                if len(by_model) == 1 or batch.monotonic() >= self.deadline:  # one model: asked already
                    raise PartialAnswer("not asked again")
                self.asked += 1
                answer = batch.prom.ask(query, check=BATCH, arm="", at=self.at, who=BATCH_WHO, strict=False,
                                        deadline=self.deadline, attempts=1)
                kept += self.parse(answer, fam, mine, query, into)
            except MetricsUnavailable:
                unavailable.append(model)
                for ident in mine:
                    into[ident] = {PARTIAL: {"": 1.0}}
        log.warning("metrics.batch_partial", family=fam.metric, models=len(by_model), unavailable=unavailable[:20],
                    unavailable_count=len(unavailable), error=str(exc)[:300])
        return kept


class RestartProbe:
    """`Snapshot.restarted`'s questions to Prometheus, asked at the snapshot's time once per (family, chunk,
    window start) and shared by every rollout of the chunk whose window starts then (the controller
    starts steps at snapshots, so many share one); safe across threads (looks run in a pool)."""

    def __init__(self, batch: Any, at: float,
                 chunks: dict[str, list[tuple[dict[str, set[str]], set[Ident]]]]) -> None:
        self.batch, self.at, self.chunks = batch, at, chunks
        self._lock = threading.Lock()  # guards the dicts and the deadline; never held while Prometheus is asked
        self._asking: dict[tuple[Any, ...], threading.Lock] = {}  # one per question: asked once, others wait
        self._answers: dict[tuple[Any, ...], dict[Ident, dict[str, dict[str, float]]] | None] = {}
        self.deadline: float | None = None  # of asking again per model, set by the first partial answer

    def __call__(self, fam: Family, ident: Ident, since: float) -> dict[str, dict[str, float]]:
        range_ms = math.floor((self.at - since) * 1000)  # never before `since`: its own sample is base's
        i = next((i for i, (_, idents) in enumerate(self.chunks.get(fam.key, ())) if ident in idents), None)
        if range_ms <= 0 or i is None:
            return {}
        filters, idents = self.chunks[fam.key][i]
        got = self._ask((fam.key, i, range_ms), fam, filters, idents, range_ms, attempts=None)
        if got is None:  # answered in part: this rollout's model alone, once, within the budget
            mine = {x for x in idents if x[_model_at(fam)] == ident[_model_at(fam)]}
            with self._lock:
                if self.deadline is None:
                    self.deadline = self.batch.monotonic() + self.batch.isolate_s
                spent = self.batch.monotonic() >= self.deadline
            if mine != idents and not spent:
                got = self._ask((fam.key, i, range_ms, ident[_model_at(fam)]), fam, _filters_of(fam, mine), mine,
                                range_ms, attempts=1)
        if got is None:
            raise MetricsUnavailable(f"the restarts of {'/'.join(ident)}'s {fam.metric} series in the window "
                                     "could not be asked: Prometheus answered in part")
        return got.get(ident, {})

    def _ask(self, key: tuple[Any, ...], fam: Family, filters: dict[str, set[str]], idents: set[Ident],
             range_ms: int, *, attempts: int | None) -> dict[Ident, dict[str, dict[str, float]]] | None:
        """One restart query's parsed answer, asked once (cached; a look wanting it while it is asked waits
        for that answer, looks wanting other questions do not); None when it was answered in part."""
        with self._lock:
            if key in self._answers:
                return self._answers[key]
            asking = self._asking.setdefault(key, threading.Lock())
        with asking:
            with self._lock:
                if key in self._answers:  # asked by the look this one waited for
                    return self._answers[key]
                self.batch.restart_queries += 1
            query = fam.restart_query(filters, range_ms, lookback=self.batch.lookback)
            got: dict[Ident, dict[str, dict[str, float]]] | None
            try:
                if attempts is None:
                    answer = self.batch.prom.query(query, check=BATCH, at=self.at)
                else:
                    answer = self.batch.prom.ask(query, check=BATCH, arm="", at=self.at, who=BATCH_WHO, strict=False,
                                                 deadline=self.deadline, attempts=attempts)
                got = _parse_restarts(answer, fam, idents, query)
            except PartialAnswer:
                got = None
            with self._lock:
                self._answers[key] = got
            return got


def _filters_of(fam: Family, idents: set[Ident]) -> dict[str, set[str]]:
    """Query filters that match exactly the values of `idents` (one chunk's worth, or one model's)."""
    return {label: {ident[i] for ident in idents} for i, (label, _) in enumerate(fam.by)}


def _model_at(fam: Family) -> int:
    """Where the model is in `fam`'s idents (the first label when it has no model role)."""
    return next((i for i, (_, role) in enumerate(fam.by) if role == "model"), 0)


def _parse_restarts(result: Any, fam: Family, idents: set[Ident],
                    query: str) -> dict[Ident, dict[str, dict[str, float]]]:
    """{ident: {series id: {extra: min, RESETS: count, BEFORE: value}}} from a `Family.restart_query` answer."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"batch: malformed answer (not a vector); query: {query}")
    out: dict[Ident, dict[str, dict[str, float]]] = {}
    try:
        for s in result:
            labels = s["metric"]
            ident = tuple(labels.get(label, "") for label, _ in fam.by)
            value = float(s["value"][1])
            if ident not in idents or not math.isfinite(value):
                continue  # a NaN sample: the snapshot itself says what it makes of it
            kind = labels.get(RESTART_LABEL)
            key = RESETS if kind == "resets" else BEFORE if kind == "before" else \
                (labels.get(fam.extra, "") if fam.extra else "")
            out.setdefault(ident, {}).setdefault(fam.series_id(labels), {})[key] = value
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise MetricsUnavailable(f"batch: malformed answer; query: {query}") from exc
    return out


def chunk_idents(fam: Family, idents: set[Ident], filters: dict[str, set[str]]) -> set[Ident]:
    """The rollout arms of `idents` a chunk's filters match."""
    if not filters:
        return set(idents)
    return {ident for ident in idents
            if all(ident[i] in filters.get(label, ()) for i, (label, _) in enumerate(fam.by))}

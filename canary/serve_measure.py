"""One look's measurements for `canary serve`, answered within the caller's timeout.

Why a module of its own: Flagger and Argo wait a fixed time for an answer (Flagger's webhook
`timeout`, 10 s unless set; Argo's `timeoutSeconds`, 10 s unless set). The Prometheus client
bounds each query (retries within a budget, 5 s), but a look asks one query after another for
every check and arm: against a Prometheus that accepts connections and never answers, the default
policy's look took 30 s, past every caller's timeout, while the revision stayed locked and the
next call queued behind it. Here every check (and the request count) is asked on a thread of its
own, in parallel, and what has not answered by the deadline is "could not measure" for that check
(a `MetricsUnavailable`: never a pass). A thread left behind ends within its client's own budget;
its answer is dropped.

A query Prometheus refused (401/403 credentials, 404 a wrong path prefix, 400/422 a query it will not
run: the client's ConfigError) is "could not ask" too, as a refused connection is: Prometheus said
nothing about the series. Taken as "asked, no such series" (NoData), every look against a
`--prometheus-url` with a wrong prefix or expired credentials was a 200 "inconclusive" (no 503 for
the caller to see) and the window's deadline a `fail` with "canary requests 0": a good canary rolled
back (Argo: Failed; Flagger: 409) for this service's own configuration (decision 270).

`no_stable_data` asks, at a rollout's first look, whether the stable arm has data a look could judge (the
preflight `canary promote` runs before traffic moves, decisions 110, 261): a model name that matches no series
answered "inconclusive" at every look and `fail` only at `interval + no_data_deadline` (decision 291). It is
asked at every look until it has once answered (decision 314): asked only while no look was recorded, one that
timed out (behind a concurrent call, a slow Prometheus) was never asked again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from canary.errors import CanaryError, MetricsUnavailable, NoData, NotCountable, TransientError, said
from canary.metrics.base import counted_requests
from canary.model import Target
from canary.policy import Policy

COUNTS = "\0request_counts"  # the request count's job, beside the checks' (no check is named so)


def measure_within(metrics: Any, policy: Policy, target: Target, *, window_s: int, at: float, deadline: float,
                   answer_within_s: float, log: Any) -> tuple[dict[str, Any], float, bool, str, float | None]:
    """Every check's (stable, canary) over the window ending `at`, the canary requests, whether Prometheus was
    asked them, why they could not be counted where it answered that (`NotCountable`: read twice, a target
    down; "" otherwise), and the seconds of the window Prometheus holds data of them for (None: not told;
    `PrometheusProvider.counted`, decision 574), asked in parallel until `deadline` (time.monotonic()). Nothing
    raises: a failure, or no answer in time, is that check's "could not measure" (no count: 0 requests, so no pass,
    and False). An uncountable count was 0 requests counted (decision 485)."""
    jobs: dict[str, Callable[[], Any]] = {
        c.name: (lambda c=c: metrics.measure(policy, c, target, window_s=window_s, at=at)) for c in policy.checks}
    jobs[COUNTS] = lambda: counted_requests(metrics, policy, target, window_s=window_s, at=at)
    done = _run(jobs, deadline)
    late = f"Prometheus did not answer within the {answer_within_s:g}s this service answers in (--answer-within)"
    out: dict[str, Any] = {}
    for check in policy.checks:
        got = done.get(check.name)
        if got is None:
            log.error("metrics.too_slow", check=check.name, answer_within_s=answer_within_s)
            out[check.name] = MetricsUnavailable(f"check {check.name!r}: {late}")
        elif got[0] or isinstance(got[1], (NoData, TransientError)):
            out[check.name] = got[1]
        elif isinstance(got[1], CanaryError):  # refused (credentials, prefix, query): could not ask, never NoData
            out[check.name] = MetricsUnavailable(str(got[1]))
        else:  # a provider bug is "could not measure", not a 500
            exc = got[1]
            log.error("metrics.unexpected_error", check=check.name, error=f"{type(exc).__name__}: {exc}")
            out[check.name] = MetricsUnavailable(f"{type(exc).__name__}: {exc}")
    counted = done.get(COUNTS)
    n, ok, uncounted, held = 0.0, True, "", None  # Prometheus answered: a number, or no series (0 requests)
    if counted is None:
        log.error("metrics.too_slow", check="request_counts", answer_within_s=answer_within_s)
        ok = False
    elif counted[0]:
        try:
            n = float(counted[1][1])
        except (TypeError, ValueError, IndexError):
            n = 0.0
        if isinstance(counted[1], tuple) and len(counted[1]) > 2 and isinstance(counted[1][2], (int, float)):
            held = float(counted[1][2])
    else:  # could not ask (refused, 5xx, timeout, a query refused), or a provider bug: not counted; NoData: none
        ok = isinstance(counted[1], NoData)
        if isinstance(counted[1], NotCountable):  # answered, and no count: not 0 requests
            uncounted = said(counted[1])
    return out, n, ok, uncounted, held


def no_stable_data(metrics: Any, policy: Policy, target: Target, *,
                   log: Any) -> Callable[[float], tuple[bool, str | None]]:
    """Ask the policy's preflight now, on a thread of its own (`metrics.preflight`: every query a look sends, stable
    and canary, over one interval at Prometheus's now), so that it runs beside the look's own queries rather than
    taking half of the look's time (decision 314). Returns `told(deadline)` -> (told, why), waiting until `deadline`
    (time.monotonic()) at most: whether it answered, and why no look of this rollout could be judged, or None.
    `why` is set when it finds no stable data for the request count or for every check (`PreflightReport.blind`,
    decision 110), or none for a check whose limit is relative to stable (`reconcile.never_comparable`, decision
    261): it names the model, the places, what to look at and one empty query. (False, None) when that could not
    be told: no answer by `deadline`, or the preflight failed (Prometheus down, a query refused: the look itself
    then says "could not measure"); the caller asks again at its next look. Logs
    `metrics.preflight_empty_stable` per empty stable query, as promote does."""
    started = _Started({"preflight": lambda: metrics.preflight(policy, target)})
    return lambda deadline: _told(started.wait(deadline).get("preflight"), policy, target, log)


def _told(done: tuple[bool, Any] | None, policy: Policy, target: Target, log: Any) -> tuple[bool, str | None]:
    """`no_stable_data`'s answer from the preflight's result (None: not answered in time)."""
    from canary.reconcile import labels_to_check, never_comparable, never_places, stable_query

    if done is None or not done[0]:  # the look's own queries say why (503 "could not measure")
        return False, None
    report = done[1]
    for line in report.warnings():
        log.warning("metrics.preflight_empty_stable", model=target.model, detail=line)
    blind = report.blind()
    never = () if blind else never_comparable(report, policy)
    if not blind and not never:
        return True, None
    places = ", ".join(blind) if blind else never_places(never)
    m = policy.metrics
    why = (f"model {target.model!r}: no stable ({target.stable_version}) data over the last {report.window_s}s for "
           f"{places}: no look of this rollout could pass, and it would fail only at its deadline. Check the model "
           f"name (the Canary's or the AnalysisTemplate's `model`), {labels_to_check(policy)}, "
           f"metrics.source ({m.source}) and the checks' source/query against the series Prometheus has, or whether "
           f"{target.stable_version} gets traffic now; not recorded as a look: the next call checks again; query: "
           f"{stable_query(report, blind[0] if blind else never[0][0])}")
    return True, why


def _run(jobs: dict[str, Callable[[], Any]], deadline: float) -> dict[str, tuple[bool, Any]]:
    """{name: (True, value) | (False, exception)} for the jobs that finished by `deadline`."""
    return _Started(jobs).wait(deadline)


class _Started:
    """Jobs started now, each on a thread of its own; `wait(deadline)` gives those finished by then."""

    def __init__(self, jobs: dict[str, Callable[[], Any]]) -> None:
        self.done: dict[str, tuple[bool, Any]] = {}
        self.cond = threading.Condition()
        self.count = len(jobs)
        for name, fn in jobs.items():
            threading.Thread(target=self._work, args=(name, fn), name="canary-serve-measure", daemon=True).start()

    def _work(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            got: tuple[bool, Any] = (True, fn())
        except Exception as exc:  # noqa: BLE001 - handed to the look as this check's failure
            got = (False, exc)
        with self.cond:
            self.done[name] = got
            self.cond.notify_all()

    def wait(self, deadline: float) -> dict[str, tuple[bool, Any]]:
        """{name: (True, value) | (False, exception)} for the jobs finished by `deadline` (time.monotonic())."""
        with self.cond:
            while len(self.done) < self.count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return dict(self.done)

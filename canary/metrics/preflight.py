"""Preflight: every query a look of this rollout will send, asked once before any traffic moves.

A query Prometheus cannot run is then a ConfigError (exit 2, nothing touched)
rather than an abort after the first step. The queries come from
`query_plan`/`request_plan`, the very functions `measure` and `request_counts`
build theirs with, and the answers are read with the same code (`answers`),
so what is checked is what runs. The answer to a known query (`PROBE`) tells a
URL that is not Prometheus apart from a bad check.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics import queries as q
from canary.metrics.answers import (bucket_pairs, evaluated_at, is_scalar, keep_shared, number, number_of,
                                    shared_bounds)
from canary.metrics.base import REQUEST_COUNTS, PreflightQuery, PreflightReport
from canary.metrics.client import PREFIX_HINT, NotPrometheus, PrometheusClient, Rejected, excerpt
from canary.metrics.native import INF_ONLY_HINT, inf_only, native_buckets
from canary.metrics.query_plan import (FEATURE_ROLES, HISTOGRAM, HISTOGRAM_KINDS, ArmsNative, arms_histograms_query,
                                       arms_native_query, classic_buckets_query, one_query_of, query_plan, twice_parts,
                                       twice_query_of, request_plan, request_query)
from canary.model import Histogram, Target
from canary.policy import LatencyCheck, Policy

PROBE = "vector(1)"  # known answer: one series, no labels, value "1"


def preflight(client: PrometheusClient, policy: Policy, target: Target) -> PreflightReport:
    """Ask Prometheus, once each, every query a look of this rollout will send.

    Shapes: the queries are those of `query_plan` for each of `policy.checks`
    and of `request_plan`, both arms, over `window_s` (the policy's
    `analysis.interval`, or 3 scrapes where that is longer: an empty stable
    arm means no data over a whole step); equal queries
    are sent once, and each error_rate and feature_missing check's parts once more as the one query a
    look sends (`query_plan.one_query_of`, decisions 175 and 189), and each latency and
    prediction_shift check's classic histograms, both arms, with their series counts (decision 188), as the
    one query a look sends (`query_plan.arms_histograms_query`, decision 193), whose sums and counts
    the layout warnings read (decisions 196, 199); a histogram read natively is read from the one
    query a look asks both arms' native histograms with (`query_plan.arms_native_query`, decision 195).
    A known-answer query (`vector(1)`)
    goes first, so a URL that is not Prometheus is told apart from a bad
    check. Returns a `PreflightReport` (empty answers are recorded, not
    raised: a canary has no series before it gets traffic).

    Errors (source: `canary.errors`):
    - ConfigError (exit 2, never retried): a query that cannot be built
      ("policy checks[i] 'name': ...", or "policy metrics: ..."); a query
      Prometheus rejects (HTTP 400/422, bad_data/execution; its error is
      quoted, with the check and arm); 401/403 (credentials); 404, another
      4xx, or an answer that is not Prometheus's JSON (not a Prometheus
      HTTP API: check the path prefix); an invalid URL.
    - MetricsUnavailable (transient): refused, timed out, 5xx/408/429 after
      the provider's bounded retries. Preflight stops at the first one, so
      a server that hangs costs ONE query: at most `query_bound_s` seconds
      (5.45 s with the defaults timeout_s=5, retries=3, budget_s=5). In all,
      preflight takes at most 3 x budget_s (+ one backoff); a server slower
      than that is MetricsUnavailable too.
    """
    t0 = time.monotonic()
    deadline = t0 + 3 * client.budget_s
    window = window_s(policy)
    planned = preflight_plan(policy, target, window)
    answers: dict[str, tuple[int, float | None, Histogram | None]] = {}
    # one instant for every query, Prometheus's own (the probe's answer carries it): this machine's
    # clock may be skewed, and the window must end at Prometheus's now
    at = _probe(client, deadline)
    sent = 1
    for where, check, arm, role, query in planned:
        if query not in answers:
            answers[query] = _preflight_one(client, query, where=where, check=check, arm=arm, role=role,
                                            deadline=deadline, at=at)
            sent += 1
    combined: set[str] = set()  # what a look sends for an error_rate check: its parts (asked above) as one query
    for i, check in enumerate(policy.checks):  # and a feature_missing check's (decision 189)
        query = (one_query_of(policy, check, target, window_s=window)
                 or twice_query_of(policy, check, target, window_s=window))
        if query is not None:
            if query not in combined:
                client.ask(query, check=check.name, arm="", at=at, who=f"policy checks[{i}] {check.name!r}",
                           strict=True, deadline=deadline)
                combined.add(query)
                sent += 1
    # each arm's native query -> the one query each check reading it asks both arms' native histograms with
    # (decision 195): several where checks share a histogram (a latency check's, and a prediction_shift
    # check's, which ors its request counts in: decision 198)
    both_arms: dict[str, list[tuple[ArmsNative, str, str, str]]] = {}
    for i, check in enumerate(policy.checks):
        got = arms_native_query(policy, check, target, window_s=window)
        if got is not None:
            for arm in q.ARMS:
                whose = (got, arm, check.name, f"policy checks[{i}] {check.name!r} ({arm} arm)")
                if all(x[0].query != got.query for x in both_arms.get(got.arm_queries[arm], [])):
                    both_arms.setdefault(got.arm_queries[arm], []).append(whose)
    native_first = policy.metrics.histograms == "native"
    native, more = _read_native_histograms(client, planned, answers, deadline, native_first=native_first, at=at,
                                           both_arms=both_arms)
    sent += more
    counts: dict[str, list[object]] = {}  # an arm's classic histogram query -> its series count per bound
    sums: dict[str, list[object]] = {}  # ... -> its buckets, from the same answer as its count (decision 199)
    for i, check in enumerate(policy.checks):  # a latency or prediction_shift check's classic histograms, both
        # arms, as one query (decision 193), where a look asks for classic buckets: always, unless it reads
        # both arms natively first (`metrics.histograms: native`); read classic first, it asks them first
        both = arms_histograms_query(query_plan(policy, check, target, window_s=window),
                                     twice_parts(policy, check, target, window_s=window)) \
            if check.kind in HISTOGRAM_KINDS else None
        arms = [x for _, c, _, role, x in planned if c == check.name and role == HISTOGRAM]
        if both is not None and both[0] not in combined and not (native_first and all(x in native for x in arms)):
            query, parts = both
            got = q.split_answer(client.ask(query, check=check.name, arm="", at=at,
                                            who=f"policy checks[{i}] {check.name!r}", strict=True, deadline=deadline),
                                 parts)
            for arm in q.ARMS:  # the layout warnings read each arm's count from this answer (decision 196)
                if parts[f"{arm}/buckets"] not in counts:
                    counts[parts[f"{arm}/buckets"]] = got[f"{arm}/count"]
                    sums[parts[f"{arm}/buckets"]] = got[f"{arm}/buckets"]
            combined.add(query)
            sent += 1
    layouts: list[str] = []
    counted: set[str] = set()
    for where, check, arm, role, query in planned:  # classic histograms a look reads: their pods' bounds
        with_count = classic_buckets_query(query) if role == HISTOGRAM else None
        if with_count is None or query in native or query in counted or not _finite(answers[query][2]):
            continue
        counted.add(query)
        if query not in counts:  # (every classic arm a look reads was in a both-arms answer above)
            counts[query] = _count_of(client, with_count, where=where, check=check, arm=arm, deadline=deadline,
                                      at=at)
            sent += 1
        counting = with_count[1]["count"]
        if sums.get(query):  # the sum the count was asked with: behind a load balancer over replicas the arm's
            # own query may have reached another replica, whose sum holds bounds this count drops (decision 199)
            answers[query] = _histogram_answer(sums[query], query, who=f"policy {where} ({arm} arm)", check=check,
                                               arm=arm)
        answers[query], disjoint = _on_shared_bounds(answers[query], counts[query], counting, where=where,
                                                     check=check, arm=arm)
        if disjoint and arm == "stable":
            layouts.append(f"{where}: the stable pods export bucket layouts that share no finite bound (a "
                           f"Deployment in the middle of an update?): until they share one, no look can compare "
                           f"a quantile; query: {counting}")
    # what `request_counts` sends (decision 380), asked last: a look asks it after its checks
    def ask_count(query: str) -> object:
        return client.ask(query, check="request_counts", arm="", at=at, who=REQUEST_COUNTS, strict=True,
                          deadline=deadline)

    by_provider = getattr(client, "ask_counts", None)  # a store without `held`'s subquery: asked without it (593)
    if by_provider is not None:
        by_provider(policy, target, window, ask_count)
    else:
        ask_count(request_query(policy, target, window_s=window)[0])
    sent += 1
    found = tuple(PreflightQuery(where=w, check=c, arm=a, query=native.get(x, x), series=answers[x][0],
                                 value=answers[x][1], role=r) for w, c, a, r, x in planned)
    return PreflightReport(url=client.url, window_s=window, queries=found, sent=sent,
                           elapsed_s=time.monotonic() - t0,
                           unresolvable=_unresolvable(policy, planned, answers, native),
                           native=tuple(f"{w} ({a})" for w, _, a, _, x in planned if x in native),
                           layouts=tuple(layouts))


def window_s(policy: Policy) -> int:
    """Seconds (>= 1) of the window preflight, and `canary plan`'s layout read, ask over: the policy's
    `analysis.interval`, or `unrouted.SETTLE_SCRAPES` x `metrics.scrape_interval` where that is longer.
    An `increase()` needs two samples in its window: over the interval alone (60 s, the field's default)
    from Prometheus's default 1 min scrapes it held one, every stable query answered nothing, and a
    serving stable was refused as "no stable data" (exit 2; `plan` exit 3) whatever its traffic."""
    from canary.analysis.unrouted import SETTLE_SCRAPES

    return max(1, math.ceil(max(policy.analysis.interval, SETTLE_SCRAPES * policy.metrics.scrape_interval)))


def _finite(hist: Histogram | None) -> bool:
    return hist is not None and any(math.isfinite(b) for b in hist.bounds)


def _count_of(client: PrometheusClient, combined: tuple[str, dict[str, str]], *, where: str, check: str, arm: str,
              deadline: float, at: float | None) -> list[object]:
    """One arm's `count by (le)` of its histograms with observations, asked with its sum as one query
    (`query_plan.classic_buckets_query`, decision 188)."""
    one, parts = combined
    return q.split_answer(client.ask(one, check=check, arm=arm, at=at, who=f"policy {where} ({arm} arm)",
                                     strict=True, deadline=deadline), parts)["count"]


def _on_shared_bounds(answer: tuple[int, float | None, Histogram | None], result: list[object], counting: str, *,
                      where: str, check: str, arm: str) -> tuple[tuple[int, float | None, Histogram | None], bool]:
    """A classic histogram answer on the bounds every pod with observations exports (`result`: the arm's
    `count by (le)` answer to `counting`), as a look reads it (`PrometheusProvider._classic`); and whether
    its pods share no finite bound. That is a warning, not a refusal: a stable Deployment in the
    middle of its own update passes through it, and a look then has NoData, as for an outage. The count
    and `answer` are read from the both-arms query a look sends (`query_plan.arms_histograms_query`,
    decisions 196, 199): one Prometheus's, behind a load balancer over replicas."""
    who = f"policy {where} ({arm} arm)"
    try:
        shared = shared_bounds(result, counting, check, arm)
    except MetricsUnavailable as exc:  # the answer's shape, not the wire
        raise ConfigError(f"{who}: {str(exc).removeprefix(f'check {check!r}: ')}") from exc
    series, value, hist = answer
    if shared is None or hist is None:
        return answer, False
    kept = keep_shared(list(zip(hist.bounds, hist.counts)), shared)
    if kept is None:
        return (series, value, None), True
    return (series, value, q.normalise(kept, [b for b, _ in kept])), False


def _unresolvable(policy: Policy, planned: list[tuple[str, str, str, str, str]],
                  answers: dict[str, tuple[int, float | None, Histogram | None]],
                  native: dict[str, str]) -> tuple[str, ...]:
    """Latency checks whose layout can never show a canary as fast as stable within the relative
    limit (`evidence.layout_problem`) or below the ceiling (`plan_layout.ceiling_problem`), read
    from the stable histogram preflight fetched; and from the canary's when its series already
    exist (a client exporting its buckets at 0 before the first request) on other bounds than the
    stable's: the judge compares a relative limit on the bounds both arms share, and shows a ceiling
    on the canary's own (a redeploy with new buckets passes no good canary on them)."""
    from canary.analysis.evidence import layout_problem, quantile_bucket
    from canary.analysis.plan_layout import ceiling_problem

    checks = {c.name: c for c in policy.checks}
    canary_of = {name: query for _, name, arm, role, query in planned if arm == "canary" and role == HISTOGRAM}
    out = []
    for where, name, arm, role, query in planned:
        check, hist = checks.get(name), answers[query][2]
        if (arm != "stable" or role != HISTOGRAM or hist is None or not isinstance(check, LatencyCheck)
                or (check.max_increase_pct is None and check.max_ms is None)):
            continue
        scale = q.latency_metric(q.preset(policy.source_of(check)), name)[1]
        in_ms = q.normalise(zip(hist.bounds, hist.counts), hist.bounds, scale=scale)  # as `measure` reads it
        canary = _canary_layout(answers, native, query, canary_of.get(name), scale)
        bounds, cum = np.array(in_ms.bounds), np.array(in_ms.counts, float)
        why = []
        if check.max_increase_pct is not None:
            tol = check.max_increase_pct / 100
            problem = layout_problem(bounds, cum, q=check.quantile, tol=tol)
            if not problem and canary is not None:
                shared = [i for i, b in enumerate(in_ms.bounds) if b in set(canary)]
                seen = (f"the canary's series export other buckets ({_bounds_text(canary)} ms; a redeploy with "
                        "new buckets?)")
                if len(shared) < 2:  # +Inf alone
                    problem = (f"{seen}, none of them a finite bound of the stable's: the arms share no bound, so "
                               f"+{check.max_increase_pct:g}% is never judged and no canary passes it")
                else:
                    on = layout_problem(bounds[shared], cum[shared], q=check.quantile, tol=tol)
                    problem = f"{seen}; on the bounds both arms share, {on}" if on else ""
            if problem:
                why.append(problem)
        if check.max_ms is not None:
            problem = ceiling_problem(in_ms.bounds, quantile_bucket(bounds, cum, check.quantile), q=check.quantile,
                                      max_ms=check.max_ms, canary_bounds=canary)
            if problem:
                why.append(problem)
        out += [f"{where}: {w}" for w in why]
    return tuple(out)


def _canary_layout(answers: dict[str, tuple[int, float | None, Histogram | None]], native: dict[str, str],
                   stable_query: str, canary_query: str | None, scale: float) -> tuple[float, ...] | None:
    """The canary's bucket bounds (ms, +Inf last) when its classic series exist already and differ from the
    stable's (their counts do not matter: 0 before its traffic); None otherwise (no series yet: normal)."""
    if canary_query is None or canary_query in native or stable_query in native:
        return None
    stable, canary = answers[stable_query][2], answers[canary_query][2]
    if stable is None or canary is None or not _finite(canary):
        return None
    s_ms = q.normalise(zip(stable.bounds, stable.counts), stable.bounds, scale=scale).bounds
    c_ms = q.normalise(zip(canary.bounds, canary.counts), canary.bounds, scale=scale).bounds
    return None if set(c_ms) == set(s_ms) else c_ms


def _bounds_text(bounds: tuple[float, ...]) -> str:
    finite = [f"{b:g}" for b in bounds if math.isfinite(b)]
    return ", ".join(finite) if len(finite) <= 8 else ", ".join(finite[:4] + ["...", *finite[-2:]])


def _read_native_histograms(client: PrometheusClient, planned: list[tuple[str, str, str, str, str]],
                            answers: dict[str, tuple[int, float | None, Histogram | None]],
                            deadline: float, *, native_first: bool = False, at: float | None = None,
                            both_arms: dict[str, list[tuple[ArmsNative, str, str, str]]] | None = None
                            ) -> tuple[dict[str, str], int]:
    """A histogram with no classic `_bucket` series is read as a Prometheus *native* histogram, as a
    look reads it (`PrometheusProvider._histograms`): ask the native query of each empty one once
    and record its answer in its place (`native_first`: of each one). Best effort: a native query
    Prometheus cannot answer, or one that finds nothing, leaves the empty answer (a warning) as it
    was; a float where a histogram was wanted is refused for the stable arm. Classic series with only
    `le="+Inf"` are read natively too (the ghost Prometheus before 2.47 ingests for a native
    histogram while it is empty), and so are classic buckets without observations (from a client
    exporting both forms, the same ghost at every bound); when +Inf-only series hold observations
    and the stable arm has no native histogram, no look can place them: refused before traffic.
    An arm's native query in `both_arms` ({arm's native query: [(both arms' query, arm, check, who)]})
    is read from the one query a look sends for both arms (`query_plan.arms_native_query`, decision
    195), asked once; where several checks read that histogram, each check's own such query is asked
    (a look of each sends its own: decision 198), and an error in any of them is the arm's. Returns
    {classic query: the arm's own native query} for those read natively, and the queries sent."""
    read, sent, asked, absent = {}, 0, set(), set()  # absent: native queries that found nothing
    together: dict[str, tuple[dict[str, list[object]], dict[str, list[object]]] | Exception] = {}

    def ask(native: str, *, check: str, arm: str, who: str) -> object:
        """The arm's native histogram answer (its part of both arms' one query, asked once)."""
        nonlocal sent
        if native not in (both_arms or {}):
            sent += 1
            return client.ask(native, check=check, arm=arm, at=at, who=who, strict=True, deadline=deadline)
        plans = (both_arms or {})[native]
        for plan, _, whose_check, whose in plans:  # every check's that reads this arm's histogram
            if plan.query not in together:
                sent += 1
                try:
                    result = client.ask(plan.query, check=whose_check, arm="", at=at, who=whose, strict=True,
                                        deadline=deadline)
                    together[plan.query] = q.split_arms(result, plan.arm_label, plan.versions, plan.parts)
                except (ConfigError, MetricsUnavailable) as exc:  # the same for the other arm
                    together[plan.query] = exc
        each = [together[plan.query] for plan, *_ in plans]
        for got in each:
            if isinstance(got, Exception):
                raise got
        first = each[0]  # (the checks' queries hold the same histogram samples)
        return [] if isinstance(first, Exception) else first[0][plans[0][1]]

    for where, check, arm, role, query in planned:
        native = q.native_query_of(query) if role == HISTOGRAM else None
        hist, who = answers[query][2], f"policy {where} ({arm} arm)"
        ghost = hist is not None and inf_only(zip(hist.bounds, hist.counts))
        refuse = ghost and arm == "stable" and hist is not None and hist.total > 0
        unobserved = hist is not None and hist.total <= 0  # (a both-forms client's empty classic buckets)
        if native is None or (answers[query][0] != 0 and not native_first and not ghost and not unobserved) \
                or native in asked:
            if refuse and query not in read and (native is None or native in absent):  # (not after an outage)
                raise _unplaceable(who, query)
            continue
        asked.add(native)
        try:
            result = ask(native, check=check, arm=arm, who=who)
            got = native_buckets(result, native, check, arm)
        except ConfigError as exc:  # a float where a histogram was wanted: no look could read it
            if arm == "stable":
                raise ConfigError(f"{who}: {str(exc).removeprefix(f'check {check!r}: the stable arm: ')}") from exc
            continue
        except NoData:
            absent.add(native)
            if refuse:  # observations no bound can place, and no native histogram: no look can read it
                raise _unplaceable(who, query) from None
            continue  # best effort: the empty answer stays a warning
        except MetricsUnavailable:
            continue  # best effort: the look reads it again
        pairs = list(got.pairs)
        answers[query] = (1, got.total, q.normalise(pairs, [le for le, _ in pairs]))
        read[query] = native
    return read, sent


def _unplaceable(who: str, query: str) -> ConfigError:
    return ConfigError(f"{who}: the histogram has {INF_ONLY_HINT}; query: {query}")


def _probe(client: PrometheusClient, deadline: float) -> float | None:
    """Whether the URL is a Prometheus HTTP API (NotPrometheus if not); the time it evaluated the
    probe at, by its own clock."""
    try:
        result = client.ask(PROBE, check="preflight", arm="", at=None, who="preflight", strict=True,
                            deadline=deadline)
    except Rejected as exc:  # nothing is wrong with vector(1): whatever answered is not Prometheus
        raise NotPrometheus(f"{client.url} does not look like a Prometheus HTTP API: it rejected the "
                            f"query {PROBE} ({exc}){PREFIX_HINT}") from exc
    ok = (isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict)
          and result[0].get("metric") == {} and number(result[0].get("value")) == 1.0)
    if not ok:
        raise NotPrometheus(f"{client.url} does not look like a Prometheus HTTP API: {PROBE} answered "
                            f"{excerpt(json.dumps(result))} instead of one series of value 1{PREFIX_HINT}")
    return evaluated_at(result)


def _preflight_one(client: PrometheusClient, query: str, *, where: str, check: str, arm: str, role: str,
                   deadline: float, at: float | None = None) -> tuple[int, float | None, Histogram | None]:
    """(series, value, histogram or None) of one answer, checked with the code `measure` reads it with."""
    who = f"policy {where} ({arm} arm)"
    result = client.ask(query, check=check, arm=arm, at=at, who=who, strict=True, deadline=deadline)
    if isinstance(result, list) and result and isinstance(result[0], dict) and "values" in result[0]:
        raise ConfigError(f"{who}: the query returns a range vector; a check needs an instant vector "
                          f"or a scalar; query: {query}")
    series = 1 if is_scalar(result) else len(result)
    try:
        if role in FEATURE_ROLES:  # a series per feature (and bucket or category): counted, not read as one.
            # No categories or no missing values is a normal answer (a model without categorical
            # features); only an empty bucket answer warns as a selector that matches nothing.
            return series, (0.0 if series == 0 and role != FEATURE_ROLES[0] else None), None
        if role == HISTOGRAM:  # value: observations in the window (the +Inf bucket)
            return _histogram_answer(result, query, who=who, check=check, arm=arm)
        return series, number_of(result, query, check, arm), None
    except NoData:
        return series, (math.nan if series else None), None
    except (ConfigError, MetricsUnavailable) as exc:  # the answer's shape, not the wire: fix the query
        detail = str(exc).removeprefix(f"check {check!r}: ")
        raise ConfigError(f"{who}: {detail}") from exc


def _histogram_answer(result: object, query: str, *, who: str, check: str, arm: str
                      ) -> tuple[int, float | None, Histogram | None]:
    """(series, observations in the window (the +Inf bucket), histogram) of one arm's classic bucket
    answer to `query` (`sum by (le)`), read as `measure` reads it; NaN and no histogram for an answer
    without a usable bucket; ConfigError naming `who` for an answer of another shape."""
    series = 1 if is_scalar(result) else len(result) if isinstance(result, list) else 0
    try:
        pairs = bucket_pairs(result, query, check, arm)  # (+Inf only: see `_read_native_histograms`)
        hist = q.normalise(pairs, [le for le, _ in pairs])
        return series, hist.total, hist
    except NoData:
        return series, (math.nan if series else None), None
    except (ConfigError, MetricsUnavailable) as exc:  # the answer's shape, not the wire: fix the query
        detail = str(exc).removeprefix(f"check {check!r}: ")
        raise ConfigError(f"{who}: {detail}") from exc


def preflight_plan(policy: Policy, target: Target, window_s: int) -> list[tuple[str, str, str, str, str]]:
    """(where, check, arm, role, query) for every query of a look, in the order a look sends them."""
    out: list[tuple[str, str, str, str, str]] = []
    for i, check in enumerate(policy.checks):
        where = f"checks[{i}] {check.name!r}"
        try:
            plan = query_plan(policy, check, target, window_s=window_s)
        except ConfigError as exc:
            raise ConfigError(f"policy {where}: {exc}") from exc
        out += [(where, check.name, arm, role, query) for arm in q.ARMS for role, query in plan[arm].items()]
    try:
        counts = request_plan(policy, target, window_s=window_s)
    except ConfigError as exc:
        raise ConfigError(f"policy metrics: {exc}") from exc
    return out + [(REQUEST_COUNTS, "request_counts", arm, "requests", counts[arm]) for arm in q.ARMS]

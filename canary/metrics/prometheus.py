"""PrometheusProvider: the MetricsProvider that asks a real Prometheus.

It turns each check into the queries of `query_plan` and each answer into the
data the judge compares, so the judge only ever sees data or a named reason
for having none. The wire (retries, budgets, HTTP errors) is `client`'s; the
check before any traffic moves is `preflight`'s; this module is about meaning:

- an empty answer, NaN, or an arm with zero requests: `NoData` naming the
  check, the arm and the query;
- each arm's histogram keeps its own bucket bounds (the judge compares on the
  bounds both arms share; no count is invented at a bound one arm lacks), and
  each arm's NoData stays in its place (`answers.arms_pair`);
- a histogram with no classic `_bucket` series is read as a Prometheus native
  histogram (`native`), both arms on one grid when both are native.

Feature-missing is a gauge (a fraction per feature), not a counter, so it is
turned into `Counts(events=rate * n, total=n)` with n the arm's request count
over the same window: the expected number of requests missing a feature, which
the proportion tests can weigh by sample size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
import math

import structlog

from canary.errors import ConfigError, MetricsUnavailable, NoData, NotCountable
from canary.metrics import queries as q
from canary.metrics.answers import (NOT_A_COUNT, arm_name, arms_pair, both_or_raise, bucket_pairs, each_arm, is_scalar, keep_shared, not_a_count,
                                    number_of, shared_bounds)
from canary.metrics.base import PreflightReport
from canary.metrics.client import PrometheusClient, Rejected
from canary.metrics.preflight import preflight as run_preflight
from canary.metrics.query_plan import (FEATURE_ROLES, HELD, HISTOGRAM, HISTOGRAM_KINDS, ONE_QUERY_KINDS, PUSHED,
                                       RELABELLED, TARGETS, TWICE, UNSCRAPED, ArmsNative, Plan, arms_histograms_query,
                                       arms_native_query, arms_query, classic_buckets_query, query_plan, request_query,
                                       twice_parts)
from canary.metrics.features import feature_counts
from canary.metrics.native import (INF_ONLY_HINT, SHIFT_CELLS, NativeBuckets, combine, inf_only, native_buckets,
                                   observed)
from canary.model import ArmData, Counts, FeatureCounts, Histogram, Scalar, Target
from canary.policy import Check, Policy
from canary.throttle import Throttle

__all__ = ["PrometheusProvider"]

log = structlog.get_logger(__name__)


class PrometheusProvider(PrometheusClient):
    """Measures both arms of a rollout with instant queries against one Prometheus."""

    # -- the MetricsProvider protocol -------------------------------------------------

    def measure(
        self, policy: Policy, check: Check, target: Target, *, window_s: int, at: float | None = None
    ) -> tuple[ArmData | NoData, ArmData | NoData]:
        """(stable, canary) for one check. An arm without data is its own `NoData` in the pair, so
        that a limit on the canary alone (`max_ms`, `max_rate_pct`, `max_value`) is still judged when
        the stable series do not exist; raises NoData only when neither arm has data, and
        ConfigError / MetricsUnavailable for the whole check."""
        with self.about(target):  # a failed query's line names the rollout
            return self._measure(policy, check, target, window_s=window_s, at=at)

    def _measure(self, policy: Policy, check: Check, target: Target, *, window_s: int,
                 at: float | None) -> tuple[ArmData | NoData, ArmData | NoData]:
        plan = query_plan(policy, check, target, window_s=window_s)
        name = check.name
        twice = twice_parts(policy, check, target, window_s=window_s)
        if check.kind in HISTOGRAM_KINDS:
            scale = q.latency_metric(q.preset(policy.source_of(check)), name)[1] if check.kind == "latency" else 1.0
            look = _Together(self, plan, name, at,
                             native=arms_native_query(policy, check, target, window_s=window_s), twice=twice)
            pair = self._histograms({arm: plan[arm][HISTOGRAM] for arm in q.ARMS}, name, window_s, at, scale=scale,
                                    native_first=policy.metrics.histograms == "native",
                                    cells=0 if check.kind == "latency" else SHIFT_CELLS, together=look)
            if check.kind != "latency":
                pair = self._with_requests(pair[0], plan["stable"], name, "stable", window_s, at, together=look), \
                    self._with_requests(pair[1], plan["canary"], name, "canary", window_s, at, together=look)
            return _not_twice(pair, look.scraped_twice(), twice, name, self._quiet)
        if check.kind == "error_rate":
            return self._error_counts(plan, name, window_s, at, twice)
        if check.kind == "feature_missing":
            return self._missing_counts(plan, name, window_s, at, twice)
        if check.kind == "feature_drift":
            return self._features(plan, name, window_s, at, twice)
        if not twice:
            return arms_pair(lambda arm: self._custom(plan[arm], name, arm, window_s, at))
        # custom: its parts asked alone (`query_plan.twice_query_of`); `_not_twice` raises when neither arm has data
        pair = each_arm(lambda arm: self._custom(plan[arm], name, arm, window_s, at))
        got = q.split_answer(self.query(q.one_answer(twice), check=name, at=at), twice)
        return _unchecked(_not_twice(pair, got, twice, name, self._quiet), got, twice, name, self._quiet)

    def request_counts(
        self, policy: Policy, target: Target, *, window_s: int, at: float | None = None, check: str = "request_counts"
    ) -> tuple[float, float]:
        """(stable, canary) requests over the window, from ONE query (`query_plan.request_query`); NoData for an arm
        with none, NotCountable for a canary whose targets two scrape jobs read, or with a target down (`_not_twice`:
        the count is the pass floor and sets the pass level, decision 380); a stable arm read twice is NaN (decision
        399)."""
        stable, canary, _ = self.counted(policy, target, window_s=window_s, at=at, check=check)
        return stable, canary

    def counted(
        self, policy: Policy, target: Target, *, window_s: int, at: float | None = None, check: str = "request_counts"
    ) -> tuple[float, float, float | None]:
        """`request_counts`, and the seconds of the window Prometheus holds data of the counters for, from the same
        answer (`query_plan.HELD`): less than `window_s` where its data begin inside the window (restarted without
        its storage: `increase()` then counted from its first scrape on; decision 574), of the series the count sums, a
        recording rule's output too (decision 613); None where not told (no series, or a store without `held`)."""
        with self.about(target):
            answer, parts = self.ask_counts(policy, target, window_s,
                                            lambda query: self.query(query, check=check, at=at))
            got = q.split_answer(answer, parts)  # its "<arm>/requests": `request_plan`'s
        held = _held(got.get(HELD) or [], float(window_s))

        def count(arm: str) -> float:
            asked = parts[f"{arm}/requests"]
            return _answered_requests(got, arm, asked, check, window_s)

        twice = {key: part for key, part in parts.items() if not key.endswith("/requests") and key != HELD}
        stable, canary = _not_twice(each_arm(count), got, twice, check, self._quiet)
        if isinstance(canary, NoData):
            raise canary
        if isinstance(stable, NotCountable):
            # the stable arm read twice is NaN, not a count: promote and serve ask this for the canary's count (the
            # pass floor) and drop the stable's; raised for the pair, the canary's read 0 at every look, no pass
            # ever, where the checks read both arms soundly (of another source, or naming the job; decision 399)
            return math.nan, canary, held
        if isinstance(stable, NoData):
            raise stable
        return stable, canary, held

    # `query_plan.HELD`'s kind of query (a subquery of `timestamp()`) over one always-present series: what a store
    # without it refuses, and one that refused the request count for its size or load answers (decision 595)
    HELD_PROBE = q.held_query(["vector(0)"], 60.0)
    # the words a store gave when it refused `query_plan.HELD`'s subquery ("" while none did): the request count is
    # then asked without it, as before decision 574 (decision 593)
    held_refused = ""

    def ask_counts(self, policy: Policy, target: Target, window_s: float,
                   ask: Callable[[str], Any]) -> tuple[Any, dict[str, str]]:
        """`ask(query)` of the request-count query (`query_plan.request_query`) and its parts. A store that refuses
        it (Rejected: 400/422) is asked it again without its `held` part: a Prometheus-compatible store without
        subqueries or `timestamp()` refused the whole count, so every rollout was refused at preflight, on words
        naming a query of several KB. Where that one is answered, `held` is left out from then on, said once
        (`metrics.held_unsupported`): the look then takes the window as held, as before decision 574. Where it
        is refused too, its own refusal is raised: the query's fault, not `held`'s (decision 593). Where the
        store answers `HELD_PROBE`, it runs `held`'s subquery: the count was refused for its size or load (a 422
        "too many samples", a limit), that refusal is raised and `held` kept (decision 595)."""
        if not self.held_refused:
            query, parts = request_query(policy, target, window_s=window_s)
            try:
                return ask(query), parts
            except Rejected as exc:
                if self._runs_held(ask):  # refused for its size or load (a 422 "too many samples", a limit),
                    raise exc  # not for `held`: this look goes uncounted, `held` is kept (decision 595)
                plain, parts = request_query(policy, target, window_s=window_s, held=False)
                answer = ask(plain)
                self.held_refused = self.held_refused or str(exc).split("; query: ")[0][:300]
                log.warning("metrics.held_unsupported", error=self.held_refused,
                            note="this store refuses the request count's subquery that tells how much of a look's "
                                 "window it holds: asked without it from now on; a look takes its whole window as "
                                 "held (a store that lost its data mid-step is not noticed)")
                return answer, parts
        query, parts = request_query(policy, target, window_s=window_s, held=False)
        return ask(query), parts

    def _runs_held(self, ask: Callable[[str], Any]) -> bool:
        """Whether the store answers `HELD_PROBE`: one that refused the request count and runs this is not a store
        without `held`'s subquery (a transient overload is not given up on for the process; decision 595). A probe
        not answered (5xx, a timeout) tells nothing: taken as running it, so the count's own refusal is raised, in
        the store's words, and `held` kept; its failure raised instead masked them behind "could not be asked" over
        the probe's query, a transient outage (decision 615)."""
        try:
            ask(self.HELD_PROBE)
        except Rejected:
            return False
        except MetricsUnavailable:  # (said as `metrics.query_failed` by the client)
            return True
        return True

    def preflight(self, policy: Policy, target: Target) -> PreflightReport:
        """Ask Prometheus, once each, every query a look of this rollout will send (`metrics.preflight`)."""
        with self.about(target):
            return run_preflight(self, policy, target)

    # -- per kind ------------------------------------------------------------------------

    def _histograms(self, queries: dict[str, str], check: str, window_s: float, at: float | None, *,
                    scale: float = 1.0, native_first: bool = False, cells: int = 0,
                    together: _Together | None = None) -> tuple[Histogram | NoData, Histogram | NoData]:
        """Both arms' histograms over the window, classic `_bucket` series or Prometheus native ones.

        Each arm is read from its classic buckets, and an arm with no classic series as a native
        histogram (`native.native_buckets`); `native_first` (`metrics.histograms: native`) the other
        way round. Classic series with only `le="+Inf"` count as none when the arm has a native
        histogram: Prometheus before 2.47 ingests a native histogram that has no observations and a
        zero threshold of 0 as a classic one, so a canary before its first traffic leaves such a
        series in the window.
        When one arm is native and the other classic, the other form is asked too (the classic
        arm's native histogram; with `native_first`, the native arm's classic buckets) so that
        both are read in one form; then `native.combine` makes the pair (two native arms on one
        grid, prediction cells with `cells`; one arm of each form: the stable arm left out, so only
        limits on the canary alone are judged). Two classic arms keep their own bounds: the judge
        compares on the bounds both share, and a count at a bound an arm lacks is never invented
        (filling it with the count below would fail identical arms exporting different layouts).
        An arm's NoData stays in its place; NoData when neither has data.
        With `together` (a look's check), both arms' classic histograms are ONE query
        (`query_plan.arms_histograms_query`), and both arms' native histograms another
        (`query_plan.arms_native_query`), each asked once when first needed: asked one arm at a time through
        a load balancer over replicas, the two arms came from two replicas' windows (decisions 193, 195).
        Two arms read in one form are read from one answer; `together` records which form each arm was
        read in, so that a prediction_shift check's request counts come from that answer too."""
        got: dict[str, list[tuple[float, float]] | NativeBuckets | NoData] = {}
        for arm in q.ARMS:
            try:
                got[arm] = self._classic_or_native(queries[arm], check, arm, at, native_first=native_first,
                                                   together=together)
            except NoData as exc:
                got[arm] = exc
        natives = [arm for arm in q.ARMS if isinstance(got[arm], NativeBuckets)]
        if len(natives) == 1:
            native, other = natives[0], q.ARMS[1 - q.ARMS.index(natives[0])]
            if isinstance(got[other], list):  # one form for both where both arms have it
                try:
                    if native_first:  # the classic arm has no native histogram: the native arm's classic?
                        pairs = self._classic(queries[native], check, native, at, together=together)
                        if pairs is None or not observed(pairs):  # none, or an empty histogram's ghost
                            raise NoData("no classic buckets")
                        got[native] = pairs
                    else:
                        got[other] = self._native(queries[other], check, other, at, together=together)
                except NoData:
                    pass  # one arm of each form: `combine` leaves the stable arm out
                # (MetricsUnavailable: the look could not measure; an outage, not a form mismatch)
        if together is not None:
            together.read_as({arm: "native" if isinstance(got[arm], NativeBuckets) else "classic" for arm in q.ARMS
                              if not isinstance(got[arm], NoData)})
        out: list[Histogram | NoData] = []
        for arm, data in zip(q.ARMS, combine(got["stable"], got["canary"], check=check, cells=cells)):
            if isinstance(data, NoData):
                out.append(data)
                continue
            h = q.normalise(data, [le for le, _ in data], scale=scale, nan_unknown=True)
            out.append(h if h.total > 0 else NoData(
                f"check {check!r}: no observations for {arm_name(arm)} in {window_s}s; query: {queries[arm]}"))
        if all(isinstance(x, NoData) for x in out):
            raise NoData("; ".join(str(x) for x in out))
        return out[0], out[1]

    def _classic_or_native(self, query: str, check: str, arm: str, at: float | None, *, native_first: bool = False,
                           together: _Together | None = None) -> list[tuple[float, float]] | NativeBuckets:
        """The arm's classic (le, count) pairs; its native histogram when it has no classic series
        (`native_first`: its native histogram; its classic pairs when it has no native series).
        Classic series with only `le="+Inf"`, or without observations in the window, are no classic
        histogram where the arm has a native one: Prometheus before 2.47 ingests a histogram with no
        observations and a zero threshold of 0 as classic, at +Inf alone or, from a client that
        exports both forms, at every bound, all 0 (decision 51)."""
        if native_first:
            try:
                return self._native(query, check, arm, at, together=together)
            except NoData:
                pass
        pairs = self._classic(query, check, arm, at, together=together)
        if pairs is not None and observed(pairs):
            return pairs
        if not native_first:
            try:
                return self._native(query, check, arm, at, together=together)
            except NoData:
                pass
        if pairs is not None and not inf_only(pairs):
            return pairs  # classic buckets without observations, and no native histogram: no traffic yet
        if pairs is None:
            raise NoData(f"check {check!r}: no histogram series for {arm_name(arm)}, classic or native; "
                         f"query: {query}")
        if any(c > 0 for _, c in pairs):  # observations no bound can place
            raise NoData(f"check {check!r}: {arm_name(arm)} has {INF_ONLY_HINT}; query: {query}")
        # only the ghost of an empty native histogram (Prometheus < 2.47; decision 51): no traffic yet
        raise NoData(f"check {check!r}: no observations for {arm_name(arm)} (a `_bucket` series with only "
                     f"le=\"+Inf\" at 0, no native histogram); query: {query}")

    def _classic(self, query: str, check: str, arm: str, at: float | None, *, together: _Together | None = None
                 ) -> list[tuple[float, float]] | None:
        """The arm's classic (le, count) pairs on the bounds every one of its histograms with
        observations exports; None without series.

        `sum by (le)` over pods that export different layouts (a stable Deployment in the middle of
        its own update, a selector matching two versions) holds, at a bound only some pods export,
        only their counts: a distribution nobody observed. So the look also counts, per bound, the
        series with observations in the window that export it (`queries.series_count_query_of`),
        and a bound not all of them export is dropped, as the batched snapshot sums on the bounds
        every series shares (`delta._histogram_delta`). NoData when they share no finite bound.

        The sum and the count are ONE query (`query_plan.classic_buckets_query`): one Prometheus
        answers both over the same samples. Asked one after the other through a load balancer over
        replicas, the count could come from a replica restarted with empty storage, which does not
        count a pod whose observations all came before its restart, and keep a bound that pod lacks
        while the other replica's sum holds its counts at every other bound (decision 188)."""
        combined = classic_buckets_query(query)
        if combined is None:
            result = self.query(query, check=check, arm=arm, at=at)
            if not result and not is_scalar(result):
                return None
            return _cumulative(bucket_pairs(result, query, check, arm), check, arm, query)
        one, parts = combined
        both = together.classic() if together is not None else None
        if both is not None:  # both arms' in one answer (decision 193)
            got = {key: both[f"{arm}/{key}"] for key in parts}
        else:
            got = q.split_answer(self.query(one, check=check, arm=arm, at=at), parts)
        if not got["buckets"]:
            return None
        pairs = bucket_pairs(got["buckets"], query, check, arm)
        counting = parts["count"]
        if inf_only(pairs):
            return _cumulative(pairs, check, arm, query)
        shared = shared_bounds(got["count"], counting, check, arm)
        if shared is None:  # no histogram with observations in the window
            return _cumulative(pairs, check, arm, query)
        kept = keep_shared(pairs, shared)
        if kept is None:
            raise NoData(f"check {check!r}: the series of {arm_name(arm)} share no finite bucket bound (pods "
                         f"exporting different layouts?); queries: {query}; {counting}")
        return _cumulative(kept, check, arm, query)

    def _native(self, query: str, check: str, arm: str, at: float | None, *, together: _Together | None = None
                ) -> NativeBuckets:
        """The arm's native histogram over the window (`native.native_buckets`: NoData for none). With
        `together`, from the answer holding both arms' (`query_plan.arms_native_query`, decision 195): an
        arm with no sample there is NoData, never an empty histogram; errors name the arm's own query."""
        native = q.native_query_of(query)
        if native is None:
            raise NoData(f"check {check!r}: no histogram series for {arm_name(arm)}; query: {query}")
        both = together.native() if together is not None else None
        if both is not None:
            return native_buckets(both[arm], native, check, arm)
        return native_buckets(self.query(native, check=check, arm=arm, at=at), native, check, arm)

    def _requests(self, query: str, check: str, arm: str, window_s: float, at: float | None) -> float:
        return _request_count(number_of(self.query(query, check=check, arm=arm, at=at), query, check, arm,
                                        count="requests"), query, check, arm, window_s)

    def _with_requests(self, data: Histogram | NoData, plan: dict[str, str], check: str, arm: str,
                       window_s: float, at: float | None, *, together: _Together | None = None) -> Histogram | NoData:
        """A prediction histogram with the arm's request count over the window (0 when the request
        counter has no series: the floor, `min_canary_requests`, is then not met, never met by rows; NotCountable
        in the arm's place where that count is none: +Inf, NaN, negative).
        With `together`, the count is from the answer the arm's histogram was read from (both arms' classic
        histograms, or both arms' native ones: decisions 193, 195)."""
        if isinstance(data, NoData):
            return data
        try:
            both = together.requests(arm) if together is not None else None
            if both is not None:
                query = plan["requests"]
                n = _answered_requests(both, arm, query, check, window_s)
            else:
                n = self._requests(plan["requests"], check, arm, window_s, at)
        except NotCountable as exc:  # its requests count nothing (+Inf, NaN): the arm is not countable, not 0 requests,
            return exc  # as the batched path says it (decision 1051)
        except NoData:
            n = 0.0
        return dataclasses.replace(data, requests=n)

    def _error_counts(self, plan: dict[str, dict[str, str]], check: str, window_s: float,
                      at: float | None, twice: dict[str, str]) -> tuple[Counts | NoData, Counts | NoData]:
        """Both arms' requests and failed requests over the window, from ONE query (`queries.one_answer`):
        one Prometheus answers all four at one instant. Asked one by one through a load balancer over
        replicas, each could come from another replica, and a replica restarted with empty storage counts
        only the part of the window it has: requests from it and errors from the other read a good canary
        at 1% as 5.4%, the other way round a canary at 10% as 1.9% (decision 175). Each arm's NoData in its
        place (no request series, or none in the window); NoData when neither arm has requests."""
        query, parts = arms_query(plan, ONE_QUERY_KINDS["error_rate"], twice)
        got = q.split_answer(self.query(query, check=check, at=at), parts)

        def counts(arm: str) -> Counts:
            query = plan[arm]["requests"]
            total = _answered_requests(got, arm, query, check, window_s)
            errors = number_of(got[f"{arm}/errors"], plan[arm]["errors"], check, arm, count="errors")
            if not_a_count(errors):  # clamped below: +Inf read as every request failed (a rollback), a negative
                # count as none failed (a pass); -0.5 < errors < 0 is extrapolation's hair
                raise NotCountable(f"check {check!r}: Prometheus answered {errors} errors for {arm_name(arm)} in "
                                   f"{window_s}s, {NOT_A_COUNT}; query: {plan[arm]['errors']}")
            # the two counters are extrapolated separately; errors may overshoot by a hair
            return Counts(events=min(max(errors, 0.0), total), total=total)

        return _not_twice(arms_pair(counts), got, twice, check, self._quiet)

    def _missing_counts(self, plan: dict[str, dict[str, str]], check: str, window_s: float,
                        at: float | None, twice: dict[str, str]) -> tuple[Counts | NoData, Counts | NoData]:
        """Both arms' mean feature-missing fraction (0..1) times their requests over the window: the
        expected number of requests missing a feature out of the requests, `Counts(rate * n, n)`. The
        four numbers are ONE query (`query_plan.arms_query`), as an error_rate check's (decision 175):
        asked apart through a load balancer over replicas, a fraction from one replica was multiplied by
        the requests of the other, whose history may have a gap (restarted with empty storage), and the
        two arms compared over two replicas' windows (decision 189). ConfigError for a fraction outside
        0..1 (a percentage); each arm's NoData in its place; NoData when neither arm has data."""
        query, parts = arms_query(plan, ONE_QUERY_KINDS["feature_missing"], twice)
        got = q.split_answer(self.query(query, check=check, at=at), parts)

        def counts(arm: str) -> Counts:
            gauge = plan[arm]["feature_missing"]
            rate = number_of(got[f"{arm}/feature_missing"], gauge, check, arm)
            if rate < 0 or rate > 1 + 1e-9:
                raise ConfigError(
                    f"check {check!r}: the feature-missing gauge must be a fraction 0..1, got {rate:g} for "
                    f"{arm_name(arm)} (exported as a percentage?); query: {gauge}"
                )
            requests = plan[arm]["requests"]
            n = _answered_requests(got, arm, requests, check, window_s)
            return Counts(events=min(rate, 1.0) * n, total=n)

        return _not_twice(arms_pair(counts), got, twice, check, self._quiet)

    def _features(self, plan: dict[str, dict[str, str]], check: str, window_s: float, at: float | None,
                  twice: dict[str, str]) -> tuple[FeatureCounts | NoData, FeatureCounts | NoData]:
        """Both arms' distributions of each feature (values, categories, missing) over the window and their
        requests, from ONE query (`query_plan.arms_query`) whatever the number of features. Asked as three
        queries per arm (and the requests), behind a load balancer over Prometheus replicas an arm's categories
        came from one replica and its missing count from the other, one restarted with empty storage: a stable
        arm 30% missing read 63% or 10%, a missing cell the canary was judged against (decision 631; 175 for
        the other checks, 623 for `drift check`). Each arm's NoData in its place; NoData when neither has data."""
        query, parts = arms_query(plan, ONE_QUERY_KINDS["feature_drift"], twice)
        got = q.split_answer(self.query(query, check=check, at=at), parts)

        def counts(arm: str) -> FeatureCounts:
            answers = {role: got[f"{arm}/{role}"] for role in FEATURE_ROLES}
            data = feature_counts(answers, queries=plan[arm], check=check, arm=arm, window_s=window_s)
            requests = plan[arm]["requests"]
            try:  # rows are not requests (a batched request sends many): the floor is compared with requests
                n = _answered_requests(got, arm, requests, check, window_s)
            except NoData:
                n = 0.0
            return dataclasses.replace(data, requests=n)

        return _not_twice(arms_pair(counts), got, twice, check, self._quiet)

    def _custom(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Scalar:
        value = self.scalar(plan["custom"], check=check, arm=arm, at=at)
        try:
            n = self._requests(plan["requests"], check, arm, window_s, at)
        except NoData:
            n = math.nan  # the custom number stands on its own; n is only evidence
        return Scalar(value=value, n=n)


class _Together:
    """One look's histogram check: both arms' classic histograms, with their series counts and a
    prediction_shift check's request counts, as ONE query (`query_plan.arms_histograms_query`, decision
    193), and both arms' native histograms, with those request counts, as another (`query_plan.
    arms_native_query`, decision 195); each asked once, when first needed, and split: `classic()` into
    {"<arm>/<role>": series}, `native()` into {arm: series}. Either is None when the plan's queries have
    no such form (each arm then asks its own)."""

    def __init__(self, provider: PrometheusProvider, plan: Plan, check: str, at: float | None, *,
                 native: ArmsNative | None = None, twice: dict[str, str] | None = None) -> None:
        self._provider, self._check, self._at = provider, check, at
        self._twice = dict(twice or {})  # `query_plan.twice_parts`, a part of each answer asked
        self._plan = arms_histograms_query(plan, twice)
        self._native_plan = native
        self._got: dict[str, list[object]] | None = None
        self._native: tuple[dict[str, list[object]], dict[str, list[object]]] | None = None
        self._read: dict[str, str] = {}  # arm -> the form its histogram was read in

    def classic(self) -> dict[str, list[object]] | None:
        if self._plan is not None and self._got is None:
            one, parts = self._plan
            self._got = q.split_answer(self._provider.query(one, check=self._check, at=self._at), parts)
        return self._got

    def native(self) -> dict[str, list[object]] | None:
        """Both arms' native histogram samples, {arm: series} ([] for an arm with none)."""
        plan = self._native_plan
        if plan is not None and self._native is None:
            answer = self._provider.query(plan.query, check=self._check, at=self._at)
            self._native = q.split_arms(answer, plan.arm_label, plan.versions, plan.parts)
        return None if self._native is None else self._native[0]

    def scraped_twice(self) -> dict[str, list[object]]:
        """The `query_plan.twice_parts` series of every answer asked (an arm's targets two scrape jobs read)."""
        out: dict[str, list[object]] = {key: [] for key in self._twice}
        for got in (self._got, None if self._native is None else self._native[1]):
            for key in out:
                out[key] += (got or {}).get(key, [])
        return out

    def read_as(self, forms: dict[str, str]) -> None:
        """Which form ("classic", "native") each arm's histogram was read in (`_histograms`)."""
        self._read = dict(forms)

    def requests(self, arm: str) -> dict[str, list[object]] | None:
        """Both arms' request counts ({"<arm>/requests": series}) from the answer `arm`'s histogram was
        read from; None when that answer was not asked (each arm then asks its own)."""
        if self._read.get(arm) == "native":
            return None if self._native is None else self._native[1]
        return self._got


def _held(series: list[object], window_s: float) -> float | None:
    """`query_plan.HELD`'s answer: the seconds of the window Prometheus holds (at most `window_s`), None where it
    answered none or no number."""
    try:
        held = float(series[0]["value"][1]) if len(series) == 1 else math.nan  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return min(window_s, max(0.0, held)) if math.isfinite(held) else None


def _not_twice(pair: tuple[Any, Any], got: dict[str, list[object]], twice: dict[str, str], check: str,
               quiet: Throttle | None = None) -> tuple[Any, Any]:
    """`pair`, with an arm one of whose targets two scrape jobs read (a `query_plan.twice_parts` answer that is not
    empty) as NotCountable (a NoData): its series are summed twice (a pod scraped by a ServiceMonitor and by the
    annotation job), so its counts are twice the requests it served, more evidence than there is; either arm (a
    stable arm counted twice narrows its interval as much). And the canary arm, where it counted requests, one of
    whose targets is down with its series gone (`unscraped`): whatever that pod serves, errors included, is in no
    count (decision 354). Not the stable arm: a stable pod down is most often one that serves nothing (not Ready:
    restarting, loading its models, crash-looping), and one that serves unseen only makes stable look better than
    it is, which weighs against the canary, never for it; a good canary was rolled back "no verdict" for a stable
    pod that served nothing. Not a canary arm that counted nothing either: that is the unrouted rule's (every pod
    gone, `analysis.unrouted`), which NotCountable would silence. Either arm whose series of a metric are both pushed
    to a Pushgateway and read otherwise (`pushed`, decision 483), by a group pushed within the window (decision 515).
    Each said in one line (`metrics.scraped_twice`, `metrics.arm_pushed`, `metrics.target_down`), once per cause and
    then every minute with `repeated` (`quiet`); NoData when neither arm is left."""
    out = list(pair)
    for i, arm in enumerate(q.ARMS):
        key, down = f"{arm}/{TWICE}", f"{arm}/{UNSCRAPED}"
        instances = sorted(_twice_instances(got.get(key) or []))
        unscraped = sorted(_twice_instances(got.get(down) or [], at_least=1))
        if instances:
            _say(quiet, "metrics.scraped_twice", check=check, arm=arm, instances=instances[:5], query=twice[key])
            out[i] = NotCountable(f"check {check!r}: {arm_name(arm)}'s series are scraped by two jobs (host "
                                  f"{', '.join(instances[:3])}): summed, its requests count twice; set metrics.labels: "
                                  f"{{job: ...}} to the one job to read ({{exported_job: ...}} where a federating "
                                  f"target re-exports it); query: {twice[key]}")
        elif pushed := sorted(_twice_instances(got.get(f"{arm}/{PUSHED}") or [], at_least=1)):
            # pushed to a Pushgateway and read otherwise: a pod doing both is summed twice, and nothing ties the
            # pushed group to the pod (decision 483); only groups pushed within the window, the others flat in it
            # (`queries.pushed_in`, decision 515)
            _say(quiet, "metrics.arm_pushed", check=check, arm=arm, instances=pushed[:5], query=twice[f"{arm}/{PUSHED}"])
            out[i] = NotCountable(f"check {check!r}: {arm_name(arm)}'s series are both pushed to a Pushgateway (pushed "
                                  f"job {', '.join(pushed[:3])}, pushed within the window) and scraped (or federated): "
                                  f"a pod that pushes and is scraped is summed twice, and which pods do cannot be "
                                  f"told; set metrics.labels: {{job: ...}} to the one job to read ({{exported_job: "
                                  f"...}} where the Pushgateway is scraped with honor_labels: false), or stop the push "
                                  f"(a group not pushed within the window is not refused); query: "
                                  f"{twice[f'{arm}/{PUSHED}']}")
        elif relabelled := sorted(_twice_instances(got.get(f"{arm}/{RELABELLED}") or [], at_least=1)):
            # a target label overrode the exporter's model or version (decision 435): series of another version read
            # as this arm's (either arm: the stable holding the canary's is no baseline either)
            _say(quiet, "metrics.arm_relabelled", check=check, arm=arm, instances=relabelled[:5],
                 query=twice[f"{arm}/{RELABELLED}"])
            out[i] = NotCountable(f"check {check!r}: {arm_name(arm)}'s series include ones whose exporter said another "
                                  f"model or version (an `exported_` label: instance {', '.join(relabelled[:3])}): a "
                                  f"scrape target label of that name (a pod label copied by labelmap, honor_labels: "
                                  f"false) overrode the exporter's, so another arm's requests are read as this one's; "
                                  f"drop or rename that target label; query: {twice[f'{arm}/{RELABELLED}']}")
        elif unscraped and arm == "canary" and not isinstance(out[i], BaseException):
            _say(quiet, "metrics.target_down", check=check, arm=arm, instances=unscraped[:5], query=twice[down])
            out[i] = NotCountable(f"check {check!r}: {arm_name(arm)} has a scrape target down (up == 0; instance "
                                  f"{', '.join(unscraped[:3])}) whose series Prometheus held within the hour (gone "
                                  f"now, or answered at their last sample: no staleness marker): what that pod serves, "
                                  f"errors included, is in no count; query: "
                                  f"{twice[down]}")
    return both_or_raise((out[0], out[1]))


def _unchecked(pair: tuple[Any, Any], got: dict[str, list[object]], parts: dict[str, str], check: str,
               quiet: Throttle | None = None) -> tuple[Any, Any]:
    """A custom check's `pair`, each arm's Scalar marked `unchecked` where none of the series behind it (its
    PromQL's selectors, the requests its n counts) comes from a scrape target (`query_plan.TARGETS` answered
    nothing): a recording rule's output has no `instance`, so a pod its rule summed twice, or lost to a target
    down, cannot be seen here (decision 381). Said in the check's reason and once in `metrics.scrape_unchecked`."""
    out = list(pair)
    for i, arm in enumerate(q.ARMS):
        key = f"{arm}/{TARGETS}"
        if key in parts and isinstance(out[i], Scalar) and not got.get(key):
            _say(quiet, "metrics.scrape_unchecked", check=check, arm=arm, instances=[], query=parts[key])
            out[i] = dataclasses.replace(out[i], unchecked="its series name no scrape target now (no `instance`: "
                                                           "a recording rule's output, or none exported); a pod read "
                                                           "by two jobs, or down, cannot be seen")
    return out[0], out[1]


def _say(quiet: Throttle | None, event: str, *, check: str, arm: str, instances: list[str], query: str) -> None:
    """`event`'s warning, once per (event, check, arm, instances), then every REPEAT_LOG_S with `repeated`: every
    look of every check said it again (and the controller's every snapshot), a log flood for one scrape config."""
    repeated = 0 if quiet is None else quiet.due((event, check, arm), " ".join(instances))
    if repeated is not None:
        log.warning(event, check=check, arm=arm, instances=instances, query=query, repeated=repeated)


def _twice_instances(series: list[object], *, at_least: float = 2) -> set[str]:
    """The targets a `queries.scraped_twice_query` (hosts, `queries.HOST_LABEL`) or `unscraped_query` (`instance`s,
    `at_least=1`) answer names: series with one and a count of at least `at_least` (anything else is no such
    answer)."""
    out: set[str] = set()
    for s in series:
        metric = s.get("metric") if isinstance(s, dict) else None
        value = s.get("value") if isinstance(s, dict) else None
        try:
            jobs = float(value[1]) if isinstance(value, list) and len(value) == 2 else 0.0
        except (TypeError, ValueError):
            jobs = 0.0
        where = metric.get(q.HOST_LABEL) or metric.get("instance") if isinstance(metric, dict) else None
        if where and jobs >= at_least:
            out.add(str(where))
    return out


def _answered_requests(got: dict[str, list[object]], arm: str, query: str, check: str, window_s: float) -> float:
    """`_request_count` of the arm's "<arm>/requests" part of a split answer (`queries.split_answer`)."""
    return _request_count(number_of(got[f"{arm}/requests"], query, check, arm, count="requests"), query, check, arm,
                          window_s)


def _request_count(n: float, query: str, check: str, arm: str, window_s: float) -> float:
    """`n`, an arm's requests over the window; NotCountable for NaN, +Inf or a negative count (`not_a_count`: Prometheus
    answered, so never MetricsUnavailable, an outage; as the batched path says it, decision 1050), NoData for none."""
    if not_a_count(n):  # a counter that overflowed or jumped (its increase() summed to +Inf), an exporter's NaN
        raise NotCountable(f"check {check!r}: Prometheus answered {n} requests for {arm_name(arm)} in "
                           f"{window_s}s, {NOT_A_COUNT}; query: {query}")
    if n <= 0:
        raise NoData(f"check {check!r}: no requests for {arm_name(arm)} in {window_s}s; query: {query}")
    return n


def _cumulative(pairs: list[tuple[float, float]], check: str, arm: str, query: str) -> list[tuple[float, float]]:
    """`pairs`, when they are cumulative counts of one histogram; NotCountable for a NaN +Inf bucket (the total:
    decision 1050), MetricsUnavailable for a higher bucket counting far fewer than a lower one
    (`queries.not_cumulative`). Repaired by a running
    maximum they would be another distribution: a canary whose le="0.01" counted every request read as
    p95 9.5 ms and passed. A NaN bucket below +Inf is kept NaN: only that bound is unknown, which the judge
    leaves out and names (`judge.countable_buckets`, decision 1053); the others are checked among themselves."""
    if any(math.isinf(le) and math.isnan(count) for le, count in pairs):  # Prometheus answered, and could not
        # compute the total: not a count, no outage (1050)
        raise NotCountable(f"check {check!r}: the histogram of {arm_name(arm)} counts NaN in bucket le=+Inf (its "
                           f"total), not a count (an exporter's NaN); query: {query}")
    broken = q.not_cumulative([(le, count) for le, count in pairs if not math.isnan(count)])
    if broken:
        raise MetricsUnavailable(f"check {check!r}: the histogram of {arm_name(arm)} is not cumulative ({broken}): "
                                 f"a broken exporter or recording rule; query: {query}")
    return pairs

"""PrometheusProvider: the MetricsProvider that asks a real Prometheus.

It turns each check into the queries of `query_plan` and each answer into the
data the judge compares, so the judge only ever sees data or a named reason
for having none. The wire (retries, budgets, HTTP errors) is `client`'s; the
check before any traffic moves is `preflight`'s; this module is about meaning:

- an empty answer, NaN, or an arm with zero requests: `NoData` naming the
  check, the arm and the query;
- each arm's histogram keeps its own bucket bounds (the judge compares on the
  bounds both arms share; no count is invented at a bound one arm lacks), and
  each arm's NoData stays in its place (`answers.arms_pair`).

Feature-missing is a gauge (a fraction per feature), not a counter, so it is
turned into `Counts(events=rate * n, total=n)` with n the arm's request count
over the same window: the expected number of requests missing a feature, which
the proportion tests can weigh by sample size.
"""

from __future__ import annotations

import math

from canary.errors import ConfigError, NoData
from canary.metrics import queries as q
from canary.metrics.answers import arm_name, arms_pair, bucket_pairs
from canary.metrics.base import PreflightReport
from canary.metrics.client import PrometheusClient
from canary.metrics.preflight import preflight as run_preflight
from canary.metrics.query_plan import HISTOGRAM, query_plan, request_plan
from canary.metrics.features import feature_counts
from canary.model import ArmData, Counts, FeatureCounts, Histogram, Scalar, Target
from canary.policy import Check, Policy

__all__ = ["PrometheusProvider"]


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
        plan = query_plan(policy, check, target, window_s=window_s)
        name = check.name
        if check.kind in ("latency", "prediction_shift"):
            scale = q.latency_metric(q.preset(policy.source_of(check)), name)[1] if check.kind == "latency" else 1.0
            return arms_pair(lambda arm: self._histogram(plan[arm][HISTOGRAM], name, arm, window_s, at, scale=scale))
        per_arm = {"error_rate": self._error_counts, "feature_missing": self._missing_counts,
                   "feature_drift": self._features, "custom": self._custom}[check.kind]
        return arms_pair(lambda arm: per_arm(plan[arm], name, arm, window_s, at))

    def request_counts(
        self, policy: Policy, target: Target, *, window_s: int, at: float | None = None, check: str = "request_counts"
    ) -> tuple[float, float]:
        plan = request_plan(policy, target, window_s=window_s)
        out = [self._requests(plan[arm], check, arm, window_s, at) for arm in q.ARMS]
        return out[0], out[1]

    def preflight(self, policy: Policy, target: Target) -> PreflightReport:
        """Ask Prometheus, once each, every query a look of this rollout will send (`metrics.preflight`)."""
        return run_preflight(self, policy, target)

    # -- per kind ------------------------------------------------------------------------

    def _histogram(
        self, query: str, check: str, arm: str, window_s: float, at: float | None, *, scale: float = 1.0
    ) -> Histogram:
        """One arm on its own bounds: counts exist only at the bounds an arm exports. The judge
        compares the arms on the bounds they share; filling a bound one arm lacks with the count
        below it would invent observations (and fail identical arms exporting different layouts)."""
        raw = self._buckets(query, check, arm, at)
        h = q.normalise(raw, [le for le, _ in raw], scale=scale)
        if h.total <= 0:
            raise NoData(f"check {check!r}: no observations for {arm_name(arm)} in {window_s}s; query: {query}")
        return h

    def _requests(self, query: str, check: str, arm: str, window_s: float, at: float | None) -> float:
        n = self.scalar(query, check=check, arm=arm, at=at)
        if n <= 0:
            raise NoData(f"check {check!r}: no requests for {arm_name(arm)} in {window_s}s; query: {query}")
        return n

    def _error_counts(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Counts:
        total = self._requests(plan["requests"], check, arm, window_s, at)
        errors = self.scalar(plan["errors"], check=check, arm=arm, at=at)
        # the two counters are extrapolated separately; errors may overshoot by a hair
        return Counts(events=min(max(errors, 0.0), total), total=total)

    def _missing_counts(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Counts:
        query = plan["feature_missing"]
        rate = self.scalar(query, check=check, arm=arm, at=at)
        if rate < 0 or rate > 1 + 1e-9:
            raise ConfigError(
                f"check {check!r}: the feature-missing gauge must be a fraction 0..1, got {rate:g} for {arm_name(arm)} "
                f"(exported as a percentage?); query: {query}"
            )
        n = self._requests(plan["requests"], check, arm, window_s, at)
        return Counts(events=min(rate, 1.0) * n, total=n)

    def _features(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None
                  ) -> FeatureCounts:
        """Each feature's distribution (values, categories, missing) over the window: three queries
        per arm whatever the number of features."""
        answers = {role: self.query(query, check=check, arm=arm, at=at) for role, query in plan.items()}
        return feature_counts(answers, queries=plan, check=check, arm=arm, window_s=window_s)

    def _custom(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Scalar:
        value = self.scalar(plan["custom"], check=check, arm=arm, at=at)
        try:
            n = self._requests(plan["requests"], check, arm, window_s, at)
        except NoData:
            n = math.nan  # the custom number stands on its own; n is only evidence
        return Scalar(value=value, n=n)

    def _buckets(self, query: str, check: str, arm: str, at: float | None) -> list[tuple[float, float]]:
        return bucket_pairs(self.query(query, check=check, arm=arm, at=at), query, check, arm)

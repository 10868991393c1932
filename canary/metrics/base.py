"""The MetricsProvider protocol: one question, asked per check and arm pair.

After Flagger's two-method provider: an empty or NaN answer becomes a named
`NoData`, a failed request a `MetricsUnavailable` (after bounded retries) --
never a pass. A third method, `preflight`, asks every query of a policy once
before any traffic moves, so a query Prometheus cannot run is a ConfigError
(exit 2, nothing touched) rather than an abort after the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from canary.model import ArmData, Target

if TYPE_CHECKING:  # annotations only: the policy models (pydantic) load where a policy is read (decision 965)
    from canary.policy import Check, Policy

_ARMS = ("stable", "canary")
REQUEST_COUNTS = "request counts"  # the `where` of `request_plan`'s queries in a preflight
# `query_plan`'s role of a check's own request count (its n, `min_canary_requests`), beside the queries the
# check compares: that count answering says nothing of whether the check can compare
COUNTING_ROLE = "requests"


@dataclass(frozen=True)
class PreflightQuery:
    """One query a rollout will send, and how Prometheus answered it at preflight.

    `where` names it in the policy ("checks[1] 'errors'", or "request counts"),
    `check` is the name `measure` reports it under, `series` the number of
    series in the answer (a scalar counts as 1), `value` the number when the
    answer is one number (None for histograms and empty answers), `role` its
    role in `query_plan` ("histogram", "custom", "requests", ...; "" not known).
    """

    where: str
    check: str
    arm: str
    query: str
    series: int
    value: float | None = None
    role: str = ""

    def __post_init__(self) -> None:
        if self.arm not in _ARMS:
            raise ValueError(f"arm must be 'stable' or 'canary', got {self.arm!r}")
        if self.series < 0:
            raise ValueError(f"series must be >= 0, got {self.series}")

    @property
    def no_data(self) -> bool:
        """No series, or NaN: what `measure` would call NoData for this query."""
        return self.series == 0 or (self.value is not None and math.isnan(self.value))


@dataclass(frozen=True)
class PreflightReport:
    """Every query of a policy, each answered once without an error.

    Returned only when nothing blocks a rollout (errors are raised, never
    reported). Empty answers are not errors -- the canary has no series before
    it gets traffic -- but an empty STABLE arm usually means a label or value
    that matches nothing: see `empty_stable` and `warnings`.
    """

    url: str
    window_s: int
    queries: tuple[PreflightQuery, ...]  # in the order a look sends them; equal queries share one request
    sent: int  # distinct queries sent, the known-answer probe included (retries not counted)
    elapsed_s: float
    # latency checks whose bucket layout cannot show a canary as fast as stable within the relative
    # limit or below the ceiling ("checks[0] 'latency-p95': stable p95 in (100, 250] ms, ..."): the
    # stable's, and the canary's where its series exist already on other buckets
    unresolvable: tuple[str, ...] = ()
    # histogram queries answered by a Prometheus native histogram ("checks[0] 'latency-p95' (stable)")
    native: tuple[str, ...] = ()
    # stable arms whose pods export bucket layouts sharing no finite bound (one line each)
    layouts: tuple[str, ...] = ()

    @property
    def empty_stable(self) -> tuple[PreflightQuery, ...]:
        return tuple(x for x in self.queries if x.arm == "stable" and x.no_data)

    def to_dict(self) -> dict[str, Any]:
        """Log fields (``metrics.preflight_passed``): counts and the empty stable queries by name."""
        return {"url": self.url, "window_s": self.window_s, "queries": len(self.queries), "sent": self.sent,
                "elapsed_s": round(self.elapsed_s, 3),
                "empty_stable": [f"{x.where} ({x.query})" for x in self.empty_stable],
                "unresolvable": list(self.unresolvable), "native_histograms": list(self.native),
                "layouts": list(self.layouts)}

    def blind(self) -> tuple[str, ...]:
        """The policy places (`where`: "checks[0] 'latency-p95'", "request counts") whose stable arm
        found nothing over the window, when that leaves a rollout nothing to judge; () otherwise.

        Blind (decision 110): the stable request count is empty or 0 (no step can pass on the count
        the canary's is read with), or every check's stable queries are all empty (no check can
        compare). A check's own request count (`COUNTING_ROLE`: a custom, prediction_shift,
        feature_missing or feature_drift check's n) does not make it compare: a custom query or a
        prediction `metric` that matches nothing is empty whatever that count says (decision 260).
        Some checks empty, the others not, is no refusal: a custom query or a hard check's absolute
        limit may rightly find nothing on stable (`warnings` names them)."""
        empty = self._empty()
        checks = [w for w in empty if w != REQUEST_COUNTS]
        if empty.get(REQUEST_COUNTS) or (checks and all(empty[w] for w in checks)):
            return tuple(w for w, none in empty.items() if none)
        return ()

    def empty_checks(self) -> tuple[str, ...]:
        """The checks (`where`, in policy order) whose stable queries found nothing over the window, a
        check's own request count aside (see `blind`)."""
        return tuple(w for w, none in self._empty().items() if none and w != REQUEST_COUNTS)

    def _empty(self) -> dict[str, bool]:
        """Per place (`where`): did every stable query it reads find nothing? For a check, the queries it
        compares; for the request counts, its query or a 0."""
        empty: dict[str, bool] = {}
        compared: dict[str, bool] = {}  # per check: are the queries it compares all empty?
        for x in self.queries:
            if x.arm == "stable":
                none = x.no_data or (x.where == REQUEST_COUNTS and x.value == 0)
                empty[x.where] = empty.get(x.where, True) and none
                if x.where != REQUEST_COUNTS and x.role != COUNTING_ROLE:
                    compared[x.where] = compared.get(x.where, True) and none
        return {**empty, **compared}

    def warnings(self) -> tuple[str, ...]:
        """One line per stable-arm query that found nothing over the window (`layouts` and
        `unresolvable` are warnings of their own)."""
        return tuple(
            f"{x.where}: no data for the stable arm over the last {self.window_s}s "
            f"(a label or value that matches nothing?); query: {x.query}"
            for x in self.empty_stable
        )


class MetricsProvider(Protocol):
    def measure(self, policy: Policy, check: Check, target: Target, *, window_s: int) -> tuple[ArmData, ArmData]:
        """(stable, canary) data for one check over the last window_s seconds.
        Histogram for latency (bounds in ms, each arm on its own bounds) and
        prediction_shift, Counts for error_rate and feature_missing, Scalar for
        custom. An arm without data may be its own `NoData` in the pair (a limit
        on the canary alone is then still judged); raises NoData when neither arm
        has data, ConfigError / MetricsUnavailable for the whole check."""

    def request_counts(self, policy: Policy, target: Target, *, window_s: int) -> tuple[float, float]:
        """(stable, canary) number of requests over the window."""

    def preflight(self, policy: Policy, target: Target) -> PreflightReport:
        """Send every query `measure` and `request_counts` will send for this
        policy, both arms, once. Raises ConfigError for anything that cannot
        work (a query the server rejects, a URL that is not a metrics API, bad
        credentials), MetricsUnavailable when the server cannot be asked now."""


def counted_requests(metrics: Any, policy: Policy, target: Target, *, window_s: int,
                     **at: Any) -> tuple[float, float, float | None]:
    """(stable, canary) requests over the window and the seconds of it Prometheus holds data of them for (None: not
    told): the provider's `counted` where it has one (`PrometheusProvider.counted`, decision 574), else its
    `request_counts` (a fake, a provider that reads no Prometheus). `at`: the evaluation time, for a caller that
    pins one (`at=`)."""
    ask = getattr(metrics, "counted", None)
    if ask is None:
        stable, canary = metrics.request_counts(policy, target, window_s=window_s, **at)
        return stable, canary, None
    return ask(policy, target, window_s=window_s, **at)

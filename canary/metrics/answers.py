"""Reading Prometheus's answers: one number, a histogram's buckets, or a named reason for neither.

Shared by the measuring path (`PrometheusProvider`) and `preflight`, so an
answer preflight accepts is one a look can read, and the same empty, NaN or
misshapen answer gets the same `NoData`/`ConfigError` either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from canary.errors import ConfigError, MetricsUnavailable, NoData, NotCountable
from canary.metrics import queries as q


def is_scalar(result: Any) -> bool:
    """A scalar answer: one [time, "value"] pair rather than a list of series."""
    return isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict)


def well_formed(result: Any) -> bool:
    """data.result as Prometheus writes it: a [time, "value"] pair, or a list of series (samples in
    "value"/"values", or native histogram samples in "histogram"/"histograms", Prometheus 2.40+)."""
    if is_scalar(result):
        return isinstance(result[1], str)
    return isinstance(result, list) and all(
        isinstance(s, dict) and isinstance(s.get("metric"), dict)
        and any(k in s for k in ("value", "values", "histogram", "histograms")) for s in result
    )


def number(pair: Any) -> float | None:
    """The value of a [time, "value"] pair; None when it is not one."""
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def arm_name(arm: str) -> str:
    return f"the {arm} arm" if arm else "the query"


# why a request or error count Prometheus answered counts nothing, in every measuring path's words (decision 1050)
NOT_A_COUNT = ("not a count (NaN, infinite or negative: a counter that overflowed or jumped, an exporter's NaN, or a "
               "query that subtracts)")


def not_a_count(n: float) -> bool:
    """Whether `n`, a request or error count over a window, is none (`NOT_A_COUNT`): NaN, infinite, or -0.5 or less
    (between -0.5 and 0 is extrapolation's or a float's hair: 0). Said `NotCountable` by the per-rollout path
    (`prometheus`) and the batched one (`delta`) alike: never "Prometheus unavailable" (an outage, which pages the
    platform), never clamped to "every request failed" or "none failed" (decisions 1000, 1015, 1050)."""
    return not math.isfinite(n) or n <= -0.5


def number_of(result: Any, query: str, check: str, arm: str, *, count: str = "") -> float:
    """The one number of an answer that must be one series or a scalar. `count` ("requests", "errors"): the answer is
    that count over a window, whose NaN (a NaN sample of its counter: increase() of counters is never 0/0) is
    NotCountable, as +Inf is (`not_a_count`), not "no data" (decision 1050)."""
    if is_scalar(result):
        try:
            value = float(result[1])
        except (TypeError, ValueError):
            raise ConfigError(f"check {check!r}: the query returns {str(result[1])[:40]!r}, not a number; "
                              f"query: {query}") from None
    else:
        if not result:
            raise NoData(f"check {check!r}: no series for {arm_name(arm)}; query: {query}")
        if len(result) == 1 and ("histogram" in result[0] or "histograms" in result[0]):
            raise ConfigError(
                f"check {check!r}: the query returns a Prometheus native histogram, not a number; take one "
                f"from it with histogram_quantile(), histogram_count() or histogram_sum(); query: {query}"
            )
        if len(result) > 1 or "value" not in result[0]:
            raise ConfigError(
                f"check {check!r}: query must return one number per arm, got {len(result)} series "
                f"(aggregate with sum() or avg()); query: {query}"
            )
        value = float(result[0]["value"][1])
    if math.isnan(value) and count:
        raise NotCountable(f"check {check!r}: Prometheus answered NaN {count} for {arm_name(arm)}, {NOT_A_COUNT}; "
                           f"query: {query}")
    if math.isnan(value):
        raise NoData(f"check {check!r}: NaN for {arm_name(arm)}; query: {query}")
    return value


def bucket_pairs(result: Any, query: str, check: str, arm: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of every bucket series in a histogram answer."""
    if is_scalar(result) or not result:
        raise NoData(f"check {check!r}: no histogram series for {arm_name(arm)}; query: {query}")
    try:
        raw = [(q.parse_le(s["metric"]["le"]), float(s["value"][1])) for s in result]
    except (KeyError, ValueError, TypeError) as exc:
        raise MetricsUnavailable(f"check {check!r}: malformed histogram answer for {arm_name(arm)}; query: {query}") from exc
    return raw


def evaluated_at(result: Any) -> float | None:
    """The evaluation time Prometheus stamped on an instant answer (every sample of an instant
    vector, and a scalar, carry it), in its own clock; None when the answer holds none."""
    try:
        sample = result if is_scalar(result) else result[0].get("value") or result[0].get("histogram")
        return float(sample[0])
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return None


def shared_bounds(result: Any, query: str, check: str, arm: str) -> set[float] | None:
    """The bounds every counted histogram exports, from a `count by (le)` answer
    (`queries.series_count_query_of`): a bound is shared when as many series export it as export
    +Inf (every classic histogram has +Inf; '1' and '1.0' from different exporters are one bound).
    None when no histogram was counted (no observations in the window)."""
    if is_scalar(result):
        raise MetricsUnavailable(f"check {check!r}: a scalar answer to the bucket count query for {arm_name(arm)}; "
                                 f"query: {query}")
    series: dict[float, float] = {}
    try:
        for s in result or []:
            le = q.parse_le(s["metric"]["le"])
            series[le] = series.get(le, 0.0) + float(s["value"][1])
    except (KeyError, ValueError, TypeError) as exc:
        raise MetricsUnavailable(f"check {check!r}: malformed bucket count answer for {arm_name(arm)}; "
                                 f"query: {query}") from exc
    n = series.get(math.inf, 0.0)
    return {le for le, k in series.items() if k == n} if n > 0 else None


def keep_shared(pairs: list[tuple[float, float]], shared: set[float]) -> list[tuple[float, float]] | None:
    """Classic (le, count) pairs on the `shared_bounds` only; None when no finite bound is left (the
    arm's pods share none: no quantile can be compared)."""
    kept = [(le, c) for le, c in pairs if le in shared]
    return kept if any(math.isfinite(le) for le, _ in kept) else None


def each_arm(fetch: Callable[[str], Any]) -> tuple[Any, Any]:
    """(stable, canary) from `fetch(arm)`, each arm's NoData kept in its place."""
    out: list[Any] = []
    for arm in q.ARMS:
        try:
            out.append(fetch(arm))
        except NoData as exc:
            out.append(exc)
    return out[0], out[1]


def both_or_raise(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """`pair`, or NoData when neither arm has data: NotCountable when one of them cannot be counted
    (`errors.NotCountable`: it stays so, never read as an arm that served nothing)."""
    if all(isinstance(x, NoData) for x in pair):
        raise (NotCountable if any(isinstance(x, NotCountable) for x in pair) else NoData)("; ".join(map(str, pair)))
    return pair


def arms_pair(fetch: Callable[[str], Any]) -> tuple[Any, Any]:
    """(stable, canary) from `fetch(arm)`, each arm's NoData kept in its place; NoData when neither
    arm has data (`both_or_raise`). A limit on the canary alone is then judged without the stable series."""
    return both_or_raise(each_arm(fetch))

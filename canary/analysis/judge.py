"""Measurements of one look -> one Verdict, with every number behind it.

This is the only place that knows what each check kind means statistically:
which tests run, how the look's alpha is split between them, when a small
canary sample may still fail (only on a significant absolute or hard breach),
what a PASS needs (every limit shown within, `evidence`), and how the evidence
reads to a human. It is pure: the controller passes in what Prometheus said
(or the exception it raised, for the check or for one arm) and gets a `Verdict`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.analysis import buckets, evidence, shift, stats
from canary.analysis.buckets import Arm
from canary.analysis.custom import judge_custom
from canary.analysis.evidence import attach
from canary.analysis.sequential import (EXACT_SHARE, effective_requests, exact_shares, exceedance_p, failure_p,
                                        increase_factor, log_p, sub_levels, test_weights, tests_in, window_share, window_z)
from canary.errors import CanaryError, NoData, NotCountable, TransientError
from canary.analysis.shown import beside, exact, whole
from canary.analysis.unrouted import bound as unrouted_bound, requests_counted, unrouted
from canary.model import ArmData, CheckResult, Counts, FeatureCounts, Histogram, Verdict, Outcome, Scalar
from canary.policy import (
    Check,
    CustomCheck,
    ErrorRateCheck,
    FeatureDriftCheck,
    FeatureMissingCheck,
    LatencyCheck,
    Policy,
    PredictionShiftCheck,
)

# (stable, canary), either arm possibly the exception that measuring it raised; or one exception
# for the whole check. A limit on the canary alone (max_ms, max_rate_pct, max_value) is judged
# without the stable arm.
Measurement = tuple[ArmData | Exception, ArmData | Exception] | Exception
# The evidence of earlier windows of this rollout (steps, resumed stretches), per sub-test
# "check/test": (S, I), the sums of z*sqrt(I) and of the information I (`sequential`).
Prior = Mapping[str, tuple[float, float]]


def judge(policy: Policy, measurements: Mapping[str, Measurement], *, prior: Prior | None = None,
          window: int = 0, pass_ratio: float = 1.0, canary_weight: int | None = None,
          step: int | None = 0, window_s: float | None = None, canary_version: str | None = None) -> Verdict:
    """Judge every check of the policy at one look; worst outcome wins.

    `measurements` cover the current window (the step since it began, or since an operator
    resumed it). `prior` is the evidence of the rollout's earlier windows (what a previous
    look's `Verdict.window_evidence()` returned when its window closed, summed): a breach is
    judged on all of it, at the same level at every look (anytime-valid, `sequential`).
    `window` is the 0-based index of the current window within its step (operator resumes), and
    `pass_ratio` the look's canary requests over those at the window's first look that could
    pass (`model.pass_ratio`; 1 there and before): both set the pass level (`evidence.pass_level`),
    which holds for any number of looks at any times. `canary_weight` is the canary's share of the
    traffic in the window, in percent (`Weights.canary`; None: not known, as in `canary serve`): a
    check whose arms' request counts are far from that split cannot pass (`_mismatched`).
    `step` is the 0-based step index (`canary serve`: its count of closed windows); with `window`
    it places the window in the rollout, which sets the share of each failure level for the
    window's own evidence (`sequential.window_share`: a canary that breaks late is not hidden by
    good earlier windows). None: the window's place is not known (an exported look with a `prior`
    but no `step`): its own test is skipped (share 0) and the pooled test alone decides, as valid.
    `window_s` is the window's length in seconds at `canary_weight` (None: not known): with both, a
    canary that got no requests where the stable's count makes that beyond doubt fails every
    request-counting check as a hard breach, naming `canary_version` (`unrouted`, decision 110).
    """
    by_check: dict[str, dict[str, float]] = {}  # check -> sub-test -> level, grouped once per look
    for key, level in sub_levels(policy).items():
        name, _, test = key.rpartition("/")
        by_check.setdefault(name, {})[test] = level
    beta = evidence.pass_level(policy, window, pass_ratio)
    prior = prior or {}
    results = []
    for check in policy.checks:
        m = measurements.get(check.name)
        if m is None:
            results.append(_error(check, "no measurement was provided"))
        elif isinstance(m, BaseException):
            # "Prometheus could not be asked" (transient) is told apart from "asked, no such series":
            # only the first may end a rollout as aborted rather than rolled back.
            results.append(_error(check, f"could not measure: {_why(m)}",
                                  unavailable=isinstance(m, TransientError)))
        else:
            try:
                mine = by_check.get(check.name, {})
                r = judge_check(check, m[0], m[1], alpha=sum(mine.values()),
                                min_canary=policy.analysis.min_canary_requests, beta=beta, prior=prior, levels=mine,
                                share=0.0 if step is None else window_share(step, window))
                r.extra["pass_level"] = beta  # the level each limit was (or was not) shown within at
                results.append(r)
            except (ValueError, TypeError, ArithmeticError) as exc:  # never crash a tick
                results.append(_error(check, f"cannot judge: {exc}"))
    odd = _disagreeing(policy, measurements)
    for name, why in _mismatched(policy, measurements, canary_weight).items():
        odd.setdefault(name, why)
    if odd:
        results = [_untrusted(r, odd[r.check]) if r.check in odd else r for r in results]
    empty, why = unrouted(policy, measurements, weight=canary_weight, window_s=window_s, canary_version=canary_version,
                          window=window)
    if empty:
        results = [_unrouted(r, why, empty[r.check], unrouted_bound(policy, window)) if r.check in empty else r
                   for r in results]
    return Verdict.combine(results)


# One arm's request counts as different checks read them (a latency histogram's total, an error or
# feature-missing rate's denominator) may differ (failed requests not timed, extrapolation), but not
# by this factor: beyond it a counter jumped or an exporter is broken (a success counter that jumped by
# 1e12 read a 10%-error canary as 1.5e-08% errors, and passed it)
COUNTS_DISAGREE = 10.0
# A canary count this many times off what the traffic split implies (`_mismatched`): far past what
# traffic that reaches the canary around the split explains (a QA header route, a mirror: 10x was
# reached by 11% of the model's traffic sent to the canary at a 1% step, and held a good canary to its
# deadline), not past a counter that jumped (1e12 against 1e4: 1e8x)
SPLIT_DISAGREE = 100.0
COUNTS_FLOOR = 100.0  # below this many requests the smaller count is read as this many (sampling noise)


def _requests(check: Check, d: Any) -> float | None:
    """The requests one arm's data of a request-counting check counted (`unrouted.requests_counted`)."""
    return requests_counted(check.kind, d)


def _disagreeing(policy: Policy, measurements: Mapping[str, Measurement]) -> dict[str, str]:
    """Checks whose arm's request count disagrees with another check's of the same arm by more than
    COUNTS_DISAGREE, and why ({} when they agree)."""
    out: dict[str, str] = {}
    for i, arm in enumerate(("stable", "canary")):
        totals: dict[str, float] = {}
        for check in policy.checks:
            m = measurements.get(check.name)
            if m is None or isinstance(m, BaseException):
                continue
            n = _requests(check, m[i])
            if n:
                totals[check.name] = n
        if len(totals) < 2:
            continue
        low, high = min(totals.values()), max(totals.values())
        if high > COUNTS_DISAGREE * max(low, COUNTS_FLOOR):
            seen = ", ".join(f"{k} {_n(v)}" for k, v in totals.items())
            for k in totals:
                out.setdefault(k, f"the {arm} arm's request counts disagree across checks ({seen}): a counter jump "
                                  "or a broken exporter")
    return out


def _mismatched(policy: Policy, measurements: Mapping[str, Measurement], weight: int | None) -> dict[str, str]:
    """Checks whose canary request count is more than SPLIT_DISAGREE times off what the stable's count
    and the traffic split imply (below COUNTS_FLOOR a count is read as that many), and why.

    Istio splits requests by weight, so canary/stable requests are near w/(100-w) in any window of
    one step; 100 times more or fewer is no sampling noise, no scrape lag and no traffic that reaches
    the canary around the split (a QA header route; a mirror, 100x only with a 1% step) but a counter
    that jumped, an exporter that counts something else, or another arm's series. It guards the policies that have a
    single request-counting check (Triton's preset), where `_disagreeing` has nothing to compare.
    """
    if weight is None or not 0 < weight < 100:
        return {}
    out: dict[str, str] = {}
    for check in policy.checks:
        m = measurements.get(check.name)
        if m is None or isinstance(m, BaseException):
            continue
        stable, canary = _requests(check, m[0]), _requests(check, m[1])
        if stable is None or canary is None:
            continue
        expected = stable * weight / (100 - weight)
        if canary > SPLIT_DISAGREE * max(expected, COUNTS_FLOOR) or expected > SPLIT_DISAGREE * max(canary, COUNTS_FLOOR):
            out[check.name] = (f"the canary counted {_n(canary)} requests where its {weight}% of the traffic and the "
                               f"stable's {_n(stable)} imply about {_n(expected)}: a counter jump, a broken exporter or "
                               "traffic that bypasses the VirtualService")
    return out


def _unrouted(r: CheckResult, why: str, n_stable: float, bound: float) -> CheckResult:
    """A request-counting check's result when the canary got no requests it was certain to get: a
    hard FAIL (rolled back at this look), its own evidence kept under `unrouted`."""
    return dataclasses.replace(r, outcome=Outcome.FAIL, reason=why, hard=True, n_stable=n_stable, n_canary=0.0,
                               threshold=bound, threshold_unit="",
                               extra={**r.extra, "unrouted": {"stable_requests": n_stable, "bound": bound,
                                                              "was": r.outcome.label, "was_reason": r.reason}})


def _untrusted(r: CheckResult, why: str) -> CheckResult:
    """A result on request counts that disagree: never a PASS, and its window evidence is not kept
    (an inflated count would weigh against every later breach); a FAIL stands (stable 100% is safe)."""
    if r.outcome is Outcome.FAIL:
        return r
    tests = [{**t, "info_window": 0.0} for t in r.extra.get("tests", ())]
    outcome = Outcome.INCONCLUSIVE if r.outcome is Outcome.PASS else r.outcome
    return dataclasses.replace(r, outcome=outcome, reason=f"{why}; {r.reason}", extra={**r.extra, "tests": tests})


def judge_check(check: Check, stable: ArmData | Exception, canary: ArmData | Exception, *, alpha: float,
                min_canary: int, beta: float = evidence.PASS_LEVEL, prior: Prior | None = None,
                levels: Mapping[str, float] | None = None, share: float | None = None) -> CheckResult:
    """One check at one look. `alpha` is this check's share of the failure level; `levels` its
    split per sub-test (default: evenly; `judge` passes the policy's weighted split,
    `sequential.sub_levels`), each compared with the anytime p-value of the pooled evidence with
    `prior` and of the window's own (`sequential.failure_p`, the window's test at `share` of the
    level; default the first window's) (FAIL); `beta` the level at which each limit must be shown
    within (PASS)."""
    if isinstance(canary, BaseException):
        return _measure_error(check, "canary", canary)
    canary, left_c = countable_buckets(canary, "canary")
    stable, left_s = countable_buckets(stable, "stable")
    left = "; ".join(x for x in (left_c, left_s) if x)
    r = _judge_countable(check, stable, canary, alpha=alpha, min_canary=min_canary, beta=beta, prior=prior,
                         levels=levels, share=share)
    return dataclasses.replace(r, reason=f"{left}; {r.reason}") if left else r


def _judge_countable(check: Check, stable: ArmData | Exception, canary: ArmData, *, alpha: float, min_canary: int,
                     beta: float, prior: Prior | None, levels: Mapping[str, float] | None,
                     share: float | None) -> CheckResult:
    why = _implausible(canary)
    if why:
        return _error(check, f"canary: {why}")
    why = _implausible(stable)
    if why:  # as a stable arm that could not be measured: its limits on the canary alone are still judged
        stable = NotCountable(f"stable: {why}")
    ctx = _Ctx(alpha=alpha, min_canary=min_canary, beta=beta, prior=prior or {}, levels=levels or {},
               window_share=window_share(0, 0) if share is None else share)
    if stable is None:  # nothing given for stable: as an arm that could not be measured, never a skipped limit
        stable = NoData("no stable data given")
    if isinstance(stable, BaseException):
        return _canary_only(check, stable, canary, ctx)
    return _by_kind(check, stable, canary, ctx)


# Request counts from here on are no request counts (a counter at 1,000,000 rps for 285 years): above it
# they lose integer precision and the exact tests' int64 arithmetic wraps (a 1e19 count read as evidence
# *for* the canary).
MAX_COUNT = 2.0 ** 53


def countable_buckets(data: Any, arm: str) -> tuple[Any, str]:
    """`data` on its countable bucket bounds, and what was left out ("" when nothing was). A NaN count in a bucket
    below +Inf (one Prometheus could not compute) makes only that bound unknown: the counts are cumulative, so the
    others still count what they did, and the arm is judged as if its exporter had not exported that `le`, a coarser
    layout the judge compares soundly on the bounds both arms share (issue 9), never a count invented for it. A NaN
    in the +Inf bucket (the total) is left for `_implausible` (not countable), as are counts that are not
    non-decreasing without the dropped bounds (decision 1053; 1052 refused the whole arm: a canary whose other
    buckets showed a breach at p=1.4e-250 was not rolled back at that look)."""
    if not isinstance(data, Histogram) or math.isnan(data.counts[-1]) or not any(map(math.isnan, data.counts)):
        return data, ""
    kept = [(b, c) for b, c in zip(data.bounds, data.counts) if not math.isnan(c)]
    try:
        coarser = Histogram(bounds=tuple(b for b, _ in kept), counts=tuple(c for _, c in kept),
                            requests=data.requests)
    except ValueError:  # not cumulative without them: `_implausible` says the arm is not countable
        return data, ""
    les = [_le_text(b) for b, c in zip(data.bounds, data.counts) if math.isnan(c)]
    return coarser, (f"{arm}: bucket{'s' if len(les) > 1 else ''} le={', le='.join(les)} "
                     f"count{'' if len(les) > 1 else 's'} NaN (Prometheus could not compute "
                     f"{'them' if len(les) > 1 else 'it'}): left out, judged on its {len(kept) - 1} other finite "
                     f"bound{'' if len(kept) == 2 else 's'} (a coarser layout)")


def _implausible(data: object) -> str:
    """Why an arm's counts cannot be request counts ('' when they can): an infinite count anywhere, a NaN or
    infinite count of a Counts (events, total) or a Scalar's n (NaN there: not told), or one of MAX_COUNT or
    more. Cast to an integer (`stats._ints`, `round`), +Inf was garbage, -2^63: a latency arm whose total was +Inf
    was judged with "an arm has no requests", an error rate's `Counts(5, +Inf)` raised OverflowError. Such an arm
    is not countable (the canary's: ERROR; the stable's: not measured), never a pass. A NaN bucket of a Histogram
    that `countable_buckets` could not leave out (the +Inf one, the total; or counts not cumulative without it) too,
    naming its bound: `stats._ints` cast it to -2^63, garbage read as a count (decisions 1052, 1053). A fractional
    count is one (increase() extrapolates), rounded where read."""
    if isinstance(data, Histogram):
        if math.isnan(data.counts[-1]):  # the total: no count of the arm's requests (1053)
            return "bucket le=+Inf (the total) counts NaN, not a request count (not countable)"
        nan = next((le for le, c in zip(data.bounds, data.counts) if math.isnan(c)), None)
        if nan is not None:  # left by `countable_buckets` only where its counts are not cumulative without it
            return f"bucket le={_le_text(nan)} counts NaN, not a request count (not countable)"
        values: tuple[float, ...] = data.counts
    elif isinstance(data, Counts):
        values = (data.events, data.total)
    elif isinstance(data, Scalar):
        values = () if math.isnan(data.n) else (data.n,)
    else:  # feature counts are checked finite where they are built (`FeatureCounts`)
        return ""
    for v in values:
        if not math.isfinite(v):
            return f"count {_count_text(v)} is not a request count (NaN or infinite: not countable)"
        if v >= MAX_COUNT:
            return f"count {v:g} is not a request count (>= 2^53)"
    return ""


def _le_text(le: float) -> str:
    """A bucket's bound as Prometheus's `le` label writes it: "+Inf", or the number ("0.1", "250")."""
    return "+Inf" if math.isinf(le) else f"{le:g}"


def _count_text(v: float) -> str:
    return "NaN" if math.isnan(v) else "+Inf" if v > 0 else "-Inf"


@dataclasses.dataclass(frozen=True)
class _Ctx:
    alpha: float  # the check's share of the failure level
    min_canary: int
    beta: float  # pass level
    prior: Prior
    levels: Mapping[str, float]  # sub-test -> failure level (empty: alpha split evenly)
    window_share: float  # the share of each level for the window's own test (`sequential.window_share`)


def _pool(check: Check, subs: list[tuple[str, stats.TestResult, bool]], ctx: _Ctx, *, info: float,
          info_canary: float) -> tuple[list[tuple[str, stats.TestResult, bool]], dict[str, dict]]:
    """Each sub-test's breach decided on the pooled, anytime-valid evidence (`sequential`).

    The window's fixed-sample p-value becomes z; with the window's information (effective
    requests; the canary's for a limit on it alone) it adds to the prior windows' (S, I). The
    sub-test breaches when the anytime p-value of the sum is <= `level` and the window could
    decide it. Returns the sub-tests with `breach` and `p_value` (now the anytime p) replaced,
    and per sub-test the numbers behind it.
    """
    out, seq, prior = [], {}, ctx.prior
    for name, t, absolute in subs:
        level = ctx.levels.get(name)
        if level is None:  # no split given: alpha evenly over the check's tests
            level = ctx.alpha / max(1, len(test_weights(check)))
        i_w = (info_canary if absolute else info) if t.decidable else 0.0
        if not math.isfinite(i_w):  # infinite counts (an overflowed counter) are no information
            i_w = 0.0
        z_w = window_z(t.p_value) if i_w > 0 else 0.0
        s_w = z_w * math.sqrt(i_w)
        s0, i0 = prior.get(f"{check.name}/{name}", (0.0, 0.0))
        s_all, i_all = s0 + s_w, i0 + i_w
        p_av = failure_p(s_all, i_all, s_w, i_w, ctx.window_share)
        exact: dict[str, Any] = {"p_exact": _clean(t.p_exact)} if not math.isnan(t.p_exact) else {}
        if i_w > 0 and not math.isnan(t.p_exact):
            # the exact tests (a limit on the canary alone: of its exceedance count, decision 142; an error or
            # missing rate increase: of both arms' counts, decision 149) get EXACT_SHARE of the level: the
            # window's own test, and from the rollout's second window on a test pooled over its windows
            # (decision 151: a ceiling's exceedance counts add up, an increase's windows' factors multiply);
            # the normal mixtures keep the rest. Few requests far beyond are evidence, whatever the information.
            own, pooled = exact_shares(ctx.window_share)
            counts = t.exact_counts
            window_part = ((float(round(counts[0])), float(round(counts[1]))) if counts is not None
                           else (increase_factor(t.p_exact), 1.0))
            p_pooled = 1.0
            if pooled > 0:
                key = f"{check.name}/{name}.exact"
                if i0 > 0 and key not in prior:
                    pooled = 0.0  # earlier windows' exact evidence unknown (a state from before 151): not pooled
                elif counts is not None:
                    x0, n0 = prior.get(key, (0.0, 0.0))
                    p_pooled = exceedance_p(x0 + window_part[0], n0 + window_part[1], counts[2])
                else:
                    p_pooled = log_p(prior.get(key, (0.0, 0.0))[0] + window_part[0])
            p_av = min(1.0, p_av / (1.0 - EXACT_SHARE), t.p_exact / own if own > 0 else 1.0,
                       p_pooled / pooled if pooled > 0 else 1.0)
            exact["exact_window"] = list(window_part)
            if pooled > 0:
                exact["p_exact_pooled"] = _clean(p_pooled)
        seq[name] = {"p_window": _clean(t.p_value), "s_window": s_w, "info_window": i_w,
                     "s": s_all, "info": i_all, "windows_before": i0 > 0, "level": level, **exact}
        # stats.replaced rather than dataclasses.replace: a tenth of the cost, at every sub-test of every look
        # earlier windows' breach is not contradicted by this window's quantile: where their evidence alone
        # fails, it stands (`_verdict`'s moot breach is of this window's evidence); earlier windows that show
        # no breach by themselves do not turn this window's moot breach into a rollback (decision 511)
        earlier = bool(t.within_at_q) and i0 > 0 and failure_p(s0, i0, 0.0, 0.0, ctx.window_share) <= level
        out.append((name, stats.replaced(t, breach=bool(i_w > 0 and p_av <= level), p_value=p_av,
                                         **({"within_at_q": ""} if earlier else {})),
                    absolute))
    return out, seq


def _by_kind(check: Check, stable: ArmData | None, canary: ArmData, ctx: _Ctx) -> CheckResult:
    if isinstance(check, LatencyCheck):
        return _latency(check, stable, canary, ctx)
    if isinstance(check, (ErrorRateCheck, FeatureMissingCheck)):
        return _proportion(check, stable, canary, ctx)
    if isinstance(check, PredictionShiftCheck):
        if stable is None:
            raise TypeError("prediction_shift needs both arms")
        return _shift(check, stable, canary, ctx)
    if isinstance(check, FeatureDriftCheck):
        if stable is None:
            raise TypeError("feature_drift needs both arms")
        return _feature_drift(check, stable, canary, ctx)
    if isinstance(check, CustomCheck):
        bad = _want(check, (canary,) if stable is None else (stable, canary), Scalar)
        return bad or judge_custom(check, stable, canary, min_canary=ctx.min_canary)  # type: ignore[arg-type]
    raise TypeError(f"unknown check kind {type(check).__name__}")


def _absolute(check: Check) -> bool:
    """Has the check a limit on the canary alone?"""
    return any(getattr(check, f, None) is not None for f in ("max_ms", "max_rate_pct", "max_value"))


def relative_limits(check: Check) -> list[str]:
    """The limits (field names) that compare the canary with stable: with no stable data the check is
    ERROR, never a pass, while any is set (`_canary_only`)."""
    if isinstance(check, (PredictionShiftCheck, FeatureDriftCheck)):
        return [f for f in ("max_psi", "max_js") if getattr(check, f) is not None]
    return [f for f in ("max_increase_pct", "max_increase_points", "max_ratio", "max_increase")
            if getattr(check, f, None) is not None]


def _why(exc: BaseException) -> str:
    """A measurement's failure in its own words: NoData's and MetricsUnavailable's messages say what was asked
    and what came back, and their class names ("MetricsUnavailable: ...") were code in the line on-call
    reads; any other exception keeps its type (a bug's message alone can be a bare key or number)."""
    text = str(exc)
    return text if isinstance(exc, CanaryError) and text else f"{type(exc).__name__}: {exc}"


def _measure_error(check: Check, arm: str, exc: BaseException) -> CheckResult:
    return _error(check, f"could not measure {arm}: {_why(exc)}",
                  unavailable=isinstance(exc, TransientError))


def _canary_only(check: Check, exc: BaseException, canary: ArmData, ctx: _Ctx) -> CheckResult:
    """The stable arm could not be measured: its absolute limits are judged on the canary alone.

    A breach of one FAILs (a hard check at once) as it would with both arms; anything else is
    ERROR while a relative limit is left unjudged, and the absolute result when there is none.
    """
    if not _absolute(check):
        return _measure_error(check, "stable", exc)
    why = _why(exc)
    if isinstance(check, CustomCheck):
        bad = _want(check, (canary,), Scalar)
        r = bad or judge_custom(check, None, canary, min_canary=ctx.min_canary, stable_error=why)  # type: ignore[arg-type]
    else:
        r = _by_kind(check, None, canary, ctx)
    if r.outcome is Outcome.ERROR and isinstance(exc, TransientError):
        return dataclasses.replace(r, extra={**r.extra, "unavailable": True})
    if r.outcome is Outcome.FAIL or r.outcome is Outcome.ERROR:
        return r
    unjudged = relative_limits(check)
    if unjudged:
        return dataclasses.replace(r, outcome=Outcome.ERROR, extra={**r.extra, **(
            {"unavailable": True} if isinstance(exc, TransientError) else {})},
            reason=f"{' and '.join(unjudged)} not judged, could not measure stable: {why}; {r.reason}")
    return r


def _error(check: Check, reason: str, *, unavailable: bool = False) -> CheckResult:
    return CheckResult(check=check.name, kind=check.kind, outcome=Outcome.ERROR, reason=reason, hard=check.hard,
                       extra={"unavailable": True} if unavailable else {})


def _want(check: Check, data: tuple[ArmData, ArmData], kind: type) -> CheckResult | None:
    for arm, d in zip(("stable", "canary"), data):
        if not isinstance(d, kind):
            return _error(check, f"{arm} data is {type(d).__name__}, expected {kind.__name__}")
    return None


def _shared(s: Histogram, c: Histogram) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Both arms on the bounds they share: (bounds, stable's and canary's cumulative counts there)."""
    if s.bounds == c.bounds:
        return s.bounds, s.counts, c.counts
    shared = sorted(set(s.bounds) & set(c.bounds))
    pick = lambda h: tuple(h.counts[h.bounds.index(b)] for b in shared)  # noqa: E731
    return tuple(shared), pick(s), pick(c)


def _merged_note(s: Histogram, c: Histogram, shared: tuple[float, ...]) -> str:
    """"" when both arms keep every finite bound on the shared ones; else why a distribution compared on
    them cannot be shown within a limit (cells of one arm merged: a shift inside them is invisible)."""
    fin = lambda bounds: {b for b in bounds if math.isfinite(b)}  # noqa: E731
    kept = fin(shared)
    if fin(s.bounds) == kept and fin(c.bounds) == kept:
        return ""
    return (f"the arms export different bucket bounds (stable {len(fin(s.bounds))}, canary {len(fin(c.bounds))} "
            f"finite, {len(kept)} shared): a shift inside the merged cells cannot be shown within the limit")


def _common(s: Histogram, c: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_shared` as float arrays."""
    bounds, sc, cc = _shared(s, c)
    return np.array(bounds), np.array(sc, float), np.array(cc, float)


def _per_bucket(cum: tuple[float, ...]) -> list[float]:
    """Per-bucket counts from cumulative ones: np.diff(cum, prepend=0.0) as a list (the same floats)."""
    return [float(b) - float(a) for a, b in zip((0.0, *cum[:-1]), cum)]


def _n(x: float) -> str:
    return whole(x) if math.isfinite(x) else "?"


def _p(p: float) -> str:
    return "?" if not math.isfinite(p) else (f"{p:.1e}" if p < 1e-4 else f"{p:.4f}".rstrip("0").rstrip("."))


def _g(x: float, digits: int = 3) -> str:
    return "?" if not math.isfinite(x) else f"{x:.{digits}g}"


def _upper(bound: float, limit: float | None = None) -> str:
    """An upper bound as a reason shows it: "unbounded" when the counts cannot bound the statistic;
    beside `limit` with the digits that show its side of it."""
    return "unbounded" if bound == math.inf else beside(bound, limit, 2)


def _closeness(ratio: float) -> float:
    """Sort key of a feature's upper bound over its limit: NaN (not compared) lowest, inf highest."""
    return -math.inf if math.isnan(ratio) else ratio


def _clean(value: Any) -> Any:
    """Extra evidence is serialised as-is: keep it JSON-safe (NaN -> None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _verdict(check: Check, subs: list[tuple[str, stats.TestResult, bool]], n_c: float, min_canary: int,
             *, n_text: str = "") -> tuple[Outcome, tuple[str, stats.TestResult, bool], str]:
    """Combine a check's sub-tests: (outcome, the sub-test to report, extra reason).

    FAIL on a significant breach (below min_canary only an absolute one, or any of a hard
    check); PASS only when every sub-test shows the canary within its limit; INCONCLUSIVE
    otherwise, with what is missing. `n_c` is the canary's request count; `n_text` how the
    reason says it where observations are not requests (default "n=<n_c>").
    """
    small = n_c < min_canary
    # A significant breach fails whatever the within claim at q says: the breach test compares the
    # bucket pair nearest q (p92.7 for a p95 limit), or another quantile where none is near, so both
    # can hold when the canary's shape differs from the stable's. Letting the within claim overrule it
    # made the verdict turn with more data of the same shape (FAIL at 8,000 requests, PASS at 16,000);
    # a canary shown slower at p92.7 or p97 is rolled back even if its p95 is faster (stable 100% when
    # in doubt; the reason names the quantile compared).
    fails = [s for s in subs if s[1].breach and (not small or s[2] or check.hard)]
    # ... except where the limit's own statistic contradicts it: a breach found by the pair test at another
    # quantile than the limit's (`compared`), where the buckets holding each arm's q-quantile put the canary
    # within (`within_at_q`, `_within_at_q`), is evidence about that other quantile only. Not a FAIL (the limit
    # is on q: a canary within it there is not rolled back for its p70.7), never a PASS (docs/decisions.md 501).
    moot = [s for s in fails if s[1].compared and s[1].within_at_q]
    fails = [s for s in fails if s not in moot]
    if fails:
        return Outcome.FAIL, min(fails, key=lambda s: s[1].p_value), ""
    shown = min(subs, key=lambda s: s[1].p_value)
    if small:
        return Outcome.INCONCLUSIVE, shown, (f"canary {n_text or f'n={_n(n_c)}'} below min {min_canary:,} "
                                             "(below it only a breach "
                                             "significant at the check's level fails, and only of an absolute "
                                             "limit or a hard check)")
    if moot:
        t = moot[0][1]
        return Outcome.INCONCLUSIVE, moot[0], (
            f"shown beyond the limit at {t.compared} (the quantile the buckets compare), p={_p(t.p_value)}, but "
            f"{t.within_at_q}: the limit is on its own quantile, so neither a rollback nor a pass")
    unsure = [s for s in subs if not s[1].within]
    if unsure:
        t = unsure[0][1]
        return Outcome.INCONCLUSIVE, unsure[0], t.why_not or t.note or "not yet shown within the limit"
    return Outcome.PASS, shown, ""


def _result(check: Check, outcome: Outcome, reason: str, t: stats.TestResult, *, n: tuple[float, float],
            threshold: float, effect: float, alpha: float, subs: list[tuple[str, stats.TestResult, bool]],
            seq: dict[str, dict], **values: Any) -> CheckResult:
    if outcome is Outcome.FAIL:
        # one line an on-call person reads: the breach and what its own test compared (in coarse
        # buckets: the quantile it tested instead, and why); not the other limits' notes
        notes = [t.note] if t.note else []
    else:
        notes = [s[1].note for s in subs if s[1].note]
    extra: dict[str, Any] = {"tests": [
        {"test": name, "p_value": _clean(r.p_value), "breach": r.breach, "absolute": absolute,
         "decidable": r.decidable, "within": r.within, "bound": _clean(r.bound), "note": r.note,
         # a breach is why it is not within (its within-evidence would say "not significant")
         "why_not": (f"shown beyond the limit at {r.compared}, p={_p(r.p_value)}, but {r.within_at_q}"
                     if r.breach and r.compared and r.within_at_q  # no FAIL (`_verdict`)
                     else f"shown beyond the limit, p={_p(r.p_value)}" if r.breach and not r.within else r.why_not),
         "bound_unit": _bound_unit(check.kind, name), **seq.get(name, {})} for name, r, absolute in subs]}
    notes = [x for x in dict.fromkeys(notes) if x not in reason]
    if notes:  # a FAIL names the quantile it tested, too
        reason += "; " + "; ".join(notes)
    # `alpha` is what this p-value was compared with: the check's share split over its tests.
    extra["check_alpha"] = alpha
    return CheckResult(check=check.name, kind=check.kind, outcome=outcome, reason=reason,
                       n_stable=n[0], n_canary=n[1], threshold=threshold, statistic=t.statistic,
                       p_value=t.p_value, effect_size=effect, hard=check.hard, extra=extra,
                       alpha=seq.get(_shown_name(subs, t), {}).get("level", alpha / len(subs)),
                       **values)


def _bound_unit(kind: str, test: str) -> str:
    """The unit of a sub-test's `bound` in the evidence: "ms" (a latency ceiling), "psi" or "js" (the
    statistic), "fraction" (a latency increase relative to stable, 1.0 = +100%; an error or missing
    rate or its increase, 0.01 = 1% or 1 point)."""
    name = test.partition(":")[0]
    if name in ("psi", "js"):
        return name
    return "ms" if kind == "latency" and name == "ceiling" else "fraction"


def _shown_name(subs: list[tuple[str, stats.TestResult, bool]], t: stats.TestResult) -> str:
    return next((name for name, r, _ in subs if r is t), "")


def _q_text(arm: Arm | evidence.ArrayArm, limit: float | None = None) -> str:
    """The quantile for humans: interpolated, or '>b' when it lies in the open +Inf bucket; beside
    `limit` (ms) with the digits that show its side of it (`shown.beside`)."""
    lo, hi = arm.bucket()
    return f">{beside(lo, limit)}" if math.isinf(hi) else beside(arm.estimate(), limit)


def _open(arm: Arm | evidence.ArrayArm) -> bool:
    """Whether the arm's quantile lies in the open +Inf bucket: only a lower bound on it is known."""
    return math.isinf(arm.bucket()[1])


def _arms(bounds: tuple[float, ...], sc: tuple[float, ...] | None, cc: tuple[float, ...], q: float
          ) -> tuple[Arm | evidence.ArrayArm | None, Arm | evidence.ArrayArm, bool]:
    """(stable, canary, on lists): `buckets.Arm`s where the counts allow, else the array reference."""
    if buckets.usable(cc) and (sc is None or buckets.usable(sc)):
        return (Arm(bounds, sc, q) if sc is not None else None), Arm(bounds, cc, q), True
    b = np.array(bounds)
    return ((evidence.ArrayArm(b, np.array(sc, float), q) if sc is not None else None),
            evidence.ArrayArm(b, np.array(cc, float), q), False)


def _latency_relative(s: Arm | evidence.ArrayArm, c: Arm | evidence.ArrayArm, *, on_lists: bool, tol: float,
                      alpha: float, own: Histogram | None = None) -> stats.TestResult:
    """stats.latency_relative, on lists where the arms are (the same result). `own`: the stable's histogram
    where it exports bounds the shared ones lack (its exceedance at the pair's x is read there too,
    `stats.own_layout_pick`)."""
    mine = (own.bounds[:-1], own.counts[:-1]) if own is not None else None
    if not on_lists:
        return stats.latency_relative(c.bounds, s.cum, c.cum, q=c.q, tol=tol, alpha=alpha, own=mine)
    assert isinstance(s, Arm) and isinstance(c, Arm)
    finite = c.bounds[:-1]
    pick = buckets.pick_pair(finite, s.cum, s.n, q=c.q, tol=tol) if s.n > 0 and c.n > 0 else None
    return stats.relative_result(finite, pick, c.k, n_s=s.n, n_c=c.n, s_est=s.estimate(), c_est=c.estimate(),
                                 q=c.q, tol=tol, alpha=alpha, own=mine,
                                 beyond=lambda: stats.quantiles_beyond(finite, s.k, s.n, c.k, c.n, q=c.q, tol=tol))


def _latency_ceiling(c: Arm | evidence.ArrayArm, *, on_lists: bool, max_value: float, alpha: float
                     ) -> stats.TestResult:
    """stats.latency_ceiling, on lists where the arm is (the same result)."""
    if not on_lists:
        return stats.latency_ceiling(c.bounds, c.cum, q=c.q, max_value=max_value, alpha=alpha)
    assert isinstance(c, Arm)
    finite = c.bounds[:-1]
    j = bisect_left(finite, max_value * (1 - 1e-12))
    decides = not c.total <= 0 and j < len(finite)
    p = c.p_above(j) if decides else math.nan
    counts = (float(c.n - c.k[j]), float(c.n), 1.0 - c.q) if decides else None
    p_exact = exceedance_p(*counts) if counts is not None else math.nan
    return stats.ceiling_result(finite, j, p, total=c.total, c_est=c.estimate(), max_value=max_value, alpha=alpha,
                                in_finite=float(c.cum[-2]) if len(c.cum) > 1 else 0.0, p_exact=p_exact,
                                exact_counts=counts)


def _unit_mismatch(stable: tuple[float, ...], canary: tuple[float, ...]) -> str:
    """Why two latency layouts look like one layout in two units ("" when they do not): `_unit_mismatch_of`,
    remembered for the last 256 pairs of layouts. A rollout's layouts stay the same from look to look, and
    the comparison rounds every bound three times (about 0.5 ms a look on a native histogram's 188 bounds,
    more than the rest of a latency check: docs/benchmarks/judge_speed.md)."""
    return _unit_mismatch_of(tuple(stable), tuple(canary))


@functools.lru_cache(maxsize=256)
def _unit_mismatch_of(stable: tuple[float, ...], canary: tuple[float, ...]) -> str:
    """Why two latency layouts look like one layout in two units ("" when they do not).

    Prometheus's convention is seconds (`le="0.005"`), Istio's and this tool's milliseconds: a new
    version whose exporter follows the other convention shares a bound or two by accident (5 ms and
    5 s), and the arms compared there read a canary 15x slower as 52% faster, and passed. When the
    canary's bounds times 1000 (or over 1000) match at least three of the stable's, at least half of
    the shorter layout and at least twice as many as unscaled, the layouts are one layout in
    seconds and in milliseconds."""
    s = {round(b, 9) for b in stable if math.isfinite(b) and b > 0}
    c = [b for b in canary if math.isfinite(b) and b > 0]
    if len(s) < 3 or len(c) < 3:
        return ""

    def matches(factor: float) -> int:
        return sum(round(b * factor, 9) in s for b in c)

    plain = matches(1.0)
    for factor, canary_unit, stable_unit in ((1000.0, "seconds", "milliseconds"), (0.001, "milliseconds", "seconds")):
        scaled = matches(factor)
        if scaled >= max(3, 2 * plain, (min(len(s), len(c)) + 1) // 2):
            return (f"the arms' bucket bounds differ by a factor of 1000: the canary's bounds x{factor:g} match "
                    f"{scaled} of the stable's, unscaled {plain}; the canary's look like {canary_unit} and the "
                    f"stable's like {stable_unit} (latency bounds are milliseconds here: one exporter writes "
                    "another unit than the other)")
    return ""


# a canary this many times faster than stable at the median is read as a unit slip, not a release. 10, not
# 100: a canary exporting seconds that is really k times slower reads 1000/k times faster, and on native
# histograms (one log grid in either unit, where `_unit_mismatch` has no x1000 to match) a canary 20x slower
# read 50x faster and PASSed +20% and 250 ms. At 10 a slip hides only a canary more than 100x slower; a
# release really 10x faster at the median is ERROR (the reason names `same_unit: true`), never a wrong pass.
FAR_FASTER = 10.0


def _median_bound(h: Histogram, upper: bool, level: float) -> float:
    """An exact binomial bound on the arm's median at `level` (upper or lower); NaN when it has no request."""
    if not h.counts or not h.counts[-1] > 0:
        return math.nan
    arm = (Arm(h.bounds, h.counts, 0.5) if buckets.usable(h.counts)
           else evidence.ArrayArm(np.array(h.bounds), np.array(h.counts, float), 0.5))
    return arm.upper(level) if upper else arm.lower(level)


def _unit_slip(stable: Histogram, canary: Histogram, level: float) -> tuple[str, str]:
    """(why the check is refused, why a pass is withheld): the canary's median against the stable's, as
    a unit slip (one exporter writing seconds, the other milliseconds); ("", "") when neither.

    Refused: `_unit_mismatch` needs layouts that coincide after x1000; a canary exporting seconds on a
    layout of its own shares no bound with a stable in ms, and a `max_ms`-only check passed a canary
    whose p95 is 549 ms as "0.549 ms". A canary whose median the counts *show* FAR_FASTER times below
    the stable's (exact binomial bounds on each arm's own bounds, at `level`, the pass level: the
    canary's upper bound on its median against the stable's lower bound) is refused. Shown, not
    counted: a floor of 100 requests per arm let a slipped canary of 30 requests pass a p50 ceiling
    (and of 95 a p95 one) under a policy whose `min_canary_requests` is below 100, while a median of
    a few requests bounds nothing and is judged as before. A canary that can pass its quantile (q >=
    0.5) has its median bounded at the same level, so no slip passes unseen. The other way (a canary
    that looks 1000x slower) is a breach and fails: the safe side.

    Withheld too (`_wide_median`): a stable whose median is in its first bucket, (0, b0] (or (0, b1] above
    an empty `le="0"`), has no lower bound on it at any count, and a canary exporting seconds on a layout
    of its own passed a 250 ms ceiling with a p95 of 549 ms read as 0.58 ms (decision 534).

    Withheld: with a handful of stable requests (about 7 or fewer at the pass level: a 99% step, low
    traffic) the stable's median has no lower bound, and a canary exporting seconds passed a p95 +20%
    and a `max_ms: 1000` against 3 to 7 stable requests at 250-500 ms. When the canary's median is
    bounded FAR_FASTER times below the lower edge of the stable's median bucket as observed, a slip
    cannot be ruled out: such a look is not a pass (it may still fail); more stable requests decide it."""
    c_hi = _median_bound(canary, True, level)
    if not math.isfinite(c_hi):
        return "", ""
    s_lo = _median_bound(stable, False, level)
    if math.isfinite(s_lo) and s_lo > 0:
        if c_hi * FAR_FASTER <= s_lo:
            return (f"the canary's median latency is at most {c_hi:.3g} ms and the stable's at least {s_lo:.3g} ms: "
                    f"{f'{whole(s_lo / c_hi)}x' if c_hi > 0 and math.isfinite(s_lo / c_hi) else 'that much'} faster "
                    "is read as one exporter writing "
                    "seconds and the other "
                    "milliseconds (latency bounds are milliseconds here), not as a release"), ""
        return "", _wide_median(stable, canary, c_hi)
    if not stable.counts or not stable.counts[-1] > 0:
        return "", ""
    edge, _ = _median_bucket(stable)
    if edge > 0 and c_hi * FAR_FASTER <= edge:
        return "", (f"not yet a pass: the canary's median is at most {c_hi:.3g} ms, over {FAR_FASTER:g}x below the "
                    f"stable's {_n(stable.counts[-1])} requests (median above {edge:.3g} ms), too few to rule out one "
                    "exporter writing seconds; more stable requests decide it (or `same_unit: true`); ")
    return "", _wide_median(stable, canary, c_hi)


def _median_bucket(h: Histogram) -> tuple[float, float]:
    """The bucket (edge, top] that holds `h`'s median as observed (edge 0 for the first bucket); `h` has requests."""
    half = h.counts[-1] / 2
    i = next(k for k, v in enumerate(h.counts) if v >= half)
    return (h.bounds[i - 1] if i > 0 else 0.0), h.bounds[i]


def _wide_median(stable: Histogram, canary: Histogram, c_hi: float) -> str:
    """Why a pass is withheld when the stable's median bucket (edge, top], as observed, cannot rule out a
    unit slip: the canary's median bound `c_hi` FAR_FASTER times below `top`, with the bucket open to 0
    (no lower bound on the stable's median at any count) or the arms on layouts of their own (a canary in
    seconds on `0.3, 0.5, 0.7, 1` beside a stable's (1, 100] ms read its 850 ms p95 as 0.85 ms and passed
    a 250 ms ceiling: the stable's lower bound, 1 ms, is not 10x above 0.7). "" when it can (decision 534).
    One layout with an edge above 0 is left to `_unit_slip`'s exact bound: a canary 5x faster there passes."""
    edge, top = _median_bucket(stable)
    own = tuple(stable.bounds) != tuple(canary.bounds)
    if not (0 < top < math.inf and c_hi * FAR_FASTER <= top) or (edge > 0 and not own):
        return ""
    return (f"not a pass: the canary's median is at most {c_hi:.3g} ms, over {FAR_FASTER:g}x below the top of the "
            f"stable's median bucket, ({edge:g}, {top:g}] ms{' (no lower bound on its median)' if edge == 0 else ''}, "
            f"{'on a layout of its own' if own else 'on one layout'}: one exporter writing "
            "seconds cannot be ruled out (`same_unit: true` if both export milliseconds); ")


def _within_at_q(s_arm: evidence.ArrayArm | Arm, c_arm: evidence.ArrayArm | Arm, t: stats.TestResult,
                 shown: tuple[bool, float, str], *, q: float, tol: float) -> str:
    """What says the canary is within +tol at the limit's own quantile q, against the pair test `t` that
    compares another one (`t.compared`); "" when nothing does (docs/decisions.md 501).

    The buckets that hold each arm's empirical q-quantile: the canary's upper edge at most (1+tol) times
    the stable's lower edge. No interpolation, and the same shares give it at any scale, so the verdict
    does not turn with more data (a breach moot at 2,000 requests is moot at 200,000; "shown within" alone
    turned a FAIL at 1,000 into INCONCLUSIVE at 2,000). It is what the exact bounds tend to with more data:
    shown within (`evidence.relative_within_arms`: U_c <= (1+tol) L_s, with U_c >= that upper edge and L_s
    <= that lower edge) implies it, and the reason then says "shown". A canary beyond at q by more than
    noise has its buckets beyond too, so its breach still FAILs."""
    label = f"p{q * 100:g}"
    if not t.compared:  # no pair: the bounds test at q alone decides, about q itself
        return ""
    c_hi, s_lo = c_arm.bucket()[1], s_arm.bucket()[0]
    if not (s_lo > 0 and math.isfinite(c_hi) and c_hi <= (1 + tol) * s_lo * (1 + 1e-9)):
        return ""
    if shown[0]:
        bound = beside(shown[1] * 100, tol * 100, 0, fixed=True, sign=True)
        return f"shown within it at {label} itself (upper bound {bound}%)"
    return (f"within it at {label} itself by the buckets that hold each arm's {label} (canary {label} <= "
            f"{c_hi:g} ms, stable {label} > {s_lo:g} ms)")


def _latency(check: LatencyCheck, s: ArmData | None, c: ArmData, ctx: _Ctx) -> CheckResult:
    bad = _want(check, (c,) if s is None else (s, c), Histogram)
    if bad:
        return bad
    assert isinstance(c, Histogram)
    unshared: float | None = None  # the stable's requests when its layout shares no bound with the canary's
    slip = ""  # why a pass is withheld: a unit slip the stable's few requests cannot rule out (`_unit_slip`)
    if s is None:  # stable not measured: the ceiling alone, on the canary's own bounds
        bounds, sc, cc = c.bounds, None, c.counts
    else:
        assert isinstance(s, Histogram)
        refused, slip = ("", "") if check.same_unit else _unit_slip(s, c, ctx.beta)
        units = "" if check.same_unit else _unit_mismatch(s.bounds, c.bounds) or refused
        if units:  # not one layout: neither the comparison nor the canary's own bounds can be trusted ...
            if check.max_ms is not None:  # ... to pass. A ceiling breach on the canary's own bounds stands: a
                # canary read in the wrong unit reads 1000x *faster*, so its breach is real (a cache in front
                # of a model, 97% of requests under 1 ms and 3% at 5-10 s, hid a hard p99 ceiling's breach
                # behind this ERROR until the deadline, where without the stable arm it failed at once)
                alone = _latency(check, None, c, ctx)
                if alone.outcome is Outcome.FAIL:
                    n_s = float(s.counts[-1]) if s.counts else 0.0
                    said = alone.reason.replace(f"n={_n(alone.n_canary)}/0,", f"n={_n(alone.n_canary)}/{_n(n_s)},", 1)
                    return dataclasses.replace(alone, n_stable=n_s, reason=(
                        f"{said}; a breach on the canary's own bounds, in either unit (the ceiling alone is "
                        f"judged: {units})"))
            return _error(check, f"{units}; if both arms do export milliseconds (the canary is really this much "
                                 f"faster), set `same_unit: true` on check {check.name!r}")
        bounds, sc, cc = _shared(s, c)
        if len(bounds) < 2 and check.max_ms is not None:  # as without a stable arm: the ceiling alone
            bounds, sc, cc, unshared = c.bounds, None, c.counts, float(s.counts[-1]) if s.counts else 0.0
    if len(bounds) < 2:  # name the arm without a finite bound: "the arms share" said nothing where one arm is read
        alone = [a for a, h in (("canary", c), ("stable", s)) if isinstance(h, Histogram) and len(h.bounds) < 2]
        return _error(check, f"the {' and the '.join(alone)} histogram{'s have' if len(alone) > 1 else ' has'} only "
                             f"the +Inf bucket: no finite bucket bound resolves p{check.quantile * 100:g}" if alone
                      else "the arms share no finite bucket bound")
    q, label = check.quantile, f"p{check.quantile * 100:g}"
    # Each arm's numbers (quantile estimate, bucket, bounds) are computed once and shared by the
    # tests, the evidence and the reason.
    s_arm, c_arm, on_lists = _arms(bounds, sc, cc, q)
    # a ceiling is on the canary alone: judged on every bound the canary exports, whatever the stable's
    own, own_lists = c_arm, on_lists
    if check.max_ms is not None and tuple(bounds) != tuple(c.bounds):
        _, own, own_lists = _arms(c.bounds, None, c.counts, q)
    alpha, beta = ctx.alpha, ctx.beta
    a = alpha / max(1, tests_in(check))
    subs: list[tuple[str, stats.TestResult, bool]] = []
    if check.max_increase_pct is not None and s_arm is not None:
        tol = check.max_increase_pct / 100
        shown_q = evidence.relative_within_arms(s_arm, c_arm, q=q, tol=tol, level=beta)
        own_s = s if isinstance(s, Histogram) and tuple(s.bounds) != tuple(bounds) else None
        rel = attach(_latency_relative(s_arm, c_arm, on_lists=on_lists, tol=tol, alpha=a, own=own_s), shown_q)
        at_q = _within_at_q(s_arm, c_arm, rel, shown_q, q=q, tol=tol)
        subs.append(("relative", stats.replaced(rel, within_at_q=at_q), False))
    if check.max_ms is not None:
        subs.append(("ceiling", attach(_latency_ceiling(own, on_lists=own_lists, max_value=check.max_ms, alpha=a),
                                       evidence.ceiling_within_arm(own, q=q, max_value=check.max_ms,
                                                                   level=beta)), True))
    n = (s_arm.total if s_arm is not None else unshared or 0.0, c_arm.total)
    subs, seq = _pool(check, subs, ctx, info=effective_requests(*n), info_canary=n[1])
    outcome, (name, t, _), more = _verdict(check, subs, n[1], ctx.min_canary)
    # layouts with no bound in common: a relative limit beside the ceiling cannot be compared, so the
    # check never passes; a ceiling breach still fails
    not_judged = (f"+{exact(check.max_increase_pct)}% not judged: the arms share no finite bucket bound (stable and "
                  "canary export different layouts); ") if unshared is not None and check.max_increase_pct is not None else ""
    not_judged = not_judged or slip
    if not_judged and outcome is Outcome.PASS:
        outcome = Outcome.INCONCLUSIVE
    sv = s_arm.estimate() if s_arm is not None else math.nan
    cv = c_arm.estimate()
    c_text = _q_text(c_arm)
    # an arm in the open +Inf bucket has only a lower bound: its value is the last finite bound, named as
    # a bound in the result (`CheckResult.bounded`), as the reason writes it ('>b')
    bounded = {"stable_value": ">"} if s_arm is not None and _open(s_arm) else {}
    if name == "relative":
        assert s_arm is not None
        s_text = _q_text(s_arm)
        # the increase is then a lower bound (canary), an upper one (stable), or unknown (both: '?', never
        # the '>+0%' of two lower bounds)
        c_open, s_open = _open(c_arm), _open(s_arm)
        rel = (cv / sv - 1) * 100 if sv > 0 and not (c_open and s_open) else math.nan
        side = "" if math.isnan(rel) else ">" if c_open else "<" if s_open else ""
        rel_text = side + beside(rel, check.max_increase_pct, 0, fixed=True, sign=True) + "%"
        head = (f"canary {label} {c_text} ms vs stable {s_text} ms ({rel_text}, "
                f"limit +{exact(check.max_increase_pct)}%)")
        threshold, effect, unit = float(check.max_increase_pct), rel, "+%"  # type: ignore[arg-type]
        bounded.update({"canary_value": ">"} if c_open else {})
        bounded.update({"effect_size": side} if side else {})
    else:
        cv = own.estimate()
        head = f"canary {label} {_q_text(own, check.max_ms)} ms (limit {exact(check.max_ms)} ms)"
        threshold, effect, unit = float(check.max_ms), cv, "ms"  # type: ignore[arg-type]
        bounded.update({"canary_value": ">", "effect_size": ">"} if _open(own) else {})
    reason = (f"{not_judged if outcome is not Outcome.FAIL else ''}{head}, n={_n(n[1])}/{_n(n[0])}, "
              f"p={_p(t.p_value)}" + (f"; {more}" if more else ""))
    return _result(check, outcome, reason, t, n=n, threshold=threshold, effect=effect, alpha=alpha, subs=subs,
                   seq=seq, stable_value=sv, canary_value=cv, threshold_unit=unit, value_unit="ms", bounded=bounded)


def _proportion(check: ErrorRateCheck | FeatureMissingCheck, s: ArmData | None, c: ArmData, ctx: _Ctx
                ) -> CheckResult:
    bad = _want(check, (c,) if s is None else (s, c), Counts)
    if bad:
        return bad
    assert isinstance(c, Counts) and (s is None or isinstance(s, Counts))
    alpha, beta = ctx.alpha, ctx.beta
    a = alpha / max(1, tests_in(check))
    subs: list[tuple[str, stats.TestResult, bool]] = []
    if check.max_increase_points is not None and s is not None:
        m = check.max_increase_points / 100
        subs.append(("increase", attach(stats.proportion_increase(s.events, s.total, c.events, c.total, margin=m,
                                                                  alpha=a),
                                        evidence.increase_within(s.events, s.total, c.events, c.total, margin=m,
                                                                 level=beta)), False))
    if check.max_rate_pct is not None:
        r = check.max_rate_pct / 100
        subs.append(("ceiling", attach(stats.proportion_ceiling(c.events, c.total, max_rate=r, alpha=a),
                                       evidence.rate_within(c.events, c.total, max_rate=r, level=beta)), True))
    n = (float(s.total) if s is not None else 0.0, float(c.total))
    subs, seq = _pool(check, subs, ctx, info=effective_requests(*n), info_canary=n[1])
    outcome, (name, t, _), more = _verdict(check, subs, n[1], ctx.min_canary)
    what = "errors" if check.kind == "error_rate" else "missing"
    sv, cv = (s.rate * 100 if s is not None else math.nan), c.rate * 100
    if name == "increase":
        head = (f"canary {what} {_g(cv)}% vs stable {_g(sv)}% ({beside(cv - sv, check.max_increase_points, 2, sign=True)} points, "
                f"limit +{exact(check.max_increase_points)})")
        threshold, effect, unit = float(check.max_increase_points), cv - sv, "points"  # type: ignore[arg-type]
    else:
        head = f"canary {what} {beside(cv, check.max_rate_pct)}% (limit {exact(check.max_rate_pct)}%)"
        threshold, effect, unit = float(check.max_rate_pct), cv, "%"  # type: ignore[arg-type]
    reason = f"{head}, n={_n(n[1])}/{_n(n[0])}, p={_p(t.p_value)}" + (f"; {more}" if more else "")
    return _result(check, outcome, reason, t, n=n, threshold=threshold, effect=effect, alpha=alpha, subs=subs,
                   seq=seq, stable_value=sv, canary_value=cv, threshold_unit=unit, value_unit="%")


def _shift(check: PredictionShiftCheck, s: ArmData, c: ArmData, ctx: _Ctx) -> CheckResult:
    """Each limit on its own statistic: max_psi on PSI, max_js on the JS distance (`shift.shift_tests`)."""
    bad = _want(check, (s, c), Histogram)
    if bad:
        return bad
    shared, sc, cc = _shared(s, c)  # type: ignore[arg-type]
    per_s, per_c = _per_bucket(sc), _per_bucket(cc)
    subs = [(name, t, False) for name, t in shift.shift_tests(per_s, per_c, max_psi=check.max_psi,
                                                               max_js=check.max_js, alpha=ctx.alpha,
                                                               beta=ctx.beta)]
    merged = _merged_note(s, c, shared)  # type: ignore[arg-type]
    if merged:  # PSI and JS only shrink when cells merge: a breach stands, a "within" shows nothing
        subs = [(nm, stats.replaced(t, within=False, why_not=merged), hard) for nm, t, hard in subs]
    n = (float(sc[-1]), float(cc[-1]))
    subs, seq = _pool(check, subs, ctx, info=effective_requests(*n), info_canary=n[1])
    floor, n_text, rows = _floor(n, (s, c), "predictions")  # type: ignore[arg-type]
    outcome, (name, t, _), more = _verdict(check, subs, floor, ctx.min_canary, n_text=n_text)
    by = {nm: r for nm, r, _ in subs}
    limit = {"psi": check.max_psi, "js": check.max_js}
    parts = [f"{nm.upper()} {beside(r.effect, limit[nm], 2)} (limit {exact(limit[nm])}, upper {_upper(r.bound, limit[nm])})"
             for nm, r in by.items()]
    reason = (", ".join(parts) + f", chi2={_g(t.statistic)}, {rows}, p={_p(t.p_value)}"
              + (f"; {more}" if more else ""))
    res = _result(check, outcome, reason, t, n=n, threshold=float(limit[name]), effect=t.effect,  # type: ignore[arg-type]
                  alpha=ctx.alpha, subs=subs, seq=seq, threshold_unit=name)
    res.extra.update(_request_counts(s, c))  # type: ignore[arg-type]
    if "psi" in by:
        res.extra["psi_upper"] = _clean(by["psi"].bound)
    if "js" in by:
        res.extra.update({"js_distance": _clean(by["js"].effect), "js_upper": _clean(by["js"].bound)})
    return res


def _floor(n: tuple[float, float], arms: tuple[Histogram | FeatureCounts, Histogram | FeatureCounts], rows: str
           ) -> tuple[float, str, str]:
    """For a check whose observations are rows, not requests (predictions, feature values: one per
    output or input row, many per batched request): the canary count `min_canary_requests` is
    compared with (its requests when the measurement carries them, else its rows; its rows when
    fewer than its requests: requests that failed answered nothing, and a floor met by them
    passed 200 predictions against a floor of 1,000), how the floor
    message says it, and the n= part of the reason ("n=222/2,740 predictions, from 64/700 requests")."""
    s_req, c_req = (a.requests for a in arms)
    counted = f"n={_n(n[1])}/{_n(n[0])} {rows}"
    if c_req is None:  # not measured (an export without "requests"): rows are all there is
        return n[1], f"{_n(n[1])} {rows} (no request count)", f"{counted} (no request counts)"
    said = f"{counted}, from {_n(c_req)}/{_n(s_req) if s_req is not None else '?'} requests"
    if n[1] < c_req:  # fewer rows than requests: failed requests answered nothing, and rows are what is judged
        return n[1], f"{_n(n[1])} {rows} (fewer than its {_n(c_req)} requests)", said
    return c_req, f"{_n(c_req)} requests ({_n(n[1])} {rows})", said


def _request_counts(s: Histogram | FeatureCounts, c: Histogram | FeatureCounts) -> dict[str, Any]:
    return {"requests_stable": s.requests, "requests_canary": c.requests}


MAX_FEATURES = 500  # features one feature_drift check compares (as many as a policy may list)


def _feature_drift(check: FeatureDriftCheck, s: ArmData, c: ArmData, ctx: _Ctx) -> CheckResult:
    """Each feature's distribution, canary vs stable, with the missing values as one more cell.

    Per feature and limit a sub-test "psi:<feature>" / "js:<feature>" (`shift.shift_tests`,
    pooled over windows like any sub-test), at the limit's level split evenly over the features
    compared. FAIL when one feature is shown beyond a limit, or when the schema moved (a listed
    feature the canary does not export, a feature numeric in one arm and categorical in the
    other); PASS only when every feature is shown within; ERROR when a feature cannot be
    compared (stable does not export a listed one; the arms share no bucket bound). Without a
    `features` list every feature stable exports is compared (one the canary lacks fails);
    the exporter's prediction column is not among them (role="prediction").
    """
    bad = _want(check, (s, c), FeatureCounts)
    if bad:
        return bad
    assert isinstance(s, FeatureCounts) and isinstance(c, FeatureCounts)
    s_names, c_names = s.names(), c.names()
    # Unlisted, every feature stable exports is compared: one the canary dropped is a schema change (an
    # upstream pipeline that stopped sending it), never a quiet pass; features only the canary has are
    # reported. A new version that legitimately drops an input lists the ones to compare.
    names = list(check.features) if check.features else sorted(s_names)
    if not names:
        return _error(check, f"stable exports no feature (canary: {_few(c_names)})")
    if len(names) > MAX_FEATURES:
        return _error(check, f"{len(names)} features in common, more than {MAX_FEATURES}: list the ones to "
                             "compare in the check's `features`")
    schema: list[str] = []  # facts, not statistics: the canary's inputs are not stable's
    unusable: list[str] = []  # cannot be compared: never a pass
    cells: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    for f in names:
        if f not in s_names:
            unusable.append(f"stable exports no feature {f!r}")
        elif f not in c_names:
            schema.append(f"{f}: the canary does not export it")
        elif s.kind(f) and c.kind(f) and s.kind(f) != c.kind(f):
            schema.append(f"{f}: {s.kind(f)} in stable, {c.kind(f)} in canary")
        else:
            got = _feature_cells(f, s, c)
            if isinstance(got, str):
                unusable.append(got)
            else:
                cells.append((f, *got))
    limits = [name for name in ("psi", "js") if getattr(check, f"max_{name}") is not None]
    share = max(1, len(names))
    base = {name: ctx.levels.get(name, ctx.alpha / len(limits)) for name in limits}
    subs: list[tuple[str, stats.TestResult, bool]] = []
    seq: dict[str, dict] = {}
    per_feature: list[dict[str, Any]] = []
    for f, ps, pc, merged in cells:
        tests = [(f"{name}:{f}", t, False) for name, t in shift.shift_tests(
            ps, pc, max_psi=check.max_psi, max_js=check.max_js, alpha=ctx.alpha / share, beta=ctx.beta)]
        if merged:  # as in `_shift`: a breach stands, a "within" on merged cells shows nothing
            tests = [(nm, stats.replaced(t, within=False, why_not=f"{f}: {merged}"), a) for nm, t, a in tests]
        n_f = (float(ps.sum()), float(pc.sum()))
        levels = {f"{name}:{f}": base[name] / share for name in limits}
        pooled, more = _pool(check, tests, dataclasses.replace(ctx, levels=levels),
                             info=effective_requests(*n_f), info_canary=n_f[1])
        subs += pooled
        seq.update(more)
        row: dict[str, Any] = {"feature": f, "n_stable": n_f[0], "n_canary": n_f[1],
                               "missing_stable": _clean(float(ps[-1] / n_f[0]) if n_f[0] else math.nan),
                               "missing_canary": _clean(float(pc[-1] / n_f[1]) if n_f[1] else math.nan)}
        for name, t, _ in pooled:
            lim = name.partition(":")[0]
            row.update({lim: _clean(t.effect), f"{lim}_upper": _clean(t.bound)})
        row["breach"] = any(t.breach and not t.within for _, t, _ in pooled)
        row["within"] = all(t.within for _, t, _ in pooled)
        per_feature.append(row)
    n = (max((float(p.sum()) for _, p, _, _ in cells), default=0.0), c.total)
    floor, n_text, rows = _floor(n, (s, c), "rows")
    limit_of = {"psi": check.max_psi or math.inf, "js": check.max_js or math.inf}
    small = floor < ctx.min_canary and not check.hard
    head = f"{len(cells)} of {len(names)} features compared"
    # one line per feature would drown the reason: the per-feature numbers are in extra["features"]
    subs = [(nm, stats.replaced(t, note=""), a) for nm, t, a in subs]
    if subs:
        outcome, (name, t, _), more = _verdict(check, subs, floor, ctx.min_canary, n_text=n_text)
        if outcome is not Outcome.FAIL:  # show the feature closest to its limit, not the smallest p
            # an unbounded upper (a cell one arm never hits) is the furthest from within; a feature that
            # could not be compared (NaN) the nearest
            name, t, _ = max(subs, key=lambda x: _closeness(x[1].bound / limit_of[x[0].partition(":")[0]]))
    else:
        outcome, name, t, more = Outcome.INCONCLUSIVE, "", stats.TestResult(False, False, 1.0), "nothing compared"
    lim = name.partition(":")[0]
    limit = {"psi": check.max_psi, "js": check.max_js}
    if schema and not small:
        outcome, more = Outcome.FAIL, "schema changed: " + "; ".join(schema[:5]) + (
            f" (and {len(schema) - 5} more)" if len(schema) > 5 else "")
    elif schema and outcome is not Outcome.FAIL:
        outcome, more = Outcome.INCONCLUSIVE, f"schema changed ({'; '.join(schema[:3])}) but canary {n_text} " \
                                              f"below min {ctx.min_canary:,}"
    elif unusable and outcome is not Outcome.FAIL:
        outcome, more = Outcome.ERROR, "; ".join(unusable[:5]) + (
            f" (and {len(unusable) - 5} more)" if len(unusable) > 5 else "")
    drifted = [r["feature"] for r in per_feature if r["breach"]]
    if name:
        worst = name.partition(":")[2]
        head += (f"; {'beyond' if drifted else 'worst'}: {worst} {lim.upper()} {beside(t.effect, limit[lim], 2)} "
                 f"(limit {exact(limit[lim])}, upper {_upper(t.bound, limit[lim])})")
        if len(drifted) > 1:
            head += f" and {len(drifted) - 1} more ({_few(drifted[1:])})"
    reason = f"{head}, {rows}, p={_p(t.p_value)}" + (f"; {more}" if more else "")
    res = _result(check, outcome, reason, t, n=n, threshold=float(limit[lim] or math.nan) if lim else math.nan,
                  effect=t.effect if name else math.nan, alpha=ctx.alpha, subs=subs or [(name, t, False)], seq=seq,
                  threshold_unit=lim)
    res.extra.update({"features": sorted(per_feature, key=lambda r: (not r["breach"], -(r.get(limits[0]) or 0.0)))[:50],
                      "schema": schema, "unusable": unusable,
                      "only_stable": sorted(s_names - c_names)[:50], "only_canary": sorted(c_names - s_names)[:50],
                      **_request_counts(s, c)})
    return res


def _feature_cells(f: str, s: FeatureCounts, c: FeatureCounts) -> tuple[np.ndarray, np.ndarray, str] | str:
    """Per-cell counts of one feature in both arms, missing values last, and why they cannot show it
    within a limit ("" when they can: `_merged_note`); a reason when the arms cannot be compared cell
    for cell (numeric buckets that share no bound)."""
    if f in s.numeric or f in c.numeric:
        hs, hc = s.numeric.get(f), c.numeric.get(f)
        if hs is not None and hc is not None:
            bounds, sc, cc = _common(hs, hc)
            merged = _merged_note(hs, hc, tuple(bounds))
            if len(bounds) < 2:
                return (f"{f}: the arms' buckets share no finite bound (capture the canary's profile with "
                        "`canary baseline capture --bounds-from` the stable's)")
            ps, pc = np.diff(sc, prepend=0.0), np.diff(cc, prepend=0.0)
            return np.append(ps, s.missing.get(f, 0.0)), np.append(pc, c.missing.get(f, 0.0)), merged
        else:  # one arm has only missing values for it: one "present" cell
            ps = np.array([hs.total if hs is not None else 0.0])
            pc = np.array([hc.total if hc is not None else 0.0])
    else:
        cs, cc_ = s.categorical.get(f, {}), c.categorical.get(f, {})
        cats = sorted(set(cs) | set(cc_))
        ps = np.array([cs.get(k, 0.0) for k in cats], float)
        pc = np.array([cc_.get(k, 0.0) for k in cats], float)
    return np.append(ps, s.missing.get(f, 0.0)), np.append(pc, c.missing.get(f, 0.0)), ""


def _few(names: Any, limit: int = 5) -> str:
    """Up to `limit` names, then how many more; 'none' for none."""
    items = sorted(names)
    if not items:
        return "none"
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit})" if len(items) > limit else "")

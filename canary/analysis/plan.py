"""Size a rollout before starting it: how long, and what it can detect.

Why: a policy that cannot see a +20% p95 regression at the traffic a model
gets is a false comfort; a release engineer should learn that from
`canary plan`, not from an incident. Per judged step this computes the canary
and stable requests at the end of the step and the smallest regression the
judge detects there with 95% power. Evidence is pooled over steps
(`sequential`): at the end of step i the judge has the information of steps
1..i, and a breach needs the anytime p-value of all of it below alpha / tests,
i.e. the pooled z above `sequential.z_boundary(I)`; the column `alpha` is the
fixed-sample level equivalent to that boundary.

Power is analytic, hence deterministic: the same normal/noncentral
chi-square approximations the tests use, with an assumed shape for latency
(lognormal, --latency-sigma), on the real bucket layout where it was read
(`plan_layout`), else on buckets a given ratio apart at their worst.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from canary.analysis.evidence import layout_problem, pass_level, planned_ratio, quantile_bucket
from canary.analysis.plan_layout import (LatencyLayout, ceiling_problem, detection_pair, fit_layout,
                                         layout_ceiling_ms, layout_pass_pct, layout_power, with_quantile)
from canary.analysis.sequential import (EXACT_SHARE, POOLED_SHARE, effective_requests, fail_level, looks_per_step, sub_levels,
                                        z_boundary)
from canary.model import Histogram, pass_floor
from canary.policy import (CustomCheck, ErrorRateCheck, FeatureMissingCheck, LatencyCheck, Policy,
                           PredictionShiftCheck)
from canary.analysis.shift import js_to_psi
from canary.analysis.stats import BEYOND_SHARE, LAZY_STATS as st

POWER = 0.95


@dataclass(frozen=True)
class StepPlan:
    weight: int
    seconds: float
    canary_requests: float
    stable_requests: float
    # fixed-sample level equivalent to the anytime boundary at the step's last look (0.0 where the
    # step's evidence is so small that no look can fail: the level underflows)
    alpha: float
    p95_increase_pct: float | None  # smallest detectable canary quantile increase, %
    error_points: float | None  # smallest detectable error-rate increase, points
    psi: float | None  # smallest detectable PSI (against max_psi; None without one)
    js: float | None = None  # smallest detectable Jensen-Shannon distance, base 2 (against max_js)
    # The pass side: the tightest limits a canary *equal* to stable is shown within, with 95%
    # probability, at the step's deadline look (the most data a pass can use). A policy limit below
    # the value means a good canary will usually not pass that step in time.
    pass_p95_pct: float | None = None  # relative p95 limit, %
    pass_error_points: float | None = None  # error-rate increase limit, points
    # each planned sub-test's own value, by "check/test" (the keys of `sequential.sub_levels`):
    # the tightest limit shown, in its unit (`Plan.pass_checks`); for a latency ceiling ("ms") the
    # largest canary quantile shown below the policy's max_ms
    pass_by_check: dict[str, float | None] = field(default_factory=dict)
    pass_by_s: float = 0.0  # the deadline look: interval + no_data_deadline after the step starts
    pass_canary_requests: float = 0.0  # the step window's canary requests there
    # the detection column per latency check with max_increase_pct, each on its own layout (read, or
    # --bucket-ratio): `p95_increase_pct` is the smallest of them (a rollback needs any one to fail)
    latency_by_check: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    rps: float
    # judged steps only, each passing at its first look that covers its interval (ceil(interval / look_every)
    # looks): the shortest rollout (the 100% step is a promotion)
    seconds: float
    looks: int
    steps: tuple[StepPlan, ...]
    assumptions: str
    bucket_ratio: float = 1.0  # the latency layout assumed at the quantile (1: fine)
    # every judged step running to its deadline: its first look at or past interval + no_data_deadline
    longest_s: float = 0.0
    # per limit the pass side plans: {"check", "test", "key" ("check/test"), "limit", "unit", "late_steps":
    # [weights where a good canary is not shown within with 95% probability by the deadline]; a latency
    # ceiling ("ms") also has "depends_on_latency": true when --p95-ms was not given (late_steps then
    # holds only the steps that show no latency below it at all) and, when known, "canary_quantile_ms"; a rate
    # ceiling ("% rate") has "canary_rate_pct", the baseline rate assumed (--error-rate / --missing-rate)}
    pass_checks: tuple[dict[str, Any], ...] = ()
    pass_unplanned: tuple[str, ...] = ()  # sub-tests ("check/test") the pass side does not plan (feature drift)
    # steps whose window holds fewer than min_canary_requests canary requests by the deadline: no look passes
    floor_steps: tuple[int, ...] = ()
    min_canary_requests: int = 0
    custom_checks: tuple[str, ...] = ()  # comparisons without statistics: nothing to plan
    latency_quantile: float | None = None  # the quantile of the latency check the detection column plans
    # latency checks planned on their real bucket layout (read with --prometheus-url), and the
    # stable's latency there at each check's quantile, ms (from --p95-ms when given, else fitted)
    layout_checks: dict[str, float] = field(default_factory=dict)
    # per relative latency check planned on its layout: the bound pair its breach test uses, in words
    layout_detection: dict[str, str] = field(default_factory=dict)
    p95_ms: float | None = None  # the stable's p95 as given (--p95-ms)


def _bisect(power, lo: float, hi: float) -> float | None:
    """Smallest x in [lo, hi] with power(x) >= POWER (power increasing in x)."""
    if power(hi) < POWER:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(mid) >= POWER else (mid, hi)
    return hi


def _two_prop_power(p0: float, p1: float, n_s: float, n_c: float, *, margin: float, alpha: float) -> float:
    """Power of the one-sided score test of p1 - p0 <= margin (normal approximation)."""
    if n_s <= 0 or n_c <= 0 or p1 >= 1:
        return 0.0
    se1 = math.sqrt(p1 * (1 - p1) / n_c + p0 * (1 - p0) / n_s)
    r0 = min(max(p0 + margin, 1e-12), 1 - 1e-12)  # null variance at the margin boundary
    se0 = math.sqrt(r0 * (1 - r0) / n_c + p0 * (1 - p0) / n_s)
    return float(st.norm.cdf((p1 - p0 - margin - st.norm.isf(alpha) * se0) / se1))


Look = tuple[float, float, float]  # (pooled stable requests, pooled canary requests, fixed-sample level)


def _all_fail(power_at: Callable[[float, float, float], Callable[[float], float]],
              looks: Sequence[Look]) -> Callable[[float], float]:
    """A lower bound on P(every look in `looks` fails) at effect x: P(A and B and ...) >= sum P - (k - 1)
    (Frechet). The looks between the first and the last of a run see more of the same data than
    the first, so bounding with those two under-states what the run needs: the claim errs low."""
    fns = [power_at(*look) for look in looks]
    return lambda x: max(0.0, sum(f(x) for f in fns) - (len(fns) - 1))


def _latency_power(q: float, tol: float, sigma: float) -> Callable[[float, float, float], Callable[[float], float]]:
    z_q = st.norm.ppf(q)

    def at(n_s: float, n_c: float, alpha: float) -> Callable[[float], float]:
        def power(r: float) -> float:
            p1 = float(st.norm.sf(z_q + math.log((1 + tol) / r) / sigma))  # canary above (1+tol)*stable_q
            return _two_prop_power(1 - q, p1, n_s, n_c, margin=0.0, alpha=alpha)
        return power
    return at


def _error_power(base: float, margin: float) -> Callable[[float, float, float], Callable[[float], float]]:
    return lambda n_s, n_c, alpha: (lambda d: _two_prop_power(base, base + d, n_s, n_c, margin=margin, alpha=alpha))


def _psi_power(max_psi: float, bins: int) -> Callable[[float, float, float], Callable[[float], float]]:
    def at(n_s: float, n_c: float, alpha: float) -> Callable[[float], float]:
        if n_s <= 0 or n_c <= 0:
            return lambda x: 0.0
        n_eff, df = n_s * n_c / (n_s + n_c), max(bins - 1, 1)
        crit = float(st.ncx2.isf(alpha, df, n_eff * max_psi))
        return lambda x: float(st.ncx2.sf(crit, df, n_eff * x))
    return at


def latency_detectable(n_s: float, n_c: float, *, q: float, tol: float, sigma: float, alpha: float,
                       looks: Sequence[Look] = ()) -> float | None:
    """Smallest canary scale-up (as %) the exceedance test finds with 95% power (at every look of
    `looks` when given, else at the one look (n_s, n_c, alpha))."""
    r = _bisect(_all_fail(_latency_power(q, tol, sigma), looks or [(n_s, n_c, alpha)]), 1 + tol, 20.0)
    return None if r is None else (r - 1) * 100


def error_detectable(n_s: float, n_c: float, *, base: float, margin: float, alpha: float,
                     looks: Sequence[Look] = ()) -> float | None:
    """Smallest error-rate increase (points) found with 95% power at baseline `base`. The normal test keeps
    1 - EXACT_SHARE of each look's level (the judge divides its p by that beside the exact test,
    `sequential.increase_p`), so each look's level is taken so here, as `_smallest_slowdown` does."""
    keep = 1.0 - EXACT_SHARE
    r = _bisect(_all_fail(_error_power(base, margin), [(s, c, lvl * keep) for s, c, lvl in (looks or [(n_s, n_c, alpha)])]),
                margin, 1 - base - 1e-9)
    return None if r is None else r * 100


def psi_detectable(n_s: float, n_c: float, *, max_psi: float, bins: int, alpha: float,
                   looks: Sequence[Look] = ()) -> float | None:
    """Smallest PSI whose noncentral chi-square test against max_psi has 95% power."""
    if not looks and (n_s <= 0 or n_c <= 0):
        return None
    return _bisect(_all_fail(_psi_power(max_psi, bins), looks or [(n_s, n_c, alpha)]), max_psi, 50.0)


def decision_look(policy: Policy, *, canary_rate: float, hard: bool = False) -> float | None:
    """Seconds into a step of the latest look at which a breach first seen still ends the step
    rolled back by its end (its `interval`), or None when no look can.

    A rollback needs `failure.max_failed_looks` consecutive failed looks (1 for a hard check),
    looks come every `look_every` from the step's start, and a comparison cannot FAIL while the
    step's window holds fewer than `min_canary_requests` canary requests (the judge's floor).
    So the first failed look must be at the last multiple of `look_every` that leaves room for
    the others before the interval ends, and hold the floor's requests there.
    """
    a = policy.analysis
    run = 1 if hard else policy.failure.max_failed_looks
    first = math.floor(a.interval / a.look_every + 1e-9) - (run - 1)
    if first < 1:
        return None
    t = first * a.look_every
    return t if canary_rate * t >= a.min_canary_requests else None


def plan(policy: Policy, *, rps: float, canary_share: float | None = None, latency_sigma: float = 0.5,
         error_rate: float = 0.005, bins: int = 10, bucket_ratio: float = 1.0, missing_rate: float = 0.005,
         p95_ms: float | None = None, unresolved: Collection[str] = (),
         layouts: Mapping[str, LatencyLayout] | None = None) -> Plan:
    """Per judged step: duration, requests, and the smallest regressions detected by its end.

    "Detected by the end of step i" means rolled back at or before the step's interval ends, with
    95% probability, by the state machine's rules rather than by one test at the step's end: the
    run of `max_failed_looks` failed looks must fit in the interval, its first look at
    `decision_look` (where the step's window must hold `min_canary_requests` canary requests),
    every look tested at the anytime boundary for the evidence pooled until then (`_all_fail`
    bounds the run from below). None: not detectable by that step's end.

    `bucket_ratio` (>= 1): the ratio of neighbouring latency bucket bounds around the stable's
    quantile (1: fine buckets). The judge tests at bucket bounds, so in the worst case its limit
    sits a whole bucket further out: the latency column is computed against (1 + limit) *
    bucket_ratio (an under-statement of power, never an over-statement). `layouts`: per latency
    check, the real bounds read and the stable's place in them (`plan_layout.fit_layout`); such a
    check is planned on them instead, detection and pass alike (`plan_layout`), the stable's
    quantile moved to `p95_ms` when that is given.

    The pass side (`pass_tests`): per judged step and per sub-test of the policy, the tightest
    limit a canary *equal* to stable is shown within, with 95% probability, at the step's deadline
    look; baselines `error_rate` and `missing_rate` (fractions), `bins` prediction cells, and for
    latency ceilings the stable's p95 `p95_ms` (other quantiles from the lognormal shape) when given.
    `unresolved`: latency sub-tests ("check/relative", "check/ceiling") whose real bucket layout cannot
    show a canary as fast as stable within their limit (`layout_report`): late at every step, whatever
    the traffic.
    """
    if rps <= 0:
        raise ValueError("rps must be positive")
    if not (math.isfinite(bucket_ratio) and bucket_ratio >= 1):
        raise ValueError("bucket_ratio must be a finite number >= 1")
    a = policy.analysis
    per_step = looks_per_step(policy)
    level = fail_level(policy)
    relative = [c for c in policy.checks if isinstance(c, LatencyCheck) and c.max_increase_pct is not None]
    lat = relative[0] if relative else None
    read = _placed(policy, layouts or {}, sigma=latency_sigma, p95_ms=p95_ms)
    err = next((c for c in policy.checks if isinstance(c, (ErrorRateCheck, FeatureMissingCheck))
                and c.max_increase_points is not None), None)
    shift = next((c for c in policy.checks if isinstance(c, PredictionShiftCheck)), None)
    passing = pass_tests(policy, sigma=latency_sigma, error_rate=error_rate, missing_rate=missing_rate, bins=bins,
                         bucket_ratio=bucket_ratio, unresolved=unresolved, layouts=read)
    detect = {c.name: _latency_detection(c, read.get(c.name), sigma=latency_sigma, bucket_ratio=bucket_ratio)
              for c in relative}
    err_pass = next((c for c in policy.checks if isinstance(c, ErrorRateCheck) and c.max_increase_points is not None),
                    None)
    last = a.interval + policy.failure.no_data_deadline  # the deadline look: the most data a pass can use
    beta = pass_level(policy, 0, planned_ratio(policy))
    strict = pass_level(policy, 0, planned_ratio(policy) * (1 + 1e-6))  # past the planned ratio: the next epoch
    steps = []
    judged = [w for w in policy.steps if w < 100]
    info = pooled_c = pooled_s = 0.0  # pooled over the whole steps before this one
    for w in judged:
        share = canary_share if canary_share is not None else w / 100
        rate_c, rate_s = rps * share, rps * (1 - share)

        def look_at(t: float) -> Look:
            i = info + effective_requests(rate_s * t, rate_c * t)
            # the pooled test runs at POOLED_SHARE of the level (the rest is each window's own test)
            return (pooled_s + rate_s * t, pooled_c + rate_c * t,
                    float(st.norm.sf(z_boundary(i, level * POOLED_SHARE))) if i > 0 else 0.0)

        def run(hard: bool) -> list[Look]:
            """The first and the last look of the run of failed looks that ends the step rolled back."""
            first = decision_look(policy, canary_rate=rate_c, hard=hard)
            if first is None:
                return []
            return [look_at(first)] if first >= a.interval - 1e-9 else [look_at(first), look_at(a.interval)]

        def smallest(check: Any, fn: Callable[..., float | None], **kw: Any) -> float | None:
            looks = run(bool(getattr(check, "hard", False)))
            return fn(0.0, 0.0, alpha=0.0, looks=looks, **kw) if looks else None

        n_c, n_s = rate_c * a.interval, rate_s * a.interval
        end = look_at(a.interval)
        looks = _pass_looks(policy, rate_s, rate_c, last=last, lenient=beta, strict=strict)
        shown = {t.key: _best(t, looks) for t in passing}
        by_check = {name: None if power is None else smallest(c, _smallest_slowdown, power=power)
                    for (name, power), c in zip(detect.items(), relative)}
        found = [x for x in by_check.values() if x is not None]
        steps.append(StepPlan(
            weight=w, seconds=a.interval, canary_requests=_count(n_c), stable_requests=_count(n_s), alpha=end[2],
            p95_increase_pct=min(found) if found else None, latency_by_check=by_check,
            error_points=None if err is None else smallest(
                err, error_detectable, base=error_rate if isinstance(err, ErrorRateCheck) else missing_rate,
                margin=err.max_increase_points / 100),
            psi=None if shift is None or not shift.max_psi else smallest(
                shift, psi_detectable, bins=bins, max_psi=shift.max_psi),
            js=None if shift is None or not shift.max_js else _js_of(smallest(
                shift, psi_detectable, bins=bins, max_psi=js_to_psi(shift.max_js))),
            pass_p95_pct=None if lat is None else shown[f"{lat.name}/relative"],  # the first of each kind
            pass_error_points=None if err_pass is None else shown[f"{err_pass.name}/increase"],
            pass_by_s=last, pass_canary_requests=_count(rate_c * last), pass_by_check=shown,
        ))
        info += effective_requests(n_s, n_c)
        pooled_c, pooled_s = pooled_c + n_c, pooled_s + n_s
    buckets = "fine buckets" if bucket_ratio == 1 else f"buckets x{bucket_ratio:.3g} apart at the quantile"
    at_ms = {name: x.quantile_ms(_quantile_of(policy, name), latency_sigma) for name, x in read.items()}
    if read:
        on = ", ".join(f"{name} (stable p{_quantile_of(policy, name) * 100:g} {ms:.3g} ms)" for name, ms in at_ms.items())
        rest = len(read) < sum(isinstance(c, LatencyCheck) for c in policy.checks)
        buckets = (f"the real bucket layout read for {on}" + ("" if p95_ms is None else " placed at --p95-ms")
                   + (f", {buckets} elsewhere" if rest else ""))
    if unresolved:
        buckets += (f" (the real layout of {', '.join(unresolved)} cannot show a canary as fast as stable within: "
                    "never passed)")
    assumptions = (f"latency lognormal sigma={latency_sigma:g} with {buckets}"
                   + (f", stable p95 {p95_ms:g} ms" if p95_ms is not None else "")
                   + f"; baseline error rate {error_rate * 100:g}%, missing features {missing_rate * 100:g}%; {bins} "
                   f"equally likely prediction cells; power {POWER:.0%} of a rollback by the step's end: "
                   f"{_looks_needed(policy.failure.max_failed_looks, a.look_every, a.min_canary_requests)}; "
                   "evidence pooled over the steps")
    # the coarsest bucket at a quantile, read or assumed (a first or +Inf bucket has no ratio)
    coarsest = max([bucket_ratio, *(r for name, x in read.items()
                                    if math.isfinite(r := x.bucket_ratio(_quantile_of(policy, name), latency_sigma)))])
    pairs = {c.name: detection_pair(read[c.name], q=c.quantile, tol=c.max_increase_pct / 100,  # type: ignore[operator]
                                    sigma=latency_sigma) for c in relative if c.name in read}
    # a step passes at its first look covering the interval, and ends at its first look at or past its deadline:
    # looks come every look_every from the step's start (`reconcile.next_look_at`), so where look_every does not
    # divide them, each is later than the interval or deadline itself
    passes_at = per_step * a.look_every
    ends_at = math.ceil((a.interval + policy.failure.no_data_deadline) / a.look_every - 1e-9) * a.look_every
    return Plan(rps=rps, seconds=passes_at * len(judged), looks=per_step * len(judged), steps=tuple(steps),
                assumptions=assumptions, bucket_ratio=coarsest, layout_checks=at_ms, layout_detection=pairs,
                p95_ms=p95_ms,
                longest_s=ends_at * len(judged),
                pass_checks=_pass_checks(passing, steps, sigma=latency_sigma, p95_ms=p95_ms, layouts=read,
                                         unresolved=unresolved),
                pass_unplanned=tuple(k for k in sub_levels(policy) if k not in {t.key for t in passing}),
                floor_steps=tuple(s.weight for s in steps if not _reaches_floor(s.pass_canary_requests, policy)),
                min_canary_requests=a.min_canary_requests,
                custom_checks=tuple(c.name for c in policy.checks if isinstance(c, CustomCheck)),
                latency_quantile=None if lat is None else lat.quantile)


def _quantile_of(policy: Policy, check: str) -> float:
    return next(c.quantile for c in policy.checks if isinstance(c, LatencyCheck) and c.name == check)


def _placed(policy: Policy, layouts: Mapping[str, LatencyLayout], *, sigma: float, p95_ms: float | None
            ) -> dict[str, LatencyLayout]:
    """The layouts of the policy's latency checks, the stable's latency moved to `p95_ms` when given."""
    out = {}
    for c in policy.checks:
        if isinstance(c, LatencyCheck) and c.name in layouts:
            x = layouts[c.name]
            out[c.name] = x if p95_ms is None else with_quantile(x, q=0.95, at_ms=p95_ms, sigma=sigma)
    return out


Power = Callable[[float, float, float], Callable[[float], float]]


def _latency_detection(check: LatencyCheck, layout: LatencyLayout | None, *, sigma: float, bucket_ratio: float
                       ) -> Power | None:
    """The power of a relative latency check's breach test against a canary r x slower, per look: on
    its real layout when read (`plan_layout.layout_power`: the one bound pair the judge picks there;
    None when there is none), else at (1 + limit) x bucket_ratio (a whole bucket out, the worst case)."""
    tol = check.max_increase_pct / 100  # type: ignore[operator]
    if layout is not None:
        return layout_power(layout, q=check.quantile, tol=tol, sigma=sigma)
    return _latency_power(check.quantile, (1 + tol) * bucket_ratio - 1, sigma)


def _smallest_slowdown(n_s: float, n_c: float, *, alpha: float, looks: Sequence[Look], power: Power) -> float | None:
    """Smallest canary scale-up (as %) every look of `looks` finds with 95% power (`_all_fail`). The bound pair
    test keeps 1 - BEYOND_SHARE of each look's level (the judge divides its p by that: `stats.relative_result`),
    so each look's level is taken so here (exact at a step's first window; the pooled sum loses a little more)."""
    keep = 1.0 - BEYOND_SHARE
    r = _bisect(_all_fail(power, [(s, c, lvl * keep) for s, c, lvl in (looks or [(n_s, n_c, alpha)])]), 1.0, 20.0)
    return None if r is None else (r - 1) * 100


def _count(expected: float) -> float:
    """An expected number of requests without binary noise (rps x share x seconds: 90.00000000000001)."""
    return round(expected, 6)


def _pass_looks(policy: Policy, rate_s: float, rate_c: float, *, last: float, lenient: float, strict: float
                ) -> list[tuple[float, float, float]]:
    """(stable requests, canary requests, pass level) of the looks a pass claim may rest on: the
    deadline look at the level past the planned ratio (under Poisson arrivals the deadline look's
    measured ratio exceeds `planned_ratio` about half the time, and the judge then takes the next
    epoch's, about 47x stricter level for the default policy), and the last look on the grid whose
    ratio stays below the planned one with 3 sd to spare, at the planned level. A look is left out
    unless its canary requests reach `min_canary_requests` with 95% probability (Poisson)."""
    a = policy.analysis
    out = []
    anchor = rate_c * a.interval
    if anchor > 0:
        safe = planned_ratio(policy) * (1 - 3 * math.sqrt(2 / anchor))
        t = a.interval + math.floor((a.interval * safe - a.interval) / a.look_every + 1e-9) * a.look_every
        if a.interval <= t < last:
            out.append((rate_s * t, rate_c * t, lenient))
    out.append((rate_s * last, rate_c * last, strict))
    return [(n_s, n_c, level) for n_s, n_c, level in out if _reaches_floor(n_c, policy)]


def _reaches_floor(canary_requests: float, policy: Policy) -> bool:
    """Whether a look with `canary_requests` expected (Poisson) holds `min_canary_requests` with 95%
    probability: below the floor no look passes (judge: INCONCLUSIVE; rollout: `pass_floor`)."""
    floor = pass_floor(policy.analysis.min_canary_requests)
    if canary_requests >= 1e9:  # scipy's ppf is NaN from ~3.2e10 on; the 5% quantile is within 0.02% of the mean
        return canary_requests - 4 * math.sqrt(canary_requests) >= floor
    return float(st.poisson.ppf(1 - PASS_POWER, canary_requests)) >= floor


def _best(test: "PassTest", looks: Sequence[tuple[float, float, float]]) -> float | None:
    """The test's value at the look that shows the most (tightest limit; for "ms", the largest latency)."""
    values = [v for n_s, n_c, level in looks if (v := test.value(n_s, n_c, level)) is not None]
    if not values:
        return None
    return max(values) if test.unit == "ms" else min(values)


@dataclass(frozen=True)
class PassTest:
    """One sub-test's pass side: `value(n_s, n_c, level)` is the tightest limit (in `unit`) an equal
    canary is shown within with 95% probability at one look; for unit "ms" (a latency ceiling) the
    largest canary quantile shown below `limit`."""
    check: str
    test: str
    limit: float
    unit: str  # "%" (relative latency), "points" (rate increase), "% rate" (rate ceiling), "PSI", "JS", "ms"
    value: Callable[[float, float, float], float | None]
    quantile: float = 0.95  # a latency check's
    base_pct: float | None = None  # a rate ceiling's: the good canary's rate, % (--error-rate / --missing-rate)

    @property
    def key(self) -> str:
        return f"{self.check}/{self.test}"


def pass_tests(policy: Policy, *, sigma: float, error_rate: float, missing_rate: float, bins: int,
               bucket_ratio: float = 1.0, unresolved: Collection[str] = (),
               layouts: Mapping[str, LatencyLayout] | None = None) -> list[PassTest]:
    """Every statistical sub-test of the policy with its pass-side value (`PassTest`), in policy order:
    latency relative and ceiling (lognormal `sigma`; on the check's real layout from `layouts` when
    read, else buckets `bucket_ratio` apart at their worst), error-rate and feature-missing increase
    and ceiling (baselines `error_rate`, `missing_rate`), PSI and JS (`bins` cells). Custom checks
    have no statistics (nothing to plan). A relative limit in `unresolved` ("check/relative") is
    never shown within."""
    out: list[PassTest] = []
    for c in policy.checks:
        if isinstance(c, LatencyCheck):
            q, real = c.quantile, (layouts or {}).get(c.name)
            if c.max_increase_pct is not None and (f"{c.name}/relative" in unresolved or c.name in unresolved):
                out.append(PassTest(c.name, "relative", float(c.max_increase_pct), "%",  # the real layout cannot
                                    lambda n_s, n_c, level: None, quantile=q))
            elif c.max_increase_pct is not None and real is not None:
                out.append(PassTest(c.name, "relative", float(c.max_increase_pct), "%", lambda n_s, n_c, level, q=q,
                                    x=real: layout_pass_pct(n_s, n_c, layout=x, q=q, sigma=sigma, level=level),
                                    quantile=q))
            elif c.max_increase_pct is not None:
                out.append(PassTest(c.name, "relative", float(c.max_increase_pct), "%", lambda n_s, n_c, level, q=q:
                                    pass_p95_pct(n_s, n_c, q=q, sigma=sigma, level=level, bucket_ratio=bucket_ratio),
                                    quantile=q))
            if c.max_ms is not None and real is not None:
                out.append(PassTest(c.name, "ceiling", float(c.max_ms), "ms", lambda n_s, n_c, level, q=q, m=c.max_ms,
                                    x=real: layout_ceiling_ms(n_c, layout=x, max_ms=m, q=q, sigma=sigma, level=level,
                                                              ratio=pass_ceiling_ratio), quantile=q))
            elif c.max_ms is not None:
                out.append(PassTest(c.name, "ceiling", float(c.max_ms), "ms", lambda n_s, n_c, level, q=q, m=c.max_ms:
                                    _largest_below(m, pass_ceiling_ratio(n_c, q=q, sigma=sigma, level=level,
                                                                         bucket_ratio=bucket_ratio)), quantile=q))
        elif isinstance(c, (ErrorRateCheck, FeatureMissingCheck)):
            base = error_rate if isinstance(c, ErrorRateCheck) else missing_rate
            if c.max_increase_points is not None:
                out.append(PassTest(c.name, "increase", float(c.max_increase_points), "points",
                                    lambda n_s, n_c, level, b=base: pass_error_points(n_s, n_c, base=b, level=level)))
            if c.max_rate_pct is not None:
                out.append(PassTest(c.name, "ceiling", float(c.max_rate_pct), "% rate",
                                    lambda n_s, n_c, level, b=base: pass_rate_pct(n_c, base=b, level=level),
                                    base_pct=base * 100))
        elif isinstance(c, PredictionShiftCheck):
            if c.max_psi:
                out.append(PassTest(c.name, "psi", float(c.max_psi), "PSI",
                                    lambda n_s, n_c, level: pass_psi(n_s, n_c, bins=bins, level=level)))
            if c.max_js:
                out.append(PassTest(c.name, "js", float(c.max_js), "JS",
                                    lambda n_s, n_c, level: pass_js(n_s, n_c, bins=bins, level=level)))
    return out


def _largest_below(max_ms: float, ratio: float | None) -> float | None:
    return None if ratio is None else max_ms / ratio


def _pass_checks(tests: Sequence[PassTest], steps: Sequence[StepPlan], *, sigma: float, p95_ms: float | None,
                 layouts: Mapping[str, LatencyLayout] | None = None, unresolved: Collection[str] = ()
                 ) -> tuple[dict[str, Any], ...]:
    """Per planned sub-test: the steps whose good canary is not shown within its limit by the deadline,
    each on its own value (`StepPlan.pass_by_check`). A latency ceiling is judged against the
    canary's quantile from `p95_ms` (lognormal `sigma`), else from the stable's layout read
    (`layouts`); without either only the steps with no value are late, and the entry says
    `depends_on_latency`. A rate ceiling ("% rate") records the good canary's rate, % (`canary_rate_pct`:
    the baseline the plan assumed). A sub-test in `unresolved` is late at every step and says `unresolvable`:
    its real layout cannot show a canary as fast as stable within, whatever the traffic."""
    out = []
    for t in tests:
        values = [(s.weight, s.pass_by_check[t.key]) for s in steps]
        entry: dict[str, Any] = {"check": t.check, "test": t.test, "key": t.key, "limit": t.limit, "unit": t.unit}
        real = (layouts or {}).get(t.check)
        if t.unit == "ms":
            at_q = (p95_ms * math.exp(sigma * float(st.norm.ppf(t.quantile) - st.norm.ppf(0.95))) if p95_ms is not None
                    else real.quantile_ms(t.quantile, sigma) if real is not None else None)
            # without the latency only the steps that show no value at all are late for sure
            entry["late_steps"] = [w for w, v in values if v is None or (at_q is not None and v < at_q)]
            entry["depends_on_latency"] = at_q is None
            if at_q is not None:
                entry["canary_quantile_ms"] = at_q  # the good canary's latency at the check's quantile
        else:
            entry["late_steps"] = [w for w, v in values if v is None or v > t.limit + 1e-9]
        if t.base_pct is not None:
            entry["canary_rate_pct"] = t.base_pct  # the good canary's rate, the baseline: at or over the limit, late
        if t.key in unresolved or (t.test == "relative" and t.check in unresolved):
            entry["late_steps"], entry["unresolvable"] = [s.weight for s in steps], True
        out.append(entry)
    return tuple(out)


PASS_POWER = 0.95  # "a good canary is shown within with this probability"


def pass_p95_pct(n_s: float, n_c: float, *, q: float, sigma: float, level: float, bucket_ratio: float = 1.0
                 ) -> float | None:
    """The tightest relative limit (%) on the q-quantile that an equal canary is shown within, with 95%
    probability, at one look of n_c canary and n_s stable requests at pass level `level`.

    The judge's claim is U_c / L_s - 1 <= limit (evidence.relative_within): U_c the smallest bucket
    bound the canary's counts show at or above its quantile, L_s the largest the stable's show below
    its own, each an exact binomial bound at level/2. Normal approximation: the empirical CDF at a
    bound has sd s = sqrt(q(1-q)/n) per arm; each arm's bound sits z(level/2) s beyond its quantile,
    and the two arms' noise together adds z(0.95) sqrt(s_c^2 + s_s^2) (shared in proportion to each
    arm's variance). A CDF margin d moves a lognormal quantile of shape `sigma` by
    sigma (Phi^-1(q + d) - Phi^-1(q)) in log. Buckets `bucket_ratio` apart round both ends outward:
    the worst case over where the quantile falls, ceil(span / g) + 1 buckets of log-width g, so the
    value errs high (a good canary may pass a tighter limit)."""
    if n_s <= 0 or n_c <= 0:
        return None
    zb, zp = float(st.norm.isf(level / 2)), float(st.norm.isf(1 - PASS_POWER))
    sd_c, sd_s = math.sqrt(q * (1 - q) / n_c), math.sqrt(q * (1 - q) / n_s)
    joint = math.hypot(sd_c, sd_s)
    up, down = q + zb * sd_c + zp * sd_c ** 2 / joint, q - zb * sd_s - zp * sd_s ** 2 / joint
    if up >= 1 or down <= 0:  # a tail quantile on few requests: the exact per-arm construction instead
        return _exact_relative_pct(n_s, n_c, q=q, sigma=sigma, level=level, bucket_ratio=bucket_ratio)
    return _increase_pct(sigma * float(st.norm.ppf(up) - st.norm.ppf(down)), bucket_ratio)


def _increase_pct(span: float, bucket_ratio: float) -> float:
    """A log-span between the two arms' bounds as a relative limit, %: buckets `bucket_ratio` apart
    round both ends outward, in the worst case over where the quantile falls ceil(span / g) + 1
    buckets of log-width g (the value errs high)."""
    if bucket_ratio > 1:
        g = math.log(bucket_ratio)
        span = (math.ceil(span / g - 1e-12) + 1) * g
    return (math.exp(span) - 1) * 100


def pass_ceiling_ratio(n_c: float, *, q: float, sigma: float, level: float, bucket_ratio: float = 1.0,
                       power: float = PASS_POWER) -> float | None:
    """How far above the canary's true q-quantile an absolute limit (max_ms) must lie for an equal
    canary to be shown below it, with 95% probability, at one look of n_c canary requests at pass
    level `level` (a ratio >= 1; None: not at any limit).

    The judge's claim is U_c <= max_ms (evidence.ceiling_within): U_c the smallest bucket bound b
    whose count k(b) has P(Bin(n, q) >= k(b)) <= level, i.e. k(b) >= k*. Exactly: k(b) ~ Bin(n, F(b))
    reaches k* with 95% probability where F(b) >= the 95% point of Beta(k*, n - k* + 1); a lognormal
    of shape `sigma` turns that CDF into a ratio of quantiles; buckets `bucket_ratio` apart round it
    up to the next bound, in the worst case a whole bucket (the value errs high). (A normal
    approximation here said "never" for a p99.9 ceiling the judge showed in every look.)"""
    n = int(math.floor(n_c))
    if n <= 0:
        return None
    k = int(st.binom.isf(level, n, q)) + 1  # the smallest count with P(Bin(n, q) >= k) <= level
    while k > 1 and float(st.binom.sf(k - 2, n, q)) <= level:
        k -= 1
    while k <= n and float(st.binom.sf(k - 1, n, q)) > level:
        k += 1
    if k > n:
        return None
    f = float(st.beta.ppf(power, k, n - k + 1))
    if not 0 < f < 1:
        return None
    return max(1.0, math.exp(sigma * float(st.norm.ppf(f) - st.norm.ppf(q)))) * bucket_ratio


def pass_rate_pct(n_c: float, *, base: float, level: float) -> float | None:
    """The tightest rate ceiling (max_rate_pct, %) a canary at rate `base` is shown below, with 95%
    probability, at one look of n_c requests: the judge's exact (Clopper-Pearson) upper bound at
    `level` (evidence.rate_within) at the 95th percentile of the canary's Binomial(n_c, base) count."""
    n = int(round(n_c))
    if n <= 0:
        return None
    x = int(st.binom.ppf(PASS_POWER, n, base))
    if x >= n:
        return None
    return _above(float(st.beta.ppf(1 - level, x + 1, n - x))) * 100


def pass_psi(n_s: float, n_c: float, *, bins: int, level: float) -> float | None:
    """The tightest max_psi a canary distributed as stable is shown within, with 95% probability, at
    one look over `bins` equally likely cells at pass level `level`: the 95th percentile of the
    judge's own pass bound (`shift.shift_tests`) over `PASS_DRAWS` simulated looks of equal arms
    (seeded: the same answer every run). Simulated, not approximated: near equality the bound is
    the larger of a noncentral chi-square bound and a delta-method one, and which dominates depends
    on the cells (a chi-square formula alone claimed 0.073 at 60 cells where the judge showed 0.073
    within in 0 of 300 looks)."""
    got = _shift_pass_bounds(round(n_s), round(n_c), bins, level)
    return None if got is None or not math.isfinite(got[0]) else got[0]


def pass_js(n_s: float, n_c: float, *, bins: int, level: float) -> float | None:
    """`pass_psi` for max_js (the Jensen-Shannon distance, base 2), from the same simulated looks."""
    got = _shift_pass_bounds(round(n_s), round(n_c), bins, level)
    return None if got is None or not math.isfinite(got[1]) else got[1]


PASS_DRAWS = 400


@functools.lru_cache(maxsize=256)
def _shift_pass_bounds(n_s: int, n_c: int, bins: int, level: float) -> tuple[float, float] | None:
    if n_s <= 0 or n_c <= 0 or bins < 2:
        return None
    from canary.analysis.shift import shift_tests

    rng = np.random.default_rng(20261201)
    shares = np.full(bins, 1.0 / bins)
    psi, js = [], []
    for _ in range(PASS_DRAWS):
        got = dict(shift_tests(rng.multinomial(n_s, shares), rng.multinomial(n_c, shares), max_psi=1.0, max_js=1.0,
                               alpha=0.01, beta=level))
        psi.append(got["psi"].bound)
        js.append(got["js"].bound)
    return _at_power(psi), _at_power(js)


def _exact_relative_pct(n_s: float, n_c: float, *, q: float, sigma: float, level: float, bucket_ratio: float
                        ) -> float | None:
    """`pass_p95_pct` from the judge's exact binomial bounds, each arm's at level/2 reached with
    97.5% probability (so both with 95%): the canary's upper bound as `pass_ceiling_ratio` builds
    it, the stable's lower bound the same way from below. Where the normal approximation has no
    value (a p99 on 900 canary requests: the judge passed +60% in 89% of looks, +100% in 98.5%)."""
    up = pass_ceiling_ratio(n_c, q=q, sigma=sigma, level=level / 2, power=0.975)
    n = int(math.floor(n_s))
    if up is None or n <= 0:
        return None
    k = int(st.binom.ppf(level / 2, n, q))  # the largest count with P(Bin(n, q) <= k) <= level/2
    while k >= 0 and float(st.binom.cdf(k, n, q)) > level / 2:
        k -= 1
    while k + 1 < n and float(st.binom.cdf(k + 1, n, q)) <= level / 2:
        k += 1
    if k < 0:
        return None
    f = float(st.beta.ppf(0.025, k + 1, n - k))  # F(b) at most this keeps k(b) <= k with 97.5%
    if not 0 < f < q:
        return None
    return _increase_pct(math.log(up) + sigma * float(st.norm.ppf(q) - st.norm.ppf(f)), bucket_ratio)


def pass_error_points(n_s: float, n_c: float, *, base: float, level: float) -> float | None:
    """The tightest rate-increase limit (points) an equal canary (both arms at rate `base`) is shown
    within, with 95% probability, at one look at pass level `level`: the 95th percentile of the
    judge's own bound (evidence.increase_within: a likelihood-ratio bound, or exact
    Clopper-Pearson bounds at level/2 per arm when a count is below 10) over `PASS_DRAWS` seeded
    binomial draws. None when no limit below 100 points is shown. (A normal approximation claimed
    +0.92 points at 19,000/1,000 requests and a 0.5% rate, shown within in 39% of looks.)"""
    ns, nc = int(round(n_s)), int(round(n_c))
    if ns <= 0 or nc <= 0:
        return None
    bound = _increase_pass_bound(ns, nc, base, level)
    return None if bound >= 1.0 - 1e-9 else bound * 100


@functools.lru_cache(maxsize=256)
def _increase_pass_bound(n_s: int, n_c: int, base: float, level: float) -> float:
    from canary.analysis.evidence import increase_within

    rng = np.random.default_rng(20261201)
    xs, xc = rng.binomial(n_s, base, PASS_DRAWS), rng.binomial(n_c, base, PASS_DRAWS)
    bounds = [increase_within(float(a), n_s, float(c), n_c, margin=0.5, level=level)[1] for a, c in zip(xs, xc)]
    return _at_power(bounds)


def _at_power(bounds: Sequence[float]) -> float:
    """A value at least a share PASS_POWER of looks' bounds lie below, with 95% confidence over the
    simulation: the order statistic 1.645 binomial sd above the PASS_POWER quantile's rank (about
    the 97th percentile of 400 draws). NaN, an unusable look, counts as inf."""
    clean = np.sort(np.nan_to_num(np.asarray(bounds, float), nan=math.inf))
    n = len(clean)
    rank = math.ceil(n * PASS_POWER + 1.645 * math.sqrt(n * PASS_POWER * (1 - PASS_POWER)))
    return _above(float(clean[min(rank, n) - 1]))


def _above(bound: float) -> float:
    """The smallest limit a look whose bound is `bound` is shown within: the judge asks bound < limit
    for rates and prediction shifts, and counts are discrete, so many looks share the very bound at
    the claimed rank (a limit equal to it passed 89% of looks where 95% was claimed)."""
    return bound * (1 + 1e-9) + 1e-15 if math.isfinite(bound) else bound


def _js_of(chi2: float | None) -> float | None:
    """The JS distance (base 2) whose 8 x JSD (nats) is `chi2`: the judge tests max_js on
    8 n_eff JSD, noncentral chi-square at 8 n_eff JSD as n_eff PSI is at n_eff PSI, so the
    smallest detectable 8 JSD is psi_detectable's answer against js_to_psi(max_js)."""
    return None if chi2 is None else math.sqrt(chi2 / (8.0 * math.log(2)))


def _looks_needed(run: int, look_every: float, floor: int) -> str:
    """What a rollback needs, in words: `failure.max_failed_looks` and the request floor."""
    if run == 1:
        return f"one failed look, with at least {floor} canary requests in the step"
    return f"{run} failed looks in a row {look_every:g} s apart, the first with at least {floor} canary requests in the step"


@dataclass(frozen=True)
class LayoutCheck:
    """Can the bucket layout a latency check reads resolve its limits? (`canary plan --prometheus-url`)"""

    check: str
    resolves: bool | None  # None: the layout could not be read (no stable series, or an error)
    detail: str
    bucket_ratio: float | None = None  # upper / lower bound of the bucket holding the stable quantile
    unresolved: tuple[str, ...] = ()  # sub-tests ("check/relative", "check/ceiling") it can never show within
    quantile_ms: float | None = None  # the stable's latency at the check's quantile: the lognormal fitted
    layout: LatencyLayout | None = None  # the bounds read and the fit, what the plan computes on


def layout_report(policy: Policy, stable: Mapping[str, Histogram | BaseException], *, sigma: float = 0.5
                  ) -> tuple[LayoutCheck, ...]:
    """Per latency check: does the stable arm's real bucket layout let a canary as fast as stable be
    shown within its relative limit (`evidence.layout_problem`) and below its ceiling
    (`plan_layout.ceiling_problem`)? With the layout, a lognormal of shape `sigma` fitted to the
    counts (`plan_layout.fit_layout`): the plan computes every latency claim on it.

    `stable` maps check name -> the stable arm's histogram over a recent window (bounds in ms),
    or the exception reading it raised. Checks absent from it are reported as not read.
    """
    out = []
    for check in policy.checks:
        if not isinstance(check, LatencyCheck) or (check.max_increase_pct is None and check.max_ms is None):
            continue
        h = stable.get(check.name)
        if h is None or isinstance(h, BaseException):
            why = "not measured" if h is None else f"{type(h).__name__}: {h}"
            out.append(LayoutCheck(check.name, None, f"could not read the stable histogram: {why}"))
            continue
        bounds, cum = np.array(h.bounds, float), np.array(h.counts, float)
        if float(cum[-1]) <= 0:
            out.append(LayoutCheck(check.name, None, "the stable arm had no requests in the window"))
            continue
        q = check.quantile
        fit = fit_layout(h.bounds, h.counts, q=q, sigma=sigma)
        lo, hi = quantile_bucket(bounds, cum, q)
        ratio = hi / lo if lo > 0 and math.isfinite(hi) else None
        at = "" if fit is None else f" (about {fit.quantile_ms(q, sigma):.3g} ms)"
        problems, said = [], []
        if check.max_increase_pct is not None:
            tol = check.max_increase_pct / 100
            problem = layout_problem(bounds, cum, q=q, tol=tol)
            if problem:
                problems.append((f"{check.name}/relative", problem))
            else:
                said.append(f"stable p{q * 100:g} in ({lo:g}, {hi:g}] ms{at}, a bucket {hi / lo:.3g}x wide: a canary "
                            f"as fast as stable can be shown within +{check.max_increase_pct:g}% (buckets "
                            f"x{1 + tol / 2:.3g} or finer there pass it with fewer requests)")
        if check.max_ms is not None:
            problem = ceiling_problem(h.bounds, (lo, hi), q=q, max_ms=check.max_ms)
            if problem:
                problems.append((f"{check.name}/ceiling", problem))
            elif check.max_increase_pct is None:
                said.append(f"stable p{q * 100:g} in ({lo:g}, {hi:g}] ms{at}: " + (
                    f"already above the ceiling {check.max_ms:g} ms" if lo >= check.max_ms else
                    f"a canary as fast as stable can be shown below {check.max_ms:g} ms"))
        out.append(LayoutCheck(check.name, not problems, "; ".join([p for _, p in problems] + said),
                               ratio, tuple(k for k, _ in problems),
                               None if fit is None else fit.quantile_ms(q, sigma), fit))
    return tuple(out)

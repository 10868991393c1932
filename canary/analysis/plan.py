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
(lognormal, --latency-sigma) and fine buckets (coarse buckets only lose
power; the judge says so when it happens).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from canary.analysis.evidence import layout_problem, quantile_bucket
from canary.analysis.sequential import effective_requests, fail_level, looks_per_step, z_boundary
from canary.model import Histogram
from canary.policy import ErrorRateCheck, FeatureMissingCheck, LatencyCheck, Policy, PredictionShiftCheck
from canary.analysis.shift import js_to_psi

POWER = 0.95


@dataclass(frozen=True)
class StepPlan:
    weight: int
    seconds: float
    canary_requests: float
    stable_requests: float
    alpha: float  # fixed-sample level equivalent to the anytime boundary at the step's last look
    p95_increase_pct: float | None  # smallest detectable canary quantile increase, %
    error_points: float | None  # smallest detectable error-rate increase, points
    psi: float | None  # smallest detectable PSI


@dataclass(frozen=True)
class Plan:
    rps: float
    seconds: float  # judged steps only; the last step (100%) is a promotion
    looks: int
    steps: tuple[StepPlan, ...]
    assumptions: str


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


def latency_detectable(n_s: float, n_c: float, *, q: float, tol: float, sigma: float, alpha: float) -> float | None:
    """Smallest canary scale-up (as %) the exceedance test finds with 95% power."""
    z_q = st.norm.ppf(q)

    def power(r: float) -> float:
        p1 = float(st.norm.sf(z_q + math.log((1 + tol) / r) / sigma))  # canary above (1+tol)*stable_q
        return _two_prop_power(1 - q, p1, n_s, n_c, margin=0.0, alpha=alpha)

    r = _bisect(power, 1 + tol, 20.0)
    return None if r is None else (r - 1) * 100


def error_detectable(n_s: float, n_c: float, *, base: float, margin: float, alpha: float) -> float | None:
    """Smallest error-rate increase (points) found with 95% power at baseline `base`."""
    r = _bisect(lambda d: _two_prop_power(base, base + d, n_s, n_c, margin=margin, alpha=alpha), margin,
                1 - base - 1e-9)
    return None if r is None else r * 100


def psi_detectable(n_s: float, n_c: float, *, max_psi: float, bins: int, alpha: float) -> float | None:
    """Smallest PSI whose noncentral chi-square test against max_psi has 95% power."""
    if n_s <= 0 or n_c <= 0:
        return None
    n_eff, df = n_s * n_c / (n_s + n_c), max(bins - 1, 1)
    crit = float(st.ncx2.isf(alpha, df, n_eff * max_psi))
    return _bisect(lambda x: float(st.ncx2.sf(crit, df, n_eff * x)), max_psi, 50.0)


def plan(policy: Policy, *, rps: float, canary_share: float | None = None, latency_sigma: float = 0.5,
         error_rate: float = 0.005, bins: int = 10) -> Plan:
    """Per judged step: duration, requests, and the smallest detectable regressions."""
    if rps <= 0:
        raise ValueError("rps must be positive")
    a = policy.analysis
    per_step = looks_per_step(policy)
    level = fail_level(policy)
    lat = next((c for c in policy.checks if isinstance(c, LatencyCheck) and c.max_increase_pct is not None), None)
    err = next((c for c in policy.checks if isinstance(c, (ErrorRateCheck, FeatureMissingCheck))
                and c.max_increase_points is not None), None)
    shift = next((c for c in policy.checks if isinstance(c, PredictionShiftCheck)), None)
    steps = []
    judged = [w for w in policy.steps if w < 100]
    info = pooled_c = pooled_s = 0.0
    for i, w in enumerate(judged):
        share = canary_share if canary_share is not None else w / 100
        n_c, n_s = rps * share * a.interval, rps * (1 - share) * a.interval
        # pooled over the steps so far: the power below uses the summed requests at this level
        info += effective_requests(n_s, n_c)
        pooled_c, pooled_s = pooled_c + n_c, pooled_s + n_s
        alpha = float(st.norm.sf(z_boundary(info, level))) if info > 0 else 0.0
        steps.append(StepPlan(
            weight=w, seconds=a.interval, canary_requests=n_c, stable_requests=n_s, alpha=alpha,
            p95_increase_pct=None if lat is None else latency_detectable(
                pooled_s, pooled_c, q=lat.quantile, tol=lat.max_increase_pct / 100, sigma=latency_sigma,
                alpha=alpha),
            error_points=None if err is None else error_detectable(
                pooled_s, pooled_c, base=error_rate, margin=err.max_increase_points / 100, alpha=alpha),
            psi=None if shift is None else psi_detectable(
                pooled_s, pooled_c, max_psi=min(x for x in (shift.max_psi, shift.max_js and js_to_psi(shift.max_js)) if x),
                bins=bins, alpha=alpha),
        ))
    assumptions = (f"latency lognormal sigma={latency_sigma:g} with fine buckets; baseline error rate "
                   f"{error_rate * 100:g}%; {bins} prediction bins; power {POWER:.0%} at each step's last look, "
                   "evidence pooled over the steps so far")
    return Plan(rps=rps, seconds=a.interval * len(judged), looks=per_step * len(judged), steps=tuple(steps),
                assumptions=assumptions)


@dataclass(frozen=True)
class LayoutCheck:
    """Can the bucket layout a latency check reads resolve its relative limit? (`canary plan --prometheus-url`)"""

    check: str
    resolves: bool | None  # None: the layout could not be read (no stable series, or an error)
    detail: str


def layout_report(policy: Policy, stable: Mapping[str, Histogram | BaseException]) -> tuple[LayoutCheck, ...]:
    """Per latency check with `max_increase_pct`: does the stable arm's real bucket layout let a
    canary as fast as stable be shown within the limit (`evidence.layout_problem`)?

    `stable` maps check name -> the stable arm's histogram over a recent window (bounds in ms),
    or the exception reading it raised. Checks absent from it are reported as not read.
    """
    out = []
    for check in policy.checks:
        if not isinstance(check, LatencyCheck) or check.max_increase_pct is None:
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
        tol = check.max_increase_pct / 100
        problem = layout_problem(bounds, cum, q=check.quantile, tol=tol)
        if problem:
            out.append(LayoutCheck(check.name, False, problem))
            continue
        lo, hi = quantile_bucket(bounds, cum, check.quantile)
        out.append(LayoutCheck(check.name, True, (
            f"stable p{check.quantile * 100:g} in ({lo:g}, {hi:g}] ms, a bucket {hi / lo:.3g}x wide: "
            f"a canary as fast as stable can be shown within +{check.max_increase_pct:g}% "
            f"(buckets x{1 + tol / 2:.3g} or finer there pass it with fewer requests)")))
    return tuple(out)

"""Measurements of one look -> one Verdict, with every number behind it.

This is the only place that knows what each check kind means statistically:
which tests run, how the look's alpha is split between them, when a small
canary sample may still fail (only on a significant absolute or hard breach),
and how the evidence reads to a human. It is pure: the controller passes in
what Prometheus said (or the exception it raised) and gets a `Verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from canary.analysis import shift, stats
from canary.analysis.sequential import alpha_for_look, tests_in
from canary.errors import TransientError
from canary.model import ArmData, CheckResult, Counts, Histogram, Verdict, Outcome, Scalar
from canary.policy import (
    Check,
    CustomCheck,
    ErrorRateCheck,
    FeatureMissingCheck,
    LatencyCheck,
    Policy,
    PredictionShiftCheck,
)

Measurement = tuple[ArmData, ArmData] | Exception


def judge(policy: Policy, measurements: Mapping[str, Measurement], *, look: int) -> Verdict:
    """Judge every check of the policy at this look; worst outcome wins."""
    a_look = alpha_for_look(policy, look)
    total = sum(tests_in(c) for c in policy.checks) or 1
    results = []
    for check in policy.checks:
        m = measurements.get(check.name)
        if m is None:
            results.append(_error(check, "no measurement was provided"))
        elif isinstance(m, BaseException):
            # "Prometheus could not be asked" (transient) is told apart from "asked, no such series":
            # only the first may end a rollout as aborted rather than rolled back.
            results.append(_error(check, f"could not measure: {type(m).__name__}: {m}",
                                  unavailable=isinstance(m, TransientError)))
        else:
            try:
                results.append(judge_check(check, m[0], m[1], alpha=a_look * tests_in(check) / total,
                                           min_canary=policy.analysis.min_canary_requests))
            except (ValueError, TypeError, ArithmeticError) as exc:  # never crash a tick
                results.append(_error(check, f"cannot judge: {exc}"))
    return Verdict.combine(results)


def judge_check(check: Check, stable: ArmData, canary: ArmData, *, alpha: float, min_canary: int) -> CheckResult:
    """One check at one look. `alpha` is this check's share, split over its tests."""
    if isinstance(check, LatencyCheck):
        return _latency(check, stable, canary, alpha, min_canary)
    if isinstance(check, (ErrorRateCheck, FeatureMissingCheck)):
        return _proportion(check, stable, canary, alpha, min_canary)
    if isinstance(check, PredictionShiftCheck):
        return _shift(check, stable, canary, alpha, min_canary)
    if isinstance(check, CustomCheck):
        return _custom(check, stable, canary, min_canary)
    raise TypeError(f"unknown check kind {type(check).__name__}")


def _error(check: Check, reason: str, *, unavailable: bool = False) -> CheckResult:
    return CheckResult(check=check.name, kind=check.kind, outcome=Outcome.ERROR, reason=reason, hard=check.hard,
                       extra={"unavailable": True} if unavailable else {})


def _want(check: Check, data: tuple[ArmData, ArmData], kind: type) -> CheckResult | None:
    for arm, d in zip(("stable", "canary"), data):
        if not isinstance(d, kind):
            return _error(check, f"{arm} data is {type(d).__name__}, expected {kind.__name__}")
    return None


def _common(s: Histogram, c: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both arms on the bounds they share (cumulative counts read at those bounds)."""
    if s.bounds == c.bounds:
        return np.array(s.bounds), np.array(s.counts, float), np.array(c.counts, float)
    shared = sorted(set(s.bounds) & set(c.bounds))
    pick = lambda h: np.array([h.counts[h.bounds.index(b)] for b in shared], float)  # noqa: E731
    return np.array(shared), pick(s), pick(c)


def _n(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "?"


def _p(p: float) -> str:
    return "?" if not math.isfinite(p) else (f"{p:.1e}" if p < 1e-4 else f"{p:.4f}".rstrip("0").rstrip("."))


def _g(x: float, digits: int = 3) -> str:
    return "?" if not math.isfinite(x) else f"{x:.{digits}g}"


def _clean(value: Any) -> Any:
    """Extra evidence is serialised as-is: keep it JSON-safe (NaN -> None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _verdict(check: Check, subs: list[tuple[str, stats.TestResult, bool]], n_c: float, min_canary: int
             ) -> tuple[Outcome, tuple[str, stats.TestResult, bool], str]:
    """Combine a check's sub-tests: (outcome, the sub-test to report, extra reason).

    Below min_canary only a significant absolute breach, or any significant
    breach of a hard check, may FAIL; the check is otherwise INCONCLUSIVE.
    """
    small = n_c < min_canary
    fails = [s for s in subs if s[1].breach and (not small or s[2] or check.hard)]
    if fails:
        return Outcome.FAIL, min(fails, key=lambda s: s[1].p_value), ""
    shown = min(subs, key=lambda s: s[1].p_value)
    if small:
        return Outcome.INCONCLUSIVE, shown, f"canary n={_n(n_c)} below min {min_canary:,}"
    undecided = [s for s in subs if not s[1].decidable]
    if undecided:
        return Outcome.INCONCLUSIVE, undecided[0], undecided[0][1].note or "too little data to tell"
    return Outcome.PASS, shown, ""


def _result(check: Check, outcome: Outcome, reason: str, t: stats.TestResult, *, n: tuple[float, float],
            threshold: float, effect: float, alpha: float, subs: list[tuple[str, stats.TestResult, bool]],
            **values: float) -> CheckResult:
    notes = [s[1].note for s in subs if s[1].note]
    extra = {"tests": [{"test": name, "p_value": _clean(r.p_value), "breach": r.breach, "absolute": absolute,
                        "decidable": r.decidable, "note": r.note} for name, r, absolute in subs]}
    notes = [x for x in dict.fromkeys(notes) if x not in reason]
    if notes and outcome is not Outcome.FAIL:
        reason += "; " + "; ".join(notes)
    # `alpha` is what this p-value was compared with: the check's share split over its tests.
    extra["check_alpha"] = alpha
    return CheckResult(check=check.name, kind=check.kind, outcome=outcome, reason=reason,
                       n_stable=n[0], n_canary=n[1], threshold=threshold, statistic=t.statistic,
                       p_value=t.p_value, effect_size=effect, alpha=alpha / len(subs), hard=check.hard, extra=extra,
                       **values)


def _latency(check: LatencyCheck, s: ArmData, c: ArmData, alpha: float, min_canary: int) -> CheckResult:
    bad = _want(check, (s, c), Histogram)
    if bad:
        return bad
    bounds, sc, cc = _common(s, c)  # type: ignore[arg-type]
    if len(bounds) < 2:
        return _error(check, "the arms share no finite bucket bound")
    q, label = check.quantile, f"p{check.quantile * 100:g}"
    a = alpha / max(1, tests_in(check))
    subs: list[tuple[str, stats.TestResult, bool]] = []
    if check.max_increase_pct is not None:
        subs.append(("relative", stats.latency_relative(bounds, sc, cc, q=q, tol=check.max_increase_pct / 100,
                                                        alpha=a), False))
    if check.max_ms is not None:
        subs.append(("ceiling", stats.latency_ceiling(bounds, cc, q=q, max_value=check.max_ms, alpha=a), True))
    n = (float(sc[-1]), float(cc[-1]))
    outcome, (name, t, _), more = _verdict(check, subs, n[1], min_canary)
    sv, cv = stats.histogram_quantile(bounds, sc, q), stats.histogram_quantile(bounds, cc, q)
    if name == "relative":
        rel = (cv / sv - 1) * 100 if sv > 0 else math.nan
        head = f"{label} {_g(cv)} ms vs {_g(sv)} ms ({rel:+.0f}%, limit +{check.max_increase_pct:g}%)"
        threshold, effect = float(check.max_increase_pct), rel  # type: ignore[arg-type]
    else:
        head = f"{label} {_g(cv)} ms (limit {check.max_ms:g} ms)"
        threshold, effect = float(check.max_ms), cv  # type: ignore[arg-type]
    reason = f"{head}, n={_n(n[1])}/{_n(n[0])}, p={_p(t.p_value)}" + (f"; {more}" if more else "")
    return _result(check, outcome, reason, t, n=n, threshold=threshold, effect=effect, alpha=alpha, subs=subs,
                   stable_value=sv, canary_value=cv)


def _proportion(check: ErrorRateCheck | FeatureMissingCheck, s: ArmData, c: ArmData, alpha: float,
                min_canary: int) -> CheckResult:
    bad = _want(check, (s, c), Counts)
    if bad:
        return bad
    assert isinstance(s, Counts) and isinstance(c, Counts)
    a = alpha / max(1, tests_in(check))
    subs: list[tuple[str, stats.TestResult, bool]] = []
    if check.max_increase_points is not None:
        subs.append(("increase", stats.proportion_increase(s.events, s.total, c.events, c.total,
                                                           margin=check.max_increase_points / 100, alpha=a), False))
    if check.max_rate_pct is not None:
        subs.append(("ceiling", stats.proportion_ceiling(c.events, c.total, max_rate=check.max_rate_pct / 100,
                                                         alpha=a), True))
    n = (float(s.total), float(c.total))
    outcome, (name, t, _), more = _verdict(check, subs, n[1], min_canary)
    what = "errors" if check.kind == "error_rate" else "missing"
    sv, cv = s.rate * 100, c.rate * 100
    if name == "increase":
        head = f"{what} {_g(cv)}% vs {_g(sv)}% ({cv - sv:+.2g} points, limit +{check.max_increase_points:g})"
        threshold, effect = float(check.max_increase_points), cv - sv  # type: ignore[arg-type]
    else:
        head = f"{what} {_g(cv)}% (limit {check.max_rate_pct:g}%)"
        threshold, effect = float(check.max_rate_pct), cv  # type: ignore[arg-type]
    reason = f"{head}, n={_n(n[1])}/{_n(n[0])}, p={_p(t.p_value)}" + (f"; {more}" if more else "")
    return _result(check, outcome, reason, t, n=n, threshold=threshold, effect=effect, alpha=alpha, subs=subs,
                   stable_value=sv, canary_value=cv)


def _shift(check: PredictionShiftCheck, s: ArmData, c: ArmData, alpha: float, min_canary: int) -> CheckResult:
    bad = _want(check, (s, c), Histogram)
    if bad:
        return bad
    _, sc, cc = _common(s, c)  # type: ignore[arg-type]
    per_s, per_c = np.diff(sc, prepend=0.0), np.diff(cc, prepend=0.0)
    tests = shift.shift_tests(per_s, per_c, max_psi=check.max_psi, max_js=check.max_js, alpha=alpha)
    n = (float(sc[-1]), float(cc[-1]))
    subs = [(name, t, False) for name, _, t, _ in tests]
    outcome, _, more = _verdict(check, subs, n[1], min_canary)
    unbounded = [f"{name.upper()} {_g(upper, 2)} (limit {_g(limit, 2)})" for name, limit, _, upper in tests
                 if not upper < limit]
    if outcome is Outcome.PASS and unbounded:
        outcome, more = Outcome.INCONCLUSIVE, "effect not yet bounded below the limit (95% upper " + \
            ", ".join(unbounded) + ")"
    ok = per_s.sum() > 0 and per_c.sum() > 0
    cells = shift.merge_sparse(per_s, per_c) if ok else None
    psi_v = shift.psi(*cells) if cells is not None else math.nan
    js_v = shift.js_distance(*cells) if cells is not None else math.nan
    lim = ", ".join(f"{name.upper()} limit {_g(limit, 2)}" for name, limit, _, _ in tests)
    reason = (f"PSI {_g(psi_v, 2)}, JS {_g(js_v, 2)} ({lim}), chi2={_g(tests[0][2].statistic)}, "
              f"n={_n(n[1])}/{_n(n[0])}, p={_p(min(t.p_value for _, _, t, _ in tests))}") + (f"; {more}" if more else "")
    # the check's effect and threshold: the limit nearest to its breach (largest effect / limit)
    _, limit, t, _ = max(tests, key=lambda x: x[2].effect / x[1] if math.isfinite(x[2].effect) else -1.0)
    res = _result(check, outcome, reason, t, n=n, threshold=limit, effect=t.effect, alpha=alpha, subs=subs)
    uppers = {name: upper for name, _, _, upper in tests}
    res.extra.update({"psi_upper_95": _clean(uppers.get("psi", math.nan)),
                      "js_upper_95": _clean(uppers.get("js", math.nan)), "js_distance": _clean(js_v)})
    return res


def _custom(check: CustomCheck, s: ArmData, c: ArmData, min_canary: int) -> CheckResult:
    bad = _want(check, (s, c), Scalar)
    if bad:
        return bad
    assert isinstance(s, Scalar) and isinstance(c, Scalar)
    sv, cv, hib = float(s.value), float(c.value), check.higher_is_better
    base = dict(check=check.name, kind=check.kind, stable_value=sv, canary_value=cv,
                n_stable=float(s.n) if math.isfinite(s.n) else 0.0,
                n_canary=float(c.n) if math.isfinite(c.n) else 0.0, hard=check.hard)
    if not math.isfinite(cv):
        return CheckResult(outcome=Outcome.ERROR, reason="canary value is not a number", **base)  # type: ignore[arg-type]
    worse = -1.0 if hib else 1.0  # sign that makes "worse" positive
    breaches, shown = [], []
    if check.max_value is not None:
        gap = worse * (cv - check.max_value)
        shown.append((f"{_g(cv)} ({'min' if hib else 'max'} {check.max_value:g})", check.max_value, cv))
        if gap > 0:
            breaches.append(shown[-1])
    if check.max_ratio is not None and math.isfinite(sv) and sv != 0:
        ratio, lim = cv / sv, (1 / check.max_ratio if hib else check.max_ratio)
        shown.append((f"ratio {_g(ratio)} ({'at least' if hib else 'at most'} {_g(lim)})", lim, ratio))
        if worse * (ratio - lim) > 0:
            breaches.append(shown[-1])
    if check.max_increase is not None and math.isfinite(sv):
        inc = worse * (cv - sv)
        shown.append((f"worse by {_g(inc)} (limit {check.max_increase:g})", check.max_increase, inc))
        if inc > check.max_increase:
            breaches.append(shown[-1])
    head = f"{_g(cv)} vs {_g(sv)}"
    if math.isfinite(c.n) and c.n < min_canary:
        return CheckResult(outcome=Outcome.INCONCLUSIVE, reason=f"{head}; canary n={_n(c.n)} below min {min_canary:,}",
                           **base)  # type: ignore[arg-type]
    if not shown:
        return CheckResult(outcome=Outcome.INCONCLUSIVE, reason=f"{head}; stable value unusable for a relative limit",
                           **base)  # type: ignore[arg-type]
    text, thr, eff = (breaches or shown)[0]
    outcome = Outcome.FAIL if breaches else Outcome.PASS
    return CheckResult(outcome=outcome, reason=f"{head}: {text}", threshold=float(thr), effect_size=float(eff),
                       **base)  # type: ignore[arg-type]

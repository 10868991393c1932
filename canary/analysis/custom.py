"""Custom checks: one number per arm compared with the policy's limits, no statistics.

Kept apart from the statistical checks because its rules are about which limits
can be judged at all: `max_value` is absolute and needs only the canary (a
stable series that does not exist, or a stable value that is not a number,
does not stop a canary over its ceiling from failing), while `max_ratio` and
`max_increase` need a usable stable value. A limit that could not be judged
never lets the check pass: with the stable arm unmeasured the check is ERROR,
with a stable value that is not a number (or, for a ratio, either value not positive:
-1 vs 100 is a ratio of -100, "better" than any limit) INCONCLUSIVE. Below
`min_canary_requests` (the canary's `n`, when the check has a request count) nothing
passes, and only a breach of `max_value` (or any breach of a `hard` check) fails.
Custom checks are deterministic and outside the alpha guarantee.
"""

from __future__ import annotations

import math

from canary.model import CheckResult, Outcome, Scalar
from canary.analysis.shown import beside, exact, whole
from canary.policy import CustomCheck


def _g(x: float) -> str:
    return "?" if not math.isfinite(x) else f"{x:.3g}"


def judge_custom(check: CustomCheck, s: Scalar | None, c: Scalar, *, min_canary: int,
                 stable_error: str = "") -> CheckResult:
    """`s` is None when the stable arm could not be measured (`stable_error` says why)."""
    sv = float(s.value) if s is not None else math.nan
    cv, hib = float(c.value), check.higher_is_better
    base = dict(check=check.name, kind=check.kind, stable_value=sv, canary_value=cv,
                n_stable=float(s.n) if s is not None and math.isfinite(s.n) else 0.0,
                n_canary=float(c.n) if math.isfinite(c.n) else 0.0, hard=check.hard)
    if not math.isfinite(cv):
        return CheckResult(outcome=Outcome.ERROR, reason="canary value is not a number", **base)  # type: ignore[arg-type]
    worse = -1.0 if hib else 1.0  # sign that makes "worse" positive
    shown: list[tuple[str, float, float, bool, bool, str]] = []  # (text, limit, value, breached, absolute, unit)
    unjudged: list[str] = []
    if check.max_value is not None:
        shown.append((f"{beside(cv, check.max_value)} ({'min' if hib else 'max'} {exact(check.max_value)})", check.max_value, cv,
                      worse * (cv - check.max_value) > 0, True, ""))
    if check.max_ratio is not None:
        if math.isfinite(sv) and sv > 0 and cv >= 0:  # a ratio of values of other signs means nothing
            ratio, lim = cv / sv, (1 / check.max_ratio if hib else check.max_ratio)
            shown.append((f"ratio {beside(ratio, lim)} ({'at least' if hib else 'at most'} {exact(lim)})", lim, ratio,
                          worse * (ratio - lim) > 0, False, "ratio"))
        else:
            unjudged.append("max_ratio")
    if check.max_increase is not None:
        if math.isfinite(sv):
            inc = worse * (cv - sv)
            shown.append((f"worse by {beside(inc, check.max_increase)} (limit {exact(check.max_increase)})", check.max_increase, inc,
                          inc > check.max_increase, False, ""))
        else:
            unjudged.append("max_increase")
    head = f"canary {_g(cv)} vs stable {_g(sv)}" if s is not None else f"canary {_g(cv)} (stable not measured)"
    # a pass or no verdict read from series no scrape check could see into says so (decision 381)
    unchecked = {arm: x.unchecked for arm, x in (("stable", s), ("canary", c)) if x is not None and x.unchecked}
    blind = (f"; scrape faults not checked ({' and '.join(unchecked)}): {next(iter(unchecked.values()))}"
             if unchecked else "")
    # below min_canary_requests only an absolute limit's breach (or any of a hard check) fails, as for the
    # statistical checks: a canary at 500 against a max_value of 100 is over it whatever its request count
    small = math.isfinite(c.n) and c.n < min_canary
    breaches = [x for x in shown if x[3] and (not small or x[4] or check.hard)]
    if breaches:
        text, thr, eff, _, _, unit = breaches[0]
        extra = f"; stable: {stable_error}" if s is None and stable_error else ""
        return CheckResult(outcome=Outcome.FAIL, reason=f"{head}: {text}{extra}", threshold=float(thr),
                           effect_size=float(eff), threshold_unit=unit, **base)  # type: ignore[arg-type]
    if small:
        return CheckResult(outcome=Outcome.INCONCLUSIVE, reason=f"{head}; canary n={whole(c.n)} below min "
                                                                 f"{min_canary:,}{blind}", **base)  # type: ignore[arg-type]
    thr, eff = (float(shown[0][1]), float(shown[0][2])) if shown else (math.nan, math.nan)
    base["threshold_unit"] = shown[0][5] if shown else ""
    judged = "; ".join(x[0] for x in shown)
    if unjudged:
        if s is None:
            return CheckResult(outcome=Outcome.ERROR, threshold=thr, effect_size=eff, **base,  # type: ignore[arg-type]
                               reason=f"{head}: {' and '.join(unjudged)} not judged, could not measure stable: "
                                      f"{stable_error}" + (f"; {judged}" if judged else ""))
        return CheckResult(outcome=Outcome.INCONCLUSIVE, threshold=thr, effect_size=eff, **base,  # type: ignore[arg-type]
                           reason=f"{head}; stable value unusable for {' and '.join(unjudged)}"
                                  + (f"; {judged}" if judged else "") + blind)
    note = ("; absolute limit only, stable not measured" if s is None else "") + blind
    return CheckResult(outcome=Outcome.PASS, reason=f"{head}: {judged}{note}", threshold=thr, effect_size=eff,
                       **base)  # type: ignore[arg-type]

"""A canary the traffic split sends requests to and that served none: shown beyond doubt, a hard breach.

A canary version nobody deployed (`--canary-version v2.1` for v2.1.0) gets its weight all the same:
the canary subset selects pods that do not exist, and on a real mesh every request sent there fails
(503, no healthy upstream). Its counters then never appear, so every look used to say "could not
measure canary: NoData" and the rollout waited for the step's deadline (15 minutes with
policies/default.yaml) with its share of the users failing.

The evidence is the stable arm: Istio splits requests by weight, so over a window at canary weight w
the canary's request count is about Poisson(stable x w / (100 - w)), over the part of the window
in which its requests would show by now (`shown_s`). Zero where that expectation is
at least ln(1/share) happens with probability at most `share`. The looks of a window are nested
(each look's window in it holds the earlier looks'), so the first look past the bound is the only chance
of a false alarm in a window: share = alpha / (100 x len(steps)) per step, split over the step's
windows (each resume or restarted window opens one: `bound`, decision 113), adds at most alpha/100
to the rollout's false-rollback probability, however many looks (docs/reference/guarantees.md).
"No series" for the canary arm counts as 0 requests only here -- the stable arm counted requests,
the weight is above 0, the window is long enough at that weight (`settle_s`): a Prometheus
counter does not exist before a version's first request, whose first scrape comes up to a scrape
interval later, and a new series needs a second scrape before a rate has two samples. Pure: no I/O (decision 110).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from canary.analysis.shown import whole
from canary.errors import NoData, NotCountable
from canary.model import Counts, Histogram
from canary.policy import Policy

# Scrape intervals at the canary's weight before "no canary series" can be read as "no canary
# requests". The canary's counters are born at its first request (Istio's, a lazily created model
# counter), some seconds after the weight was written (the mesh applying it, readiness); their first
# scrape comes up to one interval later, and a rate over the window needs a second sample one interval
# after that. Two intervals of 1 min (decision 110's SETTLE_S = 120 s) left no room for the first
# request's delay: a good canary whose first request came 5 s after the weight, scraped at an unlucky
# phase, was "no series" at the 120 s look while stable counted thousands, and was rolled back as
# unrouted, hard (decision 113).
SETTLE_SCRAPES = 3
SETTLE_S = 180.0  # with `metrics.scrape_interval`'s default, Prometheus's own 1 min


def bound(policy: Policy, window: int = 0) -> float:
    """The smallest expected canary request count (requests, > 0) at which 0 observed is beyond
    doubt in the step's `window` (0-based: each operator resume or restarted window opens another):
    ln(100 x len(steps) x (window+1)(window+2) / alpha), Poisson P(0) = alpha / (100 x len(steps) x
    (window+1)(window+2)); the windows' shares sum to the step's (11.5 requests at a step's first window
    with policies/default.yaml). One share per step (decision 110) was spent again by every window a
    resume opened: a step resumed 10 times had 11 chances (decision 113)."""
    w = max(int(window), 0)
    return math.log(100 * len(policy.steps) * (w + 1) * (w + 2) / policy.analysis.alpha)


def settle_s(policy: Policy) -> float:
    """Seconds (> 0) a window must cover at one weight before an empty canary arm counts as 0 requests:
    `SETTLE_SCRAPES` x `metrics.scrape_interval` (180 s by default), or two looks when they are further
    apart. Not capped at the step's interval (decision 110 capped it: "what a step may pass on, it may
    fail on"): a step passes only on canary data, so one whose interval is shorter than that keeps
    looking, and a cap hard-failed every good canary read at the 60 s default interval from 30 s scrapes
    whose second canary scrape was not in yet (decision 113)."""
    return max(SETTLE_SCRAPES * policy.metrics.scrape_interval, 2 * policy.analysis.look_every)


def shown_s(policy: Policy, window_s: float) -> float:
    """Seconds (>= 0) at the window's start in which a canary request would show in its counters by now:
    the window less `SETTLE_SCRAPES` scrape intervals. "No canary series" says only that no canary
    request came in those (a counter born later has fewer than two samples in the window), so the
    expectation zero is judged against covers them alone, not the whole window stable's count covers:
    with the whole window a quiet stable (0.6 rps, 12 canary requests expected in 180 s) hard-failed a
    good canary whose first request came 65 s in, 1.3% of steps instead of alpha/300 (decision 113)."""
    return max(0.0, window_s - SETTLE_SCRAPES * policy.metrics.scrape_interval)


def requests_counted(check_kind: str, d: Any) -> float | None:
    """Requests (>= 0) one arm's data of a check of `check_kind` counted: a latency histogram's total, an
    error or feature-missing rate's denominator; None for other kinds (a prediction histogram counts
    predictions), an arm not measured (an exception), or a count that is no count (NaN, negative)."""
    if isinstance(d, Histogram) and check_kind == "latency" and d.counts:
        n = float(d.counts[-1])
    elif isinstance(d, Counts) and check_kind in ("error_rate", "feature_missing"):
        n = float(d.total)
    else:
        return None
    return n if math.isfinite(n) and n >= 0 else None


def unrouted(policy: Policy, measurements: Mapping[str, Any], *, weight: int | None, window_s: float | None,
             canary_version: str | None = None, window: int = 0) -> tuple[dict[str, float], str]:
    """({check: stable requests}, reason) when the canary got no requests its weight makes certain; ({}, "") otherwise.

    `measurements` as `judge.judge` takes them; `weight` the canary's share in % over the window (None: not
    known, as in `canary serve`), `window_s` the window's seconds at that weight (None: not known). The
    checks named are the request-counting ones (latency, error_rate, feature_missing) whose stable arm
    counted requests and whose canary arm is `NoData` or counted 0; no such check may count a canary
    request, the window must cover `settle_s(policy)`, and the smallest stable count's expectation,
    stable x weight / (100 - weight) over the `shown_s` part of the window, must reach `bound(policy, window)`
    (`window`: the step's window, 0-based).
    The reason is one line for on-call."""
    if weight is None or not 0 < weight < 100 or window_s is None or window_s < settle_s(policy):
        return {}, ""
    stable: dict[str, float] = {}
    for check in policy.checks:
        m = measurements.get(check.name)
        if m is None or isinstance(m, BaseException):
            continue
        s, c = requests_counted(check.kind, m[0]), m[1]
        if s is None or not s > 0:
            continue
        if isinstance(c, NotCountable) or isinstance(c, BaseException) and not isinstance(c, NoData):
            return {}, ""  # could not be asked, or its series are there and do not count (scraped twice, a target
            # down: a crashed pod is the gates' probe's to say): not this case
        cn = 0.0 if isinstance(c, NoData) else requests_counted(check.kind, c)
        if cn == 0:
            stable[check.name] = s
        elif (cn or 0) > 0:
            return {}, ""  # the canary served: not this case
    if not stable:
        return {}, ""
    n, shown = min(stable.values()), shown_s(policy, window_s)
    expected = n * weight / (100 - weight) * shown / window_s
    if expected < bound(policy, window):
        return {}, ""
    pods = f"labelled version={canary_version}" if canary_version else "of the canary version"
    return stable, (f"the canary got no requests at {weight}% while stable got {whole(n)} over the last {window_s:.0f}s "
                    f"(about {whole(expected)} expected in its first {shown:.0f}s, "
                    f"P(none) = e^-{whole(expected)}): do pods {pods} exist, "
                    "ready, and does the canary subset select them? Its share of the traffic is failing")

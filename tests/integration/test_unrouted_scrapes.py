"""Decision 113: "no canary series" read as "no canary requests" (decision 110's unrouted breach) against a
real Prometheus, with series scraped the way a cluster scrapes them: every 60 s (Prometheus's default), the
canary's counters created by its first request, a few seconds after the weight moved (the mesh applying it).

Backfilled at fixed times in the past and asked `at=` a fixed time: nothing depends on a clock.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterator

import pytest

from canary.analysis import judge as J
from canary.errors import NoData
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, escape
from tests.fleet import BOUNDS_S, _latency_rates

pytestmark = pytest.mark.integration

SCRAPE_S = 60.0
PHASE_S = 4.0  # scrapes at T0 + 4 + 60k: the canary's first scrape after its first request is 59 s later
DELAY_S = 5.0  # the canary's first request: 5 s after the weight moved to it (Envoy applying the route)
WEIGHT = 10
RPS = 400.0  # stable's; the canary gets RPS x 10/90, every request as good as stable's
QUIET_RPS = 0.6  # a quiet stable: 108 requests in 180 s, 12 canary requests expected at 10%
QUIET_FIRST_S = 65.0  # and the canary's first request 65 s after the weight: Poisson, e^(-0.067 x 65) = 1.3%
T0 = (time.time() - 3600) // 3600 * 3600  # the step to 10% started here, on the hour an hour ago
POLICY = parse_policy({
    "steps": [WEIGHT, 50, 100], "analysis": {"interval": "5m", "look_every": "30s", "alpha": 0.01},
    "metrics": {"source": "model"},
    "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
               {"name": "errors", "kind": "error_rate", "max_increase_points": 1}]})
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1",
                canary_version="v2")


def _series(model: str, version: str, rps: float) -> list[tuple[str, dict[str, str], float]]:
    m = {"model_name": model, "model_version": version}
    out: list[tuple[str, dict[str, str], float]] = []
    cumulative = 0.0
    for le, rate in zip([*BOUNDS_S, math.inf], _latency_rates(0.040, rps)):
        cumulative += rate
        out.append(("model_inference_duration_seconds_bucket", {**m, "le": "+Inf" if le == math.inf else repr(le)},
                    cumulative))
    out.append(("model_inference_duration_seconds_count", m, rps))
    out.append(("model_requests_total", {**m, "outcome": "success"}, rps * 0.995))
    out.append(("model_requests_total", {**m, "outcome": "error"}, rps * 0.005))
    return out


def _history() -> str:
    """Stable since long before T0; the canary's counters born at its first request, T0 + DELAY_S, each
    scraped at T0 + PHASE_S + k x scrape interval (a lazily created counter's first scrape holds what it
    counted so far): `rec-model` every 60 s (Prometheus's default), `fast-model` every 30 s
    (kube-prometheus-stack's)."""
    lines: dict[str, list[str]] = {}
    for model, every, rps, first in (("rec-model", SCRAPE_S, RPS, DELAY_S), ("fast-model", 30.0, RPS, DELAY_S),
                                     ("quiet-model", SCRAPE_S, QUIET_RPS, QUIET_FIRST_S)):
        arms = [(_series(model, "v1", rps), T0 - 3600),
                (_series(model, "v2", rps * WEIGHT / (100 - WEIGHT)), T0 + first)]
        scrapes = [T0 - 3600 + PHASE_S + every * k for k in range(int(7200 // every))]
        for series, born in arms:
            for name, labels, per_s in series:
                head = name + "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"
                lines.setdefault(name, []).extend(f"{head} {per_s * (t - born)!r} {t:.3f}" for t in scrapes if t > born)
    text = [ln for name, ls in lines.items() for ln in (f"# TYPE {name} unknown", *ls)]
    return "\n".join([*text, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[PromServer]:
    server = PromServer(history=_history(), binary=prometheus_binary)
    server.start()
    yield server
    server.stop()


def _look(prom: PromServer, window_s: int, policy: Any = POLICY, target: Target = TARGET
          ) -> tuple[dict[str, Any], J.Verdict]:
    metrics = PrometheusProvider(prom.url, retries=1, budget_s=5.0)
    at = T0 + window_s  # the look `window_s` after the step started (look_window: now - step_started_at)
    m: dict[str, Any] = {c.name: metrics.measure(policy, c, target, window_s=window_s, at=at) for c in policy.checks}
    return m, J.judge(policy, m, canary_weight=WEIGHT, step=0, window_s=float(window_s), canary_version="v2")


def test_a_good_canary_whose_second_scrape_is_not_in_yet_is_no_hard_breach(prom: PromServer) -> None:
    """The 4th look at 10% (120 s, `settle_s`): the canary served from T0+5 s, its counters' first scrape
    is T0+64 s, the second T0+124 s. `increase(...[120s])` needs two samples: the canary arm is "no
    series" while stable counted 48,000 requests. That is scrape timing, not an unserved version: it
    was rolled back as unrouted (hard, at once), a good model, on a chance of (5 s + lag)/60 s a step."""
    m, v = _look(prom, 120)
    assert isinstance(m["errors"][1], NoData) and isinstance(m["latency-p95"][1], NoData)  # the premise
    assert not v.hard_breach and v.outcome is not Outcome.FAIL, v.reason()


def test_once_the_window_holds_a_full_scrape_interval_after_the_first_request_it_is_measured(prom: PromServer) -> None:
    """One scrape later the same canary is measured (and judged on its data, not as unrouted)."""
    m, v = _look(prom, 180)
    assert not isinstance(m["errors"][1], NoData) and m["errors"][1].total > 0
    assert not v.hard_breach, v.reason()

def test_the_default_60s_interval_on_30s_scrapes_is_no_hard_breach_at_its_first_full_look(prom: PromServer) -> None:
    """A policy that keeps analysis.interval's default (60 s) on a Prometheus scraping every 30 s: at the
    60 s look stable has 2 samples (24,000 requests), the canary born at T0+5 s one (T0+34 s): "no series".
    `settle_s` was capped at the step's interval ("what a step may pass on, it may fail on"), so that
    was a hard unrouted breach of a good canary; but no step passes without canary data either: the
    step goes on looking, and its next scrape is in by the 90 s look."""
    policy = parse_policy({"steps": [WEIGHT, 50, 100], "metrics": {"source": "model"},
                           "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
                                      {"name": "errors", "kind": "error_rate", "max_increase_points": 1}]})
    assert policy.analysis.interval == 60
    target = Target(namespace="ml", virtual_service="fast-model", model="fast-model", stable_version="v1",
                    canary_version="v2")
    m, v = _look(prom, 60, policy, target)
    assert isinstance(m["errors"][1], NoData) and not isinstance(m["errors"][0], NoData)  # the premise
    assert not v.hard_breach and v.outcome is not Outcome.FAIL, v.reason()
    m, v = _look(prom, 90, policy, target)
    assert m["errors"][1].total > 0 and not v.hard_breach, v.reason()


def test_a_quiet_stable_does_not_make_a_late_first_canary_request_a_hard_breach(prom: PromServer) -> None:
    """The "at most alpha/100" accounting: stable at 0.6 rps counts 108 requests in the 180 s window, so
    12 canary requests were expected, P(none) = e^-12, under `bound` (alpha/300 -> 10.3). But "no canary
    series" does not say "no canary request in 180 s": a counter born by a request at T0+65 s is scraped
    at T0+124 s and T0+184 s, one sample in the window. So it says "none in the window's first 180 - 3
    scrapes' seconds", which at 0.067 canary rps happens 1.3% of the time a step (decision 113), not
    alpha/300 = 0.0033%. The expectation counts only the time a request would already show."""
    target = Target(namespace="ml", virtual_service="quiet-model", model="quiet-model", stable_version="v1",
                    canary_version="v2")
    for window_s in (180, 210, 240):
        m, v = _look(prom, window_s, POLICY, target)
        assert isinstance(m["errors"][1], NoData) or m["errors"][1].total > 0  # the premise: no count of 0
        assert not v.hard_breach, (window_s, v.reason())

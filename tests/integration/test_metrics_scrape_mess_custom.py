"""Decisions 352-366 left custom checks and the request count unchecked for a canary scraped twice or with a target
down (decision 378); against the same real, backfilled Prometheus as test_metrics_scrape_mess."""

from __future__ import annotations

from typing import Any

import pytest

from canary.errors import NoData, NotCountable
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome, Scalar
from canary.policy import Policy, parse_policy
from tests.integration.test_metrics_scrape_mess import WINDOW_S, _target, prom  # noqa: F401 - the module's server

pytestmark = pytest.mark.integration

# the canary's error ratio, as a user writes it: a ratio of two sums is the same read twice, but a pod down
# is out of both sums
_RATIO = ('sum(increase(model_requests_total{model_name="{model}",model_version="{version}",outcome="error"}[{window}]))'
          ' / sum(increase(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))')
_THROUGHPUT = 'sum(rate(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))'


def _custom(query: str, **limits: Any) -> Policy:
    return parse_policy({"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "15s"},
                         "analysis": {"min_canary_requests": 100},
                         "checks": [{"name": "ratio", "kind": "custom", "query": query, **limits}]})


def _measure(server: Any, t0: float, pol: Policy, model: str) -> tuple[Any, Any]:
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    return provider.measure(pol, pol.checks[0], _target(model), window_s=WINDOW_S, at=t0)


@pytest.mark.parametrize("model", ["twice", "down", "merged"])
def test_a_custom_check_of_a_canary_scraped_twice_or_with_a_target_down_is_no_verdict(prom: Any, model: str) -> None:
    """"down": pod c at 50% errors unscraped since before the window, the custom ratio read pod b alone, 0%: a PASS
    of a canary at about 17% errors. "twice": the ratio is the same, but its request count (min_canary_requests)
    was doubled. Each arm is NotCountable now, from the series the query itself selects."""
    from canary.analysis.judge import judge

    server, t0 = prom
    pol = _custom(_RATIO, max_value=0.05)
    stable, canary = _measure(server, t0, pol, model)
    assert isinstance(stable, Scalar), stable
    assert isinstance(canary, NotCountable), canary
    r = judge(pol, {"ratio": (stable, canary)}, canary_weight=10, window_s=WINDOW_S, canary_version="v2").results[0]
    assert r.outcome is Outcome.ERROR and "unrouted" not in r.extra, r


def test_a_custom_check_of_two_pods_of_one_job_is_read_as_before(prom: Any) -> None:
    server, t0 = prom
    for pol in (_custom(_RATIO, max_value=0.05), _custom(_THROUGHPUT, max_value=5, higher_is_better=True)):
        stable, canary = _measure(server, t0, pol, "pods")
        assert isinstance(stable, Scalar) and isinstance(canary, Scalar), (stable, canary)
        assert canary.n == pytest.approx(10 * WINDOW_S, rel=0.02), canary

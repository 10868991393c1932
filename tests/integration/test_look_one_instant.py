"""One look reads both arms at one instant, however slowly Prometheus answers (decision 143).

A look asks its queries one after another, stable's then canary's, check by check. Each was
evaluated at Prometheus's "now" when it arrived, so against a slow Prometheus (a Thanos querier, an
overloaded server: seconds a query, twenty-odd queries a look) the canary's window was read tens of
seconds after the stable's. An incident shared by both arms that ended in between (a dependency's
errors) read as the canary being better than stable: a canary worse than stable at every instant
passed its error check.

Real (backfilled) Prometheus behind `Advancing`, a proxy that evaluates every query that names no
time `ADVANCE_S` later than the one before it: what a slow Prometheus's "now" does between a look's
queries, without a timed wait. A query that names its time goes through unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import structlog

from canary.analysis.judge import judge
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Outcome, Target
from canary.policy import parse_policy
from canary.reconcile import measure_window
from canary.sandbox.promserver import PromServer, Series, history_window, openmetrics
from tests.support.http import ScriptedHTTP

pytestmark = pytest.mark.integration

RPS = 1000.0
ADVANCE_S = 20.0  # a slow Prometheus's clock between two queries of one look
WINDOW_S = 60
# an incident of a dependency both versions call, ending at T: errors per request before and after
BEFORE = {"v1": 0.10, "v2": 0.12}
AFTER = {"v1": 0.005, "v2": 0.025}  # the canary has 2 points more errors than stable at every instant
POLICY = {
    "steps": [20, 50, 100],
    "analysis": {"interval": "60s", "look_every": "10s", "min_canary_requests": 100, "alpha": 0.01},
    "metrics": {"source": "model", "scrape_interval": "1s"},
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}],
}
TARGET = Target(namespace="ml", virtual_service="inc", model="inc", stable_version="v1", canary_version="v2")


@dataclass(frozen=True)
class _Stepped(Series):
    """A counter growing `per_s` per second until `at`, `after_per_s` from then on."""

    at: float = 0.0
    after_per_s: float = 0.0

    def value(self, t: float, start: float) -> float:
        return self.per_s * (min(t, self.at) - start) + self.after_per_s * max(0.0, t - self.at)


class Advancing:
    """A proxy to Prometheus's query API: a query without `time` is evaluated at `start`, the next one
    without `time` at `start + ADVANCE_S`, and so on; `times` records every evaluation time sent."""

    def __init__(self, upstream: str, start: float) -> None:
        self.upstream, self.next_at, self.times = upstream, start, []  # type: str, float, list[float]
        self._lock = threading.Lock()
        self.http = ScriptedHTTP(self._answer)
        self.url = self.http.url

    def _answer(self, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        parts = urllib.parse.urlsplit(path)
        params = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            if "time" not in params:
                params["time"] = f"{self.next_at:.3f}"
                self.next_at += ADVANCE_S
            self.times.append(float(params["time"]))
        url = f"{self.upstream}{parts.path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - 127.0.0.1 only
                return answer.status, "application/json", answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, "application/json", exc.read().decode()


@pytest.fixture(scope="module")
def incident(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=1200, after_s=600, step=1.0)
    t = start + 900  # the incident ends here
    series: list[Series] = []
    for version in ("v1", "v2"):
        m = {"model_name": "inc", "model_version": version}
        series.append(_Stepped("model_requests_total", {**m, "outcome": "error"}, RPS * BEFORE[version], at=t,
                               after_per_s=RPS * AFTER[version]))
        series.append(_Stepped("model_requests_total", {**m, "outcome": "success"}, RPS * (1 - BEFORE[version]),
                               at=t, after_per_s=RPS * (1 - AFTER[version])))
    server = PromServer(history=openmetrics(series, start=start, end=end, step=1.0), binary=prometheus_binary)
    server.start()
    try:
        yield server, t
    finally:
        server.stop()


def test_a_look_on_a_slow_prometheus_reads_both_arms_at_one_instant(incident: Any) -> None:
    """The look begins 5 s before the incident ends. At that instant the canary has 12% errors and stable
    10% (+2 points, limit +1): a failure. Asked at Prometheus's advancing "now", stable was read over
    the incident (about 8% errors) and the canary mostly after it (about 3%): the check passed."""
    server, t = incident
    proxy = Advancing(server.url, start=t - 5)
    try:
        provider = PrometheusProvider(proxy.url, retries=1, budget_s=10.0)
        out, canary_n, _, _ = measure_window(provider, parse_policy(POLICY), TARGET, window_s=WINDOW_S,
                                       log=structlog.get_logger())
    finally:
        proxy.http.close()
    assert len(set(proxy.times)) == 1, f"the look's queries were evaluated at {sorted(set(proxy.times))}"
    stable, canary = out["errors"]
    assert isinstance(stable, Counts) and isinstance(canary, Counts), out
    assert stable.events / stable.total == pytest.approx(BEFORE["v1"], rel=0.02)
    assert canary.events / canary.total == pytest.approx(BEFORE["v2"], rel=0.02)
    assert canary_n == pytest.approx(RPS * WINDOW_S, rel=0.02)
    verdict = judge(parse_policy(POLICY), out)
    result = next(r for r in verdict.results if r.check == "errors")
    assert result.outcome == Outcome.FAIL, result.reason


def test_a_one_instant_look_still_asks_an_empty_first_answer_at_prometheus_now(incident: Any) -> None:
    """The instant is the first answer's evaluation time: an answer with no sample (an empty vector, a
    series not there yet) carries none, and the next query is still evaluated at Prometheus's now."""
    server, t = incident
    proxy = Advancing(server.url, start=t - 5)
    try:
        provider = PrometheusProvider(proxy.url, retries=1, budget_s=10.0)
        with provider.one_instant():
            assert provider.query('sum(increase(model_requests_total{model_name="none"}[60s]))') == []
            first = provider.query('sum(increase(model_requests_total{model_name="inc"}[60s]))')
            again = provider.query('sum(increase(model_requests_total{model_name="inc"}[60s]))')
        after = provider.query('sum(increase(model_requests_total{model_name="inc"}[60s]))')
    finally:
        proxy.http.close()
    assert proxy.times == [t - 5, t - 5 + ADVANCE_S, t - 5 + ADVANCE_S, t - 5 + 2 * ADVANCE_S], proxy.times
    assert json.dumps(first) == json.dumps(again) and float(after[0]["value"][0]) == t - 5 + 2 * ADVANCE_S


def test_a_batched_looks_per_rollout_check_is_read_at_the_snapshots_instant(incident: Any) -> None:
    """The controller's batched look measures a step from its step-start snapshot to this tick's; a check
    the snapshot cannot hold (custom PromQL, per-feature drift) is asked per rollout over that window's
    length. It was asked at Prometheus's "now", seconds after the snapshot on a large fleet (its
    window shifted past the one the other checks are judged over), each arm at its own instant."""
    from types import SimpleNamespace

    from canary import crd
    from canary.controller import Controller

    server, t = incident
    policy = {**POLICY, "checks": [{"name": "error-share", "kind": "custom", "max_value": 0.11, "query": (
        'sum(rate(model_requests_total{model_name="{model}",model_version="{version}",outcome="error"}[{window}]))'
        ' / sum(rate(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))')}]}
    obj = crd.new_object(namespace="ml", name="inc", model="inc", canary_version="v2", policy_raw=policy,
                         stable_version="v1", virtual_service="inc")
    spec = crd.parse(obj)
    proxy = Advancing(server.url, start=t + 30)  # Prometheus's now: well past the snapshot
    try:
        provider = PrometheusProvider(proxy.url, retries=1, budget_s=10.0)
        op = Controller(custom=None, core=None, router=None, metrics=provider)
        out, _, _, _ = op._measure_batched(spec, SimpleNamespace(taken_at=t - 5), SimpleNamespace(taken_at=t - 65))
    finally:
        proxy.http.close()
    assert set(proxy.times) == {t - 5}, proxy.times
    stable, canary = out["error-share"]
    assert stable.value == pytest.approx(BEFORE["v1"], rel=0.02)
    assert canary.value == pytest.approx(BEFORE["v2"], rel=0.02)

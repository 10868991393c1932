"""PrometheusProvider against a real Prometheus (backfilled, and one live scrape).

The session server holds `tests.support.prom.make_dataset()`: linear counters,
so every expected number below is exact up to float noise.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Histogram, Scalar, Target
from canary.policy import Policy, parse_policy, source_lacks
from tests.support.http import ScriptedHTTP
from tests.support.prom import (
    EVIL_MODEL, ISTIO_LATENCY_BOUNDS_MS, MODEL_LATENCY_BOUNDS_S, PREDICTION_BOUNDS, TARGET, WINDOW_S, Dataset, cumulative,
)
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration
CHECKS: list[dict[str, Any]] = [
    {"name": "p95", "kind": "latency", "max_ms": 100},
    {"name": "errors", "kind": "error_rate", "max_rate_pct": 5},
    {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2},
    {"name": "missing", "kind": "feature_missing", "max_rate_pct": 5},
    {"name": "rps", "kind": "custom", "max_value": 100,
     "query": 'sum(rate(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))'},
]


def make_policy(source: str = "model", checks: list[dict[str, Any]] | None = None, **metrics: Any) -> Policy:
    """By default every check of CHECKS the source has a metric for (the policy refuses the others)."""
    served = [c for c in CHECKS if not source_lacks(source, c["kind"])]
    return parse_policy({"steps": [10, 100], "metrics": {"source": source, **metrics}, "checks": checks or served})


def check(policy: Policy, name: str) -> Any:
    return next(c for c in policy.checks if c.name == name)


def approx(x: float) -> Any:
    return pytest.approx(x, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("source", "bounds_ms"), [
    ("model", tuple(b * 1000 for b in MODEL_LATENCY_BOUNDS_S)), ("istio", ISTIO_LATENCY_BOUNDS_MS),
])
def test_latency_histograms_in_ms(prom_provider: PrometheusProvider, prom_dataset: Dataset, source: str,
                                  bounds_ms: tuple[float, ...]) -> None:
    pol = make_policy(source)
    stable, canary = prom_provider.measure(pol, check(pol, "p95"), TARGET, window_s=WINDOW_S)
    for arm, h in (("stable", stable), ("canary", canary)):
        assert isinstance(h, Histogram)
        assert h.bounds == pytest.approx((*bounds_ms, math.inf))
        assert h.counts == pytest.approx(cumulative(prom_dataset.arm(arm).latency))


def test_prediction_histograms(prom_provider: PrometheusProvider, prom_dataset: Dataset) -> None:
    pol = make_policy("model")
    stable, canary = prom_provider.measure(pol, check(pol, "shift"), TARGET, window_s=WINDOW_S)
    assert isinstance(canary, Histogram) and canary.bounds == (*PREDICTION_BOUNDS, math.inf)
    assert canary.counts == pytest.approx(cumulative(prom_dataset.canary.predictions))
    assert stable.counts == pytest.approx(cumulative(prom_dataset.stable.predictions))  # type: ignore[union-attr]
    # each arm's requests beside its prediction rows: min_canary_requests counts requests
    assert (stable.requests, canary.requests) == (approx(prom_dataset.stable.requests),  # type: ignore[union-attr]
                                                  approx(prom_dataset.canary.requests))


@pytest.mark.parametrize("source", ["model", "istio", "triton"])
def test_error_counts_and_request_counts(prom_provider: PrometheusProvider, prom_dataset: Dataset, source: str) -> None:
    pol = make_policy(source)
    stable, canary = prom_provider.measure(pol, check(pol, "errors"), TARGET, window_s=WINDOW_S)
    for arm, c in (("stable", stable), ("canary", canary)):
        assert isinstance(c, Counts)
        assert (c.events, c.total) == (approx(prom_dataset.arm(arm).errors), approx(prom_dataset.arm(arm).requests))
    n = prom_provider.request_counts(pol, TARGET, window_s=WINDOW_S)
    assert n == (approx(prom_dataset.stable.requests), approx(prom_dataset.canary.requests))


def test_feature_missing_is_mean_rate_times_requests(prom_provider: PrometheusProvider, prom_dataset: Dataset) -> None:
    pol = make_policy("model")
    stable, canary = prom_provider.measure(pol, check(pol, "missing"), TARGET, window_s=WINDOW_S)
    for arm, c in (("stable", stable), ("canary", canary)):
        a = prom_dataset.arm(arm)
        assert isinstance(c, Counts) and c.total == approx(a.requests)
        assert c.rate == approx(a.missing_rate)


@pytest.mark.parametrize("source", ["model", "triton"])
def test_custom_scalar_with_request_count(prom_provider: PrometheusProvider, prom_dataset: Dataset, source: str) -> None:
    pol = make_policy(source)
    stable, canary = prom_provider.measure(pol, check(pol, "rps"), TARGET, window_s=WINDOW_S)
    assert isinstance(stable, Scalar) and isinstance(canary, Scalar)
    assert stable.value == approx(prom_dataset.stable.requests / WINDOW_S)
    assert (stable.n, canary.n) == (approx(prom_dataset.stable.requests), approx(prom_dataset.canary.requests))


@pytest.mark.parametrize(("source", "name"), [("triton", "p95"), ("istio", "shift"), ("istio", "missing")])
def test_source_without_the_metric_is_a_config_error(prom_provider: PrometheusProvider, source: str, name: str) -> None:
    with pytest.raises(ConfigError, match=r"checks\[\d\]\.source"):  # refused at load time, naming the field
        make_policy(source, checks=CHECKS)
    pol = make_policy("model")  # ... and at query time, should a policy skip validation
    pol = pol.model_copy(update={"metrics": pol.metrics.model_copy(update={"source": source})})
    with pytest.raises(ConfigError, match=repr(name)):
        prom_provider.measure(pol, check(pol, name), TARGET, window_s=WINDOW_S)


@pytest.mark.parametrize("name", ["p95", "errors", "shift", "missing", "rps"])
def test_an_arm_without_data_is_its_own_no_data_naming_check_arm_query(prom_provider: PrometheusProvider,
                                                                        name: str) -> None:
    """Each arm's NoData stays in its place (issue 9, defect 5); NoData for the check only when
    neither arm has data."""
    pol = make_policy("model")
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v404")
    stable, canary = prom_provider.measure(pol, check(pol, name), target, window_s=WINDOW_S)
    assert not isinstance(stable, Exception)
    assert isinstance(canary, NoData) and re.search(rf"'{name}'.*canary arm.*query: .*v404", str(canary))
    gone = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v0", canary_version="v2")
    stable, canary = prom_provider.measure(pol, check(pol, name), gone, window_s=WINDOW_S)
    assert isinstance(stable, NoData) and "stable arm" in str(stable) and not isinstance(canary, Exception)
    both = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v0", canary_version="v404")
    with pytest.raises(NoData, match=r"stable arm.*canary arm"):
        prom_provider.measure(pol, check(pol, name), both, window_s=WINDOW_S)


def test_an_absolute_limit_fails_the_canary_when_the_stable_series_do_not_exist(prom_provider: PrometheusProvider,
                                                                                prom_dataset: Dataset) -> None:
    """Issue 9, defect 5: only `max_value`, no stable series, the canary over the limit -> FAIL (was ERROR,
    which kept the canary's traffic until the deadline)."""
    from canary.analysis.judge import judge
    from canary.model import Outcome

    pol = make_policy("model", checks=[{"name": "rps", "kind": "custom", "max_value": 0.5, "hard": True,
                                        "query": CHECKS[-1]["query"]}])
    gone = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v0", canary_version="v2")
    measured = prom_provider.measure(pol, pol.checks[0], gone, window_s=WINDOW_S)
    verdict = judge(pol, {"rps": measured})
    assert verdict.outcome is Outcome.FAIL and verdict.hard_breach, verdict.results[0].reason


def test_window_before_history_is_no_data(prom_provider: PrometheusProvider, prom_dataset: Dataset) -> None:
    pol = make_policy("istio")
    with pytest.raises(NoData, match="stable arm"):
        prom_provider.measure(pol, check(pol, "p95"), TARGET, window_s=WINDOW_S, at=prom_dataset.start - 3600)


def test_bad_promql_is_a_config_error_naming_check_and_query(prom_provider: PrometheusProvider) -> None:
    pol = make_policy(checks=[{"name": "broken", "kind": "custom", "max_value": 1, "query": "sum(rate(x[{window}])) by"}])
    with pytest.raises(ConfigError, match=r"'broken'.*query: sum\(rate\(x\[60s\]\)\) by"):
        prom_provider.measure(pol, pol.checks[0], TARGET, window_s=WINDOW_S)


def test_custom_returning_many_series_is_a_config_error(prom_provider: PrometheusProvider) -> None:
    pol = make_policy(checks=[{"name": "wide", "kind": "custom", "max_value": 1, "query": "model_requests_total"}])
    with pytest.raises(ConfigError, match="'wide'.*one number per arm"):
        prom_provider.measure(pol, pol.checks[0], TARGET, window_s=WINDOW_S)


def test_escaping_end_to_end(prom_provider: PrometheusProvider, prom_dataset: Dataset) -> None:
    evil = Target(namespace="ml", virtual_service="rec", model=EVIL_MODEL, stable_version="v1", canary_version="v2")
    pol = make_policy(checks=[CHECKS[-1]])
    with pytest.raises(NoData, match="canary arm"):  # the name matched literally: only v1 exists for it
        prom_provider.request_counts(pol, evil, window_s=WINDOW_S)
    stable_only = Target(namespace="ml", virtual_service="rec", model=EVIL_MODEL, stable_version="v1", canary_version="v1")
    assert prom_provider.request_counts(pol, stable_only, window_s=WINDOW_S) == (approx(42.0), approx(42.0))
    stable, canary = prom_provider.measure(pol, pol.checks[0], stable_only, window_s=WINDOW_S)
    assert stable.value == approx(prom_dataset.evil_requests / WINDOW_S)  # type: ignore[union-attr]


def test_query_at_now_sees_history_past_now(prom_server: Any, prom_dataset: Dataset) -> None:
    provider = PrometheusProvider(prom_server.url)
    n = provider.request_counts(make_policy("triton"), TARGET, window_s=WINDOW_S)
    assert n == (pytest.approx(prom_dataset.stable.requests, rel=1e-3), pytest.approx(prom_dataset.canary.requests, rel=1e-3))


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_dead_port_is_metrics_unavailable_quickly() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{refused_port()}", retries=3, budget_s=2.0, backoff_s=0.05)
    pol = make_policy("model")
    # both arms' counts are one query (decision 175): the line names the check and quotes that query
    with pytest.raises(MetricsUnavailable, match=r"'errors'.*connection failed.*query: .*canary_part") as info:
        provider.measure(pol, check(pol, "errors"), TARGET, window_s=WINDOW_S)
    assert info.value.__cause__ is not None  # the requests error is kept as the cause, not shown raw


class _Stub:
    """A scripted HTTP server: answers (status, body) in turn, records request headers."""

    def __init__(self, answers: list[tuple[int, str]], delay_s: float = 0.0) -> None:
        self.answers, self.headers = answers, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                stub.headers.append(dict(self.headers))
                time.sleep(delay_s)
                status, body = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Any]:
    made: list[_Stub] = []

    def make(answers: list[tuple[int, str]], delay_s: float = 0.0) -> _Stub:
        made.append(_Stub(answers, delay_s))
        return made[-1]

    yield make
    for s in made:
        s.close()


OK = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "7"]}]}})


def test_5xx_is_retried_then_succeeds_with_auth(stub: Any) -> None:
    s = stub([(503, "overloaded"), (502, "bad gateway"), (200, OK)])
    provider = PrometheusProvider(s.url, token="s3cret", retries=3, backoff_s=0.01)
    assert provider.scalar("up", check="x") == 7.0
    assert len(s.headers) == 3 and s.headers[-1]["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("answer", [(503, "down"), (200, "<html>not json</html>"), (200, '{"data": 1}')])
def test_persistent_failure_or_malformed_answer_is_unavailable(stub: Any, answer: tuple[int, str]) -> None:
    s = stub([answer])
    provider = PrometheusProvider(s.url, basic_auth=("ann", "pw"), retries=2, backoff_s=0.01)
    with pytest.raises(MetricsUnavailable, match="'x'"):
        provider.scalar("up", check="x")
    assert len(s.headers) == 2 and s.headers[0]["Authorization"].startswith("Basic ")


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_hanging_prometheus_stays_within_the_budget(stub: Any) -> None:
    s = stub([(200, OK)], delay_s=3.0)
    provider = PrometheusProvider(s.url, timeout_s=0.4, retries=5, budget_s=1.0, backoff_s=0.01)
    with pytest.raises(MetricsUnavailable, match="timed out"):
        provider.scalar("up", check="x")


def test_4xx_is_a_config_error_at_once(stub: Any) -> None:
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'})
    s = stub([(400, body)])
    with pytest.raises(ConfigError, match=r"'x'.*parse error: unexpected \"}\".*query: up"):
        PrometheusProvider(s.url, retries=3).scalar("up", check="x")
    assert len(s.headers) == 1


def test_from_env() -> None:
    env = {"CANARY_PROMETHEUS_URL": "https://prom:9090/", "CANARY_PROMETHEUS_TOKEN": "t",
           "CANARY_PROMETHEUS_INSECURE": "true"}
    p = PrometheusProvider.from_env(env, retries=1)
    assert p.url == "https://prom:9090" and p.retries == 1 and p._client._session.verify is False
    with pytest.raises(ConfigError, match="CANARY_PROMETHEUS_URL"):
        PrometheusProvider.from_env({})
    with pytest.raises(ConfigError, match="PASSWORD"):
        PrometheusProvider.from_env({"CANARY_PROMETHEUS_URL": "http://x", "CANARY_PROMETHEUS_USER": "ann"})


class _Exporter(ScriptedHTTP):
    """Counters that grow with wall time, in Prometheus text format, on 127.0.0.1."""

    RATES = {"v1": 40.0, "v2": 10.0}  # requests per second

    def __init__(self) -> None:
        t0 = time.time()

        def metrics(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
            lines = ["# TYPE model_requests_total counter"]
            for version, rate in self.RATES.items():
                lines.append(f'model_requests_total{{model_name="live",model_version="{version}",'
                             f'outcome="success"}} {rate * (time.time() - t0)}')
            return 200, "text/plain; version=0.0.4", "\n".join(lines) + "\n"

        super().__init__(metrics)
        self.target = self.address


def test_live_scrape(prom_server_factory: Any) -> None:
    exporter = _Exporter()
    try:
        server = prom_server_factory(labelled=[({"team": "ml"}, [exporter.target])], scrape_interval="1s")
        assert server.wait_targets_up(timeout_s=20) < 20  # first scrape about 6 s after start
        provider = PrometheusProvider(server.url, retries=1)
        target = Target(namespace="ml", virtual_service="live", model="live", stable_version="v1", canary_version="v2")
        deadline = time.monotonic() + 30  # first scrape about 6 s after start; increase() needs two
        while True:
            try:
                stable, canary = provider.request_counts(make_policy("model", labels={"team": "ml"}), target, window_s=30)
                break
            except NoData:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert stable > 0 and canary > 0
        assert stable / canary == pytest.approx(4.0, rel=0.05)
    finally:
        exporter.close()


def test_arms_with_different_bucket_layouts_are_compared_on_shared_bounds(prom_provider: PrometheusProvider) -> None:
    """Issue 9, 4b: identical latency, different `le` sets. No count is invented for a bound an
    arm does not export, and the judge does not fail the canary."""
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from tests.support.prom import LAYOUT_MODEL

    pol = make_policy("model", checks=[{"name": "p95", "kind": "latency", "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=LAYOUT_MODEL, model=LAYOUT_MODEL, stable_version="v1",
                    canary_version="v2")
    stable, canary = prom_provider.measure(pol, check(pol, "p95"), target, window_s=WINDOW_S)
    assert stable.bounds == approx((100.0, 150.0, 250.0, math.inf))  # type: ignore[union-attr]
    assert stable.counts == approx((6000.0, 8000.0, 9500.0, 10000.0))  # type: ignore[union-attr]
    assert canary.bounds == approx((50.0, 100.0, 250.0, math.inf))  # type: ignore[union-attr]
    assert canary.counts == approx((3000.0, 6000.0, 9500.0, 10000.0))  # type: ignore[union-attr]
    verdict = judge(pol, {"p95": (stable, canary)})
    assert verdict.outcome is not Outcome.FAIL, verdict.results[0].reason


def test_pods_of_one_arm_with_different_layouts_are_summed_on_the_bounds_they_share(
        prom_provider: PrometheusProvider) -> None:
    """`sum by (le)` over two stable pods exporting (0.1, 0.15, 0.25) and (0.05, 0.1, 0.25) holds at
    0.05 s only the second pod's 3,000: 15% of the arm at or below 50 ms where 30% are. Per rollout the
    arm is summed on the bounds every pod with observations exports, as the batched snapshot does: an
    idle pod's layout and an empty native histogram's +Inf-only series do not count."""
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from tests.support.prom import MIXED_MODEL

    pol = make_policy("model", checks=[{"name": "p95", "kind": "latency", "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=MIXED_MODEL, model=MIXED_MODEL, stable_version="v1",
                    canary_version="v2")
    stable, canary = prom_provider.measure(pol, check(pol, "p95"), target, window_s=WINDOW_S)
    assert stable.bounds == approx((100.0, 250.0, math.inf))  # type: ignore[union-attr]
    assert stable.counts == approx((12000.0, 19000.0, 20000.0))  # type: ignore[union-attr]
    assert canary.bounds == approx((100.0, 250.0, math.inf))  # type: ignore[union-attr]
    assert canary.counts == approx((6000.0, 9500.0, 10000.0))  # type: ignore[union-attr]
    verdict = judge(pol, {"p95": (stable, canary)})
    assert verdict.outcome is not Outcome.FAIL, verdict.results[0].reason


def test_a_pod_spelling_its_top_bucket_inf_is_counted_too(prom_provider: PrometheusProvider) -> None:
    """The bucket count query finds each histogram by its largest bucket, not by le="+Inf": a pod
    writing le="Inf" restricts the bounds like any other (it was left out, and the other pod's 0.15 s
    bound kept: a canary read +38% slower at p80 than an identical stable)."""
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from tests.support.prom import SPELLED_MODEL

    pol = make_policy("model", checks=[{"name": "p80", "kind": "latency", "quantile": 0.8, "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=SPELLED_MODEL, model=SPELLED_MODEL, stable_version="v1",
                    canary_version="v2")
    stable, canary = prom_provider.measure(pol, check(pol, "p80"), target, window_s=WINDOW_S)
    assert canary.bounds == approx((100.0, 250.0, math.inf))  # type: ignore[union-attr]
    assert canary.counts == approx((12000.0, 19000.0, 20000.0))  # type: ignore[union-attr]
    verdict = judge(pol, {"p80": (stable, canary)})
    assert verdict.outcome is not Outcome.FAIL, verdict.results[0].reason


def test_the_bucket_sum_and_its_count_are_one_query_at_prometheus_own_time_whatever_this_clock_says(
        prom_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider without a fixed time (the controller's, `canary promote`'s) sends an arm's bucket sum and
    its bucket count query as ONE query at Prometheus's now (decision 188; before, the count at the time the
    sum's answer carried): both see the same samples (two queries at Prometheus's now straddled a scrape: a
    draining pod summed but not counted made a bound look shared, +38% at p80 on identical arms; through a
    balancer two queries reach two replicas), and this machine's clock plays no part (pinning to it, a first
    version, shifted every window by the clock skew: 4 h here would read nothing; a clock 20 s behind passed
    an erroring canary in a review's run)."""
    import time as time_module

    from tests.support.prom import MIXED_MODEL

    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 4 * 3600)  # past the dataset's history
    prom = PrometheusProvider(prom_server.url, retries=2, budget_s=3.0, backoff_s=0.05)
    sent: list[tuple[str, str]] = []
    real_once = prom._once
    monkeypatch.setattr(prom, "_once", lambda query, params, *a: sent.append((query, params.get("time", "")))
                        or real_once(query, params, *a))
    pol = make_policy("model", checks=[{"name": "p95", "kind": "latency", "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=MIXED_MODEL, model=MIXED_MODEL, stable_version="v1",
                    canary_version="v2")
    stable, canary = prom.measure(pol, check(pol, "p95"), target, window_s=WINDOW_S)
    assert stable.bounds == approx((100.0, 250.0, math.inf)) and canary.total == approx(10000.0)  # type: ignore[union-attr]
    one = [t for x, t in sent if x.startswith("label_replace((sum by (le)") and "count by (le)" in x]
    # both arms' in one query (decision 193), at Prometheus's now, not this (skewed) clock's
    assert one == [""] and len(sent) == 1 and '"stable/count"' in sent[0][0] and '"canary/count"' in sent[0][0], sent
    report = prom.preflight(pol, target)  # at the probe's own time, as well
    assert report.warnings() == () and report.layouts == ()


def test_pods_of_one_arm_sharing_no_finite_bound_are_no_data_named(prom_provider: PrometheusProvider) -> None:
    from tests.support.prom import NO_SHARED_MODEL

    pol = make_policy("model", checks=[{"name": "p95", "kind": "latency", "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=NO_SHARED_MODEL, model=NO_SHARED_MODEL, stable_version="v1",
                    canary_version="v2")
    stable, canary = prom_provider.measure(pol, check(pol, "p95"), target, window_s=WINDOW_S)
    assert isinstance(stable, NoData) and "share no finite bucket bound" in str(stable), stable
    assert "count by (le)" in str(stable)
    assert canary.bounds == approx((100.0, 200.0, math.inf))  # type: ignore[union-attr]


def test_plan_reads_the_real_bucket_layout_and_says_it_cannot_resolve_the_limit(
        prom_provider: PrometheusProvider) -> None:
    """`canary plan --prometheus-url`: the article's buckets (10, 25, 50, 100 ms, ...) cannot show a
    canary within +20% at p95; Istio's (..., 25, 50, 100, 250, ...) neither."""
    from canary.analysis.plan import layout_report

    for source in ("model", "istio"):
        pol = make_policy(source, [{"name": "p95", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}])
        stable, _ = prom_provider.measure(pol, check(pol, "p95"), TARGET, window_s=WINDOW_S)
        [line] = layout_report(pol, {"p95": stable})
        assert line.resolves is False and "can never be shown within +20%" in line.detail, line


def test_plan_cli_with_prometheus(prom_server: Any, tmp_path: Any) -> None:
    """The CLI glue against the real server, at now: the article's buckets cannot resolve +20%."""
    from typer.testing import CliRunner

    from canary.cli import app

    pol = tmp_path / "p.yaml"
    pol.write_text("steps: [10, 100]\nmetrics: {source: model}\n"
                   "checks: [{name: p95, kind: latency, max_increase_pct: 20}]\n")
    bad = CliRunner().invoke(app, ["plan", "--policy", str(pol), "--rps", "50", "--prometheus-url", prom_server.url])
    assert bad.exit_code == 2 and "--model and --stable-version" in bad.output
    r = CliRunner().invoke(app, ["plan", "--policy", str(pol), "--rps", "50", "--prometheus-url", prom_server.url,
                                 "--model", TARGET.model, "--stable-version", "v1", "-n", TARGET.namespace, "-o", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    [line] = doc["layout"]
    assert line["check"] == "p95" and line["resolves"] is False and "can never be shown" in line["detail"], line
    # and the pass side says so: a good canary is never shown within at any step (it assumed fine buckets)
    [relative] = [c for c in doc["pass_checks"] if c["key"] == "p95/relative"]
    assert relative["late_steps"] == [s["weight"] for s in doc["steps"]], relative
    assert all(s["pass_by_check"]["p95/relative"] is None for s in doc["steps"])
    table = CliRunner().invoke(app, ["plan", "--policy", str(pol), "--rps", "50", "--prometheus-url", prom_server.url,
                                     "--model", TARGET.model, "--stable-version", "v1", "-n", TARGET.namespace])
    assert table.exit_code == 0 and "p95: CANNOT resolve its limit" in table.output
    assert "is shown within by the deadline at every step" not in table.output, table.output
    # a model with no series, or a server that is no Prometheus: the layout is unknown, exit 3 after the plan
    gone = CliRunner().invoke(app, ["plan", "--policy", str(pol), "--rps", "50", "--prometheus-url", prom_server.url,
                                    "--model", "no-such-model", "--stable-version", "v1", "-n", TARGET.namespace])
    assert gone.exit_code == 3 and "could not read the stable's latency buckets" in gone.output, gone.output

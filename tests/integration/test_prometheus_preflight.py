"""PrometheusProvider.preflight against a real Prometheus, and against things that are not one.

Preflight must turn every policy mistake the server can see into a ConfigError
(exit 2, nothing touched) before traffic moves, tell "this URL is not
Prometheus" apart from "this check is wrong", and stay within a stated time
bound when the server is down or hangs. Policies that the loader would refuse
are built with pydantic's `model_copy` (no validation): they stand for a
mistake that slips past the loader, so the server-side check is what is tested.
"""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics import queries as q
from canary.metrics.preflight import preflight_plan
from canary.metrics.query_plan import classic_buckets_query, histogram_query_of, one_query_of, request_query, twice_parts
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Target
from canary.policy import Policy, load_policy, parse_policy
from canary.sandbox.promserver import PromServer
from tests.support.http import Answer, ScriptedHTTP
from tests.support.native_histograms import NativeHistogramTarget
from tests.support.prom import TARGET, Dataset, answering_parts, series_counts
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
RPS = 'sum(rate(model_requests_total{model_name="{model}",model_version="{version}"}[{window}]))'


def custom_policy(**check: Any) -> Policy:
    """A valid one-custom-check policy, then the check's fields replaced WITHOUT validation."""
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                        "checks": [{"name": "broken", "kind": "custom", "max_value": 1, "query": RPS}]})
    return pol.model_copy(update={"checks": [pol.checks[0].model_copy(update=check)]})


def provider(url: str, **kw: Any) -> PrometheusProvider:
    kw = {"retries": 2, "budget_s": 3.0, "backoff_s": 0.05, **kw}
    return PrometheusProvider(url, **kw)


@pytest.fixture
def prom(prom_server: PromServer, prom_dataset: Dataset) -> PrometheusProvider:
    return provider(prom_server.url, at=prom_dataset.at)


@pytest.fixture
def http() -> Iterator[Callable[..., ScriptedHTTP]]:
    made: list[ScriptedHTTP] = []

    def make(answer: Callable[[str, dict[str, str]], Answer]) -> ScriptedHTTP:
        made.append(ScriptedHTTP(answering_parts(answer)))  # a look's one-query parts, each answered alone
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A listener that completes TCP handshakes (kernel backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def always(status: int, body: str, ctype: str = "application/json") -> Callable[[str, dict[str, str]], Answer]:
    return lambda path, headers: (status, ctype, body)


# -- a valid policy --------------------------------------------------------------------------


def test_default_policy_passes_and_checks_what_a_look_sends(prom: PrometheusProvider,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pol = load_policy(DEFAULT_POLICY)
    asked: list[str] = []  # what preflight really sends (the probe included)
    real_once = prom._once
    monkeypatch.setattr(prom, "_once", lambda query, *a: asked.append(query) or real_once(query, *a))
    report = prom.preflight(pol, TARGET)
    assert report.empty_stable == () and report.warnings() == ()
    assert report.window_s == 300  # analysis.interval: 5m
    assert {(x.check, x.arm) for x in report.queries} == {
        (c, arm) for c in [*(c.name for c in pol.checks), "request_counts"] for arm in ("stable", "canary")}
    assert all(not x.no_data for x in report.queries)
    distinct = {x.query for x in report.queries}
    # errors/errors-hard share queries: each distinct one goes out once; each classic histogram's
    # bucket count query (pods of one arm on different layouts) is read from the both-arms query below
    # (decision 196), never asked on its own with its sum (decision 188), as a look never sends it
    counting = {c[0] for x in distinct if (c := classic_buckets_query(x))}
    # and each error_rate check's parts (decision 175) and each feature_missing check's fraction and requests
    # (decision 189), both arms, as the one query a look sends
    combined = {x for c in pol.checks if (x := one_query_of(pol, c, TARGET, window_s=report.window_s))}
    assert {c.kind for c in pol.checks if one_query_of(pol, c, TARGET, window_s=report.window_s)} == {
        "error_rate", "feature_missing"}
    # and each latency and prediction_shift check's classic histograms, both arms, as one query (decision 193)
    combined |= {x for c in pol.checks if (x := histogram_query_of(pol, c, TARGET, window_s=report.window_s))}
    assert any('"canary/buckets"' in x for x in combined)
    # and the request counts, both arms, with the parts naming a target read twice or down (decision 380)
    combined.add(request_query(pol, TARGET, window_s=report.window_s)[0])
    assert counting and combined and len(asked) == report.sent == 1 + len(distinct) + len(combined)
    assert set(asked) == {"vector(1)"} | distinct | combined and not counting & set(asked)

    sent: list[str] = []  # what measure() and request_counts() really send over the same window
    monkeypatch.setattr(prom, "_once", lambda query, *a: sent.append(query) or real_once(query, *a))
    for check in pol.checks:
        prom.measure(pol, check, TARGET, window_s=report.window_s)
    prom.request_counts(pol, TARGET, window_s=report.window_s)
    assert set(sent) <= distinct | combined and combined <= set(sent)  # all of it checked first


def test_a_bucket_layout_that_cannot_show_the_limit_is_named_before_traffic(prom: PrometheusProvider) -> None:
    """Istio's default buckets put the dataset's stable p95 in (100, 250] ms: a canary as fast as
    stable can never be shown within +20% there (issue 9), and preflight says so, by check."""
    report = prom.preflight(load_policy(DEFAULT_POLICY), TARGET)
    assert len(report.unresolvable) == 1, report.unresolvable
    line = report.unresolvable[0]
    assert line.startswith("checks[0] 'latency-p95': stable p95 in (100, 250] ms, a bucket 2.5x wide")
    assert "+20%" in line and report.to_dict()["unresolvable"] == [line]


def test_canary_without_series_is_recorded_not_raised(prom: PrometheusProvider) -> None:
    pol = load_policy(DEFAULT_POLICY)
    fresh = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v9")
    report = prom.preflight(pol, fresh)
    assert report.empty_stable == ()
    canary_hist = [x for x in report.queries if x.arm == "canary" and x.check == "latency-p95"]
    assert canary_hist and all(x.no_data for x in canary_hist)


def test_empty_stable_arm_is_a_warning_naming_the_check(prom: PrometheusProvider) -> None:
    pol = load_policy(DEFAULT_POLICY)
    report = prom.preflight(pol, Target(namespace="ml", virtual_service="rec", model="nope",
                                        stable_version="v1", canary_version="v2"))
    assert {x.check for x in report.empty_stable} == {*(c.name for c in pol.checks), "request_counts"}
    errors = [x for x in report.queries if x.check == "errors" and x.arm == "stable"]
    # requests; errors: no error series is 0 errors only beside a request counter, and there is none
    assert [x.no_data for x in errors] == [True, True]
    assert any(w.startswith("checks[0] 'latency-p95': no data for the stable arm") for w in report.warnings())


# -- the server rejects a query -----------------------------------------------------------


@pytest.mark.parametrize(("query", "prometheus_says"), [
    ("sum(rate(model_requests_total[{window}])", "parse error"),  # unbalanced
    ('sum(model_requests_total{model-name="{model}"})', "parse error"),  # invalid label name
    ("sum(rate(model-requests_total[{window}]))", "binary expression must contain only scalar and instant vector"),
    ('model_requests_total{model_name="{model}"} / on (model_name) model_requests_total{model_name="{model}"}',
     "many-to-many matching not allowed"),  # HTTP 422: found at execution
])
def test_query_the_server_rejects_is_a_config_error_naming_the_check(prom: PrometheusProvider, query: str,
                                                                     prometheus_says: str) -> None:
    with pytest.raises(ConfigError, match=r"policy checks\[0\] 'broken' \(stable arm\): Prometheus rejected "
                                          rf"the query \(HTTP 4\d\d \w+: .*{prometheus_says}.*\); query: ") as info:
        prom.preflight(custom_policy(query=query), TARGET)
    assert not isinstance(info.value, MetricsUnavailable)


def test_bad_canary_query_names_the_canary_arm(prom: PrometheusProvider) -> None:
    pol = custom_policy(query=None, stable_query=RPS, canary_query="sum(rate(x[{window}]) by")
    with pytest.raises(ConfigError, match=r"checks\[0\] 'broken' \(canary arm\).*parse error"):
        prom.preflight(pol, TARGET)


@pytest.mark.parametrize(("query", "why"), [
    ('model_requests_total{model_name="{model}",model_version="{version}"}', "one number per arm"),
    ('model_requests_total{model_name="{model}",model_version="{version}",outcome="error"}[{window}]',
     "range vector"),
])
def test_answer_a_check_cannot_use_is_a_config_error(prom: PrometheusProvider, query: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^policy checks\[0\] 'broken' \(stable arm\): [^']*{why}"):
        prom.preflight(custom_policy(query=query), TARGET)


def test_invalid_label_and_metric_names_are_caught_before_any_request() -> None:
    closed = provider(f"http://127.0.0.1:{refused_port()}")  # a request would be MetricsUnavailable
    pol = load_policy(DEFAULT_POLICY)
    bad_arm = pol.model_copy(update={"metrics": pol.metrics.model_copy(update={"arm_label": "dest-version"})})
    with pytest.raises(ConfigError, match=r"policy checks\[0\] 'latency-p95': metrics.arm_label: 'dest-version'"):
        closed.preflight(bad_arm, TARGET)
    shift = pol.checks[3]
    bad_metric = pol.model_copy(update={"checks": [shift.model_copy(update={"metric": "model-prediction"})]})
    with pytest.raises(ConfigError, match=r"policy checks\[0\] 'predictions'.*'model-prediction' is not a valid"):
        closed.preflight(bad_metric, TARGET)


# -- the URL is not a Prometheus HTTP API -------------------------------------------------


def test_wrong_path_prefix_on_a_real_prometheus(prom_server: PromServer) -> None:
    with pytest.raises(ConfigError, match=r"does not look like a Prometheus HTTP API.*HTTP 404.*path prefix"):
        provider(prom_server.url + "/prometheus").preflight(load_policy(DEFAULT_POLICY), TARGET)


@pytest.mark.parametrize("answer", [
    always(404, "404 page not found\n", "text/plain"),
    always(200, "<!doctype html><html><title>Grafana</title></html>", "text/html"),
    always(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})),  # no known answer
    always(200, json.dumps({"status": "success", "data": {"result": {"x": 1}}})),  # wrong shape
    always(400, "<html>Bad Request</html>", "text/html"),  # even vector(1) is refused
    always(405, "method not allowed", "text/plain"),
])
def test_a_server_that_is_not_prometheus_is_a_config_error(http: Callable[..., ScriptedHTTP], answer: Any) -> None:
    server = http(answer)
    with pytest.raises(ConfigError, match=r"does not look like a Prometheus HTTP API.*path prefix") as info:
        provider(server.url, retries=3).preflight(load_policy(DEFAULT_POLICY), TARGET)
    assert len(server.paths) == 1 and server.paths[0].startswith("/api/v1/query?")  # no retries, no check queries
    assert "checks[" not in str(info.value)  # the URL is wrong, not a check


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_a_config_error(http: Callable[..., ScriptedHTTP], status: int) -> None:
    server = http(always(status, "Unauthorized", "text/plain"))
    with pytest.raises(ConfigError, match=rf"refused our credentials \(HTTP {status}.*--prometheus-token"):
        provider(server.url, token="wrong").preflight(load_policy(DEFAULT_POLICY), TARGET)
    assert len(server.paths) == 1


def test_prometheus_behind_a_prefix_with_credentials(http: Callable[..., ScriptedHTTP], prom_server: PromServer,
                                                     prom_dataset: Dataset) -> None:
    """A reverse proxy: /prom/... with the right token is passed to the real Prometheus."""
    import urllib.request

    def proxy(path: str, headers: dict[str, str]) -> Answer:
        if headers.get("Authorization") != "Bearer good":
            return 401, "text/plain", "no"
        if not path.startswith("/prom/"):
            return 404, "text/plain", "not found"
        with urllib.request.urlopen(prom_server.url + path[len("/prom"):], timeout=5) as resp:
            return resp.status, "application/json", resp.read().decode()

    server = http(proxy)
    report = provider(server.url + "/prom", token="good", at=prom_dataset.at).preflight(
        load_policy(DEFAULT_POLICY), TARGET)
    assert report.empty_stable == () and report.url == server.url + "/prom"
    with pytest.raises(ConfigError, match="path prefix"):
        provider(server.url, token="good").preflight(load_policy(DEFAULT_POLICY), TARGET)


# -- the server cannot be asked now: transient, bounded ------------------------------------


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_closed_port_is_metrics_unavailable_quickly() -> None:
    p = provider(f"http://127.0.0.1:{refused_port()}", retries=3, budget_s=2.0)
    with pytest.raises(MetricsUnavailable, match="connection failed"):
        p.preflight(load_policy(DEFAULT_POLICY), TARGET)
    # refused at once: no attempt waits for a timeout (the bound is the timeouts; the margin is for load)


def test_persistent_5xx_is_metrics_unavailable_after_the_retries(http: Callable[..., ScriptedHTTP]) -> None:
    server = http(always(503, "overloaded", "text/plain"))
    with pytest.raises(MetricsUnavailable, match="HTTP 503"):
        provider(server.url, retries=3).preflight(load_policy(DEFAULT_POLICY), TARGET)
    assert len(server.paths) == 3


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_hanging_server_with_short_timeouts(hanging_url: str) -> None:
    p = provider(hanging_url, timeout_s=0.3, retries=3, budget_s=2.0)
    assert p.query_bound_s == pytest.approx(3 * 0.3 + 0.05 + 0.1)  # every attempt times out first
    with pytest.raises(MetricsUnavailable, match="timed out"):
        p.preflight(load_policy(DEFAULT_POLICY), TARGET)


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_slow_server_is_cut_by_the_preflight_budget(http: Callable[..., ScriptedHTTP], prom_server: PromServer,
                                                    prom_dataset: Dataset) -> None:
    """Each answer is right but slow (0.25 s at least): the budget cuts the preflight short. Counted,
    not timed: at most 3 x budget_s / 0.25 s + 1 answers fit however loaded the machine, fewer than
    the queries a full preflight sends."""
    import urllib.request

    def slow(path: str, headers: dict[str, str]) -> Answer:
        time.sleep(0.25)
        with urllib.request.urlopen(prom_server.url + path, timeout=5) as resp:
            return resp.status, "application/json", resp.read().decode()

    server = http(slow)
    p = provider(server.url, at=prom_dataset.at, timeout_s=1.0, budget_s=0.5)
    policy = load_policy(DEFAULT_POLICY)
    with pytest.raises(MetricsUnavailable):
        p.preflight(policy, TARGET)
    planned = len({q for *_, q in preflight_plan(policy, TARGET, 60)})
    assert len(server.paths) <= 3 * 0.5 / 0.25 + 1 < planned, (len(server.paths), planned)


def _lognormal(n: int, median: float, sigma: float) -> list[float]:
    import random

    rng = random.Random(9)
    return [median * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def test_a_latency_exported_only_as_a_native_histogram_is_read_and_judged(
        prom_server_factory: Callable[..., PromServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a model exporting its latency only as a Prometheus native histogram (protobuf
    exposition, Prometheus with the feature on) has no `_bucket` series. Preflight reads it natively
    (no warning, the native query in the report), a look reads both arms on one grid, and the
    judge passes an equal canary and fails one 50% slower."""
    from canary.analysis.judge import judge_check
    from canary.model import Outcome

    base = "model_inference_duration_seconds"
    fast = _lognormal(300, 0.05, 0.3)
    series = {(("model_name", "rec"), ("model_version", "v1")): fast,
              (("model_name", "rec"), ("model_version", "v2")): fast,
              (("model_name", "slow"), ("model_version", "v1")): fast,
              (("model_name", "slow"), ("model_version", "v2")): [1.5 * v for v in fast]}
    import random

    rng = random.Random(4)
    scores = [rng.betavariate(2, 5) for _ in range(300)]
    target = NativeHistogramTarget(base, series).start()
    predictions = NativeHistogramTarget("model_prediction_value", {
        (("model_name", "rec"), ("model_version", v)): scores for v in ("v1", "v2")}).start()
    try:
        server = prom_server_factory(targets=[target.address, predictions.address],
                                     extra_args=["--enable-feature=native-histograms"])
        server.wait_targets_up(timeout_s=30)
        prom = provider(server.url)
        deadline = time.monotonic() + 60
        # ten scrapes (1 s apart) of all six series inside the window before measuring
        every = '{__name__=~"model_inference_duration_seconds|model_prediction_value"}'
        while len(prom.query(f"count_over_time({every}[10s]) >= 10", check="wait", arm="stable", at=None)) < 6:
            assert time.monotonic() < deadline, "the native histogram never appeared"
            time.sleep(0.5)
        pol = parse_policy({"steps": [10, 100], "analysis": {"interval": "10s", "look_every": "10s"},
                            "metrics": {"source": "model", "scrape_interval": "1s"},
                            "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20}]})
        asked: list[str] = []  # what preflight sends, then what a look sends
        real_once = prom._once
        monkeypatch.setattr(prom, "_once", lambda query, *a: asked.append(query) or real_once(query, *a))
        report = prom.preflight(pol, TARGET)
        latency = [x for x in report.queries if x.check == "latency-p95"]
        assert [x.query for x in latency] == [
            f'sum(increase({base}{{model_name="rec",model_version="{v}"}}[10s]))' for v in ("v1", "v2")]
        assert all(x.series == 1 and (x.value or 0) > 1000 for x in latency)
        assert not [w for w in report.warnings() if "latency-p95" in w], report.warnings()
        at = time.time()
        check = pol.checks[0]
        for histograms in ("classic", "native"):  # both arms' native histograms: one query, asked first (195)
            first = pol.model_copy(update={"metrics": pol.metrics.model_copy(update={"histograms": histograms})})
            before = len(prom.preflight(first, TARGET) and asked)
            prom.measure(first, check, TARGET, window_s=10, at=at)
            look = asked[before:]
            assert set(look) <= set(asked[:before]), look
            assert [x for x in look if x.startswith("sum by (model_version) (increase(")] == [
                f'sum by (model_version) (increase({base}{{model_name="rec",model_version=~"v1|v2"}}[10s])) '
                f'or {q.one_answer(twice_parts(pol, check, TARGET, window_s=10))}']  # and whether two scrape jobs read a pod
        for model, expected in (("rec", Outcome.PASS), ("slow", Outcome.FAIL)):
            t = Target(namespace=TARGET.namespace, virtual_service="vs", model=model, stable_version="v1",
                       canary_version="v2")
            stable, canary = prom.measure(pol, check, t, window_s=10, at=at)
            assert stable.bounds == canary.bounds and len(stable.bounds) > 20  # one grid: every bound shared
            assert stable.total > 1000 and canary.total > 1000
            ratios = [b / a for a, b in zip(stable.bounds[1:-1], stable.bounds[2:-1])]
            assert max(ratios) == pytest.approx(2 ** (1 / 8), rel=1e-9)  # schema 3, in ms
            verdict = judge_check(check, stable, canary, alpha=0.01, min_canary=100)
            assert verdict.outcome == expected, verdict.reason
        # `canary plan --prometheus-url` reads the stable layout as a look does: the schema-3 grid
        from canary.analysis.plan import layout_report

        rec = Target(namespace=TARGET.namespace, virtual_service="vs", model="rec", stable_version="v1",
                     canary_version="v1")
        (layout,) = layout_report(pol, {check.name: prom.measure(pol, check, rec, window_s=10, at=at)[0]})
        assert layout.resolves and layout.bucket_ratio == pytest.approx(2 ** (1 / 8), rel=1e-6), layout
        # the controller's batched snapshot: read by bucket index where last_over_time gives histogram
        # samples, else (Prometheus 2.42 answers "0") the check goes per rollout, never NoData
        from canary.metrics import batch as b

        batch = b.BatchMetrics(prom)
        slow = Target(namespace=TARGET.namespace, virtual_service="vs", model="slow", stable_version="v1",
                      canary_version="v2")
        base_snap, now_snap = (batch.snapshot([b.Want(pol, slow)], at=t) for t in (at - 5, at))
        try:
            stable, canary = b.measure_delta(pol, check, slow, now_snap, base_snap)
            assert stable.bounds == canary.bounds and stable.total > 0 and canary.total > 0
        except b.NotBatchable as exc:
            assert "last_over_time gives no histogram" in str(exc)
        # a prediction histogram is compared on cells read off stable (quantiles, a grid): up to about 60
        shift = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                              "checks": [{"name": "shift", "kind": "prediction_shift", "max_psi": 0.1}]}).checks[0]
        stable, canary = prom.measure(pol, shift, TARGET, window_s=10, at=at)
        assert stable.bounds == canary.bounds and 5 <= len(stable.bounds) <= 61  # stable quantiles and a grid
        # these targets export no request counter: the floor (requests, not prediction rows) is never met
        assert (stable.requests, canary.requests) == (0.0, 0.0)
        verdict = judge_check(shift, stable, canary, alpha=0.01, min_canary=0)
        assert verdict.outcome == Outcome.PASS, verdict.reason
    finally:
        target.stop()
        predictions.stop()


def _wait_for(prom: PrometheusProvider, query: str, n: int) -> list[Any]:
    """The answer to `query` once it has `n` series (a live scrape's samples arriving), within 60 s."""
    deadline = time.monotonic() + 60
    while len(got := prom.query(query, check="wait", arm="stable", at=None)) < n:
        assert time.monotonic() < deadline, f"never: {query}"
        time.sleep(0.3)
    return got


# the servers these tests start scrape every second, as the policy says (else preflight asks over 3 min scrapes)
_LATENCY_60S = parse_policy({"steps": [10, 100], "analysis": {"interval": "60s", "look_every": "10s"},
                             "metrics": {"source": "model", "scrape_interval": "1s"},
                             "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20}]})


def test_an_empty_native_histogram_is_ingested_native_and_an_old_clients_ghost_is_read_past(
        prom_server_factory: Callable[..., PromServer]) -> None:
    """Found when CI failed: Prometheus before 2.47 takes a native histogram with no observations, a
    zero threshold of 0 and no deltas for a classic one, and stores `_bucket{le="+Inf"}` 0 for it (a
    canary before its traffic). (a) The sandbox's exporter writes the Go client's zero threshold
    2^-128: an empty histogram is native from the first scrape, no `_bucket` series. (b) A client
    that writes 0 leaves such a ghost in the window once traffic starts; preflight and a look read
    both arms natively past it (before: preflight refused the stable arm as "+Inf only", a look
    made the arm NoData until the ghost left the window)."""
    from canary.analysis.judge import judge_check
    from canary.model import Outcome

    base = "model_inference_duration_seconds"
    arms = {v: (("model_name", "rec"), ("model_version", v)) for v in ("v1", "v2")}
    old_client = NativeHistogramTarget(base, {k: [] for k in arms.values()}, zero_threshold=0.0).start()
    idle = NativeHistogramTarget(base, {(("model_name", "idle"), ("model_version", "v1")): []}).start()
    try:
        server = prom_server_factory(targets=[old_client.address, idle.address],
                                     extra_args=["--enable-feature=native-histograms"])
        server.wait_targets_up(timeout_s=30)
        prom = provider(server.url)

        # two scrapes of each empty series: the old client's are classic ghosts, the Go-like one is native
        _wait_for(prom, f'count_over_time({base}_bucket{{model_name="rec"}}[60s]) >= 2', 2)
        _wait_for(prom, f'count_over_time({base}{{model_name="idle"}}[60s]) >= 2', 1)
        assert prom.query(f'{base}_bucket{{model_name="idle"}}', check="t", arm="", at=None) == []
        for labels in arms.values():
            old_client.observe_each_scrape(labels, _lognormal(100, 0.05, 0.3))
        _wait_for(prom, f'count_over_time({base}{{model_name="rec"}}[60s]) >= 4', 2)  # native samples now
        pol = _LATENCY_60S
        report = prom.preflight(pol, TARGET)  # its stable arm: ghost and native series in the window
        latency = [x for x in report.queries if x.check == "latency-p95"]
        assert [x.query for x in latency] == [
            f'sum(increase({base}{{model_name="rec",model_version="{v}"}}[60s]))' for v in ("v1", "v2")], latency
        assert not [w for w in report.warnings() if "latency-p95" in w], report.warnings()
        assert prom.query(f'{base}_bucket{{model_name="rec"}}[60s]', check="t", arm="", at=None)  # the ghosts
        stable, canary = prom.measure(pol, pol.checks[0], TARGET, window_s=60)
        assert stable.bounds == canary.bounds and len(stable.bounds) > 10 and canary.total > 100
        verdict = judge_check(pol.checks[0], stable, canary, alpha=0.01, min_canary=100)
        assert verdict.outcome == Outcome.PASS, verdict.reason
    finally:
        old_client.stop()
        idle.stop()


def test_a_both_forms_clients_empty_classic_buckets_never_hide_its_native_histogram(
        prom_server_factory: Callable[..., PromServer]) -> None:
    """Decision 51's wider case: a client exporting both forms (classic buckets and a native
    histogram) with a zero threshold of 0. Before its first observation Prometheus 2.42 ingests it as
    classic, at *every* bound (not only +Inf), all 0; from then on as native only. Classic series
    without observations in the window are no classic histogram where the arm has a native one: a
    look reads both arms natively (before, the arms were "no observations" until the zeros left the
    window)."""
    from canary.analysis.judge import judge_check
    from canary.model import Outcome

    base = "model_inference_duration_seconds"
    arms = {v: (("model_name", "rec"), ("model_version", v)) for v in ("v1", "v2")}
    client = NativeHistogramTarget(base, {k: [] for k in arms.values()}, zero_threshold=0.0,
                                   classic_bounds=(0.05, 0.1, 0.2, 0.5)).start()
    try:
        server = prom_server_factory(targets=[client.address], extra_args=["--enable-feature=native-histograms"])
        server.wait_targets_up(timeout_s=30)
        prom = provider(server.url)

        # two scrapes of the empty series: classic, at each of the 4 bounds and +Inf, per arm
        _wait_for(prom, f'count_over_time({base}_bucket{{model_name="rec"}}[60s]) >= 2', 10)
        for labels in arms.values():
            client.observe_each_scrape(labels, _lognormal(100, 0.05, 0.3))
        _wait_for(prom, f'count_over_time({base}{{model_name="rec"}}[60s]) >= 4', 2)  # native samples now
        pol = _LATENCY_60S
        assert prom.query(f'{base}_bucket{{model_name="rec",le="0.1"}}[60s]', check="t", arm="", at=None)  # zeros
        stable, canary = prom.measure(pol, pol.checks[0], TARGET, window_s=60)
        assert not isinstance(stable, NoData) and not isinstance(canary, NoData), (stable, canary)
        assert stable.bounds == canary.bounds and len(stable.bounds) > 10 and canary.total > 100
        verdict = judge_check(pol.checks[0], stable, canary, alpha=0.01, min_canary=100)
        assert verdict.outcome == Outcome.PASS, verdict.reason
        report = prom.preflight(pol, TARGET)  # read natively too, as the look reads it
        assert not [w for w in report.warnings() if "latency-p95" in w], report.warnings()
        assert [x.query for x in report.queries if x.check == "latency-p95"] == [
            f'sum(increase({base}{{model_name="rec",model_version="{v}"}}[60s]))' for v in ("v1", "v2")]
    finally:
        client.stop()


def test_a_stable_arm_without_any_histogram_is_still_only_a_warning(prom: PrometheusProvider) -> None:
    """The native probe changes nothing when the series does not exist at all (a label typo)."""
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "labels": {"cluster": "nowhere"}},
                        "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20}]})
    report = prom.preflight(pol, TARGET)
    assert any("latency-p95" in w for w in report.warnings())


def test_the_native_read_is_best_effort_and_sent_once_per_series(http: Callable[..., ScriptedHTTP]) -> None:
    """A native query Prometheus cannot answer leaves an empty histogram the warning it was (never a
    failed preflight); two checks on one metric send one native query, for both arms, the one a look
    sends (decision 195); a native answer is read as the look reads it."""
    from urllib.parse import parse_qs, urlparse

    empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
    one = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}})
    native = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "histogram": [1, {"count": "3", "sum": "0.1", "buckets": [[0, "0.5", "1", "3"]]}]}]}})

    def answer(native_status: int, native_body: str) -> Callable[[str, dict[str, str]], Answer]:
        def reply(path: str, headers: dict[str, str]) -> Answer:
            query = parse_qs(urlparse(path).query).get("query", [""])[0]
            if query == "vector(1)":
                return 200, "application/json", one
            if query.startswith("sum(increase(model_inference_duration_seconds{"):  # the native query
                return native_status, "application/json", native_body
            return 200, "application/json", empty
        return reply

    two_checks = parse_policy({"steps": [10, 100], "metrics": {"source": "model"}, "checks": [
        {"name": "p95", "kind": "latency", "max_increase_pct": 20},
        {"name": "p99", "kind": "latency", "quantile": 0.99, "max_increase_pct": 30}]})
    down = http(answer(503, "unavailable"))
    report = provider(down.url, retries=1).preflight(two_checks, TARGET)
    assert any("p95" in w for w in report.warnings())
    server = http(answer(200, native))
    report = provider(server.url).preflight(two_checks, TARGET)
    assert not [w for w in report.warnings() if "p95" in w or "p99" in w], report.warnings()
    assert sum("sum+by+%28model_version%29+%28increase%28model_inference_duration_seconds%7B" in p
               for p in server.paths) == 1  # both arms, one query (decision 195)
    assert not any("query=sum%28increase%28model_inference_duration_seconds%7B" in p for p in server.paths)
    assert {x.value for x in report.queries if x.check in ("p95", "p99")} == {3.0}


def test_one_native_arm_reads_the_other_natively_too_or_leaves_stable_out(
        http: Callable[..., ScriptedHTTP]) -> None:
    """A canary version that switched to native histograms while stable exports both: the stable arm is
    read natively too, so both compare on one grid. Where the stable arm has classic buckets only,
    the two forms are not compared bound for bound (they share a power of 2 or two: a newcomer's
    prediction check passed a large shift on 2 cells): the stable arm is left out, saying why, and
    the canary's own limits are still judged."""
    from urllib.parse import parse_qs, urlparse

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    classic = vector(*({"metric": {"le": le}, "value": [1, c]} for le, c in (("0.5", "10"), ("1", "30"), ("+Inf", "40"))))
    g = [2 ** (i / 8) for i in range(-9, 1)]  # schema 3 bounds up to 1 s

    def native(count: int) -> str:
        return vector({"metric": {}, "histogram": [1, {"count": str(count), "sum": "1", "buckets": [
            [0, repr(g[0]), repr(g[1]), str(count // 2)], [0, repr(g[8]), repr(g[9]), str(count - count // 2)]]}]})

    def reply(stable_native: bool) -> Callable[[str, dict[str, str]], Answer]:
        def answer(path: str, headers: dict[str, str]) -> Answer:
            query = parse_qs(urlparse(path).query).get("query", [""])[0]
            stable = 'model_version="v1"' in query
            if query.startswith("count by (le)"):
                return 200, "application/json", series_counts(classic if stable else vector())
            if query.startswith("sum by (le)"):
                return 200, "application/json", classic if stable else vector()
            return 200, "application/json", native(40) if not stable else (native(20) if stable_native else vector())
        return answer

    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                        "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]})
    s, c = provider(http(reply(True)).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    # the grid from the first bucket's lower edge, 2^(-9/8) s, to 1 s (10 bounds), in ms, and +Inf
    assert s.bounds == c.bounds and len(s.bounds) == 11
    assert (s.total, c.total) == (20, 40) and s.counts[:2] == (0, 10) and c.counts[-2] == 40
    s, c = provider(http(reply(False)).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert isinstance(s, NoData) and "canary arm is a Prometheus native histogram and the stable arm classic" in str(s)
    assert c.bounds[-2:] == (1000.0, math.inf) and len(c.bounds) == 11
    ceiling = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                            "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20, "max_ms": 500}]})
    from canary.analysis.judge import judge_check
    from canary.model import Outcome

    s, c = provider(http(reply(False)).url).measure(ceiling, ceiling.checks[0], TARGET, window_s=60)
    verdict = judge_check(ceiling.checks[0], s, c, alpha=0.01, min_canary=10)
    assert verdict.outcome == Outcome.FAIL, verdict.reason  # half the canary above 500 ms: its own ceiling


def test_the_ghost_of_an_empty_native_histogram_never_hides_an_arm(http: Callable[..., ScriptedHTTP]) -> None:
    """Decision 51, the review's cases: a `_bucket{le="+Inf"}` series at 0 (what Prometheus < 2.47
    keeps for a native histogram before its first observation) is no classic histogram. (a) Under
    `metrics.histograms: native`, stable classic only and the canary native with a ghost: the
    canary is read natively (it was read from the ghost: no observations). (b) A canary with only
    the ghost has no observations; the message does not blame a form mismatch. (c) Preflight: a
    stable arm +Inf-only with observations and a native histogram the server cannot answer now
    (5xx) is not refused, however many checks share the query."""
    from urllib.parse import parse_qs, urlparse

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    classic = vector(*({"metric": {"le": le}, "value": [1, c]} for le, c in (("0.5", "10"), ("1", "30"), ("+Inf", "40"))))
    g = [2 ** (i / 8) for i in range(-9, 1)]
    native = vector({"metric": {}, "histogram": [1, {"count": "40", "sum": "1", "buckets": [
        [0, repr(g[0]), repr(g[1]), "20"], [0, repr(g[8]), repr(g[9]), "20"]]}]})

    def ghost(count: str = "0") -> str:
        return vector({"metric": {"le": "+Inf"}, "value": [1, count]})

    def reply(table: dict[tuple[str, str], Answer | str]) -> Callable[[str, dict[str, str]], Answer]:
        def answer(path: str, headers: dict[str, str]) -> Answer:
            query = parse_qs(urlparse(path).query).get("query", [""])[0]
            if query == "vector(1)":
                return 200, "application/json", vector({"metric": {}, "value": [1, "1"]})
            arm = "stable" if 'model_version="v1"' in query else "canary"
            counting = query.startswith("count by (le)")
            form = "classic" if query.startswith(("sum by (le)", "count by (le)")) else \
                "native" if "_seconds{" in query else "other"
            got = table.get((arm, form), vector({"metric": {}, "value": [1, "50"]}) if form == "other" else vector())
            if counting and isinstance(got, str):
                got = series_counts(got)
            return got if isinstance(got, tuple) else (200, "application/json", got)
        return answer

    spec = {"steps": [10, 100], "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20, "max_ms": 900}]}
    native_first = parse_policy({**spec, "metrics": {"source": "model", "histograms": "native"}})
    url = http(reply({("stable", "classic"): classic, ("canary", "classic"): ghost(), ("canary", "native"): native})).url
    s, c = provider(url).measure(native_first, native_first.checks[0], TARGET, window_s=60)
    assert isinstance(s, NoData) and "canary arm is a Prometheus native histogram" in str(s)
    assert not isinstance(c, NoData) and c.total == 40  # read natively, not from the ghost
    classic_first = parse_policy({**spec, "metrics": {"source": "model"}})
    url = http(reply({("stable", "native"): native, ("canary", "classic"): ghost()})).url
    s, c = provider(url).measure(classic_first, classic_first.checks[0], TARGET, window_s=60)
    assert not isinstance(s, NoData) and s.total == 40
    assert isinstance(c, NoData) and "no observations for the canary arm" in str(c) and "form" not in str(c)
    two = parse_policy({**spec, "metrics": {"source": "model"}, "checks": [
        *spec["checks"], {"name": "p99", "kind": "latency", "quantile": 0.99, "max_increase_pct": 30}]})
    url = http(reply({("stable", "classic"): ghost("40"), ("stable", "native"): (503, "text/plain", "down")})).url
    report = provider(url).preflight(two, TARGET)  # not refused: the native answer is unknown, not absent
    assert report.native == ()
    url = http(reply({("stable", "classic"): ghost("40")})).url  # no native histogram at all: refused
    with pytest.raises(ConfigError, match=r"checks\[0\] 'p95' \(stable arm\): the histogram has only a \+Inf"):
        provider(url).preflight(two, TARGET)


def test_metrics_histograms_native_reads_native_first_where_both_exist(http: Callable[..., ScriptedHTTP]) -> None:
    """`metrics.histograms: native`: a series exported both ways is read natively (finer buckets),
    in a look and in preflight; one with classic buckets only is still read. (The batched snapshot
    chooses the same way: tests/unit/test_batch.py.)"""
    from urllib.parse import parse_qs, urlparse

    from canary.metrics.families import batchable

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    classic = vector(*({"metric": {"le": le}, "value": [1, c]} for le, c in (("0.5", "10"), ("1", "30"), ("+Inf", "40"))))
    native = vector({"metric": {}, "histogram": [1, {"count": "40", "sum": "1", "buckets": [
        [0, repr(2 ** (-9 / 8)), "0.5", "10"], [0, repr(2 ** (-1 / 8)), "1", "30"]]}]})
    one = vector({"metric": {}, "value": [1, "1"]})

    def answer(path: str, headers: dict[str, str]) -> Answer:
        query = parse_qs(urlparse(path).query).get("query", [""])[0]
        if query == "vector(1)":
            return 200, "application/json", one
        if query.startswith("count by (le)"):
            return 200, "application/json", series_counts(classic)
        if query.startswith("sum by (le)"):
            return 200, "application/json", classic
        if query.startswith("sum(increase(model_inference_duration_seconds{"):
            return 200, "application/json", native if 'model_version="v2"' in query else vector()
        return 200, "application/json", one

    spec = {"steps": [10, 100], "metrics": {"source": "model", "histograms": "native"},
            "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]}
    pol = parse_policy(spec)
    assert batchable(pol, pol.checks[0])
    s, c = provider(http(answer).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    # the stable arm has classic buckets only, the canary both: one form for both, classic
    assert s.bounds == c.bounds == (500.0, 1000.0, math.inf)
    report = provider(http(answer).url).preflight(pol, TARGET)
    assert [x.query.startswith("sum(increase(") for x in report.queries if x.check == "p95"] == [False, True]
    # native first, but the canary exports classic buckets only: both arms are read classic
    def canary_classic(path: str, headers: dict[str, str]) -> Answer:
        query = parse_qs(urlparse(path).query).get("query", [""])[0]
        if query.startswith("sum(increase(model_inference_duration_seconds{"):
            return 200, "application/json", native if 'model_version="v1"' in query else vector()
        return answer(path, headers)

    s, c = provider(http(canary_classic).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert s.bounds == c.bounds == (500.0, 1000.0, math.inf)

    def both_forms(path: str, headers: dict[str, str]) -> Answer:  # both arms export both forms
        query = parse_qs(urlparse(path).query).get("query", [""])[0]
        if query.startswith("sum(increase(model_inference_duration_seconds{"):
            return 200, "application/json", native
        return answer(path, headers)

    s, c = provider(http(both_forms).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert s.bounds == c.bounds and len(s.bounds) == 11  # native first: the schema-3 grid
    classic_first = parse_policy({**spec, "metrics": {"source": "model"}})
    assert batchable(classic_first, classic_first.checks[0])
    s, c = provider(http(answer).url).measure(classic_first, classic_first.checks[0], TARGET, window_s=60)
    assert s.bounds == c.bounds == (500.0, 1000.0, math.inf)
    with pytest.raises(ConfigError, match="metrics.histograms|histograms"):
        parse_policy({**spec, "metrics": {"source": "model", "histograms": "sparse"}})


def test_a_histogram_that_is_no_histogram_is_named_before_traffic(http: Callable[..., ScriptedHTTP]) -> None:
    """Newcomer's cases: (a) a summary exported under the latency metric's name (no `_bucket` series,
    its native query a float), (b) a native-only histogram scraped by a Prometheus that does not
    ingest native histograms (text exposition: only `le="+Inf"`). Both are refused before traffic,
    naming the check and what to do; at a look the arm is NoData saying the same."""
    from urllib.parse import parse_qs, urlparse

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    def server(kind: str) -> str:
        def answer(path: str, headers: dict[str, str]) -> Answer:
            query = parse_qs(urlparse(path).query).get("query", [""])[0]
            if query == "vector(1)":
                return 200, "application/json", vector({"metric": {}, "value": [1, "1"]})
            if query.startswith("sum by (le)"):
                return 200, "application/json", (vector() if kind == "summary" else vector(
                    {"metric": {"le": "+Inf"}, "value": [1, "0" if kind == "empty" else "40"]}))
            if query.startswith("sum(increase(model_inference_duration_seconds{"):
                return 200, "application/json", vector({"metric": {}, "value": [1, "12.5"]}) if kind == "summary" \
                    else vector()
            return 200, "application/json", vector({"metric": {}, "value": [1, "5"]})
        return http(answer).url

    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                        "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]})
    with pytest.raises(ConfigError, match=r"checks\[0\] 'p95' \(stable arm\): .*neither a classic histogram .*nor a "
                                          r"native one .*summary or a gauge"):
        provider(server("summary")).preflight(pol, TARGET)
    with pytest.raises(ConfigError, match=r"checks\[0\] 'p95' \(stable arm\): the histogram has only a \+Inf bucket.*"
                                          r"native-histograms"):
        provider(server("inf")).preflight(pol, TARGET)
    with pytest.raises(NoData, match="only a \\+Inf bucket"):
        provider(server("inf")).measure(pol, pol.checks[0], TARGET, window_s=60)
    # +Inf only and no observations: no layout problem, no traffic (an empty native histogram's ghost)
    report = provider(server("empty")).preflight(pol, TARGET)  # not refused: as any histogram at 0
    assert [x.value for x in report.queries if x.check == "p95"] == [0.0, 0.0]
    with pytest.raises(NoData, match="no observations") as got:
        provider(server("empty")).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert "+Inf bucket" not in str(got.value)


def test_stable_pods_whose_layouts_share_no_finite_bound_are_a_warning_before_traffic(prom: PrometheusProvider
                                                                                      ) -> None:
    """A look sums an arm on the bounds all its pods with observations export (`count by (le)`, sent
    by preflight too); stable pods that share no finite bound leave no look anything to compare a
    quantile on, which preflight says, naming the check. A warning, not exit 2: a stable Deployment
    in the middle of its own update passes through that state (the review's case: a ConfigError at
    T+30 s, a pass at T+90 s). Pods that share some bounds pass without it."""
    from tests.support.prom import MIXED_MODEL, NO_SHARED_MODEL

    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model"},
                        "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]})
    for model, ok in ((MIXED_MODEL, True), (NO_SHARED_MODEL, False)):
        target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
        if ok:
            report = prom.preflight(pol, target)
            # the probe, a histogram and a request query per arm, and both arms' histograms with their
            # bucket counts as the one query a look sends (decision 193), which the layouts are read from (196),
            # and the request counts as the one query a look sends (decision 380)
            assert report.empty_stable == () and report.sent == 1 + 2 * 2 + 1 + 1 and report.layouts == ()
            # read on the shared bounds (100, 250 ms), as a look reads it: too coarse for +20%
            assert "narrower than 1.2x" in report.unresolvable[0]
            continue
        report = prom.preflight(pol, target)
        [warning] = report.layouts
        assert warning.startswith("checks[0] 'p95': the stable pods export bucket layouts that share no finite "
                                  "bound") and "count by (le)" in warning, warning
        assert report.to_dict()["layouts"] == [warning]


def test_preflight_asks_the_bucket_count_only_where_a_look_reads_classic_buckets(
        http: Callable[..., ScriptedHTTP]) -> None:
    """`metrics.histograms: native`, a stable arm with a native histogram and classic pods on layouts
    that share no finite bound: a look reads the native histogram and sends no classic query, so
    preflight neither counts the classic pods' bounds nor warns about them (it refused with exit 2)."""
    from urllib.parse import parse_qs, urlparse

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    classic = vector(*({"metric": {"le": le}, "value": [1, c]} for le, c in (("0.1", "5000"), ("0.2", "8000"),
                                                                             ("+Inf", "20000"))))
    g = [2 ** (i / 8) for i in range(-30, 1)]
    native = vector({"metric": {}, "histogram": [1, {"count": "400", "sum": "1", "buckets": [
        [0, repr(g[0]), repr(g[1]), "200"], [0, repr(g[8]), repr(g[9]), "200"]]}]})
    sent: list[str] = []

    def answer(path: str, headers: dict[str, str]) -> Answer:
        query = parse_qs(urlparse(path).query).get("query", [""])[0]
        sent.append(query)
        if query == "vector(1)":
            return 200, "application/json", vector({"metric": {}, "value": [1, "1"]})
        if query.startswith("count by (le)"):  # two pods, each with one of the two finite bounds
            return 200, "application/json", vector(*({"metric": {"le": le}, "value": [1, n]}
                                                     for le, n in (("0.1", "1"), ("0.2", "1"), ("+Inf", "2"))))
        if query.startswith("sum by (le)"):
            return 200, "application/json", classic
        if query.startswith("sum(increase(model_inference_duration_seconds{"):
            return 200, "application/json", native
        return 200, "application/json", vector({"metric": {}, "value": [1, "400"]})

    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "histograms": "native"},
                        "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]})
    url = http(answer).url
    stable, canary = provider(url).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert not isinstance(stable, NoData) and stable.total == 400
    assert not any(x.startswith(("sum by (le)", "count by (le)")) for x in sent)
    report = provider(url).preflight(pol, TARGET)
    assert report.warnings() == () and report.layouts == () and len(report.native) == 2
    assert not any(x.startswith("count by (le)") for x in sent)


def test_native_first_reads_past_a_both_forms_clients_zero_buckets_in_the_cross_form_branch(
        http: Callable[..., ScriptedHTTP]) -> None:
    """`metrics.histograms: native`, the stable arm native (400 observations) beside an idle both-forms
    pod's classic buckets at 0, the canary classic only: the stable arm is left out for its form, as
    the batched snapshot says, not replaced by the zeros ("no observations for the stable arm" was
    untrue)."""
    from urllib.parse import parse_qs, urlparse

    def vector(*series: dict[str, Any]) -> str:
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}})

    les = ("0.05", "0.1", "0.2", "+Inf")
    zeros = vector(*({"metric": {"le": le}, "value": [1, "0"]} for le in les))
    classic = vector(*({"metric": {"le": le}, "value": [1, c]} for le, c in zip(les, ("100", "300", "390", "400"))))
    g = [2 ** (i / 8) for i in range(-40, 1)]
    native = vector({"metric": {}, "histogram": [1, {"count": "400", "sum": "30", "buckets": [
        [0, repr(g[5]), repr(g[6]), "200"], [0, repr(g[20]), repr(g[21]), "200"]]}]})

    def answer(path: str, headers: dict[str, str]) -> Answer:
        query = parse_qs(urlparse(path).query).get("query", [""])[0]
        stable = 'model_version="v1"' in query
        if query.startswith("count by (le)"):
            return 200, "application/json", vector() if stable else series_counts(classic)
        if query.startswith("sum by (le)"):
            return 200, "application/json", zeros if stable else classic
        if query.startswith("sum(increase(model_inference_duration_seconds{"):
            return 200, "application/json", native if stable else vector()
        return 200, "application/json", vector({"metric": {}, "value": [1, "400"]})

    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "histograms": "native"},
                        "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20, "max_ms": 500}]})
    stable, canary = provider(http(answer).url).measure(pol, pol.checks[0], TARGET, window_s=60)
    assert isinstance(stable, NoData) and "stable arm is a Prometheus native histogram" in str(stable), stable
    assert not isinstance(canary, NoData) and canary.total == 400


def test_every_checks_both_arms_native_query_is_asked_when_two_checks_read_one_histogram(
        prom_server_factory: Callable[..., PromServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 198: a latency check and a prediction_shift check on the SAME native histogram (a
    prediction_shift check's `metric` may name any histogram) read each arm's native histogram through
    two both-arms queries: the latency check's, and the prediction_shift check's, which also ors in both
    arms' request counts (`query_plan.arms_native_query`). Preflight asked only the first check's: it
    keyed the one query by each arm's own native query, the same for both checks, so the second
    check's was never asked, and a look then sent a query preflight had not (classic first and native
    first alike)."""
    base = "model_inference_duration_seconds"
    fast = _lognormal(50, 0.05, 0.3)
    target = NativeHistogramTarget(base, {(("model_name", "rec"), ("model_version", v)): fast
                                          for v in ("v1", "v2")}).start()
    try:
        server = prom_server_factory(targets=[target.address], extra_args=["--enable-feature=native-histograms"])
        server.wait_targets_up(timeout_s=30)
        prom = provider(server.url)
        _wait_for(prom, f'count_over_time({base}{{model_name="rec"}}[60s]) >= 3', 2)
        asked: list[str] = []
        real_once = prom._once
        monkeypatch.setattr(prom, "_once", lambda query, *a: asked.append(query) or real_once(query, *a))
        for histograms in ("classic", "native"):
            pol = parse_policy({"steps": [10, 100], "analysis": {"interval": "60s", "look_every": "10s"},
                                "metrics": {"source": "model", "scrape_interval": "1s", "histograms": histograms},
                                "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
                                           {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2,
                                            "metric": base}]})
            asked.clear()
            report = prom.preflight(pol, TARGET)
            assert not [w for w in report.warnings() if "latency-p95" in w], report.warnings()  # (no request
            # counter is exported: the shift check's requests are a warning)
            before = list(asked)
            for check in pol.checks:
                stable, canary = prom.measure(pol, check, TARGET, window_s=report.window_s)
                assert stable.total > 0 and canary.total > 0
            look = asked[len(before):]
            natives = [x for x in look if x.startswith("sum by (model_version) (increase(")]
            assert len(set(natives)) == 2, natives  # one per check: the shift check's ors its requests in
            assert set(look) <= set(before), (histograms, sorted(set(look) - set(before)))
    finally:
        target.stop()

"""Decisions 352-366 left custom checks and the request count unchecked for a canary scraped twice or with a target
down (decision 378); against the same real, backfilled Prometheus as test_metrics_scrape_mess."""

from __future__ import annotations

from typing import Any

import pytest

from canary.errors import NoData, NotCountable
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Outcome, Scalar
from canary.policy import Policy, parse_policy
from tests.integration import test_metrics_scrape_mess as mess
from tests.integration.test_metrics_scrape_mess import WINDOW_S, _target

prom = mess.prom  # the same real, backfilled Prometheus (its own module-scoped server)

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


def test_a_custom_checks_own_series_beside_a_push_group_are_refused_whatever_its_push_time(prom: Any) -> None:
    """Decision 515 lets a push group not pushed within the window stand beside a scraped arm where the series are
    read by `increase()` (the presets' queries); a custom check's own PromQL is the author's arithmetic, which may read
    a flat series as much as a moving one (a gauge's `avg`), so the push group of its own selectors is refused
    whatever its push time, as decision 483 did: "pushstale" (last push 40 min before the window) is NotCountable."""
    server, t0 = prom
    stable, canary = _measure(server, t0, _custom(_RATIO, max_value=0.05), "pushstale")
    assert isinstance(stable, Scalar), stable
    assert isinstance(canary, NotCountable) and "model-push" in str(canary), canary


def test_a_custom_check_of_two_pods_of_one_job_is_read_as_before(prom: Any) -> None:
    server, t0 = prom
    for pol in (_custom(_RATIO, max_value=0.05), _custom(_THROUGHPUT, max_value=5, higher_is_better=True)):
        stable, canary = _measure(server, t0, pol, "pods")
        assert isinstance(stable, Scalar) and isinstance(canary, Scalar), (stable, canary)
        assert canary.n == pytest.approx(10 * WINDOW_S, rel=0.02), canary


# the server's errors over the sidecar's requests: two exporters of one pod in one custom query
_ACROSS = ('sum(increase(model_requests_total{model_name="{model}",model_version="{version}",outcome="error"}[{window}]))'
           ' / sum(increase(istio_requests_total{destination_service_name="{model}",destination_version="{version}"}'
           '[{window}]))')


@pytest.mark.parametrize("query", [_RATIO, _ACROSS], ids=["server", "server_and_sidecar"])
def test_a_pod_whose_two_exporters_two_jobs_read_is_not_scraped_twice(prom: Any, query: str) -> None:
    """A pod's model server (a ServiceMonitor's job, :8002) and its sidecar (Istio's envoy-stats PodMonitor, :15090)
    are one host read by two jobs, but no series of it is read twice. Under `metrics.source: istio` a custom check of
    the server's own counters asks the parts over its series AND istio_requests_total (the requests its n counts),
    as does one whose query reads both: every arm of every such rollout was NotCountable ("scraped by two jobs",
    its hint `metrics.labels: {job: ...}` a wrong one), no verdict ever, a good canary rolled back at the deadline.
    A host is read twice where one metric of it is read by two jobs."""
    server, t0 = prom
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "istio", "scrape_interval": "15s"},
                        "analysis": {"min_canary_requests": 100},
                        "checks": [{"name": "ratio", "kind": "custom", "query": query, "max_value": 0.05}]})
    stable, canary = _measure(server, t0, pol, "exporters")
    assert isinstance(stable, Scalar) and isinstance(canary, Scalar), (stable, canary)
    assert canary.n == pytest.approx(100 * WINDOW_S, rel=0.02), canary  # the sidecar's requests
    # one exporter's metric read by two jobs is still named, whichever source the check's n counts
    for source in ("istio", "model"):
        pol = parse_policy({"steps": [10, 100], "metrics": {"source": source, "scrape_interval": "15s"},
                            "checks": [{"name": "ratio", "kind": "custom", "query": _RATIO, "max_value": 0.05}]})
        got = _measure(server, t0, pol, "twice")
        assert isinstance(got[0], Scalar) and isinstance(got[1], NotCountable), got


@pytest.mark.parametrize("check", [None, {"name": "p95", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}],
                         ids=["error_rate", "latency"])
def test_one_pod_under_two_instances_is_not_twice_the_evidence_in_the_batched_snapshot(prom: Any, check: Any) -> None:
    """Istio's metrics merging (the annotation job on the sidecar's :15020, a ServiceMonitor on the app's :8000):
    decision 370 compared targets by host per rollout, but the controller's snapshot still by `instance`, so
    there the canary read 12,000 requests where it served 6,000, judged on twice the evidence. Now by host."""
    from canary.metrics import batch as b
    from tests.integration.test_metrics_scrape_mess import _policy, _snapshots

    server, t0 = prom
    pol, t = (_policy(check) if check else _policy()), _target("merged")
    base, now = _snapshots(server, t0, pol, t)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(canary, NotCountable) and "scraped by two jobs" in str(canary), canary
    assert not isinstance(stable, NoData), stable
    with pytest.raises(NotCountable):
        b.requests_delta(pol, t, now, base)
    t = _target("onehost")  # two targets of one host under one job: two pods' worth, counted once each
    base, now = _snapshots(server, t0, pol, t)
    assert b.requests_delta(pol, t, now, base)[1] == pytest.approx(10 * WINDOW_S, rel=0.02)


@pytest.mark.parametrize("model", ["twice", "merged", "down"])
def test_the_request_count_of_a_canary_scraped_twice_or_with_a_target_down_is_no_count(prom: Any, model: str) -> None:
    """`request_counts` (promote's and serve's pass floor, `min_canary_requests`, and the level a pass is judged at)
    summed a pod read by two jobs twice: 12,000 where 6,000 were served, so a step passed with half the requests the
    policy asks for where its checks did not read that counter (another source, custom checks). It is NotCountable
    now, and a look's count 0 (no pass); two pods of one job are counted as before."""
    from canary.reconcile import measure_window
    from tests.integration.test_metrics_scrape_mess import _policy

    server, t0 = prom
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0, at=t0)
    pol = _policy()
    with pytest.raises(NotCountable):
        provider.request_counts(pol, _target(model), window_s=WINDOW_S, at=t0)
    _, n, _, _ = measure_window(provider, pol, _target(model), window_s=WINDOW_S, log=None)
    assert n == 0.0
    stable, canary = provider.request_counts(pol, _target("pods"), window_s=WINDOW_S, at=t0)
    assert canary == pytest.approx(10 * WINDOW_S, rel=0.02) and stable == pytest.approx(100 * WINDOW_S, rel=0.02)


def test_a_stable_pod_read_twice_leaves_the_canarys_request_count_as_it_is(prom: Any) -> None:
    """`request_counts` is asked for the canary's count (the pass floor): promote and serve drop the stable's. A stable
    pod read by two jobs (decision 380's part over `metrics.source`'s counter) raised NotCountable for the pair, so
    the canary's 6,000 requests read 0 at every look, no pass ever, a good canary rolled back at the deadline -- where
    the checks (here of Istio's metrics, `source: istio`) read both arms soundly. The canary's count stands; the
    stable's is NaN (not a count); a canary read twice is still no count."""
    import math

    from canary.reconcile import measure_window

    server, t0 = prom
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "15s"},
                        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1,
                                    "source": "istio"}]})
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0, at=t0)
    got, n, _, _ = measure_window(provider, pol, _target("stabletwice"), window_s=WINDOW_S, log=None)
    assert all(isinstance(x, Counts) for x in got["errors"]), got  # the checks read both arms
    assert n == pytest.approx(100 * WINDOW_S, rel=0.02)  # the canary's own requests: 0 before
    stable, canary = provider.request_counts(pol, _target("stabletwice"), window_s=WINDOW_S, at=t0)
    assert math.isnan(stable) and canary == pytest.approx(100 * WINDOW_S, rel=0.02)
    with pytest.raises(NotCountable):
        provider.request_counts(pol, _target("twice"), window_s=WINDOW_S, at=t0)
    # the controller's count, from its snapshots: the same (a stable read twice raised there for the pair too, in the
    # look's snapshot and, bound, in the step-start one)
    from canary.metrics import batch as b
    from tests.integration.test_metrics_scrape_mess import _snapshots

    base, now = _snapshots(server, t0, pol, _target("stabletwice"))
    stable, canary = b.requests_delta(pol, _target("stabletwice"), now, base)
    assert math.isnan(stable) and canary == pytest.approx(100 * WINDOW_S, rel=0.02)
    base, now = _snapshots(server, t0, pol, _target("twice"))
    with pytest.raises((NotCountable, b.UnusableStepStart)):
        b.requests_delta(pol, _target("twice"), now, base)


def test_a_canary_exporting_native_histograms_read_by_two_jobs_is_not_twice_the_evidence(
        prom_server_factory: Any) -> None:
    """Decision 352's parts ride on the native both-arms query too (decision 355 left it tested by its text only):
    here a real Prometheus scrapes a canary target exporting native histograms under two jobs, the stable's under
    one. Summed, the canary read twice its observations; per rollout and in the controller (whose snapshot cannot
    subtract native histograms on 2.42 and hands the check to the per-rollout read) it is NotCountable."""
    import time

    from canary.metrics import batch as b
    from canary.metrics.batch import NotBatchable
    from tests.support.native_histograms import NativeHistogramTarget

    base = "model_inference_duration_seconds"
    values = [0.02 * (1 + i % 7) for i in range(50)]
    stable = NativeHistogramTarget(base, {(("model_name", "nat"), ("model_version", "v1")): values}).start()
    canary = NativeHistogramTarget(base, {(("model_name", "nat"), ("model_version", "v2")): values}).start()
    try:
        server = prom_server_factory(labelled=[({"job": "pods"}, [stable.address, canary.address]),
                                               ({"job": "kubernetes-pods"}, [canary.address])],
                                     extra_args=["--enable-feature=native-histograms"])
        server.wait_targets_up(timeout_s=30)
        provider = PrometheusProvider(server.url, retries=1, budget_s=5.0)
        deadline = time.monotonic() + 60
        while len(provider.query(f"count_over_time({base}[10s]) >= 10", check="wait", arm="stable", at=None)) < 3:
            assert time.monotonic() < deadline, "the native histograms never appeared"
            time.sleep(0.5)
        pol = parse_policy({"steps": [10, 100], "analysis": {"interval": "10s", "look_every": "10s"},
                            "metrics": {"source": "model", "scrape_interval": "1s"},
                            "checks": [{"name": "p95", "kind": "latency", "max_increase_pct": 20}]})
        t, at = _target("nat"), time.time()
        got = provider.measure(pol, pol.checks[0], t, window_s=10, at=at)
        assert not isinstance(got[0], NoData) and isinstance(got[1], NotCountable), got
        assert "scraped by two jobs (host 127.0.0.1)" in str(got[1])
        batch = b.BatchMetrics(provider)
        start = batch.snapshot([b.Want(pol, t)], at=at - 10).restrict(pol, t, step_started_at=at - 10)
        now = batch.snapshot([b.Want(pol, t)], at=at)
        # a native histogram is no batch's: the controller measures it per rollout (`Controller._measure_batched`),
        # the `provider.measure` asserted NotCountable above
        with pytest.raises(NotBatchable):
            b.measure_delta(pol, pol.checks[0], t, now, start)
    finally:
        stable.stop()
        canary.stop()


_RECORDED = "model:error_ratio:rate1m"  # a recording rule's output: `sum by (model_name, model_version) (...)`, no
# `instance`, no `job`: what the rule summed, over whichever pods Prometheus read


@pytest.fixture(scope="module")
def recorded(prometheus_binary: str) -> Any:
    """Raw series as test_metrics_scrape_mess's, and the rule's output beside them: "rtwice" (canary pod read by two
    jobs: its ratio the same), "rdown" (canary pod c at 50% errors down: the rule summed pod b alone, 0%), "ronly"
    (only the rule's output is kept: no raw series for canary to look at)."""
    from canary.sandbox.promserver import PromServer, gauge, history_window
    from tests.integration.test_metrics_attack2 import _openmetrics

    start, end = history_window(before_s=3600, after_s=3600)
    t0 = start + 3600
    series = mess._scraped_twice("rtwice") + mess._target_down("rdown", t0, deleted=False)
    for model, canary in (("rtwice", 0.01), ("rdown", 0.0), ("ronly", 0.0)):
        for version, value in (("v1", 0.01), ("v2", canary)):
            series += gauge(_RECORDED, {"model_name": model, "model_version": version}, value)
    server = PromServer(history=_openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, t0
    finally:
        server.stop()


_RULE = f'max_over_time({_RECORDED}{{model_name="{{model}}",model_version="{{version}}"}}[{{window}}])'


@pytest.mark.parametrize("model", ["rtwice", "rdown"])
def test_a_custom_check_of_a_recorded_series_is_checked_through_the_arms_request_counter(recorded: Any,
                                                                                          model: str) -> None:
    """A recording rule's output names no scrape target, so the parts over the query's own selectors see nothing;
    the arm's request counter (what its n counts) names the pods, and a pod read twice or down there is no verdict:
    "rdown" read 0% errors (the rule summed the healthy pod alone), a PASS of a canary at about 17%."""
    server, t0 = recorded
    pol = _custom(_RULE, max_value=0.05)
    stable, canary = _measure(server, t0, pol, model)
    assert isinstance(stable, Scalar) and isinstance(canary, NotCountable), (stable, canary)


def test_a_custom_check_whose_series_name_no_scrape_target_says_its_pass_is_unchecked(recorded: Any) -> None:
    """Only the rule's output: nothing says which pods it summed, or how often. The check is judged on the author's
    number, and its reason says the scrape faults were not checked (`metrics.scrape_unchecked`, once)."""
    from structlog.testing import capture_logs

    from canary.analysis.judge import judge

    server, t0 = recorded
    pol = _custom(_RULE, max_value=0.05)
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    with capture_logs() as logs:
        for _ in range(2):  # said once per check and arm, as `metrics.scraped_twice`
            stable, canary = provider.measure(pol, pol.checks[0], _target("ronly"), window_s=WINDOW_S, at=t0)
    assert isinstance(canary, Scalar) and "no scrape target" in canary.unchecked, canary
    r = judge(pol, {"ratio": (stable, canary)}, canary_weight=10, window_s=WINDOW_S, canary_version="v2").results[0]
    assert r.outcome is Outcome.PASS and "scrape faults not checked (stable and canary): its series name no scrape " \
        "target now" in r.reason, r.reason
    said = [e for e in logs if e["event"] == "metrics.scrape_unchecked"]
    assert len(said) == 2 and {e["arm"] for e in said} == {"stable", "canary"}, said
    stable, canary = _measure(server, t0, mess._policy(), "rtwice")  # raw series behind it: checked
    assert isinstance(stable, Counts) and isinstance(canary, NotCountable), (stable, canary)
    stable, _ = _measure(server, t0, pol, "rtwice")
    assert isinstance(stable, Scalar) and not stable.unchecked, stable


@pytest.mark.parametrize("model", ["twice", "down"])
def test_the_controllers_count_of_a_canary_that_cannot_be_counted_says_why(prom: Any, model: str) -> None:
    """The controller read a failed `requests_delta` as 0 requests, which its judge took for a counter gone down
    (`look.window_restarted`, "a request counter restarted"): `canary_count` says why there is no count, and the
    look is no pass with that cause (`Looked.uncounted`, decision 433). Two pods of one job: counted, no cause."""
    from canary.metrics import batch as b
    from tests.integration.test_metrics_scrape_mess import _policy, _snapshots

    server, t0 = prom
    pol = _policy()
    base, now = _snapshots(server, t0, pol, _target(model))
    n, why = b.canary_count(pol, _target(model), now, base)
    assert n == 0.0 and ("scraped by two jobs" if model == "twice" else "down") in why, why
    base, now = _snapshots(server, t0, pol, _target("pods"))
    assert b.canary_count(pol, _target("pods"), now, base) == (pytest.approx(10 * WINDOW_S, rel=0.02), "")


@pytest.mark.parametrize("model", ["twice", "down"])
def test_promote_and_serve_read_a_canary_count_that_cannot_be_counted_as_not_counted(prom: Any, model: str) -> None:
    """Decision 433 left promote, the controller without snapshots (`reconcile.measure_window`) and serve reading a
    NotCountable request count (a canary read by two jobs, a target down) as 0 requests: a look after an earlier one
    said "fewer canary requests than an earlier look", and the step's deadline "canary requests 0" (serve's a sticky
    `fail` so worded). Now `measure_window` says why (`rollout.Looked.uncounted`, as the controller's snapshots) and
    serve's look is no pass with that cause, the window's count kept, its deadline "not counted" (decision 485).
    Two pods of one job: counted, no cause."""
    import time

    from canary.analysis.judge import judge
    from canary.reconcile import measure_window
    from canary.serve_measure import measure_within
    from canary.serve_session import FAIL, new_session, open_window, record_look
    from tests.integration.test_metrics_scrape_mess import _policy

    server, t0 = prom
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0, at=t0)
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "15s"},
                        "analysis": {"interval": "60s", "look_every": "10s", "min_canary_requests": 100},
                        "failure": {"no_data_deadline": "2m"},
                        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1,
                                    "source": "istio"}]})  # a check read soundly (another source): only the count fails
    good = {"errors": (Counts(50, 10_000), Counts(25, 5_000))}
    _, n, why, _ = measure_window(provider, _policy(), _target(model), window_s=WINDOW_S, log=None)
    assert n == 0.0 and ("scraped by two jobs" if model == "twice" else "target down") in why, why
    _, n, why, _ = measure_window(provider, _policy(), _target("pods"), window_s=WINDOW_S, log=None)
    assert n == pytest.approx(10 * WINDOW_S, rel=0.02) and why == ""
    out, n, counted, why, _ = measure_within(provider, _policy(), _target(model), window_s=WINDOW_S, at=t0,
                                          deadline=time.monotonic() + 60, answer_within_s=8.0, log=None)
    assert n == 0.0 and counted and ("scraped by two jobs" if model == "twice" else "target down") in why, why
    t = 1_000.0
    s = new_session(key="argo/ml/x", revision="v2", policy="p", model=model, namespace="ml", stable_version="v1",
                    canary_version="v2", now=t)
    verdict = judge(pol, good, prior=s.prior(), window=s.window, pass_ratio=s.pass_ratio(3000))
    s, _ = record_look(open_window(s, now=t + 30), verdict, canary_requests=3000, now=t + 30, policy=pol)
    for now in (t + 60, t + 180):  # after the interval, and at the window's deadline
        verdict = judge(pol, good, prior=s.prior(), window=s.window, pass_ratio=s.pass_ratio(n))
        s, j = record_look(open_window(s, now=now), verdict, canary_requests=n, now=now, policy=pol, counted=counted,
                           uncounted=why)
        assert "fewer canary requests" not in s.reason and s.last_look_requests == 3000, s.reason
        assert "could not be counted" in j.reason(), j.reason()
    assert s.verdict == FAIL and "canary requests not counted" in s.reason and "requests 0" not in s.reason, s.reason


@pytest.mark.parametrize("model", ["twice", "down"])
def test_serve_says_each_look_whose_canary_requests_could_not_be_counted(prom: Any, model: str,
                                                                         tmp_path: Any) -> None:
    """Decision 485 left it: serve's look of a canary count that cannot be counted (read by two jobs, a target down)
    was no pass with that cause in its answer, but its log said only `serve.decision` (canary_requests 0): the
    person watching serve's logs did not see why its looks did not pass. Each such look is now said as the
    controller's and promote's are, `look.requests_uncounted` with the cause, once per look, beside its
    `serve.decision` (decision 516). `canary serve` over real HTTP against the real Prometheus; two pods of one
    job: counted, no line."""
    import io
    import sys

    from canary import logs
    from canary.serve_http import ServeServer
    from tests.integration.test_serve import Clock, _service, argo_get

    server, t0 = prom
    raw = {"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "15s"},
           "analysis": {"interval": "120s", "look_every": "60s", "min_canary_requests": 100},
           "failure": {"no_data_deadline": "2m"},
           "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}
    clock = Clock(t0)
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    try:
        serving = ServeServer(_service(server, tmp_path / "state", clock, policies={"ml": raw})).start()
        try:
            said: list[list[dict[str, Any]]] = []
            for dt in (0, 60, 150):  # the window's first look, one before the interval, one after it
                clock.t = t0 + dt
                seen = len(stream.getvalue())
                code, doc = argo_get(serving, model)
                assert code == 200 and doc["result"]["verdict"] != "pass", doc
                said.append(logs.parse_json_lines(stream.getvalue()[seen:]))
            clock.t = t0 + 150
            seen = len(stream.getvalue())
            code, doc = argo_get(serving, "pods")
            counted = logs.parse_json_lines(stream.getvalue()[seen:])
        finally:
            serving.stop()
    finally:
        logs.configure(fmt="console", stream=sys.__stderr__)
    cause = "scraped by two jobs" if model == "twice" else "target down"
    for look, events in enumerate(said, start=1):
        lines = [e for e in events if e["event"] == "look.requests_uncounted"]
        assert len(lines) == 1, events
        line = lines[0]
        assert line["level"] == "warning" and cause in line["reason"], line
        assert line["reason"].startswith("the canary's requests could not be counted (") and line["reason"].endswith(
            "): no pass on this look"), line["reason"]
        assert (line["key"], line["revision"], line["model"], line["look"], line["window"], line["step"]) == (
            f"argo/ml/{model}", "v2", model, look, 1, ""), line
        decision = [e for e in events if e["event"] == "serve.decision"]
        assert len(decision) == 1 and decision[0]["look"] == look and decision[0]["verdict"] != "pass", decision
    assert code == 200 and doc["result"]["canary_requests"] > 0, doc
    assert not [e for e in counted if e["event"] == "look.requests_uncounted"], counted

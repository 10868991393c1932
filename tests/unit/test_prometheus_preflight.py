"""Preflight's pure parts: the query plan, the report values, the time bound, error-body parsing.

The wire (a real Prometheus, and servers that are not one) is in
tests/integration/test_prometheus_preflight.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_api_client import PrometheusApiClientException

from canary.errors import ConfigError
from canary.metrics.answers import well_formed
from canary.metrics.base import PreflightQuery, PreflightReport
from canary.metrics.client import excerpt, prometheus_error, status_and_body
from canary.metrics.preflight import preflight_plan
from canary.metrics.prometheus import PrometheusProvider
from canary.metrics.query_plan import query_plan, request_plan
from canary.model import Target
from canary.policy import load_policy, parse_policy

TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
DEFAULT = load_policy(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")


@pytest.mark.parametrize(("kw", "bound"), [
    ({}, 5.0 + 0.4 + 0.05),  # defaults: the 5 s budget ends it; at most one more 0.05 s attempt after a backoff
    ({"timeout_s": 0.3, "retries": 3, "budget_s": 2.0, "backoff_s": 0.05}, 3 * 0.3 + 0.05 + 0.1),
    ({"timeout_s": 1.0, "retries": 1, "budget_s": 5.0}, 1.0),  # one attempt, no backoff
    ({"timeout_s": 2.0, "retries": 10, "budget_s": 3.0, "backoff_s": 0.4}, 3.0 + 1.0 + 0.05),  # backoff capped at 1 s
])
def test_query_bound(kw: dict[str, float], bound: float) -> None:
    assert PrometheusProvider("http://127.0.0.1:1", **kw).query_bound_s == pytest.approx(bound)  # type: ignore[arg-type]


def test_plan_roles_per_kind_both_arms() -> None:
    roles = {c.name: {arm: list(r) for arm, r in query_plan(DEFAULT, c, TARGET, window_s=60).items()}
             for c in DEFAULT.checks}
    assert roles["latency-p95"] == {"stable": ["histogram"], "canary": ["histogram"]}
    assert roles["errors"]["canary"] == ["requests", "errors"]  # the order `measure` sends them
    assert roles["missing-features"]["stable"] == ["feature_missing", "requests"]
    lat = query_plan(DEFAULT, DEFAULT.checks[0], TARGET, window_s=60)
    assert 'destination_version="v1"' in lat["stable"]["histogram"] and "[60s]" in lat["stable"]["histogram"]
    assert 'destination_version="v2"' in lat["canary"]["histogram"]


def test_custom_plan_renders_each_arm_and_counts_requests_from_its_source() -> None:
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "istio"}, "checks": [
        {"name": "c", "kind": "custom", "max_value": 1, "source": "model",
         "stable_query": 'sum(s{v="{version}"})', "canary_query": 'sum(c{v="{version}"}[{window}])'}]})
    plan = query_plan(pol, pol.checks[0], TARGET, window_s=90)
    assert plan["stable"]["custom"] == 'sum(s{v="v1"})' and plan["canary"]["custom"] == 'sum(c{v="v2"}[90s])'
    assert "model_requests_total" in plan["canary"]["requests"]  # the check's source
    assert "istio_requests_total" in request_plan(pol, TARGET, window_s=90)["canary"]  # metrics.source


def test_preflight_plan_names_every_query_and_shares_equal_ones() -> None:
    planned = preflight_plan(DEFAULT, TARGET, 300)
    wheres = [w for w, *_ in planned]
    assert wheres[0] == "checks[0] 'latency-p95'" and wheres[-1] == "request counts"
    errors = [x for w, _, _, _, x in planned if w == "checks[1] 'errors'"]
    hard = [x for w, _, _, _, x in planned if w == "checks[2] 'errors-hard'"]
    assert errors == hard and len(errors) == 4  # two checks, one set of requests on the wire
    assert len(planned) == 2 * (1 + 2 + 2 + 2 + 2) + 2  # predictions: buckets and requests (rows are not requests)


def test_preflight_plan_errors_name_the_check() -> None:
    bad = DEFAULT.model_copy(update={"metrics": DEFAULT.metrics.model_copy(update={"arm_label": "a b"})})
    with pytest.raises(ConfigError, match=r"^policy checks\[0\] 'latency-p95': metrics.arm_label: 'a b'"):
        preflight_plan(bad, TARGET, 60)
    triton = DEFAULT.model_copy(update={"metrics": DEFAULT.metrics.model_copy(update={"source": "triton"})})
    with pytest.raises(ConfigError, match=r"^policy checks\[0\] 'latency-p95': .*no latency histogram"):
        preflight_plan(triton, TARGET, 60)


def test_report_values() -> None:
    def q(arm: str, series: int, value: float | None = None, where: str = "checks[0] 'p'") -> PreflightQuery:
        return PreflightQuery(where=where, check="p", arm=arm, query=f"q_{arm}", series=series, value=value)

    report = PreflightReport(url="http://p", window_s=300, sent=3, elapsed_s=0.1, queries=(
        q("stable", 0), q("canary", 0), q("stable", 1, math.nan, "request counts"), q("stable", 1, 0.0)))
    assert [x.where for x in report.empty_stable] == ["checks[0] 'p'", "request counts"]
    assert report.warnings()[0] == ("checks[0] 'p': no data for the stable arm over the last 300s "
                                    "(a label or value that matches nothing?); query: q_stable")
    assert report.to_dict() == {"url": "http://p", "window_s": 300, "queries": 4, "sent": 3, "elapsed_s": 0.1,
                                "empty_stable": ["checks[0] 'p' (q_stable)", "request counts (q_stable)"],
                                "unresolvable": [], "native_histograms": [], "layouts": []}
    with pytest.raises(ValueError, match="arm"):
        q("both", 1)
    with pytest.raises(ValueError, match="series"):
        q("stable", -1)


@pytest.mark.parametrize(("value_series", "blind"), [(0, ("checks[0] 'p'",)), (1, ())])
def test_a_checks_own_request_count_does_not_make_it_compare(value_series: int, blind: tuple[str, ...]) -> None:
    """Decision 260: the check's custom query empty, its request count (role `requests`) and the rollout's found."""
    def q(arm: str, series: int, role: str, where: str = "checks[0] 'p'") -> PreflightQuery:
        return PreflightQuery(where=where, check="p", arm=arm, query=f"q_{arm}_{role}", series=series,
                              value=None if series == 0 else 5.0, role=role)

    report = PreflightReport(url="http://p", window_s=60, sent=3, elapsed_s=0.1, queries=(
        q("stable", value_series, "custom"), q("stable", 1, "requests"), q("canary", 0, "custom"),
        q("canary", 1, "requests"), q("stable", 1, "requests", "request counts")))
    assert report.blind() == blind


@pytest.mark.parametrize(("message", "status", "body"), [
    ("HTTP Status Code 404 (b'404 page not found\\n')", 404, b"404 page not found\n"),
    ('HTTP Status Code 400 (b\'{"status":"error","error":"it\\\'s bad"}\')', 400, b'{"status":"error","error":"it\'s bad"}'),
    ("HTTP Status Code 503 (b'')", 503, b""),
    ("something else", 0, b""),
])
def test_status_and_body(message: str, status: int, body: bytes) -> None:
    assert status_and_body(PrometheusApiClientException(message)) == (status, body)


def test_prometheus_error_and_excerpt() -> None:
    assert prometheus_error(b'{"status":"error","errorType":"bad_data","error":"parse error"}') == (
        "bad_data", "parse error")
    assert prometheus_error(b"<html>") is None and prometheus_error(b'{"status":"success"}') is None
    assert excerpt(b"<html>\n  <title>Grafana</title>\n</html>") == "'<html> <title>Grafana</title> </html>'"
    assert excerpt("x" * 200).endswith("...'") and excerpt(None) == "empty body"


@pytest.mark.parametrize(("result", "ok"), [
    ([1.0, "1"], True), ([], True), ([{"metric": {}, "value": [1, "2"]}], True),
    ([{"metric": {}, "values": [[1, "2"]]}], True), ({"x": 1}, False), ([{"value": [1, "2"]}], False), ("x", False),
])
def test_well_formed(result: object, ok: bool) -> None:
    assert well_formed(result) is ok

"""The `feature_drift` check on a real Prometheus: the drift exporter's series (backfilled, known
answers: tests/support/prom.py FEATURES) measured per arm, judged, and preflighted; and
`canary analyze` on them from the command line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import logs
from canary.analysis.judge import judge
from canary.cli import app
from canary.metrics.prometheus import PrometheusProvider
from canary.model import FeatureCounts, Outcome, Target
from canary.policy import parse_policy
from tests.support.prom import AGE_BOUNDS, FEATURE_MODEL, FEATURES, cumulative

pytestmark = pytest.mark.integration

POLICY = {"steps": [10, 100], "analysis": {"min_canary_requests": 100},
          "checks": [{"name": "inputs", "kind": "feature_drift", "max_psi": 0.2, "max_js": 0.1}]}


def target(canary: str) -> Target:
    return Target(namespace="ml", virtual_service=FEATURE_MODEL, model=FEATURE_MODEL, stable_version="v1",
                  canary_version=canary)


def test_each_arm_reads_every_feature_with_its_missing_values(prom_provider: PrometheusProvider) -> None:
    policy = parse_policy(POLICY)
    stable, canary = prom_provider.measure(policy, policy.checks[0], target("v2"), window_s=300)
    assert isinstance(stable, FeatureCounts) and isinstance(canary, FeatureCounts)
    want = [5 * c for c in cumulative(FEATURES["v1"]["age"])]  # five 60 s windows, linear counters: exact
    assert stable.numeric["age"].bounds == (*AGE_BOUNDS, float("inf"))
    assert stable.numeric["age"].counts == pytest.approx(want, rel=1e-6)
    assert stable.categorical["city"] == pytest.approx({"paris": 3000, "lyon": 2000}, rel=1e-6)
    assert stable.categorical["plan"] == pytest.approx({"free": 3500, "pro": 1500}, rel=1e-6)
    assert stable.missing["age"] == pytest.approx(50, rel=1e-6)
    assert "plan" not in canary.names()


def test_a_pipeline_that_sends_months_fails_naming_the_feature(prom_provider: PrometheusProvider) -> None:
    policy = parse_policy(POLICY)
    data = prom_provider.measure(policy, policy.checks[0], target("v2"), window_s=300)
    r = judge(policy, {"inputs": data}).results[0]
    assert r.outcome is Outcome.FAIL
    assert "beyond: age" in r.reason
    rows = {f["feature"]: f for f in r.extra["features"]}
    assert rows["age"]["breach"] and not rows["city"]["breach"] and rows["city"]["within"]
    assert r.extra["only_stable"] == ["plan"]
    assert "schema changed: plan: the canary does not export it" in r.reason  # a dropped input fails too


def test_a_listed_feature_the_canary_dropped_is_a_schema_change(prom_provider: PrometheusProvider) -> None:
    policy = parse_policy({**POLICY, "checks": [{**POLICY["checks"][0], "features": ["city", "plan"]}]})
    data = prom_provider.measure(policy, policy.checks[0], target("v2"), window_s=300)
    r = judge(policy, {"inputs": data}).results[0]
    assert r.outcome is Outcome.FAIL
    assert "schema changed: plan: the canary does not export it" in r.reason


def test_a_canary_with_the_same_inputs_is_shown_within_every_limit(prom_provider: PrometheusProvider) -> None:
    """v3's inputs are v1's; its predictions moved a lot, but the exporter marks that column
    role="prediction" and the check reads inputs only (prediction_shift judges predictions)."""
    policy = parse_policy(POLICY)
    data = prom_provider.measure(policy, policy.checks[0], target("v3"), window_s=600)
    assert "score" not in data[0].names() | data[1].names()
    r = judge(policy, {"inputs": data}).results[0]
    assert r.outcome is Outcome.PASS, r.reason
    assert r.reason.startswith("3 of 3 features compared")


def test_preflight_sends_the_feature_queries_and_does_not_warn_on_no_categories(
        prom_provider: PrometheusProvider) -> None:
    policy = parse_policy(POLICY)
    report = prom_provider.preflight(policy, target("v2"))
    roles = [x.query for x in report.queries if x.check == "inputs"]
    # per arm: three feature queries and the requests (min_canary_requests counts requests, not rows)
    assert len(roles) == 8 and all('model_name="features"' in x for x in roles)
    assert not report.empty_stable, report.warnings()


def test_analyze_on_the_command_line(prom_server: Any, tmp_path: Any) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    try:
        out = CliRunner().invoke(app, ["analyze", FEATURE_MODEL, "--policy", str(path), "--window", "5m",
                                       "--stable-version", "v1", "--canary-version", "v2",
                                       "--prometheus-url", prom_server.url, "-o", "json"])
    finally:
        logs.configure()
    assert out.exit_code == 1, out.output
    d = json.loads(out.stdout)
    assert d["outcome"] == "fail" and d["results"][0]["kind"] == "feature_drift"

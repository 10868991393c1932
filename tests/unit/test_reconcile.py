"""reconcile.preflight_metrics: what a preflight found is logged where on-call reads it."""

from __future__ import annotations

import structlog.testing

from canary.logs import get
from canary.metrics.base import PreflightQuery, PreflightReport
from canary.model import Target
from canary.policy import parse_policy
from canary.reconcile import preflight_metrics

POLICY = parse_policy({"steps": [10, 100], "checks": [{"name": "err", "kind": "error_rate", "max_rate_pct": 1}]})
TARGET = Target(namespace="ml", virtual_service="m", model="m", stable_version="v1", canary_version="v2")


class _Metrics:
    def preflight(self, policy: object, target: object) -> PreflightReport:
        return PreflightReport(url="http://p", window_s=60, sent=2, elapsed_s=0.01, queries=(
            PreflightQuery(where="checks[0] 'err'", check="err", arm="stable", query='q{v="v1"}', series=0),
            PreflightQuery(where="checks[0] 'err'", check="err", arm="canary", query='q{v="v2"}', series=0)))


def test_an_empty_stable_arm_is_logged_as_a_warning_naming_the_check_and_query() -> None:
    with structlog.testing.capture_logs() as logs:
        preflight_metrics(_Metrics(), POLICY, TARGET, log=get())
    passed = [e for e in logs if e["event"] == "metrics.preflight_passed"]
    warned = [e for e in logs if e["event"] == "metrics.preflight_empty_stable"]
    assert passed and passed[0]["empty_stable"] == ["checks[0] 'err' (q{v=\"v1\"})"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert "checks[0] 'err'" in warned[0]["detail"] and 'q{v="v1"}' in warned[0]["detail"]  # not the canary's

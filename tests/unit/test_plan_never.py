"""`canary plan` on a sub-test no canary like the one described ever passes: a rate ceiling at or under the
assumed baseline, a latency ceiling under the stable's latency, a layout that cannot show the limit. The
line for the sub-test says so (not "more traffic helps"), and so does the closing line (not "not sure")."""

from __future__ import annotations

import json

import typer
import yaml
from typer.testing import CliRunner

from canary.analysis.judge import judge_check
from canary.cli_analysis import register
from canary.model import Counts, Outcome
from canary.policy import parse_policy

POLICY = {"steps": [5, 10, 25, 50, 100],
          "analysis": {"interval": "5m", "look_every": "30s", "min_canary_requests": 500, "alpha": 0.01},
          "failure": {"max_failed_looks": 2},
          "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 250},
                     {"name": "errors-hard", "kind": "error_rate", "max_rate_pct": 10},
                     {"name": "miss", "kind": "feature_missing", "max_rate_pct": 5}]}


def _run(tmp_path, *args: str) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(POLICY))
    out = CliRunner().invoke(app, ["plan", "-p", str(f), "--rps", "50", *args])
    return out.exit_code, out.output


def _said(output: str) -> str:
    return " ".join(output.split())  # the console wraps lines


def test_a_rate_ceiling_at_or_under_the_baseline_is_never_passed_not_late(tmp_path):
    """At a 20% error rate a 10% ceiling is a rollback, not a deadline: the judge fails the canary at
    stable's rate (checked here), so the plan says no canary like it passes, names the baseline, and keeps
    it in the json (`canary_rate_pct`, as `canary_quantile_ms` for a latency ceiling). A feature-missing
    ceiling exactly at --missing-rate is never shown below either."""
    # a canary at stable's 20% on 750 requests beside 14,250: the judge fails the 10% ceiling at once
    got = judge_check(parse_policy(POLICY).checks[1], Counts(2850, 14250), Counts(150, 750), alpha=0.01,
                      min_canary=500)
    assert got.outcome is Outcome.FAIL, got.reason
    code, out = _run(tmp_path, "--error-rate", "20", "--missing-rate", "5")
    said = _said(out)
    assert code == 0, out  # plan is advice: exit 0 as with the floor's "cannot be promoted at this traffic"
    assert "errors-hard/ceiling (10%): the stable's rate there (20%, the baseline assumed) is already at or above " \
           "the limit: no canary like it passes; over it the judge fails it and it is rolled back" in said
    assert "miss/ceiling (5%): the stable's rate there (5%, the baseline assumed) is already at or above" in said
    assert "errors-hard/ceiling (10%): a good canary is not sure" not in said
    assert "miss/ceiling (5%): a good canary is not sure" not in said
    code, out = _run(tmp_path, "--error-rate", "20", "--missing-rate", "5", "-o", "json")
    by = {c["key"]: c for c in json.loads(out)["pass_checks"]}
    assert by["errors-hard/ceiling"]["canary_rate_pct"] == 20 and by["miss/ceiling"]["canary_rate_pct"] == 5
    # under the limit: the usual advice, and the baseline still recorded
    code, out = _run(tmp_path, "--error-rate", "1", "--missing-rate", "0.5")
    assert "already at or above" not in _said(out)
    code, out = _run(tmp_path, "--error-rate", "1", "-o", "json")
    assert {c["key"]: c for c in json.loads(out)["pass_checks"]}["errors-hard/ceiling"]["canary_rate_pct"] == 1


"""`canary plan` on a sub-test no canary like the one described ever passes: a rate ceiling at or under the
assumed baseline, a latency ceiling under the stable's latency, a layout that cannot show the limit. The
line for the sub-test says so (not "more traffic helps"), and so does the closing line (not "not sure")."""

from __future__ import annotations

import io
import json

import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from canary.analysis.judge import judge_check
from canary.analysis.plan import plan
from canary.cli_analysis import _plan_text, register
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


def test_the_closing_line_says_cannot_be_promoted_when_a_sub_test_never_passes(tmp_path):
    """A latency ceiling under the stable's p95 and a rate ceiling under the baseline can never pass: the
    closing line says a canary like it cannot be promoted with this policy, naming each and why, and not
    that it is merely "not sure" to be promoted at this traffic."""
    code, out = _run(tmp_path, "--p95-ms", "300", "--error-rate", "20")
    said = _said(out)
    assert code == 0, out
    assert "so a canary like the one described cannot be promoted with this policy, at any traffic: lat/ceiling " \
           "(the stable's latency 300 ms is at or above 250 ms); errors-hard/ceiling (the baseline rate 20% is at " \
           "or above 10%)" in said
    assert "not sure to be promoted" not in said
    _, fine = _run(tmp_path, "--p95-ms", "100", "--rps", "5000")
    assert "cannot be promoted" not in _said(fine)


def test_the_closing_line_says_cannot_be_promoted_after_an_unresolvable_layout():
    """A relative limit the bucket layout read can never show (`unresolved`) is never passed, at any
    traffic: the closing line says so rather than "not sure", even at a traffic with no other doubt."""
    pol = parse_policy({**POLICY, "checks": POLICY["checks"][:1]})
    p = plan(pol, rps=50000, p95_ms=100, unresolved=["lat/relative"])
    buf = io.StringIO()
    _plan_text(p, 50000, None, Console(file=buf, width=400, color_system=None), {"lat": 0.95})
    said = _said(buf.getvalue())
    assert "lat/relative (+20%): the bucket layout read cannot show a canary as fast as stable" in said
    assert "so a canary like the one described cannot be promoted with this policy, at any traffic: lat/relative " \
           "(the bucket layout read cannot show a canary as fast as stable within +20%)" in said
    assert "not sure to be promoted" not in said

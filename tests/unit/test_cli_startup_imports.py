"""What a `canary` command loads before it does anything (decision 965).

Every command paid about a second of CPU importing the policy models, the reconcile stack and the
controller's modules, `canary status --help` included. These tests check which modules a command
loaded, never how long it took: a loaded host makes time a poor witness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# modules of the judge, analysis, drift, report and policy stacks: none is needed to print a command's help or
# to read a route for `status`. `canary.analysis.shown` (number words for help texts) and `canary.drift.store`
# (the bound of `drift --window`, read by the options' definitions) are small and stay.
KEPT = ("canary.analysis.shown", "canary.drift.store", "canary.analysis", "canary.drift")
HEAVY = ("canary.analysis", "canary.drift", "canary.report", "canary.policy", "canary.policy_checks",
         "canary.policy_fields", "canary.policy_metrics", "canary.policy_promql", "canary.reconcile", "canary.runner",
         "canary.controller", "canary.metrics", "canary.judged_marks", "numpy", "scipy")

_PROBE = """
import json, sys
sys.argv = ["canary", *json.loads(sys.argv[1])]
from canary.__main__ import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nMODULES " + json.dumps({"exit": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def loaded(args: list[str]) -> tuple[int, set[str]]:
    """The exit code of `canary ARGS` and the modules it had imported when it ended."""
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[2])
    line = [x for x in res.stderr.splitlines() if x.startswith("MODULES ")]
    assert line, res.stderr
    doc = json.loads(line[-1][len("MODULES "):])
    return doc["exit"], set(doc["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m not in KEPT and (m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY))))


@pytest.mark.parametrize("command", ["status", "rollback", "promote", "pause", "resume"])
def test_a_commands_help_loads_no_judge_analysis_drift_report_or_policy_module(command: str) -> None:
    code, modules = loaded([command, "--help"])
    assert code == 0
    assert "canary.cli" in modules and "typer" in modules  # the probe ran the real CLI
    assert heavy(modules) == []


def test_status_of_a_route_it_cannot_read_loads_no_policy_or_judge_module(tmp_path: Path) -> None:
    """`canary status MODEL` against an API server that refuses the connection: exit 3, as before, with only the
    routing and display modules it uses loaded (the policy models, the judge and the runner are promote's)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n"
                          "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
                          "current-context: x\nusers: [{name: u, user: {token: t}}]\n")
    code, modules = loaded(["status", "rec-model", "--kubeconfig", str(kubeconfig)])
    assert code == 3
    assert "canary.routing.istio" in modules  # it did try to read the route
    # `display` names `reconcile.describe_owner`, which brings `metrics.base` (a Protocol): small, and no policy
    assert [m for m in heavy(modules) if m not in ("canary.reconcile", "canary.metrics", "canary.metrics.base")] == []
    assert "canary.policy" not in modules and not any(m.startswith("canary.analysis.judge") for m in modules)

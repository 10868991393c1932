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


@pytest.fixture(scope="module")
def status_refused(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, set[str]]:
    """`canary status rec-model` against an API server that refuses the connection: one process, read by two tests."""
    kubeconfig = tmp_path_factory.mktemp("refused") / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n"
                          "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
                          "current-context: x\nusers: [{name: u, user: {token: t}}]\n")
    return loaded(["status", "rec-model", "--kubeconfig", str(kubeconfig)])


def test_status_of_a_route_it_cannot_read_loads_no_policy_or_judge_module(status_refused: tuple[int, set[str]]) -> None:
    """`canary status MODEL` against an API server that refuses the connection: exit 3, as before, with only the
    routing and display modules it uses loaded (the policy models, the judge and the runner are promote's)."""
    code, modules = status_refused
    assert code == 3
    assert "canary.routing.istio" in modules  # it did try to read the route
    # `display` names `reconcile.describe_owner`, which brings `metrics.base` (a Protocol): small, and no policy
    assert [m for m in heavy(modules) if m not in ("canary.reconcile", "canary.metrics", "canary.metrics.base")] == []
    assert "canary.policy" not in modules and not any(m.startswith("canary.analysis.judge") for m in modules)


# what only printing help or a usage error (typer's rich help module: rich's markdown, markdown-it, pygments) or a
# traceback drawn by rich (structlog's optional printers) needs, and greenlet (structlog's deprecated threadlocal)
PRINTERS = ("typer.rich_utils", "rich.markdown", "markdown_it", "pygments", "rich.traceback", "rich.pretty", "rich.syntax",
            "greenlet")


def printers(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in PRINTERS or m.startswith(tuple(f"{p}." for p in PRINTERS)))


def test_a_command_that_draws_nothing_loads_no_rich_module(tmp_path: Path) -> None:
    """`canary policy validate FILE` prints one line: structlog is configured and typer parses its arguments, and
    neither rich's help, markdown and traceback printers nor rich itself are loaded (decision 985: structlog's
    import pulled rich's traceback and pretty printers, `cli_help` typer's rich help module, the analysis and
    drift commands rich's tables, in every command)."""
    code, modules = loaded(["policy", "validate", str(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")])
    assert code == 0
    assert "structlog" in modules and "typer" in modules and "canary.cli" in modules  # the real CLI ran
    assert printers(modules) == []
    assert sorted(m for m in modules if m == "rich" or m.startswith("rich.")) == []


def test_status_loads_rich_to_draw_but_no_help_or_traceback_printer(status_refused: tuple[int, set[str]]) -> None:
    """`canary status MODEL` draws with rich (its console), and still loads none of the printers above."""
    code, modules = status_refused
    assert code == 3
    assert "structlog" in modules and "canary.display" in modules
    assert printers(modules) == []


def test_typers_help_module_is_made_pipe_safe_when_typer_loads_it() -> None:
    """`canary.cli` no longer imports `typer.rich_utils`; when typer loads it to print help or a usage error, its
    consoles are made quiet on a broken pipe as they load (`cli_help.pipe_safe_help`; the broken pipe itself is
    tests/unit/test_help_readable.py's)."""
    script = ("import sys\nimport canary.cli\nprint('before', 'typer.rich_utils' in sys.modules)\n"
              "from typer import rich_utils\nprint('after', getattr(rich_utils._get_rich_console, 'canary_pipe_safe', False))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.stdout.split("\n")[:2] == ["before False", "after True"], res.stderr


def test_the_sandbox_triton_child_imports_structlog_without_rich() -> None:
    """`python -m canary.sandbox.tritonserver CONFIG` (one per sandbox arm, 14 in half a suite run) imported structlog
    with rich's console, traceback and pretty printers, which it never calls: its module's top as the child runs it
    (`run_name="__main__"`), stopped before it serves (no CONFIG argument)."""
    script = ("import runpy, sys\nsys.argv = ['tritonserver']\ntry:\n"
              "    runpy.run_module('canary.sandbox.tritonserver', run_name='__main__')\nexcept IndexError:\n"
              "    print(sorted(m for m in sys.modules if m == 'structlog' or m.startswith(('rich', 'pygments'))))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.stdout.strip() == "['structlog']", res.stderr


def test_report_from_the_cluster_reads_its_configmap_without_importing_corev1api(tmp_path: Path) -> None:
    """`canary report MODEL` reads the history ConfigMap through `kube_core.CoreV1` (decision 1041): kubernetes'
    CoreV1Api (1.0-1.2 s of CPU to import) is not loaded, and the request was made (exit 3: the API server refuses
    the connection)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n"
                          "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
                          "current-context: x\nusers: [{name: u, user: {token: t}}]\n")
    code, modules = loaded(["report", "rec-model", "--kubeconfig", str(kubeconfig), "-o", str(tmp_path / "r.html")])
    assert code == 3, code
    assert "canary.kube_core" in modules and "canary.history_store" in modules  # it did try to read the history
    assert "kubernetes.client.api.core_v1_api" not in modules

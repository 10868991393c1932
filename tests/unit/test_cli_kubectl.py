"""Issue 11: every command behaves like the kubectl tools its users live in.

The namespace comes from the kubeconfig context (an explicit -n wins); `-o text|wide|json|yaml`
wherever a command prints, anything else refused naming the flag; `--route`/`--destination-rule`
wherever the VirtualService is resolved; an example in every command's --help. Commands that need a
cluster run in-process against the strict Kubernetes API emulator (tests/support/kube.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canary import kube, logs
from canary.cli import app
from canary.errors import ConfigError
from canary.sandbox.kubeapi import KubeAPIServer
from tests.support.http import ScriptedHTTP

GROUP, VS = "networking.istio.io", "virtualservices"
ROOT = Path(__file__).resolve().parents[2]
EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
SHADOW = {"name": "shadow", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
          "route": [{"destination": {"host": "rec-model", "subset": "stable"}, "weight": 0},
                    {"destination": {"host": "rec-model", "subset": "canary"}, "weight": 100}]}


def kubeconfig(path: Path, server: str, *, current: str = "ml-ctx") -> Path:
    """Three contexts on one cluster: namespace ml, namespace other, and none (-> default)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": server}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "ml-ctx", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                     {"name": "other-ctx", "context": {"cluster": "c", "user": "u", "namespace": "other"}},
                     {"name": "bare", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    try:
        return CliRunner().invoke(app, list(args), env={"KUBECONFIG": "", **(env or {})})
    finally:
        logs.configure()  # the in-process command pointed the logs at the runner's stream


def policy(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"steps": [10, 100], "metrics": {"source": "model"},
                                 "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}))
    return p


# --- the namespace ---------------------------------------------------------------------------


def test_default_namespace_is_the_contexts(tmp_path: Path) -> None:
    kc = str(kubeconfig(tmp_path / "kc", "http://127.0.0.1:1"))
    assert kube.default_namespace(kubeconfig=kc) == "ml"  # the current context's
    assert kube.default_namespace(kubeconfig=kc, context="other-ctx") == "other"
    assert kube.default_namespace(kubeconfig=kc, context="bare") == "default"
    with pytest.raises(ConfigError, match="'nope' is not in kubeconfig"):
        kube.default_namespace(kubeconfig=kc, context="nope")
    with pytest.raises(ConfigError, match="does not exist"):
        kube.default_namespace(kubeconfig=str(tmp_path / "missing"))


def test_default_namespace_follows_kubeconfig_merging_and_in_cluster(tmp_path: Path, monkeypatch: Any) -> None:
    first = tmp_path / "a"
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "other-ctx"}))
    second = kubeconfig(tmp_path / "b", "http://127.0.0.1:1")
    second.write_text(second.read_text().replace("current-context: ml-ctx\n", ""))
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")  # merged: one file's current context, another's contexts
    assert kube.default_namespace() == "other"
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config: in a pod, the pod's namespace
    ns_file = tmp_path / "namespace"
    ns_file.write_text("team-a\n")
    monkeypatch.setattr(kube, "IN_CLUSTER_NAMESPACE_FILE", str(ns_file))
    assert kube.default_namespace() == "team-a"
    monkeypatch.setattr(kube, "IN_CLUSTER_NAMESPACE_FILE", str(tmp_path / "absent"))
    assert kube.default_namespace() == "default"


def test_commands_act_in_the_contexts_namespace_and_n_wins(istio_api: KubeAPIServer, tmp_path: Path) -> None:
    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    res = run("status", "rec-model", "--kubeconfig", kc, "-o", "json")  # rec-model lives in ml
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["weights"] == {"stable": 100, "canary": 0}
    res = run("status", "rec-model", "--kubeconfig", kc, "--context", "other-ctx")
    assert res.exit_code == 2 and "other/rec-model" in res.stderr and res.stdout == ""
    res = run("pause", "rec-model", "--kubeconfig", kc, "--context", "other-ctx", "-n", "ml")
    assert res.exit_code == 2 and "ml/rec-model" in res.stderr  # found in ml; nothing to pause there
    res = run("rollback", "rec-model", "--kubeconfig", kc, "--context", "nope")
    assert res.exit_code == 2 and "'nope'" in res.stderr and "Traceback" not in res.stderr
    res = run("status", "rec-model", env={"KUBECONFIG": kc})  # $KUBECONFIG, as kubectl reads it
    assert res.exit_code == 0 and "100/0" in res.stdout


# --- -o text|wide|json|yaml --------------------------------------------------------------------


def test_status_renders_every_format_from_the_same_data(istio_api: KubeAPIServer, tmp_path: Path) -> None:
    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    as_json = json.loads(run("status", "rec-model", "--kubeconfig", kc, "-o", "json").stdout)
    assert yaml.safe_load(run("status", "rec-model", "--kubeconfig", kc, "-o", "yaml").stdout) == as_json
    text = run("status", "rec-model", "--kubeconfig", kc).stdout
    wide = run("status", "rec-model", "--kubeconfig", kc, "-o", "wide").stdout
    assert "100/0" in text and "ml/rec-model" not in text
    assert "ml/rec-model" in wide and "destination rule rec-model" in wide and "100/0" in wide


def test_policy_validate_reports_every_file_in_json_and_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [10, 100]\nanalyss: {interval: 5m}\nchecks:\n  - name: x\n    kind: latency\n")
    good = ROOT / "policies" / "default.yaml"
    res = run("policy", "validate", str(bad), str(good), "-o", "json")
    files = json.loads(res.stdout)["files"]
    assert res.exit_code == 2 and [f["ok"] for f in files] == [False, True]
    assert {p["field"] for p in files[0]["problems"]} >= {"analyss", "checks[0]"}
    res = run("policy", "validate", str(good), "-o", "yaml")
    assert res.exit_code == 0 and yaml.safe_load(res.stdout)["files"][0]["steps"][-1] == 100
    res = run("policy", "validate", str(good), "-o", "wide")
    assert res.exit_code == 0 and "checks:" in res.stdout


def _commands(tmp_path: Path, prom: str, kc: str) -> dict[str, list[str]]:
    """One invocation of every command that prints output (enough arguments to get past parsing)."""
    pol = str(policy(tmp_path))
    return {
        "status": ["status", "rec-model", "--kubeconfig", kc],
        "promote": ["promote", "rec-model", "--canary-version", "v2", "--policy", pol, "--kubeconfig", kc,
                    "--prometheus-url", prom],
        "rollback": ["rollback", "rec-model", "--kubeconfig", kc],
        "pause": ["pause", "rec-model", "--kubeconfig", kc],
        "resume": ["resume", "rec-model", "--kubeconfig", kc],
        "analyze": ["analyze", "rec-model", "--policy", pol, "--kubeconfig", kc, "--prometheus-url", prom],
        "plan": ["plan", "--policy", pol, "--rps", "50"],
        "judge": ["judge", "--input", str(tmp_path / "missing.json")],
        "policy validate": ["policy", "validate", pol],
        "policy schema": ["policy", "schema"],
        "baseline capture": ["baseline", "capture", str(tmp_path / "missing.csv"), "--model", "m", "--version", "v"],
        "drift check": ["drift", "check", "--baseline", str(tmp_path / "missing.json"), "--input", pol],
    }


@pytest.fixture
def prom_503() -> Any:
    server = ScriptedHTTP(lambda path, headers: (503, "text/plain", "overloaded"))
    yield server
    server.close()


@pytest.mark.parametrize("name", ["status", "promote", "rollback", "pause", "resume", "analyze", "plan", "judge",
                                  "policy validate", "policy schema", "baseline capture", "drift check"])
def test_every_command_refuses_an_unknown_output_naming_the_flag(name: str, tmp_path: Path) -> None:
    res = run(*_commands(tmp_path, "http://127.0.0.1:9", "unused")[name], "-o", "xml")
    assert res.exit_code == 2 and res.stdout == ""
    assert "'--output'" in res.stderr and "'xml'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("fmt", ["json", "yaml", "text"])
@pytest.mark.parametrize("name", ["status", "promote", "rollback", "pause", "resume", "analyze", "plan", "judge",
                                  "policy validate", "policy schema", "baseline capture", "drift check"])
def test_stdout_holds_the_requested_output_and_nothing_else(name: str, fmt: str, istio_api: KubeAPIServer,
                                                            prom_503: Any, tmp_path: Path) -> None:
    """On success and on every failure path: stdout is empty or one document of the format asked;
    the logs (analyze retries a 503 Prometheus, promote refuses it) are on stderr."""
    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    res = run(*_commands(tmp_path, prom_503.url, kc)[name], "-o", fmt)
    assert res.exit_code in (0, 1, 2, 3, 4), res.stderr
    assert not [e for e in logs.parse_json_lines(res.stdout) if "level" in e]  # no log line on stdout
    if fmt == "text":
        return
    if res.stdout:
        doc = json.loads(res.stdout) if fmt == "json" else yaml.safe_load(res.stdout)
        assert isinstance(doc, dict), res.stdout
        if fmt == "json":
            assert len(res.stdout.strip().splitlines()) == 1  # one JSON object per line
    else:
        assert res.exit_code != 0 and res.stderr  # nothing printed: the reason is on stderr
    if name == "analyze":  # every query answered 503: Prometheus unavailable (exit 3, decision 571), the verdict says so
        assert res.exit_code == 3 and res.stdout and "503" in res.stdout


# --- --route and --destination-rule where the VirtualService is resolved ---------------------------


def test_analyze_takes_route_on_a_multi_route_virtual_service(istio_api: KubeAPIServer, tmp_path: Path) -> None:
    istio_api.edit(GROUP, VS, "ml", "rec-model",
                   lambda o: o["spec"].__setitem__("http", [copy.deepcopy(SHADOW), *o["spec"]["http"]]))
    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    prom = ScriptedHTTP(lambda path, headers: (200, "application/json", EMPTY))
    try:
        args = ["analyze", "rec-model", "--policy", str(policy(tmp_path)), "--kubeconfig", kc,
                "--prometheus-url", prom.url, "-o", "json"]
        res = run(*args)
        assert res.exit_code == 2 and "--route" in res.stderr and "shadow" in res.stderr
        res = run(*args, "--route", "primary", "--destination-rule", "rec-model", "--window", "2m")
        out = json.loads(res.stdout)
        assert res.exit_code == 4 and out["route"] == "primary" and out["window_s"] == 120
        assert (out["stable_version"], out["canary_version"], out["namespace"]) == ("v1", "v2", "ml")
        res = run(*args, "--route", "primary", "--destination-rule", "nope")
        assert res.exit_code == 2 and "nope" in res.stderr
    finally:
        prom.close()


@pytest.mark.parametrize("name", ["status", "pause", "resume", "rollback", "analyze", "promote"])
def test_route_and_destination_rule_flags_where_the_virtual_service_is_resolved(name: str) -> None:
    res = run(*name.split(), "--help", env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "--route" in res.stdout and "--destination-rule" in res.stdout


# --- help ---------------------------------------------------------------------------------------

def every_command() -> list[str]:
    """Every leaf command of the app, as typed ('drift check'), including ones added after this test."""
    import typer.main

    def walk(cmd: Any, prefix: list[str]) -> list[str]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [" ".join(prefix)]
        return [n for name, sub in sorted(subs.items()) for n in walk(sub, [*prefix, name])]

    return walk(typer.main.get_command(app), [])


def test_the_command_list_is_complete() -> None:
    assert {"promote", "status", "analyze", "policy validate", "drift check", "controller run"} <= set(every_command())


@pytest.mark.parametrize("name", every_command())
def test_every_command_shows_an_example_in_its_help(name: str) -> None:
    res = run(*name.split(), "--help")
    assert res.exit_code == 0 and "Example: canary " in res.stdout


def test_on_call_commands_print_their_state_in_every_format(istio_api: KubeAPIServer, tmp_path: Path) -> None:
    from canary import rollout as rl
    from canary.model import Target, Weights
    from canary.routing.istio import IstioRouter

    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(75, 25), step=1, started_at=1.0, step_started_at=2.0)
    with kube.api_client(kubeconfig=kc) as client:
        IstioRouter(client).set_weights(Target(namespace="ml", virtual_service="rec-model", model="rec-model",
                                               stable_version="v1", canary_version="v2"),
                                        Weights(75, 25), state=state.to_json())
    res = run("pause", "rec-model", "--kubeconfig", kc, "-o", "yaml")
    assert res.exit_code == 0 and yaml.safe_load(res.stdout)["phase"] == rl.PAUSED
    res = run("resume", "rec-model", "--kubeconfig", kc, "-o", "wide")
    assert res.exit_code == 0 and "progressing: rec-model v2 weights 75/25" in res.stdout and "step 2" in res.stdout
    res = run("rollback", "rec-model", "--kubeconfig", kc, "-o", "json", "--reason", "pager")
    assert res.exit_code == 0 and json.loads(res.stdout)["weights"] == {"stable": 100, "canary": 0}
    # a stream of YAML documents; the version named: an end there at the start is no answer without it (decision 165)
    res = run("status", "rec-model", "--kubeconfig", kc, "--watch", "--canary-version", "v2", "-o", "yaml")
    assert res.exit_code == 1 and res.stdout.startswith("---\n")
    assert [d["rollout"]["phase"] for d in yaml.safe_load_all(res.stdout)] == [rl.ROLLED_BACK]


def test_unvalidated_calls_the_clients_own_method_without_its_argument_validation() -> None:
    import functools

    import kubernetes.client as kc

    from canary import kube

    api = kc.CustomObjectsApi(kc.ApiClient(kc.Configuration()))
    fast = kube.unvalidated(api.replace_namespaced_custom_object)
    assert isinstance(fast, functools.partial) and fast.args == (api,)
    assert fast.func is kc.CustomObjectsApi.replace_namespaced_custom_object.__wrapped__
    double = lambda *a, **kw: "faked"  # noqa: E731 - a test double has no wrapped original: used as it is
    assert kube.unvalidated(double) is double


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    from canary.cli import app

    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"canary {version('modelcanary')}"


def test_version_alone_is_answered_without_loading_the_cli() -> None:
    """A newcomer's `canary --version` took 9.0 s on a busy host (1.7 s of CPU): the whole CLI (typer, rich,
    structlog, the policy models) was imported for one line. The installed script answers it first; what was
    imported is checked, never how long it took (decision 958)."""
    import subprocess
    import sys
    from importlib.metadata import version

    code = ("import sys; sys.argv = ['canary', '--version']\n"
            "from canary.__main__ import main\n"
            "main()\n"
            "heavy = sorted(m for m in ('typer', 'rich', 'structlog', 'canary.cli', 'canary.policy') if m in sys.modules)\n"
            "print('loaded', heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"canary {version('modelcanary')}", "loaded []"], res.stdout
    with_more = subprocess.run([sys.executable, "-m", "canary", "--version", "--help"], capture_output=True,
                               text=True, timeout=120)  # not alone: the CLI's eager option answers, as before
    assert with_more.returncode == 0 and with_more.stdout.strip() == f"canary {version('modelcanary')}", with_more


@pytest.mark.parametrize(("args", "says"), [
    (["status", "../x"], "VirtualService (the model name"),
    (["rollback", "rec_model", "--reason", "r"], "'rec_model' is not a Kubernetes object name"),
    (["pause", "rec-model", "-n", "a/b"], "namespace 'a/b' is not a Kubernetes namespace"),
    (["status", "rec-model", "--virtual-service", "Rec"], "'Rec' is not a Kubernetes object name"),
    (["status", "rec-model", "--destination-rule", "a/b"], "DestinationRule 'a/b'"),
    (["report", "../x"], "the model's VirtualService '../x'"),
    (["report", "--rollout", "../../secret"], "--rollout '../../secret'"),
    (["report", "rec-model", "-n", "..%2Fx"], "namespace '..%2Fx'"),
])
def test_names_kubernetes_would_refuse_are_refused_before_any_request(istio_api: KubeAPIServer, tmp_path: Path,
                                                                     args: list[str], says: str) -> None:
    """A VirtualService, DestinationRule or namespace name that is no Kubernetes name: exit 2 naming
    it, and the API server never asked (`../x` and `a/b` went into the request path)."""
    kc = str(kubeconfig(tmp_path / "kc", istio_api.url))
    seen = dict(istio_api.handler.requests)
    res = run(*args, "--kubeconfig", kc)
    assert res.exit_code == 2 and says in res.stderr, res.stderr
    assert istio_api.handler.requests == seen


def test_commands_that_only_ask_prometheus_take_any_model_name(tmp_path: Path) -> None:
    """A Triton model name Kubernetes could not name an object after (`rec_model`) is no VirtualService
    for `plan` or `analyze`, which only query Prometheus: refused, they told the user to pass a
    --virtual-service that plan does not have (exit 2). Here Prometheus is unreachable."""
    pol = policy(tmp_path)
    res = run("plan", "--policy", str(pol), "--rps", "50", "--prometheus-url", "http://127.0.0.1:9",
              "--model", "rec_model", "--stable-version", "v1", "-n", "ml")
    assert res.exit_code == 0 and "not a Kubernetes" not in res.stderr, res.stderr  # no latency check: no layout read
    res = run("analyze", "rec_model", "--policy", str(pol), "--prometheus-url", "http://127.0.0.1:9", "-n", "ml",
              "--stable-version", "v1", "--canary-version", "v2")
    assert res.exit_code in (3, 4) and "not a Kubernetes" not in res.stderr, res.stderr


def test_promote_with_the_triton_gate_needs_the_stable_server_too(tmp_path: Path) -> None:
    """docs/triton.md: preflight compares the canary's tensor contract with stable's. Without
    --triton-stable that check was skipped, saying nothing (gate.passed listed one check fewer); now it
    is bad input naming the flag, before anything is read or written."""
    p = tmp_path / "gated.yaml"
    p.write_text(yaml.safe_dump({"steps": [10, 100], "gates": {"triton": {"enabled": True}},
                                 "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}))
    r = run("promote", "rec-model", "--canary-version", "v2", "--policy", str(p), "-n", "ml", "-o", "json",
            "--prometheus-url", "http://127.0.0.1:1", "--triton-canary", "http://127.0.0.1:2",
            "--kubeconfig", str(tmp_path / "none"))
    assert r.exit_code == 2 and "--triton-stable" in json.loads(r.stdout)["error"], r.output

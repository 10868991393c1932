"""Bad input anywhere is exit 2 with a message, never a traceback and never a touched route
(cases an adversarial run found: a string-valued custom query, an unparsable URL, non-UTF-8
exported measurements, a non-finite --rps, a negative --timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import ConfigError
from canary.model import Target
from canary.policy import parse_policy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_a_custom_query_answering_a_string_is_a_config_error(prom_provider: object) -> None:
    policy = parse_policy({"steps": [10, 100], "checks": [{"name": "s", "kind": "custom", "query": '"hello"',
                                                            "max_value": 1}]})
    target = Target(namespace="ml", virtual_service="m", model="rec-model", stable_version="v1", canary_version="v2")
    with pytest.raises(ConfigError, match="not a number"):
        prom_provider.preflight(policy, target)  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["http://[::1", "localhost:9090", "http://127.0.0.1:99999"])
def test_an_unparsable_prometheus_url_exits_2(url: str) -> None:
    res = run("analyze", "rec-model", "--policy", str(ROOT / "policies" / "sandbox.yaml"), "--prometheus-url", url,
              "--stable-version", "v1", "--canary-version", "v2")
    assert res.exit_code == 2 and "Prometheus URL" in res.output, res.output  # type: ignore[attr-defined]


def test_non_utf8_exported_measurements_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_bytes(b'{"policy": "\xff\xfe"}')
    res = run("judge", "--input", str(bad))
    assert res.exit_code == 2 and "UTF-8" in res.output, res.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("rps", ["nan", "inf", "-inf"])
def test_plan_refuses_non_finite_numbers(rps: str) -> None:
    res = run("plan", "--policy", str(ROOT / "policies" / "sandbox.yaml"), "--rps", rps)
    assert res.exit_code == 2 and "--rps" in res.output and "finite" in res.output, res.output  # type: ignore[attr-defined]


def test_via_controller_refuses_a_negative_timeout_before_creating_anything(tmp_path: Path) -> None:
    res = run("promote", "rec-model", "--canary-version", "v2", "--policy", str(ROOT / "policies" / "sandbox.yaml"),
              "--via-controller", "--timeout", "-1", "--kubeconfig", str(tmp_path / "none"))
    assert res.exit_code == 2 and "--timeout" in res.output, res.output  # type: ignore[attr-defined]


def test_stdout_holds_only_the_requested_output_when_prometheus_fails(tmp_path: Path) -> None:
    """Issue 11: `analyze -o json` against a Prometheus answering 503 printed its retry log lines on
    stdout before the JSON. Logs go to stderr from the first line of every command."""
    import json
    import subprocess
    import sys

    from tests.support.http import ScriptedHTTP

    server = ScriptedHTTP(lambda path, headers: (503, "text/plain", "unavailable"))
    try:
        pol = tmp_path / "p.yaml"
        pol.write_text("steps: [10, 100]\nchecks: [{name: err, kind: error_rate, max_rate_pct: 5}]\n")
        r = subprocess.run([sys.executable, "-m", "canary", "analyze", "rec", "--policy", str(pol),
                            "--stable-version", "v1", "--canary-version", "v2", "--window", "2m",
                            "--prometheus-url", server.url, "-o", "json"],
                           capture_output=True, text=True, timeout=120)
        out = json.loads(r.stdout)  # nothing but the JSON
        assert out["outcome"] == "error" and r.returncode == 3, r.stderr[-500:]  # Prometheus unavailable (571)
        assert "metrics.query_retry" in r.stderr or "503" in r.stderr or "503" in r.stdout
    finally:
        server.close()


@pytest.mark.parametrize(("answer", "says"), [
    ((404, "text/html", "<html>404 page not found</html>"), "does not look like a Prometheus HTTP API"),
    ((401, "text/plain", "Unauthorized"), "refused our credentials"),
])
def test_analyze_against_what_is_not_a_usable_prometheus_exits_2_once(tmp_path: Path, answer: tuple[int, str, str],
                                                                     says: str) -> None:
    """`canary analyze --prometheus-url .../api/v1` (the API's path given twice) exited 4 with the same
    "does not look like a Prometheus HTTP API" in every check's row, as if the canary could not be
    measured; promote refuses that URL with exit 2, one line. Credentials refused likewise. (The real CLI in
    this process: what is said, not the process's own; test_stdout_holds_only_... keeps a process.)"""
    from tests.support import cli
    from tests.support.http import ScriptedHTTP

    server = ScriptedHTTP(lambda path, headers: answer)
    try:
        pol = tmp_path / "p.yaml"
        pol.write_text("steps: [10, 100]\nchecks: [{name: err, kind: error_rate, max_rate_pct: 5}, "
                       "{name: lat, kind: latency, max_ms: 100}]\n")
        r = cli.run(["analyze", "rec", "--policy", str(pol), "--stable-version", "v1", "--canary-version", "v2",
                     "--window", "2m", "--prometheus-url", server.url + "/api/v1"])
        assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
        assert (r.stdout + r.stderr).count(says) == 1, r.stdout + r.stderr
    finally:
        server.close()


def test_via_controller_names_the_triton_flags_a_gated_policy_needs(tmp_path: Path) -> None:
    """A policy with gates.triton enabled and no --triton-canary: `promote` names the flag, but `--via-controller`
    created the CanaryRollout and relayed the controller's refusal, "needs spec.triton.canaryUrl", a field of an
    object the person never wrote (a newcomer's finding). Refused here, naming the flags, nothing created (the
    kubeconfig does not even exist)."""
    policy = str(ROOT / "policies" / "sandbox.yaml")
    res = run("promote", "rec-model", "--canary-version", "v2", "-n", "ml", "--policy", policy, "--via-controller",
              "--kubeconfig", str(tmp_path / "none"))
    assert res.exit_code == 2 and "pass --triton-canary (and --triton-stable)" in res.output, res.output  # type: ignore[attr-defined]
    res = run("promote", "rec-model", "--canary-version", "v2", "-n", "ml", "--policy", policy, "--via-controller",
              "--triton-canary", "127.0.0.1:9", "--kubeconfig", str(tmp_path / "none"))
    assert res.exit_code == 2 and "pass --triton-stable too" in res.output, res.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", [[], ["--via-controller"]])
def test_one_triton_server_given_as_both_canary_and_stable_exits_2_naming_both_flags(tmp_path: Path,
                                                                                      mode: list[str]) -> None:
    """A promote line pasted with the stable's address in both flags: the gate compared stable with itself and
    passed (`gate.passed`), and the probe that rolls a crashed canary back watched stable; the canary was never
    looked at (decision 204). Refused before anything is read or created (the kubeconfig does not even exist),
    whatever the spelling of the one address."""
    policy = str(ROOT / "policies" / "sandbox.yaml")
    prometheus = [] if mode else ["--prometheus-url", "http://127.0.0.1:9"]  # refused with --via-controller
    res = run("promote", "rec-model", "--canary-version", "v2", "-n", "ml", "--policy", policy, *mode,
              *prometheus, "--kubeconfig", str(tmp_path / "none"),
              "--triton-canary", "HTTP://Triton-Stable.ml:8000", "--triton-stable", "triton-stable.ml:8000")
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert ("--triton-canary 'HTTP://Triton-Stable.ml:8000' and --triton-stable 'triton-stable.ml:8000' name the "
            "same Triton server") in res.output, res.output  # type: ignore[attr-defined]

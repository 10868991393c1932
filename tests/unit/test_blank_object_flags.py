"""An object flag given empty or blank (`--virtual-service "$VS"` with the variable unset) is refused before any
request, naming the flag (decision 743): it was read as "not given", and the command acted on the default object
(the VirtualService named as the model, the policy's or the only route) without a word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests.support.http import ScriptedHTTP


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A stand-in API server that records every GET (and answers 404): none may come."""
    server = ScriptedHTTP(lambda path, headers: (404, "application/json", json.dumps(
        {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"})))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}]}))
    (tmp_path / "p.yaml").write_text("steps: [10, 100]\nchecks: [{name: err, kind: error_rate, max_rate_pct: 5}]\n")
    yield server, kubeconfig, tmp_path / "p.yaml"
    server.close()


@pytest.mark.parametrize("command", [["rollback", "rec"], ["pause", "rec"], ["resume", "rec"], ["status", "rec"],
                                     ["analyze", "rec", "--policy", "{policy}", "--prometheus-url", "http://127.0.0.1:9"],
                                     ["promote", "rec", "--canary-version", "v2", "--policy", "{policy}",
                                      "--prometheus-url", "http://127.0.0.1:9"]])
@pytest.mark.parametrize(("flag", "value"), [("--virtual-service", ""), ("--destination-rule", ""), ("--route", ""),
                                             ("--virtual-service", "  ")])
def test_an_object_flag_given_empty_is_refused_before_any_request(api, command: list[str], flag: str,  # type: ignore[no-untyped-def]
                                                                 value: str) -> None:
    server, kubeconfig, policy = api
    args = [a.replace("{policy}", str(policy)) for a in command]
    res = CliRunner().invoke(app, [*args, flag, value, "--kubeconfig", str(kubeconfig)])
    words = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2, res.output
    assert flag in words and "given empty" in words and "leave the flag out" in words, words
    assert server.paths == [], server.paths


def test_a_named_object_flag_is_still_read(api) -> None:  # type: ignore[no-untyped-def]
    server, kubeconfig, _ = api
    res = CliRunner().invoke(app, ["status", "rec", "--virtual-service", "rec-vs", "--kubeconfig", str(kubeconfig)])
    assert res.exit_code == 2 and server.paths, res.output  # asked, and not found


@pytest.mark.parametrize(("command", "flag"), [
    (["promote", "rec", "--canary-version", "v2", "--policy", "{policy}", "--via-controller"], "--rollout-name"),
    (["report", "rec"], "--rollout"),
])
def test_a_rollout_name_given_empty_is_refused_before_any_request(api, command: list[str],  # type: ignore[no-untyped-def]
                                                                 flag: str) -> None:
    """`--rollout-name "$NAME"` with the variable unset created (or took over) the CanaryRollout of the default
    name, and `report rec --rollout ""` reported the model's latest rollout, not the one asked for (decision 743
    addendum)."""
    server, kubeconfig, policy = api
    args = [a.replace("{policy}", str(policy)) for a in command]
    res = CliRunner().invoke(app, [*args, flag, "", "--kubeconfig", str(kubeconfig)])
    words = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and flag in words and "given empty" in words, words
    assert server.paths == [], server.paths


@pytest.mark.parametrize("command", [["rollback", "rec"], ["status", "rec"]])
@pytest.mark.parametrize("flag", ["--kubeconfig", "--context"])
def test_a_cluster_flag_given_empty_is_refused_before_any_request(api, command: list[str], flag: str) -> None:  # type: ignore[no-untyped-def]
    """`--kubeconfig "$STAGING_KUBECONFIG"` with the variable unset acted on $KUBECONFIG's (or ~/.kube/config's)
    cluster, perhaps another, and `--context ""` was refused only in the client's words ("Expected object with
    name  in ... contexts list") (decision 743 addendum). $KUBECONFIG left empty is still not set, as kubectl's."""
    server, kubeconfig, _ = api
    more = ["--kubeconfig", str(kubeconfig)] if flag == "--context" else []
    res = CliRunner(env={"KUBECONFIG": str(kubeconfig)}).invoke(app, [*command, flag, "", *more])
    words = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and flag in words and "given empty" in words, words
    assert server.paths == [], server.paths

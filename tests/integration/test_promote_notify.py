"""`canary promote` tells the webhooks and Slack of the end it makes, as the controller does.

Before: promote took no `--webhook` and ignored CANARY_SLACK_WEBHOOK_URLS. A rollback made by a CD
pipeline's promote at 3 a.m. reached nobody, and a person who had set the variable for the
controller believed it did. The real CLI process, a real Prometheus (test_promote's backfilled
history: v3 is slow), the strict Kubernetes API emulator and a real local HTTP receiver.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from canary.logs import parse_json_lines
from tests.integration.test_notify_attack import SECRET, Server
from tests.integration.test_promote import CANARY, ROOT, cluster, prometheus, promote, vs_state  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def srv() -> Any:
    s = Server()
    yield s
    s.close()


def test_a_rollback_by_promote_reaches_the_webhook_and_slack_before_it_exits(cluster: Any, prometheus: Any,
                                                                              srv: Server,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    api, kubeconfig, policy = cluster
    monkeypatch.setenv("CANARY_SLACK_WEBHOOK_URLS", srv.url + SECRET)  # the controller's variable, set once
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--webhook", srv.url + "/hook")
    assert res.returncode == 1, res.stderr[-3000:]
    assert vs_state(api)[0] == [100, 0]
    hooks = {p: b for p, b in srv.got}  # delivered before the process exited: nothing is waited for here
    generic, slack = hooks["/hook"], hooks[SECRET]
    assert (generic["event"], generic["model"], generic["namespace"], generic["canary_version"]) == \
        ("rollback", "rec-model", "ml", "v3")
    assert generic["weights"] == {"stable": 100, "canary": 0} and "latency-p95" in generic["reason"]
    assert any(e["check"] == "latency-p95" and e["outcome"] == "fail" for e in generic["evidence"])
    assert slack["text"].startswith(":rotating_light: rollback ml/rec-model v3 -&gt; stable 100%: ")
    assert slack["blocks"][-1]["text"]["text"].startswith("Next: `canary status rec-model -n ml")
    assert [p for p, _ in srv.got].count("/hook") == 1  # announced once
    assert "s3cret" not in res.stderr and "s3cret" not in res.stdout


def test_a_hung_receiver_delays_the_exit_by_at_most_5s_and_the_loss_is_said(cluster: Any, prometheus: Any,
                                                                            srv: Server) -> None:
    api, kubeconfig, policy = cluster
    srv.routes[SECRET] = srv.hang  # held until the test ends
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--slack-webhook", srv.url + SECRET)
    assert res.returncode == 1, res.stderr[-3000:]
    (lost,) = [e for e in parse_json_lines(res.stderr) if e["event"] == "notify.undelivered"]
    assert lost["undelivered"] == [{"sink": "slack", "host": "127.0.0.1", "events": ["rollback"]}]
    assert lost["critical"] == 1 and lost["waited_s"] == 5.0
    assert "s3cret" not in res.stderr


@pytest.mark.parametrize("flag,url,field", [
    ("--webhook", "hooks.example/no-scheme", "webhook URL #1 (CANARY_WEBHOOK_URLS / --webhook)"),
    ("--slack-webhook", "https://hooks.slack.com:443x" + SECRET, "slack URL #1 (CANARY_SLACK_WEBHOOK_URLS / "
                                                                 "--slack-webhook)")])
def test_a_bad_url_exits_2_before_anything_moves(cluster: Any, prometheus: Any, flag: str, url: str,
                                                 field: str) -> None:
    api, kubeconfig, policy = cluster
    before = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, policy, prometheus.url, "v3", flag, url)
    assert res.returncode == 2 and field in res.stderr, res.stderr[-2000:]
    assert "s3cret" not in res.stderr + res.stdout
    assert api.get("networking.istio.io", "virtualservices", "ml", "rec-model") == before  # nothing written


def test_webhooks_are_refused_with_via_controller(cluster: Any, tmp_path: Path) -> None:
    """The controller posts a CanaryRollout's end: a follower posting it too said every end twice."""
    api, kubeconfig, policy = cluster
    res = subprocess.run([*CANARY, "promote", "rec-model", "--canary-version", "v3", "--policy", str(policy),
                          "--via-controller", "--kubeconfig", str(kubeconfig), "--webhook", "http://127.0.0.1:9/x"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
    assert res.returncode == 2 and "do not apply with --via-controller" in res.stderr, res.stderr[-2000:]

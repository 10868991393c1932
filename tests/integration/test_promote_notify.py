"""`canary promote` tells the webhooks and Slack of the end it makes, as the controller does.

Before: promote took no `--webhook` and ignored CANARY_SLACK_WEBHOOK_URLS. A rollback made by a CD
pipeline's promote at 3 a.m. reached nobody, and a person who had set the variable for the
controller believed it did. The real CLI (a process where its exit is the subject), a real Prometheus (test_promote's backfilled
history: v3 is slow), the strict Kubernetes API emulator and a real local HTTP receiver.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from canary.logs import parse_json_lines
from tests.integration.test_notify_attack import SECRET, Server
from tests.integration.test_promote import CANARY, cluster, prometheus, promote, vs_state  # noqa: F401

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
    # 120 s for the posts: the receiver answers at once, and a loaded host's posts are not cut by the 5 s default
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--webhook", srv.url + "/hook", "--notify-wait", "120s",
                  process=True)
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


def test_a_hung_receiver_delays_the_exit_by_at_most_the_notify_wait_and_the_loss_is_said(cluster: Any, prometheus: Any,
                                                                                         srv: Server) -> None:
    api, kubeconfig, policy = cluster
    srv.routes[SECRET] = srv.hang  # held until the test ends
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--slack-webhook", srv.url + SECRET, "--notify-wait", "2s",
                  process=True)
    assert res.returncode == 1, res.stderr[-3000:]
    (lost,) = [e for e in parse_json_lines(res.stderr) if e["event"] == "notify.undelivered"]
    assert lost["undelivered"] == [{"sink": "slack", "host": "127.0.0.1", "events": ["rollback"]}]
    assert lost["critical"] == 1 and lost["waited_s"] == 2.0  # --notify-wait's, not the 5 s default
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
    from tests.support import cli  # in this process: what is refused, not the process's own

    api, kubeconfig, policy = cluster
    res = cli.run(["promote", "rec-model", "--canary-version", "v3", "--policy", str(policy), "--via-controller",
                   "--kubeconfig", str(kubeconfig), "--webhook", "http://127.0.0.1:9/x"], env={"KUBECONFIG": ""})
    assert res.returncode == 2 and "do not apply with --via-controller" in res.stderr, res.stderr[-2000:]


def test_an_end_that_could_not_write_stable_100_is_posted_with_the_weights_unknown(cluster: Any, prometheus: Any,
                                                                                  srv: Server) -> None:
    """The stable destination renamed by hand at 80/20: stable 100% cannot be written, exit 6 and the
    critical `traffic.unsafe`. promote posted nothing: the channel heard of every end but the one that
    needs a person. Now "aborted", weights null ("weights unknown"), the error as the reason."""
    import json

    from tests.integration.test_interrupt_grace import run_acting_at
    from tests.support.blackhole import weights

    api, kubeconfig, policy = cluster

    def stable_renamed(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = "stable-old"

    # renamed by a proxy at the first request read once the route is split, before it is forwarded: the test's
    # thread, reading the split's line, could wake after the rollout had been promoted (6 s later: exit 0)
    proc = run_acting_at(
        api, kubeconfig, lambda kc: [*CANARY, "promote", "rec-model", "--canary-version", "v2", "--policy", str(policy),
                                     "--namespace", "ml", "--kubeconfig", str(kc), "-o", "json", "--log-format", "json",
                                     "--slack-webhook", srv.url + SECRET, "--webhook", srv.url + "/hook"],
        {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url}, when=lambda: weights(api)[1] > 0,
        act=lambda _proc: api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", stable_renamed))
    out, stderr = proc.stdout, proc.stderr
    assert proc.returncode == 6, stderr[-4000:]
    assert json.loads(out)["rollback_failed"] is True
    hooks = {p: b for p, b in srv.got}
    generic, slack = hooks["/hook"], hooks[SECRET]
    assert (generic["event"], generic["canary_version"], generic["weights"]) == ("aborted", "v2", None), generic
    assert generic["reason"].startswith("stable 100% not confirmed: ") and "stable 100% failed" in generic["reason"]
    assert slack["text"].startswith(":warning: aborted ml/rec-model v2 -&gt; weights unknown: stable 100% not confirmed")
    assert not [e for e in parse_json_lines(stderr) if e["event"] == "notify.undelivered"]


def test_after_a_signal_the_wait_for_posts_ends_within_the_interrupt_grace(cluster: Any, prometheus: Any,
                                                                            srv: Server) -> None:
    """SIGTERM at 80/20 with a hung Slack: the exit waited 5 s for the post on top of the grace, past the
    kill a CI job's grace sets (the README's GitHub Actions example: 8 s). Now it waits what is left of
    `--interrupt-grace`, and says what was not delivered."""
    from tests.integration.test_interrupt_grace import _promote_signalled

    api, kubeconfig, policy = cluster
    srv.routes[SECRET] = srv.hang
    code, out, stderr = _promote_signalled(kubeconfig, policy, prometheus.url, "--interrupt-grace", "3s",
                                           "--slack-webhook", srv.url + SECRET, split_of=api)
    assert code == 3 and vs_state(api)[0] == [100, 0], stderr[-3000:]
    (lost,) = [e for e in parse_json_lines(stderr) if e["event"] == "notify.undelivered"]
    assert lost["undelivered"] == [{"sink": "slack", "host": "127.0.0.1", "events": ["aborted"]}]
    assert 0.0 <= lost["waited_s"] < 3.0, lost


def test_the_wait_for_posts_is_5s_or_what_is_left_of_the_grace() -> None:
    import math

    from canary.cli import notify_wait_s

    assert notify_wait_s(math.inf, 100.0) == 5.0  # no signal
    assert notify_wait_s(102.5, 100.0) == 2.5 and notify_wait_s(130.0, 100.0) == 5.0
    assert notify_wait_s(99.0, 100.0) == 0.0  # spent: nothing waited, the loss said at once
    assert notify_wait_s(math.inf, 100.0, wait_s=120.0) == 120.0  # --notify-wait 2m
    assert notify_wait_s(102.5, 100.0, wait_s=120.0) == 2.5  # a signal's grace still cuts it


def test_notify_wait_is_5s_unless_given_and_at_most_10m_and_not_with_via_controller(cluster: Any) -> None:
    """--notify-wait (decision 787): a slow receiver's posts get longer than 5 s; a bound the flag's own error
    names; refused where the controller posts the end. Nothing is read or moved."""
    import typer.main

    from canary.cli import NOTIFY_WAIT_S, app
    from tests.support.cli import run

    cmd = typer.main.get_command(app).commands["promote"]  # type: ignore[attr-defined]
    parsed = cmd.make_context("promote", ["m", "--canary-version", "v", "--policy", "p.yaml"], resilient_parsing=True)
    assert parsed.params["notify_wait"] == NOTIFY_WAIT_S == 5.0  # not given: 5 s, as before the flag
    api, kubeconfig, policy = cluster
    before = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    for more, said in ((["--notify-wait", "11m"], "give 10m or less"),
                       (["--notify-wait", "30s", "--via-controller"], "--notify-wait only applies without "
                                                                     "--via-controller")):
        res = run(["promote", "rec-model", "--canary-version", "v3", "--policy", str(policy), "--kubeconfig",
                   str(kubeconfig), *more], env={"KUBECONFIG": "", "COLUMNS": "200"})  # in-process: the words
        assert res.returncode == 2 and said in res.stderr, res.stderr[-2000:]
    assert api.get("networking.istio.io", "virtualservices", "ml", "rec-model") == before  # nothing written

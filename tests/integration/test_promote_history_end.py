"""`canary promote`'s end is in the model's history even when the end's history write fails.

The runner writes its rollout's history (`canary.history_store`: looks, events, weights; what `canary report`
and a re-run's check for an earlier rollback, decision 253, read) as it goes, and its end once, just before it
exits. A flush that fails keeps its records for the next one, but after the end there was none: one 500 on
that write and the ConfigMap held the rollout as still progressing. The real CLI in this process, a real
Prometheus (backfilled) and the strict Kubernetes API emulator, as tests/integration/test_promote.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary import history_store
from canary import rollout as rl
from canary.history_store import configmap_name
from canary.logs import parse_json_lines
from canary.runner import END_HISTORY_RETRIES
from canary.sandbox.promserver import PromServer
from tests.integration.test_promote import GROUP, cluster, prometheus, promote, vs_state  # noqa: F401  (fixtures)
from tests.integration.test_report_promote import report
from tests.support.kube import fail_history_writes_once_ended

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waits between the end's retries (0.5 s doubled: 7.5 s) shortened: what is asserted is how many writes
    were tried and what was said, never when (the CLI runs in this process)."""
    monkeypatch.setattr("canary.runner.END_HISTORY_WAIT_S", 0.01)


def _history(api: Any) -> dict[str, Any]:
    cm = api.get("", "configmaps", "ml", configmap_name("rec-model"))
    assert cm is not None, "no history ConfigMap"
    return history_store.read(cm["data"], where="history ConfigMap")


@pytest.mark.parametrize("times", [1, 2, 4])
def test_a_rolled_back_promotes_end_whose_history_write_failed_is_written_again(
        cluster: Any, prometheus: PromServer, times: int) -> None:  # noqa: F811
    api, kubeconfig, policy = cluster
    failed = fail_history_writes_once_ended(api, "rec-model", times)
    res = promote(kubeconfig, policy, prometheus.url, "v3")  # a slow canary: rolled back
    assert res.returncode == 1, res.stderr[-3000:]
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK
    assert len(failed) == times, failed
    doc = _history(api)
    assert doc["phase"] == rl.ROLLED_BACK and "latency-p95" in doc["reason"], (doc["phase"], doc["reason"])
    assert [e["event"] for e in doc["events"]][-2:] == ["rollback.started", "rollback.completed"]
    assert doc["looks"] and doc["looks"][-1]["o"] == "fail"
    names = [e["event"] for e in parse_json_lines(res.stderr)]
    assert names.count("history.write_failed") == times and "history.end_unwritten" not in names
    # the history alone says the end: `canary report` once the route's record is gone (a GitOps sync stripped
    # it; or another model's on a shared VirtualService) said "progressing" without the change
    api.edit(GROUP, "virtualservices", "ml", "rec-model", lambda vs: vs["metadata"]["annotations"].pop(
        "modelcanary.dev/rollout"))
    shown = report(kubeconfig, "-o", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["phase"] == rl.ROLLED_BACK


@pytest.mark.parametrize("code", [500, 403], ids=["failing for ever", "refused (RBAC)"])
def test_a_promotes_end_whose_history_cannot_be_written_is_given_up_once_and_said(
        cluster: Any, prometheus: PromServer, code: int) -> None:  # noqa: F811
    """Tried END_HISTORY_RETRIES times after the loop's own flushes (a 403 not again), then one
    `history.end_unwritten` naming the ConfigMap and the route's record; the exit code stays the rollout's (1)."""
    api, kubeconfig, policy = cluster
    failed = fail_history_writes_once_ended(api, "rec-model", 1000, code)
    res = promote(kubeconfig, policy, prometheus.url, "v3")
    assert res.returncode == 1, res.stderr[-3000:]
    assert json.loads(res.stdout)["phase"] == rl.ROLLED_BACK and vs_state(api)[1]["phase"] == rl.ROLLED_BACK
    lines = parse_json_lines(res.stderr)
    loop = 2  # the decided end's flush (`_apply`) and the loop's observe of the end
    assert len(failed) == loop + (END_HISTORY_RETRIES if code == 500 else 0), failed
    given_up = [e for e in lines if e["event"] == "history.end_unwritten"]
    assert len(given_up) == 1 and given_up[0]["level"] == "warning", given_up
    said = given_up[0]
    assert said["tries"] == len(failed) and said["pending"] > 0 and said["configmap"] == "ml/rec-model-canary-history"
    assert "canary status rec-model -n ml" in said["note"] and "exit code" in said["note"]
    assert _history(api)["phase"] == rl.PROGRESSING  # lost, and said

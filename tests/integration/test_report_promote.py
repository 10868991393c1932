"""`canary promote` end to end (real CLI process, real Prometheus, the strict API emulator),
then `canary report` on what it recorded: the history ConfigMap holds every look with both arms'
values, and the page built from the cluster loads in chromium with its plots and looks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from canary import history as hist
from canary import rollout as rl
from canary.history_store import KEY, configmap_name
from canary.sandbox.kubeapi import KubeAPIServer
from canary.sandbox.promserver import PromServer
from tests.integration.test_promote import cluster, prometheus, promote  # noqa: F401  (fixtures)
from tests.integration.test_report_browser import assert_report_page
from tests.support.browser import chromium  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration
CHECKS = ["latency-p95", "errors", "predictions"]


def recorded(api: KubeAPIServer) -> dict[str, Any]:
    cm = api.get("", "configmaps", "ml", configmap_name("rec-model"))
    assert cm is not None, "no history ConfigMap"
    assert cm["metadata"]["labels"]["modelcanary.dev/history"] == "true"
    return hist.parse(cm["data"][KEY], where="history ConfigMap")


def report(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.support import cli  # the real CLI in this process

    return cli.run(["report", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig), *args], env={"KUBECONFIG": ""})


def test_a_promotion_driven_end_to_end_makes_a_report_with_its_looks(
        cluster: Any, prometheus: PromServer, chromium: str, tmp_path: Path) -> None:  # noqa: F811
    api, kubeconfig, policy = cluster
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stderr[-3000:]
    state = json.loads(api.get("networking.istio.io", "virtualservices", "ml", "rec-model")["metadata"]["annotations"]
                       ["modelcanary.dev/rollout"])
    doc = recorded(api)
    assert doc["phase"] == rl.PROMOTED and doc["rollout"]["source"] == "promote"
    assert [lk["n"] for lk in doc["looks"]] == list(range(1, state["look"] + 1))  # promote writes every look
    assert {lk["step"] for lk in doc["looks"]} == {1, 2} and [p[1] for p in doc["weights"]] == [0, 20, 50, 100, 0]
    last = doc["looks"][-1]["c"]
    assert set(last) == set(CHECKS) and last["latency-p95"]["sv"] > 0 and last["latency-p95"]["cv"] > 0
    assert last["predictions"]["x"]["psi_bound"] is not None

    page = tmp_path / "promoted.html"
    out = report(kubeconfig, "-o", str(page))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(page)  # stdout: only the requested output
    dom = assert_report_page(chromium, page, tmp_path, checks=CHECKS, looks=len(doc["looks"]))
    assert "promoted" in dom and "v1 → v2" in dom

    exported = report(kubeconfig, "-o", "json")  # saved now, rendered later with no cluster
    assert exported.returncode == 0, exported.stderr[-3000:]
    saved = tmp_path / "rollout.json"
    saved.write_text(exported.stdout)
    from tests.support import cli

    again = cli.run(["report", "--input", str(saved), "-o", str(tmp_path / "again.html")])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "again.html").read_text() == page.read_text()


def test_a_rollback_report_shows_the_failed_looks(cluster: Any, prometheus: PromServer,  # noqa: F811
                                                  tmp_path: Path) -> None:
    api, kubeconfig, policy = cluster
    res = promote(kubeconfig, policy, prometheus.url, "v3")
    assert res.returncode == 1, res.stderr[-3000:]
    doc = recorded(api)
    assert doc["phase"] == rl.ROLLED_BACK and "latency-p95" in doc["reason"]
    failed = [lk for lk in doc["looks"] if lk["c"]["latency-p95"]["o"] == "fail"]
    assert failed and all(lk["c"]["latency-p95"]["cv"] > lk["c"]["latency-p95"]["sv"] for lk in failed)
    assert [e["event"] for e in doc["events"]][-2:] == ["rollback.started", "rollback.completed"]
    page = tmp_path / "rolled-back.html"
    out = report(kubeconfig, "-o", str(page))
    assert out.returncode == 0, out.stderr[-3000:]
    assert page.read_text().count('data-outcome="fail"') == len([lk for lk in doc["looks"] if lk["o"] == "fail"])


def test_no_history_is_bad_input(cluster: Any, tmp_path: Path) -> None:  # noqa: F811
    _, kubeconfig, _ = cluster
    out = report(kubeconfig, "-o", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "no rollout history for ml/rec-model" in out.stderr
    assert out.stdout == ""

"""The controller (in-process, against the strict API emulator and a real Prometheus) records each
CanaryRollout's history, and `canary report --rollout NAME` (the real CLI, in this process) renders it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from canary import crd
from canary import history as hist
from canary import rollout as rl
from canary.history_store import KEY, configmap_name
from tests import fleet
from tests.integration.test_controller import prometheus, run_until_done, world  # noqa: F401  (fixtures)
from tests.integration.test_report_browser import assert_report_page
from tests.support.browser import chromium  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration


def report(kc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.support import cli  # the real CLI in this process, as test_report_promote.py runs it

    return cli.run(["report", "-n", "ml", "--kubeconfig", str(kc), *args], env={"KUBECONFIG": ""})


def test_controller_rollouts_have_their_history_and_a_report(world: Any, chromium: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    api, op, custom = world
    for i, v in enumerate(["v2", "v3"]):
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(i, v))
    objs = run_until_done(op, custom, ["r0", "r1"])
    for i, phase in enumerate([rl.PROMOTED, rl.ROLLED_BACK]):
        assert objs[f"r{i}"]["status"]["phase"] == phase
        cm = api.get("", "configmaps", "ml", configmap_name(fleet.model(i)))
        assert cm is not None
        doc = hist.parse(cm["data"][KEY], where="history")
        state = json.loads(api.get("networking.istio.io", "virtualservices", "ml", fleet.model(i))
                           ["metadata"]["annotations"]["modelcanary.dev/rollout"])
        assert doc["phase"] == phase and doc["rollout"] == {**doc["rollout"], "source": "controller", "name": f"ml/r{i}"}
        # flushed every 10 looks and at every step and phase change: a run that ends has them all
        assert [lk["n"] for lk in doc["looks"]] == list(range(1, state["look"] + 1))
        # every judged look carries its values; a look that could not measure (a Prometheus answer
        # too slow on a loaded machine: outcome "error") has none, and is still recorded
        judged = [lk for lk in doc["looks"] if lk["o"] != "error"]
        assert judged and all(lk["c"]["latency-p95"]["cv"] is not None for lk in judged), doc["looks"]
    kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    page = tmp_path / "r1.html"
    out = report(kc, "--rollout", "r1", "-o", str(page))
    assert out.returncode == 0, out.stderr[-3000:]
    doc = hist.parse(api.get("", "configmaps", "ml", configmap_name("m1"))["data"][KEY], where="history")
    dom = assert_report_page(chromium, page, tmp_path, checks=["latency-p95", "errors"], looks=len(doc["looks"]))
    assert "CanaryRollout <bdi>ml/r1</bdi>" in dom and "rolled_back" in dom  # the name isolated (decision 349)

    # a CanaryRollout whose VirtualService has since recorded another rollout is not reported as that one
    later = fleet.rollout_object(0, "v3")
    later["metadata"]["name"] = "r0-later"
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, later)
    out = report(kc, "--rollout", "r0-later", "-o", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "holds the history of a later rollout of m0 (v2)" in out.stderr

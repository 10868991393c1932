"""`baseline capture --configmap` against the strict Kubernetes API emulator (decision 268): a re-capture keeps the
model's own drift settings (the ConfigMap's annotations, docs/drift.md section 5), and a capture never replaces
another model version's baseline, nor a ConfigMap that is not a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.store import ENTER_AFTER_ANNOTATION, KEY, WINDOW_ANNOTATION, load_profiles
from tests import fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _capture(tmp_path: Path, kubeconfig: Path, version: str, name: str = "rec-model-v2-baseline") -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / f"train-{version}.parquet"
    pq.write_table(pa.table({"age": np.random.default_rng(3).normal(40, 10, 2_000)}), data)
    return CliRunner().invoke(app, ["baseline", "capture", str(data), "--model", "rec-model", "--version", version,
                                    "-f", str(tmp_path / f"{version}.json"), "--configmap", name, "-n", "ml",
                                    "--kubeconfig", str(kubeconfig), "-o", "json"])


def test_a_recapture_keeps_the_models_drift_settings(kube_api: Any, tmp_path: Path) -> None:
    """The documented way to give a daily-cycle model a day's window is `kubectl annotate` on its baseline
    ConfigMap. Capturing that version again (new training data, the same command) replaced the ConfigMap whole:
    the annotations were gone, the model went back to the controller's 1 h window and its daily cycle read as
    drift (decision 92: a false episode, and a retraining Job, about every day), silently. They are kept now, and
    the output names them."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", kube_api.url)
    assert _capture(tmp_path, kubeconfig, "v2").exit_code == 0
    kube_api.edit("", "configmaps", "ml", "rec-model-v2-baseline", lambda o: o["metadata"].setdefault(
        "annotations", {}).update({WINDOW_ANNOTATION: "24h", ENTER_AFTER_ANNOTATION: "1", "team": "recs"}))
    r = _capture(tmp_path, kubeconfig, "v2")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == ("ConfigMap ml/rec-model-v2-baseline updated (its drift settings kept: "
                                              f"{ENTER_AFTER_ANNOTATION}=1, {WINDOW_ANNOTATION}=24h)"), r.stdout
    cm = kube_api.get("", "configmaps", "ml", "rec-model-v2-baseline")
    assert cm["metadata"]["annotations"] == {WINDOW_ANNOTATION: "24h", ENTER_AFTER_ANNOTATION: "1", "team": "recs"}
    [(where, prof)] = load_profiles(_core(kube_api), "ml")
    assert where == "ml/rec-model-v2-baseline" and prof["_window_s"] == 86_400 and prof["_enter_after"] == 1


def test_a_capture_never_replaces_another_versions_baseline_nor_a_configmap_not_a_baseline(
        kube_api: Any, tmp_path: Path) -> None:
    """v3 captured with v2's ConfigMap name (a command copied, the version changed) replaced v2's baseline: the
    controller stopped watching v2, the version serving all traffic, and said nothing ("updated"). Now exit 2,
    nothing written to the cluster, naming what the ConfigMap holds; likewise a ConfigMap that is not a baseline."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", kube_api.url)
    assert _capture(tmp_path, kubeconfig, "v2").exit_code == 0
    before = kube_api.get("", "configmaps", "ml", "rec-model-v2-baseline")
    r = _capture(tmp_path, kubeconfig, "v3")
    assert r.exit_code == 2, r.output
    assert ("written, but not stored: ConfigMap ml/rec-model-v2-baseline holds the baseline of rec-model v2, not "
            "rec-model v3") in " ".join(r.output.split()), r.output
    after = kube_api.get("", "configmaps", "ml", "rec-model-v2-baseline")
    assert json.loads(after["data"][KEY])["version"] == "v2" and after == before
    assert (tmp_path / "v3.json").exists()  # the file is written, as the error says
    kube_api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "app-config", "namespace": "ml"}, "data": {"a": "1"}})
    r = _capture(tmp_path, kubeconfig, "v3", name="app-config")
    assert r.exit_code == 2 and "is not a baseline ConfigMap" in r.output, r.output
    assert kube_api.get("", "configmaps", "ml", "app-config")["data"] == {"a": "1"}


def _core(kube_api: Any) -> Any:
    import kubernetes

    return kubernetes.client.CoreV1Api(kube_api.api_client())


ANSWERS = [(500, b"", ""), (200, b"{}", "application/json"), (200, b"null", "application/json"),
           (200, b"", "application/json"), (200, b"<html><body>upstream connect error</body></html>", "text/html")]


@pytest.mark.parametrize("code,body,content_type", ANSWERS, ids=["500", "{}", "null", "empty", "html"])
@pytest.mark.parametrize("method", ["POST", "PUT"], ids=["create", "replace"])
def test_a_capture_whose_write_landed_with_its_answer_lost_is_written(
        kube_api: Any, tmp_path: Path, method: str, code: int, body: bytes, content_type: str) -> None:
    """The baseline ConfigMap's create (or a re-capture's replace) lands and is answered 500 `etcdserver: request
    timed out` or 200 with no object (a proxy). Before: exit 2 "500 Internal Server Error" for a baseline that is
    there, and for the empty and page bodies the client's own ValidationError out of the command. Now the ConfigMap
    is read back: it holds this profile, so the capture is written (decision 421); one the write did not reach is
    still an error naming the ConfigMap (the last case)."""
    import aiohttp.web

    from canary.sandbox.kubeapi import status_body

    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", kube_api.url)
    if method == "PUT":
        assert _capture(tmp_path, kubeconfig, "v2").exit_code == 0
    real, hit = kube_api.handler._handle, []

    def answering(apply: bool) -> Any:
        async def handle(request: Any) -> Any:
            res = request.resource
            if res is not None and res.plural == "configmaps" and str(request.method.value).upper() == method \
                    and not hit:
                hit.append((await real(request)).status if apply else 0)
                if code == 500:
                    return aiohttp.web.json_response(status_body(500, "InternalError", "etcdserver: request timed "
                                                                 "out"), status=500)
                return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
            return await real(request)
        return handle

    kube_api.handler._handle = answering(apply=True)
    result = _capture(tmp_path, kubeconfig, "v2")
    assert hit and hit[0] in (200, 201) and result.exit_code == 0, (result.output, result.exception)
    assert json.loads(kube_api.get("", "configmaps", "ml", "rec-model-v2-baseline")["data"][KEY])["version"] == "v2"
    if method == "PUT":
        hit.clear()
        kube_api.handler._handle = answering(apply=False)  # not forwarded: a failed write, said
        kube_api.handler.edit_object("", "configmaps", "ml", "rec-model-v2-baseline",
                                     lambda o: o["data"].update({KEY: o["data"][KEY].replace('"v2"', '"v2" ', 1)}))
        result = _capture(tmp_path, kubeconfig, "v2")
        assert hit == [0] and result.exit_code != 0, result.output
        assert "ConfigMap ml/rec-model-v2-baseline" in result.output and "run the capture again" in result.output

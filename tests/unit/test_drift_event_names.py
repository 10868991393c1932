"""A drift Event's name is a DNS-1123 subdomain whatever the model's name (decision 530).

Triton model names are often no Kubernetes name (`densenet_onnx`, `Rec_Model`): the drift monitor named its Events
`<model>-drift-<random>`, the API server refused each one 422 Invalid (`drift.event_failed`), and no DriftDetected
reached the cluster. The Kubernetes API emulator stored them, so no test saw it; it now refuses them as the API
server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from canary.drift import monitor as M


@pytest.fixture
def core() -> Iterator[Any]:
    import kubernetes

    from canary.sandbox.kubeapi import KubeAPIServer

    api = KubeAPIServer()
    api.start()
    try:
        yield kubernetes.client.CoreV1Api(api.api_client())
    finally:
        api.stop()


@pytest.mark.parametrize("model,prefix", [("densenet_onnx", "densenet-onnx-drift-"),
                                          ("Rec_Model.V2", "rec-model-v2-drift-"), ("rec", "rec-drift-")])
def test_a_drift_event_of_a_model_named_as_triton_names_them_reaches_the_cluster(core: Any, model: str,
                                                                                 prefix: str) -> None:
    from structlog.testing import capture_logs

    from canary.drift.watch import DriftWatcher

    w = DriftWatcher([], client=None, window_s=3_600, core_api=core, config=M.MonitorConfig())
    state = M.MonitorState(model, "v1", phase=M.DRIFTING, episode=1)
    with capture_logs() as logs:
        w._alert(state, M.Alert("drift.started", f"{model} v1: dataset drift", {"at": 1_800_000_000.0}), "ml")
    assert not [e for e in logs if e["event"] == "drift.event_failed"], logs
    (event,) = core.list_namespaced_event("ml").items
    assert event.metadata.name.startswith(prefix) and event.reason == "DriftDetected"
    assert event.involved_object.name == model and event.message == f"{model} v1: dataset drift"


def test_the_emulator_refuses_an_event_whose_name_is_no_dns_subdomain(core: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    from canary.kube import event_body

    body = event_body(namespace="ml", involved={"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}, reason="R",
                      message="m", warning=False, component="t", generate_name="densenet_onnx-drift-")
    with pytest.raises(ApiException) as got:
        core.create_namespaced_event("ml", body)
    assert got.value.status == 422 and "RFC 1123 subdomain" in str(got.value.body)
    assert core.list_namespaced_event("ml").items == []

"""Test fixtures: a strict Kubernetes API emulator on 127.0.0.1 and a client for it.

The emulator itself lives in canary.sandbox.kubeapi so the sandbox can run
the same one; here it is only started and stopped around each test (it starts
in milliseconds, so every test gets a clean store).

Fixtures:
    kube_api      a started KubeAPIServer (empty store); seed with api.handler.put_object
    kube_client   an official kubernetes ApiClient pointed at kube_api
    istio_api     kube_api seeded with the shipped istio/ manifests (rec-model in ml)
    istio_cluster (a started emulator seeded with those manifests, a kubeconfig file for it): for CLI runs

fail_history_writes_once_ended(api, vs, times) makes the emulator refuse a history ConfigMap's writes once
the rollout its VirtualService records has ended.

PROGRESSING_RECORD is a rollout record (the VirtualService annotation's JSON) of rec-model v1 -> v2 at 75/25.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.sandbox.kubeapi import KubeAPIServer

ISTIO_DIR = Path(__file__).resolve().parents[2] / "istio"
PROGRESSING_RECORD = json.dumps({"model": "rec-model", "stable_version": "v1", "canary_version": "v2",
                                 "phase": "progressing", "weights": {"stable": 75, "canary": 25}, "step": 1,
                                 "started_at": 1.0, "step_started_at": 2.0})


def shipped_istio_objects() -> list[dict[str, Any]]:
    """Every VirtualService/DestinationRule in istio/*.yaml (fresh copies)."""
    out: list[dict[str, Any]] = []
    for path in sorted(ISTIO_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") in ("VirtualService", "DestinationRule"):
                out.append(copy.deepcopy(doc))
    return out


@pytest.fixture
def kube_api() -> Iterator[KubeAPIServer]:
    api = KubeAPIServer().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kube_client(kube_api: KubeAPIServer) -> Iterator[Any]:
    client = kube_api.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def istio_api(kube_api: KubeAPIServer) -> KubeAPIServer:
    for obj in shipped_istio_objects():
        kube_api.handler.put_object(obj)
    return kube_api


@pytest.fixture
def istio_cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    """A started emulator seeded with the shipped istio/ manifests, and a kubeconfig file pointing at it."""
    from tests import fleet

    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    try:
        yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    finally:
        api.stop()


def fail_history_writes_once_ended(api: KubeAPIServer, vs: str, times: int, code: int = 500) -> list[str]:
    """The first `times` writes of a ConfigMap (a rollout's history) answer `code` once the rollout record on
    VirtualService ml/`vs` is terminal (ended, promoted or rolled back). Returns the list the refused writes are
    added to ("PUT /api/v1/namespaces/ml/configmaps/..."), growing as they come."""
    from canary import rollout as rl
    from canary.sandbox import kubeapi

    real, failed = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method in ("PUT", "PATCH", "POST") and "/configmaps" in request.url.path and len(failed) < times:
            obj = api.handler.objects[("networking.istio.io", "virtualservices", "ml", vs)]
            rec = json.loads(obj["metadata"].get("annotations", {}).get("modelcanary.dev/rollout") or "{}")
            if rec.get("phase") in rl.TERMINAL:
                failed.append(f"{method} {request.url.path}")
                raise kubeapi.ApiError(code, {403: "Forbidden"}.get(code, "InternalError"), f"injected: HTTP {code}")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return failed

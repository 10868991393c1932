"""Test fixtures: a strict Kubernetes API emulator on 127.0.0.1 and a client for it.

The emulator itself lives in canary.sandbox.kubeapi so the sandbox can run
the same one; here it is only started and stopped around each test (it starts
in milliseconds, so every test gets a clean store).

Fixtures:
    kube_api      a started KubeAPIServer (empty store); seed with api.handler.put_object
    kube_client   an official kubernetes ApiClient pointed at kube_api
    istio_api     kube_api seeded with the shipped istio/ manifests (rec-model in ml)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.sandbox.kubeapi import KubeAPIServer

ISTIO_DIR = Path(__file__).resolve().parents[2] / "istio"


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

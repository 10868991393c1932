"""Test fixtures: real Triton servers (PyTriton, CPU) and HAProxy, on 127.0.0.1.

A Triton server takes ~4 s and ~200 MB to start, so the fleet is session
scoped, and each server starts the first time a test of the process asks for it:
most test processes (xdist workers) need only stable and canary, and starting the
three others in each of them cost CPU that six workers on two cores share
(decision 510). Tests that change a server's knobs restore them; the server that a
test kills (``triton_victim``) is used by no other test.

Fixtures:
    triton_fleet    a Fleet, fleet[name] a TritonServer started when first read, for: stable (v1.0.0),
                    canary (v2.1.0, same schema), bad_schema (score FP64), nan (answers NaN), victim (to kill)
    triton_stable / triton_canary / triton_bad_schema / triton_nan / triton_victim
    haproxy_pair    HAProxy in front of triton_stable and triton_canary (weights 100/0)
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.sandbox.model import Behaviour
from canary.sandbox.tritonserver import TritonServer

FLEET = {
    "stable": ("v1.0.0", Behaviour()),
    "canary": ("v2.1.0", Behaviour()),
    "bad_schema": ("v2.1.0", Behaviour(schema="bad")),
    "nan": ("v2.1.0", Behaviour(output_nan=True)),
    "victim": ("v2.1.0", Behaviour()),
}


def _need_pytriton() -> None:
    if importlib.util.find_spec("pytriton") is None:
        pytest.skip("nvidia-pytriton is not installed (pip install -e '.[sandbox]')")


class Fleet:
    """FLEET's servers by name (`fleet[name]` only: a mapping's iteration or `in` would start them all), each
    started (and waited ready) the first time it is read; `stop` ends those started. A server whose start
    failed is stopped and forgotten, so the next test to ask starts it again."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._started: dict[str, TritonServer] = {}

    def __getitem__(self, name: str) -> TritonServer:
        if name not in self._started:
            version, behaviour = FLEET[name]
            server = TritonServer(name, version, behaviour, workdir=self._base / name)
            try:
                server.start()
                server.wait_ready()
            except BaseException:
                server.terminate()
                server.stop()
                raise
            self._started[name] = server
        return self._started[name]

    def stop(self) -> None:
        for server in self._started.values():
            server.terminate()
        for server in self._started.values():
            server.stop()
        self._started.clear()


@pytest.fixture(scope="session")
def triton_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _need_pytriton()
    # Deliberately long: a server must not depend on how deep its work dir is
    # (PyTriton's IPC socket path once overflowed 107 bytes at pytest-109).
    fleet = Fleet(tmp_path_factory.mktemp("triton") / ("deep-workdir-" * 6))
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def triton_stable(triton_fleet: Fleet) -> TritonServer:
    return triton_fleet["stable"]


@pytest.fixture
def triton_canary(triton_fleet: Fleet) -> Iterator[TritonServer]:
    server = triton_fleet["canary"]
    yield server
    if server.behaviour != FLEET["canary"][1]:
        server.set_behaviour(FLEET["canary"][1])  # a test changed the knobs: put them back


@pytest.fixture
def triton_bad_schema(triton_fleet: Fleet) -> TritonServer:
    return triton_fleet["bad_schema"]


@pytest.fixture
def triton_nan(triton_fleet: Fleet) -> TritonServer:
    return triton_fleet["nan"]


@pytest.fixture
def triton_victim(triton_fleet: Fleet) -> TritonServer:
    return triton_fleet["victim"]


def haproxy_over(backends: dict[str, TritonServer], workdir: Path) -> Iterator[object]:
    """HAProxy over the servers' HTTP ports (a generator for a fixture to yield from); skips without it."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    from canary.sandbox.haproxy import HAProxy

    proxy = HAProxy({name: f"127.0.0.1:{server.http_port}" for name, server in backends.items()},
                    workdir=workdir).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def haproxy_pair(triton_stable: TritonServer, triton_canary: TritonServer, tmp_path: Path) -> Iterator[object]:
    yield from haproxy_over({"stable": triton_stable, "canary": triton_canary}, tmp_path / "haproxy")

"""`canary controller run --metrics-addr` that cannot be served (a newcomer's finding): a port already taken
(the default 127.0.0.1:8080 on a laptop), an address that is not one, a port out of range.

The address was read and bound after the informers, Leases and shard loops had started: the refusal was a
bug's "unexpected error (OSError: [Errno 98] Address already in use)" (exit 3, nothing naming the flag), and
with those threads still running the interpreter aborted at exit (SIGABRT, 134 from a shell). Now it is
bound first: exit 2, naming --metrics-addr, before anything is watched. The real CLI process against the
project's Kubernetes API emulator.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests import fleet

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    api = fleet.start_api(1)
    try:
        yield fleet.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", api.url)
    finally:
        api.stop()


@pytest.fixture()
def taken() -> Iterator[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def args(kubeconfig: Path, addr: str) -> list[str]:
    return ["controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml", "--prometheus-url", "http://127.0.0.1:9",
            "--metrics-addr", addr, "--log-format", "json"]


def run(kubeconfig: Path, addr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canary", *args(kubeconfig, addr)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})


def test_a_metrics_port_already_taken_is_exit_2_naming_the_flag(kubeconfig: Path, taken: str) -> None:
    r = run(kubeconfig, taken)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"--metrics-addr '{taken}': cannot listen on {taken}: Address already in use" in r.stderr
    assert "unexpected" not in r.stderr and "informer.relisted" not in r.stderr  # refused before anything started


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1:http", "127.0.0.1:99999", "127.0.0.1:-1"])
def test_a_metrics_address_that_is_not_one_is_exit_2_naming_the_flag(kubeconfig: Path, addr: str) -> None:
    """The real CLI in this process (tests/support/cli.py): what is refused, not the process's exit; the taken
    port's test above keeps a process, where threads left running aborted the interpreter."""
    from tests.support import cli

    r = cli.run(args(kubeconfig, addr), env={"KUBECONFIG": ""})
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"--metrics-addr {addr!r}: give host:port" in r.stderr and "unexpected" not in r.stderr

"""`canary.sandbox.tritonserver.spawn`: the servers the sandbox and the tests start get SIGTERM when their parent
dies and, on request, a process group of their own, set by util-linux's `setpriv` with no `preexec_fn` (Python in
the forked child let gRPC's atfork handlers run there: HAProxy aborted before its exec, rc -6, decision 330)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from canary.sandbox import tritonserver
from canary.sandbox.tritonserver import spawn
from tests.support.kube_tokens import dead

pytestmark = pytest.mark.integration


def test_spawn_passes_no_preexec_fn_when_setpriv_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shutil.which("setpriv"), "util-linux's setpriv (Debian: always installed)"
    seen: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(tritonserver.subprocess, "Popen", lambda cmd, **kw: seen.append((cmd, kw)))
    spawn(["haproxy", "-db"], new_group=True, stdin=subprocess.DEVNULL)
    spawn(["prometheus"], new_group=False)
    (cmd1, kw1), (cmd2, kw2) = seen
    assert "preexec_fn" not in kw1 and "preexec_fn" not in kw2
    assert cmd1[1:5] == ["--pdeathsig", "TERM", "--", "haproxy"] and kw1["process_group"] == 0
    assert cmd2[-1] == "prometheus" and "process_group" not in kw2


def test_a_spawned_server_is_the_pid_held_in_its_own_group_and_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent process spawns `sleep` and is SIGKILLed: the sleep gets SIGTERM (no orphan). The PID the parent
    held is the sleep itself (setpriv execs it), in a process group of its own."""
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, subprocess\n"
        "from canary.sandbox.tritonserver import spawn\n"
        f"p = spawn(['sleep', '600'], new_group=True, stdin=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n")], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.02)  # setpriv execs sleep: the same PID
        assert Path(f"/proc/{child}/comm").read_text().strip() == "sleep"
        assert os.getpgid(child) == child != os.getpgid(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not dead(child) and time.monotonic() < deadline:  # gone, or reparented and dead, not yet reaped
            time.sleep(0.05)
        assert dead(child), "the spawned server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

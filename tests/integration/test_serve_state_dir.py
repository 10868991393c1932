"""`canary serve --state-dir` that does not exist (decision 292).

`SessionStore` created the whole path (`mkdir -p`) without a word: a mistyped `--state-dir`, or a volume
mounted at another path, kept every revision's state in a tree on the container's own disk, lost at the next
restart, and nothing said the directory was new. Now only the last component is created, said by
`serve.started`'s `state_dir_created`; a path whose parent does not exist exits 2 naming it. The command runs as
a process on 127.0.0.1 (Prometheus: a port that refuses, as test_serve.py's command tests; it starts anyway).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_serve import POLICY, _event
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).with_name("canary"))


def _argv(policy: Path, state: Path) -> list[str]:
    return [EXE, "serve", "--policy", str(policy), "--state-dir", str(state), "--port", "0",
            "--prometheus-url", f"http://127.0.0.1:{refused_port()}", "--log-format", "json"]


def _started(policy: Path, state: Path) -> dict[str, object]:
    """`serve.started` of a `canary serve` on `state`, stopped with SIGTERM (exit 0) once it listens."""
    proc = subprocess.Popen(_argv(policy, state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        started = _event(proc, "serve.started")
        _event(proc, "serve.listening")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        return started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_state_dir_whose_parent_does_not_exist_exits_2_creating_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    state = tmp_path / "var" / "lib" / "canary-serve"  # /var/lib/canary-serv: a volume mounted elsewhere, a typo
    res = subprocess.run(_argv(policy, state), capture_output=True, text=True, timeout=60,  # a hang guard
                         env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"its parent {state.parent} does not exist" in res.stderr and "--state-dir" in res.stderr, res.stderr
    assert "serve.started" not in res.stderr and not (tmp_path / "var").exists()


def test_a_new_state_dir_is_created_and_serve_started_says_so(tmp_path: Path) -> None:
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    state = tmp_path / "s"
    first = _started(policy, state)
    assert first["state_dir_created"] is True and first["state_dir"] == str(state) and state.is_dir()
    again = _started(policy, state)  # a restart on the same directory: kept, not new
    assert again["state_dir_created"] is False

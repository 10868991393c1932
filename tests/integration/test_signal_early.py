"""A CI cancel that lands while `canary` is still loading its modules (decision 619).

`promote` puts its signal handlers on once the CLI is imported, most of a second after the process began; a SIGTERM
before that (Python's default action) killed it, exit 143, with no `-o json` document and nothing on stderr, and a
SIGINT printed a KeyboardInterrupt traceback. The signal is sent by the process itself at a fixed point of its start:
an audit hook (`sitecustomize`, on PYTHONPATH) sends it when `typer` is imported, so nothing here depends on timing.
No cluster or Prometheus is needed: the interrupt is reported before anything is read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

HOOK = """
import os, sys
def _send_once(event, args, sent=[]):
    if event == "import" and args[0] == "typer" and not sent:
        sent.append(1)
        os.kill(os.getpid(), int(os.environ["CANARY_TEST_EARLY_SIGNAL"]))
sys.addaudithook(_send_once)
"""


def _run(tmp_path: Path, sig: int, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "CANARY_TEST_EARLY_SIGNAL": str(int(sig)), "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    return subprocess.run([sys.executable, "-m", "canary", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_modules_load_is_promotes_exit_3_with_its_document(tmp_path: Path, sig: int) -> None:
    res = _run(tmp_path, sig, "promote", "rec-model", "--canary-version", "v2", "--policy", "policies/default.yaml",
               "-n", "ml", "--prometheus-url", "http://127.0.0.1:9", "-o", "json")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr[-2000:])
    doc = json.loads(res.stdout)
    name = signal.Signals(sig).name
    assert doc["exit_code"] == 3 and doc["phase"] is None, doc
    assert doc["error"] == f"interrupted ({name}) before the rollout began; nothing was read or written", doc
    assert "Traceback" not in res.stderr


def test_another_command_still_acts_on_it_as_before(tmp_path: Path) -> None:
    """Held, then sent again once the command is known: `canary policy validate` is killed by it, as it was."""
    res = _run(tmp_path, signal.SIGTERM, "policy", "validate", "policies/default.yaml")
    assert res.returncode == -signal.SIGTERM, (res.returncode, res.stdout, res.stderr[-2000:])


def test_a_signal_while_the_modules_load_is_said_at_once_by_a_via_controller_follower(tmp_path: Path) -> None:
    """As `promote` says it before its policy read: not after the policy read and the client's build (an exec
    credential plugin's seconds), where a missing kubeconfig was reported instead, exit 2 blaming the input of a
    job that was cancelled (review of 619)."""
    res = _run(tmp_path, signal.SIGTERM, "promote", "rec-model", "--canary-version", "v2", "--policy",
               "policies/default.yaml", "-n", "ml", "--via-controller", "-o", "json")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr[-2000:])
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 3 and doc["phase"] is None, doc
    assert doc["error"].startswith("interrupted (SIGTERM) while following"), doc

"""`promote --via-controller` cancelled by its pipeline (decision 116): a CI cancel sends SIGINT or
SIGTERM (SIGHUP when its session goes) to the follower. SIGINT reached click as KeyboardInterrupt,
"Aborted!" and exit 1 -- "rolled back" to the pipeline while the rollout went on in the controller --
and SIGTERM or SIGHUP killed it with no `-o json` document. Now an interrupted follower exits 3 (could
not complete: the CanaryRollout goes on in the controller) with its one document. The strict API
emulator, no controller: the request stays unclaimed, so the signal lands while the follower waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from canary import crd
from tests import fleet

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api() -> Iterator[Any]:
    server = fleet.start_api(1)
    yield server
    server.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_follower_exits_3_with_its_document(api: Any, tmp_path: Path, sig: int) -> None:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    proc = subprocess.Popen(
        [sys.executable, "-m", "canary", "promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
         "--kubeconfig", str(kubeconfig), "--via-controller", "-o", "json", "--timeout", "10m"],
        cwd=ROOT, env={**os.environ, "KUBECONFIG": ""}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is None:  # the follower created its request
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, (proc.returncode, out, err[-1500:])
    doc = json.loads(out)
    assert doc["exit_code"] == 3 and doc["phase"] is None and "goes on in the controller" in doc["error"]
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is not None  # left to the controller

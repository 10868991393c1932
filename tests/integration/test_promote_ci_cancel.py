"""A CI job cancelled mid-rollout as GitHub Actions cancels it: SIGINT, then SIGTERM (7.5 s later; here at once),
then SIGKILL; and the step re-run (decision 388). A guard of what held when probed: exit 3 with the `-o json`
document, stable 100% recorded `aborted` and named by the first signal (the second neither restarts the grace
nor renames it), and the re-run starts again and promotes.

The real CLI process, a real Prometheus (test_promote's backfilled history), the strict Kubernetes API emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from typing import Any

import pytest
import yaml

from tests.integration.test_promote import POLICY, ROOT, cluster, prometheus, promote, vs_state  # noqa: F401
from tests.integration.test_promote_pipeline import argv, env, until_split

pytestmark = pytest.mark.integration


def test_sigint_then_sigterm_is_exit_3_at_stable_100_and_the_re_run_promotes(cluster: Any, prometheus: Any) -> None:
    api, kubeconfig, policy = cluster
    slow = policy.with_name("slow.yaml")
    slow.write_text(yaml.safe_dump({**POLICY, "analysis": {**POLICY["analysis"], "interval": "10m"}}))
    proc = subprocess.Popen(argv(kubeconfig, slow, "v2", "-o", "json", "--log-format", "json",
                                 "--interrupt-grace", "8s"), cwd=ROOT, env=env(prometheus.url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_split(proc)
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait(timeout=120)
    assert proc.returncode == 3, (proc.returncode, out)
    doc = json.loads(out)
    assert doc["phase"] == "aborted" and doc["exit_code"] == 3 and doc["reason"] == "interrupted by SIGINT", doc
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "aborted"
    again = promote(kubeconfig, policy, prometheus.url, "v2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["phase"] == "promoted"

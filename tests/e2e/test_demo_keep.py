"""`canary demo --keep`: the sandbox kept running with no rollout, so a newcomer can try the README's
commands on it (a newcomer found that the demo tears everything down when it ends: promote, status,
rollback and the controller could not be tried without writing code). The real command, stopped by
SIGTERM as Ctrl-C stops it."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import kubernetes.client as kc
import pytest

from canary import crd
from canary.kube import api_client
from tests.support import cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def test_demo_keep_serves_the_readmes_commands_until_stopped(tmp_path: Path) -> None:
    # a few requests a second: what is tried here reads the API, not the load (the default 150 rps through HAProxy
    # and both Tritons was most of the kept sandbox's CPU while the test ran)
    proc = subprocess.Popen([sys.executable, "-m", "canary", "demo", "--keep", "--scenario", "good", "-o", "json",
                             "--rate", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        info = json.loads(lines.get(timeout=300))  # once the sandbox is up (a bound only a broken start reaches)
        env = {"KUBECONFIG": info["kubeconfig"], "CANARY_PROMETHEUS_URL": info["prometheus_url"]}

        def canary(*args: str) -> subprocess.CompletedProcess[str]:
            # the README's commands in this process (tests/support/cli.py): what they say against the kept
            # sandbox is the subject; the process under test is the demo's
            return cli.run(list(args), env=env)

        res = canary("status", info["model"], "-n", info["namespace"])
        assert res.returncode == 0 and "no rollout recorded" in res.stdout, (res.stdout, res.stderr[-500:])
        res = canary("rollback", info["model"], "-n", info["namespace"], "--reason", "trying it")
        assert res.returncode == 0 and "stable 100% already" in res.stdout, (res.stdout, res.stderr[-500:])
        assert info["promote_args"][:2] == ["promote", info["model"]] and info["triton_canary_url"]
        client = api_client(kubeconfig=info["kubeconfig"])
        try:  # the controller's kind is served: `canary controller run` can be tried on it
            listed = kc.CustomObjectsApi(client).list_namespaced_custom_object(crd.GROUP, crd.VERSION,
                                                                               info["namespace"], crd.PLURAL)
        finally:
            client.close()
        assert listed["items"] == []
        workdir = Path(info["kubeconfig"]).parent
        assert workdir.is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        assert not workdir.exists()  # its files are gone with its processes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

"""`canary controller run` as a process: /metrics, /healthz, /readyz and webhooks for a
promotion and a rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.support import cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]


EXIT_GUARD_S = 120  # how long a controller may take to exit after SIGTERM before the test says it never does


def _stopped(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then the controller's exit, waited for: EXIT_GUARD_S is a guard against one that never exits,
    not a time its shutdown must beat. It was 15 s, and a loaded host's shutdown (the lease released, the
    notifier's posts drained) took longer: the test failed in its teardown (decision 788). One that never exits
    is killed, and said."""
    proc.terminate()
    try:
        proc.wait(EXIT_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the controller did not exit within {EXIT_GUARD_S} s of SIGTERM") from None


class Receiver(BaseHTTPRequestHandler):
    got: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.got.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_metrics_health_and_webhooks(history_pool: Any, tmp_path: Path) -> None:
    prom = fleet.pooled_prometheus(history_pool, 6)  # read only: shared, stopped with the run
    api = fleet.start_api(2)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    base = f"http://127.0.0.1:{hook.server_address[1]}"
    log_path = tmp_path / "controller.log"
    log = log_path.open("w")
    # port 0: the kernel's pick, read from the controller's own `controller.serving` event (a port
    # chosen here first could be taken by another test in between)
    proc = subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom.url, "--tick", "0.3", "--metrics-addr", "127.0.0.1:0", "--log-format", "json",
         "--webhook", f"{base}/generic", "--slack-webhook", f"{base}/slack"],
        stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
    try:
        api.handler.put_object(fleet.rollout_object(0, "v2"))
        api.handler.put_object(fleet.rollout_object(1, "v3"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            sts = [(api.get(crd.GROUP, crd.PLURAL, "ml", f"r{i}") or {}).get("status") or {} for i in range(2)]
            if all(s.get("phase") in rl.TERMINAL for s in sts):
                break
            time.sleep(0.3)
        assert [s.get("phase") for s in sts] == [rl.PROMOTED, rl.ROLLED_BACK]
        [url] = [e["url"] for e in map(json.loads, filter(None, log_path.read_text().splitlines()))
                 if e.get("event") == "controller.serving"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), url
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        ready = requests.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 200 and "leader" in ready.text
        text = requests.get(f"{url}/metrics", timeout=5).text
        assert 'canary_rollbacks_total{model="m1",reason="check"} 1.0' in text
        assert 'canary_promotions_total{model="m0"} 1.0' in text
        assert 'canary_rollout_weight{arm="stable"' in text and "canary_tick_duration_seconds_count" in text
        # each webhook is queued as its rollout ends and posted by the notifier's own thread (with retries),
        # maybe after the status the loop above waited on: wait for all four, with a bound that matters only
        # when one never comes (it was 5 s, a wall-clock race on a loaded machine)
        deadline = time.monotonic() + 60
        while len(Receiver.got) < 4:
            assert time.monotonic() < deadline, f"webhooks received: {Receiver.got}"
            time.sleep(0.1)
        generic = {b["event"]: b for p, b in Receiver.got if p == "/generic"}
        assert generic["rollback"]["model"] == "m1" and "latency-p95" in generic["rollback"]["reason"]
        assert generic["promotion"]["model"] == "m0" and generic["rollback"]["evidence"]
        slack = [b for p, b in Receiver.got if p == "/slack"]
        assert any("rollback" in b["text"] for b in slack) and all("blocks" in b for b in slack)
        # where to look next, the CanaryRollout's VirtualService (decision 138)
        (back,) = [b for b in slack if "rollback" in b["text"]]
        assert back["text"].startswith(":rotating_light: rollback ml/m1 v3"), back["text"]
        assert back["blocks"][-1]["text"]["text"].startswith("Next: `canary status m1 -n ml"), back["blocks"]
    finally:
        _stopped(proc)
        log.close()
        hook.shutdown()
        api.stop()


def test_promote_via_controller_follows_the_rollout(history_pool: Any, tmp_path: Path) -> None:
    prom = fleet.pooled_prometheus(history_pool, 6)  # read only: shared, stopped with the run
    api = fleet.start_api(2)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(fleet.FAST_POLICY))
    env = {**os.environ, "KUBECONFIG": ""}
    ctl = subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom.url, "--tick", "0.3", "--metrics-addr", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        def promote(model: str, version: str) -> subprocess.CompletedProcess[str]:
            # in this process (tests/support/cli.py): what `--via-controller` says and exits with is the subject
            # here, not the process around it; the controller it follows is the real process above
            return cli.run(["promote", model, "--canary-version", version, "--policy", str(policy), "-n", "ml",
                            "--kubeconfig", str(kubeconfig), "--via-controller", "-o", "json", "--timeout", "90"],
                           env={"KUBECONFIG": ""})

        good, slow = promote("m0", "v2"), promote("m1", "v3")
        assert good.returncode == 0, good.stderr[-2000:]
        assert json.loads(good.stdout)["phase"] == rl.PROMOTED
        assert slow.returncode == 1 and json.loads(slow.stdout)["phase"] == rl.ROLLED_BACK
        assert "latency-p95" in json.loads(slow.stdout)["reason"]
        # the same request again (a pipeline's retry): its CanaryRollout already ran v2 and the route still
        # shows that promotion: nothing is started, and that end is the outcome (exit 0, as a plain promote
        # re-run reports it; decision 116). Once the route shows anything since, it is refused (exit 2:
        # tests/integration/test_follow_retry.py)
        again = promote("m0", "v2")
        assert again.returncode == 0, again.stderr[-800:]
        doc = json.loads(again.stdout)
        assert doc["outcome"] == rl.PROMOTED and doc["already_ended"] is True
    finally:
        _stopped(ctl)
        api.stop()

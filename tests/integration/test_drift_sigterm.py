"""`drift watch` stopped by SIGTERM (decision 134, an attacker's finding): a real Prometheus, a real
retraining webhook receiver on 127.0.0.1, and the watch in its own process.

SIGTERM (a pod deleted, the watcher's Deployment rolled, `docker stop`) killed the watch wherever it was,
without a word: here, while its retraining POST was being answered, so the answer was never stored; the
next watcher sent the POST again (a second retraining at a receiver that keeps no idempotency keys) and
delivered the episode's alerts again (a second DriftDetected, Slack message). Now the evaluation under way
is finished, acted on and stored, the pass stops before the next baseline (`drift.pass_cut`), "stopped",
exit 0, as Ctrl-C. The signal is sent by the receiver when the POST arrives, before it answers: whenever
it is handled, the answer comes after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from canary.drift.profile import capture
from canary.sandbox.promserver import PromServer, counter, histogram, history_window, openmetrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
H = 3600.0


def test_sigterm_finishes_the_evaluation_under_way_and_stops_before_the_next(prometheus_binary: str,
                                                                              tmp_path: Path) -> None:
    import pyarrow as pa

    rng = np.random.default_rng(5)
    prof = capture(pa.table({"x": rng.normal(0, 1, 5_000)}), model="rec", version="v1", file="t.parquet",
                   sha256="0" * 64)
    f = prof["features"]["x"]
    series: list[Any] = []
    paths = []
    for version in ("v1", "v2"):  # both drifted: every value beyond the last bound, mean 5 (was 0)
        lab = {"model_name": "rec", "model_version": version, "feature": "x", "role": "input"}
        series += histogram("model_feature_value", lab, f["bounds"], [0.0] * len(f["bounds"]) + [10_000 / H])
        series += counter("model_feature_value_sum_by_sign_total", {**lab, "sign": "positive"}, 5 * 10_000 / H)
        series += counter("model_feature_value_sum_by_sign_total", {**lab, "sign": "negative"}, 0.0)
        series += counter("model_feature_value_summed_total", lab, 10_000 / H)
        series += counter("model_feature_missing_total", lab, 0.0)
        path = tmp_path / f"{version}.profile.json"
        path.write_text(json.dumps({**prof, "version": version}))
        paths.append(path)
    start, end = history_window(before_s=2 * H, after_s=2 * H)
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=prometheus_binary)

    posts: list[dict[str, Any]] = []
    watch: list[subprocess.Popen[str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            os.kill(watch[0].pid, signal.SIGTERM)  # while the watch waits for this answer
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.start()
    state = tmp_path / "state.json"
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
        watch.append(subprocess.Popen(
            [sys.executable, "-m", "canary", "drift", "watch", "--baseline", str(paths[0]), "--baseline",
             str(paths[1]), "--prometheus-url", server.url, "--window", "30m", "--interval", "1h",
             "--enter-after", "1", "--quiet", "0", "--no-kube", "--state-file", str(state),
             "--retrain-webhook", f"http://127.0.0.1:{receiver.server_address[1]}/retrain"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        out, err = watch[0].communicate(timeout=120)
    finally:
        if watch and watch[0].poll() is None:
            watch[0].kill()
        receiver.shutdown()
        receiver.server_close()
        server.stop()
    assert watch[0].returncode == 0, err
    assert err.rstrip().endswith("stopped"), err
    assert len(posts) == 1 and posts[0]["version"] == "v1"
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events if e["event"].startswith("drift.")]
    assert names == ["drift.started", "drift.retrain_triggered", "drift.pass_cut"], names
    (cut,) = [e for e in events if e["event"] == "drift.pass_cut"]
    assert cut["reason"] == "stopping (SIGTERM)" and cut["left"] == ["default/rec/v2"] and cut["held"] == ""
    stored = json.loads(state.read_text())["rec/v1"]
    assert stored["trigger"] == "done" and stored["outbox"] == [] and stored["episode"] == 1

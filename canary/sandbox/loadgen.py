"""Client traffic for the sandbox: inference requests through HAProxy at a set rate.

A canary analysis needs users; this is them. Threads send KServe v2 requests
(binary tensor extension, so a missing feature can travel as NaN, which JSON
cannot carry) at a steady total rate, with a share of requests missing some
features, and count outcomes client-side: successes, failures, latency, and
which arm answered (HAProxy's ``X-Served-By`` header). The counts are an
independent witness to compare with what Prometheus and the controller saw.

Each thread keeps one keep-alive connection of the standard library's ``http.client``, as
``requests.Session`` did: ``requests`` spent 1.8-2.0 ms of CPU on each request against
0.5 ms here, and the client shares the host's cores with the servers it loads (the sandbox's
tests: docs/benchmarks/suite.md, thirtieth session). As urllib3 does, a connection the proxy
closed while idle is opened again before the next request, and any failed request drops its
connection, so a failure is counted once and the next request starts clean.
"""

from __future__ import annotations

import http.client
import json
import select
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from canary.sandbox.model import INPUT_NAME, MODEL_NAME, N_FEATURES, OUTPUT_NAME

log = structlog.get_logger(__name__)


def encode_request(features: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary-extension request body and its headers."""
    raw = np.ascontiguousarray(features, dtype=np.float32).tobytes()
    header = {
        "inputs": [{"name": INPUT_NAME, "shape": list(features.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": OUTPUT_NAME, "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head)),
                        "Content-Type": "application/octet-stream"}


@dataclass
class LoadStats:
    """Client-side counts; every field is updated under the lock."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_server: Counter[str] = field(default_factory=Counter)
    failed_by_server: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    started_at: float = 0.0
    stopped_at: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms)
        p50 = round(float(np.percentile(lat, 50)), 2) if lat.size else None
        p95 = round(float(np.percentile(lat, 95)), 2) if lat.size else None
        elapsed = ((self.stopped_at or time.monotonic()) - self.started_at) if self.started_at else 0.0
        return {
            "sent": self.sent, "ok": self.ok, "failed": self.failed,
            "error_rate": round(self.failed / self.sent, 4) if self.sent else None,
            "by_server": dict(self.by_server), "failed_by_server": dict(self.failed_by_server),
            "errors": dict(self.errors.most_common(5)),
            "p50_ms": p50, "p95_ms": p95,
            "seconds": round(elapsed, 1), "rate_rps": round(self.sent / elapsed, 1) if elapsed > 0 else None,
        }


class LoadGenerator:
    """Sends ``rate`` requests/s in total from ``threads`` threads until :meth:`stop`."""

    def __init__(self, url: str, *, rate: float = 30.0, threads: int = 4, missing_share: float = 0.05,
                 batch: int = 1, timeout: float = 5.0, seed: int = 0) -> None:
        if not 0 < rate < float("inf") or threads < 1:  # NaN passed `rate <= 0`: sleep(nan) ended each thread
            raise ValueError("rate must be > 0 and threads >= 1")
        self.url = f"{url.rstrip('/')}/v2/models/{MODEL_NAME}/infer"
        parts = urllib.parse.urlsplit(self.url)
        self._path, self._address = parts.path, (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.threads = threads
        self.missing_share = missing_share
        self.batch = batch
        self.timeout = timeout
        self.seed = seed
        self.stats = LoadStats()
        # added to every feature column of every request (the sandbox's "data-drift": the inputs move
        # away from the training data); settable while running
        self.input_shift = np.zeros(N_FEATURES, dtype=np.float32)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> "LoadGenerator":
        # each run its own stop and counts: a worker of the run before that `stop` gave up waiting for (a
        # request still out) ends after it, counted there, not in this run's (`Sandbox.rearm` starts again)
        self._stop = stop = threading.Event()
        self.stats = stats = LoadStats(started_at=time.monotonic())
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i, stop, stats), name=f"loadgen-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        log.info("loadgen.started", url=self.url, rate=self.rate, threads=self.threads)
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout + 1)
        self._workers.clear()
        with self._lock:
            self.stats.stopped_at = time.monotonic()
            summary = self.stats.summary()
        log.info("loadgen.stopped", **summary)
        return summary

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.summary()

    def features(self, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((self.batch, N_FEATURES)).astype(np.float32) + self.input_shift
        for row in range(self.batch):
            if rng.random() < self.missing_share:
                k = int(rng.integers(1, 4))
                x[row, rng.choice(N_FEATURES, size=k, replace=False)] = np.nan
        return x

    def _run(self, index: int, stop: threading.Event, stats: LoadStats) -> None:
        rng = np.random.default_rng(self.seed * 1000 + index)
        period = self.threads / self.rate
        conn = self._connection()
        next_at = time.monotonic() + period * index / self.threads  # stagger the threads
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            next_at = max(next_at + period, time.monotonic() - period)  # no burst after a stall
            self._one(conn, rng, stats)
        conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self._address, timeout=self.timeout)

    def _one(self, conn: http.client.HTTPConnection, rng: np.random.Generator, s: LoadStats) -> None:
        body, headers = encode_request(self.features(rng))
        started = time.perf_counter()
        server, error = "?", ""
        try:
            if conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
                conn.close()  # closed by the proxy while idle (readable with no request out: EOF): open a new one
            conn.request("POST", self._path, body=body, headers=headers)
            r = conn.getresponse()
            payload = r.read()
            server = r.getheader("X-Served-By", "?")
            if r.status != 200:
                error = f"HTTP {r.status}"
            else:
                scores = json.loads(payload)["outputs"][0]["data"]
                if len(scores) != self.batch:
                    error = "bad response shape"
        except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as exc:
            error = type(exc).__name__
            conn.close()  # its state is unknown: the next request opens a new one
        elapsed = (time.perf_counter() - started) * 1000.0
        with self._lock:
            s.sent += 1
            s.by_server[server] += 1
            if error:
                s.failed += 1
                s.failed_by_server[server] += 1
                s.errors[error] += 1
            else:
                s.ok += 1
                s.latencies_ms.append(elapsed)

"""`canary serve` attacked by an SRE who runs it behind Argo Rollouts and Flagger (docs/decisions.md 159):
the drain on SIGTERM (decision 154 d) and the clock that waits for Prometheus's time (154 i, `_LateAnchor`).

Real HTTP on 127.0.0.1 and a real backfilled Prometheus; time is a fake clock or a wall clock moved by a
monkeypatch (never a timed wait), and signals are delivered at a point the test controls (the process sends
one to itself from inside its start-up, or the test sends it once the look it holds is waiting), with only
outcomes asserted: what the caller got, the exit status, what the state directory holds.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import structlog.testing

from canary import serve as serve_module
from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, history_window, openmetrics
from canary.serve import NamedPolicy, Service
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, Clock, _model
from tests.support.blackhole import BlackholeProxy

pytestmark = pytest.mark.integration

# a window as long as a real analysis's: ten minutes, so that what a look covers is far from what it claims
LONG = {**POLICY, "analysis": {"interval": "600s", "look_every": "15s", "min_canary_requests": 100},
        "failure": {"max_failed_looks": 2, "no_data_deadline": "10m"}}


@pytest.fixture(scope="module")
def recent(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    """A Prometheus whose data end where a scraping one's do: at (about) its own now, one sample a second.
    (test_serve.py's reaches three hours ahead, so a look asked in Prometheus's future found data there.)"""
    start, end = history_window(before_s=3600, after_s=0, step=1.0)
    server = PromServer(history=openmetrics(_model("good", canary_error_rate=0.005), start=start, end=end, step=1.0),
                        binary=prometheus_binary)
    server.start()
    try:
        yield server, end
    finally:
        server.stop()


def _look(service: Service) -> tuple[int, dict[str, Any]]:
    q = {"namespace": "ml", "rollout": "good", "model": "good", "stableVersion": "v1", "canaryVersion": "v2"}
    return service.handle("GET", "/api/v1/argo/measure", urllib.parse.urlencode(q), b"", None)


# ---- (i) Prometheus answering only after the service started -----------------------------------------------


def test_a_look_after_prometheus_came_up_is_judged_on_its_clock_not_the_hosts(
        recent: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling restart of `canary serve` on a node whose clock is ahead (a VM resumed before NTP synced),
    its Istio sidecar not ready when the service asked Prometheus's time (503). The window was opened 50 s
    before by the last process, on Prometheus's clock. Prometheus answered by the first look, but the
    clock waited for its thread's next ask (every 30 s): the look was judged on the host's clock, 558 s
    ahead, its window 610 s long by that clock, and passed a 600 s interval on the 50 s of traffic there
    were (the rest of its range lay in Prometheus's future). A look now asks Prometheus's time first."""
    server, end = recent
    named = {"ml": NamedPolicy("ml", parse_policy(LONG), tmp_path)}
    state = tmp_path / "state"
    before = Clock(end - 50)  # the last process: on Prometheus's clock, its window opened 50 s before the end
    last = Service(policies=named, metrics=PrometheusProvider(server.url, retries=1, budget_s=2.0, backoff_s=0.05),
                   store=SessionStore(state), clock=before)
    assert _look(last)[1]["result"]["verdict"] == "inconclusive"
    real = time.time
    ahead = (end - 50 + 610) - real()  # the host's clock: 610 s after the window opened, by its own reckoning
    assert ahead > 100, "Prometheus's data end near its now"
    monkeypatch.setattr(time, "time", lambda: real() + ahead)
    asked = serve_module.prometheus_time

    def clock_thread_unanswered(metrics: Any, **kw: Any) -> float | None:
        # the thread's asks all land while Prometheus does not answer yet (its next one is 30 s away)
        return None if threading.current_thread().name == "canary-serve-clock" else asked(metrics, **kw)

    monkeypatch.setattr(serve_module, "prometheus_time", clock_thread_unanswered)
    hole = BlackholeProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])).start()
    hole.blackhole, hole.answer = True, 503  # the sidecar not ready: every call at start-up a 503
    try:
        with structlog.testing.capture_logs() as lines:
            restarted = Service(policies=named, store=SessionStore(state),
                                metrics=PrometheusProvider(hole.url, retries=1, budget_s=2.0, backoff_s=0.05))
            assert not [e for e in lines if e["event"] == "clock.skew"], "Prometheus's time not known yet"
            hole.blackhole = False  # the sidecar is ready: Prometheus answers
            status, doc = _look(restarted)
    finally:
        hole.stop()
    r = doc["result"]
    assert status == 200 and r["verdict"] == "inconclusive", r  # it was `pass`, on 50 s of a 600 s interval
    assert r["window_s"] < 600 and "of 600s" in r["reason"], r
    (skew,) = [e for e in lines if e["event"] == "clock.skew"]
    assert skew["prometheus_minus_local_s"] < -100, skew
    assert abs(restarted.clock() - real()) < 5, "the service's clock is Prometheus's from this look on"

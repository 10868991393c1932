"""`canary serve` across a step of its host's wall clock (decision 143 c).

The service timed its windows and evaluated its queries on the raw wall clock (`time.time`). A step
of that clock while it runs (NTP correcting a drifted node, a VM resumed or migrated) moved every open
window: 600 s forward and the next look measured 600 s more data, reaching back before its window
opened (into the window before it, already pooled: counted again as new evidence), asked 600 s ahead
of Prometheus. The runner's and the controller's clocks were already immune (`runner.SystemClock`:
the wall clock read once, then advanced by the monotonic clock); the service now uses it by default.

Real (backfilled) Prometheus from test_serve.py; the wall clock stepped by monkeypatching
`time.time` alone (the monotonic clock runs on), never a timed wait. (The old default, `time.time` bound
when serve.py was imported, is out of a monkeypatch's reach: the test checks which clock the service
runs on, then that its windows stay put across steps both ways.)
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.runner import SystemClock
from canary.serve import NamedPolicy, Service
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, prom  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _look(service: Service) -> dict[str, Any]:
    q = {"namespace": "ml", "rollout": "good", "model": "good", "stableVersion": "v1", "canaryVersion": "v2"}
    status, doc = service.handle("GET", "/api/v1/argo/measure", urllib.parse.urlencode(q), b"", None)
    assert status in (200, 503), doc
    return doc


def test_a_step_of_the_wall_clock_moves_no_window(prom: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = prom
    real = time.time
    step = {"s": 0.0}
    monkeypatch.setattr(time, "time", lambda: real() + step["s"])
    named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
    provider = PrometheusProvider(server.url, retries=2, budget_s=3.0, backoff_s=0.05)
    service = Service(policies=named, metrics=provider, store=SessionStore(tmp_path / "state"))  # `canary serve`'s
    # the default clock is the one that does not follow a step (the raw `time.time` did, bound as a default)
    assert isinstance(getattr(service.clock, "__self__", None), SystemClock), service.clock
    first = _look(service)
    assert first["result"]["window_s"] <= 16, first["result"]  # the first window: look_every at most
    step["s"] = 150.0  # NTP steps the host's clock 150 s forward (within the policy's quiet 180 s)
    second = _look(service)
    assert second["result"]["window_s"] <= 16, second["result"]  # seconds passed, not 150
    step["s"] = -900.0  # and back
    third = _look(service)
    assert third["result"]["window_s"] <= 16, third["result"]
    assert third["result"]["verdict"] != "fail", third["result"]


def test_a_host_clock_wrong_at_start_and_corrected_later_leaves_no_offset(prom: Any, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's clock 900 s ahead when `canary serve` starts (a VM resumed, NTP not yet synced), then
    stepped back by NTP. The monotonic clock kept the 900 s for the life of the process: every look was asked
    900 s ahead of Prometheus, over a window with no samples yet, and "could not measure: no series" a good
    canary until a restart (decision 145). The service's clock starts from Prometheus's `time()`, as the
    runner's does, and says the skew it found."""
    import structlog.testing

    server, _ = prom
    real = time.time
    step = {"s": 900.0}
    monkeypatch.setattr(time, "time", lambda: real() + step["s"])
    named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
    provider = PrometheusProvider(server.url, retries=2, budget_s=3.0, backoff_s=0.05)
    with structlog.testing.capture_logs() as logs:
        service = Service(policies=named, metrics=provider, store=SessionStore(tmp_path / "state"))
    skew = [e for e in logs if e["event"] == "clock.skew"]
    assert len(skew) == 1 and -905 < skew[0]["prometheus_minus_local_s"] < -895, skew
    step["s"] = 0.0  # NTP corrects the host
    assert abs(service.clock() - real()) < 5, service.clock() - real()  # it was 900 s ahead for ever
    assert _look(service)["result"]["window_s"] <= 16


@pytest.mark.parametrize("host_minus_real_s, moves", [(900.0, True), (-900.0, False)])
def test_a_prometheus_that_answers_only_after_start_up_still_anchors_a_host_clock_ahead(
        prom: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_minus_real_s: float, moves: bool) -> None:
    """Decision 154: Prometheus did not answer `time()` when the service started (an Istio sidecar not ready yet,
    both pods restarted together), so the service kept this host's clock for its life: 900 s ahead, every look
    was asked in Prometheus's future ("no series"), and a good canary failed at the deadline. It now asks again
    until Prometheus answers, and moves back to its clock; a host behind is kept (its looks lag, consistently;
    a jump forward would stretch open windows over data already judged), and both are said."""
    import structlog.testing

    from canary import serve as serve_module
    from tests.support.blackhole import BlackholeProxy

    server, _ = prom
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + host_minus_real_s)
    monkeypatch.setattr(serve_module, "REANCHOR_EVERY_S", 0.05, raising=False)
    hole = BlackholeProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])).start()
    hole.blackhole, hole.answer = True, 503  # Prometheus answers nothing useful at start-up
    try:
        named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
        provider = PrometheusProvider(hole.url, retries=1, budget_s=1.0, backoff_s=0.05)
        with structlog.testing.capture_logs() as logs:
            service = Service(policies=named, metrics=provider, store=SessionStore(tmp_path / "state"))
            assert abs(service.clock() - real() - host_minus_real_s) < 5, "the host's clock until Prometheus answers"
            hole.blackhole = False  # Prometheus is reachable now
            deadline = real() + 60
            while not any(e["event"] == "clock.skew" for e in logs) and real() < deadline:
                time.sleep(0.05)
        (skew,) = [e for e in logs if e["event"] == "clock.skew"]
        assert abs(skew["prometheus_minus_local_s"] + host_minus_real_s) < 5, skew
        if moves:
            assert abs(service.clock() - real()) < 5, service.clock() - real()
            assert _look(service)["result"]["window_s"] <= 16
        else:
            assert abs(service.clock() - real() - host_minus_real_s) < 5, "a host behind is kept"
    finally:
        hole.stop()


def test_a_stopped_service_stops_asking_a_prometheus_that_never_answered(tmp_path: Path, monkeypatch: Any) -> None:
    """A Service whose Prometheus never answered `time()` asks again on a thread every `REANCHOR_EVERY_S`. That
    thread outlived the service: a stopped `ServeServer` (or a Service an embedding process dropped) asked a dead
    Prometheus for the life of the process, a `metrics.query_failed check=clock` line a minute naming no rollout
    (one landed in an on-call test's logs in CI). `ServeServer.stop` now closes the service, and the thread ends."""
    import threading

    from canary import serve as serve_module
    from canary.serve_http import ServeServer
    from tests.support.blackhole import BlackholeProxy

    monkeypatch.setattr(serve_module, "REANCHOR_EVERY_S", 0.05, raising=False)
    hole = BlackholeProxy("127.0.0.1", 9).start()
    hole.blackhole, hole.answer = True, 503  # a Prometheus that never answers time()
    try:
        named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
        provider = PrometheusProvider(hole.url, retries=1, budget_s=0.2, backoff_s=0.01)
        before = set(threading.enumerate())
        service = Service(policies=named, metrics=provider, store=SessionStore(tmp_path / "state"))
        late = service._late
        assert late is not None and not late.anchored
        (asking,) = [t for t in set(threading.enumerate()) - before if t.name == "canary-serve-clock"]
        server = ServeServer(service).start()
        server.stop()
        asking.join(timeout=30)  # ends at its next wait (0.05 s) or when its ask in flight gives up (0.2 s)
        assert not asking.is_alive(), "the clock's thread still asks after the service stopped"
        assert late not in serve_module._LateAnchor.live
        assert abs(service.clock() - time.time()) < 5  # the host's clock still answers the calls
    finally:
        hole.stop()


def test_a_stopped_service_runs_no_late_prune_and_its_clock_asks_nothing_after_the_stop(
        prom: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Two things of a stopped service still ran after `ServeServer.stop`: the start-up prune waiting for
    Prometheus's time (decision 174's `when_settled`) ran when Prometheus answered a later `settle`, on a thread
    of its own, deleting files and logging while the process exited; and a `time()` ask in flight at the stop
    ended after it (a `metrics.query_failed check=clock` line after the stop). `close` now drops the waiting
    calls and waits for the ask in flight (decision 180)."""
    from canary import serve as serve_module
    from canary.serve_http import ServeServer
    from tests.support.blackhole import BlackholeProxy

    server, _ = prom
    monkeypatch.setattr(serve_module, "REANCHOR_EVERY_S", 0.05, raising=False)
    hole = BlackholeProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])).start()
    hole.blackhole, hole.answer = True, 503  # the clock's asks fail at once until the test is ready (asked again)
    try:
        named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
        # one try spans the ask's own 2 s (`_LateAnchor._ask`): the try held is the one in flight at the stop
        provider = PrometheusProvider(hole.url, retries=1, timeout_s=2.0, budget_s=2.0, backoff_s=0.01)
        service = Service(policies=named, metrics=provider, store=SessionStore(tmp_path / "state"))
        late = service._late
        assert late is not None
        ran: list[float] = []
        service.when_settled(ran.append)  # the start-up prune, waiting for Prometheus's time
        seen: dict[str, Any] = {}

        def stop_while_held(_line: bytes) -> None:
            """In the proxy's thread as it holds the clock's ask: the service stops while that ask is in flight.
            When the test's thread did it after waking on `holding`, a loaded machine let the ask end first
            (its 1 s): `_asking` was free before the stop, and the test failed or proved nothing."""
            try:
                seen["in_flight"] = late._asking.locked()
                ServeServer(service).start().stop()
                seen["after_stop"] = late._asking.locked()
            except BaseException as exc:  # noqa: BLE001 - asserted in the test's thread
                seen["error"] = exc

        hole.on_hold = stop_while_held
        hole.answer = None  # every request held from now on, never answered: the clock's next ask is in flight
        assert hole.holding.wait(30), "the clock's ask reached the proxy"
        assert "error" not in seen, seen
        assert seen["in_flight"], "the clock's ask was in flight at the stop"
        assert not seen["after_stop"], "close returned with the clock's ask still in flight"
        hole.blackhole = False  # Prometheus answers now
        assert late.settle(time.monotonic() + 10), "a look still settles the clock after the stop"
        assert late._running is None and ran == [], "a stopped service's prune ran when Prometheus answered"
        service.when_settled(ran.append)
        assert ran == [], "a call registered after the stop runs nothing"
    finally:
        hole.stop()

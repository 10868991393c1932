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

"""Decision 131 (c): a signal while promote checks things before its claim.

The metrics preflight asks Prometheus every query the rollout will run, each within its own retry budget.
On a Prometheus that accepts connections and never answers, a SIGTERM that came meanwhile waited out every
query (the signal only set `stop`); a CI job's SIGKILL then came first and the job said nothing. The
preflight now runs in a worker (`Runner._bounded`) and a signal ends it at once: exit 3, "interrupted ...
before the rollout began ...; nothing was written". A signal that came during any check before the claim
no longer lets the claim be written after it.

Real components: a TCP black hole in front of no Prometheus (tests/support/blackhole.py) for the real
Prometheus client, the Kubernetes API emulator with the real IstioRouter. The signal is set once a query is
held (an event the proxy sets), never after a guessed sleep.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from canary.errors import CanaryError
from canary.metrics.prometheus import PrometheusProvider
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import api, record, routes, runner  # noqa: F401 - the fixture
from tests.support.blackhole import BlackholeProxy

pytestmark = pytest.mark.integration


def test_a_signal_ends_a_preflight_waiting_on_a_hung_prometheus_with_nothing_written(api: Any) -> None:
    proxy = BlackholeProxy("127.0.0.1", 9).start()
    proxy.blackhole = True  # every query is accepted and held, never answered
    try:
        r = runner(api, "v2", FakeClock())
        # without the fix the preflight waits out its budget: 120 s, then MetricsUnavailable (not this error)
        r.metrics = PrometheusProvider(proxy.url, retries=1, timeout_s=120.0, budget_s=120.0)
        before = record(api)

        def sigterm_once_a_query_is_held() -> None:
            if proxy.holding.wait(60):
                r.interrupted_by = "SIGTERM"  # what `canary promote`'s handler does
                r.stop.set()
        threading.Thread(target=sigterm_once_a_query_is_held, daemon=True).start()
        with pytest.raises(CanaryError) as got:
            r.run()
    finally:
        proxy.stop()
    assert str(got.value) == ("interrupted (SIGTERM) before the rollout began, while the metrics preflight waited "
                              "on Prometheus; nothing was written and no traffic moved"), str(got.value)
    assert proxy.requests_held >= 1
    assert record(api) == before and routes(api) == [[("stable", 100), ("canary", 0)]]

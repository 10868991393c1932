"""SIGTERM landing while `promote` waits on each of its Kubernetes requests in turn, with the grace bound as promote
binds it: the route's write first (decisions 407-409, 417; reviewed in decision 418).

As test_signal_points.py lands a signal between writes, this lands one while the main thread waits on the k-th
HTTP request of the run, every k (reads, writes, the history ConfigMap, Events), before the emulator answers it and
after it applied it; promote's handler (cli.py `interrupted`: stop, the grace, `InFlight.signalled()`) is run
there, so a request that is not a write of the route is abandoned at once. What must hold at every point: the
interrupted run ends with the route at stable 100% and its record agreeing (`--on-interrupt pause`: paused and
recorded so), a bad v3 never promoted, and an error raised only before any claim, nothing left on the route.
Real Kubernetes API emulator and IstioRouter; metrics from the fake provider on a fake clock that sees the cluster's
weights (tests/support/killpoints.py)."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from canary import rollout as rl
from canary.errors import CanaryError
from canary.runner import Result
from tests import fleet
from tests.support.killpoints import cluster_state, run_signalled, signalled_promote

pytestmark = pytest.mark.integration


def promote(client: Any, version: str, k: int | None, when: str, seen: list[str], on_interrupt: str) -> Result:
    r, signal = signalled_promote(client, version, on_interrupt=on_interrupt)
    pool = client.rest_client.pool_manager
    send = pool.request

    def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return send(method, url, *args, **kw)
        seen.append(f"{method} {urlsplit(url).path}")
        if len(seen) == k and when == "before":
            signal()
        out = send(method, url, *args, **kw)
        if len(seen) == k and when == "after":
            signal()
        return out

    pool.request = request  # type: ignore[method-assign]
    return run_signalled(r)


@pytest.mark.parametrize("on_interrupt", ["rollback", "pause"])
def test_sigterm_while_waiting_on_every_request_ends_safe(on_interrupt: str) -> None:
    version = "v3"  # a bad canary: rolled back by its first looks; never promoted, whichever request the signal cuts
    api = fleet.start_api(1)
    client = api.api_client()
    requests: list[str] = []
    try:
        promote(client, version, None, "before", requests, on_interrupt)
    finally:
        client.close()
        api.stop()
    assert len(requests) >= 20, requests
    wrong = []
    for k in range(1, len(requests) + 1):
        for when in ("before", "after"):
            api = fleet.start_api(1)
            client = api.api_client()
            at = f"SIGTERM {when} request {k} ({requests[k - 1]})"
            try:
                try:
                    res = promote(client, version, k, when, [], on_interrupt)
                except CanaryError as exc:
                    vs = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(0))
                    if "modelcanary.dev/rollout" in ((vs or {}).get("metadata", {}).get("annotations") or {}):
                        weights, record, _, _ = cluster_state(api)
                        wrong.append(f"{at}: raised {exc}; left {weights} recorded {record.get('phase')}")
                    continue
                weights, record, _, _ = cluster_state(api)
                phase = res.state.phase
                if phase == rl.PAUSED and on_interrupt == "pause":
                    if record.get("phase") != rl.PAUSED:
                        wrong.append(f"{at}: paused, recorded {record.get('phase')}")
                elif weights != [100, 0] or record.get("phase") != phase or phase == rl.PROMOTED:
                    wrong.append(f"{at}: left {weights} recorded {record.get('phase')}, ended {phase} "
                                 f"exit {res.exit_code}: {res.state.reason[:200]}")
            finally:
                client.close()
                api.stop()
    assert not wrong, "\n".join(wrong)

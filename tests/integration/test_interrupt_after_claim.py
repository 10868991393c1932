"""A signal that lands while `promote` reads the route right after its claim landed ends the rollout it began
(decision 417).

Found (review of decision 407): the claim's write is followed, in the same call, by the canary subset's pointing,
which reads the DestinationRule first. A read of the route in flight at the signal is abandoned at once (decision
408: the interrupt reads again itself), but here no interrupt followed: the Runner had no rollout of its own yet,
so the abandoned read was said "interrupted (SIGTERM) before the rollout began ...; this promote moved no traffic",
and the claim was left on the route, pending, held by a process that had exited (RolloutBusy for every other
promote until its heartbeat went stale). Before decision 407 that read was answered and the interrupt wrote
`aborted`. Now the claim that landed is the rollout's, and the loop's interrupt ends it: aborted, exit 3.

Real Kubernetes API emulator and IstioRouter, bound as `promote` binds its client (`kube.bound_by` with the
route's paths, the Runner's stale writes and settle); the signal's handler is run, as promote's is, while the
main thread waits on the first DestinationRule read after the claim (a condition, not a time).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import tenacity

from canary import rollout as rl
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Runner
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import RPS, SLOWDOWN, LiveWeights, cluster_state, run_signalled, signalled_promote

pytestmark = pytest.mark.integration


def test_a_signal_during_the_read_after_the_claim_ends_the_rollout_it_began() -> None:
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        r, sigterm = signalled_promote(client, "v2")
        pool = client.rest_client.pool_manager
        send = pool.request
        claimed: list[str] = []

        def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
            main = threading.current_thread() is threading.main_thread()
            if main and method == "PUT" and "/virtualservices/" in url:
                claimed.append(url)
            elif main and claimed and len(claimed) == 1 and method == "GET" and "/destinationrules/" in url \
                    and not r.stop.is_set():
                sigterm()  # promote's handler while this read waits for its answer: raises, the read is abandoned
            return send(method, url, *args, **kw)

        pool.request = request  # type: ignore[method-assign]
        res = run_signalled(r)
        assert r.stop.is_set() and len(claimed) >= 1
        weights, record, _, _ = cluster_state(api)
        # before: GraceSpent "... before the rollout began ...", the claim left pending on the route
        assert res.state.phase == rl.ABORTED and res.exit_code == 3, res.state.reason
        assert weights == [100, 0] and record["phase"] == rl.ABORTED and "SIGTERM" in record["reason"], record
    finally:
        client.close()
        api.stop()


def test_a_failed_canary_subset_pointing_right_after_the_claim_ends_the_rollout_it_began() -> None:
    """The same window without a signal: the DestinationRule's write after the claim answered 500 each time. The
    claim was left pending on the route, said "this promote moved no traffic ...: running the same command again is
    safe" (a re-run elsewhere met RolloutBusy until its heartbeat went stale). Now the fail-safe ends it: aborted at
    stable 100%, exit 3."""
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="",
                        canary_version="v2")
        router = IstioRouter(client, wait=tenacity.wait_none())
        clock = FakeClock()
        metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: SLOWDOWN["v2"], rps=RPS)
        r = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics, clock=clock)
        api.fail_next(500, times=FAILS, methods=("PUT",), plural="destinationrules")
        res = r.run()
        weights, record, _, _ = cluster_state(api)
        assert res.state.phase == rl.ABORTED and res.exit_code == 3, res.state.reason
        assert weights == [100, 0] and record["phase"] == rl.ABORTED, record
        assert "destinationrules" in res.state.reason, res.state.reason
    finally:
        client.close()
        api.stop()


# the pointing's PUT and its retries all answered 500 (fewer: a retry lands, and it is promoted)
FAILS = 4


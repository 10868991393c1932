"""A deposed leader never writes: a write that keeps retrying (5xx, 429, slow answers) while the
lease runs out is fenced on EVERY attempt (none starts after the renew deadline) and each
attempt's timeout fits inside the lease, so no PUT reaches the API server once a standby may
take over (the lease's expiry). Real LeaderElector, IstioRouter and the strict Kubernetes API
emulator (which records when each write arrived). A PUT sent just before the renew deadline may
still arrive a little after it on a loaded machine: that is what the margin between the renew
deadline and the lease duration is for, so arrivals are judged against the expiry."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import tenacity

from canary.errors import NotLeader
from canary.fencing import FencedRouter
from canary.leader import LeaderElector
from canary.model import Target, Weights
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import Fault
from tests import fleet

pytestmark = pytest.mark.integration
TARGET = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")


def trial(api: Any, client: Any, seed: int, *, renew_deadline_s: float = 1.5) -> dict[str, Any]:
    """One write retried through a lease that lapses mid-way. Returns the PUTs that arrived before
    the renew deadline, in the margin up to the lease's expiry, and after it (must be 0)."""
    rng = random.Random(seed)
    elector = LeaderElector(client, namespace="ml", name=f"lease-{seed}", identity="a",
                            lease_duration_s=renew_deadline_s * 3, renew_deadline_s=renew_deadline_s,
                            retry_period_s=renew_deadline_s / 5)
    # a Lease released by its last holder: taken at once (an absent one only after a lease duration seen absent)
    api.handler.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": f"lease-{seed}", "namespace": "ml"}, "spec": {"holderIdentity": ""}})
    # acquired, and never renewed again: the lease lapses during the write. An acquisition is a GET and a PUT that
    # must both answer within the renew deadline, which a starved machine missed once in CI (seed 5, at the
    # suite's busiest end): asked again until it holds, as the controller's loop asks every retry period
    assert any(elector.try_acquire_or_renew() for _ in range(50))
    assert elector._sent is not None
    deadline = elector._sent + elector.renew_deadline_s
    expiry = elector._sent + elector.lease_duration_s  # from here a standby may lead
    router = IstioRouter(client, wait=tenacity.wait_random(0, 0.05), transient_attempts=1000,
                         request_timeout=rng.uniform(0.05, 0.3))
    fenced = FencedRouter(router, elector.is_leader, elector.lease_left)
    faults = []
    for _ in range(400):  # every PUT fails: 5xx, 429, or an answer slower than the client waits
        status = rng.choice([500, 503, 429, 0])
        faults.append(Fault(status=status, times=1, methods=frozenset({"PUT"}), plural="virtualservices",
                            delay=0.5 if status == 0 else 0.0))
    api.handler.faults[:] = faults
    started = time.monotonic()  # by time, not index: the emulator keeps only its last 1,000 arrivals
    try:
        # Refused once the lease runs out, as a rule; on a starved machine a slow answer (status 0) may
        # still be read before the client's timeout fires, and the write then succeeded in time: what
        # must never happen is a PUT arriving after the expiry, asserted from the arrivals below.
        fenced.set_weights(TARGET, Weights(50, 50), state="{}")
    except NotLeader:
        pass
    finally:
        api.handler.faults.clear()
    puts = [t for t, method, path in list(api.handler.arrivals)
            if t >= started and method == "PUT" and "virtualservices" in path]
    return {"before": sum(t < deadline for t in puts), "in_margin": sum(deadline <= t < expiry for t in puts),
            "after": sum(t >= expiry for t in puts)}


def test_no_write_arrives_once_the_lease_expired_however_the_retries_fall() -> None:
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        results = [trial(api, client, seed) for seed in range(6)]
    finally:
        client.close()
        api.stop()
    assert all(r["after"] == 0 for r in results), results
    # the writes were really attempted (else "none after" holds vacuously). A trial whose lease is
    # already too short to write in may send none: the fence refuses before the first attempt, as it
    # should; on a starved machine several may (0.5 s deadlines with one PUT a trial required failed CI
    # under load: 1 PUT in 6 trials). At least one PUT in all, with 1.5 s a lease to send it in.
    assert sum(r["before"] + r["in_margin"] for r in results) >= 1, results

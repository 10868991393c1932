"""Leader election against the strict Kubernetes API emulator, through the official client, in real time.

Durations are the production ones scaled by 0.1 (lease 1.5 s, renew deadline
1.0 s, retry 0.2 s). A sampler thread reads both replicas' is_leader() every
few milliseconds and records each transition with its monotonic time, so the
order of "old leader stops" and "new leader starts" is asserted, not assumed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.leader import LeaderElector
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration

NS = "ml"
LEASE, DEADLINE, RETRY = 1.5, 1.0, 0.2
GROUP, PLURAL = "coordination.k8s.io", "leases"


class Sampler:
    """Polls is_leader() of every elector; keeps transitions and any instant with two leaders."""

    def __init__(self, electors: dict[str, LeaderElector], period: float = 0.002) -> None:
        self.electors, self.period = electors, period
        self.state = {n: False for n in electors}
        self.transitions: list[tuple[float, str, bool]] = []
        self.overlaps: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = {n: e.is_leader() for n, e in self.electors.items()}
            t = time.monotonic()
            if sum(now.values()) > 1:
                self.overlaps.append(t)
            for n, leading in now.items():
                if leading != self.state[n]:
                    self.state[n] = leading
                    self.transitions.append((t, n, leading))
            self._stop.wait(self.period)

    def first(self, name: str, leading: bool, after: float = 0.0) -> float:
        return next(t for t, n, v in self.transitions if n == name and v == leading and t >= after)


def wait_for(cond: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.002)
    raise AssertionError(f"condition not met within {timeout} s")


class Replica:
    """One elector with its own client and its own run() thread, which can be 'killed' (stops renewing)."""

    def __init__(self, api: KubeAPIServer, identity: str) -> None:
        self.client = api.api_client()
        self.elector = LeaderElector(self.client, namespace=NS, identity=identity, lease_duration_s=LEASE,
                                     renew_deadline_s=DEADLINE, retry_period_s=RETRY)
        self.changes: list[tuple[float, bool]] = []
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> "Replica":
        def run() -> None:
            self.elector.run(self.stop, lambda leading: self.changes.append((time.monotonic(), leading)))
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def kill(self) -> float:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(2)
        return time.monotonic()

    def close(self) -> None:
        if self.thread is not None and not self.stop.is_set():
            self.kill()
        self.client.close()


@pytest.fixture
def replicas(kube_api: KubeAPIServer) -> Iterator[Callable[[str], Replica]]:
    made: list[Replica] = []

    def make(identity: str) -> Replica:
        made.append(Replica(kube_api, identity))
        return made[-1]

    yield make
    for r in made:
        r.close()


def lease(api: KubeAPIServer) -> dict[str, Any]:
    obj = api.get(GROUP, PLURAL, NS, "canary-controller")
    assert obj is not None
    return obj


def clear_faults(api: KubeAPIServer) -> None:
    # The emulator has fail_next/delay_next but no way to end an open-ended fault early.
    with api.handler.lock:
        api.handler.faults.clear()


def test_two_replicas_one_leader(kube_api, replicas):
    a, b = replicas("a").start(), replicas("b").start()
    with Sampler({"a": a.elector, "b": b.elector}) as s:
        wait_for(lambda: a.elector.is_leader() or b.elector.is_leader(), 2)
        time.sleep(2.5)  # longer than a lease: the leader keeps it, the standby never takes it
    assert s.overlaps == []
    leader = "a" if a.elector.is_leader() else "b"
    assert [(n, v) for _, n, v in s.transitions] == [(leader, True)]
    spec = lease(kube_api)["spec"]
    assert spec["holderIdentity"] == leader and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 2  # ceil(1.5); the exact 1.5 is in the annotation
    writes = [w for w in kube_api.writes if "/leases" in w[1]]
    assert writes[0][2] == 201 and all(code in (200, 201, 409) for _, _, code in writes)


def test_killed_leader_is_replaced_after_a_lease_duration_and_stops_first(kube_api, replicas):
    a = replicas("a").start()
    wait_for(a.elector.is_leader, 2)
    b = replicas("b").start()
    with Sampler({"a": a.elector, "b": b.elector}) as s:
        time.sleep(1.0)
        assert a.elector.is_leader() and not b.elector.is_leader()
        killed = a.kill()  # no more renewals, no release: a crashed or a partitioned replica
        wait_for(b.elector.is_leader, 4)
        time.sleep(0.1)
    a_stopped, b_started = s.first("a", False), s.first("b", True)
    assert s.overlaps == []
    assert a_stopped < b_started                              # the deposed leader stops first ...
    assert b_started - a_stopped >= LEASE - DEADLINE - 0.1    # ... by about lease - deadline
    assert a_stopped - killed <= DEADLINE + 0.05              # fenced by its own clock, nobody told it
    assert LEASE - RETRY - 0.1 <= b_started - killed <= LEASE + 3 * RETRY + 0.5
    assert b.changes and b.changes[0][1] is True and b.changes[0][0] >= a_stopped
    assert b.elector.fence_token() == 1 and lease(kube_api)["spec"]["leaseTransitions"] == 1


def test_api_errors_fence_the_leader_by_the_renew_deadline_and_it_comes_back(kube_api, replicas):
    a = replicas("a")
    with capture_logs() as logs:
        a.start()
        wait_for(a.elector.is_leader, 2)
        time.sleep(0.5)
        kube_api.fail_next(500, times=10**6, methods=("GET", "PUT", "POST"), plural=PLURAL)
        broken = time.monotonic()
        lost = wait_for(lambda: not a.elector.is_leader(), DEADLINE + 0.5)
        assert lost - broken <= DEADLINE + 0.05  # the last good renewal was sent before `broken`
        assert lost - broken >= DEADLINE - RETRY - 0.1
        time.sleep(0.3)
        clear_faults(kube_api)
        healed = time.monotonic()
        back = wait_for(a.elector.is_leader, 2)
    assert back - healed <= 2 * RETRY + 0.2
    assert [v for _, v in a.changes] == [True, False, True]
    assert a.elector.fence_token() == 0  # nobody held the lease in between: the same term goes on
    events = [e["event"] for e in logs]
    assert "leader.renew_failed" in events
    assert events.index("leader.acquired") < events.index("leader.lost") < len(events) - events[::-1].index(
        "leader.acquired") - 1
    failed = next(e for e in logs if e["event"] == "leader.renew_failed")
    assert failed["error_type"] == "KubeUnavailable" and "500" in failed["error"]


def test_a_stalled_api_fences_the_leader_too(kube_api, replicas):
    a = replicas("a").start()
    wait_for(a.elector.is_leader, 2)
    time.sleep(0.3)
    # Every request now hangs for longer than the client's timeout: no answers, no errors from the server.
    kube_api.delay_next(0.8, times=10**6, methods=("GET", "PUT", "POST"), plural=PLURAL)
    stalled = time.monotonic()
    lost = wait_for(lambda: not a.elector.is_leader(), DEADLINE + 0.5)
    assert lost - stalled <= DEADLINE + 0.05
    clear_faults(kube_api)
    wait_for(a.elector.is_leader, 3)


def test_release_hands_over_at_once(kube_api, replicas):
    a = replicas("a").start()
    wait_for(a.elector.is_leader, 2)
    b = replicas("b").start()
    with Sampler({"a": a.elector, "b": b.elector}) as s:
        time.sleep(0.6)
        a.kill()
        released = time.monotonic()
        a.elector.release()
        assert not a.elector.is_leader()
        wait_for(b.elector.is_leader, LEASE)
        time.sleep(0.1)  # let the sampler see it too
    assert s.overlaps == []
    assert s.first("b", True) - released <= 1.2 * RETRY + 0.15  # one standby poll, not a lease duration
    assert s.first("a", False) <= released + 0.01
    assert lease(kube_api)["spec"]["holderIdentity"] == "b" and b.elector.fence_token() == 1


def test_candidates_racing_for_a_new_lease_elect_one(kube_api):
    clients = [kube_api.api_client() for _ in range(6)]
    try:
        electors = [LeaderElector(c, namespace=NS, identity=f"r{i}", lease_duration_s=LEASE,
                                  renew_deadline_s=DEADLINE, retry_period_s=RETRY) for i, c in enumerate(clients)]
        go = threading.Barrier(len(electors))
        results: list[bool] = [False] * len(electors)

        def attempt(i: int) -> None:
            go.wait()
            results[i] = electors[i].try_acquire_or_renew()

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(electors))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert sum(results) == 1
        assert lease(kube_api)["spec"]["holderIdentity"] == f"r{results.index(True)}"
    finally:
        for c in clients:
            c.close()

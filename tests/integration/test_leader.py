"""Leader election against the strict Kubernetes API emulator, through the official client, on a
simulated clock.

Durations are the production ones scaled by 0.1 (lease 1.5 s, renew deadline 1.0 s, retry
0.2 s). Every elector reads one `SimClock`; `Sim` steps the clock in 10 ms ticks and runs each
replica's `try_acquire_or_renew()` when its retry period is due, exactly as `run()` schedules it
(standbys without the jitter). At every tick it records each replica's is_leader() and any
instant with two leaders. The Lease, the writes and the faults are the emulator's, over HTTP; only
time is simulated, so the bounds asserted are exact (to one tick) and hold on any machine load.
The `run()` loop itself is covered by one threaded test that only waits for conditions.
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
TICK = 0.01
GROUP, PLURAL = "coordination.k8s.io", "leases"


class SimClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replica:
    """One elector with its own client; `alive` False stops its attempts (a crash or a partition)."""

    def __init__(self, api: KubeAPIServer, identity: str, clock: SimClock, offset: float) -> None:
        self.name = identity
        self.client = api.api_client()
        self.elector = LeaderElector(self.client, namespace=NS, identity=identity, lease_duration_s=LEASE,
                                     renew_deadline_s=DEADLINE, retry_period_s=RETRY, clock=clock)
        self.next_try = clock.now + offset
        self.alive = True
        self.attempts: list[tuple[float, bool]] = []
        self.renewed: list[tuple[float, float | None]] = []  # (attempt start, the elector's last good write then)

    def close(self) -> None:
        self.client.close()


class Sim:
    def __init__(self, api: KubeAPIServer) -> None:
        self.api, self.clock = api, SimClock()
        self.replicas: dict[str, Replica] = {}
        self.state: dict[str, bool] = {}
        self.transitions: list[tuple[float, str, bool]] = []
        self.overlaps: list[float] = []

    def add(self, name: str, offset: float = 0.0) -> Replica:
        r = self.replicas[name] = Replica(self.api, name, self.clock, offset)
        self.state[name] = False
        return r

    def sample(self) -> None:
        now = {n: r.elector.is_leader() for n, r in self.replicas.items()}
        if sum(now.values()) > 1:
            self.overlaps.append(self.clock.now)
        for n, leading in now.items():
            if leading != self.state[n]:
                self.state[n] = leading
                self.transitions.append((self.clock.now, n, leading))

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> float:
        """Advance `seconds` (or until `until()`), attempting for each live replica when due."""
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            for r in self.replicas.values():
                if r.alive and self.clock.now >= r.next_try - 1e-9:
                    started = self.clock.now
                    r.attempts.append((started, r.elector.try_acquire_or_renew()))
                    r.renewed.append((started, r.elector._sent))
                    r.next_try = started + RETRY
            self.sample()
            if until is not None and until():
                return self.clock.now
            self.clock.now = round(self.clock.now + TICK, 6)
        if until is not None:
            raise AssertionError(f"condition not met within {seconds} simulated s")
        return self.clock.now

    def first(self, name: str, leading: bool, after: float = 0.0) -> float:
        return next(t for t, n, v in self.transitions if n == name and v == leading and t >= after)


@pytest.fixture
def sim(kube_api: KubeAPIServer) -> Iterator[Sim]:
    s = Sim(kube_api)
    yield s
    for r in s.replicas.values():
        r.close()


def lease(api: KubeAPIServer) -> dict[str, Any]:
    obj = api.get(GROUP, PLURAL, NS, "canary-controller")
    assert obj is not None
    return obj


def clear_faults(api: KubeAPIServer) -> None:
    # The emulator has fail_next/delay_next but no way to end an open-ended fault early.
    with api.handler.lock:
        api.handler.faults.clear()


def last_renewal(r: Replica, before: float = float("inf")) -> float:
    """When the last successful write among the attempts before `before` was sent (the elector's own
    record: an attempt whose request timed out on a loaded machine renewed nothing)."""
    return max(sent for t, sent in r.renewed if t < before and sent is not None)


def test_two_replicas_one_leader(kube_api, sim):
    sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 2.5)  # the absent Lease is created a lease duration after it was seen absent; then longer
    # than a lease: the leader keeps it, the standby never takes it
    assert sim.overlaps == []
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]
    spec = lease(kube_api)["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 2  # ceil(1.5); the exact 1.5 is in the annotation
    writes = [w for w in kube_api.writes if "/leases" in w[1]]
    assert writes[0][2] == 201 and all(code in (200, 201, 409) for _, _, code in writes)


def test_killed_leader_is_replaced_after_a_lease_duration_and_stops_first(kube_api, sim):
    a, b = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    a.alive = False  # no more renewals, no release: a crashed or a partitioned replica
    killed = sim.clock.now
    sim.run(LEASE + 3 * RETRY, until=b.elector.is_leader)
    sim.run(0.1)
    a_stopped, b_started = sim.first("a", False), sim.first("b", True)
    assert sim.overlaps == []
    # the deposed leader stops by its own clock at its renew deadline, nobody told it
    assert a_stopped == pytest.approx(last_renewal(a) + DEADLINE, abs=TICK + 1e-9)
    assert a_stopped - killed <= DEADLINE + TICK
    # the standby waits a lease duration from when it first saw a's last record, and no longer than a retry more
    seen = min(t for t, _ in b.attempts if t >= last_renewal(a))
    assert seen + LEASE - 1e-9 <= b_started <= seen + LEASE + RETRY + TICK
    assert b_started - a_stopped >= LEASE - DEADLINE - TICK  # the old leader stopped first, with a margin
    assert b.elector.fence_token() == 1 and lease(kube_api)["spec"]["leaseTransitions"] == 1


def test_api_errors_fence_the_leader_by_the_renew_deadline_and_it_comes_back(kube_api, sim):
    a = sim.add("a")
    with capture_logs() as logs:
        sim.run(LEASE + 0.5)
        assert a.elector.is_leader()
        kube_api.fail_next(500, times=10**6, methods=("GET", "PUT", "POST"), plural=PLURAL)
        broken = sim.clock.now
        lost = sim.run(DEADLINE + 0.5, until=lambda: not a.elector.is_leader())
        assert lost == pytest.approx(last_renewal(a, broken) + DEADLINE, abs=TICK + 1e-9)  # the last good renewal
        assert lost - broken <= DEADLINE + TICK
        sim.run(0.3)
        clear_faults(kube_api)
        healed = sim.clock.now
        back = sim.run(2, until=a.elector.is_leader)
    assert back - healed <= RETRY + TICK  # the next attempt
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True), ("a", False), ("a", True)]
    assert a.elector.fence_token() == 0  # nobody held the lease in between: the same term goes on
    events = [e["event"] for e in logs]
    assert "leader.renew_failed" in events
    assert events.index("leader.acquired") < events.index("leader.lost") < len(events) - events[::-1].index(
        "leader.acquired") - 1
    failed = next(e for e in logs if e["event"] == "leader.renew_failed")
    assert failed["error_type"] == "KubeUnavailable" and "500" in failed["error"]


def test_a_stalled_api_fences_the_leader_too(kube_api, sim):
    """Every request hangs past the client's timeout (a real 0.8 s against 0.5 s): no answers, no
    errors from the server. The simulated clock runs on; the leader lapses at its deadline."""
    a = sim.add("a")
    sim.run(LEASE + 0.3)
    kube_api.delay_next(0.8, times=10**6, methods=("GET", "PUT", "POST"), plural=PLURAL)
    stalled = sim.clock.now
    lost = sim.run(DEADLINE + 0.5, until=lambda: not a.elector.is_leader())
    assert lost == pytest.approx(last_renewal(a, stalled) + DEADLINE, abs=TICK + 1e-9)
    assert lost - stalled <= DEADLINE + TICK
    clear_faults(kube_api)
    sim.run(3, until=a.elector.is_leader)


def test_release_hands_over_at_once(kube_api, sim):
    a, b = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    a.alive = False
    released = sim.clock.now
    a.elector.release()
    assert not a.elector.is_leader()  # fenced before the Lease says nobody holds it
    started = sim.run(LEASE, until=b.elector.is_leader)
    assert sim.overlaps == []
    assert started - released <= RETRY + TICK  # b's next attempt, not a lease duration
    assert lease(kube_api)["spec"]["holderIdentity"] == "b" and b.elector.fence_token() == 1


def test_the_run_loop_reports_changes_and_a_stop_leaves_the_lease_to_lapse(kube_api):
    """The threaded loop on the real clock: only conditions are awaited (generous bounds), no timing asserted."""
    client = kube_api.api_client()
    elector = LeaderElector(client, namespace=NS, identity="solo", lease_duration_s=LEASE,
                            renew_deadline_s=DEADLINE, retry_period_s=RETRY)
    changes: list[bool] = []
    stop = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stop, changes.append), daemon=True)
    thread.start()
    try:
        _wait(lambda: changes == [True], 30)
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        _wait(lambda: not elector.is_leader(), 30)  # lapses by itself at the renew deadline
        assert lease(kube_api)["spec"]["holderIdentity"] == "solo"  # a stop does not release
    finally:
        stop.set()
        client.close()


def _wait(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def test_candidates_racing_for_a_new_lease_elect_one(kube_api):
    clients = [kube_api.api_client() for _ in range(6)]
    clock = SimClock()
    try:
        electors = [LeaderElector(c, namespace=NS, identity=f"r{i}", lease_duration_s=LEASE, clock=clock,
                                  renew_deadline_s=DEADLINE, retry_period_s=RETRY) for i, c in enumerate(clients)]
        assert not any(e.try_acquire_or_renew() for e in electors)  # each sees it absent ...
        clock.now += LEASE  # ... for a lease duration: then all try to create it at once
        go = threading.Barrier(len(electors))
        results: list[bool] = [False] * len(electors)

        def attempt(i: int) -> None:
            go.wait()
            results[i] = electors[i].try_acquire_or_renew()

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(electors))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)  # each finished its attempt (5 s: a slow one on a loaded machine counted as lost)
        assert not any(t.is_alive() for t in threads)
        assert sum(results) == 1
        assert lease(kube_api)["spec"]["holderIdentity"] == f"r{results.index(True)}"
    finally:
        for c in clients:
            c.close()


def test_a_lease_deleted_by_hand_under_the_leader_gives_no_second_leader(kube_api, sim):
    """`kubectl delete lease canary-controller` while a leads and b stands by. b created the absent Lease at its
    next attempt and led beside a until a's next renewal found b's Lease (two writers, up to a retry period). Now
    b waits a lease duration from seeing it absent; a's next renewal finds it gone and creates it again in its
    own term (`leader.lease_recreated`), and leads on."""
    a, _ = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    assert a.elector.is_leader()
    with kube_api.handler.lock:  # a DELETE as kubectl sends it: gone, no tombstone
        key = (GROUP, PLURAL, NS, "canary-controller")
        kube_api.handler._delete(key, kube_api.handler.objects[key])
    with capture_logs() as logs:
        sim.run(3 * LEASE)
    assert sim.overlaps == []
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]  # a never stopped, b never led
    spec = lease(kube_api)["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0 and a.elector.fence_token() == 0
    said = [(e["event"], e["identity"]) for e in logs if e["event"].startswith("leader.lease")]
    assert ("leader.lease_recreated", "a") in said and set(said) <= {("leader.lease_recreated", "a"),
                                                                    ("leader.lease_absent", "b")}
    assert not [e for e in logs if e["event"] == "leader.renew_failed"]  # a 404 is no failure: created again


def test_a_lease_deleted_by_hand_after_its_leader_died_is_taken_a_lease_duration_later(kube_api, sim):
    a, b = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    a.alive = False
    with kube_api.handler.lock:
        key = (GROUP, PLURAL, NS, "canary-controller")
        kube_api.handler._delete(key, kube_api.handler.objects[key])
    deleted = sim.clock.now
    with capture_logs() as logs:
        started = sim.run(LEASE + 3 * RETRY, until=b.elector.is_leader)
    assert sim.overlaps == []
    assert LEASE - 1e-9 <= started - deleted <= LEASE + 2 * RETRY + TICK
    assert b.elector.fence_token() == 1 and lease(kube_api)["spec"]["leaseTransitions"] == 1  # tokens grow
    absent = [e for e in logs if e["event"] == "leader.lease_absent"]
    assert len(absent) == 1 and absent[0]["identity"] == "b"


def test_two_replicas_started_at_once_with_one_identity_never_both_lead(kube_api, sim):
    """Both replicas run with `--identity canary`: each took the Lease held under its own name as its own, in a
    new term at every try, and both led (2.85 of 3 simulated s, 29 terms). Now one leads; the other waits."""
    first = sim.add("a")
    twin = Replica(kube_api, first.name, sim.clock, RETRY / 2)  # the same identity, its own client
    sim.replicas["twin"], sim.state["twin"] = twin, False
    sim.run(LEASE + 3.0)
    assert sim.overlaps == []
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]
    assert lease(kube_api)["spec"]["leaseTransitions"] == 0  # one term


def test_a_lease_request_refused_by_rbac_is_said_once_at_warning_not_at_debug(kube_api, sim):
    """The Role lacks `leases` (a namespace or verb missed): every attempt of both replicas gets 403, nobody leads,
    and nothing was said above debug (`leader.attempt_failed`) while every rollout waited. Now each replica says
    `leader.refused` once, naming RBAC; once the Role is mended one leads."""
    sim.add("a"), sim.add("b", offset=RETRY / 2)
    kube_api.fail_next(403, times=10**6, methods=("GET", "PUT", "POST"), plural=PLURAL)
    with capture_logs() as logs:
        sim.run(3 * LEASE)
    assert sim.transitions == []
    said = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert [(e["event"], e["identity"]) for e in said] == [("leader.refused", "a"), ("leader.refused", "b")]
    assert "check RBAC" in said[0]["error"] and said[0]["error_type"] == "ConfigError"
    clear_faults(kube_api)
    sim.run(LEASE + 3 * RETRY, until=lambda: any(r.elector.is_leader() for r in sim.replicas.values()))


def test_a_lease_namespace_that_does_not_exist_is_said_once_at_warning(kube_api, sim):
    """No `--lease-namespace` and no POD_NAMESPACE, and `canary-system` was never created: the GET is a 404 (read as
    no Lease), and after a lease duration the create is a 404 too. That was `leader.attempt_failed` at debug, again
    at every retry, nobody leading and nothing said. Now `leader.refused` names the namespace, once per replica."""
    sim.add("a")
    kube_api.fail_next(404, times=10**6, methods=("POST",), plural=PLURAL)
    with capture_logs() as logs:
        sim.run(4 * LEASE)
    assert sim.transitions == []
    said = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert [(e["event"], e["identity"]) for e in said] == [("leader.refused", "a")], said
    assert f"the lease namespace {NS!r} does not exist" in said[0]["error"] and "--lease-namespace" in said[0]["error"]
    clear_faults(kube_api)
    sim.run(LEASE + 3 * RETRY, until=lambda: any(r.elector.is_leader() for r in sim.replicas.values()))
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]


def _land_then_fail_lease_writes(api: KubeAPIServer, clock: SimClock, methods: tuple[str, ...],
                                 times: int = 1) -> list[float]:
    """The next `times` Lease writes of `methods` are applied, then answered 500 `etcdserver: request timed out`
    (the write may have landed: here it did). Returns when (`clock`) each was, growing as they come."""
    from canary.sandbox import kubeapi

    real, hit = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method in methods and kind.plural == PLURAL and len(hit) < times:
            real(method, request, kind)
            hit.append(clock.now)
            raise kubeapi.ApiError(500, "InternalError", "etcdserver: request timed out")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return hit


@pytest.mark.parametrize("how", ["create", "takeover"])
def test_a_term_taken_whose_answer_was_lost_is_led_at_the_next_try_not_waited_out(kube_api, sim, how):
    """A new term's write (the create of an absent Lease, or the takeover of a released one) lands and is answered
    500 (etcd's timeout; decision 393). The next read finds our own write: renewed and led at once, in the term
    written. Before: read as the Lease held under our name in a term we did not take (`leader.identity_held`,
    a duplicated identity), waited out a whole lease duration with nobody leading, then taken in a new term."""
    if how == "takeover":
        kube_api.handler.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                     "metadata": {"name": "canary-controller", "namespace": NS},
                                     "spec": {"holderIdentity": "", "leaseTransitions": 4,
                                              "leaseDurationSeconds": 1}})
    hit = _land_then_fail_lease_writes(kube_api, sim.clock, ("POST",) if how == "create" else ("PUT",))
    a = sim.add("a")
    with capture_logs() as logs:
        started = sim.run(3 * LEASE, until=a.elector.is_leader)
    assert len(hit) == 1 and started - hit[0] <= RETRY + TICK, (hit, started)  # the next try, not a lease later
    term = 0 if how == "create" else 5
    assert a.elector.fence_token() == term and lease(kube_api)["spec"]["leaseTransitions"] == term
    assert not [e for e in logs if e["event"] == "leader.identity_held"]
    sim.run(LEASE)
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]


def _delete_lease(api: KubeAPIServer) -> None:
    with api.handler.lock:  # a DELETE as kubectl sends it: gone, no tombstone
        key = (GROUP, PLURAL, NS, "canary-controller")
        api.handler._delete(key, api.handler.objects[key])


def test_a_lease_deleted_twice_the_leader_recreating_it_between_gives_no_second_leader(kube_api, sim):
    """Decision 344's open case, measured (decision 393): the Lease deleted, the standby reads it absent, the leader
    creates it again in its term, and it is deleted again before the standby's next read (it never saw the Lease
    created anew). The standby's next read after that finds the leader's next re-creation (within a retry period
    of each deletion), and its wait restarts: no second leader. Only a deletion landing before every one of the
    standby's reads for a whole lease duration (or its reads failing meanwhile) keeps it from seeing one."""
    a, b = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    sim.run(RETRY + TICK, until=lambda: a.attempts[-1][0] == sim.clock.now)  # just after a's renewal
    _delete_lease(kube_api)
    read = len(b.attempts)
    sim.run(RETRY + TICK, until=lambda: len(b.attempts) > read)
    assert b.elector._observed is not None and b.elector._observed[0] == "(no Lease)"  # b saw it absent
    sim.run(RETRY + TICK, until=lambda: kube_api.get(GROUP, PLURAL, NS, "canary-controller") is not None)
    assert len(b.attempts) == read + 1  # a created it again; b has not read since
    _delete_lease(kube_api)
    with capture_logs() as logs:
        sim.run(3 * LEASE)
    assert sim.overlaps == []
    assert [(n, v) for _, n, v in sim.transitions] == [("a", True)]  # a never stopped, b never led
    assert [e["identity"] for e in logs if e["event"] == "leader.lease_recreated"] == ["a"]


def _lease_answers_200(api: KubeAPIServer, method: str, body: bytes, *, times: int = 1) -> list[int]:
    """The next `times` Lease requests of `method` are served (a write lands), then answered 200 with `body` in place
    of the Lease (a proxy in front of the API server; an answer cut where its framing did not show it)."""
    import aiohttp.web

    real, hit = api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == PLURAL and str(request.method.value).upper() == method \
                and len(hit) < times:
            hit.append((await real(request)).status)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": "application/json"})
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    return hit


@pytest.mark.parametrize("body", [b"{}", b"null", b"<html>upstream connect error</html>"])
@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_a_lease_answer_that_is_no_lease_is_a_failed_request_never_the_lease(kube_api, sim, method, body):
    """A's first term (POST), a renewal (PUT), or B's read as a standby (GET) answered 200 with `{}`, `null` or a
    proxy's page: a request that failed (the write may have landed: decision 393 finds it at the next read), never
    the Lease. Before: `{}` was kept as the Lease written, the next renewal PUT it back without a resourceVersion
    (unguarded), the Lease lost its `leaseTransitions` and every renewal after failed (KeyError) until A stepped
    down; a standby's read of `{}` saw a released Lease and took it at once, two leaders (decision 394). `null` and
    the page already failed (held, recorded)."""
    if method == "POST":  # A's first term's create
        hit = _lease_answers_200(kube_api, method, body)
        a = sim.add("a")
    else:  # A leading; then its renewal, or a standby's read
        a = sim.add("a")
        sim.run(3 * LEASE, until=a.elector.is_leader)
        hit = _lease_answers_200(kube_api, method, body)
        if method == "GET":
            sim.add("b")
    sim.run(4 * LEASE)
    assert hit == [201 if method == "POST" else 200]
    assert a.elector.is_leader() and a.elector.fence_token() == 0
    spec = lease(kube_api)["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert [n for _, n, v in sim.transitions if v] == ["a"] and ("a", False) not in [(n, v) for _, n, v in sim.transitions]


@pytest.mark.parametrize("how", ["renewal lost", "release 500", "release {}", "release failing"])
def test_a_release_while_the_api_answers_badly_ends_and_hands_over_when_it_can(kube_api, sim, how):
    """The leader releases its Lease on exit while the API answers badly (decision 423). `renewal lost`: its last
    renewal landed and was answered 500, so the Lease it holds in memory is a version behind, and the release's
    PUT met a 409: `leader.release_failed`, the standby waiting a whole lease duration. Now the release reads the
    Lease again once and clears it. `release 500` / `release {}`: the release landed, its answer lost: read back,
    it is released (`leader.released`, not `leader.release_failed`). `release failing`: every Lease write answered
    500: the release ends after its two tries (one line), the Lease left to lapse. The standby leads within a
    retry period of the release, but in the last case (a lease duration), and never two leaders."""
    from canary.sandbox.kubeapi import Fault

    a, b = sim.add("a"), sim.add("b", offset=RETRY / 2)
    sim.run(LEASE + 0.6)
    assert a.elector.is_leader()
    if how == "renewal lost":
        hit = _land_then_fail_lease_writes(kube_api, sim.clock, ("PUT",))
        sim.run(RETRY + TICK, until=lambda: bool(hit))
    a.alive = False
    if how == "release 500":
        hit = _land_then_fail_lease_writes(kube_api, sim.clock, ("PUT",))
    elif how == "release {}":
        hit = _lease_answers_200(kube_api, "PUT", b"{}")
    elif how == "release failing":
        kube_api.handler.faults.append(Fault(500, 4, frozenset({"PUT"}), PLURAL))
    released = sim.clock.now
    with capture_logs() as logs:
        a.elector.release()
    events = [e["event"] for e in logs if e["event"].startswith("leader.release")]
    assert not a.elector.is_leader()
    if how == "release failing":
        assert events == ["leader.release_failed"], logs
        clear_faults(kube_api)
        started = sim.run(2 * LEASE, until=b.elector.is_leader)
        assert started - released >= LEASE - DEADLINE  # left to lapse
    else:
        assert events == ["leader.released"], logs
        started = sim.run(LEASE, until=b.elector.is_leader)
        assert started - released <= RETRY + TICK  # b's next attempt, not a lease duration
    assert sim.overlaps == []
    assert lease(kube_api)["spec"]["holderIdentity"] == "b"

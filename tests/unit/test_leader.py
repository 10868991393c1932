"""LeaderElector's logic on a fake clock and an in-memory Lease store (no HTTP, no sleeping).

The store is strict where safety rests on it: a stale resourceVersion or a
second create gets RoutingConflict, as translate() makes of a 409. A property
test drives two electors through random schedules (slow requests, lost
answers, failures, silence) and checks the invariant that matters: never two
leaders at the same instant, and fence tokens that only grow.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.errors import ConfigError, KubeUnavailable, NotFound, RoutingConflict, TargetError
from canary.leader import DURATION_ANNOTATION, LeaderElector, LeaseStore, micro_time

NS, NAME = "ml", "canary-controller"
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class FakeLeases:
    """A LeaseStore with optimistic concurrency. `hook(op, phase)` runs before ('send') and after
    ('landed') a request is applied; it may advance the clock or raise to fake a failure."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.calls: list[str] = []
        self.hook: Callable[[str, str], None] = lambda op, phase: None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        self.hook("get", "send")
        out = copy.deepcopy(self.lease)
        self.hook("get", "landed")
        return out

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        self.hook("create", "send")
        if self.lease is not None:
            raise RoutingConflict("already exists")
        assert not body["metadata"].get("resourceVersion")
        return self._store(body)

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("replace")
        self.hook("replace", "send")
        if self.lease is None:
            raise NotFound("not found")  # what translate() makes of a 404
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise RoutingConflict("stale resourceVersion")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        out = copy.deepcopy(self.lease)
        self.hook("write", "landed")
        return out

    def spec(self) -> dict[str, Any]:
        assert self.lease is not None
        return self.lease["spec"]


def elector(store: FakeLeases, clock: Clock, identity: str, *, wall: Callable[[], datetime] | None = None,
            lease: float = 15.0, deadline: float = 10.0, retry: float = 2.0) -> LeaderElector:
    return LeaderElector(store, namespace=NS, identity=identity, lease_duration_s=lease,
                         renew_deadline_s=deadline, retry_period_s=retry, clock=clock,
                         wall=wall or (lambda: T0 + timedelta(seconds=clock.t)))


def acquire(e: LeaderElector, clock: Clock) -> None:
    """`e` takes an absent Lease, now: it saw it absent one lease duration ago (before anything else read the
    clock), and creates it now (so the times in the tests' comments stay those of the acquisition)."""
    clock.advance(-e.lease_duration_s)
    assert e.try_acquire_or_renew() is False
    clock.advance(e.lease_duration_s)
    assert e.try_acquire_or_renew() is True


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeLeases:
    return FakeLeases()


def test_fake_store_satisfies_the_protocol(store):
    assert isinstance(store, LeaseStore)


def test_an_absent_lease_is_created_once_seen_absent_for_a_lease_duration_and_held(store, clock):
    a = elector(store, clock, "a")
    with capture_logs() as logs:
        assert a.try_acquire_or_renew() is False  # absent: nothing says nobody leads (deleted by hand under a leader)
        clock.advance(14.9)
        assert a.try_acquire_or_renew() is False
    assert [e["event"] for e in logs] == ["leader.lease_absent"] and logs[0]["wait_s"] == 15.0  # said once
    assert store.lease is None and a.take_over_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert a.try_acquire_or_renew() is True
    assert a.is_leader() and a.fence_token() == 0
    spec = store.spec()
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", spec["renewTime"])
    assert store.lease is not None and store.lease["metadata"]["annotations"][DURATION_ANNOTATION] == "15.0"
    assert store.calls == ["get", "get", "get", "create"]


def test_a_lease_deleted_under_a_live_leader_is_never_taken_beside_it(store, clock):
    """`kubectl delete lease` while a leads and b stands by: b took the absent Lease at once and led beside a
    until a's next renewal (two writers). Now b waits a lease duration from seeing it absent; a, still within
    its renew deadline, creates it again in its own term at its next renewal, and leads on."""
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    b.try_acquire_or_renew()
    clock.advance(2)
    assert a.try_acquire_or_renew()
    store.lease = None  # deleted by hand
    clock.advance(0.5)
    assert b.try_acquire_or_renew() is False and not (a.is_leader() and b.is_leader())
    clock.advance(1.5)
    with capture_logs() as logs:
        assert a.try_acquire_or_renew() is True  # its renewal finds it gone: created again, same term
    assert [e["event"] for e in logs] == ["leader.lease_recreated"] and logs[0]["fence_token"] == 0
    assert store.spec()["holderIdentity"] == "a" and store.spec()["leaseTransitions"] == 0 and a.fence_token() == 0
    for _ in range(10):
        clock.advance(2)
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()


def test_a_lease_deleted_after_its_leader_died_is_taken_a_lease_duration_later_in_a_newer_term(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    clock.advance(16)
    assert b.try_acquire_or_renew() is False
    clock.advance(15)
    assert b.try_acquire_or_renew() and b.fence_token() == 1  # a died: b takes term 1
    b.renew_deadline_s = 0.0  # b dies too (its fence lapses at once) ...
    store.lease = None        # ... and its Lease is deleted
    a2 = elector(store, clock, "a")
    assert a2.try_acquire_or_renew() is False
    clock.advance(15)
    assert a2.try_acquire_or_renew() and a2.fence_token() == 0  # a new process: it never saw term 1
    store.lease = None
    clock.advance(1)
    assert a2.try_acquire_or_renew() and a2.fence_token() == 0  # its own, deleted while it leads: same term
    b.renew_deadline_s = 10.0
    b._sent, b._token = None, None  # b comes back, with nothing held
    a2.renew_deadline_s = 0.0
    store.lease = None
    assert b.try_acquire_or_renew() is False
    clock.advance(15)
    assert b.try_acquire_or_renew() and b.fence_token() == 2  # b goes on from the term it last saw


def test_micro_time_always_has_six_fraction_digits():
    assert micro_time(datetime(2030, 1, 1, 0, 0, 5, tzinfo=timezone.utc)) == "2030-01-01T00:00:05.000001Z"
    assert micro_time(datetime(2030, 1, 1, 1, 0, 5, 12, tzinfo=timezone(timedelta(hours=1)))) == \
        "2030-01-01T00:00:05.000012Z"


def test_renewal_updates_renew_time_without_a_get_and_keeps_the_token(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    acquired, first_renew = store.spec()["acquireTime"], store.spec()["renewTime"]
    clock.advance(2)
    assert a.try_acquire_or_renew()
    assert store.calls == ["get", "get", "create", "replace"]  # fast path: PUT with the resourceVersion we wrote
    assert store.spec()["renewTime"] > first_renew and store.spec()["acquireTime"] == acquired
    assert a.fence_token() == 0 and store.spec()["leaseTransitions"] == 0


def test_standby_waits_a_lease_duration_from_the_last_change_it_observed(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    for _ in range(10):  # a keeps renewing: b never gets it
        clock.advance(2)
        assert a.try_acquire_or_renew()
        assert b.try_acquire_or_renew() is False
    observed = clock.t  # b saw a's last renewal now; a goes silent
    clock.advance(14.9)
    assert not b.try_acquire_or_renew()
    clock.advance(0.1)
    assert clock.t - observed == pytest.approx(15.0)
    assert b.try_acquire_or_renew() and b.fence_token() == 1
    assert store.spec()["holderIdentity"] == "b" and store.spec()["leaseTransitions"] == 1


def test_a_standby_tries_again_when_the_holders_lease_lapses_not_a_retry_period_later(store, clock):
    """A dead holder's lease moves within one lease duration of its last renewal seen: the standby's
    loop wakes when that lapses (`take_over_in`), not at its next retry period."""
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    assert a.take_over_in() is None  # leading: nothing to wait for
    assert not b.try_acquire_or_renew()  # b first sees a's record now: lapses 15 s later unless renewed
    assert b.take_over_in() == pytest.approx(15.0)
    assert b.next_try(clock.t, False, jitter=0.5) == pytest.approx(clock.t + 2.2)  # a retry period (+10%)
    clock.advance(2)
    assert a.try_acquire_or_renew()  # a renews: b's wait starts again from when b sees it
    assert not b.try_acquire_or_renew() and b.take_over_in() == pytest.approx(15.0)  # seen at 1002
    clock.advance(12.9)
    assert not b.try_acquire_or_renew() and b.take_over_in() == pytest.approx(2.1)  # 15 s from 1002.0
    assert b.next_try(clock.t, False, jitter=0.5) == pytest.approx(clock.t + 2.1 + 0.005)  # the lapse comes first
    clock.advance(2.1 + 0.005)  # a died after its renewal at 1002: b takes over 15 s after it saw it
    assert b.try_acquire_or_renew() and b.take_over_in() is None
    assert b.next_try(clock.t, True) == pytest.approx(clock.t + 2.0)


def test_a_new_standby_waits_a_full_duration_even_if_the_lease_looks_old(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    clock.advance(3600)  # a is long dead by the wall clock, but b has never seen the record change
    b = elector(store, clock, "b")
    assert not b.try_acquire_or_renew()
    clock.advance(15.0)
    assert b.try_acquire_or_renew()


@pytest.mark.parametrize("skew", [timedelta(hours=-1), timedelta(hours=1)])
def test_wall_clock_skew_between_replicas_does_not_matter(store, clock, skew):
    a = elector(store, clock, "a", wall=lambda: T0 + skew + timedelta(seconds=clock.t))
    b = elector(store, clock, "b")
    acquire(a, clock)
    b.try_acquire_or_renew()
    clock.advance(14)
    assert not b.try_acquire_or_renew()  # a renewTime an hour old is not "expired" before 15 s seen
    clock.advance(1)
    assert b.try_acquire_or_renew()      # one an hour in the future does not block for ever


def test_any_write_to_the_lease_restarts_the_standbys_wait(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    b.try_acquire_or_renew()
    clock.advance(10)
    a.try_acquire_or_renew()
    clock.advance(1)
    b.try_acquire_or_renew()  # observes the renewal 1 s late: its wait starts here
    clock.advance(14.5)
    assert not b.try_acquire_or_renew()
    clock.advance(0.5)
    assert b.try_acquire_or_renew()


def test_fencing_turns_false_at_the_renew_deadline_without_any_call(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    clock.advance(9.999)
    assert a.is_leader()
    clock.advance(0.001)
    assert not a.is_leader()


def test_a_slow_renewal_counts_from_when_it_was_sent(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)            # sent at 1000
    clock.advance(5)
    store.hook = lambda op, phase: clock.advance(4) if phase == "send" else None
    assert a.try_acquire_or_renew()     # sent at 1005, answered at 1009
    store.hook = lambda op, phase: None
    clock.advance(5.99)                 # 1014.99: inside 1005 + 10
    assert a.is_leader()
    clock.advance(0.01)                 # 1015: not 1009 + 10
    assert not a.is_leader()


def test_a_renewal_answered_after_the_deadline_restores_leadership_only_until_send_plus_deadline(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    clock.advance(8)
    seen: list[bool] = []

    def stall(op: str, phase: str) -> None:
        if phase == "send":
            clock.advance(3)                # 1011: past the old deadline while in flight
            seen.append(a.is_leader())

    store.hook = stall
    assert a.try_acquire_or_renew()         # sent 1008 -> leader until 1018
    assert seen == [False]
    store.hook = lambda op, phase: None
    clock.advance(6.99)
    assert a.is_leader()
    clock.advance(0.01)
    assert not a.is_leader()


def test_a_standby_that_sees_a_renewal_before_its_answer_arrives_cannot_overlap(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)                                         # 1000
    b.try_acquire_or_renew()
    clock.advance(2)

    def slow_answer(op: str, phase: str) -> None:
        if op == "write" and phase == "landed":
            b.try_acquire_or_renew()                          # b reads a's renewal at 1002 ...
            clock.advance(8)                                  # ... a hears back at 1010

    store.hook = slow_answer
    assert a.try_acquire_or_renew()
    store.hook = lambda op, phase: None
    clock.advance(7)                                          # 1017 = 1002 + 15: b may take over
    assert b.try_acquire_or_renew()
    assert not a.is_leader()                                  # a stopped at 1012 (sent + 10), not 1020


def test_a_standby_dates_what_it_reads_from_when_the_answer_came(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)                                         # 1000
    b.try_acquire_or_renew()
    clock.advance(9)
    interleaved: list[bool] = []

    def slow_read(op: str, phase: str) -> None:
        if op == "get" and phase == "send" and not interleaved:
            interleaved.append(True)
            clock.advance(6)                                  # b's GET, sent at 1009, is served at 1015 ...
            interleaved.append(a.try_acquire_or_renew())      # ... just after a renewed (a: until 1025)

    store.hook = slow_read
    assert not b.try_acquire_or_renew() and interleaved == [True, True]
    store.hook = lambda op, phase: None
    clock.advance(9)                                          # 1024 = 1009 + 15: too early, by 1015 + 15
    assert a.is_leader() and not b.try_acquire_or_renew()
    clock.advance(6)
    assert not a.is_leader() and b.try_acquire_or_renew()


def test_failed_renewals_fence_then_recover_with_the_same_term(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    b.try_acquire_or_renew()

    def down(op: str, phase: str) -> None:
        if phase == "send":
            raise KubeUnavailable("HTTP 500")

    store.hook = down
    with capture_logs() as logs:
        for _ in range(5):
            clock.advance(2)
            a.try_acquire_or_renew()
    assert not a.is_leader()
    events = [e["event"] for e in logs]
    assert "leader.renew_failed" in events and events[-1] == "leader.lost"
    assert logs[-1]["reason"] == "renew_deadline" and logs[-1]["fence_token"] == 0
    store.hook = lambda op, phase: None
    clock.advance(1)  # 11 s since a's last renewal, < 15 since b saw it
    with capture_logs() as logs:
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert a.fence_token() == 0  # nobody held it in between: the term goes on
    assert [e["event"] for e in logs] == ["leader.acquired"]


def test_a_renewal_that_landed_but_whose_answer_was_lost_is_not_counted(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    clock.advance(9)

    def lose_answer(op: str, phase: str) -> None:
        if op == "write" and phase == "landed":
            raise KubeUnavailable("read timed out")

    store.hook = lose_answer
    assert a.try_acquire_or_renew()  # still inside the term renewed at 1000 ...
    clock.advance(1)                 # ... which ends at 1010: the lost answer added nothing
    assert not a.is_leader()
    store.hook = lambda op, phase: None
    assert a.try_acquire_or_renew()  # 409 on the cached version, then GET: still ours, same term
    assert a.fence_token() == 0 and store.calls[-3:] == ["replace", "get", "replace"]


def test_two_candidates_racing_for_an_expired_lease_produce_one_winner(store, clock):
    a, b, c = elector(store, clock, "a"), elector(store, clock, "b"), elector(store, clock, "c")
    acquire(a, clock)
    b.try_acquire_or_renew()
    c.try_acquire_or_renew()
    clock.advance(15)
    raced: list[bool] = []

    def c_goes_first(op: str, phase: str) -> None:
        if op == "replace" and phase == "send" and not raced:
            raced.append(True)
            raced.append(c.try_acquire_or_renew())

    store.hook = c_goes_first
    assert b.try_acquire_or_renew() is False  # b read the same version as c, then got a conflict
    assert raced == [True, True] and c.is_leader() and store.spec()["holderIdentity"] == "c"
    assert c.fence_token() == 1 and b.fence_token() == -1


def test_two_replicas_given_one_identity_never_both_lead(store, clock):
    """`--identity canary` in both replicas' args (or POD_NAME unset under hostNetwork: one hostname, pid 1 in
    both). A Lease held under our own name was taken as ours at once in a new term: each replica re-took it at
    every try, and both led the whole time. Held under our name in a term this process did not take, it is now
    timed as any holder's, and said once (`leader.identity_held`); a restarted replica (a container restarted in
    its pod, same POD_NAME) takes its old Lease once it is seen unrenewed for its lease duration."""
    a, twin = elector(store, clock, "canary"), elector(store, clock, "canary")
    acquire(a, clock)
    with capture_logs() as logs:
        for _ in range(20):
            clock.advance(1)
            assert twin.try_acquire_or_renew() is False
            clock.advance(1)
            assert a.try_acquire_or_renew() and not twin.is_leader()
    assert [e["event"] for e in logs] == ["leader.identity_held"] and a.fence_token() == 0
    # a is gone (its process killed; the container restarted as `twin`): its last renewal, seen now, lapses 15 s on
    assert twin.try_acquire_or_renew() is False
    clock.advance(15)
    assert twin.try_acquire_or_renew() and twin.fence_token() == 1 and not a.is_leader()


def test_two_creators_produce_one_winner(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert not a.try_acquire_or_renew() and not b.try_acquire_or_renew()  # both see it absent
    clock.advance(15)
    results: list[bool] = []

    def b_creates_first(op: str, phase: str) -> None:
        if op == "create" and phase == "send" and not results:
            results.append(True)
            results.append(b.try_acquire_or_renew())

    store.hook = b_creates_first
    assert a.try_acquire_or_renew() is False
    assert results == [True, True] and store.spec()["holderIdentity"] == "b"


def test_release_fences_first_then_hands_over_at_once(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    b.try_acquire_or_renew()
    leading_while_writing: list[bool] = []
    store.hook = lambda op, phase: leading_while_writing.append(a.is_leader()) if op == "replace" else None
    with capture_logs() as logs:
        a.release()
    store.hook = lambda op, phase: None
    assert leading_while_writing == [False] and not a.is_leader()
    assert store.spec()["holderIdentity"] == "" and store.spec()["leaseTransitions"] == 0
    assert [e["event"] for e in logs] == ["leader.lost", "leader.released"] and logs[0]["reason"] == "released"
    assert b.try_acquire_or_renew() and b.fence_token() == 1  # no waiting for expiry


def test_release_does_nothing_when_someone_else_holds_it(store, clock):
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    acquire(a, clock)
    b.release()
    assert store.spec()["holderIdentity"] == "a" and a.is_leader()


def test_release_swallows_api_errors(store, clock):
    a = elector(store, clock, "a")
    acquire(a, clock)
    store.hook = lambda op, phase: (_ for _ in ()).throw(KubeUnavailable("down"))
    with capture_logs() as logs:
        a.release()
    assert not a.is_leader() and logs[-1]["event"] == "leader.release_failed"


@pytest.mark.parametrize("error", [KubeUnavailable("500"), ConfigError("403"), TargetError("not served"),
                                   RoutingConflict("409"), ValueError("garbage")])
def test_no_error_escapes_an_attempt(store, clock, error):
    a = elector(store, clock, "a")

    def fail(op: str, phase: str) -> None:
        raise error

    store.hook = fail
    assert a.try_acquire_or_renew() is False


def test_a_malformed_lease_is_overwritten_only_after_it_expires(store, clock):
    store.lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "7"},
                   "spec": {"holderIdentity": "x", "leaseDurationSeconds": "junk", "leaseTransitions": None}}
    a = elector(store, clock, "a")
    assert not a.try_acquire_or_renew()
    clock.advance(15)  # an unreadable duration falls back to ours
    assert a.try_acquire_or_renew() and a.fence_token() == 1


@pytest.mark.parametrize("declared,annotation,wait", [(2, "1.5", 1.5), (2, "0.5", 2.0), (2, "9", 2.0),
                                                      (2, None, 2.0), (2, "nan?", 2.0)])
def test_a_holders_exact_duration_is_used_only_when_it_agrees_with_the_integer(store, clock, declared,
                                                                               annotation, wait):
    meta: dict[str, Any] = {"name": NAME, "namespace": NS, "resourceVersion": "7"}
    if annotation is not None:
        meta["annotations"] = {DURATION_ANNOTATION: annotation}
    store.lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                   "spec": {"holderIdentity": "x", "leaseDurationSeconds": declared, "leaseTransitions": 4}}
    a = elector(store, clock, "a", lease=1.5, deadline=1.0, retry=0.2)
    assert not a.try_acquire_or_renew()
    clock.advance(wait - 0.01)
    assert not a.try_acquire_or_renew()
    clock.advance(0.01)
    assert a.try_acquire_or_renew() and a.fence_token() == 5


@pytest.mark.parametrize("kwargs", [dict(identity=""), dict(renew_deadline_s=15.0), dict(retry_period_s=10.0),
                                    dict(retry_period_s=0.0)])
def test_inconsistent_settings_are_a_config_error(store, kwargs):
    args: dict[str, Any] = dict(namespace=NS, identity="a") | kwargs
    with pytest.raises(ConfigError):
        LeaderElector(store, **args)


def test_lease_durations_are_written_as_a_ceiling_and_exactly(store, clock):
    a = elector(store, clock, "a", lease=1.5, deadline=1.0, retry=0.2)
    acquire(a, clock)
    assert store.spec()["leaseDurationSeconds"] == 2
    assert store.lease is not None and store.lease["metadata"]["annotations"][DURATION_ANNOTATION] == "1.5"


# --- the invariant, over random schedules ---------------------------------------------------------
# Two replicas run their loops (every retry period) on one fake clock. Requests are sometimes slow
# on the way out or back (up to 8 s: more than lease - deadline), refused, or lose their answer;
# a replica sometimes goes silent (crash, GC pause, partition) or releases; the Lease is sometimes deleted; and the other replica's
# whole attempt sometimes runs in the middle of a request or of its answer, which is where the
# races live. After every event: never two leaders, and a new leader's token is larger.


def _delay(rng: random.Random) -> float:
    return rng.choice([0.0, rng.uniform(0.0, 0.5), rng.uniform(0.0, 8.0)])


def _simulate(seed: int) -> int:
    rng = random.Random(seed)
    clock, store = Clock(), FakeLeases()
    electors = {n: elector(store, clock, n) for n in "ab"}
    next_at = {"a": clock.t, "b": clock.t + rng.uniform(0, 2)}
    silent_until = {"a": 0.0, "b": 0.0}
    terms: list[tuple[str, int]] = []

    def check() -> None:
        leaders = [n for n, e in electors.items() if e.is_leader()]
        assert len(leaders) <= 1, f"seed {seed}: two leaders at t={clock.t}"
        for n in leaders:
            token = electors[n].fence_token()
            if not terms or terms[-1] != (n, token):
                assert not terms or token > terms[-1][1], f"seed {seed}: token {token} of {n} after {terms}"
                terms.append((n, token))

    for _ in range(250):
        who = min(next_at, key=lambda n: next_at[n])
        other = "b" if who == "a" else "a"
        clock.t = max(clock.t, next_at[who])
        next_at[who] = clock.t + 2.0 * (1 + 0.2 * rng.random())
        check()
        if rng.random() < 0.04:
            silent_until[who] = clock.t + rng.uniform(3.0, 40.0)
        if clock.t < silent_until[who]:
            next_at[who] = silent_until[who]
            continue
        if rng.random() < 0.02:
            electors[who].release()
            check()
            continue
        if rng.random() < 0.03 and store.lease is not None and all(
                e._observed is not None and e._observed[0] == store.lease["metadata"]["resourceVersion"]
                or store.lease["spec"].get("holderIdentity") == n for n, e in electors.items()):
            # `kubectl delete lease`, of a Lease every replica has read (or holds): one deleted again before a
            # replica read it, created anew meanwhile, looks to that replica as if it never existed (see leader.py)
            store.lease = None
            check()
        before, after = _delay(rng), _delay(rng)
        mode = rng.choice(["ok"] * 8 + ["refused", "answer_lost"])
        cut = (rng.choice(["send", "landed"]), rng.randint(1, 2)) if rng.random() < 0.25 else None
        calls, nested = [0], [False]

        def hook(op: str, phase: str) -> None:
            check()
            if nested[0]:
                return  # the interleaved attempt itself is instantaneous and well-behaved
            if phase == "send":
                calls[0] += 1
                clock.advance(before)
                check()
            if cut == (phase, calls[0]) and clock.t >= silent_until[other]:
                nested[0] = True
                electors[other].try_acquire_or_renew()
                nested[0] = False
                check()
            if op == "write":
                clock.advance(after)
                check()
            if phase == "send" and mode == "refused" and op != "get":
                raise KubeUnavailable("refused")
            if op == "write" and mode == "answer_lost":
                raise KubeUnavailable("read timed out")

        store.hook = hook
        electors[who].try_acquire_or_renew()
        store.hook = lambda op, phase: None
        check()
    return len({t for _, t in terms})


def test_never_two_leaders_and_tokens_only_grow():
    terms = [_simulate(seed) for seed in range(120)]
    assert sum(terms) > 500 and min(terms) >= 2  # the schedules do hand leadership over, many times

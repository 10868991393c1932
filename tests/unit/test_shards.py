"""Shards (canary/shards.py): which shard a rollout is in, and how many shards a replica leads."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from canary import shards as sh


def test_jump_hash_spreads_evenly_and_moves_only_a_share_when_shards_are_added() -> None:
    keys = [f"ns{i % 7}/rollout-{i}" for i in range(4000)]
    four = {k: sh.shard_of(*k.split("/"), 4) for k in keys}
    five = {k: sh.shard_of(*k.split("/"), 5) for k in keys}
    counts = Counter(four.values())
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 850  # about 1,000 each
    moved = [k for k in keys if four[k] != five[k]]
    assert all(five[k] == 4 for k in moved)  # a rollout only ever moves to the new shard
    assert 600 < len(moved) < 1000  # about 1/5 of them
    assert sh.shard_of("ml", "r1", 1) == 0 and sh.shard_of("ml", "r1", 4) == sh.shard_of("ml", "r1", 4)


def test_owner_matches_one_shard_per_rollout() -> None:
    objs = [{"metadata": {"namespace": "ml", "name": f"r{i}"}} for i in range(100)]
    owners = [sh.owner(i, 3) for i in range(3)]
    assert all(sum(o(obj) for o in owners) == 1 for obj in objs)
    assert sh.lease_name("canary-controller", 2, 3) == "canary-controller-shard-2-of-3"


class FakeElector:
    """Holds its lease when `free` says nobody else does."""

    def __init__(self, index: int, free: set[int]) -> None:
        self.index, self.free, self.leading, self.tries = index, free, False, 0

    def is_leader(self) -> bool:
        return self.leading

    def try_acquire_or_renew(self) -> bool:
        self.tries += 1
        if not self.leading and self.index in self.free:
            self.free.discard(self.index)
            self.leading = True
        return self.leading

    def release(self) -> None:
        self.leading = False
        self.free.add(self.index)


def test_a_replica_leads_at_most_its_share_and_a_spare_takes_a_lost_shard() -> None:
    """Two shards, three replicas leading at most one each: two leaders and a spare for both."""
    free = {0, 1}
    a, b, spare = (sh.ShardLeases([FakeElector(i, free) for i in range(2)], max_shards=1, identity=n) for n in "abc")
    held_a, held_b, held_c = a.attempt(), b.attempt(), spare.attempt()
    assert len(held_a) == len(held_b) == 1 and sorted(held_a + held_b) == [0, 1] and held_c == []
    for _ in range(3):  # renewals keep everyone where they are
        assert (a.attempt(), b.attempt(), spare.attempt()) == (held_a, held_b, [])
    lost = held_a[0]
    a.electors[lost].leading = False  # replica a dies: its lease lapses
    free.add(lost)
    assert spare.attempt() == [lost] and b.attempt() == held_b  # only a's shard moved


def test_a_replica_with_room_leads_several_shards() -> None:
    free = {0, 1, 2}
    a = sh.ShardLeases([FakeElector(i, free) for i in range(3)], max_shards=2, identity="a")
    b = sh.ShardLeases([FakeElector(i, free) for i in range(3)], max_shards=2, identity="b")
    assert len(a.attempt()) == 2 and len(b.attempt()) == 1 and not free


def test_a_pinned_replica_tries_only_its_shard() -> None:
    free = {0, 1, 2}
    electors = [FakeElector(i, free) for i in range(3)]
    pinned = sh.ShardLeases(electors, max_shards=3, identity="x", pinned=1)
    assert pinned.attempt() == [1] and electors[0].tries == electors[2].tries == 0


class Lapsing(FakeElector):
    def __init__(self, index: int, free: set[int], lapse: float | None) -> None:
        super().__init__(index, free)
        self.lapse = lapse

    def take_over_in(self) -> float | None:
        return self.lapse


def test_a_replica_with_room_wakes_when_a_shard_lapses_not_a_retry_period_later() -> None:
    free: set[int] = set()
    electors = [Lapsing(0, free, None), Lapsing(1, free, 0.7), Lapsing(2, free, 5.0)]
    leases = sh.ShardLeases(electors, max_shards=1, identity="x", retry_period_s=2.0)
    assert leases.next_wait(0.5) == pytest.approx(0.705)  # shard 1 lapses in 0.7 s: before 1.5 s
    electors[1].lapse = 0.0  # lapsed already (the last try failed): not a busy loop, a period later
    assert leases.next_wait(0.5) == pytest.approx(1.5)
    electors[1].lapse, electors[0].leading = 0.7, True  # no room left: its own lease is all it renews
    assert leases.next_wait(0.5) == pytest.approx(1.5)


def test_the_drift_monitor_runs_on_the_leader_of_shard_0_only(monkeypatch: Any) -> None:
    """Decision 119 (f): `controller run --drift --shards N` gave the drift loop `build`'s "leads any
    shard": every replica that led a shard watched every baseline (N watchers of one state ConfigMap, each
    stepping every monitor a pass). Now only the leader of shard 0 does; a replica that leads another
    shard, or is pinned to one, never does."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from canary.cli import app  # first: canary.cli_controller is imported by it

    import canary.cli_controller as cc
    import canary.kube
    from canary import shards as sh

    def op(leads: bool) -> Any:
        return SimpleNamespace(is_leader=lambda: leads, run=lambda stop, tick_s: None, last_tick=0.0,
                               health=(True, ""))

    given: dict[str, Any] = {}
    monkeypatch.setattr(canary.kube, "api_client", lambda **_k: object())
    monkeypatch.setattr(sh, "build", lambda *_a, **_k: ([op(False), op(True)], lambda: True, lambda loops=None: None))
    monkeypatch.setattr(cc, "_start_drift", lambda *_a, **k: given.update(k))
    r = CliRunner().invoke(app, ["controller", "run", "--drift", "--shards", "2", "--leader-elect", "--metrics-addr", "",
                                 "--prometheus-url", "http://127.0.0.1:9"])
    assert r.exit_code == 0, r.output
    assert given["is_leader"]() is False  # this replica leads shard 1, not shard 0
    assert sh.drift_leader([op(True)], shard_index=None)() is True
    assert sh.drift_leader([op(True)], shard_index=1)() is False  # pinned to shard 1: its one op is shard 1's


class _Loop:
    """A shard's controller loop: `run` ticks once; with `write` (an Event), its tick holds a write in flight
    until it is set (a PUT that passed the fence, not yet answered)."""

    def __init__(self, write: Any = None) -> None:
        import threading

        self.write, self.in_flight, self.started = write, False, threading.Event()

    def run(self, stop: Any, *, tick_s: float) -> None:
        if self.write is not None:
            self.in_flight = True
            self.started.set()
            self.write.wait()
            self.in_flight = False
        stop.wait()


def test_the_leases_are_handed_over_only_once_no_shards_loop_has_a_write_in_flight() -> None:
    """`canary controller run --shards 2 --leader-elect` stopping (SIGTERM): shard 0's loop ran in the main
    thread, the others in daemon threads nobody waited for, and every Lease was released as soon as shard 0's
    loop returned. A standby takes a released Lease at its next try, while shard 1's write that had passed the
    fence was still in flight: two writers. Now the Leases are released once every loop ended its tick; a loop
    still mid-tick after the renew deadline leaves the Leases to lapse (`controller.release_skipped`)."""
    import threading

    from structlog.testing import capture_logs

    from canary.logs import get as get_logger

    held, stop = threading.Event(), threading.Event()
    main, busy, idle = _Loop(), _Loop(write=held), _Loop()
    released: list[tuple[list[int], bool]] = []  # at each release: the loops released, was a write in flight?
    done = threading.Thread(target=sh.run_loops, args=([main, busy, idle], stop),
                            kwargs={"tick_s": 1.0, "release": lambda loops: released.append((loops, busy.in_flight)),
                                    # the idle loop's thread must wake and end within it: 0.2 s raced a loaded runner;
                                    # the busy loop stays mid-write until after the join whatever it is
                                    "join_s": 3.0, "log": get_logger()})
    with capture_logs() as logs:
        done.start()
        assert busy.started.wait(30)  # shard 1 is mid-write ...
        stop.set()                    # ... when the replica is told to stop
        done.join(30)
    held.set()
    assert not done.is_alive()
    # shard 1's Lease is not released under its write in flight (it lapses on its own); shards 0 and 2 are idle:
    # theirs are handed over at once, not left to lapse beside it (the review of decision 346)
    assert released == [([0, 2], True)]
    skipped = [e for e in logs if e["event"] == "controller.release_skipped"]
    assert len(skipped) == 1 and skipped[0]["loops"] == ["canary-shard-loop-1"]

    stop2 = threading.Event()
    quick = _Loop(write=stop2)  # its write is answered when the stop comes: the loop ends its tick in time
    released.clear()
    busy = quick
    done = threading.Thread(target=sh.run_loops, args=([_Loop(), quick], stop2),
                            kwargs={"tick_s": 1.0, "release": lambda loops: released.append((loops, quick.in_flight)),
                                    "join_s": 30.0, "log": get_logger()})
    done.start()
    assert quick.started.wait(30)
    stop2.set()
    done.join(60)
    assert not done.is_alive() and released == [([0, 1], False)]  # released once, with nothing in flight


def test_each_ended_loops_side_writes_are_closed_before_its_lease_is_handed_over() -> None:
    """A clean stop writes what the histories hold, fenced on the Lease still held (decision 891): each ended
    loop's `close_side_writes`, bounded by what is left of the renew deadline, then `release`."""
    import threading

    from canary.logs import get as get_logger

    order: list[Any] = []

    class Ended(_Loop):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def close_side_writes(self, bound: float) -> bool:
            order.append(("closed", self.name, 0 < bound <= 5.0))
            return True

    stop = threading.Event()
    stop.set()  # each loop returns at once
    sh.run_loops([Ended("a"), Ended("b")], stop, tick_s=1.0, release=lambda loops: order.append(("released", loops)),
                 join_s=5.0, log=get_logger())
    assert order == [("closed", "a", True), ("closed", "b", True), ("released", [0, 1])]

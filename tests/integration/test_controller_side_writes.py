"""A rollout's side writes (its history ConfigMap, its Kubernetes Events) never hold another rollout's rollback.

Two rollouts against the strict Kubernetes API emulator, watched, a fake clock: r0 (m0, v2: promotes) and r1
(m1, v3: 60% slower, rolled back). Once both split traffic, the ConfigMap API and the Events API stop answering
(every request held by the emulator until the test releases it). r1's stable-100% write must still land, at its
own tick, while those requests are held: the side writes are queued to the controller's writer threads, not made
in the worker (decision 890)."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest
import structlog

from canary import rollout as rl
from canary.history_store import ConfigMapStore, read
from canary.sandbox.kubeapi import Fault, KubeAPIServer
from canary.sandbox.promserver import PromServer
from canary.side_writes import SideWriter
from tests import fleet
from tests.integration.test_controller_scale import Clock
from tests.integration.test_controller_watch import ISTIO, N, make, status, step, until
from tests.support.prom import HistoryPool

pytestmark = pytest.mark.integration
WRITES = frozenset({"GET", "POST", "PUT", "PATCH"})


def weights(api: KubeAPIServer, vs: str) -> list[int]:
    return [d["weight"] for d in api.get(ISTIO, "virtualservices", "ml", vs)["spec"]["http"][0]["route"]]


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    return fleet.pooled_prometheus(history_pool, N)  # test_controller_watch's fleet: one backfill for both


def _two(prometheus: PromServer, side: SideWriter) -> Iterator[tuple[KubeAPIServer, Any, Clock]]:
    api = fleet.start_api(2)
    clock = Clock(time.time())
    op, stop, client = make(api, prometheus, clock, workers=2, side_writes=side)
    # a request held by the emulator is held for the client too (no 5 s timeout ends it): before the writer
    # threads, the tick waited on it until the test released it
    fenced = op._history_store

    def store() -> ConfigMapStore:  # the controller's own store (its fence on the Lease kept), never timing out
        s = fenced()
        s.timeout_s = 600
        return s
    op._history_store = store  # type: ignore[method-assign]
    try:
        yield api, op, clock
    finally:
        stop.set()
        side.close(10)  # its writer threads end (each test's were left waiting, two a test)
        client.close()
        api.stop()


@pytest.fixture
def two(prometheus: PromServer) -> Iterator[tuple[KubeAPIServer, Any, Clock]]:
    yield from _two(prometheus, SideWriter())


@pytest.fixture
def two_full(prometheus: PromServer) -> Iterator[tuple[KubeAPIServer, Any, Clock]]:
    """As `two`, its writer's queue full at once: one thread, 2 jobs at most."""
    yield from _two(prometheus, SideWriter(threads=1, max_pending=2))


def _split_both(api: KubeAPIServer, op: Any, clock: Clock) -> None:
    api.handler.put_object(fleet.rollout_object(0, "v2"))
    api.handler.put_object(fleet.rollout_object(1, "v3"))
    for _ in range(40):
        step(api, op, clock)
        if weights(api, "m0")[1] > 0 and weights(api, "m1")[1] > 0:
            return
    raise AssertionError("both rollouts never split traffic")


def _hang(api: KubeAPIServer) -> threading.Event:
    """The ConfigMap and Events APIs stop answering until the returned event is set."""
    hold = threading.Event()
    for plural in ("configmaps", "events"):
        api.handler.faults.append(Fault(0, 10_000, WRITES, plural, hold=hold))
    return hold


def test_a_rollback_is_not_held_behind_hung_history_and_event_writes(two: Any) -> None:
    api, op, clock = two
    _split_both(api, op, clock)
    hold = _hang(api)
    ticks, done, stop = [0], threading.Event(), threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set() and weights(api, "m1") != [100, 0]:
                step(api, op, clock)
                ticks[0] += 1
        finally:
            done.set()

    t0 = time.monotonic()
    runner = threading.Thread(target=loop, daemon=True)
    runner.start()
    try:
        until(lambda: weights(api, "m1") == [100, 0], "r1's stable-100% write while its side writes hang", 30)
        held_s = time.monotonic() - t0
        print(f"r1 at stable 100% after {ticks[0]} ticks, {held_s:.2f} s, the ConfigMap and Events APIs hung")
        assert not hold.is_set()
    finally:
        stop.set()
        hold.set()
        done.wait(60)
        api.handler.faults.clear()
    # released, the queued writes land, in order: r1's history ends rolled back, its looks before its end
    assert op.side.idle(60)
    assert history(api, "m1")["phase"] == rl.ROLLED_BACK and history(api, "m1")["looks"]


def history(api: KubeAPIServer, vs: str) -> dict[str, Any]:
    cm = api.get("", "configmaps", "ml", f"{vs}-canary-history") or {}
    return read(cm.get("data") or {}, where=vs)


def test_a_rollbacks_end_is_written_into_its_history_though_the_queue_was_full(two_full: Any) -> None:
    """The ConfigMap API hung, the queue full (looks and Events refused, said): r1's end is still queued, and
    written once the API answers. Refused, r1's history showed it in progress at its last step for ever
    (decision 941)."""
    api, op, clock = two_full
    _split_both(api, op, clock)
    hold = _hang(api)
    # the writer's one thread held from here (a look's observation writes nothing short of a flush: on the
    # hung API alone, the queue filled only at the run's first flush, in some runs never)
    op.side.submit("ml/other", "history", lambda: hold.wait(60))
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(60):
                step(api, op, clock)
                if weights(api, "m1") == [100, 0] and status(api, "r1").get("phase") == rl.ROLLED_BACK:
                    break
        assert weights(api, "m1") == [100, 0]
        assert {e["rollout"] for e in logs if e["event"] == "side_write.dropped"} >= {"ml/r1"}  # the queue was full
        assert not hold.is_set()
    finally:
        hold.set()
        api.handler.faults.clear()
    assert op.side.idle(60)
    assert history(api, "m1")["phase"] == rl.ROLLED_BACK


def test_a_clean_stop_writes_what_the_histories_hold_and_says_what_a_hung_api_kept(two: Any) -> None:
    api, op, clock = two
    _split_both(api, op, clock)
    for _ in range(5):
        step(api, op, clock)
        assert op.side.idle(60)
        held = {key: rec.pending for key, rec in op._histories.items()}
        if held.get("ml/r0"):
            break
    assert held["ml/r0"]  # looks short of a flush (`history_flush_every`): not written at a stop before
    before = len(history(api, "m0").get("looks", []))
    assert op.close_side_writes(30)
    assert all(not rec.pending for rec in op._histories.values())
    assert len(history(api, "m0")["looks"]) == before + held["ml/r0"]


def test_a_stop_with_the_configmap_api_hung_ends_within_its_bound_and_says_what_is_unwritten(two: Any) -> None:
    api, op, clock = two
    _split_both(api, op, clock)
    hold = _hang(api)
    try:
        step(api, op, clock)  # a look each: records short of a flush
        with structlog.testing.capture_logs() as logs:
            assert not op.close_side_writes(0.5)
        unwritten = {e["rollout"] for e in logs if e["event"] == "side_write.unwritten"}
        assert unwritten == {"ml/r0", "ml/r1"}
    finally:
        hold.set()


def test_a_side_write_queued_while_leading_and_made_after_the_lease_is_lost_does_not_land(two: Any) -> None:
    """The Lease is asked when a deferred write is made, not when it was queued: the history records and the
    Events a tick queued, made once this replica no longer leads, are refused (nothing lands), and the same
    writes made while it leads land (so the test can fail). Decision 942."""
    api, op, clock = two
    _split_both(api, op, clock)
    leading = [True]
    op.is_leader = lambda: leading[0]  # what the history store's fence and `_cr_event` ask when they write
    op.fenced.may_write = op.is_leader  # the VirtualService Events' (`FencedRouter.record_event`)
    real = api.handler._serve
    landed: list[str] = []

    def serve(method: str, request: Any, kind: Any) -> Any:
        out = real(method, request, kind)
        if method in WRITES - {"GET"} and ("/configmaps" in request.url.path or "/events" in request.url.path):
            landed.append(f"{method} {request.url.path}")
        return out

    api.handler._serve = serve  # type: ignore[method-assign]
    for lead in (True, False):
        leading[0] = True
        gate = threading.Event()
        for key in ("ml/a", "ml/b"):  # both writer threads held: what the ticks queue waits
            op.side.submit(key, "history", lambda: gate.wait(60))
        for _ in range(3):
            step(api, op, clock)
        for key, rec in op._histories.items():  # a flush of every recorder queued too, as a clean stop does
            op.side.submit(key, "history", rec.flush)
        queued = op.side.pending()
        leading[0] = lead
        landed.clear()
        gate.set()
        assert op.side.idle(60)
        assert queued > 2
        if lead:
            assert any("/configmaps" in w for w in landed), landed  # made while leading: they land
        else:
            assert landed == [], landed  # made after the Lease was lost: none lands


class _Seen(SideWriter):
    """The real writer; `wait` first lets the test's held job go (what the tick waits for, it waits on)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def wait(self, key: str, timeout_s: float) -> bool:
        self.gate.set()
        return super().wait(key, timeout_s)


def test_an_ends_history_record_is_written_before_its_status_says_it_ended(prometheus: PromServer) -> None:
    """The end's tick waits for its rollout's side writes before its status write (`end_write_wait_s`): a
    SIGKILL after the status said rolled back found the history in progress for ever, as no later tick of any
    process writes an end into it (941's addendum). r1's writes are held until the tick waits on them, or until
    its rolled-back status write arrives (without the wait): the history is read as that status write lands."""
    gate = threading.Event()
    gen = _two(prometheus, _Seen(gate))
    api, op, clock = next(gen)
    try:
        op.end_write_wait_s = 60.0  # on this loaded host: the wait ends by the write, not by its bound
        _split_both(api, op, clock)
        real = api.handler._serve
        at_status: list[str] = []

        def serve(method: str, request: Any, kind: Any) -> Any:
            if method == "PATCH" and request.url.path.endswith("/canaryrollouts/r1/status") and not at_status:
                body = api.handler._body(request) or {}
                if (body.get("status") or {}).get("phase") == rl.ROLLED_BACK:
                    at_status.append(str(history(api, "m1").get("phase")))
                    gate.set()
            return real(method, request, kind)

        api.handler._serve = serve  # type: ignore[method-assign]
        op.side.submit("ml/r1", "history", lambda: gate.wait(60))  # r1's lane held
        for _ in range(60):
            step(api, op, clock)
            if status(api, "r1").get("phase") == rl.ROLLED_BACK:
                break
        assert at_status == [rl.ROLLED_BACK]
    finally:
        gate.set()
        for _ in gen:
            pass

"""`canary.throttle`: the one "log once per cause, then at most every minute" rule the informer, the Prometheus
client and the controller (`rollout.invalid`, `metrics.snapshot_failed`) each had a copy of (decision 123)."""

from __future__ import annotations

import threading

from canary.throttle import REPEAT_LOG_S, Throttle
from tests.fakes import FakeClock


def test_once_per_cause_then_every_minute_with_the_count_left_out() -> None:
    clock = FakeClock()
    t = Throttle(clock=clock.now)
    assert t.due("k", "down") == 0  # the first
    assert [t.due("k", "down") for _ in range(3)] == [None, None, None]
    clock.t += REPEAT_LOG_S - 0.001
    assert t.due("k", "down") is None
    clock.t += 0.001
    assert t.due("k", "down") == 4 and t.logged_at("k") == clock.t  # a minute on: logged, with the four left out
    assert t.due("other", "down") == 0  # keys are streams of their own


def test_a_new_cause_is_logged_at_once_carrying_the_count_or_not() -> None:
    for carry, want in ((True, 2), (False, 0)):
        t = Throttle(clock=FakeClock().now, carry=carry)
        t.due("k", "a"), t.due("k", "a"), t.due("k", "a")
        assert t.due("k", "b") == want  # carry: the lines left out since the last line (the informer, the snapshot)
        assert t.due("k", "a") == 0  # back to the first cause: a change again, nothing left out since


def test_peek_records_nothing_and_forget_starts_afresh() -> None:
    t = Throttle(clock=FakeClock().now)
    assert t.due("k", "a", peek=True) == 0 and t.logged_at("k") is None
    t.due("k", "a")
    assert t.due("k", "a", peek=True) is None and t.due("k", "a") is None
    assert t.due("k", "a", peek=True) is None  # still one left out, not two
    t.forget("k")
    assert t.due("k", "a") == 0 and t.keys() == ["k"]


def test_at_most_max_keys_are_kept() -> None:
    t = Throttle(clock=FakeClock().now, max_keys=3)
    for k in "abc":
        t.due(k, k)
    t.due("d", "d")
    assert t.keys() == ["d"]  # dropped, never grown without bound
    assert t.due("a", "a") == 0


def test_shared_by_threads_each_line_counted_once() -> None:
    t = Throttle(clock=FakeClock().now)
    out: list[int | None] = []

    def ask() -> None:
        for _ in range(500):
            out.append(t.due("k", "down"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert out.count(0) == 1 and out.count(None) == 1999

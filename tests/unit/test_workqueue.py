"""The controller's due-time work queue (canary/workqueue.py): time is passed in, never read."""

from __future__ import annotations

import math

from canary.workqueue import DueQueue


def test_keys_come_out_in_due_order_and_only_when_due() -> None:
    q = DueQueue()
    q.schedule("b", 20.0)
    q.schedule("a", 10.0)
    q.schedule("c", 30.0)
    assert q.pop_due(5.0) == []
    assert q.pop_due(25.0) == ["a", "b"]
    assert q.pop_due(100.0) == ["c"] and len(q) == 0


def test_the_earliest_time_wins_and_a_change_makes_it_due_now() -> None:
    q = DueQueue()
    q.schedule("a", 30.0)
    q.schedule("a", 40.0)  # later: ignored
    assert q.due_at("a") == 30.0
    q.touch("a", 12.0)  # a watch event
    assert q.pop_due(12.0) == ["a"] and q.pop_due(100.0) == []  # held once, the stale entry skipped


def test_a_key_waiting_for_a_change_is_never_due_by_time() -> None:
    q = DueQueue()
    q.schedule("paused", math.inf)
    assert q.pop_due(1e12) == [] and "paused" in q
    q.touch("paused", 5.0)
    assert q.pop_due(5.0) == ["paused"]


def test_failures_back_off_per_key_up_to_a_cap_and_success_resets() -> None:
    q = DueQueue(base_delay_s=0.5, max_delay_s=4.0)
    delays = [q.retry_later("bad", 0.0) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    q.schedule("good", 1.0)
    assert q.pop_due(1.0) == ["bad", "good"]  # the failing key never holds back another
    q.forget("bad")
    assert q.retry_later("bad", 10.0) == 0.5


def test_limit_and_drop() -> None:
    q = DueQueue()
    for i in range(5):
        q.schedule(f"k{i}", float(i))
    assert q.pop_due(10.0, limit=2) == ["k0", "k1"]
    q.drop("k2")
    assert q.pop_due(10.0) == ["k3", "k4"]


def test_a_rollout_failing_for_hours_is_still_retried_at_the_cap() -> None:
    """After 1,025 failures in a row (under three hours at the 10 s cap: a rollback write the API refuses all
    that time) `base * 2 ** (n - 1)` overflowed a float: retry_later raised OverflowError, the rollout was
    never due again, and its stable-100% write was never retried."""
    q = DueQueue(base_delay_s=0.5, max_delay_s=10.0)
    now = 0.0
    for _ in range(5_000):
        delay = q.retry_later("ml/m0", now)
        assert q.pop_due(now + delay) == ["ml/m0"]
        now += delay
    assert delay == 10.0 and q.retry_later("ml/m0", now) == 10.0 and q.due_at("ml/m0") == now + 10.0

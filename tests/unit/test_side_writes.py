"""`canary.side_writes.SideWriter`: in order per key, a hung key holds no other, bounded, a clean stop said.

Every wait is on an event a job sets or the test releases; no assertion depends on when a sleep ends."""

from __future__ import annotations

import threading

import structlog

from canary.side_writes import SideWriter


def _job(done: list[str], name: str, hold: threading.Event | None = None, started: threading.Event | None = None):
    def run() -> None:
        if started is not None:
            started.set()
        if hold is not None:
            hold.wait(30)
        done.append(name)
    return run


def test_a_hung_keys_writes_hold_no_other_key_and_each_key_runs_in_order() -> None:
    w = SideWriter(threads=2)
    done: list[str] = []
    hold, started = threading.Event(), threading.Event()
    try:
        w.submit("ml/a", "history", _job(done, "a1", hold, started))
        assert started.wait(10)
        w.submit("ml/a", "history", _job(done, "a2"))  # behind a1, though a thread is free
        for i in range(5):
            w.submit("ml/b", "event", _job(done, f"b{i}"))
        finished = threading.Event()
        w.submit("ml/b", "event", finished.set)
        assert finished.wait(10)
        assert done == [f"b{i}" for i in range(5)] and w.pending("ml/a") == 2
        assert w.wait("ml/b", 10) and not w.wait("ml/a", 0.05)  # a key's own jobs waited for, not another's
        hold.set()
        assert w.wait("ml/a", 10) and w.idle(10)
        assert done[-2:] == ["a1", "a2"]
    finally:
        hold.set()
        w.close(5)


def test_a_full_queue_refuses_and_says_so_never_waits() -> None:
    """A full queue refuses a look's write, never an end's; only a stop refuses that."""
    w = SideWriter(threads=1, max_pending=2)
    hold, started = threading.Event(), threading.Event()
    done: list[str] = []
    try:
        assert w.submit("ml/a", "history", _job(done, "a1", hold, started))
        assert started.wait(10)
        assert w.submit("ml/a", "event", _job(done, "a2"))
        with structlog.testing.capture_logs() as logs:
            assert not w.submit("ml/b", "history", _job(done, "b1"))
        said = [e for e in logs if e["event"] == "side_write.dropped"]
        assert len(said) == 1 and said[0]["rollout"] == "ml/b" and said[0]["write"] == "history"
        assert w.dropped == 1
        # a rollout's end is taken past the bound, after its key's earlier jobs (decision 941)
        assert w.submit("ml/b", "history", _job(done, "b-end"), end=True) and w.pending() == 3
    finally:
        hold.set()
        w.close(5)
    assert done == ["a1", "a2", "b-end"]
    assert not w.submit("ml/b", "history", _job(done, "late-end"), end=True)  # only a stop refuses an end


def test_a_clean_stop_runs_what_is_queued_and_says_what_it_could_not_write() -> None:
    w = SideWriter(threads=2)
    done: list[str] = []
    for i in range(3):
        w.submit("ml/a", "history", _job(done, f"a{i}"))
    assert w.close(10) and done == ["a0", "a1", "a2"]

    w = SideWriter(threads=1)
    hold, started = threading.Event(), threading.Event()
    try:
        w.submit("ml/a", "history", _job(done, "hung", hold, started))
        assert started.wait(10)
        w.submit("ml/a", "event", _job(done, "after"))
        w.submit("ml/b", "history", _job(done, "other"))  # the one thread is held: it cannot run either
        with structlog.testing.capture_logs() as logs:
            assert not w.close(0.2)
            assert not w.submit("ml/c", "event", _job(done, "late"))  # closed: refused, said
        unwritten = {e["rollout"]: e for e in logs if e["event"] == "side_write.unwritten"}
        assert set(unwritten) == {"ml/a", "ml/b"}
        assert unwritten["ml/a"]["running"] and unwritten["ml/a"]["kinds"] == ["event"]
        assert unwritten["ml/b"]["writes"] == 1 and not unwritten["ml/b"]["running"]
        assert [e["rollout"] for e in logs if e["event"] == "side_write.dropped"] == ["ml/c"]
    finally:
        hold.set()
    assert "after" not in done and "other" not in done and "late" not in done


def test_without_threads_each_write_is_made_at_once_in_the_caller() -> None:
    w = SideWriter(threads=0)
    done: list[str] = []
    w.submit("ml/a", "history", _job(done, "a"))
    assert done == ["a"] and w.pending() == 0


def test_a_job_that_raises_is_said_and_the_next_one_runs() -> None:
    w = SideWriter(threads=1)
    done: list[str] = []

    def bad() -> None:
        raise ValueError("boom")
    with structlog.testing.capture_logs() as logs:
        w.submit("ml/a", "history", bad)
        w.submit("ml/a", "history", _job(done, "a2"))
        assert w.close(10)
    assert done == ["a2"]
    assert [(e["rollout"], e["error"]) for e in logs if e["event"] == "side_write.failed"] == [("ml/a", "ValueError: boom")]

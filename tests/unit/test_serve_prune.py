"""`canary serve`'s `--state-ttl` prune while it serves (canary/serve_prune.py, decision 202).

The period's timer is the test's: `Stepped._wait` blocks until the test says a period is up (`period_up`) and
tells the test each time the thread is back in it (the round before it done); both clocks are fake. No sleep.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from canary.serve_prune import MAX_EVERY_S, StatePruner, every_s
from canary.serve_session import new_session
from canary.serve_store import SessionStore

T0 = 1_000_000.0
TTL = 168 * 3600.0


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


class Stepped(StatePruner):
    """The period's timer replaced: a wait ends when the test says a period is up, or on a wake (Prometheus
    answered, `stop`), as the real one's does before its timeout."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.waiting: queue.Queue[float] = queue.Queue()  # one entry each time the thread is back in its wait

    def _wait(self, timeout_s: float) -> None:
        self.waiting.put(timeout_s)
        self._wake.wait()

    def period_up(self) -> None:
        self._wake.set()

    def back_in_wait(self) -> float:
        """Wait for the thread to be back in its wait (the round before it done); the period it waits."""
        return self.waiting.get(timeout=30)


def _idle(store: SessionStore, name: str, *, at: float) -> Path:
    """A session last written at `at` by both clocks: its `updated_at` and its file's time."""
    s = new_session(key=f"argo/ml/{name}", revision="v2", policy="ml", model=name, namespace="ml",
                    stable_version="v1", canary_version="v2", now=at)
    store.save(s)
    p = store.path(s.key, s.revision)
    os.utime(p, (at, at))
    return p


def _pruner(store: SessionStore, clocks: dict[str, float | None], log: Log, **kw: Any) -> Stepped:
    return Stepped(store, ttl_s=TTL, settled_now=lambda: clocks["service"], log=log, began=0.0,
                   host_clock=lambda: clocks["host"], **kw)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(("ttl_s", "every"), [(168 * 3600.0, 3600.0), (4 * 3600.0, 3600.0), (3600.0, 900.0),
                                              (600.0, 150.0), (2.0, 1.0), (0.001, 1.0)])
def test_the_period_is_a_quarter_of_the_ttl_at_most_an_hour_at_least_a_second(ttl_s: float, every: float) -> None:
    assert every_s(ttl_s) == every
    assert every_s(ttl_s) <= MAX_EVERY_S


def test_a_revision_going_idle_past_the_ttl_while_serving_is_forgotten_at_the_next_period_by_both_clocks(
        tmp_path: Path) -> None:
    """Pruned once per process, a revision that went idle past the TTL while the service ran stayed until a
    restart. Each period now prunes it, by the start-up rule: idle past the TTL by the service's clock
    (Prometheus's) and by the host's both; a round that forgot nothing says nothing."""
    store, log = SessionStore(tmp_path), Log()
    old = _idle(store, "old", at=T0)
    fresh = _idle(store, "fresh", at=T0 + TTL - 10)
    clocks: dict[str, float | None] = {"service": T0 + 60, "host": T0 + 60}
    pruner = _pruner(store, clocks, log)
    pruner.start()
    try:
        assert pruner.back_in_wait() == 3600.0  # a quarter of 168 h, at most an hour
        pruner.period_up()
        pruner.back_in_wait()
        assert old.exists() and fresh.exists() and log.lines == []  # nothing idle: nothing said
        clocks["host"] = T0 + TTL + 1  # the host's clock past the TTL, Prometheus's not: kept (decision 166)
        pruner.period_up()
        pruner.back_in_wait()
        assert old.exists() and log.lines == []
        clocks["host"], clocks["service"] = T0 + 60, T0 + TTL + 1  # Prometheus's past it, the host's not: kept
        pruner.period_up()
        pruner.back_in_wait()
        assert old.exists() and log.lines == []
        clocks["host"] = T0 + TTL + 1  # both: forgotten; the one written since stays
        pruner.period_up()
        pruner.back_in_wait()
        assert not old.exists() and fresh.exists()
        ((level, event, fields),) = log.lines
        assert (level, event, fields["pruned"], fields["cause"]) == ("info", "serve.state_pruned", 1, "period")
    finally:
        pruner.stop()
    assert not pruner.running


def test_nothing_is_pruned_while_prometheuss_time_is_unknown_and_its_first_answer_prunes_at_once_said(
        tmp_path: Path) -> None:
    store, log = SessionStore(tmp_path), Log()
    old = _idle(store, "old", at=T0)
    clocks: dict[str, float | None] = {"service": None, "host": T0 + 2 * TTL}
    pruner = _pruner(store, clocks, log)
    pruner.start()
    try:
        pruner.back_in_wait()
        pruner.period_up()
        pruner.back_in_wait()
        assert old.exists() and log.lines == []  # the host's clock alone forgets nothing
        clocks["service"] = T0 + TTL / 2  # Prometheus answered: a round now, said even when it forgets nothing
        pruner.prometheus_answered()
        pruner.back_in_wait()
        assert old.exists()
        assert [(e, f["pruned"], f["cause"]) for _, e, f in log.lines] == [
            ("serve.state_pruned", 0, "prometheus_answered")]
    finally:
        pruner.stop()


def test_a_failed_round_is_said_as_a_warning_and_the_next_period_prunes_again(tmp_path: Path) -> None:
    class Refusing(SessionStore):
        refuse = True

        def prune(self, **kw: Any) -> int:
            if self.refuse:
                raise OSError("the volume went away")
            return super().prune(**kw)

    store, log = Refusing(tmp_path), Log()
    old = _idle(store, "old", at=T0)
    pruner = _pruner(store, {"service": T0 + 2 * TTL, "host": T0 + 2 * TTL}, log)
    pruner.start()
    try:
        pruner.back_in_wait()
        pruner.period_up()
        pruner.back_in_wait()
        ((level, event, fields),) = log.lines
        assert (level, event, fields["pruned"], fields["error"]) == (
            "warning", "serve.state_pruned", None, "the volume went away")
        store.refuse = False
        pruner.period_up()
        pruner.back_in_wait()
        assert not old.exists() and log.lines[-1][2]["pruned"] == 1
    finally:
        pruner.stop()


def test_stop_waits_for_the_round_running_which_deletes_nothing_more_and_nothing_runs_after_it(
        tmp_path: Path) -> None:
    """Decision 180: nothing of a stopped `canary serve` runs after its stop. A round running at the stop ends
    before `stop` returns, deleting no file after the stop was asked; no round starts after it."""
    deciding, go_on = threading.Event(), threading.Event()

    class Held(SessionStore):
        def _delete_as_read(self, p: Path, seen: os.stat_result, *, missing: bool = True) -> bool:
            if not deciding.is_set():  # the first delete waits for the test: the stop lands here
                deciding.set()
                assert go_on.wait(30)
            return super()._delete_as_read(p, seen, missing=missing)

    store, log = Held(tmp_path), Log()
    files = [_idle(store, name, at=T0) for name in ("a", "b", "c")]
    pruner = _pruner(store, {"service": T0 + 2 * TTL, "host": T0 + 2 * TTL}, log)
    pruner.start()
    pruner.back_in_wait()
    pruner.period_up()
    assert deciding.wait(30)
    stopping = threading.Thread(target=pruner.stop, kwargs={"wait_s": 60})
    stopping.start()
    assert pruner._stop.wait(30)  # the stop is asked ...
    stopping.join(0.2)
    assert stopping.is_alive()  # ... and waits for the round, which the test holds
    go_on.set()
    stopping.join(30)
    assert not stopping.is_alive() and not pruner.running
    assert sum(p.exists() for p in files) == 2  # the delete decided before the stop; none after it
    said = list(log.lines)
    pruner.prometheus_answered()
    pruner.start()  # never after a stop
    assert pruner.prune_once() is None
    assert not pruner.running and sum(p.exists() for p in files) == 2 and log.lines == said

"""`canary serve`'s `--state-ttl` prune while it serves: again every `every_s(ttl)` (decision 202).

The start-up prune (decision 166), or the one run when Prometheus first answered (174), was the only one a
process ran: a service up for months, restarted for upgrades only, forgot nothing idle past the TTL between
restarts, `--max-revisions` the only bound on the directory. `StatePruner` is the one thread that prunes
while the service runs, by the same rule as at start-up (`SessionStore.prune`: idle past the TTL by both
Prometheus's clock as the Service anchored it and the host's; a revision a call holds, or wrote since it was
read, kept), and it stops with the service: nothing of it runs after `stop` returns (decision 180).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from canary.serve_store import SessionStore

MAX_EVERY_S = 3600.0  # an hour: the default TTL (168 h) is then kept at most 169 h
MIN_EVERY_S = 1.0  # a TTL of seconds (a test, a demo) never makes the thread scan the directory in a loop


def every_s(ttl_s: float) -> float:
    """Seconds between two prunes while serving, for a `--state-ttl` of `ttl_s` seconds: a quarter of the TTL,
    at most `MAX_EVERY_S` (1 h), at least `MIN_EVERY_S` (1 s). A revision idle past the TTL by both clocks is
    forgotten at most this long after it went past: by 1.25 x TTL and by TTL + 1 h, whichever is sooner. A round
    stats every session file (at most `--max-revisions`) and reads only those past the TTL on the host's clock:
    measured for 1,000 files on a loaded 2-core host, 15-20 ms, 150 ms when every one is read, so a shorter period
    would cost little; an hour is what an operator can read the TTL to within, for a TTL of days."""
    return min(max(ttl_s / 4.0, MIN_EVERY_S), MAX_EVERY_S)


class StatePruner:
    """Prunes `store` every `every` seconds (default `every_s(ttl_s)`) on a thread of its own, and at once when
    told Prometheus first answered (`prometheus_answered`, for a service that started without its time).

    `settled_now()` is the Service's clock once it is Prometheus's, None while it is not (`Service.settled_now`):
    a round then prunes nothing (decision 166: a host clock ahead must not forget live sessions). `host_clock()`
    (default `time.time()`) is the host's wall clock, which the files' times are read against. Logged
    `serve.state_pruned` (`pruned`, `cause`: `period` or `prometheus_answered`, `after_s` since `began`, a
    `time.monotonic()`) when a round forgot something, when it is the one run for Prometheus's first answer (said
    even when it forgot nothing, as before), and at warning with `error` (`pruned` null) when it failed; a round
    that forgot nothing is not said (one line an hour saying 0 would bury the lines that matter)."""

    def __init__(self, store: SessionStore, *, ttl_s: float, settled_now: Callable[[], float | None], log: Any,
                 began: float, every: float | None = None, host_clock: Callable[[], float] | None = None) -> None:
        self.store, self.ttl_s, self._settled_now, self.log, self._began = store, ttl_s, settled_now, log, began
        self._host_clock = host_clock
        self.every_s = every_s(ttl_s) if every is None else every
        self._stop = threading.Event()  # `stop`: no round starts, the one running deletes nothing more
        self._wake = threading.Event()  # a round now: Prometheus answered, or `stop`
        self._answered = False  # Prometheus's first answer came since the last round began
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once; never after `stop`)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="canary-serve-prune", daemon=True)
            self._thread.start()

    def prometheus_answered(self) -> None:
        """A round now, said whatever it forgets (`Service.when_settled`'s call: Prometheus's clock is known)."""
        with self._lock:
            self._answered = True
        self._wake.set()

    def stop(self, wait_s: float = 5.0) -> None:
        """No round after this; a round running deletes no more files (`SessionStore.prune`'s `stopped`) and is
        waited for, up to `wait_s` seconds (a disk that hangs a `stat` longer is not waited on). Idempotent."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=wait_s)

    @property
    def running(self) -> bool:
        """Whether the thread is alive (started and not yet ended)."""
        return self._thread is not None and self._thread.is_alive()

    def _wait(self, timeout_s: float) -> None:
        """Until a period is up or a round is asked for (`_wake`). The scheduler: tests replace it."""
        self._wake.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait(self.every_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                answered, self._answered = self._answered, False
            self.prune_once(cause="prometheus_answered" if answered else "period")

    def prune_once(self, *, cause: str = "period") -> int | None:
        """One round, on the calling thread: how many revisions were forgotten; None when Prometheus's time is not
        known yet (nothing pruned), when the prune failed (said), or after `stop`."""
        if self._stop.is_set():
            return None
        now = self._settled_now()
        if now is None:
            return None
        try:
            n = self.store.prune(older_than_s=self.ttl_s, now=now, host_now=(self._host_clock or time.time)(),
                                 stopped=self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - a thread of its own: said, never raised into nothing
            self.log.warning("serve.state_pruned", pruned=None, cause=cause, after_s=self._after_s(), error=str(exc)[:300])
            return None
        if n or cause == "prometheus_answered":
            self.log.info("serve.state_pruned", pruned=n, cause=cause, after_s=self._after_s())
        return n

    def _after_s(self) -> float:
        return round(time.monotonic() - self._began, 1)

"""The controller's side writes, made by writer threads, never by the worker that ticks a rollout.

A rollout's history ConfigMap (`canary.history_store`: a GET and a PUT, up to 3 times, 5 s each) and its
Kubernetes Events (a request each, 3 s) are observations of the rollout, not a part of it. Made in the worker,
a ConfigMap or Events API that hung held the tick they were made in, and so every other rollout's look and
rollback behind it: a breach of rollout B waited for rollout A's history (decision 890). Here they are queued
(`submit`) and made in order per rollout by `threads` writer threads; the worker goes on at once.

What it keeps of what they guaranteed:
  - per key (a rollout), jobs run one at a time in the order submitted: a history's records are written in
    order, never two flushes of one recorder at once;
  - one key's hung write holds only that key's later jobs and one writer thread; the others go on;
  - the queue is bounded (`max_pending` jobs): past it a job is refused and said (`side_write.dropped`), never
    waited for, so a hung API costs bounded memory; but never a rollout's end (`end=True`: the observation that
    writes its end into its history, one per rollout that ends), as notify never drops a rollback's post: dropped,
    its history showed a rolled-back rollout as still in progress at its last step for ever (decision 941);
  - `close(timeout_s)` stops taking jobs, lets the queued ones run for at most `timeout_s` and says what it could
    not write (`side_write.unwritten`, per key); a clean stop of `canary controller run` calls it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable

from canary.logs import get as get_logger

MAX_PENDING = 2000  # jobs queued at most, all keys together (a history job holds one state: ~15 kB)
THREADS = 2  # writer threads: one key whose API hung holds one of them


class SideWriter:
    """Runs `submit`ted jobs on writer threads, in order per key. `threads=0`: each job runs in the caller, at
    once (what the controller did before; tools and tests that read what was written right after a tick)."""

    def __init__(self, *, threads: int = THREADS, max_pending: int = MAX_PENDING, log: Any = None) -> None:
        self.threads, self.max_pending = threads, max_pending
        self.log = log or get_logger(component="side_writes")
        self._cond = threading.Condition()
        self._queues: OrderedDict[str, deque[tuple[str, Callable[[], Any]]]] = OrderedDict()  # key -> its jobs
        self._busy: set[str] = set()  # keys a writer thread runs a job of now
        self._pending = 0
        self._closed = False
        self.dropped = 0  # jobs refused, queue full (or closed)
        self._workers = [threading.Thread(target=self._work, name=f"canary-side-writer-{i}", daemon=True)
                         for i in range(threads)]
        for w in self._workers:
            w.start()

    def submit(self, key: str, what: str, job: Callable[[], Any], *, end: bool = False) -> bool:
        """Queue `job` (`what` names it in the lines: "history", "event") after `key`'s earlier jobs; never waits.
        False when refused (queue full, or closed): said as `side_write.dropped`. `end`: a rollout's end, taken
        past the bound (only a stop refuses it)."""
        if self.threads == 0:
            self._run(key, what, job)
            return True
        with self._cond:
            if self._closed or (self._pending >= self.max_pending and not end):
                self.dropped += 1
                closed = self._closed
            else:
                self._queues.setdefault(key, deque()).append((what, job))
                self._pending += 1
                self._cond.notify()
                return True
        self.log.warning("side_write.dropped", rollout=key, write=what, pending=self.max_pending,
                         reason="the controller is stopping" if closed else
                         f"{self.max_pending} side writes already wait (a Kubernetes API that does not answer)",
                         note="traffic is not affected: this observation of the rollout (its history records or a "
                              "Kubernetes Event) is not written")
        return False

    def pending(self, key: str | None = None) -> int:
        """Jobs queued or running, of `key` or of all keys."""
        with self._cond:
            if key is None:
                return self._pending
            return len(self._queues.get(key, ())) + (key in self._busy)

    def wait(self, key: str, timeout_s: float) -> bool:
        """Wait until `key` has no job queued or running (at most `timeout_s`); whether it has none."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queues.get(key) or key in self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no job is queued or running (at most `timeout_s`); whether none is."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Take no more jobs; let the queued ones run for at most `timeout_s`; True when all ran. What is left is
        said once per key (`side_write.unwritten`) and dropped; a job running on a hung request stays on its
        (daemon) thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.idle(timeout_s):
            return True
        with self._cond:
            left = {k: [w for w, _ in q] for k, q in self._queues.items() if q}
            running = sorted(self._busy)
            for q in self._queues.values():
                q.clear()
            self._pending = len(self._busy)
            self._cond.notify_all()
        for key in sorted(set(left) | set(running)):
            writes = left.get(key, [])
            self.log.warning("side_write.unwritten", rollout=key, writes=len(writes), kinds=sorted(set(writes)),
                             running=key in running, timeout_s=timeout_s,
                             note="not written before the controller stopped: its history ConfigMap shows the "
                                  "rollout as of the last write that landed (the next leader's ticks add what they "
                                  "observe); traffic is not affected")
        return False

    def _next(self) -> tuple[str, str, Callable[[], Any]] | None:
        """The oldest job of a key no thread runs, taken (under the lock); None when there is none."""
        for key, q in self._queues.items():
            if q and key not in self._busy:
                what, job = q.popleft()
                self._busy.add(key)
                if not q:
                    del self._queues[key]
                else:
                    self._queues.move_to_end(key)  # its next job after the other keys' waiting ones
                return key, what, job
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = self._next()
                while taken is None:
                    if self._closed and not self._pending:
                        return
                    self._cond.wait()
                    taken = self._next()
            key, what, job = taken
            try:
                self._run(key, what, job)
            finally:
                with self._cond:
                    self._busy.discard(key)
                    self._pending = max(0, self._pending - 1)
                    self._cond.notify_all()

    def _run(self, key: str, what: str, job: Callable[[], Any]) -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - a side write never fails anything; the job says its own errors
            self.log.error("side_write.failed", rollout=key, write=what, error=f"{type(exc).__name__}: {exc}"[:300])

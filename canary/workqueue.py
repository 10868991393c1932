"""The controller's work queue: rollouts keyed by identity, ordered by when they are next due.

client-go's rate-limited delaying queue, reduced to what the controller needs. A rollout is
due when its next look, probe or deadline comes (`schedule`), at once when one of its
objects changed (`touch`, from a watch event), and after a failure with a per-rollout
exponential backoff (`retry_later`, reset by `forget` once it succeeds) so that one rollout
failing again and again costs a bounded share of the ticks and never delays the others.
A key is held at most once: the earliest time asked for wins. Thread-safe; no wall clock of
its own (callers pass `now`).
"""

from __future__ import annotations

import heapq
import math
import threading


def exponential_delay(base_s: float, failures: int, cap_s: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row: base_s * 2^(failures - 1), at most cap_s
    (0 for no failure). The exponent is capped: `base * 2 ** n` with n of 1,024 or more is an int no float
    holds, and raised OverflowError; after 1,025 failures in a row (under three hours at the controller's
    10 s cap, a rollback write the API refuses all that time) the rollout was never scheduled again and its
    stable-100% write never retried."""
    if failures <= 0:
        return 0.0
    return min(cap_s, base_s * 2.0 ** min(failures - 1, 60))


# the queue's backoff after a failure: doubled from BASE_DELAY_S, at most MAX_DELAY_S (a rollback's canary-subset
# re-pointing tried again by `canary promote` waits the same: `reconcile.subset_home_delay`)
BASE_DELAY_S, MAX_DELAY_S = 0.5, 10.0


class DueQueue:
    def __init__(self, *, base_delay_s: float = BASE_DELAY_S, max_delay_s: float = MAX_DELAY_S) -> None:
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}  # key -> the time it is held for (stale heap entries differ)
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._due)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._due

    def due_at(self, key: str) -> float | None:
        with self._lock:
            return self._due.get(key)

    def schedule(self, key: str, at: float) -> None:
        """Due at `at`, unless it is already due earlier. math.inf: only a change wakes it."""
        with self._lock:
            if key in self._due and self._due[key] <= at:
                return
            self._due[key] = at
            if math.isfinite(at):
                heapq.heappush(self._heap, (at, key))

    def touch(self, key: str, now: float) -> None:
        """One of its objects changed: due now."""
        self.schedule(key, now)

    def pop_due(self, now: float, limit: int | None = None) -> list[str]:
        """Every key due at or before `now`, earliest first (at most `limit`); they leave the queue
        until scheduled again."""
        out: list[str] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
                at, key = heapq.heappop(self._heap)
                if self._due.get(key) != at:
                    continue  # superseded by an earlier time, or dropped
                del self._due[key]
                out.append(key)
        return out

    def retry_later(self, key: str, now: float) -> float:
        """A failure: due again after base * 2^(failures-1), at most max_delay_s. Returns the delay."""
        with self._lock:
            n = self._failures[key] = self._failures.get(key, 0) + 1
        delay = exponential_delay(self.base_delay_s, n, self.max_delay_s)
        self.schedule(key, now + delay)
        return delay

    def forget(self, key: str) -> None:
        """It succeeded: its next failure starts from the base delay again."""
        with self._lock:
            self._failures.pop(key, None)

    def drop(self, key: str) -> None:
        """Gone (deleted, finished, another shard's): neither due nor remembered."""
        with self._lock:
            self._due.pop(key, None)
            self._failures.pop(key, None)

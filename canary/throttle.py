"""Log once per cause, then at most every REPEAT_LOG_S: one rule for every line a failure retried for minutes
would otherwise repeat (decisions 115 and 123).

A failure retried every second or every tick (Prometheus down, a watch that cannot be re-listed, a
CanaryRollout refused at every tick) logged the same line each time: on-call's view filled with copies and
the cause that changed was lost among them. The rule, per key (one stream of lines: an informer, a
CanaryRollout, a query's cause):

- a line is due the first time, when its cause differs from the last one logged for that key, and when
  `every_s` (REPEAT_LOG_S, 60) seconds of the caller's clock have passed since the last one logged;
- any other is left out and counted; `due` returns the count the line logged carries as `repeated`: the
  lines of that key left out since its last line (`carry=True`, the default: a new cause's line counts
  those of the cause before it), or of that cause only (`carry=False`: a new cause starts at 0).

Seconds are the caller's clock (`clock`, default `time.monotonic`; the controller passes its own, a fake one
in tests). Thread-safe: one lock around each call (the looks' threads share a Prometheus client, the
controller's workers its CanaryRollouts'). At most `max_keys` keys are kept (None: no bound; a caller that
keeps one key per object forgets them itself, `forget`).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable

REPEAT_LOG_S = 60.0


class Throttle:
    """Whether the line of a key and cause is due now (`due`); see the module's docstring for the rule."""

    def __init__(self, *, every_s: float = REPEAT_LOG_S, clock: Callable[[], float] = time.monotonic,
                 carry: bool = True, max_keys: int | None = None) -> None:
        self.every_s, self.clock, self.carry, self.max_keys = every_s, clock, carry, max_keys
        self._lock = threading.Lock()
        self._last: dict[Hashable, tuple[str, float, int]] = {}  # key -> (cause, logged at, left out since)

    def due(self, key: Hashable, cause: str, *, peek: bool = False) -> int | None:
        """The `repeated` count of the line for `key` and `cause` when it is due now (0 for the first), None
        when it is to be left out (counted). `peek`: only ask, nothing recorded."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and last[0] == cause and now - last[1] < self.every_s:
                if not peek:
                    self._last[key] = (cause, last[1], last[2] + 1)
                return None
            if not peek:
                if self.max_keys is not None and key not in self._last and len(self._last) >= self.max_keys:
                    self._last.clear()  # causes carry no numbers, but never grow without bound
                self._last[key] = (cause, now, 0)
            if last is None or (last[0] != cause and not self.carry):
                return 0
            return last[2]

    def logged_at(self, key: Hashable) -> float | None:
        """When the last line of `key` was logged (the caller's clock); None when none was."""
        with self._lock:
            last = self._last.get(key)
        return None if last is None else last[1]

    def backdate(self, key: Hashable, seconds: float) -> None:
        """The last line of `key` as if logged `seconds` earlier (a test that moves time without a clock)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None:
                self._last[key] = (last[0], last[1] - seconds, last[2])

    def forget(self, key: Hashable) -> None:
        """Nothing kept of `key` any more: its next line is a first one."""
        with self._lock:
            self._last.pop(key, None)

    def keys(self) -> list[Hashable]:
        """The keys something is kept of (a caller forgetting those of objects that are gone)."""
        with self._lock:
            return list(self._last)

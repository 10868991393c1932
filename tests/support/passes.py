"""A stop event that ends a `do a pass; if stop.wait(interval): return` loop after `n` passes, without sleeping.

`is_set()` stays False during the passes, so a loop that asks it between the pieces of a pass (the drift
pass's `keep_going`) runs each pass whole, as a process that is not stopping does.
"""

from __future__ import annotations

import threading


class Passes(threading.Event):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def wait(self, timeout: float | None = None) -> bool:
        self.left -= 1
        return self.left <= 0 or super().wait(0)

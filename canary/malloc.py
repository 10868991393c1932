"""Give the heap's free pages back to the OS after a busy tick (glibc `malloc_trim`).

A long-running controller allocates in bursts: a batched Prometheus answer for every rollout,
watch events, JSON bodies, each parsed by whichever worker thread handles it. glibc gives each
thread its own malloc arena and returns an arena's free memory to the OS only from its top, so
after enough bursts the process keeps the sum of its peaks, not its live heap: at 600 rollouts
the live Python heap was flat while RSS grew by the worker threads' arenas (measured from
/proc/<pid>/smaps, docs/benchmarks/controller.md). `malloc_trim(0)` walks every arena and
releases whole free pages inside it (MADV_DONTNEED), which is what bounds RSS by the live heap.

No-op (returns False) where the C library has no `malloc_trim` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

_lock = threading.Lock()
_last = float("-inf")
_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _trim = None


def available() -> bool:
    """Whether this C library can trim (glibc)."""
    return _trim is not None


def trim(min_interval_s: float = 10.0) -> bool:
    """Release free heap pages to the OS, at most once per `min_interval_s` seconds (monotonic) for
    the whole process, whichever thread asks. Returns True when it trimmed. Costs a walk of the
    heap: milliseconds for a few hundred MB. Never raises."""
    global _last
    if _trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < min_interval_s:
            return False
        _last = now
    try:
        _trim(0)
    except Exception:  # noqa: BLE001 - an optimisation: never a reason for a loop to fail
        return False
    return True

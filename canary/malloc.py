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
_trim = _mallopt = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
    _mallopt = _libc.mallopt
    _mallopt.argtypes, _mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = None
# glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
# what a long-running controller asks for unless the environment says otherwise (the Deployment sets
# the same through MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_)
# env variable -> (mallopt parameter, value, the same setting's GLIBC_TUNABLES name)
SETTINGS = {"MALLOC_ARENA_MAX": (M_ARENA_MAX, 2, "glibc.malloc.arena_max"),
            "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 64 * 1024, "glibc.malloc.mmap_threshold")}


def configure(environ: dict[str, str] | None = None) -> dict[str, int]:
    """Set glibc's malloc for a long-running process, where the environment has not: at most 2
    arenas (not 8 per core: every worker thread's arena keeps its own high-water) and a fixed mmap
    threshold of 64 KiB (blocks above it, a Prometheus answer's text or a large JSON body, are mapped
    apart and unmapped when freed; glibc's default raises the threshold after the first such free
    and then leaves them in the heap). Measured at 2,500 rollouts: 335 -> 322 MB of RSS
    (docs/benchmarks/controller.md). Returns what it set; {} where the C library is not glibc."""
    import os

    env = os.environ if environ is None else environ
    if _mallopt is None:
        return {}
    done = {}
    tunables = env.get("GLIBC_TUNABLES", "")
    for name, (param, value, tunable) in SETTINGS.items():
        if name in env or tunable in tunables:
            continue  # glibc read it at start-up: the operator's choice stands
        try:
            if _mallopt(param, value) == 1:
                done[name] = value
        except Exception:  # noqa: BLE001 - an optimisation: never a reason for a process to fail
            continue
    return done


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

"""One writer per state file or directory: an exclusive `flock` held for the life of the process.

`canary serve --state-dir` and `drift watch --state-file` read-modify-write their state; their
thread locks serialise one process only, so two processes on one state (two replicas on a shared
volume, a second one started by hand) each overwrote the other's. The kernel releases the lock
when the process ends, however it ends; the lock file holds the holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Held(Exception):
    """Another process holds the lock; `holder` is its pid as it wrote it ("unknown" if none)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def hold(path: Path) -> int:
    """Take the exclusive lock on `path` (created when missing) without waiting; returns its descriptor,
    to `os.close` to give it up. Raises Held when another process holds it, OSError when the file cannot
    be opened (the caller names what it is for)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise Held(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd

"""One writer per state file or directory: an exclusive `flock` held for the life of the process.

`canary serve --state-dir` and `drift watch --state-file` read-modify-write their state; their
thread locks serialise one process only, so two processes on one state (two replicas on a shared
volume, a second one started by hand) each overwrote the other's. The kernel releases the lock
when the process ends, however it ends; the lock file holds the holder's pid for the message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

# how the lock file is opened, as every other file this process names (`filekind._READ_FLAGS`, decision 914): never
# as its controlling terminal (O_NOCTTY), and never through a symbolic link (O_NOFOLLOW): the lock file is truncated
# and written with the pid, so a `.serve.lock` or `<state>.lock` that is a link to another file (left on a shared
# volume, or put there) had that file emptied and overwritten; a terminal or a FIFO is no lock file either
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(
    os, "O_NONBLOCK", 0)


class Held(Exception):
    """Another process holds the lock; `holder` is its pid as it wrote it ("unknown" if none)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def hold(path: Path) -> int:
    """Take the exclusive lock on `path` (created when missing) without waiting; returns its descriptor,
    to `os.close` to give it up. Raises Held when another process holds it, OSError when the file cannot
    be opened (the caller names what it is for): a symbolic link (ELOOP), a FIFO, a device or a directory ("not a
    regular file") is never truncated nor written."""
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # said as what it is, not as "Too many levels of symbolic links"
            raise OSError(errno.ELOOP, "a symbolic link: the lock file is never opened through one (it is "
                                       "truncated and written with the pid)", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, a device or a terminal): the lock file is one "
                                        "this process writes its pid to", str(path))
    except BaseException:
        os.close(fd)
        raise
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

"""What a file given where JSON was expected most likely is, for the error that refuses it; and the one way a
file a person names is read (`read_bounded`, `read_input`; `read_regular` for one read again).

`canary report --input canary-demo.log`, `canary judge --input` of a log, `drift check --baseline` of a report
page: each said only `not JSON (Extra data: line 2 column 1 (char 162))`, which names no mistake. The caller
appends what it takes instead."""

from __future__ import annotations

import errno
import functools
import json
import os
from pathlib import Path
from typing import Callable

MAX_INPUT_BYTES = 64 << 20  # a JSON or YAML file a command reads whole: 64 ConfigMaps' worth (decision 746)
# how long a FIFO given as a file is waited on for its writer (decision 759): a pipeline's writer started after the
# command comes within moments; one that never comes is said, not waited on for ever
FIFO_WAIT_S = 30.0
# how a file a person names is opened: without blocking (a FIFO's open waits for a writer), and never as this process's
# controlling terminal: a session leader with none (canary as a container's PID 1, or started by `setsid`) that opens
# a terminal without O_NOCTTY takes it as its own, and keeps it after the refusal, so a hangup there later sent it
# SIGHUP: the end of a process that does not handle it, an interrupt to `promote` (decision 914)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def read_bounded(path: str | Path, limit: int, *, fifo_wait_s: float | None = None) -> bytes:
    """At most `limit` + 1 bytes of `path` (one past it: the caller can tell it is too large), OSError as `open`
    raises it. Opened without blocking, then read blocking. A FIFO is waited on for its writer at most
    `FIFO_WAIT_S`: one no process writes to (a `mkfifo` left behind, a path typed wrong) held the command forever at
    `open`, before any word, and is now OSError ETIMEDOUT naming the wait (decision 746; 759: 746 read it as empty at
    once, and a pipeline that starts its writer after the command, `mkfifo p; canary ... --policy p & envsubst > p`,
    got "empty policy"); a process substitution (`--policy <(envsubst < p.yaml)`) is a pipe with its writer, read
    as before. A device with no end (`/dev/zero`, `/dev/urandom`) is cut at `limit` + 1 instead of filling the
    memory (decision 746). `fifo_wait_s`: the FIFO's wait instead (0: a second look at a FIFO already read, whose
    writer is gone, reads as empty at once)."""
    import fcntl
    import select
    import stat

    fd = os.open(path, _READ_FLAGS)
    with os.fdopen(fd, "rb") as f:
        # a FIFO opened so with no writer yet is not readable (Linux: until a writer comes and writes or closes)
        wait = FIFO_WAIT_S if fifo_wait_s is None else fifo_wait_s
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and not select.select([fd], [], [], wait)[0]:
            raise OSError(errno.ETIMEDOUT, f"a FIFO (named pipe) no process wrote to within {wait:g} s "
                                           "(a `mkfifo` left behind, or its writer never started)", str(path))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~getattr(os, "O_NONBLOCK", 0))
        return f.read(limit + 1)


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `path`, which must be a regular file: a file read again when it changes (a
    token file, a certificate: a mounted Secret's) or a process's own state. Told on the descriptor opened without
    blocking, so neither the open nor the read waits: a FIFO given as `serve --token-file` held the start for ever
    at `open`, before any word, and read again at a call, every call after it (decision 771). OSError EINVAL (a
    directory: EISDIR) "not a regular file ..." for any other kind."""
    import stat

    fd = os.open(path, _READ_FLAGS)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          "not a regular file (a directory, a FIFO or a device): it is read again when it changes, "
                          "so only a file is read", str(path))
        return f.read(limit + 1)


def private_copy(data: bytes, name: str = "canary") -> tuple[str, Callable[[], None]]:
    """A path that reads `data`, which no other process can read or put something else at, and the function that
    ends it. For a library that takes only a path (OpenSSL's `load_cert_chain`, the Kubernetes client's certificate
    files, reopened by urllib3 at each new connection) of bytes already read and checked (`read_regular`): handing
    it the file's own path let it open what was put there after the check, a FIFO (held for ever) or another
    certificate (decision 830). An anonymous memory file (`memfd_create`, Linux) named by `/proc/self/fd/N`: never
    on a disk, gone with the process; elsewhere a 0600 file in a 0700 directory of its own, removed by the ender
    (and at exit)."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create(name, getattr(os, "MFD_CLOEXEC", 0))  # not inherited by a plugin the client runs
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        return f"/proc/self/fd/{fd}", functools.partial(_close_quietly, fd)
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"{name}-")  # 0700
    path = os.path.join(folder, name)
    end = functools.partial(shutil.rmtree, folder, ignore_errors=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
    except BaseException:  # a full disk, an interrupt: no part of a key left behind (decision 867)
        end()
        raise
    atexit.register(end)
    return path, end


def replace_copy(path: str, data: bytes, name: str = "canary") -> None:
    """`path` (a `private_copy`'s) reads `data` from now on, in one step: a connection opening it meanwhile reads the
    old content or the new, never a part of one (decision 865). Its ender stays the one `private_copy` gave."""
    fresh, end = private_copy(data, name)
    try:
        if path.startswith("/proc/self/fd/"):  # a memfd: the new one's descriptor put in the old one's number
            os.dup2(int(fresh.rsplit("/", 1)[1]), int(path.rsplit("/", 1)[1]), inheritable=False)
        else:  # a 0600 file of its own: renamed over
            os.replace(fresh, path)
    finally:
        end()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def read_input(path: str | Path, limit: int | None = None) -> str:
    """`path`'s UTF-8 text, as `Path.read_text` reads it (OSError, UnicodeDecodeError), read by `read_bounded`; a
    file past `limit` is OSError EFBIG, `strerror` saying so, which every caller already says as "cannot read"."""
    limit = MAX_INPUT_BYTES if limit is None else limit
    data = read_bounded(path, limit)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"too large: more than {f'{limit >> 20} MiB' if limit % (1 << 20) == 0 else f'{limit} bytes'} "
                      "(or no regular file: a device has no end)",
                      str(path))
    return data.decode("utf-8")


def not_json(source: str | Path) -> str:
    """`: <what it is>` to append to a "not JSON" error about `source` (the file's text, or its path: its first
    64 KiB are read), or "" when it is none of the usual wrong files."""
    if isinstance(source, Path):
        try:  # a FIFO or process substitution already read has no writer left: not waited on (759's 30 s)
            text = read_bounded(source, 65535, fifo_wait_s=0).decode("utf-8", errors="replace")
        except OSError:
            return ""
    else:
        text = source[:65536]
    head = text.lstrip("\ufeff \t\r\n")
    if head[:1] == "<":
        return ": an HTML page (a report canary wrote is the page itself: open it in a browser)"
    first = head.split("\n", 1)[0].strip()
    try:
        line = json.loads(first) if first else None
    except (ValueError, RecursionError):
        line = None
    if isinstance(line, dict) and "\n" in head.strip():
        return ": one JSON object per line, a JSON-lines log (`canary-demo.log`, `--log-file`)"
    if head.startswith(("format:", "---")) or "\nformat:" in head[:2000]:
        return ": YAML (a command's `-o yaml` output is for reading; give its `-o json`)"
    return ""


__all__ = ["MAX_INPUT_BYTES", "not_json", "private_copy", "read_bounded", "read_input", "read_regular", "replace_copy"]

"""Standard streams a CD runner may have broken: a write to one never changes what a command does.

A pipeline runs `canary promote ... 2>&1 | head`, or its log shipper dies, or the job starts with
stderr or stdout closed: a write to that stream raises (BrokenPipeError, "I/O operation on closed
file", ENOSPC), or Python has no stream at all (`sys.stderr is None`). A log line raising inside a
rollout, or inside its fail-safe, left the route split and the process exiting 1 ("rolled back"),
and a promotion finished whose `-o json` reader had gone exited 1 too (click's EPIPE exit), not 0
(docs/decisions.md 116). Here every write to stdout or stderr is made through `Sink` or `guarded`:
what cannot be written is dropped, the stream's descriptor is pointed at /dev/null (so a later write
or the interpreter's final flush of what is buffered does not fail again), and the command goes on
to the exit code its outcome has.

The two silence a stream by different rules, on purpose (decision 129). `Sink` carries log lines of a
process that may run for hours (a rollout, the controller): each line is whole, so one lost is one
lost, and a failure that may pass (a full disk until logrotate frees it, a non-blocking pipe's EAGAIN)
must not cost every later line, the rollback's included; only a stream nobody will read again (`GONE`,
closed) is silenced. `guarded` writes a command's output (its document, `-o json`, one per `status
--watch` look, the last `error:` line): a failed write leaves part of a document buffered, which the
interpreter's exit flush writes after whatever came next (a torn document for `jq`) or fails on again
(exit 120 instead of the command's code), so any failure silences the stream: the output is lost
whole, said once (`output.lost`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable, TextIO

# what a write to a standard stream raises when nobody can read it: EPIPE, EIO, ENOSPC, EBADF
# (OSError), "I/O operation on closed file" (ValueError)
LOST = (OSError, ValueError)
# the errors after which nothing written to the stream is ever read: it is pointed at /dev/null
GONE = frozenset({errno.EPIPE, errno.EBADF, errno.EIO, errno.ECONNRESET})
_lost: dict[str, str] = {}  # stream name -> the error that lost it (this process)


def lost(name: str) -> str:
    """The error that lost stream `name` ("stdout"/"stderr") in this process; "" while it writes."""
    return _lost.get(name, "")


def _stream(name: str) -> TextIO | None:
    return getattr(sys, name, None)


def isatty(name: str) -> bool:
    """Whether sys.<name> is a terminal; False when the process has none (started with it closed)."""
    return Sink(_stream(name), name=name).isatty()


def _silence(stream: Any) -> None:
    """Point the stream's descriptor at /dev/null: what it still buffers, and every later write, goes
    nowhere instead of failing again (at exit, a failed flush of stdout is exit 120)."""
    try:
        fd = stream.fileno()
    except Exception:  # noqa: BLE001 - no descriptor (a test's capture): nothing buffered below us
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except OSError:
        pass


def drop(name: str, exc: BaseException) -> None:
    """Stream `name` could not be written (`exc`): remember it and silence its descriptor."""
    _lost.setdefault(name, f"{type(exc).__name__}: {exc}")
    stream = _stream(name)
    if stream is not None:
        _silence(stream)


def guarded(name: str, write: Callable[[], None]) -> bool:
    """Run `write` (an echo to sys.<name>); False, and the stream silenced, when it could not be written."""
    if _stream(name) is None:
        _lost.setdefault(name, "closed when the process started")
        return False
    try:
        write()
        return True
    except LOST as exc:
        drop(name, exc)
        return False


class Sink:
    """A text stream for log lines whose `write` and `flush` never raise; `stream` None (the process
    started with it closed) writes nothing."""

    def __init__(self, stream: TextIO | None, *, name: str = "stderr") -> None:
        self.stream, self.name = stream, name

    def write(self, text: str) -> int:
        if self.stream is not None:
            try:
                self.stream.write(text)
            except LOST as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except LOST as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        try:
            return bool(self.stream is not None and self.stream.isatty())
        except LOST:
            return False

    def _lose(self, exc: BaseException) -> None:
        """The line is dropped; the stream is silenced only when nobody will ever read it (no reader,
        closed): a full disk or a non-blocking stream's EAGAIN may pass, and later lines are written."""
        _lost.setdefault(self.name, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ValueError) or getattr(exc, "errno", None) in GONE:
            _silence(self.stream)


_console_class: Any = None


def console(**kw: Any) -> Any:
    """A rich Console (`kw` as rich's) whose broken pipe is handled as every other write's here. rich's own
    `Console.on_broken_pipe` (rich 13 and later) raises SystemExit(1): `canary plan ... | head -1` exited 1
    and `canary judge ... | head -1` 1 instead of its verdict's 4, with nothing said, past `guarded`; and
    from `promote`'s live panel it was a BaseException mid-rollout, which the fail-safe answers with a
    rollback. Here the console goes quiet and stdout is silenced; on the main thread a BrokenPipeError is
    raised, which `guarded` takes as the output lost (`output.lost`, exit code unchanged); on another
    thread (the live panel's refresh) nothing is raised, so no traceback is printed either."""
    global _console_class
    if _console_class is None:
        import threading

        from rich.console import Console

        class PipeSafeConsole(Console):
            def on_broken_pipe(self) -> None:
                self.quiet = True
                failure = BrokenPipeError(errno.EPIPE, "Broken pipe")
                drop("stdout", failure)
                if threading.current_thread() is threading.main_thread():
                    raise failure

        _console_class = PipeSafeConsole
    return _console_class(**kw)


def version_line() -> str:
    """`canary --version`'s line: the installed distribution's version, read without importing the CLI."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"canary {version('modelcanary')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "canary (not installed: run scripts/setup.sh)"

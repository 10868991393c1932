"""`streams.Sink` (log lines) and `streams.guarded` (a command's output): a write nobody can read never
raises; a stream with no reader is pointed at /dev/null, one that may recover (a full disk) is not
(decision 116)."""

from __future__ import annotations

import errno
import io
import os
import sys

import pytest

from canary import streams


class Flaky(io.StringIO):
    """Raises `exc` on its first `times` writes, then writes."""

    def __init__(self, exc: BaseException, times: int) -> None:
        super().__init__()
        self.exc, self.times = exc, times

    def write(self, text: str) -> int:
        if self.times:
            self.times -= 1
            raise self.exc
        return super().write(text)


def test_a_pipe_whose_reader_went_away_is_silenced_and_never_raises() -> None:
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w", buffering=1)
    sink = streams.Sink(stream, name="test-pipe")
    sink.write("a line nobody reads\n")  # EPIPE (Python ignores SIGPIPE): dropped
    sink.flush()
    assert streams.lost("test-pipe").startswith("BrokenPipeError")
    os.write(write, b"now /dev/null\n")  # the descriptor no longer raises
    stream.close()


def test_a_full_disk_drops_the_line_and_later_lines_are_written() -> None:
    stream = Flaky(OSError(errno.ENOSPC, "No space left on device"), times=1)
    sink = streams.Sink(stream, name="test-full")
    sink.write("lost\n")
    sink.write("kept\n")
    assert stream.getvalue() == "kept\n"


def test_a_closed_stream_or_none_writes_nothing() -> None:
    closed = io.StringIO()
    closed.close()
    for stream in (closed, None):
        sink = streams.Sink(stream)
        assert sink.write("x\n") == 2 and not sink.isatty()
        sink.flush()


def test_guarded_reports_a_write_it_could_not_make(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    # a stdout with no descriptor and this test's own record: pytest's capture is never pointed at /dev/null
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(streams, "_lost", {})
    assert streams.guarded("stdout", lambda: None) is True and streams.lost("stdout") == ""
    assert streams.guarded("stdout", broken) is False and streams.lost("stdout").startswith("BrokenPipeError")
    monkeypatch.setattr(sys, "stdout", None)  # started with stdout closed
    assert streams.guarded("stdout", lambda: None) is False


def _is_devnull(fd: int) -> bool:
    here, null = os.fstat(fd), os.stat(os.devnull)
    return (here.st_dev, here.st_ino) == (null.st_dev, null.st_ino)


class FullDisk(io.TextIOWrapper):
    """A real descriptor (a pipe) whose writes fail as a full disk does."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_silences_a_commands_output_but_not_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two rules differ on purpose (decision 129): a log line lost to a full disk is one line, and the
    next is written; a command's output that met one is silenced whole, so no torn document follows and
    the exit flush cannot fail again."""
    monkeypatch.setattr(streams, "_lost", {})
    read_log, write_log = os.pipe()
    read_out, write_out = os.pipe()
    log = FullDisk(os.fdopen(write_log, "wb"))
    out = FullDisk(os.fdopen(write_out, "wb"))
    try:
        streams.Sink(log, name="stderr").write("a line\n")
        assert streams.lost("stderr").startswith("OSError") and not _is_devnull(write_log)
        monkeypatch.setattr(sys, "stdout", out)
        assert streams.guarded("stdout", lambda: print("{}", file=sys.stdout)) is False
        assert streams.lost("stdout").startswith("OSError") and _is_devnull(write_out)
    finally:
        for fd in (read_log, read_out):
            os.close(fd)
        for stream in (log, out):
            try:
                stream.close()
            except OSError:
                pass

"""`pidlock.hold` opens its lock file as every other file a person's path leads to is opened (decision 914):
never through a symbolic link, never as the process's controlling terminal (docs/decisions.md 1004)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canary.pidlock import hold
from canary.serve_store import StoreError
from tests.support import session_leader


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    """The lock file is truncated and written with the pid: a `.serve.lock` that was a link to another file (left
    on a shared volume, or put there) had that file emptied and overwritten with this process's pid."""
    target = tmp_path / "precious.conf"
    target.write_text("what another program keeps here\n")
    link = tmp_path / "state.lock"
    link.symlink_to(target)
    with pytest.raises(OSError, match="a symbolic link: the lock file is never opened through one"):
        hold(link)
    assert target.read_text() == "what another program keeps here\n"


def test_serve_names_a_lock_file_that_is_a_symbolic_link(tmp_path: Path) -> None:
    from canary.serve_store import SessionStore

    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / ".serve.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match=r"\.serve\.lock: cannot open the state directory's lock: a symbolic link"):
        SessionStore(tmp_path).hold()
    assert (tmp_path / "elsewhere").read_text() == "x"


def test_a_fifo_as_the_lock_file_is_refused_not_written(tmp_path: Path) -> None:
    fifo = tmp_path / "state.lock"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        hold(fifo)


def test_a_lock_file_is_taken_and_holds_the_pid(tmp_path: Path) -> None:
    fd = hold(tmp_path / "state.lock")
    try:
        assert (tmp_path / "state.lock").read_text() == str(os.getpid())
    finally:
        os.close(fd)


@pytest.mark.skipif(not session_leader.HAS_PTY, reason="needs a pty")
def test_a_terminal_given_as_the_lock_file_never_becomes_the_processs_controlling_terminal() -> None:
    """A session leader with no terminal (canary as a container's PID 1) that opened a terminal without O_NOCTTY took
    it as its own, and a hangup there later sent it SIGHUP (decision 914's case, for the lock file)."""
    done = session_leader.opens_a_terminal("from canary.pidlock import hold", "hold(name)")
    assert done.stdout.startswith("no terminal"), (done.stdout, done.stderr)

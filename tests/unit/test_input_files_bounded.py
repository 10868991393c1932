"""A file a command reads whole is read within bounds and never blocks at its open (decision 746): a FIFO no
process writes to held `policy validate`, `judge`, `drift check --baseline` and `report --input` forever before
any word, and a device with no end (`/dev/zero`) or a file of gigabytes was read whole into memory (only the
policy's own read was bounded). A process substitution (`<(envsubst < p.yaml)`) is still read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canary import filekind
from tests.support import cli, session_leader

COMMANDS = {
    "policy validate": lambda f, tmp: ["policy", "validate", str(f)],
    "judge": lambda f, tmp: ["judge", "--input", str(f)],
    "drift check --baseline": lambda f, tmp: ["drift", "check", "--baseline", str(f), "--input", str(tmp / "x.json")],
    "report --input": lambda f, tmp: ["report", "--input", str(f)],
}


@pytest.mark.timeout(60)  # without the fix each waited at `open` for a writer that never comes
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_fifo_with_no_writer_is_refused_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        command: str) -> None:
    """Refused once the FIFO's wait for a writer (30 s; here 0.2 s: no writer ever comes, so its length decides
    nothing but the test's time) is over, naming the file and the wait (decision 759)."""
    monkeypatch.setattr(filekind, "FIFO_WAIT_S", 0.2)
    fifo = tmp_path / "in.json"
    os.mkfifo(fifo)
    (tmp_path / "x.json").write_text("{}")
    res = cli.run(COMMANDS[command](fifo, tmp_path))
    assert res.returncode == 2 and str(fifo) in res.stderr, res.stderr
    assert "no process wrote to within 0.2 s" in res.stderr, res.stderr


def test_a_fifo_whose_writer_comes_after_the_open_is_read(tmp_path: Path) -> None:
    """`mkfifo p; canary policy validate p & write p`: the writer opens the FIFO only once the command has it open
    to read (its open succeeds then, not before), so its bytes always come after: 746 read the FIFO as empty at
    once and refused the policy as empty; now the command waits for them (decision 759)."""
    import threading

    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    good = (Path(__file__).resolve().parents[2] / "policies" / "default.yaml").read_text()

    def write_once_opened() -> None:
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until the command opened it to read
                break
            except OSError:
                threading.Event().wait(0.01)
        os.set_blocking(fd, True)
        os.write(fd, good.encode())
        os.close(fd)

    writer = threading.Thread(target=write_once_opened, daemon=True)
    writer.start()
    res = cli.run(["policy", "validate", str(fifo)])
    writer.join(30)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "policy validate"])  # the policy's own 256 KiB
def test_a_file_past_the_bound_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 command: str) -> None:
    """As `/dev/zero` is (a bound of 64 MiB; here 1 KiB, a 2 KiB file): refused, naming the file and why."""
    monkeypatch.setattr(filekind, "MAX_INPUT_BYTES", 1024)
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * 2048 + '"}')
    (tmp_path / "x.json").write_text("{}")
    res = cli.run(COMMANDS[command](big, tmp_path))
    words = " ".join(res.stderr.split())
    assert res.returncode == 2 and str(big) in words and "too large: more than 1024 bytes" in words, words


def test_a_device_with_no_end_is_cut_at_the_bound() -> None:
    assert len(filekind.read_bounded("/dev/zero", 4096)) == 4097
    with pytest.raises(OSError, match="too large"):
        filekind.read_input("/dev/zero", 4096)


def test_a_pipe_with_its_writer_is_read(tmp_path: Path) -> None:
    """What a process substitution gives: a pipe whose writer has written and closed."""
    read, write = os.pipe()
    os.write(write, b"steps: [10, 100]\nchecks: [{name: e, kind: error_rate, max_rate_pct: 5}]\n")
    os.close(write)
    try:
        res = cli.run(["policy", "validate", f"/dev/fd/{read}"])
    finally:
        os.close(read)
    assert res.returncode == 0 and "ok (2 steps" in res.stdout, res.stderr


@pytest.mark.parametrize(("kind", "says"), [("directory", "cannot read the Job template: Is a directory"),
                                            ("binary", "the Job template is not UTF-8 text (byte 0)")])
def test_a_job_template_that_is_no_text_file_is_refused_in_words(tmp_path: Path, kind: str, says: str) -> None:
    """`drift watch --retrain-job` of a directory said "[Errno 21] Is a directory: 3" (the fd, not the file, since
    it is read without blocking), and of a binary file raised its UnicodeDecodeError (decision 746 addendum)."""
    from canary.drift.retrain import load_job_template
    from canary.errors import ConfigError

    path = tmp_path / "job"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError) as err:
        load_job_template(path)
    assert str(err.value) == f"{path}: {says}" + ("" if kind == "directory" else ": give the Job's YAML"), err.value


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_a_training_table_that_is_no_regular_file_is_named_as_such(tmp_path: Path, kind: str) -> None:
    """`baseline capture` of a FIFO, a directory or a device said "no such file" of a path that exists (it is not
    read: a table may be gigabytes, decision 746), sending the person to look for a file that is there."""
    path = tmp_path / "train.csv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    res = cli.run(["baseline", "capture", str(path), "--model", "m", "--version", "v1"])
    words = " ".join(res.stderr.split())
    said = "no such file" if kind == "missing" else "not a regular file (a directory, a FIFO or a device)"
    assert res.returncode == 2 and f"{path}: {said}" in words, words


@pytest.mark.timeout(60)
def test_a_second_look_at_a_fifo_already_read_is_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`not_json` reads a refused file again to say what it is; a FIFO (or a process substitution) already read has
    no writer left, and 759's wait held the refusal 30 s for nothing. That second look does not wait (here the wait
    is an hour: with it the test runs into its timeout)."""
    monkeypatch.setattr(filekind, "FIFO_WAIT_S", 3600.0)
    fifo = tmp_path / "in.json"
    os.mkfifo(fifo)
    assert filekind.not_json(fifo) == ""


@pytest.mark.skipif(not session_leader.HAS_PTY, reason="needs a pty")
@pytest.mark.parametrize("read", ["read_regular", "read_bounded"])
def test_a_terminal_named_as_a_file_never_becomes_the_processs_controlling_terminal(read: str) -> None:
    """A session leader without a controlling terminal (canary as a container's PID 1, under `setsid`) that opened a
    terminal given as a file (`serve --token-file /dev/pts/3`, refused as no regular file; `--policy` of one) took
    it as its own, and kept it: a hangup there later sent it SIGHUP, the end of a process that does not handle it,
    an interrupt to `promote` (decision 914: opened O_NOCTTY now). A line waits at the terminal, longer than the
    read, so that read_bounded's read returns at once."""
    done = session_leader.opens_a_terminal("from canary.filekind import read_bounded, read_regular",
                                           f"{read}(name, 10)", typed=b"a line typed there, longer than the read\n")
    assert done.stdout.startswith("no terminal"), (done.stdout, done.stderr)

"""The `canary` CLI run in this process (typer's CliRunner), answered as `subprocess.run` answers: for tests
whose subject is what a command says and writes, not the process around it (signals, pipes, exit on a
closed stdout, the interpreter's start-up). A `canary` process costs about 0.8 s of CPU before its first
request (imports); the suite started hundreds of them (docs/benchmarks/suite.md)."""

from __future__ import annotations

import signal
import subprocess
from typing import Mapping

from typer.testing import CliRunner

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)


def run(args: list[str], *, env: Mapping[str, str | None] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`canary *args` in-process: returncode, stdout and stderr as a process's. `env` is laid over
    os.environ for the run and restored after (CliRunner's isolation), as the environment of a child."""
    from canary.cli import app

    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    result = CliRunner(env=dict(env or {})).invoke(app, args, input=input, catch_exceptions=False)
    # a command run in-process (an embedding caller's, a test's) gives back the handlers it found: one left
    # installed would act on the next command's signals in this process
    left = [signal.Signals(sig).name for sig, handler in before.items() if signal.getsignal(sig) is not handler]
    assert not left, f"`canary {' '.join(args)}` left its handlers of {left} installed"
    return subprocess.CompletedProcess(["canary", *args], result.exit_code, result.stdout, result.stderr)

"""`canary rollback` (and pause, resume) Ctrl-C'd while its request to the API server is in flight: what it
says. The real CLI in a subprocess (a real SIGINT) against the strict Kubernetes API emulator, whose held request
decides when the signal lands: sent once the server has the request, never by timing (decision 308)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest

from canary import rollout as rl
from canary.sandbox.kubeapi import Fault
from tests.integration.test_cli_ops import GROUP, ROOT, cluster, in_progress, vs  # noqa: F401

pytestmark = pytest.mark.integration


class _SignalAtHold(threading.Event):
    """The emulator's hold of a request (`Fault.hold`): its wait, in the emulator's thread the moment the server
    has the request, sends the signal first. Sent by the test's thread after polling for the hold, a loaded
    machine could let the client's own 10 s timeout end the request first: the signal then landed elsewhere."""

    def __init__(self, send: Callable[[], None]) -> None:
        super().__init__()
        self.send, self.sent = send, threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.sent.is_set():
            self.send()
            self.sent.set()
        return super().wait(timeout)


def _interrupted_while_held(api: Any, kubeconfig: Any, command: str, *, method: str) -> tuple[int, str, str]:
    """`canary <command> rec-model -n ml` SIGINT'ed while the API server holds its first `method` request to the
    VirtualService: (exit code, stdout, stderr without the JSON log lines). The request is let go after."""
    release = _SignalAtHold(lambda: proc.send_signal(signal.SIGINT))  # `proc` is set before any request
    with api.handler.lock:
        api.handler.faults.append(Fault(0, 1, frozenset({method}), "virtualservices", hold=release))
    proc = subprocess.Popen([sys.executable, "-m", "canary", command, "rec-model", "-n", "ml",
                             "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
    try:
        out, err = proc.communicate(timeout=60)
        assert release.sent.is_set(), (proc.returncode, out, err[-1500:])  # the signal came at the hold
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = "\n".join(line for line in err.splitlines() if not line.startswith("{"))
    return proc.returncode, out, said


def test_a_rollback_ctrl_c_d_during_its_write_says_it_may_have_landed_and_what_to_run(cluster: Any) -> None:
    """On-call pressed Ctrl-C on a rollback hanging on its stable-100% write (an API server slow to answer): it
    exited 130 and said nothing at all, the route's state unknown to the person who asked for stable 100%. It
    now says, in one line on stderr, that it was interrupted during its write, that the write may have landed,
    and the two commands that tell and finish it; exit 130 as a Ctrl-C exits."""
    api, kc = cluster
    in_progress(kc)
    code, out, said = _interrupted_while_held(api, kc, "rollback", method="PUT")
    assert code == 130, (code, out, said)
    assert out == "", out  # no line claims stable 100%
    line = said.strip().splitlines()[-1] if said.strip() else ""
    assert line.startswith("interrupted (Ctrl-C) during its write to ml/rec-model"), said
    assert "may have landed" in line and "`canary status rec-model -n ml`" in line, line
    assert "`canary rollback rec-model -n ml` again" in line, line


@pytest.mark.parametrize("command", ["rollback", "pause"])
def test_an_oncall_command_ctrl_c_d_before_its_write_says_nothing_was_written(cluster: Any, command: str) -> None:
    """Ctrl-C while the route is still being read (the read held): nothing was sent, and it says so; the route
    is as it was (75/25, progressing)."""
    api, kc = cluster
    in_progress(kc)
    code, out, said = _interrupted_while_held(api, kc, command, method="GET")
    assert code == 130, (code, out, said)
    line = said.strip().splitlines()[-1] if said.strip() else ""
    assert line.startswith(f"interrupted (Ctrl-C) before {command} wrote anything"), said
    assert vs(api)[0] == [75, 25] and vs(api)[1]["phase"] == rl.PROGRESSING

"""`canary rollback` (and pause, resume) Ctrl-C'd while its request to the API server is in flight: what it
says. The real CLI in a subprocess (a real SIGINT) against the strict Kubernetes API emulator, whose held request
decides when the signal lands: sent once the server has the request, never by timing (decision 308)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from canary import rollout as rl
from tests.integration.test_cli_ops import GROUP, ROOT, cluster, in_progress, vs  # noqa: F401

pytestmark = pytest.mark.integration


def _interrupted_while_held(api: Any, kubeconfig: Any, command: str, *, method: str) -> tuple[int, str, str]:
    """`canary <command> rec-model -n ml` SIGINT'ed while the API server holds its first `method` request to the
    VirtualService: (exit code, stdout, stderr without the JSON log lines). The request is let go after."""
    release = api.hold_next(methods=(method,), plural="virtualservices")
    fault = api.handler.faults[-1]
    proc = subprocess.Popen([sys.executable, "-m", "canary", command, "rec-model", "-n", "ml",
                             "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
    try:
        while fault.times > 0 and proc.poll() is None:  # the server has the request: the client waits on it
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
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

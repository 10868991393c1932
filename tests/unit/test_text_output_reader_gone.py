"""Text output read by a step that stops reading early (`canary plan ... | head -1`, `canary judge ... | head`).

rich's Console answers a broken pipe with SystemExit(1) (`Console.on_broken_pipe`, rich 13 and later), past
the stream guard that keeps every other command's exit code (decision 116): `canary judge | head -1` exited
1 where its verdict is 4, and with `set -o pipefail` a pipeline read "fail" into an inconclusive look or a
plan. And on `promote`'s live panel the same exit was a BaseException inside the rollout's loop, which the
fail-safe answers with a rollback. Here stdout is a real pipe whose reader has already gone: every write to
it is EPIPE, wherever the output is in its course.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import cli

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary"]


def run_reader_gone(*args: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader went away before the first line
    try:
        return subprocess.run([*CANARY, *args], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": "120"})
    finally:
        os.close(write)


@pytest.mark.parametrize(("args", "code"), [
    (["plan", "--policy", "policies/default.yaml", "--rps", "50"], 0),
    (["judge", "--input", "docs/examples/judge-input.json"], 1),
    (["judge", "--input", "docs/examples/judge-input.json", "-o", "wide"], 1),
])
def test_a_text_reader_that_went_away_keeps_the_exit_code(args: list[str], code: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the arguments' paths, as the process below reads them
    plain = cli.run(args)  # the exit code with a reader: what the command says, in this process (tests/support/cli.py)
    assert plain.returncode == code, plain.stderr
    gone = run_reader_gone(*args)
    assert gone.returncode == code, gone.stderr
    assert "output.lost" in gone.stderr and "Traceback" not in gone.stderr


def test_the_live_panel_on_a_terminal_that_went_away_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """`promote`'s panel: its update runs inside the rollout's loop, its close after the outcome is known."""
    from canary import rollout as rl
    from canary import streams
    from canary.display import LiveDisplay
    from canary.policy import load_policy

    read, write = os.pipe()
    os.close(read)
    out = open(write, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws the panel as on a terminal
    monkeypatch.setattr(streams, "_lost", {})
    policy = load_policy(ROOT / "policies" / "default.yaml")
    try:
        display = LiveDisplay(policy)
        state, _ = rl.new_rollout(model="rec-model", stable_version="v1", canary_version="v2", now=0.0)
        for _ in range(3):
            display.update(state)
        display.close()
        assert streams.lost("stdout").startswith("BrokenPipeError")
    finally:
        try:
            out.close()
        except OSError:
            pass

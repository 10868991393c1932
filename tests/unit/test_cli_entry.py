"""Issue 11: a kubectl plugin executable and shell completion."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kubectl_canary_is_installed_and_runs_the_same_app():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-canary"] == scripts["canary"] == "canary.__main__:main"  # decision 619
    exe = Path(sys.executable).parent / "kubectl-canary"  # what `kubectl canary ...` finds on PATH
    r = subprocess.run([str(exe), "status", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--watch" in r.stdout and "--timeout" in r.stdout


def test_shell_completion_is_offered():
    # typer finds the shell by walking up the process tree (shellingham), as when a person types the
    # command: run it from bash, which stays its parent (two commands: bash cannot exec into python),
    # so the test does not depend on what started pytest (a detached runner has no shell above it)
    r = subprocess.run(["bash", "-c", '"$0" -m canary --show-completion; exit $?', sys.executable],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "complete" in r.stdout, r.stderr


def test_every_argument_and_option_of_every_command_says_what_it_is_in_help():
    """A newcomer reads `--help`: `canary status/pause/resume/rollback --help` showed their MODEL argument as
    `model <str> [required]` and nothing else, `rollback --reason` and `controller run --lease-name` had no
    words either."""
    import typer

    from canary.cli import app

    def commands(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from commands(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    bare = [f"{path} {param.name}" for path, cmd in commands(typer.main.get_command(app), [])
            for param in cmd.params if param.name != "help" and not (getattr(param, "help", None) or "").strip()]
    assert not bare, f"no help text: {bare}"

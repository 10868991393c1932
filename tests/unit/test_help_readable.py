"""`--help` as a newcomer reads it, and into a pipe whose reader has gone (decision 152).

Typer prints help through a rich Console of its own: `canary --help | head -1` exited 1 (rich's SystemExit on
a broken pipe), and its type column showed `<bool>` after every switch, `<str>`, `<list[str]>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary"]
# every command and group: a help page each
COMMANDS = [[], ["promote"], ["rollback"], ["sweep"], ["pause"], ["resume"], ["status"], ["judge"], ["plan"],
            ["analyze"], ["demo"], ["serve"], ["report"], ["policy"], ["policy", "validate"], ["policy", "schema"],
            ["controller"], ["controller", "run"], ["baseline"], ["baseline", "capture"], ["drift"],
            ["drift", "check"], ["drift", "watch"]]


def _reader_gone(args: list[str]) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader went away before the first line (`| head -0`; `| head -1` a line later)
    try:
        return subprocess.run([*CANARY, *args], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": "120"})
    finally:
        os.close(write)


# a page of each kind, each a process (a pipe is a process's): the root group, a command, a group, a group's
# command. Every page is printed by the same console and handler; every one is rendered in-process below.
PIPED = [[], ["promote"], ["drift"], ["policy", "validate"]]


def test_help_into_a_pipe_whose_reader_went_away_exits_0_quietly() -> None:
    for args in PIPED:
        gone = _reader_gone([*args, "--help"])
        assert (gone.returncode, gone.stderr) == (0, ""), args
    version = _reader_gone(["--version"])
    assert (version.returncode, version.stderr) == (0, "")


def test_a_bare_group_into_a_gone_pipe_keeps_its_usage_exit() -> None:
    """`canary` alone prints its help and exits 2 (no command given): 2 still, not rich's 1."""
    plain = subprocess.run(CANARY, cwd=ROOT, capture_output=True, text=True, timeout=120)
    gone = _reader_gone([])
    assert plain.returncode == gone.returncode == 2
    assert "Traceback" not in gone.stderr


def _help(args: list[str], flag: str = "--help") -> str:
    """The help page as the CLI prints it, in this process (tests/support/cli.py)."""
    from tests.support import cli

    out = cli.run([*args, flag], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "canary")
def test_help_shows_no_typer_type_labels(args: list[str]) -> None:
    """No `<bool>` after a switch, no `<str>`/`<list[str]>`/`<int range>`, no machine path as a default."""
    text = _help(args)
    for odd in ("<bool>", "<str>", "<list[", "<path>", "<float>", "<int", "{model}", str(ROOT)):
        assert odd not in text, (args, odd)


def test_switches_show_no_value_and_values_show_clicks_names() -> None:
    rows = {}
    for line in _help(["promote"]).splitlines():
        words = [w for w in line.strip("│ ").split() if w != "*"]
        if len(words) > 1 and words[0].startswith("--"):
            rows[words[0]] = words[1]  # the column after the option: its metavar, or the help's first word
    assert rows["--retry"] == "run"  # a switch: its help straight after it
    assert rows["--help"] == "-h"  # its short form, then the help
    assert rows["--canary-version"] == "TEXT"
    assert rows["--prometheus-url"] == "URL"
    assert rows["--webhook"] == "URL"
    assert rows["--kubeconfig"] == "FILE"
    assert rows["--timeout"] == "DURATION"
    usage = _help(["promote"]).strip().splitlines()[0].rstrip()
    assert usage.endswith("promote [OPTIONS] {MODEL}"), usage  # typer's braces: required
    workers = next(line for line in _help(["controller", "run"]).splitlines() if "--workers" in line)
    assert "INTEGER [1<=x<=64]" in workers


@pytest.mark.parametrize("args", [[], ["promote"], ["policy", "validate"], ["drift", "watch"]], ids=lambda a: " ".join(a) or "canary")
def test_dash_h_is_help_as_kubectl_takes_it(args: list[str]) -> None:
    """`canary promote -h` was "No such option: -h", exit 2."""
    assert _help(args, "-h") == _help(args)


def test_every_command_is_summed_up_in_one_line_in_its_groups_help() -> None:
    """`canary --help` lists each command with its help's first paragraph (decision 161): `sweep`'s was its whole
    575-character description, broken where the source's lines broke, `report`'s, `baseline capture`'s and
    `drift watch`'s two or three such lines; a newcomer's first page was a wall of text."""
    import typer.main

    from canary.cli import app

    def walk(cmd: object, path: list[str]) -> list[tuple[str, str]]:
        out = []
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            first = (sub.short_help or sub.help or "").strip().split("\n\n")[0]
            out += [(" ".join([*path, name]), first), *walk(sub, [*path, name])]
        return out

    long = [(name, first) for name, first in walk(typer.main.get_command(app), []) if "\n" in first or len(first) > 120]
    assert not long, long


@pytest.mark.parametrize("columns", ["80", "100", "160"])
def test_a_description_is_wrapped_as_whole_paragraphs_at_any_width(columns: str) -> None:
    """Typer 0.29 kept the docstring's own line breaks after the first paragraph, and rich wrapped each source
    line on its own: at 100 columns `sweep --help` read `... + 120` / `s` / `(killed with SIGKILL ...`, `status`'s
    `is` / `end at`, `promote`'s `given` alone on a line. No line of a description is now a word or two left
    over before the paragraph goes on (the width the source's lines were not written for shows it)."""
    from typer.testing import CliRunner

    from canary.cli import app

    runner = CliRunner()
    orphans = []
    for args in COMMANDS:
        out = runner.invoke(app, [*args, "--help"], env={"COLUMNS": columns, "NO_COLOR": "1", "TERM": "dumb"})
        assert out.exit_code == 0, (args, out.output)
        lines = [line.strip() for line in out.output.split("╭")[0].splitlines()]  # the description: before the panels
        orphans += [(" ".join(args), line, after) for line, after in zip(lines, lines[1:])
                    if line and after and len(line.split()) <= 2 and not line.startswith(("Usage:", "Example:"))]
    assert not orphans, orphans

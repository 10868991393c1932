"""`canary demo`'s own inputs, refused before any sandbox process starts (exit 2, the flag named)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from canary import logs
from canary.cli import app


def run(*args: str) -> object:
    try:
        return CliRunner().invoke(app, ["demo", *args])
    finally:
        logs.configure()


def test_an_unknown_scenario_is_refused() -> None:
    r = run("--scenario", "nope")
    assert r.exit_code == 2 and "unknown scenario 'nope'" in r.output and "good" in r.output
    assert "data-drift" in r.output


def test_an_unknown_output_format_is_refused() -> None:
    r = run("-o", "xml")
    assert r.exit_code == 2 and "--output" in r.output


def test_a_log_file_that_cannot_be_opened_is_refused(tmp_path: Path) -> None:
    r = run("--log-file", str(tmp_path / "missing-dir" / "demo.log"))
    assert r.exit_code == 2 and "--log-file" in r.output and "missing-dir" in r.output


def test_help_says_where_the_logs_and_the_report_go() -> None:
    r = run("--help")
    assert r.exit_code == 0 and "--log-file" in r.output and "--report" in r.output and "Example" in r.output

"""A file given where a command reads JSON that is not JSON says what it most likely is, and what the option takes
(decision 367). A release engineer new to canary gave `canary report --input canary-demo.log` (the demo's log) and
was told only `not JSON (Extra data: line 2 column 1 (char 162))`; `judge --input`, `drift check --baseline` and
`--input`, `baseline capture --bounds-from` and the exporter's profile said the same of a log, a report page or a
YAML export. Each is exit 2 naming the file, the kind of file found, and the file to give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import ConfigError
from tests.unit.test_drift_validation import _profile

LOG = ('{"event": "sandbox.started", "level": "info", "timestamp": "2026-12-05T17:58:22Z"}\n'
       '{"event": "rollout.started", "level": "info", "timestamp": "2026-12-05T17:58:23Z"}\n')
PAGE = "<!doctype html>\n<html><head><title>rec-model v2</title></head><body></body></html>\n"
YAML = "format: 1\nrollout:\n  model: rec-model\n  canary_version: v2\n"
KINDS = [(LOG, "one JSON object per line, a JSON-lines log (`canary-demo.log`, `--log-file`)"),
         (PAGE, "an HTML page (a report canary wrote is the page itself: open it in a browser)"),
         (YAML, "YAML (a command's `-o yaml` output is for reading; give its `-o json`)")]


def _run(args: list[str]) -> Any:
    from canary import logs

    try:
        return CliRunner().invoke(app, args)
    finally:
        logs.configure()


@pytest.mark.parametrize("content, what", KINDS, ids=["log", "html", "yaml"])
@pytest.mark.parametrize("command, takes", [
    (["report", "--input", "{bad}", "-o", "json"], "--input takes the JSON history `canary report MODEL -o FILE.json` writes"),
    (["judge", "--input", "{bad}"], "--input takes one look's counts as one JSON object (docs/judge.md"),
    (["drift", "check", "--baseline", "{bad}", "--input", "{bad}"], "--baseline takes a profile `canary baseline capture` wrote"),
    (["drift", "check", "--baseline", "{profile}", "--input", "{bad}"], "--input takes live counts as JSON (docs/drift.md)"),
    (["baseline", "capture", "{csv}", "--model", "rec", "--version", "v2", "--bounds-from", "{bad}", "-f", "{out}"],
     "--bounds-from takes a profile `canary baseline capture` wrote"),
], ids=["report", "judge", "drift-baseline", "drift-input", "bounds-from"])
def test_a_file_that_is_not_json_is_named_as_what_it_is_with_what_to_give(
        tmp_path: Path, command: list[str], takes: str, content: str, what: str) -> None:
    bad = tmp_path / "given.txt"
    bad.write_text(content, encoding="utf-8")
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(_profile()))
    csv = tmp_path / "train.csv"
    csv.write_text("age\n" + "\n".join(str(40 + i % 7) for i in range(50)) + "\n")
    names = {"bad": bad, "profile": profile, "csv": csv, "out": tmp_path / "out.json"}
    r = _run([a.format(**names) for a in command])
    out = " ".join(r.output.split())  # as one line, whatever the width wrapped
    assert r.exit_code == 2, r.output
    assert f"{bad}: " in out and what in out and takes in out, r.output


def test_the_exporters_profile_that_is_not_json_says_what_it_is(tmp_path: Path) -> None:
    from canary.drift.exporter import FeatureExporter

    bad = tmp_path / "rec-model-v2.profile.json"
    bad.write_text(LOG, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        FeatureExporter.from_file(bad)
    assert "a JSON-lines log" in str(err.value) and "give the profile `canary baseline capture` wrote" in str(err.value)


def test_json_that_is_only_wrong_in_its_shape_gets_no_guess(tmp_path: Path) -> None:
    """A broken JSON file (a cut download) is not called a log, a page or YAML."""
    from canary.filekind import not_json

    assert not_json('{"format": 1, "rollout": {"model": "rec"') == ""
    assert not_json("") == "" and not_json(tmp_path / "missing.json") == ""
    assert not_json(LOG).startswith(": one JSON object per line") and not_json(PAGE).startswith(": an HTML page")

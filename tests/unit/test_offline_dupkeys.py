"""`canary judge --input`: a key written twice anywhere in the JSON is bad input (exit 2), naming its path.

json.loads keeps the last value: an inline policy with "max_ms": 100 then 100000 judged PASS (exit 0)
where the first value fails, and a check measured twice under one name was overwritten silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import ConfigError
from canary.offline import load_exported

HIST = '{"bounds": [50, 100, 200, 400, "+Inf"], "counts": [%s]}'
STABLE, CANARY = HIST % "5000, 9000, 9900, 10000, 10000", HIST % "100, 200, 300, 1000, 1000"
POLICY = '{"steps": [10, 100], "checks": [{"name": "lat", "kind": "latency", %s}]}'


def _doc(policy_check: str = '"max_ms": 100', checks: str = "") -> str:
    checks = checks or f'"lat": {{"stable": {STABLE}, "canary": {CANARY}}}'
    return f'{{"policy": {POLICY % policy_check}, "checks": {{{checks}}}}}'


@pytest.mark.parametrize(("text", "field"), [
    (_doc('"max_ms": 100, "max_ms": 100000'), "policy.checks[0].max_ms"),
    (_doc(checks=f'"lat": {{"stable": {STABLE}, "canary": {CANARY}}}, "lat": {{"stable": {STABLE}, "canary": {STABLE}}}'),
     "checks.lat"),
    (_doc(checks=f'"lat": {{"stable": {STABLE}, "canary": {CANARY}, "canary": {STABLE}}}'), "checks.lat.canary"),
    ('{"look": 1, "look": 2, ' + _doc()[1:], "look"),
    (_doc().replace('"steps": [10, 100]', '"steps": [10, 100], "analysis": {"alpha": 0.5, "alpha": 0.01}'),
     "policy.analysis.alpha"),
])
def test_a_duplicate_key_is_bad_input_naming_its_path(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "look.json"
    path.write_text(text)
    json.loads(text)  # valid JSON to the standard library, which keeps the last value
    with pytest.raises(ConfigError) as err:
        load_exported(path)
    assert str(err.value).startswith(f"{path}: {field}: duplicate key "), str(err.value)
    result = CliRunner().invoke(app, ["judge", "--input", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{field}: duplicate key" in result.output


def test_unique_keys_still_judge(tmp_path: Path) -> None:
    path = tmp_path / "look.json"
    path.write_text(_doc())
    data = load_exported(path)
    assert data.policy.checks[0].max_ms == 100 and set(data.measurements) == {"lat"}

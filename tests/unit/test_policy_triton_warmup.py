"""A Triton gate setting that does nothing is refused (decision 213).

`gates.triton.warmup_requests: 0` beside `output_range` or `sample_file` passed `policy validate`, but no warm-up
request is sent then, so the range was never applied to an answer and the samples never sent: the policy read as
a gate that checks the canary's outputs, and nothing was checked. Refused, naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import PolicyError
from canary.policy import parse_policy
from tests.unit.test_policy import with_


@pytest.mark.parametrize("triton,field", [
    ({"warmup_requests": 0, "output_range": [0.0, 1.0]}, "gates.triton.output_range"),
    ({"warmup_requests": 0, "sample_file": "samples.json"}, "gates.triton.sample_file"),
    ({"warmup_requests": 0, "output_range": [-1, 1], "sample_file": "s.json", "protocol": "grpc"},
     "gates.triton.output_range"),
])
def test_a_setting_no_warm_up_request_uses_is_refused_naming_it(tmp_path: Path, triton: dict[str, Any],
                                                                  field: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(with_(gates={"triton": triton}), file="p.yaml")
    assert err.value.field == field and "warmup_requests: 0" in str(err.value), str(err.value)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(with_(gates={"triton": triton})))
    r = CliRunner().invoke(app, ["policy", "validate", str(path)])
    assert r.exit_code == 2 and f"{path}: {field}" in r.output, r.output


@pytest.mark.parametrize("triton", [
    {"warmup_requests": 0},  # readiness and compatibility only: what 0 is for
    {"warmup_requests": 1, "output_range": [0.0, 1.0]},
    {"enabled": False, "warmup_requests": 0, "output_range": [0.0, 1.0]},  # off: kept for when it is turned on
])
def test_a_gate_whose_settings_act_is_accepted(triton: dict[str, Any]) -> None:
    assert parse_policy(with_(gates={"triton": triton})).gates.triton is not None

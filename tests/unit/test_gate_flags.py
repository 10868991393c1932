"""Triton URLs given for a gate the policy turns off: `promote` says that no gate runs (`gate.flags_ignored`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from canary import cli
from canary.policy import parse_policy

BASE = {"steps": [10, 100], "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}


@pytest.mark.parametrize("gates, said", [({}, "absent"), ({"gates": {"triton": {"enabled": False}}}, "enabled: false")])
def test_triton_urls_for_a_gate_the_policy_turns_off_are_named_in_a_warning(gates: dict, said: str) -> None:
    policy = parse_policy({**BASE, **gates})
    with capture_logs() as seen:
        assert cli._gate(policy, Path("p.yaml"), "rec", "localhost:8001", "localhost:8002") is None
    [line] = [e for e in seen if e["event"] == "gate.flags_ignored"]
    assert line["log_level"] == "warning"
    assert line["flags"] == "--triton-stable --triton-canary"
    assert f"gates.triton is {said}" in line["reason"] and "no Triton gate runs" in line["reason"]


def test_no_warning_without_urls() -> None:
    with capture_logs() as seen:
        assert cli._gate(parse_policy(BASE), Path("p.yaml"), "rec", None, None) is None
    assert not [e for e in seen if e["event"] == "gate.flags_ignored"]

"""A console line (a person's terminal, `--log-format console`) gives its fields in the order the code gives them,
as the JSON line does: the rollout, the weights now, why, and the bulky evidence last (decision 679).

The console renderer sorted the fields by name: a check's `rollback.completed` printed `evidence=[{...}]` (two
kilobytes a check: every test's statistics) before `from_weights`, `reason` and `weights`, so a terminal wrapped
screens of numbers before the line said why and where traffic is now."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import pytest

from canary import logs
from canary import rollout as rl
from canary.model import Weights
from tests.unit.test_runner import POLICY

EVIDENCE = [{"check": "lat", "outcome": "fail", "extra": {"tests": [{"p_value": 1e-9, "s_window": 165.8}] * 20}}]


@pytest.fixture(autouse=True)
def _logs_reset() -> Iterator[None]:
    yield
    logs.configure(fmt="json")


def test_a_rollback_line_on_a_terminal_says_where_traffic_is_and_why_before_its_evidence() -> None:
    state = rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0)[0]
    state = replace(state, phase=rl.PROGRESSING, weights=Weights(90, 10), step=1)
    _, actions = rl.transition(state, rl.Rollback(1001.0, "lat: canary p95 94 ms vs 61 ms", cause="check"), POLICY)
    done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"][0]
    out = io.StringIO()
    logs.configure(fmt="console", stream=out)
    logs.get(model="rec", namespace="ml").error(done.event, phase=rl.ROLLED_BACK, weights="100/0",
                                                 **{**done.fields, "evidence": EVIDENCE})
    [line] = out.getvalue().splitlines()
    at = {k: line.index(f" {k}=") for k in ("model", "weights", "reason", "end_cause", "from_weights", "evidence")}
    assert at["model"] < at["weights"] < at["reason"] < at["end_cause"] < at["from_weights"] < at["evidence"], line

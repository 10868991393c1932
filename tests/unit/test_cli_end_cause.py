"""`-o json` of an ended rollout says why it ended (`end_cause`): a CI pipeline could not tell a canary
shown beyond a limit from one not shown within by the deadline (both exit 1, "rolled_back")."""

from __future__ import annotations

import pytest

from canary import rollout as rl
from canary.cli import state_dict
from canary.model import Weights


@pytest.mark.parametrize(("phase", "reason", "cause"), [
    (rl.ROLLED_BACK, "latency-p95: canary p95 135 ms vs stable 77.3 ms (+74%, limit +20%), n=400/400, p=0.0001",
     "check"),
    (rl.ROLLED_BACK, "no verdict after 70s at step 1 (latency-p95: not yet shown within +20%)", "deadline"),
    (rl.ROLLED_BACK, "operator: bad canary", "operator"),
    (rl.ABORTED, "interrupted", "interrupted"),
    # promote's fail-safe and the controller's `_failed` (decision 112): an API or process failure, not a check
    (rl.ABORTED, "failed: kubernetes API unreachable: ml/m0 (virtualservices)", "infrastructure"),
    (rl.ABORTED, "failed: RuntimeError: boom", "infrastructure"),
    (rl.ABORTED, "the stable subset was re-pointed from v1 to v3 outside the rollout", "foreign_edit"),
    (rl.ABORTED, "CanaryRollout deleted mid-rollout", "operator"),
    (rl.PROMOTED, "all steps passed", None),
])
def test_an_ended_rollouts_json_names_its_end_cause(phase: str, reason: str, cause: str | None) -> None:
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=phase, weights=Weights(100, 0),
                            step=1, started_at=1.0, reason=reason)
    assert state_dict(state, exit_code=1).get("end_cause") == cause

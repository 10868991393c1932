"""`canary promote` whose record is removed from the VirtualService mid-rollout (decision 143 b).

A `kubectl apply` or `replace`, or a GitOps sync, of a VirtualService manifest that lacks the
`modelcanary.dev/rollout` annotation drops the rollout's record, usually with the weights. The rollout
ended at stable 100% (safe), but as an unexplained failure: the error `rollout.failed` and a reason
"the rollout state was changed by someone else; re-read it before writing", which sends on-call
looking for a `canary rollback` nobody ran. Now one warning names what happened (`rollout.record_removed`,
with a hint), and the record says why stable got 100%.

Real Kubernetes API emulator and IstioRouter, fake metrics on a fake clock (as
test_promote_route_safety.py), the edit made at a fixed point of the rollout.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from tests.integration.test_promote_route_safety import (GROUP, HookClock, _at_first_step, api, record,  # noqa: F401
                                                         routes, runner)

pytestmark = pytest.mark.integration


def _replaced(weights: tuple[int, int] | None) -> Any:
    """The VirtualService as a manifest without the annotation puts it: the record gone, the weights
    `weights` (None: as they were)."""
    def edit(vs: dict[str, Any]) -> None:
        vs["metadata"]["annotations"].pop("modelcanary.dev/rollout")
        if weights is not None:
            for d, w in zip(vs["spec"]["http"][0]["route"], weights):
                d["weight"] = w
    return edit


@pytest.mark.parametrize("weights", [(100, 0), (50, 50), None], ids=["git 100/0", "git 50/50", "annotation only"])
def test_a_record_removed_mid_rollout_ends_at_stable_and_says_so(api: Any, weights: Any) -> None:
    clock = HookClock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: api.edit(GROUP, "virtualservices", "ml", "m0",
                                                                _replaced(weights))))
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert record(api)["phase"] == rl.ABORTED and record(api)["reason"] == res.state.reason
    assert "annotation modelcanary.dev/rollout) was removed from VirtualService ml/m0" in res.state.reason
    assert "GitOps sync" in res.state.reason and res.state.reason.endswith("stable 100%")
    removed = [e for e in logs if e["event"] == "rollout.record_removed"]
    assert len(removed) == 1 and removed[0]["log_level"] == "warning", removed
    assert removed[0]["recorded_weights"] == "80/20" and "ignoreDifferences" in removed[0]["hint"]
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], \
        [(e["event"], e.get("error")) for e in logs if e["log_level"] in ("error", "critical")]

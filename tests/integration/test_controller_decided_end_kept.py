"""A rollback the controller decided, whose stable-100% write fails for good (a refusal, or 5xx past the failure
budget), ends as it was decided, not as the failure (decision 676).

The tick's failure went to `_failed`, whose rescue wrote an abort of its own: `rollout.aborted`, `end_cause:
infrastructure`, `reason: failed: <the API error>`. On-call read, from the one line the end leaves, that the
canary was not to blame: an operator's rollback (`pager`) lost its reason, and a canary shown bad by a check (the
one `error` line of its rollout) was said "not the canary", fit to be rolled out again. Promote's fail-safe already
wrote the decided end (decision 14's `decided`). Against the strict Kubernetes API emulator and a real Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def test_a_decided_rollback_whose_write_is_refused_ends_as_decided_not_as_the_failure(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    # the decided end's weights write is refused (a webhook's denial, not retried): the tick fails
    api.fail_next(403, times=1, methods=("PUT", "PATCH"), plural="virtualservices")
    with capture_logs() as logs:
        for _ in range(3):
            op.tick()
    assert vs(api, 0)[0] == [100, 0]
    ends = [e for e in logs if e["event"] in ("rollback.completed", "rollout.aborted")]
    assert len(ends) == 1, [(e["event"], e.get("reason")) for e in logs]
    [end] = ends
    assert end["event"] == "rollback.completed" and end["phase"] == rl.ROLLED_BACK, end
    assert end["end_cause"] == "operator" and end["reason"] == "operator: pager", end
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert status["phase"] == rl.ROLLED_BACK and "pager" in status["reason"], status

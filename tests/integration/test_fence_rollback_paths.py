"""Decision 112: the lease fence's refusal (NotLeader: nothing sent, the new leader ends the rollout) on
the controller's other stable-100% paths, and a guarded pointing racing a new claim of the same versions.
Against the strict Kubernetes API emulator."""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary import sweep
from canary.errors import NotLeader
from canary.fencing import FencedRouter
from canary.logs import get as get_logger
from canary.model import Weights
from canary.reconcile import to_stable
from canary.routing import patch
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401  (fixtures)
from tests.integration.test_sweep import cluster  # noqa: F401  (fixture)
from tests.integration.test_sweep_ends import _ended_on, _events, _target
from tests.integration.test_sweep_ends import _found
from tests.integration.test_sweep_ends_attack import GROUP, claimed_before_next_write
from tests.support.killpoints import cluster_state

pytestmark = pytest.mark.integration


def _split(router: Any) -> rl.RolloutState:
    """Route 0 split 90/10 by a rollout of v2 in progress."""
    t = _target(0)
    running = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                              weights=Weights(90, 10), step=0, started_at=1.0, updated_at=1.0, owner="promote/x")
    router.point_subset(t, "canary", "v2")
    router.set_weights(t, Weights(90, 10), state=running.to_json())
    return running


def _pages(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["log_level"] in ("critical", "error")]


def test_to_stable_refused_by_the_fence_pages_nobody(cluster: Any) -> None:
    """`to_stable` (the controller's `_failed`, `_deleted` and supersede rescues) logged the critical
    `rollback.failed` ("act by hand") at its first attempt refused by the fence, a leadership handover:
    NotLeader is raised at once, nothing logged as failed, nothing written."""
    api, client, router = cluster
    running = _split(router)
    with structlog.testing.capture_logs() as logs, pytest.raises(NotLeader):
        to_stable(FencedRouter(router, may_write=lambda: False), _target(0), running, reason="failed: boom",
                  log=get_logger(), now=2.0, expect=running.to_json())
    assert not _pages(logs), logs
    assert cluster_state(api, 0)[0] == [90, 10]


def test_the_sweep_ending_an_abandoned_rollout_refused_by_the_fence_raises_not_leader(cluster: Any) -> None:
    """`sweep.end` through the controller's fenced router on a replica that lost the lease logged the
    critical `rollback.failed` and `traffic.unsafe` and raised TrafficUnsafe: `_sweep` took it for a failed
    end and went on to every other abandoned route (each refused and paged the same way). NotLeader passes
    through, so `_sweep` stops."""
    api, client, router = cluster
    running = _split(router)
    text = patch.read_state(api.get(GROUP, "virtualservices", "ml", "m0"))
    found = sweep.Found("ml", "m0", running, text, reason="owner gone", quiet_s=600.0)
    with structlog.testing.capture_logs() as logs, pytest.raises(NotLeader):
        sweep.end(FencedRouter(router, may_write=lambda: False), found, log=get_logger(), now=2.0)
    assert not _pages(logs), logs
    assert cluster_state(api, 0)[0] == [90, 10]


def test_a_repair_racing_a_new_claim_of_the_same_versions_is_not_undone(cluster: Any) -> None:
    """The sweep's repair of an ended rollback (v1 stable, v2 canary, left on v2) points the stable subset at
    v1; before its check after the write, a new promote of v2 again (stable v1: the claim's own check passes
    once the repair landed) is recorded. That record has this rollout's versions but is another rollout:
    undoing the pointing put the new rollout's stable subset on v2, its canary version (both arms v2, judged
    as one, until its drift check aborted it). The pointing is kept."""
    api, client, router = cluster
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", 1000.0)
    found = _found(api)
    claimed_before_next_write(api, stable="v1", canary="v2", owner="promote/y")
    with structlog.testing.capture_logs() as logs:
        sweep.check_end(router, found, log=get_logger())
    assert cluster_state(api, 0)[2] == "v1", "the new rollout's stable subset was pointed at its canary version"
    assert not _events(logs, "subset.repointed_back")


def test_a_rescue_refused_by_the_fence_is_no_failed_rescue(world: Any) -> None:
    """A restarted controller's tick fails (the CR's policyRef ConfigMap is gone) and its rescue sends
    stable 100% (`_failed` -> `_stable_if_ours`); the lease is lost just before that write. The refusal
    logged the critical `rollback.failed` and the error `rescue.failed` ("`canary rollback` acts now"): on-call
    was paged for a handover. Nothing is logged as failed and nothing written; the leader ends it."""
    import kubernetes.client as kc

    from canary.controller import Controller
    from tests.integration.test_controller_review import _with_policy_ref

    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    kc.CoreV1Api(op.core.api_client).delete_namespaced_config_map("pol", "ml")
    leading = [True]
    fresh = Controller(custom=op.custom, core=op.core, router=op.router, metrics=op.metrics, batch=op.batch,
                       namespace="ml", is_leader=lambda: leading[0])
    fail_status = fresh._fail_status

    def then_lose_the_lease(obj: Any, exc: BaseException) -> None:
        fail_status(obj, exc)
        leading[0] = False  # the status written, the lease lost before the rescue's stable-100% write

    fresh._fail_status = then_lose_the_lease  # type: ignore[method-assign]
    split = vs(api, 0)[0]
    with structlog.testing.capture_logs() as logs:
        fresh.tick()
    assert not [(e["event"], e.get("error")) for e in _pages(logs)]
    assert vs(api, 0)[0] == split and vs(api, 0)[1]["phase"] == rl.PROGRESSING

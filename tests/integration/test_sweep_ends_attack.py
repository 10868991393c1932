"""Attacks on the controller sweep's check of ended rollouts (`sweep.check_end`, decision 108 (d)),
against the strict Kubernetes API emulator: a stable subset moved on to a third version by someone
else after the rollback (a deploy outside canary), a record naming its own DestinationRule and route,
a DestinationRule deleted, a new rollout claimed between the check's read and its repair."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary import sweep
from canary.logs import get as get_logger
from canary.model import Weights
from canary.routing import patch
from tests.fakes import FakeClock
from tests.integration.test_sweep import _controller, cluster  # noqa: F401  (fixture)
from tests.integration.test_sweep_ends import _ended_on, _events, _found, _target
from tests.support.killpoints import cluster_state

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"


def _stable_of(api: Any, dr: str) -> str:
    obj = api.get(GROUP, "destinationrules", "ml", dr)
    return {s["name"]: s["labels"]["version"] for s in obj["spec"]["subsets"]}["stable"]


def _sweeps(ctl: Any, clock: FakeClock, n: int) -> list[dict[str, Any]]:
    """`n` ticks of `ctl`, a sweep each (60 s apart): what they logged."""
    with structlog.testing.capture_logs() as logs:
        for _ in range(n):
            ctl.tick()
            clock.sleep(60)
    return logs


def claimed_before_next_write(api: Any, *, stable: str, canary: str, owner: str = "promote/x") -> None:
    """A new rollout of (stable, canary) on m0 is recorded just before the next write reaches the API:
    a claim racing the write under test."""
    new = rl.RolloutState(model="m0", stable_version=stable, canary_version=canary, phase=rl.PENDING,
                          weights=Weights(100, 0), step=0, started_at=2000.0, updated_at=2000.0, owner=owner)
    api.before_next_write(lambda: api.edit(GROUP, "virtualservices", "ml", "m0", lambda vs: vs["metadata"][
        "annotations"].__setitem__(patch.STATE_ANNOTATION, new.to_json())))


def test_a_rollback_whose_stable_subset_moved_on_to_a_third_version_is_reported_not_reverted(cluster: Any) -> None:
    """Rolled back v2 (v1 stable), then a deploy outside canary pointed the stable subset at v3. The
    record still says rolled_back v1/v2; the check pointed every request back at the old v1, undoing a
    deliberate deploy. Only the canary version left there is what a killed rollback leaves: repaired;
    any other version is reported, and left where it is."""
    api, client, router = cluster
    clock = FakeClock(time.time())
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", clock.now() - 3600)
    router.point_subset(_target(0), "stable", "v3")  # a deploy after the rollback, not through canary
    logs = _sweeps(_controller(client, clock, sweep_every=60), clock, 3)
    assert cluster_state(api, 0)[2] == "v3", "the sweep reverted a deploy of v3 to the rolled-back record's v1"
    assert not _events(logs, "subset.repaired")
    said = _events(logs, "sweep.route_disagrees")
    assert len(said) == 1 and said[0]["virtual_service"] == "m0" and "v3" in said[0]["error"], said


def test_the_repair_writes_the_destination_rule_and_route_the_record_names(cluster: Any) -> None:
    """A rollout that drove DestinationRule m0-dr (not the VirtualService's name) and route `primary`:
    the check reads and repairs m0-dr, and leaves the DestinationRule named like the route alone."""
    api, client, router = cluster
    dr = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0"))
    dr["metadata"] = {"name": "m0-dr", "namespace": "ml"}
    api.handler.put_object(dr)
    t = _target(0)
    from dataclasses import replace

    t = replace(t, destination_rule="m0-dr", route="primary")
    state = rl.RolloutState(model=t.model, stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                            weights=Weights(100, 0), step=1, started_at=1.0, updated_at=2.0, reason="p95",
                            destination_rule="m0-dr", route="primary")
    router.point_subset(t, "canary", "v2")
    router.point_subset(t, "stable", "v2")  # m0-dr left on the canary version
    router.set_weights(t, Weights(100, 0), state=state.to_json())
    router.point_subset(_target(0), "stable", "v7")  # the other DestinationRule: not this rollout's
    assert sweep.check_end(router, _found(api), log=get_logger()) == "repaired"
    assert (_stable_of(api, "m0-dr"), _stable_of(api, "m0")) == ("v1", "v7")


def test_a_deleted_destination_rule_is_unknown_and_nothing_is_written(cluster: Any) -> None:
    api, client, router = cluster
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", 1000.0)
    api.delete(GROUP, "destinationrules", "ml", "m0")
    writes = len(api.writes)
    assert sweep.check_end(router, _found(api), log=get_logger()) == "unknown"
    assert len(api.writes) == writes


def test_a_rollout_claimed_between_the_read_and_the_repair_keeps_its_subsets(cluster: Any) -> None:
    """The check read the ended record, then a new rollout (stable v2 now, canary v3) was recorded just
    before the repair's write: the guarded pointing does not land (or is undone), so the new rollout's
    stable subset stays on v2."""
    api, client, router = cluster
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", 1000.0)
    found = _found(api)
    claimed_before_next_write(api, stable="v2", canary="v3")
    with structlog.testing.capture_logs() as logs:
        assert sweep.check_end(router, found, log=get_logger()) == "unknown"
    assert cluster_state(api, 0)[2] == "v2" and cluster_state(api, 0)[1]["canary_version"] == "v3"
    assert _events(logs, "sweep.repair_failed") and not _events(logs, "subset.repaired")
    assert [e["version"] for e in _events(logs, "subset.repointed_back")] == ["v2"]  # the undo, itself guarded


def test_a_rollout_claimed_during_the_repair_that_keeps_v1_stable_is_not_undone(cluster: Any) -> None:
    """The same race, the new rollout's stable version the old one (v1, canary v3): the pointing at v1 is
    what that rollout wants, so it is not undone (v2, the rolled-back version, would serve everything)."""
    api, client, router = cluster
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", 1000.0)
    found = _found(api)
    claimed_before_next_write(api, stable="v1", canary="v3")
    with structlog.testing.capture_logs() as logs:
        assert sweep.check_end(router, found, log=get_logger()) == "unknown"
    assert cluster_state(api, 0)[2] == "v1" and not _events(logs, "subset.repointed_back")


def test_routes_that_cannot_be_read_do_not_starve_an_older_rollback_left_on_the_canary(
        cluster: Any, monkeypatch: Any) -> None:
    """At most CHECK_ENDS_PER_SWEEP ended routes are read a sweep, the latest ends first. Routes whose check
    never concludes (their DestinationRule deleted: "unknown" at every sweep) and that ended later held
    every read of every sweep, so an older rollback left on the canary version was never repaired. The
    reads go to the routes read least recently first."""
    from canary import controller as ctl_mod

    monkeypatch.setattr(ctl_mod, "CHECK_ENDS_PER_SWEEP", 2)
    api, client, router = cluster
    clock = FakeClock(time.time())
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", clock.now() - 3600)  # the oldest end: every request on v2
    for i in (1, 2):  # later ends whose DestinationRule is gone: never conclusive
        _ended_on(router, i, rl.ABORTED, "v2", clock.now() - 60 * i)
        api.delete(GROUP, "destinationrules", "ml", f"m{i}")
    logs = _sweeps(_controller(client, clock, sweep_every=60), clock, 6)
    assert cluster_state(api, 0)[2] == "v1", "an older rollback left on the canary was never read"
    assert len(_events(logs, "subset.repaired")) == 1


def test_a_repair_refused_for_want_of_the_lease_is_not_leader_not_a_failed_repair(cluster: Any) -> None:
    """The controller's sweep writes through its fenced router: a replica that lost the lease between its
    sweep's read and its repair must stop (NotLeader: `_check_ends` returns), not log a failed repair and
    go on to write every other ended route, each refused the same way."""
    from canary.errors import NotLeader
    from canary.fencing import FencedRouter

    api, client, router = cluster
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", 1000.0)
    with structlog.testing.capture_logs() as logs, pytest.raises(NotLeader):
        sweep.check_end(FencedRouter(router, may_write=lambda: False), _found(api), log=get_logger())
    assert not _events(logs, "sweep.repair_failed") and cluster_state(api, 0)[2] == "v2"


def _running_at_90_10(router: Any) -> tuple[Any, rl.RolloutState]:
    """Route m0 at 90/10, recording a promote's rollout of v2 in progress: (its target, its record)."""
    t = _target(0)
    running = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                              weights=Weights(90, 10), step=0, started_at=1.0, updated_at=1.0, owner="promote/x")
    router.point_subset(t, "canary", "v2")
    router.set_weights(t, Weights(90, 10), state=running.to_json())
    return t, running


def test_a_stable_write_refused_by_the_fence_pages_nobody(cluster: Any) -> None:
    """A rollback's stable-100% write refused because this replica lost the lease (nothing sent) logged the
    critical `rollback.failed` ("act by hand"): on-call was paged for a leadership handover, while the new
    leader's tick ends that rollout. NotLeader is raised and nothing is logged as failed."""
    from canary.errors import NotLeader
    from canary.fencing import FencedRouter
    from canary.reconcile import execute

    api, client, router = cluster
    t, running = _running_at_90_10(router)
    new, actions = rl.transition(running, rl.Rollback(2.0, "p95 breach"), None)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs, pytest.raises(NotLeader):
        execute(FencedRouter(router, may_write=lambda: False), t, new, actions, log=get_logger(),
                expect=running.to_json())
    assert not [e for e in logs if e["log_level"] == "critical"], logs
    assert cluster_state(api, 0)[0] == [90, 10]


def test_a_refusal_after_a_stable_write_with_no_answer_pages_that_it_may_have_landed(cluster: Any) -> None:
    """Decision 131 (b), from the review. The sweep's stable-100% write got 500s past the router's tries (no
    answer: it may have been applied), and its next attempt was refused (403): the page said `write_landed:
    no: the write was refused`. It now says unknown, naming the write that had no answer."""
    from dataclasses import replace

    from canary.errors import CanaryError

    api, client, router = cluster
    _running_at_90_10(router)
    api.fail_next(500, times=router.transient_attempts, methods=("PUT", "PATCH"), plural="virtualservices")
    api.fail_next(403, times=100, methods=("PUT", "PATCH"), plural="virtualservices")
    with structlog.testing.capture_logs() as logs, pytest.raises(CanaryError):
        sweep.end(router, replace(_found(api), reason="its owner is gone"), log=get_logger(), now=2.0)
    api.handler.faults.clear()
    pages = _events(logs, "rollback.failed")
    assert len(pages) == 1 and pages[0]["write_landed"].startswith("unknown: an earlier stable-100% write had no "
                                                                   "answer"), pages

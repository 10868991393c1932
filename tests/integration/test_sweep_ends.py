"""The controller's sweep checks each ended rollout's route once per record (`sweep.check_end`): an
ended rollback whose stable subset was left on the canary version (its writer killed between its
stable-100% write and its pointing back) is repaired, guarded on the record; a promotion left with
the stable subset on the old version is reported (`sweep.route_disagrees`), never moved. Until now
nobody repaired either unless `canary rollback` was run: every request went to the rolled-back
version while every record said stable. Against the strict Kubernetes API emulator."""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog.testing
import tenacity

from canary import rollout as rl
from canary import sweep
from canary.logs import get as get_logger
from canary.model import Target, Weights
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import prometheus  # noqa: F401  (fixture)
from tests.integration.test_sweep import _controller, cluster  # noqa: F401  (fixture)
from tests.support.killpoints import cluster_state

pytestmark = pytest.mark.integration


def _target(i: int) -> Target:
    return Target(namespace="ml", virtual_service=fleet.model(i), model=fleet.model(i), stable_version="v1",
                  canary_version="v2")


def _ended_on(router: IstioRouter, i: int, phase: str, stable_subset: str, at: float) -> None:
    """Route i ended `phase` (v1 stable, v2 canary) with its stable subset on `stable_subset`."""
    t = _target(i)
    state = rl.RolloutState(model=t.model, stable_version="v1", canary_version="v2", phase=phase,
                            weights=Weights(100, 0), step=1, started_at=at - 100, updated_at=at, reason="p95 breach")
    router.point_subset(t, "canary", "v2")
    router.point_subset(t, "stable", stable_subset)
    router.set_weights(t, Weights(100, 0), state=state.to_json())


def _found(api: Any, name: str = "m0") -> sweep.Found:
    """Route `name`'s record as the sweep lists it, seen unchanged long enough to be repaired."""
    from canary.routing import patch

    vs = api.get("networking.istio.io", "virtualservices", "ml", name)
    text = patch.read_state(vs)
    return sweep.Found("ml", name, rl.RolloutState.from_json(text), text, quiet_s=600.0)


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_the_sweep_repairs_an_ended_rollback_left_on_the_canary_and_reports_a_promotion(cluster: Any) -> None:
    api, client, router = cluster
    clock = FakeClock(time.time())
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", clock.now())  # every request on the rolled-back v2
    _ended_on(router, 1, rl.PROMOTED, "v1", clock.now())  # promoted, every request on the old v1
    _ended_on(router, 2, rl.ABORTED, "v1", clock.now())  # right
    ctl = _controller(client, clock, sweep_every=60)
    writes = len(api.writes)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()  # first seen: it may be a rollback between its two writes (REPAIR_AFTER_S)
        assert cluster_state(api, 0)[2] == "v2" and len(api.writes) == writes and not _events(logs, "subset.repaired")
        clock.sleep(60)
        ctl.tick()
    repaired = _events(logs, "subset.repaired")
    assert len(repaired) == 1 and repaired[0]["by"] == "sweep" and repaired[0]["was"] == "v2", repaired
    assert repaired[0]["virtual_service"] == "m0" and "every request is served by v2" in repaired[0]["reason"]
    weights, rec, stable, canary = cluster_state(api, 0)
    assert (weights, rec["phase"], stable, canary) == ([100, 0], rl.ROLLED_BACK, "v1", "v2")
    said = _events(logs, "sweep.route_disagrees")
    assert len(said) == 1 and said[0]["virtual_service"] == "m1" and "served by v1" in said[0]["error"], said
    assert cluster_state(api, 1)[2] == "v1"  # reported, not moved
    assert cluster_state(api, 2)[2] == "v1"
    writes = len(api.writes)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):  # each record was checked once: no more reads decide anything, nothing repeated
            clock.sleep(60)
            ctl.tick()
    assert len(api.writes) == writes and not _events(logs, "sweep.route_disagrees"), _events(logs, "sweep.route_disagrees")


def test_an_end_written_again_since_the_listing_is_left_to_the_next_sweep(cluster: Any) -> None:
    """`check_end` reads the route: a record that changed since the sweep listed it (its writer going on)
    is not repaired on the stale reading; the repair itself is guarded on the record as well."""
    api, client, router = cluster
    clock = FakeClock(time.time())
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", clock.now() - 10)
    stale = _found(api)
    _ended_on(router, 0, rl.ROLLED_BACK, "v2", clock.now())  # written again: another record
    assert sweep.check_end(router, stale, log=get_logger()) == "unknown"
    assert cluster_state(api, 0)[2] == "v2"
    assert sweep.check_end(router, _found(api), log=get_logger()) == "repaired"
    assert cluster_state(api, 0)[2] == "v1"


def test_the_sweep_repairs_from_its_informer_cache(prometheus: Any) -> None:  # noqa: F811
    """With watches (`canary controller run`): the route is read from the cache, the write still guarded."""
    from tests.integration.test_controller_watch import Clock, caught_up, make

    api = fleet.start_api(1)
    clock = Clock(time.time())
    op, stop, client = make(api, prometheus, clock)
    try:
        _ended_on(IstioRouter(api.api_client(), wait=tenacity.wait_none()), 0, rl.ROLLED_BACK, "v2", clock.t)
        caught_up(api, op)
        op.tick()
        clock.t += 60
        caught_up(api, op)
        with structlog.testing.capture_logs() as logs:
            op.tick()
        assert len(_events(logs, "subset.repaired")) == 1 and cluster_state(api, 0)[2] == "v1"
    finally:
        stop.set()
        client.close()
        api.stop()

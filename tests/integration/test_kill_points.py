"""SIGKILL right after each kind of write, for `canary promote` and for the controller.

For every write an uninterrupted rollout makes (claim, canary subset pointed, each step's
weights, each recorded look, promoting, stable re-pointed, final, CR status), the process is
killed right after that write lands (tests/support/killpoints.py), a fresh process takes over,
and the outcome must be the right one with weights, recorded state, CR status and subsets
agreeing. Real Kubernetes API emulator and IstioRouter; metrics from a fake provider on a fake
clock that sees the cluster's weights, so every kill point is exact and the run deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client as kc
import pytest
import tenacity

from canary import crd
from canary import rollout as rl
from canary.controller import Controller
from canary.model import Target, Weights
from canary.operator import Operator
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import Killed, Killer, KillerCustom, LiveWeights

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
SLOWDOWN = {"v2": 1.0, "v3": 1.6}  # v3 is 60% slower: must never be promoted
RPS = 1000.0  # enough canary requests per look that the judge decides v3 at the first step


def cluster_state(api: Any, i: int = 0) -> tuple[list[int], dict[str, Any], str, str]:
    vs = api.get(GROUP, "virtualservices", "ml", fleet.model(i))
    dr = api.get(GROUP, "destinationrules", "ml", fleet.model(i))
    subsets = {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}
    state = json.loads(vs["metadata"]["annotations"]["canary.ml/rollout"])
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]], state, subsets["stable"], subsets["canary"]


def assert_consistent(api: Any, version: str, phase: str) -> None:
    weights, state, stable, _ = cluster_state(api)
    want = fleet.expected_phase(version)
    assert phase == want and state["phase"] == want, (phase, state["phase"], state["reason"])
    assert weights == [100, 0] == [state["weights"]["stable"], state["weights"]["canary"]]
    assert stable == ("v2" if want == rl.PROMOTED else "v1")


# ---- canary promote ----------------------------------------------------------------------------

POLICY = parse_policy(fleet.FAST_POLICY)
TARGET = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="",
                canary_version="v2")


def promote(api: Any, client: Any, version: str, clock: FakeClock, kill_after: int | None,
            log: list[str]) -> rl.RolloutState | None:
    target = Target(**{**TARGET.__dict__, "canary_version": version})
    real = IstioRouter(client, wait=tenacity.wait_none())
    router = Killer(real, kill_after, log)
    metrics = FakeMetrics(LiveWeights(real, target), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)  # type: ignore[arg-type]
    ctl = Controller(policy=POLICY, target=target, router=router, metrics=metrics, clock=clock)
    try:
        return ctl.run().state
    except Killed:
        return None


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_promote_killed_after_every_write_resumes_to_the_right_end(version: str) -> None:
    api = fleet.start_api(1)
    client = api.api_client()
    writes: list[str] = []
    try:
        assert promote(api, client, version, FakeClock(), None, writes) is not None
    finally:
        client.close()
        api.stop()
    kinds = sorted({w.split(" ")[0] + " " + w.split(" ")[-1] for w in writes})
    assert len(writes) >= 6, writes
    for k in range(1, len(writes) + 1):
        api = fleet.start_api(1)
        client = api.api_client()
        try:
            clock, log = FakeClock(), []
            assert promote(api, client, version, clock, k, log) is None, f"not killed at write {k}"
            final = promote(api, client, version, clock, None, [])  # `canary promote` run again
            assert final is not None
            assert_consistent(api, version, final.phase)
        except AssertionError as exc:
            raise AssertionError(f"killed after write {k} ({writes[k - 1]}): {exc}") from None
        finally:
            client.close()
            api.stop()
    print(f"\n{version}: {len(writes)} kill points ({', '.join(kinds)}): all consistent")


# ---- the controller ----------------------------------------------------------------------------

def controller_run(api: Any, client: Any, clock: FakeClock, version: str, kill_after: int | None,
                   log: list[str], max_ticks: int = 400) -> bool:
    """Tick a fresh controller until the CR is terminal (True) or it is killed (False)."""
    real = IstioRouter(client, wait=tenacity.wait_none())
    killer = Killer(real, kill_after, log)
    custom = KillerCustom(kc.CustomObjectsApi(client), killer)
    target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="v1",
                    canary_version=version)
    metrics = FakeMetrics(LiveWeights(real, target), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)  # type: ignore[arg-type]
    op = Operator(custom=custom, core=kc.CoreV1Api(client), router=killer, metrics=metrics, namespace="ml",
                  clock=clock)
    for _ in range(max_ticks):
        try:
            op.tick()
        except Killed:
            return False
        if killer.dead:
            return False
        status = (api.get(crd.GROUP, crd.PLURAL, "ml", "r0") or {}).get("status") or {}
        if status.get("phase") in rl.TERMINAL:
            return True
        clock.sleep(0.5)
    raise AssertionError(f"controller did not finish: {status.get('phase')}")


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_controller_killed_after_every_write_resumes_to_the_right_end(version: str) -> None:
    def fresh() -> tuple[Any, Any]:
        api = fleet.start_api(1)
        api.handler.put_object(fleet.rollout_object(0, version))
        return api, api.api_client()

    api, client = fresh()
    writes: list[str] = []
    try:
        assert controller_run(api, client, FakeClock(), version, None, writes)
    finally:
        client.close()
        api.stop()
    assert len(writes) >= 6, writes
    for k in range(1, len(writes) + 1):
        api, client = fresh()
        try:
            clock = FakeClock()
            assert not controller_run(api, client, clock, version, k, []), f"not killed at write {k}"
            assert controller_run(api, client, clock, version, None, [])  # the next leader takes over
            status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
            assert_consistent(api, version, status["phase"])
            assert status["weights"] == {"stable": 100, "canary": 0}
        except AssertionError as exc:
            raise AssertionError(f"killed after write {k} ({writes[k - 1]}): {exc}") from None
        finally:
            client.close()
            api.stop()


def test_a_promotions_stable_repointing_still_in_flight_cannot_land_after_a_rollback() -> None:
    """promote prepared 'stable -> v2' and its PUT is slow (or its process died mid-request);
    meanwhile on-call rolls back. The rollback's final DestinationRule write supersedes: the
    late PUT fails its resourceVersion precondition, and stable stays on the stable version.
    The API server holds the PUT until the rollback is done (no timing decides the order)."""
    import threading
    import time

    from canary.controller import operator_action
    from canary.errors import RoutingConflict
    from canary.logs import get

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router = IstioRouter(client, wait=tenacity.wait_none(), conflict_attempts=1)
        target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
        router.point_subset(target, "canary", "v2")
        promoting = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                                    weights=Weights(0, 100), step=2)
        router.set_weights(target, Weights(0, 100), state=promoting.to_json())
        release = api.hold_next(methods=("PUT",), plural="destinationrules")
        arrived = len(api.handler.arrivals)
        late: list[BaseException] = []

        def dying_promote() -> None:  # no guard, no retry: a process that died after sending its PUT
            try:
                router.point_subset(target, "stable", "v2")
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                late.append(exc)

        t = threading.Thread(target=dying_promote)
        t.start()
        deadline = time.monotonic() + 10
        while not any(m == "PUT" and "destinationrules" in p for _, m, p in api.handler.arrivals[arrived:]):
            assert time.monotonic() < deadline
            time.sleep(0.01)  # until the API server holds its PUT (a condition, not a guess)
        state = operator_action(IstioRouter(client, wait=tenacity.wait_none()), target,
                                rl.Rollback(1.0, "on-call"), log=get())
        release.set()  # now the late PUT is served, after the rollback
        t.join(10)
        weights, recorded, stable, _ = cluster_state(api)
        assert state.phase == rl.ROLLED_BACK and recorded["phase"] == rl.ROLLED_BACK and weights == [100, 0]
        assert stable == "v1", "the late promotion write landed after the rollback"
        assert len(late) == 1 and isinstance(late[0], RoutingConflict)  # refused: 409 on its resourceVersion
    finally:
        client.close()
        api.stop()

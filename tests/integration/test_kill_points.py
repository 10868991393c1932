"""SIGKILL right after each kind of write, for `canary promote` and for the controller.

For every write an uninterrupted rollout makes (claim, canary subset pointed, each step's
weights, each recorded look, promoting, stable re-pointed, final, CR status), the process is
killed right after that write lands (tests/support/killpoints.py), a fresh process takes over,
and the outcome must be the right one with weights, recorded state, CR status and subsets
agreeing. Real Kubernetes API emulator and IstioRouter; metrics from a fake provider on a fake
clock that sees the cluster's weights, so every kill point is exact and the run deterministic.
"""

from __future__ import annotations

from typing import Any

import pytest
import tenacity

from canary import rollout as rl
from canary.model import Target, Weights
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.support.killpoints import cluster_state, every_kill_point

pytestmark = pytest.mark.integration


TARGET = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")


def _recorded(client: Any, phase: str, weights: Weights, step: int) -> tuple[IstioRouter, rl.RolloutState]:
    """m0's route with its canary subset on v2 and a rollout v1 -> v2 recorded at `weights`."""
    router = IstioRouter(client, wait=tenacity.wait_none(), conflict_attempts=1)
    router.point_subset(TARGET, "canary", "v2")
    state = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=phase, weights=weights,
                            step=step)
    router.set_weights(TARGET, weights, state=state.to_json())
    return router, state


@pytest.mark.parametrize("kind", ["promote", "controller"])
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_killed_after_every_write_resumes_to_the_right_end(kind: str, version: str) -> None:
    points = list(every_kill_point(kind, version))
    assert len(points) >= 6, [p.write for p in points]
    for p in points:
        assert p.killed, f"not killed at write {p.k} ({p.write})"
        assert not p.problems, f"killed after write {p.k} ({p.write}): {p.problems}"
    kinds = sorted({p.write.split(" ")[0] + " " + p.write.split(" ")[-1] for p in points})
    print(f"\n{kind} {version}: {len(points)} kill points ({', '.join(kinds)}): all consistent")


def test_a_promotions_stable_repointing_still_in_flight_cannot_land_after_a_rollback() -> None:
    """promote prepared 'stable -> v2' and its PUT is slow (or its process died mid-request);
    meanwhile on-call rolls back. The rollback's final DestinationRule write supersedes: the
    late PUT fails its resourceVersion precondition, and stable stays on the stable version.
    The API server holds the PUT until the rollback is done (no timing decides the order)."""
    import threading
    import time

    from canary.runner import oncall_action
    from canary.errors import RoutingConflict
    from canary.logs import get

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router, _ = _recorded(client, rl.PROMOTING, Weights(0, 100), 2)
        target = TARGET
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
        deadline = time.monotonic() + 60  # a bound against a hang, not a speed claim
        while not any(m == "PUT" and "destinationrules" in p for _, m, p in api.handler.arrivals[arrived:]):
            assert time.monotonic() < deadline
            time.sleep(0.01)  # until the API server holds its PUT (a condition, not a guess)
        state = oncall_action(IstioRouter(client, wait=tenacity.wait_none()), target,
                                rl.Rollback(1.0, "on-call"), log=get())
        release.set()  # now the late PUT is served, after the rollback
        t.join(60)  # its answer (a 409) is recorded in `late` by that thread
        assert not t.is_alive()
        weights, recorded, stable, _ = cluster_state(api)
        assert state.phase == rl.ROLLED_BACK and recorded["phase"] == rl.ROLLED_BACK and weights == [100, 0]
        assert stable == "v1", "the late promotion write landed after the rollback"
        assert len(late) == 1 and isinstance(late[0], RoutingConflict)  # refused: 409 on its resourceVersion
    finally:
        client.close()
        api.stop()


def test_an_oncall_rollback_lands_even_when_another_writer_records_before_each_of_its_tries() -> None:
    """`canary rollback` guards its writes on the record it read and reads again when refused (decision 94);
    a writer that records between its read and its write at every try (a look each time) must not defeat
    the emergency button: its last try is unguarded, and stable gets 100% with the record rolled back."""
    import dataclasses

    from canary import runner
    from canary.logs import get
    from canary.runner import oncall_action

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        _, running = _recorded(client, rl.PROGRESSING, Weights(80, 20), 1)
        target = TARGET
        other = IstioRouter(client, wait=tenacity.wait_none())
        looks = [0]

        class Contended(IstioRouter):
            def inspect_any(self, *a: Any, **k: Any) -> Any:  # after each read: another look is recorded
                status = super().inspect_any(*a, **k)
                if looks[0] < runner.ONCALL_REREADS:
                    looks[0] += 1
                    other.set_weights(target, Weights(80, 20),
                                      state=dataclasses.replace(running, updated_at=float(looks[0])).to_json())
                return status

        state = oncall_action(Contended(client, wait=tenacity.wait_none(), conflict_attempts=1), target,
                              rl.Rollback(99.0, "on-call"), log=get())
        weights, recorded, stable, _ = cluster_state(api)
        assert looks[0] == runner.ONCALL_REREADS  # every try met another writer's record
        assert state.phase == rl.ROLLED_BACK and recorded["phase"] == rl.ROLLED_BACK and weights == [100, 0]
        assert stable == "v1"
    finally:
        client.close()
        api.stop()


@pytest.mark.parametrize("kind", ["promote", "controller"])
def test_the_weights_read_in_process_are_what_inspect_reads_at_every_check(kind: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake metrics see the route's weights read from the emulator's store in this process (`LiveWeights`
    with `api`), no longer over HTTP through `IstioRouter.inspect` as the product reads them: at every measured
    check of an uninterrupted rollout (`canary promote` and the controller) both read the same weights."""
    from tests.support import killpoints

    seen: list[tuple[Weights, Weights]] = []

    class Both(killpoints.LiveWeights):
        @property
        def weights(self) -> Weights:
            assert self.api is not None, "LiveWeights without the emulator: nothing read in process"
            seen.append((super().weights, self.router.inspect(self.target).weights))
            return seen[-1][0]

    monkeypatch.setattr(killpoints, "LiveWeights", Both)
    api = fleet.start_api(1)
    if kind == "controller":
        api.handler.put_object(fleet.rollout_object(0, "v2"))
    client = api.api_client()
    try:
        from tests.fakes import FakeClock

        if kind == "promote":
            killpoints.promote(client, "v2", FakeClock(), None, [], api=api)
        else:
            killpoints.controller_run(api, client, FakeClock(), "v2", None, [])
    finally:
        client.close()
        api.stop()
    assert len({w for w, _ in seen}) >= 2, seen  # the rollout's steps were seen
    assert [a for a, _ in seen] == [b for _, b in seen]

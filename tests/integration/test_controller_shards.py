"""Shards (issue 10 part 4): replicas share the rollouts by a hash of their identity, each shard led
through its own Lease with the same fencing; a replica's loss moves only its shard, within one lease
duration, and nothing is written twice. Real LeaderElectors (on a simulated monotonic clock), the
strict API emulator, a real backfilled Prometheus."""

from __future__ import annotations

import time
from typing import Any

import kubernetes.client as kc
import pytest

from canary import crd
from canary import rollout as rl
from canary import shards as sh
from canary.controller import Controller
from canary.leader import LeaderElector
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.routing.istio import IstioRouter
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.support.prom import HistoryPool
from tests.integration.test_controller_scale import Clock

pytestmark = pytest.mark.integration
N, SHARDS, LEASE_S = 6, 2, 15.0


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    return fleet.pooled_prometheus(history_pool, N)


class Replica:
    """One `canary controller run --leader-elect --shards 2` process, driven by hand."""

    def __init__(self, name: str, client: Any, prom: Any, clock: Clock, mono: list[float]) -> None:
        self.name = name
        electors = [LeaderElector(client, namespace="canary-system", name=sh.lease_name("canary", i, SHARDS),
                                  identity=name, lease_duration_s=LEASE_S, renew_deadline_s=10.0, retry_period_s=2.0,
                                  clock=lambda: mono[0]) for i in range(SHARDS)]
        self.leases = sh.ShardLeases(electors, max_shards=1, identity=name)
        self.ops = [Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                               router=IstioRouter(client, wait=None), metrics=prom, batch=BatchMetrics(prom),
                               namespace="ml", clock=clock, is_leader=e.is_leader, lease_left=e.lease_left,
                               identity=name, owns=sh.owner(i, SHARDS)) for i, e in enumerate(electors)]
        self.alive = True
        self.writes: list[tuple[str, float]] = []  # (rollout, simulated monotonic time) of its status writes
        for op in self.ops:
            patch = op.custom.patch_namespaced_custom_object_status

            def recorded(*args: Any, _patch: Any = patch, **kw: Any) -> Any:
                self.writes.append((args[4], mono[0]))
                return _patch(*args, **kw)

            op.custom = type("Recorded", (), {"__getattr__": lambda _, n, c=op.custom: getattr(c, n),
                                              "patch_namespaced_custom_object_status": staticmethod(recorded)})()

    def round(self) -> None:
        if not self.alive:
            return  # SIGKILLed: no renewal, no tick (its fence lapses by itself)
        self.leases.attempt()
        for op in self.ops:
            op.tick()


def test_a_lost_replica_moves_only_its_shard_within_one_lease_duration(prometheus: PromServer) -> None:
    api = fleet.start_api(N)
    from canary.sandbox.kubeapi import Resource

    api.handler.register(Resource("coordination.k8s.io", "leases", "Lease", ("v1",)))
    client = api.api_client()
    prom = PrometheusProvider(prometheus.url, retries=2, budget_s=5)
    clock, mono = Clock(time.time()), [1000.0]
    a, b, c = (Replica(n, client, prom, clock, mono) for n in "abc")
    try:
        for i in range(N):  # slow steps, so that the rollouts are still running when a replica dies
            obj = fleet.rollout_object(i, "v2")
            obj["spec"]["policy"]["analysis"]["interval"] = "40s"
            api.handler.put_object(obj)
        shard_of = {f"r{i}": sh.shard_of("ml", f"r{i}", SHARDS) for i in range(N)}
        assert set(shard_of.values()) == {0, 1}
        for _ in range(int(LEASE_S) + 5):  # the absent Leases are created once seen absent for a lease duration
            for r in (a, b, c):
                r.round()
            clock.t += 1.0
            mono[0] += 1.0
        held = {r.name: r.leases.held() for r in (a, b, c)}
        assert sorted(held["a"] + held["b"]) == [0, 1] and held["c"] == []
        lost = held["a"][0]
        for name, shard in shard_of.items():  # every rollout driven by its shard's leader
            st = api.get(crd.GROUP, crd.PLURAL, "ml", name)["status"]
            assert st["phase"] == rl.PROGRESSING and st["leader"] == ("a" if shard == lost else "b")
        a.alive = False  # SIGKILL
        killed_at, moved_at = mono[0], None
        writes_at_kill = len(api.handler.writes)
        for _ in range(40):
            for r in (b, c):
                r.round()
            clock.t += 1.0
            mono[0] += 1.0
            if moved_at is None and lost in c.leases.held():
                moved_at = mono[0]
        assert moved_at is not None and moved_at - killed_at <= LEASE_S + 2.0  # within a lease duration (+ a retry)
        assert b.leases.held() == held["b"]  # the other shard never moved
        for name, shard in shard_of.items():
            st = api.get(crd.GROUP, crd.PLURAL, "ml", name)["status"]
            assert st["leader"] == ("c" if shard == lost else "b")
        # no double writes: each rollout of the lost shard was written by a until the kill, by c only
        # after the takeover; b wrote only its own shard's rollouts
        assert len(api.handler.writes) > writes_at_kill
        lost_names = {n for n, s in shard_of.items() if s == lost}
        assert {n for n, _ in a.writes} <= lost_names and all(t <= killed_at for _, t in a.writes)
        assert {n for n, _ in c.writes} <= lost_names and all(t >= moved_at - 1.0 for _, t in c.writes)
        assert {n for n, _ in b.writes}.isdisjoint(lost_names)
    finally:
        client.close()
        api.stop()

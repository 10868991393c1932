"""Shards: N leases share the rollouts among controller replicas.

Which shard a rollout is in: a hash of its identity (namespace/name), by jump consistent
hashing (Lamping and Veach, 2014). Chosen over a shard label because nothing has to be
written for it: every CanaryRollout, old or new, created by hand, GitOps or `promote
--via-controller`, has a shard the moment it exists, every replica computes the same one
from the object alone, and no webhook or relabelling job has to keep labels right. Jump
hashing moves only 1/N of the rollouts when N grows by one (a modulo would move almost all).
What it gives up: choosing a rollout's shard by hand (a label would allow it).

Who leads a shard: its own Lease, `<lease-name>-shard-<i>-of-<n>`, with the same
`LeaderElector` and fencing as a single controller (one elector per shard, so a write for a
rollout is fenced by the lease of that rollout's shard and no other). A replica leads at most
`max_shards` shards at once (default 1): with N shards and N+1 replicas every shard has a
leader and one replica stands by for all of them. When a replica dies its lease lapses and a
replica with room takes that shard, within one lease duration, like a single controller's
failover; the other shards do not move. `--shard-index I` pins a replica to shard I.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash of a 64-bit key into [0, buckets)."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the rollout namespace/name among `shards`."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return jump_hash(int.from_bytes(digest[:8], "big"), shards)


def owner(index: int, shards: int) -> Callable[[dict[str, Any]], bool]:
    """`Controller.owns` for shard `index`."""
    def owns(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return shard_of(str(meta.get("namespace", "")), str(meta.get("name", "")), shards) == index
    return owns


def lease_name(base: str, index: int, shards: int) -> str:
    return f"{base}-shard-{index}-of-{shards}"


class ShardLeases:
    """One LeaderElector per shard; this replica tries to lead at most `max_shards` of them.

    run() renews the leases it holds every retry period and, while it has room, tries the others
    (starting from a shard derived from its identity, so that replicas starting together spread
    out). Electors are `canary.leader.LeaderElector`s (or anything with its methods)."""

    def __init__(self, electors: list[Any], *, max_shards: int = 1, identity: str = "",
                 retry_period_s: float = 2.0, pinned: int | None = None) -> None:
        self.electors, self.max_shards, self.retry_period_s = electors, max_shards, retry_period_s
        n = len(electors)
        start = int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16) % n if n else 0
        self.order = [pinned] if pinned is not None else [(start + i) % n for i in range(n)]

    def held(self) -> list[int]:
        return [i for i, e in enumerate(self.electors) if e.is_leader()]

    def attempt(self) -> list[int]:
        """One round: renew what is held, try the others while there is room. Returns the shards held."""
        for i in self.order:
            e = self.electors[i]
            if e.is_leader() or len(self.held()) < self.max_shards:
                e.try_acquire_or_renew()
        return self.held()

    def next_wait(self, elapsed: float) -> float:
        """Seconds until the next round: a retry period after the last one began, or sooner when a
        shard this replica has room for lapses first (its holder stopped renewing), so that a dead
        replica's shard moves within one lease duration of its last renewal seen, not a retry
        period later."""
        wait = self.retry_period_s - elapsed
        if len(self.held()) < self.max_shards:
            for e in self.electors:
                lapse = e.take_over_in() if hasattr(e, "take_over_in") else None
                if lapse is not None and lapse > 0:  # (lapsed already: the last try failed; a period later)
                    wait = min(wait, lapse + 0.005)
        return max(0.0, wait)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.attempt()
            stop.wait(self.next_wait(time.monotonic() - started))

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name="canary-shard-leases", daemon=True)
        t.start()
        return t

    def release(self) -> None:
        for e in self.electors:
            if e.is_leader():
                e.release()


class ShardGauges:
    """/metrics for one shard: `canary_shard_leader{shard}` (1 while this replica leads it) and
    `canary_shard_rollouts{shard,state}` (its rollouts: all, and those not finished)."""

    # per registry (weakly: keyed by id(), a registry collected and another made at its address got the gauges of
    # the one gone, registered there, and exported nothing)
    _made: "weakref.WeakKeyDictionary[Any, tuple[Any, Any]]" = weakref.WeakKeyDictionary()

    def __init__(self, registry: Any, index: int, shards: int) -> None:
        from prometheus_client import Gauge

        made = ShardGauges._made.get(registry)
        if made is None:
            made = ShardGauges._made[registry] = (
                Gauge("canary_shard_leader", "1 while this replica leads the shard", ["shard"], registry=registry),
                Gauge("canary_shard_rollouts", "CanaryRollouts in the shard (state: all | active)", ["shard", "state"],
                      registry=registry))
        self.leader, self.rollouts = made
        self.label = f"{index}/{shards}"
        self.leader.labels(shard=self.label).set(0)

    def observe(self, *, leading: bool, rollouts: int | None = None, active: int | None = None) -> None:
        self.leader.labels(shard=self.label).set(1 if leading else 0)
        if rollouts is not None:
            self.rollouts.labels(shard=self.label, state="all").set(rollouts)
        if active is not None:
            self.rollouts.labels(shard=self.label, state="active").set(active)

    def leads_any(self) -> bool:
        """Whether this replica leads any shard (of the shards sharing its registry): `canary_leader` when sharded,
        as /readyz says "leader" (`build`'s `is_leader`)."""
        return any(s.value == 1 for family in self.leader.collect() for s in family.samples)


def drift_leader(ops: Sequence[Any], *, shard_index: int | None) -> Callable[[], bool]:
    """Whether this replica runs the drift monitor (`--drift`) now: one replica of all, the leader of
    shard 0 (`build`'s ops[0] when this replica may lead it). `build`'s own `is_leader` ("leads any
    shard") made every shard's leader a drift watcher of every baseline: N watchers each stepping every
    monitor state a pass, their writes conflicting, and what one had decided acted on by another."""
    if shard_index not in (None, 0):
        return lambda: False
    return ops[0].is_leader


def build(client: Any, *, prom: Any, namespace: str | None, identity: str, telemetry: Any, notifier: Any,
          workers: int, shards: int, shard_index: int | None, max_shards: int, leader_elect: bool,
          lease_namespace: str, lease_base: str, lease_duration_s: float, renew_deadline_s: float,
          retry_period_s: float, stop: threading.Event, sweep_every_s: float | None = None,
          wait_ready_s: float | None = None) -> tuple[list[Any], Callable[[], bool], Callable[[], None]]:
    """The controllers of `canary controller run`: one per shard this replica may lead, sharing one set of
    informers (started here) and one Prometheus client; each with its own router, fence and Lease.
    Returns (controllers, is_leader: leads any shard, release: hand every held Lease over)."""
    import kubernetes.client as kc

    from canary.controller import Controller
    from canary.informer import Informers
    from canary.leader import LeaderElector
    from canary.metrics.batch import BatchMetrics
    from canary.routing.istio import IstioRouter

    ops: list[Any] = []
    informers = Informers(client, namespace=namespace, on_change=lambda *change: [o.changed(*change) for o in ops])
    batch = BatchMetrics(prom)
    indices = [shard_index] if shard_index is not None else list(range(shards))
    electors: list[Any] = []
    for i in indices:
        elector = None
        if leader_elect:
            name = lease_name(lease_base, i, shards) if shards > 1 else lease_base
            elector = LeaderElector(client, namespace=lease_namespace, name=name, identity=identity,
                                    lease_duration_s=lease_duration_s, renew_deadline_s=renew_deadline_s,
                                    retry_period_s=retry_period_s)
            electors.append(elector)
        router = IstioRouter(client)
        from canary.side_writes import SideWriter

        ops.append(Controller(side_writes=SideWriter(),
            custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client), router=router, metrics=prom, batch=batch,
            namespace=namespace, is_leader=elector.is_leader if elector else (lambda: True),
            lease_left=elector.lease_left if elector else None, identity=identity, telemetry=telemetry,
            notifier=notifier, informers=informers, workers=workers,
            **({"sweep_every": sweep_every_s} if sweep_every_s is not None else {}),
            **({"wait_ready_s": wait_ready_s} if wait_ready_s is not None else {}),
            **({"owns": owner(i, shards), "shard": ShardGauges(telemetry.registry, i, shards)} if shards > 1 else {})))
    leases = None
    if electors:
        if shards > 1:
            leases = ShardLeases(electors, max_shards=len(electors) if shard_index is not None else max_shards,
                                 identity=identity, retry_period_s=retry_period_s)
            leases.start(stop)
        else:
            electors[0].start(stop)
    informers.start(stop)
    for op in ops:
        op.router.written = informers.written  # our own writes are in the cache at once

    def is_leader() -> bool:
        return any(op.is_leader() for op in ops)

    def release(loops: Iterable[int] | None = None) -> None:
        """Hand over the Leases of the shards' loops `loops` (positions in `ops`; None: every one)."""
        for i, e in enumerate(electors):  # electors[i] fences ops[i]: built together above
            if loops is None or i in loops:
                e.release()

    return ops, is_leader, release


def run_loops(ops: Sequence[Any], stop: threading.Event, *, tick_s: float,
              release: Callable[[list[int]], None], join_s: float, log: Any) -> None:
    """Run every shard's controller loop (the first in this thread) until `stop`; then hand each shard's Lease
    over (`release`, given the positions in `ops` of the loops that ended) only once its loop has finished its
    tick. A loop still in its tick may have a write in flight that passed the fence: released under it, a
    standby took the Lease at its next try and wrote beside it (a shard's loop ran in a daemon thread nobody
    waited for). A loop not done within `join_s` (the renew deadline) keeps its own Lease unreleased: it lapses
    by itself, a lease duration after its last renewal, the margin the fence counts on
    (`controller.release_skipped`); the other shards' Leases are handed over at once, so their standbys do not
    wait a lease duration too."""
    threads = [threading.Thread(target=op.run, args=(stop,), kwargs={"tick_s": tick_s}, daemon=True,
                                name=f"canary-shard-loop-{i + 1}") for i, op in enumerate(ops[1:])]
    for t in threads:  # one loop per shard: a slow shard never delays another
        t.start()
    try:
        ops[0].run(stop, tick_s=tick_s)
    finally:
        stop.set()
        deadline = time.monotonic() + join_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        ended = [0] + [i + 1 for i, t in enumerate(threads) if not t.is_alive()]
        for i in ended:  # their queued side writes (histories, Events) made while the Lease is still held
            close = getattr(ops[i], "close_side_writes", None)
            if close is not None:
                close(max(0.5, deadline - time.monotonic()))
        release(ended)
        if busy:
            log.warning("controller.release_skipped", loops=busy, wait_s=join_s,
                        reason="a shard's loop was still in its tick (a write may be in flight): its Lease is left "
                               "to lapse, so a standby takes that shard over a lease duration after the last "
                               "renewal; the other shards' Leases were handed over")

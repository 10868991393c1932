"""Deterministic kill points: a process "killed" right after its k-th write.

`Killer` wraps a TrafficRouter (and, for the controller, the CustomObjectsApi
whose status patches are writes too). Once the k-th write has landed it raises
`Killed`, a BaseException no code path may catch for good, and refuses every
later write of that process: exactly what SIGKILL leaves behind (a write is
atomic at the API server; whatever landed stays, nothing after it happens).
The suite then starts a fresh process object on the same cluster and checks
the outcome, so no test depends on when a real signal lands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes.client as kc
import tenacity

from canary import crd
from canary import rollout as rl
from canary.runner import Runner
from canary.model import Target, Weights
from canary.controller import Controller
from canary.policy import parse_policy
from canary.routing import patch
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics


class Killed(BaseException):
    """Simulated SIGKILL."""


class Killer:
    def __init__(self, inner: Any, kill_after: int | None, log: list[str]) -> None:
        self.inner, self.kill_after, self.log, self.dead = inner, kill_after, log, False

    def _wrote(self, what: str) -> None:
        self.log.append(what)
        if self.kill_after is not None and len(self.log) >= self.kill_after:
            self.dead = True
            raise Killed(what)

    def _alive(self) -> None:
        if self.dead:
            raise Killed("dead process")

    # TrafficRouter
    def inspect(self, target: Target) -> Any:
        self._alive()
        return self.inner.inspect(target)

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: Any = ..., **kw: Any) -> Any:
        self._alive()
        out = self.inner.set_weights(target, weights, state=state, expect_state=expect_state, **kw)
        self._wrote(f"weights {weights} {json.loads(state)['phase']}")
        return out

    def point_subset(self, target: Target, subset: str, version: str, **kw: Any) -> None:
        self._alive()
        self.inner.point_subset(target, subset, version, **kw)
        self._wrote(f"subset {subset}={version}")

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        return False if self.dead else bool(self.inner.record_event(target, reason=reason, message=message,
                                                                    warning=warning))


class KillerCustom:
    """CustomObjectsApi whose status patches count as writes of the same Killer."""

    def __init__(self, inner: Any, killer: Killer) -> None:
        self.inner, self.killer = inner, killer

    def patch_namespaced_custom_object_status(self, *a: Any, **kw: Any) -> Any:
        self.killer._alive()
        out = self.inner.patch_namespaced_custom_object_status(*a, **kw)
        body = a[-1] if a else kw.get("body")
        self.killer._wrote("status " + ",".join(sorted((body or {}).get("status", {}))))
        return out

    def __getattr__(self, name: str) -> Any:
        self.killer._alive()
        return getattr(self.inner, name)


class LiveWeights:
    """`FakeMetrics` reads `router.weights`: here they come from the cluster, as Prometheus would see them.

    With `api` (the emulator `router` talks to), the route's weights are read from the emulator's store in this
    process, as `router.inspect` parses them (`patch.read_weights`): Prometheus sees the traffic, not the API
    server, and `inspect`'s two GETs at every measured check were a tenth of the kill- and signal-point tests'
    CPU (docs/benchmarks/suite.md, h-suite4). Without it, through `router.inspect` (an API the test does not
    hold in this process)."""

    def __init__(self, router: Any, target: Target, *, api: Any = None) -> None:
        self.router, self.target, self.api = router, target, api

    @property
    def weights(self) -> Weights:
        if self.api is None:
            return self.router.inspect(self.target).weights
        with self.api.handler.lock:
            vs = self.api.handler.objects[(GROUP, "virtualservices", self.target.namespace, self.target.virtual_service)]
            return patch.read_weights(vs, patch.locate_route(vs, self.target.route))


# ---- every kill point of one rollout (tests/integration/test_kill_points.py, scripts/bench_crash.py) --------

GROUP = "networking.istio.io"
SLOWDOWN = {"v2": 1.0, "v3": 1.6}  # v3 is 60% slower: must never be promoted
RPS = 1000.0  # enough canary requests per look that the judge decides v3 at the first step


def cluster_state(api: Any, i: int = 0) -> tuple[list[int], dict[str, Any], str, str]:
    """Rollout i's route weights, recorded state, and the versions the stable and canary subsets select."""
    vs = api.get(GROUP, "virtualservices", "ml", fleet.model(i))
    dr = api.get(GROUP, "destinationrules", "ml", fleet.model(i))
    subsets = {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}
    state = json.loads(vs["metadata"]["annotations"].get("modelcanary.dev/rollout") or "{}")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]], state, subsets["stable"], subsets["canary"]


def problems(api: Any, version: str, phase: str | None, i: int = 0) -> list[str]:
    """What is wrong with rollout i once it ended in `phase`: the outcome (a v3 promoted, a v2 not),
    or weights, recorded state and subsets disagreeing. Empty when all is right."""
    weights, state, stable, _ = cluster_state(api, i)
    out = []
    want = fleet.expected_phase(version)
    if phase != want:
        out.append(f"wrong outcome: {phase}, want {want} ({state.get('reason')})")
    if state.get("phase") != phase:
        out.append(f"recorded {state.get('phase')} vs {phase}")
    if weights != [100, 0] or [state.get("weights", {}).get(k) for k in ("stable", "canary")] != weights:
        out.append(f"weights {weights} vs recorded {state.get('weights')}")
    if stable != ("v2" if phase == rl.PROMOTED else "v1"):
        out.append(f"stable subset selects {stable} while {phase}")
    return out


def promote(client: Any, version: str, clock: Any, kill_after: int | None, log: list[str], *, api: Any = None) -> Any:
    """`canary promote` of rollout 0 (its runner, in-process); its final state, or None if it was killed."""
    target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="",
                    canary_version=version)
    real = IstioRouter(client, wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(real, target, api=api), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)  # type: ignore[arg-type]
    ctl = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=Killer(real, kill_after, log),
                     metrics=metrics, clock=clock)
    try:
        return ctl.run().state
    except Killed:
        return None


def controller_run(api: Any, client: Any, clock: Any, version: str, kill_after: int | None, log: list[str],
                   max_ticks: int = 400) -> bool:
    """Tick a fresh controller until CanaryRollout r0 is terminal (True) or it is killed (False)."""
    real = IstioRouter(client, wait=tenacity.wait_none())
    killer = Killer(real, kill_after, log)
    target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="v1",
                    canary_version=version)
    metrics = FakeMetrics(LiveWeights(real, target, api=api), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)  # type: ignore[arg-type]
    op = Controller(custom=KillerCustom(kc.CustomObjectsApi(client), killer), core=kc.CoreV1Api(client),
                  router=killer, metrics=metrics, namespace="ml", clock=clock)
    status: dict[str, Any] = {}
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


@dataclass(frozen=True)
class KillPoint:
    k: int  # killed right after the k-th write
    write: str  # what that write was
    killed: bool  # the process really died there
    problems: tuple[str, ...]  # after a fresh process took over and finished (empty: all right)


def every_kill_point(kind: str, version: str) -> Iterator[KillPoint]:
    """For `kind` 'promote' or 'controller': run one rollout of `version` uninterrupted to list its
    writes, then for each write k a fresh cluster where the process is killed right after write k,
    and a fresh process (a re-run `promote`, the next leader) finishes the rollout."""

    def run(kill_after: int | None, log: list[str]) -> tuple[bool, list[str]]:
        api = fleet.start_api(1)
        if kind == "controller":
            api.handler.put_object(fleet.rollout_object(0, version))
        client = api.api_client()
        try:
            clock = FakeClock()
            if kind == "promote":
                state = promote(client, version, clock, kill_after, log, api=api)
                killed = state is None
                if killed:
                    state = promote(client, version, clock, None, [], api=api)  # `canary promote` run again
                phase = state.phase if state is not None else None
            else:
                killed = not controller_run(api, client, clock, version, kill_after, log)
                if killed:
                    controller_run(api, client, clock, version, None, [])
                status = (api.get(crd.GROUP, crd.PLURAL, "ml", "r0") or {}).get("status") or {}
                phase = status.get("phase")
                if status.get("weights") != {"stable": 100, "canary": 0}:
                    return killed, [f"CR status weights {status.get('weights')}"]
            return killed, problems(api, version, phase)
        finally:
            client.close()
            api.stop()

    writes: list[str] = []
    _, wrong = run(None, writes)
    if wrong:
        raise AssertionError(f"{kind} {version}, uninterrupted: {wrong}")
    for k in range(1, len(writes) + 1):
        killed, found = run(k, [])
        yield KillPoint(k, writes[k - 1], killed, tuple(found))


def signalled_promote(client: Any, version: str, **runner_kw: Any) -> tuple[Runner, Any]:
    """A Runner promoting `version` on the fleet's model 0 whose Kubernetes requests are bound as `canary promote`
    binds them after a signal (`kube.bound_by`, the route as the Runner drives it now), and promote's own signal
    handler (`cli._on_promote_signal`, 30 s of grace) to call as a SIGTERM at any point: (runner, sigterm).
    Run it with `run_signalled`, which cancels the handler's grace alarm."""
    import math
    import signal

    from canary.cli import _on_promote_signal
    from canary.kube import bound_by

    target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="",
                    canary_version=version)
    router = IstioRouter(client, wait=tenacity.wait_none())
    clock = FakeClock()
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)
    grace = [math.inf]
    ran: dict[str, Runner] = {}

    def on_route(path: str) -> bool:  # as cli.py's promote says it: the route the Runner drives now
        return ran["r"].target.is_route_path(path)

    flying = bound_by(client, lambda: grace[0], route=on_route, stale=lambda: ran["r"].writing_before_signal)
    r = ran["r"] = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics,
                          clock=clock, settled=flying.settle, **runner_kw)
    handler = _on_promote_signal(r, grace, 30.0, flying)
    return r, lambda: handler(signal.SIGTERM, None)


def run_signalled(r: Runner) -> Any:
    """`r.run()`, then the grace alarm a signal set (SIGALRM in 30 s) cancelled: it must not fire in a later test."""
    import signal

    alarm = signal.getsignal(signal.SIGALRM)
    try:
        return r.run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)

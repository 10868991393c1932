"""The sweep (decision 65) under a fresh attacker: each test reproduced a defect of its first version
(decision 65's addendum). Deterministic: fake clocks, hooks at fixed points, or offsets (300 s of
clock skew) that dwarf the test's own run time."""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import rollout as rl
from canary import sweep
from canary.cli import app
from canary.controller import Controller
from canary.errors import RoutingConflict
from canary.logs import get as get_logger
from canary.model import Target, Weights
from canary.policy import parse_policy
from canary.reconcile import execute, promote_owner
from canary.routing.istio import IstioRouter
from canary.runner import Runner, SystemClock
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.integration.test_sweep import _age_mark, _claim, _controller, _left_safe, cluster  # noqa: F401
from tests.support.killpoints import LiveWeights, cluster_state

pytestmark = pytest.mark.integration
OTHER_HOST = promote_owner("ci-runner:4026531836:4242:ab12")  # a promote on another machine


def _policy(look_every: str, interval: str, no_data_deadline: str = "600s", checks: list[Any] | None = None) -> Any:
    raw = copy.deepcopy(fleet.FAST_POLICY)
    raw["analysis"] = {**raw["analysis"], "look_every": look_every, "interval": interval}
    raw["failure"] = {**raw["failure"], "no_data_deadline": no_data_deadline}
    if checks is not None:
        raw["checks"] = checks
    return parse_policy(raw)


def _target() -> Target:
    return Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")


def _write(router: IstioRouter, t: Target, old: rl.RolloutState, new: rl.RolloutState) -> rl.RolloutState:
    return execute(router, t, new, [rl.SetWeights(new.weights)], log=get_logger(), expect=old.to_json())


def _pid_namespace() -> str:
    return str(os.stat("/proc/self/ns/pid").st_ino)


# ---- F1: a takeover does not refresh updated_at: the sweep ends the promote that just took over ----------


class _HookClock(FakeClock):
    """A fake clock that runs `hook` once, the first time it is advanced past `at` (a sweep firing then)."""

    def __init__(self, start: float, at: float, hook: Callable[[], None]) -> None:
        super().__init__(start)
        self.at, self.hook, self.fired = at, hook, False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.fired and self.t >= self.at:
            self.fired = True
            self.hook()


def test_a_promote_that_took_over_a_dead_ones_rollout_is_not_swept_while_it_runs(cluster: Any) -> None:
    """An OOM-killed `canary promote` (look_every 10 s) is re-run at once by its CI job on the same
    machine with a policy that looks every 60 s: `_take_over` sees the old pid gone and takes the
    rollout over 5 s after the last look, writing owner and heartbeat_s=60 -- but NOT updated_at. The
    new promote's next look is due at step start + 6 x 60 s (T0+310); it writes nothing before (it has
    no reason to). The controller's sweep at T0+301 reads "last wrote this rollout 301s ago ... its
    process is gone" and aborts the live, just-resumed rollout; the promote exits 3 with that reason."""
    api, client, router = cluster
    t0 = time.time()
    dead = promote_owner(f"{socket.gethostname()}:{_pid_namespace()}:{2**22}:dead0001")  # a pid no process has
    t, s = _claim(router, at=t0 - 50, owner=dead, heartbeat_s=10.0)
    last_look = _write(router, t, s, replace(s, look=5, step_looks=5, updated_at=t0))  # killed right after
    swept: list[str] = []
    watcher = _controller(client, FakeClock(t0), sweep_every=0.001)
    watcher.tick()  # it has watched the dead one's record since its last look

    def sweep_now() -> None:  # the controller's periodic sweep, on the same (fake) time
        watcher.clock = clock
        with structlog.testing.capture_logs() as logs:
            watcher.tick()
        swept.extend(e["reason"] for e in logs if e["event"] == "rollout.abandoned")

    clock = _HookClock(t0 + 5, at=t0 + 301, hook=sweep_now)
    target = _target()
    runner = Runner(policy=_policy("60s", "60s"), target=target, router=router, clock=clock,
                    metrics=FakeMetrics(LiveWeights(router, target), clock, rps=1000.0))  # type: ignore[arg-type]
    result = runner.run()
    assert last_look.owner == dead and clock.fired
    assert not swept, f"the sweep ended a promote that took the rollout over 296 s before: {swept}"
    assert result.state.phase != rl.ABORTED, result.state.reason


# ---- F2: a PROMOTING rollout: the sweep re-points the stable subset before its guarded write ----------------


def test_sweeping_a_promoting_rollout_its_new_owner_finished_does_not_undo_the_promotions_subset(tmp_path: Path, cluster: Any) -> None:
    """A promote killed at PROMOTING (canary 100%) is stale; the sweep reads it (scan). Before the sweep
    writes, `canary promote` is re-run and finishes the promotion (stable subset -> v2, 100/0 PROMOTED,
    exit 0). The sweep's `end` then runs `_end`'s actions: first an UNGUARDED PointSubset(stable -> v1),
    and only then the SetWeights guarded on the record it read, which is refused (RoutingConflict: "left
    alone"). Left behind: a record PROMOTED at 100/0 and a stable subset that selects v1 -- the promotion
    silently undone while promote said 0 and the sweep said it left the route alone."""
    api, client, router = cluster
    now = time.time()
    t, s = _claim(router, at=now - 1000, owner=OTHER_HOST)
    promoting = _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=Weights.canary_at(100),
                                             updated_at=now - 1000))
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned
    assert [f.key for f in found] == ["ml/m0"] and found[0].record.phase == rl.PROMOTING

    target = _target()
    rerun = Runner(policy=_policy("1s", "5s", "8s"), target=target, router=router, clock=FakeClock(now),
                   metrics=FakeMetrics(LiveWeights(router, target), FakeClock(now)))  # type: ignore[arg-type]
    assert rerun.run().state.phase == rl.PROMOTED and promoting.phase == rl.PROMOTING
    assert not _left_safe(api), "the re-run promote itself left things wrong"

    with pytest.raises(RoutingConflict):  # the sweep sees its owner wrote: "left alone"
        sweep.end(router, found[0], log=get_logger(), now=now)
    wrong = _left_safe(api)
    assert not wrong, f"the sweep 'left alone' a promoted rollout but changed its DestinationRule: {wrong}"


# ---- F3: the promote's timestamps are Prometheus's clock; the sweep compares them with its own ----------------


class _SkewedMetrics(FakeMetrics):
    """FakeMetrics whose Prometheus answers `time()` 300 s behind this machine (the skew the runner's own
    test, test_a_rollout_runs_on_prometheuss_clock, uses)."""

    def ask(self, query: str, **kw: Any) -> Any:
        assert query == "time()"
        behind = time.time() - 300.0
        return [behind, str(behind)]


def test_a_promote_on_prometheuss_clock_behind_the_sweepers_is_not_swept_right_after_it_wrote(tmp_path: Path, cluster: Any) -> None:
    """`canary promote` runs on Prometheus's clock (decision: `_on_prometheus_clock`, logs `clock.skew`),
    so every updated_at it records is Prometheus's time. The sweep (`canary sweep` here; the controller
    alike) subtracts it from its own `time.time()`. With Prometheus 300 s behind, a promote (look_every
    10 s: limit 150 s) that has just claimed the route and moved its first step is 'abandoned ... last
    wrote this rollout 300s ago ... its process is gone' and aborted, with its process running."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    router = IstioRouter(client, wait=tenacity.wait_none())
    target = _target()
    live = Runner(policy=_policy("10s", "30s"), target=target, router=router,
                  metrics=_SkewedMetrics(LiveWeights(router, target), FakeClock()))  # type: ignore[arg-type]
    live._on_prometheus_clock()
    assert isinstance(live.clock, SystemClock)
    state = live._preflight(live._start())  # claimed, then step 1: the promote's last write, just now
    assert state.phase == rl.PROGRESSING and cluster_state(api)[0] == [80, 20]

    out = CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), "-n", "ml"])
    weights, rec, _, _ = cluster_state(api)
    assert rec["phase"] == rl.PROGRESSING and weights == [80, 20], (
        f"a promote that wrote <1 s ago was swept: {out.stdout.strip()} / {rec.get('reason')}")


# ---- F4: a PROMOTING rollout whose DestinationRule the record does not name: nothing written, told otherwise --


def test_a_promoting_rollout_with_an_unreadable_destination_rule_is_reported_truthfully(tmp_path: Path, cluster: Any) -> None:
    """A record written before `destination_rule` was recorded (""), for a VirtualService whose
    DestinationRule has another name (`--destination-rule m0-dr`), killed at PROMOTING (canary 100%).
    `canary sweep` runs `_end` from PROMOTING: its FIRST action re-points the stable subset of a
    DestinationRule named like the VirtualService (404) and raises RollbackFailed "stable has 100% of the
    weights, but the stable subset could not be re-pointed" -- before any weight was written. The
    output tells on-call stable has 100% while the canary keeps 100%, and so does every later sweep."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    custom = kc.CustomObjectsApi(client)
    dr = custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml", "destinationrules", "m0")
    dr = {k: v for k, v in dr.items() if k != "status"}
    dr["metadata"] = {"name": "m0-dr", "namespace": "ml"}
    custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", "ml", "destinationrules", dr)
    custom.delete_namespaced_custom_object("networking.istio.io", "v1beta1", "ml", "destinationrules", "m0")
    router = IstioRouter(client, wait=tenacity.wait_none())
    now = time.time()
    t = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2",
               destination_rule="m0-dr")
    s, actions = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=now - 1000,
                                owner=OTHER_HOST, heartbeat_s=10.0)  # destination_rule "": an older record
    s = execute(router, t, s, actions, log=get_logger())
    _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=Weights.canary_at(100)))

    CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), "-n", "ml"])  # marks it
    _age_mark(api, "m0", 10_000)
    out = CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), "-n", "ml", "-o", "json"])
    vs = custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml", "virtualservices", "m0")
    weights = [d["weight"] for d in vs["spec"]["http"][0]["route"]]
    row = json.loads(out.stdout)["abandoned"][0]
    assert out.exit_code == 3 and weights == [0, 100]  # the failure itself is expected: the DR is unknown
    assert "stable has 100% of the weights" not in row["result"], (
        f"on-call is told stable has 100% while the weights are {weights}: {row['result']}")


# ---- F5: a sweep that leaves a live rollout alone still logs it as being aborted ------------------------------


def test_a_sweep_refused_by_its_guard_does_not_log_the_rollout_as_aborting(cluster: Any) -> None:
    """The owner was only slow and wrote between the scan and the write: the guarded write is refused and
    nothing changes. The log still says `rollout.abandoned` (warning, "its process is gone") and
    `rollout.aborting` for that live rollout, followed by `rollback.write_conflict`: on-call reading the
    log (or alerting on rollout.abandoned/aborting) sees a rollout aborted that runs on."""
    api, client, router = cluster
    now = time.time()
    t, s = _claim(router, at=now - 1000)
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned
    _write(router, t, s, replace(s, look=1, updated_at=now))
    with structlog.testing.capture_logs() as logs, pytest.raises(RoutingConflict):
        sweep.end(router, found[0], log=get_logger(), now=now)
    assert cluster_state(api)[1]["phase"] == rl.PROGRESSING
    said = [e["event"] for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert "rollout.aborting" not in said and "rollout.abandoned" not in said, said


# ---- F6: an owner the sweep could not check is reported as "no abandoned rollouts" ---------------------------


def test_canary_sweep_does_not_say_none_abandoned_when_it_could_not_ask_about_an_owner(tmp_path: Path, cluster: Any) -> None:
    """m0's rollout (80/20) belongs to CanaryRollout ml/r0, which no longer exists. The CronJob's
    ServiceAccount may not read canaryrollouts (403; docs/deploy.md gives no RBAC for `canary sweep`), or
    the API answers 500: `crd_gone` swallows it as "exists", and `canary sweep` prints "no abandoned
    rollouts in ml" and exits 0 -- on-call is told all is well while the split has nobody driving it."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    router = IstioRouter(client, wait=tenacity.wait_none())
    _claim(router, at=time.time() - 1000, owner="CanaryRollout ml/r0#uid-1")
    api.fail_next(403, times=100, methods=("GET",), plural="canaryrollouts")
    out = CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), "-n", "ml"])
    api.handler.faults.clear()
    assert cluster_state(api)[0] == [80, 20]
    assert not (out.exit_code == 0 and "no abandoned rollouts" in out.stdout), (
        f"exit {out.exit_code}: {out.stdout.strip()!r} while ml/m0 is split and its owner could not be checked")


# ---- the same kinds, one step further (review of the fixes) --------------------------------------------------


def test_a_promotion_finished_by_its_owner_while_the_sweep_writes_the_subset_is_not_undone(cluster: Any) -> None:
    """As the PROMOTING test above, but the re-run promote finishes the promotion between the sweep's
    check of the record and its DestinationRule write (a hook inside the write). The sweep's check after
    the write sees the promotion finished, to the same version: it must not 'undo' the subset to v1
    (it did, as after a rollback), leaving PROMOTED on the old version."""
    api, client, router = cluster
    now = time.time()
    t, s = _claim(router, at=now - 1000, owner=OTHER_HOST)
    promoting = _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=Weights.canary_at(100)))
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned

    real_replace = router._replace
    raced: list[bool] = []

    def replace_then_owner_finishes(plural: str, *a: Any, **kw: Any) -> Any:
        out = real_replace(plural, *a, **kw)
        if plural == "destinationrules" and not raced:  # the sweep's subset write landed; the owner,
            raced.append(True)  # from the same record, finishes before the sweep checks it again
            done, actions = rl.finish_promotion(promoting, now)
            owner = IstioRouter(client, wait=tenacity.wait_none())
            execute(owner, t, done, actions, log=get_logger(), expect=promoting.to_json())
        return out

    router._replace = replace_then_owner_finishes  # type: ignore[method-assign]
    with pytest.raises(RoutingConflict):
        sweep.end(router, found[0], log=get_logger(), now=now)
    assert raced
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED
    assert not _left_safe(api), _left_safe(api)


def test_a_rollback_from_promoting_that_cannot_point_the_subset_back_first_says_nothing_was_written() -> None:
    """A rollback from PROMOTING points the stable subset back before its weights (it may already select
    the canary version: stable 100% then would record a rollback while the canary serves everything).
    With the DestinationRule unreadable that first write fails, and the rollback stops; it said "stable
    has 100% of the weights" while the canary kept 100%. It says nothing was written."""
    from canary.errors import RollbackFailed
    from canary.runner import oncall_action

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        router = IstioRouter(client, wait=tenacity.wait_none())
        t, s = _claim(router, at=time.time() - 1000, owner=OTHER_HOST)
        _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=Weights.canary_at(100)))
        kc.CustomObjectsApi(client).delete_namespaced_custom_object("networking.istio.io", "v1beta1", "ml",
                                                                     "destinationrules", "m0")
        with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="nothing was written") as err:
            oncall_action(router, t, rl.Rollback(time.time(), "pager"), log=get_logger())
        assert "stable has 100%" not in str(err.value)
        weights, rec = cluster_state_vs_only(api)
        assert weights == [0, 100] and rec["phase"] == rl.PROMOTING, (weights, rec["phase"])
        failed = [e for e in logs if e["event"] == "rollback.failed"]
        assert failed and "nothing was written" in failed[0]["error"]
    finally:
        client.close()
        api.stop()


def cluster_state_vs_only(api: Any) -> tuple[list[int], dict[str, Any]]:
    vs = api.get("networking.istio.io", "virtualservices", "ml", "m0")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]], json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])

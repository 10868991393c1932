"""The long-running controller in-process: many CanaryRollouts against the strict
API emulator and a real (backfilled) Prometheus."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Iterator

import kubernetes.client as kc
import pytest

from canary import crd
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.controller import Controller
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import KubeAPIServer
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.support.prom import HistoryPool
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration
N = 6
GROUP = "networking.istio.io"


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    """The fleet's history, shared with the other modules of this process that read it (`HistoryPool`)."""
    return fleet.pooled_prometheus(history_pool, N)


@pytest.fixture
def world(prometheus: PromServer) -> Iterator[tuple[KubeAPIServer, Controller, Any]]:
    api = fleet.start_api(N)
    client = api.api_client()
    prom = PrometheusProvider(prometheus.url, retries=2, budget_s=2)
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                  router=IstioRouter(client, wait=None), metrics=prom, batch=BatchMetrics(prom), namespace="ml")
    yield api, op, kc.CustomObjectsApi(client)
    client.close()
    api.stop()


def run_until_done(op: Controller, custom: Any, names: list[str], timeout: float = 90,
                   version: str | None = None, virtual_service: str | None = None) -> dict[str, dict[str, Any]]:
    """Run the controller until every rollout of `names` has ended (a rollout of `version`, on
    `virtual_service`, if given: the status of a rollout superseded by an edit is terminal too)."""
    def done(st: dict[str, Any]) -> bool:
        target = st.get("target") or {}
        return (st.get("phase") in rl.TERMINAL and (version is None or target.get("canaryVersion") == version)
                and (virtual_service is None or target.get("virtualService") == virtual_service))

    stop = threading.Event()
    t = threading.Thread(target=op.run, args=(stop,), kwargs={"tick_s": 0.2}, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            objs = {o["metadata"]["name"]: o for o in custom.list_namespaced_custom_object(
                crd.GROUP, crd.VERSION, "ml", crd.PLURAL)["items"]}
            if all(done(objs[n].get("status") or {}) for n in names):
                return objs
            time.sleep(0.2)
        raise AssertionError({n: (objs[n].get("status") or {}).get("phase") for n in names})
    finally:
        stop.set()
        # the tick in flight ends first: a loop still ticking after this returned raced the test's own
        # ticks and reads (a tick waits on Prometheus and the API; on a loaded machine it can take >10 s)
        t.join(120)
        assert not t.is_alive(), "the controller's loop did not stop"


def vs(api: KubeAPIServer, i: int) -> tuple[list[int], dict[str, Any]]:
    obj = api.get(GROUP, "virtualservices", "ml", fleet.model(i))
    return [d["weight"] for d in obj["spec"]["http"][0]["route"]], json.loads(obj["metadata"]["annotations"]["modelcanary.dev/rollout"])


def test_many_rollouts_each_reach_the_right_end(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api, op, custom = world
    from canary import controller as controller_mod
    from canary.analysis import evidence

    seen: list[tuple[float, float | None, float]] = []  # (pass_ratio, the level used, the anchored level)
    real = controller_mod.judge

    def spy(policy: Any, measurements: Any, **kw: Any) -> Any:  # recorded here, asserted in the test's thread
        v = real(policy, measurements, **kw)
        used = next((r.extra["pass_level"] for r in v.results if "pass_level" in r.extra), None)
        seen.append((kw["pass_ratio"], used, evidence.pass_level(policy, kw["window"], kw["pass_ratio"])))
        return v

    monkeypatch.setattr(controller_mod, "judge", spy)
    versions = ["v2", "v3", "v2", "v3", "v2", "v3"]
    for i, v in enumerate(versions):
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(i, v))
    objs = run_until_done(op, custom, [f"r{i}" for i in range(N)])
    assert seen and all(r >= 1.0 for r, _, _ in seen), "the controller hands every look its pass_ratio"
    assert any(used is not None for _, used, _ in seen), "some looks judged a check"
    assert all(used is None or used == want for _, used, want in seen), "and the judge used the anchored level"
    for i, v in enumerate(versions):
        st = objs[f"r{i}"]["status"]
        assert st["phase"] == fleet.expected_phase(v), (i, st.get("reason"))
        weights, state = vs(api, i)
        assert weights == [100, 0] and state["phase"] == st["phase"]  # CR status mirrors the annotation
        assert st["lastVerdict"]["results"] and "verdictHistory" not in st  # bounded: every look is in the history
        assert st["summary"]["looks"] == sum(st["summary"]["outcomes"].values()) > 0
        cm = api.get("", "configmaps", "ml", st["summary"]["historyConfigMap"])
        assert len(json.loads(cm["data"]["history.json"])["looks"]) == st["summary"]["looks"]
        assert {c["type"] for c in st["conditions"]} >= {"Ready", "Progressing", "Promoted", "RolledBack"}
        dr = api.get(GROUP, "destinationrules", "ml", fleet.model(i))
        stable = [s["labels"]["version"] for s in dr["spec"]["subsets"] if s["name"] == "stable"][0]
        assert stable == ("v2" if v == "v2" else "v1")


def test_invalid_rollout_is_reported_and_others_go_on(world: Any) -> None:
    api, op, custom = world
    bad = fleet.rollout_object(0, "v2")
    bad["spec"]["policy"]["steps"] = [50, 10, 100]
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, bad)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v2"))
    run_until_done(op, custom, ["r1"])
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    ready = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False" and "steps" in ready["message"]
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})  # nothing claimed
    assert [d["weight"] for d in untouched["spec"]["http"][0]["route"]] == [100, 0]


def test_rollback_action_and_foreign_edit_abort(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", onForeignEdit="abort"))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v2"))
    for _ in range(6):  # both claim their VirtualService and reach the first step
        op.tick()
        time.sleep(0.1)
    api.edit(GROUP, "virtualservices", "ml", "m0",  # a GitOps sync resets the weights
             lambda o: [d.__setitem__("weight", w) for d, w in zip(o["spec"]["http"][0]["route"], (100, 0))])
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r1",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    objs = run_until_done(op, custom, ["r0", "r1"])
    assert objs["r0"]["status"]["phase"] == rl.ROLLED_BACK and "foreign edit" in objs["r0"]["status"]["reason"]
    assert objs["r1"]["status"]["phase"] == rl.ROLLED_BACK and "pager" in objs["r1"]["status"]["reason"]
    assert vs(api, 0)[0] == [100, 0] and vs(api, 1)[0] == [100, 0]


def test_a_standby_never_writes(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.is_leader = lambda: False
    op.fenced.may_write = op.is_leader
    before = len(api.handler.writes)
    for _ in range(5):
        op.tick()
    assert len(api.handler.writes) == before


def test_events_on_the_canary_rollout(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    run_until_done(op, custom, ["r0"])
    reasons = [e["reason"] for e in api.list("", "events", "ml") if e["involvedObject"]["kind"] == crd.KIND]
    assert "RolloutStarted" in reasons and "StepAdvanced" in reasons and "RolloutPromoted" in reasons


def test_prometheus_down_before_the_start_touches_nothing_and_says_why(world: Any) -> None:
    api, op, custom = world
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    before = api.get(GROUP, "virtualservices", "ml", fleet.model(0))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    for _ in range(3):
        op.tick()
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
    assert api.get(GROUP, "virtualservices", "ml", fleet.model(0)) == before  # the preflight failed: no claim
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "False" and ready[0]["reason"] == "MetricsUnavailable"


def test_no_stable_data_to_judge_is_refused_before_the_claim(world: Any) -> None:
    """Decision 110, the controller's path: a policy whose label matches nothing never claims the route; the
    Ready condition says ConfigError (what `promote --via-controller` exits 2 on) and names what to look at."""
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["spec"]["policy"]["metrics"] = {"source": "model", "labels": {"cluster": "eu-1"}}
    before = api.get(GROUP, "virtualservices", "ml", fleet.model(0))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    for _ in range(3):
        op.tick()
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
    assert api.get(GROUP, "virtualservices", "ml", fleet.model(0)) == before
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "False" and ready[0]["reason"] == "ConfigError", status
    assert "checks[0] 'latency-p95', checks[1] 'errors', request counts" in ready[0]["message"]
    assert "metrics.labels (cluster=eu-1)" in ready[0]["message"]


def test_a_canary_version_no_pod_serves_is_rolled_back_as_unrouted(world: Any) -> None:
    """Decision 110 on the controller's batched looks: a CanaryRollout for v9, which nothing serves, ends
    rolled back on the unrouted evidence, not on "no data" at its deadline."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v9"))
    objs = run_until_done(op, custom, ["r0"])
    st = objs["r0"]["status"]
    assert st["phase"] == rl.ROLLED_BACK, st
    assert "the canary got no requests at 20% while stable got" in st["reason"], st["reason"]
    assert "do pods labelled version=v9 exist" in st["reason"]
    weights, state = vs(api, 0)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK


def test_prometheus_outage_mid_rollout_never_promotes_and_ends_at_stable(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)  # mid-rollout: the canary has traffic
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)  # Prometheus goes away while the canary has traffic
    objs = run_until_done(op, custom, ["r0"], timeout=60)
    assert objs["r0"]["status"]["phase"] == rl.ABORTED and vs(api, 0)[0] == [100, 0]


def test_api_conflicts_and_errors_are_survived(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v3"))
    api.fail_next(409, times=3, methods=("PUT",), plural="virtualservices")
    api.fail_next(500, times=4, methods=("PUT", "PATCH"))
    api.fail_next(500, times=3, methods=("GET",), plural="virtualservices")
    objs = run_until_done(op, custom, ["r0", "r1"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED and objs["r1"]["status"]["phase"] == rl.ROLLED_BACK
    assert vs(api, 0)[0] == [100, 0] and vs(api, 1)[0] == [100, 0]


def _progressing(op: Controller, custom: Any, api: KubeAPIServer, name: str = "r0", i: int = 0) -> None:
    """Tick until `name` runs its first step with traffic on the canary."""
    for _ in range(20):
        op.tick()
        st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name).get("status") or {}
        if st.get("phase") == rl.PROGRESSING and vs(api, i)[0][1] > 0:
            return
    pytest.fail(f"{name} never reached its first step")


@pytest.mark.parametrize("code", [500, 503, 429])
def test_a_transient_error_on_the_status_write_mid_rollout_is_retried_not_an_abort(world: Any, code: int) -> None:
    """One 5xx/429 on the CanaryRollout status PATCH while the canary has traffic: retried within the
    failure budget (decision 14), the good canary is promoted. It used to abort at once (the raw
    client error was not a TransientError)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.fail_next(code, times=2, methods=("PATCH",), plural="canaryrollouts")
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED, objs["r0"]["status"].get("reason")


def _fresh(op: Controller) -> Controller:
    """Another controller process on the same cluster (a restart, or a standby that took over): it
    knows nothing but what the API server holds."""
    return Controller(custom=op.custom, core=op.core, router=op.router, metrics=op.metrics, batch=op.batch,
                      namespace="ml")


def _edit_vs(api: KubeAPIServer, i: int, fn: Any) -> None:
    api.edit(GROUP, "virtualservices", "ml", fleet.model(i), fn)


def _set_weights(o: dict[str, Any], weights: tuple[int, int]) -> None:
    for d, w in zip(o["spec"]["http"][0]["route"], weights):
        d["weight"] = w


def _unreadable(o: dict[str, Any]) -> None:
    o["metadata"]["annotations"]["modelcanary.dev/rollout"] = "{not json"


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "restarted"])
@pytest.mark.parametrize("damage", ["weights 80/30", "unreadable record"])
def test_a_damaged_route_mid_rollout_goes_to_stable_even_after_a_restart(world: Any, restarted: bool,
                                                                          damage: str) -> None:
    """Someone leaves the route in a state no rollout can go on from while the canary has traffic;
    the controller is restarted before its next tick (or not). The tick fails before the rollout's
    state is read, and only this CR's status tells that it had traffic split: stable 100% all the
    same (a restarted process used to leave it split, with a Ready=False condition only)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _edit_vs(api, 0, (lambda o: _set_weights(o, (80, 30))) if damage.startswith("weights") else _unreadable)
    if restarted:
        op = _fresh(op)
    for _ in range(3):
        op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
    assert st["phase"] == rl.ABORTED and st["reason"].startswith("failed: ")


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "restarted"])
def test_a_canary_version_edited_mid_rollout_sends_the_old_one_to_stable_then_runs_the_new(
        world: Any, restarted: bool) -> None:
    """spec.canaryVersion v3 -> v2 while v3 has traffic: v3 goes back to stable 100% (recorded
    aborted, 'superseded'), then v2 is rolled out (it used to be RolloutBusy for ever in a restarted
    process, and aborted with v2 never started in the same one)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    if restarted:
        op = _fresh(op)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"canaryVersion": "v2"}})
    op.tick()  # v3 to stable, then v2 claims the route in the same tick
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["canary_version"] == "v2" and record["phase"] == rl.PENDING
    events = [e["message"] for e in api.list("", "events", "ml") if e["reason"] == "RolloutAborted"]
    assert any("superseded: spec.canaryVersion changed from v3 to v2 mid-rollout" in m for m in events), events
    objs = run_until_done(op, custom, ["r0"], version="v2")
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED and objs["r0"]["status"]["target"]["canaryVersion"] == "v2"
    assert vs(api, 0)[1]["canary_version"] == "v2"


def test_a_virtual_service_edited_mid_rollout_sends_the_old_one_to_stable_then_runs_on_the_new(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"virtualService": fleet.model(1)}})
    # the superseded rollout's status (aborted, v2 on m0) is terminal too: wait for the one on m1
    objs = run_until_done(op, custom, ["r0"], version="v2", virtual_service=fleet.model(1))
    old, new = vs(api, 0), vs(api, 1)
    assert old[0] == [100, 0] and old[1]["phase"] == rl.ABORTED and old[1]["reason"] == (
        f"superseded: spec.virtualService changed from {fleet.model(0)} to {fleet.model(1)}, the DestinationRule "
        f"changed from {fleet.model(0)} to {fleet.model(1)} mid-rollout")
    assert new[1]["phase"] == rl.PROMOTED and objs["r0"]["status"]["phase"] == rl.PROMOTED
    assert objs["r0"]["status"]["target"]["virtualService"] == fleet.model(1)


def test_a_finished_rollout_whose_spec_names_another_canary_version_runs_it(world: Any) -> None:
    """A promoted CR edited to a new canary version is a new rollout of it (as Flagger and Argo
    Rollouts start one on a new revision); an edit of anything else leaves it finished."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    run_until_done(op, custom, ["r0"])
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"onForeignEdit": "abort"}})
    op.tick()
    assert vs(api, 0)[1]["canary_version"] == "v2" and vs(api, 0)[1]["phase"] == rl.PROMOTED
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"canaryVersion": "v3"}})
    objs = run_until_done(op, custom, ["r0"], version="v3")
    assert vs(api, 0)[1]["canary_version"] == "v3" and objs["r0"]["status"]["phase"] == rl.ROLLED_BACK


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "deleted while the controller was down"])
def test_a_canary_rollout_deleted_mid_rollout_sends_stable_100_before_it_goes(world: Any, restarted: bool) -> None:
    """Deleting the CR while its canary has traffic: its finalizer (`modelcanary.dev/stable-on-delete`,
    set before the claim) keeps it until the controller sent stable 100%, even a controller started
    after the deletion; then the CR is gone. It used to leave the bad canary's share for ever."""
    from canary.controller import FINALIZER

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["metadata"]["finalizers"] == [FINALIZER]
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0") is not None and vs(api, 0)[0][1] > 0  # held by the finalizer
    if restarted:
        op = _fresh(op)
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["reason"] == "CanaryRollout deleted mid-rollout"
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0") is None


def test_a_finished_canary_rollout_carries_no_finalizer_and_is_deleted_at_once(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    run_until_done(op, custom, ["r0"])
    op.tick()
    assert not api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["metadata"].get("finalizers")
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0") is None and vs(api, 0)[1]["phase"] == rl.PROMOTED


def test_what_a_deleted_rollout_left_in_memory_is_forgotten_without_informers(world: Any) -> None:
    """`_forget_absent` from a tick's LIST (no informers): a rollout that is gone is forgotten, a listed
    one is kept (see test_controller_watch.py for the race that leaves such entries)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.tick()
    assert "ml/r0" in op._known
    op._gates[("ml/gone", "v2", "u")] = object()
    op._preflights["ml/gone"] = [("v2", 0.0, 0), None, None, False]
    op._next_forget = -math.inf  # due
    op.tick()
    assert "ml/gone" not in op._preflights and not [k for k in op._gates if k[0] == "ml/gone"]
    assert "ml/r0" in op._known


def test_a_canary_no_ready_pod_serves_is_not_claimed_until_one_is(world: Any) -> None:
    """A CanaryRollout created with its Deployment: the canary's pod is Pending. Nothing is claimed
    (stable 100%, no record), the status says which pods were looked for, and the rollout starts once
    the pod is Ready (routing/pods.py)."""
    api, op, custom = world
    _canary_pod(api, ready=False)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.tick()
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    ready = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False" and ready["reason"] == "CanaryNotReady", ready
    assert "app=rec-model,version=v2" in ready["message"] and "m0-v2-0 (Pending" in ready["message"], ready
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})
    _canary_pod(api, ready=True)
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED


def test_a_follower_out_of_time_says_the_rollout_never_started_and_why(world: Any, tmp_path: Any,
                                                                       monkeypatch: Any) -> None:
    """Decision 121 (e). `promote --via-controller` while the canary's pod stays Pending: the controller
    keeps the CanaryRollout unclaimed (CanaryNotReady), and the follower, at --timeout, said "did not finish
    ...; it keeps running in the controller": no word of the pods, nor that nothing had moved, nor that the
    rollout would start by itself whenever a pod turned Ready. The follower's clock is a counter and each of
    its sleeps is one controller tick."""
    api, op, custom = world
    _canary_pod(api, ready=False)
    text = fleet.follow_out_of_time(tmp_path, monkeypatch, api, tick=op.tick, timeout_s=5)
    assert "within 5s; as of its last status it has not started: CanaryNotReady: canary v2 has no Ready pod" in text
    assert "m0-v2-0 (Pending" in text and "nothing was moved" in text and "starts it once that clears" in text, text
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})


def test_a_canary_rollout_whose_pod_is_never_ready_ends_unrun_at_its_wait(world: Any) -> None:
    """Flagger and Argo give up at their progress deadline; a CanaryRollout whose canary never got a Ready
    pod was retried for ever, and started days later if its pods appeared. After `wait_ready_s` from the
    first check of its generation it ends aborted, "not run", nothing claimed, its finalizer gone
    (`promote --via-controller` exits 3)."""
    api, op, custom = world
    _canary_pod(api, ready=False)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.wait_ready_s = 60.0
    op.clock = clock = FakeClock()
    op.tick()  # the first check: waiting
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
    assert status.get("phase") not in rl.TERMINAL, status
    clock.t += 61.0
    op.tick()
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    st = obj["status"]
    assert st["phase"] == rl.ABORTED and st["reason"].startswith("not run: no Ready pod of v2 within 60s"), st
    assert "app=rec-model,version=v2" in st["reason"]
    assert st["endCause"] == "infrastructure", st  # as promote's exit 3; its words were `other` (decision 667)
    from canary.controller import FINALIZER

    assert FINALIZER not in (obj["metadata"].get("finalizers") or [])
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})


def test_a_stable_no_ready_pod_serves_is_not_claimed_until_one_is(world: Any) -> None:
    """Decision 124. The canary's pod is Ready, the stable's is not (crash-looping, scaled to 0): nothing is
    claimed, the Ready condition is False with reason StableNotReady naming the stable's pods (a reason the
    follower waits on, not bad input), and the rollout starts once a stable pod is Ready."""
    from canary import cli  # noqa: F401 - first: canary.cli_controller imported alone is a circular import
    from canary.cli_controller import BAD_INPUT_REASONS

    api, op, custom = world
    _canary_pod(api, ready=True)
    _canary_pod(api, ready=False, version="v1")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.tick()
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    ready = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False" and ready["reason"] == "StableNotReady", ready
    assert ready["reason"] not in BAD_INPUT_REASONS
    assert "stable v1 has no Ready pod" in ready["message"] and "app=rec-model,version=v1" in ready["message"], ready
    assert "m0-v1-0 (Pending" in ready["message"] and "canary v2" not in ready["message"], ready
    assert not (obj["status"].get("phase")), obj["status"]
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})
    _canary_pod(api, ready=True, version="v1")
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED


def test_a_canary_rollout_whose_stable_pod_is_never_ready_ends_unrun_at_its_wait(world: Any) -> None:
    """Decision 124, as decision 122: after `wait_ready_s` without a Ready stable pod, the CanaryRollout
    ends aborted, "not run", naming the stable, nothing claimed."""
    api, op, custom = world
    _canary_pod(api, ready=True)
    _canary_pod(api, ready=False, version="v1")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.wait_ready_s = 60.0
    op.clock = clock = FakeClock()
    op.tick()
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
    assert status.get("phase") not in rl.TERMINAL, status
    clock.t += 61.0
    op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.ABORTED and st["reason"].startswith("not run: no Ready pod of the stable v1 within 60s"), st
    assert "app=rec-model,version=v1" in st["reason"]
    assert st["endCause"] == "infrastructure", st  # decision 667
    untouched = api.get(GROUP, "virtualservices", "ml", "m0")
    assert "modelcanary.dev/rollout" not in (untouched["metadata"].get("annotations") or {})


def _canary_pod(api: KubeAPIServer, *, ready: bool, version: str = "v2") -> None:
    """m0's Service (selecting the DestinationRule's `app` label), a Ready stable pod m0-v1-0 (the stable's
    pods are checked too, decision 124), and the pod m0-<version>-0, Ready or Pending, on an emulator that
    serves pods and Services (routing/pods.py)."""
    from canary.sandbox.kubeapi import PODS, SERVICES, ready_pod

    if api.handler.kinds.get(("", "pods")) is None:
        for res in (PODS, SERVICES):
            api.handler.register(res)
        api.handler.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m0", "namespace": "ml"},
                                "spec": {"selector": {"app": "rec-model"}}})
        api.handler.put_object(ready_pod("m0-v1-0", "ml", {"app": "rec-model", "version": "v1"}))
    api.handler.put_object(ready_pod(f"m0-{version}-0", "ml", {"app": "rec-model", "version": version}, ready=ready))

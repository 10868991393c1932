"""The controller's cost per rollout (issue 10): a small status, finished rollouts that cost nothing,
and batched snapshots that serve every look. Real Prometheus (backfilled), the strict API emulator;
time is an injected clock that the snapshots are evaluated at, so nothing depends on how fast this
machine runs."""

from __future__ import annotations

import json
from typing import Any, Iterator

import kubernetes.client as kc
import pytest

from canary import crd
from canary import rollout as rl
from canary.controller import Controller
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import KubeAPIServer
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.support.prom import HistoryPool

pytestmark = pytest.mark.integration
N = 4


class Clock:
    """Starts at the backfilled history's present; moves only when a test says so."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


class Counting:
    """Wraps a provider or router and counts the calls a test cares about."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls, self.measured = inner, {}, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*a: Any, **kw: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "measure":  # (policy, check, target): which model and check went to Prometheus alone
                self.measured.append((a[2].model, a[1].name))
            return attr(*a, **kw)
        return counted


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    # the last rollout's model exports the feature-missing gauge only, the others the counter too
    return history_pool.get(("fleet", N, N - 1),
                            lambda after_s: fleet.history(N, after_s=after_s, feature_counters=N - 1))


@pytest.fixture
def world(prometheus: PromServer) -> Iterator[tuple[KubeAPIServer, Controller, Any, Clock]]:
    import time

    api = fleet.start_api(N)
    client = api.api_client()
    prom = PrometheusProvider(prometheus.url, retries=2, budget_s=5)
    clock = Clock(time.time())
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                    router=IstioRouter(client, wait=None), metrics=Counting(prom), batch=BatchMetrics(prom),
                    namespace="ml", clock=clock)
    yield api, op, kc.CustomObjectsApi(client), clock
    client.close()
    api.stop()


def status(custom: Any, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name).get("status") or {}


def drive(op: Controller, custom: Any, clock: Clock, names: list[str], *, step_s: float = 1.0,
          ticks: int = 200) -> None:
    """Tick, moving the clock `step_s` per tick, until every rollout is finished."""
    for _ in range(ticks):
        op.tick()
        if all(status(custom, n).get("phase") in rl.TERMINAL for n in names):
            return
        clock.t += step_s
    raise AssertionError({n: status(custom, n).get("phase") for n in names})


def create(custom: Any, i: int, version: str, **spec: Any) -> None:
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(i, version, **spec))


# ---- part 1: a bounded status ---------------------------------------------------------------


def test_the_status_keeps_the_last_verdict_and_a_summary_and_the_history_every_look(world: Any) -> None:
    api, op, custom, clock = world
    create(custom, 0, "v2")
    drive(op, custom, clock, ["r0"])
    st = status(custom, "r0")
    assert st["phase"] == rl.PROMOTED
    assert "verdictHistory" not in st and st["lastVerdict"]["results"]
    summary = st["summary"]
    assert summary["looks"] >= 2 and summary["outcomes"]["pass"] >= 2
    assert sum(summary["outcomes"].values()) == summary["looks"]
    assert summary["historyConfigMap"] == "m0-canary-history"
    looks = json.loads(api.get("", "configmaps", "ml", "m0-canary-history")["data"]["history.json"])["looks"]
    assert [look["n"] for look in looks] == list(range(1, summary["looks"] + 1))
    assert all(set(look["c"]) == {"latency-p95", "errors"} for look in looks)  # every look's per-check record
    from tests.unit.test_deploy_manifests import crd_errors

    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert not crd_errors(obj)  # what the controller writes is what the CRD's schema admits
    # constant size: what a LIST or a watch event carries per CR, whatever the number of looks
    assert len(json.dumps({k: v for k, v in st.items() if k != "stepStart"})) < 6000


def test_a_verdict_history_written_by_an_older_controller_is_removed(world: Any) -> None:
    api, op, custom, clock = world
    create(custom, 0, "v2")
    op.tick()
    api.edit(crd.GROUP, crd.PLURAL, "ml", "r0",
             lambda o: o.setdefault("status", {}).update(verdictHistory=[{"outcome": "pass"}] * 50))
    clock.t += 1.0
    op.tick()
    assert "verdictHistory" not in status(custom, "r0")


def test_a_finished_rollout_costs_nothing_until_its_spec_changes(world: Any) -> None:
    api, op, custom, clock = world
    create(custom, 0, "v2")
    drive(op, custom, clock, ["r0"])
    op.tick()  # the tick after the end: status mirrors it, nothing is pending
    router = op.router
    spy = Counting(router)
    op.router, op.fenced.inner = spy, spy
    parsed: list[str] = []
    real_parse = crd.parse

    def parse(obj: Any, **kw: Any) -> Any:
        parsed.append(obj["metadata"]["name"])
        return real_parse(obj, **kw)

    crd.parse = parse  # type: ignore[assignment]
    try:
        writes = len(api.handler.writes)
        for _ in range(5):
            clock.t += 1.0
            op.tick()
        assert parsed == [] and spy.calls.get("inspect", 0) == 0 and len(api.handler.writes) == writes
        assert "ml/r0" not in op._known and "ml/r0" not in op._histories  # noqa: SLF001 - nothing kept
        custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                              {"spec": {"actionReason": "a new generation"}})
        op.tick()
        assert parsed == ["r0"]  # a new generation is looked at again (and finds it finished)
    finally:
        crd.parse = real_parse  # type: ignore[assignment]


# ---- part 2: metrics that do not cliff ------------------------------------------------------


class Recording:
    """The batch's Prometheus client, recording every query text."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.queries = inner, []

    @property
    def at(self) -> Any:
        return self.inner.at

    def query(self, text: str, **kw: Any) -> Any:
        self.queries.append(text)
        return self.inner.query(text, **kw)


def test_every_look_is_served_by_the_batched_snapshot_however_long_the_tick(world: Any) -> None:
    """Each tick "lasts" 40 s (the clock moves on after the snapshot, before the looks), 40 times
    look_every: before issue 10 every step then lost its step-start snapshot and each look fell back
    to one query per check per rollout. Now the snapshot a look judged starts the next step."""
    api, op, custom, clock = world
    recording = Recording(op.batch.prom)
    op.batch.prom = recording
    snapshot = op.batch.snapshot

    def slow_tick_snapshot(*a: Any, **kw: Any) -> Any:
        snap = snapshot(*a, **kw)
        clock.t += 40.0  # the rest of the tick
        return snap

    op.batch.snapshot = slow_tick_snapshot
    versions = {0: "v2", 1: "v3", 2: "v2", 3: "v3"}
    for i, v in versions.items():
        create(custom, i, v)
    per_tick: list[int] = []
    restarts_per_tick: list[int] = []  # `Snapshot.restarted` at the looks: per family and window start
    downs_per_tick: list[int] = []  # the target-down query: one per label shape and chunk (decision 364)
    for _ in range(40):
        before = len(recording.queries)
        op.tick()
        asked = recording.queries[before:]
        restarts_per_tick.append(sum(q.startswith("label_replace(") for q in asked))
        downs_per_tick.append(sum(q.startswith("count by (") for q in asked))  # `BatchMetrics._down`
        per_tick.append(len(asked) - restarts_per_tick[-1] - downs_per_tick[-1])
        if all(status(custom, f"r{i}").get("phase") in rl.TERMINAL for i in versions):
            break
        clock.t += 1.0  # time passes between ticks too: a tick with no look due takes no snapshot
    for i, v in versions.items():
        assert status(custom, f"r{i}")["phase"] == fleet.expected_phase(v), i
    assert op.metrics.calls.get("measure", 0) == 0 and op.metrics.calls.get("request_counts", 0) == 0
    families = len(op.batch.plan([__import__("canary.metrics.batch", fromlist=["Want"]).Want(
        crd.parse(fleet.rollout_object(0, "v2")).policy, crd.parse(fleet.rollout_object(0, "v2")).target)]))
    assert max(per_tick) <= families + 1  # one query per family and `time()`, whatever the number of rollouts
    assert max(restarts_per_tick) <= families  # the rollouts' steps start at one snapshot: one window start
    assert max(downs_per_tick) == 1  # one label shape, one chunk: whatever the number of rollouts
    assert all("model_name=~" in q for q in recording.queries if q != "time()")  # never the whole mesh


def test_a_feature_missing_check_is_served_by_the_snapshot_unless_the_model_exports_only_the_gauge(
        world: Any) -> None:
    """The default policy's feature_missing check: measured from the batched snapshot's
    `model_features_total` counter (no query per look); the one model exporting only the
    `model_feature_missing_rate` gauge is measured per rollout, and every rollout ends as it should."""
    api, op, custom, clock = world
    missing = {"name": "missing-features", "kind": "feature_missing", "max_increase_points": 2}
    versions = {0: "v2", 1: "v3", N - 1: "v2"}
    for i, v in versions.items():
        policy = {**fleet.FAST_POLICY, "checks": [*fleet.FAST_POLICY["checks"], missing]}
        create(custom, i, v, policy=policy)
    drive(op, custom, clock, [f"r{i}" for i in versions])
    for i, v in versions.items():
        assert status(custom, f"r{i}")["phase"] == fleet.expected_phase(v), i
    measured = op.metrics.measured
    assert measured and {model for model, _ in measured} == {fleet.model(N - 1)}  # only the gauge-only model
    assert {check for _, check in measured} == {"missing-features"}


def test_a_controller_clock_behind_prometheuss_reads_at_prometheuss_now_and_says_so(world: Any) -> None:
    """The controller's clock 120 s behind Prometheus's: its batched snapshots are evaluated at
    Prometheus's now (the step-start snapshot it persists is stamped with that time, not 120 s ago,
    when the newest data of every window were left unread), and one `metrics.clock_skew` warning says
    so, not one per tick."""
    import time

    from structlog.testing import capture_logs

    api, op, custom, clock = world
    clock.t = time.time() - 120.0
    create(custom, 0, "v2")
    with capture_logs() as logs:
        for _ in range(4):  # claimed, first step, its step-start snapshot, a look
            op.tick()
            clock.t += 1.0
    saved = status(custom, "r0")["stepStart"]
    assert saved["snapshot"]["taken_at"] > saved["stepStartedAt"] + 100  # Prometheus's time, not the controller's
    skew = [e for e in logs if e["event"] == "metrics.clock_skew"]
    assert len(skew) == 1 and skew[0]["log_level"] == "warning" and skew[0]["evaluated_at"] == "prometheus"
    assert 100 < skew[0]["prometheus_minus_controller_s"] < 200


def test_a_failed_snapshot_makes_every_due_look_could_not_measure_at_no_query(world: Any) -> None:
    api, op, custom, clock = world
    create(custom, 0, "v2")
    for _ in range(3):  # claimed, first step, its step-start snapshot
        op.tick()
        clock.t += 1.0
    assert status(custom, "r0")["phase"] == rl.PROGRESSING
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.batch = BatchMetrics(dead)
    op.metrics = Counting(dead)
    for _ in range(3):
        clock.t += 1.0
        op.tick()
    st = status(custom, "r0")
    assert st["lastVerdict"]["outcome"] == "error" and st["summary"]["outcomes"]["error"] >= 1
    assert op.metrics.calls == {}  # no per-rollout query behind the failed snapshot


def test_an_unexpected_error_while_split_sends_stable_100_and_keeps_the_recorded_history(
        world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A look that fails with a non-transient error while the canary has traffic: stable gets 100% at
    once, recorded `aborted` with the error as the reason, on the rollout as recorded so far (its
    looks, start and history kept, not a fresh state)."""
    import canary.controller as controller_module
    from canary.reconcile import parse_record
    from canary.routing.patch import STATE_ANNOTATION

    api, op, custom, clock = world
    create(custom, 0, "v2")

    def recorded() -> tuple[list[int], rl.RolloutState]:
        obj = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(0))
        weights = [d["weight"] for d in obj["spec"]["http"][0]["route"]]
        return weights, parse_record(obj["metadata"]["annotations"][STATE_ANNOTATION])

    for _ in range(60):
        op.tick()
        clock.t += 1.0
        weights, before = recorded()
        if before.phase == rl.PROGRESSING and weights[1] > 0 and before.look >= 2:
            break
    else:
        raise AssertionError(recorded())

    def exploding_judge(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("judge exploded")

    monkeypatch.setattr(controller_module, "judge", exploding_judge)
    for _ in range(10):
        clock.t += 1.0
        op.tick()
        if status(custom, "r0").get("phase") in rl.TERMINAL:
            break
    st = status(custom, "r0")
    assert st["phase"] == rl.ABORTED and "judge exploded" in st["reason"], st
    weights, after = recorded()
    assert weights == [100, 0] and after.phase == rl.ABORTED
    assert after.look == before.look and after.started_at == before.started_at  # the recorded rollout, ended
    assert after.history[:len(before.history)] == before.history


# ---- a restart without the step-start snapshot --------------------------------------------------


def _recorded_state(api: Any, i: int) -> rl.RolloutState | None:
    from canary.reconcile import parse_record
    from canary.routing.patch import STATE_ANNOTATION

    obj = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(i))
    text = (obj["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
    return parse_record(text) if text else None


def _restarted(world: Any) -> Controller:
    """A new controller process over the same API and Prometheus (nothing of the old one's memory)."""
    api, op, custom, clock = world
    return Controller(custom=op.custom, core=op.core, router=op.router, metrics=op.metrics, batch=op.batch,
                      namespace="ml", clock=clock)


def _to_looks_in_step(op: Controller, custom: Any, api: Any, clock: Clock, looks: int) -> rl.RolloutState:
    for _ in range(40):
        state = _recorded_state(api, 0)
        if state is not None and state.phase == rl.PROGRESSING and state.step_looks >= looks:
            return state
        op.tick()
        clock.t += 1.0
    raise AssertionError(status(custom, "r0"))


@pytest.mark.parametrize("persisted", [False, True])
def test_a_restart_without_the_step_start_snapshot_opens_a_new_window(world: Any, persisted: bool) -> None:
    """A controller restarted mid-step measures from its first snapshot when the persisted step-start
    snapshot is gone: every look from then on sees only data after the earlier looks of the window
    ended. That is a new window (its own share of the level, the earlier window's failure evidence
    folded into the pooled evidence, the step's deadline unchanged), not a second path of the old one
    (`rollout.window_for`). With the persisted snapshot nothing changes. Either way the good canary
    is promoted."""
    from structlog.testing import capture_logs

    api, op, custom, clock = world
    slow = {**fleet.FAST_POLICY, "analysis": {**fleet.FAST_POLICY["analysis"], "interval": "30s"},
            "failure": {**fleet.FAST_POLICY["failure"], "no_data_deadline": "60s"}}
    create(custom, 0, "v2", policy=slow)
    before = _to_looks_in_step(op, custom, api, clock, 3)
    assert before.window_to is not None and before.step_window == 0 and before.window_evidence
    if not persisted:
        api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["status"].pop("stepStart", None))
    clock.t += 2.0
    new = _restarted(world)
    with capture_logs() as logs:
        after = _to_looks_in_step(new, custom, api, clock, before.step_looks + 2)
    assert after.step == before.step and after.step_started_at == before.step_started_at  # the deadline stays
    restarted = [e for e in logs if e["event"] == "look.window_restarted"]
    if persisted:
        assert after.step_window == 0 and not restarted
        assert after.evidence == before.evidence  # the same open window, nothing folded
    else:
        assert after.step_window == 1 and len(restarted) == 1 and restarted[0]["log_level"] == "warning"
        for key, (s, i) in before.window_evidence.items():  # the old window's evidence is kept, pooled
            s0, i0 = before.evidence.get(key, (0.0, 0.0))
            assert after.evidence[key] == pytest.approx((s0 + s, i0 + i))
        assert any("window restarted" in h["what"] for h in after.history)
    drive(new, custom, clock, ["r0"])
    assert status(custom, "r0")["phase"] == rl.PROMOTED


def test_a_new_window_is_not_said_for_a_look_whose_write_met_a_revert(world: Any) -> None:
    """A controller restarted mid-step without the persisted step-start snapshot opens a new window at its first
    look (`look.window_restarted`, above); when that look's write meets a revert (a person's edit landing after
    the read that confirmed the weights, decision 185) the look is refused and discarded, its window never
    recorded, and its `look.window_restarted` must stay unsaid with its `look.completed` (decision 186). Before,
    the controller logged it before the write, for a window the record never had."""
    from structlog.testing import capture_logs

    from tests.integration.test_look_write_revert import _hand_edit, _records_a_look, _reverting

    api, op, custom, clock = world
    slow = {**fleet.FAST_POLICY, "analysis": {**fleet.FAST_POLICY["analysis"], "interval": "30s"},
            "failure": {**fleet.FAST_POLICY["failure"], "no_data_deadline": "60s"}}
    create(custom, 0, "v2", policy=slow)
    before = _to_looks_in_step(op, custom, api, clock, 3)
    api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["status"].pop("stepStart", None))
    clock.t += 2.0
    new = _restarted(world)
    raced = _reverting(api, new.router, _hand_edit(api, (100, 0), fleet.model(0)), _records_a_look)
    with capture_logs() as logs:
        for _ in range(40):
            new.tick()
            if raced:
                break
            clock.t += 1.0
    events = [e["event"] for e in logs]
    assert raced and "look.discarded" in events, events
    refused = events.index("look.discarded")
    assert "look.window_restarted" not in events[:refused], events
    assert "look.completed" not in events[:refused], events
    state = _recorded_state(api, 0)
    assert state is not None and state.look == before.look and state.reverts == 1, state  # not judged; counted


@pytest.mark.parametrize("how", ["leader_back", "stale_persisted"])
def test_a_step_start_from_before_a_restarted_window_is_not_judged_again(world: Any, how: str) -> None:
    """Once a window was restarted (`window_for`: its data start at the old window's end, whose
    evidence is folded into the pooled evidence), a step-start snapshot taken before that end reaches
    back into data already pooled. Judged as the open window, the earlier data counted twice: in the
    pooled evidence and again in the window's when it closes (the pooled sums are then no Brownian
    motion: failures over alpha). Two ways to hold one: the old leader, back in charge with the step's
    first snapshot still in memory (`leader_back`); or a status whose stepStart still holds the old
    snapshot because the restarted controller's write of its own failed (`stale_persisted`). Either
    is set aside (`RolloutState.window_from`): the persisted one of the new window serves, or the next
    snapshot starts a window of its own."""
    api, op, custom, clock = world
    slow = {**fleet.FAST_POLICY, "analysis": {**fleet.FAST_POLICY["analysis"], "interval": "30s"},
            "failure": {**fleet.FAST_POLICY["failure"], "no_data_deadline": "90s"}}
    create(custom, 0, "v2", policy=slow)
    before = _to_looks_in_step(op, custom, api, clock, 3)
    old_start = json.loads(json.dumps(status(custom, "r0")["stepStart"]))
    api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["status"].pop("stepStart", None))
    clock.t += 2.0
    new = _restarted(world)
    restarted = _to_looks_in_step(new, custom, api, clock, before.step_looks + 2)
    assert restarted.step_window == 1 and restarted.window_from is not None
    assert restarted.window_from >= (before.window_to or 0.0)
    if how == "leader_back":  # the first controller leads again: its memory holds the step's first snapshot
        again = op
    else:  # the restarted one's stepStart write had failed: the status still holds the old snapshot
        api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["status"].__setitem__("stepStart", old_start))
        again = _restarted(world)
    after = _to_looks_in_step(again, custom, api, clock, restarted.step_looks + 2)
    assert after.step == before.step and after.step_started_at == before.step_started_at
    base = again._step_starts["ml/r0"][1]
    assert base.taken_at >= restarted.window_from  # no look of the open window reaches into pooled data
    assert after.evidence == restarted.evidence or after.step_window > restarted.step_window
    drive(again, custom, clock, ["r0"])
    assert status(custom, "r0")["phase"] == rl.PROMOTED

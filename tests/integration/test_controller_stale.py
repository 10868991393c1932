"""Decisions a controller replica takes from what it remembers must be checked against what the API
server holds now: another replica may have led meanwhile and ended the rollout, another writer may
have ended it, the CanaryRollout may be another object of the same name. Each test is one kind of
stale memory, against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary import controller as controller_mod
from canary import crd
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from tests import fleet
from tests.integration.test_controller import (GROUP, _fresh, _progressing, prometheus, run_until_done,  # noqa: F401
                                               vs, world)

pytestmark = pytest.mark.integration


def _stable_subset(api: Any, name: str) -> str:
    dr = api.get(GROUP, "destinationrules", "ml", name)
    return str([s["labels"]["version"] for s in dr["spec"]["subsets"] if s["name"] == "stable"][0])


def _route_writes(api: Any) -> list[tuple[str, str, int]]:
    return [w for w in api.handler.writes if "/virtualservices/" in w[1] or "/destinationrules/" in w[1]]


def _ready(custom: Any, name: str) -> dict[str, Any]:
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name)["status"]
    return next(c for c in st["conditions"] if c["type"] == "Ready")


@pytest.mark.parametrize("failure", ["invalid policy", "prometheus down at the preflight"])
def test_a_replica_leading_again_never_undoes_what_another_promoted(world: Any, failure: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A runs r0 (v2) to 80/20 and loses the lease; B promotes it (stable subset -> v2); r0 is edited
    to v3, and A, leading again, fails r0's tick (an invalid policy; Prometheus down at the claim's
    preflight, past the failure budget). A's memory (progressing 80/20) is a lease term behind: it
    used to write an `aborted` record and re-point the stable subset back at v1, demoting the
    promoted model. Now nothing is written to the route and the failure is reported."""
    api, a, custom = world
    monkeypatch.setattr(controller_mod, "FAILURE_BUDGET_S", 0.0)  # a transient failure acts at once
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(a, custom, api)
    b = _fresh(a)  # A's lease lapsed (A never ticked meanwhile): B leads and promotes
    run_until_done(b, custom, ["r0"])
    assert vs(api, 0)[1]["phase"] == rl.PROMOTED and _stable_subset(api, "m0") == "v2"
    edit: dict[str, Any] = {"canaryVersion": "v3"}
    if failure == "invalid policy":
        bad = copy.deepcopy(fleet.FAST_POLICY)
        bad["steps"] = [50, 10, 100]
        edit["policy"] = bad
    else:
        dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
        a.metrics, a.batch = dead, BatchMetrics(dead)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": edit})
    before = len(_route_writes(api))
    a.tick()
    a.tick()
    assert _route_writes(api)[before:] == []
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.PROMOTED and _stable_subset(api, "m0") == "v2"
    ready = _ready(custom, "r0")
    assert ready["status"] == "False"
    assert ("steps" in ready["message"]) if failure == "invalid policy" else ready["reason"] == "MetricsUnavailable"


def test_memory_of_a_deleted_canary_rollout_is_not_its_namesakes(world: Any) -> None:
    """A remembers r0 (uid 1) at 80/20; r0 is deleted (another replica sends stable 100% and drops
    the finalizer) and created again under the same name (uid 2) with an invalid policy. A's failure
    path must not act on the memory of the other object: nothing is written to the route."""
    api, a, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(a, custom, api)
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    _fresh(a).tick()  # another replica: stable 100%, finalizer gone, the object with it
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED
    _, aborted = vs(api, 0)
    bad = fleet.rollout_object(0, "v3")
    bad["spec"]["policy"]["steps"] = [50, 10, 100]
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, bad)
    before = len(_route_writes(api))
    a.tick()
    assert _route_writes(api)[before:] == [] and vs(api, 0)[1] == aborted
    assert "steps" in _ready(custom, "r0")["message"]


def _edited_policy(section: str) -> dict[str, Any]:
    pol = copy.deepcopy(fleet.FAST_POLICY)
    if section == "steps":
        pol["steps"] = [50, 100]
    elif section == "checks":
        pol["checks"][0]["max_increase_pct"] = 80
    elif section == "analysis":
        pol["analysis"]["interval"] = "2s"
    elif section == "metrics":
        pol["metrics"]["labels"] = {"region": "eu"}  # another selection of series: the series judged
    elif section == "histograms":
        pol["metrics"]["histograms"] = "native"  # native histograms read first (these series have none)
    return pol


@pytest.mark.parametrize("edit", ["spec.model", "metrics", "steps", "checks", "analysis", "histograms"])
def test_an_edit_of_what_a_rollout_judges_supersedes_it(world: Any, edit: str) -> None:
    """The model whose series are judged, or the policy's metric selectors, steps, checks or analysis,
    edited while v3 has 20%: the looks so far are no evidence for what the spec asks now (they used to
    carry on: another model's series judged and the bad canary promoted; steps [20, 50, 100] edited
    to [50, 100] at 20% promoted having been judged at 20% only). The rollout goes back to stable 100%
    (aborted, `superseded: ...` naming the field). An edit of how the series are judged starts it
    again from its first step; an edit of which series are judged (the model, the metric selectors)
    ends it there, as a route edit does: a person says whether those series are this route's traffic."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v3", virtualService="m0"))
    _progressing(op, custom, api)
    _, before = vs(api, 0)
    patch = {"model": "m1"} if edit == "spec.model" else {"policy": _edited_policy(edit)}
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": patch})
    op.tick()  # stable 100% first, then (how it is judged) the spec's rollout claims the route in the same tick
    why = ("spec.model changed from m0 to m1" if edit == "spec.model" else
           "the policy's metrics changed (the series judged)" if edit == "metrics" else f"the policy's {edit} changed")
    events = [e["message"] for e in api.list("", "events", "ml") if e["reason"] == "RolloutAborted"]
    assert any(f"superseded: {why} mid-rollout" in m for m in events), events
    weights, record = vs(api, 0)
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert weights == [100, 0] and "restartPending" not in st
    if edit in ("spec.model", "metrics"):  # ended, and stays ended
        assert record["phase"] == rl.ABORTED and record["started_at"] == before["started_at"]
        assert st["phase"] == rl.ABORTED and "set a new canaryVersion or create the CanaryRollout again" in st["reason"]
        for _ in range(3):
            op.tick()
        assert vs(api, 0) == (weights, record)
    else:
        assert record["phase"] == rl.PENDING and record["started_at"] > before["started_at"]
        assert record["look"] == 0 and record["step"] == -1 and st["phase"] == rl.PENDING


def test_a_superseded_rollout_starts_again_in_another_process(world: Any) -> None:
    """The restart is recorded (`status.restartPending`): when the new claim cannot be made at once
    (Prometheus down at its preflight), the rollout stays at stable 100%, and a controller started
    later claims it under the edited policy; it is not taken for a finished rollout."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    live = op.metrics, op.batch
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"policy": _edited_policy("steps")}})
    op.tick()
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["reason"].startswith("superseded: ")
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.ABORTED and st["restartPending"] is True
    op.metrics, op.batch = live
    fresh = _fresh(op)
    fresh.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.PENDING and record["canary_version"] == "v2"
    objs = run_until_done(fresh, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED
    assert "80/20" not in [h.get("weights") for h in vs(api, 0)[1]["history"]]  # the edited steps: 50 first


@pytest.mark.parametrize("claimant", ["a CanaryRollout", "a promote"])
def test_a_rollout_whose_route_was_taken_over_shows_how_it_ended(world: Any, claimant: str) -> None:
    """CR b runs v3 on m0 (80/20); on-call rolls m0 back (`canary rollback`); before b's next tick
    another rollout claims m0. b's status used to say `aborted` with weights 80/20, Progressing True,
    RolledBack False, the on-call reason lost, for ever (settled). Now: 100/0, Progressing False; the
    phase and reason on-call recorded when the claimant kept them (the controller's claim does:
    its record's first history line), else aborted with what runs on the route now."""
    from canary.logs import get as get_logger
    from canary.model import Target
    from canary.reconcile import execute, parse_state

    api, op, custom = world
    b = fleet.rollout_object(0, "v3")
    b["metadata"]["name"] = "b"
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, b)
    _progressing(op, custom, api, name="b")
    spec_b = crd.parse(custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "b"))
    seen = op.router.inspect(spec_b.target)
    state = parse_state(seen)
    assert state is not None
    new, actions = rl.transition(state, rl.Rollback(state.updated_at + 1, "on-call: pager"), spec_b.policy)
    execute(op.router, spec_b.target, new, actions, log=get_logger(component="oncall"), expect=seen.state)
    if claimant == "a CanaryRollout":
        a = fleet.rollout_object(0, "v2")
        a["metadata"]["name"] = "a"
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, a)
        op.owns = lambda obj: obj["metadata"]["name"] == "a"  # a's tick comes first
        op.tick()
        op.owns = lambda obj: True
    else:  # a claim that keeps nothing of the rollout before it
        t2 = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
        s2, acts = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=new.updated_at + 1)
        execute(op.router, t2, s2, acts, log=get_logger(component="cli"))
    assert vs(api, 0)[1]["canary_version"] == "v2"
    op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "b")["status"]
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    assert st["weights"] == {"stable": 100, "canary": 0} and conditions["Progressing"] == "False"
    assert conditions["RolledBack"] == "True"
    if claimant == "a CanaryRollout":
        assert st["phase"] == rl.ROLLED_BACK and st["reason"] == "on-call: pager"
    else:
        assert st["phase"] == rl.ABORTED and "runs another rollout now (v2, pending)" in st["reason"]


class _Notes:
    def __init__(self) -> None:
        self.got: list[str] = []

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        self.got.append(event)


class _Counters:
    """The telemetry calls the controller makes, counted by name."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kw: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
        return call


@pytest.mark.parametrize("reads_fail", [8, 0], ids=["reads fail after", "reads answer"])
@pytest.mark.parametrize("end", ["rolled_back", "promoted"])
def test_an_end_whose_write_answer_was_lost_is_announced_once(world: Any, end: str, reads_fail: int) -> None:
    """The write that ends the rollout (a rollback; a promotion's last write) lands, its answer is lost
    (504) and the VirtualService GETs of the router's retries fail (503 x 8): the tick fails. The next
    tick finds that end recorded and announces it once, as the tick that wrote it would have: the
    webhook, the CanaryRollout's Event, the counter (it used to mirror the status only: nothing was
    ever announced)."""
    from kubernetes.client.exceptions import ApiException

    api, op, custom = world
    op.notifier, op.telemetry = _Notes(), _Counters()
    real = op.router.custom.replace_namespaced_custom_object
    lost: list[int] = []

    def flaky(group: str, version: str, ns: str, plural: str, name: str, body: Any, **kw: Any) -> Any:
        out = real(group, version, ns, plural, name, body, **kw)
        record = ((body.get("metadata") or {}).get("annotations") or {}).get("modelcanary.dev/rollout", "")
        if plural == "virtualservices" and f'"phase":"{end}"' in record and not lost:
            lost.append(1)
            if reads_fail:
                api.fail_next(503, times=reads_fail, methods=("GET",), plural="virtualservices")
            raise ApiException(status=504, reason="Gateway Timeout")  # it landed; its answer did not
        return out

    op.router.custom.replace_namespaced_custom_object = flaky
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v3" if end == "rolled_back" else "v2"))
    objs = run_until_done(op, custom, ["r0"])
    for _ in range(3):
        op.tick()
    assert lost and objs["r0"]["status"]["phase"] == end and vs(api, 0)[1]["phase"] == end
    reasons = [e["reason"] for e in api.list("", "events", "ml") if e["involvedObject"]["kind"] == crd.KIND]
    if end == "rolled_back":
        assert op.notifier.got == ["rollback"] and reasons.count("RollbackCompleted") == 1
        assert op.telemetry.calls.get("record_rollback") == 1
    else:
        assert op.notifier.got == ["promotion"] and reasons.count("RolloutPromoted") == 1
        assert op.telemetry.calls.get("record_promotion") == 1


def test_a_supersede_whose_status_write_failed_still_starts_again(world: Any) -> None:
    """The supersede's stable-100% write lands, the status write after it fails (500): the next tick
    finds the superseded record (its reason says so), and the rollout still starts again; it used to
    be taken for a rollout someone else had ended."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"policy": _edited_policy("steps")}})
    api.fail_next(500, times=1, methods=("PATCH",), plural="canaryrollouts")
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["reason"].startswith("superseded: ")
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.PENDING and record["look"] == 0

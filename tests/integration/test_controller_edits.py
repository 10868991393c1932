"""Edits of a CanaryRollout mid-rollout, decided from the route's record (decision 79): the record
written with the claim names what the rollout is judged under (`RolloutState.judged`), so an edit is
caught while no status of the rollout has landed, or while its restart is pending; a rewrite that
changes nothing judged changes nothing. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing
from kubernetes.client.exceptions import ApiException

from canary import controller as controller_mod
from canary import crd
from canary import kube
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.runner import SystemClock
from tests import fleet
from tests.fakes import HeldClock
from tests.integration.test_controller import (GROUP, _fresh, _progressing, prometheus, run_until_done, vs,  # noqa: F401
                                               world)

pytestmark = pytest.mark.integration


def _status(custom: Any, name: str = "r0") -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name).get("status") or {}


def _patch_spec(custom: Any, patch: dict[str, Any], name: str = "r0") -> None:
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, name, {"spec": patch})


def _lose_status_writes(op: Any, monkeypatch: pytest.MonkeyPatch, n: int) -> dict[str, int]:
    """The next `n` status writes that carry a phase fail with a 500, as the API server answers them."""
    real, left = op._patch_status, {"n": n}

    def flaky(obj: dict[str, Any], status: dict[str, Any]) -> None:
        if "phase" in status and left["n"] > 0:
            left["n"] -= 1
            raise kube.translate(ApiException(status=500, reason="injected"), "CanaryRollout status")
        real(obj, status)
    monkeypatch.setattr(op, "_patch_status", flaky)
    return left


def _claimed_without_status(op: Any, custom: Any, api: Any, monkeypatch: pytest.MonkeyPatch, **spec: Any) -> None:
    """r0 (v2) claims m0 and reaches 80/20 while none of its status writes land."""
    obj = fleet.rollout_object(0, "v2", **spec)
    obj["metadata"]["finalizers"] = [controller_mod.FINALIZER]
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    left = _lose_status_writes(op, monkeypatch, 2)
    for _ in range(6):
        op.tick()
        if vs(api, 0)[0][1] > 0:
            break
    assert vs(api, 0)[0] == [80, 20] and _status(custom).get("phase") is None and left["n"] == 0


def test_an_edit_of_the_steps_before_any_status_landed_restarts_the_rollout(world: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps [20, 50, 100] edited to [50, 100] while v2 has 20% and no status of its rollout has
    landed (two status writes failed): the edit was missed (the check read the status only) and v2
    was promoted having been judged at 20% alone. The record written with the claim names the steps
    it is judged under: superseded, stable 100%, started again, and judged at 50%."""
    api, op, custom = world
    _claimed_without_status(op, custom, api, monkeypatch)
    _, before = vs(api, 0)
    assert set(before["judged"]) >= {"series", "steps", "analysis", "checks"}
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["steps"] = [50, 100]
    _patch_spec(custom, {"policy": pol})
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["started_at"] > before["started_at"] and record["phase"] == rl.PENDING
    assert record["history"][0]["reason"].startswith("superseded: the policy's steps changed mid-rollout")
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED
    steps = [h.get("weights") for h in vs(api, 0)[1]["history"]]
    assert "50/50" in steps and "80/20" not in steps, steps


@pytest.mark.parametrize("memory", ["same process", "restarted process"])
def test_a_route_edit_before_any_status_landed_sends_the_old_route_to_stable(
        world: Any, monkeypatch: pytest.MonkeyPatch, memory: str) -> None:
    """spec.model (and with it the VirtualService) edited m0 -> m1 while v2 has 20% of m0 and no status
    of that rollout has landed: m0 stayed at 80/20, recorded as r0's, driven by nothing, and the
    sweep skipped it (r0 exists). The process that claimed it sends it to stable before claiming m1;
    a process started since (no memory of m0) ends it at its sweep: r0 asks for m1 now."""
    api, op, custom = world
    _claimed_without_status(op, custom, api, monkeypatch)
    _patch_spec(custom, {"model": "m1"})
    runner = op if memory == "same process" else _fresh(op)
    objs = run_until_done(runner, custom, ["r0"], virtual_service="m1")
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED
    for _ in range(3):  # the sweep's next pass (the fresh process swept at its first tick)
        runner.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["canary_version"] == "v2"
    if memory == "same process":
        assert record["reason"].startswith("superseded: spec.virtualService changed from m0 to m1")
    else:
        assert record["reason"].startswith("superseded: CanaryRollout ml/r0 now asks for v2 on VirtualService m1")


def test_a_model_edit_while_a_restart_is_pending_ends_the_rollout(world: Any) -> None:
    """A steps edit superseded v3 (stable 100%, a restart pending: Prometheus was down at the new
    claim's preflight); then spec.model is edited m0 -> m1 with the VirtualService kept. The restart
    would have judged m1's series on m0's route (a canary slow on its own model promoted). An edit of
    which series are judged ends the rollout, pending restart or not: nothing is claimed again."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v3", virtualService="m0"))
    _progressing(op, custom, api)
    live = op.metrics, op.batch
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["steps"] = [50, 100]
    _patch_spec(custom, {"policy": pol})
    op.tick()
    assert _status(custom)["restartPending"] is True and vs(api, 0)[0] == [100, 0]
    _, superseded = vs(api, 0)
    _patch_spec(custom, {"model": "m1"})
    op.metrics, op.batch = live
    for _ in range(4):
        op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record == superseded
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and "restartPending" not in st
    assert "then, before it started again, spec.model changed from m0 to m1" in st["reason"]
    assert "set a new canaryVersion or create the CanaryRollout again" in st["reason"]
    assert "steps" not in st["reason"].partition("then,")[2]


def test_an_edit_reverted_after_a_lost_supersede_status_still_starts_again(world: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A steps edit superseded v2 at 80/20 (stable 100%, recorded `... it starts again`), the status
    write after it failed, and a GitOps sync reverted the edit before the next tick: the rollout
    stayed aborted for good while its record said it starts again. It starts again."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    left = _lose_status_writes(op, monkeypatch, 1)
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["steps"] = [50, 100]
    _patch_spec(custom, {"policy": pol})
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and left["n"] == 0
    assert record["reason"].endswith(controller_mod.RESTARTS)
    _patch_spec(custom, {"policy": copy.deepcopy(fleet.FAST_POLICY)})
    op.tick()
    weights, again = vs(api, 0)
    assert again["started_at"] > record["started_at"] and again["phase"] in (rl.PENDING, rl.PROGRESSING)
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED


def _rewrite(pol: dict[str, Any], how: str) -> dict[str, Any]:
    pol = copy.deepcopy(pol)
    if how == "checks reordered":
        pol["checks"] = list(reversed(pol["checks"]))
    elif how == "defaults spelled out":
        pol["checks"][0]["hard"] = False
        pol["metrics"]["histograms"] = "classic"
        pol["metrics"]["labels"] = {}
        pol["failure"]["on_deadline"] = "rollback"
    elif how == "keys reordered":
        pol = {k: pol[k] for k in reversed(list(pol))}
        pol["analysis"] = {k: pol["analysis"][k] for k in reversed(list(pol["analysis"]))}
    elif how == "source labels spelled out":
        pol["metrics"]["arm_label"] = "model_version"
        pol["metrics"]["model_label"] = "model_name"
    elif how == "check source spelled out":
        pol["checks"][0]["source"] = "model"
    return pol


@pytest.mark.parametrize("how", ["checks reordered", "defaults spelled out", "keys reordered",
                                 "source labels spelled out", "check source spelled out"])
def test_a_rewrite_that_changes_nothing_judged_keeps_the_rollout(world: Any, how: str) -> None:
    """A re-rendered manifest (Helm, Kustomize, a sorted apply) or labels the source resolves to
    anyway, spelled out: the same queries, the same checks. The rollout carries on; it used to be
    superseded (restarted, or ended for good for the labels) because the policy's text was digested."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = vs(api, 0)
    _patch_spec(custom, {"policy": _rewrite(fleet.FAST_POLICY, how)})
    # its clock held at the step's start: the step cannot end in these ticks however slowly they run (`interval`
    # 5 s: on a loaded machine the good v2 went on to 50/50, which this test is not about)
    op.clock = HeldClock(before[1]["step_started_at"])
    for _ in range(2):
        op.tick()
    weights, record = vs(api, 0)
    assert record["started_at"] == before[1]["started_at"] and record["phase"] == rl.PROGRESSING
    st = _status(custom)
    assert weights == before[0] and st["phase"] == rl.PROGRESSING
    assert st["target"]["judged"] == record["judged"]  # kept in the status too, and the CRD's schema keeps it


def _another_destination_rule(api: Any, name: str) -> dict[str, Any]:
    """DestinationRule `name`: m0's (same host), both subsets selecting v1; returns it as created."""
    dr = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0"))
    dr = {k: v for k, v in dr.items() if k != "status"}
    dr["metadata"] = {"name": name, "namespace": "ml"}
    for s in dr["spec"]["subsets"]:
        s["labels"]["version"] = "v1"
    kc.CustomObjectsApi(api.api_client()).create_namespaced_custom_object(GROUP, "v1beta1", "ml", "destinationrules", dr)
    return api.get(GROUP, "destinationrules", "ml", name)


@pytest.mark.parametrize("recorded", ["by name", "empty (claimed before it was named)"])
def test_a_destination_rule_edit_before_any_status_landed_supersedes_the_rollout(
        world: Any, monkeypatch: pytest.MonkeyPatch, recorded: str) -> None:
    """spec.destinationRule edited (to m0-alt, a DestinationRule of the same host) while v2 has 20% of
    m0 and no status of its rollout has landed. With a status the edit supersedes the rollout; without
    one, what it drove was taken from the record's route and version but the *spec's* DestinationRule:
    the edit went unseen, the tick drove the rollout against m0-alt, re-pointed its subsets (a
    DestinationRule the rollout never claimed written) and aborted blaming a person ("re-pointed ...
    outside the rollout"). The record names the DestinationRule it drove (a record claimed before it
    did says "": the VirtualService's name): superseded, stable 100% on m0, m0-alt never written."""
    api, op, custom = world
    alt = _another_destination_rule(api, "m0-alt")
    _claimed_without_status(op, custom, api, monkeypatch)
    assert vs(api, 0)[1]["destination_rule"] == "m0"  # recorded by the name it resolves to
    if recorded != "by name":
        def older(o: dict[str, Any]) -> None:
            ann = o["metadata"]["annotations"]
            ann["modelcanary.dev/rollout"] = json.dumps({**json.loads(ann["modelcanary.dev/rollout"]),
                                                         "destination_rule": ""})
        api.edit(GROUP, "virtualservices", "ml", "m0", older)
    _patch_spec(custom, {"destinationRule": "m0-alt"})
    _ends_superseded(op, api, "superseded: the DestinationRule changed from m0 to m0-alt")
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and "the DestinationRule changed from m0 to m0-alt" in st["reason"]
    assert "outside the rollout" not in st["reason"]
    assert api.get(GROUP, "destinationrules", "ml", "m0-alt") == alt  # never written


@pytest.mark.parametrize("how", ["spec.route spelled out", "policy.route spelled out", "spec.route dropped",
                                 "spec.route spelled out before any status landed"])
def test_naming_the_route_a_rollout_already_drives_is_no_edit(world: Any, monkeypatch: pytest.MonkeyPatch,
                                                              how: str) -> None:
    """m0's only HTTP route is `primary`. Naming it (spec.route or policy.route) on a rollout claimed
    with no route, or dropping the name from one claimed with it, picks the same route: nothing
    driven or judged changes. It ended the rollout ("superseded: spec.route changed from (none) to
    primary"); it goes on, neither superseded nor started again, and the status names the route
    as the spec now does."""
    api, op, custom = world
    named = how == "spec.route dropped"
    if how.endswith("before any status landed"):
        _claimed_without_status(op, custom, api, monkeypatch)
    else:
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(
            0, "v2", **({"route": "primary"} if named else {})))
        _progressing(op, custom, api)
    before = vs(api, 0)
    assert before[0] == [80, 20] and before[1]["route"] == ("primary" if named else "")
    if how.startswith("policy.route"):
        pol = copy.deepcopy(fleet.FAST_POLICY)
        pol["route"] = "primary"
        _patch_spec(custom, {"policy": pol})
    else:
        _patch_spec(custom, {"route": None if named else "primary"})
    op.clock = HeldClock(before[1]["step_started_at"])  # the step cannot end in these ticks, however slow (as above)
    for _ in range(3):
        op.tick()
    weights, record = vs(api, 0)
    assert record["started_at"] == before[1]["started_at"] and record["phase"] == rl.PROGRESSING, record["reason"]
    assert weights == before[0] and not any("superseded" in str(h) for h in record["history"])
    st = _status(custom)
    assert st["phase"] == rl.PROGRESSING and st["target"]["route"] == ("" if named else "primary")
    op.clock = SystemClock()  # and now it runs to its end
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED and vs(api, 0)[1]["started_at"] == before[1]["started_at"]


def test_naming_another_route_still_ends_the_rollout(world: Any) -> None:
    """m0 has two HTTP routes, `primary` (driven) and `secondary`: spec.route edited to `secondary`
    picks another route, and ends the rollout on `primary` as before (stable 100%, superseded)."""
    api, op, custom = world

    def second_route(o: dict[str, Any]) -> None:
        route = copy.deepcopy(o["spec"]["http"][0])
        route["name"] = "secondary"
        route["match"] = [{"headers": {"x-lane": {"exact": "b"}}}]
        o["spec"]["http"].append(route)
    api.edit(GROUP, "virtualservices", "ml", "m0", second_route)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    _patch_spec(custom, {"route": "secondary"})
    _ends_superseded(op, api, "superseded: spec.route changed from primary to secondary")
    assert _status(custom)["phase"] == rl.ABORTED


def _ends_superseded(op: Any, api: Any, reason: str) -> None:
    """Three ticks after an edit: m0 at stable 100%, its record aborted with a reason starting `reason`."""
    for _ in range(3):
        op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
    assert record["reason"].startswith(reason), record["reason"]


@pytest.mark.parametrize("stable", ["v3", "v2"], ids=["another version", "the canary version"])
def test_a_stable_version_edited_mid_rollout_supersedes_the_rollout(world: Any, stable: str) -> None:
    """spec.stableVersion v1 -> v3 (or -> v2, the canary version itself) while v2 has 20%: the edit was
    ignored, Ready True, and v2 was promoted over v1 under a spec naming another stable version, where
    the same spec is refused before any claim. Now an edit of what the canary is compared against,
    as of how it is judged: stable 100%, and the spec's rollout starts again, refused while the stable
    subset selects another version (Ready False, naming it); the edit reverted, it runs from the first
    step. A stableVersion spelled out as what the rollout already compares against is no edit."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = vs(api, 0)[1]["started_at"]
    _patch_spec(custom, {"stableVersion": "v1"})  # what the stable subset selects: the same rollout
    op.tick()
    assert vs(api, 0)[1]["started_at"] == before and vs(api, 0)[1]["phase"] == rl.PROGRESSING
    _patch_spec(custom, {"stableVersion": stable})
    _ends_superseded(op, api, f"superseded: spec.stableVersion changed from v1 to {stable} mid-rollout; it starts again")
    ready = next(c for c in _status(custom)["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] in ("TargetError", "ConfigError"), ready
    assert (f"not the stable version {stable}" if stable == "v3" else "already the stable version") in ready["message"]
    assert vs(api, 0)[0] == [100, 0]
    assert _status(custom).get("restartPending") is True
    _patch_spec(custom, {"stableVersion": "v1"})
    op.tick()  # claimed again: the status no longer shows the superseded end
    assert vs(api, 0)[1]["phase"] in (rl.PENDING, rl.PROGRESSING) and vs(api, 0)[1]["started_at"] > before
    objs = run_until_done(op, custom, ["r0"])
    weights, record = vs(api, 0)
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED and record["started_at"] > before
    assert [h.get("weights") for h in record["history"]].count("80/20") >= 1


def test_a_restart_refused_in_a_process_that_never_saw_its_supersede_still_waits_for_the_spec(
        world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """spec.stableVersion edited to v3 mid-rollout: superseded to start again (stable 100%), but that
    status write failed and the controller restarted. The new process's claim of the restart is refused
    (the stable subset selects v1, not v3), and its failed tick read the route's superseded end as the
    rollout's end: status `aborted` with no `restartPending`, Ready True, and the spec fixed back to v1
    never ran again (edit canaryVersion or re-create the CR). The pending restart is kept: Ready False
    naming the refusal, and once the spec is fixed the rollout starts again from its first step."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = vs(api, 0)[1]["started_at"]
    _patch_spec(custom, {"stableVersion": "v3"})
    _lose_status_writes(op, monkeypatch, 1)
    op.tick()
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.PROGRESSING  # its status write lost
    restarted = _fresh(op)
    for _ in range(2):
        restarted.tick()
    st = _status(custom)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert st.get("restartPending") is True and ready["status"] == "False", (st.get("phase"), ready)
    assert "not the stable version v3" in ready["message"] and vs(api, 0)[0] == [100, 0]
    _patch_spec(custom, {"stableVersion": None})
    restarted.tick()
    weights, record = vs(api, 0)
    assert record["started_at"] > before and record["phase"] in (rl.PENDING, rl.PROGRESSING), record["phase"]


def test_an_edit_of_a_paused_rollouts_steps_waits_for_its_resume(world: Any, tmp_path: Any) -> None:
    """On-call paused r0 at 80/20 (`canary pause`); a GitOps sync then changes its policy's steps. The
    supersede's restart claimed the route again and gave the canary its new first step at once (90/10,
    progressing): the person's hold undone by an edit nobody asked to resume. It waits now, paused at the
    weights held, said once per generation (`rollout.edit_waits`); resumed, the next tick supersedes it
    before any look and it starts again from its first step (decision 527)."""
    from structlog.testing import capture_logs

    api, op, custom = world
    before = _paused_then_steps_edited(api, op, custom, tmp_path)
    with capture_logs() as logs:
        op = _fresh(op)  # its logger made under the capture
        for _ in range(2):
            op.tick()
    weights, record = vs(api, 0)
    assert weights == [80, 20] and record["phase"] == rl.PAUSED and record["started_at"] == before, [(e["event"], e.get("reason")) for e in logs]
    waits = [e for e in logs if e["event"] == "rollout.edit_waits"]
    assert len(waits) == 1 and "steps" in waits[0]["edit"], waits
    _oncall(api, tmp_path, "resume")
    op.tick()
    weights, record = vs(api, 0)
    assert record["started_at"] > before and record["phase"] in (rl.PENDING, rl.PROGRESSING), record["phase"]
    events = [e["message"] for e in api.list("", "events", "ml") if e["reason"] == "RolloutAborted"]
    assert weights in ([100, 0], [90, 10]) and any("superseded: the policy's steps changed" in m for m in events)


def _paused_then_steps_edited(api: Any, op: Any, custom: Any, tmp_path: Any) -> float:
    """r0 (v2) at its first step (80/20), paused by on-call (`canary pause`), then its policy's steps edited
    ([20, 50, 100] -> [10, 60, 100]); the record's started_at."""
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _oncall(api, tmp_path, "pause")
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["steps"] = [10, 60, 100]
    _patch_spec(custom, {"policy": policy})
    return float(vs(api, 0)[1]["started_at"])


def _oncall(api: Any, tmp_path: Any, command: str, *args: str) -> str:
    """`canary <command> m0 -n ml <args>` as on-call runs it; exit 0; its stdout."""
    from typer.testing import CliRunner

    from canary.cli import app

    kubeconfig = str(fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url))
    res = CliRunner().invoke(app, [command, "m0", "-n", "ml", "--kubeconfig", kubeconfig, *args], env={"KUBECONFIG": ""})
    assert res.exit_code == 0, res.output
    return res.stdout


def _second_route(o: dict[str, Any]) -> None:
    route = copy.deepcopy(o["spec"]["http"][0])
    route["name"] = "secondary"
    route["match"] = [{"headers": {"x-lane": {"exact": "b"}}}]
    for d, w in zip(route["route"], (100, 0)):
        d["weight"] = w
    o["spec"]["http"].append(route)


ROUTE_EDITS = {  # the edit, what `rollout.edit_waits` names, and whether the resume claims the spec's rollout after
    "spec.destinationRule": ({"destinationRule": "m0-copy"}, "the DestinationRule changed from m0 to m0-copy", False),
    "spec.route": ({"route": "secondary"}, "spec.route changed from primary to secondary", False),
    "spec.canaryVersion": ({"canaryVersion": "v3"}, "spec.canaryVersion changed from v2 to v3", True),
    "spec.virtualService": ({"virtualService": "m1", "destinationRule": "m1", "route": None},
                            "spec.virtualService changed from m0 to m1, spec.route changed from primary to (none), "
                            "the DestinationRule changed from m0 to m1", False),
}


@pytest.mark.parametrize("field", list(ROUTE_EDITS))
def test_an_edit_of_what_a_paused_rollout_drives_waits_for_its_resume(world: Any, tmp_path: Any, field: str) -> None:
    """On-call paused r0 at 80/20; a GitOps sync then changes what it drives (its DestinationRule, its route, its
    canary version). The supersede sent stable 100% at once (and for a new version claimed it at its first step):
    the hold undone by an edit nobody asked to resume, as decision 527 found for an edit of how it is judged. It
    waits now, paused at its weights, said once (`rollout.edit_waits`) and in `status.editWaiting`; resumed, the
    next tick supersedes it (decision 537)."""
    from structlog.testing import capture_logs

    api, op, custom = world
    patch, said, claims = ROUTE_EDITS[field]
    api.edit(GROUP, "virtualservices", "ml", "m0", _second_route)
    dr = {k: v for k, v in copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0")).items() if k != "status"}
    dr["metadata"] = {"name": "m0-copy", "namespace": "ml"}
    kc.CustomObjectsApi(api.api_client()).create_namespaced_custom_object(GROUP, "v1beta1", "ml", "destinationrules", dr)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    before = vs(api, 0)[1]["started_at"]
    _oncall(api, tmp_path, "pause", "--route", "primary")
    _patch_spec(custom, patch)
    with capture_logs() as logs:
        op = _fresh(op)  # its logger made under the capture
        for _ in range(2):
            op.tick()
    weights, record = vs(api, 0)
    assert weights == [80, 20] and record["phase"] == rl.PAUSED and record["started_at"] == before, \
        [(e["event"], e.get("reason")) for e in logs]
    waits = [e for e in logs if e["event"] == "rollout.edit_waits"]
    assert len(waits) == 1 and waits[0]["edit"] == said, waits
    st = _status(custom)
    assert st["editWaiting"]["edit"] == said and st["phase"] == rl.PAUSED and st["target"]["virtualService"] == "m0"
    _oncall(api, tmp_path, "resume", "--route", "primary")
    op.tick()
    weights, record = vs(api, 0)
    if claims:  # the spec's v3 claimed on m0 once v2 was sent to stable 100%
        assert record["canary_version"] == "v3" and record["phase"] in (rl.PENDING, rl.PROGRESSING), record
        assert record["history"][0]["reason"].startswith(f"superseded: {said}"), record["history"][0]
    else:
        assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["reason"].startswith(f"superseded: {said}")
    assert "editWaiting" not in _status(custom)


def test_status_and_resume_say_the_edit_that_waits_for_the_resume(world: Any, tmp_path: Any) -> None:
    """r0 paused at 80/20, its steps edited: the edit waits for the resume (decision 527). `canary status` showed
    the paused split and "`canary resume` goes on", nothing of the edit; `canary resume` printed "progressing ...
    the controller goes on with it" while the next tick sent stable 100% and started the rollout again from its
    first step. Both say the edit now, and what the resume makes of it, in text and in `-o json` (decision 538)."""
    api, op, custom = world
    _paused_then_steps_edited(api, op, custom, tmp_path)
    op.tick()
    then = controller_mod.RESUMED_RESTARTS
    text = _oncall(api, tmp_path, "status")
    assert "an edit of CanaryRollout ml/r0 waits for the resume (the policy's steps changed)" in text, text
    assert f"`canary resume` applies it: {then}" in text
    shown = json.loads(_oncall(api, tmp_path, "status", "-o", "json"))
    assert shown["edit_waiting"] == {"edit": "the policy's steps changed", "then": then, "canary_rollout": "ml/r0"}
    resumed = json.loads(_oncall(api, tmp_path, "resume", "-o", "json"))
    assert resumed["edit_waiting"] == shown["edit_waiting"], resumed
    assert resumed["note"] == ("the controller now applies the edit of CanaryRollout ml/r0 that waited for this "
                               f"resume (the policy's steps changed): {then}")
    op.tick()
    assert vs(api, 0)[1]["phase"] in (rl.PENDING, rl.PROGRESSING) and "editWaiting" not in _status(custom)
    assert "edit_waiting" not in json.loads(_oncall(api, tmp_path, "status", "-o", "json"))


def test_status_and_resume_say_an_edit_the_controller_has_not_read_yet(world: Any, tmp_path: Any) -> None:
    """r0 paused at 80/20, its steps edited, and no tick since (the controller down, restarting, behind): the
    status's editWaiting (none, or an earlier edit's) is not what the resume will meet, so `canary status` said
    nothing and `canary resume` said "the controller goes on with it (run by CanaryRollout ml/r0)" while its next
    tick sent stable 100% and started the rollout again. Both say now that the spec was edited since the controller
    last read it, and that the controller's next tick decides (decision 538's addendum)."""
    api, op, custom = world
    _paused_then_steps_edited(api, op, custom, tmp_path)  # no tick since the edit
    text = _oncall(api, tmp_path, "status")
    assert "CanaryRollout ml/r0 was edited since the controller last read it" in text, text
    resumed = json.loads(_oncall(api, tmp_path, "resume", "-o", "json"))
    assert "edited since the controller last read it" in resumed["note"] and "goes on" not in resumed["note"], resumed
    assert resumed["edit_waiting"]["unread"] is True, resumed
    op.tick()
    assert vs(api, 0)[1]["started_at"] > resumed["started_at"]  # superseded: started again, as the note warned


def test_an_edit_waiting_is_written_once_where_a_crd_older_than_the_field_prunes_it(world: Any,
                                                                                     tmp_path: Any) -> None:
    """`status.editWaiting` under a CRD older than the field: the API server prunes it, and a write that
    compared with the status read would send it again at every tick of the pause. Once per edit and
    generation in a process (decision 538)."""
    api, op, custom = world
    _paused_then_steps_edited(api, op, custom, tmp_path)
    real, sent = op._patch_status, []

    def counted(obj: dict[str, Any], status: dict[str, Any]) -> None:
        sent.extend([status["editWaiting"]] if "editWaiting" in status else [])
        real(obj, status)

    op._patch_status = counted
    for _ in range(4):
        op.tick()
        api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: (o.get("status") or {}).pop("editWaiting", None))
    assert len(sent) == 1 and sent[0]["edit"] == "the policy's steps changed", sent
    assert vs(api, 0)[0] == [80, 20]


class _Posts:
    """The webhook posts the controller queues (`notify`): (event, payload)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, payload: Any) -> None:
        self.got.append((event, payload))


def _end_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("rollout.aborting", "rollout.aborted")]


@pytest.mark.parametrize("memory", ["same process", "restarted process"])
def test_a_refused_edit_to_another_model_ends_the_rollout_it_ran_naming_it(world: Any, memory: str) -> None:
    """spec.model edited m0 -> m1 mid-rollout with `virtualService: ""` (refused, decision 768): stable 100% on m0.
    Its lines said `end_cause: infrastructure` and `reason: failed: <the refusal>` (a person's edit read as an
    outage), and a restarted process named the edited model beside the ended rollout's VirtualService (model=m1,
    virtual_service=m0), in its post too. Every line and post names m0's rollout, the edit and the operator's class
    (decisions 800, 801)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _patch_spec(custom, {"model": "m1", "virtualService": ""})
    runner = op if memory == "same process" else _fresh(op)
    runner.notifier = posts = _Posts()
    with structlog.testing.capture_logs() as logs:
        runner.tick()
    assert vs(api, 0)[0] == [100, 0]
    lines = _end_lines(logs)
    assert [e["event"] for e in lines] == ["rollout.aborting", "rollout.aborted"], logs
    for e in lines:
        assert (e["model"], e["virtual_service"], e["end_cause"]) == ("m0", "m0", "operator"), e
        assert e["reason"].startswith(f"{rl.REFUSED_EDIT} (spec.virtualService changed from m0 to m1, "), e
        assert "spec.model changed from m0 to m1): CanaryRollout ml/r0: spec.virtualService is given empty" \
            in e["reason"], e
    assert lines[-1]["next"].startswith("not the canary: the CanaryRollout's spec was edited mid-rollout")
    assert posts.got and all(p["model"] == "m0" and p["virtual_service"] == "m0" for _, p in posts.got), posts.got
    st, (_, record) = _status(custom), vs(api, 0)
    assert st["endCause"] == "operator" and st["reason"] == lines[-1]["reason"]
    assert record["model"] == "m0" and record["end_cause"] == "operator"


def test_a_superseding_route_edit_names_the_ended_rollouts_model(world: Any) -> None:
    """spec.model (and with it the VirtualService) edited m0 -> m1 mid-rollout: the supersede's stable 100% on m0
    said model=m1 beside virtual_service=m0 (the `_rescue` target took the edited spec's model), in its post too."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _patch_spec(custom, {"model": "m1"})
    op.notifier = posts = _Posts()
    with structlog.testing.capture_logs() as logs:
        op.tick()
    lines = _end_lines(logs)
    assert [e["event"] for e in lines] == ["rollout.aborting", "rollout.aborted"], logs
    for e in lines:
        assert (e["model"], e["virtual_service"], e["end_cause"]) == ("m0", "m0", "operator"), e
        assert e["reason"].startswith("superseded: spec.virtualService changed from m0 to m1"), e
    assert posts.got and all(p["model"] == "m0" for _, p in posts.got), posts.got

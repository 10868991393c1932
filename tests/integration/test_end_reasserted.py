"""A finished CanaryRollout whose route is re-created or edited split with no process driving it (decision 164),
against the strict API emulator and a real (backfilled) Prometheus. Its VirtualService is put back from an old
copy at 80/20 with no rollout record, or edited to 80/20 under this CR's ended record: Ready read True while the
canary had 20% that nothing judged. Argo Rollouts re-asserts the desired weights at every reconcile of a Rollout
it owns; Flagger re-asserts its VirtualService. Here: stable 100% on the route the CR names, guarded on the
record read, one `rollout.end_reasserted` line, nothing claimed or run again; another route of that
VirtualService split with the canary subset ends as a rollback ends it (decision 633), another VirtualService
split the same is left as it is.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import GROUP, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_route_deleted import _delete, _ticks
from tests.integration.test_ready_route_again import watched  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
ANN = "modelcanary.dev/rollout"


def _route(api: Any, name: str, i: int = 0) -> list[int]:
    obj = api.get(GROUP, "virtualservices", "ml", fleet.model(i))
    route = next(r for r in obj["spec"]["http"] if r.get("name") == name)
    return [d["weight"] for d in route["route"]]


def _split(o: dict[str, Any], weights: tuple[int, int] = (80, 20), name: str = "primary") -> None:
    route = next(r for r in o["spec"]["http"] if r.get("name") == name)
    for d, w in zip(route["route"], weights):
        d["weight"] = w


def _with_shadow(o: dict[str, Any]) -> None:
    """A second http route beside `primary` (a header-matched copy of it: the rollout's service and subsets), split
    50/50."""
    shadow = copy.deepcopy(o["spec"]["http"][0])
    shadow["name"] = "shadow"
    shadow["match"] = [{"headers": {"x-shadow": {"exact": "1"}}}]
    o["spec"]["http"].insert(0, shadow)
    _split(o, (50, 50), "shadow")


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}


def _ready(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st.get("conditions") or [] if c["type"] == "Ready")


def _finished(api: Any, op: Any, custom: Any) -> FakeClock:
    """r0 (route `primary` of m0) runs its first step, is rolled back by an operator and settles: 100/0, its
    ended record on the route, Ready True."""
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 3)
    st = _status(custom)
    assert st["phase"] == rl.ROLLED_BACK and _route(api, "primary") == [100, 0] and _ready(st)["status"] == "True"
    return clock


def _no_second_rollout(logs: list[dict[str, Any]]) -> None:
    assert not [e["event"] for e in logs if e["event"] in ("rollout.started", "step.advanced", "subset.pointed",
                                                           "rollout.aborting", "rollback.started")], logs


@pytest.mark.parametrize("how", ["re-created without a record", "edited under its ended record"])
def test_a_finished_canary_rollouts_route_split_again_goes_to_stable_with_no_split_to_its_canary_left(
        world: Any, how: str) -> None:
    api, op, custom = world
    clock = _finished(api, op, custom)
    ended = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"][ANN]
    _edit_other = api.edit(GROUP, "virtualservices", "ml", "m1", _split_first)  # another VirtualService, split
    assert [d["weight"] for d in _edit_other["spec"]["http"][0]["route"]] == [80, 20]
    if how == "re-created without a record":
        with api.handler.lock:
            old = copy.deepcopy(api.handler.objects[(GROUP, "virtualservices", "ml", "m0")])
        old["metadata"].pop("resourceVersion", None)
        old["metadata"]["annotations"].pop(ANN)
        _split(old)
        _with_shadow(old)
        _delete(api, "virtualservices", "m0")
        api.handler.put_object(old)
    else:
        api.edit(GROUP, "virtualservices", "ml", "m0", lambda o: (_split(o), _with_shadow(o)))
    assert _route(api, "primary") == [80, 20]
    rv = _status(custom)
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    assert _route(api, "primary") == [100, 0], "the route the CR names goes to stable"
    # its split with the canary subset (which selects the version nobody judges) ends as a rollback's (633)
    assert _route(api, "shadow") == [100, 0], "another route's split with the canary is not left"
    other = api.get(GROUP, "virtualservices", "ml", "m1")["spec"]["http"][0]["route"]
    assert [d["weight"] for d in other] == [80, 20], "another VirtualService is not touched"
    annotations = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"].get("annotations") or {}
    assert annotations.get(ANN) == (None if how.startswith("re-created") else ended), "the record is left as it is"
    lines = [e for e in logs if e["event"] == "rollout.end_reasserted"]
    assert len(lines) == 1, [e["event"] for e in logs]
    line = lines[0]
    assert line["log_level"] == "warning" and line["written"] is True and line["from_weights"] == "80/20", line
    assert line["routes"] == ["http[0] (shadow): its split with the canary ended, stable 100%"], line
    assert line["recorded_phase"] == ("none" if how.startswith("re-created") else rl.ROLLED_BACK), line
    assert line["rollout"] == "ml/r0" and line["virtual_service"] == "m0" and line["route"] == "primary", line
    _no_second_rollout(logs)
    st = _status(custom)
    assert st["phase"] == rl.ROLLED_BACK and _ready(st)["status"] == "True" and st == rv


def test_a_route_put_back_from_a_copy_taken_mid_rollout_under_ready_true_is_ended_as_restored(world: Any) -> None:
    """The copy was taken while this CR's rollout had 20% (its record in progress); the CR ended normally
    (Ready True), then the copy is applied: nothing drives that record. Stable 100% and the record ended
    aborted (`rollout.restored_split`), never a second rollout."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    with api.handler.lock:
        backup = copy.deepcopy(api.handler.objects[(GROUP, "virtualservices", "ml", "m0")])
    backup["metadata"].pop("resourceVersion", None)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 3)
    assert _status(custom)["phase"] == rl.ROLLED_BACK and _ready(_status(custom))["status"] == "True"
    api.handler.put_object(backup)
    assert vs(api, 0)[0] == [80, 20] and vs(api, 0)[1]["phase"] == rl.PROGRESSING
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, record
    events = [e["event"] for e in logs]
    assert events.count("rollout.restored_split") == 1 and "rollout.end_reasserted" not in events, events
    assert "rollout.started" not in events and "step.advanced" not in events, events
    assert _status(custom)["phase"] == rl.ROLLED_BACK and _ready(_status(custom))["status"] == "True"


def _split_first(o: dict[str, Any]) -> None:
    for d, w in zip(o["spec"]["http"][0]["route"], (80, 20)):
        d["weight"] = w


def test_a_refused_write_is_said_and_tried_again_at_the_next_tick(world: Any) -> None:
    """The VirtualService's writes refused (403): `rollout.end_reasserted` at error, `written: false`, traffic
    split; once writes are accepted, the next tick writes stable 100%."""
    api, op, custom = world
    clock = _finished(api, op, custom)
    api.edit(GROUP, "virtualservices", "ml", "m0", _split)
    api.fail_next(403, times=1000, plural="virtualservices")
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    assert _route(api, "primary") == [80, 20]
    [line] = [e for e in logs if e["event"] == "rollout.end_reasserted"]
    assert line["log_level"] == "error" and line["written"] is False and "403" in line["error"], line
    with api.handler.lock:
        api.handler.faults.clear()
    _ticks(op, clock, 1)
    assert _route(api, "primary") == [100, 0]


@pytest.mark.parametrize("case", ["another owner's rollout in progress", "one version on both subsets"])
def test_another_owners_rollout_or_a_split_of_one_version_is_left_alone(world: Any, case: str) -> None:
    """A split under another owner's rollout in progress is theirs; a weight beside the same version on both
    subsets splits nothing (as `canary.unowned` reads it): nothing written, no line."""
    api, op, custom = world
    clock = _finished(api, op, custom)

    def foreign(o: dict[str, Any]) -> None:
        _split(o)
        rec = rl.RolloutState.from_json(o["metadata"]["annotations"][ANN])
        other = rl.RolloutState(**{**rec.__dict__, "phase": rl.PROGRESSING, "owner": "promote#host:1:x",
                                   "started_at": rec.started_at + 1})
        o["metadata"]["annotations"][ANN] = other.to_json()

    def one_version(o: dict[str, Any]) -> None:
        next(s for s in o["spec"]["subsets"] if s["name"] == "canary")["labels"]["version"] = "v1"

    if case.startswith("another owner"):
        api.edit(GROUP, "virtualservices", "ml", "m0", foreign)
    else:
        api.edit(GROUP, "destinationrules", "ml", "m0", one_version)
        api.edit(GROUP, "virtualservices", "ml", "m0", _split)
    writes = len(api.writes)
    with capture_logs() as logs:
        _ticks(op, clock, 2)
    assert _route(api, "primary") == [80, 20]
    assert not [e for e in logs if e["event"] == "rollout.end_reasserted"]
    assert [w for w in api.writes[writes:] if "virtualservices" in w[1]] == []


def test_with_watches_the_edit_wakes_the_finished_canary_rollout_and_stable_gets_100(watched: Any) -> None:
    """From the informers' cache a finished CanaryRollout is due only on a change of its objects: the
    VirtualService edited to 80/20 wakes it, and the tick that change brings writes stable 100% (no time
    passes)."""
    from tests.integration.test_controller_watch import caught_up, create, status, step

    api, op, clock = watched
    create(api, 0, "v2", route="primary")
    for _ in range(20):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _route(api, "primary")[1] > 0:
            break
    api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["spec"].update(action="rollback", actionReason="pager"))
    for _ in range(10):
        step(api, op, clock)
    assert status(api, "r0")["phase"] == rl.ROLLED_BACK and _route(api, "primary") == [100, 0]
    caught_up(api, op)
    assert op.queue.due_at("ml/r0") == float("inf"), "finished: due only when one of its objects changes"
    api.edit(GROUP, "virtualservices", "ml", "m0", _split)
    with capture_logs() as logs:
        for _ in range(3):
            step(api, op, clock, dt=0.0)
    assert _route(api, "primary") == [100, 0]
    assert [e["event"] for e in logs].count("rollout.end_reasserted") == 1, [e["event"] for e in logs]
    _no_second_rollout(logs)
    assert status(api, "r0")["phase"] == rl.ROLLED_BACK


def test_with_watches_a_refused_write_is_tried_again_with_no_change(watched: Any) -> None:
    """From the cache, a finished CanaryRollout is due only on a change; its stable-100% write refused (403) must
    not wait for another change: it is due again with the queue's backoff, and lands once writes are accepted."""
    from tests.integration.test_controller_watch import caught_up, create, status, step

    api, op, clock = watched
    create(api, 0, "v2", route="primary")
    for _ in range(20):
        step(api, op, clock)
        if status(api, "r0").get("phase") == rl.PROGRESSING and _route(api, "primary")[1] > 0:
            break
    api.edit(crd.GROUP, crd.PLURAL, "ml", "r0", lambda o: o["spec"].update(action="rollback", actionReason="pager"))
    for _ in range(10):
        step(api, op, clock)
    assert status(api, "r0")["phase"] == rl.ROLLED_BACK
    api.fail_next(403, times=1000, plural="virtualservices")
    api.edit(GROUP, "virtualservices", "ml", "m0", _split)
    for _ in range(3):
        step(api, op, clock, dt=0.0)
    assert _route(api, "primary") == [80, 20]
    assert op.queue.due_at("ml/r0") < float("inf"), "a failed write is due again, not only on a change"
    with api.handler.lock:
        api.handler.faults.clear()
    caught_up(api, op)
    for _ in range(30):
        step(api, op, clock, dt=5.0)  # time passes, nothing changes
        if _route(api, "primary") == [100, 0]:
            break
    assert _route(api, "primary") == [100, 0]


def test_a_reasserted_end_drops_the_mirrors_to_the_canary_as_a_rollback_does(world: Any) -> None:
    """The route put back 80/20 with `mirror: {subset: canary}` on it and on a gRPC route beside it: stable 100%
    on the route the CR names left both routes shadowing the canary subset, which still selects the rolled-back
    version, where every rollback removes them (decisions 78 c, 577). Now the re-asserted end drops them as a
    rollback does (decision 612): on its route every mirror to a subset of the service but `stable`, on another
    route only the canary's (584: subset `shadow`'s stays); another route's split with the canary ends too (633)."""
    api, op, custom = world
    clock = _finished(api, op, custom)
    grpc = {"name": "grpc", "match": [{"port": 8001}],
            "route": [{"destination": {"host": "m0", "subset": "stable"}}],
            "mirror": {"host": "m0", "subset": "canary"}, "mirrorPercentage": {"value": 50.0},
            "mirrors": [{"destination": {"host": "m0", "subset": "shadow"}},
                        {"destination": {"host": "m0", "subset": "canary"}}]}

    def restored(o: dict[str, Any]) -> None:
        _split(o)
        _with_shadow(o)
        primary = next(r for r in o["spec"]["http"] if r.get("name") == "primary")
        primary.update(mirror={"host": "m0", "subset": "canary"}, mirrorPercentage={"value": 100.0})
        o["spec"]["http"].insert(0, copy.deepcopy(grpc))

    api.edit(GROUP, "virtualservices", "ml", "m0", restored)
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    http = {r["name"]: r for r in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]}
    assert _route(api, "primary") == [100, 0] and _route(api, "shadow") == [100, 0]
    assert not {"mirror", "mirrorPercentage"} & set(http["primary"]), http["primary"]
    kept = {k: v for k, v in grpc.items() if k not in ("mirror", "mirrorPercentage")}
    assert http["grpc"] == {**kept, "mirrors": grpc["mirrors"][:1]}, http["grpc"]
    [line] = [e for e in logs if e["event"] == "rollout.end_reasserted"]
    assert line["written"] is True and line["routes"] == [
        "http[0] (grpc): its mirror to the canary removed",
        "http[1] (shadow): its split with the canary ended, stable 100%",
        "http[2] (primary): its mirror to the canary removed"], line
    _no_second_rollout(logs)


@pytest.mark.parametrize("ended", ["rolled back, then its ConfigMap deleted", "ended by its ConfigMap's deletion"])
def test_a_route_put_back_mid_rollout_after_the_policy_configmap_went_is_ended_as_restored(world: Any,
                                                                                           ended: str) -> None:
    """As above, the CR's policy in a ConfigMap deleted (a namespace tidied, a Helm release uninstalled), after the
    end (Ready True) or mid-rollout, which ended it (Ready False, `_ready_again`'s): `_end_restored` needs the spec
    parsed, and its refusal was swallowed, every tick, with no word: the canary kept 20% judged by nobody. Stable
    needs no policy: stable 100% (review r-ag, decision 792)."""
    import yaml

    api, op, custom = world
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pol", "namespace": "ml"},
                            "data": {"policy.yaml": yaml.safe_dump(fleet.FAST_POLICY)}})
    obj = fleet.rollout_object(0, "v2", route="primary")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    _progressing(op, custom, api)
    with api.handler.lock:
        backup = copy.deepcopy(api.handler.objects[(GROUP, "virtualservices", "ml", "m0")])
        pol = api.handler.objects[("", "configmaps", "ml", "pol")]
    backup["metadata"].pop("resourceVersion", None)
    op.clock = clock = FakeClock(time.time())
    if ended.startswith("rolled back"):
        custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                              {"spec": {"action": "rollback", "actionReason": "pager"}})
        _ticks(op, clock, 3)
    with api.handler.lock:
        api.handler._delete(("", "configmaps", "ml", "pol"), pol)
    _ticks(op, clock, 3)
    phase = rl.ROLLED_BACK if ended.startswith("rolled back") else rl.ABORTED
    assert _status(custom)["phase"] == phase and vs(api, 0)[0] == [100, 0]
    assert _ready(_status(custom))["status"] == ("True" if ended.startswith("rolled back") else "False")
    api.handler.put_object(backup)
    assert vs(api, 0)[0] == [80, 20] and vs(api, 0)[1]["phase"] == rl.PROGRESSING
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, (weights, record)
    events = [e["event"] for e in logs]
    assert events.count("rollout.restored_split") == 1, events
    assert "rollout.started" not in events and "step.advanced" not in events, events
    assert _status(custom)["phase"] == phase

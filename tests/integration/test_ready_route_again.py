"""A CanaryRollout's route objects missing, renamed or restored (decision 158), against the strict API emulator
and a real (backfilled) Prometheus.

Decision 155 re-checked a finished CanaryRollout whose Ready was False for a spec that did not parse. Ready False
for its route's objects (`NotFound`: its VirtualService or DestinationRule missing; `RouteNotFound`: the http
route it names renamed away) stayed False for good once the object was back: a finished CR is `_settled` and
nothing read its route again. Argo Rollouts re-validates the referenced VirtualService at every reconcile and
clears `InvalidSpec` once it reads; Flagger retries its router at every interval. Here the re-check is the tick's
first two steps (parse, read the route): Ready True once both read, one status write and one `rollout.ready_again`
line, the end kept, nothing run again. A VirtualService restored as it was mid-rollout (a backup) carries this CR's
rollout in progress at 80/20 with nobody driving it: stable 100% first.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Iterator

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from canary.controller import _of_route
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_route_deleted import _delete

pytestmark = pytest.mark.integration


def _obj(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")


def _status(custom: Any) -> dict[str, Any]:
    return _obj(custom).get("status") or {}


def _ready(custom: Any) -> dict[str, Any]:
    return next(c for c in _status(custom)["conditions"] if c["type"] == "Ready")


def _rv(custom: Any) -> str:
    return str(_obj(custom)["metadata"]["resourceVersion"])


def _saved(api: Any, plural: str) -> dict[str, Any]:
    """A copy of route object m0 as it is now (a backup), to put back later as `kubectl apply` would."""
    with api.handler.lock:
        obj = copy.deepcopy(api.handler.objects[(GROUP, plural, "ml", "m0")])
    obj["metadata"].pop("resourceVersion", None)
    return obj


def _ticks(op: Any, clock: FakeClock, n: int) -> None:
    for _ in range(n):
        clock.t += 1.0
        op.tick()


def _rename_route(api: Any, old: str, new: str) -> None:
    obj = _saved(api, "virtualservices")
    for route in obj["spec"]["http"]:
        if route.get("name") == old:
            route["name"] = new
    api.handler.put_object(obj)


def _ended_for_good(api: Any, custom: Any, logs: list[dict[str, Any]]) -> None:
    """The end stays: stable 100%, the route's record and the CR's status aborted, nothing started or moved."""
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, (weights, record.get("phase"))
    assert _status(custom)["phase"] == rl.ABORTED
    rolled = next(c for c in _status(custom)["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True"
    assert not [e for e in logs if e["event"] in ("rollout.started", "step.advanced", "subset.pointed")], logs


def _ready_again_once(api: Any, op: Any, custom: Any, clock: FakeClock, *, named: str) -> list[dict[str, Any]]:
    """Ticks after the object came back: Ready True at the first, with one status write and one
    `rollout.ready_again` line over four ticks, and no write to the route."""
    writes = len(api.writes)
    with capture_logs() as logs:
        _ticks(op, clock, 1)
        rv = _rv(custom)
        _ticks(op, clock, 3)
    ready = _ready(custom)
    assert (ready["status"], ready["reason"]) == ("True", "Reconciled"), ready
    assert "its route reads again" in ready["message"] and named in ready["message"], ready
    assert "stays aborted" in ready["message"] and "edit the spec" in ready["message"], ready
    assert _rv(custom) == rv, "one status write when Ready changed, none after"
    assert [e["event"] for e in logs].count("rollout.ready_again") == 1, [e["event"] for e in logs]
    assert [w for w in api.writes[writes:] if "canaryrollouts" not in w[1]] == [], "nothing written to the route"
    return logs


def test_a_canary_rollout_created_before_its_route_waits_and_starts_once_every_object_is_there(world: Any) -> None:
    """GitOps applied the CanaryRollout before its VirtualService and DestinationRule. It waits (Ready False naming
    the missing object, one `rollout.invalid` line, nothing claimed), the message follows what is still missing,
    and it starts once both exist, with no restart. No traffic moves before every check passed: with the
    VirtualService there and the DestinationRule not, the route stays 100/0 and unclaimed."""
    api, op, custom = world
    vs_backup, dr_backup = _saved(api, "virtualservices"), _saved(api, "destinationrules")
    _delete(api, "virtualservices", "m0")
    _delete(api, "destinationrules", "m0")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    assert not _status(custom).get("phase")
    ready = _ready(custom)
    assert (ready["status"], ready["reason"]) == ("False", "NotFound") and ready["message"].startswith(
        "ml/m0 (virtualservices): not found"), ready
    assert [e["event"] for e in logs].count("rollout.invalid") == 1, [e["event"] for e in logs]
    api.handler.put_object(vs_backup)  # the VirtualService lands first
    _ticks(op, clock, 2)
    route = api.get(GROUP, "virtualservices", "ml", "m0")
    assert [d["weight"] for d in route["spec"]["http"][0]["route"]] == [100, 0]
    assert "modelcanary.dev/rollout" not in (route["metadata"].get("annotations") or {}), "claimed without its rule"
    assert not _status(custom).get("phase")
    assert _ready(custom)["message"].startswith("ml/m0 (destinationrules): not found"), _ready(custom)
    api.handler.put_object(dr_backup)
    with capture_logs() as logs:
        _ticks(op, clock, 2)
    assert _status(custom)["phase"] == rl.PROGRESSING and vs(api, 0)[0] == [80, 20]
    assert _ready(custom)["status"] == "True", _ready(custom)
    events = [e["event"] for e in logs]
    assert events.index("metrics.preflight_passed") < events.index("rollout.started") < events.index("step.advanced")


@pytest.mark.parametrize("process", ["same process", "restarted"])
def test_a_destination_rule_deleted_mid_rollout_then_restored_leaves_ready_true_once(world: Any,
                                                                                      process: str) -> None:
    """Mid-rollout the DestinationRule is deleted: stable 100% (the VirtualService can still be routed), aborted,
    Ready False `NotFound` naming the DestinationRule; nothing written while it stays gone. It is restored (no
    edit of the CanaryRollout): Ready True with one status write and one log line, never a second rollout of the
    finished revision. It stayed False for good."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    backup = _saved(api, "destinationrules")
    _delete(api, "destinationrules", "m0")
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 3)
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ABORTED
    ready = _ready(custom)
    assert (ready["status"], ready["reason"]) == ("False", "NotFound"), ready
    assert ready["message"].startswith("ml/m0 (destinationrules): not found"), ready
    rv = _rv(custom)
    _ticks(op, clock, 3)
    assert _rv(custom) == rv, "still gone: nothing written again"
    api.handler.put_object(backup)
    if process == "restarted":
        op = _fresh(op)
        op.clock = clock
    logs = _ready_again_once(api, op, custom, clock, named="ml/m0 (destinationrules): not found")
    _ended_for_good(api, custom, logs)
    line = next(e for e in logs if e["event"] == "rollout.ready_again")
    assert line["was_reason"] == "NotFound" and line["phase"] == rl.ABORTED and line["rollout"] == "ml/r0"


def test_a_route_renamed_mid_rollout_goes_to_stable_and_ready_follows_its_name_back(world: Any) -> None:
    """The http route the CanaryRollout names (`spec.route: primary`) is renamed mid-rollout: its traffic goes to
    stable 100% on the renamed route (found by the record), aborted, Ready False `RouteNotFound` naming the
    VirtualService and the route. A rename to yet another name: the message follows. Renamed back: Ready True
    once, the end kept."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    _rename_route(api, "primary", "main")
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 3)
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ABORTED
    ready = _ready(custom)
    assert (ready["status"], ready["reason"]) == ("False", "RouteNotFound"), ready
    assert ready["message"].startswith("ml/m0: spec.http has no route named 'primary'") and "'main'" in ready["message"]
    _rename_route(api, "main", "edge")
    _ticks(op, clock, 2)
    assert "'edge'" in _ready(custom)["message"] and _ready(custom)["status"] == "False", _ready(custom)
    _rename_route(api, "edge", "primary")
    logs = _ready_again_once(api, op, custom, clock, named="no route named 'primary'")
    _ended_for_good(api, custom, logs)


def test_a_virtual_service_restored_as_it_was_mid_rollout_goes_to_stable_before_ready(world: Any) -> None:
    """The VirtualService is deleted mid-rollout (the rollout ends, `rollout.route_deleted`), then restored from a
    copy taken while the canary had 20%: its record says this CR's rollout is in progress at 80/20, and nothing
    drives it (the CR is finished; the sweep leaves a rollout its CR still asks for). Stable 100% before Ready
    goes True, `rollout.restored_split` saying so; the canary never gets more. It stayed at 80/20 with Ready False."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    backup = _saved(api, "virtualservices")
    _delete(api, "virtualservices", "m0")
    op.clock = clock = FakeClock(time.time())
    _ticks(op, clock, 2)
    assert _status(custom)["phase"] == rl.ABORTED and _ready(custom)["reason"] == "NotFound"
    api.handler.put_object(backup)
    assert vs(api, 0)[0] == [80, 20] and vs(api, 0)[1]["phase"] == rl.PROGRESSING
    with capture_logs() as logs:
        _ticks(op, clock, 1)
        rv = _rv(custom)
        _ticks(op, clock, 3)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and "restored mid-rollout" in record["reason"], record
    assert _ready(custom)["status"] == "True" and _rv(custom) == rv, _ready(custom)
    events = [e["event"] for e in logs]
    assert events.count("rollout.restored_split") == 1 and events.count("rollout.ready_again") == 1, events
    assert events.index("rollout.restored_split") < events.index("rollout.ready_again")
    assert not [e for e in events if e in ("rollout.started", "step.advanced")], events
    assert _status(custom)["phase"] == rl.ABORTED


@pytest.mark.parametrize(("message", "re_checked"), [
    ("ml/m0 (virtualservices): not found (NotFound)", True),
    ("ml/m0 (destinationrules): not found (NotFound)", True),
    ("ml/m0: spec.http has no route named 'primary' (routes: ['main'])", True),
    ("ml/m0-x (virtualservices): not found (NotFound)", False),
    ("xml/m0 (virtualservices): not found (NotFound)", False),
    ("rollout state annotation modelcanary.dev/rollout is no state of this rollout (x); it is written by canary "
     "alone", False),
])
def test_only_a_refusal_naming_the_route_objects_is_re_checked_by_reading_the_route(message: str,
                                                                                      re_checked: bool) -> None:
    """A TargetError of the record (a hand edit, decision 148) is not of the route's objects: reading the route
    again would not re-check it, so its Ready False stays over the end."""
    obj = fleet.rollout_object(0, "v2")
    assert _of_route(obj, message) is re_checked


@pytest.fixture
def watched(prometheus: Any) -> Iterator[tuple[Any, Any, Any]]:  # noqa: F811
    """`canary controller run` as it runs: watches, a local cache and the due-time work queue."""
    from tests.integration.test_controller_scale import Clock
    from tests.integration.test_controller_watch import make

    api = fleet.start_api(2)
    clock = Clock(time.time())
    op, stop, client = make(api, prometheus, clock)
    yield api, op, clock
    stop.set()
    client.close()
    api.stop()


def _watched_ready(api: Any) -> dict[str, Any]:
    from tests.integration.test_controller_watch import status

    return next((c for c in status(api, "r0").get("conditions") or [] if c["type"] == "Ready"), {})


def test_with_watches_the_objects_appearing_or_restored_wake_the_canary_rollout(watched: Any) -> None:
    """From the informers' cache a waiting CanaryRollout is woken by its VirtualService's creation (it starts, no
    restart), and a finished one, due only on a change (never by time), by its DestinationRule's restoration:
    Ready True at the tick that change brings, nothing run again."""
    from tests.integration.test_controller_watch import caught_up, create, status, step

    api, op, clock = watched
    vs_backup = _saved(api, "virtualservices")
    _delete(api, "virtualservices", "m0")
    create(api, 0, "v2")
    for _ in range(3):
        step(api, op, clock)
    assert not status(api, "r0").get("phase") and _watched_ready(api).get("reason") == "NotFound"
    api.handler.put_object(vs_backup)
    for _ in range(20):
        step(api, op, clock, dt=0.0)  # no time passes: only the VirtualService's creation makes it due
        if status(api, "r0").get("phase") == rl.PROGRESSING and vs(api, 0)[0][1] > 0:
            break
    assert status(api, "r0")["phase"] == rl.PROGRESSING and _watched_ready(api)["status"] == "True"
    dr_backup = _saved(api, "destinationrules")
    _delete(api, "destinationrules", "m0")
    for _ in range(15):
        step(api, op, clock)
    assert status(api, "r0")["phase"] == rl.ABORTED and vs(api, 0)[0] == [100, 0]
    assert (_watched_ready(api)["status"], _watched_ready(api)["reason"]) == ("False", "NotFound")
    caught_up(api, op)
    assert op.queue.due_at("ml/r0") == float("inf"), "finished: due only when one of its objects changes"
    api.handler.put_object(dr_backup)
    with capture_logs() as logs:
        for _ in range(3):
            step(api, op, clock, dt=0.0)
    assert _watched_ready(api)["status"] == "True", _watched_ready(api)
    events = [e["event"] for e in logs]
    assert events.count("rollout.ready_again") == 1 and "rollout.started" not in events, events
    assert status(api, "r0")["phase"] == rl.ABORTED and vs(api, 0)[0] == [100, 0]

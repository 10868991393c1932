"""VirtualServices and DestinationRules as users write them (decision 114): each shape either refused
before any write, with an error naming the object and the field, or carried through with every field
canary does not own left as it was, and every end at stable 100% on the rollout's route.

`canary promote`'s Runner and the controller against the strict Kubernetes API emulator; the
promote path's metrics from a fake provider that sees the cluster's weights (the controller's from
the real Prometheus of tests/integration/test_controller.py); every edit injected at a fixed point.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.errors import RollbackFailed, TargetError
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import prometheus, world  # noqa: F401
from tests.integration.test_controller_owner import _ready
from tests.integration.test_controller_review import _cr
from tests.integration.test_promote_route_safety import GROUP, HookClock, record, routes, runner, subsets

pytestmark = pytest.mark.integration
VS, DR = "virtualservices", "destinationrules"


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(1)
    yield server
    server.stop()


def _objects(api: Any, i: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    vs = copy.deepcopy(api.get(GROUP, VS, "ml", fleet.model(i)))
    dr = copy.deepcopy(api.get(GROUP, DR, "ml", fleet.model(i)))
    return vs, dr


# --- subsets told apart by more than `version` -------------------------------------------------------

def _track(dr: dict[str, Any]) -> None:
    """`track: stable` / `track: canary` beside `version`: the canary's pods carry `track: canary`."""
    for s in dr["spec"]["subsets"]:
        s["labels"]["track"] = s["name"]


def _stable_tier(dr: dict[str, Any]) -> None:
    """A label on the stable subset only (`tier: prod`), which the new version's pods may lack."""
    dr["spec"]["subsets"][0]["labels"]["tier"] = "prod"


LABEL_EDITS = {"track": _track, "stable tier": _stable_tier}


@pytest.mark.parametrize("edit", list(LABEL_EDITS))
def test_subsets_differing_besides_version_are_refused_before_any_write(api: Any, edit: str) -> None:
    """The promotion points the stable subset at the canary's version and keeps its other labels:
    `track=stable, version=v2` selects no pod the rollout judged (the new pods are `track=canary`), and
    every request is a 503 after a "successful" promotion. It promoted; now refused at the claim, naming
    the DestinationRule and both subsets' labels, nothing written."""
    api.edit(GROUP, DR, "ml", "m0", LABEL_EDITS[edit])
    before = _objects(api)
    with pytest.raises(TargetError) as err:
        runner(api, "v2", FakeClock()).run()
    msg = str(err.value)
    assert msg.startswith("ml/m0: spec.subsets 'stable' and 'canary' select different labels besides 'version'"), msg
    assert "stable: {" in msg and "canary: {" in msg
    assert _objects(api) == before, "written before the refusal"


def test_subsets_edited_to_differ_mid_rollout_abort_at_stable_100(api: Any) -> None:
    """The DestinationRule gains `track` labels while the canary runs at 80/20: the promotion would now
    select pods nobody judged. The watch aborts the rollout at stable 100% (`subset.foreign_edit`), the
    stable subset on the old version; it promoted onto `track=stable, version=v2`."""
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING,
                        lambda: api.edit(GROUP, DR, "ml", "m0", _track)))
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state
    assert "select different labels besides 'version'" in res.state.reason, res.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and subsets(api)["stable"] == "v1"
    assert record(api)["phase"] == rl.ABORTED
    assert any(e["event"] == "subset.foreign_edit" for e in logs)


def test_a_stable_subset_without_a_version_label_is_refused_naming_it(api: Any) -> None:
    """Subsets told apart by another key (`app.kubernetes.io/version`): it said "stable version '' is not a
    Kubernetes label value" (or, with --stable-version, "the stable subset selects , not ..."), naming the
    VirtualService; now it names the DestinationRule and the `version` label it looks for."""
    def other_key(dr: dict[str, Any]) -> None:
        for s in dr["spec"]["subsets"]:
            s["labels"]["app.kubernetes.io/version"] = s["labels"].pop("version")

    api.edit(GROUP, DR, "ml", "m0", other_key)
    before = _objects(api)
    for stable in ("", "v1"):
        v = runner(api, "v2", FakeClock())
        v.target = v.target.__class__(**{**v.target.__dict__, "stable_version": stable})
        with pytest.raises(TargetError, match=r"^ml/m0: the stable subset has no 'version' label"):
            v.run()
    assert _objects(api) == before


def test_the_controller_refuses_subsets_differing_besides_version_before_claiming(world: Any) -> None:
    """The same refusal in a CanaryRollout: Ready False naming the DestinationRule, the route unclaimed
    and unwritten, the subsets as they were (it claimed, promoted, and left `track=stable, version=v2`)."""
    api, op, custom = world
    api.edit(GROUP, DR, "ml", "m0", _track)
    before = _objects(api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    for _ in range(3):
        op.tick()
    ready = _ready(_cr(custom, "r0"))
    assert ready.get("status") == "False" and "select different labels besides 'version'" in ready.get("message", ""), ready
    assert _objects(api) == before, "written before the refusal"


# --- one service, its host written short and in full ---------------------------------------------------

def _fqdn_canary(vs: dict[str, Any]) -> None:
    vs["spec"]["http"][0]["route"][1]["destination"]["host"] = "m0.ml.svc.cluster.local"


@pytest.mark.parametrize("version, phase", [("v2", rl.PROMOTED), ("v3", rl.ROLLED_BACK)])
def test_a_route_naming_its_host_short_and_in_full_is_one_service(api: Any, version: str, phase: str) -> None:
    """`m0` and `m0.ml.svc.cluster.local` in one route are the same service as Istio resolves them (the
    DestinationRule check already said so): promote refused it, "destinations name different hosts".
    Now it runs to its end, and only the weights and the record change."""
    api.edit(GROUP, VS, "ml", "m0", _fqdn_canary)
    before, _ = _objects(api)
    res = runner(api, version, FakeClock(), slowdown=1.6 if version == "v3" else 1.0).run()
    assert res.state.phase == phase, res.state
    after, _ = _objects(api)
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert _without_owned(after) == _without_owned(before)


def test_different_services_in_one_route_are_still_refused_naming_both() -> None:
    from canary.routing.patch import locate_route

    vs = {"metadata": {"name": "m0", "namespace": "ml"}, "spec": {"http": [{"route": [
        {"destination": {"host": "m0", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "m0.other.svc.cluster.local", "subset": "canary"}, "weight": 0}]}]}}
    with pytest.raises(TargetError, match=r"spec.http\[0\].route destinations name different hosts "
                                          r"\['m0', 'm0.other.svc.cluster.local'\]"):
        locate_route(vs)


def test_a_route_whose_destinations_name_different_ports_is_refused_before_any_write(api: Any) -> None:
    """`stable` on the service's port 8000 (HTTP), `canary` on 8001 (gRPC): the canary was judged on gRPC's
    traffic alone, and its promotion re-pointed the stable subset, served on port 8000, at a version no request
    on that port ever reached. Refused now, naming both fields (decision 578's addendum); the same port on both,
    or none on either, runs as before (decision 114's `ports`)."""
    def ports(vs: dict[str, Any]) -> None:
        for d, number in zip(vs["spec"]["http"][0]["route"], (8000, 8001)):
            d["destination"]["port"] = {"number": number}

    api.edit(GROUP, VS, "ml", "m0", ports)
    before = _objects(api)
    with pytest.raises(TargetError, match=r"^ml/m0: spec.http\[0\].route destinations name different ports of the "
                                          r"service \(spec.http\[0\].route\[0\].destination.port \{'number': 8000\}, "
                                          r"spec.http\[0\].route\[1\].destination.port \{'number': 8001\}\)"):
        runner(api, "v2", FakeClock()).run()
    assert _objects(api) == before


def _without_owned(vs: dict[str, Any]) -> dict[str, Any]:
    """`vs` less what canary owns: the weights, its record (and the service noted beside it, decision 523), and
    what the API server sets on a write."""
    out = copy.deepcopy(vs)
    for key in ("resourceVersion", "generation", "managedFields"):
        out["metadata"].pop(key, None)
    for owned in ("modelcanary.dev/rollout", "modelcanary.dev/service"):
        (out["metadata"].get("annotations") or {}).pop(owned, None)
    if not out["metadata"].get("annotations"):
        out["metadata"].pop("annotations", None)
    for route in out["spec"].get("http") or []:
        for d in route.get("route") or []:
            d.pop("weight", None)
    return out


# --- mirrors the user owns, through a rollback without the DestinationRule --------------------------------

SHADOW = {"mirror": {"host": "shadow.ml-shadow.svc.cluster.local"}, "mirrorPercentage": {"value": 10.0}}


def _delete_dr(api: Any) -> None:
    import kubernetes

    kubernetes.client.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(GROUP, "v1beta1", "ml", DR, "m0")


def _drop_canary_subset(api: Any) -> None:
    api.edit(GROUP, DR, "ml", "m0",
             lambda o: o["spec"].__setitem__("subsets", [s for s in o["spec"]["subsets"] if s["name"] != "canary"]))


@pytest.mark.parametrize("mirrors", [
    SHADOW,
    {"mirrors": [{"destination": {"host": "shadow.ml-shadow.svc.cluster.local"}, "percentage": {"value": 5.0}},
                 {"destination": {"host": "m0", "subset": "canary"}}]},
], ids=["mirror", "mirrors"])
@pytest.mark.parametrize("damage", [_delete_dr, _drop_canary_subset], ids=["DestinationRule deleted", "canary subset gone"])
def test_a_rollback_without_the_destination_rule_keeps_a_mirror_to_another_service(
        api: Any, mirrors: dict[str, Any], damage: Any) -> None:
    """The DestinationRule deleted (or its canary subset removed) at 80/20: the watch fails and the
    fail-safe writes stable 100% from the VirtualService alone. It also removed the user's shadow mirror
    to another service (without the rule's host, every mirror but the stable subset's went); now the
    route's own `stable` destination names the rollout's service: the shadow stays, a mirror to the
    canary subset still goes (decision 78 c), and `retries`/`timeout` are as they were."""
    api.edit(GROUP, VS, "ml", "m0", lambda o: o["spec"]["http"][0].update(copy.deepcopy(mirrors)))
    before, _ = _objects(api)
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING, lambda: damage(api)))
    try:
        phase = v.run().state.phase
    except RollbackFailed as exc:  # the rule deleted: 100/0 landed, the stable subset cannot be checked (exit 3)
        assert damage is _delete_dr and "stable has 100% of the weights" in str(exc), exc
        phase = record(api)["phase"]
    assert phase == rl.ABORTED and routes(api) == [[("stable", 100), ("canary", 0)]]
    after = copy.deepcopy(api.get(GROUP, VS, "ml", "m0"))
    route = after["spec"]["http"][0]
    if "mirror" in mirrors:
        assert (route.get("mirror"), route.get("mirrorPercentage")) == (SHADOW["mirror"], SHADOW["mirrorPercentage"])
    else:
        assert route.get("mirrors") == mirrors["mirrors"][:1], route.get("mirrors")
    want = _without_owned(before)
    want["spec"]["http"][0].pop("mirrors", None)
    got = _without_owned(after)
    got["spec"]["http"][0].pop("mirrors", None)
    assert got == want


# --- one VirtualService routing two models ------------------------------------------------------------

def _shared(api: Any) -> None:
    """VirtualService `shared`: route `a` to m0's subsets, route `b` to m1's (their own DestinationRules)."""
    base = copy.deepcopy(api.get(GROUP, VS, "ml", "m0"))
    a = copy.deepcopy(base["spec"]["http"][0])
    a["name"], a["match"] = "a", [{"uri": {"prefix": "/v2/models/m0"}}]
    b = copy.deepcopy(a)
    b["name"], b["match"] = "b", [{"uri": {"prefix": "/v2/models/m1"}}]
    for d in b["route"]:
        d["destination"]["host"] = "m1"
    api.handler.put_object({"apiVersion": base["apiVersion"], "kind": "VirtualService",
                            "metadata": {"name": "shared", "namespace": "ml"},
                            "spec": {"hosts": ["models"], "http": [a, b]}})


def _shared_runner(api: Any, model: str, route: str, clock: FakeClock, slowdown: float = 1.0) -> Any:
    from dataclasses import replace

    v = runner(api, "v2", clock, slowdown=slowdown)
    v.target = replace(v.target, virtual_service="shared", model=model, route=route, destination_rule=model)
    v.metrics.router.target = v.target
    return v


def test_promote_of_another_model_of_the_same_version_on_a_shared_virtual_service_is_busy() -> None:
    """m0's v2 runs on route `a` of `shared`; `canary promote m1 --virtual-service shared --route b` of v2
    too (one commit for both models). It was taken for a resume of m0's rollout and refused as driving
    the wrong DestinationRule (or route), "re-run with --destination-rule m0 to resume it": following
    that judged m1's series on m0's route. Now RolloutBusy naming the other model, nothing written."""
    from canary.errors import RolloutBusy

    server = fleet.start_api(2)
    try:
        _shared(server)
        clock = HookClock(server, "shared")
        seen: list[Any] = []

        def second() -> None:
            other = _shared_runner(server, "m1", "b", FakeClock(clock.now()))
            before = copy.deepcopy(server.get(GROUP, VS, "ml", "shared"))
            with pytest.raises(RolloutBusy) as busy:
                other.run()
            seen.append((str(busy.value), server.get(GROUP, VS, "ml", "shared") == before))

        clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING, second))
        first = _shared_runner(server, "m0", "a", clock)
        assert first.run().state.phase == rl.PROMOTED
        assert seen, "the second promote never ran"
        msg, untouched = seen[0]
        assert "a rollout of model m0 (v2) is in progress on route 'a' of ml/shared" in msg, msg
        assert untouched, "the second promote wrote"
    finally:
        server.stop()


def test_a_canary_rollout_of_another_model_of_the_same_version_waits_then_runs(world: Any) -> None:
    """CanaryRollouts r0 (m0, route a) and r1 (m1, route b) of v2 on VirtualService `shared`. r1 was marked
    waiting on r0's rollout as on a twin's, and when r0 promoted it ended too, "not run: ... the rollout
    of v2 on ml/shared ended promoted": m1 was never rolled out. Now r1 waits (RolloutBusy naming model
    m0), then runs its own rollout to its end."""
    from tests.integration.test_controller import run_until_done

    api, op, custom = world
    _shared(api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(
        0, "v2", virtualService="shared", route="a", destinationRule="m0"))
    for _ in range(3):
        op.tick()
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(
        1, "v2", virtualService="shared", route="b", destinationRule="m1"))
    op.tick()
    ready = _ready(_cr(custom, "r1"))
    assert ready.get("reason") == "RolloutBusy" and "a rollout of model m0 (v2)" in ready.get("message", ""), ready
    objs = run_until_done(op, custom, ["r0", "r1"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED
    assert objs["r1"]["status"]["phase"] == rl.PROMOTED, objs["r1"]["status"].get("reason")
    vs = api.get(GROUP, VS, "ml", "shared")
    assert [[d["weight"] for d in r["route"]] for r in vs["spec"]["http"]] == [[100, 0], [100, 0]]
    # each model's history in its own ConfigMap, named in its status: r1's rollout did not replace r0's
    # (decision 127; both were `shared-canary-history`, the latest rollout of the VirtualService)
    from canary import history as hist
    from canary.history_store import KEY, configmap_name

    for i in (0, 1):
        name = objs[f"r{i}"]["status"]["summary"]["historyConfigMap"]
        assert name == configmap_name("shared", f"m{i}") != "shared-canary-history"
        doc = hist.parse(api.get("", "configmaps", "ml", name)["data"][KEY], where=name)
        assert (doc["rollout"]["model"], doc["rollout"]["name"], doc["phase"]) == (f"m{i}", f"ml/r{i}", rl.PROMOTED)


# --- refusals whose advice can be followed ---------------------------------------------------------------

def _testers_then_unnamed(vs: dict[str, Any]) -> None:
    """A header route for testers first, then the weighted route, unnamed (as most users write it)."""
    weighted = vs["spec"]["http"][0]
    weighted.pop("name", None)
    vs["spec"]["http"] = [{"name": "testers", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
                           "route": [{"destination": {"host": "m0", "subset": "canary"}}]}, weighted]


def _root_with_delegate(vs: dict[str, Any]) -> None:
    vs["spec"]["http"] = [{"name": "primary", "match": [{"uri": {"prefix": "/"}}],
                           "delegate": {"name": "m0-models", "namespace": "serving"}}]


@pytest.mark.parametrize("shape, message", [
    (_testers_then_unnamed, r"^ml/m0: spec.http has 2 routes \['testers', '#1 \(unnamed\)'\]; name the one to shift "
                            r"\(--route, policy `route:`\); spec.http\[1\] has subsets 'stable' and 'canary' but no "
                            r"name, which --route needs: add `name:` to it$"),
    (_root_with_delegate, r"^ml/m0: spec.http\[0\] delegates to VirtualService serving/m0-models, which holds its "
                          r"destinations and weights: drive that one \(--virtual-service m0-models, -n serving\)$"),
], ids=["unnamed weighted route among two", "root VirtualService delegating"])
def test_a_route_canary_cannot_drive_is_refused_saying_what_to_do(api: Any, shape: Any, message: str) -> None:
    """"name the one to shift" for a route that has no name (--route cannot pick it), and "spec.http[0].route
    is missing or not a list" for a root VirtualService's delegate: both refused before any write, now
    saying what to change."""
    api.edit(GROUP, VS, "ml", "m0", shape)
    before = _objects(api)
    with pytest.raises(TargetError, match=message):
        runner(api, "v2", FakeClock()).run()
    assert _objects(api) == before


# --- a split on another route than the driven one ---------------------------------------------------------

def _grpc_split(vs: dict[str, Any]) -> None:
    """REST on `primary` (port 8000), and gRPC on its own route left split 90/10 by a manual canary."""
    primary = vs["spec"]["http"][0]
    primary["match"] = [{"port": 8000}]
    grpc = copy.deepcopy(primary)
    grpc["name"], grpc["match"] = "grpc", [{"port": 8001}]
    grpc["route"][0]["weight"], grpc["route"][1]["weight"] = 90, 10
    vs["spec"]["http"].append(grpc)


def _tcp_split(vs: dict[str, Any]) -> None:
    vs["spec"]["tcp"] = [{"match": [{"port": 8001}], "route": [
        {"destination": {"host": "m0", "subset": "stable", "port": {"number": 8001}}, "weight": 90},
        {"destination": {"host": "m0.ml.svc.cluster.local", "subset": "canary", "port": {"number": 8001}}, "weight": 10}]}]


@pytest.mark.parametrize("shape, where", [(_grpc_split, r"spec.http\[1\] \(grpc\)"), (_tcp_split, r"spec.tcp\[0\]")],
                         ids=["another HTTP route", "a TCP route"])
def test_a_split_with_the_canary_subset_on_another_route_is_refused_before_any_write(
        api: Any, shape: Any, where: str) -> None:
    """The claim checked the driven route only: it pointed the canary subset at v3, so the other route's
    10% reached v3 unjudged from the first write; v3 was rolled back on `primary` (100/0) and the other
    route went on sending it 10%. Refused now, naming that route, nothing written."""
    api.edit(GROUP, VS, "ml", "m0", shape)
    before = _objects(api)
    with pytest.raises(TargetError, match=rf"^ml/m0: {where} splits its traffic 90/10 with subset 'canary' of m0, "
                                          r"a split this rollout did not make"):
        runner(api, "v3", FakeClock(), slowdown=1.6, route="primary").run()
    assert _objects(api) == before


def _gateway_vs(api: Any, canary: int) -> None:
    """VirtualService `m0-gateway`, bound to the ingress gateway (the mesh's is `m0`), its route split
    (100 - canary)/canary between m0's subsets: a manual canary on the edge."""
    route = copy.deepcopy(api.get(GROUP, VS, "ml", "m0")["spec"]["http"][0])
    route["name"] = "edge"
    route["route"][0]["weight"], route["route"][1]["weight"] = 100 - canary, canary
    api.handler.put_object({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                            "metadata": {"name": "m0-gateway", "namespace": "ml"},
                            "spec": {"hosts": ["models.example.com"], "gateways": ["istio-system/ingress"],
                                     "http": [route]}})


def test_a_split_with_the_canary_subset_on_another_virtual_service_is_refused_before_any_write(api: Any) -> None:
    """The claim checked the driven VirtualService's routes only (decision 114): a gateway VirtualService of the
    same service left 90/10 shares the DestinationRule's canary subset, which the claim points at v3, so 10% of
    the edge traffic reached v3 unjudged from the first write and stayed on it after the rollback (stable 100% on
    m0 only). Refused now, naming that VirtualService and route, nothing written (decision 578)."""
    _gateway_vs(api, 10)
    before = _objects(api), api.get(GROUP, VS, "ml", "m0-gateway")
    with pytest.raises(TargetError, match=r"^ml/m0-gateway: spec.http\[0\] \(edge\) splits its traffic 90/10 with "
                                          r"subset 'canary' of m0.ml.svc.cluster.local, a split this rollout did not "
                                          r"make: the subsets are DestinationRule ml/m0's"):
        runner(api, "v3", FakeClock(), slowdown=1.6).run()
    assert (_objects(api), api.get(GROUP, VS, "ml", "m0-gateway")) == before


def _gateway_rollout(api: Any, **changes: Any) -> None:
    """`_gateway_vs` at 80/20 because a rollout of v2 runs there: its record, in progress, on route `edge`
    (`changes`: to the record)."""
    from dataclasses import replace

    from canary.routing.patch import STATE_ANNOTATION

    _gateway_vs(api, 20)
    state, _ = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=1000.0, route="edge")

    def recorded(vs: dict[str, Any]) -> None:
        vs["metadata"].setdefault("annotations", {})[STATE_ANNOTATION] = replace(
            state, **{"phase": rl.PROGRESSING, **changes}).to_json()
    api.edit(GROUP, VS, "ml", "m0-gateway", recorded)


def test_a_split_another_virtual_services_rollout_made_is_a_busy_claim_not_bad_input(api: Any) -> None:
    """The gateway VirtualService at 80/20 because a rollout of v2 runs on it: refused (578), naming that rollout
    (585), but as TargetError: `promote` exited 2 (bad input: a pipeline gives up, `--wait-busy` does not wait)
    and a `promote --via-controller` follower exited 2 and deleted its CanaryRollout, for a claim that only has
    to wait for that rollout's end. RolloutBusy now (exit 75, waited for); nothing written (decision 594)."""
    from canary.errors import RolloutBusy

    _gateway_rollout(api)
    before = _objects(api), api.get(GROUP, VS, "ml", "m0-gateway")
    with pytest.raises(RolloutBusy, match=r"that split is the rollout of v2 \(progressing\) recorded on ml/m0-gateway"):
        runner(api, "v3", FakeClock(), slowdown=1.6).run()
    assert (_objects(api), api.get(GROUP, VS, "ml", "m0-gateway")) == before


@pytest.mark.parametrize(("changes", "said"), [
    ({"owner": "promote#gone", "updated_at": 1000.0}, "its promote has not written it for 9000s (a sweep ends it"),
    ({"phase": rl.PAUSED}, "it is paused: no sweep ends a paused rollout"),
])
def test_another_virtual_services_rollout_nothing_will_end_is_said_so(api: Any, changes: dict[str, Any],
                                                                       said: str) -> None:
    """594's busy claim on the gateway's split, where that rollout's promote died long ago (its record stale) or it is
    paused: nothing ends it by itself, and the refusal said only "wait for that rollout to end", so `--wait-busy`
    and a pipeline's retry on 75 waited for nothing. It now says so as 402 says it of a record on the route's own
    VirtualService, and names the holder on the busy refusal (decision 596)."""
    from canary.errors import RolloutBusy

    _gateway_rollout(api, **changes)
    with pytest.raises(RolloutBusy, match="recorded on ml/m0-gateway") as busy:
        runner(api, "v3", FakeClock(10_000.0), slowdown=1.6).run()
    assert said in str(busy.value) and "`canary rollback`" in str(busy.value), busy.value
    assert busy.value.holder == (changes.get("owner") or rl.new_rollout(
        model="m0", stable_version="v1", canary_version="v2", now=0.0)[0].owner), busy.value.holder


def test_wait_busy_claims_once_another_virtual_services_rollout_ends(api: Any) -> None:
    """594 with `--wait-busy`: the promote waits on the gateway's rollout (`preflight.waiting_for_route` once, naming
    its holder), and claims once that rollout has ended (its route back at 100/0, its record gone) while it polls."""
    class Ending(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if self.t > 1_020.0 and "annotations" in api.get(GROUP, VS, "ml", "m0-gateway")["metadata"]:
                _gateway_vs(api, 0)  # that rollout rolled back: stable 100%, no record

    _gateway_rollout(api, owner="promote#ci-7", updated_at=1_000.0)
    with structlog.testing.capture_logs() as logs:
        done = runner(api, "v3", Ending(), wait_busy_s=600.0).run()
    assert done.state.phase == rl.PROMOTED, done.state
    waited = [e for e in logs if e["event"] == "preflight.waiting_for_route"]
    assert len(waited) == 1 and waited[0]["holder"] == "promote#ci-7", waited  # no holder said before 596


def test_wait_busy_runs_from_the_first_refusal_not_from_a_slow_preflight(api: Any) -> None:
    """`--wait-busy 1s` where reading the route took longer than 1 s (a loaded host): it was refused at once with
    "give --wait-busy DURATION to wait for it", the words for a promote given no wait, and nothing said it waited
    (CI saw it). The wait runs from the first refusal: said once, then refused naming the flag (decision 803)."""
    from canary.errors import RolloutBusy

    _gateway_rollout(api, owner="promote#ci-7", updated_at=1_000.0)
    clock = FakeClock()
    r = runner(api, "v3", clock, wait_busy_s=1.0)
    read = r.router.inspect

    def slow_inspect(*a: Any, **kw: Any) -> Any:
        clock.t += 5.0  # each read of the route takes 5 s
        return read(*a, **kw)

    r.router.inspect = slow_inspect  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs, pytest.raises(RolloutBusy) as busy:
        r.run()
    assert "(--wait-busy 1s)" in str(busy.value) and "give --wait-busy" not in str(busy.value), busy.value
    assert [e["holder"] for e in logs if e["event"] == "preflight.waiting_for_route"] == ["promote#ci-7"], logs


def test_bad_input_behind_another_virtual_services_rollout_is_exit_2_not_busy(api: Any) -> None:
    """594's busy claim on the gateway's split, and a policy Prometheus rejects: wrong whoever holds the split, so
    exit 2 at once (decision 400), not 75 and a `--wait-busy` that waits for that rollout to be told it (596)."""
    from canary.errors import ConfigError

    def rejected(policy: Any, target: Any) -> None:
        raise ConfigError("check 'custom': Prometheus rejected the query (HTTP 400 bad_data: parse error)")

    _gateway_rollout(api)
    promote = runner(api, "v3", FakeClock(), slowdown=1.6)
    promote.metrics.preflight = rejected
    with pytest.raises(ConfigError, match=r"parse error\); nothing was written .*recorded on ml/m0-gateway"):
        promote.run()


def test_another_virtual_service_at_stable_100_is_no_split(api: Any) -> None:
    """The same gateway VirtualService at 100/0: nothing of it reaches the canary; the rollout runs."""
    _gateway_vs(api, 0)
    assert runner(api, "v2", FakeClock()).run().state.phase == rl.PROMOTED


def test_virtual_services_that_cannot_be_listed_are_said_and_the_claim_goes_on(api: Any) -> None:
    """A Role without `list` on virtualservices (the README's for `canary promote` had none;
    docs/reference/cluster.md, "RBAC: the rights it needs", now says what `list` is for): which other
    VirtualService splits with the canary cannot be told; `preflight.splits_unchecked` says so and the claim is
    not refused for it (the pod check's way, `preflight.pods_unchecked`)."""
    import tenacity

    from canary.logs import get
    from canary.model import Target
    from canary.reconcile import check_other_splits
    from canary.routing.istio import IstioRouter
    from canary.sandbox.kubeapi import Fault

    _gateway_vs(api, 10)
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    # both LISTs, every namespace's then the namespace's (decision 844): the rule is read first
    api.handler.faults.append(Fault(403, 2, frozenset({"GET"}), VS))
    with structlog.testing.capture_logs() as logs:
        check_other_splits(router, target, log=get())
    (said,) = [e for e in logs if e["event"] == "preflight.splits_unchecked"]
    assert "403" in said["error"] and said["log_level"] == "warning", said


def test_a_testers_route_to_the_canary_alone_is_no_split(api: Any) -> None:
    """A header-match route sending testers to the canary subset (alone, or 0/100) is deliberate: the
    rollout runs, and only the driven route's weights change."""
    def testers(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][:0] = [
            {"name": "testers", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": "m0", "subset": "canary"}}]},
            {"name": "qa", "match": [{"headers": {"x-qa": {"exact": "1"}}}],
             "route": [{"destination": {"host": "m0", "subset": "stable"}, "weight": 0},
                       {"destination": {"host": "m0", "subset": "canary"}, "weight": 100}]}]

    api.edit(GROUP, VS, "ml", "m0", testers)
    before, _ = _objects(api)
    assert runner(api, "v2", FakeClock(), route="primary").run().state.phase == rl.PROMOTED
    after, _ = _objects(api)
    assert [[d.get("weight") for d in r["route"]] for r in after["spec"]["http"]] == [[None], [0, 100], [100, 0]]
    assert _without_owned(after) == _without_owned(before)


def test_a_label_on_the_canary_subset_alone_is_no_difference(api: Any) -> None:
    """`canary: "true"` on the canary subset only: the promoted stable subset (`version: v2`) selects every
    pod judged. Runs to its promotion, the extra label kept."""
    api.edit(GROUP, DR, "ml", "m0", lambda o: o["spec"]["subsets"][1]["labels"].__setitem__("canary", "true"))
    assert runner(api, "v2", FakeClock()).run().state.phase == rl.PROMOTED
    labels = {s["name"]: s["labels"] for s in api.get(GROUP, DR, "ml", "m0")["spec"]["subsets"]}
    assert labels["stable"] == {"app": "rec-model", "version": "v2"}
    assert labels["canary"] == {"app": "rec-model", "version": "v2", "canary": "true"}


def test_oncall_commands_of_the_other_model_say_whose_rollout_is_recorded(tmp_path: Any) -> None:
    """m0's rollout runs on route `a` of `shared`; on-call of m1 asks about route `b`. `canary rollback/pause
    m1 --route b` said "the rollout in progress drives route 'a'; use --route a" (which ends m0's good
    canary), and `canary status m1 --route b` showed m0's phase and history as route b's. Now both say
    whose rollout it is; nothing is written."""
    import json

    from typer.testing import CliRunner

    from canary.cli import app
    from canary.model import Target, Weights
    from canary.routing.istio import IstioRouter

    server = fleet.start_api(2)
    try:
        _shared(server)
        kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", server.url)
        state = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                weights=Weights(80, 20), step=0, started_at=1.0, step_started_at=1.0, route="a",
                                destination_rule="m0")
        IstioRouter(server.api_client()).set_weights(
            Target("ml", "shared", "m0", "v1", "v2", route="a", destination_rule="m0"), Weights(80, 20),
            state=state.to_json())
        before = copy.deepcopy(server.get(GROUP, VS, "ml", "shared"))

        def cli(*args: str) -> Any:
            return CliRunner().invoke(app, [*args, "m1", "--virtual-service", "shared", "--destination-rule", "m1",
                                            "-n", "ml", "--kubeconfig", str(kc)])

        for command in ("rollback", "pause"):
            res = cli(command, "--route", "b")
            assert res.exit_code == 2 and "the rollout in progress (model m0's, of v2; m1 has none in progress " \
                "here) drives route 'a', not 'b'" in res.output, res.output
        res = cli("status", "--route", "b", "-o", "json")
        assert res.exit_code == 0, res.output
        shown = json.loads(res.output)
        assert shown["weights"] == {"stable": 100, "canary": 0}
        assert shown["recorded_elsewhere"].startswith("the phase and history shown are model m0's rollout of v2 on "
                                                      "route 'a'"), shown
        assert server.get(GROUP, VS, "ml", "shared") == before
    finally:
        server.stop()


@pytest.mark.parametrize("split, reason, said", [
    ("by hand", "TargetError", "ml/m0-gateway: spec.http[0] (edge) splits its traffic 90/10"),
    ("a rollout", "RolloutBusy", "that split is the rollout of v2 (progressing) recorded on ml/m0-gateway")])
def test_the_controller_refuses_a_split_on_another_virtual_service_before_claiming(world: Any, split: str,
                                                                                   reason: str, said: str) -> None:
    """Decision 578 in a CanaryRollout: Ready False naming the other VirtualService, nothing written. A split that
    is a rollout in progress there is RolloutBusy (a follower waits), not TargetError (a follower exited 2 and
    deleted its CanaryRollout; decision 594)."""
    api, op, custom = world
    _gateway_vs(api, 10) if split == "by hand" else _gateway_rollout(api)
    before = _objects(api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    for _ in range(3):
        op.tick()
    ready = _ready(_cr(custom, "r0"))
    assert ready.get("status") == "False" and ready.get("reason") == reason, ready
    assert said in ready.get("message", ""), ready
    assert _objects(api) == before, "written before the refusal"


def test_the_controller_refuses_bad_input_behind_another_virtual_services_rollout(world: Any) -> None:
    """594's RolloutBusy on the gateway's split, for a CanaryRollout whose policy has a query Prometheus rejects:
    wrong whoever holds the split, so Ready False ConfigError (a follower exits 2), as behind a rollout on its own
    route (decision 404); it stayed RolloutBusy, and a follower waited to `--timeout` (decision 596)."""
    from tests.integration.test_controller_busy_input import _policy

    api, op, custom = world
    _gateway_rollout(api)
    before = _objects(api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v3", policy=_policy(bad=True)))
    for _ in range(3):
        op.tick()
    ready = _ready(_cr(custom, "r0"))
    assert ready.get("status") == "False" and ready.get("reason") == "ConfigError", ready
    assert "custom" in ready.get("message", "") and "ml/m0-gateway" in ready.get("message", ""), ready
    assert _objects(api) == before, "written before the refusal"


def test_a_canary_rollout_asked_to_roll_back_before_it_starts_ends_unrun_beside_another_virtual_services_split(
        world: Any) -> None:
    """`spec.action: rollback` on a new CR (do not run it) while the gateway VirtualService splits 90/10: decision
    578's refusal came first, so the CR stayed Ready False TargetError for ever, telling its author to zero another
    VirtualService's weight for a rollout they had asked not to run. The other VirtualServices are looked at only
    for a rollout that will claim: it ends unrun, nothing written (decision 585's addendum)."""
    api, op, custom = world
    _gateway_vs(api, 10)
    before = _objects(api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", action="rollback", actionReason="not this one"))
    for _ in range(3):
        op.tick()
    status = _cr(custom, "r0")["status"]
    assert status["phase"] == rl.ABORTED and status["reason"].startswith("not run: spec.action is rollback"), status
    assert _objects(api) == before, "written"


def test_the_controller_aborts_a_rollout_whose_subsets_are_edited_to_differ(world: Any) -> None:
    """The DestinationRule gains `track` labels while r0 runs v2 at 80/20: aborted at stable 100% (it
    promoted onto `track=stable, version=v2`)."""
    from tests.integration.test_controller import _progressing, run_until_done

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, DR, "ml", "m0", _track)
    st = run_until_done(op, custom, ["r0"])["r0"]["status"]
    assert st["phase"] == rl.ABORTED and "select different labels besides 'version'" in st["reason"], st
    vs = api.get(GROUP, VS, "ml", "m0")
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100, 0]
    assert {s["name"]: s["labels"]["version"] for s in api.get(GROUP, DR, "ml", "m0")["spec"]["subsets"]}["stable"] == "v1"


def test_a_rollback_also_ends_a_split_with_the_canary_made_on_another_route_mid_rollout(api: Any) -> None:
    """gRPC on its own route (100/0 at the claim); a person splits it 80/20 too while v3 runs on `primary`.
    v3 is rolled back: `primary` 100/0, and the gRPC route went on sending the rolled-back v3 20%. Now a
    rollback gives the canary subset 0 on every route that splits with it (its share to that route's
    stable destination); a testers route to the canary alone and another service's split are left."""
    def routes_at_claim(vs: dict[str, Any]) -> None:
        _grpc_split(vs)
        grpc = vs["spec"]["http"][1]
        grpc["route"][0]["weight"], grpc["route"][1]["weight"] = 100, 0
        grpc["retries"] = {"attempts": 5}
        vs["spec"]["http"] += [
            {"name": "testers", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": "m0", "subset": "canary"}}]},
            {"name": "other-model", "match": [{"uri": {"prefix": "/m9"}}],
             "route": [{"destination": {"host": "m9", "subset": "stable"}, "weight": 70},
                       {"destination": {"host": "m9", "subset": "canary"}, "weight": 30}]}]

    def split_grpc(vs: dict[str, Any]) -> None:
        grpc = vs["spec"]["http"][1]
        grpc["route"][0]["weight"], grpc["route"][1]["weight"] = 80, 20

    api.edit(GROUP, VS, "ml", "m0", routes_at_claim)
    clock = HookClock(api)
    v = runner(api, "v3", clock, slowdown=1.6, route="primary")
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING,
                        lambda: api.edit(GROUP, VS, "ml", "m0", split_grpc)))
    res = v.run()
    assert res.state.phase == rl.ROLLED_BACK, res.state
    assert routes(api) == [[("stable", 100), ("canary", 0)], [("stable", 100), ("canary", 0)], [("canary", None)],
                           [("stable", 70), ("canary", 30)]]
    assert api.get(GROUP, VS, "ml", "m0")["spec"]["http"][1]["retries"] == {"attempts": 5}


def test_another_models_rollback_on_a_shared_virtual_service_is_not_this_ones(tmp_path: Any) -> None:
    """The rollout record is one annotation per VirtualService. m1's v2 rolled back on route `b` of `shared`;
    `canary promote m0 --virtual-service shared --route a` of v2 (one commit for both models) reported m1's
    rollback as its own (exit 1, `already_ended`, the document naming m1 and route b), plain and
    `--via-controller` alike, and the follower did so with no `--route` too (its on-call read picks the route
    recorded), where the controller refuses or runs it: m0's v2 never ran (decision 242)."""
    import json

    import yaml
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.routing.patch import STATE_ANNOTATION

    server = fleet.start_api(2)
    try:
        _shared(server)
        fleet.record(server, "shared", fleet.rolled_back("m1", route="b"))
        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", server.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
        for route in (["--route", "a"], []):
            r = CliRunner().invoke(app, ["promote", "m0", "--virtual-service", "shared", "--destination-rule", "m0",
                                         *route, "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                         "--kubeconfig", str(kubeconfig), "-o", "json", "--via-controller",
                                         "--timeout", "1s"])
            doc = json.loads(r.stdout)
            assert r.exit_code == 3 and "did not finish within 1s" in doc["error"], (route, r.stdout)
            assert server.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is not None  # created: the controller's
            server.handler._delete((crd.GROUP, crd.PLURAL, "ml", "m0-v2"),
                                   server.handler.objects[(crd.GROUP, crd.PLURAL, "ml", "m0-v2")])
        # m1's own re-run still reports its rollback
        r = CliRunner().invoke(app, ["promote", "m1", "--virtual-service", "shared", "--destination-rule", "m1",
                                     "--route", "b", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                     "--kubeconfig", str(kubeconfig), "-o", "json", "--via-controller"])
        assert r.exit_code == 1 and json.loads(r.stdout)["already_ended"] is True, r.stdout
        # a plain promote of m0 on route a runs m0's v2 (to its promotion here), not m1's rollback reported
        assert _shared_runner(server, "m0", "a", FakeClock(10.0)).run().state.model == "m0"
        assert rl.RolloutState.from_json(server.get(GROUP, VS, "ml", "shared")["metadata"]["annotations"][
            STATE_ANNOTATION]).phase == rl.PROMOTED
    finally:
        server.stop()


def _shared_promote(api: Any, model: str, route: str, clock: FakeClock, *, slowdown: float = 1.0,
                    retry: bool = False) -> Any:
    """A `canary promote MODEL --virtual-service shared --route ROUTE --destination-rule MODEL` of v2, its
    history recorded where the CLI's is (the model's own ConfigMap of `shared`)."""
    import tenacity

    from canary.model import Target
    from canary.policy import parse_policy
    from canary.routing.istio import IstioRouter
    from canary.runner import Runner
    from tests.fakes import FakeMetrics
    from tests.support.killpoints import LiveWeights

    target = Target(namespace="ml", virtual_service="shared", model=model, stable_version="", canary_version="v2",
                    route=route, destination_rule=model)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: slowdown, rps=1000.0)
    return Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics,
                  clock=clock, retry=retry)


def test_a_rollback_another_models_record_hid_is_still_reported_from_its_history(tmp_path: Any) -> None:
    """The rollout record is one annotation per VirtualService. m1's v2 was rolled back on route `b` of `shared`;
    then m0's v2 ran on route `a` to its promotion, and its record replaced m1's. The step that rolled m1's v2 back
    re-run (`canary promote m1 --route b --canary-version v2`) no longer saw the rollback and started v2 again:
    the bad version back in front of m1's users without `--retry`. m1's own history ConfigMap still records it:
    the re-run reports it (exit 1, nothing written), plain and `--via-controller`; `--retry` runs it again
    (decision 253)."""
    import json

    import yaml
    from typer.testing import CliRunner

    from canary import cli
    from canary.cli import app
    from canary.history_store import configmap_name
    from canary.logs import parse_json_lines

    server = fleet.start_api(2)
    try:
        _shared(server)
        clock = FakeClock(10.0)
        first = _shared_promote(server, "m1", "b", clock, slowdown=3.0).run()
        assert first.state.phase == rl.ROLLED_BACK and first.state.model == "m1", first.state
        assert _shared_promote(server, "m0", "a", FakeClock(clock.now())).run().state.phase == rl.PROMOTED
        assert record(server, "shared")["model"] == "m0"  # m1's rollback is no longer on the route
        before = copy.deepcopy(server.get(GROUP, VS, "ml", "shared")), copy.deepcopy(server.get(GROUP, DR, "ml", "m1"))

        again = _shared_promote(server, "m1", "b", FakeClock(clock.now() + 100), slowdown=3.0)
        res = again.run()
        assert again.found_ended and res.exit_code == 1, res.state
        assert (res.state.model, res.state.canary_version, res.state.route) == ("m1", "v2", "b")
        assert res.state.reason == first.state.reason
        # traffic had moved (its history's weights say so): not said to be a rollback before traffic (decision 278)
        assert res.state.step >= 0 and cli.earlier_rollback(res.state)[0]["before_traffic"] is False
        assert (server.get(GROUP, VS, "ml", "shared"), server.get(GROUP, DR, "ml", "m1")) == before, "written"

        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", server.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
        r = CliRunner().invoke(app, ["promote", "m1", "--virtual-service", "shared", "--destination-rule", "m1",
                                     "--route", "b", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                     "--kubeconfig", str(kubeconfig), "-o", "json", "--via-controller"])
        assert r.exit_code == 1 and json.loads(r.stdout)["already_ended"] is True, r.stdout
        assert "with --retry" in json.loads(r.stdout)["next"], r.stdout
        assert server.get(crd.GROUP, crd.PLURAL, "ml", "m1-v2") is None  # nothing created
        # the log line says where the rollback was read, as the plain promote's does (the route's record is m0's)
        said = [e for e in parse_json_lines(r.stderr) if e["event"] == "rollout.already_rolled_back"]
        assert [e.get("recorded_in") for e in said] == [f"ConfigMap ml/{configmap_name('shared', 'm1')}"], said

        # m0's promotion is not m1's rollback: m0's own history says promoted, and a re-run of it is as before
        assert _shared_promote(server, "m0", "a", FakeClock(clock.now() + 200)).run().state.phase == rl.PROMOTED
        # `--retry` runs m1's v2 again (rolled back again here: it is still 3x slower)
        retried = _shared_promote(server, "m1", "b", FakeClock(clock.now() + 300), slowdown=3.0, retry=True)
        assert retried.run().state.phase == rl.ROLLED_BACK and not retried.found_ended
        assert record(server, "shared")["model"] == "m1"
    finally:
        server.stop()


@pytest.mark.parametrize("now_named, recorded, asked", [
    ("renamed", "primary", ""),  # the only route renamed since the rollback, no --route
    ("renamed", "primary", "renamed"),  # the same, --route naming it as it is now
    ("", "primary", ""),  # its name removed since
], ids=["renamed", "renamed, --route", "name removed"])
def test_a_rollback_recorded_on_a_route_renamed_since_is_still_reported(
        api: Any, tmp_path: Any, now_named: str, recorded: str, asked: str) -> None:
    """Decision 242 reports a recorded rollback only when its route is the request's (`same_route`). A route
    renamed since the rollback (or its name removed) picks no route now, and is no other route either: the
    step re-run started the rolled-back v2 again, the bad version back in front of users without `--retry`.
    A record's route that picks none now may be the request's: the rollback is reported, nothing written
    (decision 249)."""
    from canary.routing.patch import STATE_ANNOTATION

    ours = fleet.rolled_back(route=recorded)

    def edit(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["name"] = now_named
        vs["metadata"]["annotations"] = {STATE_ANNOTATION: ours.to_json()}

    api.edit(GROUP, VS, "ml", "m0", edit)
    before = _objects(api)
    ran = runner(api, "v2", FakeClock(10.0), route=asked)
    res = ran.run()
    assert ran.found_ended and res.state == ours and res.exit_code == 1, res.state
    assert _objects(api) == before, "written: the rolled-back version was started again"
    if asked:  # `--via-controller` naming the route: the same rollback reported, no CanaryRollout created
        import json

        import yaml
        from typer.testing import CliRunner

        from canary.cli import app

        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
        r = CliRunner().invoke(app, ["promote", "m0", "--route", asked, "--canary-version", "v2", "--policy",
                                     str(policy), "-n", "ml", "--kubeconfig", str(kubeconfig), "-o", "json",
                                     "--via-controller", "--timeout", "1s"])
        assert r.exit_code == 1 and json.loads(r.stdout)["already_ended"] is True, r.stdout
        assert api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is None


# --- a split on another VirtualService made after the claim (decisions 602, 603) ------------------------------------

def test_a_split_made_on_another_virtual_service_mid_rollout_rolls_back_and_repoints_the_canary_subset(
        api: Any) -> None:
    """The gateway VirtualService, 100/0 at the claim, is split 90/10 while v2 (a good canary) runs on `m0`:
    that 10% of the edge reached v2 unjudged, nothing looked for it, and it promoted; and had v2 been rolled back
    the canary subset still selected v2, the edge's 10% on the rolled-back version after the end. Now a look finds
    it (one LIST of the namespace's VirtualServices), the rollout is rolled back (`foreign_edit`), one line naming
    that VirtualService, route, split and the `kubectl` way out, and the rollback points the canary subset at the
    stable version; the gateway VirtualService is never written."""
    _gateway_vs(api, 0)
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.split_while_progressing("ml", "m0-gateway")
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert res.state.phase == rl.ROLLED_BACK and res.exit_code == 1, res.state
    assert rl.classify_reason(res.state.reason) == "foreign_edit", res.state.reason
    (said,) = [e for e in logs if e["event"] == "split.foreign_edit"]
    assert (said["other_virtual_service"], said["other_route"], said["split_weights"]) == (
        "ml/m0-gateway", "spec.http[0] (edge)", "90/10"), said
    assert said["hint"] == ("kubectl -n ml patch virtualservice m0-gateway --type=json -p '[{\"op\":\"add\",\"path\":"
                            "\"/spec/http/0/route/1/weight\",\"value\":0},{\"op\":\"add\",\"path\":\"/spec/http/0/"
                            "route/0/weight\",\"value\":100}]'"), said
    (done,) = [e for e in logs if e["event"] == "rollback.completed"]
    assert done["end_cause"] == "foreign_edit", done
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    (moved,) = [e for e in logs if e["event"] == "rollback.canary_subset_repointed"]
    assert moved["other_virtual_service"] == "ml/m0-gateway", moved
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]  # never written by the rollout


def _claimed_then_split(api: Any, canary: int) -> tuple[Any, Any]:
    """v3 claimed on `m0` (100/0, the canary subset on v3: its first write), then the gateway VirtualService split
    (100 - canary)/canary, which no look has seen: (router, target)."""
    import tenacity

    from canary.logs import get
    from canary.model import Target
    from canary.reconcile import execute
    from canary.routing.istio import IstioRouter

    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v3")
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    state, actions = rl.new_rollout(model="m0", stable_version="v1", canary_version="v3", now=1000.0, owner="test")
    execute(router, target, state, actions, log=get())
    _gateway_vs(api, canary)
    return router, target


def _oncall_rollback(router: Any, target: Any) -> list[dict[str, Any]]:
    from canary.logs import get
    from canary.runner import oncall_action

    with structlog.testing.capture_logs() as logs:
        oncall_action(router, target, rl.Rollback(2000.0, "operator: p95 alert"), log=get())
    return logs


def test_a_rollback_repoints_the_canary_subset_where_another_virtual_service_still_splits_with_it(api: Any) -> None:
    """A split on the gateway VirtualService made after the claim, not seen before the rollback (`canary rollback`
    here): stable 100% on `m0`, and the canary subset still selected v3, so the gateway's 10% stayed on the
    rolled-back version after the end. The rollback now points the canary subset at the stable version once its
    write has landed, and says so; the gateway VirtualService is not written (decision 603)."""
    router, target = _claimed_then_split(api, 10)
    logs = _oncall_rollback(router, target)
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    (moved,) = [e for e in logs if e["event"] == "rollback.canary_subset_repointed"]
    assert (moved["other_virtual_service"], moved["other_route"], moved["split_weights"]) == (
        "ml/m0-gateway", "spec.http[0] (edge)", "90/10"), moved
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]


def test_a_rollback_with_no_split_elsewhere_writes_the_destination_rule_no_more_than_before(api: Any) -> None:
    """The gateway VirtualService at 100/0: the rollback's writes are what they were (its route's one write), the
    canary subset left on v3, nothing said."""
    router, target = _claimed_then_split(api, 0)
    before = len(api.writes)
    logs = _oncall_rollback(router, target)
    assert [w[1].rsplit("/", 2)[-2:] for w in api.writes[before:] if "/events" not in w[1]] == [
        ["virtualservices", "m0"]]
    assert subsets(api) == {"stable": "v1", "canary": "v3"}
    assert not [e for e in logs if e["event"].startswith("rollback.canary_subset")]


def test_a_failed_repointing_of_the_canary_subset_is_said_in_one_line_and_the_rollback_stands(api: Any) -> None:
    """The DestinationRule's write refused (an admission webhook, every try): stable 100% has landed on `m0` and
    stays; one line names the other VirtualService's split and the way out (decision 603)."""
    router, target = _claimed_then_split(api, 10)
    api.fail_next(403, times=50, methods=("PUT",), plural=DR, message="denied by policy")
    logs = _oncall_rollback(router, target)
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api)["phase"] == rl.ROLLED_BACK
    assert subsets(api) == {"stable": "v1", "canary": "v3"}
    (kept,) = [e for e in logs if e["event"] == "rollback.canary_subset_kept"]
    assert kept["other_virtual_service"] == "ml/m0-gateway" and "403" in kept["error"], kept
    assert kept["hint"].startswith("kubectl -n ml patch virtualservice m0-gateway"), kept
    assert any(e["event"] == "rollback.completed" for e in logs)


def test_canary_rollback_run_again_finishes_a_repointing_the_first_one_left_undone(api: Any, tmp_path: Any) -> None:
    """The first rollback's stable 100% landed and its re-pointing of the canary subset did not (a webhook
    refusing it here; a process killed between the two writes alike, which says nothing at all): the gateway's 10%
    stayed on v3. On-call's natural next step, `canary rollback` again, answered "stable already serves 100%" and
    wrote nothing, the share left on the rolled-back version. It now looks once more and points the canary subset
    at the stable version, the route not written again (decision 639)."""
    router, target = _claimed_then_split(api, 10)
    api.fail_next(403, times=50, methods=("PUT",), plural=DR, message="denied by policy")
    _oncall_rollback(router, target)
    assert subsets(api) == {"stable": "v1", "canary": "v3"} and record(api)["phase"] == rl.ROLLED_BACK
    with api.handler.lock:  # the webhook fixed
        api.handler.faults.clear()
    before = api.get(GROUP, VS, "ml", "m0")
    from typer.testing import CliRunner

    from canary.cli import app

    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    r = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kubeconfig)])
    assert r.exit_code == 0, r.output
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    # not "nothing written" (decision 639)
    assert r.stdout.startswith("stable 100% already, the canary subset of DestinationRule ml/m0 pointed at v1: "
                               "another VirtualService still splits with it (rollback.canary_subset_repointed): "
                               "ml/m0: no rollout in progress"), r.stdout
    assert api.get(GROUP, VS, "ml", "m0") == before
    import json

    (moved,) = [e for e in map(json.loads, r.stderr.splitlines()) if e["event"] == "rollback.canary_subset_repointed"]
    assert moved["other_virtual_service"] == "ml/m0-gateway", moved
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]


def test_after_a_repointing_the_hint_applied_as_kubectl_would_lets_the_next_rollout_claim_its_canary_subset(
        api: Any) -> None:
    """After 603's re-pointing (the canary subset on the stable version, the gateway still 90/10), the way out is
    `split.foreign_edit`'s hint: applied as `kubectl patch --type=json` applies it (a JSON patch), the gateway's
    route sums to 100 on its stable destination, and the next rollout claims: its canary subset pointed at its own
    version again (not read as a foreign edit or a split left by the re-pointing), promoted. A guard of 603/602."""
    import json
    import shlex

    import kubernetes

    from canary.routing.claims import split_on_other

    router, target = _claimed_then_split(api, 10)
    _oncall_rollback(router, target)
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    gateway = api.get(GROUP, VS, "ml", "m0-gateway")
    hint = shlex.split(split_on_other(gateway, "m0.ml.svc.cluster.local").hint)
    assert hint[:6] == ["kubectl", "-n", "ml", "patch", "virtualservice", "m0-gateway"] and hint[6:8] == [
        "--type=json", "-p"], hint
    co = kubernetes.client.CustomObjectsApi(api.api_client())
    co.patch_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "m0-gateway", json.loads(hint[8]),
                                      _content_type="application/json-patch+json")
    edge = api.get(GROUP, VS, "ml", "m0-gateway")["spec"]["http"][0]["route"]
    assert [(d["destination"]["subset"], d["weight"]) for d in edge] == [("stable", 100), ("canary", 0)]
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v4", FakeClock(10.0)).run()
    assert res.state.phase == rl.PROMOTED and res.exit_code == 0, res.state
    assert subsets(api) == {"stable": "v4", "canary": "v4"}
    assert not [e for e in logs if e["event"] in ("split.foreign_edit", "weights.foreign_edit")]


def test_the_hint_for_a_split_with_no_stable_destination_gives_the_share_to_another_so_the_weights_sum_to_100(
        api: Any) -> None:
    """The gateway's route splits 90/10 between another service (a legacy deployment) and m0's canary subset, with
    no stable destination of m0: `split.foreign_edit`'s hint set the canary's weight to 0 and gave its share to no
    one, the route left at 90 in all, which Istio's validation before 1.15 refuses ("total destination weight 90 !=
    100"): the way out on-call was handed failed. The share now goes to the first other destination with weight,
    applied as `kubectl patch --type=json` applies it (decision 641)."""
    import json
    import shlex

    import kubernetes

    from canary.routing.claims import split_on_other

    _gateway_vs(api, 10)

    def legacy(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["destination"] = {"host": "m0-legacy"}
    api.edit(GROUP, VS, "ml", "m0-gateway", legacy)
    found = split_on_other(api.get(GROUP, VS, "ml", "m0-gateway"), "m0.ml.svc.cluster.local")
    assert found is not None and found.weights == "90/10", found
    co = kubernetes.client.CustomObjectsApi(api.api_client())
    co.patch_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "m0-gateway", json.loads(shlex.split(found.hint)[8]),
                                      _content_type="application/json-patch+json")
    edge = api.get(GROUP, VS, "ml", "m0-gateway")["spec"]["http"][0]["route"]
    assert [(d["destination"]["host"], d["weight"]) for d in edge] == [("m0-legacy", 100), ("m0", 0)], edge

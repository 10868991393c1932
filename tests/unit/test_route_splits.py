"""`routing.splits.other_routes`: the one rule for which routes and destinations count as a split with
the canary subset, shared by `claims.split_elsewhere` (a claim refused) and `stable.drop_canary_splits`
(a rollback's write). Decision 129."""

from __future__ import annotations

from typing import Any

from canary.routing.claims import split_elsewhere
from canary.routing.patch import RouteRef
from canary.routing.splits import other_routes
from canary.routing.stable import drop_canary_splits

HOST = "rec.ml.svc.cluster.local"
REF = RouteRef(index=0, stable=0, canary=1, host="rec")


def vs(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "rec", "namespace": "ml"}, "spec": spec}


def dest(host: str, subset: str, weight: Any = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def test_driven_http_routes_are_skipped_and_tcp_tls_counted() -> None:
    obj = vs(http=[{"route": [dest("rec", "stable", 90), dest("rec", "canary", 10)]},
                   {"route": [dest("rec", "stable", 80), dest("rec", "canary", 20)]}],
             tcp=[{"route": [dest("rec", "stable", 70), dest("rec", "canary", 30)]}],
             tls=[{"route": [dest("rec", "canary", 5)]}])
    got = [(s.field, s.share, s.rest, s.stable) for s in other_routes(obj, HOST, driven={0})]
    assert got == [("spec.http[1]", 20, 80, (0,)), ("spec.tcp[0]", 30, 70, (0,)), ("spec.tls[0]", 100, 0, ())]


def test_a_lone_destination_gets_100_and_odd_weights_0() -> None:
    obj = vs(http=[{"route": [dest("rec", "canary", 0)]},  # alone: Istio sends it everything
                   {"route": [dest("rec", "stable", "90"), dest("rec", "canary", -5), dest("rec", "canary", 7)]},
                   {"route": [dest("rec", "stable", 50), "not a mapping", {"weight": 50}]},
                   {"route": "not a list"}, "not a route"])
    got = [(s.index, s.canary, s.rest) for s in other_routes(obj, HOST, driven=set())]
    assert got == [(0, ((0, 100),), 0), (1, ((1, 0), (2, 7)), 0), (2, (), 50)]


def test_only_the_rollouts_service_is_the_canary() -> None:
    obj = vs(http=[{"route": [dest("rec", "stable", 50), dest("other", "canary", 20),
                              dest("rec.ml.svc.cluster.local", "canary", 10), dest("rec.other.svc.cluster.local",
                                                                                   "canary", 15),
                              dest("REC", "canary", 5), {"destination": {"host": 7, "subset": "canary"}, "weight": 1}]}])
    [split] = other_routes(obj, HOST, driven=set())
    # a short name is relative to the VirtualService's namespace, case aside; another namespace's is another service
    assert (split.canary, split.rest, split.stable) == (((2, 10), (4, 5)), 86, (0,))


def test_the_callers_differ_only_where_they_mean_to() -> None:
    """A lone canary destination is a deliberate route to it for both; another host's `canary` subset neither's."""
    lone = vs(http=[{"route": [dest("rec", "stable", 100), dest("rec", "canary", 0)]},
                    {"route": [dest("rec", "canary", 3)]}])
    assert split_elsewhere(lone, REF) == ""
    assert drop_canary_splits(lone, HOST, driven={0}) == []
    foreign = vs(http=[{"route": [dest("rec", "stable", 100), dest("rec", "canary", 0)]},
                       {"route": [dest("rec", "stable", 60), dest("other", "canary", 40)]}])
    assert split_elsewhere(foreign, REF) == ""
    assert drop_canary_splits(foreign, HOST, driven={0}) == []
    split = vs(http=[{"route": [dest("rec", "stable", 100), dest("rec", "canary", 0)]}],
               tls=[{"name": "grpc", "route": [dest("rec", "stable", 60), dest("rec", "canary", 40)]}])
    assert "spec.tls[0] (grpc) splits its traffic 60/40" in split_elsewhere(split, REF)
    assert drop_canary_splits(split, HOST, driven={0}) == ["spec.tls[0]"]
    assert [d["weight"] for d in split["spec"]["tls"][0]["route"]] == [100, 0]


def test_a_split_another_virtual_services_rollout_made_says_to_wait_for_it() -> None:
    """Another VirtualService of the namespace (the gateway's) at 80/20 because a rollout of v2 runs there, on the
    same DestinationRule: the claim is refused (decision 578), but it said "set that route's canary weight to 0
    first", which tampers with that running rollout. It names the rollout and says to wait for it now; a split
    beside another route's rollout, or beside an ended one, keeps the old advice (decision 585)."""
    from dataclasses import replace

    from canary import rollout as rl
    from canary.routing.claims import split_in_other
    from canary.routing.patch import STATE_ANNOTATION

    state, _ = rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1000.0, route="edge")

    def gateway(record: rl.RolloutState) -> dict[str, Any]:
        obj = vs(http=[{"name": "edge", "route": [dest("rec", "stable", 80), dest("rec", "canary", 20)]},
                       {"name": "other", "route": [dest("rec", "stable", 100)]}])
        obj["metadata"] = {"name": "rec-gateway", "namespace": "ml", "annotations": {STATE_ANNOTATION: record.to_json()}}
        return obj

    def said(record: rl.RolloutState) -> str:
        return split_in_other(gateway(record), HOST, dr="ml/rec", driven="ml/rec")[0]

    running = said(replace(state, phase=rl.PROGRESSING))
    assert running.startswith("ml/rec-gateway: spec.http[0] (edge) splits its traffic 80/20 with subset 'canary'")
    assert running.endswith("that split is the rollout of v2 (progressing) recorded on ml/rec-gateway, and two "
                            "rollouts cannot share one canary subset; wait for that rollout to end (or roll it "
                            "back), then run this one again"), running
    for record in (replace(state, phase=rl.PROGRESSING, route="other"), replace(state, phase=rl.ROLLED_BACK)):
        assert said(record).endswith("set that route's canary weight to 0 first"), record

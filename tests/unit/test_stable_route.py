"""`canary.routing.stable`: stable 100% on a route of any shape (pure, table-driven)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary.errors import TargetError
from canary.model import Weights
from canary.routing import stable


def dest(subset: str, weight: Any = None, host: str = "m") -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def vs(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": "m"}, "spec": {"http": list(routes)}}


def weights_of(obj: dict[str, Any]) -> list[list[Any]]:
    return [[d.get("weight") for d in r["route"]] for r in obj["spec"]["http"]]


MAIN = {"route": [dest("stable", 80), dest("canary", 20)]}
COPY = {"name": "debug", "match": [{"headers": {"x": {"exact": "1"}}}], "route": [dest("stable", 80), dest("canary", 20)]}
SHADOW = {"name": "shadow", "route": [dest("stable", 0), dest("canary", 100)]}


@pytest.mark.parametrize("case, before, recorded, after", [
    ("a third destination", vs({"route": [dest("stable", 80), dest("canary", 20), dest("shadow", 0)]}), None,
     [[100, 0, 0]]),
    ("the canary subset renamed", vs({"route": [dest("stable", 80), dest("canary-v2", 20)]}), None, [[100, 0]]),
    ("weights of any type", vs({"route": [dest("stable", "80"), dest("canary", 20.5)]}), None, [[100, 0]]),
    ("stable's weight missing", vs({"route": [dest("stable"), dest("canary", 20)]}), None, [[100, 0]]),
    ("a copy with the same weights", vs(COPY, MAIN), Weights(80, 20), [[100, 0], [100, 0]]),
    ("a shadow route beside the recorded one", vs(SHADOW, MAIN), Weights(80, 20), [[0, 100], [100, 0]]),
    ("a stable-only route beside", vs({"route": [dest("stable")]}, MAIN), None, [[None], [100, 0]]),
])
def test_stable_gets_100_and_every_other_destination_0(case: str, before: dict[str, Any], recorded: Weights | None,
                                                       after: list[list[Any]]) -> None:
    kept = copy.deepcopy(before)
    out = stable.with_stable_only(before, recorded=recorded, state="{}")
    assert weights_of(out) == after, case
    assert before == kept  # a copy: the input is untouched
    for r_out, r_in in zip(out["spec"]["http"], kept["spec"]["http"]):  # only weights change
        assert {k: v for k, v in r_out.items() if k != "route"} == {k: v for k, v in r_in.items() if k != "route"}
        assert [d["destination"] for d in r_out["route"]] == [d["destination"] for d in r_in["route"]]


def test_a_named_route_is_the_only_one_touched() -> None:
    out = stable.with_stable_only(vs({**COPY, "name": "primary"}, {**MAIN, "name": "other"}), route_name="primary")
    assert weights_of(out) == [[100, 0], [80, 20]]


def test_a_recorded_route_renamed_since_is_found_by_the_weights_the_rollout_wrote() -> None:
    renamed = vs(SHADOW, {**MAIN, "name": "main"})
    out = stable.with_stable_only(renamed, route_name="primary", recorded=Weights(80, 20))
    assert weights_of(out) == [[0, 100], [100, 0]]
    with pytest.raises(TargetError, match="no route named 'primary'"):
        stable.with_stable_only(renamed, route_name="primary", recorded=Weights(90, 10))


@pytest.mark.parametrize("broken, match", [
    (vs({"route": [dest("stable-x", 80), dest("canary", 20)]}), "no destinations with subset 'stable'"),
    (vs({"route": [dest("stable", 80), dest("stable", 20, host="n")]}), "2 destinations with subset 'stable'"),
    (vs({"route": []}), "missing or empty"),
])
def test_a_route_with_no_single_stable_destination_is_refused_naming_it(broken: dict[str, Any], match: str) -> None:
    with pytest.raises(TargetError, match=match) as err:
        stable.with_stable_only(broken)
    assert "ml/m" in str(err.value) and "spec.http[0].route" in str(err.value)


def test_the_view_reads_the_share_every_non_stable_destination_gets() -> None:
    routes = stable.stable_routes(vs({"route": [dest("stable", 80), dest("canary", 15), dest("shadow", 5)]}))
    assert stable.view(vs({"route": [dest("stable", 80), dest("canary", 15), dest("shadow", 5)]}), routes) == \
        (Weights(80, 20), (80, [15, 5]))


HOST = "m.ml.svc.cluster.local"


@pytest.mark.parametrize("route, host, seen, shares", [
    # a copy of the stable destination is stable (decision 218), with or without the DestinationRule's host
    ([dest("stable", 100), dest("canary", 0), dest("stable", 100)], HOST, Weights(100, 0),
     {"stable": 100, "canary": 0, "others": 0}),
    ([dest("stable", 100), dest("canary", 0), dest("stable", 100)], "", Weights(100, 0),
     {"stable": 100, "canary": 0, "others": 0}),
    ([dest("stable", 50), dest("canary", 30), dest("shadow", 20)], HOST, Weights(50, 50),
     {"stable": 50, "canary": 30, "others": 20}),
    # the stable destination deleted: the canary, the route's only destination, gets every request (219)
    ([dest("canary", 0)], HOST, Weights(0, 100), {"stable": 0, "canary": 100, "others": 0}),
])
def test_the_shares_are_what_istio_sends_to_each_version(
        route: list[Any], host: str, seen: Weights, shares: dict[str, int]) -> None:
    obj = vs({"route": route})
    routes = stable.stable_routes(obj, host=host)
    assert stable.view(obj, routes)[0] == seen and stable.shares(obj, routes) == shares
    assert sum(d["weight"] == 100 for d in stable.with_stable_only(obj, host=host)["spec"]["http"][0]["route"]) == 1


def test_a_route_left_with_only_its_canary_gets_the_stable_destination_back_only_with_the_host() -> None:
    obj = vs({"route": [dest("canary", 0)]})
    out = stable.with_stable_only(obj, host=HOST)["spec"]["http"][0]["route"]
    assert out == [dest("canary", 0), dest("stable", 100)]
    with pytest.raises(TargetError, match="no destinations with subset 'stable'"):
        stable.with_stable_only(obj)
    with pytest.raises(TargetError):  # a stable destination renamed is not deleted: still refused
        stable.with_stable_only(vs({"route": [dest("stable-old", 80), dest("canary", 20)]}), host=HOST)


REDIRECT = {"redirect": {"uri": "/maintenance"}}
ANSWERED = {"directResponse": {"status": 503, "body": {"string": "down"}}}


@pytest.mark.parametrize("answer, how", [
    (REDIRECT, "redirect"), (ANSWERED, "directResponse"), ({"direct_response": {"status": 503}}, "directResponse")])
@pytest.mark.parametrize("dests", [None, []], ids=["no route", "route emptied"])
@pytest.mark.parametrize("host", [HOST, ""], ids=["host known", "no rule"])
@pytest.mark.parametrize("name", ["primary", ""], ids=["named", "the only one"])
def test_a_route_that_answers_every_request_itself_is_left_as_it_is_and_read_as_none_to_the_canary(
        answer: dict[str, Any], how: str, dests: list[Any] | None, host: str, name: str) -> None:
    # the rollout's route edited into a redirect (or a direct response) at 80/20: every stable-100% write raised
    # "no route named" / "missing or empty", a TrafficUnsafe (exit 6, critical) on a route that sends nothing to
    # the canary; and an emptied list beside it got a stable destination added, which Istio refuses (decision 522)
    route: dict[str, Any] = {"name": "primary", **answer} if name else dict(answer)
    if dests is not None:
        route["route"] = dests
    obj = vs(route)
    kept = copy.deepcopy(obj)
    routes = stable.stable_routes(obj, name, recorded=Weights(80, 20), host=host)
    assert [(r.index, r.nothing) for r in routes] == [(0, how)]
    assert stable.view(obj, routes) == (Weights(100, 0), (None, []))
    assert stable.shares(obj, routes) == {"stable": 0, "canary": 0, "others": 0}
    out = stable.with_stable_only(obj, route_name=name, recorded=Weights(80, 20), host=host, state="{}")
    assert out["spec"] == kept["spec"] and out["metadata"]["annotations"] == {stable.STATE_ANNOTATION: "{}"}
    assert not stable.emptied(obj, name)


def test_beside_a_redirected_route_a_copy_of_its_split_still_gets_stable_100() -> None:
    # its 80/20 moved to another route before the redirect: when in doubt, stable 100% there; the redirect untouched
    obj = vs({"name": "primary", **REDIRECT, "route": []}, {**MAIN, "name": "primary-v2"},
             {**SHADOW, "match": [{"x": 1}]})
    out = stable.with_stable_only(obj, route_name="primary", recorded=Weights(80, 20), host=HOST)
    assert out["spec"]["http"][0] == obj["spec"]["http"][0]
    assert [[d["weight"] for d in r["route"]] for r in out["spec"]["http"][1:]] == [[100, 0], [0, 100]]


@pytest.mark.parametrize("route, match", [
    # its requests are routed by the VirtualService it names, to the canary maybe: not "nothing to the canary"
    ({"name": "primary", "delegate": {"name": "rec-routes", "namespace": "edge"}},
     "delegates to VirtualService edge/rec-routes"),
    # every destination another service's: the rule's host may be the one edited (decision 523), not the route
    ({"name": "primary", "route": [dest("v1", 100, host="sorry-page")]}, "no route named 'primary'"),
    # neither destinations nor an answer of its own: Istio refuses it, and what it serves is not known
    ({"name": "primary", "route": None}, "no route named 'primary'"),
])
def test_a_route_that_may_still_reach_the_canary_is_still_refused(route: dict[str, Any], match: str) -> None:
    with pytest.raises(TargetError, match=match):
        stable.with_stable_only(vs(route), route_name="primary", recorded=Weights(80, 20), host=HOST)
    if "delegate" in route:  # the only route, unnamed: the delegate named all the same
        with pytest.raises(TargetError, match="delegates to VirtualService edge/rec-routes"):
            stable.with_stable_only(vs({k: v for k, v in route.items() if k != "name"}), host=HOST)


OTHER = {"name": "other-model", "route": [dest("stable", 50, host="n"), dest("canary", 50, host="n")]}


@pytest.mark.parametrize("rule", [HOST, ""], ids=["rule agreeing", "no rule"])
def test_a_claimed_only_route_redirected_beside_another_models_route_is_nothing_to_the_canary(rule: str) -> None:
    # decision 548: the rollout claimed the only route (no name in its record), another model's was added since,
    # then the rollout's was redirected: no route sends anything to the noted service, nothing to write on any
    from canary.routing import patch

    obj = vs(OTHER, {"name": "primary", **REDIRECT})
    record = '{"started_at": 5.0, "phase": "progressing"}'
    patch.note_service(obj, record, HOST)
    patch.annotate(obj, patch.STATE_ANNOTATION, record)
    kept = copy.deepcopy(obj)
    routes = stable.stable_routes(obj, "", recorded=Weights(80, 20), host=rule)
    assert [(r.index, r.nothing) for r in routes] == [(1, "redirect")]
    assert stable.view(obj, routes) == (Weights(100, 0), (None, []))
    assert stable.with_stable_only(obj, recorded=Weights(80, 20), host=rule)["spec"] == kept["spec"]
    # still refused: a destination of the noted service left (a split, its stable destination renamed); a route
    # that delegates or cannot be read; no note (the rule alone may be the edit; with no rule either, every route
    # with a `stable` destination is a candidate, decision 114). A rule naming another service is refused before
    # (`istio._stable_service`, decision 523)
    unsafe = [({}, vs(OTHER, {"name": "primary", **REDIRECT}, {"route": [dest("stable-x", 80), dest("canary", 20)]})),
              ({}, vs(OTHER, {"name": "primary", **REDIRECT}, {"delegate": {"name": "x"}})),
              ({}, vs(OTHER, {"name": "primary", **REDIRECT}, {"route": [{"destination": "m"}]})),
              ({"note": False, "host": HOST}, vs(OTHER, {"name": "primary", **REDIRECT}))]
    for how, shape in unsafe:
        if how.get("note", True):
            patch.note_service(shape, record, HOST)
        patch.annotate(shape, patch.STATE_ANNOTATION, record)
        with pytest.raises(TargetError):
            stable.stable_routes(shape, "", recorded=Weights(80, 20), host=how.get("host", rule))


def test_the_service_is_noted_beside_its_rollout_and_read_only_for_that_rollout() -> None:
    # decision 523: noted at the rollout's writes, bound to it by `started_at`; a record written since by a writer
    # that notes none (another rollout) leaves the note unread, as does an unreadable note
    from canary.routing import patch

    obj = vs(MAIN)
    assert patch.noted_service(obj) == ""
    record = '{"started_at": 5.0, "phase": "progressing"}'
    patch.note_service(obj, record, HOST)
    patch.annotate(obj, patch.STATE_ANNOTATION, record)
    assert patch.noted_service(obj) == HOST
    patch.annotate(obj, patch.STATE_ANNOTATION, '{"started_at": 6.0, "phase": "pending"}')
    assert patch.noted_service(obj) == ""
    patch.annotate(obj, patch.SERVICE_ANNOTATION, "{garbage")
    assert patch.noted_service(obj) == ""
    bare = vs(MAIN)
    patch.note_service(bare, "not a record", HOST)  # no record, no note
    assert "metadata" not in bare or "annotations" not in bare["metadata"]
    assert stable.route_hosts(vs({**MAIN, "name": "a"}, {"name": "b", "route": [dest("stable", 100, host="n")]}),
                              "a") == {HOST}


def test_a_claimed_route_is_found_by_the_name_noted_while_it_is_still_the_rollouts() -> None:
    # decision 549: the name of the route written is noted beside the service; a record naming no route (it claimed
    # the only one) finds it by that name once another route is added, while the name picks one route that sends to
    # the noted service or the rule's (a route and rule re-pointed together), or answers every request itself
    from canary.routing import patch

    record = '{"started_at": 5.0, "phase": "progressing"}'

    def noted(*routes: dict[str, Any], route: str = "primary") -> dict[str, Any]:
        obj = vs(*routes)
        patch.note_service(obj, record, HOST, route=route)
        patch.annotate(obj, patch.STATE_ANNOTATION, record)
        return obj

    mine = {**MAIN, "name": "primary"}
    renamed = {"name": "primary", "route": [dest("stable", 80, host="mb"), dest("canary", 20, host="mb")]}
    assert patch.noted_route(noted(OTHER, mine)) == "primary" and patch.noted_service(noted(OTHER, mine)) == HOST
    assert stable.claimed_route(noted(OTHER, mine)) == "primary"
    assert stable.claimed_route(noted(OTHER, {"name": "primary", **REDIRECT})) == "primary"
    assert stable.claimed_route(noted(OTHER, renamed), "mb.ml.svc.cluster.local") == "primary"
    assert stable.claimed_route(noted(OTHER, renamed)) == ""  # another service, the rule not naming it
    assert stable.claimed_route(noted(OTHER, mine, route="other-model")) == ""  # another model's route
    assert stable.claimed_route(noted(OTHER, {**mine, "name": "main"})) == ""  # renamed since
    assert stable.claimed_route(noted(mine, {**mine, "match": [{"x": 1}]})) == ""  # two of that name
    assert stable.claimed_route(noted(mine)) == ""  # the only route: "", as the record names it
    unnamed = noted(OTHER, mine, route="")  # an unnamed route, or an older canary's note: nothing noted
    assert patch.noted_route(unnamed) == "" and stable.claimed_route(unnamed) == ""


def test_a_route_found_by_the_rule_alone_is_not_claimed_while_another_still_sends_to_the_noted_service() -> None:
    # decision 555: the name noted and the rule agree on a route while another still sends to the noted service
    # (another model's route given the rollout's route's name, the rule edited to that model's service; or the note
    # edited by hand): which is the rollout's cannot be told, refused. Re-pointed together, the name is trusted
    from canary.routing import patch

    record = '{"started_at": 5.0, "phase": "progressing"}'
    theirs = {**OTHER, "name": "primary"}  # the other model's route (service n) now named as the rollout's was
    obj = vs(theirs, {**MAIN, "name": "m0-route"})
    patch.note_service(obj, record, HOST, route="primary")
    patch.annotate(obj, patch.STATE_ANNOTATION, record)
    with pytest.raises(TargetError, match=r"route\(s\) \['m0-route'\] to m.ml.svc.cluster.local"):
        stable.claimed_route(obj, "n.ml.svc.cluster.local")
    obj["spec"]["http"][1] = {"name": "m0-route", **REDIRECT}  # the rollout's service routed nowhere any more
    assert stable.claimed_route(obj, "n.ml.svc.cluster.local") == "primary"


def test_a_route_found_by_the_name_and_rule_alone_with_another_match_than_noted_is_not_the_rollouts() -> None:
    # decision 570: 555's case with the rollout's own route redirected (or deleted): the noted service routed nowhere,
    # as when a route and its rule are re-pointed together (549's case (1)). The match noted beside the name tells
    # them apart: the other model's route carrying the name takes other requests; the re-pointed route its own
    from canary.routing import patch

    record = '{"started_at": 5.0, "phase": "progressing"}'
    ours = {**MAIN, "match": [{"uri": {"prefix": "/v2/models/m"}}]}
    theirs = {**OTHER, "name": "primary", "match": [{"uri": {"prefix": "/v2/models/n"}}]}
    obj = vs(theirs, {"name": "m0-route", **REDIRECT})
    patch.note_service(obj, record, HOST, route="primary", match=patch.route_match(ours))
    patch.annotate(obj, patch.STATE_ANNOTATION, record)
    assert stable.claimed_route(obj, "n.ml.svc.cluster.local") == ""
    assert stable.own_hosts(obj, "primary") == set() and stable.not_noted(theirs, obj)
    repointed = {**ours, "name": "primary", "route": [dest("stable", 80, host="m0b"), dest("canary", 20, host="m0b")]}
    obj["spec"]["http"][0] = repointed  # 549's case (1): the same match, re-pointed with its rule
    assert stable.claimed_route(obj, "m0b.ml.svc.cluster.local") == "primary"
    assert stable.own_hosts(obj, "primary") == {"m0b.ml.svc.cluster.local"} and not stable.not_noted(repointed, obj)


def test_the_match_noted_is_of_the_requests_taken_not_of_the_text() -> None:
    # decision 580 (review of 570): the blocks of a `match` are OR-ed, and `[]` takes every request as no `match`
    # does; a GitOps tool re-rendering the route (blocks reordered, an empty list written) is the same route. Its
    # fingerprint changed, and a route re-pointed with its rule (549's case (1)) was then refused, exit 6
    from canary.routing import patch

    a, b = {"uri": {"prefix": "/v2/models/m"}}, {"headers": {"x-model": {"exact": "m"}}}
    assert patch.route_match({"match": [a, b]}) == patch.route_match({"match": [b, a]})
    assert patch.route_match({"match": []}) == patch.route_match({}) == patch.route_match({"match": None})
    assert patch.route_match({"match": [a]}) != patch.route_match({"match": [a, b]}) != patch.route_match({})
    assert patch.route_match({"match": [{**b, "uri": a["uri"]}]}) != patch.route_match({"match": [a, b]})

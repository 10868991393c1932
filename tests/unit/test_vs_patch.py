"""The weight/subset edits change exactly what they say, on any input.

Example tests pin the messages a user reads; hypothesis tests prove that any
VirtualService-shaped input ends either in a valid patched object whose every
other byte is unchanged, or in a TargetError — never another exception.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from canary.errors import TargetError
from canary.model import Weights
from canary.routing.patch import (
    STATE_ANNOTATION,
    locate_route,
    may_be_route,
    read_state,
    read_weights,
    route_names,
    same_route,
    subset_versions,
    with_subset_version,
    with_weights,
)


def dest(subset: str, weight: int | None = None, host: str = "rec-model") -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def vs(*routes: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "rec-model", "namespace": "ml", **meta},
            "spec": {"hosts": ["rec-model"], "http": list(routes)}}


def primary(name: str = "primary", **extra: Any) -> dict[str, Any]:
    return {"name": name, "route": [dest("stable", 100), dest("canary", 0)], **extra}


def dr(*subsets: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "rec-model", "namespace": "ml"},
            "spec": {"host": "rec-model.ml.svc.cluster.local", "subsets": list(subsets)}}


# --- examples ------------------------------------------------------------------------


def test_only_the_weights_and_annotation_change_byte_for_byte() -> None:
    other = {"name": "shadow", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [dest("canary")], "mirror": {"host": "m"}, "fault": {"delay": {"fixedDelay": "1s"}}}
    original = vs(other, primary(retries={"attempts": 3}, timeout="2s", headers={"request": {"set": {"a": "b"}}}),
                  labels={"team": "ml"})
    snapshot = json.dumps(original)
    out = with_weights(original, Weights.canary_at(30), route_name="primary", state='{"s":1}')
    assert json.dumps(original) == snapshot  # input untouched
    assert [d["weight"] for d in out["spec"]["http"][1]["route"]] == [70, 30]
    assert out["metadata"]["annotations"] == {STATE_ANNOTATION: '{"s":1}'}
    out["spec"]["http"][1]["route"][0]["weight"] = 100
    out["spec"]["http"][1]["route"][1]["weight"] = 0
    del out["metadata"]["annotations"]
    assert json.dumps(out) == snapshot  # same keys, same order, same values


def test_canary_listed_first_and_missing_weights() -> None:
    original = vs({"route": [dest("canary"), dest("stable")]})
    out = with_weights(original, Weights(80, 20))
    assert out["spec"]["http"][0]["route"] == [dest("canary", 20), dest("stable", 80)]
    assert read_weights(out, locate_route(out)) == Weights(80, 20)


def test_existing_annotations_are_kept() -> None:
    out = with_weights(vs(primary(), annotations={"a": "b", STATE_ANNOTATION: "old"}), Weights(100, 0), state="new")
    assert out["metadata"]["annotations"] == {"a": "b", STATE_ANNOTATION: "new"}
    assert read_state(out) == "new"
    assert read_state(vs(primary())) is None


@pytest.mark.parametrize(
    ("obj", "route", "message"),
    [
        (vs(), "", r"ml/rec-model: spec.http has no HTTP routes"),
        (vs(primary("a"), primary("b")), "", r"spec.http has 2 routes \[.a., .b.\]; name the one"),
        (vs(primary("a")), "b", r"spec.http has no route named 'b' \(routes: \['a'\]\)"),
        (vs(primary("a"), primary("a")), "a", r"2 routes named 'a'"),
        (vs({"route": [dest("stable"), dest("canary"), dest("canary")]}), "",
         r"ml/rec-model: spec.http\[0\].route has 3 destinations, expected 2 \(subsets stable, canary\)"),
        (vs({"route": [dest("stable")]}), "", r"has 1 destinations, expected 2"),
        (vs({"route": [dest("stable"), dest("stable")]}), "", r"route\[1\].destination.subset is 'stable'"),
        (vs({"route": [dest("stable"), dest("v2")]}), "", r"route\[1\].destination.subset is 'v2'"),
        (vs({"route": [dest("stable"), dest("canary", host="x")]}), "", r"different hosts \['rec-model', 'x'\]"),
        (vs({"route": [dest("stable"), {"weight": 1}]}), "", r"route\[1\].destination is missing"),
        ({"metadata": {"name": "n", "namespace": "s"}}, "", r"s/n: spec is missing"),
    ],
)
def test_shape_errors_name_the_object_and_field(obj: Any, route: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        with_weights(obj, Weights(90, 10), route_name=route)


@pytest.mark.parametrize(("weights", "message"), [((50, 40), "50\\+40 do not sum to 100"),
                                                  (("90", 10), "weight is '90'"), ((True, 99), "weight is True")])
def test_bad_current_weights_are_reported(weights: tuple[Any, Any], message: str) -> None:
    obj = vs({"route": [dest("stable", weights[0]), dest("canary", weights[1])]})  # type: ignore[arg-type]
    with pytest.raises(TargetError, match=message):
        read_weights(obj, locate_route(obj))
    assert read_weights(with_weights(obj, Weights(60, 40)), locate_route(obj)) == Weights(60, 40)


def test_subsets_read_checked_and_pointed() -> None:
    rule = dr({"name": "stable", "labels": {"version": "v1", "app": "m"}}, {"name": "canary", "labels": {"version": "v2"}})
    assert subset_versions(rule, host="rec-model") == {"stable": "v1", "canary": "v2"}
    out = with_subset_version(rule, "stable", "v2")
    assert out["spec"]["subsets"][0]["labels"] == {"version": "v2", "app": "m"}
    assert rule["spec"]["subsets"][0]["labels"]["version"] == "v1"
    assert with_subset_version(out, "stable", "v2") == out
    with pytest.raises(TargetError, match=r"ml/rec-model: spec.subsets does not define subset 'canary'"):
        subset_versions(dr({"name": "stable"}))
    with pytest.raises(TargetError, match="spec.host 'rec-model.ml.svc.cluster.local' is .*, but the route"):
        subset_versions(rule, host="other")


@pytest.mark.parametrize("route_host,route_ns,dr_host,same", [
    ("rec-model", "ml", "rec-model", True),
    ("rec-model", "ml", "rec-model.ml.svc.cluster.local", True),
    ("REC-MODEL.ml.svc.cluster.local.", "ml", "rec-model", True),
    ("rec-model", "ml", "rec-model.other.svc.cluster.local", False),  # same short name, another namespace
    ("rec-model.other.svc.cluster.local", "ml", "rec-model", False),
    ("rec-model", "ml", "rec-model.ml", False),  # a dotted name is taken as written, as Istio does
])
def test_hosts_are_resolved_with_namespaces_as_istio_does(route_host: str, route_ns: str, dr_host: str,
                                                          same: bool) -> None:
    from canary.routing.patch import fqdn

    rule = {"metadata": {"name": "rec-model", "namespace": "ml"},
            "spec": {"host": dr_host, "subsets": [{"name": "stable", "labels": {"version": "v1"}},
                                                  {"name": "canary", "labels": {"version": "v2"}}]}}
    assert (fqdn(route_host, route_ns) == fqdn(dr_host, "ml")) is same
    if same:
        assert subset_versions(rule, host=route_host, host_namespace=route_ns)["stable"] == "v1"
    else:
        with pytest.raises(TargetError, match="but the route sends traffic to"):
            subset_versions(rule, host=route_host, host_namespace=route_ns)
    with pytest.raises(ValueError):
        with_subset_version(rule, "blue", "v2")


# --- properties ----------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-3, 120) | st.text(max_size=4)
junk = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                    max_leaves=6)
subset_names = st.sampled_from(["stable", "canary", "canary", "stable", "blue"]) | junk
destinations = st.fixed_dictionaries(
    {"destination": st.fixed_dictionaries({"host": st.sampled_from(["rec-model", "rec-model", "x"]) | junk,
                                           "subset": subset_names}, optional={"port": junk}) | junk},
    optional={"weight": st.integers(0, 100) | junk, "headers": junk},
)
routes = st.fixed_dictionaries(
    {"route": st.lists(destinations, max_size=3) | junk},
    optional={"name": st.sampled_from(["primary", "grpc"]) | junk, "retries": junk, "timeout": junk,
              "match": junk, "mirror": junk, "fault": junk},
) | junk
metas = st.fixed_dictionaries({"name": st.just("rec-model"), "namespace": st.just("ml")},
                              optional={"annotations": st.dictionaries(st.text(max_size=4), st.text(max_size=4)) | junk,
                                        "resourceVersion": st.text(max_size=3)}) | junk
# Well-formed routes (either order, optional weights, extra fields), so many examples do get patched.
good_pairs = st.permutations(["stable", "canary"]).flatmap(lambda order: st.tuples(*[
    st.fixed_dictionaries({"destination": st.fixed_dictionaries({"host": st.just("rec-model"), "subset": st.just(s)},
                                                                optional={"port": junk})},
                          optional={"weight": st.integers(0, 100), "headers": junk}) for s in order]))
good_routes = st.fixed_dictionaries(
    {"route": good_pairs.map(list)},
    optional={"name": st.sampled_from(["primary", "grpc", "other"]), "retries": junk, "timeout": junk,
              "match": junk, "mirror": junk, "fault": junk})
good_vs = st.fixed_dictionaries(
    {"spec": st.fixed_dictionaries({"http": st.lists(good_routes, min_size=1, max_size=2)}, optional={"hosts": junk}),
     "metadata": st.fixed_dictionaries({"name": st.just("rec-model"), "namespace": st.just("ml")}, optional={
         "annotations": st.dictionaries(st.sampled_from(["a", STATE_ANNOTATION]), st.text(max_size=3))})},
    optional={"apiVersion": junk})
bad_vs = st.fixed_dictionaries(
    {"spec": st.fixed_dictionaries({"http": st.lists(good_routes | routes, min_size=1, max_size=3) | junk},
                                   optional={"hosts": junk}) | junk},
    optional={"metadata": metas, "apiVersion": junk},
) | junk
virtual_services = good_vs | bad_vs


def _undo(out: dict[str, Any], original: dict[str, Any], route: str, state: str | None) -> dict[str, Any]:
    """Put back what with_weights may change, so the rest can be compared byte for byte."""
    out = copy.deepcopy(out)
    ref = locate_route(original, route)
    for i in (ref.stable, ref.canary):
        before = original["spec"]["http"][ref.index]["route"][i]
        after = out["spec"]["http"][ref.index]["route"][i]
        if "weight" in before:
            after["weight"] = before["weight"]
        else:
            del after["weight"]
    if state is None:
        return out
    meta_before = original.get("metadata")
    ann_before = meta_before.get("annotations") if isinstance(meta_before, dict) else None
    if meta_before is None:
        out.pop("metadata", None)
    elif ann_before is None:
        if "annotations" in meta_before:  # `annotations: null` was there: with_weights filled it in
            out["metadata"]["annotations"] = None
        else:
            out["metadata"].pop("annotations", None)
    elif STATE_ANNOTATION in ann_before:
        out["metadata"]["annotations"][STATE_ANNOTATION] = ann_before[STATE_ANNOTATION]
    else:
        out["metadata"]["annotations"].pop(STATE_ANNOTATION, None)
    return out


@settings(max_examples=250, deadline=None)
@given(obj=virtual_services, canary=st.integers(0, 100), route=st.sampled_from(["", "primary", "grpc"]),
       state=st.none() | st.text(max_size=8))
@example(obj={"spec": {"http": [{"route": [{"destination": {"host": "rec-model", "subset": "stable"}},
                                           {"destination": {"host": "rec-model", "subset": "canary"}}]}]},
              "metadata": {"name": "rec-model", "namespace": "ml", "resourceVersion": "", "annotations": None}},
         canary=0, route="", state="")  # `annotations: null` (found by a random run)
def test_any_input_ends_patched_or_in_a_target_error(obj: Any, canary: int, route: str, state: str | None) -> None:
    snapshot = json.dumps(obj)
    try:
        out = with_weights(obj, Weights.canary_at(canary), route_name=route, state=state)
    except TargetError as exc:
        event("TargetError")
        assert str(exc).startswith(("ml/rec-model: ", "?/?: "))
        assert json.dumps(obj) == snapshot
        return
    event("patched")
    assert json.dumps(obj) == snapshot  # the input is never mutated
    assert read_weights(out, locate_route(out, route)) == Weights.canary_at(canary)
    if state is not None:  # a blank record reads as none, as a removed one (decision 146)
        assert read_state(out) == (state if state.strip() else None)
    assert json.dumps(_undo(out, obj, route, state)) == snapshot


subsets = st.fixed_dictionaries({"name": st.sampled_from(["stable", "canary", "other"]) | junk},
                                optional={"labels": st.dictionaries(st.sampled_from(["version", "app"]), st.text(max_size=3))
                                          | junk, "trafficPolicy": junk})
good_subsets = st.tuples(*[st.fixed_dictionaries({"name": st.just(n)}, optional={
    "labels": st.dictionaries(st.sampled_from(["version", "app"]), st.text(max_size=3)) | st.none(),
    "trafficPolicy": junk}) for n in ("stable", "canary")]).flatmap(
    lambda pair: st.lists(subsets, max_size=2).flatmap(lambda extra: st.permutations([*pair, *extra])))
rules = st.fixed_dictionaries({"metadata": st.just({"name": "rec-model", "namespace": "ml"}),
                               "spec": st.fixed_dictionaries({"subsets": good_subsets | st.lists(subsets, max_size=4)
                                                              | junk},
                                                             optional={"host": junk}) | junk}) | junk


@settings(max_examples=200, deadline=None)
@given(rule=rules, subset=st.sampled_from(["stable", "canary"]), version=st.text(min_size=1, max_size=4))
def test_any_rule_ends_pointed_or_in_a_target_error(rule: Any, subset: str, version: str) -> None:
    snapshot = json.dumps(rule)
    try:
        out = with_subset_version(rule, subset, version)
    except TargetError as exc:
        event("TargetError")
        assert str(exc).startswith(("ml/rec-model: ", "?/?: "))
        return
    event("pointed")
    assert json.dumps(rule) == snapshot
    assert subset_versions(out)[subset] == version
    other = "canary" if subset == "stable" else "stable"
    assert subset_versions(out)[other] == subset_versions(rule)[other]
    i = next(i for i, s in enumerate(rule["spec"]["subsets"]) if isinstance(s, dict) and s.get("name") == subset)
    restored = copy.deepcopy(out)
    labels_before = rule["spec"]["subsets"][i].get("labels")
    if labels_before is None:
        if "labels" in rule["spec"]["subsets"][i]:
            restored["spec"]["subsets"][i]["labels"] = None
        else:
            del restored["spec"]["subsets"][i]["labels"]
    elif "version" in labels_before:
        restored["spec"]["subsets"][i]["labels"]["version"] = labels_before["version"]
    else:
        del restored["spec"]["subsets"][i]["labels"]["version"]
    assert json.dumps(restored) == snapshot


@pytest.mark.parametrize("routes, a, b, same", [
    (["primary"], "", "primary", True),  # the only route, by name or by none
    (["primary"], "primary", "", True),
    ([""], "", "", True),
    (["primary", "secondary"], "", "primary", False),  # "" picks none among several
    (["primary", "secondary"], "primary", "secondary", False),
    (["primary", "secondary"], "secondary", "secondary", True),
    (["primary"], "", "other", False),  # no such route
    (["primary", "primary"], "primary", "", False),  # two of that name: picks none
])
def test_same_route_is_the_route_locate_route_picks(routes: list[str], a: str, b: str, same: bool) -> None:
    obj = vs(*[primary(n) if n else {"route": [dest("stable", 100), dest("canary", 0)]} for n in routes])
    assert route_names(obj) == tuple(routes)
    assert same_route(route_names(obj), a, b) is same
    if same and a != b:
        assert locate_route(obj, a).index == locate_route(obj, b).index
    assert route_names({"spec": {}}) == () and not same_route((), "", "primary")


@pytest.mark.parametrize("names, recorded, asked, may", [
    (("a", "b"), "b", "a", False),  # another route of the VirtualService: not this one's (decision 242)
    (("a", "b"), "b", "", False),  # the request picks no route
    (("a", "b"), "a", "a", True),
    (("primary",), "", "primary", True),  # one route, spelled either way
    (("renamed",), "primary", "", True),  # the record's route renamed since: picks none, may be this one
    (("a", "b"), "", "a", True),  # recorded with one route, a second added since (decision 249)
    (("a", "c"), "b", "a", True),  # the record's route gone
])
def test_may_be_route_is_false_only_for_another_route_picked(names: tuple[str, ...], recorded: str, asked: str,
                                                             may: bool) -> None:
    assert may_be_route(names, recorded, asked) is may

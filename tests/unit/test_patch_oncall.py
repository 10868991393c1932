"""Reading any weights Istio accepts, and finding the route on-call acts on (issue 8).

`observe_weights` must never refuse a value (a rollback has to work from any
weights) and never report traffic that reaches the canary as stable-only;
`read_weights` stays strict, because a rollout only starts from and continues
with weights it wrote itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.errors import TargetError
from canary.model import STABLE_ONLY, Weights
from canary.routing.patch import locate_route, observe_weights, read_weights, route_for, with_weights

_MISSING = object()


def dest(subset: str, weight: Any = _MISSING, host: str = "rec-model") -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not _MISSING:
        d["weight"] = weight
    return d


def vs(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "rec-model", "namespace": "ml"}, "spec": {"hosts": ["rec-model"], "http": list(routes)}}


def dr(host: str = "rec-model.ml.svc.cluster.local") -> dict[str, Any]:
    return {"metadata": {"name": "rec-model", "namespace": "ml"},
            "spec": {"host": host, "subsets": [{"name": "stable", "labels": {"version": "v1"}},
                                               {"name": "canary", "labels": {"version": "v2"}}]}}


def split(stable: Any = _MISSING, canary: Any = _MISSING, name: str = "primary", **extra: Any) -> dict[str, Any]:
    return {"name": name, "route": [dest("stable", stable), dest("canary", canary)], **extra}


def seen(stable: Any = _MISSING, canary: Any = _MISSING) -> Any:
    obj = vs(split(stable, canary))
    return observe_weights(obj, locate_route(obj))


# --- observe_weights ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "weights", "canonical"), [
    ((100, 0), (100, 0), True),
    ((75, 25), (75, 25), True),
    ((1, 1), (50, 50), False),  # Istio's weights are relative
    ((3, 1), (75, 25), False),
    ((3, 0), (100, 0), False),  # all to stable, but not written as 100/0
    ((2, 1), (67, 33), False),  # rounded half up, summing to 100
    ((1000, 1), (99, 1), False),  # a canary with any traffic is never reported as 0%
    ((1, 1000), (1, 99), False),
    ((200, 200), (50, 50), False),
    ((0, 0), (50, 50), False),  # IST0106: no share is defined; reported as the equal split
    ((_MISSING, 100), (0, 100), False),  # a missing weight is 0, as in Istio
    ((100, _MISSING), (100, 0), False),
    ((_MISSING, _MISSING), (50, 50), False),
    ((-5, 105), (0, 100), False),  # not a non-negative integer: counts as 0
    (("90", 10), (0, 100), False),
    ((True, 99), (0, 100), False),
    ((50.0, 50), (0, 100), False),
    ((None, None), (50, 50), False),
])
def test_any_weights_are_read_as_istio_splits_them(raw: tuple[Any, Any], weights: tuple[int, int],
                                                    canonical: bool) -> None:
    got = seen(*raw)
    assert got.weights == Weights(*weights)
    assert got.canonical is canonical
    assert got.raw == tuple(None if v is _MISSING else v for v in raw)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_the_split_is_proportional_and_never_hides_canary_traffic(s: int, c: int) -> None:
    w = seen(s, c).weights
    if s + c:
        assert abs(w.canary - 100 * c / (s + c)) < 1  # within rounding...
        assert (w.canary == 0) == (c == 0) and (w.stable == 0) == (s == 0)  # ...but never to a false 0% or 100%
    assert seen(s, c).canonical == (s + c == 100)


@pytest.mark.parametrize("raw", [(1, 1), (0, 0), (3, 0), (-5, 105), ("90", 10), (_MISSING, 50), (40, 40)])
def test_promote_still_reads_only_weights_it_could_have_written(raw: tuple[Any, Any]) -> None:
    obj = vs(split(*raw))
    with pytest.raises(TargetError, match="weight"):
        read_weights(obj, locate_route(obj))
    fixed = with_weights(obj, STABLE_ONLY)  # what a rollback writes: only the destinations are needed
    assert read_weights(fixed, locate_route(fixed)) == STABLE_ONLY
    assert observe_weights(fixed, locate_route(fixed)).canonical


# --- route_for ---------------------------------------------------------------------------

PINNED = {"name": "pinned", "match": [{"headers": {"x-canary": {"exact": "1"}}}], "route": [dest("canary")]}
LEGACY = {"name": "legacy", "route": [dest("stable", 50, host="old"), dest("canary", 50, host="old")]}


def test_the_only_route_needs_no_name() -> None:
    assert route_for(vs(split(100, 0, name="")), dr()) == ""
    assert route_for(vs(split(100, 0)), dr()) == ""


def test_the_only_route_with_this_rules_subsets_is_found() -> None:
    assert route_for(vs(PINNED, split(90, 10), LEGACY), dr()) == "primary"
    assert route_for(vs(PINNED, split(1, 1)), dr()) == "primary"  # whatever its weights
    assert route_for(vs(LEGACY, split(90, 10)), dr(host="old")) == "legacy"  # the DR's host decides


def test_the_recorded_weights_pick_among_several() -> None:
    shadow = split(0, 100, name="shadow", match=[{"headers": {"x-canary": {"exact": "1"}}}])
    obj = vs(shadow, split(75, 25))
    assert route_for(obj, dr(), recorded=Weights(75, 25)) == "primary"
    assert route_for(obj, dr(), recorded=Weights(0, 100)) == "shadow"
    for recorded in (None, Weights(50, 50)):
        with pytest.raises(TargetError, match=r"2 of its 2 HTTP routes .*\['shadow', 'primary'\].*--route"):
            route_for(obj, dr(), recorded=recorded)
    with pytest.raises(TargetError, match="--route"):
        route_for(vs(shadow, split(0, 100)), dr(), recorded=Weights(0, 100))  # both match: still ambiguous


def test_no_candidate_and_unnamed_candidate_are_clear_errors() -> None:
    with pytest.raises(TargetError, match=r"none of its 2 HTTP routes \['pinned', 'legacy'\]"):
        route_for(vs(PINNED, LEGACY), dr())
    with pytest.raises(TargetError, match=r"spec.http\[1\] is the route .* has no name"):
        route_for(vs(PINNED, split(90, 10, name="")), dr())
    with pytest.raises(TargetError, match=r"#1 \(unnamed\)"):
        route_for(vs(PINNED, {"route": [dest("canary")]}), dr())


@pytest.mark.parametrize(("raw", "routable"), [((1, 1), True), ((3, 0), True), ((_MISSING, 5), True), ((0, 0), False),
                                               ((_MISSING, _MISSING), False), ((-5, 105), False), (("9", 1), False)])
def test_routable_says_whether_istio_routes_by_the_values(raw: tuple[Any, Any], routable: bool) -> None:
    assert seen(*raw).routable is routable

"""Stable 100% on a route of any shape: the edit behind every rollback and fail-safe. Pure.

A rollout starts only from a route with exactly two destinations, subsets `stable` and
`canary` (`patch.locate_route`). Sending traffic back to stable must not need that shape: a
third destination added mid-rollout (weight 0), the canary subset renamed in the
VirtualService, a copy of the route added with a header match, weights of any type. Each left
stable 100% unwritable, and traffic split, until a person edited the object by hand. Here the
destination whose subset is `stable` gets 100 and every other destination of the route 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from canary.errors import TargetError
from canary.model import Weights
from canary.routing.patch import STABLE, STATE_ANNOTATION, annotate, where


@dataclass(frozen=True)
class StableRoute:
    """One route a stable-100% write acts on."""

    index: int  # position in spec.http
    stable: int  # position of its `stable` destination
    others: tuple[int, ...]  # every other destination's position

    @property
    def field(self) -> str:
        return f"spec.http[{self.index}].route"


def stable_routes(vs: Any, route_name: str = "", *, recorded: Weights | None = None) -> list[StableRoute]:
    """The routes sending traffic back to stable acts on: those named `route_name` (a rollout's
    recorded route; renamed since, the routes whose weights are the `recorded` ones); without a name, the only route, or among several the routes with a `stable`
    destination and any other: those whose weights are the `recorded` ones (the rollout wrote both in
    one write; a shadow route sending a header's requests to the canary is not the rollout's), else
    all of them. Several that match (a copy of the rollout's route made after it claimed the only one:
    which one it drove cannot be told) all get stable 100%: when in doubt, stable gets 100%. Raises
    TargetError naming the VirtualService and route when there is no such route, or one has no single
    `stable` destination."""
    at = where(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list) or not http:
        raise TargetError(f"{at}: spec.http has no HTTP routes; no route to send to stable")
    if route_name:
        picked = [i for i, r in enumerate(http) if isinstance(r, dict) and r.get("name") == route_name]
        if picked:
            return [_stable_route(http[i], i, at) for i in picked]
        renamed = [r for r in _candidates(http, at) if recorded is not None and _written_as(vs, r, recorded)]
        if not renamed:  # renamed since, and found by the weights the rollout wrote; else nothing to act on
            raise TargetError(f"{at}: spec.http has no route named {route_name!r}; no route to send to stable")
        return renamed
    if len(http) == 1:
        return [_stable_route(http[0], 0, at)]
    found = _candidates(http, at)
    if not found:
        raise TargetError(f"{at}: none of its {len(http)} HTTP routes has a 'stable' destination beside others; "
                          "no route to send to stable")
    mine = [r for r in found if recorded is not None and _written_as(vs, r, recorded)]
    return mine or found


def _candidates(http: list[Any], at: str) -> list[StableRoute]:
    """The routes with a single `stable` destination beside others."""
    found = []
    for i, route in enumerate(http):
        try:
            found.append(_stable_route(route, i, at))
        except TargetError:
            continue
    return [r for r in found if r.others]


def _written_as(vs: Any, r: StableRoute, weights: Weights) -> bool:
    """Whether route `r` says exactly `weights`: stable's, and the others' summing to the canary's."""
    dests = vs["spec"]["http"][r.index]["route"]
    values = [dests[i].get("weight", 0) for i in (r.stable, *r.others)]
    return all(type(v) is int for v in values) and values[0] == weights.stable and sum(values[1:]) == weights.canary


def _stable_route(route: Any, index: int, at: str) -> StableRoute:
    field = f"spec.http[{index}].route"
    dests = route.get("route") if isinstance(route, dict) else None
    if not isinstance(dests, list) or not dests:
        raise TargetError(f"{at}: {field} is missing or empty; no destination to send to stable")
    stable = []
    for i, d in enumerate(dests):
        dest = d.get("destination") if isinstance(d, dict) else None
        if not isinstance(dest, dict):
            raise TargetError(f"{at}: {field}[{i}].destination is missing or not a mapping")
        if dest.get("subset") == STABLE:
            stable.append(i)
    if len(stable) != 1:
        what = "no" if not stable else f"{len(stable)}"
        raise TargetError(f"{at}: {field} has {what} destinations with subset 'stable'; expected one")
    return StableRoute(index=index, stable=stable[0], others=tuple(i for i in range(len(dests)) if i != stable[0]))


def view(vs: Any, routes: list[StableRoute]) -> tuple[Weights, tuple[Any, Any]]:
    """The split Istio makes of `routes` (the one sending the most to non-stable destinations), as
    (stable, the rest) percentages summing to 100, and its weights as written (stable's, and the
    others' as a list). A weight that is not a non-negative integer counts as 0; a total of 0 is
    reported 50/50, as `patch.observe_weights` reports it (Istio refuses it: never stable-only)."""
    worst: tuple[Weights, tuple[Any, Any]] | None = None
    for r in routes:
        dests = vs["spec"]["http"][r.index]["route"]
        raw_stable = dests[r.stable].get("weight")
        raw_others = [dests[i].get("weight") for i in r.others]
        s, *o = (v if type(v) is int and v >= 0 else 0 for v in (raw_stable, *raw_others))
        total = s + sum(o)
        if total == 0:
            share = 50
        else:
            share = (200 * sum(o) + total) // (2 * total)
            share = 1 if sum(o) and share == 0 else 99 if s and share == 100 else share
        seen = (Weights.canary_at(share), (raw_stable, raw_others))
        if worst is None or seen[0].canary > worst[0].canary:
            worst = seen
    assert worst is not None
    return worst


def with_stable_only(vs: Any, *, route_name: str = "", recorded: Weights | None = None,
                     state: str | None = None) -> dict[str, Any]:
    """A copy of `vs` where every route of `stable_routes(vs, route_name, recorded=)` sends 100 to its
    `stable` destination and 0 to every other (the state annotation set too); nothing else changes.
    Raises what `stable_routes` raises."""
    routes = stable_routes(vs, route_name, recorded=recorded)
    out = copy.deepcopy(vs)
    for r in routes:
        dests = out["spec"]["http"][r.index]["route"]
        dests[r.stable]["weight"] = 100
        for i in r.others:
            dests[i]["weight"] = 0
    if state is not None:
        annotate(out, STATE_ANNOTATION, state)
    return out

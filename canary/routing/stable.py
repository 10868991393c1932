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
from canary.routing.patch import (CANARY, SERVICE_ANNOTATION, STABLE, STATE_ANNOTATION, _route_label, annotate,
                                  delegated_to, fqdn, noted_match, noted_route, noted_service, route_match, route_names,
                                  routes_nothing, where)
from canary.routing.splits import other_routes


@dataclass(frozen=True)
class StableRoute:
    """One route a stable-100% write acts on."""

    index: int  # position in spec.http
    stable: int  # position of its `stable` destination
    others: tuple[int, ...]  # every other destination's position
    # the positions among `others` of copies of the stable destination (the same host and subset `stable`):
    # Istio sends their weight to the stable version too; a stable-100% write gives them 0 all the same
    copies: tuple[int, ...] = ()
    # the route has no destination with subset `stable` (deleted by hand: every request to the canary; or no
    # destination at all), and every destination it has is the rollout's service's `canary` subset:
    # a stable-100% write adds one at `stable` (= the number of destinations) with 100
    missing: bool = False
    # the route answers every request itself ("redirect", "directResponse": `patch.routes_nothing`), and has no
    # destination: no request reaches the canary (nor stable) by it, and a stable-100% write leaves it as it is
    # (no destination added beside the redirect, which Istio refuses; the person's redirect kept). Decision 522
    nothing: str = ""

    @property
    def field(self) -> str:
        return f"spec.http[{self.index}].route"


def stable_routes(vs: Any, route_name: str = "", *, recorded: Weights | None = None,
                  host: str = "") -> list[StableRoute]:
    """The routes sending traffic back to stable acts on: those named `route_name` (a rollout's
    recorded route; renamed since, the routes whose weights are the `recorded` ones); without a name, the only route, or among several the routes with a `stable`
    destination and any other: those whose weights are the `recorded` ones (the rollout wrote both in
    one write; a shadow route sending a header's requests to the canary is not the rollout's), else
    all of them. Several that match (a copy of the rollout's route made after it claimed the only one:
    which one it drove cannot be told) all get stable 100%: when in doubt, stable gets 100%. `host`,
    the rollout's service as its DestinationRule names it (a full name, `patch.fqdn`; "" unknown):
    only a route with a `stable` destination of that host is the rollout's (another model's route in
    the same VirtualService, even one named alike, is never written), and that destination is its
    stable one (a failover destination of another host with subset `stable` gets 0). The route
    named, or the only one, whose destinations are all the `canary` subset of `host` (its stable
    destination deleted by hand: every request to the canary), or none at all, is returned `missing`: a
    stable-100% write adds the stable destination (only with `host` known: the DestinationRule names the
    service and both subsets). The route named, or the only one, that answers every request itself (a
    `redirect`, a `directResponse`, and no destination) is returned `nothing`: no request reaches the canary
    by it, and nothing is written on it; beside it, the routes whose weights are the `recorded` ones (its split
    copied elsewhere before the edit: when in doubt, stable 100% there). Without a name among several routes, the
    rule unread, only routes of the service noted at the rollout's writes are candidates; none, and no route sending
    to that service, the routes answering every request themselves are returned `nothing` (`_answering_only`:
    the claimed route redirected beside another model's, decision 548). A route that delegates to another
    VirtualService, or whose destinations are all another service's, is still refused (decision 522). A
    stable destination renamed (another subset) is still refused. Raises
    TargetError naming the VirtualService and route when there is no such route, or one has no single
    `stable` destination."""
    at = where(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list) or not http:
        raise TargetError(f"{at}: spec.http has no HTTP routes; no route to send to stable")
    if route_name:
        named = picked = [i for i, r in enumerate(http) if isinstance(r, dict) and r.get("name") == route_name]
        if host:  # routes named alike, or the name now another model's: the rollout's are those of its host
            picked = [i for i in picked if _has_host_stable(http[i], host, vs)]
        if host and not picked:  # named, and no stable destination left: the route is still the rollout's
            # when every destination it has is the canary subset of the rollout's service
            picked = [i for i in named if _canary_only(http[i], host, vs)]
        if not picked:  # named, and answering every request itself: nothing to write on it (decision 522)
            picked = [i for i in named if routes_nothing(http[i])]
        if picked:
            found = [_stable_route(http[i], i, at, host, vs, missing_ok=True) for i in picked]
            if all(r.nothing for r in found) and recorded is not None:  # its split may live on in a copy
                found += _copies(vs, http, at, host, recorded, route_name)
            return found
        renamed = [r for r in _candidates(http, at, host, vs) if recorded is not None and _written_as(vs, r, recorded)]
        for i in named if not renamed else ():  # delegated since: the refusal names where its weights are
            if delegated_to(vs, http[i]):
                _stable_route(http[i], i, at, host, vs)
        if not renamed:  # renamed since, and found by the weights the rollout wrote; else nothing to act on
            raise TargetError(f"{at}: spec.http has no route named {route_name!r}; no route to send to stable")
        return renamed
    if len(http) == 1:
        return [_stable_route(http[0], 0, at, host, vs, missing_ok=True)]
    # the rule unread, the service noted at the rollout's writes: another model's route added beside the one it
    # claimed is not a candidate (it was written 100/0 beside a redirect of the rollout's, decision 548)
    found = _candidates(http, at, host or noted_service(vs), vs)
    if not found and (quiet := _answering_only(vs, http, host)):
        return quiet
    if not found:
        raise TargetError(f"{at}: none of its {len(http)} HTTP routes has a 'stable' destination beside others; "
                          "no route to send to stable")
    mine = [r for r in found if recorded is not None and _written_as(vs, r, recorded)]
    return mine or found


def _copies(vs: Any, http: list[Any], at: str, host: str, recorded: Weights, route_name: str) -> list[StableRoute]:
    """Beside the rollout's route answering every request itself: the routes of the rollout's service at the
    `recorded` weights (its split copied before the edit). The service is `host`, else the one noted at the
    rollout's writes (`patch.noted_service`); with neither, a route at those weights cannot be told from another
    model's at the same step (a shared VirtualService): TargetError, nothing written, rather than that model's
    split set to 100/0 (decision 533)."""
    service = host or noted_service(vs)
    copies = [r for r in _candidates(http, at, service, vs) if _written_as(vs, r, recorded)]
    if copies and not service:
        raise TargetError(f"{at}: route {route_name!r} answers every request itself, and spec.http"
                          f"{[r.index for r in copies]} hold the recorded {recorded.stable}/{recorded.canary}: "
                          "with no service known (no DestinationRule naming it, none noted) they cannot be told "
                          "from another model's routes; not written")
    return copies


def _answering_only(vs: Any, http: list[Any], host: str) -> list[StableRoute]:
    """Among several routes, none named (the rollout claimed the only route; another was added since): the routes
    that answer every request themselves, as `nothing`, when no route of `vs` sends anything to the rollout's
    service, which is the one noted at its writes (`patch.noted_service`), the rule agreeing or unread: every
    other route's destinations name another service. Its own route was redirected: nothing to the canary, nothing
    to write (decision 548). [] otherwise: no note (the rule alone may be the thing edited, leaving the rollout's
    split standing, decision 522), a destination of the service left (a split, a stable destination renamed), or
    a route that delegates or whose destinations cannot be read (what it routes is not known)."""
    service = noted_service(vs)
    answering = [i for i, r in enumerate(http) if routes_nothing(r)]
    if not service or host and host != service or not answering:
        return []
    for i, route in enumerate(http):
        dests = route.get("route") if isinstance(route, dict) and i not in answering else None
        if i not in answering and not (isinstance(dests, list) and dests and all(
                isinstance(d, dict) and isinstance(d.get("destination"), dict)
                and _dest_host(d, vs) not in ("", service) for d in dests)):
            return []
    return [StableRoute(index=i, stable=0, others=(), nothing=routes_nothing(http[i])) for i in answering]


def _candidates(http: list[Any], at: str, host: str = "", vs: Any = None) -> list[StableRoute]:
    """The routes with a single `stable` destination (of `host`, when known) beside others."""
    found = []
    for i, route in enumerate(http):
        try:
            found.append(_stable_route(route, i, at, host, vs))
        except TargetError:
            continue
    return [r for r in found if r.others]


def _written_as(vs: Any, r: StableRoute, weights: Weights) -> bool:
    """Whether route `r` says exactly `weights`: stable's, and the others' summing to the canary's."""
    dests = vs["spec"]["http"][r.index]["route"]
    values = [dests[i].get("weight", 0) for i in (r.stable, *r.others)]
    return all(type(v) is int for v in values) and values[0] == weights.stable and sum(values[1:]) == weights.canary


def _dest_host(d: Any, vs: Any) -> str:
    dest = d.get("destination") if isinstance(d, dict) else None
    h = dest.get("host") if isinstance(dest, dict) else None
    meta = vs.get("metadata") if isinstance(vs, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return fqdn(h, ns if isinstance(ns, str) else "") if isinstance(h, str) else ""


def _has_host_stable(route: Any, host: str, vs: Any) -> bool:
    dests = route.get("route") if isinstance(route, dict) else None
    return isinstance(dests, list) and any(
        isinstance(d, dict) and isinstance(d.get("destination"), dict) and d["destination"].get("subset") == STABLE
        and _dest_host(d, vs) == host for d in dests)


def _canary_only(route: Any, host: str, vs: Any) -> bool:
    """Whether every destination of the HTTP route is the `canary` subset of the service `host` (True for an
    empty list): its stable destination deleted by hand. A stable destination renamed (another subset) is not."""
    dests = route.get("route") if isinstance(route, dict) else None
    return isinstance(dests, list) and not routes_nothing(route) and all(
        isinstance(d, dict) and isinstance(d.get("destination"), dict) and d["destination"].get("subset") == CANARY
        and _dest_host(d, vs) == host for d in dests)


def _stable_route(route: Any, index: int, at: str, host: str = "", vs: Any = None, *,
                  missing_ok: bool = False) -> StableRoute:
    field = f"spec.http[{index}].route"
    dests = route.get("route") if isinstance(route, dict) else None
    if how := routes_nothing(route):
        return StableRoute(index=index, stable=0, others=(), nothing=how)
    if missing_ok and host and _canary_only(route, host, vs):
        assert isinstance(dests, list)
        return StableRoute(index=index, stable=len(dests), others=tuple(range(len(dests))), missing=True)
    if delegated := delegated_to(vs, route):
        # its requests are routed by the VirtualService it names, to the canary subset maybe: not written here
        raise TargetError(f"{at}: spec.http[{index}] delegates to VirtualService {delegated[1]}/{delegated[0]}, "
                          "which holds its destinations and weights: stable 100% is written there, by hand")
    if not isinstance(dests, list) or not dests:
        raise TargetError(f"{at}: {field} is missing or empty; no destination to send to stable")
    stable = []
    for i, d in enumerate(dests):
        dest = d.get("destination") if isinstance(d, dict) else None
        if not isinstance(dest, dict):
            raise TargetError(f"{at}: {field}[{i}].destination is missing or not a mapping")
        if dest.get("subset") == STABLE and (not host or _dest_host(d, vs) == host):
            stable.append(i)
    if len(stable) > 1 and len({_dest_host(dests[i], vs) for i in stable}) == 1:
        # the same host and subset twice: one of them at 100 is stable 100%; the rest are its copies
        copies, stable = tuple(stable[1:]), stable[:1]
    else:
        copies = ()
    if len(stable) != 1:
        what = "no" if not stable else f"{len(stable)}"
        of = f" of host {host}" if host else ""
        raise TargetError(f"{at}: {field} has {what} destinations with subset 'stable'{of}; expected one")
    return StableRoute(index=index, stable=stable[0], others=tuple(i for i in range(len(dests)) if i != stable[0]),
                       copies=copies)


def view(vs: Any, routes: list[StableRoute]) -> tuple[Weights, tuple[Any, Any]]:
    """The split Istio makes of `routes` (the one sending the most away from the stable version), as
    (stable, the rest) percentages summing to 100, and its weights as written: the stable subset's
    (one value; a list when the route holds copies of its stable destination, the same host and subset)
    and every other destination's as a list. The stable share is the sum of every destination of the
    stable subset: a copy of it at 100 beside stable 100 and canary 0 sends nothing to the canary, and
    was shown 50/50. A weight that is not a non-negative integer counts as 0; a total of 0 is reported
    50/50, as `patch.observe_weights` reports it (Istio refuses it: never stable-only). A route that answers
    every request itself (`StableRoute.nothing`), read alone, is 100/0: no request reaches the canary by it
    (its shares all 0: nor the stable version); written as (None, [])."""
    return _view(vs, routes)[:2]  # type: ignore[return-value]


def shares(vs: Any, routes: list[StableRoute]) -> dict[str, int]:
    """The percentages of requests Istio sends, on the route `view` reads, to the stable subset, to the
    canary subset (destinations of the stable destination's host with subset `canary`) and to every other
    destination ("others": another subset or another host): {"stable", "canary", "others"}, summing to
    100; "stable" and "canary" + "others" are `view`'s two shares."""
    return _view(vs, routes)[2]


def _view(vs: Any, routes: list[StableRoute]) -> tuple[Weights, tuple[Any, Any], dict[str, int]]:
    worst: tuple[Weights, tuple[Any, Any], dict[str, int]] | None = None
    for r in sorted(routes, key=lambda r: bool(r.nothing)):  # a route answering itself is read only alone
        if r.nothing:  # no request to the canary (nor to stable): none of its weights is written
            worst = worst or (Weights(stable=100, canary=0), (None, []), {"stable": 0, "canary": 0, "others": 0})
            continue
        dests = vs["spec"]["http"][r.index]["route"]
        rest = [i for i in r.others if i not in r.copies]
        raw_stable = [None] if r.missing else [dests[i].get("weight") for i in (r.stable, *r.copies)]
        raw_others = [dests[i].get("weight") for i in rest]
        value = [v if type(v) is int and v >= 0 else 0 for v in (*raw_stable, *raw_others)]
        s, o = sum(value[:len(raw_stable)]), value[len(raw_stable):]
        if r.missing and len(o) == 1:  # Istio: a route's only destination gets every request, whatever its weight
            o = [100]
        home = _dest_host(dests[r.stable if not r.missing else 0], vs) if dests else ""
        c = sum(v for i, v in zip(rest, o) if _subset(dests[i]) == CANARY and _dest_host(dests[i], vs) == home)
        total = s + sum(o)
        if total == 0:
            share = 50
            to_canary = 50 if any(_subset(dests[i]) == CANARY for i in rest) else 0
        else:
            share = (200 * sum(o) + total) // (2 * total)
            share = 1 if sum(o) and share == 0 else 99 if s and share == 100 else share
            to_canary = min(share, (200 * c + total) // (2 * total))
            if c and to_canary == 0:  # a request in a thousand is not none, as for `share`
                to_canary = 1
            elif c < sum(o) and to_canary == share:
                to_canary = share - 1
        split = {"stable": 100 - share, "canary": to_canary, "others": share - to_canary}
        if not dests:  # no destination: Istio routes nothing by it (it refuses such a route)
            split = {"stable": 0, "canary": 0, "others": 0}
        seen = (Weights.canary_at(share), (raw_stable[0] if len(raw_stable) == 1 else raw_stable, raw_others), split)
        if worst is None or seen[0].canary > worst[0].canary:
            worst = seen
    assert worst is not None
    return worst


def _subset(d: Any) -> Any:
    dest = d.get("destination") if isinstance(d, dict) else None
    return dest.get("subset") if isinstance(dest, dict) else None


def with_stable_only(vs: Any, *, route_name: str = "", recorded: Weights | None = None,
                     state: str | None = None, host: str = "") -> dict[str, Any]:
    """A copy of `vs` where every route of `stable_routes(vs, route_name, recorded=, host=)` sends 100
    to its `stable` destination and 0 to every other, and mirrors no traffic to a subset other than
    `stable` (a mirror to the canary sent it a full copy of the traffic after the rollback); the state
    annotation set too; nothing else changes. Raises what `stable_routes` raises."""
    routes = stable_routes(vs, route_name, recorded=recorded, host=host)
    out = copy.deepcopy(vs)
    for r in routes:
        if r.nothing:  # no destination: nothing routed to write over, and the person's redirect is kept
            continue
        route = out["spec"]["http"][r.index]
        dests = route["route"]
        if r.missing:  # the stable destination deleted by hand: add it back, spelled as the others spell the host
            dests.append({"destination": {"host": added_host(vs, r, host), "subset": STABLE}})
        dests[r.stable]["weight"] = 100
        for i in r.others:
            dests[i]["weight"] = 0
        drop_mirrors(route, host, vs)
    if state is not None:
        annotate(out, STATE_ANNOTATION, state)
    return out


def route_service(route: Any, vs: Any) -> str:
    """The service (a full name) an HTTP route's `stable` destination names; "" when it has none."""
    dests = route.get("route") if isinstance(route, dict) and isinstance(route.get("route"), list) else []
    return next((_dest_host(d, vs) for d in dests if isinstance(d, dict) and isinstance(d.get("destination"), dict)
                 and d["destination"].get("subset") == STABLE), "")


def _named(vs: Any, route_name: str = "") -> list[Any]:
    """The HTTP routes named `route_name` (without a name: the only route, none among several); [] without routes."""
    spec = vs.get("spec") if isinstance(vs, dict) else None
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list):
        return []
    return [r for r in http if isinstance(r, dict) and r.get("name") == route_name] if route_name else \
        (http if len(http) == 1 else [])


def canary_host(vs: Any, route_name: str = "") -> str:
    """The service (a full name) the route named (else the only route) sends to, when every destination of
    it is the `canary` subset of that one service; "" otherwise (no such route, other subsets or hosts, no
    destination). What `canary status` reads such a route by without a DestinationRule."""
    named = _named(vs, route_name)
    hosts = {_dest_host(d, vs) for r in named for d in (r.get("route") if isinstance(r.get("route"), list) else [])}
    return next(iter(hosts)) if len(hosts) == 1 and all(_canary_only(r, next(iter(hosts)), vs) for r in named) else ""


def route_hosts(vs: Any, route_name: str = "") -> set[str]:
    """The services (full names) the destinations of the route named (else the only route) send to: the
    service the rollout's own route says it belongs to, whatever its DestinationRule says (decision 523);
    empty when there is no such route or it has no destination."""
    named = _named(vs, route_name)
    return {_dest_host(d, vs) for r in named if isinstance(r, dict) and isinstance(r.get("route"), list)
            for d in r["route"]} - {""}


def own_hosts(vs: Any, route_name: str = "") -> set[str]:
    """`route_hosts(vs, route_name)` while that route can be the one the rollout noted at its writes: empty when it
    sends to none of the noted service (`patch.noted_service`) and carries another match than the one noted
    (`patch.noted_match`): another model's route given the rollout's route's name, or left the only one once the
    rollout's route was deleted, whose service a rule edited to it would otherwise pass for the rollout's own
    (decision 570). A route re-pointed with its rule keeps its match (decision 549's case (1))."""
    named = _named(vs, route_name)
    return set() if named and all(not_noted(r, vs) for r in named) else route_hosts(vs, route_name)


def not_noted(route: Any, vs: Any) -> bool:
    """Whether the HTTP route `route` of `vs` is not the one noted at the rollout's writes: it sends to none of the
    noted service and carries another match than the one noted (`own_hosts`, decision 570). False without a note of
    both (an older canary's note: decisions 523, 549 and 555 say)."""
    match, noted = noted_match(vs), noted_service(vs)
    dests = route.get("route") if isinstance(route, dict) and isinstance(route.get("route"), list) else []
    return bool(match and noted) and noted not in {_dest_host(d, vs) for d in dests} and route_match(route) != match


def claimed_route(vs: Any, rule: str = "") -> str:
    """The route the rollout recorded on `vs` last moved its weights on, by the name noted at that write
    (`patch.noted_route`): what finds the route a rollout claimed as the only one (its record names none) once
    another route is added beside it. The name, when it picks exactly one of several HTTP routes now and that
    route sends to the service noted with it or to `rule` (the DestinationRule's service, a full name: the route
    and its rule re-pointed together, written as for a named route, decision 523), or answers every request
    itself; "" otherwise (the only route, no name noted, the route renamed since, or the name now another
    service's route). Decision 549. Raises TargetError when the name and the rule agree on a route while another
    route still sends to the noted service: the note edited by hand to another model's service, or the rollout's
    route renamed, another model's route given its name and the rule edited to that model's service (decision
    523's attack: that model's route was written 100/0 and the rollout's left split, exit 0). No object tells the
    two apart: nothing is written (decision 555)."""
    name, names = noted_route(vs), route_names(vs)
    if not name or len(names) < 2 or names.count(name) != 1:  # the only route is "" as it was claimed
        return ""
    index, noted = names.index(name), noted_service(vs)
    http, hosts = vs["spec"]["http"], route_hosts(vs, name)
    if routes_nothing(http[index]) or noted and noted in hosts:
        return name
    if not rule or rule not in hosts or not own_hosts(vs, name):  # another match than noted: not it (570)
        return ""
    still = [_route_label(r, i) for i, r in enumerate(http) if i != index and isinstance(r, dict)
             and isinstance(r.get("route"), list) and noted in {_dest_host(d, vs) for d in r["route"]}]
    if not still:  # the route and its rule re-pointed together, the noted service routed nowhere any more
        return name
    raise TargetError(f"{where(vs)}: the note {SERVICE_ANNOTATION} names route {name!r} and service {noted}, but "
                      f"route {name!r} sends to {rule} (as the DestinationRule's spec.host says) and route(s) "
                      f"{still} to {noted}: the DestinationRule's spec.host was edited to another model's service, or "
                      "the note by hand; which route is the rollout's cannot be told, and nothing is written. Check which route serves the model, "
                      "then name it: `canary rollback MODEL --route ROUTE`")


def emptied(vs: Any, route_name: str = "") -> bool:
    """Whether the route named (else the only route) has an empty destination list: it routes nothing, and no
    destination says which service it was for."""
    named = _named(vs, route_name)
    return bool(named) and all(isinstance(r, dict) and r.get("route") == [] and not routes_nothing(r) for r in named)


def added_host(vs: Any, r: StableRoute, host: str) -> str:
    """The host a stable-100% write gives the `stable` destination it adds to route `r` (`r.missing`): as the
    route's other destinations spell the service, else `host` (the DestinationRule's service, a full name)."""
    dests = vs["spec"]["http"][r.index]["route"]
    return dests[0]["destination"].get("host") if dests else host


# a route's `mirror` and the fields that go with it (Istio's camelCase and proto names alike): removed together
MIRROR_KEYS = ("mirror", "mirrorPercentage", "mirrorPercent", "mirror_percent")


def drop_mirrors(route: dict[str, Any], host: str, vs: Any, *, canary_only: bool = False) -> None:
    """Remove the route's mirrors to a subset of the rollout's service other than `stable` (Istio's
    `mirror` with its `mirrorPercentage`/`mirrorPercent`, and the entries of `mirrors`); a mirror to
    another service (a shadow of the user's) stays. The service is `host` (its DestinationRule's), else
    the one the route's own `stable` destination names: without the DestinationRule (deleted
    mid-rollout) every mirror but the stable subset's went, the user's shadow to another service too.
    Where neither tells, only a mirror naming a subset other than `stable` goes. `canary_only`: only the
    mirrors to the `canary` subset go (a route the rollout does not drive: a shadow-testing tool's mirror to
    another subset of the service stays, decision 584)."""
    host = host or route_service(route, vs)

    def kept(m: Any) -> bool:
        dest = m.get("destination") if isinstance(m, dict) and "destination" in m else m
        if not isinstance(dest, dict) or dest.get("subset") == STABLE or (canary_only and dest.get("subset") != CANARY):
            return True
        if not host:
            return not dest.get("subset")
        return _dest_host({"destination": dest}, vs) != host

    if "mirror" in route and not kept(route["mirror"]):
        for key in MIRROR_KEYS:
            route.pop(key, None)
    if isinstance(route.get("mirrors"), list):
        left = [m for m in route["mirrors"] if kept(m)]
        if left:
            route["mirrors"] = left
        else:
            route.pop("mirrors")


def drop_canary_splits(vs: Any, host: str, *, driven: set[int]) -> list[str]:
    """On a rollback's write: every route of `vs` but the `driven` HTTP routes (HTTP, TCP, TLS) that splits
    its traffic between the `canary` subset of the rollout's service (`host`, a full name) and other
    destinations gives the canary subset 0, its share going to that route's `stable` destination of the
    service when it has one (Istio's weights are relative: the others' shares are unchanged). A person
    who split the gRPC route too mid-rollout left the rolled-back version 10% of it after stable 100% on
    the driven route. A route to the canary alone (testers) is left as it is (decision 75). In place;
    returns the fields changed ("spec.tcp[0]", ...)."""
    spec = vs.get("spec") if isinstance(vs, dict) else None
    changed: list[str] = []
    if not host or not isinstance(spec, dict):
        return changed
    for split in other_routes(vs, host, driven=driven):
        if len(split.dests) < 2 or not split.share or not split.rest:  # a route to the canary alone is left
            continue
        for j, _ in split.canary:
            split.dests[j]["weight"] = 0
        if split.stable:
            first = split.dests[split.stable[0]]
            first["weight"] = first.get("weight", 0) + split.share
        changed.append(split.field)
    return changed

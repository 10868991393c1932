"""Which routes of a VirtualService split traffic with the rollout's `canary` subset: the one rule
behind refusing a claim (`claims.split_elsewhere`) and undoing such a split on a rollback
(`stable.drop_canary_splits`). Pure.

A route counts when it is HTTP, TCP or TLS, is not one of the HTTP routes the rollout drives, and
has a list of destinations; a destination counts when it is a mapping. Its weight is what Istio
gives it: a lone destination gets 100 whatever its weight says, a weight that is not a positive
integer 0. It is the canary's when its subset is `canary` and its host names the rollout's service
(`patch.fqdn`, relative to the VirtualService's namespace). Decision 129.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from canary.routing.patch import CANARY, STABLE, _namespace_of, fqdn


@dataclass(frozen=True)
class Split:
    """One route beside the driven ones, as a split with the canary subset sees it."""

    kind: str  # "http", "tcp", "tls"
    index: int  # position in spec.<kind>
    route: dict[str, Any]
    dests: list[Any]  # the route's destinations, as written
    canary: tuple[tuple[int, int], ...]  # (position, weight) of each canary-subset destination of the service
    stable: tuple[int, ...]  # position of each stable-subset destination of the service
    rest: int  # the weights of every other destination (the stable ones included)

    @property
    def share(self) -> int:
        """The weight the canary subset gets."""
        return sum(w for _, w in self.canary)

    @property
    def field(self) -> str:
        return f"spec.{self.kind}[{self.index}]"


def other_routes(vs: Any, host: str, *, driven: set[int]) -> Iterator[Split]:
    """Every route of `vs` that counts (see the module's docstring) but the HTTP routes at `driven`,
    with its destinations sorted against `host`, the rollout's service as a full name."""
    ns = _namespace_of(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    for kind in ("http", "tcp", "tls"):
        routes = spec.get(kind) if isinstance(spec, dict) else None
        for i, route in enumerate(routes if isinstance(routes, list) else []):
            dests = route.get("route") if isinstance(route, dict) else None
            if (kind == "http" and i in driven) or not isinstance(dests, list):
                continue
            canary: list[tuple[int, int]] = []
            stable: list[int] = []
            rest = 0
            for j, d in enumerate(dests):
                dest = d.get("destination") if isinstance(d, dict) else None
                if not isinstance(dest, dict):
                    continue
                w = d.get("weight") if len(dests) > 1 else 100  # one destination gets all, whatever its weight
                w = w if type(w) is int and w > 0 else 0
                named = dest.get("host")
                ours = isinstance(named, str) and fqdn(named, ns) == host
                if ours and dest.get("subset") == CANARY:
                    canary.append((j, w))
                else:
                    rest += w
                    if ours and dest.get("subset") == STABLE:
                        stable.append(j)
            yield Split(kind=kind, index=i, route=route, dests=dests, canary=tuple(canary), stable=tuple(stable),
                        rest=rest)


def canary_split_hosts(vs: Any) -> frozenset[str]:
    """The services (full names) whose `canary` subset some route of `vs` splits traffic with (a share beside
    others, as `other_routes` sees it with no route driven): the controller's informer keeps it per
    VirtualService when it caches one, and a rollout's look at the other VirtualServices of its namespace parses
    only those where it is not empty (decision 602: a look at every tick parsed them all)."""
    ns = _namespace_of(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    named: set[str] = set()
    for kind in ("http", "tcp", "tls"):
        routes = spec.get(kind) if isinstance(spec, dict) else None
        for route in routes if isinstance(routes, list) else []:
            dests = route.get("route") if isinstance(route, dict) else None
            for d in dests if isinstance(dests, list) else []:
                dest = d.get("destination") if isinstance(d, dict) else None
                if isinstance(dest, dict) and dest.get("subset") == CANARY and isinstance(dest.get("host"), str):
                    named.add(fqdn(dest["host"], ns))
    return frozenset(h for h in named if any(s.share and s.rest for s in other_routes(vs, h, driven=set())))


def may_split(summary: Any) -> bool:
    """Whether a VirtualService cached with `summary` (`canary_split_hosts`; None: kept without one) may split
    with a canary subset: only those are parsed by a look at the other VirtualServices."""
    return summary is None or bool(summary)

"""Pure edits of VirtualService and DestinationRule dicts: no I/O, no client.

The router's one promise to the user is "we change the weights of one route
and nothing else". Keeping the computation here, on plain dicts, lets unit and
property tests prove it: every function returns a deep copy in which only the
named fields differ, and every malformed input ends in a TargetError naming
namespace/name and the field, never in a KeyError or TypeError.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from canary.errors import TargetError
from canary.model import Weights

STABLE = "stable"
CANARY = "canary"
STATE_ANNOTATION = "modelcanary.dev/rollout"
VERSION_LABEL = "version"


class RouteNotFound(TargetError):
    """The VirtualService has no HTTP route of the name given."""


def no_route_named(vs: Any, route_name: str) -> RouteNotFound:
    """RouteNotFound naming the VirtualService, the route asked for and the routes it has."""
    names = [n for n in route_names(vs) if n]
    return RouteNotFound(f"{where(vs)}: spec.http has no route named {route_name!r} (routes: {names})")


@dataclass(frozen=True)
class RouteRef:
    """Where the driven route sits in the VirtualService."""

    index: int  # position in spec.http
    stable: int  # position of the stable destination in that route
    canary: int
    host: str

    @property
    def field(self) -> str:
        return f"spec.http[{self.index}].route"


def where(obj: Any) -> str:
    """'namespace/name' of an object, for error messages."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


# the class of an end by a route the rollout drives found in a shape no rollout drives (`reshaped`)
RESHAPED = "foreign_edit"


def reshaped(exc: TargetError) -> TargetError:
    """`exc`, a refusal of the route's shape, marked as a foreign edit should it end a rollout (`end_cause`,
    decision 607): met mid-rollout, the route the rollout claimed in a shape it drives was re-shaped outside it (a
    third destination, a second host, two ports, the route deleted or renamed, another model's route given its
    name; its DestinationRule's subset removed: `subset_versions`). Before a claim the same refusal is bad input
    (exit 2) and ends nothing."""
    exc.end_cause = RESHAPED
    return exc


def locate_route(vs: Any, route_name: str = "") -> RouteRef:
    """Find and check the route to drive: the one named `route_name`, or the only one. Its refusals are marked
    `reshaped`."""
    try:
        return _locate_route(vs, route_name)
    except TargetError as exc:
        reshaped(exc)
        raise


def _locate_route(vs: Any, route_name: str) -> RouteRef:
    at = where(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    if not isinstance(spec, dict):
        raise TargetError(f"{at}: spec is missing or not a mapping")
    http = spec.get("http")
    if not isinstance(http, list) or not http:
        raise TargetError(f"{at}: spec.http has no HTTP routes")
    if route_name:
        found = [i for i, r in enumerate(http) if isinstance(r, dict) and r.get("name") == route_name]
        if not found:
            raise no_route_named(vs, route_name)
        if len(found) > 1:
            raise TargetError(f"{at}: spec.http has {len(found)} routes named {route_name!r}")
        index = found[0]
    elif len(http) != 1:
        raise TargetError(f"{at}: spec.http has {len(http)} routes {[_route_label(r, i) for i, r in enumerate(http)]}; "
                          f"name the one to shift (--route, policy `route:`){_unnamed_hint(vs, http)}")
    else:
        index = 0
    if delegated := delegated_to(vs, http[index]):
        # a root VirtualService hands this route to another one: its weights live there
        name, ns = delegated
        raise TargetError(f"{at}: spec.http[{index}] delegates to VirtualService {ns}/{name}, which holds its "
                          f"destinations and weights: drive that one (--virtual-service {name}"
                          + (f", -n {ns})" if ns != _namespace_of(vs) else ")"))
    if how := routes_nothing(http[index]):
        raise TargetError(f"{at}: spec.http[{index}] answers every request with its {how}, and has no destination: "
                          "no weights to shift (a rollout drives a route with subsets 'stable' and 'canary')")
    return _check_route(http[index], index, at, _namespace_of(vs))


def delegated_to(vs: Any, route: Any) -> tuple[Any, str] | None:
    """(name, namespace) of the VirtualService an HTTP route of `vs` delegates to, when it does (`delegate`, and
    no destination list): that one holds its destinations and weights. None otherwise."""
    delegate = route.get("delegate") if isinstance(route, dict) else None
    if not isinstance(delegate, dict) or isinstance(route.get("route"), list):
        return None
    return delegate.get("name"), delegate.get("namespace") or _namespace_of(vs)


# the fields by which an HTTP route answers every request itself (Istio's HTTPRoute: no `route` beside either);
# `direct_response` is the same field as protobuf's JSON reads it
ANSWERS = {"redirect": "redirect", "directResponse": "directResponse", "direct_response": "directResponse"}


def routes_nothing(route: Any) -> str:
    """How an HTTP route answers every request itself, routing none to any destination: "redirect" or
    "directResponse", when it has one and no destination (`route` absent, null or empty); "" otherwise (Istio
    refuses `route` beside either: a route with both is read as its destinations). A `delegate` is
    not such a route: the VirtualService it names routes its requests, to the canary subset maybe
    (docs/decisions.md 522)."""
    if not isinstance(route, dict) or route.get("route"):
        return ""
    return next((how for key, how in ANSWERS.items() if isinstance(route.get(key), dict)), "")


def _unnamed_hint(vs: Any, http: list[Any]) -> str:
    """For a refusal among several routes: the routes a rollout could drive (two destinations, subsets
    `stable` and `canary`) that have no name, which --route cannot pick: say to name them."""
    unnamed = []
    for i, route in enumerate(http):
        try:
            _check_route(route, i, where(vs), _namespace_of(vs))
        except TargetError:
            continue
        if not (isinstance(route.get("name"), str) and route.get("name")):
            unnamed.append(f"spec.http[{i}]")
    if not unnamed:
        return ""
    return (f"; {', '.join(unnamed)} {'has' if len(unnamed) == 1 else 'have'} subsets 'stable' and 'canary' but no "
            "name, which --route needs: add `name:` to it")


def route_names(vs: Any) -> tuple[str, ...]:
    """The names of `vs`'s HTTP routes, in order ("" for an unnamed one; () when it has none)."""
    spec = vs.get("spec") if isinstance(vs, dict) else None
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list):
        return ()
    return tuple(str(r.get("name") or "") if isinstance(r, dict) else "" for r in http)


def same_route(names: tuple[str, ...], a: str, b: str) -> bool:
    """Whether route names `a` and `b` ("" = the only one) pick the same HTTP route of a VirtualService
    whose routes are named `names` (`route_names`), as `locate_route` picks one: `primary` and ""
    when `primary` is its only route. A name that picks none (no such route, two of that name, ""
    among several) is the same as itself only."""
    i = _picked(names, a)
    return a == b or (i is not None and i == _picked(names, b))


def _picked(names: tuple[str, ...], name: str) -> int | None:
    """The index of the route `name` picks among `names` ("" = the only one), None when it picks none."""
    if not name:
        return 0 if len(names) == 1 else None
    found = [i for i, n in enumerate(names) if n == name]
    return found[0] if len(found) == 1 else None


def may_be_route(names: tuple[str, ...], recorded: str, asked: str) -> bool:
    """Whether a record written for route `recorded` may be one of the route `asked` picks, on a
    VirtualService whose routes are named `names` now (`same_route`'s spelling: "" = the only one).
    False only when `asked` picks no route (`same_route`'s "the same as itself only") or `recorded` picks
    another route than `asked`; a `recorded` that picks none now (the route renamed or removed since,
    "" once a second route was added) cannot be told from `asked`'s and may be it (decision 249)."""
    return same_route(names, recorded, asked) or (
        _picked(names, asked) is not None and _picked(names, recorded) is None)


def _check_route(route: Any, index: int, at: str, namespace: str = "") -> RouteRef:
    """The route's two destinations, checked; their hosts compared as Istio resolves them (`fqdn`, in
    the VirtualService's `namespace`): `rec-model` and `rec-model.ml.svc.cluster.local` are one service."""
    field = f"spec.http[{index}].route"
    dests = route.get("route") if isinstance(route, dict) else None
    if not isinstance(dests, list):
        raise TargetError(f"{at}: {field} is missing or not a list")
    if len(dests) != 2:
        raise TargetError(f"{at}: {field} has {len(dests)} destinations, expected 2 (subsets stable, canary)")
    subsets: dict[str, int] = {}
    hosts: set[Any] = set()
    for i, d in enumerate(dests):
        dest = d.get("destination") if isinstance(d, dict) else None
        if not isinstance(dest, dict):
            raise TargetError(f"{at}: {field}[{i}].destination is missing or not a mapping")
        subset, host = dest.get("subset"), dest.get("host")
        if subset not in (STABLE, CANARY) or subset in subsets:
            raise TargetError(
                f"{at}: {field}[{i}].destination.subset is {subset!r}; expected one 'stable' and one 'canary'")
        if not isinstance(host, str) or not host:
            raise TargetError(f"{at}: {field}[{i}].destination.host is missing")
        subsets[subset] = i
        hosts.add(fqdn(host, namespace))
    if len(hosts) != 1:
        written = [d["destination"]["host"] for d in dests]
        raise TargetError(f"{at}: {field} destinations name different hosts {written} ({sorted(hosts)}); expected "
                          "one service")
    ports = [d["destination"].get("port") for d in dests]
    if all(isinstance(p, dict) for p in ports) and ports[0] != ports[1]:
        # the canary judged on one port of the service, and promoted to serve the stable destination's other one
        # (gRPC's, HTTP's), where no request of it was ever judged (decision 578's addendum)
        raise TargetError(f"{at}: {field} destinations name different ports of the service ({field}[0].destination"
                          f".port {ports[0]}, {field}[1].destination.port {ports[1]}): the canary would be judged on "
                          "one and promoted to serve the other; give both the same port")
    return RouteRef(index=index, stable=subsets[STABLE], canary=subsets[CANARY],
                    host=dests[subsets[STABLE]]["destination"]["host"])


def read_weights(vs: dict[str, Any], ref: RouteRef) -> Weights:
    """The route's current weights, strictly: two integers 0..100 summing to 100 (a missing
    weight counts as 0, as in Istio), the only form a rollout starts from or continues with.
    On-call commands read any weights with :func:`observe_weights` instead. Its refusals are marked `reshaped`."""
    dests = vs["spec"]["http"][ref.index]["route"]
    values = []
    for i in (ref.stable, ref.canary):
        w = dests[i].get("weight", 0)
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100:
            raise reshaped(TargetError(f"{where(vs)}: {ref.field}[{i}].weight is {w!r}; expected an integer 0..100"))
        values.append(w)
    if sum(values) != 100:
        raise reshaped(TargetError(f"{where(vs)}: {ref.field} weights {values[0]}+{values[1]} do not sum to 100"))
    return Weights(stable=values[0], canary=values[1])


@dataclass(frozen=True)
class SeenWeights:
    """A route's weights as written, and the split Istio makes of them."""

    weights: Weights  # each subset's share, normalised to integers summing to 100
    raw: tuple[Any, Any]  # (stable, canary) as written; None where `weight` is absent

    @property
    def canonical(self) -> bool:
        """True when the route says exactly `weights`: two integers summing to 100."""
        return all(type(v) is int for v in self.raw) and self.raw == (self.weights.stable, self.weights.canary)

    @property
    def routable(self) -> bool:
        """False when Istio rejects the values (a weight not a non-negative integer, a total of 0)."""
        values = [0 if v is None else v for v in self.raw]
        return all(type(v) is int and v >= 0 for v in values) and sum(values) > 0


def observe_weights(vs: dict[str, Any], ref: RouteRef) -> SeenWeights:
    """The route's weights as Istio reads them; never refuses a value (on-call must act on any).

    Istio's weights are relative: a destination gets weight/(sum of weights) of the
    requests, a missing weight is 0, and a 0-weighted destination gets nothing. So
    1/1 is 50/50 and 3/0 is 100/0. Shares are rounded to integers summing to 100,
    except that a positive weight never rounds to 0% (1/1000 is 99/1, not 100/0):
    traffic that reaches the canary is never reported as stable-only.

    Values Istio refuses to route by, reported so that a caller never mistakes them
    for stable-only: a weight that is not a non-negative integer (negative, string,
    float, bool) counts as 0, and a total of 0 (0/0, both missing -- Istio's
    validation rejects it, IST0106 "total destination weight = 0", and Envoy is
    left with no cluster for the route) is reported as 50/50, the equal-weights
    split. Callers that care use `raw` / `canonical`: `canary status` shows the raw
    values, `canary rollback` writes 100/0 over any of them.
    """
    dests = vs["spec"]["http"][ref.index]["route"]
    raw = (dests[ref.stable].get("weight"), dests[ref.canary].get("weight"))
    stable, canary = (v if type(v) is int and v >= 0 else 0 for v in raw)
    total = stable + canary
    if total == 0:
        return SeenWeights(Weights(50, 50), raw)
    share = (200 * canary + total) // (2 * total)  # canary's percent, rounded half up
    if canary and share == 0:
        share = 1
    elif stable and share == 100:
        share = 99
    return SeenWeights(Weights.canary_at(share), raw)


def route_for(vs: Any, dr: Any, *, recorded: Weights | None = None) -> str:
    """The name of the route an on-call command acts on when none is named ("" = the only route).

    A rollout drives the only HTTP route, or the one its policy names. Without that
    name: the only route that sends traffic to exactly this DestinationRule's
    `stable` and `canary` subsets; among several such, the only one whose weights
    are the `recorded` ones (the rollout wrote both in one write). Anything else is
    a TargetError listing the routes, so the user can pass --route. The service is the
    one noted for the rollout recorded on `vs` (`noted_service`) when there is one: a
    DestinationRule edited to name another model's service found that model's route
    (decision 523).
    """
    at = where(vs)
    spec = vs.get("spec") if isinstance(vs, dict) else None
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list) or len(http) <= 1:
        return ""  # locate_route reports the shape, as for a rollout
    dr_spec = dr.get("spec") if isinstance(dr, dict) else None
    dr_host = dr_spec.get("host") if isinstance(dr_spec, dict) else None
    found: list[tuple[int, RouteRef]] = []
    noted = noted_service(vs)
    for i, route in enumerate(http):
        try:
            ref = _check_route(route, i, at, _namespace_of(vs))
        except TargetError:
            continue
        if noted and fqdn(ref.host, _namespace_of(vs)) == noted or not noted and (
                not isinstance(dr_host, str) or _same_service(ref.host, _namespace_of(vs), dr, dr_host)):
            found.append((i, ref))
    if len(found) > 1 and recorded is not None:
        seen = [(i, ref, observe_weights(vs, ref)) for i, ref in found]
        mine = [(i, ref) for i, ref, w in seen if w.canonical and w.weights == recorded]
        found = mine if len(mine) == 1 else found
    names = [_route_label(r, i) for i, r in enumerate(http)]
    if not found:
        raise TargetError(f"{at}: none of its {len(http)} HTTP routes {names} sends traffic to exactly the subsets "
                          f"'stable' and 'canary' of {where(dr)}; name the route with --route")
    if len(found) > 1:
        which = [names[i] for i, _ in found]
        raise TargetError(f"{at}: {len(found)} of its {len(http)} HTTP routes send traffic to subsets 'stable' and "
                          f"'canary' ({which}; all routes: {names}); name the one to act on with --route")
    index = found[0][0]
    name = http[index].get("name")
    if not isinstance(name, str) or not name:
        raise TargetError(f"{at}: spec.http[{index}] is the route with subsets 'stable' and 'canary' but has no name; "
                          "canary addresses a route among several by its name: add `name:` to it")
    return name


def _route_label(route: Any, index: int) -> str:
    name = route.get("name") if isinstance(route, dict) else None
    return name if isinstance(name, str) and name else f"#{index} (unnamed)"


def read_state(vs: Any) -> str | None:
    """The rollout-state annotation, None when absent, or emptied (blank: "" or only whitespace): an
    annotation emptied by an edit or a manifest (`modelcanary.dev/rollout: ""`) records no rollout, as a
    removed one does, for every reader and every write's guard alike (decision 146)."""
    meta = vs.get("metadata") if isinstance(vs, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    value = ann.get(STATE_ANNOTATION) if isinstance(ann, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def with_weights(vs: Any, weights: Weights, *, route_name: str = "", state: str | None = None) -> dict[str, Any]:
    """A copy of `vs` with the route's weights (and the state annotation) set; nothing else changes.

    An existing `weight` key keeps its place in the mapping, so a re-serialised
    object differs from the original only in those values.
    """
    if not isinstance(weights, Weights):
        raise TypeError("weights must be a Weights value")
    ref = locate_route(vs, route_name)
    out = copy.deepcopy(vs)
    dests = out["spec"]["http"][ref.index]["route"]
    dests[ref.stable]["weight"] = weights.stable
    dests[ref.canary]["weight"] = weights.canary
    if state is not None:
        annotate(out, STATE_ANNOTATION, state)
    return out


# what the API server lets all of an object's annotations, keys and values, take together (apimachinery's
# TotalAnnotationSizeLimitB): a write past it is refused whole, 422 Invalid, its weights too
ANNOTATIONS_MAX_BYTES = 262_144


def annotation_room(obj: Any, key: str) -> int:
    """The bytes left for annotation `key`'s value on `obj` by its other annotations (ANNOTATIONS_MAX_BYTES)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    others = ann.items() if isinstance(ann, dict) else ()
    return ANNOTATIONS_MAX_BYTES - len(key.encode()) - sum(len(str(k).encode()) + len(str(v).encode())
                                                            for k, v in others if k != key)


def annotate(obj: dict[str, Any], key: str, value: str) -> None:
    """Set one annotation on `obj` in place (a copy the caller owns); TargetError on a malformed metadata."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise TargetError(f"{where(obj)}: metadata is not a mapping")
    ann = meta.get("annotations")
    if ann is None:
        ann = meta["annotations"] = {}
    if not isinstance(ann, dict):
        raise TargetError(f"{where(obj)}: metadata.annotations is not a mapping")
    ann[key] = value


def subset_versions(dr: Any, *, host: str = "", host_namespace: str = "") -> dict[str, str]:
    """{'stable': v, 'canary': v} from the DestinationRule's subsets, checked (`_subset_versions`). Its refusals are
    marked `reshaped`: met mid-rollout, the rule whose subsets the rollout points was re-shaped outside it (a subset
    removed, the rule re-pointed at another service); they were `infrastructure` (decision 608's addendum)."""
    try:
        return _subset_versions(dr, host=host, host_namespace=host_namespace)
    except TargetError as exc:
        reshaped(exc)
        raise


def _subset_versions(dr: Any, *, host: str, host_namespace: str) -> dict[str, str]:
    """{'stable': v, 'canary': v} from the DestinationRule's subsets, checked.

    With `host` (the route's destination host, said in `host_namespace`), the DestinationRule
    must be for that same service, both names resolved as Istio does (`fqdn`): the rule whose
    subsets we point must be the one that shapes the traffic we shift.
    A subset without a `version` label maps to "" (it selects every pod of the
    host, which is legal Istio but unusual; the caller decides).
    """
    at = where(dr)
    spec = dr.get("spec") if isinstance(dr, dict) else None
    if not isinstance(spec, dict):
        raise TargetError(f"{at}: spec is missing or not a mapping")
    if host and isinstance(spec.get("host"), str) and not _same_service(host, host_namespace, dr, spec["host"]):
        dr_ns = _namespace_of(dr) or host_namespace
        raise TargetError(f"{at}: spec.host {spec['host']!r} is {fqdn(spec['host'], dr_ns)!r}, but the route sends "
                          f"traffic to {host!r}, which is {fqdn(host, host_namespace or dr_ns)!r}")
    found: dict[str, str] = {}
    for name in (STABLE, CANARY):
        i, subset = _find_subset(spec, name, at)
        labels = subset.get("labels")
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            raise TargetError(f"{at}: spec.subsets[{i}].labels is not a mapping")
        version = labels.get(VERSION_LABEL, "")
        found[name] = version if isinstance(version, str) else str(version)
    return found


SUBSETS_ANNOTATION = "modelcanary.dev/subsets"
# the service (a full name) a rollout's route sent to when the rollout last moved its weights, its DestinationRule
# agreeing, bound to that rollout by its `started_at` (`note_service`, `noted_service`; decision 523)
SERVICE_ANNOTATION = "modelcanary.dev/service"


def note_service(vs: dict[str, Any], state: str | None, service: str, *, route: str = "", match: str = "") -> None:
    """In place (a copy the caller owns): note `service` beside the rollout recorded in `state` (the record this
    write carries), for its stable-100% writes: its DestinationRule may be edited mid-rollout to name another
    service (another model's, on a shared VirtualService), and the write then took that model's route for its
    own. With `route`, the name of the HTTP route written (`"route"` in the note): a record that names none (the
    rollout claimed the only route) is found by it once another route is added (decision 549). With `match`, the
    route's `route_match` (`"match"`): a route found by that name, or left the only one, that sends to another
    service and carries another match is another route (decision 570). Nothing when `state` is no record with a
    `started_at`, or `service` is ""."""
    started = _started_at(state)
    if started is not None and service:
        note: dict[str, Any] = {"service": service, "started_at": started, **({"route": route} if route else {}),
                                **({"match": match} if match else {})}
        annotate(vs, SERVICE_ANNOTATION, json.dumps(note, sort_keys=True, separators=(",", ":")))


def noted_service(vs: Any) -> str:
    """The service noted for the rollout recorded on `vs` (`note_service`); "" when none is noted, the note is
    another rollout's (another `started_at`: a record written since by a writer that notes none), or either
    cannot be read."""
    service = _note(vs).get("service")
    return service if isinstance(service, str) else ""


def noted_route(vs: Any) -> str:
    """The name of the route noted for the rollout recorded on `vs` (`note_service`'s `route`), read as
    `noted_service` reads the service; "" when none is noted (an older canary's note, an unnamed route)."""
    route = _note(vs).get("route")
    return route if isinstance(route, str) else ""


def noted_match(vs: Any) -> str:
    """The `route_match` noted for the rollout recorded on `vs` (`note_service`'s `match`), read as `noted_service`
    reads the service; "" when none is noted (a note of an older canary)."""
    match = _note(vs).get("match")
    return match if isinstance(match, str) else ""


def route_match(route: Any) -> str:
    """A fingerprint of an HTTP route's `match` (which requests it takes; none: all): what tells the rollout's route
    from another route given its name, or left the only one, once its service was renamed (decision 570). Of the
    requests taken, not of the text: the blocks are OR-ed, so their order does not count, and `[]` takes all as no
    `match` does (a GitOps tool re-rendering the route must not make it another's, decision 580)."""
    match = route.get("match") if isinstance(route, dict) else None
    if isinstance(match, list):
        match = sorted(match, key=lambda b: json.dumps(b, sort_keys=True, default=str)) or None
    text = json.dumps(match, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _note(vs: Any) -> dict[str, Any]:
    """The note beside the rollout recorded on `vs`, {} when there is none, it cannot be read, or it is another
    rollout's (another `started_at`)."""
    meta = vs.get("metadata") if isinstance(vs, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    text = ann.get(SERVICE_ANNOTATION) if isinstance(ann, dict) else None
    try:
        note = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):  # nested past the recursion limit is unreadable too (decision 533)
        return {}
    started = _started_at(read_state(vs))
    if started is None or not isinstance(note, dict) or note.get("started_at") != started:
        return {}
    return note


def _started_at(state: str | None) -> float | None:
    """The `started_at` of the record `state` (JSON), None when it has none or is no record (nested past the
    recursion limit, or an integer too large for a float: decision 533)."""
    try:
        record = json.loads(state) if state else None
        v = record.get("started_at") if isinstance(record, dict) else None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    except (ValueError, RecursionError, OverflowError):
        return None


def with_subset_version(dr: Any, subset: str, version: str, *, mark: str | None = None) -> dict[str, Any]:
    """A copy of `dr` whose `subset` selects version=<version>; other labels are kept. With `mark`
    (who pointed what, when) our subsets annotation is set too, so the write changes the object
    even when the subset is already right and supersedes any write prepared before it."""
    if subset not in (STABLE, CANARY):
        raise ValueError(f"subset must be 'stable' or 'canary', got {subset!r}")
    if not isinstance(version, str) or not version:
        raise ValueError("version must be a non-empty string")
    try:
        subset_versions(dr)  # the same checks as inspect()
    except TargetError:  # the other subset broken: nothing to do if this one already selects `version`
        spec = dr.get("spec") if isinstance(dr, dict) else None
        try:
            _, found = _find_subset(spec if isinstance(spec, dict) else {}, subset, where(dr))
        except TargetError:
            found = {}
        labels = found.get("labels") if isinstance(found, dict) else None
        if mark is not None or not isinstance(labels, dict) or labels.get(VERSION_LABEL) != version:
            raise
        return copy.deepcopy(dr)
    out = copy.deepcopy(dr)
    _, found = _find_subset(out["spec"], subset, where(dr))
    labels = found.get("labels")
    if labels is None:
        labels = found["labels"] = {}
    labels[VERSION_LABEL] = version
    if mark is not None:
        annotate(out, SUBSETS_ANNOTATION, mark)
    return out


def _find_subset(spec: dict[str, Any], name: str, at: str) -> tuple[int, dict[str, Any]]:
    subsets = spec.get("subsets")
    if not isinstance(subsets, list):
        raise TargetError(f"{at}: spec.subsets is missing; expected subsets 'stable' and 'canary'")
    hits = [(i, s) for i, s in enumerate(subsets) if isinstance(s, dict) and s.get("name") == name]
    if len(hits) != 1:
        what = "does not define" if not hits else "defines more than one"
        raise TargetError(f"{at}: spec.subsets {what} subset {name!r}")
    return hits[0]


def fqdn(host: str, namespace: str, *, domain: str = "cluster.local") -> str:
    """The service a host names, as Istio resolves it (ResolveShortnameToFQDN): a short name
    (no dot) is relative to the namespace of the object that says it,
    'rec-model' in ml -> 'rec-model.ml.svc.cluster.local'; a name with a dot is taken as written.
    So 'rec-model' in ml and 'rec-model.other.svc.cluster.local' are two services."""
    h = host.strip().lower().rstrip(".")
    if h and "." not in h and h != "*" and namespace:
        return f"{h}.{namespace}.svc.{domain}"
    return h


def _namespace_of(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) else ""


def _same_service(route_host: str, route_ns: str, dr: Any, dr_host: str) -> bool:
    dr_ns = _namespace_of(dr) or route_ns
    return fqdn(route_host, route_ns or dr_ns) == fqdn(dr_host, dr_ns)

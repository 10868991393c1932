"""TrafficRouter for Istio: weights on a VirtualService route, versions on DestinationRule subsets.

The user owns the VirtualService; we only borrow the weights of one route and
one annotation (and a second beside it, the service the rollout's route sends to:
`patch.note_service`, decision 523). Every write is a full replace (PUT) carrying the
resourceVersion we read, so a concurrent edit by a person or GitOps tool makes
the API answer 409 instead of being silently overwritten; we then re-read,
re-check and re-apply our change on top of theirs (bounded). The rollout
state travels in the same write as the weights, so the two can never
disagree after a crash.

The edits themselves are pure functions in :mod:`canary.routing.patch`; this
module only adds I/O, retries and error translation.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import threading

from collections.abc import Callable, Iterable
from typing import Any

import tenacity
from kubernetes import client as kclient
from kubernetes.client.exceptions import ApiException

from canary import kube
from canary import rollout as rl
import math

from canary.errors import (CanaryError, ConfigError, ConflictStorm, NoRoom, NotFound, NotLeader, RoutingConflict,
                           RuleElsewhere, TargetError, TrafficUnsafe, WeightsMoved)
from canary.model import STABLE_ONLY, Target, Weights
from canary.routing import claims, patch, stable
from canary.routing.base import RouteStatus

GROUP = "networking.istio.io"
VS_PLURAL = "virtualservices"
DR_PLURAL = "destinationrules"
Obj = dict[str, Any]


class _Conflict(Exception):
    """Internal: a write got 409; the conflict loop re-reads and tries again."""


ANY_STATE: object = ...  # (Ellipsis) set_weights without a guard on the recorded state


# a best-effort read's timeout (`subset_pods(glance=True)`), as an Event's (`record_event`, 3 s)
GLANCE_TIMEOUT_S = 3.0


class IstioRouter:
    """Drives one VirtualService route and its DestinationRule through the Kubernetes API.

    Args:
        api_client: a `kubernetes.client.ApiClient` (see :func:`canary.kube.api_client`).
        version: the networking.istio.io version to read and write (v1beta1 works
            on every Istio since 1.5; use "v1" on Istio >= 1.22 if you prefer).
        conflict_attempts: writes tried before RoutingConflict.
        transient_attempts: attempts per API call on 5xx/429/network errors.
        wait: tenacity wait strategy between attempts (tests pass a zero wait); a `Retry-After` longer than it
            is waited instead (`kube.retry_wait`).
        sleep: how a wait is slept (tests record it); by default `kube.retry_sleep`, which ends with the grace.
        request_timeout: seconds per API call (connect and read).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        version: str = "v1beta1",
        conflict_attempts: int = 5,
        transient_attempts: int = 4,
        wait: Any = None,
        request_timeout: float = 10.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.custom = kclient.CustomObjectsApi(api_client)
        self._core: Any = None  # `core`, made when first used
        self.version = version
        self.conflict_attempts = conflict_attempts
        self.transient_attempts = transient_attempts
        self.wait = wait if wait is not None else tenacity.wait_exponential(multiplier=0.2, max=2.0)
        self.timeout = request_timeout
        self.sleep = sleep
        # seconds this process may still write (set by FencedRouter under leader election); checked
        # before EVERY write attempt, and each attempt's timeout is cut to fit inside it
        self.fence: Callable[[], float] = lambda: math.inf
        # the controller's informer cache: one-shot reads per thread (`seed`), and every object this
        # router writes handed back (`written(plural, obj)`) so the cache holds our own writes at once
        self._local = threading.local()
        self.written: Callable[[str, Obj], None] | None = None
        # why the VirtualServices of every namespace cannot be listed (`_every_virtual_service`: a namespaced Role's
        # 403), once found: {"why": ...}, shared with `_glancing`'s copies, so it is asked once a process
        self._narrowed: dict[str, str] = {}

    @property
    def core(self) -> Any:
        """The core API on this router's client (Events, Services, Pods, the history ConfigMap), made on first use:
        `kube_core.CoreV1`, the calls a rollout makes without kubernetes' CoreV1Api, whose import cost every
        promote 1.0-1.2 s of CPU (decision 1041)."""
        if self._core is None:
            from canary.kube_core import CoreV1

            self._core = CoreV1(self.custom.api_client)
        return self._core

    @core.setter
    def core(self, api: Any) -> None:
        self._core = api

    # --- TrafficRouter ------------------------------------------------------------

    def inspect(self, target: Target) -> RouteStatus:
        from dataclasses import replace

        vs, dr, ref = self._read_checked(target)
        status = self._status(vs, dr, patch.read_weights(vs, ref))
        return replace(status, split_elsewhere=claims.split_elsewhere(vs, ref))

    def inspect_any(self, target: Target, *, for_stable: bool = False, shown: bool = False) -> RouteStatus:
        """`inspect` for on-call commands and whoever must send traffic back to stable: weights that
        do not sum to 100 are read as Istio splits them, and the values as written are in
        `RouteStatus.raw_weights`, instead of a TargetError. With `for_stable` (a rollback), also a
        DestinationRule that cannot be read or lacks a subset (versions "") and a route among
        several, found as `_read_for_stable` finds it. With `shown` (`canary status`, read-only), a route
        left with only its canary destination, or none, is shown even where stable 100% cannot be written on
        it (no DestinationRule naming the service and both subsets), and a route whose DestinationRule names
        another service than the route's (`_stable_service`): `RouteStatus.stable_unwritable` says why. Raises
        what `inspect` raises otherwise."""
        from dataclasses import replace

        unwritable = ""
        try:
            vs, dr, ref = self._read_checked(target)
        except CanaryError:
            if not for_stable:
                raise
            try:
                vs, dr, route = self._read_for_stable(target)
                ref = patch.locate_route(vs, route)
            except NotFound:
                raise
            except TargetError:  # a route of a shape no rollout starts from: stable 100% still works on it
                return self._stable_view(target, shown=shown)
            if shown:  # read as the rollback reads it: a rule naming another service refuses its write (523)
                try:
                    _stable_service(vs, dr, target, route)
                except TargetError as exc:
                    unwritable = str(exc)
        # a rule re-hosted to another service: written on its own route, never pointed (644), said (650)
        elsewhere = rule_elsewhere(vs, dr, target) if shown and not unwritable else ""
        seen = patch.observe_weights(vs, ref)
        return replace(self._status(vs, dr, seen.weights), raw_weights=None if seen.canonical else seen.raw,
                       stable_unwritable=unwritable, rule_elsewhere=elsewhere)

    def _stable_view(self, target: Target, *, shown: bool = False) -> RouteStatus:
        """The route as a stable-100% write sees it (`stable.stable_routes`: the route named, else the
        recorded one, else the candidates), whatever its shape: the share its non-stable destinations
        get, and the weights as written in `raw_weights` (stable's, the others' as a list)."""
        vs, dr, route, recorded_weights = self._for_stable_write(target)
        unwritable = ""
        try:
            routes = stable.stable_routes(vs, route, recorded=recorded_weights, host=_stable_service(vs, dr, target,
                                                                                                    route))
        except TargetError as exc:
            recorded, why = claims.record_on(vs), str(exc)
            guessed = stable.canary_host(vs, route) if not _service(dr, target) else ""
            if not guessed and not _service(dr, target) and shown and stable.emptied(vs, route):
                # nothing routed and no service named anywhere: any host reads it as it is (no destination to
                # match), and `shown` never writes; it was a TrafficUnsafe, `canary status` exit 6 with nothing shown
                guessed = target.virtual_service
            try:
                routes = stable.stable_routes(vs, route, host=guessed) if guessed else []
            except TargetError:
                routes = []
            if routes and all(r.missing for r in routes):  # shown as the route sends; not writable
                why = unwritable = (f"{why}; the DestinationRule {target.namespace}/{target.dr_name} could not be "
                                    "read or does not define subsets 'stable' and 'canary', so the stable "
                                    "destination to add is not known")
            if unwritable and shown:
                pass
            elif recorded is None or recorded.terminal:
                raise
            else:
                # a rollout in progress, and no route stable 100% can be written to: not "bad input, untouched"
                raise TrafficUnsafe(f"{why}; the rollout of {recorded.canary_version} is recorded {recorded.phase} "
                                    f"at {recorded.weights}: stable 100% cannot be written") from None
        weights, raw = stable.view(vs, routes)
        split = stable.shares(vs, routes)
        added = next((stable.added_host(vs, r, _service(dr, target)) for r in routes if r.missing), "")
        status = self._status(vs, dr, STABLE_ONLY)  # the subsets' versions ("" without the rule)
        from dataclasses import replace

        canonical = len(raw[1]) == 1 and all(type(v) is int for v in (raw[0], *raw[1])) and \
            (raw[0], raw[1][0]) == (weights.stable, weights.canary)
        # a route answering every request itself (a redirect): nothing to the canary, nothing written on it, and
        # no weights as written to say (decision 522)
        nothing = routes[0].nothing if routes and all(r.nothing for r in routes) else ""
        elsewhere = rule_elsewhere(vs, dr, target) if shown and not unwritable else ""  # (650)
        return replace(status, weights=weights, raw_weights=None if canonical or nothing else raw, shares=split,
                       stable_added="" if unwritable else added, stable_unwritable=unwritable, routes_nothing=nothing,
                       rule_elsewhere=elsewhere)

    def _for_stable_write(self, target: Target) -> tuple[Obj, Obj | None, str, Weights | None]:
        """The VirtualService, the DestinationRule if it can be read and names both subsets (else None),
        the route to send to stable (the one named, else the one the rollout recorded; "": the only
        one, or the candidates `stable.stable_routes` finds) and the weights the rollout recorded."""
        vs = self._get(VS_PLURAL, target.namespace, target.virtual_service)
        try:
            dr: Obj | None = self._get(DR_PLURAL, target.namespace, target.dr_name)
            patch.subset_versions(dr)
        except CanaryError:
            dr = None
        recorded = claims.record_on(vs)
        route = target.route or (recorded.route if recorded is not None else "")
        return vs, dr, route, recorded.weights if recorded is not None else None

    def _read_for_stable(self, target: Target) -> tuple[Obj, Obj | None, str]:
        """What sending traffic back to stable needs, and no more: the VirtualService, the route (the one named, else
        the rollout's recorded or claimed one (`claimed_route`), else the only one with subsets 'stable' and 'canary':
        a route added beside it must not block a rollback), and the DestinationRule if it can be read (None if not:
        moving traffic to stable does not depend on what the subsets select). Raises when the VirtualService cannot be
        read or no single route can be found."""
        vs = self._get(VS_PLURAL, target.namespace, target.virtual_service)
        try:
            dr: Obj | None = self._get(DR_PLURAL, target.namespace, target.dr_name)
            patch.subset_versions(dr)
        except CanaryError:  # missing, unreadable, or without the subsets: not needed for stable 100%
            dr = None
        route = target.route or ""
        try:
            patch.locate_route(vs, route)
        except TargetError:
            if route:
                raise
            recorded = claims.record_on(vs)  # the rollout's own route, by its record or the name noted at its writes (549),
            # else the one holding the weights it recorded
            claimed = "" if recorded is not None and recorded.route else claimed_route(vs, dr, target)
            route = recorded.route if recorded is not None and recorded.route else claimed or patch.route_for(
                vs, dr if dr is not None else {}, recorded=recorded.weights if recorded is not None else None)
            noted = patch.noted_service(vs)
            # found by a rule naming another service (523); one found by its noted name was checked there (549)
            if noted and not claimed and noted not in stable.route_hosts(vs, route):
                raise TargetError(f"{patch.where(vs)}: route {route or '(the only one)'} sends to none of the "
                                  f"rollout's service {noted}: not the rollout's route")
        return vs, dr, route

    def set_weights(self, target: Target, weights: Weights, *, state: str,
                    expect_state: str | None | object = ANY_STATE,
                    expect_weights: Weights | None = None) -> RouteStatus:
        """See `TrafficRouter.set_weights`. `expect_weights` is checked on every attempt's read, after the
        record's guard (another writer's decision is a plain RoutingConflict, adopted), and never for a
        stable-100% write (stable 100% over any weights is always the safe write)."""
        where = f"{target.namespace}/{target.virtual_service}"
        first_found: list[str | None] = []  # the record on the route at this write's first read
        also: list[str] = []  # what the write changes beyond the driven route's weights (`RouteStatus.also_ended`)
        computed: list[bool] = []  # a desired object was computed (and sent, unless found already as desired)

        def compute() -> tuple[Obj, Obj, Obj]:
            computed.clear()  # an attempt refused (409) or failing before its write sent nothing (589)
            ref: patch.RouteRef | None = None
            service = ""  # the rollout's service, found as the rule and the route agree below
            # a copy from the informers' cache (`seed`) may be behind the API server: no evidence of a revert
            cached = (VS_PLURAL, target.namespace, target.virtual_service) in getattr(self._local, "cache", {})
            try:
                vs, dr, ref = self._read_checked(target)
                service = _service(dr, target)
                desired = patch.with_weights(vs, weights, route_name=target.route, state=state)
                # the service the route and its rule agree on, noted for the rollout's stable-100% writes (523)
                # and the route's name, which finds it once the rollout claimed it as the only one (549)
                driven = vs["spec"]["http"][ref.index]
                # (the note bound to the record this write carries: a rollout claiming the route is not checked
                # against the one before it)
                if stable.not_noted(driven, desired):  # its service and match another's: a stable-100% write
                    # checks the rule against the note (`_stable_service`); a step is not written (decision 570)
                    raise patch.reshaped(TargetError(not_noted_words(
                        where, patch._route_label(driven, ref.index),
                        ", ".join(sorted(stable.route_hosts(vs, target.route))) or "nothing",
                        patch.noted_service(vs))))
                patch.note_service(desired, state, stable.route_service(driven, vs),
                                   route=driven["name"] if isinstance(driven.get("name"), str) else "",
                                   match=patch.route_match(driven))
            except CanaryError:
                if weights != STABLE_ONLY:
                    raise
                # stable 100% must not depend on what only moving traffic to the canary needs, nor on
                # the route's shape: its `stable` destination 100, every other one 0 (`stable`)
                vs, dr, route, recorded = self._for_stable_write(target)  # type: ignore[assignment]
                service = _stable_service(vs, dr, target, route)
                desired = stable.with_stable_only(vs, route_name=route, recorded=recorded, state=state, host=service)
            also.clear()
            # a rollback's end, or a finished rollout's end re-asserted (the controller's one write with no record,
            # `rollout.end_reasserted`): no mirror left to the canary (decision 612), and no other route's split
            # with its canary subset, which selects a version nobody judges (decision 633)
            if weights == STABLE_ONLY and (state is None or _ends_rolled_back(state)):
                before = copy.deepcopy(desired)
                desired = _without_canary_mirrors(desired, target, service)
                also.extend(_routes_changed(before, desired))
            # a record the API server would refuse beside the other annotations (422), said after the guards (565)
            too_long = _fit_record(desired, state, weights)
            found = patch.read_state(vs)
            if not first_found:
                first_found.append(found)
            if desired == vs:
                # already exactly what this write puts there, our record's text included: our own write, landed
                # although its answer was a 5xx or a timeout, met again as the retry's 409. Done, not a revert nor
                # another writer's record (its weights differ from `expect_weights`: they are this write's own)
                return vs, desired, dr
            if (expect_weights is not None and weights != STABLE_ONLY and ref is not None and found == state
                    and first_found[0] != state):
                # this write's own record, not on the route at its first read (nobody else writes it), under
                # weights other than it put there: it landed, its answer lost, and the weights were changed since
                # (a revert, even to exactly `expect_weights`): not written over, as a revert before it is not
                # (decision 422; it passed `expect_weights` and was written over, decision 396's left)
                seen = patch.observe_weights(vs, ref)
                shown = str(seen.weights) if seen.canonical else seen.raw
                raise WeightsMoved(f"{where}: the route's weights are {shown}, not {weights} as this write (which "
                                   "landed, its answer lost) put them: changed outside the rollout since; not "
                                   "written again", found=str(seen.weights) if seen.canonical else "unknown")
            # A retry after 409 re-applies our weights on top of other edits -- but never on top
            # of another writer's rollout state (an operator's `canary rollback`): that is theirs.
            if expect_state is not ANY_STATE and found != expect_state and not rl.carried(found, state):
                raise RoutingConflict(f"{where}: the rollout state was changed by someone else; re-read it before "
                                      "writing")
            # ...nor on top of weights other than those the write was decided at (decision 185): a revert of the
            # weights alone keeps our record, and was overwritten here unseen. Never for stable 100%.
            if expect_weights is not None and weights != STABLE_ONLY and ref is not None:
                seen = patch.observe_weights(vs, ref)
                if (not seen.canonical or seen.weights != expect_weights) and cached:
                    raise _Conflict(f"{where}: weights read from a cached copy; read again from the API server")
                if not seen.canonical or seen.weights != expect_weights:
                    shown = str(seen.weights) if seen.canonical else "unknown"
                    raise WeightsMoved(f"{where}: the route's weights are {shown if seen.canonical else seen.raw}, "
                                       f"not {expect_weights} as when this write was decided (changed outside the "
                                       "rollout); not written", found=shown)
            if too_long:
                raise NoRoom(too_long)
            computed.append(True)
            return vs, desired, dr

        try:
            written, dr = self._update(target, VS_PLURAL, target.virtual_service, compute)
        except CanaryError as exc:
            if also and computed:  # the write was sent with these changes: if it landed unanswered, its retry
                exc.also_ended = tuple(also)  # type: ignore[attr-defined]  # finds them made and says none (589)
            raise
        return dataclasses.replace(self._status(written, dr, weights), also_ended=tuple(also))

    def point_subset(self, target: Target, subset: str, version: str, *,
                     guard: Callable[[], None] | None = None, supersede: bool = False) -> None:
        def compute() -> tuple[Obj, Obj, Obj]:
            dr = self._get(DR_PLURAL, target.namespace, target.dr_name)
            # a rule edited to name another service describes its pods now: never pointed at ours (decision 644)
            try:
                vs = self._get(VS_PLURAL, target.namespace, target.virtual_service)
            except NotFound:  # no route to tell the rollout's service by: pointed as before
                vs = {}
            elsewhere, untold = _rule_host(vs, dr, target)
            if elsewhere:
                raise RuleElsewhere(elsewhere)
            if untold:  # not pointed either, but no claim of a re-hosted rule (503, NR) that may be false (661)
                raise TargetError(untold)
            if guard is not None:
                # on every attempt (a 409 retry must not re-apply what a rollback forbade), and AFTER the
                # DestinationRule is read: a rollback recorded after this check ends with a DestinationRule
                # write (its superseding re-point) after that read, so this write fails its resourceVersion
                # precondition instead of landing after it (checked first, the rule read after the rollback
                # had finished, and the write landed last: the stable subset on the new version under a
                # rolled-back record, should the undo after it not come)
                guard()
            mark = f"{subset}={version} {datetime.datetime.now(datetime.timezone.utc).isoformat()}" if supersede else None
            return dr, patch.with_subset_version(dr, subset, version, mark=mark), dr

        self._update(target, DR_PLURAL, target.dr_name, compute)

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        """Best effort, one attempt, short timeout: an Event must never stall a rollback."""
        body = kube.event_body(namespace=target.namespace, reason=reason, message=message, warning=warning,
                               involved={"apiVersion": f"{GROUP}/{self.version}", "kind": "VirtualService",
                                         "name": target.virtual_service},
                               component="canary", generate_name=f"{target.virtual_service}.")
        try:
            self._raw_create_event(target.namespace, body)
            return True
        except Exception:  # noqa: BLE001 — best effort by contract; never raise, never log
            return False

    # --- internals --------------------------------------------------------------

    def _raw_create_event(self, namespace: str, body: Obj) -> None:
        # A dict body keeps fields such as reportingComponent exactly as we wrote them.
        self.core.create_namespaced_event(namespace, body, _request_timeout=min(self.timeout, 3.0))

    def _read_checked(self, target: Target) -> tuple[Obj, Obj, patch.RouteRef]:
        """Read VS and DR and check them together: route shape, subsets, host."""
        vs = self._get(VS_PLURAL, target.namespace, target.virtual_service)
        ref = patch.locate_route(vs, target.route)
        dr = self._get(DR_PLURAL, target.namespace, target.dr_name)
        patch.subset_versions(dr, host=ref.host, host_namespace=target.namespace)
        return vs, dr, ref

    def _status(self, vs: Obj, dr: Obj | None, weights: Weights) -> RouteStatus:
        """What was read; subset versions "" when the DestinationRule is unreadable (stable-100% writes only)."""
        try:
            versions = patch.subset_versions(dr) if dr is not None else {patch.STABLE: "", patch.CANARY: ""}
        except TargetError:
            if weights != STABLE_ONLY:
                raise
            versions = {patch.STABLE: "", patch.CANARY: ""}
        return RouteStatus(
            weights=weights,
            state=patch.read_state(vs),
            stable_subset_version=versions[patch.STABLE],
            canary_subset_version=versions[patch.CANARY],
            resource_version=str(vs.get("metadata", {}).get("resourceVersion", "")),
            routes=patch.route_names(vs),
            subsets_differ=claims.subset_labels_differ(dr) if dr is not None else "",
        )

    def _update(self, target: Target, plural: str, name: str,
                compute: Callable[[], tuple[Obj, Obj, Obj]]) -> tuple[Obj, Obj]:
        """Read-compute-replace with the read resourceVersion; on 409 start over (bounded).

        `compute` reads and returns (current, desired, DestinationRule as read);
        the desired object still carries the resourceVersion it was read at.
        Returns (written object, DestinationRule).
        """
        what = f"{target.namespace}/{name}"
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Conflict),
                stop=tenacity.stop_after_attempt(self.conflict_attempts),
                wait=self.wait,
                reraise=True,
            ):
                with attempt:
                    current, desired, dr = compute()
                    if desired == current:
                        return current, dr  # idempotent: nothing to write
                    return self._replace(plural, target.namespace, name, desired), dr
        except _Conflict as exc:
            raise ConflictStorm(
                f"{what}: {self.conflict_attempts} writes in a row met a concurrent change (HTTP 409); "
                "someone else keeps editing this object") from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def list_virtual_services(self, namespace: str | None) -> list[Obj]:
        """Every VirtualService in `namespace` (None: all namespaces), as listed (`canary sweep`)."""
        return self._list(VS_PLURAL, namespace)[0]

    def list_virtual_services_at(self, namespace: str | None) -> tuple[list[Obj], float | None]:
        """`list_virtual_services`, and the API server's time of the answer (its `Date` header, epoch
        seconds, 1 s resolution; None when absent): a clock every caller shares (`canary sweep`)."""
        return self._list(VS_PLURAL, namespace, with_date=True)

    def server_time(self, namespace: str, name: str) -> float | None:
        """The API server's time (epoch seconds, its `Date` header, 1 s resolution) of a read of VirtualService
        namespace/name; None when it has no such header or the read fails (said by the read that matters, not
        here). A clock of the cluster, for a caller that must not compare its own with one a promote recorded
        (`canary status`'s undriven note; decision 216)."""
        try:
            res = self._call(lambda: self.custom.get_namespaced_custom_object_with_http_info(
                GROUP, self.version, namespace, VS_PLURAL, name, _request_timeout=self.timeout),
                f"{namespace}/{name} ({VS_PLURAL})")
        except CanaryError:
            return None
        headers = res[2] if isinstance(res, tuple) and len(res) == 3 else None
        return _http_date((headers or {}).get("Date") or (headers or {}).get("date"))

    def splits_elsewhere(self, target: Target, *, listed: list[Obj] | None = None,
                         dr: Obj | None = None) -> tuple[str, str, Any]:
        """Before a claim: (why it must not go ahead, why that could not be told, the rollout in progress that made
        that split), "" each (None) when not. Why not: another
        VirtualService of the namespace splits traffic with the rollout's canary subset (`claims.split_in_other`;
        the driven one's own routes are `inspect`'s `split_elsewhere`). Cannot be told: the VirtualServices cannot
        be listed (403: a Role without `list`; 404), or the DestinationRule names no service. `listed`: the
        VirtualServices as the controller's informers hold them (of any namespace), instead of a LIST at each claim;
        `dr`: the DestinationRule as they hold it, instead of a GET (decision 606).
        Raises what `_list` raises for an API that keeps failing."""
        host, items, unknown = self._others(target, listed=listed, dr=dr)
        for vs in items:
            why, busy = claims.split_in_other(vs, host, dr=f"{target.namespace}/{target.dr_name}",
                                              driven=f"{target.namespace}/{target.virtual_service}")
            if why:
                return why, "", busy
        # the namespace's were read, the others' could not be: said at the claim (`preflight.splits_unchecked`)
        return "", unknown or (self._narrowed_words(target.namespace) if listed is None else ""), None

    def split_in_others(self, target: Target, *, listed: list[Obj] | None = None, dr: Obj | None = None,
                        glance: bool = False) -> tuple[claims.OtherSplit | None, str]:
        """Once claimed: (the first split with the canary subset on another VirtualService of the namespace, None
        when none; why that could not be told, "" when it could), for a rollout's looks and its rollback's
        (decisions 602, 603). `listed`, `dr`: as `splits_elsewhere`'s. `glance`: each read tried once, within
        GLANCE_TIMEOUT_S (`subset_pods`'s: a look or a landed rollback is not held by a failing API server for
        the router's tries). Raises what `_list` raises."""
        if glance:
            return self._glancing().split_in_others(target, listed=listed, dr=dr)
        host, items, unknown = self._others(target, listed=listed, dr=dr)
        return next((s for s in (claims.split_on_other(vs, host) for vs in items) if s is not None), None), unknown

    def _others(self, target: Target, *, listed: list[Obj] | None, dr: Obj | None) -> tuple[str, list[Obj], str]:
        """(the rollout's service in full, every other VirtualService read, why they could not be read: "" when they
        were). Read: those of every namespace (`_every_virtual_service`), or `listed` (an informer's, of whatever
        namespaces it watches); each is the rollout's only where its routes name the service in full
        (`claims.split_in_other`: a short host in another namespace is that namespace's own service)."""
        dr = dr if dr is not None else self._get(DR_PLURAL, target.namespace, target.dr_name)
        host = _service(dr, target)
        if not host:
            return "", [], f"DestinationRule {target.namespace}/{target.dr_name} names no host"
        try:
            items = listed if listed is not None else self._every_virtual_service(target.namespace)
        except ConfigError as exc:  # refused for good (a 403, a 404): a transient error is raised, retried
            return host, [], str(exc)
        driven = (target.namespace, target.virtual_service)
        return host, [vs for vs in items if isinstance(vs, dict) and isinstance(vs.get("metadata"), dict)
                      and (vs["metadata"].get("namespace", target.namespace), vs["metadata"].get("name")) != driven], ""

    def _every_virtual_service(self, namespace: str) -> list[Obj]:
        """The VirtualServices of every namespace: Istio routes to a service from a VirtualService of any namespace
        (an ingress gateway's in `edge` or `istio-system`, exported to its clients), and its subsets are the
        service's DestinationRule's (decision 844). Where this identity may not list them all (a namespaced Role:
        403, said once at the claim through `_narrowed`), those of `namespace`, as before."""
        if not self._narrowed:
            try:
                return self._list(VS_PLURAL, None)[0]
            except ConfigError as exc:
                self._narrowed["why"] = str(exc)
        return self._list(VS_PLURAL, namespace)[0]

    def others_unlisted(self, namespace: str) -> str:
        """Why this process reads the VirtualServices of `namespace` only, not every namespace's (a 403 once:
        `_narrowed`), "" when it reads them all: for a rollback's end line (decision 901)."""
        return self._narrowed_words(namespace)

    def _narrowed_words(self, namespace: str) -> str:
        """Why the VirtualServices beyond `namespace` (the claim's own: one router serves every namespace's claims
        in the controller) were not read, "" when they were (decision 862)."""
        if not self._narrowed:
            return ""
        return (f"the VirtualServices of namespaces other than {namespace} cannot be listed ({self._narrowed['why']}): "
                "a split with the canary subset on one of them (an ingress gateway's) is not seen; give the identity "
                "list on virtualservices in all namespaces (a ClusterRole) to check them")

    def _list(self, plural: str, namespace: str | None, *, with_date: bool = False) -> tuple[list[Obj], float | None]:
        """One LIST of `plural` in `namespace` (None: all namespaces), with the router's retries; and
        with `with_date`, the server's time of the answer."""
        what = f"{namespace} ({plural})" if namespace else f"all namespaces ({plural})"

        def listed() -> tuple[list[Obj], Any]:
            # checked inside the retries: a 200 whose body is not a list (empty, cut, a proxy's page) is asked
            # again, and never read as an empty list (`kube.list_items`)
            if namespace:
                res = self.custom.list_namespaced_custom_object_with_http_info(
                    GROUP, self.version, namespace, plural, _request_timeout=self.timeout)
            else:
                res = self.custom.list_cluster_custom_object_with_http_info(
                    GROUP, self.version, plural, _request_timeout=self.timeout)
            body, _, headers = res
            return list(kube.list_items(body, what)), headers

        items, headers = self._call(listed, what)
        at = _http_date((headers or {}).get("Date") or (headers or {}).get("date")) if with_date else None
        return items, at

    def annotate(self, namespace: str, name: str, key: str, value: str, *, expect_state: str | None) -> None:
        """Set annotation `key` on VirtualService namespace/name, only while its rollout record is still
        `expect_state` (RoutingConflict otherwise: its owner wrote meanwhile). Nothing else changes."""
        target = Target(namespace=namespace, virtual_service=name, model=name, stable_version="", canary_version="")

        def compute() -> tuple[Obj, Obj, Obj]:
            vs = self._get(VS_PLURAL, namespace, name)
            if patch.read_state(vs) != expect_state:
                raise RoutingConflict(f"{namespace}/{name}: the rollout state changed; not annotated")
            out = copy.deepcopy(vs)
            patch.annotate(out, key, value)
            room = patch.annotation_room(out, key)
            if len(value.encode()) > room:  # the API server would refuse it (422): not sent, said (decision 569)
                raise NoRoom(_no_room(out, room, f"needs {len(value.encode()):,} bytes", key=key,
                                      then=f"{key} not written"))
            return vs, out, {}

        self._update(target, VS_PLURAL, name, compute)

    def prefetch(self, namespace: str | None) -> tuple[list[Obj], dict[tuple[str, str], Obj]]:
        """LIST VirtualServices and DestinationRules once (a controller tick over many rollouts):
        each listed object then serves ONE read; every later read (a retry after 409, the read
        before a write) goes to the API again, so nothing stale is ever written back. Returns, for this
        tick's looks at the other VirtualServices (decision 658), copies of the VirtualServices that split
        with some canary subset (`splits.canary_split_hosts`) and of the DestinationRules by (namespace, name):
        copies, as a read may change the object it is served."""
        from canary.routing.splits import canary_split_hosts

        cache: dict[tuple[str, str, str], Obj] = {}
        for plural in (VS_PLURAL, DR_PLURAL):
            for item in self._list(plural, namespace)[0]:
                meta = item.get("metadata", {})
                cache[(plural, meta.get("namespace", ""), meta.get("name", ""))] = item
        self._local.cache = cache
        split = [copy.deepcopy(o) for (plural, _, _), o in cache.items()
                 if plural == VS_PLURAL and canary_split_hosts(o)]
        # the rules only where some VirtualService splits (read only then): copying them all cost 23 ms a tick
        # with 500 in the namespace, for nothing in the common case (decision 692)
        return split, ({(ns, name): copy.deepcopy(o) for (plural, ns, name), o in cache.items() if plural == DR_PLURAL}
                       if split else {})

    def seed(self, objs: Iterable[tuple[str, Obj]]) -> None:
        """Objects read elsewhere (the controller's informer cache), for this thread: like `prefetch`,
        each serves ONE read; every later read (a retry after 409, a guard's re-read) asks the API."""
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        for plural, obj in objs:
            meta = obj.get("metadata", {})
            cache[(plural, meta.get("namespace", ""), meta.get("name", ""))] = obj

    def forget_prefetch(self) -> None:
        """Drop what `prefetch` or `seed` gave this thread and no read used: it must not serve later."""
        self._local.cache = {}

    def _glancing(self) -> IstioRouter:
        """This router with each read tried once, within GLANCE_TIMEOUT_S: the same clients, cache and fence."""
        quick = copy.copy(self)
        quick.transient_attempts, quick.timeout = 1, min(self.timeout, GLANCE_TIMEOUT_S)
        return quick

    def subset_pods(self, target: Target, subset: str = patch.CANARY, *, glance: bool = False) -> Any:
        """The pods `subset` (`canary`, `stable`) will select once pointed at the target's version of it
        (`routing.pods`): a `pods.PodCount`, `unchecked` saying why when the Service or the pods cannot
        be read (403, 404). Raises what `_get` raises for the DestinationRule, KubeUnavailable when the
        API keeps failing. `glance`: each of its reads tried once, within GLANCE_TIMEOUT_S (a warning's
        count after a rollback landed: on a failing API server it must not hold `canary rollback`'s
        answer, or a controller worker, for the router's four 10 s tries a read)."""
        if glance:
            return self._glancing().subset_pods(target, subset)
        import json

        from canary.routing import pods

        dr = self._get(DR_PLURAL, target.namespace, target.dr_name)
        version = target.canary_version if subset == patch.CANARY else target.stable_version
        labels = pods.subset_labels(dr, subset, version)
        svc = pods.service_of(dr, target.namespace)
        namespace = svc[1] if svc else target.namespace

        def read(fn: Callable[[], Any], what: str, *, listed: bool = False) -> tuple[Any, str]:
            """(the answer's JSON, "") or (None, why it cannot be read) for a 403 or 404; with `listed`, the LIST's
            items instead of the JSON. An answer that is not an object (`listed`: a list object, `kube.raw_list`)
            is asked again, as a 5xx is: a 200 whose body a proxy emptied was "no pods", and a Service's "no
            selector: unchecked"."""
            def call() -> Any:
                try:
                    resp = fn()
                except ApiException as exc:
                    if exc.status in (403, 404):
                        return exc
                    raise
                if listed:
                    return kube.raw_list(resp, what)[0]
                try:
                    got = json.loads(resp.data)
                finally:
                    resp.release_conn()
                if not isinstance(got, dict):
                    raise kube.BadAnswer(f"{what} was answered with a body that is not an object")
                return got
            got = self._call(call, what)
            if isinstance(got, ApiException):
                why = "forbidden (RBAC)" if got.status == 403 else "not found"
                return None, f"{what}: {why}"
            return got, ""

        if svc is None:  # a ServiceEntry's host, `name.namespace`, a wildcard: its endpoints are no Service's pods
            host = (dr.get("spec") or {}).get("host") if isinstance(dr, dict) else None
            return pods.PodCount(selector=pods.selector_text(labels), namespace=namespace,
                                 unchecked=f"host {host!r} of DestinationRule {target.namespace}/{target.dr_name} "
                                           "is not a Kubernetes Service (<name> or <name>.<namespace>.svc.<domain>): "
                                           "which pods serve it is not known")
        service, why = read(lambda: self.core.read_namespaced_service(
            svc[0], svc[1], _preload_content=False, _request_timeout=self.timeout), f"Service {svc[1]}/{svc[0]}")
        if service is None:
            return pods.PodCount(selector=pods.selector_text(labels), namespace=namespace, unchecked=why)
        chosen = (service.get("spec") or {}).get("selector") if isinstance(service, dict) else None
        if not isinstance(chosen, dict) or not chosen:
            # no selector (endpoints written by hand, an ExternalName): no pod is its endpoint by label, and
            # the subset's labels alone (`version=v2`) counted any app's pod of that version in the namespace
            return pods.PodCount(selector=pods.selector_text(labels), namespace=namespace,
                                 unchecked=f"Service {svc[1]}/{svc[0]} has no selector: which pods are its "
                                           "endpoints is not known")
        chosen = {str(k): str(v) for k, v in chosen.items()}
        clash = sorted(k for k in chosen if k in labels and chosen[k] != labels[k])
        if clash:  # Istio selects the subset among the Service's endpoints: no pod can carry both values
            both = ", ".join(f"{k}={chosen[k]} (Service) and {k}={labels[k]} ({subset} subset)" for k in clash)
            return pods.PodCount(selector=f"{pods.selector_text({**chosen, **labels})}; no pod can have {both}",
                                 namespace=namespace)
        labels = {**chosen, **labels}
        selector = pods.selector_text(labels)
        items, why = read(lambda: self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False, _request_timeout=self.timeout),
            f"pods {selector} in {namespace}", listed=True)
        if items is None:
            return pods.PodCount(selector=selector, namespace=namespace, unchecked=why)
        ready, total, not_ready, failing = pods.count_ready(items, labels)
        return pods.PodCount(ready=ready, total=total, selector=selector, namespace=namespace, not_ready=not_ready,
                             failing=failing)

    def _get(self, plural: str, namespace: str, name: str) -> Obj:
        cached = getattr(self._local, "cache", {}).pop((plural, namespace, name), None)
        if cached is not None:
            return cached
        obj = self._call(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, self.version, namespace, plural, name, _request_timeout=self.timeout),
            f"{namespace}/{name} ({plural})",
        )
        if not isinstance(obj, dict):
            raise kube.translate(TypeError(f"unexpected answer {type(obj).__name__}"), f"{namespace}/{name}")
        return obj

    def _replace(self, plural: str, namespace: str, name: str, body: Obj) -> Obj:
        def put() -> Obj:
            left = self.fence()
            if left <= 0.05:
                raise NotLeader(f"{namespace}/{name}: not the leader (or the lease expires now); write refused")
            try:
                answer = kube.unvalidated(self.custom.replace_namespaced_custom_object)(
                    GROUP, self.version, namespace, plural, name, body, _request_timeout=min(self.timeout, left))
            except ApiException as exc:
                if exc.status == 409:
                    raise _Conflict(f"{namespace}/{name}: 409") from exc
                raise
            # a 200 whose body is not the object (empty, a proxy's page, `null`, `{}`): the write may have landed,
            # its answer lost; tried again as a 5xx is, its retry's 409 meets it as our own (`set_weights`). Taken
            # as the object written it was an AttributeError, or a RouteStatus of no record (decision 394)
            return kube.an_object(answer, f"the write of {namespace}/{name} ({plural})")

        written: Obj = self._call(put, f"{namespace}/{name} ({plural})")
        if self.written is not None and isinstance(written, dict):
            self.written(plural, written)
        return written

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        """One API call with bounded retries on transient errors, translated at the end."""
        try:
            client = getattr(self.custom, "api_client", None)
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(kube.is_transient),
                stop=tenacity.stop_after_attempt(self.transient_attempts),
                wait=kube.retry_wait(self.wait, client),  # the server's Retry-After when it asks for longer
                sleep=self.sleep or kube.retry_sleep(client),
                reraise=True,
            ):
                with attempt:
                    return fn()
        except (_Conflict, NotLeader):
            raise
        except Exception as exc:
            raise kube.translate(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _http_date(value: Any) -> float | None:
    """An HTTP `Date` header as epoch seconds; None when absent or unreadable."""
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(str(value)).timestamp() if value else None
    except (TypeError, ValueError):
        return None


def _service(dr: Obj | None, target: Target) -> str:
    """The rollout's service as its DestinationRule names it, in full (`patch.fqdn`); "" without the rule
    (a stable-100% write then acts on every route with a `stable` destination beside others)."""
    spec = dr.get("spec") if isinstance(dr, dict) else None
    host = spec.get("host") if isinstance(spec, dict) else None
    if not isinstance(host, str) or not host.strip():
        return ""
    meta = dr.get("metadata") if isinstance(dr, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return patch.fqdn(host, ns if isinstance(ns, str) and ns else target.namespace)


def claimed_route(vs: Obj, dr: Obj | None, target: Target) -> str:
    """The route a rollout that claimed the only route (its record names none) last moved its weights on, by the
    name noted beside its record, checked against the services of the note and of the DestinationRule `dr`
    (`stable.claimed_route`); "" when that does not tell it (decision 549). TargetError when the name and the rule
    agree on a route while another still sends to the noted service: which is the rollout's cannot be told (555)."""
    return stable.claimed_route(vs, _service(dr, target))


def _stable_service(vs: Obj, dr: Obj | None, target: Target, route: str) -> str:
    """The rollout's service for a stable-100% read or write: its DestinationRule's (`_service`), checked against the
    services the rollout's own route sends to (`stable.route_hosts`: the route `route`, else the only one, else the
    one found by the name noted at its writes, `claimed_route`, decision 549) and the one noted for the rollout when
    it last moved its weights (`patch.noted_service`: its route's, the rule agreeing; what tells the rollout's service
    where its route cannot be named, a route added beside the only one it claimed). When neither is the rule's (the
    rule edited mid-rollout to name another service, another model's on a shared VirtualService), raises TargetError
    naming both: taken from the rule, the write picked the other model's route (`stable_routes` matches by host) and
    wrote its weights, and the end then points a rule that now describes another service. Decision 523; since
    decision 644 the rollout's own service is returned instead (`_own_service`: its route's one host, else the noted
    one), so stable 100% is written on its own route, and the end's pointing of the rule is what is refused
    (`rule_elsewhere`). Still raised where the rollout's service cannot be told (its route's name carried by another
    model's route, 570/580; several hosts and no note)."""
    rule = _service(dr, target)
    # a route claimed as the only one is found by the name noted at its writes (549): its hosts are the rollout's
    # too (a route and rule re-pointed together); the write still acts on every route of the service at the
    # recorded weights (a copy of its split made since gets stable 100% as well)
    named = route or claimed_route(vs, dr, target)
    own = stable.own_hosts(vs, named) | ({patch.noted_service(vs)} - {""})
    if rule and not own and (why := _rule_unlike_record(vs, dr, target)):
        raise TargetError(why)
    if rule and own and rule not in own:
        label = f"route {route!r}" if route else "route (the only one when it was claimed)"
        shown = named or patch.noted_route(vs)  # (not found by its noted name: its match another's)
        if (found := stable.route_hosts(vs, shown) - own) and not stable.own_hosts(vs, shown):
            # its hosts not the rollout's: the route carrying the name, or left the only one, is another (570); or
            # the rollout's re-pointed with its rule and its match edited, which no object tells apart (580)
            raise TargetError(f"{patch.where(dr)}: spec.host names {rule}, and route {shown or '(the only one)'} of "
                              f"{patch.where(vs)} sends to {', '.join(sorted(found))}, but it takes other requests "
                              f"(its match) than the route noted at the rollout's writes, which sent to "
                              f"{', '.join(sorted(own))}: another model's route given its name (or left the only "
                              "one) and the rule edited to its service, or the rollout's route re-pointed with its "
                              "rule and its match edited since. Neither is written. Another model's: mend the rule's "
                              "host. The rollout's: remove the note (`kubectl annotate virtualservice "
                              f"{target.virtual_service} -n {target.namespace} {patch.SERVICE_ANNOTATION}-`), then "
                              f"`canary rollback {target.model} -n {target.namespace} --virtual-service "
                              f"{target.virtual_service}`")
        if mine := _own_service(vs, dr, target, named):
            return mine  # never the rule's host: its routes are another model's, perhaps (644)
        raise TargetError(f"{patch.where(dr)}: spec.host names {rule}, but the rollout's {label} of "
                          f"{patch.where(vs)} sends to {', '.join(sorted(own))}: the rule was edited to name another "
                          "service, so neither that service's routes nor the rule are written (another model's, "
                          "perhaps); mend the rule's host, or set the route's stable destination to 100 by hand")
    return rule


def _rule_unlike_record(vs: Obj, dr: Obj | None, target: Target) -> str:
    """Why the rule's host must not be taken for the rollout's service where nothing else tells it (no service noted:
    a record of an older canary; no route named, several now, or one sending nowhere): its subsets select neither
    version of the rollout recorded on `vs`, which pointed them (the canary subset at its start, the stable one at
    its end), so it was edited since, to another model's rule perhaps. Taken, the stable-100% write matched that
    model's routes by its host, set one to 100/0, left the rollout's split and recorded it rolled back (exit 0), and
    the end pointed that rule's stable subset (decision 664). "" when the rule selects either, or there is no record."""
    rec = claims.record_on(vs)
    try:
        versions = set(patch.subset_versions(dr).values()) if dr is not None else set()
    except TargetError:
        return ""
    if rec is None or not versions or versions & {rec.stable_version, rec.canary_version}:
        return ""
    return (f"{patch.where(dr)}: spec.host names {_service(dr, target)}, and its subsets select version(s) "
            f"{', '.join(sorted(versions))}, neither of the rollout recorded on {patch.where(vs)} "
            f"({rec.stable_version} -> {rec.canary_version}), whose service nothing else tells (no service noted at "
            "its writes, by an older canary; no route named, and not the only one): the rule was edited since, to "
            "another model's perhaps (or reverted to an older manifest), so neither its host's routes nor the rule "
            "are written. To end the split now, set the rollout's route's stable destination to 100 by hand (that "
            "records no end: `canary rollback` refuses the same way until the rule is mended); then mend the rule "
            f"(spec.host the route's service, its stable subset selecting {rec.stable_version} and its canary subset "
            f"{rec.canary_version}, in its GitOps source too) and run `canary rollback {target.model} -n "
            f"{target.namespace} --virtual-service {target.virtual_service}`, which records the end (decision 686)")


def _own_service(vs: Obj, dr: Obj | None, target: Target, named: str) -> str:
    """The rollout's service when its DestinationRule names another (decision 644): the one host its own route
    sends to, that route told by the rollout itself (the route its record names, else the one found by the name
    noted at its writes, `claimed_route`, else the VirtualService's only route) and `named` being it; the noted
    service, when there is one, must be among that route's hosts (it picks one of several). "" when that does not
    tell one: a route found otherwise (by `--route`, or by the note's service: a note edited by hand to another
    model's service is not told from the rule edited to it, and writing by it wrote that model's route, decision
    549's case (2)), several hosts none noted, or a route sending nowhere."""
    rec = claims.record_on(vs)
    http = vs.get("spec", {}).get("http") if isinstance(vs.get("spec"), dict) else None
    try:
        told = rec.route if rec is not None and rec.route else claimed_route(vs, dr, target)
    except CanaryError:
        return ""
    only = isinstance(http, list) and len(http) == 1 and not told
    if named != told and not (only and named in ("", http[0].get("name") if isinstance(http[0], dict) else "")):
        return ""
    hosts, noted = stable.own_hosts(vs, named), patch.noted_service(vs)
    if noted:
        return noted if noted in hosts else ""
    return next(iter(hosts)) if len(hosts) == 1 else ""


def rule_elsewhere(vs: Obj, dr: Obj | None, target: Target) -> str:
    """Why the DestinationRule `dr` must not be pointed at a version of the rollout on `vs`: its host names another
    service than the rollout's own route, or the one noted at its writes (`_stable_service`), so its subsets now
    describe another service's pods (another model's, perhaps: pointing them is decision 519's review's outage).
    "" when the rule names the rollout's service, or that cannot be told. Decision 644."""
    return _rule_host(vs, dr, target)[0]


def _rule_host(vs: Obj, dr: Obj | None, target: Target) -> tuple[str, str]:
    """(`rule_elsewhere`'s why, why the rule is not pointed though that cannot be told): the second where the
    rollout's service cannot be told (`_stable_service` refuses: its route's name carried by another model's route,
    or the rollout's route re-pointed with its rule and its match edited, decisions 570/580; the noted name and the
    rule agreeing on a route another still sends to the noted service, 555). Such a rule may well serve the route
    (580's case): a `RuleElsewhere`'s claim that every request fails (503, NR) was false there (decision 661)."""
    rule = _service(dr, target)
    if not rule or not vs:
        return "", ""
    rec = claims.record_on(vs)
    route = target.route or (rec.route if rec is not None else "")
    try:
        mine = _stable_service(vs, dr, target, route)
    except CanaryError as exc:
        return "", str(exc)
    if mine == rule:
        return "", ""
    dr_name = f"destinationrule {target.dr_name} -n {target.namespace}"
    return (f"{patch.where(dr)}: spec.host names {rule}, but the rollout's route of {patch.where(vs)} sends to {mine}: "
            "the rule now describes another service, so its subsets are not pointed (another model's pods, perhaps); "
            f"mend the rule (`kubectl edit {dr_name}`: spec.host {mine}, its subsets this model's labels), then run "
            f"`canary rollback {target.model} -n {target.namespace} --virtual-service {target.virtual_service}`"), ""


def _fit_record(desired: Obj, state: str | None, weights: Weights) -> str:
    """In place, for a stable-100% write: the record `state` on `desired` cut to what the object's other annotations
    leave of the API server's limit for them all (`patch.ANNOTATIONS_MAX_BYTES`), where it is over it: whole, the
    write was refused (422) and the traffic stayed split (decision 563). A function of the object written, so a
    retry of it, or a reader comparing what it wrote (`rl.carried`), finds the same text. Returns "" when the record
    fits, else why the write would be refused (a write towards the canary is never cut; decision 565)."""
    room = patch.annotation_room(desired, patch.STATE_ANNOTATION)
    if state is None or len(state.encode()) <= room:
        return ""
    if weights != STABLE_ONLY:
        return _no_room(desired, room, f"needs {len(state.encode()):,} bytes (only a stable-100% write cuts it)",
                        then=f"nothing moved ({weights} not written)")
    cut = rl.fit(state, room)
    patch.annotate(desired, patch.STATE_ANNOTATION, cut)
    if len(cut.encode()) > room:
        return _no_room(desired, room, f"needs {len(cut.encode()):,} bytes cut to its shortest form", then=(
            "stable 100% is written at the next try (a controller's next tick, `canary rollback` by hand)"))
    return ""


def _no_room(desired: Obj, room: int, needs: str, *, then: str, key: str = patch.STATE_ANNOTATION) -> str:
    """Why a write cannot carry its record (a stable-100% write's even cut; decision 565), or annotation `key` (`canary
    sweep`'s mark, decision 569): the annotation that takes the room, and what frees it, for the on-call who reads the
    `rollback.failed` line or the sweep's row; `then`: what comes of it."""
    meta = desired.get("metadata") or {}
    others = {str(k): len(str(k).encode()) + len(str(v).encode())
              for k, v in (meta.get("annotations") or {}).items() if k != key}
    # the rollout's record is never the one to remove (a mark's room taken by it: the largest other then)
    freeable = {k: n for k, n in others.items() if k != patch.STATE_ANNOTATION}
    big = max(freeable, key=freeable.__getitem__) if freeable else ""
    what = f"the rollout's record ({key})" if key == patch.STATE_ANNOTATION else key
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    biggest = f", {big} alone {others[big]:,}" if big else ""
    return (f"{name}: its other annotations take {sum(others.values()):,} of the {patch.ANNOTATIONS_MAX_BYTES:,} "
            f"bytes the API server allows all of an object's annotations together{biggest}: {max(room, 0):,} are left "
            f"for {what}, which {needs}; "
            f"the write would be refused (HTTP 422, metadata.annotations: Too long) and was not sent. Remove or shorten "
            f"{big or 'another annotation'} (kubectl annotate virtualservice {meta.get('name')} -n "
            f"{meta.get('namespace')} {big or 'KEY'}-): {then}")


def _ends_rolled_back(state: str | None) -> bool:
    """Whether the record a write carries ends the rollout without promoting it (rolled back, aborted)."""
    import json

    try:
        phase = json.loads(state).get("phase") if state else None
    except (ValueError, AttributeError):
        return False
    return phase in ("rolled_back", "aborted")


def not_noted_words(where: str, label: str, hosts: str, noted: str) -> str:
    """Why a step is not written on the route named (decision 570): it sends to `hosts` with another match than
    the route noted at the rollout's writes (which sent to `noted`). Its words class a rollout it ends as a foreign
    edit (`rollout.classify_reason`, decision 590)."""
    return (f"{where}: route {label} sends to {hosts} and takes other requests (its match) than the route noted at "
            f"the rollout's writes, which sent to {noted}: another route given its name, or left the only one; not "
            "written")


def _routes_changed(before: Obj, after: Obj) -> list[str]:
    """What `_without_canary_mirrors` changed, one entry a route: "http[1] (grpc): its mirror to the canary
    removed", "tcp[0]: its split with the canary ended, stable 100%" (routes compared by kind and index; the
    driven route's weights are the write's own, its mirror is said)."""
    out: list[str] = []
    for kind in ("http", "tcp", "tls"):
        old, new = (o.get("spec", {}).get(kind) if isinstance(o.get("spec"), dict) else None for o in (before, after))
        if not isinstance(old, list) or not isinstance(new, list):
            continue
        for i, (a, b) in enumerate(zip(old, new)):
            if a == b or not isinstance(a, dict) or not isinstance(b, dict):
                continue
            name = a.get("name")
            label = f"{kind}[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
            keys = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
            said = []
            if keys & {*stable.MIRROR_KEYS, "mirrors"}:
                said.append("its mirror to the canary removed")
            if "route" in keys:
                said.append("its split with the canary ended, stable 100%")
            out.append(f"{label}: {' and '.join(said) or 'changed'}")
    return out


def _without_canary_mirrors(vs: Obj, target: Target, host: str) -> Obj:
    """`vs` with no mirror to a subset of the rollout's service other than `stable` on the rollout's
    route(s) (`stable.drop_mirrors`): a rollback that left `mirror: {subset: canary}` in place sent
    the canary a full copy of the traffic, silently; no other route splitting traffic with the canary
    subset (`stable.drop_canary_splits`), nor mirroring to it. Unchanged where the routes cannot be told. `host`: the
    rollout's service as the write found it (`_stable_service`: never a rule's edited to another model's, 644)."""
    try:
        routes = [patch.locate_route(vs, target.route).index]
    except CanaryError:
        try:
            # a route answering every request itself has no mirror Istio acts on, and is left as it is (decision 522)
            routes = [r.index for r in stable.stable_routes(vs, target.route, host=host) if not r.nothing]
        except CanaryError:
            return vs
    for i in routes:
        stable.drop_mirrors(vs["spec"]["http"][i], host, vs)
    # and no other route left splitting with the rolled-back canary (`stable.drop_canary_splits`): the
    # service as the rule names it, else as the driven route's own `stable` destination does, else as noted at the
    # rollout's writes (its route answering every request itself beside another model's, decision 548: a TCP
    # route's split with the canary was left, the rollback exit 0; decision 556)
    service = host or (stable.route_service(vs["spec"]["http"][routes[0]], vs) if routes else "") or \
        patch.noted_service(vs)
    stable.drop_canary_splits(vs, service, driven=set(routes))
    # ...nor a mirror to it on another HTTP route (the gRPC route shadowing the canary subset, which still selects the
    # version rolled back): only where the service is known, so another model's mirror to its own canary stays (577)
    http = vs["spec"].get("http") if service and isinstance(vs.get("spec"), dict) else None
    for i, route in enumerate(http if isinstance(http, list) else []):
        if i not in routes and isinstance(route, dict) and not patch.routes_nothing(route):
            stable.drop_mirrors(route, service, vs, canary_only=True)  # another subset's shadow stays (584)
    return vs

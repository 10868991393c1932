"""Abandoned rollouts: traffic split on a route whose owner is gone, sent back to stable.

Every rollout's record names its owner (`RolloutState.owner`, docs/decisions.md 60). Two kinds
of owner can vanish without ending what they run, and leave the canary on its share of the
traffic for good:

* a `canary promote` killed with SIGKILL (an OOM kill, a lost node, a CI job killed hard; SIGTERM
  and SIGINT already send stable 100%). It writes its record at every look, `heartbeat_s` (its
  `look_every`) apart. A record the sweeper has *seen unchanged* for `abandoned_after(rec)` seconds
  of its own clock (3 x heartbeat + 120 s: 210 s with policies/default.yaml's 30 s looks) has nobody driving
  it. No clocks of two machines are compared (a promote records Prometheus's time): the controller
  remembers when it first saw each record (as client-go's leader election remembers when it saw a
  Lease change); `canary sweep`, one pass at a time, keeps that in an annotation on the
  VirtualService (`SEEN_ANNOTATION`), timed by the API server's clock;
* a CanaryRollout deleted with its finalizer removed by hand. (One whose API the server does not serve
  at all, a CRD deleted or another version, is reported as not looked up, never ended.)

A split rollout nobody drives is sent to stable 100% and recorded `aborted`; one half-way through
its promotion (`promoting`: every step passed, the canary at 100%) is finished, as a promote
interrupted there finishes it. Every write is guarded on the record read: an owner that wrote
meanwhile keeps its rollout. Left alone: paused rollouts (a person holds them), pending ones (stable
still has 100%), ended ones, and records with no owner (nothing tells whether they run). Ended ones
are only read (`check_end`, the controller's sweep): a rollback's stable subset left on the canary
version is pointed back, a promotion's left on the old version is reported. An ended or unreadable
record over weights that still give the canary traffic is nobody's split (`canary.unowned`: an end typed
in after its promote was killed): seen unchanged UNOWNED_AFTER_S, it gets stable 100% (`end_unowned`,
both sweeps; docs/decisions.md 157).

Log events: ``rollout.abandoned`` (warning, once the write landed: the owner, how long the record was
seen unchanged, what was done), with the rollout's own ``rollout.aborted`` / ``rollout.promoted``;
``rollout.split_unowned`` (an end typed over a split, ended); ``sweep.left_alone`` (the owner wrote meanwhile); ``sweep.owner_unknown`` (a CanaryRollout that could
not be looked up); ``sweep.failed``. Webhooks and Slack (`canary.notify`, where configured) get the end
as "aborted" (stable 100%) or "promotion" (finished), with the reason, as its write lands (`posted`: the one
mapping of an end to its posts, `notify_body.end_events`, so "prediction_shift" too beside an abort whose last
verdict failed that check).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from canary import crd
from canary import rollout as rl
from canary.errors import CanaryError, NotLeader, RoutingConflict, RuleElsewhere, TargetError, TransientError
from canary.kube import an_object
from canary.model import STABLE_ONLY, Target, Weights
from canary.reconcile import _rule_gone  # (842's test of the record's rule's 404: one definition)
from canary.reconcile import (as_routed, crd_ref, describe_owner, end_disagreement, execute, is_promote_owner,
                              landed_after, rollout_context, routed_fields)
from canary.routing import patch
from canary.routing.base import read_for_stable

# a promote record seen unchanged for 3 of its looks and this much more is abandoned: a look's queries
# (bounded, ~5 s each) and a slow write fit well inside it
ABANDON_GRACE_S = 120.0
# the look interval assumed for a promote record written before `heartbeat_s` was recorded
UNKNOWN_HEARTBEAT_S = 600.0
# a controller's time between sweeps (`canary controller run --sweep-every`)
SWEEP_EVERY_S = 60.0
# `canary sweep`'s memory between passes: {"record": fingerprint, "since": API server time first seen}
SEEN_ANNOTATION = "modelcanary.dev/sweep-seen"


class OwnerUnknown(CanaryError):
    """Whether a CanaryRollout owner still exists could not be read (403, 5xx, a timeout)."""


def abandoned_after(rec: rl.RolloutState) -> float:
    """Seconds a promote's rollout `rec` must be seen unchanged before it has nobody driving it."""
    beat = rec.heartbeat_s if rec.heartbeat_s > 0 else UNKNOWN_HEARTBEAT_S
    return 3 * beat + ABANDON_GRACE_S


def fingerprint(text: str) -> str:
    """A short digest of a record's text: it changes at every write of the owner."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def in_progress(rec: rl.RolloutState) -> bool:
    """Whether `rec` may be the sweep's to end: running, not ended, held by a person or still at 100/0."""
    return not rec.terminal and rec.phase not in (rl.PAUSED, rl.PENDING)


def watched(rec: rl.RolloutState) -> bool:
    """Whether `rec` is a promote's rollout the sweep times (in progress, not held by a person)."""
    return is_promote_owner(rec.owner) and in_progress(rec)


def orphan_reason(owner: str) -> str:
    """Why a rollout whose CanaryRollout `owner` no longer exists is sent to stable (one log line)."""
    return (f"orphaned: {describe_owner(owner).removeprefix('run by ')} no longer exists (deleted with its "
            "finalizer removed by hand)")


def why_abandoned(rec: rl.RolloutState, quiet_s: float | None, owner_gone: Callable[[str], bool]) -> str | None:
    """Why the rollout `rec` has nobody driving it, as the reason its end records; None when it has an
    owner, or is not ours to end (ended, paused, pending, or no owner recorded).

    `quiet_s`: seconds the sweeper has seen this very record unchanged, by its own clock (None: seen
    for the first time now). `owner_gone(owner)` answers for a CanaryRollout owner: True only when the
    API server says it no longer exists; it raises OwnerUnknown when that cannot be read. Pure but for
    `owner_gone`."""
    if not in_progress(rec):
        return None
    if is_promote_owner(rec.owner):
        limit = abandoned_after(rec)
        if quiet_s is None or quiet_s <= limit:
            return None
        beat = (f"it writes at every look, {rec.heartbeat_s:.0f}s apart" if rec.heartbeat_s > 0
                else "its look interval was not recorded")
        return (f"abandoned: {describe_owner(rec.owner, rec.job)} has not written this rollout for {quiet_s:.0f}s ({beat}; "
                f"gone after {limit:.0f}s): its process is gone or stalled")
    if rec.owner.startswith("CanaryRollout ") and owner_gone(rec.owner):
        return orphan_reason(rec.owner)
    return None


def asked_elsewhere(obj: dict[str, Any], virtual_service: str, rec: rl.RolloutState) -> str | None:
    """Why the rollout `rec`, recorded on `virtual_service` as CanaryRollout `obj`'s, has nobody driving
    it though `obj` exists: `obj`'s spec now names another VirtualService or canary version (edited
    before any status of that rollout landed, and the process that claimed it restarted since: nothing
    remembers the route). None when `obj` still asks for it, or is being deleted (its finalizer's
    work). Pure."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    st = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    t = st.get("target") if isinstance(st.get("target"), dict) else {}
    if (st.get("phase") and st.get("phase") not in rl.TERMINAL and t.get("virtualService") == virtual_service
            and t.get("canaryVersion") == rec.canary_version):
        return None  # its status shows this very rollout in progress: its own tick supersedes it (`_rescue`)
    sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    vs, version = str(sp.get("virtualService") or sp.get("model") or ""), str(sp.get("canaryVersion") or "")
    if vs == virtual_service and version == rec.canary_version:
        return None
    ref = crd_ref(rec.owner)[0]
    return (f"superseded: CanaryRollout {ref} now asks for {version or '(none)'} on VirtualService {vs or '(none)'}, "
            f"not {rec.canary_version} on {virtual_service}: nothing drives this rollout (ended by the sweep)")


def crd_gone(custom: Any, owner: str) -> bool:
    """Whether `owner` (`CanaryRollout ns/name#uid`) names a CanaryRollout that no longer exists, read
    from the API server (not a cache): a 404, or an object of that name with another uid (the name
    created again). False when it exists (with that uid, or none recorded). Raises OwnerUnknown when
    it cannot be read (403, 5xx, a timeout, or a 404 for the API itself: no CanaryRollout API served)."""
    ref, uid = crd_ref(owner)
    ns, _, name = ref.partition("/")
    try:
        # a 200 whose body is no object (empty, a proxy's page, `{}`) is a failed read (`kube.an_object`): read as
        # "another object of that name", it ended a rollout its live CanaryRollout drives (decision 391)
        obj = an_object(custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, crd.PLURAL, name,
                                                            _request_timeout=10), f"CanaryRollout {ref}")
    except Exception as exc:
        if getattr(exc, "status", None) == 404 and _names(getattr(exc, "body", None), name):
            return True  # that object is gone (not "the server could not find the requested resource": no CRD)
        raise OwnerUnknown(f"CanaryRollout {ref} could not be read: {getattr(exc, 'status', '') or type(exc).__name__} "
                           f"{getattr(exc, 'reason', '') or exc}".strip()) from None
    return bool(uid) and str(obj["metadata"]["uid"]) != uid


def _names(body: Any, name: str) -> bool:
    """Whether a 404's Status body is about the object `name` (details.name, as the API server sets it
    for a missing object), not about the resource type (no details: the API is not served)."""
    try:
        status = json.loads(body) if isinstance(body, (str, bytes)) else body
        return str(((status or {}).get("details") or {}).get("name") or "") == name
    except (ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Found:
    """One route with a rollout in progress: its record as read (`text`, which every write is guarded
    on), and why it is abandoned (`reason`; "" while it is not), or why that could not be told (`unknown`)."""

    namespace: str
    virtual_service: str
    record: rl.RolloutState
    text: str
    reason: str = ""
    quiet_s: float | None = None
    unknown: str = ""
    destination_rule: str = ""  # when the record names none (written before it did): the caller's
    # its CanaryRollout asks for something else now (`asked_elsewhere`): stable 100% even half-way through
    # a promotion, as that CR's own supersede does (docs/decisions.md 79)
    superseded: bool = False
    # the record does not parse (its error): `record` then stands in for it, built from the route (`unowned`)
    unreadable: str = ""
    # the route's split as listed, as Istio routes it (`routed_share`): what on-call is told the route was at,
    # not the record's weights (a route edited under its record, an unreadable record's stand-in); None: unreadable
    routed: Weights | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.virtual_service}"

    def target(self) -> Target:
        """What the write drives: the recorded versions, route and DestinationRule."""
        r = self.record
        return Target(namespace=self.namespace, virtual_service=self.virtual_service, model=r.model,
                      stable_version=r.stable_version, canary_version=r.canary_version,
                      destination_rule=r.destination_rule or self.destination_rule, route=r.route)


@dataclass
class Scan:
    """What one sweep found: `abandoned` (to end), `watching` (a promote's rollout in progress, timed
    since it was last seen to change), `unknown` (an owner that could not be looked up)."""

    abandoned: list[Found] = field(default_factory=list)
    watching: list[Found] = field(default_factory=list)
    unknown: list[Found] = field(default_factory=list)
    # with `scan(ended=True)`: every ended rollout (rolled back, aborted, promoted), timed as `watching`
    # is, for `check_end`: is its stable subset on the version its end serves?
    ended: list[Found] = field(default_factory=list)
    # an ended or unreadable record over weights that give the canary subset traffic (`canary.unowned`), timed as
    # `watching` is: `end_unowned` ends it at stable 100% once seen unchanged UNOWNED_AFTER_S
    unowned: list[Found] = field(default_factory=list)


def _canary_weighted(share: Any) -> bool:
    """Whether a route's split as Istio routes it (`routed_share`; None: a route of no rollout's shape, not one the
    sweep can tell) gives the canary destination weight: the only thing a listing tells of a split (the subsets
    are the DestinationRule's; `end_unowned` reads them). Weights that do not sum to 100 (80/30: 27% to the
    canary), a stable weight deleted (/20: all of it) are splits too; read strictly, such a split under an ended
    or unreadable record was skipped by both sweeps, exit 0 "no rollouts in progress", and left as it was."""
    return share is not None and share.canary > 0


def routed_share(vs: dict[str, Any], route: str) -> Weights | None:
    """The split of `vs`'s route `route` (as listed) as Istio routes it; None when it has no rollout's shape."""
    try:
        return patch.observe_weights(vs, patch.locate_route(vs, route)).weights
    except Exception:  # noqa: BLE001 - a route of no rollout's shape
        return None


def swept_cause(found: Found) -> str:
    """The class of the sweep's end of `found` (decision 607): its owner gone ("abandoned"), or its CanaryRollout
    asking for another rollout now ("superseded: ...", an operator's edit of the spec)."""
    return "operator" if found.superseded else "abandoned"


def _stand_in(name: str) -> rl.RolloutState:
    """What an unreadable record's Found carries as its record: no versions, the VirtualService's name."""
    return rl.RolloutState(model=name, stable_version="", canary_version="", phase=rl.ABORTED,
                           weights=STABLE_ONLY)


def _owner_of(text: str) -> str:
    """The owner an unreadable record names, when it names one as a string ("" otherwise)."""
    try:
        owner = json.loads(text).get("owner")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return owner[:300] if isinstance(owner, str) else ""


def scan(virtual_services: Iterable[dict[str, Any]], quiet: Callable[[dict[str, Any], str, str], float | None],
         owner_gone: Callable[[str], bool], *, owns: Callable[[str], bool] = lambda key: True,
         owner_object: Callable[[str], dict[str, Any] | None] | None = None,
         drives: Callable[[str, str, rl.RolloutState], bool] = lambda ns, name, rec: False,
         ended: bool = False) -> Scan:
    """The rollouts in progress among `virtual_services` (objects as listed) whose `namespace/name` this
    caller `owns` (a controller shard's share). `quiet(vs, key, text)`: how long the caller has seen
    that record unchanged (None: first seen now); asked only of a promote's rollout in progress.
    `owner_object(owner)`: the CanaryRollout a record names, as the caller has it (None: not known);
    a split rollout (paused too) that its existing CanaryRollout no longer asks for is abandoned too
    (`asked_elsewhere`), unless the caller `drives(namespace, name, rec)` that very rollout (it remembers
    it: its own next tick supersedes it). An unreadable record is skipped (its owner's next write, `canary status` and
    `canary rollback` report it). `ended`: the ended rollouts go to `Scan.ended` too (`check_end`)."""
    out = Scan()
    for vs in virtual_services:
        meta = vs.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        text = patch.read_state(vs)
        if not text or not owns(f"{ns}/{name}"):
            continue
        try:
            rec = rl.RolloutState.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            from canary.unowned import newer

            routed = routed_share(vs, "")
            if (later := newer(text)) and _canary_weighted(routed):  # maybe a newer canary's live rollout (167)
                out.unknown.append(Found(ns, name, replace(_stand_in(name), owner=_owner_of(text)), text,
                                         routed=routed, unknown=later))
                continue
            if _canary_weighted(routed):  # garbage over a split: no owner reads it as its own (`canary.unowned`)
                out.unowned.append(Found(ns, name, _stand_in(name), text, quiet_s=quiet(vs, f"{ns}/{name}", text),
                                         routed=routed, unreadable=f"{type(exc).__name__}: {exc}"[:300]))
            continue
        routed = routed_share(vs, rec.route)
        # an end typed over a split: nobody's (`canary.unowned`); a person's split after a real end is theirs (167)
        if rec.terminal and rec.weights != STABLE_ONLY and _canary_weighted(routed):
            out.unowned.append(Found(ns, name, rec, text, quiet_s=quiet(vs, f"{ns}/{name}", text), routed=routed))
            continue
        if ended and rec.phase in ENDS_SERVING:
            out.ended.append(Found(ns, name, rec, text, quiet_s=quiet(vs, f"{ns}/{name}", text), routed=routed))
            continue
        if not in_progress(rec) and not (rec.phase == rl.PAUSED and owner_object is not None):
            continue
        quiet_s = quiet(vs, f"{ns}/{name}", text) if watched(rec) else None
        try:
            reason = why_abandoned(rec, quiet_s, owner_gone)
        except OwnerUnknown as exc:
            out.unknown.append(Found(ns, name, rec, text, unknown=str(exc), routed=routed))
            continue
        superseded = False
        if (reason is None and owner_object is not None and rec.owner.startswith("CanaryRollout ")
                and not drives(ns, name, rec)):
            obj = owner_object(rec.owner)
            reason = None if obj is None else asked_elsewhere(obj, name, rec)
            superseded = reason is not None
        if reason is not None:
            out.abandoned.append(Found(ns, name, rec, text, reason, quiet_s, superseded=superseded, routed=routed))
        elif watched(rec):
            out.watching.append(Found(ns, name, rec, text, quiet_s=quiet_s, routed=routed))
    return out


# the ends `check_end` looks at: each names the version that serves every request after it
ENDS_SERVING = (rl.ROLLED_BACK, rl.ABORTED, rl.PROMOTED)
# an ended rollback seen unchanged this long with its stable subset on the canary version is repaired by the
# sweep: its writer (a rollback from `promoting` writes stable 100% with its record, then points the stable
# subset back) was killed between its two writes, or is slower than this (repairing it then is the same write)
REPAIR_AFTER_S = 30.0


def check_end(router: Any, found: Found, *, log: Any) -> str:
    """Whether `found`'s ended rollout serves what its end names (stable 100% and the stable subset on a
    rollback's old version, or a promotion's new one: `reconcile.end_disagreement`), and the repair of a
    rollback's left on its canary version. Returns "agrees" (nothing to do, nothing logged), "waiting" (disagrees,
    not yet seen unchanged `REPAIR_AFTER_S`), "repaired" (the stable subset pointed back at the old
    version, guarded on the record read: `subset.repaired`, by "sweep"), "reported" (a promotion's, or a
    rollback's whose stable subset selects a third version, someone's deploy since the end:
    `sweep.route_disagrees`, nothing written: moving every request to the new version is not the sweep's
    choice, as `canary rollback` does not make it either) or "unknown" (the route could not be read, or
    the repair failed: the next sweep reads it again). Never raises CanaryError; NotLeader is raised.

    A rollback that finds stable 100% with its subset left on the canary version repairs it too (`canary
    rollback`, docs/decisions.md 94 (d)); until this check nobody did unless asked: every request went to
    the rolled-back version, and the records said stable."""
    r = found.record
    log = log.bind(**rollout_context(found.target(), r))
    try:
        status = router.inspect(found.target())  # a read: the fence refuses writes only
    except CanaryError:
        return "unknown"
    if status.state != found.text:  # written since the listing: the next sweep reads it again
        return "unknown"
    why = end_disagreement(r, status)
    if not why:
        return "agrees"
    if found.quiet_s is None or found.quiet_s < REPAIR_AFTER_S:
        return "waiting"
    if r.phase == rl.PROMOTED:
        log.warning("sweep.route_disagrees", phase=r.phase, error=why,
                    hint=f"every request is served by {status.stable_subset_version}; `canary promote "
                         f"--canary-version {r.canary_version}` rolls the new version out again")
        return "reported"
    if status.stable_subset_version != r.canary_version:
        # a third version: not what a killed rollback leaves (its canary), but someone's deploy since the end
        # (the record stays until the next rollout); pointing it back at the old stable would undo that deploy
        log.warning("sweep.route_disagrees", phase=r.phase, error=why,
                    hint=f"left as it is: {status.stable_subset_version} is neither version of this rollout; "
                         f"`canary rollback {r.model}` points the stable subset back at {r.stable_version}")
        return "reported"
    actions: list[rl.Action] = [
        rl.PointSubset("stable", r.stable_version, guarded=True, undo_version=status.stable_subset_version),
        rl.Emit("subset.repaired", {"subset": "stable", "version": r.stable_version,
                                    "was": status.stable_subset_version, "recorded_phase": r.phase, "by": "sweep",
                                    "reason": why}, warning=True)]
    try:
        execute(router, found.target(), r, actions, log=log, expect=found.text, report_failure=False)
    except NotLeader:
        raise
    except CanaryError as exc:
        log.warning("sweep.repair_failed", error=str(exc), reason=why,
                    hint=f"`canary rollback {r.model}` points the stable subset back at {r.stable_version}")
        return "unknown"
    return "repaired"


# an ended or unreadable record over a split seen unchanged this long is ended by the sweep: a live owner (promote's
# watch, every second; the controller's tick) ends one typed under it first, in its own words
UNOWNED_AFTER_S = REPAIR_AFTER_S


def end_unowned(router: Any, found: Found, *, log: Any, now: float, notifier: Any = None,
                counted: Callable[[rl.RolloutState], None] | None = None, at_once: bool = False,
                history: Any = None) -> str:
    """The split under `found`'s ended or unreadable record (`canary.unowned`), read from the route and, once
    seen unchanged UNOWNED_AFTER_S, sent to stable 100% (recorded `aborted`, guarded on the record as read:
    `rollout.split_unowned`). Returns "agrees" (no split of two versions after all: both subsets select one),
    "waiting", "ended", "left alone" (written since: `sweep.left_alone`) or "unknown" (the route could not be
    read, or changed since the listing). `notifier` is told the end as its stable-100% write lands (`posted`, before
    its lines and Event: decision 723's order), `counted(end)` once it landed (the controller's counters).
    `at_once`: not timed (`canary sweep` could not mark it, the object's annotations full: decision 569), ended now.
    `history` (a `history_store.ConfigMapStore`; None: none): the end added to the ended rollout's history once it
    landed (`unowned.end`; decision 811).
    Raises TrafficUnsafe when stable 100% could not be written and the
    route may still be split, CanaryError when another write failed, NotLeader."""
    from canary import unowned

    r = None if found.unreadable else found.record
    log = log.bind(**rollout_context(found.target(), r))
    target = found.target()
    try:  # a read: the fence refuses writes only
        status = read_for_stable(router, target)
    except CanaryError:
        return "unknown"
    if status.state != found.text:
        return "unknown"
    if not unowned.to_end(r, status, unreadable=found.unreadable):
        return "agrees"
    if not at_once and (found.quiet_s is None or found.quiet_s < UNOWNED_AFTER_S):
        return "waiting"
    try:  # posted as its stable-100% write lands, before its lines and Event, as every end (decision 723)
        out = unowned.end(router, target, r, status, log=log, now=now, by="sweep", unreadable=found.unreadable,
                          written=lambda ended: posted(notifier, ended, found), history=history)
    except NotLeader:
        raise
    except RoutingConflict as exc:
        log.info("sweep.left_alone", owner=found.record.owner, job=found.record.job or None, reason=str(exc))
        return "left alone"
    except CanaryError as exc:  # `rollback.failed` is logged (`execute`); `traffic.unsafe` too when still split
        from canary.errors import TrafficUnsafe
        from canary.runner import unsafe_traffic

        if counted is not None and getattr(exc, "rollout_state", None) is not None:
            # stable 100% and the end landed (posted then), only the stable subset's pointing after it failed (its
            # rule deleted or re-hosted): on the route, so counted as every end is (735's rule; decision 777)
            counted(exc.rollout_state)  # type: ignore[attr-defined]

        still = unsafe_traffic(router, found.target(), log=log, error=str(exc), known=status.weights,
                               refused=isinstance(exc, TargetError))
        if still:
            raise TrafficUnsafe(f"{exc}{still}") from exc
        raise
    if counted is not None:
        counted(out)
    return "ended"


def posted(notifier: Any, end: rl.RolloutState, found: Found) -> None:
    """The sweep's end `end` of `found`'s rollout told the webhooks and Slack (`notifier`; None: none configured), as
    the one mapping of an end to its posts says (`notify_body.end_events`, promote's and the controller's too:
    decision 739), `rollout` the VirtualService (its owner is gone): `notify_body.announce`, promote's. Never raises,
    never blocks (a queue)."""
    if notifier is None:
        return
    from canary.notify_body import announce

    announce(notifier, end, namespace=found.namespace, rollout=found.virtual_service)


def seen_mark(vs: dict[str, Any]) -> tuple[str, float] | None:
    """`canary sweep`'s mark on `vs` (`SEEN_ANNOTATION`): (record fingerprint, API server time first
    seen); None when absent or unreadable."""
    ann = (vs.get("metadata") or {}).get("annotations") or {}
    try:
        mark = json.loads(ann.get(SEEN_ANNOTATION) or "")
        return str(mark["record"]), float(mark["since"])
    except (ValueError, TypeError, KeyError):
        return None


def _stable_end(r: rl.RolloutState, reason: str, now: float, cause: str) -> tuple[rl.RolloutState, list[rl.Action]]:
    """The sweep's end of `r` at stable 100%, recorded aborted for `reason` (its class `cause`)."""
    return rl.transition(r, rl.Rollback(now, reason, aborted=True, cause=cause), None)  # type: ignore[arg-type]


def _as_said(actions: list[rl.Action], r: rl.RolloutState, status: Any) -> list[rl.Action]:
    """`actions` as the sweep carries them out: its lines say the split as routed (`as_routed`), and nothing is
    logged as done before the write says what happened (no `rollout.aborting`)."""
    return as_routed([a for a in actions if not (isinstance(a, rl.Emit) and a.event == "rollout.aborting")], r, status)


def _said_failed(router: Any, found: Found, log: Any, exc: CanaryError, *, unanswered: str, cause: str,
                 routed: dict[str, Any]) -> None:
    """The critical `rollback.failed` of an end the sweep could not write, then `_unsafe`. Where its stable 100% and
    end landed and only the stable subset was not pointed (`rollout_state`: a rule deleted or re-hosted, paged by the
    executor), it says so and what mends it (`subset_note`): "traffic may still be split" was false there."""
    landed = getattr(exc, "rollout_state", None) is not None
    note = str(getattr(exc, "subset_note", ""))
    log.critical("rollback.failed", error=str(exc), reason=found.reason, write_landed=landed_after(exc, unanswered),
                 end_cause=cause, **routed,
                 **({"note": note, "hint": note, **getattr(exc, "next_step", {})} if landed and note else
                    {"hint": "traffic may still be split: run `canary rollback` for it"}))
    _unsafe(router, found, log, exc)


def _unsafe(router: Any, found: Found, log: Any, exc: Exception) -> None:
    """After a failed end: TrafficUnsafe (exit 6, the critical `traffic.unsafe` as promote and rollback
    log it) when the route may still send traffic to the canary; nothing when it reads stable 100%
    (what failed came after the weights). A promotion half-way that could not be finished is left as
    it is: its canary is the version every step passed."""
    from canary.errors import TrafficUnsafe
    from canary.runner import unsafe_traffic

    if found.record.phase == rl.PROMOTING and found.record.weights == Weights.canary_at(100):
        return
    known = found.record.weights
    said = unsafe_traffic(router, found.target(), log=log, error=str(exc), known=known,
                          refused=isinstance(exc, TargetError))
    if said:
        raise TrafficUnsafe(f"{exc}{said}") from exc


def since_read(router: Any, found: Found) -> tuple[str, bool]:
    """What a guarded write refused (RoutingConflict) found instead, for the line that says so: the route read
    again. Another sweeper (the controller's, a second `canary sweep`) or a person ending it is not its owner
    writing: "left alone: its owner wrote since it was read" beside "its process is gone" read as a live promote.
    Second: the route read again is a split nobody drives (an end recorded over weights that still send the
    canary traffic, `unowned.why`): the caller's exit is then not 0, and the next sweep ends it."""
    from canary import unowned

    try:  # a read: the fence refuses writes only
        status = read_for_stable(router, found.target())
        now = rl.RolloutState.from_json(status.state) if status.state else None
    except Exception:  # noqa: BLE001 - unreadable now: said as such
        return "left alone: the route changed since it was read (unreadable now); the next sweep reads it again", False
    w = status.weights
    if now is None:
        return f"left alone: its record was removed since it was read; the route is at {w.stable}/{w.canary}", False
    if now.terminal and unowned.why(now, status):  # "already ended" would read as safe while the canary has traffic
        return (f"recorded {now.phase} since it was read (not by this sweep), but the route still splits "
                f"{w.stable}/{w.canary}: nobody drives it; the next sweep ends it (stable 100%), or run `canary "
                "rollback` now", True)
    if now.terminal:
        return (f"already ended since it was read (not by this sweep): recorded {now.phase}, the route at "
                f"{w.stable}/{w.canary}" + (f": {now.reason}" if now.reason else "")), False
    return f"left alone: its owner wrote since it was read ({now.phase} at {w.stable}/{w.canary} now)", False


def _routed(router: Any, found: Found) -> Any:
    """The route under `found` as read now, for the split its end says (`reconcile.routed_fields`); None when it
    cannot be read or no longer carries the record it was found with (the guarded write is then refused)."""
    try:  # a read: the fence refuses writes only
        status = read_for_stable(router, found.target())
    except CanaryError:
        return None
    return status if status.state == found.text else None


def end(router: Any, found: Found, *, log: Any, now: float, notifier: Any = None,
        counted: Callable[[rl.RolloutState], None] | None = None, history: Any = None) -> rl.RolloutState:
    """End `found`'s rollout, guarded on the record it was found with: a split one goes to stable 100%
    (`aborted`, its reason), one half-way through its promotion is finished (`promoted`). Logs
    ``rollout.abandoned`` once the write landed, and tells `notifier` (a `canary.notify.Notifier`, or
    None) as its stable-100% write lands, once (`posted`): "aborted" or "promotion", `rollout` the VirtualService (its
    owner is gone). Raises RoutingConflict when the route changed since (its owner wrote: nothing done, ``sweep.left_alone``),
    TrafficUnsafe when stable 100% could not be written and the route may still be split
    (``traffic.unsafe``), and CanaryError when another write failed (``rollback.failed``: act by hand).
    `counted(end)`: told the end once it landed (the controller's counters). An end that landed and whose stable
    subset only could not be pointed after it (a rule deleted or re-hosted: RollbackFailed with its `rollout_state`)
    is told as every end is (``rollout.abandoned``, posted, counted) before it raises (decision 735).
    `history` (a `history_store.ConfigMapStore`; None: none): the end added to the rollout's history once it landed,
    after `counted` (`history_store.record_end`; decision 811). Transient errors are retried twice."""
    r = found.record
    counted = _and_recorded(found, counted, history, log=log)
    log = log.bind(**rollout_context(found.target(), r))
    # the split it ends as the route has it, not as the record says (a route edited by hand under it: the stable
    # weight deleted, 70/20, a third destination), as `canary rollback` says it (decisions 209, 212): one read
    status = _routed(router, found)
    routed = routed_fields(r, status)
    cause = swept_cause(found)
    # every step passed: finish, as promote does when interrupted there. Not a `promoting` typed in at a step's
    # weights (80/20) after its promote was gone: it is no promotion (`rl.off_policy`), and was finished (decision 157)
    if r.phase == rl.PROMOTING and not found.superseded and r.weights == Weights.canary_at(100):
        new, actions = rl.finish_promotion(r, now)
        new = replace(new, reason=f"all steps passed; promotion finished by the sweep ({found.reason})")
        did = "promotion finished"
    else:
        new, actions = _stable_end(r, f"{found.reason}; stable 100%", now, cause)
        did = "stable 100%"
    actions = _as_said(actions, r, status)
    unanswered = ""  # an attempt with no answer may have landed: a later refusal must not say `write_landed: no`
    told: set[tuple[str, float]] = set()

    def post(end: rl.RolloutState) -> None:
        # the webhooks and Slack told once, as the end's stable-100% write lands: before its Event on the
        # VirtualService and the glances after it (3 s each), as promote's and the controller's ends (decision 723);
        # the sweep's came after them (decision 735, addendum)
        if (end.phase, end.updated_at) not in told:
            told.add((end.phase, end.updated_at))
            posted(notifier, end, found)
    attempt = 0
    while True:
        try:
            out = execute(router, found.target(), new, actions, log=log, expect=found.text, report_failure=False,
                          written=lambda text: post(new))
            break
        except NotLeader:  # refused by the fence, nothing sent: `_sweep` stops; the new leader's sweep ends it
            raise
        except RoutingConflict as exc:
            log.info("sweep.left_alone", owner=r.owner, job=r.job or None, reason=str(exc))
            raise
        except RuleElsewhere as exc:
            # (refused after its 100/0 landed, the rule re-hosted between its two pointings: finished, not undone)
            if new.phase != rl.PROMOTED or _routed(router, found) is None:
                _told_landed(found, exc, log=log, did=did, routed=routed, post=post, counted=counted)
                _said_failed(router, found, log, exc, unanswered=unanswered, cause=cause, routed=routed)
                raise
            # the promotion's pointing refused, the rule re-hosted: it cannot be finished (its stable subset never
            # selects the new version), so it ends at stable 100% as promote's fail-safe and the controller end it
            # (decision 662): the end recorded and the page, where a finish retried at every sweep left 0/100
            # `promoting`, every request failing (503, NR), said as "traffic may still be split" (decision 685)
            log.warning("promotion.unfinished", error=str(exc), reason=found.reason,
                        note="stable 100% on the old version instead")
            cause = exc.end_cause
            new, actions = _stable_end(r, f"{found.reason}; its promotion could not be finished (its DestinationRule "
                                          "names another service); stable 100%", now, cause)
            actions, did = _as_said(actions, r, status), "stable 100%"
        except CanaryError as exc:
            if isinstance(exc, TransientError) and attempt < 2:  # may pass: written again
                attempt += 1
                unanswered = unanswered or str(exc)
                continue
            if new.phase == rl.PROMOTED and _rule_gone(exc, found.target(), r) and _routed(router, found) is not None:
                # the promotion's pointing refused, the rule its record names deleted (nothing written: its first
                # write): it cannot be finished, so it ends at stable 100% as the re-hosted rule's above and as
                # promote's fail-safe and `canary rollback` end it (decisions 842, 863); a finish retried at every
                # sweep left 0/100 `promoting`, `rollback.failed` "traffic may still be split"
                log.warning("promotion.unfinished", error=str(exc), reason=found.reason,
                            note="stable 100% on the old version instead")
                cause = "foreign_edit"
                new, actions = _stable_end(r, f"{found.reason}; its promotion could not be finished (its "
                                              "DestinationRule was deleted); stable 100%", now, cause)
                actions, did = _as_said(actions, r, status), "stable 100%"
                continue
            _told_landed(found, exc, log=log, did=did, routed=routed, post=post, counted=counted)
            _said_failed(router, found, log, exc, unanswered=unanswered, cause=cause, routed=routed)
            raise
    _told(found, out, log=log, did=did, routed=routed, post=post, counted=counted)
    return out


def _and_recorded(found: Found, counted: Callable[[rl.RolloutState], None] | None, history: Any, *,
                  log: Any) -> Callable[[rl.RolloutState], None] | None:
    """`counted`, then the end added to the rollout's history (`history_store.record_end`, by "sweep"): what `end`
    tells once its end landed. `counted` itself where there is no `history`."""
    if history is None:
        return counted

    def both(out: rl.RolloutState) -> None:
        from canary.history_store import record_end

        if counted is not None:
            counted(out)
        record_end(history, out, namespace=found.namespace, virtual_service=found.virtual_service,
                   events=[("rollout.abandoned", out.reason)], by="sweep", log=log)
    return both


def _told(found: Found, out: rl.RolloutState, *, log: Any, did: str, routed: dict[str, Any],
          post: Callable[[rl.RolloutState], None], counted: Callable[[rl.RolloutState], None] | None) -> None:
    """The sweep's end `out` of `found`'s rollout told, once its write landed: ``rollout.abandoned``, the webhooks
    and Slack (`post`: "aborted" or "promotion", once: posted at its write already), and `counted`."""
    r = found.record
    # logged once the write landed: the phase and weights as recorded and routed now (it gave the abandoned
    # record's, "progressing 80/20", for a rollout it had just sent to stable 100%), and what they were
    log.warning("rollout.abandoned", owner=r.owner, job=r.job or None, phase=out.phase, weights=str(out.weights), done=did,
                from_phase=r.phase, **routed,
                **({} if out.phase == rl.PROMOTED else {"end_cause": rl.cause_of(out)}),
                seen_unchanged_s=None if found.quiet_s is None else round(found.quiet_s, 1),
                heartbeat_s=r.heartbeat_s, reason=found.reason)
    post(out)  # (never raises, never blocks: a queue and a thread)
    if counted is not None:
        counted(out)


def _told_landed(found: Found, exc: CanaryError, *, log: Any, did: str, routed: dict[str, Any],
                 post: Callable[[rl.RolloutState], None], counted: Callable[[rl.RolloutState], None] | None) -> None:
    """An end whose write failed told all the same where its stable 100% and end landed and only the stable
    subset's pointing after them failed (`rollout_state`: a rule deleted or re-hosted): it is on the route, so it
    is `rollout.abandoned`, posted and counted as every end is; before decision 735 its `rollback.failed` alone
    said it, and the channel and `canary_rollbacks_total` never heard of it."""
    out = getattr(exc, "rollout_state", None)
    if out is not None:
        _told(found, out, log=log, did=did, routed=routed, post=post, counted=counted)

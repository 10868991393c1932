"""Abandoned rollouts: traffic split on a route whose owner is gone, sent back to stable.

Every rollout's record names its owner (`RolloutState.owner`, docs/decisions.md 60). Two kinds
of owner can vanish without ending what they run, and leave the canary on its share of the
traffic for good:

* a `canary promote` killed with SIGKILL (an OOM kill, a lost node, a CI job killed hard; SIGTERM
  and SIGINT already send stable 100%). It writes its record at every look, `heartbeat_s` (its
  `look_every`) apart, so a record not written for `abandoned_after(rec)` seconds (3 x heartbeat
  + 120 s: 5 minutes with the default policy) has nobody driving it;
* a CanaryRollout deleted with its finalizer removed by hand, or whose CRD was deleted.

`canary sweep` (one pass: a CronJob where no controller runs) and the controller (every
`--sweep-every`) send such a rollout to stable 100% and record it `aborted`, with a write guarded
on the record they read: an owner that wrote meanwhile keeps its rollout. Left alone: paused
rollouts (a person holds them), pending ones (stable still has 100%), ended ones, and records
with no owner (written by a version that did not record owners: nothing tells whether they run).

Log events: ``rollout.abandoned`` (warning: the owner, how long since it wrote, the weights), then
the rollback's own ``rollout.aborting``/``rollout.aborted`` with the same reason; ``sweep.failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from canary import crd
from canary import rollout as rl
from canary.model import Target
from canary.reconcile import describe_owner, is_promote_owner, to_stable
from canary.routing import patch

# a promote record not written for 3 of its looks and this much more is abandoned: a look's
# queries (bounded, ~5 s each) and a slow write fit well inside it
ABANDON_GRACE_S = 120.0
# the look interval assumed for a promote record written before `heartbeat_s` was recorded
UNKNOWN_HEARTBEAT_S = 600.0
# a controller's time between sweeps (`canary controller run --sweep-every`)
SWEEP_EVERY_S = 60.0


def abandoned_after(rec: rl.RolloutState) -> float:
    """Seconds without a write after which a promote's rollout `rec` has nobody driving it."""
    beat = rec.heartbeat_s if rec.heartbeat_s > 0 else UNKNOWN_HEARTBEAT_S
    return 3 * beat + ABANDON_GRACE_S


def orphan_reason(owner: str) -> str:
    """Why a rollout whose CanaryRollout `owner` no longer exists is sent to stable (one log line)."""
    return (f"orphaned: {describe_owner(owner).removeprefix('run by ')} no longer exists (deleted with its "
            "finalizer removed by hand, or its CRD deleted); stable 100%")


def why_abandoned(rec: rl.RolloutState, now: float, owner_gone: Callable[[str], bool]) -> str | None:
    """Why the rollout `rec` (recorded on a route, read at `now`, epoch seconds) has nobody driving it,
    as the reason its rollback records; None when it has an owner, or is not ours to end (ended, paused,
    pending, or no owner recorded). `owner_gone(owner)` answers for a CanaryRollout owner (True only
    when the API server says it no longer exists). Pure but for `owner_gone`."""
    if rec.terminal or rec.phase in (rl.PAUSED, rl.PENDING):
        return None
    if is_promote_owner(rec.owner):
        age, limit = now - rec.updated_at, abandoned_after(rec)
        if age <= limit:
            return None
        beat = (f"it writes at every look, {rec.heartbeat_s:.0f}s apart" if rec.heartbeat_s > 0
                else "its look interval was not recorded")
        return (f"abandoned: {describe_owner(rec.owner)} last wrote this rollout {age:.0f}s ago ({beat}; "
                f"gone after {limit:.0f}s): its process is gone; stable 100%")
    if rec.owner.startswith("CanaryRollout ") and owner_gone(rec.owner):
        return orphan_reason(rec.owner)
    return None


def crd_gone(custom: Any, owner: str) -> bool:
    """Whether `owner` (`CanaryRollout ns/name#uid`) names a CanaryRollout that no longer exists, read
    from the API server (not a cache): a 404, or an object of that name with another uid (the name
    created again). False when it exists (with that uid, or none recorded) or cannot be read."""
    ref, _, uid = owner.removeprefix("CanaryRollout ").partition("#")
    ns, _, name = ref.partition("/")
    try:
        obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, crd.PLURAL, name, _request_timeout=10)
    except Exception as exc:
        return getattr(exc, "status", None) == 404
    return bool(uid) and str(((obj or {}).get("metadata") or {}).get("uid") or "") != uid


@dataclass(frozen=True)
class Abandoned:
    """One route whose rollout nobody drives: its record as read (`text`, which the write is guarded
    on) and why (`reason`)."""

    namespace: str
    virtual_service: str
    record: rl.RolloutState
    text: str
    reason: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.virtual_service}"

    def target(self) -> Target:
        """What the stable-100% write drives: the recorded versions, route and DestinationRule."""
        r = self.record
        return Target(namespace=self.namespace, virtual_service=self.virtual_service, model=r.model,
                      stable_version=r.stable_version, canary_version=r.canary_version,
                      destination_rule=r.destination_rule, route=r.route)


def scan(virtual_services: Iterable[dict[str, Any]], now: float, owner_gone: Callable[[str], bool], *,
         owns: Callable[[str], bool] = lambda key: True) -> list[Abandoned]:
    """The abandoned rollouts among `virtual_services` (objects as listed) whose `namespace/name`
    this caller `owns` (a controller shard's share). An unreadable record is skipped (the owner's next
    write, `canary status` and `canary rollback` report it)."""
    out = []
    for vs in virtual_services:
        meta = vs.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        text = patch.read_state(vs)
        if not text or not owns(f"{ns}/{name}"):
            continue
        try:
            rec = rl.RolloutState.from_json(text)
        except (ValueError, TypeError, KeyError):
            continue
        reason = why_abandoned(rec, now, owner_gone)
        if reason is not None:
            out.append(Abandoned(ns, name, rec, text, reason))
    return out


def end(router: Any, found: Abandoned, *, log: Any, now: float, budget_s: float | None = None) -> rl.RolloutState:
    """Stable 100% for `found`, recorded `aborted` with its reason, guarded on the record it was found
    with. Raises RoutingConflict when the route changed since (its owner wrote: nothing done), and what
    `reconcile.to_stable` raises when the write fails (logged ``rollback.failed``)."""
    r = found.record
    log.warning("rollout.abandoned", rollout=found.key, owner=r.owner, phase=r.phase, weights=str(r.weights),
                since_write_s=round(now - r.updated_at, 1), heartbeat_s=r.heartbeat_s, reason=found.reason)
    return to_stable(router, found.target(), r, reason=found.reason, log=log.bind(rollout=found.key, model=r.model,
                                                                                   canary_version=r.canary_version),
                     now=now, budget_s=budget_s, expect=found.text)

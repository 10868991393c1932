"""One step of one rollout, shared by `canary promote` (the runner) and the controller.

The runner (`canary.runner.Runner`) and the CanaryRollout controller
(`canary.controller.Controller`) differ only in their loops; everything that turns
a decision into writes, and every rule about what a look may judge, lives
here once:

- `execute`       carries out the state machine's actions in order, guarded on
                  the recorded state; a stable-100% write that fails is logged
                  as ``rollback.failed``, or ``rollback.retrying`` when its caller
                  writes it again (`Retry`: promote's fail-safe, the controller's
                  next tick).
- `to_stable`     the emergency path: any failure while traffic is split ends
                  in stable 100% with its own retry budget.
- `measure_window` every check's data over the step's window; never raises.
- `decide`        the one reconcile step both loops call: from what a loop
                  observed (the route, a person's command, the Triton gate and
                  probe, a look) to the writes, in one fixed order.
- `check_claim`, `preflight_metrics`: what is checked before a rollout claims a route.
- `next_look_at`/`look_due`, `look_window`, `parse_record`/`parse_state`, `subset_drift`, `EXIT_CODES`.

Only `to_stable` waits (between its own retries); every other wait is the callers' loops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Literal

from canary import rollout as rl
from canary.errors import (CanaryError, ConfigError, ConflictStorm, GraceSpent, KubeUnavailable, MetricsUnavailable, NoData,
                           NotCountable, NotFound, NotLeader, RecordTooNew, RollbackFailed, RolloutBusy, RoutingConflict, RuleElsewhere,
                           TargetError, TransientError, others_decision, said)
from canary.logs import OWNER_CUT_TO, OWNER_LOGGED_MAX
from canary.metrics.base import MetricsProvider, counted_requests
# a gate's words that say it was not the canary's: `end_words`'s (an end's `next` and `canary report` read them too)
from canary.end_words import not_the_canarys
from canary.model import STABLE_ONLY, ArmData, Target, Weights, check_version
from canary.routing.base import RouteStatus, TrafficRouter, read_for_stable
from canary.workqueue import BASE_DELAY_S, MAX_DELAY_S, exponential_delay
from canary.routing.patch import CANARY, SERVICE_ANNOTATION, STATE_ANNOTATION, VERSION_LABEL

if TYPE_CHECKING:  # annotations only: the policy models (pydantic) load where a policy is read (decision 965)
    from canary.policy import Policy

EXIT_PROMOTED, EXIT_ROLLED_BACK, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {rl.PROMOTED: EXIT_PROMOTED, rl.ROLLED_BACK: EXIT_ROLLED_BACK, rl.ABORTED: EXIT_INFRA}
# phase changes that also become Kubernetes Events on the VirtualService
K8S_EVENTS = frozenset({"rollout.started", "step.advanced", "rollout.promoting", "rollout.promoted",
                        "rollback.completed", "rollout.aborted", "rollout.paused", "rollout.resumed", "rollout.held",
                        "gate.failed", "weights.reasserted"})


def parse_record(text: str | None) -> rl.RolloutState | None:
    """A recorded rollout state (the annotation's text), re-validated; None when there is none.
    Raises TargetError when it is unreadable."""
    if not text or not text.strip():  # emptied: as removed (`patch.read_state`)
        return None
    try:
        return rl.RolloutState.from_json(text)
    except rl.NewerRecord as exc:  # a newer canary's: not garbage to fix or remove (decision 169)
        raise RecordTooNew(f"rollout state annotation {STATE_ANNOTATION} was {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise TargetError(f"rollout state annotation {STATE_ANNOTATION} is unreadable ({exc}); fix or remove it"
                          ) from None


def parse_state(status: RouteStatus) -> rl.RolloutState | None:
    """The rollout state recorded on the route `status` was read from (see `parse_record`)."""
    return parse_record(status.state)


PROMOTE_OWNER = "promote"  # RolloutState.owner of a rollout `canary promote` started: `promote#<process>`


def promote_owner(identity: str) -> str:
    """RolloutState.owner of the rollout the `canary promote` process `identity` runs (host:pid:nonce)."""
    return f"{PROMOTE_OWNER}#{identity}"


def is_promote_owner(owner: str) -> bool:
    """Whether a record's owner is a `canary promote` process (any, or one recorded before processes were)."""
    return owner == PROMOTE_OWNER or owner.startswith(PROMOTE_OWNER + "#")


def crd_owner(namespace: str, name: str, uid: str = "") -> str:
    """RolloutState.owner of a rollout the controller runs for CanaryRollout `namespace/name`
    (`#uid` appended when known: the same name created again is another object)."""
    return f"CanaryRollout {namespace}/{name}" + (f"#{uid}" if uid else "")


def crd_ref(owner: str) -> tuple[str, str]:
    """The inverse of `crd_owner`: ("namespace/name", uid) of a CanaryRollout owner ("" uid when none
    was recorded). Any other owner string comes back whole as the first element: callers check
    `startswith("CanaryRollout ")` first where that matters."""
    ref, _, uid = owner.removeprefix("CanaryRollout ").partition("#")
    return ref, uid


def describe_owner(owner: str, job: str = "") -> str:
    """Who runs a recorded rollout, in words, for messages (a CanaryRollout's uid left out); `job`: the CI job
    that started it (`RolloutState.job`), named after it: the host and pid alone did not tell on-call which
    pipeline's job to cancel (decision 387)."""
    from canary.ci_job import described

    if is_promote_owner(owner):
        process = owner.partition("#")[2]
        return "run by `canary promote`" + (f" ({shown_owner(process)})" if process else "") + described(job)
    return (f"run by {shown_owner(owner.split('#', 1)[0])}" if owner else "no owner recorded") + described(job)


# characters: `promote#host:pidns:pid:nonce@boot.start`, `CanaryRollout ns/name#uid` are under it; log lines cut an
# owner field at the same length (`logs.cut_owners`)
OWNER_SHOWN_MAX = OWNER_LOGGED_MAX


def shown_owner(owner: str) -> str:
    """A record's `owner` as a message, `canary status`, a log field or `-o json`'s `holder` shows it: as recorded
    when it is printable ASCII of at most OWNER_SHOWN_MAX characters (every owner canary writes), else escaped and
    cut (`ascii()` of its first OWNER_CUT_TO characters). The record is anyone's who may edit the VirtualService: a newline
    or an escape sequence in it forged `error:` lines in a pipeline's log (the busy refusal, `jq -r .holder`) and
    cleared on-call's terminal, beside the `job` that decision 387 checks (decision 401). Display only: the owner
    as recorded still decides who holds the route."""
    if owner.isascii() and owner.isprintable() and len(owner) <= OWNER_SHOWN_MAX:
        return owner
    return ascii(owner[:OWNER_CUT_TO]) + ("..." if len(owner) > OWNER_CUT_TO else "")


def check_claim(target: Target, status: RouteStatus, recorded: rl.RolloutState | None, *, where: str = "") -> None:
    """May a new rollout of `target` claim the route now? Shared by promote and the controller, which
    call it only when the recorded rollout is not theirs to resume (another canary version, or the
    same one run by another owner: `RolloutState.owner`).
    Raises RolloutBusy (another rollout in progress), ConfigError (the canary is the stable version,
    or a version no subset can select), TargetError (the stable subset selects another version, or
    traffic is split with no rollout recorded). Nothing has been written when it raises."""
    at = where or f"{target.namespace}/{target.virtual_service}"
    if recorded is not None and not recorded.terminal and recorded.model and recorded.model != target.model:
        # a VirtualService routing several models carries one rollout at a time: "run `canary rollback`"
        # would have ended the other model's good canary
        route = f" on route {recorded.route!r}" if recorded.route else ""
        raise RolloutBusy(f"{at}: a rollout of model {recorded.model} ({recorded.canary_version}) is in progress"
                          f"{route} of {target.namespace}/{target.virtual_service} ({describe_owner(recorded.owner, recorded.job)}; "
                          f"{recorded.phase}, weights {recorded.weights}); a VirtualService carries one rollout at a "
                          f"time, of one model: run this rollout of {target.model} once that one has ended",
                          holder=recorded.owner, job=recorded.job)
    if recorded is not None and not recorded.terminal:
        raise RolloutBusy(f"{at}: a rollout of {recorded.canary_version} is in progress on "
                          f"{target.namespace}/{target.virtual_service} ({describe_owner(recorded.owner, recorded.job)}; "
                          f"{recorded.phase}, weights {recorded.weights}); finish it or run `canary rollback` first",
                          holder=recorded.owner, job=recorded.job)
    if status.subsets_differ:  # a promotion would point the stable subset at pods nobody judged
        raise TargetError(status.subsets_differ)
    if status.split_elsewhere:  # another route would send the new version traffic nobody judges
        raise TargetError(status.split_elsewhere)
    if not status.stable_subset_version:
        raise TargetError(f"{target.namespace}/{target.dr_name}: the stable subset has no {VERSION_LABEL!r} label; a "
                          f"rollout tells the versions apart by the pods' {VERSION_LABEL!r} label and points the "
                          f"subsets by it: add `{VERSION_LABEL}: <the version it serves>` to both subsets' labels")
    check_version(target.canary_version, f"{at}: canary version")
    check_version(target.stable_version, f"{at}: stable version (what the stable subset selects)")
    if target.stable_version == target.canary_version:
        raise ConfigError(f"{at}: canary version {target.canary_version!r} is already the stable version")
    if status.stable_subset_version != target.stable_version:
        raise TargetError(f"{target.namespace}/{target.dr_name}: the stable subset selects "
                          f"{status.stable_subset_version}, not the stable version {target.stable_version}")
    if status.weights != STABLE_ONLY:
        raise TargetError(f"{at}: traffic is already split {status.weights} (stable/canary) with no rollout in "
                          "progress; set it to 100/0 first")


def check_other_splits(router: Any, target: Target, *, log: Any, listed: list[Any] | None = None,
                       dr: Any = None) -> str:
    """Before the claim, after `check_claim`: no other VirtualService of the namespace splits traffic with the canary
    subset (`IstioRouter.splits_elsewhere`; a VirtualService bound to the ingress gateway beside the mesh's shares
    the DestinationRule's subsets). TargetError when one does, nothing written; `preflight.splits_unchecked` when
    the VirtualServices cannot be listed (a Role without `list`), and the rollout goes on. RolloutBusy instead of
    TargetError where that split is another rollout's in progress (decision 594). A router that is not
    Kubernetes' (no `splits_elsewhere`) is not asked. `listed`: the VirtualServices of an informer's cache, if
    any (the controller's: no LIST at each claim), and `dr` its DestinationRule (no GET, decision 606). Decision 578.
    Returns why it could not be told ("" when it was, or the router has no `splits_elsewhere`)."""
    find = getattr(router, "splits_elsewhere", None)
    if find is None:
        return ""
    cached = {k: v for k, v in (("listed", listed), ("dr", dr)) if v is not None}
    try:
        why, unchecked, busy = find(target, **cached)
    except KubeUnavailable as exc:  # the router's tries spent (a 5xx, a timeout, an answer that does not parse):
        # not claimed as if checked; said what the LIST was for, or on-call reads a cluster-wide LIST's 503 with no
        # cause of its own in a rollout of one namespace (decision 902)
        raise KubeUnavailable(f"the claim's check that no other VirtualService (of any namespace) splits traffic "
                              f"with the canary subset could not read them: {exc}") from exc
    if why:  # another rollout's split is a busy claim (exit 75: waited for), a split by hand bad input (594)
        if busy is None:
            raise TargetError(why)
        raise RolloutBusy(why, holder=busy.owner, job=busy.job, held=busy)  # its holder named, as 585's (596)
    if unchecked:
        log.warning("preflight.splits_unchecked", error=unchecked,
                    note="whether another VirtualService splits traffic with the canary subset is not known: the "
                         "rollout goes on; give the identity list on virtualservices to check before traffic moves")
    return unchecked


def preflight_metrics(metrics: MetricsProvider, policy: Policy, target: Target, *, log: Any) -> None:
    """Every query the rollout will run, asked once before traffic moves (ConfigError: bad input;
    MetricsUnavailable: try later).

    ConfigError too when the stable arm has no data that a look could judge (`PreflightReport.blind`:
    the stable request count empty or 0, or every check empty): the rollout would run blind to its
    step deadline and roll back, blaming the canary for a label, a source or a quiet stable. Promote
    exits 2, the controller keeps the CanaryRollout unclaimed (Ready False, ConfigError) and tries
    again at its next tick (decision 110). The same refusal when a check with a limit relative to stable
    (`max_increase_pct`, `max_psi`, `max_ratio`, ...) found no stable data, however the others fare: that
    check is ERROR at every look, never a pass, so no step could pass either (decision 261). The
    `metrics.preflight_empty_stable` lines come first."""
    report = metrics.preflight(policy, target)
    blind = report.blind()
    never = () if blind else never_comparable(report, policy)
    if not blind and not never:
        log.info("metrics.preflight_passed", **report.to_dict())
    for line in report.warnings():  # an empty STABLE arm: most often a label or value matching nothing
        log.warning("metrics.preflight_empty_stable", detail=line)
    if blind or never:
        refused = ConfigError(_blind_message(report, blind, policy, target) if blind else
                              _never_message(report, never, policy, target))
        # the one refusal a stable with no Ready pod explains (promote's `_preflight_metrics`); a query Prometheus
        # rejects, a URL that is no Prometheus, credentials refused: the policy's or the flags' whatever the pods
        refused.stable_blind = True  # type: ignore[attr-defined]
        raise refused
    for line in report.unresolvable:  # the canary can pass only by being faster by a whole bucket
        log.warning("metrics.buckets_too_coarse", detail=line)
    for line in report.layouts:  # stable pods on bucket layouts sharing no finite bound (mid-update?)
        log.warning("metrics.preflight_layouts", detail=line)


def check_pods(router: Any, target: Target, *, log: Any, waited_s: float = 0.0) -> None:
    """Before the claim: a Ready pod must serve the canary version, and one the stable version (`routing.pods`;
    Flagger waits for its primary and the canary, Argo Rollouts for the stable and canary ReplicaSets).
    CanaryNotReady when the canary has none (its message names the stable too when it has none either),
    StableNotReady when only the stable has none; nothing was moved. `preflight.pods_unchecked` when they
    cannot be counted (no RBAC, no pods API, a host that is no Service), and the rollout goes on (the
    unrouted rule stands behind it); the canary's unchecked, the stable's is not asked: the same
    DestinationRule, Service and namespace, unchecked for the same reason. A router that is not
    Kubernetes' (no `subset_pods`) is not asked."""
    from canary.errors import CanaryNotReady, StableNotReady
    from canary.routing.pods import canary_failing, not_ready_message

    missing, counted = count_pods(router, target, log=log)
    if missing:
        refused = (CanaryNotReady if missing[0][0] == CANARY else StableNotReady)(not_ready_message(missing, waited_s))
        # the canary's own pods crash or fail their probes: its end is the canary's (decision 843)
        refused.end_cause = "gate" if canary_failing(missing) else ""
        raise refused
    for subset, version, count in counted:
        found = {"ready": count.ready, "pods": count.total, "selector": count.selector,
                 "pods_namespace": count.namespace}
        if subset == CANARY:
            log.info("preflight.canary_pods", canary_version=version, **found)
        else:
            log.info("preflight.stable_pods", stable_version=version, **found)


def count_pods(router: Any, target: Target, *, log: Any) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """The (subset, version, `pods.PodCount`) of each arm (canary first) without a Ready pod, and of each with
    one; an arm that cannot be counted is in neither, said (`preflight.pods_unchecked`). See `check_pods`."""
    from canary.routing.pods import SUBSETS

    count_subset = getattr(router, "subset_pods", None)
    missing: list[tuple[str, str, Any]] = []
    counted: list[tuple[str, str, Any]] = []
    if count_subset is None:
        return missing, counted
    for subset in SUBSETS:
        version = target.canary_version if subset == CANARY else target.stable_version
        if not version:  # no stable version known (never at a claim: `check_claim` wants one)
            continue
        count = count_subset(target, subset)
        if count.unchecked:
            log.warning("preflight.pods_unchecked", subset=subset, canary_version=target.canary_version,
                        stable_version=target.stable_version, selector=count.selector,
                        pods_namespace=count.namespace, error=count.unchecked,
                        note=f"whether a pod serves the {subset} version is not known: the rollout goes on (a "
                             "canary no pod serves is rolled back at its first look once traffic shows it); give "
                             "the identity get on services and list on pods to check before traffic moves")
            if subset == CANARY:
                break
            continue
        (missing if count.ready < 1 else counted).append((subset, version, count))
    return missing, counted


def _blind_message(report: Any, blind: tuple[str, ...], policy: Policy, target: Target) -> str:
    """One line: which places found no stable data, what to look at, an example query."""
    m = policy.metrics
    return (f"preflight: no stable ({target.stable_version}) data over the last {report.window_s}s for "
            f"{', '.join(blind)}: the canary could not be compared with anything and no step could pass. "
            f"Check {labels_to_check(policy)}, metrics.source ({m.source}) and the checks' "
            f"source/query against the series Prometheus has, or whether {target.stable_version} gets "
            f"traffic now (start again when it does); nothing was moved; query: {stable_query(report, blind[0])}")


def policy_labels(policy: Policy) -> str:
    """policy metrics.labels as the refusals show them ("none" when there are none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(policy.metrics.labels.items())) or "none"


def labels_to_check(policy: Policy) -> str:
    """What a refusal for no stable data names to check of the policy's matchers: its metrics.labels, and each
    identity label it names itself (`metrics.namespace_label: namespace` where the scrape adds
    `kubernetes_namespace`, or none, matches no series: the refusal named only metrics.labels, "none";
    decision 745 addendum)."""
    m = policy.metrics
    own = [f"metrics.{field} ({value!r})" for field in ("model_label", "arm_label", "namespace_label")
           if (value := getattr(m, field)) is not None]
    return ", ".join([f"policy metrics.labels ({policy_labels(policy)})", *own])


def stable_query(report: Any, where: str) -> str:
    """A stable query of `where` in the preflight `report`: one that found nothing, else the first ("" if none)."""
    stable = [x for x in report.queries if x.arm == "stable" and x.where == where]
    return next((x.query for x in stable if x.no_data), stable[0].query if stable else "")


def never_comparable(report: Any, policy: Policy) -> tuple[tuple[str, list[str]], ...]:
    """(where, relative limits) of each check that found no stable data and has a limit relative to stable."""
    from canary.analysis.judge import relative_limits

    by_name = {c.name: c for c in policy.checks}
    names = {x.where: x.check for x in report.queries}
    found = ((where, relative_limits(by_name[names[where]])) for where in report.empty_checks()
             if names.get(where) in by_name)
    return tuple((where, limits) for where, limits in found if limits)


def never_places(never: tuple[tuple[str, list[str]], ...]) -> str:
    """`never_comparable`'s checks as the refusals name them: "checks[1] 'p95' (max_increase_pct compared with
    stable), ..."."""
    return ", ".join(f"{where} ({' and '.join(limits)} compared with stable)" for where, limits in never)


def _never_message(report: Any, never: tuple[tuple[str, list[str]], ...], policy: Policy, target: Target) -> str:
    """One line: the checks that can never pass for want of stable data, why, what to look at, a query."""
    m = policy.metrics
    places = never_places(never)
    return (f"preflight: no stable ({target.stable_version}) data over the last {report.window_s}s for {places}: "
            f"such a check is never shown within its limit, so no step could pass and the rollout would end at "
            f"its deadline with the canary's share exposed. Check that check's source, metric or query, "
            f"{labels_to_check(policy)} and "
            f"metrics.source ({m.source}) against the series Prometheus has; nothing was moved; query: "
            f"{stable_query(report, never[0][0])}")


def next_look_at(policy: Policy, state: rl.RolloutState) -> float:
    """When the step's next look is due: one per `look_every` since the step started
    (state.step_looks counts the looks done)."""
    return state.step_started_at + (state.step_looks + 1) * policy.analysis.look_every


def look_due(policy: Policy, state: rl.RolloutState, now: float) -> bool:
    return state.phase == rl.PROGRESSING and now >= next_look_at(policy, state)


def look_window(policy: Policy, state: rl.RolloutState, now: float) -> int:
    """Seconds of data a look judges: since the step (or its window, after a resume) started, at least
    1. Never more: reaching back before the start would count again requests the window before it
    judged (the pooled evidence adds windows up as independent), at another weight. Looks are due
    `look_every` after the start (`next_look_at`), so only a clock that moved makes it shorter."""
    return max(1, math.ceil(now - state.step_started_at))


def subset_drift(state: rl.RolloutState, status: RouteStatus) -> str:
    """Why the DestinationRule no longer routes what the rollout judges ("" when it does).

    While a step is running, the canary subset must select the canary version and the stable
    subset the stable version; anything else means the traffic goes somewhere unjudged."""
    if state.phase not in (rl.PROGRESSING, rl.PAUSED):
        return ""
    if status.subsets_differ:  # edited since the claim: the promotion would select pods nobody judged
        return status.subsets_differ
    if status.canary_subset_version != state.canary_version:
        return (f"the canary subset was re-pointed from {state.canary_version} to {status.canary_subset_version} "
                "outside the rollout")
    if status.stable_subset_version != state.stable_version:
        return (f"the stable subset was re-pointed from {state.stable_version} to {status.stable_subset_version} "
                "outside the rollout")
    return ""


def split_unrecorded(status: RouteStatus, recorded: rl.RolloutState | None, canary_version: str) -> str:
    """Why the split on the route is `canary_version`'s although the record names another version's
    rollout ("" when it is not so): the canary subset selects `canary_version` and has traffic. A rollout
    points the canary subset at its own version before it moves any traffic (`rl.new_rollout`), so the
    recorded one drives none of this split and nothing judges what it routes: an old copy of the record put
    back by a manifest (`kubectl get -o yaml` committed in the middle of an earlier rollout, applied again
    by hand or by a GitOps sync) is what leaves a route so. Sending it to stable undoes no rollout's work
    (decision 143 d)."""
    if (recorded is None or recorded.canary_version == canary_version or status.weights.canary <= 0
            or status.canary_subset_version != canary_version):
        return ""
    return (f"the route's record names another rollout ({recorded.canary_version}, {recorded.phase}, "
            f"{describe_owner(recorded.owner)}), but its canary subset selects {canary_version}, which gets "
            f"{status.weights.canary}% ({status.weights}): no rollout drives this split (an old copy of the "
            "record applied with a manifest?)")


def say_split_unrecorded(log: Any, reason: str, recorded: rl.RolloutState, weights: Any) -> None:
    """The one `rollout.split_unrecorded` warning (`split_unrecorded`'s `reason`), as promote's watch, its
    fail-safe and the controller's rescue say it."""
    log.warning("rollout.split_unrecorded", reason=reason, recorded_canary_version=recorded.canary_version,
                recorded_phase=recorded.phase, recorded_owner=recorded.owner, weights=str(weights))


def vs_gone(exc: BaseException, target: Target) -> bool:
    """Whether a NotFound is the VirtualService of `target` itself (nothing of it is split), as the router
    names it ("<namespace>/<name> (virtualservices): not found"): not one whose name only contains it
    (`ml/m0-x`, `xml/m0`), which aborted a rollout as its route deleted."""
    return _names(exc, target, target.virtual_service, "virtualservices")


def _names(exc: BaseException, target: Target, name: str, plural: str) -> bool:
    """Whether `exc` names object `name` of `plural` in `target`'s namespace, as the router names it
    ("<namespace>/<name> (<plural>)"), not one whose name only contains it."""
    import re

    named = rf"(?<![a-z0-9.-]){re.escape(target.namespace)}/{re.escape(name)} \({plural}\)"
    return re.search(named, str(exc)) is not None


# the class of an end by the rollout's VirtualService (decision 666) or DestinationRule (decision 681) deleted
# mid-rollout: a person's or a pipeline's edit of the routing, as a route deleted from it or a subset removed from
# the rule is (`patch.reshaped`, decision 608), not Kubernetes failing
ROUTE_DELETED = "foreign_edit"


def route_deleted(log: Any, target: Target, split: Any, *, error: str, cause: str = ROUTE_DELETED) -> str:
    """`rollout.route_deleted` (critical): the VirtualService of a rollout in progress was deleted. Nothing is
    left to write stable 100% to, and the mesh now balances over the Service's pods, the canary's included:
    only a person can mend it (the controller, decision 133; promote, `runner.unsafe_traffic`, decision 143
    e). `cause`: the end's class, the deletion's own unless an end was decided before it (a failed check's
    rollback whose write met it: decision 683). Returns what the caller's error adds: how traffic stands."""
    vs = f"{target.namespace}/{target.virtual_service}"
    log.critical("rollout.route_deleted", error=error[:300], from_weights=str(split) if split else "unknown",
                 end_cause=cause,
                 hint=f"VirtualService {vs} was deleted mid-rollout: the rollout is aborted (never promoted), and "
                      "the mesh now balances over the Service's pods, the canary's included: re-create the "
                      "VirtualService with its stable destination at 100, or scale the canary down")
    return (f"; VirtualService {vs} is gone: the mesh balances over the Service's pods, the canary's included "
            f"(split last known: {split if split else 'unknown'})")


def end_disagreement(state: rl.RolloutState, status: RouteStatus) -> str:
    """Why the route does not serve the version the ended rollout `state` names ("" when it does, or
    when that cannot be told): stable 100%, and the stable subset on another version than a promotion's
    new one or a rollback's old one. What a process killed between its weights write and its subset
    pointing leaves when nobody followed it (docs/decisions.md 94)."""
    if not state.terminal or status.weights != STABLE_ONLY or not status.stable_subset_version:
        return ""
    want = state.canary_version if state.phase == rl.PROMOTED else state.stable_version
    if not want or status.stable_subset_version == want:
        return ""
    return (f"the rollout is recorded {state.phase} ({want} serving), but the stable subset selects "
            f"{status.stable_subset_version}: every request is served by {status.stable_subset_version}")


def rolled_back_here(recorded: rl.RolloutState | None, status: RouteStatus, *, model: str, canary_version: str,
                     route: str) -> bool:
    """Whether the route's record `recorded` is a rollback of `model`'s `canary_version` that a request for it
    (on `route` as asked, "" = the only one) re-runs: a plain `promote` then reports it, as `--via-controller`
    does (decisions 75 (f), 238). Rolled back, stable 100%, the stable subset on the version it serves
    (`end_disagreement`), the same model (the record is one per VirtualService: a shared one's may be another
    model's, decision 242), and a route that may be the one asked (`patch.may_be_route`, decision 249)."""
    from canary.routing.patch import may_be_route

    return (recorded is not None and recorded.phase == rl.ROLLED_BACK and recorded.canary_version == canary_version
            and recorded.model == model and may_be_route(status.routes, recorded.route, route)
            and status.weights == STABLE_ONLY and not end_disagreement(recorded, status))


def measure_window(metrics: MetricsProvider, policy: Policy, target: Target, *, window_s: int,
                   log: Any) -> tuple[dict[str, tuple[ArmData, ArmData] | Exception], float, str, float]:
    """Every check's (stable, canary) data over the window, the canary request count, why it could not be
    counted ("" where it was, or where Prometheus answered none: 0 requests), and the seconds of data the look
    covers (`rollout.Looked.window_s`). Failures become the check's "could not
    measure"; nothing here raises. A count that failed (read twice, a target down, Prometheus not answering) is 0
    and its cause (`rollout.Looked.uncounted`: no pass, never "fewer canary requests" nor "canary requests 0" at
    the deadline), as the controller's snapshots count it (`metrics.delta.canary_count`, decisions 433, 485).
    The seconds covered are the window's, or fewer where Prometheus holds less of it (`PrometheusProvider.counted`:
    restarted without its storage, its `increase()` counts from its first scrape on; a pass needs the data to cover
    `analysis.interval`, not the step's age; decision 574)."""
    out: dict[str, tuple[ArmData, ArmData] | Exception] = {}
    with one_instant(metrics):  # both arms, every check and the count over the same window (decision 143)
        for check in policy.checks:
            try:
                out[check.name] = metrics.measure(policy, check, target, window_s=window_s)
            except CanaryError as exc:
                out[check.name] = exc
            except Exception as exc:  # a provider bug must not crash a tick that holds split traffic
                log.error("metrics.unexpected_error", check=check.name, error=f"{type(exc).__name__}: {exc}")
                out[check.name] = MetricsUnavailable(f"{type(exc).__name__}: {exc}")
        uncounted, covered = "", float(window_s)
        try:
            _, canary_n, held = counted_requests(metrics, policy, target, window_s=window_s)
            covered = covered if held is None else min(covered, held)
        except Exception as exc:  # no count: a step cannot pass without one
            canary_n = 0.0
            if not isinstance(exc, NoData) or isinstance(exc, NotCountable):  # NoData: none served, a count of 0
                uncounted = said(exc)  # never '' (counted), nor a KeyError's "'x'" (decision 493)
    return out, canary_n, uncounted, covered


def one_instant(metrics: Any, at: float | None = None) -> Any:
    """The provider's `one_instant` (`PrometheusClient.one_instant`: every query of one look evaluated at
    one instant, `at` or the first answer's), where it has one; a no-op for providers that read no clock."""
    import contextlib

    pin = getattr(metrics, "one_instant", None)
    return pin(at) if pin is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class Observation:
    """What a loop saw of one rollout since its last step; each loop gathers it its own way
    (the runner in its sleep loop and a worker thread, the controller once per tick, batched).

    status        the route as read now (None: not read this time; no drift/foreign-edit checks)
    command       a person's rollback/pause/resume (the CR's spec.action; the runner adopts
                  `canary rollback` from the record instead)
    gate_failed   PENDING only: why the Triton pre-traffic gate refused the canary; None when it
                  passed or there is none. `decide` moves a PENDING rollout only when `gate_ran`.
    probe_failed  PROGRESSING only: why the canary is not ready ("" = ready or not probed)
    look          the judge's look over the step's window, when one was due
    on_foreign_edit  "reassert" our weights, or "abort" (roll back), when the weights were edited
    virtual_service  the route's "<namespace>/<name>", for the line that ends a revert loop (`reassert`)
    split_elsewhere  a split with the canary subset found on another VirtualService of the namespace
                  (`claims.OtherSplit`; None: none, or not looked): the rollout is rolled back (decision 602)
    """

    status: RouteStatus | None = None
    command: rl.Rollback | rl.Pause | rl.Resume | None = None
    gate_ran: bool = False
    gate_failed: str | None = None
    probe_failed: str = ""
    look: rl.Looked | None = None
    on_foreign_edit: Literal["reassert", "abort"] = "reassert"
    virtual_service: str = ""  # "<namespace>/<name>" of the route, named in the end after REVERT_LIMIT reverts
    split_elsewhere: Any = None


Step = tuple[rl.RolloutState, list[rl.Action]]


def decide(policy: Policy, state: rl.RolloutState, seen: Observation, now: float) -> list[Step]:
    """The reconcile step shared by `canary promote` and the controller. Pure.

    Order: a person's command; the subsets still select the judged versions (else abort);
    the weights are ours (else reassert or roll back); PENDING + gate -> Begin/GateFailed;
    PROGRESSING + failed probe -> GateFailed; PROMOTING -> finish; PROGRESSING + look ->
    Looked (every look recorded). Returns the (state, actions) pairs to execute in order,
    each write guarded on the previous one; [] when nothing changes."""
    steps: list[Step] = []
    status = seen.status
    read = state  # the record as read with `status`: an end decided on it says the split as routed (`as_routed`)

    def then(step: Step) -> None:
        nonlocal state
        new, actions = step
        if new is state and not actions:
            return
        if status is not None and state is read and new.terminal and not read.terminal:
            actions = as_routed(actions, read, status)
        steps.append((new, actions))
        state = new

    if seen.command is not None:
        then(rl.transition(state, seen.command, policy))
    if status is not None and not state.terminal:
        drift = subset_drift(state, status)
        # logged before the write of the decision: the phase and weights as recorded and routed now (the
        # executor labels the decision target_phase/target_weights), as check.failed and rollback.started are
        routed = {"phase": state.phase, "weights": str(status.weights)}
        if drift:
            new, actions = rl.transition(state, rl.Rollback(now, drift, aborted=True, cause="foreign_edit"), policy)
            then((new, [rl.Emit("subset.foreign_edit", {"reason": drift, **routed}, warning=True), *actions]))
        elif state.phase in (rl.PENDING, rl.PROGRESSING, rl.PAUSED) and status.weights != state.weights:
            # PENDING too: claimed at 100/0, its canary subset already selecting the canary version, while its
            # gate runs (a Triton warm-up: minutes). An edit then sent the canary traffic nobody judged until
            # the first step's write (decision 146)
            found = {"expected": str(state.weights), "found": str(status.weights), "policy": seen.on_foreign_edit,
                     **routed}
            edit = rl.Emit("weights.foreign_edit", found, warning=True)
            if seen.on_foreign_edit == "abort":
                new, actions = rl.transition(state, rl.Rollback(
                    now, f"foreign edit of the weights: expected {state.weights}, found {status.weights}",
                    cause="foreign_edit"), policy)
                then((new, [edit, *actions]))
            else:
                then(reassert(policy, state, status, now, edit=edit, virtual_service=seen.virtual_service))
    other = seen.split_elsewhere
    if other is not None and state.phase in (rl.PENDING, rl.PROGRESSING, rl.PAUSED):
        # another VirtualService (the gateway's beside the mesh's) split with the shared canary subset since the
        # claim: traffic nobody judges, and no weight of ours to put back (another object's route is never
        # written). Rolled back, whatever `on_foreign_edit` says; the rollback re-points the canary subset
        # (`execute`) so that share reaches the stable version once it lands (decision 602)
        said = rl.Emit("split.foreign_edit", {
            "other_virtual_service": other.virtual_service, "other_route": other.route, "split_weights": other.weights,
            "phase": state.phase, "weights": str(state.weights), "hint": other.hint,
            "note": "rolled back; its share reaches the stable version once the rollback re-points the canary "
                    "subset; give that route's canary share back to stable before the next rollout (the hint)"},
            warning=True)
        new, actions = rl.transition(state, rl.Rollback(now, other.reason, cause="foreign_edit"), policy)
        then((new, [said, *actions]))
    if state.phase == rl.PENDING and seen.gate_ran:
        if seen.gate_failed is not None:
            failed = rl.Emit("gate.failed", {"reason": seen.gate_failed, "stage": "preflight", "phase": state.phase,
                                             "weights": str(state.weights)}, warning=True)  # as routed
            new, actions = rl.transition(state, rl.GateFailed(now, seen.gate_failed,
                                                              aborted=not_the_canarys(seen.gate_failed)), policy)
            then((new, [failed, *actions]))
        else:
            then(rl.transition(state, rl.Begin(now), policy))
    elif state.phase == rl.PROGRESSING and seen.probe_failed:
        failed = rl.Emit("gate.failed", {"reason": seen.probe_failed, "stage": "probe", "phase": state.phase,
                                         "weights": str(state.weights)}, warning=True)  # as routed
        new, actions = rl.transition(state, rl.GateFailed(now, seen.probe_failed,
                                                          aborted=not_the_canarys(seen.probe_failed)), policy)
        then((new, [failed, *actions]))
    elif state.phase == rl.PROMOTING:
        then(rl.finish_promotion(state, now))
    if state.phase == rl.PROGRESSING and seen.look is not None and not any(
            isinstance(a, rl.Emit) and a.event == "weights.reasserted" for _, acts in steps for a in acts):
        # (a look read with the route found reverted measured a window the canary did not have: not judged)
        new, actions = rl.transition(state, seen.look, policy)
        if new.reverts:  # a look judged over a window our weights held: the reverts in a row end here
            new = replace(new, reverts=0)
        then((new, with_look_recorded(new, actions)))
    return steps


def as_routed(actions: list[rl.Action], state: rl.RolloutState, status: Any) -> list[rl.Action]:
    """An end's lines (`rollback.started`/`rollback.completed`, `rollout.aborting`/`rollout.aborted`, any line with
    `from_weights`) decided on the record `state` read with the route `status`, with `from_weights` (and the start's
    `weights`) the split the route was read at, not the one its record says: a route edited by hand under a
    rollout in progress (the stable weight deleted: every request to the canary; 70/20; a third destination)
    was said "from_weights 75/25", the record's, and on-call read a quarter on the canary where all of it was.
    `recorded_weights` then gives the record's, and `written_as` the weights as written when Istio's split of
    them is not what they say (`RouteStatus.raw_weights`). Unchanged when the route carries what is recorded.
    Used by `canary rollback` (decision 209), `decide` (the controller's and promote's ends) and the sweep's
    (decision 212). Pure."""
    more = routed_fields(state, status)
    if len(more) == 1:
        return actions
    seen = more["from_weights"]
    out: list[rl.Action] = []
    for a in actions:
        if isinstance(a, rl.Emit) and "from_weights" in a.fields:
            fields = {**a.fields, **more}
            if "weights" in fields:  # the start's "as routed"
                fields["weights"] = seen
            a = replace(a, fields=fields)
        out.append(a)
    return out


def routed_fields(state: rl.RolloutState, status: Any) -> dict[str, Any]:
    """The fields an end's line gives for the split it ended (`as_routed`): `from_weights`, the route's split
    ("78/22"); and, only when the route does not carry what the record `state` says, `recorded_weights` (the
    record's) and `written_as` (the weights as written, when Istio's split of them differs: "stable=(missing)
    canary=25", "stable=50 others=[25, 25]"). `status` None (the route not read): the record's, as before."""
    if status is None:
        return {"from_weights": str(state.weights)}
    seen = str(status.weights)
    raw = getattr(status, "raw_weights", None)
    if seen == str(state.weights) and raw is None:
        return {"from_weights": seen}
    more: dict[str, Any] = {"from_weights": seen, "recorded_weights": str(state.weights)}
    if raw is not None:
        name = "others" if isinstance(raw[1], list) else "canary"
        more["written_as"] = " ".join(f"{k}={'(missing)' if v is None else repr(v)}" for k, v in (("stable", raw[0]),
                                                                                             (name, raw[1])))
    return more


# reverts in a row (our weights replaced outside the rollout with our record left in place, reasserted, and no
# look counted since) after which the rollout ends at stable 100%: a GitOps tool that re-applies the route's
# manifest (Argo CD selfHeal, Flux) reverts every write, and writing again forever judges nothing (decision 170)
REVERT_LIMIT = 3


def reassert(policy: Policy, state: rl.RolloutState, status: RouteStatus, now: float, *, edit: rl.Emit,
             virtual_service: str = "") -> Step:
    """Our weights found replaced outside the rollout, our record still on the route (a `kubectl apply` or a
    server-side apply of a manifest from git keeps an annotation it does not own, and sets the weights it
    does): write them again with the step's window started over (`rl.reverted`: no look judges the data
    measured at the weight found), or, at the REVERT_LIMIT-th revert in a row, end at stable 100% (aborted:
    nothing was judged of the canary) with one line, `weights.reverted`, naming the VirtualService, the
    field and the remedy. Pure."""
    if state.reverts + 1 < REVERT_LIMIT:
        new = rl.reverted(state, now, status.weights)
        return new, [edit, rl.SetWeights(new.weights),
                     rl.Emit("weights.reasserted", {"found": str(status.weights), "reverts": new.reverts,
                                                    "limit": REVERT_LIMIT}, warning=True)]
    index = route_index(state, status)
    vs = virtual_service or "the rollout's VirtualService"
    field = f"spec.http[{index}].route[*].weight"
    remedy = (f"Argo CD: ignoreDifferences on VirtualService {vs} with jsonPointers /spec/http/{index}/route/0/weight, "
              f"/spec/http/{index}/route/1/weight, /metadata/annotations/{STATE_ANNOTATION.replace('/', '~1')} and "
              f"/metadata/annotations/{SERVICE_ANNOTATION.replace('/', '~1')} "
              "(with syncOptions RespectIgnoreDifferences=true); Flux: annotate it in git "
              "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent, or leave its weights out of the manifest")
    why = (f"foreign edit, {state.reverts + 1} times in a row: {field} of VirtualService {vs} was reverted to "
           f"{status.weights} after canary wrote {state.weights} (a GitOps tool re-applying its manifest: Argo CD "
           f"selfHeal, Flux); stable 100%, the canary was never judged at a weight it did not have. Remedy: {remedy}")
    # the VirtualService by the fields every line of the rollout has (`rollout_context`: its name, and `namespace`
    # beside it), never "ns/name" of its own over them: a query on `virtual_service="m0"` missed this line
    line = rl.Emit("weights.reverted", {"field": field, "found": str(status.weights),
                                        "expected": str(state.weights), "reverts": state.reverts + 1,
                                        "remedy": remedy}, warning=True)
    new, actions = rl.transition(state, rl.Rollback(now, why, aborted=True, cause="foreign_edit"), policy)
    return new, [edit, line, *actions]


def route_index(state: rl.RolloutState, status: RouteStatus) -> int:
    """The index of the rollout's HTTP route in the VirtualService's spec.http, as read (0 when unnamed or not
    read: the only route)."""
    if state.route and state.route in status.routes:
        return status.routes.index(state.route)
    return 0


def with_look_recorded(new: rl.RolloutState, actions: list[rl.Action]) -> list[rl.Action]:
    """Every look is recorded (look and failure counts, the canary count it saw): a process that
    keeps nothing between looks must not re-spend the failure budget after a restart."""
    if any(isinstance(a, rl.SetWeights) for a in actions):
        return actions
    return [*actions, rl.SetWeights(new.weights)]


def rollout_context(target: Target, state: rl.RolloutState | None = None) -> dict[str, str]:
    """What every line about one rollout carries (docs/reference/events.md): on-call reads which model, in which
    namespace, on which VirtualService and route, from which stable to which canary version, from the line
    alone. The recorded state's model, versions and route are the truth once there is one (a rescue, the sweep's
    end of an orphan, a CanaryRollout edited since: its model too, decision 800); the route is left out when
    unnamed (the only one)."""
    if state is not None:
        target = replace(target, model=state.model or target.model,
                         stable_version=state.stable_version or target.stable_version,
                         canary_version=state.canary_version or target.canary_version, route=state.route or target.route)
    return target.log_context()  # a version not known yet (before the claim) is left out


@dataclass(frozen=True)
class Retry:
    """How a failed stable-100% write is said when its caller writes it again (promote's fail-safe within
    its budget, the controller at its next tick): the warning ``rollback.retrying`` (traffic may still be
    split, nobody need act yet), not the critical ``rollback.failed`` ("act by hand" while it is still being
    tried). `page`: the caller's bound is spent and this failure is its page, the critical line (the caller
    sees to it that it pages once). `fields` go on either line and win over the executor's own (the
    caller's count of failed attempts, how long they have failed, its `hint`). `resolves`: fields the end's last
    line (`rollback.completed` / `rollout.aborted`) carries once this write lands, when the caller has already paged
    (`rollback.failed`) for it: that line ends the page, and says so."""

    page: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    resolves: dict[str, Any] = field(default_factory=dict)

    def line(self, log: Any, base: dict[str, Any], *, own: tuple[str, ...] = ()) -> None:
        """`rollback.retrying` (warning) or, when this is the page, `rollback.failed` (critical): `base`, then
        this Retry's fields over it, but for the keys `own` names (the executor knows better: the weights
        landed, and the caller's "traffic may still be split" would be false)."""
        kept = {k: base[k] for k in own if k in base}
        if self.page:
            log.critical("rollback.failed", **{**base, **self.fields, **kept})
        else:  # the executor's "act by hand" is the page's alone
            log.warning("rollback.retrying",
                        **{**{k: v for k, v in base.items() if k != "hint"}, **self.fields, **kept})


# an end's last line, said once its stable 100% has landed (`rl._end`'s `done`); and with its first (`start`)
END_DONE = ("rollback.completed", "rollout.aborted")
END_STARTS = ("rollback.started", "rollout.aborting")  # said before the end's write (`rl._end`)
END_LINES = (*END_STARTS, *END_DONE)


def without_start(actions: list[rl.Action]) -> list[rl.Action]:
    """`actions` without their end's start line (`END_STARTS`): for a write of that end again, whose start was said
    at its first attempt (decision 737)."""
    return [a for a in actions if not (isinstance(a, rl.Emit) and a.event in END_STARTS)]


def execute(router: TrafficRouter, target: Target, state: rl.RolloutState, actions: list[rl.Action], *,
            log: Any, expect: Any = ..., written: Callable[[str], None] | None = None,
            report_failure: bool = True, retry: Retry | None = None,
            routed: Weights | None = None, subset_kept: list[str] | None = None) -> rl.RolloutState:
    """Carry out actions in order. Writes are guarded on the recorded state being `expect` (what we
    last read or wrote; `...` = unguarded). A failed write that should have put stable at 100% is
    logged as ``rollback.failed`` and re-raised. A guarded PointSubset checks the recorded state
    before and after its write and undoes itself if another writer recorded a decision meanwhile.
    Every line it logs carries `rollout_context` (whoever called it, with whatever logger).
    `retry`: the caller writes stable 100% again should this fail (promote's fail-safe within its budget,
    the controller at its next tick): a failed stable-100% write is then said as `Retry.line` says
    (`rollback.retrying`, not yet the critical ``rollback.failed``: "act by hand" while it is still being
    tried; the caller's page when its bound is spent).
    `routed`: the weights the route was confirmed to carry when these actions were decided (a look's read after
    it measured, a heartbeat's read): every weights write that is not stable 100% lands only on the weights
    before it (`expect_weights`: `routed`, then each landed write's own), else raises WeightsMoved with nothing
    written; the lines before the first such write (`look.completed`, `check.failed`) are said once it lands,
    or once it fails for any cause but a refusal (WeightsMoved, another writer's record: the look was not
    recorded, and never says it was judged; decisions 185, 186). Stable 100% is never guarded. `subset_kept`:
    `canary_subset_home`'s `kept` after a rollback landed."""
    log = log.bind(**rollout_context(target, state))
    before = split_ended(actions)
    stable_written = False  # a stable-100% write of this call has landed (what a failed re-pointing may claim)
    # weights writes of this call still to land: until then `state` is a target, not what is routed, and an
    # event logs it as target_phase/target_weights (a failed write must leave no line claiming it)
    writes_left = sum(isinstance(a, rl.SetWeights) for a in actions)
    pointed: list[rl.PointSubset] = []  # guarded pointings of this call before its weights write
    looked: tuple[Any, str, bool] | None = None  # a rollback's look at the other VirtualServices (decision 901)
    # the lines before the first weights write guarded on `routed`: said once it lands (none, refused)
    first = next((i for i, a in enumerate(actions) if isinstance(a, rl.SetWeights)), None)
    held: list[Callable[[], None]] | None = [] if routed is not None and first is not None and \
        getattr(actions[first], "weights", None) != STABLE_ONLY else None
    for index, action in enumerate(actions):
        if isinstance(action, rl.SetWeights):
            text = state.to_json()
            guard = {"expect_weights": routed} if routed is not None and action.weights != STABLE_ONLY else {}
            try:
                after = router.set_weights(target, action.weights, state=text, expect_state=expect, **guard)
                landed = getattr(after, "state", None)
                if getattr(after, "also_ended", ()):  # what the rollback changed beyond its route (556, 577)
                    log.warning("rollback.other_routes", routes=list(after.also_ended),
                                note="the rolled-back version is no longer reached by these routes either")
                if action.weights == STABLE_ONLY and landed != text and rl.carried(landed, text):
                    # cut to fit beside the object's other annotations (decision 563): what the route records now,
                    # which every later guard of this rollout compares against
                    text = landed
                if routed is not None:
                    routed = action.weights
                for say in held or ():
                    say()
                held = None
                writes_left -= 1
                expect = text
                stable_written = stable_written or action.weights == STABLE_ONLY
                pointed.clear()
            except NotLeader:  # refused by the fence, nothing sent: the new leader's tick ends it; nobody is paged
                for say in held or ():
                    say()
                raise
            except CanaryError as exc:
                if getattr(exc, "also_ended", ()) and may_have_landed(exc):
                    # sent unanswered: had it landed, the retry finds these changes made and says none (589)
                    log.warning("rollback.other_routes", routes=list(exc.also_ended),  # type: ignore[attr-defined]
                                write_landed=write_landed(exc),
                                note="the rolled-back version is no longer reached by these routes either")
                if held is not None and others_decision(exc):
                    # refused, nothing written (WeightsMoved: a revert; or another writer's record): the look it
                    # would have recorded was not judged, and its lines are unsaid (decisions 185, 186)
                    raise
                for say in held or ():  # said as before: the write failed, the judgement stands
                    say()
                held = None
                if action.weights == STABLE_ONLY and state.phase in (rl.ROLLED_BACK, rl.ABORTED):
                    _weights_failed(exc, target, actions)
                if isinstance(exc, RoutingConflict) and expect is not ... and pointed:
                    _follow_recorded_end(router, target, state, pointed, log=log)
                if report_failure and action.weights == STABLE_ONLY and state.phase == rl.PROMOTED:
                    # a promotion's last write: the canary already serves all traffic, nothing is split and
                    # nobody need act by hand (the caller tries again, or finishes it at its next tick)
                    log.warning("promotion.write_conflict" if isinstance(exc, RoutingConflict)
                                else "promotion.write_failed", error=str(exc), reason=state.reason,
                                write_landed=write_landed(exc), target_weights=str(action.weights))
                elif report_failure and action.weights == STABLE_ONLY and state.phase in rl.TERMINAL:
                    if others_decision(exc) and expect is not ...:
                        # guarded: another writer recorded a decision first; the caller adopts it, or leaves
                        # another owner's rollout alone: nobody need act by hand. (A 409 storm, guarded or not,
                        # refused nobody's decision: the write failed, and traffic is as before.)
                        log.warning("rollback.write_conflict", error=str(exc), reason=state.reason)
                    else:  # the weights it could not write, and why the rollback was made: traffic is as before
                        # unless a write with no answer (a timeout, a 5xx) was applied all the same: say which
                        (retry or Retry(page=True)).line(log, {
                            "error": str(exc), "target_weights": str(action.weights), "reason": state.reason,
                            "end_cause": rl.cause_of(state), "write_landed": write_landed(exc),
                            **before, "hint": "traffic may still be split: act by hand"})
                raise
            if written:
                written(text)
        elif isinstance(action, rl.PointSubset):
            follows = any(isinstance(a, rl.SetWeights) and a.weights == STABLE_ONLY for a in actions[index + 1:])
            done = _point(router, target, state, action, log=log, expect=expect, report_failure=report_failure,
                          stable_written=stable_written, context=_context(state, writes_left), retry=retry,
                          stable_follows=follows, then=end_next(actions))
            if done and action.guarded and expect is not ... and action.subset == "stable":
                pointed.append(action)
        elif isinstance(action, rl.Emit):
            if retry is not None and retry.resolves and stable_written and action.event in END_DONE:
                action = replace(action, fields={**action.fields, **retry.resolves})  # the page is over
            if stable_written and action.event in END_DONE and state.phase in (rl.ROLLED_BACK, rl.ABORTED) \
                    and looked is None:
                # 603's look at the other VirtualServices, made once stable 100% landed (never before that write),
                # before the end's line: the line says where they could not be checked (decision 901)
                looked = look_at_others(router, target)
                action = replace(action, fields={**action.fields, **others_unchecked(looked, target, state)})
            say = _saying(router, target, state, action, log, writes_left)
            if held is not None and first is not None and index < first:
                held.append(say)
            else:
                say()
    if stable_written and state.phase in (rl.ROLLED_BACK, rl.ABORTED):
        _warn_stable_unserved(router, target, state, log=log)
        canary_subset_home(router, target, state, log=log, record=expect, looked=looked, kept=subset_kept)
    return state


def look_at_others(router: Any, target: Target) -> tuple[Any, str, bool] | None:
    """A rollback's look at the other VirtualServices (`split_in_others`, one try at a glance): (the split found,
    None when none; why they could not all be checked, "": they were (a 403's: the namespace's only); whether the look
    failed: a 5xx, a timeout, an answer that does not parse). None where the router cannot look (not Kubernetes')."""
    find = getattr(router, "split_in_others", None)
    if find is None or getattr(getattr(router, "inner", router), "split_in_others", None) is None:
        return None  # (a FencedRouter over a router that cannot list them answers for it: not a Kubernetes one)
    try:
        other, unknown = find(target, glance=True)
    except Exception as exc:  # noqa: BLE001 - the rollback has landed: a failed look is said, never raised
        return None, str(exc) or type(exc).__name__, True
    # a 403 found the namespace's only: the others said at the claim, maybe by another process (`canary rollback`)
    narrowed = getattr(getattr(router, "inner", router), "others_unlisted", None)
    return other, str(unknown or (narrowed(target.namespace) if narrowed is not None else "")), False


def others_unchecked(looked: tuple[Any, str, bool] | None, target: Target, state: rl.RolloutState) -> dict[str, Any]:
    """The end line's fields where the other VirtualServices could not be checked (`look_at_others`): why, and the
    command that checks them (traffic may still reach the canary subset through one); {} where they were."""
    if looked is None or not looked[1]:
        return {}
    return {"others_unchecked": looked[1][:400],
            "others_hint": f"stable 100% is written on {target.namespace}/{target.virtual_service}, but another "
                           "VirtualService may still send traffic to subset 'canary' (which selects "
                           f"{state.canary_version}): check `kubectl get virtualservices --all-namespaces -o yaml` for "
                           f"a route to DestinationRule {target.namespace}/{target.dr_name}'s host with subset canary; "
                           "`canary rollback` again looks once more and points that subset at "
                           f"{state.stable_version} where one splits"}


def end_next(actions: list[rl.Action]) -> dict[str, Any]:
    """`{"next": ...}`: what on-call does after the end `actions` write (its end line's `next`, decision 678); empty
    when they end nothing. Said too where that end landed and its line is not (the stable subset's pointing after
    it failed: the page is then the last line of the end on-call reads; decision 755, on 738)."""
    said = next((a.fields["next"] for a in actions if isinstance(a, rl.Emit) and a.event in END_DONE
                 and a.fields.get("next")), None)
    return {"next": said} if said else {}


def split_ended(actions: list[rl.Action]) -> dict[str, Any]:
    """`{"from_weights": ...}`: the weights a stable-100% write of `actions` moves from (its end's `from_weights`),
    what is still routed when that write fails; empty when no line of them says one."""
    split = next((a.fields["from_weights"] for a in actions if isinstance(a, rl.Emit) and "from_weights" in a.fields),
                 None)
    return {"from_weights": split} if split else {}


def _saying(router: TrafficRouter, target: Target, state: rl.RolloutState, action: rl.Emit, log: Any,
            writes_left: int) -> Callable[[], None]:
    """`action`'s line (and its Kubernetes Event), as it reads at its place among the actions."""
    now = "" if not writes_left else "target_"
    fields = {**_context(state, writes_left), **action.fields}

    def say() -> None:
        getattr(log, action.log_level)(action.event, **fields)
        if action.event in K8S_EVENTS:
            router.record_event(target, reason=camel(action.event), warning=action.warning,
                                message=event_message(action, state.weights, now.replace("_", " ")))
    return say


def event_message(action: rl.Emit, weights: Any, when: str = "") -> str:
    """The Kubernetes Event's message of `action`'s line at `weights`: the event, the weights, and its reason; a
    promotion's names the version now serving (`serving_version`): "100/0" read alone (`kubectl get events`) said
    the canary got nothing."""
    serving = action.fields.get("serving_version")
    split = f"{weights} ({serving} serves all traffic) " if serving else f"{weights} "
    return f"{action.event}: {when}weights {split}" + str(action.fields.get("reason", ""))


def _warn_stable_unserved(router: Any, target: Target, state: rl.RolloutState, *, log: Any) -> None:
    """After a rollback's stable 100% landed (never before: it is not delayed, nor withheld): the stable's
    pods counted once, `rollback.stable_not_ready` when none is Ready (every request now meets no endpoint:
    503s until its pods are Ready). Best effort, at a glance (each read tried once, 3 s at most): a pod
    count that cannot be made says nothing, and does not hold the caller."""
    from canary.routing.patch import STABLE

    count_subset = getattr(router, "subset_pods", None)
    if count_subset is None or not state.stable_version:
        return
    try:
        count = count_subset(replace(target, stable_version=state.stable_version), STABLE, glance=True)
    except Exception:  # noqa: BLE001 - this line's read must never fail the rollback that already landed
        return
    if count.unchecked or count.ready:
        return
    # every request to the route now fails: an outage on-call must act on, an error whatever the end's own level (a
    # deadline's or an operator's rollback is a warning, and an alert on errors missed that nothing serves; 680)
    log.error("rollback.stable_not_ready", stable_version=state.stable_version, selector=count.selector,
                pods_namespace=count.namespace, pods=count.total, not_ready="; ".join(count.not_ready),
                note="stable 100% is written, but no Ready pod serves the stable version: requests get no "
                     "healthy upstream (503) until one is Ready; scale up or fix its Deployment")


# a rollback's canary-subset re-pointing (603) whose look or write failed for a cause that may pass: the
# controller (and `canary promote`, before it exits) tries it in all at most this many times, the work queue's
# backoff apart (`subset_home_delay`: 0.5 s, 1, 2, 4, 8, then 10 s: about 35 s; decisions 980, 1020, 1050)
SUBSET_HOME_TRIES = 8


def subset_home_delay(attempt: int) -> float:
    """Seconds after the `attempt`-th failed try of a rollback's canary-subset re-pointing before the next: the
    controller's work queue's backoff (`DueQueue`'s 0.5 s doubled, at most 10 s), which `canary promote` waits too."""
    return exponential_delay(BASE_DELAY_S, attempt, MAX_DELAY_S)


class SubsetKept(list):  # type: ignore[type-arg]
    """`canary_subset_home`'s `kept` (a list of the failures that may pass) for a caller other than the controller,
    named in each try's `next` (`subset_try_fields`): `canary promote`, which tries again before it exits (1050)."""

    def __init__(self, by: str) -> None:
        super().__init__()
        self.by = by


def subset_try_fields(attempt: int, *, by: str = "controller", stopped: str = "") -> dict[str, Any]:
    """What a failed try (`attempt` of SUBSET_HOME_TRIES) of the controller's (`by`), or of `canary promote`'s, says
    beside `rollback.canary_subset_kept`: which try, and what comes next (decision 1020): tried again (when), or the
    last try and what to do by hand; `stopped` (a signal's words): promote tries no more (decision 1050)."""
    who = "the controller" if by == "controller" else by
    if stopped:
        then = f"{stopped}: {who} tries no more: act by hand (hint)"
    elif attempt >= SUBSET_HOME_TRIES:
        then = f"{who}'s last try: act by hand (hint)"
    elif by == "controller":
        then = "the controller tries again at a later tick (backed off up to 10 s)"
    else:
        then = f"{who} tries again in {subset_home_delay(attempt):g} s"
    return {"attempt": attempt, "attempts": SUBSET_HOME_TRIES, "next": then}


SUBSET_UNREAD_HINT = ("kubectl get virtualservices: a route there may still send the canary subset a share; point the "
                      "DestinationRule's canary subset at the stable version, or `canary rollback` again once the "
                      "cause is fixed (decision 639)")


def say_subset_unread(log: Any, exc: BaseException, attempt: int, *, by: str = "controller", **fields: Any) -> None:
    """A later try of a rollback's canary-subset re-pointing whose read of the route failed: the try is spent, and
    said as any failed try (`rollback.canary_subset_kept` with its `attempt` and `next`; decision 1020)."""
    log.warning("rollback.canary_subset_kept", **fields, error=str(exc)[:600], **subset_try_fields(attempt, by=by),
                hint=SUBSET_UNREAD_HINT,
                note="the route could not be read for this try of the rollback's canary-subset re-pointing")


def subset_home_retries(router: Any, target: Target, state: rl.RolloutState, *, log: Any, kept: SubsetKept,
                        wait: Callable[[float], str]) -> bool:
    """`canary promote`'s tries again of its rollback's canary-subset re-pointing, whose first try (`execute`'s,
    into `kept`) failed for a cause that may pass: up to SUBSET_HOME_TRIES in all, `subset_home_delay` apart, as the
    controller tries it at its later ticks (decisions 980, 1020, 1050). Each try reads the route and runs
    `canary_subset_home` guarded on the record read, only where it still records this rollout's end and the canary
    subset still selects the version rolled back (else: another rollout's since, or pointed meanwhile: nothing
    more). A try that fails for good (a Role, a route that refuses it) is said and not tried again. `wait(seconds)`:
    "" once waited, or why it stopped (a signal: "interrupted (SIGTERM)"): no try follows, the last failure said once
    more with `next` saying so; traffic is not touched (stable 100% stands). Returns whether it was pointed."""
    attempt = 1
    while kept and attempt < SUBSET_HOME_TRIES:
        stopped = wait(subset_home_delay(attempt))
        if stopped:
            log.warning("rollback.canary_subset_kept", error=kept[-1][:600],
                        **subset_try_fields(attempt, by=kept.by, stopped=stopped), hint=SUBSET_UNREAD_HINT,
                        note="stable 100% is written on the rollout's route; another VirtualService may still send a "
                             f"share to the canary subset, which selects {state.canary_version}")
            return False
        attempt += 1
        kept.clear()
        try:
            status = read_for_stable(getattr(router, "inner", router), target)
        except Exception as exc:  # noqa: BLE001 - the rollback has landed: a failed read spends the try, never raised
            kept.append(str(exc)[:400] or type(exc).__name__)
            say_subset_unread(log, exc, attempt, by=kept.by)
            continue
        try:
            recorded = parse_state(status)
        except TargetError:
            return False  # not this rollout's record any more: its canary subset is not ours to point
        if recorded is None or recorded.phase not in (rl.ROLLED_BACK, rl.ABORTED) \
                or (recorded.canary_version, recorded.stable_version) != (state.canary_version, state.stable_version) \
                or status.canary_subset_version != state.canary_version:
            return False
        if canary_subset_home(router, target, recorded, log=log, record=status.state, kept=kept, attempt=attempt):
            return True
    return False


def canary_subset_home(router: Any, target: Target, state: rl.RolloutState, *, log: Any, record: Any,
                       looked: tuple[Any, str, bool] | None = None, kept: list[str] | None = None,
                       attempt: int = 1) -> bool:
    """After a rollback's stable 100% landed (never before: that write stays one write, and as fast): where another
    VirtualService of the namespace still splits with the canary subset (the gateway's, beside the mesh's: seen
    by a look or made since), the canary subset is pointed at the stable version, so that share reaches the
    stable's pods, not the version rolled back; that VirtualService is not written (another object's route).
    Said in one line, `rollback.canary_subset_repointed`, or `rollback.canary_subset_kept` when the look or the
    write failed (nothing undone: stable 100% stands on the rollout's route). Guarded on `record`, the end this
    call wrote: a rollout that claimed since owns the canary subset. Decision 603; `canary rollback` run again over
    that end calls it too, where the canary subset still selects the version rolled back (decision 639). `looked`:
    `look_at_others`' answer made before the end's line (not asked again; decision 901). `kept`: where the look or
    the pointing failed for a cause that may pass (a TransientError: the glance's 3 s timeout on a loaded API
    server, a 5xx), its error is appended, for a caller that tries again later (the controller; decision 980);
    its line then says which try it was (`attempt` of SUBSET_HOME_TRIES) and `next`: tried again, or the last try
    and what to do by hand (decision 1020). Returns whether it was pointed."""
    find = getattr(router, "split_in_others", None)
    if find is None or not state.stable_version:
        return False
    other, unservable = None, False
    try:
        # one try, a short timeout; a Role without `list`: said at the claim (`preflight.splits_unchecked`)
        other, unknown, failed = looked if looked is not None else (*find(target, glance=True), False)
        if failed:  # the end's line said it; and as a failed look before 901: `rollback.canary_subset_kept`
            raise KubeUnavailable(unknown)
        if other is None:
            return False
        if other.running:
            # a rollout in progress on that VirtualService made the split (it claimed once our stable 100% had
            # landed): the canary subset is its, and pointed at the stable version its canary would be judged on
            # the stable's pods (decision 690)
            log.info("rollback.canary_subset_left", other_virtual_service=other.virtual_service,
                     other_route=other.route, split_weights=other.weights, hint=other.hint,
                     note=f"the canary subset is {other.running}, which judges that share: not pointed")
            return False

        def still_ours() -> None:
            # (a read: a FencedRouter's inner router reads leniently, a route of any shape after a rollback)
            if record is not ... and (read_for_stable(getattr(router, "inner", router), target).state or None) \
                    != record:
                raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: the route records another "
                                      "rollout since this rollback; its canary subset is that rollout's")
        try:
            _serves_stable(router, target, state)
        except TargetError:
            unservable = True  # a label only the canary subset has: pointed, that share would be 503s (660)
            raise
        router.point_subset(target, "canary", state.stable_version, guard=still_ours)
    except Exception as exc:  # noqa: BLE001 - the rollback has landed: this failure is said, never raised
        retried: dict[str, Any] = {}
        if kept is not None and isinstance(exc, TransientError) and not unservable:
            kept.append(str(exc)[:400] or type(exc).__name__)
            retried = subset_try_fields(attempt, by=getattr(kept, "by", "controller"))
        # where the subset would select no Ready pod, the patch is the only way out: pointing it by hand is the 503
        # case just refused, and `canary rollback` again refuses the same way (decision 660's addendum)
        log.warning("rollback.canary_subset_kept", error=str(exc)[:600],
                    other_virtual_service=other.virtual_service if other else None,
                    other_route=other.route if other else None, split_weights=other.weights if other else None,
                    hint=(other.hint if unservable else
                          f"{other.hint}; or point subset 'canary' of DestinationRule {target.namespace}/"
                          f"{target.dr_name} at version {state.stable_version} (`canary rollback` again tries it "
                          "once the cause is fixed, decision 639)") if other else
                    "kubectl get virtualservices: a route there may still send the canary subset a share",
                    note="stable 100% is written on the rollout's route; another VirtualService may still send a "
                         f"share to the canary subset, which selects {state.canary_version}", **retried)
        return False
    log.warning("rollback.canary_subset_repointed", stable_version=state.stable_version,
                other_virtual_service=other.virtual_service, other_route=other.route, split_weights=other.weights,
                hint=other.hint, note=f"subset 'canary' of DestinationRule {target.namespace}/{target.dr_name} "
                f"selects {state.stable_version}, so that route's canary share reaches the stable version; that "
                "VirtualService is not written")
    return True


def _serves_stable(router: Any, target: Target, state: rl.RolloutState) -> None:
    """TargetError when the canary subset, pointed at the stable version, would select no Ready pod (a label only it
    has, `track: canary`, which the stable's pods lack: that share would meet no endpoint, 503s, and a line saying
    it reaches the stable version would be false). Counted at a glance; pods that cannot be counted (no RBAC, no
    Service) are not held against it."""
    count_subset = getattr(router, "subset_pods", None)
    if count_subset is None:
        return
    count = count_subset(replace(target, canary_version=state.stable_version), CANARY, glance=True)
    if not count.unchecked and not count.ready:
        raise TargetError(f"pointed at {state.stable_version}, the canary subset would select no Ready pod "
                          f"({count.selector} in {count.namespace}: {count.total} found): not pointed")


def _context(state: rl.RolloutState, writes_left: int) -> dict[str, Any]:
    """The rollout's phase, weights and step for a log line: `target_`-prefixed while the weights write that
    records them has not landed (a failed write must leave no line claiming it)."""
    now = "" if not writes_left else "target_"
    return {f"{now}phase": state.phase, f"{now}weights": str(state.weights), "step": state.step + 1}


def _point(router: TrafficRouter, target: Target, state: rl.RolloutState, action: rl.PointSubset, *, log: Any,
           expect: Any, report_failure: bool, stable_written: bool = True, stable_follows: bool = False,
           context: dict[str, Any] | None = None, retry: Retry | None = None,
           then: dict[str, Any] | None = None) -> bool:
    """Carry out `action`. Returns False where it was left for the stable-100% write after it (`stable_follows`: a
    rule re-hosted, decision 662), True otherwise; raises what a failed pointing raises. `then`: the end's `next`
    (`end_next`), said on the line of a pointing that failed after the end's stable 100% landed, and kept on the
    RollbackFailed raised (`next_step`) for a caller that says it (the sweep)."""
    def guard() -> None:  # before every attempt of the write, 409 retries included
        if router.inspect(target).state != expect:
            raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: the rollout state changed "
                                  f"before the {action.subset} subset was re-pointed; not re-pointing")

    kw: dict[str, Any] = {}
    if action.guarded and expect is not ...:
        kw["guard"] = guard
    if action.supersede:
        kw["supersede"] = True
    rollback = state.phase in rl.TERMINAL and state.phase != rl.PROMOTED
    if rollback and not action.version:  # a route split with no rollout recorded: no version to point at
        log.critical("rollback.subset_not_pointed", subset=action.subset, weights=str(state.weights),
                     error="the stable version is not known (no rollout recorded, no readable subset)",
                     hint="stable has 100% of the weights; check what the DestinationRule's stable subset selects")
        return True
    try:
        router.point_subset(target, action.subset, action.version, **kw)
    except NotLeader:  # refused by the fence, nothing written: the caller stops (it was a RollbackFailed)
        raise
    except CanaryError as exc:
        if others_decision(exc) and "guard" in kw:
            # guarded: another writer recorded a decision before this write could land; nothing was written
            # (a rollback's pointing before its weights: no weights either), and the caller reads the route
            # again (adopts that decision, or leaves another owner's rollout alone), as for its weights
            if report_failure and rollback:
                log.warning("rollback.write_conflict", error=str(exc), reason=state.reason)
            raise
        if rollback and not stable_written and stable_follows and (isinstance(exc, RuleElsewhere) or
                                                                   _rule_gone(exc, target, state)):
            # the rule describes another service's pods now, or is gone: whatever its stable subset selected, the
            # route's subsets resolve under no rule of its host, so none of its requests reaches the canary version
            # by it (what the pointing before the weights guards against, a rollback from PROMOTING). Stable 100% is
            # written and the end recorded; the pointing after it is refused and pages (`destination_rule_elsewhere`,
            # `destination_rule_deleted`). Raised here, the end was never written: a promotion's pointing refused so
            # left 0/100 recorded `promoting`, a `traffic.unsafe` saying to set stable 100% by hand (decisions 662,
            # 842: the rule deleted between the promotion's 0/100 and its pointing)
            return False
        if rollback and not stable_written and not others_decision(exc):  # (a 409 storm is a failed write: decision 135)
            # re-pointing before the weights (a rollback from PROMOTING, the stable subset perhaps on the
            # canary version already): nothing was written, and stable 100% is not written either, or
            # the route would record a rollback while the canary version serves everything
            msg = (f"nothing was written: the {action.subset} subset could not be pointed back at {action.version} "
                   f"before stable 100% ({exc}); the weights are as they were")
            if report_failure:  # nothing written: a caller that tries again (`retry`) says so first
                (retry or Retry(page=True)).line(log, {
                    "error": msg, "subset": action.subset, "version": action.version, "weights": str(state.weights),
                    "hint": _elsewhere_hint(target) if isinstance(exc, RuleElsewhere) else
                            f"act by hand: point the stable subset at {action.version}, then run `canary rollback` "
                            "again"})
            raise RollbackFailed(msg) from exc
        if rollback:  # the weights landed (stable 100%, the end recorded): the line says which write did not
            exc.landed_words = subset_failed_words(exc, target, action)  # type: ignore[attr-defined]
        if rollback and isinstance(exc, NotFound):  # an outage, not a retry: the page, whoever reports (168)
            destination_rule_deleted(log, target, action, error=str(exc))
        elif rollback and isinstance(exc, RuleElsewhere):  # the same outage: the route's subsets resolve under no
            destination_rule_elsewhere(log, target, action, error=str(exc))  # rule of its host (649)
        if report_failure and rollback:
            (retry or Retry(page=True)).line(log, {
                "error": str(exc), "subset": action.subset, "version": action.version, "weights": str(state.weights),
                "write_landed": write_landed(exc), "note": subset_note(exc, target, action),
                "hint": (_elsewhere_hint(target) if isinstance(exc, RuleElsewhere) else
                         "the weights send 100% to the stable subset, which "
                         f"could not be re-pointed at {action.version}: check what it selects"),
                **(then or {})}, own=("note",))
        if rollback and not isinstance(exc, TransientError):  # the weights were written: exit 3, not 2
            failed = RollbackFailed(f"stable has 100% of the weights, but the {action.subset} subset could not be "
                                    f"re-pointed at {action.version}: {exc}"
                                    + (gone_words(target, action) if isinstance(exc, NotFound) else ""))
            failed.rollout_state = state  # type: ignore[attr-defined]  # what the route now records
            failed.landed_words = exc.landed_words  # type: ignore[attr-defined]
            failed.subset_note = subset_note(exc, target, action)  # type: ignore[attr-defined]
            failed.next_step = then or {}  # type: ignore[attr-defined]
            raise failed from exc
        raise
    log.info("subset.pointed", **(context or {}), subset=action.subset, version=action.version)
    if not (action.guarded and expect is not ...):
        return True
    now_recorded = router.inspect(target).state
    if now_recorded == expect:
        return True
    if _subset_under(now_recorded, state) == action.version or (
            action.subset == "stable" and _stable_of_another(now_recorded, state) == action.version):
        # another writer recorded an end of this rollout that keeps the subset where this write put it (a
        # re-run promote or the sweep finished this very promotion; a rollback landed while a rollback's own
        # pointing was written), or another rollout claimed the route with that version stable (the sweep's or
        # `canary rollback`'s repair of an ended rollback racing a new promote): undoing it would leave that end,
        # or that rollout, on the wrong version
        raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: {_phase(now_recorded)} was recorded by "
                              f"another writer meanwhile, which keeps the {action.subset} subset on {action.version}; "
                              "nothing undone")

    def still() -> None:  # the undo is guarded too: another end recorded since does its own pointing, last
        if router.inspect(target).state != now_recorded:
            raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: the rollout state changed again "
                                  f"before the {action.subset} subset was pointed back; not pointing it")

    router.point_subset(target, action.subset, action.undo_version, guard=still)
    log.warning("subset.repointed_back", subset=action.subset, version=action.undo_version,
                recorded_phase=_phase(now_recorded))
    raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: {_phase(now_recorded)} was recorded while "
                          f"the {action.subset} subset was pointed at {action.version}; pointed it back at "
                          f"{action.undo_version}")


def _follow_recorded_end(router: TrafficRouter, target: Target, state: rl.RolloutState,
                         pointed: list[rl.PointSubset], *, log: Any) -> None:
    """This call pointed the stable subset (guarded, checked after its write), then its weights write
    was refused: another writer recorded something after that check. When that record is an end of
    this very rollout wanting the stable subset on another version than this call pointed it at, point
    it there, guarded on that record: the other writer may have pointed it before this call's pointing
    landed, or died between its weights write and its last pointing, and the end it recorded would
    hold with every request on the version it does not name (docs/decisions.md 94). Idempotent (no
    write when the subset is right); a failure is logged, and the caller sees the refused write's conflict."""
    try:
        now_recorded = router.inspect(target).state
        want = _subset_under(now_recorded, state)
        if want is None:
            return

        def still() -> None:
            if router.inspect(target).state != now_recorded:
                raise RoutingConflict(f"{target.namespace}/{target.virtual_service}: the rollout state changed "
                                      "again before the stable subset was pointed as recorded; not pointing it")

        router.point_subset(target, "stable", want, guard=still)
    except CanaryError as exc:
        log.warning("subset.follow_failed", subset="stable", error=str(exc), pointed=[a.version for a in pointed])
        return
    if any(a.version != want for a in pointed):
        log.warning("subset.repointed_back", subset="stable", version=want, recorded_phase=_phase(now_recorded))


def _subset_under(text: str | None, state: rl.RolloutState) -> str | None:
    """The version the stable subset must select under the record `text` when it is an end of the rollout
    `state` (the same versions): promoted, its new version; rolled back or aborted, its stable version.
    None for anything else (no record, unreadable, another rollout's, one not ended)."""
    try:
        rec = parse_record(text)
    except TargetError:
        return None
    if rec is None or (rec.stable_version, rec.canary_version) != (state.stable_version, state.canary_version):
        return None
    if rec.phase == rl.PROMOTED:
        return rec.canary_version
    return rec.stable_version if rec.phase in (rl.ROLLED_BACK, rl.ABORTED) else None


def _stable_of_another(text: str | None, state: rl.RolloutState) -> str | None:
    """The version the stable subset must select under the record `text` when it is another rollout's
    (other versions, or another start) that started or ended since: its stable version (its new one once
    promoted); None for anything else (this rollout's record, none, unreadable, one half-way through its
    promotion). A
    repair of an ended rollback (the sweep, `canary rollback`) that pointed the stable subset back at v1
    while a new rollout claimed the route with v1 stable undid itself: the new rollout ran with the
    rolled-back version behind its stable subset."""
    try:
        rec = parse_record(text)
    except TargetError:
        return None
    # another rollout: other versions, or the same ones claimed again since (its own start): a promote of v2
    # re-run once the repair of v2's rollback pointed the subset back at v1 wants v1 there as much
    if rec is None or (rec.stable_version, rec.canary_version, rec.started_at) == (
            state.stable_version, state.canary_version, state.started_at):
        return None
    if rec.phase == rl.PROMOTED:
        return rec.canary_version
    return None if rec.phase == rl.PROMOTING else rec.stable_version


def _phase(text: str | None) -> str:
    """The phase of the record `text`, for a message ("no rollout", "an unreadable record")."""
    try:
        rec = parse_record(text)
    except TargetError:
        return "an unreadable record"
    return rec.phase if rec is not None else "no rollout"


def failure_cause(exc: BaseException, target: Target | None = None) -> str:
    """The class of the end a failure mid-rollout makes (`failed: <error>`, promote's fail-safe, the controller's
    `_failed`): the one the error carries (`CanaryError.end_cause`: a route re-shaped outside the rollout is a
    foreign edit), ROUTE_DELETED for the 404 of `target`'s own VirtualService (`vs_gone`) or DestinationRule, else
    "infrastructure" (a process's or an API call's failure, not the canary's). Decisions 607, 666, 681."""
    if target is not None and isinstance(exc, NotFound) and (
            vs_gone(exc, target) or _names(exc, target, target.dr_name, "destinationrules")):
        return ROUTE_DELETED
    cause = getattr(exc, "end_cause", "")
    return cause if isinstance(cause, str) and cause in rl.ROLLBACK_REASONS else "infrastructure"


# how long `to_stable` keeps trying to send stable 100% (a throttling burst or an API server restart
# lasts seconds; three quick attempts gave up after about 6 s)
ROLLBACK_BUDGET_S = 20.0


def to_stable(router: TrafficRouter, target: Target, state: rl.RolloutState, *, reason: str, log: Any,
              now: float, attempts: int = 3, budget_s: float | None = None, expect: Any = ...,
              end: tuple[rl.RolloutState, list[rl.Action]] | None = None, retry: Retry | None = None,
              routed: Any = None, cause: str = "",
              told: Callable[[rl.RolloutState, list[rl.Action]], None] | None = None,
              start_said: bool = False, subset_kept: list[str] | None = None) -> rl.RolloutState:
    """Stable 100% after a failure, with a retry budget of its own: at least `attempts` writes, and
    more until `budget_s` (ROLLBACK_BUDGET_S) has passed, each with the router's own retries, 0.5 s
    more between them each time, at most 2 s. The rollout is recorded ``aborted`` (exit 3).
    Unguarded by default, like `canary rollback`: stable 100% wins over anything recorded meanwhile.
    With `expect` (the record text the caller's ownership check read, perhaps from a cache) the write
    is guarded on it, and a RoutingConflict is raised at once, not retried: another writer recorded a
    decision since, and the caller must read the route again before acting on a rollout it may no
    longer own. `end`: the (state, actions) of an end already decided at stable 100% (a failing canary's
    rollback, or a promotion whose every step passed: `rl.finish_promotion`) whose first write failed:
    written as decided, its phase and reason kept, instead of an abort for `reason`; the events it
    logged before that write are not logged again. Raises the last
    error, after logging ``rollback.failed``, when every attempt failed; with `retry` (the caller writes
    stable 100% again later: the controller's next tick) that last failure, a refusal's included, is said
    as `Retry.line` says (`rollback.retrying` until the caller's bound is spent). `routed`: the route as read
    with `state` (a RouteStatus), when the caller read it: the end's lines say its split (`as_routed`). `cause`: the
    abort's class (`rl.Rollback.cause`; "": `reason`'s words). `told(end, its actions)`: called as the end's
    stable-100% write lands (`execute`'s `written`), before the subset pointing, lines and Event after it, which
    may still fail (a DestinationRule deleted: RollbackFailed, the end recorded): the caller posts it then, as
    for an end its own `execute` wrote (decisions 723, 725). `start_said`: its start line (`rollback.started` /
    `rollout.aborting`) was said by the caller's earlier call whose write failed: not said again (decision 753).
    `subset_kept`: `execute`'s (a caller that tries the canary subset's re-pointing again; decision 1050)."""
    if end is not None and end[0].phase in (rl.ROLLED_BACK, rl.ABORTED, rl.PROMOTED) and not state.terminal:
        new, decided = end
        first = next((i for i, a in enumerate(decided) if not isinstance(a, rl.Emit)), len(decided))
        actions = decided[first:]
        reason = new.reason
    else:
        new, actions = rl.transition(state, rl.Rollback(now, reason, aborted=True, cause=cause), None)  # type: ignore[arg-type]
    if new is state:  # terminal already: nothing to do
        return state
    if routed is not None:
        actions = as_routed(actions, state, routed)
    log = log.bind(**rollout_context(target, new))
    # a promotion being finished is no rollback: its lines say so (`execute` names the last attempt's
    # failure the same way), and the caller reports giving up (`promotion.unfinished`): nothing is split
    finishing = new.phase == rl.PROMOTED
    what = "promotion" if finishing else "rollback"
    deadline = time.monotonic() + (ROLLBACK_BUDGET_S if budget_s is None else budget_s)
    # its waits between attempts end with a signal's grace (`kube.bound_by`), as the router's own retries do: a
    # 2 s backoff, or a 5 s Retry-After, slept past it held promote past the CI's SIGKILL, traffic unsaid
    pause = _grace_sleep(router)
    # what every `.retrying` line of these attempts says of the end it writes, as its first (`attempt` 0) and its page
    # do: a line of `attempt` and `error` alone needed the one before it (decision 677)
    end_said = {"reason": reason} if finishing else {
        "reason": reason, "end_cause": rl.cause_of(new), "target_weights": str(STABLE_ONLY), **split_ended(actions)}
    unanswered = ""  # an earlier attempt's error that had no answer: it may have landed (`landed_after`)

    def retried(exc: BaseException) -> dict[str, Any]:
        return {"write_landed": landed_after(exc, unanswered), **end_said}
    attempt = 0
    while True:
        if attempt or start_said:  # its start (`rollback.started` / `rollout.aborting`) was said at the first attempt: each one
            # after it says `.retrying` alone, not the start again (one end read as three; decision 737)
            actions = without_start(actions)
        attempt += 1
        wait = min(0.5 * attempt, 2.0)
        last = attempt >= attempts and time.monotonic() + wait >= deadline
        try:
            return execute(router, target, new, actions, log=log, report_failure=last, expect=expect, retry=retry,
                           written=(lambda text: told(new, actions)) if told is not None else None,
                           subset_kept=subset_kept)
        except NotLeader:  # refused by the fence, nothing sent: the new leader ends it; no retry, nobody paged
            raise
        except ConflictStorm as exc:  # every try met 409: nobody's decision, and it may pass, as a TransientError
            if last:
                raise
            log.warning(f"{what}.retrying", attempt=attempt, error=str(exc), **retried(exc))
            pause(min(wait, max(0.0, deadline - time.monotonic())))
        except RoutingConflict as exc:
            if expect is not ...:  # guarded: another writer's decision; the caller reads the route again
                if not last:  # (the last attempt's is logged by `execute`)
                    log.warning(f"{what}.write_conflict", error=str(exc), reason=reason)
                raise
            if last:
                raise
            log.warning(f"{what}.retrying", attempt=attempt, error=str(exc), **retried(exc))
            pause(min(wait, max(0.0, deadline - time.monotonic())))
        except TransientError as exc:  # may pass: the budget
            if last:
                raise
            log.warning(f"{what}.retrying", attempt=attempt, error=str(exc), **retried(exc))
            if not finishing:  # it may have landed: a later attempt's refusal must not say `write_landed: no`
                retry = after_unanswered(retry, str(exc))
                unanswered = unanswered or str(exc)
            # the server's Retry-After (a 429 of API Priority and Fairness) when it asked for longer: the budget
            # is kept by time, so waiting what it asks costs no attempt (decision 392)
            pause(min(max(wait, asked_wait(exc)), max(0.0, deadline - time.monotonic())))
        except CanaryError as exc:  # will not pass by waiting (a route no rollout can drive)
            if not last and finishing:
                log.warning("promotion.write_failed", error=str(exc), reason=reason, write_landed=write_landed(exc))
            elif not last and getattr(exc, "rollout_state", None) is not None:  # the weights landed, a subset not
                (retry or Retry(page=True)).line(log, {
                    "error": str(exc), "weights": str(STABLE_ONLY), "reason": reason,
                    "end_cause": rl.cause_of(new), "write_landed": write_landed(exc),
                    "note": getattr(exc, "subset_note", ""), "hint": getattr(exc, "subset_note", ""),
                    **getattr(exc, "next_step", {})}, own=("note",))
            elif not last:
                (retry or Retry(page=True)).line(log, {
                    "error": str(exc), "target_weights": str(STABLE_ONLY), "reason": reason,
                    "end_cause": rl.cause_of(new), "write_landed": write_landed(exc),
                    "hint": "traffic may still be split: act by hand"})
            raise


def _grace_sleep(router: Any) -> Callable[[float], None]:
    """`time.sleep`, ended with the grace a signal left `router`'s Kubernetes client (`kube.retry_sleep`; a
    FencedRouter's inner router's; none known: `time.sleep` itself)."""
    from canary import kube

    inner = getattr(router, "inner", router)
    return kube.retry_sleep(getattr(getattr(inner, "custom", None), "api_client", None), time.sleep)


def asked_wait(exc: BaseException) -> float:
    """The seconds the Kubernetes API asked to wait (`Retry-After`, at most `kube.MAX_RETRY_AFTER_S`) in the answer
    behind `exc` (the client's error a TransientError was raised from); 0 when it asked nothing."""
    from canary import kube

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        asked = kube.retry_after_s(cause)
        if asked is not None:
            return min(asked, kube.MAX_RETRY_AFTER_S)
        cause = cause.__cause__ or cause.__context__
    return 0.0


def after_unanswered(retry: Retry | None, error: str) -> Retry:
    """`retry` (None: a failure is the page at once) once an earlier stable-100% write of the same rollback had
    no answer (`error`): its lines say `write_landed: unknown`, even when a later attempt is refused or not
    sent, since the unanswered one may have been applied. The caller's own fields win."""
    base = retry or Retry(page=True)
    return replace(base, fields={"write_landed": landed_after(None, error), **base.fields})


def landed_after(exc: BaseException | None, unanswered: str) -> str:
    """`write_landed(exc)`, or, when an earlier stable-100% write of the same end had no answer (`unanswered`,
    its error; "" when none) and `exc` (None: not known) does not already say `unknown`, that the earlier
    one may have been applied."""
    own = write_landed(exc) if exc is not None else ""
    if not unanswered or (exc is not None and may_have_landed(exc)):
        return own
    return (f"unknown: an earlier stable-100% write had no answer ({unanswered[:200]}) and may have been applied; "
            "the next read of the route tells")


def may_have_landed(exc: BaseException) -> bool:
    """Whether a failed write may be in place all the same (`write_landed`'s "unknown"): a TransientError (a
    timeout, a 5xx, a dropped connection), or a write sent and then abandoned unanswered when `promote
    --interrupt-grace` ran out (GraceSpent with `sent`)."""
    return isinstance(exc, TransientError) or bool(getattr(exc, "sent", False))


def write_landed(exc: BaseException) -> str:
    """The `write_landed` field of a ``rollback.failed`` line: whether the failed write may be in place.

    A TransientError (a timeout, a 5xx, a dropped connection) may come after the API server applied
    the write, so the route may already read stable 100%; so may a write sent and then abandoned unanswered
    when `promote --interrupt-grace` ran out (GraceSpent with `sent`); any other error is a refusal."""
    words = getattr(exc, "landed_words", "")
    if words:  # a stable-100% end's writes, each named (`subset_failed_words`, `_weights_failed`)
        return str(words)
    if may_have_landed(exc):
        return ("unknown: no answer came back, the write may have been applied; the next read of the route "
                "tells (the controller then logs rollout.end_confirmed)")
    if isinstance(exc, GraceSpent):  # not sent, or a read cut: nothing of this attempt reached the route
        return "no: not sent, the grace after the signal is spent"
    return "no: the write was refused"


def camel(event: str) -> str:
    return "".join(p.capitalize() for p in event.replace("_", ".").split("."))


def _weights_failed(exc: BaseException, target: Target, actions: list[rl.Action]) -> None:
    """Name the write a rollback's failure was (decision 164): the weights write (stable 100%) failed, so the
    stable subset's pointing after it was never tried. `write_landed` then says so; its first word (no,
    unknown) is `write_landed`'s own."""
    if getattr(exc, "landed_words", ""):
        return
    after = any(isinstance(a, rl.PointSubset) for a in actions)
    exc.landed_words = (f"{write_landed(exc)} (the weights write: stable 100% on VirtualService "  # type: ignore[attr-defined]
                        f"{target.namespace}/{target.virtual_service}"
                        + ("; the stable subset write after it was not tried)" if after else ")"))


def subset_failed_words(exc: BaseException, target: Target, action: rl.PointSubset) -> str:
    """`write_landed` of a rollback whose weights write landed (stable 100% on the VirtualService, the end
    recorded) and whose subset pointing then failed (decision 164): `partly`, which write landed and which did
    not, naming the DestinationRule and why (not found, refused, no answer). It said `no: the write was
    refused`, and on-call read that stable 100% had not landed."""
    vs, dr = f"{target.namespace}/{target.virtual_service}", f"{target.namespace}/{target.dr_name}"
    if may_have_landed(exc):
        how = f"had no answer ({str(exc)[:200]}): whether it points at {action.version} is not known"
    else:
        why = "not found" if isinstance(exc, NotFound) else f"refused it ({str(exc)[:200]})"
        how = f"did not land: DestinationRule {dr} {why}"
    return (f"partly: the weights write landed (stable 100% on VirtualService {vs}, the end recorded); the "
            f"{action.subset} subset write (pointing it at {action.version}) {how}")


def subset_note(exc: BaseException, target: Target, action: rl.PointSubset) -> str:
    """What a rollback's line says once its weights landed and its subset pointing did not: no split is left,
    nothing writes stable 100% again (the end is recorded), and what to mend by hand."""
    dr = f"{target.namespace}/{target.dr_name}"
    mend = (f"every request fails (503, NR: the subset no longer resolves) until DestinationRule {dr} is restored: "
            f"restore DestinationRule {dr} with its {action.subset} subset selecting {action.version}"
            if isinstance(exc, NotFound) else
            f"every request fails (503, NR: no DestinationRule of the route's host defines the subset) until "
            f"DestinationRule {dr}'s spec.host names the route's service again: mend it (`kubectl edit destinationrule "
            f"{target.dr_name} -n {target.namespace}`), its {action.subset} subset selecting {action.version}"
            if isinstance(exc, RuleElsewhere) else
            f"check that DestinationRule {dr}'s {action.subset} subset selects {action.version}")
    return (f"stable has 100% of the weights and the end is recorded: no split is left, and stable 100% is not "
            f"written again; the {action.subset} subset was not pointed at {action.version}: {mend}")


def gone_words(target: Target, action: rl.PointSubset) -> str:
    """The end of a rollback's error message (what `canary rollback` and `canary promote` print on stderr, exit
    3) when its weights landed and its DestinationRule is gone: what the page `rollout.destination_rule_deleted`
    says, in words (every request fails until it is restored, and how to restore it). Decision 325."""
    dr = f"{target.namespace}/{target.dr_name}"
    return (f"; DestinationRule {dr} is gone (deleted mid-rollout): every request to VirtualService "
            f"{target.namespace}/{target.virtual_service} fails (503, NR) until it is restored: re-apply "
            f"DestinationRule {dr} from your manifests now, with its {action.subset} subset selecting version "
            f"{action.version}; canary writes nothing more to this route (the end is recorded)")


def _rule_gone(exc: BaseException, target: Target, state: rl.RolloutState) -> bool:
    """Whether `exc` is the 404 of the DestinationRule the rollout's record names (the one it drove: deleted), not the
    route's. A record naming none (an older canary's) reads the default name, which may not be the route's real rule
    (decision 685's refusal): not this."""
    return isinstance(exc, NotFound) and bool(state.destination_rule) and state.destination_rule == target.dr_name \
        and exc.what == f"{target.namespace}/{target.dr_name} (destinationrules)"


def destination_rule_deleted(log: Any, target: Target, action: rl.PointSubset, *, error: str) -> None:
    """`rollout.destination_rule_deleted` (error, the page): a rollback's weights landed (stable 100% on the
    VirtualService, the end recorded) and its DestinationRule is gone. The route now sends every request to a
    subset no DestinationRule defines, which Istio cannot resolve: every request fails (503, response flag NR)
    until the DestinationRule is restored. Nothing canary does mends it (the end is recorded; stable 100% is
    what a rollback writes), so a person must, now: decision 168 (164 left it a warning)."""
    vs, dr = f"{target.namespace}/{target.virtual_service}", f"{target.namespace}/{target.dr_name}"
    log.error("rollout.destination_rule_deleted", destination_rule=dr, subset=action.subset, version=action.version,
              traffic="failing", error=error[:300],
              impact=f"DestinationRule {dr} is gone: VirtualService {vs} sends 100% to its {action.subset} subset, "
                     "which Istio can no longer resolve, so every request to it fails (503, NR) until the "
                     "DestinationRule is restored",
              hint=f"restore DestinationRule {dr} now (re-apply it from your manifests) with its {action.subset} "
                   f"subset selecting version {action.version}; traffic recovers as soon as Istio has it, and "
                   "canary writes nothing more to this route (the rollout is ended, stable 100% recorded)")


def _elsewhere_hint(target: Target) -> str:
    """`rollback.failed`'s (and `rollback.retrying`'s) hint when the DestinationRule names another service
    (`RuleElsewhere`): mend its host, then `canary rollback` again; never "point the stable subset", which would
    write a rule that now describes another model's pods (decisions 644, 649, 654)."""
    return (f"mend DestinationRule {target.namespace}/{target.dr_name} (`kubectl edit destinationrule "
            f"{target.dr_name} -n {target.namespace}`: spec.host the route's service), then run `canary "
            "rollback` again: it points the subset")


def destination_rule_elsewhere(log: Any, target: Target, action: rl.PointSubset, *, error: str) -> None:
    """`rollout.destination_rule_elsewhere` (error, the page): a rollback's weights landed (stable 100% on the
    rollout's own route, the end recorded) and its DestinationRule names another service (re-hosted mid-rollout,
    decision 644), so it is not pointed. The route's subsets then resolve under no rule of its host, as with the
    rule deleted (`destination_rule_deleted`): every request to them fails (503, NR) until a person mends the
    rule. 644 said it only in a warning (`rollback.retrying`, whose note said to check the subset's version), and
    the controller tries it once. Decision 649."""
    vs, dr = f"{target.namespace}/{target.virtual_service}", f"{target.namespace}/{target.dr_name}"
    log.error("rollout.destination_rule_elsewhere", destination_rule=dr, subset=action.subset,
              version=action.version, traffic="failing", error=error[:600],
              impact=f"DestinationRule {dr} names another service than VirtualService {vs}'s route: the route sends "
                     f"100% to its {action.subset} subset, which no DestinationRule of its host defines, so every "
                     "request to it fails (503, NR) until the rule is mended",
              hint=f"mend DestinationRule {dr} now (`kubectl edit destinationrule {target.dr_name} -n "
                   f"{target.namespace}`: spec.host the route's service, its {action.subset} subset selecting version "
                   f"{action.version}); canary writes nothing more to this route (the rollout is ended, stable 100% "
                   "recorded)")


def confirmed_detail(landed: str) -> str:
    """`rollout.end_confirmed`'s `detail`: the end's record is read on the route, and what its failed write was
    (`landed`: that failure's `write_landed`; "" when not known). A subset pointing that failed after its
    weights landed was said "failed with no answer" (decision 164)."""
    if landed.startswith("partly"):
        return ("the weights write that ended it landed at the last tick and its subset write did not (write_landed "
                "says which and why); the route records the end: stable has 100% of the weights")
    if landed and not landed.startswith("unknown"):
        return (f"its write was said to fail at the last tick ({landed}), and the route records that end: it had "
                "landed; traffic is as recorded")
    return "the write that ended it failed with no answer and had landed; traffic is as recorded"

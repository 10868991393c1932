"""A split no process owns: an ended or unreadable record over weights that still split two versions.

Every end canary writes (promoted, rolled back, aborted) goes to the route in one write with stable
100% (`rl.finish_promotion`, `rl._end`), so an ended record over split weights was made by hand: the
record typed into `promoted` (or another end) after its `canary promote` was killed, or the weights
edited after an end. Garbage in the annotation over split weights is the same: no owner reads it as
its own. Nothing judges or moves such a split: promote resumes records in progress only, the sweep times
only rollouts in progress, and a rollback re-run reads an end as "already ended". A record that claims
an outcome the weights contradict ends at stable 100% (whatever the stable subset selects now; when in
doubt, stable gets 100%), recorded `aborted`, guarded on the record as read, with one
``rollout.split_unowned`` line naming the VirtualService, the record's claim and what was done
(docs/decisions.md 157). `canary promote`, `canary rollback` and the sweeps (the controller's and `canary
sweep`) end it; `canary status`, `pause` and `resume` name it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Callable

from canary import rollout as rl
from canary.model import STABLE_ONLY, Target
from canary.routing.base import RouteStatus

EVENT = "rollout.split_unowned"


def claim(state: rl.RolloutState | None, unreadable: str = "") -> str:
    """What the record claims, in words: "promoted (v2 serving)", "rolled_back (v1 serving)", or the
    unreadable record's error."""
    if state is None:
        return f"an unreadable record ({unreadable})" if unreadable else "no record"
    serving = state.canary_version if state.phase == rl.PROMOTED else state.stable_version
    return f"{state.phase} ({serving} serving)" if state.terminal else f"{state.phase} at {state.weights}"


def newer(text: str | None) -> str:
    """Why the record `text`, which this canary cannot read, may be a live rollout's all the same ("" when it is
    not): a JSON object whose `phase` is one this version does not know, as a newer canary records a phase added
    since (a controller upgraded first, a CI image ahead of the on-call's). Its owner may be writing it once a
    look; nothing here can tell, so nobody here ends it (`why` says ""; the sweep reports it as not checked). So is a
    record in a record schema above this canary's (`rl.NewerRecord`, decision 169), whatever its phase or shape."""
    try:
        d = json.loads(text or "")
    except (ValueError, RecursionError):
        return ""
    try:
        schema = rl.record_schema(d) if isinstance(d, dict) else 1
    except ValueError:
        return ""  # no canary writes that schema: garbage
    if schema > rl.SCHEMA:  # a newer record schema than this canary's (decision 169)
        return f"the record was {rl.NewerRecord(schema, d.get('writer'))}"
    phase = d.get("phase") if isinstance(d, dict) else None
    if not isinstance(phase, str) or not phase or phase in rl.PHASES:
        return ""
    owner = d.get("owner") if isinstance(d.get("owner"), str) and d.get("owner") else "no owner recorded"
    return (f"the record names phase {phase[:40]!r}, which this canary does not know (written by a newer canary? "
            f"owner: {owner[:200]}): left to a canary that reads it; `canary rollback` ends it")


def split(status: RouteStatus) -> bool:
    """Whether the route sends traffic to two versions: the canary subset has weight and selects another
    version than the stable subset (or one that cannot be told)."""
    same = bool(status.canary_subset_version) and status.canary_subset_version == status.stable_subset_version
    return status.weights.canary > 0 and not same


def why(state: rl.RolloutState | None, status: RouteStatus, *, unreadable: str = "") -> str:
    """Why the split on the route `status` was read from is nobody's ("" when it is not so): its record
    `state` is an end (None with `unreadable`: a record that does not parse), and the route splits
    traffic between two versions all the same. A record in a phase this canary does not know (`newer`) is not
    garbage: it may be a newer canary's live rollout, never ended here (decision 167). Pure."""
    if not split(status) or not (unreadable if state is None else state.terminal):
        return ""
    if state is None and newer(status.state):
        return ""
    how = ("the weights moved by hand after that end, which canary wrote at stable 100% (a person's own split?)"
           if by_hand_since(state) else "the record or the weights edited by hand after its process was gone?")
    return (f"the record says {claim(state, unreadable)}, but the route splits {status.weights} between "
            f"{status.stable_subset_version or '(no version)'} and {status.canary_subset_version or '(no version)'}: "
            f"no process drives this split ({how})")


def who_ends(state: rl.RolloutState | None, after_s: float) -> str:
    """What ends the split `why` names unasked, in words for a note."""
    if by_hand_since(state):
        return "(nothing of canary's ends a split made by hand after a real end unasked: it may be someone's)"
    return f"(the controller's sweep, or `canary sweep`, does once it has seen it unchanged {after_s:.0f}s)"


def by_hand_since(state: rl.RolloutState | None) -> bool:
    """Whether the end `state` is one canary wrote, so a split under it was made by a person after it: every end
    canary records carries stable 100% in its own `weights` (`rl._end`, `rl.finish_promotion`); an end typed over a
    rollout keeps the weights of the step it was typed at. A person's own split after a real end (an A/B test,
    a hand canary) is theirs, not a dead process's: named (`why`), never ended by the sweeps, the next promote
    or the controller (`to_end`); `canary rollback` ends it when asked (decision 167)."""
    return state is not None and state.terminal and state.weights == STABLE_ONLY


def to_end(state: rl.RolloutState | None, status: RouteStatus, *, unreadable: str = "") -> str:
    """`why`, for the writers that end such a split unasked (the sweeps, the next promote, the controller's
    tick): "" as well for a split a person made after a real end (`by_hand_since`). Pure."""
    return "" if by_hand_since(state) else why(state, status, unreadable=unreadable)


def ending(state: rl.RolloutState | None, status: RouteStatus, *, model: str, now: float,
           reason: str) -> tuple[rl.RolloutState, list[rl.Action]]:
    """The end of such a split: stable 100%, recorded `aborted` for `reason` (a foreign edit: the record typed
    outside the rollout), the rollout taken as the route
    has it (the versions its subsets select now; the record's owner, start and route kept when it parses, so a
    CanaryRollout reads the end as its rollout's). Its `rollout.aborting` line is left out: the caller says it
    once the write landed (`EVENT`). Pure."""
    if state is not None:
        base = replace(state, phase=rl.PROGRESSING, weights=status.weights,
                       stable_version=status.stable_subset_version or state.stable_version,
                       canary_version=status.canary_subset_version or state.canary_version)
    else:
        base = rl.RolloutState(model=model, stable_version=status.stable_subset_version,
                               canary_version=status.canary_subset_version, phase=rl.PROGRESSING,
                               weights=status.weights, started_at=now, updated_at=now)
    new, actions = rl.transition(base, rl.Rollback(now, reason, aborted=True, cause="foreign_edit"),
                                 None)  # type: ignore[arg-type]
    return new, [a for a in actions if not (isinstance(a, rl.Emit) and a.event == "rollout.aborting")]


def said(state: rl.RolloutState | None, status: RouteStatus, *, reason: str, by: str, done: str,
         unreadable: str = "") -> rl.Emit:
    """The one `rollout.split_unowned` line, as an action logged after the write that ends the split."""
    return rl.Emit(EVENT, {"recorded": claim(state, unreadable), "from_weights": str(status.weights),
                           "stable_subset": status.stable_subset_version, "canary_subset": status.canary_subset_version,
                           "done": done, "by": by, "reason": reason,
                           "hint": "the annotation modelcanary.dev/rollout is written by canary alone: never edit it "
                                   "by hand; a split is moved by a rollout, never by hand beside an ended record"},
                   warning=True)


def decided(state: rl.RolloutState | None, status: RouteStatus, *, model: str, now: float, by: str,
            unreadable: str = "") -> tuple[rl.RolloutState, list[rl.Action]]:
    """The end of the split nobody owns under `status` (`why` must have said so) and its actions, as every writer
    of it carries them out: `ending`'s stable 100% recorded aborted, then its `rollout.split_unowned` line. Pure."""
    reason = to_end(state, status, unreadable=unreadable)
    new, actions = ending(state, status, model=model, now=now, reason=f"{reason}; stable 100%")
    actions.append(said(state, status, reason=reason, by=by, done="stable 100%, recorded aborted",
                        unreadable=unreadable))
    return new, actions


def end(router: Any, target: Target, state: rl.RolloutState | None, status: RouteStatus, *, log: Any, now: float,
        by: str, unreadable: str = "", written: Callable[[rl.RolloutState], None] | None = None,
        history: Any = None) -> rl.RolloutState:
    """Write the end of the split nobody owns on `target` (`decided`), guarded on the record as
    read (`status.state`); logs `rollout.split_unowned` once it landed, with the rollout's own
    `rollout.aborted`. `written(end)`: called once as its stable-100% write lands, before the end's lines and
    Event (where its post goes: decision 723's order). `history` (a `history_store.ConfigMapStore`, None: none): the
    end is added to the ended rollout's history once it landed (`history_store.record_end`; decision 811). Where
    the write landed and a step after it failed (the stable subset's pointing: RollbackFailed), the end is on the
    route all the same: its `rollout.split_unowned` line (`done` says the subset was not pointed) and its history
    are still written, then the error raised (decision 812). Raises what `reconcile.execute` raises
    (RoutingConflict: written meanwhile, nothing done)."""
    from canary.errors import CanaryError
    from canary.history_store import emitted, record_end
    from canary.reconcile import execute, rollout_context

    new, actions = decided(state, status, model=target.model, now=now, by=by, unreadable=unreadable)
    told: list[str] = []

    def landed(text: str) -> None:
        if not told:
            told.append(text)
            if written is not None:
                written(new)

    def recorded() -> None:
        record_end(history, new, namespace=target.namespace, virtual_service=target.virtual_service,
                   events=emitted(actions), by=by, log=log, unreadable=unreadable)
    try:
        out = execute(router, target, new, actions, log=log, expect=status.state, written=landed)
    except CanaryError as exc:
        if told:  # stable 100% recorded aborted landed: the end is on the route, whatever failed after it
            line = actions[-1]
            assert isinstance(line, rl.Emit) and line.event == EVENT
            log.bind(**rollout_context(target, new)).warning(
                EVENT, **{**line.fields, "done": f"{line.fields['done']}; then the stable subset could not be "
                                                  f"pointed at {new.stable_version} (see the error)",
                          "error": str(exc)[:300]})
            recorded()
        raise
    recorded()
    return out

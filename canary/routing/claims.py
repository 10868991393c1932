"""What a new rollout may claim, beyond the route's own shape (`patch.locate_route`): pure checks of a
VirtualService and DestinationRule as users write them, each returning why not ("" when it may).

Read by the strict `IstioRouter.inspect` into `RouteStatus` and refused by `reconcile.check_claim`
(promote and the controller alike) before anything is written: a promotion that would point the
stable subset at pods nobody judged (`subset_labels_differ`, also a subset drift mid-rollout), and a
split with the canary subset on another route that the claim would hand the new version unjudged
(`split_elsewhere`). docs/decisions.md 114.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from canary.errors import TargetError
from canary.routing.patch import (CANARY, STABLE, VERSION_LABEL, RouteRef, _find_subset, _namespace_of, fqdn,
                                  read_state, where)
from canary.routing.splits import Split, other_routes


def split_elsewhere(vs: Any, ref: RouteRef) -> str:
    """Why a new rollout must not claim `vs` ("" when it may): another route (HTTP other than the driven
    one `ref`, TCP, TLS) splits its traffic between the `canary` subset of the rollout's service and other
    destinations, a split this rollout did not make (a manual canary left on the gRPC route). The claim
    points the canary subset at the new version, so that share would reach it unjudged from the first
    write, and stay on it after a rollback (stable 100% is written on the driven route). A route sending
    to the canary alone (testers on a header match) is a deliberate route to it, and is left to the user."""
    split = _split_found(vs, fqdn(ref.host, _namespace_of(vs)), driven={ref.index})
    return (f"{_said(vs, split)} with subset 'canary' of {ref.host}, a split this rollout did not make: once the "
            f"canary subset selects the new version that share reaches it unjudged, and stays after a rollback; set "
            f"that route's canary weight to 0 first") if split is not None else ""


def _split_found(vs: Any, host: str, *, driven: set[int]) -> Split | None:
    """The first route of `vs` but the `driven` HTTP ones that splits with the canary subset of `host` (a full
    name); None when none does."""
    return next((s for s in other_routes(vs, host, driven=driven) if s.share and s.rest), None)


def _said(vs: Any, split: Split) -> str:
    """"<vs>: <field> (<name>) splits its traffic <rest>/<share>"."""
    return f"{where(vs)}: {_label(split)} splits its traffic {split.rest}/{split.share}"


def _label(split: Split) -> str:
    """"<field> (<name>)" of the split's route, "<field>" where it has no name."""
    name = split.route.get("name")
    return split.field + (f" ({name})" if isinstance(name, str) and name else "")


def record_on(vs: Any) -> Any:
    """The rollout recorded on `vs` (a `RolloutState`), None when there is none or it is unreadable."""
    from canary import rollout as rl

    text = read_state(vs)
    if not text:
        return None
    try:
        return rl.RolloutState.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None


def _state_on(vs: Any, split: Split) -> Any:
    """The rollout in progress recorded on `vs` (a `RolloutState`) when it drives the HTTP route of `split` (it made
    that split); None otherwise (none recorded, ended, unreadable, another route's)."""
    state = record_on(vs)
    http = vs["spec"].get("http") if split.kind == "http" else None
    if state is None or state.terminal or not isinstance(http, list):
        return None
    name = split.route.get("name")
    drives = state.route == name if state.route else len(http) == 1
    return state if drives else None


def _made_by(vs: Any, state: Any) -> str:
    """"the rollout of <version> (<phase>) recorded on <vs>": the rollout in progress there that made a split
    (`_state_on`)."""
    return f"the rollout of {state.canary_version} ({state.phase}) recorded on {where(vs)}"


def split_in_other(vs: Any, host: str, *, dr: str, driven: str) -> tuple[str, Any]:
    """`split_elsewhere` for another VirtualService `vs` of the namespace (one bound to the ingress gateway beside
    the mesh's, say): why a new rollout of `host` (the rollout's service, in full) driven on VirtualService `driven`
    must not claim while one of `vs`'s routes splits with the canary subset ("" when none does). The subsets are
    DestinationRule `dr`'s, shared by every VirtualService that routes to the service (decision 578). And the
    rollout in progress recorded on `vs` that made that split (a `RolloutState`), None where none did: the claim is
    then busy (RolloutBusy, exit 75: `--wait-busy` and a pipeline's retry wait for that rollout, and a `promote
    --via-controller` follower waits), not bad input to mend by hand (decision 594); its owner and phase tell
    whether anything will end it (decision 596). The split is found, and the record parsed, once."""
    split = _split_found(vs, host, driven=set())
    if split is None:
        return "", None
    running = _state_on(vs, split)
    # a rollout recorded there made that split: zeroing its weight by hand would tamper with it (decision 585)
    then = (f"that split is {_made_by(vs, running)}, and two rollouts cannot share one canary subset; wait for that "
            "rollout to end (or roll it back), then run this one again") if running is not None else \
        "set that route's canary weight to 0 first"
    return (f"{_said(vs, split)} with subset 'canary' of {host}, a split this rollout did not make: the subsets are "
            f"DestinationRule {dr}'s, shared by every VirtualService that routes to them, so once the canary subset "
            f"selects the new version that share reaches it unjudged, and stays after a rollback (stable 100% is "
            f"written on {driven} only); {then}"), running


@dataclass(frozen=True)
class OtherSplit:
    """A split with the canary subset found on another VirtualService of the namespace once the rollout has claimed
    (decision 602): what the rollback's line names, and the way out."""

    virtual_service: str  # "namespace/name"
    route: str  # "spec.http[0] (edge)"
    weights: str  # "<rest>/<share>", as Istio splits it
    words: str  # "<vs>: <route> splits its traffic 90/10"
    hint: str  # the `kubectl` that gives that route's canary share to its stable destination (or another, 641)
    # "the rollout of v3 (progressing) recorded on ns/name" where a rollout in progress there made that split: the
    # canary subset is its too, never re-pointed by a rollback of ours (decision 690); "" where none did
    running: str = ""

    @property
    def reason(self) -> str:
        """The rollback's reason (`rollout.classify_reason`: foreign_edit)."""
        return (f"foreign split: {self.words} with subset 'canary', a split this rollout did not make: the "
                "canary got traffic nobody judges")


def split_on_other(vs: Any, host: str) -> OtherSplit | None:
    """The split with the canary subset of `host` (a full name) on another VirtualService `vs` (`split_in_other`'s
    rule: a route at 100/0 or to the canary alone is none); None where none is."""
    split = _split_found(vs, host, driven=set())
    if split is None:
        return None
    meta = vs.get("metadata") or {}
    base = f"/spec/{split.kind}/{split.index}/route"
    ops = [{"op": "add", "path": f"{base}/{j}/weight", "value": 0} for j, _ in split.canary]
    # its share to the stable destination, as a rollback's `drop_canary_splits` does on its own VS; with none, to the
    # first other destination with weight: the route sums to 100 again (Istio before 1.15 refuses another total;
    # decision 641)
    canary = {j for j, _ in split.canary}
    weight = {j: (w if type(w) is int and w > 0 else 0)
              for j, w in ((j, d.get("weight") if isinstance(d, dict) else None) for j, d in enumerate(split.dests))}
    to = split.stable[0] if split.stable else next(j for j in weight if j not in canary and weight[j])
    ops.append({"op": "add", "path": f"{base}/{to}/weight", "value": weight[to] + split.share})
    hint = (f"kubectl -n {meta.get('namespace', '?')} patch virtualservice {meta.get('name', '?')} --type=json -p "
            f"'{json.dumps(ops, separators=(',', ':'))}'")
    state = _state_on(vs, split)
    running = _made_by(vs, state) if state is not None else ""
    if running:  # zeroing its weight by hand would tamper with that rollout (decision 585)
        hint = f"that split is {running}: wait for it to end, or roll it back, never zero its weight by hand"
    return OtherSplit(virtual_service=where(vs), route=_label(split), weights=f"{split.rest}/{split.share}",
                      words=_said(vs, split), hint=hint, running=running)


def subset_labels_differ(dr: Any) -> str:
    """Why the `stable` and `canary` subsets cannot carry a rollout to its end: the stable subset selects a
    label besides `version` that the canary subset does not select alike ("" when not, or when the rule
    cannot be read: `subset_versions` reports that). A promotion points the stable subset at the canary's
    version and keeps the stable subset's other labels, so with `track: stable` / `track: canary` it would
    select `track=stable, version=<new>`: pods the rollout never judged, or none at all (every request a
    503). A label only the canary subset has is fine: the stable subset then selects every pod judged."""
    spec = dr.get("spec") if isinstance(dr, dict) else None
    if not isinstance(spec, dict):
        return ""
    others: dict[str, dict[str, Any]] = {}
    for name in (STABLE, CANARY):
        try:
            _, subset = _find_subset(spec, name, where(dr))
        except TargetError:
            return ""
        labels = subset.get("labels")
        if labels is not None and not isinstance(labels, dict):
            return ""
        others[name] = {k: v for k, v in (labels or {}).items() if k != VERSION_LABEL}
    # safe when every other label of the stable subset is the canary's too: the stable subset pointed at the
    # new version then selects every pod judged (a label only the canary subset has narrows nothing there)
    if all(k in others[CANARY] and others[CANARY][k] == v for k, v in others[STABLE].items()):
        return ""
    return (f"{where(dr)}: spec.subsets 'stable' and 'canary' select different labels besides {VERSION_LABEL!r} "
            f"(stable: {others[STABLE]}, canary: {others[CANARY]}); a promotion points the stable subset at the "
            f"canary's version and keeps its other labels, so it would select pods the rollout never judged (or "
            f"none: every request a 503). Give both subsets the same labels but {VERSION_LABEL!r}")

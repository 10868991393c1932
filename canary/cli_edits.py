"""What `canary status` and `canary resume` say of an edit of a CanaryRollout that waits for its paused rollout's
resume (decisions 527, 537, 538).

The controller does not supersede a paused rollout for an edit of its spec (how it is judged, the route it drives,
its canary version): the edit waits for the resume, and the controller writes what waits, and what the resume
makes of it, in the CanaryRollout's `status.editWaiting`. On-call reads the route, not the CanaryRollout: `canary
status` showed the paused split with nothing waiting, and `canary resume` printed "progressing ... the controller
goes on with it" while the next tick sent stable 100% and started the rollout again from its first step. Both now
read the rollout's owner and say it. Never an error: an owner that is no CanaryRollout, one that cannot be read
(on-call's RBAC may not read CanaryRollouts), or a status with nothing waiting, says nothing.
"""

from __future__ import annotations

from typing import Any

from canary import rollout as rl

# the controller's status field (`controller.EDIT_WAITING`)
FIELD = "editWaiting"


def waiting(custom: Any, state: rl.RolloutState | None) -> dict[str, Any] | None:
    """The edit waiting for the resume of `state` (a paused rollout of a CanaryRollout), as its owner's status says
    it at the generation it has now: {"edit", "then", "canary_rollout": "ns/name"}; None when there is none, or
    it cannot be read. `custom`: a CustomObjectsApi."""
    from canary import crd
    from canary.reconcile import crd_ref

    if state is None or state.phase != rl.PAUSED or not state.owner.startswith("CanaryRollout "):
        return None
    ref, uid = crd_ref(state.owner)
    ns, _, name = ref.partition("/")
    try:
        obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, crd.PLURAL, name)
    except Exception:  # noqa: BLE001 - not read (gone, RBAC, the API server down): nothing said
        return None
    meta = obj.get("metadata") if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else {}
    status = obj.get("status") if isinstance(obj, dict) and isinstance(obj.get("status"), dict) else {}
    said = status.get(FIELD)
    if uid and meta.get("uid") != uid:
        return None  # another object of that name
    seen, now = status.get("observedGeneration"), meta.get("generation")
    if isinstance(seen, int) and isinstance(now, int) and seen < now:
        # edited since the controller last read it (it is down, restarting, behind): what waits, if anything, is its
        # next tick's to say; "goes on" would be a guess, and the edit may send stable 100% first (538's addendum)
        return {"edit": f"generation {now}, the controller last read {seen}", "then": UNREAD, "canary_rollout": ref,
                "unread": True}
    if not isinstance(said, dict) or said.get("generation") != now:
        return None  # nothing waits, or a spec edited since (the next tick says it)
    edit, then = said.get("edit"), said.get("then")
    if not isinstance(edit, str) or not isinstance(then, str) or not edit:
        return None
    return {"edit": edit, "then": then, "canary_rollout": ref}


# what the resume makes of an edit the controller has not read yet: its next tick decides, as for any edit of a
# paused rollout (decisions 527, 537)
UNREAD = ("the controller's next tick decides what the edit makes of the paused rollout: an edit of how it is judged "
          "or of what it drives sends stable 100% once it is resumed (then it starts again, or ends), one of which "
          "series are judged (spec.model, the policy's metrics) at once; any other changes nothing of it")


def status_note(edit: dict[str, Any]) -> str:
    """`canary status`'s line for a paused rollout whose CanaryRollout edit waits (`waiting`)."""
    return _unread(edit, "") or (f"an edit of CanaryRollout {edit['canary_rollout']} waits for the resume "
                                 f"({edit['edit']}): `canary resume` applies it: {edit['then']}")


def resume_note(edit: dict[str, Any]) -> str:
    """`canary resume`'s line for the rollout it resumed, whose CanaryRollout edit waited (`waiting`)."""
    return _unread(edit, "resumed; ") or (f"the controller now applies the edit of CanaryRollout "
                                          f"{edit['canary_rollout']} that waited for this resume ({edit['edit']}): "
                                          f"{edit['then']}")


def _unread(edit: dict[str, Any], opening: str) -> str:
    """The line for an edit the controller has not read yet (`waiting`'s `unread`), after `opening`; "" for any other."""
    return (f"{opening}CanaryRollout {edit['canary_rollout']} was edited since the controller last read it "
            f"({edit['edit']}): {UNREAD}") if edit.get("unread") else ""

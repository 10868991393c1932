"""Which CanaryRollouts had their `spec.action: resume` request set again between two ticks (decision 526).

A used `resume` is told from a new one by what the CR's status recorded when a tick saw it: its generation
and its `actionReason` (decisions 520, 521). An edit of another field makes a new generation with the same
request, so the same reason at a later generation is the used request, unless the action was seen cleared or
changed in between. A tick sees one version of the spec; the action cleared and then set again with the same
reason, both between two ticks, left nothing for a tick to see, and the request set again (a real one) was
taken for the used one.

The informers deliver every version the watch carries, not only those a tick reads. This keeps, per
CanaryRollout, the request of the latest version delivered, its generation, and the latest generation
delivered with another request than that one: a version delivered with another request after the recorded
generation and before the one a tick reads is the clearing no tick saw. What no watch delivered (a process
started since, a watch that expired and was followed by a LIST) is not known here: the request then counts
as used, the safe side (the rollout stays paused, `rollout.resume_used` says how to resume it).

Written by the rollouts informer's thread alone (`saw`), read by the ticks (`set_again`): each entry is one
tuple, replaced whole.
"""

from __future__ import annotations

from typing import Any

# CanaryRollout key -> (request of the latest version delivered, its generation, the latest generation
# delivered with another request than that one; 0: none)
Seen = dict[str, tuple[Any, int, int]]


def request(spec: Any) -> Any:
    """What a spec asks of the resume: ("resume", its actionReason) or None (another action, or none)."""
    if not isinstance(spec, dict) or spec.get("action") != "resume":
        return None
    return ("resume", spec.get("actionReason") or "")


def saw(seen: Seen, key: str, obj: dict[str, Any]) -> None:
    """The informers delivered version `obj` of CanaryRollout `key`."""
    meta = obj.get("metadata")
    generation = meta.get("generation") if isinstance(meta, dict) else None
    if isinstance(generation, bool) or not isinstance(generation, int):
        return
    asked, had = request(obj.get("spec")), seen.get(key)
    if had is None or generation < had[1]:  # the first version seen, or an object made again under that name
        seen[key] = (asked, generation, 0)
    elif asked != had[0]:
        seen[key] = (asked, generation, had[1])
    else:
        seen[key] = (asked, generation, had[2])


def set_again(seen: Seen, key: str, asked: Any, *, used_at: int, generation: int) -> bool:
    """Whether a version of `key` with another request than `asked` was delivered after generation `used_at`
    (where the status recorded the request used) and before `generation` (the version a tick reads, which
    asks `asked`): the request was cleared or changed, then asked again."""
    had = seen.get(key)
    if had is None:
        return False
    latest, at, other = had
    other_at = at if latest != asked else other
    return used_at < other_at < generation

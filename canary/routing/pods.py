"""Before traffic moves: does a Ready pod serve the canary version, and the stable version?

Flagger and Argo Rollouts wait for the canary's pods to be available before they shift any
weight. Without this check a rollout started right after its Deployment was applied (a CD
pipeline's next step) sent its first step's share to a subset with no Ready endpoint: 503s
("no healthy upstream") for those users, not counted as the canary's (they never reach a
pod with its version label), until the unrouted rule (canary/analysis/unrouted.py) rolled
the canary back, blaming a version that was only not up yet.

The pods a rollout's canary subset will select: the DestinationRule's `canary` subset labels
with `version` set to the canary version (what the rollout's first write points it at),
together with the selector of the Service the DestinationRule's host names, in that
Service's namespace. A pod counts when its `Ready` condition is True and it is not being
deleted. What cannot be read (no RBAC to list pods or read the Service, an API that serves no
pods: the local sandbox's emulator before it registered them) or told (a host that is no
Kubernetes Service, as a ServiceEntry's; a Service without a selector, whose endpoints are
written by hand) is "unchecked", said, and does not stop the rollout: the unrouted rule still
stands behind it. Never the subset's labels alone: `version=v2` matches any app's pods.

The stable subset's pods are counted the same way (decision 124): with none Ready (its Deployment
scaled to 0, a mistyped `version` label in the stable subset, its pods crash-looping) the canary is
compared with no traffic, and a rollback's stable 100% sends every request to no endpoint. Flagger waits
for its primary, Argo Rollouts for its stable ReplicaSet. A subset is counted by its name (`canary`,
`stable`) and the version it will select.

Pure functions here; the reads are `IstioRouter.subset_pods`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canary.routing.patch import CANARY, STABLE, VERSION_LABEL, _find_subset, fqdn, where

SUBSETS = (CANARY, STABLE)  # counted in this order: the canary's is the usual wait (its Deployment just applied)


@dataclass(frozen=True)
class PodCount:
    """The pods a subset selects: `ready` of `total`, by `selector` (`k=v,...`) in `namespace`;
    `unchecked` says why they could not be counted ("" when they were)."""

    ready: int = 0
    total: int = 0
    selector: str = ""
    namespace: str = ""
    not_ready: tuple[str, ...] = ()  # up to 5 pods that are not Ready, with why ("name (phase, reason)")
    unchecked: str = ""
    # of those not Ready, the pods whose own containers failed (`own_failure`): they crash, cannot start (their
    # image, their configuration), or run and never pass their readiness probe; the rest are not up yet (Pending:
    # unscheduled, their image still pulling) or being deleted
    failing: int = 0


def subset_labels(dr: Any, subset: str, version: str) -> dict[str, str]:
    """The labels `subset` (`canary`, `stable`) selects once pointed at `version`: its labels, `version` replaced."""
    spec = dr.get("spec") if isinstance(dr, dict) else None
    _, found = _find_subset(spec if isinstance(spec, dict) else {}, subset, where(dr))
    labels = found.get("labels") if isinstance(found, dict) else None
    out = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    out[VERSION_LABEL] = version
    return out


def service_of(dr: Any, namespace: str) -> tuple[str, str] | None:
    """(name, namespace) of the Kubernetes Service the DestinationRule's host names, or None when the
    host is not one (an external name, a wildcard, another cluster domain's form)."""
    spec = dr.get("spec") if isinstance(dr, dict) else None
    host = spec.get("host") if isinstance(spec, dict) else None
    meta = dr.get("metadata") if isinstance(dr, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) and isinstance(meta.get("namespace"), str) else namespace
    if not isinstance(host, str) or not host.strip():
        return None
    parts = fqdn(host, ns or namespace).split(".")
    if len(parts) < 3 or parts[2] != "svc" or "*" in parts[0]:
        return None
    return parts[0], parts[1]


def selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# the kubelet's reasons for a container waiting that are the version's own doing, never the cluster's: it crashes
# (restarted, backing off), its image cannot be named, its configuration cannot be made into a container
OWN_WAITING = frozenset({"CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
                         "RunContainerError"})
# waiting on an image the registry did not give: a tag never pushed, or the registry's rate limit, outage or
# credentials. ImagePullBackOff's message never says which (`Back-off pulling image ...`): named, not the version's
# (decision 860)
PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff"})
# containers the mesh injects beside the version's: istiod down or its certificate refused keeps them from Ready,
# which is the cluster's (Istio's native sidecar is an init container, not read here)
SIDECARS = frozenset({"istio-proxy"})


def pod_state(status: dict[str, Any]) -> tuple[str, bool]:
    """(what a pod's containers say keeps it from Ready, "" when nothing; whether that is the version's own doing):
    a waiting reason of OWN_WAITING, restarts, or containers that run and are not ready (their readiness probe fails:
    a model that does not load) are; an image not pulled (PULL_WAITING), the mesh's sidecar (SIDECARS) and a pod the
    node failed (phase Failed: evicted, preempted, a node shut down; under a Deployment nothing else fails a pod, and
    its containers' past restarts are no verdict) are named, not its own (decision 860). A Pending pod with no
    container started (unscheduled: the cluster's room) says nothing."""
    statuses = [c for c in (status.get("containerStatuses") or []) if isinstance(c, dict)
                and c.get("name") not in SIDECARS]
    waiting = [str(((c.get("state") or {}).get("waiting") or {}).get("reason") or "") for c in statuses]
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses if isinstance(c.get("restartCount"), int))
    pulls = sorted({w for w in waiting if w in PULL_WAITING})
    if status.get("phase") == "Failed":
        return ", ".join(x for x in (str(status.get("reason") or ""), *pulls) if x), False
    bad = sorted({w for w in waiting if w in OWN_WAITING})
    said = bad + ([f"{restarts} restarts"] if restarts else [])
    if said:
        return ", ".join(said + pulls), True
    running = [c for c in statuses if (c.get("state") or {}).get("running") is not None]
    if running and any(c.get("ready") is False for c in running):
        return ", ".join(["running, its readiness probe failing", *pulls]), True
    return ", ".join(pulls), False


def own_failure(status: dict[str, Any]) -> str:
    """Why a pod's own containers keep it from Ready ("" when they do not, or cannot be told): `pod_state`'s words
    where they are the version's own doing."""
    said, own = pod_state(status)
    return said if own else ""


def count_ready(pods: list[Any], labels: dict[str, str]) -> tuple[int, int, tuple[str, ...], int]:
    """(Ready pods, pods, up to 5 not-Ready ones with why, not-Ready pods failing by their own containers:
    `pod_state`) among `pods` (the API's dicts) that carry every label of `labels` (a LIST's label selector
    already did; checked again: an answer is not trusted)."""
    ready, total, not_ready, failing = 0, 0, [], 0
    for pod in pods:
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        if not isinstance(meta, dict):
            continue
        have = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        if any(str(have.get(k)) != v for k, v in labels.items()):
            continue
        total += 1
        status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
        conditions = status.get("conditions") if isinstance(status.get("conditions"), list) else []
        cond = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)
        if meta.get("deletionTimestamp") is None and cond is not None and cond.get("status") == "True":
            ready += 1
            continue
        own, mine = pod_state(status) if meta.get("deletionTimestamp") is None else ("", False)
        failing += mine
        if len(not_ready) < 5:
            why = ", ".join(str(x) for x in (status.get("phase"), (cond or {}).get("reason"), own,
                                              "terminating" if meta.get("deletionTimestamp") else None) if x)
            not_ready.append(f"{meta.get('name', '?')} ({why or 'no Ready condition'})")
    return ready, total, tuple(not_ready), failing


def canary_failing(missing: list[tuple[str, str, PodCount]]) -> bool:
    """Whether the canary is among `missing` (the arms without a Ready pod) by its own pods' failure: one of them
    crashes, cannot start or fails its readiness probe (`own_failure`). Its end is the canary's, class `gate` (it
    did not come up, as a Triton gate's "did not load"), not `infrastructure` (decision 843); pods not up yet
    (Pending, unscheduled), being deleted or none at all are not told apart from the cluster's or the deploy's fault;
    nor is a canary crashing where the stable has no Ready pod either (a node pool's broken GPU driver crashes both:
    the stable is no judge of whose fault it was, decision 860)."""
    return all(subset == CANARY for subset, _, _ in missing) and \
        any(subset == CANARY and count.failing for subset, _, count in missing)


def not_ready_message(missing: list[tuple[str, str, PodCount]], waited_s: float) -> str:
    """One line: for each (subset, version, count) without a Ready pod, which pods were looked for and what
    was found; what to do; nothing was moved."""
    waited = f" after waiting {waited_s:.0f}s" if waited_s >= 0.5 else ""  # a first check that took 0.3 s: not "0s"
    parts = []
    for subset, version, count in missing:
        found = (f"none of {count.total} is Ready ({'; '.join(count.not_ready)})" if count.total
                 else "there are none")
        parts.append(f"{subset} {version} has no Ready pod{waited}: pods {count.selector} in namespace "
                     f"{count.namespace}: {found}")
    subsets = " and ".join(subset for subset, _, _ in missing)
    advice = []
    if canary_failing(missing):
        version = next(v for subset, v, _ in missing if subset == CANARY)
        advice.append(f"the canary's own fault, not the cluster's: its pods crash, cannot start or fail their "
                      f"readiness probe; do not ship {version} as it is: read its pods' logs (kubectl logs "
                      f"--previous) and events (kubectl describe pod), fix it, then roll it out again")
    elif any(subset == CANARY for subset, _, _ in missing):
        advice.append("Deploy the canary version and wait until one of its pods is Ready (kubectl rollout status)")
    if any(subset != CANARY for subset, _, _ in missing):
        advice.append("the stable version serves no one: the canary would be compared with nothing and a rollback "
                      "would send every request to no pod; scale up or fix its Deployment")
    said = "; ".join(advice)
    return (f"{'; and '.join(parts)}. {said[:1].upper()}{said[1:]} (the pods need the labels of the DestinationRule's "
            f"{subsets} subset and of the Service); nothing was moved")

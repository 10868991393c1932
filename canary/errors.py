"""One exception tree for everything `canary` raises on purpose.

The class says what the caller should do, so retry and exit-code decisions are
made by type, never by parsing messages::

    CanaryError
    ├── ConfigError            bad input (policy, flags, manifests)  -> exit 2, never retried
    │   ├── PolicyError        a policy file: carries file and field
    │   └── ApiRefused         the Kubernetes API refused a request of ours (RBAC's 403, a 401
    │       │                  a renewal did not mend, a status write a stricter CRD refuses): not the input
    │       └── StatusRefused  ...a CanaryRollout's status write: ended where it stands, even at 100/0
    ├── TargetError            the VirtualService/DestinationRule is not what we can drive -> exit 2
    ├── GateError              a Triton gate refused the canary (schema, warm-up, readiness)
    ├── TransientError         worth retrying (network, 5xx, timeouts)     -> bounded retries
    │   ├── MetricsUnavailable Prometheus could not be asked              -> "could not measure"
    │   ├── KubeUnavailable    the Kubernetes API could not be reached
    │   └── PodsNotReady       no Ready pod serves a version the rollout needs yet (nothing was moved)
    │       ├── CanaryNotReady ...the canary version (its Deployment just applied)
    │       └── StableNotReady ...the stable version (scaled to 0, crash-looping, a mistyped label)
    ├── NoData                 Prometheus answered, but nothing about this arm
    ├── RoutingConflict        someone else wrote the VirtualService (409 after re-tries,
    │   │                      or a foreign edit of the weights)
    │   ├── ConflictStorm      ...every try met 409: nobody's decision refused it, it may pass
    │   └── WeightsMoved       ...a write guarded on the weights a look was judged at found others:
    │                          nothing written; handled as a revert the look's re-read found
    ├── RolloutBusy            another rollout already owns this VirtualService -> exit 75, retry later
    ├── RollbackFailed         traffic had moved; stable 100% could not be completed -> exit 3
    │   └── TrafficUnsafe      ...and the route may still send traffic to the canary -> exit 6
    ├── GraceSpent             the time a signal left (promote --interrupt-grace) is spent:
    │   │                      no more Kubernetes requests are sent, never retried
    │   └── GraceReserved      ...kept for the route's stable-100% write first: a request not the
    │                          route's was abandoned at the signal, or not sent
    └── NotLeader              this controller replica may not write (lease lost or expiring)

Library exceptions are wrapped with ``raise ... from exc`` at the boundary
(routing/, metrics/, triton.py); a raw urllib3 or requests traceback never
reaches a user.
"""

from __future__ import annotations


class CanaryError(Exception):
    """Base of every error `canary` raises on purpose. `end_cause`: the class (`rollout.ROLLBACK_REASONS`) of the
    end of a rollout this error ends mid-rollout, where the raiser knows it ("": the ender's own, "infrastructure"
    for a failure): a route re-shaped outside the rollout is a foreign edit (`routing.patch.reshaped`, decision
    607), never read back from the words."""

    end_cause = ""


class ConfigError(CanaryError):
    """Bad input given by the user. Never retried; exit code 2. `field`: the input as the user named it
    ("--triton-canary", "spec.triton.canaryUrl", "metadata.tritonCanary"; a policy's field for a PolicyError),
    "" when the error is not about one; `detail`: the message without that name. A caller that reports the
    field apart (a 400's `field`) reads them here, never from the text (`ConfigError.at`)."""

    def __init__(self, *args: object, field: str = "", detail: str = "") -> None:
        super().__init__(*args)
        self.field = field
        self.detail = detail

    @classmethod
    def at(cls, field: str, detail: str) -> "ConfigError":
        """The error "<field> <detail>" about the input `field`."""
        return cls(f"{field} {detail}", field=field, detail=detail)


class PolicyError(ConfigError):
    """A policy file is invalid. The message names the file and the field."""

    def __init__(self, file: str, field: str, message: str,
                 problems: "list[tuple[str, str]] | None" = None) -> None:
        self.file = file
        # every problem (field, message), in the order found: a user fixing a policy needs all of them
        self.problems = problems or [(field, message)]
        where = f"{file}: {field}" if field else file
        text = f"{where}: {message}"
        if len(self.problems) > 1:  # each once, under the file
            text = f"{file}: {len(self.problems)} problems:" + "".join(
                f"\n  - {f or '(top level)'}: {m}" for f, m in self.problems)
        super().__init__(text, field=field, detail=message)


class ApiRefused(ConfigError):
    """The Kubernetes API refused a request of ours for good (`request`: which, in words, "the read of ConfigMap
    ml/pol"; `status`: the HTTP status): RBAC's 403, a 401 the credentials' renewal did not mend, a 4xx on a write
    of ours (a CRD stricter than this release). Never retried, as bad input is not, but said as what it is: the
    spec was not invalid (decision 536)."""

    def __init__(self, message: str, *, request: str, status: int) -> None:
        super().__init__(message)
        self.request = request
        self.status = status


class StatusRefused(ApiRefused):
    """The status write of a CanaryRollout refused for good. Its rollout ends where it stands, a claim at stable
    100% too: a status write is a tick's last, so the next tick's would have come after its step's traffic moved
    (decision 560)."""


class TargetError(ConfigError):
    """The Istio objects cannot be driven (missing, wrong shape, missing subset)."""


class RecordTooNew(TargetError):
    """The route's rollout record is in a record schema above this canary's (`rollout.NewerRecord`): a newer
    canary's rollout, left to it (never ended, resumed or rewritten here; `canary rollback` ends it). The remedy
    is to upgrade this canary (decision 169)."""


class NoRoom(TargetError):
    """A write not sent: the object's other annotations leave the annotation it sets too little of the 262,144 bytes
    the API server allows them all together (it would answer 422, "metadata.annotations: Too long"). The message
    names the annotation that takes the room and the `kubectl annotate ... KEY-` that frees it (decisions 565, 569)."""


class RuleElsewhere(TargetError):
    """The rollout's DestinationRule names another service than the rollout's own route (re-hosted mid-rollout):
    its subsets describe that service's pods, so it is not pointed (`istio.rule_elsewhere`, decision 644). The
    route's subsets resolve under no rule meanwhile: every request to them fails (503, NR) until it is mended,
    the outage a deleted rule makes (decision 649). An end it makes is a foreign edit: the rule was edited outside
    the rollout (decision 662)."""

    end_cause = "foreign_edit"


class NotFound(TargetError):
    """The object does not exist (HTTP 404 for a served API). `what`: the object as the request named it
    (`kube.translate`'s, e.g. 'ml/rec-model (virtualservices)'); "" when not known."""

    def __init__(self, message: str = "", *, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class GateError(CanaryError):
    """A Triton gate refused the canary before or during traffic."""


class RollbackFailed(CanaryError):
    """Traffic had moved and stable 100% could not be completed (exit 3, never 2: something was
    touched). `rollout_state`, when set, is the last state written to the route."""


class TrafficUnsafe(RollbackFailed):
    """Stable 100% could not be written and the route may still send traffic to the canary (exit 6):
    act by hand. The message names the VirtualService and the route."""


class GraceSpent(CanaryError):
    """The grace a signal left this process (`canary promote --interrupt-grace`) is spent: the
    Kubernetes request was not sent (`kube.bound_by`). Never retried: the process is about to be
    killed by whoever sent the signal, and must say how traffic stands before it is."""


class GraceReserved(GraceSpent):
    """After a signal, a Kubernetes request that is not one of the route's (the history ConfigMap, an Event, a pod
    count) was abandoned where the main thread waited on it at the signal, or not sent: the grace is the route's
    stable-100% write's first, until a write of the route sent after the signal is answered (`kube.bound_by`,
    decision 407). Not retried; a history write refused so is written again once traffic is settled."""


class TransientError(CanaryError):
    """A dependency failed in a way that may pass; retried within a budget."""


class MetricsUnavailable(TransientError):
    """Prometheus could not be asked (refused, 5xx, timeout, bad answer)."""


class KubeUnavailable(TransientError):
    """The Kubernetes API could not be reached or kept failing."""


class PodsNotReady(TransientError):
    """No Ready pod serves a version the rollout needs (`routing.pods`): refused before any write, worth
    trying again once the version's pods are up (`promote --wait-ready`, the controller's backoff). The
    subclass names the arm; it is the controller's Ready reason."""


class CanaryNotReady(PodsNotReady):
    """No Ready pod serves the canary version yet (when the stable has none either, the message says so)."""


class StableNotReady(PodsNotReady):
    """The canary has a Ready pod, the stable version none: nothing to compare it with, and a rollback to
    stable 100% would send every request to no endpoint."""


class NoData(CanaryError):
    """Prometheus answered, but had no samples for the arm/query."""


class NotCountable(NoData):
    """Prometheus holds the arm's series, but they do not count what it served: a target read by two scrape jobs
    (counted twice), a target down (its requests in no count). No verdict from it, as NoData; and never read as
    "the canary got no requests" (`analysis.unrouted`): a good canary scraped twice was a hard rollback there."""


class RoutingConflict(CanaryError):
    """The VirtualService changed under us in a way we will not overwrite."""


class ConflictStorm(RoutingConflict):
    """Every try of one write met HTTP 409 (the router's bounded re-tries): someone else keeps editing the
    object. No decision of another writer refused it (that is a plain RoutingConflict: adopt it), so it is
    a failure that may pass, as a TransientError is: a controller counts it against its failure budget, and
    a stable-100% write that keeps meeting it pages as any failed one does."""


def others_decision(exc: BaseException) -> bool:
    """Whether `exc` is a write refused by another writer's decision (a RoutingConflict: adopt it, or leave
    that writer's rollout alone), not a ConflictStorm (nobody's decision: a failed write)."""
    return isinstance(exc, RoutingConflict) and not isinstance(exc, ConflictStorm)


class WeightsMoved(RoutingConflict):
    """A weights write guarded on the weights the route carried when its decision was taken (`expect_weights`:
    those a look was judged at, confirmed by the read after it measured) found other weights on the route at
    write time, its first attempt or a 409 retry's re-read: nothing was written. No writer's decision on the
    record (that stays ours): a revert of the weights alone (`kubectl edit`, a GitOps sync that leaves the
    record annotation alone), which the caller handles as a revert its own read had found (decision 185).
    `found`: the weights read ("unknown" when the route's weights are not two integers summing to 100, as
    written there)."""

    def __init__(self, message: str, *, found: str = "unknown") -> None:
        super().__init__(message)
        self.found = found


class RolloutBusy(CanaryError):
    """Another rollout is in progress on this VirtualService: nothing was written, and the same command may
    succeed once it ends (exit 75, EX_TEMPFAIL; `promote --wait-busy` waits for it). `holder`: the record's
    owner (`RolloutState.owner`), `job`: the CI job that started it (`RolloutState.job`), "" when unknown.
    `held`: that record (a `RolloutState`) where it is another VirtualService's (`reconcile.check_other_splits`)."""

    def __init__(self, *args: object, holder: str = "", job: str = "", held: object = None) -> None:
        super().__init__(*args)
        self.holder = holder
        self.job = job
        self.held = held


class AlreadyStable(CanaryError):
    """`canary rollback` on a route already at stable 100% with no rollout in progress: the state it
    asks for holds; nothing is written on the route (exit 0). `wrote`: what was written besides, "" when nothing
    (the canary subset re-pointed over a rollback that had left it, decision 639)."""

    def __init__(self, *args: object, wrote: str = "") -> None:
        super().__init__(*args)
        self.wrote = wrote


class NotLeader(CanaryError):
    """This replica lost (or never had) the lease, or has too little of it left for a write."""


def said(exc: BaseException) -> str:
    """`exc` in one reason's words, never empty: a CanaryError's message (written to be read), another's
    "<type>: <message>". An error with no message to say (no arguments, `None`, a blank string, a `__str__`
    that raises) is "<type>, with no message": an empty one read "NoData: " or "failed: ", and "" where the
    caller reads "" as "nothing went wrong" (`metrics.delta.canary_count`'s "counted"; decision 493)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ is no message either
        text = ""
    if not text.strip() or (exc.args and all(a is None for a in exc.args)):
        return f"{type(exc).__name__}, with no message"
    return text if isinstance(exc, CanaryError) else f"{type(exc).__name__}: {text}"

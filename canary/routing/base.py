"""The TrafficRouter protocol: the four things a rollout needs from a mesh.

Kept small (after Flagger's router interface) so the controller never knows
which mesh it drives, and tests can use a fake that satisfies it without
inheriting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from canary.model import Target, Weights


@dataclass(frozen=True)
class RouteStatus:
    """What the router read: current weights, persisted state, subset versions."""

    weights: Weights
    state: str | None  # the raw rollout-state annotation (JSON), None when absent
    stable_subset_version: str  # the `version` label the stable subset selects
    canary_subset_version: str
    resource_version: str = ""
    # The route's weights as written, when they are not exactly `weights` (not summing to 100,
    # missing, 0/0, not non-negative integers); `weights` is then Istio's split of them.
    # None when the route says exactly `weights`.
    raw_weights: tuple[Any, Any] | None = None
    # the names of the VirtualService's HTTP routes, in order ("" for an unnamed one): which route an
    # empty route name and a named one resolve to (`patch.same_route`); () when not read (test doubles)
    routes: tuple[str, ...] = ()
    # why the DestinationRule's subsets cannot carry a rollout to its end ("" when they can, or when not
    # read): they select different labels besides `version` (`claims.subset_labels_differ`)
    subsets_differ: str = ""
    # why a new rollout must not claim the VirtualService ("" when it may, or when not read): another of its
    # routes splits traffic with the canary subset (`claims.split_elsewhere`); read by the strict `inspect`
    split_elsewhere: str = ""
    # on a route of a shape no rollout starts from, read as a stable-100% write reads it (`inspect_any(
    # for_stable=True)`): the percentages Istio sends to the stable subset, the canary subset and every other
    # destination ({"stable", "canary", "others"}, `stable.shares`); None otherwise
    shares: dict[str, int] | None = None
    # that route has no destination with subset `stable` (deleted by hand, or no destination at all): a
    # stable-100% write adds one; the host it adds ("" when the route has a stable destination)
    stable_added: str = ""
    # such a route read by `inspect_any(shown=True)` where no stable destination can be added (the
    # DestinationRule unreadable or without both subsets): why `canary rollback` cannot restore stable on it
    stable_unwritable: str = ""
    # read by `inspect_any(shown=True)`: its DestinationRule names another service than the rollout's own route
    # (`istio.rule_elsewhere`, re-hosted mid-rollout): never pointed, the route's subsets resolving under no rule of
    # its host until it is mended (decision 650); "" otherwise
    rule_elsewhere: str = ""
    # that route answers every request itself ("redirect", "directResponse": `patch.routes_nothing`), no destination:
    # no request reaches the canary by it, and a stable-100% write leaves it as it is (decision 522); "" otherwise
    routes_nothing: str = ""
    # what a rollback's stable-100% write changed beyond the driven route's weights, one entry a route (a mirror
    # to the canary removed, another route's split with it ended: `istio._without_canary_mirrors`), for its
    # `rollback.other_routes` line; () when nothing else changed, or for any other write
    also_ended: tuple[str, ...] = ()


class TrafficRouter(Protocol):
    def inspect(self, target: Target) -> RouteStatus:
        """Read and validate the objects (VS exists, route has exactly the two
        destinations, DR defines both subsets). Raises TargetError otherwise."""

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: str | None | object = ...,
                    expect_weights: Weights | None = None) -> RouteStatus:
        """Write the route's weights and the state annotation in ONE write, with a
        resourceVersion precondition; on 409 re-read, re-check, re-apply. With
        `expect_state`, raise RoutingConflict instead when the recorded state is
        neither that nor `state` (another writer's rollout decision wins). With
        `expect_weights` (the weights a look was judged at), raise WeightsMoved, a
        RoutingConflict, instead when the route's weights read by that attempt (the
        first, or a 409 retry's re-read) are not exactly those: nothing is written.
        Ignored when `weights` is stable 100%, which is never refused for it. Callers
        pass it only when they have it (older test doubles do not take it)."""

    def point_subset(self, target: Target, subset: str, version: str, *,
                     guard: Callable[[], None] | None = None, supersede: bool = False) -> None:
        """Make subset ('stable' | 'canary') select pods labelled version=<version>. `guard` is
        called at every attempt, after the DestinationRule is read and before it is written (it raises
        to stop the write): a write whose guard passed lands only if nothing wrote the rule since
        that read; with `supersede` the
        DestinationRule is written even when unchanged, so that any write prepared earlier by
        another process (and still in flight) fails its resourceVersion precondition."""

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        """Best effort: a Kubernetes Event on the VirtualService. Never raises; False if not recorded."""


def read_for_stable(router: Any, target: Any) -> RouteStatus:
    """The route under `target` as a stable-100% write reads it: the router's lenient
    `inspect_any(for_stable=True)` (`IstioRouter`: a route of a shape no rollout starts from, a DestinationRule
    gone), else its strict `inspect` (a router without it, as test doubles are). Raises what they raise."""
    lenient = getattr(router, "inspect_any", None)
    return lenient(target, for_stable=True) if lenient is not None else router.inspect(target)

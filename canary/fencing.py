"""Fencing: no write leaves a controller replica unless it holds the lease right now.

The controller's router is wrapped in `FencedRouter`; reads pass through,
every write asks `may_write()` (the leader elector's `is_leader`, which turns
False at the renew deadline, before a standby can take over) at the moment
of writing. A write that retries (409s, 5xx) is fenced on EVERY attempt, not
once: the router's `fence` hook is given `lease_left()`, the seconds this
replica may still write, and each attempt's request timeout is cut to fit
inside it, so no attempt can land after the renew deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import math

from canary.errors import NotLeader
from canary.model import Target, Weights
from canary.routing.base import RouteStatus, TrafficRouter

__all__ = ["FencedRouter", "NotLeader"]


@dataclass
class FencedRouter:
    """Refuses every write unless `may_write()` is true at the moment of writing; with `lease_left`
    (seconds of leadership left), every retried attempt inside the router is fenced too."""

    inner: TrafficRouter
    may_write: Callable[[], bool]
    lease_left: Callable[[], float] | None = None
    # where a Kubernetes Event's write is made: None, here and now; else `defer(target, write)` queues `write`
    # (the controller's writer threads, `canary.side_writes`: a hung Events API never holds a tick; decision 890).
    # The lease is asked when the write is made, not when it is queued
    defer: Callable[[Target, Callable[[], Any]], bool] | None = None

    def __post_init__(self) -> None:
        if hasattr(self.inner, "fence"):
            left = self.lease_left
            self.inner.fence = left if left is not None else (lambda: math.inf if self.may_write() else 0.0)

    def inspect(self, target: Target) -> RouteStatus:
        return self.inner.inspect(target)

    def subset_pods(self, target: Target, subset: str = "canary", *, glance: bool = False) -> Any:
        """A read: passed through (`reconcile.check_pods` asks it when the router has it; without this,
        a caller given the fenced router skipped the pod check before the claim, silently)."""
        count = getattr(self.inner, "subset_pods", None)
        if count is None:
            from canary.routing.pods import PodCount

            return PodCount(unchecked="the router cannot count pods")
        return count(target, subset, glance=glance)

    def split_in_others(self, target: Target, **kw: Any) -> Any:
        """A read: passed through (a rollback's look at the other VirtualServices, `reconcile.execute`; without it
        the controller's rollbacks never looked)."""
        find = getattr(self.inner, "split_in_others", None)
        return find(target, **kw) if find is not None else (None, "the router cannot list VirtualServices")

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: Any = ...,
                    expect_weights: Weights | None = None) -> RouteStatus:
        self._fence()
        guard = {"expect_weights": expect_weights} if expect_weights is not None else {}
        return self.inner.set_weights(target, weights, state=state, expect_state=expect_state, **guard)

    def point_subset(self, target: Target, subset: str, version: str, **kw: Any) -> None:
        self._fence()
        self.inner.point_subset(target, subset, version, **kw)

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        def write() -> bool:
            return bool(self.may_write()) and bool(self.inner.record_event(target, reason=reason, message=message,
                                                                           warning=warning))
        if self.defer is not None:
            return self.defer(target, write)  # queued: True unless refused (said by the queue)
        return write()

    def _fence(self) -> None:
        if not self.may_write():
            raise NotLeader("not the leader: write refused")

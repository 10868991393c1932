"""Fencing: no write leaves a controller replica unless it holds the lease right now.

The controller's router is wrapped in `FencedRouter`; reads pass through,
every write asks `may_write()` (the leader elector's `is_leader`, which turns
False at the renew deadline, before a standby can take over) at the moment
of writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from canary.errors import CanaryError
from canary.model import Target, Weights
from canary.routing.base import RouteStatus, TrafficRouter


class NotLeader(CanaryError):
    """This replica lost (or never had) the lease: it must not write."""


@dataclass
class FencedRouter:
    """Refuses every write unless `may_write()` is true at the moment of writing."""

    inner: TrafficRouter
    may_write: Callable[[], bool]

    def inspect(self, target: Target) -> RouteStatus:
        return self.inner.inspect(target)

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: Any = ...) -> RouteStatus:
        self._fence()
        return self.inner.set_weights(target, weights, state=state, expect_state=expect_state)

    def point_subset(self, target: Target, subset: str, version: str) -> None:
        self._fence()
        self.inner.point_subset(target, subset, version)

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        return bool(self.may_write()) and bool(self.inner.record_event(target, reason=reason, message=message,
                                                                       warning=warning))

    def _fence(self) -> None:
        if not self.may_write():
            raise NotLeader("not the leader: write refused")

"""Deterministic kill points: a process "killed" right after its k-th write.

`Killer` wraps a TrafficRouter (and, for the controller, the CustomObjectsApi
whose status patches are writes too). Once the k-th write has landed it raises
`Killed`, a BaseException no code path may catch for good, and refuses every
later write of that process: exactly what SIGKILL leaves behind (a write is
atomic at the API server; whatever landed stays, nothing after it happens).
The suite then starts a fresh process object on the same cluster and checks
the outcome, so no test depends on when a real signal lands.
"""

from __future__ import annotations

import json
from typing import Any

from canary.model import Target, Weights


class Killed(BaseException):
    """Simulated SIGKILL."""


class Killer:
    def __init__(self, inner: Any, kill_after: int | None, log: list[str]) -> None:
        self.inner, self.kill_after, self.log, self.dead = inner, kill_after, log, False

    def _wrote(self, what: str) -> None:
        self.log.append(what)
        if self.kill_after is not None and len(self.log) >= self.kill_after:
            self.dead = True
            raise Killed(what)

    def _alive(self) -> None:
        if self.dead:
            raise Killed("dead process")

    # TrafficRouter
    def inspect(self, target: Target) -> Any:
        self._alive()
        return self.inner.inspect(target)

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: Any = ...) -> Any:
        self._alive()
        out = self.inner.set_weights(target, weights, state=state, expect_state=expect_state)
        self._wrote(f"weights {weights} {json.loads(state)['phase']}")
        return out

    def point_subset(self, target: Target, subset: str, version: str, **kw: Any) -> None:
        self._alive()
        self.inner.point_subset(target, subset, version, **kw)
        self._wrote(f"subset {subset}={version}")

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        return False if self.dead else bool(self.inner.record_event(target, reason=reason, message=message,
                                                                    warning=warning))


class KillerCustom:
    """CustomObjectsApi whose status patches count as writes of the same Killer."""

    def __init__(self, inner: Any, killer: Killer) -> None:
        self.inner, self.killer = inner, killer

    def patch_namespaced_custom_object_status(self, *a: Any, **kw: Any) -> Any:
        self.killer._alive()
        out = self.inner.patch_namespaced_custom_object_status(*a, **kw)
        body = a[-1] if a else kw.get("body")
        self.killer._wrote("status " + ",".join(sorted((body or {}).get("status", {}))))
        return out

    def __getattr__(self, name: str) -> Any:
        self.killer._alive()
        return getattr(self.inner, name)


class LiveWeights:
    """`FakeMetrics` reads `router.weights`: here they come from the cluster, as Prometheus would see them."""

    def __init__(self, router: Any, target: Target) -> None:
        self.router, self.target = router, target

    @property
    def weights(self) -> Weights:
        return self.router.inspect(self.target).weights

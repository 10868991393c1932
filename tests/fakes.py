"""In-memory stand-ins for unit tests of the controller's timing and ordering.

The real router and provider are exercised against the Kubernetes API emulator
and a real Prometheus in tests/integration and tests/e2e; these fakes only let
unit tests run the controller loop on a fake clock, without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from canary.model import STABLE_ONLY, Counts, Histogram, Target, Weights
from canary.routing.base import RouteStatus


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.001)


class HeldClock:
    """A clock that stays at `t` (a controller's `clock`): what its ticks do does not depend on how long they
    take. Held at a step's `step_started_at`, no look comes due however slowly a loaded machine runs them."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        pass


@dataclass
class FakeRouter:
    weights: Weights = STABLE_ONLY
    state: str | None = None
    subsets: dict[str, str] = field(default_factory=lambda: {"stable": "v1", "canary": "v1"})
    log: list[tuple[str, Any]] = field(default_factory=list)  # ordered writes, for ordering assertions
    fail_writes: int = 0
    before_write: list[Callable[[], None]] = field(default_factory=list)  # races, on demand

    def inspect(self, target: Target) -> RouteStatus:
        return RouteStatus(self.weights, self.state, self.subsets["stable"], self.subsets["canary"])

    def set_weights(self, target: Target, weights: Weights, *, state: str, expect_state: Any = ...,
                    expect_weights: Weights | None = None) -> RouteStatus:
        while self.before_write:
            self.before_write.pop(0)()
        if expect_state is not ... and self.state not in (expect_state, state):
            from canary.errors import RoutingConflict

            raise RoutingConflict("fake: state changed by someone else")
        if expect_weights is not None and weights != STABLE_ONLY and self.weights != expect_weights:
            from canary.errors import WeightsMoved

            raise WeightsMoved("fake: weights changed by someone else", found=str(self.weights))
        if self.fail_writes:
            from canary.errors import KubeUnavailable

            self.fail_writes -= 1
            raise KubeUnavailable("fake: API down")
        self.weights, self.state = weights, state
        self.log.append(("weights", weights))
        return self.inspect(target)

    def point_subset(self, target: Target, subset: str, version: str, *, guard: Any = None,
                     supersede: bool = False) -> None:
        if guard is not None:
            guard()
        self.subsets[subset] = version
        self.log.append(("subset", (subset, version)))

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        self.log.append(("event", reason))
        return True


# x1.05 per bucket: fine enough that a pass can be *shown* within +20% (a bucket as wide as the
# tolerance can never show it); coarse-bucket behaviour is the judge's own test
BOUNDS = tuple(round(5 * 1.05**i, 3) for i in range(110)) + (float("inf"),)


def latency_histogram(n: int, scale_ms: float, seed: int) -> Histogram:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(np.log(scale_ms), 0.5, size=n)
    # each bound's count of values at or below it, in one pass over the sorted sample (a pass per bound, 111 over
    # thousands of values at every measured check, was 4% of the kill-point tests' CPU; the same counts)
    counts = [float(c) for c in np.searchsorted(np.sort(x), BOUNDS, side="right")]
    return Histogram(BOUNDS, tuple(counts))


@dataclass
class FakeMetrics:
    """Per-arm traffic proportional to the current weights; canary latency scaled by `slowdown(t)`."""

    router: FakeRouter
    clock: FakeClock
    rps: float = 3000.0  # enough that a 10% step's window shows a good canary within the limits
    slowdown: Callable[[float], float] = lambda t: 1.0
    down: bool = False
    calls: int = 0

    def _n(self, window_s: int) -> tuple[int, int]:
        w = self.router.weights
        return int(self.rps * window_s * w.stable / 100), int(self.rps * window_s * w.canary / 100)

    def measure(self, policy: Any, check: Any, target: Target, *, window_s: int) -> tuple[Any, Any]:
        from canary.errors import MetricsUnavailable, NoData

        self.calls += 1
        if self.down:
            raise MetricsUnavailable("fake: connection refused")
        ns, nc = self._n(window_s)
        if nc == 0:
            raise NoData(f"{check.name}: no canary samples")
        seed = int(self.clock.now() * 10) % 100_000
        if check.kind == "latency":
            return (latency_histogram(ns, 40.0, seed), latency_histogram(nc, 40.0 * self.slowdown(self.clock.now()), seed + 1))
        return Counts(0, ns), Counts(0, nc)

    def preflight(self, policy: Any, target: Target) -> Any:
        """Nothing to ask: every query of a fake is fine."""
        from canary.metrics.base import PreflightReport

        return PreflightReport(url="fake://", window_s=1, queries=(), sent=0, elapsed_s=0.0)

    def request_counts(self, policy: Any, target: Target, *, window_s: int) -> tuple[float, float]:
        ns, nc = self._n(window_s)
        return float(ns), float(nc)

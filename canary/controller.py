"""Carries out one rollout: timing, measuring, judging, acting, persisting.

The decisions are made by the pure `rollout.transition`; this module only
feeds it events and executes the actions it returns, in order. Traffic is
always written together with the recorded state (one VirtualService write),
so a process killed at any instant leaves a state a new `canary promote`
resumes from, and `canary rollback` can always end.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from canary import rollout as rl
from canary.analysis.judge import judge
from canary.errors import (CanaryError, ConfigError, MetricsUnavailable, RolloutBusy, RoutingConflict, TargetError,
                           TransientError)
from canary.logs import get as get_logger
from canary.metrics.base import MetricsProvider
from canary.model import STABLE_ONLY, ArmData, Target
from canary.policy import Policy
from canary.routing.base import RouteStatus, TrafficRouter

EXIT_PROMOTED, EXIT_ROLLED_BACK, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {rl.PROMOTED: EXIT_PROMOTED, rl.ROLLED_BACK: EXIT_ROLLED_BACK, rl.ABORTED: EXIT_INFRA}
# phase changes that also become Kubernetes Events on the VirtualService
_K8S_EVENTS = {"rollout.started", "step.advanced", "rollout.promoting", "rollout.promoted", "rollback.completed",
               "rollout.aborted", "rollout.paused", "rollout.resumed", "rollout.held", "gate.failed"}


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class Gate(Protocol):
    """Pre-traffic and in-traffic checks on the canary server (Triton)."""

    def preflight(self) -> dict[str, Any]: ...  # raises GateError
    def ready(self) -> bool: ...  # never raises
    @property
    def probe_interval(self) -> float: ...
    @property
    def probe_failures(self) -> int: ...


@dataclass
class Result:
    state: rl.RolloutState
    exit_code: int


@dataclass
class Controller:
    policy: Policy
    target: Target
    router: TrafficRouter
    metrics: MetricsProvider
    clock: Clock = field(default_factory=SystemClock)
    gate: Gate | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    on_interrupt: str = "rollback"  # or "pause"
    on_update: Callable[[rl.RolloutState], None] | None = None
    watch_every: float = 1.0  # how often the VirtualService is re-read for outside changes

    def __post_init__(self) -> None:
        self.log = get_logger(model=self.target.model, namespace=self.target.namespace,
                              virtual_service=self.target.virtual_service, canary_version=self.target.canary_version)
        self._written = ""  # the state JSON we last wrote (to tell outside edits from ours)
        self._probe_failures = 0
        self._next_probe = 0.0
        self._last_look: tuple[Any, float] | None = None

    # ---- entry point ----------------------------------------------------------------

    def run(self) -> Result:
        state = self._start()
        while True:
            if self.on_update:
                self.on_update(state)
            if state.terminal:
                return Result(state, EXIT_CODES[state.phase])
            try:
                if state.phase == rl.PROMOTING:
                    state = self._apply(*rl.finish_promotion(state, self.clock.now()))
                elif state.phase == rl.PENDING:
                    state = self._preflight(state)
                elif state.phase == rl.PAUSED and self.stop.is_set():
                    return Result(state, EXIT_INTERRUPTED)
                else:
                    state = self._wait_and_look(state)
            except RoutingConflict as exc:
                state = self._adopt_outside(state, exc)

    # ---- phases ---------------------------------------------------------------------

    def _start(self) -> rl.RolloutState:
        status = self.router.inspect(self.target)
        target = self.target
        if not target.stable_version:
            target = self.target = replace(target, stable_version=status.stable_subset_version)
        if target.stable_version == target.canary_version:
            raise ConfigError(f"canary version {target.canary_version!r} is already the stable version")
        existing = _parse_state(status)
        if existing is not None and not existing.terminal:
            if existing.canary_version != target.canary_version:
                raise RolloutBusy(f"{target.namespace}/{target.virtual_service}: a rollout of "
                                  f"{existing.canary_version} is in progress ({existing.phase}, weights {existing.weights}); "
                                  f"finish it or run `canary rollback` first")
            self.log.info("rollout.resumed_from_state", phase=existing.phase, step=existing.step + 1,
                          weights=str(existing.weights), started_at=existing.started_at)
            self._written = status.state or ""
            if existing.phase == rl.PAUSED:  # re-running promote on a paused rollout means "go on"
                existing = self._apply(*rl.transition(existing, rl.Resume(self.clock.now()), self.policy))
            return existing
        if status.weights != STABLE_ONLY:
            raise TargetError(f"{target.namespace}/{target.virtual_service}: traffic is already split {status.weights} "
                              f"(stable/canary) with no rollout in progress; set it to 100/0 first")
        self._written = status.state or ""
        state, actions = rl.new_rollout(model=target.model, stable_version=target.stable_version,
                                        canary_version=target.canary_version, now=self.clock.now())
        self.log = self.log.bind(stable_version=target.stable_version)
        return self._apply(state, actions)

    def _preflight(self, state: rl.RolloutState) -> rl.RolloutState:
        if self.gate is not None:
            try:
                report = self.gate.preflight()
            except CanaryError as exc:
                self._emit(state, "gate.failed", {"reason": str(exc), "stage": "preflight"}, warning=True)
                return self._apply(*rl.transition(state, rl.GateFailed(self.clock.now(), str(exc)), self.policy))
            self._emit(state, "gate.passed", report)
        return self._apply(*rl.transition(state, rl.Begin(self.clock.now()), self.policy))

    def _wait_and_look(self, state: rl.RolloutState) -> rl.RolloutState:
        """Sleep until the next look, probing the canary and watching for outside changes."""
        a = self.policy.analysis
        due = state.step_started_at + (state.step_looks + 1) * a.look_every if state.phase == rl.PROGRESSING \
            else self.clock.now() + self.watch_every
        next_watch = self.clock.now() + self.watch_every
        while True:
            now = self.clock.now()
            if self.stop.is_set():
                return self._interrupted(state)
            if self.gate is not None and state.phase == rl.PROGRESSING and now >= self._next_probe:
                self._next_probe = now + self.gate.probe_interval
                failed = self._probe(state)
                if failed:
                    return failed
            if now >= next_watch:
                outside = self._check_outside(state)
                if outside is not state:
                    return outside
                next_watch = now + self.watch_every
            if now >= due:
                break
            step = min(due, next_watch) - now
            if self.gate is not None:
                step = min(step, max(self._next_probe - now, 0.0))
            self.clock.sleep(max(0.01, min(step, 0.25)))
        if state.phase != rl.PROGRESSING:
            return state
        return self._look(state)

    def _look(self, state: rl.RolloutState) -> rl.RolloutState:
        now = self.clock.now()
        measurements, canary_n = measure_window(self.metrics, self.policy, self.target,
                                                window_s=look_window(self.policy, state, now), log=self.log)
        verdict = judge(self.policy, measurements, look=state.look)
        key = (state.step, state.step_started_at)
        if self._last_look == (key, canary_n) and canary_n > 0:
            verdict = rl.without_repeated_failures(verdict)
        self._last_look = (key, canary_n)
        return self._apply(*rl.transition(state, rl.Looked(now, verdict, canary_n), self.policy))

    def _probe(self, state: rl.RolloutState) -> rl.RolloutState | None:
        assert self.gate is not None
        if self.gate.ready():
            self._probe_failures = 0
            return None
        self._probe_failures += 1
        self.log.warning("gate.probe_failed", consecutive=self._probe_failures, limit=self.gate.probe_failures)
        if self._probe_failures < self.gate.probe_failures:
            return None
        reason = f"canary Triton not ready ({self._probe_failures} probes in a row)"
        self._emit(state, "gate.failed", {"reason": reason, "stage": "probe"}, warning=True)
        return self._apply(*rl.transition(state, rl.GateFailed(self.clock.now(), reason), self.policy))

    def _check_outside(self, state: rl.RolloutState) -> rl.RolloutState:
        """Adopt `canary rollback/pause/resume` from another process; re-assert foreign weight edits."""
        try:
            status = self.router.inspect(self.target)
        except TransientError as exc:
            self.log.warning("watch.failed", error=str(exc))
            return state
        if (status.state or "") != self._written:
            theirs = _parse_state(status)
            if theirs is not None and theirs.canary_version == state.canary_version:
                self._written = status.state or ""
                self.log.info("rollout.changed_outside", phase=theirs.phase, reason=theirs.reason,
                              weights=str(theirs.weights))
                return theirs
        if status.weights != state.weights:
            self.log.warning("weights.foreign_edit", expected=str(state.weights), found=str(status.weights))
            return self._apply(state, [rl.SetWeights(state.weights),
                                       rl.Emit("weights.reasserted", {"found": str(status.weights)}, warning=True)])
        return state

    def _interrupted(self, state: rl.RolloutState) -> rl.RolloutState:
        now = self.clock.now()
        if self.on_interrupt == "pause":
            return self._apply(*rl.transition(state, rl.Pause(now, "interrupted; resume with `canary promote`"), self.policy))
        return self._apply(*rl.transition(state, rl.Abort(now, "interrupted", infrastructure=True), self.policy))

    # ---- actions --------------------------------------------------------------------

    def _apply(self, new: rl.RolloutState, actions: list[rl.Action]) -> rl.RolloutState:
        return execute(self.router, self.target, new, actions, log=self.log, expect=self._written or None,
                       written=self._remember)

    def _remember(self, text: str) -> None:
        self._written = text

    def _emit(self, state: rl.RolloutState, event: str, fields: dict[str, Any], *, warning: bool = False) -> None:
        execute(self.router, self.target, state, [rl.Emit(event, fields, warning)], log=self.log)

    def _adopt_outside(self, state: rl.RolloutState, exc: RoutingConflict) -> rl.RolloutState:
        """Our write was refused because someone else recorded a decision: take theirs."""
        status = self.router.inspect(self.target)
        theirs = _parse_state(status)
        if theirs is None or theirs.canary_version != state.canary_version:
            raise exc
        self._written = status.state or ""
        self.log.info("rollout.changed_outside", phase=theirs.phase, reason=theirs.reason, weights=str(theirs.weights))
        return theirs


def look_window(policy: Policy, state: rl.RolloutState, now: float) -> int:
    """Seconds of data a look judges: since the step started, at least one look period."""
    return max(math.ceil(now - state.step_started_at), math.ceil(policy.analysis.look_every))


def measure_window(metrics: MetricsProvider, policy: Policy, target: Target, *, window_s: int,
                   log: Any) -> tuple[dict[str, tuple[ArmData, ArmData] | Exception], float]:
    """Every check's (stable, canary) data over the window, and the canary request count.
    Failures become the check's "could not measure"; nothing here raises."""
    out: dict[str, tuple[ArmData, ArmData] | Exception] = {}
    for check in policy.checks:
        try:
            out[check.name] = metrics.measure(policy, check, target, window_s=window_s)
        except CanaryError as exc:
            out[check.name] = exc
        except Exception as exc:  # a provider bug must not crash a tick that holds split traffic
            log.error("metrics.unexpected_error", check=check.name, error=f"{type(exc).__name__}: {exc}")
            out[check.name] = MetricsUnavailable(f"{type(exc).__name__}: {exc}")
    try:
        _, canary_n = metrics.request_counts(policy, target, window_s=window_s)
    except Exception:  # counted as no canary requests: a step cannot pass without them
        canary_n = 0.0
    return out, canary_n


def execute(router: TrafficRouter, target: Target, state: rl.RolloutState, actions: list[rl.Action], *,
            log: Any, expect: Any = ..., written: Callable[[str], None] | None = None) -> rl.RolloutState:
    """Carry out actions in order. Writes are guarded on the recorded state being `expect` (what we
    last read or wrote; `...` = unguarded). A failed write of stable-100% is logged as rollback.failed and re-raised."""
    for action in actions:
        if isinstance(action, rl.SetWeights):
            text = state.to_json()
            try:
                router.set_weights(target, action.weights, state=text, expect_state=expect)
                expect = text
            except CanaryError as exc:
                if action.weights == STABLE_ONLY and state.phase in rl.TERMINAL:
                    log.critical("rollback.failed", error=str(exc), weights=str(action.weights))
                raise
            if written:
                written(text)
        elif isinstance(action, rl.PointSubset):
            router.point_subset(target, action.subset, action.version)
            log.info("subset.pointed", subset=action.subset, version=action.version)
        elif isinstance(action, rl.Emit):
            fields = {"phase": state.phase, "weights": str(state.weights), "step": state.step + 1, **action.fields}
            (log.warning if action.warning else log.info)(action.event, **fields)
            if action.event in _K8S_EVENTS:
                router.record_event(target, reason=_camel(action.event), warning=action.warning,
                                    message=f"{action.event}: weights {state.weights} " + str(action.fields.get("reason", "")))
    return state


def _camel(event: str) -> str:
    return "".join(p.capitalize() for p in event.replace("_", ".").split("."))


def _parse_state(status: RouteStatus) -> rl.RolloutState | None:
    if not status.state:
        return None
    try:
        return rl.RolloutState.from_json(status.state)
    except (ValueError, TypeError, KeyError) as exc:
        raise TargetError(f"rollout state annotation is unreadable ({exc}); fix or remove it") from None


def operator_action(router: TrafficRouter, target: Target, event: rl.Abort | rl.Pause | rl.Resume, *,
                    log: Any) -> rl.RolloutState:
    """`canary rollback/pause/resume`: apply one event to the recorded state."""
    status = router.inspect(target)
    state = _parse_state(status)
    if state is None or state.terminal:
        if isinstance(event, rl.Abort) and status.weights != STABLE_ONLY:
            # no rollout recorded but traffic is split: stable gets 100% anyway
            state = rl.RolloutState(model=target.model, stable_version=status.stable_subset_version,
                                    canary_version=status.canary_subset_version, phase=rl.PROGRESSING,
                                    weights=status.weights, started_at=event.now, updated_at=event.now)
        else:
            raise ConfigError(f"{target.namespace}/{target.virtual_service}: no rollout in progress"
                              + (f" (last: {state.phase}, {state.reason})" if state else ""))
    new, actions = rl.transition(state, event, None)  # type: ignore[arg-type]
    if new is state:
        raise ConfigError(f"cannot {type(event).__name__.lower()} a rollout that is {state.phase}")
    if isinstance(event, rl.Abort):
        return execute(router, target, new, actions, log=log)  # a rollback always wins, whatever raced it
    return execute(router, target, new, actions, log=log, expect=status.state)


__all__ = ["Controller", "Result", "SystemClock", "execute", "look_window", "measure_window", "operator_action"]

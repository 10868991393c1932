"""`canary promote`'s runner: the loop that drives one rollout to its end.

The decisions are made by the pure `rollout.transition`; the writes by
`reconcile.execute`. This module owns only the loop: sleeping until the next
look, probing the canary, watching for outside changes, and signals. Traffic
is always written together with the recorded state (one VirtualService
write), so a process killed at any instant leaves a state a new `canary
promote` resumes from, and `canary rollback` can always end.

Failure paths all end with stable at 100%: an exception of any type while
traffic may be split, an API error past its retry budget, or a signal (at
once, whatever a look is waiting on: looks, gates and probes run in a worker
thread that an interrupt abandons).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, TypeVar

from canary import ci_job, judged_marks, unowned
from canary import rollout as rl
from canary.errors import (AlreadyStable, CanaryError, CanaryNotReady, ConfigError, ConflictStorm, GraceReserved,
                           GraceSpent, KubeUnavailable, NotCountable, NotFound, PodsNotReady, RecordTooNew,
                           RollbackFailed, RolloutBusy, RoutingConflict, StableNotReady, TargetError, TrafficUnsafe,
                           TransientError, WeightsMoved, said)
from canary.logs import get as get_logger
from canary.metrics.base import MetricsProvider
from canary.model import STABLE_ONLY, Target, Weights, check_versions, rollback_command
from canary.policy import Policy
from canary.processes import _here, _identity, _pid_namespace, owner_pid, promote_here, resume_here  # noqa: F401 (re-exported)
from canary.reconcile import as_routed as _as_routed  # decision 209
from canary.reconcile import SubsetKept, canary_subset_home, shown_owner, subset_home_retries
from canary.reconcile import (EXIT_BAD_INPUT, EXIT_CODES, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_PROMOTED,
                              EXIT_ROLLED_BACK, Observation, failure_cause, check_pods, check_claim, check_other_splits, count_pods, decide, describe_owner, end_disagreement, execute,
                              is_promote_owner, look_window, measure_window, next_look_at, parse_record, parse_state,
                              may_have_landed, preflight_metrics, promote_owner, Retry, after_unanswered, rollout_context,
                              ROUTE_DELETED, route_deleted, say_split_unrecorded, split_unrecorded, to_stable, vs_gone)
from canary.routing.base import RouteStatus, TrafficRouter, read_for_stable
from canary.routing.pods import not_ready_message
from canary.routing.patch import STATE_ANNOTATION, same_route

T = TypeVar("T")
POD_POLL_S = 5.0  # how often `promote --wait-ready` asks whether a canary pod and a stable pod are Ready
BUSY_POLL_S = 5.0  # how often `promote --wait-busy` reads again a route another rollout holds
# an end's history write that failed (after the flushes of it the loop made: two on a decided end) is tried
# again this many times, END_HISTORY_WAIT_S before the first and doubled after each (7.5 s in all), then
# given up with `history.end_unwritten` (`Runner._write_end_history`)
END_HISTORY_RETRIES = 4
END_HISTORY_WAIT_S = 0.5


class _Interrupted(Exception):
    """A signal arrived while a look or probe was in flight: abandon it."""


def probe_reason(gate: Any, failures: int) -> str:
    """The rollback reason after `failures` failed probes in a row, with the last one's cause (timeout,
    connection refused, model not ready) when the gate says it: on-call reads it in one line."""
    why = getattr(gate, "last_failure", "") or ""
    who = getattr(gate, "failing", "") or "canary"  # the gates probe stable too (`TritonGates.ready`)
    return f"{who} Triton not ready ({failures} probes in a row{': ' + why if why else ''})"


def promotion_held_why(error: str) -> str:
    """`promotion.held`'s reason, and the held look's: every check passed, but the LIST of every namespace's
    VirtualServices failed with `error` (decision 900; promote's and the controller's alike, 903)."""
    return (f"every check passed, but whether another VirtualService (of any namespace) splits traffic with the "
            f"canary subset could not be told ({error[:400]}): not promoted over a split nobody could look for")


def promotion_held_note(on_deadline: str) -> str:
    """`promotion.held`'s `note`: what follows a held look (the step's deadline ending the wait as `on_deadline`)."""
    return ("this look is inconclusive; the next looks ask again (said once until one lists them) and promote once "
            f"the VirtualServices are listed; the step's deadline ends the wait as failure.on_deadline ({on_deadline}) "
            "says")


def held_verdict(policy: Policy, state: rl.RolloutState, why: str, canary_n: float, window_s: float) -> Any:
    """The verdict of a look held from promoting (`why`): every check `NotCountable`, judged with the rollout's
    prior and window as the look was, so it is inconclusive and the step's deadline bounds the wait."""
    from canary.analysis.judge import judge  # here: on-call commands import this module, never the judge

    return judge(policy, {c.name: NotCountable(why) for c in policy.checks}, prior=state.prior(),
                 window=state.step_window, pass_ratio=state.pass_ratio(canary_n), canary_weight=state.weights.canary,
                 step=max(state.step, 0), window_s=window_s, canary_version=state.canary_version)


def probe_server(gate: Any) -> dict[str, str]:
    """`gate.probe_failed`'s `arm` and `endpoint`: which Triton the failed probe was about and where it was asked
    (the canary's reason said only `unreachable: [Errno 111] Connection refused`, no server named; decision 922)."""
    arm = getattr(gate, "failing", "") or "canary"
    endpoint = getattr(gate, arm, None)
    return {"arm": arm, **({"endpoint": str(endpoint)} if endpoint is not None else {})}


def probe_streak(gate: Any, before: int) -> int:
    """Failed probes in a row after one more failure: `before + 1`, or fewer when the gate counts them per
    server (`TritonGates.consecutive`): a canary failure then a stable one are not two in a row of either,
    and the reason (`probe_reason`) names one server and says "N probes in a row"."""
    per_server = getattr(gate, "consecutive", None)
    return before + 1 if not isinstance(per_server, int) or isinstance(per_server, bool) else \
        max(1, min(before + 1, per_server))


class _Decided(Exception):
    """Something decided the rollout while a bounded call waited (`Runner._bounded(meanwhile=)`)."""


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


# this machine's clock and Prometheus's differ by more than this: `clock.skew` / `metrics.clock_skew`
SKEW_WARN_S = 2.0


class SystemClock:
    """Seconds since the epoch: the wall clock read once, then advanced by the monotonic clock. A step of
    the system clock while the process runs (NTP, an operator) neither freezes its looks and probes
    (300 s back stopped them for 300 s) nor stretches a look's window back before its step (600 s
    forward passed a step on 600 s of data from before it). Steps between processes still count:
    timestamps persisted by another process are on its clock (run NTP)."""

    def __init__(self, anchor: float | None = None) -> None:
        """`anchor`: the time to start from instead of this machine's wall clock (Prometheus's,
        `Runner._on_prometheus_clock`)."""
        self._wall0, self._mono0 = (time.time() if anchor is None else anchor), time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0)

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
class Runner:
    """Runs one rollout to its end (`canary promote`). `run()` returns the final state and exit code."""

    policy: Policy
    target: Target
    router: TrafficRouter
    metrics: MetricsProvider
    clock: Clock = field(default_factory=SystemClock)
    gate: Gate | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    on_interrupt: str = "rollback"  # or "pause"
    # the signal that set `stop` ("SIGTERM": a CI job cancelled, a pod evicted; "SIGINT": Ctrl-C), named in the
    # recorded reason: "interrupted" alone did not tell on-call whether someone stopped it or the platform did
    interrupted_by: str = ""
    on_update: Callable[[rl.RolloutState], None] | None = None
    watch_every: float = 1.0  # how often the VirtualService is re-read for outside changes
    wait_ready_s: float = 0.0  # how long to wait for a Ready canary pod and stable pod before the claim (`promote --wait-ready`)
    wait_busy_s: float = 0.0  # how long to wait for a route another rollout holds before the claim (`promote --wait-busy`)
    rollback_failed: bool = field(default=False, init=False)  # run() raised RollbackFailed: traffic had moved
    # run() found the rollout already ended on the route (a re-run reporting it): this process ended nothing,
    # so it announces nothing (`canary promote`'s webhooks)
    found_ended: bool = field(default=False, init=False)
    # canary.history_store.Recorder: every look, step and phase change for `canary report`. Default: the
    # VirtualService's history ConfigMap when the router has a Kubernetes core API, else nothing recorded
    history: Any = None
    # a re-run for the version whose rollout the route records rolled back starts it again (`--retry`);
    # otherwise it reports that rollback, exit 1 (docs/decisions.md 116)
    retry: bool = False
    # bad input that only a run moving traffic needs (`promote`'s Triton flags for a policy's enabled gate): raised
    # before this promote writes anything, but after a re-run's report of its version's earlier end, which writes
    # nothing and needs no gate (decision 544)
    refusal: Exception | None = None
    # the CI job running this promote (`canary.ci_job.from_env`: a job's URL), recorded with its owner in the
    # claim and a take-over (`RolloutState.job`) and named wherever the holder is (decision 387)
    job: str = ""
    # which attempt of which CI job this is (`canary.ci_job.rerun_key`), recorded with `job`: a later attempt of the
    # same job takes over the earlier one's rollout at once, without waiting for its record to go stale (decision 454)
    job_key: str = ""
    # called once this run's traffic is settled (its end or pause written, a take-over left alone), before its end's
    # history is written: after a signal, `kube.bound_by` holds back every request not the route's until then
    # (`InFlight.settle`), or until a write of the route lands (decision 407)
    settled: Callable[[], None] | None = None
    # called once with this run's end (rolled back, aborted, promoted) as soon as it is on the route, before any
    # history write of it: `promote` posts it to the webhooks and Slack then. Queued after `run()` returned, the
    # post waited on the end's history flushes and their retries (7.5 s against a ConfigMap API that answers 500,
    # minutes against one that hangs), and a job killed meanwhile never posted it (decision 720)
    ended: Callable[[rl.RolloutState], None] | None = None
    # an end this run writes of a rollout not its own, told as its stable-100% write lands: the split nobody owned
    # under the route's record, ended before the claim (`_unowned_split`); `promote` posts it as `ended`'s (774's
    # kind: decision 779). Not `ended`: this run's own end is still to come
    ended_other: Callable[[rl.RolloutState], None] | None = None
    # a write decided before any signal that does not end the rollout is being made (`_apply`, `_heartbeat`): after
    # a signal none of its requests is sent any more (`kube.bound_by`'s `stale`; decision 409)
    writing_before_signal: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.log = get_logger(**rollout_context(self.target))
        self._written = ""  # the state JSON we last wrote (to tell outside edits from ours)
        self._told_end = False  # `ended` was called
        self._told_other = False  # `ended_other` was called (an end of a rollout not this run's landed)
        self._sent = ""  # the state JSON of our last write sent, landed or not (the fail-safe's guard)
        self._wrote_at = -math.inf  # when this process last changed the record (its clock): `_heartbeat`
        # a decided end at stable 100% (rolled back, aborted) whose write has not landed: the state and actions
        # `_apply` was writing. The fail-safe writes that very end (its phase and reason), not a generic abort
        self._ending: tuple[rl.RolloutState, list[rl.Action]] | None = None
        self._current: rl.RolloutState | None = None  # the last state this process applied (None before its claim)
        # a stable-100% write of this process's that failed with no answer (a timeout, a 5xx, one cut at the
        # grace's end): it may have landed, whatever later attempts say (`write_landed` on the fail-safe's page)
        self._unanswered_end = ""
        self._before_claim = ""  # what this process wrote before a claim it did not make (a superseded rollout's end)
        self._wrote_first = ""  # the same, as a sentence added to an error raised before the claim (`run`)
        self._beat_retry_at = -math.inf  # a failed heartbeat is tried again from then
        # why the rollback's canary-subset re-pointing failed for a cause that may pass: tried again (1050)
        self._subset_kept = SubsetKept("promote")
        self._busy_input_checked = False  # the metrics preflight asked once behind a busy route (`_input_behind_busy`)
        self.owner = promote_owner(_identity())
        self._probe_failures = 0
        self._next_probe = 0.0
        self._next_watch = 0.0
        self._look_not_before = 0.0  # a look discarded on an unreadable route: the next one waits a watch_every
        # the step (its start) looks moved the clock back to Prometheus's in, and by how many seconds in all (634)
        self._moved_back: tuple[float, float] = (math.nan, 0.0)
        self._splits_unlisted = False  # the VirtualServices could not be listed: not asked at each look (602)
        # why the last look could not tell whether another VirtualService splits with the canary subset (its LIST
        # failed: a 5xx, a timeout, an answer that does not parse), "" when it could: no promotion over it (900)
        self._others_unchecked = ""
        self._held_said = False  # `promotion.held` said in this streak of failing LISTs: once a streak (945)
        self._next_split_look = 0.0  # paused, or its gate running at 100/0: when `_split_while_held` looks next (656)
        if self.history is None:
            from canary.history_store import ConfigMapStore, Recorder

            core = getattr(self.router, "core", None)
            self.history = Recorder(ConfigMapStore(core) if core is not None else None, policy=self.policy,
                                    namespace=self.target.namespace, virtual_service=self.target.virtual_service,
                                    source="promote", log=self.log)

    # ---- entry point ----------------------------------------------------------------

    def run(self) -> Result:
        """The rollout from its claim to its end (or a pause): its state and exit code. An end this process
        wrote is then in the model's history too, written again when its write failed (`_write_end_history`,
        after traffic is back at stable and without changing the exit code)."""
        result = self._run()
        if result.state.terminal and not self.found_ended:  # an end adopted from another writer (`canary rollback`)
            self._tell_end(result.state)
        if self.settled is not None:
            self.settled()
        if result.state.terminal and not self.found_ended:
            self._subset_home_again(result.state)
            self._write_end_history()
        return result

    def _subset_home_again(self, end: rl.RolloutState) -> None:
        """This run's rollback pointed the canary subset at the stable version where another VirtualService still
        splits with it (603); where that look or write failed for a cause that may pass (`_subset_kept`, filled by
        `execute`), it is tried again here before the process exits, as the controller does at its later ticks:
        SUBSET_HOME_TRIES in all, the queue's backoff apart (about 35 s), each try said (decision 1050). After the
        end's post and before its history (traffic first); a signal ends the tries at once (stable 100% stands)."""
        if self._subset_kept and end.phase in (rl.ROLLED_BACK, rl.ABORTED):
            subset_home_retries(self.router, self.target, end, log=self.log.bind(**rollout_context(self.target, end)),
                                kept=self._subset_kept, wait=self._wait_unless_signalled)

    def _wait_unless_signalled(self, seconds: float) -> str:
        """Sleep `seconds` on this run's clock; a signal ends the wait at once: "" when waited, else its words."""
        until = self.clock.now() + seconds
        while not self.stop.is_set() and self.clock.now() < until:
            self.clock.sleep(max(0.01, min(until - self.clock.now(), 0.25)))
        return self._signalled if self.stop.is_set() else ""

    def _subset_tries(self) -> SubsetKept | None:
        """`execute`'s `subset_kept` for a rollback this run writes: tried again before it exits (`_subset_home_again`)
        unless a signal came already (the process is asked to end: one try, said as before)."""
        return None if self.stop.is_set() else self._subset_kept

    @property
    def told_end(self) -> bool:
        """Whether this run's end was told (`ended` called): its stable-100% write (or a promotion's) landed."""
        return self._told_end

    def _tell_end(self, state: rl.RolloutState) -> None:
        """`ended(state)`, once a run: called where this run's end lands, before its history is written."""
        if self.ended is None or self._told_end:
            return
        self._told_end = True
        self._tell(self.ended, state)

    @property
    def told_other(self) -> bool:
        """Whether an end this run wrote of a rollout not its own was told (`ended_other` called): the split nobody
        owned, ended before the claim, whose stable-100% write landed."""
        return self._told_other

    def _tell_other(self, state: rl.RolloutState) -> None:
        """`ended_other(state)`: an end of a rollout not this run's, told as its write lands. Never raises."""
        if self.ended_other is None:
            return
        self._told_other = True
        self._tell(self.ended_other, state)

    def _tell(self, told: Callable[[rl.RolloutState], None], state: rl.RolloutState) -> None:
        """`told(state)` (`ended`, `ended_other`): what it raises is said (`notify.internal_error`), never raised."""
        try:
            told(state)
        except Exception as exc:  # noqa: BLE001 - telling an end never changes it
            self.log.error("notify.internal_error", notify_event=state.phase, error=type(exc).__name__)

    def _write_end_history(self) -> None:
        """The end's history records (`Recorder.unwritten`: its end, its last looks and events) that the loop's
        flushes left after a failed write, written again up to END_HISTORY_RETRIES times, waiting
        END_HISTORY_WAIT_S doubled between (7.5 s in all; none once a signal stopped the rollout: its grace
        bounds each request). A refusal for good (ConfigError: a 403, no rights on configmaps) is not asked
        again. Still unwritten: one `history.end_unwritten` warning naming what is lost and where the end is
        read instead (the route's record). Never raises: the rollout ended as its exit code says."""
        rec = self.history
        wait = END_HISTORY_WAIT_S
        for _ in range(END_HISTORY_RETRIES):
            failure = getattr(rec, "last_failure", None)
            if not getattr(rec, "unwritten", False):
                break
            if isinstance(failure, GraceReserved):  # held back for the route's write, which is done: at once
                rec.flush()
                continue
            if isinstance(failure, (ConfigError, GraceSpent)):
                break  # a refusal for good, or a signal's grace spent: every request now is refused unsent
            self._wait_unless_signalled(wait)  # a signal ends the wait
            wait *= 2
            rec.flush()
        if not getattr(rec, "unwritten", False):
            return
        from canary.history_store import configmap_name

        failure = getattr(rec, "last_failure", None)
        where = f"{self.target.namespace}/{configmap_name(self.target.virtual_service, self.target.model)}"
        self.log.warning("history.end_unwritten", tries=getattr(rec, "failed_flushes", 0), pending=rec.pending,
                         error=f"{type(failure).__name__}: {failure}"[:500], configmap=where,
                         note=f"this rollout's end (its phase, last looks and events) is not in ConfigMap {where}, "
                              "which says it is in progress: `canary report` completes it from the route's record "
                              "only while that record is this rollout's, and a re-run's check for an earlier "
                              "rollback misses it once the record is another's; the end is on the route "
                              f"(`canary status {self.target.model} -n {self.target.namespace}`); the exit code is "
                              "the rollout's")

    def _run(self) -> Result:
        self._check_versions()  # before the clock read: a Prometheus that does not answer was retried first (674)
        self._on_prometheus_clock()
        try:
            state = self._current = self._start_when_free()
            if state.terminal:
                self.found_ended = True
                return Result(state, EXIT_CODES[state.phase])
            return self._loop(state)
        except BaseException as exc:  # any failure while traffic may be split: stable gets 100% first
            current = self._current  # the last state this process applied
            if current is None and self.refusal is not None and isinstance(exc, TransientError):
                # the route (or Prometheus) unreadable, so no earlier end found to report: the bad input is what
                # the person is told first (exit 2), as before decision 544; nothing was written
                raise self.refusal from None
            if current is None and isinstance(exc, GraceSpent):
                # a signal before the claim, whose grace ran out on a slow Prometheus or a hung API server (the
                # pod count's reads): said as what it is, not only as an unsent request (decision 128)
                raise GraceSpent(f"{self._signalled} before the rollout began, and "
                                 f"{exc}; this promote moved no traffic to the canary") from None
            if (current is None and self._wrote_first and isinstance(exc, CanaryError)
                    and self._before_claim not in str(exc)):  # an interrupt's error says it already
                # refused after an end this promote wrote before any claim: never "untouched" (decision 167)
                exc.args = (f"{exc}; before that, {self._wrote_first}", *exc.args[1:])
            elif current is None and not self._wrote_first and _untouched_exit_3(exc):
                # exit 3 means "untouched" before the claim and "stable 100%" after it: a pipeline's log said
                # "could not complete: <Prometheus or the API server's error>" alone, and whoever read it could
                # not tell whether a split was left or whether retrying the step was safe (decision 356)
                exc.args = (f"{exc}; {NO_TRAFFIC_MOVED}", *exc.args[1:])
            if current is None or current.terminal:
                raise
            reason = said(exc)
            ending, self._ending = self._ending, None
            if ending is None and current.phase == rl.PROMOTING:
                # every step passed and the canary already serves all traffic: finish, as an interrupt and
                # the sweep do; undoing it would move 100% back to the old version for an API error
                ending = rl.finish_promotion(current, self.clock.now())
            # a failed write that carried a decision (a rollback, a promotion's finish) is a warning: the end's own
            # line follows and carries its level (`rollback.completed`, an error for a bad canary, or the critical
            # `rollback.failed` when the fail-safe's budget is spent); two error lines said one rollback twice
            (self.log.warning if ending else self.log.error)(
                "rollout.failed", error=reason, phase=current.phase, weights=str(current.weights),
                **({"decided": ending[0].phase, "decided_reason": ending[0].reason} if ending else {}))
            cause = failure_cause(exc, self.target)
            try:
                final = self._fail_safe(current, reason=f"failed: {reason}"[:500], end=ending, cause=cause)
            except CanaryError as failed:
                # rollback.failed is logged; exit 3 (traffic had moved: never 2, "untouched"), with the
                # last state written to the route for the report (the aborted one when its weights landed);
                # exit 6 and `traffic.unsafe` when the route may still send traffic to the canary
                self._current = getattr(failed, "rollout_state", None) or current
                self.rollback_failed = True
                # the page's class is the end's: a rollback decided before the failure keeps its own (a failed
                # check's whose write met the VirtualService deleted; decision 683), as `rollback.failed` says
                decided = ending is not None and ending[0].phase in (rl.ROLLED_BACK, rl.ABORTED)
                unsafe = unsafe_traffic(self.router, self.target, log=self.log, error=str(failed),
                                        known=current.weights, cause=rl.cause_of(ending[0]) if decided else cause,
                                        refused=isinstance(failed, TargetError))
                kind = TrafficUnsafe if unsafe else RollbackFailed
                raise kind(f"{reason}; then stable 100% failed: {failed}{unsafe}") from None
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return Result(final, EXIT_INFRA if not final.terminal or final.phase == rl.ABORTED
                          else EXIT_CODES[final.phase])

    def _fail_safe(self, current: rl.RolloutState, *, reason: str, attempts: int = 3,
                   end: tuple[rl.RolloutState, list[rl.Action]] | None = None, cause: str = "") -> rl.RolloutState:
        """Stable 100% after a failure while traffic may be split, written only over a record this rollout
        owns (`_ours`), and guarded on the record just read: another rollout recorded on the route (of
        any version, in any phase, ended ones included: a promotion finished since) is left alone and
        this one ends taken over, nothing written; ours ended meanwhile (an on-call rollback) is kept, unless
        it is an end typed over our split (`unowned.to_end`): ended as `_end_typed` ends it (decision 524).
        When the route cannot be read, the write is guarded on this process's own last records (the
        last one written, and the last one sent, which may have landed unanswered). A guarded write that
        conflicts reads the route again (`attempts` in all). `end`: a decided end (a failing canary's
        rollback, an abort with its reason) whose own write failed: that end is written, so the record
        and the exit code say what was decided (a bad canary `rolled_back`, exit 1), not `aborted` with
        the API's error, exit 3. A promotion whose every step passed (PROMOTING: the canary serves all
        traffic) is finished the same way; only when that cannot be written within the budget does the
        old version get 100% (`promotion.unfinished`). Returns the final state; raises what `to_stable`
        raises when stable 100% could not be written. `cause`: the abort's class (`reconcile.failure_cause`)."""
        conflict: CanaryError | None = None
        said_unrecorded = said_lost = False
        for _ in range(attempts + 1 if end is not None and end[0].phase == rl.PROMOTED else attempts):
            read = self._read_record()
            if read is None:  # unreadable route: only over a record this process wrote
                guards = list(dict.fromkeys([self._written or None, self._sent or None]))
            else:
                text, theirs, weights, status = read
                # a record this process last wrote or sent is its own, cut to fit or not (`rl.carried`, decision 568)
                mine = self._own(text)
                if theirs is None and text and not mine and (
                        later := unowned.newer(text)):  # a newer canary's record: it took over (decision 169)
                    self._current = final = self._taken_by_newer(current, later)
                    return final
                lost, error = self._record_lost(text) if not said_lost and current.phase != rl.PROMOTING and (
                    end is None or end[0].phase != rl.PROMOTED) else ("", "")
                if lost:
                    # removed (or made unreadable) while the step failed: said as the watch says it, so on-call
                    # reads why stable got 100%, not the step's exception alone (decision 146)
                    said_lost = True
                    reason = f"{reason}; {self._say_lost(current, status, lost, error)}"[:1000]
                # a record as this process last read or sent it is its own (decision 131: the rollout it was
                # taking over, whether or not the take-over landed); otherwise, `_ours` says
                if theirs is not None and not mine and not _ours(current, theirs):
                    # ...but this rollout's version split under that record is nobody's: stable 100%, as the
                    # watch ends it. The fail-safe left it so, "taken over", nothing written (decision 145)
                    unrecorded = split_unrecorded(status, theirs, current.canary_version)
                    if not unrecorded:
                        self._current = final = self._taken_over(current, theirs)
                        return final
                    if not said_unrecorded:
                        said_unrecorded = True
                        say_split_unrecorded(self.log, unrecorded, theirs, weights)
                        reason = f"{reason}; {unrecorded}; stable 100%"[:1000]
                        if end is not None and end[0].phase == rl.PROMOTED:  # not finished over another's record
                            end = None
                elif theirs is not None and theirs.terminal and not (mine and end is not None):
                    # (the decided end this process sent, landed unanswered, is finished below as decided: its
                    # stable subset's pointing and its end line were never done, decision 568)
                    if not unowned.to_end(theirs, status):  # ours, ended meanwhile (an on-call rollback)
                        if theirs.phase != rl.PROMOTED and weights != STABLE_ONLY:
                            execute(self.router, self.target, theirs, [rl.SetWeights(STABLE_ONLY)], log=self.log,
                                    expect=text)
                        self._current = theirs
                        return theirs
                    if end is None or end[0].phase == rl.PROMOTED:
                        # ...but an end typed over our split is ended as the watch ends it (`_end_typed`) when a
                        # step's write failed (a decided end whose write failed, `_end_typed`'s own included, is
                        # written as decided, below): adopted, it was exit 1 "rolled back", or 0 "promoted" with
                        # the split left, under the typed record (decision 524)
                        end = self._typed_end(current, status, theirs)
                guards = [text]
            # an earlier stable-100% write had no answer: the page says it may have landed, even when the
            # fail-safe's own attempt is refused or not sent (decision 131)
            page = after_unanswered(None, self._unanswered_end) if self._unanswered_end else None
            for guard in guards:
                try:
                    final = to_stable(self.router, self.target, current, reason=reason, log=self.log,
                                      now=self.clock.now(), expect=guard, end=end, retry=page, cause=cause,
                                      told=lambda final, _: self._tell_end(final),  # at its write (725)
                                      subset_kept=self._subset_tries())
                except ConflictStorm:  # every try met 409, within to_stable's whole budget: a failure, not a decision
                    raise
                except RoutingConflict as exc:  # another writer recorded something since: read it again
                    conflict = exc
                    continue
                except CanaryError as exc:
                    if end is None or end[0].phase != rl.PROMOTED:
                        raise
                    # the promotion could not be finished in the budget: the old version gets 100% instead,
                    # over the record as it reads now (part of the promotion's writes may have landed)
                    self.log.warning("promotion.unfinished", error=str(exc), reason=reason,
                                     note="stable 100% on the old version instead")
                    end, conflict = None, exc
                    break
                self._current = final
                self._tell_end(final)
                self.history.observe(final)
                return final
        assert conflict is not None
        raise conflict

    def _own(self, text: str | None) -> bool:
        """Whether the record `text` read from the route is the one this process last wrote or sent, as the write
        carried it: whole, or cut to the room the object's other annotations left it (`rl.carried`, decision 563):
        the text on the route is then not the text built, and an exact comparison took it for another writer's."""
        return bool(text) and any(rl.carried(text, ours) for ours in (self._written, self._sent) if ours)

    def _read_record(self) -> tuple[str | None, rl.RolloutState | None, Any, RouteStatus] | None:
        """The route's record as text, parsed (None: none, or unreadable: nobody's rollout can run on
        it), its weights and the whole status read; None when the route could not be read."""
        try:
            status = read_for_stable(self.router, self.target)
        except BaseException:  # noqa: BLE001 - inside the fail-safe: any failure to read
            return None
        try:
            theirs = parse_state(status)
        except TargetError:
            theirs = None
        return status.state, theirs, status.weights, status

    def _on_prometheus_clock(self) -> None:
        """Run the rollout on Prometheus's clock (the system clock re-anchored at its `time()`): every
        time recorded (a step's start) and every window asked is then on the clock Prometheus's data
        carry, whichever machine runs or resumes the rollout. A promote resumed on a machine 300 s
        ahead measured a 300 s longer window, reaching back before its step, and passed it 2 s after
        it began. `clock.skew` in the log when the clocks differ by more than 2 s. Kept as it is for a
        clock that is not the system's (tests) or when Prometheus cannot tell (preflight says why)."""
        if type(self.clock) is not SystemClock:
            return
        prom_now = prometheus_time(self.metrics)  # a Prometheus that does not answer is preflight's to report
        if prom_now is None:
            return
        warn_skew(self.log, prom_now - self.clock.now(), note="this rollout's times are Prometheus's; run NTP")
        self.clock = SystemClock(anchor=prom_now)

    def _loop(self, state: rl.RolloutState) -> Result:
        while True:
            self._current = state
            if state.terminal:  # told before its history flush, as an end this run wrote (`_execute`)
                self._tell_end(state)
            self.history.observe(state)  # a change another process recorded; the end
            if self.on_update:
                self.on_update(state)
            if state.terminal:
                return Result(state, EXIT_CODES[state.phase])
            try:
                if state.phase == rl.PROMOTING:
                    state = self._decide(state, Observation())
                elif state.phase == rl.PENDING:
                    state = self._preflight(state)
                elif state.phase == rl.PAUSED and self.stop.is_set():
                    if self.on_interrupt == "pause":
                        return Result(state, EXIT_INTERRUPTED)
                    state = self._interrupted(state)  # paused by an operator: --on-interrupt rollback still holds
                else:
                    state = self._wait_and_look(state)
            except RoutingConflict as exc:
                state = self._adopt_outside(state, exc)
            except GraceReserved:
                # a read (the watch's, a heartbeat's) abandoned at the signal: the interrupt ends it as it would
                # have at its next check (`--on-interrupt pause` pauses), not the fail-safe (decision 407)
                if not self.stop.is_set():
                    raise
                state = self._interrupted(state)
            except _Interrupted:
                state = self._interrupted(state)

    # ---- phases ---------------------------------------------------------------------

    def _start_when_free(self) -> rl.RolloutState:
        """`_start`, read again every BUSY_POLL_S while another rollout holds the route (RolloutBusy: a live
        promote, one gone elsewhere whose record is still fresh, a CanaryRollout's, another model's on a shared
        VirtualService), up to `wait_busy_s` (`promote --wait-busy`; 0: refused at once, exit 75). A pipeline
        whose job starts while another job's rollout runs waits for it as Terraform's `-lock-timeout` waits for
        a lock, instead of a retry loop around the step (decision 386). Nothing is written while it waits
        (`preflight.waiting_for_route`, once, naming the holder); a signal ends the wait at once (exit 3,
        nothing written); at the deadline the last refusal is raised, saying how long it waited. The wait runs
        from the first refusal: a preflight slower than `wait_busy_s` (a loaded host, a slow Prometheus) was
        refused at once as if no wait had been given ("give --wait-busy DURATION": decision 803)."""
        asked, began, said = self.target, None, False
        while True:
            try:
                return self._start()
            except RolloutBusy as exc:
                now = self.clock.now()
                began = now if began is None else began
                waited = now - began
                if waited >= self.wait_busy_s:
                    # a pipeline's log: the route is busy, not the flags wrong (exit 75), and how to wait for it
                    # (after an end this promote wrote before losing the claim, `run` adds "before that, ...")
                    wrote = "" if self._wrote_first else "this promote wrote nothing: "
                    exc.args = ((f"{exc}; waited {waited:.0f}s for it (--wait-busy {self.wait_busy_s:g}s)" if said else
                                 f"{exc}; {wrote}run it again once that rollout has ended, or give --wait-busy "
                                 "DURATION to wait for it"), *exc.args[1:])
                    raise
                if self.stop.is_set():
                    raise self._interrupted_before_claim("while waiting for the rollout holding the route to end"
                                                         ) from None
                if not said:
                    self.log.info("preflight.waiting_for_route", holder=shown_owner(exc.holder), holder_job=exc.job,
                                  wait_busy_s=self.wait_busy_s, detail=str(exc))
                said = True
                until = self.clock.now() + min(BUSY_POLL_S, max(self.wait_busy_s - waited, 0.0))
            while not self.stop.is_set() and self.clock.now() < until:  # a signal is seen within 0.25 s, not 5 s
                self.clock.sleep(max(0.01, min(until - self.clock.now(), 0.25)))
            if self.stop.is_set():
                raise self._interrupted_before_claim("while waiting for the rollout holding the route to end")
            self.target = asked  # as given: the holder's route and versions are not this promote's

    def _check_versions(self) -> None:
        """The versions given are Kubernetes label values, and two (ConfigError, exit 2): checked before anything is
        read. One version given as both was refused only at the claim, after Prometheus's clock and the route were
        read (a Prometheus that does not answer retried first), where `--via-controller` and `analyze` refuse it
        before any request (decision 743)."""
        check_versions(self.target.canary_version, self.target.stable_version)

    def _start(self) -> rl.RolloutState:
        """Resume what is recorded, or check everything that can be checked and claim the route."""
        asked = self.target  # as given: what a second look at a route that changed during the pod wait starts from
        self._recorded_destination_rule()  # (the versions: checked by `_run`, before anything was read)
        try:
            status = self.router.inspect(self.target)
        except NotFound:
            raise
        except TargetError:  # no route named and "" picks none (several routes): the one a resume drives?
            read = self._read_record() if not self.target.route else None
            recorded = read[1] if read is not None else None
            if recorded is None or not recorded.route or not _resumable(recorded, self.target):
                raise
            # decision 82: no route named resumes on the route recorded, as `canary pause/resume/rollback` do
            self.target = replace(self.target, route=recorded.route)
            status = self.router.inspect(self.target)
        target = self.target
        status, existing = self._unowned_split(status)
        if existing is not None and _resumable(existing, target):  # a CanaryRollout's, another version's: RolloutBusy
            # decision 82: a resume drives the route the record says, never another one. Refused before any
            # write (the takeover's first write split the route asked, and the recorded one stayed split)
            if not same_route(status.routes, existing.route, target.route):
                raise ConfigError(f"{target.namespace}/{target.virtual_service}: "
                                  f"{route_refusal(target, existing, len(status.routes))}")
            # the same route spelled either way ("" and the only route's name): driven by the name recorded
            target = self.target = replace(target, route=existing.route or target.route)
            if target.stable_version and target.stable_version != existing.stable_version:
                raise ConfigError(f"--stable-version {target.stable_version} differs from the recorded rollout's "
                                  f"stable version {existing.stable_version}")
            # the recorded stable version is the truth (in PROMOTING the stable subset may already select the canary)
            self.target = replace(target, stable_version=existing.stable_version)
            self.log = self.log.bind(**rollout_context(self.target, existing))  # as a new rollout's lines carry it
            self._written = status.state or ""
            self._refuse_to_write()
            if self.stop.is_set():  # a signal before the take-over: the rollout is left as it was, nothing written
                raise CanaryError(f"{self._signalled} before this promote took over the "
                                  f"rollout of {existing.canary_version} in progress ({existing.phase} at "
                                  f"{existing.weights}); nothing was written: it is as it was "
                                  "(`canary promote` again resumes it, `canary rollback` ends it)")
            existing = self._take_over(existing)  # RolloutBusy while another promote process runs it
            self._current = existing  # this process's split from here: a failed write below ends at stable 100%
            edited = self._judged_elsewhere(existing)
            # a record typed into a state its policy never makes (`promoting` at 80/20, step 99) after its promote
            # was gone: taken over, `promoting` at 80/20 was finished at once, a canary judged at 20% promoted
            # (decision 157; the watch of a live promote ends it so, decision 148)
            off = "" if edited else rl.off_policy(existing, self.policy)
            if not edited and not off:
                self.log.info("rollout.resumed_from_state", phase=existing.phase, step=existing.step + 1,
                              route=target.route or "(the only one)",
                              weights=str(existing.weights), started_at=existing.started_at)
                # re-running promote on a paused rollout means "go on"; after a signal it stays paused, and the
                # loop ends it as --on-interrupt says
                if existing.phase == rl.PAUSED and not self.stop.is_set():
                    existing = self._resume(existing)
                return existing
            # judged so far under another policy or model: its looks are no evidence for this one. Stable
            # 100% (recorded aborted, `superseded: ...`), then this promote claims the route afresh below
            if off:
                reason = (f"the {STATE_ANNOTATION} annotation is no state of this rollout ({off}): edited by hand "
                          "after its promote was gone; this promote starts it again from the first step")
                self.log.warning("rollout.record_unreadable", reason=reason, phase=existing.phase,
                                 weights=str(status.weights), recorded_weights=str(existing.weights),
                                 hint=f"the annotation {STATE_ANNOTATION} is written by canary alone: never edit it "
                                      "by hand")
            else:
                reason = f"superseded: {edited} since the rollout began; this promote starts it again from the first step"
                self.log.warning("rollout.superseded", reason=reason, phase=existing.phase,
                                 weights=str(existing.weights))
            # taken over: this process owns the split; should this write fail, `run`'s fail-safe ends it
            self._current = existing
            # the record edited by hand is a foreign edit; the rollout's own spec edited (superseded), an operator's
            self._apply(*rl.transition(existing, rl.Rollback(self.clock.now(), reason, aborted=True,
                                                             cause="foreign_edit" if off else "operator"), self.policy))
            self._current = None  # at stable 100%: what fails from here on is reported as before a claim
            self._before_claim = (f"; the rollout of {existing.canary_version} it superseded was ended at stable 100% "
                                  "(recorded aborted), and no new one was claimed")
            self._wrote_first = (f"this promote ended the rollout of {existing.canary_version} it superseded at stable "
                                 "100% (recorded aborted)")
            status = self.router.inspect(self.target)
            target, existing = self.target, parse_state(status)
        if (existing is not None and existing.phase == rl.PROMOTED and existing.canary_version == target.canary_version
                and status.stable_subset_version == target.canary_version and status.weights == STABLE_ONLY):
            # promote is idempotent: a CD step re-run after its process was killed at the very end
            self.log.info("rollout.already_promoted", promoted_at=existing.updated_at)
            return existing
        # the same step re-run (a pipeline's retry on failure, a runner lost after the rollback): it reports that
        # rollback (exit 1), as a re-run reports a promotion, and as Argo Rollouts and Flagger never run a failed
        # revision again by themselves: each rerun put the bad version back in front of users and drew another
        # chance at a false pass. `--retry` runs it again. Read on the route's record, or, when that is another
        # model's on a shared VirtualService (or a sync stripped it), in the model's own history (decision 253)
        from canary.history_store import rollback_reported

        found = None if self.retry else rollback_reported(
            existing, status, getattr(self.history, "store", None), namespace=target.namespace,
            virtual_service=target.virtual_service, model=target.model, canary_version=target.canary_version,
            route=target.route)
        if found is not None:
            earlier, where = found
            self.log.info("rollout.already_rolled_back", rolled_back_at=earlier.updated_at, reason=earlier.reason,
                          note="nothing written; `--retry` runs this version again", **where)
            return earlier
        self._refuse_to_write()
        if not target.stable_version:
            target = self.target = replace(target, stable_version=status.stable_subset_version)
        try:
            check_claim(target, status, existing)
            unchecked = check_other_splits(self.router, target, log=self.log)  # another VirtualService's split (578)
        except RolloutBusy as busy:
            self._busy(asked, target, busy, existing)
            raise
        # bad input first (exit 2 at once): after the wait, a policy whose queries match nothing was reported
        # only once a pod was Ready, up to --wait-ready later, or never (exit 3 for the pods instead)
        self._preflight_metrics(target)
        if self._wait_for_pods(target):
            # up to --wait-ready went by since the route was read: who holds it, which version the stable subset
            # selects, the weights. Claimed on that old read, a stable subset re-pointed meanwhile was judged a
            # foreign edit after 20% had moved, and pointed back; decided again on what the route says now
            fresh = self.router.inspect(self.target)
            changed = [name for name, a, b in (("record", status.state, fresh.state),
                                               ("stable subset", status.stable_subset_version, fresh.stable_subset_version),
                                               ("canary subset", status.canary_subset_version, fresh.canary_subset_version),
                                               ("weights", status.weights, fresh.weights),
                                               ("routes", status.routes, fresh.routes)) if a != b]
            if changed or replace(fresh, resource_version="") != replace(status, resource_version=""):
                self.log.info("preflight.route_changed", changed=", ".join(changed) or "the route's objects",
                              note="changed while waiting for Ready pods: checked again before any write")
                self.target = asked
                return self._start()
            if not unchecked:  # and the other VirtualServices, which that read does not cover (585's addendum)
                try:
                    check_other_splits(self.router, target, log=self.log)
                except RolloutBusy as busy:
                    self._busy(asked, target, busy, None)
                    raise
        if self.stop.is_set():  # a signal during the checks: the claim is not written (docs/reference/cli.md: exit 3, untouched)
            raise self._interrupted_before_claim("during the checks before the claim")
        self._written = status.state or ""
        state, actions = rl.new_rollout(model=target.model, stable_version=target.stable_version,
                                        canary_version=target.canary_version, now=self.clock.now(),
                                        route=target.route, owner=self.owner, job=self.job,
                                        job_key=self.job_key, heartbeat_s=self.policy.analysis.look_every,
                                        destination_rule=target.dr_name,
                                        judged=judged_marks.marks(self.policy, target))
        self.log = self.log.bind(**rollout_context(target, state))
        try:
            return self._apply(state, actions)
        except GraceReserved:
            if not self.stop.is_set() or self._written != state.to_json():
                raise  # the claim itself was not written: nothing of this rollout is on the route
            # the claim landed and the canary subset's read after it was abandoned at the signal: the rollout is on
            # the route, pending; the loop's interrupt ends it (aborted), as a signal a moment later does. Raised,
            # it was said "before the rollout began" and the claim was left pending, the route held (decision 417)
            return state
        except RoutingConflict:  # another process claimed the route between our read and our write
            theirs = parse_state(self.router.inspect(self.target))
            who = describe_owner(theirs.owner, theirs.job) if theirs is not None else "another writer"
            raise RolloutBusy(f"{target.namespace}/{target.virtual_service}: claimed meanwhile ({who}); nothing "
                              "was moved by this promote", **_held_by(theirs)) from None
        except BaseException:
            if self._written == state.to_json():  # the claim landed, a write after it failed (the canary subset's)
                # the rollout is on the route: `run`'s fail-safe ends it (aborted), not left claimed and pending, said
                # "moved no traffic ... running the same command again is safe" (decision 417)
                self._current = state
            raise

    def _refuse_to_write(self) -> None:
        """`refusal`, raised where this promote would first write (end a split nobody owns, take a rollout over,
        claim the route): a re-run that only reports its version's earlier end never gets here (decision 544)."""
        if self.refusal is not None:
            raise self.refusal

    def _busy(self, asked: Target, target: Target, busy: RolloutBusy, existing: rl.RolloutState | None) -> None:
        """A busy refusal, by the rollout recorded on this route (`existing`) or on another VirtualService whose
        split it made (`busy.held`, decision 594): bad input behind it is exit 2 instead (`_input_behind_busy`), and
        it says when waiting alone will not free the route (`_nobody_frees`; for the other VirtualService's too: a
        promote of it that died left `--wait-busy` waiting for nothing, told only "wait for it to end", decision
        596)."""
        self._input_behind_busy(asked, target, busy)  # bad input is exit 2, not "busy, retry later"
        held = busy.held if isinstance(busy.held, rl.RolloutState) else existing
        if held is not None and (why := self._nobody_frees(held)):
            busy.args = (f"{busy}; {why}", *busy.args[1:])

    def _nobody_frees(self, held: rl.RolloutState) -> str:
        """What a busy refusal by the rollout `held` (another version's, or another model's) adds when waiting
        alone will not free the route: its promote is gone (it ran on this machine) or has not written its record
        for longer than a sweep waits (3 looks + 120 s: only a sweep, the controller's or `canary sweep`, ends it
        then, and none may run), or it is paused or pending (no sweep ends those). It said "finish it or run
        `canary rollback` first" alone, and a pipeline retried 75, or waited with `--wait-busy`, for a route
        nothing would free (decision 402). "" while its promote runs, or its owner is a CanaryRollout's."""
        from canary.sweep import abandoned_after

        if held.phase == rl.PAUSED:
            return ("it is paused: no sweep ends a paused rollout; `canary resume` (or its promote run again) goes "
                    "on with it, `canary rollback` ends it")
        if not is_promote_owner(held.owner) or held.terminal:
            return ""
        gone = _here(held.owner) == "gone"
        age, limit = self.clock.now() - held.updated_at, abandoned_after(held)
        if not gone and age <= limit:
            return ""
        quiet = ("its promote no longer runs (it ran on this machine)" if gone else
                 f"its promote has not written it for {age:.0f}s (a sweep ends it after {limit:.0f}s)")
        if held.phase == rl.PENDING:
            return f"{quiet}: no sweep ends a rollout pending at 100/0; `canary rollback` ends it"
        return (f"{quiet}: if that process is gone, a sweep (the controller's, or `canary sweep`) ends it at stable "
                "100%, or `canary rollback` now; without a sweep no retry frees the route")

    def _input_behind_busy(self, asked: Target, target: Target, busy: RolloutBusy) -> None:
        """Before a busy refusal (exit 75, "retry later"; `--wait-busy` waits on it): what this promote was given
        that is wrong whoever holds the route, which no retry or wait can mend, is its refusal instead (exit 2,
        nothing written): a policy or Prometheus that no look could use (a query Prometheus rejects, a URL that
        is no Prometheus, credentials refused: the metrics preflight's ConfigError, asked once per process); a
        `--stable-version` that is `--canary-version` too is refused before anything is read (`_check_versions`,
        decision 743). A retry rule on 75 retried a typo in the
        policy, and `--wait-busy 30m` waited half an hour to be told it (decision 400). What depends on the
        route (no stable data now, the subsets, the pods) is judged after the holder has ended, as before;
        Prometheus unavailable leaves the busy refusal as it is."""
        if self._busy_input_checked or not target.stable_version:  # no stable version known: the route's to say
            return
        self._busy_input_checked = True
        try:
            self._bounded(lambda: self.metrics.preflight(self.policy, target), abandoned=None)
        except _Interrupted:
            raise self._interrupted_before_claim("while the metrics preflight waited on Prometheus") from None
        except ConfigError as exc:
            raise ConfigError(f"{exc}; nothing was written (the route is held by another rollout now too: "
                              f"{busy})") from None
        except Exception:  # noqa: BLE001 - Prometheus unavailable now: the route is busy all the same
            return

    def _unowned_split(self, status: RouteStatus) -> tuple[RouteStatus, rl.RolloutState | None]:
        """The route's record as `_start` reads it (`status`: the route as read). An ended or unreadable record
        over weights that split two versions is nobody's (`canary.unowned`: `promoted` typed in after a promote
        was killed mid-step): it said "traffic is already split ... set it to 100/0 first" (or the record is
        unreadable) and left the split as it was. It is ended first, guarded on it: stable 100%, recorded
        `aborted`, `rollout.split_unowned`; then this promote reads the route again and claims it as any ended
        route (decision 157). An unreadable record over no split is refused as before (TargetError)."""
        unreadable: TargetError | None = None
        try:
            existing = parse_state(status)
        except TargetError as exc:
            existing, unreadable = None, exc
        if not unowned.to_end(existing, status, unreadable=str(unreadable or "")):
            if isinstance(unreadable, RecordTooNew):  # a newer canary's record schema: it says so itself (169)
                raise unreadable
            if unreadable is not None and (later := unowned.newer(status.state)):  # a live newer canary's? (167)
                raise TargetError(f"{unreadable}; {later}") from None
            if unreadable is not None:
                raise unreadable
            return status, existing
        self._refuse_to_write()
        if self.stop.is_set():
            raise self._interrupted_before_claim("before the split nobody owns was ended")
        said = unowned.claim(existing, str(unreadable or ""))
        try:
            # in the ended rollout's history too (decision 811): this run's recorder summarises its own policy
            unowned.end(self.router, self.target, existing, status, log=self.log, now=self.clock.now(), by="promote",
                        unreadable=str(unreadable or ""), written=self._tell_other,
                        history=getattr(self.history, "store", None))
        except RoutingConflict:
            raise RolloutBusy(f"{self.target.namespace}/{self.target.virtual_service}: the record changed while this "
                              f"promote was ending the split nobody owned under it; nothing was written by this "
                              "promote: run it again") from None
        except RollbackFailed as exc:
            # its stable 100% landed (or not), the stable subset's pointing after it failed: the error names the
            # route's subsets alone, and read in a pipeline's log of `promote v3` as v3's own end (decision 785)
            exc.args = (f"{exc}; this was the end of the split nobody owned under the route's record ({said}), which "
                        f"this promote writes before its claim: {self.target.canary_version} was not started (no "
                        "traffic moved to it)", *exc.args[1:])
            raise
        self._before_claim = (f"; the split nobody owned under the route's record ({said}) was ended at stable 100% "
                              "(recorded aborted), and no new rollout was claimed")
        self._wrote_first = (f"this promote ended the split nobody owned under the route's record ({said}) at stable "
                             "100% (recorded aborted)")
        status = self.router.inspect(self.target)
        return status, parse_state(status)

    def _preflight_metrics(self, target: Target) -> None:
        """`reconcile.preflight_metrics`; its refusal (exit 2, bad input) when the stable version has no Ready
        pod is StableNotReady (exit 3) naming its pods: a stable scaled to 0 or crash-looping has no series
        either, and "check policy metrics.labels" sent the on-call to the wrong place. Not waited for: its
        series appear only once traffic reaches the pods again, after the wait would have ended."""
        if self.stop.is_set():
            raise self._interrupted_before_claim("during the checks before the claim")
        try:  # in a worker: a signal ends the wait at once, not after every query's budget on a hung Prometheus
            self._bounded(lambda: preflight_metrics(self.metrics, self.policy, target, log=self.log), abandoned=None)
        except _Interrupted:
            raise self._interrupted_before_claim("while the metrics preflight waited on Prometheus") from None
        except ConfigError as exc:
            if not getattr(exc, "stable_blind", False):  # a bad query, URL or credentials: bad input, whatever the pods
                raise
            try:
                missing, _ = count_pods(self.router, target, log=self.log)
            except GraceSpent:  # a signal's grace ran out meanwhile: `run` says it was interrupted, not bad input
                raise
            except CanaryError:
                raise exc from None
            stable = [m for m in missing if m[0] != "canary"]
            if not stable:
                raise
            raise StableNotReady(f"{not_ready_message(stable, 0.0)}; and so {exc}") from exc

    @property
    def _signalled(self) -> str:
        """How a signal's errors begin: "interrupted (SIGTERM)"."""
        return f"interrupted ({self.interrupted_by or 'a signal'})"

    def _interrupted_before_claim(self, during: str) -> CanaryError:
        """The error of a signal that came before this promote claimed the route (exit 3): nothing was written,
        or only the end of a rollout it superseded (`_before_claim`)."""
        return CanaryError(f"{self._signalled} before the rollout began, {during}"
                           + (self._before_claim or "; nothing was written and no traffic moved"))

    def _resume(self, paused: rl.RolloutState) -> rl.RolloutState:
        """Resume the paused rollout this process has just taken over. A decision recorded meanwhile (an
        on-call resume, pause or rollback landing between the two writes) is adopted, as in the loop. A write
        refused or not sent leaves it paused as it was, nobody's to end (exit 3, `_left_paused`); one that may
        have landed (no answer) goes to `run`'s fail-safe: it may be progressing with nobody running it."""
        try:
            return self._apply(*rl.transition(paused, rl.Resume(self.clock.now()), self.policy))
        except RoutingConflict as exc:
            return self._adopt_outside(paused, exc)
        except CanaryError as exc:
            if may_have_landed(exc):
                raise
            self._current = None
            raise self._left_paused(paused, exc) from None

    def _left_paused(self, paused: rl.RolloutState, exc: BaseException) -> CanaryError:
        """The error (exit 3) of a re-run that could not take over or resume a paused rollout: it is as the
        operator left it, held at its split; nothing of this promote changed the traffic."""
        return CanaryError(f"{self.target.namespace}/{self.target.virtual_service}: could not take over and resume "
                           f"the paused rollout of {paused.canary_version} ({exc}); it is still paused at "
                           f"{paused.weights}, as it was: `canary promote` again resumes it, `canary rollback` ends it")

    def _wait_for_pods(self, target: Target) -> bool:
        """Before the claim (nothing written yet): wait up to `wait_ready_s` for a Ready pod of the canary
        version and one of the stable version (`reconcile.check_pods`), asking every `POD_POLL_S`;
        CanaryNotReady or StableNotReady (the arm with none) when none came (exit 3, nothing moved), or at
        once when a signal arrives meanwhile. A read that failed (KubeUnavailable) is waited through as a pod
        not Ready is; still failing at the deadline, it is the error (exit 3). Returns whether it waited (both
        had a Ready pod at the first look: False)."""
        started = self.clock.now()
        said = False
        refused: type[PodsNotReady] = CanaryNotReady  # the arm the last look found without a Ready pod

        def interrupted() -> PodsNotReady:
            arm = "the stable" if refused is StableNotReady else "the canary"
            version = target.stable_version if refused is StableNotReady else target.canary_version
            return refused(f"interrupted while waiting for a Ready pod of {arm} {version}; nothing was moved")
        while True:
            waited = self.clock.now() - started
            if said and self.stop.is_set():  # before the read: a pod Ready by now must not start what was cancelled
                raise interrupted()
            try:
                check_pods(self.router, target, log=self.log, waited_s=waited)
                return said
            except (PodsNotReady, KubeUnavailable) as exc:
                # a read that kept failing (a 5xx on the pods LIST) is one more look that found no Ready pod:
                # it ended a 10-minute wait with most of it unused; at the deadline it is the error
                if isinstance(exc, PodsNotReady):
                    refused = type(exc)
                if waited >= self.wait_ready_s:
                    raise
                if self.stop.is_set():
                    raise interrupted() from None
                if not said and isinstance(exc, StableNotReady):
                    self.log.info("preflight.waiting_for_stable_pods", wait_ready_s=self.wait_ready_s, detail=str(exc))
                elif not said:
                    self.log.info("preflight.waiting_for_canary_pods", wait_ready_s=self.wait_ready_s, detail=str(exc))
                said = True
            until = self.clock.now() + min(POD_POLL_S, max(self.wait_ready_s - waited, 0.0))
            while not self.stop.is_set() and self.clock.now() < until:  # a signal is seen within 0.25 s, not 5 s
                self.clock.sleep(max(0.01, min(until - self.clock.now(), 0.25)))

    def _recorded_destination_rule(self) -> None:
        """A resume drives the DestinationRule its rollout recorded (`RolloutState.destination_rule`, the
        name it resolved to), as it drives the route it recorded: with no --destination-rule it is taken
        from the record (the VirtualService's name named another object, or none: a re-run without the
        flag failed on a missing DestinationRule, or judged and re-pointed the subsets of another one);
        another one named is refused before any write (ConfigError, exit 2), naming both. Only a rollout
        this promote would resume (`_resumable`) lends its DestinationRule."""
        read = self._read_record()
        recorded = read[1] if read is not None else None
        if recorded is None or not recorded.destination_rule or not _resumable(recorded, self.target):
            return
        if not self.target.destination_rule:
            self.target = replace(self.target, destination_rule=recorded.destination_rule)
        elif self.target.dr_name != recorded.destination_rule:
            raise ConfigError(f"{self.target.namespace}/{self.target.virtual_service}: the rollout of "
                              f"{recorded.canary_version} in progress ({recorded.phase}, weights {recorded.weights}) "
                              f"drives DestinationRule {recorded.destination_rule!r}, and this promote asks "
                              f"--destination-rule {self.target.dr_name}; nothing was written: re-run with "
                              f"--destination-rule {recorded.destination_rule} (or without it) to resume it, or end "
                              f"it with `canary rollback`")

    def _judged_elsewhere(self, existing: rl.RolloutState) -> str:
        """What of the policy (or the model) this promote judges under differs from what the recorded
        rollout `existing` was judged under (`RolloutState.judged`, written with its claim), in the
        policy's field names; "" when nothing does, or the record predates the marks. A promote re-run
        with an edited policy file (steps, analysis, checks, metric selectors) would judge the rest of
        the rollout under it with the evidence gathered under the old one."""
        if not existing.judged:
            return ""
        series, how = judged_marks.edited(existing.judged, judged_marks.marks(self.policy, self.target))
        parts = judged_marks.describe(series, how, was_model=existing.model, model=self.target.model,
                                      model_field="--model")
        return ", ".join(x for x in parts if x)

    def _take_over(self, existing: rl.RolloutState) -> rl.RolloutState:
        """Make a recorded promote rollout this process's (`owner` = its own `promote#...`). Another
        promote process that still runs it (alive on this machine, or its record written less than 2 ×
        its look_every + 60 s ago; not paused) keeps it: RolloutBusy, so two processes never judge one
        rollout. One that is gone (its pid gone here, or its record stale), a paused rollout (re-running promote means "go on"; a process
        holding it sees the new owner and stops, taken over) or a record with no owner is taken over by
        a write guarded on what was read: of two promotes taking over at once, one wins."""
        if existing.owner == self.owner:
            return existing
        age = self.clock.now() - existing.updated_at
        # by the owner's own time between writes (its look_every, recorded), not this process's policy
        stale_after = 2 * max(existing.heartbeat_s, self.policy.analysis.look_every) + 60.0
        here = _here(existing.owner)  # alive or gone, when it ran on this machine (same pid namespace)
        # a re-run of the very CI job whose earlier attempt holds it (a GitHub re-run, a GitLab retry): the CI
        # starts it only once that attempt ended, so its record's age tells nothing more (decision 454). A process
        # still alive here keeps it; one cut off from its CI but not from the cluster finds the new owner at its
        # next write (guarded on the record it read) and stops, taken over, writing nothing
        rerun = here != "alive" and ci_job.earlier_attempt(existing.job_key, self.job_key)
        if existing.owner and existing.phase != rl.PAUSED and not rerun and (
                here == "alive" or (here != "gone" and age < stale_after)):
            when = ("it runs on this machine: stop it first, or `canary rollback`" if here == "alive" else
                    f"if that process is gone, run this again after {stale_after - age:.0f}s, or `canary rollback` now")
            raise RolloutBusy(f"{self.target.namespace}/{self.target.virtual_service}: the rollout of "
                              f"{existing.canary_version} is {describe_owner(existing.owner, existing.job)}, which "
                              f"wrote it {max(age, 0):.0f}s ago; {when}", holder=existing.owner, job=existing.job)
        # written now (updated_at): its age is this process's from here on, not its predecessor's
        if rerun and existing.phase != rl.PAUSED and here != "gone" and age < stale_after:
            self.log.info("rollout.rerun_takes_over", holder=shown_owner(existing.owner),
                          holder_job=existing.job or None, written_s_ago=round(max(age, 0.0)),
                          note="an earlier attempt of this CI job holds it; the CI ended that attempt before this one "
                               "started")
        taking = replace(existing, owner=self.owner, job=self.job, job_key=self.job_key, heartbeat_s=self.policy.analysis.look_every,
                         updated_at=self.clock.now())
        try:  # guarded on the record read (`_written`)
            return self._apply(taking, [rl.SetWeights(existing.weights)])
        except RoutingConflict as exc:
            read = self._read_record()
            if read is None or read[0] != self._written:  # another writer recorded something: theirs to run
                theirs = read[1] if read is not None else None
                now = (f"it now records {theirs.canary_version} {theirs.phase} "
                       f"({describe_owner(theirs.owner, theirs.job)})"
                       if theirs is not None else "it could not be read again")
                raise RolloutBusy(f"{self.target.namespace}/{self.target.virtual_service}: the route's record "
                                  f"changed while this promote took the rollout of {existing.canary_version} over: "
                                  f"{now}; nothing was written by this promote", **_held_by(theirs)) from None
            failed: BaseException = exc  # still as read: every write refused as a conflict (a 409 storm)
        except BaseException as exc:
            failed = exc
        if existing.phase == rl.PAUSED:
            # a take-over changes neither weights nor phase: landed or not, the rollout is paused as the operator left
            # it, held at its split, and stays so (decision 131 e)
            if isinstance(failed, (KeyboardInterrupt, SystemExit)):
                raise failed
            raise self._left_paused(existing, failed) from None
        # decided to take the split over: this process answers for it whether or not the write landed, and
        # `run`'s fail-safe gives stable 100% over the record as read or as taken over (decision 131)
        self._current = taking
        raise failed

    def _preflight(self, state: rl.RolloutState) -> rl.RolloutState:
        """The gate's pre-traffic checks (PENDING: claimed at 100/0, the canary subset already on the canary
        version), then the first step. The route is watched while the gate runs (a Triton warm-up lasts as
        long as the model takes to load and answer): weights edited meanwhile go back to 100/0 at once
        (`weights.foreign_edit`, `weights.reasserted`), and any other outside change ends the gate as it
        ends a step. Unwatched, a 50/50 edit gave the canary half the traffic, unjudged, until the first
        step was written (decision 146)."""
        if self.gate is not None:
            watched = [state]
            watch_failed: list[BaseException] = []

            def watch_meanwhile() -> bool:
                """True when the watch ended the rollout, or failed: the gate is abandoned. The record's
                heartbeat goes on meanwhile, after the watch found the route as this process left it: a
                warm-up longer than 2 x look_every + 60 s (a model still loading) was taken over by a second
                promote on another machine, and this one ended "taken over" (decision 150)."""
                if self.clock.now() < self._next_watch:
                    return False
                self._next_watch = self.clock.now() + self.watch_every
                try:
                    seen = self._check_outside(watched[-1])
                    # its rollback's write failing is the watch's too, never `gate.failed` (decision 689)
                    split = self._split_while_held(seen) if seen.phase == rl.PENDING else None
                except BaseException as exc:  # the watch's, not the gate's: see below
                    watch_failed.append(exc)
                    return True
                if seen.phase == rl.PENDING:
                    seen = split or self._heartbeat(seen)
                if seen.phase != rl.PENDING or seen.to_json() != watched[-1].to_json():
                    watched.append(seen)
                return seen.terminal

            try:
                # a signal abandons the gate, said as the gate's (it said `look.abandoned`: no look was running)
                report = self._bounded(self.gate.preflight, meanwhile=watch_meanwhile, abandoned="gate.abandoned")
            except _Decided:
                if watch_failed:
                    # raised as a step's watch raises it (a conflict: `_adopt_outside`; anything else: `run`'s
                    # fail-safe). Caught below, a route edited into a shape the watch refuses (weights 50+60,
                    # a second HTTP route) or a write refused was the gate's failure: `gate.failed`, the good
                    # canary rolled back, exit 1 (decision 148)
                    raise watch_failed[0] from None
                return watched[-1]
            except CanaryError as exc:
                return self._decide(watched[-1], Observation(gate_ran=True, gate_failed=str(exc)))
            state = watched[-1]
            if state.phase != rl.PENDING:  # a person's command adopted meanwhile (a pause): the loop goes on from it
                return state
            self._emit(state, "gate.passed", report)
            self.history.gate(at=self.clock.now(), stage="preflight", outcome="passed", detail=gate_detail(report))
        return self._decide(state, Observation(gate_ran=True))

    def _wait_and_look(self, state: rl.RolloutState) -> rl.RolloutState:
        """Sleep until the next look, probing the canary and watching for outside changes. The watch
        also runs right before every look: what is judged must be what is routed (subsets, weights,
        record), and a look every second must not starve it (`_next_watch` is kept across calls)."""
        progressing = state.phase == rl.PROGRESSING
        due = max(next_look_at(self.policy, state), self._look_not_before) if progressing else \
            self.clock.now() + self.watch_every
        while True:
            now = self.clock.now()
            if self.stop.is_set():
                raise _Interrupted()
            if self.gate is not None and progressing and now >= self._next_probe:
                self._next_probe = now + self.gate.probe_interval
                failed = self._probe(state)
                if failed:
                    return failed
            if now >= self._next_watch or now >= due:
                outside = self._check_outside(state)
                self._next_watch = now + self.watch_every
                if outside is not state:
                    return outside
            if now >= due:
                return self._look(state) if progressing else state
            if not progressing and (split := self._split_while_held(state)) is not None:
                return split
            state = self._heartbeat(state)
            step = min(due, self._next_watch) - now
            if self.gate is not None:
                step = min(step, max(self._next_probe - now, 0.0))
            self.clock.sleep(max(0.01, min(step, 0.25)))

    def _look(self, state: rl.RolloutState) -> rl.RolloutState:
        now = self.clock.now()
        window = look_window(self.policy, state, now)
        failed: list[rl.RolloutState] = []

        def probe_meanwhile() -> bool:
            """The canary is probed while the look waits on Prometheus (a slow one held the probes for
            a whole look: a hung canary kept its traffic 45 s); True when the probes decided. The record's
            heartbeat goes on meanwhile too, once the look itself has lasted a look_every (its own clock:
            a look that ends in time writes its record, and no beat races it)."""
            if self.clock.now() - now >= self.policy.analysis.look_every:
                self._heartbeat(state)
            if self.gate is None or state.phase != rl.PROGRESSING or self.clock.now() < self._next_probe:
                return False
            self._next_probe = self.clock.now() + self.gate.probe_interval
            got = self._probe(state)
            if got is not None:
                failed.append(got)
            return got is not None

        try:
            measurements, canary_n, uncounted, covered = self._bounded(
                lambda: measure_window(self.metrics, self.policy, self.target, window_s=window, log=self.log),
                meanwhile=probe_meanwhile)
        except _Decided:
            # logged after the probes' rollback landed (its rollback.completed came first): the phase and
            # weights as recorded and routed now, not the look's "progressing 90/10"
            ended = failed[0]
            self.log.warning("look.abandoned", reason="the canary's probes failed meanwhile", phase=ended.phase,
                             weights=str(ended.weights), step=ended.step + 1)
            return ended
        behind = self._prometheus_behind(now, state)
        if behind:  # its window reached back before the step: not judged, the next look on Prometheus's clock
            self.log.warning("look.discarded", reason=behind, phase=state.phase, weights=str(state.weights),
                             recorded_weights=str(state.weights), step=state.step + 1)
            moved = self._moved_back[1]  # in this step, this look's move included
            if self.clock.now() + moved - state.step_started_at < self.policy.analysis.interval + \
                    self.policy.failure.no_data_deadline:
                # not judged, but looked at: another VirtualService's split ends the rollout now, not at the step's
                # deadline (a stalled Prometheus held every look back from 602's look; decision 640)
                return self._split_ends(state) or state
            # looks discarded up to the step's deadline on this process's clock, the moves back not taken off
            # (Prometheus's clock stopped or slow: every look behind again): no verdict, ended as the policy's
            # `on_deadline` says, at the step's age as this process counted it (decisions 614, 634)
            measurements = {c.name: NotCountable(behind) for c in self.policy.checks}
            canary_n, uncounted, covered = 0.0, behind, None  # type: ignore[assignment]
        reverted = self._reverted_meanwhile(state)
        if reverted is not None:
            return reverted
        split = self._split_ends(state)
        if split is not None:  # not judged: the rollout ends (decision 602)
            return split
        if behind:  # the state machine's deadline read at that age (a hold's resume starts the step over)
            state = replace(state, step_started_at=state.step_started_at - moved)
        from canary.analysis.judge import judge  # imported here: on-call commands use this module, never the judge

        verdict = judge(self.policy, measurements, prior=state.prior(), window=state.step_window,
                        pass_ratio=state.pass_ratio(canary_n), canary_weight=state.weights.canary,
                        step=max(state.step, 0), window_s=window, canary_version=state.canary_version)
        looked = rl.Looked(self.clock.now(), verdict, canary_n, covered, uncounted=uncounted,
                           deadline_cause="infrastructure" if behind else "")
        unchecked = self._promotion_unchecked(state, looked)
        if isinstance(unchecked, rl.RolloutState):
            return unchecked  # the look asked again found a split: rolled back (602)
        if unchecked:  # not promoted over a split nobody could look for: this look is inconclusive (decision 900)
            verdict = held_verdict(self.policy, state, unchecked, canary_n, window)
            looked = replace(looked, verdict=verdict, deadline_cause="infrastructure",
                             promotion_held=self._others_unchecked[:400] or unchecked)
        try:
            # lands only on the weights `_reverted_meanwhile` confirmed: a revert after that read is not written over
            # a step whose looks Prometheus's clock kept discarding ends for Prometheus, not for the canary (647)
            return self._decide(state, Observation(look=looked), routed=state.weights)
        except WeightsMoved as exc:
            # as if `_reverted_meanwhile` had read it: not judged, and the watch's answer taken (decision 185)
            self.log.warning("look.discarded", reason="the route's weights were changed outside the rollout before "
                             "the look's write could land: not judged at a weight the canary did not have",
                             phase=state.phase, weights=exc.found, recorded_weights=str(state.weights),
                             step=state.step + 1)
            return self._check_outside(state)
        except RoutingConflict as exc:
            if not isinstance(exc, ConflictStorm):  # another writer's record since `_reverted_meanwhile`: adopted
                self.log.warning("look.discarded", reason="the route's record was changed outside the rollout "
                                 "before the look's write could land: not judged", phase=state.phase,
                                 weights="unknown", recorded_weights=str(state.weights),
                                 step=state.step + 1)
            raise

    def _prometheus_behind(self, now: float, state: rl.RolloutState) -> str:
        """Why the look measured at `now` is not judged ("" when it is): Prometheus evaluated it (`last_instant`,
        its own clock) more than SKEW_WARN_S behind this rollout's clock, anchored at Prometheus's `time()` when
        the rollout started (`_on_prometheus_clock`). Its clock moved since (a Prometheus rescheduled onto a node
        whose clock is behind): the look's window, the step's age, ended at Prometheus's now and so reached back
        before the step, over data at another weight that the window before it judged. The clock goes back to
        Prometheus's (`clock.skew`): the step looks younger for that long, never older. A Prometheus ahead is
        kept: its windows start after the step's start, never before it (decision 575). A Prometheus behind at
        every look (its clock stopped, or slow) moves the clock back at every look and the step never ages on it:
        the moves back in the step are added up (`_moved_back`), and `_look` ends a step whose looks are still
        discarded once it is as old as its deadline without them (decisions 614, 634). A second jump back in the
        step (Prometheus rescheduled again) moves the clock back too, and the looks after it are judged."""
        stamp = getattr(self.metrics, "last_instant", None)
        if type(self.clock) is not SystemClock or not isinstance(stamp, (int, float)) or not math.isfinite(stamp) \
                or stamp >= now - SKEW_WARN_S:
            return ""
        start, moved = self._moved_back
        again = start == state.step_started_at
        warn_skew(self.log, stamp - now, note=("Prometheus's clock is behind this rollout's again in this step "
                  "(stopped, or slow?)" if again else "Prometheus's clock moved behind this rollout's since it "
                  "started") + ": the rollout's clock is Prometheus's again; run NTP")
        self.clock = SystemClock(anchor=stamp + (self.clock.now() - now))
        self._moved_back = (state.step_started_at, (moved if again else 0.0) + now - stamp)
        moved_how = "again in this step: stopped, or slow?" if again else \
            "since the rollout started: restarted on another node?"
        return (f"Prometheus evaluated the look {now - stamp:.0f}s behind this rollout's clock (its clock moved "
                f"{moved_how}): the step's window reached back before the step; not judged, the next look on "
                "Prometheus's clock; no verdict if its looks are still behind at the step's deadline")

    def _reverted_meanwhile(self, state: rl.RolloutState) -> rl.RolloutState | None:
        """A look's data were measured while the route may have left our weights (a GitOps tool reverting them
        between the watch's reads): the route is read once more before the look is judged. The look counts
        only when the route still carries our weights and the record this process last wrote (`_written`, its
        heartbeat included); otherwise it is not judged (`look.discarded`: its window may have held a weight
        the canary did not have) and the watch's answer is taken instead (reassert with the window started
        over, decision 170; another writer's record adopted or left). A route that cannot be read is no
        confirmation either: the look is discarded too, the watch reads again (a transient failure says
        `watch.failed`, anything else ends as the watch's does), and the next look waits a `watch_every`.
        Before, an unreadable route let the look be judged, and its write put our weights back over a revert
        nobody had read (decision 171). None when the look counts."""
        try:
            status = self.router.inspect(self.target)
        except CanaryError as exc:
            self.log.warning("look.discarded", reason=f"the route could not be read after the look measured "
                             f"({exc}): not judged, its weights unconfirmed"[:600], phase=state.phase,
                             weights="unknown", recorded_weights=str(state.weights), step=state.step + 1)
            self._look_not_before = self.clock.now() + self.watch_every
            return self._check_outside(state)
        if status.weights == state.weights and (status.state or "") == self._written:
            return None
        what = "weights" if status.weights != state.weights else "record"
        self.log.warning("look.discarded", reason=f"the route's {what} changed outside the rollout while the "
                         "look measured: not judged at a weight the canary did not have", phase=state.phase,
                         weights=str(status.weights), recorded_weights=str(state.weights), step=state.step + 1)
        return self._check_outside(state)

    def _split_ends(self, state: rl.RolloutState) -> rl.RolloutState | None:
        """The rollout rolled back (`split.foreign_edit`) where `_split_elsewhere` finds a split; None where not."""
        other = self._split_elsewhere()
        return None if other is None else self._decide(state, Observation(split_elsewhere=other))

    def _split_while_held(self, state: rl.RolloutState) -> rl.RolloutState | None:
        """Paused, or claimed at 100/0 while its gate runs: no look comes, and 602's look came only with looks, so a
        split made meanwhile on another VirtualService reached the canary unjudged until the first look after the
        resume (or the gate). Looked for every `look_every` (one LIST, as a look's), rolled back as at a look
        (`_split_ends`); None where nothing is due or none is found (decision 656)."""
        now = self.clock.now()
        if now < self._next_split_look:
            return None
        self._next_split_look = now + self.policy.analysis.look_every
        return self._split_ends(state)

    def _split_elsewhere(self) -> Any:
        """At each look, before it is judged: a split with the canary subset on another VirtualService of the
        namespace made since the claim (the gateway's beside the mesh's: `claims.OtherSplit`), one LIST of every
        namespace's VirtualServices (the namespace's alone where RBAC allows no more, decision 844); None when there
        is none, or it could not be told (a Role without `list`, said once at the claim and not asked again; a
        failing or timed-out LIST: the next look asks again, with no line). Decision 602."""
        find = getattr(self.router, "split_in_others", None)
        if find is None or self._splits_unlisted:
            return None
        try:
            other, unknown = find(self.target, glance=True)  # one try: a failing API server does not hold the look
        except CanaryError as exc:
            self._others_failed(str(exc))
            return None
        self._splits_unlisted, self._others_unchecked, self._held_said = bool(unknown), "", False
        return other

    def _promotion_unchecked(self, state: rl.RolloutState, looked: rl.Looked) -> rl.RolloutState | str:
        """Before a look's pass promotes (`decide` previewed, pure): where this look could not tell whether another
        VirtualService splits with the canary subset (`_others_unchecked`), it asks once more (one try, a short
        timeout); a split found then rolls the rollout back (its state returned); still unknown, why (the look is
        then made inconclusive by its caller, the step's deadline bounding the wait as for any look without a
        verdict: `failure.on_deadline`). "" where the promotion may go on. Decision 900."""
        if not self._others_unchecked:
            return ""

        steps = decide(self.policy, state, Observation(look=looked), self.clock.now())
        if not any(new.phase == rl.PROMOTING for new, _ in steps):
            return ""
        split = self._split_ends(state)
        if split is not None:
            return split
        if not self._others_unchecked:
            return ""
        why = promotion_held_why(self._others_unchecked)
        if not self._held_said:  # once a streak: each held look after it is inconclusive with this reason (945)
            self._held_said = True
            self.log.warning("promotion.held", reason=why, phase=state.phase, weights=str(state.weights),
                             step=state.step + 1, note=promotion_held_note(self.policy.failure.on_deadline))
        return why

    def _others_failed(self, why: str) -> None:
        """A look's LIST of the other VirtualServices failed (not a 403: a 5xx, a timeout, a reset, an answer that
        does not parse): said once a streak, `look.splits_unchecked`; the look is judged, the next asks again, and
        no promotion is made until one could tell (`_promotion_unchecked`; decision 900)."""
        if not self._others_unchecked:
            t = self.target
            self.log.warning("look.splits_unchecked", error=why[:600],
                             note="whether another VirtualService (of any namespace) splits traffic with the canary "
                                  "subset is not known at this look: it is judged, the next look asks again, and the "
                                  "rollout is not promoted until a look could tell",
                             hint=f"kubectl get virtualservices --all-namespaces -o yaml: a route to subset 'canary' "
                                  f"of DestinationRule {t.namespace}/{t.dr_name}'s host sends it traffic unjudged")
        self._others_unchecked = why or "the VirtualServices could not be listed"

    def _bounded(self, fn: Callable[[], T], *, meanwhile: Callable[[], bool] | None = None,
                 abandoned: str | None = "look.abandoned") -> T:
        """Run `fn` in a worker thread; a signal abandons it at once (raises _Interrupted, after the warning
        `abandoned` when not None), so the time from SIGTERM to stable 100% does not depend on what a look is
        waiting on. `meanwhile` runs while it waits; when it returns True, `fn` is abandoned too (raises
        _Decided)."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="canary-look", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if self.stop.is_set() and worker.is_alive():
                if abandoned == "gate.abandoned":
                    self.log.warning(abandoned, reason="interrupted", stage="preflight",
                                     note="the Triton gate's pre-traffic checks were running; no traffic had moved")
                elif abandoned:
                    self.log.warning(abandoned, reason="interrupted")
                raise _Interrupted()
            if meanwhile is not None and worker.is_alive() and meanwhile():
                raise _Decided()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def _probe(self, state: rl.RolloutState) -> rl.RolloutState | None:
        assert self.gate is not None
        if self._bounded(self.gate.ready):
            self._probe_failures = 0
            return None
        self._probe_failures = probe_streak(self.gate, self._probe_failures)
        self.log.warning("gate.probe_failed", consecutive=self._probe_failures, limit=self.gate.probe_failures,
                         **probe_server(self.gate), reason=getattr(self.gate, "last_failure", "") or "",
                         phase=state.phase, weights=str(state.weights), step=state.step + 1)
        if self._probe_failures < self.gate.probe_failures:
            return None
        return self._decide(state, Observation(
            probe_failed=probe_reason(self.gate, self._probe_failures)))

    def _check_outside(self, state: rl.RolloutState) -> rl.RolloutState:
        """Adopt `canary rollback/pause/resume` from another process; re-assert foreign weight edits;
        abort when the subsets no longer select the versions being judged."""
        try:
            status = self.router.inspect(self.target)
        except TransientError as exc:
            self.log.warning("watch.failed", error=str(exc))
            return state
        if (status.state or "") != self._written:
            lost, error = self._record_lost(status.state)
            if lost and state.phase != rl.PROMOTING:
                return self._record_removed(state, status, lost, detail=error)
            if later := unowned.newer(status.state):
                return self._taken_by_newer(state, later)
            theirs = parse_state(status)
            if theirs is not None:
                return self._adopt_record(state, status, theirs)
        return self._decide(state, Observation(
            status=status, virtual_service=f"{self.target.namespace}/{self.target.virtual_service}"))

    def _taken_over(self, state: rl.RolloutState, theirs: rl.RolloutState) -> rl.RolloutState:
        """The route records another rollout (of this version: a CanaryRollout's, or a new one started
        after an on-call rollback ended ours; or of another version, in any phase, a finished promotion
        included): ours has ended, nothing is written (theirs is left alone), promote exits 3. The log
        line `rollout.taken_over` says who holds the route."""
        holder = describe_owner(theirs.owner, theirs.job)
        why = (f"taken over: the route records another rollout of {theirs.canary_version} "
               f"({holder}, {theirs.phase}); this one ended, theirs is left alone")
        self.log.warning("rollout.taken_over", owner=theirs.owner, holder=holder, holder_job=theirs.job or None,
                         recorded_canary_version=theirs.canary_version, recorded_phase=theirs.phase,
                         recorded_started_at=theirs.started_at, note="nothing written")
        return replace(state, phase=rl.ABORTED, reason=why, updated_at=self.clock.now(), end_cause="foreign_edit")

    def _taken_by_newer(self, state: rl.RolloutState, later: str) -> rl.RolloutState:
        """The route's record is now one this canary cannot read but a newer canary may have written (`later`,
        `unowned.newer`: a record schema above ours, or a phase we do not know): it took this rollout over, mid
        rolling upgrade of canary itself. Ended as `_taken_over` ends it: nothing written, exit 3 (a stable-100%
        write here undid the newer canary's live rollout, decision 169)."""
        why = f"taken over: {later}; this one ended, nothing written"
        self.log.warning("rollout.taken_over", holder="a newer canary", error=later[:600], note="nothing written")
        return replace(state, phase=rl.ABORTED, reason=why[:1000], updated_at=self.clock.now(),
                       end_cause="foreign_edit")

    def _interrupted(self, state: rl.RolloutState) -> rl.RolloutState:
        now = self.clock.now()
        why = f"interrupted by {self.interrupted_by}" if self.interrupted_by else "interrupted"
        if self.on_interrupt == "pause" and state.phase in (rl.PROGRESSING, rl.PAUSED):
            return self._apply(*rl.transition(state, rl.Pause(now, f"{why}; resume with `canary promote`"), self.policy))
        if state.phase == rl.PROMOTING:  # finishing is quicker and safer than undoing a promotion half-way
            return self._apply(*rl.finish_promotion(state, now))
        # PENDING, in either mode: no traffic has moved, there is no split to hold; recorded aborted, exit 3
        return self._apply(*rl.transition(state, rl.Rollback(now, why, aborted=True, cause="interrupted"),
                                          self.policy))

    # ---- actions --------------------------------------------------------------------

    def _decide(self, state: rl.RolloutState, seen: Observation, *, routed: Weights | None = None) -> rl.RolloutState:
        """The shared reconcile step (`reconcile.decide`), each write guarded on the previous one. Once a
        signal has arrived (`stop`), no write that moves traffic toward the canary is made (the first
        step after the gates, the next step after a pass, the promotion's 100%): `_Interrupted`
        instead, and the interrupt ends the rollout from the traffic as it is. `routed`: the weights a read
        after the look found (`_reverted_meanwhile`): its write lands only on them, else WeightsMoved
        (nothing written; decision 185)."""
        for new, actions in decide(self.policy, state, seen, self.clock.now()):
            if self.stop.is_set() and new.weights.canary > state.weights.canary:
                self.log.warning("step.withheld", reason="interrupted", phase=state.phase,
                                 weights=str(state.weights), target_weights=str(new.weights))
                raise _Interrupted()
            state = self._apply(new, actions, routed=routed)
            routed = state.weights if routed is not None else None
        return state

    def _apply(self, new: rl.RolloutState, actions: list[rl.Action], *, attempts: int = 3,
               routed: Weights | None = None) -> rl.RolloutState:
        """`_write` of `new`'s actions; one decided before a signal that does not end the rollout (a step, a look's
        record, the promotion's 100%) is `writing_before_signal` meanwhile: once a signal comes, `kube.bound_by`
        sends none of its requests more (its retry after a 429's Retry-After, its next action), and the interrupt
        writes instead (decision 409)."""
        self.writing_before_signal = (not self.stop.is_set() and self._current is not None
                                      and new.phase in (rl.PENDING, rl.PROGRESSING, rl.PROMOTING))
        try:
            return self._write(new, actions, attempts=attempts, routed=routed)
        finally:
            self.writing_before_signal = False

    def _write(self, new: rl.RolloutState, actions: list[rl.Action], *, attempts: int = 3,
               routed: Weights | None = None) -> rl.RolloutState:
        """Execute `new`'s actions, guarded on the record this process last wrote. A rollback always
        wins: when its guarded write conflicts with a pause or resume of this very rollout recorded
        meanwhile (an on-call `canary pause` landing just before it), the route is read again and the
        rollback written over it, guarded on what was read (`rollback.wins`); an ended record, or
        another rollout's, is the caller's to adopt or leave alone (RoutingConflict)."""
        if any(isinstance(a, rl.SetWeights) for a in actions):
            self._sent = new.to_json()
        expect, todo = self._written or None, actions
        # a decided end being written: should it fail (not a conflict: another writer's decision, adopted or
        # left alone by the caller), the fail-safe writes this end (`run`), not a generic abort
        self._ending = (new, actions) if _rolls_back(new) else None
        for attempt in range(1, attempts + 1):
            try:
                # (a promotion's last write that fails is `promotion.write_failed`, not `rollback.failed`:
                # `run`'s fail-safe finishes it, or gives the old version 100%)
                state = execute(self.router, self.target, new, todo, log=self.log, expect=expect,
                                written=self._landed(new), routed=routed, subset_kept=self._subset_tries(),
                                retry=Retry(fields={"attempt": 0}) if self._current is not None else None)
                break
            except RoutingConflict:
                read = self._read_record() if _rolls_back(new) and attempt < attempts else None
                theirs = read[1] if read is not None else None
                if theirs is None or theirs.terminal or not _ours(new, theirs):
                    self._ending = None
                    raise
                self.log.warning("rollback.wins", reason=new.reason, recorded_phase=theirs.phase,
                                 recorded_reason=theirs.reason, weights=str(read[2]),
                                 note="a decided rollback is written over a pause or resume recorded meanwhile")
                expect = read[0]
                first = next(i for i, a in enumerate(actions) if isinstance(a, rl.SetWeights))
                todo = actions[first:]  # what is logged before the weights was logged once
            except CanaryError as exc:
                if _rolls_back(new) and may_have_landed(exc):
                    self._unanswered_end = str(exc)
                raise
        self._ending = None
        if state.terminal:
            self._tell_end(state)
        self.history.observe(state, actions)
        return state

    def _landed(self, new: rl.RolloutState) -> Callable[[str], None]:
        """`execute`'s `written` for `new`'s actions: an end is told (`ended`) the moment its stable-100% write
        lands, before the lines, the Kubernetes Event, the pod count and the look at other routes that follow it in
        `execute` (a hung Events API held the post 3 s and more; decision 723)."""
        def written(text: str) -> None:
            self._remember(text)
            if new.terminal:
                self._tell_end(new)
        return written

    def _remember(self, text: str) -> None:
        if text != self._written:  # the same text again (a reassert of our weights) is no sign of life
            self._wrote_at = self.clock.now()
        self._written = text

    def _heartbeat(self, state: rl.RolloutState) -> rl.RolloutState:
        """While traffic is split, the record changes at least every `look_every` (its `heartbeat_s`),
        whatever this process waits on: a look due later (a step started by a resume, a takeover with a
        longer look_every), a look's slow queries, a GitOps sync resetting the weights (a reassert
        rewrites the same text). An unchanged record is what `canary.sweep` takes for a gone process,
        and what a second promote takes over (`_take_over`). PENDING too, while the Triton gate runs
        (`_preflight`): a long warm-up was taken over by a second promote, and the gate ran again there.
        Only `updated_at` changes, guarded like every write, and only while the route is as this process
        left it (weights and record): anything else is the watch's to report and adopt. A failed beat
        is tried again within seconds. Returns the state as now recorded."""
        now = self.clock.now()
        look_every = self.policy.analysis.look_every
        if state.phase not in (rl.PENDING, rl.PROGRESSING, rl.PROMOTING) or now < max(self._wrote_at + look_every,
                                                                          self._beat_retry_at):
            return state
        retry = min(5.0, look_every / 2)
        try:
            status = self.router.inspect(self.target)
            if (status.state or "") != self._written or status.weights != state.weights:
                self._beat_retry_at = now + retry  # changed outside: the watch reports it first
                return state
            beat = replace(state, updated_at=now)
            self._sent = beat.to_json()
            # on the weights just read too: a revert landing after that read is the watch's to find, not
            # overwritten by a beat (WeightsMoved: skipped, tried again; decision 185)
            self.writing_before_signal = not self.stop.is_set()
            try:
                execute(self.router, self.target, beat, [rl.SetWeights(beat.weights)], log=self.log,
                        expect=self._written or None, written=self._remember, routed=state.weights)
            finally:
                self.writing_before_signal = False
            # the next beat is due a look_every after the time this one recorded, not after its write returned
            # (`_remember` reads the clock then): a slow write postponed it by its own length
            self._wrote_at = now
            self._current = beat
            return beat
        except CanaryError as exc:
            self._beat_retry_at = now + retry
            self.log.info("heartbeat.skipped", error=str(exc), retry_in_s=retry)
            return state

    def _emit(self, state: rl.RolloutState, event: str, fields: dict[str, Any], *, warning: bool = False) -> None:
        execute(self.router, self.target, state, [rl.Emit(event, fields, warning)], log=self.log)

    def _adopt_outside(self, state: rl.RolloutState, exc: RoutingConflict) -> rl.RolloutState:
        """Our write was refused because someone else recorded a decision: take theirs."""
        status = self.router.inspect(self.target)
        lost, error = self._record_lost(status.state)
        if lost and state.phase != rl.PROMOTING:
            return self._record_removed(state, status, lost, detail=error)
        if later := unowned.newer(status.state):
            return self._taken_by_newer(state, later)
        theirs = parse_state(status)
        if theirs is None:
            raise exc
        if _ours(state, theirs) and (status.state or "") == self._written:
            # still our own record: conflicting writes, no decision of theirs
            self.log.warning("weights.write_conflict", error=str(exc), phase=theirs.phase,
                             note="nobody else recorded a decision; the next look tries again")
            return theirs
        return self._adopt_record(state, status, theirs)

    def _adopt_record(self, state: rl.RolloutState, status: RouteStatus, theirs: rl.RolloutState) -> rl.RolloutState:
        """A record written outside this process (`theirs`, read in `status`), as the watch and a refused write
        find it: another rollout's is a take-over (or, with this version split under it, stable 100%:
        `_split_unrecorded`); ours moved on by hand is no state to adopt (decision 148); else `canary
        rollback/pause/resume`'s decision, adopted."""
        if not _ours(state, theirs):  # another rollout, of any version and phase: not ours to undo
            if split_unrecorded(status, theirs, state.canary_version):  # ...but this one's version is split
                return self._split_unrecorded(state, status, theirs)
            return self._taken_over(state, theirs)
        off = rl.advanced_outside(state, theirs, self.policy) if state.phase != rl.PROMOTING else ""
        if off:  # ours by its marks, and no state our rollout can be in: edited by hand (decision 148)
            return self._record_removed(state, status, "edited", detail=off)
        if theirs.terminal and unowned.to_end(theirs, status):
            # an end typed over our split (every end canary writes carries stable 100% in the same write): adopted,
            # it was exit 1 "rolled back" with the split left and nothing driving it (decision 517)
            return self._end_typed(state, status, theirs)
        self._written = status.state or ""
        self.log.info("rollout.changed_outside", phase=theirs.phase, reason=theirs.reason, weights=str(theirs.weights),
                      step=theirs.step + 1)
        return self._restamp_resume(state, theirs)

    def _record_lost(self, text: str | None) -> tuple[str, str]:
        """How the route's record `text` (as read) lost the record this process wrote, and why: ("removed", "")
        (absent, or emptied: `patch.read_state`), ("unreadable", the parse error) (edited into text that is no
        rollout state: hand-edited JSON, a template's placeholder); ("", "") when it is still a rollout state
        (anyone's), or this process has written no record yet."""
        if not self._written:
            return "", ""
        if text is None:
            return "removed", ""
        try:
            if text.strip():  # blank reads as none (`parse_record`)
                rl.RolloutState.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:  # what `parse_record` refuses
            if unowned.newer(text):  # a newer canary's record: not lost, taken over (`_taken_by_newer`, 169)
                return "", ""
            return "unreadable", str(exc)
        return "", ""

    def _lost_reason(self, status: RouteStatus, lost: str, detail: str = "") -> str:
        """The reason recorded, and logged, for a record `lost` outside the rollout: "removed", "unreadable"
        (`_record_lost`; `detail` its parse error), or "edited" (`detail`: why a record that parses is no state
        of this rollout, `rl.advanced_outside`)."""
        where = f"{self.target.namespace}/{self.target.virtual_service}"
        if lost in ("unreadable", "edited"):
            error = f" ({detail[:200]})" if detail else ""
            what = "a state this rollout was never in" if lost == "edited" else "something that is no rollout state"
            return (f"the rollout's record (annotation {STATE_ANNOTATION}) on VirtualService {where} was edited "
                    f"outside the rollout into {what}{error}, at {status.weights}; stable 100%")
        return (f"the rollout's record (annotation {STATE_ANNOTATION}) was removed from VirtualService {where} "
                f"outside the rollout, at {status.weights} (a kubectl apply or replace, or a GitOps sync, of a "
                "manifest without it?); stable 100%")

    def _say_lost(self, state: rl.RolloutState, status: RouteStatus, lost: str, detail: str = "") -> str:
        """The one warning for a record lost outside the rollout (`rollout.record_removed`, or
        `rollout.record_unreadable`); returns the reason it gives."""
        why = self._lost_reason(status, lost, detail)
        hint = (f"keep the annotation {STATE_ANNOTATION} out of the manifests you apply "
                "(Argo CD: ignoreDifferences on it), then run promote again") if lost == "removed" else (
                f"the annotation {STATE_ANNOTATION} is written by canary alone: never edit it by hand; "
                "run promote again")
        event = "rollout.record_removed" if lost == "removed" else "rollout.record_unreadable"
        self.log.warning(event, reason=why, phase=state.phase, weights=str(status.weights),
                         recorded_weights=str(state.weights), hint=hint)
        return why

    def _record_removed(self, state: rl.RolloutState, status: RouteStatus, lost: str = "removed",
                        detail: str = "") -> rl.RolloutState:
        """The route no longer carries this rollout's record (`STATE_ANNOTATION` removed outside it: a
        `kubectl apply` or `replace`, or a GitOps sync, of a manifest without it; the weights usually reset
        with it): nothing says any more which rollout the split is, so it ends at stable 100%, recorded
        `aborted` with that reason (exit 3), as the controller ends a CanaryRollout whose route no longer
        records it. Guarded on the route as read: no record (a claim written meanwhile is another rollout's,
        `_adopt_outside`). It ended as an unexplained failure, "the rollout state was changed by someone
        else; re-read it before writing" (decision 143). A promotion whose every step passed is not undone
        for it: `run`'s fail-safe finishes it. `lost` (`_record_lost`): "removed" (or emptied, decision 146), or
        "unreadable": edited into text that is no rollout state, which ended as the failure "rollout state
        annotation is unreadable"; now `rollout.record_unreadable`, and the end is guarded on that text; or
        "edited": a record of ours that parses and is no state of this rollout (`rl.advanced_outside`)."""
        why = self._say_lost(state, status, lost, detail)
        self._written = status.state or ""  # the end is guarded on the route as read: no record, or that text
        return self._apply(*rl.transition(state, rl.Rollback(self.clock.now(), why, aborted=True,
                                                             cause="foreign_edit"), self.policy))

    def _split_unrecorded(self, state: rl.RolloutState, status: RouteStatus,
                          theirs: rl.RolloutState) -> rl.RolloutState:
        """The route records another version's rollout, yet its canary subset selects this rollout's version
        and has traffic (`reconcile.split_unrecorded`: an old copy of the record applied with a manifest). It
        ended "taken over", nothing written, and left the split to this version for nobody to judge until
        the sweep found that record abandoned (minutes; never, where no sweep runs). Stable 100% now, this
        rollout recorded `aborted` over that record, guarded on it: a rollout that really takes the route
        points the canary subset at its own version before it moves traffic, so none is undone (decision
        143 d)."""
        why = split_unrecorded(status, theirs, state.canary_version)
        say_split_unrecorded(self.log, why, theirs, status.weights)
        self._written = status.state or ""  # the end is guarded on the record as read
        return self._apply(*rl.transition(state, rl.Rollback(self.clock.now(), f"{why}; stable 100%", aborted=True,
                                                             cause="foreign_edit"), self.policy))

    def _end_typed(self, state: rl.RolloutState, status: RouteStatus, theirs: rl.RolloutState) -> rl.RolloutState:
        """This rollout's record typed into an end (`rolled_back`, `aborted`) while the route still splits two
        versions (`unowned.to_end`): no `canary rollback` wrote it (its end carries stable 100% in the same write),
        so nothing drives that split once this process adopts it. Ended as the controller's tick and the next
        promote end it (decision 157): stable 100%, recorded `aborted` over the typed record, guarded on it, one
        `rollout.split_unowned` (`by: promote`) once it landed; exit 3. A RoutingConflict (the record changed
        again meanwhile) is the loop's to adopt. Adopted, it was exit 1 "rolled back" with the split left
        (decision 517)."""
        self._written = status.state or ""  # the end is guarded on the typed record as read
        return self._apply(*self._typed_end(state, status, theirs))

    def _typed_end(self, state: rl.RolloutState, status: RouteStatus,
                   theirs: rl.RolloutState) -> tuple[rl.RolloutState, list[rl.Action]]:
        """The end `_end_typed` writes over `theirs`, an end typed over this rollout's split at `state` (the
        fail-safe's too, when that write, or a step's, failed: decision 524): recorded `aborted`, stable 100%,
        `rollout.split_unowned` said once it landed."""
        reason = (f"the record was typed into {unowned.claim(theirs)} outside the rollout while this promote ran "
                  f"step {state.step + 1}, but the route still splits {status.weights} between "
                  f"{status.stable_subset_version or '(no version)'} and "
                  f"{status.canary_subset_version or '(no version)'}: no process drives that split (every end canary "
                  "writes carries stable 100% in the same write)")
        new, actions = unowned.ending(theirs, status, model=self.target.model, now=self.clock.now(),
                                      reason=f"{reason}; stable 100%")
        actions.append(unowned.said(theirs, status, reason=reason, by="promote", done="stable 100%, recorded aborted"))
        return new, actions

    def _restamp_resume(self, state: rl.RolloutState, theirs: rl.RolloutState) -> rl.RolloutState:
        """`theirs`, adopted; when it was resumed by `canary resume` since `state` (a new window of the
        step, whether or not this process saw the pause), the window starts on this rollout's clock
        (Prometheus's): the on-call's clock stamped it, and a laptop's skew moved the looks and the
        deadline, or reached back before the pause."""
        if theirs.phase != rl.PROGRESSING or theirs.step_window <= state.step_window or theirs.step != state.step:
            return theirs
        self.history.observe(theirs)  # the resume itself, as adopted (`canary report`), before the re-stamp
        now = self.clock.now()
        return self._apply(replace(theirs, step_started_at=now, updated_at=now), [rl.SetWeights(theirs.weights)])


def _rolls_back(state: rl.RolloutState) -> bool:
    """Whether `state` is a decided end at stable 100% (rolled back or aborted)."""
    return state.phase in (rl.ROLLED_BACK, rl.ABORTED)


def _ours(ours: rl.RolloutState, theirs: rl.RolloutState) -> bool:
    """Whether the record `theirs` is this rollout's (its next state, as `_adoptable` says): same canary
    version, and adoptable. Anything else on the route is another rollout's, whatever its phase."""
    return theirs.canary_version == ours.canary_version and _adoptable(ours, theirs)


def _adoptable(ours: rl.RolloutState, theirs: rl.RolloutState) -> bool:
    """Whether a record another process wrote for our canary version is our rollout's next state (an
    on-call rollback/pause/resume of it, or of a record it could not read: ended, no owner): owned by
    this very process (or no owner recorded) and the same rollout, or ended. A CanaryRollout's,
    another promote process's (it took the rollout over) or one started since is not ours to judge,
    pause or abort."""
    return theirs.owner in ("", ours.owner) and (theirs.started_at == ours.started_at or theirs.terminal)


NO_TRAFFIC_MOVED = ("this promote moved no traffic to the canary (the route's weights are as they were): running the "
                    "same command again is safe once that is fixed")
_SAYS_UNTOUCHED = ("nothing was moved", "no traffic moved", "moved no traffic", "nothing was written",
                   "nothing written")


def _held_by(theirs: rl.RolloutState | None) -> dict[str, str]:
    """A RolloutBusy's `holder` and `job` from the record another writer left (None: unread, both "")."""
    return {"holder": theirs.owner, "job": theirs.job} if theirs is not None else {}


def _untouched_exit_3(exc: BaseException) -> bool:
    """Whether `exc`, raised before this promote claimed the route, is an exit 3 ("could not complete") whose
    words do not yet say that no traffic moved. Exit 2 (ConfigError) and 75 (RolloutBusy) are "untouched" by
    definition and name what to fix or who holds the route; a signal's and the pod wait's errors say it already."""
    if not isinstance(exc, CanaryError) or isinstance(exc, (ConfigError, RolloutBusy, RollbackFailed, GraceSpent)):
        return False
    text = str(exc)
    return not any(words in text for words in _SAYS_UNTOUCHED)


def _resumable(recorded: rl.RolloutState, target: Target) -> bool:
    """Whether `canary promote` of `target` takes up the rollout `recorded` (`Runner._start`): in progress,
    of the same canary version, run by a promote (any: `_take_over` says whether it still runs) or no owner,
    and not another model's (`_another_models`)."""
    return (not recorded.terminal and recorded.canary_version == target.canary_version
            and (recorded.owner == "" or is_promote_owner(recorded.owner)) and not _another_models(recorded, target))


def _another_models(recorded: rl.RolloutState, target: Target) -> bool:
    """Whether `recorded` is another model's rollout on a VirtualService that routes several models: another
    model, on another route or DestinationRule than `target` names. Such a rollout is busy, never one this
    promote resumes: same version (a monorepo's commit for both models), it was refused as if it drove the
    wrong route or rule, "re-run with --destination-rule <theirs> to resume it", and following that
    judged this model's series on the other model's route. Another model on the very route and rule
    asked is a resume with `--model` edited (decision 79 g: superseded, started again)."""
    if not recorded.model or recorded.model == target.model:
        return False
    other_rule = bool(recorded.destination_rule) and recorded.destination_rule != target.dr_name
    other_route = bool(target.route) and bool(recorded.route) and recorded.route != target.route
    return other_rule or other_route


def route_refusal(target: Target, recorded: rl.RolloutState, routes: int) -> str:
    """Why a promote of `target` may not take up the rollout `recorded` in progress: it drives another
    route than the one this promote names (--route, else the policy's `route:`; "": the only one, of
    the VirtualService's `routes` HTTP routes). Says how to go on: nothing has been written."""
    asked = f"--route {target.route}" if target.route else "no --route (the only route" + (
        f"; the VirtualService has {routes} HTTP routes)" if routes else ")")
    rec = recorded.route
    drives = f"route {rec!r}" if rec else "the route that was its VirtualService's only one (claimed with no --route)"
    how = (f"re-run with --route {rec} to resume it, or end it with `canary rollback --route {rec}`" if rec else
           "end it with `canary rollback` (it finds the route holding the recorded weights), then promote again")
    return (f"the rollout of {recorded.canary_version} in progress ({recorded.phase}, weights "
            f"{recorded.weights}) drives {drives}, and this promote asks {asked}; nothing was written: {how}")


def prometheus_time(metrics: Any, *, within_s: float = 2.0, refused: bool = False) -> float | None:
    """Prometheus's own `time()` (Unix seconds), asked within `within_s` (2 s); None when `metrics` cannot ask (no
    `ask`), or Prometheus does not answer it in time or answers no finite number. Raises what is no CanaryError,
    and with `refused` the ConfigError of a URL that answers but refuses the query (not a Prometheus API there:
    a wrong path prefix's 404; credentials refused, 401/403)."""
    ask = getattr(metrics, "ask", None)
    if ask is None:
        return None
    from canary.metrics.answers import evaluated_at

    try:
        now = evaluated_at(ask("time()", check="clock", arm="", at=None, who="clock", strict=False,
                               deadline=time.monotonic() + within_s))
    except CanaryError as exc:
        if refused and isinstance(exc, ConfigError):
            raise
        return None
    return now if now is not None and math.isfinite(now) else None


def warn_skew(log: Any, offset: float, *, note: str) -> None:
    """`clock.skew` when Prometheus's clock and this host's differ by more than SKEW_WARN_S (`offset`:
    Prometheus minus local, seconds)."""
    if abs(offset) > SKEW_WARN_S:
        log.warning("clock.skew", prometheus_minus_local_s=round(offset, 3), note=note)


def unsafe_traffic(router: TrafficRouter, target: Target, *, log: Any, error: str, known: Any = None,
                   cause: str = ROUTE_DELETED, refused: bool = False) -> str:
    """After a stable-100% write failed: "" when the route reads stable 100% anyway (what failed came
    after the weights: a subset re-pointing), else a sentence for the error saying how traffic stands
    (weights as read now, or `known`, the last weights this process knew, when the route cannot be
    read), logged as the critical `traffic.unsafe` naming the VirtualService and the route, or
    `rollout.route_deleted` with `cause` as its end's class when the VirtualService is gone. `refused`: the write
    was refused for the routing's shape (a TargetError: a rule edited to another service, decisions 523, 664), not
    for the API: `canary rollback` is refused the same way until that is mended, which its hint says (686)."""
    try:
        status = read_for_stable(router, target)
    except NotFound as exc:
        if not vs_gone(exc, target):
            return ""
        # no VirtualService: the mesh balances over the Service's pods, the canary's included. It said "" here
        # (nothing routes by it), so promote exited 3, "stable 100%", with the canary's pods in the balance
        return route_deleted(log.bind(**rollout_context(target)), target, known, error=error, cause=cause)
    except Exception:  # noqa: BLE001 - unreadable: the weights last known stand
        weights, raw = known, None
    else:
        if status.weights == STABLE_ONLY and status.raw_weights is None:
            return ""
        weights, raw = status.weights, status.raw_weights
    route = target.route or "(the only route, or each with a 'stable' destination beside others)"
    shown = f"{weights}" + (f" (as written {raw})" if raw is not None else "") if weights is not None else "unknown"
    # the rollout's context as every line has it (`virtual_service` the name, `namespace` beside it; it was
    # "ns/name" here alone), the route in the words of the hint when it has no name
    by_hand = (f"the canary may still get traffic: set the stable destination of {target.namespace}/"
               f"{target.virtual_service} route {route} to 100 and every other one to 0 by hand")
    log.bind(**rollout_context(target)).critical(
        "traffic.unsafe", route=route, weights=shown, error=error,
        hint=f"{by_hand}; `{rollback_command(target)}` is refused the same way (and stable 100% set by hand records "
             "no end) until what `error` names is mended: then run it" if refused else
             f"{by_hand}, or, once the Kubernetes API accepts this job's writes again (an expired token renewed), run "
             f"`{rollback_command(target)}`")
    return f"; traffic may still be split on {target.namespace}/{target.virtual_service} route {route}: {shown}"


def gate_detail(report: dict[str, Any]) -> str:
    """A gate's report (`TritonGates.preflight`) as one line for the rollout history, in words: the checks passed
    first (the report cuts a long detail, and they were last, after a Python repr of the signature), then the
    tensor contract as Triton's metadata names it, the warm-up's latencies and the two servers (decision 921)."""
    rest = dict(report)
    parts = [str(c) for c in rest.pop("checks", None) or ()]
    sig = rest.pop("signature", None)
    if isinstance(sig, dict):
        def tensors(ts: Any) -> str:
            return ", ".join(f"{t.get('name')} {t.get('datatype')}[{','.join(map(str, t.get('shape') or ()))}]"
                             for t in ts or ())
        parts.append(f"tensors {tensors(sig.get('inputs'))} -> {tensors(sig.get('outputs'))}, "
                     f"max_batch_size {sig.get('max_batch_size')}")
    elif sig is not None:
        parts.append(f"signature {sig}")
    if "warm_p50_ms" in rest or "warm_max_ms" in rest:
        p50, top = rest.pop("warm_p50_ms", None), rest.pop("warm_max_ms", None)
        n, source = rest.pop("warmup_requests", None), rest.pop("sample_source", None)
        parts.append(f"warm-up p50 {p50} ms, max {top} ms"
                     + (f" ({n} requests, {source} inputs)" if n is not None else ""))
    servers = [f"{arm} {rest.pop(arm)}" for arm in ("canary", "stable") if rest.get(arm)]
    rest.pop("stable", None)
    parts += servers + [f"{k}={v}" for k, v in rest.items()]
    return "; ".join(parts)


# how many times `canary rollback` reads the route again after another writer changed the record between
# its read and its write (a promote's look, a promotion's finish): each try is a few requests, and a
# writer records at most once per look, so a later try meets an unchanged record
ONCALL_REREADS = 5


def oncall_action(router: TrafficRouter, target: Target, event: rl.Rollback | rl.Pause | rl.Resume, *,
                  log: Any) -> rl.RolloutState:
    """`canary rollback/pause/resume`: apply one event to the recorded state. A rollback reads the route
    as the router's `inspect_any(for_stable=True)` does (a DestinationRule gone, a route added beside
    the rollout's: stable 100% needs the VirtualService alone).

    Every write is guarded on the record it read. A rollback that meets another writer's record (a
    conflict: nothing of its own left written, `reconcile.execute`) reads the route again and decides
    again, up to ONCALL_REREADS times (the last unguarded, so contention never defeats it): it still wins
    over a rollout in progress, but does not land over an end it did not read. Unguarded, its first write (the stable subset pointed back at the old version,
    from PROMOTING) could land over a promotion that finished after its read, and a command killed before
    its 100/0 left `promoted` recorded with every request on the old version (docs/decisions.md 94). A
    rollout recorded `promoted` is ended: a rollback finds stable 100% there (AlreadyStable, saying the
    new version was promoted), whether the promotion landed before its first read or after it."""
    for attempt in range(1, ONCALL_REREADS + 1):
        status, state, new, actions, log_ = _oncall_decide(router, target, event, log=log)
        if not isinstance(event, rl.Rollback):
            return execute(router, target, new, actions, log=log_, expect=status.state)
        # the last try is unguarded, as every rollback was before: the emergency button never gives up on
        # contention (a writer recording at every try); only a kill in its few requests could leave the
        # subset against an end recorded meanwhile, which `canary status` names and a rollback repairs
        guard = status.state if attempt < ONCALL_REREADS else ...
        try:
            return execute(router, target, new, actions, log=log_, expect=guard)
        except RoutingConflict as exc:
            if attempt < ONCALL_REREADS:
                log_.info("rollback.reread", attempt=attempt, error=str(exc))
                continue
            failed: CanaryError = exc
        except RollbackFailed:  # the stable subset could not be re-pointed (`reconcile._point`): exit 3, as decided
            raise
        except CanaryError as exc:
            failed = exc
        unsafe = unsafe_traffic(router, target, log=log_, error=str(failed), known=status.weights,
                                refused=isinstance(failed, TargetError))
        if unsafe:
            raise TrafficUnsafe(f"stable 100% could not be written: {failed}{unsafe}") from failed
        raise failed
    raise AssertionError("unreachable")  # pragma: no cover


def _oncall_decide(router: TrafficRouter, target: Target, event: rl.Rollback | rl.Pause | rl.Resume, *,
                   log: Any) -> tuple[Any, rl.RolloutState, rl.RolloutState, list[rl.Action], Any]:
    """One read of the route and what `event` makes of it: (status as read, the state it records, the
    new state, its actions, the log bound to the rollout's context). Raises AlreadyStable / ConfigError
    when there is nothing to do, TrafficUnsafe when a rollout in progress cannot be reached."""
    try:
        status = read_for_stable(router, target) if isinstance(event, rl.Rollback) else router.inspect(target)
    except TrafficUnsafe as exc:  # a rollout in progress on a route no stable-100% write can reach
        # the rollout's context as every line has it (`virtual_service` the name, `namespace` beside it: "ns/name"
        # alone, with no model, missed a query on the name; decision 677's addendum)
        log.bind(**rollout_context(target)).critical(
            "traffic.unsafe", route=target.route or "(the only route)", weights="unknown", error=str(exc),
            hint="the canary may still get traffic: set the route's stable destination to 100 by hand")
        raise
    unreadable = ""
    try:
        state = parse_state(status)
    except TargetError as exc:
        unreadable = str(exc)
        if not isinstance(event, rl.Rollback):
            raise TargetError(_unowned_note(exc, None, status, target)) from None
        # on-call must always be able to send everything to stable: an unreadable record is replaced
        log.warning("rollout.state_unreadable", action="rollback writes stable 100% and a new record")
        state = None
    recorded = state  # as read: an end (or garbage) over a split is said as such once stable 100% landed
    # on a VirtualService routing several models, the rollout in progress may be another model's: say whose,
    # so that "use --route a" is not read as the way to act on this model's route
    whose = (f" (model {state.model}'s, of {state.canary_version}; {target.model} has none in progress here)"
             if state is not None and state.model and state.model != target.model else "")
    if state is not None and not state.terminal and state.route and target.route and state.route != target.route:
        raise ConfigError(f"{target.namespace}/{target.virtual_service}: the rollout in progress{whose} drives route "
                          f"{state.route!r}, not {target.route!r}; use --route {state.route}")
    if state is not None and not state.terminal and state.destination_rule and state.destination_rule != target.dr_name:
        raise ConfigError(f"{target.namespace}/{target.virtual_service}: the rollout in progress{whose} drives "
                          f"DestinationRule {state.destination_rule!r}, not {target.dr_name!r}; use --destination-rule "
                          f"{state.destination_rule} (or leave it out)")
    if state is None or state.terminal:
        if isinstance(event, rl.Rollback) and (status.weights != STABLE_ONLY or status.raw_weights is not None
                                            or state is None and status.state):
            # no rollout recorded but traffic is split: stable gets 100% anyway
            state = rl.RolloutState(model=target.model, stable_version=status.stable_subset_version,
                                    canary_version=status.canary_subset_version, phase=rl.PROGRESSING,
                                    weights=status.weights, started_at=event.now, updated_at=event.now)
        elif isinstance(event, rl.Rollback) and state is not None and _rolls_back(state) and \
                end_disagreement(state, status):
            # a rollback recorded, and the stable subset left on the canary version (a process killed between
            # its 100/0 and its pointing): point it back, guarded on that record (docs/decisions.md 94)
            bound = log.bind(virtual_service=target.virtual_service, stable_version=state.stable_version,
                             canary_version=state.canary_version)
            return status, state, state, [
                rl.PointSubset("stable", state.stable_version, guarded=True, undo_version=status.stable_subset_version),
                rl.Emit("subset.repaired", {"subset": "stable", "version": state.stable_version,
                                            "was": status.stable_subset_version, "recorded_phase": state.phase},
                        warning=True)], bound
        elif isinstance(event, rl.Rollback):  # stable already has 100%: what on-call asks for holds
            if state is not None and _rolls_back(state) and state.stable_version != state.canary_version \
                    and status.canary_subset_version == state.canary_version:
                # the canary subset left on the version rolled back (its re-pointing failed, or the process was
                # killed after the stable-100% write): another VirtualService's split may still reach it; the
                # rollback's look at them again, re-pointed where one does (decision 639)
                wrote = canary_subset_home(router, target, state, record=status.state, log=log.bind(
                    virtual_service=target.virtual_service, stable_version=state.stable_version,
                    canary_version=state.canary_version))
            else:
                wrote = False
            raise AlreadyStable(f"{target.namespace}/{target.virtual_service}: stable already serves 100%; no "
                                "rollout in progress" + (_last(state, status) if state else ""),
                                wrote=(f"the canary subset of DestinationRule {target.namespace}/{target.dr_name} "
                                       f"pointed at {state.stable_version}: another VirtualService still splits "
                                       "with it (rollback.canary_subset_repointed)") if wrote and state else "")
        else:
            raise ConfigError(_unowned_note(f"{target.namespace}/{target.virtual_service}: no rollout in progress"
                                            + (f" (last: {state.phase}, {state.reason})" if state else ""),
                                            state, status, target))
    if isinstance(event, rl.Resume):
        _resume_acted_on(state, target)
    new, actions = rl.transition(state, event, None)  # type: ignore[arg-type]
    if new is state:
        raise ConfigError(f"cannot {type(event).__name__.lower()} a rollout that is {state.phase}")
    if isinstance(event, rl.Rollback) and state is recorded:
        actions = _as_routed(actions, state, status)
    if why := unowned.why(recorded, status, unreadable=unreadable):
        # an end typed in (or garbage) over a split nobody drives: the one line that names the record's claim
        # beside what this rollback did (decision 157)
        actions = [*actions, unowned.said(recorded, status, reason=why, by="canary rollback",
                                          done=f"stable 100%, recorded {new.phase}", unreadable=unreadable)]
    # the rollout's context on every line it logs, as promote's lines carry it (docs/reference/events.md)
    bound = log.bind(virtual_service=target.virtual_service, stable_version=state.stable_version,
                     canary_version=state.canary_version)
    if isinstance(event, rl.Rollback) and not state.terminal and state.owner:
        # whose rollout this rollback ends: on-call is told which job's promote (or which CanaryRollout) to stop or
        # look at, by the CI job's URL where one is recorded, not only a runner's host and pid (decision 387)
        bound = bound.bind(ended_owner=state.owner, **({"ended_job": state.job} if state.job else {}))
    return status, state, new, actions, bound


def _resume_acted_on(state: rl.RolloutState, target: Target) -> None:
    """`canary resume` of a rollout paused under a `canary promote` that no longer runs on this machine: refused,
    nothing written (ConfigError). A resume is only a record; the promote that paused (or was paused) reads it and
    judges the step, and with it gone the canary kept its share unjudged, recorded `progressing`, until a sweep
    ended it or a re-run took it over (decision 546). A re-run of promote takes a paused rollout over at once and
    goes on with it: that is what the refusal says to run. A promote elsewhere cannot be told alive from here: the
    resume is written and its note says what happens either way (`cli.resume_note`)."""
    if state.phase != rl.PAUSED or not is_promote_owner(state.owner) or resume_here(state.owner) != "gone":
        return
    pid = owner_pid(state.owner)
    raise ConfigError(
        f"{target.namespace}/{target.virtual_service}: resume refused, nothing written: the rollout of "
        f"{state.canary_version} is paused and its `canary promote` (pid {pid} on this machine) no longer runs, so "
        f"nothing would judge the resumed step (the canary would keep {state.weights.canary}% unjudged). Run "
        f"`canary promote {target.model} --canary-version {state.canary_version} ...` again: it takes the paused "
        f"rollout over and goes on (the step starts over); `canary rollback {target.model} -n {target.namespace}` "
        "ends it")


def _unowned_note(message: Any, state: rl.RolloutState | None, status: Any, target: Target) -> str:
    """`canary pause`/`resume`'s refusal of an ended or unreadable record (`message`), with the split nobody
    drives under it named, when there is one (`canary.unowned`): neither command moves it, and the refusal
    alone read as "nothing to do" (decision 157)."""
    why = unowned.why(state, status, unreadable="it does not parse" if state is None else "")
    if not why:
        return str(message)
    return (f"{message}; {why}: `canary rollback {target.model} -n {target.namespace}` sends stable 100% now "
            + unowned.who_ends(state, 30.0))


def _last(state: rl.RolloutState, status: Any) -> str:
    """The ended rollout a rollback found, for AlreadyStable's message. A promotion is not undone: its
    version passed every step and is the stable version now; going back to the old one is a rollout of it."""
    if state.phase != rl.PROMOTED:
        return f" (last: {state.phase}, {state.reason})"
    off = end_disagreement(state, status)
    return (f" (last: promoted, {state.reason}: {state.canary_version} is the stable version now and was not "
            f"rolled back; to go back to {state.stable_version}, promote it: `canary promote {state.model} "
            f"--canary-version {state.stable_version} ...`)" + (f"; note: {off}" if off else ""))


__all__ = ["Runner", "EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_INFRA", "EXIT_INTERRUPTED", "EXIT_PROMOTED",
           "EXIT_ROLLED_BACK", "Result", "SystemClock", "execute", "look_window", "measure_window", "oncall_action"]

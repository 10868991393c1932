"""`canary controller run`: every CanaryRollout, level-triggered, one tick at a time.

Each tick reads the world (all CanaryRollouts, each one's VirtualService with
its rollout annotation), decides with the pure state machine, acts through the
same router and `execute()` as `canary promote`, and records (CR status,
Kubernetes Events, /metrics, webhooks). Nothing lives only in memory but the
metric step-start snapshots, which are an optimisation: a restarted controller (or a new
leader) picks every rollout up from its annotation at the next tick.

Writes are fenced: the router is wrapped so that no write leaves this process
unless the leader elector says we still hold the lease.

With `informers` (`canary controller run`), nothing is LISTed per tick: CanaryRollouts,
VirtualServices and DestinationRules come from watches into a local cache
(`canary.informer`), and a tick handles only the rollouts that are due (`canary.workqueue`:
a look, a probe, a change of one of their objects, a retry after a failure with its own
backoff), `workers` of them at a time. Reads come from the cache; every write still carries
the resourceVersion it was computed from. Without informers (tests, tools) a tick LISTs and
handles every rollout, as before.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

from canary.packing import pack_text, unpack_text
from canary import crd
from canary import rollout as rl
from canary.analysis.judge import judge
from canary.analysis.sequential import looks_per_step
from canary.runner import (SKEW_WARN_S, SystemClock, held_verdict, probe_reason, probe_server, probe_streak,
                           promotion_held_note, promotion_held_why)
from canary.errors import (ApiRefused, CanaryError, ConfigError, ConflictStorm, KubeUnavailable, MetricsUnavailable,
                           NotFound, others_decision, said,
                           NotLeader, PodsNotReady, RecordTooNew, RollbackFailed, RolloutBusy, RoutingConflict,
                           RuleElsewhere, StableNotReady, StatusRefused, TargetError, TransientError, WeightsMoved)
from canary.end_words import failed_tick_next
from canary.fencing import FencedRouter
from canary import history as hist
from canary.history_store import configmap_name
from canary.logs import get as get_logger
from canary.informer import stub
from canary.model import STABLE_ONLY, Outcome, Target, Verdict, Weights, rollback_command
from canary import judged_marks
from canary import kube
from canary import malloc
from canary import resume_requests
from canary import sweep, unowned
from canary.notify_body import end_events
from canary.reconcile import (END_DONE, END_LINES, K8S_EVENTS, Observation, camel, check_claim, check_other_splits, check_pods, crd_owner, crd_ref, decide,
                              describe_owner, event_message, execute, look_due, look_window, measure_window, next_look_at,
                              one_instant,
                              parse_state, preflight_metrics, ROLLBACK_BUDGET_S, Retry, rollout_context, without_start,
                              route_deleted, say_split_unrecorded, split_unrecorded, to_stable)
from canary.reconcile import vs_gone as _vs_gone
from canary.reconcile import ROUTE_DELETED, SUBSET_HOME_TRIES, canary_subset_home, say_subset_unread, confirmed_detail, failure_cause, routed_fields, write_landed
from canary.routing import patch
from canary.routing.base import RouteStatus, TrafficRouter, read_for_stable
from canary.routing.splits import canary_split_hosts, may_split
from canary.side_writes import SideWriter
from canary.throttle import Throttle
from canary.workqueue import DueQueue, exponential_delay

# a rollout whose ticks keep failing with transient errors this long while traffic is split goes to stable
FAILURE_BUDGET_S = 30.0
# the stable-100% retries within one tick (`to_stable`): the next tick tries again, and a worker held
# for the promote CLI's 20 s would hold every rollout queued behind it
TO_STABLE_BUDGET_S = 2.0
# a rollout's stable-100% write failing this long across ticks is the page (`rollback.failed`, once; decision
# 123): the controller writes it again at its next tick (the work queue's backoff, at most 10 s), and most
# failures (an API server restarting, a throttling burst) pass within seconds. Until then `rollback.retrying`.
# The budget promote's fail-safe keeps trying within before its page
ROLLBACK_PAGE_AFTER_S = ROLLBACK_BUDGET_S
# a Triton pre-traffic gate's result not read within this many seconds of its end is not used: run again
GATE_RESULT_TTL_S = 60.0
# a CanaryRollout waiting on a busy route whose metrics preflight found Prometheus unavailable asks it again after
# this long (`_input_behind_busy`), never at every tick
BUSY_INPUT_RETRY_S = 60.0
SNAPSHOT_NAMES = 20  # rollouts (and models) named on a `metrics.snapshot_failed` line at most
CHECK_ENDS_PER_SWEEP = 50  # ended rollouts whose route a sweep reads at most (`_check_ends`)
# the class of a CanaryRollout ended without having run (`_end_unrun`, decision 667) because another owner ran its
# version (promoted it, or the route moved on from the rollout it waited on): that owner's run, started by a person
# or a pipeline, superseded this request, as the sweep classes a superseded rollout
UNRUN_RAN_ELSEWHERE = "operator"
# ... because no Ready pod served the canary (or the stable) for `--wait-ready`: could not complete, exit 3, as
# promote's `PodsNotReady` at its `--wait-ready` (a TransientError)
UNRUN_NOT_READY = "infrastructure"
FORGET_ABSENT_EVERY_S = 300.0  # how often `_forget_absent` drops what rollouts deleted meanwhile left in memory
# a finished rollout's history flush is tried this many times in a row (the queue's backoff between: about
# a minute) before its records are given up (`history.end_unwritten`); a ConfigError (no RBAC) only once
ENDED_HISTORY_TRIES = 10
# on every CanaryRollout from its claim until it ends: a deletion mid-rollout sends stable 100% first
FINALIZER = "modelcanary.dev/stable-on-delete"


@dataclass(frozen=True)
class _Active:
    """A progressing rollout after this tick's decisions, and the state text it last recorded."""

    spec: crd.RolloutSpec
    state: rl.RolloutState
    obj: dict[str, Any]
    due: bool  # a look is due now
    recorded: str | None  # the annotation as written: guards the look's write


@dataclass
class _StableFailing:
    """A rollout whose stable-100% write failed (`Controller._retry`): since when, how many times, paged yet."""

    canary_version: str  # a rollout of another version by the same CanaryRollout starts afresh
    since: float  # the controller's clock at its first failure
    failed: int = 0
    paged: bool = False
    # the end (phase, reason) whose start line (`rollback.started` / `rollout.aborting`) a failed write said already:
    # the next tick's write of the same end says only its `rollback.retrying` (decision 737)
    started: tuple[str, str] | None = None



class _SnapshotOutage(NamedTuple):
    """The batched snapshot failing (`Controller._snapshot_failed`) since `first_at`, for `ticks` ticks."""

    first_at: float
    ticks: int


class _RouteNow(NamedTuple):
    """A route read again before a stable-100% write from memory (`Controller._taken_over`)."""

    other: bool  # it records another rollout than the one remembered: not ours to undo
    text: Any  # the record text read, to guard the write on; `...` when the route could not be read (unguarded)
    record: rl.RolloutState | None  # the record when it is this very rollout, None otherwise or unreadable
    route: Any  # the RouteStatus read (None when it could not be): an end from `record` says its split


class CanaryRolloutChanged(RoutingConflict):
    """A write towards the canary refused: the CanaryRollout, read live, is no longer what the decision
    was taken on (`Controller._still_asked`). Nothing was written; the next tick acts on it."""


def _forward(before: rl.RolloutState, new: rl.RolloutState, actions: list[rl.Action],
             routed: Any = None) -> bool:
    """Whether a step moves traffic towards the canary: a promotion (begun or finished), or a weights
    write giving the canary more than the record (or the route as read, `routed`) gives it now."""
    if new.phase in (rl.PROMOTING, rl.PROMOTED) and before.phase != new.phase:
        return True
    now = before.weights.canary if routed is None else min(before.weights.canary, routed.canary)
    return any(isinstance(a, rl.SetWeights) and a.weights.canary > now for a in actions)


class _Known:
    """What this process last knew of a rollout, for scheduling (`_schedule`) and the failure path
    (`_failed`): its spec, and its state: whole until `pack` (the end of its tick), then as the
    compressed text of its recorded form (`RolloutState.to_json`) plus the fields scheduling reads.
    A whole state with the default policy's five checks is ~14 kB of objects (its last verdict,
    evidence and history: 36 MB at 2,500 rollouts); packed, ~1 kB. `state()` gives the whole state
    back either way, so the failure path sends stable 100% from what this process knew even when
    the recorded annotation has become unreadable."""

    __slots__ = ("spec", "phase", "weights", "owner", "_state", "_packed", "_next_look")

    def __init__(self, spec: crd.RolloutSpec, state: rl.RolloutState) -> None:
        self.spec, self.phase, self.weights, self.owner = spec, state.phase, state.weights, state.owner
        self._state: rl.RolloutState | None = state
        self._packed: bytes | None = None
        self._next_look: float | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in rl.TERMINAL

    def state(self) -> rl.RolloutState:
        """The whole state (history cut to its last 20 entries once packed, as the annotation keeps it)."""
        if self._state is not None:
            return self._state
        assert self._packed is not None
        return rl.RolloutState.from_json(unpack_text(self._packed))

    def next_look(self) -> float:
        """When its next look is due (`reconcile.next_look_at`); inf unless progressing."""
        if self._next_look is None:
            self._next_look = (next_look_at(self.spec.policy, self.state()) if self.phase == rl.PROGRESSING
                               else math.inf)
        return self._next_look

    def pack(self) -> None:
        """Keep the state as compressed text from now on (idempotent)."""
        if self._state is not None:
            self.next_look()
            self._packed = pack_text(self._state.to_json())
            self._state = None


def _end_key(state: rl.RolloutState) -> tuple[str, str, float]:
    """Which end `state` is, as a post of it is told apart from the next one: its version, phase and time."""
    return state.canary_version, state.phase, state.updated_at


@dataclass
class Controller:
    """Drives all CanaryRollouts in `namespace` (or all namespaces)."""

    custom: Any  # kubernetes CustomObjectsApi
    core: Any  # kubernetes CoreV1Api
    router: TrafficRouter
    metrics: Any  # MetricsProvider (per-rollout fallback) ; batch: see canary.metrics.batch
    namespace: str | None = None
    clock: Any = field(default_factory=SystemClock)
    is_leader: Callable[[], bool] = lambda: True
    lease_left: Callable[[], float] | None = None  # seconds this replica may still write (leader election)
    identity: str = "canary"
    telemetry: Any = None
    notifier: Any = None
    batch: Any = None  # canary.metrics.batch.BatchMetrics, when available
    informers: Any = None  # canary.informer.Informers: watches and a cache instead of a LIST per tick
    workers: int = 1  # rollouts reconciled at once (their writes run concurrently)
    owns: Callable[[dict[str, Any]], bool] = lambda obj: True  # this replica's shard of the rollouts
    shard: Any = None  # canary.shards.ShardGauges of the shard this controller leads (None: unsharded)
    sweep_every: float = sweep.SWEEP_EVERY_S  # seconds between sweeps for abandoned rollouts; 0: never
    # seconds a tick waits for a rollout's Triton pre-traffic gate before leaving it running in the
    # background (the rollout stays at 100/0 and is woken when it ends): a slow canary's warm-up never
    # holds the other rollouts' looks, probes and rollbacks longer than this
    gate_wait_s: float = 2.0
    # seconds an unclaimed CanaryRollout waits for a Ready pod of its canary version (CanaryNotReady) and of its
    # stable version (StableNotReady) before it ends unrun, aborted (Flagger's and Argo's progress deadline; `controller run --wait-ready`)
    wait_ready_s: float = 600.0
    # the writer of the side writes (history ConfigMaps, Kubernetes Events: `canary.side_writes.SideWriter`), made
    # off the workers so that a hung ConfigMap or Events API holds no rollout's tick (decision 890); `controller
    # run` passes one with writer threads. None: made in the worker, at once (tools, tests reading them after a tick)
    side_writes: Any = None
    # seconds an end's tick waits for its rollout's side writes (its end's history record queued last) before its
    # status write: so that a SIGKILL after the status says ended finds the end in the history too (no later tick
    # of any process writes it), while a hung ConfigMap API holds the other rollouts' ticks at most this (941 add.)
    end_write_wait_s: float = 1.0

    def __post_init__(self) -> None:
        self.log = get_logger(component="controller", identity=self.identity)
        self.side = self.side_writes if self.side_writes is not None else SideWriter(threads=0)
        self.fenced = FencedRouter(self.router, self.is_leader, self.lease_left)
        if self.side.threads:
            self.fenced.defer = lambda target, write: self.side.submit(
                f"{target.namespace}/{target.virtual_service}", "event", write)
        self._skewed = False  # the last batched snapshot saw the clocks disagree (`_log_skew`)
        # rollout key -> (binding, step-start snapshot, packed: `PackedSnapshot`). The binding (canary
        # version, step, step start) is checked on every read (docs/decisions.md).
        self._step_starts: dict[str, tuple[tuple[str, int, float], Any]] = {}
        self._breach_seen: dict[tuple[str, str], float] = {}  # (rollout, canary version) -> first failed look
        # (rollout, canary version) whose `promotion.held` was said in this streak of failing LISTs (decision 945)
        self._held_said: set[tuple[str, str]] = set()
        # rollout -> the end `_do` posted at its stable-100% write (`_end_key`), until `_record` meets it (decision 723)
        self._ends_posted: dict[str, tuple[str, str, float]] = {}
        # rollout -> the last end this process told (`_post_end`; its own sweep's, `_swept`: 850), kept until the
        # rollout is forgotten: an end found on the route that is not it was another writer's (`_ended_outside`, 810)
        self._told_ends: dict[str, tuple[str, str, float]] = {}
        self._failing: dict[str, float] = {}  # rollout key -> when its ticks started failing
        # (namespace, VirtualService) -> the resourceVersion a look's read after it measured found with another
        # record (`_route_moved`): until the informers' cache holds that version or a later one, the route is
        # read from the API server (`_seed_names`), not from the cache's older copy (decision 181)
        self._route_ahead: dict[tuple[str, str], int] = {}
        # rollout key -> (generation, when its canary or stable was first found without a Ready pod): `wait_ready_s`
        self._unready_since: dict[str, tuple[int, float]] = {}
        # rollout key -> ((uid, generation, policy digest), the metrics preflight's refusal ("" passed, None not
        # known: Prometheus unavailable), when to ask again): a CanaryRollout waiting on a busy route (decision 404)
        self._busy_input: dict[str, tuple[tuple[str, int, Any], str | None, float]] = {}
        # per CanaryRollout: its `rollout.invalid`/`rollout.tick_failed` message said once, then every minute (`_told`)
        self._said = Throttle(clock=lambda: self.clock.now(), carry=False)
        # `rollout.resume_used` and `rollout.edit_waits` said: (event, CR key, generation); `status.editWaiting` written:
        # (its name, CR key, (edit, generation))
        self._once_said: set[tuple[Any, ...]] = set()
        # per CanaryRollout: the `resume` request of each version the informers delivered (`resume_requests`)
        self._requests: resume_requests.Seen = {}
        # the batched snapshot failing (`_snapshot_failed`): since when, how many ticks; its line once per cause
        self._snap_failing: _SnapshotOutage | None = None
        self._snap_said = Throttle(clock=lambda: self.clock.now())
        self._known: dict[str, _Known] = {}  # last state read or written, per rollout (packed once scheduled)
        self._gates: dict[tuple[str, str, str], Any] = {}  # (rollout, canary version, what it is made of) -> TritonGates
        # rollout key -> [what it checks: (canary version, rollout start, gate), its run (a Future), when it
        # ended (monotonic) or None, gate.running logged]
        self._preflights: dict[str, list[Any]] = {}
        # rollout key -> (canary version, step start, consecutive failures, next probe)
        self._probes: dict[str, tuple[str, float, int, float]] = {}
        # rollout key -> its history recorder (`canary report`); flushed at each step/phase change and every
        # `history_flush_every` looks (a part appended: one PATCH; `canary.history_store`)
        self._histories: dict[str, Any] = {}
        self.health: tuple[bool, str] = (True, "starting")  # /readyz: dependencies reachable at the last tick
        self.last_tick = time.monotonic()  # /healthz: the loop is alive
        self.queue = DueQueue()  # with informers: which rollouts are due, and when
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="canary-rollout") if self.workers > 1 else None
        self._leading = False  # led at the previous tick (a new leader handles every rollout once)
        self._next_sweep = -math.inf  # when `_sweep` looks for abandoned rollouts next (the first tick does)
        self._next_forget = -math.inf  # when `_forget_absent` looks for what deleted rollouts left next
        self._ends_checked: dict[str, str] = {}  # VirtualService -> fingerprint of its ended record found right
        self._ends_read: dict[str, float] = {}  # VirtualService -> when `_check_ends` last read it, not concluded
        self._seen: dict[str, tuple[str, float]] = {}  # VirtualService -> (record fingerprint, first seen at)
        # rollout key -> (the end it tried to write, its actions): a write that would have ended a rollout
        # failed, perhaps having landed (a response lost); the next tick announces it if the route records it
        # an end decided and not known to have landed: (its state, its actions, the record text its write was
        # guarded on: the decision stands only while the route still reads so, decision 135; what its failure
        # said of each write, `write_landed`: `_confirm_end` says it again, decision 164)
        self._unconfirmed: dict[str, tuple[rl.RolloutState, list[rl.Action], str | None, str]] = {}
        # rollout key -> its stable-100% write failing since (`_retry`): a warning until ROLLBACK_PAGE_AFTER_S, then
        # the page once; forgotten when a write lands or the route records the rollout ended
        self._stable_failing: dict[str, _StableFailing] = {}
        # rollout key -> the tries so far of its rollback's canary-subset re-pointing (603) whose look or write
        # failed for a cause that may pass (a glance's LIST past its 3 s on a loaded API server): tried again at
        # later ticks, at most SUBSET_HOME_TRIES times (decision 980)
        self._subset_kept: dict[str, int] = {}
        # without informers, this tick's prefetch (`IstioRouter.prefetch`): the VirtualServices that split with some
        # canary subset and the DestinationRules, for `_split_now` (decision 658); None outside a tick or unlisted
        self._listed: tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]] | None = None

    # ---- the loop -------------------------------------------------------------------

    def watch(self, stop: threading.Event) -> None:
        """Start the informers (a standby keeps its cache warm too) and route their changes to the queue."""
        if self.informers is None:
            return
        self.informers.start(stop)
        if hasattr(self.router, "written"):
            self.router.written = self.informers.written  # our own writes are in the cache at once

    def changed(self, plural: str, key: str, obj: dict[str, Any] | None) -> None:
        """An informer saw a change: the rollouts it concerns are due now."""
        now = self.clock.now()
        if plural != crd.PLURAL:
            users = self.informers.users(plural, key)
            for rollout in users:
                self.queue.touch(rollout, now)
            if obj is not None and plural == "virtualservices" and (hosts := canary_split_hosts(obj)):
                self._wake_held(key.partition("/")[0], hosts, now)
        elif obj is None:
            self.queue.drop(key)
            self._gone(key)
        else:
            resume_requests.saw(self._requests, key, obj)  # every version, owned or not: a takeover reads it
            if self.owns(obj):
                self.queue.touch(key, now)

    def _wake_held(self, namespace: str, hosts: frozenset[str], now: float) -> None:
        """A VirtualService of `namespace` changed and splits with the canary subset of `hosts` (services, in full):
        the rollouts of those services held there (paused, or pending asked to pause) are due now. They are ticked
        on a change of their own objects only (`_schedule`), so a paused rollout's `_split_now` never ran while the
        gateway's split sent its canary a share unjudged, until the resume (decision 659). By the service, not by
        who reads that VirtualService: one some CanaryRollout names (an ended one of the gateway's route, another
        model's route on a shared gateway) woke that rollout alone (decision 691); and a rollout's own writes wake
        only the held rollouts of its own service. A rule not cached: woken (a tick too many, never a look too
        few). Progressing or pending ones look at their next tick anyway."""
        from canary.routing.istio import DR_PLURAL

        rules = self.informers.routes[DR_PLURAL] if self.informers is not None else None
        for key, known in list(self._known.items()):  # called from informer threads: iterate a copy
            t = known.spec.target
            if t.namespace != namespace or known.terminal or not (
                    known.phase == rl.PAUSED or (known.phase == rl.PENDING and known.spec.action == "pause")):
                continue
            dr = rules.get(namespace, t.dr_name) if rules is not None else None
            rule = dr.get("spec") if isinstance(dr, dict) else None
            host = rule.get("host") if isinstance(rule, dict) else None
            if not isinstance(host, str) or patch.fqdn(host, namespace) in hosts:
                self.queue.touch(key, now)

    def run(self, stop: threading.Event, *, tick_s: float = 1.0) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # a tick never kills the loop; the next one re-reads the world
                self.log.error("tick.failed", error=f"{type(exc).__name__}: {exc}")
            malloc.trim()  # RSS follows the live heap, not the sum of the ticks' peaks (canary/malloc.py)
            stop.wait(max(0.0, tick_s - (time.monotonic() - started)))

    def tick(self) -> int:
        """One pass over every rollout; returns how many were looked at."""
        t0 = time.monotonic()
        if not self.is_leader():
            if self._leading and self.telemetry:  # its rows are the new leader's now: two pods' weights, ours frozen
                for namespace, name in self.telemetry.rollouts():
                    if self.owns(stub(f"{namespace}/{name}")):
                        self.telemetry.forget(namespace, name)
            self._leading = False  # when leadership comes back, every rollout is handled once
            if self.shard is not None:
                self.shard.observe(leading=False)
            if self.telemetry:  # sharded: whether this replica leads any shard (it stayed 0, "no leader")
                self.telemetry.set_leader(self.shard is not None and self.shard.leads_any())
            return 0
        if self.shard is not None:
            self.shard.observe(leading=True)  # at once: another shard's tick reads it (`leads_any`)
        if self.telemetry:
            self.telemetry.set_leader(True)
        if not self._leading:  # a new term: what an earlier one remembered may be stale (another leader wrote)
            self._known.clear()
            self._failing.clear()
            self._stable_failing.clear()
        if self.informers is not None:
            return self._tick_due(t0)
        self._leading = True
        try:
            listed = self._list()
            objs = [o for o in listed if self.owns(o)]
        except Exception as exc:
            self.health = (False, f"kubernetes API: {type(exc).__name__}")
            if self.telemetry:
                self.telemetry.kube_error("unavailable")
            raise
        self.health = (True, "ok")
        if objs and hasattr(self.router, "prefetch"):
            try:
                # 2 LISTs instead of 2 GETs per rollout; the looks at the other VirtualServices read them (658)
                self._listed = self.router.prefetch(self.namespace)
            except CanaryError as exc:
                self.log.warning("prefetch.failed", error=str(exc))
        try:
            self._advance_all(objs)
        finally:
            self._listed = None
            if hasattr(self.router, "forget_prefetch"):
                self.router.forget_prefetch()  # prefetched objects serve this tick only, however it ends
        self._sweep({_key(o): o for o in listed})
        self._forget_absent({_key(o) for o in listed})
        if self.telemetry:
            self.telemetry.observe_tick(time.monotonic() - t0, len(objs))
        self.last_tick = time.monotonic()
        return len(objs)

    def _tick_due(self, t0: float) -> int:
        """A tick from the cache: only the rollouts that are due (all of them once, when leadership starts)."""
        inf = self.informers
        if not inf.synced():
            self.health = (False, "kubernetes API: informers not synced yet")
            return 0
        self.health = (True, "ok")
        now = self.clock.now()
        if not self._leading:
            for key in inf.rollouts.summaries():
                if self.owns(stub(key)):
                    self.queue.touch(key, now)
        self._leading = True
        objs = []
        for key in self.queue.pop_due(now):
            ns, _, name = key.partition("/")
            obj = inf.rollouts.get(ns, name)
            if obj is not None and self.owns(obj):
                objs.append(obj)  # our own copy (the cache parses one per read)
        n, keys = len(objs), [_key(o) for o in objs]
        try:
            self._advance_all(objs)  # (empties objs)
        except BaseException:
            # a bug escaped (a rollout's own failures never do: `_advance_one`, `_look`): what this tick took
            # off the queue is due again, with its backoff. It was never ticked again until one of its objects
            # changed: a split rollout's looks, failure budget and rollback stopped, and `tick.failed` was its
            # last line
            for key in keys:
                self.queue.retry_later(key, now)
            raise
        self._sweep(None)
        self._forget_absent(None)
        if self.telemetry:
            self.telemetry.observe_tick(time.monotonic() - t0, n)
        if self.shard is not None:
            mine = [phase for key, phase in inf.rollouts.summaries().items() if self.owns(stub(key))]
            self.shard.observe(leading=True, rollouts=len(mine),
                               active=sum(1 for phase in mine if phase not in rl.TERMINAL))
        self.last_tick = time.monotonic()
        return n

    def _sweep(self, listed: dict[str, dict[str, Any]] | None) -> None:
        """Every `sweep_every` seconds: the abandoned rollouts (`canary.sweep`: a promote whose record
        this process has seen unchanged too long, a CanaryRollout gone, or one that now asks for
        another VirtualService or version) on the VirtualServices of this controller's namespace(s)
        and shard are ended, each write guarded on the record read. `listed`: namespace/name -> object
        of every CanaryRollout this tick listed (None: read them from the informers' cache); an owner
        missing there is asked of the API server."""
        now = self.clock.now()
        lister = getattr(self.router, "list_virtual_services", None)
        if self.sweep_every <= 0 or now < self._next_sweep or (lister is None and self.informers is None):
            return
        self._next_sweep = now + self.sweep_every

        def known(ref: str) -> dict[str, Any] | None:  # CanaryRollout ns/name as this process knows it
            if listed is not None:
                return listed.get(ref)
            ns, _, name = ref.partition("/")
            return self.informers.rollouts.get(ns, name)

        def mine(owner: str) -> dict[str, Any] | None:  # the object `owner` names, when this process has it
            ref, uid = crd_ref(owner)
            obj = known(ref)
            return obj if obj is not None and (not uid or _uid(obj) == uid) else None

        def gone(owner: str) -> bool:
            return mine(owner) is None and sweep.crd_gone(self.custom, owner)

        seen: dict[str, tuple[str, float]] = {}

        def quiet(vs: dict[str, Any], key: str, text: str) -> float | None:
            """How long this process has seen this record unchanged (its own clock: no other's is read)."""
            mark, before = sweep.fingerprint(text), self._seen.get(key)
            seen[key] = before if before is not None and before[0] == mark else (mark, now)
            return None if seen[key][1] == now else now - seen[key][1]

        try:
            if self.informers is not None:
                from canary.routing.istio import VS_PLURAL

                vss = self.informers.routes[VS_PLURAL].items()
            else:
                vss = lister(self.namespace)
            def drives(ns: str, name: str, rec: rl.RolloutState) -> bool:  # this process remembers that rollout
                known = self._known.get(crd_ref(rec.owner)[0])
                return (known is not None and not known.terminal and known.spec.target.namespace == ns
                        and known.spec.target.virtual_service == name
                        and known.spec.target.canary_version == rec.canary_version)

            found = sweep.scan(vss, quiet, gone, owns=lambda key: self.owns(stub(key)), owner_object=mine,
                               drives=drives, ended=True)
        except Exception as exc:  # the next sweep tries again; the rollouts' own ticks are unaffected
            self.log.warning("sweep.failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._seen = seen  # what is no longer in progress is forgotten
        for one in found.unknown:
            self.log.warning("sweep.owner_unknown", namespace=one.namespace, virtual_service=one.virtual_service,
                             owner=one.record.owner, error=one.unknown, weights=str(one.record.weights))
        # an abandoned rollout, and an end typed over a split or garbage nobody drives (decision 157): each is
        # ended once; a refusal is logged (`sweep.left_alone`, `rollback.failed`, `traffic.unsafe`) and the next
        # sweep reads it again
        # each end in its rollout's history too, once it landed (decision 811)
        store = self._history_store()
        ends = [(one, lambda one=one: sweep.end(self.fenced, one, log=self.log, now=now, notifier=self.notifier,
                                                counted=self._swept, history=store))
                for one in found.abandoned]
        ends += [(one, lambda one=one: sweep.end_unowned(self.fenced, one, log=self.log, now=now,
                                                         notifier=self.notifier, counted=self._swept, history=store))
                 for one in found.unowned]
        for one, end_it in ends:
            try:
                end_it()
            except NotLeader:
                return
            except CanaryError:
                continue
            except Exception as exc:
                self.log.error("sweep.failed", namespace=one.namespace, virtual_service=one.virtual_service,
                               error=f"{type(exc).__name__}: {exc}")
        self._check_ends(found.ended)

    def _check_ends(self, ended: list[sweep.Found]) -> None:
        """Each ended rollout's route is read once per record (`_ends_checked`: the record's fingerprint;
        a record that agreed, was repaired or reported is not read again until it changes) and an ended
        rollback whose stable subset was left on the canary version is repaired (`sweep.check_end`)."""
        checked: dict[str, str] = {}
        todo = []
        for one in ended:
            mark = sweep.fingerprint(one.text)
            if self._ends_checked.get(one.key) == mark:
                checked[one.key] = mark
            else:
                todo.append((mark, one))
        # at most CHECK_ENDS_PER_SWEEP reads a sweep: a controller starting over thousands of ended rollouts
        # (none checked yet) must not hold its tick for all of them. The routes read least recently first,
        # then the latest ends: routes that never conclude ("unknown": a DestinationRule deleted) and ended
        # later took every read of every sweep, and an older rollback left on the canary was never repaired
        listed, now = {one.key for _, one in todo}, self.clock.now()
        read = {k: t for k, t in self._ends_read.items() if k in listed}
        todo.sort(key=lambda m: (read.get(m[1].key, -math.inf), -m[1].record.updated_at))
        for mark, one in todo[:CHECK_ENDS_PER_SWEEP]:
            read[one.key] = now
            self._seed_names(one.namespace, {"virtualservices": one.virtual_service,
                                             "destinationrules": one.target().dr_name})
            try:
                outcome = sweep.check_end(self.fenced, one, log=self.log)
            except NotLeader:
                return
            except Exception as exc:  # a bug: the next sweep reads it again
                self.log.error("sweep.failed", namespace=one.namespace, virtual_service=one.virtual_service,
                               error=f"{type(exc).__name__}: {exc}")
                continue
            finally:
                if self.informers is not None and hasattr(self.router, "forget_prefetch"):
                    self.router.forget_prefetch()
            if outcome in ("agrees", "repaired", "reported"):
                checked[one.key] = mark
        self._ends_checked = checked  # routes no longer listed are forgotten
        self._ends_read = {k: t for k, t in read.items() if k not in checked}

    def _swept(self, ended: rl.RolloutState) -> None:
        """A rollout the sweep (or an orphan's claimant; or `_stable_if_ours` where no spec was parsed: a CR being
        deleted, a policy that no longer reads, decision 736) ended, counted as the rollouts' own ends are
        (`canary_rollbacks_total{reason="abandoned"}`, `canary_promotions_total`), as `sweep.end` (its `counted`)
        tells it the end landed: one whose stable subset only was not pointed after it too (decision 735); the
        webhooks were told by `sweep.end`. An end of a CanaryRollout's rollout is noted told (`_told_ends`): its
        next tick mirrors it, never tells it again as another writer's (decision 850)."""
        if ended.owner.startswith("CanaryRollout "):
            self._told_ends[crd_ref(ended.owner)[0]] = _end_key(ended)
        if self.telemetry is None:
            return
        if ended.phase == rl.PROMOTED:
            self.telemetry.record_promotion(model=ended.model)
        else:
            self.telemetry.record_rollback(model=ended.model, reason=ended.reason, seconds=None,
                                           cause=rl.cause_of(ended))

    def _swept_end(self, obj: dict[str, Any], target: Target, ended: rl.RolloutState, actions: list[rl.Action], *,
                   parse: bool = True) -> None:
        """An end `_stable_if_ours` wrote on `target` where no spec was parsed (`_deleted`; `_failed` where the policy
        no longer reads): counted (`_swept`) and written into the rollout's history as every end is, with the policy
        this process ran it with, or `obj`'s where it reads (`parse`). None reads: the history needs the policy's
        summary, so the end is not in it, and `history.end_unwritten` says so (before decision 776 none of these
        ends was in the history, silently)."""
        self._swept(ended)
        known = self._known.get(_key(obj))
        spec = known.spec if known is not None and known.owner in ("", _owner(obj)) else None
        try:
            spec = spec or (crd.parse(obj, configmap=self._configmap) if parse else None)
        except Exception:  # noqa: BLE001 - its policy cannot be read (a policyRef ConfigMap deleted with the CR)
            spec = None
        if spec is None:
            self.log.warning("history.end_unwritten", rollout=_key(obj), tries=0, phase=ended.phase,
                             note="the rollout's end is not in its history ConfigMap: its policy does not read, and "
                                  "the history names the policy's steps and checks; `canary status` shows the end "
                                  "from the route's record")
            return
        self._observe(replace(spec, target=replace(target, stable_version=ended.stable_version)), ended, actions)

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """`fn` over items, `workers` at a time; each call catches its own errors."""
        if self._pool is None or len(items) < 2:
            return [fn(i) for i in items]
        return list(self._pool.map(fn, items))

    def _advance_one(self, obj: dict[str, Any]) -> _Active | None | BaseException:
        try:
            self._seed(obj)
            item = self._advance(obj)
        except NotLeader as exc:
            return exc
        except CanaryRolloutChanged as exc:  # nothing written: the next tick reads the CanaryRollout again
            self.log.info("rollout.changed_outside", rollout=_key(obj), error=str(exc))
            return exc
        except Exception as exc:  # one bad rollout never stops the others
            self._failed(obj, exc)
            return exc
        finally:
            if self.informers is not None and hasattr(self.router, "forget_prefetch"):
                self.router.forget_prefetch()
        return item

    def _advance_all(self, objs: list[dict[str, Any]]) -> None:
        """Advance every object of `objs` (emptied: each is dropped once advanced, `_hold`), then
        one snapshot, then every due look."""
        keys = [_key(obj) for obj in objs]
        results = self._map(self._advance_one, objs)
        if self.informers is not None:
            objs.clear()  # the looks read them again from the cache (`_fresh`)
        if any(isinstance(r, NotLeader) for r in results):
            # the lease ran out during this tick (its last 50 ms: the fence refused a write): no look starts.
            # Every rollout it took off the queue is due again at once. Left off, they were never ticked
            # again when the renewal landed before the next tick (`tick` never saw a standby, so no new term
            # touched them all): a claim never made, a split rollout's looks and rollback stopped, silently
            if self.informers is not None:
                now = self.clock.now()
                for key in keys:
                    self.queue.schedule(key, now)
            return
        active = [r for r in results if isinstance(r, _Active)]
        snap = self._snapshot(active)
        looked = self._looks([a for a in active if a.due], snap)
        for key, result in zip(keys, results):
            # the failure budget (`_failed`) restarts only when the rollout's whole tick went through, its look
            # included: from the informers' cache `_advance` reads nothing from the API, so a look whose write
            # failed at every tick (a VirtualService validation webhook down) restarted it at every tick, and
            # the traffic stayed split for ever with no stable-100% write tried and nobody paged
            if not isinstance(result, BaseException) and looked.get(key) != "failed":
                self._failing.pop(key, None)
        if self.informers is not None:
            now = self.clock.now()
            for key, result in zip(keys, results):
                self._schedule(key, result, looked.get(key), now)

    def _schedule(self, key: str, result: Any, looked: str | None, now: float) -> None:
        """When this rollout is due next: its next look or probe; the next tick while it moves on its
        own (pending, promoting, a look that found no window yet); after a failure, a backoff of its
        own; never by time once finished or paused (a change of one of its objects wakes it)."""
        if isinstance(result, BaseException) or looked == "failed":
            self.queue.retry_later(key, now)
            return
        self.queue.forget(key)
        known = self._known.get(key)
        if key in self._subset_kept and (known is None or known.terminal):
            # its rollback's canary-subset re-pointing failed for a cause that may pass: again, backed off (980)
            self.queue.schedule(key, now + exponential_delay(self.queue.base_delay_s, self._subset_kept[key],
                                                             self.queue.max_delay_s))
            return
        if known is None:  # settled, or another rollout's route: on change only
            self.queue.schedule(key, math.inf)
            return
        known.pack()  # its tick is over: from here on only scheduling and the failure path read it
        if known.terminal and (self._finalizer_left(key) or key in self._histories):
            # the end's status write is our own, already in the cache: no watch event wakes it, and its
            # finalizer stayed for ever (a CanaryRollout deleted while no controller ran hung in Terminating),
            # as did the history records its end's failed flush kept. The next tick finds it settled, releases
            # the finalizer and writes the history (a failure comes back with the queue's backoff)
            self.queue.schedule(key, now)
        elif known.terminal or known.phase == rl.PAUSED or (known.phase == rl.PENDING and known.spec.action == "pause"):
            self.queue.schedule(key, math.inf)  # a change of one of its objects wakes it
        elif known.phase == rl.PROGRESSING and looked != "skipped":
            due = known.next_look()
            probe = self._probes.get(key)
            self.queue.schedule(key, min(due, probe[3]) if probe is not None else due)
        else:
            self.queue.schedule(key, now)

    def _finalizer_left(self, key: str) -> bool:
        """Whether the informers' copy of CanaryRollout `key` is settled (`_settled`: finished, its status
        mirroring its spec) and still carries FINALIZER, which `_advance` releases at its next tick."""
        namespace, _, name = key.partition("/")
        obj = self.informers.rollouts.get(namespace, name) if self.informers is not None else None
        return obj is not None and FINALIZER in _finalizers(obj) and _settled(obj)

    def _seed(self, obj: dict[str, Any]) -> None:
        """The router's next reads of this rollout's VirtualService and DestinationRule come from the cache."""
        if self.informers is None or not hasattr(self.router, "seed"):
            return
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        vs = spec.get("virtualService") or spec.get("model") or ""
        names = {"virtualservices": vs, "destinationrules": spec.get("destinationRule") or vs}
        self.informers.use(_key(obj), meta.get("namespace", ""), names)
        self._seed_names(meta.get("namespace", ""), names)

    def _seed_names(self, namespace: str, names: dict[str, str]) -> None:
        """The router's next reads of these objects ({plural: name}) come from the informers' cache; a
        VirtualService the cache holds older than a look's read found it (`_route_ahead`) is read from the API."""
        if self.informers is not None and hasattr(self.router, "seed"):
            self.router.seed([(plural, obj) for plural, obj in self.informers.route_objects(namespace, names)
                              if plural != "virtualservices" or not self._cache_behind(namespace, obj)])

    def _cache_behind(self, namespace: str, obj: dict[str, Any]) -> bool:
        """Whether the informers' copy `obj` of a VirtualService is older than the version a look's read found
        with another record (`_route_moved`). A look discarded for a record the cache did not hold yet was
        measured again at every tick and discarded again (the tick read the older record from the cache) until
        the watch caught up: a Prometheus snapshot, a GET and a `look.discarded` a tick, and with a stalled
        watch no look judged at all (decision 181). Forgotten once the cache holds that version or a later one."""
        key = (namespace, str((obj.get("metadata") or {}).get("name") or ""))
        ahead = self._route_ahead.get(key)
        if ahead is None:
            return False
        try:
            have = int((obj.get("metadata") or {}).get("resourceVersion"))
        except (TypeError, ValueError):
            have = None
        if have is not None and have < ahead:
            return True
        self._route_ahead.pop(key, None)
        return False

    # ---- per rollout ----------------------------------------------------------------

    def _advance(self, obj: dict[str, Any], *, again: bool = False) -> _Active | None:
        """One tick of one CanaryRollout. `again`: this tick already superseded (`_rescue`) what the
        status or the record showed, and runs once more so that what the spec asks now starts; it
        never supersedes a second time in one tick (the next tick reads everything anew)."""
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._deleted(obj)
            return None
        if _settled(obj):  # finished and its status mirrors this generation: nothing to parse, read or write
            unwritten = self._flush_ended_history(_key(obj))  # (but what its end's history write left)
            recorder, tries = self._histories.get(_key(obj)), self._subset_kept.get(_key(obj))
            self._forget(_key(obj))
            if recorder is not None:
                self._histories[_key(obj)] = recorder
            if tries is not None:  # (but its rollback's canary-subset re-pointing, to be tried again: 980)
                self._subset_home_again(obj, tries)
            if FINALIZER in _finalizers(obj):  # once: a finished rollout's deletion needs nothing of us
                self._set_finalizer(obj, False)
            self._ready_again(obj)
            # a failed write: handed back as a failure, so that with watches the queue tries again (its backoff)
            return self._split_after_end(obj) or unwritten  # type: ignore[return-value]
        spec = crd.parse(obj, configmap=self._configmap)
        if FINALIZER not in _finalizers(obj) and not _finished(obj):  # before any traffic moves
            self._set_finalizer(obj, True)
        log = self._rollout_log(spec)
        status = self.router.inspect(spec.target)
        state = parse_state(status)
        ours = state is not None and state.canary_version == spec.target.canary_version and _owns(obj, state)
        pending = ours and state is not None and _restart_pending(obj, state)
        if pending and state is not None:
            # the record is the rollout an edit superseded: the spec's starts again (claimed below), unless
            # the series judged changed meanwhile (spec.model, policy.metrics): that ends it, as it would
            # have ended the rollout itself (the restart would judge another model's series on this route)
            series, _ = _judged_edit(obj, spec, state)  # how it is judged was edited before: the restart's
            if series:
                self._ended_status(obj, phase=rl.ABORTED, reason=(
                    f"{state.reason.removesuffix(RESTARTS)}; then, before it started again, {series}{ENDS}"[:4096]),
                    spec=spec, cause="operator")
                log.warning("rollout.superseded", reason=f"{series} while a restart was pending{ENDS}",
                            weights=str(state.weights))
                return None
            ours = False
        if state is not None and ours and not state.owner:  # recorded before owners were: ours from now on
            state = replace(state, owner=_owner(obj))
        # the recorded stable version is the truth once a rollout runs (in PROMOTING the stable subset
        # may already select the canary); before, what the CR says or what the stable subset selects
        stable = state.stable_version if ours and state is not None else (spec.target.stable_version
                                                                          or status.stable_subset_version)
        asked_stable = spec.target.stable_version  # spec.stableVersion as written ("": what the subset selects)
        target = replace(spec.target, stable_version=stable)
        spec = replace(spec, target=target)
        log = self._rollout_log(spec, state if ours else None)  # now with the stable version
        if spec.ignored_fields and self._once("rollout.fields_ignored", spec):
            # passed over on a rollout under way (693): a newer CRD's fields, which this controller does not do
            log.warning("rollout.fields_ignored", fields=", ".join(spec.ignored_fields), controller=rl.WRITER,
                        phase=(obj.get("status") or {}).get("phase"),
                        note="the installed CRD is newer than this controller: the rollout goes on without these "
                             "fields (ending it for them would end every rollout in flight mid-upgrade)",
                        hint="upgrade the controller to the CRD's release; until then these fields do nothing")
            # where the person who set the field looks (`kubectl describe`), not only this process's log (748 add.)
            self._cr_event(spec, "rollout.fields_ignored", f"spec fields this controller ({rl.WRITER}) does not know "
                           f"are passed over: {', '.join(spec.ignored_fields)}; the rollout goes on without them. "
                           "Upgrade the controller to the CRD's release; until then they do nothing"[:1000],
                           warning=True)
        now = self.clock.now()
        outside = False  # an end another writer wrote, which this tick tells (`_told_outside`, decision 810)
        if state is not None and ours:
            late = self._unconfirmed.get(spec.key)
            confirming = late is not None and rl.carried(state.to_json(), late[0].to_json())
            outside = not confirming and self._ended_outside(obj, spec.key, state)
            self._known[spec.key] = _Known(spec, state)
            if spec.key in self._histories and not confirming and not outside:
                # followed by this process: record what another one changed. Not this process's own end whose
                # write's answer was lost (or whose subset pointing failed): `_confirm_end` records it below with
                # its lines; observed here too it read as another's edit, then as the end (decision 786)
                self._observe(spec, state)
        drove = _spelled(_drove(obj), spec, status.routes)
        if pending and drove == _drives(spec):
            drove = None  # the status still shows the superseded rollout in progress (that status write failed)
        if drove is None and state is not None and not state.terminal and state.owner == _owner(obj):
            # its own claim (edited while no status of its landed: of another version, or of how it is
            # judged), read from the route's record: an edit like any other
            drove = (spec.target.virtual_service, state.route, state.canary_version,
                     _recorded_dr(state, spec.target.virtual_service))
        known = self._known.get(spec.key)
        if (drove is None and known is not None and not known.terminal and known.owner == _owner(obj)
                and _drives(known.spec) != _drives(spec)):
            # no status of it landed, and the spec now names another route: the route this process claimed
            # goes back first (a restarted process has no memory of it: the sweep ends it, `_sweep`)
            drove = _drives(known.spec)
        drove = _spelled(drove, spec, status.routes)  # the record's or memory's: its route as the spec spells it
        if drove is not None and _edit(drove, _drives(spec)):  # edited mid-rollout: the old one goes back first
            if again:
                return None  # superseded once this tick already: the next tick reads it all again
            if self._route_edit_waits(obj, spec, drove, asked_stable, log):
                return None  # paused: nothing written, its status keeps what it drives (decision 537)
            self._rescue(obj, spec, drove, reason=f"superseded: {_edit(drove, _drives(spec))} mid-rollout", log=log,
                         cause="operator")
            return self._advance(obj, again=True)  # its status now shows that rollout ended: the spec's starts
        series, how = _judged_edit(obj, spec, state if ours else None) if drove is not None else ("", "")
        if drove is not None and ours and state is not None and not state.terminal:
            how = ", ".join(x for x in (how, _stable_edit(state, asked_stable)) if x)
        judged = ", ".join(x for x in (series, how) if x)
        # paused by a person: an edit of how it is judged waits for the resume (`_edit_waits`); till then the record
        # is not checked against the edited policy (its steps are not the ones the rollout was paused at)
        waits = bool(judged) and not series and drove is not None and self._edit_waits(
            obj, spec, state if ours else None, judged, log, then=RESUMED_RESTARTS)
        if not waits:
            self._say_edit_waiting(obj, None)  # an edit reverted while paused waits no more
        if drove is not None and judged and not waits:
            # the series judged (spec.model, policy.metrics) or how they are judged (steps, analysis, checks)
            # edited mid-rollout: the evidence gathered so far is not evidence for what the spec asks now.
            # Stable 100%. How they are judged: the rollout starts again from its first step. Which series:
            # it ends there, as a route edit does (whether the new series are the traffic behind this
            # VirtualService is for a person to say: a new canaryVersion, or the CR created again)
            why = f"superseded: {judged} mid-rollout" + (ENDS if series else RESTARTS)
            if again:
                return None
            self._rescue(obj, spec, drove, reason=why, log=log, restart=not series, cause="operator")
            return self._advance(obj, again=True)
        if state is None or not ours:
            if _finished(obj):
                return None  # this CR ended; the VirtualService has moved on since
            if drove is not None:  # its status says this very rollout is in progress, the route does not:
                # someone ended it (an on-call rollback writing a fresh record) or took the route over.
                # Never claimed again: the ended outcome is mirrored, another rollout left alone, and a
                # split with no record sent to stable (`_rescue`)
                self._rescue(obj, spec, drove, reason="the route no longer records this CanaryRollout's rollout",
                             log=log, cause="foreign_edit")
                return None
            if _waited(obj, state, spec):
                self._duplicate_ended(obj, spec, state, log)
                return None
            if state is not None and not state.terminal and state.owner.startswith("CanaryRollout ") \
                    and self._orphaned(state.owner):
                ended = self._end_orphan(spec, state, status)
                status = self.router.inspect(target)  # the claim below is guarded on what is recorded now
                state = parse_state(status)
                if ended.phase == rl.PROMOTED and _of_this_model(ended, spec):
                    # this very version, every step passed under the gone CR, was just promoted by ending it
                    self._end_unrun(obj, spec, f"not run: {spec.target.canary_version} was promoted on "
                                    f"{spec.target.namespace}/{spec.target.virtual_service} by finishing the orphaned "
                                    f"rollout of {describe_owner(ended.owner).removeprefix('run by ')} (every step "
                                    "had passed); to run that version again, delete and create this CanaryRollout",
                                    log, event="rollout.duplicate_ended", owner=ended.owner, phase=ended.phase,
                                    waited_phase=rl.PROMOTED, cause=UNRUN_RAN_ELSEWHERE)
                    return None
                if not (obj.get("spec") or {}).get("stableVersion"):  # the orphan's end moved the stable subset
                    target = replace(target, stable_version=status.stable_subset_version)
                    spec = replace(spec, target=target)
            if (state is not None and state.phase == rl.PROMOTED and state.canary_version == spec.target.canary_version
                    and status.stable_subset_version == state.canary_version and status.weights == STABLE_ONLY):
                # this version is promoted already (by the rollout of another owner, a sweep that finished an
                # orphan's promotion, a `canary promote`): nothing to run; it failed every tick ("already the
                # stable version") and its request never ended
                self._end_unrun(obj, spec, f"not run: {state.canary_version} is promoted on "
                                f"{spec.target.namespace}/{spec.target.virtual_service} already ({describe_owner(state.owner)}"
                                f"; {state.reason}); to run that version again, deploy it as a new version",
                                log, event="rollout.duplicate_ended", owner=state.owner, phase=state.phase,
                                waited_phase=rl.PROMOTED, cause=UNRUN_RAN_ELSEWHERE)
                return None
            try:
                check_claim(target, status, state, where=spec.key)
            except RolloutBusy as busy:
                if state is not None and _of_this_model(state, spec):
                    self._mark_waiting(obj, state)  # sticky: `_waited` reads it when that rollout ends
                self._input_behind_busy(obj, spec, busy)  # bad input whoever holds the route: said as such
                raise
            self._busy_input.pop(spec.key, None)
            if spec.action == "pause":  # asked to hold before it starts: nothing is claimed (it moved 20% first)
                self._held_before_start(obj, spec)
                return None
            if spec.action == "rollback":  # asked to end before it starts: it ends unrun, nothing claimed
                self._end_unrun(obj, spec, f"not run: spec.action is rollback ({spec.action_reason or 'no reason'})",
                                log, event="rollout.rolled_back_before_start", owner="", phase=None, cause="operator")
                return None
            # another VirtualService's split with the canary subset (decision 578), from the informers' cache if any;
            # only for a rollout that will claim: one asked to hold or end before it starts is not refused (585)
            self._other_splits(obj, spec, fresh=False)
            try:
                self._check_before_claim(spec)
            except PodsNotReady as exc:
                # no Ready canary (or stable) pod yet: retried with the tick's backoff, for `wait_ready_s` from the first
                # time this generation found none (this process's memory: a restart waits afresh, never less)
                first = self._unready_since.get(spec.key)
                if first is None or first[0] != spec.generation:
                    first = self._unready_since[spec.key] = (spec.generation, now)
                if now - first[1] < self.wait_ready_s:
                    raise
                self._unready_since.pop(spec.key, None)
                arm = (f"the stable {spec.target.stable_version}" if isinstance(exc, StableNotReady)
                       else spec.target.canary_version)
                self._end_unrun(obj, spec, f"not run: no Ready pod of {arm} within "
                                f"{self.wait_ready_s:.0f}s ({exc}); delete and create the CanaryRollout again once its "
                                "pods are Ready", log, event="rollout.not_ready_ended", owner="", phase=None,
                                cause=exc.end_cause or UNRUN_NOT_READY)
                return None
            self._unready_since.pop(spec.key, None)
            if self.informers is not None:  # the cache said no split: asked of the API server once, right before the
                self._other_splits(obj, spec, fresh=True)  # claim (a split the watch had not delivered; decision 600)
            before = state  # the ended rollout this claim replaces, if any
            state, actions = rl.new_rollout(model=target.model, stable_version=target.stable_version,
                                            canary_version=target.canary_version, now=now, route=target.route,
                                            owner=_owner(obj), job=_ci_job(obj), destination_rule=target.dr_name,
                                            judged={**judged_marks.marks(spec.policy, target),
                                                    **judged_marks.source_marks(spec.policy_ref)})
            if before is not None and before.terminal:  # how it ended stays readable by its owner (`_rescue`)
                state = replace(state, history=(_predecessor(before),))
            state, _ = self._do(spec, state, actions, expect=status.state, log=log)
            self._known[spec.key] = _Known(spec, state)
            self._status(obj, spec, state)
            return None
        off = rl.off_policy(state, spec.policy) if not state.terminal and not waits else ""
        if not off and not waits and (not state.terminal or state.phase == rl.PROMOTED) and \
                (ref := _status_step(obj, state)) is not False:
            # a later step typed in at its weights is a state of the policy: only what this CR's status last
            # showed tells it from one our own write made (a restarted process, another replica: decision 150)
            off = rl.ahead_of(state, ref, spec.policy)
        if off and state.phase == rl.PROMOTED:
            self._typed_promotion(obj, spec, state, status, off, log=log)
            return None
        if state.terminal and unowned.to_end(state, status):
            self._unowned_end(obj, spec, state, status, log=log)
            return None
        if off:  # a hand edit of the record (a promotion at 80/20 was finished): ended as an unreadable one is
            raise TargetError(_no_state(off))
        unconfirmed = self._unconfirmed.pop(spec.key, None)
        if (unconfirmed is not None and not state.terminal and _decided_for(unconfirmed[0], state)
                and status.state == unconfirmed[2]):
            # a rollback decided at an earlier tick (a failing look's, the failure budget's stable 100%) whose write
            # failed, over a record nobody changed since (another leader's ticks would have): that end stands,
            # written now before any look. The rollout went on instead, to a promotion on its later looks, after
            # the page had said stable 100% (decision 135). A promotion's finish is left to the normal path
            ended, actions = _decided_again(unconfirmed[0], state, now, unconfirmed[1])
            # the phase and weights as routed (the split it ends), the end it writes as `target_`, as the executor
            # labels a decision until its write lands: `phase: rolled_back` beside `weights: 80/20` read as an end
            # that had left traffic split; and its class, as every line of an end says it
            log.warning("rollout.end_stands", phase=state.phase, weights=str(state.weights), target_phase=ended.phase,
                        target_weights=str(ended.weights), reason=ended.reason, end_cause=rl.cause_of(ended),
                        note="decided at an earlier tick whose write failed; written now, before any further look")
            state, _ = self._do(spec, ended, actions, expect=status.state, log=log)
            self._known[spec.key] = _Known(spec, state)
            self._status(obj, spec, state)
            return None
        if state.terminal:
            self._stable_failing.pop(spec.key, None)  # ended: a stable-100% write failing before is over
            if unconfirmed is not None:
                self._confirm_end(spec, state, unconfirmed[0], unconfirmed[1], log=log, landed=unconfirmed[3])
            if outside:
                self._told_outside(spec, state, log=log)
            old = obj.get("status") or {}
            if old.get("phase") not in rl.TERMINAL or spec.key in self._subset_kept:
                self._canary_subset_home(spec.key, target, state, status, log=log)
            if state.reason.endswith(RESTARTS) and old.get("phase") in rl.TERMINAL and old.get("reason"):
                # superseded to start again, then ended for good before it did (a series edit while the
                # restart was pending): the status says so, the record's "it starts again" no longer holds
                state = replace(state, reason=str(old["reason"]))
            self._status(obj, spec, state)
            return None
        recorded = status.state  # every write below is guarded on what is recorded now
        used = spec.action == "resume" and state.phase == rl.PAUSED and _resume_seen(obj, spec, self._requests)
        if used:
            self._say_resume_used(spec, state, obj, log)
        seen = Observation(status=status, command=self._operator_action(spec, state, now, resume_used=used),
                           on_foreign_edit=spec.on_foreign_edit,
                           virtual_service=f"{spec.target.namespace}/{spec.target.virtual_service}",
                           split_elsewhere=self._split_now(spec, state))
        state, recorded = self._decide(spec, state, seen, expect=recorded, log=log)
        if state.phase == rl.PENDING and spec.action == "pause":  # claimed, no traffic yet: it stays at 100/0
            self._held_before_start(obj, spec)
            self._known[spec.key] = _Known(spec, state)
            return None
        if state.phase == rl.PENDING:
            failed = self._gate_preflight(spec, state, log)
            if failed is None:  # the gate still runs: stable keeps 100%, and its end wakes the rollout
                self._known[spec.key] = _Known(spec, state)
                self._status(obj, spec, state)
                return None
            seen = Observation(gate_ran=True, gate_failed=failed or None)
            state, recorded = self._decide(spec, state, seen, expect=recorded, log=log)
        elif state.phase == rl.PROGRESSING and (why := self._gate_probe(spec, state, now, log)):
            state, recorded = self._decide(spec, state, Observation(probe_failed=why), expect=recorded, log=log)
        self._known[spec.key] = _Known(spec, state)
        self._status(obj, spec, state)
        if state.phase == rl.PROGRESSING:
            return _Active(spec, state, self._hold(obj), look_due(spec.policy, state, now), recorded)
        return None

    def _typed_promotion(self, obj: dict[str, Any], spec: crd.RolloutSpec, rec: rl.RolloutState, status: Any,
                         off: str, *, log: Any) -> None:
        """`promoted` typed into the record of a rollout whose status shows a step before the last (`rl.ahead_of`):
        an end, so it was mirrored as this CR's outcome, "promoted", with the weights as typed (0/100: every
        request on a canary judged at its first step) and nobody left to undo it. Ended as the rollout the
        status shows would end: stable 100% and the stable subset on the stable version, recorded `aborted`,
        guarded on the record as read (decision 150)."""
        why = _no_state(off)
        log.warning("rollout.record_unreadable", reason=why, weights=str(status.weights), recorded_phase=rec.phase,
                    hint=f"the annotation {patch.STATE_ANNOTATION} is written by canary alone: never edit it by hand")
        base = replace(rec, phase=rl.PROGRESSING, weights=status.weights)  # the rollout as the route has it
        ended, actions = rl.transition(base, rl.Rollback(self.clock.now(), why, aborted=True, cause="foreign_edit"),
                                       spec.policy)
        self._known[spec.key] = _Known(spec, base)
        try:
            state, _ = self._do(spec, ended, actions, expect=status.state, log=log)
        except CanaryError as exc:
            # not raised to `_failed`: it reads the typed record back as this rollout's end and mirrors it,
            # "promoted". Said on the status (Ready False); the next tick reads the route and writes it again
            # (`_do` says a stable-100% write failing as it does for any rollback, and pages past its budget)
            self._fail_status(obj, exc)
            return
        self._known[spec.key] = _Known(spec, state)
        self._status(obj, spec, state)

    def _unowned_end(self, obj: dict[str, Any], spec: crd.RolloutSpec, rec: rl.RolloutState, status: Any, *,
                     log: Any) -> None:
        """An end typed into this CR's record (`rolled_back`, `aborted`, a `promoted` its status allowed) over
        weights that still split two versions: it was mirrored as the CR's outcome and the split left with nobody
        driving it. Ended first, as `canary.unowned` ends it for every reader: stable 100%, `aborted`, guarded on
        the record as read, `rollout.split_unowned`; then mirrored (decision 157). A failed write is said on the
        status (Ready False) and written again at the next tick, never mirrored as the typed end. Written by `_do`,
        as every end of the controller's: posted as its stable-100% write lands, counted, its Events and its history
        written (before decision 774: neither posted, counted nor in the rollout's history)."""
        ended, actions = unowned.decided(rec, status, model=spec.target.model, now=self.clock.now(), by="controller")
        try:
            state, _ = self._do(spec, ended, actions, expect=status.state, log=log)
        except NotLeader:
            raise
        except CanaryError as exc:
            self._fail_status(obj, exc)
            return
        self._known[spec.key] = _Known(spec, state)
        self._status(obj, spec, state)

    def _confirm_end(self, spec: crd.RolloutSpec, recorded: rl.RolloutState, tried: rl.RolloutState,
                     actions: list[rl.Action], *, log: Any, landed: str = "") -> None:
        """A write that was to end this rollout failed at the last tick (`_do`: a timeout, a 5xx, its
        answer lost; or its subset pointing after its weights landed: `landed`, what that failure said of
        each write) and the route now records that very end (`recorded`: the record that write
        carried, field for field): it had landed. It is announced now, once, as `execute` would have
        (the events of its actions on the log and as Kubernetes Events, the counters, the webhooks),
        with `rollout.end_confirmed`."""
        if not rl.carried(recorded.to_json(), tried.to_json()):  # whole, or cut to fit (decision 563)
            return  # not the record that write carried (another writer's end, or ours never landed)
        log.warning("rollout.end_confirmed", phase=recorded.phase, reason=recorded.reason,
                    weights=str(recorded.weights), write_landed=landed or "unknown", detail=confirmed_detail(landed))
        # with its `rollout.split_unowned` where it ended a split nobody owned (`_unowned_end`): the line that says
        # whose split it was and why it went to stable (decision 812)
        late = [a for a in actions if isinstance(a, rl.Emit) and a.event in
                ("rollback.completed", "rollout.aborted", "rollout.promoted", unowned.EVENT)]
        self._post_once(spec, recorded, late)  # before the Events below (a request each; decision 725)
        for a in late:
            fields = {"phase": recorded.phase, "weights": str(recorded.weights), "step": recorded.step + 1, **a.fields}
            getattr(log, a.log_level)(a.event, confirmed_late=True, **fields)
            if a.event not in K8S_EVENTS:
                continue  # as `execute` says it: a line, no Event
            message = event_message(a, recorded.weights)
            self.fenced.record_event(spec.target, reason=camel(a.event), warning=a.warning, message=message)
        self._record(spec, recorded, late)

    def _ended_outside(self, obj: dict[str, Any], key: str, state: rl.RolloutState) -> bool:
        """Whether the end `state`, this CanaryRollout's rollout as the route records it, was written by another writer
        than this process: a `canary rollback`, a person's edit of the record, another controller process (a
        replica whose end landed and whose status write did not). Its status does not show an end (a controller
        mirrors its own end on the status right after its write), and it is not an end this process told
        (`_told_ends`: every end its ticks write is posted through `_post_end`, and its own sweep's are noted by
        `_swept`, decision 850). Decision 810."""
        if not state.terminal or (obj.get("status") or {}).get("phase") in rl.TERMINAL:
            return False
        return self._told_ends.get(key) != _end_key(state)

    def _told_outside(self, spec: crd.RolloutSpec, state: rl.RolloutState, *, log: Any) -> None:
        """An end of this CanaryRollout's rollout written by another writer (`_ended_outside`), found at this tick: told
        as the controller's own ends are, once (decision 810): one `rollout.ended_outside` line, the post (its reason
        says it was written outside the controller), the counters (`canary_rollbacks_total` with the end's class,
        `canary_promotions_total`), the CanaryRollout's Event, and the rollout's history (the end's event and
        `rollout.ended_outside`). Before, the status mirrored it and nothing else: no post, no count, and a process
        that had not followed the rollout wrote nothing of it in the history."""
        event = {rl.ROLLED_BACK: "rollback.completed", rl.ABORTED: "rollout.aborted"}.get(state.phase,
                                                                                          "rollout.promoted")
        cause = {} if state.phase == rl.PROMOTED else {"end_cause": rl.cause_of(state)}
        log.warning(ENDED_OUTSIDE, phase=state.phase, weights=str(state.weights), reason=state.reason, **cause,
                    by=OUTSIDE_WRITER,
                    note="found on the route's record at this tick, not yet on the CanaryRollout's status: posted, "
                         "counted and written into the rollout's history now; nothing more is written to the route",
                    hint=_outside_hint(state))
        actions: list[rl.Action] = [
            rl.SetWeights(state.weights), rl.Emit(event, {"reason": state.reason, **cause}, warning=True),
            rl.Emit(ENDED_OUTSIDE, {"reason": f"ended by {OUTSIDE_WRITER}: {state.reason}"}, warning=True)]
        self._post_key_once(spec.key, lambda: {**crd.notification(spec, state),
                                               "reason": f"{state.reason} (ended by {OUTSIDE_WRITER})"},
                            state, actions)
        self._record(spec, state, actions)

    def _canary_subset_home(self, key: str, target: Target, state: rl.RolloutState, status: Any, *,
                            log: Any) -> None:
        """A rollback (or abort) recorded on the route that this CanaryRollout's status does not show yet, its canary
        subset still selecting the version rolled back: the process that wrote it may have been killed between its
        stable-100% write and 603's re-pointing (or it was `canary rollback`'s, or a sweep's). 603's look runs once
        more (`canary_subset_home`: one LIST, guarded on the record as read), as `canary rollback` run again does
        (639): where another VirtualService still splits with the canary subset, it is pointed at the stable
        version, `rollback.canary_subset_repointed`; no VirtualService is written. Once the status shows the end,
        never again: a common rollback's next tick costs nothing more (decision 657), unless its look or write failed
        for a cause that may pass (`_subset_kept`): then again at later ticks, SUBSET_HOME_TRIES in all (980)."""
        tries = self._subset_kept.pop(key, 0)
        if state.phase not in (rl.ROLLED_BACK, rl.ABORTED) or not state.stable_version \
                or status.canary_subset_version != state.canary_version or state.canary_version == state.stable_version:
            return
        kept: list[str] = []
        canary_subset_home(self.fenced, target, state, log=log, record=status.state, kept=kept, attempt=tries + 1)
        self._subset_again(key, kept, tries)

    def _subset_home_again(self, obj: dict[str, Any], tries: int) -> None:
        """A settled CanaryRollout whose rollback's canary-subset re-pointing failed for a cause that may pass
        (`_subset_kept`): tried again on the route's record as read now, where it still records this rollout's end."""
        try:
            spec = crd.parse(obj, configmap=self._configmap)
            status = self.router.inspect(spec.target)
        except CanaryError as exc:  # read again at its next try; the try is spent, and said as any failed try (1020)
            self._subset_again(_key(obj), [str(exc)], tries)
            say_subset_unread(self.log, exc, tries + 1, rollout=_key(obj))
            return
        state = parse_state(status)
        if state is None or not state.terminal or state.canary_version != spec.target.canary_version:
            return  # another rollout's record since: its canary subset
        self._subset_kept[spec.key] = tries
        self._canary_subset_home(spec.key, spec.target, state, status, log=self._rollout_log(spec))

    def _subset_again(self, key: str, kept: list[str], tries: int) -> None:
        """After a try (`tries` before it) of a rollback's canary-subset re-pointing: where it failed for a cause
        that may pass (`kept`), the rollout is due again (`_schedule`) until SUBSET_HOME_TRIES are spent. Each failed
        try said `rollback.canary_subset_kept`; a Role or a route that refuses it for good is not tried again."""
        if kept and tries + 1 < SUBSET_HOME_TRIES:
            self._subset_kept[key] = tries + 1

    def _held_before_start(self, obj: dict[str, Any], spec: crd.RolloutSpec) -> None:
        """A CR created (or edited to a new version) with `spec.action: pause`: nothing is claimed and its
        Ready condition says so; clearing the action (or `resume`) wakes it (a change of the object)."""
        msg = f"{spec.key}: spec.action is pause: nothing claimed, no traffic moved; clear it (or resume) to start"
        if self._not_ready(obj, "PausedBeforeStart", msg):
            self.log.info("rollout.paused_before_start", rollout=spec.key)

    def _mark_waiting(self, obj: dict[str, Any], rec: rl.RolloutState) -> None:
        """Record on the CR which rollout of its canary version it was refused for (`_waited`)."""
        if (obj.get("status") or {}).get("waitedOn") != _waited_on(rec):
            self._patch_status(obj, {"waitedOn": _waited_on(rec)})

    def _orphaned(self, owner: str) -> bool:
        """Whether `owner` (`CanaryRollout ns/name#uid`) names a CanaryRollout that no longer exists
        (`sweep.crd_gone`: read from the API server, not a cache); False when that cannot be read."""
        try:
            return sweep.crd_gone(self.custom, owner)
        except sweep.OwnerUnknown:
            return False

    def _rollout_log(self, spec: crd.RolloutSpec, state: rl.RolloutState | None = None) -> Any:
        """The logger of one CanaryRollout's lines: `rollout` (namespace/name) and `rollout_context` (model,
        namespace, VirtualService, route, both versions; the recorded ones when `state` is its record)."""
        return self.log.bind(rollout=spec.key, **rollout_context(spec.target, state))

    def _end_orphan(self, spec: crd.RolloutSpec, rec: rl.RolloutState, status: Any) -> rl.RolloutState:
        """End a rollout whose CanaryRollout is gone (`_orphaned`), so that this one may claim the route,
        as the sweep ends it (`sweep.end`): stable 100%, or its promotion finished when every step had
        passed; guarded on the record read (another claimant or a sweep that ended it first is left
        alone: RoutingConflict, the next tick reads the route again). Returns the ended record."""
        # the lines are about the orphan's rollout, not this claimant's: `rollout` names the gone CanaryRollout
        log = self.log.bind(rollout=crd_ref(rec.owner)[0], claimant=spec.key)
        log.warning("rollout.orphaned", owner=rec.owner, recorded_phase=rec.phase, weights=str(rec.weights),
                    namespace=spec.target.namespace, virtual_service=spec.target.virtual_service,
                    model=rec.model, canary_version=rec.canary_version)
        found = sweep.Found(spec.target.namespace, spec.target.virtual_service, rec, status.state or "",
                            reason=sweep.orphan_reason(rec.owner), destination_rule=spec.target.dr_name)
        return sweep.end(self.fenced, found, log=log, now=self.clock.now(), notifier=self.notifier,
                         counted=self._swept)

    def _duplicate_ended(self, obj: dict[str, Any], spec: crd.RolloutSpec, rec: rl.RolloutState | None,
                         log: Any) -> None:
        """This CR waited (RolloutBusy) while another owner ran the same canary version on its route,
        and that rollout has ended: this one ends too, untouched, rather than put traffic on a version
        just rolled back (or fail on one just promoted). Its status says who ran it and how it ended
        (when the route still records it; else that the route has moved on)."""
        waited = (obj.get("status") or {}).get("waitedOn") or {}
        if rec is not None and _same_rollout(rec, waited):
            how, owner, ended = f"ended {rec.phase}" + (f" ({rec.reason})" if rec.reason else ""), rec.owner, rec.phase
        else:
            how, owner, ended = "ended (the route has moved on since)", str(waited.get("owner") or ""), None
        reason = (f"not run: {describe_owner(owner)}, the rollout of "
                  f"{spec.target.canary_version} on {spec.target.namespace}/{spec.target.virtual_service} {how}"
                  " while this CanaryRollout waited; to run that version again, delete and create it again")
        # the class of the end waited on, which `promote --via-controller` reports as its outcome (decision 648); a
        # promotion, or a rollout the route no longer records, has none to give: this CR's own (decision 667)
        cause = (rl.cause_of(rec) if rec is not None and ended in (rl.ROLLED_BACK, rl.ABORTED)
                 else UNRUN_RAN_ELSEWHERE)
        self._end_unrun(obj, spec, reason, log, event="rollout.duplicate_ended", owner=owner,
                        phase=rec.phase if rec else None, waited_phase=ended, cause=cause)

    def _end_unrun(self, obj: dict[str, Any], spec: crd.RolloutSpec, reason: str, log: Any, *, event: str,
                   owner: Any, phase: str | None, cause: str, waited_phase: str | None = None) -> None:
        """This CR ends (`aborted`) without having run, nothing touched: its status says why, its
        finalizer goes. `waited_phase`: how the rollout it waited on ended, when known
        (`status.waitedOnPhase`: `promote --via-controller` exits by it). `cause`: the end's class
        (`status.endCause`), which every caller names (decision 667: its words, "not run: ...", class nothing)."""
        from canary.end_words import next_step

        # the one line says what ended, why and whose it is (decision 843: it said only the event's name)
        log.warning(event, owner=owner, recorded_phase=phase, reason=reason[:1000], end_cause=cause,
                    next=next_step(cause, spec.target.canary_version, reason=reason))
        self._patch_status(obj, {
            "phase": rl.ABORTED, "reason": reason[:4096], "observedGeneration": spec.generation,
            "leader": self.identity, "updatedAt": crd.iso(self.clock.now()),
            "target": _status_target(spec, spec.target.canary_version),
            "waitedOnPhase": waited_phase,  # None removes one left from an earlier version of this CR
            # this end's class, never that of an earlier end of this CR, a rollout it ran before its spec was edited
            # (decision 609's addendum; 667)
            "endCause": cause,
            "restartPending": None})
        if FINALIZER in _finalizers(obj):
            self._set_finalizer(obj, False)

    def _hold(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What a progressing rollout's `_Active` keeps of its CanaryRollout until its look: with
        informers only its identity (`_fresh` reads it again from the cache, our own writes included),
        so that a tick does not hold every due rollout's parsed object (~40 kB each with the default
        policy's status; ~400 of them a tick at 2,500 rollouts) from its start to its end."""
        if self.informers is None:
            return obj
        meta = obj.get("metadata") or {}
        return {"metadata": {"namespace": meta.get("namespace", ""), "name": meta.get("name", "")}, "_held": True}

    def _fresh(self, held: dict[str, Any]) -> dict[str, Any]:
        """The object `_hold` kept, read again from the cache; the held identity itself when the cache
        no longer has it (deleted meanwhile: the look's writes then fail as for any deleted rollout)."""
        if not held.get("_held") or self.informers is None:
            return held
        meta = held["metadata"]
        return self.informers.rollouts.get(meta["namespace"], meta["name"]) or held

    def _per_rollout(self) -> tuple[tuple[dict[str, Any], ...], tuple[dict[tuple[str, ...], Any], ...]]:
        """What this process keeps per rollout: the dicts keyed by the rollout's key, and those keyed by
        tuples that begin with it."""
        return ((self._step_starts, self._failing, self._known, self._probes, self._histories, self._unconfirmed,
                 self._preflights, self._unready_since, self._stable_failing, self._busy_input, self._requests,
                 self._ends_posted, self._told_ends, self._subset_kept),
                (self._gates, self._breach_seen))

    def _forget(self, key: str) -> None:
        """Drop what this process kept about a finished rollout (a long-running controller must not grow)."""
        by_key, by_tuple = self._per_rollout()
        self._said.forget(key)
        for kept in by_key:
            kept.pop(key, None)
        for kept2 in by_tuple:  # called from informer threads too: iterate a copy
            for k in [k for k in list(kept2) if k[0] == key]:
                kept2.pop(k, None)

    def _gone(self, key: str) -> None:
        """A rollout deleted: `_forget` it, and its series leave /metrics (`canary_rollout_weight`, phase and
        step stayed until the process restarted: a deleted rollout's last weights on the dashboard for ever,
        one row more per rollout ever run). History records a failed flush kept for the next tick's (`_observe`: its
        end's), which no tick of a deleted rollout makes, are said given up (`history.end_unwritten`; 776, addendum)."""
        rec = self._histories.get(key)
        if rec is not None and rec.unwritten and rec.last_failure is not None:
            self._history_given_up(key, rec)
        self._forget(key)
        if self.telemetry:
            namespace, _, name = key.partition("/")
            self.telemetry.forget(namespace, name)

    def _forget_absent(self, present: set[str] | None) -> None:
        """Every `FORGET_ABSENT_EVERY_S` (the controller's clock): `_forget` every rollout this process keeps
        something of that no longer exists (`present`: the keys this tick listed; None: the informers'
        cache). A deletion is forgotten when it is seen (`_deleted`, `changed`), but a tick that was
        already in `_gate_preflight` or `_gate` for that rollout (another thread) can keep a new entry
        after it: a `_preflights`/`_gates` entry, and its gate, per rollout deleted mid-gate, never dropped."""
        now = self.clock.now()
        if now < self._next_forget:
            return
        self._next_forget = now + FORGET_ABSENT_EVERY_S
        if present is None:
            if self.informers is None:
                return
            present = set(self.informers.rollouts.summaries())
        kept: set[str] = {str(k) for k in self._said.keys()}
        by_key, by_tuple = self._per_rollout()
        for one in by_key:
            kept.update(list(one))
        for two in by_tuple:
            kept.update(k[0] for k in list(two))
        if self.telemetry:  # the series of a rollout whose deletion no watch event or tick saw
            kept.update(f"{ns}/{name}" for ns, name in self.telemetry.rollouts())
        for key in kept - present:
            self._gone(key)

    # ---- checks before traffic: metrics preflight, Triton gates ---------------------

    def _other_splits(self, obj: dict[str, Any], spec: crd.RolloutSpec, *, fresh: bool) -> None:
        """`check_other_splits` before a claim: from the informers' cache (no LIST at each tick of a refused or
        waiting CanaryRollout), or `fresh`, one LIST of the namespace's VirtualServices right before the claim: a
        split made just before it that the watch had not yet delivered rode along unjudged to the rollout's end,
        and after its rollback the canary subset kept that share on the rolled-back version (decision 600)."""
        cached, dr = self._cached_others(spec) if not fresh else (None, None)
        try:
            check_other_splits(self.router, spec.target, log=self._rollout_log(spec), listed=cached, dr=dr)
        except RolloutBusy as busy:  # another VirtualService's rollout made that split (594): bad input behind
            self._input_behind_busy(obj, spec, busy)  # it is said as such, as behind this route's (596)
            raise

    def _cached_others(self, spec: crd.RolloutSpec) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """The namespace's VirtualServices and the rollout's DestinationRule as the informers hold them (None each
        without informers, or the rule not cached: then read from the API server). The rule was GET at every tick
        of a CanaryRollout refused or waiting behind another VirtualService's split (decision 606)."""
        from canary.routing.istio import DR_PLURAL, VS_PLURAL

        if self.informers is None:
            return None, None
        t = spec.target
        # only the VirtualServices that split with some canary subset are parsed (their informer's summary): a look
        # at every tick parsed the namespace's every one, 23 ms a look with 500 (decision 602)
        return (self.informers.routes[VS_PLURAL].items_in(t.namespace, where=may_split),
                self.informers.routes[DR_PLURAL].get(t.namespace, t.dr_name))

    def _before_promotion(self, spec: crd.RolloutSpec, state: rl.RolloutState, seen: Observation, *,
                          log: Any) -> Observation:
        """A look whose pass promotes (`decide` previewed, pure): the VirtualServices of every namespace are read once
        (`split_in_others`, one try at a glance), as `canary promote`'s looks read them; the ticks' own looks read the
        informers' cache of the rollout's namespace only (844's left). A split found: the rollout is rolled back
        (602). The LIST failing (a 5xx, a timeout, an answer that does not parse): not promoted over a split nobody
        could look for, `promotion.held`, the look inconclusive (the step's deadline bounds the wait, as
        `failure.on_deadline` says). A 403 reads the namespace's only (said at the claim). Decision 903."""
        find = getattr(self.router, "split_in_others", None)
        if find is None or seen.look is None or not any(
                new.phase == rl.PROMOTING for new, _ in decide(spec.policy, state, seen, self.clock.now())):
            return seen
        streak = (spec.key, state.canary_version)  # `promotion.held` said once a streak of failing LISTs (945)
        try:
            other, _ = find(spec.target, glance=True)
        except CanaryError as exc:
            why = promotion_held_why(str(exc))
            if streak not in self._held_said:
                self._held_said.add(streak)
                log.warning("promotion.held", reason=why, phase=state.phase, weights=str(state.weights),
                            step=state.step + 1, note=promotion_held_note(spec.policy.failure.on_deadline))
            look = seen.look
            verdict = held_verdict(spec.policy, state, why, look.canary_requests, look.window_s)
            return replace(seen, look=replace(look, verdict=verdict, deadline_cause="infrastructure",
                                              promotion_held=str(exc)[:400] or type(exc).__name__))
        self._held_said.discard(streak)
        return seen if other is None else Observation(split_elsewhere=other)

    def _split_now(self, spec: crd.RolloutSpec, state: rl.RolloutState) -> Any:
        """At each tick of a rollout claimed and not promoting: a split with the canary subset made since the claim
        on another VirtualService of the namespace (`claims.OtherSplit`), from the informers' cache (no LIST at
        each tick), or without informers from the tick's prefetch (`_listed`: its LIST, no other read; decision
        658); None when there is none, or it cannot be told (nothing prefetched). Decision 602."""
        find = getattr(self.router, "split_in_others", None)
        if find is None or state.phase not in (rl.PENDING, rl.PROGRESSING, rl.PAUSED):
            return None
        if self.informers is not None:
            listed, dr = self._cached_others(spec)
        elif self._listed is not None:
            t = spec.target
            listed = [vs for vs in self._listed[0] if (vs.get("metadata") or {}).get("namespace") == t.namespace
                      and (vs.get("metadata") or {}).get("name") != t.virtual_service]
            dr = self._listed[1].get((t.namespace, t.dr_name))
            if not listed or dr is None:  # nothing splits with a canary subset there (the common case): no read
                return None
        else:
            return None
        try:
            return find(spec.target, listed=listed, dr=dr)[0]
        except CanaryError:  # the rule not cached and its GET failing: the next tick looks again
            return None

    def _check_before_claim(self, spec: crd.RolloutSpec) -> None:
        """Every query the rollout will run, asked once (ConfigError: reported, nothing touched;
        MetricsUnavailable: retried at the next tick), and the Triton gate configuration."""
        log = self._rollout_log(spec)
        # a canary version no pod serves yet (its Deployment just applied): CanaryNotReady, retried with the
        # tick's backoff, nothing claimed; the status says which pods were looked for. A stable version no pod
        # serves (scaled to 0, crash-looping, a mistyped label): StableNotReady, the same way (decision 124)
        said = _Held(log)  # its lines, logged once the outcome is known: a refusal said before is not said again
        # (the pod check's too: its `preflight.pods_unchecked` was said at every retry of a refusal after it)
        check_pods(self.router, spec.target, log=said)
        try:
            preflight_metrics(self.metrics, spec.policy, spec.target, log=said)
        except ConfigError as exc:
            if self._told(spec.key, str(exc), peek=True) is not None:
                said.flush()
            raise
        said.flush()
        self._static_input(spec)

    def _static_input(self, spec: crd.RolloutSpec) -> None:
        """What the spec asks that is wrong whatever the route and Prometheus hold, judged with no request: the
        Triton gate's configuration (ConfigError naming the field). Before the claim and behind a busy route."""
        if spec.samples_error:
            raise ConfigError(spec.samples_error)
        cfg = spec.policy.gates.triton
        if cfg is not None and cfg.enabled and not spec.triton_canary:
            raise ConfigError(f"{spec.key}: policy gates.triton is enabled and needs spec.triton.canaryUrl")
        if cfg is not None and cfg.enabled and not spec.triton_stable:  # else the contract check was skipped, silently
            raise ConfigError(f"{spec.key}: policy gates.triton is enabled and needs spec.triton.stableUrl too: the "
                              "canary's inputs, outputs and max_batch_size are compared with stable's before it "
                              "gets traffic")
        if cfg is not None and cfg.enabled:
            from canary.gates import check_urls

            # a URL tritonclient would misread, or one server as both (decision 204): refused before the claim
            # (a bad URL was found only by the gate, the route claimed at 100/0 and left pending)
            check_urls(cfg.protocol, stable_url=spec.triton_stable, canary_url=spec.triton_canary)

    def _input_behind_busy(self, obj: dict[str, Any], spec: crd.RolloutSpec, busy: RolloutBusy) -> None:
        """Before a CanaryRollout is refused as RolloutBusy (another rollout holds its route: it waits, Ready
        False, and claims once the holder ends): what it asks that is wrong whoever holds the route is its
        refusal instead, ConfigError (the follower, `promote --via-controller`, exits 2 at once and withdraws
        the object it created). A policy query Prometheus rejects (a URL that is no Prometheus, credentials
        refused: the metrics provider's own ConfigError) stayed RolloutBusy until the holder ended, and the
        follower waited to `--timeout` (exit 3), as `promote` did before decision 400 (decision 404).

        The metrics preflight is asked once per generation of the spec and policy (`_busy_input`: the object's
        uid, `metadata.generation`, the policy as parsed, so a `policyRef` ConfigMap's edit is asked again):
        a waiting CanaryRollout was never going to ask Prometheus at every tick, and its Ready condition says
        one reason for as long as that input stands, never RolloutBusy and ConfigError by turns. Prometheus
        unavailable: busy, as before, asked again after BUSY_INPUT_RETRY_S. No stable version known: the route's
        to say, judged after the holder has ended (the stable data, the pods: as before, at the claim)."""
        explicit = str((obj.get("spec") or {}).get("stableVersion") or "")
        if explicit and explicit == spec.target.canary_version:
            raise ConfigError(f"{spec.key}: spec.canaryVersion {explicit!r} is spec.stableVersion too: a rollout "
                              f"compares a new version with the one serving; nothing was claimed (the route is held "
                              f"by another rollout now too: {busy})")
        self._static_input(spec)
        if not spec.target.stable_version:
            return
        mark = (_uid(obj), spec.generation, spec.policy)  # the policy as parsed: a `policyRef` edit differs
        now = self.clock.now()
        held = self._busy_input.get(spec.key)
        if held is None or held[0] != mark or (held[1] is None and now >= held[2]):
            try:
                self.metrics.preflight(spec.policy, spec.target)
                held = (mark, "", math.inf)
            except ConfigError as exc:
                held = (mark, str(exc), math.inf)
            except Exception:  # noqa: BLE001 - Prometheus unavailable now: the route is busy all the same
                held = (mark, None, now + BUSY_INPUT_RETRY_S)
            self._busy_input[spec.key] = held
        if held[1]:
            raise ConfigError(f"{held[1]}; nothing was claimed (the route is held by another rollout now too: "
                              f"{busy})")

    def _gate(self, spec: crd.RolloutSpec) -> Any:
        """The rollout's Triton gates, None when its policy has none or turns them off
        (`gates.triton.enabled: false`, as policies/default.yaml ships: URLs given are then unused)."""
        cfg = spec.policy.gates.triton
        if cfg is None or not cfg.enabled or not spec.triton_canary:
            return None
        # what the gate is made of: an edit of the CanaryRollout's Triton URLs or of its policy's gate for
        # the same canary version makes a new one (the old one went on probing the old URLs)
        key = (spec.key, spec.target.canary_version, f"{spec.triton_stable} {spec.triton_canary} {cfg!r}")
        if key not in self._gates:
            from pathlib import Path

            from canary.gates import TritonGates

            for old in [k for k in list(self._gates) if k[:2] == key[:2]]:
                self._gates.pop(old, None)
            self._gates[key] = TritonGates(cfg, model=spec.target.model, stable_url=spec.triton_stable,
                                           canary_url=spec.triton_canary, base_dir=Path.cwd(),
                                           samples=spec.warmup_samples)  # never a file: crd._samples
        return self._gates[key]

    def _gate_preflight(self, spec: crd.RolloutSpec, state: rl.RolloutState, log: Any) -> str | None:
        """The Triton pre-traffic gate (schema, warm-up, outputs); "" when it passed or there is none, its
        failure's message, or None while it still runs. ConfigError (nothing recorded but the CR's Ready
        condition; the rollout waits at 100/0) when its warm-up samples went missing since the claim.

        The gate runs on a thread of its own: the tick that starts it waits `gate_wait_s` for it, then leaves
        it running and the rollout pending (stable 100%); later ticks only look whether it ended (they waited
        `gate_wait_s` each, one after another with one worker: N gates running held every tick N x 2 s for
        as long as they ran); its end wakes the rollout (`DueQueue.touch`). Each call of the
        gate is bounded (5 s), but a warm-up is `warmup_requests` calls: inline, a slow canary's held the
        whole tick, so every other rollout's look, probe and rollback waited on it. A run is for one
        (canary version, rollout start, gate); a result left unread for `GATE_RESULT_TTL_S` is run again
        (this process may have lost and regained the lead meanwhile). Other exceptions of the gate are
        raised here, as before: reported, retried with the rollout's backoff."""
        gate = self._gate(spec)
        if gate is None:
            return ""
        if spec.samples_error:
            raise ConfigError(spec.samples_error)
        bound = (spec.target.canary_version, state.started_at, id(gate))
        held = self._preflights.get(spec.key)
        if held is not None and (held[0] != bound or (
                held[2] is not None and time.monotonic() - held[2] > GATE_RESULT_TTL_S)):
            held = None
        wait = 0.0  # a run started by an earlier tick is only looked at: its end wakes the rollout
        if held is None:
            key = spec.key
            # started before it is kept: a thread that cannot start (RuntimeError) raises here with nothing
            # kept, and the next tick starts it again (kept first, a run of None failed every tick for ever)
            run = run_in_background(gate.preflight, name=f"canary-gate-{key}")
            held = self._preflights[key] = [bound, run, None, False]
            wait = self.gate_wait_s

            def ended(_: Any, held: list[Any] = held) -> None:
                held[2] = time.monotonic()
                if self._preflights.get(key) is held:
                    self.queue.touch(key, self.clock.now())

            run.add_done_callback(ended)
        run = held[1]
        try:
            run.exception(timeout=wait)  # waits for the end, whatever it is
        except FutureTimeout:
            if not held[3]:  # once per run
                held[3] = True
                log.info("gate.running", waited_s=self.gate_wait_s, canary_version=spec.target.canary_version,
                         note="the Triton gate goes on in the background; stable keeps 100% until it ends")
            return None
        self._preflights.pop(spec.key, None)  # ended: its result is read once
        try:
            report = run.result()  # any other exception is raised, as the gate inline raised it
        except CanaryError as exc:  # decide() emits gate.failed
            return str(exc)
        log.info("gate.passed", **report)
        from canary.runner import gate_detail

        at, detail = self.clock.now(), gate_detail(report)
        self.side.submit(spec.key, "history", lambda: self._history(spec).gate(at=at, stage="preflight",
                                                                              outcome="passed", detail=detail))
        return ""

    def _gate_probe(self, spec: crd.RolloutSpec, state: rl.RolloutState, now: float, log: Any) -> str:
        """The in-traffic readiness probe, every probe_interval; "" while the canary is ready.
        Consecutive failures are counted per (rollout, canary version, step start)."""
        gate = self._gate(spec)
        if gate is None:
            return ""
        bound = (state.canary_version, state.step_started_at)
        version, started, failures, next_at = self._probes.get(spec.key, (*bound, 0, 0.0))
        if (version, started) != bound:
            failures, next_at = 0, 0.0  # counted for another version or step: start over
        if now < next_at:
            return ""
        failures = 0 if gate.ready() else probe_streak(gate, failures)
        self._probes[spec.key] = (*bound, failures, now + gate.probe_interval)
        if failures:
            log.warning("gate.probe_failed", consecutive=failures, limit=gate.probe_failures, **probe_server(gate),
                        reason=getattr(gate, "last_failure", "") or "", phase=state.phase,
                        weights=str(state.weights), step=state.step + 1)
        if failures < gate.probe_failures:
            return ""
        return probe_reason(gate, failures)

    @staticmethod
    def _operator_action(spec: crd.RolloutSpec, state: rl.RolloutState, now: float, *,
                         resume_used: bool) -> rl.Event | None:
        """spec.action is the desired state: the event that moves the rollout there, if any. `rollback`
        and `pause` hold for as long as they are asked; `resume` ends the pause in force unless that request
        was used up on an earlier pause (`resume_used`: `_resume_seen`): an on-call `canary pause` or a
        deadline's hold under a spec that still says `resume` stays (decisions 520, 521)."""
        if spec.action == "rollback":
            return rl.Rollback(now, f"operator: {spec.action_reason or 'rollback requested'}", cause="operator")
        if spec.action == "pause" and state.phase == rl.PROGRESSING:
            return rl.Pause(now, spec.action_reason or "paused by operator")
        if spec.action == "resume" and state.phase == rl.PAUSED and not resume_used:
            return rl.Resume(now)
        return None

    def _do(self, spec: crd.RolloutSpec, state: rl.RolloutState, actions: list[rl.Action], *, expect: str | None,
            log: Any, routed: Weights | None = None) -> tuple[rl.RolloutState, str | None]:
        """Execute guarded on `expect` (and on `routed`, the weights confirmed on the route: `execute`);
        returns the new state and the state text now recorded."""
        texts: list[str] = []  # the state text each weight write recorded (computed once, by execute)
        rolls_back = state.phase in (rl.ROLLED_BACK, rl.ABORTED) and any(isinstance(a, rl.SetWeights) for a in actions)
        retry = self._retry(spec.key, state, spec.target) if rolls_back else None
        if rolls_back and self._start_said(spec.key, state, (state.phase, state.reason)):
            # its start was said at the tick whose write first failed: one rollback reads as one on-call, however
            # many ticks its write takes (each failed one says `rollback.retrying`; decision 737)
            actions = without_start(actions)

        def written(text: str) -> None:
            # an end is posted the moment its stable-100% write lands, before the lines, the Kubernetes Event, the
            # pod count and the look at other routes that follow it in `execute` (decision 723)
            if state.terminal and not texts:
                self._post_once(spec, state, actions)
            texts.append(text)

        kept: list[str] = []  # the rollback's canary-subset re-pointing failed for a cause that may pass (980)
        try:
            new = execute(self.fenced, spec.target, state, actions, log=log, expect=expect, written=written,
                          retry=retry, routed=routed, subset_kept=kept)
        except CanaryError as exc:
            if retry is not None:  # a weights write that landed was the stable 100% (a re-pointing after it failed)
                self._stable_tried(spec.key, state, retry, None if texts else exc)
                self._start_failed(spec.key, state, (state.phase, state.reason))
            if state.terminal and not isinstance(exc, RoutingConflict):  # it may have landed with its answer
                # lost (a guarded write refused did not): `_confirm_end` reads the route at the next tick
                self._unconfirmed[spec.key] = (state, actions, expect, write_landed(exc))
            raise
        if retry is not None:
            self._stable_tried(spec.key, state, retry, None)
        self._subset_again(spec.key, kept, 0)
        self._record(spec, new, actions)  # the webhooks before the history's write (decision 720)
        if self.telemetry and any(isinstance(a, rl.Emit) and a.event == "weights.foreign_edit" for a in actions):
            self.telemetry.kube_error("conflict")
        return new, texts[-1] if texts else expect

    def _decide(self, spec: crd.RolloutSpec, state: rl.RolloutState, seen: Observation, *, expect: str | None,
                log: Any, confirmed: Weights | None = None,
                lead: list[rl.Action] | None = None) -> tuple[rl.RolloutState, str | None]:
        """The shared reconcile step (`reconcile.decide`), each write guarded on the previous one; a
        write that moves traffic towards the canary is guarded on the live CanaryRollout (`_still_asked`).
        `confirmed`: the weights a read after the look found on the route (`_route_moved`): the look's write
        lands only on them, else WeightsMoved (nothing written; decision 185). `lead`: the look's own lines
        that come before its decision's (`look.window_restarted`): said with them, i.e. held like them until
        the look's write lands, and never for a look refused at its write (decision 191)."""
        routed = seen.status.weights if seen.status is not None else None
        lead = list(lead or ())
        for new, actions in decide(spec.policy, state, seen, self.clock.now()):
            if _forward(state, new, actions, routed):
                self._still_asked(spec)
            actions, lead = [*lead, *actions], []
            state, expect = self._do(spec, new, actions, expect=expect, log=log, routed=confirmed)
            routed = None
            confirmed = state.weights if confirmed is not None else None
        for line in lead:  # nothing decided (no write): said as before
            assert isinstance(line, rl.Emit)
            getattr(log, line.log_level)(line.event, **line.fields)
        return state, expect

    def _still_asked(self, spec: crd.RolloutSpec) -> None:
        """Whether the CanaryRollout, read from the API server now, still asks what `spec` (the copy this
        decision was taken on: the informer's, perhaps behind a stalled watch, or a LIST at the tick's
        start) asked: the same object, not being deleted, its spec unchanged (generation). Raises
        CanaryRolloutChanged otherwise (nothing written: the next tick acts on the live object, which
        goes into the cache), and what the read raises when it fails (transient: the failure budget).
        Asked before every write that moves traffic towards the canary (a step up, a promotion, its
        finish, weights reasserted over a lower edit): a rollback, a deletion or an edit that landed
        meanwhile must win over it, not be found after it (a promotion stands)."""
        try:
            live = kube.an_object(self.custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, spec.namespace, crd.PLURAL, spec.name, _request_timeout=10),
                f"CanaryRollout {spec.key}")  # no object (a proxy's 200): the read failed, not "another object"
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise CanaryRolloutChanged(f"{spec.key}: the CanaryRollout is gone; not moving traffic to the "
                                           "canary") from None
            raise kube.translate(exc, f"CanaryRollout {spec.key}") from exc
        meta = (live or {}).get("metadata") or {}
        why = ("it is another object of that name" if spec.uid and meta.get("uid") != spec.uid else
               "it is being deleted" if meta.get("deletionTimestamp") else
               f"its spec changed (generation {spec.generation} -> {meta.get('generation')})"
               if meta.get("generation") != spec.generation else "")
        if not why:
            return
        if self.informers is not None and isinstance(live, dict):
            self.informers.rollouts.put(live)  # the watch is behind: the next tick reads what the API holds
        raise CanaryRolloutChanged(f"{spec.key}: the CanaryRollout changed since this decision read it ({why}); "
                                   "not moving traffic to the canary")

    # ---- looks (batched measurement) ------------------------------------------------

    @staticmethod
    def _binding(state: rl.RolloutState) -> tuple[str, int, float]:
        return (state.canary_version, state.step, state.step_started_at)

    @staticmethod
    def _slack(spec: crd.RolloutSpec) -> float:
        """How long before a step's start a snapshot may have been taken and still serve as its step-start
        snapshot (it then holds a little of the step before). Any later snapshot serves too."""
        return spec.policy.analysis.look_every / 2

    def _snapshot(self, active: list[_Active]) -> Any:
        """One batched snapshot for every progressing rollout (queries independent of their number), or None
        when it failed (`_snap_error`: every look of the tick is then "could not measure", at no query).

        Step-start snapshots, so that the batched snapshot serves every look whatever the tick length:
        a step begun by a look starts from the snapshot that look judged (`_looks`: the windows of two
        steps meet, nothing is lost or counted twice); any other step (begun, resumed, or another
        leader's) keeps the one persisted in its status when it is bound to it, else takes the first
        snapshot not older than `_slack` before its start. A later one only makes the step's windows
        shorter (`Looked.window_s` says so, and a step passes only once they cover `interval`): never a
        per-rollout query because a tick was slow."""
        def has_step_start(a: _Active) -> bool:
            return self._held_step_start(a.spec, a.state) is not None

        self._snap_error: CanaryError | None = None
        # no query at all on ticks where no look is due and every step already has its step-start snapshot
        if self.batch is None or not any(a.due or not has_step_start(a) for a in active):
            return None
        from canary.metrics.batch import Want

        local = self.clock.now()
        try:
            # at Prometheus's now, or the controller's when that is later (a clock behind Prometheus's
            # left the newest seconds of every window, and the last before a promotion, unread)
            snap = self.batch.snapshot([Want(a.spec.policy, a.spec.target) for a in active], not_before=local)
        except Exception as raised:
            # a bug is as Prometheus failing (every look due could not measure; a step unmeasured past its
            # deadline ends at stable 100%), never a tick that dies before its looks
            exc = raised if isinstance(raised, CanaryError) else MetricsUnavailable(
                f"batched snapshot failed: {type(raised).__name__}: {raised}"[:500])
            self._snap_error = exc
            self.health = (False, f"prometheus: {exc}"[:200])
            self._snapshot_failed(str(exc), local, [a.spec for a in active if a.due])
            if self.telemetry:
                self.telemetry.prometheus_query(False)
            return None
        if self._snap_failing is not None:
            first, ticks = self._snap_failing.first_at, self._snap_failing.ticks
            self.log.info("metrics.snapshot_recovered", failed_for_s=round(local - first, 1), failed_ticks=ticks)
            self._snap_failing = None
            self._snap_said.forget("")  # its next failure is a first one
        if self.telemetry:
            self.telemetry.prometheus_query(True, self.batch.queries_last)
        self._log_skew(self.batch.clock_offset_last)
        for a in active:
            if has_step_start(a):
                continue
            try:
                self._take_step_start(a, snap, local)
            except Exception as exc:  # a bug in one rollout's step start: that rollout fails, the others' looks go on
                self.log.error("step_start.failed", rollout=a.spec.key, error=f"{type(exc).__name__}: {exc}"[:300])
                self._failed(a.obj, exc)
        return snap

    def _take_step_start(self, a: _Active, snap: Any, local: float) -> None:
        """Rollout `a`'s step-start snapshot, from its status when bound to it, else `snap` (see `_snapshot`)."""
        from canary.metrics.batch import Snapshot
        from canary.metrics.snapshot import PackedSnapshot

        spec, state, obj = a.spec, a.state, self._fresh(a.obj)
        bind = self._binding(state)
        saved = self._saved_step_start(obj, bind)
        if saved is not None:
            try:
                saved_snap = Snapshot.from_dict(saved).check_step_start(
                    spec.target, step_started_at=state.step_started_at)
                if rl.reaches_back(state, saved_snap.taken_at):
                    raise ValueError(f"taken at {saved_snap.taken_at:.3f}, before the open window's data start "
                                     f"({state.window_from:.3f}): a restart opened a new window since, and "
                                     "the data before it are pooled already")
                self._step_starts[spec.key] = (bind, PackedSnapshot(saved_snap))
                return
            except (ValueError, TypeError, KeyError, ConfigError) as exc:
                self.log.info("step_start.unusable", rollout=spec.key, error=str(exc))
        if local < state.step_started_at - self._slack(spec):  # both on the controller's clock
            return  # taken well before the step began: the next snapshot starts it
        try:
            self._patch_status(obj, {"stepStart": self._step_start(spec, state, snap)})
        except Exception as exc:  # only an optimisation for restarts
            self.log.info("step_start.not_persisted", rollout=spec.key, error=str(exc))

    def _deleted(self, obj: dict[str, Any]) -> None:
        """A CanaryRollout being deleted (our finalizer keeps it until this ran): the rollout it drives,
        if in progress, goes to stable 100% first (`_stable_if_ours`: no policy needed, so a policyRef
        ConfigMap deleted with the CR does not matter; Flagger's `revertOnDeletion`, here always), then
        the finalizer goes and the API server removes the object. A failed write keeps the finalizer:
        the next tick, in this process or any other, tries again. A VirtualService that is gone has
        nothing split: the finalizer goes."""
        key = _key(obj)
        if FINALIZER not in _finalizers(obj):
            self._gone(key)
            return
        log = self.log.bind(rollout=key)
        drove, known = _drove(obj), self._known.get(key)
        if drove is None and known is not None and not known.terminal:  # a status older than status.target
            drove = _drives(known.spec)
        if drove is None:  # no status landed (its writes failed, then a restart): the route's record may name it
            drove = self._claimed_by(obj)
        if drove is not None:
            raw = _raw_target(obj, drove)
            log = log.bind(**rollout_context(raw))
            # counted as every end (no spec: no Event on a CanaryRollout being deleted; 736), in its history (776)
            outcome, _ = self._stable_if_ours(obj, raw, reason="CanaryRollout deleted mid-rollout", cause="operator",
                                              log=log, counted=lambda ended, did: self._swept_end(obj, raw, ended, did))
            log.info("rollout.deleted", outcome=outcome)
        self._set_finalizer(obj, False)
        self._gone(key)

    def _claimed_by(self, obj: dict[str, Any]) -> tuple[str, str, str, str] | None:
        """What the raw spec names (`_drives`, without parsing the policy), when the route's record is a
        rollout this very CR (`_owner`, uid included) runs: its claim landed though no status did."""
        sp = obj.get("spec") or {}
        vs = str(sp.get("virtualService") or sp.get("model") or "")
        version = str(sp.get("canaryVersion") or "")
        if not vs or not version:
            return None
        drives = (vs, str(sp.get("route") or ""), version, str(sp.get("destinationRule") or ""))
        target = _raw_target(obj, drives)
        try:
            seen = read_for_stable(self.router, target)
        except NotFound as exc:
            if _vs_gone(exc, target):
                return None  # nothing split
            raise
        # any other failure to read raises: the finalizer stays, and the next tick tries again
        try:
            rec = parse_state(seen)
        except CanaryError:  # unreadable: a split no rollout can go on from goes to stable (`_stable_if_ours`)
            return drives if seen.weights != STABLE_ONLY or seen.raw_weights is not None else None
        if rec is None or rec.terminal or rec.owner != _owner(obj):
            return None
        # the version, route and DestinationRule it claimed (edited since?)
        return vs, rec.route or drives[1], rec.canary_version, _recorded_dr(rec, vs)

    def _set_finalizer(self, obj: dict[str, Any], on: bool) -> None:
        """Add or remove FINALIZER, guarded on the resourceVersion read (a 409 is retried next tick)."""
        if not self.is_leader() or (self.lease_left is not None and self.lease_left() <= 0.05):
            raise NotLeader("not the leader: finalizer write refused")
        meta = obj["metadata"]
        now = _finalizers(obj)
        new = [f for f in now if f != FINALIZER] + ([FINALIZER] if on else [])
        try:
            written = kube.unvalidated(self.custom.patch_namespaced_custom_object)(
                crd.GROUP, crd.VERSION, meta["namespace"], crd.PLURAL, meta["name"],
                {"metadata": {"finalizers": new or None, "resourceVersion": meta.get("resourceVersion")}},
                _request_timeout=10.0)
            # a 200 that is not the object (a proxy's `{}` or page, `null`): a failed write, tried again at the next
            # tick (its 409 if it landed). Taken as written, `{}` entered the cache as a CanaryRollout "/" (406)
            written = kube.an_object(written, f"the finalizer write of CanaryRollout {meta['namespace']}/{meta['name']}")
        except Exception as exc:
            raise kube.translate(exc, f"CanaryRollout {meta['namespace']}/{meta['name']} finalizers") from exc
        meta.update({k: v for k, v in (written.get("metadata") or {}).items()
                     if k in ("finalizers", "resourceVersion", "deletionTimestamp")})
        if not new:
            meta.pop("finalizers", None)
        if self.informers is not None and not (meta.get("deletionTimestamp") and not new):
            self.informers.rollouts.put(written)

    def _taken_over(self, target: Target, state: rl.RolloutState) -> _RouteNow:
        """The route read again (`_RouteNow`): whether it now records another rollout than `state` (another
        version, or the same started at another time): what this process remembers is stale, and a stable-100%
        write would undo someone else's rollout; the record text read, to guard that write on (`...` when the
        route cannot be read: then stable, unguarded); the record itself when it is this very rollout (a
        decision is taken from it, not from memory); and the route, whose split an end from that record says
        (`reconcile.as_routed`)."""
        try:
            seen = read_for_stable(self.router, target)
        except CanaryError:
            return _RouteNow(False, ..., None, None)
        try:
            rec = parse_state(seen)
        except RecordTooNew:  # a newer canary's record (decision 169): not this process's to undo
            return _RouteNow(True, seen.state or None, None, seen)
        except CanaryError:
            return _RouteNow(False, seen.state or None, None, seen)
        other = rec is not None and (rec.canary_version != state.canary_version or rec.started_at != state.started_at
                                     or rec.owner not in ("", state.owner))
        return _RouteNow(other, seen.state or None, None if other else rec, seen)

    def _stable_if_ours(self, obj: dict[str, Any], target: Target, *, reason: str, cause: str = "",
                        log: Any, counted: Callable[[rl.RolloutState, list[rl.Action]], None] | None = None,
                        ) -> tuple[str, rl.RolloutState | None]:
        """Stable 100% on `target` (what this CR's status says it drove) when that route's rollout is
        still this CR's (its canary version, started when the status says) or its record is unreadable
        with the traffic split: when in doubt, stable gets 100%; another rollout is left alone. Needs
        no policy. Returns ("stable", new state) after the write; ("ended", record) when it had ended;
        ("other", record) when the route runs another rollout; ("idle", None) when nothing is split;
        ("gone", None) when the VirtualService no longer exists. Raises what the router raises. The end it writes
        is posted as its write lands, from the object and `target` alone (`crd.notification_of`: no policy read),
        once (`_post_key_once`); before decision 736 nothing posted it. `counted(end, its actions)`: the caller's
        count of the end (its counters, Events), once it landed: after its write, or where only the stable subset's
        pointing after the write failed (RollbackFailed, raised after it), an end the next tick finds ended and
        never counts (decision 736, addendum)."""
        now = self.clock.now()
        try:
            seen = read_for_stable(self.router, target)
        except NotFound as exc:
            if _vs_gone(exc, target):
                return "gone", None
            raise
        try:
            rec = parse_state(seen)
        except RecordTooNew:  # a newer canary's rollout (decision 169): never ended here; raised, the next tick sees
            raise
        except CanaryError:
            rec = None  # unreadable: the traffic decides
        started = (obj.get("status") or {}).get("startedAt")
        if (rec is not None and rec.terminal and rec.canary_version == target.canary_version
                and rec.owner in ("", _owner(obj))):
            return "ended", rec  # ended (by an on-call rollback writing a fresh record, perhaps): its outcome
        mine = rec is not None and (rec.owner == _owner(obj) or (not rec.owner and crd.iso(rec.started_at) == started))
        if rec is not None and (rec.canary_version != target.canary_version or not mine):
            unrecorded = split_unrecorded(seen, rec, target.canary_version)
            if not unrecorded:
                log.warning("rescue.not_ours", reason=reason, recorded=rec.canary_version, recorded_phase=rec.phase,
                            recorded_owner=rec.owner)
                return "other", rec
            # this CR's canary version still gets the split under another version's record: nobody's rollout
            # drives it, and the status said "aborted, 100/0, left alone" over it (decision 143 d)
            say_split_unrecorded(log, unrecorded, rec, seen.weights)
            reason, rec = f"{reason}; {unrecorded}: stable 100%", None
        routed = seen if rec is not None else None  # the record as read with the route: its end says the route's split
        if rec is None:
            if seen.weights == STABLE_ONLY and seen.raw_weights is None:
                return "idle", None
            rec = rl.RolloutState(model=target.model, stable_version=seen.stable_subset_version,
                                  canary_version=target.canary_version, phase=rl.PROGRESSING, weights=seen.weights,
                                  route=target.route, owner=_owner(obj), started_at=now, updated_at=now)
        # guarded on the record this decision read (the informer's copy, perhaps behind): a route another
        # owner took over meanwhile is a RoutingConflict, and the next tick reads it again
        # the record's model is the ended rollout's (a spec edited to another model names the edit's; decision 800)
        ended_on = replace(target, stable_version=rec.stable_version, model=rec.model or target.model)
        log = log.bind(**rollout_context(ended_on, rec))
        meta = obj.get("metadata") or {}

        def told(ended: rl.RolloutState, actions: list[rl.Action]) -> None:  # posted as its write lands (736)
            self._post_key_once(_key(obj), lambda: crd.notification_of(
                str(meta.get("namespace", "")), str(meta.get("name", "")), ended_on, ended), ended, actions)
            landed.append(actions)

        landed: list[list[rl.Action]] = []  # the end's actions, once its stable-100% write landed
        try:
            new = self._to_stable(_key(obj), ended_on, rec, reason=reason, log=log, now=now,
                                  expect=seen.state or None, routed=routed, cause=cause, told=told)
        except RollbackFailed as exc:  # stable 100% and the end landed, the subset not pointed: on the route
            if counted is not None and landed and getattr(exc, "rollout_state", None) is not None:
                counted(exc.rollout_state, landed[-1])  # type: ignore[attr-defined]
            raise
        if counted is not None:
            counted(new, landed[-1] if landed else [])
        return "stable", new

    def _rescue(self, obj: dict[str, Any], spec: crd.RolloutSpec, drove: tuple[str, str, str, str], *, reason: str,
                log: Any, restart: bool = False, cause: str = "") -> str:
        """`_stable_if_ours` on the route this CR's status says it drove (`drove`, `_drove`), then the
        status describes that ended rollout, so the next tick starts what the spec says now (a new canary
        version, another VirtualService). Returns `_stable_if_ours`'s outcome. Raises what the router
        raises (the next tick tries again). `cause`: the end's class (decision 607)."""
        vs, route, version, dr = drove
        # the ended rollout's model (its status's), not the edit's: `_ran_model` (decision 800)
        model = _ran_model(obj, vs, spec.target.model)
        log = log.bind(canary_version=version, virtual_service=vs, model=model)
        target = replace(spec.target, virtual_service=vs, route=route, canary_version=version, destination_rule=dr,
                         model=model)

        def recorded(ended: rl.RolloutState, actions: list[rl.Action]) -> None:
            # its counters and the CanaryRollout's Event, as every end's (posted at its write), and its history with
            # the end's lines (observed after the write with none, a fresh process wrote nothing of it: 776)
            ended_spec = replace(spec, target=replace(target, stable_version=ended.stable_version,
                                                      model=ended.model or target.model))
            self._record(ended_spec, ended, actions)

        outcome, state = self._stable_if_ours(obj, target, reason=reason, log=log, cause=cause, counted=recorded)
        if outcome != "stable":  # what it remembers of that rollout is over whatever happened to it
            self._known.pop(spec.key, None)
        if outcome == "other":
            assert state is not None
            ended = _ended_before(state, _owner(obj), version, started=(obj.get("status") or {}).get("startedAt"))
            if ended is not None:  # the claim that replaced it kept how it ended (an on-call rollback's reason)
                self._ended_status(obj, phase=ended[0], reason=ended[1], cause=ended[2])
                return outcome
            self._ended_status(obj, phase=rl.ABORTED, reason=f"{reason}; {vs} runs another rollout now "
                               f"({state.canary_version}, {state.phase}): left alone", cause=cause)
            return outcome
        if outcome in ("idle", "gone"):
            why = "stable already serves 100%" if outcome == "idle" else f"VirtualService {vs} is gone"
            self._ended_status(obj, phase=rl.ABORTED, reason=f"{reason}; {why}", cause=cause)
            return outcome
        assert state is not None
        old_spec = replace(spec, target=replace(target, stable_version=state.stable_version,
                                                model=state.model or target.model))
        if outcome == "stable":  # (counted and in its history by `recorded`)
            self._known[spec.key] = _Known(old_spec, state)
            self._failing.pop(spec.key, None)
        elif (late := self._unconfirmed.get(spec.key)) is not None and rl.carried(state.to_json(),
                                                                                  late[0].to_json()):
            # this process's own end, whose write's answer was lost: confirmed as `_advance` confirms it, never told
            # as another writer's (an edit's supersede reaches it here before `_advance`'s `_confirm_end`; 876)
            self._unconfirmed.pop(spec.key, None)
            self._confirm_end(old_spec, state, late[0], late[1], log=log, landed=late[3])
        elif self._told_ends.get(spec.key) != _end_key(state):  # "ended" by another writer (a `canary rollback`
            self._told_outside(old_spec, state, log=log)  # over a record it could not read): told (decision 810)
        # stable now, or it had ended: the status catches up. `restart` (an edit of how the rollout is judged,
        # same canary version): the spec's rollout starts again, even after a restart of this process
        # (`_restart_pending`); not when someone else had ended it first
        # (or an earlier tick's supersede whose status write failed: the record says so)
        again = restart and (outcome == "stable" or state.reason.startswith("superseded:"))
        # or it ended as an edit superseded it to start again, and no status said so yet (that write failed; the
        # process that wrote it is gone): the restart is still the spec's. A failed tick of the restart's claim
        # (refused: the stable subset selects another version) read that end as the rollout's, status aborted
        # with no restart pending, and the spec fixed later never ran again
        again = again or (outcome == "ended" and _restart_pending(obj, state))
        self._status(obj, old_spec, state, extra={"restartPending": True} if again else None)
        return outcome

    def _ended_status(self, obj: dict[str, Any], *, phase: str, reason: str, spec: crd.RolloutSpec | None = None,
                      cause: str = "") -> None:
        """The status of this CR's rollout, which ended while the route moved on (another rollout took
        it, nothing is split, or stable 100% was written with no policy to read): `phase` and `reason`,
        none of its traffic (100/0), Progressing False and the conditions of that end; the looks it made
        and its step stay as they were; no restart is pending. Needs nothing but the object (no policy);
        `spec` given: status.target names what it asks for now (the end answers this spec). `cause`: the end's class
        (`status.endCause`, decision 609; "": the reason's words)."""
        old = obj.get("status") or {}
        generation = (obj.get("metadata") or {}).get("generation", 0)
        now = self.clock.now()
        ran = old.get("target") if isinstance(old.get("target"), dict) else {}
        ended = rl.RolloutState(model=str(ran.get("model") or (obj.get("spec") or {}).get("model") or ""),
                                stable_version="",
                                canary_version=str((old.get("target") or {}).get("canaryVersion") or ""),
                                phase=phase, weights=STABLE_ONLY, started_at=_parse_iso(old.get("startedAt")),
                                updated_at=now, reason=reason[:4096], end_cause=rl.end_cause(cause, reason))
        status = {
            "phase": phase, "reason": reason[:4096], "weights": {"stable": 100, "canary": 0},
            "endCause": ended.end_cause if phase in (rl.ROLLED_BACK, rl.ABORTED) else None,
            "updatedAt": crd.iso(now), "observedGeneration": generation, "leader": self.identity,
            "conditions": crd.conditions(ended, old.get("conditions") or [], generation, now)}
        if spec is not None:
            status["target"] = _status_target(spec, spec.target.canary_version)
        for gone in ("restartPending", EDIT_WAITING):
            if gone in old:
                status[gone] = None
        if self.telemetry:  # its series said its last unfinished phase and split for as long as it existed (561)
            self.telemetry.record_end(namespace=str(obj["metadata"].get("namespace") or ""),
                                      rollout=str(obj["metadata"].get("name") or ""), phase=phase)
        self._patch_status(obj, status)
        obj["status"].pop("restartPending", None)
        obj["status"].pop(EDIT_WAITING, None)

    def _snapshot_failed(self, error: str, now: float, due: list[crd.RolloutSpec]) -> None:
        """`metrics.snapshot_failed` once per cause, then every minute (`canary.throttle`; `repeated`: the failed ticks since):
        a line a tick (a warning, and an error per query) was a flood for as long as Prometheus was down.
        `metrics.snapshot_recovered` says when it answers again. `due`: the rollouts whose looks are blind this
        tick, named on the line (`rollouts`, `models`: at most SNAPSHOT_NAMES of each; `looks_due` counts them all)."""
        last = self._snap_failing
        self._snap_failing = _SnapshotOutage(now if last is None else last.first_at, 1 if last is None else last.ticks + 1)
        repeated = self._snap_said.due("", error)
        if repeated is not None:
            self.log.warning("metrics.snapshot_failed", error=error, looks_due=len(due), repeated=repeated,
                             rollouts=sorted(s.key for s in due)[:SNAPSHOT_NAMES],
                             models=sorted({s.target.model for s in due})[:SNAPSHOT_NAMES],
                             hint="every look due is 'could not measure' until Prometheus answers; a step that stays "
                                  "unmeasured past its deadline ends at stable 100% (or is held, per policy)")

    def _log_skew(self, offset: float | None) -> None:
        """`metrics.clock_skew` (warning) when Prometheus's clock and this controller's first differ by more
        than `SKEW_WARN_S`, `metrics.clock_skew_gone` (info) when they agree again: ahead of Prometheus by
        more than the snapshot's lookback, this controller would read no data at all."""
        if offset is None:
            return
        skewed = abs(offset) > SKEW_WARN_S
        if skewed and not self._skewed:
            self.log.warning("metrics.clock_skew", prometheus_minus_controller_s=round(offset, 3),
                             evaluated_at="prometheus" if offset > 0 else "controller",
                             hint="run NTP on the controller's node and Prometheus's")
        elif self._skewed and not skewed:
            self.log.info("metrics.clock_skew_gone", prometheus_minus_controller_s=round(offset, 3))
        self._skewed = skewed

    def _saved_step_start(self, obj: dict[str, Any], bind: tuple[Any, ...]) -> dict[str, Any] | None:
        """The persisted step-start snapshot (status.stepStart.snapshot) of this step, if there is one.
        The informer's cache leaves the snapshot out (`informer.without_step_start_snapshot`): then it
        is read from the API, once, when this process takes the rollout over in mid-step."""
        saved = (obj.get("status") or {}).get("stepStart") or {}
        if _saved_binding(saved) != bind:
            return None
        if saved.get("snapshot"):
            return saved["snapshot"]  # type: ignore[no-any-return]
        if not saved.get("snapshotOmitted"):
            return None
        meta = obj.get("metadata") or {}
        try:
            fresh = self.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, meta.get("namespace", ""),
                                                             crd.PLURAL, meta.get("name", ""), _request_timeout=10)
        except Exception as exc:  # only an optimisation for restarts: the next snapshot starts the step
            self.log.info("step_start.unreadable", rollout=_key(obj), error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        saved = ((fresh or {}).get("status") or {}).get("stepStart") or {}
        return saved["snapshot"] if _saved_binding(saved) == bind and saved.get("snapshot") else None

    def _step_start(self, spec: crd.RolloutSpec, state: rl.RolloutState, snap: Any) -> dict[str, Any]:
        """Make `snap` the step-start snapshot of `state`'s step; returns its persisted form (status.stepStart)."""
        from canary.metrics.snapshot import PackedSnapshot

        bind = self._binding(state)
        base = snap.restrict(spec.policy, spec.target, step_started_at=state.step_started_at)
        persisted = base.to_dict()
        self._step_starts[spec.key] = (bind, PackedSnapshot(base, persisted))  # kept packed between looks
        return {"canaryVersion": bind[0], "step": bind[1], "stepStartedAt": bind[2], "snapshot": persisted}

    def _held_step_start(self, spec: crd.RolloutSpec, state: rl.RolloutState) -> Any:
        """The step-start snapshot this process holds for `state`'s step (packed), or None: none, of
        another step, or one that reaches back into data already pooled (`rl.reaches_back`: this
        process led the step before another one restarted its window, and leads again)."""
        have = self._step_starts.get(spec.key)
        if have is None or have[0] != self._binding(state):
            return None
        return None if rl.reaches_back(state, have[1].taken_at) else have[1]

    def _looks(self, due: list[_Active], snap: Any = None) -> dict[str, str]:
        """Every due look, `workers` at a time; rollout key -> looked | skipped (no window yet) | failed |
        discarded (`_route_moved`)."""
        stop = threading.Event()  # NotLeader: no further look starts
        outcomes = self._map(lambda a: self._look(a, snap, stop), due)
        return {a.spec.key: outcome for a, outcome in zip(due, outcomes)}

    def _look(self, a: _Active, snap: Any, stop: threading.Event) -> str:
        spec, state, obj = a.spec, a.state, a.obj  # read again (`_fresh`) only when the look writes
        if stop.is_set():
            return "skipped"
        log = self._rollout_log(spec, state)
        try:
            measured = self._measure(spec, state, snap)
            if measured is None:
                return "skipped"  # no window yet (the step's start is this very snapshot): the next one looks
            measurements, canary_n, window_s, data_from, data_to, restarted, uncounted = measured
            moved = self._route_moved(a, log)
            if moved is not None:
                return moved
            lead: list[rl.Action] = []  # said with the look's own lines: held until its write lands (decision 191)
            if data_from is not None:  # a step-start snapshot taken after the window's earlier looks: a new window
                state = rl.window_for(state, data_from, self.clock.now())
                if state.step_window != a.state.step_window:
                    lead.append(rl.Emit("look.window_restarted", {
                        "step": state.step + 1, "window": state.step_window + 1,
                        "reason": "this step's earlier data were not measured again (no step-start snapshot "
                                  "after a restart); their failure evidence is kept, a pass needs "
                                  f"{spec.policy.analysis.interval:g} s of new data"}, warning=True))
            verdict = judge(spec.policy, measurements, prior=state.prior(), window=state.step_window,
                            pass_ratio=state.pass_ratio(canary_n), canary_weight=state.weights.canary,
                            step=max(state.step, 0), window_s=window_s, canary_version=state.canary_version)
            if verdict.outcome is Outcome.FAIL:
                self._breach_seen.setdefault((spec.key, state.canary_version), time.monotonic())
            seen = Observation(look=rl.Looked(self.clock.now(), verdict, canary_n, window_s, data_to=data_to,
                                              hold_unreachable=spec.on_prometheus_outage == "hold",
                                              restarted=restarted, uncounted=uncounted))
            seen = self._before_promotion(spec, state, seen, log=log)
            # a held promotion's look is inconclusive: counted so (status.summary.outcomes, telemetry), as recorded
            verdict = seen.look.verdict if seen.look is not None else verdict
            refused = False  # a look refused at its write is not judged: its verdict is not counted (decision 192)
            try:
                obj = self._fresh(obj)
                self._seed(obj)  # the write reads what the cache holds now (our own writes included)
                # lands only on the weights `_route_moved` confirmed: a revert after that read is not written over
                new, _ = self._decide(spec, state, seen, expect=a.recorded, log=log, confirmed=a.state.weights,
                                      lead=lead)
            except WeightsMoved as exc:
                refused = True
                return self._moved_at_write(a, log, exc)
            except RoutingConflict as exc:
                # another writer's record since `_route_moved` (a CanaryRollout changed says itself: `_still_asked`)
                refused = not isinstance(exc, ConflictStorm)
                if not isinstance(exc, (ConflictStorm, CanaryRolloutChanged)):
                    log.warning("look.discarded", reason="the route's record was changed outside this rollout "
                                "before the look's write could land: not judged", phase=state.phase,
                                weights="unknown", recorded_weights=str(a.state.weights),
                                step=state.step + 1)
                raise
            finally:  # counted as its look.completed is said: once it lands, or when it fails for another cause
                if self.telemetry and not refused:
                    self.telemetry.record_verdict(model=spec.target.model, results=verdict.results)
            self._known[spec.key] = _Known(spec, new)
            step_start = None
            if new.phase == rl.PROGRESSING and new.step != state.step and snap is not None:
                step_start = self._step_start(spec, new, snap)  # the next step starts where this look ended
            self._status(obj, spec, new, verdict=verdict, step_start=step_start)
            return "looked"
        except NotLeader:
            stop.set()
            return "skipped"
        except RoutingConflict as exc:  # the next tick adopts what the other writer recorded, or what was asked
            if isinstance(exc, ConflictStorm):  # nobody's decision: a failure of the tick (the failure budget)
                self._failed(self._fresh(obj), exc)
                return "failed"
            log.info("rollout.changed_outside", error=str(exc))  # why (`_still_asked`: rollback asked, deleted, ...)
            return "failed"
        except Exception as exc:
            self._failed(self._fresh(obj), exc)
            return "failed"
        finally:
            if self.informers is not None and hasattr(self.router, "forget_prefetch"):
                self.router.forget_prefetch()

    def _route_moved(self, a: _Active, log: Any) -> str | None:
        """After a look has measured, before it is judged: the route read again from the API server (never
        the informers' cache, which may not hold the change yet). The look counts only when the route still
        carries the weights and the record this tick left on it (`a.state.weights`, `a.recorded`: read at
        the tick's start, or written since by this rollout); otherwise its data may have been measured while
        the canary had another weight (a GitOps tool re-applying the route's manifest between the tick's read
        and the look, decision 170), and it is discarded (`look.discarded`, no evidence either way). Weights
        changed under our record: the foreign edit is handled now, as a tick would (`reconcile.decide`: the
        weights reasserted with the step's window started over, the revert counted; `on_foreign_edit: abort`
        ends it). The record changed: the next tick reads everything again and adopts or leaves what it finds.
        A route that cannot be read raises (the tick's failure path, as a read at the tick's start). Returns
        None when the look counts, else the look's outcome ("discarded", or "skipped": due again next tick)."""
        status = self._route_now(a.spec)
        if (status.state or None) == (a.recorded or None) and status.weights == a.state.weights:
            return None
        return self._discard(a, log, status, when="while the look measured")

    def _route_now(self, spec: crd.RolloutSpec) -> RouteStatus:
        """The route read from the API server (nothing prefetched or seeded answers it); with informers, the
        DestinationRule from their cache (a subset re-pointed is the next tick's to see): one GET, of the
        VirtualService. Raises as `inspect` does."""
        if hasattr(self.router, "forget_prefetch"):
            self.router.forget_prefetch()
        self._seed_names(spec.target.namespace, {"destinationrules": spec.target.dr_name})
        return self.router.inspect(spec.target)

    def _moved_at_write(self, a: _Active, log: Any, exc: WeightsMoved) -> str:
        """The look's write refused for weights other than those `_route_moved` confirmed (a revert landing after
        that read, before the write or between a 409 and its retry's re-read): nothing was written, and the look
        is discarded and the revert handled exactly as if `_route_moved` had read it (decision 185). The route is
        read again from the API server for it; a read that fails raises (the tick's failure path)."""
        return self._discard(a, log, self._route_now(a.spec),
                             when=f"before the look's write could land ({exc.found} found)")

    def _discard(self, a: _Active, log: Any, status: RouteStatus, *, when: str) -> str:
        """`look.discarded` for a look whose route, read in `status`, was changed outside the rollout `when`, and
        the change handled: the record changed is the next tick's ("skipped"); weights changed under our record
        go through `reconcile.decide` now (reassert and count, or abort) ("discarded")."""
        spec, state = a.spec, a.state
        record_changed = (status.state or None) != (a.recorded or None)
        log.warning("look.discarded", reason=(
            f"the route's record was changed outside this rollout {when}" if record_changed else
            f"the route's weights were changed outside the rollout {when}") +
            ": not judged at a weight the canary may not have had", phase=state.phase,
            weights=str(status.weights), recorded_weights=str(state.weights), step=state.step + 1)
        if record_changed:
            if self.informers is not None and status.resource_version.isdigit():  # the next tick reads this version
                self._route_ahead[(spec.target.namespace, spec.target.virtual_service)] = int(status.resource_version)
            return "skipped"  # the next tick: ours, another's, ended, unreadable (`_advance`)
        seen = Observation(status=status, on_foreign_edit=spec.on_foreign_edit,
                           virtual_service=f"{spec.target.namespace}/{spec.target.virtual_service}")
        obj = self._fresh(a.obj)  # no `_seed`: the write reads the route from the API server
        new, _ = self._decide(spec, state, seen, expect=a.recorded, log=log)
        self._known[spec.key] = _Known(spec, new)
        self._status(obj, spec, new)
        return "discarded"

    def _measure(self, spec: crd.RolloutSpec, state: rl.RolloutState,
                 snap: Any = None) -> tuple[dict[str, Any], float, float, float | None, float | None, bool, str] | None:
        """(measurements, canary requests, seconds of data covered, start and end of the data on the
        metrics clock: the step-start snapshot's and this one's times, None without snapshots, whether
        a request counter restarted between them, and why the canary's requests could not be counted: "" where
        they were) for one look; None when there is no window to judge yet. Per rollout only without batched
        snapshots at all (no `batch`)."""
        if self.batch is None:
            window = look_window(spec.policy, state, self.clock.now())
            out, canary_n, uncounted, covered = measure_window(self.metrics, spec.policy, spec.target,
                                                               window_s=window, log=self.log)
            if self.telemetry:
                for m in out.values():
                    self.telemetry.prometheus_query(not isinstance(m, TransientError))
            return out, canary_n, covered, None, None, False, uncounted
        if snap is None:  # the tick's snapshot failed: this look could not measure (no per-rollout retry)
            exc = getattr(self, "_snap_error", None) or MetricsUnavailable("no metrics snapshot this tick")
            return ({c.name: exc for c in spec.policy.checks}, 0.0,
                    float(look_window(spec.policy, state, self.clock.now())), None, None, False, "")
        packed = self._held_step_start(spec, state)
        if packed is None or snap.taken_at <= packed.taken_at:
            return None
        from canary.metrics.batch import UnusableStepStart

        try:
            base = packed.unpack()
        except UnusableStepStart:
            self._step_starts.pop(spec.key, None)
            return None
        out, n, restarted, uncounted = self._measure_batched(spec, snap, base)
        if any(isinstance(m, UnusableStepStart) for m in out.values()):
            self._step_starts.pop(spec.key, None)  # the next snapshot starts the step again
            return None
        return out, n, snap.taken_at - base.taken_at, base.taken_at, snap.taken_at, restarted, uncounted

    def _measure_batched(self, spec: crd.RolloutSpec, now: Any, base: Any) -> tuple[dict[str, Any], float, bool, str]:
        """Window = step-start snapshot -> now; per-rollout queries only for checks that cannot be batched
        (custom PromQL, per-feature drift) and for a feature_missing check whose model exports only the
        gauge, not the `model_features_total` counter (`NotBatchable` from the snapshot). Also whether a
        request counter restarted in the window (`requests_restarted`: the rollout opens a new window), and why the
        canary's requests could not be counted ("" where they were: `canary_count`)."""
        from canary.metrics.batch import NotBatchable, batchable, canary_count, measure_delta, requests_restarted

        out: dict[str, Any] = {}
        window = max(1, math.ceil(now.taken_at - base.taken_at))
        for check in spec.policy.checks:
            try:
                if batchable(spec.policy, check):
                    try:
                        out[check.name] = measure_delta(spec.policy, check, spec.target, now, base)
                        continue
                    except NotBatchable:
                        pass  # gauge only: measured per rollout below
                # at the snapshot's instant: the window the batched checks are judged over (decision 143)
                with one_instant(self.metrics, now.taken_at):
                    out[check.name] = self.metrics.measure(spec.policy, check, spec.target, window_s=window)
            except Exception as exc:
                out[check.name] = exc
        canary_n, uncounted = canary_count(spec.policy, spec.target, now, base)
        try:
            restarted = requests_restarted(spec.policy, spec.target, now, base)
        except Exception:  # no request counter to ask: the checks said why, and nothing restarted that they count
            restarted = False
        return out, canary_n, restarted, uncounted

    def _failed(self, obj: dict[str, Any], exc: BaseException) -> None:
        """A rollout's tick failed. Recorded on its status; and when its traffic is split, stable gets
        100% at once for a non-transient failure, or once transient ones have lasted FAILURE_BUDGET_S."""
        if kube.is_transient(exc):  # a raw client error from a call not wrapped: classified as the router's are
            exc = kube.translate(exc, f"CanaryRollout {_key(obj)}")
        self._fail_status(obj, exc)
        key = _key(obj)
        known = self._known.get(key)
        if isinstance(exc, NotLeader) or others_decision(exc):
            return
        if isinstance(exc, RecordTooNew):
            # the route's record is in a record schema above this canary's: a newer canary (a controller replica
            # or a promote a release ahead, mid rolling upgrade) runs it. Never ended, resumed or rewritten here
            # (its split was sent to stable as unreadable): said on the status (Ready False) and here (169)
            self.log.warning("rollout.record_newer", rollout=key, error=str(exc)[:600],
                             hint="upgrade this canary (controller and CLI) to the writer's release; "
                                  "`canary rollback` sends stable 100% now")
            return
        if known is not None and _uid(obj) and known.owner not in ("", _owner(obj)):
            # what this process remembers is of another object of this name (deleted and created again)
            self._known.pop(key, None)
            known = None
        drove = _drove(obj) if known is None else None
        if known is None and drove is None:
            drove = self._claimed_without_status(obj)  # a claim no status of which landed: its record says
        if known is None and (drove is None or (_drove(obj) is not None and _status_weights(obj) == STABLE_ONLY)):
            return  # no traffic of this CR's is split, by its status or the route's record
        # a claim (or a rollout held) at stable 100% waits out what failed, nothing to undo, unless its status write
        # was refused for good: a status write is a tick's last, so the next tick's would come after its step moved
        # traffic (80/20 for the claim); it ends here, at stable 100% (decision 560)
        held = known is not None and known.weights == STABLE_ONLY and not isinstance(exc, StatusRefused)
        if known is not None and (known.terminal or held):
            if known.terminal and not isinstance(exc, TransientError):  # (a transient one: `_advance` writes it)
                self._mirror_end(obj, known.spec, known.state())
            return
        first = self._failing.setdefault(key, self.clock.now())
        if isinstance(exc, (TransientError, ConflictStorm)) and self.clock.now() - first < FAILURE_BUDGET_S:
            return
        # a spec (or its policyRef ConfigMap) edited mid-rollout and refused: that edit's end (decisions 801, 821, 822)
        refused = _edited_refusal(obj, exc, marks=_claimed_marks(obj, known), read=self._configmap)
        reason = refused or f"failed: {said(exc)}"
        # the end's class (decision 607): its own VirtualService's 404 is a foreign edit (decision 666)
        cause = "operator" if refused else failure_cause(
            exc, known.spec.target if known is not None else _raw_target(obj, drove))
        if known is None:  # a new process, or the tick failed before the state was read: what the status says
            assert drove is not None
            try:
                split = _status_weights(obj)  # as the status last recorded it (the rescue rewrites it)
                raw = _raw_target(obj, drove)
                try:
                    spec = crd.parse(obj, configmap=self._configmap)
                except Exception:  # its policy cannot be read (a policyRef ConfigMap gone): stable needs none
                    # counted as every end (its spec unread: no `_record`; decision 736); its history cannot be
                    # written (no policy to summarise), said so (776)
                    outcome, rec = self._stable_if_ours(obj, raw, reason=reason[:500], cause=cause,
                                                        log=self.log.bind(rollout=key, virtual_service=drove[0]),
                                                        counted=lambda ended, did: self._swept_end(
                                                            obj, raw, ended, did, parse=False))
                    if outcome in ("stable", "idle", "gone"):
                        self._ended_status(obj, phase=rl.ABORTED, reason=reason + (
                            f"; VirtualService {drove[0]} is gone" if outcome == "gone" else ""),
                                           cause=cause)
                    elif outcome == "ended" and rec is not None and self._told_ends.get(key) == _end_key(rec):
                        # this process's own end, whose status write failed at the tick that wrote it: mirrored
                        # now, never left `progressing` over stable 100%. Another writer's is not: a status that
                        # shows an end is the mark "told", and the tick that reads the policy tells it (810)
                        self._ended_status(obj, phase=rec.phase, reason=rec.reason, cause=rl.cause_of(rec))
                else:
                    outcome = self._rescue(obj, spec, drove, reason=reason[:500], log=self._rollout_log(spec),
                                           cause=cause)
                if outcome == "gone":  # the end's class, as its status says it (683's rule; decision 713)
                    self._route_deleted(raw, split, error=str(exc),
                                        log=self.log.bind(rollout=key, **rollout_context(raw)), cause=cause)
            except NotLeader:  # refused by the fence, nothing sent: the leader's tick rescues it; nobody is paged
                return
            except RollbackFailed as landed:
                if getattr(landed, "rollout_state", None) is None or not isinstance(landed.__cause__, (
                        NotFound, RuleElsewhere)):
                    self._rescue_failed(key, obj, drove, landed, reason)
                # else: stable 100% and the end landed, the subset not pointed, its rule gone or re-hosted: paged by
                # the executor (`rollout.destination_rule_deleted` / `_elsewhere`), and the next tick confirms the
                # end, trying nothing again: "the next tick tries again" beside the page was false (decision 665)
            except Exception as rescue_exc:  # one rollout that cannot be rescued never stops the others
                self._rescue_failed(key, obj, drove, rescue_exc, reason)
            return
        spec, state = known.spec, known.state()
        if isinstance(exc, NotFound) and _vs_gone(exc, spec.target):  # read (or written) this tick: 404
            # nothing to write stable 100% to: ended here, said once; its status is mirrored by the next
            # failed tick should this write fail (`_mirror_end`). A rollback decided before the deletion met its
            # write (an operator's, a check's) keeps its reason and class, as promote's page does (683, 676)
            gone = f"; VirtualService {spec.target.virtual_service} is gone"
            decided = self._unconfirmed.get(key)
            if decided is not None and _decided_for(decided[0], state):
                ended, actions = _decided_again(decided[0], state, self.clock.now(), decided[1], gone=gone)
            else:
                ended, actions = rl.transition(state, rl.Rollback(self.clock.now(), reason[:500] + gone, aborted=True,
                                                                  cause=cause), None)  # type: ignore[arg-type]
            self._route_deleted(spec.target, state.weights, error=str(exc), log=self._rollout_log(spec, state),
                                cause=rl.cause_of(ended))
            for kept in (self._failing, self._stable_failing, self._unconfirmed):
                kept.pop(key, None)
            self._known[key] = _Known(spec, ended)
            end_line = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollout.aborted"]
            self._record(spec, ended, end_line)  # its history: its end's line, not an outside change (decision 778)
            self._mirror_end(obj, spec, ended)
            return
        now_read = self._taken_over(spec.target, state)
        read, rec = now_read.text, now_read.record
        if now_read.other:
            return  # the route runs another rollout now (an operator's rollback, another promote): not ours to undo
        if rec is not None and rec.terminal:
            # this very rollout has ended meanwhile (another replica promoted or rolled it back while this one
            # had lost the lease, an on-call rollback): what this process remembers is stale, and a stable-100%
            # write would overwrite that end (a promotion demoted). Nothing to undo.
            self._known[key] = _Known(spec, rec)
            self._stable_failing.pop(key, None)
            tried = self._unconfirmed.get(key)
            # our own end (whole, or cut to fit: decision 563), its answer lost: landed
            if tried is not None and rl.carried(rec.to_json(), tried[0].to_json()):
                self._unconfirmed.pop(key, None)
                self._confirm_end(spec, rec, tried[0], tried[1], log=self._rollout_log(spec, rec), landed=tried[3])
            else:
                self.log.info("rollout.ended_elsewhere", rollout=key, recorded_phase=rec.phase,
                              canary_version=rec.canary_version, error=reason[:300])
                if self._ended_outside(obj, key, rec):  # another writer's, its status not showing it: told
                    self._told_outside(spec, rec, log=self._rollout_log(spec, rec))  # before its mirror (877)
            self._mirror_end(obj, spec, rec)
            return
        if rec is not None:
            state = rec  # the recorded state is the truth (memory may be a lease term behind): stable 100% from it
        log = self._rollout_log(spec, state)
        now = self.clock.now()
        # a rollback decided for this rollout whose write failed (the tick's failure is that write's): written as
        # decided, its phase, reason and class, never as the failure's abort, which said of an operator's rollback
        # or a canary shown bad "failed: <API error>", `end_cause: infrastructure` (decision 676)
        decided = self._unconfirmed.get(key)
        end = _decided_again(decided[0], state, now, decided[1]) \
            if decided is not None and _decided_for(decided[0], state) else None
        try:
            new, landed = self._to_stable_posted(spec, state, reason=reason[:500], log=log, now=now, expect=read,
                                                 routed=now_read.route if rec is not None else None, cause=cause,
                                                 end=end)
        except CanaryError as unsent:  # rollback.retrying (or its page) is logged; the next tick tries again, or finds it landed
            self._unconfirmed[key] = (*(end or rl.transition(state, rl.Rollback(now, reason[:500], aborted=True,
                                                                                cause=cause),
                                                             None)), read, write_landed(unsent))  # type: ignore[arg-type]
            return
        # its counters, the CanaryRollout's Events and its history with its end's lines (not an outside change: 778),
        # as every other end's (posted at its write: not again; 725)
        self._record(spec, new, landed)
        self._known[key] = _Known(spec, new)
        self._failing.pop(key, None)
        self._unconfirmed.pop(key, None)
        try:
            self._status(obj, spec, new)
        except Exception:
            pass

    def _rescue_failed(self, key: str, obj: dict[str, Any], drove: Any, exc: BaseException, reason: str) -> None:
        """`rescue.failed` (error): a rollout whose ticks kept failing could not be sent to stable 100% by `_rescue`;
        on-call acts on this line alone: which route, and the command that sends it to stable now."""
        raw = _raw_target(obj, drove)
        self.log.bind(rollout=key, **rollout_context(raw)).error(
            "rescue.failed", error=f"{type(exc).__name__}: {exc}"[:300], failed=reason[:300],
            hint=f"the next tick tries again; `{rollback_command(raw)}` acts now")

    def _mirror_end(self, obj: dict[str, Any], spec: crd.RolloutSpec, rec: rl.RolloutState) -> None:
        """The status of a rollout that has ended on the route while its ticks fail before `_advance` reads
        that end (a DestinationRule deleted mid-rollout: every tick's `inspect` raises NotFound, so the end
        written to the route was never mirrored, and the CanaryRollout said `progressing 80/20` for ever).
        Best effort (the next failed tick tries again); never for an end an edit superseded to start again
        (`_restart_pending`: the restart reads that status)."""
        if (obj.get("status") or {}).get("phase") in rl.TERMINAL or _restart_pending(obj, rec):
            return
        try:
            self._status(obj, spec, rec)
        except Exception:
            pass

    def _route_deleted(self, target: Target, split: Any, *, error: str, log: Any, cause: str = ROUTE_DELETED) -> None:
        """`rollout.route_deleted` (critical): the VirtualService of a rollout in progress was deleted (not
        with its CanaryRollout: `_deleted`). There is nothing left to write stable 100% to, and the mesh
        now routes by the Service alone, so the canary's pods may get traffic: only a person can mend it.
        The caller ends the rollout (`aborted`, in its status), once. It paged `rollback.failed` with a
        `canary rollback` that fails the same way, after a `rollout.aborting` and a `rollback.retrying` at
        every tick, and its CanaryRollout said `progressing` for ever. `cause`: the end's class (decision 683)."""
        route_deleted(log, target, split, error=error, cause=cause)

    def _to_stable_posted(self, spec: crd.RolloutSpec, state: rl.RolloutState, **kw: Any
                          ) -> tuple[rl.RolloutState, list[rl.Action]]:
        """`_to_stable` of `spec`'s rollout on `spec.target`, its end posted as its write lands (`_post_once`, not
        again by `_record`: decisions 725, 736). Returns the end and its actions once its write landed ([] where
        none did), for the caller's `_record`."""
        landed: list[list[rl.Action]] = []

        def told(ended: rl.RolloutState, actions: list[rl.Action]) -> None:
            self._post_once(spec, ended, actions)
            landed.append(actions)

        new = self._to_stable(spec.key, spec.target, state, told=told, **kw)
        return new, landed[-1] if landed else []

    def _to_stable(self, key: str, target: Target, state: rl.RolloutState, *, reason: str, log: Any, now: float,
                   expect: str | None, routed: Any = None, cause: str = "",
                   end: tuple[rl.RolloutState, list[rl.Action]] | None = None,
                   told: Callable[[rl.RolloutState, list[rl.Action]], None] | None = None) -> rl.RolloutState:
        """`to_stable` for rollout `key` within a tick's budget (TO_STABLE_BUDGET_S), its failure said as `_retry`
        says (the next tick tries again); `cause`: the abort's class (decision 607); `end`: a rollback decided
        already, written as decided (`to_stable`'s); `told`: called as its write lands (`to_stable`'s). Raises
        what `to_stable` raises."""
        retry = self._retry(key, state, target)
        # the end it writes, as a failed write's start line is remembered (`_start_failed`): `_stable_if_ours` writes
        # the same abort at every tick (a CanaryRollout deleted mid-rollout whose write keeps failing), and its
        # `rollout.aborting` was said at each (decision 753, on 737). `end`'s start lines are never said again
        ending = (end[0].phase, end[0].reason) if end is not None else (rl.ABORTED, reason)
        try:
            new = to_stable(self.fenced, target, state, reason=reason, log=log, now=now, budget_s=TO_STABLE_BUDGET_S,
                            expect=expect, retry=retry, routed=routed, cause=cause, end=end, told=told,
                            start_said=self._start_said(key, state, ending))
        except CanaryError as exc:
            self._stable_tried(key, state, retry, None if getattr(exc, "rollout_state", None) else exc)
            self._start_failed(key, state, ending)
            raise
        self._stable_tried(key, state, retry, None)
        return new

    def _retry(self, key: str, state: rl.RolloutState, target: Target) -> Retry:
        """How a stable-100% write of rollout `key` is said should it fail (decision 123): the warning
        `rollback.retrying` while it has failed for less than ROLLBACK_PAGE_AFTER_S (the next tick writes it
        again, and traffic may still be split), then the critical `rollback.failed` once, naming the command
        that acts now. A tick's own budget (2 s) is too short for a page: a write that fails in it usually
        lands a few seconds later."""
        failing = self._stable_failing.get(key)
        if failing is not None and failing.canary_version != state.canary_version:
            failing = None
        since = 0.0 if failing is None else max(0.0, self.clock.now() - failing.since)
        page = failing is not None and not failing.paged and since >= ROLLBACK_PAGE_AFTER_S
        fields: dict[str, Any] = {"failed_attempts": (failing.failed if failing else 0) + 1,
                                  "failing_for_s": round(since, 1), "page_after_s": ROLLBACK_PAGE_AFTER_S}
        # paged already: the end's last line, once this write lands, says it ends that page, after how long and how
        # many failed writes (it read as any end's: on-call, acting by hand on the page, was never told it was over)
        resolves = {"resolves": "rollback.failed", "failed_for_s": round(since, 1),
                    "failed_attempts": failing.failed} if failing is not None and failing.paged else {}
        if page:
            fields["hint"] = (f"traffic may still be split: act by hand (`{rollback_command(target)}` sends stable "
                              "100% now, or fix what refuses the write); the controller keeps trying at every tick")
        else:
            fields["note"] = ("traffic may still be split; the controller writes stable 100% again at its next tick, "
                              f"and pages (rollback.failed) once it has failed for {ROLLBACK_PAGE_AFTER_S:g}s")
        return Retry(page=page, fields=fields, resolves=resolves)

    def _start_said(self, key: str, state: rl.RolloutState, ending: tuple[str, str]) -> bool:
        """Whether the start line (`rollback.started` / `rollout.aborting`) of the end `ending` (phase, reason) of
        rollout `key` was said at an earlier tick whose stable-100% write of it failed (decision 737)."""
        failing = self._stable_failing.get(key)
        return failing is not None and failing.canary_version == state.canary_version and failing.started == ending

    def _start_failed(self, key: str, state: rl.RolloutState, ending: tuple[str, str]) -> None:
        """The end `ending`'s write failed after its start line was said: the next tick's write of it says it not
        again (`_start_said`); forgotten with the failing write, as it lands."""
        failing = self._stable_failing.get(key)
        if failing is not None and failing.canary_version == state.canary_version:
            failing.started = ending

    def _stable_tried(self, key: str, state: rl.RolloutState, retry: Retry, exc: BaseException | None) -> None:
        """After a stable-100% write of rollout `key` said by `retry`: landed (`exc` None), forgotten; failed,
        counted (paged, when it was the page). Refused because another writer recorded something first
        (RoutingConflict: the next tick reads the route again) or because this replica may not write
        (NotLeader: the leader ends it) is neither: nothing failed that a person could mend."""
        if exc is None:
            self._stable_failing.pop(key, None)
            return
        if isinstance(exc, NotLeader) or others_decision(exc):
            return
        failing = self._stable_failing.get(key)
        if failing is None or failing.canary_version != state.canary_version:
            failing = self._stable_failing[key] = _StableFailing(state.canary_version, self.clock.now())
        failing.failed += 1
        failing.paged = failing.paged or retry.page

    def _claimed_without_status(self, obj: dict[str, Any]) -> tuple[str, str, str, str] | None:
        """What this CR drives by the route's record alone (`_drives`), when no status of it shows a
        rollout: the route its raw spec names records a rollout of this CR in progress (claimed, then
        every status write failed). None when it does not, or it cannot be read (the next tick tries)."""
        sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        vs = str(sp.get("virtualService") or sp.get("model") or "")
        if not vs:
            return None
        probe = (vs, str(sp.get("route") or ""), str(sp.get("canaryVersion") or ""), str(sp.get("destinationRule") or ""))
        try:
            rec = parse_state(read_for_stable(self.router, _raw_target(obj, probe)))
        except Exception:  # unreadable: the status path, or the next tick
            return None
        if rec is None or rec.terminal or rec.owner != _owner(obj):
            return None
        return vs, rec.route, rec.canary_version, _recorded_dr(rec, vs)

    # ---- recording ------------------------------------------------------------------

    def _history_store(self) -> Any:
        """The history ConfigMaps' store, its writes fenced like every other write of the controller."""
        from canary.history_store import ConfigMapStore

        def may_write() -> bool:
            return self.is_leader() and (self.lease_left is None or self.lease_left() > 0.05)
        return ConfigMapStore(self.core, may_write=may_write)

    def _history(self, spec: crd.RolloutSpec) -> Any:
        from canary.history_store import Recorder

        rec = self._histories.get(spec.key)
        if rec is None or rec.vs != spec.target.virtual_service:
            rec = self._histories[spec.key] = Recorder(
                self._history_store(), namespace=spec.target.namespace,
                virtual_service=spec.target.virtual_service, policy=spec.policy, source="controller", name=spec.key,
                flush_every=history_flush_every(spec.policy), log=self.log)  # its warnings name the rollout
        return rec

    def _observe(self, spec: crd.RolloutSpec, state: rl.RolloutState, actions: list[rl.Action] | None = None) -> None:
        """The rollout's history (`canary.history_store`): never fails the tick. An end whose flush failed keeps
        its recorder, flushed again by the settled CanaryRollout's ticks (`_flush_ended_history`): dropped here,
        the end, the last looks and the verdict behind it were lost, and `canary report` showed a rolled-back
        rollout as still in progress at its last step."""
        self.side.submit(spec.key, "history", lambda: self._observe_now(spec, state, actions), end=state.terminal)
        if state.terminal and self.side.threads and not self.side.wait(spec.key, self.end_write_wait_s):
            self.log.warning("history.end_pending", rollout=spec.key, phase=state.phase, wait_s=self.end_write_wait_s,
                             note="the end's history record is queued, not written yet: the rollout's status is "
                                  "written now; a crash before the record's write leaves it out of the history")

    def _observe_now(self, spec: crd.RolloutSpec, state: rl.RolloutState, actions: list[rl.Action] | None) -> None:
        """`_observe`'s write, made by the side writer (in order per rollout)."""
        rec = self._history(spec)
        rec.observe(state, actions or ())
        if state.terminal and not self._ended_history_kept(spec.key, rec):
            self._histories.pop(spec.key, None)

    def _ended_history_kept(self, key: str, rec: Any) -> bool:
        """Whether a finished rollout's recorder `rec` is kept for another flush: records are left, its last
        failure may pass (not a ConfigError: RBAC, bad input) and fewer than ENDED_HISTORY_TRIES flushes failed
        in a row. When records are left and it is not kept, `history.end_unwritten` says what is lost."""
        if not rec.unwritten:
            return False
        if not isinstance(rec.last_failure, ConfigError) and rec.failed_flushes < ENDED_HISTORY_TRIES:
            return True
        self._history_given_up(key, rec)
        return False

    def _history_given_up(self, key: str, rec: Any) -> None:
        """`history.end_unwritten`: the records `rec` holds for rollout `key` (its end, its last looks) are dropped
        unwritten."""
        self.log.warning("history.end_unwritten", rollout=key, tries=rec.failed_flushes, pending=rec.pending,
                         error=f"{type(rec.last_failure).__name__}: {rec.last_failure}"[:500],
                         note="the rollout's end and its last looks are not in its history ConfigMap: "
                              "`canary report` shows the rollout as of the last write that landed")

    def _flush_ended_history(self, key: str) -> CanaryError | None:
        """A finished rollout's history records its end's flush left (`_observe`), written again: None once none
        is left or they are given up (the recorder dropped), else a TransientError the queue retries with its
        backoff (the recorder kept; `history.write_failed` said why)."""
        if self.side.threads:  # made by the side writer; until its jobs for `key` are done, asked again
            if self.side.pending(key):
                return TransientError(f"CanaryRollout {key}: its history's last records are being written")
            if key not in self._histories:
                return None
            self.side.submit(key, "history", lambda: self._flush_ended_now(key))
            return TransientError(f"CanaryRollout {key}: its history's last records are being written")
        return None if self._flush_ended_now(key) else \
            TransientError(f"CanaryRollout {key}: its history's last records are not written yet")

    def close_side_writes(self, timeout_s: float) -> bool:
        """At a clean stop, once the loop has ended and before the Lease is handed over: every history's records
        not written yet (the looks short of a flush, an end whose flush failed) queued for a last flush, then the
        side writer closed within `timeout_s` (`SideWriter.close`: what it could not write is said,
        `side_write.unwritten`). True when everything was written or nothing was left."""
        for key, rec in list(self._histories.items()):
            if rec.pending or rec.unwritten:
                self.side.submit(key, "history", rec.flush)
        return self.side.close(timeout_s)

    def _flush_ended_now(self, key: str) -> bool:
        """`_flush_ended_history`'s write: whether the recorder is done with (written, or given up: dropped)."""
        rec = self._histories.get(key)
        if rec is None:
            return True
        rec.flush()
        if self._ended_history_kept(key, rec):
            return False
        self._histories.pop(key, None)
        return True

    def _record(self, spec: crd.RolloutSpec, state: rl.RolloutState, actions: list[rl.Action]) -> None:
        """An executed step told outside the route, once it landed: the webhooks and Slack first (queued, never
        waited on), then the counters, then the CanaryRollout's Kubernetes Events (a request each, up to 3 s);
        then the history's write, with `actions` (`_observe`, a GET and a PUT up to 3 times, 5 s each). Queued last, the
        post of a rollback waited on an Events API or a ConfigMap API that hung, and a counter that raised (a
        registry problem) lost it and the Events (decision 720). An end `_do` posted at its write (decision 723) is
        not posted again, here or at `_confirm_end` after a failure that followed that write. Never raises."""
        events = {a.event for a in actions if isinstance(a, rl.Emit)}
        t = self.telemetry
        ended = "rollback.completed" in events or "rollout.aborted" in events
        promoted = "rollout.promoted" in events
        if self._ends_posted.pop(spec.key, None) != _end_key(state):
            self._post_end(spec.key, lambda: crd.notification(spec, state), state, actions)
        seen = self._breach_seen.pop((spec.key, state.canary_version), None) if ended or promoted else None
        if ended or promoted or state.phase == rl.PAUSED:  # a held rollout's resume says its held promotion again
            self._held_said.discard((spec.key, state.canary_version))
        if t:
            self._count(spec, "canary_rollout_weight", lambda: t.record_state(
                namespace=spec.namespace, rollout=spec.name, state=state, checks=[c.name for c in spec.policy.checks]))
            if ended:
                self._count(spec, "canary_rollbacks_total", lambda: t.record_rollback(
                    model=spec.target.model, reason=state.reason, cause=rl.cause_of(state),
                    seconds=time.monotonic() - seen if seen else None))
            if promoted:
                self._count(spec, "canary_promotions_total", lambda: t.record_promotion(model=spec.target.model))
        for a in actions:
            if isinstance(a, rl.Emit) and a.event in K8S_EVENTS:
                self._cr_event(spec, a.event, f"{a.event}: weights {state.weights} {a.fields.get('reason', '')}".strip(),
                               warning=a.warning)
        self._observe(spec, state, actions)

    def _post_once(self, spec: crd.RolloutSpec, state: rl.RolloutState, actions: list[rl.Action]) -> None:
        """The end `state` posted (`_post_end`) unless it was already, and noted so that `_record` does not post
        it again: as its stable-100% write lands (`_do`, `_failed`'s `_to_stable`), or first thing when a write whose
        answer was lost is found landed (`_confirm_end`; decisions 723, 725)."""
        self._post_key_once(spec.key, lambda: crd.notification(spec, state), state, actions)

    def _post_key_once(self, key: str, payload: Callable[[], dict[str, Any]], state: rl.RolloutState,
                       actions: list[rl.Action]) -> None:
        """`_post_once` for CanaryRollout `key`, its post made by `payload()`: where no spec is parsed
        (`_stable_if_ours`: a policy that does not read never keeps an end from the channel; decision 736)."""
        if self._ends_posted.get(key) != _end_key(state):
            self._post_end(key, payload, state, actions)
            self._ends_posted[key] = _end_key(state)

    def _post_end(self, key: str, payload: Callable[[], dict[str, Any]], state: rl.RolloutState,
                  actions: list[rl.Action]) -> None:
        """The webhooks and Slack told of the end `actions` say (`rollback.completed`, `rollout.aborted`,
        `rollout.promoted`), if any, as `notify.end_events` maps it (`canary promote`'s too): queued, never waited
        on. Never raises."""
        n = self.notifier
        if not {"rollback.completed", "rollout.aborted", "rollout.promoted"} & {
                a.event for a in actions if isinstance(a, rl.Emit)}:
            return
        self._told_ends[key] = _end_key(state)  # whether or not a receiver is configured: told (`_ended_outside`)
        if n is None:
            return
        try:  # the payload made here: one that cannot be made costs neither the counters nor the Events
            body = payload()
            for event in end_events(state):
                n.notify(event, body)
        except Exception as exc:  # noqa: BLE001
            self.log.error("notify.internal_error", rollout=key, notify_event=state.phase, error=type(exc).__name__)

    def _count(self, spec: crd.RolloutSpec, metric: str, record: Callable[[], Any]) -> None:
        """One of `_record`'s counters or gauges: a registry that raises is said (`telemetry.record_failed`), and
        what follows it (the Events, the history) is still written."""
        try:
            record()
        except Exception as exc:  # noqa: BLE001 - /metrics is an observation of the rollout, never a part of it
            self.log.error("telemetry.record_failed", rollout=spec.key, metric=metric,
                           error=f"{type(exc).__name__}: {exc}"[:300])

    def _cr_event(self, spec: crd.RolloutSpec, event: str, message: str, *, warning: bool) -> None:
        """Best effort: a Kubernetes Event on the CanaryRollout itself (kubectl describe shows it)."""
        body = kube.event_body(namespace=spec.namespace, reason=camel(event), message=message, warning=warning,
                               involved={"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                         "name": spec.name, "uid": spec.uid},
                               component="canary-controller", generate_name=f"{spec.name}.")

        def write() -> None:  # by the side writer (decision 890); the lease asked when it is made
            if not self.is_leader():
                return
            try:
                self.core.create_namespaced_event(spec.namespace, body, _request_timeout=3)
            except Exception:
                pass
        self.side.submit(spec.key, "event", write)

    def _status(self, obj: dict[str, Any], spec: crd.RolloutSpec, state: rl.RolloutState,
                verdict: Verdict | None = None, *, step_start: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> None:
        """The CR status: small and bounded (phase, weights, the last verdict, a summary of the looks);
        every look with its per-arm values is in the history ConfigMap (`canary report`). The rollout's series
        on /metrics follow it: `_record` sets them only for a step executed, so after a controller restart or a
        change of leader a paused rollout (no look, no step) had none until it was resumed, and a progressing
        one none until its next look."""
        if self.telemetry and state.model == spec.target.model:
            self.telemetry.record_state(namespace=spec.namespace, rollout=spec.name, state=state,
                                        checks=[c.name for c in spec.policy.checks])
        old = obj.get("status") or {}
        new = {
            "phase": state.phase, "step": state.step + 1,
            "weights": {"stable": state.weights.stable, "canary": state.weights.canary},
            # the CRD bounds status.reason (maxLength 4096): a longer one (an on-call `canary rollback --reason`
            # with an alert pasted in, a verdict of many checks) made the API server refuse the whole status
            # write at every tick; the record and the Event keep it whole
            "reason": state.reason[:4096], "startedAt": crd.iso(state.started_at), "updatedAt": crd.iso(state.updated_at),
            "lastVerdict": state.last_verdict,
            "summary": crd.summary(old.get("summary"), state, verdict=verdict.outcome.label if verdict else None,
                                   history=configmap_name(spec.target.virtual_service, state.model)),
            "observedGeneration": spec.generation, "leader": self.identity, "writer": rl.WRITER,
            "target": _status_target(spec, state.canary_version, state.judged),
            "conditions": crd.conditions(state, old.get("conditions") or [], spec.generation, self.clock.now()),
        }
        if step_start is not None:
            new["stepStart"] = step_start
        if state.phase in (rl.ROLLED_BACK, rl.ABORTED):  # the end's class as recorded with it (decision 609)
            new["endCause"] = rl.cause_of(state)
        elif "endCause" in old:  # an earlier end's, of a rollout this CR started again
            new["endCause"] = None
        if "verdictHistory" in old:  # written by older versions: removed (a merge patch deletes with null)
            new["verdictHistory"] = None
        for waited in ("waitedOn", "waitedOnPhase", "restartPending"):  # it runs (or ended with) a rollout now:
            if waited in old:  # what it once waited on, or a restart asked for, is history
                new[waited] = None
        if old.get(EDIT_WAITING) is not None and state.phase != rl.PAUSED:  # resumed or ended: nothing waits now
            new[EDIT_WAITING] = None
        if spec.action == "resume":  # this request's resume is used up (`_resume_seen`): its generation and reason
            new[RESUME_SEEN] = spec.generation
            new[RESUME_REASON] = spec.action_reason or ""
        elif old.get(RESUME_REASON) is not None:  # the action cleared or changed: a resume asked later is new
            new[RESUME_REASON] = None
        new.update(extra or {})
        # `writer` names the release of a write made for something else, never the only reason for one: with a
        # CRD older than the field the API server prunes it, and a paused rollout's status was written again at
        # every tick (decision 182)
        # `resumeObservedGeneration` and `resumeObservedReason` likewise: they change only with observedGeneration
        # (a new generation is written anyway), and a CRD older than them prunes them
        if all(old.get(k) == v for k, v in new.items() if k not in ("conditions", "writer", RESUME_SEEN,
                                                                     RESUME_REASON)):
            return
        self._patch_status(obj, new)
        for gone in ("verdictHistory", "waitedOn", "waitedOnPhase", "restartPending", RESUME_REASON, EDIT_WAITING):
            if new.get(gone, "") is None:
                obj["status"].pop(gone, None)

    def _once(self, event: str, spec: crd.RolloutSpec) -> bool:
        """Whether `event` is to be said of this CanaryRollout's generation: the first time in this process. Its uid
        too: one deleted and created again under its name starts its generations over (538's addendum)."""
        said = (event, spec.key, spec.uid, spec.generation)
        if said in self._once_said:
            return False
        if len(self._once_said) > 10_000:
            self._once_said.clear()
        self._once_said.add(said)
        return True

    def _edit_waits(self, obj: dict[str, Any], spec: crd.RolloutSpec, state: rl.RolloutState | None, judged: str,
                    log: Any, *, then: str) -> bool:
        """Whether an edit of how this CR's rollout is judged (`judged`: steps, analysis, checks, stableVersion)
        waits for the pause in force to end, said once per generation (`rollout.edit_waits`). A person paused it
        (`canary pause`, a deadline's hold, a Prometheus outage held): the supersede's restart claimed the route
        again and gave the canary its first step's traffic at once, undoing the hold (decision 527), where the same
        spec's `action: pause` holds the restart at 100/0. It waits while the rollout is paused and nothing in the
        spec asks it to move: `action: pause` (its restart is held: superseded now), `rollback` and a `resume` not
        used up (asked now: the restart is what it resumes to) supersede as before. Resumed (`canary resume`), the
        next tick supersedes it before any look. A record without marks (an older release's) is compared through the
        status (`_judged_edit_status`), which this tick's status write would bring up to the edit: superseded now.
        `then`: what the resume makes of it, in words; the status says both (`status.editWaiting`, read by `canary
        status` and `canary resume`: decision 538)."""
        if state is None or state.phase != rl.PAUSED or spec.action in ("pause", "rollback") or not state.judged:
            return False
        if spec.action == "resume" and not _resume_seen(obj, spec, self._requests):
            return False
        if self._once("rollout.edit_waits", spec):
            log.info("rollout.edit_waits", edit=judged, phase=state.phase, weights=str(state.weights),
                     generation=spec.generation, reason=state.reason, then=then,
                     hint=f"the rollout is paused: the edit supersedes it ({then}) once it is resumed (`canary "
                          "resume`, or spec.action resume with a new actionReason)")
        self._say_edit_waiting(obj, {"edit": judged[:1024], "then": then[:1024], "generation": spec.generation})
        return True

    def _route_edit_waits(self, obj: dict[str, Any], spec: crd.RolloutSpec, drove: tuple[str, str, str, str],
                          asked_stable: str, log: Any) -> bool:
        """Whether an edit of what this CR's rollout drives (`drove`, as its status or record says: spec.virtualService,
        spec.route, spec.destinationRule, spec.canaryVersion) waits for the resume, as an edit of how it is judged
        does (`_edit_waits`): the supersede sent stable 100% and the spec's rollout claimed its new route or version
        at once, undoing a person's pause (decision 537). Read from the route it drives: it waits while that route
        records this CR's rollout of that version paused, and not for an edit of which series are judged (spec.model,
        policy.metrics: ended now, as before), nor when that route cannot be read (deleted, its DestinationRule gone:
        stable 100% as before, `_rescue`)."""
        vs, route, version, dr = drove
        target = replace(spec.target, virtual_service=vs, route=route, canary_version=version, destination_rule=dr)
        try:
            rec = parse_state(self.router.inspect(target))
        except Exception:  # noqa: BLE001 - not readable as it was: superseded now, as before (`_rescue` says why)
            return False
        if rec is None or rec.terminal or rec.owner != _owner(obj) or rec.canary_version != version:
            return False
        series, how = _judged_edit(obj, spec, rec)
        if series:
            return False
        moved = _drives(spec)[0] != vs or _drives(spec)[2] != version  # another VirtualService or version: claimed
        then = (f"stable 100% on {vs}, then the spec's rollout of {spec.target.canary_version} on "
                f"{spec.target.virtual_service} starts from its first step" if moved else
                "stable 100%, and the rollout ends there (an edit of its route or DestinationRule ends it: to run it "
                "on the new one, set a new canaryVersion or create the CanaryRollout again)")
        edit = ", ".join(x for x in (_edit(drove, _drives(spec)), how, _stable_edit(rec, asked_stable)) if x)
        if not self._edit_waits(obj, spec, rec, edit, log, then=then):
            return False
        # the status shows the paused rollout as its route has it, and what it drives (the sweep leaves it: `_drove`)
        self._status(obj, replace(spec, target=replace(target, stable_version=rec.stable_version)), rec)
        return True

    def _say_edit_waiting(self, obj: dict[str, Any], waiting: dict[str, Any] | None) -> None:
        """`status.editWaiting` set to `waiting` (None: removed) when it differs: an edit of this CR waits for its
        paused rollout's resume (what, what the resume makes of it, of which generation). One write when it
        changes, none a tick: once per edit and generation in this process (a CRD older than the field prunes it,
        and it was written again at every tick, as decision 182 found for `writer`)."""
        said = ("status.editWaiting", _owner(obj), waiting and (waiting["edit"], waiting["generation"]))  # uid too
        if (obj.get("status") or {}).get(EDIT_WAITING) == waiting or (waiting and said in self._once_said):
            return
        self._patch_status(obj, {EDIT_WAITING: waiting})
        if waiting is None:
            obj["status"].pop(EDIT_WAITING, None)
        else:
            self._once_said.add(said)

    def _say_resume_used(self, spec: crd.RolloutSpec, state: rl.RolloutState, obj: dict[str, Any], log: Any) -> None:
        """`rollout.resume_used`, once per CanaryRollout and generation in this process: the spec says `resume`, the
        rollout is paused, and that request was used up on an earlier pause (decision 521). The spec and the
        record disagree on their face; the line says why nothing moves, and how to resume."""
        if not self._once("rollout.resume_used", spec):
            return
        log.info("rollout.resume_used", phase=state.phase, weights=str(state.weights), generation=spec.generation,
                 resume_observed_generation=(obj.get("status") or {}).get(RESUME_SEEN),
                 hint="this spec's `action: resume` was used up on an earlier pause; edit spec.actionReason, or "
                      "run `canary resume`, to resume this one")

    def _told(self, key: str, msg: str, *, peek: bool = False) -> int | None:
        """Whether `rollout.invalid` / `rollout.tick_failed` of `key` with `msg` is to be logged now: the first
        time, a new message, or a minute after the last line (`canary.throttle`; returns how many of that
        message were left out since); None when it was said already. A refusal retried at every tick or
        backoff (a blind preflight, a policy that does not parse) logged its five lines each time while its
        Ready condition said it."""
        return self._said.due(key, msg, peek=peek)

    def _fail_status(self, obj: dict[str, Any], exc: BaseException) -> None:
        meta = obj.get("metadata") or {}
        msg = said(exc)
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        repeated = self._told(key, msg)
        if repeated is not None:
            # a request the API server refused (RBAC, a stricter CRD) is no invalid spec (decision 536)
            refusal = {"request": exc.request, "http_status": exc.status} if isinstance(exc, ApiRefused) else {}
            self.log.warning("rollout.api_refused" if refusal else "rollout.invalid" if isinstance(exc, ConfigError)
                             else "rollout.tick_failed", rollout=key, error=msg, repeated=repeated, **refusal,
                             **_failed_names(obj), next=failed_tick_next(exc, budget_s=FAILURE_BUDGET_S))
        if self.telemetry and isinstance(exc, (KubeUnavailable, RoutingConflict)):
            self.telemetry.kube_error("unavailable" if isinstance(exc, KubeUnavailable) else "conflict")
        # a ConfigError of a kind no reader knows by name (a query Prometheus rejects: `Rejected`; a URL that is no
        # Prometheus: `NotPrometheus`) is said as ConfigError: bad input, which the follower (`promote
        # --via-controller`) exits 2 on (`crd.REFUSED_REASONS`); as `Rejected` it waited to `--timeout`, exit 3
        reason = type(exc).__name__
        if isinstance(exc, ConfigError) and reason not in crd.REFUSED_REASONS:
            reason = "ConfigError"
        try:
            self._not_ready(obj, reason, msg)
        except Exception:
            pass

    def _ready_again(self, obj: dict[str, Any]) -> None:
        """A finished CanaryRollout whose Ready is False, of its current generation, for a refusal this re-check
        reproduces is checked again at each tick it is handled (decisions 155, 158): a spec `crd.parse` refused
        (its message names the CanaryRollout as `crd.parse` does: a `policyRef` ConfigMap broken mid-rollout),
        or its route's objects (`_of_route`: its VirtualService or DestinationRule missing, the route it names
        renamed away; the message names that object, as the router's read does). The re-check is the tick's
        first two steps: parse the spec, read its route (`inspect`). Once both read (the ConfigMap mended, the
        object restored, no edit of the CR), Ready goes True, one status write, and `rollout.ready_again` says
        so; a different refusal replaces the message (`_not_ready`: a write only when it changed). Nothing is
        run, judged or routed forward again: the end stays in Progressing/RolledBack. A route restored as it
        was mid-rollout (its record this CR's rollout in progress) goes to stable 100% first
        (`_end_restored`). A read that fails for any other reason (the API server down) changes nothing.
        Costs a ConfigMap read (with a policyRef) and a route read a tick while it stays False."""
        st, meta = obj.get("status") or {}, obj.get("metadata") or {}
        conds = [c for c in st.get("conditions") or [] if isinstance(c, dict)]
        ready = next((c for c in conds if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") != "False" or ready.get("observedGeneration") != meta.get("generation"):
            return
        was, why = str(ready.get("message", "")), ready.get("reason")
        parsed = f"CanaryRollout {meta.get('namespace')}/{meta.get('name')}"  # how `crd.parse` names it; a refusal
        # of the run's (a gate's, a query's) does not, and parsing the spec again would not re-check it
        if not ((why in ("ConfigError", "PolicyError") and was.startswith(parsed))
                or (why in ("TargetError", "NotFound", "RouteNotFound") and _of_route(obj, was))):
            return
        try:
            spec = crd.parse(obj, configmap=self._configmap)
            status = self.router.inspect(spec.target)
            rec = parse_state(status)
        except ConfigError as exc:  # (TargetError, NotFound and RouteNotFound are ConfigErrors)
            self._not_ready(obj, type(exc).__name__, str(exc))
            return
        except Exception:  # noqa: BLE001 - transient (the ConfigMap's or the route's read): the next tick asks again
            return
        if rec is not None and not rec.terminal and rec.owner == _owner(obj) and not self._end_restored(
                obj, spec, rec, status.state, status):
            return
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        what = "the spec reads" if why in ("ConfigError", "PolicyError") else "its route reads"
        message = (f"{what} again (it was refused: {was}); the rollout stays "
                   f"{st.get('phase')}: edit the spec to run a rollout again")
        cond = {"type": "Ready", "status": "True", "reason": "Reconciled", "message": message[:1000],
                "lastTransitionTime": crd.iso(self.clock.now()), "observedGeneration": meta.get("generation", 0)}
        self._patch_status(obj, {"conditions": [c for c in conds if c.get("type") != "Ready"] + [cond]})
        self.log.info("rollout.ready_again", rollout=key, phase=st.get("phase"), was=was, was_reason=why)

    def _end_restored(self, obj: dict[str, Any], spec: crd.RolloutSpec, rec: rl.RolloutState,
                      recorded: str | None, status: Any = None) -> bool:
        """The route of a finished CanaryRollout reads again with this CR's rollout recorded in progress on it:
        the VirtualService was restored as it was mid-rollout (a backup, a `kubectl apply` of a copy taken
        then) after its deletion ended the rollout. Nothing drives it (the CR is finished; the sweep leaves a
        rollout its existing CR still asks for), so its traffic stays split unjudged: stable 100% now, guarded
        on the record read, as the end the CR's status says. Never a second rollout. Returns whether it
        landed (else the next tick tries again; Ready stays False)."""
        target = replace(spec.target, stable_version=rec.stable_version)
        log = self._rollout_log(replace(spec, target=target), rec)
        phase = (obj.get("status") or {}).get("phase")
        log.warning("rollout.restored_split", **routed_fields(rec, status), recorded_phase=rec.phase, ended=phase,
                    note="the route was restored as it was mid-rollout after this CanaryRollout ended: stable 100%")
        ended_spec = replace(spec, target=target)
        try:
            new, landed = self._to_stable_posted(
                ended_spec, rec, reason=(f"the route was restored mid-rollout ({rec.weights}) after this "
                                         f"CanaryRollout ended {phase}: stable 100%"),
                log=log, now=self.clock.now(), expect=recorded, routed=status, cause="foreign_edit")
        except CanaryError:  # said (`rollback.retrying`, its page); the next tick reads the route again
            return False
        self._record(ended_spec, new, landed)  # counters, Event, history (776); posted at its write (736)
        return True

    def _end_restored_unread(self, obj: dict[str, Any], target: Target, rec: rl.RolloutState,
                             exc: ConfigError) -> CanaryError | None:
        """`_end_restored` where the finished CanaryRollout's spec no longer reads (its `policyRef` ConfigMap deleted
        after the end: a namespace tidied, a Helm release uninstalled): that refusal was swallowed at every tick,
        Ready True, and the split restored mid-rollout stayed, judged by nobody (decision 792). Stable 100% on the
        route its raw spec names, as `_failed` ends a rollout whose policy cannot be read (`_stable_if_ours`: no
        policy, guarded on the record read; counted, its history said unwritten). Returns the write's failure."""
        log = self.log.bind(rollout=_key(obj), **rollout_context(target, rec))
        phase = (obj.get("status") or {}).get("phase")
        log.warning("rollout.restored_split", recorded_phase=rec.phase, ended=phase, from_weights=str(rec.weights),
                    error=str(exc)[:600], note="the route was restored as it was mid-rollout after this CanaryRollout "
                    "ended, and its spec no longer reads (the error): stable 100%, which needs no policy")
        try:
            self._stable_if_ours(obj, target, reason=(f"the route was restored mid-rollout ({rec.weights}) after this "
                                                      f"CanaryRollout ended {phase}: stable 100%"),
                                 cause="foreign_edit", log=log,
                                 counted=lambda ended, did: self._swept_end(obj, target, ended, did, parse=False))
        except CanaryError as failed:  # said by the router (`rollback.retrying`); the queue tries again
            return failed
        return None

    def _split_after_end(self, obj: dict[str, Any]) -> CanaryError | None:
        """The route a finished CanaryRollout names reads split while no process drives it (decision 164): its
        VirtualService re-created or edited from an old copy (80/20 from a backup) with no rollout record, or
        with this CR's ended one. Nothing judged the canary's share and Ready read True. Argo Rollouts
        re-asserts the desired weights at every reconcile of a Rollout it owns, Flagger its VirtualService:
        stable 100% on that route (never another VirtualService; the mirrors to the canary and another route's split
        with it end as a rollback's, decisions 612, 633), guarded on the record as read
        (a rollout that claims the route meanwhile wins), the record left as it is; one `rollout.end_reasserted`
        line; nothing claimed, judged or run again. This CR's own rollout recorded in progress (a copy taken
        mid-rollout) is ended as `_end_restored` ends it, unless Ready is False (`_ready_again` does that); where
        its spec no longer reads, Ready True or False, by `_end_restored_unread`, which needs no policy (792).
        Another owner's record, an unreadable one, or a route that cannot be read: left alone (the sweep, the
        Ready condition). Costs one read of the route a tick (the prefetch's, or the informers' cache). Returns
        the write's failure (None when nothing failed): the caller hands it to the queue, which tries again."""
        sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        vs = str(sp.get("virtualService") or sp.get("model") or "")
        if not vs:
            return None
        target = _raw_target(obj, (vs, str(sp.get("route") or ""), str(sp.get("canaryVersion") or ""),
                                   str(sp.get("destinationRule") or "")))
        try:
            status = read_for_stable(self.router, target)
            rec = parse_state(status)
        except Exception:  # noqa: BLE001 - missing, renamed, unreadable (Ready says so) or transient: not now
            return None
        same = bool(status.canary_subset_version) and status.canary_subset_version == status.stable_subset_version
        if (status.weights == STABLE_ONLY and status.raw_weights is None) or same:
            return None  # (a weight beside one version on both subsets splits nothing, as `canary.unowned` reads it)
        st = obj.get("status") or {}
        if rec is not None and not rec.terminal:
            ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
            if rec.owner == _owner(obj):
                try:
                    spec = crd.parse(obj, configmap=self._configmap)
                except ConfigError as exc:  # its spec no longer reads, Ready True or False (`_ready_again` ends
                    return self._end_restored_unread(obj, target, rec, exc)  # only what reads): no policy (792)
                except CanaryError:  # its policy ConfigMap's read failed (transient): the next tick asks again
                    return None
                if ready.get("status") != "False":
                    try:
                        self._end_restored(obj, spec, rec, status.state, status)
                    except CanaryError:  # said (`rollback.retrying`); the next tick reads the route again
                        pass
            return None  # another owner's rollout in progress: theirs (or the sweep's)
        if rec is not None and rec.owner != _owner(obj):
            return None  # another owner's end: the sweep's (`check_end`)
        log = self.log.bind(rollout=_key(obj), **rollout_context(target, rec))
        found = {"from_weights": str(status.weights), "recorded_phase": rec.phase if rec is not None else "none",
                 "ended": st.get("phase")}
        try:
            # (state None: the record left as it is; the router drops mirrors and other routes' splits to the
            # canary too, decisions 612, 633)
            after = self.fenced.set_weights(target, STABLE_ONLY, state=None,  # type: ignore[arg-type]
                                            expect_state=status.state)
        except CanaryError as exc:
            log.error("rollout.end_reasserted", **found, written=False, error=str(exc)[:300],
                      note="traffic stays split, judged by nobody: the next tick tries again")
            return exc
        log.warning("rollout.end_reasserted", **found, written=True, routes=list(after.also_ended),
                    note="the route of this finished CanaryRollout read split with no rollout driving it (re-created "
                         "or edited from an old copy?): stable 100% written; edit the spec to run a rollout")
        return None

    def _not_ready(self, obj: dict[str, Any], reason: str, message: str) -> bool:
        """The CR's Ready condition False with `reason` and `message` (for its current generation);
        nothing written when it already says that message. Returns whether it wrote."""
        cond = {"type": "Ready", "status": "False", "reason": reason, "message": message[:1000],
                "lastTransitionTime": crd.iso(self.clock.now()),
                "observedGeneration": (obj.get("metadata") or {}).get("generation", 0)}
        old = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("message") == cond["message"] for c in old):
            return False
        self._patch_status(obj, {"conditions": [c for c in old if c.get("type") != "Ready"] + [cond]})
        return True

    def _patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        """Merge-patch `status` into the CanaryRollout's status. A write that names this pod as `leader` names
        this release as `writer` too: the patch keeps what it does not name, and an end written by `_end_unrun`
        or `_ended_status` left a newer release's `writer` beside this pod's `leader` (decision 182)."""
        if "leader" in status:
            status = {**status, "writer": rl.WRITER}
        left = self.lease_left() if self.lease_left is not None else 10.0
        if not self.is_leader() or left <= 0.05:
            raise NotLeader("not the leader: status write refused")
        meta = obj["metadata"]
        try:
            written = kube.unvalidated(self.custom.patch_namespaced_custom_object_status)(
                crd.GROUP, crd.VERSION, meta["namespace"], crd.PLURAL, meta["name"], {"status": status},
                _request_timeout=min(10.0, left))
            # a 200 that is not the object: a failed write (transient), never the object. Taken as written, `{}`
            # entered the cache as a CanaryRollout "/", and an end's status a proxy never forwarded was never
            # written again: nothing woke the finished rollout (decision 406). A merge patch: its retry is harmless
            written = kube.an_object(written, f"the status write of CanaryRollout {meta['namespace']}/{meta['name']}")
        except Exception as exc:  # a 5xx or a timeout is transient (the failure budget), not a reason to abort
            what = f"CanaryRollout {meta['namespace']}/{meta['name']} status"
            request = f"the status write of CanaryRollout {meta['namespace']}/{meta['name']}"
            # a 422 (a CRD stricter than this release): refused, not a spec invalid (`rollout.api_refused`, 536)
            refusal = kube.refused(exc, what, request=request, kind=StatusRefused)
            if refusal is not None and (denied_by := kube.admission_denial(exc)):  # the cluster's policy (583)
                refusal = StatusRefused(ADMISSION_WORDS.format(what=what, status=refusal.status, by=denied_by,
                                                               said=kube._status_message(exc)[:300]),
                                        request=request, status=refusal.status)
            elif refusal is not None and refusal.status == 400:  # the body we composed: canary's bug (536's addendum)
                refusal = StatusRefused(BAD_REQUEST_WORDS.format(what=what, said=kube._status_message(exc)[:200]),
                                        request=request, status=400)
            raise refusal or kube.translate(exc, what) from exc
        obj["status"] = {**(obj.get("status") or {}), **status}
        rv = (written.get("metadata") or {}).get("resourceVersion")
        if rv and isinstance(obj.get("metadata"), dict):
            obj["metadata"]["resourceVersion"] = rv  # our own write: a guarded write after it starts from it
        if self.informers is not None:
            self.informers.rollouts.put(written)  # the cache holds our own write at once

    # ---- reading --------------------------------------------------------------------

    def _list(self) -> list[dict[str, Any]]:
        if self.namespace:
            res = self.custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL)
        else:
            res = self.custom.list_cluster_custom_object(crd.GROUP, crd.VERSION, crd.PLURAL)
        # a 200 whose body is not a list (empty, a proxy's page): the tick's failure, never "no CanaryRollouts"
        return list(kube.list_items(res, "CanaryRollouts"))

    def _configmap(self, namespace: str, name: str) -> dict[str, str]:
        try:
            cm = self.core.read_namespaced_config_map(name, namespace)
            if not getattr(getattr(cm, "metadata", None), "uid", None):  # `{}`, a proxy's page: no ConfigMap read,
                # never one with no data, whose key missing read as the policy edited mid-rollout (decision 855)
                raise kube.BadAnswer(f"the read of ConfigMap {namespace}/{name} was answered with a body that is not "
                                     "the object (no metadata.uid); a proxy or a cut answer?")
        except Exception as exc:
            if kube.is_transient(exc):  # a 5xx or a timeout: retried within the failure budget
                raise kube.translate(exc, f"ConfigMap {namespace}/{name}") from exc
            # a 401 is renewed and sent again by the client itself (`kube_credentials.renew_on_401`) as every request
            # is; one that reaches here was refused again, and a 403 is RBAC's: said as such, naming the ConfigMap
            # (they were "cannot be read: 403 Forbidden", logged as an invalid spec: decision 536)
            refusal = kube.refused(exc, f"ConfigMap {namespace}/{name}", request=f"the read of ConfigMap {namespace}/{name}")
            if refusal is not None and refusal.status in (401, 403):
                raise refusal from None
            # the Status message (e.g. 'configmaps "x" not found'), not the client's text with the HTTP
            # headers and body, which went into the Ready condition whole
            detail = f"{getattr(exc, 'status', '')} {kube._status_message(exc)}".strip() \
                if kube._is_api_exception(exc) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"ConfigMap {namespace}/{name} cannot be read: {detail}") from None
        return dict(cm.data or {})


def run_in_background(fn: Callable[[], Any], *, name: str) -> "Future[Any]":
    """`fn()` on a daemon thread of its own; its Future. A daemon, unlike a pool's worker: a gate still
    warming up a canary never holds the process at exit (SIGTERM ends a controller within its grace)."""
    out: Future[Any] = Future()

    def work() -> None:
        if not out.set_running_or_notify_cancel():
            return
        try:
            out.set_result(fn())
        except BaseException as exc:  # handed to whoever reads the Future
            out.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    return out


def history_flush_every(policy: Any) -> int:
    """Looks a rollout's history holds before a flush: twice a step's looks, 10 to 20. The flush at
    each step change (always made) then writes a step's looks in one part, and a count never adds a
    second write to a step that runs a little long (a step of the default policy's 10 looks ends on
    its 11th to 14th look when its pass needs more data; with a count of 10 or 12 the
    2,500-rollout bench made 2 ConfigMap writes per step). A long or extended step flushes every
    20 looks: at most ~13 kB pending per rollout, 32 MB at 2,500 rollouts."""
    return min(20, max(10, 2 * looks_per_step(policy)))


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _status_target(spec: crd.RolloutSpec, canary_version: str, judged: dict[str, str] | None = None) -> dict[str, Any]:
    """`status.target`: what the rollout a status describes drives (`_drove` reads it back) and what it
    judges: the model whose metrics are read, a mark of each policy section as written (for records
    without marks, `_judged_edit_status`), and the record's own marks (`judged`: kept here too, so
    that a record rewritten by an older controller, which drops them, is still compared by them)."""
    out = {"virtualService": spec.target.virtual_service, "route": spec.target.route or "",
           "canaryVersion": canary_version, "destinationRule": spec.target.dr_name,
           "model": spec.target.model, "policy": _policy_marks(spec.policy)}
    if judged:
        out["judged"] = dict(judged)
    return out


# an end of a CanaryRollout's rollout that another writer than the controller wrote, told when a tick finds it
# (decision 810): its line, and the words its post and history entry say of who ended it
ENDED_OUTSIDE = "rollout.ended_outside"
OUTSIDE_WRITER = "another writer than the controller (a `canary rollback`, a hand edit of the route's record, or another process)"

def _outside_hint(state: rl.RolloutState) -> str:
    """What on-call does after an end another writer wrote (`rollout.ended_outside`; decision 852): nothing for the
    traffic, which serves as the end records; and how that version runs again."""
    if state.phase == rl.PROMOTED:
        return (f"nothing: {state.canary_version} is the stable version now; `canary status` shows it (if the "
                "promotion was not wanted, roll forward with a new canaryVersion)")
    return (f"nothing for the traffic: stable {state.stable_version} serves {state.weights} as the end records "
            f"(`canary status`); to run {state.canary_version} again, set a new canaryVersion or create the "
            "CanaryRollout again")


# how a supersede's reason ends: the spec's rollout starts again (an edit of how it is judged), or it
# ends there (an edit of which series are judged)
RESTARTS = "; it starts again from the first step"
ENDS = ("; the series judged changed: to run it again, set a new canaryVersion or create the "
        "CanaryRollout again")

# the policy sections a rollout's evidence is gathered and judged under: an edit of one mid-rollout
# supersedes it (`_judged_edit`). `failure` and `gates` (when to give up, the readiness probe) apply
# from the next tick; `route` is part of what the rollout drives (`_drives`).
JUDGED_POLICY = ("steps", "analysis", "metrics", "checks")


def _policy_marks(policy: Any) -> dict[str, str]:
    """A short digest of each `JUDGED_POLICY` section of `policy`, as written (defaults left out, so
    that a field a newer controller adds, at its default, changes no mark)."""
    import hashlib
    import json

    dumped = policy.model_dump(mode="json", exclude_defaults=True)
    return {name: hashlib.sha256(json.dumps(dumped.get(name), sort_keys=True).encode()).hexdigest()[:16]
            for name in JUDGED_POLICY}


def _judged_edit(obj: dict[str, Any], spec: crd.RolloutSpec, state: rl.RolloutState | None) -> tuple[str, str]:
    """What of the model judged and the policy judged under changed since the rollout began, in the
    spec's field names: (which series: spec.model or policy.metrics, how they are judged), each ""
    when nothing did (`judged_marks.describe`).

    `state`: this CR's rollout as the route records it (in progress, or ended by a supersede whose
    restart is pending), or None. Its `judged` marks, written with the claim, are what it is judged
    under (`canary.judged_marks`: rendered selectors, checks as a set, defaults left out). A record
    written before marks existed is compared through this CR's status instead (`_judged_edit_status`)."""
    marks = state.judged if state is not None else {}
    t = (obj.get("status") or {}).get("target")
    t = t if isinstance(t, dict) else {}
    if not marks:  # a record rewritten by an older controller (it drops them): the status kept them
        kept = t.get("judged")
        version = state.canary_version if state is not None else spec.target.canary_version
        if (isinstance(kept, dict) and t.get("canaryVersion") == version
                and all(isinstance(k, str) and isinstance(v, str) for k, v in kept.items())):
            marks = kept
    if not marks:
        return _judged_edit_status(obj, spec, state)
    series, how = judged_marks.edited(marks, judged_marks.marks(spec.policy, spec.target))
    was = state.model if state is not None else str(t.get("model") or "")
    return judged_marks.describe(series, how, was_model=was, model=spec.target.model)


def _stable_edit(state: rl.RolloutState, asked: str) -> str:
    """What an edit of spec.stableVersion (`asked`, as written) changed of the rollout in progress `state`,
    in the spec's field name; "" when it names the version the rollout compares against, or none (the
    stable subset's). The canary's evidence is against `state.stable_version` alone: another stable version
    is another comparison (decision 518), one the claim would check (`check_claim`) before any traffic."""
    if not asked or asked == state.stable_version:
        return ""
    return f"spec.stableVersion changed from {state.stable_version} to {asked}"


# status.editWaiting: an edit of this CR that waits for its paused rollout's resume (`Controller._edit_waits`):
# {"edit": what changed, "then": what the resume makes of it, "generation": the spec's}; `canary status` and
# `canary resume` say it (decision 538)
EDIT_WAITING = "editWaiting"
# what the resume makes of an edit of how a paused rollout is judged (decision 527)
RESUMED_RESTARTS = "stable 100%, then the rollout starts again from its first step"


# status.resumeObservedGeneration: the generation of the spec whose `action: resume` has been acted on (or seen
# with nothing paused); the same request resumes no pause made after it (`Controller._operator_action`)
RESUME_SEEN = "resumeObservedGeneration"
# status.resumeObservedReason: the `actionReason` of that request ("" for none), None once the action was seen
# cleared or changed: an edit of another field (a new generation) is not the request asked again
RESUME_REASON = "resumeObservedReason"


def _resume_seen(obj: dict[str, Any], spec: crd.RolloutSpec, requests: resume_requests.Seen) -> bool:
    """Whether this CR's `spec.action: resume` was seen by a status write already: at its generation now, or at
    an earlier one with the same `actionReason` and the action not seen cleared or changed since (an edit of
    another field of the spec, `onPrometheusOutage`, a `stableVersion` spelled out, makes a new generation, not a
    new request), by a tick (the status) or by the informers (`requests`: a version between two ticks, decision
    526). A pause in force now was then made after the request (decisions 520, 521)."""
    status = obj.get("status") or {}
    seen = status.get(RESUME_SEEN)
    if not isinstance(seen, int) or isinstance(seen, bool) or spec.generation <= 0:
        return False
    if seen >= spec.generation:
        return True
    return status.get(RESUME_REASON) == (spec.action_reason or "") and not resume_requests.set_again(
        requests, spec.key, resume_requests.request(obj.get("spec")),
        used_at=seen, generation=spec.generation)


def _judged_edit_status(obj: dict[str, Any], spec: crd.RolloutSpec, state: rl.RolloutState | None) -> tuple[str, str]:
    """`_judged_edit` for a rollout whose record has no marks (claimed before they existed): from what
    this CR's status records (`status.target`: the model, a digest of each policy section as written);
    the model is compared with the route's record too (`state`), for a status written before
    status.target named it; a policy section a status did not record matches any."""
    t = (obj.get("status") or {}).get("target")
    t = t if isinstance(t, dict) else {}
    changes = []
    old_model = str(t.get("model") or (state.model if state is not None and not state.terminal else ""))
    if old_model and old_model != spec.target.model:
        changes.append(f"spec.model changed from {old_model} to {spec.target.model}")
    old = t.get("policy") if isinstance(t.get("policy"), dict) else {}
    new = _policy_marks(spec.policy)
    edited = [name for name in JUDGED_POLICY if old.get(name) and old[name] != new[name]]
    if edited:
        changes.append("the policy's " + ", ".join(edited) + " changed")
    which = changes[0] if changes and (changes[0].startswith("spec.model") or "metrics" in edited) else ""
    return which, ", ".join(c for c in changes if c != which)


def _owner(obj: dict[str, Any]) -> str:
    """The RolloutState.owner of the rollouts this CanaryRollout runs: its namespace, name and uid (a
    CR deleted and created again under the same name is another request, and runs)."""
    meta = obj.get("metadata") or {}
    return crd_owner(str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid") or ""))


def _ci_job(obj: dict[str, Any]) -> str:
    """The CI job a CanaryRollout names (`canary.ci_job.ANNOTATION`, written by `promote --via-controller` in a CI
    job), recorded as its rollout's `job` so that the holder is named by it as a promote's is (decision 389);
    "" when none, or one that is no job's shape (the object is anyone's to edit)."""
    from canary import ci_job

    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return ci_job.readable(annotations.get(ci_job.ANNOTATION) if isinstance(annotations, dict) else None)


def _of_this_model(rec: rl.RolloutState, spec: crd.RolloutSpec) -> bool:
    """Whether the recorded rollout `rec` runs what `spec` asks for: its canary version, of its model (a
    record without a model: any). On a VirtualService routing several models, another model's rollout of
    the same version (a monorepo's commit) is no twin: this CanaryRollout waits for it to end and then
    runs, where it ended "not run" with it, its own model never rolled out."""
    return rec.canary_version == spec.target.canary_version and (not rec.model or rec.model == spec.target.model)


def _waited(obj: dict[str, Any], rec: rl.RolloutState | None, spec: crd.RolloutSpec) -> bool:
    """Whether this CR was refused as RolloutBusy while another owner ran its canary version
    (`status.waitedOn`, written by `_mark_waiting`) and that rollout has ended: the route's record
    `rec` is it, ended, or is no longer it at all (a claim needs the one before it ended). It asked
    for the rollout that ran (`_duplicate_ended`). No clocks compared, and no condition a later
    failed tick overwrites."""
    waited = (obj.get("status") or {}).get("waitedOn")
    if not isinstance(waited, dict) or waited.get("canaryVersion") != spec.target.canary_version:
        return False
    if rec is not None and rec.owner == _owner(obj):
        return False
    return rec is None or rec.terminal or not _same_rollout(rec, waited)


def _same_rollout(rec: rl.RolloutState, waited: dict[str, Any]) -> bool:
    """Whether `rec` is the rollout `waited` (`_waited_on`) names: its version and start. Not its owner,
    which changes on the same rollout: recorded at the next write of a record written before owners
    were, or a promote that took it over (a CI job's promote killed and re-run)."""
    mine = _waited_on(rec)
    return all(mine[k] == waited.get(k) for k in ("canaryVersion", "startedAt"))


def _waited_on(rec: rl.RolloutState) -> dict[str, Any]:
    """`status.waitedOn`: which rollout a CanaryRollout refused as RolloutBusy waited on."""
    return {"owner": rec.owner, "canaryVersion": rec.canary_version, "startedAt": rec.started_at}


def _owns(obj: dict[str, Any], rec: rl.RolloutState) -> bool:
    """Whether the route's recorded rollout `rec` is this CanaryRollout's to drive: recorded as its own,
    or recorded with no owner (by an earlier version) and started when this CR's status says its
    rollout started. Another CR naming the same VirtualService and version, or a `canary promote` of
    it, is not (the claim then raises RolloutBusy naming who runs it)."""
    if rec.owner:
        return rec.owner == _owner(obj)
    return crd.iso(rec.started_at) == (obj.get("status") or {}).get("startedAt")


def _saved_binding(saved: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (saved.get("canaryVersion"), saved.get("step"), saved.get("stepStartedAt"))


def _finished(obj: dict[str, Any]) -> bool:
    """Its status describes an ended rollout of what the spec asks for now (not of an earlier
    canary version or VirtualService, nor one superseded by an edit of how it is judged
    (`status.restartPending`): an edited spec starts again)."""
    st = obj.get("status") or {}
    return st.get("phase") in rl.TERMINAL and not st.get("restartPending") and _status_matches_spec(obj)


def _of_route(obj: dict[str, Any], message: str) -> bool:
    """Whether a Ready refusal's `message` is of this CR's route objects as the router's read names them
    (`ns/name (virtualservices): ...`, `ns/name: spec.http has no route named ...`): its raw spec's
    VirtualService or DestinationRule. A TargetError of the record (a hand edit, decision 148) or of a claim
    names neither, and reading the route again would not re-check it."""
    sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    ns = str((obj.get("metadata") or {}).get("namespace") or "")
    vs = str(sp.get("virtualService") or sp.get("model") or "")
    names = {vs, str(sp.get("destinationRule") or vs)} - {""}
    return any(message.startswith((f"{ns}/{n}:", f"{ns}/{n} (")) for n in names)


def _raw_target(obj: dict[str, Any], drove: tuple[str, str, str, str]) -> Target:
    """The Target a status's `drove` names, from the object alone (no policy: `_stable_if_ours` needs none)."""
    vs, route, version, dr = drove
    sp = obj.get("spec") or {}
    return Target(namespace=(obj.get("metadata") or {}).get("namespace", ""), virtual_service=vs,
                  model=_ran_model(obj, vs, str(sp.get("model") or vs)), stable_version="", canary_version=version,
                  destination_rule=dr, route=route)


def _ran_model(obj: dict[str, Any], vs: str, asked: str) -> str:
    """The model of the rollout this CR's status says ran on VirtualService `vs` (`status.target.model`), else
    `asked` (the spec's): a spec edited mid-rollout to another model names the model of the rollout it ends, not
    the edit's (the end's lines, post, Event and history said model=m1 beside m0's VirtualService; decision 800)."""
    t = (obj.get("status") or {}).get("target")
    ran = t.get("model") if isinstance(t, dict) and t.get("virtualService") == vs else None
    return ran if isinstance(ran, str) and ran else asked


def _edited(obj: dict[str, Any]) -> bool:
    """Whether the spec was edited since the status was last written for it (`metadata.generation` above
    `status.observedGeneration`)."""
    seen = (obj.get("status") or {}).get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    return isinstance(seen, int) and isinstance(generation, int) and generation > seen


def _spec_edits(obj: dict[str, Any]) -> tuple[str, str]:
    """What the spec asks for now against what the rollout its status names drives (`status.target`), in the spec's
    field names: (the edit of what it drives, `_edit`; the edit of spec.model), each "" when none."""
    ran, asked, model = _ran_and_asked(obj)
    return (_edit(ran[:4], asked) if ran[0] else "",
            f"spec.model changed from {ran[4]} to {model or '(none)'}" if ran[4] and ran[4] != model else "")


def _ran_and_asked(obj: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(what the rollout its status names drives: VirtualService, route, canary version, DestinationRule, model;
    what the spec asks now: the first four; spec.model), for `_spec_edits` and `_edit_changed_what_failed`."""
    st = obj.get("status") or {}
    sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    t = st.get("target") if isinstance(st.get("target"), dict) else {}
    ran = tuple(str(t.get(k) or "") for k in ("virtualService", "route", "canaryVersion", "destinationRule", "model"))
    model = str(sp.get("model") or "")
    vs = str(sp.get("virtualService") or model)
    # the route as the spec names it, else its inline policy's; a policyRef's is not read here: taken as the one run
    inline = sp.get("policy") if isinstance(sp.get("policy"), dict) else {}
    route = str(sp.get("route") or inline.get("route") or ("" if "policy" in sp else ran[1]))
    return ran, (vs, route, str(sp.get("canaryVersion") or ""), str(sp.get("destinationRule") or vs)), model


def _edit_changed_what_failed(obj: dict[str, Any], exc: TargetError) -> bool:
    """Whether a TargetError (the route's objects, read as the spec names them now) is about an object the edit
    changed: a VirtualService's 404 where it named another VirtualService, a DestinationRule's where another rule,
    anything else of the route's objects where it named another VirtualService, route or rule. An edit of the
    canary version alone reads the same objects: a rule deleted or a route renamed by a person the same tick is
    theirs, not the edit's (decision 856)."""
    ran, asked, _ = _ran_and_asked(obj)
    if not ran[0]:
        return False
    vs, route = ran[0] != asked[0], ran[1] != asked[1]
    dr = ran[3] != asked[3] if ran[3] else vs  # a rule not recorded: the VirtualService's name, its default
    what = exc.what if isinstance(exc, NotFound) else ""
    if what.endswith("(virtualservices)"):
        return vs
    if what.endswith("(destinationrules)"):
        return dr
    return vs or route or dr


def _failed_names(obj: dict[str, Any]) -> dict[str, str]:
    """Which rollout a failed tick's line names (`rollout.invalid`, `rollout.tick_failed`, `rollout.api_refused`):
    `model`, `namespace`, `virtual_service`, `canary_version` of the rollout the status shows in progress (the
    split a failure sends to stable 100%), else as the spec names them. A spec edited since to another one adds
    what it asks: `asked_model` where its model is another, and `edit` (`_spec_edits`); the lines named the
    edited spec's model, m1, beside nothing of m0 whose traffic was split (decision 820)."""
    sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    named = {"model": sp.get("model"), "namespace": (obj.get("metadata") or {}).get("namespace"),
             "virtual_service": sp.get("virtualService") or sp.get("model"), "canary_version": sp.get("canaryVersion")}
    drove = _drove(obj)
    if drove is not None:
        asked = named["model"]
        named.update(model=_ran_model(obj, drove[0], str(asked or "")), virtual_service=drove[0],
                     canary_version=drove[2])
        if _edited(obj):
            named.update(asked_model=asked if asked != named["model"] else None,
                         edit=", ".join(e for e in _spec_edits(obj) if e))
    return {k: v for k, v in named.items() if isinstance(v, str) and v}


def _of_spec(obj: dict[str, Any], message: str) -> bool:
    """Whether a refusal's `message` is `crd.parse`'s of this CR's own spec: it names the CanaryRollout as parse
    does (`CanaryRollout ns/name: ...`, `... spec.policy: ...`); a refusal of the run's (a query, the route's
    objects, the route's record) does not."""
    meta = obj.get("metadata") or {}
    return message.startswith((f"CanaryRollout {meta.get('namespace')}/{meta.get('name')}:",
                               f"CanaryRollout {meta.get('namespace')}/{meta.get('name')} "))


def _edited_refusal(obj: dict[str, Any], exc: BaseException, *, marks: dict[str, str],
                    read: Callable[[str, str], dict[str, str]]) -> str | None:
    """The reason of an end that an edit refused makes (`_failed`); None for any other failure (its class is then
    `failure_cause`'s, the one it has without the edit). A ConfigError (not the API server's refusal, `ApiRefused`)
    is the edit's only where it is about what the edit changed (decision 821, amending 801's "any ConfigError of
    an edited generation"), never for a failure the same tick met elsewhere:

    * of the policyRef ConfigMap (`ConfigError.field`): `_policy_ref_refusal`, against what the claim recorded;
    * of the route's objects (a TargetError: the VirtualService, its route, the DestinationRule as the spec names
      them now, `inspect`'s read): the edit's where it changed what the rollout drives, else the rollout's own
      objects gone or re-shaped (`failure_cause`: a foreign edit, the route deleted);
    * of the spec's own text (`crd.parse`, `_of_spec`): the edit's, the spec of the rollout's generation read;
    * anything else (the route's record hand-edited, a query): not the edit's.

    Its words name the edit of what the rollout drives (`_spec_edits`), then the refusal. `marks`: what the
    rollout was claimed under (`RolloutState.judged`); `read`: the ConfigMap read (`Controller._configmap`)."""
    if not isinstance(exc, ConfigError) or isinstance(exc, ApiRefused):
        return None
    if exc.field.startswith("spec.policyRef") and judged_marks.SOURCE in marks:
        return _policy_ref_refusal(obj, exc, marks, read)
    if not _edited(obj):
        return None
    drives, model = _spec_edits(obj)
    # (a refusal of the policyRef ConfigMap for a claim older than its marks names the CR as parse does: 801's rule)
    if not (_edit_changed_what_failed(obj, exc) if isinstance(exc, TargetError) else _of_spec(obj, str(exc))):
        return None
    what = ", ".join(e for e in (drives, model) if e)
    return f"{rl.REFUSED_EDIT}{f' ({what})' if what else ''}: {said(exc)}"


def _claimed_marks(obj: dict[str, Any], known: "_Known | None") -> dict[str, str]:
    """What the rollout in progress was claimed under (`RolloutState.judged`): this process's record of it, else its
    status's copy (`status.target.judged`); {} where neither has it (claimed by a controller before the marks)."""
    if known is not None and known.state().judged:
        return known.state().judged
    t = (obj.get("status") or {}).get("target")
    kept = t.get("judged") if isinstance(t, dict) else None
    return {k: v for k, v in kept.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(kept, dict) \
        else {}


def _policy_ref_refusal(obj: dict[str, Any], exc: ConfigError, marks: dict[str, str],
                        read: Callable[[str, str], dict[str, str]]) -> str | None:
    """`_edited_refusal` of a refusal of the policyRef ConfigMap, for a rollout whose claim recorded where its
    policy was read from (`judged_marks.source_marks`). Another source asked for by a spec its status has not
    observed (spec.policyRef edited, or an inline policy moved to one): the spec's edit; by a spec observed (an edit
    taken earlier, nothing judged changed): None, its text is not recorded. The same ConfigMap, whose text at the key is not
    the one the rollout started from (read again now) and is refused: that ConfigMap's edit, a person's
    (`rl.REFUSED_POLICY_EDIT`; a ConfigMap edit changes no generation of the CanaryRollout). The ConfigMap gone
    or unreadable, or its text unchanged: None, not an edit (714's `infrastructure`)."""
    sp = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    ref = sp.get("policyRef") if isinstance(sp.get("policyRef"), dict) else {}
    cm, key = str(ref.get("configMap") or ""), str(ref.get("key") or "")
    ns = str((obj.get("metadata") or {}).get("namespace") or "")
    where = f"ConfigMap {ns}/{cm} key {key}"
    if marks[judged_marks.SOURCE] != judged_marks.ref_mark(cm, key):
        if not _edited(obj):  # moved by an edit taken ticks ago (nothing judged changed): no record of this one's
            return None  # text, and no edit unobserved; 714's (decision 857)
        drives, model = _spec_edits(obj)
        moved = (f"spec.policy changed to spec.policyRef naming {where}"
                 if marks[judged_marks.SOURCE] == judged_marks.INLINE else f"spec.policyRef changed to {where}")
        return f"{rl.REFUSED_EDIT} ({', '.join(e for e in (drives, model, moved) if e)}): {said(exc)}"
    if exc.field == "spec.policyRef.configMap":  # gone, or its read refused: no edit of the policy it holds
        return None
    try:
        now = crd.text_digest(read(ns, cm).get(key, None))
    except Exception:  # noqa: BLE001 - cannot be read again: what it holds now is not known, no edit is said
        return None
    if now == marks.get(judged_marks.SOURCE_TEXT):
        return None  # the text the rollout started from, refused now (a stricter controller): no edit
    return f"{rl.REFUSED_POLICY_EDIT} ({where} changed since the rollout started): {said(exc)}"


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _drives(spec: crd.RolloutSpec) -> tuple[str, str, str, str]:
    """(VirtualService, route, canary version, DestinationRule, by the name it resolves to): what a
    rollout of this spec drives."""
    return spec.target.virtual_service, spec.target.route or "", spec.target.canary_version, spec.target.dr_name


def _spelled(drove: tuple[str, str, str, str] | None, spec: crd.RolloutSpec,
             routes: tuple[str, ...]) -> tuple[str, str, str, str] | None:
    """`drove` (`_drives`) with its route spelled as the spec spells it when both pick the same HTTP
    route of the spec's VirtualService, whose routes are named `routes` as read now
    (`patch.same_route`): naming the route a rollout drives as its only one (`primary`), in
    spec.route or policy.route, or dropping that name, changes nothing driven or judged, and is no
    edit. A name that picks another route (or none) still is."""
    if drove is None or drove[0] != spec.target.virtual_service:
        return drove
    route = spec.target.route or ""
    if drove[1] != route and patch.same_route(routes, drove[1], route):
        return drove[0], route, drove[2], drove[3]
    return drove


def _recorded_dr(rec: rl.RolloutState, vs: str) -> str:
    """The DestinationRule the route's record `rec`, read on VirtualService `vs`, says its rollout
    drives: a claim records it by the name it resolves to (docs/decisions.md 80); "" (a record claimed
    before) is the VirtualService's name, as the field has meant since it was recorded. Never the
    spec's: an edit of spec.destinationRule made while no status of the rollout landed is an edit."""
    return rec.destination_rule or vs


def _decided_for(decided: rl.RolloutState, recorded: rl.RolloutState) -> bool:
    """Whether `decided`, a rollback this process decided and could not write (`Controller._unconfirmed`), was
    decided for the rollout the route still records in progress (`recorded`): the same rollout (canary
    version, start, owner), not one started since or another owner's. A promotion's finish is not one."""
    return (decided.phase in (rl.ROLLED_BACK, rl.ABORTED) and not recorded.terminal
            and decided.canary_version == recorded.canary_version and decided.started_at == recorded.started_at
            and decided.owner == recorded.owner)


def _decided_again(decided: rl.RolloutState, recorded: rl.RolloutState, now: float,
                   said: Sequence[rl.Action] = (), *, gone: str = "") -> tuple[rl.RolloutState, list[rl.Action]]:
    """The rollback `decided` (rolled back or aborted), made again from the state the route records now, with its
    phase and reason, and the `evidence` its end's lines gave (`said`: the actions it was decided with): a check's
    rollback made again from a bare Rollback said its one error line, `rollback.completed`, without the numbers.
    `gone`: its VirtualService deleted before it was written ("; VirtualService m0 is gone"): an abort (nothing
    routes stable 100%) whose reason adds those words, its class the decided one's."""
    new, actions = rl.transition(recorded, rl.Rollback(now, decided.reason + gone,
                                                       aborted=bool(gone) or decided.phase == rl.ABORTED,
                                                       cause=decided.end_cause), None)  # type: ignore[arg-type]
    evidence = next((a.fields["evidence"] for a in said if isinstance(a, rl.Emit) and a.event in END_DONE
                     and a.fields.get("evidence")), None)
    if evidence:
        actions = [replace(a, fields={**a.fields, "evidence": evidence})
                   if isinstance(a, rl.Emit) and a.event in END_LINES else a for a in actions]
    return new, actions


def _drove(obj: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """What this CR's status says its rollout in progress drives (`_drives`), None when its status
    shows none in progress (never started, ended, or written before status.target existed)."""
    st = obj.get("status") or {}
    t = st.get("target")
    if st.get("phase") in rl.TERMINAL or not st.get("phase") or not isinstance(t, dict):
        return None
    try:
        # "" for a DestinationRule not recorded (a status written before it was): matches any, names the VS's
        return str(t["virtualService"]), str(t.get("route") or ""), str(t["canaryVersion"]), str(t.get("destinationRule") or "")
    except KeyError:
        return None


# a 400 on the controller's own status write: the API server could not read the body canary composed (a merge patch
# of the status it builds), whatever the user wrote in the spec (a spec the CRD refuses is a 422 at its own apply)
BAD_REQUEST_WORDS = ("{what}: HTTP 400 Bad Request on canary's own write, a bug of canary's, not of the "
                     "CanaryRollout's spec (nor RBAC, nor the CRD): the rollout ends at stable 100% (`rollout.aborted`; "
                     "`rollback.failed` if that write fails too); report it with this line (the API server could not "
                     "read the status canary composed: {said})")
# ...unless an admission check of the cluster's denied it (a webhook's denial is a 400 unless it gives a code): its
# policy, not canary's bug, the spec nor RBAC; reported as canary's bug, on-call filed it and never fixed the policy
ADMISSION_WORDS = ("{what}: HTTP {status}: {by} of this cluster denied canary's own status write, a policy of the "
                   "cluster's (not canary's bug, not the CanaryRollout's spec, not RBAC): the rollout ends at stable "
                   "100% (`rollout.aborted`; `rollback.failed` if that write fails too); let canary's writes of "
                   "canaryrollouts/status through that policy, then start it again (a new canaryVersion, or the "
                   "CanaryRollout created again) ({said})")


def _no_state(off: str) -> str:
    """Why a record a hand edit made (`off`: `rl.off_policy` / `rl.ahead_of`'s words) is not adopted
    (decisions 148, 150)."""
    return (f"rollout state annotation {patch.STATE_ANNOTATION} is no state of this rollout ({off}); "
            "it is written by canary alone")


def _status_step(obj: dict[str, Any], rec: rl.RolloutState) -> int | None | bool:
    """The step (0-based; -1 pending, the promotion last) this CR's status last showed for the rollout `rec`
    records (`rl.ahead_of`'s reference): the status is written after every write of the record, by whichever
    process wrote it, so it survives a restart and a change of leader. None when no status of that rollout
    landed (another rollout's, or none: its claim is the reference); False when the status shows it ended
    (a decided end not yet on the route: `_unconfirmed`'s, no step to compare) or cannot be read."""
    st = obj.get("status") or {}
    target = st.get("target") if isinstance(st.get("target"), dict) else {}
    if st.get("startedAt") != crd.iso(rec.started_at) or target.get("canaryVersion", rec.canary_version) != \
            rec.canary_version:
        return None
    step = st.get("step")
    if st.get("phase") not in rl.PHASES or st.get("phase") in rl.TERMINAL or isinstance(step, bool) \
            or not isinstance(step, int):
        return False
    return step - 1


def _status_weights(obj: dict[str, Any]) -> Any:
    """The weights this CR's status last recorded, as `Weights` (None when unreadable)."""
    from canary.model import Weights

    w = (obj.get("status") or {}).get("weights") or {}
    try:
        return Weights(int(w["stable"]), int(w["canary"]))
    except (KeyError, TypeError, ValueError):
        return None


def _predecessor(rec: rl.RolloutState) -> dict[str, Any]:
    """The history line a claim records of the ended rollout `rec` it replaces on the route: its owner
    (a CanaryRollout whose status has not caught up yet reads how its rollout ended from it,
    `_ended_before`) and `canary status` shows it."""
    return {"at": round(rec.updated_at, 3), "phase": rec.phase, "weights": str(rec.weights),
            "what": f"before this rollout: {rec.canary_version} ({describe_owner(rec.owner)}) ended {rec.phase}"[:300],
            "owner": rec.owner, "canary_version": rec.canary_version, "started_at": rec.started_at,
            "reason": rec.reason[:1000], **({"end_cause": rec.end_cause} if rec.end_cause else {})}


def _ended_before(rec: rl.RolloutState, owner: str, version: str, *,
                  started: Any = None) -> tuple[str, str, str] | None:
    """(phase, reason, its class as recorded: "" when none, decision 607) of `owner`'s rollout of `version` (started at `started`, the status's startedAt,
    when known), when the record `rec` that replaced it on the route kept how it ended
    (`_predecessor`); None when it did not (an older claimant, a `canary promote`)."""
    for h in rec.history[:1]:
        if h.get("owner") != owner or h.get("canary_version") != version or h.get("phase") not in rl.TERMINAL:
            continue
        at = h.get("started_at")
        if started and isinstance(at, (int, float)) and crd.iso(float(at)) != started:
            continue  # an earlier rollout of the same version by the same CR
        return str(h["phase"]), str(h.get("reason") or ""), hist.end_cause(h)
    return None


def _parse_iso(text: Any) -> float:
    """Seconds since the epoch of a status time (`crd.iso`); 0.0 when there is none or it is unreadable."""
    import calendar

    try:
        return float(calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return 0.0


def _restart_pending(obj: dict[str, Any], rec: rl.RolloutState) -> bool:
    """Whether `rec`, this CR's recorded rollout, is one an edit of its policy's steps, analysis or
    checks superseded (`_rescue(restart=True)`: its reason ends with `RESTARTS`) and the rollout the
    spec asks for has not been claimed since: the status says so (`status.restartPending`), or the
    supersede's status write was lost (the status still shows a rollout in progress, or none). A
    status that shows this CR's rollout ended without a pending restart is the last word: it was
    ended for good after (a series edit, `_advance`)."""
    if not (rec.terminal and rec.reason.startswith("superseded:") and rec.reason.endswith(RESTARTS)):
        return False
    st = obj.get("status") or {}
    return bool(st.get("restartPending")) or st.get("phase") not in rl.TERMINAL


def _status_matches_spec(obj: dict[str, Any]) -> bool:
    """The status's target (when recorded) is what the raw spec asks for (VirtualService and canary version)."""
    t = (obj.get("status") or {}).get("target")
    if not isinstance(t, dict):
        return True  # written before status.target: as before
    sp = obj.get("spec") or {}
    return (t.get("canaryVersion") == sp.get("canaryVersion")
            and t.get("virtualService") == (sp.get("virtualService") or sp.get("model")))


def _edit(old: tuple[str, ...], new: tuple[str, ...]) -> str:
    """What changed between two `_drives`, in the spec's field names."""
    names = ("spec.virtualService", "spec.route", "spec.canaryVersion", "the DestinationRule")
    return ", ".join(f"{n} changed from {a or '(none)'} to {b or '(none)'}" for i, (n, a, b) in enumerate(zip(names, old, new))
                     if a != b and not (i == 3 and not a))  # a DestinationRule not recorded matches any


def _settled(obj: dict[str, Any]) -> bool:
    """Finished, and its status was written for the spec it has now: a finished rollout costs nothing
    (no parse, no read, no write) until someone edits its spec (a new generation)."""
    st, meta = obj.get("status") or {}, obj.get("metadata") or {}
    return (st.get("phase") in rl.TERMINAL and st.get("observedGeneration") == meta.get("generation")
            and not st.get("restartPending") and _status_matches_spec(obj))


class _Held:
    """A logger whose lines wait for `flush` (`_check_before_claim`: a refusal said before is not said again)."""

    def __init__(self, log: Any) -> None:
        self._log, self._lines = log, []  # type: ignore[var-annotated]

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self._lines.append((level, event, kw))

    def flush(self) -> None:
        for level, event, kw in self._lines:
            getattr(self._log, level)(event, **kw)
        self._lines.clear()

"""Leader election on a ``coordination.k8s.io/v1`` Lease, with fencing.

Two controller replicas must never both write traffic weights. Exactly one
holds the Lease; the other waits. The rules are client-go's leaderelection,
plus a fence the caller can check before every write.

Acquire or renew (one attempt, :meth:`LeaderElector.try_acquire_or_renew`):

* no Lease -> create it holding it (POST; 409 AlreadyExists means someone won), but only once it has been
  seen absent for its lease duration, as a held record is timed: absence proves nobody leads no more
  than a stale record does (a Lease deleted by hand under a live leader: a standby that created it at
  once led beside it until the old leader's next renewal). Our own term's Lease found deleted while we
  still lead is created again at once, in the same term (standbys are then still waiting). What this
  cannot see: a Lease created anew and deleted again between two of a standby's reads looks to it as if
  it never existed (no tombstone, no resourceVersion to compare), so two deletions within a retry period
  can still give two leaders until the old one's next renewal.
* held by us (our identity and the term this process holds) -> renew: PUT a new ``renewTime``. Our
  identity in a term we did not take is another holder's (a replica given the same identity, or our
  own previous run): timed as below. A new term's write (create or takeover) answered 5xx or timed out may
  have landed (etcd's "request timed out", "leader changed"): found at the next read exactly as sent (the
  term and ``renewTime``), it is ours, and renewed at once (it was waited out a lease duration as a clash).
* held by nobody (released) -> take it now.
* held by another -> take it only when the record has not *changed* for its
  lease duration, measured from when *we* first saw the current record, on
  our own monotonic clock. The wall-clock ``renewTime`` is written for people
  and other tools but never compared across machines, so clock skew between
  replicas does not matter; only the rates of the monotonic clocks do.

Every write is a PUT carrying the resourceVersion we read (or last wrote), so
two candidates racing produce one winner; the other gets 409 and is not leader.

Fencing (:meth:`is_leader`): True only while
``clock() - sent < renew_deadline_s``, where ``sent`` is the monotonic time
taken *before* the last write that succeeded was sent. A slow request cannot
extend leadership, and a leader that cannot renew (API down, network stall,
a GC or SIGSTOP pause: the monotonic clock keeps running) stops by itself.

Why two leaders cannot overlap. Let the old leader's last successful write
be sent at ``s``. It lands at the server at some ``w >= s``. A standby can
only observe that record after it landed, at ``o >= w >= s``, and takes over
no earlier than ``o + lease_duration_s`` (any later write by the old leader
restarts that wait, and a takeover racing with such a write gets 409). The
old leader's is_leader() turned False at ``s + renew_deadline_s``. Since
``renew_deadline_s < lease_duration_s``, the old leader has stopped before
the new one starts, by at least ``lease_duration_s - renew_deadline_s`` less
the drift of the two monotonic clocks over one lease duration. What this
cannot cover: a write that passed the is_leader() check and then stalled for
longer than that margin. Writes should therefore have timeouts well under the
margin, and objects written should carry :meth:`fence_token` (or use their
own resourceVersion preconditions) so a late write can be recognised.

Fence token: ``spec.leaseTransitions`` of the term we hold. It grows by one
whenever a new term starts (another holder, a released Lease, or a holder
whose term we did not know, e.g. our own restart), so tokens grow across
leaders. A renewal keeps it: a successful conditional PUT proves nobody else
held the Lease in between.

``leaseDurationSeconds`` is an integer in the API. We write ``ceil`` of our
duration there (so other tools wait at least as long as we do) and the exact
value in the ``modelcanary.dev/lease-duration-s`` annotation, which our replicas
prefer when it is consistent with the integer field (sub-second durations in
tests and in the failover benchmark).

Log events (for on-call): ``leader.acquired`` (fence_token), ``leader.lost``
(reason: renew_deadline | taken | released), ``leader.renew_failed`` (error),
``leader.identity_held`` (held under our name in a term we did not take: waited for as any holder),
``leader.lease_absent`` (no Lease: created after a lease duration), ``leader.lease_recreated`` (ours deleted
while leading: created again),
``leader.refused`` (warning: the API refused a standby's request, RBAC or no coordination API: it
cannot lead; said once per refusal), ``leader.attempt_failed`` (debug: a standby could not reach the API or
lost a race), ``leader.released``, ``leader.release_failed``, ``leader.callback_failed``.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import structlog

from canary.errors import CanaryError, ConfigError, NotFound, RoutingConflict, TransientError
from canary.kube import translate

log = structlog.get_logger(__name__)

DURATION_ANNOTATION = "modelcanary.dev/lease-duration-s"
_ABSENT = "(no Lease)"  # the fingerprint of an absent Lease: timed as any record is
_NOT_SERVED = "the server could not find the requested resource"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def micro_time(t: datetime) -> str:
    """RFC 3339 with six fractional digits: what the API server parses a MicroTime with.

    The pydantic-based official client (37 here) re-parses this string into a datetime and
    sends ``isoformat()``, which drops the fraction when it is zero; the API server's
    parser then rejects it. So a whole second is nudged by one microsecond.
    """
    t = t.astimezone(timezone.utc)
    return (t if t.microsecond else t.replace(microsecond=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@runtime_checkable
class LeaseStore(Protocol):
    """The three calls leader election needs. Raise CanaryError (409 -> RoutingConflict)."""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class KubeLeaseStore:
    """LeaseStore over the official client; plain dicts in and out, errors translated."""

    def __init__(self, api_client: Any, *, timeout_s: float) -> None:
        import kubernetes.client

        self._api = kubernetes.client.CoordinationV1Api(api_client)
        self._timeout = timeout_s

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = self._api.read_namespaced_lease(name, namespace, _preload_content=False,
                                                   _request_timeout=self._timeout)
            return _json(resp)
        except Exception as exc:
            if getattr(exc, "status", None) == 404 and _NOT_SERVED not in str(getattr(exc, "body", "")):
                return None
            raise translate(exc, f"lease {namespace}/{name}") from exc

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return _json(self._api.create_namespaced_lease(namespace, body, _preload_content=False,
                                                           _request_timeout=self._timeout))
        except Exception as exc:
            raise translate(exc, f"lease {namespace}/{body['metadata']['name']}") from exc

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return _json(self._api.replace_namespaced_lease(name, namespace, body, _preload_content=False,
                                                            _request_timeout=self._timeout))
        except Exception as exc:
            raise translate(exc, f"lease {namespace}/{name}") from exc


def _json(resp: Any) -> dict[str, Any]:
    """The Lease an answer carries; BadAnswer (transient: `translate` gives KubeUnavailable) for a 200 whose body is
    no Lease (empty, a proxy's page, `null`, `{}`). A write answered `{}` was kept as the Lease we wrote: the next
    renewal PUT it back without a resourceVersion (unguarded), the Lease lost its `leaseTransitions`, and every
    renewal after failed (KeyError) until the leader stepped down (decision 394)."""
    from canary.kube import an_object

    return an_object(json.loads(resp.data), "the Lease")


class LeaderElector:
    """One replica's view of the election. Thread-safe: run() in one thread, is_leader() anywhere."""

    def __init__(self, api_client: Any, *, namespace: str, name: str = "canary-controller", identity: str,
                 lease_duration_s: float = 15.0, renew_deadline_s: float = 10.0, retry_period_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = utcnow) -> None:
        if not identity:
            raise ConfigError("leader election: identity must be a non-empty, per-process unique string")
        if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
            raise ConfigError("leader election: need 0 < retry_period_s < renew_deadline_s < lease_duration_s, "
                              f"got {retry_period_s}, {renew_deadline_s}, {lease_duration_s}")
        # A request may not outlive the time we have left to renew; it should also not be so short
        # that a busy API server is mistaken for a dead one.
        timeout = max(retry_period_s, renew_deadline_s / 2)
        self._store: LeaseStore = api_client if isinstance(api_client, LeaseStore) else \
            KubeLeaseStore(api_client, timeout_s=timeout)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration_s, self.renew_deadline_s = lease_duration_s, renew_deadline_s
        self.retry_period_s = retry_period_s
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._sent: float | None = None          # monotonic send time of the last successful write of our term
        self._token: int | None = None           # leaseTransitions of the term we hold (or held, unbroken)
        self._cached: dict[str, Any] | None = None  # the Lease as we last wrote it (fast renew path)
        self._observed: tuple[str, float] | None = None  # (record fingerprint, monotonic time first seen)
        self._may_take_at: float | None = None  # standing by: when the holder's lease lapses unless renewed
        self._seen_transitions = -1              # the highest leaseTransitions read: a Lease created anew goes on from it
        # a new term's write (a create, a takeover) that got no answer (a 5xx, a timeout) and may have landed:
        # (its leaseTransitions, its renewTime as sent). Found on the Lease at the next read, it is our own term
        self._unanswered: tuple[int, str] | None = None
        self._clash_said = False                  # `leader.identity_held` said for the clash going on
        self._refused_said = ""                   # the refusal `leader.refused` last said ("" once a write passed)
        self._reported = False
        self._last_token = -1                     # for logs: the term we last held
        self._lost_reason = "renew_deadline"
        self._on_change: Callable[[bool], None] | None = None
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)

    # --- the fence ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading_at(self._clock())

    def lease_left(self) -> float:
        """Seconds this replica may still write: until its renew deadline (0 when not leading).
        A write must land before then; the standby takes over no earlier than lease_duration_s."""
        with self._lock:
            now = self._clock()
            if not self._leading_at(now):
                return 0.0
            assert self._sent is not None
            return self.renew_deadline_s - (now - self._sent)

    def _leading_at(self, now: float) -> bool:
        return self._sent is not None and self._token is not None and now - self._sent < self.renew_deadline_s

    def take_over_in(self) -> float | None:
        """Standing by for a live holder: seconds until its lease lapses (by what we last read of it)
        unless it renews; a loop should try again then, not a retry period later, so that a dead
        holder's lease moves within one lease duration of its last renewal seen. None otherwise."""
        with self._lock:
            if self._may_take_at is None or self._leading_at(self._clock()):
                return None
            return max(0.0, self._may_take_at - self._clock())

    def fence_token(self) -> int:
        """leaseTransitions of our current (or last unbroken) term; -1 when we have none."""
        with self._lock:
            return -1 if self._token is None else self._token

    # --- one attempt ----------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        try:
            self._attempt()
        except CanaryError as exc:
            self._failed(exc)
        except Exception as exc:  # a malformed Lease must not kill the loop either
            self._failed(translate(exc, f"lease {self.namespace}/{self.name}"))
        self._notify()
        return self.is_leader()

    def _attempt(self) -> None:
        with self._lock:
            cached = self._cached if self._leading_at(self._clock()) else None
        if cached is not None:  # fast path: renew with what we last wrote, no GET
            try:
                self._write(cached, new_term=False)
                return
            except (RoutingConflict, NotFound):
                pass  # someone wrote since, or deleted it: look at what is there now
        lease = self._store.get(self.namespace, self.name)
        if lease is None:
            self._absent()
            return
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        now = self._observe(lease)
        wait, clash = 0.0, False
        with self._lock:
            landed, self._unanswered = self._unanswered, None
            if landed is not None and holder == self.identity and self._token is None and \
                    _int(spec.get("leaseTransitions")) == landed[0] and _same_time(spec.get("renewTime"), landed[1]):
                # the term this replica took, whose answer was lost (etcd's timeout, a leader change): renewed now
                # (a PUT guarded on this version: nobody wrote since), not timed as a holder of our name in a term
                # we did not take (`leader.identity_held`, a lease duration with nobody leading)
                self._token = landed[0]
            ours = holder == self.identity and self._token is not None and \
                _int(spec.get("leaseTransitions")) == self._token
            # held under our own name in a term this process did not take (or lost track of) is somebody's
            # too: another process given the same identity (a duplicated --identity, POD_NAME unset under
            # hostNetwork: one hostname, pid 1 in both), or our previous run. Taken at once, two such
            # replicas both led, each taking a new term at every try; it is timed as any holder's is.
            if holder and not ours:
                if self._token is not None:
                    self._lost_reason = "taken"
                self._token, self._cached = None, None
                assert self._observed is not None
                self._may_take_at = self._observed[1] + self._duration_of(lease)
                wait = self._may_take_at - now
                clash = holder == self.identity and not self._clash_said  # said once, until it ends
                self._clash_said = holder == self.identity
        if holder and not ours and wait > 0:
            if clash:
                self._log.warning("leader.identity_held", fence_token=_int(spec.get("leaseTransitions")),
                                  reason="the Lease is held under this replica's identity in a term it did not "
                                         "take: another replica with the same identity (--identity, POD_NAME), or "
                                         "this one's previous run; taken only once seen unrenewed for its lease "
                                         "duration")
            return  # a live holder (by what we have seen of it): stand by
        self._write(lease, new_term=not ours)

    def _absent(self) -> None:
        """No Lease. Ours deleted while we lead: created again now, in our term (a standby waits a lease
        duration from seeing it absent, longer than our fence holds). Otherwise created once seen absent
        for a lease duration: a leader whose Lease was deleted by hand still writes until its renew deadline."""
        now = self._observe(None)
        with self._lock:
            mine = self._leading_at(now)
            term = self._token
            if not mine:
                self._token, self._cached = None, None
                assert self._observed is not None
                first = self._observed[1] == now
                self._may_take_at = self._observed[1] + self.lease_duration_s
                wait = self._may_take_at - now
        if mine:
            try:
                self._write(None, new_term=False, term=term)
            except RoutingConflict:  # created by another since: it leads now, we stop at once
                with self._lock:
                    if self._token == term:
                        self._token, self._cached, self._lost_reason = None, None, "taken"
                raise
            self._log.warning("leader.lease_recreated", fence_token=term,
                              reason="the Lease was deleted while this replica led: created again in the same term")
            return
        if wait > 0:
            if first:
                self._log.info("leader.lease_absent", wait_s=round(wait, 3),
                               reason="no Lease (a first start, or deleted by hand): created once seen absent for "
                                      "its lease duration, so a leader it was deleted under has stopped first")
            return
        try:
            self._write(None, new_term=True)
        except NotFound as exc:  # a create's 404: no retry mends it, so `leader.refused` says it (it was debug only)
            raise ConfigError(f"leader election: creating Lease {self.namespace}/{self.name} was answered 404 "
                              f"({exc}): the lease namespace {self.namespace!r} does not exist, or the API server "
                              "does not serve coordination.k8s.io/v1 leases; set --lease-namespace (or POD_NAMESPACE) "
                              "to an existing namespace") from exc

    def _observe(self, lease: dict[str, Any] | None) -> float:
        """Note when we first saw this version of the record (or its absence); returns now (after the GET
        answered)."""
        if lease is None:
            fingerprint = _ABSENT
        else:
            meta = lease.get("metadata") or {}
            fingerprint = str(meta.get("resourceVersion") or json.dumps(lease.get("spec"), sort_keys=True))
        now = self._clock()
        with self._lock:
            if lease is not None:
                self._seen_transitions = max(self._seen_transitions,
                                             _int((lease.get("spec") or {}).get("leaseTransitions")))
            if self._observed is None or self._observed[0] != fingerprint:
                self._observed = (fingerprint, now)
        return now

    def _duration_of(self, lease: dict[str, Any]) -> float:
        declared = _int((lease.get("spec") or {}).get("leaseDurationSeconds"))
        if declared <= 0:
            return self.lease_duration_s
        try:
            exact = float(((lease.get("metadata") or {}).get("annotations") or {})[DURATION_ANNOTATION])
        except (KeyError, TypeError, ValueError):
            return float(declared)
        return exact if declared - 1 < exact <= declared else float(declared)

    def _write(self, base: dict[str, Any] | None, *, new_term: bool, term: int | None = None) -> None:
        now = self._wall()
        body = _lease_body(base, namespace=self.namespace, name=self.name)
        spec = body["spec"]
        if new_term:
            # a Lease created anew goes on from the highest term seen (one deleted by hand), so tokens grow
            spec["leaseTransitions"] = (self._seen_transitions + 1 if base is None
                                        else _int(spec.get("leaseTransitions")) + 1)
            spec["acquireTime"] = micro_time(now)
        elif base is None:  # ours, deleted while we lead: created again in the same term
            spec["leaseTransitions"], spec["acquireTime"] = term, micro_time(now)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = math.ceil(self.lease_duration_s)
        spec["renewTime"] = micro_time(now)
        body["metadata"].setdefault("annotations", {})[DURATION_ANNOTATION] = repr(self.lease_duration_s)
        sent = self._clock()  # before the request: a slow answer must not stretch our term
        try:
            written = self._store.create(self.namespace, body) if base is None else \
                self._store.replace(self.namespace, self.name, body)
        except TransientError:
            if new_term:  # it may have landed: the next read tells (`_attempt`)
                with self._lock:
                    self._unanswered = (_int(spec["leaseTransitions"]), spec["renewTime"])
            raise
        with self._lock:
            self._sent, self._token, self._cached = sent, _int(spec["leaseTransitions"]), written
            self._seen_transitions = max(self._seen_transitions, self._token)
            self._clash_said, self._refused_said, self._unanswered = False, "", None
            self._last_token, self._may_take_at = self._token, None

    def _failed(self, exc: CanaryError) -> None:
        with self._lock:
            held = self._token is not None and self._sent is not None
        if held:
            self._log.warning("leader.renew_failed", error=str(exc), error_type=type(exc).__name__)
        elif isinstance(exc, ConfigError) and not isinstance(exc, NotFound):
            # refused, not unreachable and no lost race: RBAC (403), the coordination API not served. No retry
            # mends it, and nobody leads: it was said at debug only, every rollout waiting with nothing said
            with self._lock:
                said, self._refused_said = self._refused_said, str(exc)
            if said != str(exc):
                self._log.warning("leader.refused", error=str(exc), error_type=type(exc).__name__,
                                  reason="the API refused this replica's Lease request: it cannot lead until that "
                                         "is mended (RBAC: get, create, update on leases in the lease namespace)")
        else:
            self._log.debug("leader.attempt_failed", error=str(exc), error_type=type(exc).__name__)

    # --- hand-over ------------------------------------------------------------------------------

    def release(self) -> None:
        """Stop leading now, then clear holderIdentity if the Lease is still ours (best effort)."""
        with self._lock:
            base, token, self._sent, self._token, self._cached = self._cached, self._token, None, None, None
            if token is not None:
                self._lost_reason = "released"
        self._notify()  # fence first: nothing of ours may be written once the Lease says nobody holds it
        # Two tries at most, so an exit ends while the API answers badly (decision 423): the second reads the Lease
        # again, after a 409 (a renewal of ours that landed unanswered left `base` a version behind) or an answer
        # that may hide a landed release (a 5xx, a timeout, a 200 with no Lease): found released as we sent it, it
        # is released; still ours, it is cleared on what was read.
        sent = ""
        for last in (False, True):
            try:
                if base is None:
                    base = self._store.get(self.namespace, self.name)
                spec = (base or {}).get("spec") or {}
                if sent and base is not None and not spec.get("holderIdentity") and _same_time(spec.get("renewTime"),
                                                                                               sent):
                    self._log.info("leader.released", fence_token=token, note="the release landed, its answer lost")
                    return
                if base is None or (spec.get("holderIdentity") or "") != self.identity:
                    return
                body = _lease_body(base, namespace=self.namespace, name=self.name)
                sent = micro_time(self._wall())
                body["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=sent, acquireTime=sent)
                self._store.replace(self.namespace, self.name, body)
                self._log.info("leader.released", fence_token=token)
                return
            except (RoutingConflict, TransientError) as exc:
                if last:
                    self._log.warning("leader.release_failed", error=str(exc), error_type=type(exc).__name__)
                base = None  # read it again
            except Exception as exc:  # best effort: the Lease expires on its own anyway
                self._log.warning("leader.release_failed", error=str(exc), error_type=type(exc).__name__)
                return

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_change: Callable[[bool], None] | None = None) -> None:
        """Try every retry_period (`next_try`) until `stop`; on_change(bool) on every change of is_leader().

        Stopping does not release the Lease (call release() for a fast hand-over); is_leader()
        then lapses by itself at the renew deadline.
        """
        self._on_change = on_change
        while not stop.is_set():
            started = self._clock()
            leading = self.try_acquire_or_renew()
            next_try = self.next_try(started, leading)
            while not stop.is_set():
                now = self._clock()
                if now >= next_try:
                    break
                with self._lock:
                    sent = self._sent if self._leading_at(now) else None
                lapse = next_try if sent is None else sent + self.renew_deadline_s
                stop.wait(max(0.0, min(next_try, lapse) - now) + 0.001)
                self._notify()  # report a lapse when it happens, not at the next attempt

    def next_try(self, started: float, leading: bool, jitter: float | None = None) -> float:
        """When the loop tries again (monotonic): a retry period after this attempt `started`, standbys
        jittered by up to 20% (`jitter` in [0, 1); random when None) as client-go does so candidates do
        not march in step; or just after a live holder's lease lapses (`take_over_in`) when that
        comes first."""
        j = random.random() if jitter is None else jitter
        at = started + self.retry_period_s * (1.0 if leading else 1.0 + 0.2 * j)
        if (wait := self.take_over_in()) is not None and wait > 0:
            at = min(at, self._clock() + wait + 0.005)
        return at

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name=f"leader-{self.identity}", daemon=True)
        thread.start()
        return thread

    def _notify(self) -> None:
        with self._lock:
            now = self._leading_at(self._clock())
            if now == self._reported:
                return
            self._reported, callback, token, reason = now, self._on_change, self._last_token, self._lost_reason
            self._lost_reason = "renew_deadline"
        if now:
            self._log.info("leader.acquired", fence_token=token)
        else:
            self._log.warning("leader.lost", reason=reason, fence_token=token)
        if callback is not None:
            try:
                callback(now)
            except Exception as exc:
                self._log.error("leader.callback_failed", error=str(exc), error_type=type(exc).__name__)


def _lease_body(base: dict[str, Any] | None, *, namespace: str, name: str) -> dict[str, Any]:
    """A fresh Lease, or a copy of `base` keeping its resourceVersion (our precondition)."""
    body = json.loads(json.dumps(base)) if base is not None else {}
    body["apiVersion"], body["kind"] = "coordination.k8s.io/v1", "Lease"
    meta = body.setdefault("metadata", {})
    meta.setdefault("name", name)
    meta.setdefault("namespace", namespace)
    if not isinstance(body.get("spec"), dict):
        body["spec"] = {}
    return body


def _same_time(written: Any, sent: str) -> bool:
    """Whether the Lease's `renewTime` is the one we sent (the client may send it re-formatted: compared as
    instants, to the microsecond)."""
    def parse(value: Any) -> datetime | None:
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    got = parse(written)
    return got is not None and got == parse(sent)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0

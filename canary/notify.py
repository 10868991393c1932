"""Outbound notifications: generic JSON webhooks and Slack incoming webhooks.

Why this exists: a rollback at 3 a.m. should reach people (Slack) and machines
(a retraining pipeline listening for `prediction_shift`) without the
controller ever waiting on them. `Notifier.notify()` makes the bodies and
puts them on a bounded in-memory queue per URL; each URL has its own thread,
so a receiver that hangs holds back only its own posts, never Slack's. When a
queue is full its oldest event that is not a "rollback" or "aborted" is
dropped and counted (`dropped`): a burst of drift news must not push out the
rollback, and nothing here may block or raise into a rollback. Delivery is
best effort: a process that dies loses its queues (the rollout's state and
Kubernetes Events remain the record); one that exits with `close()` waits a
bounded time and, when something is still undelivered, says what and where
(`notify.undelivered`, with the number of rollbacks and aborts among them).

Events: "rollback", "promotion", "prediction_shift" (a prediction-shift
breach), "aborted". A rollout the sweep ends because its owner is gone
(`canary.sweep`) is "aborted" (stable 100%) or "promotion" (finished), with
`rollout` its VirtualService and the reason "abandoned: ..." / "orphaned: ...".

Generic webhook: ``POST`` with ``Content-Type: application/json``::

    {"id": "9f0c...",                       # idempotency key: the same on every retry, every URL, and
                                            # the same end announced again; keep the ones acted on
     "event": "rollback",                   # one of the events above (the drift watch's: drift_started, ...)
     "model": "rec-model", "namespace": "ml", "rollout": "rec-model",   # the CanaryRollout (sweep: VirtualService)
     "stable_version": "v2.0.0", "canary_version": "v2.1.0",
     "weights": {"stable": 100, "canary": 0},      # after the action; null if unknown
     "reason": "latency-p95: p95 94.1 ms vs 61.2 ms (+54%, limit +20%) ...",
     "evidence": [{"check": "latency-p95", "outcome": "fail", "p_value": 3e-09, ...}],  # CheckResult.to_dict()
     "at": "2025-01-31T03:12:09.120Z"}             # UTC, ISO 8601

Unknown numbers (NaN, inf) are ``null``. Slack gets ``{"text": <one line>,
"blocks": [<section: the line>, <section: fields>, <section: "Next: `canary
status ...`">]}``; the line names the namespace, model, version, the weights
now and the reason, escaped for mrkdwn and cut to Slack's limits after
escaping; the last block, the command to look at a rollout's end (its
VirtualService and route, from the payload's ``virtual_service`` / ``route``).

Delivery: up to ``retries`` re-tries (tenacity, short exponential backoff, or
the receiver's ``Retry-After`` when longer, up to 30 s) on connection errors,
timeouts (``timeout_s`` for each byte awaited, twice it for the whole post: `AnswerTooSlow`), 5xx and 429; other 4xx are not re-tried (the request itself is
wrong), and redirects are not followed. The answer's body is not read, but
for a short one: Slack's error word (``no_service``, ``invalid_payload``,
``channel_is_archived``) is the log line's ``detail``, and a Slack 2xx that
carries one counts as refused. URLs come from flags or ``CANARY_WEBHOOK_URLS`` /
``CANARY_SLACK_WEBHOOK_URLS`` (comma-separated), checked when the Notifier is
made (scheme, host, port), before any traffic moves. A Slack URL *is* its
secret, so errors and logs carry only the host, never a path, query or raw
exception text.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from canary import logs
from canary.errors import ConfigError
from canary.notify_http import failure_cause
from canary.redact import unseen_host
from canary.notify_body import end_events, event_id, payload_for, slack_body, slack_line, webhook_body

EVENTS = ("rollback", "promotion", "prediction_shift", "aborted")
CRITICAL = frozenset({"rollback", "aborted"})  # never dropped to make room for other news
ENV_WEBHOOKS, ENV_SLACK = "CANARY_WEBHOOK_URLS", "CANARY_SLACK_WEBHOOK_URLS"
MAX_RETRY_AFTER_S = 30.0  # a longer Retry-After is waited this long, then tried again
KEEP_FAILED_S = 86_400.0  # a post kept after failing (`keep_failed`) is sent again at each `resend` this long


def drift_event(event: str) -> bool:
    """The drift monitor's notifications (`drift_started`, ...): a failed one is kept and sent again at the next
    drift pass (`Notifier`'s default `keep_failed`, `resend`), since nothing else sends it again: the stored
    outbox counts an alert delivered once it is handed to the notifier."""
    return event.startswith("drift_")


class Answer(NamedTuple):
    """What a receiver answered: its status, its Retry-After in seconds, and its error word (Slack's
    `invalid_payload`, `no_service`, `channel_is_archived`...: one lowercase word, else "")."""

    status: int
    retry_after_s: float | None = None
    error: str = ""


Sender = Callable[[str, dict[str, Any], float], "int | Answer"]  # (url, JSON body, timeout_s); may raise OSError


class _Retry(Exception):
    """A delivery attempt worth repeating (connection error, timeout, 5xx, 429)."""

    def __init__(self, what: str, retry_after_s: float | None = None, cause: str = "") -> None:
        super().__init__(what)
        self.retry_after_s, self.cause = retry_after_s, cause


class _Sink:
    """One URL with its own queue and thread: a receiver that hangs holds back only its own posts."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url, self.host = kind, url, _host(url)
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.busy: str | None = None  # the event being posted now
        self.thread: threading.Thread | None = None
        # `keep_failed`: posts that failed past their retries, kept for `resend` (event, body, first failure), and
        # the first failure of each body now queued again (by the body's identity: the same dict is sent again)
        self.kept: list[tuple[str, dict[str, Any], float]] = []
        self.resending: dict[int, float] = {}

    def pending(self) -> list[str]:
        return ([self.busy] if self.busy else []) + [e for e, _ in self.queue]

    def undelivered(self) -> list[str]:
        """What `close` reports: the posts still queued, and those kept after failing (`keep_failed`)."""
        return self.pending() + [e for e, _, _ in self.kept]


class Notifier:
    """Non-blocking fan-out of rollout events to webhooks and Slack."""

    def __init__(self, *, webhooks: Sequence[str] = (), slack: Sequence[str] = (), timeout_s: float = 3.0,
                 retries: int = 2, sender: Sender | None = None, max_queue: int = 100,
                 backoff_s: float = 0.25, sleep: Callable[[float], None] = time.sleep,
                 keep_failed: Callable[[str], bool] | None = lambda event: drift_event(event),
                 clock: Callable[[], float] = time.monotonic, answer_within_s: float | None = None) -> None:
        """`answer_within_s`: how long one post may take in all, however slowly its receiver answers (None: twice
        `timeout_s`, which bounds each wait for a byte; decision 721). `keep_failed`: the events whose post, failed past its retries (a connection error, a timeout, a 5xx or
        429: not a refusal), is kept and posted again, the same body and `id`, at each `resend()` (the drift
        monitor's every pass), for up to KEEP_FAILED_S; kept in this process only. By default the drift monitor's
        own (`drift_event`); None keeps none."""
        for name, source, urls in (("webhook", f"{ENV_WEBHOOKS} / --webhook", webhooks),
                                   ("slack", f"{ENV_SLACK} / --slack-webhook", slack)):
            for i, url in enumerate(urls):
                why = _bad_url(url)
                if why:  # the URL itself may be a secret: named by its place, never shown
                    raise ConfigError(f"{name} URL #{i + 1} ({source}) {why}")
        self.webhooks, self.slack = list(webhooks), list(slack)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, max(0, retries), backoff_s
        self._send: Sender = sender or _HttpSender(answer_within_s)
        self._sleep = sleep
        self._sinks = [_Sink("webhook", u) for u in self.webhooks] + [_Sink("slack", u) for u in self.slack]
        self._max = max(1, max_queue)
        self._cond = threading.Condition()
        self._closing = False
        self.sent = self.failed = self.dropped = 0  # deliveries (one per URL) and deliveries dropped when full
        self._keep_failed, self._clock = keep_failed, clock
        self.log = logs.get(component="notify")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> "Notifier":
        """URLs from CANARY_WEBHOOK_URLS / CANARY_SLACK_WEBHOOK_URLS, plus any given as flags (kwargs)."""
        env = os.environ if environ is None else environ
        kwargs["webhooks"] = _split(env.get(ENV_WEBHOOKS, "")) + list(kwargs.get("webhooks", ()))
        kwargs["slack"] = _split(env.get(ENV_SLACK, "")) + list(kwargs.get("slack", ()))
        return cls(**kwargs)

    @property
    def enabled(self) -> bool:
        return bool(self._sinks)

    def __repr__(self) -> str:
        return f"Notifier(webhooks={[_host(u) for u in self.webhooks]}, slack={[_host(u) for u in self.slack]})"

    def notify(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue one event for delivery and return at once. Never raises, never blocks.

        The bodies are made now (`at` defaults to now, not to when a slow receiver's turn comes), with one
        `id` that every retry and every URL carries. When a URL's queue is full, its oldest event that is
        not a rollback or an abort is dropped; only a queue of nothing but those drops its oldest."""
        try:
            if not self.enabled:
                return
            bodies: dict[str, dict[str, Any]] = {}
            for kind, make in (("webhook", webhook_body), ("slack", slack_body)):
                if any(s.kind == kind for s in self._sinks):
                    try:  # a payload one format cannot hold must not cost the other its post
                        bodies[kind] = make(event, payload)
                    except Exception as exc:  # noqa: BLE001
                        self.log.error("notify.internal_error", notify_event=event, sink=kind, error=type(exc).__name__)
            with self._cond:
                if self._closing:
                    self.log.warning("notify.dropped", notify_event=event, why="closed")
                    return
                for sink in self._sinks:
                    if sink.kind in bodies:
                        self._enqueue(sink, event, bodies[sink.kind])
                self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - a notification must never break a rollback
            self.log.error("notify.internal_error", notify_event=event, error=type(exc).__name__)

    def _enqueue(self, sink: _Sink, event: str, body: dict[str, Any]) -> None:
        if len(sink.queue) >= self._max:
            victim = next((i for i, (e, _) in enumerate(sink.queue) if e not in CRITICAL), None)
            if victim is None and event not in CRITICAL:
                self.dropped += 1
                self.log.warning("notify.dropped", notify_event=event, why="queue full", sink=sink.kind,
                                 host=sink.host, dropped=self.dropped)
                return
            old, _ = sink.queue[victim or 0]
            del sink.queue[victim or 0]
            self.dropped += 1
            self.log.warning("notify.dropped", notify_event=old, why="queue full", sink=sink.kind, host=sink.host,
                             dropped=self.dropped)
        sink.queue.append((event, body))
        if sink.thread is None:
            sink.thread = threading.Thread(target=self._run, args=(sink,), name=f"canary-notify-{sink.kind}",
                                           daemon=True)
            sink.thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting events and wait up to `timeout` s for the queues to drain. True when drained.

        Not drained: `notify.undelivered` names each URL's host and the events it still held, so a
        rollback lost at exit is said (the process may end while a post is in flight)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            drained = self._cond.wait_for(lambda: not any(s.pending() for s in self._sinks), timeout=timeout)
            left = [{"sink": s.kind, "host": s.host, "events": s.undelivered()} for s in self._sinks if s.undelivered()]
            drained = drained and not left  # a post kept after failing (`keep_failed`) is lost with the process
        if not drained:
            events = [e for one in left for e in one["events"]]
            self.log.warning("notify.undelivered", undelivered=left, critical=sum(e in CRITICAL for e in events),
                             waited_s=timeout)
            return False
        for s in self._sinks:
            if s.thread is not None:
                s.thread.join(timeout=1.0)
        return True

    def resend(self) -> int:
        """Queue again, each on its own URL, the posts kept after failing (`keep_failed`): the same body, so the
        same `id` (a receiver that keeps the ids it acted on acts once). Never raises, never blocks; returns how
        many were queued. Those kept longer than KEEP_FAILED_S are dropped (`notify.dropped`)."""
        try:
            n, now = 0, self._clock()
            with self._cond:
                if self._closing:
                    return 0
                for sink in self._sinks:
                    kept, sink.kept = sink.kept, []
                    for event, body, since in kept:
                        if now - since > KEEP_FAILED_S:
                            self.dropped += 1
                            self.log.warning("notify.dropped", notify_event=event, why="undelivered for 24 h",
                                             sink=sink.kind, host=sink.host, dropped=self.dropped)
                            continue
                        sink.resending[id(body)] = since
                        self._enqueue(sink, event, body)
                        n += 1
                self._cond.notify_all()
            return n
        except Exception as exc:  # noqa: BLE001 - a notification must never break its caller
            self.log.error("notify.internal_error", notify_event="resend", error=type(exc).__name__)
            return 0

    def _kept(self, sink: _Sink, event: str, body: dict[str, Any]) -> bool:
        """Keep a post that failed past its retries for `resend` when `keep_failed` says so (the oldest goes when
        a URL keeps `max_queue`); True when kept."""
        with self._cond:
            since = sink.resending.pop(id(body), None)
            if self._keep_failed is None or not self._keep_failed(event) or self._closing:
                return False
            if len(sink.kept) >= self._max:
                old, _, _ = sink.kept.pop(0)
                self.dropped += 1
                self.log.warning("notify.dropped", notify_event=old, why="too many kept after failing",
                                 sink=sink.kind, host=sink.host, dropped=self.dropped)
            sink.kept.append((event, body, self._clock() if since is None else since))
            return True

    # ---- worker --------------------------------------------------------------------

    def _run(self, sink: _Sink) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: sink.queue or self._closing)
                if not sink.queue:
                    return  # closing and drained
                event, body = sink.queue.popleft()
                sink.busy = event
            try:
                self._post(sink, body, event=event)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one bad event
                self.log.error("notify.internal_error", notify_event=event, error=type(exc).__name__)
            finally:
                with self._cond:
                    sink.busy = None
                    self._cond.notify_all()

    def _count(self, what: str) -> None:
        with self._cond:  # one thread per URL counts
            setattr(self, what, getattr(self, what) + 1)

    def _wait(self, state: Any) -> float:
        """Exponential backoff, or the receiver's Retry-After when it asked for longer (capped)."""
        backoff = wait_exponential(multiplier=self.backoff_s, max=2.0)(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after_s", None)
        return max(backoff, min(asked, MAX_RETRY_AFTER_S)) if asked else backoff

    def _post(self, sink: _Sink, body: dict[str, Any], *, event: str) -> None:
        answer, attempts = Answer(0), 0
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True, wait=self._wait,
                                    sleep=self._sleep, retry=retry_if_exception_type(_Retry)):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    try:
                        got = self._send(sink.url, body, self.timeout_s)
                    except OSError as exc:  # requests' errors are OSErrors too; their text holds the URL
                        raise _Retry(type(exc).__name__, cause=failure_cause(exc)) from None
                    answer = got if isinstance(got, Answer) else Answer(int(got))
                    if answer.status >= 500 or answer.status == 429:
                        raise _Retry(f"HTTP {answer.status}", answer.retry_after_s)
        except _Retry as exc:
            self._count("failed")
            kept = self._kept(sink, event, body)  # a receiver down for a minute: posted again at the next resend
            self.log.warning("notify.failed", notify_event=event, sink=sink.kind, host=sink.host, error=str(exc),
                             attempts=attempts, **({"detail": answer.error} if answer.error else {}),
                             **({"cause": exc.cause} if exc.cause else {}),
                             **({"kept": True} if kept else {}))
            return
        except Exception as exc:  # noqa: BLE001 - a broken sender is logged, not raised
            self._count("failed")
            self.log.warning("notify.failed", notify_event=event, sink=sink.kind, host=sink.host,
                             error=type(exc).__name__, attempts=attempts)
            return
        with self._cond:
            again = sink.resending.pop(id(body), None) is not None
        # Slack answers "ok"; a 2xx that carries one of its error words did not post the message
        if 200 <= answer.status < 300 and not (sink.kind == "slack" and answer.error):
            self._count("sent")
            self.log.info("notify.sent", notify_event=event, sink=sink.kind, host=sink.host, status=answer.status,
                          attempts=attempts, **({"resent": True} if again else {}))
        else:  # 3xx/4xx: the request is wrong (or the hook revoked); repeating it will not help
            self._count("failed")
            self.log.warning("notify.rejected", notify_event=event, sink=sink.kind, host=sink.host,
                             status=answer.status, **({"detail": answer.error} if answer.error else {}))


class _HttpSender:
    """The default sender: one requests.Session per URL's thread (a Session is not shared across threads).

    The answer's body is not read (`stream=True`, closed unread: a receiver that answers 200 and streams
    held the post until a pause as long as the timeout, then it was posted again), except a short one of
    one (a Content-Length of 64 bytes at most): Slack's error word. The whole post, connection to that word,
    ends within `within_s` (None: twice the timeout, a connect and an answer), however slowly the receiver
    sends its answer (`canary.notify_http`: `AnswerTooSlow`, retried as a timeout; decision 721)."""

    def __init__(self, within_s: float | None = None) -> None:
        self._local = threading.local()
        self.within_s = within_s

    def __call__(self, url: str, body: dict[str, Any], timeout: float) -> Answer:
        from canary.notify_http import AnswerTooSlow, Deadline, watched_session  # only the worker threads pay

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = watched_session()
        data = json.dumps(body, allow_nan=False).encode()
        within = self.within_s if self.within_s is not None else 2 * timeout
        with Deadline(within) as deadline:
            try:
                with session.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=timeout,
                                  allow_redirects=False, stream=True) as r:
                    error = ""
                    size = r.headers.get("Content-Length", "")
                    if size.isdigit() and 0 < int(size) <= 64:
                        word = r.raw.read(int(size)).decode("ascii", "replace").strip()
                        error = word if re.fullmatch(r"[a-z][a-z_]{1,60}", word) and word != "ok" else ""
                    status, after = int(r.status_code), r.headers.get("Retry-After")
            except Exception:
                if deadline.passed:  # the socket was shut at the deadline: said as that, not as what it broke
                    raise AnswerTooSlow(f"no whole answer within {within:g} s") from None
                raise
        return Answer(status, retry_after_s(after, time.time()), error)


def retry_after_s(value: str | None, now: float) -> float | None:
    """A `Retry-After` header's wait in seconds: its delta-seconds, or its HTTP date less `now` (a Unix time; 0
    for a date past); None when it asks nothing (absent, neither form, not finite). RFC 9110 allows both forms,
    and a receiver behind a gateway or a CDN often sends the date (decision 541: the retraining webhook's 429;
    an alert's read it as no advice before)."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; one without a zone is read so too
            from datetime import timezone

            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _bad_url(url: str) -> str:
    """Why `url` cannot be posted to ("" when it can), found before any traffic moves."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return "is not a valid URL (its port?)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL (scheme://host/...)"
    if any(c.isspace() for c in url):
        return "contains white space"
    # an '@' after the host, or a name@ before it: posted to a host the person who wrote it did not see (decision
    # 1003; the same rule as the Prometheus URL's and the retraining webhook's)
    return unseen_host(url)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _split(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


__all__ = ["Notifier", "EVENTS", "CRITICAL", "Answer", "end_events", "event_id", "payload_for", "webhook_body", "slack_body", "slack_line"]

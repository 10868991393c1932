"""Outbound notifications: generic JSON webhooks and Slack incoming webhooks.

Why this exists: a rollback at 3 a.m. should reach people (Slack) and machines
(a retraining pipeline listening for `prediction_shift`) without the
controller ever waiting on them. `Notifier.notify()` only puts the event on a
bounded in-memory queue; one background thread delivers it. When the queue
is full the *oldest* event is dropped and counted (`dropped`): a burst of
stale news must not hold back the newest, and nothing here may block or
raise into a rollback. Delivery is best effort: a process that dies loses its
queue (the rollout's state and Kubernetes Events remain the record).

Events: "rollback", "promotion", "prediction_shift" (a prediction-shift
breach), "aborted". A rollout the sweep ends because its owner is gone
(`canary.sweep`) is "aborted" (stable 100%) or "promotion" (finished), with
`rollout` its VirtualService and the reason "abandoned: ..." / "orphaned: ...".

Generic webhook: ``POST`` with ``Content-Type: application/json``::

    {"event": "rollback",                   # one of the events above
     "model": "rec-model", "namespace": "ml", "rollout": "rec-model",   # the CanaryRollout (sweep: VirtualService)
     "stable_version": "v2.0.0", "canary_version": "v2.1.0",
     "weights": {"stable": 100, "canary": 0},      # after the action; null if unknown
     "reason": "latency-p95: p95 94.1 ms vs 61.2 ms (+54%, limit +20%) ...",
     "evidence": [{"check": "latency-p95", "outcome": "fail", "p_value": 3e-09, ...}],  # CheckResult.to_dict()
     "at": "2025-01-31T03:12:09.120Z"}             # UTC, ISO 8601

Unknown numbers (NaN, inf) are ``null``. Slack gets ``{"text": <one line>,
"blocks": [<section: the line>, <section: fields>]}``.

Delivery: up to ``retries`` re-tries (tenacity, short exponential backoff) on
connection errors, timeouts, 5xx and 429; other 4xx are not re-tried (the
request itself is wrong). URLs come from flags or ``CANARY_WEBHOOK_URLS`` /
``CANARY_SLACK_WEBHOOK_URLS`` (comma-separated). A Slack URL *is* its secret,
so logs carry only the host, never a path, query or raw exception text.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from canary import logs
from canary.errors import ConfigError
from canary.model import CheckResult, Verdict, Weights

EVENTS = ("rollback", "promotion", "prediction_shift", "aborted")
ENV_WEBHOOKS, ENV_SLACK = "CANARY_WEBHOOK_URLS", "CANARY_SLACK_WEBHOOK_URLS"
Sender = Callable[[str, dict[str, Any], float], int]  # (url, JSON body, timeout_s) -> HTTP status; may raise OSError


class _Retry(Exception):
    """A delivery attempt worth repeating (connection error, timeout, 5xx, 429)."""


class Notifier:
    """Non-blocking fan-out of rollout events to webhooks and Slack."""

    def __init__(self, *, webhooks: Sequence[str] = (), slack: Sequence[str] = (), timeout_s: float = 3.0,
                 retries: int = 2, sender: Sender | None = None, max_queue: int = 100,
                 backoff_s: float = 0.25) -> None:
        for name, urls in (("webhook", webhooks), ("slack", slack)):
            for i, url in enumerate(urls):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ConfigError(f"{name} URL #{i + 1} is not an http(s) URL")  # the URL itself may be a secret
        self.webhooks, self.slack = list(webhooks), list(slack)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, max(0, retries), backoff_s
        self._send: Sender = sender or _HttpSender()
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._max = max(1, max_queue)
        self._cond = threading.Condition()
        self._busy = self._closing = False
        self._thread: threading.Thread | None = None
        self.sent = self.failed = self.dropped = 0  # deliveries (one per URL) and events dropped when full
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
        return bool(self.webhooks or self.slack)

    def __repr__(self) -> str:
        return f"Notifier(webhooks={[_host(u) for u in self.webhooks]}, slack={[_host(u) for u in self.slack]})"

    def notify(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue one event for delivery and return at once. Never raises, never blocks."""
        try:
            if not self.enabled:
                return
            try:
                snapshot = copy.deepcopy(dict(payload))  # the caller may mutate its dict after we return
            except Exception:  # noqa: BLE001 - an uncopyable field must not lose the event
                snapshot = dict(payload)
            with self._cond:
                if self._closing:
                    self.log.warning("notify.dropped", notify_event=event, why="closed")
                    return
                if len(self._queue) >= self._max:
                    old, _ = self._queue.popleft()
                    self.dropped += 1
                    self.log.warning("notify.dropped", notify_event=old, why="queue full", dropped=self.dropped)
                self._queue.append((event, snapshot))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="canary-notify", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - a notification must never break a rollback
            self.log.error("notify.internal_error", error=type(exc).__name__)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting events and wait up to `timeout` s for the queue to drain. True when drained."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            drained = self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)
        if self._thread is not None and drained:
            self._thread.join(timeout=1.0)
        return bool(drained)

    # ---- worker --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return  # closing and drained
                event, payload = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(event, payload)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one bad event
                self.log.error("notify.internal_error", notify_event=event, error=type(exc).__name__)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, event: str, payload: dict[str, Any]) -> None:
        generic = webhook_body(event, payload)
        for url in self.webhooks:
            self._post(url, generic, event=event, sink="webhook")
        if self.slack:
            body = slack_body(event, payload)
            for url in self.slack:
                self._post(url, body, event=event, sink="slack")

    def _post(self, url: str, body: dict[str, Any], *, event: str, sink: str) -> None:
        host, status, attempts = _host(url), 0, 0
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                    wait=wait_exponential(multiplier=self.backoff_s, max=2.0),
                                    retry=retry_if_exception_type(_Retry)):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    try:
                        status = self._send(url, body, self.timeout_s)
                    except OSError as exc:  # requests' errors are OSErrors too; their text holds the URL
                        raise _Retry(type(exc).__name__) from None
                    if status >= 500 or status == 429:
                        raise _Retry(f"HTTP {status}")
        except _Retry as exc:
            self.failed += 1
            self.log.warning("notify.failed", notify_event=event, sink=sink, host=host, error=str(exc), attempts=attempts)
            return
        except Exception as exc:  # noqa: BLE001 - a broken sender is logged, not raised
            self.failed += 1
            self.log.warning("notify.failed", notify_event=event, sink=sink, host=host, error=type(exc).__name__,
                             attempts=attempts)
            return
        if 200 <= status < 300:
            self.sent += 1
            self.log.info("notify.sent", notify_event=event, sink=sink, host=host, status=status, attempts=attempts)
        else:  # 3xx/4xx: the request is wrong (or the hook revoked); repeating it will not help
            self.failed += 1
            self.log.warning("notify.rejected", notify_event=event, sink=sink, host=host, status=status)


class _HttpSender:
    """The default sender: one requests.Session, used only by the worker thread."""

    def __init__(self) -> None:
        self._session: Any = None

    def __call__(self, url: str, body: dict[str, Any], timeout: float) -> int:
        import requests  # only the worker thread pays for it

        if self._session is None:
            self._session = requests.Session()
        data = json.dumps(body, allow_nan=False).encode()
        r = self._session.post(url, data=data, headers={"Content-Type": "application/json"},
                               timeout=timeout, allow_redirects=False)
        r.close()
        return int(r.status_code)


# ---- payloads ------------------------------------------------------------------------


def payload_for(state: Any, *, namespace: str, rollout: str, evidence: Sequence[Any] | None = None) -> dict[str, Any]:
    """A notify() payload from a RolloutState; evidence defaults to its last verdict's fail/error results."""
    if evidence is None:
        results = (state.last_verdict or {}).get("results", [])
        evidence = [r for r in results if isinstance(r, dict) and r.get("outcome") in ("fail", "error")]
    return {"model": state.model, "namespace": namespace, "rollout": rollout, "stable_version": state.stable_version,
            "canary_version": state.canary_version, "weights": state.weights, "reason": state.reason,
            "evidence": list(evidence), "at": state.updated_at or None}


def webhook_body(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The generic webhook's JSON object (format in the module docstring)."""
    p = payload
    return _json_safe({
        "event": event, "model": str(p.get("model", "")), "namespace": str(p.get("namespace", "")),
        "rollout": str(p.get("rollout", "")), "stable_version": str(p.get("stable_version", "")),
        "canary_version": str(p.get("canary_version", "")), "weights": _weights(p.get("weights")),
        "reason": str(p.get("reason", "")), "evidence": _evidence(p.get("evidence")), "at": _iso(p.get("at")),
    })


_ICONS = {"rollback": ":rotating_light:", "aborted": ":warning:", "promotion": ":white_check_mark:",
          "prediction_shift": ":chart_with_upwards_trend:"}


def slack_line(event: str, payload: Mapping[str, Any]) -> str:
    """One line on-call reads in the channel, e.g. ':rotating_light: rollback rec-model v2.1.0 -> stable 100%: ...'."""
    b = webhook_body(event, payload)
    model, canary, stable = b["model"], b["canary_version"], b["stable_version"]
    reason = _trim(b["reason"], 300)
    head = {"rollback": f"rollback {model} {canary} -> stable 100%",
            "aborted": f"aborted {model} {canary} -> stable 100%",
            "promotion": f"promoted {model} {canary} (replaces {stable})",
            "prediction_shift": f"prediction shift {model} {canary} vs {stable}"}.get(event, f"{event} {model} {canary}")
    line = f"{_ICONS.get(event, ':information_source:')} {head}" + (f": {reason}" if reason else "")
    return _esc(line)


def slack_body(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: the line as `text` (notifications) and blocks with the details."""
    b = webhook_body(event, payload)
    line = slack_line(event, payload)
    w = b["weights"]
    fields = [("Model", b["model"]), ("Rollout", f"{b['namespace']}/{b['rollout']}"),
              ("Stable", b["stable_version"]), ("Canary", b["canary_version"]),
              ("Weights", f"stable {w['stable']}% / canary {w['canary']}%" if w else "unknown"), ("Event", event)]
    for ev in b["evidence"][:4]:  # Slack allows 10 fields per section
        if isinstance(ev, dict):
            fields.append((str(ev.get("check", "check")), f"{ev.get('outcome', '')}: {ev.get('reason', '')}"))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": line}},
              {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{_esc(k)}*\n{_esc(_trim(v, 500))}"}
                                             for k, v in fields]}]
    return {"text": line, "blocks": blocks}


def _weights(w: Any) -> dict[str, int] | None:
    if isinstance(w, Weights):
        return {"stable": w.stable, "canary": w.canary}
    if isinstance(w, Mapping) and "stable" in w and "canary" in w:
        return {"stable": int(w["stable"]), "canary": int(w["canary"])}
    if isinstance(w, str) and "/" in w:  # the "90/10" form the log lines use
        s, c = w.split("/", 1)
        return {"stable": int(s), "canary": int(c)}
    return None


def _evidence(ev: Any) -> list[Any]:
    if ev is None:
        return []
    if isinstance(ev, Verdict):
        ev = ev.results
    if isinstance(ev, (CheckResult, Mapping)):
        ev = [ev]
    return [e.to_dict() if isinstance(e, CheckResult) else e for e in ev]


def _iso(at: Any) -> str:
    if isinstance(at, str) and at:
        return at
    t = datetime.fromtimestamp(at, tz=timezone.utc) if isinstance(at, (int, float)) else datetime.now(timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_safe(v: Any) -> Any:
    """NaN/inf -> None; anything JSON cannot hold -> its str()."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_json_safe(x) for x in v]
    return str(v)


def _esc(text: str) -> str:
    """Slack mrkdwn control characters ('p < 0.05' must not open a link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _trim(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _split(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


__all__ = ["Notifier", "EVENTS", "payload_for", "webhook_body", "slack_body", "slack_line"]

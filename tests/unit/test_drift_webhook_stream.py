"""Retraining webhooks as receivers answer them (decision 134, an attacker's finding): one that answers at once
and keeps its connection open, one that does not answer in time, one behind a redirect.

`--retrain-webhook` POSTed the evidence and read the whole answer: a receiver that answers 200 at once and
then streams its progress (a CI "trigger and follow" endpoint, a proxy that holds the body) kept the POST
open until its 5 s read timeout ran out between two chunks, or for ever while it kept sending: the trigger
counted as failed (`drift.retrain_failed`), and was sent again 30 s later, so one drift started retraining
again and again on a receiver that keeps no idempotency keys; a receiver that kept sending held the whole
watch (every model's evaluations) for as long as it sent. The answer's status line is the answer: the body
is not read. A real HTTP server on 127.0.0.1 that never sends the body it announces.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from canary.drift import monitor as M
from tests.support.http import serving


@pytest.fixture()
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    posts: list[dict[str, Any]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            posts[-1]["header"] = self.headers.get("Idempotency-Key")
            if self.path.endswith("/hold"):  # reads the request, answers nothing (until the test ends)
                release.wait(60)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")  # a body announced, streamed later (never, here)
            self.end_headers()
            self.wfile.write(b"retraining started\n")
            self.wfile.flush()
            release.wait(60)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/retrain", posts
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_webhook_that_answers_200_and_keeps_streaming_is_one_retraining(
        monkeypatch: pytest.MonkeyPatch, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    import pyarrow as pa
    from structlog.testing import capture_logs

    from canary.drift import watch as W
    from canary.drift.profile import capture

    url, posts = receiver
    prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv", sha256="0" * 64)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0,
                                                                   "missing": 0}})
    t = [1_800_000_000.0]
    w = W.DriftWatcher([prof], client=None, window_s=3_600, retrain_webhook=url, clock=lambda: t[0],
                       config=M.MonitorConfig(enter_after=1, quiet_s=0, retry_s=30))
    with capture_logs() as logs:
        for _ in range(4):  # the episode opens; later evaluations, past every retry delay, send nothing more
            w.once()
            t[0] += 3_600
    assert len(posts) == 1 and posts[0]["episode"] == 1 and posts[0]["idempotency_key"].startswith("rec/v2/episode-1/")
    # the same key as the IETF Idempotency-Key header (a structured-field string: quoted), for receivers
    # and gateways that deduplicate on the header without reading the body
    assert posts[0]["header"] == f'"{posts[0]["idempotency_key"]}"'
    events = [e["event"] for e in logs if e["event"].startswith("drift.retrain")]
    assert events == ["drift.retrain_triggered"], events
    assert w.states["rec/v2"].trigger == "done"


def test_a_webhook_that_does_not_answer_in_time_is_said_to_have_maybe_acted(
        receiver: tuple[str, list[dict[str, Any]]]) -> None:
    """A receiver slower than the POST's 5 s: `drift.retrain_failed` said only "ReadTimeout:
    HTTPConnectionPool(...): Read timed out.", and on-call could not tell that the receiver may have started
    the retraining, nor that the retry is deduplicated by its idempotency_key (which it names now)."""
    from structlog.testing import capture_logs

    from canary.drift import watch as W

    url, posts = receiver
    w = W.DriftWatcher([], client=None, window_s=3_600, retrain_webhook=url + "/hold", config=M.MonitorConfig())
    state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending",
                           evidence={"at": 1_800_000_000.0})
    with capture_logs() as logs:
        after = w._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    assert len(posts) == 1 and after.trigger == "pending" and after.trigger_attempts == 1
    (failed,) = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert "no answer within 5 s" in failed["message"] and "may have started the retraining" in failed["message"]
    assert "rec/v2/episode-1/1800000000.0" in failed["message"] and "/hold" in failed["message"]


@pytest.fixture()
def redirecting() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """/moved answers a POST 301 to /final, /kept 308 to /final; /final answers 200 to a GET or a POST."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            seen.append((method, self.path))
            if method == "POST":
                self.rfile.read(int(self.headers["Content-Length"]))
            code = {"/moved": 301, "/kept": 308}.get(self.path, 200)
            self.send_response(code)
            if code != 200:
                self.send_header("Location", "/final")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url, seen


def test_a_webhook_redirect_that_turns_the_post_into_a_get_is_a_failed_trigger(
        redirecting: tuple[str, list[tuple[str, str]]]) -> None:
    """An http:// webhook behind an ingress that redirects to https:// with a 301: the client re-sent it
    as a GET without the request, the HTTPS page answered 200, and `drift.retrain_triggered` said the
    retraining had started; nothing had received it. Now a failed trigger naming where to send it (retried,
    reported); a 308 (the POST kept) is followed as before."""
    from structlog.testing import capture_logs

    from canary.drift import watch as W

    url, seen = redirecting
    state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending",
                           evidence={"at": 1_800_000_000.0})
    with capture_logs() as logs:
        after = W.DriftWatcher([], client=None, window_s=3_600, retrain_webhook=url + "/moved",
                               config=M.MonitorConfig())._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    assert after.trigger == "pending" and seen == [("POST", "/moved"), ("GET", "/final")]
    assert not [e for e in logs if e["event"] == "drift.retrain_triggered"]
    (failed,) = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert f"HTTP 301, a redirect to {url}/final: the retraining POST was not delivered" in failed["message"]

    seen.clear()
    with capture_logs() as logs:
        after = W.DriftWatcher([], client=None, window_s=3_600, retrain_webhook=url + "/kept",
                               config=M.MonitorConfig())._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    assert after.trigger == "done" and seen == [("POST", "/kept"), ("POST", "/final")]
    assert [e["event"] for e in logs if e["event"].startswith("drift.retrain")] == ["drift.retrain_triggered"]


def test_a_failed_webhook_says_nothing_of_its_token() -> None:
    """urllib3 names the URL it could not reach, query included: `drift.retrain_failed` (the log, a Kubernetes
    Event, Slack) carried `?token=...` of a `--retrain-webhook` URL, whose own name in the line was already
    shown without it."""
    import socket

    from structlog.testing import capture_logs

    from canary.drift import watch as W

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://bot:pa55word@127.0.0.1:{s.getsockname()[1]}/retrain?token=s3cret-t0ken"
        w = W.DriftWatcher([], client=None, window_s=3_600, retrain_webhook=url, config=M.MonitorConfig())
        state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending", evidence={"at": 1.0})
        with capture_logs() as logs:
            w._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    (failed,) = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert "ConnectionError" in failed["message"] and "/retrain?..." in failed["message"], failed["message"]
    assert "s3cret" not in str(failed) and "pa55word" not in str(failed)


def test_a_webhook_that_answers_409_for_a_key_in_progress_is_a_retraining_started() -> None:
    """The first POST got no answer within 5 s (the receiver was starting the retraining); the retry carries the
    same Idempotency-Key, and a receiver that keeps keys answers 409 Conflict while that request is in progress
    (the IETF draft's answer). It was read as a failure: `drift.retrain_failed`, retried every backoff and told to
    people while the retraining ran. Now the trigger is done, said as recovered (decision 530)."""
    from structlog.testing import capture_logs

    from canary.drift import watch as W

    keys: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            keys.append(self.headers.get("Idempotency-Key"))
            self.send_response(409)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        w = W.DriftWatcher([], client=None, window_s=3_600, config=M.MonitorConfig(), retrain_webhook=url + "/retrain")
        state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending", trigger_attempts=1,
                               evidence={"at": 1_800_000_000.0})
        with capture_logs() as logs:
            after = w._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    assert keys == ['"rec/v2/episode-1/1800000000.0"'] and after.trigger == "done"
    events = [e["event"] for e in logs if e["event"].startswith("drift.retrain")]
    assert events == ["drift.retrain_triggered", "drift.retrain_recovered"], events
    (said,) = [e for e in logs if e["event"] == "drift.retrain_triggered"]
    assert "409 Conflict: a request with this idempotency key is already there" in said["message"], said["message"]


@pytest.fixture()
def limited() -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """A receiver that answers each POST with `answers`' next (status, Retry-After or None), then 200."""
    got: list[str] = []
    script: dict[str, Any] = {"answers": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["idempotency_key"])
            status, after = script["answers"].pop(0) if script["answers"] else (200, None)
            self.send_response(status)
            if after is not None:
                self.send_header("Retry-After", after)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url + "/retrain", got, script


def test_a_429s_retry_after_is_waited_before_the_retraining_is_posted_again(
        monkeypatch: pytest.MonkeyPatch, limited: tuple[str, list[str], dict[str, Any]]) -> None:
    """A receiver's rate limit (429, `Retry-After: 600`): the trigger came back at the backoff's 30 s, 60 s,
    120 s ... and met the limit again, each failure logged and told to people. Now the retry is due when the receiver
    asked (decision 541), and the evaluations before it (past the 30 s backoff) post nothing."""
    import pyarrow as pa
    from structlog.testing import capture_logs

    from canary.drift import watch as W
    from canary.drift.profile import capture

    url, posts, script = limited
    script["answers"] = [(429, "600")]
    prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv", sha256="0" * 64)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0,
                                                                   "missing": 0}})
    t0 = 1_800_000_000.0
    t = [t0]
    w = W.DriftWatcher([prof], client=None, window_s=3_600, retrain_webhook=url, clock=lambda: t[0],
                       config=M.MonitorConfig(enter_after=1, quiet_s=0, retry_s=30))
    with capture_logs() as logs:
        w.once()  # the episode opens; its POST is answered 429
        assert len(posts) == 1 and w.states["rec/v2"].trigger_due == t0 + 600
        for later in (300, 450, 599):  # past the backoff, before the receiver's time: nothing posted
            t[0] = t0 + later
            w.once()
        assert len(posts) == 1 and w.states["rec/v2"].trigger == "pending"
        t[0] = t0 + 600
        w.once()
    assert len(posts) == 2 and posts[0] == posts[1] and w.states["rec/v2"].trigger == "done"
    (failed,) = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert "HTTP 429, Retry-After 600 s" in failed["message"] and "retrying in 600s" in failed["message"], failed


@pytest.mark.parametrize("status, after, wait", [
    (429, "120", 120.0),
    (429, "date+120", 120.0),  # the HTTP-date form (RFC 9110), read against the watcher's clock
    (429, "86400", 1_800.0),  # a day asked: the backoff's ceiling (MonitorConfig.retry_max_s), then tried again
    (429, "10", 30.0),  # shorter than the backoff: the backoff
    (503, "90", 90.0),  # an overloaded receiver's 503 says it too
    (429, "soon", 30.0),  # neither form: the backoff
    (400, "120", 30.0),  # no retry is asked by a 400
])
def test_the_retry_waits_the_longer_of_the_backoff_and_retry_after_at_most_its_ceiling(
        limited: tuple[str, list[str], dict[str, Any]], status: int, after: str, wait: float) -> None:
    from email.utils import formatdate

    from canary.drift import watch as W

    url, posts, script = limited
    now = 1_800_000_000.0
    script["answers"] = [(status, formatdate(now + 120, usegmt=True) if after == "date+120" else after)]
    w = W.DriftWatcher([], client=None, window_s=3_600, retrain_webhook=url, clock=lambda: now,
                       config=M.MonitorConfig(retry_s=30, retry_max_s=1_800))
    state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending", evidence={"at": now})
    after_state = w._act(state, [M.Trigger(1, state.evidence)], [], "ml")
    assert len(posts) == 1 and after_state.trigger == "pending" and after_state.trigger_attempts == 1
    assert after_state.trigger_due == now + wait
    # kept across a restart, and by `rebase` (a clock stepped back cuts a later due time, never the asked one)
    stored = M.MonitorState.from_dict(after_state.to_dict())
    assert M.rebase(stored, now + 1, w.config).trigger_due == now + wait

"""A drift alert whose notification failed (Slack down for a minute) is posted again at the next pass (decision 160).

A notification gets 3 quick attempts (a quarter of a second apart); the stored outbox counts an alert delivered
once it is handed to the notifier, so a `drift_started` that met a Slack restart was lost for good: the episode
opened, its retraining ran, and the channel never heard of it. Real HTTP receiver on 127.0.0.1 that answers 503
while "down"; the live counts are the test's (as test_drift_retrain_reports.py), the clock is the test's.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import pytest
from structlog.testing import capture_logs

from canary.drift import monitor as M
from tests.support.http import serving


@pytest.fixture()
def receiver() -> Iterator[tuple[str, dict[str, Any]]]:
    seen: dict[str, Any] = {"down": True, "tries": [], "got": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["tries"].append(body)
            if not seen["down"]:
                seen["got"].append(body)
            self.send_response(503 if seen["down"] else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield f"{base}/hook", seen


def _settled(notifier: Any, done: int) -> None:
    """Until the notifier has finished `done` deliveries (sent or failed): its worker thread posts them."""
    deadline = time.monotonic() + 30
    while notifier.sent + notifier.failed < done:
        assert time.monotonic() < deadline, (notifier.sent, notifier.failed)
        time.sleep(0.01)


def test_a_drift_alert_slack_failed_is_posted_again_at_the_next_pass_with_its_id(
        monkeypatch: pytest.MonkeyPatch, receiver: tuple[str, dict[str, Any]]) -> None:
    import pyarrow as pa

    from canary.drift import watch as W
    from canary.drift.profile import capture
    from canary.notify import Notifier

    url, seen = receiver
    prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv", sha256="0" * 64)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0,
                                                                   "missing": 0}})
    t = [1_800_000_000.0]
    notifier = Notifier(webhooks=[url], retries=2, sleep=lambda _s: None)
    w = W.DriftWatcher([prof], client=None, window_s=3_600, clock=lambda: t[0], notifier=notifier,
                       config=M.MonitorConfig(enter_after=1, quiet_s=0))
    with capture_logs() as logs:
        w.once()  # the episode opens; Slack is down: 3 attempts, all 503
        _settled(notifier, 1)
        notifier.notify("rollback", {"model": "rec", "reason": "r", "at": t[0]})  # a rollout's: not kept
        _settled(notifier, 2)
        assert [b["event"] for b in seen["tries"]] == ["drift_started"] * 3 + ["rollback"] * 3
        seen["down"] = False
        t[0] += 300
        w.once()  # the next pass: posted again
        _settled(notifier, 3)
    assert notifier.close(timeout=10)
    assert [b["event"] for b in seen["got"]] == ["drift_started"], seen["got"]
    assert seen["got"][0]["id"] == seen["tries"][0]["id"]  # the same post: a receiver keeping ids acts once
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert [(e["notify_event"], e.get("kept")) for e in failed] == [("drift_started", True), ("rollback", None)]
    (sent,) = [e for e in logs if e["event"] == "notify.sent"]
    assert sent["notify_event"] == "drift_started" and sent["resent"] is True


def test_a_kept_alert_still_undelivered_at_exit_is_said(receiver: tuple[str, dict[str, Any]]) -> None:
    """Kept in the process only: one still failing when the watch exits is named by `notify.undelivered`."""
    from canary.notify import Notifier

    url, seen = receiver
    notifier = Notifier(webhooks=[url], retries=0)
    with capture_logs() as logs:
        notifier.notify("drift_started", {"model": "rec", "reason": "r", "at": 1.0})
        _settled(notifier, 1)
        assert not notifier.close(timeout=1)
    (left,) = [e for e in logs if e["event"] == "notify.undelivered"]
    assert left["undelivered"][0]["events"] == ["drift_started"]


def test_a_kept_alert_is_given_up_after_a_day() -> None:
    """Posted again at every pass for up to a day (KEEP_FAILED_S), then dropped and said (`notify.dropped`)."""
    from canary.notify import KEEP_FAILED_S, Notifier

    now = [0.0]
    notifier = Notifier(webhooks=["http://127.0.0.1:9/hook"], retries=0, clock=lambda: now[0],
                        sender=lambda *_a: 503)
    with capture_logs() as logs:
        notifier.notify("drift_started", {"model": "rec", "reason": "r", "at": 1.0})
        _settled(notifier, 1)
        now[0] = KEEP_FAILED_S - 1
        assert notifier.resend() == 1
        _settled(notifier, 2)
        now[0] = KEEP_FAILED_S + 1  # a day since its first failure, not since the last
        assert notifier.resend() == 0
    assert notifier.close(timeout=5)
    (dropped,) = [e for e in logs if e["event"] == "notify.dropped"]
    assert dropped["why"] == "undelivered for 24 h" and dropped["notify_event"] == "drift_started"

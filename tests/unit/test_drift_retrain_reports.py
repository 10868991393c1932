"""A retraining webhook that fails for a while, as on-call hears of it (decision 153).

Every failed attempt was a Kubernetes Event and a notification (at the 30 min cap, 48 a day for one receiver
down over a weekend), all with one webhook `id` (the episode's start: a receiver that keeps the ids it acted
on dropped every one after the first), and the success that ended them was a log line only: Slack held the
failures as the last word. Real HTTP receivers on 127.0.0.1 (the retraining webhook, a notification webhook);
the clock is the test's.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import pytest

from canary.drift import monitor as M
from tests.support.http import serving

FAILURES = 9  # the retraining webhook answers 500 this many times, then 200


@pytest.fixture()
def receivers() -> Iterator[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]]:
    retrains: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/retrain":
                retrains.append(body)
                code = 500 if len(retrains) <= FAILURES else 200
            else:
                notes.append(body)
                code = 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield f"{base}/retrain", f"{base}/notify", retrains, notes


Receivers = tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]


def test_a_failing_retraining_webhook_is_reported_at_growing_intervals_and_its_recovery_too(
        monkeypatch: pytest.MonkeyPatch, receivers: Receivers) -> None:
    import pyarrow as pa
    from structlog.testing import capture_logs

    from canary.drift import watch as W
    from canary.drift.profile import capture
    from canary.notify import Notifier

    retrain_url, notify_url, retrains, notes = receivers
    prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv", sha256="0" * 64)
    monkeypatch.setattr(W, "live_counts", lambda *_a, **_k: {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0,
                                                                   "missing": 0}})
    t = [1_800_000_000.0]
    notifier = Notifier(webhooks=[notify_url], retries=0)
    w = W.DriftWatcher([prof], client=None, window_s=3_600, retrain_webhook=retrain_url, clock=lambda: t[0],
                       notifier=notifier, config=M.MonitorConfig(enter_after=1, quiet_s=0, retry_s=30,
                                                                 retry_max_s=1_800))
    with capture_logs() as logs:
        for _ in range(FAILURES + 3):  # each pass past the longest retry delay: one attempt a pass
            w.once()
            t[0] += 1_800
    assert notifier.close(timeout=10)
    assert len(retrains) == FAILURES + 1 and len({r["idempotency_key"] for r in retrains}) == 1  # one episode
    assert w.states["rec/v2"].trigger == "done"
    failed = [e for e in logs if e["event"] == "drift.retrain_failed"]
    assert [e["attempt"] for e in failed] == list(range(1, FAILURES + 1))  # the log has every attempt
    assert "notifications at attempt 2 next" in failed[0]["message"]
    assert "notifications at attempt 16 next" in failed[8]["message"]
    (recovered,) = [e for e in logs if e["event"] == "drift.retrain_recovered"]
    assert recovered["failed_attempts"] == FAILURES and "after 9 failed attempts: webhook" in recovered["message"]
    # people hear of the 1st, 2nd, 4th and 8th failure, and of the success that ended them
    events = [n["event"] for n in notes]
    assert events == ["drift_started"] + ["drift_retrain_failed"] * 4 + ["drift_retrain_recovered"], events
    told = [n for n in notes if n["event"] == "drift_retrain_failed"]
    assert ["(attempt 1)" in told[0]["reason"], "(attempt 2)" in told[1]["reason"], "(attempt 4)" in told[2]["reason"],
            "(attempt 8)" in told[3]["reason"]] == [True] * 4
    # each its own id (the attempt's time), so a receiver that keeps the ids it acted on drops none of them
    assert len({n["id"] for n in notes}) == len(notes)


def test_an_unreported_failure_kept_in_the_outbox_stays_unreported() -> None:
    """`notify` and `at` survive the stored outbox (an alert stored and delivered by a later evaluation)."""
    state = M.MonitorState("rec", "v2", phase=M.DRIFTING, episode=1, trigger="pending", trigger_attempts=2,
                           evidence={"at": 1.0})
    state, (alert,) = M.trigger_result(state, False, 100.0, M.MonitorConfig())
    assert alert.fields == {"attempt": 3} and not alert.notify and alert.at == 100.0
    held = M.MonitorState.from_dict(json.loads(json.dumps(M.hold(state, [alert]).to_dict())))
    assert M.unsent(held) == [alert]


@pytest.mark.parametrize("url,says", [("htp://ci/retrain", "not an http(s) URL"), ("", "not an http(s) URL"),
                                      ("http://ci:99999/retrain?token=s3cret", "not a valid URL"),
                                      ("http://ci/re train", "white space"),
                                      # taken as host `ops`, port 1234, path `/s3cret@ci/...`: posted to the
                                      # wrong host and the "password" shown as its path (decision 975)
                                      ("http://ops:1234/s3cret@ci/retrain", "'@' after its host"),
                                      # posted to evil.example with `ci.example` as a user name (decision 1003)
                                      ("http://ci.example@evil.example/retrain", "no password (name@host)")])
def test_a_malformed_retraining_webhook_is_refused_at_start(tmp_path: Any, url: str, says: str) -> None:
    """Decision 153: `--retrain-webhook` was not checked until the first drift episode POSTed to it, weeks
    later perhaps: then `drift.retrain_failed` for ever; an empty one (`--retrain-webhook=$(URL)` with URL
    unset) retrained nothing, silently (`drift.retrain_not_configured`). Exit 2 at start, naming the flag and
    never the URL (it may carry a token)."""
    import pyarrow as pa
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.profile import capture

    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version="v2", file="t.csv",
                                       sha256="0" * 64)))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof), "--prometheus-url", "http://127.0.0.1:9",
                                 "--no-kube", "--once", "--state-file", str(tmp_path / "s.json"),
                                 "--retrain-webhook", url])
    assert r.exit_code == 2 and "--retrain-webhook" in r.output and says in r.output, r.output
    assert "s3cret" not in r.output and "evil" not in r.output


def test_a_missing_values_alert_delivered_again_from_the_outbox_keeps_its_id(
        receivers: Receivers) -> None:
    """Decision 153: `drift.features_missing` carried no time of its own, so its notification's `at` (and `id`)
    was the moment it was posted: delivered again from the stored outbox (a process killed after alerting and
    before storing the emptied outbox: at least once), it had a new id, and a receiver keeping ids acted twice."""
    import time as _time

    from canary.drift import stats as D
    from canary.drift import watch as W
    from canary.notify import Notifier

    _, notify_url, _, notes = receivers
    f = D.FeatureDrift("age", "numeric", "wasserstein", 0.01, 0.1, False, 0.0, 5000, 900)
    gone = D.MissingShift("age", 0.01, 0.5, 1_000, True, p_value=1e-30)
    result = D.DatasetDrift(features=(f,), share=0.0, drifted=False, missing=(gone,))
    state, actions = M.step(M.MonitorState("rec", "v2"), result, 1_800_000_000.0, M.MonitorConfig(), window_s=3_600)
    assert [a.event for a in actions] == ["drift.features_missing"] and actions[0].at == 1_800_000_000.0
    stored = M.MonitorState.from_dict(json.loads(json.dumps(M.hold(state, actions).to_dict())))
    for _ in range(2):  # two processes deliver the same stored outbox
        notifier = Notifier(webhooks=[notify_url], retries=0)
        w = W.DriftWatcher([], client=None, window_s=3_600, notifier=notifier, clock=lambda: 1_800_000_600.0,
                           config=M.MonitorConfig())
        w._act(stored, M.unsent(stored), [], "ml")
        assert notifier.close(timeout=10)
        _time.sleep(0.01)  # the webhook's `at` is in milliseconds: two posts a moment apart
    assert [n["event"] for n in notes] == ["drift_features_missing"] * 2
    assert notes[0]["id"] == notes[1]["id"] and notes[0]["at"].startswith("2027-01-15T08:00:00")

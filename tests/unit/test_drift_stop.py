"""`DriftWatcher.once(act_stored=True)` (`drift watch` on SIGTERM, decision 134): a stop asked for while a
profile is evaluated ends the pass before the next profile, and what the evaluation stored is acted on. With
the controller's `keep_going` alone (a replica that may have lost its lease) it is held in the stored outbox
for the next evaluation: a `drift watch` being stopped for good has no next evaluation."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.drift import monitor as M


@pytest.mark.parametrize("act_stored", [True, False])
def test_a_stop_during_an_evaluation_acts_on_it_and_cuts_before_the_next(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, act_stored: bool) -> None:
    import pyarrow as pa

    from canary.drift import watch as W
    from canary.drift.profile import capture

    stop: list[bool] = []

    def live(*_a: Any, **_k: Any) -> dict[str, Any]:
        stop.append(True)  # the signal arrives while Prometheus is read
        return {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0, "missing": 0}}

    monkeypatch.setattr(W, "live_counts", live)
    profs = [capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version=v, file="t.csv", sha256="0" * 64)
             for v in ("v1", "v2")]
    posts: list[dict[str, Any]] = []
    w = W.DriftWatcher(profs, client=None, window_s=3_600, state_file=tmp_path / "s.json",
                       retrain_webhook="http://127.0.0.1:9/r", post=lambda _u, b: posts.append(b) or 200,
                       config=M.MonitorConfig(enter_after=1, quiet_s=0), clock=lambda: 1_800_000_000.0)
    with capture_logs() as logs:
        w.once(keep_going=lambda: "stopping" if stop else "", act_stored=act_stored)
    (cut,) = [e for e in logs if e["event"] == "drift.pass_cut"]
    assert cut["left"][-1] == "default/rec/v2" and len(stop) == 1
    stored = W.FileStateStore(tmp_path / "s.json").load()["rec/v1"]
    if act_stored:
        assert cut["held"] == "" and len(posts) == 1 and stored["trigger"] == "done" and stored["outbox"] == []
        assert [e["event"] for e in logs if e["event"] == "drift.started"] == ["drift.started"]
    else:  # the controller's: held for the next evaluation, whichever replica's
        assert cut["held"] == "default/rec/v1" and posts == [] and stored["trigger"] == "pending"
        assert [a["event"] for a in stored["outbox"]] == ["drift.started"]

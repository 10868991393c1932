"""A retraining trigger without `--state-file` (decision 134, an attacker's finding).

`drift watch --retrain-job/--retrain-webhook` without `--state-file` kept its episodes in memory: each
restart (a pod rescheduled, a crash loop) opened episode 1 again once the drift was read again and started
another retraining for the same drift (a Job renamed with a hash of the new start, a POST with a new
idempotency key), one per restart. It is refused now, exit 2, as `--once` without it is."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app


@pytest.mark.parametrize("trigger", [["--retrain-webhook", "http://127.0.0.1:9/retrain"],
                                     ["--retrain-job", "job.yaml"]])
def test_a_retraining_trigger_needs_a_state_file(tmp_path: Any, trigger: list[str]) -> None:
    args = ["drift", "watch", "--baseline", str(tmp_path / "absent.json"), "--prometheus-url", "http://127.0.0.1:9",
            *trigger, *([] if "--retrain-job" in trigger else ["--no-kube"])]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and f"{trigger[0]} needs --state-file" in r.output, r.output
    assert "another retraining for the same drift" in r.output

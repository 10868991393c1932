"""A rollout's end is in its history even when the end's history write fails.

The controller flushes a rollout's history (`canary.history_store`: the looks, the events, the weights;
what `canary report` reads) every few looks and at its end. A flush that fails keeps its records for
the next one (`history.write_failed` says `pending`), but the end's recorder was dropped as the rollout
ended: one 500 on that write and the ConfigMap held the rollout as still progressing at 20% with no
look, the rollback and the verdict behind it gone, and `canary report` said "Still in progress".
Against the strict API emulator and a real Prometheus, with watches and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import history_store
from canary import rollout as rl
from canary.controller import ENDED_HISTORY_TRIES
from tests.integration.test_controller_watch import create, prometheus, status, step, world  # noqa: F401
from tests.support.kube import fail_history_writes_once_ended

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("times", [1, 3])
def test_an_end_whose_history_write_failed_is_written_at_a_later_tick(world: Any, times: int) -> None:
    api, op, custom, clock = world
    failed = fail_history_writes_once_ended(api, "m0", times)
    create(api, 0, "v3")  # a slow canary: rolled back at its first step
    for _ in range(100):
        step(api, op, clock)
        if status(api, "r0").get("phase") in rl.TERMINAL:
            break
    assert status(api, "r0")["phase"] == rl.ROLLED_BACK
    for _ in range(30):  # the queue's backoff after each failed write: 0.5, 1, 2 s ...
        step(api, op, clock)
    assert len(failed) == times, failed
    cm = api.get("", "configmaps", "ml", "m0-canary-history")
    doc = history_store.read(cm["data"], where="m0-canary-history")
    assert doc["phase"] == rl.ROLLED_BACK and "latency-p95" in doc["reason"], (doc["phase"], doc["reason"])
    assert doc["looks"] and doc["looks"][-1]["o"] == "fail"
    assert [e["event"] for e in doc["events"]][-1] == "rollback.completed"
    assert "ml/r0" not in op._histories  # written: nothing kept


@pytest.mark.parametrize("code", [500, 403], ids=["failing for ever", "refused (RBAC)"])
def test_an_end_whose_history_cannot_be_written_is_given_up_once_and_said(world: Any, code: int) -> None:
    """A write that keeps failing is tried ENDED_HISTORY_TRIES times (the queue's backoff between), one the API
    refuses (403: no ConfigMap rights) once; then the records are dropped with one `history.end_unwritten`."""
    api, op, custom, clock = world
    failed = fail_history_writes_once_ended(api, "m0", 1000, code)
    create(api, 0, "v3")
    with capture_logs() as logs:
        for _ in range(100):
            step(api, op, clock)
            if status(api, "r0").get("phase") in rl.TERMINAL:
                break
        for _ in range(120):  # past the backoff's 10 s cap, ENDED_HISTORY_TRIES times
            step(api, op, clock)
    assert status(api, "r0")["phase"] == rl.ROLLED_BACK
    given_up = [e for e in logs if e["event"] == "history.end_unwritten"]
    assert len(given_up) == 1 and given_up[0]["rollout"] == "ml/r0", given_up
    assert given_up[0]["tries"] == (ENDED_HISTORY_TRIES if code == 500 else 1) and given_up[0]["pending"] > 0
    # the rewrite's one write a flush (its GET passes); a 403 is not asked again
    assert len(failed) == (ENDED_HISTORY_TRIES if code == 500 else 1), failed
    assert "ml/r0" not in op._histories

"""A failed tick's line tells on-call what to do (`next`), as an end's line does (decision 911).

`rollout.invalid`, `rollout.api_refused` and `rollout.tick_failed` said which rollout and the `error`, and left the
person paged to know whether to fix something, wait, or report a bug, and what became of the traffic."""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary.controller import FAILURE_BUDGET_S, Controller
from canary.errors import (ApiRefused, ConfigError, ConflictStorm, GateError, MetricsUnavailable, NotLeader,
                           PolicyError, RecordTooNew, RoutingConflict)
from tests.unit.test_errors_said import _Statuses

# the failure, the line's event, how its `next` opens, what else it must say
CASES = [
    (PolicyError("CanaryRollout ml/x", "spec.policy.steps", "not a list"), "rollout.invalid", "fix what `error` names", "stable 100% at once"),
    (ConfigError("VirtualService ml/m is gone"), "rollout.invalid", "fix what `error` names", "stable 100% at once"),
    (RecordTooNew("the route's record is of schema 9: a newer canary's"), "rollout.invalid", "upgrade this canary",
     "never ended, resumed or rewritten here"),
    (ApiRefused("403 Forbidden", request="the read of ConfigMap ml/pol", status=403), "rollout.api_refused",
     "let the controller's request through", "RBAC"),
    (MetricsUnavailable("Prometheus refused"), "rollout.tick_failed", "nothing while it passes",
     f"failed for {FAILURE_BUDGET_S:g} s"),
    (ConflictStorm("409 at every try"), "rollout.tick_failed", "nothing while it passes", "stable 100% once"),
    (RoutingConflict("the route runs another rollout"), "rollout.tick_failed", "nothing to undo here",
     "another writer"),
    (NotLeader("lease lost"), "rollout.tick_failed", "nothing to do on this replica", "the leader"),
    (GateError("canary refused the warm-up"), "rollout.tick_failed", "read `error`", "stable 100% at once"),
    (RuntimeError("boom"), "rollout.tick_failed", "read `error`", "report it"),
]


@pytest.mark.parametrize(("exc", "event", "opens", "says"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_every_failed_tick_line_says_what_on_call_does_next(exc: BaseException, event: str, opens: str,
                                                            says: str) -> None:
    op = Controller(custom=_Statuses(), core=None, router=None, metrics=None, identity="c-1")  # type: ignore[arg-type]
    obj: dict[str, Any] = {"metadata": {"namespace": "ml", "name": "x", "generation": 1, "uid": "u-1"},
                           "spec": {"model": "m"}}
    with structlog.testing.capture_logs() as logs:
        op._fail_status(obj, exc)
    (line,) = [e for e in logs if e["event"].startswith("rollout.")]
    assert line["event"] == event, line
    assert line["next"].startswith(opens) and says in line["next"], line["next"]
    assert line["rollout"] == "ml/x" and line["error"], line
    if "stable 100%" in line["next"] and not isinstance(exc, RecordTooNew):  # that write may fail too (953)
        assert "the split stays: `rollback.retrying`" in line["next"] and "`rollback.failed`" in line["next"], line
    if isinstance(exc, RecordTooNew):  # never ended here (decision 169): no end's line to point to (decision 951)
        assert "stable 100% at once" not in line["next"] and "fix what" not in line["next"], line["next"]

"""`canary promote` whose VirtualService is deleted mid-rollout (decision 143 e).

With no VirtualService, the mesh balances over the Service's pods, the canary's included (decision 133,
the controller's `rollout.route_deleted`). Promote's fail-safe could write stable 100% nowhere, then read
the route to say how traffic stood, and took the 404 for "nothing routes by it": exit 3 (`RollbackFailed`,
"100% stable on the weights" in docs/reference/cli.md, "Exit codes") with a generic "act by hand". It is exit 6 now
(`TrafficUnsafe`: the canary may get traffic), with the controller's critical `rollout.route_deleted` and
its hint (re-create the VirtualService at stable 100, or scale the canary down).

Real Kubernetes API emulator and IstioRouter, fake metrics on a fake clock (as test_promote_route_safety.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary.errors import TrafficUnsafe
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import GROUP, HookClock, _at_first_step, api, runner  # noqa: F401

pytestmark = pytest.mark.integration


class _Clock(HookClock):
    """HookClock that stops reading the route once its hooks have fired (the route is gone then)."""

    def sleep(self, seconds: float) -> None:
        if not self.hooks:
            FakeClock.sleep(self, seconds)
            return
        super().sleep(seconds)


def _delete(api: Any, plural: str = "virtualservices") -> None:
    with api.handler.lock:
        key = (GROUP, plural, "ml", "m0")
        api.handler._delete(key, api.handler.objects[key])


def test_a_virtual_service_deleted_mid_rollout_is_exit_6_with_the_route_deleted_page(api: Any) -> None:
    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: _delete(api)))
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe) as raised:
        promote.run()
    assert "VirtualService ml/m0 is gone: the mesh balances over the Service's pods, the canary's included" \
        in str(raised.value) and "80/20" in str(raised.value)
    assert promote.rollback_failed
    page = [e for e in logs if e["event"] == "rollout.route_deleted"]
    assert len(page) == 1 and page[0]["log_level"] == "critical" and page[0]["from_weights"] == "80/20", page
    assert {"namespace": "ml", "virtual_service": "m0", "canary_version": "v2"}.items() <= page[0].items()
    assert "re-create the VirtualService" in page[0]["hint"]
    # a person's (or a pipeline's) edit of the routing, as the controller classes it (decision 666)
    classed = {e["event"]: e["end_cause"] for e in logs if "end_cause" in e}
    assert classed == {"rollout.aborting": "foreign_edit", "rollback.failed": "foreign_edit",
                       "rollout.route_deleted": "foreign_edit"}, classed


def test_a_destination_rule_deleted_mid_rollout_is_classed_as_its_virtual_service_deleted_is(api: Any) -> None:
    """The DestinationRule deleted mid-rollout (a `kubectl delete`, a GitOps prune): stable 100% is written, the
    subset cannot be pointed, exit 3 with the page `rollout.destination_rule_deleted` (decision 168). Its end was
    `infrastructure`, while the VirtualService deleted (666), a subset removed from the rule or the rule re-hosted
    (608) are `foreign_edit`: on-call was sent to Kubernetes's health for a person's edit of the routing. It is
    `foreign_edit` too now (decision 681)."""
    from canary.errors import RollbackFailed

    clock = _Clock(api)
    promote = runner(api, "v2", clock)
    clock.hooks.append((_at_first_step("v2"), lambda: _delete(api, "destinationrules")))
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed, match="DestinationRule ml/m0 is gone"):
        promote.run()
    assert [e["event"] for e in logs if e["log_level"] in ("error", "critical")].count(
        "rollout.destination_rule_deleted") == 1
    classed = {e["event"]: e["end_cause"] for e in logs if "end_cause" in e}
    assert classed == {"rollout.aborting": "foreign_edit", "rollback.failed": "foreign_edit"}, classed


def test_a_failing_canarys_rollback_that_meets_its_virtual_service_deleted_pages_the_checks_class(api: Any) -> None:
    """A bad canary (p95 three times stable's): the judge decides the rollback (`rollback.started`, `check`) and its
    stable-100% write meets the VirtualService deleted just before it. The end is the check's: `rollback.failed`
    says `check`, and the page `rollout.route_deleted` said `foreign_edit` (666 wrote that class for every caller),
    so on-call read a person's edit where the canary was shown bad. The page now carries the decided end's class
    (decision 683)."""
    from canary import rollout as rl

    clock = _Clock(api)
    promote = runner(api, "v2", clock, slowdown=3.0)
    # the judge decides at the look after the record's look 1 (the fake metrics and clock are deterministic): the
    # VirtualService goes just before that look's write, the rollback's
    clock.hooks.append((lambda rec: rec.get("look") == 1 and rec.get("phase") == rl.PROGRESSING,
                        lambda: api.before_next_write(lambda: _delete(api))))
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe, match="VirtualService ml/m0 is gone"):
        promote.run()
    classed = {e["event"]: e.get("end_cause") for e in logs if e["log_level"] in ("warning", "error", "critical")
               and e["event"].startswith(("rollback.", "rollout."))}
    assert classed.get("rollback.started") == "check", classed  # decided by the judge (else the test is moot)
    assert classed == {"rollback.started": "check", "rollback.retrying": "check", "rollout.failed": None,
                       "rollback.failed": "check", "rollout.route_deleted": "check"}, classed

"""The controller's side of decision 842: the DestinationRule its record names deleted between its promotion's
0/100 and its pointing (a controller killed in between, restarted). Its ticks share `reconcile._point` with
`promote`'s fail-safe (tests/integration/test_promote_rule_gone_promoting.py)."""

from __future__ import annotations

from typing import Any

import pytest

from canary import rollout as rl
from tests.integration.test_controller import GROUP, prometheus, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def test_a_rule_deleted_while_promoting_ends_at_stable_on_a_restarted_controller(world: Any) -> None:
    """The controller's side (its ticks share `reconcile._point`): killed between its promotion's 0/100 (PROMOTING
    recorded) and its pointing, the DestinationRule deleted meanwhile. The restarted controller's end pointed the
    stable subset back before its weights and met the 404 at every tick, 0/100 left `promoting`. Now: stable 100%
    and the end recorded in one tick, the page once."""
    import time

    from structlog.testing import capture_logs

    from canary import crd
    from tests import fleet
    from tests.fakes import FakeClock
    from tests.integration.test_controller_route_deleted import _progressing, _status, _ticks, vs
    from tests.integration.test_controller_route_deleted import _fresh
    from tests.integration.test_promote_route_safety import promoting

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", "m0", promoting)
    api.delete(GROUP, "destinationrules", "ml", "m0")
    op = _fresh(op)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 5)
    weights, record = vs(api, 0)
    assert weights == [100, 0] and (record["phase"], record["end_cause"]) == (rl.ABORTED, "foreign_edit"), record
    assert _status(custom)["phase"] == rl.ABORTED
    page = [e for e in logs if e["event"] == "rollout.destination_rule_deleted"]
    assert len(page) == 1 and page[0]["log_level"] == "error", [e["event"] for e in logs]

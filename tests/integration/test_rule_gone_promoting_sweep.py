"""Decision 842 on its two other paths, the sweep and `canary rollback`: a promote killed at PROMOTING (0/100,
every step passed), its record naming DestinationRule ml/m0, which is then deleted. Each ends from PROMOTING by
pointing the stable subset back before its weights; the 404 of the rule the record names stopped that with nothing
written, 0/100 left. They share `reconcile._point` with promote's fail-safe (test_promote_rule_gone_promoting.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary import sweep
from canary.errors import CanaryError
from canary.logs import get as get_logger
from canary.model import Weights
from tests.integration.test_sweep import _claim, cluster  # noqa: F401  (fixture)
from tests.integration.test_sweep_attack import OTHER_HOST, _write, cluster_state_vs_only

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"


def _promoting_rule_gone(api: Any, router: Any) -> Any:
    t, s = _claim(router, at=time.time() - 1000, owner=OTHER_HOST)
    _write(router, t, s, replace(s, phase=rl.PROMOTING, step=2, weights=Weights.canary_at(100), destination_rule="m0",
                                 updated_at=time.time() - 1000))
    api.delete(GROUP, "destinationrules", "ml", "m0")
    return t


def _ended_safe(api: Any, logs: list[dict[str, Any]]) -> dict[str, Any]:
    weights, rec = cluster_state_vs_only(api)
    assert weights == [100, 0] and rec["phase"] in rl.TERMINAL and rec["weights"] == {"stable": 100, "canary": 0}, (
        weights, rec)
    page = [e for e in logs if e["event"] == "rollout.destination_rule_deleted"]
    assert len(page) == 1 and "restore DestinationRule ml/m0" in page[0]["hint"], [e["event"] for e in logs]
    assert "traffic.unsafe" not in [e["event"] for e in logs]
    return rec


def test_the_sweep_ends_a_killed_promotion_whose_rule_was_deleted_at_stable_100(cluster: Any) -> None:  # noqa: F811
    api, _, router = cluster
    _promoting_rule_gone(api, router)
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned
    assert [f.key for f in found] == ["ml/m0"]
    with structlog.testing.capture_logs() as logs:
        try:
            sweep.end(router, found[0], log=get_logger(), now=time.time())
        except CanaryError:
            pass  # the pointing's refusal after stable 100%: the page says it
    assert _ended_safe(api, logs)["phase"] == rl.ABORTED


def test_an_on_call_rollback_of_a_promotion_whose_rule_was_deleted_writes_stable_100(cluster: Any) -> None:  # noqa: F811
    from canary.runner import oncall_action

    api, _, router = cluster
    t = _promoting_rule_gone(api, router)
    with structlog.testing.capture_logs() as logs:
        try:
            oncall_action(router, t, rl.Rollback(time.time(), "pager"), log=get_logger())
        except CanaryError:
            pass
    _ended_safe(api, logs)

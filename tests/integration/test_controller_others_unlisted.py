"""The controller's claim and rollback with the cluster-wide LIST of VirtualServices failing for another reason than
403 (decisions 901, 902): the same shared steps as `canary promote`'s (`check_other_splits`, `reconcile.execute`),
against the API emulator and the fleet's Prometheus, as tests/integration/test_controller_rollback_page.py."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
from structlog.testing import capture_logs

from canary import crd
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401  (fixtures)
from tests.integration.test_vs_others_unlisted import fail_cluster_wide_list

pytestmark = pytest.mark.integration


def _progressing_then_failing(world: Any) -> None:
    """CanaryRollout r0 (v2) claimed and running its first step; from then every cluster-wide LIST answers 503."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    op.router.wait = tenacity.wait_none()
    fail_cluster_wide_list(api)["failing"] = True


def test_the_controllers_claim_over_a_failing_list_of_every_namespace_is_not_made_and_says_why(
        world: Any) -> None:  # noqa: F811
    """Every cluster-wide LIST answers 503: the CanaryRollout is not claimed (stable 100%, nothing recorded), and
    its status says what the LIST was for; the next tick asks again."""
    api, op, custom = world
    op.router.wait = tenacity.wait_none()
    on = fail_cluster_wide_list(api)
    on["failing"] = True
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    for _ in range(3):
        op.tick()
    assert on["seen"] >= 4, on
    weights = [d["weight"] for d in api.get("networking.istio.io", "virtualservices", "ml", fleet.model(0))
               ["spec"]["http"][0]["route"]]
    assert weights == [100, 0], weights
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
    ready = [c for c in st.get("conditions") or [] if c.get("type") == "Ready"]
    assert ready and "splits traffic with the canary subset could not read them" in ready[0].get("message", ""), st


def test_the_controllers_rollback_end_line_says_the_other_routes_could_not_be_checked(
        world: Any) -> None:  # noqa: F811
    """A person's rollback of a CanaryRollout while every cluster-wide LIST answers 503: stable 100% lands, and
    `rollback.completed` says the other VirtualServices could not be checked, with the command that checks them."""
    api, op, custom = world
    _progressing_then_failing(world)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    with capture_logs() as logs:
        for _ in range(3):
            op.tick()
    assert vs(api, 0)[0] == [100, 0]
    (end,) = [e for e in logs if e["event"] == "rollback.completed"]
    assert "503" in end.get("others_unchecked", ""), end
    assert "kubectl get virtualservices --all-namespaces" in end["others_hint"], end


def test_the_controllers_promotion_over_an_edge_split_of_another_namespace_rolls_back_instead(
        world: Any) -> None:  # noqa: F811
    """844's left: the controller's ticks look at the informers' (or the prefetch's) VirtualServices of the
    rollout's namespace only. An edge VirtualService of namespace `edge` split 90/10 with the canary subset after the
    claim rode along to the promotion. The look whose pass promotes now reads every namespace's once: the split is
    found and the rollout rolled back (`split.foreign_edit`), not promoted."""
    from canary import rollout as rl
    from tests.integration.test_controller import run_until_done
    from tests.integration.test_vs_other_namespace import edge_vs

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    edge_vs(api, 10)
    with capture_logs() as logs:
        objs = run_until_done(op, custom, ["r0"])
    st = objs["r0"]["status"]
    assert st["phase"] == rl.ROLLED_BACK, (st["phase"], st.get("reason"))
    (said,) = [e for e in logs if e["event"] == "split.foreign_edit"]
    assert said["other_virtual_service"] == "edge/m0-edge", said


def test_the_controllers_promotion_over_a_failing_list_of_every_namespace_is_held_not_made(
        world: Any) -> None:  # noqa: F811
    """Every cluster-wide LIST answers 503 from the first step: the look whose pass would promote says
    `promotion.held` and is inconclusive; the step's deadline ends the rollout (rollback, cause infrastructure)."""
    from canary import rollout as rl
    from tests.integration.test_controller import run_until_done

    api, op, custom = world
    _progressing_then_failing(world)
    with capture_logs() as logs:
        objs = run_until_done(op, custom, ["r0"], timeout=240)
    st = objs["r0"]["status"]
    assert st["phase"] != rl.PROMOTED, (st["phase"], st.get("reason"))
    held = [e for e in logs if e["event"] == "promotion.held"]
    # said once for the streak of held looks (one a look before 945)
    assert len(held) == 1 and "could not be told" in held[0]["reason"] and "503" in held[0]["reason"], held
    assert st["reason"].startswith("promotion held at step ") and "503" in st["reason"], st["reason"]  # 945
    # its held looks counted as what they were recorded as (inconclusive: error), not as passes (decision 948)
    assert st["summary"]["outcomes"]["error"] >= 1, st["summary"]

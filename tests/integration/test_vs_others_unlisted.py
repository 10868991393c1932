"""The cluster-wide LIST of VirtualServices failing for another reason than 403 (decisions 900-903).

844 made the claim, the looks and the rollback list the VirtualServices of every namespace for another route that
splits with the canary subset. Where that LIST is refused (403) the claim says so once; where it fails otherwise (a
5xx, a timeout, a reset, an answer that does not parse), a look skipped the check without a word, a promotion went
ahead over a split nobody could look for, and a rollback said nothing of the routes it could not check. The runner on
the strict API emulator, as tests/integration/test_vs_other_namespace.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from tests.integration.test_promote_route_safety import HookClock, runner
from tests.integration.test_vs_shapes import api  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

CLUSTER_WIDE = r"/apis/networking\.istio\.io/[^/]+/virtualservices"


def fail_cluster_wide_list(api: Any, *, status: int = 503, body: str | None = None) -> dict[str, Any]:
    """From `on["failing"]` set True, every LIST of VirtualServices across all namespaces answers `status` (or,
    with `body`, 200 with that body: a proxy's page); `on["seen"]` counts them."""
    from canary.sandbox import kubeapi

    real, on = api.handler._serve, {"failing": False, "seen": 0}

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method == "GET" and re.fullmatch(CLUSTER_WIDE, request.url.path) and on["failing"]:
            on["seen"] += 1
            if body is not None:
                return 200, body
            raise kubeapi.ApiError(status, "ServiceUnavailable", "etcdserver: request timed out")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return on


def _progressing(rec: dict[str, Any]) -> bool:
    return rec.get("phase") == rl.PROGRESSING


def test_a_look_whose_list_of_every_namespace_fails_says_so_once_and_the_promotion_is_held(
        api: Any) -> None:  # noqa: F811
    """The claim checked; from the first step every cluster-wide LIST answers 503. Each look says nothing before
    (602's silent skip) and the rollout was promoted; now the first failing look says `look.splits_unchecked` once
    (the streak's), and the last step's passing look is held (`promotion.held`) and made inconclusive: the step's
    deadline ends the rollout as `failure.on_deadline` (rollback) says, cause infrastructure, not promoted."""
    on = fail_cluster_wide_list(api)
    clock = HookClock(api)
    clock.hooks.append((_progressing, lambda: on.update(failing=True)))
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock).run()
    assert on["seen"] >= 2, on
    said = [e for e in logs if e["event"] == "look.splits_unchecked"]
    assert len(said) == 1 and "all namespaces" in said[0]["error"] and "503" in said[0]["error"], said
    assert "kubectl get virtualservices --all-namespaces" in said[0]["hint"], said
    held = [e for e in logs if e["event"] == "promotion.held"]
    # said once for the streak of held looks (seven before 945: one a look), each of them inconclusive
    assert len(held) == 1 and "could not be told" in held[0]["reason"], held
    assert on["seen"] > 3, on  # several held looks, each asking again (and its re-ask before promoting)
    assert res.state.phase == rl.ROLLED_BACK and rl.cause_of(res.state) == "infrastructure", res.state
    # the end says the promotion was held and why, not "no verdict (errors: could not measure: ...)" (945)
    assert res.state.reason.startswith("promotion held at step ") and "503" in res.state.reason, res.state.reason


def test_a_look_that_fails_once_then_lists_promotes(api: Any) -> None:  # noqa: F811
    """One look's LIST failing does not cost the rollout: the next look lists, and the promotion goes ahead once
    a look could tell (the one after the promotion's hold asks again)."""
    on = fail_cluster_wide_list(api)
    clock = HookClock(api)
    clock.hooks.append((_progressing, lambda: on.update(failing=True)))
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING and on["seen"] >= 1,
                        lambda: on.update(failing=False)))
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock).run()
    assert res.state.phase == rl.PROMOTED, res.state
    assert len([e for e in logs if e["event"] == "look.splits_unchecked"]) == 1


def test_a_rollbacks_end_line_says_the_other_routes_could_not_be_checked_and_how_to_check_them(
        api: Any) -> None:  # noqa: F811
    """A rollout rolled back on its checks while every cluster-wide LIST answers 503: `rollback.completed` said
    nothing of the other VirtualServices (the rollback's look failed after it, `rollback.canary_subset_kept` with
    no command across namespaces); it says now that they could not be checked (the API's words) and the command
    that checks them. Stable 100% is written first, whatever the LIST does."""
    from tests.integration.test_promote_route_safety import routes

    on = fail_cluster_wide_list(api)
    clock = HookClock(api)
    clock.hooks.append((_progressing, lambda: on.update(failing=True)))
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock, slowdown=1.6).run()
    assert res.state.phase == rl.ROLLED_BACK, res.state
    assert routes(api) == [[("stable", 100), ("canary", 0)]], routes(api)
    (end,) = [e for e in logs if e["event"] == "rollback.completed"]
    assert "503" in end.get("others_unchecked", ""), end
    assert "kubectl get virtualservices --all-namespaces" in end["others_hint"], end
    assert "selects v2" in end["others_hint"] and "DestinationRule ml/m0" in end["others_hint"], end


def test_an_oncall_rollback_with_a_namespaced_role_says_on_its_end_line_the_others_were_not_checked(
        api: Any) -> None:  # noqa: F811
    """`canary rollback` is its own process: its identity's cluster-wide LIST refused (403), the namespace's
    VirtualServices are looked at, the others not, and its end line said nothing of it (the claim's
    `preflight.splits_unchecked` was another process's, maybe days before). It says so now, naming the ClusterRole
    that checks them."""
    import structlog
    import tenacity

    from canary.model import Target
    from canary.routing.istio import IstioRouter
    from canary.runner import oncall_action
    from tests.integration.test_vs_other_namespace import refuse_cluster_wide_list

    def oncall() -> None:
        refuse_cluster_wide_list(api)
        target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
        oncall_action(IstioRouter(api.api_client(), wait=tenacity.wait_none()), target,
                      rl.Rollback(clock.now(), "operator: p95 alert"), log=structlog.get_logger().bind(actor="on-call"))

    clock = HookClock(api)
    clock.hooks.append((_progressing, oncall))
    with structlog.testing.capture_logs() as logs:
        runner(api, "v2", clock).run()
    (end,) = [e for e in logs if e["event"] == "rollback.completed" and e.get("actor") == "on-call"]
    assert "namespaces other than ml cannot be listed" in end.get("others_unchecked", ""), end


@pytest.mark.parametrize("body", [None, "<html>proxy</html>"], ids=["503", "not-a-list"])
def test_a_claim_whose_list_of_every_namespace_keeps_failing_is_refused_saying_what_it_was_for(
        api: Any, body: str | None) -> None:  # noqa: F811
    """The cluster-wide LIST failing at the claim (a 503 each time, or a proxy's page answered 200) is asked the
    router's four times, then the claim is refused, nothing written (it never went on as if checked: 844 raised).
    The refusal named only "all namespaces (virtualservices): HTTP 503": a rollout of one namespace with no word of
    why every namespace was listed; it says now what the LIST was for."""
    from canary.errors import KubeUnavailable
    from tests.fakes import FakeClock
    from tests.integration.test_vs_shapes import _objects

    on = fail_cluster_wide_list(api, body=body)
    on["failing"] = True
    before = _objects(api)
    with pytest.raises(KubeUnavailable) as refused:
        runner(api, "v2", FakeClock()).run()
    assert on["seen"] == 4 and _objects(api) == before, on
    said = str(refused.value)
    assert said.startswith("the claim's check that no other VirtualService (of any namespace) splits traffic with "
                           "the canary subset could not read them: all namespaces (virtualservices): "), said
    assert ("HTTP 503" if body is None else "not a list") in said and "moved no traffic" in said, said

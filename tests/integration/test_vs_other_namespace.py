"""A VirtualService in another namespace than the model's that splits traffic with its canary subset (decision 844).

Istio lets a VirtualService of any namespace route to a service by its full name (an ingress gateway's, kept in
`edge` or `istio-system`, `exportTo` anywhere its clients are), and its subsets are the service's DestinationRule's.
The claim's check of other VirtualServices (578) listed the rollout's namespace only: an edge VirtualService left
90/10 by a manual canary was not seen, the claim pointed the canary subset at v3, and 10% of the edge traffic
reached v3 unjudged. The runner on the strict API emulator, as tests/integration/test_vs_shapes.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary.errors import TargetError
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import GROUP, runner
from tests.integration.test_vs_shapes import VS, _objects, api  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def edge_vs(api: Any, canary: int, *, namespace: str = "edge") -> None:
    """VirtualService `m0-edge` in `namespace`, bound to the ingress gateway, its route split (100 - canary)/canary
    between the subsets of m0 in ml, named in full (a short `m0` there would be `namespace`'s own service)."""
    route = copy.deepcopy(api.get(GROUP, VS, "ml", "m0")["spec"]["http"][0])
    route["name"] = "edge"
    for dest, weight in zip(route["route"], (100 - canary, canary)):
        dest["destination"]["host"], dest["weight"] = "m0.ml.svc.cluster.local", weight
    api.handler.put_object({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                            "metadata": {"name": "m0-edge", "namespace": namespace},
                            "spec": {"hosts": ["models.example.com"], "gateways": ["istio-system/ingress"],
                                     "exportTo": ["*"], "http": [route]}})


def test_a_split_on_a_virtual_service_of_another_namespace_is_refused_before_any_write(api: Any) -> None:  # noqa: F811
    edge_vs(api, 10)
    before = _objects(api), api.get(GROUP, VS, "edge", "m0-edge")
    with pytest.raises(TargetError, match=r"^edge/m0-edge: spec.http\[0\] \(edge\) splits its traffic 90/10 with "
                                          r"subset 'canary' of m0.ml.svc.cluster.local"):
        runner(api, "v3", FakeClock(), slowdown=1.6).run()
    assert (_objects(api), api.get(GROUP, VS, "edge", "m0-edge")) == before


def refuse_cluster_wide_list(api: Any) -> list[str]:
    """A namespaced Role: LISTs of VirtualServices across all namespaces are refused 403, as RBAC refuses them."""
    import re

    from canary.sandbox import kubeapi

    real, refused = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method == "GET" and re.fullmatch(r"/apis/networking\.istio\.io/[^/]+/virtualservices", request.url.path):
            refused.append(request.url.path)
            raise kubeapi.ApiError(403, "Forbidden", 'virtualservices.networking.istio.io is forbidden: User "ci" '
                                                     'cannot list resource "virtualservices" at the cluster scope')
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return refused


def test_with_a_namespaced_role_the_namespace_is_still_checked_and_the_others_are_said_unchecked(
        api: Any) -> None:  # noqa: F811
    """The LIST of every namespace refused (403): the namespace's VirtualServices are read as before, and the claim
    says once that the others' are not known (`preflight.splits_unchecked`), the rollout going on."""
    import structlog.testing

    from tests.integration.test_vs_shapes import _gateway_vs

    refused = refuse_cluster_wide_list(api)
    edge_vs(api, 10)  # not seen: another namespace
    with structlog.testing.capture_logs() as logs:
        runner(api, "v3", FakeClock(), slowdown=1.6).run()  # rolled back on its checks, as without the edge
    assert len(refused) == 1, refused  # asked once a process (the looks do not ask again)
    said = [e for e in logs if e["event"] == "preflight.splits_unchecked"]
    assert len(said) == 1 and "namespaces other than ml cannot be listed" in said[0]["error"], said
    _gateway_vs(api, 10)  # in the namespace: still refused
    with pytest.raises(TargetError, match=r"^ml/m0-gateway: spec.http\[0\] \(edge\) splits its traffic 90/10"):
        runner(api, "v4", FakeClock(), slowdown=1.6).run()


def test_a_narrowed_router_names_each_claims_own_namespace(api: Any) -> None:  # noqa: F811
    """One router serves every namespace's claims (the controller's). The cluster-wide LIST refused once, each later
    claim's `preflight.splits_unchecked` names its own namespace as the one checked, not the first claim's
    (decision 862)."""
    import structlog.testing
    import tenacity

    from canary.model import Target
    from canary.reconcile import check_other_splits
    from canary.routing.istio import IstioRouter

    for plural in (VS, "destinationrules"):  # the same model served in namespace `team-b` too
        obj = copy.deepcopy(api.get(GROUP, plural, "ml", "m0"))
        obj["metadata"] = {"name": "m0", "namespace": "team-b"}
        api.handler.put_object(obj)
    refused = refuse_cluster_wide_list(api)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    with structlog.testing.capture_logs() as logs:
        for ns in ("ml", "team-b"):
            check_other_splits(router, Target(namespace=ns, virtual_service="m0", model="m0", stable_version="v1",
                                              canary_version="v2"), log=structlog.get_logger())
    said = [e["error"] for e in logs if e["event"] == "preflight.splits_unchecked"]
    assert len(refused) == 1 and len(said) == 2, (refused, said)
    assert "namespaces other than ml cannot" in said[0] and "namespaces other than team-b cannot" in said[1], said


def test_an_edge_split_made_mid_rollout_in_another_namespace_rolls_back_and_repoints_the_canary_subset(
        api: Any) -> None:  # noqa: F811
    """844's other half: a look finds a split made after the claim on another namespace's VirtualService (an edge
    route left 100/0 at the claim, set 90/10 by hand mid-rollout), rolls back (`foreign_edit`), and the rollback
    points the canary subset at the stable version so the edge's 10% leaves the version rolled back; the edge
    VirtualService is never written."""
    import structlog.testing

    from canary import rollout as rl
    from tests.integration.test_vs_shapes import HookClock, subsets

    edge_vs(api, 0)
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.split_while_progressing("edge", "m0-edge")
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert res.state.phase == rl.ROLLED_BACK and rl.classify_reason(res.state.reason) == "foreign_edit", res.state
    (said,) = [e for e in logs if e["event"] == "split.foreign_edit"]
    assert (said["other_virtual_service"], said["split_weights"]) == ("edge/m0-edge", "90/10"), said
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    assert not [w for w in api.writes if w[1].endswith("/m0-edge")]

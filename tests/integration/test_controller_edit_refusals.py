"""What a failed tick of a CanaryRollout edited mid-rollout is said as, and whose end it is (decisions 820-822,
amending 801): its lines name the rollout whose traffic is split (not the edited spec's), an error is the edit's
only where it is about what the edit changed, and a policyRef ConfigMap edited to a policy refused is a person's
edit as a spec's is. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing
import yaml

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}


def _patch_spec(custom: Any, patch: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": patch})


def _typo() -> dict[str, Any]:
    bad = copy.deepcopy(fleet.FAST_POLICY)
    bad["checks"][0]["max_incrase_pct"] = bad["checks"][0].pop("max_increase_pct")
    return bad


def _ends(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("rollout.aborting", "rollout.aborted")]


REFUSED_EDITS = {  # the edit (refused), what `rollout.invalid`'s `edit` says, its `asked_model`
    "another model, virtualService given empty": ({"model": "m1", "virtualService": ""},
                                                  "spec.model changed from m0 to m1", "m1"),
    "another canary version with a policy typo": ({"canaryVersion": "v3", "policy": _typo()},
                                                  "spec.canaryVersion changed from v2 to v3", None),
    "another VirtualService with a policy typo": ({"virtualService": "m1", "policy": _typo()},
                                                  "spec.virtualService changed from m0 to m1", None),
}


@pytest.mark.parametrize("edit", list(REFUSED_EDITS))
def test_a_refused_edits_lines_name_the_rollout_whose_traffic_is_split(world: Any, edit: str) -> None:
    """r0 runs v2 on m0 at 80/20; its spec is edited mid-rollout to one refused. `rollout.invalid` named the edited
    spec's model, VirtualService and canary version (m1, v3): on-call read of a rollout that never ran, and nothing of
    m0, whose split the same tick sent to stable 100%. It names m0's rollout, as the end's lines do, and says what
    the edit asks for (`edit`, `asked_model`)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    patch, said, asked_model = REFUSED_EDITS[edit]
    _patch_spec(custom, patch)
    with structlog.testing.capture_logs() as logs:
        op.tick()
    invalid = [e for e in logs if e["event"] == "rollout.invalid"]
    assert len(invalid) == 1, [e["event"] for e in logs]
    line = invalid[0]
    assert (line["model"], line["virtual_service"], line["canary_version"]) == ("m0", "m0", "v2"), line
    assert said in line["edit"] and line.get("asked_model") == asked_model, line
    ends = _ends(logs)
    assert ends and all((e["model"], e["virtual_service"], e["end_cause"]) == ("m0", "m0", "operator") for e in ends)
    assert vs(api, 0)[0] == [100, 0]


def _with_policy_ref(api: Any, custom: Any, name: str = "pol", policy: Any = None) -> None:
    """ConfigMap `name` (key policy.yaml: FAST_POLICY, or `policy`); r0 (v2 on m0) reads its policy there once
    `name` is "pol"."""
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ml"},
                            "data": {"policy.yaml": yaml.safe_dump(policy or fleet.FAST_POLICY)}})
    if name != "pol":
        return
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)


def _rename_route(o: dict[str, Any]) -> None:
    o["spec"]["http"][0]["name"] = "primary-renamed"


# a failure of the tick, and the class its end has with or without an edit of the spec the same tick
NOT_THE_EDITS = {
    "its DestinationRule deleted": (lambda api: kc.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
        GROUP, "v1beta1", "ml", "destinationrules", "m0"), "foreign_edit"),
    "its route renamed": (lambda api: api.edit(GROUP, "virtualservices", "ml", "m0", _rename_route), "foreign_edit"),
    "its policyRef ConfigMap deleted": (lambda api: kc.CoreV1Api(api.api_client()).delete_namespaced_config_map(
        "pol", "ml"), "infrastructure"),
}


def _failed_beside_an_edit(world: Any, failure: str, patch: dict[str, Any]) -> str:
    """r0 at 80/20 meets `failure` (`NOT_THE_EDITS`) and its spec edited by `patch`, the same tick: its end lines say
    the failure (`failed: ...`) with the failure's own class, which is returned."""
    api, op, custom = world
    if "ConfigMap" in failure:
        _with_policy_ref(api, custom)
    else:
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                               fleet.rollout_object(0, "v2", route="primary"))
    _progressing(op, custom, api)
    act, cause = NOT_THE_EDITS[failure]
    act(api)
    _patch_spec(custom, patch)
    with structlog.testing.capture_logs() as logs:
        op.tick()
    ends = _ends(logs)
    assert ends, [(e["event"], e.get("error")) for e in logs]
    for e in ends:
        assert e["end_cause"] == cause and e["reason"].startswith("failed: "), e
    assert vs(api, 0)[0] == [100, 0]
    return cause


@pytest.mark.parametrize("failure", list(NOT_THE_EDITS))
def test_a_failure_an_edit_did_not_cause_keeps_its_own_class(world: Any, failure: str) -> None:
    """r0 at 80/20; the same tick meets its spec edited (spec.actionReason: nothing the rollout drives, nor its
    policy) and a failure of something else: the rollout's DestinationRule deleted, its route renamed, its policyRef
    ConfigMap deleted. Any ConfigError of an edited generation was the edit's: `reason: the spec edited mid-rollout
    is refused: ...`, `end_cause: operator`, on-call told to fix a spec nothing was wrong with. The end is the
    failure's, as it is without the edit (`failed: ...`, its own class)."""
    api, op, custom = world
    cause = _failed_beside_an_edit(world, failure, {"actionReason": "ticket 42: latency dashboard"})
    op.tick()  # (a DestinationRule gone: the end landed, its status is confirmed at the next tick, decision 665)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and st["endCause"] == cause, (st.get("reason"), st.get("endCause"))


def test_an_edit_to_a_destination_rule_that_does_not_exist_is_still_the_edits(world: Any) -> None:
    """The other side of the same rule: the failure is about what the edit changed (the DestinationRule it names
    now cannot be read): the edit's end, saying the edit."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    _patch_spec(custom, {"destinationRule": "m0-none", "actionReason": "move to the new rule"})
    with structlog.testing.capture_logs() as logs:
        op.tick()
    ends = _ends(logs)
    assert ends and all(e["end_cause"] == "operator" for e in ends), ends
    assert ends[-1]["reason"].startswith(f"{rl.REFUSED_EDIT} (the DestinationRule changed from m0 to m0-none): ")
    assert vs(api, 0)[0] == [100, 0]


def _edit_text(api: Any) -> None:
    api.edit("", "configmaps", "ml", "pol", lambda o: o["data"].update({"policy.yaml": yaml.safe_dump(_typo())}))


def _drop_key(api: Any) -> None:
    api.edit("", "configmaps", "ml", "pol", lambda o: o["data"].pop("policy.yaml"))


# (the words of `end_words.REFUSED_POLICY_EDIT`, written out)
_EDITED_POL = ("the policy edited mid-rollout is refused (ConfigMap ml/pol key policy.yaml changed since the rollout "
               "started)")
POLICY_EDITS = {  # how, what the end's reason opens with
    "its text edited to a typo": (_edit_text, f"{_EDITED_POL}: CanaryRollout ml/r0 spec.policyRef: "),
    "its key removed": (_drop_key, f"{_EDITED_POL}: CanaryRollout ml/r0: spec.policyRef.key: "),
}


@pytest.mark.parametrize("memory", ["same process", "restarted process"])
@pytest.mark.parametrize("how", list(POLICY_EDITS))
def test_a_policy_ref_configmap_edited_to_a_refused_policy_is_a_persons_edit(world: Any, how: str,
                                                                             memory: str) -> None:
    """r0 reads its policy from ConfigMap ml/pol and runs at 80/20; a GitOps push edits that ConfigMap to a policy
    the controller refuses (a typo, the key gone). Stable 100% as before, but said as an outage (`failed: ...`,
    `infrastructure`, "fix Prometheus, the Kubernetes API or the input"): a ConfigMap edit changes no generation of
    the CanaryRollout. The claim records where its policy was read from (the ConfigMap, its key, a digest of the
    text); a text refused that is not that one is a person's edit: `operator`, saying which ConfigMap, and `next`
    says to fix that ConfigMap. A restarted process reads the record from the status."""
    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    act, opens = POLICY_EDITS[how]
    act(api)
    runner = op if memory == "same process" else _fresh(op)
    with structlog.testing.capture_logs() as logs:
        runner.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED and record["end_cause"] == "operator", record
    assert record["reason"].startswith(opens), record["reason"]
    ends = _ends(logs)
    assert ends and all(e["end_cause"] == "operator" and e["model"] == "m0" for e in ends), ends
    assert ends[-1]["next"].startswith("not the canary: the policy in the rollout's policyRef ConfigMap was edited")
    st = _status(custom)
    assert st["endCause"] == "operator" and st["reason"].startswith(opens), st.get("reason")


@pytest.mark.parametrize("was", ["another ConfigMap", "an inline policy"])
def test_the_spec_edited_to_another_policy_ref_that_is_refused_says_that_edit(world: Any, was: str) -> None:
    """spec.policyRef edited mid-rollout to another ConfigMap (or an inline policy moved to one), whose policy is
    refused: the spec's edit, and its words say what changed (801's said no edit at all: it compared what the
    rollout drives alone)."""
    api, op, custom = world
    if was == "another ConfigMap":
        _with_policy_ref(api, custom)
        said = "spec.policyRef changed to ConfigMap ml/pol2 key policy.yaml"
    else:
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
        said = "spec.policy changed to spec.policyRef naming ConfigMap ml/pol2 key policy.yaml"
    _with_policy_ref(api, custom, "pol2", _typo())
    _progressing(op, custom, api)
    _patch_spec(custom, {"policy": None, "policyRef": {"configMap": "pol2", "key": "policy.yaml"}})
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["end_cause"] == "operator", record
    assert record["reason"].startswith(f"{rl.REFUSED_EDIT} ({said}): CanaryRollout ml/r0 spec.policyRef: "), \
        record["reason"]


@pytest.mark.parametrize("failure", [f for f in NOT_THE_EDITS if "ConfigMap" not in f])
def test_a_failure_of_an_object_the_edit_did_not_change_keeps_its_own_class(world: Any, failure: str) -> None:
    """r0 at 80/20; its spec is edited to canaryVersion v3 (an edit of what it drives, but not of which objects it
    reads: the same VirtualService, route and DestinationRule) and, the same tick, a person deletes its
    DestinationRule or renames its route. Any TargetError of an edit that changed what the rollout drives was the
    edit's: "the spec edited mid-rollout is refused (spec.canaryVersion changed from v2 to v3): ... not found",
    `operator`, "fix the spec", while nothing in the spec was refused. It is the failure's: `failed: ...`,
    `foreign_edit`, as without the edit."""
    assert _failed_beside_an_edit(world, failure, {"canaryVersion": "v3"}) == "foreign_edit"


def _answer_configmap_reads(api: Any, body: bytes, content_type: str) -> list[str]:
    """Every GET of a ConfigMap from now on is answered 200 with `body`: a proxy in front of an API server that is
    down (its page, or an empty object)."""
    import aiohttp.web

    real, hit = api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == "configmaps" and str(request.method.value).upper() == "GET":
            hit.append(request.url.path)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    return hit


PAGES = {"{}": (b"{}", "application/json"),
         "a proxy's page": (b"<html><body>upstream connect error</body></html>", "text/html")}


@pytest.mark.parametrize("page", list(PAGES))
def test_a_policy_ref_configmap_read_answered_by_a_proxy_is_no_edit(world: Any, page: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """(review r-ak) r0 reads its policy from ConfigMap ml/pol and runs at 80/20; the API server goes down behind a
    proxy that answers 200 with its page (or `{}`). The read gave a ConfigMap with no data: "has no key", and the
    read again at the end the same: its text "changed since the rollout started", `operator`, on-call told to fix a
    ConfigMap nobody touched. An answer that is not the ConfigMap is a failed read (transient): the failure budget,
    then stable 100% as an outage's, `infrastructure`."""
    from canary import controller as controller_mod

    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    hit = _answer_configmap_reads(api, *PAGES[page])
    monkeypatch.setattr(controller_mod, "FAILURE_BUDGET_S", 0.0)  # a transient failure acts at once
    with structlog.testing.capture_logs() as logs:
        op.tick()
    assert hit
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["end_cause"] == "infrastructure", record
    assert record["reason"].startswith("failed: "), record["reason"]
    assert all(e["end_cause"] == "infrastructure" for e in _ends(logs))


@pytest.mark.parametrize("was", ["another ConfigMap", "an inline policy"])
def test_a_policy_ref_moved_by_an_edit_taken_earlier_then_gone_is_no_refused_edit(world: Any, was: str) -> None:
    """(review r-ak) r0 runs at 80/20 reading its policy from ConfigMap ml/pol (or inline); its spec is edited to
    read the same policy from ConfigMap ml/pol2: nothing judged changed, so the rollout goes on under its claim, and
    its status observes that generation. Later pol2 is deleted. The claim's source mark (pol, or inline) is not pol2's,
    and any refusal of pol2 read as "the spec edited mid-rollout is refused (spec.policyRef changed to ConfigMap
    ml/pol2 ...)", `operator`, "fix the spec": an edit taken ticks ago, and a ConfigMap gone, 714's `infrastructure`.
    Only a spec not yet observed is an edit."""
    api, op, custom = world
    if was == "another ConfigMap":
        _with_policy_ref(api, custom)
    else:
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _with_policy_ref(api, custom, "pol2")
    _progressing(op, custom, api)
    _patch_spec(custom, {"policy": None, "policyRef": {"configMap": "pol2", "key": "policy.yaml"}})
    generation = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["metadata"][
        "generation"]
    op.tick()
    st = _status(custom)
    assert st["phase"] == rl.PROGRESSING and st["observedGeneration"] == generation, st
    assert vs(api, 0)[0][1] > 0
    kc.CoreV1Api(api.api_client()).delete_namespaced_config_map("pol2", "ml")
    with structlog.testing.capture_logs() as logs:
        op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["end_cause"] == "infrastructure", record
    assert record["reason"].startswith("failed: "), record["reason"]
    assert all(e["end_cause"] == "infrastructure" for e in _ends(logs))


@pytest.mark.parametrize("edit", [{"canaryVersion": "v3"}, {"destinationRule": "m1"}], ids=["canary version", "rule"])
def test_its_virtual_service_deleted_beside_an_edit_of_something_else_is_the_deletions(world: Any,
                                                                                        edit: dict[str, str]) -> None:
    """(review r-ak) r0 at 80/20; a person deletes its VirtualService the same tick as its spec is edited to another
    canary version or another DestinationRule (not another VirtualService). The 404 was the edit's (it changed what
    the rollout drives): `operator`, "the spec edited mid-rollout is refused (...): ml/m0 (virtualservices): not
    found". It is the deletion's, as without the edit: `rollout.route_deleted` with `foreign_edit`."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    kc.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(GROUP, "v1beta1", "ml", "virtualservices",
                                                                          "m0")
    _patch_spec(custom, edit)
    with structlog.testing.capture_logs() as logs:
        op.tick()
    deleted = [e for e in logs if e["event"] == "rollout.route_deleted"]
    assert deleted and all(e["end_cause"] == "foreign_edit" for e in deleted), deleted
    st = _status(custom)
    assert st.get("endCause") in (None, "foreign_edit") and not str(st.get("reason") or "").startswith(
        rl.REFUSED_EDIT), (st.get("reason"), st.get("endCause"))

"""The CanaryRollout's Ready condition says the latest judgement of its generation (decision 152).

Decision 141 f keeps a Ready False of a bad-input reason over the end it caused (a policy edited to an invalid one
mid-rollout ends aborted; Ready stays False, so a GitOps health check does not read the object healthy). It kept
any such False of the same generation, however old: a policyRef ConfigMap broken and then mended, with no edit of
the CanaryRollout, left Ready False for good.

Left for canary/controller.py (not this session's file): a finished CanaryRollout is `_settled` (no parse, no
read, no write until its spec is edited), so nothing judges the mended ConfigMap; and when something does,
`_status` skips a write that changes only the conditions, and `crd.conditions` cannot tell a refusal written this
tick (141 f, kept) from an older one without being told. Decision 155: a settled CanaryRollout whose Ready is
False for a spec `crd.parse` refused, of its generation, is parsed again at each tick (`Controller._ready_again`):
Ready True once it reads, one write; a new refusal's words replace the old; nothing is run again.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing
import yaml

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _status(custom: Any) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]


def _ready(custom: Any) -> dict[str, Any]:
    return next(c for c in _status(custom)["conditions"] if c["type"] == "Ready")


def _put_policy(api: Any, text: str) -> None:
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pol", "namespace": "ml"},
                            "data": {"policy.yaml": text}})


def _running_on_policyref(world: Any) -> None:
    """CanaryRollout r0 (v3), its policy in ConfigMap pol's `policy.yaml`, driven to its first step."""
    api, op, custom = world
    _put_policy(api, yaml.safe_dump(fleet.FAST_POLICY))
    obj = fleet.rollout_object(0, "v3")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    _progressing(op, custom, api, i=0)


def test_a_policyref_configmap_broken_then_mended_leaves_ready_true(world: Any) -> None:
    """Mid-rollout the policy's ConfigMap gets a typo: stable 100%, aborted, Ready False ConfigError (141 f). The
    ConfigMap is mended, no edit of the CanaryRollout: Ready should say the spec reads again (True), with the
    end kept in RolledBack."""
    api, op, custom = world
    _running_on_policyref(world)
    bad = dict(fleet.FAST_POLICY)
    bad["analysis"] = {**bad["analysis"], "intervall": "1s"}
    _put_policy(api, yaml.safe_dump(bad))
    op.tick()
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ABORTED
    assert (_ready(custom)["status"], _ready(custom)["reason"]) == ("False", "ConfigError")
    op.tick()  # (the finished rollout's finalizer comes off: a write of its own)
    rv = _rv(custom)
    for _ in range(3):  # still broken: nothing written again (no write a tick)
        op.tick()
    assert _rv(custom) == rv and _ready(custom)["reason"] == "ConfigError"
    worse = dict(fleet.FAST_POLICY)
    worse["steps"] = "many"
    _put_policy(api, yaml.safe_dump(worse))  # broken another way: the message follows, once
    op.tick()
    assert (_ready(custom)["status"], _ready(custom)["reason"]) == ("False", "ConfigError")
    assert "steps" in _ready(custom)["message"] and "intervall" not in _ready(custom)["message"], _ready(custom)
    _put_policy(api, yaml.safe_dump(fleet.FAST_POLICY))
    with structlog.testing.capture_logs() as logs:
        op.tick()
        rv = _rv(custom)
        for _ in range(3):
            op.tick()
    assert _ready(custom)["status"] == "True", _ready(custom)
    assert "reads again" in _ready(custom)["message"] and "aborted" in _ready(custom)["message"], _ready(custom)
    assert _rv(custom) == rv, "one status write when Ready changed, none after"
    assert [e["event"] for e in logs].count("rollout.ready_again") == 1, logs
    rolled = next(c for c in _status(custom)["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True" and _status(custom)["phase"] == rl.ABORTED  # the end is kept
    assert vs(api, 0)[0] == [100, 0], "nothing run or routed again"


def _rv(custom: Any) -> str:
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    return str(obj["metadata"]["resourceVersion"])


def test_a_refusal_of_the_run_not_of_the_spec_stays_false_over_the_end(world: Any) -> None:
    """The re-check parses the spec (`crd.parse`), so it clears only `crd.parse`'s refusals (they name the
    CanaryRollout). A ConfigError of the run's, raised where the spec parsed (a gate needing `spec.triton`, a
    custom query answering no number), is not re-checked by parsing: Ready stays False and nothing is written."""
    api, op, custom = world
    _running_on_policyref(world)
    _put_policy(api, yaml.safe_dump({**fleet.FAST_POLICY, "analysis": {**fleet.FAST_POLICY["analysis"], "x": 1}}))
    op.tick()
    _put_policy(api, yaml.safe_dump(fleet.FAST_POLICY))
    assert _status(custom)["phase"] == rl.ABORTED and _ready(custom)["reason"] == "ConfigError"
    run_refusal = "check 'custom': the query returns 'NaN', not a number"  # as canary/metrics/answers.py says it
    conds = [c for c in _status(custom)["conditions"] if c["type"] != "Ready"]
    custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": {
        "conditions": conds + [{**_ready(custom), "message": run_refusal}]}})
    op.tick()  # (the finished rollout's finalizer comes off: a write of its own)
    rv = _rv(custom)
    for _ in range(3):
        op.tick()
    assert (_ready(custom)["status"], _ready(custom)["message"]) == ("False", run_refusal), _ready(custom)
    assert _rv(custom) == rv

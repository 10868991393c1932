"""`spec.onPrometheusOutage` and the policy's `failure.on_deadline`: the CR's field is about Prometheus
that cannot be asked, the policy's about a step with no verdict at its deadline. The same policy decides
the same way in a file (`canary promote`) and in a CanaryRollout. Against the strict API emulator and a
real Prometheus."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration


def _short_deadline_policy(**analysis: Any) -> dict[str, Any]:
    """FAST_POLICY with a step's deadline 6 s after its start, and `on_deadline: rollback` said outright."""
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["analysis"].update(analysis)
    pol["failure"] = {"max_failed_looks": 1, "no_data_deadline": "1s", "on_deadline": "rollback"}
    return pol


def _until_settled(op: Any, custom: Any, timeout: float = 60) -> dict[str, Any]:
    """Tick until r0 has ended or is held (a held rollout is not terminal), or fail after `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        op.tick()
        st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
        if st.get("phase") in rl.TERMINAL or st.get("phase") == rl.PAUSED:
            return st
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready" and c["status"] == "False"]
        assert not ready, ready
        time.sleep(0.2)
    pytest.fail(f"r0 neither ended nor was held: {st.get('phase')}")


def test_a_measured_step_without_a_verdict_follows_the_policy_whatever_on_prometheus_outage_says(world: Any) -> None:
    """Policy `on_deadline: rollback`, CR `onPrometheusOutage: hold` (as canary/deploy/examples has them), and a
    good canary that cannot reach `min_canary_requests`: Prometheus answered every look, so the step ends as
    the policy says, rolled back, as `canary promote` ends it. The CR's `hold` was applied to the policy
    wholesale: the rollout was held at 80/20, waiting for a person, with the policy saying rollback."""
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2", onPrometheusOutage="hold")
    obj["spec"]["policy"] = _short_deadline_policy(min_canary_requests=10**12)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    st = _until_settled(op, custom)
    assert st["phase"] == rl.ROLLED_BACK, (st.get("phase"), st.get("reason"))
    assert vs(api, 0)[0] == [100, 0]
    assert "no verdict after" in st["reason"] and "Prometheus unreachable" not in st["reason"]


def test_prometheus_unreachable_past_the_deadline_is_held_when_the_rollout_says_hold(world: Any) -> None:
    """The same policy (`on_deadline: rollback`), Prometheus gone mid-step: `onPrometheusOutage: hold` keeps
    the canary's weights and records the rollout paused, as the CRD documents."""
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2", onPrometheusOutage="hold")
    obj["spec"]["policy"] = _short_deadline_policy(min_canary_requests=10**12)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    _progressing(op, custom, api)
    dead = PrometheusProvider("http://127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    st = _until_settled(op, custom)
    assert st["phase"] == rl.PAUSED, (st.get("phase"), st.get("reason"))
    assert vs(api, 0)[0] == [80, 20] and st["reason"].startswith("Prometheus unreachable: no verdict after")


def test_a_policy_edited_to_an_invalid_one_mid_rollout_sends_the_split_to_stable(world: Any) -> None:
    """A GitOps push of a policy with a typo while v2 has 20%: the error names the rollout and the field,
    and the traffic is not left split under a policy nobody can read: stable 100%, aborted."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    bad = copy.deepcopy(fleet.FAST_POLICY)
    bad["checks"][0]["max_incrase_pct"] = bad["checks"][0].pop("max_increase_pct")
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": {"policy": bad}})
    op.tick()
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED, record["phase"]
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.ABORTED and st["weights"] == {"stable": 100, "canary": 0}
    # a person's edit, said as the edit's end, not as an outage (`failed: ...`, `infrastructure`; decision 801)
    assert st["reason"].startswith(f"{rl.REFUSED_EDIT}: CanaryRollout ml/r0 spec.policy: checks[0].max_incrase_pct: "
                                   "unknown key (did you mean `max_increase_pct`?)"), st["reason"]
    assert st["endCause"] == record["end_cause"] == "operator"
    # and Ready says the spec cannot be run: it was "True, Reconciled" once the end was written, which a GitOps
    # health check (Argo CD reads Ready) showed as healthy
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] in ("PolicyError", "ConfigError"), ready
    assert "max_incrase_pct" in ready["message"]
    op.tick()  # a later tick of the ended rollout keeps it so
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "False"


def test_a_newer_crds_field_on_a_running_rollout_neither_ends_it_nor_stops_a_pause(world: Any) -> None:
    """A CRD newer than the controller (applied first, mid upgrade) gives every CanaryRollout its new field's
    default, and an on-call `kubectl patch` of `spec.action: pause` writes a generation that carries it: refused
    as unknown, the rollout at 20% was sent to stable 100% and aborted instead of paused. It is paused, its
    weights kept (decision 693)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "pause", "maxStepWeight": 50}})
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        op.tick()
        op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert (st["phase"], vs(api, 0)[0]) == (rl.PAUSED, [80, 20]), (st["phase"], st.get("reason"))
    # ...and on-call is told, once, that the field does nothing here (decision 748: before, nothing said it)
    ignored = [e for e in logs if e["event"] == "rollout.fields_ignored"]
    assert [(e["fields"], e["log_level"]) for e in ignored] == [("spec.maxStepWeight", "warning")], ignored
    assert ignored[0]["rollout"] == "ml/r0" and "upgrade the controller" in ignored[0]["hint"], ignored
    # ...and so is the person who set it, on the CanaryRollout (`kubectl describe`), once (748's addendum)
    told = [e["message"] for e in api.list("", "events", "ml")
            if e["reason"] == "RolloutFieldsIgnored" and e["involvedObject"]["kind"] == crd.KIND]
    assert len(told) == 1 and "spec.maxStepWeight" in told[0] and "Upgrade the controller" in told[0], told


def test_a_typo_in_the_edit_that_supersedes_a_running_rollout_is_refused_not_passed_over(world: Any) -> None:
    """693 passes over an unknown key on a rollout under way, judged by the status's phase. An edit that supersedes
    it (another canary version) starts a new rollout: the key is then on a rollout not yet started (672)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"canaryVersion": "v3", "onPrometheusOutag": "hold"}})
    op.tick()
    op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    ready = next(c for c in st.get("conditions", []) if c["type"] == "Ready")
    assert vs(api, 0)[0] == [100, 0] and st.get("canaryVersion") != "v3", st
    assert ready["status"] == "False" and "onPrometheusOutag" in ready["message"], (st["phase"], ready)

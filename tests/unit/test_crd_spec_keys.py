"""A CanaryRollout's spec keys are the CRD's: a key it does not know is refused, naming it, before anything moves.

The API server prunes a key the CRD does not declare (kubectl's strict validation refuses it), but the
controller read a spec as it came: on an emulator (kmock) or any server that keeps it, a typo such as
`onPrometheusOutag: hold` ran with the default (rollback), and `triton: {canaryURL: ...}` ran with no canary
URL, silently (decision 672)."""

from __future__ import annotations

from typing import Any

import pytest

from canary import crd
from canary.errors import ConfigError
from tests import fleet


def refusal(**spec: Any) -> str:
    with pytest.raises(ConfigError) as err:
        crd.parse(fleet.rollout_object(0, "v2", **spec))
    return str(err.value)


@pytest.mark.parametrize(("spec", "says"), [
    ({"onPrometheusOutag": "hold"}, "spec.onPrometheusOutag: unknown field (did you mean onPrometheusOutage?)"),
    ({"canaryversion": "v3"}, "spec.canaryversion: unknown field (did you mean canaryVersion?)"),
    ({"triton": {"canaryURL": "m-canary:8000"}}, "spec.triton.canaryURL: unknown field (did you mean canaryUrl?)"),
    ({"replicas": 3}, "spec.replicas: unknown field (the fields are "),
])
def test_an_unknown_spec_key_is_refused_naming_it(spec: dict[str, Any], says: str) -> None:
    message = refusal(**spec)
    assert message.startswith("CanaryRollout ml/r0: "), message
    assert says in message, message


def test_an_unknown_policy_ref_key_is_refused_naming_it() -> None:
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml", "namespace": "other"}
    with pytest.raises(ConfigError) as err:
        crd.parse(obj, configmap=lambda ns, name: {"policy.yaml": "steps: [5, 100]"})
    assert "spec.policyRef.namespace: unknown field" in str(err.value), str(err.value)


def test_every_field_the_crd_declares_is_known() -> None:
    """The known keys are the manifest's: a field added to the CRD and not here would be refused."""
    import yaml
    from pathlib import Path

    doc = yaml.safe_load((Path(crd.__file__).parent / "deploy" / "crd-canaryrollout.yaml").read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(crd.SPEC_KEYS) == set(spec)
    for name, keys in crd.SPEC_SUBKEYS.items():
        assert set(keys) == set(spec[name]["properties"]), name


@pytest.mark.parametrize("phase", ["pending", "progressing", "paused", "promoting"])
def test_a_running_rollouts_unknown_key_is_a_newer_crds_and_does_not_end_it(phase: str) -> None:
    """A CRD newer than the controller, applied first mid upgrade, adds its new field's `default` to every
    object the API server reads from etcd (and to every generation written after: a `kubectl patch` of
    `spec.action: pause`): refused, every rollout in flight was ended at stable 100% by `_failed`. A running
    rollout goes on (decision 693)."""
    obj = fleet.rollout_object(0, "v2", action="pause", maxStepWeight=50)
    obj["metadata"]["generation"] = 4
    obj["status"] = {"phase": phase, "observedGeneration": 3}
    spec = crd.parse(obj)
    assert (spec.action, spec.generation) == ("pause", 4)


@pytest.mark.parametrize("status", [None, {}, {"phase": "rolled_back", "observedGeneration": 1}])
def test_an_unknown_key_of_a_rollout_not_running_is_still_refused(status: dict[str, Any] | None) -> None:
    """Not started (nothing moved: it waits for the controller that knows the field) or ended: refused."""
    obj = fleet.rollout_object(0, "v2", onPrometheusOutag="hold")
    if status is not None:
        obj["status"] = status
    with pytest.raises(ConfigError, match="spec.onPrometheusOutag: unknown field"):
        crd.parse(obj)


def test_the_refusal_says_both_causes_and_the_controllers_release() -> None:
    """A real API server prunes a field its CRD does not declare, so there a refused key is one the installed CRD
    declares (newer than the controller): "the CRD declares no such field" sent on-call to a CRD that did. The
    refusal names the controller's release and both ways out (decision 693)."""
    from canary import rollout as rl

    message = refusal(maxStepWeight=50)
    assert f"this controller ({rl.WRITER}) reads no such field" in message, message
    assert "correct the name, or, where the installed CRD declares it" in message
    assert "upgrade the controller to the CRD's release" in message
    assert "the CRD declares no such field" not in message

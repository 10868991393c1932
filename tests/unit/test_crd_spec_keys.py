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

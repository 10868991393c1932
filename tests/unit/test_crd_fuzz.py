"""Whatever a CanaryRollout object holds, `crd.parse` raises ConfigError naming it, nothing else
(a bad object is reported on its status; it must never crash a controller tick)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary import crd
from canary.errors import ConfigError
from tests import fleet

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=20)
FIELDS = ["model", "canaryVersion", "stableVersion", "virtualService", "destinationRule", "route", "action",
          "actionReason", "onForeignEdit", "onPrometheusOutage", "triton", "policy", "policyRef"]


def _parse(obj: Any, configmap: Any = None) -> None:
    try:
        crd.parse(obj, configmap=configmap)
    except ConfigError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_value_in_any_spec_field_is_a_config_error_or_valid(field: str, value: Any) -> None:
    obj = fleet.rollout_object(0, "v2")
    obj["spec"][field] = value
    _parse(obj)


@settings(max_examples=200, deadline=None)
@given(meta=json_values, spec=json_values)
def test_any_metadata_and_spec_shapes(meta: Any, spec: Any) -> None:
    _parse({"metadata": meta, "spec": spec})


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["namespace", "name", "generation", "uid"]), value=json_values)
def test_any_metadata_value_on_a_valid_rollout(field: str, value: Any) -> None:
    """The random shapes above mostly stop at the spec; here everything else is valid."""
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"][field] = value
    _parse(obj)


@pytest.mark.parametrize("change,field", [
    ({"metadata": {"namespace": 5, "name": "r0"}}, "metadata.namespace"),
    ({"metadata": {"namespace": "ml", "name": "r0", "generation": True}}, "metadata.generation"),
    ({"metadata": {"namespace": "ml", "name": "r0", "generation": "1"}}, "metadata.generation"),
    ({"metadata": {"namespace": "ml", "name": "r0", "generation": 1.5}}, "metadata.generation"),
    ({"spec": {"triton": "x"}}, "spec.triton"),
    ({"spec": {"triton": {"canaryUrl": 5}}}, "spec.triton"),
    ({"spec": {"canaryVersion": "v2\n"}}, "spec.canaryVersion"),
])
def test_each_malformed_field_is_named(change: dict[str, Any], field: str) -> None:
    obj = fleet.rollout_object(0, "v2")
    for part, values in change.items():
        obj[part] = {**obj[part], **values}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        crd.parse(obj)


VALID_POLICY = yaml.safe_dump(fleet.FAST_POLICY)


@settings(max_examples=200, deadline=None)
@given(at=st.integers(0, len(VALID_POLICY)), insert=st.text(max_size=12), cut=st.integers(0, 8))
def test_a_mutated_valid_configmap_policy(at: int, insert: str, cut: int) -> None:
    """Near-valid texts: these reach the strict YAML rules and the policy's own checks."""
    _configmap_text(VALID_POLICY[:at] + insert + VALID_POLICY[at + cut:])


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_configmap_policy_text(text: str) -> None:
    _configmap_text(text)


def _configmap_text(text: str) -> None:
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "p", "key": "policy.yaml"}
    _parse(obj, configmap=lambda ns, name: {"policy.yaml": text})


def test_a_configmap_policy_with_a_yaml_coercion_names_the_configmap() -> None:
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "p", "key": "policy.yaml"}
    text = "steps: [10, 100]\nchecks: [{name: e, kind: error_rate, max_rate_pct: 1, hard: yes}]\n"
    try:
        crd.parse(obj, configmap=lambda ns, name: {"policy.yaml": text})
    except ConfigError as exc:
        assert "ConfigMap ml/p[policy.yaml]" in str(exc)
    else:
        raise AssertionError("'hard: yes' must not be read as true")


@pytest.mark.parametrize(("field", "value", "says"), [
    ("virtualService", "a/b", "CanaryRollout ml/r0: VirtualService"),
    ("model", "rec_model", "'rec_model' is not a Kubernetes object name"),
    ("destinationRule", "../dr", "CanaryRollout ml/r0: DestinationRule '../dr'"),
])
def test_names_kubernetes_would_refuse_are_a_config_error_naming_the_rollout(field: str, value: str, says: str) -> None:
    """Refused when parsed, before any request (a model name that is no object name needs spec.virtualService)."""
    obj = fleet.rollout_object(0, "v2")
    obj["spec"].pop("virtualService", None)
    obj["spec"][field] = value
    with pytest.raises(ConfigError, match=re.escape(says)):
        crd.parse(obj)
    obj["spec"]["virtualService"] = "m0"
    if field == "model":
        assert crd.parse(obj).target.model == "rec_model"  # a Triton model name may have '_'; the VS may not

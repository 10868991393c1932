"""A second attacker on input validation (docs/decisions.md 98): inputs that were accepted, or refused
only after something was created, each refused before anything is sent, naming the object and field.

Pure: no cluster (a kubeconfig pointing at a closed port: any request would fail as unreachable, exit 3,
not 2), no Prometheus."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary import crd
from canary.errors import ConfigError, NotFound
from tests import fleet


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(copy.deepcopy(fleet.FAST_POLICY)))
    return fleet.write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{_closed_port()}"), policy


# ---- CanaryRollout spec.policyRef: its names go into a request path ------------------------------------------


def _ref(**ref: Any) -> dict[str, Any]:
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml", **ref}
    return obj


@pytest.mark.parametrize(("ref", "field"), [
    ({"configMap": "../x"}, "spec.policyRef.configMap"),
    ({"configMap": "a/b"}, "spec.policyRef.configMap"),
    ({"configMap": "Pol"}, "spec.policyRef.configMap"),
    ({"configMap": "pol?watch=1"}, "spec.policyRef.configMap"),
    ({"key": "../policy.yaml"}, "spec.policyRef.key"),
    ({"key": "policy yaml"}, "spec.policyRef.key"),
    ({"key": "k" * 254}, "spec.policyRef.key"),
])
def test_a_policy_ref_that_is_no_configmap_name_or_key_is_refused_before_it_is_read(ref: dict[str, Any],
                                                                                   field: str) -> None:
    """'../x' went into the ConfigMap's request path (decision 64 checks the names of the objects a rollout
    drives; this one was left out), and a missing ConfigMap's error named neither the rollout nor the field."""
    asked: list[str] = []

    def configmap(ns: str, name: str) -> dict[str, str]:
        asked.append(name)
        return {}

    with pytest.raises(ConfigError) as err:
        crd.parse(_ref(**ref), configmap=configmap)
    assert f"CanaryRollout ml/r0: {field}" in str(err.value)
    assert asked == [], "the ConfigMap was asked for under a name that is none"


def test_a_missing_policy_configmap_names_the_rollout_and_the_field() -> None:
    def configmap(ns: str, name: str) -> dict[str, str]:
        raise NotFound(f"ConfigMap {ns}/{name} cannot be read: (404) Not Found")

    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0: spec\.policyRef\.configMap: ConfigMap ml/pol "):
        crd.parse(_ref(), configmap=configmap)
    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0: spec\.policyRef\.key: ConfigMap ml/pol has no key"):
        crd.parse(_ref(), configmap=lambda ns, name: {"other.yaml": ""})
    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0 spec\.policyRef: ConfigMap ml/pol\[policy\.yaml\]: "
                                          r"2 problems"):
        crd.parse(_ref(), configmap=lambda ns, name: {"policy.yaml": "steps: [10]\nchecks: []\n"})

"""A policyRef ConfigMap that cannot be read: the Ready condition's message carries the API's Status
message, not the client's exception text with its HTTP headers and body."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from canary.controller import Controller
from canary.errors import ConfigError


class Core:
    def read_namespaced_config_map(self, name: str, namespace: str) -> None:
        exc = ApiException(status=404, reason="Not Found")
        exc.headers = {"Audit-Id": "0d6c5c5e", "Content-Type": "application/json"}
        exc.body = json.dumps({"kind": "Status", "message": f'configmaps "{name}" not found', "code": 404})
        raise exc


def test_an_unreadable_policy_configmap_is_named_with_the_apis_message_only() -> None:
    with pytest.raises(ConfigError) as err:
        Controller._configmap(SimpleNamespace(core=Core()), "ml", "policies")  # type: ignore[arg-type]
    assert str(err.value) == 'ConfigMap ml/policies cannot be read: 404 configmaps "policies" not found'
    assert "Audit-Id" not in str(err.value) and "HTTP response" not in str(err.value)

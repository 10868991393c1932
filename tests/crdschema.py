"""CRD structural schemas as plain JSON Schema, for validating objects in tests.

`nullable` becomes an extra null type; a pruned object (properties without
x-kubernetes-preserve-unknown-fields) rejects unknown fields instead of
silently dropping them, so a typo in a manifest fails the test.
"""

from __future__ import annotations

from typing import Any


def structural_to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [structural_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: structural_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out

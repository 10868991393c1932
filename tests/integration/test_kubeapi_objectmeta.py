"""The emulator refuses the labels and annotations an API server refuses, as it words it (decision 840).

It stored any key and any label value: a product path writing `modelcanary.dev/a b`, a second '/', a label value
with a '/' or of 64 characters passed every test here and was refused on the first cluster. The rules are
apimachinery's (`ValidateObjectMetaAccessor`: `ValidateLabels`, `ValidateAnnotations`), checked through the official
client as a product path meets them: 422 Invalid, `<Kind>.<group> "<name>" is invalid: <field>: Invalid value:
"<key>": <why>`, each field error in details.causes, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary.sandbox import kubeapi, objectmeta
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration

GROUP = "networking.istio.io"
NAME_RULE = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
              "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
              "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def _cm(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ml", **meta},
            "data": {"v": "x"}}


def _vs() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "VirtualService", "metadata": {"name": "m0", "namespace": "ml"},
            "spec": {"hosts": ["m0"], "http": [{"route": [{"destination": {"host": "m0", "subset": "stable"},
                                                           "weight": 100}]}]}}


@pytest.mark.parametrize(("key", "why"), [
    ("a/b/c", "a valid label key must consist of"),
    ("/x", "prefix part must be non-empty"),
    ("x/", "name part must be non-empty"),
    ("x" * 64, "name part must be no more than 63 bytes"),
    ("d." * 126 + "dd/x", "prefix part must be no more than 253 bytes"),
    ("Example.com/x", "prefix part a lowercase RFC 1123 subdomain"),
    ("ex_ample.com/x", "prefix part a lowercase RFC 1123 subdomain"),
    ("x-", NAME_RULE), ("-x", NAME_RULE), ("a b", NAME_RULE), ("é", NAME_RULE), ("", "name part must be non-empty"),
])
def test_a_label_key_the_api_server_refuses_is_refused(key: str, why: str) -> None:
    assert any(why in m for m in objectmeta.key_problems(key)), objectmeta.key_problems(key)


@pytest.mark.parametrize("key", ["x", "x" * 63, "X_y.z-1", "modelcanary.dev/rollout", "d." * 125 + "ddd/" + "x" * 63,
                                 "kubectl.kubernetes.io/last-applied-configuration", "a1/B"])
def test_a_qualified_name_is_a_key(key: str) -> None:
    assert objectmeta.key_problems(key) == []


@pytest.mark.parametrize(("value", "ok"), [("", True), ("v" * 63, True), ("1.2_rc-3", True), ("v" * 64, False),
                                           ("a/b", False), ("v2-", False), ("_v", False), ("1.2+cu121", False)])
def test_a_label_value_is_empty_or_a_name_of_at_most_63(value: str, ok: bool) -> None:
    assert (objectmeta.value_problems(value) == []) is ok


def test_a_bad_annotation_key_is_422_worded_as_the_api_server_and_nothing_changes() -> None:
    """A merge patch of a VirtualService adding `modelcanary.dev/a b`: refused whole, with the weights it carried."""
    import kubernetes.client as kc

    with KubeAPIServer(seed=[_vs()]) as api:
        before = api.get(GROUP, "virtualservices", "ml", "m0")
        custom = kc.CustomObjectsApi(api.api_client())
        with pytest.raises(kc.ApiException) as exc:
            custom.patch_namespaced_custom_object(
                GROUP, "v1", "ml", "virtualservices", "m0",
                {"metadata": {"annotations": {"modelcanary.dev/a b": "1"}},
                 "spec": {"http": [{"route": [{"destination": {"host": "m0", "subset": "stable"}, "weight": 0}]}]}})
        body = json.loads(exc.value.body)
        assert exc.value.status == 422 and body["reason"] == "Invalid"
        assert body["message"] == (f'VirtualService.networking.istio.io "m0" is invalid: metadata.annotations: '
                                   f'Invalid value: "modelcanary.dev/a b": {NAME_RULE}')
        assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "metadata.annotations",
                                              "message": f'Invalid value: "modelcanary.dev/a b": {NAME_RULE}'}]
        assert api.get(GROUP, "virtualservices", "ml", "m0") == before


def test_labels_are_checked_key_and_value_and_several_problems_are_one_message() -> None:
    import kubernetes.client as kc

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        with pytest.raises(kc.ApiException) as exc:
            core.create_namespaced_config_map("ml", _cm("a", labels={"model": "fraud/model", "ok": "v" * 64}))
        body = json.loads(exc.value.body)
        assert exc.value.status == 422
        assert body["message"] == (f'ConfigMap "a" is invalid: [metadata.labels: Invalid value: "fraud/model": '
                                   f'{VALUE_RULE}, metadata.labels: Invalid value: "{"v" * 64}": must be no more than '
                                   f'63 bytes]')
        assert [c["field"] for c in body["details"]["causes"]] == ["metadata.labels"] * 2
        assert api.get("", "configmaps", "ml", "a") is None
        # an annotation's key is checked lowercased (any case), a label's prefix is not; an empty label value is one
        core.create_namespaced_config_map("ml", _cm("b", labels={"empty": ""}, annotations={"Example.COM/X": "1"}))
        with pytest.raises(kc.ApiException) as upper:
            core.create_namespaced_config_map("ml", _cm("c", labels={"Example.COM/X": "1"}))
        assert upper.value.status == 422 and "prefix part a lowercase RFC 1123 subdomain" in upper.value.body


def test_a_map_of_anything_but_strings_is_400_and_a_seed_is_checked_too() -> None:
    """A number sent as one (JSON's, past any client's model) cannot be decoded into the API server's map of
    strings; a test's seed or foreign edit is what a cluster could hold, so it is checked as a write is."""
    import urllib.error
    import urllib.request

    with KubeAPIServer() as api:
        req = urllib.request.Request(f"{api.url}/api/v1/namespaces/ml/configmaps", method="POST",
                                     data=json.dumps(_cm("a", annotations={"n": 1})).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 400 and "metadata.annotations" in exc.value.read().decode()
        assert api.get("", "configmaps", "ml", "a") is None
        with pytest.raises(kubeapi.ApiError, match='ConfigMap "s" is invalid: metadata.labels'):
            api.handler.put_object(_cm("s", labels={"a b": "x"}))


# --- what the API server takes, the emulator takes (decision 861) ----------------------------------------------------

def test_an_annotation_key_go_lowercases_to_a_qualified_name_is_taken() -> None:
    """The API server checks an annotation's key as Go's strings.ToLower gives it: 'İ' (U+0130) becomes 'i' there,
    where Python's lower() gives 'i' and a combining dot (refused). The key is stored as sent."""
    import kubernetes.client as kc

    assert objectmeta.field_errors({"annotations": {"example.com/İtem": "1", "K": "2"}}) == []  # Kelvin sign too
    with KubeAPIServer() as api:
        kc.CoreV1Api(api.api_client()).create_namespaced_config_map("ml", _cm("a", annotations={"İtem": "1"}))
        assert api.get("", "configmaps", "ml", "a")["metadata"]["annotations"] == {"İtem": "1"}
    assert objectmeta.key_problems("İtem")  # a label's key is not lowercased: refused there


def test_a_null_label_or_annotation_value_is_stored_empty_as_the_api_server_decodes_it() -> None:
    """JSON's null in a map of strings decodes to "" in the API server (Go's decoder leaves the string's zero value);
    the official client sends a dict's None as null. Taken and stored as "", not refused 400."""
    import urllib.request

    with KubeAPIServer() as api:
        req = urllib.request.Request(f"{api.url}/api/v1/namespaces/ml/configmaps", method="POST",
                                     data=json.dumps(_cm("a", labels={"l": None}, annotations={"n": None})).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            assert res.status == 201
        meta = api.get("", "configmaps", "ml", "a")["metadata"]
        assert (meta["labels"], meta["annotations"]) == ({"l": ""}, {"n": ""})

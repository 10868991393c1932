"""The emulator's own request parsing (`kubeapi._ResourceRequest`) for the paths of registered resources: the same
fields kmock's `Request._parse` gives the handler, and kmock left to parse everything else (discovery, /version,
resources never registered). Its parse cost a third of the emulator's CPU per request (decision 1031)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp.test_utils
import kubernetes.client as kc
import pytest
from kmock._internal import rendering

from canary.sandbox import kubeapi
from tests import fleet

pytestmark = pytest.mark.integration

REGISTERED = [
    ("GET", "/apis/networking.istio.io/v1/namespaces/ml/virtualservices/m0"),
    ("GET", "/apis/networking.istio.io/v1beta1/namespaces/ml/destinationrules?labelSelector=a%3Db&watch=true"),
    ("GET", "/apis/networking.istio.io/v1/virtualservices"),
    ("PUT", "/apis/modelcanary.dev/v1alpha1/namespaces/ml/canaryrollouts/r0/status"),
    ("PATCH", "/api/v1/namespaces/ml/configmaps/m0-canary-history"),
    ("POST", "/api/v1/namespaces/ml/events?dryRun=All"),
    ("DELETE", "/api/v1/namespaces/ml/configmaps/x"),
]
KMOCKS = ["/version", "/version/", "/api", "/apis", "/api/v1", "/apis/networking.istio.io/v1",
          "/api/v1/namespaces/ml", "/api/v1/namespaces/ml/pods/p0", "/apis/nosuch.dev/v1/namespaces/ml/things/x",
          "/healthz"]


def _raw(method: str, path: str, body: bytes = b"") -> Any:
    headers = {"Content-Type": "application/merge-patch+json", "Authorization": "Bearer t"}
    raw = aiohttp.test_utils.make_mocked_request(method, path, headers=headers)
    raw._read_bytes = body  # what `read()` answers
    return raw


@pytest.mark.parametrize("method,path", REGISTERED)
def test_a_registered_resources_request_has_the_fields_kmock_parses(method: str, path: str) -> None:
    handler = kubeapi.StrictKubeAPI()
    handler.register(fleet.CANARY_RESOURCE)
    ours = kubeapi._ResourceRequest.of(_raw(method, path), handler.kinds)
    theirs = asyncio.run(rendering.Request._parse(_raw(method, path)))
    assert ours is not None
    for field in ("method", "params", "headers", "namespace", "name", "subresource"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.url == theirs.url and ours.url.path == theirs.url.path
    assert (ours.resource.group, ours.resource.version, ours.resource.plural) == \
        (theirs.resource.group, theirs.resource.version, theirs.resource.plural)


@pytest.mark.parametrize("path", KMOCKS)
def test_every_other_path_is_left_to_kmock(path: str) -> None:
    assert kubeapi._ResourceRequest.of(_raw("GET", path), kubeapi.StrictKubeAPI().kinds) is None


def test_a_served_resource_request_is_never_parsed_by_kmock_and_the_rest_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real server and the official client: reads, writes and a 404 of a registered resource answered
    as before, with kmock's parse not called; /version still through it."""
    parsed: list[str] = []
    real = rendering.Request._parse.__func__  # type: ignore[attr-defined]

    async def counted(cls: Any, raw: Any, **kw: Any) -> Any:
        parsed.append(raw.path)
        return await real(cls, raw, **kw)

    monkeypatch.setattr(rendering.Request, "_parse", classmethod(counted))
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        custom = kc.CustomObjectsApi(client)
        vs = custom.get_namespaced_custom_object("networking.istio.io", "v1", "ml", "virtualservices", "m0")
        vs["metadata"].setdefault("annotations", {})["a"] = "b"
        put = custom.replace_namespaced_custom_object("networking.istio.io", "v1", "ml", "virtualservices", "m0", vs)
        assert put["metadata"]["annotations"]["a"] == "b"
        assert int(put["metadata"]["resourceVersion"]) > int(vs["metadata"]["resourceVersion"])
        with pytest.raises(kc.ApiException) as gone:
            custom.get_namespaced_custom_object("networking.istio.io", "v1", "ml", "virtualservices", "nosuch")
        assert gone.value.status == 404
        with pytest.raises(kc.ApiException) as stale:  # the stale resourceVersion: 409, as before
            custom.replace_namespaced_custom_object("networking.istio.io", "v1", "ml", "virtualservices", "m0", vs)
        assert stale.value.status == 409
        assert parsed == []
        kc.VersionApi(client).get_code()
        assert parsed == ["/version/"]
    finally:
        client.close()
        api.stop()


def test_a_status_write_leaves_the_object_it_replaced_as_it_was() -> None:
    """A /status write stores a new object sharing the old one's spec (never copied again: stored objects are
    never mutated); the old object, as a watch or a test may still hold it, is unchanged, and the new one has the
    old spec and the new status, a resourceVersion of its own and the same generation."""
    import copy

    from canary import crd

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        api.handler.put_object(fleet.rollout_object(0, "v2"))
        key = (crd.GROUP, crd.PLURAL, "ml", "r0")
        before = api.handler.objects[key]
        was = copy.deepcopy(before)
        custom = kc.CustomObjectsApi(client)
        custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                                    {"status": {"phase": "progressing", "step": 1}})
        after = api.handler.objects[key]
        assert before == was and after is not before
        assert after["spec"] == was["spec"] and after["status"] == {"phase": "progressing", "step": 1}
        assert after["metadata"]["generation"] == was["metadata"]["generation"]
        assert int(after["metadata"]["resourceVersion"]) > int(was["metadata"]["resourceVersion"])
    finally:
        client.close()
        api.stop()

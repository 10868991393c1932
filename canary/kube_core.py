"""The core-API calls a rollout makes, without importing the kubernetes client's CoreV1Api (decision 1041).

`kubernetes.client.CoreV1Api` is generated code: its import builds pydantic validators for 412 methods and the
models they name, 1.0-1.2 s of CPU with bytecode (twice that where it is compiled from source), in every `canary
promote` of a pipeline, more than the rest of the command's start. A rollout calls six of its methods (its Events,
the DestinationRule host's Service and its pods, the history ConfigMap), each with a JSON body or for the raw
answer (`_preload_content=False`), so none needs the models. `CoreV1` sends the same requests through the same
`ApiClient` (its configuration, credentials, renewal on 401, TLS, pool): the same method, path, query parameters,
`Accept` and `Content-Type` the generated methods send, and the same `ApiException` on an answer outside 2xx
(tests/unit/test_kube_core.py compares each request with CoreV1Api's). It answers the raw urllib3 response
(`_preload_content=False`) or the parsed JSON (a dict, where CoreV1Api built a model: nobody reads those here).
The controller, `canary drift` and the sandbox keep CoreV1Api (they list with its models).
"""

from __future__ import annotations

import json
from typing import Any

# what every generated CoreV1Api method asks for: `ApiClient.select_header_accept` picks the first JSON type
_ACCEPT = "application/json"
# `patch_namespaced_config_map`'s default (`select_header_content_type`'s first JSON type), as CoreV1Api sends it
_PATCH_DEFAULT = "application/json-patch+json"


class CoreV1:
    """The subset of `kubernetes.client.CoreV1Api` a rollout uses, on `api_client` (see the module docstring)."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client

    # -- Events, Services, pods -----------------------------------------------------------------
    def create_namespaced_event(self, namespace: str, body: Any, **kw: Any) -> Any:
        return self._call("POST", "/api/v1/namespaces/{namespace}/events", {"namespace": namespace}, body=body, **kw)

    def read_namespaced_service(self, name: str, namespace: str, **kw: Any) -> Any:
        return self._call("GET", "/api/v1/namespaces/{namespace}/services/{name}",
                          {"name": name, "namespace": namespace}, **kw)

    def list_namespaced_pod(self, namespace: str, *, label_selector: str | None = None, **kw: Any) -> Any:
        query = [("labelSelector", label_selector)] if label_selector is not None else []
        return self._call("GET", "/api/v1/namespaces/{namespace}/pods", {"namespace": namespace}, query=query, **kw)

    # -- ConfigMaps (the rollout's history) -------------------------------------------------------
    def read_namespaced_config_map(self, name: str, namespace: str, **kw: Any) -> Any:
        return self._call("GET", "/api/v1/namespaces/{namespace}/configmaps/{name}",
                          {"name": name, "namespace": namespace}, **kw)

    def create_namespaced_config_map(self, namespace: str, body: Any, **kw: Any) -> Any:
        return self._call("POST", "/api/v1/namespaces/{namespace}/configmaps", {"namespace": namespace}, body=body,
                          **kw)

    def replace_namespaced_config_map(self, name: str, namespace: str, body: Any, **kw: Any) -> Any:
        return self._call("PUT", "/api/v1/namespaces/{namespace}/configmaps/{name}",
                          {"name": name, "namespace": namespace}, body=body, **kw)

    def patch_namespaced_config_map(self, name: str, namespace: str, body: Any, *, _content_type: str | None = None,
                                    **kw: Any) -> Any:
        return self._call("PATCH", "/api/v1/namespaces/{namespace}/configmaps/{name}",
                          {"name": name, "namespace": namespace}, body=body,
                          content_type=_content_type or _PATCH_DEFAULT, **kw)

    # -- the request --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, path_params: dict[str, str], *, body: Any = None,
              query: list[tuple[str, Any]] | None = None, content_type: str | None = None,
              _preload_content: bool = True, _request_timeout: Any = None) -> Any:
        if isinstance(_request_timeout, list):
            # CoreV1Api's argument check made a [connect, read] list the tuple the REST layer reads (a list it
            # ignores: no timeout at all; decision 1034)
            _request_timeout = tuple(_request_timeout)
        headers = {"Accept": _ACCEPT, **({"Content-Type": content_type} if content_type else {})}
        request = self.api_client.param_serialize(
            method=method, resource_path=path, path_params=path_params, query_params=query or [],
            header_params=headers, body=body, post_params=[], files={}, auth_settings=["BearerToken"],
            collection_formats={})
        # the generated methods' own call: a raw answer, ApiException for a status outside 2xx
        resp = self.api_client._call_with_legacy_options(request, {}, None, False, _request_timeout, True)
        if not _preload_content:
            return resp
        try:
            data = resp.data
            return json.loads(data) if data else None
        finally:
            resp.release_conn()

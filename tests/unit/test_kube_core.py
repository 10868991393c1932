"""`kube_core.CoreV1` sends what kubernetes' CoreV1Api sends for each call a rollout makes (decision 1041).

Both run on a real `kubernetes.client.ApiClient` whose REST layer records each request and answers it: the
method, URL (path and query), headers, body and timeout must be the same, and an answer outside 2xx the same
`ApiException`. What a promote loads is checked by its router's `core` (no CoreV1Api made)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as kc
from kubernetes.client.exceptions import ApiException

from canary.kube_core import CoreV1

BODY = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "resourceVersion": "7"},
        "data": {"history.json": "{}"}}
EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "rec-model."}, "reason": "Promoted",
         "involvedObject": {"kind": "VirtualService", "name": "rec-model", "namespace": "ml"}}
CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("create_namespaced_event", ("ml", EVENT), {"_request_timeout": 3.0}),
    ("read_namespaced_service", ("rec-model", "ml"), {"_preload_content": False, "_request_timeout": 2.5}),
    ("list_namespaced_pod", ("ml",), {"label_selector": "app=rec-model,version=v2.1.0", "_preload_content": False,
                                      "_request_timeout": 2.5}),
    ("read_namespaced_config_map", ("cm", "ml"), {"_preload_content": False, "_request_timeout": 5.0}),
    ("create_namespaced_config_map", ("ml", BODY), {"_preload_content": False, "_request_timeout": 5.0}),
    ("replace_namespaced_config_map", ("cm", "ml", BODY), {"_preload_content": False, "_request_timeout": 5.0}),
    ("patch_namespaced_config_map", ("cm", "ml", {"metadata": {"resourceVersion": "7"}, "data": {"p1": "x"}}),
     {"_preload_content": False, "_content_type": "application/merge-patch+json", "_request_timeout": 5.0}),
    ("patch_namespaced_config_map", ("cm", "ml", [{"op": "add", "path": "/data/p2", "value": "y"}]),
     {"_preload_content": False}),  # CoreV1Api's default content type for a patch
    # the other forms the callers' values can take (decision 1034): a (connect, read) timeout, as a tuple and as
    # a list (CoreV1Api's argument check made the list a tuple; the REST layer ignores a list), an int; a selector
    # with set-based and negated terms (quoted into the query as the generated method quotes it), a name to quote
    ("list_namespaced_pod", ("ml",), {"label_selector": "app=rec-model,version!=v1,tier in (a,b),!canary",
                                      "_preload_content": False, "_request_timeout": (1.5, 4.0)}),
    ("read_namespaced_config_map", ("cm", "ml"), {"_preload_content": False, "_request_timeout": [1.5, 4.0]}),
    ("read_namespaced_service", ("rec model/x", "ml"), {"_preload_content": False, "_request_timeout": 3}),
]


class _Answer:
    """What urllib3 hands the REST layer: a status, a body, headers."""

    def __init__(self, status: int, data: bytes) -> None:
        self.status, self.reason, self.data, self.headers = status, "x", data, {"Content-Type": "application/json"}
        self.released = False

    def release_conn(self) -> None:
        self.released = True


# an answer CoreV1Api's models take whichever call it answers (an Event needs its involvedObject)
ANSWER = {"metadata": {"uid": "u1", "resourceVersion": "8"}, "involvedObject": EVENT["involvedObject"]}


def _client(status: int = 200, data: bytes = json.dumps(ANSWER).encode()) -> Any:
    api = kc.ApiClient(kc.Configuration(host="https://k8s.example:6443", api_key={"authorization": "t0k"},
                                        api_key_prefix={"authorization": "Bearer"}))
    api.sent = []

    def request(method: str, url: str, headers: Any = None, body: Any = None, post_params: Any = None,
                _request_timeout: Any = None) -> Any:
        api.sent.append((method, url, dict(headers or {}), json.dumps(body, sort_keys=True), _request_timeout))
        return kc.rest.RESTResponse(_Answer(status, data))

    api.rest_client.request = request
    return api


@pytest.mark.parametrize(("name", "args", "kw"), CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_each_call_sends_what_corev1api_sends(name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    theirs, ours = _client(), _client()
    got_theirs = getattr(kc.CoreV1Api(theirs), name)(*args, **kw)
    got_ours = getattr(CoreV1(ours), name)(*args, **kw)
    assert ours.sent == theirs.sent and len(ours.sent) == 1, (ours.sent, theirs.sent)
    if kw.get("_preload_content", True) is False:  # the raw answer, read by the caller (`kube.raw_object`)
        assert type(got_ours) is type(got_theirs) and got_ours.data == got_theirs.data
    else:  # the object: a dict here, CoreV1Api's model there
        assert got_ours == ANSWER and got_theirs.metadata.uid == "u1"


@pytest.mark.parametrize("status", [401, 403, 404, 409, 422, 500])
@pytest.mark.parametrize("preload", [True, False])
def test_an_answer_outside_2xx_is_the_same_api_exception(status: int, preload: bool) -> None:
    answers = []
    for api in (kc.CoreV1Api(_client(status, b'{"kind": "Status", "code": %d}' % status)),
                CoreV1(_client(status, b'{"kind": "Status", "code": %d}' % status))):
        with pytest.raises(ApiException) as err:
            api.read_namespaced_config_map("cm", "ml", _preload_content=preload, _request_timeout=5.0)
        answers.append((type(err.value), err.value.status, err.value.reason))
    assert answers[0] == answers[1] and answers[1][1] == status, answers


@pytest.mark.parametrize(("status", "headers"), [
    (404, {}), (409, {}), (410, {}), (429, {"Retry-After": "2"}), (503, {"Retry-After": "1"})])
@pytest.mark.parametrize("preload", [True, False])
def test_what_the_callers_read_of_an_api_exception_is_the_same(status: int, headers: dict[str, str],
                                                                preload: bool) -> None:
    """The status, reason, body (the Status the callers' messages quote, `kube._status_message`), headers (a 429's
    or 503's Retry-After, `kube.retry_after_s`) and the text of the exception (decision 1034)."""
    body = json.dumps({"kind": "Status", "code": status, "message": f"m{status}",
                       "details": {"retryAfterSeconds": 2}}).encode()
    seen = []
    for make in (kc.CoreV1Api, CoreV1):
        api = _client(status, body)
        answer = api.rest_client.request

        def request(*args: Any, _answer: Any = answer, **kw: Any) -> Any:
            got = _answer(*args, **kw)
            got.response.headers.update(headers)
            return got

        api.rest_client.request = request
        with pytest.raises(ApiException) as err:
            make(api).patch_namespaced_config_map("cm", "ml", {"data": {"k": "v"}}, _preload_content=preload,
                                                   _content_type="application/merge-patch+json")
        exc = err.value
        seen.append((type(exc), exc.status, exc.reason, exc.body, dict(exc.headers or {}), exc.data, str(exc)))
    assert seen[0] == seen[1], seen
    assert seen[1][1] == status and json.loads(seen[1][3])["message"] == f"m{status}"
    assert seen[1][4].get("Retry-After") == headers.get("Retry-After")


def test_a_promotes_router_makes_no_corev1api() -> None:
    from canary.routing.istio import IstioRouter

    router = IstioRouter(_client())
    assert isinstance(router.core, CoreV1) and router.core.api_client is router.custom.api_client

"""The history ConfigMap against the strict API emulator: parts appended with one guarded merge
PATCH, read back merged mid-rollout, and a foreign write between two appends never has a part
added over it."""

from __future__ import annotations

from typing import Any

import kubernetes.client as kc
import pytest

from canary import history as hist
from canary.history_store import KEY, ConfigMapStore, Recorder, load_history
from canary.sandbox.kubeapi import KubeAPIServer
from tests.unit.test_history import drive
from tests.unit.test_runner import POLICY

pytestmark = pytest.mark.integration


def calls(api: KubeAPIServer) -> dict[Any, int]:
    return {k: v for k, v in api.handler.requests.items() if k[1] == "configmaps"}


def test_parts_are_one_guarded_patch_each_and_read_back_merged() -> None:
    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                       source="controller", flush_every=2)
        drive(rec, range(1, 3))  # the first flush: read (404) and create
        before = dict(calls(api))
        drive(rec, range(3, 9))  # three parts
        delta = {k: v - before.get(k, 0) for k, v in calls(api).items() if v != before.get(k, 0)}
        assert delta == {("PATCH", "configmaps"): 3}  # nothing read
        data = api.get("", "configmaps", "ml", "rec-canary-history")["data"]
        assert len(data) == 4 and KEY in data
        assert [lk["n"] for lk in load_history(core, "ml", "rec")["looks"]] == list(range(1, 9))  # mid-rollout

        # a foreign write between two appends (another writer's rewrite): the next PATCH gets 409 and
        # the flush reads and rewrites instead of adding a part over it
        other = hist.new_doc(rollout={"model": "rec", "canary_version": "v1", "stable_version": "v0",
                                      "started_at": 500.0}, policy=hist.policy_summary(POLICY))
        api.edit("", "configmaps", "ml", "rec-canary-history", lambda o: o.update(data={KEY: hist.dumps(other)}))
        drive(rec, range(9, 11))
        data = api.get("", "configmaps", "ml", "rec-canary-history")["data"]
        assert set(data) == {KEY}  # rewritten, no part over the foreign write
        doc = load_history(core, "ml", "rec")
        assert doc["rollout"]["canary_version"] == "v2" and [lk["n"] for lk in doc["looks"]] == [9, 10]


# --- writes whose answer was lost (decision 419) ---------------------------------------------------------------

LOST = [("500", b"", ""), ("200", b"{}", "application/json"), ("200", b"null", "application/json"),
        ("200", b"", "application/json"), ("200", b"<html><body>upstream connect error</body></html>", "text/html")]


def _answer_lost(api: KubeAPIServer, method: str, code: str, body: bytes, content_type: str, *,
                 apply: bool = True) -> list[str]:
    """The next ConfigMap write of `method` is applied (with `apply`), then answered `code`: 500 with etcd's
    timeout Status (the write may have landed), or 200 with `body` in place of the object (a proxy; an answer cut
    where its framing did not show it). Returns the writes it answered so."""
    import aiohttp.web

    real, hit = api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == "configmaps" and str(request.method.value).upper() == method \
                and not hit:
            hit.append(f"{method} {request.url.path}")
            if apply:
                await real(request)
            if code == "500":
                from canary.sandbox.kubeapi import status_body

                return aiohttp.web.json_response(status_body(500, "InternalError", "etcdserver: request timed out"),
                                                 status=500)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    return hit


@pytest.mark.parametrize("code,body,content_type", LOST, ids=["500", "{}", "null", "empty", "html"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"], ids=["create", "append", "rewrite"])
def test_a_history_write_that_landed_with_its_answer_lost_is_found_written_not_failed(
        method: str, code: str, body: bytes, content_type: str) -> None:
    """A history write (the first flush's create, a part's PATCH, a rewrite's PUT) applied and answered 500 `etcdserver:
    request timed out` or 200 with no object. Before: `history.write_failed` for records that are there (a promote's
    end then said `history.end_unwritten` of an end written), the PATCH's empty/`{}`/`null`/page answer read as
    "unexpected Kubernetes client error". Now the ConfigMap is read back: the write is found there, taken as written
    (`history.answer_lost`), and the next flush rewrites from what it holds; each look is recorded once."""
    import structlog.testing

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                       source="controller", flush_every=2)
        if method == "PUT":  # a rewrite: a foreign write since the last one makes the next flush read and PUT
            drive(rec, range(1, 3))
            api.edit("", "configmaps", "ml", "rec-canary-history", lambda o: o["metadata"].update(labels={
                **o["metadata"]["labels"], "touched": "yes"}))
            drive(rec, range(3, 4))
        elif method == "PATCH":
            drive(rec, range(1, 3))
        hit = _answer_lost(api, method, code, body, content_type)
        with structlog.testing.capture_logs() as logs:
            drive(rec, range({"PUT": 4, "PATCH": 3, "POST": 1}[method], 5))
        assert hit, calls(api)
        names = [e["event"] for e in logs]
        assert "history.write_failed" not in names and names.count("history.answer_lost") == 1, logs
        assert not rec.unwritten and rec.failed_flushes == 0
        drive(rec, range(5, 7))
        rec.flush()
        assert [lk["n"] for lk in load_history(core, "ml", "rec")["looks"]] == list(range(1, 7))


@pytest.mark.parametrize("code,body,content_type", LOST[:2], ids=["500", "{}"])
def test_a_history_write_answered_badly_and_not_applied_is_a_failed_write_written_again(
        code: str, body: bytes, content_type: str) -> None:
    """The same answers to a part's PATCH a proxy gave without forwarding it: the read-back does not find it, the
    flush failed (`history.write_failed`, records kept) and the next one rewrites them."""
    import structlog.testing

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                       source="controller", flush_every=2)
        drive(rec, range(1, 3))
        hit = _answer_lost(api, "PATCH", code, body, content_type, apply=False)
        with structlog.testing.capture_logs() as logs:
            drive(rec, range(3, 5))
        assert hit and [e["event"] for e in logs].count("history.write_failed") == 1 and rec.unwritten
        drive(rec, range(5, 7))
        rec.flush()
        assert not rec.unwritten
        assert [lk["n"] for lk in load_history(core, "ml", "rec")["looks"]] == list(range(1, 7))


@pytest.mark.parametrize("code,body,content_type", LOST[1:], ids=["{}", "null", "empty", "html"])
def test_a_history_read_answered_with_no_object_is_a_failed_read(code: str, body: bytes, content_type: str) -> None:
    """`canary report`'s read of the history (and a rewrite's) answered 200 with no object: KubeUnavailable naming
    the ConfigMap, as a 5xx is. Before: AttributeError (`'NoneType' object has no attribute 'resource_version'`)."""
    from canary.errors import KubeUnavailable

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                       source="controller", flush_every=2)
        drive(rec, range(1, 3))
        _answer_lost(api, "GET", code, body, content_type)
        with pytest.raises(KubeUnavailable, match="ConfigMap ml/rec-canary-history: .*not the object"):
            load_history(core, "ml", "rec")
        assert [lk["n"] for lk in load_history(core, "ml", "rec")["looks"]] == [1, 2]

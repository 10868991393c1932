"""The API emulator stays bounded (issue 10): its change log and write record keep a fixed number of
entries, a watch that fell behind the log gets 410 Expired (the client re-lists), and objects sent
out are never the stored ones' aliases that a client could change."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from canary.sandbox import kubeapi
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration


def cm(name: str, value: str = "x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ml"},
            "data": {"v": value}}


def watch(api: KubeAPIServer, since: str, timeout_s: int = 1) -> list[dict[str, Any]]:
    url = f"{api.url}/api/v1/namespaces/ml/configmaps?watch=true&resourceVersion={since}&timeoutSeconds={timeout_s}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


def test_the_change_log_is_bounded_and_an_expired_watch_gets_410(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubeapi, "LOG_SIZE", 20)
    with KubeAPIServer() as api:
        first = api.handler.put_object(cm("a"))["metadata"]["resourceVersion"]
        for i in range(100):
            api.handler.put_object(cm("a", str(i)))
        assert len(api.handler.log) <= 22
        events = watch(api, first)
        assert events == [{"type": "ERROR", "object": {**events[0]["object"], "code": 410, "reason": "Expired"}}]
        recent = api.handler.log[-3][0]
        got = watch(api, str(recent))
        assert [e["object"]["data"]["v"] for e in got] == ["98", "99"]  # replayed from the log, in order


def test_a_quiet_watch_from_the_first_version_is_not_expired() -> None:
    with KubeAPIServer() as api:
        api.handler.put_object(cm("a"))
        api.handler.put_object(cm("a", "y"))
        assert [e["type"] for e in watch(api, "1")] == ["MODIFIED"]


def test_the_write_record_is_bounded_and_counts_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubeapi, "WRITES_KEPT", 10)
    with KubeAPIServer() as api:
        client = api.api_client()
        import kubernetes.client as kc

        core = kc.CoreV1Api(client)
        for i in range(30):
            core.create_namespaced_config_map("ml", cm(f"c{i}"))
        assert api.handler.write_count == 30 and len(api.handler.writes) <= 11
        client.close()


def test_what_is_sent_out_is_not_the_stored_object() -> None:
    with KubeAPIServer() as api:
        api.handler.put_object(cm("a"))
        with api.handler.lock:
            stored = api.handler.objects[("", "configmaps", "ml", "a")]
        listed = api.list("", "configmaps", "ml")[0]
        listed["data"]["v"] = "changed by a test"
        assert stored["data"]["v"] == "x" and api.get("", "configmaps", "ml", "a")["data"]["v"] == "x"
        # what a write hands back is a copy too (`_store` returns the stored object to the served answers only)
        api.handler.put_object(cm("b"))["data"]["v"] = "changed by a test"
        api.handler.edit_object("", "configmaps", "ml", "a", lambda o: None)["data"]["v"] = "changed by a test"
        assert [o["data"]["v"] for o in api.list("", "configmaps", "ml")] == ["x", "x"]


def test_annotations_are_counted_in_utf8_bytes_at_the_limit() -> None:
    """Under the limit in characters and over it in bytes is refused; under it in bytes is stored (the check's
    count of characters only decides that a write is under it whatever its characters)."""
    with KubeAPIServer() as api:
        room = kubeapi.ANNOTATIONS_LIMIT - len("n")
        obj = cm("a")
        obj["metadata"]["annotations"] = {"n": "é" * (room // 2)}  # 2 bytes each: a byte under the limit
        api.handler.put_object(obj)
        obj["metadata"]["annotations"] = {"n": "é" * (room // 2 + 1)}
        with pytest.raises(kubeapi.ApiError, match="Too long"):
            api.handler.put_object(obj)


def test_a_configmap_over_1_mib_or_with_a_bad_key_is_refused_like_the_api_server() -> None:
    import kubernetes.client as kc

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        core.create_namespaced_config_map("ml", cm("a", "x" * 600_000))
        with pytest.raises(kc.ApiException) as big:  # a merge patch that takes it past the limit
            core.patch_namespaced_config_map("a", "ml", {"data": {"w": "y" * 500_000}},
                                             _content_type="application/merge-patch+json")
        assert big.value.status == 422 and "must have at most 1048576 bytes" in str(big.value.body)
        with pytest.raises(kc.ApiException) as bad:
            core.create_namespaced_config_map("ml", {**cm("b"), "data": {"no/slash": "x"}})
        assert bad.value.status == 422 and "valid config key" in str(bad.value.body)
        assert api.get("", "configmaps", "ml", "a")["data"] == {"v": "x" * 600_000}  # nothing half-applied
        assert api.get("", "configmaps", "ml", "b") is None


def test_finalizers_keep_a_deleted_object_until_the_last_one_is_removed() -> None:
    """As the API server: DELETE marks an object with finalizers (deletionTimestamp, MODIFIED) and keeps
    it; no finalizer may be added from then on (422); the write that removes the last one deletes it."""
    import kubernetes.client as kc
    from kubernetes.client.rest import ApiException

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        core.create_namespaced_config_map("ml", {**cm("f"), "metadata": {"name": "f", "namespace": "ml",
                                                                        "finalizers": ["a/x", "a/y"]}})
        core.delete_namespaced_config_map("f", "ml")
        got = api.get("", "configmaps", "ml", "f")
        assert got is not None and got["metadata"]["deletionTimestamp"]
        core.delete_namespaced_config_map("f", "ml")  # again: still there, still marked
        assert api.get("", "configmaps", "ml", "f")["metadata"]["deletionTimestamp"] == got["metadata"]["deletionTimestamp"]
        with pytest.raises(ApiException) as exc:
            core.patch_namespaced_config_map("f", "ml", {"metadata": {"finalizers": ["a/x", "a/y", "a/z"]}})
        assert exc.value.status == 422 and "no new finalizers" in exc.value.body
        core.patch_namespaced_config_map("f", "ml", {"metadata": {"finalizers": ["a/y"], "deletionTimestamp": None}})
        assert api.get("", "configmaps", "ml", "f")["metadata"]["deletionTimestamp"] == got["metadata"]["deletionTimestamp"]
        core.patch_namespaced_config_map("f", "ml", {"metadata": {"finalizers": None}})
        assert api.get("", "configmaps", "ml", "f") is None
        events = [e for _, e, key, _ in api.handler.log if key[3] == "f"]
        assert events == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
        core.create_namespaced_config_map("ml", cm("g"))
        core.patch_namespaced_config_map("g", "ml", {"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}})
        assert "deletionTimestamp" not in api.get("", "configmaps", "ml", "g")["metadata"]  # not a client's to set
        core.delete_namespaced_config_map("g", "ml")  # no finalizers: gone at once
        assert api.get("", "configmaps", "ml", "g") is None


def test_a_generated_name_is_cut_as_the_api_server_cuts_it() -> None:
    """The API server's name generator cuts `generateName` at 58 characters and adds 5: the Event of a
    CanaryRollout whose name is 253 characters long (decision 742's default name for a long model) is named on
    a cluster. The emulator added 5 to the whole base and refused the 259-character name 422 Invalid."""
    import kubernetes.client as kc

    from canary import kube

    with KubeAPIServer() as api:
        body = kube.event_body(namespace="ml", involved={"kind": "CanaryRollout", "name": "m" * 253}, reason="R",
                               message="x", warning=False, component="t", generate_name="m" * 253 + ".")
        made = kc.CoreV1Api(api.api_client()).create_namespaced_event("ml", body)
        assert made.metadata.name.startswith("m" * 58) and len(made.metadata.name) == 63


@pytest.mark.parametrize("char", ["é", "€", "😀"])  # 2, 3 and 4 bytes in UTF-8
def test_multibyte_annotations_straddling_the_limit_are_counted_as_the_api_server_counts(char: str) -> None:
    """Values of 2-, 3- and 4-byte characters, ASCII padding making the total exactly the limit in bytes
    (stored), then a byte over it (refused): around the emulator's shortcut (4 bytes a character) too, 4-byte
    characters filling the limit exactly. Keys are ASCII (a qualified name), so only values can be multibyte."""
    width = len(char.encode())
    with KubeAPIServer() as api:
        n = kubeapi.ANNOTATIONS_LIMIT // width - 1
        multi = char * n
        pad = "p" * (kubeapi.ANNOTATIONS_LIMIT - n * width - len("k") - len("v"))

        def notes(extra: str) -> dict[str, str]:
            return {"k": multi + extra, "v": pad}

        obj = cm("a")
        obj["metadata"]["annotations"] = notes("")
        api.handler.put_object(obj)  # exactly the limit
        obj["metadata"]["annotations"] = notes("x")
        with pytest.raises(kubeapi.ApiError, match="metadata.annotations: Too long: may not be more than 262144 bytes"):
            api.handler.put_object(obj)
        if width == 4:  # only 4-byte characters (and a 4-byte key): 4 x characters is the byte count itself
            obj["metadata"]["annotations"] = {"abcd": char * (kubeapi.ANNOTATIONS_LIMIT // 4 - 1)}
            api.handler.put_object(obj)
            obj["metadata"]["annotations"] = {"abcde": char * (kubeapi.ANNOTATIONS_LIMIT // 4 - 1)}
            with pytest.raises(kubeapi.ApiError, match="Too long"):
                api.handler.put_object(obj)


def test_a_lone_surrogate_in_an_annotation_is_counted_not_answered_500() -> None:
    """JSON may escape a lone UTF-16 surrogate (`"\\ud800"`, what Python's json.dumps writes for one); the API
    server's decoder reads it as U+FFFD (3 bytes). The count encoded it and raised: a 500 for such a write near
    the limit, stored under a quarter of it (the shortcut encodes nothing)."""
    with KubeAPIServer() as api:
        def post(value_chars: int) -> int:
            obj = cm(f"s{value_chars}")
            obj["metadata"]["annotations"] = {"k": "\ud800" + "p" * value_chars}
            req = urllib.request.Request(f"{api.url}/api/v1/namespaces/ml/configmaps", method="POST",
                                         data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        room = kubeapi.ANNOTATIONS_LIMIT - len("k") - 3  # the surrogate read as U+FFFD: 3 bytes
        assert [post(10), post(room), post(room + 1)] == [201, 201, 422]


def test_every_write_is_watched_as_it_was_stored_whatever_was_written_after() -> None:
    """Stored objects are shared by the store, the watch log and the answers (no copy, decision 764): each event a
    watch replays after later writes of the same object (merge and JSON patch, PUT, a status write, a delete kept by
    its finalizer, a foreign edit, a GitOps apply) is the object as that write answered it."""
    rollouts = kubeapi.Resource("modelcanary.dev", "canaryrollouts", "CanaryRollout", ("v1",),
                                status_subresource=True)
    base = f"/apis/{rollouts.group}/v1/namespaces/ml/canaryrollouts"
    with KubeAPIServer() as api:
        api.handler.register(rollouts)
        since = api.handler.put_object(cm("before"))["metadata"]["resourceVersion"]
        answers: list[dict[str, Any]] = []

        def send(method: str, path: str, body: Any, ctype: str = "application/json") -> None:
            req = urllib.request.Request(f"{api.url}{base}{path}", method=method, data=json.dumps(body).encode(),
                                         headers={"Content-Type": ctype})
            with urllib.request.urlopen(req, timeout=10) as r:
                answers.append(json.loads(r.read()))

        obj = {"apiVersion": f"{rollouts.group}/v1", "kind": "CanaryRollout",
               "metadata": {"name": "r", "namespace": "ml", "annotations": {"a": "1"}, "labels": {"l": "1"},
                            "finalizers": ["f"]}, "spec": {"n": [1]}}
        send("POST", "", obj)
        send("PATCH", "/r", {"metadata": {"annotations": {"a": "2"}}, "spec": {"n": [2]}}, "application/merge-patch+json")
        send("PATCH", "/r", [{"op": "add", "path": "/spec/n/-", "value": 3}], "application/json-patch+json")
        send("PUT", "/r/status", {**answers[-1], "status": {"s": 1}})
        send("PUT", "/r", {**answers[-1], "spec": {"n": [4]}})
        send("DELETE", "/r", {})
        answers.append(api.edit(rollouts.group, "canaryrollouts", "ml", "r",
                                lambda o: o["metadata"]["labels"].update(l="2")))
        answers.append(api.handler.put_object({**answers[-1], "spec": {"n": [5]}}))
        send("PATCH", "/r", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
        url = f"{api.url}{base}?watch=true&resourceVersion={since}&timeoutSeconds=1"
        with urllib.request.urlopen(url, timeout=10) as r:
            events = [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
        assert [e["type"] for e in events] == ["ADDED", *["MODIFIED"] * 8, "DELETED"]
        assert [e["object"] for e in events[:9]] == answers
        assert events[-1]["object"]["spec"] == {"n": [5]} and not events[-1]["object"]["metadata"].get("finalizers")

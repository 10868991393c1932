"""IstioRouter against the strict Kubernetes API emulator, through the official client.

Also proves the emulator is strict where our safety depends on it: 409 on a
stale write, 201 on create, PUT, 404 as a Status object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import tenacity
import yaml

from canary import kube
from canary.errors import ConfigError, KubeUnavailable, NotFound, RoutingConflict, TargetError
from canary.model import Target, Weights
from canary.routing.istio import GROUP, IstioRouter
from canary.routing.patch import STATE_ANNOTATION
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration

VS, DR = "virtualservices", "destinationrules"
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model",
                stable_version="v1", canary_version="v2")


def router(api: KubeAPIServer, **kwargs: object) -> IstioRouter:
    return IstioRouter(api.api_client(), wait=tenacity.wait_none(), **kwargs)  # type: ignore[arg-type]


def vs_of(api: KubeAPIServer) -> dict:
    obj = api.get(GROUP, VS, "ml", "rec-model")
    assert obj is not None
    return obj


def weights_of(api: KubeAPIServer) -> list[int]:
    return [d["weight"] for d in vs_of(api)["spec"]["http"][0]["route"]]


# --- the emulator is strict ------------------------------------------------------


def test_emulator_409_on_stale_put_201_on_create_and_404_status(kube_api: KubeAPIServer) -> None:
    co = kubernetes.client.CustomObjectsApi(kube_api.api_client())
    body = {"apiVersion": f"{GROUP}/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "a", "namespace": "ml"}, "spec": {"hosts": ["a"]}}
    created, status, _ = co.create_namespaced_custom_object_with_http_info(GROUP, "v1beta1", "ml", VS, body)
    assert status == 201 and created["metadata"]["resourceVersion"]
    stale = dict(created)
    replaced = co.replace_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "a",
                                                   {**created, "spec": {"hosts": ["b"]}})
    assert int(replaced["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert replaced["spec"] == {"hosts": ["b"]}
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        co.replace_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "a", stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(kubernetes.client.ApiException) as dup:
        co.create_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, body)
    assert dup.value.status == 409 and json.loads(dup.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(kubernetes.client.ApiException) as missing:
        co.get_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "nope")
    assert missing.value.status == 404 and json.loads(missing.value.body)["kind"] == "Status"


def test_emulator_patches_and_watch(kube_api: KubeAPIServer) -> None:
    co = kubernetes.client.CustomObjectsApi(kube_api.api_client())
    body = {"apiVersion": f"{GROUP}/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "a", "namespace": "ml"}, "spec": {"hosts": ["a"], "x": 1}}
    created = co.create_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, body)
    merged = co.patch_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "a", {"spec": {"x": None, "y": 2}},
                                               _content_type="application/merge-patch+json")
    assert merged["spec"] == {"hosts": ["a"], "y": 2}
    rv = merged["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "replace", "path": "/spec/y", "value": 3}]
    patched = co.patch_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "a", ops,
                                                _content_type="application/json-patch+json")
    assert patched["spec"]["y"] == 3
    with pytest.raises(kubernetes.client.ApiException) as failed:  # stale test op
        co.patch_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, "a", ops,
                                          _content_type="application/json-patch+json")
    assert failed.value.status == 422
    events = []
    stream = kubernetes.watch.Watch().stream(co.list_namespaced_custom_object, GROUP, "v1beta1", "ml", VS,
                                             resource_version=created["metadata"]["resourceVersion"],
                                             timeout_seconds=1)
    for event in stream:
        events.append((event["type"], event["object"]["spec"].get("y")))
    assert events == [("MODIFIED", 2), ("MODIFIED", 3)]


# --- inspect and validation --------------------------------------------------------


def test_inspect_reads_weights_versions_and_state(istio_api: KubeAPIServer) -> None:
    status = router(istio_api).inspect(TARGET)
    assert status.weights == Weights(100, 0)
    assert (status.stable_subset_version, status.canary_subset_version) == ("v1", "v2")
    assert status.state is None and status.resource_version


def test_missing_objects_are_target_errors(istio_api: KubeAPIServer) -> None:
    with pytest.raises(TargetError, match="ml/nope"):
        router(istio_api).inspect(Target("ml", "nope", "m", "v1", "v2", destination_rule="rec-model"))
    with pytest.raises(TargetError, match="ml/other"):
        router(istio_api).inspect(Target("ml", "rec-model", "m", "v1", "v2", destination_rule="other"))


def test_unserved_version_is_a_clear_target_error(istio_api: KubeAPIServer) -> None:
    with pytest.raises(TargetError, match="not served by the cluster"):
        router(istio_api, version="v2").inspect(TARGET)
    assert router(istio_api, version="v1").inspect(TARGET).weights == Weights(100, 0)


def test_three_destinations_is_a_target_error_and_nothing_is_written(istio_api: KubeAPIServer) -> None:
    def third(obj: dict) -> None:
        obj["spec"]["http"][0]["route"].append({"destination": {"host": "rec-model", "subset": "canary"}})

    istio_api.edit(GROUP, VS, "ml", "rec-model", third)
    before = len(istio_api.writes)
    with pytest.raises(TargetError, match=r"ml/rec-model: spec.http\[0\].route has 3 destinations"):
        router(istio_api).set_weights(TARGET, Weights.canary_at(10), state="{}")
    assert len(istio_api.writes) == before


def test_missing_subset_in_destination_rule(istio_api: KubeAPIServer) -> None:
    istio_api.edit(GROUP, DR, "ml", "rec-model", lambda o: o["spec"]["subsets"].pop())
    with pytest.raises(TargetError, match="does not define subset 'canary'"):
        router(istio_api).inspect(TARGET)


# --- writes ------------------------------------------------------------------------


def test_set_weights_and_state_in_one_write(istio_api: KubeAPIServer) -> None:
    rv_before = int(vs_of(istio_api)["metadata"]["resourceVersion"])
    writes_before = len(istio_api.writes)
    status = router(istio_api).set_weights(TARGET, Weights.canary_at(25), state='{"step": 1}')
    obj = vs_of(istio_api)
    assert weights_of(istio_api) == [75, 25]
    assert obj["metadata"]["annotations"][STATE_ANNOTATION] == '{"step": 1}'
    assert len(istio_api.writes) == writes_before + 1
    assert int(obj["metadata"]["resourceVersion"]) == rv_before + 1
    assert status.weights == Weights(75, 25) and status.state == '{"step": 1}'
    assert status.resource_version == obj["metadata"]["resourceVersion"]
    assert obj["spec"]["http"][0]["retries"]["attempts"] == 3  # untouched


def test_foreign_edit_between_read_and_write_is_kept(istio_api: KubeAPIServer) -> None:
    def foreign() -> None:
        istio_api.edit(GROUP, VS, "ml", "rec-model",
                       lambda o: o["spec"]["http"][0].update(timeout="30s"))

    istio_api.before_next_write(foreign)
    router(istio_api).set_weights(TARGET, Weights.canary_at(10), state="{}")
    obj = vs_of(istio_api)
    assert weights_of(istio_api) == [90, 10]
    assert obj["spec"]["http"][0]["timeout"] == "30s"
    assert [w[2] for w in istio_api.writes] == [409, 200]


def test_conflicts_exhausted_raise_routing_conflict(istio_api: KubeAPIServer) -> None:
    istio_api.fail_next(409, times=10, methods=["PUT"])
    with pytest.raises(RoutingConflict, match="ml/rec-model"):
        router(istio_api, conflict_attempts=3).set_weights(TARGET, Weights.canary_at(10), state="{}")
    assert weights_of(istio_api) == [100, 0]


def test_server_errors_are_retried(istio_api: KubeAPIServer) -> None:
    istio_api.fail_next(500, times=2, methods=["GET"])
    istio_api.fail_next(503, times=2, methods=["PUT"])
    router(istio_api).set_weights(TARGET, Weights.canary_at(50), state="{}")
    assert weights_of(istio_api) == [50, 50]


def test_persistent_server_errors_become_kube_unavailable(istio_api: KubeAPIServer) -> None:
    istio_api.fail_next(500, times=100, methods=["GET"])
    with pytest.raises(KubeUnavailable, match="HTTP 500") as info:
        router(istio_api, transient_attempts=3).inspect(TARGET)
    assert isinstance(info.value.__cause__, kubernetes.client.ApiException)


def _first_timing_out(r: IstioRouter, short: int) -> IstioRouter:
    """`r`, whose first `short` requests get a 1 s timeout, the others the router's own (60 s below): the short
    timeout meets only the requests the emulator delays (`delay_next`: the next ones), never an answer a loaded
    host is slow to give. A 1 s for every request was a race: the retry's answer came after it (decision 788)."""
    rest = r.custom.api_client.rest_client  # every request passes here (as `kube.bound_by`'s)
    send, left = rest.request, [short]

    def request(method: str, url: str, *args: Any, _request_timeout: Any = None, **kw: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            _request_timeout = 1.0
        return send(method, url, *args, _request_timeout=_request_timeout, **kw)

    rest.request = request
    return r


def test_timeouts_are_retried_then_kube_unavailable(istio_api: KubeAPIServer) -> None:
    # a delay far past the delayed request's timeout; an answer of the others waited for as long as it takes
    istio_api.delay_next(4.0, times=1)
    assert _first_timing_out(router(istio_api, request_timeout=60.0), 1).inspect(TARGET).weights == Weights(100, 0)
    istio_api.delay_next(4.0, times=2)
    with pytest.raises(KubeUnavailable, match="unreachable.*[Tt]imeout"):
        _first_timing_out(router(istio_api, request_timeout=60.0, transient_attempts=2), 2).inspect(TARGET)


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_unreachable_api_is_kube_unavailable() -> None:
    api = KubeAPIServer().start()
    client = api.api_client()
    api.stop()
    with pytest.raises(KubeUnavailable, match="unreachable"):
        IstioRouter(client, wait=tenacity.wait_none(), request_timeout=1).inspect(TARGET)


def test_point_subset_changes_only_the_version_label_and_is_idempotent(istio_api: KubeAPIServer) -> None:
    r = router(istio_api)
    r.point_subset(TARGET, "stable", "v2")
    dr = istio_api.get(GROUP, DR, "ml", "rec-model")
    assert dr is not None
    assert dr["spec"]["subsets"][0]["labels"] == {"app": "rec-model", "version": "v2"}
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 5
    writes = len(istio_api.writes)
    r.point_subset(TARGET, "stable", "v2")
    assert len(istio_api.writes) == writes
    assert r.inspect(TARGET).stable_subset_version == "v2"


def test_point_subset_survives_a_conflict(istio_api: KubeAPIServer) -> None:
    istio_api.fail_next(409, times=1, methods=["PUT"], plural=DR)
    router(istio_api).point_subset(TARGET, "canary", "v3")
    assert router(istio_api).inspect(TARGET).canary_subset_version == "v3"


def test_record_event_creates_an_event_and_never_raises(istio_api: KubeAPIServer) -> None:
    r = router(istio_api)
    assert r.record_event(TARGET, reason="RolledBack", message="p95 too high", warning=True) is True
    (event,) = istio_api.list("", "events", "ml")
    assert event["involvedObject"]["kind"] == "VirtualService"
    assert event["involvedObject"]["name"] == "rec-model"
    assert (event["reason"], event["type"], event["source"]["component"]) == ("RolledBack", "Warning", "canary")
    istio_api.fail_next(500, times=5, methods=["POST"])
    assert r.record_event(TARGET, reason="X", message="y") is False


# --- canary.kube: client configuration and error translation ---------------------------


def _kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emu", "cluster": {"server": url}},
                     {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emu", "user": "me"}},
                     {"name": "broken", "context": {"cluster": "nowhere", "user": "me"}}],
    }))
    return path


def test_api_client_from_explicit_kubeconfig_and_context(istio_api: KubeAPIServer, tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path, istio_api.url)
    client = kube.api_client(kubeconfig=str(path), context=None)
    assert IstioRouter(client).inspect(TARGET).weights == Weights(100, 0)
    other = kube.api_client(kubeconfig=str(path), context="broken")
    assert other.configuration.host == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="context 'nope'"):
        kube.api_client(kubeconfig=str(path), context="nope")


def test_api_client_from_env_and_missing_config(istio_api: KubeAPIServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, istio_api.url)))
    assert kube.api_client().configuration.host == istio_api.url
    with pytest.raises(ConfigError, match="does not exist"):
        kube.api_client(kubeconfig=str(tmp_path / "missing"))
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no Kubernetes configuration"):
        kube.api_client()


@pytest.mark.parametrize(("status", "kind"), [(404, NotFound), (409, RoutingConflict), (403, ConfigError),
                                              (500, KubeUnavailable), (429, KubeUnavailable), (422, TargetError)])
def test_translate_maps_statuses_onto_the_error_tree(status: int, kind: type) -> None:
    exc = kubernetes.client.ApiException(status=status, reason="Why")
    exc.body = json.dumps({"kind": "Status", "message": "because"})
    err = kube.translate(exc, "ml/rec-model")
    assert type(err) is kind and "ml/rec-model" in str(err) and "because" in str(err)
    assert kube.is_transient(exc) == (kind is KubeUnavailable)


def test_emulator_selectors(istio_api: KubeAPIServer) -> None:
    co = kubernetes.client.CustomObjectsApi(istio_api.api_client())
    by_name = co.list_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, field_selector="metadata.name=rec-model")
    assert [o["metadata"]["name"] for o in by_name["items"]] == ["rec-model"]
    assert co.list_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, label_selector="app=other")["items"] == []
    assert len(co.list_namespaced_custom_object(GROUP, "v1beta1", "ml", DR, label_selector="app=rec-model")["items"]) == 1
    with pytest.raises(kubernetes.client.ApiException) as bad:
        co.list_namespaced_custom_object(GROUP, "v1beta1", "ml", VS, label_selector="app in (a,b)")
    assert bad.value.status == 400
    core = kubernetes.client.CoreV1Api(istio_api.api_client())  # a label key with dots in it, as K8s allows
    core.create_namespaced_config_map("ml", {"metadata": {"name": "b", "labels": {"modelcanary.dev/baseline": "true"}}})
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "ml", label_selector="modelcanary.dev/baseline=true").items] == ["b"]
    assert core.list_namespaced_config_map("ml", label_selector="baseline=true").items == []


# --- stable 100% needs the VirtualService only (an attacker's findings, thirteenth session) -------------


def _drop_dr(api: KubeAPIServer) -> None:
    kubernetes.client.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
        GROUP, "v1beta1", "ml", DR, "rec-model")


def _drop_canary_subset(api: KubeAPIServer) -> None:
    api.edit(GROUP, DR, "ml", "rec-model", lambda o: o["spec"]["subsets"].pop())


def _route_in_front(api: KubeAPIServer) -> None:
    def add(obj: dict) -> None:
        http = obj["spec"]["http"]
        http[0].setdefault("name", "primary")
        http.insert(0, {"name": "debug", "match": [{"headers": {"x-debug": {"exact": "1"}}}],
                        "route": [{"destination": {"host": "rec-model", "subset": "stable"}}]})

    api.edit(GROUP, VS, "ml", "rec-model", add)


@pytest.mark.parametrize("damage", [_drop_dr, _drop_canary_subset, _route_in_front],
                         ids=["DestinationRule deleted", "canary subset gone", "a route added in front"])
def test_stable_100_is_written_whatever_happened_to_the_destination_rule_or_the_routes(
        istio_api: KubeAPIServer, damage: object) -> None:
    """Mid-rollout the DestinationRule goes (or loses a subset), or someone adds a route in front of the
    rollout's: moving traffic *to* the canary is refused as before, but stable 100% is written on the
    VirtualService alone (promote and `canary rollback` used to exit 2 and leave 80/20), and on-call's
    lenient read (`inspect_any`) still shows it."""
    r = router(istio_api)
    r.set_weights(TARGET, Weights(80, 20), state='{"phase": "progressing"}')
    damage(istio_api)  # type: ignore[operator]
    with pytest.raises(TargetError):
        r.set_weights(TARGET, Weights(50, 50), state='{"phase": "progressing"}')
    seen = r.inspect_any(TARGET, for_stable=True)
    assert seen.weights == Weights(80, 20)
    status = r.set_weights(TARGET, Weights(100, 0), state='{"phase": "aborted"}')
    route = next(h for h in vs_of(istio_api)["spec"]["http"] if len(h["route"]) == 2)
    assert [d["weight"] for d in route["route"]] == [100, 0] and status.weights == Weights(100, 0)
    assert vs_of(istio_api)["metadata"]["annotations"][STATE_ANNOTATION] == '{"phase": "aborted"}'


def test_stable_100_finds_the_rollouts_route_beside_another_with_the_same_subsets(istio_api: KubeAPIServer) -> None:
    """A shadow route with subsets stable/canary (0/100) put in front of the rollout's, the route not
    named: stable 100% goes to the route holding the weights the rollout recorded, never the shadow's."""
    import json as _json

    r = router(istio_api)
    state = _json.dumps({"phase": "progressing"})
    r.set_weights(TARGET, Weights(90, 10), state=state)

    def shadow(obj: dict) -> None:
        http = obj["spec"]["http"]
        http[0]["name"] = "primary"
        http.insert(0, {"name": "shadow", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
                        "route": [{"destination": {"host": "rec-model", "subset": "stable"}, "weight": 0},
                                  {"destination": {"host": "rec-model", "subset": "canary"}, "weight": 100}]})
        from canary import rollout as rl

        obj["metadata"]["annotations"][STATE_ANNOTATION] = rl.RolloutState(
            model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
            weights=Weights(90, 10)).to_json()

    istio_api.edit(GROUP, VS, "ml", "rec-model", shadow)
    r.set_weights(TARGET, Weights(100, 0), state='{"phase": "aborted"}')
    by_name = {h["name"]: [d["weight"] for d in h["route"]] for h in vs_of(istio_api)["spec"]["http"]}
    assert by_name == {"shadow": [0, 100], "primary": [100, 0]}

"""The controller runs the same Triton gates as `canary promote`: the pre-traffic gate (schema,
warm-up) before the first step, and the readiness probe while the canary has traffic. Real
PyTriton servers, the strict Kubernetes API emulator, a fake clock and fake metrics."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity

from canary import crd
from canary import rollout as rl
from canary.model import Target
from canary.controller import Controller
from canary.routing.istio import IstioRouter
from canary.sandbox.tritonserver import TritonServer
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import LiveWeights

pytestmark = pytest.mark.integration
GATES = {"triton": {"enabled": True, "protocol": "http", "warmup_requests": 4, "output_range": [0.0, 1.0],
                    "probe_interval": "1s", "probe_failures": 2}}


def ticked(api: Any, clock: Any, op: Any, ticks: int) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """`ticks` controller ticks 0.6 s apart, then (CanaryRollout r0, its Ready condition, m0's route)."""
    for _ in range(ticks):
        op.tick()
        clock.sleep(0.6)
    obj = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    return obj, ready, api.get("networking.istio.io", "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]


def world(stable_url: str, canary_url: str, *, gates: dict[str, Any] = GATES, triton: bool = True
          ) -> tuple[Any, Any, FakeClock, Controller]:
    """The emulator with one gated CanaryRollout, and a controller on a fake clock."""
    api = fleet.start_api(1)
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["gates"] = gates
    api.handler.put_object(crd.new_object(namespace="ml", name="r0", model="rec-model", canary_version="v2",
                                          virtual_service="m0", policy_raw=policy,
                                          **({"triton": {"stableUrl": stable_url, "canaryUrl": canary_url}}
                                             if triton else {})))
    client = api.api_client()
    clock = FakeClock()
    router = IstioRouter(client, wait=tenacity.wait_none())
    target = Target(namespace="ml", virtual_service="m0", model="rec-model", stable_version="v1", canary_version="v2")
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client), router=router,
                  metrics=FakeMetrics(LiveWeights(router, target), clock), namespace="ml", clock=clock,  # type: ignore[arg-type]
                  gate_wait_s=60.0)  # these check the gate's verdicts: each in the tick it starts in, however loaded
                  # the machine (a gate left running in the background: test_a_slow_gate_holds_no_other_rollout)
    return api, client, clock, op


def run(stable: TritonServer, canary_url: str, ticks: int = 12) -> tuple[Any, list[str]]:
    api, client, clock, op = world(stable.http_url, canary_url)
    phases = []
    try:
        for _ in range(ticks):
            op.tick()
            phases.append(((api.get(crd.GROUP, crd.PLURAL, "ml", "r0") or {}).get("status") or {}).get("phase", ""))
            if phases[-1] in rl.TERMINAL:
                break
            clock.sleep(0.5)
        return api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"], phases
    finally:
        client.close()
        api.stop()


def test_a_canary_with_another_schema_is_refused_before_any_traffic(triton_stable: TritonServer,
                                                                    triton_bad_schema: TritonServer) -> None:
    status, phases = run(triton_stable, triton_bad_schema.http_url)
    assert status["phase"] == rl.ROLLED_BACK and "gate" in status["reason"] and "FP64" in status["reason"]
    assert rl.PROGRESSING not in phases and status["weights"] == {"stable": 100, "canary": 0}


def test_a_compatible_canary_passes_the_gate_and_gets_traffic(triton_stable: TritonServer,
                                                               triton_canary: TritonServer) -> None:
    status, phases = run(triton_stable, triton_canary.http_url, ticks=4)
    assert rl.PROGRESSING in phases and status["weights"]["canary"] > 0


def test_a_canary_that_dies_under_traffic_is_rolled_back_by_the_probe(triton_stable: TritonServer) -> None:
    own = TritonServer(arm="canary", version="v2.1.0").start()  # killed by this test only
    own.wait_ready()
    api, client, clock, op = world(triton_stable.http_url, own.http_url)
    try:
        op.tick()
        op.tick()
        assert api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]["phase"] == rl.PROGRESSING
        own.kill()
        with structlog.testing.capture_logs() as logs:
            for _ in range(8):
                clock.sleep(0.6)
                op.tick()
        status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
        assert status["phase"] == rl.ROLLED_BACK and "not ready" in status["reason"]
        assert status["weights"] == {"stable": 100, "canary": 0}
        # the controller's probe lines name the server and where it was probed, as promote's (decision 922)
        probes = [e for e in logs if e["event"] == "gate.probe_failed"]
        where = own.http_url.split("://")[-1]
        assert probes and all(e["arm"] == "canary" and e["endpoint"].endswith(where) for e in probes), probes
    finally:
        own.stop()
        client.close()
        api.stop()


@pytest.mark.parametrize("urls", [False, True], ids=["no-triton-urls", "unreachable-urls"])
def test_a_policy_whose_triton_gate_is_disabled_runs_without_it(urls: bool) -> None:
    """policies/default.yaml ships `gates.triton.enabled: false`: a CanaryRollout with it is not refused
    for lacking spec.triton, and Triton URLs it does give are neither warmed up nor probed (nothing
    listens there: a gate would fail), as `canary promote` and `canary serve` treat it."""
    off = {"triton": {**GATES["triton"], "enabled": False}}
    api, client, clock, op = world("http://127.0.0.1:9", "http://127.0.0.1:9", gates=off, triton=urls)
    try:
        for _ in range(6):
            op.tick()
            clock.sleep(0.6)
        status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
        assert status["phase"] == rl.PROGRESSING and status["weights"]["canary"] > 0, status
    finally:
        client.close()
        api.stop()


def test_an_enabled_gate_without_the_stable_url_is_refused_before_any_traffic() -> None:
    """gates.triton enabled and spec.triton.canaryUrl only: the tensor-contract check compares the
    canary with stable, so without stableUrl it was skipped, silently. The CanaryRollout is invalid
    (its Ready condition says which field), and nothing is claimed or moved, as `canary promote`
    refuses the same without --triton-stable."""
    api, client, clock, op = world("", "http://127.0.0.1:9")
    try:
        _, ready, route = ticked(api, clock, op, 3)
        assert ready["status"] == "False" and "spec.triton.stableUrl" in ready["message"], ready
        assert [d["weight"] for d in route] == [100, 0]
    finally:
        client.close()
        api.stop()


SAMPLES = {"requests": [{"features": [[0.1, -1.2, None, 0.3, 0.0, 1.0, 0.5, -0.2]]}]}


def _with_samples(api: Any, data: dict[str, str], *, ref: bool = True) -> None:
    """r0 gated with `sample_file: warmup.json`: its policy in ConfigMap ml/pol (with `data`), or inline."""
    import json

    import yaml

    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["gates"] = {"triton": {**GATES["triton"], "sample_file": "warmup.json"}}
    api.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pol", "namespace": "ml"},
                            "data": {"policy.yaml": yaml.safe_dump(policy), **data}})
    obj = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")
    if ref:
        del obj["spec"]["policy"]
        obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml"}
    else:
        obj["spec"]["policy"] = policy
    api.handler.put_object(obj)
    assert json.dumps(SAMPLES)  # the shape docs/triton.md gives


def test_a_crs_warm_up_samples_come_from_its_policy_configmap(triton_stable: TritonServer,
                                                              triton_canary: TritonServer) -> None:
    """`sample_file` names a key beside the policy in its ConfigMap: the gate warms the canary up on
    those samples (the controller read a file relative to its own working directory: a policy error
    found only at the gate, and recorded as a rollback of the model)."""
    import json

    api, client, clock, op = world(triton_stable.http_url, triton_canary.http_url)
    try:
        _with_samples(api, {"warmup.json": json.dumps(SAMPLES)})
        for _ in range(3):
            op.tick()
            clock.sleep(0.5)
        status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
        assert status["phase"] == rl.PROGRESSING and status["weights"]["canary"] > 0, status
        maps = [m for m in api.list("", "configmaps", "ml") if m["metadata"]["name"] != "pol"]
        assert "configmap:ml/pol[warmup.json]" in json.dumps(maps), maps  # the history: the gate's sample source
        # the samples serve the pre-traffic gate only: a ConfigMap tidied mid-rollout (the key removed)
        # leaves a rollout past its gate running (it was sent to stable as a bad spec)
        api.edit("", "configmaps", "ml", "pol", lambda o: o["data"].pop("warmup.json"))
        for _ in range(2):
            op.tick()
            clock.sleep(0.5)
        status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
        assert status["phase"] in (rl.PROGRESSING, rl.PROMOTING, rl.PROMOTED), status
    finally:
        client.close()
        api.stop()


@pytest.mark.parametrize(("data", "ref", "says"), [
    ({}, True, "ConfigMap ml/pol has no key of that name"),
    ({"warmup.json": "{not json"}, True, "warmup.json: not JSON"),
    ({"warmup.json": '{"requests": []}'}, True, 'expected {"requests"'),
    ({}, False, "an inline policy cannot name a file"),
], ids=["no-key", "not-json", "no-requests", "inline"])
def test_warm_up_samples_a_cr_cannot_have_are_refused_before_any_traffic(data: dict[str, str], ref: bool,
                                                                         says: str) -> None:
    """Refused with Ready=False naming the field, nothing written to the route: not a rollback of the model."""
    api, client, clock, op = world("127.0.0.1:1", "127.0.0.1:1")
    try:
        _with_samples(api, data, ref=ref)
        before = api.get("networking.istio.io", "virtualservices", "ml", "m0")
        op.tick()
        obj = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and "gates.triton.sample_file" in ready["message"], ready
        assert says in ready["message"], ready
        assert not obj["status"].get("phase")
        assert api.get("networking.istio.io", "virtualservices", "ml", "m0") == before
    finally:
        client.close()
        api.stop()


def test_one_server_as_both_triton_urls_is_refused_before_the_claim() -> None:
    """A CanaryRollout whose `spec.triton` names the stable's Triton twice: the gate compared stable with
    itself and passed, and the probe watched stable, never the canary (decision 204). Refused before the claim,
    Ready False `ConfigError` naming both fields; the route is left as it was (nothing recorded)."""
    api, client, clock, op = world("triton-stable.ml:8000", "http://Triton-Stable.ml:8000")
    try:
        obj, ready, route = ticked(api, clock, op, 2)
        assert ready["status"] == "False" and ready["reason"] == "ConfigError", ready
        assert ("spec.triton.canaryUrl 'http://Triton-Stable.ml:8000' and spec.triton.stableUrl "
                "'triton-stable.ml:8000' name the same Triton server") in ready["message"], ready
        assert [r["weight"] for r in route] == [100, 0]
        vs = api.get("networking.istio.io", "virtualservices", "ml", "m0")
        assert "modelcanary.dev/rollout" not in (vs["metadata"].get("annotations") or {}), vs["metadata"]
    finally:
        client.close()
        api.stop()

"""The sandbox's parts, each proved on real processes.

The end-to-end tests trust that a weight written to the VirtualService becomes
a traffic split, and that a canary's fault shows up in Prometheus under its
version. These tests prove each link: HAProxy weights really move requests,
the watcher follows VirtualService and DestinationRule edits, the load
generator's counts agree with the model's own metrics, and one assembled
Sandbox ties them together.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from canary.sandbox.env import Sandbox, istio_objects
from canary.sandbox.haproxy import HAProxy
from canary.sandbox.loadgen import LoadGenerator, encode_request
from canary.sandbox.model import Behaviour
from canary.sandbox.tritonserver import TritonServer
from canary.sandbox.watcher import route_weights

pytestmark = pytest.mark.integration
GROUP, VERSION = "networking.istio.io", "v1beta1"


def send(url: str, n: int) -> dict[str, int]:
    """n sequential requests through the proxy; counts by the server that answered."""
    import numpy as np
    import requests

    counts: dict[str, int] = {}
    with requests.Session() as s:
        for _ in range(n):
            body, headers = encode_request(np.zeros((1, 8), dtype=np.float32))
            r = s.post(f"{url}/v2/models/rec-model/infer", data=body, headers=headers, timeout=5)
            key = r.headers.get("X-Served-By", "?") if r.status_code == 200 else f"HTTP {r.status_code}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_haproxy_weights_move_traffic(haproxy_pair: HAProxy) -> None:
    assert haproxy_pair.weights() == {"stable": 100, "canary": 0}
    assert send(haproxy_pair.url, 20) == {"stable": 20}
    haproxy_pair.set_weights({"stable": 0, "canary": 100})
    assert haproxy_pair.weights() == {"stable": 0, "canary": 100}
    assert send(haproxy_pair.url, 20) == {"canary": 20}
    haproxy_pair.set_weights({"stable": 75, "canary": 25})
    counts = send(haproxy_pair.url, 40)
    assert counts == {"stable": 30, "canary": 10}  # smooth weighted round robin is exact


def test_haproxy_refuses_unknown_server_and_bad_weight(haproxy_pair: HAProxy) -> None:
    with pytest.raises(KeyError):
        haproxy_pair.set_weight("nobody", 10)
    with pytest.raises(ValueError):
        haproxy_pair.set_weight("canary", 300)


def test_loadgen_started_again_leaves_no_worker_of_the_run_before() -> None:
    """`Sandbox.rearm` stops the load and starts it again (decision 760). A worker whose request was still out
    when `stop` gave up waiting for it ends after that request, counted in its own run, not the next one's, and
    does not go on sending. A server that answers only when told holds the request: nothing here is timed."""
    srv = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    got = threading.Semaphore(0)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)  # the request (one read: the test only counts that it came)
            held.append(conn)
            got.release()

    threading.Thread(target=serve, daemon=True).start()
    lg = LoadGenerator(f"http://127.0.0.1:{srv.getsockname()[1]}", rate=100, threads=1, timeout=60)
    try:
        lg.start()
        assert got.acquire(timeout=30)  # the first run's request is out, and held
        old = list(lg._workers)
        lg.timeout = 0  # `stop` waits 1 s for it, then gives up: it is still held
        first = lg.stop()
        assert first["sent"] == 0 and old[0].is_alive()
        lg.timeout = 60
        lg.start()
        assert got.acquire(timeout=30)  # the new run's request is held too
        held[0].sendall(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        old[0].join(timeout=30)
        assert not old[0].is_alive(), "the first run's worker went on sending in the second run"
        assert lg.snapshot()["sent"] == 0, lg.snapshot()  # its answer counted in its own run
    finally:
        srv.close()
        for conn in held:
            conn.close()
        lg.timeout = 0
        lg.stop()


def test_loadgen_counts_agree_with_model_metrics(haproxy_pair: HAProxy, triton_canary: TritonServer) -> None:
    haproxy_pair.set_weights({"stable": 0, "canary": 100})
    before = _scrape(triton_canary.model_metrics_url)
    gen = LoadGenerator(haproxy_pair.url, rate=80, threads=4, missing_share=0.5).start()
    deadline = time.monotonic() + 60  # until 60 answers, however slow a loaded machine makes them
    while (seen := gen.snapshot())["ok"] <= 60 and seen["failed"] == 0:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    summary = gen.stop()
    after = _scrape(triton_canary.model_metrics_url)
    ok = _get(after, "model_requests_total", outcome="success") - _get(before, "model_requests_total", outcome="success")
    assert summary["failed"] == 0 and summary["by_server"] == {"canary": summary["sent"]}
    assert ok == summary["ok"] > 60
    assert _get(after, "model_features_total", state="missing") > _get(before, "model_features_total", state="missing")
    assert 0 < _get(after, "model_feature_missing_rate") < 0.5  # 1..3 of 8 features in half the rows


def test_errors_knob_fails_requests_through_the_proxy(haproxy_pair: HAProxy, triton_canary: TritonServer) -> None:
    haproxy_pair.set_weights({"stable": 50, "canary": 50})
    triton_canary.set_behaviour(Behaviour(error_share=1.0))
    counts = send(haproxy_pair.url, 20)
    assert counts.get("stable") == 10 and sum(v for k, v in counts.items() if k.startswith("HTTP 5")) == 10


def test_watcher_follows_virtualservice_and_destinationrule(tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    from kubernetes import client

    from canary.sandbox.kubeapi import KubeAPIServer
    from canary.sandbox.watcher import Watcher

    seed = istio_objects(Path(__file__).resolve().parents[2] / "istio", stable_version="v1.0.0",
                         canary_version="v2.1.0")
    with KubeAPIServer(seed=seed) as api:
        proxy = HAProxy({"stable": "127.0.0.1:9", "canary": "127.0.0.1:9"}, workdir=tmp_path / "hap").start()
        api_client = api.api_client()
        watcher = Watcher(api_client, proxy, namespace="ml", name="rec-model",
                          servers={"v1.0.0": "stable", "v2.1.0": "canary"}).start()
        try:
            objs = client.CustomObjectsApi(api_client)
            vs = objs.get_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model")
            vs["spec"]["http"][0]["route"][0]["weight"], vs["spec"]["http"][0]["route"][1]["weight"] = 90, 10
            objs.replace_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model", vs)
            assert watcher.wait_for({"stable": 90, "canary": 10}, timeout=60)
            assert proxy.weights() == {"stable": 90, "canary": 10}
            # promotion: 100/0 with the stable subset now selecting the new version
            vs = objs.get_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model")
            vs["spec"]["http"][0]["route"][0]["weight"], vs["spec"]["http"][0]["route"][1]["weight"] = 100, 0
            objs.replace_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model", vs)
            objs.patch_namespaced_custom_object(GROUP, VERSION, "ml", "destinationrules", "rec-model", {
                "spec": {"subsets": [{"name": "stable", "labels": {"app": "rec-model", "version": "v2.1.0"}},
                                     {"name": "canary", "labels": {"app": "rec-model", "version": "v2.1.0"}}]}})
            assert watcher.wait_for({"stable": 0, "canary": 100}, timeout=60)
            assert proxy.weights() == {"stable": 0, "canary": 100}
        finally:
            watcher.stop()
            api_client.close()
            proxy.stop()


def test_sandbox_assembles_and_shows_the_fault_in_prometheus() -> None:
    for binary in ("haproxy", "prometheus"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    from kubernetes import client, config

    with Sandbox("errors", rate=40) as sb:
        assert sb.summary()["haproxy_weights"] == {"stable": 100, "canary": 0}
        api = client.CustomObjectsApi(config.new_client_from_config(str(sb.kubeconfig)))
        vs = api.get_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model")
        vs["spec"]["http"][0]["route"][0]["weight"], vs["spec"]["http"][0]["route"][1]["weight"] = 50, 50
        api.replace_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model", vs)
        assert sb.watcher.wait_for({"stable": 50, "canary": 50}, timeout=60)
        assert sb.fault_injected_at is not None  # first canary traffic injected the scenario's fault
        # until Prometheus shows the canary's errors, in the model's counter and in Triton's (the
        # documented checks take increase() over 30 s: two scrapes of the counters *after* the
        # canary's first failures; about 4 s on an idle machine). Waiting on two scrapes alone was
        # not enough: both could precede the canary's first request (NaN = 0/0 in CI).
        deadline = time.monotonic() + 60
        while True:
            errors = _query(sb.prometheus_url, 'sum by (model_version) (model_requests_total{outcome="error"})')
            triton = _query(sb.prometheus_url, "sum by (version) (nv_inference_request_success)")
            try:
                values = {arm: _doc_checks(sb.prometheus_url, version) for arm, version in
                          (("stable", sb.stable_version), ("canary", sb.canary_version))}
            except AssertionError:  # a documented query with no answer yet
                values = {}
            if (errors.get("v2.1.0", 0) > 0 and len(triton) == 2 and values
                    and values["canary"]["triton-failures"] > 0
                    and all(v == v for arm in values.values() for v in arm.values())):
                break
            assert time.monotonic() < deadline, (errors, triton, values)
            time.sleep(0.5)
        load = sb.summary()["load"]
        assert load["failed_by_server"].get("stable", 0) == 0 and load["failed"] > 0
        assert errors.get("v2.1.0", 0) > 0 and errors.get("v1.0.0", 0) == 0
        assert set(triton) == {"v1.0.0", "v2.1.0"}  # Triton's metrics carry the arm's version too
        assert values["stable"]["triton-failures"] == 0 < values["canary"]["triton-failures"]
        for arm in values.values():  # every documented (non-GPU) Triton query answers one number
            assert all(v == v for v in arm.values()), values
        _rearmed_as_seeded(sb, api)
        pids = [sb.stable.pid, sb.canary.pid, sb.haproxy.pid, sb.prom.pid]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def _rearmed_as_seeded(sb: Sandbox, api: Any) -> None:
    """`Sandbox.rearm` (decision 760) on the sandbox above, its fault injected at 50/50: what a rollout left
    (weights, a record, a promotion's subsets, a history ConfigMap) is gone, HAProxy's weights are the seeded ones,
    the canary's knobs are its defaults, no fault, the load's counts start again; a scenario of another schema is
    refused; after a crash (its canary killed) the next scenario is refused, naming the server that exited."""
    api.patch_namespaced_custom_object(GROUP, VERSION, "ml", "virtualservices", "rec-model",
                                       {"metadata": {"annotations": {"modelcanary.dev/rollout": "{}"}}})
    api.patch_namespaced_custom_object(GROUP, VERSION, "ml", "destinationrules", "rec-model", {
        "spec": {"subsets": [{"name": "stable", "labels": {"app": "rec-model", "version": "v2.1.0"}},
                             {"name": "canary", "labels": {"app": "rec-model", "version": "v2.1.0"}}]}})
    sb.kube.handler.put_object({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
                                "metadata": {"name": "rec-model-history", "namespace": "ml"}})
    with pytest.raises(ValueError, match="'bad-schema' cannot run in a started 'errors' sandbox"):
        sb.rearm("bad-schema", rate=40)
    before = time.monotonic()
    sb.rearm("good", rate=40)
    vs = sb.kube.get(GROUP, "virtualservices", "ml", "rec-model")
    assert route_weights(vs) == {"stable": 100, "canary": 0}  # the test above had set 50/50
    assert "modelcanary.dev/rollout" not in vs["metadata"].get("annotations", {})
    dr = sb.kube.get(GROUP, "destinationrules", "ml", "rec-model")
    assert [s["labels"]["version"] for s in dr["spec"]["subsets"]] == ["v1.0.0", "v2.1.0"]
    assert sb.kube.get("", "configmaps", "ml", "rec-model-history") is None
    assert sb.haproxy.weights() == {"stable": 100, "canary": 0}
    assert sb.fault_injected_at is None and sb.scenario == "good"
    assert sb.canary.behaviour == Behaviour(device=sb.device) and sb.loadgen.stats.started_at >= before
    assert sb.broken() == ""
    # a canary that died under a scenario: the next one is refused for that, named, not for its scenario
    sb.canary.kill()
    with pytest.raises(RuntimeError, match=r"'slow' cannot run in this sandbox: the canary Triton \(pid \d+\) "
                                           r"exited with -9 during or after scenario 'good'"):
        sb.rearm("slow", rate=40)


def _doc_checks(prom: str, version: str) -> dict[str, float]:
    """Run the custom checks from docs/triton.md (parsed as a real policy) for one version."""
    import re

    import yaml

    from canary.metrics.queries import render_custom
    from canary.policy import parse_policy

    text = (Path(__file__).resolve().parents[2] / "docs" / "triton.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "triton-failures" in b)
    raw = yaml.safe_load(block)
    raw.update(steps=[10, 100])
    policy = parse_policy(raw, file="docs/triton.md")
    out = {}
    for check in policy.checks:
        if check.kind != "custom" or check.name.startswith("gpu-"):
            continue
        query = render_custom(check.template("canary"), check_name=check.name, model="rec-model",
                              version=version, namespace="ml", window_s=30)
        result = _query(prom, query)
        assert len(result) == 1, (check.name, query, result)
        out[check.name] = next(iter(result.values()))
    return out


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def _get(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _query(prom: str, expr: str) -> dict[str, Any]:
    url = f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.load(r)["data"]["result"]
    return {next(iter(s["metric"].values()), ""): float(s["value"][1]) for s in result}


@pytest.mark.parametrize("line_lost", [False, True])
def test_a_triton_port_taken_before_the_server_binds_it_is_picked_again(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path, line_lost: bool) -> None:
    """A port picked free and taken before the child binds it ("Socket ... already in use", seen in CI)
    is picked again and the server restarted, instead of failing the test that needed the server. `line_lost`:
    the log holds no "already in use" (PyTriton said "exited with failure" before its output thread wrote the
    binary's last lines: a CI run failed so, the log ending mid-table); the port no longer bindable tells it."""
    import socket

    import structlog.testing

    from canary.sandbox import ports, tritonserver

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    clash = taken.getsockname()[1]
    handed = iter([clash])  # the first port handed out is the one somebody else holds
    monkeypatch.setattr(tritonserver, "free_port", lambda: next(handed, None) or ports.free_port())
    if line_lost:
        monkeypatch.setattr(tritonserver, "_port_clash", lambda text: False)
    server = TritonServer("clash", "v9", workdir=tmp_path / "clash")
    try:
        with structlog.testing.capture_logs() as logs:
            server.start()
            assert server.http_port == clash
            server.wait_ready()
        assert server.http_port != clash and server.is_ready()
        assert [e for e in logs if e["event"] == "triton.port_taken"]
        triton_tmp = server.triton_tmp  # the restarted server's model folder (and python_env_ dir)
        assert triton_tmp and all(p.is_dir() for p in triton_tmp)
    finally:
        server.stop()
        taken.close()
    assert server.home is None
    assert not [p for p in triton_tmp if p.exists()]  # decision 184


def test_a_failed_triton_start_names_its_error_lines_and_its_full_log(tmp_path: Path) -> None:
    """A start Triton refuses (here a port held by another process, no retry) raises with the lines of this
    start's log that say why, beside the path of the whole log, which stays: a failure seen once under load
    must be explainable afterwards, not only from the last 30 lines. Healthy starts' own E lines (no CUDA
    on CPU, PyTriton's config without a file time) are not among them."""
    import socket

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    server = TritonServer("refused", "v9", workdir=tmp_path / "refused", http_port=taken.getsockname()[1])
    try:
        server.start()
        with pytest.raises(RuntimeError) as err:
            server.wait_ready(port_retries=0)
    finally:
        server.stop()
        taken.close()
    text = str(err.value)
    errors = text.split("errors in this start's log:\n", 1)[1].split("\nfull log: ", 1)[0].splitlines()
    assert any("already in use" in line for line in errors), text
    assert not [line for line in errors if "CudaDriverHelper" in line or "modification time" in line], text
    log = Path(text.split("full log: ", 1)[1].splitlines()[0])
    assert log == server.log_file and "already in use" in log.read_text(errors="replace")


def test_start_errors_keeps_the_failure_lines_of_a_triton_log_and_cuts_them() -> None:
    from canary.sandbox.tritonserver import start_errors

    log = "\n".join([
        'I1204 22:40:25.1 1 server.cc:1] "started"',
        'E1204 22:40:25.1 1 server.cc:241] "CudaDriverHelper has not been initialized."',
        'E1204 22:40:26.2 1 model_repository_manager.cc:470] "Failed to set config modification time: x"',
        'E1204 22:40:27.3 1 model_lifecycle.cc:1] "failed to load \'rec-model\': ' + "x" * 600 + '"',
        "TimeoutError: Timeout occurred while waiting for config file",
        "Triton Inference Server exited with failure. Please wait.",
    ])
    found = start_errors(log)
    assert [line[:20] for line in found] == ["E1204 22:40:27.3 1 m", "TimeoutError: Timeou", "Triton Inference Ser"]
    assert len(found[0]) == 400 and start_errors(log, limit=1) == found[:1]


def test_sandbox_ports_come_from_below_the_ephemeral_range() -> None:
    from canary.sandbox.ports import free_port

    assert all(20000 <= free_port() < 32768 for _ in range(20))


def test_a_port_once_handed_out_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers of one process never get the same port (a Triton arm once got one port for both
    HTTP and gRPC): the picker skips every port it handed out, even one that is free again."""
    from canary.sandbox import ports

    draws = iter([24000, 24000, 24000, 24001])
    monkeypatch.setattr(ports._rng, "randrange", lambda lo, hi: next(draws))  # noqa: SLF001
    monkeypatch.setattr(ports, "_given", __import__("collections").deque(maxlen=ports.REMEMBERED))
    monkeypatch.setattr(ports, "_bindable", lambda port: True)
    assert [ports.free_port(), ports.free_port()] == [24000, 24001]


def test_a_triton_start_that_gave_http_and_grpc_one_port_is_a_port_clash() -> None:
    from canary.sandbox.tritonserver import _port_clash

    assert _port_clash("The server cannot listen to HTTP requests and GRPC requests at the same address and port 127.0.0.1:24000")
    assert _port_clash("Socket '127.0.0.1:37829' already in use") and not _port_clash("model failed to load")


def test_a_haproxy_port_taken_before_haproxy_binds_it_is_picked_again(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """As for Triton: a port HAProxy picked free and another process (a parallel test worker) took
    before HAProxy bound it is picked again; a port the caller chose is never changed."""
    import socket

    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    from canary.sandbox import haproxy as hp

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    picks = iter([busy])
    real = hp.free_port
    monkeypatch.setattr(hp, "free_port", lambda: next(picks, None) or real())
    proxy = hp.HAProxy({"stable": "127.0.0.1:9"}, workdir=tmp_path / "a")
    try:
        assert proxy.port == busy
        proxy.start()
        assert proxy.port != busy and proxy.command("show info")
    finally:
        proxy.stop()
    fixed = hp.HAProxy({"stable": "127.0.0.1:9"}, port=busy, workdir=tmp_path / "b")
    try:
        with pytest.raises(RuntimeError, match="cannot bind"):
            fixed.start(timeout=5)
    finally:
        fixed.stop()
        taken.close()

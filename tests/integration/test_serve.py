"""`canary serve` over real HTTP, measuring in a real (backfilled) Prometheus.

The server runs in-process on 127.0.0.1:<ephemeral> with a fake clock: every look is
evaluated at the clock's time against linear counters, so each number is exact and no test
waits on wall time. Request bodies are shaped as Argo Rollouts' web provider sends them (GET
query, POST jsonBody) and as Flagger's webhook payload (pkg/controller/webhook.go). One test
runs `canary serve` as a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from canary import logs
from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, counter, histogram, history_window, openmetrics
from canary.serve import NamedPolicy, Service
from canary.serve_http import ServeServer
from canary.serve_store import SessionStore
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration

BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_PER_S = (10, 20, 30, 25, 10, 4, 1, 0, 0)  # per bucket (+Inf last), x rate factor below
POLICY = {
    "steps": [10, 50, 100],
    "analysis": {"interval": "60s", "look_every": "15s", "min_canary_requests": 100},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "2m"},
    "metrics": {"source": "model"},
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1},
               {"name": "p95", "kind": "latency", "quantile": 0.95, "max_ms": 500}],
}
GATED = {**POLICY, "gates": {"triton": {"warmup_requests": 2}}}
GATE_WAIT_S = 60.0  # the gate tests' verdict lands in the call however loaded the machine (decision 105)


def _model(name: str, *, canary_error_rate: float) -> list[Any]:
    """Stable v1 at 100 req/s with 0.5% errors; canary v2 at 50 req/s with the given error rate."""
    out: list[Any] = []
    for version, rps, err in (("v1", 100.0, 0.005), ("v2", 50.0, canary_error_rate)):
        m = {"model_name": name, "model_version": version}
        out += counter("model_requests_total", {**m, "outcome": "success"}, rps * (1 - err))
        out += counter("model_requests_total", {**m, "outcome": "error"}, rps * err)
        out += histogram("model_inference_duration_seconds", m, BOUNDS_S, [x * rps / 100 for x in LATENCY_PER_S])
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=3600, after_s=3 * 3600)
    series = _model("good", canary_error_rate=0.005) + _model("bad", canary_error_rate=0.10)
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, start + 3600
    finally:
        server.stop()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(prom: tuple[PromServer, float]) -> Clock:
    return Clock(prom[1])


def _service(prom: PromServer, state: Path, clock: Clock, policies: dict[str, Any] | None = None,
             gates: Any = None, auth: Any = None, answer_within_s: float = 8.0) -> Service:
    named = {name: NamedPolicy(name, parse_policy(raw), state) for name, raw in (policies or {"ml": POLICY}).items()}
    metrics = PrometheusProvider(prom.url, retries=2, budget_s=3.0, backoff_s=0.05)
    kw = {"gates": gates} if gates else {}
    return Service(policies=named, metrics=metrics, store=SessionStore(state), clock=clock, auth=auth,
                   answer_within_s=answer_within_s, **kw)


@pytest.fixture
def serve(prom: tuple[PromServer, float], clock: Clock, tmp_path: Path) -> Iterator[Any]:
    """start(**kw) -> a running ServeServer on tmp_path/state; all stopped at teardown."""
    servers: list[ServeServer] = []

    def start(state: Path | None = None, **kw: Any) -> ServeServer:
        server = ServeServer(_service(prom[0], state or tmp_path / "state", clock, **kw)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def call(url: str, *, method: str = "GET", body: Any = None, raw: bytes | None = None,
         ctype: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**({"Content-Type": ctype} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def argo_get(server: ServeServer, model: str, **extra: str) -> tuple[int, dict[str, Any]]:
    q = {"namespace": "ml", "rollout": model, "model": model, "stableVersion": "v1", "canaryVersion": "v2", **extra}
    return call(f"{server.url}/api/v1/argo/measure?{urllib.parse.urlencode(q)}")


def flagger(server: ServeServer, hook: str, model: str, *, headers: dict[str, str] | None = None,
            **meta: str) -> tuple[int, dict[str, Any]]:
    body = {"name": model, "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
            "metadata": {"model": model, "stableVersion": "v1", "canaryVersion": "v2", **meta}}
    return call(f"{server.url}/api/v1/flagger/{hook}", method="POST", body=body, headers=headers)


# ---- Argo Rollouts ---------------------------------------------------------------------


def test_argo_good_canary_passes_once_the_window_covers_the_interval(serve: Any, clock: Clock) -> None:
    server = serve()
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive"
    assert "window 0s of 60s" in doc["result"]["reason"]
    clock.t += 60
    code, doc = argo_get(server, "good")
    r = doc["result"]
    assert code == 200 and r["verdict"] == "pass", r
    assert r["checks"] == {"errors": "pass", "p95": "pass"} and r["window_s"] == 60
    assert r["canary_requests"] == pytest.approx(50 * 60)
    assert {e["check"] for e in doc["evidence"]} == {"errors", "p95"}
    # Argo advanced: the next look opens window 1 from the pass, and the judge pools window 0 as its prior
    clock.t += 15
    code, doc = argo_get(server, "good")
    assert doc["result"]["window"] == 1 and doc["result"]["window_s"] == 15
    tests = {e["check"]: e["extra"]["tests"][0] for e in doc["evidence"]}
    assert tests["errors"]["windows_before"] is True
    assert tests["errors"]["info"] > tests["errors"]["info_window"] > 0


def test_argo_post_json_body_bad_canary_fails_after_consecutive_looks_and_stays_failed(serve: Any,
                                                                                         clock: Clock) -> None:
    server = serve()
    body = {"namespace": "ml", "rollout": "bad", "model": "bad", "stableVersion": "v1", "canaryVersion": "v2",
            "policy": "ml", "step": "1"}
    url = f"{server.url}/api/v1/argo/measure"
    code, doc = call(url, method="POST", body=body)
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["failed_looks"] == 1
    assert doc["result"]["checks"]["errors"] == "fail"
    clock.t += 30
    code, doc = call(url, method="POST", body=body)
    assert code == 200 and doc["result"]["verdict"] == "fail" and "2 consecutive failed looks" in doc["result"]["reason"]
    clock.t += 15
    code, again = call(url, method="POST", body=body)  # sticky: no new measurement
    assert again["result"]["verdict"] == "fail" and again["result"]["outcome"] is None
    assert again["result"]["look"] == doc["result"]["look"]


def test_a_new_step_opens_a_new_window(serve: Any, clock: Clock) -> None:
    server = serve()
    argo_get(server, "good", step="0")
    clock.t += 30
    _, doc = argo_get(server, "good", step="0")
    assert doc["result"]["window"] == 0 and doc["result"]["window_s"] == 30
    clock.t += 15
    _, doc = argo_get(server, "good", step="1")
    assert doc["result"]["window"] == 1 and doc["rollout"]["step"] == "1"


def test_sequential_state_survives_a_restart(serve: Any, clock: Clock, tmp_path: Path) -> None:
    state = tmp_path / "shared"
    first = serve(state)
    argo_get(first, "good")  # opens the good canary's window
    clock.t += 15
    _, doc = argo_get(first, "bad")
    assert doc["result"]["failed_looks"] == 1 and doc["result"]["verdict"] == "inconclusive"
    clock.t += 45
    _, doc = argo_get(first, "good")
    assert doc["result"]["verdict"] == "pass"
    pooled = next(e for e in doc["evidence"] if e["check"] == "errors")["extra"]["tests"][0]["info"]
    first.stop()

    second = serve(state)  # a new process would read the same files
    clock.t += 30
    _, doc = argo_get(second, "bad")
    assert doc["result"]["verdict"] == "fail", "the failed look before the restart counts"
    assert doc["result"]["failed_looks"] == 2 and doc["result"]["look"] == 2
    _, doc = argo_get(second, "good")
    errors = next(e for e in doc["evidence"] if e["check"] == "errors")["extra"]["tests"][0]
    assert doc["result"]["window"] == 1 and doc["result"]["window_s"] == 30 and errors["windows_before"] is True
    assert errors["info"] - errors["info_window"] == pytest.approx(pooled), "window 0's evidence is the prior"


# ---- Flagger ---------------------------------------------------------------------------


def test_flagger_hooks_advance_only_on_evidence_and_promote_only_on_a_pass(serve: Any, clock: Clock) -> None:
    server = serve()
    code, doc = flagger(server, "confirm-promotion", "good")
    assert code == 412 and doc["field"] == "checksum"
    code, doc = flagger(server, "pre-rollout", "good")
    assert code == 200 and doc["result"]["gates"] == "passed" and "no gates configured" in doc["result"]["reason"]
    clock.t += 30
    code, doc = flagger(server, "rollout", "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and "evidence" not in doc
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 412
    clock.t += 30
    code, doc = flagger(server, "rollout", "good")
    assert code == 200 and doc["result"]["verdict"] == "pass", doc
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200
    assert flagger(server, "confirm-promotion", "good")[0] == 200
    clock.t += 15  # the next iteration: a new window, too short to pass
    assert flagger(server, "rollout", "good")[1]["result"]["window"] == 1
    assert flagger(server, "confirm-promotion", "good")[0] == 412


def test_flagger_rollout_hook_halts_a_failing_canary_with_409(serve: Any, clock: Clock) -> None:
    server = serve()
    flagger(server, "pre-rollout", "bad")
    clock.t += 15
    assert flagger(server, "rollout", "bad")[0] == 200  # first failed look of two: not yet
    clock.t += 15
    code, doc = flagger(server, "rollout", "bad")
    assert code == 409 and doc["result"]["verdict"] == "fail" and "errors" in doc["result"]["reason"]
    assert flagger(server, "confirm-promotion", "bad")[0] == 409
    assert flagger(server, "pre-rollout", "bad")[0] == 409


def test_flagger_pre_rollout_runs_the_triton_gates(serve: Any) -> None:
    server = serve(policies={"gated": GATED}, answer_within_s=GATE_WAIT_S)
    code, doc = flagger(server, "pre-rollout", "good")
    assert code == 400 and doc["field"] == "metadata.tritonCanary"
    code, doc = flagger(server, "pre-rollout", "good", tritonCanary=f"127.0.0.1:{refused_port()}")
    assert code == 409 and "unreachable" in doc["result"]["reason"]
    assert doc["result"]["verdict"] == "inconclusive", "a refused gate is asked again, not a sticky failure"
    # a URL tritonclient would misread (a path: "not live") is the request's fault, naming its field: 400
    code, doc = flagger(server, "pre-rollout", "good", tritonCanary="http://127.0.0.1:8000/triton")
    assert code == 400 and doc["field"] == "metadata.tritonCanary" and "without a path" in str(doc), doc
    code, doc = flagger(server, "pre-rollout", "good", tritonCanary="127.0.0.1:8000",
                        tritonStable="127.0.0.1:8001/x")
    assert code == 400 and doc["field"] == "metadata.tritonStable" and "without a path" in str(doc), doc
    # the stable's address in both: the gates compared stable with itself (decision 204); a 503 had Flagger ask again
    code, doc = flagger(server, "pre-rollout", "good", tritonCanary="http://127.0.0.1:8000",
                        tritonStable="127.0.0.1:8000")
    assert code == 400 and doc["field"] == "metadata.tritonCanary", doc
    assert "name the same Triton server" in doc["error"], doc


def test_flagger_pre_rollout_passes_with_real_triton(serve: Any, triton_stable: Any, triton_canary: Any) -> None:
    server = serve(policies={"gated": GATED}, answer_within_s=GATE_WAIT_S)
    code, doc = flagger(server, "pre-rollout", "rec-model", tritonCanary=triton_canary.http_url,
                        tritonStable=triton_stable.http_url)
    assert code == 200 and doc["result"]["gates"] == "passed", doc
    assert "warm-up" in doc["result"]["reason"]


def test_flagger_pre_rollout_with_stable_down_could_not_check_it_did_not_refuse_the_canary(
        serve: Any, triton_canary: Any) -> None:
    """A stable Triton that does not answer is no verdict on the canary (decision 93: ABORTED under
    `canary promote` and the controller): 503 "could not run the gates", naming stable, not 409 refused."""
    server = serve(policies={"gated": GATED}, answer_within_s=GATE_WAIT_S)
    code, doc = flagger(server, "pre-rollout", "rec-model", tritonCanary=triton_canary.http_url,
                        tritonStable=f"127.0.0.1:{refused_port()}")
    assert code == 503, doc
    assert doc["result"]["reason"].startswith("could not run the gates: stable Triton rec-model@"), doc


# ---- bad requests ------------------------------------------------------------------------


ARGO = {"namespace": "ml", "rollout": "good", "model": "good", "stableVersion": "v1", "canaryVersion": "v2"}
FLAGGER = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "abc",
           "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("POST", "/api/v1/argo/measure", {k: v for k, v in ARGO.items() if k != "model"}, 400, "model"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "canaryVersoin": "v2"}, 400, "canaryVersoin"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "namespace": 7}, 400, "namespace"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "namespace": "ML_prod"}, 400, "namespace"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "canaryVersion": "v2 beta"}, 400, "canaryVersion"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "policy": "nope"}, 400, "policy"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "policy": "../etc/passwd"}, 400, "policy"),
    ("POST", "/api/v1/argo/measure", ["not", "an", "object"], 400, ""),
    ("POST", "/api/v1/argo/measure", b"{not json", 400, ""),
    ("POST", "/api/v1/argo/measure", b"\xff\xfe", 400, ""),
    ("POST", "/api/v1/argo/measure", b"x" * (64 * 1024 + 1), 413, ""),
    ("PUT", "/api/v1/argo/measure", ARGO, 405, ""),
    ("GET", "/api/v1/argo/measure?namespace=ml&namespace=ml", None, 400, "namespace"),
    ("GET", "/api/v1/flagger/rollout", None, 405, ""),
    ("POST", "/api/v1/flagger/post-rollout", FLAGGER, 404, ""),
    ("POST", "/nope", FLAGGER, 404, ""),
    ("POST", "/api/v1/flagger/rollout", {k: v for k, v in FLAGGER.items() if k != "metadata"}, 400, "metadata"),
    ("POST", "/api/v1/flagger/rollout", {**FLAGGER, "checksum": 12}, 400, "checksum"),
    ("POST", "/api/v1/flagger/rollout", {**FLAGGER, "metadata": {**FLAGGER["metadata"], "modle": "x"}}, 400,
     "metadata.modle"),
    ("POST", "/api/v1/flagger/rollout", {**FLAGGER, "metadata": {"model": "good", "stableVersion": "v1"}}, 400,
     "metadata.canaryVersion"),
    ("POST", "/api/v1/flagger/confirm-promotion", {**FLAGGER, "name": "Good!"}, 400, "name"),
])
def test_bad_requests_get_a_4xx_naming_the_field(serve: Any, method: str, path: str, body: Any, status: int,
                                                  field: str) -> None:
    server = serve()
    raw = body if isinstance(body, bytes) else None
    code, doc = call(server.url + path, method=method, body=None if raw is not None else body, raw=raw)
    assert (code, doc["field"]) == (status, field), doc
    assert doc["error"]
    assert call(server.url + "/healthz") == (200, {"ok": True}), "the server goes on"


def test_wrong_content_type_and_a_revision_judged_with_other_inputs(serve: Any) -> None:
    server = serve(policies={"ml": POLICY, "other": POLICY})
    code, doc = call(f"{server.url}/api/v1/argo/measure", method="POST", raw=b"a=b", ctype="text/plain")
    assert code == 415
    assert argo_get(server, "good")[1]["field"] == "policy", "several policies: the request must name one"
    assert argo_get(server, "good", policy="ml")[0] == 200
    code, doc = argo_get(server, "good", policy="other")
    assert (code, doc["field"]) == (409, "policy") and "judged with policy 'ml'" in doc["error"]


def test_an_unreadable_state_file_is_a_500_naming_it_not_a_fresh_start(serve: Any, tmp_path: Path) -> None:
    server = serve()
    assert argo_get(server, "good")[0] == 200
    path = SessionStore(tmp_path / "state").path("argo/ml/good", "v2")
    path.write_text("{", encoding="utf-8")
    code, doc = argo_get(server, "good")
    assert code == 500 and str(path) in doc["error"]
    assert call(server.url + "/healthz")[0] == 200


def test_one_json_decision_line_per_answer_on_stderr(serve: Any, clock: Clock) -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    try:
        server = serve()
        argo_get(server, "bad")
        flagger(server, "pre-rollout", "good")
        call(server.url + "/api/v1/argo/measure?namespace=ml")
    finally:
        logs.configure(fmt="console", stream=sys.__stderr__)
    events = logs.parse_json_lines(stream.getvalue())
    decisions = [e for e in events if e["event"] == "serve.decision"]
    assert [(d["integration"], d["hook"], d["verdict"]) for d in decisions] == [
        ("argo", "measure", "inconclusive"), ("flagger", "pre-rollout", "inconclusive")]
    assert decisions[0]["checks"]["errors"] == "fail" and decisions[0]["revision"] == "v2"
    bad = [e for e in events if e["event"] == "serve.bad_request"]
    assert len(bad) == 1 and bad[0]["status"] == 400 and bad[0]["field"] == "rollout"


# ---- the command -------------------------------------------------------------------------


def test_canary_serve_command_binds_loopback_and_stops_on_sigterm(tmp_path: Path) -> None:
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    exe = Path(sys.executable).with_name("canary")
    proc = subprocess.Popen([str(exe), "serve", "--policy", str(policy), "--state-dir", str(tmp_path / "s"),
                             "--port", "0", "--prometheus-url", f"http://127.0.0.1:{refused_port()}",
                             "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        listening = _event(proc, "serve.listening")
        assert listening["host"] == "127.0.0.1"
        url = listening["url"]
        assert call(url + "/healthz") == (200, {"ok": True})
        code, doc = call(url + "/api/v1/flagger/rollout", method="POST", raw=b"[]")
        assert code == 400 and "payload" in doc["error"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out == b"", "nothing on stdout"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_canary_serve_on_the_same_state_directory_exits_2(tmp_path: Path) -> None:
    """Two processes on one state directory each read-modify-wrote the same revision's file: one's failed
    look was overwritten by the other's pass computed from the session before it. The second is refused."""
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    exe = Path(sys.executable).with_name("canary")
    argv = [str(exe), "serve", "--policy", str(policy), "--state-dir", str(tmp_path / "s"), "--port", "0",
            "--prometheus-url", f"http://127.0.0.1:{refused_port()}", "--log-format", "json"]
    env = {**os.environ, "NO_COLOR": "1"}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _event(first, "serve.listening")
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)  # a hang guard
        assert second.returncode == 2 and f"in use by another `canary serve` (pid {first.pid})" in second.stderr, \
            second.stderr
        assert str(tmp_path / "s") in second.stderr
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def _event(proc: subprocess.Popen[bytes], name: str, timeout: float = 60.0, *,
           passed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The first JSON log line `name` on the process's stderr (fails with what came if it exits first); the
    lines read before it are appended to `passed` when given (else dropped).

    Reads the pipe's file descriptor itself: a buffered readline could hold the wanted line in
    its buffer while select() waits on the (empty) pipe. What one read brought past the line found is
    kept on `proc` for the next call: `serve.started` and `serve.listening` arriving in one read lost
    the second, and the next call waited 60 s for a line already read (a CI failure, by timing)."""
    assert proc.stderr is not None
    fd, buf = proc.stderr.fileno(), getattr(proc, "_unread", b"")
    while True:
        *lines, buf = buf.split(b"\n")
        for i, line in enumerate(lines):
            for e in logs.parse_json_lines(line.decode(errors="replace")):
                if e.get("event") == name:
                    proc._unread = b"\n".join([*lines[i + 1:], buf])  # type: ignore[attr-defined]
                    return e
                if passed is not None:
                    passed.append(e)
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {name} within {timeout}s; stderr so far: {buf!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"exited ({proc.wait()}) before {name}: {buf!r}"
        buf += chunk


# ---- the documented examples ------------------------------------------------------------------


def _doc_objects() -> dict[str, Any]:
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "integrations.md").read_text(encoding="utf-8")
    objects = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    return {o["kind"]: o for o in objects if isinstance(o, dict) and "kind" in o}


def test_the_documented_argo_and_flagger_requests_are_accepted_as_written(serve: Any, tmp_path: Path) -> None:
    """...with the documented credentials: Argo's header from the Secret's argument, Flagger's URL user and
    password as Go sends them (Basic auth), against a server with --token-file."""
    import base64

    from canary.serve_auth import TokenFile

    docs = _doc_objects()
    assert set(docs) == {"AnalysisTemplate", "Rollout", "Canary"}
    token = "0f" * 32
    (tmp_path / "token").write_text(token + "\n")
    server = serve(policies={"argo": POLICY, "flagger": POLICY}, auth=TokenFile(tmp_path / "token"))
    metric = docs["AnalysisTemplate"]["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    secret_arg = next(a for a in docs["AnalysisTemplate"]["spec"]["args"] if "secretKeyRef" in a.get("valueFrom", {}))
    headers = {h["key"]: h["value"].replace("{{args.%s}}" % secret_arg["name"], token) for h in web["headers"]}
    assert (metric["successCondition"], metric["failureCondition"]) == (
        'result.verdict == "pass"', 'result.verdict == "fail"')
    hashes = {"Stable": "7c9d5f6b8", "Latest": "5d4f8b9c7"}
    for step in (s for s in docs["Rollout"]["spec"]["strategy"]["canary"]["steps"] if "analysis" in s):
        args = {a["name"]: a.get("value") or hashes[a["valueFrom"]["podTemplateHashValue"]]
                for a in step["analysis"]["args"]}
        body = {k: v.replace("{{args.", "{").replace("}}", "}").format(**args) if "{{" in v else v
                for k, v in web["jsonBody"].items()}
        path = urllib.parse.urlsplit(web["url"]).path
        code, doc = call(server.url + path, method=web["method"], body=body, headers=headers)
        # accepted, and judged: the documented model has no series in this Prometheus, so the first look is the
        # refusal of a model that matches nothing (decision 291), naming it
        assert code == 200 and web["jsonPath"] == "{$.result}" and doc["result"]["verdict"] == "fail", doc
        assert doc["result"]["reason"].startswith(f"model {doc['rollout']['model']!r}: no stable"), doc
        assert doc["rollout"]["step"] == args["step"] and doc["rollout"]["canaryVersion"] == hashes["Latest"]
    canary = docs["Canary"]
    for hook in canary["spec"]["analysis"]["webhooks"]:
        payload = {"name": canary["metadata"]["name"], "namespace": canary["metadata"]["namespace"],
                   "phase": "Progressing", "checksum": "8f7d6c5b4", "metadata": hook["metadata"]}
        url = urllib.parse.urlsplit(hook["url"])
        assert url.password == "${CANARY_SERVE_TOKEN}", "filled in at apply time (envsubst), as documented"
        basic = base64.b64encode(f"{url.username}:{token}".encode()).decode()
        code, doc = call(server.url + url.path, method="POST", body=payload, headers={"Authorization": f"Basic {basic}"})
        # the refused rollout call recorded no look: the first traffic increase is the one granted before any look
        expected = {"pre-rollout": (200,), "rollout": (409,), "confirm-traffic-increase": (200,)}
        assert code in expected.get(hook["type"], (412,)), (hook["type"], doc)


def test_serve_help_shows_an_example() -> None:
    from typer.testing import CliRunner

    from canary.cli import app

    res = CliRunner().invoke(app, ["serve", "--help"])
    assert res.exit_code == 0 and "Example: canary serve" in res.stdout


def test_each_look_is_judged_at_its_requests_over_the_windows_anchor(serve: Any, clock: Clock) -> None:
    """The answer says the pass_ratio its look was judged at (requests / the window's first look that
    could pass), and every check's pass level is the anchored one (docs/judge.md, "The level")."""
    from canary.analysis import evidence

    tight = {**POLICY, "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 0.05}]}
    server = serve(policies={"ml": tight})
    assert argo_get(server, "good")[1]["result"]["pass_ratio"] == 1.0  # the first call opens the window
    clock.t += 60
    code, doc = argo_get(server, "good")  # the anchor: 3,000 canary requests, not shown within +0.05 points
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["pass_ratio"] == 1.0
    clock.t += 30
    code, doc = argo_get(server, "good")
    assert doc["result"]["pass_ratio"] == pytest.approx(1.5, rel=1e-3)
    level = doc["evidence"][0]["extra"]["pass_level"]
    assert level == pytest.approx(evidence.pass_level(parse_policy(tight), 0, doc["result"]["pass_ratio"]))


def test_event_keeps_the_lines_one_read_brought_past_the_one_found() -> None:
    """`_event`'s own contract (every serve test waits on it): two lines written at once are both found, one
    call after the other. The second was dropped with the rest of the read, and the next call waited 60 s for
    it (test_canary_serve_over_https_with_a_token failed in CI so, when serve.listening came with
    serve.started)."""
    import json
    import sys

    lines = "".join(json.dumps({"event": e}) + "\n" for e in ("serve.started", "serve.listening"))
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stderr.write({lines!r}); sys.stderr.flush()"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _event(proc, "serve.started", timeout=30)["event"] == "serve.started"
        assert _event(proc, "serve.listening", timeout=30)["event"] == "serve.listening"
    finally:
        proc.wait(timeout=30)

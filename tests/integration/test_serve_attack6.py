"""`canary serve` called as Argo Rollouts and Flagger call it, with its own configuration wrong (decisions 270-274).

Over real HTTP on 127.0.0.1 against test_serve.py's real, backfilled Prometheus, with the fake clock moving
the windows (no test waits on time). What the callers make of an answer was read in their source: Argo's `web`
provider marks any non-2xx an Error and a 200 whose `result.verdict` is "fail" Failed (metricproviders/webmetric,
argo-rollouts 9f8d111); Flagger counts any status above 202 as a failed check and rolls back at `threshold`
(pkg/controller/webhook.go, scheduler.go, flagger 15bd6ad).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from canary.serve_http import ServeServer
from canary.serve_session import UNREACHABLE
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, Clock, argo_get, call, flagger, prom  # noqa: F401 - prom
from tests.integration.test_serve_attack4 import clock, rig  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

DEADLINE_S = 180  # POLICY: interval 60 s + no_data_deadline 2 m


# ---- decision 270: a Prometheus that refuses the queries is "could not ask", never "no series" -----------------


def test_a_prometheus_url_whose_queries_are_refused_is_a_503_and_never_fails_the_canary(rig: Any,
                                                                                       clock: Clock) -> None:
    """`--prometheus-url` with a path prefix the Prometheus does not serve (a reverse proxy's `/prometheus` left
    in, or dropped): every query is a 404, as with credentials Prometheus refuses (401/403) or a query it will
    not run (400/422). Taken as "asked, no such series", every look was a 200 inconclusive and the window's
    deadline a 200 `fail` (Argo: Failed, the rollout aborted as a bad canary) and Flagger's 409, "canary
    requests 0", sticky: a good canary rolled back for the service's own configuration."""
    server = rig(prefix="/not-prometheus")
    assert flagger(server, "pre-rollout", "good")[0] == 200
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200  # the first step, at weight 0
    code, doc = argo_get(server, "good")
    assert code == 503, doc  # Argo: Error, "could not measure"
    assert doc["result"]["verdict"] == "inconclusive" and "404" in doc["result"]["reason"], doc["result"]
    clock.t += DEADLINE_S
    code, doc = argo_get(server, "good")
    assert code == 503 and doc["result"]["verdict"] == "inconclusive", doc["result"]
    assert doc["result"]["reason"].startswith(UNREACHABLE), doc["result"]
    code, doc = flagger(server, "rollout", "good")
    assert code == 503 and doc["result"]["verdict"] == "inconclusive", doc  # not the canary's 409
    assert flagger(server, "confirm-promotion", "good")[0] == 412, "nothing was shown about the canary"
    server = rig()  # the URL mended: the held window is judged on Prometheus's data
    clock.t += 60
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "pass", doc["result"]
    code, doc = flagger(server, "rollout", "good")
    assert code == 200 and doc["result"]["verdict"] == "pass", doc["result"]


def test_canary_serve_pointed_at_a_url_that_refuses_its_queries_exits_2_naming_the_flag(prom: Any,
                                                                                       tmp_path: Path) -> None:
    """Start-up asks Prometheus's `time()`; a URL that answers and refuses it (the wrong path prefix here; the same
    for credentials refused) was taken as "Prometheus not up yet" and the service served, every look "could not
    measure" until someone read its log. It exits 2 naming `--prometheus-url` before anything listens; a URL
    where nothing answers yet still starts (tests/integration/test_serve_attack5.py)."""
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    # a process, not in-process: one that serves (the defect) is ended by the timeout, never waited on for ever
    res = subprocess.run([str(Path(sys.executable).with_name("canary")), "serve", "--policy", str(policy),
                          "--state-dir", str(tmp_path / "s"), "--port", "0", "--prometheus-url",
                          prom[0].url + "/not-prometheus", "--log-format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "--prometheus-url" in res.stderr and "404" in res.stderr and "serve.started" not in res.stderr, res.stderr


# ---- decision 272: every refusal names what is wrong in the caller's words ------------------------------------

ARGO = {"namespace": "ml", "rollout": "good", "model": "good", "stableVersion": "v1", "canaryVersion": "v2"}
FLAGGER = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "abc",
           "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}


@pytest.mark.parametrize(("method", "path", "body", "field", "says", "not_says"), [
    ("POST", "/api/v1/argo/measure", {**ARGO, "namespace": None}, "namespace", "got null", "NoneType"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "step": 10}, "step", "got a number (10)", " int"),
    ("POST", "/api/v1/argo/measure", {**ARGO, "model": ["good"]}, "model", "got an array", " list"),
    ("POST", "/api/v1/flagger/rollout", {**FLAGGER, "metadata": "model=good"}, "metadata", "must be an object",
     "missing"),
    ("POST", "/api/v1/flagger/rollout", {**FLAGGER, "checksum": True}, "checksum", "got true", " bool"),
    # a GET whose fields came in a body: "namespace: missing" for a request that sent every field
    ("GET", "/api/v1/argo/measure", ARGO, "", "sent a body", "missing"),
])
def test_a_refusal_names_the_field_and_what_came_in_json_words(rig: Any, method: str, path: str, body: Any,
                                                               field: str, says: str, not_says: str) -> None:
    server = rig()
    code, doc = call(server.url + path, method=method, body=body)
    assert code == 400 and doc["field"] == field, doc
    assert says in doc["error"] and not_says not in doc["error"], doc["error"]


def _raw(server: ServeServer, request: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):  # each of these answers closes the connection
            out += chunk
    head, _, doc = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(doc)


@pytest.mark.parametrize(("headers", "status", "field"), [
    (b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415, "Content-Type"),
    (b"Content-Type: application/json\r\n\r\n", 411, "Content-Length"),  # a POST without its length
    (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "Content-Length"),
    (b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411, "Transfer-Encoding"),
])
def test_a_refused_header_is_named_as_the_field(rig: Any, headers: bytes, status: int, field: str) -> None:
    """As `Authorization` is named in a 401: "field": "" sent the caller looking through its JSON body."""
    server = rig()
    code, doc = _raw(server, b"POST /api/v1/argo/measure HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers)
    assert (code, doc["field"]) == (status, field), doc


# ---- decision 273: Argo's background and step analyses on one revision both get the window's pass -----------------


def test_a_step_analysis_whose_background_analysis_opened_the_window_still_passes(rig: Any, clock: Clock) -> None:
    """The documented pair (docs/integrations.md): one template, the step's analysis passes `step: "10"`, the
    background one the template's default "0", both every 30 s. The background one's first call came 10 s after
    the step's: its new label opened the window, so its calls were the first to cover the interval and took every
    pass, each pass opening the next window; the step analysis met a fresh window at every call, never passed, and
    Argo ended it Inconclusive at `count`: the rollout paused at its step for ever."""
    server = rig()
    t0, step_verdicts = clock.t, []
    for k in range(8):  # four windows of POLICY's 60 s interval
        clock.t = t0 + 30 * k
        code, doc = argo_get(server, "good", step="10")
        assert code == 200, doc
        step_verdicts.append(doc["result"]["verdict"])
        clock.t = t0 + 30 * k + 10
        assert argo_get(server, "good", step="0")[0] == 200
    assert "pass" in step_verdicts, step_verdicts
    # owed once, and only to a label that looked in the window that passed
    clock.t = t0 + 240 + 10
    code, doc = argo_get(server, "good", step="0")
    assert doc["result"]["verdict"] == "pass", doc["result"]  # the background analysis passes: owed to "10"
    clock.t += 5
    code, doc = argo_get(server, "good", step="50")  # a new step (its label new): its own window, never this pass
    assert doc["result"]["verdict"] == "inconclusive" and doc["result"]["window_s"] <= 60, doc["result"]
    clock.t += 5
    code, doc = argo_get(server, "good", step="10")
    assert doc["result"]["verdict"] == "pass" and "answered to another analysis" in doc["result"]["reason"], doc
    clock.t += 5
    code, doc = argo_get(server, "good", step="10")  # owed once: this call looks
    assert doc["result"]["verdict"] == "inconclusive", doc["result"]


# ---- decision 274: a query string on a Flagger webhook URL is refused, not ignored ------------------------------


def test_a_flagger_webhook_url_with_a_query_string_is_refused_not_judged_without_it(prom: Any, clock: Clock,
                                                                                    tmp_path: Path) -> None:
    """`url: .../api/v1/flagger/rollout?policy=strict` (a platform engineer choosing the policy in the URL): the
    query string was never read, and the look was judged with the only policy loaded, a 200 on the wrong limits.
    Now a 400 naming the query's field; the same payload on the bare URL is judged."""
    named = {"default": NamedPolicy("default", parse_policy(POLICY), tmp_path)}
    service = Service(policies=named, metrics=PrometheusProvider(prom[0].url, retries=1, budget_s=2.0),
                      store=SessionStore(tmp_path / "state"), clock=clock)
    server = ServeServer(service).start()
    try:
        body = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "abc",
                "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}
        code, doc = call(f"{server.url}/api/v1/flagger/rollout?policy=strict", method="POST", body=body)
        assert (code, doc["field"]) == (400, "policy") and "query string" in doc["error"], doc
        assert not list((tmp_path / "state").glob("*.json")), "nothing recorded for a refused call"
        code, doc = call(f"{server.url}/api/v1/flagger/rollout", method="POST", body=body)
        assert code == 200 and doc["rollout"]["policy"] == "default", doc
    finally:
        server.stop()

"""`canary serve` wired into Argo Rollouts and Flagger by a platform engineer (docs/decisions.md 154).

Over real HTTP on 127.0.0.1, a real backfilled Prometheus (test_serve.py's) and a port that refuses
every connection for "Prometheus down"; the fake clock moves the windows, so no test waits on time.
What Argo and Flagger make of an answer was read in their source: Argo's `web` provider marks any
non-2xx an Error (metricproviders/webmetric, argo-rollouts 9f8d111) and a 200 whose `result.verdict`
is "fail" Failed; Flagger counts any status above 202 as a failed check (pkg/controller/webhook.go,
flagger 15bd6ad).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import structlog.testing

import structlog
from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from canary import logs
from canary.serve_http import PHRASE_MAX, InFlight, ServeServer, _phrase
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, Clock, _event, argo_get, call, flagger, prom  # noqa: F401 - prom
from tests.support.blackhole import BlackholeProxy
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration

DEADLINE_S = 180  # POLICY: interval 60 s + no_data_deadline 2 m


@pytest.fixture
def clock(prom: Any) -> Clock:
    return Clock(prom[1])


@pytest.fixture
def rig(prom: Any, clock: Clock, tmp_path: Path) -> Iterator[Any]:
    """start(up=True, prefix="") -> a ServeServer on one state directory, asking the real Prometheus (up) at its URL
    + `prefix` (a path it does not serve: decision 270) or a port that refuses (down); each start stops the one
    before (a restart of the service, its flags mended or not)."""
    running: list[ServeServer] = []

    def start(*, up: bool = True, prefix: str = "") -> ServeServer:
        for s in running:
            s.stop()
        running.clear()
        url = prom[0].url + prefix if up else f"http://127.0.0.1:{refused_port()}"
        named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
        metrics = PrometheusProvider(url, retries=1, budget_s=2.0, backoff_s=0.05)
        service = Service(policies=named, metrics=metrics, store=SessionStore(tmp_path / "state"), clock=clock)
        running.append(ServeServer(service).start())
        return running[0]

    yield start
    for s in running:
        s.stop()


# ---- (a) Prometheus down at the window's deadline --------------------------------------------


def test_argo_prometheus_down_at_the_deadline_is_an_error_not_a_failed_canary(rig: Any, clock: Clock) -> None:
    """Argo with a raised `consecutiveErrorLimit` (riding out a Prometheus restart) kept asking while
    Prometheus was down; the look at the deadline answered 200 `fail` (Argo: Failed, "the canary is
    bad") and the revision stayed failed once Prometheus was back, the good canary rolled back."""
    server = rig(up=True)
    assert argo_get(server, "good")[0] == 200
    server = rig(up=False)
    for _ in range(2):
        clock.t += 60
        code, doc = argo_get(server, "good")
        assert code == 503 and doc["result"]["verdict"] == "inconclusive"
    clock.t += DEADLINE_S - 120
    with structlog.testing.capture_logs() as lines:
        code, doc = argo_get(server, "good")
    assert code == 503, doc  # Argo: Error ("could not measure"), never Failed
    assert doc["result"]["verdict"] == "inconclusive", doc["result"]
    assert doc["result"]["reason"].startswith("Prometheus could not be asked at the window's deadline"), doc
    decided = [e for e in lines if e["event"] == "serve.decision"]
    assert decided and decided[-1]["status"] == 503 and decided[-1]["verdict"] == "inconclusive"
    server = rig(up=True)  # Prometheus is back: the held window is judged on its own data
    clock.t += 30
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["window"] == 1
    clock.t += 30
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "pass", doc["result"]


def test_flagger_prometheus_down_at_the_deadline_is_503_and_no_sticky_409(rig: Any, clock: Clock) -> None:
    server = rig(up=True)
    assert flagger(server, "pre-rollout", "good")[0] == 200
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200  # the first step, at weight 0
    server = rig(up=False)
    clock.t += DEADLINE_S
    code, doc = flagger(server, "rollout", "good")
    assert code == 503, doc  # a failed check to Flagger as before, but not the canary's 409
    assert flagger(server, "confirm-promotion", "good")[0] == 412, "not 409: nothing shown about the canary"
    server = rig(up=True)
    clock.t += 60
    code, doc = flagger(server, "rollout", "good")
    assert code == 200 and doc["result"]["verdict"] == "pass", doc["result"]
    assert flagger(server, "confirm-promotion", "good")[0] == 200


def _status_line(server: ServeServer, hook: str) -> tuple[int, str, dict[str, Any]]:
    """(status, reason phrase as the status line carries it, body) of a Flagger call, for model "good"."""
    import http.client

    body = json.dumps({"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
                       "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}})
    conn = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(server.url).port, timeout=30)
    try:
        conn.request("POST", f"/api/v1/flagger/{hook}", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.reason, json.loads(resp.read())
    finally:
        conn.close()


def test_a_5xx_carries_its_reason_on_the_status_line_the_one_place_flaggers_client_keeps(rig: Any,
                                                                                          clock: Clock) -> None:
    """go-retryablehttp (Flagger 15bd6ad, v0.7.8) drains a 5xx's body once it gives up and returns `giving up after
    1 attempt(s): unexpected HTTP status <resp.Status>`, Go's `Status` being the status line after the version as
    the server wrote it: the Event said "503 Service Unavailable" and nothing of why (decision 305)."""
    server = rig(up=True)
    assert flagger(server, "pre-rollout", "good")[0] == 200
    server = rig(up=False)
    clock.t += 30
    status, reason, doc = _status_line(server, "rollout")
    assert status == 503, doc  # the status as before: a failed check to Flagger, an Error to Argo
    assert "could not measure" in doc["result"]["reason"], doc
    assert reason == f"Service Unavailable: {doc['result']['reason']}", (reason, doc)
    # one printable ASCII line, cut at PHRASE_MAX: nothing a reason holds can end the status line or forge a header
    long = _phrase(503, {"error": "stopping\r\nX-Forged: 1 \u2265 " + "x" * 400, "field": ""})
    assert long == "Service Unavailable: " + ("stopping X-Forged: 1 " + "x" * 400)[:PHRASE_MAX - 3] + "...", long
    status, reason, doc = _status_line(server, "confirm-traffic-increase")
    assert (status, reason) == (412, "Precondition Failed"), doc  # a 4xx's body reaches Flagger: its phrase as is


def test_a_bad_canary_still_fails_at_the_deadline_when_prometheus_answered(rig: Any, clock: Clock) -> None:
    """The hold is for "could not ask" only: measured-but-unclear still ends as the policy says."""
    server = rig(up=True)
    argo_get(server, "nothing-here")
    clock.t += DEADLINE_S
    code, doc = argo_get(server, "nothing-here")
    assert code == 200 and doc["result"]["verdict"] == "fail", doc["result"]


# ---- (b) Argo's undo to a pod-template hash that was a canary before ---------------------------


def test_argo_undo_to_an_earlier_canary_hash_is_a_new_rollout_not_a_409(rig: Any, clock: Clock) -> None:
    """v1 went out as a canary against v0 (its session: canary v1, stable v0); later v2 is stable and
    `kubectl argo rollouts undo` rolls v1 out again, the same pod-template hash, so the same revision.
    Every measurement was a 409 "judged with stableVersion v0, not v2" (Argo: Error, the undo aborted
    after `consecutiveErrorLimit`), until the file was deleted by hand. (The revision is the hash `h1` both
    times, and the fixture's series are v1's and v2's: a first rollout against a stable with no series is refused
    at its first look and records none, and a session without a look starts over at once: decision 310.)"""
    server = rig(up=True)
    assert argo_get(server, "good", stableVersion="v1", canaryVersion="v2", revision="h1")[1]["result"]["look"] == 1
    clock.t += 60
    code, doc = argo_get(server, "good", stableVersion="v2", canaryVersion="v1", revision="h1")
    assert code == 409 and doc["field"] == "stableVersion", "while that rollout is in progress: one pair"
    clock.t += DEADLINE_S + 1
    with structlog.testing.capture_logs() as lines:
        code, doc = argo_get(server, "good", stableVersion="v2", canaryVersion="v1", revision="h1")
    assert code == 200, doc
    assert doc["rollout"]["stableVersion"] == "v2" and doc["result"]["look"] == 1 and doc["result"]["window"] == 0
    restarted = [e for e in lines if e["event"] == "serve.restarted"]
    assert restarted and restarted[0]["field"] == "stableVersion" and restarted[0]["was"] == "v1"
    assert restarted[0]["now"] == "v2"


# ---- (c) a refusal's log line says who asked -----------------------------------------------------


def test_a_refused_call_is_logged_with_the_rollout_that_sent_it(rig: Any, clock: Clock) -> None:
    """On-call reads `serve.bad_request field=metadata.policy error=no policy 'flager' here` with fifty
    Canaries pointing at the service: the line named no Canary, no Rollout, no caller."""
    server = rig(up=True)
    with structlog.testing.capture_logs() as lines:
        assert flagger(server, "rollout", "good", policy="flager")[0] == 400
        assert argo_get(server, "good", canaryVersion="v1")[0] == 400  # the stable version as the canary
        assert argo_get(server, "good", policy="nope")[0] == 400
    bad = [e for e in lines if e["event"] == "serve.bad_request"]
    assert [(e["field"], e.get("key"), e.get("revision")) for e in bad] == [
        ("metadata.policy", "flagger/ml/good", "6d8f9c7b5"), ("canaryVersion", "argo/ml/good", None),
        ("policy", "argo/ml/good", "v2")], bad
    assert all(e.get("peer") == "127.0.0.1" for e in bad)


# ---- (d) SIGTERM while a call is being answered --------------------------------------------------


def test_sigterm_during_a_look_lets_it_answer_before_the_process_exits(tmp_path: Path, prom: Any) -> None:
    """A rolling restart of `canary serve` (SIGTERM) while a look waited on Prometheus closed the connection
    without an answer ("Remote end closed connection without response"): Flagger counts that as a failed
    check (two of them roll back under the documented `threshold: 2`), Argo as an Error, and no
    `serve.decision` said what the look was. Now the listener closes and the call in flight answers first."""
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    # a Prometheus that answers its clock and never a look's query: the look waits --answer-within. Its `time()`
    # answered, the clock is anchored at start and nothing else asks: `holding` means the call is in flight. A
    # clock left unanswered was asked again from its own thread, whose held `time()` could set `holding` before
    # the call was read, and SIGTERM then got "stopping: ask again" (1 run in 8)
    upstream = urllib.parse.urlsplit(prom[0].url)
    hole = BlackholeProxy(upstream.hostname or "127.0.0.1", upstream.port or 9090).start()
    hole.blackhole = True
    hole.hold_only = lambda line: b"time%28%29" not in line
    exe = Path(sys.executable).with_name("canary")
    proc = subprocess.Popen([str(exe), "serve", "--policy", str(policy), "--state-dir", str(tmp_path / "s"),
                             "--port", "0", "--prometheus-url", hole.url, "--answer-within", "4s",
                             "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        url = _event(proc, "serve.listening")["url"]
        assert not hole.holding.is_set(), hole.held_lines  # the start-up's clock query was answered
        q = urllib.parse.urlencode({"namespace": "ml", "rollout": "r", "model": "m", "stableVersion": "v1",
                                    "canaryVersion": "v2"})
        got: dict[str, Any] = {}

        def ask() -> None:
            try:
                got["answer"] = call(f"{url}/api/v1/argo/measure?{q}")
            except Exception as exc:  # noqa: BLE001 - what the caller saw, asserted below
                got["answer"] = repr(exc)

        # SIGTERM from the proxy's thread as it holds the look's query: the look is then seconds younger than its
        # --answer-within. Sent by the test's thread after waking on `holding`, a loaded machine could let the look
        # answer its 503 first: nothing in flight at the signal, `serve.stopped` in_flight 0
        hole.on_hold = lambda _line: proc.send_signal(signal.SIGTERM)
        caller = threading.Thread(target=ask)
        caller.start()
        assert hole.holding.wait(60), "the look's queries reached Prometheus"
        caller.join(120)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0
        code, doc = got["answer"]  # a reset was a str here
        assert code == 503 and doc["result"]["outcome"] == "error", doc
        assert "did not answer within the 4s" in doc["result"]["reason"]
        events = logs.parse_json_lines(err.decode())
        assert [e["status"] for e in events if e["event"] == "serve.decision"] == [503]
        (stopped,) = [e for e in events if e["event"] == "serve.stopped"]
        assert (stopped["in_flight"], stopped["cut"]) == (1, 0), stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hole.stop()


def test_a_stopping_server_refuses_new_calls_and_counts_those_it_could_not_wait_for() -> None:
    calls = InFlight()
    assert calls.enter()
    assert calls.drain(0.0) == (1, 1), "one in flight, not ended within the wait: cut"
    assert not calls.enter(), "stopping: a request read on a kept-alive connection is a 503"
    calls.leave()
    assert calls.drain(0.0) == (0, 0)


def test_a_refused_callers_name_is_logged_escaped(rig: Any) -> None:
    server = rig(up=True)
    with structlog.testing.capture_logs() as lines:
        assert argo_get(server, "good", namespace="ml\n2026-12-04 [info] serve.decision verdict=pass")[0] == 400
    (bad,) = [e for e in lines if e["event"] == "serve.bad_request"]
    assert "\n" not in bad["key"] and bad["key"].startswith("argo/'ml\\n2026"), bad


# ---- (f) a fail for want of a verdict, and the rollout retried the next morning ----------------


def test_argo_retry_after_an_unproven_deadline_is_judged_again_and_a_shown_fail_stays(rig: Any, clock: Clock,
                                                                                        prom: Any) -> None:
    """A quiet night: the canary got no data within `interval + no_data_deadline`, `fail` (Argo aborted).
    `kubectl argo rollouts retry` the next morning is the same revision: it was `fail` at once, for ever,
    on no evidence at all (decision 99 made a fail sticky because "the spec was shown bad"; this one was
    shown nothing). A canary shown bad stays failed."""
    server = rig(up=True)
    data_from = prom[1] - 3600
    clock.t = data_from - 2 * DEADLINE_S - 600  # before the series begin: the looks find no data
    argo_get(server, "good")
    clock.t += DEADLINE_S
    assert argo_get(server, "good")[1]["result"]["verdict"] == "fail"
    clock.t += 60  # retried at once: nothing changed, still the same rollout
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "fail" and doc["result"]["outcome"] is None
    clock.t = data_from + 600  # the next morning (in this Prometheus: where the data are)
    with structlog.testing.capture_logs() as lines:
        code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive", doc["result"]
    assert doc["result"]["window"] == 1, "a new window; the closed ones' evidence is the prior"
    assert any(e["event"] == "serve.restarted" and e["was"].startswith("no verdict after") for e in lines)
    clock.t += 60
    assert argo_get(server, "good")[1]["result"]["verdict"] == "pass"
    # a canary shown bad stays failed, whenever it comes back
    clock.t = data_from + 900
    argo_get(server, "bad")
    clock.t += 15
    argo_get(server, "bad")
    clock.t += 15
    assert argo_get(server, "bad")[1]["result"]["verdict"] == "fail"
    clock.t += 2 * DEADLINE_S
    code, doc = argo_get(server, "bad")
    assert doc["result"]["verdict"] == "fail" and doc["result"]["outcome"] is None


def test_an_unproven_fail_stays_failed_while_its_caller_keeps_calling(rig: Any, clock: Clock, prom: Any) -> None:
    """Decision 156: the silence that reopens an unproven `fail` is counted from the revision's last call, not
    its last look. Argo with `failureLimit: 5` (or Flagger with `threshold: 5`) keeps asking every minute
    after the deadline's `fail`; the fourth call, 240 s after the failing look, was reopened as if the
    caller had stopped: the same rollout judged again at the first window's pass level (its failure
    answered `inconclusive`, the rollout left running)."""
    server = rig(up=True)
    clock.t = prom[1] - 3600 - 2 * DEADLINE_S - 1800  # before the series begin: the looks find no data
    argo_get(server, "good")
    clock.t += DEADLINE_S
    assert argo_get(server, "good")[1]["result"]["verdict"] == "fail"
    with structlog.testing.capture_logs() as lines:
        for _ in range(8):  # every minute, as long as the caller's failure limit lets it
            clock.t += 60
            code, doc = argo_get(server, "good")
            assert code == 200 and doc["result"]["verdict"] == "fail", (clock.t, doc["result"])
    assert not any(e["event"] == "serve.restarted" for e in lines)
    clock.t += DEADLINE_S + 1  # the caller stopped; it comes back after the silence: judged again
    assert argo_get(server, "good")[1]["result"]["verdict"] == "inconclusive"


# ---- (g) a field a newer Flagger adds to its payload -------------------------------------------------


def test_a_flagger_payload_with_a_field_this_version_does_not_know_is_served(rig: Any, clock: Clock) -> None:
    server = rig(up=True)
    body = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5", "type": "pre-rollout",
            "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}
    with structlog.testing.capture_logs() as lines:
        for _ in range(2):
            code, doc = call(f"{server.url}/api/v1/flagger/pre-rollout", method="POST", body=body)
            assert code == 200, doc
    said = [e for e in lines if e["event"] == "serve.fields_ignored"]
    assert len(said) == 1 and said[0]["fields"] == ["type"] and said[0]["key"] == "flagger/ml/good", said


def test_ignored_flagger_fields_are_said_for_a_bounded_number_of_sets(rig: Any, clock: Clock, monkeypatch: Any) -> None:
    """Each new set of unknown payload names was remembered and logged: a caller sending new names at every call
    grew the service's memory without bound and wrote a line per call. The first MAX_IGNORED_SETS sets are said,
    the last with a note; later ones are served, ignored, without a line (decision 256)."""
    from canary import serve

    monkeypatch.setattr(serve, "MAX_IGNORED_SETS", 3)
    server = rig(up=True)
    with structlog.testing.capture_logs() as lines:
        for i in range(6):
            body = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
                    f"extra{i}": 1, "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}
            code, doc = call(f"{server.url}/api/v1/flagger/pre-rollout", method="POST", body=body)
            assert code == 200, doc
    said = [e for e in lines if e["event"] == "serve.fields_ignored"]
    assert [e["fields"] for e in said] == [["extra0"], ["extra1"], ["extra2"]], said
    assert "later ones are ignored without a line" in said[-1]["note"] and "note" not in said[0]
    assert len(server.service._ignored) == 3


# ---- (h) two analyses of one rollout on one revision ------------------------------------------------


def test_a_background_and_a_step_analysis_on_one_revision_share_a_window(rig: Any, clock: Clock) -> None:
    """Argo's background analysis (`strategy.canary.analysis`, the template's default `step: "0"`) and the step's
    (`step: "10"`), one template: the calls alternated their steps and every call opened a window of one second.
    A canary at 10% errors was never `fail` (no two failed looks in a row: each one-second look was
    inconclusive), a good one never `pass`: paused at its step for ever."""
    server = rig(up=True)
    verdicts = []
    for i in range(4):
        clock.t += 15
        code, doc = argo_get(server, "bad", step="0" if i % 2 == 0 else "10")
        assert code == 200
        verdicts.append(doc["result"]["verdict"])
    assert "fail" in verdicts, verdicts
    seen = []
    for i in range(8):
        clock.t += 15
        code, doc = argo_get(server, "good", step="0" if i % 2 == 0 else "10")
        seen.append(doc["result"]["verdict"])
    assert "pass" in seen, seen

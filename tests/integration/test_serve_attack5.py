"""`canary serve` attacked by an SRE who runs it behind Argo Rollouts and Flagger (docs/decisions.md 159):
the drain on SIGTERM (decision 154 d) and the clock that waits for Prometheus's time (154 i, `_LateAnchor`).

Real HTTP on 127.0.0.1 and a real backfilled Prometheus; time is a fake clock or a wall clock moved by a
monkeypatch (never a timed wait), and signals are delivered at a point the test controls (the process sends
one to itself from inside its start-up, or the test sends it once the look it holds is waiting), with only
outcomes asserted: what the caller got, the exit status, what the state directory holds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import structlog.testing

from canary import logs
from canary import serve as serve_module
from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, history_window, openmetrics
from canary.serve import NamedPolicy, Service
from canary.serve_http import ServeServer
from canary.serve_session import new_session
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, Clock, _event, _model, call, prom  # noqa: F401 - prom
from tests.support.blackhole import BlackholeProxy
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration

# a window as long as a real analysis's: ten minutes, so that what a look covers is far from what it claims
LONG = {**POLICY, "analysis": {"interval": "600s", "look_every": "15s", "min_canary_requests": 100},
        "failure": {"max_failed_looks": 2, "no_data_deadline": "10m"}}


@pytest.fixture(scope="module")
def recent(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    """A Prometheus whose data end where a scraping one's do: at (about) its own now, one sample a second.
    (test_serve.py's reaches three hours ahead, so a look asked in Prometheus's future found data there.)"""
    start, end = history_window(before_s=3600, after_s=0, step=1.0)
    server = PromServer(history=openmetrics(_model("good", canary_error_rate=0.005), start=start, end=end, step=1.0),
                        binary=prometheus_binary)
    server.start()
    try:
        yield server, end
    finally:
        server.stop()


def _look(service: Service) -> tuple[int, dict[str, Any]]:
    q = {"namespace": "ml", "rollout": "good", "model": "good", "stableVersion": "v1", "canaryVersion": "v2"}
    return service.handle("GET", "/api/v1/argo/measure", urllib.parse.urlencode(q), b"", None)


# ---- (i) Prometheus answering only after the service started -----------------------------------------------


def test_a_look_after_prometheus_came_up_is_judged_on_its_clock_not_the_hosts(
        recent: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling restart of `canary serve` on a node whose clock is ahead (a VM resumed before NTP synced),
    its Istio sidecar not ready when the service asked Prometheus's time (503). The window was opened 50 s
    before by the last process, on Prometheus's clock. Prometheus answered by the first look, but the
    clock waited for its thread's next ask (every 30 s): the look was judged on the host's clock, 558 s
    ahead, its window 610 s long by that clock, and passed a 600 s interval on the 50 s of traffic there
    were (the rest of its range lay in Prometheus's future). A look now asks Prometheus's time first."""
    server, end = recent
    named = {"ml": NamedPolicy("ml", parse_policy(LONG), tmp_path)}
    state = tmp_path / "state"
    before = Clock(end - 50)  # the last process: on Prometheus's clock, its window opened 50 s before the end
    last = Service(policies=named, metrics=PrometheusProvider(server.url, retries=1, budget_s=2.0, backoff_s=0.05),
                   store=SessionStore(state), clock=before)
    assert _look(last)[1]["result"]["verdict"] == "inconclusive"
    real = time.time
    ahead = (end - 50 + 610) - real()  # the host's clock: 610 s after the window opened, by its own reckoning
    assert ahead > 100, "Prometheus's data end near its now"
    monkeypatch.setattr(time, "time", lambda: real() + ahead)
    asked = serve_module.prometheus_time

    def clock_thread_unanswered(metrics: Any, **kw: Any) -> float | None:
        # the thread's asks all land while Prometheus does not answer yet (its next one is 30 s away)
        return None if threading.current_thread().name == "canary-serve-clock" else asked(metrics, **kw)

    monkeypatch.setattr(serve_module, "prometheus_time", clock_thread_unanswered)
    hole = BlackholeProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])).start()
    hole.blackhole, hole.answer = True, 503  # the sidecar not ready: every call at start-up a 503
    try:
        with structlog.testing.capture_logs() as lines:
            restarted = Service(policies=named, store=SessionStore(state),
                                metrics=PrometheusProvider(hole.url, retries=1, budget_s=2.0, backoff_s=0.05))
            assert not [e for e in lines if e["event"] == "clock.skew"], "Prometheus's time not known yet"
            hole.blackhole = False  # the sidecar is ready: Prometheus answers
            status, doc = _look(restarted)
    finally:
        hole.stop()
    r = doc["result"]
    assert status == 200 and r["verdict"] == "inconclusive", r  # it was `pass`, on 50 s of a 600 s interval
    assert r["window_s"] < 600 and "of 600s" in r["reason"], r
    (skew,) = [e for e in lines if e["event"] == "clock.skew"]
    assert skew["prometheus_minus_local_s"] < -100, skew
    assert abs(restarted.clock() - real()) < 5, "the service's clock is Prometheus's from this look on"


# ---- (d) SIGTERM: during start-up, twice, and a call that arrives while the service drains ---------------

# `canary serve` with its Prometheus-time query (start-up's first thing that waits) sending the process a
# SIGTERM: the signal lands at that point of start-up and nowhere else, whatever the machine's load
_SIGTERM_IN_START_UP = """
import os, signal, sys
import canary.serve as serve
asked = serve.prometheus_time
def ask(metrics, **kw):
    os.kill(os.getpid(), signal.SIGTERM)
    return asked(metrics, **kw)
serve.prometheus_time = ask
from canary.cli import app
sys.argv = ["canary", *sys.argv[1:]]
app()
"""


def _serve_args(tmp_path: Path, prometheus_url: str, *extra: str) -> list[str]:
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    return ["serve", "--policy", str(policy), "--state-dir", str(tmp_path / "s"), "--port", "0",
            "--prometheus-url", prometheus_url, "--log-format", "json", *extra]


@contextmanager
def _canary_serve(tmp_path: Path, hole: BlackholeProxy, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`canary serve` in a subprocess asking Prometheus through `hole`; killed if the test left it running, and
    `hole` stopped, on the way out."""
    proc = subprocess.Popen([str(Path(sys.executable).with_name("canary")), *_serve_args(tmp_path, hole.url, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hole.stop()


def test_sigterm_during_start_up_exits_0_serving_nothing_and_leaves_the_state_as_it_was(tmp_path: Path) -> None:
    """A rolling restart's SIGTERM while `canary serve` was still starting (asking Prometheus's time, up to
    2 s, pruning the state directory) killed it with the signal's default: exit 143 and no `serve.stopped`,
    where docs/integrations.md promises exit 0 on SIGTERM. The handlers are now the first thing set."""
    store = SessionStore(tmp_path / "s")
    left = new_session(key="argo/ml/good", revision="v2", policy="ml", model="good", namespace="ml",
                       stable_version="v1", canary_version="v2", now=time.time())
    store.save(replace(left, looks=3, failed_looks=1, reason="failed look 1 of 2"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").glob("*.json")}
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_IN_START_UP,
                           *_serve_args(tmp_path, f"http://127.0.0.1:{refused_port()}")],
                          capture_output=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]  # was -15: killed by the signal
    events = logs.parse_json_lines(proc.stderr.decode())
    assert not [e for e in events if e["event"] == "serve.listening"], "stopped before serving"
    (stopped,) = [e for e in events if e["event"] == "serve.stopped"]
    assert (stopped["in_flight"], stopped["cut"]) == (0, 0)
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").glob("*.json")} == before  # nothing lost, nothing half
    assert store.load("argo/ml/good", "v2") == replace(left, looks=3, failed_looks=1, reason="failed look 1 of 2")


def _argo_query(model: str = "good") -> str:
    return urllib.parse.urlencode({"namespace": "ml", "rollout": model, "model": model, "stableVersion": "v1",
                                   "canaryVersion": "v2"})


def test_sigterm_twice_during_a_look_answers_it_and_a_restarted_serve_goes_on_with_its_session(
        prom: Any, tmp_path: Path) -> None:
    """A rolling restart sends SIGTERM, and an impatient operator (or a second `kubectl delete`) another, while
    a look waits on a Prometheus that stopped answering. The second changes nothing: the look in flight is
    answered (503, could not measure: Argo's Error, never a pass), the process exits 0 with one `serve.stopped`,
    the session is whole on disk, and the next process goes on with it: the same window, the look after."""
    hole = BlackholeProxy("127.0.0.1", int(prom[0].url.rsplit(":", 1)[1])).start()
    with _canary_serve(tmp_path, hole, "--answer-within", "4s") as proc:
        url = _event(proc, "serve.listening")["url"]
        first = call(f"{url}/api/v1/argo/measure?{_argo_query()}")
        assert first[0] == 200 and first[1]["result"]["verdict"] == "inconclusive", first
        hole.blackhole = True  # Prometheus stops answering: the next look waits on it
        got: dict[str, Any] = {}

        def ask() -> None:
            try:
                got["answer"] = call(f"{url}/api/v1/argo/measure?{_argo_query()}")
            except Exception as exc:  # noqa: BLE001 - what the caller saw, asserted below
                got["answer"] = repr(exc)

        # both signals from the proxy's thread as it holds the look's query (not after the test's thread wakes on
        # `holding`: a loaded machine could let the look end by its --answer-within first, nothing in flight)
        hole.on_hold = lambda _line: (proc.send_signal(signal.SIGTERM), proc.send_signal(signal.SIGTERM))
        caller = threading.Thread(target=ask)
        caller.start()
        assert hole.holding.wait(60), "the look's queries reached Prometheus"
        caller.join(120)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    code, doc = got["answer"]  # a reset was a str here
    assert code == 503 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 2, doc
    events = logs.parse_json_lines(err.decode())
    (stopped,) = [e for e in events if e["event"] == "serve.stopped"]
    assert (stopped["in_flight"], stopped["cut"]) == (1, 0), stopped
    state = tmp_path / "s"
    assert not list(state.glob(".tmp-*")), "a write left half done"
    kept = SessionStore(state).load("argo/ml/good", "v2")
    assert kept is not None and (kept.looks, kept.window, kept.windows_closed) == (2, 0, 0), kept
    # the next process (Prometheus answering again), 60 s into the window: the same session's third look passes
    clock = Clock(kept.window_started_at + 60)
    named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
    after = ServeServer(Service(policies=named, store=SessionStore(state), clock=clock,
                                metrics=PrometheusProvider(prom[0].url, retries=1, budget_s=2.0, backoff_s=0.05)))
    after.start()
    try:
        code, doc = call(f"{after.url}/api/v1/argo/measure?{_argo_query()}")
    finally:
        after.stop()
    r = doc["result"]
    assert code == 200 and (r["verdict"], r["look"], r["window"], r["window_s"]) == ("pass", 3, 0, 60), r


def test_a_call_read_while_the_service_drains_is_a_503_that_closes_and_records_nothing(
        prom: Any, tmp_path: Path) -> None:
    """While the service drains (SIGTERM: the listener closed, a look still waiting on Prometheus), a request
    that comes on a connection kept alive from an earlier call is read and answered 503 "stopping" with
    `Connection: close`, never judged: Argo reads an Error and asks again, of the next process; a new
    connection is refused. Only the look in flight is recorded."""
    hole = BlackholeProxy("127.0.0.1", int(prom[0].url.rsplit(":", 1)[1])).start()
    clock = Clock(prom[1])
    named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
    # the look waits on its held query for as long as the test needs (60 s, never reached): it ends when the proxy
    # stops, once the late call is answered. With 2 s (its query's budget) a loaded machine could let it answer
    # before the test's thread had stopped the server and sent the late call: nothing in flight, no drain to read in
    server = ServeServer(Service(policies=named, store=SessionStore(tmp_path / "s"), clock=clock, answer_within_s=60.0,
                                 metrics=PrometheusProvider(hole.url, retries=1, timeout_s=60.0, budget_s=60.0,
                                                            backoff_s=0.05)))
    server.start()
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    stopper = threading.Thread(target=server.stop)
    try:
        kept.request("GET", "/healthz")
        reply = kept.getresponse()
        assert reply.status == 200 and reply.getheader("Connection") != "close"
        reply.read()
        hole.blackhole = True
        got: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: got.update(
            answer=call(f"{server.url}/api/v1/argo/measure?{_argo_query()}")))
        caller.start()
        assert hole.holding.wait(60), "the look's queries reached Prometheus"
        stopper.start()  # SIGTERM's `ServeServer.stop`, on its own thread
        deadline = time.monotonic() + 60
        while not server.calls.draining and time.monotonic() < deadline:
            time.sleep(0.01)  # a state waited for, not a time: draining comes after the listener closed
        assert server.calls.draining
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept.request("GET", f"/api/v1/argo/measure?{_argo_query()}")
        late = kept.getresponse()
        body = json.loads(late.read())
        assert late.status == 503 and "stopping" in body["error"] and late.getheader("Connection") == "close", body
        hole.stop()  # Prometheus's connections close: the look in flight could not measure, and answers
        caller.join(120)
        stopper.join(120)
    finally:
        kept.close()
        hole.stop()
    assert got["answer"][0] == 503, got
    assert server.stopped == (1, 0)
    s = SessionStore(tmp_path / "s").load("argo/ml/good", "v2")
    assert s is not None and s.looks == 1, s


# ---- decision 166: --state-ttl's prune at start-up on a host clock ahead ---------------------------------------


_HOST_AHEAD_IN_START_UP = """
import os, signal, sys, time
real = time.time
time.time = lambda: real() + float(os.environ["HOST_AHEAD_S"])  # the host's wall clock ahead; files' times real
import canary.serve_http as serve_http
start = serve_http.ServeServer.start
def started(self):
    os.kill(os.getpid(), signal.SIGTERM)  # started: stop at once (exit 0), what start-up did is the test
    return start(self)
serve_http.ServeServer.start = started
from canary.cli import app
sys.argv = ["canary", *sys.argv[1:]]
app()
"""


def test_a_host_clock_ahead_by_more_than_the_state_ttl_prunes_no_live_session(
        recent: tuple[PromServer, float], tmp_path: Path) -> None:
    """`--state-ttl`'s prune compared the session files' times with the host's clock, before Prometheus was
    asked: a host 200 h ahead (a VM resumed before NTP; the TTL is 168 h) deleted every live session at
    start-up, a shown fail among them, which the next call would have judged again as a new revision. A
    session is now forgotten only when idle past the TTL by its file's time on the host's clock and by its
    own last write on the service's clock (Prometheus's), and not at all while Prometheus's time is unknown."""
    ahead = 200 * 3600.0
    store = SessionStore(tmp_path / "s")
    now = time.time()  # the real time, Prometheus's (the sessions were written on it)
    failed = replace(new_session(key="argo/ml/good", revision="v2", policy="ml", model="good", namespace="ml",
                                 stable_version="v1", canary_version="v2", now=now - 600),
                     looks=4, failed_looks=2, verdict="fail", reason="2 consecutive failed looks: errors", updated_at=now - 60)
    old = new_session(key="argo/ml/old", revision="v7", policy="ml", model="old", namespace="ml",
                      stable_version="v6", canary_version="v7", now=now - 200 * 3600)
    store.save(failed)
    store.save(old)
    os.utime(store.path(old.key, old.revision), (now - 200 * 3600, now - 200 * 3600))  # idle 200 h by both clocks
    env = {**os.environ, "NO_COLOR": "1", "HOST_AHEAD_S": str(ahead)}

    def serve(prometheus_url: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-c", _HOST_AHEAD_IN_START_UP, *_serve_args(tmp_path, prometheus_url)],
                              capture_output=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        (line,) = [e for e in logs.parse_json_lines(proc.stderr.decode()) if e["event"] == "serve.started"]
        return line

    # Prometheus not answering at start-up: its time unknown, nothing is pruned (both were, on the host's clock)
    assert serve(f"http://127.0.0.1:{refused_port()}")["pruned"] is None
    assert store.load(failed.key, failed.revision) == failed and store.load(old.key, old.revision) == old
    # Prometheus answering: the session idle 200 h by both clocks goes, the live failed one stays, whole
    server, _ = recent
    assert serve(server.url)["pruned"] == 1
    assert store.load(old.key, old.revision) is None
    assert store.load(failed.key, failed.revision) == failed


def test_a_serve_started_before_prometheus_prunes_once_prometheus_answers(
        recent: tuple[PromServer, float], tmp_path: Path) -> None:
    """Decision 166 skipped `--state-ttl`'s start-up prune while Prometheus's time was unknown, "until a start-up
    where it answers", and nothing scheduled it again: a `canary serve` started before Prometheus (both pods
    restarted together, its Istio sidecar not ready) kept every revision idle past the TTL for its whole life,
    however long Prometheus had been answering since. It is now pruned once Prometheus first answers (here at
    the first look, which asks its time first), by the same rule: the revision idle 200 h by both clocks goes,
    the live one stays."""
    store = SessionStore(tmp_path / "s")
    now = time.time()
    live = replace(new_session(key="argo/ml/live", revision="v3", policy="ml", model="live", namespace="ml",
                               stable_version="v2", canary_version="v3", now=now - 600), looks=3, updated_at=now - 60)
    old = new_session(key="argo/ml/old", revision="v7", policy="ml", model="old", namespace="ml",
                      stable_version="v6", canary_version="v7", now=now - 200 * 3600)
    store.save(live)
    store.save(old)
    os.utime(store.path(old.key, old.revision), (now - 200 * 3600, now - 200 * 3600))  # idle 200 h by both clocks
    server, _ = recent
    hole = BlackholeProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])).start()
    hole.blackhole, hole.answer = True, 503  # the sidecar not ready at start-up: Prometheus's time unknown
    with _canary_serve(tmp_path, hole) as proc:
        assert _event(proc, "serve.started")["pruned"] is None
        url = _event(proc, "serve.listening")["url"]
        assert store.load(old.key, old.revision) == old
        hole.blackhole = False  # Prometheus answers from now on
        code, doc = call(f"{url}/api/v1/argo/measure?{_argo_query()}")
        assert code == 200 and doc["result"]["verdict"] == "inconclusive", doc
        pruned = _event(proc, "serve.state_pruned")  # on a thread of its own, once the clock is Prometheus's
        assert pruned["pruned"] == 1 and pruned["level"] == "info" and pruned["after_s"] >= 0, pruned
        assert store.load(old.key, old.revision) is None
        assert store.load(live.key, live.revision) == live
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert [e for e in logs.parse_json_lines(err.decode()) if e["event"] == "serve.state_pruned"] == []  # once


# ---- decision 202: --state-ttl's prune again while serving --------------------------------------------------

# the period's timer and both clocks are the test's, from stdin: "period" ends the prune thread's wait (as its
# timeout would), "host S" / "mono S" move the host's wall clock / the monotonic clock (which advances the
# service's, Prometheus's as anchored at start-up) S seconds ahead of the real ones. The thread says
# `test.prune_waiting` each time it is back in its wait: the round before it is done.
_PRUNE_STEPPED = """
import sys, threading, time
offset = {"host": 0.0, "mono": 0.0}
real_time, real_monotonic = time.time, time.monotonic
time.time = lambda: real_time() + offset["host"]
time.monotonic = lambda: real_monotonic() + offset["mono"]
from canary import logs
pruners = []
try:
    from canary import serve_prune
except ImportError:  # no prune while serving
    serve_prune = None
if serve_prune is not None:
    init = serve_prune.StatePruner.__init__
    def __init__(self, *a, **kw):
        init(self, *a, **kw)
        pruners.append(self)
    def _wait(self, timeout_s):
        logs.get().info("test.prune_waiting", every_s=timeout_s)
        self._wake.wait()
    serve_prune.StatePruner.__init__, serve_prune.StatePruner._wait = __init__, _wait
def read():
    for line in sys.stdin:
        what, _, value = line.strip().partition(" ")
        if what == "period":
            for p in pruners:
                p._wake.set()
        else:
            offset[what] = float(value)
threading.Thread(target=read, daemon=True).start()
from canary.cli import app
sys.argv = ["canary", *sys.argv[1:]]
try:
    app()
finally:
    logs.get().info("test.exit", threads=sorted(t.name for t in threading.enumerate()))
"""


def test_a_revision_gone_idle_past_the_state_ttl_while_serving_is_forgotten_within_a_period(
        recent: tuple[PromServer, float], tmp_path: Path) -> None:
    """`--state-ttl`'s prune ran once per process (at start-up, or when Prometheus first answered: decisions 166,
    174): a `canary serve` up for months forgot nothing that went idle past the TTL while it ran. It now prunes
    again every min(TTL/4, 1 h), by the start-up rule (idle past the TTL by Prometheus's clock as the service
    anchored it and by the host's, both), says `serve.state_pruned` only when a round forgot something, and
    stops with the service. The real `canary serve`, a real Prometheus; the period and the clocks are stepped."""
    server, _ = recent
    h = 3600.0
    proc = subprocess.Popen([sys.executable, "-c", _PRUNE_STEPPED, *_serve_args(tmp_path, server.url)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1"})
    assert proc.stdin is not None
    store = SessionStore(tmp_path / "s")

    def period(**ahead: float) -> list[dict[str, Any]]:
        """Move the clocks, end one period, and wait for its round: the `serve.state_pruned` lines it said."""
        assert proc.stdin is not None
        proc.stdin.write("".join(f"{k} {v}\n" for k, v in ahead.items()).encode() + b"period\n")
        proc.stdin.flush()
        said: list[dict[str, Any]] = []
        _event(proc, "test.prune_waiting", passed=said)
        return [e for e in said if e["event"] == "serve.state_pruned"]

    def look(rollout: str) -> Path:
        q = urllib.parse.urlencode({"namespace": "ml", "rollout": rollout, "model": "good", "stableVersion": "v1",
                                    "canaryVersion": "v2"})
        code, doc = call(f"{url}/api/v1/argo/measure?{q}")
        assert code in (200, 503), doc
        return store.path(f"argo/ml/{rollout}", "v2")

    try:
        started = _event(proc, "serve.started")
        assert started["pruned"] == 0, started
        url = _event(proc, "serve.listening")["url"]
        # a prune is scheduled while serving, an hour apart for the default 168 h (none before the fix)
        assert _event(proc, "test.prune_waiting")["every_s"] == started["prune_every_s"] == 3600.0, started
        a = look("a")  # revision a, looked at now
        assert a.exists()
        assert period(host=200 * h) == [] and a.exists()  # the host's clock alone past the TTL: kept, unsaid
        assert period(mono=100 * h) == [] and a.exists()  # Prometheus's 100 h on: still within it
        b = look("b")  # revision b, looked at 100 h after a on Prometheus's clock
        (line,) = period(mono=200 * h)  # a idle 200 h by both clocks, b 100 h by Prometheus's
        assert (line["level"], line["pruned"], line["cause"]) == ("info", 1, "period"), line
        assert not a.exists() and b.exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    tail = logs.parse_json_lines((getattr(proc, "_unread", b"") + err).decode())  # what came after the prune
    assert "serve.stopped" in [e["event"] for e in tail] and "serve.state_pruned" not in [e["event"] for e in tail]
    (exited,) = [e for e in tail if e["event"] == "test.exit"]
    assert "canary-serve-prune" not in exited["threads"], exited  # stopped with the service, not left running
    assert b.exists()

"""`canary promote --interrupt-grace`: after a signal, every Kubernetes request ends within the grace,
and none is sent after it (decision 126).

Before: with an API server that accepts connections and never answers, each write of the interrupt's
rollback and of its fail-safe waited out its 10 s timeout, four tries a call, and the process outlived
any CI job's grace (a pod's 30 s): SIGKILL cut it off before it could say how traffic stood.

The real CLI process, a real Prometheus (test_promote's backfilled history) and the strict Kubernetes
API emulator behind a proxy that turns into a black hole once traffic is split (tests/support/
blackhole.py). Nothing is timed: the proof is the count of requests the black hole holds (the one in
flight when the grace ends; none sent after it) and the process's exit with its words.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import pytest

from canary.logs import parse_json_lines
from tests.integration.test_promote import CANARY, ROOT, cluster, prometheus, vs_state  # noqa: F401 - fixtures
from tests.support.blackhole import BlackholeProxy, act_at_request, through, weights

pytestmark = pytest.mark.integration


def run_acting_at(api: Any, kubeconfig: Path, argv: Callable[[Path], list[str]], env: dict[str, str], *,
                  when: Callable[[], bool],
                  act: Callable[[subprocess.Popen[str]], None]) -> subprocess.CompletedProcess[str]:
    """Run the process `argv(kubeconfig)` gives, its cluster reached through a proxy that passes everything, and
    call `act(process)` in the proxy's thread at the first request read once `when()` holds, before forwarding it
    (`act_at_request`): nothing the process sent after that state has reached the server then, where the test's
    own thread, reading a log line or polling, could wake up late. Returns the process's end; fails when it never
    acted."""
    up = urlparse(api.url)
    tap = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    started: list[subprocess.Popen[str]] = []
    acted = act_at_request(tap, when, lambda: act(started[0]))  # the process is started before it can write
    proc = subprocess.Popen(argv(through(tap, kubeconfig)), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started.append(proc)
    try:
        out, err = proc.communicate(timeout=120)
        acted(0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tap.stop()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _promote_signalled(kubeconfig: Path, policy: Path, prom_url: str, *extra: str,
                       at_split: Callable[[], None] = lambda: None,
                       at_hold: BlackholeProxy | None = None, split_of: Any = None,
                       then: Callable[[], None] | None = None) -> tuple[int, str, str]:
    """Run `canary promote` (JSON out and logs), call `at_split` once traffic is split, send SIGTERM, and
    return (exit code, stdout, the whole stderr). Without the grace a hung API server held it 40 s and
    more (10 s a try, retried): the 120 s limit fails the test. The signal is always a proxy's (`at_hold` or
    `split_of`, one of them required): the test's thread reading the split's line and signalling then, the old
    way, was left with no caller and is gone.

    `at_hold`: the proxy sends SIGTERM itself, from its own thread, the moment it holds its first request
    (`BlackholeProxy.on_hold`), and answers to requests forwarded before that pass (`hold_answers`): the held
    request is then the one the process waits on at the signal, younger than its own timeout by all of it. When
    the test's thread sent it after waking on `holding`, a loaded machine could let that request (or one whose
    answer the emulator was slow to give) end by its own 10 s timeout first, and the process sent another write
    within the grace: two held, not one (CI, 2026-12-06). `at_split` is then called before anything is read (it
    waits for the hold), and stderr goes to a file: no line is waited for, so a signal before the split's line is
    no hang.

    `split_of` (the API emulator): the process reaches it through a proxy that passes everything, and at the first
    request read once the emulator holds the route split (step 1 landed; the step's Event, as it goes) the proxy's
    thread calls `at_split` and sends SIGTERM before forwarding it: the process can have sent nothing since the
    split. When the test's thread acted after reading the split's log line, a loaded machine could let the process
    go on first: a look's write of the route in flight, step 2 (50/50) written 3 s later, promoted 6 s later.
    `then`: the signal is the test thread's, once `then` returns (it waits for a condition the process cannot
    leave: a plugin hung with no timeout)."""
    argv = [*CANARY, "promote", "rec-model", "--canary-version", "v2", "--policy", str(policy), "--namespace", "ml",
            "--kubeconfig", str(kubeconfig), "-o", "json", "--log-format", "json", *extra]
    env = {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prom_url}
    tap: BlackholeProxy | None = None
    if split_of is not None:
        up = urlparse(split_of.url)
        tap = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
        argv[argv.index("--kubeconfig") + 1] = str(through(tap, kubeconfig))

        def at_split_then_signal() -> None:
            at_split()
            if then is None:
                proc.send_signal(signal.SIGTERM)  # `proc` is set before the process can write anything
        split = act_at_request(tap, lambda: weights(split_of)[1] > 0, at_split_then_signal)
    assert at_hold is not None or tap is not None, "the signal is the proxy's: at_hold= or split_of="
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        if at_hold is not None:
            at_hold.hold_answers = False
            at_hold.on_hold = lambda _line: proc.send_signal(signal.SIGTERM)
        try:
            if at_hold is not None:
                at_split()
            if tap is not None:
                split(60)
                if then is not None:
                    then()
                    proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if tap is not None:
                tap.stop()
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read()


@pytest.mark.parametrize("on_interrupt", ["rollback", "pause"])
def test_a_hung_api_server_after_the_signal_ends_within_the_grace_with_traffic_said(
        cluster: Any, prometheus: Any, on_interrupt: str) -> None:
    api, kubeconfig, policy = cluster
    up = urlparse(api.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    # the API server accepts and never answers from the first request read once the emulator holds 80/20 (the
    # step's Event), and the proxy signals at that hold (`at_hold`): the process is then waiting on no write of the
    # route. When the test's thread opened the black hole after reading the split's line, a slow wake-up let a
    # look's write of the route be in flight there (kept to the grace's end: "still unanswered", not "not sent"),
    # or step 2 be written (50/50)
    proxy.hold_only = lambda _line: weights(api) == [80, 20]
    proxy.blackhole = True

    def wait_held() -> None:
        assert proxy.holding.wait(60), "promote sent no request at 80/20 within 60 s"  # a condition, no guess

    try:
        code, out, stderr = _promote_signalled(through(proxy, kubeconfig), policy, prometheus.url,
                                               "--interrupt-grace", "2s", "--on-interrupt", on_interrupt,
                                               at_split=wait_held, at_hold=proxy)
    finally:
        proxy.stop()
    assert code == 6, stderr[-4000:]
    # none was sent after the grace: the one in flight at the signal, then the interrupt's reads of the route, each
    # given half the grace left since decision 408 (`kube.READ_SHARE`) until under MIN_REQUEST_S is left (2 s halved
    # below 50 ms: 6 of them), then nothing
    assert 1 <= proxy.requests_held <= 8, (proxy.requests_held, stderr[-4000:])
    doc = json.loads(out)
    assert doc["exit_code"] == 6 and doc["rollback_failed"] is True
    assert "not sent, the 2 s after SIGTERM (--interrupt-grace) are spent" in doc["error"], doc["error"]
    assert "80/20" in doc["error"], doc["error"]
    events = parse_json_lines(stderr)
    unsafe = [e for e in events if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["level"] == "critical" and unsafe[0]["weights"] == "80/20", unsafe
    assert unsafe[0]["model"] == "rec-model" and "by hand" in unsafe[0]["hint"]
    assert vs_state(api)[0] == [80, 20]  # nothing reached the API server: the line above says so truly


def test_the_grace_leaves_an_answering_api_server_alone(cluster: Any, prometheus: Any) -> None:
    """A grace that is not spent changes nothing: SIGTERM with a working API server is stable 100%,
    recorded aborted, exit 3, the rollback's writes sent as before."""
    api, kubeconfig, policy = cluster
    code, out, err = _promote_signalled(kubeconfig, policy, prometheus.url, "--interrupt-grace", "5s", split_of=api)
    assert code == 3, err[-3000:]
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "aborted" and "SIGTERM" in rec["reason"]
    assert json.loads(out)["phase"] == "aborted"


def test_a_request_sent_before_the_signal_is_abandoned_when_the_grace_ends(cluster: Any, prometheus: Any) -> None:
    """Decision 128. The API server hung before the cancel (the usual order: a stuck job is what gets
    cancelled), so the process was already waiting on a request when SIGTERM came. That request kept
    its own 10 s timeout: with the README's GitHub Actions grace (8s, SIGKILL 10 s after SIGINT),
    exit 6 and `traffic.unsafe` could come after the kill. Now it is abandoned when the grace ends: the
    error names it ("still unanswered"), and no request is sent after it. Without the cut, it ended by
    its own timeout (retried: the error was the next try's "not sent"). Only the VirtualService's
    writes are held, so the one waited on is a look's (or a heartbeat's) write of the route, which fails
    the rollout when cut. Since decision 407 a request that is not a write of the route (a read, a history
    write, an Event) is abandoned at the signal itself, not at the grace's end
    (tests/integration/test_interrupt_route_first.py); a write of the route, which may land, keeps the grace."""
    api, kubeconfig, policy = cluster
    up = urlparse(api.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    # the first write of the VirtualService once the emulator holds it at 80/20 (step 1's landed): a look's record
    proxy.hold_only = lambda line: (line.startswith(b"PUT ") and b"/virtualservices/" in line
                                    and weights(api) == [80, 20])
    proxy.blackhole = True

    def wait_held() -> None:
        assert proxy.holding.wait(60), "promote sent no VirtualService write at 80/20 within 60 s"  # a condition

    try:
        code, out, stderr = _promote_signalled(through(proxy, kubeconfig), policy, prometheus.url,
                                               "--interrupt-grace", "2s", at_split=wait_held, at_hold=proxy)
    finally:
        proxy.stop()
    assert code == 6, stderr[-4000:]
    assert proxy.requests_held == 1, (proxy.held_lines, stderr[-4000:])
    events = parse_json_lines(stderr)
    (failed,) = [e for e in events if e["event"] == "rollout.failed"]
    assert "virtualservices/rec-model: still unanswered; the 2 s after SIGTERM (--interrupt-grace) are spent" in \
        failed["error"], failed
    (unsafe,) = [e for e in events if e["event"] == "traffic.unsafe"]
    assert unsafe["weights"] == "80/20", unsafe
    assert json.loads(out)["exit_code"] == 6
    assert vs_state(api)[0] == [80, 20]

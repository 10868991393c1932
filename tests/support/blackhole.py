"""A TCP proxy on 127.0.0.1 that can turn into a black hole: connections are accepted and held,
and nothing is ever answered (an unresponsive Prometheus, as a hung server or a dropped network
looks to a client). Used by the SIGTERM-latency test and scripts/bench_sigterm.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable


class BlackholeProxy:
    """Forwards to `upstream` until `blackhole` is set; from then on every request is held, never
    answered, on new and on kept-alive connections alike. `holding` is set once a request is held:
    a client is then waiting on it (a condition the tests wait for, not a guess of how long)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.blackhole = False
        self.holding = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self.requests_held = 0  # requests held, each counted once (a kept-alive connection holds two sockets)
        # with `blackhole` set: None holds every request; an HTTP status (503) answers each with it instead
        # (a server that answers at once and always fails), the connection closed after it
        self.answer: int | None = None
        # with `blackhole` set: None holds every request; a test on a request's first line ("GET /apis/... HTTP/1.1")
        # holds only those it is true of, and passes the others through
        self.hold_only: Callable[[bytes], bool] | None = None
        self.held_lines: list[bytes] = []  # the first line of each request held, when it was seen
        # False: only a request read after the black hole opened is held; the answer to one forwarded before it
        # passes. That request left its client before the hold, so its own timeout (the Kubernetes client's 10 s)
        # runs from earlier than the test can see: with an emulator slow to answer under load it ended, and the
        # client went on, before a grace meant to cut it had ended
        self.hold_answers = True
        # called once, in the proxy's thread, at the first request held (its first line): a test that signals
        # the process there does so while that request is seconds younger than any timeout, not after a wake-up of
        # its own thread that a loaded machine can delay
        self.on_hold: Callable[[bytes], None] | None = None
        # called in the proxy's thread with the first line of every request read from a client (held or not),
        # before it is forwarded: a test acts there (signals the process) before the process's next request can
        # reach the server, whatever the load, where its own thread would wake up some time later
        self.on_request: Callable[[bytes], None] | None = None
        # with a held request: None sends nothing; seconds: a status line at once, then a header line every
        # `trickle_s` (a server that starts an answer and never ends it). The client's read timeout, which counts
        # from the last byte, then never ends the request: http.client gives up only at its 100th header, 100 x
        # `trickle_s` later, so a test can tell "not waited for" from "waited for" by an order, not by a time
        self.trickle_s: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # holds counted (and `on_hold` called) one at a time, from any proxy thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BlackholeProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for s in self._held:
            s.close()

    def _holds(self, line: bytes) -> bool:
        return self.blackhole and (self.hold_only is None or self.hold_only(line))

    def _hold(self, *socks: socket.socket, line: bytes = b"") -> None:
        if self.answer is not None:  # answered with a failure, not held
            body = b'{"kind":"Status","status":"Failure","message":"unavailable","code":%d}' % self.answer
            head = (f"HTTP/1.1 {self.answer} Failure\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            try:
                socks[0].recv(65536) if len(socks) == 1 else None  # a new connection: its request first
                socks[0].sendall(head + body)
            except OSError:
                pass
            for sock in socks:
                try:
                    sock.close()
                except OSError:
                    pass
            return
        with self._lock:
            self._held.extend(socks)
            self.requests_held += 1
            self.held_lines.append(line)
            first, self.on_hold = self.on_hold, None
        if self.trickle_s is not None:
            threading.Thread(target=self._trickle, args=(socks[0], self.trickle_s), daemon=True).start()
        if first is not None:
            first(line)
        self.holding.set()

    def _trickle(self, client: socket.socket, every_s: float) -> None:
        """A status line, then a header line every `every_s` until `stop` or the client is gone."""
        try:
            client.sendall(b"HTTP/1.1 200 OK\r\n")
            while not self._stop.wait(every_s):
                client.sendall(b"X-Held: 1\r\n")
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self.blackhole and self.hold_only is None:
                self._hold(client)  # accepted, never answered
                continue
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        # 5 s bounds the connect only: a read of the upstream that waits longer is a watch (an informer's, held
        # open for minutes), which the timeout cut every 5 s: a controller behind the proxy re-listed and waited
        # its backoff each time, and the failover test took 110 s for 28
        upstream.settimeout(None)
        last: list[bytes] = [b""]  # the first line of the request last forwarded on this connection
        threading.Thread(target=self._pipe, args=(client, upstream, True, last), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client, False, last), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool, last: list[bytes]) -> None:
        held = False
        try:
            while data := src.recv(65536):
                if from_client and data[:1].isalpha():  # a request's first bytes (a body goes on after them)
                    last[0] = data.split(b"\r\n", 1)[0]
                    if self.on_request is not None:
                        self.on_request(last[0])
                # checked after every read: a kept-alive connection is held too; so is a request forwarded just
                # before the black hole whose answer comes after it (swallowed: its client waits on it all the same)
                if self._holds(last[0]) and (from_client or self.hold_answers):
                    if from_client:
                        self._hold(src, dst, line=last[0])
                    else:
                        self._hold(dst, src, line=last[0])
                    held = True  # both stay open until `stop`
                    return
                dst.sendall(data)
        except OSError:
            pass  # a reset or a socket the other direction closed: both are closed below, as at an end
        finally:
            # at an end, a reset or a test's hook that raised (`act_at_request`): the other direction's thread,
            # blocked reading its socket (the upstream's reads have no timeout: a watch), returns once these are
            # shut down (a close alone does not wake a read blocked in another thread); left open, the emulator's
            # stop waited 10 s on the connection
            if not held:
                for s in (src, dst):
                    for end in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                        try:
                            end()
                        except OSError:
                            pass


def holds_query(proxy: BlackholeProxy, query: str, params: dict[str, str] | None = None) -> bool:
    """Whether `proxy`, as it is set now, holds a Prometheus instant query (`query`, `params`) sent to it: the
    request's first line as the client writes it, put to the proxy's own test."""
    from urllib.parse import urlencode

    line = f"GET /api/v1/query?{urlencode({'query': query, **(params or {})})} HTTP/1.1".encode()
    return proxy.answer is None and proxy._holds(line)  # noqa: SLF001 - the proxy's own rule, not a copy of it


def held_times_out(proxy: BlackholeProxy, *, held_timeout_s: float = 0.5, base: type | None = None, **kw: Any) -> Any:
    """The real PrometheusClient of `proxy`, whose attempt at a query the proxy holds times out after
    `held_timeout_s` (a hung Prometheus, as the product meets it), and at one it forwards waits up to 60 s: a real
    Prometheus on a loaded host (2 shared cores, load 10+) took longer than the 0.5 s these tests gave every
    query, and a pass meant to read it found it down. A query's fate is the proxy's, set by the test before the
    pass, so the short timeout meets only held queries, whatever the load. `base`: a PrometheusClient subclass
    (one that counts its queries); `kw`: the client's other arguments."""
    from canary.metrics.client import PrometheusClient

    class HeldTimesOut(base or PrometheusClient):  # type: ignore[misc, valid-type]
        def _once(self, query: str, params: dict[str, str], timeout: float, who: str, strict: bool) -> Any:
            if holds_query(proxy, query, params):
                timeout = min(timeout, held_timeout_s)
            return super()._once(query, params, timeout, who, strict)

    kw = {"timeout_s": 60.0, "budget_s": 120.0, "retries": 2, "backoff_s": 0.05, **kw}
    return HeldTimesOut(proxy.url, **kw)


def act_at_request(proxy: BlackholeProxy, when: Callable[[], bool], act: Callable[[], None]) -> Callable[[float], None]:
    """Call `act` once, in the proxy's thread, at the first request read once `when()` holds (the emulator's state:
    the route split, the rollout resumed), before that request is forwarded: nothing the process sent after that
    state was reached has reached the server then, however loaded the machine. Returns `wait(timeout_s)`: returns
    once `act` has run, raises what it raised, or AssertionError when the state never came."""
    done = threading.Event()
    failed: list[BaseException] = []
    one = threading.Lock()  # each connection has its own proxy thread: two requests at once act once, not twice

    def at_request(_line: bytes) -> None:
        if done.is_set():
            return
        with one:
            if done.is_set() or not when():
                return
            try:
                act()
            except BaseException as exc:  # raised in the test's thread by `wait`
                failed.append(exc)
                raise
            finally:
                done.set()

    def wait(timeout_s: float) -> None:
        assert done.wait(timeout_s), f"the state waited for never came within {timeout_s:g} s"  # a condition
        if failed:
            raise failed[0]

    proxy.on_request = at_request
    return wait


def through(proxy: BlackholeProxy, kubeconfig: Path) -> Path:
    """A copy of `kubeconfig` whose cluster is reached through `proxy`."""
    import yaml

    cfg = yaml.safe_load(kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = proxy.url
    out = kubeconfig.with_name("kubeconfig-via-proxy")
    out.write_text(yaml.safe_dump(cfg))
    return out


def weights(api: Any) -> list[int]:
    vs = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def sigterm_trial(api: Any, argv: list[str], env: dict[str, str], proxy: BlackholeProxy, *,
                  cwd: Path) -> dict[str, Any]:
    """Start `canary promote` (argv), wait until the canary has traffic, make Prometheus
    unresponsive, send SIGTERM the moment a request of the process is held (a look is waiting on
    it: from the proxy's thread, `on_hold`), and time how long from then until the route is back
    at stable 100%. Returns seconds, exit code, final weights, phase, and the process's whole stderr.

    Only a query sent after the black hole opened is held (`hold_answers`): one forwarded before it
    left earlier than the test can see. Sent from the test's thread once it woke on `holding`, the
    signal could come after the look had ended by its own query bound (5.45 s) on a loaded machine:
    no `look.abandoned`, the time measured from too late."""
    proxy.blackhole = False
    proxy.holding.clear()
    proxy.hold_answers = False
    signalled: list[float] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, text=True)

        def signal_at_hold(_line: bytes) -> None:
            signalled.append(time.monotonic())
            os.kill(proc.pid, signal.SIGTERM)
        proxy.on_hold = signal_at_hold
        try:
            deadline = time.monotonic() + 60
            while weights(api)[1] == 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    err.seek(0)
                    raise AssertionError(f"promote never gave the canary traffic: {proc.poll()} {err.read()[-2000:]}")
                time.sleep(0.05)
            proxy.blackhole = True
            if not proxy.holding.wait(60):
                raise AssertionError("promote sent no query to Prometheus within 60 s")
            t0 = signalled[0]
            while weights(api) != [100, 0] and time.monotonic() - t0 < 60:
                time.sleep(0.01)
            seconds = time.monotonic() - t0
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        text = out.read()
        state = json.loads(text) if text.strip().startswith("{") else {}
        return {"seconds": seconds, "exit": proc.returncode, "weights": weights(api), "phase": state.get("phase"),
                "stderr": err.read()}

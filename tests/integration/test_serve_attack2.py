"""`canary serve`'s HTTP layer under a hostile network (docs/decisions.md 99): raw sockets against the
real server on loopback, with a provider that is never asked (nothing here measures).

A slow client is cut by the server's own `request_timeout_s` (0.5 s here); each test waits for the
server to close, bounded at 30 s (a bound against a hang: on a loaded machine 5 s was a race), so no
sleep of the test decides a result.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Iterator

import pytest

from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from canary.serve_http import ServeServer
from canary.serve_store import SessionStore
pytestmark = pytest.mark.integration

CUT_S = 0.5
POLICY = {"steps": [10, 100], "analysis": {"interval": "60s", "look_every": "15s"}, "metrics": {"source": "model"},
          "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeServer]:
    tmp_path = tmp_path_factory.mktemp("serve")
    svc = Service(policies={"p": NamedPolicy("p", parse_policy(POLICY), tmp_path)}, metrics=object(),
                  store=SessionStore(tmp_path / "state"))
    srv = ServeServer(svc, request_timeout_s=CUT_S).start()
    yield srv
    srv.stop()


def _connect(srv: ServeServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5)


def _until_closed(s: socket.socket, bound_s: float = 30.0) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (True), or `bound_s` passes (False)."""
    out, end = b"", time.monotonic() + bound_s
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            got = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return out, True
        if not got:
            return out, True
        out += got
    return out, False


def _answer(raw: bytes) -> tuple[int, dict[str, Any] | None]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def test_a_client_that_drips_its_request_is_cut_not_held(server: ServeServer) -> None:
    s = _connect(server)
    t0 = time.monotonic()
    closed = False
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 10_000:  # a byte whenever the server is quiet
        try:
            s.sendall(bytes([b]))
        except OSError:
            closed = True
            break
        s.settimeout(0.05)
        try:
            if s.recv(1) == b"":
                closed = True
                break
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
            break
        if time.monotonic() - t0 > 30:  # the server cuts at 0.5 s; dripping it all takes 500 s
            break
    assert closed, "a dripping client held its connection (and a thread) as long as it dripped"
    assert _answer_health(server) == 200, "the server goes on"


def test_a_kept_alive_connection_left_idle_is_closed(server: ServeServer) -> None:
    s = _connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, closed = _until_closed(s)
    assert closed and _answer(raw)[0] == 200


@pytest.mark.parametrize(("headers", "status", "field"), [
    (b"Content-Length: +0\r\n", 400, "Content-Length"),  # int() reads it as 0: a proxy may not
    (b"Content-Length: 0_0\r\n", 400, "Content-Length"),
    (b"Content-Length: 0\r\nContent-Length: 5\r\n", 400, "Content-Length"),  # which one a proxy used: not ours
    (b"Transfer-Encoding: gzip, chunked\r\nContent-Length: 0\r\n", 411, "Transfer-Encoding"),
    (b"Transfer-Encoding: identity\r\n", 411, "Transfer-Encoding"),
])
def test_a_body_length_read_two_ways_is_refused_never_a_2xx(server: ServeServer, headers: bytes, status: int,
                                                            field: str) -> None:
    s = _connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    raw, closed = _until_closed(s)
    got, doc = _answer(raw)
    assert (got, closed) == (status, True), raw[:200]
    assert doc is not None and doc["error"] and doc["field"] == field  # the header at fault (decision 272)


@pytest.mark.parametrize(("request_line", "status"), [
    (b"BREW /healthz HTTP/1.1", 501),
    (b"OPTIONS /api/v1/flagger/rollout HTTP/1.1", 501),
    (b"GARBAGE", 400),
    (b"GET /healthz HTTP/9.9", 505),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1", 414),
])
def test_what_the_stdlib_refuses_is_answered_in_json_too(server: ServeServer, request_line: bytes, status: int) -> None:
    s = _connect(server)
    s.sendall(request_line + b"\r\nHost: x\r\n\r\n")
    raw, closed = _until_closed(s)
    got, doc = _answer(raw)
    assert got == status and closed, raw[:200]
    assert doc is not None and doc["error"] and doc["field"] == "", "HTML, not the JSON every other answer is"


def test_head_gets_no_body(server: ServeServer) -> None:
    s = _connect(server)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, closed = _until_closed(s)
    assert _answer(raw) == (501, None) and closed


def _answer_health(srv: ServeServer) -> int:
    s = _connect(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return _answer(_until_closed(s)[0])[0]

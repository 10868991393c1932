"""The HTTP layer of `canary serve`: bytes in, `Service.handle`, JSON out.

The stdlib ThreadingHTTPServer, as the controller's health server uses (canary/telemetry.py):
six JSON endpoints need no framework, and no dependency is added for them. It binds only the
host it is given (127.0.0.1 by default). Whatever arrives (no Content-Length, a body over
64 KiB, a request the stdlib cannot parse, a method it has no handler for) is answered with a JSON
error and a 4xx/5xx; nothing a request sends can stop the server. A request must arrive whole
(line, headers, body) within `request_timeout_s` of the connection being ready for it: a client
that sends a byte now and then (slowloris), or a kept-alive connection left idle, is cut then,
where a per-read socket timeout let it hold a thread for as long as it kept dripping.
"""

from __future__ import annotations

import json
import math
import re
import socket
import ssl
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from canary.serve import Service
from canary.serve_requests import MAX_BODY
from canary.telemetry import BackgroundHTTPServer

_DRAIN = 1024 * 1024
_LENGTH = re.compile(r"[0-9]{1,12}", re.ASCII)
REQUEST_TIMEOUT_S = 10.0


class InFlight:
    """The calls being answered (from a request read whole to its answer written), so that a stop lets
    them end: SIGTERM in the middle of a look cut the connection ("Remote end closed connection without
    response"), which Flagger counts as a failed check and Argo as an Error, with the look perhaps recorded
    and its answer never given. Once `draining`, a request read on a kept-alive connection is a 503 that
    closes it (the caller asks again, of the next process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0
        self.draining = False

    def enter(self) -> bool:
        """Count one call in; False (not counted) once the server is stopping."""
        with self._cond:
            if self.draining:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self.count -= 1
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> tuple[int, int]:
        """Refuse new calls and wait up to `timeout_s` for those in flight: (in flight then, still in flight)."""
        with self._cond:
            self.draining = True
            at_start = self.count
            self._cond.wait_for(lambda: self.count == 0, timeout=timeout_s)
            return at_start, self.count


class ServeServer(BackgroundHTTPServer):
    """`Service` on a background thread (`start`/`stop`), or in the foreground (`serve_forever`)."""

    component = "serve"
    stop_timeout_s = 10.0

    def __init__(self, service: Service, *, host: str = "127.0.0.1", port: int = 0,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, tls: Any = None) -> None:
        """`tls`: a `serve_tls.TlsFiles` to serve HTTPS with (its handshake under the request watchdog)."""
        self.service = service
        self.calls = InFlight()
        self.stopped: tuple[int, int] = (0, 0)  # what `stop` found: (calls in flight, calls it cut)
        super().__init__(_handler(service, request_timeout_s, self.calls), host=host, port=port)
        self._server.handle_error = self._handle_error  # per instance, as tls.wrap's accept
        if tls is not None:
            tls.wrap(self._server)
            self.scheme = "https"

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """What a connection's thread raised past its handler (a bug): one line, never the stdlib's
        traceback on stderr; the connection is closed and the service goes on."""
        exc = sys.exc_info()[1]
        self.log.error("serve.unexpected_error", path="", peer=str(client_address[0]) if client_address else "",
                       error=f"{type(exc).__name__}: {exc}")

    def _listening(self) -> None:
        self.log.info("serve.listening", host=self.host, port=self.port, url=self.url)

    def serve_forever(self) -> None:
        self._listening()
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread, e.g. a signal handler's)."""
        self._server.shutdown()

    def stop(self) -> None:
        """Stop listening (a new connection is refused: the caller's retry finds the next process), then let
        the calls in flight end and answer: each ends within the service's `answer_within_s`, plus the
        state's write and the answer's (2 s). `stopped`: (calls in flight, calls still unanswered then)."""
        super().stop()
        self.stopped = self.calls.drain(self.service.answer_within_s + 2.0)
        self.service.close()


def _handler(service: Service, request_timeout_s: float, calls: InFlight) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout_s  # each read, and (the watchdog below) the whole request
        server_version = "canary-serve"
        protocol_version = "HTTP/1.1"

        def handle_one_request(self) -> None:
            """The stdlib's, under a watchdog that shuts the socket down when the request has not
            arrived whole within `request_timeout_s` (an idle kept-alive connection included)."""
            self._guard = threading.Lock()
            self._reading, self._cut = True, False
            timer = threading.Timer(request_timeout_s, self._too_slow)
            timer.daemon = True
            timer.start()
            try:
                if self._plain_http_to_tls():
                    self.close_connection = True
                    return
                super().handle_one_request()
            except OSError:  # the socket cut below, or the client gone: nothing to answer
                self.close_connection = True
            finally:
                timer.cancel()

        def _plain_http_to_tls(self) -> bool:
            """A connection's first bytes, on an HTTPS port, that are a plain-HTTP request (a kubelet
            probe left at `scheme: HTTP`, `curl http://`): answered in plain HTTP, a 400 that says the
            port serves HTTPS, where the handshake's failure was a reset with no reason. Peeked on the
            descriptor (nothing consumed: a TLS client's hello is left to the handshake)."""
            if not isinstance(self.connection, ssl.SSLSocket) or getattr(self, "_peeked", False):
                return False
            self._peeked = True
            first = socket.socket.recv(self.connection, 1, socket.MSG_PEEK)
            if not (first.isascii() and first.isalpha()):  # a TLS record starts 0x16; EOF: nothing to say
                return False
            data = (json.dumps({"error": "this port serves HTTPS: call it with https:// (a Kubernetes probe: "
                                         "scheme: HTTPS)", "field": ""}) + "\n").encode()
            socket.socket.sendall(self.connection, b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
            socket.socket.shutdown(self.connection, socket.SHUT_WR)
            # read what the client sent (64 KiB at most, under the watchdog) until it closes: a close with
            # unread bytes is a reset, which may reach the client before the answer does
            for _ in range(64):
                if not socket.socket.recv(self.connection, 1024):
                    break
            return True

        def _too_slow(self) -> None:
            with self._guard:
                if not self._reading:
                    return
                self._cut = True
            self.close_connection = True
            _cut(self.connection)

        def _arrived(self) -> bool:
            """The request is read: the watchdog stands down (answering may take the service's own
            time). False when it already cut the connection."""
            with self._guard:
                self._reading = False
                return not self._cut

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The stdlib's own refusals (a request line or header it cannot parse, a URI over 64 KiB, a
            method with no handler: 400, 414, 431, 501...) as JSON like every other answer, not HTML."""
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.0"  # a line it could not read is no HTTP/0.9 client: a status line
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "error"
            self._reply(code, {"error": message or phrase, "field": ""}, close=True,
                        body=self.command != "HEAD" and code >= 200 and code not in (204, 304))

        def _any(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            body = b""
            lengths = self.headers.get_all("Content-Length") or []
            length = lengths[0].strip() if lengths else None
            if self.headers.get("Transfer-Encoding") is not None:  # any coding: a proxy might read the
                return self._reply(411, {"error": "Transfer-Encoding is not accepted; send Content-Length",  # body
                                         "field": "Transfer-Encoding"}, close=True)  # otherwise than we do
            if len({v.strip() for v in lengths}) > 1:
                return self._reply(400, {"error": "Content-Length given more than once with different values",
                                         "field": "Content-Length"}, close=True)
            if length is not None:
                if not _LENGTH.fullmatch(length):  # int() took "1_0", "+10", " 10 ": one reading, ASCII digits
                    return self._reply(400, {"error": f"bad Content-Length {length[:20]!r}", "field": "Content-Length"},
                                       close=True)
                n = int(length)
                if n > MAX_BODY:
                    if n <= _DRAIN:  # read what the client sends, so that it gets the answer, not a reset
                        self.rfile.read(n)
                    return self._reply(413, {"error": f"body of {n} bytes is over the {MAX_BODY} byte limit",
                                             "field": ""}, close=True)
                body = self.rfile.read(n)
                if len(body) < n:  # the client closed, or the watchdog cut it: no request to answer
                    self.close_connection = True
                    return None
            elif self.command in ("POST", "PUT", "PATCH"):
                return self._reply(411, {"error": f"a {self.command} needs Content-Length", "field": "Content-Length"},
                                   close=True)
            if not self._arrived():
                return None
            given = self.headers.get_all("Authorization") or []
            if len(given) > 1:  # which one a proxy passed on is not ours to guess
                return self._reply(400, {"error": "Authorization given more than once", "field": "Authorization"},
                                   close=True)
            if not calls.enter():
                return self._reply(503, {"error": "canary serve is stopping: ask again", "field": ""}, close=True)
            try:
                status, doc = service.handle(self.command, parts.path, parts.query, body,
                                             self.headers.get("Content-Type"),
                                             authorization=given[0] if given else None, peer=self.client_address[0])
                self._reply(status, doc, close=calls.draining)
            finally:
                calls.leave()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815 (http.server's naming)

        def _reply(self, status: int, doc: dict[str, Any], *, close: bool = False, body: bool = True) -> None:
            data = (json.dumps(_finite(doc), allow_nan=False, default=str) + "\n").encode()
            with self._guard:
                self._reading = False  # answering: the watchdog stands down
            self.send_response(status, _phrase(status, doc))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="canary-serve"')
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one `serve.decision` line per decision instead of an access log

    return Handler


def _cut(connection: socket.socket) -> None:
    """Shut the connection's descriptor down, from the watchdog's thread, under a read in progress in
    the handler's: that read ends with an OSError or EOF. Not `SSLSocket.shutdown`, which also drops
    the TLS object: a read already past `recv_into`'s check then raised ValueError or AttributeError,
    which no handler expects (a traceback on stderr)."""
    try:
        socket.socket.shutdown(connection, socket.SHUT_RDWR)
    except OSError:
        pass


PHRASE_MAX = 300  # characters of the reason put on a 5xx's status line (`_phrase`)


def _phrase(status: int, doc: dict[str, Any]) -> str | None:
    """The status line's reason phrase: None (the standard one) below 500; for a 5xx, the standard one, ": " and why
    (the document's `error`, or a look's `result.reason`), printable ASCII on one line, at most `PHRASE_MAX`
    characters of why. Flagger's client (go-retryablehttp) drops a 5xx's body once it gives up, and its Event says
    only `POST <url> giving up after 1 attempt(s): unexpected HTTP status <the status line after the version>`: the
    line is the one place a 5xx's reason reaches the Canary's Events (decision 305). The status stays what it was:
    still retried by a client that retries, still an Error to Argo, a failed check to Flagger's `rollout` hook."""
    if status < 500:
        return None
    try:
        standard = HTTPStatus(status).phrase
    except ValueError:
        standard = "error"
    result = doc.get("result")
    why = doc.get("error") or (result.get("reason") if isinstance(result, dict) else None)
    if not isinstance(why, str) or not why.strip():
        return standard
    why = " ".join(re.sub(r"[^\x20-\x7e]", " ", why).split())  # one line: no CR/LF can end the status line
    if len(why) > PHRASE_MAX:
        why = why[:PHRASE_MAX - 3] + "..."
    return f"{standard}: {why}"


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON (Go's decoder refuses them): None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

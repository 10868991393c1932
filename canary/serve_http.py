"""The HTTP layer of `canary serve`: bytes in, `Service.handle`, JSON out.

The stdlib ThreadingHTTPServer, as the controller's health server uses (canary/telemetry.py):
six JSON endpoints need no framework, and no dependency is added for them. It binds only the
host it is given (127.0.0.1 by default). Whatever arrives (no Content-Length, a body over
64 KiB, a client that stalls) is answered with a JSON error or dropped by the socket timeout;
nothing a request sends can stop the server.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from canary.serve import Service
from canary.serve_requests import MAX_BODY
from canary.telemetry import BackgroundHTTPServer

_DRAIN = 1024 * 1024


class ServeServer(BackgroundHTTPServer):
    """`Service` on a background thread (`start`/`stop`), or in the foreground (`serve_forever`)."""

    component = "serve"
    stop_timeout_s = 10.0

    def __init__(self, service: Service, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        super().__init__(_handler(service), host=host, port=port)

    def serve_forever(self) -> None:
        self.log.info("serve.listening", host=self.host, port=self.port, url=self.url)
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread, e.g. a signal handler's)."""
        self._server.shutdown()


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that never finishes its request does not hold a thread forever
        server_version = "canary-serve"
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            body = b""
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._reply(411, {"error": "chunked bodies are not accepted; send Content-Length",
                                         "field": ""}, close=True)
            if length is not None:
                try:
                    n = int(length)
                    if n < 0:
                        raise ValueError
                except ValueError:
                    return self._reply(400, {"error": f"bad Content-Length {length[:20]!r}", "field": ""}, close=True)
                if n > MAX_BODY:
                    if n <= _DRAIN:  # read what the client sends, so that it gets the answer, not a reset
                        self.rfile.read(n)
                    return self._reply(413, {"error": f"body of {n} bytes is over the {MAX_BODY} byte limit",
                                             "field": ""}, close=True)
                body = self.rfile.read(n)
            elif self.command in ("POST", "PUT"):
                return self._reply(411, {"error": "a POST needs Content-Length", "field": ""}, close=True)
            status, doc = service.handle(self.command, parts.path, parts.query, body,
                                         self.headers.get("Content-Type"))
            self._reply(status, doc)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815 (http.server's naming)

        def _reply(self, status: int, doc: dict[str, Any], *, close: bool = False) -> None:
            data = (json.dumps(_finite(doc), allow_nan=False, default=str) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one `serve.decision` line per decision instead of an access log

    return Handler


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON (Go's decoder refuses them): None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

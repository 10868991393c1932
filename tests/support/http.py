"""A scripted HTTP server on 127.0.0.1 for tests: `answer(path, headers) -> (status, content type, body)`.

One thread, stopped by `close()`; every GET's path is recorded in `paths`. Used where a test
needs an HTTP peer that misbehaves on purpose (not Prometheus, 404, 401, slow) or a tiny
exporter for Prometheus to scrape.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

Answer = tuple[int, str, str]  # (status, content type, body)


class ScriptedHTTP:
    def __init__(self, answer: Callable[[str, dict[str, str]], Answer]) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                status, ctype, body = answer(self.path, dict(self.headers))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first: what the slow answers are for

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on 127.0.0.1 (a port of its own, one thread per request) while the block runs; yields
    its base URL (`http://127.0.0.1:port`). Stopped and joined on the way out."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def receiving() -> Iterator[tuple[str, list[Any]]]:
    """A webhook receiver on 127.0.0.1 while the block runs: every POST's JSON body is appended, in order, to
    the list it yields with its base URL (`http://127.0.0.1:port`, any path); each POST is answered 200."""
    bodies: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield base, bodies

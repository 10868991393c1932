"""A scripted HTTP server on 127.0.0.1 for tests: `answer(path, headers) -> (status, content type, body)`.

One thread, stopped by `close()`; every GET's path is recorded in `paths`. Used where a test
needs an HTTP peer that misbehaves on purpose (not Prometheus, 404, 401, slow) or a tiny
exporter for Prometheus to scrape.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

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

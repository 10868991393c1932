"""A forward HTTP proxy on 127.0.0.1, as `HTTP_PROXY`/`HTTPS_PROXY` name one: a request in absolute form
(`POST http://host:port/path HTTP/1.1`) is sent on to its host in origin form, and `CONNECT host:port` opens a
tunnel; the bytes then flow both ways unread. `seen` holds each request line it was given. Used by the notifier's
tests (decision 749): a post through a proxy keeps its deadline."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._open: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> "ForwardProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._sock.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = rest.partition(b"\r\n\r\n")[2]  # the CONNECT's own headers end here
        else:
            url = urlsplit(target)
            upstream = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            rest = f"{method} {path} {version}\r\n".encode("latin-1") + rest
        self._open.append(upstream)
        if rest:
            upstream.sendall(rest)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

"""A remote-read store for a real Prometheus that fails for some models: a partial answer on demand.

Prometheus merges its remote-read stores into every query (`read_recent: true`), and a store
that fails turns into a warning on a 200 answer ("remote_read: ..."), the local series kept:
exactly a Thanos/Cortex partial response. `FailingStore` answers Prometheus's remote-read
protocol (snappy-compressed protobuf) with no series, or with HTTP 503 when a matcher of the
query names one of `failing` (a regex alternation naming it too: a batched query that covers
the model). Only the protocol's few fields it needs are read; 127.0.0.1 only.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


def _varint(b: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        byte = b[pos]
        pos += 1
        out |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return out, pos


def _fields(b: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(b):
        key, pos = _varint(b, pos)
        kind = key & 7
        if kind == 0:
            value, pos = _varint(b, pos)
        elif kind == 2:
            n, pos = _varint(b, pos)
            value, pos = b[pos:pos + n], pos + n
        else:
            size = 8 if kind == 1 else 4
            value, pos = b[pos:pos + size], pos + size
        yield key >> 3, value


def unsnappy(b: bytes) -> bytes:
    """Snappy's block format (what Prometheus's remote read sends)."""
    _, pos = _varint(b, 0)
    out = bytearray()
    while pos < len(b):
        tag = b[pos]
        pos += 1
        if tag & 3 == 0:  # a literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n, pos = int.from_bytes(b[pos:pos + extra], "little"), pos + extra
            out += b[pos:pos + n + 1]
            pos += n + 1
            continue
        if tag & 3 == 1:
            n, offset, pos = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | b[pos], pos + 1
        else:
            size = 2 if tag & 3 == 2 else 4
            n, offset, pos = (tag >> 2) + 1, int.from_bytes(b[pos:pos + size], "little"), pos + size
        for _ in range(n):
            out.append(out[-offset])
    return bytes(out)


def snappy(data: bytes) -> bytes:
    """`data` as one snappy literal (valid, not compressed)."""
    head, n, length = bytearray(), len(data), len(data)
    while True:  # uvarint of the length
        head.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    if not data:
        return bytes(head)
    if length <= 60:
        return bytes(head) + bytes([(length - 1) << 2]) + data
    size = ((length - 1).bit_length() + 7) // 8
    return bytes(head) + bytes([(59 + size) << 2]) + (length - 1).to_bytes(size, "little") + data


def matcher_values(body: bytes) -> list[list[str]]:
    """Each query's matcher values, from a snappy-compressed ReadRequest."""
    out = []
    for field, query in _fields(unsnappy(body)):
        if field == 1:  # ReadRequest.queries
            out.append([v.decode() for f, m in _fields(query) if f == 3 for g, v in _fields(m) if g == 3])
    return out


class FailingStore:
    """A remote-read endpoint with no series that fails queries naming any of `failing`."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = set(failing)
        self.asked: list[list[list[str]]] = []  # per request, per query, its matcher values
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                queries = matcher_values(self.rfile.read(int(self.headers["Content-Length"])))
                store.asked.append(queries)
                if any(name in value for values in queries for value in values for name in store.failing):
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"store down")
                    return
                body = snappy(b"\x0a\x00" * len(queries))  # one empty QueryResult per query
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Encoding", "snappy")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/read"

    def __enter__(self) -> "FailingStore":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

"""The sandbox's load generator on a connection the proxy closed while it was idle (decision 732).

Its threads keep one `http.client` keep-alive connection each. A proxy may close an idle connection without
saying so (HAProxy's `timeout client`); the next request must then go on a new connection, as urllib3 did
under `requests`, not be counted as a failed request of the arm. Here a one-answer server on 127.0.0.1 closes
every connection after its answer, and the test waits until that close has reached the client before the next
request (no timing: the socket is seen readable, at EOF).
"""

from __future__ import annotations

import json
import select
import socket
import threading

import numpy as np

from canary.sandbox.loadgen import LoadGenerator


def _answer_once_then_close(listener: socket.socket, stop: threading.Event) -> None:
    body = json.dumps({"outputs": [{"data": [0.5]}]}).encode()
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Served-By: stable\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        # closed without "Connection: close": the client learns it only from the socket


def test_a_connection_closed_while_idle_is_opened_again_not_counted_failed() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()
    server = threading.Thread(target=_answer_once_then_close, args=(listener, stop), daemon=True)
    server.start()
    gen = LoadGenerator(f"http://127.0.0.1:{listener.getsockname()[1]}", rate=1.0, threads=1, batch=1)
    rng = np.random.default_rng(0)
    conn = gen._connection()
    try:
        for _ in range(3):
            gen._one(conn, rng, gen.stats)  # the run's counts, as `start` hands its workers (r-ah, 760)
            assert gen.snapshot()["failed"] == 0, gen.snapshot()
            assert conn.sock is not None  # kept for the next request: the answer did not say it closes
            select.select([conn.sock], [], [], 10)  # until the server's close has arrived (readable at EOF)
        summary = gen.snapshot()
        assert summary["failed"] == 0 and summary["ok"] == summary["sent"] == 3, summary
        assert summary["by_server"] == {"stable": 3}
    finally:
        conn.close()
        stop.set()
        listener.close()

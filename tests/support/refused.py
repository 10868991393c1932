"""A port on 127.0.0.1 that refuses every connection for as long as this process runs.

`free_port()` hands out a port that was free a moment ago and is not held: the tests that used it
for "nothing listens there" (a dead Prometheus, Triton or webhook) raced with every server another
xdist worker (or this one) started meanwhile from the same range, and a Triton or Prometheus that
took that port answered where the test wanted a refusal. A socket bound and never listening holds
the port (no other socket can bind it, and connect() never picks it as a source port), and the
kernel answers a connection to it with a reset: ECONNREFUSED, as from a closed port.
"""

from __future__ import annotations

import socket

_held: list[socket.socket] = []  # kept open until the process exits


def refused_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    _held.append(s)
    return int(s.getsockname()[1])

"""Free TCP ports on 127.0.0.1 for the sandbox's servers, away from the ephemeral range.

Binding port 0 and handing the number to a child process races with everything else that
takes ports: the kernel gives the same ephemeral range (32768-60999 on Linux) to every
outgoing connection, and a test suite makes thousands (a Triton arm once failed with
"Socket '127.0.0.1:37829' already in use"). So ports come from below that range, where
only listeners live, and each is checked by binding it. A server still retries on
"address already in use" (another listener may win the race): see TritonServer and PromServer.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20000, 32767  # below Linux's default ip_local_port_range (32768-60999)
_rng = random.SystemRandom()


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago, outside the ephemeral range (else any free one)."""
    for _ in range(50):
        port = _rng.randrange(_LOW, _HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded low range: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

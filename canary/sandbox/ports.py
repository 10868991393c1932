"""Free TCP ports on 127.0.0.1 for the sandbox's servers, away from the ephemeral range.

Binding port 0 and handing the number to a child process races with everything else that
takes ports: the kernel gives the same ephemeral range (32768-60999 on Linux) to every
outgoing connection, and a test suite makes thousands (a Triton arm once failed with
"Socket '127.0.0.1:37829' already in use"). So ports come from below that range, where
only listeners live, and each is checked by binding it. A server still retries on
"address already in use" (another listener may win the race): see TritonServer and PromServer.

A port handed out is free when checked but not held, so a second call could hand out the same
number before the first server binds it: a Triton arm once got one port for both HTTP and gRPC
("cannot listen to HTTP requests and GRPC requests at the same address and port", CI). So the
process remembers the last `REMEMBERED` ports it handed out and never hands one out again
while remembered.
"""

from __future__ import annotations

import collections
import random
import socket
import threading

_LOW, _HIGH = 20000, 32767  # below Linux's default ip_local_port_range (32768-60999)
_rng = random.SystemRandom()
REMEMBERED = 1024  # ports handed out that are not handed out again (a suite starts a few hundred servers)
_given: collections.deque[int] = collections.deque(maxlen=REMEMBERED)
_lock = threading.Lock()


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago, outside the ephemeral range (else any free
    one), and not one of the last REMEMBERED this process handed out."""
    with _lock:
        for _ in range(200):
            port = _rng.randrange(_LOW, _HIGH)
            if port not in _given and _bindable(port):
                break
        else:
            while True:  # a crowded low range: any free port the kernel gives
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", 0))
                    port = int(s.getsockname()[1])
                if port not in _given:
                    break
        _given.append(port)
        return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

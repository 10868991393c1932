"""A deadline on a whole webhook post, however slowly its receiver answers.

Why this exists: requests' `timeout` bounds each wait for a byte, not the answer. A receiver that sends its status
line and headers a byte a second (a broken proxy, a tarpit) held a post for as long as it kept sending, and every
post queued behind it on that URL with it, a rollback's included; nothing was said until the process exited
(`notify.undelivered`), and a controller never exits. Each connection of a `watched_session` notes itself, when it
sends a request, on the `Deadline` of the thread that sends it; the Deadline's timer shuts that socket down at its
time, and the post fails as `AnswerTooSlow` (retried as a timeout is). Decision 721.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # the Deadline of the post this thread is sending


class AnswerTooSlow(TimeoutError):
    """The receiver's answer (status line, headers, a short body read) did not end within the post's deadline."""


class Deadline:
    """`with Deadline(s):` around one post on this thread: at `s` seconds its connection's socket is shut down."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.passed = seconds, False
        self.conn: Any = None
        self.sock: Any = None  # the socket its connection made, before the connection holds it (`_new_conn`)
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()
        _current.deadline = None
        with self._lock:
            self.conn = self.sock = None

    def noted(self, conn: Any) -> None:
        with self._lock:
            self.conn = conn

    def made(self, sock: Any) -> None:
        """The socket the noted connection just made (connected; a TLS handshake still to come): shut at once when
        the deadline came before it, while there was no socket to shut (a name resolving, a connect; decision 727)."""
        with self._lock:
            self.sock = sock
            if self.passed:
                _shut(sock)

    def _cut(self) -> None:
        with self._lock:
            self.passed = True
            for sock in (getattr(self.conn, "sock", None), self.sock):
                _shut(sock)


def _shut(sock: Any) -> None:
    """Shut `sock` down, if any: the thread reading it returns at once."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _note(conn: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.noted(conn)


class _Made:
    """A connection noted on the sending thread's `Deadline` at each request, and whose new socket is handed to it
    as soon as it is connected."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.made(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _note(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _NotedHTTP(_Made, HTTPConnection):
    pass


class _NotedHTTPS(_Made, HTTPSConnection):
    def connect(self) -> None:  # its TLS handshake comes before the request (urllib3's `_validate_conn`)
        _note(self)
        super().connect()


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _NotedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _NotedHTTPS


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def watched_session() -> Any:
    """A requests.Session whose connections note themselves on the sending thread's `Deadline`: those of its own
    pools and those of the proxy manager a post through `HTTP_PROXY`/`HTTPS_PROXY` takes (decision 749: that one's
    pools were urllib3's, and a post through a proxy had no deadline). A SOCKS proxy's manager keeps its own pools
    (their connections speak SOCKS): a post through one has its per-read timeout only."""
    import requests
    from requests.adapters import HTTPAdapter

    class Watched(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = dict(_POOLS)
            return manager

    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, Watched())
    return session


def failure_cause(exc: BaseException) -> str:
    """What a post's connection error was, in a few fixed words ("" when none fits): requests says
    `ConnectionError` alike for a name that does not resolve, a port that refuses and a proxy that drops, and
    `SSLError` for a refused certificate and a server that speaks no TLS, and `NameResolutionError` alike for a name
    that does not exist and a resolver that did not answer (EAI_AGAIN). Never the exception's text: it holds the
    URL, and a Slack URL is its secret (decision 722)."""
    import errno
    import ssl

    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 20:  # the chain: __cause__/__context__, args, urllib3's `reason`
        one = todo.pop(0)
        if not isinstance(one, BaseException) or any(one is s for s in seen):
            continue
        seen.append(one)
        todo += [one.__cause__, one.__context__, getattr(one, "reason", None), *one.args]
    # the resolver could not answer now (no DNS server reached, a SERVFAIL): the name may be right, and a later post
    # may go; a name that does not exist (NXDOMAIN) is a typo in the URL, fixed by hand (decision 747)
    if any(isinstance(one, socket.gaierror) and one.errno == socket.EAI_AGAIN for one in seen):
        return "name lookup failed for now"
    for kinds, words in (((NameResolutionError, socket.gaierror), "name does not resolve"),
                         ((ssl.SSLCertVerificationError,), "certificate refused"),
                         ((ConnectionRefusedError,), "connection refused"),
                         ((ssl.SSLError,), "TLS handshake failed")):
        if any(isinstance(one, kinds) for one in seen):
            return words
    if any(getattr(one, "errno", None) == errno.ECONNREFUSED for one in seen):
        return "connection refused"
    # urllib3's NewConnectionError (any failed connect) is a ConnectTimeoutError too: a timeout is one of its own
    if any(isinstance(one, (ConnectTimeoutError, socket.timeout)) and not isinstance(one, NewConnectionError)
           for one in seen):
        return "connect timed out"
    return ""

"""The notifier attacked as on-call would: receivers that hang, stream, rate-limit or refuse the way
Slack does, a burst of drift news in front of a rollback, a process that exits with posts in flight.

Every receiver is a real stdlib http.server on 127.0.0.1 in a thread; a hanging one is held by a
threading.Event the test releases, never by a sleep that has to end at the right time.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
from structlog.testing import capture_logs

from canary.errors import ConfigError
from canary.notify import Notifier
from tests.integration.test_notify_health import PAYLOAD
from tests.unit.test_cli_prometheus import cert  # noqa: F401  (fixture: a self-signed certificate)

pytestmark = pytest.mark.integration

SECRET = "/services/T0/B0/s3cretXYZ"


class Server:
    """Answers each path with its handler(h, body) (default: 200, empty); records (path, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]] = {}
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()  # what a hanging or streaming handler waits on
        self.entered = threading.Event()  # set when a hanging handler has the request
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.got.append((self.path, body))
                route = outer.routes.get(self.path)
                if route is None:
                    answer(self, 200)
                else:
                    route(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.got]

    def hang(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        self.entered.set()
        self.release.wait(120)
        answer(h, 200)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def answer(h: BaseHTTPRequestHandler, status: int, text: str = "", **headers: str) -> None:
    data = text.encode()
    h.send_response(status)
    for k, v in {"Content-Length": str(len(data)), **headers}.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def _trickle(h: BaseHTTPRequestHandler, release: threading.Event) -> None:
    """Answer with a status line and headers a byte at a time, each far below the 60 s a byte may take, until
    `release` is set or the client shuts the connection (what the whole-post deadline does, decision 721)."""
    try:
        for b in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: 1\r\n" * 100_000:
            if release.is_set():
                return
            h.wfile.write(bytes([b]))
            release.wait(0.05)
    except OSError:
        pass


@pytest.fixture
def srv() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _wait_for(cond: Callable[[], bool], within: float = 30.0) -> bool:
    """Poll a condition that the broken code never reaches (a bound, not a measure of speed)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_a_hung_webhook_does_not_hold_back_slack(srv):
    """One worker posted to every URL in turn: a generic webhook that hung held the Slack message of the
    rollback for the webhook's whole timeout and retries (here 60 s), at every event."""
    srv.routes["/hung"] = srv.hang
    n = Notifier(webhooks=[srv.url + "/hung"], slack=[srv.url + SECRET], timeout_s=60, retries=0)
    n.notify("rollback", PAYLOAD)
    assert _wait_for(lambda: SECRET in srv.paths()), "Slack waited behind the hung webhook"
    assert not srv.release.is_set()  # the webhook still holds its request
    srv.release.set()
    assert n.close(30) and n.sent == 2


def test_a_rollback_is_not_dropped_behind_a_burst_of_drift_news(srv):
    """The queue dropped its oldest event when full: behind a slow receiver, 100 drift alerts (a shared
    feature pipeline breaking drifts every model at once) pushed the rollback out."""
    srv.routes["/hook"] = lambda h, body: srv.hang(h, body) if body["event"] == "drift_started" and \
        not srv.release.is_set() else answer(h, 200)
    n = Notifier(webhooks=[srv.url + "/hook"], max_queue=3, timeout_s=60, retries=0)
    drift = dict(PAYLOAD, canary_version="", weights=None, reason="feature age drifted")
    n.notify("drift_started", drift)  # taken by the worker, held by the receiver
    assert srv.entered.wait(60)
    n.notify("rollback", PAYLOAD)
    for i in range(6):
        n.notify("drift_started", dict(drift, model=f"m{i}"))
    srv.release.set()
    assert n.close(30)
    events = [b["event"] for _, b in srv.got]
    assert "rollback" in events
    assert events.count("drift_started") == 1 + 2  # the one in flight, and the newest two of the six
    assert n.dropped == 4


def test_a_rollback_still_queued_at_exit_is_said_not_lost_silently(srv):
    """`close()` returned False and nobody said what was lost: a `canary sweep` or a controller that
    exited while Slack hung lost the rollback without a line."""
    srv.routes[SECRET] = srv.hang
    n = Notifier(slack=[srv.url + SECRET], timeout_s=60, retries=0)
    with capture_logs() as lines:
        n.notify("promotion", PAYLOAD)
        assert srv.entered.wait(60)
        n.notify("rollback", PAYLOAD)
        assert not n.close(0.2)
    (lost,) = [x for x in lines if x["event"] == "notify.undelivered"]
    assert lost["undelivered"] == [{"sink": "slack", "host": "127.0.0.1", "events": ["promotion", "rollback"]}]
    assert lost["critical"] == 1 and lost["log_level"] == "warning"
    assert "s3cret" not in repr(lines)
    # the hung post answered, and the notifier waited for here: left posting, its `notify.failed` (the server shut
    # at teardown) was printed inside the next test, from a thread of this one (decision 1002)
    with capture_logs() as after:
        srv.release.set()
        assert n.close(60)
    assert [x["notify_event"] for x in after if x["event"] == "notify.sent"] == ["promotion", "rollback"]


def test_every_retry_and_every_url_carries_one_idempotency_key(srv):
    """A 503 after the receiver acted (or a timeout after it read the POST) sent the event again with
    nothing to tell the copies apart: a retraining pipeline started twice."""
    srv.routes["/a"] = lambda h, body: answer(h, 503 if srv.paths().count("/a") == 1 else 200)
    n = Notifier(webhooks=[srv.url + "/a", srv.url + "/b"], retries=2, backoff_s=0.01)
    n.notify("rollback", PAYLOAD)
    n.notify("rollback", PAYLOAD)  # the same end announced again (same record time)
    n.notify("rollback", dict(PAYLOAD, at=1700000060.0))  # another end
    assert n.close(30)
    a = [b["id"] for p, b in srv.got if p == "/a"]
    b = [b["id"] for p, b in srv.got if p == "/b"]  # each URL has its own thread: the order across URLs is free
    assert len(a) == 4 and len(b) == 3
    assert len(set(a[:3] + b[:2])) == 1  # the retry, the other URL, the same end again
    assert a[3] == b[2] != a[0]


def test_a_429_waits_as_long_as_retry_after_asks(srv):
    """Three tries 0.25 s and 0.5 s apart all fell inside Slack's rate limit (Retry-After: 30 s and
    more in a burst of rollbacks), and the rollback message was given up."""
    srv.routes[SECRET] = lambda h, body: answer(h, 429, "rate_limited", **{"Retry-After": "7"}) \
        if srv.paths().count(SECRET) == 1 else answer(h, 200, "ok")
    waits: list[float] = []
    n = Notifier(slack=[srv.url + SECRET], retries=2, backoff_s=0.01, sleep=waits.append)
    n.notify("rollback", PAYLOAD)
    assert n.close(30)
    assert waits == [7.0] and n.sent == 1


def test_a_429s_retry_after_as_an_http_date_is_waited_too(srv):
    """RFC 9110's other form of Retry-After, an HTTP date (a gateway's or a CDN's rate limit): it was read as no
    advice, and the retries came 0.25 s apart into the limit (decision 541)."""
    from email.utils import formatdate

    srv.routes[SECRET] = lambda h, body: answer(h, 429, "rate_limited",
                                                **{"Retry-After": formatdate(time.time() + 20, usegmt=True)}) \
        if srv.paths().count(SECRET) == 1 else answer(h, 200, "ok")
    waits: list[float] = []
    n = Notifier(slack=[srv.url + SECRET], retries=2, backoff_s=0.01, sleep=waits.append)
    n.notify("rollback", PAYLOAD)
    assert n.close(30)
    assert len(waits) == 1 and 10.0 < waits[0] <= 20.0 and n.sent == 1, waits  # the date is whole seconds


def test_a_200_that_streams_is_delivered_once_and_does_not_hold_the_next_event(srv):
    """The body was read to its end: a receiver that answers 200 and then streams its progress held the
    worker for as long as it streamed, and every later event waited behind it."""

    def stream(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            while not srv.release.is_set():
                h.wfile.write(b"1\r\n.\r\n")
                h.wfile.flush()
                srv.release.wait(0.05)
        except OSError:
            pass  # the client closed: what the fix does

    srv.routes["/stream"] = stream
    n = Notifier(webhooks=[srv.url + "/stream"], timeout_s=60, retries=2)
    n.notify("rollback", PAYLOAD)
    n.notify("promotion", PAYLOAD)
    assert _wait_for(lambda: srv.paths().count("/stream") == 2), "the second event waited behind the stream"
    assert n.close(30) and n.sent == 2


def test_slacks_error_words_are_said_and_a_200_that_carries_one_is_not_sent(srv):
    """Slack answers 404 `no_service` (the hook was revoked), 410 `channel_is_archived`, 400
    `invalid_payload`: the line said only `status=404`, and on-call could not tell a revoked hook from
    a bad message."""
    srv.routes["/services/T0/B0/gone"] = lambda h, body: answer(h, 404, "no_service")
    srv.routes["/services/T0/B0/odd"] = lambda h, body: answer(h, 200, "invalid_payload")
    n = Notifier(slack=[srv.url + "/services/T0/B0/gone", srv.url + "/services/T0/B0/odd", srv.url + SECRET])
    with capture_logs() as lines:
        n.notify("rollback", PAYLOAD)
        assert n.close(30)
    said = {(x["event"], x.get("detail")) for x in lines}
    assert said == {("notify.rejected", "no_service"), ("notify.rejected", "invalid_payload"), ("notify.sent", None)}
    assert (n.sent, n.failed) == (1, 2)


def test_a_url_whose_port_is_not_a_port_is_refused_before_anything_moves():
    """`https://hooks.slack.com:443x/...` passed the check and failed every post at 3 a.m."""
    for bad in ("https://hooks.slack.com:443x" + SECRET, "https://hooks.slack.com:99999" + SECRET,
                "https://hooks.slack.com" + SECRET + " "):
        with pytest.raises(ConfigError) as err:
            Notifier.from_env({}, slack=[bad])
        assert "s3cret" not in str(err.value) and "--slack-webhook" in str(err.value)


def test_a_redirect_is_refused_with_its_status_and_not_followed(srv):
    """Held (decision 138): an ingress's 301 to https is not followed (a client would re-send the POST
    as a GET, without the body) and is no success; the line says the status, the target gets nothing."""
    srv.routes["/moved"] = lambda h, body: answer(h, 301, Location=srv.url + "/there")
    n = Notifier(webhooks=[srv.url + "/moved"])
    with capture_logs() as lines:
        n.notify("rollback", PAYLOAD)
        assert n.close(30)
    assert srv.paths() == ["/moved"] and (n.sent, n.failed) == (0, 1)
    assert [(x["event"], x["status"]) for x in lines if x["event"].startswith("notify.")] == [("notify.rejected", 301)]


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off_and_said(srv):
    """requests' timeout bounds each wait for a byte, not the answer: a receiver that sent its status line and
    headers a byte at a time (each long before the timeout) held the rollback's post, and every post behind it on
    that URL, for as long as it kept sending, and nothing was said until the process exited. Now the post ends at
    `answer_within_s` as `AnswerTooSlow` (decision 721); the bytes keep coming here until the test ends."""

    srv.routes["/slow"] = lambda h, _body: _trickle(h, srv.release)
    n = Notifier(webhooks=[srv.url + "/slow"], timeout_s=60, retries=0, answer_within_s=0.5)
    with capture_logs() as logs:
        n.notify("rollback", PAYLOAD)
        n.notify("promotion", PAYLOAD)
        assert n.close(30), "the trickle held the posts"
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert [(e["notify_event"], e["error"], e["attempts"]) for e in failed] == \
        [("rollback", "AnswerTooSlow", 1), ("promotion", "AnswerTooSlow", 1)], failed
    assert srv.paths() == ["/slow", "/slow"]  # the second post was sent once the first was cut


def test_a_post_through_a_proxy_is_cut_off_at_its_deadline_too(srv, monkeypatch):
    """721's deadline is kept by the connections of the session's own pools; a post through a proxy
    (`HTTP_PROXY`, as a cluster without egress sets it) went through requests' proxy manager, whose pools were
    urllib3's: the trickle held it for as long as it kept sending, as before 721. Now the proxy manager's pools
    are the watched ones too (decision 749). A real forward proxy on 127.0.0.1 (tests/support/forward_proxy.py)."""
    from tests.support.forward_proxy import ForwardProxy

    srv.routes["/slow"] = lambda h, _body: _trickle(h, srv.release)
    proxy = ForwardProxy().start()
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    try:
        n = Notifier(webhooks=[srv.url + "/slow"], timeout_s=60, retries=0, answer_within_s=0.5)
        with capture_logs() as logs:
            n.notify("rollback", PAYLOAD)
            assert n.close(30), "the trickle held the post through the proxy"
    finally:
        srv.release.set()
        proxy.stop()
    assert proxy.seen == [f"POST {srv.url}/slow"], proxy.seen  # it went through the proxy
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert [(e["notify_event"], e["error"]) for e in failed] == [("rollback", "AnswerTooSlow")], failed


def test_a_post_through_an_https_proxy_tunnel_is_cut_off_at_its_deadline_too(cert, monkeypatch):
    """The same through `HTTPS_PROXY`: a CONNECT tunnel through the forward proxy to a TLS receiver on 127.0.0.1
    whose certificate the post trusts (`REQUESTS_CA_BUNDLE`), which trickles its answer (decision 749's addendum:
    its test read the proxy manager's pool classes only, never posted through a tunnel). `NO_PROXY` naming the
    receiver sends the second post around the proxy: cut off too."""
    import ssl

    from tests.support.forward_proxy import ForwardProxy

    release = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            _trickle(self, release)

        def log_message(self, *args: Any) -> None:
            pass

    crt, key = cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    https = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    https.daemon_threads = True
    https.socket = context.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"https://127.0.0.1:{https.server_address[1]}/slow"
    proxy = ForwardProxy().start()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "https_proxy",
                 "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(crt))
    try:
        for no_proxy in ("", "127.0.0.1"):
            monkeypatch.setenv("NO_PROXY", no_proxy)
            n = Notifier(webhooks=[url], timeout_s=60, retries=0, answer_within_s=0.5)
            with capture_logs() as logs:
                n.notify("rollback", PAYLOAD)
                assert n.close(30), f"the trickle held the post (NO_PROXY={no_proxy!r})"
            failed = [(e["notify_event"], e["error"]) for e in logs if e["event"] == "notify.failed"]
            assert failed == [("rollback", "AnswerTooSlow")], (no_proxy, logs)
    finally:
        release.set()
        proxy.stop()
        https.shutdown()
        https.server_close()
    host = url.split("/")[2]
    assert proxy.seen == [f"CONNECT {host}"], proxy.seen  # the first through the tunnel, the second around it


@pytest.fixture
def self_signed(cert: Any) -> Iterator[str]:
    """An https receiver on 127.0.0.1 whose certificate nobody trusts (self-signed): its URL."""
    import ssl

    crt, key = cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    https = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{https.server_address[1]}"
    finally:
        https.shutdown()
        https.server_close()


def test_a_post_that_cannot_connect_says_why_in_fixed_words(srv, self_signed):
    """requests says `ConnectionError` alike for a name that does not resolve and a port that refuses, and
    `SSLError` alike for a certificate refused and a receiver that speaks no TLS: on-call read `error=ConnectionError`
    and could not tell a typo in the host from a receiver down. `cause` now says which, never with the URL's path
    (a Slack URL is its secret; decision 722)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    try:  # what this machine's resolver says of a name that does not exist: without a DNS server, "not now"
        socket.getaddrinfo("canary-webhook.invalid", 80)
        unresolved = "name does not resolve"
    except socket.gaierror as exc:
        unresolved = "name lookup failed for now" if exc.errno == socket.EAI_AGAIN else "name does not resolve"
    urls = {"connection refused": closed, unresolved: "http://canary-webhook.invalid",
            "TLS handshake failed": srv.url.replace("http://", "https://"), "certificate refused": self_signed}
    for cause, base in urls.items():
        n = Notifier(slack=[base + SECRET], timeout_s=10, retries=0)
        with capture_logs() as logs:
            n.notify("rollback", PAYLOAD)
            assert n.close(30), cause
        failed = [e for e in logs if e["event"] == "notify.failed"]
        assert [e.get("cause") for e in failed] == [cause], (cause, failed)
        assert "s3cret" not in repr(logs)


def test_a_resolver_that_did_not_answer_is_not_said_as_a_name_that_does_not_exist(monkeypatch):
    """A DNS server not reached (EAI_AGAIN, "Temporary failure in name resolution") was said `name does not
    resolve`, as a typo in the URL is: on-call went to fix a URL that was right. Now `name lookup failed for now`
    (decision 747). The host's resolver is the one thing faked here (no DNS server to stop on this machine): the
    post goes through requests and urllib3 as every post does."""
    import socket

    real = socket.getaddrinfo

    def resolver_down(host, *args, **kw):
        if host == "hooks.example.test":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver_down)
    n = Notifier(slack=["http://hooks.example.test" + SECRET], timeout_s=10, retries=0)
    with capture_logs() as logs:
        n.notify("rollback", PAYLOAD)
        assert n.close(30)
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert [e.get("cause") for e in failed] == ["name lookup failed for now"], failed
    assert "s3cret" not in repr(logs)


def test_a_deadline_that_came_before_the_socket_still_cuts_the_post(srv):
    """The Deadline's cut shuts the connection's socket; at a deadline that came while there was none yet (the name
    resolving, which no timeout bounds, or the connect) it shut nothing, and the post then went on unbounded however
    slowly its receiver answered, as before 721. Now the socket is shut as soon as it is made (727). The deadline is
    passed by hand here: no timing."""
    import requests

    from canary.notify_http import Deadline, watched_session

    session = watched_session()
    with Deadline(3600) as deadline:
        deadline._cut()  # its time came before any connection was made
        with pytest.raises(requests.RequestException):
            session.post(srv.url + "/late", data=b"{}", timeout=30)
    assert deadline.passed and srv.paths() == []  # nothing was sent

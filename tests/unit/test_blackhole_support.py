"""tests/support/blackhole.py's `act_at_request`: the test's action runs once, whatever the proxy's threads."""

from __future__ import annotations

import threading

from tests.support.blackhole import BlackholeProxy, act_at_request


def test_act_at_request_acts_once_when_two_requests_find_the_state_at_once() -> None:
    """Each connection has its own proxy thread, and the process sends requests from more than one (the main
    thread, the heartbeat, an Event): two requests read once the state holds both found `done` unset and both
    acted (two SIGTERMs, two kills, two edits), where the docstring says once."""
    proxy = BlackholeProxy("127.0.0.1", 9)
    both, count, inside = threading.Event(), threading.Lock(), [0]
    acts: list[int] = []

    def when() -> bool:  # true; and waits (2 s at most) for the other request to be asked too
        with count:
            inside[0] += 1
            if inside[0] == 2:
                both.set()
        both.wait(2)  # a bound: asked without one at a time, the other request is here well before it
        return True

    try:
        wait = act_at_request(proxy, when, lambda: acts.append(1))
        threads = [threading.Thread(target=proxy.on_request, args=(b"GET / HTTP/1.1",)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        wait(0)
    finally:
        proxy.stop()
    assert acts == [1], acts


def test_held_times_out_foresees_the_line_the_proxy_holds() -> None:
    """`held_times_out` cuts the timeout of a query the proxy will hold, foreseen from the request line the client
    writes: a line the proxy read otherwise (another encoding of the query) would give a held query the forwarded
    one's 60 s. A listening socket that never answers stands in for Prometheus (nothing is forwarded)."""
    import socket
    from urllib.parse import urlencode

    import pytest

    from canary.errors import MetricsUnavailable
    from tests.support.blackhole import held_times_out, holds_query

    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(8)
    proxy = BlackholeProxy("127.0.0.1", upstream.getsockname()[1]).start()
    seen: list[bytes] = []
    query = 'sum(rate(x{model_name="o1", le=~"0.5|+Inf"}[5m])) / 2'
    try:
        proxy.blackhole = True
        proxy.hold_only = lambda line: seen.append(line) is None and b"o1%22" in line
        assert holds_query(proxy, query, {"time": "1.000"}) and not holds_query(proxy, "vector(1)")
        seen.clear()
        client = held_times_out(proxy, held_timeout_s=0.2, retries=1, at=1.0)
        with pytest.raises(MetricsUnavailable, match=r"timed out after 0\.2s"):  # not the forwarded query's 60 s
            client.query(query, check="c")
        line = "GET /api/v1/query?" + urlencode({"query": query, "time": "1.000"})
        assert {s.split(b" HTTP/")[0] for s in seen} == {line.encode()}, (seen, line)  # (asked at each read)
    finally:
        proxy.stop()
        upstream.close()

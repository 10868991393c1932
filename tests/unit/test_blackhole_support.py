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

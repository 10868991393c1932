"""After a signal, `canary promote --interrupt-grace` spends the grace on the route's stable-100% write first
(decision 407).

Found: when SIGTERM landed while the main thread waited on a request that was not the route's write (the history
ConfigMap's PATCH, an Event's POST) and the API server never answered it, that request used up the whole grace:
the rollback's write was never tried, and the process ended on exit 6 and `traffic.unsafe` for a route a working
write would have sent back to stable. Now the request the main thread waits on at the signal is abandoned at once
unless it is a write of the route (its VirtualService or DestinationRule), and no request that is not the route's
is sent until a write of the route after the signal has landed.

The real CLI process, a real Prometheus (test_promote's backfilled history) and the strict Kubernetes API
emulator behind a proxy that holds, never answers, only the requests chosen by their first line and by the
route's weights as the emulator holds them (tests/support/blackhole.py): the history write or Event sent once
traffic is at 80/20. The signal is sent by the proxy the moment such a request is held (a condition, not a guess). Without the
change each test ends on exit 6 with the route at 80/20.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import urlparse

import pytest

from canary.logs import parse_json_lines
from tests.integration.test_interrupt_grace import _promote_signalled
from tests.integration.test_promote import cluster, prometheus, vs_state  # noqa: F401 - fixtures
from tests.support.blackhole import BlackholeProxy, through

pytestmark = pytest.mark.integration


def _signalled_while_held(api: Any, kubeconfig: Any, policy: Any, prom_url: str, holds: Callable[[bytes], bool],
                          *extra: str) -> tuple[int, str, str, BlackholeProxy]:
    """Promote through a proxy that holds the requests `holds` picks while the route is at 80/20; SIGTERM once
    one is held, from the proxy's thread at the hold (`_promote_signalled(at_hold=)`: a 3 s Event held while the
    test's own thread woke could end by its timeout before the signal). Returns (exit code, stdout, stderr, the
    proxy)."""
    up = urlparse(api.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    proxy.hold_only = lambda line: holds(line) and vs_state(api)[0] == [80, 20]
    proxy.blackhole = True

    def wait_held() -> None:
        assert proxy.holding.wait(60), "promote sent no such request at 80/20 within 60 s"

    try:
        code, out, err = _promote_signalled(through(proxy, kubeconfig), policy, prom_url, *extra,
                                            at_split=wait_held, at_hold=proxy)
    finally:
        proxy.stop()
    return code, out, err, proxy


@pytest.mark.parametrize("on_interrupt", ["rollback", "pause"])
def test_a_history_write_hung_at_the_signal_does_not_spend_the_grace_of_the_rollback(
        cluster: Any, prometheus: Any, on_interrupt: str) -> None:
    """The history ConfigMap's PATCH after step 1 never answered; SIGTERM while promote waits on it. It is
    abandoned at once, and the interrupt's write lands: stable 100% recorded aborted (exit 3), or paused at 80/20
    (exit 130). Before: the PATCH held the whole 3 s, the write was refused unsent, exit 6 at 80/20."""
    api, kubeconfig, policy = cluster
    code, out, err, proxy = _signalled_while_held(
        api, kubeconfig, policy, prometheus.url, lambda line: line.startswith(b"PATCH ") and b"/configmaps/" in line,
        "--interrupt-grace", "3s", "--on-interrupt", on_interrupt)
    assert proxy.requests_held == 1 and b"PATCH" in proxy.held_lines[0], (proxy.held_lines, err[-3000:])
    weights, rec = vs_state(api)
    if on_interrupt == "rollback":
        assert code == 3, err[-4000:]
        assert weights == [100, 0] and rec["phase"] == "aborted" and "SIGTERM" in rec["reason"], rec
    else:
        assert code == 130, err[-4000:]
        assert weights == [80, 20] and rec["phase"] == "paused", rec
    said = parse_json_lines(err)
    assert not [e for e in said if e["event"] in ("traffic.unsafe", "rollback.failed")], err[-3000:]
    failed = [e for e in said if e["event"] == "history.write_failed"]
    assert failed and "abandoned at the signal" in failed[0]["error"], failed
    assert "kept for the route's stable-100% write first" in failed[0]["error"], failed
    # what the abandoned write held is written once traffic is settled (the rest of the grace is everyone's)
    assert not [e for e in said if e["event"] == "history.end_unwritten"], err[-3000:]
    assert json.loads(out)["exit_code"] == code


def test_an_event_hung_at_the_signal_does_not_spend_the_grace_of_the_rollback(cluster: Any, prometheus: Any) -> None:
    """The Event of step 1 (`StepAdvanced`) never answered; SIGTERM while promote waits on it. A 2 s grace is
    shorter than an Event's own 3 s timeout, so before, the Event held it all and the rollback was never sent
    (exit 6). Now it is abandoned at the signal: stable 100%, exit 3."""
    api, kubeconfig, policy = cluster
    code, out, err, proxy = _signalled_while_held(
        api, kubeconfig, policy, prometheus.url, lambda line: line.startswith(b"POST ") and b"/events" in line,
        "--interrupt-grace", "2s")
    assert code == 3, err[-4000:]
    assert proxy.requests_held == 1, (proxy.held_lines, err[-3000:])
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "aborted", rec
    assert json.loads(out)["phase"] == "aborted"

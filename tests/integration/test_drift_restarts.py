"""The drift watch restarted, or followed by a new leader, in the middle of what it tells people (decision 160):
a Prometheus outage (`drift.prometheus_down` / `drift.prometheus_back`). A real Prometheus behind a black-hole
proxy, a real notification receiver on 127.0.0.1, the test's clock; "a restart" is a new DriftWatcher on the
same state file (what `drift watch` builds at start)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from canary.drift import monitor as M
from canary.drift.watch import DriftWatcher
from canary.notify import Notifier
from tests.integration.test_drift_pass_faults import MODELS, served  # noqa: F401
from tests.support.blackhole import BlackholeProxy, held_times_out
from tests.support.http import receiving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NEWS = ("drift.prometheus_down", "drift.prometheus_back")


@pytest.fixture()
def down(served: SimpleNamespace) -> Iterator[SimpleNamespace]:  # noqa: F811
    """A proxy in front of the real Prometheus (black-holed: down), and a notification receiver."""
    proxy = BlackholeProxy("127.0.0.1", int(served.prom.url.rsplit(":", 1)[1])).start()
    proxy.blackhole = True
    try:
        with receiving() as (base, notes):
            yield SimpleNamespace(proxy=proxy, hook=f"{base}/hook", notes=notes, served=served)
    finally:
        proxy.stop()


def _start(down: SimpleNamespace, state: Path, t: list[float]) -> tuple[DriftWatcher, Notifier]:
    """`drift watch -n prod --state-file state` over o1-o4, as a new process builds it."""
    notifier = Notifier(webhooks=[down.hook], retries=0)
    client = held_times_out(down.proxy)
    watcher = DriftWatcher([down.served.profiles[m] for m in MODELS], client=client, window_s=3600,
                           namespace="prod", registry=CollectorRegistry(), config=M.MonitorConfig(quiet_s=0),
                           clock=lambda: t[0], notifier=notifier, state_file=state)
    return watcher, notifier


def test_a_prometheus_down_told_before_a_restart_is_said_back_after_it_and_not_told_twice(
        down: SimpleNamespace, tmp_path: Path) -> None:
    """Told down by one process, restarted while still down (a pod rescheduled), back: the outage lived in the
    process, so the new one told `down` again an hour later and, back sooner, never said `back`: Slack's last
    word about drift watching stayed "Prometheus down"."""
    t, state = [2_000_000_000.0], tmp_path / "state.json"
    with capture_logs() as logs:
        first, n1 = _start(down, state, t)
        for _ in range(4):  # 0, 20, 40, 60 min down: told at 60
            first.once()
            t[0] += 1_200
        assert n1.close(timeout=10)
        second, n2 = _start(down, state, t)  # the restart, 80 min into the outage
        for _ in range(4):  # still down at 80, 100, 120, 140 min: not told again
            second.once()
            t[0] += 1_200
        down.proxy.blackhole = False
        second.once()  # back
        second.once()  # and nothing more
        assert n2.close(timeout=10)
    said = [e for e in logs if e["event"] in NEWS]
    assert [e["event"] for e in said] == list(NEWS), said
    assert "after about 2h40m" in said[1]["message"]  # counted from the first process's first down pass
    assert [n["event"] for n in down.notes] == ["drift_prometheus_down", "drift_prometheus_back"], down.notes
    assert "prometheus" not in json.loads(state.read_text())  # nothing stored once it is over


def test_a_watcher_restarted_every_40_minutes_still_tells_an_hours_outage(down: SimpleNamespace,
                                                                          tmp_path: Path) -> None:
    """Each restart counted the hour from 0 again: a watcher restarted more often than hourly (a crash loop, a
    node drained twice) never told people that Prometheus was down, however long it lasted."""
    t, state = [2_000_000_000.0], tmp_path / "state.json"
    with capture_logs() as logs:
        for _ in range(3):  # three processes, each running two passes 20 min apart, then replaced
            watcher, notifier = _start(down, state, t)
            for _ in range(2):
                watcher.once()
                t[0] += 1_200
            assert notifier.close(timeout=10)
    said = [e for e in logs if e["event"] in NEWS]
    assert [e["event"] for e in said] == ["drift.prometheus_down"], said  # at 60 min, by the second process
    assert "has not answered for 1h" in said[0]["message"]


def test_a_stored_outage_no_watcher_saw_for_hours_is_counted_again(down: SimpleNamespace, tmp_path: Path) -> None:
    """A watcher stopped for a day during an outage it had not told yet, started again with Prometheus still down:
    how long it was down meanwhile is not known, so the hour is counted again from the new start (never "down
    for 24 h" on the first pass)."""
    t, state = [2_000_000_000.0], tmp_path / "state.json"
    with capture_logs() as logs:
        first, n1 = _start(down, state, t)
        first.once()  # down, 0 min
        assert n1.close(timeout=10)
        t[0] += 86_400
        second, n2 = _start(down, state, t)
        second.once()  # a day later, still down: not told at once
        t[0] += 3_600
        second.once()  # an hour after the restart: told
        assert n2.close(timeout=10)
    said = [e for e in logs if e["event"] in NEWS]
    assert [e["event"] for e in said] == ["drift.prometheus_down"], said
    assert "has not answered for 1h" in said[0]["message"]

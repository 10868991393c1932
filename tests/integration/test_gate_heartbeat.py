"""`canary promote`'s record while its Triton gate runs (PENDING, before the first step), decision 150.

- The record got no heartbeat in PENDING: a warm-up longer than 2 x look_every + 60 s (a model still
  loading) read as a gone owner, a second promote on another machine took the rollout over and ran the gate
  again, and the first ended "taken over". A live owner's PENDING record now stays fresh; one whose owner
  stopped writing is still taken over once it is stale.
- A signal during the gate logged `look.abandoned` (no look was running): now `gate.abandoned`.

Real Kubernetes API emulator and IstioRouter; promote on fake metrics and a fake clock that only the
tests' gates move. A gate waits for the route to show what it expects (bounded, for the failing case to
end): no outcome depends on when a sleep ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import RolloutBusy
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import api, record, routes, runner  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
ELSEWHERE = "promote#another-host:4026531836:4242:0a1b2c3d"  # a promote on another machine: its age decides


def _until(cond: Any, rounds: int = 1000) -> bool:
    """Polls `cond` (the route as another thread leaves it) up to `rounds` times; True once it holds."""
    for _ in range(rounds):
        if cond():
            return True
        time.sleep(0.01)
    return False


class _LongWarmUp:
    """A Triton gate whose warm-up lasts 100 fake seconds (look_every is 1 s: a record unchanged for 62 s
    is a gone owner's), in 20 s rounds; after each it waits until the record carries that round's time (a
    heartbeat). Then a second promote of the same version, on the same clock, starts."""

    probe_interval, probe_failures = 1.0, 3

    def __init__(self, api: Any, clock: FakeClock) -> None:
        self.api, self.clock = api, clock
        self.beats: list[bool] = []
        self.second: BaseException | rl.RolloutState | None = None

    def preflight(self) -> dict[str, Any]:
        for _ in range(5):
            self.clock.t += 20.0
            at = self.clock.t
            if all(self.beats):  # once a beat is missing, the rounds go on without waiting for any
                self.beats.append(_until(lambda: record(self.api).get("updated_at", 0.0) >= at))
        try:
            self.second = runner(self.api, "v2", self.clock).run().state
        except RolloutBusy as exc:
            self.second = exc
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        return True


def test_a_second_promote_leaves_a_live_promotes_long_warm_up_alone(api: Any) -> None:
    clock = FakeClock()
    first = runner(api, "v2", clock)
    first.owner = ELSEWHERE
    gate = first.gate = _LongWarmUp(api, clock)
    with structlog.testing.capture_logs() as logs:
        res = first.run()
    assert isinstance(gate.second, RolloutBusy), gate.second  # without the fix: taken over, the gate ran again
    assert all(gate.beats), gate.beats
    assert "wrote it 0s ago" in str(gate.second), gate.second
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason
    assert not [e for e in logs if e["event"] in ("rollout.taken_over", "rollout.resumed_from_state")]


def test_a_pending_record_whose_owner_stopped_writing_is_taken_over_once_stale(api: Any) -> None:
    """The control: a promote gone during its gate (its claim written, then nothing) is taken over after
    2 x look_every + 60 s, as before; 61 s after its last write it is still busy."""
    clock = FakeClock()
    gone = runner(api, "v2", clock)
    gone.owner = ELSEWHERE
    gone._current = gone._start()  # the claim, PENDING at 100/0; the process then dies
    assert record(api)["phase"] == rl.PENDING and record(api)["owner"] == ELSEWHERE
    clock.t += 61.0
    with pytest.raises(RolloutBusy):
        runner(api, "v2", clock).run()
    clock.t += 2.0
    res = runner(api, "v2", clock).run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason


class _HeldWarmUp:
    """A Triton gate that runs until released; a signal arrives while it does."""

    probe_interval, probe_failures = 1.0, 3

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.release = stop, threading.Event()

    def preflight(self) -> dict[str, Any]:
        self.stop.set()  # SIGTERM (a CI job cancelled) during the warm-up
        self.release.wait(30)
        return {"warm_p50_ms": 3.0}

    def ready(self) -> bool:
        return True


def test_a_signal_during_the_gate_is_said_as_the_gates(api: Any) -> None:
    clock = FakeClock()
    promote = runner(api, "v2", clock, interrupted_by="SIGTERM")
    gate = promote.gate = _HeldWarmUp(promote.stop)
    try:
        with structlog.testing.capture_logs() as logs:
            res = promote.run()
    finally:
        gate.release.set()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res.state.reason
    assert routes(api) == [[("stable", 100), ("canary", 0)]] and record(api)["phase"] == rl.ABORTED
    said = [e for e in logs if e["event"] == "gate.abandoned"]
    assert len(said) == 1 and said[0]["reason"] == "interrupted" and said[0]["stage"] == "preflight", said
    assert not [e for e in logs if e["event"] == "look.abandoned"]

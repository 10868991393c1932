"""After a signal, a read of the route that hangs leaves time to read again and write stable 100% (decision 408); a
decided rollback whose read is abandoned at the signal lands as decided, and a write decided before the signal is
not sent again after it (decision 409).

The interrupt's guarded write reads the route first (`IstioRouter.set_weights`: the VirtualService, then the
DestinationRule, then the PUT). When the API server accepted that read and never answered it, the read's timeout
was the whole grace left: it ran out, the router's next try was refused unsent, and promote ended on exit 6 with
`traffic.unsafe` at 80/20 although the next read would have been answered. Now, until the route's write lands, a
read gets at most half of the grace left (`kube.READ_SHARE`).

Real components: the Kubernetes API emulator (its `hold_next`: the next GET of the VirtualService received and
never served), the real IstioRouter and the real `kube.bound_by`, bound as promote binds it; the signal is what
promote's handler does, at the loop's first look at 80/20 (no request in flight), and the hold is armed then, so the
read held is the interrupt's own. A fake clock for the rollout; the grace is real time, and nothing is timed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from canary import rollout as rl
from canary.errors import TrafficUnsafe
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import api, record, routes, runner  # noqa: F401 - fixture
from tests.integration.test_resume_fail_safe import STABLE, _events, _run

pytestmark = pytest.mark.integration


def _bound(r: Any, grace_s: int) -> tuple[list[float], Any]:
    """`r`'s client bound as promote binds it (`kube.bound_by`: the route's requests keep the grace, a write decided
    before the signal is stale), and `r.settled` told; the grace's end (`until[0]`, none until the test's signal)
    and the `InFlight`."""
    from canary.kube import bound_by

    until = [math.inf]
    words = f"the {grace_s} s after SIGTERM (--interrupt-grace) are"
    flying = bound_by(r.router.custom.api_client, lambda: until[0], spent=lambda: f"{words} spent",
                      route=r.target.is_route_path, kept=lambda: f"{words} kept for the route's write",
                      stale=lambda: r.writing_before_signal)
    r.settled = flying.settle
    return until, flying


def test_a_route_read_that_hangs_after_the_signal_leaves_the_grace_to_read_again_and_write(api: Any) -> None:
    clock = FakeClock()
    r = runner(api, "v2", clock)
    until, flying = _bound(r, 3)
    held: list[Any] = []

    def signal_at_split(state: rl.RolloutState) -> None:
        if state.phase == rl.PROGRESSING and not r.stop.is_set():  # as promote's handler, then the hang
            until[0] = time.monotonic() + 3.0
            r.interrupted_by = "SIGTERM"
            r.stop.set()
            flying.signalled()
            held.append(api.hold_next(methods=("GET",), plural="virtualservices"))

    r.on_update = signal_at_split
    try:
        res, logs = _run(r)
    finally:
        for release in held:
            release.set()
    assert held, "the rollout never reached its first step"
    assert not isinstance(res, TrafficUnsafe), res
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res
    assert routes(api) == STABLE and record(api)["phase"] == rl.ABORTED and "SIGTERM" in record(api)["reason"]
    assert not _events(logs, "traffic.unsafe") and not _events(logs, "rollback.failed")


def test_a_decided_rollback_whose_read_is_abandoned_at_the_signal_is_still_written_as_decided(api: Any) -> None:
    """Decision 409, held: the signal abandons the read the main thread waits on (407), here the first read of a bad
    canary's decided rollback (its write reads the route first). The router's stable-100% write reads the route
    again when its first read fails (`IstioRouter._for_stable_write`), so the rollback lands as decided: rolled
    back with the check's reason, exit 1, not "interrupted by SIGTERM". A real signal (SIGUSR1 standing in for
    SIGTERM, its handler doing what promote's does) is sent to this thread once the emulator holds that read
    (`hold_next`, armed as the rollback is applied)."""
    import signal
    import threading

    clock = FakeClock()
    r = runner(api, "v2", clock, slowdown=3.0)
    until, flying = _bound(r, 5)
    held: list[Any] = []
    main = threading.get_ident()

    def handler(_signum: int, _frame: Any) -> None:  # promote's `interrupted`
        if not r.stop.is_set():
            until[0] = time.monotonic() + 5.0
            r.interrupted_by = "SIGTERM"
            r.stop.set()
            flying.signalled()

    def signal_once_held(fault: Any) -> None:
        while fault.times:  # the emulator took the request (a condition, polled): the main thread waits on it
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGUSR1)

    apply = r._apply

    def applying(new: rl.RolloutState, actions: Any, **kw: Any) -> rl.RolloutState:
        if new.phase == rl.ROLLED_BACK and not held:
            held.append(api.hold_next(methods=("GET",), plural="virtualservices"))
            threading.Thread(target=signal_once_held, args=(api.handler.faults[-1],), daemon=True).start()
        return apply(new, actions, **kw)

    r._apply = applying  # type: ignore[method-assign]
    before = signal.signal(signal.SIGUSR1, handler)
    try:
        res, logs = _run(r)
    finally:
        signal.signal(signal.SIGUSR1, before)
        for release in held:
            release.set()
    assert held, "the canary was never rolled back"
    assert r.stop.is_set(), "the signal never came"  # sent only once the emulator held the rollback's read
    assert not isinstance(res, Exception), res
    assert res.state.phase == rl.ROLLED_BACK and res.exit_code == 1, res
    assert routes(api) == STABLE and record(api)["phase"] == rl.ROLLED_BACK
    assert "SIGTERM" not in record(api)["reason"], record(api)["reason"]


def test_a_write_decided_before_the_signal_is_not_retried_after_it(api: Any) -> None:
    """Decision 409: the signal lands while the router waits out a 429's `Retry-After` (2 s) before trying a write of
    the rollout decided before it again (the next write of the route at 80/20: a look's record, a heartbeat or the
    next step). Before, the wait went on and that write was sent again after the signal (a step's write moved
    traffic toward the canary after it: `_decide` withholds only what it decides after the signal), and only then
    did the interrupt write stable 100%. Now the wait ends at once, that write is not sent again, and the
    interrupt's is the only write of the route after the signal. The router's sleep is recorded, never slept; the
    signal is delivered (as promote's handler) at the wait's start."""
    from canary import kube

    clock = FakeClock()
    r = runner(api, "v2", clock)
    until, flying = _bound(r, 8)
    naps: list[float] = []
    writes_at_signal: list[int] = []
    grace_sleep = kube.retry_sleep(r.router.custom.api_client, naps.append)

    def sleep(seconds: float) -> None:
        if not r.stop.is_set():  # the 429's wait: SIGTERM now, as promote's handler
            until[0] = time.monotonic() + 8.0
            r.interrupted_by = "SIGTERM"
            r.stop.set()
            writes_at_signal.append(len(api.handler.writes))
            flying.signalled()
        grace_sleep(seconds)

    r.router.sleep = sleep
    armed: list[bool] = []

    def arm_at_split(state: rl.RolloutState) -> None:
        if state.phase == rl.PROGRESSING and not armed:
            armed.append(True)
            api.fail_next(429, methods=("PUT",), plural="virtualservices", retry_after=2)

    r.on_update = arm_at_split
    res, logs = _run(r)
    assert writes_at_signal, "no write met the 429"
    assert naps == [], naps  # the wait ended at the signal
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, res
    assert routes(api) == STABLE and "SIGTERM" in record(api)["reason"]
    after = [(m, p) for m, p, _ in api.handler.writes[writes_at_signal[0]:] if "/virtualservices/" in p]
    assert after == [("PUT", "/apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0")], after

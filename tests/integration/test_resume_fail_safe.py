"""Decision 131: a resumed or taken-over rollout whose first write fails.

`canary promote` re-run on a rollout in progress (paused, or its process gone) takes it over with one
guarded write (`Runner._take_over`), and a paused one is then resumed with another. Either write failing
(an API server down, a refusal, the grace after a signal spent) ended promote as if nothing had been
claimed: exit 3 with the API's error, the route still split 80/20, no `traffic.unsafe` and no stable 100%,
because the process only counted a rollout as its own once `_start` returned. Since decision 131 the
process answers for the split from the moment it decides to take it over: the fail-safe writes stable
100% (exit 3, recorded aborted), or says `traffic.unsafe` with the weights (exit 6) when it cannot.

Real components: the Kubernetes API emulator with the real IstioRouter and the real `kube.bound_by`;
fake clocks, never a timed wait.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import GraceSpent, TrafficUnsafe
from canary.sandbox.kubeapi import Fault
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import GROUP, api, record, routes, runner  # noqa: F401 - fixture
from tests.unit.test_runner_faults import virtual_time  # noqa: F401 - the fixture: the rollback budget, at once

pytestmark = pytest.mark.integration
ELSEWHERE = "promote#elsewhere:4026531836:123:ab"  # another machine's promote, which paused the rollout


def _paused_by_another_promote(api: Any, clock: FakeClock) -> None:
    """A rollout of v2 paused at 80/20 by a promote that ran on another machine."""
    first = runner(api, "v2", clock, on_interrupt="pause")
    first.on_update = lambda state: first.stop.set() if state.phase == rl.PROGRESSING else None
    assert first.run().exit_code == 130
    assert routes(api) == [[("stable", 80), ("canary", 20)]] and record(api)["phase"] == rl.PAUSED

    def elsewhere(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        ann["modelcanary.dev/rollout"] = json.dumps({**json.loads(ann["modelcanary.dev/rollout"]), "owner": ELSEWHERE})
    api.edit(GROUP, "virtualservices", "ml", "m0", elsewhere)


def _fail_writes_after(api: Any, writes: int, status: int, times: int) -> None:
    """Let `writes` more writes land, then answer the next `times` with `status`."""
    def arm() -> None:
        api.handler.faults.append(Fault(status, times, frozenset({"PUT", "PATCH", "POST"}), None))
    if writes == 0:
        arm()
        return
    left = [writes]

    def count() -> None:
        left[0] -= 1
        if left[0] == 0:
            arm()
        else:
            api.before_next_write(count)
    api.before_next_write(count)


@pytest.mark.parametrize("at", ["take-over", "resume"])
def test_a_resume_whose_write_fails_ends_at_stable_100_when_it_can(api: Any, at: str) -> None:
    """One refused write (403), on the take-over itself or on the resume after it landed: the route read
    80/20 afterwards and promote exited 3 with only the API's error. Now the fail-safe writes stable 100%
    over the record (the one read, or the take-over that landed), recorded aborted, exit 3."""
    clock = FakeClock()
    _paused_by_another_promote(api, clock)
    second = runner(api, "v2", clock)
    _fail_writes_after(api, 0 if at == "take-over" else 1, 403, 1)
    with structlog.testing.capture_logs() as logs:
        res = second.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res, [e["event"] for e in logs])
    assert routes(api) == [[("stable", 100), ("canary", 0)]]
    assert record(api)["phase"] == rl.ABORTED and record(api)["owner"] == second.owner
    assert "Forbidden" in record(api)["reason"] or "403" in record(api)["reason"], record(api)["reason"]
    assert [e for e in logs if e["event"] == "rollout.failed"], [e["event"] for e in logs]


@pytest.mark.parametrize("at", ["take-over", "resume"])
def test_a_resume_that_cannot_write_says_traffic_unsafe(api: Any, at: str, virtual_time: Any) -> None:
    """The API server refuses every write from the take-over (or the resume) on: the route stays 80/20.
    It was exit 3 with the API's error alone; now the critical `traffic.unsafe` names the route and its
    weights, and promote exits 6 (TrafficUnsafe)."""
    clock = FakeClock()
    _paused_by_another_promote(api, clock)
    second = runner(api, "v2", clock)
    _fail_writes_after(api, 0 if at == "take-over" else 1, 500, 10_000)
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe) as got:
        second.run()
    assert routes(api) == [[("stable", 80), ("canary", 20)]]
    unsafe = [e for e in logs if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20" and unsafe[0]["virtual_service"] == "m0", unsafe
    assert "traffic may still be split on ml/m0" in str(got.value)
    assert sum(virtual_time.slept) >= 19.0  # the fail-safe spent its whole budget (ROLLBACK_BUDGET_S) trying


def test_a_grace_spent_during_the_take_over_says_traffic_unsafe_not_nothing_moved(api: Any) -> None:
    """SIGTERM lands and its grace (`--interrupt-grace`) runs out just as the take-over is written: the write
    is not sent. Promote said "interrupted before the rollout began ... this promote moved no traffic to the
    canary", true of this process, while the route it was asked to resume stayed 80/20 with nobody running
    it. Now the split is said: `traffic.unsafe` with the weights last read, exit 6."""
    from canary.kube import bound_by

    clock = FakeClock()
    _paused_by_another_promote(api, clock)
    second = runner(api, "v2", clock)
    until = [math.inf]
    bound_by(second.router.custom.api_client, lambda: until[0],
             spent=lambda: "the 8 s after SIGTERM (--interrupt-grace) are spent")
    take_over = second._take_over

    def signalled(existing: rl.RolloutState) -> rl.RolloutState:
        second.interrupted_by, until[0] = "SIGTERM", 0.0
        second.stop.set()
        return take_over(existing)
    second._take_over = signalled  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe) as got:
        second.run()
    assert isinstance(got.value.__context__, GraceSpent) or "not sent" in str(got.value), str(got.value)
    assert "moved no traffic" not in str(got.value)
    assert routes(api) == [[("stable", 80), ("canary", 20)]]
    unsafe = [e for e in logs if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20", unsafe


@pytest.mark.parametrize("unanswered", ["the decided rollback", "the fail-safe's first attempt"])
def test_the_page_says_an_unanswered_stable_100_write_may_have_landed(api: Any, virtual_time: Any,
                                                                      unanswered: str) -> None:
    """Decision 131 (b). A stable-100% write with no answer (a 500 four times over: the router's tries) may
    have been applied; when a later attempt was refused (403), the critical `rollback.failed` reported that
    attempt alone, `write_landed: no: the write was refused`, while the route might already read 100/0.
    The page now says `unknown`, naming the earlier write, whether the unanswered one was the decided
    rollback (`Runner._apply`) or an attempt of the fail-safe's own (`reconcile.to_stable`)."""
    from canary.runner import _rolls_back

    clock = FakeClock()
    bad = runner(api, "v2", clock, slowdown=2.0)  # a canary the judge rolls back
    writes = frozenset({"PUT", "PATCH", "POST"})
    first = [Fault(500, bad.router.transient_attempts, writes, None)] if unanswered == "the decided rollback" else \
        [Fault(403, 1, writes, None), Fault(500, bad.router.transient_attempts, writes, None)]
    apply = bad._apply

    def armed(new: rl.RolloutState, actions: list[rl.Action], **kw: Any) -> rl.RolloutState:
        if _rolls_back(new):
            api.handler.faults.extend([*first, Fault(403, 10_000, writes, None)])
        return apply(new, actions, **kw)
    bad._apply = armed  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe):
        bad.run()
    pages = [e for e in logs if e["event"] == "rollback.failed"]
    assert pages and all(e["log_level"] == "critical" for e in pages), pages
    assert pages[-1]["write_landed"].startswith("unknown: an earlier stable-100% write had no answer"), pages[-1]
    assert "HTTP 500" in pages[-1]["write_landed"]

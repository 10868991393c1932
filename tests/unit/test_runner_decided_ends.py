"""A decided end whose own write fails: the fail-safe writes *that* end, not a generic abort.

Before: a canary shown bad (a check failed, a gate or probe refused it, a step's deadline passed)
whose stable-100% write failed once past the router's retries (an API server restarting for two
seconds) was sent to stable by the fail-safe as `aborted`, reason `failed: <the API error>`, exit
3: the breach was recorded nowhere and a pipeline read "infrastructure, try again" for a bad
canary. A promote resumed under an edited policy whose supersede write failed exited 3 ("could not
complete", which docs/reference/cli.md, "Exit codes" says means stable 100% once traffic moved) with the route still
split, no `traffic.unsafe`, and the record freshly taken over by a process that had exited. Each case is one kind;
the write fails as the real router's does past its retries (KubeUnavailable)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary.errors import KubeUnavailable, TrafficUnsafe
from canary.model import STABLE_ONLY, Target, Weights
from canary.policy import parse_policy
from canary.runner import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_ROLLED_BACK, Runner
from tests.fakes import FakeMetrics
from tests.unit.test_runner import POLICY, TARGET, make
from tests.unit.test_runner_faults import _VirtualTime, virtual_time  # noqa: F401  (fixture)


def _fail_ends(router: Any, phases: tuple[str, ...], times: int) -> dict[str, int]:
    """The next `times` stable-100% writes that record one of `phases` fail as an API server down."""
    real, calls = router.set_weights, {"n": 0}

    def flaky(target: Target, weights: Weights, **kw: Any) -> Any:
        recorded = json.loads(kw.get("state") or "{}").get("phase")
        if weights == STABLE_ONLY and recorded in phases and calls["n"] < times:
            calls["n"] += 1
            raise KubeUnavailable("503 Service Unavailable (the API server restarting)")
        return real(target, weights, **kw)

    router.set_weights = flaky
    return calls


@pytest.mark.parametrize("times", [1, 3])
def test_a_failing_canary_whose_rollback_write_fails_is_still_rolled_back(virtual_time: _VirtualTime,
                                                                        times: int) -> None:
    ctl, router, _, clock = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    calls = _fail_ends(router, (rl.ROLLED_BACK,), times)
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert calls["n"] == times
    assert res.exit_code == EXIT_ROLLED_BACK and res.state.phase == rl.ROLLED_BACK  # not exit 3, "infrastructure"
    recorded = json.loads(router.state)
    assert recorded["phase"] == rl.ROLLED_BACK and recorded["reason"].startswith("lat: ")  # the breach, not the 503
    assert router.weights == STABLE_ONLY and router.subsets["stable"] == "v1"
    failed = next(e for e in logs if e["event"] == "rollout.failed")
    assert failed["decided"] == rl.ROLLED_BACK and failed["decided_reason"].startswith("lat: ")
    done = [e for e in logs if e["event"] == "rollback.completed"]
    assert len(done) == 1 and done[0]["phase"] == rl.ROLLED_BACK and done[0]["weights"] == "100/0"
    assert sum(e["event"] == "rollback.started" for e in logs) == 1  # logged once, before the first write


def test_a_deadline_abort_whose_write_fails_keeps_its_reason(virtual_time: _VirtualTime) -> None:
    ctl, router, metrics, clock = make()
    metrics.down = True  # Prometheus unreachable: aborted at the step's deadline ("Prometheus unreachable: no verdict after ...")
    _fail_ends(router, (rl.ABORTED,), 1)
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED and router.weights == STABLE_ONLY
    assert json.loads(router.state)["reason"].startswith("Prometheus unreachable: no verdict after")


def test_an_interrupt_whose_abort_write_fails_is_still_recorded_interrupted(virtual_time: _VirtualTime) -> None:
    ctl, router, _, clock = make()
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    _fail_ends(router, (rl.ABORTED,), 1)
    res = ctl.run()
    assert res.exit_code == EXIT_INFRA and router.weights == STABLE_ONLY
    assert json.loads(router.state)["reason"] == "interrupted"


def _paused_at_first_step() -> tuple[Any, Any]:
    ctl, router, _, clock = make()
    ctl.on_update = lambda state: ctl.stop.set() if state.phase == rl.PROGRESSING else None
    ctl.on_interrupt = "pause"
    assert ctl.run().exit_code == EXIT_INTERRUPTED and router.weights == Weights(90, 10)
    return router, clock


def _edited_policy() -> Any:
    raw = {
        "steps": [20, 50, 100],  # steps edited since the rollout began: a resume supersedes it
        "analysis": {"interval": "10s", "look_every": "2s", "min_canary_requests": 50, "alpha": 0.01},
        "failure": {"max_failed_looks": 2, "no_data_deadline": "20s"},
        "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20},
                   {"name": "err", "kind": "error_rate", "max_increase_points": 1}],
    }
    assert POLICY.steps != tuple(raw["steps"])
    return parse_policy(raw)


def test_a_supersede_whose_write_fails_once_still_reaches_stable(virtual_time: _VirtualTime) -> None:
    router, clock = _paused_at_first_step()
    _fail_ends(router, (rl.ABORTED,), 1)
    ctl = Runner(policy=_edited_policy(), target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock)
    res = ctl.run()
    assert router.weights == STABLE_ONLY and res.exit_code == EXIT_INFRA  # it used to exit 3 at 90/10
    recorded = json.loads(router.state)
    assert recorded["phase"] == rl.ABORTED and recorded["reason"].startswith("superseded: ")


def test_a_supersede_that_cannot_be_written_says_traffic_is_unsafe(virtual_time: _VirtualTime) -> None:
    router, clock = _paused_at_first_step()
    _fail_ends(router, (rl.ABORTED,), 10**6)
    ctl = Runner(policy=_edited_policy(), target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock)
    with structlog.testing.capture_logs() as logs, pytest.raises(TrafficUnsafe):  # exit 6, not 3 "could not complete"
        ctl.run()
    assert router.weights == Weights(90, 10)
    assert any(e["event"] == "traffic.unsafe" for e in logs) and ctl.rollback_failed


@pytest.mark.parametrize("times", [1, 3])
def test_a_passed_promotion_whose_last_write_fails_is_finished_not_undone(virtual_time: _VirtualTime,
                                                                         times: int) -> None:
    """Every step passed and the stable subset already selects v2 (the canary serves all traffic): the
    promotion's last write (100/0, `promoted`) fails past the router's retries. The fail-safe finishes
    the promotion, as an interrupt and the sweep do (exit 0, v2 stable), instead of moving all traffic
    back to v1 and recording `aborted`, exit 3, for a canary shown good at every step."""
    ctl, router, _, clock = make()
    calls = _fail_ends(router, (rl.PROMOTED,), times)
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert calls["n"] == times
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED
    assert router.weights == STABLE_ONLY and router.subsets == {"stable": "v2", "canary": "v2"}
    assert json.loads(router.state)["phase"] == rl.PROMOTED
    failed = next(e for e in logs if e["event"] == "rollout.failed")
    assert failed["decided"] == rl.PROMOTED and failed["phase"] == rl.PROMOTING
    assert sum(e["event"] == "rollout.promoted" for e in logs) == 1
    # no page for a promotion that lands: the canary served all traffic throughout (not split)
    assert not [e for e in logs if e["log_level"] == "critical" or e["event"].startswith("rollback.")]


def test_a_promotion_that_cannot_be_finished_gives_the_old_version_all_traffic(virtual_time: _VirtualTime) -> None:
    """The promotion's last write keeps failing for the whole budget: the old version gets 100% (the
    stable subset pointed back at v1 first), `promotion.unfinished`, aborted, exit 3."""
    ctl, router, _, clock = make()
    _fail_ends(router, (rl.PROMOTED,), 10_000)
    with structlog.testing.capture_logs() as logs:
        res = ctl.run()
    assert res.exit_code == EXIT_INFRA and res.state.phase == rl.ABORTED
    assert router.weights == STABLE_ONLY and router.subsets["stable"] == "v1"
    events = [e["event"] for e in logs]
    assert "promotion.unfinished" in events and "promotion.retrying" in events
    # the promotion's failed writes are not a `rollback.failed` ("act by hand"): the old version's 100% landed
    assert not [e for e in logs if e["log_level"] == "critical"] and "rollback.retrying" not in events

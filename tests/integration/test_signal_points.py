"""A CD job cancelled at every write of `canary promote`: SIGTERM landing right before each write is sent and right
after it lands, with the default `--on-interrupt rollback`, and then the pipeline's step run again (decision 359).

As test_kill_points.py does for SIGKILL, deterministically: a router wrapper sets the Runner's stop event (what
the signal handler does, cli.py `interrupted`) at write k, so no outcome depends on when a real signal lands.
Real Kubernetes API emulator and IstioRouter; metrics from the fake provider on a fake clock that sees the
cluster's weights (tests/support/killpoints.py). What must hold at every point: the interrupted run ends at stable
100% with its record agreeing (`aborted`, exit 3, before the judge decided; the decided end after it: a bad v3
`rolled_back`, exit 1, a promotion whose every step passed `promoted`, exit 0), never a bad v3 promoted; and the
re-run ends right: it reports an end recorded (nothing written) and starts an aborted rollout again."""

from __future__ import annotations

import json
from typing import Any

import pytest
import tenacity

from canary import rollout as rl
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Result, Runner
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import RPS, SLOWDOWN, LiveWeights, cluster_state, problems

pytestmark = pytest.mark.integration


class Signalled:
    """A TrafficRouter whose k-th write has SIGTERM land `when` ("before" it is sent, "after" it landed)."""

    def __init__(self, inner: Any, k: int | None, when: str, log: list[str]) -> None:
        self.inner, self.k, self.when, self.log = inner, k, when, log
        self.runner: Runner | None = None

    def _at(self, when: str) -> None:
        if self.k is not None and len(self.log) + 1 == self.k and when == self.when and self.runner is not None:
            self.runner.interrupted_by = "SIGTERM"
            self.runner.stop.set()

    def inspect(self, target: Target) -> Any:
        return self.inner.inspect(target)

    def set_weights(self, target: Target, weights: Any, *, state: str, expect_state: Any = ..., **kw: Any) -> Any:
        self._at("before")
        out = self.inner.set_weights(target, weights, state=state, expect_state=expect_state, **kw)
        self._at("after")
        self.log.append(f"weights {weights} {json.loads(state)['phase']}")
        return out

    def point_subset(self, target: Target, subset: str, version: str, **kw: Any) -> None:
        self._at("before")
        self.inner.point_subset(target, subset, version, **kw)
        self._at("after")
        self.log.append(f"subset {subset}={version}")

    def record_event(self, target: Target, *, reason: str, message: str, warning: bool = False) -> bool:
        return bool(self.inner.record_event(target, reason=reason, message=message, warning=warning))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def promote(client: Any, version: str, clock: FakeClock, k: int | None, when: str, log: list[str], *,
            api: Any) -> Result:
    target = Target(namespace="ml", virtual_service=fleet.model(0), model=fleet.model(0), stable_version="",
                    canary_version=version)
    real = IstioRouter(client, wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(real, target, api=api), clock, slowdown=lambda t: SLOWDOWN[version], rps=RPS)  # type: ignore[arg-type]
    router = Signalled(real, k, when, log)
    runner = router.runner = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router,
                                    metrics=metrics, clock=clock)
    return runner.run()


def rl_exit(phase: str) -> int:
    return {rl.PROMOTED: 0, rl.ROLLED_BACK: 1, rl.ABORTED: 3}.get(phase, -1)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_sigterm_at_every_write_ends_at_stable_and_a_re_run_ends_right(version: str) -> None:
    api = fleet.start_api(1)
    client = api.api_client()
    writes: list[str] = []
    try:
        promote(client, version, FakeClock(), None, "before", writes, api=api)
    finally:
        client.close()
        api.stop()
    assert len(writes) >= 6, writes
    wrong = []
    for k in range(1, len(writes) + 1):
        for when in ("before", "after"):
            api = fleet.start_api(1)
            client = api.api_client()
            try:
                clock = FakeClock()
                first = promote(client, version, clock, k, when, [], api=api)
                weights, record, _, _ = cluster_state(api)
                at = f"SIGTERM {when} write {k} ({writes[k - 1]})"
                if weights != [100, 0] or record.get("phase") != first.state.phase:
                    wrong.append(f"{at}: left {weights} recorded {record.get('phase')}, ended {first.state.phase}")
                if first.exit_code != rl_exit(first.state.phase) or (version == "v3" and first.state.phase == rl.PROMOTED):
                    wrong.append(f"{at}: {first.state.phase} exit {first.exit_code}")
                again = promote(client, version, clock, None, "before", [], api=api)
                wrong += [f"{at}, then re-run: {p}" for p in problems(api, version, again.state.phase)]
            finally:
                client.close()
                api.stop()
    assert not wrong, "\n".join(wrong)

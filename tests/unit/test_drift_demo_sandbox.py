"""`run_drift_scenario`'s two ways to a sandbox (decision 805): the demo's own, and a started one that tests share.

The end-to-end test (tests/e2e/test_scenarios.py) runs the scenario's evaluations in the file's shared classic
sandbox, rearmed; `canary demo --scenario data-drift` starts a sandbox of its own, which no end-to-end test starts any
longer. What that sandbox is asked to be is checked here, its start replaced by a stop before any process
runs; the start itself is every end-to-end test's. A started sandbox given configuration is refused, naming it, and
one whose rearm fails gets its fault trigger back, so that the next rollout in it still has its fault injected.
"""
from __future__ import annotations

import shutil
from types import SimpleNamespace
from typing import Any

import pytest

from canary.sandbox import demo, drift_demo, env


class _Stop(Exception):
    pass


def test_the_demo_starts_a_data_drift_sandbox_of_its_own_that_only_the_run_shifts(monkeypatch: Any) -> None:
    asked: list[env.Sandbox] = []

    def start(self: env.Sandbox) -> env.Sandbox:
        asked.append(self)
        raise _Stop

    monkeypatch.setattr(env.Sandbox, "start", start)
    with pytest.raises(_Stop):
        drift_demo.run_drift_scenario(rate=70.0, batch=2)
    (sb,) = asked
    shutil.rmtree(sb.workdir, ignore_errors=True)
    # the scenario's own sandbox: no push of weights injects its shift (the run does), the watcher runs, as asked
    assert (sb.scenario, sb.fault_at, sb.watch, sb.rate, sb.batch) == ("data-drift", "manual", True, 70.0, 2)


@pytest.mark.parametrize("run", [drift_demo.run_drift_scenario, lambda **kw: demo.run_scenario("slow", **kw)],
                         ids=["run_drift_scenario", "run_scenario"])
def test_a_started_sandbox_given_configuration_is_refused_untouched(run: Any) -> None:
    started = SimpleNamespace(fault_at="traffic", loadgen=None)
    with pytest.raises(ValueError, match=r"a started sandbox keeps its own configuration: \['batch', 'workdir'\]"):
        run(sandbox=started, batch=2, workdir=None)
    assert started.fault_at == "traffic"


def test_a_shared_sandbox_whose_rearm_fails_keeps_its_fault_trigger() -> None:
    def rearm(scenario: str, *, rate: float) -> None:
        assert started.fault_at == "manual"  # during the run, no push of weights injects anything
        raise RuntimeError("the watcher did not push the seeded weights")

    started = SimpleNamespace(fault_at="traffic", loadgen=None, rearm=rearm)
    with pytest.raises(RuntimeError, match="seeded weights"):
        drift_demo.run_drift_scenario(sandbox=started)
    assert started.fault_at == "traffic"  # the next rollout in it has its fault injected at its first traffic

"""Every command that acts on a rollout in progress acts on the DestinationRule it recorded.

A rollout claimed with `--destination-rule m0-dr` (the VirtualService m0 has no DestinationRule of
its own name) records `destination_rule: m0-dr`; the sweep used it, nothing else did. Before:
`canary rollback m0` (no flag, as on-call types it at 3 am) wrote 100/0, then failed to find
DestinationRule m0 for the stable subset's check and exited 3 with the critical `rollback.failed`
("check what it selects") although the rollback had fully landed; `canary status` and `canary
pause/resume` failed on the missing object; a `canary promote` re-run without the flag exited on
it too, and with another DestinationRule of the same host named it would have judged, and
re-pointed, the subsets of an object the rollout never claimed. Now the record's DestinationRule is
taken when none is named, and another one named is refused before any write (exit 2), as decision
82 does for the route.

Real Kubernetes API emulator and IstioRouter; promote runs in-process on a fake clock with metrics
that see the cluster's weights.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import tenacity
from typer.testing import CliRunner

from canary import rollout as rl
from canary.cli import app
from canary.errors import ConfigError
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Runner
from canary.sandbox.kubeapi import KubeAPIServer
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import LiveWeights

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = fleet.start_api(1)
    try:
        dr = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0"))
        dr["metadata"] = {"name": "m0-dr", "namespace": "ml"}
        api.handler.put_object(dr)
        with api.handler.lock:  # the VirtualService's own name names no DestinationRule
            key = (GROUP, "destinationrules", "ml", "m0")
            api.handler._delete(key, api.handler.objects[key])
        yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    finally:
        api.stop()


def runner(api: KubeAPIServer, clock: FakeClock, *, destination_rule: str = "", **kw: Any) -> Runner:
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2",
                    destination_rule=destination_rule)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(router, replace(target, destination_rule="m0-dr")), clock,
                          slowdown=lambda t: 1.0, rps=1000.0)
    return Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics, clock=clock,
                  **kw)


def paused_on_m0_dr(api: KubeAPIServer) -> FakeClock:
    """`canary promote m0 --destination-rule m0-dr`, interrupted with --on-interrupt pause at 80/20."""
    clock = FakeClock()
    r = runner(api, clock, destination_rule="m0-dr", on_interrupt="pause")
    r.on_update = lambda s: r.stop.set() if s.phase == rl.PROGRESSING else None
    assert r.run().exit_code == 130
    assert record(api)["destination_rule"] == "m0-dr" and weights(api) == [80, 20]
    return clock


def record(api: KubeAPIServer) -> dict[str, Any]:
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    return json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])


def weights(api: KubeAPIServer) -> list[int]:
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def cli(kc: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "m0", "-n", "ml", "--kubeconfig", str(kc)])


def test_oncall_commands_without_the_flag_act_on_the_recorded_destination_rule(cluster: Any) -> None:
    api, kc = cluster
    paused_on_m0_dr(api)
    res = cli(kc, "status", "-o", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["canary_subset_version"] == "v2"
    res = cli(kc, "resume")
    assert res.exit_code == 0 and record(api)["phase"] == rl.PROGRESSING, res.output
    res = cli(kc, "pause")
    assert res.exit_code == 0 and record(api)["phase"] == rl.PAUSED, res.output
    res = cli(kc, "rollback", "--reason", "p95 alert")
    assert res.exit_code == 0, res.output  # exit 3 and a critical `rollback.failed` for a rollback that landed
    assert weights(api) == [100, 0] and record(api)["phase"] == rl.ROLLED_BACK
    dr = api.get(GROUP, "destinationrules", "ml", "m0-dr")
    assert {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}["stable"] == "v1"
    assert api.get(GROUP, "destinationrules", "ml", "m0") is None  # nothing created or written elsewhere


def test_oncall_commands_naming_another_destination_rule_are_refused(cluster: Any) -> None:
    api, kc = cluster
    paused_on_m0_dr(api)
    other = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0-dr"))
    other["metadata"] = {"name": "m0-other", "namespace": "ml"}
    api.handler.put_object(other)
    before = api.get(GROUP, "virtualservices", "ml", "m0")
    for command in (["resume"], ["rollback", "--reason", "x"]):
        res = cli(kc, *command, "--destination-rule", "m0-other")
        assert res.exit_code == 2 and "m0-dr" in res.output, res.output
    assert api.get(GROUP, "virtualservices", "ml", "m0") == before


def test_a_promote_rerun_without_the_flag_resumes_on_the_recorded_destination_rule(cluster: Any) -> None:
    api, kc = cluster
    clock = paused_on_m0_dr(api)
    r = runner(api, clock)  # re-run with no --destination-rule: it exited on "m0 not found"
    res = r.run()  # judged to its end on m0-dr's subsets (the fake metrics' verdict is not the point)
    assert res.state.phase in (rl.PROMOTED, rl.ROLLED_BACK) and "not found" not in res.state.reason, res.state.reason
    assert r.target.dr_name == "m0-dr" and weights(api) == [100, 0] and record(api)["look"] > 1
    assert api.get(GROUP, "destinationrules", "ml", "m0") is None


def test_a_promote_rerun_naming_another_destination_rule_exits_2_before_any_write(cluster: Any) -> None:
    """Another DestinationRule of the same host named: it would have been judged and re-pointed."""
    api, kc = cluster
    clock = paused_on_m0_dr(api)
    other = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "m0-dr"))
    other["metadata"] = {"name": "m0-other", "namespace": "ml"}
    api.handler.put_object(other)
    writes = len(api.writes)
    with pytest.raises(ConfigError, match="m0-dr"):
        runner(api, clock, destination_rule="m0-other").run()
    assert len(api.writes) == writes and weights(api) == [80, 20] and record(api)["phase"] == rl.PAUSED

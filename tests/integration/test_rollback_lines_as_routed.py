"""`canary rollback`'s lines say the split the route was read at, not the one its record says (decision 209).

A route edited by hand under a rollout recorded at 75/25: the stable weight deleted (Istio then sends every
request to the canary), or a third destination added at 50/25/25. The rollback wrote stable 100% as it should,
but `rollback.started` and `rollback.completed` said `from_weights: 75/25` (and the start `weights: 75/25`),
the record's: on-call read a quarter of the traffic on the canary where all of it, or half, had been. They now
say the route's split, with `recorded_weights` (the record's) and `written_as` (the weights as written) beside
it. The strict Kubernetes API emulator holds the objects; the CLI is the real one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.sandbox.kubeapi import KubeAPIServer
from tests.support.kube import PROGRESSING_RECORD

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"


def _route(api: KubeAPIServer, weights: list[int | None], *, third: str = "shadow") -> None:
    vs = copy.deepcopy(api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model"))
    route = vs["spec"]["http"][0]["route"]
    if len(weights) == 3:
        route.append({"destination": {**route[0]["destination"], "subset": third}})
    for dest, w in zip(route, weights):
        dest.pop("weight", None)
        if w is not None:
            dest["weight"] = w
    vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}
    api.handler.put_object(vs)


def _rollback(api: KubeAPIServer, kubeconfig: Path) -> dict[str, dict[str, Any]]:
    r = CliRunner().invoke(app, ["rollback", "rec-model", "-n", "ml", "--reason", "pager", "-o", "json",
                                 "--kubeconfig", str(kubeconfig)])
    assert r.exit_code == 0, r.output
    route = api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model")["spec"]["http"][0]["route"]
    assert [d.get("weight", 0) for d in route][:2] == [100, 0] and all(d.get("weight", 0) == 0 for d in route[1:])
    lines = [json.loads(line) for line in r.output.splitlines() if line.startswith('{"') and '"event"' in line]
    return {e["event"]: e for e in lines if e["event"] in ("rollback.started", "rollback.completed")}


@pytest.mark.parametrize(("weights", "seen", "written"), [
    ([None, 25], "0/100", "stable=(missing) canary=25"),  # Istio: a missing weight is 0
    ([50, 25, 25], "50/50", "stable=50 others=[25, 25]"),
    ([70, 20], "78/22", "stable=70 canary=20"),
])
def test_a_rollback_says_the_split_it_ended_not_the_recorded_one(
        istio_cluster: Any, weights: list[int | None], seen: str, written: str) -> None:
    api, kc = istio_cluster
    _route(api, weights)
    said = _rollback(api, kc)
    start, done = said["rollback.started"], said["rollback.completed"]
    assert start["from_weights"] == seen and start["weights"] == seen and done["from_weights"] == seen
    for line in (start, done):
        assert line["recorded_weights"] == "75/25" and line["written_as"] == written


def test_a_copy_of_the_stable_destination_is_said_as_stable(istio_cluster: Any) -> None:
    # 100/0/100, the third a copy of the stable destination: Istio sends nothing to the canary; the rollback said
    # "from_weights 50/50", the copy counted with the canary's (decision 218). It writes 100/0/0.
    api, kc = istio_cluster
    _route(api, [100, 0, 100], third="stable")
    said = _rollback(api, kc)
    route = api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model")["spec"]["http"][0]["route"]
    assert [d["weight"] for d in route] == [100, 0, 0]
    for line in (said["rollback.started"], said["rollback.completed"]):
        assert line["from_weights"] == "100/0" and line["recorded_weights"] == "75/25"
        assert line["written_as"] == "stable=[100, 100] others=[0]"


def test_a_route_that_carries_its_record_says_it_as_before(istio_cluster: Any) -> None:
    api, kc = istio_cluster
    _route(api, [75, 25])
    said = _rollback(api, kc)
    for line in said.values():
        assert line["from_weights"] == "75/25" and "recorded_weights" not in line and "written_as" not in line


@pytest.mark.parametrize("emptied", [False, True])
def test_a_route_without_its_stable_destination_gets_one_at_100(istio_cluster: Any, emptied: bool) -> None:
    # the stable destination deleted by hand (every request to the canary), or no destination left: the rollback
    # exited 6 ("stable 100% cannot be written"); it now adds the stable destination at 100 (decision 219)
    api, kc = istio_cluster
    vs = copy.deepcopy(api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model"))
    route = vs["spec"]["http"][0]["route"]
    del route[:len(route) if emptied else 1]
    vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}
    api.handler.put_object(vs)
    r = CliRunner().invoke(app, ["rollback", "rec-model", "-n", "ml", "--reason", "pager", "-o", "json",
                                 "--kubeconfig", str(kc)])
    assert r.exit_code == 0, r.output
    route = api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model")["spec"]["http"][0]["route"]
    on = [(d["destination"]["subset"], d["weight"]) for d in route]
    assert on == ([] if emptied else [("canary", 0)]) + [("stable", 100)]
    lines = [json.loads(line) for line in r.output.splitlines() if line.startswith('{"') and '"event"' in line]
    done = next(e for e in lines if e["event"] == "rollback.completed")
    assert done["recorded_weights"] == "75/25" and done["written_as"].startswith("stable=(missing)")
    if not emptied:
        assert done["from_weights"] == "0/100"

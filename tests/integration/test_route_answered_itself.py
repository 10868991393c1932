"""A rollout's route edited into a `redirect` (or a `directResponse`) mid-rollout (decision 522).

The route then has no destination (Istio refuses `route` beside either): no request reaches the canary by it.
Every stable-100% write raised "route is missing or empty" and, with a rollout recorded, TrafficUnsafe:
`canary rollback` exited 6 with the critical `traffic.unsafe`, and `canary status` exited 6 showing nothing.
The rollback now ends the rollout (record written), writing nothing on the route: no destination added beside
the redirect, the person's redirect kept. The strict Kubernetes API emulator holds the objects; the CLI is the
real one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests.support.kube import PROGRESSING_RECORD

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
ANSWERS = {"redirect": {"uri": "/maintenance", "redirectCode": 302},
           "directResponse": {"status": 503, "body": {"string": "down for maintenance"}}}


def _answer_itself(api: Any, how: str) -> dict[str, Any]:
    vs = copy.deepcopy(api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model"))
    route = vs["spec"]["http"][0]
    del route["route"]
    route[how] = ANSWERS[how]
    vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}
    api.handler.put_object(vs)
    return copy.deepcopy(route)


def _cli(kubeconfig: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig)])


@pytest.mark.parametrize("how", ["redirect", "directResponse"])
def test_a_rollback_on_a_route_answering_itself_ends_the_rollout_and_keeps_the_route(
        istio_cluster: Any, how: str) -> None:
    api, kc = istio_cluster
    edited = _answer_itself(api, how)
    shown = _cli(kc, "status", "-o", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["routes_nothing"] == how and doc["shares"] == {"stable": 0, "canary": 0, "others": 0}
    assert doc["weights"] == {"stable": 0, "canary": 0} and doc["rollout"]["phase"] == "progressing"
    text = _cli(kc, "status").output
    assert f"answers every request with its {how}" in text and "none to the canary" in text, text
    assert "`canary rollback` ends the rollout writing nothing on the route" in text
    r = _cli(kc, "rollback", "--reason", "pager", "-o", "json")
    assert r.exit_code == 0, r.output  # was 6: "spec.http[0].route is missing or empty", traffic.unsafe
    assert "traffic.unsafe" not in r.output
    vs = api.handler.get_object(GROUP, "virtualservices", "ml", "rec-model")
    assert vs["spec"]["http"][0] == edited  # nothing added beside the redirect, nothing taken from it
    record = json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])
    assert record["phase"] == "rolled_back" and record["weights"] == {"stable": 100, "canary": 0}
    lines = [json.loads(line) for line in r.output.splitlines() if line.startswith('{"') and '"event"' in line]
    done = next(e for e in lines if e["event"] == "rollback.completed")
    assert done["from_weights"] == "100/0" and done["recorded_weights"] == "75/25"  # no request to the canary

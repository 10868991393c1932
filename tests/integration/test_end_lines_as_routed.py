"""The sweep's and the controller's ends say the split they ended, not the one the record says (decision 212).

Decision 209 made `canary rollback` say the route's split; the sweep (`rollout.abandoned`, `rollback.failed`,
`rollout.aborted`) and the reconcile step the controller and promote share (`reconcile.decide`: an operator's
rollback, a foreign edit's abort, a failed gate) still said the record's: a route edited by hand under a rollout
recorded at 75/25 (the stable weight deleted: every request on the canary; 70/20; a third destination) was
said "from_weights: 75/25". Against the strict Kubernetes API emulator, with the router every command uses."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import structlog.testing
import tenacity

from canary import rollout as rl
from canary import sweep
from canary.logs import get as get_logger
from canary.model import Weights
from canary.reconcile import Observation, decide
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.integration.test_sweep_attack import OTHER_HOST

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
EDITS = [([None, 25], "0/100", "stable=(missing) canary=25"),  # Istio: a missing weight is 0
         ([50, 25, 25], "50/50", "stable=50 others=[25, 25]"),
         ([70, 20], "78/22", "stable=70 canary=20")]


@pytest.fixture
def cluster() -> Any:
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        yield api, IstioRouter(client, wait=tenacity.wait_none())
    finally:
        client.close()
        api.stop()


def _recorded(api: Any, weights: list[int | None]) -> rl.RolloutState:
    """m0 under a promote's rollout recorded at 75/25, its route's weights then edited by hand to `weights`."""
    now = time.time()
    state = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(75, 25), step=1, started_at=now - 1000, updated_at=now - 1000,
                            step_started_at=now - 1000, owner=OTHER_HOST, heartbeat_s=10.0)
    vs = copy.deepcopy(api.handler.get_object(GROUP, "virtualservices", "ml", "m0"))
    route = vs["spec"]["http"][0]["route"]
    if len(weights) == 3:
        route.append({"destination": {"host": route[0]["destination"]["host"], "subset": "shadow"}})
    for dest, w in zip(route, weights):
        dest.pop("weight", None)
        if w is not None:
            dest["weight"] = w
    vs["metadata"].setdefault("annotations", {})["modelcanary.dev/rollout"] = state.to_json()
    api.handler.put_object(vs)
    return state


def _found(router: IstioRouter) -> sweep.Found:
    (found,) = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned
    return found


def _weights(api: Any) -> list[int]:
    return [d.get("weight", 0) for d in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


@pytest.mark.parametrize(("weights", "seen", "written"), EDITS)
def test_the_sweep_says_the_split_it_ended(cluster: Any, weights: list[int | None], seen: str, written: str) -> None:
    api, router = cluster
    _recorded(api, weights)
    with structlog.testing.capture_logs() as logs:
        out = sweep.end(router, _found(router), log=get_logger(), now=time.time())
    assert out.phase == rl.ABORTED and _weights(api)[:2] == [100, 0] and not any(_weights(api)[1:])
    said = [e for e in logs if "from_weights" in e]
    assert {e["event"] for e in said} >= {"rollout.abandoned", "rollout.aborted"}, logs
    for line in said:
        assert line["from_weights"] == seen and line["recorded_weights"] == "75/25" and line["written_as"] == written


@pytest.mark.parametrize(("weights", "seen", "written"), EDITS[1:])
def test_the_sweeps_page_says_the_split_left(cluster: Any, weights: list[int | None], seen: str, written: str) -> None:
    api, router = cluster
    _recorded(api, weights)
    found = _found(router)
    api.fail_next(500, times=20, methods=("PUT", "PATCH"), plural="virtualservices")
    with structlog.testing.capture_logs() as logs, pytest.raises(Exception):
        sweep.end(router, found, log=get_logger(), now=time.time())
    (failed,) = [e for e in logs if e["event"] == "rollback.failed" and "end_cause" in e]
    assert failed["from_weights"] == seen and failed["recorded_weights"] == "75/25" and failed["written_as"] == written


def test_a_route_that_carries_its_record_is_said_as_before(cluster: Any) -> None:
    api, router = cluster
    _recorded(api, [75, 25])
    with structlog.testing.capture_logs() as logs:
        sweep.end(router, _found(router), log=get_logger(), now=time.time())
    (abandoned,) = [e for e in logs if e["event"] == "rollout.abandoned"]
    assert abandoned["from_weights"] == "75/25" and "recorded_weights" not in abandoned and "written_as" not in abandoned


@pytest.mark.parametrize(("weights", "seen", "written"), EDITS)
@pytest.mark.parametrize("how", ["operator", "foreign_edit"])
def test_the_controllers_end_says_the_split_it_ended(cluster: Any, weights: list[int | None], seen: str,
                                                     written: str, how: str) -> None:
    """The controller's (and promote's) reconcile step: a CanaryRollout's `action: rollback`, or a foreign edit
    under `on_foreign_edit: abort`, decided on the record and the route read together."""
    api, router = cluster
    state = _recorded(api, weights)
    status = router.inspect_any(_found(router).target(), for_stable=True)
    now = time.time()
    seen_ = Observation(status=status, command=rl.Rollback(now, "operator: pager") if how == "operator" else None,
                        on_foreign_edit="abort", virtual_service="ml/m0")
    steps = decide(None, state, seen_, now)  # type: ignore[arg-type]
    end = [a for _, acts in steps for a in acts if isinstance(a, rl.Emit) and "from_weights" in a.fields]
    assert {a.event for a in end} in ({"rollback.started", "rollback.completed"},
                                      {"rollout.aborting", "rollout.aborted"}), steps
    for a in end:
        assert a.fields["from_weights"] == seen and a.fields["recorded_weights"] == "75/25"
        assert a.fields["written_as"] == written

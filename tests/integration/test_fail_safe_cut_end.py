"""The runner's fail-safe knows its own end cut to fit beside other annotations (decision 568).

A stable-100% write may land its record cut to the room the object's other annotations leave (decision 563), so
the text on the route is not the text the runner built. The fail-safe recognised its own last write by that exact
text (`_written`, `_sent`): a decided rollback whose cut record landed and whose answer was lost read as someone
else's end, adopted as it stood; the end's own writes after it (its stable subset's pointing) and its
`rollback.completed` line never came. Real Kubernetes API emulator and IstioRouter; the lost answer is injected at
one fixed point (right after the write lands), never timed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog.testing
import tenacity

from canary import rollout as rl
from canary.errors import KubeUnavailable
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Runner
from canary.sandbox.kubeapi import ANNOTATIONS_LIMIT
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import LiveWeights

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
KEY = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(1)
    yield server
    server.stop()


def _room_for(api: Any, text: str, cut: bool) -> None:
    """Another tool's annotation grown to leave the record the room the route's record takes now (the step's,
    shorter than the end `text`: `cut`), or room enough for `text`."""
    def grow(vs: dict[str, Any]) -> None:
        notes = vs["metadata"].setdefault("annotations", {})
        notes.pop(KEY, None)
        used = sum(len(k.encode()) + len(v.encode()) for k, v in notes.items() if k != "modelcanary.dev/rollout")
        record = len(notes.get("modelcanary.dev/rollout", ""))
        room = record if cut else len(text) + 4_000
        notes[KEY] = "x" * (ANNOTATIONS_LIMIT - used - len("modelcanary.dev/rollout") - room - len(KEY))
    api.edit(GROUP, "virtualservices", "ml", "m0", grow)


@pytest.mark.parametrize("cut", [True, False], ids=["cut", "whole"])
def test_a_rollback_whose_cut_record_landed_unanswered_is_finished_as_the_runners_own(api: Any, cut: bool) -> None:
    """A bad canary's rollback: its stable-100% write lands (cut, beside another tool's grown annotation) and its
    answer is lost. The fail-safe reads the route, finds the end it wrote, and finishes it as decided: the stable
    subset pointed back (it had been pointed at the canary's version by hand), `rollback.completed`, exit 1. Without
    `carried` it took the cut end for an on-call's, kept it, and left the stable subset on the bad version."""
    clock = FakeClock()
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: 1.6, rps=1000.0)
    v2 = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics, clock=clock)
    real, lost = router.set_weights, []

    def set_weights(t: Target, w: Any, *, state: str, **kw: Any) -> Any:
        if json.loads(state)["phase"] != rl.ROLLED_BACK or lost:
            return real(t, w, state=state, **kw)
        _room_for(api, state, cut)
        # the stable subset pointed at the canary's version by hand meanwhile: the end's last write points it back
        api.edit(GROUP, "destinationrules", "ml", "m0", lambda dr: next(
            s for s in dr["spec"]["subsets"] if s["name"] == "stable")["labels"].update(version="v2"))
        real(t, w, state=state, **kw)
        lost.append(state)
        raise KubeUnavailable("the API server did not answer in time (the write may have landed)")

    router.set_weights = set_weights  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        res = v2.run()
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    text = vs["metadata"]["annotations"]["modelcanary.dev/rollout"]
    assert lost and rl.carried(text, lost[0]) and (len(text) < len(lost[0])) == cut
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100, 0]
    assert res.exit_code == 1 and res.state.phase == rl.ROLLED_BACK, res.state.reason
    dr = api.get(GROUP, "destinationrules", "ml", "m0")
    assert {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}["stable"] == "v1"
    assert [e for e in logs if e["event"] == "rollback.completed"]

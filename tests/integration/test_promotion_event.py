"""A promotion's Kubernetes Event names the version now serving: its "weights 100/0", read alone in `kubectl get
events` or `kubectl describe virtualservice`, says the canary got nothing (the review of 7cdfc43f)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from canary import rollout as rl
from canary.kube import api_client
from canary.model import Target, Weights
from canary.reconcile import event_message, execute
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import KubeAPIServer
from tests import fleet
from tests.support.kube import shipped_istio_objects

pytestmark = pytest.mark.integration
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1", canary_version="v2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    api.stop()


def test_the_promotions_event_names_the_version_now_serving_all_traffic(cluster: Any) -> None:
    from structlog import get_logger

    api, kc = cluster
    router = IstioRouter(api_client(kubeconfig=str(kc)))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                            weights=Weights(0, 100), step=2, started_at=1.0, step_started_at=2.0)
    router.set_weights(TARGET, Weights(0, 100), state=state.to_json())
    new, actions = rl.finish_promotion(state, 10.0)
    execute(router, TARGET, new, actions, log=get_logger(component="test"), expect=state.to_json())
    (event,) = [e for e in api.list("", "events", "ml") if e.get("reason") == "RolloutPromoted"]
    assert event["message"].startswith("rollout.promoted: weights 100/0 (v2 serves all traffic)"), event["message"]


def test_other_events_read_as_before() -> None:
    line = rl.Emit("rollback.completed", {"reason": "latency"}, warning=True)
    assert event_message(line, Weights(100, 0)) == "rollback.completed: weights 100/0 latency"

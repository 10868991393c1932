"""On-call commands act on every VirtualService a rollout could drive, from any weights (issue 8).

`canary status/pause/resume/rollback` against the strict Kubernetes API
emulator, run in-process (the real-CLI subprocess runs are in test_cli_ops.py):
a VirtualService with several HTTP routes (with --route, or found from the
subsets and the recorded rollout), and weights Istio accepts or normalises but a
rollout never writes (1/1, 0/0, missing, negative). `rollback` must always end
at 100/0 on the route, exit 0, and touch nothing else.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import rollout as rl
from canary.cli import app
from canary.errors import TargetError
from canary.kube import api_client
from canary.model import Target, Weights
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import KubeAPIServer
from tests import fleet
from tests.support.kube import shipped_istio_objects

pytestmark = pytest.mark.integration
GROUP, VS = "networking.istio.io", "virtualservices"
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1", canary_version="v2")
MISSING = object()
SHADOW = {"name": "shadow", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
          "route": [{"destination": {"host": "rec-model", "subset": "stable"}, "weight": 0},
                    {"destination": {"host": "rec-model", "subset": "canary"}, "weight": 100}]}
LEGACY = {"name": "legacy", "match": [{"uri": {"prefix": "/v1/old"}}],
          "route": [{"destination": {"host": "old-model", "subset": "stable"}, "weight": 100}]}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()  # logging is put back by tests/conftest.py
    try:
        yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    finally:
        api.stop()


def cli(kc: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "rec-model", "-n", "ml", "--kubeconfig", str(kc)])


def routes(api: KubeAPIServer) -> list[dict[str, Any]]:
    return api.get(GROUP, VS, "ml", "rec-model")["spec"]["http"]  # type: ignore[index]


def weights(api: KubeAPIServer, name: str = "primary") -> list[Any]:
    route = next(r for r in routes(api) if r.get("name") == name)
    return [d.get("weight") for d in route["route"]]


def recorded(api: KubeAPIServer) -> dict[str, Any] | None:
    text = api.get(GROUP, VS, "ml", "rec-model")["metadata"].get("annotations", {}).get("modelcanary.dev/rollout")  # type: ignore[index]
    return json.loads(text) if text else None


def set_raw(api: KubeAPIServer, stable: Any, canary: Any, name: str = "primary") -> None:
    def edit(obj: dict[str, Any]) -> None:
        route = next(r for r in obj["spec"]["http"] if r.get("name") == name)
        for d, w in zip(route["route"], (stable, canary)):
            d.pop("weight", None)
            if w is not MISSING:
                d["weight"] = w

    api.edit(GROUP, VS, "ml", "rec-model", edit)


def in_progress(kc: Path, weights: Weights = Weights(75, 25), route: str = "", record_route: bool = False) -> None:
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=weights, step=1, started_at=1.0, step_started_at=2.0,
                            route=route if record_route else "")
    with api_client(kubeconfig=str(kc)) as client:
        IstioRouter(client).set_weights(Target(**{**TARGET.__dict__, "route": route}), weights, state=state.to_json())


def with_routes(api: KubeAPIServer, *extra: dict[str, Any]) -> None:
    api.edit(GROUP, VS, "ml", "rec-model", lambda o: o["spec"].__setitem__("http", [*map(copy.deepcopy, extra),
                                                                                     *o["spec"]["http"]]))


# --- several HTTP routes -------------------------------------------------------------------


def test_every_command_takes_route_on_a_multi_route_virtual_service(cluster: Any) -> None:
    api, kc = cluster
    with_routes(api, SHADOW, LEGACY)
    in_progress(kc, route="primary")
    untouched = [r for r in routes(api) if r["name"] != "primary"]

    res = cli(kc, "status", "--route", "primary", "-o", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["route"] == "primary" and out["weights"] == {"stable": 75, "canary": 25}
    assert out["rollout"]["phase"] == rl.PROGRESSING
    assert cli(kc, "pause", "--route", "primary", "--destination-rule", "rec-model").exit_code == 0
    assert recorded(api)["phase"] == rl.PAUSED and weights(api) == [75, 25]  # type: ignore[index]
    assert cli(kc, "resume", "--route", "primary").exit_code == 0
    assert recorded(api)["phase"] == rl.PROGRESSING  # type: ignore[index]
    res = cli(kc, "rollback", "--route", "primary", "--reason", "pager")
    assert res.exit_code == 0, res.output
    assert "route primary" in res.stdout
    assert weights(api) == [100, 0] and recorded(api)["phase"] == rl.ROLLED_BACK  # type: ignore[index]
    assert [r for r in routes(api) if r["name"] != "primary"] == untouched


def test_without_route_an_ambiguous_virtual_service_is_refused_naming_the_routes(cluster: Any) -> None:
    api, kc = cluster
    with_routes(api, SHADOW, LEGACY)
    set_raw(api, 60, 40)  # split, but no rollout recorded: nothing tells the two routes apart
    writes = len(api.writes)
    for command in ("status", "pause", "resume", "rollback"):
        res = cli(kc, command)
        assert res.exit_code == 2, (command, res.output)
        assert "['shadow', 'primary']" in res.output and "legacy" in res.output and "--route" in res.output
    assert len(api.writes) == writes
    assert cli(kc, "status", "--route", "nope").exit_code == 2


def test_without_route_the_rollouts_route_is_found(cluster: Any) -> None:
    api, kc = cluster
    with_routes(api, LEGACY)  # one route with this rule's stable+canary subsets: that one
    set_raw(api, 1, 1)
    assert json.loads(cli(kc, "status", "-o", "json").stdout)["route"] == "primary"
    assert cli(kc, "rollback").exit_code == 0 and weights(api) == [100, 0]

    with_routes(api, SHADOW)  # two such routes: the recorded rollout's weights tell which
    in_progress(kc, Weights(80, 20), route="primary")
    for command in ("pause", "resume", "rollback"):
        assert cli(kc, command).exit_code == 0, command
    assert weights(api) == [100, 0] and weights(api, "shadow") == [0, 100]
    assert recorded(api)["phase"] == rl.ROLLED_BACK  # type: ignore[index]


# --- any weights -------------------------------------------------------------------------

ANY = [(1, 1), (0, 0), (40, 40), (MISSING, 100), (MISSING, MISSING), (-5, 105), ("90", 10), (10, 2**31 - 1),
       (3, 0), (100, MISSING), (100, -1)]


@pytest.mark.parametrize(("stable", "canary"), ANY)
def test_rollback_without_a_record_writes_100_0_from_any_weights(cluster: Any, stable: Any, canary: Any) -> None:
    api, kc = cluster
    set_raw(api, stable, canary)
    res = cli(kc, "status", "-o", "json")
    assert res.exit_code == 0, res.output
    raw = {"stable": None if stable is MISSING else stable, "canary": None if canary is MISSING else canary}
    assert json.loads(res.stdout)["raw_weights"] == raw
    res = cli(kc, "rollback", "-o", "json")
    assert res.exit_code == 0, res.output
    assert weights(api) == [100, 0] and recorded(api)["phase"] == rl.ROLLED_BACK  # type: ignore[index]


@pytest.mark.parametrize(("stable", "canary"), [(1, 1), (0, 0), (3, 0), (100, MISSING), (MISSING, MISSING), (-5, 105)])
def test_rollback_of_a_recorded_rollout_writes_100_0_from_any_weights(cluster: Any, stable: Any, canary: Any) -> None:
    api, kc = cluster
    in_progress(kc)
    set_raw(api, stable, canary)
    res = cli(kc, "rollback", "--reason", "weights edited by hand", "-o", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["phase"] == rl.ROLLED_BACK
    assert weights(api) == [100, 0]
    assert "weights edited by hand" in recorded(api)["reason"]  # type: ignore[index]


def test_status_shows_the_raw_weights_and_istios_split(cluster: Any) -> None:
    api, kc = cluster
    set_raw(api, 1, 1)
    out = json.loads(cli(kc, "status", "-o", "json").stdout)
    assert out["weights"] == {"stable": 50, "canary": 50} and out["raw_weights"] == {"stable": 1, "canary": 1}
    assert out["route"] is None and out["rollout"] is None
    text = cli(kc, "status").stdout
    assert "50/50" in text and "stable=1 canary=1 (Istio splits them 50/50)" in text and "canary rollback" in text
    set_raw(api, MISSING, MISSING)
    assert "stable=(missing) canary=(missing) (Istio rejects them" in cli(kc, "status").stdout
    set_raw(api, 90, 10)
    out = json.loads(cli(kc, "status", "-o", "json").stdout)
    assert out["raw_weights"] == out["weights"] == {"stable": 90, "canary": 10}
    assert "note:" not in cli(kc, "status").stdout


def test_pause_and_resume_work_on_normalised_weights(cluster: Any) -> None:
    api, kc = cluster
    in_progress(kc, Weights(50, 50))
    set_raw(api, 1, 1)  # the same split, written another way
    assert cli(kc, "pause").exit_code == 0 and recorded(api)["phase"] == rl.PAUSED  # type: ignore[index]
    res = cli(kc, "resume")
    assert res.exit_code == 0 and recorded(api)["phase"] == rl.PROGRESSING  # type: ignore[index]
    # nothing judges a resumed rollout unless a promote (or the controller) runs for it: said, every time
    assert "note: judged only while a `canary promote` (or the controller) runs for it" in res.output


def test_promote_still_refuses_weights_it_did_not_write(cluster: Any) -> None:
    api, kc = cluster
    with api_client(kubeconfig=str(kc)) as client:
        router = IstioRouter(client)
        for raw in ((-5, 105), ("90", 10), (1, 1)):
            set_raw(api, *raw)
            with pytest.raises(TargetError, match="weight"):
                router.inspect(TARGET)


def test_the_route_recorded_by_the_rollout_is_the_one_on_call_acts_on(cluster: Any) -> None:
    api, kc = cluster
    with_routes(api, SHADOW, LEGACY)
    set_raw(api, 0, 100, name="shadow")
    in_progress(kc, Weights(80, 20), route="primary", record_route=True)
    writes = len(api.writes)
    res = cli(kc, "rollback", "--route", "shadow")  # the wrong route: refused, nothing written
    assert res.exit_code == 2 and "--route primary" in res.output, res.output
    assert len(api.writes) == writes and weights(api) == [80, 20]
    assert cli(kc, "rollback").exit_code == 0  # no --route: the recorded one
    assert weights(api) == [100, 0] and weights(api, "shadow") == [0, 100]


def test_status_shows_the_traffic_even_when_the_record_is_unreadable(cluster: Any) -> None:
    api, kc = cluster
    set_raw(api, 70, 30)
    api.edit(GROUP, VS, "ml", "rec-model",
             lambda o: o["metadata"].setdefault("annotations", {}).__setitem__("modelcanary.dev/rollout", "{garbage"))
    res = cli(kc, "status", "-o", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["weights"] == {"stable": 70, "canary": 30} and "unreadable" in out["unreadable_state"]
    assert cli(kc, "rollback").exit_code == 0 and weights(api) == [100, 0]


@pytest.mark.parametrize("damage", ["DestinationRule deleted", "canary subset gone"])
def test_rollback_needs_the_virtual_service_alone(cluster: tuple[KubeAPIServer, Path], damage: str) -> None:
    """`canary rollback` mid-rollout after the DestinationRule was deleted or lost its canary subset:
    stable 100% on the rollout's route (it exited 2, 'not found', and left 80/20)."""
    api, kc = cluster
    rollout = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                              weights=Weights(80, 20), route="primary")
    IstioRouter(api_client(kubeconfig=str(kc))).set_weights(
        Target(**{**TARGET.__dict__, "route": "primary"}), Weights(80, 20), state=rollout.to_json())
    if damage == "DestinationRule deleted":
        import kubernetes

        kubernetes.client.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
            "networking.istio.io", "v1beta1", "ml", "destinationrules", "rec-model")
    else:
        api.edit(GROUP, "destinationrules", "ml", "rec-model",
                 lambda o: o["spec"].__setitem__("subsets", [s for s in o["spec"]["subsets"] if s["name"] != "canary"]))
    res = cli(kc, "rollback")
    assert weights(api) == [100, 0] and recorded(api)["phase"] == rl.ROLLED_BACK  # type: ignore[index]
    if damage == "canary subset gone":  # the stable subset still selects v1: nothing else to do
        assert res.exit_code == 0, res.output
    else:  # the stable subset cannot be checked or re-pointed: said, exit 3 (touched), never 0 or 2
        assert res.exit_code == 3 and "could not be re-pointed" in res.output, res.output


@pytest.mark.parametrize("refusal", ["the DestinationRule write refused (422)", "the canary subset gone"])
def test_a_rollback_from_promoting_that_cannot_repoint_stable_never_reports_success(
        cluster: tuple[KubeAPIServer, Path], refusal: str) -> None:
    """Killed between a promotion's two writes: the stable subset already selects the canary version.
    A rollback that cannot point it back must not say it succeeded (it exited 0, recorded rolled_back,
    while v2 served everything): exit 3, the route as it was."""
    import time

    api, kc = cluster
    now = time.time()
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                            weights=Weights(0, 100), step=3, started_at=now - 600, step_started_at=now - 10,
                            updated_at=now - 10, route="primary", reason="all steps passed")
    IstioRouter(api_client(kubeconfig=str(kc))).set_weights(
        Target(**{**TARGET.__dict__, "route": "primary"}), Weights(0, 100), state=state.to_json())

    def repointed(o: dict[str, Any]) -> None:
        next(s for s in o["spec"]["subsets"] if s["name"] == "stable")["labels"]["version"] = "v2"
        if refusal == "the canary subset gone":
            o["spec"]["subsets"] = [s for s in o["spec"]["subsets"] if s["name"] != "canary"]

    api.edit(GROUP, "destinationrules", "ml", "rec-model", repointed)
    if refusal.endswith("(422)"):
        api.fail_next(422, times=50, methods=("PUT",), plural="destinationrules")
    res = cli(kc, "rollback")
    assert res.exit_code == 3, res.output
    stable = next(s for s in api.get(GROUP, "destinationrules", "ml", "rec-model")["spec"]["subsets"]  # type: ignore[index]
                  if s["name"] == "stable")
    assert stable["labels"]["version"] == "v2" and recorded(api)["phase"] != rl.ROLLED_BACK  # type: ignore[index]

"""`canary status` on a route whose shape no rollout starts from, with a rollout recorded on it (decision 208).

A third destination added to the rollout's route, or the canary subset taken out of the DestinationRule,
mid-rollout: `canary rollback` acts on such a route (decision 114: stable 100% needs the VirtualService
alone), but `canary status`, on-call's first command, said only the shape's error and exit 2, and showed no
weights: nobody could see how much traffic the canary (and the third destination) got. It now shows the
route as the rollback reads it (the stable destination's share against every other's), says why no rollout
can go on on it and what `canary rollback` writes, exit 0. The strict Kubernetes API emulator holds the
objects; the CLI is the real one."""

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


def _edit(api: KubeAPIServer, plural: str, change: Any) -> None:
    obj = copy.deepcopy(api.handler.get_object(GROUP, plural, "ml", "rec-model"))
    change(obj)
    api.handler.put_object(obj)


def _split(weights: list[int], *, third: bool = False) -> Any:
    def change(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        if third:
            route.append({"destination": {"host": "rec-model", "subset": "shadow"}, "weight": 0})
        for dest, w in zip(route, weights):
            dest["weight"] = w
        vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}
    return change


def _status(kubeconfig: Path, *more: str) -> Any:
    return CliRunner().invoke(app, ["status", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig), *more])


def test_a_third_destination_added_mid_rollout_is_shown_with_every_share(istio_cluster: Any) -> None:
    api, kc = istio_cluster
    _edit(api, "virtualservices", _split([50, 25, 25], third=True))
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert "spec.http[0].route has 3 destinations" in r.output and "cannot go on on it" in r.output
    assert "stable=50, others=[25, 25]" in r.output, r.output
    assert "Istio sends 50% to the stable subset, 25% to the canary subset, 25% to other destinations" in r.output
    assert "`canary rollback` writes stable 100% on it" in r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["weights"] == {"stable": 50, "canary": 50} and shown["raw_weights"] == {"stable": 50,
                                                                                         "others": [25, 25]}
    assert "3 destinations" in shown["route_shape"] and shown["rollout"]["phase"] == "progressing"


def test_the_canary_subset_gone_from_the_destination_rule_still_shows_the_split(istio_cluster: Any) -> None:
    api, kc = istio_cluster
    _edit(api, "virtualservices", _split([75, 25]))
    _edit(api, "destinationrules",
          lambda dr: dr["spec"].update(subsets=[s for s in dr["spec"]["subsets"] if s["name"] != "canary"]))
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert "does not define subset 'canary'" in r.output and "75/25" in r.output and "get 25%" in r.output
    assert "subsets: unknown" in r.output, r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["weights"] == {"stable": 75, "canary": 25} and "subset 'canary'" in shown["route_shape"]


def test_a_copy_of_the_stable_destination_counts_as_stable_not_as_the_canary(istio_cluster: Any) -> None:
    # stable 100, canary 0 and a copy of the stable destination at 100: Istio sends every request to the stable
    # version; the copy was counted with the canary's, shown 50/50 "the canary subset ... get 50%" (decision 218)
    api, kc = istio_cluster

    def change(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        route[0]["weight"], route[1]["weight"] = 100, 0
        route.append(copy.deepcopy(route[0]))
        vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}

    _edit(api, "virtualservices", change)
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert "stable=[100, 100], others=[0]" in r.output, r.output
    assert "Istio sends 100% to the stable subset, 0% to the canary subset" in r.output and "50%" not in r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["weights"] == {"stable": 100, "canary": 0}
    assert shown["shares"] == {"stable": 100, "canary": 0, "others": 0}
    assert shown["raw_weights"] == {"stable": [100, 100], "others": [0]}


def test_a_route_of_the_usual_shape_says_nothing_of_its_shape(istio_cluster: Any) -> None:
    api, kc = istio_cluster
    _edit(api, "virtualservices", _split([75, 25]))
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert "route_shape" not in shown and shown["raw_weights"] == {"stable": 75, "canary": 25}


@pytest.mark.parametrize(("emptied", "shares", "said"), [
    (False, {"stable": 0, "canary": 100, "others": 0}, "Istio sends 0% to the stable subset, 100% to the canary"),
    (True, {"stable": 0, "canary": 0, "others": 0}, "no destination at all: Istio routes nothing by it"),
])
def test_a_route_without_its_stable_destination_is_shown_not_refused(
        istio_cluster: Any, emptied: bool, shares: dict[str, int], said: str) -> None:
    # `route[0]` (the stable destination) deleted by hand under a progressing record, or the route list emptied:
    # status, read-only, exited 6 ("stable 100% cannot be written") with no weights and no JSON (decision 219)
    api, kc = istio_cluster

    def change(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        del route[:len(route) if emptied else 1]
        vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}

    _edit(api, "virtualservices", change)
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert said in r.output and "`canary rollback` is what restores stable" in r.output, r.output
    assert "subset stable" in r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["shares"] == shares and shown["stable_added"] and shown["rollout"]["phase"] == "progressing"
    # emptied: nothing is routed by it, and neither arm is said to get a share (it was shown 50/50, decision 233)
    assert shown["weights"] == ({"stable": 0, "canary": 0} if emptied else {"stable": 0, "canary": 100})
    assert ("weights: none (the route has no destination" in r.output) == emptied and ("50/50" in r.output) is False


def test_a_route_without_its_stable_destination_nor_a_usable_rule_is_shown_saying_why_rollback_cannot(
        istio_cluster: Any) -> None:
    # the stable destination deleted and the DestinationRule's stable subset too: no stable destination can be
    # added (which service and subset are not known); status still shows the split, exit 0 (decision 219)
    api, kc = istio_cluster

    def change(vs: dict[str, Any]) -> None:
        del vs["spec"]["http"][0]["route"][0]
        vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}

    _edit(api, "virtualservices", change)
    _edit(api, "destinationrules",
          lambda dr: dr["spec"].update(subsets=[s for s in dr["spec"]["subsets"] if s["name"] != "stable"]))
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert "100% to the canary subset" in r.output and "cannot here (exit 6)" in r.output, r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["weights"] == {"stable": 0, "canary": 100} and "stable_added" not in shown
    assert "does not define subsets" in shown["stable_unwritable"]
    rolled = CliRunner().invoke(app, ["rollback", "rec-model", "-n", "ml", "--reason", "x", "--kubeconfig", str(kc)])
    assert rolled.exit_code == 6 and "no destinations with subset 'stable'" in rolled.output, rolled.output
    assert "so the stable destination to add is not known" in rolled.output


@pytest.mark.parametrize("rule", ["deleted", "no stable subset"])
def test_an_emptied_route_without_a_usable_rule_is_shown_saying_why_rollback_cannot(
        istio_cluster: Any, rule: str) -> None:
    # the route's destination list emptied and its DestinationRule deleted (or its stable subset removed): status
    # exited 2 naming the missing DestinationRule, and showed nothing; it shows the route (nothing routed by it),
    # exit 0, and why `canary rollback` cannot restore stable here
    api, kc = istio_cluster

    def change(vs: dict[str, Any]) -> None:
        del vs["spec"]["http"][0]["route"][:]
        vs["metadata"]["annotations"] = {"modelcanary.dev/rollout": PROGRESSING_RECORD}

    _edit(api, "virtualservices", change)
    if rule == "deleted":
        key = (GROUP, "destinationrules", "ml", "rec-model")
        with api.handler.lock:
            api.handler._delete(key, api.handler.objects[key])
    else:
        _edit(api, "destinationrules",
              lambda dr: dr["spec"].update(subsets=[s for s in dr["spec"]["subsets"] if s["name"] != "stable"]))
    r = _status(kc)
    assert r.exit_code == 0, r.output
    assert "weights: none (the route has no destination" in r.output and "cannot here (exit 6)" in r.output, r.output
    assert "no destination at all: Istio routes nothing by it" in r.output and "others=[]" not in r.output
    shown = json.loads(_status(kc, "-o", "json").stdout)
    assert shown["weights"] == {"stable": 0, "canary": 0} and "stable_added" not in shown
    assert shown["stable_unwritable"] and shown["rollout"]["phase"] == "progressing"

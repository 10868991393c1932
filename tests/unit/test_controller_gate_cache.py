"""The controller's Triton gate of a rollout follows an edit of its URLs for the same canary version
(the gate was kept per (rollout, canary version), and went on probing the old URLs)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from canary import crd
from canary.controller import Controller
from tests import fleet


def _spec(canary_url: str) -> crd.RolloutSpec:
    obj = fleet.rollout_object(0, "v2")
    obj["spec"]["policy"] = copy.deepcopy(obj["spec"]["policy"])
    obj["spec"]["policy"]["gates"] = {"triton": {"enabled": True}}
    obj["spec"]["triton"] = {"stableUrl": "http://127.0.0.1:8000", "canaryUrl": canary_url}
    obj["metadata"].update(uid="u0", generation=1)
    return crd.parse(obj)


def test_an_edit_of_the_triton_urls_makes_a_new_gate_and_drops_the_old() -> None:
    op = SimpleNamespace(_gates={})
    first = Controller._gate(op, _spec("http://127.0.0.1:8001"))  # type: ignore[arg-type]
    assert Controller._gate(op, _spec("http://127.0.0.1:8001")) is first  # type: ignore[arg-type]
    second = Controller._gate(op, _spec("http://127.0.0.1:8002"))  # type: ignore[arg-type]
    assert second is not first and "8002" in second.canary.who and len(op._gates) == 1

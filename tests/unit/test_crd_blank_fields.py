"""A CanaryRollout's name field given empty or blank is refused naming the object and the field (decision 768).

`virtualService: ""` (a template's unset variable) was read as absent, and the rollout ran on the VirtualService
named as the model; `route: ""` on the policy's route or the only one; the CLI's flags were refused so since 743."""

from __future__ import annotations

from typing import Any

import pytest

from canary import crd
from canary.errors import ConfigError
from tests import fleet


@pytest.mark.parametrize(("spec", "field"), [
    ({"virtualService": ""}, "spec.virtualService"),
    ({"virtualService": "  "}, "spec.virtualService"),
    ({"destinationRule": ""}, "spec.destinationRule"),
    ({"destinationRule": "\t"}, "spec.destinationRule"),
    ({"route": ""}, "spec.route"),
    ({"route": " "}, "spec.route"),
    ({"triton": {"stableUrl": "", "canaryUrl": "m-canary:8000"}}, "spec.triton.stableUrl"),
    ({"triton": {"canaryUrl": " "}}, "spec.triton.canaryUrl"),
])
def test_a_name_field_given_empty_is_refused_naming_the_object_and_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        crd.parse(fleet.rollout_object(0, "v2", **spec))
    message = str(err.value)
    assert message.startswith(f"CanaryRollout ml/r0: {field} is given empty"), message


def test_a_blank_model_is_said_as_the_model_not_as_the_virtual_service() -> None:
    with pytest.raises(ConfigError) as err:
        crd.parse(fleet.rollout_object(0, "v2", model="  "))
    assert str(err.value) == "CanaryRollout ml/r0: spec.model must be a non-empty string", err.value


def test_a_field_left_out_still_takes_its_default() -> None:
    spec = crd.parse(fleet.rollout_object(0, "v2"))
    assert spec.target.virtual_service == spec.target.model
    assert spec.target.destination_rule == ""


def test_a_running_rollouts_empty_field_keeps_the_target_it_runs_on() -> None:
    """A rollout a controller before 768 started on `virtualService: ""` runs on the model's VirtualService (its
    status.target says so); refusing it mid-way would end it (as 693 keeps a newer CRD's key)."""
    obj = fleet.rollout_object(0, "v2", virtualService="")
    model = obj["spec"]["model"]
    obj["status"] = {"phase": "progressing", "observedGeneration": 1,
                     "target": {"virtualService": model, "destinationRule": model, "route": ""}}
    assert crd.parse(obj).target.virtual_service == model


def test_a_running_rollouts_field_edited_to_empty_is_refused() -> None:
    """Read as absent, the edit moved the rollout to the model's VirtualService (a supersede onto another route)."""
    obj = fleet.rollout_object(0, "v2", virtualService="")
    obj["status"] = {"phase": "progressing", "observedGeneration": 1,
                     "target": {"virtualService": "rec-vs", "destinationRule": "rec-vs", "route": ""}}
    with pytest.raises(ConfigError, match="spec.virtualService is given empty"):
        crd.parse(obj)


@pytest.mark.parametrize(("generation", "refused"), [(1, False), (2, True)])
def test_an_ended_rollouts_empty_field_reads_as_it_ran_until_its_spec_is_edited(generation: int,
                                                                               refused: bool) -> None:
    """Its guards (a route restored mid-rollout) read its spec: an ended rollout that a controller before 768 ran
    on `virtualService: ""` still reads; an edit of its spec (a new run, nothing moved yet) is refused."""
    obj = fleet.rollout_object(0, "v2", virtualService="")
    model = obj["spec"]["model"]
    obj["metadata"]["generation"] = generation
    obj["status"] = {"phase": "promoted", "observedGeneration": 1,
                     "target": {"virtualService": model, "destinationRule": model, "route": ""}}
    if refused:
        with pytest.raises(ConfigError, match="spec.virtualService is given empty"):
            crd.parse(obj)
    else:
        assert crd.parse(obj).target.virtual_service == model


@pytest.mark.parametrize(("generation", "refused"), [(1, False), (2, True)])
def test_an_ended_rollouts_empty_triton_url_reads_as_it_ran_until_its_spec_is_edited(generation: int,
                                                                                   refused: bool) -> None:
    """As its name fields: `_split_after_end` parses the spec of an ended rollout whose route was restored mid-way
    (`_end_restored`, stable 100%); refused, the split stayed, the refusal swallowed there (decision 768 addendum)."""
    obj = fleet.rollout_object(0, "v2", triton={"stableUrl": "", "canaryUrl": "m-canary:8000"})
    obj["metadata"]["generation"] = generation
    obj["status"] = {"phase": "rolled_back", "observedGeneration": 1, "target": {"virtualService": "m0"}}
    if refused:
        with pytest.raises(ConfigError, match="spec.triton.stableUrl is given empty"):
            crd.parse(obj)
    else:
        assert crd.parse(obj).triton_stable == ""


def test_a_refused_rollouts_empty_triton_url_stays_refused_once_ready_is_written() -> None:
    """No rollout ran it (no status.target): a status of its generation (its refusal's, an end asked by `action`)
    does not make it the spec a controller ran."""
    obj = fleet.rollout_object(0, "v2", triton={"stableUrl": "", "canaryUrl": "m-canary:8000"})
    obj["status"] = {"phase": "aborted", "observedGeneration": 1}
    with pytest.raises(ConfigError, match="spec.triton.stableUrl is given empty"):
        crd.parse(obj)


def test_the_crd_leaves_an_empty_name_field_to_the_controller() -> None:
    """No `minLength: 1` on these fields (decision 768, addendum): the API server validates the whole object at every
    update, its status's too, and ratchets an unchanged value only from Kubernetes 1.30 (1.33 for a status write;
    we support 1.25): a rollout a controller before 768 started on `virtualService: ""` would have every status
    write refused (the rollout then ended at stable 100%, what 768's exception keeps), its finalizer never removed,
    and `kubectl patch ... spec.action=rollback` refused. The controller's refusal names the field (Ready False)."""
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(crd.__file__).parent / "deploy" / "crd-canaryrollout.yaml").read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    fields = {name: spec[name] for name in crd._BLANK_REFUSED} | spec["triton"]["properties"]
    assert {name: f["minLength"] for name, f in fields.items() if "minLength" in f} == {}, fields

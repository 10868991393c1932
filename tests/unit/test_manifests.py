"""Every VirtualService/DestinationRule we ship or write is valid to Istio's own CRD schema.

The schemas are Istio's CustomResourceDefinitions, unchanged, read from
../shared/reference/istio-crds (skipped when that folder is absent). A CRD's
openAPIV3Schema is a Kubernetes *structural* schema, not plain JSON Schema, so
it is translated first:

* `nullable: true` becomes an extra "null" type;
* `x-kubernetes-int-or-string` keeps its anyOf (integer | string);
* objects with `properties` and no `x-kubernetes-preserve-unknown-fields` get
  `additionalProperties: false`. The API server would silently *prune* such
  fields; for our own manifests a pruned field is a typo, so we reject it;
* `x-kubernetes-validations` (CEL) cannot be evaluated here and is ignored.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from canary.model import Weights
from canary.routing.patch import locate_route, read_weights, subset_versions, with_subset_version, with_weights
from tests.crdschema import structural_to_jsonschema

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / ".." / "shared" / "reference" / "istio-crds"
KINDS = {"VirtualService": "virtualservice.crd.yaml", "DestinationRule": "destinationrule.crd.yaml"}


_cache: dict[tuple[str, str], Any] = {}


@functools.lru_cache(maxsize=None)
def _load_crd(filename: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the DR CRD is 370 kB of YAML
    return yaml.load((CRDS / filename).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506


def validator_for(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    if not CRDS.is_dir():
        pytest.skip(f"Istio CRDs not available at {CRDS}")
    version = api_version.rpartition("/")[2]
    if (kind, version) not in _cache:
        crd = _load_crd(KINDS[kind])
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = structural_to_jsonschema(served["schema"]["openAPIV3Schema"])
        schema["properties"].update({"apiVersion": {"const": f"networking.istio.io/{version}"},
                                     "kind": {"const": kind}, "metadata": {"type": "object"}})
        schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
        _cache[(kind, version)] = jsonschema.Draft7Validator(schema)
    return _cache[(kind, version)]


def assert_valid(obj: dict[str, Any]) -> None:
    errors = sorted(validator_for(obj["kind"], obj["apiVersion"]).iter_errors(obj), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def shipped() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "istio").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") in KINDS:
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> dict[str, Any]:
    (obj,) = [o for _, o in shipped() if o["kind"] == kind]
    return copy.deepcopy(obj)


def test_istio_folder_ships_one_virtual_service_and_one_destination_rule() -> None:
    assert sorted(o["kind"] for _, o in shipped()) == ["DestinationRule", "VirtualService"]


@pytest.mark.parametrize(("name", "obj"), shipped(), ids=lambda x: x if isinstance(x, str) else "")
def test_shipped_manifests_match_the_crd_schema(name: str, obj: dict[str, Any]) -> None:
    assert_valid(obj)


def test_shipped_objects_are_drivable_by_the_router() -> None:
    vs, dr = by_kind("VirtualService"), by_kind("DestinationRule")
    assert (vs["metadata"]["namespace"], vs["metadata"]["name"]) == ("ml", "rec-model")
    ref = locate_route(vs)  # the only route...
    assert ref == locate_route(vs, "primary")  # ...is also the named one
    assert read_weights(vs, ref) == Weights(100, 0)
    assert subset_versions(dr, host=ref.host) == {"stable": "v1", "canary": "v2"}


@pytest.mark.parametrize("canary", [0, 1, 10, 50, 99, 100])
@pytest.mark.parametrize("version", ["v1beta1", "v1", "v1alpha3"])
def test_objects_stay_valid_after_our_writes(canary: int, version: str) -> None:
    vs = by_kind("VirtualService")
    vs["apiVersion"] = f"networking.istio.io/{version}"
    assert_valid(with_weights(vs, Weights.canary_at(canary), state='{"phase": "progressing"}'))
    dr = by_kind("DestinationRule")
    dr["apiVersion"] = f"networking.istio.io/{version}"
    assert_valid(with_subset_version(dr, "stable", f"v{canary}"))


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        (lambda o: o["spec"]["http"][0]["route"][0].update(wieght=5), "VirtualService"),
        (lambda o: o["spec"]["http"][0]["route"][0].update(weight="90"), "VirtualService"),
        (lambda o: o["spec"]["http"][0].update(retries={"attempts": "three"}), "VirtualService"),
        (lambda o: o["spec"]["subsets"][0].update(labels=["version"]), "DestinationRule"),
        (lambda o: o["spec"].update(hots="rec-model"), "DestinationRule"),
    ],
)
def test_the_schema_check_is_not_vacuous(edit: Any, kind: str) -> None:
    obj = by_kind(kind)
    edit(obj)
    assert list(validator_for(kind, obj["apiVersion"]).iter_errors(obj))

"""What canary/deploy/ ships is valid to Kubernetes and does only what docs/deploy.md says.

* Every Kubernetes object (canary/deploy/*.yaml and examples/) validates,
  strictly (unknown fields are errors), against the real Kubernetes OpenAPI
  schemas bundled by the `kubernetes-validate` package, for Kubernetes 1.30
  and the newest version it knows. Skipped, with the reason, without it.
* The CanaryRollout examples validate against the CRD's own openAPIV3Schema
  (translated to JSON Schema as in test_manifests.py), and their policies load
  through canary.policy, so the CRD and the policy format cannot drift apart.
* RBAC is least privilege: the exact set of (apiGroup, resource, verb) granted.
* The Dockerfile parses, runs as a non-root user and installs only from the
  lock (canary/deploy/requirements.txt: hash-checked `==` pins, no resolution),
  which satisfies every core and `triton` dependency of pyproject.toml.
* The Grafana dashboard is well formed, has latency (ms) and error-rate panels
  for every metrics source, never mixes units in a panel, and its PromQL parses
  and reads known values off synthetic series (`promtool`, when installed).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

from canary.policy import load_policy, parse_policy
from tests.crdschema import structural_to_jsonschema

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "canary" / "deploy"
K8S_VERSIONS = ["1.30", "latest"]
NOT_KUBERNETES = {"Kustomization", "CanaryRollout"}


# --------------------------------------------------------------------------- loading

def load_docs(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader) if d]  # noqa: S506


@functools.lru_cache(maxsize=1)
def _parsed() -> tuple[tuple[str, dict[str, Any]], ...]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")) + sorted((DEPLOY / "examples").glob("*.yaml")):
        out.extend((str(path.relative_to(DEPLOY)), doc) for doc in load_docs(path))
    return tuple(out)


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    """Every document under canary/deploy (fresh copies: tests edit them)."""
    return copy.deepcopy(list(_parsed()))


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f, o) for f, o in all_objects() if o["kind"] not in NOT_KUBERNETES]


def one(kind: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    found = [o for f, o in all_objects() if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
             and (file is None or f == file)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {file or 'canary/deploy'}, found {len(found)}"
    return copy.deepcopy(found[0])


def crd() -> dict[str, Any]:
    return one("CustomResourceDefinition", "canaryrollouts.modelcanary.dev")


def rollout_examples() -> list[tuple[str, dict[str, Any]]]:
    return [(f, o) for f, o in all_objects() if o["kind"] == "CanaryRollout"]


# --------------------------------------------------------------------------- Kubernetes schemas

def k8s_errors(obj: dict[str, Any], version: str) -> str | None:
    """None if valid; else the validator's message with the path."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (pip install kubernetes-validate)")
    if version == "latest":
        version = kv.utils.latest_version()
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        return f"{'/'.join(map(str, exc.absolute_path))}: {exc.message}"
    except kv.SchemaNotFoundError as exc:
        return exc.message
    return None


def _obj_id(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['kind']}-{value['metadata']['name']}"
    return str(value)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("file", "obj"), kubernetes_objects(), ids=_obj_id)
def test_every_kubernetes_object_validates_strictly(file: str, obj: dict[str, Any], version: str) -> None:
    assert k8s_errors(obj, version) is None, f"{file}: {k8s_errors(obj, version)}"


def _deployment() -> dict[str, Any]:
    return one("Deployment", "canary-controller")


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda: {**_deployment(), "spec": {**_deployment()["spec"], "replica": 2}}, "replica"),
        (lambda: _with(_deployment(), ["spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet"],
                       pth="/healthz"), "pth"),
        (lambda: _with(one("HorizontalPodAutoscaler", "rec-model-v2-1-0"), ["spec"], minReplicas="one"), "one"),
        (lambda: _with(crd(), ["spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec"],
                       tpye="object"), "tpye"),
        (lambda: _with(one("ClusterRole"), ["rules", 0], verb=["get"]), "verb"),
    ],
    ids=["deployment-typo", "probe-typo", "hpa-type", "crd-schema-typo", "rbac-typo"],
)
def test_the_kubernetes_check_is_not_vacuous(make: Callable[[], dict[str, Any]], expect: str) -> None:
    error = k8s_errors(make(), "1.30")
    assert error and expect in error


def _with(obj: dict[str, Any], path: list[Any], **fields: Any) -> dict[str, Any]:
    node: Any = obj
    for key in path:
        node = node[key]
    node.update(fields)
    return obj


def test_deploy_folder_contents_and_kustomization() -> None:
    names = {p.name for p in DEPLOY.iterdir() if not p.name.startswith(".")}
    assert {"crd-canaryrollout.yaml", "controller.yaml", "triton-example.yaml", "kustomization.yaml", "Dockerfile",
            "grafana-dashboard.json", "README.md", "examples", "requirements.txt"} <= names
    kust = one("Kustomization")
    assert kust["resources"] == ["crd-canaryrollout.yaml", "controller.yaml"]  # the controller, not the examples
    assert all((DEPLOY / r).is_file() for r in kust["resources"])
    images = {i["name"]: i["newTag"] for i in kust["images"]}
    image = _deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/example/canary:{images['ghcr.io/example/canary']}"


def test_kustomize_builds_the_controller(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (its built-in kustomize renders canary/deploy)")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    built = sorted((o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(done.stdout) if o)
    files = ("crd-canaryrollout.yaml", "controller.yaml")
    assert built == sorted((o["kind"], o["metadata"]["name"]) for f, o in all_objects() if f in files)


# --------------------------------------------------------------------------- the CRD


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value or not (value.endswith("Z") or value[-6] in "+-"):
        raise ValueError("RFC 3339 date-time with a time zone expected")
    dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@functools.lru_cache(maxsize=1)
def crd_validator() -> jsonschema.Draft7Validator:
    (version,) = crd()["spec"]["versions"]
    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
    schema["properties"].update({"apiVersion": {"const": "modelcanary.dev/v1alpha1"}, "kind": {"const": "CanaryRollout"}})
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return jsonschema.Draft7Validator(schema, format_checker=_FORMATS)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator().iter_errors(obj)]


def test_crd_names_versions_and_columns() -> None:
    spec = crd()["spec"]
    assert (spec["group"], spec["scope"]) == ("modelcanary.dev", "Namespaced")
    assert spec["names"] == {"kind": "CanaryRollout", "listKind": "CanaryRolloutList", "plural": "canaryrollouts",
                             "singular": "canaryrollout", "shortNames": ["crollout"], "categories": ["canary"]}
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Model", "Canary", "Phase", "Weights", "Step", "Age"]
    for column in version["additionalPrinterColumns"]:
        assert column["jsonPath"].startswith((".spec.", ".status.", ".metadata."))


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.get("properties", {}).items():
            yield from _walk(value, f"{path}.{key}")
        if "items" in node:
            yield from _walk(node["items"], f"{path}[]")


def test_crd_schema_is_structural() -> None:
    """The API server's structural-schema rules we can check here (it refuses the CRD otherwise)."""
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["properties"]["metadata"] == {"type": "object"}  # nothing else is allowed at the root's metadata
    for path, node in _walk(root):
        assert "type" in node, f"{path or '<root>'}: every node needs a type"
        for junctor in ("oneOf", "anyOf", "allOf", "not"):
            for branch in node.get(junctor, []) if junctor != "not" else [node.get("not", {})]:
                assert not {"type", "default", "description", "additionalProperties", "nullable"} & set(branch), \
                    f"{path}.{junctor}: only value validations inside a junctor"
                for field in branch.get("required", []):
                    assert field in node["properties"], f"{path}.{junctor}: {field} not declared outside it"
        if "default" in node:  # defaults must be valid (and not pruned) or the CRD is refused
            jsonschema.validate(node["default"], structural_to_jsonschema(node))
        if node.get("type") == "object" and "properties" not in node:
            # a map (`additionalProperties` with a value schema, as Kubernetes' structural schemas allow)
            # keeps its keys; any other object without properties would always be pruned empty
            assert (node.get("x-kubernetes-preserve-unknown-fields") or path == ".metadata"
                    or isinstance(node.get("additionalProperties"), dict) and "type" in node["additionalProperties"]), \
                f"{path}: an object without properties must preserve unknown fields (or it is always empty)"


def test_crd_cel_rules_are_known() -> None:
    """CEL (x-kubernetes-validations) is not evaluated here: keep the list short and checked by hand."""
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = {path: [r["rule"] for r in node["x-kubernetes-validations"]]
             for path, node in _walk(root) if "x-kubernetes-validations" in node}
    assert rules == {".status.weights": ["self.stable + self.canary == 100"]}


def test_crd_enums_and_defaults() -> None:
    props = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec, status = props["spec"]["properties"], props["status"]["properties"]
    assert props["spec"]["required"] == ["model", "canaryVersion"]
    assert (spec["onForeignEdit"]["enum"], spec["onForeignEdit"]["default"]) == (["reassert", "abort"], "reassert")
    assert (spec["onPrometheusOutage"]["enum"], spec["onPrometheusOutage"]["default"]) == (["rollback", "hold"], "rollback")
    assert spec["action"]["enum"] == ["", "pause", "resume", "rollback"]
    assert spec["policy"] == {**spec["policy"], "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert status["phase"]["enum"] == ["pending", "progressing", "paused", "promoting", "promoted", "rolled_back",
                                       "aborted"]
    assert status["verdictHistory"]["maxItems"] == 50
    assert set(status["conditions"]["items"]["properties"]) == {"type", "status", "reason", "message",
                                                                 "lastTransitionTime", "observedGeneration"}


def test_crd_says_the_defaults_the_controller_takes() -> None:
    """`kubectl explain` said a DestinationRule defaults to the model name, and a route to the only one: the
    controller takes the VirtualService's name (`Target.dr_name`, as `--destination-rule` says), and the policy's
    `route:` before the only route. A CanaryRollout with `virtualService: shared` and no DestinationRule, written
    as the CRD told, read DestinationRule `shared` (decision 579)."""
    from canary import crd as crd_module

    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    policy = {**load_docs(ROOT / "policies" / "default.yaml")[0], "route": "edge"}
    parsed = crd_module.parse({"metadata": {"namespace": "ml", "name": "r"},
                               "spec": {"model": "m0", "canaryVersion": "v2", "virtualService": "shared",
                                        "policy": policy}}).target
    assert (parsed.virtual_service, parsed.dr_name, parsed.route) == ("shared", "shared", "edge")
    assert spec["virtualService"]["description"].endswith("Default - the model name.")
    assert spec["destinationRule"]["description"].endswith("Default - the VirtualService's name.")
    assert spec["route"]["description"].endswith("Default - the policy's `route`, else the only route.")


def test_crd_phases_are_the_state_machines_phases() -> None:
    from canary.rollout import PHASES

    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["phase"]["enum"]) == set(PHASES)


def test_crd_end_causes_are_the_classes_of_an_end() -> None:
    """`status.endCause` (decision 609) is one of `ROLLBACK_REASONS`, always (`rl.cause_of`): a class added there and
    not to the CRD's enum has every status write of such an end refused (422) by a real API server; the emulator
    validates no schema, so nothing else here tells it."""
    from canary.rollout import ROLLBACK_REASONS

    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["endCause"]["enum"]) == set(ROLLBACK_REASONS)


@pytest.mark.parametrize(("file", "obj"), rollout_examples(), ids=_obj_id)
def test_examples_validate_against_the_crd(file: str, obj: dict[str, Any]) -> None:
    assert not crd_errors(obj), f"{file}: {crd_errors(obj)}"


def test_there_is_one_example_per_policy_source() -> None:
    kinds = sorted("policy" if "policy" in o["spec"] else "policyRef" for _, o in rollout_examples())
    assert kinds == ["policy", "policyRef"]


def test_the_inline_example_is_the_sandbox_policy_and_loads() -> None:
    (inline,) = [o for _, o in rollout_examples() if "policy" in o["spec"]]
    sandbox = yaml.safe_load((ROOT / "policies" / "sandbox.yaml").read_text(encoding="utf-8"))
    assert inline["spec"]["policy"] == sandbox
    assert parse_policy(inline["spec"]["policy"], file="canaryrollout-inline.yaml") == load_policy(ROOT / "policies" / "sandbox.yaml")


def test_the_policy_ref_example_points_at_a_shipped_configmap_with_the_default_policy() -> None:
    (ref,) = [o for _, o in rollout_examples() if "policyRef" in o["spec"]]
    cm = one("ConfigMap", ref["spec"]["policyRef"]["configMap"])
    assert cm["metadata"]["namespace"] == ref["metadata"]["namespace"]
    raw = yaml.safe_load(cm["data"][ref["spec"]["policyRef"]["key"]])
    assert parse_policy(raw, file="configmap") == load_policy(ROOT / "policies" / "default.yaml")


FULL_STATUS: dict[str, Any] = {
    "phase": "progressing", "step": 1, "weights": {"stable": 75, "canary": 25}, "reason": "step 1 passed",
    "startedAt": "2025-01-01T10:00:00Z", "updatedAt": "2025-01-01T10:06:30.5+00:00",
    "lastVerdict": {"outcome": "pass", "checks": [{"name": "latency-p95", "p_value": 0.4, "n": [900, 210]}]},
    "verdictHistory": [{"at": "2025-01-01T10:06:30Z", "outcome": "pass"}] * 50,
    "conditions": [{"type": "Progressing", "status": "True", "reason": "StepAdvanced", "message": "25% canary",
                    "lastTransitionTime": "2025-01-01T10:05:00Z", "observedGeneration": 3},
                   {"type": "modelcanary.dev/Healthy", "status": "Unknown", "reason": "NoData", "message": "",
                    "lastTransitionTime": "2025-01-01T10:05:00Z"}],
    "observedGeneration": 3, "leader": "canary-controller-7d9f-abcde", "writer": "modelcanary 0.1.0",
    "stepStart": {"stepStartedAt": 1735725900.25, "snapshot": {"at": 1735725901.0, "series": {"a": [1.0, 2.5]}}},
    "editWaiting": {"edit": "the policy's steps changed", "then": "stable 100%, then the rollout starts again from its "
                    "first step", "generation": 3},
}


def _example(kind: str = "policyRef") -> dict[str, Any]:
    (obj,) = [copy.deepcopy(o) for _, o in rollout_examples() if kind in o["spec"]]
    return obj


def test_a_full_status_validates() -> None:
    obj = _example()
    obj["status"] = copy.deepcopy(FULL_STATUS)
    assert not crd_errors(obj)


def _set(path: str, value: Any, *, delete: bool = False) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj.setdefault("status", copy.deepcopy(FULL_STATUS))
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if delete:
            del node[last]
        else:
            node[last] = value
    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _set("spec.policy", {"steps": [50, 100]}),           # both policy and policyRef
        _set("spec.policyRef", None, delete=True),           # neither
        _set("spec.model", None, delete=True),
        _set("spec.canaryversion", "v3"),                     # a typo would be pruned: we reject it
        _set("spec.action", "stop"),
        _set("spec.onForeignEdit", "ignore"),
        _set("spec.onPrometheusOutage", "retry"),
        _set("spec.policyRef.configMap", None, delete=True),
        _set("spec.triton", {"canaryURL": "x:8000"}),
        _set("status.phase", "done"),
        _set("status.weights", {"stable": 101, "canary": -1}),
        _set("status.step", "one"),
        _set("status.updatedAt", "yesterday"),
        _set("status.verdictHistory", [{}] * 51),
        _set("status.conditions", [{"type": "Ready", "status": "yes", "reason": "R", "message": "",
                                    "lastTransitionTime": "2025-01-01T10:05:00Z"}]),
        _set("status.conditions", [{"type": "Ready", "status": "True", "reason": "not a reason", "message": "",
                                    "lastTransitionTime": "2025-01-01T10:05:00Z"}]),
    ],
    ids=["both-policies", "no-policy", "no-model", "typo", "action", "foreign-edit", "outage", "ref-without-configmap",
         "triton-typo", "phase", "weights", "step", "date-time", "history-51", "condition-status", "condition-reason"],
)
def test_the_crd_schema_rejects(edit: Callable[[dict[str, Any]], None]) -> None:
    obj = _example()
    edit(obj)
    assert crd_errors(obj)


# --------------------------------------------------------------------------- the controller's side of the contract

def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what patch_namespaced_custom_object_status sends)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


class _RecordingCustomObjects:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        assert (group, version, plural) == ("modelcanary.dev", "v1alpha1", "canaryrollouts")
        self.patches.append(body)
        # the API server answers with the object (a 200 with no object is a failed write: decision 406)
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1"}, "status": body.get("status")}


def _configmaps(namespace: str, name: str) -> dict[str, str]:
    cm = one("ConfigMap", name)
    assert cm["metadata"]["namespace"] == namespace
    return dict(cm["data"])


@pytest.mark.parametrize("kind", ["policy", "policyRef"])
def test_the_controller_reads_the_examples(kind: str) -> None:
    from canary import crd as rollout_crd

    spec = rollout_crd.parse(_example(kind), configmap=_configmaps)
    assert (spec.target.model, spec.target.canary_version) == ("rec-model", "v2.1.0")


def test_what_promote_via_controller_creates_fits_the_crd() -> None:
    from canary import crd as rollout_crd

    sandbox = yaml.safe_load((ROOT / "policies" / "sandbox.yaml").read_text(encoding="utf-8"))
    obj = rollout_crd.new_object(namespace="ml", name="rec-model-v2-1-0", model="rec-model", canary_version="v2.1.0",
                                 policy_raw=sandbox, stable_version="v1.0.0", virtual_service="rec-model",
                                 triton={"stableUrl": "a:8000", "canaryUrl": "b:8000"})
    assert not crd_errors(obj)


def test_the_status_the_controller_writes_fits_the_crd() -> None:
    """Every status patch the controller sends, merged as the API server would, validates against the CRD."""
    from dataclasses import replace

    from canary import crd as rollout_crd
    from canary import rollout as rl
    from canary.errors import ConfigError
    from canary.model import CheckResult, Verdict, Outcome, Weights
    from canary.controller import Controller

    custom = _RecordingCustomObjects()
    op = Controller(custom=custom, core=None, router=None, metrics=None, identity="canary-controller-abc-1")  # type: ignore[arg-type]
    obj = _example("policy")
    obj["metadata"].update(generation=2, uid="u-1")
    spec = rollout_crd.parse(obj)
    verdict = Verdict.combine([CheckResult("latency-p95", "latency", Outcome.FAIL, "p95 +35% (limit 20%)",
                                             stable_value=0.1, canary_value=0.135, n_stable=900, n_canary=210),
                                 CheckResult("predictions", "prediction_shift", Outcome.PASS, "PSI 0.01")])
    state, _ = rl.new_rollout(model="rec-model", stable_version="v1.0.0", canary_version="v2.1.0", now=1.7e9)
    states = [state,
              replace(state, phase=rl.PROGRESSING, step=1, weights=Weights.canary_at(25), updated_at=1.7e9 + 60,
                      last_verdict=verdict.to_dict()),
              replace(state, phase=rl.PAUSED, step=1, weights=Weights.canary_at(25), reason="paused by operator"),
              replace(state, phase=rl.ROLLED_BACK, step=2, reason="latency-p95: p95 +35% (limit 20%), 2 failed looks",
                      updated_at=1.7e9 + 90, last_verdict=verdict.to_dict()),
              replace(state, phase=rl.PROMOTED, step=3, reason="promoted", updated_at=1.7e9 + 300)]
    for i, st in enumerate(states * 30):  # 150 writes: the verdict history is capped by the controller
        op._status(obj, spec, replace(st, updated_at=st.updated_at + i), verdict if i % 2 else None)
    op._fail_status(obj, ConfigError("CanaryRollout ml/x: spec.policy: checks[0].max_ms: unknown key (typo?)"))
    op._fail_status(obj, RuntimeError("boom: 'quoted' <and> odd %s"))
    assert custom.patches
    status: dict[str, Any] = {}
    for patch in custom.patches:
        status = _merge_patch(status, patch["status"])
        checked = {**_example("policy"), "status": status}
        assert not crd_errors(checked), crd_errors(checked)


# --------------------------------------------------------------------------- RBAC

def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_cluster_role_is_least_privilege() -> None:
    expected = {("modelcanary.dev", "canaryrollouts", v) for v in ("get", "list", "watch", "update", "patch")}
    expected |= {("modelcanary.dev", "canaryrollouts/status", v) for v in ("get", "update", "patch")}
    for resource in ("virtualservices", "destinationrules"):
        expected |= {("networking.istio.io", resource, v) for v in ("get", "list", "watch", "update", "patch")}
    expected |= {("", "events", "create"), ("", "events", "patch")}
    expected |= {("", "configmaps", v) for v in ("get", "list", "watch", "create", "update", "patch")}  # + histories (a part: a PATCH)
    # --drift: one retraining Job per episode, at most one in flight per model version (list: decision 173)
    expected |= {("batch", "jobs", "create"), ("batch", "jobs", "get"), ("batch", "jobs", "list")}
    expected |= {("", "pods", "list"), ("", "services", "get")}  # a Ready canary pod before traffic (routing/pods.py)
    assert grants(one("ClusterRole", "canary-controller")) == expected


def test_leader_election_is_a_namespaced_role() -> None:
    role = one("Role", "canary-leader-election")
    assert role["metadata"]["namespace"] == "canary-system"
    assert grants(role) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    kinds = {o["kind"] for _, o in all_objects()}
    assert not {"ClusterRole", "Role"} - kinds
    roles = [o for f, o in all_objects() if o["kind"] in ("ClusterRole", "Role") and not f.startswith("examples/")]
    assert len(roles) == 2, "no other roles: every permission is in docs/deploy.md"


def test_the_sweep_cronjob_example_has_least_privilege_in_its_namespace_only() -> None:
    """examples/sweep-cronjob.yaml: `canary sweep -n ml` as a CronJob, with what its calls need and no more
    (a Role in `ml`, never cluster-wide; its ServiceAccount bound to it)."""
    file = "examples/sweep-cronjob.yaml"
    role = one("Role", "canary-sweep", file)
    assert role["metadata"]["namespace"] == "ml"
    assert grants(role) == {("networking.istio.io", "virtualservices", v) for v in ("get", "list", "update")} | {
        ("networking.istio.io", "destinationrules", "get"), ("networking.istio.io", "destinationrules", "update"),
        ("modelcanary.dev", "canaryrollouts", "get"), ("", "events", "create"),
        ("", "configmaps", "get"), ("", "configmaps", "update")}  # each end in its rollout's history (811)
    binding = one("RoleBinding", "canary-sweep", file)
    assert binding["roleRef"]["name"] == "canary-sweep"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "canary-sweep", "namespace": "ml"}]
    job = one("CronJob", "canary-sweep", file)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["serviceAccountName"] == "canary-sweep"
    (c,) = job["containers"]
    assert c["args"][:3] == ["sweep", "--namespace", "ml"]
    from canary.cli import app
    from typer.testing import CliRunner

    assert CliRunner().invoke(app, [*c["args"], "--help"]).exit_code == 0, "the CronJob's arguments must parse"


@pytest.mark.parametrize(("kind", "role_kind", "role"), [("ClusterRoleBinding", "ClusterRole", "canary-controller"),
                                                         ("RoleBinding", "Role", "canary-leader-election")])
def test_bindings_bind_the_controller_service_account(kind: str, role_kind: str, role: str) -> None:
    binding = one(kind, file="controller.yaml")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    sa = one("ServiceAccount", "canary-controller")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert _deployment()["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


# --------------------------------------------------------------------------- the controller's Deployment

def test_controller_deployment() -> None:
    dep = _deployment()
    assert dep["metadata"]["namespace"] == "canary-system" == one("Namespace", "canary-system")["metadata"]["name"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/example/canary:0.1.0"
    assert c["args"] == ["controller", "run", "--leader-elect", "--metrics-addr", "0.0.0.0:8080"]
    assert "CANARY_PROMETHEUS_URL" in {e["name"] for e in c["env"]}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "300Mi"}}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http-metrics": 8080}
    assert (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]) == ("/healthz", "/readyz")
    assert ports[c["livenessProbe"]["httpGet"]["port"]] == ports[c["readinessProbe"]["httpGet"]["port"]] == 8080
    assert 0 < pod["terminationGracePeriodSeconds"] <= 60
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["labelSelector"]["matchLabels"] == labels


def test_pdb_and_metrics_service_select_the_controller() -> None:
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    pdb = one("PodDisruptionBudget", "canary-controller")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}
    svc = one("Service", "canary-controller-metrics")
    assert svc["spec"]["selector"] == labels
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("http-metrics", 8080, "http-metrics")]
    for obj in (pdb, svc, _deployment(), one("ServiceAccount", "canary-controller")):
        assert obj["metadata"]["namespace"] == "canary-system"


# --------------------------------------------------------------------------- the Triton example

TRITON = "triton-example.yaml"


def _triton_deployments() -> dict[str, dict[str, Any]]:
    deps = [o for f, o in all_objects() if f == TRITON and o["kind"] == "Deployment"]
    return {d["spec"]["template"]["metadata"]["labels"]["version"]: d for d in deps}


def test_triton_example_has_both_versions_ready_for_the_istio_example() -> None:
    deps = _triton_deployments()
    assert sorted(deps) == ["v1.0.0", "v2.1.0"]
    svc = one("Service", "rec-model", file=TRITON)
    vs = load_docs(ROOT / "istio" / "virtualservice.yaml")[0]
    dr = load_docs(ROOT / "istio" / "destinationrule.yaml")[0]
    assert vs["spec"]["hosts"] == [svc["metadata"]["name"]] and dr["spec"]["host"] == svc["metadata"]["name"]
    assert svc["metadata"]["namespace"] == vs["metadata"]["namespace"] == "ml"
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 8000), ("grpc", 8001), ("http-metrics", 8002)]
    for version, dep in deps.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app": "rec-model", "version": version}
        assert svc["spec"]["selector"].items() <= labels.items()
        for subset in dr["spec"]["subsets"]:  # the DR's subsets select pods by these labels (+ version)
            assert set(subset["labels"]) <= set(labels)


def test_triton_containers_probe_like_the_gate_and_get_a_gpu() -> None:
    gate = load_policy(ROOT / "policies" / "default.yaml").gates.triton
    assert gate is not None
    for dep in _triton_deployments().values():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert c["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
        ready, live = c["readinessProbe"], c["livenessProbe"]
        assert (ready["httpGet"]["path"], ready["httpGet"]["port"]) == ("/v2/health/ready", "http")
        assert (ready["periodSeconds"], ready["failureThreshold"]) == (gate.probe_interval, gate.probe_failures) == (1, 2)
        assert live["httpGet"]["path"] == "/v2/health/live"
        assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_each_version_scales_on_its_inference_queue() -> None:
    hpas = [o for f, o in all_objects() if f == TRITON and o["kind"] == "HorizontalPodAutoscaler"]
    deps = {d["metadata"]["name"] for d in _triton_deployments().values()}
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas) == sorted(deps)
    for hpa in hpas:
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
        assert metric["pods"]["target"]["type"] == "AverageValue"


# --------------------------------------------------------------------------- Dockerfile

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        word, _, args = (pending + line).strip().partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends in a continuation"
    return out


def test_dockerfile_parses_and_runs_as_non_root() -> None:
    steps = dockerfile()
    assert {w for w, _ in steps} <= INSTRUCTIONS, {w for w, _ in steps} - INSTRUCTIONS
    assert steps[0] == ("FROM", "python:3.11-slim AS build")
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    final = steps[last_from:]
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0] == str(_deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"])
    user_at = max(i for i, (w, _) in enumerate(final) if w == "USER")
    assert all(w != "RUN" for w, _ in final[user_at:]), "nothing runs as root after USER"
    assert [json.loads(a) for w, a in final if w == "ENTRYPOINT"] == [["canary"]]
    assert 'canary = "canary.__main__:main"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_dockerfile_builds_from_the_repository_root_without_secrets() -> None:
    for word, args in dockerfile():
        if word in ("COPY", "ADD") and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (ROOT / src).exists(), f"{word} {src}: not in the repository root (build context)"
        if word in ("ENV", "ARG", "LABEL"):
            for name in ("PASSWORD", "TOKEN", "SECRET", "API_KEY", "PRIVATE"):
                assert name not in args.upper(), f"{word} {args}: no secrets in the image"
    assert "ADD" not in {w for w, _ in dockerfile()}


# --------------------------------------------------------------------------- the image's lock

LOCK = DEPLOY / "requirements.txt"
LOCK_SCRIPT = ROOT / "scripts" / "lock_requirements.sh"
LOCK_IN_IMAGE = "canary/deploy/requirements.txt"


def lock_entries() -> dict[str, tuple[str, str, list[str]]]:
    """{canonical name: (version, marker, [sha256 hashes])}, from `name==version [; marker] --hash=...` entries."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = LOCK.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", "\n".join(line.split(" #")[0] for line in text.splitlines()))
    out: dict[str, tuple[str, str, list[str]]] = {}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{line!r}: no options in the lock (index, find-links, -e, -r)"
        spec, *opts = re.split(r"\s+(?=--)", line)
        req = Requirement(spec)
        (pin,) = req.specifier
        assert pin.operator == "==" and "*" not in pin.version, f"{spec}: pinned with == to one version"
        assert not req.url and not req.extras, spec
        hashes = [o.removeprefix("--hash=sha256:") for o in opts]
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{spec}: sha256 hashes"
        name = canonicalize_name(req.name)
        assert name not in out, f"{name}: twice in the lock"
        out[name] = (pin.version, str(req.marker or ""), hashes)
    return out


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def image_requirements() -> list[str]:
    """What the image must contain: the core dependencies, the `triton` extra, the build backend."""
    project = _pyproject()["project"]
    extras = project.get("optional-dependencies", {})
    triton = extras.get("triton", [])
    # before the `triton` extra existed, tritonclient was a core dependency: either way it is in the image
    assert triton or any(r.startswith("tritonclient") for r in project["dependencies"]), "the Triton gates' client"
    return [*project["dependencies"], *triton, *_pyproject()["build-system"]["requires"]]


def test_the_lock_pins_every_package_with_hashes() -> None:
    entries = lock_entries()
    assert len(entries) >= 20  # the resolved set, not only the direct dependencies
    head = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    assert any("scripts/lock_requirements.sh" in line for line in head), "the lock says how it was made"


def test_the_lock_satisfies_every_core_and_triton_dependency_for_python_311_on_linux() -> None:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    entries = lock_entries()
    env = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "platform_machine": "x86_64"}
    for line in image_requirements():
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in entries, f"{line}: not in {LOCK.name} (run scripts/lock_requirements.sh)"
        version = entries[name][0]
        assert req.specifier.contains(version, prereleases=True), \
            f"{line}: the lock has {version} (run scripts/lock_requirements.sh)"
    # resolved for the image's platform: no entry is meant for another one
    assert all(not marker or Marker(marker).evaluate(env) for _, marker, _ in entries.values())


def test_the_lock_script_regenerates_it_from_pyproject() -> None:
    script = LOCK_SCRIPT.read_text(encoding="utf-8")
    assert LOCK_SCRIPT.stat().st_mode & 0o111, "executable"
    for needle in ("pip compile", "pyproject.toml", "--extra triton", "--python-version 3.11", "--generate-hashes",
                   LOCK_IN_IMAGE, "build-system", "https://pypi.org/simple"):
        assert needle in script, needle
    assert re.search(r"^UV_VERSION=\d+\.\d+\.\d+$", script, re.M), "the resolver's version is pinned too"


def _pip_installs(run: str) -> list[list[str]]:
    """The argument lists after `pip install` in one RUN (commands joined with &&)."""
    out = []
    for command in re.split(r"&&|;", run):
        argv = shlex.split(command)
        for i, word in enumerate(argv[:-1]):
            if (word == "pip" or word.endswith("/pip") or word.endswith("/pip3")) and argv[i + 1] == "install":
                out.append(argv[i + 2:])
    return out


def test_dockerfile_installs_only_from_the_lock() -> None:
    steps = dockerfile()
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    build, final = steps[:last_from], steps[last_from:]
    copies = []  # (step, sources, destination)
    for i, (word, args) in enumerate(build):
        if word == "COPY":
            *sources, dest = shlex.split(args)
            copies.append((i, sources, dest))
    i_copy_lock, _, dest = next(c for c in copies if c[1] == [LOCK_IN_IMAGE])
    lock_file = Path(LOCK_IN_IMAGE).name if dest.endswith("/") else Path(dest).name
    i_copy_sources = min(i for i, sources, _ in copies if "canary" in sources)
    installs = [(i, args) for i, (w, a) in enumerate(build) if w == "RUN" for args in _pip_installs(a)]
    assert len(installs) == 2, f"one install from the lock, one of the project: {installs}"
    (i_lock, from_lock), (i_project, project) = installs
    # 1. the dependencies: the lock alone, exact and hash-checked, nothing resolved, nothing built from source
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(from_lock), from_lock
    assert from_lock.count("-r") == 1 and Path(from_lock[from_lock.index("-r") + 1]).name == lock_file
    named = [a for j, a in enumerate(from_lock) if not a.startswith("-") and from_lock[j - 1] != "-r"]
    assert named == [], f"packages named outside the lock: {named}"
    assert i_copy_lock < i_lock < i_copy_sources, "the lock's layer comes before the sources are copied"
    # 2. the project: itself only, built by the locked setuptools, then every dependency checked
    assert {"--no-deps", "--no-build-isolation"} <= set(project), project
    assert [a for a in project if not a.startswith("-")] == ["."], project
    assert i_lock < i_project
    assert any(re.search(r"\bpip check\b", a) for w, a in build[i_project:] if w == "RUN"), "pip check"
    # the runtime stage gets the virtual environment the lock went into, and runs from it
    venv = next(shlex.split(a)[-1] for w, a in build if w == "RUN" and "-m venv" in a)
    assert all(a.split()[0].startswith(f"{venv}/bin/") for w, a in build if w == "RUN" and "pip " in a)
    assert any(w == "COPY" and a.split() == ["--from=build", venv, venv] for w, a in final)
    assert any(w == "ENV" and f"PATH={venv}/bin:" in a for w, a in final)
    assert not any(_pip_installs(a) for w, a in final if w == "RUN"), "nothing installed in the runtime stage"


def _dockerignored(path: str) -> bool:
    """Whether BuildKit leaves `path` out of the context: the last matching pattern wins (a pattern also
    matches everything under a directory it matches)."""
    ignored = False
    for raw in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        rx = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(rx, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    for word, args in dockerfile():
        if word == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for src in sources:
                files = [src] if (ROOT / src).is_file() else [str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*.py")][:50]
                for f in files:
                    assert not _dockerignored(f), f"{f}: copied by the Dockerfile but left out by the .dockerignore"
    assert _dockerignored(".venv/bin/python") and _dockerignored("tests/unit/test_deploy_manifests.py")
    assert _dockerignored("canary/__pycache__/cli.cpython-311.pyc")


# --------------------------------------------------------------------------- Grafana

def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))


def panels() -> list[dict[str, Any]]:
    """Every panel but rows, including those inside collapsed rows."""
    out = []
    for p in dashboard()["panels"]:
        out.extend([p] if p["type"] != "row" else p.get("panels", []))
    return out


def exprs_of(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel["targets"]]


# what each source's panels may read, and the variables the dashboard's queries use
SOURCE_METRICS = {"model": "model_", "istio": "istio_", "triton": "nv_inference_"}
VARIABLES = {"$model": "rec-model", "$namespace": "ml", "$triton_arm_label": "version", "$check": "p95_latency",
             "$__range": "1h"}


def _overlaps(layout: list[dict[str, Any]]) -> None:
    cells: set[tuple[int, int]] = set()
    for p in layout:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["model"]["type"] == "query" and "canary_rollout_weight" in variables["model"]["definition"]
    assert variables["datasource"]["type"] == "datasource"
    assert {f"${name}" for name in variables} - {"$datasource"} == {v for v in VARIABLES if not v.startswith("$__")}
    ids = [p["id"] for p in dash["panels"]] + [p["id"] for p in panels()]
    assert len(set(ids)) == len(dash["panels"]) + sum(len(r.get("panels", [])) for r in dash["panels"])
    _overlaps(dash["panels"])  # the layout as shown; a collapsed row's panels as they unfold
    for row in dash["panels"]:
        if row["type"] == "row":
            assert bool(row["panels"]) == row["collapsed"], f"{row['title']}: collapsed rows hold their panels"
            _overlaps(row["panels"])
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(e for p in panels() for e in exprs_of(p))
    for needle in ('canary_rollout_weight{model="$model",namespace="$namespace"}', "canary_rollout_phase",
                   'histogram_quantile(0.95, sum by (le, model_version) '
                   '(rate(model_inference_duration_seconds_bucket{model_name="$model"}[1m])))',
                   "canary_check_effect_size", "increase(canary_rollbacks_total", "canary_verdicts_total",
                   "canary_time_to_rollback_seconds_bucket", "canary_tick_duration_seconds_bucket",
                   "canary_prometheus_errors_total", "canary_kube_errors_total"):
        assert needle in exprs, needle


def test_dashboard_reads_only_metrics_the_controller_exports() -> None:
    from canary.telemetry import Telemetry

    exported = {m.name for m in Telemetry().registry.collect()}  # base names: counters without _total
    exprs = " ".join(e for p in panels() for e in exprs_of(p))
    used = set(re.findall(r"\b(canary_[a-z_]+)", exprs))
    assert len(used) >= 9
    for name in used:
        base = re.sub(r"(_total|_bucket|_sum|_count)$", "", name)
        assert name in exported or base in exported, f"{name}: not a metric of canary.telemetry"


def test_every_query_of_a_per_rollout_series_picks_the_namespace() -> None:
    """The weight and phase panels read `canary_rollout_weight{model="$model"}` and `canary_rollout_phase{...}`
    without `namespace="$namespace"`, which the Istio panels and the variable itself (read from those very series)
    carry: two rollouts of one model name in two namespaces were drawn as one (the phase panel's `max by (phase)`
    showed both phases at once). Every series canary exports per rollout (a `namespace` label, read from the
    exporter itself) is picked by the namespace in every query of the dashboard (decision 573)."""
    from canary import rollout as rl
    from canary.model import Weights
    from canary.telemetry import Telemetry

    t = Telemetry()
    t.record_state(namespace="ml", rollout="r", state=rl.RolloutState(
        model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING, weights=Weights(90, 10)))
    per_rollout = {m.name for m in t.registry.collect() if any("namespace" in s.labels for s in m.samples)}
    assert {"canary_rollout_weight", "canary_rollout_phase", "canary_rollout_step"} <= per_rollout
    exprs = [e for p in panels() for e in exprs_of(p)] + [a["expr"] for a in dashboard()["annotations"]["list"]
                                                          if "expr" in a]
    read = 0
    for expr in exprs:
        for metric, matchers in re.findall(r"\b([a-z_]+)\{([^}]*)\}", expr):
            if metric in per_rollout:
                read += 1
                assert 'namespace="$namespace"' in matchers.split(","), f"{metric}{{{matchers}}} in {expr}"
        # a per-rollout series read with no selector at all
        assert not set(re.findall(r"\b(canary_[a-z_]+)\b(?!\{)", expr)) & per_rollout, expr
    assert read >= 2  # the weight and phase panels


def source_panels(source: str) -> dict[str, dict[str, Any]]:
    """A source's panels, by what they show: {'latency': panel, 'errors': panel}."""
    mine = [p for p in panels() if p["title"].endswith(f"source: {source}")]
    by_unit = {p["fieldConfig"]["defaults"]["unit"]: p for p in mine}
    assert len(mine) == len(by_unit) == 2 and set(by_unit) == {"ms", "percentunit"}, [p["title"] for p in mine]
    return {"latency": by_unit["ms"], "errors": by_unit["percentunit"]}


@pytest.mark.parametrize("source", sorted(SOURCE_METRICS))
def test_dashboard_has_latency_and_errors_for_every_source(source: str) -> None:
    from canary.metrics.queries import PRESETS

    assert set(SOURCE_METRICS) == set(PRESETS)
    preset, shown = PRESETS[source], source_panels(source)
    arm = "$triton_arm_label" if source == "triton" else preset.arm_label
    if source == "triton":  # the variable's default is the preset's arm label
        (var,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "triton_arm_label"]
        assert var["query"] == var["current"]["value"] == preset.arm_label
    for what, panel in shown.items():
        for expr in exprs_of(panel):
            selectors = re.findall(r"\b([a-z_]+)\{([^}]*)\}", expr)
            assert selectors and all(m.startswith(SOURCE_METRICS[source]) for m, _ in selectors), panel["title"]
            must = {f'{preset.model_label}="$model"', *(f'{k}="{v}"' for k, v in preset.fixed)}
            if preset.namespace_label:
                must.add(f'{preset.namespace_label}="$namespace"')
            for metric, matchers in selectors:  # every selector picks the model as the checks do
                assert must <= set(matchers.split(",")), f"{metric}{{{matchers}}}: needs {must}"
            assert f"by ({arm})" in expr or f"by (le, {arm})" in expr, expr
    errors = exprs_of(shown["errors"])[0]
    assert f"{preset.errors}{{" in errors and preset.errors_matcher in errors
    latency = shown["latency"]
    if preset.latency:  # a histogram: the p95 a latency check judges, converted to ms as the check does
        (expr,) = exprs_of(latency)
        assert f"histogram_quantile(0.95, sum by (le, {preset.arm_label}) (rate({preset.latency}_bucket{{" in expr
        assert expr.startswith("1000 * ") if preset.latency_to_ms == 1000 else "1000" not in expr
        assert latency["title"].startswith("p95")
    else:  # Triton: cumulative µs counters only; the panel says there is no quantile
        assert latency["title"].startswith("Mean") and all(e.endswith(" / 1000") for e in exprs_of(latency))
        assert "no latency histogram" in latency["description"] and "no p95" in latency["description"]


LATENCY_TO_MS = {"model_inference_duration_seconds_bucket": 1000.0, "istio_request_duration_milliseconds_bucket": 1.0,
                 "nv_inference_request_duration_us": 0.001, "nv_inference_queue_duration_us": 0.001}
GAUGE_UNITS = {"canary_rollout_weight": "percent", "canary_check_effect_size": "none", "canary_rollout_phase": "short",
               "canary_leader": "short"}


def unit_of(expr: str) -> str:
    """The unit an expression's values are in, from the metrics it reads and what it does with them."""
    bare = re.sub(r"\{[^}]*\}|by \([^)]*\)", "", expr)  # metric names only, no label names
    metrics = set(re.findall(r"\b((?:canary|model|istio|nv)_[a-z_]+)", bare))
    latency = metrics & set(LATENCY_TO_MS)
    if latency:
        (factor,) = {LATENCY_TO_MS[m] for m in latency}
        ok = {1000.0: expr.startswith("1000 * "), 1.0: "1000" not in expr, 0.001: expr.endswith(" / 1000")}[factor]
        assert ok, f"{expr}: not converted to ms"
        return "ms"
    if " / " in expr:
        return "percentunit"  # a share of requests
    if expr.startswith("histogram_quantile(") and all(m.endswith("_seconds_bucket") for m in metrics):
        return "s"
    if "rate(" in expr:
        return "reqps"
    if "increase(" in expr:
        return "short"
    (unit,) = {GAUGE_UNITS[m] for m in metrics}
    return unit


def test_no_panel_mixes_units() -> None:
    for p in panels():
        assert all(prop["id"] != "unit" for o in p["fieldConfig"]["overrides"] for prop in o["properties"]), p["title"]
        units = {unit_of(e) for e in exprs_of(p)}
        assert units == {p["fieldConfig"]["defaults"]["unit"]}, (p["title"], units)
        if units == {"ms"}:  # one statistic too: quantiles and means are not drawn on one axis
            assert len({e.startswith("1000 * histogram") or e.startswith("histogram") for e in exprs_of(p)}) == 1
    # each check's effect size is in that check's unit (ms, percentage points, PSI...): one panel per check
    (effect,) = [p for p in panels() if any("canary_check_effect_size" in e for e in exprs_of(p))]
    assert effect["repeat"] == "check" and exprs_of(effect) == ['canary_check_effect_size{model="$model",check=~"$check"}']
    assert "$check" in effect["title"]


def _substituted(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"{expr}: a variable the test does not know"
    return expr


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return promtool


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    promtool = _promtool()
    exprs = [e for p in panels() for e in exprs_of(p)]
    exprs += [a["expr"] for a in dashboard()["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
              for v in dashboard()["templating"]["list"] if v.get("definition", "").startswith("label_values(")]
    rules = [{"record": f"dashboard:expr{i}", "expr": _substituted(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def _series(name: str, labels: dict[str, str], per_15s: float) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": f"0+{per_15s:g}x40"}


def _known_traffic() -> list[dict[str, str]]:
    """Canary v2: every request takes 20-30 ms (Triton: 25 ms on average), 2% fail; stable v1: no error series."""
    model = {"model_name": "rec-model"}
    istio = {"reporter": "destination", "destination_service_name": "rec-model", "destination_service_namespace": "ml"}
    out = []
    for version in ("v1", "v2"):
        m, i, t = {**model, "model_version": version}, {**istio, "destination_version": version}, \
            {"model": "rec-model", "version": version}
        for le, n in (("0.02", 0), ("0.03", 100), ("+Inf", 100)):
            out.append(_series("model_inference_duration_seconds_bucket", {**m, "le": le}, n))
        for le, n in (("20", 0), ("30", 100), ("+Inf", 100)):
            out.append(_series("istio_request_duration_milliseconds_bucket", {**i, "le": le}, n))
        out.append(_series("nv_inference_request_duration_us", t, 100 * 25_000))
        out.append(_series("nv_inference_queue_duration_us", t, 100 * 5_000))
        fail = 2 if version == "v2" else 0
        out.append(_series("model_requests_total", {**m, "outcome": "success"}, 100 - fail))
        out.append(_series("istio_requests_total", {**i, "response_code": "200"}, 100 - fail))
        out.append(_series("nv_inference_request_success", t, 100 - fail))
        if fail:
            out.append(_series("model_requests_total", {**m, "outcome": "error"}, fail))
            out.append(_series("istio_requests_total", {**i, "response_code": "503"}, fail))
        out.append(_series("nv_inference_request_failure", t, fail))  # Triton exports it at 0
    return out


def test_every_source_latency_panel_reads_ms_and_error_panel_a_share(tmp_path: Path) -> None:
    """Fed the same traffic in each source's own units (s, ms, µs), every source's panels show ms and 0..1."""
    promtool = _promtool()
    tests = []
    expected = {("model", "latency", "A"): 29.5, ("istio", "latency", "A"): 29.5, ("triton", "latency", "A"): 25.0,
                ("triton", "latency", "B"): 5.0}  # p95 inside the 20-30 ms bucket; Triton's means
    arm = {"model": "model_version", "istio": "destination_version", "triton": "version"}
    for source in SOURCE_METRICS:
        for what, panel in source_panels(source).items():
            for t in panel["targets"]:
                per_arm = {"v1": 0.0, "v2": 0.02} if what == "errors" else \
                    {v: expected[(source, what, t["refId"])] for v in ("v1", "v2")}
                # round(): promtool 2.42 compares floats exactly, and 25 ms reads as 24.999999999999996
                tests.append({"expr": f"round({_substituted(t['expr'])}, 0.001)", "eval_time": "5m",
                              "exp_samples": [{"labels": f'{{{arm[source]}="{v}"}}', "value": x}
                                              for v, x in per_arm.items()]})
    (tmp_path / "rules.yaml").write_text("groups: []\n", encoding="utf-8")
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": _known_traffic(), "promql_expr_test": tests}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    done = subprocess.run([promtool, "test", "rules", "test.yaml"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(tests) == 7


# --------------------------------------------------------------------------- docs

def test_deploy_docs_explain_every_permission() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for group, resource, _verb in grants(one("ClusterRole")) | grants(one("Role", "canary-leader-election")) | \
            grants(one("Role", "canary-sweep")):
        assert resource.split("/")[0] in text, resource
    for needle in ("examples/sweep-cronjob.yaml", "docker build -f canary/deploy/Dockerfile", "prometheus-adapter", "kubectl apply -k canary/deploy",
                   "grafana-dashboard.json", "scripts/lock_requirements.sh", "--require-hashes", "triton_arm_label"):
        assert needle in text, needle


def test_the_controller_never_runs_old_and_new_replicas_together() -> None:
    """Recreate: an update that changes CANARY_SHARDS would otherwise overlap two lease layouts
    (canary-controller vs canary-controller-shard-<i>-of-<N>), each with its leader driving the
    same rollouts (a rolling update did, in a fourth review of decision 60)."""
    dep = one("Deployment", file="controller.yaml")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}

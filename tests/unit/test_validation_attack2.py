"""A second attacker on input validation (docs/decisions.md 98): inputs that were accepted, or refused
only after something was created, each refused before anything is sent, naming the object and field.

Pure: no cluster (a kubeconfig pointing at a closed port: any request would fail as unreachable, exit 3,
not 2), no Prometheus."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canary import crd
from canary.cli import app
from canary import cli_controller
from canary.errors import ConfigError, NotFound
from canary.model import check_object_name
from tests import fleet


def _closed_port() -> int:
    from tests.support.refused import refused_port

    return refused_port()  # held refusing: a port bound and closed again could be any server's next


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(copy.deepcopy(fleet.FAST_POLICY)))
    return fleet.write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{_closed_port()}"), policy


# ---- CanaryRollout spec.policyRef: its names go into a request path ------------------------------------------


def _ref(**ref: Any) -> dict[str, Any]:
    obj = fleet.rollout_object(0, "v2")
    del obj["spec"]["policy"]
    obj["spec"]["policyRef"] = {"configMap": "pol", "key": "policy.yaml", **ref}
    return obj


@pytest.mark.parametrize(("ref", "field"), [
    ({"configMap": "../x"}, "spec.policyRef.configMap"),
    ({"configMap": "a/b"}, "spec.policyRef.configMap"),
    ({"configMap": "Pol"}, "spec.policyRef.configMap"),
    ({"configMap": "pol?watch=1"}, "spec.policyRef.configMap"),
    ({"key": "../policy.yaml"}, "spec.policyRef.key"),
    ({"key": "policy yaml"}, "spec.policyRef.key"),
    ({"key": "k" * 254}, "spec.policyRef.key"),
])
def test_a_policy_ref_that_is_no_configmap_name_or_key_is_refused_before_it_is_read(ref: dict[str, Any],
                                                                                   field: str) -> None:
    """'../x' went into the ConfigMap's request path (decision 64 checks the names of the objects a rollout
    drives; this one was left out), and a missing ConfigMap's error named neither the rollout nor the field."""
    asked: list[str] = []

    def configmap(ns: str, name: str) -> dict[str, str]:
        asked.append(name)
        return {}

    with pytest.raises(ConfigError) as err:
        crd.parse(_ref(**ref), configmap=configmap)
    assert f"CanaryRollout ml/r0: {field}" in str(err.value)
    assert asked == [], "the ConfigMap was asked for under a name that is none"


def test_a_missing_policy_configmap_names_the_rollout_and_the_field() -> None:
    def configmap(ns: str, name: str) -> dict[str, str]:
        raise NotFound(f"ConfigMap {ns}/{name} cannot be read: (404) Not Found")

    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0: spec\.policyRef\.configMap: ConfigMap ml/pol "):
        crd.parse(_ref(), configmap=configmap)
    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0: spec\.policyRef\.key: ConfigMap ml/pol has no key"):
        crd.parse(_ref(), configmap=lambda ns, name: {"other.yaml": ""})
    with pytest.raises(ConfigError, match=r"^CanaryRollout ml/r0 spec\.policyRef: ConfigMap ml/pol\[policy\.yaml\]: "
                                          r"2 problems"):
        crd.parse(_ref(), configmap=lambda ns, name: {"policy.yaml": "steps: [10]\nchecks: []\n"})


# ---- `canary promote`: a flag that does nothing in the mode asked for -------------------------------------


@pytest.mark.parametrize(("extra", "says"), [
    (["--timeout", "30m"], "--timeout only applies with --via-controller"),
    (["--rollout-name", "r1"], "--rollout-name only applies with --via-controller"),
    (["--via-controller", "--on-interrupt", "pause"], "--on-interrupt only applies without --via-controller"),
    (["--via-controller", "--on-interrupt", "rollback"], "--on-interrupt only applies without --via-controller"),
    (["--via-controller", "--interrupt-grace", "10s"], "--interrupt-grace only applies without --via-controller"),
])
def test_promote_refuses_a_flag_its_mode_ignores(files: tuple[Path, Path], extra: list[str], says: str) -> None:
    """`--timeout 30m` without --via-controller bounded nothing (the rollout ran its course), and
    `--on-interrupt pause` with it held nothing: the follower's interrupt leaves the rollout to the
    controller. Both were taken without a word; exit 2 before anything is read or written."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9", *extra])
    assert res.exit_code == 2, res.output
    assert says in res.output


@pytest.mark.parametrize("extra", [["--prometheus-url", "http://127.0.0.1:9"], ["--prometheus-token", "t"],
                                   ["--prometheus-user", "u"], ["--prometheus-password", "p"],
                                   ["--prometheus-ca-file", "ca.pem"], ["--insecure-skip-tls-verify"]])
def test_via_controller_refuses_a_prometheus_flag_typed(files: tuple[Path, Path], extra: list[str]) -> None:
    """The controller measures with its own Prometheus: `--prometheus-url` given to a follower was taken without
    a word and carried nowhere (decision 651). Exit 2 naming the flag, with the -o json document."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--via-controller", "-o", "json", *extra])
    assert res.exit_code == 2, res.output
    assert f"{extra[0]} does not apply with --via-controller: the controller measures with its own" in res.output


def test_via_controller_takes_the_prometheus_variables_exported_for_other_commands(files: tuple[Path, Path]) -> None:
    """CANARY_PROMETHEUS_URL exported for `analyze` and `drift` (as `demo --keep` says) is not refused: the
    bad --rollout-name is what is said, before anything is sent."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--via-controller", "--rollout-name", "Bad_Name"],
                             env={"CANARY_PROMETHEUS_URL": "http://127.0.0.1:9", "CANARY_PROMETHEUS_INSECURE": "1"})
    assert res.exit_code == 2, res.output
    assert "--rollout-name 'Bad_Name' is not a Kubernetes object name" in res.output and "Prometheus" not in res.output


# ---- `promote --via-controller`: what the controller would refuse, refused before the CR is created ---------


@pytest.mark.parametrize(("kw", "says"), [
    ({"stable_version": "v 1"}, "--stable-version 'v 1' is not a Kubernetes label value"),
    ({"stable_version": "v2"}, "--canary-version 'v2' is --stable-version too: a rollout compares"),
    ({"name": "Bad_Name"}, "--rollout-name 'Bad_Name' is not a Kubernetes object name"),
    ({"name": "a/b"}, "--rollout-name 'a/b' is not a Kubernetes object name"),
])
def test_via_controller_refuses_bad_input_before_creating_anything(files: tuple[Path, Path], kw: dict[str, Any],
                                                                   says: str) -> None:
    """Each was sent in a CanaryRollout: the API server refused the name (422), or the controller refused
    the rest at its first tick (Ready False), and the follower waited out its --timeout (1h) for a phase that
    never came, then exited 3. The kubeconfig points at a closed port: any request would be exit 3."""
    kubeconfig, policy = files
    args: dict[str, Any] = dict(model="m0", canary_version="v2", policy_file=policy, namespace="ml", stable_version="",
                                virtual_service="m0" if "model" in kw else None, kubeconfig=str(kubeconfig),
                                context=None, name=None, triton=None, output="text", timeout_s=5)
    with pytest.raises(ConfigError) as err:
        cli_controller.follow(**{**args, **kw})
    assert says in str(err.value)


@pytest.mark.parametrize(("model", "version", "name"), [
    ("rec-model", "v2.1.0", "rec-model-v2-1-0-"),
    ("rec-model", "V2_1", "rec-model-v2-1-"),   # a label value may hold '_' and upper case; an object name neither
    ("m", "2024_05_01.rc-1", "m-2024-05-01-rc-1-"),
    ("m", "v2-1", "m-v2-1"),  # nothing changed: the name as it reads, no hash
])
def test_the_default_rollout_name_is_an_object_name_for_every_version(model: str, version: str, name: str) -> None:
    assert cli_controller.rollout_name(model, version).startswith(name)
    assert len(cli_controller.rollout_name(model, version)) == len(name) + (8 if name.endswith("-") else 0)
    check_object_name(cli_controller.rollout_name(model, version), "name")


def test_versions_that_read_alike_as_an_object_name_get_distinct_default_names() -> None:
    """`v2.1`, `v2_1`, `V2.1` and `v2-1` were all `m-v2-1`: a second pipeline's request met the first one's
    CanaryRollout under its name (decision 701). Each name is the same for the same request (a retry finds its own)."""
    versions = ["v2.1", "v2_1", "V2.1", "v2-1", "V2-1"]
    names = [cli_controller.rollout_name("m", v) for v in versions]
    assert len(set(names)) == len(versions), names
    assert names == [cli_controller.rollout_name("m", v) for v in versions]
    assert cli_controller.rollout_name("M", "v2") != cli_controller.rollout_name("m", "v2")


@pytest.mark.parametrize(("model", "version"), [
    ("m" * 253, "v2"),                  # a model name as long as a VirtualService's may be: 256 characters
    ("m" * 240, "V" * 63),              # and a version as long as a label value: cut, and the hash kept
    ("Rec+Model x", "v1"),              # a Triton model name (with --virtual-service) that no object name holds
    ("m@x", "v1"), ("_m", "v2"),
])
def test_the_default_rollout_name_fits_an_object_name_whatever_the_model(model: str, version: str) -> None:
    """`<model>-<version>` past 253 characters, or holding a character other than '.' and '_', was refused as "the
    CanaryRollout's name ... is not a Kubernetes object name", a name nobody typed (decision 742). Now it is cut
    to fit (a DNS-1123 subdomain, the API server's rule for a custom resource's name) and carries the hash of the
    exact request, so two long models that share their first 244 characters still get distinct names."""
    name = cli_controller.rollout_name(model, version)
    check_object_name(name, "name")
    assert len(name) <= 253 and name == cli_controller.rollout_name(model, version)
    assert name.endswith("-" + hashlib.sha256(f"{model}/{version}".encode()).hexdigest()[:8])
    assert cli_controller.rollout_name(model + "x", version) != name


@pytest.mark.parametrize(("job", "named"), [
    ("https://ci/job/1", "https://ci/job/1"),
    ("https://ci/job/1;reboot", ""),  # what a shell reads: never named (decision 401)
    ("https://ci/job/$(id)", ""),
])
def test_the_ci_job_of_a_canaryrollout_held_by_another_request_is_read_as_the_controller_reads_it(
        job: str, named: str) -> None:
    """The busy refusal of a request meeting another's running CanaryRollout (decision 701) names that request's CI
    job, `holder_job` in `-o json`, which a pipeline's shell reads: the annotation is anyone's who may edit the
    object, so it is read as the controller reads it (`ci_job.readable`), a value that is no job's shape none."""
    obj = {"metadata": {"generation": 1, "annotations": {"modelcanary.dev/ci-job": job}},
           "spec": {"model": "m0", "canaryVersion": "v2"}, "status": {}}
    assert cli_controller._request_job(obj) == named
    said = cli_controller.held_by_another(obj, {"model": "m0", "canaryVersion": "v2.1"})
    assert said.startswith("is another request's rollout of m0 v2 (waiting to be claimed"), said
    assert ("CI job" in said) == bool(named) and (job in said) == bool(named), said


@pytest.mark.parametrize("extra", [["--on-interrupt", "ignore"], ["--timeout", "30m"]])
def test_a_refused_flag_still_prints_the_promised_document(files: tuple[Path, Path], extra: list[str]) -> None:
    """-o json promises a document on stdout on every path (the CI snippet's `jq` reads it); a bad
    --on-interrupt printed nothing there."""
    import json

    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   "-o", "json", *extra])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and doc["phase"] is None and extra[0] in doc["error"]

"""`promote --via-controller` in a CI job: the CanaryRollout it creates names the job (annotation
`modelcanary.dev/ci-job`), and the controller records it as its rollout's `job`, so the holder is named by the
job wherever a promote's is (decision 389). One written by hand out of a job's shape is not recorded.

The strict API emulator, a real Prometheus and the controller in-process (tests/integration/test_controller)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
from canary import ci_job, crd
from canary.cli_controller import follow
from canary.errors import CanaryError
from tests import fleet
from tests.integration.test_controller import prometheus, run_until_done, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
JOB = "https://gitlab.acme.example/ml/models/-/jobs/4242"


def _record(api: Any) -> dict[str, Any]:
    vs = api.get("networking.istio.io", "virtualservices", "ml", "m0")
    return json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])


def test_the_follower_names_its_job_on_the_canaryrollout_and_the_controller_records_it(
        world: Any, tmp_path: Any, monkeypatch: Any) -> None:
    api, op, custom = world
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_JOB_URL", JOB)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    with pytest.raises(CanaryError, match="no controller has read it"):  # no controller yet
        follow(model="m0", canary_version="v2", policy_file=policy, namespace="ml", stable_version="",
               virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="r0", triton=None,
               output="json", timeout_s=0.5)
    cr = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert cr["metadata"]["annotations"][ci_job.ANNOTATION] == JOB
    run_until_done(op, custom, ["r0"])
    assert _record(api)["job"] == JOB and _record(api)["owner"].startswith("CanaryRollout ml/r0")


def test_a_hand_written_annotation_out_of_a_jobs_shape_is_not_recorded(world: Any) -> None:
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["annotations"] = {ci_job.ANNOTATION: "https://x.example/\u001b[2J\nFAKE"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    run_until_done(op, custom, ["r0"])
    assert "job" not in _record(api)

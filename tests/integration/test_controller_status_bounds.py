"""What the controller writes into a CanaryRollout's status is what the shipped CRD admits, whatever the
record it mirrors carries. Against the API emulator (which does not check CRD schemas: the stored object is
checked against the CRD's structural schema instead), a real Prometheus and the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, world  # noqa: F401
from tests.support import cli

pytestmark = pytest.mark.integration


def test_a_status_of_an_end_with_a_long_reason_is_one_the_crd_admits(world: Any, tmp_path: Path) -> None:
    """On-call ends r0 with `canary rollback --reason` and a pasted alert of 6,000 characters (the flag has
    no bound). The controller mirrored the record's reason whole into status.reason, which the shipped CRD
    bounds at 4096: a real API server refuses that status write (422) at every tick, and the CanaryRollout
    showed the rollout in progress for ever. The status now carries the reason cut to the bound (the
    record and the Event keep it whole), and validates against the CRD."""
    from tests.unit.test_deploy_manifests import crd_errors

    api, op, custom = world
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    alert = "p99 alert: " + " ".join(f"pod-{i} 503" for i in range(800))
    res = cli.run(["rollback", "m0", "-n", "ml", "--reason", alert, "--kubeconfig", str(kubeconfig)],
                  env={"KUBECONFIG": ""})
    assert res.returncode == 0, res.stderr
    for _ in range(2):
        op.tick()
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert obj["status"]["phase"] == rl.ROLLED_BACK and obj["status"]["reason"].startswith("operator: p99 alert")
    assert not crd_errors(obj), crd_errors(obj)

"""`promote --via-controller` retried by a pipeline (decision 116): the first follower's runner was lost,
or it gave up at `--timeout` (exit 3, "it keeps running in the controller"), and the controller finished
the rollout meanwhile. The retry met the CanaryRollout that already ran its version and exited 2 ("bad
input, untouched") whatever that rollout's end: a promoted version read as a broken pipeline, and a
plain `promote` re-run reports the same promotion with exit 0 (decision 22). Now the end the object
reached is the outcome while the route still shows it; anything recorded on the route since is refused
as before (decision 75 (r): an old end is never reported while another version serves).

The strict API emulator, a real Prometheus and the controller in-process (tests/integration/test_controller).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
from canary import crd
from canary import rollout as rl
from canary.cli_controller import follow
from canary.errors import ConfigError
from tests import fleet
from tests.integration.test_controller import prometheus, run_until_done, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _retry(tmp_path: Any, api: Any, version: str, *, retry: bool = False) -> int:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    return follow(model="m0", canary_version=version, policy_file=policy, namespace="ml", stable_version="",
                  virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="r0", triton=None,
                  output="json", timeout_s=30, retry=retry)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_a_retried_follower_exits_by_the_end_its_rollout_reached(world: Any, tmp_path: Any, capsys: Any,
                                                                 version: str) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, version))
    want = fleet.expected_phase(version)
    assert run_until_done(op, custom, ["r0"])["r0"]["status"]["phase"] == want  # the first follower is gone
    capsys.readouterr()
    code = _retry(tmp_path, api, version)
    assert code == {rl.PROMOTED: 0, rl.ROLLED_BACK: 1}[want]
    doc = json.loads(capsys.readouterr().out)
    assert doc["outcome"] == want and doc["exit_code"] == code and doc["already_ended"] is True
    # the fields a plain promote's document gives a pipeline: the step counted from 1, and why it ended
    assert doc["step_number"] == doc["step"] >= 1
    assert doc.get("end_cause") == ("check" if want == rl.ROLLED_BACK else None), doc.get("reason")
    # ...as the controller recorded it on the status (decision 609), not read back from the reason's words
    assert doc.get("endCause") == ("check" if want == rl.ROLLED_BACK else None), doc


def test_a_retry_after_another_rollout_on_the_route_is_still_refused(world: Any, tmp_path: Any) -> None:
    """r0 promoted v2; another CanaryRollout ran v3 on the same route since (rolled back): r0's end is no
    longer what the route shows, so the retry of v2 is refused (exit 2), never reported as promoted."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    run_until_done(op, custom, ["r0"])
    other = fleet.rollout_object(0, "v3")
    other["metadata"]["name"] = "later"
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, other)
    assert run_until_done(op, custom, ["later"])["later"]["status"]["phase"] == rl.ROLLED_BACK
    with pytest.raises(ConfigError, match="already ran v2 \\(promoted"):
        _retry(tmp_path, api, "v2")


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_retry_never_reports_the_old_rollback_of_its_canaryrollout(world: Any, tmp_path: Any, capsys: Any,
                                                                   version: str) -> None:
    """`promote --via-controller --retry` of the version its CanaryRollout rolled back met that object and reported
    its old end (exit 1): `--retry` was silently ignored. It is refused now, naming what runs it again (exit 2,
    nothing started); a promoted one is still reported (exit 0), as a plain `promote --retry` reports it."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, version))
    want = fleet.expected_phase(version)
    assert run_until_done(op, custom, ["r0"])["r0"]["status"]["phase"] == want
    capsys.readouterr()
    if want == rl.PROMOTED:
        assert _retry(tmp_path, api, version, retry=True) == 0
        assert json.loads(capsys.readouterr().out)["already_ended"] is True
        return
    before = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    with pytest.raises(ConfigError, match="--retry runs the version again only as a new CanaryRollout"):
        _retry(tmp_path, api, version, retry=True)
    after = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # nothing written

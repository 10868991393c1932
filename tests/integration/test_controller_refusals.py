"""Requests of the controller the Kubernetes API refuses mid-rollout (decision 536): a status write a CRD
stricter than this release answers 422, a policyRef ConfigMap read RBAC answers 403. Each ends the rollout
(stable 100%, the safe side) and is said as what it is, `rollout.api_refused` naming the request, never
`rollout.invalid` (which tells on-call the spec was invalid). Against the strict API emulator and a real
Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary.controller import FINALIZER
from canary import rollout as rl
from tests import fleet
from tests.fakes import HeldClock
from tests.integration.test_controller import GROUP, _fresh, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_review import _with_policy_ref

pytestmark = pytest.mark.integration


def _ended_refused(op: Any, api: Any, request: str, status: int) -> dict[str, Any]:
    """Two ticks of a controller made under the capture (its logger is bound at construction): m0 ends at stable
    100%, aborted, and `rollout.api_refused`, said once, names `request` and `status` (no `rollout.invalid`); that
    line."""
    with capture_logs() as logs:
        op = _fresh(op)
        for _ in range(2):
            op.tick()
    assert not [e for e in logs if e["event"] == "rollout.invalid"], [(e["event"], e.get("error")) for e in logs]
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
    refused = [e for e in logs if e["event"] == "rollout.api_refused"]
    assert len(refused) == 1 and refused[0]["request"] == request and refused[0]["http_status"] == status, refused
    return refused[0]


def _status_write_refused_mid_rollout(world: Any, status: int, message: str | None = None) -> dict[str, Any]:
    """m0 progressing, then every status write answered `status` (with `message`): `_ended_refused`'s line."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"onPrometheusOutage": "hold"}})  # a new generation: a status write
    api.fail_next(status, times=100, methods=("PATCH",), plural="canaryrollouts", message=message)
    return _ended_refused(op, api, "the status write of CanaryRollout ml/r0", status)


def test_a_status_write_refused_422_ends_the_rollout_said_as_refused_not_invalid(world: Any) -> None:
    """A CRD stricter than this release refuses the status write (422): the rollout was aborted (kept: stable
    100%), logged `rollout.invalid` as if its spec were. Said now as the status write the API server refused."""
    refused = _status_write_refused_mid_rollout(world, 422)
    assert "HTTP 422" in refused["error"]


def test_a_status_write_answered_400_is_said_as_canarys_bug_at_stable_100(world: Any) -> None:
    """A 400 Bad Request on the controller's own status write (a body the API server cannot read: canary composed
    it, not the user) ended the rollout as a 422 does, stable 100%, but its line said only "the Kubernetes API
    rejected the request (HTTP 400 ...)", and the README (now docs/reference/events.md's `rollout.api_refused`) sent
    on-call to "fix the RBAC or the CRD". It now says whose fault it is, where traffic is and what to do, there and
    in the end the route records (decision 536's addendum)."""
    error = _status_write_refused_mid_rollout(world, 400)["error"]
    assert "HTTP 400 Bad Request on canary's own write" in error and "composed: injected fault: HTTP 400)" in error, error
    assert "a bug of canary's, not of the CanaryRollout's spec" in error, error
    assert "the rollout ends at stable 100%" in error and "report it" in error, error
    reason = vs(world[0], 0)[1]["reason"]  # what `canary status` and the report show of the end
    assert reason.startswith("failed: CanaryRollout ml/r0 status: HTTP 400 Bad Request on canary's own write, a bug "
                             "of canary's"), reason


@pytest.mark.parametrize("status,denial,by", [
    (400, 'admission webhook "validate.kyverno.svc-fail" denied the request: policy require-team-label: the label '
          "team is required", 'admission webhook "validate.kyverno.svc-fail"'),
    (403, 'canaryrollouts.modelcanary.dev "r0" is forbidden: ValidatingAdmissionPolicy \'freeze\' with binding '
          "'freeze-ml' denied request: change freeze until Monday",
     "ValidatingAdmissionPolicy 'freeze' with binding 'freeze-ml'"),
])
def test_a_status_write_an_admission_check_denies_names_it_not_canarys_bug_nor_rbac(
        world: Any, status: int, denial: str, by: str) -> None:
    """An admission webhook that denies without a code of its own is answered HTTP 400 by the API server (Kyverno's
    denials, a webhook's plain `allowed: false`); a ValidatingAdmissionPolicy's 403. The 400 was said as "a bug of
    canary's ... report it", the 403 as "check RBAC": on-call filed a bug, or read the Role, while the cluster's
    policy went on denying every CanaryRollout's status. Said now as that policy's denial, naming it (decision
    583); the rollout still ends at stable 100%."""
    error = _status_write_refused_mid_rollout(world, status, denial)["error"]
    assert f"HTTP {status}: {by} of this cluster denied canary's own status write, a policy of the cluster's" in error
    assert "bug" not in error.replace("not canary's bug", "") and "check RBAC" not in error, error
    assert "the rollout ends at stable 100%" in error and denial[-30:] in error, error
    reason = vs(world[0], 0)[1]["reason"]  # what `canary status` and the report show of the end
    assert reason.startswith(f"failed: CanaryRollout ml/r0 status: HTTP {status}: {by} of this cluster"), reason


def _canary_shares(api: Any, i: int = 0) -> list[int]:
    """The canary's weight in every version of m{i}'s VirtualService the emulator stored (its change log: every
    write it served, in order)."""
    key = (GROUP, "virtualservices", "ml", fleet.model(i))
    return [o["spec"]["http"][0]["route"][1]["weight"] for _, _, k, o in api.handler.log if k == key]


def test_a_claim_whose_status_write_is_refused_ends_there_and_never_moves_traffic(world: Any) -> None:
    """The claim's status write is refused (422: a CRD stricter than this release): the rollout ends at the claim,
    stable 100% and aborted, said as the status write refused. It began its first step at the next tick instead
    (80/20: the canary got traffic), and only that step's refused status write ended it."""
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["finalizers"] = [FINALIZER]  # its own PATCH is no status write: none of this test's
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    api.fail_next(422, times=100, methods=("PATCH",), plural="canaryrollouts")
    _ended_refused(op, api, "the status write of CanaryRollout ml/r0", 422)
    assert _canary_shares(api) and not any(_canary_shares(api)), _canary_shares(api)


def test_a_policy_configmap_read_refused_by_rbac_ends_the_rollout_naming_the_configmap(world: Any) -> None:
    """RBAC refuses the policyRef ConfigMap's read mid-rollout (403: a ClusterRole upgrade dropped `configmaps
    get`): the rollout ends (stable 100%: its policy cannot be read, as for a ConfigMap deleted), said as the read
    of ConfigMap ml/pol RBAC refused; it was `rollout.invalid` "cannot be read: 403 Forbidden"."""
    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    api.fail_next(403, times=100, methods=("GET",), plural="configmaps")
    refused = _ended_refused(op, api, "the read of ConfigMap ml/pol", 403)
    assert "check RBAC" in refused["error"] and "spec.policyRef.configMap" in refused["error"]


def test_a_policy_configmap_read_answered_401_is_renewed_and_the_rollout_goes_on(world: Any, tmp_path: Any) -> None:
    """The controller's token is revoked just as it reads the policyRef ConfigMap mid-rollout (401): the client
    renews it with the exec plugin and sends the read again (`renew_on_401`, as for every request of the
    controller), and the rollout goes on at its step; a 401 is no refusal while a renewal mends it."""
    import kubernetes.client as kc

    from canary.controller import Controller
    from canary.kube import api_client
    from tests.support.kube_tokens import ExecTokens

    api, op, custom = world
    _with_policy_ref(api, custom)
    _progressing(op, custom, api)
    before = vs(api, 0)
    tokens = ExecTokens(tmp_path / "plugin")
    api.handler.accept_tokens = lambda token: token is None or tokens.accept(token)  # the test's client sends none
    client = api_client(kubeconfig=str(tokens.kubeconfig(tmp_path / "exec-kubeconfig", api.url)))
    core = kc.CoreV1Api(client)
    real = core.read_namespaced_config_map

    def revoked_first(*args: Any, **kw: Any) -> Any:
        tokens.revoke()  # every token handed out so far: this very read is answered 401
        return real(*args, **kw)

    core.read_namespaced_config_map = revoked_first  # type: ignore[method-assign]
    try:
        with capture_logs() as logs:
            # its clock held at the step's start: no look comes due in these two ticks however slowly they run
            # (v3 is the fleet's slow canary, `look_every` 1 s: on a loaded machine a look judged it and the
            # rollout ended at 100/0, which this test is not about)
            ours = Controller(custom=op.custom, core=core, router=op.router, metrics=op.metrics, batch=op.batch,
                              namespace="ml", clock=HeldClock(before[1]["step_started_at"]))
            for _ in range(2):
                ours.tick()
    finally:
        client.close()
    weights, record = vs(api, 0)
    assert weights == before[0] and record["started_at"] == before[1]["started_at"]
    assert record["phase"] == rl.PROGRESSING, [(e["event"], e.get("error")) for e in logs]
    assert any(p.endswith("/configmaps/pol") for _, p, _ in api.handler.refused_tokens), api.handler.refused_tokens
    assert not [e for e in logs if e["event"] in ("rollout.api_refused", "rollout.invalid")]


def test_a_claims_status_write_timed_out_408_is_not_a_refusal_and_the_rollout_goes_on(world: Any) -> None:
    """HTTP 408 (Request Timeout: a proxy or load balancer in front of the API server gave up waiting) is a timeout,
    as the Prometheus client and the retraining webhook read it: the claim's status write answered 408 once was read
    as refused for good (`errors.StatusRefused`), and the claim, a healthy rollout, aborted at once (decision 564)."""
    api, op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["finalizers"] = [FINALIZER]  # its own PATCH is no status write: none of this test's
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    api.fail_next(408, times=1, methods=("PATCH",), plural="canaryrollouts")
    with capture_logs() as logs:
        op = _fresh(op)
        for _ in range(2):
            op.tick()
    record = vs(api, 0)[1]
    assert record["phase"] not in rl.TERMINAL, (record["phase"], record["reason"])
    assert not [e for e in logs if e["event"] in ("rollout.api_refused", "rollout.invalid")]

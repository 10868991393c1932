"""`promote --via-controller` requests that meet a CanaryRollout already there.

Re-specified for another version (decision 617): two pipelines given the same `--rollout-name`, or an apply over the
request. The first follower's version is no longer asked for, so no status of it ever comes: it waited out its whole
`--timeout` (1h by default) and then said "it keeps running in the controller". Now it exits 3 at its next read,
naming the version asked instead.

Followed in silence (decision 620): a pipeline's log showed nothing between the request and its outcome, up to
`--timeout` (1h) later, while the CanaryRollout waited for a route another rollout held or went step by step. Now
`follow.status` says each change: why it waits, then its phase, step and weights.

Cut short while its rollout runs (decision 621): a signal (or `--timeout`) printed `{"phase": null, ...}`, which
docs/reference/cli.md, "Exit codes" reads as "refused before traffic moved", while the CanaryRollout went on at its
split. Now the document is its status as last read: `phase`, `weights`, `step_number`, with `exit_code` 3 and the
`error`.

Replaced by a retry of the same request (decision 618): the replace sent the request's own metadata alone, which
dropped the controller's finalizer (and anyone's labels), so a delete before the next tick removed the object with
its rollout still split. Now the object's labels, annotations, finalizers and owner references are kept.

The strict API emulator, and the follower in-process (tests/integration/test_follow_retry's way); no controller runs:
what the follower is told depends on the object's spec alone, so nothing here waits on a tick.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import structlog
import yaml
from typer.testing import CliRunner

import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
from canary import crd
from canary.cli import app
from canary.cli_controller import REQUEST_ANNOTATION, follow
from canary.controller import FINALIZER
from canary.errors import CanaryError, RolloutBusy, TransientError
from tests import fleet
from tests.integration.test_controller import prometheus, world  # noqa: F401 - fixtures
from tests.integration.test_validation_attack2 import requested  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _files(tmp_path: Any, api: Any) -> tuple[Any, Any]:
    """The kubeconfig for the emulator and the fleet's policy file, as a pipeline's step has them."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    return kubeconfig, policy


def _request(kubeconfig: Any, policy: Any, version: str) -> int:
    """`promote m0 --canary-version <version> --via-controller --rollout-name r0 --timeout 1s`, in-process."""
    return follow(model="m0", canary_version=version, policy_file=policy, namespace="ml", stable_version="",
                  virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="r0", triton=None,
                  output="json", timeout_s=1)


def _follower(tmp_path: Any, api: Any, ended: dict[str, Any]) -> threading.Thread:
    """`promote m0 --canary-version v2 --via-controller --rollout-name r0 --timeout 20s` in a thread, started: its
    exit code in `ended["code"]`, or its CanaryError in `ended["error"]`."""
    kubeconfig, policy = _files(tmp_path, api)

    def run() -> None:
        try:
            ended["code"] = follow(model="m0", canary_version="v2", policy_file=policy, namespace="ml",
                                   stable_version="", virtual_service=None, kubeconfig=str(kubeconfig), context=None,
                                   name="r0", triton=None, output="json", timeout_s=20)
        except CanaryError as exc:
            ended["error"] = exc

    follower = threading.Thread(target=run, daemon=True)
    follower.start()
    return follower


@pytest.mark.parametrize("field,value,asked", [("canaryVersion", "v3", "m0 v3"), ("model", "m1", "m1 v2"),
                                               ("virtualService", "m0-eu", "m0 v2 on VirtualService m0-eu")])
def test_a_follower_whose_canaryrollout_now_asks_another_version_says_so(world: Any, tmp_path: Any, field: str,
                                                                        value: str, asked: str) -> None:
    """Another version, or another model at the same version (a monorepo's pipeline: every model at one commit's
    version, one --rollout-name in its template)."""
    api, _op, custom = world
    ended: dict[str, Any] = {}
    follower = _follower(tmp_path, api, ended)
    while (obj := _written(custom)) is None:  # the first request's CanaryRollout, as its follower created it
        assert follower.is_alive(), ended
        time.sleep(0.05)
    # the second pipeline's request, as its follower writes it over the object it met (409, then a replace)
    obj["spec"][field] = value
    obj["metadata"]["annotations"].update({REQUEST_ANNOTATION: "second", "modelcanary.dev/ci-job": "https://ci/job/2"})
    custom.replace_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", obj)
    follower.join()  # without the check: at its --timeout, "did not finish within 20s; it keeps running"
    err = str(ended.get("error"))
    assert type(ended.get("error")) is CanaryError, ended  # exit 3: its outcome is unknown, not a timeout's
    assert f"now asks for {asked}" in err and "https://ci/job/2" in err and "did not finish" not in err, err


def _written(custom: Any) -> dict[str, Any] | None:
    try:
        return custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    except Exception:  # noqa: BLE001 - not created yet
        return None


def test_a_retried_request_keeps_the_finalizer_and_labels_of_the_canaryrollout_it_replaces(world: Any,
                                                                                          tmp_path: Any) -> None:
    """The retry of a pipeline's step whose first follower was lost: the CanaryRollout runs (the controller's
    finalizer on it, a GitOps tool's label), and the retry replaces it with the same spec. The finalizer was gone
    after it: a `kubectl delete` then removed the object at once, never holding it for the stable-100% write."""
    api, _op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(finalizers=[FINALIZER], labels={"app.kubernetes.io/instance": "ml-rollouts"},
                           annotations={"example.com/owner": "team-a", "modelcanary.dev/ci-job": "https://ci/job/1"})
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(TransientError, match="did not finish"):  # no controller runs: its status never ends
        _request(kubeconfig, policy, "v2")
    meta = _written(custom)["metadata"]  # type: ignore[index]
    assert meta.get("finalizers") == [FINALIZER], meta
    assert meta.get("labels") == {"app.kubernetes.io/instance": "ml-rollouts"}, meta
    assert meta["annotations"]["example.com/owner"] == "team-a" and REQUEST_ANNOTATION in meta["annotations"]
    assert meta["annotations"].get("modelcanary.dev/ci-job") != "https://ci/job/1"  # the earlier request's job, not this
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert _written(custom)["metadata"].get("deletionTimestamp")  # type: ignore[index]  - held for the controller


def test_a_follower_logs_why_its_canaryrollout_waits_and_each_step(world: Any, tmp_path: Any) -> None:
    """The controller's status written by hand (no controller runs): each write waits for the follower's line about
    the one before, so what is asserted does not depend on when the follower reads."""
    api, _op, custom = world
    ended: dict[str, Any] = {}

    def status(body: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": body})

    def said(n: int) -> list[dict[str, Any]]:
        while len(lines := [e for e in list(logs) if e["event"] == "follow.status"]) < n:
            assert follower.is_alive(), (ended, lines)  # without the lines: the follower's --timeout ends it
            time.sleep(0.05)
        return lines

    target = {"canaryVersion": "v2", "model": "m0", "virtualService": "m0"}
    with structlog.testing.capture_logs() as logs:
        follower = _follower(tmp_path, api, ended)
        while _written(custom) is None:
            assert follower.is_alive(), ended
            time.sleep(0.05)
        status({"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "False", "reason": "RolloutBusy", "observedGeneration": 1,
             "message": "ml/m0: another rollout holds the route (CI job https://ci/job/1)"}]})
        assert said(1)[0]["waiting"] == "RolloutBusy: ml/m0: another rollout holds the route (CI job https://ci/job/1)"
        status({"phase": "progressing", "step": 1, "weights": {"stable": 80, "canary": 20}, "target": target,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "observedGeneration": 1}]})
        assert {k: said(2)[1][k] for k in ("phase", "step", "weights")} == {"phase": "progressing", "step": 1,
                                                                           "weights": "80/20"}
        status({"phase": "rolled_back", "step": 1, "weights": {"stable": 100, "canary": 0}, "reason": "latency"})
        follower.join()
    assert ended["code"] == 1
    assert [e.get("rollout") for e in logs if e["event"] == "follow.status"] == ["ml/r0", "ml/r0"]  # once each


def test_a_follower_cut_short_while_its_rollout_runs_prints_where_it_is(world: Any, tmp_path: Any) -> None:
    """The real CLI process; the status written by hand once its CanaryRollout exists, the SIGTERM sent once the
    follower has logged that status (`follow.status`): nothing here depends on when it reads."""
    api, _op, custom = world
    kubeconfig, policy = _files(tmp_path, api)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "canary", "promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
         "--kubeconfig", str(kubeconfig), "--via-controller", "--rollout-name", "r0", "-o", "json", "--timeout", "10m",
         "--log-format", "json"], cwd=root, env={**os.environ, "KUBECONFIG": ""}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        while _written(custom) is None:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": {
            "phase": "progressing", "step": 2, "weights": {"stable": 50, "canary": 50}, "observedGeneration": 1,
            "target": {"canaryVersion": "v2", "model": "m0", "virtualService": "m0"}}})
        assert proc.stderr is not None
        for line in proc.stderr:  # without decision 620's line the stream ends at the follower's --timeout
            if '"follow.status"' in line and '"progressing"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, (proc.returncode, out, err[-1500:])
    doc = json.loads(out)
    assert (doc["phase"], doc["weights"], doc["step_number"], doc["exit_code"]) == (
        "progressing", {"stable": 50, "canary": 50}, 2, 3), doc
    assert "interrupted (SIGTERM) while following" in doc["error"] and doc["canary_version"] == "v2", doc
    assert doc["rollout"] == "ml/r0", doc  # which CanaryRollout runs on, as an end's document says (decision 642)


def test_a_request_meeting_its_canaryrollout_being_deleted_writes_nothing_over_it(world: Any, tmp_path: Any) -> None:
    """The CanaryRollout is being deleted (`kubectl delete`, held by the controller's finalizer for its stable-100%
    write) when a retried request meets it: the replace wrote the request into an object about to vanish, and the
    follower then said it `was deleted while this request waited; its outcome is unknown` (review of 618)."""
    api, _op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["finalizers"] = [FINALIZER]
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    before = _written(custom)
    assert before is not None and before["metadata"].get("deletionTimestamp"), before
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(TransientError) as refused:
        _request(kubeconfig, policy, "v2")
    said = str(refused.value)
    assert "ml/r0 is being deleted" in said and "nothing was written" in said and "again" in said, said
    after = _written(custom)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], after


@pytest.mark.parametrize(("weights", "said"), [
    ({"stable": 100, "canary": 0}, " weights 100/0 "),
    ({"stable": 100}, " weights 100/? "),  # an arm left out: "100/None"
    ("100/0", " "),  # no object: the end's line raised (AttributeError), exit 3 for a rollback that ended
])
def test_the_end_line_of_a_partly_written_status_names_its_weights_as_follow_status_does(
        requested: Any, capsys: Any, weights: Any, said: str) -> None:
    """The follower's end line ("rolled_back: m0 v2 weights 100/0 - ...") formats `status.weights` with
    `weights_text`, as `follow.status` does (decision 669): a status written in part (by hand, by a controller of
    another release whose schema differs) says "?" for an arm left out and no weights where they are no object. The
    status is written from the follower's own wait (`requested.waits`): no controller, no timing."""
    custom = requested.custom

    def ended(_: float) -> None:
        custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req", {"status": {
            "phase": "rolled_back", "weights": weights, "observedGeneration": 1, "reason": "latency",
            "target": {"canaryVersion": "v2", "model": "m0", "virtualService": "m0"}}})

    requested.waits(ended)
    code = follow(model="m0", canary_version="v2", policy_file=requested.policy, namespace="ml", stable_version="",
                  virtual_service=None, kubeconfig=str(requested.kubeconfig), context=None, name="req", triton=None,
                  output="text", timeout_s=60)
    assert code == 1
    assert capsys.readouterr().out == f"rolled_back: m0 v2{said}- latency\n"


@pytest.mark.parametrize("status", [
    None,  # created, not claimed yet (its follower waits for it)
    {"phase": "progressing", "step": 2, "weights": {"stable": 50, "canary": 50}, "observedGeneration": 1,
     "target": {"canaryVersion": "v2", "model": "m0", "virtualService": "m0"}},
])
def test_a_request_for_another_version_never_replaces_a_canaryrollout_that_runs(world: Any, tmp_path: Any,
                                                                               status: dict[str, Any] | None) -> None:
    """Two pipelines' requests under one name (`v2.1` and `v2-1` both read `m-v2-1` by default, or one
    --rollout-name in a template): the second replaced the first one's spec, the controller sent what it ran to
    stable 100% and the first follower exited 3 (decision 617). Now nothing is written over it: exit 75 naming the
    object and the version it runs (decision 701)."""
    api, _op, custom = world
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"]["annotations"] = {"modelcanary.dev/ci-job": "https://ci/job/1"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    if status is not None:
        custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": status})
    before = _written(custom)
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(RolloutBusy) as refused:
        _request(kubeconfig, policy, "v2.1")
    said = str(refused.value)
    assert "CanaryRollout ml/r0 is another request's rollout of m0 v2 (" in said and "nothing was written" in said
    assert "https://ci/job/1" in said and refused.value.job == "https://ci/job/1", said
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2.1", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--via-controller", "--rollout-name", "r0",
                                   "--timeout", "1s", "-o", "json"])
    assert res.exit_code == 75, res.output  # busy: the same command may succeed once that rollout ends
    doc = json.loads(res.stdout)
    assert (doc["holder_job"], doc["phase"]) == ("https://ci/job/1", None) and "ml/r0" in doc["holder"], doc
    after = _written(custom)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], after


def test_a_request_for_another_version_re_targets_a_canaryrollout_that_ended(world: Any, tmp_path: Any) -> None:
    """Ended (its status of the spec it has): nothing runs under the name, and a new version applied over it is
    how it is re-targeted (decision 617), as before decision 701."""
    api, _op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": {
        "phase": "promoted", "observedGeneration": 1, "target": {"canaryVersion": "v2", "model": "m0"}}})
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(TransientError, match="did not finish"):  # no controller runs: its status never ends
        _request(kubeconfig, policy, "v3")
    assert _written(custom)["spec"]["canaryVersion"] == "v3"  # type: ignore[index]


@pytest.mark.parametrize("spec,flags,asked", [
    ({"virtualService": "m0-eu"}, {"virtual_service": "m0-us"}, "VirtualService m0-eu"),
    ({"route": "eu"}, {"route": "us"}, "route eu"),
])
def test_a_request_for_the_same_version_on_another_route_never_replaces_a_canaryrollout_that_runs(
        world: Any, tmp_path: Any, spec: dict[str, str], flags: dict[str, str], asked: str) -> None:
    """One version to two VirtualServices (or two routes of one), a pipeline each, the default name
    `<model>-<version>` the same for both: the second request's replace made the controller supersede the first
    (stable 100% on its route) and run the second, and the first follower, its model and version unchanged, could
    take an end of the replaced spec for its own. Busy, as for another version (decision 701, addendum)."""
    api, _op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2", **spec))
    custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"status": {
        "phase": "progressing", "step": 1, "weights": {"stable": 90, "canary": 10}, "observedGeneration": 1,
        "target": {"canaryVersion": "v2", "model": "m0", **spec}}})
    before = _written(custom)
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(RolloutBusy) as refused:
        follow(**{"virtual_service": None, "route": None, **flags}, model="m0", canary_version="v2",
               policy_file=policy, namespace="ml", stable_version="", kubeconfig=str(kubeconfig), context=None,
               name="r0", triton=None, output="json", timeout_s=1)
    said = str(refused.value)
    assert f"CanaryRollout ml/r0 is another request's rollout of m0 v2 on {asked} (progressing" in said, said
    assert f"nothing was written: m0 v2 on {asked.replace('eu', 'us')} would have replaced it" in said, said
    after = _written(custom)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], after


@pytest.mark.parametrize("phase,retry", [("progressing", False), ("rolled_back", True)])
def test_a_request_retried_after_the_upgrade_finds_the_canaryrollout_an_older_cli_named(
        world: Any, tmp_path: Any, phase: str, retry: bool) -> None:
    """A CLI before decision 701 named m0's `v2.1` `m0-v2-1`; the same request retried after the upgrade created
    `m0-v2-1-<hash>` beside its running rollout, which the controller held busy. The name an older CLI gave this
    very request (the same model, version and route) is its own (701 addendum); but `--retry` of one that rolled
    back runs it under the new name (under the old one: exit 2, decision 248)."""
    from canary.cli_controller import rollout_name

    api, _op, custom = world
    obj = fleet.rollout_object(0, "v2.1")
    obj["metadata"]["name"] = "m0-v2-1"
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "m0-v2-1", {"status": {
        "phase": phase, "step": 1, "weights": {"stable": 90, "canary": 10}, "observedGeneration": 1,
        "target": {"canaryVersion": "v2.1", "model": "m0"}}})
    kubeconfig, policy = _files(tmp_path, api)
    taken = rollout_name("m0", "v2.1") if retry else "m0-v2-1"
    with pytest.raises(TransientError, match=f"CanaryRollout ml/{taken} did not finish"):
        follow(model="m0", canary_version="v2.1", policy_file=policy, namespace="ml", stable_version="",
               virtual_service=None, kubeconfig=str(kubeconfig), context=None, name=None, triton=None,
               output="json", timeout_s=1, retry=retry)
    listed = custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL)["items"]
    assert sorted(o["metadata"]["name"] for o in listed) == sorted({"m0-v2-1", taken})


def test_a_retried_request_keeps_what_a_person_asked_of_its_canaryrollout(world: Any, tmp_path: Any) -> None:
    """On-call held the waiting rollout (`action: pause`, asked to hold before it starts) and chose how an outage is
    met; the pipeline's retry (its first follower out of --timeout) replaced the spec with its own, which names
    neither: the hold was gone and the controller would claim and move traffic. The same request again keeps them
    (701 addendum); `follow` writes the rest of the spec as before."""
    api, _op, custom = world
    asked = {"action": "pause", "actionReason": "on-call: hold for the incident", "onPrometheusOutage": "hold"}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2",
                                                                                                          **asked))
    kubeconfig, policy = _files(tmp_path, api)
    with pytest.raises(TransientError, match="did not finish"):  # no controller runs: its status never ends
        _request(kubeconfig, policy, "v2")
    spec = _written(custom)["spec"]  # type: ignore[index]
    assert {k: spec.get(k) for k in asked} == asked, spec

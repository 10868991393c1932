"""A second attacker on input validation (docs/decisions.md 98), against the strict Kubernetes API
emulator and the real controller: `promote --via-controller` of a request the controller refuses as
bad input exits 2 at once, with the controller's words, withdraws the CanaryRollout it created and
moves nothing."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity
import yaml

import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
from canary import crd
from canary.cli_controller import follow
from canary.controller import Controller
from canary.errors import CanaryError, ConfigError
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
# follow's --timeout: a bound that matters only when broken (it answers at the controller's first refusal).
# It was 20 s, with ticks for 15 s, around a follower thread, a controller and an emulator on a loaded machine
TIMEOUT_S = 120


@pytest.mark.parametrize(("kw", "says"), [
    ({"canary_version": "v1"}, "canary version 'v1' is already the stable version"),   # the stable subset's version
    ({"route": "nope"}, "spec.http has no route named 'nope'"),
    ({"destination_rule": "nope"}, "ml/nope (destinationrules): not found"),
])
def test_via_controller_exits_2_when_the_controller_refuses_the_request(tmp_path: Path, kw: dict[str, Any],
                                                                        says: str) -> None:
    """The controller refused each at its first tick (Ready False, ConfigError/TargetError/NotFound: what
    `canary promote` exits 2 for), and the follower, which reads only the phase, waited out its --timeout
    (1h by default) and exited 3 "did not finish"; the CanaryRollout stayed, to start unattended once
    someone fixed the route."""
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        custom = kc.CustomObjectsApi(client)
        kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(copy.deepcopy(fleet.FAST_POLICY)))
        before = [api.get(GROUP, plural, "ml", "m0") for plural in ("virtualservices", "destinationrules")]
        ctl = Controller(custom=custom, core=kc.CoreV1Api(client), router=IstioRouter(client, wait=tenacity.wait_none()),
                         metrics=None, namespace="ml", clock=FakeClock(time.time()), sweep_every=0)
        out: list[Any] = []

        def run() -> None:
            try:
                out.append(follow(**{**dict(model="m0", canary_version="v2", policy_file=policy, namespace="ml",
                                            stable_version="", virtual_service=None, kubeconfig=str(kubeconfig),
                                            context=None, name="req", triton=None, output="text", timeout_s=TIMEOUT_S), **kw}))
            except CanaryError as exc:
                out.append(exc)

        follower = threading.Thread(target=run, daemon=True)
        started = time.monotonic()
        follower.start()
        while follower.is_alive() and time.monotonic() - started < TIMEOUT_S + 10:
            with structlog.testing.capture_logs():
                ctl.tick()
            time.sleep(0.1)
        follower.join(30)
        assert out and isinstance(out[0], ConfigError), f"the follower ended with {out!r}"
        # (waiting out its --timeout it would have ended "did not finish", not with the ConfigError)
        assert says in str(out[0]) and "CanaryRollout ml/req" in str(out[0]) and "nothing was moved" in str(out[0])
        assert [api.get(GROUP, plural, "ml", "m0") for plural in ("virtualservices", "destinationrules")] == before
        try:  # withdrawn: gone, or going (the controller's finalizer holds it until its next tick)
            left = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
        except Exception:
            left = None
        assert left is None or (left.get("metadata") or {}).get("deletionTimestamp"), "the request was left to run later"
    finally:
        client.close()
        api.stop()


@pytest.fixture
def requested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An API emulator with route m0, a policy file and a kubeconfig, and `waits(fn)`: the follower's
    waits (`time.sleep` in canary.cli_controller) call `fn` instead, so what happens while it waits is
    put in place from its own thread, no timing."""
    import canary.cli_controller as cc

    api = fleet.start_api(1)
    client = api.api_client()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(copy.deepcopy(fleet.FAST_POLICY)))

    def waits(fn: Any) -> None:
        monkeypatch.setattr(cc, "time", type("T", (), {"monotonic": staticmethod(time.monotonic),
                                                      "sleep": staticmethod(fn)}))

    try:
        yield SimpleNamespace(api=api, custom=kc.CustomObjectsApi(client), policy=policy, waits=waits,
                              kubeconfig=fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url))
    finally:
        client.close()
        api.stop()


def test_via_controller_never_withdraws_a_canaryrollout_of_the_name_created_by_someone_else(requested: Any) -> None:
    """Decision 103 (c): the follower deleted by name whatever object the name held when the refusal came:
    a CanaryRollout deleted and created again by someone else meanwhile (another pipeline, a person) was
    deleted as the follower's own. Only the object it created (its uid, a precondition of the delete) is
    withdrawn, and the other object's refusal is not reported as this request's (it was, exit 2): the
    follower exits 3, the outcome of its request unknown. The other object is put in place from the
    follower's own wait (no thread, no timing)."""
    custom, replaced = requested.custom, []

    def someone_else(_: float) -> None:  # the follower's wait: the name now holds another, refused, object
        if replaced:
            return
        mine = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
        custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
        other = copy.deepcopy(mine)
        other["metadata"] = {"name": "req", "namespace": "ml"}
        other["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "ConfigError",
                                           "message": "ml/req: not this request's", "observedGeneration": 9}]}
        replaced.append(requested.api.handler.put_object(other)["metadata"]["uid"])
        assert replaced[0] != mine["metadata"]["uid"]

    requested.waits(someone_else)
    with pytest.raises(CanaryError, match="created again by someone else") as err:
        _follow(requested.policy, requested.kubeconfig)
    # not the other object's refusal reported as this request's (exit 2 with "not this request's")
    assert not isinstance(err.value, ConfigError) and "not this request's" not in str(err.value)
    left = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
    assert left["metadata"]["uid"] == replaced[0] and not left["metadata"].get("deletionTimestamp")


def _follow(policy: Path, kubeconfig: Path, timeout_s: float = 20) -> int:
    return follow(model="m0", canary_version="v2", policy_file=policy, namespace="ml", stable_version="",
                  virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="req", triton=None,
                  output="text", timeout_s=timeout_s)


def test_via_controller_a_follower_whose_canaryrollout_is_deleted_says_so(requested: Any) -> None:
    """Someone deletes the request's CanaryRollout while the follower waits: it exits 3 saying the object
    was deleted and the outcome is unknown (it said "CanaryRollout ml/req: not found", exit 2, as if the
    input named something missing). A GET answered 503 in between is read again (it ended the follower,
    exit 3, while the rollout went on). Both happen in the follower's own waits: no thread, no timing."""
    waits: list[float] = []

    def wait(_: float) -> None:
        waits.append(_)
        if len(waits) == 1:  # the next read fails once, as an API server restarting answers
            requested.api.fail_next(503, methods=("GET",), plural=crd.PLURAL)
        elif len(waits) == 2:
            requested.custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")

    requested.waits(wait)
    with structlog.testing.capture_logs() as logs, pytest.raises(CanaryError, match="was deleted while this "
                                                                                    "request waited") as err:
        _follow(requested.policy, requested.kubeconfig)
    assert not isinstance(err.value, ConfigError) and len(waits) == 2, waits
    assert [e["event"] for e in logs if e["event"] == "follow.read_failed"] == ["follow.read_failed"], logs

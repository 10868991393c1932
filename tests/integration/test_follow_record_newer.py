"""`canary promote --via-controller` on a route whose record a newer canary wrote (decisions 169, 172).

Mid rolling upgrade of canary itself, an older controller (leader) meets a route whose record is in a schema above
its own: it never claims, ends or drives it, and says so on the CanaryRollout (Ready False, reason RecordTooNew).
The follower read RecordTooNew as "not started yet, retried" and waited out its --timeout (1h by default) for a
controller that would never move. Now a request never claimed is refused at once (exit 2, as a plain `promote`
exits for the same route; the CanaryRollout it created withdrawn), and a request claimed, then recorded by a newer
canary, ends at once with exit 3 naming the reason (its outcome is the newer canary's; the CanaryRollout is left).

Real Kubernetes API emulator and controller; the controller ticks from the follower's own waits (no thread, no
timing): `requested.waits`."""

from __future__ import annotations

import time
from typing import Any

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity

import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
from canary import crd
from canary import rollout as rl
from canary.cli_controller import follow
from canary.controller import Controller
from canary.errors import CanaryError, ConfigError, TransientError
from canary.routing.istio import IstioRouter
from canary.model import Target
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import LiveWeights
from tests.integration.test_record_schema import ANN, GROUP, WRITER, _newer_promote, _record, _to_newer_schema, _weights
from tests.integration.test_validation_attack2 import requested  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
TICKS = 40  # the follower's waits allowed: it answers within a few ticks, or it is waiting for nothing


class _StillWaiting(BaseException):
    """The follower waited TICKS times: it would have waited out its --timeout."""


def _controller(requested: Any) -> Controller:
    """A controller on fake metrics that follow the route's live weights (a good canary), on a fake clock."""
    client = requested.api.api_client()
    router, clock = IstioRouter(client, wait=tenacity.wait_none()), FakeClock(time.time())
    target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: 1.0, rps=1000.0)
    return Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client), router=router, metrics=metrics,
                      namespace="ml", clock=clock, sweep_every=0)


def _follow(requested: Any, version: str) -> BaseException | int:
    try:
        return follow(model="m0", canary_version=version, policy_file=requested.policy, namespace="ml",
                      stable_version="", virtual_service=None, kubeconfig=str(requested.kubeconfig), context=None,
                      name="req", triton=None, output="text", timeout_s=3600)
    except (CanaryError, _StillWaiting) as exc:
        return exc


def _ticking(requested: Any, ctl: Controller, then: Any = None) -> list[int]:
    """The follower's waits tick the controller (and call `then()` after each tick); returns the count."""
    count = [0]

    def wait(_: float) -> None:
        count[0] += 1
        if count[0] > TICKS:
            raise _StillWaiting(f"still waiting after {TICKS} ticks")
        with structlog.testing.capture_logs():
            ctl.tick()
        if then is not None:
            then()

    requested.waits(wait)
    return count


def test_a_request_the_controller_cannot_claim_for_a_newer_record_is_refused_at_once(requested: Any) -> None:
    written = _newer_promote(requested.api, at=time.time())
    split = _weights(requested.api)
    _ticking(requested, _controller(requested))
    out = _follow(requested, "v3")
    assert isinstance(out, ConfigError), f"the follower ended with {out!r}"  # exit 2
    said = str(out)
    assert "CanaryRollout ml/req" in said and "RecordTooNew" in said and WRITER in said, said
    assert "nothing was moved" in said and "was deleted" in said, said
    assert _record(requested.api) == written and _weights(requested.api) == split  # the newer canary's, untouched
    try:  # withdrawn: gone, or going (the controller's finalizer holds it until its next tick)
        left = requested.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
    except Exception:
        left = None
    assert left is None or (left.get("metadata") or {}).get("deletionTimestamp"), "left to start after an upgrade"


def test_a_claimed_request_recorded_by_a_newer_canary_ends_its_follower_with_exit_3(requested: Any) -> None:
    """The controller claimed the request and moved its first step; a newer replica then led and recorded the
    rollout in its schema; this older controller leads again. The follower says so at once and leaves the
    CanaryRollout (its rollout is live, driven by the newer canary when it leads)."""
    api, custom = requested.api, requested.custom
    rewritten: list[str] = []

    def newer_takes_it() -> None:
        try:
            st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req").get("status") or {}
        except Exception:
            return
        if not rewritten and st.get("phase") == rl.PROGRESSING and _weights(api)[1] > 0:
            rewritten.append(_to_newer_schema(api))

    _ticking(requested, _controller(requested), newer_takes_it)
    out = _follow(requested, "v2")
    assert rewritten, f"the request was never claimed: {out!r}"
    assert isinstance(out, TransientError), f"the follower ended with {out!r}"  # exit 3
    said = str(out)
    assert "CanaryRollout ml/req (progressing" in said and "RecordTooNew" in said and WRITER in said, said
    assert "left in place" in said and "canary rollback" in said, said
    assert _record(api) == rewritten[0] and _weights(api)[1] > 0  # the newer canary's rollout, untouched
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
    assert not (obj.get("metadata") or {}).get("deletionTimestamp")
    # the status names the release that wrote it (this, older, controller: the newer one would name itself)
    assert obj["status"]["writer"] == rl.WRITER != WRITER, obj["status"]


def test_a_refused_request_claimed_before_its_withdrawal_lands_is_followed_not_deleted(
        requested: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The follower read the refusal (never claimed, RecordTooNew); before its delete landed, on-call's rollback of
    the newer canary's rollout left the route readable and the controller claimed the request and moved its first
    step. The delete carried the uid only: it landed, the finalizer sent stable 100% over the running rollout, and
    the follower said "nothing was moved" (exit 2). Now it carries the refusal's resourceVersion too: refused
    (409), the follower reads again and follows the rollout the controller runs."""
    api, custom = requested.api, requested.custom
    _newer_promote(api, at=time.time())
    ctl = _controller(requested)
    counted = _ticking(requested, ctl)
    real = kc.CustomObjectsApi.delete_namespaced_custom_object
    claimed: list[Any] = []

    def delete(self: Any, *a: Any, **kw: Any) -> Any:
        if not claimed:  # between the follower's read and its delete
            def rolled_back(o: dict[str, Any]) -> None:
                o["metadata"]["annotations"].pop(ANN, None)
                r = o["spec"]["http"][0]["route"]
                r[0]["weight"], r[1]["weight"] = 100, 0

            api.edit(GROUP, "virtualservices", "ml", "m0", rolled_back)
            for _ in range(3):
                with structlog.testing.capture_logs():
                    ctl.tick()
            claimed.append((custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
                            .get("status") or {}).get("phase"))
        return real(self, *a, **kw)

    monkeypatch.setattr(kc.CustomObjectsApi, "delete_namespaced_custom_object", delete)
    out = _follow(requested, "v3")
    assert claimed == [rl.PROGRESSING], claimed  # the controller claimed it between the read and the delete
    assert not isinstance(out, ConfigError), f"refused after the controller claimed it: {out!r}"
    assert counted[0] > 1  # it went on following
    obj = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "req")
    assert not (obj.get("metadata") or {}).get("deletionTimestamp"), obj["metadata"]

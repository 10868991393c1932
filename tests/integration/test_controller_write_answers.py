"""The controller's own CanaryRollout writes (the finalizer's PATCH, the status's merge PATCH) answered 200
with a body that is not the object (decision 394's left, decision 406): a proxy in front of the API server,
an answer cut where its framing did not show it. Against the strict API emulator and a real Prometheus,
with watches; faults chosen by request content, never by time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.controller import FINALIZER
from tests import fleet
from tests.integration.test_controller_watch import create, prometheus, status, step, world  # noqa: F401

pytestmark = pytest.mark.integration

BODIES = [(b"{}", "application/json"), (b"null", "application/json"),
          (b"<html><body>upstream connect error</body></html>", "text/html"),
          (b'{"apiVersion":"modelcanary.dev/v1alpha1","kind":"CanaryRollout"}', "application/json")]


def _answer_next_patch(api: Any, body: bytes, content_type: str, *, status_write: bool, ends: bool = False,
                       apply: bool) -> list[str]:
    """The next CanaryRollout PATCH (of its status, or of its metadata: the finalizer) -- with `ends`, the
    status write of an end -- is answered 200 with `body`; with `apply`, after it was applied."""
    import aiohttp.web

    real, hit = api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if (res is not None and res.plural == crd.PLURAL and str(request.method.value).upper() == "PATCH"
                and not hit and (request.subresource == "status") == status_write):
            sent = json.loads(request.body or b"null")
            phase = ((sent or {}).get("status") or {}).get("phase")
            if not ends or phase in rl.TERMINAL:
                hit.append(str(phase))
                if apply:
                    await real(request)
                return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    return hit


@pytest.mark.parametrize("body,content_type", BODIES)
@pytest.mark.parametrize("status_write", [False, True], ids=["finalizer", "status"])
def test_a_canaryrollout_write_answered_with_no_object_never_enters_the_cache(
        world: Any, body: bytes, content_type: str, status_write: bool) -> None:
    """The claim's finalizer PATCH (or its status write) lands and is answered `{}` (or a page, `null`, an object
    with no identity): before, `{}` was put in the informers' cache as a CanaryRollout named "/" -- counted as a
    rollout in progress by the shard's gauges, and at each new term of leadership ticked as one: `rollout.invalid`
    of `None/None` every minute. Now the answer is a failed request (`kube.an_object`): the tick is tried again,
    the cache holds only what the watch delivers, and the rollout runs to its end."""
    api, op, custom, clock = world
    hit = _answer_next_patch(api, body, content_type, status_write=status_write, apply=True)
    create(api, 0, "v2")
    for _ in range(100):
        step(api, op, clock)
        assert set(op.informers.rollouts.summaries()) == {"ml/r0"}
        if status(api, "r0").get("phase") in rl.TERMINAL:
            break
    assert hit
    assert status(api, "r0")["phase"] == fleet.expected_phase("v2")


@pytest.mark.parametrize("body,content_type", BODIES)
def test_an_end_whose_status_write_was_answered_with_no_object_and_not_applied_is_written_again(
        world: Any, body: bytes, content_type: str) -> None:
    """The status write of a rollout's end answered 200 with no object by a proxy that never forwarded it: before,
    the tick took it as written (the end's status was never written again: no watch event woke the rollout,
    `Progressing` and the finalizer stayed for ever); now it is a failed write, tried again at a later tick."""
    api, op, custom, clock = world
    hit = _answer_next_patch(api, body, content_type, status_write=True, ends=True, apply=False)
    create(api, 0, "v3")
    for _ in range(100):
        step(api, op, clock, dt=5.0)
        if status(api, "r0").get("phase") in rl.TERMINAL and FINALIZER not in (
                (api.get(crd.GROUP, crd.PLURAL, "ml", "r0") or {})["metadata"].get("finalizers") or []):
            break
    assert hit == [fleet.expected_phase("v3")]
    assert status(api, "r0")["phase"] == fleet.expected_phase("v3")
    assert FINALIZER not in ((api.get(crd.GROUP, crd.PLURAL, "ml", "r0") or {})["metadata"].get("finalizers") or [])

"""The Kubernetes API server failing as real ones do, against canary's own writes and reads (decisions 390-393).

Faults are driven by request count and content on the strict emulator (its `_serve`, as
test_controller_write_faults.py does), never by time:

* a write that lands and is answered 500 `etcdserver: request timed out` / `leader changed` or 504: the
  router's retry meets its own write as a 409, which must end the write, not read as another writer's
  (a revert of the weights, a record changed);
* 429 with `Retry-After` (API Priority and Fairness): the router waits what the server asks;
* a LIST answered 200 with a body that is not the list (a proxy's empty, cut or non-JSON body): an error,
  never "nothing there".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import tenacity

from canary.errors import KubeUnavailable
from canary.kube import BadAnswer
from canary.model import STABLE_ONLY, Target, Weights
from canary.routing.istio import GROUP, IstioRouter
from canary.sandbox import kubeapi
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration

TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1",
                canary_version="v2")
LANDED = [(500, "etcdserver: request timed out"), (500, "etcdserver: leader changed"),
          (504, "the server was unable to return a response in the time allotted")]


def _record(phase: str, stable: int, canary: int, at: float) -> str:
    return json.dumps({"model": "rec-model", "stable_version": "v1", "canary_version": "v2", "phase": phase,
                       "weights": {"stable": stable, "canary": canary}, "step": 1, "started_at": 1.0,
                       "step_started_at": at})


def _land_then_fail(api: KubeAPIServer, plural: str, code: int, message: str, *, times: int = 1) -> list[str]:
    """The next `times` writes (PUT, PATCH, POST) of `plural` are applied, then answered `code` with `message`
    (the Status etcd's timeout or a leader change gives: the write may have landed, and here it did)."""
    real, hit = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method in ("PUT", "PATCH", "POST") and kind.plural == plural and len(hit) < times:
            real(method, request, kind)
            hit.append(f"{method} {request.url.path}")
            raise kubeapi.ApiError(code, "InternalError" if code == 500 else "Timeout", message)
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return hit


def _weights(api: KubeAPIServer) -> list[int]:
    vs = api.get(GROUP, "virtualservices", "ml", "rec-model")
    assert vs is not None
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


@pytest.mark.parametrize("code,message", LANDED)
def test_a_look_write_that_landed_unanswered_is_not_read_as_a_revert_at_its_retry(
        istio_api: KubeAPIServer, code: int, message: str) -> None:
    """A step's write guarded on the weights it was judged at (`expect_weights`, decision 185) lands, is answered
    500/504, and the retry's PUT (the resourceVersion it read) gets 409; the re-read finds this write's own weights
    and record. Before: WeightsMoved, "the route's weights are 75/25, not 90/10 ... changed outside the rollout",
    the look discarded as a revert of our own write."""
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    first = _record("progressing", 90, 10, 2.0)
    router.set_weights(TARGET, Weights(90, 10), state=first, expect_state=None)
    hit = _land_then_fail(istio_api, "virtualservices", code, message)
    second = _record("progressing", 75, 25, 3.0)
    status = router.set_weights(TARGET, Weights(75, 25), state=second, expect_state=first,
                                expect_weights=Weights(90, 10))
    assert hit and status.weights == Weights(75, 25) and status.state == second
    assert _weights(istio_api) == [75, 25]
    codes = [c for m, p, c in istio_api.handler.writes if p.endswith("/virtualservices/rec-model")]
    assert codes[-2:] == [code, 409]  # the retry met its own write, and nothing more was written


def _landed_then_reverted(istio_api: KubeAPIServer, code: int, message: str,
                          reverted: tuple[int, int]) -> tuple[IstioRouter, str, str, list[Any]]:
    """A router whose route holds 90/10 with its record `first`; the next VirtualService PUT lands, a person then
    sets the weights to `reverted` (our record left), and its answer is lost (`code`). Returns the router, `first`,
    the record of the 75/25 write to send (`second`), and the landed PUT's answers."""
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    first = _record("progressing", 90, 10, 2.0)
    router.set_weights(TARGET, Weights(90, 10), state=first, expect_state=None)
    real, landed = istio_api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method == "PUT" and kind.plural == "virtualservices" and not landed:
            landed.append(real(method, request, kind))

            def revert(vs: dict[str, Any]) -> None:
                for d, w in zip(vs["spec"]["http"][0]["route"], reverted):
                    d["weight"] = w
            istio_api.handler.edit_object(GROUP, "virtualservices", "ml", "rec-model", revert)
            raise kubeapi.ApiError(code, "InternalError", message)
        return real(method, request, kind)

    istio_api.handler._serve = serve  # type: ignore[method-assign]
    return router, first, _record("progressing", 75, 25, 3.0), landed


@pytest.mark.parametrize("code,message", LANDED[:1])
def test_a_revert_after_a_write_that_landed_unanswered_is_still_refused(istio_api: KubeAPIServer, code: int,
                                                                       message: str) -> None:
    """The same retry, but the weights were changed (`kubectl edit` sending it to stable by hand, the record
    annotation left as our write put it) after our write landed and before the retry's re-read: the route no longer
    holds what this write puts there, and the write is refused (WeightsMoved), nothing written over the edit; the
    early return of decision 390 does not take a record of ours for the whole write. Before (decision 396) this
    test refused at its first read, before any write (the route held 90/10, the write expected 75/25): it could not
    fail. (A revert back to the weights the write was decided at passes `expect_weights` and is written over at the
    retry, as before decision 390; left, decision 396.)"""
    reverted = (100, 0)
    from canary.errors import WeightsMoved

    router, first, second, landed = _landed_then_reverted(istio_api, code, message, reverted)
    with pytest.raises(WeightsMoved):
        router.set_weights(TARGET, Weights(75, 25), state=second, expect_state=first, expect_weights=Weights(90, 10))
    assert landed and _weights(istio_api) == list(reverted)  # the revert stands
    from canary.routing.patch import read_state

    assert read_state(istio_api.get(GROUP, "virtualservices", "ml", "rec-model")) == second  # our write had landed


@pytest.mark.parametrize("code,message", LANDED)
def test_every_router_write_that_landed_unanswered_ends_at_its_retry(istio_api: KubeAPIServer, code: int,
                                                                    message: str) -> None:
    """The other router writes (a stable-100% write, a subset re-pointed, an annotation) met again at their
    retry's 409: each ends there, as written."""
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    first = _record("progressing", 90, 10, 2.0)
    router.set_weights(TARGET, Weights(90, 10), state=first, expect_state=None)
    _land_then_fail(istio_api, "virtualservices", code, message, times=2)
    end = _record("rolled_back", 100, 0, 3.0)
    assert router.set_weights(TARGET, STABLE_ONLY, state=end, expect_state=first).state == end
    router.annotate("ml", "rec-model", "example.com/note", "x", expect_state=end)
    _land_then_fail(istio_api, "destinationrules", code, message)
    router.point_subset(TARGET, "canary", "v3")
    assert _weights(istio_api) == [100, 0]
    dr = istio_api.get(GROUP, "destinationrules", "ml", "rec-model")
    assert dr is not None and [s["labels"]["version"] for s in dr["spec"]["subsets"] if s["name"] == "canary"] == ["v3"]


# --- a LIST answered 200 with a body that is not a list (decision 391) ----------------------------------------

BAD_BODIES = [(b"", "application/json"), (b'{"apiVersion":"v1","items":[{"metadata":', "application/json"),
              (b"<html><body>upstream connect error</body></html>", "text/html"), (b"{}", "application/json"),
              (b"null", "application/json")]
# a list whose items are not objects: read as a list it failed later, far from the answer (decision 494)
NOT_OBJECTS = (b'{"apiVersion":"v1","kind":"List","metadata":{},"items":["ml/rec-model",null]}', "application/json")


def _bad_lists(api: KubeAPIServer, plural: str, body: bytes, content_type: str, *, times: int) -> list[str]:
    """The next `times` LISTs (GET without a name, not a watch) of `plural` are answered 200 with `body` as it is
    (a proxy in front of the API server; an answer cut where its framing did not show it)."""
    return _answer_instead(api, lambda request: (
        request.resource.plural == plural and request.name is None and str(request.method.value).upper() == "GET"
        and request.params.get("watch") not in ("true", "1")), body, content_type, times=times)


def _lost_answer(body: bytes, content_type: str) -> Any:
    """The answer a proxy gives instead of the server's: 200 with `body` as it is; `b"500"`: etcd's timeout (500
    "etcdserver: request timed out", the request may have landed)."""
    import aiohttp.web

    if body == b"500":
        return aiohttp.web.json_response(kubeapi.status_body(500, "InternalError", "etcdserver: request timed out"),
                                         status=500)
    return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})


def _answer_instead(api: KubeAPIServer, when: Callable[[Any], bool], body: bytes, content_type: str, *,
                    times: int = 1, forward: bool = False) -> list[Any]:
    """The next `times` requests to a resource that `when(request)` picks are answered 200 with `body`
    (`content_type`) instead of the server's answer; `forward`: the request is served first (it lands, its answer is
    lost). Returns one entry per request taken: its path, or with `forward` the status the server answered."""
    real, hit = api.handler._handle, []

    async def handle(request: Any) -> Any:
        if request.resource is not None and len(hit) < times and when(request):
            hit.append((await real(request)).status if forward else str(request.url.path))
            return _lost_answer(body, content_type)
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    return hit


@pytest.mark.parametrize("body,content_type", BAD_BODIES)
def test_a_list_answered_with_a_body_that_is_no_list_is_asked_again_never_read_as_empty(
        istio_api: KubeAPIServer, body: bytes, content_type: str) -> None:
    """`canary sweep`'s LIST of VirtualServices (and the controller's prefetch) answered once with an empty, cut,
    HTML, `{}` or `null` body: asked again, the routes found. Before: [] for the empty, `{}` and `null` bodies
    (sweep: "no routes"), an AttributeError for the HTML page."""
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    hit = _bad_lists(istio_api, "virtualservices", body, content_type, times=1)
    routes, _ = router.list_virtual_services_at("ml")
    assert hit and [vs["metadata"]["name"] for vs in routes] == ["rec-model"]
    hit = _bad_lists(istio_api, "virtualservices", body, content_type, times=99)
    with pytest.raises(KubeUnavailable, match="not a list|not JSON"):
        router.list_virtual_services(None)
    assert len(hit) == router.transient_attempts


@pytest.mark.parametrize("body,content_type", [*BAD_BODIES, NOT_OBJECTS])
def test_a_pod_list_answered_with_a_body_that_is_no_list_is_no_count_of_no_pods(
        istio_api: KubeAPIServer, body: bytes, content_type: str) -> None:
    """The pod check's LIST answered so: asked again, the Ready pod counted; answered so at every try, an error,
    never "0 of 0 pods". Before: the empty, `{}` and `null` bodies counted no pods."""
    from canary.sandbox.kubeapi import PODS, SERVICES, ready_pod

    istio_api.handler.register(PODS)
    istio_api.handler.register(SERVICES)
    istio_api.handler.put_object({"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": "rec-model", "namespace": "ml"},
                                  "spec": {"selector": {"app": "rec-model"}}})
    istio_api.handler.put_object(ready_pod("rec-model-v2-a", "ml", {"app": "rec-model", "version": "v2"}))
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    _bad_lists(istio_api, "pods", body, content_type, times=1)
    count = router.subset_pods(TARGET)
    assert (count.ready, count.total, count.unchecked) == (1, 1, "")
    _bad_lists(istio_api, "pods", body, content_type, times=99)
    with pytest.raises(KubeUnavailable):
        router.subset_pods(TARGET)


@pytest.mark.parametrize("body,content_type", [*BAD_BODIES, NOT_OBJECTS])
def test_an_informer_relist_answered_with_no_list_keeps_its_cache(istio_api: KubeAPIServer, body: bytes,
                                                                  content_type: str) -> None:
    """The controller's informers: a relist answered `{}` or `null` fails (the watch loop lists again), and the
    cache keeps what it held. Before: `{}` emptied it, every VirtualService gone from the controller's view; an
    empty, cut or HTML body was a bare JSONDecodeError, items that are not objects an AttributeError (both
    BadAnswer now, naming the resource: `kube.raw_list`, decision 494)."""
    from canary.informer import Informers

    informers = Informers(istio_api.api_client(), namespace="ml")
    informers.routes["virtualservices"].relist()
    assert informers.routes["virtualservices"].get("ml", "rec-model") is not None
    hit = _bad_lists(istio_api, "virtualservices", body, content_type, times=1)
    with pytest.raises(BadAnswer, match="^the LIST of virtualservices was answered with "):
        informers.routes["virtualservices"].relist("expired")
    assert hit
    assert informers.routes["virtualservices"].get("ml", "rec-model") is not None


# --- 429 with Retry-After (API Priority and Fairness; decision 392) ------------------------------------------


def _recording_router(api: KubeAPIServer) -> tuple[IstioRouter, list[float]]:
    """A router with no backoff of its own whose sleeps are recorded, not slept (the test's clock)."""
    slept: list[float] = []
    return IstioRouter(api.api_client(), wait=tenacity.wait_none(), sleep=slept.append), slept


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_is_waited_before_the_next_try_of_a_write_and_a_read(istio_api: KubeAPIServer,
                                                                           status: int) -> None:
    """The server answers 429 (or 503) with `Retry-After: 3`: each next try comes after the 3 s it asked, and the
    write lands within the router's tries. Before: tried again at once (here: the wait of 0 s; by default 0.2, 0.4
    and 0.8 s: all four tries of a write within 1.4 s of a server that asked for 1 s between them)."""
    router, slept = _recording_router(istio_api)
    istio_api.fail_next(status, times=2, methods=("PUT",), plural="virtualservices", retry_after=3)
    router.set_weights(TARGET, Weights(90, 10), state=_record("progressing", 90, 10, 2.0), expect_state=None)
    assert slept == [3.0, 3.0] and _weights(istio_api) == [90, 10]
    slept.clear()
    istio_api.fail_next(status, times=1, methods=("GET",), plural="virtualservices", retry_after=1)
    assert router.inspect(TARGET).weights == Weights(90, 10)
    assert slept == [1.0]


def test_a_retry_after_of_minutes_is_waited_at_most_its_bound_and_never_past_the_grace(
        istio_api: KubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy asking an hour: waited MAX_RETRY_AFTER_S. Once a signal's grace is set (`kube.bound_by`), no wait
    reaches past its end: the process must be gone by then.

    The grace also bounds every request's timeout (`bound_by` cuts each to what is left): a grace of 4 s made the
    emulator answer each request within 4 s, a loaded host's race. So the grace cut is shown with 60 s of grace
    against a bound raised to 10 min (`MAX_RETRY_AFTER_S`, the same module value the product reads at each wait):
    the wait is the grace's 60 s, not the bound's 600 (decision 789)."""
    import time

    from canary import kube

    router, slept = _recording_router(istio_api)
    istio_api.fail_next(429, times=1, methods=("PUT",), plural="virtualservices", retry_after=3600)
    router.set_weights(TARGET, Weights(90, 10), state=_record("progressing", 90, 10, 2.0), expect_state=None)
    assert slept == [kube.MAX_RETRY_AFTER_S]
    slept.clear()
    # the grace's end is always `left` s ahead of the clock (`until` read anew at each look): what is left is the
    # test's, not what a loaded runner spent on the requests (an end fixed 4 s ahead was a race with them)
    left = 60.0
    kube.bound_by(router.custom.api_client, lambda: time.monotonic() + left)
    istio_api.fail_next(429, times=1, methods=("GET",), plural="virtualservices", retry_after=3600)
    router.inspect(TARGET)
    assert slept == [kube.MAX_RETRY_AFTER_S]
    slept.clear()
    # a signal: 60 s of grace left, under the bound (raised to 600 s, so the wait shows the grace's cut) and wide
    # enough for any request's answer; the waits are recorded, never slept
    monkeypatch.setattr(kube, "MAX_RETRY_AFTER_S", 600.0)
    istio_api.fail_next(429, times=1, methods=("GET",), plural="virtualservices", retry_after=3600)
    router.inspect(TARGET)
    assert len(slept) == 1 and 0.0 < slept[0] <= 60.0 < kube.MAX_RETRY_AFTER_S, slept


def test_a_rollbacks_stable_write_waits_what_the_server_asks_between_its_attempts(
        istio_api: KubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`to_stable` (decision 57: stable 100% retried for its whole budget) under 429 `Retry-After: 3`, with a
    router that tries once: between its own attempts it waits the 3 s asked, not its 0.5 s, then 1 s, and the
    write lands. Its sleeps are recorded (the test's clock), its budget far off."""
    import time
    import types

    from canary import reconcile
    from canary import rollout as rl
    from canary.logs import get as get_logger
    from tests.support.kube import PROGRESSING_RECORD

    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none(), transient_attempts=1)
    router.set_weights(TARGET, Weights(75, 25), state=PROGRESSING_RECORD, expect_state=None)
    slept: list[float] = []
    monkeypatch.setattr(reconcile, "time", types.SimpleNamespace(sleep=slept.append, monotonic=time.monotonic))
    istio_api.fail_next(429, times=2, methods=("PUT",), plural="virtualservices", retry_after=3)
    state = rl.RolloutState.from_json(PROGRESSING_RECORD)
    final = reconcile.to_stable(router, TARGET, state, reason="failed: test", log=get_logger(component="test"),
                                now=10.0, budget_s=3600.0)
    assert final.terminal and _weights(istio_api) == [100, 0]
    assert slept == [3.0, 3.0]


def _bad_writes(api: KubeAPIServer, plural: str, body: bytes, content_type: str, *, times: int) -> list[int]:
    """The next `times` PUTs of `plural` are applied, then answered 200 with `body` in place of the object (a proxy
    in front of the API server; an answer cut where its framing did not show it): the write landed, its answer
    lost. Returns the statuses the server gave them."""
    return _answer_instead(api, lambda request: (
        request.resource.plural == plural and str(request.method.value).upper() == "PUT"), body, content_type,
        times=times, forward=True)


@pytest.mark.parametrize("body,content_type", BAD_BODIES)
def test_a_route_write_answered_with_no_object_is_tried_again_and_met_as_our_own(
        istio_api: KubeAPIServer, body: bytes, content_type: str) -> None:
    """A look's write and a stable-100% write applied and answered 200 with an empty, cut, HTML, `null` or `{}`
    body: tried again as a 5xx is, the retry's 409 meets the write as our own, and the status names the record
    written. Before: an AttributeError out of the router for the empty, HTML and `null` bodies, and for `{}` a
    status of no record (decision 394); the cut JSON was already transient (held, recorded)."""
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    first = _record("progressing", 90, 10, 2.0)
    router.set_weights(TARGET, Weights(90, 10), state=first, expect_state=None)
    hit = _bad_writes(istio_api, "virtualservices", body, content_type, times=1)
    second = _record("progressing", 75, 25, 3.0)
    status = router.set_weights(TARGET, Weights(75, 25), state=second, expect_state=first,
                                expect_weights=Weights(90, 10))
    assert hit == [200] and status.weights == Weights(75, 25) and status.state == second
    assert _weights(istio_api) == [75, 25]
    ended = _record("rolled_back", 100, 0, 4.0)
    hit = _bad_writes(istio_api, "virtualservices", body, content_type, times=1)
    status = router.set_weights(TARGET, STABLE_ONLY, state=ended)
    assert hit == [200] and status.state == ended and _weights(istio_api) == [100, 0]
    codes = [c for m, p, c in istio_api.handler.writes if p.endswith("/virtualservices/rec-model")]
    assert codes[-2:] == [200, 409]  # the retry met its own write, and nothing more was written


def test_a_rollbacks_waits_between_its_attempts_end_with_the_grace(
        istio_api: KubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`to_stable` after a signal (`promote`'s stable-100% write within `--interrupt-grace`): its waits between
    attempts, a Retry-After's 3 s or its own backoff, end with the grace, as the router's retries do. Before: slept
    whole (`time.sleep`), past the grace's end, so the CI's SIGKILL came before `traffic.unsafe` was said.
    (a) the grace running, 60 s left: each wait is at most what is left; (b) the signal comes during the first
    wait, with 60 s of grace: that wait ends 60 s later. The pieces slept are recorded, never slept; the graces are
    under the 300 s asked (the bound, MAX_RETRY_AFTER_S, raised to 600 s: so the cut shows). The grace's end stays
    that far ahead of the clock (`until` read anew at each look): what is left does not depend on how long a loaded
    runner took over the requests (an end fixed 2.5 s ahead was a race with them; decision 395). It is 60 s, not
    2.5 s, because the grace bounds each request's timeout too: 2.5 s and 2 s made the emulator answer within them
    (decision 789)."""
    import time
    import types

    from canary import kube, reconcile
    from canary import rollout as rl
    from canary.logs import get as get_logger
    from tests.support.kube import PROGRESSING_RECORD

    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none(), transient_attempts=1)
    router.set_weights(TARGET, Weights(75, 25), state=PROGRESSING_RECORD, expect_state=None)
    monkeypatch.setattr(kube, "MAX_RETRY_AFTER_S", 600.0)  # a Retry-After of 300 s waited whole but for the grace
    left = [60.0]  # the grace's end, that many seconds ahead of the clock (inf: no signal)
    kube.bound_by(router.custom.api_client, lambda: time.monotonic() + left[0])
    slept: list[float] = []
    monkeypatch.setattr(reconcile, "time", types.SimpleNamespace(sleep=slept.append, monotonic=time.monotonic))
    istio_api.fail_next(429, times=2, methods=("PUT",), plural="virtualservices", retry_after=300)
    state = rl.RolloutState.from_json(PROGRESSING_RECORD)
    final = reconcile.to_stable(router, TARGET, state, reason="failed: test", log=get_logger(component="test"),
                                now=10.0, budget_s=3600.0)
    assert final.terminal and _weights(istio_api) == [100, 0]
    assert slept and sum(slept) <= 2 * 60.0, sum(slept)  # two waits, each within the grace (before: 300 + 300)

    left[0], slept[:] = float("inf"), []
    router.set_weights(TARGET, Weights(75, 25), state=PROGRESSING_RECORD)  # the rollout again, at 75/25

    def nap(seconds: float) -> None:  # the signal, during the first wait: 60 s of grace from now
        slept.append(seconds)
        if len(slept) == 1:
            left[0] = 60.0

    monkeypatch.setattr(reconcile, "time", types.SimpleNamespace(sleep=nap, monotonic=time.monotonic))
    istio_api.fail_next(429, times=1, methods=("PUT",), plural="virtualservices", retry_after=300)
    final = reconcile.to_stable(router, TARGET, state, reason="failed: test", log=get_logger(component="test"),
                                now=10.0, budget_s=3600.0)
    assert final.terminal and _weights(istio_api) == [100, 0]
    assert sum(slept) <= 0.25 + 60.0, sum(slept)  # before: 300


def test_a_list_cut_mid_body_by_a_reset_connection_is_asked_again(istio_api: KubeAPIServer) -> None:
    """A LIST whose 200 says 5,000 bytes and whose connection is closed after a few (a reset mid-body, an API
    server restarting): the client's incomplete read is transient, asked again, the routes found; never []. Holds
    as it was; recorded."""
    import aiohttp.web

    real, hit = istio_api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == "virtualservices" and request.name is None and not hit:
            hit.append(str(request.url.path))
            raw = request._raw_request
            resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                                   "Content-Length": "5000"})
            await resp.prepare(raw)
            await resp.write(b'{"apiVersion":"networking.istio.io/v1beta1","items":[')
            raw.transport.close()
            return resp
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    router = IstioRouter(istio_api.api_client(), wait=tenacity.wait_none())
    routes = router.list_virtual_services("ml")
    assert hit and [vs["metadata"]["name"] for vs in routes] == ["rec-model"]


@pytest.mark.parametrize("body,content_type", BAD_BODIES)
def test_a_canaryrollout_read_answered_with_no_object_is_unknown_never_gone(
        istio_api: KubeAPIServer, body: bytes, content_type: str) -> None:
    """`canary sweep` asks whether a record's owner CanaryRollout still exists (`sweep.crd_gone`); the GET answered
    200 with an empty, cut, HTML, `{}` or `null` body is "cannot be told" (OwnerUnknown: the route is listed as
    unknown, nothing written), never "gone". Before: the empty, `{}` and `null` bodies read as another object of
    that name, and the sweep ended a rollout its live CanaryRollout drives."""
    import kubernetes

    from canary import crd, sweep
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    cr = istio_api.handler.put_object({"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                       "metadata": {"name": "rec", "namespace": "ml"}, "spec": {}})
    owner = f"CanaryRollout ml/rec#{cr['metadata']['uid']}"
    custom = kubernetes.client.CustomObjectsApi(istio_api.api_client())
    assert sweep.crd_gone(custom, owner) is False
    hit = _answer_instead(istio_api, lambda request: request.resource.plural == crd.PLURAL and request.name == "rec",
                          body, content_type)
    with pytest.raises(sweep.OwnerUnknown):
        sweep.crd_gone(custom, owner)
    assert hit


@pytest.mark.parametrize("body,content_type", BAD_BODIES)
def test_a_followed_canaryrollout_read_answered_with_no_object_is_a_failed_read_not_another_object(
        istio_api: KubeAPIServer, tmp_path: Any, body: bytes, content_type: str) -> None:
    """`canary status -w --rollout` and `promote --via-controller` read their CanaryRollout again and again; one
    read answered 200 with no object is a read that failed (said, read again), never the object "deleted and
    created again while this watch waited" (exit 3 for a rollout going on). Before: the empty, `{}` and `null`
    bodies gave that exit 3 in the watch, and the follower returned the body as the object."""
    import kubernetes

    from canary import cli, cli_controller, crd
    from canary.cli_watch import crd_end
    from tests import fleet
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    cr = istio_api.handler.put_object({"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                       "metadata": {"name": "rec", "namespace": "ml"},
                                       "spec": {"canaryVersion": "v2"}})
    uid = cr["metadata"]["uid"]
    read, where, first_uid, _ = cli._watched_rollout("rec", "ml", str(fleet.write_kubeconfig(
        tmp_path / "kubeconfig", istio_api.url)), None)
    assert first_uid == uid
    hit = _answer_instead(istio_api, lambda request: request.resource.plural == crd.PLURAL and request.name == "rec",
                          body, content_type, times=2)
    with pytest.raises(KubeUnavailable):
        crd_end(read(), where=where, uid=uid)
    custom = kubernetes.client.CustomObjectsApi(istio_api.api_client())
    assert cli_controller._read_own(custom, "ml", "rec", uid) is None  # follow.read_failed: read again
    assert len(hit) == 2
    assert crd_end(read(), where=where, uid=uid)[0] is None  # then read as it is: not over yet


def _follow(api: KubeAPIServer, tmp_path: Any, version: str, monkeypatch: Any) -> int:
    """`promote --via-controller` of rec-model `version` as CanaryRollout ml/rec, against `api` (no controller: the
    test writes the statuses it needs); its 1 s waits between reads not slept."""
    import importlib
    import time
    import types

    import yaml

    importlib.import_module("canary.cli")  # first: it registers cli_controller's commands
    from canary import cli_controller
    from tests import fleet

    monkeypatch.setattr(cli_controller, "time", types.SimpleNamespace(sleep=lambda _s: None,
                                                                      monotonic=time.monotonic))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    return cli_controller.follow(model="rec-model", canary_version=version, policy_file=policy, namespace="ml",
                                 stable_version="", virtual_service=None, name="rec", triton=None, output="text",
                                 kubeconfig=str(fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)),
                                 context=None, timeout_s=30)


def _refusal(generation: int, message: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "False", "reason": "ConfigError", "message": message,
                            "observedGeneration": generation}], "observedGeneration": generation}


@pytest.mark.parametrize("body,content_type", [*BAD_BODIES, (b"500", "")])
def test_a_followers_create_answered_with_no_object_is_read_back_and_its_refusal_withdraws_it(
        istio_api: KubeAPIServer, tmp_path: Any, monkeypatch: Any, body: bytes, content_type: str) -> None:
    """The follower's create of its CanaryRollout lands and is answered 200 with no object; the controller refuses
    it (bad input). Before: the answer was taken as the object (no uid, generation 0), so the refusal left the
    CanaryRollout in place ("not one this request created"), to start unattended once its input is fixed (every
    body: the client hands an empty or non-JSON body back as text, and `{}` read so); answered 500 (etcd's timeout:
    it landed) it was exit 3 with the object left running. Now the object is read back (`kube.an_object`; its uid
    and generation), and the refusal withdraws it, as with a good answer."""

    from canary import crd
    from canary.errors import ConfigError
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    real, hit = istio_api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == crd.PLURAL and str(request.method.value).upper() == "POST" and not hit:
            hit.append((await real(request)).status)
            istio_api.handler.edit_object(crd.GROUP, crd.PLURAL, "ml", "rec",
                                          lambda o: o.update(status=_refusal(1, "ml/rec: policy refused")))
            return _lost_answer(body, content_type)  # b"500": etcd's timeout, the create landed, its answer lost
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="policy refused.*the CanaryRollout created for it was deleted"):
        _follow(istio_api, tmp_path, "v2", monkeypatch)
    assert hit == [201] and istio_api.get(crd.GROUP, crd.PLURAL, "ml", "rec") is None


@pytest.mark.parametrize("body,content_type", BAD_BODIES)
def test_a_followers_replace_answered_with_no_object_never_takes_the_earlier_specs_refusal(
        istio_api: KubeAPIServer, tmp_path: Any, monkeypatch: Any, body: bytes, content_type: str) -> None:
    """CanaryRollout ml/rec was refused at its generation 1 (v1); the follower of v2 replaces it (generation 2), and
    the replace is answered 200 with no object. Before: generation 0 was read, so the refusal of v1 was reported as
    v2's (exit 2, "nothing was moved", for a request the controller never judged). Now the object is read back and
    only a status of generation 2 is this request's: the controller's promotion of v2 is reported (exit 0)."""
    import aiohttp.web

    from canary import crd
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    istio_api.handler.put_object({"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                  "metadata": {"name": "rec", "namespace": "ml", "generation": 1},
                                  "spec": {"model": "rec-model", "canaryVersion": "v1"},
                                  "status": _refusal(1, "ml/rec: v1 refused")})
    real, hit, reads = istio_api.handler._handle, [], []

    async def handle(request: Any) -> Any:
        res = request.resource
        method = str(request.method.value).upper()
        if res is not None and res.plural == crd.PLURAL and method == "PUT" and not hit:
            hit.append((await real(request)).status)
            return aiohttp.web.Response(body=body, status=200, headers={"Content-Type": content_type})
        if res is not None and res.plural == crd.PLURAL and method == "GET" and hit:
            reads.append(1)
            if len(reads) == 3:  # the controller's end of generation 2, after the follower read the old status
                def end(o: dict[str, Any]) -> None:
                    o["status"] = {"phase": "promoted", "observedGeneration": o["metadata"]["generation"],
                                   "target": {"canaryVersion": "v2"}, "weights": {"stable": 100, "canary": 0},
                                   "reason": "all steps passed"}
                istio_api.handler.edit_object(crd.GROUP, crd.PLURAL, "ml", "rec", end)
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    assert _follow(istio_api, tmp_path, "v2", monkeypatch) == 0
    assert hit == [200] and istio_api.get(crd.GROUP, crd.PLURAL, "ml", "rec")["metadata"]["generation"] == 2


def test_a_followers_read_after_its_create_met_an_object_answered_with_no_object_is_a_failed_read(
        istio_api: KubeAPIServer, tmp_path: Any, monkeypatch: Any) -> None:
    """The create meets an existing CanaryRollout (409) and the read of it is answered `{}`: a failed read naming the
    CanaryRollout (exit 3, nothing replaced). Before: "unexpected Kubernetes client error (KeyError: 'metadata')"."""
    import aiohttp.web

    from canary import crd
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    istio_api.handler.put_object({"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                  "metadata": {"name": "rec", "namespace": "ml"},
                                  "spec": {"model": "rec-model", "canaryVersion": "v1"}})
    real, posted = istio_api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        method = str(request.method.value).upper()
        if res is not None and res.plural == crd.PLURAL and method == "POST":
            answer = await real(request)
            posted.append(answer.status)
            return answer
        if res is not None and res.plural == crd.PLURAL and method == "GET" and posted and len(posted) == 1:
            posted.append("read")
            return aiohttp.web.Response(body=b"{}", status=200, headers={"Content-Type": "application/json"})
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    with pytest.raises(KubeUnavailable, match="CanaryRollout ml/rec was answered with a body that is not the object"):
        _follow(istio_api, tmp_path, "v2", monkeypatch)
    assert posted[-1] == "read"
    assert istio_api.get(crd.GROUP, crd.PLURAL, "ml", "rec")["spec"]["canaryVersion"] == "v1"  # nothing replaced


@pytest.mark.parametrize("code,message", LANDED[:1])
def test_a_revert_to_the_weights_a_landed_write_was_decided_at_is_refused_at_its_retry(
        istio_api: KubeAPIServer, code: int, message: str) -> None:
    """A look's write (90/10 -> 75/25, guarded on 90/10) lands, its answer is lost, and before the retry's re-read a
    person sends the weights back to exactly 90/10 with `kubectl edit`, our record left on the route. Before: the
    revert passed `expect_weights` (90/10 is what the write was decided at) and the retry wrote 75/25 over it
    (decision 396's left). Now the retry sees this write's own record (not on the route at its first read: nobody
    else writes it) under other weights than it put there: it landed and the weights were changed since, so it is
    refused (WeightsMoved) and the revert stands."""
    from canary.errors import WeightsMoved
    from canary.routing.patch import read_state

    router, first, second, landed = _landed_then_reverted(istio_api, code, message, (90, 10))
    with pytest.raises(WeightsMoved, match="90/10"):
        router.set_weights(TARGET, Weights(75, 25), state=second, expect_state=first, expect_weights=Weights(90, 10))
    assert landed and _weights(istio_api) == [90, 10]  # the revert stands
    assert read_state(istio_api.get(GROUP, "virtualservices", "ml", "rec-model")) == second


@pytest.mark.parametrize("body,content_type", [(b"500", ""), (b"{}", "application/json")])
def test_a_withdrawal_whose_delete_landed_with_its_answer_lost_says_it_was_deleted(
        istio_api: KubeAPIServer, tmp_path: Any, monkeypatch: Any, body: bytes, content_type: str) -> None:
    """The controller refuses the follower's CanaryRollout and the follower's DELETE of it lands, answered 500
    (etcd's timeout) or 200 `{}`. Before: "deleting the CanaryRollout failed: ServiceException; delete it by hand"
    (of the 500) for an object that is gone. Now it is read back: deleted, and said so (decision 425). (`{}` held:
    the answer of a DELETE is not read.)"""

    from canary import crd
    from canary.errors import ConfigError
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    real, hit = istio_api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        method = str(request.method.value).upper()
        if res is not None and res.plural == crd.PLURAL and method == "POST":
            answer = await real(request)
            istio_api.handler.edit_object(crd.GROUP, crd.PLURAL, "ml", "rec",
                                          lambda o: o.update(status=_refusal(1, "ml/rec: policy refused")))
            return answer
        if res is not None and res.plural == crd.PLURAL and method == "DELETE" and not hit:
            hit.append((await real(request)).status)
            return _lost_answer(body, content_type)
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="policy refused.*the CanaryRollout created for it was deleted"):
        _follow(istio_api, tmp_path, "v2", monkeypatch)
    assert hit == [200] and istio_api.get(crd.GROUP, crd.PLURAL, "ml", "rec") is None


@pytest.mark.parametrize("verb", ["POST", "PUT"])
def test_a_followers_write_whose_answer_was_lost_never_takes_another_requests_object_of_the_same_spec(
        istio_api: KubeAPIServer, tmp_path: Any, monkeypatch: Any, verb: str) -> None:
    """The follower's create (or its replace after a 409) never reaches the API server: a proxy answers it 500, and
    meanwhile another request of the same spec (a second follower: the CI job run twice) wrote the CanaryRollout.
    Before: the read-back took that object as this request's, its spec being the one sent, and the controller's
    refusal of it made this follower withdraw it: another request's CanaryRollout deleted (decision 420's left).
    Now the object read back is this request's only when it carries this request's own mark: KubeUnavailable
    (exit 3), the other's object left in place."""
    import aiohttp.web

    from canary import crd
    from tests.fleet import CANARY_RESOURCE

    istio_api.handler.register(CANARY_RESOURCE)
    if verb == "PUT":  # an earlier rollout of the name: the follower's create meets 409 and replaces it
        istio_api.handler.put_object({"apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
                                      "metadata": {"name": "rec", "namespace": "ml"},
                                      "spec": {"model": "rec-model", "canaryVersion": "v1"},
                                      "status": {"phase": "promoted", "observedGeneration": 1,
                                                 "target": {"canaryVersion": "v1"}}})
    real, hit = istio_api.handler._handle, []

    async def handle(request: Any) -> Any:
        res = request.resource
        if res is not None and res.plural == crd.PLURAL and str(request.method.value).upper() == verb and not hit:
            sent = json.loads(request.body)
            hit.append(verb)
            other = {"apiVersion": sent["apiVersion"], "kind": sent["kind"],  # the other request's, landed
                     "metadata": {"name": "rec", "namespace": "ml"}, "spec": sent["spec"]}
            istio_api.handler.put_object(other)
            istio_api.handler.edit_object(crd.GROUP, crd.PLURAL, "ml", "rec", lambda o: o.update(
                status=_refusal(o["metadata"].get("generation") or 0, "ml/rec: the other request's input refused")))
            return aiohttp.web.json_response(kubeapi.status_body(500, "InternalError", "the proxy's upstream failed"),
                                             status=500)
        return await real(request)

    istio_api.handler._handle = handle  # type: ignore[method-assign]
    with pytest.raises(KubeUnavailable, match="read back"):
        _follow(istio_api, tmp_path, "v2", monkeypatch)
    assert hit == [verb]
    assert istio_api.get(crd.GROUP, crd.PLURAL, "ml", "rec")["spec"]["canaryVersion"] == "v2"  # the other's, kept

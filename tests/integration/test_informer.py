"""Informers against the strict API emulator: LIST then WATCH, a local cache, re-list on 410."""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Callable, Iterator

import kubernetes.client as kc
import pytest

from canary.informer import Informer
from canary.sandbox import kubeapi
from canary.sandbox.kubeapi import KubeAPIServer

pytestmark = pytest.mark.integration


def cm(name: str, value: str = "x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ml"},
            "data": {"v": value}}


def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition (a generous bound against a hung test, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def world() -> Iterator[tuple[KubeAPIServer, Informer, list[tuple[str, Any]], threading.Event]]:
    api = KubeAPIServer(seed=[cm("a"), cm("b")]).start()
    client = api.api_client()
    changes: list[tuple[str, Any]] = []
    inf = Informer(functools.partial(kc.CoreV1Api(client).list_namespaced_config_map, "ml"), kind="configmaps",
                   on_change=lambda k, o: changes.append((k, None if o is None else o["data"]["v"])),
                   watch_timeout_s=2, retry_s=0.05)
    stop = threading.Event()
    inf.start(stop)
    until(inf.synced.is_set, "the first LIST")
    yield api, inf, changes, stop
    stop.set()
    client.close()
    api.stop()


def test_list_then_watch_keeps_the_cache_and_reports_changes(world: Any) -> None:
    api, inf, changes, _ = world
    assert sorted(changes) == [("ml/a", "x"), ("ml/b", "x")] and len(inf) == 2
    api.handler.put_object(cm("a", "y"))
    api.handler.put_object(cm("c", "z"))
    until(lambda: len(changes) == 4, "two watch events")
    assert changes[2:] == [("ml/a", "y"), ("ml/c", "z")] and inf.get("ml", "a")["data"]["v"] == "y"
    client = api.api_client()
    kc.CoreV1Api(client).delete_namespaced_config_map("b", "ml")
    client.close()
    # the cache drops it first and `on_change` reports it after (the informer's thread): wait for both
    until(lambda: inf.get("ml", "b") is None and changes[-1] == ("ml/b", None), "the delete, and its report")
    assert inf.relists == 1


def test_an_expired_watch_is_followed_by_a_new_list(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api, inf, changes, stop = world
    monkeypatch.setattr(kubeapi, "LOG_SIZE", 5)
    stop.set()  # the watch goes quiet ...
    until(lambda: not any(t.name == "informer-configmaps" for t in threading.enumerate()), "the informer to stop")
    for i in range(20):  # ... while more happens than the server keeps
        api.handler.put_object(cm("a", f"v{i}"))
    again = threading.Event()
    inf.start(again)
    try:
        # `relists` counts the LIST before its changes are reported (the informer's thread): wait for the report too
        until(lambda: inf.relists == 2 and changes[-1] == ("ml/a", "v19"), "a re-list after 410 Expired, and its report")
        assert inf.get("ml", "a")["data"]["v"] == "v19"
    finally:
        again.set()  # a failure left this informer retrying a stopped server for the rest of the worker's tests


def test_our_own_write_is_cached_at_once_and_not_reported_again(world: Any) -> None:
    """Our write's answer `put` in the cache, then its watch event: no change. The event is held until the
    `put` (decision 197): an API server may deliver it first, and then it is a change (one more wake-up of
    its rollout, harmless: decision 101); with the emulator delivering at once, that order came in a
    five-worker run."""
    api, inf, changes, _ = world
    cached, real = threading.Event(), inf._event

    def after_the_put(event: dict[str, Any]) -> None:
        if ((event.get("object") or {}).get("data") or {}).get("v") == "mine":
            cached.wait(20)
        real(event)

    inf._event = after_the_put  # type: ignore[method-assign]
    client = api.api_client()
    written = kc.CoreV1Api(client).replace_namespaced_config_map(
        "a", "ml", cm("a", "mine"), _preload_content=False)
    import json

    obj = json.loads(written.data)
    inf.put(obj)
    cached.set()
    assert inf.get("ml", "a")["data"]["v"] == "mine"  # before any watch event
    api.handler.put_object(cm("b", "later"))
    until(lambda: ("ml/b", "later") in changes, "the later event")
    assert ("ml/a", "mine") not in changes  # the watch event of our own write was no change
    inf.put({**obj, "data": {"v": "older"}, "metadata": {**obj["metadata"], "resourceVersion": "1"}})
    assert inf.get("ml", "a")["data"]["v"] == "mine"  # an older version never replaces a newer one
    client.close()


def test_managed_fields_are_not_kept_in_the_cache(world: Any) -> None:
    """The API server's server-side-apply bookkeeping is dropped from every cached object (LIST,
    WATCH and our own writes): memory per rollout, and nothing reads it."""
    api, inf, changes, _ = world
    managed = [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:v": {}}}}]
    with_fields = cm("m", "w")
    with_fields["metadata"]["managedFields"] = managed
    api.handler.put_object(with_fields)
    until(lambda: ("ml/m", "w") in changes, "the watch event")
    assert api.get("", "configmaps", "ml", "m")["metadata"]["managedFields"] == managed  # the server has them
    got = inf.get("ml", "m")
    assert "managedFields" not in got["metadata"] and got["data"]["v"] == "w" and got["metadata"]["name"] == "m"
    inf.relist("test")
    assert "managedFields" not in inf.get("ml", "m")["metadata"]
    mine = {**got, "data": {"v": "mine"},
            "metadata": {**got["metadata"], "managedFields": managed,
                         "resourceVersion": str(int(got["metadata"]["resourceVersion"]) + 1000)}}
    inf.put(mine)
    assert inf.get("ml", "m")["data"]["v"] == "mine" and "managedFields" not in inf.get("ml", "m")["metadata"]
    assert mine["metadata"]["managedFields"] == managed  # the caller's object is not changed


def test_every_read_is_a_copy_the_cache_cannot_be_changed_through_it(world: Any) -> None:
    """The cache keeps compact JSON and parses on each read: a caller that edits what it read (the
    controller merges a status into its copy) never changes what the next reader sees."""
    _, inf, _, _ = world
    mine = inf.get("ml", "a")
    mine["data"]["v"] = "edited"
    mine["status"] = {"phase": "Promoted"}
    assert inf.get("ml", "a")["data"]["v"] == "x" and "status" not in inf.get("ml", "a")
    assert inf.get("ml", "a") is not inf.get("ml", "a")
    for obj in inf.items():
        obj["data"].clear()
    assert sorted(o["data"]["v"] for o in inf.items()) == ["x", "x"]


def test_summaries_answer_per_object_questions_and_follow_the_watch() -> None:
    """`summary` is kept per object (the rollouts informer keeps each CR's phase), updated by every
    event and write, and dropped with the object."""
    api = KubeAPIServer(seed=[cm("a", "p1"), cm("b", "p2")]).start()
    client = api.api_client()
    inf = Informer(functools.partial(kc.CoreV1Api(client).list_namespaced_config_map, "ml"), kind="configmaps",
                   summary=lambda o: o["data"]["v"], watch_timeout_s=2, retry_s=0.05)
    stop = threading.Event()
    inf.start(stop)
    try:
        until(inf.synced.is_set, "the first LIST")
        assert inf.summaries() == {"ml/a": "p1", "ml/b": "p2"}
        api.handler.put_object(cm("a", "p3"))
        until(lambda: inf.summaries().get("ml/a") == "p3", "the watch event's summary")
        kc.CoreV1Api(client).delete_namespaced_config_map("b", "ml")
        until(lambda: "ml/b" not in inf.summaries(), "the deleted object's summary to go")
        assert inf.summaries() == {"ml/a": "p3"}
    finally:
        stop.set()
        client.close()
        api.stop()


def test_phase_of_and_stub() -> None:
    from canary.informer import phase_of, stub

    assert phase_of({"status": {"phase": "Progressing"}}) == "Progressing"
    assert phase_of({}) is None and phase_of({"status": None}) is None
    assert stub("ml/r-1") == {"metadata": {"namespace": "ml", "name": "r-1"}}


def test_the_rollouts_transform_leaves_out_only_the_step_start_snapshot_and_changes_nothing_in_place() -> None:
    from canary.informer import without_step_start_snapshot

    obj = {"metadata": {"name": "r0", "namespace": "ml"},
           "status": {"phase": "progressing", "stepStart": {"step": 1, "stepStartedAt": 5.0, "snapshot": {"series": {}}}}}
    cut = without_step_start_snapshot(obj)
    assert cut["status"]["stepStart"] == {"step": 1, "stepStartedAt": 5.0, "snapshotOmitted": True}
    assert cut["status"]["phase"] == "progressing" and cut["metadata"] == obj["metadata"]
    assert obj["status"]["stepStart"]["snapshot"] == {"series": {}}  # the original keeps it
    bare = {"metadata": {"name": "r1"}, "status": {"phase": "pending"}}
    assert without_step_start_snapshot(bare) is bare and without_step_start_snapshot({}) == {}


def test_a_relist_never_takes_back_our_own_later_write() -> None:
    """A LIST served before our write but answered after it (a re-list mid-tick) keeps the write;
    what the LIST says of everything else (an older deletion, another object) replaces the cache."""
    import json as _json

    def obj(name: str, rv: int, v: str) -> dict[str, Any]:
        return {**cm(name, v), "metadata": {"name": name, "namespace": "ml", "resourceVersion": str(rv)}}

    answers = [{"metadata": {"resourceVersion": "5"}, "items": [obj("a", 5, "old"), obj("b", 3, "x")]},
               {"metadata": {"resourceVersion": "8"}, "items": [obj("a", 5, "old"), obj("c", 7, "new")]}]

    class Resp:  # what a raw LIST gives back (`_preload_content=False`): its body, and its connection to release
        def __init__(self, body: dict[str, Any]) -> None:
            self.data = _json.dumps(body).encode()

        def release_conn(self) -> None:
            pass

    changes: list[tuple[str, Any]] = []
    inf = Informer(lambda **kw: Resp(answers.pop(0)), kind="configmaps",
                   on_change=lambda k, o: changes.append((k, None if o is None else o["data"]["v"])))
    inf.relist()
    inf.put(obj("a", 9, "ours"))  # our write, after the next LIST was served (at 8)
    inf.put(obj("d", 10, "created"))  # created by us after it
    changes.clear()
    inf.relist("expired")
    assert inf.get("ml", "a")["data"]["v"] == "ours" and inf.get("ml", "d")["data"]["v"] == "created"
    assert inf.get("ml", "b") is None and inf.get("ml", "c")["data"]["v"] == "new"
    assert sorted(changes) == [("ml/b", None), ("ml/c", "new")]  # nothing reported for what we wrote


def test_a_late_deletion_of_an_earlier_object_never_removes_its_namesake() -> None:
    """The cache holds r0 as the API holds it now, another object of the same name (read live by the
    controller's guard read, or its own write's answer: `put`), while the watch is still behind and then
    delivers the deletion of the object before it. That DELETED event used to drop the namesake from the
    cache and tell the controller it was gone (its memory of that rollout forgotten, its queue entry
    dropped) until the namesake's own ADDED event came. A deletion older than what is cached is now
    ignored; the watch's later events (the namesake's ADDED, older too) change nothing."""
    def obj(uid: str, rv: int) -> dict[str, Any]:
        return {**cm("r0", uid), "metadata": {"name": "r0", "namespace": "ml", "uid": uid, "resourceVersion": str(rv)}}

    changes: list[tuple[str, Any]] = []
    inf = Informer(lambda **kw: None, kind="configmaps",
                   on_change=lambda k, o: changes.append((k, None if o is None else o["metadata"]["uid"])))
    inf._event({"type": "ADDED", "object": obj("one", 3)})
    inf.put(obj("two", 9))  # the namesake, created at 8, as read live
    changes.clear()
    inf._event({"type": "DELETED", "object": obj("one", 7)})
    assert inf.get("ml", "r0")["metadata"]["uid"] == "two" and changes == []
    inf._event({"type": "ADDED", "object": obj("two", 8)})
    inf._event({"type": "DELETED", "object": obj("two", 12)})  # a deletion of what is cached: it goes
    assert inf.get("ml", "r0") is None and changes == [("ml/r0", None)]


def test_synced_is_set_only_once_the_lists_changes_are_reported() -> None:
    """A reader that waits for `synced` then reads what `on_change` reported saw nothing now and then
    (CI: the first LIST's two objects missing): `synced` was set before the LIST's changes were reported.
    Deterministic: each report records whether `synced` was already set."""
    api = KubeAPIServer(seed=[cm("a"), cm("b")]).start()
    client = api.api_client()
    seen: list[bool] = []
    inf: Informer = Informer(functools.partial(kc.CoreV1Api(client).list_namespaced_config_map, "ml"),
                             kind="configmaps", on_change=lambda k, o: seen.append(inf.synced.is_set()))
    try:
        inf.relist()
        assert seen == [False, False] and inf.synced.is_set()
    finally:
        client.close()
        api.stop()


def test_a_kind_the_api_server_does_not_serve_is_named_once_with_what_to_install() -> None:
    """`canary controller run` on a cluster without the CanaryRollout CRD logged a raw 404 ("NotFoundException:
    (404) Reason: Not Found HTTP response headers: ...") once a second, naming no CRD. Now one error line
    says the kind is not served and which manifest installs it; the same cause is not logged again at every
    retry (`repeated` counts them when it is, every REPEAT_LOG_S). The retries are counted, not timed."""
    import structlog.testing

    from canary import crd, informer

    api = KubeAPIServer().start()
    api.handler.kinds.pop((crd.GROUP, crd.PLURAL), None)  # (not registered by default: as a cluster without the CRD)
    client = api.api_client()
    stop, calls = threading.Event(), []
    lister = functools.partial(kc.CustomObjectsApi(client).list_namespaced_custom_object, crd.GROUP, crd.VERSION,
                               "ml", crd.PLURAL)

    def counted(**kw: Any) -> Any:
        calls.append(kw)
        if len(calls) >= 5:
            stop.set()
        return lister(**kw)

    inf = Informer(counted, kind=crd.PLURAL, retry_s=0)
    try:
        with structlog.testing.capture_logs() as logs:
            inf.run(stop)  # this thread: returns once the fifth LIST failed
            try:
                lister()
            except Exception as exc:  # the same cause once REPEAT_LOG_S has passed: logged again, with the count
                inf._quiet.backdate("", informer.REPEAT_LOG_S)
                inf._failed(exc)
    finally:
        client.close()
        api.stop()
    failed = [e for e in logs if e["event"] == "informer.watch_failed"]
    assert len(calls) == 5 and len(failed) == 2, failed
    assert failed[0]["log_level"] == "error" and "does not serve canaryrollouts" in failed[0]["error"], failed
    assert "canary/deploy/crd-canaryrollout.yaml" in failed[0]["error"] and "HTTPHeaderDict" not in failed[0]["error"]
    assert (failed[0]["repeated"], failed[1]["repeated"], failed[1]["error"]) == (0, 4, failed[0]["error"]), failed


class _Waits(threading.Event):
    """A stop event that records every `wait(timeout)` (returning at once): the informer's pauses, counted."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


@pytest.mark.parametrize("how", ["closed at once", "an ERROR event"])
def test_a_watch_that_ends_at_once_or_with_an_error_is_waited_for_before_the_next(how: str,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch the API server (or a proxy before it) closes at once with nothing delivered, or answers with an
    ERROR event other than 410, was followed at once by the next WATCH (and LIST): ~450 watches a second per
    informer, with three informers in the controller. Each is now followed by a `retry_s` wait; a closed one
    is watched again from the same resourceVersion (no LIST) and said as `informer.watch_failed` once."""
    import aiohttp.web
    from structlog.testing import capture_logs

    from canary import informer

    monkeypatch.setattr(informer, "QUICK_END_S", 600.0)  # however slow this machine: "at once"
    api = KubeAPIServer(seed=[cm("a")]).start()
    client = api.api_client()
    stop, watches = _Waits(), [0]

    async def ends(request: Any, kind: Any) -> Any:
        watches[0] += 1
        if watches[0] >= 10:
            stop.set()
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request._raw_request)
        if how == "an ERROR event":
            error = kubeapi.status_body(500, "InternalError", "etcd leader changed")
            await resp.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
        await resp.write_eof()
        return resp

    api.handler._watch = ends  # type: ignore[method-assign]
    inf = Informer(functools.partial(kc.CoreV1Api(client).list_namespaced_config_map, "ml"), kind="configmaps",
                   watch_timeout_s=2, retry_s=0.25)
    try:
        with capture_logs() as logs:
            inf.run(stop)  # in this thread, until the 10th watch sets stop
    finally:
        client.close()
        api.stop()
    assert watches[0] == 10
    # one wait after each watch but the last (stop set during it: its ERROR is not read; a closed one still waits)
    assert len(stop.waits) in (9, 10) and set(stop.waits) == {0.25}, stop.waits
    if how == "closed at once":
        assert inf.relists == 1  # watched again from where it was
        said = [e for e in logs if e["event"] == "informer.watch_failed"]
        assert len(said) == 1 and "ended within" in said[0]["error"], said
    else:
        assert inf.relists == 10  # an ERROR: LIST again, as before, after the wait


@pytest.mark.parametrize("answer", [{}, None, "", {"kind": "CanaryRollout"}, {"metadata": {"namespace": "ml"}}])
def test_a_write_answer_that_is_no_object_is_never_cached(answer: Any) -> None:
    """`put` of what is no object (a proxy's `{}` answer to a write; decision 406): nothing cached. Before, `{}`
    was cached as an object "/" (the controller counted and ticked it as a CanaryRollout), `None` raised."""
    inf = Informer(lambda **kw: None, kind="canaryrollouts")
    inf.put(answer)  # type: ignore[arg-type]
    assert len(inf) == 0 and inf.summaries() == {}


def test_items_in_parses_the_objects_of_one_namespace_only() -> None:
    """A claim's look at the other VirtualServices (decision 578) took every cached one of the cluster, each parsed
    (`items`): 2,000 in 50 namespaces cost ~80 ms a claim, at every tick of a CanaryRollout waiting on a split
    (docs/benchmarks/controller.md). `items_in` parses those of one namespace only: "ml2/..." is not "ml/..."
    (decision 601)."""
    inf = Informer(lambda **kw: None, kind="virtualservices")
    for ns, name in [("ml", "a"), ("ml2", "b"), ("ml", "c"), ("other", "d")]:
        inf.put({"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}})
    assert sorted(o["metadata"]["name"] for o in inf.items_in("ml")) == ["a", "c"]
    assert inf.items_in("none") == [] and len(inf.items()) == 4


def test_a_look_at_the_other_virtual_services_parses_only_those_that_split_with_a_canary_subset() -> None:
    """A rollout's look at the other VirtualServices of its namespace at every tick (decision 602) parsed each one:
    500 in one namespace cost ~20 ms a look, per rollout per tick. The VirtualServices' informer keeps the services
    whose canary subset each splits with (`canary_split_hosts`), and `items_in(where=may_split)` parses only those;
    a route at 100/0, one to the canary alone, and an object kept without a summary are told apart."""
    from canary.informer import Informers
    from canary.routing.splits import canary_split_hosts, may_split

    def vs(name: str, *weights: int, ns: str = "ml") -> dict[str, Any]:
        dests = [{"destination": {"host": "m0", "subset": s}, **({"weight": w} if len(weights) > 1 else {})}
                 for s, w in zip(("stable", "canary") if len(weights) > 1 else ("canary",), weights)]
        return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "spec": {"http": [{"route": dests}]}}

    assert canary_split_hosts(vs("split", 90, 10)) == {"m0.ml.svc.cluster.local"}
    assert canary_split_hosts(vs("whole", 100, 0)) == frozenset() == canary_split_hosts(vs("testers", 100))
    inf = Informers(None, namespace="ml").routes["virtualservices"]
    for obj in (vs("split", 90, 10), vs("whole", 100, 0), vs("testers", 100), vs("elsewhere", 80, 20, ns="ml2")):
        inf.put(obj)
    assert [o["metadata"]["name"] for o in inf.items_in("ml", where=may_split)] == ["split"]
    bare = Informer(lambda **kw: None, kind="virtualservices")  # no summary kept: every one parsed, as before
    bare.put(vs("whole", 100, 0))
    assert len(bare.items_in("ml", where=may_split)) == 1

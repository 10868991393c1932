"""Informers: one LIST, then a WATCH, of one kind of object, kept in a local cache.

What client-go's informers do, for the three kinds the controller reads (CanaryRollouts,
VirtualServices, DestinationRules): the controller reads them from memory instead of
LISTing everything every tick, and is told what changed. A watch that expires (410 Gone:
the API server no longer keeps the events since our resourceVersion) or fails is followed by
a fresh LIST, as informers do; the LIST's differences with the cache are reported as changes.

The cache holds each object as compact JSON, zlib-compressed (level 1), parsed again on every
read: a few kB per object instead of the ~5x larger tree of Python dicts and strings (measured:
a CanaryRollout of 5.4 kB of JSON took 26.5 kB parsed; docs/benchmarks/controller.md), and
about a third of that again compressed (its status and the VirtualService's state annotation
repeat their keys), and every reader gets its own copy, so no caller can change the cache by
accident. A read costs a decompression and a `json.loads` of one object (tens of microseconds);
a cached write, one compression (~10 us for a few kB); `summary` keeps one small value per
object (for CanaryRollouts, its phase) for the questions asked of every object each tick.

Reads from the cache may be stale by the watch's latency. That is safe because every write
still carries the resourceVersion it was computed from (a stale read costs a 409 and a fresh
read, never a lost update), and a controller's own writes are put back into the cache
(`put`, client-go's mutation cache) so that its next step does not start from before them.

Log events: ``informer.relisted`` (kind, items, reason), ``informer.watch_failed`` (kind, error).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from canary.packing import pack_json, unpack_json
from canary.kube import raw_list
from canary.logs import get as get_logger

# a LIST/WATCH failing for one cause is logged again every REPEAT_LOG_S (the controller's lines too)
from canary.throttle import REPEAT_LOG_S, Throttle  # noqa: F401  (REPEAT_LOG_S: re-exported)

Obj = dict[str, Any]


def key_of(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def slim(obj: Obj) -> Obj:
    """`obj` without `metadata.managedFields` (a shallow copy; `obj` is not changed).

    The server-side-apply bookkeeping the API server adds to every object, often larger than the
    rest of a small object's metadata; nothing here reads it, and an update that omits it keeps
    the server's (what client-go's informers drop with TransformStripManagedFields)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def without_step_start_snapshot(obj: Obj) -> Obj:
    """A CanaryRollout without `status.stepStart.snapshot` (shallow copies; `obj` is not changed);
    `status.stepStart.snapshotOmitted` says one was there.

    The rollouts informer's transform: the persisted step-start snapshot (every series of the
    rollout's metric families at its step's start, kilobytes with fine bucket layouts) is only
    read when a process takes a rollout over in mid-step, and then from the API (one GET); the
    controller that wrote it holds it parsed in memory. Cached, it would be parsed at every tick."""
    status = obj.get("status")
    saved = status.get("stepStart") if isinstance(status, dict) else None
    if not isinstance(saved, dict) or "snapshot" not in saved:
        return obj
    kept = {k: v for k, v in saved.items() if k != "snapshot"}
    kept["snapshotOmitted"] = True
    return {**obj, "status": {**status, "stepStart": kept}}


def phase_of(obj: Obj) -> str | None:
    """A CanaryRollout's `status.phase` (None before its first status): the rollouts informer's summary."""
    status = obj.get("status")
    return status.get("phase") if isinstance(status, dict) else None


def stub(key: str) -> Obj:
    """The metadata of the object namespace/name, for questions that need only its identity (a shard's `owns`)."""
    namespace, _, name = key.partition("/")
    return {"metadata": {"namespace": namespace, "name": name}}


# a watch that ends this soon having delivered nothing is a failure: the next one waits `retry_s`
QUICK_END_S = 1.0


class WatchEnded(Exception):
    """A watch that ended at once with nothing delivered (`Informer.watch_once`: "quick")."""


class _Entry:
    """One cached object: its resourceVersion (as an integer when it is one), compressed JSON, summary."""

    __slots__ = ("rv", "data", "summary")

    def __init__(self, rv: int | None, data: bytes, summary: Any) -> None:
        self.rv, self.data, self.summary = rv, data, summary


def _newer(rv: int | None, have: _Entry | None) -> bool:
    """Whether a version `rv` replaces the cached `have`: nothing cached, or either version unknown
    (not an integer: taken), or `rv` is later (resourceVersions compared as integers, as etcd's are)."""
    return have is None or have.rv is None or rv is None or rv > have.rv


def _rv(obj: Obj | None) -> int | None:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


class Informer:
    """`lister(**kw)` is a kubernetes client list call with its positional arguments bound, e.g.
    ``functools.partial(custom.list_namespaced_custom_object, group, version, ns, plural)``;
    it is called with ``_preload_content=False`` (plain JSON, no model classes) and, to watch,
    ``watch=True, resource_version=..., timeout_seconds=...``. `on_change(key, obj or None)` is
    called from the informer's thread for every change (None: deleted). `summary(obj)` is kept per
    object (`summaries`) and must be small. `transform(obj)` (client-go's informer transform) cuts
    what the cache and `on_change` see, after `slim`; it must not change `obj` in place."""

    def __init__(self, lister: Callable[..., Any], *, kind: str,
                 on_change: Callable[[str, Obj | None], None] | None = None,
                 summary: Callable[[Obj], Any] | None = None, transform: Callable[[Obj], Obj] | None = None,
                 watch_timeout_s: int = 60, request_timeout_s: float = 30.0, retry_s: float = 1.0) -> None:
        self.lister, self.kind, self.on_change, self.summary = lister, kind, on_change, summary
        self.transform = transform
        self.watch_timeout_s, self.request_timeout_s, self.retry_s = watch_timeout_s, request_timeout_s, retry_s
        self._items: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.resource_version: str | None = None  # of the last LIST or event seen; None: LIST next
        self.synced = threading.Event()
        self.relists = 0
        self.log = get_logger(component="informer", kind=kind)
        self._quiet = Throttle()  # `_failed`'s: one stream of lines (key ""), the count carried over a new cause

    # ---- the cache --------------------------------------------------------------------

    def _cut(self, obj: Obj) -> Obj:
        obj = slim(obj)
        return self.transform(obj) if self.transform is not None else obj

    def _entry(self, obj: Obj) -> _Entry:
        return _Entry(_rv(obj), pack_json(obj), self.summary(obj) if self.summary is not None else None)

    def get(self, namespace: str, name: str) -> Obj | None:
        """A fresh copy of the cached object (None: not cached)."""
        with self._lock:
            entry = self._items.get(f"{namespace}/{name}")
        return None if entry is None else unpack_json(entry.data)

    def items(self) -> list[Obj]:
        """Fresh copies of every cached object (parses them all: for rare questions; see `summaries`)."""
        with self._lock:
            data = [e.data for e in self._items.values()]
        return [unpack_json(d) for d in data]

    def items_in(self, namespace: str, *, where: Callable[[Any], bool] | None = None) -> list[Obj]:
        """Fresh copies of the cached objects of `namespace` only (the others are not parsed: a claim's look at the
        namespace's VirtualServices parsed every one of the cluster; decision 601); with `where`, only those whose
        `summary` it holds true of (the others are not parsed either; decision 602)."""
        prefix = f"{namespace}/"
        with self._lock:
            data = [e.data for k, e in self._items.items() if k.startswith(prefix)
                    and (where is None or where(e.summary))]
        return [unpack_json(d) for d in data]

    def summaries(self) -> dict[str, Any]:
        """namespace/name -> `summary(obj)` of every cached object, without parsing any."""
        with self._lock:
            return {k: e.summary for k, e in self._items.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, obj: Obj) -> None:
        """An object this process just wrote (the API's answer): cached unless the cache already holds a
        newer version (resourceVersions compared as integers, as etcd's are; otherwise it is taken). What is
        no object (no `metadata.name`: a proxy's `{}` answer to a write; the writers check theirs with
        `kube.an_object`) is not cached: `{}` was a CanaryRollout "/", ticked and counted as one (decision 406)."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or not meta.get("name"):
            return
        key, entry = key_of(obj), self._entry(self._cut(obj))
        with self._lock:
            if _newer(entry.rv, self._items.get(key)):
                self._items[key] = entry

    # ---- LIST and WATCH ---------------------------------------------------------------

    def relist(self, reason: str = "start") -> None:
        """LIST and replace the cache with what it answered, except a cached version newer than the
        LIST's (a write of ours `put` while the LIST was on its way: resourceVersions compared as
        integers, as in `put`), so that a re-list never takes our own write back."""
        # a 200 whose body is not a list (a proxy's `{}`): the relist fails and is tried again; read as an empty
        # list it emptied the cache, every rollout's object gone from it (`kube.raw_list`)
        items, list_rv = raw_list(self.lister(_preload_content=False, _request_timeout=self.request_timeout_s),
                                  self.kind)
        objs = {key_of(o): self._cut(o) for o in items}
        del items
        list_rv = list_rv or None
        fresh = {key: self._entry(obj) for key, obj in objs.items()}
        list_at = _rv({"metadata": {"resourceVersion": list_rv}})
        with self._lock:
            old = self._items
            for key, have in old.items():  # our own writes (`put`) made after the LIST was served stay
                got = fresh.get(key)
                if not _newer(got.rv if got is not None else list_at, have):
                    fresh[key] = have
            self._items = fresh
            self.resource_version = list_rv
        self.relists += 1
        self.log.info("informer.relisted", items=len(fresh), reason=reason)
        try:
            if self.on_change is not None:
                for key, obj in objs.items():
                    was = old.get(key)
                    if was is None or was.rv != fresh[key].rv:
                        self.on_change(key, obj)
                for key in old.keys() - fresh.keys():
                    self.on_change(key, None)
        finally:  # synced once the LIST's changes are reported too: a reader that waits on it sees them
            self.synced.set()

    def watch_once(self, stop: threading.Event | None = None) -> str | None:
        """Follow the watch until it ends (timeout, 410, error); an ERROR event makes the next run LIST.

        Returns why the next watch must wait `retry_s` (client-go's reflector backs off the same way): "error",
        an ERROR event other than 410 Expired (already logged by `_event`), or "quick", a watch that ended
        within QUICK_END_S having delivered nothing (a proxy or load balancer closing streams at once, an API
        server shutting down). Either was followed at once by the next LIST or WATCH: ~450 watches a second
        per informer, measured on the API emulator. None otherwise (a watch timed out, a 410, `stop`)."""
        from kubernetes.watch.watch import iter_resp_lines

        started, lines = time.monotonic(), 0
        resp = self.lister(watch=True, resource_version=self.resource_version, timeout_seconds=self.watch_timeout_s,
                           allow_watch_bookmarks=True, _preload_content=False,
                           _request_timeout=(self.request_timeout_s, self.watch_timeout_s + self.request_timeout_s))
        try:
            for line in iter_resp_lines(resp):
                if stop is not None and stop.is_set():
                    return None
                if line:
                    lines += 1
                    event = json.loads(line)
                    self._event(event)
                    if self.resource_version is None:
                        code = (event.get("object") or {}).get("code") if isinstance(event, dict) else None
                        return None if code == 410 else "error"
        finally:
            resp.close()
            resp.release_conn()
        return "quick" if lines == 0 and time.monotonic() - started < QUICK_END_S else None

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), self._cut(event.get("object") or {})
        if kind == "ERROR":
            code = obj.get("code")
            self.resource_version = None  # 410 Expired or anything else: LIST again
            self.log.info("informer.watch_expired" if code == 410 else "informer.watch_failed",
                          error=str(obj.get("message", ""))[:300], code=code)
            return
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        key, new_rv = key_of(obj), _rv(obj)
        with self._lock:
            have = self._items.get(key)
        # our own write, already cached (`put`): not a change, and not encoded again
        entry = self._entry(obj) if kind != "DELETED" and _newer(new_rv, have) else None
        with self._lock:
            if kind == "DELETED":
                # a deletion older than the cached version is of an earlier object of that name (the cached
                # one came from a `put`: a live read or our own write's answer, ahead of this watch): kept
                have = self._items.get(key)
                changed = have is None or have.rv is None or new_rv is None or new_rv >= have.rv
                if changed:
                    self._items.pop(key, None)
            else:  # checked again: a `put` may have come in between
                changed = entry is not None and _newer(new_rv, self._items.get(key))
                if changed:
                    self._items[key] = entry
            self.resource_version = rv or self.resource_version
        if self.on_change is not None and changed:
            self.on_change(key, None if entry is None else obj)

    def run(self, stop: threading.Event) -> None:
        """LIST, then WATCH from its resourceVersion, again and again, until `stop`."""
        while not stop.is_set():
            try:
                if self.resource_version is None:
                    self.relist("start" if not self.synced.is_set() else "expired")
                why = self.watch_once(stop)
                if why == "quick":
                    self._failed(WatchEnded(f"the watch ended within {QUICK_END_S:g} s with no event (closed by "
                                            "the API server or a proxy before it): watched again after a wait"))
                if why is not None:
                    stop.wait(self.retry_s)
            except Exception as exc:  # the API is down or the watch broke: try again, LIST if it keeps failing
                self._failed(exc)
                self.resource_version = None
                stop.wait(self.retry_s)

    def _failed(self, exc: BaseException) -> None:
        """Log a failed LIST or WATCH once per cause and then every REPEAT_LOG_S (`repeated`: how many
        since; it is retried every `retry_s`, and one raw line a second hid the cause): an API error in
        the words `kube.translate` gives it, a 404 as the kind not served, with what to install."""
        from canary.kube import translate

        status = getattr(exc, "status", None)
        if isinstance(exc, WatchEnded):
            error = str(exc)
        elif status == 404:
            what = ("the CanaryRollout CRD: kubectl apply -f canary/deploy/crd-canaryrollout.yaml"
                    if self.kind == "canaryrollouts" else f"Istio (its {self.kind} CRD, networking.istio.io "
                    "v1beta1)")
            error = f"the API server does not serve {self.kind} (HTTP 404): install {what}"
        else:
            error = str(translate(exc, self.kind)) if status is not None else f"{type(exc).__name__}: {exc}"
        repeated = self._quiet.due("", error)
        if repeated is not None:
            level = self.log.error if status == 404 else self.log.warning
            level("informer.watch_failed", error=error[:300], repeated=repeated)

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name=f"informer-{self.kind}", daemon=True)
        t.start()
        return t


class Informers:
    """The controller's three informers (CanaryRollouts, VirtualServices, DestinationRules) in one
    namespace or all, and the index from a VirtualService or DestinationRule to the rollouts that
    drive it, so that an edit of either wakes those rollouts."""

    def __init__(self, api_client: Any, *, namespace: str | None, istio_version: str = "v1beta1",
                 on_change: Callable[[str, str, Obj | None], None] | None = None, watch_timeout_s: int = 60) -> None:
        import kubernetes.client as kc

        from canary import crd
        from canary.routing.istio import DR_PLURAL, GROUP, VS_PLURAL
        from canary.routing.splits import canary_split_hosts

        custom = kc.CustomObjectsApi(api_client)

        def lister(group: str, version: str, plural: str) -> Callable[..., Any]:
            if namespace:
                return lambda **kw: custom.list_namespaced_custom_object(group, version, namespace, plural, **kw)
            return lambda **kw: custom.list_cluster_custom_object(group, version, plural, **kw)

        def tell(kind: str) -> Callable[[str, Obj | None], None]:
            return lambda key, obj: on_change(kind, key, obj) if on_change is not None else None

        self.rollouts = Informer(lister(crd.GROUP, crd.VERSION, crd.PLURAL), kind=crd.PLURAL,
                                 on_change=tell(crd.PLURAL), summary=phase_of,
                                 transform=without_step_start_snapshot, watch_timeout_s=watch_timeout_s)
        # a VirtualService's summary: the services whose canary subset it splits with (a rollout's look at the
        # other VirtualServices of its namespace at each tick parses only those; decision 602)
        self.routes = {plural: Informer(lister(GROUP, istio_version, plural), kind=plural, on_change=tell(plural),
                                        summary=canary_split_hosts if plural == VS_PLURAL else None,
                                        watch_timeout_s=watch_timeout_s) for plural in (VS_PLURAL, DR_PLURAL)}
        self._users: dict[tuple[str, str], set[str]] = {}  # (plural, namespace/name) -> rollout keys
        self._lock = threading.Lock()

    def all(self) -> list[Informer]:
        return [self.rollouts, *self.routes.values()]

    def start(self, stop: threading.Event) -> None:
        for inf in self.all():
            inf.start(stop)

    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.all())

    def route_objects(self, namespace: str, names: dict[str, str]) -> list[tuple[str, Obj]]:
        """(plural, cached object) for {plural: name}; what is not cached is left out (read from the API)."""
        out = []
        for plural, name in names.items():
            obj = self.routes[plural].get(namespace, name)
            if obj is not None:
                out.append((plural, obj))
        return out

    def use(self, rollout: str, namespace: str, names: dict[str, str]) -> None:
        """Rollout `rollout` reads these objects: their changes wake it."""
        with self._lock:
            for plural, name in names.items():
                self._users.setdefault((plural, f"{namespace}/{name}"), set()).add(rollout)

    def users(self, plural: str, key: str) -> set[str]:
        with self._lock:
            return set(self._users.get((plural, key), ()))

    def written(self, plural: str, obj: Obj) -> None:
        """A write's answer, into the cache at once (`Informer.put`)."""
        inf = self.rollouts if plural not in self.routes else self.routes[plural]
        inf.put(obj)

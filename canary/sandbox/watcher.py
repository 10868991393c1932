"""The sandbox's istiod: follows the VirtualService and pushes its weights to HAProxy.

In a cluster the controller writes weights to the Kubernetes API and istiod
turns them into Envoy configuration; the controller never talks to the data
plane. The sandbox keeps that shape, so a rollout there proves the same thing:
what the controller wrote to the API is what users got. The watcher watches
the VirtualService and DestinationRule (falling back to a 200 ms poll when a
watch breaks), resolves each subset to its ``version`` label and each version
to the HAProxy server running it, and sets HAProxy's weights -- so after a
promotion, when the stable subset selects the new version, the "canary"
process keeps serving 100%, exactly as pods relabelled by a promotion would.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import structlog

from canary.sandbox.haproxy import HAProxy

log = structlog.get_logger(__name__)
RESYNC_TIMEOUT_S = 60.0  # a read nothing retries (`resync`): a hang guard only

GROUP = "networking.istio.io"


def route_weights(vs: dict[str, Any], route: str | None = None) -> dict[str, int]:
    """{subset: weight} of the named (or only/first) HTTP route of a VirtualService."""
    routes = vs.get("spec", {}).get("http") or []
    chosen = next((r for r in routes if r.get("name") == route), None) if route else (routes[0] if routes else None)
    if chosen is None:
        return {}
    dests = chosen.get("route") or []
    out: dict[str, int] = {}
    for d in dests:
        subset = d.get("destination", {}).get("subset", "")
        out[subset] = out.get(subset, 0) + int(d.get("weight", 100 if len(dests) == 1 else 0))
    return out


def subset_versions(dr: dict[str, Any]) -> dict[str, str]:
    return {s.get("name", ""): (s.get("labels") or {}).get("version", "") for s in dr.get("spec", {}).get("subsets") or []}


def server_weights(vs: dict[str, Any], dr: dict[str, Any], servers: dict[str, str], *,
                   route: str | None = None) -> dict[str, int]:
    """HAProxy weight per server: the sum of the weights of subsets selecting its version.

    ``servers`` maps version label -> HAProxy server name. A subset whose
    version no server runs gets its weight dropped (Istio would answer 503
    "no healthy upstream" for that share; we log it instead).
    """
    versions = subset_versions(dr)
    out = {name: 0 for name in servers.values()}
    for subset, weight in route_weights(vs, route).items():
        server = servers.get(versions.get(subset, ""))
        if server is None:
            if weight:
                log.warning("watcher.subset_without_pods", subset=subset, version=versions.get(subset), weight=weight)
            continue
        out[server] += weight
    return out


class Watcher:
    """Keeps HAProxy's weights equal to the VirtualService's, until :meth:`stop`."""

    def __init__(self, api_client: Any, haproxy: HAProxy, *, namespace: str, name: str, servers: dict[str, str],
                 dr_name: str | None = None, route: str | None = None, api_version: str = "v1beta1",
                 poll_interval: float = 0.2, use_watch: bool = True,
                 before_push: Callable[[dict[str, int]], None] | None = None) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.haproxy = haproxy
        self.namespace, self.name, self.dr_name = namespace, name, dr_name or name
        self.servers = dict(servers)
        self.route = route
        self.api_version = api_version
        self.poll_interval = poll_interval
        self.use_watch = use_watch
        # called with the new weights just before they reach HAProxy: the sandbox injects
        # its fault there, so the canary misbehaves from its very first request
        self.before_push = before_push
        self.history: list[tuple[float, dict[str, int]]] = []  # (monotonic time, weights pushed)
        self._objs: dict[str, dict[str, Any]] = {}
        self._pushed: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Watcher":
        self.resync()
        targets = [("virtualservices", self.name), ("destinationrules", self.dr_name)]
        for plural, name in targets:
            loop = self._watch_loop if self.use_watch else self._poll_loop
            t = threading.Thread(target=loop, args=(plural, name), name=f"watcher-{plural}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("watcher.started", namespace=self.namespace, virtual_service=self.name,
                 mode="watch" if self.use_watch else "poll", servers=self.servers)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        log.info("watcher.stopped", pushes=len(self.history))

    def wait_for(self, weights: dict[str, int], timeout: float = 5.0) -> bool:
        """True once the last push equals ``weights`` (tests and the demo use it)."""
        return self._until(lambda: self._pushed == weights, timeout)

    def wait_seen(self, versions: dict[str, int], timeout: float = 10.0) -> bool:
        """True once the objects last read are at least at these resourceVersions ({plural: rv}): every push
        from then on is computed from them (`Sandbox.rearm` waits so for the objects it put back)."""
        def seen(plural: str) -> int:
            return int((self._objs.get(plural) or {}).get("metadata", {}).get("resourceVersion") or 0)

        return self._until(lambda: all(seen(p) >= rv for p, rv in versions.items()), timeout)

    def _until(self, holds: Callable[[], bool], timeout: float) -> bool:
        """True once `holds()`, asked under the lock every 20 ms, is true; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if holds():
                    return True
            time.sleep(0.02)
        return False

    def resync(self) -> None:
        """Read both objects afresh and push. Nothing retries these reads (the loops' reads are retried at their
        next poll or watch), so each gets RESYNC_TIMEOUT_S: a hang guard, not a speed bound (2 s failed a sandbox's
        start on a loaded host: decision 804)."""
        for plural, name in (("virtualservices", self.name), ("destinationrules", self.dr_name)):
            self._objs[plural] = self._get(plural, name, timeout_s=RESYNC_TIMEOUT_S)
        self._push()

    def _get(self, plural: str, name: str, *, timeout_s: float = 2.0) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, self.api_version, self.namespace, plural, name,
                                                     _request_timeout=timeout_s)

    def _push(self) -> None:
        with self._lock:
            vs, dr = self._objs.get("virtualservices"), self._objs.get("destinationrules")
            if not vs or not dr:
                return
            weights = server_weights(vs, dr, self.servers, route=self.route)
            if weights == self._pushed:
                return
            if self.before_push is not None:
                try:
                    self.before_push(dict(weights))
                except Exception as exc:  # a hook must not stop the data plane
                    log.error("watcher.hook_failed", error=str(exc))
            try:
                self.haproxy.set_weights(weights)
            except (OSError, RuntimeError) as exc:
                log.error("watcher.push_failed", error=str(exc), weights=weights)
                return
            self._pushed = weights
            self.history.append((time.monotonic(), dict(weights)))
        log.info("watcher.weights_pushed", resource_version=vs.get("metadata", {}).get("resourceVersion"),
                 vs_weights=route_weights(vs, self.route), subsets=subset_versions(dr), **weights)

    def _poll_loop(self, plural: str, name: str) -> None:
        last_rv = ""
        while not self._stop.wait(self.poll_interval):
            try:
                obj = self._get(plural, name)
            except Exception as exc:  # the API may be briefly away; keep the last weights
                log.warning("watcher.read_failed", plural=plural, error=str(exc)[:200])
                continue
            rv = obj.get("metadata", {}).get("resourceVersion", "")
            if rv != last_rv:
                last_rv = rv
                self._objs[plural] = obj
                self._push()

    def _watch_loop(self, plural: str, name: str) -> None:
        from kubernetes import watch

        rv = self._objs.get(plural, {}).get("metadata", {}).get("resourceVersion", "")
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.api.list_namespaced_custom_object, GROUP, self.api_version,
                                      self.namespace, plural, resource_version=rv, timeout_seconds=1,
                                      _request_timeout=5):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if obj.get("metadata", {}).get("name") == name and event.get("type") in ("ADDED", "MODIFIED"):
                        self._objs[plural] = obj
                        self._push()
                    if self._stop.is_set():
                        w.stop()
            except Exception as exc:
                # A broken or expired watch: read the object afresh (a poll), then watch again.
                log.warning("watcher.watch_broken", plural=plural, error=str(exc)[:200])
                if self._stop.wait(self.poll_interval):
                    break
                try:
                    self._objs[plural] = self._get(plural, name)
                    rv = self._objs[plural].get("metadata", {}).get("resourceVersion", "")
                    self._push()
                except Exception:
                    pass

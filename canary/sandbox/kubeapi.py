"""A strict, in-memory Kubernetes API server for tests and the local sandbox.

No real kube-apiserver can be installed on our machines, and kmock's stock
emulator is too forgiving for a controller whose safety rests on optimistic
concurrency: it has no resourceVersion, no 409 on stale writes, no PUT and
answers 200 on create. This module keeps kmock's HTTP plumbing (request
parsing, discovery endpoints, Status-shaped errors) and replaces its object
store with a strict one:

* every write bumps a cluster-wide, monotonically increasing resourceVersion;
* PUT and merge-patch carrying a stale resourceVersion get 409 Conflict;
  a failing JSON-patch ``test`` op gets 422 (as the real apiserver does);
* create answers 201, duplicates 409 AlreadyExists, missing objects 404 —
  always as a ``kind: Status`` body the official client understands; a create
  with ``dryRun=All`` is checked as one is and stores nothing;
* GET/LIST/WATCH, POST, PUT, PATCH (merge, strategic treated as merge, JSON
  patch) and DELETE for the registered resources; anything else is 404;
* an object whose labels or annotations the API server would refuse (a key that is no qualified name, a label
  value that is no label value, annotations past 256 KiB: `objectmeta`) is refused with 422 Invalid, worded as the
  API server words it, with its field errors in details.causes; a write or a seed alike;
* an Event whose name is no lowercase RFC 1123 subdomain is refused with 422 Invalid, as the API server does;
* a ConfigMap whose data keys are not `[-._a-zA-Z0-9]+` or whose data and
  binaryData exceed 1 MiB is refused with 422 Invalid, as the API server does;
* a ResourceQuota's object counts (`spec.hard` keys `count/<resource>.<group>`,
  `count/<resource>` for the core group) are enforced on create, a dry run too,
  as the quota admission plugin does: 403 Forbidden, `<resource>.<group> "<name>"
  is forbidden: exceeded quota: <quota>, requested: ..., used: ..., limited: ...`
  (register `resourcequotas` to store one). Other quota resources are not.
* with `accept_tokens` set, a request whose `Authorization: Bearer` token it does not accept gets 401
  Unauthorized before anything else, watches and discovery included, as an API server's authenticator does
  for an expired or revoked token; with `anonymous_forbidden` too, a request carrying no token at all gets
  403 Forbidden for `system:anonymous` instead, as an API server with anonymous authentication on (the
  default: EKS, GKE) answers one;
* with `accept_certs` set (served over HTTPS whose context asks for a client certificate), a request whose TLS
  client certificate's common name it does not accept (None: none presented) gets 401 Unauthorized, as an API
  server does for an expired client certificate (it asks for one in the handshake and refuses it afterwards).

Tests drive it through :class:`KubeAPIServer` (a real HTTP server on
127.0.0.1 in a background thread) and can inject faults or make a "foreign"
edit land just before the next write, to prove that callers survive races.

Bounded, so that a benchmark at thousands of rollouts measures the controller,
not the emulator: the change log that watches replay keeps the last `LOG_SIZE`
events (references to the stored objects, which are never mutated once stored:
every write stores a new object); a watch from an older resourceVersion, or one
that fell more than `LOG_SIZE` events behind, gets a 410 Expired ERROR event and
must re-list, as from a real API server. `writes` keeps the last `WRITES_KEPT`
(`write_count` counts them all). Not emulated: admission, defaulting, schema
validation and pruning, server-side apply (`gitops_apply` models what
an apply does to the fields it sets and the annotations it never applied), label selectors beyond equality,
bookmarks, pagination (a LIST answers everything at once), RBAC. Finalizers are: a DELETE of
an object with finalizers sets `metadata.deletionTimestamp` (a MODIFIED event) and keeps it
until a write removes the last one (then DELETED); none may be added from then on.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp.test_utils
import aiohttp.web
import kmock

from canary.sandbox import objectmeta
from canary.sandbox.jsonpatch import json_patch, merge_patch


Obj = dict[str, Any]
Key = tuple[str, str, str, str]  # group, plural, namespace, name
ISTIO = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
# an Event's name, as the API server checks it (IsDNS1123Subdomain): the drift monitor named its Events after a model
# (`densenet_onnx-drift-...`), each refused in a cluster, each stored here (decision 530)
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ANNOTATIONS_LIMIT = objectmeta.ANNOTATIONS_LIMIT  # bytes of every annotation's key and value together
LOG_SIZE = 5000  # change events a watch can replay (older resourceVersions: 410 Expired)
WRITES_KEPT = 100_000  # (method, path, status) of the latest writes, for tests


@dataclass(frozen=True)
class Resource:
    group: str
    plural: str
    kind: str
    versions: tuple[str, ...]
    namespaced: bool = True
    status_subresource: bool = False  # as a CRD with `subresources: {status: {}}`


DEFAULT_RESOURCES = (
    Resource(ISTIO, "virtualservices", "VirtualService", ISTIO_VERSIONS),
    Resource(ISTIO, "destinationrules", "DestinationRule", ISTIO_VERSIONS),
    Resource("", "events", "Event", ("v1",)),
    Resource("", "configmaps", "ConfigMap", ("v1",)),
    Resource("coordination.k8s.io", "leases", "Lease", ("v1",)),
)
# what `routing.pods` reads before traffic moves (the sandbox registers them; tests that do not get
# "unchecked", as a cluster without the RBAC would)
PODS = Resource("", "pods", "Pod", ("v1",))
SERVICES = Resource("", "services", "Service", ("v1",))


def ready_pod(name: str, namespace: str, labels: dict[str, str], *, ready: bool = True) -> Obj:
    """A Pod as the kubelet reports it: Running with its Ready condition True (or Pending, not Ready)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       **({} if ready else {"reason": "ContainersNotReady"})}]}}


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` instead of serving them,
    or (status 0) serve them only after `delay` seconds, to provoke client timeouts, or
    (status 0, `hold`) only once `hold` is set, so a test decides when a request lands."""

    status: int
    times: int
    methods: frozenset[str]
    plural: str | None = None
    delay: float = 0.0
    hold: threading.Event | None = None
    retry_after: int | None = None  # seconds: a `Retry-After` header and the Status's details.retryAfterSeconds
    message: str | None = None  # the Status's message (an admission webhook's denial); default "injected fault: ..."


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, *, retry_after: int | None = None,
                 causes: list[Obj] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.retry_after = code, reason, message, retry_after
        self.causes = causes  # the Status's details.causes (a 422's field errors), as the API server lists them


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details or {}, "code": code}


class StrictKubeAPI(kmock.KubernetesScaffold):
    """The request handler: kmock's discovery and parsing, our strict object store.

    All state sits behind one threading lock, so tests may seed, read and edit
    objects from their own thread while the event loop serves requests.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.lock = threading.RLock()
        self.objects: dict[Key, Obj] = {}
        self.kinds: dict[tuple[str, str], Resource] = {}
        self.log: list[tuple[int, str, Key, Obj]] = []  # (rv, event type, key, object)
        self.faults: list[Fault] = []
        self.before_write: list[Callable[[], None]] = []
        self.writes: list[tuple[str, str, int]] = []  # (method, path, status) of the last WRITES_KEPT writes
        self.write_count = 0  # every write answered, faults included
        self.requests: dict[tuple[str, str], int] = {}  # (method or WATCH, plural) -> requests received
        self.arrivals: list[tuple[float, str, str]] = []  # (time.monotonic() on receipt, method, path) of writes
        self.closing = False
        # None: no authentication; else called with the bearer token (None when none) of every request
        self.accept_tokens: Callable[[str | None], bool] | None = None
        self.refused_tokens: list[tuple[str, str, str | None]] = []  # (method, path, token) answered 401
        self.anonymous_forbidden = False  # with accept_tokens: no token at all is 403 system:anonymous, not 401
        self.accept_certs: Callable[[str | None], bool] | None = None  # the client certificate's CN (None: none)
        self.refused_certs: list[tuple[str, str, str | None]] = []  # (method, path, CN) answered 401
        self._rv = itertools.count(1)
        self._first_rv = 1  # the resourceVersion of the first event ever logged
        for res in DEFAULT_RESOURCES:
            self.register(res)

    # --- store API (thread-safe; used by the handler and by tests) ---------

    def register(self, res: Resource) -> None:
        with self.lock:
            self.kinds[(res.group, res.plural)] = res
            for v in res.versions:
                key = f"{res.group}/{v}/{res.plural}" if res.group else f"v1/{res.plural}"
                self.resources[key] = kmock.ResourceInfo(
                    kind=res.kind, namespaced=res.namespaced,
                    verbs={"get", "list", "watch", "create", "update", "patch", "delete"})

    def put_object(self, obj: Obj) -> Obj:
        """Create or overwrite an object without preconditions (seeding, foreign edits)."""
        obj = copy.deepcopy(obj)
        group, _, _ = obj["apiVersion"].rpartition("/")
        found = [r for r in self.kinds.values() if r.group == group and r.kind == obj.get("kind")]
        if not found:
            raise ValueError(f"unregistered kind {obj['apiVersion']} {obj.get('kind')}; call register() first")
        meta = obj.setdefault("metadata", {})
        key = (group, found[0].plural, meta.get("namespace", ""), meta["name"])
        with self.lock:
            old = self.objects.get(key)
            return copy.deepcopy(self._store(key, obj, old, "MODIFIED" if old else "ADDED"))

    def get_object(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get((group, plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def edit_object(self, group: str, plural: str, namespace: str, name: str,
                    edit: Callable[[Obj], None]) -> Obj:
        """A foreign writer's edit: mutate a copy, store it with a new resourceVersion."""
        with self.lock:
            key = (group, plural, namespace, name)
            new = copy.deepcopy(self.objects[key])
            edit(new)
            return copy.deepcopy(self._store(key, new, self.objects[key], "MODIFIED"))

    def _store(self, key: Key, new: Obj, old: Obj | None, event: str) -> Obj:
        """Store `new` under `key` and log it; returns the stored object itself, which is never mutated (a write
        stores a new one): what is served is serialised from it as a GET serialises `objects`, and what is
        handed to a caller that may keep or change it is copied there (`put_object`, `edit_object`). A copy
        here, for every write the controller sent, was a large share of the emulator's CPU."""
        if key[1] == "configmaps":
            _check_configmap(key[3], new)
        self._check_meta(key, new)
        meta = new.setdefault("metadata", {})
        objectmeta.decode_nulls(meta)
        meta["namespace"], meta["name"] = key[2], key[3]
        if old is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta["generation"] = 1
        else:
            for f in ("uid", "creationTimestamp"):
                meta[f] = old["metadata"][f]
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                      {k: v for k, v in old.items() if k not in ("metadata", "status")}
            meta["generation"] = old["metadata"].get("generation", 1) + int(changed)
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        self._append_log(event, key, new)
        return new

    def _check_meta(self, key: Key, obj: Obj) -> None:
        """The API server's validation of labels and annotations (`objectmeta`), on every write and seed: 422
        Invalid naming the object as it does (`VirtualService.networking.istio.io "m0" is invalid: ...`), each
        field error in details.causes; 400 for a map that is not of strings. A refused write is refused whole:
        its weights too."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or not (meta.get("labels") or meta.get("annotations")):
            return
        try:
            errors = objectmeta.field_errors(meta)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        if errors:
            res = self.kinds.get(key[:2])
            kind = (f"{res.kind}.{res.group}" if res.group else res.kind) if res else key[1]
            raise ApiError(422, "Invalid", objectmeta.message(kind, key[3], errors),
                           causes=[{"reason": t, "message": body, "field": f} for t, f, body in errors])

    def _append_log(self, event: str, key: Key, obj: Obj) -> None:
        """`obj` is the stored object itself: stored objects are replaced, never mutated, so no copy."""
        self.log.append((int(obj["metadata"]["resourceVersion"]), event, key, obj))
        if len(self.log) > LOG_SIZE + LOG_SIZE // 10:  # trimmed in batches: amortised O(1)
            del self.log[:-LOG_SIZE]

    def _wrote(self, method: str, path: str, code: int) -> None:
        self.writes.append((method, path, code))
        self.write_count += 1
        if len(self.writes) > WRITES_KEPT + WRITES_KEPT // 10:
            del self.writes[:-WRITES_KEPT]

    # --- HTTP ---------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """A request for a registered resource's objects goes to `_handle` as a `_ResourceRequest`, parsed here;
        anything else (discovery, /version, unknown paths) through kmock's own parsing, as before. kmock's
        `Request._parse` decodes every body as JSON and as a form, builds its URL and cookie maps and checks
        protocols at run time: about a third of the emulator's CPU per request, for fields no handler here reads
        (docs/benchmarks/suite.md, h-suite1). Errors are kept and answered as kmock keeps and answers them."""
        request = _ResourceRequest.of(raw_request, self.kinds)
        if request is None:
            return await super().__call__(raw_request)
        request.body = await raw_request.read()  # the whole body buffered before the handler runs, as kmock does
        try:
            return await self._handle(request)  # type: ignore[arg-type]
        except Exception as exc:  # as kmock: kept for the context's exit, and answered 500 meanwhile
            if not self._errors:
                raise
            self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.accept_certs is not None:
            raw = getattr(request, "_raw_request", None)
            peer = raw.transport.get_extra_info("peercert") if raw is not None and raw.transport is not None else None
            name = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
            if not self.accept_certs(name):
                with self.lock:
                    self.refused_certs.append((str(request.method.value).upper(), request.url.path, name))
                return aiohttp.web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        if self.accept_tokens is not None:
            scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" and token.strip() else None
            if not self.accept_tokens(given):
                with self.lock:
                    self.refused_tokens.append((str(request.method.value).upper(), request.url.path, given))
                if given is None and self.anonymous_forbidden:
                    message = (f'User "system:anonymous" cannot {str(request.method.value).lower()} path '
                               f'"{request.url.path}"')
                    return aiohttp.web.json_response(status_body(403, "Forbidden", message), status=403)
                return aiohttp.web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        res = request.resource
        if request.url.path == "/version/":  # the official client asks with a trailing slash
            return aiohttp.web.json_response(await self._serve_server_version(request))
        if res is None or res.plural is None:
            return await super()._handle(request)  # discovery, /version, 404 fallback
        method = str(request.method.value).upper()
        verb = "WATCH" if method == "GET" and request.params.get("watch") in ("true", "1") else method
        with self.lock:
            self.requests[(verb, res.plural)] = self.requests.get((verb, res.plural), 0) + 1
        if method != "GET":
            self.arrivals.append((time.monotonic(), method, request.url.path))
            del self.arrivals[:-1000]
        try:
            delay = self._check_fault(method, res.plural)
            if isinstance(delay, threading.Event):
                await asyncio.get_running_loop().run_in_executor(None, delay.wait)  # the server keeps serving
            elif delay:
                await asyncio.sleep(delay)
            kind = self.kinds.get((res.group, res.plural))
            sub = request.subresource or ""
            if kind is None or res.version not in kind.versions or (sub and not (sub == "status" and kind.status_subresource)):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if method == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(request, kind)
            with self.lock:
                if method != "GET":
                    for hook in self.before_write:
                        hook()
                    self.before_write.clear()
                code, body = self._serve(method, request, kind)
            if method != "GET":
                with self.lock:
                    self._wrote(method, request.url.path, code)
        except ApiError as exc:
            if method != "GET":
                with self.lock:
                    self._wrote(method, request.url.path, exc.code)
            details: Obj = {"name": request.name or "", "group": res.group, "kind": res.plural}
            if exc.causes:
                details["causes"] = exc.causes
            if exc.retry_after is not None:  # as the API server says it (APF's 429, a storage timeout)
                details["retryAfterSeconds"] = exc.retry_after
                body, code = status_body(exc.code, exc.reason, exc.message, details), exc.code
                return aiohttp.web.json_response(body, status=code, headers={"Retry-After": str(exc.retry_after)})
            body, code = status_body(exc.code, exc.reason, exc.message, details), exc.code
        return aiohttp.web.json_response(body, status=code)

    def _check_fault(self, method: str, plural: str) -> float | threading.Event:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and method in fault.methods and fault.plural in (None, plural):
                    fault.times -= 1
                    if fault.hold is not None:
                        return fault.hold
                    if fault.delay:
                        return fault.delay
                    raise ApiError(fault.status, _REASONS.get(fault.status, "InternalError"),
                                   fault.message or f"injected fault: HTTP {fault.status}",
                                   retry_after=fault.retry_after)
        return 0.0

    def _serve(self, method: str, request: kmock.Request, kind: Resource) -> tuple[int, Any]:
        version = request.resource.version
        ns, name = request.namespace or "", request.name
        key = (kind.group, kind.plural, ns, name or "")
        if method == "GET" and name is None:
            sel = _selector(request.params)
            items = [self._out(o, kind, version) for (g, p, n, _), o in sorted(self.objects.items())
                     if (g, p) == (kind.group, kind.plural) and (not ns or n == ns) and sel(o)]
            return 200, {"apiVersion": "v1" if not kind.group else f"{kind.group}/{version}",
                         "kind": f"{kind.kind}List", "items": items,
                         "metadata": {"resourceVersion": self._current_rv()}}
        if method == "POST" and name is None:
            if request.params.get("dryRun") == "All":  # validated as a create is, never stored (`kubectl --dry-run=server`)
                return 201, self._out(self._create(request, kind, ns, dry_run=True), kind, version)
            return 201, self._out(self._create(request, kind, ns), kind, version)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        current = self.objects.get(key)
        if current is None:
            raise ApiError(404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found')
        if method == "GET":
            return 200, self._out(current, kind, version)
        if method == "DELETE":
            # DeleteOptions.preconditions, as the API server checks them: a uid or resourceVersion that is not the
            # object's refuses the delete (409)
            body = self._body(request)
            pre = (body.get("preconditions") if isinstance(body, dict) else None) or {}
            for field in ("uid", "resourceVersion"):
                if pre.get(field) is not None and str(pre[field]) != str(current["metadata"].get(field)):
                    raise ApiError(409, "Conflict", f"Precondition failed: {field} in precondition: {pre[field]}, "
                                   f"{field} in object meta: {current['metadata'].get(field)}")
            if current["metadata"].get("finalizers"):  # as the API server: marked, kept until they are removed
                return 200, self._out(self._mark_deleted(key, current), kind, version)
            self._delete(key, current)
            return 200, {**status_body(200, "", ""), "status": "Success"}
        body = self._body(request)
        if method == "PUT":
            new = body
        elif method == "PATCH":
            new = self._patch(current, body, request.headers.get("Content-Type", ""))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object")
        sent_rv = (new.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": '
                           "the object has been modified; please apply your changes to the latest "
                           "version and try again")
        expected = f"{kind.group}/{version}" if kind.group else "v1"
        if new.get("apiVersion", expected) != expected:
            raise ApiError(400, "BadRequest", f"the API version in the data ({new.get('apiVersion')}) "
                           f"does not match the expected API version ({expected})")
        if (new.get("metadata") or {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "metadata.name does not match the URL")
        new.setdefault("apiVersion", current["apiVersion"])
        new.setdefault("kind", kind.kind)
        meta, was = new.setdefault("metadata", {}), current["metadata"]
        if was.get("deletionTimestamp"):  # immutable once set; no finalizer may be added from then on
            meta["deletionTimestamp"] = was["deletionTimestamp"]
            added = set(meta.get("finalizers") or []) - set(was.get("finalizers") or [])
            if added and request.subresource != "status":
                raise ApiError(422, "Invalid", "metadata.finalizers: Forbidden: no new finalizers can be added "
                               f"if the object is being deleted, found new finalizers {sorted(added)}")
        else:
            meta.pop("deletionTimestamp", None)
        if kind.status_subresource:
            # like the real API server: /status writes only status; the main resource never does
            if request.subresource == "status":
                # the rest of `current` shared, not copied: a stored object is never mutated (`_store`), and what
                # `_store` sets is the new top level's and metadata's own
                new = {**current, "status": new.get("status"),
                       "metadata": {**current["metadata"], **{k: v for k, v in (new.get("metadata") or {}).items()
                                                               if k == "resourceVersion"}}}
            else:
                new["status"] = copy.deepcopy(current.get("status"))
                if new["status"] is None:
                    new.pop("status")
        stored = self._store(key, new, current, "MODIFIED")
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            self._delete(key, self.objects[key])  # the last finalizer removed: gone
        return 200, self._out(stored, kind, version)

    def _mark_deleted(self, key: Key, current: Obj) -> Obj:
        """A DELETE of an object with finalizers: marked (deletionTimestamp, a MODIFIED event) once, kept."""
        if current["metadata"].get("deletionTimestamp"):
            return current
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        return self._store(key, marked, current, "MODIFIED")

    def _delete(self, key: Key, current: Obj) -> None:
        del self.objects[key]
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(next(self._rv))
        self._append_log("DELETED", key, gone)

    def _check_quota(self, kind: Resource, ns: str, name: str) -> None:
        """The quota admission plugin's object count on a create: a ResourceQuota of `ns` whose `spec.hard`
        limits `count/<plural>.<group>` to no more than the objects already there refuses it with 403, its
        message as kube-apiserver words it (`exceeded quota: ...`)."""
        if ("", "resourcequotas") not in self.kinds:  # no quota can be stored: a create costs nothing more
            return
        resource = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
        counted = f"count/{resource}"
        for (g, p, n, qname), quota in sorted(self.objects.items()):
            if (g, p, n) != ("", "resourcequotas", ns):
                continue
            hard = (quota.get("spec") or {}).get("hard") or {}
            if counted not in hard:
                continue
            limit = int(str(hard[counted]))
            used = sum(1 for (g2, p2, n2, _) in self.objects if (g2, p2, n2) == (kind.group, kind.plural, ns))
            if used + 1 > limit:
                raise ApiError(403, "Forbidden", f'{resource} "{name}" is forbidden: exceeded quota: {qname}, '
                                                 f"requested: {counted}=1, used: {counted}={used}, "
                                                 f"limited: {counted}={limit}")

    def _create(self, request: kmock.Request, kind: Resource, ns: str, *, dry_run: bool = False) -> Obj:
        obj = self._body(request)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            # the API server's SimpleNameGenerator: the base cut at 58 characters, then 5 random ones (a name
            # of at most 63), so a 253-character CanaryRollout's Event is named, as on a cluster (decision 742)
            meta["name"] = str(meta["generateName"])[:58] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if (kind.group, kind.plural) == ("", "events") and not _DNS_SUBDOMAIN.fullmatch(str(meta["name"])):
            raise ApiError(422, "Invalid", f'{kind.plural} "{meta["name"]}" is invalid: metadata.name: Invalid value: '
                                           f'"{meta["name"]}": a lowercase RFC 1123 subdomain must consist of lower '
                                           f"case alphanumeric characters, '-' or '.', and must start and end with "
                                           f"an alphanumeric character")
        if meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "metadata.namespace does not match the URL")
        if meta.get("resourceVersion"):
            raise ApiError(422, "Invalid", "metadata.resourceVersion must be empty on create")
        key = (kind.group, kind.plural, ns, meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists')
        obj.setdefault("kind", kind.kind)
        obj.setdefault("apiVersion", f"{kind.group}/{request.resource.version}" if kind.group else "v1")
        self._check_quota(kind, ns, meta["name"])
        if dry_run:  # what the create would store, with nothing stored, logged or versioned
            return obj
        return self._store(key, obj, None, "ADDED")

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc

    @staticmethod
    def _patch(current: Obj, patch: Any, content_type: str) -> Any:
        ctype = content_type.split(";")[0].strip()
        if ctype == "application/json-patch+json":
            if not isinstance(patch, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                return json_patch(current, patch)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise ApiError(422, "Invalid", f"the JSON patch cannot be applied: {exc}") from exc
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            return merge_patch(current, patch)
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")

    def _out(self, obj: Obj, kind: Resource, version: str) -> Obj:
        """What is sent (serialised at once, never kept): a shallow copy with the asked-for version."""
        return {**obj, "apiVersion": f"{kind.group}/{version}" if kind.group else "v1"}

    def _trimmed(self) -> bool:
        """Whether events were dropped from the start of the log (else an old cursor is only a quiet one)."""
        return self.log[0][0] > self._first_rv

    def _current_rv(self) -> str:
        return str(self.log[-1][0]) if self.log else "0"

    async def _watch(self, request: kmock.Request, kind: Resource) -> aiohttp.web.StreamResponse:
        """Stream events by polling the event log: simple, thread-safe, ~50 ms latency."""
        ns, name, version = request.namespace or "", request.name, request.resource.version
        since = request.params.get("resourceVersion", "")
        deadline = time.monotonic() + float(request.params.get("timeoutSeconds", 300))
        sel = _selector(request.params)

        def match(key: Key, obj: Obj) -> bool:
            return key[:2] == (kind.group, kind.plural) and (not ns or key[2] == ns) and \
                (name is None or key[3] == name) and sel(obj)

        with self.lock:
            if since in ("", "0"):
                backlog = [{"type": "ADDED", "object": self._out(o, kind, version)}
                           for k, o in sorted(self.objects.items()) if match(k, o)]
                cursor = int(self._current_rv())
            else:
                cursor = int(since)
                backlog = []
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request._raw_request)
        for event in backlog:
            await resp.write(json.dumps(event).encode() + b"\n")
        while not self.closing and time.monotonic() < deadline:
            with self.lock:
                if self.log and self.log[0][0] > cursor + 1 and self._trimmed():
                    expired = status_body(410, "Expired", f"too old resource version: {cursor}")
                    fresh, gone = [], json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n"
                else:
                    start = bisect.bisect_right(self.log, cursor, key=lambda e: e[0])
                    fresh = [(rv, t, self._out(o, kind, version)) for rv, t, k, o in self.log[start:] if match(k, o)]
                    cursor, gone = (self.log[-1][0] if self.log else cursor), b""
            if gone:  # the events after `cursor` are no longer kept: the client must re-list
                await resp.write(gone)
                break
            if fresh:
                await resp.write(b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for _, t, o in fresh))
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp


class _ResourcePath(NamedTuple):
    """The resource a request's path names, with the fields `kmock.resource` gives the handler."""

    group: str
    version: str
    plural: str


class _ResourceRequest:
    """A request for a registered resource (`/api/v1/...`, `/apis/<group>/<version>/...`), with the attributes of
    `kmock.Request` that `StrictKubeAPI._handle` and the tests wrapping it read, each taken from aiohttp's request
    as kmock takes it: `params` and `headers` as dicts, `body` the bytes, `method` kmock's enum, `url` yarl's."""

    __slots__ = ("_raw_request", "method", "params", "headers", "body", "resource", "namespace", "name",
                 "subresource")

    def __init__(self, raw: aiohttp.web.BaseRequest, resource: _ResourcePath, namespace: str | None,
                 name: str | None, subresource: str | None) -> None:
        self._raw_request = raw
        self.method = kmock.method(raw.method)
        self.params = dict(raw.query)
        self.headers = dict(raw.headers)
        self.body = b""  # the whole body, read by `StrictKubeAPI.__call__`
        self.resource, self.namespace, self.name, self.subresource = resource, namespace, name, subresource

    @property
    def url(self) -> Any:
        return self._raw_request.url

    @classmethod
    def of(cls, raw: aiohttp.web.BaseRequest, kinds: dict[tuple[str, str], Resource]) -> "_ResourceRequest | None":
        """The request when its path names a resource `kinds` holds (as kmock's `parse_path` reads a path), else
        None: kmock parses it (discovery, /version, a resource never registered: its 404)."""
        parts = raw.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            return None
        namespace = None
        if rest and rest[0] == "namespaces":
            if len(rest) < 3:  # a namespace itself, or the namespaces: not a resource served here
                return None
            namespace, rest = rest[1], rest[2:]
        if not rest or (group, rest[0]) not in kinds or "" in rest:
            return None
        name = rest[1] if len(rest) > 1 else None
        return cls(raw, _ResourcePath(group, version, rest[0]), namespace, name, "/".join(rest[2:]) or None)


_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIGMAP_LIMIT = 1_048_576  # bytes of data + binaryData (the API server's MaxSecretSize, which ConfigMaps share)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def three_way(live: Any, last: Any, desired: Any) -> Any:
    """`kubectl apply`'s merge for a custom resource (JSON merge semantics): `desired`'s fields set (objects
    merged key by key, anything else replaced whole), `last`'s fields that `desired` dropped removed, the
    rest of `live` kept."""
    if not (isinstance(live, dict) and isinstance(desired, dict)):
        return copy.deepcopy(desired)
    last = last if isinstance(last, dict) else {}
    out = {k: copy.deepcopy(v) for k, v in live.items() if not (k in last and k not in desired)}
    for k, v in desired.items():
        out[k] = three_way(live[k], last.get(k), v) if k in live else copy.deepcopy(v)
    return out


def _check_configmap(name: str, obj: Obj) -> None:
    """The API server's ConfigMap validation of keys and total size: 422 Invalid otherwise."""
    total = 0
    for field in ("data", "binaryData"):
        values = obj.get(field) or {}
        if not isinstance(values, dict):
            raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: {field}: must be a map')
        for k, v in values.items():
            if not _CONFIGMAP_KEY.match(k) or k in (".", "..") or len(k) > 253:
                raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: {field}[{k}]: Invalid value: '
                               "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                               "(at most 253)")
            if field == "binaryData":  # sent base64-encoded, counted decoded
                try:
                    total += len(base64.b64decode(str(v), validate=True))
                except ValueError:
                    raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: binaryData[{k}]: not base64') from None
            else:
                total += len(str(v).encode())
    if total > CONFIGMAP_LIMIT:
        raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: []: Too long: must have at most '
                       f"{CONFIGMAP_LIMIT} bytes")


def _selector(params: Any) -> Callable[[Obj], bool]:
    """fieldSelector on metadata.name/namespace and equality labelSelectors; anything else is 400."""
    wanted: list[tuple[str, str, str]] = []
    for param, prefix in (("fieldSelector", ""), ("labelSelector", "metadata.labels.")):
        for term in filter(None, params.get(param, "").split(",")):
            field, op, value = term.partition("==") if "==" in term else term.partition("=")
            if not op or "!" in field or (param == "fieldSelector" and field not in
                                          ("metadata.name", "metadata.namespace")):
                raise ApiError(400, "BadRequest", f"unsupported {param} {term!r} (emulator limitation)")
            wanted.append((param, prefix + field.strip(), value.strip()))

    def sel(obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        for _, field, value in wanted:
            labels = "metadata.labels."  # a label key may hold dots itself ("modelcanary.dev/baseline")
            actual = meta.get("labels", {}).get(field[len(labels):]) if field.startswith(labels) \
                else meta.get(field.partition(".")[2])
            if actual != value:
                return False
        return True

    return sel


_REASONS = {400: "BadRequest", 409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
            429: "TooManyRequests", 403: "Forbidden", 404: "NotFound", 401: "Unauthorized", 422: "Invalid"}


class KubeAPIServer:
    """Runs :class:`StrictKubeAPI` as a real HTTP server on 127.0.0.1, in a thread.

    ``with KubeAPIServer(seed=[vs, dr]) as api: client = api.api_client()``.
    Tests reach the store through ``api.handler`` and the helpers below.
    """

    def __init__(self, *, seed: Iterable[Obj] = (), host: str = "127.0.0.1", port: int = 0,
                 ssl_context: Any = None) -> None:
        self.handler = StrictKubeAPI()
        self._host, self._port = host, port
        self._ssl = ssl_context  # an ssl.SSLContext: served over HTTPS (a pod's in-cluster configuration needs it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: aiohttp.test_utils.RawTestServer | None = None
        self._thread: threading.Thread | None = None
        for obj in seed:
            self.handler.put_object(obj)

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not started"
        return f"{'https' if self._ssl else 'http'}://{self._host}:{self._server.port}"

    def start(self) -> "KubeAPIServer":
        started = threading.Event()
        errors: list[BaseException] = []

        async def boot() -> None:
            await self.handler.__aenter__()
            self._server = aiohttp.test_utils.RawTestServer(self.handler, host=self._host,
                                                            port=self._port or None)
            await self._server.start_server(ssl=self._ssl)

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:  # surfaced to the starting thread
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="kubeapi", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.handler.closing = True

        async def shutdown() -> None:
            if self._server is not None:
                await self._server.close()
            await self.handler.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> "KubeAPIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_client(self) -> Any:
        """An official `kubernetes` ApiClient pointed at this server (short timeouts, no retries)."""
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.url
        config.retries = False  # the code under test owns its retries
        return kubernetes.client.ApiClient(config)

    # --- test helpers ---------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, methods: Iterable[str] = ("PUT", "PATCH", "POST"),
                  plural: str | None = None, retry_after: int | None = None, message: str | None = None) -> None:
        """The next `times` matching requests get `status` (e.g. 409, 500) and change nothing; with `retry_after`,
        a `Retry-After` header of that many seconds too (429 from API Priority and Fairness); `message`: the
        Status's words (an admission webhook's denial, as the API server words it)."""
        with self.handler.lock:
            self.handler.faults.append(Fault(status, times, frozenset(m.upper() for m in methods), plural,
                                             retry_after=retry_after, message=message))

    def delay_next(self, seconds: float, *, times: int = 1, methods: Iterable[str] = ("GET",),
                   plural: str | None = None) -> None:
        """The next `times` matching requests are answered only after `seconds` (client timeouts)."""
        with self.handler.lock:
            self.handler.faults.append(Fault(0, times, frozenset(m.upper() for m in methods), plural, seconds))

    def hold_next(self, *, methods: Iterable[str] = ("PUT",), plural: str | None = None) -> threading.Event:
        """The next matching request is received but served only once the returned Event is set."""
        release = threading.Event()
        with self.handler.lock:
            self.handler.faults.append(Fault(0, 1, frozenset(m.upper() for m in methods), plural, hold=release))
        return release

    def before_next_write(self, hook: Callable[[], None]) -> None:
        """Run `hook` (e.g. a foreign edit) just before the next write is served: a race, on demand."""
        with self.handler.lock:
            self.handler.before_write.append(hook)

    def edit(self, group: str, plural: str, namespace: str, name: str, edit: Callable[[Obj], None]) -> Obj:
        return self.handler.edit_object(group, plural, namespace, name, edit)

    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        return self.handler.get_object(group, plural, namespace, name)

    def delete(self, group: str, plural: str, namespace: str, name: str) -> None:
        """A foreign delete (a person's `kubectl delete`, a GitOps prune), as a DELETE lands: a watch sees it
        (DELETED, a new resourceVersion); an object with finalizers is marked (deletionTimestamp) and kept until
        a write removes the last one. Tests change the store through this, `edit` and `put_object`, never by
        hand: a stored object changed in place (or popped) is a change no watch, resourceVersion or generation
        shows, which no API server makes."""
        with self.handler.lock:
            key = (group, plural, namespace, name)
            current = self.handler.objects[key]
            if current["metadata"].get("finalizers"):
                self.handler._mark_deleted(key, current)
            else:
                self.handler._delete(key, current)

    def gitops_apply(self, group: str, plural: str, manifest: Obj, *, replace: bool = False) -> bool:
        """A GitOps tool re-applying `manifest` (its copy in git) over the live object, as Argo CD's sync
        (selfHeal) or Flux's kustomize-controller does; True when it wrote (no write when nothing differs).

        Default: `kubectl apply` (Argo CD's default sync), a three-way merge of the manifest, the live object
        and the manifest applied last time (`kubectl.kubernetes.io/last-applied-configuration`): every field
        the manifest sets is set; a field the last-applied manifest set and this one lacks is removed; a field
        neither set (an annotation another writer added: canary's record) is kept. For a custom resource
        (a VirtualService) lists merge as JSON merge patch does: `spec.http` is replaced whole, weights
        included. A server-side apply (Argo CD `ServerSideApply=true`, Flux, with force) ends the same for
        these fields: the applier takes the weights it sets and leaves the annotations it never applied,
        which another field manager owns. `replace=True`: `kubectl replace` (Argo CD `Replace=true`): the
        object becomes the manifest, every annotation not in it gone (canary's record included)."""
        meta = manifest["metadata"]
        with self.handler.lock:
            key = (group, plural, meta.get("namespace", ""), meta["name"])
            live = self.handler.objects[key]
            desired = copy.deepcopy(manifest)
            applied = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
            desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied
            if replace:
                new = desired
            else:
                last = json.loads((live["metadata"].get("annotations") or {}).get(LAST_APPLIED) or "{}")
                last.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = ""
                new = three_way(live, last, desired)
            new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            if new == live:
                return False
            self.handler._store(key, new, live, "MODIFIED")
            return True

    def list(self, group: str, plural: str, namespace: str = "") -> list[Obj]:
        with self.handler.lock:
            return [copy.deepcopy(o) for (g, p, n, _), o in sorted(self.handler.objects.items())
                    if (g, p) == (group, plural) and (not namespace or n == namespace)]

    @property
    def writes(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every write the server answered, faults included."""
        with self.handler.lock:
            return list(self.handler.writes)


def main(argv: list[str] | None = None) -> None:
    """``python -m canary.sandbox.kubeapi --port 6443 istio/*.yaml``: serve until interrupted."""
    import argparse

    from canary.errors import PolicyError
    from canary.policy_yaml import MAX_SAMPLE_BYTES, load_documents

    parser = argparse.ArgumentParser(description="strict in-memory Kubernetes API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("seed", nargs="*", help="YAML files with objects to load")
    args = parser.parse_args(argv)
    try:  # bounded, strictly: a key written twice refused naming the file and line (decision 834)
        seed = [d for f in args.seed for d in load_documents(f, max_bytes=MAX_SAMPLE_BYTES)]
    except PolicyError as exc:
        parser.error(f"seed {exc}")
    if any(not isinstance(d, dict) for d in seed):
        parser.error("seed: every document must be a Kubernetes object (a YAML mapping)")
    with KubeAPIServer(seed=seed, port=args.port) as api:
        print(json.dumps({"url": api.url}), flush=True)
        try:
            forever = threading.Event()
            while not forever.wait(0.25):  # bounded: a signal another thread received still gets handled
                pass
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

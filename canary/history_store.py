"""Where a rollout's history (`canary.history`) lives in a cluster, and who writes it.

One ConfigMap per VirtualService and model (`configmap_name`), labelled `modelcanary.dev/history:
"true"` and `modelcanary.dev/model`: `<virtual-service>-canary-history` for the model named as its
VirtualService (the usual shape, and every history written before docs/decisions.md 127), and
`<virtual-service>-<model>-<hash>-canary-history` for another model of a VirtualService that routes
several (decision 114). A model's rollouts on a VirtualService run one at a time, and its ConfigMap
holds the latest one's history (a new rollout of that model replaces it); another model's rollouts
on the same VirtualService never touch it. Not the CR status and not the VirtualService annotation:
those are read on every LIST/watch event (the controller's prefetch, istiod), the history only by
`canary report` (docs/decisions.md 35, 45).

Its data: `history.json`, the whole history as of its last rewrite, and zero or more parts
`part-<ms>-<n>.json`, each a history document (same format) holding only the records written
since. A reader merges them (`read`): the latest rollout's records (by start), in write order.

`Recorder` is what `canary promote` (the runner) and the controller feed after every executed
step. It keeps only what it has not written yet. Its first flush (and every flush after a
failure, and the last one, when the rollout ends) *rewrites*: it reads the ConfigMap, merges,
bounds and writes it back with the resourceVersion it read (a conflict is re-read and merged,
so two writers never lose each other's looks), which folds every part into `history.json`.
Every other flush *appends*: one merge PATCH that adds a part, guarded on the resourceVersion
the recorder's own previous write returned, no read, so a flush costs one Kubernetes call; a
409 (anyone else wrote since: another leader, another rollout of the model, a person)
makes it rewrite. So a part is only ever added to the ConfigMap exactly as its recorder left
it. The parts since the last rewrite are kept under `1 MiB - size(history.json)` (the API
server's ConfigMap limit): past that, the flush rewrites. The runner flushes after
every look (one process, one rollout: one more write per `look_every`); the controller every
`flush_every` looks and at every step or phase change (under the default policy both fall on
the look that ends a step). Writing the history never fails a rollout: an error is logged
(`history.write_failed`) and the records are kept for the next flush.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Iterable

from canary.packing import pack_json, unpack_json
from canary import history as hist
from canary import rollout as rl
from canary.errors import CanaryError, ConfigError, NotLeader, TransientError
from canary.logs import get as get_logger

LABEL = "modelcanary.dev/history"
KEY = "history.json"
PART = re.compile(r"^part-[0-9]+-[0-9]+\.json$")
CONFIGMAP_LIMIT = 1_048_576  # bytes of data the API server accepts in one ConfigMap
_MARGIN = 16_384  # for the ConfigMap's keys and anything else beside the data


class _Conflict(Exception):
    """The ConfigMap changed since it was read (409): read, merge and write again."""


class _Gone(Exception):
    """The ConfigMap a part was to be added to does not exist (404): rewrite."""


class _TooBig(Exception):
    """The API server refused the part (422/413: the ConfigMap would pass its size limit): rewrite."""


class _Landed(Exception):
    """A write answered so that it may have landed (5xx, a timeout, a 200 with no object) was read back and is
    there (decision 419): written, its answer lost. `resource_version` is the version read, `why` the answer."""

    def __init__(self, resource_version: str, why: str) -> None:
        super().__init__(why)
        self.resource_version, self.why = resource_version, why


class _Denied(Exception):
    """The identity may not PATCH ConfigMaps (403; an older Role with create/update only): rewrite,
    from now on."""


def configmap_name(virtual_service: str, model: str = "") -> str:
    """The history ConfigMap's name for `model`'s rollouts on a VirtualService (a DNS subdomain of at
    most 253 characters; docs/decisions.md 127). No model, or the model named as the VirtualService:
    `<virtual-service>-canary-history`, as before. Another model: `<virtual-service>-<model>-<hash>-
    canary-history`, the model's name in lower case with every run of other characters a '-' (Triton
    allows '_', '.' and capitals), and 10 hex digits of sha256("<virtual-service>/<model>"): the
    readable part alone would give VirtualService "a-b" with model "c" and "a" with "b-c" one name
    (and "Rec_1" and "rec-1"), the hash of the pair tells them apart ('/' is in no VirtualService's
    name). A name past 253 characters is cut before the hash."""
    if not model or model == virtual_service:
        name = f"{virtual_service}-canary-history"
        if len(name) <= 253:
            return name
        digest = hashlib.sha256(virtual_service.encode()).hexdigest()[:10]
        return f"{virtual_service[:253 - 26]}-{digest}-canary-history"
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    suffix = f"-{hashlib.sha256(f'{virtual_service}/{model}'.encode()).hexdigest()[:10]}-canary-history"
    stem = f"{virtual_service}-{slug}" if slug else virtual_service
    return stem[:253 - len(suffix)].rstrip("-.") + suffix


class ConfigMapStore:
    """Reads and writes history ConfigMaps through a `kubernetes.client.CoreV1Api`.

    `may_write` (the controller's leadership and fencing) is asked before every write; False
    raises NotLeader and nothing is written."""

    def __init__(self, core: Any, *, may_write: Callable[[], bool] | None = None, timeout_s: float = 5.0) -> None:
        self.core, self.may_write, self.timeout_s = core, may_write, timeout_s

    def load(self, namespace: str, virtual_service: str, *, model: str = "") -> tuple[dict[str, Any] | None, str | None]:
        """(history with its parts merged, `read`; resourceVersion) of `model`'s ConfigMap
        (`configmap_name`); (None, None) when there is no ConfigMap. Raises ConfigError when it
        exists but its history.json is unreadable (its resourceVersion in `.resource_version`), and
        the translated API error otherwise."""
        from canary.kube import translate

        name = configmap_name(virtual_service, model)
        try:
            cm = self._read(namespace, name)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None, None
            raise translate(exc, f"ConfigMap {namespace}/{name}") from exc
        rv = str(cm["metadata"].get("resourceVersion") or "") or None
        try:
            return read(cm.get("data") or {}, where=f"ConfigMap {namespace}/{name}"), rv
        except ConfigError as exc:
            exc.resource_version = rv  # type: ignore[attr-defined]
            raise

    def _read(self, namespace: str, name: str) -> dict[str, Any]:
        """The ConfigMap as the API server sent it (parsed, without building the client's model of up to 1 MiB);
        `kube.BadAnswer` for a 200 whose body is not the object (empty, cut, a proxy's page, `{}`, `null`)."""
        from canary.kube import raw_object

        return raw_object(self.core.read_namespaced_config_map(name, namespace, _preload_content=False,
                                                               _request_timeout=self.timeout_s),
                          f"the read of ConfigMap {namespace}/{name}")

    def save(self, namespace: str, virtual_service: str, doc: dict[str, Any], resource_version: str | None, *,
             model: str = "") -> str:
        """`model`'s ConfigMap: create (no resourceVersion) or replace (guarded on it): history.json
        alone. Returns the resourceVersion written. Raises _Conflict on 409."""
        from canary.kube import translate
        from canary.drift.store import label_value

        if self.may_write is not None and not self.may_write():
            raise NotLeader("not the leader: history write refused")
        name = configmap_name(virtual_service, model)
        meta: dict[str, Any] = {"name": name, "namespace": namespace,
                                "labels": {LABEL: "true", "modelcanary.dev/model": label_value(doc["rollout"]["model"])}}
        if resource_version:
            meta["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {KEY: hist.dumps(doc)}}
        try:
            if resource_version:
                resp = self.core.replace_namespaced_config_map(name, namespace, body, _preload_content=False,
                                                               _request_timeout=self.timeout_s)
            else:
                resp = self.core.create_namespaced_config_map(namespace, body, _preload_content=False,
                                                              _request_timeout=self.timeout_s)
            return _written_version(resp, f"the write of ConfigMap {namespace}/{name}")
        except Exception as exc:
            if getattr(exc, "status", None) == 409:
                raise _Conflict() from None
            self._found_landed(exc, namespace, name, KEY, body["data"][KEY])
            raise translate(exc, f"ConfigMap {namespace}/{name}") from exc

    def append(self, namespace: str, virtual_service: str, key: str, part: dict[str, Any], resource_version: str, *,
               model: str = "") -> str:
        """To `model`'s ConfigMap, add the data key `key` (a part) with one merge PATCH guarded on `resource_version` (the
        version the caller's own last write returned), no read. Returns the resourceVersion written.
        Raises _Conflict on 409 (someone else wrote since), _Gone on 404, _TooBig on 422/413 (over
        the size limit), _Denied on 403."""
        from canary.kube import translate

        if self.may_write is not None and not self.may_write():
            raise NotLeader("not the leader: history write refused")
        name = configmap_name(virtual_service, model)
        body = {"metadata": {"resourceVersion": resource_version}, "data": {key: hist.dumps(part)}}
        try:
            resp = self.core.patch_namespaced_config_map(name, namespace, body, _preload_content=False,
                                                         _content_type="application/merge-patch+json",
                                                         _request_timeout=self.timeout_s)
            return _written_version(resp, f"the PATCH of ConfigMap {namespace}/{name}")
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in _APPEND_ERRORS:
                raise _APPEND_ERRORS[status]() from None
            self._found_landed(exc, namespace, name, key, body["data"][key])
            raise translate(exc, f"ConfigMap {namespace}/{name}") from exc

    def _found_landed(self, exc: BaseException, namespace: str, name: str, key: str, text: str) -> None:
        """After a write failed so that it may have landed (a 5xx such as etcd's `request timed out`, a timeout,
        a 200 whose body is not the object: `kube.is_transient`), the ConfigMap is read back: when its `key`
        holds exactly `text`, the write landed and `_Landed` is raised with the resourceVersion read and why
        (decision 419). Otherwise, or when the read fails too, nothing: the write failed, as the caller says."""
        from canary.kube import is_transient

        if not is_transient(exc):
            return
        try:
            cm = self._read(namespace, name)
        except Exception:  # noqa: BLE001 - not known to have landed: the write failed
            return
        if (cm.get("data") or {}).get(key) == text and cm["metadata"].get("resourceVersion"):
            raise _Landed(str(cm["metadata"]["resourceVersion"]), _why(exc)) from None


_APPEND_ERRORS: dict[int, type[Exception]] = {409: _Conflict, 404: _Gone, 422: _TooBig, 413: _TooBig, 403: _Denied}


def _written_version(resp: Any, what: str) -> str:
    """The resourceVersion of the object a write answered with (read without building the client's
    model of a ConfigMap of up to 1 MiB). A body that is not the object (empty, cut, a proxy's page,
    `{}`, `null`) raises `kube.BadAnswer` (transient: the write may have landed; decision 419)."""
    from canary.kube import BadAnswer, raw_object

    rv = raw_object(resp, what)["metadata"].get("resourceVersion")
    if not rv:
        raise BadAnswer(f"{what} was answered with an object without metadata.resourceVersion")
    return str(rv)


def _why(exc: BaseException) -> str:
    """One line of why a write's answer was lost."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        from canary.kube import _status_message

        return f"HTTP {status} ({_status_message(exc)})"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def read(data: dict[str, str], *, where: str) -> dict[str, Any]:
    """A history ConfigMap's data as one history, bounded: the latest rollout's (by `started_at`;
    history.json's on a tie), from history.json when it is that rollout's, with that rollout's
    parts merged in write order (looks, events, gates and weights; phase, reason and updated_at from
    the newest, the later part on a tie). Raises ConfigError naming the ConfigMap and key when
    history.json is missing or unreadable. An unreadable part is left out with a warning
    (`history.part_unreadable`, naming the key): the rest still makes a report, and the next
    rewrite drops it."""
    text = data.get(KEY)
    if text is None:
        raise ConfigError(f"{where}: no {KEY} key")
    doc = hist.parse(text, where=f"{where} {KEY}")
    parts = []
    for key in sorted((k for k in data if PART.match(k)), key=lambda k: tuple(int(x) for x in k[5:-5].split("-"))):
        try:
            parts.append(hist.parse(data[key], where=f"{where} {key}"))
        except ConfigError as exc:
            get_logger(component="history").warning("history.part_unreadable", configmap=where, key=key,
                                                    error=str(exc)[:300])
    latest = max([doc, *parts], key=lambda d: hist.at_time(d["rollout"].get("started_at")))["rollout"]
    parts = [p for p in parts if hist.same_rollout(p, latest)]
    if not hist.same_rollout(doc, latest):  # a later rollout's parts over an earlier one's history.json
        doc, parts = parts[0], parts[1:]
    if not parts:
        return doc
    newest = doc
    for p in parts:
        if hist.at_time(p.get("updated_at")) >= hist.at_time(newest.get("updated_at")):
            newest = p
    doc = {**doc, **{k: newest[k] for k in ("phase", "reason", "updated_at") if k in newest}}
    return hist.merge(doc, looks=[lk for p in parts for lk in p["looks"]], events=[e for p in parts for e in p["events"]],
                      gates=[g for p in parts for g in p["gates"]], weights=[w for p in parts for w in p["weights"]])


def load_history(core: Any, namespace: str, virtual_service: str, model: str = "") -> dict[str, Any]:
    """The recorded history of `model`'s latest rollout on the VirtualService (no model: the one
    named as the VirtualService), from its ConfigMap (`configmap_name`). Another model's history
    written before each model had its own (docs/decisions.md 127) is in `<virtual-service>-canary-
    history`: read from there when that model's ConfigMap does not exist and the history there is
    recorded as that model's, saying so (`report.legacy_history`). Raises ConfigError when there is
    none, when the ConfigMap holds another model's, or when it is unreadable (naming the ConfigMap)."""
    return _load(core, namespace, virtual_service, model)[0]


def _load(core: Any, namespace: str, virtual_service: str, model: str) -> tuple[dict[str, Any], str]:
    """`load_history`, and the name of the ConfigMap it read."""
    ns, vs, model = namespace, virtual_service, model or virtual_service
    store, name, legacy = ConfigMapStore(core), configmap_name(vs, model), configmap_name(vs)
    doc, _ = store.load(ns, vs, model=model)
    if doc is not None:
        recorded = str(doc["rollout"].get("model") or "")
        if recorded and recorded != model:  # in <vs>-canary-history, written before decision 127
            raise ConfigError(f"ConfigMap {ns}/{name} holds the history of model {recorded!r}, not of {model!r} (it "
                              f"was written before each model of a VirtualService had its own: `canary report "
                              f"{recorded} --virtual-service {vs}` shows it); no rollout history for {ns}/{vs}")
        return doc, name
    old = _legacy_doc(store, ns, vs, model)
    recorded = str(old["rollout"].get("model") or "") if old is not None else ""
    if old is not None and recorded == model:
        get_logger(component="history").info("report.legacy_history", configmap=f"{ns}/{legacy}", model=model,
                                             detail=f"{ns}/{name} not found: {model}'s history written before each "
                                                    "model had its own ConfigMap")
        return old, legacy
    why = f"; ConfigMap {ns}/{legacy} holds model {recorded!r}'s" if old is not None else ""
    raise ConfigError(f"no rollout history for {ns}/{vs}" + (f" of model {model!r}" if model != vs else "") +
                      f": ConfigMap {ns}/{name} not found (no rollout recorded one yet){why}" +
                      ("; a model not named as its VirtualService: give MODEL --virtual-service VS" if model == vs else ""))


def _started(doc: dict[str, Any]) -> float:
    """When the rollout a history document records started (`rollout.started_at`, unix seconds; 0 when unsaid)."""
    return hist.at_time((doc.get("rollout") or {}).get("started_at"))


def _legacy_doc(store: ConfigMapStore, namespace: str, virtual_service: str, model: str) -> dict[str, Any] | None:
    """What `<virtual-service>-canary-history` holds, when `model` is not the one named as the VirtualService
    (its own ConfigMap is another): a history written there before each model had its own (decision 127),
    of whichever model. None when that is `model`'s own ConfigMap, absent, or unreadable."""
    if configmap_name(virtual_service, model) == configmap_name(virtual_service):
        return None
    try:
        return store.load(namespace, virtual_service)[0]
    except ConfigError:  # unreadable: nobody's history to go on from
        return None


def rollback_in_history(store: ConfigMapStore | None, status: Any, *, namespace: str, virtual_service: str,
                        model: str, canary_version: str, route: str) -> rl.RolloutState | None:
    """`model`'s rollback of `canary_version` as its own history ConfigMap records it, when a request for it (on
    `route` as asked, "" = the only one) re-runs it: the route's record is one per VirtualService, and another
    model's claim on a shared one (or a record stripped by a GitOps sync) hid it, while each model keeps its latest
    rollout's history (decision 127). The rollback (a RolloutState rebuilt from the history: versions, route,
    reason, times, weights 100/0; step -1 when every weight it wrote was 0, else 0) when that latest rollout
    ended `rolled_back` for this version and `status` (`RouteStatus` of the request's route, read now) shows it
    still in force: `reconcile.rolled_back_here`, and
    the stable subset positively on the version the rollback kept (the history is a second source: what the route
    cannot confirm is not taken). None otherwise, with no store, and when the ConfigMap is absent, unreadable or
    cannot be read (never raises: a refusal rests on what was read, and a run goes on as before without it)."""
    from canary.model import Weights
    from canary.reconcile import rolled_back_here

    if store is None:
        return None
    try:
        doc, _ = store.load(namespace, virtual_service, model=model)
        if doc is None or str(doc.get("phase") or "") != rl.ROLLED_BACK:
            return None
        r = doc["rollout"]
        if str(r.get("model") or "") != model or str(r.get("canary_version") or "") != canary_version:
            return None
        # the step is not kept: -1 (before the first step) only when every weight written is known and 0, so that
        # a re-run says "before any traffic moved" (decision 278) on what was written, never on a gap
        written = [float(p[1]) for p in doc.get("weights") or []]
        found = rl.RolloutState(model=model, stable_version=str(r.get("stable_version") or ""),
                                canary_version=canary_version, phase=rl.ROLLED_BACK, weights=Weights(100, 0),
                                step=-1 if written and not any(written) else 0,
                                route=str(r.get("route") or ""), reason=str(doc.get("reason") or ""),
                                end_cause=hist.end_cause(doc),
                                started_at=hist.at_time(r.get("started_at")),
                                updated_at=hist.at_time(doc.get("updated_at")))
    except Exception:  # noqa: BLE001 - no history read: nothing to go on (documented above)
        return None
    if not found.stable_version or status.stable_subset_version != found.stable_version:
        return None
    return found if rolled_back_here(found, status, model=model, canary_version=canary_version, route=route) else None


def rollback_reported(recorded: rl.RolloutState | None, status: Any, store: ConfigMapStore | None, *, namespace: str,
                      virtual_service: str, model: str, canary_version: str,
                      route: str) -> tuple[rl.RolloutState, dict[str, str]] | None:
    """The earlier rollback of `model`'s `canary_version` that a request for it (on `route` as asked) re-runs, and
    the log fields saying where it was read: the route's record `recorded` (`reconcile.rolled_back_here`; no
    fields), else, when that record is not this model's or there is none, the model's own history ConfigMap
    (`rollback_in_history`; `recorded_in` naming it, decision 253). None when neither shows it. The one test of
    `promote`'s Runner and of `--via-controller`'s check (decisions 238, 253); never raises."""
    from canary.reconcile import rolled_back_here

    if rolled_back_here(recorded, status, model=model, canary_version=canary_version, route=route):
        return recorded, {}  # type: ignore[return-value]  # rolled_back_here: not None
    if recorded is not None and recorded.model == model:
        return None
    earlier = rollback_in_history(store, status, namespace=namespace, virtual_service=virtual_service, model=model,
                                  canary_version=canary_version, route=route)
    if earlier is None:
        return None
    return earlier, {"recorded_in": f"ConfigMap {namespace}/{configmap_name(virtual_service, model)}"}


def from_cluster(client: Any, namespace: str, virtual_service: str, *, model: str = "", canary_version: str = "",
                 rollout: str = "") -> dict[str, Any]:
    """The history of `model`'s latest rollout on the VirtualService (`client`: a kubernetes ApiClient;
    no model: the one named as the VirtualService; `load_history`), completed from its recorded state
    when that is newer. With `canary_version` (that of CanaryRollout `rollout`), ConfigError if the
    history is another rollout's; ConfigError when there is none."""
    import kubernetes.client as kc

    from canary.kube_core import CoreV1
    from canary.reconcile import parse_record
    from canary.routing import patch
    from canary.routing.istio import GROUP, VS_PLURAL

    ns, vs = namespace, virtual_service
    doc, name = _load(CoreV1(client), ns, vs, model)  # its ConfigMap calls, without CoreV1Api's import (1041)
    if canary_version and doc["rollout"]["canary_version"] != canary_version:
        of = vs if (model or vs) == vs else f"{model} on {vs}"
        raise ConfigError(f"ConfigMap {ns}/{name} holds the history of a later rollout of {of} "
                          f"({doc['rollout']['canary_version']}), not of CanaryRollout {ns}/{rollout} ({canary_version})")
    try:  # the recorded state may be newer than the history (the controller writes it every 10 looks)
        vs_obj = kc.CustomObjectsApi(client).get_namespaced_custom_object(GROUP, "v1beta1", ns, VS_PLURAL, vs)
        state = parse_record(patch.read_state(vs_obj))
    except Exception as exc:  # the history alone still makes a report
        from canary import logs

        logs.get().info("report.state_unread", virtual_service=f"{ns}/{vs}", error=f"{type(exc).__name__}: {exc}")
        return doc
    return hist.with_state(doc, json.loads(state.to_json())) if state is not None else doc


class Recorder:
    """Feeds the history of a rollout on one VirtualService (in its model's ConfigMap) from the states and actions a loop executed.

    observe(state, actions)  after every executed (state, actions) pair; actions=() for a state
                             only read (an outside change, the final state)
    gate(...)                a Triton gate's result
    flush()                  write what is pending (also called by observe when it is due)
    """

    def __init__(self, store: ConfigMapStore | None, *, namespace: str, virtual_service: str, policy: Any,
                 source: str, name: str = "", flush_every: int = 1, log: Any = None) -> None:
        assert source in hist.SOURCES
        self.store, self.namespace, self.vs = store, namespace, virtual_service
        self.policy = policy  # summarised at each write (`summary`), not kept per rollout: a controller holds thousands
        self.source, self.name, self.flush_every = source, name, max(1, flush_every)
        self.log = log or get_logger(component="history")
        self._ident: dict[str, Any] | None = None
        # of the last state observed, only what a flush writes and `observe` compares: (phase, reason,
        # updated_at, weights, end_cause); not the state (~14 kB of objects with five checks, one per rollout)
        self._last: tuple[str, str, float, Any, str] | None = None
        # pending look records as compact JSON (a record with per-arm values is ~1.5 kB as dicts, a
        # few hundred bytes as text; a controller holds up to `flush_every` of them for thousands of
        # rollouts), parsed again only when flushed
        # pending look records, packed (`packing.pack_json`): a look of the default policy's five checks is
        # ~1.7 kB of JSON, ~0.65 kB packed, and a controller holds up to `flush_every` of them per rollout.
        # Not `history.dumps`: that refuses NaN, and a record that cannot be saved must fail at the flush
        # (a logged `history.write_failed`), never in the look itself.
        self._looks: list[bytes] = []
        self._events: list[dict[str, Any]] = []
        self._gates: list[dict[str, Any]] = []
        self._weights: list[list[Any]] = []
        # bytes a part may still add to the ConfigMap before a rewrite; None until this recorder has
        # rewritten it with this rollout's history (then it knows the ConfigMap holds this rollout)
        self._room: int | None = None
        self._rv = ""  # the resourceVersion this recorder's last write returned (an append's precondition)
        self._parts = 0
        self._may_append = True  # False once a PATCH was refused (403): every flush rewrites
        self.failed_flushes = 0  # flushes that failed in a row (0 after one that wrote)
        self.last_failure: BaseException | None = None  # why the last one failed (None: it wrote)

    @property
    def model(self) -> str:
        """The model of the rollout recorded: its ConfigMap is that model's (`configmap_name`), so two
        models' rollouts on one VirtualService never write into each other's history."""
        return str((self._ident or {}).get("model") or "")

    @property
    def summary(self) -> dict[str, Any]:
        return hist.policy_summary(self.policy)

    @property
    def pending(self) -> int:
        return len(self._looks) + len(self._events) + len(self._gates)

    @property
    def unwritten(self) -> bool:
        """Whether records (looks, events, gates, weights) wait for a flush: one that failed keeps them."""
        return self.store is not None and self._ident is not None and bool(self.pending or self._weights)

    def observe(self, state: rl.RolloutState, actions: Iterable[Any] = ()) -> None:
        if self.store is None:
            return
        actions = list(actions)
        ident = self._identity(state)
        if self._ident is not None and not hist.same_rollout({"rollout": self._ident}, ident):
            self.flush()  # the previous rollout's last records, then start over
            self._clear()
            self._room = None
        changed_outside = self._last is not None and self._last[0] != state.phase and not actions
        self._ident, before = ident, self._last
        self._last = (state.phase, state.reason, state.updated_at, state.weights, state.end_cause)
        names = {a.event for a in actions if isinstance(a, rl.Emit)}
        moved = bool(names & {"step.advanced", "rollout.promoting"})
        for a in actions:
            if isinstance(a, rl.SetWeights):
                self._weights.append([hist.at_time(state.updated_at), a.weights.canary])
            elif isinstance(a, rl.Emit) and a.event == "look.completed" and state.last_verdict:
                step = state.step - 1 if moved else state.step  # the step the look judged
                weight = self.policy.steps[step] if 0 <= step < len(self.policy.steps) else state.weights.canary
                self._looks.append(pack_json(hist.look_record(state.last_verdict, n=int(a.fields.get("look", state.look - 1)) + 1,
                                                             step=step + 1, canary_weight=weight)))
            elif isinstance(a, rl.Emit) and hist.is_event(a.event):
                self._events.append(hist.event_record(at=state.updated_at, event=a.event, phase=state.phase,
                                                      weights=str(state.weights), reason=str(a.fields.get("reason", ""))))
                if a.event == "gate.failed":
                    self._gates.append(hist.gate_record(at=state.updated_at, stage=str(a.fields.get("stage", "")),
                                                        outcome="failed", detail=str(a.fields.get("reason", ""))))
        if changed_outside:
            self._events.append(hist.event_record(at=state.updated_at, event="rollout.phase_changed",
                                                  phase=state.phase, weights=str(state.weights), reason=state.reason))
            if before is not None and state.weights != before[3]:
                self._weights.append([hist.at_time(state.updated_at), state.weights.canary])
        if len(self._looks) >= self.flush_every or self._events or self._gates or (state.terminal and self._looks):
            self.flush()

    def gate(self, *, at: float, stage: str, outcome: str, detail: str = "") -> None:
        if self.store is None:
            return
        self._gates.append(hist.gate_record(at=at, stage=stage, outcome=outcome, detail=detail))
        self.flush()

    def flush(self) -> None:
        """Write what is pending: a part appended (one PATCH), or the whole history rewritten (a GET
        and a PUT) when this recorder has not rewritten it yet, the parts would outgrow the
        ConfigMap, or the rollout has ended. Never raises."""
        if self.store is None or self._ident is None or self._last is None:
            return
        if not self.pending and not self._weights:
            return
        try:
            for _ in range(3):
                try:
                    if not self._append():
                        self._write()
                    self._clear()
                    self.failed_flushes, self.last_failure = 0, None
                    return
                except _Landed as landed:  # written, its answer lost: never said failed, never written twice
                    self.log.info("history.answer_lost", namespace=self.namespace, virtual_service=self.vs,
                                  rollout=self.name, error=landed.why,
                                  detail="the write landed (read back from the ConfigMap): taken as written")
                    self._clear()
                    self._rv, self._room = landed.resource_version, None  # the next flush rewrites from what is there
                    self.failed_flushes, self.last_failure = 0, None
                    return
                except (_Conflict, _Gone, _TooBig):
                    self._room = None  # someone else wrote, the ConfigMap went, or it is full: rewrite
                    continue
                except _Denied:
                    self.log.info("history.patch_denied", namespace=self.namespace, virtual_service=self.vs,
                                  detail="no RBAC patch on configmaps: every flush reads and rewrites")
                    self._room, self._may_append = None, False
                    continue
            raise CanaryError("the ConfigMap kept changing under the write (3 conflicts)")
        except Exception as exc:  # an observation: it never fails a rollout
            self._room = None  # the next flush reads what the ConfigMap holds and rewrites it
            self.failed_flushes, self.last_failure = self.failed_flushes + 1, exc
            if not isinstance(exc, NotLeader):
                self.log.warning("history.write_failed", namespace=self.namespace, virtual_service=self.vs, rollout=self.name,
                                 error=f"{type(exc).__name__}: {exc}"[:500], pending=self.pending)
            self._looks = self._looks[-hist.MAX_LOOKS:]  # kept for the next flush, bounded
            self._events, self._gates = self._events[-hist.MAX_EVENTS:], self._gates[-hist.MAX_GATES:]
            self._weights = self._weights[-hist.MAX_WEIGHTS:]

    def _append(self) -> bool:
        """Add what is pending as a part, when this recorder may (see `flush`); False when it must rewrite."""
        assert self.store is not None and self._ident is not None and self._last is not None
        if self._room is None or not self._may_append or self._last[0] in rl.TERMINAL:
            return False
        part = self._records(hist.new_doc(rollout=self._ident, policy=self.summary))
        text = hist.size(part) + 64
        if text > self._room:
            return False
        self._parts += 1
        key = f"part-{max(0, int(hist.at_time(self._last[2]) * 1000))}-{self._parts}.json"
        self._rv = self.store.append(self.namespace, self.vs, key, part, self._rv, model=self.model)
        self._room -= text
        return True

    def _write(self) -> None:
        assert self.store is not None and self._ident is not None and self._last is not None
        try:
            doc, rv = self.store.load(self.namespace, self.vs, model=self.model)
        except ConfigError as exc:  # unreadable (edited by hand): replaced by this rollout's history
            doc, rv = None, getattr(exc, "resource_version", None)
        if doc is None and rv is None:
            doc = self._legacy()
        elif doc is not None:
            self._hand_over(doc)
        if doc is None or not hist.same_rollout(doc, self._ident):
            doc = hist.new_doc(rollout=self._ident, policy=self.summary)
        doc = self._records(doc)
        self._rv = self.store.save(self.namespace, self.vs, doc, rv, model=self.model)  # the parts folded in: history.json alone
        self._room = CONFIGMAP_LIMIT - _MARGIN - hist.size(doc)

    def _legacy(self) -> dict[str, Any] | None:
        """This rollout's history as written into `<virtual-service>-canary-history` before each model had
        its own ConfigMap (decision 127), when this model is not the one named as the VirtualService: a
        rollout in progress across the upgrade. Its first ConfigMap of its own starts from those records
        (decision 128): started afresh, the looks before the upgrade were in no history `canary report`
        reads (its own ConfigMap, once it exists, is the one read). None otherwise; the old one is left."""
        assert self.store is not None and self._ident is not None
        old = _legacy_doc(self.store, self.namespace, self.vs, self.model)
        if old is None or str(old["rollout"].get("model") or "") != self.model:
            return None
        if not hist.same_rollout(old, self._ident):
            return None
        return old

    def _hand_over(self, doc: dict[str, Any]) -> None:
        """Before this recorder writes over `doc`, read from its own ConfigMap: when that is
        `<virtual-service>-canary-history` and `doc` is another model's history written there before each
        model had its own (decision 127), `doc` is first created as that model's own ConfigMap, unless that
        model already has one. Otherwise the first rollout of the model named as the VirtualService after the
        upgrade wiped the other model's history, and its looks recorded so far (decision 131 d). Logged
        `history.legacy_moved`. A failure to create raises, and the flush fails and is tried again: the old
        history is never written over before it has a home."""
        assert self.store is not None
        other = str(doc.get("rollout", {}).get("model") or "")
        if not other or other == self.model or configmap_name(self.vs, other) == configmap_name(self.vs, self.model):
            return
        where = {"namespace": self.namespace, "virtual_service": self.vs, "model": other,
                 "from_configmap": configmap_name(self.vs), "to_configmap": configmap_name(self.vs, other)}
        try:
            try:
                self.store.save(self.namespace, self.vs, doc, None, model=other)
            except _Landed:  # created, its answer lost (decision 419)
                pass
            except _Conflict:  # that model has its own ConfigMap: the old history replaces it only when it is newer
                own, rv = self.store.load(self.namespace, self.vs, model=other)
                if own is not None and _started(own) >= _started(doc):
                    self.log.info("history.legacy_moved", **where, moved=False,
                                  note=f"model {other}'s own ConfigMap holds a later rollout; the older one is dropped")
                    return
                try:
                    self.store.save(self.namespace, self.vs, doc, rv, model=other)
                except _Landed:
                    pass
        except (NotLeader, _Conflict, TransientError):
            raise  # the flush is tried again: the old history is not written over before it has a home
        except CanaryError as exc:
            # refused for good (no RBAC create, a ConfigMap quota, its own unreadable): kept it would block this
            # model's history for every rollout to come; said, and then written over
            self.log.warning("history.legacy_dropped", **where, error=str(exc)[:300],
                             note=f"model {other}'s history from before the upgrade could not be moved and is written "
                                  f"over by model {self.model or self.vs}'s")
            return
        self.log.info("history.legacy_moved", **where, moved=True,
                      note=f"model {other}'s history, written before each model had its own ConfigMap, moved "
                           f"before model {self.model or self.vs}'s rollout writes there")

    def _records(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with this rollout's identity, policy and last phase, and the pending records merged in."""
        assert self._ident is not None and self._last is not None
        (phase, reason, updated_at, _, cause), summary = self._last, self.summary
        doc = {**doc, "rollout": self._ident, "policy": summary, "phase": phase, "reason": reason,
               "updated_at": hist.at_time(updated_at)}
        doc.pop("end_cause", None)  # a class is the end's it was recorded with, never an earlier phase's
        if cause:
            doc["end_cause"] = cause
        looks = [unpack_json(pending) for pending in self._looks]
        return hist.merge(doc, looks=looks, events=self._events, gates=self._gates, weights=self._weights)

    def _identity(self, state: rl.RolloutState) -> dict[str, Any]:
        return {"model": state.model, "namespace": self.namespace, "virtual_service": self.vs, "route": state.route,
                "stable_version": state.stable_version, "canary_version": state.canary_version,
                "started_at": hist.at_time(state.started_at), "source": self.source, "name": self.name}

    def _clear(self) -> None:
        self._looks, self._events, self._gates, self._weights = [], [], [], []


def record_end(store: ConfigMapStore | None, state: rl.RolloutState, *, namespace: str, virtual_service: str,
               events: Iterable[tuple[str, str]], by: str, log: Any = None, unreadable: str = "") -> str:
    """Add the end `state` to its rollout's history, for a writer that ends a rollout it did not run and so has no
    policy of it (the sweeps' ends, promote's end of a split nobody owned before its claim; decision 811): the
    ConfigMap of `state.model` is read, and when it holds that very rollout's history (`history.same_rollout`: its
    canary version and start) the end's phase, reason, class and time, its weights and `events` (`(log event,
    reason)` pairs, each an `events` record) are merged in and written back guarded on the resourceVersion read (a
    conflict is read again, 3 tries). Returns "written"; "no history" when the ConfigMap holds none of that rollout
    (absent, another rollout's, unreadable: a document made up here would name no policy, and would replace
    another rollout's), said once as `history.end_unwritten` (`tries` 0, the end's `phase`, `by`); "failed" when the
    write failed (`history.write_failed`). `unreadable`: the end of a split under an unreadable record (why it did not
    parse): which rollout it ended cannot be told, so no history is read, and the line says so (decision 853).
    Never raises: the end is on the route's record whatever happens here."""
    if store is None:
        return "no history"
    log = log or get_logger(component="history")
    where = {"namespace": namespace, "virtual_service": virtual_service, "model": state.model}
    if unreadable:
        log.warning("history.end_unwritten", **where, tries=0, phase=state.phase, by=by,
                    note=f"the route's record was unreadable ({unreadable[:200]}): which rollout this end ended cannot "
                         "be told, so no history is matched; `canary report` shows that rollout as its last write left "
                         "it, `canary status` the end from the route's record")
        return "no history"
    at = hist.at_time(state.updated_at)
    ident = {"canary_version": state.canary_version, "started_at": state.started_at}
    try:
        for _ in range(3):
            try:
                doc, rv = store.load(namespace, virtual_service, model=state.model)
            except ConfigError as exc:
                if not hasattr(exc, "resource_version"):  # not its history unreadable: the read refused (403,
                    raise  # 401: `translate`'s ConfigError), said as the failed write it is (decision 851)
                doc, rv = None, None
            if doc is None or not hist.same_rollout(doc, ident):
                log.warning("history.end_unwritten", **where, tries=0, phase=state.phase, by=by,
                            note="no history of this rollout in its ConfigMap to add the end to (none written, or a "
                                 "later rollout's): `canary status` shows the end from the route's record")
                return "no history"
            out = {**doc, "phase": state.phase, "reason": state.reason, "updated_at": at}
            out.pop("end_cause", None)
            if state.end_cause:
                out["end_cause"] = state.end_cause
            out = hist.merge(out, events=[hist.event_record(at=at, event=e, phase=state.phase,
                                                            weights=str(state.weights), reason=r) for e, r in events],
                             weights=[[at, state.weights.canary]])
            try:
                store.save(namespace, virtual_service, out, rv, model=state.model)
            except _Landed:
                pass  # written, its answer lost (decision 419)
            except _Conflict:
                continue
            return "written"
        raise CanaryError("the ConfigMap kept changing under the write (3 conflicts)")
    except Exception as exc:  # noqa: BLE001 - an observation: it never changes the end
        if not isinstance(exc, NotLeader):
            log.warning("history.write_failed", **where, by=by, error=f"{type(exc).__name__}: {exc}"[:500],
                        pending=1)
        return "failed"


def emitted(actions: Iterable[Any]) -> list[tuple[str, str]]:
    """The (log event, reason) pairs of `actions` a history keeps as events (`history.is_event`): `record_end`'s."""
    return [(a.event, str(a.fields.get("reason", ""))) for a in actions
            if isinstance(a, rl.Emit) and hist.is_event(a.event)]

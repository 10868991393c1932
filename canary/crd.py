"""The CanaryRollout custom resource: what a rollout asks for, read into our values.

A CanaryRollout (group modelcanary.dev, v1alpha1; manifest in canary/deploy/) names
the VirtualService, the versions and the policy (inline, or a ConfigMap key),
and carries status (phase, step, weights, the last verdict and a summary, conditions) that the
controller mirrors from the VirtualService's rollout annotation -- the
annotation stays the single source of truth, because it is written in the same
write as the weights.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from canary import rollout as rl
from canary.errors import ApiRefused, ConfigError, PolicyError
from canary.model import Target, check_object_name, check_target_names, check_version

if TYPE_CHECKING:  # the policy models (pydantic) load where a CanaryRollout is parsed, not with every `canary`
    from canary.policy import Policy  # command that registers `controller` (decision 965)

GROUP, VERSION, PLURAL, KIND = "modelcanary.dev", "v1alpha1", "canaryrollouts", "CanaryRollout"
ACTIONS = ("", "pause", "resume", "rollback")
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+", re.ASCII)  # the API server's rule for a ConfigMap's keys
# the spec's keys, as the CRD declares them (canary/deploy/crd-canaryrollout.yaml; a test holds the two equal)
SPEC_KEYS = ("model", "canaryVersion", "stableVersion", "virtualService", "destinationRule", "route", "policy",
             "policyRef", "triton", "onForeignEdit", "onPrometheusOutage", "action", "actionReason")
SPEC_SUBKEYS = {"policyRef": ("configMap", "key"), "triton": ("stableUrl", "canaryUrl")}


@dataclass(frozen=True)
class RolloutSpec:
    namespace: str
    name: str
    uid: str
    generation: int
    target: Target
    policy: Policy
    on_foreign_edit: str  # reassert | abort
    on_prometheus_outage: str  # rollback | hold
    action: str
    action_reason: str
    triton_stable: str | None
    triton_canary: str | None
    # the warm-up samples `gates.triton.sample_file` names, read from the policyRef ConfigMap (the key
    # of that name beside the policy's): (where from, parsed JSON); None when the policy names none
    warmup_samples: tuple[str, Any] | None = None
    # why the samples cannot be had ("" when they can, or none are named): refused before the claim and
    # at the gate, never after it (a ConfigMap tidied mid-rollout must not end a rollout past its gate)
    samples_error: str = ""
    # the spec's fields this controller does not know, passed over on a rollout under way (decision 693): a newer
    # CRD's, which this controller does not do ("spec.maxStepWeight"); () where there are none (decision 748)
    ignored_fields: tuple[str, ...] = ()
    # where the policy was read from: the policyRef ConfigMap's name, its key and a digest of the text read there
    # (`text_digest`); None for an inline policy. Recorded with the claim (`judged_marks.source_marks`), so that a
    # ConfigMap edited mid-rollout to a policy that does not parse is told from one gone (decision 822)
    policy_ref: tuple[str, str, str] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse(obj: dict[str, Any], *, configmap: Callable[[str, str], dict[str, str]] | None = None) -> RolloutSpec:
    """Validate one CanaryRollout; ConfigError names namespace/name and the field. Whatever the
    object holds (it comes from the API server, but fields under preserve-unknown-fields and
    hand-written ConfigMaps are anyone's), nothing but ConfigError comes out."""
    if not isinstance(obj, dict):
        raise ConfigError("CanaryRollout: not an object")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    if not isinstance(ns, str) or not isinstance(name, str):
        raise ConfigError("CanaryRollout: metadata.namespace and metadata.name must be strings")
    where = f"CanaryRollout {ns}/{name}"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: spec is missing")
    from canary.policy_fields import key_shown

    unknown = _unknown_keys(spec)
    if unknown and not _running(obj):  # a running rollout's unknown key is a newer CRD's, never a reason to end it
        _known_keys(unknown, where)  # (693); it is passed over, and the controller says so (`ignored_fields`, 748)

    def text(field: str, *, required: bool = False, default: str = "") -> str:
        value = spec.get(field, default)
        if value is None:
            value = default
        if not isinstance(value, str) or (required and not value.strip()):  # "  ": said as the VirtualService's (768)
            raise ConfigError(f"{where}: spec.{field} must be a non-empty string")
        return value

    model, canary, stable = text("model", required=True), text("canaryVersion", required=True), text("stableVersion")
    for field, value in (("canaryVersion", canary), ("stableVersion", stable)):
        if value:
            check_version(value, f"{where}: spec.{field}")
    policy, data, policy_ref = _policy(spec, where, ns, configmap)
    try:
        samples, samples_error = _samples(policy, spec, where, ns, data), ""
    except ConfigError as exc:
        samples, samples_error = None, str(exc)
    action = text("action")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: spec.action must be empty or one of pause, resume, rollback")
    on_edit, on_outage = text("onForeignEdit", default="reassert"), text("onPrometheusOutage", default="rollback")
    if on_edit not in ("reassert", "abort"):
        raise ConfigError(f"{where}: spec.onForeignEdit must be reassert or abort")
    if on_outage not in ("rollback", "hold"):
        raise ConfigError(f"{where}: spec.onPrometheusOutage must be rollback or hold")
    triton = spec.get("triton") or {}
    if not isinstance(triton, dict) or not all(isinstance(triton.get(k, ""), str) for k in ("stableUrl", "canaryUrl")):
        raise ConfigError(f"{where}: spec.triton must be a mapping of stableUrl and canaryUrl strings")
    for key in ("stableUrl", "canaryUrl"):  # (as it ran: an ended rollout's guards parse its spec too, 768)
        if key in triton and not triton[key].strip() and _ran_target(obj) is None:
            _blank(where, f"spec.triton.{key}", "no Triton server: the gate refused, or skipped when disabled")
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise ConfigError(f"{where}: metadata.generation must be an integer")
    target = Target(namespace=ns, virtual_service=text("virtualService") or model, model=model,
                    stable_version=stable, canary_version=canary,
                    destination_rule=text("destinationRule"), route=text("route") or (policy.route or ""))
    _blank_names(obj, spec, target, where)
    check_target_names(target, where)
    return RolloutSpec(namespace=ns, name=name, uid=str(meta.get("uid", "")), generation=generation,
                       target=target, policy=policy, on_foreign_edit=on_edit, on_prometheus_outage=on_outage,
                       action=action, action_reason=text("actionReason"),
                       triton_stable=triton.get("stableUrl"), triton_canary=triton.get("canaryUrl"),
                       warmup_samples=samples, samples_error=samples_error,
                       ignored_fields=tuple(f"{path}.{key_shown(key)}" for path, key, _ in unknown),
                       policy_ref=policy_ref)


# the string fields whose absence means a default, and that default: given empty or blank ("" from a template's
# unset variable), each was read as absent and the rollout ran on the default -- the model's VirtualService, the
# policy's route -- without a word (decision 768; the CLI's flags alike, 743). `stableVersion` is not here: its
# default, the stable subset's version, is the same object (743 kept `--stable-version ""` so too).
_BLANK_REFUSED = {"virtualService": "the VirtualService named as the model", "destinationRule":
                  "the VirtualService's name", "route": "the policy's route, else the only one"}


def _blank(where: str, field: str, default: str) -> NoReturn:
    raise ConfigError(f"{where}: {field} is given empty (an unset variable in a template?): name it, or leave the "
                      f"field out for {default}; nothing was read or written")


def _blank_names(obj: dict[str, Any], spec: dict[str, Any], target: Target, where: str) -> None:
    """Refuse a `_BLANK_REFUSED` field given empty or blank, unless the rollout drives the default it reads as:
    one a controller before 768 started so (its `status.target` says what it drives), running, or ended with its
    spec not edited since (the guards of an ended rollout read its spec: a route restored mid-rollout). Refusing a
    running one would end it mid-way, as 693 keeps a newer CRD's key; an edit to "" mid-rollout (another target),
    or of an ended rollout's spec (a new run: nothing moved yet), is refused."""
    recorded = _ran_target(obj)
    now = {"virtualService": target.virtual_service, "destinationRule": target.dr_name, "route": target.route or ""}
    for field, default in _BLANK_REFUSED.items():
        value = spec.get(field)
        if isinstance(value, str) and not value.strip() and not (recorded is not None
                                                                 and recorded.get(field) == now[field]):
            _blank(where, f"spec.{field}", default)


def _ran_target(obj: dict[str, Any]) -> dict[str, Any] | None:
    """`status.target`, what a controller drove on this spec, where the spec is the one it ran: its rollout under
    way, or ended with the spec not edited since (`status.observedGeneration` its generation); else None. A field
    given empty that a controller before 768 read as absent reads so there: the guards of an ended rollout parse its
    spec (`_end_restored` of a route restored mid-rollout, from `_split_after_end`), and a refusal there left that
    split as it was (decision 768)."""
    status, meta = obj.get("status"), obj.get("metadata")
    if not isinstance(status, dict) or not isinstance(status.get("target"), dict):
        return None
    unedited = isinstance(meta, dict) and status.get("observedGeneration") is not None \
        and status.get("observedGeneration") == meta.get("generation")
    return status["target"] if _running(obj) or unedited else None


def _running(obj: dict[str, Any]) -> bool:
    """Whether the status shows this CR's rollout under way (a phase before an end, which the controller writes only
    for a spec it read). A key this controller does not know on such a spec came from a CRD newer than it: the API
    server prunes what its CRD does not declare, and adds a new field's `default` to every object it reads from
    etcd, typed or not, and to every generation written after (a `kubectl patch` of `spec.action`). Refused there,
    `_failed` sent the rollout to stable 100% and ended it, every rollout in flight, mid upgrade (decision 693)."""
    status = obj.get("status")
    return isinstance(status, dict) and status.get("phase") in rl.PHASES - rl.TERMINAL


def _unknown_keys(spec: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The spec keys (and `policyRef`/`triton` keys) the CRD does not declare, in order: (path, key, the keys known
    there)."""
    found = []
    for path, node, known in (("spec", spec, SPEC_KEYS), *((f"spec.{name}", spec.get(name), keys)
                                                           for name, keys in SPEC_SUBKEYS.items())):
        found += [(path, str(key), known) for key in (node if isinstance(node, dict) else ()) if key not in known]
    return found


def _known_keys(unknown: list[tuple[str, str, tuple[str, ...]]], where: str) -> NoReturn:
    """ConfigError naming the first of `unknown` (`_unknown_keys`, one at least). The API server prunes such a key
    (kubectl's strict validation refuses it), but a server that keeps it (the emulator, kmock) handed it here, and a
    typo (`onPrometheusOutag: hold`) ran with the default (decision 672)."""
    import difflib

    from canary.policy_fields import key_shown

    path, key, known = unknown[0]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}?" if near else f"the fields are {', '.join(known)}"
    # a real API server prunes what its CRD does not declare: a key it hands here is a newer CRD's (693)
    raise ConfigError(f"{where}: {path}.{key_shown(key)}: unknown field ({hint}); this controller "
                      f"({rl.WRITER}) reads no such field and would run without it: correct the name, or, "
                      "where the installed CRD declares it (a CRD newer than the controller), upgrade the "
                      "controller to the CRD's release")


def _samples(policy: Policy, spec: dict[str, Any], where: str, ns: str,
             data: dict[str, str] | None) -> tuple[str, Any] | None:
    """The warm-up samples of an enabled gate's `sample_file`: a key of the policyRef ConfigMap (the
    ConfigMap is to a CanaryRollout what the policy file's folder is to `promote`). ConfigError when
    the key is missing or not sample JSON, or the policy is inline (the controller's own disk is no
    place an author can put a file: it read one relative to its cwd); `parse` keeps it in
    `samples_error`, which the controller raises before the claim and at the gate only."""
    from canary.policy import SAMPLE_FIELD

    gate = policy.gates.triton
    if gate is None or not gate.enabled or not gate.sample_file:
        return None
    if data is None:
        raise ConfigError(f"{where}: spec.policy.{SAMPLE_FIELD}: an inline policy cannot name a file (the "
                          "controller cannot read the author's disk); put the policy and the samples in one "
                          "ConfigMap, the samples under a key of that name, and use spec.policyRef")
    ref = spec["policyRef"]["configMap"]
    if gate.sample_file not in data:
        raise ConfigError(f"{where}: {SAMPLE_FIELD} {gate.sample_file!r}: ConfigMap {ns}/{ref} has no key of "
                          "that name (the warm-up samples live beside the policy, docs/triton.md)")
    try:
        parsed = _parsed_samples(data[gate.sample_file], f"ConfigMap {ns}/{ref}", gate.sample_file)
    except PolicyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return f"configmap:{ns}/{ref}[{gate.sample_file}]", parsed


@functools.lru_cache(maxsize=64)
def _parsed_samples(text: str, file: str, name: str) -> Any:
    """`parse_samples`, once per distinct text (each tick parses every due CanaryRollout)."""
    from canary.policy import parse_samples

    return parse_samples(text, file=file, name=name)


class _Parsed:
    """Parsed policies by their exact text (inline: its JSON; a ConfigMap's: its YAML), shared by the
    rollouts that carry the same one: a fleet has a handful of policies and thousands of rollouts,
    and a Policy is immutable (frozen models). Bounded (least recently used out); only valid
    policies are kept, so every error is raised, with its own rollout's location, as before."""

    def __init__(self, size: int = 256) -> None:
        self.size, self._lock, self._items = size, threading.Lock(), OrderedDict[str, "Policy"]()

    def get(self, key: str | None, parse: Callable[[], Policy]) -> Policy:
        if key is None:
            return parse()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        policy = parse()
        with self._lock:
            self._items[key] = policy
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return policy


_PARSED = _Parsed()
_KEY_MAX = 64 * 1024  # a longer policy text is parsed every time (a policy is ~1-2 kB): the cache stays small


def _text_of(raw: Any) -> str | None:
    """The cache key of an inline policy: its JSON text exactly (key order included), None when it has none."""
    try:
        text = json.dumps(raw, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return None
    return "json:" + text if len(text) <= _KEY_MAX else None


def _policy(spec: dict[str, Any], where: str, ns: str, configmap: Callable[[str, str], dict[str, str]] | None
            ) -> tuple[Policy, dict[str, str] | None, tuple[str, str, str] | None]:
    """The policy, the policyRef ConfigMap's data it was read from and `RolloutSpec.policy_ref` (None, None for an
    inline policy). A refusal of what the ConfigMap holds, or of its read, carries the field it is about
    (`ConfigError.field`: spec.policyRef.configMap, spec.policyRef.key, spec.policyRef for its text): the controller
    tells by it a ConfigMap edited mid-rollout from the CanaryRollout's own spec (decision 822)."""
    from canary.policy import parse_policy, parse_policy_text
    from canary.policy_fields import show

    inline, ref = spec.get("policy"), spec.get("policyRef")
    if (inline is None) == (ref is None):
        raise ConfigError(f"{where}: give exactly one of spec.policy and spec.policyRef")
    if inline is not None:
        try:
            return _PARSED.get(_text_of(inline), lambda: parse_policy(inline, file=f"{where} spec.policy")), None, None
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
    if not isinstance(ref, dict) or not isinstance(ref.get("configMap"), str) or not isinstance(ref.get("key"), str) \
            or not ref["configMap"] or not ref["key"]:
        raise ConfigError(f"{where}: spec.policyRef needs configMap and key")
    # both go into the ConfigMap's request path and into messages: '../x' or 'a/b' was sent as it was
    check_object_name(ref["configMap"], f"{where}: spec.policyRef.configMap")
    if len(ref["key"]) > 253 or not _CONFIGMAP_KEY.fullmatch(ref["key"]):
        raise ConfigError(f"{where}: spec.policyRef.key {show(ref['key'])} is not a ConfigMap key (at most 253 "
                          "letters, digits, '-', '_' and '.')")
    if configmap is None:
        raise ConfigError(f"{where}: spec.policyRef needs Kubernetes access to read ConfigMaps")
    try:
        data = configmap(ns, ref["configMap"])
    except ApiRefused as exc:  # refused (RBAC): said as such (`rollout.api_refused`), with the rollout and field named
        raise ApiRefused(f"{where}: spec.policyRef.configMap: {exc}", request=exc.request, status=exc.status) from None
    except ConfigError as exc:  # not there: the rollout and its field named (transient ones pass)
        raise ConfigError(f"{where}: spec.policyRef.configMap: {exc}", field="spec.policyRef.configMap",
                          detail=str(exc)) from None
    if ref["key"] not in data:
        raise ConfigError(f"{where}: spec.policyRef.key: ConfigMap {ns}/{ref['configMap']} has no key {ref['key']!r}",
                          field="spec.policyRef.key", detail=f"ConfigMap {ns}/{ref['configMap']} has no key "
                          f"{ref['key']!r}")
    text = data[ref["key"]]
    try:  # the strict loader: no YAML coercions, bounded size and depth
        return _PARSED.get("yaml:" + text if isinstance(text, str) and len(text) <= _KEY_MAX else None,
                           lambda: parse_policy_text(text, file=f"{where} spec.policyRef: ConfigMap {ns}/{ref['configMap']}[{ref['key']}]")), \
            data, (ref["configMap"], ref["key"], text_digest(text))
    except PolicyError as exc:
        raise ConfigError(str(exc), field="spec.policyRef", detail=str(exc)) from None


def text_digest(text: Any) -> str:
    """A short digest of a policyRef ConfigMap's text (16 hex; "" for a value that is no text). Not cached: a cache
    would hold every text it keys (the 3.6 kB default policy costs 16-27 us a parse on a loaded host; 822)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16] if isinstance(text, str) else ""


def new_object(*, namespace: str, name: str, model: str, canary_version: str, policy_raw: dict[str, Any],
               stable_version: str = "", virtual_service: str = "", triton: dict[str, str] | None = None) -> dict[str, Any]:
    """The CanaryRollout `canary promote --via-controller` creates."""
    spec: dict[str, Any] = {"model": model, "canaryVersion": canary_version, "policy": policy_raw}
    if stable_version:
        spec["stableVersion"] = stable_version
    if virtual_service:
        spec["virtualService"] = virtual_service
    if triton:
        spec["triton"] = triton
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# ---- status and notification shapes (written by canary/controller.py) ----------------


def conditions(state: rl.RolloutState, old: list[dict[str, Any]], generation: int, now: float) -> list[dict[str, Any]]:
    wanted = {
        "Ready": ("True", "Reconciled", ""),
        "Progressing": ("True" if not state.terminal else "False", state.phase, state.reason),
        "Promoted": ("True" if state.phase == rl.PROMOTED else "False", state.phase, ""),
        "RolledBack": ("True" if state.phase in (rl.ROLLED_BACK, rl.ABORTED) else "False", state.phase, state.reason),
    }
    out = []
    for typ, (st, reason, message) in wanted.items():
        prev = next((c for c in old if c.get("type") == typ), None)
        changed = prev is None or prev.get("status") != st
        out.append({"type": typ, "status": st, "reason": "".join(p.capitalize() for p in reason.split("_")) or "None",
                    "message": message[:1000], "observedGeneration": generation,
                    "lastTransitionTime": iso(now) if changed else prev.get("lastTransitionTime")})
    prev = next((c for c in old if c.get("type") == "Ready"), None)
    if (state.terminal and prev is not None and prev.get("status") == "False"
            and prev.get("reason") in BAD_INPUT_REASONS and isinstance(prev.get("observedGeneration"), int)
            and prev["observedGeneration"] >= generation):  # (the end of the edited rollout is written as its own)
        # ended because this generation's spec cannot be run (a policy edited to an invalid one mid-rollout):
        # Ready stays False with the refusal. It was "True, Reconciled" once the end was written, and a GitOps
        # health check (Argo CD reads Ready) showed the object healthy while its spec could not be read
        out = [dict(prev) if c["type"] == "Ready" else c for c in out]
    return out


# the Ready reasons (the exception's class, `Controller._fail_status`) of a spec the controller refuses as bad
# input: the same errors `canary promote` exits 2 for. RolloutBusy is not one: such a request waits for the
# rollout in its way (docs/reference/cli.md, --via-controller).
BAD_INPUT_REASONS = ("ConfigError", "PolicyError", "TargetError", "NotFound", "RouteNotFound")
# the Ready reason of a CanaryRollout whose route records a rollout in a record schema above this controller's
# (`errors.RecordTooNew`, decision 169): a newer canary's, left to it. Not bad input (a later tick of a newer
# controller may run the very same spec, so Ready goes True again once an end of its own is written), but this
# controller never claims or drives that route until it is upgraded or a person runs `canary rollback`: a request
# never claimed is refused, one claimed is reported as out of this controller's hands (`--via-controller`,
# decision 172)
RECORD_TOO_NEW = "RecordTooNew"
# the Ready reasons `canary promote --via-controller` takes as the controller's refusal of a request it has not
# claimed: exit 2 at once, the CanaryRollout it created withdrawn (what plain `canary promote` exits 2 for)
REFUSED_REASONS = (*BAD_INPUT_REASONS, RECORD_TOO_NEW)


OUTCOMES = ("pass", "inconclusive", "error", "fail")


def summary(old: Any, state: rl.RolloutState, *, verdict: str | None, history: str) -> dict[str, Any]:
    """status.summary: what the looks came to, in constant size (the per-look record, with every arm's
    values, is the history ConfigMap `history` in the rollout's namespace: `canary report`).

    looks / stepLooks / failedLooks come from the rollout state (the truth, whoever wrote it);
    `outcomes` counts this CR's verdicts by outcome, carried over from the previous status."""
    prev = old.get("outcomes") if isinstance(old, dict) else None
    counts = {k: int(prev.get(k, 0)) if isinstance(prev, dict) and isinstance(prev.get(k, 0), int) else 0
              for k in OUTCOMES}
    if verdict in counts:
        counts[verdict] += 1
    last = (state.last_verdict or {}).get("at")
    return {"looks": state.look, "stepLooks": state.step_looks, "failedLooks": state.failed_looks,
            "outcomes": counts, "lastLookAt": iso(float(last)) if isinstance(last, (int, float)) else "",
            "historyConfigMap": history}


def notification(spec: RolloutSpec, state: rl.RolloutState) -> dict[str, Any]:
    return notification_of(spec.namespace, spec.name, spec.target, state)


def notification_of(namespace: str, name: str, target: Target, state: rl.RolloutState) -> dict[str, Any]:
    """The post of CanaryRollout `namespace/name`'s end `state` on `target`: with no parsed spec too (the
    controller's `_stable_if_ours`, where the policy may not read: decision 736)."""
    evidence = state.verdict_results()
    return {"model": target.model, "namespace": namespace, "rollout": name,
            "stable_version": state.stable_version, "canary_version": state.canary_version,
            "weights": str(state.weights), "reason": state.reason,
            "evidence": [r for r in evidence if r.get("outcome") in ("fail", "error")], "at": iso(state.updated_at),
            "virtual_service": target.virtual_service, "route": target.route}  # the command to look (notify)


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""

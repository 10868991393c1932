"""Where baselines and the monitor's state live in a cluster: ConfigMaps.

A baseline is a ConfigMap labelled `modelcanary.dev/baseline: "true"` (and
`modelcanary.dev/model`, `modelcanary.dev/version`) whose `profile.json` key holds the
profile (`canary baseline capture --configmap NAME`). The controller's drift
monitor (`canary controller run --drift`) lists them every evaluation, so a
new model version's profile is picked up without a restart, and keeps its
monitor states in one ConfigMap (`canary-drift-state` by default) written with
resourceVersion preconditions. ConfigMaps hold at most 1 MiB: a profile beyond
900 KB is refused with the figure (fewer --buckets, fewer features).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from canary.errors import ConfigError

LABEL = "modelcanary.dev/baseline"
KEY = "profile.json"
# a baseline ConfigMap's own monitor settings, over the controller's --drift-window and --enter-after (3):
# a model whose inputs follow the time of day needs a day's window and one window to enter (decision 92)
WINDOW_ANNOTATION = "modelcanary.dev/drift-window"
ENTER_AFTER_ANNOTATION = "modelcanary.dev/drift-enter-after"
DRIFT_ANNOTATIONS = "modelcanary.dev/drift"  # any other annotation under it is a typo, refused
# The longest live window a drift evaluation reads, the flags' (`drift check/watch --window`, `--drift-window`) and
# this annotation's (decision 790; 769 set a day, a rollout step's bound, which refused what this tool advises): a
# week holds a weekly cycle of traffic as a day holds a daily one (`--window 24h` for a model whose inputs follow
# the hour, docs/drift.md), and a low-traffic model's 100 values a feature needs; past it, a typo more likely than
# a need, and most of Prometheus's default retention (15d). A window too long for a Prometheus's
# --query.max-samples is its refusal, said with the remedy (`live.QueryRefused`), at a day as at a week.
MAX_WINDOW_S = 7 * 86400.0
WINDOW_WHY = ("a week holds a weekly cycle of traffic; a longer window is most of Prometheus's retention (15d by "
              "default), and each query loads every sample of it at once (past --query.max-samples on many pods)")


def monitor_settings(annotations: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """The monitor settings a baseline ConfigMap's annotations give: {"_window_s": seconds > 0,
    "_enter_after": int >= 1}, each only when given. ValueError naming the ConfigMap, the annotation
    and the value when one is malformed, or when an annotation under `modelcanary.dev/drift` is none of
    them (a misspelt setting; the baseline is then skipped, `drift.bad_baseline`)."""
    from canary.policy_fields import parse_duration

    out: dict[str, Any] = {}
    given = annotations or {}
    for name in sorted(given):
        if name.startswith(DRIFT_ANNOTATIONS) and name not in (WINDOW_ANNOTATION, ENTER_AFTER_ANNOTATION):
            # a typo ("drift-windows") silently kept the controller's 1 h window: the daily-cycle model it
            # was set for then opened a false episode, and a retraining Job, a day
            import difflib

            near = difflib.get_close_matches(name, [WINDOW_ANNOTATION, ENTER_AFTER_ANNOTATION], n=1)
            raise ValueError(f"ConfigMap {where}: annotation {name}: not a drift setting"
                             + (f" (did you mean {near[0]}?)" if near else "")
                             + f"; a baseline ConfigMap takes {WINDOW_ANNOTATION} and {ENTER_AFTER_ANNOTATION}")
    if WINDOW_ANNOTATION in given:
        try:
            out["_window_s"] = parse_duration(given[WINDOW_ANNOTATION])
        except ValueError as exc:
            raise ValueError(f"ConfigMap {where}: annotation {WINDOW_ANNOTATION}: {exc}") from None
        if out["_window_s"] > MAX_WINDOW_S:  # the flags' bound (`--drift-window`, decisions 769, 790)
            from canary.analysis.shown import duration, duration_beside

            raise ValueError(f"ConfigMap {where}: annotation {WINDOW_ANNOTATION}: "
                             f"{duration_beside(out['_window_s'], MAX_WINDOW_S)} is "
                             f"longer than {duration(MAX_WINDOW_S)}, the most a drift window takes: {WINDOW_WHY}")
    if ENTER_AFTER_ANNOTATION in given:
        raw = str(given[ENTER_AFTER_ANNOTATION]).strip()
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:  # "²".isdigit(), and int() refuses it
            raise ValueError(f"ConfigMap {where}: annotation {ENTER_AFTER_ANNOTATION}: must be a whole number of "
                             f"windows, at least 1; got {given[ENTER_AFTER_ANNOTATION]!r}")
        out["_enter_after"] = int(raw)
    return out
MAX_BYTES = 900_000


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.") or "x"


def save_profile(core: Any, *, namespace: str, name: str, profile: Mapping[str, Any]) -> str:
    """Create or replace the baseline ConfigMap; returns 'created' or 'updated' (naming the model's own drift
    settings it kept, when it has any).

    A replace keeps what the ConfigMap carries beside the profile: its annotations (the model's own
    `modelcanary.dev/drift-window` and `drift-enter-after`, set with `kubectl annotate` as docs/drift.md section 5
    says, and anything a person or a GitOps tool put there) and its other labels; it was replaced whole, so a
    re-capture of a daily-cycle model's training data put it back on the controller's 1 h window (a false episode
    and a retraining Job about every day). It is written with the resourceVersion read (a concurrent change: run
    again). ConfigError, nothing written, when the ConfigMap holds another model version's baseline (a capture of
    v3 given v2's ConfigMap name replaced v2's, and the version serving all traffic went unwatched, silently) or
    is not a baseline ConfigMap at all (no `modelcanary.dev/baseline` label: someone else's)."""
    from kubernetes.client.exceptions import ApiException

    text = json.dumps(profile, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > MAX_BYTES:
        raise ConfigError(f"the profile is {len(text.encode()):,} bytes; a ConfigMap holds at most 1 MiB "
                          f"(use fewer --buckets or --features, or keep it as a file)")
    model, version = str(profile["model"]), str(profile["version"])
    ours = {LABEL: "true", "modelcanary.dev/model": label_value(model), "modelcanary.dev/version": label_value(version)}
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": namespace, "labels": dict(ours)},
                            "data": {KEY: text}}
    where = f"ConfigMap {namespace}/{name}"
    try:
        _written(lambda: core.create_namespaced_config_map(namespace, body, _preload_content=False,
                                                           _request_timeout=10), core, namespace, name, text)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise ConfigError(f"{where}: {exc.status} {exc.reason}") from None
    try:
        there = _read_raw(core, namespace, name)
    except ApiException as exc:
        raise ConfigError(f"{where} exists and could not be read to replace it: {exc.status} {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - a 200 with no object (kube.BadAnswer), the network
        raise ConfigError(f"{where} exists and could not be read to replace it: {brief(exc)}") from None
    meta = there["metadata"]
    labels, notes = dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})
    if labels.get(LABEL) != "true":
        raise ConfigError(f"{where} exists and is not a baseline ConfigMap (no {LABEL}=true label): not replaced; "
                          f"give --configmap a name of its own")
    try:
        held = json.loads((there.get("data") or {}).get(KEY) or "")
        held = (str(held["model"]), str(held["version"])) if isinstance(held, dict) else None
    except (ValueError, KeyError, TypeError):
        held = None  # a malformed baseline (drift.bad_baseline): this capture repairs it
    if held is not None and held != (model, version):
        raise ConfigError(f"{where} holds the baseline of {held[0]} {held[1]}, not {model} {version}: replacing it "
                          f"would stop the drift watch of {held[0]} {held[1]} (the controller watches the baselines "
                          f"it finds); give this version a ConfigMap of its own (--configmap), or delete that one "
                          f"first if {held[0]} {held[1]} is no longer served")
    body["metadata"].update(labels={**labels, **ours}, resourceVersion=meta.get("resourceVersion"),
                            **({"annotations": notes} if notes else {}))
    try:
        _written(lambda: core.replace_namespaced_config_map(name, namespace, body, _preload_content=False,
                                                            _request_timeout=10), core, namespace, name, text)
    except ApiException as exc:
        if exc.status == 409:
            raise ConfigError(f"{where} changed while it was being replaced: run the capture again") from None
        raise ConfigError(f"{where}: {exc.status} {exc.reason}") from None
    kept = sorted(k for k in notes if k.startswith(DRIFT_ANNOTATIONS))
    return "updated" + (f" (its drift settings kept: {', '.join(f'{k}={notes[k]}' for k in kept)})" if kept else "")


def _read_raw(core: Any, namespace: str, name: str) -> dict[str, Any]:
    """ConfigMap `namespace/name` as sent (`kube.raw_object`: BadAnswer for a 200 whose body is not the object)."""
    from canary.kube import raw_object

    return raw_object(core.read_namespaced_config_map(name, namespace, _preload_content=False, _request_timeout=10),
                      f"the read of ConfigMap {namespace}/{name}")


def _written(send: Any, core: Any, namespace: str, name: str, text: str) -> None:
    """Send a baseline's create or replace (`send`); its answer must be the ConfigMap (`kube.raw_object`). A write
    answered so that it may have landed (a 5xx such as etcd's `request timed out`, a timeout, a 200 whose body is
    not the ConfigMap: `kube.is_transient`) is read back: holding `text`, it landed (decision 421). Otherwise
    ConfigError naming the ConfigMap, or the ApiException as it came (409, 403: the caller's)."""
    from kubernetes.client.exceptions import ApiException

    from canary.kube import is_transient, raw_object

    where = f"ConfigMap {namespace}/{name}"
    try:
        raw_object(send(), f"the write of {where}")
        return
    except ApiException as exc:
        if not is_transient(exc):
            raise
        failed: BaseException = exc
    except Exception as exc:  # noqa: BLE001 - a 200 with no object, the network: read back
        failed = exc
    try:
        there = _read_raw(core, namespace, name)
    except Exception:  # noqa: BLE001 - not known to have landed
        there = {}
    if (there.get("data") or {}).get(KEY) != text:
        raise ConfigError(f"{where}: the write failed ({brief(failed)}) and the ConfigMap does not hold this "
                          "profile: run the capture again") from None


def load_profiles(core: Any, namespace: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(namespace/name, profile) of every baseline ConfigMap; a malformed one is skipped with its reason
    in the second list entry's place: ("ns/name", {"error": ...}). A profile carries the ConfigMap's
    own monitor settings (`monitor_settings`) as "_window_s" and "_enter_after" when it gives them."""
    sel = f"{LABEL}=true"
    if namespace:
        items = core.list_namespaced_config_map(namespace, label_selector=sel, _request_timeout=10).items
    else:
        items = core.list_config_map_for_all_namespaces(label_selector=sel, _request_timeout=10).items
    out = []
    for cm in items:
        where = f"{cm.metadata.namespace}/{cm.metadata.name}"
        try:
            prof = json.loads((cm.data or {})[KEY])
            if not isinstance(prof, dict) or prof.get("format") != 1 or not isinstance(prof.get("features"), dict):
                raise ValueError("not a format-1 profile")
        except (KeyError, ValueError, TypeError) as exc:
            out.append((where, {"error": f"ConfigMap {where}: {KEY}: {exc}"}))
            continue
        try:
            prof.update(monitor_settings(cm.metadata.annotations, where))
        except ValueError as exc:
            out.append((where, {"error": str(exc)}))
            continue
        out.append((where, prof))
    return out


class StateConflict(Exception):
    """The state ConfigMap changed since this replica read it (another replica wrote it, or this one
    is no longer the only leader): re-read it, merge, and write again (`DriftWatcher`)."""


def brief(exc: BaseException) -> str:
    """One readable line for an error: an API error's status, reason and the server's message
    (never the raw HTTP headers and body the kubernetes client puts in str())."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        message = ""
        try:
            body = json.loads(getattr(exc, "body", None) or "{}")
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
        except (TypeError, ValueError):
            pass
        reason = getattr(exc, "reason", "") or ""
        return f"{type(exc).__name__}: {status} {reason}".rstrip() + (f": {message}" if message else "")[:240]
    return f"{type(exc).__name__}: {exc}"[:300]


class ConfigMapStateStore:
    """The monitor states in one ConfigMap (key `state.json`), replaced with its resourceVersion.

    `save` is guarded: a write whose resourceVersion is stale (another replica wrote since our
    `load`) raises StateConflict instead of overwriting, and so does a create that finds the
    ConfigMap already there; the caller re-reads (`load`) and merges before writing again."""

    def __init__(self, core: Any, *, namespace: str, name: str = "canary-drift-state") -> None:
        self.core, self.namespace, self.name = core, namespace, name
        self._version: str | None = None

    def load(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            cm = _read_raw(self.core, self.namespace, self.name)
        except ApiException as exc:
            if exc.status == 404:
                self._version = None
                return {}
            raise
        self._version = cm["metadata"].get("resourceVersion")
        try:
            raw = json.loads((cm.get("data") or {}).get("state.json", "{}"))
        except ValueError as exc:
            raise ConfigError(f"ConfigMap {self.namespace}/{self.name}: state.json: {exc}") from None
        return raw if isinstance(raw, dict) else {}

    def save(self, states: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        from canary.kube import raw_object, translate

        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "data": {"state.json": json.dumps(states, separators=(",", ":"))}}
        what = f"the write of ConfigMap {self.namespace}/{self.name}"
        try:
            if self._version is None:
                done = raw_object(self.core.create_namespaced_config_map(self.namespace, body, _preload_content=False,
                                                                         _request_timeout=10), what)
            else:
                body["metadata"]["resourceVersion"] = self._version
                done = raw_object(self.core.replace_namespaced_config_map(self.name, self.namespace, body,
                                                                          _preload_content=False,
                                                                          _request_timeout=10), what)
        except ApiException as exc:
            if exc.status in (404, 409):  # written (or deleted) by someone else since our load
                raise StateConflict(f"ConfigMap {self.namespace}/{self.name} changed since it was read "
                                    f"({exc.status} {exc.reason})") from None
            if not self._landed(exc, body["data"]["state.json"]):
                raise
            return
        except Exception as exc:  # noqa: BLE001 - a 200 with no object (BadAnswer), a timeout: read back
            if not self._landed(exc, body["data"]["state.json"]):
                raise translate(exc, f"ConfigMap {self.namespace}/{self.name}") from exc
            return
        self._version = done["metadata"].get("resourceVersion")

    def _landed(self, exc: BaseException, text: str) -> bool:
        """After a write failed so that it may have landed (a 5xx such as etcd's `request timed out`, a timeout, a 200
        whose body is not the ConfigMap: `kube.is_transient`), whether the ConfigMap read back holds exactly `text`:
        then the write landed, its version is the one read and it is said (`drift.state_answer_lost`, decision
        421). Its answer taken as failed, the evaluation was dropped, and the next write, on the version before its
        own, met a 409 and read its own state as another replica's (`drift.state_conflict`)."""
        from canary.kube import is_transient

        if not is_transient(exc):
            return False
        try:
            cm = _read_raw(self.core, self.namespace, self.name)
        except Exception:  # noqa: BLE001 - not known to have landed: the write failed
            return False
        if (cm.get("data") or {}).get("state.json") != text or not cm["metadata"].get("resourceVersion"):
            return False
        self._version = cm["metadata"]["resourceVersion"]
        from canary.logs import get as get_logger

        get_logger(component="drift").info("drift.state_answer_lost", configmap=f"{self.namespace}/{self.name}",
                                           error=brief(exc), message="the state write landed (read back from the "
                                                                     "ConfigMap): stored")
        return True

"""The retraining Job of a drift episode: built from the user's template, created once per episode.

`canary drift watch` and the controller's drift monitor (`canary.drift.watch`) create it when an
episode starts. Its name carries model, version and episode number, so a second create for the same
episode is AlreadyExists, i.e. done; a Job under that name from an *earlier* episode with the same
number (a watcher restarted without its state numbers episodes from 1 again) is told apart by its
`modelcanary.dev/drift-episode-start` annotation, and this episode gets a Job of its own. The
evidence rides along as an annotation and the `CANARY_DRIFT_EVIDENCE` env var of every container,
always valid JSON (`evidence_text`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from canary.drift.store import brief, label_value
from canary.errors import ConfigError

log = structlog.get_logger("canary.drift")

EVIDENCE_MAX = 60_000  # characters of evidence in the annotation and the env var


def evidence_text(evidence: Mapping[str, Any], limit: int = EVIDENCE_MAX) -> str:
    """The evidence as compact JSON of at most `limit` characters, always valid. When it is longer
    (hundreds of features), it is shrunk, never cut: the drifted features' entries are kept first
    (highest score first), then the others while they fit; `"truncated": true`, how many entries were
    left out and a summary of those (how many drifted, their highest score) say what is missing, and
    `drifted_features` is shortened the same way when even the names do not fit."""
    text = _dumps(evidence)
    if len(text) <= limit:
        return text
    feats = [f for f in evidence.get("features") or [] if isinstance(f, Mapping)]
    order = sorted(feats, key=lambda f: (not f.get("drifted"), -_score(f)))
    names = list(evidence.get("drifted_features") or [])

    def build(k: int, m: int) -> str:
        left = order[k:]
        out = {**evidence, "features": order[:k], "drifted_features": names[:m], "truncated": True,
               "features_omitted": len(left),
               "omitted": {"drifted": sum(1 for f in left if f.get("drifted")),
                           "max_score": max((_score(f) for f in left), default=None)}}
        if m < len(names):
            out["drifted_features_omitted"] = len(names) - m
        return _dumps(out)

    m = len(names)
    if len(build(0, m)) > limit:  # even the names do not fit: as many as do
        m = _most(lambda j: len(build(0, j)) <= limit, len(names))
    k = _most(lambda j: len(build(j, m)) <= limit, len(order))
    text = build(k, m)
    if len(text) <= limit:
        return text
    return _dumps({"truncated": True, "at": evidence.get("at"), "share": evidence.get("share"),
                   "features_omitted": len(feats)})[:limit]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


def _score(f: Mapping[str, Any]) -> float:
    s = f.get("score")
    return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) and s == s else 0.0


def _most(fits: Any, n: int) -> int:
    """The largest j in 0..n with fits(j) (fits is monotone: True up to some j); 0 when none."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def retrain_job(template: Mapping[str, Any], *, model: str, version: str, episode: int,
                evidence: Mapping[str, Any], distinct: bool = False) -> dict[str, Any]:
    """The user's Job template with a name per episode, labels, and the evidence attached. The
    `modelcanary.dev/drift-episode-start` annotation identifies the episode (its start time), so a
    Job found under the same name can be told apart from one of an earlier episode that had the same
    number; `distinct` adds a hash of that start to the name (`create_job`)."""
    job = copy.deepcopy(dict(template))
    meta = job.setdefault("metadata", {})
    base = meta.pop("generateName", None) or meta.get("name") or "retrain"
    start = episode_start(evidence)
    meta["name"] = job_name(base, model=model, version=version, episode=episode,
                            suffix=_start_hash(model, version, episode, start) if distinct else "")
    meta.setdefault("labels", {}).update({"modelcanary.dev/model": label_value(model),
                                          "modelcanary.dev/version": label_value(version),
                                          "modelcanary.dev/drift-episode": str(episode)})
    text = evidence_text(evidence)
    annotations = meta.setdefault("annotations", {})
    annotations["modelcanary.dev/drift-evidence"] = text
    annotations[START] = start
    for c in job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        c.setdefault("env", []).append({"name": "CANARY_DRIFT_EVIDENCE", "value": text})
    return job


START = "modelcanary.dev/drift-episode-start"


def episode_start(evidence: Mapping[str, Any]) -> str:
    """The episode's identity: when it started (the evidence's `at`), as an annotation value."""
    at = evidence.get("at")
    return repr(float(at)) if isinstance(at, (int, float)) and not isinstance(at, bool) else ""


def _start_hash(model: str, version: str, episode: int, start: str) -> str:
    return hashlib.sha256(f"{model}\0{version}\0{episode}\0{start}".encode()).hexdigest()[:6]


def create_job(batch: Any, template: Mapping[str, Any], *, namespace: str, model: str, version: str, episode: int,
               evidence: Mapping[str, Any]) -> tuple[bool, str, str]:
    """Create the episode's Job; (done, error, the Job's name: the one created or found). A Job already under its name is this episode's (a
    restart, a retry: done, never a second Job) only when its episode-start annotation says so; one of
    an earlier episode with the same number (a watcher restarted without its state counts from 1
    again) gets a new Job whose name adds a hash of this episode's start. When the Job found cannot
    be read, nothing is created: the trigger fails (reported, retried), never skipped."""
    job = retrain_job(template, model=model, version=version, episode=episode, evidence=evidence)
    name = job["metadata"]["name"]
    try:
        batch.create_namespaced_job(namespace, job, _request_timeout=5)
        return True, "", name
    except Exception as exc:
        if getattr(exc, "status", None) != 409:
            return False, brief(exc), name
    try:
        found = batch.read_namespaced_job(name, namespace, _request_timeout=5)
    except Exception as exc:  # e.g. 403: RBAC grants create only; never guess
        return (False, f"Job {namespace}/{name} exists and could not be read to tell whose episode it is: "
                       f"{brief(exc)}", name)
    mine = episode_start(evidence)
    if mine and _start_of(found) == mine:
        return True, "", name  # this episode's: created before a restart or a lost write
    again = retrain_job(template, model=model, version=version, episode=episode, evidence=evidence, distinct=True)
    log.warning("drift.retrain_job_renamed", model=model, version=version, episode=episode, existing=name,
                job=again["metadata"]["name"],
                message=f"Job {name} was created for another episode {episode}, started at {_start_of(found)} "
                        f"(this one started at {mine}): the monitor's state was not kept (a watcher without "
                        f"--state-file, restarted), so episode numbers restarted")
    try:
        batch.create_namespaced_job(namespace, again, _request_timeout=5)
    except Exception as exc:
        if getattr(exc, "status", None) != 409:  # its name carries this episode's start: a 409 is ours
            return False, brief(exc), again["metadata"]["name"]
    return True, "", again["metadata"]["name"]


def _start_of(job: Any) -> str:
    """The episode start a Job was created for: its annotation, or the `at` of its evidence (Jobs
    created before the annotation existed)."""
    meta = getattr(job, "metadata", None)
    annotations = dict(getattr(meta, "annotations", None) or {})
    if annotations.get(START):
        return str(annotations[START])
    text = annotations.get("modelcanary.dev/drift-evidence", "")
    try:
        return episode_start(json.loads(text))
    except (TypeError, ValueError, AttributeError):
        m = re.match(r'\{"at":(-?[0-9.eE+-]+)', text or "")
        return repr(float(m.group(1))) if m else ""


def load_job_template(path: Path) -> dict[str, Any]:
    """A batch/v1 Job from YAML. ConfigError naming the file and field when it is not one."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the Job template: {str(exc)[:200]}") from None
    if not isinstance(raw, dict) or raw.get("kind") != "Job" or not str(raw.get("apiVersion", "")).startswith("batch/"):
        raise ConfigError(f"{path}: kind/apiVersion: the retraining template must be a batch/v1 Job")
    for field, value in (("metadata", raw.get("metadata", {})), ("spec", raw.get("spec")),
                         ("spec.template", (raw.get("spec") or {}).get("template") if isinstance(raw.get("spec"), dict)
                          else None)):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {field}: must be a mapping")
    pod = raw["spec"]["template"].get("spec")
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        raise ConfigError(f"{path}: spec.template.spec.containers: the Job needs at least one container")
    for i, c in enumerate(containers):
        if not isinstance(c.get("env", []), list):
            raise ConfigError(f"{path}: spec.template.spec.containers[{i}].env: must be a list")
    for key in ("labels", "annotations"):
        if not isinstance(raw["metadata"].get(key, {}), dict):
            raise ConfigError(f"{path}: metadata.{key}: must be a mapping")
    return raw


def job_name(prefix: str, *, model: str, version: str, episode: int, suffix: str = "") -> str:
    """`<prefix>-<model>-<version>-e<episode>`, a DNS-1123 name of at most 63 characters. When it
    would be longer (or when lowercasing and replacing characters could make two versions alike,
    e.g. v2.1 and v2-1), the middle is shortened and a hash of the exact model and version
    keeps it unique; the episode number (and `suffix`, when given) is always kept."""
    clean = lambda t: re.sub(r"[^a-z0-9-]+", "-", t.lower()).strip("-")  # noqa: E731
    tail = f"-e{episode}" + (f"-{suffix}" if suffix else "")
    body = clean(f"{prefix.rstrip('-')}-{model}-{version}")
    exact = f"{prefix.rstrip('-')}-{model}-{version}" == body
    if exact and len(body) + len(tail) <= 63:
        return body + tail
    digest = hashlib.sha256(f"{model}\0{version}".encode()).hexdigest()[:8]
    return f"{body[:63 - len(tail) - 9].rstrip('-')}-{digest}{tail}"

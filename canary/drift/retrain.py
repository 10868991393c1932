"""The retraining Job of a drift episode: built from the user's template, created once per episode.

`canary drift watch` and the controller's drift monitor (`canary.drift.watch`) create it when an
episode starts, at most one in flight per model version whatever the number of watchers (`create_job`:
one in flight, or created since the drift began to be read, is adopted; a new one's name carries the
version's next retraining number, so two watchers that race create one). Its
`modelcanary.dev/drift-episode-start` annotation tells a retry of the same episode its own Job, and its
`modelcanary.dev/model`/`version` annotations the exact model version (the labels' values are lossy). The
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
from canary.filekind import read_input

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
                evidence: Mapping[str, Any], number: int | None = None) -> dict[str, Any]:
    """The user's Job template with a name, labels, and the evidence attached. The name ends in
    `-e<number>`, the model version's retraining number (`create_job`; the episode's number when not
    given); `modelcanary.dev/drift-episode` is the episode of the watcher that created it. The
    `modelcanary.dev/drift-episode-start` annotation identifies that episode (its start time), so a retry
    of the same episode finds its own Job; `modelcanary.dev/model` and `modelcanary.dev/version` are labels
    (`label_value`, for the list's selector) and annotations (exact: two models can share a label value)."""
    job = copy.deepcopy(dict(template))
    meta = job.setdefault("metadata", {})
    base = meta.pop("generateName", None) or meta.get("name") or "retrain"
    start = episode_start(evidence)
    n = episode if number is None else number
    meta["name"] = job_name(base, model=model, version=version, episode=n)
    meta.setdefault("labels", {}).update({MODEL: label_value(model), VERSION: label_value(version),
                                          "modelcanary.dev/drift-episode": str(episode),
                                          RETRAINING: str(n)})
    text = evidence_text(evidence)
    annotations = meta.setdefault("annotations", {})
    annotations["modelcanary.dev/drift-evidence"] = text
    annotations[START] = start
    annotations[MODEL], annotations[VERSION] = model, version  # exact: label values can be alike (`_of_version`)
    for c in job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        c.setdefault("env", []).append({"name": "CANARY_DRIFT_EVIDENCE", "value": text})
    return job


START = "modelcanary.dev/drift-episode-start"
RETRAINING = "modelcanary.dev/retraining"  # label: the model version's retraining number, the name's -e<N>
MODEL, VERSION = "modelcanary.dev/model", "modelcanary.dev/version"  # labels (`label_value`), and annotations (exact)


def episode_start(evidence: Mapping[str, Any]) -> str:
    """The episode's identity: when it started (the evidence's `at`), as an annotation value; a new Job made after
    the episode's Job failed (`retry` N in the evidence, `monitor.retrain_job_failed`) is `<at>/retry-N`, a Job of
    its own (the failed one is not read as the retry's, decision 385)."""
    at, retry = evidence.get("at"), evidence.get("retry")
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        return ""
    again = isinstance(retry, int) and not isinstance(retry, bool) and retry > 0
    return repr(float(at)) + (f"/retry-{retry}" if again else "")


def create_job(batch: Any, template: Mapping[str, Any], *, namespace: str, model: str, version: str, episode: int,
               evidence: Mapping[str, Any], since: float | None = None) -> tuple[bool, str, str]:
    """Start the episode's retraining, at most one in flight per model version whatever the number of
    watchers (two `drift watch` replicas each with its own state file, a `--once` cron beside a continuous
    watch); (done, error, the Job's name: the one created, found or adopted).

    First the model version's retraining Jobs in `namespace` are listed (by the labels `retrain_job` sets,
    then its exact model and version annotations, `_of_version`; RBAC: `list` on jobs). This episode's own Job (its episode-start annotation: a restart, a retry) is done.
    Else a Job that is still in flight (not Complete nor Failed: running, pending, suspended or queued), or
    that was created at or after `since` (Unix seconds: when this episode's drift began to be read, the
    start of its first drifted window; the API server's `creationTimestamp`), is adopted as this episode's:
    logged (`drift.retrain_adopted`), no second Job. Only then is a Job created, named `-e<N>` with N one
    more than the highest retraining number among the Jobs listed: two watchers that list at the same moment
    compute the same name, so the API server lets one create it and the other's create is AlreadyExists,
    read and adopted (the name is the lock, no other object needed). A name taken by a Job that is not a
    candidate (no such labels, or finished before `since`) moves to the next number. Any failure to list or
    read is a failed trigger (reported, retried), never a guess: nothing is created then."""
    mine = episode_start(evidence)
    selector = f"{MODEL}={label_value(model)},{VERSION}={label_value(version)}"
    from canary.kube import raw_list, raw_object

    try:  # raw: a 200 with no list (`{}`, a page) is no "no Job in flight" (`kube.raw_list`, decisions 424, 494)
        found, _ = raw_list(batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False,
                                                      _request_timeout=5), f"Jobs of {model} {version} in {namespace}")
    except Exception as exc:  # never create blind
        return (False, f"cannot list the retraining Jobs of {model} {version} in {namespace} to check that none "
                       f"is in flight ({api_cause(exc, 'list', namespace)}): {brief(exc)}", "")
    found = [j for j in found if _of_version(j, model, version)]
    for j in found:
        if mine and _start_of(j) == mine:
            return True, "", _name(j)  # this episode's: created before a restart or a lost write
    # the new Job after a failed one: a Job that failed is no retraining to adopt (the episode's own failed one,
    # created since its drift began to be read, would be adopted as the retraining it replaces)
    retry = bool(evidence.get("retry"))
    adopted = _candidate(found, since, skip_failed=retry)
    if adopted is not None:
        return True, "", _adopt(adopted, namespace=namespace, model=model, version=version, episode=episode,
                                since=since)
    n = 1 + max((_number(j) for j in found), default=0)
    for _ in range(5):
        job = retrain_job(template, model=model, version=version, episode=episode, evidence=evidence, number=n)
        name = job["metadata"]["name"]
        try:
            batch.create_namespaced_job(namespace, job, _request_timeout=5)
            return True, "", name
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                return False, brief(exc), name
        try:  # taken: by the other watcher of a race (adopted), or by a Job that is no retraining of this version
            # raw: a 200 with no object read as a Job of no model version took the name for another's, and the next
            # number was created, a second retraining in flight (`kube.raw_object`, decision 424)
            there = raw_object(batch.read_namespaced_job(name, namespace, _preload_content=False, _request_timeout=5),
                               f"the read of Job {namespace}/{name}")
        except Exception as exc:  # never guess
            if getattr(exc, "status", None) == 404:  # gone since the 409: deleted between the two answers
                return (False, f"the name was taken at the create (409 AlreadyExists) and the Job gone at the read "
                               f"that followed (deleted meanwhile: its ttlSecondsAfterFinished, a person); the "
                               f"retry lists the Jobs again: {brief(exc)}", name)
            return (False, f"the name is taken (409 AlreadyExists) and the Job could not be read to tell whose it "
                           f"is ({api_cause(exc, 'get', namespace)}): {brief(exc)}", name)
        if _of_version(there, model, version):
            if mine and _start_of(there) == mine:
                return True, "", name
            if _candidate([there], since, skip_failed=retry) is not None:
                return True, "", _adopt(there, namespace=namespace, model=model, version=version, episode=episode,
                                        since=since)
        n = max(n, _number(there)) + 1
    return False, f"Job names {name} and the four before it are taken by other Jobs", name


def api_cause(exc: BaseException, verb: str, namespace: str) -> str:
    """What an API error on jobs means for the person on call, by its status: only a 403 (that is not a full
    ResourceQuota) is RBAC. A 500 read "(RBAC: list on jobs)", which sent on-call to the Role while the API
    server was failing and the trigger's retry would do. `verb`: the RBAC verb the call needs."""
    from canary.kube import BadAnswer

    status = getattr(exc, "status", None)
    if isinstance(exc, BadAnswer):
        return "answered 200 with a body that is no answer (a proxy?): not a permission; retried"
    if not isinstance(status, int) or isinstance(status, bool) or status == 0:
        return "the API server did not answer (a timeout, a connection error): not a permission; retried"
    if status == 403 and not over_quota(exc):
        return f"refused: RBAC must grant {verb} on jobs in {namespace}"
    if status == 401:
        return "the API server does not accept the watcher's credentials"
    if status == 404:
        return f"not found: does namespace {namespace} exist?"
    if status >= 500 or status in (408, 429):
        return f"the API server failed it (HTTP {status}): not a permission; retried"
    return f"the API server refused it (HTTP {status})"


def _adopt(job: Any, *, namespace: str, model: str, version: str, episode: int, since: float | None) -> str:
    """Log that `job` is this episode's retraining (`drift.retrain_adopted`); its name."""
    name = _name(job)
    theirs = _meta(job, "labels").get("modelcanary.dev/drift-episode", "")
    how = ("still in flight" if not _finished(job) else
           f"created {_iso(_created(job))}, after this drift began to be read ({_iso(since)})")
    log.warning("drift.retrain_adopted", model=model, version=version, namespace=namespace, episode=episode,
                job=f"{namespace}/{name}", adopted_episode=theirs,
                message=f"{model} {version}: drift episode {episode}'s retraining is Job {namespace}/{name} ({how}; "
                        f"created for episode {theirs or '?'} started at {_start_of(job) or '?'}, by another "
                        f"watcher of this model version or an earlier episode): no second Job, at most one "
                        f"retraining in flight per model version")
    return name


def _candidate(jobs: list[Any], since: float | None, *, skip_failed: bool = False) -> Any:
    """The Job to adopt among `jobs` (one model version's retraining Jobs), or None: the newest of those in
    flight or created at or after `since` (None: in flight only). One whose creation time cannot be read
    counts as recent (never two retrainings for want of a timestamp). `skip_failed`: none that failed."""
    def recent(j: Any) -> bool:
        at = _created(j)
        return since is not None and (at is None or at >= since)

    live = [j for j in jobs if not _meta(j, "deletion_timestamp", "deletionTimestamp")
            and (not _finished(j) or recent(j)) and not (skip_failed and failed_condition(j) is not None)]
    return max(live, key=lambda j: (_created(j) or float("inf"), _name(j)), default=None)


def failed_condition(job: Any) -> str | None:
    """A Job's Failed condition that is True, as "<reason>: <message>" (either may be absent; "Failed" when both
    are), or None when the Job has not failed (running, Complete). `job`: the client's V1Job or a dict."""
    status = _field(job, "status")
    for c in (_field(status, "conditions") if status is not None else None) or []:
        if str(_field(c, "type")) == "Failed" and str(_field(c, "status")) == "True":
            reason, message = _field(c, "reason"), _field(c, "message")
            return ": ".join(str(x)[:300] for x in (reason, message) if x) or "Failed"
    return None


def _finished(job: Any) -> bool:
    """Whether a Job has ended: a Complete or Failed condition that is True."""
    status = _field(job, "status")
    conditions = _field(status, "conditions") if status is not None else None
    return any(str(_field(c, "type")) in ("Complete", "Failed") and str(_field(c, "status")) == "True"
               for c in conditions or [])


def _created(job: Any) -> float | None:
    """A Job's creationTimestamp as Unix seconds, or None."""
    import datetime as dt

    at = _meta(job, "creation_timestamp", "creationTimestamp")
    if isinstance(at, str):
        try:
            at = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(at, dt.datetime):
        return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()
    return None


def _iso(t: float | None) -> str:
    import datetime as dt

    return "?" if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(job: Any) -> int:
    """A Job's retraining number: its label, else (a Job of an older canary) its episode label, else its
    name's `-e<N>`; 0 when none."""
    labels = _meta(job, "labels")
    for text in (labels.get(RETRAINING), labels.get("modelcanary.dev/drift-episode")):
        if isinstance(text, str) and text.isdigit():
            return int(text)
    m = re.search(r"-e([0-9]+)(-[0-9a-f]{6})?$", _name(job))
    return int(m.group(1)) if m else 0


def _of_version(job: Any, model: str, version: str) -> bool:
    """Whether `job` is a retraining of this exact model version: its labels say so (`label_value`s), and so do
    its annotations when it has them. Label values are lossy (any other character becomes `-`, cut at 63):
    `fraud/model` and `fraud-model`, or `1.2+cu121` and `1.2-cu121`, have the same, and by the labels alone one
    model's drift adopted the other's retraining as its own (decision 179). A Job of an older canary has no such
    annotations: its labels alone."""
    labels, notes = _meta(job, "labels"), _meta(job, "annotations")
    return (labels.get(MODEL) == label_value(model) and labels.get(VERSION) == label_value(version)
            and notes.get(MODEL, model) == model and notes.get(VERSION, version) == version)


def _field(obj: Any, name: str, camel: str | None = None) -> Any:
    """A field of a kubernetes client model (snake_case attribute) or of a plain dict (camelCase key)."""
    if isinstance(obj, Mapping):
        return obj.get(camel or name)
    return getattr(obj, name, None)


def _meta(job: Any, name: str, camel: str | None = None) -> Any:
    value = _field(_field(job, "metadata"), name, camel)
    return dict(value or {}) if name in ("labels", "annotations") else value


def _name(job: Any) -> str:
    return str(_meta(job, "name") or "")


def _start_of(job: Any) -> str:
    """The episode start a Job was created for: its annotation, or the `at` of its evidence (Jobs
    created before the annotation existed)."""
    annotations = _meta(job, "annotations")
    if annotations.get(START):
        return str(annotations[START])
    text = annotations.get("modelcanary.dev/drift-evidence", "")
    try:
        return episode_start(json.loads(text))
    except (TypeError, ValueError, AttributeError):
        m = re.match(r'\{"at":(-?[0-9.eE+-]+)', text or "")
        return repr(float(m.group(1))) if m else ""


def check_job_template(batch: Any, template: Mapping[str, Any], *, source: str, namespace: str,
                       versions: list[tuple[str, str]]) -> str:
    """Ask the API server, before any drift is read, whether it would create the retraining Job of each
    (model, version) in `namespace`: the list `create_job` starts with, then a create with `dryRun=All`
    (checked as a create is, stored nowhere). A template the server refuses (422: an invalid field; 403: RBAC
    without list or create on jobs; 400, 404: no such namespace) was found only when an episode opened, weeks
    later, and retried there for ever while the drift went on untrained: ConfigError naming `source` (the
    template's file), the Job and the server's words. A 409 (a Job of that name exists) is an answer about
    the name, which `create_job` moves past. Returns "" when accepted, else why it could not be checked (no
    answer, 5xx, 429, or a 403 of a full ResourceQuota (`over_quota`: the quota may be free when an episode
    opens, and the episode's create retries): the server says nothing of the template then; the caller
    warns and goes on)."""
    def refused(exc: BaseException) -> bool:
        status = getattr(exc, "status", None)
        return isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429) \
            and not over_quota(exc)

    model, version = versions[0] if versions else ("model", "v1")
    try:
        batch.list_namespaced_job(namespace, label_selector=f"{MODEL}={label_value(model)}", limit=1,
                                  _request_timeout=5)
    except Exception as exc:
        if refused(exc):
            raise ConfigError(f"{source}: the retraining Jobs of namespace {namespace} cannot be listed "
                              f"({brief(exc)}); each drift episode lists them before it creates one (RBAC: list "
                              f"on jobs), so no retraining could start") from None
        return f"the retraining Jobs of namespace {namespace} could not be listed ({brief(exc)})"
    for model, version in versions or [(model, version)]:
        job = retrain_job(template, model=model, version=version, episode=1, evidence={"at": 0.0}, number=1)
        name = job["metadata"]["name"]
        try:
            batch.create_namespaced_job(namespace, job, dry_run="All", _request_timeout=5)
        except Exception as exc:
            if getattr(exc, "status", None) == 409:
                continue
            if refused(exc):
                raise ConfigError(f"{source}: the API server refuses the retraining Job of {model} {version} "
                                  f"(Job {namespace}/{name}, a create with dryRun=All: {brief(exc)}); a drift "
                                  f"episode would find it refused and no retraining would start") from None
            return f"Job {namespace}/{name} could not be checked with dryRun=All ({brief(exc)})"
    return ""


def over_quota(exc: BaseException) -> bool:
    """Whether an API error is a ResourceQuota's refusal (403 Forbidden whose Status message says
    `exceeded quota: <name>, requested: ..., used: ..., limited: ...`, as the quota admission plugin answers
    a create over `count/jobs.batch` or any other limit): a refusal of the moment, not of the request; the
    other 403s (RBAC: `cannot create resource "jobs"`, a webhook's denial) are not. Reads the Status object
    in the error's body (`message`, and `details.causes[].message`); False when there is none."""
    if getattr(exc, "status", None) != 403:
        return False
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return False
    if not isinstance(body, dict):
        return False
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    causes = details.get("causes") if isinstance(details.get("causes"), list) else []
    said = [body.get("message")] + [c.get("message") for c in causes if isinstance(c, dict)]
    return any(isinstance(m, str) and "exceeded quota:" in m for m in said)


# a Job's object is at most 1.5 MiB in etcd (its default --max-request-bytes): a template past 2 MiB is none
JOB_MAX_BYTES = 2 << 20


def load_job_template(path: Path) -> dict[str, Any]:
    """A batch/v1 Job from YAML. ConfigError naming the file and field when it is not one. Read as a policy is
    (`policy_yaml.load_text`): `value: yes` was sent as true, `2024-01-01` as a date the Job's JSON could not
    hold, a duplicate key kept its last value, silently (decision 770); a file mode's `0400` is octal, as kubectl
    reads it (791)."""
    from canary.policy_yaml import load_text, too_big

    try:
        raw = load_text(read_input(path, JOB_MAX_BYTES), file=str(path), max_bytes=JOB_MAX_BYTES, manifest=True)
    except OSError as exc:  # its words alone: read without blocking, a directory's error names the fd, not the file
        raise ConfigError(f"{path}: cannot read the Job template: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # a binary file given: its traceback was all that was said (decision 746)
        raise ConfigError(f"{path}: the Job template is not UTF-8 text (byte {exc.start}): give the Job's YAML") \
            from None
    except ConfigError as exc:  # load_text's PolicyError: "not valid YAML: line 3, column 5: duplicate key 'a'"
        raise ConfigError(f"{path}: cannot read the Job template: {exc.detail}") from None
    problem = too_big(raw)  # an alias bomb composes few nodes, and expands in the Job's JSON body
    if problem:
        raise ConfigError(f"{path}: cannot read the Job template: too large: {problem}")
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
    policy = pod.get("restartPolicy", "Always")  # a pod's default; a Job takes only these two
    if policy not in ("Never", "OnFailure"):
        given = f"is {policy!r}" if "restartPolicy" in pod else "is not given (a pod's default is Always)"
        raise ConfigError(f"{path}: spec.template.spec.restartPolicy {given}: the API server creates a Job only "
                          f"with Never or OnFailure, so every retraining would be refused; set one of them")
    return raw


def job_name(prefix: str, *, model: str, version: str, episode: int) -> str:
    """`<prefix>-<model>-<version>-e<episode>`, a DNS-1123 name of at most 63 characters. When it
    would be longer (or when lowercasing and replacing characters could make two versions alike,
    e.g. v2.1 and v2-1), the middle is shortened and a hash of the exact model and version
    keeps it unique; the number is always kept."""
    clean = lambda t: re.sub(r"[^a-z0-9-]+", "-", t.lower()).strip("-")  # noqa: E731
    tail = f"-e{episode}"
    body = clean(f"{prefix.rstrip('-')}-{model}-{version}")
    exact = f"{prefix.rstrip('-')}-{model}-{version}" == body
    if exact and len(body) + len(tail) <= 63:
        return body + tail
    digest = hashlib.sha256(f"{model}\0{version}".encode()).hexdigest()[:8]
    return f"{body[:63 - len(tail) - 9].rstrip('-')}-{digest}{tail}"


def event_prefix(model: str) -> str:
    """The `generateName` of a model's drift Events: `<model>-drift-`, the model's name as a DNS-1123 subdomain
    (an Event's name must be one; the API server adds 5 characters). A Triton model name is often none
    (`densenet_onnx`, `Rec_Model`): its every Event was refused 422 Invalid, `drift.event_failed`, and no
    DriftDetected reached the cluster (decision 530). Lowercased, each run of other characters one "-", at most
    200 characters; the Events name the model exactly in their message and involvedObject."""
    clean = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:200].rstrip("-")
    return f"{clean or 'model'}-drift-"

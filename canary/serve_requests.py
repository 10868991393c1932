"""The requests `canary serve` accepts, validated field by field into an `Ask`.

Why a module of its own: every request comes from another system's template (an Argo
`AnalysisTemplate`, a Flagger `Canary`), so a typo there must come back as a 400 that names
the field, never as a look at the wrong series or a crash. Shapes:

Argo Rollouts, `web` metric provider: GET with a query string, or POST with `jsonBody`
(an object of strings), the same names either way:

    namespace      the Rollout's namespace (DNS label)                      required
    rollout        the Rollout's name (DNS subdomain)                       required
    model          the model name in the metrics                             required
    stableVersion  the stable arm's value of the policy's arm label          required
    canaryVersion  the canary arm's value                                    required
    policy         a policy name the server loaded                           required with several
    revision       what identifies this release (default: canaryVersion;    optional
                   1-63 of A-Z a-z 0-9 - _ ., as a label value)
    step           the rollout step (index or weight): a new one opens a window   optional

Flagger webhooks (POST), the payload Flagger documents and sends (pkg/controller/webhook.go):

    {"name": "<canary>", "namespace": "<ns>", "phase": "Progressing", "checksum": "<hash>",
     "metadata": {"model": ..., "stableVersion": ..., "canaryVersion": ..., "policy": ...,
                  "tritonCanary": "host:port", "tritonStable": "host:port"}}

`metadata` is the webhook's own map of strings; `tritonCanary`/`tritonStable` only matter to
`pre-rollout`. The checksum (Flagger's hash of the target's spec) is the revision.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from canary.errors import ConfigError
from canary.model import check_version

MAX_BODY = 64 * 1024
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}", re.ASCII)
_PRINTABLE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?", re.ASCII)
# a revision names state the service keeps: a label value's characters, no '/', nothing a path could use
_REVISION = "1-63 of A-Z a-z 0-9 - _ . starting with a letter or digit"
ARGO_FIELDS = ("namespace", "rollout", "model", "stableVersion", "canaryVersion", "policy", "revision", "step")
FLAGGER_FIELDS = ("name", "namespace", "phase", "checksum", "metadata")
FLAGGER_METADATA = ("model", "stableVersion", "canaryVersion", "policy", "tritonCanary", "tritonStable")


class BadRequest(Exception):
    """A request we refuse: HTTP `status`, the `field` at fault ("" for the whole body), why."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class Ask:
    """What a request asks about: one rollout revision, measured with one policy."""

    integration: str  # "argo" | "flagger"
    namespace: str
    name: str  # the Rollout's or the Canary's name
    revision: str
    model: str
    stable_version: str
    canary_version: str
    policy: str = ""  # "" = the server's only policy
    step: str = ""
    phase: str = ""  # Flagger's phase, informational
    ignored: tuple[str, ...] = ()  # top-level fields of a Flagger payload this service does not know (ignored)
    triton_canary: str = ""
    triton_stable: str = ""

    @property
    def key(self) -> str:
        return f"{self.integration}/{self.namespace}/{self.name}"


def read_json(body: bytes, content_type: str | None) -> Any:
    """The body as JSON; BadRequest (415 for another content type, 400 for bad JSON)."""
    if content_type and content_type.split(";", 1)[0].strip().lower() not in ("application/json", ""):
        raise BadRequest("Content-Type", f"must be application/json, got {content_type[:80]!r}", 415)
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_once)
    except _Twice as exc:  # as in a query string: which one a proxy in front read is not ours to guess
        raise BadRequest(str(exc), "given more than once") from None
    except UnicodeDecodeError as exc:
        raise BadRequest("", f"the body is not UTF-8 (byte {exc.start})") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise BadRequest("", f"the body is not valid JSON: {str(exc)[:160]}") from None


class _Twice(Exception):
    """A JSON object names one field twice (the message is the field's name)."""


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a name comes twice: `json.loads` keeps the last, while an admission
    policy or a proxy in front may have read the first ({"namespace": "ml", "namespace": "prod"})."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Twice(ascii(k)[1:-1][:100])
        out[k] = v
    return out


def query_fields(query: str) -> dict[str, str]:
    """A query string as {name: value}; a name given twice is refused."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=32)
    except ValueError as exc:
        raise BadRequest("", f"the query string is malformed: {str(exc)[:120]}") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise BadRequest(k, "given more than once")
        out[k] = v
    return out


def _known(raw: dict[str, Any], allowed: tuple[str, ...], where: str = "") -> None:
    for k in raw:
        if k not in allowed:
            raise BadRequest(f"{where}{k}", f"unknown field (typo?); known: {', '.join(allowed)}")


def _text(raw: dict[str, Any], name: str, *, where: str = "", required: bool = True, pattern: re.Pattern[str] = _PRINTABLE,
          what: str = "printable ASCII, 1-253 characters", limit: int = 253) -> str:
    field = f"{where}{name}"
    if name not in raw or raw[name] == "":
        if required:
            raise BadRequest(field, "missing")
        return ""
    v = raw[name]
    if not isinstance(v, str):
        raise BadRequest(field, f"must be a string, got {json_type(v)}")
    if len(v) > limit or not pattern.fullmatch(v):
        raise BadRequest(field, f"must be {what}, got {v[:80]!r}")
    return v


def json_type(v: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("null", "a number", "an array"...): the caller wrote JSON (or
    YAML an Argo template or a Flagger Canary turned into it), and "got NoneType" named Python's."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"a number ({v!r:.40})"
    if isinstance(v, str):
        return "a string"
    return "an array" if isinstance(v, list) else "an object" if isinstance(v, dict) else type(v).__name__


def _version(raw: dict[str, Any], name: str, where: str = "") -> str:
    v = _text(raw, name, where=where)
    try:
        check_version(v, name)
    except ConfigError as exc:
        raise BadRequest(f"{where}{name}", str(exc)) from None
    return v


def _distinct(stable: str, canary: str, field: str) -> None:
    """Both arms of one version would compare a series with itself and pass without any evidence
    about a canary (a template that sets both args from the same hash): refused, as promote does."""
    if stable == canary:
        raise BadRequest(field, f"the canary version {canary!r} is the stable version: the two arms must be "
                                "different versions (check the template's args)")


def argo_ask(raw: Any) -> Ask:
    """An Argo web-metric request (query fields, or the POSTed jsonBody) -> Ask."""
    if not isinstance(raw, dict):
        raise BadRequest("", "the body must be a JSON object of strings (the metric's jsonBody)")
    _known(raw, ARGO_FIELDS)
    namespace = _text(raw, "namespace", pattern=_DNS_LABEL, what="a DNS label (Kubernetes namespace)", limit=63)
    name = _text(raw, "rollout", pattern=_DNS_SUBDOMAIN, what="a Kubernetes object name")
    model, stable, canary = _text(raw, "model"), _version(raw, "stableVersion"), _version(raw, "canaryVersion")
    _distinct(stable, canary, "canaryVersion")
    return Ask(integration="argo", namespace=namespace, name=name, model=model, stable_version=stable,
               canary_version=canary,
               policy=_text(raw, "policy", required=False, pattern=_NAME, what="a policy name", limit=63),
               revision=_text(raw, "revision", required=False, pattern=_NAME, limit=63, what=_REVISION) or canary,
               step=_text(raw, "step", required=False, limit=63, what="printable ASCII, 1-63 characters"))


def flagger_ask(raw: Any) -> Ask:
    """A Flagger webhook payload -> Ask (`tritonCanary` is checked by `pre-rollout`, with the policy)."""
    if not isinstance(raw, dict):
        raise BadRequest("", "the body must be Flagger's webhook payload, a JSON object")
    # The payload's own fields are Flagger's, not the user's (no typo to catch): a field a Flagger release adds
    # (`checksum` came in 1.34) is ignored, where a 400 refused every webhook of every Canary at the upgrade.
    # `metadata` is the user's, written in the Canary: an unknown name there is a typo, refused.
    ignored = tuple(sorted(ascii(k)[1:-1][:60] for k in raw if k not in FLAGGER_FIELDS))[:8]
    meta = raw.get("metadata")
    if meta is None:
        raise BadRequest("metadata", "missing: set the webhook's metadata (model, stableVersion, canaryVersion, "
                                     "policy) in the Canary")
    if not isinstance(meta, dict):  # present and not the webhook's map of strings: "missing" sent people looking
        raise BadRequest("metadata", f"must be an object of strings (the webhook's metadata: model, stableVersion, "
                                     f"canaryVersion, policy), got {json_type(meta)}")
    _known(meta, FLAGGER_METADATA, "metadata.")
    m = "metadata."
    _distinct(_version(meta, "stableVersion", m), _version(meta, "canaryVersion", m), "metadata.canaryVersion")
    return Ask(integration="flagger",
               namespace=_text(raw, "namespace", pattern=_DNS_LABEL, what="a DNS label (Kubernetes namespace)",
                               limit=63),
               name=_text(raw, "name", pattern=_DNS_SUBDOMAIN, what="a Kubernetes object name"),
               revision=_text(raw, "checksum", pattern=_NAME, limit=63, what=f"Flagger's checksum, {_REVISION}"),
               phase=_text(raw, "phase", required=False, pattern=_NAME, what="a Flagger phase", limit=63),
               ignored=ignored,
               model=_text(meta, "model", where=m), stable_version=_version(meta, "stableVersion", m),
               canary_version=_version(meta, "canaryVersion", m),
               policy=_text(meta, "policy", where=m, required=False, pattern=_NAME, what="a policy name", limit=63),
               triton_canary=_text(meta, "tritonCanary", where=m, required=False),
               triton_stable=_text(meta, "tritonStable", where=m, required=False))

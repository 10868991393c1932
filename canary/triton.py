"""Triton gates: is the canary server fit to receive traffic, and is it still up?

Metrics judge a canary only once it has traffic. Some failures need no
statistics and must be caught before the first user request: the server is not
ready, the new model changed its tensor contract (a renamed input, FP64 where
clients read FP32, a lower max batch size), or it loads but answers NaN. The
preflight asks the canary Triton directly (tritonclient, HTTP or gRPC), compares
its model metadata and config with the stable's, and runs warm-up inferences.
During the rollout a cheap :class:`ReadinessProbe` catches a crashed canary in
about a second, long before an error-rate window would.

Every tritonclient failure is wrapped (``raise GateError(...) from exc``). The
warm-up sample file format (``gates.triton.sample_file``) is in docs/triton.md
and :func:`load_samples`; without a file, inputs are generated from the metadata.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Collection
from typing import Any, Literal

import numpy as np

from canary.errors import ConfigError, GateError
from canary.policy import TritonGate, read_samples
from canary.redact import redact_url


# the schemes a Triton URL may carry, per protocol; "https" is TLS on either (gRPC's `ssl=True`)
_SCHEMES = {"http": ("", "http", "https"), "grpc": ("", "grpc", "http", "https")}


def check_url(url: str, protocol: str, *, field: str = "url") -> tuple[str, bool]:
    """(host:port, TLS) of a Triton URL; ConfigError naming `field` when tritonclient would not reach
    what was meant. tritonclient takes host:port only: a path or query was sent to the wrong place
    (a path prefix answered "not live", read as a broken canary), `https://` over gRPC was dropped
    (plaintext, silently), and a URL without a port went to 80 or 443."""
    text = url if isinstance(url, str) else ""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text

    def bad(message: str) -> ConfigError:
        return ConfigError.at(field, f"{redact_url(url)!r}: {message}")  # user:pass@ and ?token= not shown

    if not rest or any(c.isspace() for c in text):
        raise bad("expected host:port or http(s)://host:port")
    if scheme.lower() not in _SCHEMES.get(protocol, ()):
        raise bad(f"scheme {scheme!r} does not go with gates.triton.protocol {protocol} "
                  f"(use {' or '.join(s + '://' for s in _SCHEMES.get(protocol, ()) if s)} or plain host:port)")
    try:
        parts = urllib.parse.urlsplit("//" + rest)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in rest or "#" in rest:
        raise bad(f"Triton's API is at the server's root; give host:port without a path or query "
                  f"(found {redact_url(rest[len(parts.netloc):])!r})")
    if parts.username is not None or not parts.hostname:
        raise bad("expected host:port (no user, a host name)")
    if port is None or port == 0:
        raise bad(f"no port: give Triton's {protocol.upper()} port (Triton's defaults: HTTP 8000, "
                  f"gRPC 8001)")
    return parts.netloc, scheme.lower() == "https"


@dataclass(frozen=True)
class TritonEndpoint:
    """One Triton server and the model on it; ``url`` is host:port or http(s)://host:port (`check_url`).
    ``role`` ("canary", "stable") opens every message about it: on-call must see which server failed."""

    url: str
    model: str
    version: str = ""  # Triton model version; "" = the server's policy (latest ready)
    protocol: Literal["http", "grpc"] = "http"
    role: str = field(default="", compare=False)
    source: str = field(default="", compare=False)  # the field the URL came from ("--triton-canary"), for messages

    def __post_init__(self) -> None:
        check_url(self.url, self.protocol, field=f"{self.role} Triton URL".strip())

    @property
    def hostport(self) -> str:
        return check_url(self.url, self.protocol)[0]

    @property
    def tls(self) -> bool:
        return check_url(self.url, self.protocol)[1]

    @property
    def who(self) -> str:
        """How messages name it: "canary Triton rec-model@10.0.0.7:8000"."""
        return f"{self.role} Triton {self}" if self.role else f"Triton {self}"

    def __str__(self) -> str:
        v = f":{self.version}" if self.version else ""
        return f"{self.model}{v}@{self.hostport}"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # as in model metadata: batch dim (-1) included when batching
    optional: bool = False


@dataclass(frozen=True)
class Signature:
    """The contract clients see: tensors and the largest batch."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int


@dataclass(frozen=True)
class PreflightReport:
    canary: str
    stable: str | None
    signature: Signature
    warmup_requests: int
    sample_source: str  # "generated" or "file:<path>"
    warm_p50_ms: float
    warm_max_ms: float
    checks: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("warm_p50_ms", "warm_max_ms"):  # NaN (no warm-up) is not JSON
            d[k] = d[k] if d[k] == d[k] else None
        return d


def _module(protocol: str) -> Any:
    """tritonclient's module for the protocol; ConfigError naming the extra when it is not installed
    (it is the optional `triton` extra: only the Triton gates need it)."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
    except ImportError as exc:
        raise ConfigError(f"gates.triton ({protocol}) needs tritonclient, which is not installed ({exc}): "
                          f"pip install 'modelcanary[triton]'") from None
    return mod


def require_client(protocol: str) -> None:
    """Raise ConfigError now, before any traffic moves, when tritonclient cannot be imported."""
    _module(protocol)


# seconds each call of the pre-traffic gate may take (HTTP: connect and read; gRPC: the call's deadline)
CALL_TIMEOUT_S = 5.0


def connect(ep: TritonEndpoint, *, timeout: float = CALL_TIMEOUT_S) -> Any:
    """A tritonclient client for the endpoint (HTTP or gRPC). Every call on it must be bounded: HTTP by
    the client's own timeouts, gRPC by `client_timeout=` on each call (`_timeout`); gRPC has no client-wide
    deadline, and a canary whose model hangs held the gate (and a controller worker) forever."""
    mod = _module(ep.protocol)
    try:
        if ep.protocol == "grpc":
            return mod.InferenceServerClient(url=ep.hostport, ssl=ep.tls)
        return mod.InferenceServerClient(
            url=ep.hostport, ssl=ep.tls,
            connection_timeout=timeout, network_timeout=timeout,
        )
    except Exception as exc:  # tritonclient raises plain exceptions for bad URLs
        raise GateError(f"{ep.who}: cannot create a Triton {ep.protocol} client for {ep.url}: {exc}") from exc


def _timeout(ep: TritonEndpoint, timeout: float) -> dict[str, float]:
    """The per-call deadline gRPC needs (HTTP's is the client's)."""
    return {"client_timeout": timeout} if ep.protocol == "grpc" else {}


def signature(client: Any, ep: TritonEndpoint, *, timeout: float = CALL_TIMEOUT_S) -> Signature:
    """Tensors from the metadata, max_batch_size and optional flags from the config. An answer that is
    not a model's metadata (a proxy's or another service's JSON) is a GateError too, never a KeyError."""
    try:
        if ep.protocol == "grpc":
            meta = client.get_model_metadata(ep.model, ep.version, as_json=True, **_timeout(ep, timeout))
            config = client.get_model_config(ep.model, ep.version, as_json=True,
                                             **_timeout(ep, timeout)).get("config", {})
        else:
            meta = client.get_model_metadata(ep.model, ep.version)
            config = client.get_model_config(ep.model, ep.version)
    except Exception as exc:
        raise GateError(f"{ep.who}: cannot read model metadata/config: {_msg(exc, timeout)}") from exc
    try:
        optional = {t["name"] for t in config.get("input", []) if t.get("optional")}

        def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]),
                           t["name"] in optional)
                for t in items
            )

        return Signature(specs(meta.get("inputs", [])), specs(meta.get("outputs", [])),
                         int(config.get("max_batch_size", 0) or 0))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise GateError(f"{ep.who}: the model metadata/config is not Triton's ({type(exc).__name__}: {exc}): "
                        f"{str(meta)[:160]}") from exc


def compare(stable: Signature, canary: Signature) -> list[str]:
    """Every incompatibility, one message each, naming the tensor. Empty = compatible.

    Inputs: the canary must accept whatever stable accepts (a dim is fixed to the
    same size or dynamic). Outputs: clients must read what they read before (a
    dim matches, or stable's is dynamic). Extra canary outputs are harmless;
    extra *required* canary inputs are not (clients do not send them), nor is an
    input stable takes as optional that the canary requires (clients leave it out).
    """
    problems: list[str] = []
    for kind, s_specs, c_specs in (("input", stable.inputs, canary.inputs), ("output", stable.outputs, canary.outputs)):
        c_by = {t.name: t for t in c_specs}
        for s in s_specs:
            c = c_by.get(s.name)
            if c is None:
                problems.append(f"{kind} '{s.name}': present on stable, missing on canary")
                continue
            if s.datatype != c.datatype:
                problems.append(f"{kind} '{s.name}': datatype {s.datatype} on stable, {c.datatype} on canary")
            if not _shape_ok(kind, s.shape, c.shape):
                problems.append(f"{kind} '{s.name}': shape {list(s.shape)} on stable, {list(c.shape)} on canary")
            if kind == "input" and s.optional and not c.optional:  # clients that leave it out are refused
                problems.append(f"input '{s.name}': optional on stable, required on canary")
    s_inputs = {t.name for t in stable.inputs}
    for c in canary.inputs:
        if c.name not in s_inputs and not c.optional:
            problems.append(f"input '{c.name}': required on canary, unknown to stable's clients")
    return problems + _rows_problems(stable, canary)


def _rows_problems(stable: Signature, canary: Signature) -> list[str]:
    """Requests of more rows than the canary takes. max_batch_size bounds the first dim only when the model
    batches; a model with max_batch_size 0 declares the first dim itself, and -1 there takes any number of
    rows. So a canary that stops batching with a dynamic first dim takes everything stable took (it was
    refused as "max_batch_size 64 on stable, 0 on canary (lower)"), and a batching canary after a stable that
    did not batch takes at most its max_batch_size rows of what clients sent as [-1, 8] (it passed). A
    canary without batching is held to stable's first dim by the shape rule."""
    if canary.max_batch_size <= 0:
        return []
    if stable.max_batch_size > 0:
        if canary.max_batch_size < stable.max_batch_size:
            return [f"max_batch_size {stable.max_batch_size} on stable, {canary.max_batch_size} on canary (lower)"]
        return []
    c_by = {t.name: t for t in canary.inputs}
    problems = []
    for s in stable.inputs:
        c = c_by.get(s.name)
        if c is None or not s.shape or len(s.shape) != len(c.shape):
            continue  # said by the rules above
        if s.shape[0] == -1 or s.shape[0] > canary.max_batch_size:
            rows = "any number of rows" if s.shape[0] == -1 else f"{s.shape[0]} rows"
            problems.append(f"input '{s.name}': stable takes {rows} (max_batch_size 0, shape {list(s.shape)}), "
                            f"the canary at most {canary.max_batch_size} (max_batch_size {canary.max_batch_size})")
    return problems


def _shape_ok(kind: str, stable: tuple[int, ...], canary: tuple[int, ...]) -> bool:
    if len(stable) != len(canary):
        return False
    if kind == "input":
        return all(c == s or c == -1 for s, c in zip(stable, canary))
    return all(c == s or s == -1 for s, c in zip(stable, canary))


def preflight(
    stable: TritonEndpoint | None, canary: TritonEndpoint, gate: TritonGate, *, base_dir: Path,
    samples: tuple[str, Any] | None = None, timeout: float = CALL_TIMEOUT_S,
    seen: dict[str, Signature] | None = None,
) -> PreflightReport:
    """All pre-traffic checks on the canary; raises GateError naming what failed (and which server:
    a stable that does not answer is not a broken canary). The warm-up inputs:
    `samples` (where they came from, the parsed sample JSON) when given (a CanaryRollout's, read from
    its policyRef ConfigMap), else `gate.sample_file` relative to `base_dir`, else generated.
    `timeout` bounds every call; `seen`, when given, receives the signatures read ("stable", "canary")."""
    checks: list[str] = []
    client = connect(canary, timeout=timeout)
    try:
        _require_ready(client, canary, timeout=timeout, stable=stable)
        checks.append("canary server live and ready, model ready")
        sig = signature(client, canary, timeout=timeout)
        stable_sig: Signature | None = None
        if stable is not None:
            stable_client = connect(stable, timeout=timeout)
            try:
                _require_ready(stable_client, stable, timeout=timeout)
                stable_sig = signature(stable_client, stable, timeout=timeout)
            finally:
                _close(stable_client)
            problems = compare(stable_sig, sig)
            if problems:
                raise GateError(f"canary {canary} is not compatible with stable {stable}: " + "; ".join(problems))
            if seen is not None:
                seen["stable"] = stable_sig
            checks.append("tensor names, datatypes, shapes and max_batch_size compatible with stable")
        requests, source = _warmup_inputs(sig, gate, base_dir, samples, stable_sig)
        excused: list[str] = []
        latencies = _warm_up(client, canary, sig, requests, gate, timeout=timeout,
                             stable=(stable, stable_sig) if stable is not None and stable_sig is not None else None,
                             excused=excused, given=source != "generated")
    finally:
        _close(client)
    if seen is not None:
        seen["canary"] = sig
    if latencies:
        checks.append(f"{len(latencies)} warm-up inferences, outputs finite"
                      + (f" and within {list(gate.output_range)}" if gate.output_range else "")
                      + (f"; {len(excused)} that left out optional inputs stable also takes as optional "
                         f"answered as stable answers them ({excused[0]}{', ...' if len(excused) > 1 else ''})"
                         if excused else ""))
    p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
    return PreflightReport(
        canary=str(canary), stable=str(stable) if stable else None, signature=sig,
        warmup_requests=len(latencies), sample_source=source,
        warm_p50_ms=round(p50, 3), warm_max_ms=round(max(latencies), 3) if latencies else float("nan"),
        checks=tuple(checks),
    )


def _require_ready(client: Any, ep: TritonEndpoint, *, timeout: float = CALL_TIMEOUT_S,
                   stable: TritonEndpoint | None = None) -> None:
    """`stable`, for the canary: a model name that neither server serves is the rollout's, not the canary's."""
    t = _timeout(ep, timeout)
    try:
        if not client.is_server_live(**t):
            raise GateError(f"{ep.who}: server is not live")
        if not client.is_server_ready(**t):
            raise GateError(f"{ep.who}: server is not ready")
        if not client.is_model_ready(ep.model, ep.version, **t):
            unknown = _unknown_model(client, ep, t)
            if unknown and stable is not None and _unknown_to(stable, timeout):
                what = f"{ep.model!r}" + (f" version {ep.version}" if ep.version else "")
                raise GateError(f"model name {what}: neither canary Triton {ep.hostport} nor stable Triton "
                                f"{stable.hostport} serves it ({_msg_of(unknown)}): the gates ask Triton for the "
                                f"rollout's model name; check that Triton serves the model under that name")
            raise GateError(f"{ep.who}: " + (unknown or
                                             f"model {ep.model!r} version {ep.version or '(default)'} is not ready"))
    except GateError:
        raise
    except Exception as exc:
        where = f" (check {ep.source}: {ep.url})" if ep.source else ""
        raise GateError(f"{ep.who}: server unreachable: {_msg(exc, timeout)}{_port_hint(ep, exc)}{where}") from exc


def _unknown_model(client: Any, ep: TritonEndpoint, t: dict[str, float]) -> str:
    """Why a model is not ready when Triton does not serve it at all (a name or version it never loaded):
    "not ready" sent on-call to the canary's load logs, and the same name is asked of stable. "" otherwise."""
    try:
        client.get_model_metadata(ep.model, ep.version, **t)
    except Exception as exc:
        text = _msg(exc)
        low = text.lower()
        # Triton says "unknown model" of a name it does not have ("... is not found") and also of one it has
        # and could not load or unloaded ("... has no available versions", "... is not at ready state"): the
        # latter is the model's own failure ("not ready": its load log says why), never a name to check
        if "unknown model" in low and not any(w in low for w in NOT_LOADED):
            what = f"model {ep.model!r}" + (f" version {ep.version}" if ep.version else "")
            return (f"this Triton serves no {what} ({text}): the gates ask Triton for the rollout's model name; "
                    f"check that the model is deployed under that name")
    return ""


NOT_LOADED = ("has no available versions", "not at ready state")  # Triton's words for a known, unloaded model


def _msg_of(unknown: str) -> str:
    """Triton's own words in an `_unknown_model` line."""
    return unknown.partition(" (")[2].rpartition("): the gates ask")[0]


def _unknown_to(ep: TritonEndpoint, timeout: float) -> bool:
    """Whether `ep`'s Triton answers that it serves no such model (False when it cannot be asked)."""
    client = None
    try:
        client = connect(ep, timeout=timeout)
        return bool(_unknown_model(client, ep, _timeout(ep, timeout)))
    except Exception:
        return False
    finally:
        _close(client)


def _port_hint(ep: TritonEndpoint, exc: BaseException) -> str:
    """The words tritonclient uses when the port speaks the other protocol (HTTP's 8000 given to gRPC,
    or the reverse), or TLS does not match (https:// to a plain server, a certificate not trusted): said
    plainly, the raw text ("[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol")
    reads like a broken server."""
    text = str(exc)
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        return (" (TLS: the server's certificate is not trusted here: point SSL_CERT_FILE (HTTP) or "
                "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC) at a PEM bundle that holds its CA, in the environment "
                "this runs in)")
    if ep.tls and any(w in upper for w in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF", "TSI_PROTOCOL_FAILURE",
                                           "VIOLATION OF PROTOCOL")):
        return (" (TLS: the URL says https:// and the server does not speak TLS there: for plain "
                f"{'HTTP' if ep.protocol == 'http' else 'gRPC'} give host:port without https://)")
    if ep.protocol == "http" and "Expected HTTP/" in text:
        return " (is this Triton's gRPC port? gates.triton.protocol is http)"
    if ep.protocol == "http" and not ep.tls and text.strip().lower() == "connection closed.":
        return " (does this port expect TLS? then give https://host:port)"
    if ep.protocol == "grpc" and ("Socket closed" in text or "http1" in text.lower()):
        return (" (is this Triton's HTTP port? gates.triton.protocol is grpc" +
                ("; or, if this port expects TLS, give https://host:port)" if not ep.tls else ")"))
    return ""


def _warmup_inputs(sig: Signature, gate: TritonGate, base_dir: Path, samples: tuple[str, Any] | None = None,
                   stable_sig: Signature | None = None) -> tuple[list[dict[str, np.ndarray]], str]:
    if samples is not None:
        return typed_samples(samples[1], sig, samples[0]), samples[0]
    if gate.sample_file:
        path = (base_dir / gate.sample_file).resolve()
        return load_samples(path, sig), f"file:{path}"
    # optional inputs are left out of requests 1-2, 5-6, ...: stable's clients do not send an input the canary
    # added (optional, or `compare` refused it), and a model that mishandles its absence answered them NaN
    omit = omittable_inputs(sig, stable_sig)
    required = any(t.name not in omit for t in sig.inputs)  # a request of no input at all is not one to send
    return [generate_inputs(sig, seed=i, rows=_warmup_rows(sig, i),
                            leave_out=omit if required and (i // 2) % 2 == 0 else frozenset())
            for i in range(max(1, min(gate.warmup_requests, 16)))], "generated"


def omittable_inputs(sig: Signature, stable_sig: Signature | None) -> frozenset[str]:
    """The canary's optional inputs that stable's clients may leave out: one stable lacks (the canary added it)
    or takes as optional too. An input stable requires is always sent (its clients send it: a canary that
    answers NaN without it fails no request anyone makes). Without stable's signature: every optional one."""
    if stable_sig is None:
        return frozenset(t.name for t in sig.inputs if t.optional)
    on_stable = {t.name: t for t in stable_sig.inputs}
    return frozenset(t.name for t in sig.inputs
                     if t.optional and (t.name not in on_stable or on_stable[t.name].optional))


# the rows of a generated batched warm-up request (requests 2 and 4), and the most values it holds per input
# (4 MB of FP32): warm-ups are answered into the canary's own metrics, which the first look judges, so they stay
# few and small (1,024 rows of made-up inputs would weigh on a prediction-distribution check of a good canary)
WARMUP_ROWS = 8
WARMUP_ELEMENTS = 1 << 20


def _warmup_rows(sig: Signature, i: int) -> int:
    """Rows of generated request `i`: up to WARMUP_ROWS for requests 2 and 4 when the model batches, else 1.
    Clients send batches and a model may go wrong past the first row only (NaN from a kernel or an engine
    built for batch 1); every request was 1 row, so such a model passed."""
    if sig.max_batch_size <= 0 or i not in (1, 3):
        return 1
    per_row = max((int(np.prod([d if d > 0 else 1 for d in t.shape[1:]], dtype=np.int64)) for t in sig.inputs),
                  default=1)
    return max(1, min(sig.max_batch_size, WARMUP_ROWS, WARMUP_ELEMENTS // max(per_row, 1)))


def load_samples(path: Path, sig: Signature) -> list[dict[str, np.ndarray]]:
    """Read a sample file into typed arrays, one dict per request.

    ``{"requests": [{"features": [[0.1, null, ...]]}, ...]}``: input name -> nested
    list of the full request shape (batch dim included when the model batches);
    ``null`` is NaN (a missing feature); datatypes come from the metadata.
    """
    try:
        raw = json.loads(read_samples(path))
    except (OSError, ValueError) as exc:
        raise GateError(f"warm-up sample file {path}: cannot read: {exc}") from exc
    return typed_samples(raw, sig, str(path))


def typed_samples(raw: Any, sig: Signature, path: str) -> list[dict[str, np.ndarray]]:
    """Parsed sample JSON (`load_samples`' format) into typed arrays; `path` names where it came from."""
    reqs = raw.get("requests") if isinstance(raw, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise GateError(f"warm-up sample file {path}: expected {{\"requests\": [{{input: nested list}}, ...]}}")
    types = {t.name: t.datatype for t in sig.inputs}
    out = []
    for i, req in enumerate(reqs):
        if not isinstance(req, dict):
            raise GateError(f"warm-up sample file {path}: requests[{i}] must be an object")
        arrays = {}
        for name, value in req.items():
            if name not in types:
                raise GateError(f"warm-up sample file {path}: requests[{i}]: the model has no input {name!r}")
            try:
                arrays[name] = _as_array(value, types[name])
            except (TypeError, ValueError, OverflowError) as exc:  # 10**30 for an INT64 input: OverflowError
                raise GateError(f"warm-up sample file {path}: requests[{i}].{name}: {exc}") from exc
        problem = _sample_problem(arrays, sig)
        if problem:
            raise GateError(f"warm-up sample file {path}: requests[{i}]{problem}")
        out.append(arrays)
    return out


def _sample_problem(arrays: dict[str, np.ndarray], sig: Signature) -> str:
    """What Triton would refuse in one sample request, said of the sample (its refusal read as a warm-up
    failure *of the canary*: "unexpected shape for input 'features'", recorded as a rollback of the model)."""
    for t in sig.inputs:
        if t.name not in arrays and not t.optional:
            return f": input {t.name!r} missing (the model requires it)"
    for t in sig.inputs:
        a = arrays.get(t.name)
        if a is None:
            continue
        if len(a.shape) != len(t.shape) or any(d != -1 and d != n for d, n in zip(t.shape, a.shape)):
            batch = " (the first dim is the batch: wrap one row in [...])" if len(a.shape) + 1 == len(t.shape) else ""
            return f".{t.name}: shape {list(a.shape)}, the model's input is {list(t.shape)}{batch}"
        if sig.max_batch_size > 0 and a.shape and a.shape[0] > sig.max_batch_size:
            return f".{t.name}: batch of {a.shape[0]} rows, the model's max_batch_size is {sig.max_batch_size}"
    return ""


def _as_array(value: Any, datatype: str) -> np.ndarray:
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    if datatype == "BYTES":
        return np.array(value, dtype=np.object_)
    if datatype in FLOATS:
        return np.array(_nulls_to_nan(value), dtype=dtype)
    return np.array(value, dtype=dtype)


# Triton's floating datatypes. BF16 is ml_dtypes.bfloat16 in numpy (tritonclient >= 2.6x), which is not a
# np.floating: a sample's null (a missing feature) was refused, "expected number, got NoneType"
FLOATS = frozenset({"FP16", "BF16", "FP32", "FP64"})


def _nulls_to_nan(value: Any) -> Any:
    if isinstance(value, list):
        return [_nulls_to_nan(v) for v in value]
    return float("nan") if value is None else value


def generate_inputs(sig: Signature, *, seed: int = 0, rows: int = 1,
                    leave_out: Collection[str] = ()) -> dict[str, np.ndarray]:
    """One request per input from the metadata: dynamic dims become 1, the batch dim `rows` (when the
    model batches); the optional inputs named in `leave_out` are not sent (a required one always is)."""
    from tritonclient.utils import triton_to_np_dtype

    rng = np.random.default_rng(seed)
    out = {}
    for t in sig.inputs:
        if t.optional and t.name in leave_out:
            continue
        shape = tuple(1 if d < 0 else d for d in t.shape)
        if sig.max_batch_size > 0 and shape:
            shape = (rows, *shape[1:])
        if t.datatype == "BYTES":
            out[t.name] = np.full(shape, b"warmup", dtype=np.object_)
        elif t.datatype == "BOOL":
            out[t.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            dtype = triton_to_np_dtype(t.datatype)
            values = rng.standard_normal(shape) if t.datatype in FLOATS else rng.integers(0, 10, shape)
            out[t.name] = values.astype(dtype)
    return out


def _infer(client: Any, ep: TritonEndpoint, sig: Signature, arrays: dict[str, np.ndarray],
           timeout: float) -> Any:
    mod = _module(ep.protocol)
    types = {t.name: t.datatype for t in sig.inputs}
    inputs = []
    for name, array in arrays.items():
        tensor = mod.InferInput(name, list(array.shape), types[name])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [mod.InferRequestedOutput(t.name) for t in sig.outputs]
    return client.infer(ep.model, inputs, model_version=ep.version, outputs=outputs, **_timeout(ep, timeout))


def _warm_up(client: Any, ep: TritonEndpoint, sig: Signature, requests: list[dict[str, np.ndarray]],
             gate: TritonGate, *, timeout: float = CALL_TIMEOUT_S,
             stable: tuple[TritonEndpoint, Signature] | None = None, excused: list[str] | None = None,
             given: bool = False) -> list[float]:
    """Send the warm-up requests to the canary and hold each answer to the declared shapes, finiteness and
    `gate.output_range`. Returns each request's latency in ms; raises GateError naming the request.
    `stable` (endpoint, signature): an answer that fails finiteness or the range in a request that left out
    optional inputs stable also takes as optional is sent to stable as well; when stable answers it no better,
    it is the model's way with that absence, not the canary's regression: it is appended to `excused`.
    `given`: the requests are the user's (a sample file): every request is sent as the user wrote it, to the
    canary and to stable, and nothing is added to it; the excuse's proof that the absence is the cause is the
    user's own requests that send what it left out (`_shown_by_the_samples`), never generated values."""
    latencies: list[float] = []
    well: dict[str, list[frozenset[str]]] = {}  # output -> the inputs of each request answered well for it
    pending: list[tuple[str, str, str, frozenset[str]]] = []  # (which, output, kind, the inputs it left out)
    for i in range(gate.warmup_requests):
        arrays = requests[i % len(requests)]
        which = _request_name(i, arrays, sig)
        started = time.perf_counter()
        try:
            result = _infer(client, ep, sig, arrays, timeout)
        except Exception as exc:
            raise GateError(f"{ep.who}: {which} failed: {_msg(exc, timeout)}") from exc
        latencies.append((time.perf_counter() - started) * 1000.0)
        for t in sig.outputs:
            try:
                value = result.as_numpy(t.name)
            except Exception as exc:  # a response that does not decode is a broken model too
                raise GateError(f"{ep.who}: {which}: output '{t.name}' unreadable: {_msg(exc)}") from exc
            _check_shape(ep, t, value, arrays, sig, which)
            failure, message = _output_problem(t.name, value, gate)
            if not failure:
                well.setdefault(t.name, []).append(frozenset(arrays))
                continue
            if failure == "missing" or _stable_answers_the_same(stable, sig, t.name, arrays, gate,
                                                                timeout) != failure:
                raise GateError(f"{ep.who}: {which}: {message}")
            # the same symptom on stable is no excuse unless the absence is its cause: the canary answers the
            # same request well with the inputs it left out (a canary NaN to every request, stable NaN without
            # the input, passed where every warm-up request left it out: decision 145)
            if given:  # the user's requests show it, at the end (a later one may send what this one left out)
                pending.append((which, t.name, failure, frozenset(x.name for x in sig.inputs if x.name not in arrays)))
                continue
            _with_what_was_left_out(client, ep, sig, arrays, t.name, gate, which=which, seed=i, timeout=timeout)
            if excused is not None:
                excused.append(f"{which}: output '{t.name}' {failure}")
    for which, output, failure, left_out in pending:
        said = _shown_by_the_samples(ep, requests, well.get(output, []), which=which, output=output,
                                     failure=failure, left_out=left_out)
        if excused is not None:
            excused.append(f"{which}: output '{output}' {failure}{said}")
    return latencies


def _shown_by_the_samples(ep: TritonEndpoint, requests: list[dict[str, np.ndarray]], well: list[frozenset[str]], *,
                          which: str, output: str, failure: str, left_out: frozenset[str]) -> str:
    """The excuse of a user's request `which` (stable fails `output` the same way): the sample file's requests
    that send every input it left out must include one the canary answered well. Raises GateError when none
    was; returns what the report adds when the file never sends them (the canary answers every request the
    user gave as stable does: the gate invents no values for inputs the user's clients leave out)."""
    named = ", ".join(map(repr, sorted(left_out)))
    if not any(left_out <= frozenset(r) for r in requests):
        return f" (the sample file never sends {named})"
    if not any(left_out <= inputs for inputs in well):
        raise GateError(f"{ep.who}: {which}: output '{output}' {failure}, as on stable, and no request of the "
                        f"sample file that sends {named} is answered well either")
    return ""


def _with_what_was_left_out(client: Any, ep: TritonEndpoint, sig: Signature, arrays: dict[str, np.ndarray],
                            output: str, gate: TritonGate, *, which: str, seed: int, timeout: float) -> None:
    """Send the canary request `which` again with the optional inputs it left out (generated, as many rows) and
    hold `output` to the same checks: raises GateError ("..., sent again with it: ...") when the canary answers
    it no better with them, so a failure excused by stable's own can only be the absence's (decision 145)."""
    rows = max((a.shape[0] for a in arrays.values() if a.ndim), default=1) if sig.max_batch_size > 0 else 1
    full = {**generate_inputs(sig, seed=seed, rows=rows), **arrays}
    left_out = [t.name for t in sig.inputs if t.name not in arrays]
    again = f"{which}, sent again with {'them' if len(left_out) > 1 else 'it'}"
    try:
        value = _infer(client, ep, sig, full, timeout).as_numpy(output)
    except Exception as exc:
        raise GateError(f"{ep.who}: {again} failed: {_msg(exc, timeout)}") from exc
    _check_output(ep, output, value, gate, again)


def _stable_answers_the_same(stable: tuple[TritonEndpoint, Signature] | None, sig: Signature, output: str,
                             arrays: dict[str, np.ndarray], gate: TritonGate, timeout: float) -> str:
    """How stable fails the same check on the same request (`_output_problem`'s kind: "is not finite"), when the
    request left out an optional input stable also takes as optional; "" otherwise (stable not given, answers
    well, refuses the request, lacks the output, or cannot be asked): the canary's failure stands."""
    if stable is None:
        return ""
    ep, stable_sig = stable
    on_stable = {t.name: t for t in stable_sig.inputs}
    shared_left_out = [t.name for t in sig.inputs
                       if t.optional and t.name not in arrays and t.name in on_stable and on_stable[t.name].optional]
    if not shared_left_out or output not in {t.name for t in stable_sig.outputs}:
        return ""
    sent = {name: a for name, a in arrays.items() if name in on_stable}
    client = None
    try:
        client = connect(ep, timeout=timeout)
        value = _infer(client, ep, stable_sig, sent, timeout).as_numpy(output)
    except Exception:
        return ""
    finally:
        _close(client)
    return _output_problem(output, value, gate)[0]


def _check_shape(ep: TritonEndpoint, spec: TensorSpec, value: Any, arrays: dict[str, np.ndarray], sig: Signature,
                 which: str) -> None:
    """An answer holds to the shape the model declares (compared with stable's), with one row per request
    row when it batches. Triton sends what some backends (Python's among them) hand it: a model answering
    [1, 2] where it declares [-1, 1] passed, and clients reading one score per row read garbage."""
    if value is None or not hasattr(value, "shape"):
        return  # said by _check_output
    shape, want = tuple(value.shape), list(spec.shape)
    if sig.max_batch_size > 0 and want:
        want[0] = max((a.shape[0] for a in arrays.values() if a.ndim), default=1)
    if len(shape) != len(want) or any(w != -1 and w != n for w, n in zip(want, shape)):
        rows = (" (its first dim is the request's rows)"
                if sig.max_batch_size > 0 and shape and want and shape[0] != want[0] else "")
        raise GateError(f"{ep.who}: {which}: output '{spec.name}' has shape {list(shape)}, the model declares "
                        f"{list(spec.shape)}: expected {want}{rows}")


def _request_name(i: int, arrays: dict[str, np.ndarray], sig: Signature) -> str:
    """"warm-up request 2 (8 rows, without optional input 'user')": the batch size when it is not 1 and the
    optional inputs left out, so that a failure seen in one such request only can be sent again as it was."""
    rows = max((a.shape[0] for a in arrays.values() if a.ndim), default=1) if sig.max_batch_size > 0 else 1
    left_out = [t.name for t in sig.inputs if t.optional and t.name not in arrays]
    said = ([f"{rows} rows"] if rows != 1 else []) + (
        [f"without optional input{'s' if len(left_out) > 1 else ''} {', '.join(map(repr, left_out))}"] if left_out else [])
    return f"warm-up request {i + 1}" + (f" ({', '.join(said)})" if said else "")


def _check_output(ep: TritonEndpoint, name: str, value: Any, gate: TritonGate, which: str) -> None:
    """Raise GateError naming `which` request when output `name` fails `_output_problem`."""
    kind, message = _output_problem(name, value, gate)
    if kind:
        raise GateError(f"{ep.who}: {which}: {message}")


def _output_problem(name: str, value: Any, gate: TritonGate) -> tuple[str, str]:
    """(kind, message) of what is wrong with output `name`'s `value`: kind "missing", "is not finite" or
    "outside [lo, hi]" (`gate.output_range`); ("", "") when nothing is. The kind is what a stable's answer
    to the same request is compared by (`_stable_answers_the_same`)."""
    if value is None:
        return "missing", f"output '{name}' missing from the response"
    if value.dtype == np.object_ or value.dtype == np.bool_:
        return "", ""
    if not np.all(np.isfinite(value)):
        return "is not finite", f"output '{name}' is not finite (NaN/inf): {value.ravel()[:4]}"
    if gate.output_range is not None:
        lo, hi = gate.output_range
        if value.size and (value.min() < lo or value.max() > hi):
            kind = f"outside [{lo}, {hi}]"
            return kind, f"output '{name}' {kind}: min {float(value.min()):g}, max {float(value.max()):g}"
    return "", ""


class ReadinessProbe:
    """Server ready AND model ready, within ~0.5 s; False on any failure, never raises.

    With `contract` (the stable's signature the gate compared against), the model's metadata and config
    are read again and held to the gate's rule (`compare`): a canary redeployed or reloaded with another
    model behind the same URL after the gate (a rolling update: it never stops answering ready) is not
    ready, naming the tensor, instead of serving clients a contract nobody checked."""

    def __init__(self, endpoint: TritonEndpoint, *, timeout: float = 0.5, contract: Signature | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.contract = contract
        self._client: Any = None
        self.last_failure = ""  # why the last probe failed, one line ("" after a ready answer)

    def ready(self) -> bool:
        """Callable from any thread (promote probes from a new one each time, the controller from its
        workers): tritonclient's HTTP client is gevent's and works only in the thread that made it,
        so over HTTP each probe makes and closes its own; the gRPC client is thread-safe and kept."""
        http = self.endpoint.protocol != "grpc"
        client = None
        try:
            client = connect(self.endpoint, timeout=self.timeout) if http or self._client is None else self._client
            if not http:
                self._client = client
            grpc = _timeout(self.endpoint, self.timeout)
            if not client.is_server_ready(**grpc):
                self.last_failure = "server not ready"
                return False
            if not client.is_model_ready(self.endpoint.model, self.endpoint.version, **grpc):
                self.last_failure = f"model {self.endpoint.model!r} not ready"
                return False
            if self.contract is not None:
                problems = compare(self.contract, signature(client, self.endpoint, timeout=self.timeout))
                if problems:
                    self.last_failure = ("model contract changed since the gate (no longer compatible with "
                                         "stable): " + "; ".join(problems))[:300]
                    return False
            self.last_failure = ""
            return True
        except Exception as exc:  # by contract: a probe answers, it does not raise
            if not http:
                _close(self._client)
                self._client = None  # a fresh connection next time (the old one may be dead)
            why = str(exc) if isinstance(exc, GateError) else _msg(exc, self.timeout)
            self.last_failure = f"unreachable: {why}"[:200]
            return False
        finally:
            if http:
                _close(client)

    def close(self) -> None:
        _close(self._client)
        self._client = None


def _close(client: Any) -> None:
    try:
        if client is not None:
            client.close()
    except Exception:
        pass


def _msg(exc: BaseException, timeout: float | None = None) -> str:
    """tritonclient's exceptions carry the server's message; keep it one line. A timeout says how long
    was waited ("timed out" alone reads like a network fault, not a server that does not answer)."""
    text = getattr(exc, "message", None)
    text = text() if callable(text) else text
    text = " ".join(str(text or exc).split())
    if timeout is not None and any(w in text.lower() for w in ("timed out", "deadline exceeded", "timeout")):
        text = f"no answer within {timeout:g}s ({text})"
    return text if len(text) <= 400 else f"{text[:200]} ... {text[-180:]}"  # server tracebacks are long

"""The kubeconfig and the files it names, read as every file a person names is: bounded, never a blocking open.

The kubernetes client opened them itself: each file of `$KUBECONFIG`'s list (only the first was checked, decision
771), a user's `tokenFile` (read whole: `/dev/zero` filled the memory), a cluster's `certificate-authority` and a
user's `client-certificate`/`client-key` (handed to urllib3 by path, opened again at each new connection): a FIFO
at any of them held the command, or the controller's thread, at the open, before any word. And the kubeconfig was
read with PyYAML's lax loader: a key written twice (two `server:` lines) was read as the last one, as kubectl 1.32
reads it too: refused here, naming the line, as which server was meant is not known (decision 880).
`install_checked_files` makes the client read them all here (decision 831):

* a kubeconfig is a regular file of at most `MAX_KUBECONFIG_BYTES`, read by `read_regular` and parsed by the
  strict loader (`policy_yaml.load_text`, a manifest's: a duplicate key, `yes`, a bomb refused, naming the line);
* a file it names is a regular file of at most `MAX_KUBE_FILE_BYTES`, read once, checked, and handed on as its
  `-data` field would be: a token as text, a certificate or key as a private copy of the bytes read
  (`filekind.private_copy`: a memfd, never on a disk), held while the process lives, one per field and file, so the
  client never opens the named path again; a file rotated on disk is read again at a renewal (`Renewal` tells it
  so), its new content put into the same copy (865), and a `certificate-authority` at a request every 5 minutes too,
  as client-go reads it (`follow_ca`, decision 913).

Every refusal is the client's ConfigException, naming the field and the file; `kube._load_file` says it as
"cannot use kubeconfig <file>: ...", exit 2 before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from typing import Any

from canary.filekind import private_copy, read_regular, replace_copy

MAX_KUBECONFIG_BYTES = 16 << 20  # a kubeconfig of a thousand clusters with their CA data is a few MiB
# its values: the strict loader's bound for a policy (10,000) refused a kubeconfig of 450 clusters; this one reads a
# kubeconfig of 4,000 clusters with their contexts and users (decision 866), in seconds of pure-Python parsing
MAX_KUBECONFIG_VALUES = 100_000
MAX_KUBE_FILE_BYTES = 1 << 20  # a CA bundle, a client certificate chain, a key, a token: KiBs

# the private copies made, one per field and file named (its path, the sha256 of its content): the client keeps
# the path it was given, and urllib3 opens it at each new connection, so a copy lives as long as the process; a
# file rotated on disk puts its new content at the same path (decision 865: a copy per content was a descriptor more
# per rotation, for ever, in a controller renewing an hourly certificate past its 1024 open files in six weeks)
_COPIES: dict[tuple[str, str], tuple[str, str]] = {}
_COPIES_LOCK = threading.Lock()


def read_named(path: str, field: str, limit: int = MAX_KUBE_FILE_BYTES) -> bytes:
    """The bytes of the file `field` of a kubeconfig names, or the client's ConfigException naming both."""
    from kubernetes.config.config_exception import ConfigException

    try:
        data = read_regular(path, limit)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigException(f"{field} {path!r}: cannot read: {why}") from None
    if len(data) > limit:
        raise ConfigException(f"{field} {path!r}: too large: more than {limit >> 20} MiB")
    return data


def held_copy(data: bytes, field: str, source: str = "") -> str:
    """A path of a private copy of `data`, the file `source` that `field` names, held while the process lives: one
    per field and file, its content replaced at once where the file's has changed (a rotated certificate), as the
    client read the file's own path anew at each new connection. `Renewal` sees the new content (its digest)."""
    digest = hashlib.sha256(data).hexdigest()
    key = (field, source)
    with _COPIES_LOCK:
        held = _COPIES.get(key)
        if held is None:
            path, _end = private_copy(data, f"kubeconfig-{field}")
            _COPIES[key] = (path, digest)
        elif held[1] != digest:
            path = held[0]
            replace_copy(path, data, f"kubeconfig-{field}")
            _COPIES[key] = (path, digest)
        return _COPIES[key][0]


# a kubeconfig's `certificate-authority` file is read again at most this often, at a request, as client-go reads it
# (1.36, ClientsAllowCARotation, beta and on: `transport/ca_rotation.go`, every 5 minutes): an API server's CA rotated
# on disk is taken without a restart or a renewal (decision 913)
CA_CHECK_EVERY_S = 300.0
_CA_CHECKED = [time.monotonic()]


def follow_ca(now: float | None = None) -> None:
    """Put a kubeconfig's `certificate-authority` file, where it changed, into its private copy (`held_copy`), at
    most once every `CA_CHECK_EVERY_S`: the connections made from then on verify the API server with it. A file
    that cannot be read or is no PEM CA bundle keeps the copy as it is (client-go's rule), said as
    `kube.ca_reload_failed` at each such check."""
    import ssl

    from kubernetes.config.config_exception import ConfigException

    from canary.ca_bundle import pem_bundle
    from canary.logs import get as get_logger

    now = time.monotonic() if now is None else now
    with _COPIES_LOCK:
        if now - _CA_CHECKED[0] < CA_CHECK_EVERY_S:
            return
        _CA_CHECKED[0] = now
        held = [(source, digest) for (field, source), (_path, digest) in _COPIES.items()
                if field == "certificate-authority" and source]
    for source, digest in held:
        try:
            data = read_named(source, "certificate-authority")
            if hashlib.sha256(data).hexdigest() == digest:
                continue
            pem_bundle(data)  # an empty file (a writer's truncation caught) is none: decision 952
        except (ConfigException, ssl.SSLError, ValueError) as exc:
            _ca_refused(source, exc)
            continue
        held_copy(data, "certificate-authority", source)
        get_logger(component="kube").info("kube.ca_reloaded", ca_file=source)


def _ca_refused(source: str, exc: BaseException) -> None:
    from canary.logs import get as get_logger

    get_logger(component="kube").error(
        "kube.ca_reload_failed", ca_file=source, error=str(exc) or type(exc).__name__,
        next="new connections to the API server verify with the CA loaded before; put a PEM CA bundle there "
             f"(it is read again within {CA_CHECK_EVERY_S:g} s)")


def _kept_ca(data: bytes, source: str) -> str:
    """The held copy's path where `source`, a `certificate-authority` file a copy is held for, now reads bytes that
    are no PEM bundle (caught mid-write, empty); "" otherwise. A load of the kubeconfig (a credentials renewal, 865;
    another client made in the process) put whatever it read into the copy every client shares: a renewal meeting
    the file mid-write left every new connection refused until `follow_ca`'s next look (decision 954)."""
    import ssl

    from canary.ca_bundle import pem_bundle

    with _COPIES_LOCK:
        held = _COPIES.get(("certificate-authority", source))
    if held is None or held[1] == hashlib.sha256(data).hexdigest():
        return ""
    try:
        pem_bundle(data)
    except (ssl.SSLError, ValueError) as exc:
        _ca_refused(source, exc)
        return held[0]
    return ""


def read_kubeconfig(path: str) -> Any:
    """A kubeconfig file's data, read bounded and parsed strictly; the client's ConfigException naming it."""
    from kubernetes.config.config_exception import ConfigException

    from canary.errors import PolicyError
    from canary.policy_yaml import load_text

    data = read_named(path, "kubeconfig", MAX_KUBECONFIG_BYTES)
    try:
        config = load_text(data, file=path, max_bytes=MAX_KUBECONFIG_BYTES, manifest=True,
                           max_values=MAX_KUBECONFIG_VALUES)
    except PolicyError as exc:
        raise ConfigException(f"kubeconfig {path!r}: {exc.detail}{_key_of_line(data, exc.detail)}") from None
    if config is None:
        raise ConfigException(f"kubeconfig {path!r}: empty")
    if not isinstance(config, dict):
        raise ConfigException(f"kubeconfig {path!r}: not a kubeconfig (a YAML mapping with clusters, contexts "
                              f"and users), but a {type(config).__name__}")
    for item in ("clusters", "contexts", "users"):
        entries = config.get(item) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "name" in e for e in entries):
            raise ConfigException(f"kubeconfig {path!r}: {item} is not a list of entries, each with a name")
    problem = fields_problem(config)
    if problem:
        raise ConfigException(f"kubeconfig {path!r}: {problem}")
    return config


def _key_of_line(data: bytes, said: str) -> str:
    """" (at `<key>:`)" naming the key of the line `said` ("line 4, column 31: 'yes': write true or false") points
    at, "" when there is none: the loader knows the line, not the field, and a kubeconfig's lines are not numbered
    where a person reads it (decision 866). The key alone: the line's value may be a token."""
    import re

    found = re.search(r"line (\d+), column (\d+)", said)
    lines = data.decode("utf-8", "replace").splitlines()
    if not found or not 0 < int(found.group(1)) <= len(lines):
        return ""
    before = lines[int(found.group(1)) - 1][:int(found.group(2)) - 1]  # the line up to the value refused
    key = re.search(r"""([A-Za-z][\w.-]*)['"]?\s*:\s*$""", before)
    return f" (the value of {key.group(1)})" if key else ""


# the fields the client reads, by entry (`clusters[].cluster`, `users[].user`, `contexts[].context`), and their kind:
# "text" a string without control characters (a NUL or a newline in a server or a token went on into a URL or a
# header), "data" base64 text, "flag" a YAML boolean, "list" a list of strings
_FIELDS = {
    "cluster": {"server": "text", "certificate-authority": "text", "certificate-authority-data": "data",
                "insecure-skip-tls-verify": "flag", "tls-server-name": "text", "proxy-url": "text"},
    "user": {"token": "text", "tokenFile": "text", "client-certificate": "text", "client-certificate-data": "data",
             "client-key": "text", "client-key-data": "data", "username": "text", "password": "text"},
    "context": {"cluster": "text", "user": "text", "namespace": "text"},
    "exec": {"command": "text", "apiVersion": "text", "args": "list"},
}


def fields_problem(config: dict[str, Any]) -> str:
    """What is wrong with the kind of a field the client reads ("" when nothing), naming it as
    `users[0] ('ci').user.token`: kubectl refuses each (a string where a boolean goes, a number where a string
    goes); the client took `insecure-skip-tls-verify: "no"` (quoted) as true, TLS unverified (decision 836), a
    `current-context` list as an object's repr, a NUL or a newline in a server or token into its URL or header."""
    if "current-context" in config and (bad := _kind_problem(config["current-context"], "text")):
        return f"current-context {bad}"
    for item, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        for i, entry in enumerate(config.get(item) or []):
            where = f"{item}[{i}] ({entry.get('name')!r})"
            if bad := _kind_problem(entry.get("name"), "text"):
                return f"{where}.name {bad}"
            body = entry.get(key)
            if body is None:
                continue
            if not isinstance(body, dict):
                return f"{where}.{key} is not a mapping"
            exec_ = body.get("exec") if key == "user" else None
            for field, value, kind in [*((f, body[f], k) for f, k in _FIELDS[key].items() if f in body),
                                       *((f"exec.{f}", exec_[f], k) for f, k in _FIELDS["exec"].items()
                                         if isinstance(exec_, dict) and f in exec_)]:
                if value is not None and (bad := _kind_problem(value, kind)):  # null: unset, as kubectl reads it
                    # (`kubectl config view` writes an exec plugin's `args: null`, `env: null`; decision 866)
                    return f"{where}.{key}.{field} {bad}"
            if exec_ is not None and not isinstance(exec_, dict):
                return f"{where}.{key}.exec is not a mapping"
            env = exec_.get("env") if isinstance(exec_, dict) else None
            if env is not None and not (isinstance(env, list) and all(
                    isinstance(e, dict) and not _kind_problem(e.get("name"), "text")
                    and not _kind_problem(e.get("value"), "text") for e in env)):
                return f"{where}.{key}.exec.env is not a list of {{name, value}} strings"
    return ""


def _kind_problem(value: Any, kind: str) -> str:
    if kind == "flag":
        return "" if isinstance(value, bool) else f"is {value!r}, not true or false (unquoted)"
    if kind == "list":
        if isinstance(value, list) and all(not _kind_problem(v, "text") for v in value):
            return ""
        return "is not a list of strings"
    if not isinstance(value, str):
        return f"is {type(value).__name__} {value!r}, not a string"
    if kind == "data":  # base64 broken over lines (a `|` block): kubectl's decoder skips the line breaks (decision 868)
        value = value.replace("\r", "").replace("\n", "")
    bad = next((i for i, ch in enumerate(value) if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        return f"holds a control character ({value[bad]!r} at {bad}): a NUL or a line break, never part of one"
    if kind == "data":
        import binascii

        try:
            binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return "is not base64 (a `-data` field holds the file's content base64-encoded: `base64 -w0 <file>`)"
    return ""


def missing(path: str) -> bool:
    """Whether `path` names nothing (ENOENT, a link to nothing included), as client-go's loader skips it."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):  # read, and refused naming the file, by `read_kubeconfig`
        return False
    return False


def install_checked_files() -> None:
    """Make the kubernetes config loader read the kubeconfig and the files it names here (see the module
    docstring). Idempotent."""
    from kubernetes.config import kube_config

    if getattr(kube_config.FileOrData, "canary_checked", False):
        return

    class CheckedFileOrData(kube_config.FileOrData):  # type: ignore[misc]
        canary_checked = True

        def __init__(self, obj: Any, file_key_name: Any, data_key_name: Any = None, **kw: Any) -> None:
            super().__init__(obj, file_key_name, data_key_name, **kw)
            self.field = file_key_name or data_key_name

        def _checked(self) -> bytes | None:
            """The named file's bytes, read and checked, when it is the file (not its `-data`) that is used."""
            if self._data or not self._file:
                return None
            return read_named(self._file, self.field)

        def as_file(self) -> Any:
            data = self._checked()
            if data is None:
                return super().as_file()
            kept = _kept_ca(data, self._file) if self.field == "certificate-authority" else ""
            return kept or held_copy(data, self.field, self._file)

        def as_data(self) -> Any:
            data = self._checked()
            if data is None:
                return super().as_data()
            if self._base64_file_content:
                return base64.standard_b64encode(data).decode("ascii")
            from kubernetes.config.config_exception import ConfigException

            try:  # a token: sent trimmed (`kube_credentials._trimmed`), as kubectl trims it
                token = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigException(f"{self.field} {self._file!r}: not UTF-8 text (byte {exc.start})") from None
            if bad := _kind_problem(token.strip(), "text"):  # a line break inside went into the header (836)
                raise ConfigException(f"{self.field} {self._file!r}: the token {bad}")
            return token

    class CheckedMerger(kube_config.KubeConfigMerger):  # type: ignore[misc]
        def load_config(self, path: str) -> None:
            # as the client merges the files of a list: the first file's settings and entries of each name win
            # (but `current-context`, the last one's), each entry keeps its file's path for its relative paths
            config = read_kubeconfig(path)
            if self.config_merged is None:
                first = {**config, "clusters": [], "contexts": [], "users": []}
                self.config_merged = kube_config.ConfigNode(path, first, path)
            for item in ("clusters", "contexts", "users"):
                self._merge(item, config.get(item) or [], path)
            if "current-context" in config:
                self.config_merged.value["current-context"] = config["current-context"]
            self.config_files[path] = config

        def _load_config_from_file_path(self, string: str) -> None:
            # a path that does not exist is skipped, as kubectl and the client skip it: a link to nothing too (a
            # `stat` ENOENT: client-go's os.IsNotExist); one that exists but is no file, or cannot be looked at (a
            # link loop, a component no directory), is refused naming it, as kubectl refuses it (decision 881)
            for path in string.split(kube_config.ENV_KUBECONFIG_PATH_SEPARATOR):
                if path and not missing(os.path.expanduser(path)):
                    self.paths.append(os.path.expanduser(path))
                    self.load_config(os.path.expanduser(path))
            self.config_saved = dict(self.config_files)

    kube_config.FileOrData = CheckedFileOrData
    kube_config.KubeConfigMerger = CheckedMerger


__all__ = ["MAX_KUBECONFIG_BYTES", "MAX_KUBE_FILE_BYTES", "follow_ca", "held_copy", "install_checked_files", "missing",
           "read_kubeconfig", "read_named"]

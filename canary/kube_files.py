"""The kubeconfig and the files it names, read as every file a person names is: bounded, never a blocking open.

The kubernetes client opened them itself: each file of `$KUBECONFIG`'s list (only the first was checked, decision
771), a user's `tokenFile` (read whole: `/dev/zero` filled the memory), a cluster's `certificate-authority` and a
user's `client-certificate`/`client-key` (handed to urllib3 by path, opened again at each new connection): a FIFO
at any of them held the command, or the controller's thread, at the open, before any word. And the kubeconfig was
read with PyYAML's lax loader: a key written twice (two `server:` lines) was read as the last one, where kubectl
refuses the file. `install_checked_files` makes the client read them all here (decision 831):

* a kubeconfig is a regular file of at most `MAX_KUBECONFIG_BYTES`, read by `read_regular` and parsed by the
  strict loader (`policy_yaml.load_text`, a manifest's: a duplicate key, `yes`, a bomb refused, naming the line);
* a file it names is a regular file of at most `MAX_KUBE_FILE_BYTES`, read once, checked, and handed on as its
  `-data` field would be: a token as text, a certificate or key as a private copy of the bytes read
  (`filekind.private_copy`: a memfd, never on a disk), held while the process lives, one per content, so the
  client never opens the named path again and a rotated file (new content) is a new copy (`Renewal` tells it so).

Every refusal is the client's ConfigException, naming the field and the file; `kube._load_file` says it as
"cannot use kubeconfig <file>: ...", exit 2 before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Any

from canary.filekind import private_copy, read_regular

MAX_KUBECONFIG_BYTES = 16 << 20  # a kubeconfig of a thousand clusters with their CA data is a few MiB
MAX_KUBE_FILE_BYTES = 1 << 20  # a CA bundle, a client certificate chain, a key, a token: KiBs

# the private copies made, by the sha256 of their content: the client keeps the path it was given, and urllib3
# opens it at each new connection, so a copy lives as long as the process
_COPIES: dict[str, str] = {}
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


def held_copy(data: bytes, field: str) -> str:
    """A path of a private copy of `data` (one per content, held while the process lives)."""
    digest = hashlib.sha256(data).hexdigest()
    with _COPIES_LOCK:
        if digest not in _COPIES:
            _COPIES[digest], _end = private_copy(data, f"kubeconfig-{field}")
        return _COPIES[digest]


def read_kubeconfig(path: str) -> Any:
    """A kubeconfig file's data, read bounded and parsed strictly; the client's ConfigException naming it."""
    from kubernetes.config.config_exception import ConfigException

    from canary.errors import PolicyError
    from canary.policy_yaml import load_text

    data = read_named(path, "kubeconfig", MAX_KUBECONFIG_BYTES)
    try:
        config = load_text(data, file=path, max_bytes=MAX_KUBECONFIG_BYTES, manifest=True)
    except PolicyError as exc:
        raise ConfigException(f"kubeconfig {path!r}: {exc.detail}") from None
    if config is None:
        raise ConfigException(f"kubeconfig {path!r} is empty")
    if not isinstance(config, dict):
        raise ConfigException(f"kubeconfig {path!r} is not a kubeconfig (a YAML mapping with clusters, contexts "
                              f"and users), but a {type(config).__name__}")
    for item in ("clusters", "contexts", "users"):
        entries = config.get(item) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "name" in e for e in entries):
            raise ConfigException(f"kubeconfig {path!r}: {item} is not a list of entries, each with a name")
    return config


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
            return held_copy(data, self.field)

        def as_data(self) -> Any:
            data = self._checked()
            if data is None:
                return super().as_data()
            if self._base64_file_content:
                return base64.standard_b64encode(data).decode("ascii")
            try:  # a token
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                from kubernetes.config.config_exception import ConfigException

                raise ConfigException(f"{self.field} {self._file!r}: not UTF-8 text (byte {exc.start})") from None

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
            # the client skipped a path that does not exist; one that exists but is no file is refused
            for path in string.split(kube_config.ENV_KUBECONFIG_PATH_SEPARATOR):
                if path and os.path.lexists(os.path.expanduser(path)):
                    self.paths.append(os.path.expanduser(path))
                    self.load_config(os.path.expanduser(path))
            self.config_saved = dict(self.config_files)

    kube_config.FileOrData = CheckedFileOrData
    kube_config.KubeConfigMerger = CheckedMerger


__all__ = ["MAX_KUBECONFIG_BYTES", "MAX_KUBE_FILE_BYTES", "held_copy", "install_checked_files", "read_kubeconfig",
           "read_named"]

"""A CA bundle a person names (`--prometheus-ca-file`, CANARY_PROMETHEUS_CA_FILE), read again when it changes.

requests hands its `verify` path to OpenSSL at each new connection. The flag's own path let it open whatever was put
there after the check (a FIFO held each new connection: decision 832), so it gets a private copy of the bytes read
and checked (`filekind.private_copy`). That copy was made once, at start: a bundle rotated on disk (cert-manager's
trust-manager, a mounted Secret or ConfigMap updated in place) reached a long-running `controller run`, `serve` or
`drift watch` only after a restart, and once Prometheus's certificate was renewed by the new CA alone every query
failed until then. `CaBundle.fresh` (before each query) follows the file as the kubeconfig's files are followed
(decision 865) and `serve`'s certificate pair is (`serve_tls`): where the file's stat changed it is read and
checked again, and the new bytes, those checked, are put into the same private copy in one step
(`filekind.replace_copy`); the connections made from then on verify with them, those open keep theirs. A change
that does not check (a file caught mid-write, removed, a FIFO) keeps the bundle loaded, said once per change
(`metrics.ca_reload_failed`), and is read again when the file changes again (decision 912).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from pathlib import Path

from canary import logs
from canary.errors import ConfigError
from canary.filekind import private_copy, read_regular, replace_copy

MAX_CA_BYTES = 4 << 20  # a CA bundle: the whole Mozilla set is 220 KiB


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def pem_bundle(data: bytes) -> None:
    """ValueError or ssl.SSLError unless `data` is PEM text holding at least one certificate. The check was
    `ssl.create_default_context(cadata=text)`, which takes `""` for no `cadata` and loads the system's CAs: an empty
    file passed (at start, and caught mid-write: the truncation an in-place writer starts with) and was put in the
    private copy, every new connection then refused (decision 952)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not PEM text: byte {exc.start} is not ASCII") from None
    if not text.strip():
        raise ValueError("empty: no certificate in it")
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)


def checked(path: Path, name: str, given: str = "") -> bytes:
    """The bytes of the PEM CA bundle at `path`, read bounded and parsed; ConfigError naming `name` and the file
    (`given`: as the person wrote it)."""
    given = given or str(path)
    if not path.is_file():
        raise ConfigError(f"{name}: {given!r} does not exist or is not a file")
    try:
        data = read_regular(path, MAX_CA_BYTES)
        if len(data) > MAX_CA_BYTES:
            raise ValueError(f"too large: more than {MAX_CA_BYTES >> 20} MiB")
        pem_bundle(data)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{name}: {given!r} is not a readable PEM CA bundle "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    return data


class CaBundle:
    """The bundle `given` (as the person wrote it; `name`: the flag or variable that gave it), checked now
    (ConfigError), its private copy at `path` for the process's life, followed by `fresh`."""

    def __init__(self, given: str, name: str) -> None:
        self.given, self.source, self.name = given, Path(given).expanduser(), name
        self._lock = threading.Lock()
        self._stamp = _stamp(self.source)  # before the read: a change while reading is read again at `fresh`
        data = checked(self.source, name, given)
        self._digest = hashlib.sha256(data).digest()
        self.path, _end = private_copy(data, "prometheus-ca")  # held while the process lives
        self._failed: tuple[int, int, int, int] | None | bool = False  # the stamp whose reload failed (said once)

    def fresh(self) -> str:
        """`path`, its content the file's as it is now where that checks (else as it was): call it before a
        request that may open a new connection."""
        stamp = _stamp(self.source)
        if stamp == self._stamp:
            return self.path
        with self._lock:
            if stamp == self._stamp or stamp == self._failed:
                return self.path
            try:
                data = checked(self.source, self.name, self.given)
                digest = hashlib.sha256(data).digest()
                if digest != self._digest:
                    replace_copy(self.path, data, "prometheus-ca")
                    self._digest = digest
                    logs.get(component="metrics").info("metrics.ca_reloaded", ca_file=str(self.source),
                                                      flag=self.name)
            except (ConfigError, OSError) as exc:
                self._failed = stamp
                logs.get(component="metrics").error(
                    "metrics.ca_reload_failed", ca_file=str(self.source), flag=self.name, error=str(exc),
                    next="new connections to Prometheus verify with the bundle loaded before; put a PEM CA bundle "
                         "there (it is read again when the file changes), or restart to be refused at start")
                return self.path
            self._stamp, self._failed = stamp, False
            return self.path


__all__ = ["MAX_CA_BYTES", "CaBundle", "checked", "pem_bundle"]

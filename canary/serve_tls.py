"""TLS for `canary serve` (`--tls-cert-file`, `--tls-private-key-file`, Kubernetes' own flag names).

Why: with `--token-file` every call carries a credential, and plain HTTP shows it to anyone on
the path; inside an Istio mesh the sidecars' mTLS covers that, outside one (or with the pod
excluded from the mesh) the service must. The stdlib's `ssl` serves it: no dependency.

* The certificate file is PEM: the server certificate first, then any intermediates; the key
  file is its PEM private key (unencrypted: a mounted Secret, as cert-manager writes `tls.crt`
  and `tls.key`). Both are read at start; a file that is missing, unreadable, a directory, over
  1 MiB, not PEM, an encrypted key (never a passphrase prompt on the terminal), or a key that does
  not match the certificate is a ConfigError naming the flag (exit 2, before anything listens).
* Rotation: before each accepted connection the two files' stats (inode, size, mtime) are
  compared with what was loaded; when either changed, a new context is loaded and used for the
  connections from then on. A pair that does not load (a rotation caught between its two files,
  a key that does not match, any error at all) keeps the previous context, with one
  `serve.tls_reload_failed` line per change seen, and is tried again when the files change again.
  Connections already open keep the certificate they were made with.
* The handshake happens in the connection's own thread, on its first read, under the request
  watchdog (`serve_http`): a client that opens a TCP connection and never completes a handshake
  holds one thread for `request_timeout_s`, never the accept loop.
* TLS 1.2 at least; the ciphers are OpenSSL's defaults for a server (`ssl.create_default_context`).
"""

from __future__ import annotations

import os
import ssl
import stat
import threading
from pathlib import Path
from typing import Any, Callable

from canary import logs
from canary.errors import ConfigError
from canary.filekind import private_copy, read_regular

CERT_FLAG, KEY_FLAG = "--tls-cert-file", "--tls-private-key-file"


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


MAX_PEM_BYTES = 1 << 20  # a chain of a few certificates, or a key, is a few KiB: more is not one


class _Encrypted(Exception):
    """OpenSSL asked for the key's passphrase (`_no_passphrase`)."""


def _no_passphrase() -> bytes:
    # without a callback OpenSSL prompts on the terminal ("Enter PEM pass phrase:"): a reload in the
    # accept loop then waited on a tty, or failed with an OSError that dropped every connection
    raise _Encrypted


def _read_pem(flag: str, path: Path) -> bytes:
    """The file's first MAX_PEM_BYTES, or a ConfigError naming `flag`: any OSError (a directory that
    cannot be searched, a name too long), a directory or other non-file, an oversized file, no PEM."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{flag} {path}: is a directory, not a file (a mounted Secret's directory? name the "
                          f"file in it: tls.crt, tls.key)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{flag} {path}: not a regular file")
    if st.st_size > MAX_PEM_BYTES:
        raise ConfigError(f"{flag} {path}: {st.st_size} bytes, over the {MAX_PEM_BYTES} a PEM certificate chain "
                          f"or key takes")
    try:  # what the stat said may have changed since (a FIFO put there): never a blocking open (decision 771)
        head = read_regular(path, MAX_PEM_BYTES)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise ConfigError(f"{flag} {path}: not a PEM file (expected a '-----BEGIN ...' block)")
    return head


def load_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context of `cert` (PEM chain) and `key` (PEM private key); ConfigError naming the flag
    whose file is wrong (missing, unreadable, not a file, too large, not PEM, an encrypted key, or a key
    that is not the certificate's). Raises nothing else for any file content or file-system error."""
    chain = _read_pem(CERT_FLAG, cert)
    head = _read_pem(KEY_FLAG, key)
    if b"-----BEGIN ENCRYPTED " in head or b"Proc-Type: 4,ENCRYPTED" in head:  # PKCS#8's, and the traditional
        raise ConfigError(_encrypted(key))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # OpenSSL takes the pair only by path: given the flags' own paths it opened them again after the checks above,
    # so a FIFO put there since held the accept loop at its open, and a file swapped since was loaded unchecked. It
    # gets private copies of the bytes checked instead, ended at once (decision 830)
    ends: list[Callable[[], None]] = []
    try:
        copies = []
        for data, name in ((chain, "tls-cert"), (head, "tls-key")):  # each ended, the first too if the second fails
            copy, end = private_copy(data, name)
            ends.append(end)
            copies.append(copy)
        ctx.load_cert_chain(certfile=copies[0], keyfile=copies[1], password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(_encrypted(key)) from None
    except ssl.SSLError as exc:
        why = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(why).upper() or "key values mismatch" in str(exc).lower():
            raise ConfigError(f"{KEY_FLAG} {key}: not the private key of {CERT_FLAG} {cert} (of its first "
                              f"certificate: the server's comes first, its intermediates after it)") from None
        raise ConfigError(f"{CERT_FLAG} {cert} / {KEY_FLAG} {key}: cannot load them as a certificate chain and "
                          f"its private key ({why})") from None
    except OSError as exc:  # the private copies refused (no memory, a full temporary directory)
        raise ConfigError(f"{CERT_FLAG} {cert} / {KEY_FLAG} {key}: cannot load them: {exc.strerror or exc}") from None
    finally:
        for end in ends:
            end()
    return ctx


def _encrypted(key: Path) -> str:
    return (f"{KEY_FLAG} {key}: the private key is encrypted (it asks for a passphrase): give it unencrypted, as a "
            f"kubernetes.io/tls Secret's tls.key holds it")


class TlsFiles:
    """The certificate and key files, loaded now (ConfigError when they do not load) and again when
    they change (`current`)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._lock = threading.Lock()
        self._stamps = (_stamp(cert), _stamp(key))
        self._context = load_context(cert, key)
        self._failed_at: tuple[Any, Any] | None = None  # the stamps whose reload failed (said once)
        self.log = logs.get(component="serve")

    def current(self) -> ssl.SSLContext:
        """The context for the next connection: reloaded when a file's stat changed; the previous one
        while a changed pair does not load."""
        with self._lock:
            stamps = (_stamp(self.cert), _stamp(self.key))
            if stamps != self._stamps and stamps != self._failed_at:
                try:
                    self._context = load_context(self.cert, self.key)
                    self._stamps, self._failed_at = stamps, None
                    self.log.info("serve.tls_reloaded", cert=str(self.cert))
                except Exception as exc:  # noqa: BLE001 - whatever fails, the previous pair goes on serving
                    self._failed_at = stamps
                    self.log.error("serve.tls_reload_failed",
                                   error=str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}",
                                   message="the certificate files changed and do not load: connections keep the "
                                           "previous certificate; tried again when the files change")
            return self._context

    def wrap(self, server: Any) -> None:
        """Serve TLS on `server` (a socketserver.TCPServer, listening): each accepted connection is
        wrapped with `current()`; its handshake runs on its first read, in its handler's thread."""
        plain_accept = server.get_request

        def get_request() -> tuple[Any, Any]:
            sock, addr = plain_accept()
            try:
                return self.current().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
            except OSError:
                sock.close()
                raise
            except Exception as exc:
                sock.close()
                # socketserver drops one connection for an OSError from here; anything else ended
                # serve_forever: nothing was served again, and the process lived on
                raise OSError(f"cannot wrap the connection: {type(exc).__name__}: {exc}") from exc
        server.get_request = get_request  # this server's accept, per instance (its class is the shared one)

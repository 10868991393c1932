"""Who may call `canary serve`: a shared secret read from a file (`--token-file`).

Why: a call to the service opens, advances, restarts or fails a rollout revision; without a
credential anyone who reached the port could pass a canary. The token lives in a file, never on
the command line (visible in `ps` and in the pod spec) or in a log line, and the file is read
again when it changes, so a rotated Kubernetes Secret (the kubelet swaps the mounted files
atomically) takes effect without a restart.

What a caller sends, either of (docs/integrations.md):

    Authorization: Bearer <token>                  Argo Rollouts (`web.headers`, from a Secret)
    Authorization: Basic base64(<any user>:<token>)  Flagger: its webhooks carry no headers, but
                                                   Go's client sends a URL's user:password
                                                   (`http://flagger:<token>@host/...`) this way

The file holds one token per line (blank lines and `#` comments ignored): any of them is
accepted, so a rotation adds the new token, moves the callers, then removes the old one. A
token is 16-4096 characters of RFC 6750's token68 set (`A-Z a-z 0-9 - . _ ~ + /`, then `=`).
Comparison is `hmac.compare_digest` on every token, so the answer's timing does not say how
much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import re
import threading
from pathlib import Path
from typing import Any

from canary.errors import ConfigError
from canary.filekind import read_regular

_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{16,4096}=*", re.ASCII)
MAX_FILE = 64 * 1024
LOOPBACK_NAMES = ("localhost",)


class TokenUnavailable(Exception):
    """The token file cannot be read or holds no valid token now (the message says why, never the token)."""


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or `localhost`; False for 0.0.0.0, :: and any other."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_tokens(text: str, where: str) -> tuple[bytes, ...]:
    """The tokens of a token file's text; TokenUnavailable naming the line (never its content) when
    a line is not a token, or when there is none."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _TOKEN.fullmatch(line):
            raise TokenUnavailable(f"{where} line {n}: not a token (16-4096 characters of A-Z a-z 0-9 - . _ ~ + /, "
                                   "then '=' padding; e.g. `openssl rand -hex 32`)")
        out.append(line.encode("ascii"))
    if not out:
        raise TokenUnavailable(f"{where}: holds no token")
    return tuple(out)


class TokenFile:
    """The accepted tokens, read from `path` and read again whenever its stat (inode, size, times) changes.

    `check(authorization)` -> None when the header carries an accepted token, else the reason
    ("missing", "malformed", "wrong"); TokenUnavailable when the file cannot be read now (every call
    is refused then: a broken rotation must not leave the old token, or none, accepted).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._guard = threading.Lock()
        self._seen: tuple[int, ...] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._error: str | None = None
        self._logged: str | None = None  # the unreadable file's cause last logged
        try:
            self.tokens()
        except TokenUnavailable as exc:
            raise ConfigError(f"--token-file: {exc}") from None

    def tokens(self) -> tuple[bytes, ...]:
        """The tokens now (the file read again if it changed); TokenUnavailable when it cannot be read."""
        with self._guard:
            try:
                st = os.stat(self.path)
            except OSError as exc:
                self._seen, self._tokens = None, ()
                raise TokenUnavailable(f"{self.path}: {exc.strerror or exc}") from None
            seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if seen != self._seen:
                self._seen, self._tokens, self._error = seen, (), None
                try:
                    if st.st_size > MAX_FILE:
                        raise TokenUnavailable(f"{self.path}: over {MAX_FILE} bytes; is this the token file?")
                    try:  # never a FIFO's open or read: it held the start, or every call (decision 771)
                        data = read_regular(self.path, MAX_FILE)
                        if len(data) > MAX_FILE:  # grown since the stat
                            raise TokenUnavailable(f"{self.path}: over {MAX_FILE} bytes; is this the token file?")
                        text = data.decode("ascii")
                    except (OSError, UnicodeDecodeError) as exc:
                        raise TokenUnavailable(f"{self.path}: cannot be read as ASCII text "
                                               f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
                    self._tokens = parse_tokens(text, str(self.path))
                except TokenUnavailable as exc:
                    self._error = str(exc)
            if self._error is not None:
                raise TokenUnavailable(self._error)
            return self._tokens

    def check(self, authorization: str | None) -> str | None:
        """None when `authorization` (the header's value, None when absent) carries an accepted token;
        else "missing", "malformed" or "wrong". TokenUnavailable when the file cannot be read."""
        tokens = self.tokens()
        given = _credential(authorization)
        if given is None:
            return "missing" if not authorization else "malformed"
        ok = False
        for t in tokens:  # every one compared, whatever matched: no early exit to time
            ok |= hmac.compare_digest(given, t)
        return None if ok else "wrong"


    def refusal(self, authorization: str | None, *, path: str, peer: str,
                log: Any) -> tuple[int, dict[str, Any]] | None:
        """None for an accepted token; else (401, JSON error) logged `serve.unauthorized` (reason and
        peer, never a token), or (503, JSON error) while the file cannot be read, logged
        `serve.token_unreadable` once per cause."""
        try:
            why = self.check(authorization)
        except TokenUnavailable as exc:
            if str(exc) != self._logged:
                self._logged = str(exc)
                log.error("serve.token_unreadable", path=path, error=str(exc))
            return 503, {"error": f"the service cannot read its token file, so it accepts no call: {exc}",
                         "field": ""}
        self._logged = None
        if why is None:
            return None
        log.warning("serve.unauthorized", path=path, peer=peer, reason=why)
        return 401, {"error": f"{why} token: send `Authorization: Bearer <token>` (or Basic auth with the token "
                              "as the password, as a Flagger webhook URL's user:password sends it); the tokens are "
                              "those of the server's --token-file", "field": "Authorization"}


def _credential(authorization: str | None) -> bytes | None:
    """The token a header carries (Bearer, or Basic's password), None when there is none to read."""
    if not authorization:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return rest.encode("utf-8", "replace")
    if scheme.lower() == "basic" and rest:
        try:
            user_pass = base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, sep, password = user_pass.partition(b":")
        return password if sep and password else None
    return None

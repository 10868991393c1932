"""`canary serve --tls-cert-file/--tls-private-key-file`: HTTPS with the stdlib's ssl, over real sockets.

Certificates are made by the `openssl` command (Debian's, as cert-manager's are made elsewhere): a
fresh pair per test, for 127.0.0.1. A rotation is done as the kubelet does it for a mounted Secret:
new files renamed over the old ones; the next connection sees them, with no wait of the test's.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.errors import ConfigError
from canary.metrics.prometheus import PrometheusProvider
from canary.sandbox.promserver import free_port
from canary.serve import Service
from canary.serve_http import ServeServer
from canary.serve_store import SessionStore
from canary.serve_tls import TlsFiles
from tests.integration.test_serve import POLICY, _event
from tests.integration.test_serve_auth import A, _argv, bearer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def _pair(where: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (P-256: quick to make)."""
    cert, key = where / f"{name}.crt", where / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def _install(src: tuple[Path, Path], dst: tuple[Path, Path]) -> None:
    for s, d in zip(src, dst):
        tmp = d.with_name(d.name + ".new")
        shutil.copyfile(s, tmp)
        os.replace(tmp, d)


def _get(url: str, trust: Path | None, path: str = "/healthz", headers: dict[str, str] | None = None) -> int:
    """The status of GET `path` over HTTPS trusting only `trust`; ssl.SSLError when the server's
    certificate is not that one."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(trust)) if trust else None
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


def _server(tmp_path: Path, tls: TlsFiles, request_timeout_s: float = 10.0) -> ServeServer:
    from canary.serve import NamedPolicy
    from canary.policy import parse_policy

    state = tmp_path / "state"
    service = Service(policies={"ml": NamedPolicy("ml", parse_policy(POLICY), state)},
                      metrics=PrometheusProvider(f"http://127.0.0.1:{free_port()}", retries=1, budget_s=1.0),
                      store=SessionStore(state))
    return ServeServer(service, tls=tls, request_timeout_s=request_timeout_s).start()


def test_https_is_served_and_a_rotated_certificate_is_used_from_the_next_connection(tmp_path: Path) -> None:
    old, new = _pair(tmp_path, "old"), _pair(tmp_path, "new")
    live = (tmp_path / "tls.crt", tmp_path / "tls.key")
    _install(old, live)
    server = _server(tmp_path, TlsFiles(*live))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert _get(server.url, old[0]) == 200
        with pytest.raises(ssl.SSLError):
            _get(server.url, new[0])  # the client checks whose certificate it is: not this one yet
        with capture_logs() as logs:
            _install(new, live)
            assert _get(server.url, new[0]) == 200
            with pytest.raises(ssl.SSLError):
                _get(server.url, old[0])
        assert [e["event"] for e in logs if e["event"].startswith("serve.tls")] == ["serve.tls_reloaded"]
        # a rotation caught between its two files: the new certificate with the previous key does not
        # load; the previous pair is served meanwhile, said once, and the complete pair is taken up
        with capture_logs() as logs:
            _install(old, (live[0], tmp_path / "elsewhere"))
            assert _get(server.url, new[0]) == 200 and _get(server.url, new[0]) == 200
            _install(old, live)
            assert _get(server.url, old[0]) == 200
        said = [e["event"] for e in logs if e["event"].startswith("serve.tls")]
        assert said == ["serve.tls_reload_failed", "serve.tls_reloaded"], said
    finally:
        server.stop()


def test_plain_http_and_a_stalled_handshake_hold_nobody_up(tmp_path: Path) -> None:
    """A client that speaks plain HTTP to the HTTPS port stops nothing, and is told in plain HTTP that the
    port serves HTTPS (decision 119 (c): it got a reset with no reason, which a kubelet probe left at
    `scheme: HTTP` reports as a refused connection); one that opens a TCP connection and never says
    hello holds its own thread, not the accept loop."""
    cert, key = _pair(tmp_path, "s")
    # the watchdog's 10 s (`_server`'s): the plain requests and the TLS GET below are answered however loaded the host;
    # 1 s cut a loaded host's own requests, sent a second late (decision 789)
    server = _server(tmp_path, TlsFiles(cert, key))
    host, port = "127.0.0.1", server.port
    stalled = socket.create_connection((host, port), timeout=30)
    try:
        for _ in range(2):
            plain = http.client.HTTPConnection(host, port, timeout=30)
            plain.request("POST", "/api/v1/argo/measure?namespace=ml", body=b"x" * 5000)
            answer = plain.getresponse()
            assert answer.status == 400 and "serves HTTPS" in json.loads(answer.read())["error"]
            assert answer.getheader("Connection") == "close"
            plain.close()
        assert _get(server.url, cert) == 200  # while the stalled connection is still open
        assert stalled.recv(1) == b"", "the watchdog cuts a handshake that never comes"  # within 10 s (30 s to fail)
    finally:
        stalled.close()
        server.stop()


def _encrypt(key: Path, *, pkcs8: bool) -> Path:
    """`key` with a passphrase: PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") or traditional ("Proc-Type: 4,ENCRYPTED")."""
    out = key.with_name(key.name + (".p8" if pkcs8 else ".trad"))
    cmd = (["openssl", "pkey", "-aes256"] if pkcs8 else ["openssl", "ec", "-aes128"])
    subprocess.run([*cmd, "-in", str(key), "-passout", "pass:secret", "-out", str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


BAD = ["missing", "not pem", "wrong key", "cert only", "key only", "key is a directory", "encrypted pkcs8",
       "encrypted traditional", "over 1 MiB", "name too long"]


@pytest.mark.parametrize("case", BAD)
def test_bad_tls_files_exit_2_naming_the_flag_before_anything_listens(tmp_path: Path, case: str) -> None:
    """Decision 119 (a): a key file that is a directory said "no such file"; an encrypted key made OpenSSL
    prompt "Enter PEM pass phrase:" on the terminal, then exit as an unexpected error naming no flag, as
    did any OSError of a stat (a name too long, a directory that cannot be searched); a huge file was
    read whole. Now each is exit 2 naming the flag, and no prompt."""
    cert, key = _pair(tmp_path, "a")
    _, other_key = _pair(tmp_path, "b")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a certificate\n")
    huge = tmp_path / "huge.crt"
    with huge.open("wb") as f:
        f.write(cert.read_bytes())
        f.truncate((1 << 20) + 1)
    pair = {"key is a directory": (cert, tmp_path), "encrypted pkcs8": (cert, _encrypt(key, pkcs8=True)),
            "encrypted traditional": (cert, _encrypt(key, pkcs8=False)), "over 1 MiB": (huge, key),
            "name too long": (tmp_path / ("x" * 300), key)}
    given = {"missing": ["--tls-cert-file", str(tmp_path / "nope.crt"), "--tls-private-key-file", str(key)],
             "not pem": ["--tls-cert-file", str(cert), "--tls-private-key-file", str(garbage)],
             "wrong key": ["--tls-cert-file", str(cert), "--tls-private-key-file", str(other_key)],
             "cert only": ["--tls-cert-file", str(cert)],
             "key only": ["--tls-private-key-file", str(key)],
             **{k: ["--tls-cert-file", str(c), "--tls-private-key-file", str(k_)] for k, (c, k_) in pair.items()}}[case]
    named, why = {"missing": ("--tls-cert-file", "no such file"), "not pem": ("--tls-private-key-file", "not a PEM"),
                  "wrong key": ("--tls-private-key-file", "not the private key of"),
                  "cert only": ("--tls-private-key-file", "TLS needs both"),
                  "key only": ("--tls-cert-file", "TLS needs both"),
                  "key is a directory": ("--tls-private-key-file", "is a directory"),
                  "encrypted pkcs8": ("--tls-private-key-file", "is encrypted"),
                  "encrypted traditional": ("--tls-private-key-file", "is encrypted"),
                  "over 1 MiB": ("--tls-cert-file", "over the 1048576"),
                  "name too long": ("--tls-cert-file", "cannot read")}[case]
    # a session of its own: no controlling terminal for OpenSSL to prompt on
    res = subprocess.run(_argv(tmp_path, "--port", "0", *given), capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    assert res.returncode == 2 and named in res.stderr and why in res.stderr, res.stderr
    assert "serve.listening" not in res.stderr and "pass phrase" not in res.stderr, res.stderr


def test_tls_files_load_or_raise_a_config_error(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "a")
    TlsFiles(cert, key)
    with pytest.raises(ConfigError, match="--tls-private-key-file .*: no such file"):
        TlsFiles(cert, tmp_path / "none")


def test_canary_serve_over_https_with_a_token(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "s")
    (tmp_path / "token").write_text(A + "\n")
    proc = subprocess.Popen(_argv(tmp_path, "--port", "0", "--token-file", str(tmp_path / "token"),
                                  "--tls-cert-file", str(cert), "--tls-private-key-file", str(key)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        started = _event(proc, "serve.started")
        url = _event(proc, "serve.listening")["url"]
        assert started["tls"] is True and url.startswith("https://127.0.0.1:")
        assert _get(url, cert) == 200
        assert _get(url, cert, "/api/v1/argo/measure?namespace=ml") == 401
        assert _get(url, cert, "/api/v1/argo/measure?namespace=ml", headers=bearer(A)) != 401
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_token_over_plain_http_beyond_loopback_is_warned_of(tmp_path: Path) -> None:
    """Checked without binding beyond loopback: 192.0.2.1 (TEST-NET-1) is no address of this machine, so
    the warning comes before the bind fails (exit 2)."""
    (tmp_path / "token").write_text(A + "\n")
    res = subprocess.run(_argv(tmp_path, "--host", "192.0.2.1", "--port", "0", "--token-file",
                               str(tmp_path / "token")), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "serve.plaintext_token" in res.stderr and "--tls-cert-file" in res.stderr, \
        res.stderr


def _kubelet_secret(where: Path, pair: tuple[Path, Path]) -> tuple[Path, Path]:
    """A mounted Secret as the kubelet lays it out: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/."""
    where.mkdir(exist_ok=True)
    _kubelet_update(where, pair)
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", where / name)
    return where / "tls.crt", where / "tls.key"


def _kubelet_update(where: Path, pair: tuple[Path, Path]) -> None:
    """The kubelet's update: a new timestamped directory, a `..data_tmp` symlink renamed over `..data`
    (both files change at once), the old directory removed."""
    old = os.readlink(where / "..data") if (where / "..data").is_symlink() else None
    new = Path(tempfile.mkdtemp(prefix="..2026_12_03_", dir=where))
    for src, name in zip(pair, ("tls.crt", "tls.key")):
        shutil.copyfile(src, new / name)
    os.symlink(new.name, where / "..data_tmp")
    os.replace(where / "..data_tmp", where / "..data")
    if old:
        shutil.rmtree(where / old)


def test_a_renewal_that_does_not_load_for_any_reason_keeps_the_previous_certificate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 119 (a): a renewed Secret whose key is encrypted made OpenSSL prompt on the terminal and
    raise an OSError; `current` let it out of the accept loop, which dropped that connection, and the
    next, and every one after (each tried the reload again): nothing was served. Any other error than
    a ConfigError (here a RuntimeError) ended serve_forever. Now whatever a reload raises keeps the previous
    pair served, said once. The rotations are the kubelet's (a `..data` symlink swapped)."""
    old, new = _pair(tmp_path, "old"), _pair(tmp_path, "new")
    live = _kubelet_secret(tmp_path / "secret", old)
    server = _server(tmp_path, TlsFiles(*live))
    try:
        assert _get(server.url, old[0]) == 200
        with capture_logs() as logs:
            _kubelet_update(tmp_path / "secret", (new[0], _encrypt(new[1], pkcs8=True)))
            assert _get(server.url, old[0]) == 200 and _get(server.url, old[0]) == 200
        (failed,) = [e for e in logs if e["event"].startswith("serve.tls")]
        assert failed["event"] == "serve.tls_reload_failed" and "--tls-private-key-file" in failed["error"]
        assert "is encrypted" in failed["error"]
        import canary.serve_tls as T

        def broken(cert: Path, key: Path) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(T, "load_context", broken)
        with capture_logs() as logs:
            _kubelet_update(tmp_path / "secret", new)
            assert _get(server.url, old[0]) == 200 and _get(server.url, old[0]) == 200
        (failed,) = [e for e in logs if e["event"].startswith("serve.tls")]
        assert failed["event"] == "serve.tls_reload_failed" and failed["error"] == "RuntimeError: a bug"
        monkeypatch.undo()
        _kubelet_update(tmp_path / "secret", old)
        _kubelet_update(tmp_path / "secret", new)
        assert _get(server.url, new[0]) == 200  # the renewal, once it loads
    finally:
        server.stop()


def test_the_watchdogs_cut_ends_a_read_in_progress_with_an_oserror(tmp_path: Path) -> None:
    """Decision 119 (b): the request watchdog cut a connection with `SSLSocket.shutdown`, which also
    drops the socket's TLS object: a read the handler's thread had already begun (past `recv_into`'s
    check) raised ValueError ("Read on closed or unwrapped SSL socket") or AttributeError, which the
    handler does not catch: the stdlib's traceback on stderr. Here that read comes after the cut, as the
    race would have it; it must end as a cut socket's read does (an OSError, or EOF)."""
    from canary.serve_http import _cut
    from canary.serve_tls import load_context

    cert, key = _pair(tmp_path, "s")
    mine, theirs = socket.socketpair()
    conn = load_context(cert, key).wrap_socket(mine, server_side=True, do_handshake_on_connect=False)
    try:
        _cut(conn)
        try:
            got = conn.read(1)  # SSLSocket.read: what recv_into calls once it has seen a TLS object
        except OSError:
            got = b""
        assert got == b""
    finally:
        conn.close()
        theirs.close()


def test_what_a_connection_thread_raises_is_one_line_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """Decision 119 (b): an exception past the handler (a bug) reached socketserver's handle_error,
    which prints a traceback on stderr; now one `serve.unexpected_error` line, and the service goes on."""
    from http.server import BaseHTTPRequestHandler

    cert, key = _pair(tmp_path, "s")
    server = _server(tmp_path, TlsFiles(cert, key))
    try:
        def boom(self: Any) -> bool:
            raise LookupError("a bug")

        with capture_logs() as logs:
            monkeypatch.setattr(BaseHTTPRequestHandler, "parse_request", boom)
            with pytest.raises((OSError, http.client.HTTPException)):
                _get(server.url, cert)
            monkeypatch.undo()
            assert _get(server.url, cert) == 200  # the service goes on; handle_error has returned by now
        (bug,) = [e for e in logs if e["event"] == "serve.unexpected_error"]
        assert bug["error"] == "LookupError: a bug" and bug["peer"] == "127.0.0.1"
        assert "Traceback" not in capfd.readouterr().err
    finally:
        server.stop()

"""Issue 11: every command that asks Prometheus takes the same credentials and CA bundle.

`--prometheus-user/--prometheus-password` (basic auth), `--prometheus-token`, and
`--prometheus-ca-file` (CANARY_PROMETHEUS_CA_FILE, documented before but read by nothing) reach
the wire: a tiny Prometheus stand-in records what each request carried, over HTTP and over HTTPS
with a self-signed certificate only the CA file makes trusted.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from typer.testing import CliRunner

from canary import cli_options, logs
from canary.cli import app
from canary.errors import ConfigError

EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
PROM_COMMANDS = ["promote", "analyze", "plan", "drift check", "drift watch", "controller run"]


class FakeProm:
    """Answers every query with an empty vector; records each request's Authorization header."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.auth.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(EMPTY)))
                self.end_headers()
                self.wfile.write(EMPTY)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prom() -> Iterator[FakeProm]:
    p = FakeProm()
    yield p
    p.close()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a self-signed certificate")
    crt, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    try:
        return CliRunner().invoke(app, list(args), env={"KUBECONFIG": "", **(env or {})})
    finally:
        logs.configure()


def analyze(tmp_path: Path, url: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump({"steps": [10, 100], "metrics": {"source": "model"},
                                   "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]}))
    return run("analyze", "rec-model", "-n", "ml", "--policy", str(pol), "--stable-version", "v1",
               "--canary-version", "v2", "--prometheus-url", url, "-o", "json", *extra, env=env)


@pytest.mark.parametrize("name", PROM_COMMANDS)
def test_every_prometheus_command_takes_the_same_options(name: str) -> None:
    res = run(*name.split(), "--help", env={"COLUMNS": "250"})  # long option names are not cut at 80 columns
    flat = " ".join(res.stdout.replace("│", " ").split())
    for flag in ("--prometheus-url", "--prometheus-token", "--prometheus-user", "--prometheus-password",
                 "--prometheus-ca-file", "--insecure-skip-tls-verify"):
        assert flag in flat, (name, flag)


def test_basic_auth_reaches_prometheus_from_flags_and_env(prom: FakeProm, tmp_path: Path) -> None:
    res = analyze(tmp_path, prom.url, "--prometheus-user", "ops", "--prometheus-password", "s3cret")
    assert res.exit_code == 4, res.stderr  # no data: inconclusive, but every query was asked
    basic = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    assert prom.auth and set(prom.auth) == {basic}
    prom.auth.clear()
    res = analyze(tmp_path, prom.url, env={"CANARY_PROMETHEUS_USER": "env-user", "CANARY_PROMETHEUS_PASSWORD": "pw"})
    assert prom.auth and set(prom.auth) == {"Basic " + base64.b64encode(b"env-user:pw").decode()}
    prom.auth.clear()
    res = analyze(tmp_path, prom.url, "--prometheus-token", "tok")
    assert set(prom.auth) == {"Bearer tok"}


def test_a_password_without_a_user_is_refused(prom: FakeProm, tmp_path: Path) -> None:
    res = analyze(tmp_path, prom.url, "--prometheus-password", "s3cret")
    assert res.exit_code == 2 and "--prometheus-user" in res.stderr and not prom.auth and res.stdout == ""


def test_ca_file_makes_a_self_signed_prometheus_trusted(cert: tuple[Path, Path], tmp_path: Path) -> None:
    prom = FakeProm(tls=cert)
    try:
        with pytest.raises(Exception):  # without the CA: verification fails before any request is served
            cli_options.prometheus(prom.url, provider=False)._client.custom_query("up")  # noqa: SLF001
        assert not prom.auth
        res = analyze(tmp_path, prom.url, "--prometheus-ca-file", str(cert[0]))
        assert res.exit_code == 4 and prom.auth, res.stderr  # the queries were served over TLS
        served = len(prom.auth)
        res = analyze(tmp_path, prom.url, env={"CANARY_PROMETHEUS_CA_FILE": str(cert[0])})
        assert res.exit_code == 4 and len(prom.auth) > served
    finally:
        prom.close()


@pytest.mark.parametrize("name", PROM_COMMANDS)
def test_a_bad_ca_file_is_refused_naming_the_flag(name: str, tmp_path: Path) -> None:
    pol, prof = tmp_path / "p.yaml", tmp_path / "b.json"
    pol.write_text(yaml.safe_dump({"steps": [10, 100], "checks": [{"name": "e", "kind": "error_rate",
                                                                   "max_rate_pct": 1}]}))
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    args = {"promote": ["promote", "m", "--canary-version", "v2", "--policy", str(pol)],
            "analyze": ["analyze", "m", "--policy", str(pol), "--stable-version", "v1", "--canary-version", "v2"],
            "plan": ["plan", "--policy", str(pol), "--rps", "5", "--model", "m", "--stable-version", "v1", "-n", "ml"],
            "drift check": ["drift", "check", "--baseline", str(prof)],
            "drift watch": ["drift", "watch", "--baseline", str(prof), "--no-kube", "--once"],
            "controller run": ["controller", "run"]}[name]
    for ca in (str(tmp_path / "missing.pem"), str(garbage)):
        res = run(*args, "--prometheus-url", "https://127.0.0.1:9", "--prometheus-ca-file", ca)
        assert res.exit_code == 2 and "--prometheus-ca-file" in res.stderr and ca in res.stderr, res.stderr
        assert res.stdout == "" and "Traceback" not in res.stderr


def test_the_options_build_one_client() -> None:
    client = cli_options.prometheus("http://p:9090", None, "u", "pw", None, False)
    assert client._client.auth == ("u", "pw")  # noqa: SLF001
    assert cli_options.prometheus("http://p:9090", insecure=True)._client._session.verify is False  # noqa: SLF001
    with pytest.raises(ConfigError, match="no Prometheus address"):
        cli_options.prometheus(None)
    with pytest.raises(ConfigError, match="at most one of --prometheus-ca-file and --insecure-skip-tls-verify"):
        cli_options.prometheus("https://p", ca_file=__file__, insecure=True)


def test_a_token_and_a_user_together_are_refused() -> None:
    """Both would set the Authorization header; the error names both flags (and their variables)."""
    from canary import cli_options as opts
    from canary.errors import ConfigError

    with pytest.raises(ConfigError, match="--prometheus-token or --prometheus-user/--prometheus-password, not both"):
        opts.prometheus("http://127.0.0.1:9", token="t", user="u", password="p")


@pytest.mark.timeout(60)
def test_a_ca_file_swapped_for_a_fifo_after_its_check_holds_no_connection(cert: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    """requests handed `--prometheus-ca-file`'s own path to OpenSSL at each new connection: a FIFO put there
    while a rollout ran held every new connection to Prometheus at its open (decision 832; the timeout without)."""
    prom = FakeProm(tls=cert)
    try:
        ca = tmp_path / "given-ca.pem"
        shutil.copyfile(cert[0], ca)
        client = cli_options.prometheus(prom.url, ca_file=str(ca), provider=False)
        ca.unlink()
        os.mkfifo(ca)
        client._client.custom_query("up")  # noqa: SLF001
        assert prom.auth is not None
    finally:
        prom.close()


def test_a_ca_file_that_is_not_ascii_is_said_as_not_pem_text(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"\xff\xfe-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as err:
        cli_options.prometheus("https://127.0.0.1:9", ca_file=str(ca))
    assert str(err.value) == (f"--prometheus-ca-file: {str(ca)!r} is not a readable PEM CA bundle (not PEM text: "
                              "byte 0 is not ASCII)"), err.value


@pytest.mark.timeout(60)
def test_the_ca_file_variable_of_from_env_is_checked_and_handed_on_as_a_private_copy(cert: tuple[Path, Path],
                                                                                      tmp_path: Path) -> None:
    """`PrometheusClient.from_env` handed CANARY_PROMETHEUS_CA_FILE's own path to requests, unchecked (a FIFO there
    held each new connection at its open, a file of no certificate was said at the first query): decision 869."""
    from canary.metrics.client import PrometheusClient

    ca = tmp_path / "given-ca.pem"
    shutil.copyfile(cert[0], ca)
    env = {"CANARY_PROMETHEUS_URL": "https://127.0.0.1:9", "CANARY_PROMETHEUS_CA_FILE": str(ca)}
    verify = PrometheusClient.from_env(env)._client._session.verify  # noqa: SLF001
    assert isinstance(verify, str) and str(tmp_path) not in verify and Path(verify).read_bytes() == ca.read_bytes()
    for bad in ("fifo", "text"):
        ca.unlink()
        os.mkfifo(ca) if bad == "fifo" else ca.write_text("no certificate\n")
        with pytest.raises(ConfigError, match=f"CANARY_PROMETHEUS_CA_FILE: {str(ca)!r} "):
            PrometheusClient.from_env(env)


def test_from_env_with_tls_unverified_reads_no_ca_file(tmp_path: Path) -> None:
    """CANARY_PROMETHEUS_INSECURE wins over CANARY_PROMETHEUS_CA_FILE, as it did before 869: the CA file, never used
    then, is not read, so one that is no file (here a FIFO, which 869's read refused) no longer refuses the
    variables that worked (decision 882)."""
    from canary.metrics.client import PrometheusClient

    ca = tmp_path / "ca.pem"
    os.mkfifo(ca)
    env = {"CANARY_PROMETHEUS_URL": "https://127.0.0.1:9", "CANARY_PROMETHEUS_CA_FILE": str(ca),
           "CANARY_PROMETHEUS_INSECURE": "true"}
    assert PrometheusClient.from_env(env)._client._session.verify is False  # noqa: SLF001


def _self_signed(where: Path) -> tuple[Path, Path]:
    where.mkdir()
    crt, key = where / "ca.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.mark.timeout(120)
def test_a_ca_bundle_rotated_on_disk_is_taken_by_new_connections_without_a_restart(cert: tuple[Path, Path],
                                                                                   tmp_path: Path) -> None:
    """The bundle was read once, at start (832): Prometheus's certificate renewed by a new CA, and the bundle rotated
    to it on disk (a Secret updated in place), every query of a running controller or serve failed until a restart.
    The file is followed now as the kubeconfig's are (865): a change that checks is put into the same private copy,
    taken by the next connection; one that does not keeps the bundle loaded, said once (decision 912)."""
    import structlog.testing

    from canary.errors import MetricsUnavailable

    renewed = _self_signed(tmp_path / "renewed")
    prom = FakeProm(tls=renewed)  # Prometheus now serves a certificate of the new CA
    try:
        ca = tmp_path / "given-ca.pem"
        shutil.copyfile(cert[0], ca)  # the old CA
        client = cli_options.prometheus(prom.url, ca_file=str(ca), provider=False)
        copy = client._client._session.verify  # noqa: SLF001
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(MetricsUnavailable):
                client.query("up")  # verified with the old CA: refused
            (tmp_path / "half").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")  # a rotation caught mid-write
            os.replace(tmp_path / "half", ca)
            for _ in range(2):
                with pytest.raises(MetricsUnavailable):
                    client.query("up")  # the bundle loaded kept
            shutil.copyfile(renewed[0], tmp_path / "next")
            os.replace(tmp_path / "next", ca)  # as the kubelet swaps a Secret's files in
            assert client.query("up") == [] and prom.auth
        events = [e["event"] for e in logs if e["event"].startswith("metrics.ca_")]
        assert events == ["metrics.ca_reload_failed", "metrics.ca_reloaded"], events  # the failure said once
        failed = next(e for e in logs if e["event"] == "metrics.ca_reload_failed")
        assert f"--prometheus-ca-file: {str(ca)!r} is not a readable PEM CA bundle" in failed["error"], failed
        assert client._client._session.verify == copy and Path(copy).read_bytes() == renewed[0].read_bytes()  # noqa: SLF001
    finally:
        prom.close()


@pytest.mark.timeout(120)
def test_a_ca_bundle_rotated_to_a_ca_that_did_not_sign_prometheus_is_said_as_tls_naming_the_file(
        cert: tuple[Path, Path], tmp_path: Path) -> None:
    """A bundle rotated on disk to a CA that did not sign Prometheus's certificate (the bundle renewed before the
    server's certificate, the wrong Secret) is taken (decision 912), and every query is refused by our own check:
    said "connection failed", as for a Prometheus that is down, and `analyze` told on-call "is it up, is
    --prometheus-url right?". Now the words say TLS, the bundle and why, and the remedy names the CA file (decision
    950). The refusal stays a failure that may pass (MetricsUnavailable: no data, never a verdict)."""
    from canary import cli_ops
    from canary.errors import MetricsUnavailable

    prom = FakeProm(tls=cert)
    try:
        ca = tmp_path / "given-ca.pem"
        shutil.copyfile(cert[0], ca)
        client = cli_options.prometheus(prom.url, ca_file=str(ca), provider=False)
        assert client.query("up") == []
        other = _self_signed(tmp_path / "other")
        shutil.copyfile(other[0], tmp_path / "next")
        os.replace(tmp_path / "next", ca)  # a CA that did not sign Prometheus's certificate
        with pytest.raises(MetricsUnavailable) as err:
            client.query("up")
        said = str(err.value)
        assert (f"(TLS: Prometheus's certificate is not verified by the CA bundle of --prometheus-ca-file {str(ca)!r} "
                "(") in said and "connection failed" not in said, said
        remedy = cli_ops._unmeasured_remedy([err.value], every=True)
        assert "give --prometheus-ca-file a PEM bundle that holds its CA" in remedy and "is it up" not in remedy, remedy
        from canary import cli_drift

        remedy = cli_drift._unmeasured_remedy(client, err.value)  # drift check's, asking nothing more
        assert "give --prometheus-ca-file a PEM bundle that holds its CA" in remedy and "is it up" not in remedy, remedy
    finally:
        prom.close()
    plain = FakeProm()  # https:// to a plain port: a handshake that failed, not a refused certificate
    try:
        client = cli_options.prometheus(plain.url.replace("http://", "https://"), ca_file=str(ca), provider=False)
        with pytest.raises(MetricsUnavailable, match=r"\(TLS handshake failed \(\w+"):
            client.query("up")
    finally:
        plain.close()


def test_an_empty_ca_bundle_is_refused_at_start_and_one_caught_empty_keeps_the_bundle(cert: tuple[Path, Path],
                                                                                   tmp_path: Path) -> None:
    """`ssl.create_default_context(cadata="")` is no error (it loads the system's CAs instead): an empty
    --prometheus-ca-file passed the start's check, every query then refused, and a bundle caught empty mid-write (an
    in-place writer truncates first) was taken into the private copy (decision 952)."""
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"is not a readable PEM CA bundle \(empty: no certificate in it\)"):
        cli_options.prometheus("https://127.0.0.1:9", ca_file=str(empty), provider=False)
    ca = tmp_path / "given-ca.pem"
    shutil.copyfile(cert[0], ca)
    client = cli_options.prometheus("https://127.0.0.1:9", ca_file=str(ca), provider=False)
    ca.write_bytes(b"")  # truncated, in place
    assert Path(client._ca.fresh()).read_bytes() == cert[0].read_bytes()  # noqa: SLF001

"""The Triton gates under faults of the servers themselves, against real Triton (PyTriton on CPU).

Each case is one kind of fault the gate must survive with a clear line and stable at 100%: a canary
whose model never answers, a URL tritonclient would misread, a stable that is down before or during
the rollout, and a canary whose model is replaced behind its URL after the gate passed. Readiness
conditions, never sleeps: a server is killed and waited for, HAProxy's weights are set through its
admin socket before the probe asks.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canary import rollout as rl
from canary.errors import ConfigError, GateError
from canary.gates import CR_FIELDS, TritonGates
from canary.model import STABLE_ONLY
from canary.policy import TritonGate
from canary.runner import probe_reason
from canary.sandbox.model import Behaviour
from canary.sandbox.tritonserver import TritonServer
from canary.triton import ReadinessProbe, TritonEndpoint, preflight
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration
MODEL = "rec-model"
GATE = TritonGate(warmup_requests=2, probe_interval=0.5, probe_failures=2)


def url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.fixture(scope="module")
def triton_hung(triton_fleet: dict[str, TritonServer]) -> Iterator[TritonServer]:
    """Ready, metadata answered, but every inference takes an hour (a model stuck in a lock or a
    kernel): used by this module only (its requests never end; it is killed, not stopped)."""
    server = TritonServer("hung", "v2.1.0", Behaviour(extra_latency_ms=3_600_000.0)).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()
        server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.timeout(180)  # a hang guard: before the fix the gRPC warm-up waited for the hour
def test_a_canary_whose_model_never_answers_fails_the_gate_within_its_timeout(
        triton_stable: TritonServer, triton_hung: TritonServer, protocol: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """gRPC calls had no deadline (only HTTP's client has one): `canary promote` stayed PENDING for
    as long as the model hung, and the controller's worker with it. Now every call has one, on either
    protocol, and the refusal says how long was waited.

    The short timeout meets only the call that hangs: the canary's warm-up (its inference takes an hour) gets
    2 s, on a client of its own made by the product's `connect` (HTTP's deadline is the client's), every other
    call of the preflight (both servers' readiness and metadata, answered at once by a healthy server) 60 s. A 2 s for all was a race with a loaded host: a stable slow to answer its readiness was refused
    as "stable Triton ...: no answer within 2s" (decision 788)."""
    import canary.triton as triton

    warm_up = triton._warm_up

    def canary_warm_up_in_2s(client: Any, ep: TritonEndpoint, *args: Any, **kw: Any) -> list[float]:
        if ep.role != "canary":
            return warm_up(client, ep, *args, **kw)
        short = triton.connect(ep, timeout=2.0)  # HTTP's deadline is its client's; gRPC's each call's (2 s too)
        try:
            return warm_up(short, ep, *args, **{**kw, "timeout": 2.0})
        finally:
            triton._close(short)

    monkeypatch.setattr(triton, "_warm_up", canary_warm_up_in_2s)
    stable = TritonEndpoint(url=url(triton_stable, protocol), model=MODEL, protocol=protocol, role="stable")
    canary = TritonEndpoint(url=url(triton_hung, protocol), model=MODEL, protocol=protocol, role="canary")
    with pytest.raises(GateError) as err:
        preflight(stable, canary, GATE, base_dir=tmp_path, timeout=60.0)
    assert str(err.value).startswith(f"canary Triton {canary}: warm-up request 1 failed: no answer within 2s"), err.value


# -- URLs: what tritonclient would misread is a ConfigError naming the field, before anything moves --

@pytest.mark.parametrize(("protocol", "bad", "says"), [
    ("http", "http://10.0.0.7:8000/triton", "without a path"),
    ("http", "10.0.0.7:8000/v2/models/rec-model", "without a path"),
    ("grpc", "10.0.0.7:8001?x=1", "without a path or query"),
    ("http", "10.0.0.7", "no port"),
    ("grpc", "triton.ml.svc", "no port"),
    ("http", "grpc://10.0.0.7:8001", "does not go with gates.triton.protocol http"),
    ("http", "ftp://10.0.0.7:8000", "scheme 'ftp'"),
    ("http", "10.0.0.7:80000", "Port out of range"),
    ("http", "user@10.0.0.7:8000", "no user"),
    ("http", " 10.0.0.7:8000", "expected host:port"),
])
def test_a_url_tritonclient_would_misread_is_refused_naming_the_field(protocol: str, bad: str, says: str) -> None:
    """A path prefix answered "Triton server is not live" (read as a broken canary and recorded as a
    rollback of the model); a URL without a port went to 80/443."""
    gate = TritonGate(protocol=protocol)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^--triton-canary ") as err:
        TritonGates(gate, model=MODEL, stable_url="10.0.0.6:8000", canary_url=bad, base_dir=Path("."),
                    url_fields=("--triton-stable", "--triton-canary"))
    assert says in str(err.value)
    with pytest.raises(ConfigError, match=r"^spec\.triton\.stableUrl "):
        TritonGates(gate, model=MODEL, stable_url=bad, canary_url="10.0.0.7:8000", base_dir=Path("."))


@pytest.mark.parametrize(("fields", "stable", "canary"), [
    (("--triton-stable", "--triton-canary"), "10.0.0.6:8000", "http://10.0.0.6:8000"),
    (CR_FIELDS, "triton.ml.svc:8000", "TRITON.ml.svc.:8000"),
    (("metadata.tritonStable", "metadata.tritonCanary"), "http://[::1]:8000", "[::1]:8000"),
])
def test_one_server_given_as_both_canary_and_stable_is_refused_naming_both_fields(
        fields: tuple[str, str], stable: str, canary: str) -> None:
    """The same address in both fields: the gate compared stable with itself and passed, and the probe that
    rolls a crashed canary back watched stable (decision 204). Two servers on one host still pass."""
    with pytest.raises(ConfigError) as err:
        TritonGates(GATE, model=MODEL, stable_url=stable, canary_url=canary, base_dir=Path("."), url_fields=fields)
    assert str(err.value).startswith(f"{fields[1]} {canary!r} and {fields[0]} {stable!r} name the same Triton "
                                     "server"), err.value
    TritonGates(GATE, model=MODEL, stable_url="10.0.0.6:8000", canary_url="10.0.0.6:8001", base_dir=Path("."),
                url_fields=fields)


@pytest.mark.parametrize(("stable", "canary"), [
    ("localhost:8000", "127.0.0.1:8000"),  # this machine by two of its names: a Triton on 0.0.0.0 answers both
    ("http://127.0.0.1:8000", "http://[::1]:8000"),
    ("[::1]:8000", "[0:0:0:0:0:0:0:1]:8000"),  # one IPv6 address in two spellings
    ("10.0.0.6:8000", "[::ffff:10.0.0.6]:8000"),  # an IPv4 address as IPv6 writes it
    ("127.1:8000", "Localhost.:8000"),
    ("rec-model.ml:8000", "rec-model.ml.svc.cluster.local:8000"),  # one Kubernetes Service, short and full
])
def test_one_server_spelled_two_ways_is_refused_as_one(stable: str, canary: str) -> None:
    """Decision 204 compared host names as written: `localhost` against `127.0.0.1`, two spellings of one IPv6
    address, a Service's short and full names passed, the gate checking stable against itself (decision 215).
    Told without a DNS lookup; two ports, or two loopback addresses, are still two servers."""
    fields = ("--triton-stable", "--triton-canary")
    with pytest.raises(ConfigError, match="name the same Triton server"):
        TritonGates(GATE, model=MODEL, stable_url=stable, canary_url=canary, base_dir=Path("."), url_fields=fields)
    for other in ("localhost:8001", "127.0.0.2:8000", "rec-model-canary.ml:8000"):
        TritonGates(GATE, model=MODEL, stable_url=stable, canary_url=other, base_dir=Path("."), url_fields=fields)


def test_a_name_that_does_not_resolve_names_the_field_to_check(tmp_path: Path) -> None:
    """DNS failure: the refusal names the server and the field the URL came from, before any traffic."""
    gates = TritonGates(GATE, model=MODEL, stable_url="stable.invalid:8000", canary_url="canary.invalid:8000",
                        base_dir=tmp_path, url_fields=("--triton-stable", "--triton-canary"))
    with pytest.raises(GateError) as err:
        gates.preflight()
    text = str(err.value)
    assert text.startswith("canary Triton rec-model@canary.invalid:8000: server unreachable: "), text
    assert text.endswith(" (check --triton-canary: canary.invalid:8000)"), text


def test_https_over_grpc_is_tls_not_plaintext(triton_canary: TritonServer, tmp_path: Path) -> None:
    """`https://` was stripped and the gRPC channel opened in plaintext: the gate passed against a
    server that speaks no TLS, and the user believed the link encrypted."""
    ep = TritonEndpoint(url=f"https://{triton_canary.grpc_url}", model=MODEL, protocol="grpc", role="canary")
    assert ep.tls and ep.hostport == triton_canary.grpc_url
    with pytest.raises(GateError, match="canary Triton .* server unreachable: .*(?i:tls|ssl|handshake)"):
        preflight(None, ep, GATE, base_dir=tmp_path, timeout=5.0)
    plain = TritonEndpoint(url=triton_canary.grpc_url, model=MODEL, protocol="grpc")
    assert preflight(None, plain, GATE, base_dir=tmp_path).warmup_requests == 2


@pytest.mark.parametrize(("protocol", "port", "says"), [
    ("grpc", "http_port", "is this Triton's HTTP port? gates.triton.protocol is grpc; or, if this port expects "
                          "TLS, give https://host:port"),
    ("http", "grpc_port", "is this Triton's gRPC port? gates.triton.protocol is http"),
])
def test_the_other_protocols_port_is_said_plainly(triton_canary: TritonServer, protocol: str, port: str,
                                                   says: str, tmp_path: Path) -> None:
    """tritonclient says "Socket closed" or "('Expected HTTP/, RTSP/ or ICE/', 8)": read as a broken canary."""
    ep = TritonEndpoint(url=f"127.0.0.1:{getattr(triton_canary, port)}", model=MODEL, protocol=protocol,  # type: ignore[arg-type]
                        role="canary")
    with pytest.raises(GateError, match="^canary Triton .*: server unreachable: ") as err:
        preflight(None, ep, GATE, base_dir=tmp_path)
    assert str(err.value).endswith(f"({says})"), err.value


# -- TLS that does not match: said as TLS, with what to change ---------------------------------

@pytest.mark.parametrize(("protocol", "plain"), [("http", "HTTP"), ("grpc", "gRPC")])
def test_https_to_a_plain_triton_says_the_server_does_not_speak_tls(triton_canary: TritonServer, protocol: str,
                                                                    plain: str, tmp_path: Path) -> None:
    """It said "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol (_ssl.c:1006)",
    recorded as a rollback of the model: on-call read a broken canary, not a URL to change."""
    ep = TritonEndpoint(url=f"https://{url(triton_canary, protocol).removeprefix('http://')}", model=MODEL,
                        protocol=protocol, role="canary")  # type: ignore[arg-type]
    with pytest.raises(GateError, match="^canary Triton .*: server unreachable: ") as err:
        preflight(None, ep, GATE, base_dir=tmp_path)
    assert str(err.value).endswith(f"(TLS: the URL says https:// and the server does not speak TLS there: for plain "
                                   f"{plain} give host:port without https://)"), err.value


@pytest.fixture(scope="module")
def tls_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """(HTTPS port, TLS gRPC port, its certificate): servers on 127.0.0.1 with a self-signed certificate,
    as a Triton behind a TLS ingress of a private CA. Only the handshake is under test: past it, they are
    not Triton."""
    import shutil
    import ssl
    import subprocess
    from concurrent import futures

    import grpc

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    where = tmp_path_factory.mktemp("tls")
    crt, key = where / "ca.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, daemon=True).start()
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc_port = rpc.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), crt.read_bytes())]))
    rpc.start()
    try:
        yield https.server_address[1], rpc_port, crt
    finally:
        rpc.stop(0)
        https.shutdown()
        https.server_close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_certificate_not_trusted_says_how_to_trust_its_ca(tls_stand_in: tuple[int, int, Path], protocol: str,
                                                            tmp_path: Path) -> None:
    """"[SSL: CERTIFICATE_VERIFY_FAILED] ... self-signed certificate" alone does not say that the gate can be
    told the CA, nor how."""
    port = tls_stand_in[0] if protocol == "http" else tls_stand_in[1]
    ep = TritonEndpoint(url=f"https://127.0.0.1:{port}", model=MODEL, protocol=protocol, role="canary")  # type: ignore[arg-type]
    with pytest.raises(GateError, match="^canary Triton .*: server unreachable: .*CERTIFICATE_VERIFY_FAILED") as err:
        preflight(None, ep, GATE, base_dir=tmp_path, timeout=5.0)
    assert str(err.value).endswith(
        "(TLS: the server's certificate is not trusted here: point SSL_CERT_FILE (HTTP) or "
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC) at a PEM bundle that holds its CA, in the environment this "
        "runs in)"), err.value


@pytest.mark.parametrize(("protocol", "variable"), [("http", "SSL_CERT_FILE"),
                                                    ("grpc", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")])
def test_the_advice_for_a_certificate_not_trusted_holds(tls_stand_in: tuple[int, int, Path], protocol: str,
                                                        variable: str, tmp_path: Path) -> None:
    """With the variable at its CA when the process starts (both clients read it once), the handshake
    passes: what fails next is that the stand-in is not Triton."""
    import subprocess
    import sys

    port = tls_stand_in[0] if protocol == "http" else tls_stand_in[1]
    code = ("from pathlib import Path\n"
            "from canary.errors import GateError\n"
            "from canary.policy import TritonGate\n"
            "from canary.triton import TritonEndpoint, preflight\n"
            f"ep = TritonEndpoint(url='https://127.0.0.1:{port}', model='m', protocol='{protocol}', role='canary')\n"
            "try:\n"
            "    preflight(None, ep, TritonGate(), base_dir=Path('.'), timeout=5.0)\n"
            "except GateError as exc:\n"
            "    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, variable: str(tls_stand_in[2])})
    said = run.stdout.strip()
    assert said.startswith("canary Triton m@") and "CERTIFICATE" not in said and "TLS" not in said, (said, run.stderr)


@pytest.mark.parametrize(("protocol", "says"), [
    ("http", "(does this port expect TLS? then give https://host:port)"),
    ("grpc", "(is this Triton's HTTP port? gates.triton.protocol is grpc; or, if this port expects TLS, give "
             "https://host:port)"),
])
def test_a_plain_url_to_a_tls_port_asks_whether_it_expects_tls(tls_stand_in: tuple[int, int, Path], protocol: str,
                                                                says: str, tmp_path: Path) -> None:
    """"connection closed." (HTTP) and "Socket closed" (gRPC, said to be Triton's HTTP port only)."""
    port = tls_stand_in[0] if protocol == "http" else tls_stand_in[1]
    ep = TritonEndpoint(url=f"127.0.0.1:{port}", model=MODEL, protocol=protocol, role="canary")  # type: ignore[arg-type]
    with pytest.raises(GateError, match="^canary Triton .*: server unreachable: ") as err:
        preflight(None, ep, GATE, base_dir=tmp_path, timeout=5.0)
    assert str(err.value).endswith(says), err.value


# -- stable down: named stable, never the canary ------------------------------------------------

def test_a_stable_that_is_down_before_traffic_is_named_stable(triton_canary: TritonServer, tmp_path: Path) -> None:
    """The refusal read "rec-model@127.0.0.1:<port>: Triton server unreachable", the same words as a
    dead canary: on-call could not tell which server to look at."""
    dead = TritonEndpoint(url=f"127.0.0.1:{refused_port()}", model=MODEL, role="stable")
    canary = TritonEndpoint(url=triton_canary.http_url, model=MODEL, role="canary")
    with pytest.raises(GateError) as err:
        preflight(dead, canary, GATE, base_dir=tmp_path)
    assert str(err.value).startswith(f"stable Triton {dead}: server unreachable: "), err.value


def test_promote_with_stable_down_before_traffic_aborts_and_names_stable(triton_canary: TritonServer) -> None:
    """It was ROLLED_BACK, exit 1 ("the canary is bad"), with no word of which server: a pipeline
    reading the exit code marked a model nobody judged as bad."""
    from tests.unit.test_runner import make

    ctl, router, _, _ = make()
    ctl.gate = TritonGates(GATE, model=MODEL, stable_url=f"127.0.0.1:{refused_port()}",
                           canary_url=triton_canary.http_url, base_dir=Path("."))
    res = ctl.run()
    assert res.state.phase == rl.ABORTED and res.exit_code == 3, res.state
    assert res.state.reason.startswith("gate: stable Triton rec-model@127.0.0.1:"), res.state.reason
    assert all(w.canary == 0 for k, w in router.log if k == "weights")


def test_a_model_name_neither_server_serves_aborts_naming_the_name(triton_stable: TritonServer,
                                                                  triton_canary: TritonServer) -> None:
    """The gates ask both Tritons for the rollout's model name. A name neither serves (the rollout's, e.g.
    the VirtualService's model where Triton's is named otherwise) refused every canary as ROLLED_BACK, exit 1,
    "model 'recommender' version (default) is not ready": a pipeline marked every version bad."""
    from tests.unit.test_runner import make

    ctl, router, _, _ = make()
    ctl.gate = TritonGates(GATE, model="recommender", stable_url=triton_stable.http_url,
                           canary_url=triton_canary.http_url, base_dir=Path("."))
    res = ctl.run()
    assert res.state.phase == rl.ABORTED and res.exit_code == 3, res.state
    assert res.state.reason == (
        f"gate: model name 'recommender': neither canary Triton 127.0.0.1:{triton_canary.http_port} nor stable "
        f"Triton 127.0.0.1:{triton_stable.http_port} serves it (Request for unknown model: 'recommender' is not "
        f"found): the gates ask Triton for the rollout's model name; check that Triton serves the model under "
        f"that name"), res.state.reason
    assert all(w.canary == 0 for k, w in router.log if k == "weights")

    # a name stable serves and the canary's Triton does not is the canary's (its new version deployed under
    # another name): the canary's Triton is asked for a name that only it lacks
    stable = TritonEndpoint(url=triton_stable.http_url, model=MODEL, role="stable")
    canary = TritonEndpoint(url=triton_canary.http_url, model="recommender", role="canary")
    with pytest.raises(GateError) as err:
        preflight(stable, canary, GATE, base_dir=Path("."))
    assert str(err.value).startswith(f"canary Triton {canary}: this Triton serves no model 'recommender' "), err.value


def test_probes_say_when_stable_is_down_too() -> None:
    """A canary that fails while stable is down as well: the rollback lands on a dead stable, and the
    one line says so (it said only "canary Triton not ready")."""
    gates = TritonGates(GATE, model=MODEL, stable_url=f"127.0.0.1:{refused_port()}",
                        canary_url=f"127.0.0.1:{refused_port()}", base_dir=Path("."))
    assert gates.ready() is False and gates.failing == "canary"
    why = probe_reason(gates, 2)
    assert why.startswith("canary Triton not ready (2 probes in a row: unreachable: "), why
    assert "; stable is not ready either (rec-model@127.0.0.1:" in why and "stable gets 100% all the same" in why


@pytest.mark.timeout(300)
def test_a_stable_that_dies_mid_rollout_ends_it_at_stable_100_saying_stable(triton_canary: TritonServer) -> None:
    """Nothing probed stable: with stable dead at 90% of the traffic the rollout went on judging the
    canary against it (and the fake metrics here, a healthy canary, promoted it). Now the probe asks
    both servers; stable failing `probe_failures` in a row ends the rollout at stable 100%, and the
    reason names stable and the decision (docs/decisions.md 93); ABORTED, as the canary was not judged."""
    from tests.unit.test_runner import make

    own = TritonServer("stable", "v1.0.0").start()  # this test's to kill
    try:
        own.wait_ready()
        ctl, router, _, clock = make()
        gates = TritonGates(GATE, model=MODEL, stable_url=own.http_url, canary_url=triton_canary.http_url,
                            base_dir=Path("."))
        passed = gates.preflight

        def preflight_then_stable_dies() -> dict[str, object]:
            report = passed()
            own.kill()  # waits for the process to be gone: the next probe finds the port closed
            return report

        gates.preflight = preflight_then_stable_dies  # type: ignore[method-assign]
        ctl.gate = gates
        res = ctl.run()
        # stable failed, not the canary: "could not complete" (exit 3), never "bad canary" (exit 1)
        assert res.state.phase == rl.ABORTED and res.exit_code == 3 and router.weights == STABLE_ONLY, res.state
        assert res.state.reason.startswith("gate: stable Triton not ready (2 probes in a row: stable rec-model@"), res.state.reason
        assert "stable gets 100% anyway" in res.state.reason
        weights = [w for k, w in router.log if k == "weights"]
        assert any(w.canary > 0 for w in weights)  # it was mid-rollout: the canary had traffic
    finally:
        own.stop()


# -- the canary's model replaced behind its URL after the gate --------------------------------

@pytest.fixture
def canary_behind_proxy(triton_canary: TritonServer, triton_bad_schema: TritonServer,
                        tmp_path: Path) -> Iterator[object]:
    """HAProxy as the canary's Service: "old" pods (the gated model) and "new" ones (score FP64)."""
    from tests.support.triton import haproxy_over

    yield from haproxy_over({"old": triton_canary, "new": triton_bad_schema}, tmp_path / "haproxy")


def test_a_canary_redeployed_with_another_contract_after_the_gate_fails_its_probe(
        triton_stable: TritonServer, canary_behind_proxy: object) -> None:
    """A rolling update of the canary's pods never stops answering ready, so the probe (server ready,
    model ready) passed while clients got FP64 where they read FP32. The probe now holds the canary
    to stable's contract, as the gate did, and says which tensor changed."""
    proxy: Any = canary_behind_proxy
    gates = TritonGates(GATE, model=MODEL, stable_url=triton_stable.http_url, canary_url=proxy.url,
                        base_dir=Path("."))
    gates.preflight()
    assert gates.ready() is True and gates.last_failure == ""
    proxy.set_weights({"old": 0, "new": 100})  # the rollout of the canary's Deployment completes
    assert gates.ready() is False and gates.failing == "canary"
    assert probe_reason(gates, 2) == ("canary Triton not ready (2 probes in a row: model contract changed since "
                                      "the gate (no longer compatible with stable): output 'score': datatype FP32 "
                                      "on stable, FP64 on canary)")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_resumed_rollout_holds_the_canary_to_stables_contract_too(
        triton_stable: TritonServer, triton_canary: TritonServer, triton_bad_schema: TritonServer,
        protocol: str) -> None:
    """A new process (promote re-run, controller restart) probes without having run the gate: it reads
    stable's contract at its first probe. A compatible canary stays ready, over either protocol."""
    cfg = TritonGate(protocol=protocol)  # type: ignore[arg-type]
    good = TritonGates(cfg, model=MODEL, stable_url=url(triton_stable, protocol),
                       canary_url=url(triton_canary, protocol), base_dir=Path("."))
    assert [good.ready() for _ in range(3)] == [True] * 3 and good.last_failure == ""
    bad = TritonGates(cfg, model=MODEL, stable_url=url(triton_stable, protocol),
                      canary_url=url(triton_bad_schema, protocol), base_dir=Path("."))
    assert bad.ready() is False and "output 'score': datatype FP32 on stable, FP64 on canary" in bad.last_failure


# -- an answer that is not Triton's -------------------------------------------------------------

class _NotTriton(http.server.BaseHTTPRequestHandler):
    """200 and the same JSON for every path: a catch-all service on the port that was meant for Triton."""

    def do_GET(self) -> None:
        body = json.dumps({"inputs": [{"name": "features"}], "outputs": "none"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


def test_metadata_that_is_not_tritons_is_a_gate_error_naming_the_server(tmp_path: Path) -> None:
    """It was a raw KeyError out of the gate: `canary promote` ended "failed: KeyError: 'datatype'"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ep = TritonEndpoint(url=f"127.0.0.1:{server.server_address[1]}", model=MODEL, role="canary")
        with pytest.raises(GateError, match=r"^canary Triton .*: the model metadata/config is not Triton's "
                                            r"\(KeyError: 'datatype'\)"):
            preflight(None, ep, GATE, base_dir=tmp_path)
        probe = ReadinessProbe(ep, contract=None)
        assert probe.ready() is True  # ready answers 200; the contract is the gate's to check
    finally:
        server.shutdown()
        server.server_close()


def test_a_canary_rollout_with_a_url_with_a_path_is_invalid_and_nothing_moves() -> None:
    """Under the controller the same URL check names the CR's field (Ready=False), and the rollout is
    not recorded as a rollback of the model (the gate's "not live" was, before)."""
    from tests.integration.test_controller_gates import ticked, world

    api, client, clock, op = world("127.0.0.1:8000", "http://127.0.0.1:8000/triton")
    try:
        before = api.get("networking.istio.io", "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]
        obj, ready, route = ticked(api, clock, op, 2)
        assert ready["status"] == "False" and "spec.triton.canaryUrl" in ready["message"], ready
        assert "without a path" in ready["message"], ready
        assert obj["status"].get("phase") in (None, "", rl.PENDING), obj["status"]
        assert [d["weight"] for d in route] == [100, 0] and route == before
    finally:
        client.close()
        api.stop()


@pytest.mark.parametrize(("request_", "says"), [
    ({"features": [0.1] * 8}, "requests[0].features: shape [8], the model's input is [-1, 8] (the first dim is the "
                              "batch: wrap one row in [...])"),
    ({"features": [[0.1] * 7]}, "requests[0].features: shape [1, 7], the model's input is [-1, 8]"),
    ({"features": [[0.1] * 8] * 65}, "requests[0].features: batch of 65 rows, the model's max_batch_size is 64"),
    ({}, "requests[0]: input 'features' missing (the model requires it)"),
])
def test_a_sample_triton_would_refuse_is_said_of_the_sample_not_the_canary(
        triton_stable: TritonServer, triton_canary: TritonServer, request_: dict[str, Any], says: str,
        tmp_path: Path) -> None:
    """Triton's refusal read "canary ...: warm-up request 1 failed: unexpected shape for input
    'features'": a mistake in the samples, blamed on the model and recorded as its rollback."""
    (tmp_path / "warmup.json").write_text(json.dumps({"requests": [request_]}))
    gate = TritonGate(warmup_requests=1, sample_file="warmup.json")
    stable = TritonEndpoint(url=triton_stable.http_url, model=MODEL, role="stable")
    canary = TritonEndpoint(url=triton_canary.http_url, model=MODEL, role="canary")
    with pytest.raises(GateError) as err:
        preflight(stable, canary, gate, base_dir=tmp_path)
    assert str(err.value) == f"warm-up sample file {tmp_path / 'warmup.json'}: {says}"


def test_promote_refused_for_its_samples_aborts_it_is_no_verdict_on_the_canary(
        triton_stable: TritonServer, triton_canary: TritonServer, tmp_path: Path) -> None:
    """A sample file the model cannot take ended ROLLED_BACK, exit 1: "the canary is bad"."""
    from tests.unit.test_runner import make

    (tmp_path / "warmup.json").write_text(json.dumps({"requests": [{"features": [0.1] * 8}]}))
    gate = TritonGate(warmup_requests=1, sample_file="warmup.json")
    ctl, router, _, _ = make()
    ctl.gate = TritonGates(gate, model=MODEL, stable_url=triton_stable.http_url, canary_url=triton_canary.http_url,
                           base_dir=tmp_path)
    res = ctl.run()
    assert res.state.phase == rl.ABORTED and res.exit_code == 3, res.state
    assert res.state.reason.startswith("gate: warm-up sample file "), res.state.reason
    assert all(w.canary == 0 for k, w in router.log if k == "weights")


def test_under_the_controller_a_stable_down_before_traffic_aborts_naming_stable(triton_canary: TritonServer) -> None:
    """The controller hands `decide` the same words: ABORTED, the reason names stable, nothing moved."""
    from canary import crd
    from tests.integration.test_controller_gates import world

    api, client, clock, op = world(f"127.0.0.1:{refused_port()}", triton_canary.http_url)
    try:
        for _ in range(4):
            op.tick()
            clock.sleep(0.6)
        status = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")["status"]
        assert status["phase"] == rl.ABORTED and status["reason"].startswith("gate: stable Triton "), status
        assert status["weights"] == {"stable": 100, "canary": 0}
    finally:
        client.close()
        api.stop()

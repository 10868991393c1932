"""A real L7 data plane for the sandbox: HAProxy with weights set at run time.

In a cluster, Envoy sidecars split traffic by the VirtualService weights that
istiod pushes to them. Here HAProxy (Debian's 2.6) plays Envoy: one frontend on
127.0.0.1, one backend with a server per arm, and weights changed through the
admin socket (``set weight be/stable 90``) with no reload, so in-flight
requests are never dropped by a weight change. Weight 0 means no new traffic.

Every response carries ``X-Served-By: <server>``, so a client can count which
arm answered (the tests prove weights really move traffic with it).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import structlog

from canary.sandbox.tritonserver import free_port, spawn

log = structlog.get_logger(__name__)

BACKEND = "be"

_CONFIG = """\
global
    stats socket {sock} mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    retries 0  # a dead arm answers 503 at once, as a crashed pod would; no hidden retry to the other arm
    timeout client 30s
    timeout server 30s
    option http-keep-alive

frontend fe
    bind 127.0.0.1:{port}
    http-response set-header X-Served-By %s
    default_backend {backend}

backend {backend}
    balance roundrobin
{servers}
"""


class HAProxy:
    """Start/stop one HAProxy process; read and set per-server weights.

    ``servers`` maps server name -> "host:port"; initial weights default to
    100 for the first server and 0 for the rest (all traffic to stable).
    """

    def __init__(self, servers: dict[str, str], *, weights: dict[str, int] | None = None,
                 port: int = 0, workdir: Path | None = None, health_checks: bool = False) -> None:
        if not servers:
            raise ValueError("HAProxy needs at least one server")
        self.servers = dict(servers)
        first = next(iter(servers))
        self.initial = weights or {name: (100 if name == first else 0) for name in servers}
        self.port = port or free_port()
        self._own_port = not port  # picked here: picked again if another process binds it first
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="canary-haproxy-"))
        self.health_checks = health_checks
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def config_text(self) -> str:
        check = " check inter 1s fall 2 rise 1" if self.health_checks else ""
        lines = [
            f"    server {name} {addr} weight {int(self.initial.get(name, 0))}{check}"
            for name, addr in self.servers.items()
        ]
        return _CONFIG.format(sock=self.socket_path, port=self.port, backend=BACKEND, servers="\n".join(lines))

    def start(self, timeout: float = 10.0) -> "HAProxy":
        """Start HAProxy and wait until it listens. A port this object picked that another process
        took between the pick and HAProxy's bind (a parallel test worker) is picked again, twice at most."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                if not (self._own_port and attempt < 2 and "cannot bind" in str(exc).lower()):
                    raise
                log.warning("haproxy.port_taken", port=self.port)
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "HAProxy":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(self.config_text(), encoding="utf-8")
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config invalid:\n{check.stdout}{check.stderr}")
        with open(self.workdir / "haproxy.log", "ab") as out:
            # -db: foreground, no daemon, so the PID we hold is the process that serves.
            self.proc = spawn(["haproxy", "-db", "-f", str(cfg)], new_group=True, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited rc={self.proc.returncode}: {self._log_tail()}")
            # the admin socket answering proves HAProxy finished starting, its listeners bound: a port
            # another process holds answers a connect too, and the socket file can exist for a moment
            # before HAProxy exits on "cannot bind" (a CI run took such a port as HAProxy's)
            if self.socket_path.exists() and self._answers() and self.proc.poll() is None and _port_open(self.port):
                log.info("haproxy.started", pid=self.proc.pid, url=self.url, weights=self.initial)
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"haproxy not listening after {timeout}s: {self._log_tail()}")

    def _answers(self) -> bool:
        """Whether the admin socket answers `show info` (HAProxy up and serving)."""
        try:
            return bool(self.command("show info"))
        except OSError:
            return False

    def command(self, cmd: str) -> str:
        """One admin-socket command; returns HAProxy's answer (empty = OK for 'set')."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(self.socket_path))
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace").strip()

    def set_weight(self, server: str, weight: int) -> None:
        if server not in self.servers:
            raise KeyError(f"no haproxy server {server!r} (have {sorted(self.servers)})")
        if not 0 <= weight <= 256:
            raise ValueError(f"haproxy weight must be within 0..256, got {weight}")
        answer = self.command(f"set weight {BACKEND}/{server} {int(weight)}")
        if answer:
            raise RuntimeError(f"haproxy refused 'set weight {BACKEND}/{server} {weight}': {answer}")

    def set_weights(self, weights: dict[str, int]) -> None:
        # Raise the receiving server before lowering the other, so the total is never 0.
        for name, w in sorted(weights.items(), key=lambda kv: -kv[1]):
            self.set_weight(name, w)
        log.info("haproxy.weights_set", **{k: int(v) for k, v in weights.items()})

    def weights(self) -> dict[str, int]:
        """Current weights as HAProxy reports them (``get weight`` -> "90 (initial 100)")."""
        return {name: int(self.command(f"get weight {BACKEND}/{name}").split()[0]) for name in self.servers}

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: finish in-flight requests
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            log.info("haproxy.stopped", pid=self.proc.pid)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return (self.workdir / "haproxy.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


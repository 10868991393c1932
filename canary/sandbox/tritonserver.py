"""One real Triton Inference Server (PyTriton, CPU or GPU) per arm, in its own process.

Why a subprocess per arm: a canary and its stable run in different pods, and
the "crash" scenario must be able to kill one arm without touching the other
or the test process. The child runs ``python -m canary.sandbox.tritonserver
<config.json>``; the parent (:class:`TritonServer`) picks free ports, waits for
readiness, and stops the process group by its id.

Two facts from shared/reference/README.md are baked in: PyTriton's Python
backend stub needs ``LD_LIBRARY_PATH`` = the interpreter's LIBDIR when Python
is a pyenv/venv build, and ``PYTRITON_HOME`` must be a private temp dir.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # the child's own start: structlog without rich's printers, which it never calls (985)
    from canary import startup

    startup.import_structlog()

import structlog  # noqa: E402

from canary.sandbox.model import MODEL_NAME, Behaviour, write_behaviour
from canary.sandbox.ports import _bindable, free_port

log = structlog.get_logger(__name__)


def child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PYTRITON_HOME"] = str(home)
    # The child runs in its work dir: make sure it imports this very `canary` package.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# PyTriton binds a ZeroMQ IPC socket at
# ``$PYTRITON_HOME/workspace_XXXXXXXX/<model>_0_0-server.sock``; a Unix socket path
# holds at most 107 bytes (sizeof sockaddr_un.sun_path). Past that, the model's
# request server dies while Triton still reports the model ready, and every
# request is refused. So the home is never derived from the caller's work dir
# (pytest's are long and grow with the run number).
_SOCKET_TAIL = len("/workspace_XXXXXXXX/") + len(MODEL_NAME) + len("_0_0-server.sock")
_SUN_PATH_MAX = 107


def pytriton_home(arm: str) -> Path:
    """A fresh PYTRITON_HOME short enough for PyTriton's IPC socket path.

    Shape: ``<tmp>/canary-pt-<arm>-XXXXXXXX`` (created). Falls back to ``/tmp`` when
    ``$TMPDIR`` is too long. Raises ``RuntimeError`` (naming the path) if even
    that would overflow the 107-byte socket path limit.
    """
    for base in (tempfile.gettempdir(), "/tmp"):
        home = Path(tempfile.mkdtemp(prefix=f"canary-pt-{arm[:12]}-", dir=base))
        if len(str(home)) + _SOCKET_TAIL <= _SUN_PATH_MAX:
            return home
        home.rmdir()
    raise RuntimeError(f"PYTRITON_HOME {str(home)!r} is too long: PyTriton's socket path would pass "
                       f"{_SUN_PATH_MAX} bytes; set TMPDIR to a shorter directory")


def die_with_parent() -> None:
    """Child pre-exec: new process group, and SIGTERM when the parent dies (no orphans). Used only where
    util-linux's `setpriv` is missing (`spawn`)."""
    os.setpgrp()
    _pdeathsig_only()


def _pdeathsig_only() -> None:
    """Child pre-exec: SIGTERM when the parent dies (PR_SET_PDEATHSIG), in the parent's process group."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(cmd: list[str], *, new_group: bool, **kwargs: object) -> "subprocess.Popen[bytes]":
    """`subprocess.Popen(cmd, **kwargs)` of a server this process owns: SIGTERM when the parent (the thread that
    started it) dies, so a killed run leaves no orphan, and with `new_group` in a process group of its own.

    Set by util-linux's `setpriv --pdeathsig TERM`, which sets PR_SET_PDEATHSIG and execs `cmd` (the PID held is
    the server's), never by a `preexec_fn`: Python code in the child forces a plain fork(), whose atfork handlers
    gRPC runs in the child while other threads of this process call into it (tritonclient's gRPC channels), and
    the child then aborted before its exec (HAProxy "exited rc=-6: ... Epoll1Poller ... epoll_wait error: Bad
    file descriptor", a CI failure; decision 330). Without a preexec_fn CPython starts the child by vfork(), which
    runs no atfork handler. Without `setpriv` the preexec_fn is the fallback."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return subprocess.Popen(cmd, preexec_fn=die_with_parent if new_group else _pdeathsig_only,  # type: ignore[call-overload]
                                **kwargs)
    return subprocess.Popen([setpriv, "--pdeathsig", "TERM", "--", *cmd],  # type: ignore[call-overload]
                            **({"process_group": 0} if new_group else {}), **kwargs)


# Triton's own temporary directories (decision 184). Neither lies under PYTRITON_HOME, and Triton removes
# neither when it is killed, nor the second when it stops cleanly:
#   <tmp>/folderXXXXXX      Triton core's copy of the model PyTriton loads (config.pbtxt, 1/model.py, ...);
#                           each Python backend stub's argv[1] is <folder>/1/model.py.
#   /tmp/python_env_XXXXXX  the Python backend's EnvironmentManager: made empty when the backend initialises,
#                           0.3-31 ms after the folder (measured, 86 servers, 2 busy cores); /tmp is hard-coded
#                           in libtriton_python.so (TMPDIR is not read). No process names it: see paired_env.
TRITON_TMP = Path("/tmp")
_STUB = "triton_python_backend_stub"
_MODEL_TAIL = "/1/model.py"
_MKDTEMP_SUFFIX = re.compile(r"[A-Za-z0-9]{6}")  # the six characters glibc's mkdtemp puts for XXXXXX
ENV_WINDOW_NS = 500_000_000  # a python_env_ dir follows its server's folder by at most this (ctime, ns)


def _mkdtemp_name(name: str, prefix: str) -> bool:
    """Whether `name` is what mkdtemp makes of `<prefix>XXXXXX`."""
    return name.startswith(prefix) and _MKDTEMP_SUFFIX.fullmatch(name[len(prefix):]) is not None


def _group_pids(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`, read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            fields = (entry / "stat").read_text().rpartition(")")[2].split()  # the state follows "(comm)"
        except (OSError, ValueError):
            continue
        if fields and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _own_dir(path: Path) -> os.stat_result | None:
    """lstat of `path` when it is a directory (not a link to one) owned by this user; else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() else None


def stub_folders(pgid: int) -> list[Path]:
    """The model folders Triton made for process group `pgid`, from its Python backend stubs' command lines.

    A stub's argv[1] counts only when it is ``<tmp>/folderXXXXXX/1/model.py`` (``<tmp>``: /tmp or
    ``tempfile.gettempdir()``; a normalised absolute path) and that folder is a directory of this user
    (not a link) holding ``1/model.py`` as a regular file. [] when no stub runs (yet, or any more).
    """
    roots = {str(TRITON_TMP), os.path.normpath(tempfile.gettempdir())}
    found: list[Path] = []
    for pid in _group_pids(pgid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) < 2 or os.path.basename(os.fsdecode(argv[0])) != _STUB:
            continue
        model = os.fsdecode(argv[1])
        if not (model.endswith(_MODEL_TAIL) and os.path.isabs(model) and os.path.normpath(model) == model):
            continue
        folder = model[:-len(_MODEL_TAIL)]
        if os.path.dirname(folder) not in roots or not _mkdtemp_name(os.path.basename(folder), "folder"):
            continue
        try:
            is_file = stat.S_ISREG(os.lstat(model).st_mode)
        except OSError:
            continue
        if is_file and _own_dir(Path(folder)) is not None and Path(folder) not in found:
            found.append(Path(folder))
    return found


def tmp_creations(root: Path = TRITON_TMP) -> tuple[dict[str, int], dict[str, int]]:
    """Every ``folderXXXXXX`` and every ``python_env_XXXXXX`` directory in `root`, whoever made it:
    ({name: st_ctime_ns}, {name: st_ctime_ns}). Links and files are left out."""
    folders: dict[str, int] = {}
    envs: dict[str, int] = {}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return folders, envs
    for entry in entries:
        into = (folders if _mkdtemp_name(entry.name, "folder")
                else envs if _mkdtemp_name(entry.name, "python_env_") else None)
        if into is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            into[entry.name] = st.st_ctime_ns
    return folders, envs


def paired_env(folder: str, folders: dict[str, int], envs: dict[str, int],
               window_ns: int = ENV_WINDOW_NS) -> str | None:
    """The python_env_ directory the server whose model folder is `folder` made, told by creation times.

    `folders`/`envs`: :func:`tmp_creations` (name -> ctime in ns); `folder` is a key of `folders`. The
    directories made from two windows before `folder` to one window after it are read in time order, a
    folder before an env made in the same clock tick. Each env goes to the one
    folder made since the env before it; an env made while two or more folders wait goes to none (nor do
    those folders: which is whose cannot be told), and one made while none waits goes to none (its folder
    is gone). Returns the env `folder` gets, or None when it gets none, or when an env that went to no
    folder was made at or after `folder` within the window (a folder gone from /tmp could then have
    taken the place of `folder` in the order).
    """
    made = folders[folder]
    lo, hi = made - 2 * window_ns, made + window_ns
    events = sorted([(t, 0, name) for name, t in folders.items() if lo <= t <= hi]
                    + [(t, 1, name) for name, t in envs.items() if lo <= t <= hi])
    waiting: list[str] = []
    ours: str | None = None
    for t, kind, name in events:
        if kind == 0:
            waiting.append(name)
            continue
        if waiting == [folder]:
            ours = name
        elif not waiting and t >= made:
            return None
        waiting = []
    return ours


# Error lines every healthy CPU start writes (no GPU; PyTriton's generated config has no file time).
_BENIGN = ("CudaDriverHelper has not been initialized", "Failed to set config modification time",
           "CUDA driver version is insufficient")
_ERROR_LINE = re.compile(r"^E\d{4} |Traceback|Error\b|[Ee]rror:|[Ff]ailed|exited with failure")


def start_errors(text: str, limit: int = 15) -> list[str]:
    """The lines of a Triton start's log that say what went wrong: Triton's own ``E`` lines, Python
    tracebacks and errors, "failed", less :data:`_BENIGN` lines; the first `limit`, each cut to 400
    characters (a Python backend error carries its whole traceback on one line)."""
    found = [line[:400] for line in text.splitlines()
             if _ERROR_LINE.search(line) and not any(b in line for b in _BENIGN)]
    return found[:limit]


@dataclass
class TritonServer:
    """Parent-side handle on one arm's Triton process.

    ``arm`` names the process ("stable" / "canary"); ``version`` is the model
    version label carried by its metrics ("v1.0.0"). Triton's own model version
    is always 1: each arm is a separate server, as in separate pods. ``max_batch_size``
    0 serves the model without Triton's batching, its first dim dynamic ([-1, 8]).
    """

    arm: str
    version: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    workdir: Path | None = None
    max_batch_size: int = 64
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0  # Triton's own /metrics
    model_metrics_port: int = 0  # prometheus_client metrics of the model
    drift_profile: Path | None = None  # a training profile: the model also exports feature distributions
    native_histograms: bool = False  # latency as a Prometheus native histogram (protobuf exposition)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_after_s: float = 0.0
    own_workdir: bool = False  # created by start(); removed by stop()
    killed_at: float | None = None  # monotonic time of kill() (the "crash" fault's onset)
    home: Path | None = None  # PYTRITON_HOME: short, outside workdir (see pytriton_home); removed by stop()
    auto_ports: set[str] = field(default_factory=set)  # port fields start() picked (re-picked on a clash)
    _log_from: int = 0  # server.log offset where this start's output begins
    _triton_tmp: dict[Path, tuple[int, int]] = field(default_factory=dict)  # Triton's temp dirs: (st_dev, st_ino)
    _tmp_recorded: bool = False  # this start's temp dirs were looked for while a stub ran
    _envs_before: frozenset[str] = frozenset()  # python_env_ dirs in /tmp when this start began

    @property
    def triton_tmp(self) -> list[Path]:
        """Triton's own temp dirs of the server this handle started (its model folder ``<tmp>/folderXXXXXX``
        and, when :func:`paired_env` can tell it, ``/tmp/python_env_XXXXXX``), as recorded while it ran
        (:meth:`wait_ready`, else :meth:`terminate` / :meth:`kill`); :meth:`stop` removes them. Decision 184."""
        return list(self._triton_tmp)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def triton_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def model_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.model_metrics_port}/metrics"

    @property
    def knob_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "behaviour.json"

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "TritonServer":
        """Spawn the child; returns at once (call :meth:`wait_ready`)."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"canary-triton-{self.arm}-"))
            self.own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("http_port", "grpc_port", "metrics_port", "model_metrics_port"):
            if not getattr(self, name):
                setattr(self, name, free_port())
                self.auto_ports.add(name)
        write_behaviour(self.knob_file, self.behaviour)
        config = {
            "arm": self.arm, "version": self.version, "max_batch_size": self.max_batch_size,
            "http_port": self.http_port, "grpc_port": self.grpc_port, "metrics_port": self.metrics_port,
            "model_metrics_port": self.model_metrics_port, "knob_file": str(self.knob_file),
            "behaviour": json.loads(self.behaviour.to_json()),
            "drift_profile": str(self.drift_profile) if self.drift_profile else "",
            "native_histograms": self.native_histograms,
        }
        cfg = self.workdir / "config.json"
        cfg.write_text(json.dumps(config), encoding="utf-8")
        if self.home is None:
            self.home = pytriton_home(self.arm)
        home = self.home
        self._tmp_recorded = False
        self._envs_before = frozenset(tmp_creations()[1])
        self.started_at = time.monotonic()
        self._log_from = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as out:
            self.proc = spawn(
                [sys.executable, "-m", "canary.sandbox.tritonserver", str(cfg)], new_group=True,
                env=child_env(home), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.workdir),
            )
        log.info("triton.starting", arm=self.arm, version=self.version, pid=self.proc.pid, http_port=self.http_port)
        return self

    def is_ready(self, timeout: float = 0.5) -> bool:
        for path in ("/v2/health/ready", f"/v2/models/{MODEL_NAME}/ready"):
            try:
                with urllib.request.urlopen(self.http_url + path, timeout=timeout) as r:
                    if r.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 180.0, *, port_retries: int = 2) -> float:
        """Block until server and model are ready; seconds since start. Raises with the log tail.

        `timeout` is long on purpose: a start that fails (the process exits, PyTriton says it failed) is raised
        at once, so the bound is only for a start that hangs, and a loaded host (a CI suite's six workers on two
        cores) took 35 s for the sandbox's two servers; at 60 s a scenario failed once "not ready" (decision 481).
        A port start() picked that another process took meanwhile ("already in use") is picked
        again and the server restarted, `port_retries` times at most."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            failed = not self.alive() or "exited with failure" in self.log_tail(5)  # PyTriton lingers
            if failed and port_retries > 0 and self.auto_ports and (
                    _port_clash(self._this_start_log())
                    # the binary's "already in use" line can be lost: PyTriton said "exited with failure" and its
                    # output thread had not written the binary's last lines (a CI log ended mid-table); a port
                    # this start picked that 127.0.0.1 cannot bind now is one somebody holds
                    or any(not _bindable(getattr(self, name)) for name in self.auto_ports)):
                log.warning("triton.port_taken", arm=self.arm, http_port=self.http_port, grpc_port=self.grpc_port)
                self.stop(timeout=5.0, keep_files=True)
                for name in self.auto_ports:
                    setattr(self, name, 0)
                self.auto_ports.clear()
                self.start()
                port_retries -= 1
                continue
            if not self.alive():
                raise RuntimeError(f"triton {self.arm} exited (rc={self.proc and self.proc.returncode}):\n"
                                   f"{self.failure_report()}")
            if failed:
                raise RuntimeError(f"triton {self.arm}: Triton Inference Server failed to start:\n{self.failure_report()}")
            if self.is_ready() and _http_ok(self.model_metrics_url):
                if "RequestsServer will be closed" in self.log_tail(400):  # ready, yet every request fails
                    raise RuntimeError(f"triton {self.arm}: the model's request server died:\n{self.log_tail()}")
                self.ready_after_s = time.monotonic() - self.started_at
                self._record_triton_tmp()
                log.info("triton.ready", arm=self.arm, version=self.version, seconds=round(self.ready_after_s, 2),
                         rss_mb=round(self.rss_mb(), 1))
                return self.ready_after_s
            time.sleep(0.1)
        raise TimeoutError(f"triton {self.arm} not ready after {timeout}s:\n{self.failure_report()}")

    def set_behaviour(self, behaviour: Behaviour, *, settle: bool = True) -> None:
        """Change the running model's knobs; with ``settle``, return once they are in effect.

        The model re-reads its knob file at most every 200 ms, so settling waits 250 ms.
        """
        self.behaviour = behaviour
        write_behaviour(self.knob_file, behaviour)
        log.info("triton.behaviour_changed", arm=self.arm, **json.loads(behaviour.to_json()))
        if settle:
            time.sleep(0.25)

    def kill(self) -> None:
        """Crash the arm: SIGKILL to its whole process group (server, stubs, metrics)."""
        if self.alive():
            assert self.proc is not None
            self.killed_at = time.monotonic()
            self._record_triton_tmp()
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            log.warning("triton.killed", arm=self.arm, pid=self.proc.pid)

    def terminate(self) -> None:
        """Ask the arm to stop (SIGTERM to its group) without waiting; :meth:`stop` waits."""
        if self.proc is not None and self.alive():
            self._record_triton_tmp()
            _signal_group(self.proc.pid, signal.SIGTERM)

    def _record_triton_tmp(self) -> None:
        """Note this start's Triton temp dirs (see :attr:`triton_tmp`), once, while a stub of it runs: each
        model folder its stubs name (:func:`stub_folders`) and the python_env_ dir :func:`paired_env` gives
        it, when that one is new since :meth:`start`, of this user and empty."""
        if self._tmp_recorded or self.proc is None or not self.alive():
            return
        folders = stub_folders(self.proc.pid)
        if not folders:
            return  # no stub yet: looked for again at the next chance
        self._tmp_recorded = True
        made, envs = tmp_creations()
        for folder in folders:
            st = _own_dir(folder)
            if st is None:
                continue
            self._triton_tmp[folder] = (st.st_dev, st.st_ino)
            if folder.parent != TRITON_TMP or folder.name not in made:
                continue
            name = paired_env(folder.name, made, envs)
            if name is None or name in self._envs_before:
                continue
            env = TRITON_TMP / name
            st = _own_dir(env)
            try:
                empty = st is not None and not any(env.iterdir())
            except OSError:  # removed meanwhile
                continue
            if st is not None and empty:
                self._triton_tmp[env] = (st.st_dev, st.st_ino)

    def _remove_triton_tmp(self) -> int:
        """Remove the recorded Triton temp dirs that are still the very ones recorded (same device and
        inode); a python_env_ dir only while empty (rmdir). Returns how many were removed."""
        removed = 0
        for path, ident in self._triton_tmp.items():
            st = _own_dir(path)
            if st is None or (st.st_dev, st.st_ino) != ident:
                continue  # gone (a clean stop removes the folder) or not the one recorded
            try:
                if path.name.startswith("python_env_"):
                    path.rmdir()
                else:
                    shutil.rmtree(path)
            except OSError:
                continue
            removed += 1
        self._triton_tmp.clear()
        return removed

    def _this_start_log(self) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_from)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0, *, keep_files: bool = False) -> None:
        """SIGTERM (PyTriton stops Triton cleanly), then SIGKILL the group if needed.

        Once the group is gone, Triton's temp dirs of this start (:attr:`triton_tmp`) are removed, with
        `keep_files` too (a restart makes its own); without `keep_files` the work dir (when start() made
        it) and PYTRITON_HOME go as well."""
        if self.proc is None:
            return
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # leftovers (stubs) in the group, if any
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5.0
        while _group_pids(self.proc.pid) and time.monotonic() < deadline:  # SIGKILLed stubs: gone at once
            time.sleep(0.05)
        removed = self._remove_triton_tmp()
        log.info("triton.stopped", arm=self.arm, pid=self.proc.pid, triton_tmp_removed=removed)
        if keep_files:  # a restart follows (wait_ready after a port clash)
            return
        if self.own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def rss_mb(self) -> float:
        """Resident memory of the process group (server + Triton + stubs), in MB."""
        if self.proc is None:
            return 0.0
        total = 0
        for pid in _group_pids(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except (OSError, ValueError):
                continue
        return total / 1024.0

    def failure_report(self, lines: int = 30) -> str:
        """What a failed start says, for its error: this start's error lines (:func:`start_errors`), the
        full log's path (kept: ``stop`` removes the work dir only when ``start`` made it) and the log's tail."""
        errors = start_errors(self._this_start_log())
        head = ("errors in this start's log:\n" + "\n".join(errors) + "\n") if errors else ""
        return f"{head}full log: {self.log_file}\nlast {lines} lines:\n{self.log_tail(lines)}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(config_path: str) -> None:
    """Child side: model metrics endpoint + PyTriton, until SIGTERM/SIGINT."""
    import numpy as np
    from prometheus_client import start_http_server
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from canary.sandbox.model import INPUT_NAME, N_FEATURES, OUTPUT_NAME, USER_INPUT, ModelMetrics, RecModel

    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    behaviour = Behaviour.from_dict(cfg["behaviour"])
    profile = (json.loads(Path(cfg["drift_profile"]).read_text(encoding="utf-8"))
               if cfg.get("drift_profile") else None)
    metrics = ModelMetrics(model_name=MODEL_NAME, model_version=cfg["version"], drift_profile=profile,
                           native_histograms=bool(cfg.get("native_histograms")))
    native = metrics.native()
    if native:
        from canary.sandbox.exposition import serve as serve_protobuf

        serve_protobuf(cfg["model_metrics_port"], metrics.registry, native)
    else:
        start_http_server(cfg["model_metrics_port"], addr="127.0.0.1", registry=metrics.registry)
    model = RecModel(metrics=metrics, knob_file=Path(cfg["knob_file"]), initial=behaviour)
    if behaviour.device == "cuda":  # import torch and initialise CUDA now, not in the first user request
        from canary.sandbox.model import score

        score(np.zeros((1, N_FEATURES), dtype=np.float32), device="cuda")
    out_dtype = np.float64 if behaviour.schema == "bad" else np.float32
    triton_config = TritonConfig(
        http_address="127.0.0.1", http_port=cfg["http_port"],
        grpc_address="127.0.0.1", grpc_port=cfg["grpc_port"],
        metrics_address="127.0.0.1", metrics_port=cfg["metrics_port"], allow_metrics=True,
        allow_gpu_metrics=behaviour.device == "cuda", allow_cpu_metrics=True, metrics_interval_ms=1000,
        metrics_config=["summary_latencies=true"], log_verbose=0,
        exit_timeout_secs=2,  # keep-alive client connections must not hold a stop for 30 s
    )
    signal.signal(signal.SIGTERM, _interrupt)  # serve() turns KeyboardInterrupt into a clean stop
    # max_batch_size 0: a model without Triton's batching whose first dim is dynamic (-1, as ONNX exports
    # declare it): clients send the same [n, 8] requests, and Triton bounds n by nothing
    batching = cfg["max_batch_size"] > 0
    rows: tuple[int, ...] = () if batching else (-1,)
    with Triton(config=triton_config) as triton:
        triton.bind(
            model_name=MODEL_NAME, infer_func=model,
            inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=(*rows, N_FEATURES)),
                    *([Tensor(name=USER_INPUT, dtype=np.int64, shape=(*rows, 1), optional=True)]
                      if behaviour.schema == "user" else [])],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=out_dtype, shape=(*rows, 1))],
            config=(ModelConfig(max_batch_size=cfg["max_batch_size"]) if batching
                    else ModelConfig(batching=False)),
        )
        try:
            triton.serve()
        except KeyboardInterrupt:
            pass


def _port_clash(log_text: str) -> bool:
    """Whether a start failed for its ports: one taken by another process, or two of its own the same."""
    return "already in use" in log_text or "at the same address and port" in log_text


if __name__ == "__main__":
    _serve(sys.argv[1])

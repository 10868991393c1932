"""Triton's own temp dirs go with the TritonServer that started them (decision 184).

Triton core copies the model PyTriton loads into ``/tmp/folderXXXXXX`` and the Python backend makes an empty
``/tmp/python_env_XXXXXX`` (the path hard-coded); neither lies under PYTRITON_HOME. Every start left both
behind: the python_env_ dir at a clean stop, both after a kill (the sandbox's "crash"). Real Triton on CPU.

The test knows each server's dirs on its own: the folder from the running stub's command line (read here
from /proc), the python_env_ dir as the one made in /tmp within half a second after that folder, new since
the server started. When another Triton on this host loaded a model in that same moment (the picture is not
quiet), which env is whose cannot be told, by the test nor by the server: the env is then not required gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.sandbox.tritonserver import TritonServer
from tests.support.triton import _need_pytriton

TRITON_TMP = Path("/tmp")  # libtriton_python.so's python_env_ dirs go here whatever TMPDIR says
WINDOW_NS = 500_000_000  # an env follows its folder by 0.3-31 ms (measured): half a second is plenty


def _python_envs() -> set[str]:
    return {p.name for p in TRITON_TMP.glob("python_env_*")}


def _ctime(path: Path) -> int | None:
    try:
        return path.stat().st_ctime_ns
    except OSError:  # removed meanwhile (another server's stop)
        return None


def _stub_folder(server: TritonServer) -> Path:
    """The model folder the server's Python backend stub runs: argv[1] is <folder>/1/model.py."""
    assert server.pid is not None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != server.pid:
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv[0].endswith(b"/triton_python_backend_stub"):
            return Path(os.fsdecode(argv[1])).parents[1]
    raise AssertionError(f"no Python backend stub runs in process group {server.pid}")


def _started(name: str, workdir: Path, servers: list[TritonServer]) -> tuple[TritonServer, Path, Path | None]:
    """A ready server, its model folder, and its python_env_ dir (None when the picture is not quiet)."""
    before = _python_envs()
    server = TritonServer(name, "v1.0.0", workdir=workdir).start()
    servers.append(server)  # stopped by the fixture whatever happens next
    server.wait_ready()
    folder = _stub_folder(server)
    made = folder.stat().st_ctime_ns
    near = [TRITON_TMP / e for e in _python_envs() - before
            if made <= (_ctime(TRITON_TMP / e) or 0) <= made + WINDOW_NS]
    others = [p for p in TRITON_TMP.glob("folder*")
              if p != folder and abs((_ctime(p) or 0) - made) <= 2 * WINDOW_NS]
    return server, folder, near[0] if len(near) == 1 and not others else None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[TritonServer]]:
    _need_pytriton()
    started: list[TritonServer] = []
    yield started
    for server in started:
        server.stop()


def test_a_stopped_or_killed_server_leaves_no_triton_temp_dirs_and_spares_the_others(
        servers: list[TritonServer], tmp_path: Path) -> None:
    first, first_folder, first_env = _started("tmp-a", tmp_path / "a", servers)
    second, second_folder, second_env = _started("tmp-b", tmp_path / "b", servers)  # loads seconds after the first
    for folder, env in ((first_folder, first_env), (second_folder, second_env)):
        assert (folder / "1" / "model.py").is_file()
        assert env is None or (env.is_dir() and not any(env.iterdir()))

    first.stop()  # SIGTERM: PyTriton stops Triton cleanly
    assert not first_folder.exists()
    if first_env is not None:
        assert not first_env.exists()
    # the server beside it keeps its own, and still answers
    assert (second_folder / "1" / "model.py").is_file() and second.is_ready()
    if second_env is not None:
        assert second_env.is_dir()

    second.kill()  # the sandbox's "crash": SIGKILL to the group, then stop() as the sandbox does
    second.stop()
    assert not second_folder.exists()
    if second_env is not None:
        assert not second_env.exists()

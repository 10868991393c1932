"""What a user installs (issue 11, packaging): the wheel's name, its dependencies and extras, and
a sandbox that runs from the installed package rather than from a source checkout."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: Any) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=240)
    (path,) = out.glob("*.whl")
    return path


def _metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def _requires(meta: Any, extra: str | None) -> list[str]:
    out = []
    for req in meta.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        if (extra is None and not marker) or (extra is not None and f'extra == "{extra}"' in marker):
            out.append(spec.strip())
    return out


def test_the_distribution_has_a_free_name_and_the_core_allows_numpy_2(wheel: Path) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == "modelcanary" and wheel.name.startswith("modelcanary-")
    core = _requires(meta, None)
    numpy = [r for r in core if r.startswith("numpy")]
    assert numpy and "<2" not in numpy[0].replace(" ", ""), numpy  # the pin belongs to the sandbox extra
    assert not any(r.startswith("tritonclient") for r in core), core  # the Triton gates' extra
    assert any(r.startswith("tritonclient") for r in _requires(meta, "triton"))
    sandbox = " ".join(_requires(meta, "sandbox"))
    for needed in ("nvidia-pytriton", "numpy<2", "kmock", "modelcanary[drift,report,triton]"):
        assert needed in sandbox.replace(" ", ""), (needed, sandbox)


def test_the_sandbox_runs_from_the_installed_package_not_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked in an empty directory, imported with the checkout out of reach: the demo's
    policy and Istio objects are inside the package."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    probe = (
        "import canary.policy, pathlib\n"
        "from canary.sandbox.demo import SANDBOX_POLICY\n"
        "from canary.sandbox.env import ISTIO_DIR, istio_objects\n"
        "from canary.policy import load_policy\n"
        f"assert pathlib.Path(canary.policy.__file__).is_relative_to({str(site)!r}), canary.policy.__file__\n"
        "p = load_policy(SANDBOX_POLICY)\n"
        "objs = istio_objects(ISTIO_DIR, stable_version='v1', canary_version='v2')\n"
        "print(len(p.steps), sorted(o['kind'] for o in objs))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-P", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DestinationRule" in r.stdout and "VirtualService" in r.stdout


def test_a_triton_gate_without_tritonclient_is_refused_before_traffic_moves(monkeypatch: Any) -> None:
    from canary.errors import ConfigError
    from canary.gates import TritonGates
    from canary.policy import TritonGate

    for mod in ("tritonclient", "tritonclient.http", "tritonclient.grpc"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import tritonclient.http` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'modelcanary\[triton\]'"):
        TritonGates(TritonGate(), model="m", stable_url=None, canary_url="http://127.0.0.1:1", base_dir=ROOT)


def test_setup_installs_the_extras_the_suite_needs() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"sandbox", "test", "triton", "drift", "report"} <= set(extras)
    assert "'.[sandbox,test]'" in (ROOT / "scripts" / "setup.sh").read_text()


def test_setup_refuses_a_python_older_than_3_11_naming_the_override(tmp_path: Path) -> None:
    """`PYTHON=python3.10 scripts/setup.sh` built a .venv that pip then refused ("requires a different Python"),
    and every later run, with any Python, kept that .venv and failed the same way (a newcomer's finding). Now
    an interpreter that is not Python 3.11+ is refused first, naming PYTHON=, and a .venv of an older Python
    is rebuilt. Run from a copy of the script in an empty directory: nothing of the checkout is touched."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup.sh"
    script.write_text((ROOT / "scripts" / "setup.sh").read_text())
    r = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": "/bin/false"}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "/bin/false is not a Python; canary needs Python 3.11 or later" in r.stderr
    assert "PYTHON=/path/to/python3.11" in r.stderr and not (tmp_path / ".venv").exists()


def test_the_demo_setup_installs_no_test_only_apt_package(tmp_path: Path) -> None:
    """`bash scripts/demo.sh` on a fresh machine installed chromium (the report's browser tests) and jq (a docs test)
    with apt, which the demo never runs (a newcomer's finding, decision 717). `setup.sh --demo`, as demo.sh calls it,
    asks apt for what the sandbox runs alone; plain `setup.sh` (test.sh, CI) for the test-only packages too. apt-get
    and the sandbox's binaries are stubs on a PATH without chromium and jq; PYTHON=/bin/false stops it after apt."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup.sh"
    script.write_text((ROOT / "scripts" / "setup.sh").read_text())
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "apt.log"
    stubs = {"apt-get": f'echo "$@" >> {log}', "sudo": 'exec "$@"', "prometheus": "", "promtool": "", "haproxy": ""}
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    for tool in ("dirname", "id"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(bin_), "PYTHON": "/bin/false"}
    asked = {}
    for args in ([], ["--demo"]):
        log.unlink(missing_ok=True)
        r = subprocess.run(["/bin/bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr  # stopped at the Python check, after apt
        asked[" ".join(args)] = log.read_text() if log.exists() else ""
    assert "chromium" in asked[""] and "jq" in asked[""], asked
    assert "install" not in asked["--demo"] and "chromium" not in asked["--demo"], asked  # nothing else missing
    assert '"$root/scripts/setup.sh" --demo' in (ROOT / "scripts" / "demo.sh").read_text()


def test_setup_gives_uv_the_index_settings_pip_would_use(tmp_path: Path) -> None:
    """setup.sh installs with uv (decision 883), which reads neither pip.conf nor PIP_*: scripts/uv_args.py turns
    `pip config list` into uv's arguments. The environment wins over `install`, `install` over `global`; list
    settings keep every entry; a local location that is not there is left out (pip warns and goes on, uv stops);
    pip's best-version-over-every-index is asked for always."""
    from scripts import uv_args

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    text = "\n".join([
        "global.index-url='https://mirror.example/simple'",
        "install.index-url='https://install.example/simple'",
        f"global.extra-index-url='file://{tmp_path}/gone/simple https://extra.example/simple'",
        f":env:.find-links='{wheels} /nowhere/wheels'",
        "global.find-links='/ignored/for/env'",
        "global.constraint='/etc/not-here.txt'",
        "global.timeout='60'",
        "not a setting line",
    ])
    conf = uv_args.settings(text)
    assert conf["index-url"] == "https://install.example/simple" and conf["find-links"].startswith(str(wheels))
    args = uv_args.arguments(conf)
    assert args == ["--index-strategy", "unsafe-best-match", "--index-url", "https://install.example/simple",
                    "--extra-index-url", "https://extra.example/simple", "--find-links", str(wheels)]
    assert uv_args.arguments({}) == ["--index-strategy", "unsafe-best-match"]


def test_setup_falls_back_to_pip_and_can_be_told_to_use_it(tmp_path: Path) -> None:
    """uv failing (not on the index asked, a proxy only pip is configured for) installs with pip, saying so;
    CANARY_SETUP_INSTALLER=pip skips uv. Run from a copy of the script whose `.venv/bin/python` is a stub that
    logs what it is asked and fails `pip install uv` (or, second, uv's install); the real install is what every
    CI run of a clean clone does."""
    (tmp_path / "scripts").mkdir()
    for name in ("setup.sh", "uv_args.py"):
        (tmp_path / "scripts" / name).write_text((ROOT / "scripts" / name).read_text())
    (tmp_path / "pyproject.toml").write_text("")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("prometheus", "promtool", "haproxy", "chromium", "jq"):
        (bin_ / name).write_text("#!/bin/sh\n")
        (bin_ / name).chmod(0o755)
    for tool in ("dirname", "id", "sha256sum", "cut", "cat"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    (bin_ / "python3").symlink_to(os.path.realpath(sys.executable))  # not a shim that needs its own PATH
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    log = tmp_path / "calls.log"
    stub = venv_bin / "python"
    outcomes = {}
    for fail, installer in (("install -q uv", "uv"), ("-m uv pip install", "uv"), ("", "pip")):
        stub.write_text(f"""#!/bin/sh
case "$1" in -c) exec python3 "$@";; esac
echo "$*" >> {log}
case "$*" in *"{fail or 'NEVER'}"*) exit 1;; esac
exit 0
""")
        stub.chmod(0o755)
        log.unlink(missing_ok=True)
        (tmp_path / ".venv" / ".canary-installed").unlink(missing_ok=True)
        r = subprocess.run(["/bin/bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True,
                           env={**os.environ, "PATH": str(bin_), "CANARY_SETUP_INSTALLER": installer}, timeout=60)
        assert r.returncode == 0, r.stderr
        calls = log.read_text().splitlines()
        outcomes[(fail, installer)] = (calls, r.stderr)
        assert calls[-1] == "-m pip install -q -e .[sandbox,test]", calls  # pip installed them
        assert (tmp_path / ".venv" / ".canary-installed").exists()
    calls, err = outcomes[("install -q uv", "uv")]
    assert "uv could not install them; installing with pip" in err and not any("-m uv" in c for c in calls)
    calls, err = outcomes[("-m uv pip install", "uv")]
    assert "uv could not install them" in err and any("-m uv pip install" in c for c in calls)
    calls, err = outcomes[("", "pip")]
    assert "uv" not in err and not any("uv" in c for c in calls), calls

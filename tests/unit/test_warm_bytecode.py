"""The test command writes the bytecode of the libraries the product imports lazily before its workers start
(decision 1040): with CI's PYTHONDONTWRITEBYTECODE, every `canary` process and sandbox server child compiled them
from source. Nothing here times anything; what is checked is that the step runs, where, and that its list still
names modules the libraries have."""

from __future__ import annotations

import importlib.util
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import warm_bytecode  # noqa: E402

sys.path.remove(str(ROOT / "scripts"))


def test_the_test_command_warms_the_lazily_imported_libraries_before_its_workers_start() -> None:
    lines = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    warm = [i for i, line in enumerate(lines) if "scripts/warm_bytecode.py" in line and not line.startswith("#")]
    workers = [i for i, line in enumerate(lines) if line.startswith("exec ") and " -n " in line]
    assert len(warm) == 1 and len(workers) == 1 and warm[0] < workers[0], (warm, workers)
    # with bytecode writing on for that one process, whatever CI's environment sets
    assert re.match(r"PYTHONDONTWRITEBYTECODE= \.venv/bin/python scripts/warm_bytecode\.py\b", lines[warm[0]])


@pytest.mark.parametrize("spec", warm_bytecode.MODULES)
def test_each_warmed_module_is_one_its_library_has(spec: str) -> None:
    """A library that renamed a module would leave it compiled from source again, silently: the name must resolve
    where the library is installed (found, not imported: the list's imports are the script's, not this test's)."""
    name, _, attr = spec.partition(":")
    top = name.split(".")[0]
    if importlib.util.find_spec(top) is None:
        pytest.skip(f"{top} is not installed (an extra left out)")
    assert importlib.util.find_spec(name) is not None, spec
    if attr:  # kubernetes.client's API classes, loaded by its module __getattr__ from this list
        assert attr in importlib.import_module(name).__all__, spec


def test_the_script_refuses_to_run_where_it_would_write_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with pytest.raises(SystemExit, match="bytecode writing is off"):
        runpy.run_path(str(ROOT / "scripts" / "warm_bytecode.py"), run_name="__main__")


def test_a_module_not_installed_or_gone_is_named_not_raised() -> None:
    assert warm_bytecode.warm(("json", "no_such_library_h_suite2.sub", "json:no_such_name", "json:dumps")) == [
        "no_such_library_h_suite2.sub", "json:no_such_name"]


def test_an_import_failing_otherwise_is_named_and_the_rest_of_the_list_still_warmed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tritonclient installed without its grpc extra raises RuntimeError at `import tritonclient.grpc` (so does
    `.http` without its own): the script stopped there, and every module after it in the list (PyTriton, ZeroMQ,
    gRPC) went unwarmed, silently (test.sh sends its output nowhere). Decision 1035."""
    (tmp_path / "extra_left_out_h_rsuite.py").write_text(
        'raise RuntimeError("The installation does not include grpc support")\n')
    (tmp_path / "warmed_after_h_rsuite.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("extra_left_out_h_rsuite", "warmed_after_h_rsuite"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert warm_bytecode.warm(("extra_left_out_h_rsuite", "warmed_after_h_rsuite")) == ["extra_left_out_h_rsuite"]
    assert "warmed_after_h_rsuite" in sys.modules


def test_every_kubernetes_api_class_canary_makes_is_warmed() -> None:
    """The list gone stale: canary/ making another of the client's API classes (each is generated code of its own,
    CoreV1Api 4.5 MB of source) that the list does not name leaves it compiled from source by every process that
    makes it, which no other test would see. Decision 1035."""
    named = set()
    for path in (ROOT / "canary").rglob("*.py"):
        named |= set(re.findall(r"\b(?:[A-Z][A-Za-z0-9]*V\d[A-Za-z0-9]*Api|CustomObjectsApi|VersionApi|ApisApi)\b",
                                path.read_text()))
    named.discard("CoreV1")
    warmed = {spec.partition(":")[2] for spec in warm_bytecode.MODULES if spec.startswith("kubernetes.client:")}
    assert "CoreV1Api" in named and named <= warmed, sorted(named - warmed)

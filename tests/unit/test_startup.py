"""`canary.startup.after_import`: a call made once a module loads, not before (decision 985)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from canary import startup


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "canary_startup_probe.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("canary_startup_probe", None)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, startup._AfterImport)]


def test_the_call_waits_for_the_modules_import_and_is_made_once(module_dir: Path) -> None:
    seen: list[Any] = []
    startup.after_import("canary_startup_probe", seen.append)
    startup.after_import("canary_startup_probe", seen.append)  # asked again before it loads: still one call
    assert seen == [] and "canary_startup_probe" not in sys.modules
    module = importlib.import_module("canary_startup_probe")
    assert seen == [module] and module.VALUE == 1
    assert not any(isinstance(f, startup._AfterImport) for f in sys.meta_path)  # the finder is gone once used


def test_a_module_already_loaded_gets_the_call_at_once(module_dir: Path) -> None:
    module = importlib.import_module("canary_startup_probe")
    seen: list[Any] = []
    startup.after_import("canary_startup_probe", seen.append)
    assert seen == [module]

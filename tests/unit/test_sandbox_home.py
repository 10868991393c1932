"""PYTRITON_HOME stays short enough for PyTriton's IPC socket, whatever TMPDIR is."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from canary.sandbox import tritonserver as ts


@pytest.mark.parametrize("depth", [0, 40, 120])
def test_home_fits_the_socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    base = tmp_path / ("d" * depth) if depth else tmp_path
    base.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    home = ts.pytriton_home("bad_schema")
    try:
        assert home.is_dir()
        assert len(str(home)) + ts._SOCKET_TAIL <= 107
        assert "bad_schema" in home.name
    finally:
        home.rmdir()


def test_two_homes_are_distinct() -> None:
    a, b = ts.pytriton_home("stable"), ts.pytriton_home("stable")
    try:
        assert a != b
    finally:
        a.rmdir()
        b.rmdir()

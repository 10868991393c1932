"""Decision 128: `canary promote --interrupt-grace` (decision 126) given a grace nothing fits in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests.unit.test_validation_attack2 import files  # noqa: F401 - the fixture


@pytest.mark.parametrize("grace", ["1ms", "0.01", "49ms", "500ms"])
def test_a_grace_no_rollback_fits_in_is_refused_before_anything_is_read(files: tuple[Path, Path], grace: str) -> None:
    """`--interrupt-grace 1ms` (or `0.01`, read as seconds) was taken. After a signal no request could be
    sent (none is with under 50 ms left): every interrupt ended in exit 6, traffic split, no rollback even
    tried. Refused now with exit 2 and the -o json document, before any request (the kubeconfig points at a
    closed port)."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   "--interrupt-grace", grace, "-o", "json"])
    assert res.exit_code == 2, res.output
    assert "is too short" in res.output and "give at least 1s" in res.output, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    assert doc["exit_code"] == 2 and "--interrupt-grace" in doc["error"], doc


def test_a_grace_of_one_second_is_taken(files: tuple[Path, Path]) -> None:
    """1s passes the check (the next one refuses `--timeout` here, so nothing runs in this process)."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   "--interrupt-grace", "1s", "--timeout", "30m"])
    assert res.exit_code == 2 and "--timeout only applies with --via-controller" in res.output, res.output
    assert "too short" not in res.output, res.output

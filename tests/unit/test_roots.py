"""`canary.analysis.roots.brentq` is scipy.optimize.brentq: the same roots, the same errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import optimize

from canary.analysis import roots
from canary.analysis.sequential import log_mixture

CASES = [
    (lambda x: x ** 3 - x - 2.0, 1.0, 2.0, 1e-12),
    (lambda x: math.cos(x) - x, 0.0, 1.0, 1e-7),
    (lambda x: math.exp(x) - 5.0, -3.0, 4.0, 1e-5),
    (lambda x: math.atan(x - 0.3), -50.0, 80.0, 1e-9),
    (lambda x: x - 1e-300, 0.0, 1.0, 1e-12),  # a root near 0
    (lambda x: (x - 2.5) ** 5, 0.0, 10.0, 1e-6),  # a flat root
    (lambda x: 1.0 if x > 0.7 else -1.0, 0.0, 1.0, 1e-9),  # a jump: the solver returns the step
    (lambda x: log_mixture(x * math.sqrt(400.0), 400.0, 200.0) - math.log(100.0), 0.0, 8.0, 1e-6),  # as the judge
]


@pytest.mark.parametrize("f, a, b, xtol", CASES)
def test_the_same_root_as_scipy_optimize(f, a, b, xtol):
    assert roots.brentq(f, a, b, xtol=xtol) == optimize.brentq(f, a, b, xtol=xtol)


def test_the_fast_path_is_taken_with_the_scipy_the_project_installs():
    assert roots._fast() is not None  # noqa: SLF001 - else scipy.optimize is imported: heavier, not wrong


def test_the_same_errors_as_scipy_optimize():
    for kw in ({"xtol": 0.0}, {"rtol": 1e-20}):
        with pytest.raises(ValueError, match="too small"):
            roots.brentq(lambda x: x, -1.0, 1.0, **kw)
    with pytest.raises(ValueError, match="different signs"):
        roots.brentq(lambda x: x * x + 1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        roots.brentq(lambda x: math.nan if x > 0.1 else -1.0, -1.0, 1.0)
    with pytest.raises(RuntimeError):
        roots.brentq(lambda x: math.atan(x - 0.3), -50.0, 80.0, xtol=1e-12, maxiter=3)


def test_without_the_fast_path_it_calls_scipy_optimize(monkeypatch):
    monkeypatch.setattr(roots, "_fast", lambda: None)
    for f, a, b, xtol in CASES:
        assert roots.brentq(f, a, b, xtol=xtol) == optimize.brentq(f, a, b, xtol=xtol)


def test_a_controller_does_not_import_scipy_optimize():
    code = ("import sys, canary.controller, canary.cli; "
            "print(sorted(m for m in ('scipy.optimize', 'scipy.stats', 'scipy.sparse', 'scipy.linalg') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"

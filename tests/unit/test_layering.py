"""canary/analysis, canary/rollout.py and the drift statistics must stay pure: no I/O imports.

Walks the AST (no import side effects) of every module there and fails on any
import of a package that does I/O, talks to the cluster, or reads clocks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "kubernetes", "prometheus_api_client", "requests", "urllib3", "tritonclient", "socket", "time",
    "structlog", "canary.routing", "canary.metrics", "canary.runner", "canary.controller", "canary.cli",
    "httpx", "urllib.request", "subprocess", "datetime",
)


def _pure_modules() -> list[Path]:
    files = sorted((ROOT / "canary" / "analysis").glob("*.py"))
    rollout = ROOT / "canary" / "rollout.py"
    drift = [ROOT / "canary" / "drift" / f for f in ("stats.py", "compare.py", "monitor.py")]  # drift statistics are pure too
    # the serve sessions' sequential bookkeeping and the per-look history document are pure as well
    state = [ROOT / "canary" / f for f in ("serve_session.py", "history.py")]
    return files + ([rollout] if rollout.exists() else []) + [f for f in drift + state if f.exists()]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layer_imports_nothing_that_does_io(path):
    bad = [n for n in _imports(path) if _forbidden(n)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: analysis/rollout must stay pure"


def test_the_check_itself_catches_a_forbidden_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import time\nfrom canary.metrics import prometheus\nfrom canary import cli\n")
    assert [n for n in _imports(f) if _forbidden(n)] == ["time", "canary.metrics", "canary.metrics.prometheus",
                                                         "canary.cli"]

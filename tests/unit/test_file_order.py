"""The test files go to scripts/test.sh's workers longest first (tests/support/file_order.py, decision 1029)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.file_order import UNLISTED_S_PER_TEST, WEIGHTS, load_weights, longest_first

ROOT = Path(__file__).resolve().parents[2]


def test_files_go_longest_first_each_files_tests_in_their_own_order() -> None:
    ids = ["tests/unit/a.py::t1", "tests/unit/a.py::t2", "tests/e2e/b.py::t1", "tests/unit/c.py::t1",
           "tests/unit/c.py::t2", "tests/unit/c.py::t3", "tests/unit/a.py::t3", "tests/unit/d.py::t1"]
    weights = {"tests/e2e/b.py": 90.0, "tests/unit/a.py": 2.0}
    order = [ids[i] for i in longest_first(ids, weights)]
    # b 90 s; a 2 s (listed, whatever its count); c unlisted: 3 tests x 0.2 s; d unlisted: 1 x 0.2 s
    assert order == ["tests/e2e/b.py::t1", "tests/unit/a.py::t1", "tests/unit/a.py::t2", "tests/unit/a.py::t3",
                     "tests/unit/c.py::t1", "tests/unit/c.py::t2", "tests/unit/c.py::t3", "tests/unit/d.py::t1"]
    assert UNLISTED_S_PER_TEST * 3 < 2.0


def test_files_of_equal_weight_keep_the_collection_order() -> None:
    ids = ["z.py::a", "y.py::a", "x.py::a"]
    assert longest_first(ids, {}) == [0, 1, 2]
    assert longest_first(ids, {"z.py": 1.0, "y.py": 1.0, "x.py": 1.0}) == [0, 1, 2]


def test_a_missing_or_broken_table_is_pytests_own_order(tmp_path: Path) -> None:
    assert load_weights(tmp_path / "none.json") == {}
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert load_weights(tmp_path / "bad.json") == {}
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    assert load_weights(tmp_path / "list.json") == {}
    (tmp_path / "mixed.json").write_text(json.dumps({"a.py": 3, "b.py": "x"}), encoding="utf-8")
    assert load_weights(tmp_path / "mixed.json") == {"a.py": 3.0}


def test_the_table_is_readable_and_names_the_suites_longest_files() -> None:
    table = load_weights(WEIGHTS)
    assert len(table) > 100
    assert table.get("tests/e2e/test_scenarios.py", 0) > 30  # a sandbox file: among the longest


def test_a_worker_collects_the_heavier_file_first_and_a_single_process_keeps_pytests_order() -> None:
    table = load_weights(WEIGHTS)
    light, heavy = "tests/unit/test_ci_job.py", "tests/unit/test_policy_strict.py"  # alphabetical: light first
    assert table[heavy] > table[light]

    def collected(worker: str | None) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
        if worker:
            env["PYTEST_XDIST_WORKER"] = worker
        out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                              "-p", "no:xdist", light, heavy], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        files = [line.split("::")[0] for line in out.stdout.splitlines() if "::" in line]
        return list(dict.fromkeys(files))

    assert collected("gw0") == [heavy, light]
    assert collected(None) == [light, heavy]


def test_the_test_command_keeps_the_collection_order_of_files() -> None:
    """Without `--no-loadscope-reorder`, xdist sorts the files by their number of tests and this order is lost."""
    text = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    last = text[text.index("exec .venv/bin/python -m pytest"):]
    assert "--dist loadfile" in last and "--no-loadscope-reorder" in last

"""The order in which scripts/test.sh's workers get the test files: the longest first (decision 1029).

pytest-xdist's `--dist loadfile` hands each worker one file at a time, in the order of the scopes it was given;
by default (`--loadscope-reorder`) it sorts the files by their number of tests, most first. That put this suite's
longest files last: the end-to-end files hold one to ten tests each, so the sandbox's sigkill test (95 s), the
failover test and `test_demo_keep` started 750 s into a 880 s run, and one worker ran them alone for the last 76 s
while the others had finished. scripts/test.sh passes `--no-loadscope-reorder`, so the files go out in collection
order, and this hook collects them longest first (the longest-processing-time rule), each file's tests in their
own order: the run ends on short unit files, which even out the workers.

Each file's length is its tests' wall seconds in an earlier run, `tests/suite_weights.json`, written by
`python scripts/suite_cpu.py <CANARY_TEST_CPU_LOG file> --weights tests/suite_weights.json`; a file not listed
counts 0.2 s a test. A stale table changes only how evenly the workers end, never which tests run or what they
see. Only xdist's workers reorder (`PYTEST_XDIST_WORKER`): a run in one process keeps pytest's own order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

WEIGHTS = Path(__file__).resolve().parent.parent / "suite_weights.json"
UNLISTED_S_PER_TEST = 0.2


def longest_first(nodeids: list[str], weights: dict[str, float]) -> list[int]:
    """Indices of `nodeids` (pytest node ids, "path::name[...]") ordered by their file's weight, heaviest first:
    a file's weight is `weights[path]` (seconds), else UNLISTED_S_PER_TEST for each of its tests; files of equal
    weight, and the tests of one file, keep their order in `nodeids`."""
    files: dict[str, list[int]] = {}
    for index, nodeid in enumerate(nodeids):
        files.setdefault(nodeid.split("::", 1)[0], []).append(index)
    ranked = sorted(files.items(), key=lambda kv: -weights.get(kv[0], UNLISTED_S_PER_TEST * len(kv[1])))
    return [index for _, indices in ranked for index in indices]


def load_weights(path: Path = WEIGHTS) -> dict[str, float]:
    """The table's {file: seconds}; {} where it is missing or unreadable (pytest's own order then)."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float))} if isinstance(table, dict) \
        else {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    order = longest_first([item.nodeid for item in items], load_weights())
    items[:] = [items[i] for i in order]

"""Per-test CPU, for finding what makes the suite slow (not a test; on only with `CANARY_TEST_CPU_LOG=<file>`).

The suite runs six workers on two cores, so its wall time follows the CPU it spends, not its waits. Each test's
line gives its wall seconds and the CPU seconds its worker spent (`self`) and that its worker's reaped children
spent (`children`: servers, CLI subprocesses; a module's servers count at the test whose teardown stops them),
with the time it ended and its xdist worker (for each worker's timeline and idle tail).
`scripts/suite_cpu.py <file>` sums the lines by test file.
"""

import json
import os
import resource
import time
from collections.abc import Iterator

import pytest

_LOG = os.environ.get("CANARY_TEST_CPU_LOG", "")


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not _LOG:
        yield
        return
    wall, (own, kids) = time.monotonic(), _cpu()
    yield
    own_after, kids_after = _cpu()
    line = {"test": item.nodeid, "wall": round(time.monotonic() - wall, 3), "self": round(own_after - own, 3),
            "children": round(kids_after - kids, 3), "end": round(time.time(), 1),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "")}
    with open(_LOG, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")

"""Shared fixtures live in tests/support/, one module per real component.

Logs never go to stdout (stdout is for a command's requested output only). structlog's own
default prints to stdout, so a logger used before any command configured logging -- e.g. a
notifier thread left retrying by an earlier test -- would print into a later in-process
command's captured stdout. The suite starts with the product's configuration, on stderr, and
every test gets it back afterwards: an in-process command configures logging onto its runner's
stream, which is closed once the command returns, and every later log line would then fail
("I/O operation on closed file").

Hypothesis runs derandomized (the same examples every run, no example database): a suite
whose result depends on which random examples a run happens to draw is flaky by definition.
`HYPOTHESIS_PROFILE=explore` draws fresh examples, for hunting new counterexamples by hand;
each one found becomes an explicit test case.
"""

import os
import sys
from collections.abc import Iterator

# One BLAS/OpenMP thread per test process, as the product runs (canary/cli.py, the controller's manifest), set
# before numpy is first imported: six xdist workers on two cores, each BLAS call's second thread spinning, made a
# numeric unit test 1.6 s alone take 50-62 s in the suite (decision 466); scripts/test.sh exports the same for
# the processes tests start.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import pytest  # noqa: E402
import structlog  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from canary import logs  # noqa: E402

# CI: the same examples every run, and nothing measured in wall time (a shared machine stalls a
# test now and then: a 200 ms deadline or the too_slow health check would fail it by chance)
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

logs.configure(fmt="console", stream=sys.__stderr__)

pytest_plugins = ["tests.support.kube", "tests.support.prom", "tests.support.triton", "tests.support.cpu_log",
                  "tests.support.file_order"]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(autouse=True)
def _no_serve_clock_left_asking() -> Iterator[None]:
    """A `canary serve` Service built against a Prometheus that never answered leaves its clock's thread asking
    `time()` every 30 s for the life of the process unless the service is closed (`Service.close`, which
    `ServeServer.stop` calls). Tests that build a Service and drop it would leave one such thread per test, whose
    `metrics.query_failed check=clock` lines land in a later test's captured logs (an on-call test that every
    failed-query line names its rollout failed on one in CI). Each test's are stopped after it."""
    yield
    from canary.serve import _LateAnchor

    for anchor in list(_LateAnchor.live):
        anchor.close()

#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then runs every test:
# unit, integration (real Prometheus, Kubernetes API emulator, real Triton) and e2e (the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Six workers, a test file per worker at a time (pytest-xdist --dist loadfile): a file's
# module-scoped servers start once, and much of the wall time is waiting on real servers: on a
# 2-core machine three workers left the CPUs 31% idle and took 21 min, four 18, five 15.8 (decision 200);
# with the CLI run in-process where the process is not tested, six took 13.7 min (decision 246).
# CANARY_TEST_WORKERS=3 (or 0: one process) runs fewer at once.
# One BLAS/OpenMP thread per process, as the product sets it (canary/cli.py): with six workers on two cores a
# second BLAS thread only spins, and a numeric test 1.6 s alone took 50-62 s in the suite (decision 466).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" \
    MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# Compiled once, before the workers start (decision 505): with PYTHONDONTWRITEBYTECODE set (CI's environment
# sets it) no process wrote bytecode, so each of the six workers rewrote every test module's asserts at collection
# (92 s of wall and 104 s of CPU before the first test, against 39 s and 38 s warm) and every CLI process the tests
# start compiled canary/ from source (0.3 s of CPU each). One process compiles canary/ and tests/ and collects
# what the run will (its arguments: a run of one file does not collect the whole suite first), writing pytest's
# rewritten modules; everything after reads them. A failure here is the run's to report.
PYTHONDONTWRITEBYTECODE= .venv/bin/python -m compileall -q -j 0 canary tests scripts >/dev/null 2>&1 || true
# The collection writes what the test modules import; the libraries the product imports lazily (the kubernetes
# client's CoreV1Api, 4.5 MB of source; PyTriton and tritonclient in the sandbox's servers) were compiled from source
# by every `canary` process and server child of the run, 0.9 s of CPU a `canary promote` (decision 1040).
PYTHONDONTWRITEBYTECODE= .venv/bin/python scripts/warm_bytecode.py >/dev/null 2>&1 || true
PYTHONDONTWRITEBYTECODE= .venv/bin/python -m pytest -q -p no:cacheprovider --collect-only "$@" >/dev/null 2>&1 || true
# Files go to the workers longest first (tests/support/file_order.py, tests/suite_weights.json; decision 1029):
# xdist's own order, most tests first, left the one-test end-to-end files to the last minute and a lone worker.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${CANARY_TEST_WORKERS:-6}" --dist loadfile \
    --no-loadscope-reorder "$@"

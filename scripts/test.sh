#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then runs every test:
# unit, integration (real Prometheus, Kubernetes API emulator, real Triton) and e2e (the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Two workers, a test file per worker at a time (pytest-xdist --dist loadfile): a file's
# module-scoped servers start once, and most of the wall time is waiting on real servers,
# so two workers halve it on a 2-core machine. CANARY_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${CANARY_TEST_WORKERS:-2}" --dist loadfile "$@"

#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then runs every test:
# unit, integration (real Prometheus, Kubernetes API emulator, real Triton) and e2e (the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

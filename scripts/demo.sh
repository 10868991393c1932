#!/usr/bin/env bash
# The demo command (README): installs what is missing, then runs one real rollout in the
# local sandbox. Pass --scenario good|slow|drift|errors|crash|bad-schema|data-drift (default good).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/canary demo "$@"

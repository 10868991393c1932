#!/usr/bin/env bash
# The demo command (README): installs what is missing, then runs one real rollout in the
# local sandbox. Pass --scenario good|slow|drift|errors|crash|bad-schema|data-drift (default good).
# Run from the caller's folder, as `canary demo` is: relative --policy, --log-file and --report paths
# are the caller's, and canary-demo.log and canary-demo.report.html land there (decision 263).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" --demo  # not chromium and jq: only the tests use them
exec "$root/.venv/bin/canary" demo "$@"

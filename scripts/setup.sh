#!/usr/bin/env bash
# Installs what canary's tests and demo need on a fresh Debian/Ubuntu machine:
# Prometheus and HAProxy from apt when missing, and a .venv with the project.
# Idempotent: re-running only re-installs Python packages when pyproject.toml changed.
# `setup.sh --demo` (scripts/demo.sh) leaves out what only the tests use: chromium and jq (decision 717).
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
if [ "${1:-}" = "--demo" ]; then demo=1; fi

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
if [ "$demo" = 0 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the report tests load the page in a real browser
  command -v jq >/dev/null 2>&1 || need_apt+=(jq)  # the README's CI snippet is run through jq by a docs test
fi
if ((${#need_apt[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]} with apt" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# PYTHON=/path/to/python3.11 picks the interpreter (default: python3); canary needs 3.11 or later
PY="${PYTHON:-python3}"
too_old() { ! "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
version() { "$1" -c 'import sys; print("Python", sys.version.split()[0])' 2>/dev/null || echo "not a Python"; }
if too_old "$PY"; then
  echo "setup: $PY is $(version "$PY"); canary needs Python 3.11 or later:" \
       "run again with PYTHON=/path/to/python3.11 (or later)" >&2
  exit 2
fi
if [ -x .venv/bin/python ] && too_old .venv/bin/python; then
  # a .venv left by an earlier run with an older Python: every later run failed the same way until removed
  echo "setup: .venv holds $(version .venv/bin/python); rebuilding it with $(version "$PY")" >&2
  rm -rf .venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.canary-installed"
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "setup: installing Python packages into .venv" >&2
  # the distribution was called `canary` before it became `modelcanary`: drop an old editable install
  .venv/bin/python -m pip uninstall -y -q canary >/dev/null 2>&1 || true
  # uv installs the same packages as pip in about 10 s against pip's 80-90 s (decision 883), from the places
  # pip's own settings name (scripts/uv_args.py); CANARY_SETUP_INSTALLER=pip, or uv failing, installs with pip
  if [ "${CANARY_SETUP_INSTALLER:-uv}" = uv ] && [ -f scripts/uv_args.py ] \
      && .venv/bin/python -m pip install -q uv >/dev/null 2>&1 \
      && mapfile -d '' uv_args < <(.venv/bin/python scripts/uv_args.py) \
      && .venv/bin/python -m uv pip install -q --python .venv/bin/python "${uv_args[@]}" -e '.[sandbox,test]'; then
    :
  else
    [ "${CANARY_SETUP_INSTALLER:-uv}" = pip ] || echo "setup: uv could not install them; installing with pip" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[sandbox,test]'  # sandbox brings triton, drift, report
  fi
  echo "$hash" > "$stamp"
fi

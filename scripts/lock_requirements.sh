#!/usr/bin/env bash
# Regenerates canary/deploy/requirements.txt: the container image's lock. Every package the image
# installs, pinned with `==` and with the sha256 of every file PyPI has for that version, resolved for
# CPython 3.11 on Linux (the image's python:3.11-slim, amd64 or arm64):
#   - the core dependencies of pyproject.toml, plus its `triton` extra (the controller runs the Triton gates);
#   - the build backend of [build-system] (setuptools), so the Dockerfile builds the project with
#     --no-build-isolation from a pinned backend instead of whatever PyPI serves that day.
#
#   scripts/lock_requirements.sh                          # re-resolve, keeping the current pins where they still fit
#   scripts/lock_requirements.sh --upgrade                # newest versions of everything
#   scripts/lock_requirements.sh --upgrade-package numpy  # newest numpy only
#
# Run it after changing dependencies in pyproject.toml (tests/unit/test_deploy_manifests.py fails until the
# lock satisfies them). The resolver is uv (`uv pip compile`), the pinned version below, installed into a
# throwaway virtual environment unless $UV names one. PyPI only: local pip configuration, find-links and
# mirrors are ignored, so the hashes are PyPI's.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
LOCK=canary/deploy/requirements.txt
PYTHON=${PYTHON:-python3}

uv=${UV:-}
if [ -z "$uv" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m venv "$tmp/venv"
  PIP_CONFIG_FILE=/dev/null "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check \
    --index-url https://pypi.org/simple "uv==$UV_VERSION"
  uv="$tmp/venv/bin/uv"
fi

# [build-system] requires (tomllib: Python 3.11+), fed to the resolver on stdin next to pyproject.toml
build_requires=$("$PYTHON" -c 'import sys, tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')

printf '%s\n' "$build_requires" | "$uv" pip compile --no-config --quiet \
  pyproject.toml - --extra triton \
  --python-version 3.11 --python-platform linux \
  --generate-hashes --index-url https://pypi.org/simple \
  --custom-compile-command scripts/lock_requirements.sh \
  --output-file "$LOCK" "$@"
echo "wrote $LOCK ($(grep -c '==' "$LOCK") packages)" >&2

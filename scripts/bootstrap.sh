#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment .venv with the pinned dependencies.
# Idempotent: re-installs only when envs/requirements.txt or pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.jetscale-installed
want=$(cat envs/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing pinned dependencies (about a minute on a fresh machine)"
  .venv/bin/pip install -q --disable-pip-version-check -r envs/requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import jetscale, torch, pythia8mc, fastjet, snakemake" 
  echo "$want" > "$stamp"
fi

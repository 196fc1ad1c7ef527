#!/usr/bin/env bash
# The README's test command: set up .venv if needed, start the local Slurm cluster if possible, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -f scripts/slurm-cluster.sh ]; then
  bash scripts/slurm-cluster.sh start || echo "[test] local Slurm cluster unavailable: Slurm tests will be skipped"
fi
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -n 2 --dist loadgroup "$@"

#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the study in config.yaml locally with Snakemake.
# Extra arguments go to snakemake (e.g. --configfile config/paper.yaml, -n for a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec snakemake --cores "${CORES:-$(nproc)}" "$@"

"""Dry-run planning time of the study DAG for grids of 1k, 10k and 50k cells.

    .venv/bin/python benchmarks/dag.py [--sizes 1000 10000 50000]

Each grid is the default config with more seeds (3 models x 6 n_train x k seeds); prints cells, jobs and
wall seconds of `snakemake -n` (parse + plan; no job runs). Aim: 10k cells in under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def grid_config(n_cells: int, results: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    per_seed = len(cfg["grid"]["axes"]["model"]) * len(cfg["grid"]["axes"]["n_train"])
    cfg["grid"]["axes"]["seed"] = list(range(max(1, round(n_cells / per_seed))))
    cfg["results"] = str(results)
    return cfg


def time_dry_run(n_cells: int) -> tuple[int, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg = grid_config(n_cells, Path(tmp) / "results")
        cfg_path.write_text(yaml.safe_dump(cfg))
        cells = (
            len(cfg["grid"]["axes"]["model"]) * len(cfg["grid"]["axes"]["n_train"]) * len(cfg["grid"]["axes"]["seed"])
        )
        start = time.perf_counter()
        out = subprocess.run(
            [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules", "--configfile", str(cfg_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        total = re.search(r"^total\s+(\d+)$", out.stdout, re.M)
        return cells, int(total.group(1)) if total else -1, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    print(f"{'cells':>8} {'jobs':>8} {'dry-run s':>10}")
    for size in args.sizes:
        cells, jobs, seconds = time_dry_run(size)
        print(f"{cells:>8} {jobs:>8} {seconds:>10.1f}", flush=True)


if __name__ == "__main__":
    main()

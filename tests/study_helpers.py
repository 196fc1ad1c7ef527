"""Run the real Snakemake DAG on a tiny study in a scratch directory (used by the end-to-end tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from slurm_helpers import env_with_venv
from tiny_config import tiny_study_raw

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMING_COLUMNS = ("wall_time_s", "hardware")


def tiny_study(workdir: Path, **overrides) -> Path:
    """Write the tiny study config (with top-level overrides) into workdir; return its path."""
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(tiny_study_raw(**overrides), sort_keys=False))
    return path


def snakemake(workdir: Path, config: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "snakemake"),
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_with_venv(),
    )


def planned_cells(dry_run_stdout: str, rule: str = "train") -> set[str]:
    """Cell ids of the `rule` jobs a dry run plans."""
    cells = set()
    for block in re.split(r"\n(?=rule |localrule )", dry_run_stdout):
        if re.match(rf"(local)?rule {rule}:", block):
            match = re.search(r"wildcards: cell=(\S+)", block)
            if match:
                cells.add(match.group(1))
    return cells


def comparable_runs_table(path: Path) -> pd.DataFrame:
    """runs.csv without the columns that legitimately differ between machines (timings, hardware)."""
    table = pd.read_csv(path)
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table.columns])

"""The tiny study through `--profile slurm` on the real local cluster: every cluster job goes through sbatch
and the results table equals a local run of the same config, apart from timings and hardware."""

from __future__ import annotations

import re

import pytest
from pandas.testing import assert_frame_equal

from slurm_helpers import sacct_states, snakemake_slurm
from study_helpers import comparable_runs_table, snakemake, tiny_study

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

TWO_CELLS = {
    "grid": {
        "axes": {"model": ["particlenet"], "width": [16], "n_train": [200, 400], "compute": [600], "seed": [0]},
        "per_model": {},
        "extra_axes": {},
    },
}


def test_tiny_study_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir(), slurm_dir.mkdir()
    local_cfg, slurm_cfg = tiny_study(local_dir, **TWO_CELLS), tiny_study(slurm_dir, **TWO_CELLS)

    local = snakemake(local_dir, local_cfg, "--cores", "2")
    assert local.returncode == 0, local.stderr[-3000:]
    proc = snakemake_slurm(slurm_dir, "--configfile", str(slurm_cfg), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    log = proc.stdout + proc.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    # 2 shards + split + 2 trainings + 2 evaluations are cluster jobs (aggregations are local rules)
    assert len(job_ids) == 7, log[-3000:]
    states = sacct_states(job_ids)
    assert set(states.values()) == {"COMPLETED"}, states

    root = "results-tiny/tables/runs.csv"
    local_table = comparable_runs_table(local_dir / root)
    slurm_table = comparable_runs_table(slurm_dir / root)
    assert len(local_table) > 0 and local_table["cell_id"].nunique() == 2
    assert_frame_equal(local_table, slurm_table, check_exact=True)
    assert (slurm_dir / "results-tiny" / "report.html").stat().st_size > 0

"""Against the real local Slurm cluster (scripts/slurm-cluster.sh): sbatch, the partition check, the slurm
profile, and a submitit training job that is interrupted, requeued and resumes from its checkpoint.

Skipped with the reason when Slurm is not installed/up (see slurm_helpers.slurm_cluster). ~1.5 min in all.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from jetscale.errors import ConfigError
from slurm_helpers import sacct_states, snakemake_slurm, tiny_training_config

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


def test_sbatch_job_runs_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    proc = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--wait",
            "-p",
            slurm_cluster["partition"],
            "-t",
            "2",
            "--mem",
            "100",
            "-o",
            str(out),
            "--wrap",
            "echo job=$SLURM_JOB_ID",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert out.read_text().strip() == f"job={job_id}"
    deadline = time.time() + 30  # slurmdbd records the end a moment after sbatch --wait returns
    while sacct_states([job_id]).get(job_id) != "COMPLETED" and time.time() < deadline:
        time.sleep(1)
    assert sacct_states([job_id]).get(job_id) == "COMPLETED"


def test_check_partition(slurm_cluster):
    from jetscale.launch.slurm import check_partition, partitions

    assert slurm_cluster["partition"] in partitions()
    assert check_partition(slurm_cluster["partition"]) == slurm_cluster["partition"]
    assert check_partition(None) == slurm_cluster["partition"]
    with pytest.raises(ConfigError, match=r"partition 'no-such-partition' does not exist.*known partitions: "):
        check_partition("no-such-partition")


def test_submitit_training_interrupted_resumes_from_checkpoint(slurm_cluster, tmp_path):
    """A real tiny training cell (jetscale.train.loop.train_cell) through `TrainCell` on Slurm: preempted once
    it has a checkpoint, it is requeued (same Slurm job), resumes, and ends with the same metrics as a run
    that was never interrupted."""
    from jetscale.data.testing import write_synthetic_splits
    from jetscale.launch.submit import make_executor, submit_cells, wait
    from jetscale.train.loop import train_cell

    cfg, cell = tiny_training_config(compute=8000)
    cfg["results"] = str(tmp_path / "results")
    splits = write_synthetic_splits(
        tmp_path / "results" / "data" / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )
    executor = make_executor(
        tmp_path / "submitit",
        cluster="slurm",
        partition=slurm_cluster["partition"],
        timeout_min=5,
        mem_gb=2,
        signal_delay_s=60,
    )
    (job,) = submit_cells(executor, cfg, [cell])  # default fn: jetscale.train.loop:train_cell
    checkpoint = tmp_path / "results" / "runs" / cell / "checkpoint.pt"
    deadline = time.time() + 120
    # Interrupt as soon as the first periodic checkpoint exists (the run needs many more steps to finish);
    # the uninterrupted reference is trained only afterwards so it cannot delay the interrupt.
    while not checkpoint.exists():
        assert time.time() < deadline, "no checkpoint.pt within 120 s of submission"
        assert not job.done(), f"job ended before its first checkpoint: {job.stderr()}"
        time.sleep(0.2)
    job._interrupt()  # what submitit does on preemption: SIGTERM, then USR2
    reference = train_cell(cfg, cell, splits, tmp_path / "straight", progress=False)
    (metrics,) = wait([job])
    log = job.stdout() + (job.stderr() or "")
    assert "Requeued job" in log, log[-2000:]
    assert metrics["samples_seen"] == reference["samples_seen"] == 8000
    assert metrics["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)
    written = json.loads((checkpoint.parent / "metrics.json").read_text())
    assert written["test_loss"] == metrics["test_loss"]


TOY_SNAKEFILE = textwrap.dedent("""
    onstart:
        from jetscale.launch.slurm import check_workflow_partitions
        check_workflow_partitions(workflow)

    rule all:
        input: expand("results/runs/{cell}/metrics.json", cell=["a", "b"])

    rule train:
        output: "results/runs/{cell}/metrics.json"
        resources: runtime=5, mem_mb=200
        shell: "python -m jetscale.launch.toy --cell {wildcards.cell} --out results/runs/{wildcards.cell}"
               " --steps 2 --step-s 0.5"
    """)


def test_snakemake_slurm_profile_submits_jobs(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    proc = snakemake_slurm(tmp_path, snakefile=tmp_path / "Snakefile", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [json.loads((tmp_path / f"results/runs/{c}/metrics.json").read_text())["slurm_job_id"] for c in "ab"]
    assert all(ids) and ids[0] != ids[1]
    assert set(sacct_states(ids).values()) == {"COMPLETED"}


def test_unknown_partition_fails_before_any_submission(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    last_before = _last_job_id()
    proc = snakemake_slurm(
        tmp_path,
        "--set-resources",
        "train:slurm_partition=no-such-partition",
        snakefile=tmp_path / "Snakefile",
        timeout=120,
    )
    assert proc.returncode != 0
    assert "partition 'no-such-partition' does not exist" in proc.stderr
    assert "debug" in proc.stderr  # names the partitions that exist
    assert "Submitted job" not in proc.stderr
    assert not (tmp_path / "results").exists()
    assert _last_job_id() == last_before  # accounting saw no new job at all


def _last_job_id() -> int:
    """Highest job id Slurm accounting knows (queue listings miss jobs that already finished)."""
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-o", "JobIDRaw", "-S", "2000-01-01"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return max((int(line) for line in out.split() if line.isdigit()), default=0)
